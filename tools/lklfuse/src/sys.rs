//! The LKL system calls lklfuse needs beyond the `lkl` crate's typed
//! wrappers: positional I/O, the `*at` family with `AT_EMPTY_PATH`,
//! xattrs, `statfs`, `renameat2`, `prlimit64`.
//!
//! Every function takes plain numbers and Rust buffers, checks nothing
//! but what the kernel cannot (paths without NUL bytes), and returns the
//! kernel's errno as `lkl::Errno`.

use std::ffi::{c_long, CString, OsStr};
use std::os::unix::ffi::OsStrExt;

use lkl::sys;
use lkl::Errno;

/// `AT_FDCWD` inside LKL.
pub const AT_FDCWD: i32 = sys::LKL_AT_FDCWD;
/// `AT_EMPTY_PATH`: operate on the descriptor itself.
pub const AT_EMPTY_PATH: i32 = sys::LKL_AT_EMPTY_PATH as i32;
/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: i32 = sys::LKL_AT_SYMLINK_NOFOLLOW as i32;
/// `AT_REMOVEDIR` for `unlinkat`.
pub const AT_REMOVEDIR: i32 = sys::LKL_AT_REMOVEDIR as i32;

/// `UTIME_NOW` (`linux/stat.h`; not in the generated bindings).
const UTIME_NOW: i64 = (1 << 30) - 1;
/// `UTIME_OMIT`.
const UTIME_OMIT: i64 = (1 << 30) - 2;
/// `RLIMIT_NOFILE` (`asm-generic/resource.h`).
const RLIMIT_NOFILE: c_long = 7;

/// A path or name as the kernel takes it.
pub fn cstr(s: &OsStr) -> Result<CString, Errno> {
    CString::new(s.as_bytes()).map_err(|_| Errno(libc::EINVAL))
}

/// Makes system call `nr` with up to six arguments.
///
/// # Safety
/// Pointer arguments must be valid for what the call reads or writes
/// through them, for the duration of the call.
unsafe fn call(nr: u32, args: &[c_long]) -> Result<c_long, Errno> {
    let mut all = [0 as c_long; 6];
    all[..args.len()].copy_from_slice(args);
    // SAFETY: the caller's contract.
    unsafe { lkl::syscall(nr as c_long, all) }
}

/// Converts a pointer to an argument.
fn p<T>(ptr: *const T) -> c_long {
    ptr as c_long
}

/// `nr(dirfd, name, args...)`, the shape of the `*at` calls that take one
/// name and numbers after it.
fn at_name(nr: u32, dirfd: i32, name: &OsStr, args: &[c_long]) -> Result<c_long, Errno> {
    let name = cstr(name)?;
    let mut all = [dirfd as c_long, p(name.as_ptr()), 0, 0, 0, 0];
    all[2..2 + args.len()].copy_from_slice(args);
    // SAFETY: the name lives across the call; the rest are numbers.
    unsafe { call(nr, &all) }
}

/// `openat(dirfd, name, flags, mode)`.
pub fn openat(dirfd: i32, name: &OsStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    let args = [flags as c_long, mode as c_long];
    at_name(sys::__lkl__NR_openat, dirfd, name, &args).map(|fd| fd as i32)
}

/// `close(fd)`.
pub fn close(fd: i32) -> Result<(), Errno> {
    // SAFETY: numbers only.
    unsafe { call(sys::__lkl__NR_close, &[fd as c_long]) }.map(drop)
}

/// `newfstatat(dirfd, name, flags)`; an empty name with `AT_EMPTY_PATH`
/// stats `dirfd` itself.
pub fn fstatat(dirfd: i32, name: &OsStr, flags: i32) -> Result<sys::lkl_stat, Errno> {
    let name = cstr(name)?;
    let mut st = sys::lkl_stat::default();
    let args = [
        dirfd as c_long,
        p(name.as_ptr()),
        &mut st as *mut sys::lkl_stat as c_long,
        flags as c_long,
    ];
    // SAFETY: the name and the stat buffer live across the call.
    unsafe { call(sys::__lkl__NR_newfstatat, &args) }?;
    Ok(st)
}

