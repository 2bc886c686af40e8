//! `liblkl-hijack.so`: loaded with `LD_PRELOAD` (see `bin/lkl-hijack.sh`),
//! it boots LKL before the program's `main` and serves the program's
//! network calls with LKL's TCP/IP stack, while files and everything else
//! stay on the host.
//!
//! # Start and end
//! A constructor (`.init_array`) loads the configuration with
//! `lkl-hijack-config` (`LKL_HIJACK_CONFIG_FILE`, `./lkl-hijack.json`, the
//! `LKL_HIJACK_*` variables), adds each `tap` interface with
//! [`lkl::add_net`], boots LKL with `boot_cmdline`, applies the rest with
//! [`lkl_net::apply`] and sleeps `delay_main`. A configuration or boot
//! error is printed to stderr and the process exits with status 1 before
//! `main`. LKL is halted by an `atexit` handler.
//!
//! # The two fd spaces
//! LKL's descriptors are offered to the program as LKL's fd + [`LKL_FD_OFFSET`]
//! (512, upstream's split): an fd at or above 512 is LKL's, one below is the
//! host's. Host descriptors at or above 512 are therefore not reachable
//! through the interposed calls (a first-cut limitation).
//!
//! # What is interposed
//! `socket` sends `AF_INET`, `AF_INET6`, `AF_NETLINK` and `AF_PACKET` to
//! LKL (other families, e.g. `AF_UNIX`, stay on the host). For LKL fds:
//! `bind`, `connect`, `listen`, `accept`, `accept4`, `getsockname`,
//! `getpeername`, `setsockopt`, `getsockopt`, `send`, `sendto`, `sendmsg`,
//! `recv`, `recvfrom`, `recvmsg`, `read`, `write`, `readv`, `writev`,
//! `close`, `ioctl`, `fcntl`, `shutdown`, `dup`, `dup2`, `dup3`, `poll`
//! (host-only, LKL-only and mixed sets; mixed sets are polled in turns of
//! at most 1 ms) and glibc's fortified `__read_chk`, `__recv_chk`,
//! `__recvfrom_chk`, `__poll_chk`. Host fds go to the host kernel with
//! `syscall(2)`, so the library (and LKL's own host threads, which call the
//! same symbols) never recurse into LKL.
//!
//! # Layouts
//! LKL's uapi (asm-generic) matches x86-64 Linux for `sockaddr*`, `iovec`,
//! `pollfd` and `msghdr` (LKL's `user_msghdr`: pointer, int, pointer,
//! `size_t`, pointer, `size_t`, unsigned), and for the `SOCK_*`/`O_*`
//! flags, so the program's pointers are passed through. LKL uses the
//! generic system call table: `poll` is `ppoll`, `dup2` is `dup3`, `send`
//! and `recv` are `sendto` and `recvfrom`.
//!
//! `ioctl` and `fcntl` are variadic in C; they are defined here with one
//! `long` argument, which the x86-64 calling convention passes in the same
//! register as the variadic integer or pointer argument.

use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lkl_sys as sys;

/// LKL fd `n` is fd `n + LKL_FD_OFFSET` for the program.
pub const LKL_FD_OFFSET: c_int = 512;

/// Set once LKL runs and the configuration is applied: until then (and
/// after halt) `socket` stays on the host.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The running kernel, halted at exit.
static KERNEL: Mutex<Option<lkl::Kernel>> = Mutex::new(None);

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    if let Err(e) = start() {
        eprintln!("lkl-hijack: {e}");
        std::process::exit(1);
    }
}

fn start() -> Result<(), String> {
    let loaded = lkl_hijack_config::load().map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        eprintln!("lkl-hijack: warning: {w}");
    }
    let config = loaded.config;
    let started = lkl_net::start(&config).map_err(|e| e.to_string())?;
    *KERNEL.lock().unwrap_or_else(|p| p.into_inner()) = Some(started.kernel);
    // SAFETY: `halt_at_exit` is an `extern "C" fn()` that lives as long as
    // the process (this library is never unloaded while the program runs).
    if unsafe { libc::atexit(halt_at_exit) } != 0 {
        return Err("atexit failed".into());
    }
    ACTIVE.store(true, Ordering::Release);
    if let Some(d) = config.delay_main {
        std::thread::sleep(d);
    }
    Ok(())
}

extern "C" fn halt_at_exit() {
    ACTIVE.store(false, Ordering::Release);
    let kernel = KERNEL.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(k) = kernel {
        if let Err(e) = k.halt() {
            eprintln!("lkl-hijack: halt: {e}");
        }
    }
}

