/* execveat relative to a directory fd (`execat DIR NAME`), or of an fd of the file
 * itself with AT_EMPTY_PATH, as fexecve does (`execat -f FILE`). The new program gets
 * the argument "via-execveat". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: execat DIR NAME | execat -f FILE\n");
		return 2;
	}
	int empty = strcmp(argv[1], "-f") == 0;
	int fd = empty ? open(argv[2], O_RDONLY) : open(argv[1], O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		perror("execat: open");
		return 1;
	}
	char *args[] = { argv[2], "via-execveat", NULL };
	syscall(SYS_execveat, fd, empty ? "" : argv[2], args, environ,
		empty ? AT_EMPTY_PATH : 0);
	perror("execat: execveat");
	return 1;
}
