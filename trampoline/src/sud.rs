//! Syscall User Dispatch fallback: a `syscall` the rewriter never saw (JIT code, a site
//! the sweep missed, the vDSO's fallback) raises SIGSYS instead of reaching the kernel,
//! and our handler routes it through the same hook as rewritten sites.
//!
//! The kernel lets through every syscall issued from one allowed address range: we give
//! it the executable mapping that holds our own code (the stub and the raw syscalls of
//! the hook). The selector byte stays at BLOCK for the life of the process.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::hook::{handle, Outcome};
use crate::{syscall6, Error};

const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
const PR_SYS_DISPATCH_ON: u64 = 1;
const SYSCALL_DISPATCH_FILTER_BLOCK: u8 = 1;
const SIGSYS: u64 = 31;
const SYS_USER_DISPATCH: i32 = 2;
const SA_SIGINFO: u64 = 4;
const SA_RESTORER: u64 = 0x0400_0000;

/// The selector byte the kernel reads on every syscall outside the allowed range.
pub(crate) static SELECTOR: AtomicU8 = AtomicU8::new(0);
/// Set once SUD is on; new tasks turn it on again (the kernel does not inherit it).
pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);
/// The allowed range, for new tasks.
pub(crate) static ALLOW_START: AtomicU64 = AtomicU64::new(0);
/// Length of the allowed range.
pub(crate) static ALLOW_LEN: AtomicU64 = AtomicU64::new(0);

#[repr(C)]
struct KernelSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

/// Offsets into `ucontext_t.uc_mcontext.gregs` (x86-64 `REG_*`).
const GREGS: usize = 40;
const REG_R8: usize = 0;
const REG_R9: usize = 1;
const REG_R10: usize = 2;
const REG_RDI: usize = 8;
const REG_RSI: usize = 9;
const REG_RDX: usize = 12;
const REG_RAX: usize = 13;

extern "C" fn on_sigsys(_sig: i32, info: *mut u8, uc: *mut u8) {
    // SAFETY: the kernel passes a valid siginfo_t and ucontext_t; si_code is at offset
    // 8, si_syscall at 24 (the `_sigsys` member), gregs at 40 in ucontext_t.
    unsafe {
        if *(info.add(8) as *const i32) != SYS_USER_DISPATCH {
            return;
        }
        let nr = *(info.add(24) as *const i32) as u64;
        let g = uc.add(GREGS) as *mut u64;
        let args = [
            *g.add(REG_RDI),
            *g.add(REG_RSI),
            *g.add(REG_RDX),
            *g.add(REG_R10),
            *g.add(REG_R8),
            *g.add(REG_R9),
        ];
        let r = match handle(nr, &args, false) {
            Outcome::Done(r) => r,
            Outcome::Special => -38,
        };
        *g.add(REG_RAX) = r as u64;
    }
}

/// True once [`enable`] succeeded in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs our SIGSYS handler and turns Syscall User Dispatch on for the calling
/// thread, allowing syscalls from `[allow_start, allow_start + allow_len)`.
///
/// # Errors
/// [`Error::Sigaction`] or [`Error::Sud`] with the kernel's errno.
pub fn enable(allow_start: u64, allow_len: u64) -> Result<(), Error> {
    let act = KernelSigaction {
        handler: on_sigsys as *const () as usize as u64,
        flags: SA_SIGINFO | SA_RESTORER,
        restorer: crate::entry_x86_64::restorer_address(),
        mask: 0,
    };
    // SAFETY: `act` is a valid kernel sigaction; the handler and restorer are ours.
    let r = unsafe { syscall6(13, [SIGSYS, &act as *const _ as u64, 0, 8, 0, 0]) };
    if r < 0 {
        return Err(Error::Sigaction(-r as i32));
    }
    SELECTOR.store(SYSCALL_DISPATCH_FILTER_BLOCK, Ordering::SeqCst);
    // SAFETY: SELECTOR is a static byte that lives as long as the process.
    let r = unsafe {
        syscall6(
            157,
            [
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_ON,
                allow_start,
                allow_len,
                SELECTOR.as_ptr() as u64,
                0,
            ],
        )
    };
    if r < 0 {
        return Err(Error::Sud(-r as i32));
    }
    ALLOW_START.store(allow_start, Ordering::Relaxed);
    ALLOW_LEN.store(allow_len, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Turns Syscall User Dispatch on in a new task (a fork child) if it was on in the
/// parent.
pub(crate) fn reenable_in_child() {
    if !enabled() {
        return;
    }
    // SAFETY: SELECTOR is a static byte that lives as long as the process.
    unsafe {
        syscall6(
            157,
            [
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_ON,
                ALLOW_START.load(Ordering::Relaxed),
                ALLOW_LEN.load(Ordering::Relaxed),
                SELECTOR.as_ptr() as u64,
                0,
            ],
        )
    };
}
