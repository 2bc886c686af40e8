//! Crossing from the program's world into ours for an LKL call.
//!
//! LKL, and everything of ours it uses (our libc's mutexes, `malloc`, thread-local
//! keys, Rust's thread-locals), needs `%fs` to point at one of *our* libc's thread
//! blocks. A program thread arrives in the hook with the program's `%fs`. So each
//! program thread that calls into LKL borrows the thread block of a *shadow*: a thread
//! of ours that does nothing but sleep on a futex that is never woken, with every
//! signal blocked. While lent, the shadow never runs, so its block is used by one
//! thread at a time. The call swaps `%fs` with `wrfsbase` (a few ns; `arch_prctl` where
//! the CPU lacks FSGSBASE), makes the LKL call, and swaps back.
//!
//! Shadows are found by the program thread's own `%fs` base in an open-addressing
//! table read without locks. A miss creates a shadow under a spin lock, working on the
//! thread block of the *bootstrap* shadow made at start. A program thread that ends
//! (`exit`) gives its shadow back ([`release_current`]) for the next thread that needs
//! one, so the number of shadows is the peak number of threads that used LKL at once;
//! LKL's kernel task of that shadow is reused with it.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::helpers::{sys, ARCH_SET_FS};
use trampoline::alloc::{fs_base, has_fsgsbase};
use trampoline::stack::{block_all_signals, set_signal_mask};

const SLOTS: usize = 4096;

/// One program thread block and the shadow it borrows.
struct Shadow {
    /// The program thread's `%fs` base (0: free slot).
    prog: AtomicU64,
    /// The shadow's `%fs` base.
    fs: AtomicU64,
    /// 1 while an LKL call runs on this shadow.
    busy: AtomicU8,
    /// Signals handled during the call (see [`take_signal`]): bit 0 any, bit 1 one
    /// whose handler lacks `SA_RESTART` (or one deferred to the call's end).
    sig: AtomicU8,
    /// Signals whose handler waits for the call to end (bit n-1 for signal n).
    pending: AtomicU64,
}

static TABLE: [Shadow; SLOTS] = [const {
    Shadow {
        prog: AtomicU64::new(0),
        fs: AtomicU64::new(0),
        busy: AtomicU8::new(0),
        sig: AtomicU8::new(0),
        pending: AtomicU64::new(0),
    }
}; SLOTS];
thread_local! {
    /// In a shadow's thread block: that shadow's address in [`TABLE`], set each time
    /// the block is lent (the shadow itself never reads it), so that code in our world
    /// finds its shadow without a scan of the table.
    static LENT: Cell<usize> = const { Cell::new(0) };
}

/// Thread blocks of shadows whose program thread ended, ready for the next one.
static FREE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static NFREE: AtomicUsize = AtomicUsize::new(0);
/// A slot whose program thread ended (skipped by lookups, reused by insertions).
const TOMB: u64 = u64::MAX;
static LOCK: AtomicBool = AtomicBool::new(false);
/// The bootstrap shadow's `%fs` base.
static BOOT_FS: AtomicU64 = AtomicU64::new(0);
/// The new shadow publishes its `%fs` base here.
static NEW_FS: AtomicU64 = AtomicU64::new(0);
/// A futex word that is never woken.
static NEVER: AtomicU64 = AtomicU64::new(0);

