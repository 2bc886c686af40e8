//! Typed file operations on paths and descriptors inside LKL.
//!
//! Every function makes one system call (or a few, documented) into the
//! running kernel and turns a failure into [`FsError::Sys`] with the
//! operation, the path and the errno. Paths are LKL paths (under
//! [`crate::Mounted::path`]). Descriptors are owned by [`File`], which
//! closes them on drop.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use lkl::sys;
use lkl::{Errno, XattrOn};

use crate::FsError;

/// `AT_FDCWD`.
pub const AT_FDCWD: i32 = sys::LKL_AT_FDCWD;

/// LKL's values of the flags callers pass, under their usual names.
macro_rules! lkl_flags {
    ($($name:ident = $lkl:ident;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`.")]
            pub const $name: i32 = sys::$lkl as i32;
        )*
    };
}

lkl_flags! {
    AT_SYMLINK_NOFOLLOW = LKL_AT_SYMLINK_NOFOLLOW;
    O_RDONLY = LKL_O_RDONLY;
    O_WRONLY = LKL_O_WRONLY;
    O_RDWR = LKL_O_RDWR;
    O_CREAT = LKL_O_CREAT;
    O_EXCL = LKL_O_EXCL;
    O_TRUNC = LKL_O_TRUNC;
    O_DIRECTORY = LKL_O_DIRECTORY;
    O_NOFOLLOW = LKL_O_NOFOLLOW;
    O_NOATIME = LKL_O_NOATIME;
    O_CLOEXEC = LKL_O_CLOEXEC;
}

/// `O_LARGEFILE` (no-op on 64-bit, kept for callers that pass it).
pub const O_LARGEFILE: i32 = sys::LKL_O_LARGEFILE as i32;
/// `XATTR_CREATE`: fail if the attribute exists.
pub const XATTR_CREATE: i32 = sys::LKL_XATTR_CREATE as i32;

/// A time with nanoseconds, as the kernel keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespec {
    /// Seconds since the epoch (negative before it).
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// Anything else (a corrupt inode).
    Unknown,
}

impl FileKind {
    /// The kind of a `st_mode`.
    pub fn from_mode(mode: u32) -> FileKind {
        match mode & sys::LKL_S_IFMT {
            sys::LKL_S_IFREG => FileKind::Regular,
            sys::LKL_S_IFDIR => FileKind::Dir,
            sys::LKL_S_IFLNK => FileKind::Symlink,
            sys::LKL_S_IFCHR => FileKind::CharDev,
            sys::LKL_S_IFBLK => FileKind::BlockDev,
            sys::LKL_S_IFIFO => FileKind::Fifo,
            sys::LKL_S_IFSOCK => FileKind::Socket,
            _ => FileKind::Unknown,
        }
    }

    /// The `S_IF*` bits of this kind (0 for [`FileKind::Unknown`]).
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => sys::LKL_S_IFREG,
            FileKind::Dir => sys::LKL_S_IFDIR,
            FileKind::Symlink => sys::LKL_S_IFLNK,
            FileKind::CharDev => sys::LKL_S_IFCHR,
            FileKind::BlockDev => sys::LKL_S_IFBLK,
            FileKind::Fifo => sys::LKL_S_IFIFO,
            FileKind::Socket => sys::LKL_S_IFSOCK,
            FileKind::Unknown => 0,
        }
    }
}

/// What `stat` says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Device of the file system.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node (see [`major`], [`minor`]).
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Last access.
    pub atime: Timespec,
    /// Last modification of the contents.
    pub mtime: Timespec,
    /// Last change of the inode.
    pub ctime: Timespec,
}

impl Stat {
    /// The file's type.
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode)
    }

    /// The permission bits, with set-uid, set-gid and sticky (`mode & 07777`).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    fn from_raw(s: &sys::lkl_stat) -> Stat {
        let ts = |sec: i64, nsec: u64| Timespec {
            sec,
            nsec: nsec as u32,
        };
        Stat {
            dev: s.st_dev,
            ino: s.st_ino,
            mode: s.st_mode,
            nlink: s.st_nlink,
            uid: s.st_uid,
            gid: s.st_gid,
            rdev: s.st_rdev,
            size: s.st_size.max(0) as u64,
            blocks: s.st_blocks.max(0) as u64,
            blksize: s.st_blksize.max(0) as u32,
            atime: ts(s.st_atime, s.st_atime_nsec),
            mtime: ts(s.st_mtime, s.st_mtime_nsec),
            ctime: ts(s.st_ctime, s.st_ctime_nsec),
        }
    }
}

/// The major number of a kernel device number (`new_decode_dev`).
pub fn major(rdev: u64) -> u32 {
    ((rdev & 0xfff00) >> 8) as u32
}

/// The minor number of a kernel device number (`new_decode_dev`).
pub fn minor(rdev: u64) -> u32 {
    ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32
}

/// The kernel device number of `major:minor` (`new_encode_dev`).
pub fn makedev(major: u32, minor: u32) -> u64 {
    u64::from((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> FsError + 'a {
    move |errno| FsError::Sys {
        op,
        path: path.to_path_buf(),
        errno,
    }
}

/// Calls `read(rest, done)` on the unfilled rest of `buf` (`done` bytes are
/// filled) until `buf` is full or a read returns 0; returns the bytes read.
fn read_until_full(
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8], usize) -> Result<usize, FsError>,
) -> Result<usize, FsError> {
    let mut done = 0;
    while done < buf.len() {
        match read(&mut buf[done..], done)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// `newfstatat(dirfd, path, flags)`.
fn fstatat(dirfd: i32, path: &Path, flags: i32, op: &'static str) -> Result<Stat, FsError> {
    let st = lkl::newfstatat(dirfd, path, flags).map_err(err(op, path))?;
    Ok(Stat::from_raw(&st))
}

/// `lstat(path)`: does not follow a final symlink.
///
/// # Errors
/// [`FsError::Sys`].
pub fn lstat(path: &Path) -> Result<Stat, FsError> {
    fstatat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, "lstat")
}

/// `stat(path)`: follows symlinks.
///
/// # Errors
/// [`FsError::Sys`].
pub fn stat(path: &Path) -> Result<Stat, FsError> {
    fstatat(AT_FDCWD, path, 0, "stat")
}

/// `lstat` of `name` in directory `dir`.
///
/// # Errors
/// [`FsError::Sys`] naming `dir/name`.
pub fn lstat_at(dir: &File, name: &OsStr) -> Result<Stat, FsError> {
    fstatat(dir.fd, Path::new(name), AT_SYMLINK_NOFOLLOW, "lstat")
        .map_err(|e| rename_path(e, &dir.path.join(name)))
}

fn rename_path(e: FsError, full: &Path) -> FsError {
    match e {
        FsError::Sys { op, errno, .. } => FsError::Sys {
            op,
            path: full.to_path_buf(),
            errno,
        },
        e => e,
    }
}

/// An open file descriptor inside LKL, closed on drop.
#[derive(Debug)]
pub struct File {
    fd: i32,
    path: PathBuf,
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = lkl::close(self.fd);
    }
}

/// `openat(AT_FDCWD, path, flags | O_CLOEXEC, mode)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn open(path: &Path, flags: i32, mode: u32) -> Result<File, FsError> {
    let fd = lkl::openat(AT_FDCWD, path, flags | O_CLOEXEC, mode).map_err(err("open", path))?;
    Ok(File {
        fd,
        path: path.to_path_buf(),
    })
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
///
/// # Errors
/// [`FsError::Sys`] naming `dir/name`.
pub fn open_at(dir: &File, name: &OsStr, flags: i32, mode: u32) -> Result<File, FsError> {
    let path = dir.path.join(name);
    let fd = lkl::openat(dir.fd, Path::new(name), flags | O_CLOEXEC, mode)
        .map_err(err("open", &path))?;
    Ok(File { fd, path })
}

impl File {
    /// The raw descriptor (valid while `self` lives).
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the descriptor out; the caller closes it.
    pub fn into_raw(self) -> i32 {
        let fd = self.fd;
        std::mem::forget(self);
        fd
    }

    /// Closes, reporting the error `close` returns (delayed write errors).
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn close(self) -> Result<(), FsError> {
        let fd = self.into_raw();
        lkl::close(fd).map_err(|errno| FsError::Sys {
            op: "close",
            path: PathBuf::new(),
            errno,
        })
    }

    /// One `read`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, FsError> {
        loop {
            match lkl::read(self.fd, buf) {
                Err(Errno::EINTR) => continue,
                r => return r.map_err(err("read", &self.path)),
            }
        }
    }

    /// Reads until `buf` is full or the end of the file; returns the bytes
    /// read.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn read_full(&self, buf: &mut [u8]) -> Result<usize, FsError> {
        read_until_full(buf, |rest, _| self.read(rest))
    }

    /// One `pread64` at `offset`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize, FsError> {
        lkl::pread64(self.fd, buf, offset).map_err(err("pread", &self.path))
    }

    /// `pread64` until `buf` is full or the end of the file.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn pread_full(&self, buf: &mut [u8], offset: u64) -> Result<usize, FsError> {
        read_until_full(buf, |rest, done| self.pread(rest, offset + done as u64))
    }

    /// Writes all of `data` (at the file position).
    ///
    /// # Errors
    /// [`FsError::Sys`] (`ENOSPC` when the file system is full).
    pub fn write_all(&self, mut data: &[u8]) -> Result<(), FsError> {
        while !data.is_empty() {
            match lkl::write(self.fd, data) {
                Ok(0) => return Err(err("write", &self.path)(Errno::EIO)),
                Ok(n) => data = &data[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("write", &self.path)(e)),
            }
        }
        Ok(())
    }

    /// Writes all of `data` at `offset` (`pwrite64`).
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn pwrite_all(&self, mut data: &[u8], mut offset: u64) -> Result<(), FsError> {
        while !data.is_empty() {
            match lkl::pwrite64(self.fd, data, offset) {
                Ok(0) => return Err(err("pwrite", &self.path)(Errno::EIO)),
                Ok(n) => {
                    data = &data[n..];
                    offset += n as u64;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("pwrite", &self.path)(e)),
            }
        }
        Ok(())
    }

    /// `lseek(fd, offset, whence)`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn seek(&self, offset: i64, whence: u32) -> Result<u64, FsError> {
        lkl::lseek(self.fd, offset, whence).map_err(err("lseek", &self.path))
    }

    /// The start of the first data at or after `offset` (`SEEK_DATA`), or
    /// `None` past the last data.
    ///
    /// # Errors
    /// [`FsError::Sys`] (`EINVAL`... as the file system answers).
    pub fn seek_data(&self, offset: u64) -> Result<Option<u64>, FsError> {
        match lkl::lseek(self.fd, offset as i64, sys::LKL_SEEK_DATA) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::ENXIO) => Ok(None),
            Err(e) => Err(err("lseek SEEK_DATA", &self.path)(e)),
        }
    }

    /// The start of the first hole at or after `offset` (`SEEK_HOLE`; the
    /// end of the file counts as a hole).
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn seek_hole(&self, offset: u64) -> Result<u64, FsError> {
        lkl::lseek(self.fd, offset as i64, sys::LKL_SEEK_HOLE)
            .map_err(err("lseek SEEK_HOLE", &self.path))
    }

    /// The data extents of a file of `size` bytes: `(start, len)` pairs
    /// from `SEEK_DATA`/`SEEK_HOLE`. A file system without them (it answers
    /// `EINVAL`/`EOPNOTSUPP`) gives one extent of the whole file.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn data_extents(&self, size: u64) -> Result<Vec<(u64, u64)>, FsError> {
        let r = extents_by_seeking(size, |at| self.seek_data(at), |at| self.seek_hole(at));
        match r {
            Err(e) if matches!(e.errno(), Some(Errno::EINVAL | Errno::EOPNOTSUPP)) => {
                Ok(vec![(0, size)])
            }
            r => r,
        }
    }

    /// `fstat`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn stat(&self) -> Result<Stat, FsError> {
        fstatat(
            self.fd,
            Path::new(""),
            sys::LKL_AT_EMPTY_PATH as i32,
            "fstat",
        )
        .map_err(|e| rename_path(e, &self.path))
    }

    /// `ftruncate`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn set_len(&self, len: u64) -> Result<(), FsError> {
        lkl::ftruncate(self.fd, len).map_err(err("ftruncate", &self.path))
    }

    /// `fchmod`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn chmod(&self, mode: u32) -> Result<(), FsError> {
        lkl::fchmod(self.fd, mode).map_err(err("fchmod", &self.path))
    }

    /// `fchown`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), FsError> {
        lkl::fchown(self.fd, uid, gid).map_err(err("fchown", &self.path))
    }

    /// `futimens`: sets access and modification times.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn set_times(&self, atime: Timespec, mtime: Timespec) -> Result<(), FsError> {
        lkl::utimensat(self.fd, "", utime(atime), utime(mtime), lkl::AT_EMPTY_PATH)
            .map_err(err("futimens", &self.path))
    }

    /// `fsync`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn sync(&self) -> Result<(), FsError> {
        lkl::fsync(self.fd).map_err(err("fsync", &self.path))
    }

    /// `syncfs`: writes back the whole file system holding this file.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn sync_fs(&self) -> Result<(), FsError> {
        lkl::syncfs(self.fd).map_err(err("syncfs", &self.path))
    }

    /// `flistxattr`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn list_xattrs(&self) -> Result<Vec<OsString>, FsError> {
        list_xattrs_raw(XattrOn::Fd(self.fd)).map_err(err("flistxattr", &self.path))
    }

    /// `fgetxattr`.
    ///
    /// # Errors
    /// [`FsError::Sys`] (`ENODATA` when it is not there).
    pub fn get_xattr(&self, name: &OsStr) -> Result<Vec<u8>, FsError> {
        get_xattr_raw(XattrOn::Fd(self.fd), name).map_err(err("fgetxattr", &self.path))
    }

    /// `fsetxattr` (flags: 0 or [`XATTR_CREATE`]).
    ///
    /// # Errors
    /// [`FsError::Sys`] (`EOPNOTSUPP` where the file system has none).
    pub fn set_xattr(&self, name: &OsStr, value: &[u8], flags: i32) -> Result<(), FsError> {
        lkl::setxattr(XattrOn::Fd(self.fd), name, value, flags)
            .map_err(err("fsetxattr", &self.path))
    }
}

