/* Reads (r) or writes (w) the address given in argv[2] (0: NULL). It must die with
 * SIGSEGV; for reads of page 0 only where page 0 can be execute-only (protection keys).
 * The address comes from argv so the compiler cannot turn the access into a trap. */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	volatile int *p = (volatile int *)strtoul(argv[2], NULL, 0);
	if (argv[1][0] == 'w') {
		*p = 1;
		return 0;
	}
	printf("read %d\n", *p);
	return 0;
}
