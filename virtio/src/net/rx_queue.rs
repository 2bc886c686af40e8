//! The receive queue as the device serves it ([`RxQueue`], under
//! [`Shared::rx`](super::device::Shared::rx)): frames read from the backend
//! into the driver's buffers, straight (a direct read) or by copy, with
//! mergeable buffers and receive coalescing ([`super::coalesce`]).

use std::collections::VecDeque;

use super::backend::Backend;
use super::coalesce;
use super::device::{count, Counters};
use super::offload::{self, HDR_LEN};
use crate::memory::{read_bytes, write_bytes, GuestMemory};
use crate::queue::{Descriptor, DescriptorChain, Queue};
use crate::QueueError;

/// The receive queue as the device serves it, under
/// [`Shared::rx`](super::device::Shared::rx).
#[derive(Debug, Default)]
pub struct RxQueue {
    /// The driver's queue 0, from DRIVER_OK until a reset or stop.
    queue: Option<Queue>,
    /// The features the driver accepted.
    features: u64,
    /// Chains taken from the ring for a frame (mergeable buffers) that
    /// did not fit yet: used first next time.
    held: VecDeque<DescriptorChain>,
    /// Chains returned to the driver, kept so that their buffers are
    /// popped into again ([`Queue::pop_into`]): no allocation per chain.
    spare: Vec<DescriptorChain>,
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

/// What became of a direct read (`RxQueue::receive_direct`).
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
            match hold(queue, mem, &mut self.held, &mut self.spare)? {
                Some(c) => room += writable_len(c),
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
            self.spare.push(chain);
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
            self.spare.push(chain);
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
            self.spare.push(chain);
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
            self.spare.push(chain);
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
            match hold(queue, mem, &mut self.held, &mut self.spare)? {
                Some(c) => room += writable_len(c),
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
            self.spare.push(chain);
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
        crate::diag::write_stderr(
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

    /// An empty receive queue, joining frames when `coalesce`.
    pub(super) fn new(coalesce: bool) -> RxQueue {
        RxQueue {
            coalesce,
            ..RxQueue::default()
        }
    }

    /// Serves `queue` (the driver's queue 0 at DRIVER_OK) with the
    /// features the driver accepted, forgetting the buffers held before.
    pub(super) fn attach(&mut self, queue: Option<Queue>, features: u64) {
        self.clear();
        self.queue = queue;
        self.features = features;
    }

    /// Forgets the queue (reset, stop, or a malformed queue): nothing is
    /// delivered until the next DRIVER_OK.
    pub(super) fn clear(&mut self) {
        self.queue = None;
        self.spare.extend(self.held.drain(..));
        self.ready = None;
    }
}

/// Pops the driver's next chain into a spare one (its buffer reused) and
/// holds it; returns it, or `None` when the driver has none.
fn hold<'a>(
    queue: &mut Queue,
    mem: &dyn GuestMemory,
    held: &'a mut VecDeque<DescriptorChain>,
    spare: &mut Vec<DescriptorChain>,
) -> Result<Option<&'a DescriptorChain>, QueueError> {
    let mut chain = spare.pop().unwrap_or_default();
    if !queue.pop_into(mem, &mut chain)? {
        spare.push(chain);
        return Ok(None);
    }
    held.push_back(chain);
    Ok(held.back())
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
    c.writable().as_slice()
}

fn writable_len(c: &DescriptorChain) -> u64 {
    c.writable().map(|d| u64::from(d.len)).sum()
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