/// `fstat` of any descriptor, `O_PATH` ones included.
pub fn fstat(fd: i32) -> Result<sys::lkl_stat, Errno> {
    fstatat(fd, OsStr::new(""), AT_EMPTY_PATH)
}

/// `pread64(fd, buf, off)`; returns the bytes read.
pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
        off as c_long,
    ];
    // SAFETY: the buffer is valid for its length across the call.
    unsafe { call(sys::__lkl__NR_pread64, &args) }.map(|n| n as usize)
}

/// `pwrite64(fd, buf, off)`; returns the bytes written.
pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        p(buf.as_ptr()),
        buf.len() as c_long,
        off as c_long,
    ];
    // SAFETY: the buffer is valid for its length across the call.
    unsafe { call(sys::__lkl__NR_pwrite64, &args) }.map(|n| n as usize)
}

/// `lseek(fd, off, whence)`.
pub fn lseek(fd: i32, off: i64, whence: i32) -> Result<i64, Errno> {
    let args = [fd as c_long, off as c_long, whence as c_long];
    // SAFETY: numbers only.
    unsafe { call(sys::__lkl__NR_lseek, &args) }
}

/// `getdents64(fd, buf)`: fills `buf` with records, returns the bytes used.
pub fn getdents64(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    // SAFETY: the buffer is valid for its length across the call.
    unsafe { call(sys::__lkl__NR_getdents64, &args) }.map(|n| n as usize)
}

/// `mkdirat(dirfd, name, mode)`.
pub fn mkdirat(dirfd: i32, name: &OsStr, mode: u32) -> Result<(), Errno> {
    at_name(sys::__lkl__NR_mkdirat, dirfd, name, &[mode as c_long]).map(drop)
}

/// `mknodat(dirfd, name, mode, dev)`.
pub fn mknodat(dirfd: i32, name: &OsStr, mode: u32, dev: u32) -> Result<(), Errno> {
    let args = [mode as c_long, dev as c_long];
    at_name(sys::__lkl__NR_mknodat, dirfd, name, &args).map(drop)
}

/// `symlinkat(target, dirfd, name)`.
pub fn symlinkat(target: &OsStr, dirfd: i32, name: &OsStr) -> Result<(), Errno> {
    let target = cstr(target)?;
    let name = cstr(name)?;
    let args = [p(target.as_ptr()), dirfd as c_long, p(name.as_ptr())];
    // SAFETY: both strings live across the call.
    unsafe { call(sys::__lkl__NR_symlinkat, &args) }.map(drop)
}

/// `readlinkat(fd, "", buf)` on an `O_PATH` descriptor of the link.
pub fn readlink(fd: i32) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 4096];
    let args = [
        fd as c_long,
        p(c"".as_ptr()),
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    // SAFETY: the buffer is valid for its length across the call.
    let n = unsafe { call(sys::__lkl__NR_readlinkat, &args) }? as usize;
    buf.truncate(n);
    Ok(buf)
}

/// `unlinkat(dirfd, name, flags)`.
pub fn unlinkat(dirfd: i32, name: &OsStr, flags: i32) -> Result<(), Errno> {
    at_name(sys::__lkl__NR_unlinkat, dirfd, name, &[flags as c_long]).map(drop)
}

/// `renameat2(olddir, old, newdir, new, flags)`.
pub fn renameat2(
    olddir: i32,
    old: &OsStr,
    newdir: i32,
    new: &OsStr,
    flags: u32,
) -> Result<(), Errno> {
    let old = cstr(old)?;
    let new = cstr(new)?;
    let args = [
        olddir as c_long,
        p(old.as_ptr()),
        newdir as c_long,
        p(new.as_ptr()),
        flags as c_long,
    ];
    // SAFETY: both names live across the call.
    unsafe { call(sys::__lkl__NR_renameat2, &args) }.map(drop)
}

