//! Reading many small files ahead, on several threads, delivered in order.
//!
//! Each read of a file that is not cached costs the kernel a block request
//! and a few host thread switches while the reader waits for it; with
//! several readers in flight those waits overlap. [`ReadAhead`] runs
//! `threads` workers that claim jobs in order and read them (with the
//! caller's function), holding at most `budget` bytes of results; the
//! consumer takes the results in job order with [`ReadAhead::take`].
//!
//! Wake-ups are counted: a side is woken only when it waits (a futex call
//! less per job on each side), and workers that waited for room resume
//! only once the results held fall to half the budget, so that a consumer
//! slower than the workers does not wake a worker for every job it takes
//! (a context switch, and an interrupt on the consumer's CPU, per file).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

struct State<T> {
    next: usize,
    used: usize,
    done: HashMap<usize, T>,
    stop: bool,
    /// Workers waiting for room.
    waiting_workers: usize,
    /// Whether the consumer waits for a result.
    consumer_waits: bool,
}

/// Results of jobs `0..sizes.len()`, read ahead by worker threads.
pub struct ReadAhead<T> {
    sizes: Vec<usize>,
    budget: usize,
    state: Mutex<State<T>>,
    /// Where workers wait for room.
    room: Condvar,
    /// Where the consumer waits for results.
    ready: Condvar,
}

impl<T: Send> ReadAhead<T> {
    /// Jobs whose results weigh `sizes` bytes each; at most `budget` bytes
    /// are held (one job is always allowed, however large).
    pub fn new(sizes: Vec<usize>, budget: usize) -> Self {
        ReadAhead {
            sizes,
            budget,
            state: Mutex::new(State {
                next: 0,
                used: 0,
                done: HashMap::new(),
                stop: false,
                waiting_workers: 0,
                consumer_waits: false,
            }),
            room: Condvar::new(),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker's loop: claims the next job, waits for room, runs `read`
    /// on it and stores the result; returns when every job is claimed or
    /// [`ReadAhead::stop`] was called. Run it on each worker thread
    /// (`std::thread::scope`).
    pub fn work(&self, read: impl Fn(usize) -> T) {
        loop {
            let job = {
                let mut s = self.lock();
                loop {
                    if s.stop || s.next >= self.sizes.len() {
                        return;
                    }
                    let size = self.sizes[s.next];
                    if s.used == 0 || s.used + size <= self.budget {
                        break;
                    }
                    s.waiting_workers += 1;
                    s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
                    s.waiting_workers -= 1;
                }
                let job = s.next;
                s.next += 1;
                s.used += self.sizes[job];
                job
            };
            let r = read(job);
            let mut s = self.lock();
            s.done.insert(job, r);
            let wake = s.consumer_waits;
            drop(s);
            if wake {
                self.ready.notify_one();
            }
        }
    }

    /// The result of job `i`, waiting for it. `None` if it was never
    /// claimed (the workers stopped).
    pub fn take(&self, i: usize) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(r) = s.done.remove(&i) {
                s.used -= self.sizes[i];
                let wake = s.waiting_workers > 0 && s.used <= self.budget / 2;
                drop(s);
                if wake {
                    self.room.notify_all();
                }
                return Some(r);
            }
            if s.stop || (s.next <= i && s.next >= self.sizes.len()) {
                return None;
            }
            s.consumer_waits = true;
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
            s.consumer_waits = false;
        }
    }

    /// Tells the workers to stop claiming jobs (call it when the consumer
    /// gives up, before joining them).
    pub fn stop(&self) {
        self.lock().stop = true;
        self.room.notify_all();
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_within_budget() {
        let sizes: Vec<usize> = (0..200).map(|i| (i * 37) % 100 + 1).collect();
        let ra = ReadAhead::new(sizes.clone(), 300);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    ra.work(|i| {
                        let used = ra.lock().used;
                        peak.fetch_max(used, std::sync::atomic::Ordering::Relaxed);
                        vec![i as u8; sizes[i]]
                    })
                });
            }
            for (i, &n) in sizes.iter().enumerate() {
                assert_eq!(ra.take(i).unwrap(), vec![i as u8; n]);
            }
        });
        assert!(peak.into_inner() <= 300 + 100);
    }

    #[test]
    fn stopping_ends_the_workers() {
        let ra = ReadAhead::new(vec![10; 1000], 50);
        std::thread::scope(|s| {
            s.spawn(|| ra.work(|i| i));
            assert_eq!(ra.take(0), Some(0));
            ra.stop();
        });
    }
}
