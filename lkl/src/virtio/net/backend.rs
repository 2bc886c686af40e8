//! What a network device sends frames to and receives them from, and the
//! eventfd that wakes the receive thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A frame transport on the host side: one whole Ethernet frame per call,
/// without any virtio header.
pub trait Backend: Send + Sync {
    /// Sends one frame.
    ///
    /// # Errors
    /// The host refused it (the frame is then dropped).
    fn send(&self, frame: &[u8]) -> io::Result<()>;
    /// Receives one frame into `buf`, without blocking; returns its length.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] when nothing is waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// A descriptor that polls readable when a frame is waiting.
    fn poll_fd(&self) -> RawFd;
}

/// A counting eventfd: [`Wake::signal`] from anywhere, [`Wake::wait`] on
/// the receive thread. A signal is never lost: it stays counted until
/// waited for.
#[derive(Debug)]
pub struct Wake(OwnedFd);

impl Wake {
    /// A new, unsignalled eventfd.
    ///
    /// # Errors
    /// The host has no descriptor left.
    pub fn new() -> io::Result<Wake> {
        // SAFETY: plain flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the waiter.
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our descriptor. It
        // fails only when the counter is near overflow, already signalled.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Clears the signals counted so far.
    pub fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; non-blocking.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }

    /// The descriptor, readable while signalled.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Polls `fds` for reading, up to `timeout_ms` (-1: forever); returns which
/// are readable (or hung up).
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structures.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}
