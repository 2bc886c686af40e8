/* Raw syscalls with numbers no syscall has: past the fast sled (513..), at the end of
 * page 0 (4095), past it (5000) and x32's (0x40000000|nr). Each must get the kernel's
 * answer (-ENOSYS here) and the program must go on. */
#include <stdio.h>

static long raw(long n)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n) : "rcx", "r11", "memory");
	return r;
}

int main(void)
{
	static const long nrs[] = {511, 512, 513, 600, 616, 617, 618, 1000, 4094, 4095, 4096, 5000, 0x40000027, 0x7fffffff};
	for (unsigned i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++)
		printf("%#lx=%ld\n", nrs[i], raw(nrs[i]));
	printf("bignr done %ld\n", raw(39) > 0 ? 1L : 0L);
	return 0;
}
