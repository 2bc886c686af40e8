/* Writes `mov $110,%eax; syscall; ret` into an RWX buffer (after mapping) and calls it:
 * the rewriter never sees it; the Syscall User Dispatch fallback must. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	unsigned char code[] = {0xb8, 110, 0, 0, 0, 0x0f, 0x05, 0xc3};
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	memcpy(p, code, sizeof(code));
	long (*f)(void) = (long (*)(void))p;
	long r = 0;
	for (int i = 0; i < 5; i++)
		r += f() == getppid();
	printf("jit %ld\n", r);
	return r == 5 ? 0 : 2;
}
