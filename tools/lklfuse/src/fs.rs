//! The FUSE file system: every request becomes system calls into LKL.
//!
//! Requests are served by several fuser threads at once (`-s` for one).
//! Each host thread that calls into LKL gets a kernel task of its own, so
//! concurrent requests are concurrent system calls inside Linux, with
//! Linux's own locking; nothing here holds a lock across a system call
//! except the node table's short critical sections (see [`crate::nodes`]).
//!
//! Open directories are LKL descriptors of their own: the FUSE file
//! handle is the LKL descriptor number. Regular files are read and written
//! through one descriptor per node ([`Node::data`]), whichever open of the
//! file the host sends a request for: the host then needs no OPEN or
//! RELEASE round trip per file (`FUSE_NO_OPEN_SUPPORT`), and a file's
//! handle is always 0.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno as FErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use lkl::sys::lkl_stat;
use lkl::Errno;

use crate::nodes::{Node, Nodes, PathFd, ROOT_ID};
use crate::sys::{self, Time};

/// How long the host may cache names and attributes. Only this process
/// changes the image, and every change goes through the host kernel,
/// which updates its cache itself.
const TTL: Duration = Duration::from_secs(1);

/// The largest read or write request asked for (the kernel caps it at
/// its own limit, 1 MiB by default).
pub const MAX_IO: u32 = 1 << 20;

/// Whether `-d` asked for a line per failed request.
pub static DEBUG: AtomicBool = AtomicBool::new(false);

/// The state shared by the serving threads and the shutdown path.
#[derive(Debug)]
pub struct Shared {
    /// Node ids and their LKL inodes.
    pub nodes: Nodes,
    /// LKL descriptors of open directories (FUSE handles).
    pub handles: Mutex<HashSet<i32>>,
}

