//! The two sides of a copy: the host's file system and the image's,
//! inside LKL, behind one trait so that one copy engine serves both
//! directions.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use lkl_fs::{ops, FileKind, Timespec};
use rustix::fs::{self as rfs, AtFlags, Mode, SeekFrom, Timestamps, XattrFlags};

/// Why an operation failed: the errno (host and LKL numbers agree on
/// x86-64) and a message naming the operation and the path.
#[derive(Debug)]
pub struct OpError {
    /// The error number.
    pub errno: i32,
    /// What failed.
    pub msg: String,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for OpError {}

impl From<lkl_fs::FsError> for OpError {
    fn from(e: lkl_fs::FsError) -> Self {
        OpError {
            errno: e.errno().map_or(libc::EIO, |e| e.0),
            msg: format!("{e} (in the image)"),
        }
    }
}

fn host_err<'a>(op: &str, path: &'a Path) -> impl FnOnce(io::Error) -> OpError + 'a {
    let op = op.to_owned();
    move |e| OpError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        msg: format!("{op} {}: {e}", path.display()),
    }
}

/// [`host_err`] for the errors of `rustix`'s calls.
fn host_errno<'a>(op: &str, path: &'a Path) -> impl FnOnce(rustix::io::Errno) -> OpError + 'a {
    let f = host_err(op, path);
    move |e| f(e.into())
}

/// A result of a side's operation.
pub type OpResult<T> = Result<T, OpError>;

/// What a copy needs to know of a file.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Its type.
    pub kind: FileKind,
    /// Permission bits with set-uid/gid and sticky.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Access time.
    pub atime: Timespec,
    /// Modification time.
    pub mtime: Timespec,
    /// Device numbers of a device node.
    pub rdev: (u32, u32),
    /// (device, inode): identifies hard links.
    pub id: (u64, u64),
    /// Hard links.
    pub nlink: u64,
}

/// A file system the copy reads from or writes to.
pub trait Side: Sync {
    /// An open file.
    type File: Send;
    /// A name for messages (`host`, `image`).
    const NAME: &'static str;
    /// `lstat`.
    fn lstat(&self, p: &Path) -> OpResult<Meta>;
    /// The names in a directory, sorted.
    fn read_dir(&self, p: &Path) -> OpResult<Vec<OsString>>;
    /// A symlink's target.
    fn readlink(&self, p: &Path) -> OpResult<OsString>;
    /// Extended attributes (name, value); none where unsupported.
    fn xattrs(&self, p: &Path) -> OpResult<Vec<(OsString, Vec<u8>)>>;
    /// Opens a file to read.
    fn open(&self, p: &Path) -> OpResult<Self::File>;
    /// Data extents of an open file (SEEK_DATA/SEEK_HOLE).
    fn extents(&self, f: &Self::File, size: u64) -> OpResult<Vec<(u64, u64)>>;
    /// Reads until `buf` is full or the end; returns the bytes read.
    fn pread(&self, f: &Self::File, buf: &mut [u8], off: u64) -> OpResult<usize>;
    /// Creates (or truncates) a file to write, with `perm`.
    fn create(&self, p: &Path, perm: u32) -> OpResult<Self::File>;
    /// Writes all of `data` at `off`.
    fn pwrite(&self, f: &Self::File, data: &[u8], off: u64) -> OpResult<()>;
    /// Sets the length of a file written with holes at its end.
    fn set_len(&self, f: &Self::File, len: u64) -> OpResult<()>;
    /// `fchown`.
    fn fchown(&self, f: &Self::File, uid: u32, gid: u32) -> OpResult<()>;
    /// `fchmod`.
    fn fchmod(&self, f: &Self::File, perm: u32) -> OpResult<()>;
    /// `fsetxattr`.
    fn fsetxattr(&self, f: &Self::File, name: &OsStr, value: &[u8]) -> OpResult<()>;
    /// `futimens`.
    fn futimens(&self, f: &Self::File, atime: Timespec, mtime: Timespec) -> OpResult<()>;
    /// Closes a written file, reporting delayed errors.
    fn close(&self, f: Self::File) -> OpResult<()>;
    /// `mkdir`; an existing directory is fine.
    fn mkdir(&self, p: &Path, perm: u32) -> OpResult<()>;
    /// `symlink(target, p)`.
    fn symlink(&self, target: &OsStr, p: &Path) -> OpResult<()>;
    /// `link(existing, new)`.
    fn link(&self, existing: &Path, new: &Path) -> OpResult<()>;
    /// `mknod` of a fifo or device node.
    fn mknod(&self, p: &Path, m: &Meta) -> OpResult<()>;
    /// `lchown`.
    fn lchown(&self, p: &Path, uid: u32, gid: u32) -> OpResult<()>;
    /// `chmod` (never called for symlinks).
    fn chmod(&self, p: &Path, perm: u32) -> OpResult<()>;
    /// `lsetxattr`.
    fn lsetxattr(&self, p: &Path, name: &OsStr, value: &[u8]) -> OpResult<()>;
    /// `utimensat(..., AT_SYMLINK_NOFOLLOW)`.
    fn set_times(&self, p: &Path, atime: Timespec, mtime: Timespec) -> OpResult<()>;
    /// Removes whatever non-directory is at `p` (to replace it).
    fn unlink(&self, p: &Path) -> OpResult<()>;
}

