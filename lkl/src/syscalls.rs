//! Typed system call wrappers.
//!
//! Each wrapper checks its arguments on the host side (paths without NUL,
//! buffer lengths), calls [`syscall`] with the number generated from the
//! kernel's `asm/unistd.h` (`lkl_sys::__lkl__NR_*`), and returns
//! `Result<_, Errno>`. Structures are the kernel's own uapi ones
//! (`lkl_sys::lkl_stat`, `lkl_sys::lkl_epoll_event`, ...), and so are the
//! constants callers pass (`lkl_sys::LKL_AF_INET`, `LKL_O_RDWR`, ...).
//!
//! Every wrapper may be called from any host thread; before boot or after
//! halt they fail with [`Errno::ENOSYS`].

use std::ffi::{c_long, c_ulong, c_void, CString, OsString};
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::ptr;
use std::time::Duration;

use lkl_sys as sys;

use crate::{syscall, Errno};

pub use sys::{lkl_epoll_event, lkl_stat};

/// `AT_FDCWD`: the current directory for the `*at` calls.
pub const AT_FDCWD: i32 = sys::LKL_AT_FDCWD;

/// Converts a generated number or flag to a system call argument.
macro_rules! nr {
    ($name:ident) => {
        sys::$name as c_long
    };
}

/// A path as the kernel takes it.
fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// A string argument (file system type, interface name, mount data).
fn c_str(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

/// A system call whose arguments are all plain numbers.
fn call(no: c_long, args: &[c_long]) -> Result<c_long, Errno> {
    let mut all = [0; 6];
    all[..args.len()].copy_from_slice(args);
    // SAFETY: callers pass only numbers (or pointers they keep valid for
    // the call, as documented where they do).
    unsafe { syscall(no, all) }
}

/// A pointer the kernel only reads through.
fn ptr_arg<T>(p: *const T) -> c_long {
    p as c_long
}

/// A pointer the kernel writes through.
fn out_arg<T>(p: &mut T) -> c_long {
    p as *mut T as c_long
}

// ---------------------------------------------------------------------------
// Processes

/// `getpid()`.
pub fn getpid() -> Result<i32, Errno> {
    call(nr!(__lkl__NR_getpid), &[]).map(|r| r as i32)
}

/// `gettid()`: the kernel task id of the calling host thread.
pub fn gettid() -> Result<i32, Errno> {
    call(nr!(__lkl__NR_gettid), &[]).map(|r| r as i32)
}

/// `umask(mask)`: sets the file mode creation mask, returns the old one.
pub fn umask(mask: u32) -> Result<u32, Errno> {
    call(nr!(__lkl__NR_umask), &[mask as c_long]).map(|r| r as u32)
}

// ---------------------------------------------------------------------------
// Files

/// `openat(dirfd, path, flags, mode)`; returns the new descriptor.
pub fn openat(dirfd: i32, path: impl AsRef<Path>, flags: i32, mode: u32) -> Result<i32, Errno> {
    let path = c_path(path.as_ref())?;
    let args = [
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
        flags as c_long,
        mode as c_long,
    ];
    call(nr!(__lkl__NR_openat), &args).map(|r| r as i32)
}

/// `open(path, flags, mode)`, relative to the current directory.
pub fn open(path: impl AsRef<Path>, flags: i32, mode: u32) -> Result<i32, Errno> {
    openat(AT_FDCWD, path, flags, mode)
}

/// `creat(path, mode)`: `open` with `O_CREAT | O_WRONLY | O_TRUNC`.
pub fn creat(path: impl AsRef<Path>, mode: u32) -> Result<i32, Errno> {
    let flags = sys::LKL_O_CREAT | sys::LKL_O_WRONLY | sys::LKL_O_TRUNC;
    open(path, flags as i32, mode)
}

/// `close(fd)`.
pub fn close(fd: i32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_close), &[fd as c_long]).map(drop)
}

/// `read(fd, buf)`; returns the bytes read (0 at end of file).
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    call(nr!(__lkl__NR_read), &args).map(|r| r as usize)
}

/// `write(fd, buf)`; returns the bytes written.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    let args = [fd as c_long, ptr_arg(buf.as_ptr()), buf.len() as c_long];
    call(nr!(__lkl__NR_write), &args).map(|r| r as usize)
}

/// `lseek(fd, offset, whence)`; returns the new offset.
pub fn lseek(fd: i32, offset: i64, whence: u32) -> Result<u64, Errno> {
    let args = [fd as c_long, offset as c_long, whence as c_long];
    call(nr!(__lkl__NR_lseek), &args).map(|r| r as u64)
}

/// `fstat(fd)`.
pub fn fstat(fd: i32) -> Result<lkl_stat, Errno> {
    let mut st = MaybeUninit::<lkl_stat>::zeroed();
    call(
        nr!(__lkl__NR_fstat),
        &[fd as c_long, st.as_mut_ptr() as c_long],
    )?;
    // SAFETY: zero is a valid lkl_stat (plain integers) and the kernel
    // filled it in.
    Ok(unsafe { st.assume_init() })
}

