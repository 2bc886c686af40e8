/* A dynamically linked program for the test image: prints argv[0], its
 * /proc/self/exe, libgreet's greeting (a library only the image has) and whether
 * greet_ppid's own syscall returned our parent's pid. */
#include <stdio.h>
#include <unistd.h>

const char *greet(void);
long greet_ppid(void);

int main(int argc, char **argv)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	printf("imghello argv0=%s exe=%s\n", argv[0], exe);
	printf("%s; ppid %s\n", greet(), greet_ppid() == getppid() ? "ok" : "wrong");
	for (int i = 1; i < argc; i++)
		printf("arg %d: %s\n", i, argv[i]);
	return 0;
}
