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

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::alloc::System;

use crate::syscall6;

static SEALED: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
const CHUNK: usize = 1 << 20;

/// Routes every allocation after [`seal`] to the bump area.
#[derive(Debug, Default, Clone, Copy)]
pub struct HookSafe;

/// From now on, never call the system allocator.
pub fn seal() {
    SEALED.store(true, Ordering::SeqCst);
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
        let p = unsafe { syscall6(9, [0, len as u64, 3, 0x22, u64::MAX, 0]) };
        if p < 0 {
            return core::ptr::null_mut();
        }
        let p = p as usize;
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
            unsafe { syscall6(11, [p as u64, len as u64, 0, 0, 0, 0]) };
        }
    }
}

// SAFETY: before sealing we forward to `System`; after, memory comes from private
// mappings that are never reused, aligned as requested, and never freed.
unsafe impl GlobalAlloc for HookSafe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if SEALED.load(Ordering::Relaxed) {
            return bump(layout);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !SEALED.load(Ordering::Relaxed) {
            // SAFETY: forwarded unchanged; blocks from before sealing came from System.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}
