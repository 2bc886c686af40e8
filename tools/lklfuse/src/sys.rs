//! lklfuse's LKL calls in the shapes it uses them: on descriptors, with
//! names relative to a directory descriptor, on `O_PATH` descriptors
//! through `AT_EMPTY_PATH`. Each is one of the `lkl` crate's typed system
//! call wrappers (the one layer over `lkl_syscall`) with the arguments
//! lklfuse always passes.

use std::ffi::{c_long, OsStr};

use lkl::sys;
use lkl::{Errno, XattrOn};

pub use lkl::Utime as Time;
pub use lkl::{
    close, fallocate, fstatfs, ftruncate, mkdirat, mknodat, renameat2, symlinkat, unlinkat,
    AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW,
};

/// `RLIMIT_NOFILE` (`asm-generic/resource.h`, as the host numbers it).
const RLIMIT_NOFILE: u32 = libc::RLIMIT_NOFILE;

/// `openat(dirfd, name, flags, mode)`.
pub fn openat(dirfd: i32, name: &OsStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    lkl::openat(dirfd, name, flags, mode)
}

/// `newfstatat(dirfd, name, flags)`; an empty name with `AT_EMPTY_PATH`
/// stats `dirfd` itself.
pub fn fstatat(dirfd: i32, name: &OsStr, flags: i32) -> Result<sys::lkl_stat, Errno> {
    lkl::newfstatat(dirfd, name, flags)
}

/// `fstat` of any descriptor, `O_PATH` ones included.
pub fn fstat(fd: i32) -> Result<sys::lkl_stat, Errno> {
    lkl::newfstatat(fd, "", AT_EMPTY_PATH)
}

/// `pread64(fd, buf, off)`; returns the bytes read.
pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    lkl::pread64(fd, buf, off)
}

/// `pwrite64(fd, buf, off)`; returns the bytes written.
pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> Result<usize, Errno> {
    lkl::pwrite64(fd, buf, off)
}

/// `lseek(fd, off, whence)`.
pub fn lseek(fd: i32, off: i64, whence: i32) -> Result<i64, Errno> {
    lkl::lseek(fd, off, whence as u32).map(|o| o as i64)
}

/// `getdents64(fd, buf)`: fills `buf` with records, returns the bytes used.
pub fn getdents64(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    lkl::getdents64_into(fd, buf)
}

/// `readlinkat(fd, "")` on an `O_PATH` descriptor of the link.
pub fn readlink(fd: i32) -> Result<Vec<u8>, Errno> {
    lkl::readlinkat(fd, "")
}

/// `linkat(fd, "", newdir, new, AT_EMPTY_PATH)`: a new name for the inode
/// `fd` refers to.
pub fn link_fd(fd: i32, newdir: i32, new: &OsStr) -> Result<(), Errno> {
    lkl::linkat(fd, "", newdir, new, AT_EMPTY_PATH)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`; `u32::MAX` leaves an id.
pub fn fchown(fd: i32, uid: u32, gid: u32) -> Result<(), Errno> {
    lkl::fchownat(fd, "", uid, gid, AT_EMPTY_PATH)
}

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`.
pub fn fchmod(fd: i32, mode: u32) -> Result<(), Errno> {
    lkl::fchmodat2(fd, "", mode, AT_EMPTY_PATH)
}

/// `utimensat(fd, "", [atime, mtime], AT_EMPTY_PATH)`.
pub fn utimens(fd: i32, atime: Time, mtime: Time) -> Result<(), Errno> {
    lkl::utimensat(fd, "", atime, mtime, AT_EMPTY_PATH)
}

/// `fsync(fd)`, or `fdatasync(fd)` when `datasync`.
pub fn fsync(fd: i32, datasync: bool) -> Result<(), Errno> {
    if datasync {
        lkl::fdatasync(fd)
    } else {
        lkl::fsync(fd)
    }
}

/// `fadvise64(fd, off, len, POSIX_FADV_DONTNEED)`: LKL may drop the range's
/// clean cached pages.
pub fn drop_cached(fd: i32, off: u64, len: u64) -> Result<(), Errno> {
    lkl::fadvise64(fd, off, len, libc::POSIX_FADV_DONTNEED)
}

/// `getxattr(path, name, buf)`: with an empty `buf`, the value's size.
pub fn getxattr(path: &OsStr, name: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    lkl::getxattr(XattrOn::Path(path.as_ref()), name, buf)
}

/// `setxattr(path, name, value, flags)`.
pub fn setxattr(path: &OsStr, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
    lkl::setxattr(XattrOn::Path(path.as_ref()), name, value, flags)
}

/// `listxattr(path, buf)`: with an empty `buf`, the list's size.
pub fn listxattr(path: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    lkl::listxattr(XattrOn::Path(path.as_ref()), buf)
}

/// `removexattr(path, name)`.
pub fn removexattr(path: &OsStr, name: &OsStr) -> Result<(), Errno> {
    lkl::removexattr(XattrOn::Path(path.as_ref()), name)
}

/// Sets the soft and hard `RLIMIT_NOFILE` of the LKL process to `n`.
pub fn set_nofile(n: u64) -> Result<(), Errno> {
    lkl::set_rlimit(RLIMIT_NOFILE, n)
}

/// `truncate(path, len)`.
pub fn truncate(path: &OsStr, len: u64) -> Result<(), Errno> {
    lkl::truncate(path, len)
}

/// `faccessat(AT_FDCWD, path, mode)`.
pub fn access(path: &OsStr, mode: i32) -> Result<(), Errno> {
    lkl::faccessat(AT_FDCWD, path, mode)
}

/// Makes the descriptor table hold at least `n` descriptors: `fd` is
/// duplicated to number `n - 1` and that closed again (the table never
/// shrinks). Best effort: a failure only leaves the growing for later.
pub fn reserve_fds(fd: i32, n: usize) {
    let Ok(top) = c_long::try_from(n.saturating_sub(1)) else {
        return;
    };
    let nr = sys::__lkl__NR_dup3 as c_long;
    // SAFETY: dup3 takes two descriptor numbers and flags, no pointers.
    let dup = unsafe { lkl::syscall(nr, [fd as c_long, top, libc::O_CLOEXEC as c_long, 0, 0, 0]) };
    if dup.is_ok() {
        let _ = close(top as i32);
    }
}