/// The data extents `(start, len)` of a file of `size` bytes, found with
/// `data(at)` (`SEEK_DATA`: the next data at or after `at`, `None` past the
/// last) and `hole(at)` (`SEEK_HOLE`). Works for any descriptor, host or
/// LKL; a file system that contradicts itself gets the rest as data.
///
/// # Errors
/// The first error of `data` or `hole`.
pub fn extents_by_seeking<E>(
    size: u64,
    mut data: impl FnMut(u64) -> Result<Option<u64>, E>,
    mut hole: impl FnMut(u64) -> Result<u64, E>,
) -> Result<Vec<(u64, u64)>, E> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let Some(start) = data(at)? else { break };
        let start = start.min(size);
        if start >= size {
            break;
        }
        let end = hole(start)?.min(size);
        if end <= start {
            out.push((start, size - start));
            break;
        }
        out.push((start, end - start));
        at = end;
    }
    Ok(out)
}

/// A time as [`lkl::utimensat`] takes it.
fn utime(t: Timespec) -> lkl::Utime {
    lkl::Utime::At(t.sec, t.nsec)
}

/// `utimensat(AT_FDCWD, path, ..., AT_SYMLINK_NOFOLLOW)`: sets the times of
/// `path` itself (a symlink's own times).
///
/// # Errors
/// [`FsError::Sys`].
pub fn set_times(path: &Path, atime: Timespec, mtime: Timespec) -> Result<(), FsError> {
    lkl::utimensat(
        AT_FDCWD,
        path,
        utime(atime),
        utime(mtime),
        AT_SYMLINK_NOFOLLOW,
    )
    .map_err(err("utimensat", path))
}

