//! Memory: `mem_alloc`/`mem_free` over the C allocator, and
//! `page_alloc`/`page_free` over anonymous `mmap`.

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

/// `page_alloc`: `size` bytes of zeroed, page-aligned memory from an
/// anonymous private mapping (rounded up to whole pages by the kernel).
/// NULL on failure.
///
/// # Safety
/// Always safe to call; the result must be freed with [`page_free`] and the
/// same `size`.
pub unsafe extern "C" fn page_alloc(size: c_ulong) -> *mut c_void {
    if size == 0 {
        return ptr::null_mut();
    }
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p
    }
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
