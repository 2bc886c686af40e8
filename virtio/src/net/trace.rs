//! Per-stage timestamps of the network path, for finding where a round
//! trip's microseconds go (`lkl-netbench --stages`). Off unless
//! `LKL_NET_TRACE` is set in the environment when the first device is
//! made, or [`enable`] is called: then each [`stamp`] costs one relaxed
//! load of a flag.
//!
//! Each stage keeps the first time it was reached since the last
//! [`reset`] (`CLOCK_MONOTONIC`, ns, comparable across threads and
//! processes), so a program making one exchange at a time resets, sends,
//! waits for the answer and reads the stages of that exchange.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The stages the device sees, in the order of a request/response round
/// trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The transmit path took a chain from the driver (the kernel's
    /// thread, after the notify).
    TxStart = 0,
    /// The frame was written to the backend (`writev` returned: for a
    /// tap, the host's stack has taken it in on this thread).
    TxSent = 1,
    /// The receive thread read a frame into the driver's buffers.
    RxRead = 2,
    /// The receive thread raises the interrupt.
    IrqRaise = 3,
    /// The interrupt call returned (the handler and the receive softirq
    /// ran on the receive thread if the kernel's CPU was free; else they
    /// were left pending for its holder).
    IrqDone = 4,
    /// Inside the interrupt call, the receive thread posted a kernel
    /// semaphore ([`posted`]): the scheduler switched to the task the
    /// receive softirq woke (the program's) and wakes its host thread.
    TaskPost = 5,
}

/// How many stages there are.
pub const STAGES: usize = 6;

thread_local! {
    /// Whether this thread is raising an interrupt ([`irq_call`]).
    static IN_IRQ_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which raises an interrupt, between [`Stage::IrqRaise`] and
/// [`Stage::IrqDone`], with [`posted`] watching for [`Stage::TaskPost`].
pub fn irq_call(f: impl FnOnce()) {
    if !enabled() {
        return f();
    }
    let traced = stamp(Stage::IrqRaise);
    IN_IRQ_CALL.set(true);
    f();
    IN_IRQ_CALL.set(false);
    if traced {
        stamp(Stage::IrqDone);
    }
}

/// Called by the host's semaphore post: stamps [`Stage::TaskPost`] on a
/// thread inside [`irq_call`].
#[inline]
pub fn posted() {
    if enabled() && IN_IRQ_CALL.get() {
        let _ = stamp(Stage::TaskPost);
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static CHECKED: AtomicBool = AtomicBool::new(false);
static STAMPS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];

/// Turns stamping on if `LKL_NET_TRACE` is set (once; called when a
/// device is made).
pub fn init_from_env() {
    if !CHECKED.swap(true, Ordering::Relaxed) && std::env::var_os("LKL_NET_TRACE").is_some() {
        enable();
    }
}

/// Turns stamping on.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether stamping is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `CLOCK_MONOTONIC` in ns.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Records reaching `stage`, unless it was reached since the last
/// [`reset`] or stamping is off; returns whether it recorded.
#[inline]
pub fn stamp(stage: Stage) -> bool {
    enabled()
        && STAMPS[stage as usize]
            .compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Forgets every stage's time.
pub fn reset() {
    for s in &STAMPS {
        s.store(0, Ordering::Relaxed);
    }
}

/// The time each stage was first reached since the last [`reset`] (0:
/// not reached).
pub fn read() -> [u64; STAGES] {
    std::array::from_fn(|i| STAMPS[i].load(Ordering::Relaxed))
}
