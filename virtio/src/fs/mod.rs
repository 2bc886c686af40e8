//! virtio-fs (virtio 1.2, section 5.11): a host directory for the
//! kernel's `virtiofs` driver, which speaks FUSE over the virtqueues.
//!
//! The configuration space holds the tag the kernel mounts by (`mount -t
//! virtiofs TAG PATH`) and the number of request queues (one: LKL runs on
//! one CPU). Queue 0 is the high-priority queue (`FORGET`s, answered on
//! the notifying thread: they take no reply and cost a map update);
//! queue 1 carries every other request.
//!
//! The request queue is served by a pool of [`WORKERS`] host threads
//! ([`Worker::run`], started by whoever gives the device to the kernel):
//! the device takes the queue over at DRIVER_OK
//! ([`VirtioDevice::activate_queues`]), a notify only wakes the pool, and
//! each worker takes one request at a time from the queue (under a lock
//! held only to pop and to return a chain), serves it with no lock held,
//! so several requests are in flight at once, and raises the interrupt
//! itself. Reads go with `preadv` straight into the driver's buffers and
//! writes with `pwritev` straight from them: file data is never copied by
//! the device.
//!
//! The FUSE protocol is in [`abi`], the passthrough file system in
//! [`server`].

pub mod abi;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::memory::{read_bytes, write_bytes, GuestMemory};
use crate::mmio::VirtioDevice;
use crate::queue::{DescriptorChain, Queue};
use crate::{spec, QueueError};

pub use server::{Bulk, Reply, Server};

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
/// Host threads serving the request queue.
pub const WORKERS: usize = 4;
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

/// The request queue as the workers share it.
struct Requests {
    /// The device's copy of the request queue, from DRIVER_OK to reset.
    queue: Option<Queue>,
    /// Counts activations and resets: a request taken before a reset is
    /// not returned into the queue after it.
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
                    queue: None,
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

    fn activate_queues(&mut self, _features: u64, queues: &[Queue]) {
        let mut r = self.shared.lock();
        r.queue = queues.get(REQUEST_QUEUE).cloned();
        r.generation += 1;
        drop(r);
        self.shared.work.notify_all();
    }

    fn reset(&mut self) {
        let mut r = self.shared.lock();
        r.queue = None;
        r.generation += 1;
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        if index == REQUEST_QUEUE {
            // Taken under the lock: a worker about to wait sees the queue
            // before or gets the wake after.
            drop(self.shared.lock());
            self.shared.work.notify_all();
            return Ok(false);
        }
        let mut used = false;
        while let Some(chain) = queue.pop(mem)? {
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
    /// Serves requests until the device is stopped, calling `signal` (the
    /// transport's [`signal_used`](crate::MmioTransport::signal_used)) when
    /// the driver wants an interrupt for what it returned. A malformed
    /// queue is reported through `failed` and left alone until a reset.
    pub fn run(self, signal: impl Fn(), failed: impl Fn(&QueueError)) {
        let mem = &*self.shared.mem;
        let mut chain = DescriptorChain::default();
        loop {
            let generation = {
                let mut r = self.shared.lock();
                loop {
                    if r.stopped {
                        return;
                    }
                    if let Some(q) = r.queue.as_mut() {
                        match q.pop_into(mem, &mut chain) {
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(e) => {
                                r.queue = None;
                                drop(r);
                                failed(&e);
                                r = self.shared.lock();
                                continue;
                            }
                        }
                    }
                    r = self.shared.work.wait(r).unwrap_or_else(|e| e.into_inner());
                }
                r.generation
            };
            let len = match serve(&self.server, mem, &chain) {
                Ok(len) => len,
                Err(e) => {
                    failed(&e);
                    0
                }
            };
            let mut r = self.shared.lock();
            if r.generation != generation {
                continue;
            }
            let Some(q) = r.queue.as_mut() else {
                continue;
            };
            let notify = q
                .add_used(mem, chain.head, len)
                .and_then(|()| q.needs_notification(mem));
            drop(r);
            match notify {
                Ok(true) => signal(),
                Ok(false) => {}
                Err(e) => failed(&e),
            }
        }
    }
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