/// `fchmodat(AT_FDCWD, path, mode)` (follows symlinks, as Linux does).
///
/// # Errors
/// [`FsError::Sys`].
pub fn chmod(path: &Path, mode: u32) -> Result<(), FsError> {
    lkl::fchmodat2(AT_FDCWD, path, mode, 0).map_err(err("chmod", path))
}

/// `fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW)` (`lchown`).
///
/// # Errors
/// [`FsError::Sys`].
pub fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), FsError> {
    lkl::fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW).map_err(err("lchown", path))
}

/// `mkdir(path, mode)`.
///
/// # Errors
/// [`FsError::Sys`] (`EEXIST` if something is there).
pub fn mkdir(path: &Path, mode: u32) -> Result<(), FsError> {
    lkl::mkdirat(AT_FDCWD, path, mode).map_err(err("mkdir", path))
}

/// `mknodat(AT_FDCWD, path, mode, rdev)`: a device node, fifo or socket
/// (`mode` holds the type bits).
///
/// # Errors
/// [`FsError::Sys`].
pub fn mknod(path: &Path, mode: u32, rdev: u64) -> Result<(), FsError> {
    lkl::mknodat(AT_FDCWD, path, mode, rdev as u32).map_err(err("mknod", path))
}

/// `symlink(target, path)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn symlink(target: &OsStr, path: &Path) -> Result<(), FsError> {
    lkl::symlinkat(target, AT_FDCWD, path).map_err(err("symlink", path))
}

