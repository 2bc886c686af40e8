/* Under lkl-run --zpoline with the LKL backend:
 *   mixpoll poll    : one poll loop over a host file, a pipe and an LKL UDP socket
 *                     (bound on LKL's loopback, sent a datagram by itself); exits 0
 *                     when all three were seen readable and read back.
 *   mixpoll enosys  : getdents (x86-64 only, LKL has no such call) on an LKL socket
 *                     must fail with ENOSYS.
 *   mixpoll getsockname N : N getsockname calls on an LKL socket, then N on a host
 *                     (AF_UNIX) socket; prints "lkl NS host NS" in ns per call.
 *   mixpoll fork    : (--private-kernel) a forked child sees its inherited LKL socket
 *                     fail with EBADF and a new AF_INET socket with EAFNOSUPPORT; the
 *                     parent's socket still works after.
 *   mixpoll fork-shared : a forked child sends on its inherited LKL socket, makes a
 *                     socket of its own and closes both; the parent's still works.
 *   mixpoll interrupted : SIGALRM ends poll and recvmmsg blocked in LKL with EINTR;
 *                     with SA_RESTART, recvmmsg goes on until a datagram comes.
 *   mixpoll epoll   : one epoll set over a pipe and an LKL UDP socket; both seen.
 *   mixpoll threads : 4 threads, each with its own LKL socket, echo datagrams to
 *                     themselves at once.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what) { perror(what); return 1; }

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* A UDP socket bound on LKL's loopback; its address in *a. */
static int udp_self(struct sockaddr_in *a) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return -1;
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof b;
    if (bind(s, (struct sockaddr *)&b, sizeof b) || getsockname(s, (struct sockaddr *)&b, &l)) return -1;
    *a = b;
    return s;
}

/* Sends one byte to itself and reads it back. */
static int echo_self(int s, const struct sockaddr_in *a, char c) {
    char r = 0;
    if (sendto(s, &c, 1, 0, (const struct sockaddr *)a, sizeof *a) != 1) return -1;
    if (recv(s, &r, 1, 0) != 1 || r != c) return -1;
    return 0;
}

static void *thread_main(void *arg) {
    struct sockaddr_in a;
    int s = udp_self(&a);
    if (s < 0) return (void *)1;
    for (int i = 0; i < 200; i++)
        if (echo_self(s, &a, (char)(i + (long)arg))) return (void *)1;
    close(s);
    return NULL;
}

/* Waits for child pid: 0 when it exited with 0, else says how it ended and returns 1. */
static int child_ok(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "child: %#x\n", st); return 1; }
    return 0;
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

/* SIGALRM in 200 ms, its handler with or without SA_RESTART. */
static void alarm_soon(int restart) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 200000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/*
 * Calls blocked in LKL that no slicing covers (poll, recvmmsg), ended by a signal as
 * on Linux: EINTR without SA_RESTART (always for poll), restarted with it.
 */