impl Shared {
    /// Closes every handle the host left open and drops every node.
    pub fn close_all(&self) {
        let handles: Vec<i32> = lock(&self.handles).drain().collect();
        for fd in handles {
            let _ = sys::close(fd);
        }
        self.nodes.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The FUSE side of lklfuse.
#[derive(Debug)]
pub struct LklFs {
    shared: std::sync::Arc<Shared>,
    writeback: bool,
    /// Whether the host opens files without asking (it offered
    /// `FUSE_NO_OPEN_SUPPORT`; `open` then answers `ENOSYS` once).
    no_open: bool,
    /// The mount point, to find the mount's readahead setting.
    mountpoint: PathBuf,
    /// Set once the readahead was widened (or found unwidenable).
    readahead: std::sync::Once,
}

impl LklFs {
    /// Serves the file system whose nodes and handles are in `shared`;
    /// `writeback` asks the host kernel for its write-back cache;
    /// `mountpoint` is where the mount will be (an absolute path).
    pub fn new(shared: std::sync::Arc<Shared>, writeback: bool, mountpoint: PathBuf) -> Self {
        LklFs {
            shared,
            writeback,
            no_open: false,
            mountpoint,
            readahead: std::sync::Once::new(),
        }
    }

    fn node(&self, id: INodeNo) -> Result<Node, Errno> {
        self.shared.nodes.get(id.0).ok_or(Errno(libc::ESTALE))
    }

    /// `lookup`: the node for `name` in `dir` with one more lookup, and
    /// its attributes.
    fn lookup_in(&self, parent: INodeNo, dir: &Node, name: &OsStr) -> Result<FileAttr, Errno> {
        self.lookup_at(parent, dir.fd.0, name)
    }

    /// [`LklFs::lookup_in`] with the directory as any descriptor of it.
    fn lookup_at(&self, parent: INodeNo, dirfd: i32, name: &OsStr) -> Result<FileAttr, Errno> {
        let st = sys::fstatat(dirfd, name, sys::AT_SYMLINK_NOFOLLOW)?;
        let nodes = &self.shared.nodes;
        if let Some(id) = nodes.lookup_known(st.st_dev, st.st_ino, parent.0, name) {
            return Ok(attr(id, &st));
        }
        let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = PathFd(sys::openat(dirfd, name, flags, 0)?);
        // The name may have changed meanwhile: describe what was opened.
        let st = sys::fstat(fd.0)?;
        let kind = st.st_mode & libc::S_IFMT;
        let id = nodes.insert(fd, (st.st_dev, st.st_ino), kind, parent.0, name);
        Ok(attr(id, &st))
    }

    /// The node for an open descriptor `fd`, just made as `name` in
    /// directory node `parent` (by `create`).
    fn node_of_fd(&self, fd: i32, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let st = sys::fstat(fd)?;
        let nodes = &self.shared.nodes;
        if let Some(id) = nodes.lookup_known(st.st_dev, st.st_ino, parent.0, name) {
            return Ok(attr(id, &st));
        }
        let path = proc_path(fd);
        let flags = libc::O_PATH | libc::O_CLOEXEC;
        let pfd = PathFd(sys::openat(sys::AT_FDCWD, &path, flags, 0)?);
        let kind = st.st_mode & libc::S_IFMT;
        let id = nodes.insert(pfd, (st.st_dev, st.st_ino), kind, parent.0, name);
        Ok(attr(id, &st))
    }

    /// Gives a new inode (held open by `fd`) to the requesting user.
    fn own(&self, req: &Request, fd: i32) -> Result<(), Errno> {
        if req.uid() == 0 && req.gid() == 0 {
            return Ok(());
        }
        sys::fchown(fd, req.uid(), req.gid())
    }

    /// Clears set-user-ID and set-group-ID (when group-executable) on the
    /// file open as `fd`, as the kernel does when a user without
    /// `CAP_FSETID` writes or truncates it. With `FUSE_HANDLE_KILLPRIV_V2`
    /// the host leaves this to us (and in exchange stops asking for
    /// `security.capability` before every write); LKL's own VFS already
    /// drops that xattr on write, and kills the bits itself on chown.
    fn kill_suid(&self, fd: i32) -> Result<(), Errno> {
        let st = sys::fstat(fd)?;
        let mode = st.st_mode;
        let mut kill = mode & libc::S_ISUID;
        if mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
            kill |= libc::S_ISGID;
        }
        if kill != 0 && mode & libc::S_IFMT == libc::S_IFREG {
            sys::fchmod(fd, mode & 0o7777 & !kill)?;
        }
        Ok(())
    }

    /// The descriptor that reads and writes regular file `node`, opened
    /// at its first use (through `/proc/self/fd`) and kept until the host
    /// releases the file (when it says so) or forgets the node. Read-write,
    /// so that one descriptor serves every open of the file on the host
    /// (which checked the opener's access); read-only where the file
    /// system or the file refuses writing (`-o ro`, an immutable file),
    /// and a write then fails with `EBADF`.
    fn data_fd(&self, node: &Node) -> Result<Arc<PathFd>, Errno> {
        if let Some(fd) = &*lock(&node.data) {
            return Ok(fd.clone());
        }
        if node.kind != libc::S_IFREG {
            return Err(Errno(libc::EINVAL));
        }
        let path = proc_path(node.fd.0);
        let flags = libc::O_CLOEXEC | libc::O_LARGEFILE;
        let fd = match sys::openat(sys::AT_FDCWD, &path, flags | libc::O_RDWR, 0) {
            Err(Errno(libc::EROFS | libc::EACCES | libc::EPERM | libc::ETXTBSY)) => {
                sys::openat(sys::AT_FDCWD, &path, flags | libc::O_RDONLY, 0)?
            }
            r => r?,
        };
        Ok(Self::keep_data_fd(node, fd))
    }

    /// Makes `fd` the data descriptor of `node`, unless another request
    /// set one meanwhile (then `fd` is closed); returns the one kept.
    fn keep_data_fd(node: &Node, fd: i32) -> Arc<PathFd> {
        let fd = PathFd(fd);
        // Dropping the one not kept closes it.
        lock(&node.data).get_or_insert_with(|| Arc::new(fd)).clone()
    }

    /// The data descriptor of node `ino`, for a request on an open regular
    /// file (its handle is always 0).
    fn file(&self, ino: INodeNo) -> Result<Arc<PathFd>, Errno> {
        self.data_fd(&self.node(ino)?)
    }

    fn add_handle(&self, fd: i32) -> FileHandle {
        lock(&self.shared.handles).insert(fd);
        FileHandle(fd as u64)
    }

    fn close_handle(&self, fh: FileHandle) -> Result<(), Errno> {
        let fd = fh.0 as i32;
        if !lock(&self.shared.handles).remove(&fd) {
            return Err(Errno(libc::EBADF));
        }
        sys::close(fd)
    }

    fn handle(&self, fh: FileHandle) -> i32 {
        fh.0 as i32
    }

    fn new_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        make: impl FnOnce(i32) -> Result<(), Errno>,
    ) -> Result<FileAttr, Errno> {
        let dir = self.node(parent)?;
        make(dir.fd.0)?;
        let attr = self.lookup_in(parent, &dir, name)?;
        if req.uid() != 0 || req.gid() != 0 {
            if let Some(node) = self.shared.nodes.get(attr.ino.0) {
                self.own(req, node.fd.0)?;
                return self.getattr_of(attr.ino, node.fd.0);
            }
        }
        Ok(attr)
    }

