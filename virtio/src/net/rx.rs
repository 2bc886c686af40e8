//! The receive thread: one host thread per device, moving frames from the
//! backend into the driver's receive buffers.
//!
//! It sleeps in `poll` on the backend and the device's [`Wake`](super::Wake) (after
//! polling them without sleeping for a while, when frames come in quick
//! succession: [`NetOptions::busy_poll`](super::NetOptions::busy_poll)), then
//! drains: frames are read and delivered one after another under the
//! receive queue's lock (never the transport's), and one interrupt is
//! raised per batch, if the driver asks for it. A frame that finds no
//! buffer is kept, and the thread then waits on the `Wake` alone (a
//! notify of the receive queue, or DRIVER_OK), so frames wait in the host
//! (the tap's queue) while the driver has no buffer. Only then does a
//! notify signal the `Wake` (`Shared::waiting`): the driver's refills
//! cost the kernel's thread no system call while the thread has buffers.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{poll_readable, MAX_FRAME};
use super::device::{count, Net, Shared, QUEUE_SIZE, RX_QUEUE};
use super::offload::HDR_LEN;
use super::rx_queue::{Delivery, Direct};
use super::trace;
use super::BUSY_POLL_GAP;
use crate::mmio::MmioTransport;
use crate::QueueError;

/// How long to wait for buffers before trying again anyway.
const RETRY_MS: i32 = 1000;
/// Bytes sent between two wakes of the receive thread above which it does
/// not poll busily (see `run`): TCP upload over a tap lost about 12% with
/// polling (1.02x-1.08x the host against 1.12x-1.24x), request/response
/// sends one small frame per reply, a download only acknowledgements.
const STREAM_BYTES: u64 = 16 << 10;

/// Frames delivered before the driver is told (so it can refill while
/// a long burst goes on).
const BATCH: usize = 64;

/// A frame read from the backend and not yet delivered.
struct Pending {
    hdr: [u8; HDR_LEN],
    len: usize,
}

/// What a drain pass ended on.
enum Drained {
    /// The backend has nothing more.
    Empty,
    /// A frame waits for buffers (or for the driver).
    Blocked,
    /// The batch is full: tell the driver, then go on.
    Batch,
    /// The driver's queue is malformed.
    Failed(QueueError),
}

/// Runs the receive loop for `transport` until the device is stopped (the
/// kernel halts).
pub fn run(transport: Arc<MmioTransport<Net>>, shared: Arc<Shared>, busy_poll: Duration) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(4 * usize::from(QUEUE_SIZE));
    let mut pending: Option<Pending> = None;
    let mut reported = false;
    let mut blocked = false;
    // Whether frames come in quick succession (see NetOptions::busy_poll).
    let mut brisk = false;
    // Bytes sent when the thread last woke: a program streaming out (more
    // than STREAM_BYTES between two wakes) gets only acknowledgements back,
    // and polling for them takes a CPU it needs.
    let mut tx_mark = shared.stats.tx_bytes.load(Ordering::Relaxed);
    loop {
        if shared.stopped() {
            return;
        }
        if blocked {
            // Only a notify (or DRIVER_OK) can bring buffers.
            if let Ok([true]) = poll_readable([shared.wake.fd()], RETRY_MS) {
                shared.wake.clear();
            }
            shared.waiting.store(false, Ordering::SeqCst);
        } else {
            let fds = [shared.backend.poll_fd(), shared.wake.fd()];
            let tx_now = shared.stats.tx_bytes.load(Ordering::Relaxed);
            let streaming = tx_now.wrapping_sub(tx_mark) > STREAM_BYTES;
            let polled = brisk && !streaming && poll_busily(fds, busy_poll);
            let slept = Instant::now();
            let ready = if polled {
                Ok([true, true])
            } else {
                poll_readable(fds, -1)
            };
            brisk = !busy_poll.is_zero() && (polled || slept.elapsed() < BUSY_POLL_GAP);
            tx_mark = shared.stats.tx_bytes.load(Ordering::Relaxed);
            match ready {
                Ok([_, woken]) => {
                    if woken {
                        shared.wake.clear();
                    }
                }
                Err(e) => {
                    report(&mut reported, &format!("poll: {e}"));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            }
        }
        loop {
            if shared.stopped() {
                return;
            }
            let (end, raise) = {
                let mut rx = shared.rx();
                let mut used = 0;
                let mut scratch = Scratch {
                    buf: &mut buf,
                    iovs: &mut iovs,
                    pending: &mut pending,
                    reported: &mut reported,
                };
                let end = drain(&shared, &mut rx, &mut scratch, &mut used);
                let raise = used > 0 && rx.needs_notification(&*shared.mem).unwrap_or(true);
                (end, raise)
            };
            // Raised without any lock held: the handler may run at once.
            if raise {
                count(&shared.stats.rx_interrupts, 1);
                trace::irq_call(|| shared.unless_stopped(|| transport.signal_used()));
            }
            if matches!(end, Drained::Batch | Drained::Empty)
                && shared.waiting.load(Ordering::Relaxed)
            {
                // The frame that waited went through on the second look.
                shared.waiting.store(false, Ordering::SeqCst);
            }
            match end {
                Drained::Batch => continue,
                Drained::Empty => blocked = false,
                Drained::Blocked if !shared.waiting.swap(true, Ordering::SeqCst) => {
                    // From now on a notify of the receive queue wakes us;
                    // look once more for buffers added before it could.
                    continue;
                }
                Drained::Blocked => blocked = true,
                Drained::Failed(e) => {
                    shared.rx().clear();
                    shared.unless_stopped(|| transport.queue_failed(RX_QUEUE, &e));
                    // The driver resets the device: wait for it.
                    blocked = true;
                }
            }
            break;
        }
    }
}

