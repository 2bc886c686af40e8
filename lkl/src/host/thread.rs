//! Host threads for kernel threads: create, detach, exit, join, self,
//! equal, stack.
//!
//! # Thread exit
//! `thread_exit` is called deep inside kernel C code that has no unwind
//! tables, so neither `pthread_exit` (a forced unwind) nor a Rust panic may
//! be used. Instead the start routine of every thread made by
//! [`thread_create`] runs the kernel's function under [`jmp_buf_set`], with
//! the buffer in a thread-local; [`thread_exit`] long-jumps back to it, and
//! the start routine then returns normally, so the thread ends the ordinary
//! way and its TLS destructors run. The frames skipped are the kernel's C
//! frames and a few Rust frames that own nothing.
//!
//! # Accounting
//! Every thread made by [`thread_create`] stays in a registry until it is
//! joined, or, if it detached itself, until its start routine returns.
//! [`live_threads`] counts them. After `lkl_sys_halt` (which joins the
//! kernel's threads) `Kernel::halt` joins, with [`reap_all`], any that ended
//! without being joined (the kernel never joins the host thread of its boot
//! time init task, which ends by `thread_exit` once the caller of
//! `lkl_start_kernel` has taken the task over), and then the count must be
//! zero.
//!
//! Threads start with asynchronous signals blocked, so that signals sent to
//! the process are handled by the program's own threads, never on a
//! kernel thread.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{c_int, c_ulong, c_void};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Mutex;

use lkl_sys::{lkl_jmp_buf, lkl_thread_t};

use super::jmp_x86_64::{jmp_buf_longjmp, jmp_buf_set};
use super::print::{fatal, write_stderr};

/// A thread body as the kernel passes it.
type ThreadFn = unsafe extern "C" fn(*mut c_void);

/// What a new thread needs, handed over through `pthread_create`'s argument.
struct Start {
    f: ThreadFn,
    arg: *mut c_void,
}

/// Per-thread state of a thread made by [`thread_create`], on its start
/// routine's stack.
struct Context {
    /// The return point [`thread_exit`] jumps to.
    exit: lkl_jmp_buf,
    f: ThreadFn,
    arg: *mut c_void,
}

thread_local! {
    /// This thread's [`Context`], or NULL on threads we did not make.
    static CONTEXT: Cell<*mut Context> = const { Cell::new(ptr::null_mut()) };
}

/// Where a registered thread is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Running, and someone will join it.
    Joinable,
    /// Running, and it detached itself: it leaves the registry when done.
    Detached,
    /// Done, waiting for the join.
    Finished,
}

/// Threads made by [`thread_create`] and not yet joined (or, if detached,
/// not yet finished).
static THREADS: Mutex<BTreeMap<lkl_thread_t, State>> = Mutex::new(BTreeMap::new());

fn threads() -> std::sync::MutexGuard<'static, BTreeMap<lkl_thread_t, State>> {
    // A panic while holding this lock cannot leave the map inconsistent.
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many threads made by [`thread_create`] have not been joined yet
/// (detached ones count until they finish).
pub fn live_threads() -> usize {
    threads().len()
}

/// Joins every thread made by [`thread_create`] that has ended but that
/// nobody joined, and returns how many there were. For shutdown, once the
/// kernel will join nothing more: a thread whose start routine returned
/// holds no kernel state, only its pthread resources.
pub fn reap_finished() -> usize {
    let done: Vec<lkl_thread_t> = threads()
        .iter()
        .filter(|(_, &state)| state == State::Finished)
        .map(|(&tid, _)| tid)
        .collect();
    let mut reaped = 0;
    for tid in done {
        // SAFETY: a joinable thread of ours that has finished and that no
        // one joined; it stays in the map until removed below.
        if unsafe { libc::pthread_join(tid as libc::pthread_t, ptr::null_mut()) } == 0 {
            threads().remove(&tid);
            reaped += 1;
        }
    }
    reaped
}

