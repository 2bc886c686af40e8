/* A syscall instruction straddling a page boundary (0F at 0xfff, 05 at 0x1000), in a
 * segment mapped from the file so the loader rewrites it. */
#include <stdio.h>
#include <unistd.h>

__asm__(".section .text.straddle,\"ax\",@progbits\n"
	".p2align 12\n"
	".globl straddle\n"
	"straddle:\n"
	"  mov $110, %eax\n"
	"  jmp 1f\n"
	"  .org 4095, 0x90\n"
	"1:\n"
	"  syscall\n"
	"  ret\n"
	".text\n");

long straddle(void);

int main(void)
{
	long r = straddle();
	printf("straddle %s\n", r == getppid() ? "ok" : "BROKEN");
	return r == getppid() ? 0 : 1;
}
