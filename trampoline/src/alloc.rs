//! A global allocator that stays safe once the program runs.
//!
//! Before [`seal`], it is the system allocator. After it, our code runs only inside the
//! syscall hook, on the program's threads: there our libc's `malloc` would read the
//! program's TLS (`%fs`), extend a heap whose break it remembers wrongly (shrinking the
//! program's heap under it), or re-enter a `malloc` the program is in the middle of. So
//! after sealing, allocations come from a lock-free bump area mapped with raw `mmap`,
//! and frees are ignored. The hook is written not to allocate at all
//! ([`rewriter::warm_up`] builds the decoder's tables beforehand); this is the safety
//! net, and [`post_seal_allocations`] lets tests check that it stays unused.
//!
//! With the LKL backend our code also runs in *our* world after the jump: LKL's own
//! threads, and program threads while they borrow a thread block of ours for an LKL call
//! (see `zpoline-lkl`). There `%fs` is one of our libc's thread blocks, and the system
//! allocator is right. We tell the worlds apart by the stack-protector canary at
//! `%fs:0x28`, which the x86-64 ABI puts in every thread block: ours all hold our libc's
//! random value, the program's hold its own. Blocks from the bump area are never handed to
//! the system allocator's `free`.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::alloc::System;

use crate::{sys, syscall6};

static SEALED: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
const CHUNK: usize = 1 << 20;

/// Routes every allocation after [`seal`] to the bump area.
#[derive(Debug, Default, Clone, Copy)]
pub struct HookSafe;

/// Our libc's stack-protector canary, read at [`seal`].
static CANARY: AtomicU64 = AtomicU64::new(0);
/// `rdfsbase` works (FSGSBASE, `AT_HWCAP2` bit 1).
static FSGSBASE: AtomicBool = AtomicBool::new(false);
/// Bump chunks handed out, as (start, end); their blocks are never freed.
static CHUNKS: [(AtomicUsize, AtomicUsize); 256] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 256];
static NCHUNKS: AtomicUsize = AtomicUsize::new(0);

/// From now on, call the system allocator only from our own world (see the module doc).
pub fn seal() {
    // SAFETY: getauxval has no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    FSGSBASE.store(hwcap2 & 2 != 0, Ordering::SeqCst);
    CANARY.store(canary(fs_base()), Ordering::SeqCst);
    SEALED.store(true, Ordering::SeqCst);
}

/// True when FSGSBASE instructions are usable (see [`seal`]).
pub fn has_fsgsbase() -> bool {
    FSGSBASE.load(Ordering::Relaxed)
}

/// The calling thread's `%fs` base.
#[inline(always)]
pub fn fs_base() -> u64 {
    if FSGSBASE.load(Ordering::Relaxed) {
        let v: u64;
        // SAFETY: rdfsbase only reads the FS base; FSGSBASE is enabled (AT_HWCAP2).
        unsafe {
            core::arch::asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        v
    } else {
        let mut v = 0u64;
        // SAFETY: arch_prctl(ARCH_GET_FS, &v) writes one u64.
        unsafe {
            syscall6(
                sys::NR_ARCH_PRCTL,
                [sys::ARCH_GET_FS, &mut v as *mut u64 as u64, 0, 0, 0, 0],
            )
        };
        v
    }
}

/// The stack-protector canary of the thread block at `fs` (0 for no thread block).
fn canary(fs: u64) -> u64 {
    if fs < 4096 {
        return 0;
    }
    // SAFETY: every x86-64 thread block has the canary word at offset 0x28 (ABI).
    unsafe { core::ptr::read_volatile((fs + 0x28) as *const u64) }
}

/// True when `%fs` is one of our libc's thread blocks (or nothing is sealed yet).
pub fn in_our_world() -> bool {
    !SEALED.load(Ordering::Relaxed) || canary(fs_base()) == CANARY.load(Ordering::Relaxed)
}

fn from_bump(p: usize) -> bool {
    let n = NCHUNKS.load(Ordering::Acquire).min(CHUNKS.len());
    CHUNKS[..n].iter().any(|(a, b)| {
        let (a, b) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        a <= p && p < b
    })
}

fn record_chunk(p: usize, len: usize) {
    let i = NCHUNKS.fetch_add(1, Ordering::AcqRel);
    if let Some((a, b)) = CHUNKS.get(i) {
        b.store(p + len, Ordering::Relaxed);
        a.store(p, Ordering::Release);
    }
}

/// Number of allocations made after [`seal`] (the hook should make none).
pub fn post_seal_allocations() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

fn bump(layout: Layout) -> *mut u8 {
    COUNT.fetch_add(1, Ordering::Relaxed);
    let align = layout.align().max(16);
    loop {
        let cur = NEXT.load(Ordering::Acquire);
        let start = (cur + align - 1) & !(align - 1);
        let end = start + layout.size();
        if cur != 0 && end <= END.load(Ordering::Acquire) {
            if NEXT
                .compare_exchange(cur, end, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return start as *mut u8;
            }
            continue;
        }
        // A fresh chunk (big requests get their own, rounded up).
        let len = (layout.size() + align).max(CHUNK).next_multiple_of(4096);
        // SAFETY: an anonymous private mapping (PROT_READ|PROT_WRITE).
        let p = unsafe {
            syscall6(
                sys::NR_MMAP,
                [
                    0,
                    len as u64,
                    sys::PROT_READ | sys::PROT_WRITE,
                    sys::MAP_PRIVATE | sys::MAP_ANONYMOUS,
                    u64::MAX,
                    0,
                ],
            )
        };
        if p < 0 {
            return core::ptr::null_mut();
        }
        let p = p as usize;
        record_chunk(p, len);
        if layout.size() + align > CHUNK {
            return ((p + align - 1) & !(align - 1)) as *mut u8;
        }
        // Publish the chunk; if another thread won the race, use its chunk instead.
        if NEXT
            .compare_exchange(cur, p, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            END.store(p + len, Ordering::Release);
        } else {
            // SAFETY: unmapping the chunk we just mapped and did not publish.
            unsafe { syscall6(sys::NR_MUNMAP, [p as u64, len as u64, 0, 0, 0, 0]) };
        }
    }
}

// SAFETY: in our world we forward to `System` (blocks from the bump area, recorded in
// CHUNKS, are never passed to it); in the program's, memory comes from private mappings
// that are never reused, aligned as requested, and never freed.
unsafe impl GlobalAlloc for HookSafe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !in_our_world() {
            return bump(layout);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !SEALED.load(Ordering::Relaxed)
            || (in_our_world()
                && NCHUNKS.load(Ordering::Relaxed) <= CHUNKS.len()
                && !from_bump(ptr as usize))
        {
            // SAFETY: forwarded unchanged; blocks from before sealing came from System.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}
