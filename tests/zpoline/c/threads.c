#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static long sums[8];

static void *work(void *arg)
{
	long i = (long)arg;
	for (int k = 0; k < 1000; k++)
		sums[i] += syscall(SYS_getppid) > 0;
	return NULL;
}

int main(void)
{
	pthread_t t[8];
	for (long i = 0; i < 8; i++)
		if (pthread_create(&t[i], NULL, work, (void *)i))
			return 1;
	long total = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		total += sums[i];
	}
	printf("threads %ld\n", total);
	return total == 8000 ? 0 : 2;
}
