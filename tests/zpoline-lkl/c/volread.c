/* Reads of one open file of a volume, checked byte for byte: the file's byte at
 * offset i is (i % 251), so every read names the offset it came from.
 *
 * Usage:
 *   volread offsets PATH     read, lseek, pread, readv, preadv, a dup, a forked child
 *                            and an exec'd image sharing the open file description,
 *                            /proc/self/fdinfo's pos, fstat, mmap; prints "offsets ok"
 *   volread coherent PATH HOSTPATH
 *                            PATH (a volume's file) open for reading while the same
 *                            file is written on the host (HOSTPATH) and through LKL
 *                            by another fd: each read sees the change; "coherent ok"
 *   volread child FD POS     (exec'd by offsets) FD's offset is POS; reads 10 bytes
 *
 * Exits 0, or names the first mismatch and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *what)
{
	printf("volread: %s (errno %d: %s)\n", what, errno, strerror(errno));
	exit(1);
}

/* buf holds the file's bytes from offset off. */
static void check(const char *what, const unsigned char *buf, size_t len, off_t off)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != (unsigned char)((off + i) % 251)) {
			printf("volread: %s: byte %zu (offset %lld) is %u, not %u\n", what, i,
			       (long long)(off + i), buf[i], (unsigned)((off + i) % 251));
			exit(1);
		}
	}
}

static off_t pos(int fd)
{
	off_t p = lseek(fd, 0, SEEK_CUR);
	if (p < 0)
		fail("lseek SEEK_CUR");
	return p;
}

static void expect_pos(const char *what, int fd, off_t want)
{
	off_t p = pos(fd);
	if (p != want) {
		printf("volread: %s: offset %lld, not %lld\n", what, (long long)p, (long long)want);
		exit(1);
	}
}

/* read exactly len bytes at the current offset, checked. */
static void read_at_cur(const char *what, int fd, size_t len)
{
	static unsigned char buf[1 << 20];
	off_t at = pos(fd);
	if (read(fd, buf, len) != (ssize_t)len)
		fail(what);
	check(what, buf, len, at);
}

/* /proc/self/fdinfo/FD's pos: line. */
static long long fdinfo_pos(int fd)
{
	char name[64], line[256];
	snprintf(name, sizeof(name), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(name, "r");
	if (!f)
		fail("open fdinfo");
	long long p = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "pos: %lld", &p) == 1)
			break;
	fclose(f);
	return p;
}

