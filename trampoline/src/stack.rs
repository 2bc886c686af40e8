//! Per-thread interposer stacks: the hook path of the entry stub never runs on the
//! program's stack.
//!
//! Programs give their threads small stacks (Go: 8 KiB goroutine stacks, 16 KiB for
//! its `g0`), while the hook needs kilobytes (XSAVE of AVX-512 state, our frames, LKL's
//! kernel code for a socket call: about 16 KiB). So each thread that takes the hook
//! path gets a [`Block`]: a 256 KiB stack of ours, mapped with a guard page below it,
//! and a header the stub reads through the `%gs` base. x86-64 Linux programs leave
//! `%gs` alone (glibc and Go keep their thread pointer in `%fs`).
//!
//! The stub's fast test is two register reads and a load: `%gs` base non-zero, and the
//! header's owner is this thread's `%fs` base. A thread inherits its creator's `%gs`
//! base, but gets its own `%fs` (`CLONE_SETTLS`), so the test fails there, and the
//! stub's clone paths clear `%gs` in every child with its own stack anyway. Then the
//! stub's slow path calls [`attach`] on a shared bootstrap stack, signals blocked,
//! under a spin lock: it finds the thread's block by `gettid` or makes one, and sets
//! `%gs`. A thread without a thread block (`%fs` base 0) takes that path on every
//! hook entry.
//!
//! A block whose thread is gone (`tgkill(pid, tid, 0)` answers `ESRCH`) is reused for
//! the next thread that needs one. Fork children keep their copy of the block they run
//! on, marked never to be reclaimed (its recorded owner is the parent's thread).
//!
//! Without FSGSBASE (`AT_HWCAP2` bit 1) the stub keeps the hook on the caller's stack
//! (see [`crate::entry_x86_64`]).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::{sys, syscall6};

/// Size of each interposer stack.
pub const STACK_SIZE: u64 = 256 << 10;
/// Size of each thread's signal stack for the NULL guard's SIGSEGV entries.
pub const ALT_SIZE: u64 = 64 << 10;
const PAGE: u64 = 4096;
/// Most blocks at once (threads that took the hook path and may still live).
const MAX_BLOCKS: usize = 16384;
/// Blocks checked for a dead owner before a new one is mapped.
const RECLAIM_SCAN: usize = 64;

/// The header of an interposer block, at the `%gs` base. The stub reads the first
/// four fields at fixed offsets (see `entry_x86_64.S`).
#[repr(C, align(64))]
pub(crate) struct Block {
    /// Program rsp of the outermost hook entry; 0 while the stack is free.
    pub(crate) saved: AtomicU64,
    /// Minus the owner's `%fs` base; 1 (never equal) for a thread with `%fs` base 0.
    pub(crate) nowner: AtomicU64,
    /// Top of the stack (exclusive; 64-byte aligned).
    pub(crate) top: AtomicU64,
    /// Lowest address of the stack.
    pub(crate) lo: AtomicU64,
    /// Process of the owner thread.
    pub(crate) pid: AtomicU64,
    /// The owner thread; 0: unknown (a fork child's copy), never reclaimed.
    pub(crate) tid: AtomicU64,
    /// Lowest address of the block's signal stack ([`ALT_SIZE`] bytes).
    pub(crate) alt: AtomicU64,
    /// 1 once the NULL guard made sure this thread has a signal stack.
    pub(crate) alt_checked: AtomicU64,
}

/// Offsets of [`Block`]'s fields, for the stub.
pub(crate) const ZB_SAVED: usize = core::mem::offset_of!(Block, saved);
pub(crate) const ZB_NOWNER: usize = core::mem::offset_of!(Block, nowner);
pub(crate) const ZB_TOP: usize = core::mem::offset_of!(Block, top);
pub(crate) const ZB_LO: usize = core::mem::offset_of!(Block, lo);
pub(crate) const ZB_TID: usize = core::mem::offset_of!(Block, tid);

/// 1 when the stub switches stacks (FSGSBASE available); read by its special paths.
pub(crate) static STACKS_ON: AtomicU8 = AtomicU8::new(0);
/// The stub's attach spin lock.
pub(crate) static ATTACH_LOCK: AtomicU32 = AtomicU32::new(0);
/// Every signal, for the attach path's `rt_sigprocmask(SIG_BLOCK)`.
pub(crate) static ALL_SIGNALS: AtomicU64 = AtomicU64::new(!0);

/// Size of the bootstrap stack [`attach`] runs on.
pub(crate) const BOOT_SIZE: usize = 64 << 10;
/// The bootstrap stack, used under [`ATTACH_LOCK`] only.
#[repr(C, align(64))]
pub(crate) struct BootStack(UnsafeCell<[u8; BOOT_SIZE]>);
// SAFETY: only the thread holding ATTACH_LOCK runs on it.
unsafe impl Sync for BootStack {}
pub(crate) static BOOT_STACK: BootStack = BootStack(UnsafeCell::new([0; BOOT_SIZE]));

