//! The FUSE server: a passthrough of one host directory.
//!
//! Every inode the kernel knows is a host `O_PATH` descriptor, opened
//! relative to its parent's descriptor, one name at a time, with
//! `O_NOFOLLOW`: no path is ever resolved from the shared directory's
//! name, and no symbolic link is ever followed by the server (links are
//! read with `readlinkat` and followed, if at all, by the kernel inside
//! LKL, within its own mount). Names with a `/`, empty names, `.` and `..`
//! are refused, so a lookup never leaves its parent; `..` of the shared
//! directory is resolved by the kernel, never here. Files and directories
//! are opened through `/proc/self/fd/N` of their `O_PATH` descriptor, which
//! reaches the same inode and nothing else. The calls on a file itself (mode,
//! times, extended attributes) go to a descriptor of it: its open handle's
//! while the kernel holds it open, else the node's (`AT_EMPTY_PATH`, or its
//! `/proc/self/fd/N` where the host refuses that).
//!
//! Nodes are keyed by (device, inode number): two names of one file (hard
//! links) are one node. The kernel's lookup count is kept per node, and a
//! node's descriptor is closed when the kernel forgets it.
//!
//! Ids: requests are served with the server's host credentials. Run as
//! root, a file, directory, node or link created inside is given the
//! creator's uid and gid (as seen inside LKL; in a set-group-id directory
//! the directory's group, as natively), and `chown` passes ids
//! through unchanged; run as another user, created files belong to that
//! user and `chown` does what the host allows it. The kernel checks
//! permissions itself (virtiofs mounts with `default_permissions`) against
//! the host's modes and ids.
//!
//! Each node holds a descriptor: the server raises the process's limit of open
//! files when it starts (to `fs.nr_open` as root, else to the hard limit).
//!
//! A read-only server answers every request that would change the
//! directory (and every open for writing or truncation) with `EROFS`.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::abi::{self, fattr, op, Args, Pod};
use super::FsError;

/// How long the kernel may keep a name and attributes before asking
/// again: one second, so a change made on the host is seen within that.
const TIMEOUT_SECS: u64 = 1;
/// The largest write (and read) the kernel may send: 1 MiB.
pub const MAX_WRITE: u32 = 1 << 20;
/// Pages per request (`max_pages`): 1 MiB.
pub const MAX_PAGES: u16 = 256;
/// The fewest node descriptors kept open before closing unused ones.
const MIN_FD_BUDGET: usize = 64;

/// What a request gets back.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// These bytes after the reply header.
    Data(Vec<u8>),
    /// This many bytes, already written into the request's data buffers.
    Direct(usize),
    /// An error number (positive).
    Error(i32),
    /// Nothing: the request takes no reply (`FORGET`, `BATCH_FORGET`).
    None,
}

/// The request's bulk data, as host memory: the data of a `WRITE`
/// (`src`), and where a `READ` puts what it reads (`dst`, after the reply
/// header).
#[derive(Debug, Default)]
pub struct Bulk<'a> {
    /// A `WRITE`'s data.
    pub src: &'a [libc::iovec],
    /// Room for a `READ`'s data.
    pub dst: &'a [libc::iovec],
}

/// One node: the host file, as an `O_PATH` descriptor while it is open.
#[derive(Debug)]
struct Node {
    /// (device, inode number).
    key: (u64, u64),
    /// `st_mode & S_IFMT`.
    kind: u32,
    /// The descriptor; closed ([`Server::sweep`]) when too many are open, and
    /// opened again from `place` when needed.
    fd: Mutex<Option<Arc<OwnedFd>>>,
    /// Used since the last sweep.
    used: AtomicBool,
    /// Where it was last seen: (parent node, name).
    place: Mutex<(u64, CString)>,
    /// The file's last open handle, while the kernel holds it: the calls on
    /// the file itself (mode, times, extended attributes, its attributes)
    /// go to its descriptor, with no path to resolve.
    open: Mutex<Weak<Handle>>,
}

/// A node with its descriptor held open for as long as this lives.
struct Pinned {
    id: u64,
    fd: Arc<OwnedFd>,
    kind: u32,
}

/// A node's file for the calls on the file itself: an open handle's
/// descriptor while the kernel holds the file open, else the node's
/// `O_PATH` descriptor (the same inode either way).
enum Via {
    Open(Arc<Handle>),
    Node(Pinned),
}

impl Via {
    fn fd(&self) -> RawFd {
        match self {
            Via::Open(h) => h.fd.as_raw_fd(),
            Via::Node(n) => n.fd.as_raw_fd(),
        }
    }
}

/// A node's file and its kind (`st_mode & S_IFMT`).
struct Target {
    kind: u32,
    via: Via,
}

struct NodeEntry {
    node: Arc<Node>,
    key: (u64, u64),
    lookups: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Nodes {
    by_id: HashMap<u64, NodeEntry>,
    by_key: HashMap<(u64, u64), u64>,
    next: u64,
}

/// An open file or directory.
#[derive(Debug)]
struct Handle {
    fd: OwnedFd,
    /// Held while a directory is read (its position is shared).
    dir: Mutex<()>,
}

/// The passthrough server of one host directory.
pub struct Server {
    nodes: Mutex<Nodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    proc_fd: OwnedFd,
    read_only: bool,
    as_root: bool,
    /// The server's effective group, which the host gives what it makes
    /// outside set-group-id directories.
    egid: u32,
    /// Whether the host's `fchmodat2` takes `AT_EMPTY_PATH` (until refused).
    fchmodat2: AtomicBool,
    /// Node descriptors open, and how many may be before a sweep.
    open_fds: AtomicUsize,
    fd_budget: usize,
    /// Requests served and the time spent serving them, per opcode.
    stats: Stats,
}

/// Requests served and nanoseconds spent on them, per opcode (the
/// opcodes below [`Stats::OPCODES`]; the others share the last slot).
struct Stats {
    count: [AtomicU64; Stats::OPCODES],
    nanos: [AtomicU64; Stats::OPCODES],
}

impl Stats {
    const OPCODES: usize = 64;

