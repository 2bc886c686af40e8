/* A program that tries to unmap, remap or reprotect page 0, as buggy code (munmap of a
 * NULL pointer) or low-memory users do: the sled must survive, the calls must answer
 * as on a kernel where page 0 is not mappable. */
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	int a = munmap(NULL, 4096);
	int b = mprotect(NULL, 4096, PROT_READ | PROT_WRITE);
	void *c = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	/* still alive and interposed afterwards */
	printf("page0 %d %d %s %d\n", a, b, c == MAP_FAILED ? "refused" : "mapped", getppid() > 0);
	return 0;
}
