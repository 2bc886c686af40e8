/* -nostdlib, no thread block (%fs base 0): socket + getsockname twice through LKL. */
static long sys(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
void _start(void) {
    char buf[128]; int len = sizeof buf;
    long s = sys(41, 2, 2, 0);
    long r1 = sys(51, s, (long)buf, (long)&len);
    len = sizeof buf;
    long r2 = sys(51, s, (long)buf, (long)&len);
    sys(1, 1, (long)(s >= 0 && r1 == 0 && r2 == 0 ? "ok\n" : "bad\n"), s >= 0 && r1 == 0 && r2 == 0 ? 3 : 4);
    sys(231, 0, 0, 0);
}
