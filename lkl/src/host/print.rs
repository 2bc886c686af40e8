//! `print` and `panic`: kernel log output and the end of the process.
//!
//! The kernel's console goes where [`crate::console`] says: by default
//! straight to file descriptor 2 with `write(2)`, taking no Rust `std`
//! lock, so a print from any thread, at any point inside the kernel,
//! cannot deadlock against the program's own use of `stderr`. `panic` and
//! the host library's own diagnostics always go to file descriptor 2.

use std::ffi::{c_char, c_int};

/// The host library's own diagnostics and the console's default output
/// share the devices' writer: `write(2)` to a file descriptor, retrying
/// short writes and `EINTR`, without a `std` lock.
pub(crate) use lkl_virtio::diag::{write_fd, write_stderr};

/// `print`: writes `len` bytes of kernel log text to stderr.
///
/// # Safety
/// `str` must point to `len` readable bytes (it may be NULL if `len` is 0).
pub unsafe extern "C" fn print(str: *const c_char, len: c_int) {
    if str.is_null() || len <= 0 {
        return;
    }
    // SAFETY: the caller guarantees `len` readable bytes at `str`.
    let bytes = unsafe { std::slice::from_raw_parts(str.cast::<u8>(), len as usize) };
    crate::console::write(bytes);
}

/// `panic`: the kernel panicked. Says so on stderr and aborts the process
/// (no unwinding: the caller is kernel C code).
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn panic() {
    write_stderr(b"lkl: kernel panic, aborting\n");
    std::process::abort();
}

/// Prints a diagnostic of the host library itself and aborts: for contract
/// violations by the kernel that leave no safe way to go on.
pub(crate) fn fatal(msg: &str) -> ! {
    write_stderr(b"lkl: host: ");
    write_stderr(msg.as_bytes());
    write_stderr(b"\n");
    std::process::abort();
}
