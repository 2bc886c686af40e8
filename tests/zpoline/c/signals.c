/* SA_RESTART handlers on a sigaltstack interrupting blocking reads. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile int hits;
static char *alt;

static void on_alarm(int sig)
{
	char here;
	(void)sig;
	if (&here >= alt && &here < alt + 65536)
		hits++;
	/* a syscall inside the handler, on the alternate stack */
	getppid();
}

int main(void)
{
	alt = malloc(65536);
	stack_t ss = {.ss_sp = alt, .ss_size = 65536};
	if (sigaltstack(&ss, NULL))
		return 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART | SA_ONSTACK;
	sigaction(SIGALRM, &sa, NULL);
	int fds[2];
	if (pipe(fds))
		return 2;
	if (fork() == 0) {
		usleep(300000);
		write(fds[1], "x", 1);
		_exit(0);
	}
	struct itimerval it = {.it_interval = {0, 10000}, .it_value = {0, 10000}};
	setitimer(ITIMER_REAL, &it, NULL);
	char c;
	ssize_t n = read(fds[0], &c, 1); /* restarted after each SIGALRM */
	struct itimerval off = {0};
	setitimer(ITIMER_REAL, &off, NULL);
	if (n != 1 || c != 'x')
		return 3;
	printf("signals ok %s\n", hits > 5 ? "many" : "few");
	return hits > 5 ? 0 : 4;
}