/// `newfstatat(dirfd, path, flags)`.
pub fn newfstatat(dirfd: i32, path: impl AsRef<Path>, flags: i32) -> Result<lkl_stat, Errno> {
    let path = c_path(path.as_ref())?;
    let mut st = MaybeUninit::<lkl_stat>::zeroed();
    let args = [
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
        st.as_mut_ptr() as c_long,
        flags as c_long,
    ];
    call(nr!(__lkl__NR_newfstatat), &args)?;
    // SAFETY: zero is a valid lkl_stat and the kernel filled it in.
    Ok(unsafe { st.assume_init() })
}

/// `stat(path)`: [`newfstatat`] from the current directory.
pub fn stat(path: impl AsRef<Path>) -> Result<lkl_stat, Errno> {
    newfstatat(AT_FDCWD, path, 0)
}

/// `mkdirat(dirfd, path, mode)`.
pub fn mkdirat(dirfd: i32, path: impl AsRef<Path>, mode: u32) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let args = [dirfd as c_long, ptr_arg(path.as_ptr()), mode as c_long];
    call(nr!(__lkl__NR_mkdirat), &args).map(drop)
}

/// `chdir(path)`: the calling task's working directory (shared with every
/// task that shares its fs, as `host0`'s is).
pub fn chdir(path: impl AsRef<Path>) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    call(nr!(__lkl__NR_chdir), &[ptr_arg(path.as_ptr())]).map(drop)
}

/// `chroot(path)`: the calling task's root directory.
pub fn chroot(path: impl AsRef<Path>) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    call(nr!(__lkl__NR_chroot), &[ptr_arg(path.as_ptr())]).map(drop)
}

/// `mkdir(path, mode)`.
pub fn mkdir(path: impl AsRef<Path>, mode: u32) -> Result<(), Errno> {
    mkdirat(AT_FDCWD, path, mode)
}

/// `unlinkat(dirfd, path, flags)` (`AT_REMOVEDIR` removes a directory).
pub fn unlinkat(dirfd: i32, path: impl AsRef<Path>, flags: i32) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let args = [dirfd as c_long, ptr_arg(path.as_ptr()), flags as c_long];
    call(nr!(__lkl__NR_unlinkat), &args).map(drop)
}

/// `pipe2(flags)`; returns `[read end, write end]`.
pub fn pipe2(flags: i32) -> Result<[i32; 2], Errno> {
    let mut fds = [-1i32; 2];
    call(
        nr!(__lkl__NR_pipe2),
        &[fds.as_mut_ptr() as c_long, flags as c_long],
    )?;
    Ok(fds)
}

/// One entry of a directory, from `getdents64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// `DT_*` type (`DT_DIR` is 4, `DT_REG` 8, `DT_UNKNOWN` 0).
    pub kind: u8,
    /// File name.
    pub name: OsString,
}

/// Field offsets in `struct linux_dirent64`.
const DIRENT64_RECLEN: usize = mem::offset_of!(sys::lkl_linux_dirent64, d_reclen);
const DIRENT64_TYPE: usize = mem::offset_of!(sys::lkl_linux_dirent64, d_type);
const DIRENT64_NAME: usize = mem::offset_of!(sys::lkl_linux_dirent64, d_name);

/// Parses a buffer of `struct linux_dirent64` records.
fn parse_dirents(buf: &[u8], out: &mut Vec<DirEntry>) -> Result<(), Errno> {
    let mut at = 0;
    while at < buf.len() {
        let rec = &buf[at..];
        if rec.len() < DIRENT64_NAME + 1 {
            return Err(Errno::EIO);
        }
        let reclen = u16::from_ne_bytes([rec[DIRENT64_RECLEN], rec[DIRENT64_RECLEN + 1]]) as usize;
        if reclen <= DIRENT64_NAME || reclen > rec.len() {
            return Err(Errno::EIO);
        }
        let ino = u64::from_ne_bytes(rec[..8].try_into().expect("8 bytes"));
        let name = &rec[DIRENT64_NAME..reclen];
        let len = name.iter().position(|&b| b == 0).ok_or(Errno::EIO)?;
        out.push(DirEntry {
            ino,
            kind: rec[DIRENT64_TYPE],
            name: OsString::from_vec(name[..len].to_vec()),
        });
        at += reclen;
    }
    Ok(())
}

/// Reads the whole directory open at `fd` with `getdents64` (from its
/// current position to the end).
pub fn getdents64(fd: i32) -> Result<Vec<DirEntry>, Errno> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let args = [
            fd as c_long,
            buf.as_mut_ptr() as c_long,
            buf.len() as c_long,
        ];
        let n = call(nr!(__lkl__NR_getdents64), &args)? as usize;
        if n == 0 {
            return Ok(out);
        }
        parse_dirents(&buf[..n.min(buf.len())], &mut out)?;
    }
}

/// `getdents64(fd, buf)`: fills `buf` with `struct linux_dirent64`
/// records from the directory's current position; returns the bytes used
/// (0 at the end).
pub fn getdents64_into(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    call(nr!(__lkl__NR_getdents64), &args).map(|n| n as usize)
}