// ---------------------------------------------------------------------
// Helpers

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// The LKL fd behind program fd `fd`, if it is LKL's.
fn lkl_fd(fd: c_int) -> Option<c_long> {
    (fd >= LKL_FD_OFFSET).then(|| c_long::from(fd - LKL_FD_OFFSET))
}

/// Makes LKL system call `no`; on error sets errno and returns -1.
///
/// # Safety
/// The arguments must be valid for the call (pointers to memory of the
/// sizes the call expects).
unsafe fn lkl_call(no: u32, args: [c_long; 6]) -> c_long {
    // SAFETY: the caller's contract.
    match unsafe { lkl::syscall(c_long::from(no), args) } {
        Ok(v) => v,
        Err(e) => {
            set_errno(e.0);
            -1
        }
    }
}

/// An LKL call returning a new fd: offered to the program shifted.
///
/// # Safety
/// As [`lkl_call`].
unsafe fn lkl_call_fd(no: u32, args: [c_long; 6]) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { lkl_call(no, args) };
    if r < 0 {
        -1
    } else {
        r as c_int + LKL_FD_OFFSET
    }
}

fn p<T>(ptr: *const T) -> c_long {
    ptr as c_long
}

fn pm<T>(ptr: *mut T) -> c_long {
    ptr as c_long
}

/// The host kernel's system call `no` (errno set by libc on failure).
macro_rules! host {
    ($no:expr $(, $a:expr)*) => {
        // SAFETY: the arguments are the program's, passed through unchanged
        // to the host kernel, which validates them.
        unsafe { libc::syscall($no $(, $a)*) }
    };
}

// ---------------------------------------------------------------------
// Sockets

/// `socket(2)`.
#[no_mangle]
pub extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let lkl_family = matches!(
        domain,
        libc::AF_INET | libc::AF_INET6 | libc::AF_NETLINK | libc::AF_PACKET
    );
    if lkl_family && ACTIVE.load(Ordering::Acquire) {
        // SAFETY: integer arguments only.
        unsafe {
            lkl_call_fd(
                sys::__lkl__NR_socket,
                [domain.into(), ty.into(), protocol.into(), 0, 0, 0],
            )
        }
    } else {
        host!(libc::SYS_socket, domain, ty, protocol) as c_int
    }
}

/// `bind(2)`.
///
/// # Safety
/// `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const libc::sockaddr, len: u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer, same sockaddr layout in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_bind, [l, p(addr), len.into(), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_bind, fd, addr, len) as c_int,
    }
}

/// `connect(2)`.
///
/// # Safety
/// `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const libc::sockaddr, len: u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer, same sockaddr layout in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_connect, [l, p(addr), len.into(), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_connect, fd, addr, len) as c_int,
    }
}

/// `listen(2)`.
#[no_mangle]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_listen, [l, backlog.into(), 0, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_listen, fd, backlog) as c_int,
    }
}

/// `accept4(2)`.
///
/// # Safety
/// `addr` and `len` are null or point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut u32,
    flags: c_int,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers, same layouts in LKL.
        Some(l) => unsafe {
            lkl_call_fd(
                sys::__lkl__NR_accept4,
                [l, pm(addr), pm(len), flags.into(), 0, 0],
            )
        },
        None => host!(libc::SYS_accept4, fd, addr, len, flags) as c_int,
    }
}

/// `accept(2)`.
///
/// # Safety
/// As [`accept4`].
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut libc::sockaddr, len: *mut u32) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// `getsockname(2)`.
///
/// # Safety
/// `addr` and `len` point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut libc::sockaddr, len: *mut u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers, same layouts in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_getsockname, [l, pm(addr), pm(len), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_getsockname, fd, addr, len) as c_int,
    }
}

/// `getpeername(2)`.
///
/// # Safety
/// `addr` and `len` point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut libc::sockaddr, len: *mut u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers, same layouts in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_getpeername, [l, pm(addr), pm(len), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_getpeername, fd, addr, len) as c_int,
    }
}

/// `setsockopt(2)`.
///
/// # Safety
/// `val` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: u32,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_setsockopt,
                [l, level.into(), name.into(), p(val), len.into(), 0],
            ) as c_int
        },
        None => host!(libc::SYS_setsockopt, fd, level, name, val, len) as c_int,
    }
}

