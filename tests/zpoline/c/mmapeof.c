/* Maps a one-page file as code with a three-page PROT_EXEC mapping (pages past EOF
 * raise SIGBUS when touched) and calls the syscall in it: the rewriter must stop at
 * the end of the file. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	char path[] = "/tmp/zpoline-mmapeof-XXXXXX";
	int fd = mkstemp(path);
	unsigned char code[] = {0xb8, 110, 0, 0, 0, 0x0f, 0x05, 0xc3};
	if (fd < 0 || write(fd, code, sizeof(code)) != sizeof(code))
		return 1;
	unlink(path);
	long (*f)(void) = (long (*)(void))mmap(NULL, 3 * 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if ((void *)f == MAP_FAILED)
		return 2;
	long r = f();
	printf("mmapeof %s\n", r == getppid() ? "ok" : "BROKEN");
	return 0;
}