static int offsets(const char *self, const char *path)
{
	unsigned char buf[65536], a[3000], b[5000];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("open");
	struct stat st;
	if (fstat(fd, &st) || st.st_size < (1 << 20))
		fail("fstat (a file of 1 MiB or more)");

	read_at_cur("read", fd, 100000);
	expect_pos("after read", fd, 100000);
	if (pread(fd, buf, 4096, 5000) != 4096)
		fail("pread");
	check("pread", buf, 4096, 5000);
	expect_pos("after pread", fd, 100000);

	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	if (readv(fd, iov, 2) != (ssize_t)(sizeof(a) + sizeof(b)))
		fail("readv");
	check("readv[0]", a, sizeof(a), 100000);
	check("readv[1]", b, sizeof(b), 100000 + sizeof(a));
	expect_pos("after readv", fd, 108000);
	if (preadv(fd, iov, 2, 777) != (ssize_t)(sizeof(a) + sizeof(b)))
		fail("preadv");
	check("preadv[0]", a, sizeof(a), 777);
	check("preadv[1]", b, sizeof(b), 777 + sizeof(a));
	expect_pos("after preadv", fd, 108000);
	if (fdinfo_pos(fd) != 108000) {
		printf("volread: fdinfo pos %lld, not 108000\n", fdinfo_pos(fd));
		return 1;
	}

	if (lseek(fd, 300001, SEEK_SET) != 300001)
		fail("lseek SEEK_SET");
	read_at_cur("read after lseek", fd, 999);
	if (lseek(fd, -1000, SEEK_END) != st.st_size - 1000)
		fail("lseek SEEK_END");
	read_at_cur("read at the end", fd, 1000);
	if (read(fd, buf, 10) != 0)
		fail("read at EOF is not 0");
	if (posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL))
		fail("posix_fadvise");

	/* A dup shares the offset both ways. */
	lseek(fd, 400000, SEEK_SET);
	int d = dup(fd);
	if (d < 0)
		fail("dup");
	read_at_cur("read through the dup", d, 50000);
	expect_pos("the original after the dup's read", fd, 450000);
	read_at_cur("read through the original", fd, 50000);
	expect_pos("the dup after the original's read", d, 500000);
	int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	if (d2 < 100)
		fail("F_DUPFD_CLOEXEC");
	read_at_cur("read through F_DUPFD", d2, 1000);
	if (dup2(d2, 50) != 50)
		fail("dup2");
	read_at_cur("read through dup2", 50, 1000);
	expect_pos("the original after dup2's read", fd, 502000);
	close(d);
	close(d2);
	close(50);

	/* A forked child reads from the same open file description. */
	pid_t c = fork();
	if (c < 0)
		fail("fork");
	if (c == 0) {
		read_at_cur("read in the forked child", fd, 12345);
		_exit(0);
	}
	int ws;
	if (waitpid(c, &ws, 0) != c || !WIFEXITED(ws) || WEXITSTATUS(ws))
		fail("the forked child failed");
	expect_pos("after the forked child's read", fd, 502000 + 12345);

	/* An exec'd image keeps the fd (not close-on-exec) and its offset. */
	char fdarg[16], posarg[32];
	snprintf(fdarg, sizeof(fdarg), "%d", fd);
	snprintf(posarg, sizeof(posarg), "%lld", (long long)pos(fd));
	fflush(stdout);
	c = fork();
	if (c < 0)
		fail("fork for exec");
	if (c == 0) {
		execl(self, self, "child", fdarg, posarg, (char *)NULL);
		_exit(127);
	}
	if (waitpid(c, &ws, 0) != c || !WIFEXITED(ws) || WEXITSTATUS(ws))
		fail("the exec'd child failed");
	expect_pos("after the exec'd child's read", fd, 502000 + 12345 + 10);

	/* mmap of the file: the same bytes. */
	unsigned char *m = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		fail("mmap MAP_SHARED");
	check("mmap MAP_SHARED", m, st.st_size, 0);
	munmap(m, st.st_size);
	m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 4096 * 3);
	if (m == MAP_FAILED)
		fail("mmap MAP_PRIVATE");
	check("mmap MAP_PRIVATE at an offset", m, 8192, 4096 * 3);
	m[0] ^= 1;
	munmap(m, 8192);
	if (close(fd))
		fail("close");
	if (read(fd, buf, 1) != -1 || errno != EBADF)
		fail("read after close is not EBADF");
	printf("offsets ok\n");
	return 0;
}

static int child(const char *fdarg, const char *posarg)
{
	int fd = atoi(fdarg);
	expect_pos("the exec'd image's offset", fd, atoll(posarg));
	read_at_cur("read in the exec'd image", fd, 10);
	return 0;
}

static void expect_bytes(const char *what, int fd, off_t off, const char *want)
{
	char buf[16] = { 0 };
	size_t n = strlen(want);
	if (pread(fd, buf, n, off) != (ssize_t)n)
		fail(what);
	if (memcmp(buf, want, n)) {
		printf("volread: %s: read \"%.*s\", not \"%s\"\n", what, (int)n, buf, want);
		exit(1);
	}
}

static int coherent(const char *path, const char *hostpath)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("open");
	unsigned char buf[16];
	if (read(fd, buf, 8) != 8)
		fail("read");
	check("first read", buf, 8, 0);

	/* Changed on the host (a host path, outside the volume's mount). */
	int h = open(hostpath, O_WRONLY);
	if (h < 0)
		fail("open the host path");
	if (pwrite(h, "HOST", 4, 4096) != 4)
		fail("pwrite on the host");
	close(h);
	expect_bytes("after the host's write", fd, 4096, "HOST");

	/* Written through LKL by another fd of the volume. */
	int w = open(path, O_WRONLY);
	if (w < 0)
		fail("open for writing");
	if (pwrite(w, "LKL!", 4, 8192) != 4)
		fail("pwrite through LKL");
	expect_bytes("after LKL's write (fd still open)", fd, 8192, "LKL!");
	close(w);
	expect_bytes("after LKL's write", fd, 8192, "LKL!");
	expect_pos("the reader's offset", fd, 8);
	read_at_cur("read on", fd, 4000);
	printf("coherent ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "offsets"))
		return offsets(argv[0], argv[2]);
	if (argc == 4 && !strcmp(argv[1], "coherent"))
		return coherent(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "child"))
		return child(argv[2], argv[3]);
	fprintf(stderr, "usage: volread offsets PATH | coherent PATH HOSTPATH\n");
	return 2;
}