/// Sets the calling thread's `%fs` base.
#[inline(always)]
fn set_fs(v: u64) {
    if has_fsgsbase() {
        // SAFETY: wrfsbase only changes this thread's FS base; the callers swap it to a
        // valid thread block and back before any code that depends on it.
        unsafe { core::arch::asm!("wrfsbase {}", in(reg) v, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: arch_prctl(ARCH_SET_FS, v) as above.
        unsafe { sys(libc::SYS_arch_prctl, [ARCH_SET_FS, v, 0, 0, 0, 0]) };
    }
}

/// Set in every stored key, so that `%fs` base 0 (a program without thread blocks)
/// is not the free-slot marker. Thread blocks live below 2^47.
const KEY_TAG: u64 = 1 << 62;

fn slot_of(prog: u64) -> usize {
    ((prog >> 6) ^ (prog >> 18) ^ (prog >> 30)) as usize % SLOTS
}

/// The shadow of the thread block `prog`, if it has one.
#[inline(always)]
fn find(prog: u64) -> Option<&'static Shadow> {
    let mut i = slot_of(prog);
    for _ in 0..SLOTS {
        let s = &TABLE[i];
        match s.prog.load(Ordering::Acquire) {
            0 => return None,
            p if p == prog => return Some(s),
            _ => i = (i + 1) % SLOTS,
        }
    }
    None
}

/// The body of a shadow (and of the bootstrap shadow): publish the thread block, then
/// sleep forever touching nothing but the stack.
fn park_forever() {
    NEW_FS.store(fs_base(), Ordering::Release);
    loop {
        // SAFETY: FUTEX_WAIT_PRIVATE on a word that stays 0: sleeps until a spurious
        // wakeup, then sleeps again. No libc, no errno, no thread-locals.
        unsafe {
            sys(
                libc::SYS_futex,
                [
                    NEVER.as_ptr() as u64,
                    (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u64,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        };
    }
}

/// Starts a shadow thread from our world; returns its thread block, 0 on failure.
fn spawn_shadow() -> u64 {
    NEW_FS.store(0, Ordering::Release);
    let spawned = std::thread::Builder::new()
        .name("lkl-shadow".into())
        .stack_size(64 << 10)
        .spawn(park_forever);
    if spawned.is_err() {
        return 0;
    }
    loop {
        let fs = NEW_FS.load(Ordering::Acquire);
        if fs != 0 {
            return fs;
        }
        // SAFETY: sched_yield has no arguments.
        unsafe { sys(libc::SYS_sched_yield, [0; 6]) };
    }
}

/// Makes the bootstrap shadow. Call once, from our world, before the program runs.
pub(crate) fn init() -> bool {
    let old = block_all_signals();
    let fs = spawn_shadow();
    set_signal_mask(old);
    BOOT_FS.store(fs, Ordering::Release);
    fs != 0
}

/// Creates the shadow of `prog` (the calling program thread's thread block).
#[cold]
#[inline(never)]
fn create(prog: u64) -> Option<&'static Shadow> {
    // Signals stay blocked from before the lock (a handler calling LKL must not spin on
    // a lock its own thread holds) until the program's thread block is back.
    let old = block_all_signals();
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let found = find(prog).or_else(|| {
        // A shadow left by a thread that ended, else a new one.
        let fs = match NFREE.load(Ordering::Relaxed) {
            0 => {
                set_fs(BOOT_FS.load(Ordering::Acquire));
                let fs = spawn_shadow();
                set_fs(prog & !(1 | KEY_TAG));
                fs
            }
            n => {
                NFREE.store(n - 1, Ordering::Relaxed);
                FREE[n - 1].load(Ordering::Relaxed)
            }
        };
        if fs == 0 {
            return None;
        }
        let mut i = slot_of(prog);
        for _ in 0..SLOTS {
            let s = &TABLE[i];
            let p = s.prog.load(Ordering::Relaxed);
            if p == 0 || p == TOMB {
                s.busy.store(0, Ordering::Relaxed);
                s.sig.store(0, Ordering::Relaxed);
                s.pending.store(0, Ordering::Relaxed);
                s.fs.store(fs, Ordering::Relaxed);
                s.prog.store(prog, Ordering::Release);
                return Some(s);
            }
            i = (i + 1) % SLOTS;
        }
        None
    });
    LOCK.store(false, Ordering::Release);
    set_signal_mask(old);
    found
}

/// An LKL call in progress on a borrowed thread block: dropping it swaps `%fs` back.
pub(crate) struct Borrowed {
    prog: u64,
    shadow: &'static Shadow,
    /// Syscall User Dispatch was on and is off for the call.
    sud: bool,
}

impl Drop for Borrowed {
    #[inline(always)]
    fn drop(&mut self) {
        set_fs(self.prog);
        if self.sud {
            trampoline::sud::resume();
        }
        self.shadow.busy.store(0, Ordering::Release);
        if self.shadow.pending.load(Ordering::Relaxed) != 0 {
            raise_pending(self.shadow);
        }
    }
}

/// Raises again, now that the thread wears the program's thread block, the signals
/// that arrived while it held LKL's CPU (see `crate::signals`).
#[cold]
#[inline(never)]
fn raise_pending(shadow: &Shadow) {
    let mut bits = shadow.pending.swap(0, Ordering::AcqRel);
    // SAFETY: getpid and gettid have no arguments.
    let (pid, tid) = unsafe { (sys(libc::SYS_getpid, [0; 6]), sys(libc::SYS_gettid, [0; 6])) };
    while bits != 0 {
        let sig = u64::from(bits.trailing_zeros()) + 1;
        bits &= bits - 1;
        // SAFETY: tgkill of our own thread with a signal the program handles.
        unsafe { sys(libc::SYS_tgkill, [pid as u64, tid as u64, sig, 0, 0, 0]) };
    }
}

/// In the child of a fork (its only thread): a lock another thread of the parent held
/// at the fork stays held in this copy; let it go. The shadows of the parent's other
/// threads are dropped (a thread of the child may get the same thread block address,
/// and their thread-locals describe the parent), and so are the free ones.
pub(crate) fn after_fork() {
    LOCK.store(false, Ordering::Release);
    let key = fs_base() | KEY_TAG;
    for s in &TABLE {
        let p = s.prog.load(Ordering::Relaxed);
        if p != 0 && p != key && p != key | 1 {
            s.prog.store(TOMB, Ordering::Relaxed);
        }
    }
    NFREE.store(0, Ordering::Release);
}

/// Why [`enter`] failed.
pub(crate) enum EnterError {
    /// No shadow could be made (`EAGAIN`).
    NoShadow,
    /// The thread is already inside an LKL call: a signal handler that interrupted one
    /// made another (`EINTR`).
    Nested,
}

/// Swaps the calling program thread onto its shadow's thread block.
#[inline(always)]
pub(crate) fn enter() -> Result<Borrowed, EnterError> {
    // Our libc's syscalls lie outside the range Syscall User Dispatch allows.
    let sud = trampoline::sud::suspend();
    let borrowed = enter_with(sud);
    if sud && borrowed.is_err() {
        trampoline::sud::resume();
    }
    borrowed
}

#[inline(always)]
fn enter_with(sud: bool) -> Result<Borrowed, EnterError> {
    let prog = fs_base();
    let key = prog | KEY_TAG;
    let mut shadow = match find(key) {
        Some(s) => s,
        None => create(key).ok_or(EnterError::NoShadow)?,
    };
    if shadow.busy.swap(1, Ordering::Acquire) != 0 {
        // A fault signal's handler calling LKL during an LKL call on this thread (other
        // handlers wait for the call to end, see `crate::signals`): a second shadow,
        // so LKL sees a second task and the first one stays as it was.
        let alt = key | 1;
        shadow = match find(alt) {
            Some(s) => s,
            None => create(alt).ok_or(EnterError::NoShadow)?,
        };
        if shadow.busy.swap(1, Ordering::Acquire) != 0 {
            return Err(EnterError::Nested);
        }
    }
    set_fs(shadow.fs.load(Ordering::Relaxed));
    set_lent(shadow);
    Ok(Borrowed { prog, shadow, sud })
}

/// The lent shadow whose thread block `%fs` is, if any (a scan of the table: signal
/// paths only).
fn current_lent() -> Option<&'static Shadow> {
    let fs = fs_base();
    TABLE.iter().find(|s| {
        s.busy.load(Ordering::Acquire) != 0
            && s.fs.load(Ordering::Relaxed) == fs
            && s.prog.load(Ordering::Relaxed) != TOMB
    })
}

/// The calling program thread ends (`exit`): its shadows (and their LKL tasks) go to
/// the next thread that needs one.
pub(crate) fn release_current() {
    let prog = fs_base() | KEY_TAG;
    if find(prog).is_none() {
        return;
    }
    let old = block_all_signals();
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    for key in [prog, prog | 1] {
        if let Some(s) = find(key) {
            if s.busy.load(Ordering::Acquire) == 0 {
                let n = NFREE.load(Ordering::Relaxed);
                if n < SLOTS {
                    FREE[n].store(s.fs.load(Ordering::Relaxed), Ordering::Relaxed);
                    NFREE.store(n + 1, Ordering::Relaxed);
                    s.prog.store(TOMB, Ordering::Release);
                }
            }
        }
    }
    LOCK.store(false, Ordering::Release);
    set_signal_mask(old);
}

/// For the signal wrapper: if `%fs` is a lent shadow's, the program thread block it
/// stands for (without the alternate shadow's tag); the shadow notes that a signal
/// was handled (`restart`: its handler has `SA_RESTART`).
pub(crate) fn owner_of_current(restart: bool) -> Option<u64> {
    current_lent().map(|s| {
        s.sig
            .fetch_or(if restart { 1 } else { 3 }, Ordering::AcqRel);
        s.prog.load(Ordering::Relaxed) & !(1 | KEY_TAG)
    })
}

/// For the signal wrapper: if the thread is inside an LKL call, run `sig`'s handler
/// when the call ends, note it for the waits (`restart`: the handler has
/// `SA_RESTART`), and return true.
pub(crate) fn defer_signal(sig: i32, restart: bool) -> bool {
    let Some(s) = current_lent() else {
        return false;
    };
    if (1..=64).contains(&sig) {
        s.pending.fetch_or(1 << (sig - 1), Ordering::AcqRel);
        s.sig
            .fetch_or(if restart { 1 } else { 3 }, Ordering::AcqRel);
    }
    true
}

/// In our world during an LKL call: whether a signal was handled since the last
/// check (any, for `poll`, which is never restarted).
pub(crate) fn take_signal() -> bool {
    take_signals() != 0
}

/// Records in the thread block just put on (the shadow's) that it is lent as `shadow`.
/// Never inlined, and neither is [`in_world_lent`]: the compiler takes the thread
/// pointer for constant within a function, so a thread-local touched in the function
/// that swaps `%fs` could reach the program's thread block instead of ours.
#[inline(never)]
fn set_lent(shadow: &'static Shadow) {
    LENT.with(|c| c.set(shadow as *const Shadow as usize));
}

/// In our world: the lent shadow this thread wears (its thread block says which).
#[inline(never)]
fn in_world_lent() -> Option<&'static Shadow> {
    match LENT.with(Cell::get) {
        0 => current_lent(),
        // SAFETY: set by `enter_with` to an entry of the static TABLE.
        p => Some(unsafe { &*(p as *const Shadow) }),
    }
}

/// Like [`take_signals`], without clearing them.
pub(crate) fn peek_signals() -> u8 {
    in_world_lent().map_or(0, |s| s.sig.load(Ordering::Acquire))
}

/// Like [`take_signal`], as bits: 1 any signal, 2 one whose handler lacks
/// `SA_RESTART` (it ends a restartable call with `EINTR`).
pub(crate) fn take_signals() -> u8 {
    in_world_lent().map_or(0, |s| s.sig.swap(0, Ordering::AcqRel))
}

/// Sets `%fs` (for the signal wrapper).
pub(crate) fn switch_fs(v: u64) {
    set_fs(v);
}
