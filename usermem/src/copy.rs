//! In-process copies that survive a bad pointer: the routines of `copy_x86_64.S`, and
//! what a SIGSEGV handler needs to recover from their faults.
//!
//! They are used only once [`enable`] says a handler that calls [`fault_fixup`] owns
//! SIGSEGV (zpoline's trampoline does, in every mode), and only while SIGSEGV is not
//! blocked in the calling thread: a fault with SIGSEGV blocked is one the kernel turns
//! into death, so then the copy goes through `process_vm_readv`/`process_vm_writev` as
//! before (see the crate doc).

use core::sync::atomic::{AtomicBool, Ordering};

core::arch::global_asm!(include_str!("copy_x86_64.S"), options(att_syntax));

extern "C" {
    fn usermem_copy_bytes(dst: *mut u8, src: *const u8, n: usize) -> i64;
    fn usermem_copy_str(dst: *mut u8, src: *const u8, n: usize) -> i64;
    static usermem_copy_start: u8;
    static usermem_copy_end: u8;
    static usermem_copy_fault: u8;
}

/// The in-process copies are switched on (they are used while SIGSEGV is not blocked).
static ON: AtomicBool = AtomicBool::new(false);

/// SIGSEGV's bit in the kernel's signal mask.
const SEGV_BIT: u64 = 1 << (libc::SIGSEGV - 1);

/// Switches the in-process copies on.
///
/// # Safety
/// The process's SIGSEGV handler must, for a fault the CPU raised (`si_code > 0`) at a
/// `rip` for which [`fault_fixup`] answers, set `rip` to that answer and return, before
/// anything else; and it must stay installed for the process's life.
pub unsafe fn enable() {
    ON.store(true, Ordering::Release);
}

/// True when the in-process copies are switched on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Where a SIGSEGV raised by the CPU at `rip` must resume: the recovery label, when
/// `rip` lies in one of the copy routines (the program gave a bad pointer); `None`
/// for any other fault.
#[inline]
pub fn fault_fixup(rip: u64) -> Option<u64> {
    // Only the labels' addresses are taken.
    let (start, end, fault) = (
        core::ptr::addr_of!(usermem_copy_start) as u64,
        core::ptr::addr_of!(usermem_copy_end) as u64,
        core::ptr::addr_of!(usermem_copy_fault) as u64,
    );
    (start..end).contains(&rip).then_some(fault)
}

/// True when a copy may be made in process now: switched on, and SIGSEGV not blocked
/// in this thread (one `rt_sigprocmask` reading the mask).
#[inline]
pub(crate) fn usable() -> bool {
    if !ON.load(Ordering::Acquire) {
        return false;
    }
    let mut mask = 0u64;
    // SAFETY: rt_sigprocmask(SIG_BLOCK, NULL, &mask, 8) only reads the mask.
    let r = unsafe {
        crate::raw::syscall5(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK as u64,
            0,
            &mut mask as *mut u64 as u64,
            crate::KERNEL_SIGSET_SIZE as u64,
            0,
        )
    };
    r == 0 && mask & SEGV_BIT == 0
}

/// Copies `n` bytes from `src` to `dst`, one of them the program's; false on a fault.
///
/// # Safety
/// [`usable`] said yes in this thread; our side of the copy is valid for `n` bytes.
#[inline]
pub(crate) unsafe fn bytes(dst: *mut u8, src: *const u8, n: usize) -> bool {
    // SAFETY: the caller's contract; a fault in the program's range returns -1.
    unsafe { usermem_copy_bytes(dst, src, n) == 0 }
}

/// Copies the program's string at `src` into `dst` (`n` bytes at most): its length
/// when it ends within them, `n` when not, `None` on a fault.
///
/// # Safety
/// [`usable`] said yes in this thread; `dst` is valid for `n` bytes.
#[inline]
pub(crate) unsafe fn string(dst: *mut u8, src: *const u8, n: usize) -> Option<usize> {
    // SAFETY: the caller's contract; a fault in the program's string returns -1.
    let r = unsafe { usermem_copy_str(dst, src, n) };
    usize::try_from(r).ok()
}
