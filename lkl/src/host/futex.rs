//! Thin wrappers over the private `futex(2)` operations.

use std::ptr;
use std::sync::atomic::AtomicU32;

/// Sleeps while `*word == expected`. Returns on a wake, a signal, a
/// spurious wakeup, or at once if the value already differs: callers loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned u32 for the whole call; the kernel
    // only reads it. A NULL timeout waits without limit.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes up to `count` threads sleeping in [`wait`] on `word`.
pub(crate) fn wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
        );
    }
}
