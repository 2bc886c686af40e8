//! The two fd spaces, errno, and the calls into either kernel.

use std::ffi::{c_int, c_long};
use std::sync::atomic::{AtomicBool, Ordering};

use lkl_fdmux::Fd;

/// LKL fd `n` is fd `n + LKL_FD_OFFSET` for the program.
pub const LKL_FD_OFFSET: c_int = 512;

/// Set once LKL runs and the configuration is applied: until then (and
/// after halt) `socket` stays on the host.
pub(crate) static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Set once LKL has given the program an fd: until then no `poll` array is
/// read here (it goes to the host as it is).
pub(crate) static LKL_FDS: AtomicBool = AtomicBool::new(false);

/// Set in the child of a `fork`: LKL's threads were not copied, so LKL
/// cannot be called (see the crate doc).
pub(crate) static FORKED: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// The LKL fd behind program fd `fd`, if it is LKL's.
pub(crate) fn lkl_fd(fd: c_int) -> Option<c_long> {
    (fd >= LKL_FD_OFFSET).then(|| c_long::from(fd - LKL_FD_OFFSET))
}

/// Program fd `fd` as the mux names it.
pub(crate) fn mux_fd(fd: c_int) -> Fd {
    if fd >= LKL_FD_OFFSET {
        Fd::Lkl(fd - LKL_FD_OFFSET)
    } else {
        Fd::Host(fd)
    }
}

/// A mux result as C returns it: the count, or -1 with errno set.
pub(crate) fn c_result(r: Result<usize, lkl::Errno>) -> c_int {
    match r {
        Ok(n) => n as c_int,
        Err(e) => {
            set_errno(e.0);
            -1
        }
    }
}

/// Makes LKL system call `no`; on error sets errno and returns -1. In a
/// forked child every call fails with `EBADF`.
///
/// # Safety
/// The arguments must be valid for the call (pointers to memory of the
/// sizes the call expects).
pub(crate) unsafe fn lkl_call(no: u32, args: [c_long; 6]) -> c_long {
    if FORKED.load(Ordering::Relaxed) {
        set_errno(libc::EBADF);
        return -1;
    }
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
pub(crate) unsafe fn lkl_call_fd(no: u32, args: [c_long; 6]) -> c_int {
    // SAFETY: the caller's contract.
    let r = unsafe { lkl_call(no, args) };
    if r < 0 {
        -1
    } else {
        LKL_FDS.store(true, Ordering::Relaxed);
        r as c_int + LKL_FD_OFFSET
    }
}

pub(crate) fn p<T>(ptr: *const T) -> c_long {
    ptr as c_long
}

pub(crate) fn pm<T>(ptr: *mut T) -> c_long {
    ptr as c_long
}

/// Sets errno to `EFAULT` (a bad pointer the library read or wrote itself)
/// and returns -1.
pub(crate) fn efault() -> c_int {
    set_errno(libc::EFAULT);
    -1
}

/// The host kernel's system call `no` (errno set by libc on failure).
macro_rules! host {
    ($no:expr $(, $a:expr)*) => {
        // SAFETY: the arguments are the program's, passed through unchanged
        // to the host kernel, which validates them.
        unsafe { libc::syscall($no $(, $a)*) }
    };
}
pub(crate) use host;
