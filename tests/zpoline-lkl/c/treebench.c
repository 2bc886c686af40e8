/*
 * treebench: the figures of scripts/bench-tree.sh.
 *
 *   treebench gsn N         ns per getsockname(2) on a UDP socket of its own,
 *                           best of 5 rounds of N calls
 *   treebench gsn-fork N    the same in a forked child, which opens its socket
 *                           after the fork; the parent waits for it
 *   treebench spawn N PROG ARGS...
 *                           wall time of N runs of PROG (fork, exec, wait):
 *                           minimum and median in ms
 *   treebench echo PORT     a TCP server on every address at PORT that sends
 *                           back each byte it gets, one forked child a
 *                           connection; prints "echo ready" once listening
 *   treebench rr ADDR PORT N
 *                           us per TCP 1-byte request/response to the echo
 *                           server at ADDR:PORT (TCP_NODELAY), best of 5
 *                           rounds of N, in this process
 *   treebench rr-fork ADDR PORT N
 *                           us per TCP 1-byte request/response to the echo
 *                           server at ADDR:PORT, made by a forked child
 *                           (TCP_NODELAY), best of 5 rounds of N
 *
 * Each prints one line "<figure> <value>" or "<figure> error <reason>".
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Best of 5 rounds of n getsockname calls on a fresh UDP socket. */
static int gsn(const char *figure, long n)
{
	struct sockaddr_in sin;
	socklen_t len;
	double best = 1e300;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0) {
		printf("%s error socket: %s\n", figure, strerror(errno));
		return 1;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		printf("%s error bind: %s\n", figure, strerror(errno));
		return 1;
	}
	for (int round = 0; round < 5; round++) {
		double t = now_ns();

		for (long i = 0; i < n; i++) {
			len = sizeof(sin);
			if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
				printf("%s error getsockname: %s\n", figure,
				       strerror(errno));
				return 1;
			}
		}
		t = (now_ns() - t) / n;
		if (t < best)
			best = t;
	}
	printf("%s %.1f\n", figure, best);
	close(fd);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* n runs of argv: minimum and median wall time in ms. */
static int spawn(long n, char **argv)
{
	double *t = calloc(n, sizeof(*t));

	if (!t)
		return 1;
	for (long i = 0; i < n; i++) {
		double start = now_ns();
		int status;
		pid_t pid = fork();

		if (pid == 0) {
			execv(argv[0], argv);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &status, 0) < 0 ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			printf("spawn error run %ld of %s failed\n", i, argv[0]);
			return 1;
		}
		t[i] = (now_ns() - start) / 1e6;
	}
	qsort(t, n, sizeof(*t), cmp);
	printf("spawn %.2f %.2f\n", t[0], t[n / 2]);
	return 0;
}

/* Serve one connection: every byte read is written back. */
static void echo_conn(int fd)
{
	char c;

	while (read(fd, &c, 1) == 1)
		if (write(fd, &c, 1) != 1)
			break;
	_exit(0);
}

static int echo(int port)
{
	struct sockaddr_in sin;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return 1;
	signal(SIGCHLD, SIG_IGN);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 16) < 0) {
		printf("echo error bind/listen: %s\n", strerror(errno));
		return 1;
	}
	printf("echo ready\n");
	for (;;) {
		int c = accept(fd, NULL, NULL);

		if (c < 0)
			continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (fork() == 0) {
			close(fd);
			echo_conn(c);
		}
		close(c);
	}
}

/* Best of 5 rounds of n 1-byte round trips to ADDR:PORT, in us each. */
static int rr(const char *figure, const char *addr, int port, long n)
{
	struct sockaddr_in sin;
	int one = 1;
	double best = 1e300;
	char c = 'x';
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (fd < 0 || inet_pton(AF_INET, addr, &sin.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		printf("%s error connect %s:%d: %s\n", figure, addr, port,
		       strerror(errno));
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int round = 0; round < 5; round++) {
		double t = now_ns();

		for (long i = 0; i < n; i++) {
			if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) {
				printf("%s error round trip: %s\n", figure,
				       strerror(errno));
				return 1;
			}
		}
		t = (now_ns() - t) / n / 1e3;
		if (t < best)
			best = t;
	}
	printf("%s %.2f\n", figure, best);
	close(fd);
	return 0;
}

/* Wait for the child that makes the figure and pass on its exit status. */
static int in_child(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) < 0)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 0;

	if (argc > 2 && (!strcmp(argv[1], "rr-fork") || !strcmp(argv[1], "rr")))
		n = 1;
	if (argc < 3 || n <= 0) {
		fprintf(stderr, "usage: treebench gsn|gsn-fork N | spawn N PROG ARGS... | echo PORT | rr|rr-fork ADDR PORT N\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "gsn"))
		return gsn("gsn", n);
	if (!strcmp(argv[1], "gsn-fork")) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(gsn("gsn-fork", n));
		return pid < 0 ? 1 : in_child(pid);
	}
	if (!strcmp(argv[1], "echo"))
		return echo(n);
	if (!strcmp(argv[1], "rr-fork") && argc > 4 && atol(argv[4]) > 0) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(rr("rr-fork", argv[2], atoi(argv[3]), atol(argv[4])));
		return pid < 0 ? 1 : in_child(pid);
	}
	if (!strcmp(argv[1], "rr") && argc > 4 && atol(argv[4]) > 0)
		return rr("rr", argv[2], atoi(argv[3]), atol(argv[4]));
	if (!strcmp(argv[1], "spawn") && argc > 3)
		return spawn(n, argv + 3);
	fprintf(stderr, "treebench: unknown mode '%s'\n", argv[1]);
	return 2;
}
