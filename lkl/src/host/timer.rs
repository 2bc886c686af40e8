//! One-shot timers, one host thread each.
//!
//! `timer_alloc` starts a thread that sleeps on a condition variable until
//! the armed deadline (an absolute `CLOCK_MONOTONIC` time), then calls
//! `fn(arg)` with no lock held. `timer_set_oneshot` replaces the deadline
//! (re-arming before expiry means only the new deadline fires; arming while
//! the callback runs makes it fire again later). `timer_free` disarms,
//! waits for a running callback to return, and joins the thread; freeing a
//! timer from inside its own callback is allowed (the thread then ends by
//! itself right after the callback, and counts as live until it has).
//!
//! The timer threads run with a 1 ns timer slack so wakeups are as close to
//! the deadline as the host allows, and with asynchronous signals blocked.
//! [`live_timer_threads`] counts the threads not yet joined.

use std::ffi::{c_int, c_ulong, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::thread::with_signals_blocked;
use super::time::monotonic_ns;

type TimerFn = unsafe extern "C" fn(*mut c_void);

/// Timer threads started and not yet joined (or ended, if self-freed).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many timer threads have not been joined yet.
pub fn live_timer_threads() -> usize {
    LIVE.load(Ordering::SeqCst)
}

#[derive(Debug, Default)]
struct State {
    /// When to fire, in [`monotonic_ns`]; `None` when disarmed.
    deadline: Option<u64>,
    /// Set by `timer_free`: the thread ends as soon as it sees it.
    shutdown: bool,
    /// Set by a `timer_free` called from the callback: nobody joins the
    /// thread, which then leaves [`LIVE`] by itself as it ends.
    self_freed: bool,
}

/// What the timer thread shares with the handle.
struct Shared {
    f: TimerFn,
    arg: *mut c_void,
    state: Mutex<State>,
    wake: Condvar,
}

// SAFETY: `arg` is only passed back to `f`, which the kernel promises may
// run on another thread; the rest is Sync.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handle behind the `void *` the kernel holds.
struct Timer {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

fn run(shared: Arc<Shared>) {
    // Wake as close to the deadline as the host allows (default slack is
    // 50 us).
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as c_ulong, 0, 0, 0) };
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            if state.self_freed {
                LIVE.fetch_sub(1, Ordering::SeqCst);
            }
            break;
        }
        match state.deadline {
            None => state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let now = monotonic_ns();
                if now < deadline {
                    let wait = Duration::from_nanos(deadline - now);
                    state = shared
                        .wake
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
                state.deadline = None;
                drop(state);
                // SAFETY: the kernel's callback with its own argument.
                unsafe { (shared.f)(shared.arg) };
                state = shared.lock();
            }
        }
    }
}

/// `timer_alloc`: a disarmed one-shot timer calling `f(arg)` on its own
/// host thread; NULL on failure.
///
/// # Safety
/// `f(arg)` must be safe to call on another thread. Free the timer with
/// [`timer_free`].
pub unsafe extern "C" fn timer_alloc(f: Option<TimerFn>, arg: *mut c_void) -> *mut c_void {
    let Some(f) = f else {
        return ptr::null_mut();
    };
    let shared = Arc::new(Shared {
        f,
        arg,
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    });
    let theirs = shared.clone();
    let spawned = with_signals_blocked(|| {
        thread::Builder::new()
            .name("lkl-timer".into())
            .spawn(move || run(theirs))
    });
    match spawned {
        Ok(thread) => {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Box::into_raw(Box::new(Timer { shared, thread })).cast()
        }
        Err(_) => ptr::null_mut(),
    }
}