/// The host's file system.
pub struct Host;

/// The image's file system, inside LKL.
pub struct Image;

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        sec,
        nsec: nsec as u32,
    }
}

/// A host file with its path, for messages.
pub struct HostFile {
    file: File,
    path: std::path::PathBuf,
    /// A file being written: removed if a termination signal comes before
    /// it is closed (cpfromfs).
    _partial: Option<lkl_fs::host::Partial>,
}

fn host_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let seek = |pos| rfs::seek(file, pos).map_err(io::Error::from);
    let r = ops::extents_by_seeking(
        size,
        |at| match seek(SeekFrom::Data(at)) {
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            r => r.map(Some),
        },
        |at| seek(SeekFrom::Hole(at)),
    );
    match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
            Ok(vec![(0, size)])
        }
        r => r,
    }
}

impl Side for Host {
    type File = HostFile;
    const NAME: &'static str = "host";

    fn lstat(&self, p: &Path) -> OpResult<Meta> {
        let m = std::fs::symlink_metadata(p).map_err(host_err("lstat", p))?;
        let kind = FileKind::from_mode(m.mode());
        let rdev = (libc::major(m.rdev()), libc::minor(m.rdev()));
        Ok(Meta {
            kind,
            perm: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            blocks: m.blocks(),
            atime: ts(m.atime(), m.atime_nsec()),
            mtime: ts(m.mtime(), m.mtime_nsec()),
            rdev,
            id: (m.dev(), m.ino()),
            nlink: m.nlink(),
        })
    }

