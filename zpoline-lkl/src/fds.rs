//! One fd space for the program: an LKL descriptor is offered as a host *placeholder*
//! (an `O_PATH` descriptor of an empty memory file of the process's own, named
//! [`PLACEHOLDER_NAME`], close-on-exec), and [`LKL_OF`] maps the placeholder's number
//! to the LKL descriptor. The placeholder reserves the number in the host's table, so
//! host and LKL fds never collide, and a call that reached the host on one by mistake
//! fails cleanly with `EBADF`; one that reached it through the fd's path
//! (`/proc/self/fd/N`: a `chmod`, an `open` for writing) touches only that memory
//! file, never a file others use. The entry stub sends calls on a marked fd
//! (`trampoline::mark_fd`) through the hook, where the table decides.

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::helpers::sys;

/// Placeholders are below this number (a placeholder above it is refused with `EMFILE`).
pub(crate) const MAX_FDS: usize = 65536;

/// `LKL_OF[host fd]` = LKL fd + 1, or 0 for a host fd; with [`PASSTHROUGH`] set when
/// the host fd is not a placeholder but the same file opened on the host
/// (`passthrough.rs`), and [`FILE`] when the LKL fd is a file opened by path. Every
/// change of an fd's meaning goes through [`set`], which drops both marks.
static LKL_OF: [AtomicI32; MAX_FDS] = [const { AtomicI32::new(0) }; MAX_FDS];

/// The bit of [`LKL_OF`] that marks a passthrough fd (LKL fds are far below it).
const PASSTHROUGH: i32 = 1 << 30;

/// The bit of [`LKL_OF`] that marks an LKL fd opened by path: never a socket, so its
/// `close` needs no look at a send queue.
const FILE: i32 = 1 << 29;

/// Both marks: what is left of an entry without them is the LKL fd + 1.
const MARKS: i32 = PASSTHROUGH | FILE;

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
    match LKL_OF[fd as usize].load(Ordering::Acquire) & !MARKS {
        0 => None,
        l => Some(i64::from(l - 1)),
    }
}

/// True when program fd `fd` is LKL's and reads go to the host file it holds.
#[inline(always)]
pub(crate) fn passthrough(fd: u64) -> bool {
    let fd = fd as i32;
    fd >= 0
        && (fd as usize) < MAX_FDS
        && LKL_OF[fd as usize].load(Ordering::Acquire) & PASSTHROUGH != 0
}

/// Marks LKL's program fd `host` as a passthrough fd: the host fd is the same file,
/// opened on the host, not a placeholder.
pub(crate) fn set_passthrough(host: i64) {
    mark(host, PASSTHROUGH);
}

/// True when program fd `fd` is LKL's and holds a file opened by path.
#[inline(always)]
pub(crate) fn file(fd: u64) -> bool {
    let fd = fd as i32;
    fd >= 0 && (fd as usize) < MAX_FDS && LKL_OF[fd as usize].load(Ordering::Acquire) & FILE != 0
}

/// Marks LKL's program fd `host` as a file opened by path (not a socket).
pub(crate) fn set_file(host: i64) {
    mark(host, FILE);
}

/// Sets the mark `bit` on LKL's program fd `host`.
fn mark(host: i64, bit: i32) {
    if host >= 0 && (host as usize) < MAX_FDS {
        LKL_OF[host as usize].fetch_or(bit, Ordering::AcqRel);
    }
}