/// Every block ever mapped (their headers' addresses).
static BLOCKS: [AtomicU64; MAX_BLOCKS] = [const { AtomicU64::new(0) }; MAX_BLOCKS];
static NBLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Where the next reclaim scan starts.
static CURSOR: AtomicUsize = AtomicUsize::new(0);
/// Blocks mapped so far, for tests and `--trace`.
static MAPPED: AtomicU64 = AtomicU64::new(0);
static FSGSBASE: AtomicBool = AtomicBool::new(false);

/// Decides at install whether the stub switches stacks: it needs `rdgsbase`,
/// `wrgsbase` and `rdfsbase` in user mode.
pub(crate) fn init() {
    // SAFETY: getauxval has no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    let on = hwcap2 & 2 != 0 && std::env::var_os("ZPOLINE_NO_STACK_SWITCH").is_none();
    FSGSBASE.store(on, Ordering::Relaxed);
    STACKS_ON.store(u8::from(on), Ordering::Relaxed);
}

/// True when the hook runs on per-thread interposer stacks.
pub fn enabled() -> bool {
    FSGSBASE.load(Ordering::Relaxed)
}

/// Number of interposer stacks mapped in this process so far.
pub fn mapped() -> u64 {
    MAPPED.load(Ordering::Relaxed)
}