    fn read_dir(&self, p: &Path) -> OpResult<Vec<OsString>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(p).map_err(host_err("read directory", p))? {
            v.push(e.map_err(host_err("read directory", p))?.file_name());
        }
        v.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(v)
    }

    fn readlink(&self, p: &Path) -> OpResult<OsString> {
        std::fs::read_link(p)
            .map(|t| t.into_os_string())
            .map_err(host_err("readlink", p))
    }

    fn xattrs(&self, p: &Path) -> OpResult<Vec<(OsString, Vec<u8>)>> {
        let mut buf = vec![0u8; 4096];
        let n = loop {
            match rfs::llistxattr(p, &mut buf[..]) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 20 => {
                    buf.resize(buf.len() * 4, 0)
                }
                Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
                Err(e) => return Err(host_errno("llistxattr", p)(e)),
            }
        };
        let mut out = Vec::new();
        for name in buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let name = OsStr::from_bytes(name);
            let mut val = vec![0u8; 256];
            loop {
                match rfs::lgetxattr(p, name, &mut val[..]) {
                    Ok(n) => {
                        val.truncate(n);
                        out.push((name.to_owned(), val));
                        break;
                    }
                    Err(rustix::io::Errno::RANGE) if val.len() < 1 << 20 => {
                        val.resize(val.len() * 4, 0)
                    }
                    Err(rustix::io::Errno::NODATA) => break,
                    Err(e) => return Err(host_errno("lgetxattr", p)(e)),
                }
            }
        }
        Ok(out)
    }

    fn open(&self, p: &Path) -> OpResult<HostFile> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .map_err(host_err("open", p))?;
        Ok(HostFile {
            file,
            path: p.to_path_buf(),
            _partial: None,
        })
    }

    fn extents(&self, f: &HostFile, size: u64) -> OpResult<Vec<(u64, u64)>> {
        host_extents(&f.file, size).map_err(host_err("lseek SEEK_DATA", &f.path))
    }

    fn pread(&self, f: &HostFile, buf: &mut [u8], off: u64) -> OpResult<usize> {
        let mut done = 0;
        while done < buf.len() {
            match f.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(host_err("read", &f.path)(e)),
            }
        }
        Ok(done)
    }

    fn create(&self, p: &Path, perm: u32) -> OpResult<HostFile> {
        let (file, partial) = lkl_fs::host::Partial::create(p, |p| {
            File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(perm & 0o777)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
        })
        .map_err(host_err("create", p))?;
        Ok(HostFile {
            file,
            path: p.to_path_buf(),
            _partial: Some(partial),
        })
    }

    fn pwrite(&self, f: &HostFile, data: &[u8], off: u64) -> OpResult<()> {
        f.file
            .write_all_at(data, off)
            .map_err(host_err("write", &f.path))
    }

    fn set_len(&self, f: &HostFile, len: u64) -> OpResult<()> {
        f.file.set_len(len).map_err(host_err("truncate", &f.path))
    }

    fn fchown(&self, f: &HostFile, uid: u32, gid: u32) -> OpResult<()> {
        std::os::unix::fs::fchown(&f.file, Some(uid), Some(gid)).map_err(host_err("chown", &f.path))
    }

    fn fchmod(&self, f: &HostFile, perm: u32) -> OpResult<()> {
        rfs::fchmod(&f.file, Mode::from_raw_mode(perm)).map_err(host_errno("chmod", &f.path))
    }

    fn fsetxattr(&self, f: &HostFile, name: &OsStr, value: &[u8]) -> OpResult<()> {
        rfs::fsetxattr(&f.file, name, value, XattrFlags::empty())
            .map_err(host_errno("setxattr", &f.path))
    }

    fn futimens(&self, f: &HostFile, atime: Timespec, mtime: Timespec) -> OpResult<()> {
        rfs::futimens(&f.file, &timestamps(atime, mtime))
            .map_err(host_errno("set times of", &f.path))
    }

    fn close(&self, f: HostFile) -> OpResult<()> {
        drop(f);
        Ok(())
    }

    fn mkdir(&self, p: &Path, perm: u32) -> OpResult<()> {
        match std::fs::DirBuilder::new().mode(perm | 0o700).create(p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
            Err(e) => Err(host_err("mkdir", p)(e)),
        }
    }

    fn symlink(&self, target: &OsStr, p: &Path) -> OpResult<()> {
        std::os::unix::fs::symlink(target, p).map_err(host_err("symlink", p))
    }

    fn link(&self, existing: &Path, new: &Path) -> OpResult<()> {
        std::fs::hard_link(existing, new).map_err(host_err("link", new))
    }

    fn mknod(&self, p: &Path, m: &Meta) -> OpResult<()> {
        let kind = rfs::FileType::from_raw_mode(m.kind.mode_bits());
        let dev = rfs::makedev(m.rdev.0, m.rdev.1);
        rfs::mknodat(rfs::CWD, p, kind, Mode::from_raw_mode(m.perm), dev)
            .map_err(host_errno("mknod", p))
    }

    fn lchown(&self, p: &Path, uid: u32, gid: u32) -> OpResult<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(host_err("chown", p))
    }

    fn chmod(&self, p: &Path, perm: u32) -> OpResult<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(perm))
            .map_err(host_err("chmod", p))
    }

    fn lsetxattr(&self, p: &Path, name: &OsStr, value: &[u8]) -> OpResult<()> {
        rfs::lsetxattr(p, name, value, XattrFlags::empty()).map_err(host_errno("setxattr", p))
    }

    fn set_times(&self, p: &Path, atime: Timespec, mtime: Timespec) -> OpResult<()> {
        rfs::utimensat(
            rfs::CWD,
            p,
            &timestamps(atime, mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(host_errno("set times of", p))
    }

    fn unlink(&self, p: &Path) -> OpResult<()> {
        std::fs::remove_file(p).map_err(host_err("remove", p))
    }
}

fn timestamps(atime: Timespec, mtime: Timespec) -> Timestamps {
    let t = |t: Timespec| rfs::Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec),
    };
    Timestamps {
        last_access: t(atime),
        last_modification: t(mtime),
    }
}

fn meta_of(st: &lkl_fs::Stat) -> Meta {
    Meta {
        kind: st.kind(),
        perm: st.perm(),
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        blocks: st.blocks,
        atime: st.atime,
        mtime: st.mtime,
        rdev: (ops::major(st.rdev), ops::minor(st.rdev)),
        id: (st.dev, st.ino),
        nlink: u64::from(st.nlink),
    }
}

impl Side for Image {
    type File = ops::File;
    const NAME: &'static str = "image";

    fn lstat(&self, p: &Path) -> OpResult<Meta> {
        Ok(meta_of(&ops::lstat(p)?))
    }

