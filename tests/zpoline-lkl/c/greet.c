/* A shared library that exists only inside the test image (libgreet.so): a program
 * that prints its greeting loaded it from LKL's file system. greet_ppid makes its
 * system call with an inline `syscall` instruction of this library's own code, so
 * `--trace` shows it only if the library's executable mapping was rewritten. */
#include <unistd.h>

const char *greet(void)
{
	return "greetings from the image's libgreet";
}

long greet_ppid(void)
{
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(110L) /* getppid */
			 : "rcx", "r11", "memory");
	return r;
}
