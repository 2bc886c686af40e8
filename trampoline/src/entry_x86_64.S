/*
 * zpoline entry stub, x86-64, AT&T syntax. Included by entry_x86_64.rs via global_asm!;
 * route, hook, xsave_size, slots, fd_mark, forked and the sud_* items (in braces below) are Rust items
 * passed as `sym`.
 * Braces are format placeholders here: comments must not contain any others.
 *
 * How we get here: a rewritten site executed `call *%rax` (FF D0) with rax = syscall
 * number, landed in the sled at address rax, and the sled jumped to zpoline_entry.
 *
 * Contract on entry:
 *   (%rsp)          = R, the return address pushed by `call *%rax`. Its slot is the
 *                     first 8 bytes of the caller's red zone; nothing can bring the old
 *                     value back. The other 120 bytes of the red zone, [rsp-120, rsp),
 *                     are never written: every path that needs stack moves rsp down by
 *                     120 (or more) before its first push.
 *   rax             = syscall number (0..512, the sled's range)
 *   rdi rsi rdx r10 r8 r9 = syscall arguments
 * Contract on return (to R, rsp = entry rsp + 8, like after a real syscall):
 *   rax = result; rcx and r11 clobbered (like `syscall`); every other GPR kept.
 *   rflags kept on the fast and hook paths (fast: no flag-writing instruction before
 *   `syscall`, which saves rflags in r11 and sysret restores them; hook: pushfq/popfq).
 *   x87/SSE/AVX/AVX-512 state: the fast path touches none; the hook path XSAVEs every
 *   enabled component before calling Rust and XRSTORs it after.
 * Stack alignment: the Rust hook is called with rsp 64-byte aligned (XSAVE needs 64).
 * Direction flag: cleared for the Rust hook, restored by popfq.
 *
 * route[nr]: 0 = fast pass-through here, 1 = Rust hook, 2 = special path here
 * (rt_sigreturn, clone, vfork, clone3), 3 = hook if the fd in rdi is marked, else fast. The hook returns 0 (done, frame.rax holds the
 * result) or 1 (run the special path now, for syscalls it only counted/traced).
 */
    .text

/* Dispatch without writing flags: jrcxz and lea only. */
    .globl zpoline_entry
    .hidden zpoline_entry
    .p2align 6
zpoline_entry:
    lea {route}(%rip), %rcx
    movzbl (%rcx,%rax,1), %ecx
    jrcxz 1f
    lea -1(%rcx), %ecx
    jrcxz zp_hook_path
    lea -1(%rcx), %ecx
    jrcxz 2f
    /*
     * route 3: the first argument is a file descriptor; take the hook only when the
     * backend marked it (fd_mark[fd & 0xffff], an LKL fd's placeholder), else go fast.
     * movzwl and the loads write no flags.
     */
    movzwl %di, %ecx
    lea {fd_mark}(%rip), %r11
    movzbl (%r11,%rcx,1), %ecx
    jrcxz 1f
    jmp zp_hook_path
    /*
     * Return with pop+jmp, not ret: the kernel's return-stack mitigations leave the
     * return predictor useless right after a syscall, so a ret here mispredicts
     * (measured: +8 ns); an indirect jmp is predicted per site. rcx = return address,
     * as after a real syscall.
     */
1:  syscall
    pop %rcx
    jmp *%rcx
2:  jmp zp_special

/*
 * Hook path: build a Frame (rdi, rsi, rdx, r10, r8, r9, rax) below the red zone, save
 * rbx (our frame pointer across the call) and rflags, XSAVE the extended state, call
 * the Rust hook with &Frame, then undo everything.
 */
zp_hook_path:
    lea -120(%rsp), %rsp
    pushfq
    push %rbx
    push %rax
    push %r9
    push %r8
    push %r10
    push %rdx
    push %rsi
    push %rdi
    mov %rsp, %rbx
    cld
    sub {xsave_size}(%rip), %rsp
    and $-64, %rsp
    /* XRSTOR faults unless header bytes 8..63 are zero; XSAVE writes only bytes 0..7. */
    xor %eax, %eax
    mov %rax, 512(%rsp)
    mov %rax, 520(%rsp)
    mov %rax, 528(%rsp)
    mov %rax, 536(%rsp)
    mov %rax, 544(%rsp)
    mov %rax, 552(%rsp)
    mov %rax, 560(%rsp)
    mov %rax, 568(%rsp)
    mov $-1, %eax
    mov $-1, %edx
    xsave (%rsp)
    mov %rbx, %rdi
    call {hook}
    mov %rax, %rcx
    mov $-1, %eax
    mov $-1, %edx
    xrstor (%rsp)
    mov %rbx, %rsp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %r10
    pop %r8
    pop %r9
    pop %rax
    pop %rbx
    jrcxz 2f
    popfq
    lea 120(%rsp), %rsp
    jmp zp_special
    /* Done: r11 = rflags and rcx = return address, as a real syscall leaves them. */
2:  mov (%rsp), %r11
    popfq
    lea 120(%rsp), %rsp
    mov (%rsp), %rcx
    ret

/* Special paths: raw syscalls whose return does not come back through our frame. */
zp_special:
    cmp $15, %rax
    je zp_rt_sigreturn
    cmp $56, %rax
    je zp_clone
    cmp $58, %rax
    je zp_vfork_like
    cmp $435, %rax
    je zp_clone3
    syscall
    ret

