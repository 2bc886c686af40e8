//! Typed file operations on paths and descriptors inside LKL.
//!
//! Every function makes one system call (or a few, documented) into the
//! running kernel and turns a failure into [`FsError::Sys`] with the
//! operation, the path and the errno. Paths are LKL paths (under
//! [`crate::Mounted::path`]). Descriptors are owned by [`File`], which
//! closes them on drop.

use std::ffi::{c_long, CString, OsStr, OsString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use lkl::sys;
use lkl::Errno;

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

fn cstr(op: &'static str, path: &Path) -> Result<CString, FsError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| err(op, path)(Errno::EINVAL))
}

fn cname(op: &'static str, path: &Path, name: &str) -> Result<CString, FsError> {
    CString::new(name).map_err(|_| err(op, path)(Errno::EINVAL))
}

/// A system call of numbers and pointers the caller keeps valid.
///
/// # Safety
/// Every pointer among `args` must be valid for what system call `no`
/// does with it, for the duration of the call.
unsafe fn call(no: u32, args: &[c_long]) -> Result<c_long, Errno> {
    let mut all = [0; 6];
    all[..args.len()].copy_from_slice(args);
    // SAFETY: the caller's contract.
    unsafe { lkl::syscall(no as c_long, all) }
}

/// `no(AT_FDCWD, path, args...)` for a call that answers 0 on success; an
/// error names `op` and `path`. `args` are numbers, never pointers.
fn at_path(op: &'static str, no: u32, path: &Path, args: &[c_long]) -> Result<(), FsError> {
    let c = cstr(op, path)?;
    let mut all = [AT_FDCWD as c_long, c.as_ptr() as c_long, 0, 0, 0, 0];
    all[2..2 + args.len()].copy_from_slice(args);
    // SAFETY: a NUL-terminated path, live across the call; the rest are numbers.
    unsafe { call(no, &all) }.map(drop).map_err(err(op, path))
}

/// `no(AT_FDCWD, a, AT_FDCWD, b, flags)`, the shape of `linkat` and
/// `renameat2`; an error names `op` and `named`.
fn at_two_paths(
    op: &'static str,
    no: u32,
    (a, b): (&Path, &Path),
    flags: c_long,
    named: &Path,
) -> Result<(), FsError> {
    let ca = cstr(op, a)?;
    let cb = cstr(op, b)?;
    let (fd, a, b) = (
        AT_FDCWD as c_long,
        ca.as_ptr() as c_long,
        cb.as_ptr() as c_long,
    );
    // SAFETY: two NUL-terminated paths, live across the call.
    unsafe { call(no, &[fd, a, fd, b, flags]) }
        .map(drop)
        .map_err(err(op, named))
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
    let c = cstr(op, path)?;
    let mut st = MaybeUninit::<sys::lkl_stat>::zeroed();
    // SAFETY: a NUL-terminated path and a stat buffer, both live across
    // the call.
    unsafe {
        call(
            sys::__lkl__NR_newfstatat,
            &[
                dirfd as c_long,
                c.as_ptr() as c_long,
                st.as_mut_ptr() as c_long,
                flags as c_long,
            ],
        )
    }
    .map_err(err(op, path))?;
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
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
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe {
            call(
                sys::__lkl__NR_pread64,
                &[
                    self.fd as c_long,
                    buf.as_mut_ptr() as c_long,
                    buf.len() as c_long,
                    offset as c_long,
                ],
            )
        }
        .map(|n| n as usize)
        .map_err(err("pread", &self.path))
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
            // SAFETY: the kernel reads at most `data.len()` bytes of `data`.
            let r = unsafe {
                call(
                    sys::__lkl__NR_pwrite64,
                    &[
                        self.fd as c_long,
                        data.as_ptr() as c_long,
                        data.len() as c_long,
                        offset as c_long,
                    ],
                )
            };
            match r {
                Ok(0) => return Err(err("pwrite", &self.path)(Errno::EIO)),
                Ok(n) => {
                    data = &data[n as usize..];
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
        // SAFETY: numbers only.
        unsafe {
            call(
                sys::__lkl__NR_ftruncate,
                &[self.fd as c_long, len as c_long],
            )
        }
        .map(drop)
        .map_err(err("ftruncate", &self.path))
    }

    /// `fchmod`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn chmod(&self, mode: u32) -> Result<(), FsError> {
        // SAFETY: numbers only.
        unsafe { call(sys::__lkl__NR_fchmod, &[self.fd as c_long, mode as c_long]) }
            .map(drop)
            .map_err(err("fchmod", &self.path))
    }

    /// `fchown`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), FsError> {
        // SAFETY: numbers only.
        unsafe {
            call(
                sys::__lkl__NR_fchown,
                &[self.fd as c_long, uid as c_long, gid as c_long],
            )
        }
        .map(drop)
        .map_err(err("fchown", &self.path))
    }

    /// `futimens`: sets access and modification times.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn set_times(&self, atime: Timespec, mtime: Timespec) -> Result<(), FsError> {
        utimens(self.fd, None, atime, mtime, 0).map_err(err("futimens", &self.path))
    }

    /// `fsync`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn sync(&self) -> Result<(), FsError> {
        // SAFETY: numbers only.
        unsafe { call(sys::__lkl__NR_fsync, &[self.fd as c_long]) }
            .map(drop)
            .map_err(err("fsync", &self.path))
    }

    /// `syncfs`: writes back the whole file system holding this file.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn sync_fs(&self) -> Result<(), FsError> {
        // SAFETY: numbers only.
        unsafe { call(sys::__lkl__NR_syncfs, &[self.fd as c_long]) }
            .map(drop)
            .map_err(err("syncfs", &self.path))
    }

    /// `flistxattr`.
    ///
    /// # Errors
    /// [`FsError::Sys`].
    pub fn list_xattrs(&self) -> Result<Vec<OsString>, FsError> {
        list_xattrs_raw(sys::__lkl__NR_flistxattr, XattrTarget::Fd(self.fd))
            .map_err(err("flistxattr", &self.path))
    }

    /// `fgetxattr`.
    ///
    /// # Errors
    /// [`FsError::Sys`] (`ENODATA` when it is not there).
    pub fn get_xattr(&self, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let n = CString::new(name.as_bytes())
            .map_err(|_| err("fgetxattr", &self.path)(Errno::EINVAL))?;
        get_xattr_raw(sys::__lkl__NR_fgetxattr, XattrTarget::Fd(self.fd), &n)
            .map_err(err("fgetxattr", &self.path))
    }

    /// `fsetxattr` (flags: 0 or [`XATTR_CREATE`]).
    ///
    /// # Errors
    /// [`FsError::Sys`] (`EOPNOTSUPP` where the file system has none).
    pub fn set_xattr(&self, name: &OsStr, value: &[u8], flags: i32) -> Result<(), FsError> {
        let n = CString::new(name.as_bytes())
            .map_err(|_| err("fsetxattr", &self.path)(Errno::EINVAL))?;
        // SAFETY: a NUL-terminated name and a value buffer of the length
        // given, both live across the call.
        unsafe {
            call(
                sys::__lkl__NR_fsetxattr,
                &[
                    self.fd as c_long,
                    n.as_ptr() as c_long,
                    value.as_ptr() as c_long,
                    value.len() as c_long,
                    flags as c_long,
                ],
            )
        }
        .map(drop)
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

/// `utimensat(dirfd, path, {atime, mtime}, flags)`; `path` `None` means the
/// descriptor itself.
fn utimens(
    dirfd: i32,
    path: Option<&CString>,
    atime: Timespec,
    mtime: Timespec,
    flags: i32,
) -> Result<(), Errno> {
    let ts = [
        sys::__lkl__kernel_timespec {
            tv_sec: atime.sec as _,
            tv_nsec: atime.nsec as _,
        },
        sys::__lkl__kernel_timespec {
            tv_sec: mtime.sec as _,
            tv_nsec: mtime.nsec as _,
        },
    ];
    // SAFETY: an optional NUL-terminated path and two timespecs, all live
    // across the call.
    unsafe {
        call(
            sys::__lkl__NR_utimensat,
            &[
                dirfd as c_long,
                path.map_or(0, |p| p.as_ptr() as c_long),
                ts.as_ptr() as c_long,
                flags as c_long,
            ],
        )
    }
    .map(drop)
}

/// `utimensat(AT_FDCWD, path, ..., AT_SYMLINK_NOFOLLOW)`: sets the times of
/// `path` itself (a symlink's own times).
///
/// # Errors
/// [`FsError::Sys`].
pub fn set_times(path: &Path, atime: Timespec, mtime: Timespec) -> Result<(), FsError> {
    let c = cstr("utimensat", path)?;
    utimens(AT_FDCWD, Some(&c), atime, mtime, AT_SYMLINK_NOFOLLOW).map_err(err("utimensat", path))
}

/// `fchmodat(AT_FDCWD, path, mode)` (follows symlinks, as Linux does).
///
/// # Errors
/// [`FsError::Sys`].
pub fn chmod(path: &Path, mode: u32) -> Result<(), FsError> {
    at_path("chmod", sys::__lkl__NR_fchmodat, path, &[mode as c_long])
}

/// `fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW)` (`lchown`).
///
/// # Errors
/// [`FsError::Sys`].
pub fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), FsError> {
    let args = [uid as c_long, gid as c_long, AT_SYMLINK_NOFOLLOW as c_long];
    at_path("lchown", sys::__lkl__NR_fchownat, path, &args)
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
    at_path(
        "mknod",
        sys::__lkl__NR_mknodat,
        path,
        &[mode as c_long, rdev as c_long],
    )
}

