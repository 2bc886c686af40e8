/*
 * Built with -fsanitize=thread: two threads add to a counter under a mutex.
 * With the argument "race" they add without it, which ThreadSanitizer reports.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static long counter;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int racy;

static void *work(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++) {
		if (!racy)
			pthread_mutex_lock(&lock);
		counter++;
		if (!racy)
			pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[2];
	racy = argc > 1 && strcmp(argv[1], "race") == 0;
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, work, NULL))
			return 2;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("counter %ld\n", racy ? 20000 : counter);
	return 0;
}
