//! The virtio-net device (virtio 1.2, section 5.1): queue 0 receives,
//! queue 1 transmits, and every frame is prefixed with the 12-byte
//! `virtio_net_hdr_v1`.
//!
//! Offered: `VIRTIO_F_VERSION_1`, `VIRTIO_NET_F_MAC`,
//! `VIRTIO_RING_F_EVENT_IDX`, and the offload bits asked for (the
//! `offload` mask) that the backend can honour, made consistent
//! ([`offload::consistent`]). Without offloads the header is all zeros but
//! `num_buffers`.
//!
//! The two queues never wait for each other:
//! - Transmission runs on the notifying thread (the kernel's), under the
//!   transport's lock, on the transport's copy of queue 1: each chain is
//!   handed to the backend as one `writev` straight from the driver's
//!   buffers (no copy, no allocation). While traffic is bulk the device's
//!   transmit thread ([`super::tx`]) does it instead, outside the lock.
//! - Reception runs on the device's receive thread ([`super::rx`]), on a
//!   copy of queue 0 the device takes at DRIVER_OK
//!   ([`VirtioDevice::activate_queues`]) and keeps under a lock of its own
//!   ([`Shared`]); the thread raises the interrupt itself
//!   ([`MmioTransport::signal_used`](crate::virtio::MmioTransport::signal_used)).
//!   A notify of queue 0 only wakes that thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lkl_sys as sys;

use super::backend::{iov, Backend, Wake};
use super::coalesce;
use super::offload::{self, HDR_LEN};
use crate::virtio::memory::{read_bytes, write_bytes, GuestMemory};
use crate::virtio::mmio::VirtioDevice;
use crate::virtio::queue::{Descriptor, DescriptorChain, Queue};
use crate::virtio::QueueError;

/// Bytes moved between two transmit notifies above which traffic is bulk
/// ([`Net::bulk`]): a download's acknowledgement comes after about 100 KB
/// received, an upload's notify after a 64 KiB segment; a 1-byte
/// request/response moves about 130 bytes, a ping about 200.
const BULK_BYTES: u64 = 32 << 10;
/// ... between notifies at most this far apart.
const BULK_GAP: std::time::Duration = std::time::Duration::from_millis(1);

/// The queue size offered, for both queues.
pub const QUEUE_SIZE: u16 = 256;
/// The receive queue.
pub const RX_QUEUE: usize = 0;
/// The transmit queue.
pub const TX_QUEUE: usize = 1;
pub use super::backend::MAX_FRAME;

/// Frame counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Frames given to the driver.
    pub rx_frames: u64,
    /// Bytes of those frames (without the header).
    pub rx_bytes: u64,
    /// Frames dropped: too big for the driver's buffers, an offload the
    /// driver did not take, or a backend read error.
    pub rx_dropped: u64,
    /// Frames sent to the backend.
    pub tx_frames: u64,
    /// Bytes of those frames (without the header).
    pub tx_bytes: u64,
    /// Chains not sent: shorter than the header, too long for the backend,
    /// or the backend failed.
    pub tx_errors: u64,
    /// Interrupts the receive thread raised (one per batch of frames).
    pub rx_interrupts: u64,
    /// Frames joined to the one before them ([`NetOptions::coalesce`](super::NetOptions::coalesce)):
    /// the host sent `rx_frames + rx_coalesced`.
    pub rx_coalesced: u64,
    /// Frames of `tx_frames` that the transmit thread sent
    /// ([`NetOptions::transmit_thread`](super::NetOptions::transmit_thread)).
    pub tx_threaded: u64,
}

/// The counters, updated without a shared lock.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) rx_frames: AtomicU64,
    pub(super) rx_bytes: AtomicU64,
    pub(super) rx_dropped: AtomicU64,
    pub(super) tx_frames: AtomicU64,
    pub(super) tx_bytes: AtomicU64,
    pub(super) tx_errors: AtomicU64,
    pub(super) rx_interrupts: AtomicU64,
    pub(super) rx_coalesced: AtomicU64,
    pub(super) tx_threaded: AtomicU64,
}

/// Adds `n` to a counter.
pub(super) fn count(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The receive queue as the device serves it, under [`Shared::rx`].
#[derive(Debug, Default)]
pub struct RxQueue {
    /// The driver's queue 0, from DRIVER_OK until a reset or stop.
    queue: Option<Queue>,
    /// The features the driver accepted.
    features: u64,
    /// Chains taken from the ring for a frame (mergeable buffers) that
    /// did not fit yet: used first next time.
    held: VecDeque<DescriptorChain>,
    /// Whether a frame too big for the buffers was reported.
    warned: bool,
    /// Whether frames are joined ([`coalesce`]).
    coalesce: bool,
    /// A frame read into the first held chains that did not join the one
    /// before it: its length with the header, delivered next.
    ready: Option<usize>,
    /// Scratch: the bytes each chain of a frame holds.
    lens: Vec<u32>,
}

/// A frame being delivered: its head (virtio-net header and the frame's
/// first bytes), what each of its chains holds, and the TCP segment it is
/// when frames may be joined to it.
struct Run {
    head: [u8; coalesce::HEAD],
    lens: Vec<u32>,
    seg: Option<coalesce::Segment>,
}

/// What a direct read works with: the kernel's memory, the backend, the
/// caller's iovec scratch space, the counters.
struct Io<'a> {
    mem: &'a dyn GuestMemory,
    backend: &'a dyn Backend,
    iovs: &'a mut Vec<libc::iovec>,
    stats: &'a Counters,
}

/// What [`RxQueue::read_into`] got.
enum Read {
    /// A frame of this many bytes (header included) is in the chains.
    Frame(usize),
    /// Nothing to deliver: what to tell the caller.
    Done(Direct),
}

/// What became of a direct read ([`RxQueue::receive_direct`]).
#[derive(Debug)]
pub enum Direct {
    /// A frame is in the used ring.
    Delivered,
    /// A frame was read and dropped (counted).
    Dropped,
    /// The backend has nothing (or was interrupted).
    Empty,
    /// Not enough buffers for a frame of any size (or no driver): read it
    /// with [`Backend::recv`] instead and wait for buffers.
    Short,
    /// The backend failed (the frame, if any, is lost).
    Failed(std::io::Error),
}

/// What became of a frame offered to the receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the used ring.
    Delivered,
    /// Not enough buffers (or no driver): keep the frame and wait.
    NoBuffer,
    /// Dropped (counted); any buffer it took went back empty.
    Dropped,
}

impl RxQueue {
    /// Whether the driver is live.
    pub fn live(&self) -> bool {
        self.queue.is_some()
    }

