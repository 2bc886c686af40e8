/* Values kept in the red zone and in xmm/ymm registers across a raw syscall. */
#include <stdio.h>
#include <string.h>

static int red_zone(void)
{
	unsigned long bad = 0;
	/* Fill -16..-128(%rsp) (the red zone past the return-address slot), syscall, check. */
	__asm__ volatile(
		"mov $0x1111111111111111, %%r8\n"
		"mov $-16, %%rcx\n"
		"1: mov %%r8, (%%rsp,%%rcx)\n"
		"sub $8, %%rcx\n"
		"cmp $-128, %%rcx\n"
		"jge 1b\n"
		"mov $110, %%eax\n"
		"syscall\n"
		"mov $-16, %%rdx\n"
		"2: cmp %%r8, (%%rsp,%%rdx)\n"
		"je 3f\n"
		"inc %0\n"
		"3: sub $8, %%rdx\n"
		"cmp $-128, %%rdx\n"
		"jge 2b\n"
		: "+r"(bad)
		:
		: "rax", "rcx", "rdx", "r8", "r11", "memory");
	return bad == 0;
}

__attribute__((target("avx"))) static int vectors(void)
{
	unsigned long x[4] = {0x0123456789abcdef, 0xfedcba9876543210, 0x1122334455667788, 0x99aabbccddeeff00};
	unsigned long a[4], b[4], c[2];
	__asm__ volatile(
		"vmovdqu (%3), %%ymm2\n"
		"vmovdqu (%3), %%ymm9\n"
		"movdqu (%3), %%xmm15\n"
		"mov $110, %%eax\n"
		"syscall\n"
		"mov $39, %%eax\n"
		"syscall\n"
		"vmovdqu %%ymm2, (%0)\n"
		"vmovdqu %%ymm9, (%1)\n"
		"movdqu %%xmm15, (%2)\n"
		:
		: "r"(a), "r"(b), "r"(c), "r"(x)
		: "rax", "rcx", "r11", "xmm2", "xmm9", "xmm15", "memory");
	return !memcmp(a, x, 32) && !memcmp(b, x, 32) && !memcmp(c, x, 16);
}

static int gprs(void)
{
	long bad;
	__asm__ volatile(
		"push %%rbx\n push %%rbp\n push %%r12\n push %%r13\n push %%r14\n push %%r15\n"
		"mov $1, %%rbx\n mov $2, %%rbp\n mov $3, %%r12\n mov $4, %%r13\n mov $5, %%r14\n mov $6, %%r15\n"
		"mov $7, %%rdi\n mov $8, %%rsi\n mov $9, %%rdx\n mov $10, %%r10\n mov $11, %%r8\n mov $12, %%r9\n"
		"mov $110, %%eax\n syscall\n"
		"xor %%eax, %%eax\n"
		"cmp $1, %%rbx\n jne 9f\n cmp $2, %%rbp\n jne 9f\n cmp $3, %%r12\n jne 9f\n"
		"cmp $4, %%r13\n jne 9f\n cmp $5, %%r14\n jne 9f\n cmp $6, %%r15\n jne 9f\n"
		"cmp $7, %%rdi\n jne 9f\n cmp $8, %%rsi\n jne 9f\n cmp $9, %%rdx\n jne 9f\n"
		"cmp $10, %%r10\n jne 9f\n cmp $11, %%r8\n jne 9f\n cmp $12, %%r9\n jne 9f\n"
		"jmp 8f\n"
		"9: mov $1, %%eax\n"
		"8: pop %%r15\n pop %%r14\n pop %%r13\n pop %%r12\n pop %%rbp\n pop %%rbx\n"
		: "=a"(bad)
		:
		: "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
	return bad == 0;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	int ok = 1;
	if (!strcmp(what, "all") || !strcmp(what, "redzone"))
		ok &= red_zone();
	if (!strcmp(what, "all") || !strcmp(what, "vector"))
		ok &= vectors();
	if (!strcmp(what, "all") || !strcmp(what, "gprs"))
		ok &= gprs();
	printf("%s %s\n", what, ok ? "ok" : "BROKEN");
	return ok ? 0 : 1;
}
