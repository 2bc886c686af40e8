//! The live patcher runs inside an interposed program's syscall hook, where calling
//! our own libc's malloc would corrupt the program's heap: scanning must not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn scanning_does_not_allocate_after_warm_up() {
    rewriter::warm_up();
    let files = [
        "/proc/self/exe",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libcrypto.so.3",
        "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
    ];
    for f in files {
        let Ok(code) = std::fs::read(f) else { continue };
        let before = ALLOCS.load(Ordering::SeqCst);
        let mut n = 0;
        // Whole files: code and data, so every decoder table gets exercised.
        rewriter::plan::for_each_site(&code, 0x1000, |_| n += 1);
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(after - before, 0, "scanning {f} allocated ({n} sites)");
    }
}
