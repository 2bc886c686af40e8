//! The host kernel's calls, made with `syscall(2)` directly: the hijack
//! library interposes libc's `poll`, `read`, `write` and friends, so going
//! through them would come back into LKL.

use std::time::Duration;

use lkl::Errno;

/// The last host errno as an [`Errno`].
pub(crate) fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// A host call's result: `-1` becomes the errno.
pub(crate) fn check(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

/// A timeout as a `timespec` (`None`: wait forever).
pub(crate) fn timespec(t: Option<Duration>) -> Option<libc::timespec> {
    t.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    })
}

/// The size of the kernel's signal set (what `ppoll` and `epoll_pwait`
/// take, not glibc's 128-byte `sigset_t`).
pub(crate) const KERNEL_SIGSET: usize = 8;

/// Host `ppoll(fds, timeout, mask)`.
pub(crate) fn ppoll(
    fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
    mask: Option<&libc::sigset_t>,
) -> Result<usize, Errno> {
    let ts = timespec(timeout);
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
    let maskp = mask.map_or(std::ptr::null(), |m| m as *const _);
    // SAFETY: `fds` is a live slice of pollfds of the length passed, `tsp`
    // and `maskp` are null or live; the kernel reads 8 bytes of the mask.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tsp,
            maskp,
            KERNEL_SIGSET,
        )
    };
    check(r).map(|n| n as usize)
}

/// A host eventfd (non-blocking, close-on-exec).
pub(crate) fn eventfd() -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_eventfd2,
            0,
            libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
        )
    };
    check(r).map(|fd| fd as i32)
}

/// Adds 1 to host eventfd `fd`.
pub(crate) fn eventfd_signal(fd: i32) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) still
    // leaves the eventfd readable, which is all the reader needs.
    unsafe { libc::syscall(libc::SYS_write, fd, &one as *const u64, 8usize) };
}

/// Resets host eventfd `fd` (non-blocking read).
pub(crate) fn eventfd_drain(fd: i32) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64; EAGAIN (already 0) is fine.
    unsafe { libc::syscall(libc::SYS_read, fd, &mut v as *mut u64, 8usize) };
}

/// Host `close(fd)`.
pub(crate) fn close(fd: i32) {
    // SAFETY: closes a descriptor this crate owns.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Sets the calling thread's signal mask to `mask`; the old one.
pub(crate) fn set_sigmask(mask: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid empty set.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are live.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, &mut old) };
    old
}

/// A set of every signal.
pub(crate) fn full_sigset() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is valid; sigfillset fills a live one.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut s);
        s
    }
}
