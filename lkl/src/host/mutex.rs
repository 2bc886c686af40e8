//! Mutexes, plain and recursive, over pthread mutexes.
//!
//! The kernel locks and unlocks a mutex on the same host thread, which is
//! what pthread mutexes require. Each lives in its own heap block because a
//! pthread mutex must not move once initialised.

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::ptr;

use lkl_sys::lkl_mutex;

use super::print::fatal;

/// A pthread mutex at a fixed address.
struct HostMutex(UnsafeCell<libc::pthread_mutex_t>);

/// `mutex_alloc`: a mutex, recursive if `recursive` is non-zero; NULL on
/// failure.
///
/// # Safety
/// Always safe to call; free the result with [`mutex_free`].
pub unsafe extern "C" fn mutex_alloc(recursive: c_int) -> *mut lkl_mutex {
    let kind = if recursive != 0 {
        libc::PTHREAD_MUTEX_RECURSIVE
    } else {
        libc::PTHREAD_MUTEX_NORMAL
    };
    let m = Box::new(HostMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)));
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is initialised by pthread_mutexattr_init before any other
    // use and destroyed once; the mutex is at its final heap address.
    let ok = unsafe {
        if libc::pthread_mutexattr_init(attr.as_mut_ptr()) != 0 {
            return ptr::null_mut();
        }
        let ok = libc::pthread_mutexattr_settype(attr.as_mut_ptr(), kind) == 0
            && libc::pthread_mutex_init(m.0.get(), attr.as_ptr()) == 0;
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        ok
    };
    if !ok {
        return ptr::null_mut();
    }
    Box::into_raw(m).cast()
}

/// `mutex_free`: destroys a mutex.
///
/// # Safety
/// `mutex` must come from [`mutex_alloc`], be unlocked, and be freed once.
pub unsafe extern "C" fn mutex_free(mutex: *mut lkl_mutex) {
    if mutex.is_null() {
        return;
    }
    // SAFETY: per the contract this is an unlocked mutex from mutex_alloc
    // that nobody uses any more.
    unsafe {
        let m = Box::from_raw(mutex.cast::<HostMutex>());
        libc::pthread_mutex_destroy(m.0.get());
    }
}

/// `mutex_lock`: locks (again, for a recursive mutex held by the caller).
///
/// # Safety
/// `mutex` must be a live mutex from [`mutex_alloc`].
pub unsafe extern "C" fn mutex_lock(mutex: *mut lkl_mutex) {
    // SAFETY: the caller passes a live, initialised mutex.
    let r = unsafe { libc::pthread_mutex_lock((*mutex.cast::<HostMutex>()).0.get()) };
    if r != 0 {
        fatal("pthread_mutex_lock failed");
    }
}

/// `mutex_unlock`: unlocks (one level, for a recursive mutex).
///
/// # Safety
/// `mutex` must be a live mutex from [`mutex_alloc`], held by the caller.
pub unsafe extern "C" fn mutex_unlock(mutex: *mut lkl_mutex) {
    // SAFETY: the caller passes a live mutex that it holds.
    let r = unsafe { libc::pthread_mutex_unlock((*mutex.cast::<HostMutex>()).0.get()) };
    if r != 0 {
        fatal("pthread_mutex_unlock failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[derive(Clone, Copy)]
    struct Ptr(*mut lkl_mutex);
    // SAFETY: the mutex is designed to be shared between threads.
    unsafe impl Send for Ptr {}

    #[test]
    fn recursive_mutex_relocks_and_excludes_others() {
        // SAFETY: a fresh mutex, used while live, freed once when unlocked.
        unsafe {
            let m = Ptr(mutex_alloc(1));
            assert!(!m.0.is_null());
            mutex_lock(m.0);
            mutex_lock(m.0);
            mutex_lock(m.0);
            let got = Arc::new(AtomicBool::new(false));
            let t = {
                let got = got.clone();
                thread::spawn(move || {
                    let m = m;
                    mutex_lock(m.0);
                    got.store(true, Ordering::SeqCst);
                    mutex_unlock(m.0);
                })
            };
            mutex_unlock(m.0);
            mutex_unlock(m.0);
            thread::sleep(Duration::from_millis(30));
            assert!(!got.load(Ordering::SeqCst), "still held once");
            mutex_unlock(m.0);
            t.join().unwrap();
            assert!(got.load(Ordering::SeqCst));
            mutex_free(m.0);
        }
    }

    #[test]
    fn plain_mutex_counts_correctly_under_contention() {
        // SAFETY: a fresh mutex, shared while live, freed once at the end.
        let m = Ptr(unsafe { mutex_alloc(0) });
        assert!(!m.0.is_null());
        static mut COUNTER: u64 = 0;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(move || {
                    let m = m;
                    for _ in 0..10_000 {
                        // SAFETY: COUNTER is only touched with the mutex held.
                        unsafe {
                            mutex_lock(m.0);
                            COUNTER += 1;
                            mutex_unlock(m.0);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads are joined; the mutex is unlocked.
        unsafe {
            assert_eq!(*ptr::addr_of!(COUNTER), 40_000);
            mutex_free(m.0);
        }
    }
}