/* rt_sigreturn: drop R so rsp points at the signal frame again; never returns. */
zp_rt_sigreturn:
    lea 8(%rsp), %rsp
    syscall
    ud2

/*
 * clone(flags=rdi, newsp=rsi, ...). With a new stack the child has no R to return
 * through, so we put R and the original rsi on the child's stack: the child pops rsi
 * and returns with rsp = newsp, exactly as a native child would start.
 * Without a new stack and with CLONE_VM (vfork-like), see zp_vfork_like.
 */
zp_clone:
    test %rsi, %rsi
    jz 3f
    mov (%rsp), %r11
    mov %r11, -8(%rsi)
    mov %rsi, -16(%rsi)
    lea -16(%rsi), %rsi
    syscall
    test %rax, %rax
    jz 1f
    lea 16(%rsi), %rsi
    ret
1:  call zp_child_sud
    pop %rsi
    ret
3:  test $0x100, %edi
    jnz zp_vfork_like
    jmp zp_fork_like

/*
 * vfork and vfork-like clone/clone3 (CLONE_VM on the parent's stack). The child runs on
 * our caller's stack and will overwrite R's slot before the parent resumes. So R is kept
 * in a slot table keyed by rsp (unique per suspended thread): claim a free slot with
 * cmpxchg, store R, do the syscall. The child returns through the still-intact R; the
 * parent looks its slot up again and jumps to R.
 * Uses only rax, rcx and r11, which the syscall clobbers anyway.
 */
zp_vfork_like:
    mov %rax, %r11
    lea {slots}(%rip), %rcx
1:  xor %eax, %eax
    lock cmpxchg %rsp, (%rcx)
    je 2f
    add $16, %rcx
    lea {slots}+1024(%rip), %rax
    cmp %rax, %rcx
    jb 1b
    lea {slots}(%rip), %rcx
    jmp 1b
2:  mov (%rsp), %rax
    mov %rax, 8(%rcx)
    mov %r11, %rax
    syscall
    test %rax, %rax
    jnz 3f
    ret
3:  lea {slots}(%rip), %rcx
4:  cmp %rsp, (%rcx)
    je 5f
    add $16, %rcx
    jmp 4b
5:  mov 8(%rcx), %r11
    movq $0, (%rcx)
    lea 8(%rsp), %rsp
    jmp *%r11

/*
 * clone3(args=rdi, size=rsi). With a stack, copy the args below the red zone, shrink
 * the copy's stack_size by 16 and put the original rdi and R on top of the child's
 * stack; the child pops rdi and returns with rsp = stack + stack_size. Sizes outside
 * 64..88 get -ENOSYS (glibc then falls back to clone).
 */
zp_clone3:
    cmp $88, %rsi
    ja 9f
    cmp $64, %rsi
    jb 9f
    cmpq $0, 40(%rdi)
    je 8f
    lea -120(%rsp), %rsp
    sub $96, %rsp
    push %rdi
    xor %ecx, %ecx
1:  mov (%rdi,%rcx,1), %r11
    mov %r11, 8(%rsp,%rcx,1)
    add $8, %rcx
    cmp %rsi, %rcx
    jb 1b
    mov 48(%rdi), %rcx
    add 40(%rdi), %rcx
    mov 224(%rsp), %r11
    mov %r11, -8(%rcx)
    mov %rdi, -16(%rcx)
    subq $16, 56(%rsp)
    lea 8(%rsp), %rdi
    mov $435, %eax
    syscall
    test %rax, %rax
    jz 2f
    pop %rdi
    lea 216(%rsp), %rsp
    ret
2:  call zp_child_sud
    pop %rdi
    ret
8:  testq $0x100, (%rdi)
    jnz zp_vfork_like
    jmp zp_fork_like
9:  mov $-38, %rax
    ret

/*
 * fork-like clone/clone3 (no CLONE_VM, same stack, a copy of it in the child): plain
 * syscall; the child re-enables Syscall User Dispatch below the red zone first.
 */
zp_fork_like:
    syscall
    test %rax, %rax
    jnz 1f
    /* The child of a fork: its own memory from here on; tell the backend. */
    movb $1, {forked}(%rip)
    lea -128(%rsp), %rsp
    call zp_child_sud
    lea 128(%rsp), %rsp
1:  ret

/*
 * In a new child task: turn Syscall User Dispatch on again, since the kernel does not
 * carry it over to new tasks. Called with a usable stack below rsp; keeps every
 * register but rcx and r11 and the flags; returns rax = 0 (the child's clone result).
 */
zp_child_sud:
    cmpb $0, {sud_on}(%rip)
    je 1f
    push %rdi
    push %rsi
    push %rdx
    push %r10
    push %r8
    mov $157, %eax
    mov $59, %edi
    mov $1, %esi
    mov {sud_start}(%rip), %rdx
    mov {sud_len}(%rip), %r10
    lea {sud_selector}(%rip), %r8
    syscall
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
1:  xor %eax, %eax
    ret

/* Signal restorer for our own SIGSYS handler; lives in our code, which SUD allows. */
    .globl zp_restore_rt
    .hidden zp_restore_rt
    .p2align 4
zp_restore_rt:
    mov $15, %eax
    syscall
    ud2
