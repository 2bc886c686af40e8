/* Linked against preload_ctor.c's library, found through LD_LIBRARY_PATH only. */
#include <stdio.h>

int preload_answer(void);

int main(void)
{
	printf("answer %d\n", preload_answer());
	return 0;
}
