//! Syscall User Dispatch fallback: a `syscall` the rewriter never saw (JIT code, a site
//! the sweep missed, the vDSO's fallback) raises SIGSYS instead of reaching the kernel,
//! and our handler sends it into the entry stub as if a rewritten site had called it.
//!
//! The kernel lets through every syscall issued from one allowed address range: we give
//! it the executable mapping that holds our own code (the stub and the raw syscalls of
//! the hook). The selector byte stays at BLOCK for the life of the process.
//!
//! Cost: with SUD on, *every* syscall of the task takes the kernel's slow entry path
//! (measured here: about +28 ns per syscall, allowed ones included). So by default SUD
//! is armed lazily ([`Mode::Lazy`]): the SIGSYS handler is installed at start, and SUD
//! is switched on only when the program creates memory that is writable and executable
//! at once (a JIT), or maps shared executable memory we do not rewrite. Arming then
//! covers the calling thread, signals every other thread to arm itself, and new tasks
//! arm themselves in the stub's clone paths. Code made executable by `mprotect` after
//! it was written (W^X JITs) is rewritten by the hook and needs no SUD.
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::sys::{
    GREGS, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, REG_RAX, REG_RIP, REG_RSP, SA_RESTART,
    SA_RESTORER, SA_SIGINFO, SIGSYS, SYSCALL_DISPATCH_FILTER_BLOCK,
};
use crate::{sys, syscall6, Error};

/// `si_code` of a Syscall User Dispatch `SIGSYS` (`<asm-generic/siginfo.h>`).
const SYS_USER_DISPATCH: i32 = 2;
const SI_TKILL: i32 = libc::SI_TKILL;

/// The selector byte the kernel reads on every syscall outside the allowed range.
pub(crate) static SELECTOR: AtomicU8 = AtomicU8::new(0);
/// Set once SUD is on; new tasks turn it on again (the kernel does not inherit it).
pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);
/// Set once our SIGSYS handler is installed (the hook then keeps SIGSYS to itself).
static HANDLER: AtomicBool = AtomicBool::new(false);
/// Lazy mode: arm on the first writable+executable mapping.
static LAZY: AtomicBool = AtomicBool::new(false);

/// When Syscall User Dispatch is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the start: every syscall pays the kernel's slow entry path.
    Always,
    /// On the first writable+executable mapping (default).
    Lazy,
    /// Never.
    Never,
}
/// The allowed range, for new tasks.
pub(crate) static ALLOW_START: AtomicU64 = AtomicU64::new(0);
/// Length of the allowed range.
pub(crate) static ALLOW_LEN: AtomicU64 = AtomicU64::new(0);

/// The kernel's `struct sigaction` for `rt_sigaction` (not libc's: the
/// fields are in the kernel's order, with the restorer and a 64-bit mask).
#[repr(C)]
pub(crate) struct KernelSigaction {
    pub(crate) handler: u64,
    pub(crate) flags: u64,
    pub(crate) restorer: u64,
    pub(crate) mask: u64,
}

/// `rt_sigaction(sig, new, old)` with the kernel's structure: the raw result.
///
/// # Safety
/// `new`'s handler and restorer (when set) must be code that may run as `sig`'s
/// handler: ours, or one the program installed itself.
pub(crate) unsafe fn rt_sigaction(
    sig: u64,
    new: Option<&KernelSigaction>,
    old: Option<&mut KernelSigaction>,
) -> i64 {
    let n = new.map_or(0, |a| a as *const KernelSigaction as u64);
    let o = old.map_or(0, |a| a as *mut KernelSigaction as u64);
    // SAFETY: both pointers are null or our caller's sigaction structures; what
    // the new action runs is the caller's promise.
    unsafe { syscall6(sys::NR_RT_SIGACTION, [sig, n, o, sys::KERNEL_SIGSET, 0, 0]) }
}

extern "C" fn on_sigsys(_sig: i32, info: *mut u8, uc: *mut u8) {
    // SAFETY: the kernel passes a valid siginfo_t and ucontext_t; si_code is at offset
    // 8, si_syscall at 24 (the `_sigsys` member), gregs at 40 in ucontext_t.
    unsafe {
        let code = *(info.add(8) as *const i32);
        if code == SI_TKILL && LAZY.load(Ordering::Relaxed) {
            // Another thread armed SUD and asks this one to follow.
            arm_current();
            return;
        }
        if code != SYS_USER_DISPATCH {
            return;
        }
        // The call goes through the entry stub as if a rewritten site had made it:
        // push the return address (the 8 bytes below rsp, as `call *%rax` does), point
        // rip at the stub. The hook then runs on the thread's interposer stack, and the
        // special paths (clone, vfork, rt_sigreturn) work as for rewritten sites.
        let nr = *(info.add(24) as *const i32) as u32 as u64;
        let g = uc.add(GREGS) as *mut u64;
        let rsp = *g.add(REG_RSP) - 8;
        *(rsp as *mut u64) = *g.add(REG_RIP);
        *g.add(REG_RSP) = rsp;
        *g.add(REG_RAX) = nr;
        *g.add(REG_RIP) = if nr < crate::sled::PAGE as u64 {
            crate::entry_address()
        } else {
            crate::entry_x86_64::raw_syscall_address()
        };
    }
}

