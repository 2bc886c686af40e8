//! The program's signal handlers run with the program's `%fs`, even when the signal
//! arrives during an LKL call (while the thread wears a shadow's thread block, see
//! [`crate::world`]).
//!
//! `rt_sigaction` of a handler installs [`wrapper`] instead, with the program's flags,
//! mask and restorer; the program's handler is kept in [`HANDLERS`]. Outside an LKL
//! call the wrapper calls the handler. During one (`%fs` is a lent shadow's) it records
//! the signal, and the handler runs when the call ends (re-raised with `tgkill`); a
//! fault signal cannot wait, so its handler runs at once with the program's `%fs` put
//! back, and the shadow's after. `SIG_DFL` and `SIG_IGN` are installed as
//! they are. The old action reported to the program names its own handler, never the
//! wrapper. Blocking signals around each LKL call instead would cost two host
//! syscalls per call.

use core::sync::atomic::{AtomicU64, Ordering};

use usermem::UserAddr;

use crate::helpers::sys;

/// The program's handler for each signal (0: none of ours installed).
static HANDLERS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];
/// The `sa_flags` the program gave with each handler.
static FLAGS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];
/// How many signals other than faults have a program handler (wrapped) installed.
static WRAPPED: AtomicU64 = AtomicU64::new(0);

/// True when the program has a handler for some signal: blocking LKL calls then wait
/// in slices, so that a handled signal can end them (see `crate::blocking`).
pub(crate) fn any_handler() -> bool {
    WRAPPED.load(Ordering::Relaxed) != 0
}

type Handler = unsafe extern "C" fn(i32, *mut libc::c_void, *mut libc::c_void);

/// Installed in place of every program handler.
unsafe extern "C" fn wrapper(sig: i32, info: *mut libc::c_void, uc: *mut libc::c_void) {
    // A fault (a bad pointer the program gave LKL, say) cannot wait: the instruction
    // would fault again on return. Its handler runs at once, as natively.
    let fault = is_fault(sig);
    let restart = FLAGS
        .get(sig as usize)
        .is_some_and(|f| f.load(Ordering::Relaxed) & libc::SA_RESTART as u64 != 0);
    // During an LKL call the handler waits for the call to end: LKL may hand its CPU
    // to this thread's sleeping task at any moment, and a handler that called LKL
    // meanwhile would wait for that CPU forever. Waits that may last are sliced
    // (`crate::blocking`, `crate::wait`), so the handler runs within 20 ms.
    if !fault && crate::world::defer_signal(sig, restart) {
        return;
    }
    let lent = crate::world::owner_of_current(restart);
    let fs = trampoline::alloc::fs_base();
    if let Some(prog) = lent {
        crate::world::switch_fs(prog);
    }
    let h = HANDLERS
        .get(sig as usize)
        .map_or(0, |h| h.load(Ordering::Acquire));
    if h > 1 {
        // SAFETY: the handler the program installed for `sig`; SA_SIGINFO or not, the
        // three-argument call is what the kernel itself makes.
        unsafe { core::mem::transmute::<u64, Handler>(h)(sig, info, uc) };
    }
    if lent.is_some() {
        crate::world::switch_fs(fs);
    }
}

/// A synchronous fault signal: its handler never waits for an LKL call to end, and
/// does not count as a reason to slice waits (Rust's runtime installs SIGSEGV/SIGBUS
/// handlers in every program).
fn is_fault(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP
    )
}

/// Keeps [`WRAPPED`] right when a signal's action goes from `from` to `to`.
fn count_handlers(from: u64, to: u64) {
    match (from > 1, to > 1) {
        (false, true) => {
            WRAPPED.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            WRAPPED.fetch_sub(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// `rt_sigaction(sig, act, oact, sigsetsize)` with handlers wrapped.
pub(crate) fn sigaction(args: &[u64; 6]) -> i64 {
    let (sig, act, oact) = (args[0] as usize, args[1], args[2]);
    if sig == 0 || sig >= HANDLERS.len() {
        // SAFETY: the program's own call, which the kernel validates.
        return unsafe { sys(libc::SYS_rt_sigaction, *args) };
    }
    let mut copy = [0u64; 4];
    let mut a = *args;
    let mut prev = None;
    if act != 0 {
        // The program's kernel sigaction {handler, flags, restorer, mask}.
        copy = match UserAddr::new(act).read::<[u64; 4]>() {
            Ok(c) => c,
            Err(f) => return f.neg_errno(),
        };
        let before = HANDLERS[sig].swap(copy[0], Ordering::AcqRel);
        if !is_fault(sig as i32) {
            count_handlers(before, copy[0]);
        }
        FLAGS[sig].store(copy[1], Ordering::Relaxed);
        prev = Some(before);
        if copy[0] > 1 {
            copy[0] = wrapper as *const () as usize as u64;
        }
        a[1] = copy.as_ptr() as u64;
    }
    // SAFETY: our copy of the program's action, the program's oact buffer.
    let r = unsafe { sys(libc::SYS_rt_sigaction, a) };
    if r < 0 {
        if let Some(p) = prev {
            HANDLERS[sig].store(p, Ordering::Release);
            if !is_fault(sig as i32) {
                count_handlers(copy[0], p);
            }
        }
        return r;
    }
    if oact != 0 {
        // The kernel just wrote a sigaction there.
        let at = UserAddr::new(oact);
        if at.read::<u64>() == Ok(wrapper as *const () as usize as u64) {
            let mine = prev.unwrap_or_else(|| HANDLERS[sig].load(Ordering::Acquire));
            if let Err(f) = at.write(&mine) {
                return f.neg_errno();
            }
        }
    }
    r
}