    fn new() -> Stats {
        Stats {
            count: std::array::from_fn(|_| AtomicU64::new(0)),
            nanos: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add(&self, opcode: u32, nanos: u64) {
        let i = (opcode as usize).min(Stats::OPCODES - 1);
        self.count[i].fetch_add(1, Ordering::Relaxed);
        self.nanos[i].fetch_add(nanos, Ordering::Relaxed);
    }
}

/// What one opcode cost the server ([`Server::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpStats {
    /// The opcode's name (`LOOKUP`, `CREATE`, ...).
    pub name: &'static str,
    /// Requests served.
    pub count: u64,
    /// Time spent serving them, in nanoseconds (the host calls included).
    pub nanos: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `r`, or the thread's errno if `r` is -1.
fn check<T: PartialEq + From<i8>>(r: T) -> Result<T, i32> {
    if r == T::from(-1) {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn cstr(b: &[u8]) -> Result<CString, i32> {
    CString::new(b).map_err(|_| libc::EINVAL)
}

/// A name of one component: not empty, no `/`, not `.` or `..`.
fn name(b: &[u8]) -> Result<CString, i32> {
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(libc::EINVAL);
    }
    cstr(b)
}

fn openat(dir: RawFd, name: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    // SAFETY: `name` is a valid C string; the result is checked.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: a new descriptor, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_fd(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: all-zero is a valid `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: an empty C string and a `stat` to fill, both valid.
    check(unsafe { libc::fstatat(fd, c"".as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// The kernel's 32-bit device number encoding (`new_encode_dev`).
fn encode_dev(dev: u64) -> u32 {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn decode_dev(dev: u32) -> libc::dev_t {
    libc::makedev((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

fn attr(st: &libc::stat) -> abi::Attr {
    abi::Attr {
        ino: st.st_ino,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: st.st_atime as u64,
        mtime: st.st_mtime as u64,
        ctime: st.st_ctime as u64,
        atimensec: st.st_atime_nsec as u32,
        mtimensec: st.st_mtime_nsec as u32,
        ctimensec: st.st_ctime_nsec as u32,
        mode: st.st_mode,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: encode_dev(st.st_rdev),
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn attr_out(st: &libc::stat) -> Vec<u8> {
    abi::AttrOut {
        attr_valid: TIMEOUT_SECS,
        attr: attr(st),
        ..Default::default()
    }
    .bytes()
    .to_vec()
}

/// `len` bytes between file `fd` at `offset` and the driver's buffers `iov` (checked
/// against its memory when the chain was taken): `pwritev` from them when `write`,
/// else `preadv` into them, again after a short transfer; the bytes moved (fewer at
/// the end of the file).
fn positioned_io(
    fd: i32,
    iov: &[libc::iovec],
    len: usize,
    offset: u64,
    write: bool,
) -> Result<usize, i32> {
    let mut done = 0;
    while done < len {
        let part = trim(&skip(iov, done), len - done);
        let at = (offset + done as u64) as i64;
        // SAFETY: the iovecs describe the driver's buffers, readable for a write and
        // writable for a read (see above).
        let n = check(unsafe {
            if write {
                libc::pwritev(fd, part.as_ptr(), part.len() as i32, at)
            } else {
                libc::preadv(fd, part.as_ptr(), part.len() as i32, at)
            }
        })?;
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(done)
}

/// The first `n` bytes of `iovs`.
fn trim(iovs: &[libc::iovec], mut n: usize) -> Vec<libc::iovec> {
    let mut out = Vec::with_capacity(iovs.len());
    for v in iovs {
        if n == 0 {
            break;
        }
        let len = v.iov_len.min(n);
        out.push(libc::iovec {
            iov_base: v.iov_base,
            iov_len: len,
        });
        n -= len;
    }
    out
}

/// Whether an `open` with these flags would change the file.
fn writes(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

/// The flags a file is opened with on the host: the kernel's, less those
/// that concern only the open inside (creation, the controlling terminal,
/// following links: the server has the file itself) and direct I/O (the
/// driver's buffers need not be aligned for it).
fn host_flags(flags: u32) -> i32 {
    (flags as i32)
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_DIRECT)
}

impl Server {
    /// A server of directory `dir`, read-only or not.
    ///
    /// # Errors
    /// [`FsError::Open`] if `dir` cannot be opened, [`FsError::NotADirectory`]
    /// if it is something else, [`FsError::Proc`] without `/proc/self/fd`.
    pub fn new(dir: &Path, read_only: bool) -> Result<Server, FsError> {
        let open = |path: &Path, flags: i32| -> Result<OwnedFd, FsError> {
            let c =
                CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| FsError::Open {
                    path: path.to_path_buf(),
                    error: std::io::Error::from_raw_os_error(libc::EINVAL),
                })?;
            openat(libc::AT_FDCWD, &c, flags, 0).map_err(|e| FsError::Open {
                path: path.to_path_buf(),
                error: std::io::Error::from_raw_os_error(e),
            })
        };
        // The directory itself may be a link (given by the user): followed.
        let root = open(dir, libc::O_PATH)?;
        let st = stat_fd(root.as_raw_fd()).map_err(|e| FsError::Open {
            path: dir.to_path_buf(),
            error: std::io::Error::from_raw_os_error(e),
        })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(FsError::NotADirectory(dir.to_path_buf()));
        }
        let proc_fd = open(Path::new("/proc/self/fd"), libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|_| FsError::Proc)?;
        let limit = raise_nofile();
        let mut nodes = Nodes {
            next: abi::ROOT_ID + 1,
            ..Default::default()
        };
        let key = (st.st_dev, st.st_ino);
        nodes.by_key.insert(key, abi::ROOT_ID);
        nodes.by_id.insert(
            abi::ROOT_ID,
            NodeEntry {
                node: Arc::new(Node {
                    key,
                    kind: libc::S_IFDIR,
                    fd: Mutex::new(Some(Arc::new(root))),
                    used: AtomicBool::new(true),
                    place: Mutex::new((abi::ROOT_ID, CString::default())),
                    open: Mutex::new(Weak::new()),
                }),
                key,
                lookups: 1,
            },
        );
        Ok(Server {
            nodes: Mutex::new(nodes),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            proc_fd,
            read_only,
            // SAFETY: geteuid has no preconditions.
            as_root: unsafe { libc::geteuid() } == 0,
            fchmodat2: AtomicBool::new(true),
            // SAFETY: getegid has no preconditions.
            egid: unsafe { libc::getegid() },
            open_fds: AtomicUsize::new(1),
            // Half the limit, the rest left to open files and the process.
            fd_budget: (limit / 2).max(MIN_FD_BUDGET),
            stats: Stats::new(),
        })
    }

    /// Whether the server refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Arc<Handle>>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `id` (`ESTALE` if the kernel has forgotten it).
    fn node_of(&self, id: u64) -> Result<Arc<Node>, i32> {
        self.nodes()
            .by_id
            .get(&id)
            .map(|e| e.node.clone())
            .ok_or(libc::ESTALE)
    }

    /// Node `id` with its descriptor open (opened again if it was closed).
    fn node(&self, id: u64) -> Result<Pinned, i32> {
        let node = self.node_of(id)?;
        let fd = self.node_fd(&node, 0)?;
        Ok(Pinned {
            id,
            fd,
            kind: node.kind,
        })
    }

    /// `n`'s descriptor, opened if it is not: through `/proc/self/fd` of its
    /// open handle while there is one (a file made by `CREATE` gets its node
    /// descriptor only when first needed), else from its place: from its
    /// parent's descriptor (itself opened again if needed, up to the root), one
    /// name with `O_PATH | O_NOFOLLOW`, and only if the name still holds the same
    /// inode (else `ESTALE`).
    fn node_fd(&self, n: &Node, depth: usize) -> Result<Arc<OwnedFd>, i32> {
        n.used.store(true, Ordering::Relaxed);
        if let Some(fd) = lock(&n.fd).as_ref() {
            return Ok(fd.clone());
        }
        if let Some(h) = lock(&n.open).upgrade() {
            let fd = Arc::new(self.reopen(h.fd.as_raw_fd(), libc::O_PATH)?);
            *lock(&n.fd) = Some(fd.clone());
            self.opened();
            return Ok(fd);
        }
        if depth > 4096 {
            return Err(libc::ELOOP);
        }
        let (parent, nm) = lock(&n.place).clone();
        let parent = self.node_of(parent)?;
        let pfd = self.node_fd(&parent, depth + 1)?;
        let fd = openat(pfd.as_raw_fd(), &nm, libc::O_PATH | libc::O_NOFOLLOW, 0)
            .map_err(|_| libc::ESTALE)?;
        let st = stat_fd(fd.as_raw_fd())?;
        if (st.st_dev, st.st_ino) != n.key {
            return Err(libc::ESTALE);
        }
        let fd = Arc::new(fd);
        *lock(&n.fd) = Some(fd.clone());
        self.opened();
        Ok(fd)
    }

    /// Counts a node descriptor opened; past the budget, sweeps.
    fn opened(&self) {
        if self.open_fds.fetch_add(1, Ordering::Relaxed) + 1 > self.fd_budget {
            self.sweep();
        }
    }

    /// Closes the descriptors of nodes not used since the last sweep (the
    /// root's excepted) until a quarter of the budget is free; marks the
    /// others unused.
    fn sweep(&self) {
        let nodes = self.nodes();
        let target = self.fd_budget * 3 / 4;
        for (&id, e) in nodes.by_id.iter() {
            if self.open_fds.load(Ordering::Relaxed) <= target {
                break;
            }
            if id == abi::ROOT_ID || e.node.used.swap(false, Ordering::Relaxed) {
                continue;
            }
            if lock(&e.node.fd).take().is_some() {
                self.open_fds.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Records that node `key` is now named `nm` in `parent` (after a rename).
    fn moved(&self, key: (u64, u64), parent: u64, nm: &CStr) {
        let nodes = self.nodes();
        if let Some(e) = nodes.by_key.get(&key).and_then(|id| nodes.by_id.get(id)) {
            *lock(&e.node.place) = (parent, nm.to_owned());
        }
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>, i32> {
        self.handles().get(&fh).cloned().ok_or(libc::EBADF)
    }

    /// The number of live nodes (the root included) and open handles.
    pub fn counts(&self) -> (usize, usize) {
        (self.nodes().by_id.len(), self.handles().len())
    }

    /// Opens the file of descriptor `fd` again, with `flags`, through
    /// `/proc/self/fd`.
    fn reopen(&self, fd: RawFd, flags: i32) -> Result<OwnedFd, i32> {
        let num = CString::new(fd.to_string()).expect("digits");
        openat(self.proc_fd.as_raw_fd(), &num, flags, 0)
    }

    /// `/proc/self/fd/N` for descriptor `fd`, for the calls that take only a path.
    fn proc_path(fd: RawFd) -> CString {
        CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL")
    }

    /// Node `id`'s file for a call on the file itself: its open handle's
    /// descriptor while the kernel holds it open, else its node descriptor.
    fn target(&self, id: u64) -> Result<Target, i32> {
        let node = self.node_of(id)?;
        if let Some(h) = lock(&node.open).upgrade() {
            node.used.store(true, Ordering::Relaxed);
            return Ok(Target {
                kind: node.kind,
                via: Via::Open(h),
            });
        }
        let fd = self.node_fd(&node, 0)?;
        Ok(Target {
            kind: node.kind,
            via: Via::Node(Pinned {
                id,
                fd,
                kind: node.kind,
            }),
        })
    }

    /// Records `h` as node `id`'s open handle.
    fn set_open(&self, id: u64, h: &Arc<Handle>) {
        if let Some(e) = self.nodes().by_id.get(&id) {
            *lock(&e.node.open) = Arc::downgrade(h);
        }
    }

    /// Makes `fd` (an `O_PATH` descriptor of a name just resolved) a node,
    /// or counts one more lookup of the node it already is; returns the
    /// entry reply.
    fn enter(&self, fd: OwnedFd, parent: u64, nm: &CStr) -> Result<Vec<u8>, i32> {
        let st = stat_fd(fd.as_raw_fd())?;
        self.enter_stat(Some(fd), &st, parent, nm, None)
    }

    /// [`Server::enter`] of a file whose `stat` is `st`: with `fd` its `O_PATH`
    /// descriptor, or none yet (opened when first needed, from `open`, the
    /// handle of the file just created, or its place).
    fn enter_stat(
        &self,
        fd: Option<OwnedFd>,
        st: &libc::stat,
        parent: u64,
        nm: &CStr,
        open: Option<&Arc<Handle>>,
    ) -> Result<Vec<u8>, i32> {
        let key = (st.st_dev, st.st_ino);
        let mut nodes = self.nodes();
        let mut new = false;
        let id = match nodes.by_key.get(&key).copied() {
            Some(id) => {
                let e = nodes.by_id.get_mut(&id).expect("keyed node");
                e.lookups += 1;
                *lock(&e.node.place) = (parent, nm.to_owned());
                if let Some(h) = open {
                    *lock(&e.node.open) = Arc::downgrade(h);
                }
                let mut slot = lock(&e.node.fd);
                if slot.is_none() && fd.is_some() {
                    *slot = fd.map(Arc::new);
                    new = true;
                }
                id
            }
            None => {
                let id = nodes.next;
                nodes.next += 1;
                nodes.by_key.insert(key, id);
                let kind = st.st_mode & libc::S_IFMT;
                new = fd.is_some();
                let node = Arc::new(Node {
                    key,
                    kind,
                    fd: Mutex::new(fd.map(Arc::new)),
                    used: AtomicBool::new(true),
                    place: Mutex::new((parent, nm.to_owned())),
                    open: Mutex::new(open.map_or_else(Weak::new, Arc::downgrade)),
                });
                nodes.by_id.insert(
                    id,
                    NodeEntry {
                        node,
                        key,
                        lookups: 1,
                    },
                );
                id
            }
        };
        drop(nodes);
        if new {
            self.opened();
        }
        Ok(abi::EntryOut {
            nodeid: id,
            entry_valid: TIMEOUT_SECS,
            attr_valid: TIMEOUT_SECS,
            attr: attr(st),
            ..Default::default()
        }
        .bytes()
        .to_vec())
    }

    fn forget(&self, id: u64, n: u64) {
        if id == abi::ROOT_ID {
            return;
        }
        let mut nodes = self.nodes();
        let Some(e) = nodes.by_id.get_mut(&id) else {
            return;
        };
        e.lookups = e.lookups.saturating_sub(n);
        if e.lookups == 0 {
            let key = e.key;
            if let Some(e) = nodes.by_id.remove(&id) {
                if lock(&e.node.fd).take().is_some() {
                    self.open_fds.fetch_sub(1, Ordering::Relaxed);
                }
            }
            nodes.by_key.remove(&key);
        }
    }

    fn lookup(&self, parent: u64, nm: &[u8]) -> Result<Vec<u8>, i32> {
        let p = self.node(parent)?;
        let nm = name(nm)?;
        let fd = openat(p.fd.as_raw_fd(), &nm, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        self.enter(fd, parent, &nm)
    }

    /// After creating `nm` in `parent` for the caller `h`: its ids become
    /// the caller's (when the server is root), and it becomes a node.
    fn created(&self, parent: &Pinned, nm: &CStr, h: &abi::InHeader) -> Result<Vec<u8>, i32> {
        let fd = openat(
            parent.fd.as_raw_fd(),
            nm,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        let mut st = stat_fd(fd.as_raw_fd())?;
        self.chown_new(fd.as_raw_fd(), &mut st, parent, h)?;
        self.enter_stat(Some(fd), &st, parent.id, nm, None)
    }

    /// Gives a file just made in `parent`, whose `stat` is `st`, the
    /// creator's ids (when the server is root): its uid, and its gid unless
    /// the file took its directory's group (a set-group-id directory, as
    /// natively). Only what differs is changed, and `st` then read again.
    fn chown_new(
        &self,
        fd: RawFd,
        st: &mut libc::stat,
        parent: &Pinned,
        h: &abi::InHeader,
    ) -> Result<(), i32> {
        if !self.as_root {
            return Ok(());
        }
        // The host gave the file the server's group unless the directory is
        // set-group-id (then the directory's, possibly the server's too).
        let inherited = st.st_gid != self.egid
            || (h.gid != st.st_gid && stat_fd(parent.fd.as_raw_fd())?.st_mode & libc::S_ISGID != 0);
        let gid = if inherited { st.st_gid } else { h.gid };
        if (st.st_uid, st.st_gid) == (h.uid, gid) {
            return Ok(());
        }
        let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
        // SAFETY: an empty C string; no memory is written. A failure leaves
        // the file to the server's ids, as for a non-root server.
        if unsafe { libc::fchownat(fd, c"".as_ptr(), h.uid, gid, flags) } == 0 {
            *st = stat_fd(fd)?;
        }
        Ok(())
    }

    fn getattr(&self, id: u64, args: &mut Args<'_>) -> Result<Vec<u8>, i32> {
        let n = self.node(id)?;
        let st = match args.take::<abi::GetattrIn>() {
            Ok(g) if g.getattr_flags & abi::GETATTR_FH != 0 => {
                stat_fd(self.handle(g.fh)?.fd.as_raw_fd())?
            }
            _ => stat_fd(n.fd.as_raw_fd())?,
        };
        Ok(attr_out(&st))
    }

    fn setattr(&self, id: u64, s: &abi::SetattrIn) -> Result<Vec<u8>, i32> {
        let n = self.target(id)?;
        let fd = n.via.fd();
        if s.valid & fattr::MODE != 0 {
            if n.kind == libc::S_IFLNK {
                return Err(libc::EOPNOTSUPP);
            }
            self.chmod(&n.via, s.mode & 0o7777)?;
        }
        if s.valid & (fattr::UID | fattr::GID) != 0 {
            let uid = if s.valid & fattr::UID != 0 {
                s.uid
            } else {
                u32::MAX
            };
            let gid = if s.valid & fattr::GID != 0 {
                s.gid
            } else {
                u32::MAX
            };
            let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
            // SAFETY: an empty C string; no memory is written.
            check(unsafe { libc::fchownat(fd, c"".as_ptr(), uid, gid, flags) })?;
        }
        if s.valid & fattr::SIZE != 0 {
            let size = i64::try_from(s.size).map_err(|_| libc::EFBIG)?;
            let open = match s.valid & fattr::FH != 0 {
                true => self.handles().get(&s.fh).cloned(),
                false => None,
            };
            let reopened;
            let tfd = match &open {
                Some(h) => h.fd.as_raw_fd(),
                None => {
                    reopened = self.reopen(fd, libc::O_WRONLY)?;
                    reopened.as_raw_fd()
                }
            };
            // SAFETY: ftruncate on a descriptor held open (`open` or `reopened`).
            check(unsafe { libc::ftruncate(tfd, size) })?;
        }
        let time = |set: u32, now: u32, sec: u64, nsec: u32| {
            if s.valid & now != 0 {
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_NOW,
                }
            } else if s.valid & set != 0 {
                libc::timespec {
                    tv_sec: sec as i64,
                    tv_nsec: nsec.into(),
                }
            } else {
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                }
            }
        };
        if s.valid & (fattr::ATIME | fattr::MTIME | fattr::ATIME_NOW | fattr::MTIME_NOW) != 0 {
            if n.kind == libc::S_IFLNK {
                return Err(libc::EOPNOTSUPP);
            }
            let times = [
                time(fattr::ATIME, fattr::ATIME_NOW, s.atime, s.atimensec),
                time(fattr::MTIME, fattr::MTIME_NOW, s.mtime, s.mtimensec),
            ];
            self.utimes(&n.via, &times)?;
        }
        // A change of ids has cleared them already: the host's chown clears
        // the set-id bits and capabilities of a file as the kernel's does.
        if s.valid & fattr::KILL_SUIDGID != 0
            && s.valid & (fattr::UID | fattr::GID) == 0
            && n.kind == libc::S_IFREG
        {
            match &n.via {
                Via::Open(h) => kill_suidgid(h.fd.as_raw_fd()),
                Via::Node(_) => {
                    if let Ok(f) = self.reopen(fd, libc::O_RDONLY) {
                        kill_suidgid(f.as_raw_fd());
                    }
                }
            }
        }
        Ok(attr_out(&stat_fd(fd)?))
    }

    /// `chmod` of `via`'s file: `fchmod` of an open handle, else
    /// `fchmodat2(AT_EMPTY_PATH)` of the node descriptor (where the host's kernel takes it)
    /// or, where that is refused, `chmod` of its `/proc/self/fd` path.
    fn chmod(&self, via: &Via, mode: u32) -> Result<(), i32> {
        match via {
            // SAFETY: fchmod of a descriptor held open (`via`).
            Via::Open(h) => check(unsafe { libc::fchmod(h.fd.as_raw_fd(), mode) }).map(drop),
            Via::Node(n) => {
                if self.fchmodat2.load(Ordering::Relaxed) {
                    // SAFETY: an empty C string; no memory is written.
                    let r = unsafe {
                        libc::syscall(
                            libc::SYS_fchmodat2,
                            n.fd.as_raw_fd(),
                            c"".as_ptr(),
                            mode,
                            libc::AT_EMPTY_PATH,
                        )
                    };
                    match check(r) {
                        Ok(_) => return Ok(()),
                        Err(libc::ENOSYS | libc::EINVAL) => {
                            self.fchmodat2.store(false, Ordering::Relaxed)
                        }
                        Err(e) => return Err(e),
                    }
                }
                let path = Self::proc_path(n.fd.as_raw_fd());
                // SAFETY: a valid C string; no memory is written.
                check(unsafe { libc::chmod(path.as_ptr(), mode) }).map(drop)
            }
        }
    }

    /// Sets the times of `via`'s file: `futimens` of an open handle, else
    /// `utimensat(AT_EMPTY_PATH)` of the node descriptor or, where that is
    /// refused, of its `/proc/self/fd` path.
    fn utimes(&self, via: &Via, times: &[libc::timespec; 2]) -> Result<(), i32> {
        match via {
            Via::Open(h) => {
                // SAFETY: a descriptor held open (`via`) and two timespecs.
                check(unsafe { libc::futimens(h.fd.as_raw_fd(), times.as_ptr()) }).map(drop)
            }
            Via::Node(n) => {
                let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
                // SAFETY: an empty C string and two timespecs.
                let r = unsafe {
                    libc::utimensat(n.fd.as_raw_fd(), c"".as_ptr(), times.as_ptr(), flags)
                };
                match check(r) {
                    Ok(_) => Ok(()),
                    Err(libc::EINVAL) => {
                        let path = Self::proc_path(n.fd.as_raw_fd());
                        // SAFETY: a valid C string and two timespecs.
                        check(unsafe {
                            libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0)
                        })
                        .map(drop)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn open(&self, id: u64, flags: u32, dir: bool) -> Result<Vec<u8>, i32> {
        let n = self.node(id)?;
        let mut flags = host_flags(flags);
        if dir {
            flags = libc::O_RDONLY | libc::O_DIRECTORY;
        } else if self.read_only && writes(flags) {
            return Err(libc::EROFS);
        }
        if n.kind == libc::S_IFLNK {
            return Err(libc::ELOOP);
        }
        let fd = self.reopen(n.fd.as_raw_fd(), flags)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Arc::new(Handle {
            fd,
            dir: Mutex::new(()),
        });
        self.set_open(id, &h);
        self.handles().insert(fh, h);
        Ok(abi::OpenOut {
            fh,
            ..Default::default()
        }
        .bytes()
        .to_vec())
    }

    fn create(&self, h: &abi::InHeader, c: &abi::CreateIn, nm: &[u8]) -> Result<Vec<u8>, i32> {
        let p = self.node(h.nodeid)?;
        let nm = name(nm)?;
        let flags = host_flags(c.flags) | libc::O_CREAT | libc::O_NOFOLLOW;
        let fd = openat(p.fd.as_raw_fd(), &nm, flags, c.mode & 0o7777)?;
        // The node from the file just opened, whatever the name now holds;
        // its O_PATH descriptor is opened from the handle when first needed.
        let mut st = stat_fd(fd.as_raw_fd())?;
        self.chown_new(fd.as_raw_fd(), &mut st, &p, h)?;
        let handle = Arc::new(Handle {
            fd,
            dir: Mutex::new(()),
        });
        let mut out = self.enter_stat(None, &st, h.nodeid, &nm, Some(&handle))?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, handle);
        out.extend_from_slice(
            abi::OpenOut {
                fh,
                ..Default::default()
            }
            .bytes(),
        );
        Ok(out)
    }

    fn read(&self, r: &abi::ReadIn, dst: &[libc::iovec]) -> Result<usize, i32> {
        let h = self.handle(r.fh)?;
        let want = (r.size as usize).min(dst.iter().map(|v| v.iov_len).sum());
        positioned_io(h.fd.as_raw_fd(), dst, want, r.offset, false)
    }

    fn write(&self, w: &abi::WriteIn, src: &[libc::iovec]) -> Result<Vec<u8>, i32> {
        if self.read_only {
            return Err(libc::EROFS);
        }
        let h = self.handle(w.fh)?;
        let have: usize = src.iter().map(|v| v.iov_len).sum();
        if have < w.size as usize {
            return Err(libc::EINVAL);
        }
        if w.write_flags & abi::WRITE_KILL_SUIDGID != 0 {
            kill_suidgid(h.fd.as_raw_fd());
        }
        let done = positioned_io(h.fd.as_raw_fd(), src, w.size as usize, w.offset, true)?;
        Ok(abi::WriteOut {
            size: done as u32,
            padding: 0,
        }
        .bytes()
        .to_vec())
    }

    fn readdir(&self, r: &abi::ReadIn) -> Result<Vec<u8>, i32> {
        let h = self.handle(r.fh)?;
        let _pos = h.dir.lock().unwrap_or_else(|e| e.into_inner());
        let fd = h.fd.as_raw_fd();
        // SAFETY: lseek on a descriptor we own.
        check(unsafe { libc::lseek(fd, r.offset as i64, libc::SEEK_SET) })?;
        let max = r.size as usize;
        let mut out = Vec::with_capacity(max);
        let mut buf = vec![0u8; max.clamp(1024, 64 << 10)];
        'fill: loop {
            // SAFETY: `buf` is ours, of the length given.
            let n = check(unsafe {
                libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len())
            })? as usize;
            if n == 0 {
                break;
            }
            let mut at = 0;
            while at + 19 < n {
                let ino = u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8"));
                let off = u64::from_ne_bytes(buf[at + 8..at + 16].try_into().expect("8"));
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                let typ = buf[at + 18];
                let name_end = buf[at + 19..at + reclen]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(at + reclen, |p| at + 19 + p);
                if !abi::push_dirent(&mut out, max, ino, off, typ.into(), &buf[at + 19..name_end]) {
                    break 'fill;
                }
                at += reclen.max(1);
            }
        }
        Ok(out)
    }

    /// Node `id`'s file for an extended-attribute call (regular files and
    /// directories only): an open handle's descriptor for the `f*xattr`
    /// calls, or else the `/proc/self/fd` path of the node's.
    fn xattr_target(&self, id: u64) -> Result<Via, i32> {
        let n = self.target(id)?;
        if n.kind != libc::S_IFREG && n.kind != libc::S_IFDIR {
            return Err(libc::EOPNOTSUPP);
        }
        Ok(n.via)
    }

    /// A `GETXATTR`/`LISTXATTR` answer: the size when `size` is 0, else
    /// the value (`ERANGE` if it does not fit).
    fn xattr_reply(
        size: u32,
        mut call: impl FnMut(*mut libc::c_void, usize) -> isize,
    ) -> Result<Vec<u8>, i32> {
        if size == 0 {
            let n = check(call(std::ptr::null_mut(), 0))?;
            return Ok(abi::GetxattrOut {
                size: n as u32,
                padding: 0,
            }
            .bytes()
            .to_vec());
        }
        let mut buf = vec![0u8; size as usize];
        let n = check(call(buf.as_mut_ptr().cast(), buf.len()))?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Serves one request: `h` its header, `args` the bytes after it (for
    /// a `WRITE`, only up to its data, which is in `bulk.src`).
    pub fn handle_request(&self, h: &abi::InHeader, args: &[u8], bulk: &Bulk<'_>) -> Reply {
        let start = std::time::Instant::now();
        let reply = match self.dispatch(h, args, bulk) {
            Ok(r) => r,
            Err(e) => Reply::Error(e),
        };
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.add(h.opcode, nanos);
        reply
    }

    /// The requests served so far, per opcode (those served at least once),
    /// with the time the server spent on them.
    pub fn stats(&self) -> Vec<OpStats> {
        (0..Stats::OPCODES)
            .filter_map(|i| {
                let count = self.stats.count[i].load(Ordering::Relaxed);
                (count > 0).then(|| OpStats {
                    name: op::name(i as u32),
                    count,
                    nanos: self.stats.nanos[i].load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    fn dispatch(&self, h: &abi::InHeader, args: &[u8], bulk: &Bulk<'_>) -> Result<Reply, i32> {
        use Reply::Data;
        let mut a = Args::new(args);
        let id = h.nodeid;
        let ro = || {
            if self.read_only {
                Err(libc::EROFS)
            } else {
                Ok(())
            }
        };
        let ok = || Ok(Data(Vec::new()));
        match h.opcode {
            op::INIT => {
                let i = a.take::<abi::InitIn>()?;
                if i.major != abi::KERNEL_VERSION {
                    return Err(libc::EPROTO);
                }
                let want = abi::init::ASYNC_READ
                    | abi::init::ATOMIC_O_TRUNC
                    | abi::init::BIG_WRITES
                    | abi::init::AUTO_INVAL_DATA
                    | abi::init::PARALLEL_DIROPS
                    | abi::init::MAX_PAGES
                    | abi::init::CACHE_SYMLINKS
                    | abi::init::HANDLE_KILLPRIV_V2;
                Ok(Data(
                    abi::InitOut {
                        major: abi::KERNEL_VERSION,
                        minor: abi::KERNEL_MINOR_VERSION.min(i.minor),
                        max_readahead: i.max_readahead,
                        flags: i.flags & want,
                        max_background: 64,
                        congestion_threshold: 48,
                        max_write: MAX_WRITE,
                        time_gran: 1,
                        max_pages: MAX_PAGES,
                        ..Default::default()
                    }
                    .bytes()
                    .to_vec(),
                ))
            }
            op::DESTROY => {
                self.handles().clear();
                let mut nodes = self.nodes();
                nodes.by_id.retain(|&k, _| k == abi::ROOT_ID);
                let root_key = nodes.by_id[&abi::ROOT_ID].key;
                nodes.by_key.retain(|k, _| *k == root_key);
                ok()
            }
            op::FORGET => {
                self.forget(id, a.take::<abi::ForgetIn>()?.nlookup);
                Ok(Reply::None)
            }
            op::BATCH_FORGET => {
                let b = a.take::<abi::BatchForgetIn>()?;
                for _ in 0..b.count {
                    let f = a.take::<abi::ForgetOne>()?;
                    self.forget(f.nodeid, f.nlookup);
                }
                Ok(Reply::None)
            }
            op::LOOKUP => self.lookup(id, a.string()?).map(Data),
            op::GETATTR => self.getattr(id, &mut a).map(Data),
            op::SETATTR => {
                ro()?;
                self.setattr(id, &a.take()?).map(Data)
            }
            op::READLINK => {
                let n = self.node(id)?;
                let mut buf = vec![0u8; libc::PATH_MAX as usize];
                // SAFETY: `buf` is ours, of the length given.
                let len = check(unsafe {
                    libc::readlinkat(
                        n.fd.as_raw_fd(),
                        c"".as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                })?;
                buf.truncate(len as usize);
                Ok(Data(buf))
            }
            op::SYMLINK => {
                ro()?;
                let nm = name(a.string()?)?;
                let target = cstr(a.string()?)?;
                let p = self.node(id)?;
                // SAFETY: two valid C strings.
                check(unsafe { libc::symlinkat(target.as_ptr(), p.fd.as_raw_fd(), nm.as_ptr()) })?;
                self.created(&p, &nm, h).map(Data)
            }
            op::MKNOD => {
                ro()?;
                let m = a.take::<abi::MknodIn>()?;
                let nm = name(a.string()?)?;
                let p = self.node(id)?;
                // SAFETY: a valid C string.
                check(unsafe {
                    libc::mknodat(p.fd.as_raw_fd(), nm.as_ptr(), m.mode, decode_dev(m.rdev))
                })?;
                self.created(&p, &nm, h).map(Data)
            }
            op::MKDIR => {
                ro()?;
                let m = a.take::<abi::MkdirIn>()?;
                let nm = name(a.string()?)?;
                let p = self.node(id)?;
                // SAFETY: a valid C string.
                check(unsafe { libc::mkdirat(p.fd.as_raw_fd(), nm.as_ptr(), m.mode & 0o7777) })?;
                self.created(&p, &nm, h).map(Data)
            }
            op::UNLINK | op::RMDIR => {
                ro()?;
                let nm = name(a.string()?)?;
                let p = self.node(id)?;
                let flags = if h.opcode == op::RMDIR {
                    libc::AT_REMOVEDIR
                } else {
                    0
                };
                // SAFETY: a valid C string.
                check(unsafe { libc::unlinkat(p.fd.as_raw_fd(), nm.as_ptr(), flags) })?;
                ok()
            }
            op::RENAME | op::RENAME2 => {
                ro()?;
                let (newdir, flags) = if h.opcode == op::RENAME2 {
                    let r = a.take::<abi::Rename2In>()?;
                    (r.newdir, r.flags)
                } else {
                    (a.take::<abi::RenameIn>()?.newdir, 0)
                };
                let old = name(a.string()?)?;
                let new = name(a.string()?)?;
                let (p, np) = (self.node(id)?, self.node(newdir)?);
                // SAFETY: two valid C strings; the result is checked.
                check(unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        p.fd.as_raw_fd(),
                        old.as_ptr(),
                        np.fd.as_raw_fd(),
                        new.as_ptr(),
                        flags,
                    )
                })?;
                // The nodes' places, for opening them again later.
                let key_at = |dir: &Pinned, nm: &CStr| -> Option<(u64, u64)> {
                    // SAFETY: all-zero is a valid `stat`.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    let flags = libc::AT_SYMLINK_NOFOLLOW;
                    // SAFETY: a valid name and a `stat` to fill.
                    let r =
                        unsafe { libc::fstatat(dir.fd.as_raw_fd(), nm.as_ptr(), &mut st, flags) };
                    (r == 0).then_some((st.st_dev, st.st_ino))
                };
                if let Some(key) = key_at(&np, &new) {
                    self.moved(key, np.id, &new);
                }
                if flags & libc::RENAME_EXCHANGE != 0 {
                    if let Some(key) = key_at(&p, &old) {
                        self.moved(key, p.id, &old);
                    }
                }
                ok()
            }
            op::LINK => {
                ro()?;
                let old = self.node(a.take::<abi::LinkIn>()?.oldnodeid)?;
                let nm = name(a.string()?)?;
                let p = self.node(id)?;
                // SAFETY: an empty C string and a valid name.
                let r = unsafe {
                    libc::linkat(
                        old.fd.as_raw_fd(),
                        c"".as_ptr(),
                        p.fd.as_raw_fd(),
                        nm.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                };
                if r != 0 {
                    // Without CAP_DAC_READ_SEARCH: through /proc, which
                    // names the same inode.
                    let path = Self::proc_path(old.fd.as_raw_fd());
                    // SAFETY: two valid C strings.
                    check(unsafe {
                        libc::linkat(
                            libc::AT_FDCWD,
                            path.as_ptr(),
                            p.fd.as_raw_fd(),
                            nm.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        )
                    })?;
                }
                // A new name of a file that keeps its owner.
                let fd = openat(p.fd.as_raw_fd(), &nm, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
                self.enter(fd, p.id, &nm).map(Data)
            }
            op::OPEN => {
                let o = a.take::<abi::OpenIn>()?;
                let out = self.open(id, o.flags, false)?;
                if o.open_flags & abi::OPEN_KILL_SUIDGID != 0 {
                    let fh = abi::OpenOut::read(&out).map_or(0, |o| o.fh);
                    kill_suidgid(self.handle(fh)?.fd.as_raw_fd());
                }
                Ok(Data(out))
            }
            op::OPENDIR => self.open(id, 0, true).map(Data),
            op::CREATE => {
                ro()?;
                let c = a.take::<abi::CreateIn>()?;
                self.create(h, &c, a.string()?).map(Data)
            }
            op::READ => self.read(&a.take()?, bulk.dst).map(Reply::Direct),
            op::WRITE => self.write(&a.take()?, bulk.src).map(Data),
            op::READDIR => self.readdir(&a.take()?).map(Data),
            op::RELEASE | op::RELEASEDIR => {
                self.handles().remove(&a.take::<abi::ReleaseIn>()?.fh);
                ok()
            }
            // Nothing to do at a close (no locks, no write-back here): ENOSYS
            // tells the kernel so, and it sends no more.
            op::FLUSH => Err(libc::ENOSYS),
            op::FSYNC | op::FSYNCDIR => {
                let f = a.take::<abi::FsyncIn>()?;
                let handle = self.handle(f.fh)?;
                let fd = handle.fd.as_raw_fd();
                // SAFETY: fsync on a descriptor we hold open (`handle`).
                check(unsafe {
                    if f.fsync_flags & 1 != 0 {
                        libc::fdatasync(fd)
                    } else {
                        libc::fsync(fd)
                    }
                })?;
                ok()
            }
            op::STATFS => {
                let n = self.node(id)?;
                // SAFETY: all-zero is a valid statvfs.
                let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
                // SAFETY: fstatvfs fills `s`.
                check(unsafe { libc::fstatvfs(n.fd.as_raw_fd(), &mut s) })?;
                Ok(Data(
                    abi::StatfsOut {
                        blocks: s.f_blocks,
                        bfree: s.f_bfree,
                        bavail: s.f_bavail,
                        files: s.f_files,
                        ffree: s.f_ffree,
                        bsize: s.f_bsize as u32,
                        namelen: s.f_namemax as u32,
                        frsize: s.f_frsize as u32,
                        ..Default::default()
                    }
                    .bytes()
                    .to_vec(),
                ))
            }
            op::ACCESS => {
                let m = a.take::<abi::AccessIn>()?;
                if self.read_only && m.mask & libc::W_OK as u32 != 0 {
                    return Err(libc::EROFS);
                }
                let n = self.node(id)?;
                let path = Self::proc_path(n.fd.as_raw_fd());
                // SAFETY: a valid C string.
                check(unsafe { libc::access(path.as_ptr(), m.mask as i32) })?;
                ok()
            }
            op::GETXATTR => {
                let g = a.take::<abi::GetxattrIn>()?;
                let nm = cstr(a.string()?)?;
                let at = self.xattr_target(id)?;
                Self::xattr_reply(g.size, |buf, len| {
                    // SAFETY: valid C strings, a descriptor held open (`at`);
                    // `buf` is null with length 0 or ours of `len` bytes.
                    unsafe {
                        match &at {
                            Via::Open(h) => {
                                libc::fgetxattr(h.fd.as_raw_fd(), nm.as_ptr(), buf, len)
                            }
                            Via::Node(p) => libc::getxattr(
                                Server::proc_path(p.fd.as_raw_fd()).as_ptr(),
                                nm.as_ptr(),
                                buf,
                                len,
                            ),
                        }
                    }
                })
                .map(Data)
            }
            op::LISTXATTR => {
                let g = a.take::<abi::GetxattrIn>()?;
                let at = self.xattr_target(id)?;
                Self::xattr_reply(g.size, |buf, len| {
                    // SAFETY: as for GETXATTR.
                    unsafe {
                        match &at {
                            Via::Open(h) => libc::flistxattr(h.fd.as_raw_fd(), buf.cast(), len),
                            Via::Node(p) => libc::listxattr(
                                Server::proc_path(p.fd.as_raw_fd()).as_ptr(),
                                buf.cast(),
                                len,
                            ),
                        }
                    }
                })
                .map(Data)
            }
            op::SETXATTR => {
                ro()?;
                let s = a.take::<abi::SetxattrIn>()?;
                let nm = cstr(a.string()?)?;
                let value = a.bytes(s.size as usize)?;
                let (v, len, flags) = (value.as_ptr().cast(), value.len(), s.flags as i32);
                // SAFETY: valid C strings, a descriptor held open and a value
                // of the length given.
                check(unsafe {
                    match &self.xattr_target(id)? {
                        Via::Open(h) => {
                            libc::fsetxattr(h.fd.as_raw_fd(), nm.as_ptr(), v, len, flags)
                        }
                        Via::Node(p) => libc::setxattr(
                            Server::proc_path(p.fd.as_raw_fd()).as_ptr(),
                            nm.as_ptr(),
                            v,
                            len,
                            flags,
                        ),
                    }
                })?;
                ok()
            }
            op::REMOVEXATTR => {
                ro()?;
                let nm = cstr(a.string()?)?;
                // SAFETY: valid C strings and a descriptor held open.
                check(unsafe {
                    match &self.xattr_target(id)? {
                        Via::Open(h) => libc::fremovexattr(h.fd.as_raw_fd(), nm.as_ptr()),
                        Via::Node(p) => libc::removexattr(
                            Server::proc_path(p.fd.as_raw_fd()).as_ptr(),
                            nm.as_ptr(),
                        ),
                    }
                })?;
                ok()
            }
            op::FALLOCATE => {
                ro()?;
                let f = a.take::<abi::FallocateIn>()?;
                let h = self.handle(f.fh)?;
                // SAFETY: fallocate on a descriptor we own.
                check(unsafe {
                    libc::fallocate(
                        h.fd.as_raw_fd(),
                        f.mode as i32,
                        f.offset as i64,
                        f.length as i64,
                    )
                })?;
                ok()
            }
            op::LSEEK => {
                let l = a.take::<abi::LseekIn>()?;
                let h = self.handle(l.fh)?;
                // SAFETY: lseek on a descriptor we own.
                let off = check(unsafe {
                    libc::lseek(h.fd.as_raw_fd(), l.offset as i64, l.whence as i32)
                })?;
                Ok(Data(abi::LseekOut { offset: off as u64 }.bytes().to_vec()))
            }
            _ => Err(libc::ENOSYS),
        }
    }
}

/// Clears the set-user-id bit, the set-group-id bit of a group-executable
/// file and the file's capabilities, as the kernel does when an unprivileged
/// writer changes a file (the kernel asks with `HANDLE_KILLPRIV_V2`). Best
/// effort: the server, as root, would otherwise keep them.
fn kill_suidgid(fd: RawFd) {
    let Ok(st) = stat_fd(fd) else {
        return;
    };
    let mut mode = st.st_mode & 0o7777;
    let drop = libc::S_ISUID
        | if mode & libc::S_IXGRP != 0 {
            libc::S_ISGID
        } else {
            0
        };
    if mode & drop != 0 {
        mode &= !drop;
        // SAFETY: fchmod on a descriptor the caller holds open.
        unsafe { libc::fchmod(fd, mode) };
    }
    // SAFETY: a valid C string; no memory is written.
    unsafe { libc::fremovexattr(fd, c"security.capability".as_ptr()) };
}

/// Raises this process's limit of open files as far as it may: to the system's
/// most (`fs.nr_open`) with `CAP_SYS_RESOURCE` (root), else the soft limit to the
/// hard one. Every node the kernel keeps (each file and directory it has looked up
/// and not forgotten: tens of thousands after an untar) holds a descriptor; past
/// the limit, lookups fail with `EMFILE`. Best effort.
fn raise_nofile() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(r.rlim_max);
    for max in [most.max(r.rlim_max), r.rlim_max] {
        if max <= r.rlim_cur {
            break;
        }
        let want = libc::rlimit {
            rlim_cur: max,
            rlim_max: max,
        };
        // SAFETY: setrlimit with a valid rlimit; a refusal changes nothing.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return usize::try_from(max).unwrap_or(usize::MAX);
        }
    }
    usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
}

/// `iovs` less its first `n` bytes.
fn skip(iovs: &[libc::iovec], mut n: usize) -> Vec<libc::iovec> {
    let mut out = Vec::with_capacity(iovs.len());
    for v in iovs {
        if n >= v.iov_len {
            n -= v.iov_len;
            continue;
        }
        out.push(libc::iovec {
            // SAFETY: `n` is within this buffer.
            iov_base: unsafe { v.iov_base.cast::<u8>().add(n).cast() },
            iov_len: v.iov_len - n,
        });
        n = 0;
    }
    out
}

#[cfg(test)]
mod tests;