/// True once SUD is armed in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// True once our SIGSYS handler is installed.
pub(crate) fn handler_installed() -> bool {
    HANDLER.load(Ordering::Relaxed)
}

/// Sets Syscall User Dispatch up, allowing syscalls from
/// `[allow_start, allow_start + allow_len)`: installs the SIGSYS handler, and arms SUD
/// on the calling thread now ([`Mode::Always`]) or later ([`Mode::Lazy`]).
///
/// # Errors
/// [`Error::Sigaction`] or [`Error::Sud`] with the kernel's errno.
pub fn enable(allow_start: u64, allow_len: u64, mode: Mode) -> Result<(), Error> {
    if mode == Mode::Never {
        return Ok(());
    }
    let act = KernelSigaction {
        handler: on_sigsys as *const () as usize as u64,
        flags: SA_SIGINFO | SA_RESTORER | SA_RESTART,
        restorer: crate::entry_x86_64::restorer_address(),
        mask: 0,
    };
    // SAFETY: `act` is a valid kernel sigaction; the handler and restorer are ours.
    let r = unsafe { rt_sigaction(SIGSYS, Some(&act), None) };
    if r < 0 {
        return Err(Error::Sigaction(-r as i32));
    }
    HANDLER.store(true, Ordering::Relaxed);
    SELECTOR.store(SYSCALL_DISPATCH_FILTER_BLOCK, Ordering::SeqCst);
    ALLOW_START.store(allow_start, Ordering::Relaxed);
    ALLOW_LEN.store(allow_len, Ordering::Relaxed);
    if mode == Mode::Lazy {
        LAZY.store(true, Ordering::Relaxed);
        return Ok(());
    }
    let r = arm_current();
    if r < 0 {
        return Err(Error::Sud(-r as i32));
    }
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Turns Syscall User Dispatch off on the calling thread, if the process has it armed,
/// for code of ours outside the allowed range (the LKL backend runs our libc there on a
/// borrowed thread block); true when it did. [`resume`] turns it on again.
pub fn suspend() -> bool {
    if !enabled() {
        return false;
    }
    // SAFETY: prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF) has no pointers.
    unsafe { syscall6(sys::NR_PRCTL, [PR_SET_SYSCALL_USER_DISPATCH, 0, 0, 0, 0, 0]) };
    true
}

/// Turns Syscall User Dispatch on again on the calling thread after [`suspend`].
pub fn resume() {
    arm_current();
}

/// prctl(PR_SET_SYSCALL_USER_DISPATCH, ON) for the calling thread.
fn arm_current() -> i64 {
    // SAFETY: SELECTOR is a static byte that lives as long as the process.
    unsafe {
        syscall6(
            sys::NR_PRCTL,
            [
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_ON,
                ALLOW_START.load(Ordering::Relaxed),
                ALLOW_LEN.load(Ordering::Relaxed),
                SELECTOR.as_ptr() as u64,
                0,
            ],
        )
    }
}

/// Lazy mode: arms SUD in every thread of the process, once. Called by the hook when
/// a writable+executable mapping appears. Other threads get a SIGSYS with
/// `SI_TKILL`, and the handler arms them.
pub(crate) fn arm_all() {
    if !LAZY.load(Ordering::Relaxed) || ENABLED.swap(true, Ordering::SeqCst) {
        return;
    }
    arm_current();
    // SAFETY: getpid/gettid have no arguments.
    let (pid, me) = unsafe {
        (
            syscall6(sys::NR_GETPID, [0; 6]),
            syscall6(sys::NR_GETTID, [0; 6]),
        )
    };
    // SAFETY: opening a constant path read-only as a directory.
    let fd = unsafe {
        syscall6(
            sys::NR_OPENAT,
            [
                sys::AT_FDCWD,
                c"/proc/self/task".as_ptr() as u64,
                sys::O_DIRECTORY | sys::O_CLOEXEC,
                0,
                0,
                0,
            ],
        )
    };
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 2048];
    loop {
        let n = sys::getdents64(fd as i32, &mut buf);
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            let reclen = u16::from_le_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let tid = name
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .fold(0i64, |a, c| a * 10 + i64::from(c - b'0'));
            if tid > 0 && tid != me {
                // SAFETY: tgkill of a thread of our own process with our handled signal.
                unsafe { syscall6(sys::NR_TGKILL, [pid as u64, tid as u64, SIGSYS, 0, 0, 0]) };
            }
            if reclen == 0 {
                break;
            }
            off += reclen;
        }
    }
    // SAFETY: closing our directory descriptor.
    unsafe { syscall6(sys::NR_CLOSE, [fd as u64, 0, 0, 0, 0, 0]) };
}

/// Turns Syscall User Dispatch on in a new task (a fork child) if it was on in the
/// parent.
pub(crate) fn reenable_in_child() {
    if enabled() {
        arm_current();
    }
}
