/*
 * zpoline entry stub, x86-64, AT&T syntax. Included by entry_x86_64.rs via global_asm!;
 * the names in braces below are Rust items and constants passed as `sym`/`const`.
 * Braces are format placeholders here: comments must not contain any others.
 *
 * How we get here: a rewritten site executed `call *%rax` (FF D0) with rax = syscall
 * number, landed in the sled at address rax, and the sled jumped to zpoline_entry (or
 * to zpoline_entry_in_place where the CPU lacks FSGSBASE); or the NULL guard's SIGSEGV
 * handler, or the Syscall User Dispatch SIGSYS handler (which pushes R itself), pointed
 * rip at it. Numbers past the sled (fallen off page 0, or past it) are sent by the
 * SIGSEGV handler to zp_raw_syscall, with the same contract.
 *
 * Contract on entry:
 *   (%rsp)          = R, the return address pushed by `call *%rax`. Its slot is the
 *                     first 8 bytes of the caller's red zone; nothing can bring the old
 *                     value back. The other 120 bytes of the red zone, [rsp-120, rsp),
 *                     are never written: every path that writes the program's stack
 *                     moves rsp down by 120 (or more) first.
 *   rax             = syscall number (0..4095, the sled's range)
 *   rdi rsi rdx r10 r8 r9 = syscall arguments
 * Contract on return (to R, rsp = entry rsp + 8, like after a real syscall):
 *   rax = result; rcx and r11 clobbered (like `syscall`); every other GPR kept.
 *   rflags kept on the fast and hook paths (fast: no flag-writing instruction before
 *   `syscall`, which saves rflags in r11 and sysret restores them; hook: pushfq/popfq,
 *   and only jrcxz, lea and mov before the pushfq).
 *   x87/SSE/AVX/AVX-512 state: the fast path touches none; the hook path XSAVEs every
 *   enabled component before calling Rust and XRSTORs it after.
 * Where the stack is:
 *   - Fast path: no stack beyond R.
 *   - Hook path: on the thread's own interposer stack (a block of stack.rs, found
 *     through the %gs base; its owner check is the thread's %fs base). The program's
 *     stack gets nothing beyond R. The hook path is the fast dispatch plus eleven
 *     instructions (owner test, claim, switch) and two on the way back. A nested entry (a signal handler that interrupted
 *     the hook) continues below the interrupted frame on the same interposer stack, or
 *     on the handler's own signal stack. The first entry of a thread (no block yet, or
 *     an inherited %gs base) attaches one: about 200 bytes of the program's stack
 *     below the red zone, signals blocked, the Rust part on a shared bootstrap stack
 *     under a spin lock.
 *   - Special paths: clone3 copies its arguments below the red zone (about 230 bytes);
 *     the others use nothing beyond R, except that a fork child re-arms Syscall User
 *     Dispatch below the red zone.
 * Stack alignment: the Rust hook is called with rsp 64-byte aligned (XSAVE needs 64).
 * Direction flag: cleared for the Rust hook, restored by popfq.
 *
 * route[nr]: 0 = fast pass-through here, 1 = Rust hook, 2 = special path here
 * (rt_sigreturn, clone, vfork, clone3), 3 = hook if the fd in rdi is marked, else fast.
 * The hook returns 0 (done, frame.rax holds the result) or 1 (run the special path now,
 * for syscalls it only counted/traced).
 *
 * Interposer block (at the %gs base), offsets: saved = program rsp of the outermost
 * entry, 0 when the stack is free; nowner = minus the owner's %fs base; top; lo.
 */
    .text

/*
 * Every enabled vector component saved below rsp: rsp drops by the XSAVE area's size
 * and is aligned to 64 (XSAVE needs it). XRSTOR faults unless header bytes 8..63 are
 * zero, and XSAVE writes only bytes 0..7, so the header is cleared first. Clobbers
 * rax and rdx.
 */
.macro ZP_XSAVE
    sub {xsave_size}(%rip), %rsp
    and $-64, %rsp
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
.endm

/* The state ZP_XSAVE saved at rsp, restored (every component). Clobbers rax, rdx. */
.macro ZP_XRSTOR
    mov $-1, %eax
    mov $-1, %edx
    xrstor (%rsp)
