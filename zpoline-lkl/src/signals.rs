//! The program's signal handlers run with the program's `%fs`, even when the signal
//! arrives during an LKL call (while the thread wears a shadow's thread block, see
//! [`crate::world`]).
//!
//! `rt_sigaction` of a handler installs [`wrapper`] instead, with the program's flags,
//! mask and restorer; the program's handler is kept in [`HANDLERS`]. The wrapper
//! checks whether `%fs` is a lent shadow's; if so it puts the program's back for the
//! handler and the shadow's again after. `SIG_DFL` and `SIG_IGN` are installed as
//! they are. The old action reported to the program names its own handler, never the
//! wrapper. Blocking signals around each LKL call instead would cost two host
//! syscalls per call.

use core::sync::atomic::{AtomicU64, Ordering};

use trampoline::syscall6;

/// The program's handler for each signal (0: none of ours installed).
static HANDLERS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];
/// The `sa_flags` the program gave with each handler.
static FLAGS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];
/// How many signals have a program handler (wrapped) installed.
static WRAPPED: AtomicU64 = AtomicU64::new(0);

/// True when the program has a handler for some signal: blocking LKL calls then wait
/// in slices, so that a handled signal can end them (see `crate::blocking`).
pub(crate) fn any_handler() -> bool {
    WRAPPED.load(Ordering::Relaxed) != 0
}

type Handler = unsafe extern "C" fn(i32, *mut libc::c_void, *mut libc::c_void);

/// Our executable mappings (lkl-run, our libc, ld.so, the vDSO), as (start, end).
static OURS: [(AtomicU64, AtomicU64); 32] = [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 32];

/// Records our executable mappings; call before the program is mapped.
pub(crate) fn init() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut n = 0;
    for l in maps.lines() {
        let mut it = l.split_whitespace();
        let (Some(range), Some(perm)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        if perm.as_bytes().get(2) != Some(&b'x') || n == OURS.len() {
            continue;
        }
        if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
            OURS[n].0.store(a, Ordering::Relaxed);
            OURS[n].1.store(b, Ordering::Relaxed);
            n += 1;
        }
    }
}

fn ours(addr: u64) -> bool {
    OURS.iter().any(|(a, b)| {
        let (a, b) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        a <= addr && addr < b
    })
}

/// True when the interrupted context (`uc`) sleeps in a futex wait of our code: an LKL
/// call waiting for its task to be scheduled (or for LKL's CPU), not holding it. Then
/// the handler may run at once, and may itself call LKL (on a second shadow).
fn in_futex_wait(uc: *mut libc::c_void) -> bool {
    if uc.is_null() {
        return false;
    }
    // SAFETY: the kernel's ucontext: gregs start at byte 40 (glibc's REG_* order).
    let reg = |i: usize| unsafe {
        core::ptr::read_unaligned((uc as *const u8).add(40 + 8 * i) as *const u64)
    };
    let (rsi, rax, rip) = (reg(9), reg(13), reg(16));
    // A restarted call points at the `syscall` with rax = its number (202) or
    // restart_syscall (219); an interrupted one is just past it with -EINTR.
    let at = match rax {
        202 | 219 => rip,
        r if r as i64 == -4 => rip.wrapping_sub(2),
        _ => return false,
    };
    if !ours(at) {
        return false;
    }
    // SAFETY: `at` is inside one of our executable mappings, which are readable.
    let insn = unsafe { core::ptr::read_unaligned(at as *const [u8; 2]) };
    let op = rsi & 0x7f;
    insn == [0x0f, 0x05] && (op == 0 || op == 9)
}

/// Installed in place of every program handler.
unsafe extern "C" fn wrapper(sig: i32, info: *mut libc::c_void, uc: *mut libc::c_void) {
    // A fault (a bad pointer the program gave LKL, say) cannot wait: the instruction
    // would fault again on return. Its handler runs at once, as natively.
    let fault = matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP
    );
    if !fault && crate::world::is_lent() && !in_futex_wait(uc) {
        // The thread may hold LKL's CPU: the handler runs when the call returns.
        crate::world::defer_signal(sig);
        return;
    }
    let restart = FLAGS
        .get(sig as usize)
        .is_some_and(|f| f.load(Ordering::Relaxed) & libc::SA_RESTART as u64 != 0);
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
        return unsafe { syscall6(13, *args) };
    }
    let mut copy = [0u64; 4];
    let mut a = *args;
    let mut prev = None;
    if act != 0 {
        // SAFETY: the program passed a kernel sigaction {handler, flags, restorer, mask}.
        copy.copy_from_slice(&unsafe { core::ptr::read_unaligned(act as *const [u64; 4]) });
        let before = HANDLERS[sig].swap(copy[0], Ordering::AcqRel);
        count_handlers(before, copy[0]);
        FLAGS[sig].store(copy[1], Ordering::Relaxed);
        prev = Some(before);
        if copy[0] > 1 {
            copy[0] = wrapper as *const () as usize as u64;
        }
        a[1] = copy.as_ptr() as u64;
    }
    // SAFETY: our copy of the program's action, the program's oact buffer.
    let r = unsafe { syscall6(13, a) };
    if r < 0 {
        if let Some(p) = prev {
            HANDLERS[sig].store(p, Ordering::Release);
            count_handlers(copy[0], p);
        }
        return r;
    }
    if oact != 0 {
        // SAFETY: the kernel just wrote a sigaction there.
        let old = unsafe { core::ptr::read_unaligned(oact as *const u64) };
        if old == wrapper as *const () as usize as u64 {
            let mine = prev.unwrap_or_else(|| HANDLERS[sig].load(Ordering::Acquire));
            // SAFETY: as above.
            unsafe { core::ptr::write_unaligned(oact as *mut u64, mine) };
        }
    }
    r
}