/// `link(existing, new)`: a hard link.
///
/// # Errors
/// [`FsError::Sys`] naming `new`.
pub fn link(existing: &Path, new: &Path) -> Result<(), FsError> {
    lkl::linkat(AT_FDCWD, existing, AT_FDCWD, new, 0).map_err(err("link", new))
}

/// `readlink(path)`: a symlink's target.
///
/// # Errors
/// [`FsError::Sys`].
pub fn readlink(path: &Path) -> Result<OsString, FsError> {
    lkl::readlinkat(AT_FDCWD, path)
        .map(OsString::from_vec)
        .map_err(err("readlink", path))
}

/// `unlink(path)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn unlink(path: &Path) -> Result<(), FsError> {
    lkl::unlinkat(AT_FDCWD, path, 0).map_err(err("unlink", path))
}

/// `rmdir(path)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn rmdir(path: &Path) -> Result<(), FsError> {
    lkl::unlinkat(AT_FDCWD, path, sys::LKL_AT_REMOVEDIR as i32).map_err(err("rmdir", path))
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`.
///
/// # Errors
/// [`FsError::Sys`] naming `from`.
pub fn rename(from: &Path, to: &Path, flags: u32) -> Result<(), FsError> {
    lkl::renameat2(AT_FDCWD, from, AT_FDCWD, to, flags).map_err(err("rename", from))
}

/// The names of the extended attributes of `on`, growing the buffer while
/// the kernel says `ERANGE`.
fn list_xattrs_raw(on: XattrOn) -> Result<Vec<OsString>, Errno> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match lkl::listxattr(on, &mut buf) {
            Ok(n) => break n,
            Err(Errno::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    };
    Ok(buf[..n.min(buf.len())]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect())
}

/// The value of extended attribute `name` of `on`, growing the buffer
/// while the kernel says `ERANGE`.
fn get_xattr_raw(on: XattrOn, name: &OsStr) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match lkl::getxattr(on, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// `llistxattr(path)`: the names of the extended attributes of `path`
/// itself (not following a symlink).
///
/// # Errors
/// [`FsError::Sys`] (`EOPNOTSUPP` where the file system has none).
pub fn list_xattrs(path: &Path) -> Result<Vec<OsString>, FsError> {
    list_xattrs_raw(XattrOn::Link(path)).map_err(err("llistxattr", path))
}

/// `lgetxattr(path, name)`.
///
/// # Errors
/// [`FsError::Sys`] (`ENODATA` when it is not there).
pub fn get_xattr(path: &Path, name: &OsStr) -> Result<Vec<u8>, FsError> {
    get_xattr_raw(XattrOn::Link(path), name).map_err(err("lgetxattr", path))
}

/// `lsetxattr(path, name, value, flags)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn set_xattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> Result<(), FsError> {
    lkl::setxattr(XattrOn::Link(path), name, value, flags).map_err(err("lsetxattr", path))
}