    /// Puts `frame`, after `hdr` (made to fit the negotiated features
    /// here, `num_buffers` set), in the driver's receive buffers: one
    /// chain, or with `VIRTIO_NET_F_MRG_RXBUF` as many as it takes.
    ///
    /// # Errors
    /// A malformed queue.
    pub(super) fn deliver(
        &mut self,
        mem: &dyn GuestMemory,
        hdr: &mut [u8; HDR_LEN],
        frame: &mut [u8],
        stats: &Counters,
    ) -> Result<Delivery, QueueError> {
        let Some(queue) = self.queue.as_mut() else {
            return Ok(Delivery::NoBuffer);
        };
        let total = HDR_LEN + frame.len();
        let mrg = offload::has(self.features, offload::MRG_RXBUF);
        // Take chains until the frame fits (one without mergeable buffers).
        let mut room: u64 = self.held.iter().map(writable_len).sum();
        while self.held.is_empty() || (mrg && room < total as u64) {
            match queue.pop(mem)? {
                Some(c) => {
                    room += writable_len(&c);
                    self.held.push_back(c);
                }
                None => return Ok(Delivery::NoBuffer),
            }
        }
        let fitted = offload::fit_received(self.features, hdr, frame);
        if room < total as u64 {
            Self::warn_size(&mut self.warned, frame.len(), room);
        }
        if fitted.is_err() || room < total as u64 {
            // Too big (or refused): the first chain goes back empty.
            let chain = self.held.pop_front().expect("a chain was taken");
            queue.add_used(mem, chain.head, 0)?;
            count(&stats.rx_dropped, 1);
            return Ok(Delivery::Dropped);
        }
        // Scratch space; left empty if a write below fails.
        let mut lens = std::mem::take(&mut self.lens);
        lens.clear();
        fill(&self.held, 0, total, &mut lens);
        hdr[10..12].copy_from_slice(&(lens.len() as u16).to_le_bytes());
        let mut at = 0usize;
        for &n in &lens {
            let chain = self.held.pop_front().expect("counted by fill");
            let bufs = writable(&chain);
            let n = n as usize;
            // The header first, then the frame, across this chain.
            let written = if at < HDR_LEN {
                let h = n.min(HDR_LEN - at);
                scatter(mem, bufs, 0, &hdr[at..at + h])
                    .and_then(|()| scatter(mem, bufs, h, &frame[..n - h]))
            } else {
                scatter(mem, bufs, 0, &frame[at - HDR_LEN..at - HDR_LEN + n])
            };
            written?;
            queue.add_used(mem, chain.head, n as u32)?;
            at += n;
        }
        self.lens = lens;
        count(&stats.rx_frames, 1);
        count(&stats.rx_bytes, frame.len() as u64);
        Ok(Delivery::Delivered)
    }

    /// Reads one frame from `backend` straight into the driver's buffers
    /// (no copy in the device): the buffers are taken first, enough for
    /// the largest frame the backend carries (with mergeable buffers) or
    /// one chain, and those the frame does not need stay held for the
    /// next. When the receive queue coalesces ([`coalesce`]), the frames
    /// queued behind a large TCP segment that continue it are read and
    /// joined to it. `iovs` is the caller's scratch space.
    ///
    /// # Errors
    /// A malformed queue.
    pub(super) fn receive_direct(
        &mut self,
        mem: &dyn GuestMemory,
        backend: &dyn Backend,
        iovs: &mut Vec<libc::iovec>,
        stats: &Counters,
    ) -> Result<Direct, QueueError> {
        if self.queue.is_none() {
            return Ok(Direct::Short);
        }
        let mut io = Io {
            mem,
            backend,
            iovs,
            stats,
        };
        let total = match self.ready.take() {
            Some(total) => total,
            None => match self.read_into(&mut io, 0)? {
                Read::Frame(total) => total,
                Read::Done(d) => return Ok(d),
            },
        };
        let mut run = Run {
            head: [0u8; coalesce::HEAD],
            lens: std::mem::take(&mut self.lens),
            seg: None,
        };
        run.lens.clear();
        fill(&self.held, 0, total, &mut run.lens);
        let r = self.finish(&mut io, &mut run, total);
        self.lens = run.lens;
        r
    }

    /// Delivers the frame of `total` bytes read into the first held
    /// chains (`run.lens` says what each holds), with the frames joined
    /// to it when the queue coalesces.
    fn finish(&mut self, io: &mut Io, run: &mut Run, total: usize) -> Result<Direct, QueueError> {
        let (mem, stats) = (io.mem, io.stats);
        let h = io.backend.host_hdr_len();
        let frame_len = total - HDR_LEN;
        // The frame's headers too when it may be joined, else the host's
        // virtio-net header alone.
        let coalescing = self.coalescing(h);
        let head_len = if coalescing { coalesce::HEAD } else { h }.min(total);
        gather_bytes(mem, writable(&self.held[0]), 0, &mut run.head[..head_len])?;
        let mut hdr = [0u8; HDR_LEN];
        hdr[..h].copy_from_slice(&run.head[..h]);
        if !self.fit_in_place(mem, run.lens.len(), &mut hdr, frame_len)? {
            count(&stats.rx_dropped, 1);
            let chain = self.held.pop_front().expect("a chain was taken");
            self.queue_mut().add_used(mem, chain.head, 0)?;
            return Ok(Direct::Dropped);
        }
        run.head[..HDR_LEN].copy_from_slice(&hdr);
        if coalescing {
            run.seg = coalesce::segment(&run.head[..head_len], frame_len).filter(|s| s.gso);
            if run.seg.is_some() {
                self.join(io, run)?;
            }
        }
        // The headers of a joined frame were rewritten; else only ours.
        let (written, frame_len) = match run.seg {
            Some(seg) if seg.hdr_len + seg.payload > frame_len => {
                (HDR_LEN + seg.hdr_len, seg.hdr_len + seg.payload)
            }
            _ => (HDR_LEN, frame_len),
        };
        run.head[10..12].copy_from_slice(&(run.lens.len() as u16).to_le_bytes());
        scatter(mem, writable(&self.held[0]), 0, &run.head[..written])?;
        for &n in &run.lens {
            let chain = self.held.pop_front().expect("counted by fill");
            self.queue_mut().add_used(mem, chain.head, n)?;
        }
        count(&stats.rx_frames, 1);
        count(&stats.rx_bytes, frame_len as u64);
        Ok(Direct::Delivered)
    }

    /// Whether frames are joined: asked for, a backend that writes the
    /// whole header, and a driver that takes mergeable buffers, large
    /// TCPv4 segments and partial checksums.
    fn coalescing(&self, host_hdr_len: usize) -> bool {
        let needs = offload::MRG_RXBUF | offload::GUEST_TSO4 | offload::GUEST_CSUM;
        self.coalesce && host_hdr_len == HDR_LEN && self.features & needs == needs
    }

    /// Reads the frames queued behind the large segment `run.seg` into
    /// the following chains and joins those that continue it, until one
    /// does not (it is then [`RxQueue::ready`], a frame of its own), the
    /// backend is empty, the buffers run short or [`coalesce::LIMIT`] is
    /// reached. `run.seg` grows with each frame joined.
    fn join(&mut self, io: &mut Io, run: &mut Run) -> Result<(), QueueError> {
        let (mem, stats) = (io.mem, io.stats);
        let Some(mut seg) = run.seg else {
            return Ok(());
        };
        while seg.payload < coalesce::LIMIT {
            let from = run.lens.len();
            let total = match self.read_into(io, from)? {
                Read::Frame(total) => total,
                Read::Done(Direct::Failed(_)) => {
                    count(&stats.rx_dropped, 1);
                    break;
                }
                Read::Done(_) => break,
            };
            let mut next = [0u8; coalesce::HEAD];
            let next_len = coalesce::HEAD.min(total);
            let first = writable(&self.held[from]);
            gather_bytes(mem, first, 0, &mut next[..next_len])?;
            let fits = coalesce::segment(&next[..next_len], total - HDR_LEN)
                .filter(|n| coalesce::follows(&run.head, &seg, &next, n));
            // The payload in the first chain moves over the headers: one
            // buffer, so the chain must be one descriptor.
            let skip = HDR_LEN + seg.hdr_len;
            let (Some(n), [d]) = (fits, first) else {
                self.ready = Some(total);
                break;
            };
            let in_first = u64::from(d.len).min(total as u64);
            let p = mem.translate(d.addr, in_first).ok_or(QueueError::Memory {
                addr: d.addr,
                len: in_first,
            })?;
            let in_first = in_first as usize;
            // SAFETY: `p` is the chain's one buffer, `in_first` bytes long
            // (translate checked it lies in the kernel's memory); the
            // driver gave it to the device and gets it back only through
            // the used ring, after this.
            unsafe { std::ptr::copy(p.add(skip), p, in_first - skip) };
            let before = run.lens.len();
            fill(&self.held, from, total, &mut run.lens);
            run.lens[before] -= skip as u32;
            seg.payload += n.payload;
            coalesce::append(&mut run.head, &seg, &next);
            count(&stats.rx_coalesced, 1);
        }
        run.seg = Some(seg);
        Ok(())
    }

