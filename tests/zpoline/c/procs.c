/* fork, vfork, posix_spawn and clone3 (with and without a new stack). */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int status_of(pid_t p)
{
	int st;
	if (waitpid(p, &st, 0) != p)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static volatile int shared_flag;

/* clone3 whose child, on its own stack, exits at once with `code` (raw, in asm: the
 * child has no C frames to return through). */
static long clone3_exit_child(struct clone_args *ca, long code)
{
	long r;
	__asm__ volatile("mov $435, %%eax\n"
			 "syscall\n"
			 "test %%rax, %%rax\n"
			 "jnz 1f\n"
			 "mov %3, %%rdi\n"
			 "mov $60, %%eax\n"
			 "syscall\n"
			 "1:\n"
			 : "=&a"(r)
			 : "D"(ca), "S"(sizeof(*ca)), "r"(code)
			 : "rcx", "r11", "memory");
	return r;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	int all = !strcmp(what, "all");
	if (all || !strcmp(what, "fork")) {
		pid_t p = fork();
		if (p == 0)
			_exit(7);
		if (status_of(p) != 7)
			return 10;
		puts("fork ok");
	}
	if (all || !strcmp(what, "vfork")) {
		for (int i = 0; i < 50; i++) {
			pid_t p = vfork();
			if (p == 0) {
				shared_flag = i;
				_exit(3);
			}
			if (p < 0 || status_of(p) != 3 || shared_flag != i)
				return 11;
		}
		pid_t p = vfork();
		if (p == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(99);
		}
		if (status_of(p) != 0)
			return 12;
		puts("vfork ok");
	}
	if (all || !strcmp(what, "posix_spawn")) {
		for (int i = 0; i < 20; i++) {
			pid_t p;
			char *args[] = {"sh", "-c", "exit 5", NULL};
			if (posix_spawn(&p, "/bin/sh", NULL, NULL, args, environ))
				return 13;
			if (status_of(p) != 5)
				return 14;
		}
		puts("posix_spawn ok");
	}
	if (all || !strcmp(what, "clone3")) {
		/* fork-like clone3 (no stack) */
		struct clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.exit_signal = SIGCHLD;
		long p = syscall(SYS_clone3, &ca, sizeof(ca));
		if (p == 0)
			_exit(9);
		if (p < 0 || status_of(p) != 9)
			return 15;
		/* vfork-like clone3 with a new stack, child execs */
		size_t sz = 1 << 16;
		char *stk = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(&ca, 0, sizeof(ca));
		ca.flags = CLONE_VM | CLONE_VFORK;
		ca.exit_signal = SIGCHLD;
		ca.stack = (uint64_t)(uintptr_t)stk;
		ca.stack_size = sz;
		p = clone3_exit_child(&ca, 4);
		if (p < 0 || status_of(p) != 4)
			return 16;
		puts("clone3 ok");
	}
	return 0;
}
