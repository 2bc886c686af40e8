//! `print` and `panic`: kernel log output and the end of the process.
//!
//! The kernel's console goes where [`crate::console`] says: by default
//! straight to file descriptor 2 with `write(2)`, taking no Rust `std`
//! lock, so a print from any thread, at any point inside the kernel,
//! cannot deadlock against the program's own use of `stderr`. `panic` and
//! the host library's own diagnostics always go to file descriptor 2.

use std::ffi::{c_char, c_int};

/// Writes all of `bytes` to stderr, retrying short writes and `EINTR`.
/// Other errors are dropped: there is nowhere left to report them.
pub(crate) fn write_stderr(bytes: &[u8]) {
    write_fd(libc::STDERR_FILENO, bytes);
}

/// Writes all of `bytes` to `fd`, retrying short writes and `EINTR`;
/// other errors are dropped.
pub(crate) fn write_fd(fd: std::os::fd::RawFd, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live slice; write(2) only reads `rest.len()` bytes from it.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        rest = &rest[n as usize..];
    }
}

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