    /// Reads one frame into the held chains from index `from` on, taking
    /// chains from the ring until they can hold the largest frame (one
    /// chain without mergeable buffers). A frame that does not fit is
    /// dropped, its first chain returned empty.
    fn read_into(&mut self, io: &mut Io, from: usize) -> Result<Read, QueueError> {
        let (mem, backend, stats) = (io.mem, io.backend, io.stats);
        let iovs = &mut *io.iovs;
        let Some(queue) = self.queue.as_mut() else {
            return Ok(Read::Done(Direct::Short));
        };
        let mrg = offload::has(self.features, offload::MRG_RXBUF);
        let want = (HDR_LEN + backend.max_frame()) as u64;
        let mut room: u64 = self.held.iter().skip(from).map(writable_len).sum();
        while self.held.len() <= from || (mrg && room < want) {
            match queue.pop(mem)? {
                Some(c) => {
                    room += writable_len(&c);
                    self.held.push_back(c);
                }
                None => return Ok(Read::Done(Direct::Short)),
            }
        }
        let chains = if mrg { self.held.len() - from } else { 1 };
        let room: u64 = self
            .held
            .iter()
            .skip(from)
            .take(chains)
            .map(writable_len)
            .sum();
        // The header is the backend's to write when it has one, else ours.
        // The backend writes its header (`h` bytes of ours) and the frame;
        // the rest of our header, bytes h..12, is left out for us.
        let h = backend.host_hdr_len() as u64;
        iovs.clear();
        let mut pos = 0u64;
        let descs = self.held.iter().skip(from).take(chains);
        for d in descs.flat_map(|c| c.writable()) {
            let end = pos + u64::from(d.len);
            for (lo, hi) in [(pos, end.min(h)), (pos.max(HDR_LEN as u64), end)] {
                if lo < hi {
                    let addr = d.addr + (lo - pos);
                    let p = mem
                        .translate(addr, hi - lo)
                        .ok_or(QueueError::Memory { addr, len: hi - lo })?;
                    iovs.push(libc::iovec {
                        iov_base: p.cast(),
                        iov_len: (hi - lo) as usize,
                    });
                }
            }
            pos = end;
        }
        // One byte past the buffers tells a frame that did not fit.
        let mut spill = [0u8; 1];
        iovs.push(super::backend::iov_mut(&mut spill));
        let n = match backend.recv_iov(iovs) {
            None => return Ok(Read::Done(Direct::Short)),
            Some(Ok(n)) => n,
            Some(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Read::Done(Direct::Empty))
            }
            Some(Err(e)) => return Ok(Read::Done(Direct::Failed(e))),
        };
        iovs.clear();
        let total = n + HDR_LEN - h as usize;
        if (n as u64) < h || total as u64 > room {
            Self::warn_size(&mut self.warned, total.saturating_sub(HDR_LEN), room);
            count(&stats.rx_dropped, 1);
            let chain = self.held.remove(from).expect("a chain was taken");
            self.queue_mut().add_used(mem, chain.head, 0)?;
            return Ok(Read::Done(Direct::Dropped));
        }
        Ok(Read::Frame(total))
    }

    fn queue_mut(&mut self) -> &mut Queue {
        self.queue.as_mut().expect("live while delivering")
    }

    /// [`offload::fit_received`] for a frame already in the first `used`
    /// held chains: a partial checksum the driver cannot take is completed
    /// in a copy, written back. Returns whether the frame may go on.
    fn fit_in_place(
        &self,
        mem: &dyn GuestMemory,
        used: usize,
        hdr: &mut [u8; HDR_LEN],
        frame_len: usize,
    ) -> Result<bool, QueueError> {
        let mut probe = *hdr;
        if offload::fit_received(self.features, &mut probe, &mut []).is_ok() {
            *hdr = probe;
            return Ok(true);
        }
        if hdr[1] != 0 || offload::has(self.features, offload::GUEST_CSUM) {
            return Ok(false); // a large segment the driver did not take
        }
        // The rare case: complete the checksum on a copy of the frame.
        let bufs: Vec<Descriptor> = self
            .held
            .iter()
            .take(used)
            .flat_map(|c| c.writable().copied())
            .collect();
        let mut frame = vec![0u8; frame_len];
        gather_bytes(mem, &bufs, HDR_LEN, &mut frame)?;
        if offload::fit_received(self.features, hdr, &mut frame).is_err() {
            return Ok(false);
        }
        scatter(mem, &bufs, HDR_LEN, &frame)?;
        Ok(true)
    }

    fn warn_size(warned: &mut bool, frame: usize, room: u64) {
        if std::mem::replace(warned, true) {
            return;
        }
        crate::host::print::write_stderr(
            format!(
                "lkl: virtio-net: dropped a {frame}-byte frame: the driver's receive buffer \
                 holds {} bytes; for an MTU above 1500 add mergeable receive buffers \
                 (offload bit 0x8000, MRG_RXBUF) to the device's offload mask\n",
                room.saturating_sub(HDR_LEN as u64)
            )
            .as_bytes(),
        );
    }

    /// Whether the driver wants an interrupt for what was used.
    pub(super) fn needs_notification(&mut self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        match self.queue.as_mut() {
            Some(q) => q.needs_notification(mem),
            None => Ok(false),
        }
    }

    /// Forgets the queue (reset, stop, or a malformed queue): nothing is
    /// delivered until the next DRIVER_OK.
    pub(super) fn clear(&mut self) {
        self.queue = None;
        self.held.clear();
        self.ready = None;
    }
}

/// Appends to `lens` what `total` bytes fill of each of `chains` from
/// index `from` on.
fn fill(chains: &VecDeque<DescriptorChain>, from: usize, total: usize, lens: &mut Vec<u32>) {
    let mut left = total as u64;
    for c in chains.iter().skip(from) {
        if left == 0 {
            break;
        }
        let n = left.min(writable_len(c));
        lens.push(n as u32);
        left -= n;
    }
}

/// The device-writable buffers of `c` (they come last in a chain).
fn writable(c: &DescriptorChain) -> &[Descriptor] {
    let first = c
        .descs
        .iter()
        .position(|d| d.writable)
        .unwrap_or(c.descs.len());
    &c.descs[first..]
}

fn writable_len(c: &DescriptorChain) -> u64 {
    c.writable().map(|d| u64::from(d.len)).sum()
}

/// What the device and its receive thread share, without the transport's
/// lock.
pub struct Shared {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) wake: Wake,
    pub(super) mem: Arc<dyn GuestMemory>,
    rx: Mutex<RxQueue>,
    stopped: AtomicBool,
    /// The receive thread waits for buffers: a notify of the receive queue
    /// must wake it. Set (then buffers looked for once more) before it
    /// sleeps, cleared when it wakes.
    pub(super) waiting: AtomicBool,
    /// Receive threads raising the interrupt right now (0 or 1).
    signalling: std::sync::atomic::AtomicUsize,
    pub(super) stats: Counters,
    pub(super) tx: TxState,
}