/// Looks at `fds` without sleeping for up to `budget`; returns whether one
/// became readable.
fn poll_busily(fds: [std::os::fd::RawFd; 2], budget: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < budget {
        if let Ok([true, _] | [_, true]) = poll_readable(fds, 0) {
            return true;
        }
        // Let another thread that is ready on this CPU run first.
        std::thread::yield_now();
    }
    false
}

/// The receive thread's own state, lent to [`drain`].
struct Scratch<'a> {
    /// A frame read with [`Backend::recv`](super::Backend::recv).
    buf: &'a mut [u8],
    /// iovecs over the driver's buffers, for direct reads.
    iovs: &'a mut Vec<libc::iovec>,
    /// A frame in `buf` that found no buffer yet.
    pending: &'a mut Option<Pending>,
    /// Whether an error was reported already.
    reported: &'a mut bool,
}

/// Reads and delivers frames until the backend is empty, a frame finds no
/// buffer, or a batch is done; counts delivered frames in `used`. Frames
/// are read straight into the driver's buffers when the backend can and
/// the buffers are there, else through the thread's buffer.
fn drain(
    shared: &Shared,
    rx: &mut super::rx_queue::RxQueue,
    scratch: &mut Scratch<'_>,
    used: &mut usize,
) -> Drained {
    let Scratch {
        buf,
        iovs,
        pending,
        reported,
    } = scratch;
    if !rx.live() {
        // No driver: frames stay in the host until there is one, and the
        // thread waits for DRIVER_OK rather than spin on the backend.
        return Drained::Blocked;
    }
    let backend = &shared.backend;
    loop {
        if *used >= BATCH {
            return Drained::Batch;
        }
        let p = match pending.take() {
            Some(p) => p,
            None => {
                match rx.receive_direct(&*shared.mem, &**backend, iovs, &shared.stats) {
                    Ok(Direct::Delivered | Direct::Dropped) => {
                        let _ = trace::stamp(trace::Stage::RxRead);
                        *used += 1;
                        continue;
                    }
                    Ok(Direct::Empty) => return Drained::Empty,
                    Ok(Direct::Failed(e)) => {
                        count(&shared.stats.rx_dropped, 1);
                        report(reported, &format!("read: {e}"));
                        continue;
                    }
                    // Too few buffers to read into: read into ours.
                    Ok(Direct::Short) => {}
                    Err(e) => return Drained::Failed(e),
                }
                let mut hdr = [0u8; HDR_LEN];
                match backend.recv(&mut hdr, buf) {
                    Ok(len) => Pending { hdr, len },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // This frame is lost (cut short, or the host failed).
                        count(&shared.stats.rx_dropped, 1);
                        report(reported, &format!("read: {e}"));
                        continue;
                    }
                }
            }
        };
        let mut hdr = p.hdr;
        match rx.deliver(&*shared.mem, &mut hdr, &mut buf[..p.len], &shared.stats) {
            Ok(Delivery::Delivered) => {
                let _ = trace::stamp(trace::Stage::RxRead);
                *used += 1;
            }
            Ok(Delivery::Dropped) => *used += 1,
            Ok(Delivery::NoBuffer) => {
                **pending = Some(p);
                return Drained::Blocked;
            }
            Err(e) => return Drained::Failed(e),
        }
    }
}

/// Reports a receive error, the first one only (a broken backend would
/// otherwise fill stderr).
fn report(reported: &mut bool, what: &str) {
    if std::mem::replace(reported, true) {
        return;
    }
    crate::diag::write_stderr(
        format!("lkl: virtio-net receive: {what} (further errors are counted, not shown)\n")
            .as_bytes(),
    );
}
