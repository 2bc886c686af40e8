/* mmap of a file, checked against read(): MAP_PRIVATE (read-only, then written
 * privately), MAP_SHARED read-only, a length past the end of the file (zeros), a
 * MAP_FIXED mapping over a reservation, a second page at an offset when the file is
 * long enough, and a MAP_SHARED writable mapping (which lkl-run refuses for an LKL
 * file with ENODEV; the host allows it for a file opened O_RDWR, not O_RDONLY: EACCES).
 *
 * Usage: mapfile PATH. Prints "mapfile ok SIZE" and exits 0, or names the first
 * mismatch and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096

static int fail(const char *what)
{
	printf("mapfile: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The bytes of [off, off + len) the mapping at m must hold: the file's, then zeros. */
static void same(const char *what, const unsigned char *m, const unsigned char *file,
		 size_t size, size_t off, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char want = off + i < size ? file[off + i] : 0;
		if (m[i] != want) {
			printf("mapfile: %s: byte %zu is %#x, the file has %#x\n", what,
			       off + i, m[i], want);
			exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mapfile PATH\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		fail("open");
	struct stat st;
	if (fstat(fd, &st) < 0)
		fail("fstat");
	size_t size = st.st_size;
	unsigned char *file = malloc(size + 1);
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, file + got, size - got);
		if (n <= 0)
			fail("read");
		got += n;
	}
	if (size == 0) {
		printf("mapfile: %s is empty\n", argv[1]);
		return 1;
	}
	size_t len = (size + PAGE - 1) / PAGE * PAGE;

	unsigned char *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap MAP_PRIVATE");
	same("MAP_PRIVATE", p, file, size, 0, size);
	/* The rest of the last page reads as zeros. */
	same("MAP_PRIVATE tail", p + size, file, size, size, len - size);
	munmap(p, size);

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap MAP_PRIVATE writable");
	p[0] ^= 0xff;
	if (pread(fd, file, 1, 0) != 1 || file[0] == p[0]) {
		printf("mapfile: a private write reached the file\n");
		return 1;
	}
	munmap(p, size);

	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap MAP_SHARED read-only");
	same("MAP_SHARED", p, file, size, 0, size);
	munmap(p, size);

	/* Offset 0, a length a page past the end of the file: the first page beyond the
	 * file is not read here (the kernel would raise SIGBUS there). */
	p = mmap(NULL, len + PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap past the end");
	same("past the end", p, file, size, 0, len);
	munmap(p, len + PAGE);

	/* MAP_FIXED inside a reservation, a page from its start. */
	unsigned char *r = mmap(NULL, len + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		fail("reserve");
	p = mmap(r + PAGE, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (p != r + PAGE)
		fail("mmap MAP_FIXED");
	same("MAP_FIXED", p, file, size, 0, size);
	munmap(r, len + 2 * PAGE);

	if (size > PAGE) {
		p = mmap(NULL, size - PAGE, PROT_READ, MAP_PRIVATE, fd, PAGE);
		if (p == MAP_FAILED)
			fail("mmap at an offset");
		same("at an offset", p, file, size, PAGE, size - PAGE);
		munmap(p, size - PAGE);
	}

	errno = 0;
	p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 1);
	if (p != MAP_FAILED || errno != EINVAL) {
		printf("mapfile: an unaligned offset gave %s\n", strerror(errno));
		return 1;
	}
	errno = 0;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p != MAP_FAILED)
		printf("mapfile: MAP_SHARED writable of an O_RDONLY fd mapped\n");
	else
		printf("mapfile: MAP_SHARED writable: %s\n", strerror(errno));
	close(fd);

	fd = open(argv[1], O_RDWR);
	if (fd >= 0) {
		errno = 0;
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			printf("mapfile: MAP_SHARED writable of an O_RDWR fd: %s\n",
			       strerror(errno));
		else
			munmap(p, size);
		close(fd);
	}
	printf("mapfile ok %zu\n", size);
	return 0;
}
