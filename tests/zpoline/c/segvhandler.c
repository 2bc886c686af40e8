/* A program that catches its own NULL-read SIGSEGV and recovers with siglongjmp, like
 * runtimes with implicit null checks do. With a second argument it first dlopens that
 * library (named libjvm.so in the test, to look like a JVM). */
#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sigjmp_buf env;
static volatile int caught;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_addr == (void *)(long)8)
		caught++;
	siglongjmp(env, 1);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigfillset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	if (argc > 2 && !dlopen(argv[2], RTLD_NOW))
		return 2;
	volatile int *p = (volatile int *)strtoul(argc > 1 ? argv[1] : "8", NULL, 0);
	for (int i = 0; i < 3; i++) {
		if (!sigsetjmp(env, 1))
			printf("read %d\n", *p);
	}
	printf("caught %d\n", caught);
	return caught == 3 ? 0 : 1;
}