// ---------------------------------------------------------------------------
// Files: positional I/O, names, ownership, times, space, extended attributes

/// `AT_EMPTY_PATH`: an `*at` call with an empty path works on `dirfd` itself.
pub const AT_EMPTY_PATH: i32 = sys::LKL_AT_EMPTY_PATH as i32;
/// `AT_SYMLINK_NOFOLLOW`: do not follow a final symlink.
pub const AT_SYMLINK_NOFOLLOW: i32 = sys::LKL_AT_SYMLINK_NOFOLLOW as i32;
/// `AT_REMOVEDIR`: [`unlinkat`] removes a directory.
pub const AT_REMOVEDIR: i32 = sys::LKL_AT_REMOVEDIR as i32;

/// `pread64(fd, buf, offset)`; returns the bytes read (0 at end of file).
pub fn pread64(fd: i32, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
        offset as c_long,
    ];
    call(nr!(__lkl__NR_pread64), &args).map(|n| n as usize)
}

/// `pwrite64(fd, buf, offset)`; returns the bytes written.
pub fn pwrite64(fd: i32, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    let args = [
        fd as c_long,
        ptr_arg(buf.as_ptr()),
        buf.len() as c_long,
        offset as c_long,
    ];
    call(nr!(__lkl__NR_pwrite64), &args).map(|n| n as usize)
}

/// `mknodat(dirfd, path, mode, dev)` (`dev` in the kernel's encoding).
pub fn mknodat(dirfd: i32, path: impl AsRef<Path>, mode: u32, dev: u32) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let args = [
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
        mode as c_long,
        dev as c_long,
    ];
    call(nr!(__lkl__NR_mknodat), &args).map(drop)
}

/// `symlinkat(target, dirfd, path)`: `path` becomes a link to `target`.
pub fn symlinkat(
    target: impl AsRef<Path>,
    dirfd: i32,
    path: impl AsRef<Path>,
) -> Result<(), Errno> {
    let target = c_path(target.as_ref())?;
    let path = c_path(path.as_ref())?;
    let args = [
        ptr_arg(target.as_ptr()),
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
    ];
    call(nr!(__lkl__NR_symlinkat), &args).map(drop)
}

/// `readlinkat(dirfd, path)`: the link's target, whole (an empty `path`
/// reads the link `dirfd` itself refers to, opened `O_PATH|O_NOFOLLOW`).
pub fn readlinkat(dirfd: i32, path: impl AsRef<Path>) -> Result<Vec<u8>, Errno> {
    let path = c_path(path.as_ref())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let args = [
            dirfd as c_long,
            ptr_arg(path.as_ptr()),
            buf.as_mut_ptr() as c_long,
            buf.len() as c_long,
        ];
        let n = call(nr!(__lkl__NR_readlinkat), &args)? as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        // The target may have been cut short: ask again with more room.
        buf.resize(buf.len() * 2, 0);
    }
}

/// `no(olddir, old, newdir, new, flags)`: the shape of `renameat2` and
/// `linkat`.
fn two_paths(
    no: c_long,
    (olddir, old): (i32, &Path),
    (newdir, new): (i32, &Path),
    flags: c_long,
) -> Result<(), Errno> {
    let old = c_path(old)?;
    let new = c_path(new)?;
    let args = [
        olddir as c_long,
        ptr_arg(old.as_ptr()),
        newdir as c_long,
        ptr_arg(new.as_ptr()),
        flags,
    ];
    call(no, &args).map(drop)
}

/// `renameat2(olddir, old, newdir, new, flags)` (`RENAME_NOREPLACE`, ...).
pub fn renameat2(
    olddir: i32,
    old: impl AsRef<Path>,
    newdir: i32,
    new: impl AsRef<Path>,
    flags: u32,
) -> Result<(), Errno> {
    let (old, new) = ((olddir, old.as_ref()), (newdir, new.as_ref()));
    two_paths(nr!(__lkl__NR_renameat2), old, new, flags as c_long)
}

/// `linkat(olddir, old, newdir, new, flags)` (with [`AT_EMPTY_PATH`] and
/// an empty `old`, a new name for the inode `olddir` refers to).
pub fn linkat(
    olddir: i32,
    old: impl AsRef<Path>,
    newdir: i32,
    new: impl AsRef<Path>,
    flags: i32,
) -> Result<(), Errno> {
    let (old, new) = ((olddir, old.as_ref()), (newdir, new.as_ref()));
    two_paths(nr!(__lkl__NR_linkat), old, new, flags as c_long)
}

/// `fchownat(dirfd, path, uid, gid, flags)`; `u32::MAX` leaves an id as it is.
pub fn fchownat(
    dirfd: i32,
    path: impl AsRef<Path>,
    uid: u32,
    gid: u32,
    flags: i32,
) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let args = [
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
        uid as i32 as c_long,
        gid as i32 as c_long,
        flags as c_long,
    ];
    call(nr!(__lkl__NR_fchownat), &args).map(drop)
}

/// `fchown(fd, uid, gid)`; `u32::MAX` leaves an id as it is.
pub fn fchown(fd: i32, uid: u32, gid: u32) -> Result<(), Errno> {
    let args = [fd as c_long, uid as i32 as c_long, gid as i32 as c_long];
    call(nr!(__lkl__NR_fchown), &args).map(drop)
}

