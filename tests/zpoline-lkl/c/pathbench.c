/*
 * pathbench: the figures of scripts/bench-pathcall.sh. ns per call of the calls
 * busybox tar makes for each file it extracts, each the best of 5 rounds of N
 * calls, on a file of its own (created if missing):
 *
 *   getuid getppid umask fstat fchmod stat lstat chmod open+close access
 *
 *   pathbench N [FILE [CALL]]   FILE defaults to /tmp/pathbench-file; CALL runs
 *                               that one only
 *
 * Prints one line "<call> <ns>" per call, or "error <reason>".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Best of 5 rounds of n runs of body, printed as "name ns". */
#define BENCH(name, body)                                                  \
	do {                                                               \
		double best = 1e300;                                       \
		if (only && strcmp(only, name))                            \
			break;                                             \
		for (int round = 0; round < 5; round++) {                  \
			double t = now_ns();                               \
			for (long i = 0; i < n; i++) {                     \
				body;                                      \
			}                                                  \
			t = (now_ns() - t) / n;                            \
			if (t < best)                                      \
				best = t;                                  \
		}                                                          \
		printf("%-10s %8.0f\n", name, best);                       \
	} while (0)

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 0;
	const char *f = argc > 2 ? argv[2] : "/tmp/pathbench-file";
	const char *only = argc > 3 ? argv[3] : NULL;
	struct stat st;
	int fd;

	if (n <= 0) {
		fprintf(stderr, "usage: pathbench N [FILE [CALL]]\n");
		return 2;
	}
	fd = open(f, O_CREAT | O_RDWR, 0644);
	if (fd < 0) {
		printf("error open %s: %s\n", f, strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	BENCH("getuid", syscall(SYS_getuid));
	BENCH("getppid", syscall(SYS_getppid));
	BENCH("umask", syscall(SYS_umask, 022));
	BENCH("fstat", fstat(fd, &st));
	BENCH("fchmod", fchmod(fd, 0644));
	BENCH("stat", stat(f, &st));
	BENCH("lstat", lstat(f, &st));
	BENCH("chmod", chmod(f, 0644));
	BENCH("open+close", close(open(f, O_RDONLY)));
	BENCH("access", access(f, R_OK));
	return 0;
}
