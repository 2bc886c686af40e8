//! The assembly entry stub (see `entry_x86_64.S` for its contract) and the statics it
//! reads.

use core::sync::atomic::{AtomicU64, AtomicU8};

/// Routing of each syscall number (see the `.S` file): 0 fast, 1 hook, 2 special, 3 hook
/// when the fd in the first argument is marked in [`crate::FD_MARK`].
pub(crate) static ROUTE: [AtomicU8; ROUTES] = [const { AtomicU8::new(0) }; ROUTES];
/// Number of entries in [`ROUTE`]; the sled never yields a number past 512.
pub(crate) const ROUTES: usize = 1024;
/// Bytes the hook path reserves for XSAVE (CPUID.(EAX=0DH,ECX=0):EBX plus slack).
pub(crate) static XSAVE_SIZE: AtomicU64 = AtomicU64::new(4096);
/// The vfork slot table: 64 pairs of (rsp key, return address).
pub(crate) static VFORK_SLOTS: [AtomicU64; 128] = [const { AtomicU64::new(0) }; 128];

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
    route = sym ROUTE,
    hook = sym hook_trampoline,
    xsave_size = sym XSAVE_SIZE,
    slots = sym VFORK_SLOTS,
    fd_mark = sym crate::FD_MARK,
    forked = sym crate::FORKED,
    sud_on = sym crate::sud::ENABLED,
    sud_start = sym crate::sud::ALLOW_START,
    sud_len = sym crate::sud::ALLOW_LEN,
    sud_selector = sym crate::sud::SELECTOR,
    options(att_syntax)
);

extern "C" {
    /// The entry stub. Not callable from Rust: only the sled jumps here.
    pub(crate) fn zpoline_entry();
    /// `rt_sigreturn` restorer for our own signal handlers.
    pub(crate) fn zp_restore_rt();
}

/// Address of the entry stub.
pub fn entry_address() -> u64 {
    zpoline_entry as *const () as usize as u64
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
