/*
 * Built with -fsanitize=address: fills and sums a heap buffer. With the argument
 * "overflow" it reads one element past the end, which AddressSanitizer reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	int n = 100;
	int over = argc > 1 && strcmp(argv[1], "overflow") == 0;
	int *v = malloc(n * sizeof(*v));
	long sum = 0;
	if (!v)
		return 2;
	for (int i = 0; i < n; i++)
		v[i] = i;
	for (int i = 0; i < n + over; i++)
		sum += v[i];
	free(v);
	printf("sum %ld\n", sum);
	return 0;
}
