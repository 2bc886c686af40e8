//! User memory of other host processes: the `user_read` and `user_write`
//! operations.
//!
//! A kernel task joined with a non-zero `user` cookie (see
//! [`crate::process::thread_join`]) reaches its user memory only through
//! these. Here the cookie is the host pid of the process whose memory it
//! is. A range inside the shared window ([`set_shared_window`]: a mapping at
//! the same address in this process and in the clients) is copied with
//! `memcpy`; anything else goes through `process_vm_readv` /
//! `process_vm_writev`. Both return the number of bytes not copied, as the
//! kernel's `raw_copy_from_user` does.

use std::ffi::{c_ulong, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared window: start and length (0: none).
static WINDOW_ADDR: AtomicUsize = AtomicUsize::new(0);
static WINDOW_LEN: AtomicUsize = AtomicUsize::new(0);

/// Registers the shared window: `len` bytes at `addr`, mapped at that same
/// address (and with the same contents) in this process and in every
/// process whose memory the kernel reaches through a cookie. User memory
/// inside it is copied directly instead of through `process_vm_readv`.
/// `len == 0` removes the window.
///
/// The caller keeps the mapping in place for as long as any joined thread
/// may make system calls; a window covering memory this process does not
/// have mapped makes the kernel's copies crash the process.
pub fn set_shared_window(addr: usize, len: usize) {
    // the length first to 0: a reader never sees the new address with the
    // old length
    WINDOW_LEN.store(0, Ordering::SeqCst);
    WINDOW_ADDR.store(addr, Ordering::SeqCst);
    WINDOW_LEN.store(
        if addr.checked_add(len).is_some() {
            len
        } else {
            0
        },
        Ordering::SeqCst,
    );
}

/// Whether `[addr, addr + n)` lies inside the shared window.
fn in_window(addr: usize, n: usize) -> bool {
    let len = WINDOW_LEN.load(Ordering::SeqCst);
    let start = WINDOW_ADDR.load(Ordering::SeqCst);
    len != 0 && addr >= start && addr.checked_add(n).is_some_and(|end| end <= start + len)
}

const PAGE: usize = 4096;

/// One transfer of `n` bytes between `local` here and `remote` in `pid`;
/// the number of bytes moved (0 on failure).
fn transfer(pid: c_ulong, local: usize, remote: usize, n: usize, write: bool) -> usize {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return 0;
    };
    let liov = libc::iovec {
        iov_base: local as *mut c_void,
        iov_len: n,
    };
    let riov = libc::iovec {
        iov_base: remote as *mut c_void,
        iov_len: n,
    };
    // SAFETY: the local iovec is the kernel's buffer of n bytes (valid for
    // the whole call, as user_read/user_write's callers guarantee); the
    // remote one is only an address in another process, checked by the
    // host kernel.
    let r = unsafe {
        if write {
            libc::process_vm_writev(pid, &liov, 1, &riov, 1, 0)
        } else {
            libc::process_vm_readv(pid, &liov, 1, &riov, 1, 0)
        }
    };
    usize::try_from(r).unwrap_or(0)
}

/// Copies `n` bytes between the local buffer and process `pid`'s memory;
/// returns the bytes not copied. A partial transfer is finished a page at
/// a time, so the count is exact up to the first page that faults.
fn copy(pid: c_ulong, local: usize, remote: usize, n: usize, write: bool) -> c_ulong {
    if n == 0 {
        return 0;
    }
    if in_window(remote, n) {
        let (dst, src) = if write {
            (remote, local)
        } else {
            (local, remote)
        };
        // SAFETY: the window is mapped here (set_shared_window's contract)
        // and the local buffer holds n bytes.
        unsafe { libc::memcpy(dst as *mut c_void, src as *const c_void, n) };
        return 0;
    }
    let mut done = transfer(pid, local, remote, n, write);
    while done < n {
        let addr = remote + done;
        let chunk = (PAGE - addr % PAGE).min(n - done);
        let moved = transfer(pid, local + done, addr, chunk, write);
        done += moved;
        if moved < chunk {
            break;
        }
    }
    (n - done) as c_ulong
}

/// `user_read`: copies `n` bytes at `from` in process `user` to `to`;
/// returns the bytes not copied.
///
/// # Safety
/// `to` is valid for `n` bytes of writes.
pub unsafe extern "C" fn user_read(
    user: c_ulong,
    to: *mut c_void,
    from: *const c_void,
    n: c_ulong,
) -> c_ulong {
    copy(user, to as usize, from as usize, n as usize, false)
}

/// `user_write`: copies `n` bytes at `from` to `to` in process `user`;
/// returns the bytes not copied.
///
/// # Safety
/// `from` is valid for `n` bytes of reads.
pub unsafe extern "C" fn user_write(
    user: c_ulong,
    to: *mut c_void,
    from: *const c_void,
    n: c_ulong,
) -> c_ulong {
    copy(user, from as usize, to as usize, n as usize, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_pid() -> c_ulong {
        std::process::id() as c_ulong
    }

    #[test]
    fn reads_and_writes_own_memory_through_process_vm() {
        let src = *b"through process_vm_readv";
        let mut dst = [0u8; 24];
        // SAFETY: both buffers hold 24 bytes.
        let left =
            unsafe { user_read(own_pid(), dst.as_mut_ptr().cast(), src.as_ptr().cast(), 24) };
        assert_eq!((left, dst), (0, src));
        let mut target = [0u8; 4];
        // SAFETY: as above, 4 bytes.
        let left = unsafe {
            user_write(
                own_pid(),
                target.as_mut_ptr().cast(),
                b"abcd".as_ptr().cast(),
                4,
            )
        };
        assert_eq!((left, &target), (0, b"abcd"));
    }

    #[test]
    fn a_bad_address_is_left_uncopied() {
        let mut dst = [0u8; 16];
        // SAFETY: dst holds 16 bytes; address 8 is mapped in no process.
        let left = unsafe { user_read(own_pid(), dst.as_mut_ptr().cast(), 8 as *const c_void, 16) };
        assert_eq!(left, 16);
    }

    #[test]
    fn a_partial_range_counts_the_bytes_left() {
        // two pages, the second made inaccessible: a read across the
        // boundary copies exactly up to it
        // SAFETY: a fresh anonymous mapping, unmapped at the end.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            assert_eq!(
                libc::mprotect(p.cast::<u8>().add(PAGE).cast(), PAGE, libc::PROT_NONE),
                0
            );
            let mut dst = [0u8; 64];
            let from = p.cast::<u8>().add(PAGE - 16);
            let left = user_read(own_pid(), dst.as_mut_ptr().cast(), from.cast(), 64);
            assert_eq!(left, 48);
            libc::munmap(p, 2 * PAGE);
        }
    }

    #[test]
    fn the_window_is_copied_directly() {
        let _serial = crate::host::test_serial();
        let src = [7u8; 32];
        let mut dst = [0u8; 32];
        set_shared_window(src.as_ptr() as usize, src.len());
        // a pid that names no process: only the window path can succeed
        // SAFETY: both buffers hold 32 bytes.
        let left = unsafe {
            user_read(
                c_ulong::MAX,
                dst.as_mut_ptr().cast(),
                src.as_ptr().cast(),
                32,
            )
        };
        set_shared_window(0, 0);
        assert_eq!((left, dst), (0, src));
        // SAFETY: as above.
        let left = unsafe {
            user_read(
                c_ulong::MAX,
                dst.as_mut_ptr().cast(),
                src.as_ptr().cast(),
                32,
            )
        };
        assert_eq!(left, 32);
    }
}