fn fs_base() -> u64 {
    let v: u64;
    // SAFETY: rdfsbase only reads the FS base; called only with FSGSBASE enabled.
    unsafe {
        core::arch::asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

fn gs_base() -> u64 {
    let v: u64;
    // SAFETY: as in `fs_base`.
    unsafe {
        core::arch::asm!("rdgsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Sets the `%fs` base (FSGSBASE only; see [`enabled`]).
pub(crate) fn set_fs_base(v: u64) {
    // SAFETY: wrfsbase changes only this thread's FS base; the caller puts it back.
    unsafe { core::arch::asm!("wrfsbase {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// In a fault handler: when the thread wears one of our libc's thread blocks (a backend
/// lent it one for a call, see `crate::alloc::in_our_world`), (its block owner's `%fs`
/// base, the current one).
pub(crate) fn owner_fs_if_lent() -> Option<(u64, u64)> {
    if !enabled() {
        return None;
    }
    let g = gs_base();
    if g == 0 {
        return None;
    }
    // SAFETY: a non-zero %gs base is a block header (only we set it).
    let nowner = unsafe { block(g) }.nowner.load(Ordering::Relaxed);
    let (fs, prog) = (fs_base(), nowner.wrapping_neg());
    (nowner != 1 && fs != prog && crate::alloc::in_our_world()).then_some((prog, fs))
}

fn set_gs_base(v: u64) {
    // SAFETY: wrgsbase changes only this thread's GS base, which nothing but the stub
    // reads (see the module doc).
    unsafe { core::arch::asm!("wrgsbase {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// # Safety
/// `addr` must be 0 or the header of a block from [`BLOCKS`].
unsafe fn block<'a>(addr: u64) -> &'a Block {
    // SAFETY: blocks are never unmapped.
    unsafe { &*(addr as *const Block) }
}

/// The stub's slow path (see the module doc): runs on the bootstrap stack under the
/// attach lock with signals blocked. Returns 0 with the `%gs` base set, 1 when no
/// block can be had.
pub(crate) extern "C" fn attach() -> u64 {
    // SAFETY: getpid and gettid have no arguments.
    let (pid, tid) = unsafe {
        (
            syscall6(sys::NR_GETPID, [0; 6]) as u64,
            syscall6(sys::NR_GETTID, [0; 6]) as u64,
        )
    };
    let fs = fs_base();
    let n = NBLOCKS.load(Ordering::Relaxed);
    let mut found = None;
    for slot in &BLOCKS[..n] {
        let a = slot.load(Ordering::Relaxed);
        // SAFETY: an entry of BLOCKS.
        let b = unsafe { block(a) };
        if b.tid.load(Ordering::Relaxed) == tid && b.pid.load(Ordering::Relaxed) == pid {
            found = Some(a);
            break;
        }
    }
    let addr = match found.or_else(|| reclaim(n)).or_else(map_block) {
        Some(a) => a,
        None => return 1,
    };
    // SAFETY: an entry of BLOCKS, now this thread's.
    let b = unsafe { block(addr) };
    b.pid.store(pid, Ordering::Relaxed);
    b.tid.store(tid, Ordering::Relaxed);
    b.nowner.store(
        if fs == 0 { 1 } else { fs.wrapping_neg() },
        Ordering::Relaxed,
    );
    set_gs_base(addr);
    0
}

/// A block whose owner thread is gone, made free for the caller.
fn reclaim(n: usize) -> Option<u64> {
    if n == 0 {
        return None;
    }
    let start = CURSOR.load(Ordering::Relaxed);
    for k in 0..n.min(RECLAIM_SCAN) {
        let i = (start + k) % n;
        let a = BLOCKS[i].load(Ordering::Relaxed);
        // SAFETY: an entry of BLOCKS.
        let b = unsafe { block(a) };
        let (pid, tid) = (b.pid.load(Ordering::Relaxed), b.tid.load(Ordering::Relaxed));
        // SAFETY: tgkill with signal 0 only checks that the thread exists.
        if tid != 0 && unsafe { syscall6(sys::NR_TGKILL, [pid, tid, 0, 0, 0, 0]) } == sys::NEG_ESRCH
        {
            CURSOR.store(i + 1, Ordering::Relaxed);
            b.saved.store(0, Ordering::Relaxed);
            b.alt_checked.store(0, Ordering::Relaxed);
            return Some(a);
        }
    }
    CURSOR.store((start + RECLAIM_SCAN) % n, Ordering::Relaxed);
    None
}

/// Maps a new block: a guard page, the signal stack, a guard page, the stack, the
/// header at its top.
fn map_block() -> Option<u64> {
    let n = NBLOCKS.load(Ordering::Relaxed);
    if n >= MAX_BLOCKS {
        return None;
    }
    let len = ALT_SIZE + STACK_SIZE + 3 * PAGE;
    // SAFETY: a fresh anonymous mapping.
    let base = unsafe {
        syscall6(
            sys::NR_MMAP,
            [
                0,
                len,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_NORESERVE,
                u64::MAX,
                0,
            ],
        )
    };
    if (-4095..0).contains(&base) {
        return None;
    }
    let base = base as u64;
    // SAFETY: the guard pages below the signal stack and the stack, in our own fresh
    // mapping.
    unsafe {
        syscall6(sys::NR_MPROTECT, [base, PAGE, sys::PROT_NONE, 0, 0, 0]);
        syscall6(
            sys::NR_MPROTECT,
            [base + PAGE + ALT_SIZE, PAGE, sys::PROT_NONE, 0, 0, 0],
        );
    }
    let header = base + len - PAGE;
    // SAFETY: the header page of our own fresh mapping, zero-filled.
    let b = unsafe { block(header) };
    b.top.store(header, Ordering::Relaxed);
    b.lo.store(base + 2 * PAGE + ALT_SIZE, Ordering::Relaxed);
    b.alt.store(base + PAGE, Ordering::Relaxed);
    BLOCKS[n].store(header, Ordering::Relaxed);
    NBLOCKS.store(n + 1, Ordering::Relaxed);
    MAPPED.fetch_add(1, Ordering::Relaxed);
    Some(header)
}

/// In a fork child made through the hook: the block this thread runs on is the
/// child's copy; its recorded owner is the parent's thread, so it must never be
/// reclaimed here (the stub's fork path does the same).
pub(crate) fn forked() {
    if !enabled() {
        return;
    }
    let g = gs_base();
    if g != 0 {
        // SAFETY: a non-zero %gs base is a block header (only we set it).
        unsafe { block(g) }.tid.store(0, Ordering::Relaxed);
    }
}

/// This thread's block, if it has one (`%gs` base set and owned by this `%fs` base).
fn current() -> Option<&'static Block> {
    if !enabled() {
        return None;
    }
    let g = gs_base();
    if g == 0 {
        return None;
    }
    // SAFETY: a non-zero %gs base is a block header (only we set it).
    let b = unsafe { block(g) };
    (b.nowner.load(Ordering::Relaxed).wrapping_add(fs_base()) == 0).then_some(b)
}

/// `stack_t` of `sigaltstack`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SigStack {
    sp: u64,
    flags: i32,
    size: u64,
}
const SS_ONSTACK: i32 = libc::SS_ONSTACK;
const SS_DISABLE: i32 = libc::SS_DISABLE;

fn sigaltstack(new: Option<&SigStack>, old: Option<&mut SigStack>) -> i64 {
    let n = new.map_or(0, |s| s as *const SigStack as u64);
    let o = old.map_or(0, |s| s as *mut SigStack as u64);
    // SAFETY: sigaltstack with our own stack_t buffers.
    unsafe { syscall6(sys::NR_SIGALTSTACK, [n, o, 0, 0, 0, 0]) }
}

/// NULL guard: every syscall enters through a SIGSEGV, whose frame (kilobytes, with
/// the vector state) the kernel writes on the thread's signal stack if it has one, else
/// below the program's rsp. So the SIGSEGV handler gives each thread without one the
/// signal stack of its block, once (attaching a block first if needed). The program's
/// own `sigaltstack` calls are served by [`program_sigaltstack`].
///
/// # Safety
/// `uc` must be the `ucontext_t` of the running SIGSEGV handler: its `uc_stack` is what
/// `rt_sigreturn` puts back, so ours goes there too.
pub(crate) unsafe fn ensure_signal_stack(uc: *mut u8) {
    if !enabled() || current().is_some_and(|b| b.alt_checked.load(Ordering::Relaxed) != 0) {
        return;
    }
    let old = block_all_signals();
    while ATTACH_LOCK.swap(1, Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    let attached = current().is_some() || attach() == 0;
    ATTACH_LOCK.store(0, Ordering::Release);
    if let Some(b) = current().filter(|_| attached) {
        let mut cur = SigStack::default();
        sigaltstack(None, Some(&mut cur));
        if cur.flags & SS_DISABLE != 0 {
            let ours = SigStack {
                sp: b.alt.load(Ordering::Relaxed),
                flags: 0,
                size: ALT_SIZE,
            };
            if sigaltstack(Some(&ours), None) == 0 {
                // SAFETY: uc_stack is at offset 16 of the handler's ucontext_t.
                unsafe { core::ptr::write_unaligned(uc.add(16) as *mut SigStack, ours) };
            }
        }
        b.alt_checked.store(1, Ordering::Relaxed);
    }
    set_signal_mask(old);
}

/// Blocks every signal on the calling thread; returns the old mask. A raw
/// `rt_sigprocmask`, so it is safe in the hook.
pub fn block_all_signals() -> u64 {
    let all = !0u64;
    let mut old = 0u64;
    // SAFETY: rt_sigprocmask(SIG_BLOCK, &all, &old, 8) on our own words.
    unsafe {
        syscall6(
            sys::NR_RT_SIGPROCMASK,
            [
                sys::SIG_BLOCK,
                &all as *const u64 as u64,
                &mut old as *mut u64 as u64,
                sys::KERNEL_SIGSET,
                0,
                0,
            ],
        )
    };
    old
}

/// Sets the calling thread's signal mask to `mask` (one returned by
/// [`block_all_signals`]).
pub fn set_signal_mask(mask: u64) {
    // SAFETY: rt_sigprocmask(SIG_SETMASK, &mask, NULL, 8) on our own word.
    unsafe {
        syscall6(
            sys::NR_RT_SIGPROCMASK,
            [
                sys::SIG_SETMASK,
                &mask as *const u64 as u64,
                0,
                sys::KERNEL_SIGSET,
                0,
                0,
            ],
        )
    };
}

/// `sigaltstack(ss, old_ss)` by the program under the NULL guard: our signal stack
/// (see [`ensure_signal_stack`]) is reported as none, a program's stack replaces it,
/// and disabling the program's puts ours back.
pub(crate) fn program_sigaltstack(ss: u64, old: u64) -> i64 {
    let Some(b) = current() else {
        // SAFETY: the program's own call.
        return unsafe { syscall6(sys::NR_SIGALTSTACK, [ss, old, 0, 0, 0, 0]) };
    };
    let ours = SigStack {
        sp: b.alt.load(Ordering::Relaxed),
        flags: 0,
        size: ALT_SIZE,
    };
    let mut cur = SigStack::default();
    let r = sigaltstack(None, Some(&mut cur));
    if r < 0 {
        return r;
    }
    let cur_ours = cur.flags & SS_DISABLE == 0 && cur.sp == ours.sp;
    if ss != 0 {
        // SAFETY: the program passed a stack_t.
        let new = unsafe { core::ptr::read_unaligned(ss as *const SigStack) };
        let r = if new.flags & SS_DISABLE != 0 {
            if cur.flags & SS_ONSTACK != 0 {
                return -(libc::EPERM as i64); // on that stack now, as the kernel answers
            }
            if cur_ours {
                0
            } else {
                sigaltstack(Some(&ours), None)
            }
        } else {
            // SAFETY: the program's own stack_t.
            unsafe { syscall6(sys::NR_SIGALTSTACK, [ss, 0, 0, 0, 0, 0]) }
        };
        if r < 0 {
            return r;
        }
    }
    if old != 0 {
        let report = if cur_ours {
            SigStack {
                sp: 0,
                flags: SS_DISABLE | (cur.flags & SS_ONSTACK),
                size: 0,
            }
        } else {
            cur
        };
        // SAFETY: the program passed a stack_t to fill.
        unsafe { core::ptr::write_unaligned(old as *mut SigStack, report) };
    }
    0
}
