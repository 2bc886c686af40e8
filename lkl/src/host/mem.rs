//! Memory: `mem_alloc`/`mem_free` over the C allocator, and
//! `page_alloc`/`page_free` over anonymous `mmap`.
//!
//! Raw `mmap` rather than `memmap2`: the kernel owns these pages through a C
//! pointer and frees them with `page_free` (a bare `munmap`), at a placement
//! hint of ours; a Rust-owned map object would have no owner to live in.

use std::ffi::{c_ulong, c_void};
use std::ptr;

/// `mem_alloc`: `malloc(size)`.
///
/// # Safety
/// Always safe to call; the result must be freed with [`mem_free`].
pub unsafe extern "C" fn mem_alloc(size: c_ulong) -> *mut c_void {
    // SAFETY: malloc has no preconditions.
    unsafe { libc::malloc(size as usize) }
}

/// `mem_free`: `free(ptr)`.
///
/// # Safety
/// `ptr` must be NULL or come from [`mem_alloc`] and not be freed yet.
pub unsafe extern "C" fn mem_free(ptr: *mut c_void) {
    // SAFETY: the caller passes a pointer from malloc (or NULL).
    unsafe { libc::free(ptr) }
}

/// Where [`page_alloc`] asks the host to put large blocks (a hint, not a
/// demand: 64 GiB, far from the program, its heap, shared libraries and the
/// MMIO windows).
///
/// The kernel's memory map setup (`memmap_init` in `mm/mm_init.c`) walks
/// the page frames below its memory from frame 0, one pageblock (2 MiB) at
/// a time. For a block at the usual mmap addresses (`0x7f..`, frame ~2^35)
/// that is some 60 million steps, 70% of boot time; at 64 GiB it is 32768.
pub const PAGE_ALLOC_HINT: usize = 0x10_0000_0000;

/// Blocks this large or larger get [`PAGE_ALLOC_HINT`].
const HINT_MIN_SIZE: usize = 1 << 20;

/// `page_alloc`: `size` bytes of zeroed, page-aligned memory from an
/// anonymous private mapping (rounded up to whole pages by the kernel),
/// placed low in the address space if it is large (see
/// [`PAGE_ALLOC_HINT`]). NULL on failure.
///
/// # Safety
/// Always safe to call; the result must be freed with [`page_free`] and the
/// same `size`.
pub unsafe extern "C" fn page_alloc(size: c_ulong) -> *mut c_void {
    if size == 0 {
        return ptr::null_mut();
    }
    let hint = if size as usize >= HINT_MIN_SIZE {
        PAGE_ALLOC_HINT as *mut c_void
    } else {
        ptr::null_mut()
    };
    // SAFETY: a fresh anonymous mapping touches no existing memory (without
    // MAP_FIXED the hint never replaces a mapping).
    let p = unsafe {
        libc::mmap(
            hint,
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    if size as usize >= HINT_MIN_SIZE {
        // SAFETY: advice on our own fresh mapping; refused advice changes nothing.
        unsafe { libc::madvise(p, size as usize, libc::MADV_HUGEPAGE) };
    }
    p
}

/// `page_free`: unmaps what [`page_alloc`] returned.
///
/// # Safety
/// `addr` and `size` must be exactly a [`page_alloc`] result and its size,
/// and nothing may use the memory afterwards.
pub unsafe extern "C" fn page_free(addr: *mut c_void, size: c_ulong) {
    if addr.is_null() {
        return;
    }
    // SAFETY: the caller passes a whole mapping made by page_alloc.
    unsafe {
        libc::munmap(addr, size as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_alloc_is_aligned_and_zeroed() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        for size in [1usize, 4096, 3 * 4096 + 17, 1 << 20] {
            // SAFETY: plain allocation.
            let p = unsafe { page_alloc(size as c_ulong) };
            assert!(!p.is_null());
            assert_eq!(p as usize % page, 0, "size {size}");
            // SAFETY: page_alloc returned at least `size` readable, writable bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), size) };
            assert!(bytes.iter().all(|&b| b == 0));
            bytes.fill(0xa5);
            // SAFETY: the mapping and its size, freed once.
            unsafe { page_free(p, size as c_ulong) };
        }
        // SAFETY: plain allocation.
        assert!(unsafe { page_alloc(0) }.is_null());
    }

    #[test]
    fn large_blocks_go_low_small_ones_anywhere() {
        let size = 64 << 20;
        // SAFETY: plain allocations, freed once.
        unsafe {
            let big = page_alloc(size);
            assert!(!big.is_null());
            // A hint: honoured unless something is already there.
            let other = page_alloc(size);
            assert!(!other.is_null());
            let low = [big as usize, other as usize]
                .iter()
                .any(|&a| (PAGE_ALLOC_HINT..PAGE_ALLOC_HINT << 1).contains(&a));
            assert!(low, "{big:p} {other:p}");
            page_free(big, size);
            page_free(other, size);
        }
    }

    #[test]
    fn mem_alloc_round_trip() {
        // SAFETY: plain allocation, written within bounds and freed once.
        unsafe {
            let p = mem_alloc(100).cast::<u8>();
            assert!(!p.is_null());
            p.write_bytes(7, 100);
            assert_eq!(*p.add(99), 7);
            mem_free(p.cast());
            mem_free(ptr::null_mut());
        }
    }
}