/// `fchmodat2(dirfd, path, mode, flags)` (unlike `fchmodat`, it takes
/// [`AT_EMPTY_PATH`] and [`AT_SYMLINK_NOFOLLOW`]).
pub fn fchmodat2(dirfd: i32, path: impl AsRef<Path>, mode: u32, flags: i32) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let args = [
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
        mode as c_long,
        flags as c_long,
    ];
    call(nr!(__lkl__NR_fchmodat2), &args).map(drop)
}

/// `fchmod(fd, mode)`.
pub fn fchmod(fd: i32, mode: u32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_fchmod), &[fd as c_long, mode as c_long]).map(drop)
}

/// A time for [`utimensat`]: a value, the current time, or left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utime {
    /// Seconds and nanoseconds since the epoch.
    At(i64, u32),
    /// `UTIME_NOW`.
    Now,
    /// `UTIME_OMIT`.
    Omit,
}

impl Utime {
    fn raw(self) -> sys::__lkl__kernel_timespec {
        // UTIME_NOW and UTIME_OMIT (linux/stat.h), not in the generated bindings.
        const UTIME_NOW: i64 = (1 << 30) - 1;
        const UTIME_OMIT: i64 = (1 << 30) - 2;
        let (sec, nsec) = match self {
            Utime::At(s, n) => (s, i64::from(n)),
            Utime::Now => (0, UTIME_NOW),
            Utime::Omit => (0, UTIME_OMIT),
        };
        sys::__lkl__kernel_timespec {
            tv_sec: sec as _,
            tv_nsec: nsec as _,
        }
    }
}

/// `utimensat(dirfd, path, [atime, mtime], flags)`.
pub fn utimensat(
    dirfd: i32,
    path: impl AsRef<Path>,
    atime: Utime,
    mtime: Utime,
    flags: i32,
) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let ts = [atime.raw(), mtime.raw()];
    let args = [
        dirfd as c_long,
        ptr_arg(path.as_ptr()),
        ptr_arg(ts.as_ptr()),
        flags as c_long,
    ];
    call(nr!(__lkl__NR_utimensat), &args).map(drop)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: i32, len: u64) -> Result<(), Errno> {
    call(nr!(__lkl__NR_ftruncate), &[fd as c_long, len as c_long]).map(drop)
}

/// `truncate(path, len)`.
pub fn truncate(path: impl AsRef<Path>, len: u64) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    call(
        nr!(__lkl__NR_truncate),
        &[ptr_arg(path.as_ptr()), len as c_long],
    )
    .map(drop)
}

/// `fsync(fd)`.
pub fn fsync(fd: i32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_fsync), &[fd as c_long]).map(drop)
}

/// `fdatasync(fd)`.
pub fn fdatasync(fd: i32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_fdatasync), &[fd as c_long]).map(drop)
}

/// `sync()`: writes back every file system.
pub fn sync() -> Result<(), Errno> {
    call(nr!(__lkl__NR_sync), &[]).map(drop)
}

/// `syncfs(fd)`: writes back the file system `fd` is on.
pub fn syncfs(fd: i32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_syncfs), &[fd as c_long]).map(drop)
}

/// `fadvise64(fd, offset, len, advice)` (`POSIX_FADV_*`, same numbers as the host's).
pub fn fadvise64(fd: i32, offset: u64, len: u64, advice: i32) -> Result<(), Errno> {
    let args = [
        fd as c_long,
        offset as c_long,
        len as c_long,
        advice as c_long,
    ];
    call(nr!(__lkl__NR_fadvise64), &args).map(drop)
}

/// `fallocate(fd, mode, offset, len)`.
pub fn fallocate(fd: i32, mode: i32, offset: u64, len: u64) -> Result<(), Errno> {
    let args = [
        fd as c_long,
        mode as c_long,
        offset as c_long,
        len as c_long,
    ];
    call(nr!(__lkl__NR_fallocate), &args).map(drop)
}

/// `fstatfs(fd)`; works on `O_PATH` descriptors.
pub fn fstatfs(fd: i32) -> Result<sys::lkl_statfs, Errno> {
    let mut st = sys::lkl_statfs::default();
    call(nr!(__lkl__NR_fstatfs), &[fd as c_long, out_arg(&mut st)])?;
    Ok(st)
}

/// `faccessat(dirfd, path, mode)`.
pub fn faccessat(dirfd: i32, path: impl AsRef<Path>, mode: i32) -> Result<(), Errno> {
    let path = c_path(path.as_ref())?;
    let args = [dirfd as c_long, ptr_arg(path.as_ptr()), mode as c_long];
    call(nr!(__lkl__NR_faccessat), &args).map(drop)
}

/// `prlimit64(0, resource, new, NULL)`: sets the calling task's soft and
/// hard limit of `resource` (`RLIMIT_*`, as the host numbers them) to `n`.
pub fn set_rlimit(resource: u32, n: u64) -> Result<(), Errno> {
    let new = [n, n];
    let args = [0, resource as c_long, ptr_arg(new.as_ptr()), 0];
    call(nr!(__lkl__NR_prlimit64), &args).map(drop)
}