/// Records that host fd `host` stands for LKL fd `lkl` (`None`: a host fd again).
pub(crate) fn set(host: i64, lkl: Option<i64>) {
    if host < 0 || host as usize >= MAX_FDS {
        return;
    }
    let before =
        LKL_OF[host as usize].swap(lkl.map_or(0, |l| l as i32 + 1), Ordering::AcqRel) & !MARKS;
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

/// The name of the memory file placeholders are made of (`memfd_create`'s, which
/// `/proc/self/fd/N` shows as `/memfd:NAME (deleted)`).
const PLACEHOLDER_NAME: &core::ffi::CStr = c"lkl-placeholder";
const PLACEHOLDER_LINK: &[u8] = b"/memfd:lkl-placeholder (deleted)";

/// A placeholder made before (-1: none), of which new ones are duplicates while it is
/// an LKL fd's placeholder, else opened through its `/proc/self/fd` link (the same
/// memory file). The program may have closed or replaced that fd since: each use
/// checks it.
static SOURCE: AtomicI32 = AtomicI32::new(-1);

/// An `O_PATH` descriptor, at the lowest free number, of what `/proc/self/fd/SRC`
/// names, if that is a placeholder memory file; else a negative errno.
fn open_via(src: i64) -> i64 {
    let mut link = [0u8; 40];
    fd_link(src, &mut link);
    // SAFETY: openat of our NUL-terminated path (the magic link is followed).
    let fd = unsafe {
        sys(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                link.as_ptr() as u64,
                (libc::O_PATH | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )
    };
    if fd >= 0 && !names_placeholder_file(fd) {
        // SAFETY: closing what we just opened.
        unsafe { sys(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) };
        return -i64::from(libc::EBADF);
    }
    fd
}

/// A placeholder of a new memory file, at the lowest free number: the memory file
/// made there, then replaced by an `O_PATH` descriptor of itself.
fn fresh_placeholder() -> i64 {
    // SAFETY: memfd_create of a constant name.
    let m = unsafe {
        sys(
            libc::SYS_memfd_create,
            [
                PLACEHOLDER_NAME.as_ptr() as u64,
                libc::MFD_CLOEXEC as u64,
                0,
                0,
                0,
                0,
            ],
        )
    };
    if m < 0 {
        return m;
    }
    let p = open_via(m);
    // SAFETY: dup3 of our O_PATH fd onto our memory file's number, closing both the
    // memory file's fd and the spare; or closing the memory file when that failed.
    unsafe {
        if p < 0 {
            sys(libc::SYS_close, [m as u64, 0, 0, 0, 0, 0]);
            return p;
        }
        let r = sys(
            libc::SYS_dup3,
            [p as u64, m as u64, libc::O_CLOEXEC as u64, 0, 0, 0],
        );
        sys(libc::SYS_close, [p as u64, 0, 0, 0, 0, 0]);
        if r < 0 {
            sys(libc::SYS_close, [m as u64, 0, 0, 0, 0, 0]);
            return r;
        }
    }
    m
}

/// Writes `/proc/self/fd/FD` and a NUL into `link` (no allocation: this runs in the
/// hook); returns the path's length, without the NUL.
pub(crate) fn fd_link(fd: i64, link: &mut [u8; 40]) -> usize {
    let head = b"/proc/self/fd/";
    link[..head.len()].copy_from_slice(head);
    let mut n = head.len();
    let mut digits = [0u8; 20];
    let mut k = 0;
    let mut v = fd.max(0) as u64;
    loop {
        digits[k] = b'0' + (v % 10) as u8;
        k += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for d in digits[..k].iter().rev() {
        link[n] = *d;
        n += 1;
    }
    link[n] = 0;
    n
}

/// `readlink` of `/proc/self/fd/FD` into `buf`: the length, or a negative errno.
pub(crate) fn read_fd_link(fd: i64, buf: &mut [u8]) -> i64 {
    let mut link = [0u8; 40];
    fd_link(fd, &mut link);
    // SAFETY: readlink of our NUL-terminated path into our buffer.
    unsafe {
        sys(
            libc::SYS_readlink,
            [
                link.as_ptr() as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        )
    }
}

/// True when `/proc/self/fd/FD` names a placeholder memory file.
fn names_placeholder_file(fd: i64) -> bool {
    let mut buf = [0u8; 64];
    let r = read_fd_link(fd, &mut buf);
    r > 0 && &buf[..r as usize] == PLACEHOLDER_LINK
}

/// A new placeholder: the lowest free host fd at or above `min`, close-on-exec.
pub(crate) fn placeholder(min: i64) -> i64 {
    let fd = if min <= 0 {
        let src = SOURCE.load(Ordering::Acquire);
        let via = if src >= 0 && lkl_of(src as u64).is_some() && !passthrough(src as u64) {
            // Still an LKL fd's placeholder (every change of that number comes through
            // the table; a passthrough fd's number holds a host file instead): a
            // duplicate, without the two lookups in /proc of
            // `open_via`. The duplicate shares its open file description, which an
            // `O_PATH` descriptor gives nothing to change.
            // SAFETY: F_DUPFD_CLOEXEC of our own placeholder, at the lowest free number.
            unsafe {
                sys(
                    libc::SYS_fcntl,
                    [src as u64, libc::F_DUPFD_CLOEXEC as u64, 0, 0, 0, 0],
                )
            }
        } else if src >= 0 {
            open_via(i64::from(src))
        } else {
            -1
        };
        if via >= 0 {
            via
        } else {
            let fd = fresh_placeholder();
            if fd >= 0 {
                SOURCE.store(fd as i32, Ordering::Release);
            }
            fd
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

/// True when host fd `fd` is one of our placeholders (an `O_PATH` descriptor of a
/// placeholder memory file, this process's or an earlier image's): after an exec, or
/// in a vfork child that closed or replaced fds of its own, the number may since
/// stand for something else.
pub(crate) fn is_placeholder(fd: i64) -> bool {
    // SAFETY: F_GETFL of a number.
    let fl = unsafe {
        sys(
            libc::SYS_fcntl,
            [fd as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        )
    };
    fl >= 0 && fl & i64::from(libc::O_PATH) != 0 && names_placeholder_file(fd)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_links() {
        let mut b = [0u8; 40];
        let n = fd_link(1234, &mut b);
        assert_eq!(&b[..=n], b"/proc/self/fd/1234\0");
        let n = fd_link(0, &mut b);
        assert_eq!(&b[..=n], b"/proc/self/fd/0\0");
    }
}