.endm

/*
 * Dispatch without writing flags: jrcxz and lea only. One copy per hook path: the
 * interposer stack (FSGSBASE) or the caller's stack (without FSGSBASE).
 */
.macro ZP_DISPATCH hook
    lea {route}(%rip), %rcx
    movzbl (%rcx,%rax,1), %ecx
    jrcxz 1f
    lea -1(%rcx), %ecx
    jrcxz \hook
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
    jmp \hook
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
.endm

    .globl zpoline_entry
    .hidden zpoline_entry
    .p2align 6
zpoline_entry:
    ZP_DISPATCH zp_hook_path

/*
 * Hook path. Find this thread's interposer block: %gs base non-zero and owned by this
 * %fs base, else attach one (zp_attach). Then, with the stack free, claim it (saved =
 * our rsp, non-zero) and switch; else we are nested (zp_nested). Flag-free until the
 * body's pushfq: the owner test is jrcxz on fs + nowner.
 */
zp_hook_path:
    rdgsbase %rcx
    jrcxz 3f
    rdfsbase %r11
    mov {zb_nowner}(%rcx), %rcx
    lea (%rcx,%r11), %rcx
    jrcxz zp_attached
3:  jmp zp_attach
zp_attached:
    mov %gs:{zb_saved}, %rcx
    jrcxz 1f
    jmp zp_nested
1:  mov %rsp, %gs:{zb_saved}
    mov %gs:{zb_top}, %rsp
    call zp_hook_body
    /* Back on the program's stack first, then free ours: see zp_nested. */
    mov %gs:{zb_saved}, %rsp
    movq $0, %gs:{zb_saved}
    jrcxz 4f
    jmp zp_special
    /* Done: r11 = rflags and rcx = return address, as a real syscall leaves them. */
4:  mov (%rsp), %rcx
    ret

/*
 * The stack is taken: a signal handler interrupted the hook (or its two-instruction
 * windows at claim and release, or a handler left the hook by longjmp). Below the red
 * zone of the current stack, with the flags saved: on our stack, continue below the
 * interrupted frame. Elsewhere, ask the kernel: on the handler's signal stack, stay
 * there; else no frame of ours is live below (the windows, an abandoned frame), so
 * run from our top without claiming it.
 */
zp_nested:
    lea -120(%rsp), %rsp
    pushfq
    cmp %gs:{zb_lo}, %rsp
    jb 1f
    cmp %gs:{zb_top}, %rsp
    jae 1f
2:  popfq
    jmp zp_here
1:  push %rax
    push %rdi
    push %rsi
    sub $24, %rsp  /* room for a stack_t (24 bytes) */
    /* sigaltstack(NULL, &ss): ss_flags (offset 8) has SS_ONSTACK on a signal stack. */
    mov ${nr_sigaltstack}, %eax
    xor %edi, %edi
    mov %rsp, %rsi
    syscall
    mov 8(%rsp), %ecx
    add $24, %rsp
    pop %rsi
    pop %rdi
    pop %rax
    test ${ss_onstack}, %ecx
    jnz 2b
    popfq
    lea 120(%rsp), %rsp
    mov %rsp, %r11
    mov %gs:{zb_top}, %rsp
    push %r11
    call zp_hook_body
    pop %rsp
    jrcxz 3f
    jmp zp_special
3:  mov (%rsp), %rcx
    ret

    .globl zpoline_entry_in_place
    .hidden zpoline_entry_in_place
    .p2align 6
zpoline_entry_in_place:
    ZP_DISPATCH zp_hook_in_place

/* The hook on the current stack, below the red zone (no FSGSBASE, or nested). */
zp_hook_in_place:
    lea -120(%rsp), %rsp
zp_here:
    call zp_hook_body
    lea 120(%rsp), %rsp
    jrcxz 4f
    jmp zp_special
4:  mov (%rsp), %rcx
    ret

/*
 * A syscall answered by the kernel as it is: numbers past the sled's page (x32's
 * 0x40000000|nr), sent here by the SIGSEGV handler with rsp at R.
 */
    .globl zp_raw_syscall
    .hidden zp_raw_syscall
zp_raw_syscall:
    syscall
    pop %rcx
    jmp *%rcx

