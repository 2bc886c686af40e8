//! The transmit thread: one host thread per device that sends frames to
//! the backend while traffic is bulk.
//!
//! Frames are normally sent by the kernel's thread that notifies the
//! transmit queue, at once. A `write` to a tap then also runs the host's
//! own work for the frame on that thread, which holds LKL's only CPU: for
//! each acknowledgement of a download, the host's TCP sender takes it in,
//! frees what it acknowledged and sends more (about 30 µs on the test VM,
//! half of LKL's CPU in a profile). When the notify path sees bulk traffic
//! ([`Net`]'s `bulk`), it makes the thread active (`TxState::active`): from then
//! on a notify only sets `pending`, and the thread takes the chains under
//! the transport's lock, sends them without it, and returns them under it
//! (raising the interrupt the driver asks for). After `linger` without a
//! notify it stands down, under the lock, and sleeps; notifies are served
//! at once again. Frames keep their order: `active` changes only under the
//! transport's lock, and the thread stands down only with nothing in its
//! hands.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::poll_readable;
use super::device::{Net, Shared, QUEUE_SIZE, TX_QUEUE};
use crate::mmio::MmioTransport;
use crate::queue::DescriptorChain;

/// How long the sleeping thread waits before it looks at `stopped` again.
const RETRY_MS: i32 = 1000;

/// Runs the transmit loop for `transport` until the device is stopped.
pub fn run(transport: Arc<MmioTransport<Net>>, shared: Arc<Shared>, linger: Duration) {
    let tx = &shared.tx;
    let mut chains = Vec::with_capacity(usize::from(QUEUE_SIZE));
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(usize::from(QUEUE_SIZE) + 1);
    loop {
        // Asleep until a notify hands transmission over (or the stop).
        while !tx.active.load(Ordering::SeqCst) {
            if shared.stopped() {
                return;
            }
            if let Ok([true]) = poll_readable([tx.wake.fd()], RETRY_MS) {
                tx.wake.clear();
            }
        }
        let mut last = Instant::now();
        loop {
            if shared.stopped() {
                return;
            }
            if tx.pending.swap(false, Ordering::SeqCst) {
                while send_batch(&transport, &shared, &mut chains, &mut iovs) {}
                last = Instant::now();
            } else if last.elapsed() >= linger {
                if stand_down(&transport, &shared) {
                    break;
                }
            } else {
                // Let a thread that is ready on this CPU run first.
                std::thread::yield_now();
            }
        }
    }
}

/// Takes the chains the driver made available, sends them, returns them;
/// whether there were any. `chains` is the thread's pool: its chains are
/// popped into in place and kept for the next batch, so nothing is
/// allocated once it holds as many as a batch needs.
fn send_batch(
    transport: &MmioTransport<Net>,
    shared: &Shared,
    chains: &mut Vec<DescriptorChain>,
    iovs: &mut Vec<libc::iovec>,
) -> bool {
    let tx = &shared.tx;
    let (mut features, mut generation, mut taken) = (0, 0, 0);
    transport.run_queue(TX_QUEUE, |dev, q, mem| {
        if dev.stopped() || !tx.active.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut n = 0;
        loop {
            if n == chains.len() {
                chains.push(DescriptorChain::default());
            }
            if !q.pop_into(mem, &mut chains[n])? {
                break;
            }
            n += 1;
        }
        // A malformed queue returned above: nothing is sent, and the
        // transport asks the driver for a reset.
        if n > 0 {
            // Counted under the lock: a stop or reset after this waits
            // for the sends below.
            tx.inflight.fetch_add(1, Ordering::SeqCst);
            features = dev.negotiated();
            generation = dev.generation();
            taken = n;
        }
        Ok(false)
    });
    if taken == 0 {
        return false;
    }
    let chains = &chains[..taken];
    for c in chains {
        shared.send(features, c, iovs);
    }
    super::device::count(&shared.stats.tx_threaded, taken as u64);
    tx.inflight.fetch_sub(1, Ordering::SeqCst);
    // Counted as signalling: the transport may raise the interrupt on
    // this thread, and halt must not start while it does.
    shared.unless_stopped(|| {
        transport.run_queue(TX_QUEUE, |dev, q, mem| {
            // After a stop the memory may be gone; after a reset the ring
            // is another: the chains are not returned then.
            if dev.stopped() || dev.generation() != generation {
                return Ok(false);
            }
            for c in chains {
                q.add_used(mem, c.head, 0)?;
            }
            Ok(true)
        });
    });
    true
}

/// Stops taking notifies, under the transport's lock, unless one came
/// meanwhile; whether it did stop.
fn stand_down(transport: &MmioTransport<Net>, shared: &Shared) -> bool {
    let tx = &shared.tx;
    let mut down = true;
    let live = transport.run_queue(TX_QUEUE, |_, _, _| {
        if tx.pending.load(Ordering::SeqCst) {
            down = false;
        } else {
            tx.active.store(false, Ordering::SeqCst);
        }
        Ok(false)
    });
    if live.is_none() {
        // No notify is served while the queue is not live, and DRIVER_OK
        // clears `active` again before one is.
        tx.active.store(false, Ordering::SeqCst);
    }
    down
}