static int interrupted_calls(void) {
    struct sockaddr_in a;
    int s = udp_self(&a);
    if (s < 0) return die("udp_self");
    struct pollfd p = {s, POLLIN, 0};
    alarm_soon(1);
    int r = poll(&p, 1, 5000);
    if (r != -1 || errno != EINTR || alarms != 1) { fprintf(stderr, "poll: %d %d\n", r, alarms); return 1; }
    char b[8];
    struct iovec v = {b, sizeof b};
    struct mmsghdr m;
    memset(&m, 0, sizeof m);
    m.msg_hdr.msg_iov = &v;
    m.msg_hdr.msg_iovlen = 1;
    alarm_soon(0);
    r = recvmmsg(s, &m, 1, 0, NULL);
    if (r != -1 || errno != EINTR || alarms != 2) { fprintf(stderr, "recvmmsg: %d %d\n", r, alarms); return 1; }
    alarm_soon(1);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(600000);
        _exit(sendto(s, "r", 1, 0, (struct sockaddr *)&a, sizeof a) != 1);
    }
    r = recvmmsg(s, &m, 1, 0, NULL);
    if (r != 1 || b[0] != 'r' || alarms != 3) { fprintf(stderr, "restarted recvmmsg: %d %d\n", r, alarms); return 1; }
    if (child_ok(pid)) return 1;
    puts("interrupted ok");
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "poll";
    if (!strcmp(mode, "enosys")) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (s < 0) return die("socket");
        char buf[256];
        long r = syscall(SYS_getdents, s, buf, sizeof buf);
        if (r == -1 && errno == ENOSYS) { puts("ENOSYS"); return 0; }
        printf("getdents = %ld errno %d\n", r, errno);
        return 1;
    }
    if (!strcmp(mode, "getsockname")) {
        long n = argc > 2 ? atol(argv[2]) : 100000;
        int s = socket(AF_INET, SOCK_DGRAM, 0), u = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (s < 0 || u < 0) return die("socket");
        struct sockaddr_storage ss;
        double best[2] = {1e18, 1e18};
        for (int round = 0; round < 3; round++) {
            for (int k = 0; k < 2; k++) {
                int fd = k ? u : s;
                double t0 = now_ns();
                for (long i = 0; i < n; i++) {
                    socklen_t l = sizeof ss;
                    syscall(SYS_getsockname, fd, &ss, &l);
                }
                double per = (now_ns() - t0) / n;
                if (per < best[k]) best[k] = per;
            }
        }
        printf("lkl %.1f host %.1f\n", best[0], best[1]);
        return 0;
    }
    if (!strcmp(mode, "fork")) {
        struct sockaddr_in a;
        int s = udp_self(&a);
        if (s < 0) return die("udp_self");
        pid_t pid = fork();
        if (pid == 0) {
            int bad = 0;
            if (sendto(s, "c", 1, 0, (struct sockaddr *)&a, sizeof a) != -1 || errno != EBADF) bad |= 1;
            if (socket(AF_INET, SOCK_DGRAM, 0) != -1 || errno != EAFNOSUPPORT) bad |= 2;
            if (close(s) != 0) bad |= 4;
            if (socket(AF_UNIX, SOCK_DGRAM, 0) < 0) bad |= 8;
            _exit(bad);
        }
        if (child_ok(pid)) return 1;
        if (echo_self(s, &a, 'p')) return die("parent echo after fork");
        puts("fork ok");
        return 0;
    }
    if (!strcmp(mode, "interrupted")) return interrupted_calls();
    if (!strcmp(mode, "fork-shared")) {
        /* One kernel for the tree: the child's inherited socket is the parent's. */
        struct sockaddr_in a;
        int s = udp_self(&a);
        if (s < 0) return die("udp_self");
        pid_t pid = fork();
        if (pid == 0) {
            int bad = 0;
            if (sendto(s, "c", 1, 0, (struct sockaddr *)&a, sizeof a) != 1) bad |= 1;
            int t = socket(AF_INET, SOCK_DGRAM, 0);
            if (t < 0) bad |= 2;
            else close(t);
            if (close(s) != 0) bad |= 4;
            _exit(bad);
        }
        char c = 0;
        if (child_ok(pid)) return 1;
        if (recv(s, &c, 1, 0) != 1 || c != 'c') return die("the child's datagram");
        if (echo_self(s, &a, 'p')) return die("parent echo after fork");
        puts("fork-shared ok");
        return 0;
    }
    if (!strcmp(mode, "epoll")) {
        struct sockaddr_in a;
        int s = udp_self(&a), p[2], ep = epoll_create1(EPOLL_CLOEXEC);
        if (s < 0 || pipe(p) || ep < 0) return die("setup");
        struct epoll_event e1 = {.events = EPOLLIN, .data.u32 = 1}, e2 = {.events = EPOLLIN, .data.u32 = 2};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e1) || epoll_ctl(ep, EPOLL_CTL_ADD, s, &e2))
            return die("epoll_ctl");
        int seen = 0;
        for (int turn = 1; turn <= 20 && seen != 3; turn++) {
            if (turn == 2 && write(p[1], "p", 1) != 1) return die("write");
            if (turn == 3 && sendto(s, "u", 1, 0, (struct sockaddr *)&a, sizeof a) != 1) return die("sendto");
            struct epoll_event ev[4];
            int n = epoll_wait(ep, ev, 4, 1000);
            if (n < 0) return die("epoll_wait");
            for (int i = 0; i < n; i++) {
                char c;
                if (ev[i].data.u32 == 1 && read(p[0], &c, 1) == 1) seen |= 1;
                if (ev[i].data.u32 == 2 && recv(s, &c, 1, 0) == 1) seen |= 2;
            }
        }
        if (seen != 3) { fprintf(stderr, "epoll saw %d\n", seen); return 1; }
        if (close(ep)) return die("close epoll");
        puts("epoll ok");
        return 0;
    }
    if (!strcmp(mode, "threads")) {
        pthread_t t[4];
        for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, thread_main, (void *)i);
        long bad = 0;
        for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); bad |= (long)r; }
        if (bad) { fputs("a thread failed\n", stderr); return 1; }
        puts("threads ok");
        return 0;
    }
    int file = open("/proc/self/status", O_RDONLY);
    int p[2];
    if (file < 0) return die("open");
    if (pipe(p)) return die("pipe");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &al))
        return die("bind");
    int seen = 0, turns = 0;
    while (seen != 7 && turns++ < 20) {
        if (turns == 2 && write(p[1], "p", 1) != 1) return die("write");
        if (turns == 3 && sendto(s, "u", 1, 0, (struct sockaddr *)&a, sizeof a) != 1)
            return die("sendto");
        struct pollfd f[3] = {{file, POLLIN, 0}, {p[0], POLLIN, 0}, {s, POLLIN, 0}};
        int n = poll(f, 3, 1000);
        if (n < 0) return die("poll");
        char c[64];
        if (f[0].revents & POLLIN) { seen |= 1; }
        if (f[1].revents & POLLIN) { if (read(p[0], c, 1) != 1) return die("read pipe"); seen |= 2; }
        if (f[2].revents & POLLIN) { if (recv(s, c, sizeof c, 0) != 1) return die("recv"); seen |= 4; }
        printf("turn %d: ready %d, seen %d\n", turns, n, seen);
    }
    if (seen != 7) { fprintf(stderr, "not all seen: %d\n", seen); return 1; }
    puts("all three readable");
    return 0;
}