/*
 * The hook proper, on whatever stack the caller chose: build a Frame (rdi, rsi, rdx,
 * r10, r8, r9, rax), save rbx (our frame pointer across the call) and rflags, XSAVE
 * the extended state, call the Rust hook with &Frame, then undo everything. Returns
 * rcx = the hook's answer (0 done, 1 special), r11 = rflags, flags restored.
 */
zp_hook_body:
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
    ZP_XSAVE
    mov %rbx, %rdi
    call {hook}
    mov %rax, %rcx
    ZP_XRSTOR
    mov %rbx, %rsp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %r10
    pop %r8
    pop %r9
    pop %rax
    pop %rbx
    mov (%rsp), %r11
    popfq
    ret

/*
 * No interposer block for this thread yet (%gs base 0, or one inherited from the
 * thread that created this one). Below the red zone: save the registers and flags,
 * block every signal (a handler's syscall would need the lock we hold), take the spin
 * lock, and call the Rust side on the bootstrap stack with the vector state saved.
 * It sets the %gs base and answers 0, or 1 when no block can be had (out of memory):
 * then the hook runs in place, as without FSGSBASE.
 */
zp_attach:
    lea -120(%rsp), %rsp
    pushfq
    push %rax
    push %rdi
    push %rsi
    push %rdx
    push %r10
    push %r8
    push %r9
    push %rbx
    sub $16, %rsp  /* 0: the old signal mask, 8: attach's answer */
    /* rt_sigprocmask(SIG_BLOCK, &all, 0(%rsp) = old mask, 8) */
    mov ${nr_rt_sigprocmask}, %eax
    mov ${sig_block}, %edi
    lea {all_signals}(%rip), %rsi
    mov %rsp, %rdx
    mov ${kernel_sigset}, %r10d
    syscall
1:  mov $1, %ecx  /* the lock's taken value */
    xchg %ecx, {attach_lock}(%rip)
    test %ecx, %ecx
    jz 2f
    pause
    jmp 1b
2:  mov %rsp, %rbx
    lea {boot_stack}+{boot_size}(%rip), %rsp
    cld
    ZP_XSAVE
    call {attach}
    mov %rax, 8(%rbx)
    ZP_XRSTOR
    mov %rbx, %rsp
    movl $0, {attach_lock}(%rip)
    /* rt_sigprocmask(SIG_SETMASK, 0(%rsp), NULL, 8) */
    mov ${nr_rt_sigprocmask}, %eax
    mov ${sig_setmask}, %edi
    mov %rsp, %rsi
    xor %edx, %edx
    mov ${kernel_sigset}, %r10d
    syscall
    mov 8(%rsp), %rcx
    add $16, %rsp
    pop %rbx
    pop %r9
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rax
    popfq
    lea 120(%rsp), %rsp
    jrcxz 3f
    jmp zp_hook_in_place
3:  jmp zp_attached

/* Special paths: raw syscalls whose return does not come back through our frame. */
zp_special:
    cmp ${nr_rt_sigreturn}, %rax
    je zp_rt_sigreturn
    cmp ${nr_clone}, %rax
    je zp_clone
    cmp ${nr_vfork}, %rax
    je zp_vfork_like
    cmp ${nr_clone3}, %rax
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
1:  call zp_new_thread
    pop %rsi
    ret
3:  test ${clone_vfork}, %edi
    jnz zp_vfork_like
    jmp zp_fork_like

/*
 * vfork and vfork-like clone/clone3 (CLONE_VM on the parent's stack). The child runs on
 * our caller's stack and will overwrite R's slot before the parent resumes. So R is kept
 * in a slot table keyed by rsp (unique per suspended thread): claim a free slot with
 * cmpxchg, store R, do the syscall. The child returns through the still-intact R; the
 * parent looks its slot up again and jumps to R.
 * The child also shares our interposer block, and an execve in its hook leaves the
 * block claimed: the slot keeps the parent's saved word, put back when it resumes.
 * Uses only rax, rcx and r11, which the syscall clobbers anyway.
 */
zp_vfork_like:
    mov %rax, %r11
    lea {slots}(%rip), %rcx