/// Joins every thread made by [`thread_create`], waiting up to `timeout`
/// for those still running (and for timer threads still ending) to end;
/// returns how many threads made by [`thread_create`] are left running.
///
/// For shutdown only, after the kernel has joined what it will: a kernel
/// thread that ends by `thread_exit` without being joined or detached
/// (the boot-time init thread, whose task the caller of
/// `lkl_start_kernel` takes over) can still be on its way out when
/// `lkl_sys_halt` returns.
pub fn reap_all(timeout: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        reap_finished();
        let left = live_threads();
        // Timer threads freed from their own callback end by themselves.
        let timers = super::timer::live_timer_threads();
        if left + timers == 0 || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Runs `spawn` with all asynchronous signals blocked on the calling thread,
/// so the thread it creates inherits that mask, then restores the mask.
pub(crate) fn with_signals_blocked<T>(spawn: impl FnOnce() -> T) -> T {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: the sets are initialised by sigfillset / pthread_sigmask before
    // being read; the old mask is restored before returning.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        // Faults are synchronous: leave them deliverable.
        for sig in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGABRT,
        ] {
            libc::sigdelset(all.as_mut_ptr(), sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
    }
    let out = spawn();
    // SAFETY: `old` was filled by the pthread_sigmask above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut()) };
    out
}

/// The body run under the exit point: calls the kernel's function.
extern "C" fn thread_body() {
    let ctx = CONTEXT.get();
    // SAFETY: thread_start set CONTEXT to its live Context before calling
    // jmp_buf_set, which calls us.
    unsafe { ((*ctx).f)((*ctx).arg) }
}

/// The pthread start routine of every thread made by [`thread_create`].
extern "C" fn thread_start(start: *mut c_void) -> *mut c_void {
    // SAFETY: thread_create passes a Box<Start> it gave up.
    let start = unsafe { Box::from_raw(start.cast::<Start>()) };
    let mut ctx = Context {
        exit: lkl_jmp_buf { buf: [0; 32] },
        f: start.f,
        arg: start.arg,
    };
    drop(start);
    CONTEXT.set(&mut ctx);
    // SAFETY: `ctx` outlives the call; thread_exit jumps here from frames
    // that own nothing needing a drop.
    unsafe { jmp_buf_set(&mut ctx.exit, Some(thread_body)) };
    CONTEXT.set(ptr::null_mut());
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as lkl_thread_t;
    let mut map = threads();
    match map.get(&me) {
        Some(State::Detached) => {
            map.remove(&me);
        }
        Some(_) => {
            map.insert(me, State::Finished);
        }
        None => {}
    }
    ptr::null_mut()
}

/// `thread_create`: starts a host thread running `f(arg)`; returns its id,
/// or 0 on failure.
///
/// # Safety
/// `f` must be safe to call with `arg` on another thread. The thread must
/// be joined with [`thread_join`] or detach itself with [`thread_detach`].
pub unsafe extern "C" fn thread_create(f: Option<ThreadFn>, arg: *mut c_void) -> lkl_thread_t {
    let Some(f) = f else { return 0 };
    let start = Box::into_raw(Box::new(Start { f, arg }));
    // Registered under the lock, so the thread cannot finish (and look
    // itself up) before it is in the map.
    let mut map = threads();
    let mut tid = MaybeUninit::<libc::pthread_t>::uninit();
    let r = with_signals_blocked(|| {
        // SAFETY: default attributes; thread_start takes ownership of `start`.
        unsafe { libc::pthread_create(tid.as_mut_ptr(), ptr::null(), thread_start, start.cast()) }
    });
    if r != 0 {
        // SAFETY: the thread was not created, so `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
        return 0;
    }
    // SAFETY: pthread_create succeeded and filled `tid`.
    let tid = unsafe { tid.assume_init() } as lkl_thread_t;
    map.insert(tid, State::Joinable);
    tid
}

/// `thread_detach`: detaches the calling thread, which must have been made
/// by [`thread_create`]; on any other thread it prints a warning and does
/// nothing (detaching a thread someone else will join would be undefined).
///
/// # Safety
/// Nobody may join the calling thread afterwards.
pub unsafe extern "C" fn thread_detach() {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let mut map = threads();
    match map.get_mut(&(me as lkl_thread_t)) {
        Some(state @ State::Joinable) => {
            *state = State::Detached;
            // SAFETY: our own, joinable thread, detached once.
            unsafe { libc::pthread_detach(me) };
        }
        Some(_) => {}
        None => write_stderr(b"lkl: host: thread_detach on a thread not made by thread_create\n"),
    }
}

/// `thread_exit`: ends the calling thread by jumping back to its start
/// routine, which returns normally (so TLS destructors run).
///
/// Aborts the process if the caller was not made by [`thread_create`].
///
/// # Safety
/// The frames between the thread's start and this call are abandoned: they
/// must own nothing needing a drop (kernel C frames are fine).
pub unsafe extern "C" fn thread_exit() {
    let ctx = CONTEXT.get();
    if ctx.is_null() {
        fatal("thread_exit on a thread not made by thread_create");
    }
    // SAFETY: CONTEXT points at the start routine's live Context, whose
    // jmp_buf_set is still running below us on this stack.
    unsafe { jmp_buf_longjmp(&mut (*ctx).exit, 1) }
}

/// `thread_join`: waits for a thread made by [`thread_create`] to end.
/// Returns 0, or `EINVAL` for a thread that is not ours or already joined
/// or detached, or the error of `pthread_join`.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn thread_join(tid: lkl_thread_t) -> c_int {
    match threads().get(&tid) {
        Some(State::Joinable | State::Finished) => {}
        _ => return lkl_sys::LKL_EINVAL as c_int,
    }
    // SAFETY: a joinable thread we created and nobody has joined: it stays
    // in the map (so the id stays valid) until this join removes it.
    let r = unsafe { libc::pthread_join(tid as libc::pthread_t, ptr::null_mut()) };
    if r == 0 {
        threads().remove(&tid);
    }
    r
}

