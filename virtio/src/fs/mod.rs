//! virtio-fs (virtio 1.2, section 5.11): a host directory for the
//! kernel's `virtiofs` driver, which speaks FUSE over the virtqueues.
//!
//! The configuration space holds the tag the kernel mounts by (`mount -t
//! virtiofs TAG PATH`) and the number of request queues (one: LKL runs on
//! one CPU). Queue 0 is the high-priority queue (`FORGET`s, answered on
//! the notifying thread: they take no reply and cost a map update);
//! queue 1 carries every other request.
//!
//! Requests are served where they cost least. A notify of the request
//! queue pops what the driver made available; a request that moves little
//! data (a lookup, a create, a small read or write: most of them) is served
//! at once on the notifying thread, as virtio-blk's are, and returned with
//! the others of the same notify, one interrupt for all; a read or write of
//! more than [`BULK`] bytes is handed to a pool of [`WORKERS`] host threads
//! ([`Worker::run`], started by whoever gives the device to the kernel), so
//! that the kernel's read-ahead keeps several large reads in flight while
//! its CPU goes on. A worker returns its request through the transport
//! ([`MmioTransport::run_queue`], which raises the interrupt if the driver
//! wants it). Reads go with `preadv` straight into the driver's buffers and
//! writes with `pwritev` straight from them: file data is never copied by
//! the device.
//!
//! The FUSE protocol is in [`abi`], the passthrough file system in
//! [`server`].

pub mod abi;
pub mod server;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::memory::{read_bytes, write_bytes, GuestMemory};
use crate::mmio::{MmioTransport, VirtioDevice};
use crate::queue::{DescriptorChain, Queue};
use crate::{spec, QueueError};

pub use server::{Bulk, OpStats, Reply, Server};

use abi::Pod;

/// The high-priority queue.
pub const HIPRIO_QUEUE: usize = 0;
/// The request queue.
pub const REQUEST_QUEUE: usize = 1;
/// The high-priority queue's size.
pub const HIPRIO_SIZE: u16 = 128;
/// The request queue's size: room for four requests of the largest size
/// (256 pages, a descriptor each) at once.
pub const REQUEST_SIZE: u16 = 1024;
/// Host threads serving the large reads and writes.
pub const WORKERS: usize = 4;
/// Data above which a read or write goes to the workers.
pub const BULK: usize = 64 << 10;
/// Bytes of the tag in the configuration space.
pub const TAG_LEN: usize = 36;
/// The largest request whose arguments are copied (everything but a
/// `WRITE`'s data): a name and a 64 KiB xattr value fit.
const MAX_ARGS: usize = 80 << 10;

/// What can go wrong making a file system device.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The host directory cannot be opened.
    #[error("cannot open host directory {path}: {error}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The path is not a directory.
    #[error("{0} is not a directory: a volume shares a host directory")]
    NotADirectory(PathBuf),
    /// `/proc/self/fd`, through which files are reopened, is missing.
    #[error(
        "/proc/self/fd cannot be opened: the file system device needs /proc mounted on the host"
    )]
    Proc,
    /// A tag that cannot be used.
    #[error("invalid file system tag {tag:?}: it must be 1 to 36 bytes, without NUL or newline")]
    Tag {
        /// The tag.
        tag: String,
    },
}

/// The large requests waiting for a worker.
struct Requests {
    /// Each with the generation it was taken in.
    pending: VecDeque<(DescriptorChain, u64)>,
    /// Counts resets: a request taken before a reset is not returned into
    /// the queue after it.
    generation: u64,
    stopped: bool,
}

