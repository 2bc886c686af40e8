//! The assembly entry stub (see `entry_x86_64.S` for its contract) and the statics it
//! reads.

use core::sync::atomic::{AtomicU64, AtomicU8};

use crate::sys;

/// Routing of each syscall number (see the `.S` file): 0 fast, 1 hook, 2 special, 3 hook
/// when the fd in the first argument is marked in [`crate::FD_MARK`].
pub(crate) static ROUTE: [AtomicU8; ROUTES] = [const { AtomicU8::new(0) }; ROUTES];
/// Number of entries in [`ROUTE`]: the stub sees numbers below 4096 (page 0).
pub(crate) const ROUTES: usize = 4096;
/// Bytes the hook path reserves for XSAVE (CPUID.(EAX=0DH,ECX=0):EBX plus slack).
pub(crate) static XSAVE_SIZE: AtomicU64 = AtomicU64::new(4096);
/// The vfork slot table: 64 entries of (rsp key, return address, the interposer
/// block's saved word, a spill word).
pub(crate) static VFORK_SLOTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Register frame built by the hook path. Field order is the push order reversed.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    /// First argument.
    pub rdi: u64,
    /// Second argument.
    pub rsi: u64,
    /// Third argument.
    pub rdx: u64,
    /// Fourth argument.
    pub r10: u64,
    /// Fifth argument.
    pub r8: u64,
    /// Sixth argument.
    pub r9: u64,
    /// Syscall number on entry, result on return.
    pub rax: u64,
}

extern "C" fn hook_trampoline(frame: &mut Frame) -> u64 {
    crate::hook::on_syscall(frame)
}

core::arch::global_asm!(
    include_str!("entry_x86_64.S"),
    // Dispatch and the hook path.
    route = sym ROUTE,
    fd_mark = sym crate::FD_MARK,
    hook = sym hook_trampoline,
    xsave_size = sym XSAVE_SIZE,
    // In place: is the thread on a signal stack (sigaltstack's SS_ONSTACK)?
    nr_sigaltstack = const sys::NR_SIGALTSTACK,
    ss_onstack = const sys::SS_ONSTACK,
    // The interposer block: the switch, then the offsets of its fields.
    stacks_on = sym crate::stack::STACKS_ON,
    zb_saved = const crate::stack::ZB_SAVED,
    zb_nowner = const crate::stack::ZB_NOWNER,
    zb_top = const crate::stack::ZB_TOP,
    zb_lo = const crate::stack::ZB_LO,
    zb_tid = const crate::stack::ZB_TID,
    // The attach path: its spin lock and bootstrap stack.
    attach = sym crate::stack::attach,
    attach_lock = sym crate::stack::ATTACH_LOCK,
    boot_stack = sym crate::stack::BOOT_STACK,
    boot_size = const crate::stack::BOOT_SIZE,
    // rt_sigprocmask(SIG_BLOCK, all) around it, and SIG_SETMASK back.
    all_signals = sym crate::stack::ALL_SIGNALS,
    nr_rt_sigprocmask = const sys::NR_RT_SIGPROCMASK,
    sig_block = const sys::SIG_BLOCK,
    sig_setmask = const sys::SIG_SETMASK,
    kernel_sigset = const sys::KERNEL_SIGSET,
    // The numbers the special paths tell apart.
    nr_rt_sigreturn = const sys::NR_RT_SIGRETURN,
    nr_clone = const sys::NR_CLONE,
    nr_vfork = const sys::NR_VFORK,
    nr_clone3 = const sys::NR_CLONE3,
    // Fork-like or vfork-like children.
    clone_vfork = const sys::CLONE_VFORK,
    slots = sym VFORK_SLOTS,
    forked = sym crate::FORKED,
    // Syscall User Dispatch re-armed in a new child, when it is on:
    // prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, start, len, selector).
    sud_on = sym crate::sud::ENABLED,
    nr_prctl = const sys::NR_PRCTL,
    pr_set_syscall_user_dispatch = const sys::PR_SET_SYSCALL_USER_DISPATCH,
    pr_sys_dispatch_on = const sys::PR_SYS_DISPATCH_ON,
    sud_start = sym crate::sud::ALLOW_START,
    sud_len = sym crate::sud::ALLOW_LEN,
    sud_selector = sym crate::sud::SELECTOR,
    options(att_syntax)
);

extern "C" {
    /// The entry stub. Not callable from Rust: only the sled jumps here.
    pub(crate) fn zpoline_entry();
    /// The entry stub that keeps the hook on the caller's stack (no FSGSBASE).
    pub(crate) fn zpoline_entry_in_place();
    /// `syscall`, then return to the address at rsp (numbers past page 0).
    pub(crate) fn zp_raw_syscall();
    /// `rt_sigreturn` restorer for our own signal handlers.
    pub(crate) fn zp_restore_rt();
}

/// Address of the entry stub: the one that switches to the per-thread interposer
/// stack when the CPU allows it (see [`crate::stack`]), else the one that stays on the
/// caller's stack.
pub fn entry_address() -> u64 {
    if crate::stack::enabled() {
        zpoline_entry as *const () as usize as u64
    } else {
        zpoline_entry_in_place as *const () as usize as u64
    }
}

/// Address of the stub's plain `syscall; return` for numbers past page 0.
pub(crate) fn raw_syscall_address() -> u64 {
    zp_raw_syscall as *const () as usize as u64
}

/// Address of our signal restorer.
pub(crate) fn restorer_address() -> u64 {
    zp_restore_rt as *const () as usize as u64
}

/// Reads CPUID leaf 0xD and stores the XSAVE area size the hook path needs.
pub(crate) fn init_xsave_size() -> Result<(), crate::Error> {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return Err(crate::Error::NoXsave);
    }
    // Leaf 0xD exists when OSXSAVE is set.
    let d = core::arch::x86_64::__cpuid_count(0xD, 0);
    XSAVE_SIZE.store(u64::from(d.ebx) + 64, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}