/// Where an extended-attribute call looks: a path (following a final
/// symlink, as `getxattr`), a path not following it (`lgetxattr`), or an
/// open descriptor (`fgetxattr`).
#[derive(Debug, Clone, Copy)]
pub enum XattrOn<'a> {
    /// `*xattr(path, ...)`.
    Path(&'a Path),
    /// `l*xattr(path, ...)`.
    Link(&'a Path),
    /// `f*xattr(fd, ...)`.
    Fd(i32),
}

impl XattrOn<'_> {
    /// The call for this target among the three forms, and its first
    /// argument (the path kept alive in `keep`).
    fn target(self, nrs: [u32; 3], keep: &mut Option<CString>) -> Result<(c_long, c_long), Errno> {
        Ok(match self {
            XattrOn::Path(p) => (nrs[0] as c_long, ptr_arg(keep.insert(c_path(p)?).as_ptr())),
            XattrOn::Link(p) => (nrs[1] as c_long, ptr_arg(keep.insert(c_path(p)?).as_ptr())),
            XattrOn::Fd(fd) => (nrs[2] as c_long, fd as c_long),
        })
    }
}

/// `getxattr` (or `lgetxattr`, `fgetxattr`) of `name` into `buf`; with an
/// empty `buf`, the value's size.
pub fn getxattr(on: XattrOn, name: &std::ffi::OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut keep = None;
    let nrs = [
        sys::__lkl__NR_getxattr,
        sys::__lkl__NR_lgetxattr,
        sys::__lkl__NR_fgetxattr,
    ];
    let (no, target) = on.target(nrs, &mut keep)?;
    let name = c_path(Path::new(name))?;
    let args = [
        target,
        ptr_arg(name.as_ptr()),
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
    ];
    call(no, &args).map(|n| n as usize)
}

/// `setxattr` (or `lsetxattr`, `fsetxattr`) of `name` to `value`
/// (`XATTR_CREATE`, `XATTR_REPLACE` or 0 in `flags`).
pub fn setxattr(
    on: XattrOn,
    name: &std::ffi::OsStr,
    value: &[u8],
    flags: i32,
) -> Result<(), Errno> {
    let mut keep = None;
    let nrs = [
        sys::__lkl__NR_setxattr,
        sys::__lkl__NR_lsetxattr,
        sys::__lkl__NR_fsetxattr,
    ];
    let (no, target) = on.target(nrs, &mut keep)?;
    let name = c_path(Path::new(name))?;
    let args = [
        target,
        ptr_arg(name.as_ptr()),
        ptr_arg(value.as_ptr()),
        value.len() as c_long,
        flags as c_long,
    ];
    call(no, &args).map(drop)
}

/// `listxattr` (or `llistxattr`, `flistxattr`) into `buf` (NUL-separated
/// names); with an empty `buf`, the list's size.
pub fn listxattr(on: XattrOn, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut keep = None;
    let nrs = [
        sys::__lkl__NR_listxattr,
        sys::__lkl__NR_llistxattr,
        sys::__lkl__NR_flistxattr,
    ];
    let (no, target) = on.target(nrs, &mut keep)?;
    let args = [target, buf.as_mut_ptr() as c_long, buf.len() as c_long];
    call(no, &args).map(|n| n as usize)
}

/// `removexattr` (or `lremovexattr`, `fremovexattr`) of `name`.
pub fn removexattr(on: XattrOn, name: &std::ffi::OsStr) -> Result<(), Errno> {
    let mut keep = None;
    let nrs = [
        sys::__lkl__NR_removexattr,
        sys::__lkl__NR_lremovexattr,
        sys::__lkl__NR_fremovexattr,
    ];
    let (no, target) = on.target(nrs, &mut keep)?;
    let name = c_path(Path::new(name))?;
    call(no, &[target, ptr_arg(name.as_ptr())]).map(drop)
}

// ---------------------------------------------------------------------------
// Events and time

/// `epoll_create1(flags)`.
pub fn epoll_create1(flags: i32) -> Result<i32, Errno> {
    call(nr!(__lkl__NR_epoll_create1), &[flags as c_long]).map(|r| r as i32)
}

/// `epoll_ctl(epfd, op, fd, event)`; `event` may be `None` for
/// `EPOLL_CTL_DEL`.
pub fn epoll_ctl(
    epfd: i32,
    op: i32,
    fd: i32,
    event: Option<&lkl_epoll_event>,
) -> Result<(), Errno> {
    let event = event.map_or(ptr::null(), |e| e as *const lkl_epoll_event);
    let args = [epfd as c_long, op as c_long, fd as c_long, ptr_arg(event)];
    call(nr!(__lkl__NR_epoll_ctl), &args).map(drop)
}

