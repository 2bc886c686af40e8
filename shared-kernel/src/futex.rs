//! Futex waits and wakes on words of the window (shared between processes, so never
//! `FUTEX_PRIVATE_FLAG`).

use core::sync::atomic::AtomicU32;

/// Sleeps while `*word == val`, at most `timeout_ms` (0: no limit). Returns on a wake,
/// a signal, a timeout or a changed value alike: the caller looks again.
pub fn wait(word: &AtomicU32, val: u32, timeout_ms: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let tsp = if timeout_ms == 0 {
        core::ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    // SAFETY: FUTEX_WAIT on a live word of ours, with a valid or null timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            tsp,
            0usize,
            0u32,
        );
    }
}

/// Wakes every sleeper on `word`.
pub fn wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live word of ours.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

/// Spins until `ready` says yes or `budget_ns` passes; true when ready.
#[inline(always)]
pub fn spin(budget_ns: u64, mut ready: impl FnMut() -> bool) -> bool {
    let mut start = 0u64;
    let mut k = 0u32;
    loop {
        if ready() {
            return true;
        }
        core::hint::spin_loop();
        k = k.wrapping_add(1);
        if k.is_multiple_of(64) {
            let t = lkl::host::time::monotonic_ns();
            if start == 0 {
                start = t;
            } else if t - start > budget_ns {
                return false;
            }
        }
    }
}