    fn getattr_of(&self, id: INodeNo, fd: i32) -> Result<FileAttr, Errno> {
        Ok(attr(id.0, &sys::fstat(fd)?))
    }
}

/// `/proc/self/fd/N` inside LKL.
fn proc_path(fd: i32) -> OsString {
    OsString::from(format!("/proc/self/fd/{fd}"))
}

fn ferr(e: Errno) -> FErrno {
    FErrno::from_i32(e.0)
}

fn time(sec: i64, nsec: u64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec)
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// `d_type` to a file type.
fn dtype_kind(t: u8) -> FileType {
    kind(u32::from(t) << 12)
}

/// An LKL `stat` as FUSE attributes of node `id`.
pub fn attr(id: u64, st: &lkl_stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn to_time(t: TimeOrNow) -> Time {
    match t {
        TimeOrNow::Now => Time::Now,
        TimeOrNow::SpecificTime(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Time::At(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (mut s, mut n) = (-(d.as_secs() as i64), d.subsec_nanos());
                if n > 0 {
                    s -= 1;
                    n = 1_000_000_000 - n;
                }
                Time::At(s, n)
            }
        },
    }
}

/// Whether the out-of-memory advice was printed.
static TOLD_ENOMEM: AtomicBool = AtomicBool::new(false);

/// Logs a failed request under `-d`; says once what to do about `ENOMEM`.
fn trace(op: &str, id: u64, e: Errno) -> FErrno {
    if e.0 == libc::ENOMEM && !TOLD_ENOMEM.swap(true, Ordering::Relaxed) {
        eprintln!(
            "lklfuse: the kernel inside lklfuse is out of memory ({op} failed): \
             mount again with a larger -o mb=MEM"
        );
    }
    if DEBUG.load(Ordering::Relaxed) {
        eprintln!("lklfuse: {op} node {id}: {e}");
    }
    ferr(e)
}

macro_rules! reply {
    ($reply:expr, $op:literal, $id:expr, $res:expr, |$v:pat_param| $ok:expr) => {
        match $res {
            Ok($v) => $ok,
            Err(e) => $reply.error(trace($op, $id, e)),
        }
    };
}

/// Repeats `op(done)` (one `pread`/`pwrite` from `done` bytes on) until
/// `len` bytes are done, the file ends (0) or an error follows some
/// progress; returns the bytes done, or the first call's error.
fn full_io(len: usize, mut op: impl FnMut(usize) -> Result<usize, Errno>) -> Result<usize, Errno> {
    let mut done = 0;
    loop {
        match op(done) {
            Ok(0) => break Ok(done),
            Ok(n) => {
                done += n;
                if done == len {
                    break Ok(done);
                }
            }
            Err(Errno(libc::EINTR)) => {}
            Err(e) if done == 0 => break Err(e),
            Err(_) => break Ok(done),
        }
    }
}

/// Widens the host's readahead on our mount to [`MAX_IO`], where allowed
/// (root). FUSE starts a mount at 128 KiB, what the kernel offers in INIT
/// (fuser cannot ask for more there), so a sequential read comes in
/// 128 KiB requests; in 1 MiB ones it took 0.62-0.75 s per GiB instead of
/// 0.80-1.0 s (ext4, quiet machine). Without root nothing changes.
fn widen_readahead(mountpoint: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    if let Some(dev) = fuse_device(&info, mountpoint) {
        let _ = std::fs::write(
            format!("/sys/class/bdi/{dev}/read_ahead_kb"),
            (MAX_IO / 1024).to_string(),
        );
    }
}

/// The `major:minor` of the last FUSE mount on `mountpoint` in `mountinfo`
/// (the text of `/proc/self/mountinfo`).
fn fuse_device<'a>(mountinfo: &'a str, mountpoint: &Path) -> Option<&'a str> {
    // mountinfo escapes blanks and backslashes in paths as octal.
    let want = mountpoint
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    // Fields: id, parent, major:minor, root, mount point, ... " - " type.
    mountinfo.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let dev = f.nth(2)?;
        let at = f.nth(1)?;
        let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
        (at == want && fstype.starts_with("fuse")).then_some(dev)
    })
}