/// `epoll_pwait(epfd, events, timeout_ms, NULL)`: waits up to `timeout_ms`
/// (-1: forever) and returns how many `events` were filled.
pub fn epoll_pwait(
    epfd: i32,
    events: &mut [lkl_epoll_event],
    timeout_ms: i32,
) -> Result<usize, Errno> {
    let max = events.len().min(i32::MAX as usize);
    let args = [
        epfd as c_long,
        events.as_mut_ptr() as c_long,
        max as c_long,
        timeout_ms as c_long,
        0,
        8,
    ];
    call(nr!(__lkl__NR_epoll_pwait), &args).map(|r| r as usize)
}

/// `clock_nanosleep(clock, flags, request, NULL)`.
pub fn clock_nanosleep(clock: i32, flags: i32, request: Duration) -> Result<(), Errno> {
    let ts = timespec(request);
    let args = [clock as c_long, flags as c_long, ptr_arg(&ts), 0];
    call(nr!(__lkl__NR_clock_nanosleep), &args).map(drop)
}

/// Sleeps for `d` on the kernel's `CLOCK_MONOTONIC`.
pub fn nanosleep(d: Duration) -> Result<(), Errno> {
    clock_nanosleep(sys::LKL_CLOCK_MONOTONIC as i32, 0, d)
}

fn timespec(d: Duration) -> sys::lkl_timespec {
    sys::lkl_timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

// ---------------------------------------------------------------------------
// Mounts

/// `mount(source, target, fstype, flags, data)`.
pub fn mount(
    source: &str,
    target: impl AsRef<Path>,
    fstype: &str,
    flags: u64,
    data: Option<&str>,
) -> Result<(), Errno> {
    let source = c_str(source)?;
    let target = c_path(target.as_ref())?;
    let fstype = c_str(fstype)?;
    let data = data.map(c_str).transpose()?;
    let args = [
        ptr_arg(source.as_ptr()),
        ptr_arg(target.as_ptr()),
        ptr_arg(fstype.as_ptr()),
        flags as c_long,
        data.as_ref().map_or(0, |d| ptr_arg(d.as_ptr())),
    ];
    call(nr!(__lkl__NR_mount), &args).map(drop)
}

/// `mount(NULL, target, NULL, MS_REMOUNT | flags, data)`: changes the flags of
/// the mount at `target` (`LKL_MS_RDONLY` makes it read-only).
pub fn remount(target: impl AsRef<Path>, flags: u64, data: Option<&str>) -> Result<(), Errno> {
    let target = c_path(target.as_ref())?;
    let data = data.map(c_str).transpose()?;
    let args = [
        0,
        ptr_arg(target.as_ptr()),
        0,
        (u64::from(sys::LKL_MS_REMOUNT) | flags) as c_long,
        data.as_ref().map_or(0, |d| ptr_arg(d.as_ptr())),
    ];
    call(nr!(__lkl__NR_mount), &args).map(drop)
}

/// `MNT_DETACH` for [`umount2`]: detach now, shut down when the last user goes.
pub const MNT_DETACH: i32 = 2;

/// `umount2(target, flags)`.
pub fn umount2(target: impl AsRef<Path>, flags: i32) -> Result<(), Errno> {
    let target = c_path(target.as_ref())?;
    call(
        nr!(__lkl__NR_umount2),
        &[ptr_arg(target.as_ptr()), flags as c_long],
    )
    .map(drop)
}

// ---------------------------------------------------------------------------
// Sockets

/// A socket address in the kernel's layout.
#[repr(C)]
union RawSockaddr {
    v4: sys::lkl_sockaddr_in,
    v6: sys::lkl_sockaddr_in6,
    /// Room for any family (`sizeof(struct sockaddr_storage)`).
    storage: [u64; 16],
}

impl RawSockaddr {
    fn zeroed() -> Self {
        RawSockaddr { storage: [0; 16] }
    }

    fn from_std(addr: &SocketAddr) -> (Self, u32) {
        let mut raw = Self::zeroed();
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: every field of the union is plain integers; zero
                // is valid for all of them.
                let v4 = unsafe { &mut raw.v4 };
                v4.sin_family = sys::LKL_AF_INET as _;
                v4.sin_port = a.port().to_be();
                v4.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                mem::size_of::<sys::lkl_sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above.
                let v6 = unsafe { &mut raw.v6 };
                v6.sin6_family = sys::LKL_AF_INET6 as _;
                v6.sin6_port = a.port().to_be();
                v6.sin6_flowinfo = a.flowinfo().to_be();
                // SAFETY: in6_addr is 16 bytes of address in network order,
                // whatever the union's member names.
                v6.sin6_addr =
                    unsafe { mem::transmute::<[u8; 16], sys::lkl_in6_addr>(a.ip().octets()) };
                v6.sin6_scope_id = a.scope_id();
                mem::size_of::<sys::lkl_sockaddr_in6>()
            }
        };
        (raw, len as u32)
    }

    fn to_std(&self, len: u32) -> Option<SocketAddr> {
        // SAFETY: the family is the first u16 of every sockaddr.
        let family = unsafe { self.v4.sin_family } as u32;
        match family {
            sys::LKL_AF_INET if len as usize >= mem::size_of::<sys::lkl_sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in.
                let v4 = unsafe { &self.v4 };
                let ip = Ipv4Addr::from(v4.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(v4.sin_port),
                )))
            }
            sys::LKL_AF_INET6 if len as usize >= mem::size_of::<sys::lkl_sockaddr_in6>() => {
                // SAFETY: the kernel wrote a sockaddr_in6.
                let v6 = unsafe { &self.v6 };
                // SAFETY: in6_addr is 16 bytes of address.
                let octets: [u8; 16] = unsafe { mem::transmute_copy(&v6.sin6_addr) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(octets),
                    u16::from_be(v6.sin6_port),
                    u32::from_be(v6.sin6_flowinfo),
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// `socket(domain, type, protocol)` (`LKL_AF_*`, `LKL_SOCK_*`).
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<i32, Errno> {
    let args = [domain as c_long, ty as c_long, protocol as c_long];
    call(nr!(__lkl__NR_socket), &args).map(|r| r as i32)
}

/// `bind(fd, addr)`.
pub fn bind(fd: i32, addr: &SocketAddr) -> Result<(), Errno> {
    let (raw, len) = RawSockaddr::from_std(addr);
    call(
        nr!(__lkl__NR_bind),
        &[fd as c_long, ptr_arg(&raw), len as c_long],
    )
    .map(drop)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: i32, backlog: i32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_listen), &[fd as c_long, backlog as c_long]).map(drop)
}

