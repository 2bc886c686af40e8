//! FUSE node ids and the LKL inodes behind them.
//!
//! Every inode the host kernel knows about (it got it from `lookup`,
//! `create`, `mkdir`, `mknod`, `symlink` or `link`, and has not yet sent
//! `forget` for all of those lookups) is held open inside LKL by an
//! `O_PATH` descriptor. Operations on a node go through that descriptor
//! (`*at` calls with `AT_EMPTY_PATH`, or `/proc/self/fd/N` to reopen it),
//! so renames of the node or of any directory above it need no
//! bookkeeping, and an unlinked file stays reachable while the host has it.
//!
//! The node id is the LKL inode number, so `stat` on the host shows the
//! image's inode numbers, and hard links (one inode, several names) get
//! one node: lookups are keyed by `(st_dev, st_ino)`. Two exceptions: the
//! root is node 1 as FUSE requires, and an inode whose number is already
//! taken by another `(st_dev, st_ino)` (btrfs subvolumes share numbers;
//! an image inode numbered 1 that is not the root) gets a synthetic id
//! from `1 << 63` up. Inode numbers cannot be reused while the node
//! lives, since the `O_PATH` descriptor keeps the inode in use.
//!
//! Each node counts its lookups; `forget` subtracts, and at zero the
//! node leaves the table. The descriptor is closed when the last
//! operation using it is done (it sits in an `Arc`).
//!
//! Each node also remembers the name it was last looked up by, so that
//! when the table grows past its bound, [`Nodes::victims`] can name the
//! oldest files for the host to forget (`FUSE_NOTIFY_INVAL_ENTRY`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys;

/// The FUSE root node id.
pub const ROOT_ID: u64 = 1;
/// The first synthetic node id.
const SYNTHETIC_BASE: u64 = 1 << 63;

/// A descriptor inside LKL (`O_PATH` for a node), closed on drop.
#[derive(Debug)]
pub struct PathFd(pub i32);

impl Drop for PathFd {
    fn drop(&mut self) {
        let _ = sys::close(self.0);
    }
}

/// One inode the host kernel knows.
#[derive(Debug, Clone)]
pub struct Node {
    /// The inode, held open.
    pub fd: Arc<PathFd>,
    /// `S_IFMT` bits of its mode.
    pub kind: u32,
    /// A regular file's descriptor for reads and writes (read-write where
    /// allowed), opened at its first use and shared by every open of the
    /// file on the host, which may open files without asking (see
    /// `LklFs::data_fd`). A request holds its own reference while it uses it.
    pub data: Arc<Mutex<Option<Arc<PathFd>>>>,
}

impl Node {
    fn new(fd: PathFd, kind: u32) -> Self {
        Node {
            fd: Arc::new(fd),
            kind,
            data: Arc::new(Mutex::new(None)),
        }
    }
}

#[derive(Debug)]
struct Entry {
    node: Node,
    key: (u64, u64),
    nlookup: u64,
    /// The parent and name of the last lookup.
    name: Option<(u64, OsString)>,
    /// When it was last looked up (a counter).
    seq: u64,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<u64, Entry>,
    by_key: HashMap<(u64, u64), u64>,
    next_synthetic: u64,
    seq: u64,
}

/// The node table.
#[derive(Debug, Default)]
pub struct Nodes {
    table: Mutex<Table>,
}

impl Nodes {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs the root: `fd` is the mounted file system's root directory.
    pub fn set_root(&self, fd: PathFd, dev: u64, ino: u64) {
        let mut t = self.lock();
        t.by_key.insert((dev, ino), ROOT_ID);
        t.by_id.insert(
            ROOT_ID,
            Entry {
                node: Node::new(fd, libc::S_IFDIR),
                key: (dev, ino),
                nlookup: 1,
                name: None,
                seq: 0,
            },
        );
    }

    /// The node `id`, if the host may use it.
    pub fn get(&self, id: u64) -> Option<Node> {
        self.lock().by_id.get(&id).map(|e| e.node.clone())
    }

    /// The id of inode `(dev, ino)` with one more lookup (by `name` in
    /// directory node `parent`), if it is known.
    pub fn lookup_known(&self, dev: u64, ino: u64, parent: u64, name: &OsStr) -> Option<u64> {
        let mut t = self.lock();
        let id = *t.by_key.get(&(dev, ino))?;
        t.seq += 1;
        let seq = t.seq;
        if let Some(e) = t.by_id.get_mut(&id) {
            e.nlookup += 1;
            e.seq = seq;
            if e.name
                .as_ref()
                .is_none_or(|(p, n)| *p != parent || n != name)
            {
                e.name = Some((parent, name.to_owned()));
            }
        }
        Some(id)
    }