/// `linkat(fd, "", newdir, new, AT_EMPTY_PATH)`: a new name for the inode
/// `fd` refers to.
pub fn link_fd(fd: i32, newdir: i32, new: &OsStr) -> Result<(), Errno> {
    let new = cstr(new)?;
    let args = [
        fd as c_long,
        p(c"".as_ptr()),
        newdir as c_long,
        p(new.as_ptr()),
        AT_EMPTY_PATH as c_long,
    ];
    // SAFETY: both names live across the call.
    unsafe { call(sys::__lkl__NR_linkat, &args) }.map(drop)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`; `u32::MAX` leaves an id.
pub fn fchown(fd: i32, uid: u32, gid: u32) -> Result<(), Errno> {
    let args = [
        fd as c_long,
        p(c"".as_ptr()),
        uid as i32 as c_long,
        gid as i32 as c_long,
        AT_EMPTY_PATH as c_long,
    ];
    // SAFETY: the empty name is static.
    unsafe { call(sys::__lkl__NR_fchownat, &args) }.map(drop)
}

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`.
pub fn fchmod(fd: i32, mode: u32) -> Result<(), Errno> {
    let args = [
        fd as c_long,
        p(c"".as_ptr()),
        mode as c_long,
        AT_EMPTY_PATH as c_long,
    ];
    // SAFETY: the empty name is static.
    unsafe { call(sys::__lkl__NR_fchmodat2, &args) }.map(drop)
}

/// A time for [`utimens`]: a value, now, or left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// Seconds and nanoseconds since the epoch.
    At(i64, u32),
    /// `UTIME_NOW`.
    Now,
    /// `UTIME_OMIT`.
    Omit,
}

impl Time {
    fn raw(self) -> sys::__lkl__kernel_timespec {
        let (sec, nsec) = match self {
            Time::At(s, n) => (s, i64::from(n)),
            Time::Now => (0, UTIME_NOW),
            Time::Omit => (0, UTIME_OMIT),
        };
        sys::__lkl__kernel_timespec {
            tv_sec: sec as _,
            tv_nsec: nsec as _,
        }
    }
}

/// `utimensat(fd, "", [atime, mtime], AT_EMPTY_PATH)`.
pub fn utimens(fd: i32, atime: Time, mtime: Time) -> Result<(), Errno> {
    let ts = [atime.raw(), mtime.raw()];
    let args = [
        fd as c_long,
        p(c"".as_ptr()),
        p(ts.as_ptr()),
        AT_EMPTY_PATH as c_long,
    ];
    // SAFETY: the times and the empty name live across the call.
    unsafe { call(sys::__lkl__NR_utimensat, &args) }.map(drop)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: i32, len: u64) -> Result<(), Errno> {
    // SAFETY: numbers only.
    unsafe { call(sys::__lkl__NR_ftruncate, &[fd as c_long, len as c_long]) }.map(drop)
}

/// `fsync(fd)`, or `fdatasync(fd)` when `datasync`.
pub fn fsync(fd: i32, datasync: bool) -> Result<(), Errno> {
    let nr = if datasync {
        sys::__lkl__NR_fdatasync
    } else {
        sys::__lkl__NR_fsync
    };
    // SAFETY: numbers only.
    unsafe { call(nr, &[fd as c_long]) }.map(drop)
}

/// `fadvise64(fd, off, len, POSIX_FADV_DONTNEED)`: LKL may drop the range's
/// clean cached pages.
pub fn drop_cached(fd: i32, off: u64, len: u64) -> Result<(), Errno> {
    let args = [
        fd as c_long,
        off as c_long,
        len as c_long,
        libc::POSIX_FADV_DONTNEED as c_long,
    ];
    // SAFETY: numbers only.
    unsafe { call(sys::__lkl__NR_fadvise64, &args) }.map(drop)
}