/// `lremovexattr(path, name)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn remove_xattr(path: &Path, name: &str) -> Result<(), FsError> {
    lkl::removexattr(XattrOn::Link(path), OsStr::new(name)).map_err(err("lremovexattr", path))
}

/// `syncfs` of the file system holding `path`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn sync_fs(path: &Path) -> Result<(), FsError> {
    open(path, O_RDONLY, 0)?.sync_fs()
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// The type from `d_type` (`None` for `DT_UNKNOWN`: `lstat` it).
    pub kind: Option<FileKind>,
    /// The name (never `.` or `..`).
    pub name: OsString,
}

/// The entries of an open directory, read with `getdents64` in 32 KiB
/// batches.
#[derive(Debug)]
pub struct ReadDir {
    dir: File,
    buf: Vec<u8>,
    at: usize,
    len: usize,
    done: bool,
}

/// Opens directory `path` for [`ReadDir`] iteration.
///
/// # Errors
/// [`FsError::Sys`].
pub fn read_dir(path: &Path) -> Result<ReadDir, FsError> {
    Ok(ReadDir::new(open(path, O_RDONLY | O_DIRECTORY, 0)?))
}

impl ReadDir {
    /// Iterates over the directory open at `dir`.
    pub fn new(dir: File) -> ReadDir {
        ReadDir {
            dir,
            buf: vec![0u8; 32 * 1024],
            at: 0,
            len: 0,
            done: false,
        }
    }