/// `thread_self`: the calling thread's id.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn thread_self() -> lkl_thread_t {
    // SAFETY: no preconditions.
    unsafe { libc::pthread_self() as lkl_thread_t }
}

/// `thread_equal`: whether two ids name the same thread.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn thread_equal(a: lkl_thread_t, b: lkl_thread_t) -> c_int {
    // SAFETY: pthread_equal only compares the values.
    unsafe { libc::pthread_equal(a as libc::pthread_t, b as libc::pthread_t) }
}

/// `thread_stack`: the calling thread's stack, as its lowest address, with
/// its size in `*size`; NULL if unknown.
///
/// # Safety
/// `size` must be NULL or valid for a write.
pub unsafe extern "C" fn thread_stack(size: *mut c_ulong) -> *mut c_void {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut addr: *mut c_void = ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: pthread_getattr_np initialises `attr`, which is destroyed once
    // after use; the out-pointers are live locals.
    let r = unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return ptr::null_mut();
        }
        let r = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut len);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        r
    };
    if r != 0 {
        return ptr::null_mut();
    }
    if !size.is_null() {
        // SAFETY: the caller passes a writable `size`.
        unsafe { *size = len as c_ulong };
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tests that count live threads would see each other's: serialise them.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        crate::host::test_serial()
    }

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn add_arg(arg: *mut c_void) {
        COUNTER.fetch_add(arg as usize, Ordering::SeqCst);
    }

    #[inline(never)]
    extern "C" fn exit_deep(depth: usize) {
        if depth == 0 {
            // SAFETY: called on a thread made by thread_create; the frames
            // in between own nothing.
            unsafe { thread_exit() };
            unreachable!();
        }
        exit_deep(std::hint::black_box(depth - 1));
        COUNTER.fetch_add(1_000_000, Ordering::SeqCst); // never reached
    }

    unsafe extern "C" fn count_then_exit(arg: *mut c_void) {
        COUNTER.fetch_add(arg as usize, Ordering::SeqCst);
        exit_deep(20);
        COUNTER.fetch_add(1_000_000, Ordering::SeqCst); // never reached
    }

    #[test]
    fn create_join_counts_threads() {
        let _g = serial();
        COUNTER.store(0, Ordering::SeqCst);
        let before = live_threads();
        // SAFETY: add_arg is thread-safe; each thread is joined once.
        let tids: Vec<_> = (1..=8)
            .map(|i| unsafe { thread_create(Some(add_arg), i as *mut c_void) })
            .collect();
        assert!(tids.iter().all(|&t| t != 0));
        assert_eq!(live_threads(), before + 8);
        for t in tids {
            // SAFETY: no preconditions.
            assert_eq!(unsafe { thread_join(t) }, 0);
        }
        assert_eq!(live_threads(), before);
        assert_eq!(COUNTER.load(Ordering::SeqCst), 36);
    }

    #[test]
    fn thread_exit_from_nested_frames_ends_the_thread() {
        let _g = serial();
        COUNTER.store(0, Ordering::SeqCst);
        let before = live_threads();
        // SAFETY: count_then_exit is thread-safe; each thread is joined once.
        let tids: Vec<_> = (0..16)
            .map(|_| unsafe { thread_create(Some(count_then_exit), ptr::dangling_mut()) })
            .collect();
        for t in tids {
            // SAFETY: no preconditions.
            assert_eq!(unsafe { thread_join(t) }, 0);
        }
        assert_eq!(COUNTER.load(Ordering::SeqCst), 16);
        assert_eq!(live_threads(), before);
    }

    #[test]
    fn finished_unjoined_threads_are_reaped() {
        let _g = serial();
        let before = live_threads();
        // SAFETY: add_arg is thread-safe; the thread is reaped, not joined.
        let t = unsafe { thread_create(Some(add_arg), ptr::null_mut()) };
        assert_ne!(t, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while threads().get(&t) != Some(&State::Finished) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert_eq!(live_threads(), before + 1);
        assert_eq!(reap_finished(), 1);
        assert_eq!(live_threads(), before);
    }

    #[test]
    fn join_refuses_unknown_and_double_joins() {
        let _g = serial();
        // SAFETY: add_arg is thread-safe; joined once below.
        let t = unsafe { thread_create(Some(add_arg), ptr::null_mut()) };
        // SAFETY: no preconditions.
        unsafe {
            assert_eq!(thread_join(t), 0);
            assert_eq!(thread_join(t), lkl_sys::LKL_EINVAL as c_int);
            assert_eq!(thread_join(thread_self()), lkl_sys::LKL_EINVAL as c_int);
            assert_eq!(thread_create(None, ptr::null_mut()), 0);
        }
    }

    unsafe extern "C" fn detach_self(arg: *mut c_void) {
        // SAFETY: nobody joins this thread.
        unsafe { thread_detach() };
        let sem = arg.cast::<super::super::sem::Semaphore>();
        // SAFETY: the test keeps the semaphore alive until this up.
        unsafe { (*sem).up() };
    }

    #[test]
    fn detached_threads_leave_the_registry_when_done() {
        let _g = serial();
        let before = live_threads();
        let sem = super::super::sem::Semaphore::new(0);
        // SAFETY: detach_self is thread-safe and detaches itself.
        let t = unsafe { thread_create(Some(detach_self), ptr::addr_of!(sem) as *mut c_void) };
        assert_ne!(t, 0);
        sem.down();
        // The thread is finishing; wait for it to leave the registry.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while live_threads() != before {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        // SAFETY: no preconditions.
        assert_eq!(unsafe { thread_join(t) }, lkl_sys::LKL_EINVAL as c_int);
    }

    unsafe extern "C" fn report_self(arg: *mut c_void) {
        // SAFETY: the test passes a live [AtomicUsize; 3].
        let out = unsafe { &*arg.cast::<[AtomicUsize; 3]>() };
        // SAFETY: no preconditions; `size` is a live local.
        unsafe {
            out[0].store(thread_self() as usize, Ordering::SeqCst);
            let mut size: c_ulong = 0;
            let base = thread_stack(&mut size);
            out[1].store(base as usize, Ordering::SeqCst);
            out[2].store(size as usize, Ordering::SeqCst);
        }
        let local = 0u8;
        let at = ptr::addr_of!(local) as usize;
        let (base, size) = (out[1].load(Ordering::SeqCst), out[2].load(Ordering::SeqCst));
        assert!(at > base && at < base + size, "local {at:#x} outside stack");
    }

    #[test]
    fn self_equal_and_stack() {
        let _g = serial();
        let out: [AtomicUsize; 3] = Default::default();
        // SAFETY: `out` outlives the thread, which is joined below.
        let t = unsafe { thread_create(Some(report_self), ptr::addr_of!(out) as *mut c_void) };
        // SAFETY: no preconditions.
        unsafe {
            assert_eq!(thread_join(t), 0);
            assert_ne!(
                thread_equal(t, out[0].load(Ordering::SeqCst) as lkl_thread_t),
                0
            );
            assert_eq!(thread_equal(t, thread_self()), 0);
        }
        assert!(out[2].load(Ordering::SeqCst) >= 64 * 1024);
    }
}