struct Shared {
    requests: Mutex<Requests>,
    work: Condvar,
    mem: Arc<dyn GuestMemory>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A virtio-fs device serving one host directory.
pub struct Fs {
    config: [u8; TAG_LEN + 4],
    server: Arc<Server>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Fs {
    /// A device serving `dir` under `tag`, read-only or not; the workers
    /// reach the driver's buffers through `mem`.
    ///
    /// # Errors
    /// [`FsError::Tag`] for an empty or too long tag, or those of
    /// [`Server::new`].
    pub fn new(
        dir: &Path,
        tag: &str,
        read_only: bool,
        mem: Arc<dyn GuestMemory>,
    ) -> Result<Fs, FsError> {
        if tag.is_empty() || tag.len() > TAG_LEN || tag.contains(['\0', '\n']) {
            return Err(FsError::Tag { tag: tag.into() });
        }
        let server = Arc::new(Server::new(dir, read_only)?);
        let mut config = [0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&1u32.to_le_bytes());
        Ok(Fs {
            config,
            server,
            shared: Arc::new(Shared {
                requests: Mutex::new(Requests {
                    pending: VecDeque::new(),
                    generation: 0,
                    stopped: false,
                }),
                work: Condvar::new(),
                mem,
            }),
        })
    }

    /// The server (for its counts, in tests).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// One worker of the request queue, to run on a thread of its own.
    pub fn worker(&self) -> Worker {
        Worker {
            shared: self.shared.clone(),
            server: self.server.clone(),
        }
    }

    /// Stops the workers (the kernel halts): each returns once its
    /// request, if any, is done.
    pub fn stop(&self) {
        self.shared.lock().stopped = true;
        self.shared.work.notify_all();
    }
}

impl VirtioDevice for Fs {
    fn device_id(&self) -> u32 {
        spec::VIRTIO_ID_FS
    }

