/* JIT syscalls in a new thread and in a fork child: Syscall User Dispatch must be on in
 * every task, though the kernel does not inherit it. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/wait.h>
static long (*f)(void);
static void *run(void *a) { long r = 0; for (int i = 0; i < 5; i++) r += f() == getppid(); return (void *)r; }
/* A thread that exists before the JIT buffer does: arming must reach it too. */
static volatile int go;
static void *early(void *a) { while (!go) usleep(1000); return run(a); }
int main(void) {
	pthread_t e; void *re; pthread_create(&e, NULL, early, NULL);
	usleep(20000);
	unsigned char code[] = {0xb8, 110, 0, 0, 0, 0x0f, 0x05, 0xc3};
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memcpy(p, code, sizeof(code)); f = (long (*)(void))p;
	pthread_t t; void *r; pthread_create(&t, NULL, run, NULL); pthread_join(t, &r);
	pid_t c = fork(); if (c == 0) _exit((int)(long)run(0)); int st; waitpid(c, &st, 0); printf("child %d\n", WEXITSTATUS(st));
	sleep(1);
	go = 1; pthread_join(e, &re);
	printf("thread %ld\n", (long)r);
	printf("early %ld\n", (long)re);
}