/// The transmit thread's state ([`super::tx`]), shared with the notify
/// path. `active` changes only under the transport's lock, so a notify
/// (which runs under it) either transmits itself or leaves the chains to
/// the thread, never both: frames keep their order.
#[derive(Debug)]
pub struct TxState {
    /// Whether the device has a transmit thread at all.
    pub(super) enabled: bool,
    /// The thread takes the notifies: it is awake and sends what they
    /// leave; a notify only sets `pending`.
    pub(super) active: AtomicBool,
    /// A notify came while `active`: chains wait for the thread.
    pub(super) pending: AtomicBool,
    /// Sends in progress outside the transport's lock (0 or 1): a reset
    /// or stop waits for them, as they read the driver's buffers.
    pub(super) inflight: std::sync::atomic::AtomicUsize,
    /// Counts resets: chains taken before one are not returned after it.
    pub(super) generation: AtomicU64,
    /// Wakes the thread when it becomes `active` (or the device stops).
    pub(super) wake: Wake,
}

impl TxState {
    /// Waits until no send is in progress outside the transport's lock.
    fn settle(&self) {
        while self.inflight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    /// Takes sending back for the notifying thread (under the transport's
    /// lock): the thread takes no more chains, and the send it has in
    /// progress, if any, is done when this returns.
    fn take_back(&self) {
        self.active.store(false, Ordering::SeqCst);
        self.pending.store(false, Ordering::SeqCst);
        self.settle();
    }
}

impl Shared {
    /// The receive queue, locked.
    pub fn rx(&self) -> MutexGuard<'_, RxQueue> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the device was stopped for good.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// After [`Net::stop`], without the transport's lock (an interrupt
    /// handler run by the receive thread may need it): waits until an
    /// interrupt the receive thread was raising, and a send of the
    /// transmit thread, are done. None starts after.
    pub fn quiesce(&self) {
        while self.signalling.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        self.tx.settle();
    }

    /// Sends the frame in `chain` (the driver's buffers, gathered into
    /// `iovs`, scratch space left empty) with the features the driver
    /// accepted; counts it.
    pub(super) fn send(&self, features: u64, chain: &DescriptorChain, iovs: &mut Vec<libc::iovec>) {
        let mem = &*self.mem;
        let max = self.backend.max_frame();
        let mut hdr = [0u8; HDR_LEN];
        let sent = gather(mem, chain, &mut hdr, iovs).and_then(|len| {
            if len == 0 || len > max {
                return None;
            }
            if !offload::has(features, offload::CSUM) {
                hdr[0] = 0;
            }
            iovs[0] = iov(&hdr);
            self.backend.send(iovs).ok()?;
            Some(len)
        });
        iovs.clear();
        match sent {
            Some(len) => {
                count(&self.stats.tx_frames, 1);
                count(&self.stats.tx_bytes, len as u64);
            }
            None => count(&self.stats.tx_errors, 1),
        }
    }

    /// Runs `f` (raising the interrupt) unless the device is stopped;
    /// [`Shared::quiesce`] waits for an `f` that started before the stop.
    pub fn unless_stopped(&self, f: impl FnOnce()) {
        self.signalling.fetch_add(1, Ordering::SeqCst);
        if !self.stopped.load(Ordering::SeqCst) {
            f();
        }
        self.signalling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A virtio-net device over a [`Backend`].
pub struct Net {
    mac: [u8; 6],
    shared: Arc<Shared>,
    /// The offload bits offered.
    offloads: u64,
    /// The features the driver accepted (0 before DRIVER_OK).
    features: u64,
    tx_iovs: Vec<libc::iovec>,
    /// Bytes received and sent at the last transmit notify, and when: the
    /// notify path hands transmission to the thread while traffic is bulk.
    tx_mark: (u64, Option<std::time::Instant>),
}

// SAFETY: the iovecs in `tx_iovs` are scratch space, filled and used
// within one `transmit` call on one thread; between calls they point at
// nothing that is dereferenced.
unsafe impl Send for Net {}

impl Net {
    /// A device with address `mac` over `backend`, reaching the driver's
    /// buffers through `mem`, offering the `offload` bits the backend can
    /// honour (`opts.offload`), joining received TCP segments when
    /// `opts.coalesce` (see [`coalesce`]), with a transmit thread when
    /// `opts.transmit_thread` and `opts.busy_poll` is not zero (see
    /// [`super::tx`]). `opts.mac` is not used: `mac` is.
    ///
    /// # Errors
    /// No eventfd could be made.
    pub fn new(
        mac: [u8; 6],
        backend: Arc<dyn Backend>,
        mem: Arc<dyn GuestMemory>,
        opts: &super::NetOptions,
    ) -> std::io::Result<Net> {
        let coalesce = opts.coalesce;
        let offloads = offload::consistent(opts.offload & backend.offloads());
        Ok(Net {
            mac,
            shared: Arc::new(Shared {
                backend,
                wake: Wake::new()?,
                mem,
                rx: Mutex::new(RxQueue {
                    coalesce,
                    ..RxQueue::default()
                }),
                stopped: AtomicBool::new(false),
                waiting: AtomicBool::new(false),
                signalling: std::sync::atomic::AtomicUsize::new(0),
                stats: Counters::default(),
                tx: TxState {
                    enabled: opts.transmit_thread && !opts.busy_poll.is_zero(),
                    active: AtomicBool::new(false),
                    pending: AtomicBool::new(false),
                    inflight: std::sync::atomic::AtomicUsize::new(0),
                    generation: AtomicU64::new(0),
                    wake: Wake::new()?,
                },
            }),
            offloads,
            features: 0,
            tx_iovs: Vec::with_capacity(usize::from(QUEUE_SIZE) + 1),
            tx_mark: (0, None),
        })
    }

    /// What the receive thread needs.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The frame counters.
    pub fn stats(&self) -> NetStats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            rx_frames: get(&c.rx_frames),
            rx_bytes: get(&c.rx_bytes),
            rx_dropped: get(&c.rx_dropped),
            tx_frames: get(&c.tx_frames),
            tx_bytes: get(&c.tx_bytes),
            tx_errors: get(&c.tx_errors),
            rx_interrupts: get(&c.rx_interrupts),
            rx_coalesced: get(&c.rx_coalesced),
            tx_threaded: get(&c.tx_threaded),
        }
    }

    /// The features the driver accepted (0 before it set DRIVER_OK).
    pub fn negotiated(&self) -> u64 {
        self.features
    }

    /// Stops the device for good, before the kernel's memory is freed:
    /// once this returns neither queue is touched again, and the receive
    /// thread is woken to see it and end.
    pub fn stop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.rx().clear();
        self.shared.wake.signal();
        self.shared.tx.wake.signal();
    }

    /// Whether [`Net::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.shared.stopped()
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends every chain the driver made available on the transmit queue.
    fn transmit(&mut self, queue: &mut Queue, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        let mut used = false;
        while let Some(chain) = queue.pop(mem)? {
            self.shared.send(self.features, &chain, &mut self.tx_iovs);
            queue.add_used(mem, chain.head, 0)?;
            used = true;
        }
        Ok(used)
    }

    /// Called on a transmit notify that this thread served: whether the
    /// traffic is bulk (more than [`BULK_BYTES`] moved either way since
    /// the notify before, within [`BULK_GAP`]), so the transmit thread
    /// should take over: a request/response exchange or a ping stays on
    /// the notifying thread, which sends at once.
    fn bulk(&mut self) -> bool {
        if !self.shared.tx.enabled {
            return false;
        }
        let st = &self.shared.stats;
        let moved = st.rx_bytes.load(Ordering::Relaxed) + st.tx_bytes.load(Ordering::Relaxed);
        let now = std::time::Instant::now();
        let (mark, at) = std::mem::replace(&mut self.tx_mark, (moved, Some(now)));
        at.is_some_and(|t| now.duration_since(t) < BULK_GAP) && moved - mark > BULK_BYTES
    }

