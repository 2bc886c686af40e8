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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys;

/// The FUSE root node id.
pub const ROOT_ID: u64 = 1;
/// The first synthetic node id.
const SYNTHETIC_BASE: u64 = 1 << 63;

/// An `O_PATH` descriptor inside LKL, closed on drop.
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
}

#[derive(Debug)]
struct Entry {
    node: Node,
    key: (u64, u64),
    nlookup: u64,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<u64, Entry>,
    by_key: HashMap<(u64, u64), u64>,
    next_synthetic: u64,
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
                node: Node {
                    fd: Arc::new(fd),
                    kind: libc::S_IFDIR,
                },
                key: (dev, ino),
                nlookup: 1,
            },
        );
    }

    /// The node `id`, if the host may use it.
    pub fn get(&self, id: u64) -> Option<Node> {
        self.lock().by_id.get(&id).map(|e| e.node.clone())
    }

    /// The id of inode `(dev, ino)` with one more lookup, if it is known.
    pub fn lookup_known(&self, dev: u64, ino: u64) -> Option<u64> {
        let mut t = self.lock();
        let id = *t.by_key.get(&(dev, ino))?;
        if let Some(e) = t.by_id.get_mut(&id) {
            e.nlookup += 1;
        }
        Some(id)
    }

    /// Adds inode `(dev, ino)` held by `fd` with one lookup, or, if another
    /// thread added it meanwhile, counts a lookup there (and `fd` is
    /// closed). Returns the node id.
    pub fn insert(&self, fd: PathFd, dev: u64, ino: u64, kind: u32) -> u64 {
        let mut t = self.lock();
        if let Some(&id) = t.by_key.get(&(dev, ino)) {
            if let Some(e) = t.by_id.get_mut(&id) {
                e.nlookup += 1;
            }
            return id;
        }
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
                node: Node {
                    fd: Arc::new(fd),
                    kind,
                },
                key: (dev, ino),
                nlookup: 1,
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

    /// Drops every node (at unmount), so every descriptor is closed once
    /// no operation uses it.
    pub fn clear(&self) {
        let mut t = self.lock();
        t.by_id.clear();
        t.by_key.clear();
    }
}
