/* Under lkl-run --zpoline with the LKL backend and views (nameserver, mount proc):
 * bad pointers (NULL + 1, an unmapped page, a PROT_NONE page, a read-only page for
 * output) given to the calls whose arguments the backend reads or writes itself get
 * EFAULT, as from the host kernel, and the program goes on. Prints "efault ok" and
 * exits 0 when every case did; names the failing case otherwise.
 *
 * The backend copies in process while SIGSEGV is not blocked (a fault in its copy
 * resumes as EFAULT) and through process_vm_readv/writev while it is; so the path
 * cases run again with SIGSEGV blocked, and once from a signal handler. The program's
 * own SIGSEGV handler, installed first, must never see those faults.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;
static volatile sig_atomic_t program_segv, in_handler_errno = -1;

static void on_segv(int sig) {
    (void)sig;
    program_segv++;
    /* Returning would fault again: leave at once, saying why. */
    static const char msg[] = "FAIL the program's SIGSEGV handler ran for a copy fault\n";
    write(1, msg, sizeof msg - 1);
    _exit(1);
}

/* A signal handler that makes a path call with a bad path: EFAULT there too. */
static void on_usr1(int sig) {
    (void)sig;
    struct stat st;
    long r = syscall(SYS_stat, (char *)1, &st);
    in_handler_errno = r == -1 ? errno : 0;
}

/* The path cases of a bad pointer `p` named `name`, `how` saying in which state. */
static void path_cases(const char *how, const char *name, char *p);

/* A raw system call's result must be -1 with EFAULT. */
static void efault(const char *what, long r) {
    if (r != -1 || errno != EFAULT) {
        printf("FAIL %s: got %ld, errno %d (%s), want EFAULT\n", what, r, errno, strerror(errno));
        failures++;
    }
}

