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
//!   ([`MmioTransport::signal_used`](crate::MmioTransport::signal_used)).
//!   A notify of queue 0 only wakes that thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::spec;

use super::backend::{iov, Backend, Wake};
use super::offload::{self, HDR_LEN};
use super::rx_queue::RxQueue;
use super::trace;
use crate::memory::{read_bytes, GuestMemory};
use crate::mmio::VirtioDevice;
use crate::queue::{DescriptorChain, Queue};
use crate::QueueError;

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
    /// Whether the device has a transmit thread ([`super::tx::run`] is to
    /// be started for it).
    pub fn transmit_thread(&self) -> bool {
        self.tx.enabled
    }

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
        let _ = trace::stamp(trace::Stage::TxStart);
        let sent = gather(mem, chain, &mut hdr, iovs).and_then(|len| {
            if len == 0 || len > max {
                return None;
            }
            if !offload::has(features, offload::CSUM) {
                hdr[0] = 0;
            }
            iovs[0] = iov(&hdr);
            self.backend.send(iovs).ok()?;
            let _ = trace::stamp(trace::Stage::TxSent);
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
    /// Where the driver is: the features it accepted live in
    /// [`State::Active`].
    state: State,
    tx_iovs: IoScratch,
    /// The chain being sent: its buffer is reused, so the transmit queue
    /// is popped without allocating.
    tx_chain: DescriptorChain,
    /// Bytes received and sent at the last transmit notify, and when: the
    /// notify path hands transmission to the thread while traffic is bulk.
    tx_mark: (u64, Option<std::time::Instant>),
}

/// Where the driver is with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before DRIVER_OK, or after a reset: nothing negotiated.
    Inactive,
    /// After DRIVER_OK with these features.
    Active { features: u64 },
    /// Stopped for good ([`Net::stop`]): neither queue is touched again.
    Stopped,
}

/// Scratch space for the iovecs of one transmitted frame. Its vector is
/// reached only through [`IoScratch::with`], which empties it when the
/// frame is sent, so between frames it holds no pointer (only capacity).
struct IoScratch(Vec<libc::iovec>);

impl IoScratch {
    fn new() -> Self {
        IoScratch(Vec::with_capacity(usize::from(QUEUE_SIZE) + 1))
    }

    /// Lends the (empty) vector to `f`, and empties it again after, also
    /// when `f` panics.
    fn with<R>(&mut self, f: impl FnOnce(&mut Vec<libc::iovec>) -> R) -> R {
        /// Empties the vector when dropped.
        struct Clear<'a>(&'a mut Vec<libc::iovec>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.clear();
            }
        }
        let lent = Clear(&mut self.0);
        f(&mut *lent.0)
    }
}

// SAFETY: the iovecs point into the driver's buffers only during one
// `IoScratch::with` call, on the thread making it, and the vector is empty
// again when it returns or unwinds. So moving an `IoScratch` to another
// thread moves no pointer, only an empty buffer's capacity.
unsafe impl Send for IoScratch {}

impl Net {
    /// A device with address `mac` over `backend`, reaching the driver's
    /// buffers through `mem`, offering the `offload` bits the backend can
    /// honour (`opts.offload`), joining received TCP segments when
    /// `opts.coalesce` (see [`super::coalesce`]), with a transmit thread when
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
        trace::init_from_env();
        Ok(Net {
            mac,
            shared: Arc::new(Shared {
                backend,
                wake: Wake::new()?,
                mem,
                rx: Mutex::new(RxQueue::new(coalesce)),
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
            state: State::Inactive,
            tx_iovs: IoScratch::new(),
            tx_chain: DescriptorChain::default(),
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
        match self.state {
            State::Active { features } => features,
            State::Inactive | State::Stopped => 0,
        }
    }

    /// Stops the device for good, before the kernel's memory is freed:
    /// once this returns neither queue is touched again, and the receive
    /// thread is woken to see it and end.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
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
        let features = self.negotiated();
        let chain = &mut self.tx_chain;
        let mut used = false;
        while queue.pop_into(mem, chain)? {
            let shared = &self.shared;
            self.tx_iovs.with(|iovs| shared.send(features, chain, iovs));
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
    pub fn flush_transmit(
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

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        spec::VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        1u64 << spec::VIRTIO_F_VERSION_1
            | 1 << spec::VIRTIO_NET_F_MAC
            | 1 << spec::VIRTIO_RING_F_EVENT_IDX
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
        if self.state != State::Stopped {
            self.state = State::Active { features };
        }
    }

    fn activate_queues(&mut self, features: u64, queues: &[Queue]) {
        self.activate(features);
        self.idle_transmit();
        if self.stopped() {
            return;
        }
        if let Err(e) = self.shared.backend.negotiated(features) {
            crate::diag::write_stderr(
                format!("lkl: virtio-net: the backend refused offloads {features:#x}: {e}\n")
                    .as_bytes(),
            );
        }
        self.shared
            .rx()
            .attach(queues.get(RX_QUEUE).cloned(), features);
        // The receive thread may hold a frame for the new buffers.
        self.shared.wake.signal();
    }

    fn reset(&mut self) {
        if self.state != State::Stopped {
            self.state = State::Inactive;
        }
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
mod tests;