    fn features(&self) -> u64 {
        1 << spec::VIRTIO_F_VERSION_1 | 1 << spec::VIRTIO_RING_F_EVENT_IDX
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![HIPRIO_SIZE, REQUEST_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = (offset as usize).saturating_add(i);
            *b = self.config.get(at).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {
        let mut r = self.shared.lock();
        r.pending.clear();
        r.generation += 1;
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        let mut chain = DescriptorChain::default();
        while queue.pop_into(mem, &mut chain)? {
            if index == REQUEST_QUEUE && is_bulk(mem, &chain)? {
                let mut r = self.shared.lock();
                let generation = r.generation;
                r.pending
                    .push_back((std::mem::take(&mut chain), generation));
                drop(r);
                self.shared.work.notify_one();
                continue;
            }
            let len = serve(&self.server, mem, &chain)?;
            queue.add_used(mem, chain.head, len)?;
            used = true;
        }
        Ok(used)
    }
}

/// A thread's share of the request queue ([`Fs::worker`]).
pub struct Worker {
    shared: Arc<Shared>,
    server: Arc<Server>,
}

impl Worker {
    /// Serves the large requests handed over until the device is stopped,
    /// returning each through `transport` (the device's own), which raises
    /// the interrupt when the driver wants it.
    pub fn run(self, transport: &MmioTransport<Fs>) {
        let mem = &*self.shared.mem;
        loop {
            let (chain, generation) = {
                let mut r = self.shared.lock();
                loop {
                    if r.stopped {
                        return;
                    }
                    if let Some(job) = r.pending.pop_front() {
                        break job;
                    }
                    r = self.shared.work.wait(r).unwrap_or_else(|e| e.into_inner());
                }
            };
            let served = serve(&self.server, mem, &chain);
            transport.run_queue(REQUEST_QUEUE, |dev, queue, mem| {
                if dev.shared.lock().generation != generation {
                    return Ok(false);
                }
                queue.add_used(mem, chain.head, served.clone()?)?;
                Ok(true)
            });
        }
    }
}

/// Whether `chain` is a read or write of more than [`BULK`] bytes.
fn is_bulk(mem: &dyn GuestMemory, chain: &DescriptorChain) -> Result<bool, QueueError> {
    let mut head = [0u8; std::mem::size_of::<abi::InHeader>()];
    if gather(mem, chain.readable().as_slice(), 0, &mut head)? < head.len() {
        return Ok(false);
    }
    let h = abi::InHeader::read(&head).expect("40 bytes");
    let total = |d: &[crate::Descriptor]| d.iter().map(|d| d.len as usize).sum::<usize>();
    Ok(match h.opcode {
        abi::op::READ => total(chain.writable().as_slice()) > BULK,
        abi::op::WRITE => total(chain.readable().as_slice()) > BULK,
        _ => false,
    })
}

/// Host memory of a chain's buffers, as iovecs, from byte `skip` on.
fn iovecs(
    mem: &dyn GuestMemory,
    descs: &[crate::Descriptor],
    mut skip: usize,
) -> Result<Vec<libc::iovec>, QueueError> {
    let mut out = Vec::with_capacity(descs.len());
    for d in descs {
        let len = d.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        let addr = d.addr + skip as u64;
        let n = (len - skip) as u64;
        let p = mem
            .translate(addr, n)
            .ok_or(QueueError::Memory { addr, len: n })?;
        out.push(libc::iovec {
            iov_base: p.cast(),
            iov_len: n as usize,
        });
        skip = 0;
    }
    Ok(out)
}

/// Copies up to `out.len()` bytes of the buffers `descs` from byte
/// `skip`; returns how many there were.
fn gather(
    mem: &dyn GuestMemory,
    descs: &[crate::Descriptor],
    mut skip: usize,
    out: &mut [u8],
) -> Result<usize, QueueError> {
    let mut done = 0;
    for d in descs {
        let len = d.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = (len - skip).min(out.len() - done);
        read_bytes(mem, d.addr + skip as u64, &mut out[done..done + n])?;
        done += n;
        skip = 0;
        if done == out.len() {
            break;
        }
    }
    Ok(done)
}

/// Copies `data` into the buffers `descs`; false if they are too short.
fn scatter(
    mem: &dyn GuestMemory,
    descs: &[crate::Descriptor],
    data: &[u8],
) -> Result<bool, QueueError> {
    let mut done = 0;
    for d in descs {
        if done == data.len() {
            break;
        }
        let n = (d.len as usize).min(data.len() - done);
        write_bytes(mem, d.addr, &data[done..done + n])?;
        done += n;
    }
    Ok(done == data.len())
}

/// Serves one request chain; returns the bytes written for the driver.
fn serve(
    server: &Server,
    mem: &dyn GuestMemory,
    chain: &DescriptorChain,
) -> Result<u32, QueueError> {
    let readable = chain.readable().as_slice();
    let writable = chain.writable().as_slice();
    let mut head = [0u8; std::mem::size_of::<abi::InHeader>()];
    if gather(mem, readable, 0, &mut head)? < head.len() {
        // Not even a header: nothing to answer to.
        return Ok(0);
    }
    let h = abi::InHeader::read(&head).expect("40 bytes");
    let total: usize = readable.iter().map(|d| d.len as usize).sum();
    let in_len = (h.len as usize).min(total);
    let args_len = if h.opcode == abi::op::WRITE {
        std::mem::size_of::<abi::WriteIn>()
    } else {
        in_len.saturating_sub(head.len()).min(MAX_ARGS)
    };
    let mut args = vec![0u8; args_len];
    let got = gather(mem, readable, head.len(), &mut args)?;
    args.truncate(got);
    let src = if h.opcode == abi::op::WRITE {
        iovecs(mem, readable, head.len() + got)?
    } else {
        Vec::new()
    };
    const OUT: usize = std::mem::size_of::<abi::OutHeader>();
    let dst = if h.opcode == abi::op::READ {
        iovecs(mem, writable, OUT)?
    } else {
        Vec::new()
    };
    let reply = server.handle_request(
        &h,
        &args,
        &Bulk {
            src: &src,
            dst: &dst,
        },
    );
    let room: usize = writable.iter().map(|d| d.len as usize).sum();
    let (error, body, direct) = match reply {
        Reply::None => return Ok(0),
        Reply::Data(d) if OUT + d.len() <= room => (0, d, 0),
        Reply::Data(_) => (libc::ERANGE, Vec::new(), 0),
        Reply::Direct(n) => (0, Vec::new(), n),
        Reply::Error(e) => (e, Vec::new(), 0),
    };
    let len = OUT + body.len() + direct;
    let out = abi::OutHeader {
        len: len as u32,
        error: -error,
        unique: h.unique,
    };
    let mut msg = Vec::with_capacity(len - direct);
    msg.extend_from_slice(out.bytes());
    msg.extend_from_slice(&body);
    if !scatter(mem, writable, &msg)? {
        return Ok(0);
    }
    Ok(len as u32)
}

#[cfg(test)]
mod tests;