/// `fallocate(fd, mode, off, len)`.
pub fn fallocate(fd: i32, mode: i32, off: u64, len: u64) -> Result<(), Errno> {
    let args = [fd as c_long, mode as c_long, off as c_long, len as c_long];
    // SAFETY: numbers only.
    unsafe { call(sys::__lkl__NR_fallocate, &args) }.map(drop)
}

/// `fstatfs(fd)`; works on `O_PATH` descriptors.
pub fn fstatfs(fd: i32) -> Result<sys::lkl_statfs, Errno> {
    let mut st = sys::lkl_statfs::default();
    let args = [fd as c_long, &mut st as *mut sys::lkl_statfs as c_long];
    // SAFETY: the buffer lives across the call.
    unsafe { call(sys::__lkl__NR_fstatfs, &args) }?;
    Ok(st)
}

/// `getxattr(path, name, buf)`: with an empty `buf`, the value's size.
pub fn getxattr(path: &OsStr, name: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let path = cstr(path)?;
    let name = cstr(name)?;
    let args = [
        p(path.as_ptr()),
        p(name.as_ptr()),
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    // SAFETY: strings and buffer live across the call.
    unsafe { call(sys::__lkl__NR_getxattr, &args) }.map(|n| n as usize)
}

/// `setxattr(path, name, value, flags)`.
pub fn setxattr(path: &OsStr, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
    let path = cstr(path)?;
    let name = cstr(name)?;
    let args = [
        p(path.as_ptr()),
        p(name.as_ptr()),
        p(value.as_ptr()),
        value.len() as c_long,
        flags as c_long,
    ];
    // SAFETY: strings and value live across the call.
    unsafe { call(sys::__lkl__NR_setxattr, &args) }.map(drop)
}

/// `listxattr(path, buf)`: with an empty `buf`, the list's size.
pub fn listxattr(path: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let path = cstr(path)?;
    let args = [
        p(path.as_ptr()),
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    // SAFETY: the path and buffer live across the call.
    unsafe { call(sys::__lkl__NR_listxattr, &args) }.map(|n| n as usize)
}

/// `removexattr(path, name)`.
pub fn removexattr(path: &OsStr, name: &OsStr) -> Result<(), Errno> {
    let path = cstr(path)?;
    let name = cstr(name)?;
    let args = [p(path.as_ptr()), p(name.as_ptr())];
    // SAFETY: both strings live across the call.
    unsafe { call(sys::__lkl__NR_removexattr, &args) }.map(drop)
}

/// Sets the soft and hard `RLIMIT_NOFILE` of the LKL process to `n`.
pub fn set_nofile(n: u64) -> Result<(), Errno> {
    let new = [n, n];
    let args = [0, RLIMIT_NOFILE, p(new.as_ptr()), 0];
    // SAFETY: `new` is a struct rlimit64 (two u64) living across the call.
    unsafe { call(sys::__lkl__NR_prlimit64, &args) }.map(drop)
}

/// `truncate(path, len)`.
pub fn truncate(path: &OsStr, len: u64) -> Result<(), Errno> {
    let path = cstr(path)?;
    let args = [p(path.as_ptr()), len as c_long];
    // SAFETY: the path lives across the call.
    unsafe { call(sys::__lkl__NR_truncate, &args) }.map(drop)
}

/// `faccessat(AT_FDCWD, path, mode)`.
pub fn access(path: &OsStr, mode: i32) -> Result<(), Errno> {
    let path = cstr(path)?;
    let args = [AT_FDCWD as c_long, p(path.as_ptr()), mode as c_long];
    // SAFETY: the path lives across the call.
    unsafe { call(sys::__lkl__NR_faccessat, &args) }.map(drop)
}