/// `symlink(target, path)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn symlink(target: &OsStr, path: &Path) -> Result<(), FsError> {
    let c = cstr("symlink", path)?;
    let t = cstr("symlink", Path::new(target))?;
    // SAFETY: two NUL-terminated strings, live across the call.
    unsafe {
        call(
            sys::__lkl__NR_symlinkat,
            &[
                t.as_ptr() as c_long,
                AT_FDCWD as c_long,
                c.as_ptr() as c_long,
            ],
        )
    }
    .map(drop)
    .map_err(err("symlink", path))
}

/// `link(existing, new)`: a hard link.
///
/// # Errors
/// [`FsError::Sys`] naming `new`.
pub fn link(existing: &Path, new: &Path) -> Result<(), FsError> {
    at_two_paths("link", sys::__lkl__NR_linkat, (existing, new), 0, new)
}

/// `readlink(path)`: a symlink's target.
///
/// # Errors
/// [`FsError::Sys`].
pub fn readlink(path: &Path) -> Result<OsString, FsError> {
    let c = cstr("readlink", path)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            call(
                sys::__lkl__NR_readlinkat,
                &[
                    AT_FDCWD as c_long,
                    c.as_ptr() as c_long,
                    buf.as_mut_ptr() as c_long,
                    buf.len() as c_long,
                ],
            )
        }
        .map_err(err("readlink", path))? as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(OsString::from_vec(buf));
        }
        buf.resize(buf.len() * 2, 0);
    }
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
    let no = sys::__lkl__NR_renameat2;
    at_two_paths("rename", no, (from, to), flags as c_long, from)
}