/// `getsockopt(2)`.
///
/// # Safety
/// `val` and `len` point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut u32,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_getsockopt,
                [l, level.into(), name.into(), pm(val), pm(len), 0],
            ) as c_int
        },
        None => host!(libc::SYS_getsockopt, fd, level, name, val, len) as c_int,
    }
}

/// `sendto(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes, `addr` to `alen` (or is null).
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    alen: u32,
) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_sendto,
                [l, p(buf), n as c_long, flags.into(), p(addr), alen.into()],
            ) as isize
        },
        None => host!(libc::SYS_sendto, fd, buf, n, flags, addr, alen) as isize,
    }
}

/// `send(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: the caller's contract.
    unsafe { sendto(fd, buf, n, flags, std::ptr::null(), 0) }
}

/// `sendmsg(2)`.
///
/// # Safety
/// `msg` is a valid `msghdr` (LKL's `user_msghdr` has the same layout).
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_sendmsg, [l, p(msg), flags.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_sendmsg, fd, msg, flags) as isize,
    }
}

/// `recvfrom(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes; `addr`/`alen` null or a buffer and
/// its length.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    alen: *mut u32,
) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_recvfrom,
                [l, pm(buf), n as c_long, flags.into(), pm(addr), pm(alen)],
            ) as isize
        },
        None => host!(libc::SYS_recvfrom, fd, buf, n, flags, addr, alen) as isize,
    }
}

/// `recv(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: the caller's contract.
    unsafe {
        recvfrom(
            fd,
            buf,
            n,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// `recvmsg(2)`.
///
/// # Safety
/// `msg` is a valid `msghdr` (LKL's `user_msghdr` has the same layout).
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_recvmsg, [l, pm(msg), flags.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_recvmsg, fd, msg, flags) as isize,
    }
}

/// `shutdown(2)`.
#[no_mangle]
pub extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_shutdown, [l, how.into(), 0, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_shutdown, fd, how) as c_int,
    }
}

// ---------------------------------------------------------------------
// Generic fd calls

/// `read(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_read, [l, pm(buf), n as c_long, 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_read, fd, buf, n) as isize,
    }
}

/// glibc's fortified `read`.
///
/// # Safety
/// As [`read`]; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, n: usize, buflen: usize) -> isize {
    if n > buflen {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { read(fd, buf, n) }
}

/// glibc's fortified `recv`.
///
/// # Safety
/// As [`recv`]; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    buflen: usize,
    flags: c_int,
) -> isize {
    if n > buflen {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { recv(fd, buf, n, flags) }
}

/// glibc's fortified `recvfrom`.
///
/// # Safety
/// As [`recvfrom`]; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    buflen: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    alen: *mut u32,
) -> isize {
    if n > buflen {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { recvfrom(fd, buf, n, flags, addr, alen) }
}

/// `write(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: usize) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_write, [l, p(buf), n as c_long, 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_write, fd, buf, n) as isize,
    }
}

/// `readv(2)`.
///
/// # Safety
/// `iov` points to `cnt` valid `iovec`s (same layout in LKL).
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_readv, [l, p(iov), cnt.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_readv, fd, iov, cnt) as isize,
    }
}

/// `writev(2)`.
///
/// # Safety
/// `iov` points to `cnt` valid `iovec`s (same layout in LKL).
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_writev, [l, p(iov), cnt.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_writev, fd, iov, cnt) as isize,
    }
}

/// `close(2)`.
#[no_mangle]
pub extern "C" fn close(fd: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe { lkl_call(sys::__lkl__NR_close, [l, 0, 0, 0, 0, 0]) as c_int },
        None => host!(libc::SYS_close, fd) as c_int,
    }
}

/// `ioctl(2)`, with its one optional argument as a `long` (see the crate
/// doc). Every request on an LKL fd goes to LKL (the `SIOC*` requests and
/// `FIONREAD`/`FIONBIO` alike).
///
/// # Safety
/// `arg` is what `req` expects.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: c_long) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's argument for this request.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_ioctl, [l, req as c_long, arg, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_ioctl, fd, req, arg) as c_int,
    }
}

/// `fcntl(2)`, with its one optional argument as a `long` (see the crate
/// doc). `F_DUPFD`/`F_DUPFD_CLOEXEC` on an LKL fd take and give program
/// fds.
///
/// # Safety
/// `arg` is what `cmd` expects.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    match lkl_fd(fd) {
        Some(l) if cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC => {
            let min = (arg - c_long::from(LKL_FD_OFFSET)).max(0);
            // SAFETY: integer arguments only.
            unsafe { lkl_call_fd(sys::__lkl__NR_fcntl, [l, cmd.into(), min, 0, 0, 0]) }
        }
        // SAFETY: the caller's argument for this command.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_fcntl, [l, cmd.into(), arg, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_fcntl, fd, cmd, arg) as c_int,
    }
}

