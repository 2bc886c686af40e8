/*
 * inotify DIR: watches DIR for creations and deletions, makes and removes
 * DIR/made, and prints each event it reads ("create made", "delete made"),
 * waiting with poll; then removes the watch ("rm_watch ok").
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[4096];
	char buf[4096] __attribute__((aligned(8)));
	int seen = 0, fd, wd, f;

	if (argc != 2) {
		fprintf(stderr, "usage: inotify DIR\n");
		return 2;
	}
	fd = inotify_init1(IN_CLOEXEC);
	if (fd < 0) {
		perror("inotify_init1");
		return 1;
	}
	wd = inotify_add_watch(fd, argv[1], IN_CREATE | IN_DELETE);
	if (wd < 0) {
		perror("inotify_add_watch");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/made", argv[1]);
	f = open(path, O_CREAT | O_WRONLY, 0644);
	if (f < 0 || close(f) < 0 || unlink(path) < 0) {
		perror(path);
		return 1;
	}
	while (seen < 2) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 5000) != 1) {
			printf("no event within 5 s\n");
			return 1;
		}
		n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			perror("read");
			return 1;
		}
		for (char *at = buf; at < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)at;

			printf("%s %s\n", e->mask & IN_CREATE ? "create" : "delete",
			       e->len ? e->name : "");
			seen++;
			at += sizeof(*e) + e->len;
		}
	}
	if (inotify_rm_watch(fd, wd) < 0) {
		perror("inotify_rm_watch");
		return 1;
	}
	printf("rm_watch ok\n");
	return 0;
}
