//! What a network device sends frames to and receives them from, and the
//! eventfd that wakes the receive thread.
//!
//! A backend moves whole Ethernet frames. When [`Backend::vnet_hdr`] says
//! so, each frame travels with a 12-byte `virtio_net_hdr_v1` (checksum and
//! segmentation offload information) in front: the backend turns it into
//! whatever its host side speaks (tap's `IFF_VNET_HDR` with
//! `TUNSETVNETHDRSZ` 12, `PACKET_VNET_HDR`'s 10 bytes, or the header as is
//! in a pipe).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::offload::HDR_LEN;

/// A frame transport on the host side.
pub trait Backend: Send + Sync {
    /// Sends one frame: `iovs[0]` is the 12-byte virtio-net header, sent
    /// when [`Backend::vnet_hdr`], the rest is the frame, gathered from
    /// host memory the caller keeps alive and unchanged across the call.
    /// The backend may change `iovs[0]` (not the frame's entries).
    ///
    /// # Errors
    /// The host refused it (the frame is then dropped).
    fn send(&self, iovs: &mut [libc::iovec]) -> io::Result<()>;
    /// Receives one frame into `frame` without blocking; returns its
    /// length. Fills `hdr` when [`Backend::vnet_hdr`] (its `num_buffers`
    /// field is left as is), else leaves it alone.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] when nothing is waiting.
    fn recv(&self, hdr: &mut [u8; HDR_LEN], frame: &mut [u8]) -> io::Result<usize>;
    /// How many bytes of the 12-byte header the host side writes before a
    /// received frame: 12 or 0 as [`Backend::vnet_hdr`] says, 10 for a
    /// packet socket (no `num_buffers`).
    fn host_hdr_len(&self) -> usize {
        if self.vnet_hdr() {
            HDR_LEN
        } else {
            0
        }
    }
    /// Reads one frame straight into `iovs` (the driver's buffers), after
    /// [`Backend::host_hdr_len`] bytes of header, without blocking;
    /// returns the bytes read, header included. `None` when the backend
    /// cannot: [`Backend::recv`] then.
    fn recv_iov(&self, iovs: &mut [libc::iovec]) -> Option<io::Result<usize>> {
        let _ = iovs;
        None
    }
    /// A descriptor that polls readable when a frame is waiting.
    fn poll_fd(&self) -> RawFd;
    /// Whether frames carry the virtio-net header on the host side.
    fn vnet_hdr(&self) -> bool;
    /// The `VIRTIO_NET_F_*` offload bits this backend can honour.
    fn offloads(&self) -> u64;
    /// The driver negotiated `features`: the backend tells its host side
    /// which offloads it may now hand over (tap's `TUNSETOFFLOAD`).
    ///
    /// # Errors
    /// The host refused them.
    fn negotiated(&self, features: u64) -> io::Result<()> {
        let _ = features;
        Ok(())
    }
    /// The largest frame (without header) the backend can carry whole.
    fn max_frame(&self) -> usize {
        MAX_FRAME
    }
}

/// The largest frame the backends exchange (a 64 KiB packet and its
/// Ethernet and VLAN headers).
pub const MAX_FRAME: usize = 65536 + 18;

/// An iovec over `buf`.
pub fn iov(buf: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    }
}

/// An iovec over `buf`, for reading into.
pub fn iov_mut(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }
}

/// `writev` of all of `iovs` to `fd`, as one write; a short write is an
/// error (the frame would be cut).
pub fn writev_all(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<()> {
    let want: usize = iovs.iter().map(|v| v.iov_len).sum();
    // SAFETY: each iovec names memory the caller keeps alive across the
    // call; writev only reads it.
    let n = unsafe { libc::writev(fd, iovs.as_ptr(), iovs.len() as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != want {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

/// `readv` into `iovs` from `fd`; returns the bytes read.
pub fn readv(fd: RawFd, iovs: &mut [libc::iovec]) -> io::Result<usize> {
    // SAFETY: each iovec names writable memory the caller owns and keeps
    // alive across the call.
    let n = unsafe { libc::readv(fd, iovs.as_ptr(), iovs.len() as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A counting eventfd: [`Wake::signal`] from anywhere; the receive thread
/// polls [`Wake::fd`] and [`Wake::clear`]s it. A signal is never lost: it
/// stays counted until cleared.
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
/// are readable (or hung up). A negative descriptor is never ready.
pub fn poll_readable<const N: usize>(fds: [RawFd; N], timeout_ms: i32) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `pfds` is a live array of `N` pollfd structures.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(e);
    }
    Ok(pfds.map(|p| p.revents != 0))
}