/// `fcntl64` (glibc's name for `fcntl` on newer versions).
///
/// # Safety
/// As [`fcntl`].
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { fcntl(fd, cmd, arg) }
}

/// `dup(2)`.
#[no_mangle]
pub extern "C" fn dup(fd: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe { lkl_call_fd(sys::__lkl__NR_dup, [l, 0, 0, 0, 0, 0]) },
        None => host!(libc::SYS_dup, fd) as c_int,
    }
}

/// `dup3(2)`. Both fds must be in the same space (else `EBADF`).
#[no_mangle]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    match (lkl_fd(old), lkl_fd(new)) {
        // SAFETY: integer arguments only.
        (Some(o), Some(n)) => unsafe {
            lkl_call_fd(sys::__lkl__NR_dup3, [o, n, flags.into(), 0, 0, 0])
        },
        (None, None) => host!(libc::SYS_dup3, old, new, flags) as c_int,
        _ => {
            set_errno(libc::EBADF);
            -1
        }
    }
}

/// `dup2(2)`. Both fds must be in the same space (else `EBADF`).
#[no_mangle]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    match (lkl_fd(old), lkl_fd(new)) {
        (Some(o), Some(_)) if old == new => {
            // dup2 to itself: valid if the fd is open.
            // SAFETY: integer arguments only.
            let r =
                unsafe { lkl_call(sys::__lkl__NR_fcntl, [o, libc::F_GETFD.into(), 0, 0, 0, 0]) };
            if r < 0 {
                -1
            } else {
                new
            }
        }
        (Some(_), Some(_)) => dup3(old, new, 0),
        (None, None) => host!(libc::SYS_dup2, old, new) as c_int,
        _ => {
            set_errno(libc::EBADF);
            -1
        }
    }
}

// ---------------------------------------------------------------------
// poll

/// Polls `fds` in LKL (all LKL fds or negative) with `timeout_ms`.
fn lkl_poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> c_int {
    let mut copy: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: if f.fd < 0 { f.fd } else { f.fd - LKL_FD_OFFSET },
            events: f.events,
            revents: 0,
        })
        .collect();
    let ts;
    let tsp = if timeout_ms < 0 {
        std::ptr::null()
    } else {
        ts = sys::__lkl__kernel_timespec {
            tv_sec: (timeout_ms / 1000).into(),
            tv_nsec: (c_long::from(timeout_ms % 1000) * 1_000_000) as _,
        };
        &ts as *const sys::__lkl__kernel_timespec
    };
    // SAFETY: `copy` holds `copy.len()` pollfds (same layout in LKL), `tsp`
    // is null or a live timespec, the signal mask is null.
    let r = unsafe {
        lkl_call(
            sys::__lkl__NR_ppoll,
            [pm(copy.as_mut_ptr()), copy.len() as c_long, p(tsp), 0, 8, 0],
        )
    };
    for (f, c) in fds.iter_mut().zip(&copy) {
        f.revents = c.revents;
    }
    r as c_int
}

/// `poll(2)`: host-only sets go to the host, LKL-only sets to LKL; mixed
/// sets are polled in turns (LKL without waiting, then the host for at
/// most 1 ms) until something is ready or `timeout_ms` passes.
///
/// # Safety
/// `fds` points to `n` pollfds.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
    if n == 0 || fds.is_null() {
        return host!(libc::SYS_poll, fds, n, timeout_ms) as c_int;
    }
    // SAFETY: the caller's `n` pollfds.
    let all = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    let is_lkl = |f: &libc::pollfd| f.fd >= LKL_FD_OFFSET;
    let any_lkl = all.iter().any(is_lkl);
    let any_host = all.iter().any(|f| f.fd >= 0 && f.fd < LKL_FD_OFFSET);
    if !any_lkl {
        return host!(libc::SYS_poll, fds, n, timeout_ms) as c_int;
    }
    if !any_host {
        return lkl_poll(all, timeout_ms);
    }
    let (lkl_idx, host_idx): (Vec<usize>, Vec<usize>) = (0..all.len())
        .filter(|&i| all[i].fd >= 0)
        .partition(|&i| is_lkl(&all[i]));
    let mut lkl_set: Vec<libc::pollfd> = lkl_idx.iter().map(|&i| all[i]).collect();
    let mut host_set: Vec<libc::pollfd> = host_idx.iter().map(|&i| all[i]).collect();
    let start = std::time::Instant::now();
    loop {
        let a = lkl_poll(&mut lkl_set, 0);
        if a < 0 {
            return -1;
        }
        let left = if timeout_ms < 0 {
            1
        } else {
            let spent = start.elapsed().as_millis().min(c_int::MAX as u128) as c_int;
            (timeout_ms - spent).clamp(0, 1)
        };
        let wait = if a > 0 { 0 } else { left };
        let b = host!(
            libc::SYS_poll,
            host_set.as_mut_ptr(),
            host_set.len() as libc::nfds_t,
            wait
        ) as c_int;
        if b < 0 {
            return -1;
        }
        if a + b > 0 || left == 0 {
            for f in all.iter_mut() {
                f.revents = 0;
            }
            for (&i, f) in lkl_idx.iter().zip(&lkl_set) {
                all[i].revents = f.revents;
            }
            for (&i, f) in host_idx.iter().zip(&host_set) {
                all[i].revents = f.revents;
            }
            return a + b;
        }
    }
}

