//! The host operations: everything the kernel asks of the process it runs
//! in, as `unsafe extern "C"` functions matching
//! `linux/arch/lkl/include/uapi/asm/host_ops.h`, and [`host_ops`] which
//! fills the table.
//!
//! One file per concern: [`print`](mod@print), [`sem`] (futex semaphores), [`mutex`],
//! [`thread`] (including the longjmp-based `thread_exit`), [`tls`], [`mem`],
//! [`time`], [`timer`], [`mmio`], the user memory of other host processes
//! in [`usermem`] and the x86-64 jump buffer in [`jmp_x86_64`].

use std::ffi::{c_int, c_ulong, c_void};
use std::ptr;

use lkl_sys::lkl_host_operations;

mod futex;
pub mod jmp_x86_64;
pub mod mem;
pub mod mmio;
pub mod mutex;
pub mod print;
pub mod sem;
pub mod thread;
pub mod time;
pub mod timer;
pub mod tls;
pub mod usermem;

pub use mmio::{MmioDevice, MmioRegistry, MmioWindow};
pub use thread::live_threads;
pub use timer::live_timer_threads;

/// `memcpy`: the C library's.
///
/// # Safety
/// As `memcpy(3)`.
pub unsafe extern "C" fn memcpy(dest: *mut c_void, src: *const c_void, n: c_ulong) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { libc::memcpy(dest, src, n as usize) }
}

/// `memset`: the C library's.
///
/// # Safety
/// As `memset(3)`.
pub unsafe extern "C" fn memset(s: *mut c_void, c: c_int, n: c_ulong) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { libc::memset(s, c, n as usize) }
}

/// `memmove`: the C library's.
///
/// # Safety
/// As `memmove(3)`.
pub unsafe extern "C" fn memmove(dest: *mut c_void, src: *const c_void, n: c_ulong) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { libc::memmove(dest, src, n as usize) }
}

/// The operations table with every hook filled in. `virtio_devices` is
/// NULL: `boot` puts the devices on the command line itself.
pub fn host_ops() -> lkl_host_operations {
    lkl_host_operations {
        virtio_devices: ptr::null(),
        print: Some(print::print),
        panic: Some(print::panic),
        sem_alloc: Some(sem::sem_alloc),
        sem_free: Some(sem::sem_free),
        sem_up: Some(sem::sem_up),
        sem_down: Some(sem::sem_down),
        mutex_alloc: Some(mutex::mutex_alloc),
        mutex_free: Some(mutex::mutex_free),
        mutex_lock: Some(mutex::mutex_lock),
        mutex_unlock: Some(mutex::mutex_unlock),
        thread_create: Some(thread::thread_create),
        thread_detach: Some(thread::thread_detach),
        thread_exit: Some(thread::thread_exit),
        thread_join: Some(thread::thread_join),
        thread_self: Some(thread::thread_self),
        thread_equal: Some(thread::thread_equal),
        thread_stack: Some(thread::thread_stack),
        tls_alloc: Some(tls::tls_alloc),
        tls_free: Some(tls::tls_free),
        tls_set: Some(tls::tls_set),
        tls_get: Some(tls::tls_get),
        mem_alloc: Some(mem::mem_alloc),
        mem_free: Some(mem::mem_free),
        page_alloc: Some(mem::page_alloc),
        page_free: Some(mem::page_free),
        time: Some(time::time),
        timer_alloc: Some(timer::timer_alloc),
        timer_set_oneshot: Some(timer::timer_set_oneshot),
        timer_free: Some(timer::timer_free),
        ioremap: Some(mmio::ioremap),
        iomem_access: Some(mmio::iomem_access),
        gettid: Some(time::gettid),
        jmp_buf_set: Some(jmp_x86_64::jmp_buf_set),
        jmp_buf_longjmp: Some(jmp_x86_64::jmp_buf_longjmp),
        memcpy: Some(memcpy),
        memset: Some(memset),
        memmove: Some(memmove),
        user_read: Some(usermem::user_read),
        user_write: Some(usermem::user_write),
    }
}

/// Serialises the unit tests that count live host threads.
#[cfg(test)]
pub(crate) fn test_serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_is_filled() {
        let ops = host_ops();
        // Every field after `virtio_devices` is a function pointer: none is
        // NULL. Check through the raw words so a field added to the header
        // and left out here cannot pass (the struct literal would not build
        // either).
        let words = std::mem::size_of::<lkl_host_operations>() / 8;
        // SAFETY: the struct is all pointers, so reading it as words is fine.
        let raw: &[usize] =
            unsafe { std::slice::from_raw_parts(ptr::addr_of!(ops).cast::<usize>(), words) };
        assert!(raw[1..].iter().all(|&w| w != 0));
    }

    #[test]
    fn mem_functions_forward() {
        let mut a = [0u8; 8];
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        // SAFETY: in-bounds buffers.
        unsafe {
            memcpy(a.as_mut_ptr().cast(), b.as_ptr().cast(), 8);
            assert_eq!(a, b);
            memmove(a.as_mut_ptr().add(1).cast(), a.as_ptr().cast(), 4);
            assert_eq!(a, [1, 1, 2, 3, 4, 6, 7, 8]);
            memset(a.as_mut_ptr().cast(), 9, 3);
            assert_eq!(a, [9, 9, 9, 3, 4, 6, 7, 8]);
        }
    }
}
