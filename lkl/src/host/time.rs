//! `time`: the host's monotonic clock, and `gettid`.

use std::ffi::{c_long, c_ulonglong};

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `time`: [`monotonic_ns`] for the kernel's clocksource.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn time() -> c_ulonglong {
    monotonic_ns()
}

/// `gettid`: the host's thread id of the caller.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn gettid() -> c_long {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as c_long }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_monotonic_and_in_ns() {
        // SAFETY: no preconditions.
        let a = unsafe { time() };
        std::thread::sleep(std::time::Duration::from_millis(5));
        // SAFETY: no preconditions.
        let b = unsafe { time() };
        assert!(b - a >= 5_000_000, "{a} -> {b}");
        assert!(b - a < 1_000_000_000, "{a} -> {b}");
    }

    #[test]
    fn gettid_differs_between_threads() {
        // SAFETY: no preconditions.
        let main = unsafe { gettid() };
        // SAFETY: no preconditions.
        let other = std::thread::spawn(|| unsafe { gettid() }).join().unwrap();
        assert_ne!(main, other);
        assert!(main > 0 && other > 0);
    }
}
