/* A static, libc-free program issuing a known number of raw syscalls:
 * 100 x getppid, 1 x write, 1 x exit_group = 102. */
static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static volatile int counter;

__attribute__((force_align_arg_pointer, noreturn)) void _start(void)
{
	/* The loop counter is a global: a local could live in the red zone, whose first 8
	 * bytes below %rsp `call *%rax` overwrites (see docs/zpoline.md). */
	for (counter = 0; counter < 100; counter++)
		sys3(110, 0, 0, 0);
	sys3(1, 1, (long)"raw ok\n", 7);
	for (;;)
		sys3(231, 0, 0, 0);
}
