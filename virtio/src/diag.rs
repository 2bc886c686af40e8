//! The devices' own diagnostics (a queue the driver broke, a backend that
//! failed), written to file descriptor 2 with `write(2)`: no Rust `std`
//! lock is taken, so a message from a device thread, or from the kernel's
//! thread inside a register access, cannot deadlock against the program's
//! own use of `stderr`.

use std::os::fd::RawFd;

/// Writes all of `bytes` to stderr, retrying short writes and `EINTR`.
/// Other errors are dropped: there is nowhere left to report them.
pub fn write_stderr(bytes: &[u8]) {
    write_fd(libc::STDERR_FILENO, bytes);
}

/// Writes all of `bytes` to `fd`, retrying short writes and `EINTR`;
/// other errors are dropped.
pub fn write_fd(fd: RawFd, bytes: &[u8]) {
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
