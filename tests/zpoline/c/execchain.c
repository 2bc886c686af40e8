/* execve chain: re-executes itself N times through different paths, then runs /bin/echo. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0;
	char buf[16];
	if (n >= 5) {
		execl("/bin/echo", "echo", "chain done", (char *)NULL);
		return 1;
	}
	snprintf(buf, sizeof(buf), "%d", n + 1);
	/* alternate between argv[0], /proc/self/exe and a failing exec first */
	if (n % 2)
		execl("/proc/self/exe", argv[0], buf, (char *)NULL);
	execl("/nonexistent/prog", "x", (char *)NULL); /* must fail and return */
	execl(argv[0], argv[0], buf, (char *)NULL);
	return 2;
}