enum XattrTarget<'a> {
    Path(&'a CString),
    Fd(i32),
}

impl XattrTarget<'_> {
    fn arg(&self) -> c_long {
        match self {
            XattrTarget::Path(c) => c.as_ptr() as c_long,
            XattrTarget::Fd(fd) => *fd as c_long,
        }
    }
}

fn list_xattrs_raw(no: u32, target: XattrTarget) -> Result<Vec<OsString>, Errno> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        // SAFETY: the target is a live NUL-terminated path or a number; the
        // kernel writes at most `buf.len()` bytes into `buf`.
        match unsafe {
            call(
                no,
                &[
                    target.arg(),
                    buf.as_mut_ptr() as c_long,
                    buf.len() as c_long,
                ],
            )
        } {
            Ok(n) => break n as usize,
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

fn get_xattr_raw(no: u32, target: XattrTarget, name: &CString) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: the target and name are live NUL-terminated strings or a
        // number; the kernel writes at most `buf.len()` bytes into `buf`.
        match unsafe {
            call(
                no,
                &[
                    target.arg(),
                    name.as_ptr() as c_long,
                    buf.as_mut_ptr() as c_long,
                    buf.len() as c_long,
                ],
            )
        } {
            Ok(n) => {
                buf.truncate(n as usize);
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
    let c = cstr("llistxattr", path)?;
    list_xattrs_raw(sys::__lkl__NR_llistxattr, XattrTarget::Path(&c))
        .map_err(err("llistxattr", path))
}

/// `lgetxattr(path, name)`.
///
/// # Errors
/// [`FsError::Sys`] (`ENODATA` when it is not there).
pub fn get_xattr(path: &Path, name: &OsStr) -> Result<Vec<u8>, FsError> {
    let c = cstr("lgetxattr", path)?;
    let n = CString::new(name.as_bytes()).map_err(|_| err("lgetxattr", path)(Errno::EINVAL))?;
    get_xattr_raw(sys::__lkl__NR_lgetxattr, XattrTarget::Path(&c), &n)
        .map_err(err("lgetxattr", path))
}

/// `lsetxattr(path, name, value, flags)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn set_xattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> Result<(), FsError> {
    let c = cstr("lsetxattr", path)?;
    let n = CString::new(name.as_bytes()).map_err(|_| err("lsetxattr", path)(Errno::EINVAL))?;
    // SAFETY: NUL-terminated path and name and a value buffer of the
    // length given, all live across the call.
    unsafe {
        call(
            sys::__lkl__NR_lsetxattr,
            &[
                c.as_ptr() as c_long,
                n.as_ptr() as c_long,
                value.as_ptr() as c_long,
                value.len() as c_long,
                flags as c_long,
            ],
        )
    }
    .map(drop)
    .map_err(err("lsetxattr", path))
}

/// `lremovexattr(path, name)`.
///
/// # Errors
/// [`FsError::Sys`].
pub fn remove_xattr(path: &Path, name: &str) -> Result<(), FsError> {
    let c = cstr("lremovexattr", path)?;
    let n = cname("lremovexattr", path, name)?;
    // SAFETY: two NUL-terminated strings, live across the call.
    unsafe {
        call(
            sys::__lkl__NR_lremovexattr,
            &[c.as_ptr() as c_long, n.as_ptr() as c_long],
        )
    }
    .map(drop)
    .map_err(err("lremovexattr", path))
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
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            call(
                sys::__lkl__NR_getdents64,
                &[
                    self.dir.fd as c_long,
                    self.buf.as_mut_ptr() as c_long,
                    self.buf.len() as c_long,
                ],
            )
        }
        .map_err(err("getdents64", &self.dir.path))? as usize;
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