1:  xor %eax, %eax
    lock cmpxchg %rsp, (%rcx)
    je 2f
    add $32, %rcx  /* next slot: four words each */
    lea {slots}+2048(%rip), %rax  /* the end of VFORK_SLOTS: 64 slots of 32 bytes */
    cmp %rax, %rcx
    jb 1b
    lea {slots}(%rip), %rcx
    jmp 1b
2:  mov (%rsp), %rax
    mov %rax, 8(%rcx)
    movq $0, 16(%rcx)
    cmpb $0, {stacks_on}(%rip)
    je 6f
    rdgsbase %rax
    test %rax, %rax
    jz 6f
    mov {zb_saved}(%rax), %rax
    mov %rax, 16(%rcx)
6:  mov %r11, %rax
    syscall
    test %rax, %rax
    jnz 3f
    ret
3:  lea {slots}(%rip), %rcx
4:  cmp %rsp, (%rcx)
    je 5f
    add $32, %rcx  /* next slot: four words each */
    jmp 4b
    /* The parent: put the saved word back if the block is this thread's. */
5:  cmpb $0, {stacks_on}(%rip)
    je 7f
    mov %rax, 24(%rcx)
    rdgsbase %rax
    test %rax, %rax
    jz 8f
    rdfsbase %r11
    add {zb_nowner}(%rax), %r11
    jnz 8f
    mov 16(%rcx), %r11
    mov %r11, {zb_saved}(%rax)
8:  mov 24(%rcx), %rax
7:  mov 8(%rcx), %r11
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
    cmp $88, %rsi  /* CLONE_ARGS_SIZE_VER2 */
    ja 9f
    cmp $64, %rsi  /* CLONE_ARGS_SIZE_VER0 */
    jb 9f
    cmpq $0, 40(%rdi)
    je 8f
    lea -120(%rsp), %rsp
    sub $96, %rsp  /* the copy: up to 88 bytes, kept 16-aligned */
    push %rdi
    xor %ecx, %ecx
1:  mov (%rdi,%rcx,1), %r11
    mov %r11, 8(%rsp,%rcx,1)
    add $8, %rcx  /* next word */
    cmp %rsi, %rcx
    jb 1b
    mov 48(%rdi), %rcx
    add 40(%rdi), %rcx
    mov 224(%rsp), %r11
    mov %r11, -8(%rcx)
    mov %rdi, -16(%rcx)
    subq $16, 56(%rsp)  /* the copy's stack_size (offset 48, after the pushed rdi) */
    lea 8(%rsp), %rdi
    mov ${nr_clone3}, %eax
    syscall
    test %rax, %rax
    jz 2f
    pop %rdi
    lea 216(%rsp), %rsp
    ret
2:  call zp_new_thread
    pop %rdi
    ret
8:  testq ${clone_vfork}, (%rdi)
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
    movb $1, {forked}(%rip)  /* FORKED = true */
    lea -128(%rsp), %rsp
    call zp_forked_block
    call zp_child_sud
    lea 128(%rsp), %rsp
1:  ret

/*
 * In a new thread (a child with its own stack): forget the creator's interposer block
 * (%gs base 0: the first hook entry attaches one), then re-arm Syscall User Dispatch.
 */
zp_new_thread:
    cmpb $0, {stacks_on}(%rip)
    je zp_child_sud
    xor %ecx, %ecx
    wrgsbase %rcx
    jmp zp_child_sud

/*
 * In a fork child: the block we run on is this process's copy, and its recorded owner
 * (the parent's thread) says nothing about it here: mark it never to be reclaimed.
 */
zp_forked_block:
    cmpb $0, {stacks_on}(%rip)
    je 1f
    rdgsbase %rcx
    test %rcx, %rcx
    jz 1f
    movq $0, {zb_tid}(%rcx)
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
    mov ${nr_prctl}, %eax
    mov ${pr_set_syscall_user_dispatch}, %edi
    mov ${pr_sys_dispatch_on}, %esi
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

/* Signal restorer for our own signal handlers; lives in our code, which SUD allows. */
    .globl zp_restore_rt
    .hidden zp_restore_rt
    .p2align 4
zp_restore_rt:
    mov ${nr_rt_sigreturn}, %eax
    syscall
    ud2