    fn read_dir(&self, p: &Path) -> OpResult<Vec<OsString>> {
        let mut v = Vec::new();
        for e in ops::read_dir(p)? {
            v.push(e?.name);
        }
        v.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(v)
    }

    fn readlink(&self, p: &Path) -> OpResult<OsString> {
        Ok(ops::readlink(p)?)
    }

    fn xattrs(&self, p: &Path) -> OpResult<Vec<(OsString, Vec<u8>)>> {
        let names = match ops::list_xattrs(p) {
            Ok(n) => n,
            Err(e) if e.errno() == Some(lkl_fs::Errno::EOPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for n in names {
            match ops::get_xattr(p, &n) {
                Ok(v) => out.push((n, v)),
                Err(e) if e.errno() == Some(lkl_fs::Errno::ENODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    fn open(&self, p: &Path) -> OpResult<ops::File> {
        Ok(ops::open(p, ops::O_RDONLY | ops::O_NOFOLLOW, 0)?)
    }

    fn extents(&self, f: &ops::File, size: u64) -> OpResult<Vec<(u64, u64)>> {
        Ok(f.data_extents(size)?)
    }

    fn pread(&self, f: &ops::File, buf: &mut [u8], off: u64) -> OpResult<usize> {
        Ok(f.pread_full(buf, off)?)
    }

    fn create(&self, p: &Path, perm: u32) -> OpResult<ops::File> {
        Ok(ops::open(
            p,
            ops::O_WRONLY | ops::O_CREAT | ops::O_TRUNC | ops::O_NOFOLLOW,
            perm,
        )?)
    }

    fn pwrite(&self, f: &ops::File, data: &[u8], off: u64) -> OpResult<()> {
        Ok(f.pwrite_all(data, off)?)
    }

    fn set_len(&self, f: &ops::File, len: u64) -> OpResult<()> {
        Ok(f.set_len(len)?)
    }

    fn fchown(&self, f: &ops::File, uid: u32, gid: u32) -> OpResult<()> {
        Ok(f.chown(uid, gid)?)
    }

    fn fchmod(&self, f: &ops::File, perm: u32) -> OpResult<()> {
        Ok(f.chmod(perm)?)
    }

    fn fsetxattr(&self, f: &ops::File, name: &OsStr, value: &[u8]) -> OpResult<()> {
        Ok(f.set_xattr(name, value, 0)?)
    }

    fn futimens(&self, f: &ops::File, atime: Timespec, mtime: Timespec) -> OpResult<()> {
        Ok(f.set_times(atime, mtime)?)
    }

    fn close(&self, f: ops::File) -> OpResult<()> {
        let path = f.path().to_path_buf();
        f.close().map_err(|e| OpError {
            errno: e.errno().map_or(libc::EIO, |e| e.0),
            msg: format!("close {} (in the image): {e}", path.display()),
        })
    }

    fn mkdir(&self, p: &Path, perm: u32) -> OpResult<()> {
        match ops::mkdir(p, perm) {
            Err(e) if e.errno() == Some(lkl_fs::Errno::EEXIST) => {
                if ops::stat(p).is_ok_and(|s| s.kind() == FileKind::Dir) {
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
            r => Ok(r?),
        }
    }

    fn symlink(&self, target: &OsStr, p: &Path) -> OpResult<()> {
        Ok(ops::symlink(target, p)?)
    }

    fn link(&self, existing: &Path, new: &Path) -> OpResult<()> {
        Ok(ops::link(existing, new)?)
    }

    fn mknod(&self, p: &Path, m: &Meta) -> OpResult<()> {
        Ok(ops::mknod(
            p,
            m.kind.mode_bits() | m.perm,
            ops::makedev(m.rdev.0, m.rdev.1),
        )?)
    }

    fn lchown(&self, p: &Path, uid: u32, gid: u32) -> OpResult<()> {
        Ok(ops::lchown(p, uid, gid)?)
    }

    fn chmod(&self, p: &Path, perm: u32) -> OpResult<()> {
        Ok(ops::chmod(p, perm)?)
    }

    fn lsetxattr(&self, p: &Path, name: &OsStr, value: &[u8]) -> OpResult<()> {
        Ok(ops::set_xattr(p, name, value, 0)?)
    }

    fn set_times(&self, p: &Path, atime: Timespec, mtime: Timespec) -> OpResult<()> {
        Ok(ops::set_times(p, atime, mtime)?)
    }

    fn unlink(&self, p: &Path) -> OpResult<()> {
        Ok(ops::unlink(p)?)
    }
}
