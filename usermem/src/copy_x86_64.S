/*
 * Fault-safe copies between the interposer and the program's memory, x86-64, AT&T
 * syntax. Included by copy.rs via global_asm!. Braces are format placeholders here:
 * comments must not contain any.
 *
 * The program's bytes are touched only by the instructions of these two routines.
 * When one of them faults (a bad pointer: unmapped, PROT_NONE, read-only for a
 * write), the CPU raises SIGSEGV with rip at that instruction. The SIGSEGV handler
 * (trampoline's, which owns SIGSEGV wherever these routines are switched on) asks
 * usermem::fault_fixup(rip), which maps any rip in [usermem_copy_start,
 * usermem_copy_end) to the recovery label of the routine it lies in; the handler
 * sets rip there and returns, and the routine returns -1, as the kernel's exception
 * table turns a faulting user access into -EFAULT.
 *
 * Contract of both routines (SysV calls from Rust):
 *   rdi = our buffer, rsi = the other side, rdx = n.
 *   They use rax, rcx, rdi, rsi, rdx and the flags only, never the stack: a fault
 *   leaves nothing to undo, and a signal handler that interrupts a copy may make one
 *   of its own (each frame has its own registers).
 */
	.text
	.p2align 4
	.globl usermem_copy_start
	.hidden usermem_copy_start
usermem_copy_start:

/*
 * long usermem_copy_bytes(void *dst, const void *src, size_t n)
 * Copies n bytes from src to dst: 0, or -1 on a fault (the bytes before the faulting
 * one may have been copied, as with the kernel's copies).
 */
	.globl usermem_copy_bytes
	.hidden usermem_copy_bytes
	.type usermem_copy_bytes, @function
usermem_copy_bytes:
	/* The ABI has the direction flag clear at a call; be sure anyway. */
	cld
	mov %rdx, %rcx
	/* The access: reads src and writes dst; either may fault. */
	rep movsb
	xor %eax, %eax
	ret
	.size usermem_copy_bytes, . - usermem_copy_bytes

/*
 * long usermem_copy_str(char *dst, const char *src, size_t n)
 * Copies the NUL-terminated string at src, its NUL included, or its first n bytes:
 * the string's length when the NUL is among the first n bytes, n when it is not,
 * -1 on a fault. Reads byte by byte, so nothing past the NUL is touched (a string
 * that ends right before an unmapped page is read whole).
 */
	.globl usermem_copy_str
	.hidden usermem_copy_str
	.type usermem_copy_str, @function
usermem_copy_str:
	xor %eax, %eax
1:
	/* n bytes copied and no NUL among them: return n. */
	cmp %rdx, %rax
	jae 2f
	/* The access: the only load from src; it may fault. */
	movzbl (%rsi,%rax), %ecx
	movb %cl, (%rdi,%rax)
	test %cl, %cl
	jz 2f
	inc %rax
	jmp 1b
2:
	ret
	.size usermem_copy_str, . - usermem_copy_str

	.globl usermem_copy_end
	.hidden usermem_copy_end
usermem_copy_end:

/*
 * The recovery label, outside the range above: a faulting access of either routine
 * resumes here, with the routine's frame as it was (nothing pushed), and returns -1
 * to the routine's caller.
 */
	.globl usermem_copy_fault
	.hidden usermem_copy_fault
usermem_copy_fault:
	mov $-1, %rax
	ret