/// How open files are served: the host keeps its page cache across opens.
/// Every change to a file's data goes through this mount (the image is
/// locked, LKL is ours), so what the host caches stays true; without it
/// the host drops a file's cached pages at every open and reads it again.
const FILE_OPEN: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;

thread_local! {
    /// Each serving thread's buffer for `read` replies.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Size of the `getdents64` buffer per `readdir` request: about what one
/// FUSE reply (a page) holds, since entries that do not fit are read
/// again by the next request.
const DIRENT_BUF: usize = 4096;

impl Filesystem for LklFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        let max_ra = match config.set_max_readahead(MAX_IO) {
            Ok(_) => MAX_IO,
            Err(n) => n,
        };
        let _ = config.set_max_readahead(max_ra);
        let _ = config.set_max_background(64);
        let caps = config.capabilities();
        // No FUSE_ATOMIC_O_TRUNC: an open with O_TRUNC arrives as a
        // SETATTR of the size (the host may skip OPEN, below).
        let mut want = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            // READDIRPLUS where the host finds it pays (a listing whose
            // entries are then looked up, as tar or ls -l do): each entry
            // comes with its attributes, a LOOKUP round trip less per file.
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO;
        if self.writeback {
            want |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        let _ = config.add_capabilities(want & caps);
        if self.writeback && !caps.contains(InitFlags::FUSE_WRITEBACK_CACHE) {
            self.writeback = false;
        }
        // The host may open files without asking: files are read and
        // written through their node's descriptor, so an OPEN has nothing
        // to do, and once it is answered with ENOSYS the host sends no OPEN
        // or RELEASE again (it keeps its page cache across opens, as with
        // FOPEN_KEEP_CACHE). Two round trips less per file read.
        self.no_open = caps.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let res = self
            .node(parent)
            .and_then(|dir| self.lookup_in(parent, &dir, name));
        match res {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            // A negative entry: the host may cache the absence.
            Err(Errno(libc::ENOENT)) => reply.error(FErrno::ENOENT),
            Err(e) => reply.error(trace("lookup", parent.0, e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let res = self.node(ino).and_then(|n| self.getattr_of(ino, n.fd.0));
        reply!(reply, "getattr", ino.0, res, |a| reply.attr(&TTL, &a));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let res = (|| {
            let node = self.node(ino)?;
            let fd = node.fd.0;
            if let Some(mode) = mode {
                sys::fchmod(fd, mode & 0o7777)?;
            }
            if uid.is_some() || gid.is_some() {
                sys::fchown(fd, uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX))?;
            }
            if let Some(size) = size {
                let data = lock(&node.data).clone();
                match data {
                    Some(data) => sys::ftruncate(data.0, size)?,
                    None => sys::truncate(&proc_path(fd), size)?,
                }
                // FUSE_HANDLE_KILLPRIV_V2: truncation by a user without
                // CAP_FSETID (taken as: not root) drops the set-ID bits.
                if req.uid() != 0 && mode.is_none() {
                    self.kill_suid(fd)?;
                }
            }
            if atime.is_some() || mtime.is_some() {
                let a = atime.map_or(Time::Omit, to_time);
                let m = mtime.map_or(Time::Omit, to_time);
                sys::utimens(fd, a, m)?;
            }
            self.getattr_of(ino, fd)
        })();
        reply!(reply, "setattr", ino.0, res, |a| reply.attr(&TTL, &a));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let res = self.node(ino).and_then(|n| sys::readlink(n.fd.0));
        reply!(reply, "readlink", ino.0, res, |t| reply.data(&t));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let res = self.new_entry(req, parent, name, |dir| sys::mknodat(dir, name, mode, rdev));
        reply!(reply, "mknod", parent.0, res, |a| reply.entry(
            &TTL,
            &a,
            Generation(0)
        ));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let res = self.new_entry(req, parent, name, |dir| sys::mkdirat(dir, name, mode));
        reply!(reply, "mkdir", parent.0, res, |a| reply.entry(
            &TTL,
            &a,
            Generation(0)
        ));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = self
            .node(parent)
            .and_then(|d| sys::unlinkat(d.fd.0, name, 0));
        reply!(reply, "unlink", parent.0, res, |()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = self
            .node(parent)
            .and_then(|d| sys::unlinkat(d.fd.0, name, sys::AT_REMOVEDIR));
        reply!(reply, "rmdir", parent.0, res, |()| reply.ok());
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let res = self.new_entry(req, parent, link_name, |dir| {
            sys::symlinkat(target.as_os_str(), dir, link_name)
        });
        reply!(reply, "symlink", parent.0, res, |a| reply.entry(
            &TTL,
            &a,
            Generation(0)
        ));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let res = (|| {
            let from = self.node(parent)?;
            let to = self.node(newparent)?;
            sys::renameat2(from.fd.0, name, to.fd.0, newname, flags.bits())
        })();
        reply!(reply, "rename", parent.0, res, |()| reply.ok());
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let node = self.node(ino)?;
            let dir = self.node(newparent)?;
            sys::link_fd(node.fd.0, dir.fd.0, newname)?;
            self.lookup_in(newparent, &dir, newname)
        })();
        reply!(reply, "link", ino.0, res, |a| reply.entry(
            &TTL,
            &a,
            Generation(0)
        ));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Before the first file is open: the host reads the readahead size
        // into each file as it opens it, after this request.
        self.readahead
            .call_once(|| widen_readahead(&self.mountpoint));
        if self.no_open {
            // From now on the host opens files without asking.
            return reply.error(FErrno::ENOSYS);
        }
        // O_TRUNC comes as a SETATTR (no FUSE_ATOMIC_O_TRUNC); reads and
        // writes go to the node's descriptor, whatever the handle.
        let res = self.node(ino);
        reply!(reply, "open", ino.0, res, |_| reply
            .opened(FileHandle(0), FILE_OPEN));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _ = fh;
        let file = match self.file(ino) {
            Ok(f) => f,
            Err(e) => return reply.error(trace("read", ino.0, e)),
        };
        let fd = file.0;
        READ_BUF.with_borrow_mut(|buf| {
            // Grown once per serving thread (and zeroed then), reused after:
            // a fresh 1 MiB buffer per request costs a zeroing pass and
            // cold cache lines for the host's copy of the reply.
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let buf = &mut buf[..size as usize];
            let res = full_io(buf.len(), |done| {
                sys::pread(fd, &mut buf[done..], offset + done as u64)
            });
            // Drop-behind: the host keeps what it read in its own page
            // cache (FOPEN_KEEP_CACHE), so LKL's copy only fills LKL's
            // memory and costs reclaim work there once it is full. A 1 GiB
            // read through a fresh mount: 0.71-0.76 s instead of 0.77-1.27.
            if let Ok(n) = res {
                let _ = sys::drop_cached(fd, offset, n as u64);
            }
            reply!(reply, "read", ino.0, res, |n| reply.data(&buf[..n]));
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _ = fh;
        let file = match self.file(ino) {
            Ok(f) => f,
            Err(e) => return reply.error(trace("write", ino.0, e)),
        };
        let fd = file.0;
        let res = full_io(data.len(), |done| {
            sys::pwrite(fd, &data[done..], offset + done as u64)
        });
        // FUSE_HANDLE_KILLPRIV_V2: the writer lacks CAP_FSETID.
        let res = match res {
            Ok(n) if n > 0 && write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) => {
                self.kill_suid(fd).map(|()| n)
            }
            r => r,
        };
        reply!(reply, "write", ino.0, res, |n| reply.written(n as u32));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do: data is in LKL's page cache as soon as write
        // returns, and reaches the image on fsync, sync or unmount (locks
        // are the host's own: no getlk/setlk here). ENOSYS tells the host
        // so, and it sends no more FLUSH: one round trip less per close
        // (an untar of 19 404 files closes each once).
        reply.error(FErrno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The host's last use of the file for now (when it asks at all):
        // the node's descriptor is closed once no request uses it, as the
        // file system expects of a closed file (ext4 gives back blocks it
        // reserved ahead for the writer), and opened again if needed.
        let _ = fh;
        if let Some(node) = self.shared.nodes.get(ino.0) {
            lock(&node.data).take();
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _ = fh;
        let res = self.file(ino).and_then(|fd| sys::fsync(fd.0, datasync));
        reply!(reply, "fsync", ino.0, res, |()| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let res = self.node(ino).and_then(|n| {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
            sys::openat(n.fd.0, OsStr::new("."), flags, 0)
        });
        reply!(reply, "opendir", ino.0, res, |fd| reply
            .opened(self.add_handle(fd), FopenFlags::empty()));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fd = self.handle(fh);
        let res = (|| {
            let dev = sys::fstat(fd)?.st_dev;
            each_dirent(fd, offset, |rec| {
                let id = if rec.name == b"." || rec.name == b".." {
                    rec.ino
                } else {
                    self.shared.nodes.id_for_ino(dev, rec.ino)
                };
                let name = OsStr::from_bytes(rec.name);
                Ok(reply.add(INodeNo(id), rec.off, dtype_kind(rec.kind), name))
            })
        })();
        reply!(reply, "readdir", ino.0, res, |()| reply.ok());
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fd = self.handle(fh);
        let res = (|| {
            let here = sys::fstat(fd)?;
            each_dirent(fd, offset, |rec| {
                let name = OsStr::from_bytes(rec.name);
                // The host makes no node of `.` and `..`: their
                // attributes only fill the record.
                if rec.name == b"." || rec.name == b".." {
                    let a = attr(rec.ino, &here);
                    return Ok(reply.add(INodeNo(rec.ino), rec.off, name, &TTL, &a, Generation(0)));
                }
                // Each entry given is a lookup the host will forget.
                let a = match self.lookup_at(ino, fd, name) {
                    Ok(a) => a,
                    // Removed since getdents64 listed it.
                    Err(Errno(libc::ENOENT)) => return Ok(false),
                    Err(e) => return Err(e),
                };
                if reply.add(a.ino, rec.off, name, &TTL, &a, Generation(0)) {
                    // Not sent: not a lookup after all.
                    self.shared.nodes.forget(a.ino.0, 1);
                    return Ok(true);
                }
                Ok(false)
            })
        })();
        reply!(reply, "readdirplus", ino.0, res, |()| reply.ok());
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let res = self.close_handle(fh);
        reply!(reply, "releasedir", ino.0, res, |()| reply.ok());
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let res = sys::fsync(self.handle(fh), datasync);
        reply!(reply, "fsyncdir", ino.0, res, |()| reply.ok());
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let res = self
            .node(INodeNo(ROOT_ID))
            .and_then(|n| sys::fstatfs(n.fd.0));
        reply!(reply, "statfs", ino.0, res, |s| reply.statfs(
            s.f_blocks as u64,
            s.f_bfree as u64,
            s.f_bavail as u64,
            s.f_files as u64,
            s.f_ffree as u64,
            s.f_bsize as u32,
            s.f_namelen as u32,
            s.f_frsize as u32,
        ));
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let res = self.node(ino).and_then(|n| {
            if n.kind == libc::S_IFLNK {
                return Err(Errno(libc::EPERM));
            }
            sys::setxattr(&proc_path(n.fd.0), name, value, flags)
        });
        reply!(reply, "setxattr", ino.0, res, |()| reply.ok());
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let res = self.node(ino).and_then(|n| {
            if n.kind == libc::S_IFLNK {
                return Err(Errno(libc::ENODATA));
            }
            let mut buf = vec![0u8; size as usize];
            let len = sys::getxattr(&proc_path(n.fd.0), name, &mut buf)?;
            buf.truncate(len);
            Ok((len, buf))
        });
        match res {
            Ok((len, _)) if size == 0 => reply.size(len as u32),
            Ok((_, buf)) => reply.data(&buf),
            Err(Errno(libc::ENODATA)) => reply.error(FErrno::NO_XATTR),
            Err(e) => reply.error(trace("getxattr", ino.0, e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let res = self.node(ino).and_then(|n| {
            if n.kind == libc::S_IFLNK {
                return Ok((0, Vec::new()));
            }
            let mut buf = vec![0u8; size as usize];
            let len = sys::listxattr(&proc_path(n.fd.0), &mut buf)?;
            buf.truncate(len);
            Ok((len, buf))
        });
        match res {
            Ok((len, _)) if size == 0 => reply.size(len as u32),
            Ok((_, buf)) => reply.data(&buf),
            Err(e) => reply.error(trace("listxattr", ino.0, e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = self.node(ino).and_then(|n| {
            if n.kind == libc::S_IFLNK {
                return Err(Errno(libc::ENODATA));
            }
            sys::removexattr(&proc_path(n.fd.0), name)
        });
        match res {
            Ok(()) => reply.ok(),
            Err(Errno(libc::ENODATA)) => reply.error(FErrno::NO_XATTR),
            Err(e) => reply.error(trace("removexattr", ino.0, e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let res = self.node(ino).and_then(|n| {
            if n.kind == libc::S_IFLNK {
                return Ok(());
            }
            sys::access(&proc_path(n.fd.0), mask.bits())
        });
        reply!(reply, "access", ino.0, res, |()| reply.ok());
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.readahead
            .call_once(|| widen_readahead(&self.mountpoint));
        if self.no_open {
            // The host then makes files with MKNOD and opens them without
            // asking: a file made by CREATE would cost a RELEASE when
            // closed, one round trip more per file of an untar.
            return reply.error(FErrno::ENOSYS);
        }
        let res = (|| {
            let dir = self.node(parent)?;
            // Read-write whatever the host's open asked for: this
            // descriptor becomes the node's data descriptor (`data_fd`).
            let flags = (flags & (libc::O_TRUNC | libc::O_EXCL))
                | libc::O_RDWR
                | libc::O_CREAT
                | libc::O_CLOEXEC
                | libc::O_LARGEFILE;
            let fd = sys::openat(dir.fd.0, name, flags, mode)?;
            let a = self
                .own(req, fd)
                .and_then(|()| self.node_of_fd(fd, parent, name));
            match (a, self.shared.nodes.get(a.as_ref().map_or(0, |a| a.ino.0))) {
                (Ok(a), Some(node)) => {
                    Self::keep_data_fd(&node, fd);
                    Ok(a)
                }
                (a, _) => {
                    let _ = sys::close(fd);
                    a
                }
            }
        })();
        reply!(reply, "create", parent.0, res, |a| reply.created(
            &TTL,
            &a,
            Generation(0),
            FileHandle(0),
            FILE_OPEN
        ));
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _ = fh;
        let res = self
            .file(ino)
            .and_then(|fd| sys::fallocate(fd.0, mode, offset, length));
        reply!(reply, "fallocate", ino.0, res, |()| reply.ok());
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        // SEEK_DATA / SEEK_HOLE: the node's descriptor's position is
        // unused (reads and writes are positional).
        let _ = fh;
        let res = self
            .file(ino)
            .and_then(|fd| sys::lseek(fd.0, offset, whence));
        reply!(reply, "lseek", ino.0, res, |o| reply.offset(o));
    }
}

/// Calls `f` with each entry of directory `fd` from `offset` on, until the end
/// or until `f` says the reply is full (`true`).
fn each_dirent(
    fd: i32,
    offset: u64,
    mut f: impl FnMut(&Dirent<'_>) -> Result<bool, Errno>,
) -> Result<(), Errno> {
    sys::lseek(fd, offset as i64, libc::SEEK_SET)?;
    let mut buf = vec![0u8; DIRENT_BUF];
    loop {
        let n = sys::getdents64(fd, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        for rec in Dirents(&buf[..n]) {
            if f(&rec)? {
                return Ok(());
            }
        }
    }
}

/// One `linux_dirent64` record.
struct Dirent<'a> {
    ino: u64,
    off: u64,
    kind: u8,
    name: &'a [u8],
}

/// Iterates over the records of a `getdents64` buffer; stops at a
/// malformed one.
struct Dirents<'a>(&'a [u8]);

impl<'a> Iterator for Dirents<'a> {
    type Item = Dirent<'a>;

    fn next(&mut self) -> Option<Dirent<'a>> {
        // d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
        const NAME: usize = 19;
        let b = self.0;
        if b.len() < NAME {
            return None;
        }
        let reclen = usize::from(u16::from_ne_bytes([b[16], b[17]]));
        if reclen < NAME || reclen > b.len() {
            return None;
        }
        let name = &b[NAME..reclen];
        let len = name.iter().position(|&c| c == 0)?;
        self.0 = &b[reclen..];
        Some(Dirent {
            ino: u64::from_ne_bytes(b[..8].try_into().ok()?),
            off: u64::from_ne_bytes(b[8..16].try_into().ok()?),
            kind: b[18],
            name: &name[..len],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_device_finds_the_last_fuse_mount_on_the_path() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:51 / /tmp/a\\040b rw,nosuid - fuse.lklfuse.ext4 /img rw,user_id=0
91 22 0:52 / /tmp/m rw - tmpfs tmpfs rw
92 91 0:53 / /tmp/m rw,nosuid - fuse.lklfuse.xfs /img2 rw
";
        assert_eq!(fuse_device(info, Path::new("/tmp/a b")), Some("0:51"));
        assert_eq!(fuse_device(info, Path::new("/tmp/m")), Some("0:53"));
        assert_eq!(fuse_device(info, Path::new("/")), None);
        assert_eq!(fuse_device(info, Path::new("/tmp")), None);
    }

    fn rec(ino: u64, off: u64, kind: u8, name: &[u8]) -> Vec<u8> {
        let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
        let mut r = vec![0u8; reclen];
        r[..8].copy_from_slice(&ino.to_ne_bytes());
        r[8..16].copy_from_slice(&off.to_ne_bytes());
        r[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
        r[18] = kind;
        r[19..19 + name.len()].copy_from_slice(name);
        r
    }

    #[test]
    fn dirents_parse_and_stop_at_garbage() {
        let mut buf = rec(2, 10, 4, b".");
        buf.extend(rec(12, 20, 8, "dé.txt".as_bytes()));
        let all: Vec<_> = Dirents(&buf)
            .map(|d| (d.ino, d.off, d.kind, d.name))
            .collect();
        assert_eq!(
            all,
            [(2, 10, 4, &b"."[..]), (12, 20, 8, "dé.txt".as_bytes())]
        );
        assert_eq!(Dirents(&buf[..10]).count(), 0);
        let mut bad = rec(1, 1, 8, b"x");
        bad[16] = 3;
        assert_eq!(Dirents(&bad).count(), 0);
    }

    #[test]
    fn times_before_and_after_the_epoch() {
        assert_eq!(time(1, 5), UNIX_EPOCH + Duration::new(1, 5));
        let t = time(-2, 500_000_000);
        assert_eq!(
            to_time(TimeOrNow::SpecificTime(t)),
            Time::At(-2, 500_000_000)
        );
        assert_eq!(to_time(TimeOrNow::SpecificTime(time(7, 9))), Time::At(7, 9));
        assert_eq!(to_time(TimeOrNow::Now), Time::Now);
    }

    #[test]
    fn modes_map_to_kinds() {
        assert_eq!(kind(libc::S_IFDIR | 0o755), FileType::Directory);
        assert_eq!(kind(libc::S_IFLNK), FileType::Symlink);
        assert_eq!(dtype_kind(8), FileType::RegularFile);
        assert_eq!(dtype_kind(1), FileType::NamedPipe);
    }
}