    /// Adds inode `(dev, ino)` held by `fd` with one lookup, or, if another
    /// thread added it meanwhile, counts a lookup there (and `fd` is
    /// closed). Returns the node id.
    pub fn insert(
        &self,
        fd: PathFd,
        (dev, ino): (u64, u64),
        kind: u32,
        parent: u64,
        name: &OsStr,
    ) -> u64 {
        if let Some(id) = self.lookup_known(dev, ino, parent, name) {
            return id;
        }
        let mut t = self.lock();
        if let Some(&id) = t.by_key.get(&(dev, ino)) {
            // Added by another thread meanwhile.
            if let Some(e) = t.by_id.get_mut(&id) {
                e.nlookup += 1;
            }
            return id;
        }
        t.seq += 1;
        let seq = t.seq;
        let id = if ino != ROOT_ID && ino < SYNTHETIC_BASE && !t.by_id.contains_key(&ino) {
            ino
        } else {
            loop {
                let id = SYNTHETIC_BASE + t.next_synthetic;
                t.next_synthetic += 1;
                if !t.by_id.contains_key(&id) {
                    break id;
                }
            }
        };
        t.by_key.insert((dev, ino), id);
        t.by_id.insert(
            id,
            Entry {
                node: Node::new(fd, kind),
                key: (dev, ino),
                nlookup: 1,
                name: Some((parent, name.to_owned())),
                seq,
            },
        );
        id
    }

    /// The node id a directory entry's inode number shows as (for
    /// `readdir`): the id of a known inode, else the number itself.
    pub fn id_for_ino(&self, dev: u64, ino: u64) -> u64 {
        let t = self.lock();
        t.by_key.get(&(dev, ino)).copied().unwrap_or(ino)
    }

    /// Subtracts `n` lookups from `id`; at zero it is dropped.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        let mut t = self.lock();
        let Some(e) = t.by_id.get_mut(&id) else {
            return;
        };
        e.nlookup = e.nlookup.saturating_sub(n);
        if e.nlookup == 0 {
            let key = e.key;
            t.by_id.remove(&id);
            t.by_key.remove(&key);
        }
    }

    /// How many nodes are known (root included).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// The parent and name of the `n` least recently looked-up nodes that
    /// are not directories (which hold the names of others), for the host
    /// to forget.
    pub fn victims(&self, n: usize) -> Vec<(u64, OsString)> {
        let t = self.lock();
        let mut all: Vec<(u64, &(u64, OsString))> = t
            .by_id
            .values()
            .filter(|e| e.node.kind != libc::S_IFDIR)
            .filter_map(|e| e.name.as_ref().map(|name| (e.seq, name)))
            .collect();
        let n = n.min(all.len());
        if n == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by_key(n - 1, |(seq, _)| *seq);
        all[..n].iter().map(|(_, name)| (*name).clone()).collect()
    }

    /// Drops every node (at unmount), so every descriptor is closed once
    /// no operation uses it.
    pub fn clear(&self) {
        let mut t = self.lock();
        t.by_id.clear();
        t.by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_count_and_hard_links_share_a_node() {
        let nodes = Nodes::default();
        nodes.set_root(PathFd(-1), 1, 2);
        let name = OsStr::new;
        let a = nodes.insert(PathFd(-1), (1, 12), libc::S_IFREG, 1, name("a"));
        assert_eq!(a, 12);
        // Another name of inode 12 (a hard link) is the same node.
        assert_eq!(
            nodes.insert(PathFd(-1), (1, 12), libc::S_IFREG, 1, name("b")),
            12
        );
        assert_eq!(nodes.lookup_known(1, 12, 1, name("a")), Some(12));
        // The root's number and a number taken on another device get
        // synthetic ids.
        let one = nodes.insert(PathFd(-1), (1, 1), libc::S_IFREG, 1, name("one"));
        assert!(one >= SYNTHETIC_BASE);
        let other = nodes.insert(PathFd(-1), (2, 12), libc::S_IFREG, 1, name("c"));
        assert!(other >= SYNTHETIC_BASE && other != one);
        assert_eq!(nodes.len(), 4);
        nodes.forget(12, 2);
        assert!(nodes.get(12).is_some());
        nodes.forget(12, 1);
        assert!(nodes.get(12).is_none());
        assert_eq!(nodes.lookup_known(1, 12, 1, name("a")), None);
        // The root is never forgotten.
        nodes.forget(ROOT_ID, 100);
        assert!(nodes.get(ROOT_ID).is_some());
    }

    #[test]
    fn victims_are_the_oldest_files() {
        let nodes = Nodes::default();
        nodes.set_root(PathFd(-1), 1, 2);
        let name = OsStr::new;
        nodes.insert(PathFd(-1), (1, 20), libc::S_IFDIR, 1, name("dir"));
        for i in 0..5u64 {
            let n = format!("f{i}");
            nodes.insert(PathFd(-1), (1, 30 + i), libc::S_IFREG, 20, name(&n));
        }
        // f0 is looked up again: now the newest.
        nodes.lookup_known(1, 30, 20, name("f0"));
        let mut v = nodes.victims(2);
        v.sort();
        assert_eq!(v, [(20, "f1".into()), (20, "f2".into())]);
        assert_eq!(nodes.victims(100).len(), 5);
    }
}