/// `accept4(fd, &addr, &len, flags)`; returns the new descriptor and the
/// peer's address (`None` if it is not IPv4 or IPv6).
pub fn accept4(fd: i32, flags: i32) -> Result<(i32, Option<SocketAddr>), Errno> {
    let mut raw = RawSockaddr::zeroed();
    let mut len = mem::size_of::<RawSockaddr>() as u32;
    let args = [
        fd as c_long,
        out_arg(&mut raw),
        out_arg(&mut len),
        flags as c_long,
    ];
    let new = call(nr!(__lkl__NR_accept4), &args)? as i32;
    Ok((new, raw.to_std(len)))
}

/// `connect(fd, addr)`.
pub fn connect(fd: i32, addr: &SocketAddr) -> Result<(), Errno> {
    let (raw, len) = RawSockaddr::from_std(addr);
    call(
        nr!(__lkl__NR_connect),
        &[fd as c_long, ptr_arg(&raw), len as c_long],
    )
    .map(drop)
}

/// `getsockname(fd)`: the local address (`None` if not IPv4 or IPv6).
pub fn getsockname(fd: i32) -> Result<Option<SocketAddr>, Errno> {
    let mut raw = RawSockaddr::zeroed();
    let mut len = mem::size_of::<RawSockaddr>() as u32;
    let args = [fd as c_long, out_arg(&mut raw), out_arg(&mut len)];
    call(nr!(__lkl__NR_getsockname), &args)?;
    Ok(raw.to_std(len))
}

/// `sendto(fd, buf, flags, addr)`; returns the bytes sent.
pub fn sendto(fd: i32, buf: &[u8], flags: i32, addr: Option<&SocketAddr>) -> Result<usize, Errno> {
    let to = addr.map(RawSockaddr::from_std);
    let (to_ptr, to_len) = to
        .as_ref()
        .map_or((0, 0), |(raw, len)| (ptr_arg(raw), *len as c_long));
    let args = [
        fd as c_long,
        ptr_arg(buf.as_ptr()),
        buf.len() as c_long,
        flags as c_long,
        to_ptr,
        to_len,
    ];
    call(nr!(__lkl__NR_sendto), &args).map(|r| r as usize)
}

/// `recvfrom(fd, buf, flags)`; returns the bytes received and the sender
/// (`None` for connected stream sockets or other families).
pub fn recvfrom(fd: i32, buf: &mut [u8], flags: i32) -> Result<(usize, Option<SocketAddr>), Errno> {
    let mut raw = RawSockaddr::zeroed();
    let mut len = mem::size_of::<RawSockaddr>() as u32;
    let args = [
        fd as c_long,
        buf.as_mut_ptr() as c_long,
        buf.len() as c_long,
        flags as c_long,
        out_arg(&mut raw),
        out_arg(&mut len),
    ];
    let n = call(nr!(__lkl__NR_recvfrom), &args)? as usize;
    Ok((n, if len == 0 { None } else { raw.to_std(len) }))
}

/// `setsockopt(fd, level, name, value)` with the option's raw bytes.
pub fn setsockopt(fd: i32, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
    let args = [
        fd as c_long,
        level as c_long,
        name as c_long,
        ptr_arg(value.as_ptr()),
        value.len() as c_long,
    ];
    call(nr!(__lkl__NR_setsockopt), &args).map(drop)
}

/// `setsockopt` with an `int` value (most options).
pub fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> Result<(), Errno> {
    setsockopt(fd, level, name, &value.to_ne_bytes())
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: i32, how: i32) -> Result<(), Errno> {
    call(nr!(__lkl__NR_shutdown), &[fd as c_long, how as c_long]).map(drop)
}