/// `timer_set_oneshot`: arms the timer to fire once, `delta` ns from now,
/// replacing any earlier deadline. Returns 0.
///
/// # Safety
/// `timer` must be a live timer from [`timer_alloc`].
pub unsafe extern "C" fn timer_set_oneshot(timer: *mut c_void, delta: c_ulong) -> c_int {
    // SAFETY: the caller passes a live Timer; only shared access is used.
    let timer = unsafe { &*timer.cast::<Timer>() };
    let deadline = monotonic_ns().saturating_add(delta);
    timer.shared.lock().deadline = Some(deadline);
    timer.shared.wake.notify_one();
    0
}

/// `timer_free`: disarms the timer, waits for a running callback to finish,
/// joins the timer's thread and frees it. From inside the timer's own
/// callback it only disarms and lets the thread end by itself.
///
/// # Safety
/// `timer` must come from [`timer_alloc`] and be freed once; nobody may use
/// it afterwards.
pub unsafe extern "C" fn timer_free(timer: *mut c_void) {
    if timer.is_null() {
        return;
    }
    // SAFETY: per the contract the Timer is ours now.
    let timer = unsafe { Box::from_raw(timer.cast::<Timer>()) };
    let own_thread = timer.thread.thread().id() == thread::current().id();
    {
        let mut state = timer.shared.lock();
        state.shutdown = true;
        state.self_freed = own_thread;
        state.deadline = None;
    }
    timer.shared.wake.notify_one();
    if own_thread {
        // Freed from its own callback: joining would deadlock. The thread
        // sees `shutdown` when the callback returns and ends (counting
        // itself out of LIVE then); dropping the handle detaches it, and
        // the Arc keeps Shared alive until then.
        return;
    }
    // `run` never panics (the callback is extern "C": a panic aborts).
    let _ = timer.thread.join();
    LIVE.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::sem::Semaphore;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// What a test callback records.
    struct Probe {
        fired: AtomicUsize,
        at: AtomicU64,
        sem: Semaphore,
    }

    impl Probe {
        fn new() -> Probe {
            Probe {
                fired: AtomicUsize::new(0),
                at: AtomicU64::new(0),
                sem: Semaphore::new(0),
            }
        }
        fn arg(&self) -> *mut c_void {
            ptr::addr_of!(*self) as *mut c_void
        }
    }

    unsafe extern "C" fn probe(arg: *mut c_void) {
        // SAFETY: the tests pass a Probe that outlives the timer.
        let p = unsafe { &*arg.cast::<Probe>() };
        p.at.store(monotonic_ns(), Ordering::SeqCst);
        p.fired.fetch_add(1, Ordering::SeqCst);
        p.sem.up();
    }

    fn serial() -> MutexGuard<'static, ()> {
        crate::host::test_serial()
    }

    #[test]
    fn fires_once_within_tolerance() {
        let _g = serial();
        let p = Probe::new();
        // SAFETY: `p` outlives the timer, which is freed below.
        let t = unsafe { timer_alloc(Some(probe), p.arg()) };
        assert!(!t.is_null());
        // Never early; late by at most 10% (and 1 ms of wakeup latency) in
        // the best of a few tries, so a loaded machine's scheduling noise
        // does not fail the test but a timer that is always late does.
        let mut fired = 0;
        for ms in [1u64, 5, 20, 100] {
            let want = ms * 1_000_000;
            let slack = (want / 10).max(1_000_000);
            let mut best = u64::MAX;
            for _ in 0..5 {
                let start = monotonic_ns();
                assert_eq!(
                    // SAFETY: a live timer.
                    unsafe { timer_set_oneshot(t, want as c_ulong) },
                    0
                );
                p.sem.down();
                fired += 1;
                let took = p.at.load(Ordering::SeqCst) - start;
                assert!(took >= want, "{ms} ms timer fired early, after {took} ns");
                best = best.min(took);
                if best <= want + slack {
                    break;
                }
            }
            assert!(
                best <= want + slack,
                "{ms} ms timer fired late every time, at best after {best} ns"
            );
        }
        // One-shot: nothing more fires.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(p.fired.load(Ordering::SeqCst), fired);
        // SAFETY: a live timer, freed once.
        unsafe { timer_free(t) };
    }

    #[test]
    fn rearming_replaces_the_deadline() {
        let _g = serial();
        let p = Probe::new();
        // SAFETY: `p` outlives the timer, which is freed below.
        let t = unsafe { timer_alloc(Some(probe), p.arg()) };
        let start = monotonic_ns();
        // SAFETY: a live timer.
        unsafe {
            timer_set_oneshot(t, 1_000_000_000);
            timer_set_oneshot(t, 20_000_000);
        }
        p.sem.down();
        let took = p.at.load(Ordering::SeqCst) - start;
        assert!((20_000_000..500_000_000).contains(&took), "{took}");
        // And pushing it later works too.
        let start = monotonic_ns();
        // SAFETY: a live timer.
        unsafe {
            timer_set_oneshot(t, 5_000_000);
            timer_set_oneshot(t, 40_000_000);
        }
        p.sem.down();
        let took = p.at.load(Ordering::SeqCst) - start;
        assert!(took >= 40_000_000, "{took}");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(p.fired.load(Ordering::SeqCst), 2);
        // SAFETY: a live timer, freed once.
        unsafe { timer_free(t) };
    }

    #[test]
    fn free_disarms_and_joins() {
        let _g = serial();
        let before = live_timer_threads();
        let p = Probe::new();
        // SAFETY: `p` outlives the timer, which is freed below.
        let t = unsafe { timer_alloc(Some(probe), p.arg()) };
        assert_eq!(live_timer_threads(), before + 1);
        // SAFETY: a live timer, armed then freed once.
        unsafe {
            timer_set_oneshot(t, 20_000_000);
            timer_free(t);
        }
        assert_eq!(live_timer_threads(), before);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(p.fired.load(Ordering::SeqCst), 0);
    }

    struct Slow {
        entered: Semaphore,
        done: AtomicUsize,
    }

    unsafe extern "C" fn slow(arg: *mut c_void) {
        // SAFETY: the test passes a Slow that outlives the timer.
        let s = unsafe { &*arg.cast::<Slow>() };
        s.entered.up();
        std::thread::sleep(Duration::from_millis(50));
        s.done.store(1, Ordering::SeqCst);
    }

    #[test]
    fn free_waits_for_a_running_callback() {
        let _g = serial();
        let s = Slow {
            entered: Semaphore::new(0),
            done: AtomicUsize::new(0),
        };
        // SAFETY: `s` outlives the timer, which is freed below.
        let t = unsafe { timer_alloc(Some(slow), ptr::addr_of!(s) as *mut c_void) };
        // SAFETY: a live timer.
        unsafe { timer_set_oneshot(t, 0) };
        s.entered.down();
        let t0 = Instant::now();
        // SAFETY: a live timer, freed once.
        unsafe { timer_free(t) };
        assert_eq!(
            s.done.load(Ordering::SeqCst),
            1,
            "free returned mid-callback"
        );
        assert!(t0.elapsed() >= Duration::from_millis(20));
    }

    static SELF_FREE: AtomicUsize = AtomicUsize::new(0);

    static SELF_FREED: Semaphore = Semaphore::new(0);

    unsafe extern "C" fn free_self(_: *mut c_void) {
        let t = SELF_FREE.load(Ordering::SeqCst) as *mut c_void;
        // SAFETY: the timer is live and freed only here.
        unsafe { timer_free(t) };
        SELF_FREED.up();
    }

    #[test]
    fn free_from_own_callback() {
        let _g = serial();
        let before = live_timer_threads();
        // SAFETY: the timer frees itself.
        let t = unsafe { timer_alloc(Some(free_self), ptr::null_mut()) };
        SELF_FREE.store(t as usize, Ordering::SeqCst);
        // SAFETY: a live timer.
        unsafe { timer_set_oneshot(t, 1_000_000) };
        SELF_FREED.down();
        // The thread counts itself out as it ends, just after the callback.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while live_timer_threads() != before {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
    }
}
