//! Counting semaphores on futexes.
//!
//! `sem_up`/`sem_down` are on the kernel's context-switch path (every
//! `__switch_to` ups the next task and downs the previous one), so the
//! uncontended cases are a single atomic instruction and no system call:
//! `up` only calls `futex(FUTEX_WAKE)` when a thread is known to sleep, and
//! `down` only sleeps when the count is zero.
//!
//! `down` does not spin before sleeping. In a context switch the previous
//! task downs its own semaphore, which is posted only when the scheduler
//! picks it again, usually much later; measured on the kernel's
//! cross-thread pipe round trip (two host threads, about twenty handoffs
//! per round trip) an adaptive spin made it 30-50% slower on a busy
//! two-core machine, and no faster when run at the highest priority.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use lkl_sys::lkl_sem;

use super::futex;

/// Host wake-ups (`futex(FUTEX_WAKE)` calls) made by [`Semaphore::up`]
/// since the process started: one per handoff of the kernel to a sleeping
/// host thread. Read by the bench through [`handoffs`].
static WAKES: AtomicU64 = AtomicU64::new(0);

/// Host wake-ups made by semaphore posts so far (every kernel semaphore:
/// task switches, the CPU lock, boot and halt). The bench divides the
/// difference over a run by its rounds to count handoffs per round trip.
pub fn handoffs() -> u64 {
    WAKES.load(Ordering::Relaxed)
}

/// A counting semaphore usable from any thread: `up` on one, `down` on
/// another.
#[derive(Debug)]
pub struct Semaphore {
    /// Available units; the futex word.
    count: AtomicU32,
    /// Threads in (or about to enter) `futex_wait` on `count`.
    waiters: AtomicU32,
}

impl Default for Semaphore {
    fn default() -> Self {
        Semaphore::new(0)
    }
}

impl Semaphore {
    /// A semaphore holding `count` units.
    pub const fn new(count: u32) -> Self {
        Semaphore {
            count: AtomicU32::new(count),
            waiters: AtomicU32::new(0),
        }
    }

    /// Takes a unit if one is available, without blocking.
    pub fn try_down(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Takes a unit, sleeping until one is posted.
    pub fn down(&self) {
        loop {
            if self.try_down() {
                return;
            }
            // Announce ourselves before the futex re-reads the count: an
            // `up` that raced in either sees `waiters > 0` and wakes us, or
            // made the count non-zero so FUTEX_WAIT returns at once. Both
            // sides use SeqCst read-modify-writes (full fences on x86).
            self.waiters.fetch_add(1, Ordering::SeqCst);
            futex::wait(&self.count, 0);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Posts a unit, waking one sleeper if there is one.
    pub fn up(&self) {
        lkl_virtio::net::trace::posted();
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            WAKES.fetch_add(1, Ordering::Relaxed);
            futex::wake(&self.count, 1);
        }
    }

    /// The units available now (a snapshot, for tests and diagnostics).
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

/// `sem_alloc`: a semaphore starting at `count` (negative counts as 0).
///
/// # Safety
/// Always safe to call; free the result with [`sem_free`].
pub unsafe extern "C" fn sem_alloc(count: c_int) -> *mut lkl_sem {
    Box::into_raw(Box::new(Semaphore::new(count.max(0) as u32))).cast()
}

/// `sem_free`: destroys a semaphore.
///
/// # Safety
/// `sem` must come from [`sem_alloc`], be freed once, and have no thread
/// inside `sem_up`/`sem_down` on it.
pub unsafe extern "C" fn sem_free(sem: *mut lkl_sem) {
    if !sem.is_null() {
        // SAFETY: per the contract, `sem` is a Box<Semaphore> nobody uses any more.
        drop(unsafe { Box::from_raw(sem.cast::<Semaphore>()) });
    }
}

/// `sem_up`: posts.
///
/// # Safety
/// `sem` must be a live semaphore from [`sem_alloc`].
pub unsafe extern "C" fn sem_up(sem: *mut lkl_sem) {
    // SAFETY: the caller passes a live Semaphore; only shared access is used.
    unsafe { &*sem.cast::<Semaphore>() }.up();
}

/// `sem_down`: waits.
///
/// # Safety
/// `sem` must be a live semaphore from [`sem_alloc`].
pub unsafe extern "C" fn sem_down(sem: *mut lkl_sem) {
    // SAFETY: the caller passes a live Semaphore; only shared access is used.
    unsafe { &*sem.cast::<Semaphore>() }.down();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    fn counts() {
        let s = Semaphore::new(2);
        assert!(s.try_down());
        s.down();
        assert!(!s.try_down());
        s.up();
        assert_eq!(s.value(), 1);
        s.down();
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn down_blocks_until_up_from_another_thread() {
        let s = Arc::new(Semaphore::new(0));
        let t0 = Instant::now();
        let poster = {
            let s = s.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                s.up();
            })
        };
        s.down();
        assert!(t0.elapsed() >= Duration::from_millis(45));
        poster.join().unwrap();
    }

    #[test]
    fn ping_pong_through_the_c_interface() {
        // Two threads hand a token back and forth, like __switch_to.
        // SAFETY: fresh semaphores, freed after both threads are done.
        let (a, b) = unsafe { (sem_alloc(0) as usize, sem_alloc(0) as usize) };
        const ROUNDS: usize = 20_000;
        let other = thread::spawn(move || {
            for _ in 0..ROUNDS {
                // SAFETY: live semaphores from sem_alloc.
                unsafe {
                    sem_down(a as *mut lkl_sem);
                    sem_up(b as *mut lkl_sem);
                }
            }
        });
        for _ in 0..ROUNDS {
            // SAFETY: live semaphores from sem_alloc.
            unsafe {
                sem_up(a as *mut lkl_sem);
                sem_down(b as *mut lkl_sem);
            }
        }
        other.join().unwrap();
        // SAFETY: no thread uses them any more; freed once.
        unsafe {
            sem_free(a as *mut lkl_sem);
            sem_free(b as *mut lkl_sem);
        }
    }

    #[test]
    fn many_producers_many_consumers_lose_nothing() {
        let s = Arc::new(Semaphore::new(0));
        const PER: usize = 5_000;
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    for _ in 0..PER {
                        s.down();
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    for _ in 0..PER {
                        s.up();
                    }
                })
            })
            .collect();
        for t in producers.into_iter().chain(consumers) {
            t.join().unwrap();
        }
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn negative_initial_count_is_zero() {
        // SAFETY: fresh semaphore, freed once.
        unsafe {
            let s = sem_alloc(-3);
            assert!(!(*s.cast::<Semaphore>()).try_down());
            sem_free(s);
        }
    }
}