    /// Before a stop: takes transmission back from the transmit thread
    /// (once its send in progress is done) and sends what the driver
    /// queued since, so every frame queued before the stop goes out, as
    /// it would have at its notify. Under the transport's lock, with the
    /// transport's copy of the transmit queue.
    ///
    /// # Errors
    /// A malformed queue.
    pub(super) fn flush_transmit(
        &mut self,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        self.shared.tx.take_back();
        self.transmit(queue, mem)
    }

    /// Back to sending on the notifying thread, with no chain of the old
    /// queue in the transmit thread's hands (reset, DRIVER_OK). Under the
    /// transport's lock.
    fn idle_transmit(&mut self) {
        let tx = &self.shared.tx;
        tx.generation.fetch_add(1, Ordering::SeqCst);
        tx.take_back();
        self.tx_mark = (0, None);
    }

    /// The current reset generation (see [`TxState::generation`]).
    pub(super) fn generation(&self) -> u64 {
        self.shared.tx.generation.load(Ordering::SeqCst)
    }
}

/// Reads the header of `chain` into `hdr` and fills `iovs` with a
/// placeholder for it followed by the frame's pieces in the driver's
/// buffers; returns the frame's length, `None` if the chain is shorter
/// than the header or a buffer cannot be reached.
fn gather(
    mem: &dyn GuestMemory,
    chain: &DescriptorChain,
    hdr: &mut [u8; HDR_LEN],
    iovs: &mut Vec<libc::iovec>,
) -> Option<usize> {
    iovs.clear();
    iovs.push(iov(&[]));
    let mut skip = HDR_LEN;
    let mut len = 0;
    for d in chain.readable() {
        let n = d.len as usize;
        let h = skip.min(n);
        if h > 0 {
            let at = HDR_LEN - skip;
            read_bytes(mem, d.addr, &mut hdr[at..at + h]).ok()?;
            skip -= h;
        }
        if n > h {
            let p = mem.translate(d.addr + h as u64, (n - h) as u64)?;
            iovs.push(libc::iovec {
                iov_base: p.cast(),
                iov_len: n - h,
            });
            len += n - h;
        }
    }
    (skip == 0).then_some(len)
}

/// Reads `out.len()` bytes from the buffers `bufs`, seen as one, from
/// byte `start`.
fn gather_bytes(
    mem: &dyn GuestMemory,
    bufs: &[Descriptor],
    start: usize,
    out: &mut [u8],
) -> Result<(), QueueError> {
    let mut skip = start as u64;
    let mut at = 0;
    for d in bufs {
        if at == out.len() {
            break;
        }
        let len = u64::from(d.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(out.len() - at);
        read_bytes(mem, d.addr + skip, &mut out[at..at + n])?;
        at += n;
        skip = 0;
    }
    Ok(())
}

/// Writes `data` into the buffers `bufs`, seen as one, from byte `start`.
fn scatter(
    mem: &dyn GuestMemory,
    bufs: &[Descriptor],
    start: usize,
    mut data: &[u8],
) -> Result<(), QueueError> {
    let mut skip = start as u64;
    for d in bufs {
        if data.is_empty() {
            break;
        }
        let len = u64::from(d.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(data.len());
        write_bytes(mem, d.addr + skip, &data[..n])?;
        data = &data[n..];
        skip = 0;
    }
    Ok(())
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        sys::LKL_VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        1u64 << sys::LKL_VIRTIO_F_VERSION_1
            | 1 << sys::LKL_VIRTIO_NET_F_MAC
            | 1 << sys::LKL_VIRTIO_RING_F_EVENT_IDX
            | self.offloads
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Only `mac` is meaningful; the rest of the config reads as zero.
        for (i, b) in data.iter_mut().enumerate() {
            let at = (offset as usize).saturating_add(i);
            *b = self.mac.get(at).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Nothing writable is offered (no VIRTIO_NET_F_CTRL_MAC_ADDR).
    }

    fn activate(&mut self, features: u64) {
        self.features = features;
    }

    fn activate_queues(&mut self, features: u64, queues: &[Queue]) {
        self.activate(features);
        self.idle_transmit();
        if self.stopped() {
            return;
        }
        if let Err(e) = self.shared.backend.negotiated(features) {
            crate::host::print::write_stderr(
                format!("lkl: virtio-net: the backend refused offloads {features:#x}: {e}\n")
                    .as_bytes(),
            );
        }
        {
            let mut rx = self.shared.rx();
            rx.clear();
            rx.queue = queues.get(RX_QUEUE).cloned();
            rx.features = features;
        }
        // The receive thread may hold a frame for the new buffers.
        self.shared.wake.signal();
    }

    fn reset(&mut self) {
        self.features = 0;
        self.shared.rx().clear();
        self.idle_transmit();
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        match index {
            _ if self.stopped() => Ok(false),
            RX_QUEUE => {
                if self.shared.waiting.load(Ordering::SeqCst) {
                    self.shared.wake.signal();
                }
                Ok(false)
            }
            TX_QUEUE if self.shared.tx.active.load(Ordering::SeqCst) => {
                // The transmit thread is awake and sends them.
                self.shared.tx.pending.store(true, Ordering::SeqCst);
                Ok(false)
            }
            TX_QUEUE => {
                let used = self.transmit(queue, mem)?;
                if self.bulk() {
                    self.shared.tx.active.store(true, Ordering::SeqCst);
                    self.shared.tx.wake.signal();
                }
                Ok(used)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::memory::read_bytes;
    use crate::virtio::net::backend::poll_readable;
    use crate::virtio::queue::tests::MockDriver;
    use std::io;
    use std::os::fd::RawFd;

    /// Records what is sent; never has anything to receive.
    struct Sink {
        sent: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
        vnet_hdr: bool,
    }

    impl Backend for Sink {
        fn send(&self, iovs: &mut [libc::iovec]) -> io::Result<()> {
            let bytes = |v: &libc::iovec| {
                // SAFETY: the device built these iovecs over live memory.
                unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }.to_vec()
            };
            let hdr = bytes(&iovs[0]);
            let frame = iovs[1..].iter().flat_map(bytes).collect();
            self.sent.lock().unwrap().push((hdr, frame));
            Ok(())
        }
        fn recv(&self, _hdr: &mut [u8; HDR_LEN], _buf: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn poll_fd(&self) -> RawFd {
            -1
        }
        fn vnet_hdr(&self) -> bool {
            self.vnet_hdr
        }
        fn offloads(&self) -> u64 {
            if self.vnet_hdr {
                offload::ALL
            } else {
                0
            }
        }
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const BASE_FEATURES: u64 = 1 << sys::LKL_VIRTIO_F_VERSION_1
        | 1 << sys::LKL_VIRTIO_NET_F_MAC
        | 1 << sys::LKL_VIRTIO_RING_F_EVENT_IDX;

    fn opts(offload: u64) -> crate::NetOptions {
        crate::NetOptions {
            offload,
            ..Default::default()
        }
    }

    fn net(d: &MockDriver, offload: u64) -> (Net, Arc<Sink>) {
        net_with(d, &opts(offload))
    }

    fn net_with(d: &MockDriver, o: &crate::NetOptions) -> (Net, Arc<Sink>) {
        let sink = Arc::new(Sink {
            sent: Mutex::new(Vec::new()),
            vnet_hdr: o.offload != 0,
        });
        let net = Net::new(MAC, sink.clone(), d.mem.clone(), o).unwrap();
        (net, sink)
    }

    /// The device after DRIVER_OK with `features`, both queues live.
    fn live(d: &MockDriver, offload: u64, features: u64) -> (Net, Arc<Sink>) {
        let (mut n, sink) = net(d, offload);
        n.activate_queues(features, &[d.queue(), d.queue()]);
        (n, sink)
    }

    fn deliver(n: &Net, frame: &[u8]) -> Delivery {
        let sh = n.shared();
        let mut hdr = [0u8; HDR_LEN];
        let mut f = frame.to_vec();
        let mut rx = sh.rx();
        rx.deliver(&*sh.mem, &mut hdr, &mut f, &sh.stats).unwrap()
    }

    #[test]
    fn offers_version_1_mac_event_idx_and_the_offloads_the_backend_takes() {
        let d = MockDriver::new(8);
        let (n, _) = net(&d, 0);
        assert_eq!(n.features(), BASE_FEATURES);
        assert_eq!(n.queue_max_sizes(), vec![QUEUE_SIZE, QUEUE_SIZE]);
        let mut b = [0xffu8; 8];
        n.read_config(0, &mut b);
        assert_eq!(b, [2, 0, 0, 0, 0, 9, 0, 0]);
        let (n, _) = net(&d, 0xc803);
        assert_eq!(n.features(), BASE_FEATURES | 0xc803);
        // TSO without its checksum offload is not offered.
        let (n, _) = net(&d, offload::HOST_TSO4 | offload::MRG_RXBUF);
        assert_eq!(n.features(), BASE_FEATURES | offload::MRG_RXBUF);
    }

    #[test]
    fn receive_writes_the_header_then_the_frame_across_buffers() {
        let mut d = MockDriver::new(8);
        let (n, _) = net(&d, 0);
        assert_eq!(deliver(&n, b"early"), Delivery::NoBuffer, "no driver yet");
        let (n, _) = live(&d, 0, BASE_FEATURES);
        assert_eq!(deliver(&n, b"early"), Delivery::NoBuffer, "no buffer yet");
        // The header and the frame's start split across two buffers.
        let (a, b) = (d.alloc(16), d.alloc(64));
        let head = d.add_chain(&[(a, 16, true), (b, 64, true)]);
        let frame: Vec<u8> = (0..60u8).collect();
        assert_eq!(deliver(&n, &frame), Delivery::Delivered);
        assert_eq!(d.used_elem(0), (u32::from(head), (HDR_LEN + 60) as u32));
        let mut got = [0u8; 16];
        read_bytes(&*d.mem, a, &mut got).unwrap();
        assert_eq!(got[..HDR_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(got[HDR_LEN..], frame[..4]);
        let mut rest = [0u8; 56];
        read_bytes(&*d.mem, b, &mut rest).unwrap();
        assert_eq!(rest[..], frame[4..]);
        assert_eq!((n.stats().rx_frames, n.stats().rx_bytes), (1, 60));
    }

    #[test]
    fn mergeable_buffers_take_as_many_chains_as_the_frame_needs() {
        let mut d = MockDriver::new(16);
        let features = BASE_FEATURES | offload::MRG_RXBUF;
        let (n, _) = live(&d, offload::MRG_RXBUF, features);
        let bufs: Vec<u64> = (0..3).map(|_| d.alloc(100)).collect();
        // Two chains are not enough for 12 + 250 bytes: held, not used.
        let heads: Vec<u16> = bufs[..2]
            .iter()
            .map(|&a| d.add_chain(&[(a, 100, true)]))
            .collect();
        let frame: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        assert_eq!(deliver(&n, &frame), Delivery::NoBuffer);
        assert_eq!(d.used_idx(), 0);
        let last = d.add_chain(&[(bufs[2], 100, true)]);
        assert_eq!(deliver(&n, &frame), Delivery::Delivered);
        assert_eq!(d.used_idx(), 3);
        assert_eq!(d.used_elem(0), (u32::from(heads[0]), 100));
        assert_eq!(d.used_elem(1), (u32::from(heads[1]), 100));
        assert_eq!(d.used_elem(2), (u32::from(last), 62));
        let mut all = vec![0u8; 300];
        for (k, &a) in bufs.iter().enumerate() {
            read_bytes(&*d.mem, a, &mut all[k * 100..k * 100 + 100]).unwrap();
        }
        // num_buffers = 3 in the first chain's header.
        assert_eq!(all[10..12], [3, 0]);
        assert_eq!(all[HDR_LEN..HDR_LEN + 250], frame[..]);
    }

    /// Gives frames (after `host_hdr` bytes of header) to direct reads.
    struct Source {
        frames: Mutex<VecDeque<Vec<u8>>>,
        host_hdr: usize,
        max: usize,
    }

    impl Backend for Source {
        fn send(&self, _iovs: &mut [libc::iovec]) -> io::Result<()> {
            Ok(())
        }
        fn recv(&self, _hdr: &mut [u8; HDR_LEN], _buf: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn recv_iov(&self, iovs: &mut [libc::iovec]) -> Option<io::Result<usize>> {
            let Some(f) = self.frames.lock().unwrap().pop_front() else {
                return Some(Err(io::ErrorKind::WouldBlock.into()));
            };
            // As readv: fill the iovecs in order, as far as they go.
            let mut at = 0;
            for v in iovs.iter() {
                let n = v.iov_len.min(f.len() - at);
                // SAFETY: the device built these iovecs over live memory.
                unsafe { std::ptr::copy_nonoverlapping(f[at..].as_ptr(), v.iov_base.cast(), n) };
                at += n;
            }
            Some(Ok(at))
        }
        fn poll_fd(&self) -> RawFd {
            -1
        }
        fn vnet_hdr(&self) -> bool {
            self.host_hdr > 0
        }
        fn host_hdr_len(&self) -> usize {
            self.host_hdr
        }
        fn offloads(&self) -> u64 {
            offload::ALL
        }
        fn max_frame(&self) -> usize {
            self.max
        }
    }

    fn direct(n: &Net, src: &Source) -> Direct {
        let sh = n.shared();
        let mut iovs = Vec::new();
        let mut rx = sh.rx();
        rx.receive_direct(&*sh.mem, src, &mut iovs, &sh.stats)
            .unwrap()
    }

    /// A TCP/IPv4 frame as a tap hands it over (virtio-net header first):
    /// `payload` bytes at `seq`, segments of `gso` (0: one segment), from
    /// source port `port`; the payload bytes count up from `seq`.
    fn tcp_frame(seq: u32, payload: usize, gso: u16, port: u8) -> Vec<u8> {
        let (mut f, _) = super::super::coalesce::tests::head(seq, payload, gso);
        f[HDR_LEN + 14 + 20 + 1] = port;
        f.extend((0..payload).map(|i| (seq as usize + i) as u8));
        f
    }

    /// What the driver got in used entries `from..from + n`, buffers in
    /// `bufs` by chain head, concatenated.
    fn used_bytes(d: &MockDriver, bufs: &[u64], from: u16, n: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for k in from..from + n {
            let (head, len) = d.used_elem(k);
            let mut b = vec![0u8; len as usize];
            read_bytes(&*d.mem, bufs[head as usize], &mut b).unwrap();
            out.extend(b);
        }
        out
    }

    #[test]
    fn queued_segments_of_one_flow_reach_the_driver_as_one() {
        let mut d = MockDriver::new(32);
        let offloads = offload::MRG_RXBUF | offload::GUEST_CSUM | offload::GUEST_TSO4;
        let (n, _) = live(&d, offloads, BASE_FEATURES | offloads);
        let bufs: Vec<u64> = (0..20).map(|_| d.alloc(256)).collect();
        for &b in &bufs {
            d.add_chain(&[(b, 256, true)]);
        }
        // Two segments of one flow, then one of another flow.
        let (a, b, c) = (
            tcp_frame(1000, 200, 100, 1),
            tcp_frame(1200, 300, 100, 1),
            tcp_frame(1500, 100, 100, 2),
        );
        let src = Source {
            frames: Mutex::new(VecDeque::from([a.clone(), b.clone(), c.clone()])),
            host_hdr: HDR_LEN,
            max: 600,
        };
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        // a's two chains (256 + 22 bytes), then b's payload: its first
        // chain's headers were covered by its payload (256 - 78 bytes).
        assert_eq!(d.used_idx(), 4);
        let lens: Vec<u32> = (0..4).map(|k| d.used_elem(k).1).collect();
        assert_eq!(lens, [256, 22, 178, 122]);
        let got = used_bytes(&d, &bufs, 0, 4);
        let hl = coalesce::HEAD;
        assert_eq!(got.len(), hl + 500);
        assert_eq!(got[hl..hl + 200], a[hl..]);
        assert_eq!(got[hl + 200..], b[hl..]);
        let seg = coalesce::segment(&got[..hl], got.len() - HDR_LEN).unwrap();
        assert_eq!((seg.payload, seg.mss, seg.gso), (500, 100, true));
        assert_eq!(got[10..12], [4, 0], "num_buffers");
        let s = n.stats();
        assert_eq!((s.rx_frames, s.rx_coalesced, s.rx_bytes), (1, 1, 66 + 500));
        // The other flow's segment was read but not joined: it goes next,
        // as it came.
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        assert_eq!(d.used_idx(), 5);
        let mut c_out = c;
        c_out[10] = 1; // num_buffers
        assert_eq!(used_bytes(&d, &bufs, 4, 1), c_out);
        assert!(matches!(direct(&n, &src), Direct::Empty));
    }

    #[test]
    fn single_segments_and_devices_without_coalescing_are_not_joined() {
        let offloads = offload::MRG_RXBUF | offload::GUEST_CSUM | offload::GUEST_TSO4;
        for (single, coalesce) in [(true, true), (false, false)] {
            let mut d = MockDriver::new(32);
            let sink = Arc::new(Source {
                frames: Mutex::new(VecDeque::new()),
                host_hdr: HDR_LEN,
                max: 600,
            });
            let o = crate::NetOptions {
                coalesce,
                ..opts(offloads)
            };
            let mut n = Net::new(MAC, sink, d.mem.clone(), &o).unwrap();
            n.activate_queues(BASE_FEATURES | offloads, &[d.queue(), d.queue()]);
            for _ in 0..8 {
                let b = d.alloc(256);
                d.add_chain(&[(b, 256, true)]);
            }
            let first = if single {
                tcp_frame(1000, 100, 0, 1) // a request: never waits for more
            } else {
                tcp_frame(1000, 200, 100, 1)
            };
            let src = Source {
                frames: Mutex::new(VecDeque::from([first, tcp_frame(1200, 100, 100, 1)])),
                host_hdr: HDR_LEN,
                max: 600,
            };
            assert!(matches!(direct(&n, &src), Direct::Delivered));
            assert_eq!(src.frames.lock().unwrap().len(), 1, "the second not read");
            assert!(matches!(direct(&n, &src), Direct::Delivered));
            assert_eq!((n.stats().rx_frames, n.stats().rx_coalesced), (2, 0));
        }
    }

    #[test]
    fn direct_reads_land_in_the_drivers_buffers() {
        let mut d = MockDriver::new(16);
        let features = BASE_FEATURES | offload::MRG_RXBUF | offload::GUEST_CSUM;
        let (n, _) = live(&d, offload::MRG_RXBUF | offload::GUEST_CSUM, features);
        let mut hdr = vec![1u8, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0xee, 0xee];
        let frame: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        hdr.extend_from_slice(&frame);
        let src = Source {
            frames: Mutex::new(VecDeque::from([hdr, vec![0u8; 401]])),
            host_hdr: HDR_LEN,
            max: 289,
        };
        let bufs: Vec<u64> = (0..3).map(|_| d.alloc(100)).collect();
        let heads: Vec<u16> = bufs
            .iter()
            .map(|&a| d.add_chain(&[(a, 100, true)]))
            .collect();
        // 300 bytes of buffers are fewer than a largest frame (12 + 289).
        assert!(matches!(direct(&n, &src), Direct::Short));
        let more = d.alloc(100);
        d.add_chain(&[(more, 100, true)]);
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        assert_eq!(d.used_idx(), 3);
        assert_eq!(d.used_elem(0), (u32::from(heads[0]), 100));
        assert_eq!(d.used_elem(2), (u32::from(heads[2]), 62));
        let mut all = vec![0u8; 300];
        for (k, &a) in bufs.iter().enumerate() {
            read_bytes(&*d.mem, a, &mut all[k * 100..k * 100 + 100]).unwrap();
        }
        // The backend's header, with num_buffers set; the frame after it.
        assert_eq!(all[..HDR_LEN], [1, 0, 0, 0, 0, 0, 34, 0, 6, 0, 3, 0]);
        assert_eq!(all[HDR_LEN..HDR_LEN + 250], frame[..]);
        assert_eq!(n.stats().rx_frames, 1);
        // The next frame is too big for every buffer there is: dropped.
        for _ in 0..3 {
            let a = d.alloc(100);
            d.add_chain(&[(a, 100, true)]);
        }
        assert!(matches!(direct(&n, &src), Direct::Dropped));
        assert_eq!(n.stats().rx_dropped, 1);
        // Its first buffer went back empty; the rest wait for the next.
        assert_eq!(d.used_elem(3).1, 0);
        let a = d.alloc(100);
        d.add_chain(&[(a, 100, true)]);
        assert!(matches!(direct(&n, &src), Direct::Empty));
    }

    #[test]
    fn direct_reads_without_a_host_header_get_ours() {
        let mut d = MockDriver::new(8);
        let (n, _) = live(&d, 0, BASE_FEATURES);
        let src = Source {
            frames: Mutex::new(VecDeque::from([vec![7u8; 60]])),
            host_hdr: 0,
            max: 289,
        };
        let a = d.alloc(128);
        let head = d.add_chain(&[(a, 128, true)]);
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        assert_eq!(d.used_elem(0), (u32::from(head), 72));
        let mut got = [0u8; 72];
        read_bytes(&*d.mem, a, &mut got).unwrap();
        assert_eq!(got[..HDR_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(got[HDR_LEN..], [7u8; 60]);
    }

    #[test]
    fn direct_reads_leave_room_for_num_buffers_after_a_10_byte_header() {
        let mut d = MockDriver::new(8);
        let (n, _) = live(&d, 0, BASE_FEATURES);
        let mut pkt = vec![0u8; 10];
        pkt.extend_from_slice(&[9u8; 40]);
        let src = Source {
            frames: Mutex::new(VecDeque::from([pkt])),
            host_hdr: 10,
            max: 289,
        };
        // The header's end and the frame's start split across buffers.
        let (a, b) = (d.alloc(11), d.alloc(64));
        d.add_chain(&[(a, 11, true), (b, 64, true)]);
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        assert_eq!(d.used_elem(0).1, 52);
        let mut got = [0u8; 11];
        read_bytes(&*d.mem, a, &mut got).unwrap();
        assert_eq!(got, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let mut rest = [0u8; 41];
        read_bytes(&*d.mem, b, &mut rest).unwrap();
        assert_eq!(rest[0], 0, "num_buffers' high byte");
        assert_eq!(rest[1..], [9u8; 40]);
    }

    #[test]
    fn a_frame_too_big_for_the_buffer_is_dropped_and_the_buffer_returned() {
        let mut d = MockDriver::new(8);
        let (n, _) = live(&d, 0, BASE_FEATURES);
        let a = d.alloc(32);
        let head = d.add_chain(&[(a, 32, true)]);
        assert_eq!(deliver(&n, &[7u8; 21]), Delivery::Dropped);
        assert_eq!(d.used_elem(0), (u32::from(head), 0));
        assert_eq!((n.stats().rx_dropped, n.stats().rx_frames), (1, 0));
    }

    #[test]
    fn a_stopped_or_reset_device_touches_no_queue() {
        let mut d = MockDriver::new(8);
        let (mut n, sink) = live(&d, 0, BASE_FEATURES);
        let a = d.alloc(64);
        d.add_chain(&[(a, 64, true)]);
        n.reset();
        assert_eq!(deliver(&n, b"late"), Delivery::NoBuffer);
        let (mut n, _) = live(&d, 0, BASE_FEATURES);
        n.stop();
        assert!(n.stopped());
        assert_eq!(deliver(&n, b"late"), Delivery::NoBuffer);
        let mut q = d.queue();
        assert!(!n.process_queue(TX_QUEUE, &mut q, &*d.mem).unwrap());
        assert_eq!(d.used_idx(), 0);
        assert!(sink.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn transmit_sends_each_chain_from_the_drivers_buffers() {
        let mut d = MockDriver::new(8);
        let (mut n, sink) = live(&d, 0, BASE_FEATURES);
        let mut q = d.queue();
        let mem = d.mem.clone();
        // Header alone, then the frame in a second buffer (as Linux does
        // with scatter-gather), and one chain in a single buffer.
        let (h, f) = (d.alloc(12), d.alloc(20));
        write_bytes(&*mem, h, &[0u8; 12]).unwrap();
        write_bytes(&*mem, f, &[5u8; 20]).unwrap();
        let c1 = d.add_chain(&[(h, 12, false), (f, 20, false)]);
        let one = d.alloc(12 + 3);
        write_bytes(&*mem, one, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
        let c2 = d.add_chain(&[(one, 15, false)]);
        // Only a header: nothing to send, but the chain is returned.
        let c3 = d.add_chain(&[(h, 12, false)]);
        assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        let sent: Vec<Vec<u8>> = sink
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect();
        assert_eq!(sent, vec![vec![5u8; 20], vec![1, 2, 3]]);
        assert_eq!(d.used_idx(), 3);
        assert_eq!(d.used_elem(0), (u32::from(c1), 0));
        assert_eq!(d.used_elem(1), (u32::from(c2), 0));
        assert_eq!(d.used_elem(2), (u32::from(c3), 0));
        let st = n.stats();
        assert_eq!((st.tx_frames, st.tx_bytes, st.tx_errors), (2, 23, 1));
    }

    #[test]
    fn bulk_traffic_hands_sending_to_the_transmit_thread_and_a_stop_takes_it_back() {
        let mut d = MockDriver::new(16);
        let (mut n, sink) = live(&d, 0, BASE_FEATURES);
        let mut q = d.queue();
        let mem = d.mem.clone();
        let big = d.alloc(12 + 40_000);
        let frame = |d: &mut MockDriver| d.add_chain(&[(big, 12 + 40_000, false)]);
        let active = |n: &Net| n.shared.tx.active.load(Ordering::SeqCst);
        // A first notify sends at once: nothing to compare it with yet.
        frame(&mut d);
        assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        assert!(!active(&n));
        // A second one right after it, 40 KB later: bulk. It still sends
        // its own chain, then hands over (and wakes the thread).
        frame(&mut d);
        assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        assert!(active(&n));
        assert_eq!(poll_readable([n.shared.tx.wake.fd()], 0).unwrap(), [true]);
        assert_eq!(sink.sent.lock().unwrap().len(), 2);
        // Now a notify only leaves the chain for the thread.
        let waiting = frame(&mut d);
        assert!(!n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        assert!(n.shared.tx.pending.load(Ordering::SeqCst));
        assert_eq!((sink.sent.lock().unwrap().len(), d.used_idx()), (2, 2));
        // Before a stop, halt takes sending back and sends what waits.
        assert!(n.flush_transmit(&mut q, &*mem).unwrap());
        assert!(!active(&n));
        assert_eq!(sink.sent.lock().unwrap().len(), 3);
        assert_eq!(d.used_elem(2), (u32::from(waiting), 0));
        assert_eq!(n.stats().tx_threaded, 0, "the thread itself sent none");
    }

    #[test]
    fn requests_and_pings_are_never_handed_over() {
        let mut d = MockDriver::new(16);
        let (mut n, _) = live(&d, 0, BASE_FEATURES);
        let mut q = d.queue();
        let mem = d.mem.clone();
        let small = d.alloc(12 + 100);
        for _ in 0..10 {
            d.add_chain(&[(small, 12 + 100, false)]);
            assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        }
        assert!(!n.shared.tx.active.load(Ordering::SeqCst));
        // Without busy polling there is no transmit thread at all.
        let o = crate::NetOptions {
            busy_poll: std::time::Duration::ZERO,
            ..opts(0)
        };
        let (mut n, _) = net_with(&d, &o);
        n.activate_queues(BASE_FEATURES, &[d.queue(), d.queue()]);
        let mut q = d.queue();
        let big = d.alloc(12 + 40_000);
        for _ in 0..3 {
            d.add_chain(&[(big, 12 + 40_000, false)]);
            n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap();
        }
        assert!(!n.shared.tx.active.load(Ordering::SeqCst));
    }

    #[test]
    fn transmit_passes_the_header_to_a_backend_that_takes_it() {
        let mut d = MockDriver::new(8);
        let features = BASE_FEATURES | offload::CSUM | offload::HOST_TSO4;
        let (mut n, sink) = live(&d, offload::CSUM | offload::HOST_TSO4, features);
        let mut q = d.queue();
        let mem = d.mem.clone();
        let hdr = [1u8, 1, 54, 0, 0xb4, 5, 34, 0, 16, 0, 0, 0];
        // The header split over two buffers, the frame in the second.
        let (a, b) = (d.alloc(5), d.alloc(7 + 100));
        write_bytes(&*mem, a, &hdr[..5]).unwrap();
        write_bytes(&*mem, b, &hdr[5..]).unwrap();
        write_bytes(&*mem, b + 7, &[9u8; 100]).unwrap();
        d.add_chain(&[(a, 5, false), (b, 107, false)]);
        assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        let sent = sink.sent.lock().unwrap();
        assert_eq!(sent[0].0, hdr);
        assert_eq!(sent[0].1, vec![9u8; 100]);
    }

    #[test]
    fn a_receive_notify_wakes_a_receive_thread_waiting_for_buffers() {
        let d = MockDriver::new(8);
        let (mut n, _) = net(&d, 0);
        let mut q = d.queue();
        let wake = n.shared().clone();
        let fd = wake.wake.fd();
        assert_eq!(poll_readable([fd], 0).unwrap(), [false]);
        // Not while the thread has buffers.
        assert!(!n.process_queue(RX_QUEUE, &mut q, &*d.mem).unwrap());
        assert_eq!(poll_readable([fd], 0).unwrap(), [false]);
        wake.waiting.store(true, Ordering::SeqCst);
        assert!(!n.process_queue(RX_QUEUE, &mut q, &*d.mem).unwrap());
        assert_eq!(poll_readable([fd], 0).unwrap(), [true]);
        wake.wake.clear();
        assert_eq!(poll_readable([fd], 0).unwrap(), [false]);
    }
}