/// `ioctl(fd, request, arg)` with a raw argument.
///
/// # Safety
/// `arg` must be what `request` expects: a pointer valid for the reads and
/// writes the kernel makes through it, or a plain number.
pub unsafe fn ioctl(fd: i32, request: c_ulong, arg: *mut c_void) -> Result<c_long, Errno> {
    let args = [fd as c_long, request as c_long, arg as c_long, 0, 0, 0];
    // SAFETY: the caller's contract covers `arg`.
    unsafe { syscall(nr!(__lkl__NR_ioctl), args) }
}

/// Brings network interface `name` up: `SIOCGIFFLAGS`, then `SIOCSIFFLAGS`
/// with `IFF_UP` added, on a throwaway `AF_INET` datagram socket.
pub fn if_up(name: &str) -> Result<(), Errno> {
    let mut req: sys::lkl_ifreq = {
        // SAFETY: ifreq is plain data; all zero is valid.
        unsafe { mem::zeroed() }
    };
    let bytes = name.as_bytes();
    // SAFETY: ifrn_name is the only member of its union.
    let slot = unsafe { &mut req.ifr_ifrn.ifrn_name };
    if bytes.is_empty() || bytes.len() >= slot.len() || bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    for (d, s) in slot.iter_mut().zip(bytes) {
        *d = *s as _;
    }
    // SOCK_CLOEXEC is O_CLOEXEC by definition.
    let ty = sys::LKL_SOCK_DGRAM | sys::LKL_O_CLOEXEC;
    let sock = socket(sys::LKL_AF_INET as i32, ty as i32, 0)?;
    let req_ptr = ptr::addr_of_mut!(req).cast::<c_void>();
    // SAFETY: both requests read and write one ifreq, which `req` is.
    let result = unsafe {
        ioctl(sock, sys::LKL_SIOCGIFFLAGS as c_ulong, req_ptr).and_then(|_| {
            req.ifr_ifru.ifru_flags |= sys::LKL_IFF_UP as i16;
            ioctl(sock, sys::LKL_SIOCSIFFLAGS as c_ulong, req_ptr)
        })
    };
    let closed = close(sock);
    result.and(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirent(ino: u64, kind: u8, name: &[u8]) -> Vec<u8> {
        let reclen = (DIRENT64_NAME + name.len() + 1).div_ceil(8) * 8;
        let mut rec = vec![0u8; reclen];
        rec[..8].copy_from_slice(&ino.to_ne_bytes());
        rec[DIRENT64_RECLEN..DIRENT64_RECLEN + 2].copy_from_slice(&(reclen as u16).to_ne_bytes());
        rec[DIRENT64_TYPE] = kind;
        rec[DIRENT64_NAME..DIRENT64_NAME + name.len()].copy_from_slice(name);
        rec
    }

    #[test]
    fn dirents_parse_and_bad_records_fail() {
        let mut buf = dirent(1, 4, b".");
        buf.extend(dirent(2, 4, b".."));
        buf.extend(dirent(77, 8, b"a-longer-file-name"));
        let mut out = Vec::new();
        parse_dirents(&buf, &mut out).unwrap();
        let names: Vec<_> = out.iter().map(|e| e.name.to_str().unwrap()).collect();
        assert_eq!(names, [".", "..", "a-longer-file-name"]);
        assert_eq!((out[2].ino, out[2].kind), (77, 8));
        // Truncated, zero-length and unterminated records are refused.
        assert_eq!(parse_dirents(&buf[..10], &mut out), Err(Errno::EIO));
        let mut zero = dirent(1, 4, b"x");
        zero[DIRENT64_RECLEN] = 0;
        assert_eq!(parse_dirents(&zero, &mut out), Err(Errno::EIO));
        let mut unterminated = dirent(1, 4, b"abcd");
        let n = unterminated.len();
        unterminated[DIRENT64_NAME..n].fill(b'z');
        assert_eq!(parse_dirents(&unterminated, &mut out), Err(Errno::EIO));
    }

    #[test]
    fn socket_addresses_round_trip() {
        for addr in [
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
            "[::1]:443".parse().unwrap(),
            "[fe80::1%3]:1".parse().unwrap(),
        ] {
            let (raw, len) = RawSockaddr::from_std(&addr);
            assert_eq!(raw.to_std(len), Some(addr));
        }
        let (raw, _) = RawSockaddr::from_std(&"10.1.2.3:258".parse().unwrap());
        // SAFETY: reading the bytes of a plain-data union.
        let bytes: [u8; 8] = unsafe { mem::transmute_copy(&raw) };
        assert_eq!(bytes, [2, 0, 1, 2, 10, 1, 2, 3]);
        assert_eq!(RawSockaddr::zeroed().to_std(16), None);
    }

    #[test]
    fn no_calls_before_boot() {
        // Nothing in the unit tests boots the kernel.
        assert_eq!(getpid(), Err(Errno::ENOSYS));
        assert_eq!(open("/x", 0, 0), Err(Errno::ENOSYS));
        assert_eq!(open("/x\0y", 0, 0), Err(Errno::EINVAL));
        assert_eq!(if_up("lo"), Err(Errno::ENOSYS));
        assert_eq!(if_up("a-name-that-is-too-long"), Err(Errno::EINVAL));
    }
}