/// glibc's fortified `poll`.
///
/// # Safety
/// As [`poll`]; `fdslen` is the array's real size in bytes.
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout_ms: c_int,
    fdslen: usize,
) -> c_int {
    if (fdslen / std::mem::size_of::<libc::pollfd>()) < n as usize {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { poll(fds, n, timeout_ms) }
}

// The layouts passed through to LKL (see the crate doc).
const _: () =
    assert!(std::mem::size_of::<libc::msghdr>() == std::mem::size_of::<sys::lkl_user_msghdr>());
const _: () = assert!(
    std::mem::offset_of!(libc::msghdr, msg_controllen)
        == std::mem::offset_of!(sys::lkl_user_msghdr, msg_controllen)
);
const _: () = assert!(std::mem::size_of::<libc::pollfd>() == 8);

/// `select(2)`: sets holding no LKL fd (`nfds <= 512`) go to the host;
/// others are turned into a [`poll`] (which handles mixed sets). The
/// timeout is not updated with the time left.
///
/// # Safety
/// Each set is null or a valid `fd_set`; `tv` is null or a valid timeval.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    if nfds <= LKL_FD_OFFSET {
        return host!(libc::SYS_select, nfds, r, w, e, tv) as c_int;
    }
    if nfds > libc::FD_SETSIZE as c_int {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: each set is null or a valid fd_set (the caller's contract)
    // and `fd` is below FD_SETSIZE.
    let isset =
        |set: *mut libc::fd_set, fd: c_int| !set.is_null() && unsafe { libc::FD_ISSET(fd, set) };
    let mut pfds = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if isset(r, fd) {
            events |= libc::POLLIN;
        }
        if isset(w, fd) {
            events |= libc::POLLOUT;
        }
        if isset(e, fd) {
            events |= libc::POLLPRI;
        }
        if events != 0 {
            pfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }
    let timeout_ms = if tv.is_null() {
        -1
    } else {
        // SAFETY: `tv` is a valid timeval (the caller's contract).
        let t = unsafe { *tv };
        if t.tv_sec < 0 || t.tv_usec < 0 {
            set_errno(libc::EINVAL);
            return -1;
        }
        (t.tv_sec * 1000 + (t.tv_usec + 999) / 1000).min(c_long::from(c_int::MAX)) as c_int
    };
    // SAFETY: `pfds` holds `pfds.len()` pollfds.
    let n = unsafe { poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        return -1;
    }
    if pfds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        set_errno(libc::EBADF);
        return -1;
    }
    for set in [r, w, e] {
        if !set.is_null() {
            // SAFETY: a valid fd_set (the caller's contract).
            unsafe { libc::FD_ZERO(set) };
        }
    }
    let mut count = 0;
    for p in &pfds {
        let mut mark = |set: *mut libc::fd_set, on: bool| {
            if on && !set.is_null() {
                // SAFETY: a valid fd_set and an fd below FD_SETSIZE.
                unsafe { libc::FD_SET(p.fd, set) };
                count += 1;
            }
        };
        let rv = p.revents;
        mark(
            r,
            p.events & libc::POLLIN != 0
                && rv & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
        );
        mark(
            w,
            p.events & libc::POLLOUT != 0 && rv & (libc::POLLOUT | libc::POLLERR) != 0,
        );
        mark(e, p.events & libc::POLLPRI != 0 && rv & libc::POLLPRI != 0);
    }
    count
}
