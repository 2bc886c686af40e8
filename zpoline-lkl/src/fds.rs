//! One fd space for the program: an LKL descriptor is offered as a host *placeholder*
//! (an `O_PATH` descriptor of `/dev/null`, close-on-exec), and [`LKL_OF`] maps the
//! placeholder's number to the LKL descriptor. The placeholder reserves the number in
//! the host's table, so host and LKL fds never collide, and a call that reached the
//! host on one by mistake fails cleanly with `EBADF`. The entry stub sends calls on a
//! marked fd (`trampoline::mark_fd`) through the hook, where the table decides.

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::helpers::sys;

/// Placeholders are below this number (a placeholder above it is refused with `EMFILE`).
pub(crate) const MAX_FDS: usize = 65536;

/// `LKL_OF[host fd]` = LKL fd + 1, or 0 for a host fd.
static LKL_OF: [AtomicI32; MAX_FDS] = [const { AtomicI32::new(0) }; MAX_FDS];

/// How many program fds are LKL's (placeholders in [`LKL_OF`]).
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// True when some program fd is LKL's: calls that must look at a set of fds (`poll`,
/// `select`) skip reading it when none is.
#[inline(always)]
pub(crate) fn any() -> bool {
    COUNT.load(Ordering::Acquire) != 0
}

/// The LKL fd behind program fd `fd`, if it is LKL's.
#[inline(always)]
pub(crate) fn lkl_of(fd: u64) -> Option<i64> {
    let fd = fd as i32;
    if fd < 0 || fd as usize >= MAX_FDS {
        return None;
    }
    match LKL_OF[fd as usize].load(Ordering::Acquire) {
        0 => None,
        l => Some(i64::from(l - 1)),
    }
}

/// Records that host fd `host` stands for LKL fd `lkl` (`None`: a host fd again).
pub(crate) fn set(host: i64, lkl: Option<i64>) {
    if host < 0 || host as usize >= MAX_FDS {
        return;
    }
    let before = LKL_OF[host as usize].swap(lkl.map_or(0, |l| l as i32 + 1), Ordering::AcqRel);
    match (before != 0, lkl.is_some()) {
        (false, true) => {
            COUNT.fetch_add(1, Ordering::AcqRel);
        }
        (true, false) => {
            COUNT.fetch_sub(1, Ordering::AcqRel);
        }
        _ => {}
    }
    trampoline::mark_fd(host as i32, lkl.is_some());
}

/// A new placeholder: the lowest free host fd at or above `min`, close-on-exec.
pub(crate) fn placeholder(min: i64) -> i64 {
    let fd = if min <= 0 {
        // SAFETY: openat of a constant path.
        unsafe {
            sys(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    c"/dev/null".as_ptr() as u64,
                    (libc::O_PATH | libc::O_CLOEXEC) as u64,
                    0,
                    0,
                    0,
                ],
            )
        }
    } else {
        let tmp = placeholder(0);
        if tmp < 0 {
            return tmp;
        }
        // SAFETY: F_DUPFD_CLOEXEC of our own placeholder, then closing it.
        unsafe {
            let r = sys(
                libc::SYS_fcntl,
                [
                    tmp as u64,
                    libc::F_DUPFD_CLOEXEC as u64,
                    min as u64,
                    0,
                    0,
                    0,
                ],
            );
            sys(libc::SYS_close, [tmp as u64, 0, 0, 0, 0, 0]);
            r
        }
    };
    if fd >= MAX_FDS as i64 {
        // SAFETY: closing the placeholder we just made.
        unsafe { sys(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) };
        return -i64::from(libc::EMFILE);
    }
    fd
}

/// True when host fd `fd` is one of our placeholders (an `O_PATH` descriptor of
/// `/dev/null`): after an exec, or in a vfork child that closed or replaced fds of its
/// own, the number may since stand for something else.
pub(crate) fn is_placeholder(fd: i64) -> bool {
    // SAFETY: F_GETFL of a number.
    let fl = unsafe {
        sys(
            libc::SYS_fcntl,
            [fd as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        )
    };
    if fl < 0 || fl & i64::from(libc::O_PATH) == 0 {
        return false;
    }
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat into our struct.
    let r = unsafe {
        sys(
            libc::SYS_fstat,
            [fd as u64, &mut st as *mut libc::stat as u64, 0, 0, 0, 0],
        )
    };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
}

/// Offers LKL fd `lkl` to the program: a placeholder at or above `min`, recorded.
/// Closes `lkl` (in LKL, through `close_lkl`) if no placeholder can be had.
pub(crate) fn adopt(lkl: i64, min: i64, close_lkl: impl FnOnce(i64)) -> i64 {
    let fd = placeholder(min);
    if fd < 0 {
        close_lkl(lkl);
        return fd;
    }
    set(fd, Some(lkl));
    fd
}

/// Every program fd in `[lo, hi]` that is LKL's, with its LKL fd.
pub(crate) fn in_range(lo: u64, hi: u64) -> impl Iterator<Item = (i64, i64)> {
    let hi = hi.min(MAX_FDS as u64 - 1);
    (lo..=hi).filter_map(|fd| lkl_of(fd).map(|l| (fd as i64, l)))
}