static void ok(const char *what, long r) {
    if (r < 0) {
        printf("FAIL %s: %s\n", what, strerror(errno));
        failures++;
    }
}

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    /* Three pages: the middle one unmapped; then a PROT_NONE page and a read-only one. */
    char *three = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *none = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (three == MAP_FAILED || none == MAP_FAILED || ro == MAP_FAILED || munmap(three + page, page)) {
        perror("mmap");
        return 1;
    }
    char *unmapped = three + page;
    char *bad[] = {(char *)1, unmapped, none};
    const char *names[] = {"NULL+1", "unmapped", "PROT_NONE"};

    /* A view path running into the unmapped page: its NUL is not readable. */
    char *edge = unmapped - 9;
    memcpy(edge, "/proc/net", 9);

    signal(SIGSEGV, on_segv);
    for (int i = 0; i < 3; i++)
        path_cases("", names[i], bad[i]);
    efault("open(a view path running into an unmapped page)", syscall(SYS_open, edge, O_RDONLY));
    efault("stat(/etc/resolv.conf, read-only page)", syscall(SYS_stat, "/etc/resolv.conf", ro));

    /* SIGSEGV blocked: a fault would kill, so the copies go through the kernel. */
    sigset_t segv, old;
    sigemptyset(&segv);
    sigaddset(&segv, SIGSEGV);
    sigprocmask(SIG_BLOCK, &segv, &old);
    for (int i = 0; i < 3; i++)
        path_cases("SIGSEGV blocked: ", names[i], bad[i]);
    efault("SIGSEGV blocked: stat(/etc/resolv.conf, read-only page)",
           syscall(SYS_stat, "/etc/resolv.conf", ro));
    sigprocmask(SIG_SETMASK, &old, NULL);

    /* In a signal handler. */
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    if (in_handler_errno != EFAULT) {
        printf("FAIL stat(NULL+1) in a signal handler: errno %d, want EFAULT\n",
               (int)in_handler_errno);
        failures++;
    }
    struct { unsigned long long flags, mode, resolve; } how = {O_RDONLY, 0, 0};
    efault("openat2(resolv.conf, NULL+1 open_how)",
           syscall(SYS_openat2, AT_FDCWD, "/etc/resolv.conf", (void *)1, sizeof how));

    /* The views still work. */
    int v = syscall(SYS_openat2, AT_FDCWD, "/etc/resolv.conf", &how, sizeof how);
    ok("openat2(/etc/resolv.conf)", v);
    if (v >= 0) close(v);

    /* Sockets: an LKL UDP socket on LKL's loopback, and a second one. */
    int s = socket(AF_INET, SOCK_DGRAM, 0), s2 = socket(AF_INET, SOCK_DGRAM, 0);
    ok("socket", s);
    ok("socket", s2);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof what, "connect(%s)", names[i]);
        efault(what, syscall(SYS_connect, s, bad[i], sizeof lo));
        snprintf(what, sizeof what, "bind(%s)", names[i]);
        efault(what, syscall(SYS_bind, s, bad[i], sizeof lo));
        snprintf(what, sizeof what, "fstat(LKL socket, %s)", names[i]);
        efault(what, syscall(SYS_fstat, s, bad[i]));
        snprintf(what, sizeof what, "fstat via newfstatat(LKL socket, \"\", %s)", names[i]);
        efault(what, syscall(SYS_newfstatat, s, "", bad[i], AT_EMPTY_PATH));
        snprintf(what, sizeof what, "poll(%s)", names[i]);
        efault(what, syscall(SYS_poll, bad[i], 1, 0));
    }
    fd_set *rset = (fd_set *)unmapped;
    efault("select(LKL socket, unmapped fd_set)", syscall(SYS_select, s + 1, rset, NULL, NULL, NULL));
    int ep = epoll_create1(0);
    efault("epoll_ctl(LKL socket, unmapped event)", syscall(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, s, unmapped));
    efault("rt_sigaction(SIGUSR1, unmapped act)", syscall(SYS_rt_sigaction, SIGUSR1, unmapped, NULL, 8));

    /* sendfile to an LKL socket with a bad offset pointer, from a host file and from
     * an LKL socket. */
    ok("bind", bind(s, (struct sockaddr *)&lo, sizeof lo));
    socklen_t l = sizeof lo;
    ok("getsockname", getsockname(s, (struct sockaddr *)&lo, &l));
    ok("connect", connect(s2, (struct sockaddr *)&lo, sizeof lo));
    int f = open("/proc/self/exe", O_RDONLY);
    ok("open(/proc/self/exe)", f);
    efault("sendfile(LKL socket, host file, unmapped offset)", syscall(SYS_sendfile, s2, f, unmapped, 1));
    /* A read-only offset is read, the byte sent, then the offset cannot be written
     * back: EFAULT after the send, as from the host kernel. */
    efault("sendfile(LKL socket, host file, read-only offset)", syscall(SYS_sendfile, s2, f, ro, 1));
    char first = 0;
    if (recv(s, &first, 1, 0) != 1 || first != 0x7f) {
        printf("FAIL the byte sendfile sent before its EFAULT: got %d\n", first);
        failures++;
    }
    efault("sendfile(LKL socket, LKL socket, NULL+1 offset)", syscall(SYS_sendfile, s2, s, (void *)1, 1));

    /* The program goes on: the sockets still work. */
    char c = 'x', r = 0;
    if (send(s2, &c, 1, 0) != 1 || recv(s, &r, 1, 0) != 1 || r != 'x') {
        printf("FAIL echo after the bad pointers: %s\n", strerror(errno));
        failures++;
    }
    if (program_segv) {
        printf("FAIL the program's SIGSEGV handler ran %d times\n", (int)program_segv);
        failures++;
    }
    if (failures) return 1;
    printf("efault ok\n");
    return 0;
}

static void path_cases(const char *how, const char *name, char *p) {
    char what[128];
    struct stat st;
    snprintf(what, sizeof what, "%sopen(%s)", how, name);
    efault(what, syscall(SYS_open, p, O_RDONLY));
    snprintf(what, sizeof what, "%sopenat(%s)", how, name);
    efault(what, syscall(SYS_openat, AT_FDCWD, p, O_RDONLY));
    snprintf(what, sizeof what, "%sstat(%s)", how, name);
    efault(what, syscall(SYS_stat, p, &st));
    snprintf(what, sizeof what, "%saccess(%s)", how, name);
    efault(what, syscall(SYS_access, p, R_OK));
    snprintf(what, sizeof what, "%sstat(/etc/resolv.conf, %s)", how, name);
    efault(what, syscall(SYS_stat, "/etc/resolv.conf", p));
    snprintf(what, sizeof what, "%snewfstatat(/etc/resolv.conf, %s)", how, name);
    efault(what, syscall(SYS_newfstatat, AT_FDCWD, "/etc/resolv.conf", p, 0));
}
