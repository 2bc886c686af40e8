/*
 * A thread made by a raw clone(CLONE_SETTLS) in a JIT buffer: with --sud=never the
 * interposer never sees it being created, and it inherits its creator's %gs base.
 * Both threads then take the hook path (mmap, munmap) at the same time; they must not
 * share an interposer stack. Under the default lazy SUD the clone goes through SIGSYS
 * into the stub instead.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ROUNDS 2000

static volatile int child_done, child_bad;
static char child_tls[4096] __attribute__((aligned(64)));
static char child_stack[65536] __attribute__((aligned(16)));

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return r;
}

/* mmap, fill, check, munmap: the fill and check see a corrupted frame's effects. */
static int churn(unsigned char tag)
{
	for (int i = 0; i < ROUNDS; i++) {
		long p = sys6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p < 0 && p > -4096)
			return 0;
		memset((void *)p, tag, 4096);
		if (((unsigned char *)p)[4095] != tag)
			return 0;
		if (sys6(SYS_munmap, p, 4096, 0, 0, 0, 0) != 0)
			return 0;
	}
	return 1;
}

/* Entered by the JIT code's `ret` on the new stack; raw syscalls only (no libc TLS). */
static void child_main(void)
{
	child_bad = !churn(0x5a);
	child_done = 1;
	for (;;)
		sys6(SYS_exit, 0, 0, 0, 0, 0, 0);
}

int main(void)
{
	/* mov %rcx,%r10; mov $56,%eax; syscall; ret */
	static const unsigned char code[] = {0x49, 0x89, 0xca, 0xb8, 56, 0, 0, 0, 0x0f, 0x05, 0xc3};
	unsigned char *jit = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (jit == MAP_FAILED)
		return 2;
	memcpy(jit, code, sizeof(code));
	long (*raw_clone)(long, void *, void *, void *, void *) = (void *)jit;
	/* The child starts with rsp at sp and returns into child_main. */
	void **sp = (void **)(child_stack + sizeof(child_stack) - 16);
	*sp = (void *)child_main;
	/* %fs of the child: its own (empty) block, as CLONE_SETTLS gives any new thread. */
	*(void **)child_tls = child_tls;
	long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;
	long tid = raw_clone(flags, sp, 0, 0, child_tls);
	if (tid <= 0) {
		printf("clone failed %ld\n", tid);
		return 1;
	}
	int ok = churn(0xa5);
	while (!child_done)
		sched_yield();
	printf("rawclone %s\n", ok && !child_bad ? "ok" : "FAILED");
	return ok && !child_bad ? 0 : 1;
}
