/*
 * How much of the caller's stack a syscall uses below the caller's rsp: each call runs
 * with rsp at the top of a painted area that sits right above a PROT_NONE guard page,
 * and the lowest byte changed is reported. A native syscall changes none.
 *
 * Usage: stackuse MODE
 *   getppid      raw getppid (the fast pass-through; the hook under --trace/--count)
 *   mmap         mmap + mprotect + munmap (the hook path)
 *   socket       socket(AF_INET) + bind + getsockname + close (LKL under lkl-run)
 *   thread       mmap as the first hooked call of a new thread (attaching its stack)
 *   nested       mmap from a signal handler that interrupts a hooked call
 *   lowstack     mmap with 1 KiB of stack left above the guard page
 * Prints "MODE used N" (bytes below the caller's rsp, the largest over the calls).
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define AREA (64 * 1024)
#define PAINT 0xa5

static unsigned char *area; /* [guard page][AREA painted bytes] */

/* syscall nr(a..f) with rsp = top; the old rsp is kept in r12 (callee-saved). */
static long on_stack(void *top, long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long r;
	__asm__ volatile("mov %%rsp, %%r12\n"
			 "mov %[top], %%rsp\n"
			 "syscall\n"
			 "mov %%r12, %%rsp\n"
			 : "=a"(r)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9), [top] "r"(top)
			 : "rcx", "r11", "r12", "memory");
	return r;
}

static void paint(void)
{
	memset(area + 4096, PAINT, AREA);
}

/* Bytes below top that no longer hold the paint. */
static long used(void)
{
	unsigned char *p = area + 4096;
	unsigned char *top = p + AREA;
	while (p < top && *p == PAINT)
		p++;
	return top - p;
}

static long worst;

static long call(long nr, long a, long b, long c, long d, long e, long f)
{
	paint();
	long r = on_stack(area + 4096 + AREA, nr, a, b, c, d, e, f);
	long u = used();
	if (u > worst)
		worst = u;
	return r;
}

static int do_mmap(void)
{
	long p = call(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p < 0 && p > -4096)
		return 0;
	if (call(SYS_mprotect, p, 4096, PROT_READ, 0, 0, 0) != 0)
		return 0;
	return call(SYS_munmap, p, 4096, 0, 0, 0, 0) == 0;
}

static void *thread_main(void *arg)
{
	(void)arg;
	return (void *)(long)do_mmap();
}

static volatile int in_handler;

static void on_alarm(int sig)
{
	(void)sig;
	/* The handler runs where the kernel put it; its mmap is a nested hook entry. */
	void *p = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		munmap(p, 4096);
		in_handler++;
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	area = mmap(0, AREA + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || mprotect(area, 4096, PROT_NONE))
		return 2;
	int ok = 1;
	if (!strcmp(mode, "getppid")) {
		for (int i = 0; i < 100; i++)
			ok &= call(SYS_getppid, 0, 0, 0, 0, 0, 0) == getppid();
	} else if (!strcmp(mode, "mmap")) {
		for (int i = 0; i < 20; i++)
			ok &= do_mmap();
	} else if (!strcmp(mode, "socket")) {
		for (int i = 0; i < 5; i++) {
			long s = call(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0, 0);
			struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
			socklen_t len = sizeof(sin);
			ok &= s >= 0;
			ok &= call(SYS_bind, s, (long)&sin, sizeof(sin), 0, 0, 0) == 0;
			ok &= call(SYS_getsockname, s, (long)&sin, (long)&len, 0, 0, 0) == 0;
			ok &= sin.sin_port != 0;
			ok &= call(SYS_close, s, 0, 0, 0, 0, 0) == 0;
		}
	} else if (!strcmp(mode, "thread")) {
		for (int i = 0; i < 4; i++) {
			pthread_t t;
			void *r;
			ok &= pthread_create(&t, 0, thread_main, 0) == 0;
			ok &= pthread_join(t, &r) == 0 && r == (void *)1;
		}
	} else if (!strcmp(mode, "nested")) {
		struct sigaction sa = {.sa_handler = on_alarm};
		sigaction(SIGALRM, &sa, 0);
		int fds[2];
		if (pipe(fds))
			return 2;
		struct itimerval it = {.it_interval = {0, 5000}, .it_value = {0, 5000}};
		setitimer(ITIMER_REAL, &it, 0);
		/* read blocks in the hook (under --trace/--count) until the alarms stop it */
		for (int i = 0; i < 20 && in_handler < 20; i++) {
			char c;
			call(SYS_read, fds[0], (long)&c, 1, 0, 0, 0);
		}
		struct itimerval off = {0};
		setitimer(ITIMER_REAL, &off, 0);
		ok &= in_handler > 0;
		/* The handler itself runs on the painted stack: only the calls' own use counts. */
		worst = 0;
		ok &= do_mmap();
	} else if (!strcmp(mode, "lowstack")) {
		void *top = area + 4096 + 1024;
		long p = on_stack(top, SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ok &= !(p < 0 && p > -4096);
		ok &= on_stack(top, SYS_munmap, p, 4096, 0, 0, 0, 0) == 0;
	} else {
		fprintf(stderr, "usage: stackuse getppid|mmap|socket|thread|nested|lowstack\n");
		return 2;
	}
	printf("%s used %ld %s\n", mode, worst, ok ? "ok" : "FAILED");
	return ok ? 0 : 1;
}
