//! Thread-local keys over `pthread_key_create`: the destructor really runs,
//! with the value, when a thread holding a non-NULL value exits (including
//! threads ended by `thread_exit`, which return through their start routine).
//!
//! The key handle given to the kernel is the pthread key plus one, so it is
//! never NULL and needs no allocation.

use std::ffi::{c_int, c_void};
use std::ptr;

use lkl_sys::lkl_tls_key;

type Destructor = unsafe extern "C" fn(*mut c_void);

fn key_of(key: *mut lkl_tls_key) -> libc::pthread_key_t {
    (key as usize - 1) as libc::pthread_key_t
}

/// `tls_alloc`: a new key with an optional destructor; NULL on failure.
///
/// # Safety
/// `destructor`, if any, must be safe to call on any thread at its exit.
pub unsafe extern "C" fn tls_alloc(destructor: Option<Destructor>) -> *mut lkl_tls_key {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-parameter.
    if unsafe { libc::pthread_key_create(&mut key, destructor) } != 0 {
        return ptr::null_mut();
    }
    (key as usize + 1) as *mut lkl_tls_key
}

/// `tls_free`: deletes a key (destructors no longer run for it).
///
/// # Safety
/// `key` must come from [`tls_alloc`] and be freed once.
pub unsafe extern "C" fn tls_free(key: *mut lkl_tls_key) {
    if key.is_null() {
        return;
    }
    // SAFETY: a live key from tls_alloc.
    unsafe { libc::pthread_key_delete(key_of(key)) };
}

/// `tls_set`: sets the calling thread's value; 0 on success.
///
/// # Safety
/// `key` must be a live key from [`tls_alloc`].
pub unsafe extern "C" fn tls_set(key: *mut lkl_tls_key, data: *mut c_void) -> c_int {
    if key.is_null() {
        return lkl_sys::LKL_EINVAL as c_int;
    }
    // SAFETY: a live key from tls_alloc.
    unsafe { libc::pthread_setspecific(key_of(key), data) }
}

/// `tls_get`: the calling thread's value (NULL if unset).
///
/// # Safety
/// `key` must be a live key from [`tls_alloc`].
pub unsafe extern "C" fn tls_get(key: *mut lkl_tls_key) -> *mut c_void {
    if key.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a live key from tls_alloc.
    unsafe { libc::pthread_getspecific(key_of(key)) }
}

#[cfg(test)]
mod tests {
    use super::super::thread;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DESTROYED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn destructor(value: *mut c_void) {
        DESTROYED.fetch_add(value as usize, Ordering::SeqCst);
    }

    #[derive(Clone, Copy)]
    struct Key(*mut lkl_tls_key);
    // SAFETY: pthread keys are process-wide.
    unsafe impl Send for Key {}

    #[test]
    fn values_are_per_thread_and_destructors_run_at_exit() {
        DESTROYED.store(0, Ordering::SeqCst);
        // SAFETY: a fresh key, used while live and freed once at the end.
        let key = Key(unsafe { tls_alloc(Some(destructor)) });
        assert!(!key.0.is_null());
        // SAFETY: live key.
        unsafe {
            assert!(tls_get(key.0).is_null());
            assert_eq!(tls_set(key.0, 1000 as *mut c_void), 0);
        }
        let handles: Vec<_> = (1..=4usize)
            .map(|i| {
                std::thread::spawn(move || {
                    let key = key;
                    // SAFETY: live key.
                    unsafe {
                        assert!(tls_get(key.0).is_null());
                        assert_eq!(tls_set(key.0, i as *mut c_void), 0);
                        assert_eq!(tls_get(key.0) as usize, i);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(DESTROYED.load(Ordering::SeqCst), 10);
        // SAFETY: live key; the main thread's value is untouched.
        unsafe {
            assert_eq!(tls_get(key.0) as usize, 1000);
            tls_set(key.0, ptr::null_mut());
            tls_free(key.0);
        }
    }

    static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn set_then_exit(value: *mut c_void) {
        let key = EXIT_KEY.load(Ordering::SeqCst) as *mut lkl_tls_key;
        // SAFETY: the test keeps the key live; this thread came from
        // thread_create, so thread_exit may be called.
        unsafe {
            tls_set(key, value);
            thread::thread_exit();
        }
    }

    #[test]
    fn destructor_runs_for_threads_ended_by_thread_exit() {
        let _g = crate::host::test_serial();
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        unsafe extern "C" fn record(value: *mut c_void) {
            SEEN.fetch_add(value as usize, Ordering::SeqCst);
        }
        // SAFETY: a fresh key, freed after every thread using it is joined.
        let key = unsafe { tls_alloc(Some(record)) };
        EXIT_KEY.store(key as usize, Ordering::SeqCst);
        // SAFETY: set_then_exit is thread-safe; each thread is joined once.
        let tids: Vec<_> = (0..3)
            .map(|_| unsafe { thread::thread_create(Some(set_then_exit), 7 as *mut c_void) })
            .collect();
        for t in tids {
            // SAFETY: no preconditions.
            assert_eq!(unsafe { thread::thread_join(t) }, 0);
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 21);
        // SAFETY: no thread uses the key any more.
        unsafe { tls_free(key) };
    }
}