    /// The directory's descriptor (for `*_at` calls).
    pub fn dir(&self) -> &File {
        &self.dir
    }

    fn fill(&mut self) -> Result<bool, FsError> {
        let n = lkl::getdents64_into(self.dir.fd, &mut self.buf)
            .map_err(err("getdents64", &self.dir.path))?;
        self.at = 0;
        self.len = n.min(self.buf.len());
        Ok(n > 0)
    }
}

/// Offsets in `struct linux_dirent64`: ino (8), off (8), reclen (2),
/// type (1), name.
const D_RECLEN: usize = 16;
const D_TYPE: usize = 18;
const D_NAME: usize = 19;

impl Iterator for ReadDir {
    type Item = Result<DirEntry, FsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.at >= self.len {
                match self.fill() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let rec = &self.buf[self.at..self.len];
            let bad = rec.len() <= D_NAME || {
                let reclen = u16::from_ne_bytes([rec[D_RECLEN], rec[D_RECLEN + 1]]) as usize;
                reclen <= D_NAME || reclen > rec.len()
            };
            if bad {
                self.done = true;
                return Some(Err(err("getdents64", &self.dir.path)(Errno::EIO)));
            }
            let reclen = u16::from_ne_bytes([rec[D_RECLEN], rec[D_RECLEN + 1]]) as usize;
            let ino = u64::from_ne_bytes(rec[..8].try_into().expect("8 bytes"));
            let ty = rec[D_TYPE];
            let name = &rec[D_NAME..reclen];
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let name = &name[..len];
            self.at += reclen;
            if name == b"." || name == b".." {
                continue;
            }
            // DT_* is the S_IF* type shifted right by 12 (`fs_umode_to_dtype`).
            let kind = match FileKind::from_mode(u32::from(ty) << 12) {
                FileKind::Unknown => None,
                k => Some(k),
            };
            return Some(Ok(DirEntry {
                ino,
                kind,
                name: OsString::from_vec(name.to_vec()),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_round_trip() {
        for (ma, mi) in [(0, 0), (1, 3), (8, 17), (259, 0x12345), (4095, 0xfffff)] {
            let d = makedev(ma, mi);
            assert_eq!((major(d), minor(d)), (ma, mi));
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            FileKind::Regular,
            FileKind::Dir,
            FileKind::Symlink,
            FileKind::CharDev,
            FileKind::BlockDev,
            FileKind::Fifo,
            FileKind::Socket,
        ] {
            assert_eq!(FileKind::from_mode(k.mode_bits() | 0o644), k);
        }
    }
}
