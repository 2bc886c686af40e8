//! The raw backend: an `AF_PACKET` `SOCK_RAW` socket bound to an existing
//! host interface, which the device shares with the host's own stack.
//!
//! The socket takes every frame on the interface (`ETH_P_ALL`), with the
//! interface in promiscuous mode (`PACKET_MR_PROMISC` membership, dropped
//! with the socket) so frames for the device's own MAC arrive, and skips
//! the frames sent from the interface (`PACKET_IGNORE_OUTGOING`), ours
//! included. It always uses `PACKET_VNET_HDR`: the host stack hands frames
//! with partial checksums or as large segments (a veth peer does), and the
//! header says so; the device completes such a checksum in software when
//! the driver did not take the checksum offload.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::backend::{iov_mut, writev_all, Backend};
use super::offload::{self, HDR_LEN};
use super::BackendError;

/// `SOL_PACKET`.
const SOL_PACKET: libc::c_int = 263;
/// `PACKET_ADD_MEMBERSHIP`.
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
/// `PACKET_MR_PROMISC`.
const PACKET_MR_PROMISC: libc::c_ushort = 1;
/// `PACKET_VNET_HDR`.
const PACKET_VNET_HDR: libc::c_int = 15;
/// `PACKET_IGNORE_OUTGOING` (Linux 4.20).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// `struct virtio_net_hdr`: the v1 header less `num_buffers`.
const PACKET_HDR_LEN: usize = 10;

/// An `AF_PACKET` socket on a host interface.
#[derive(Debug)]
pub struct Raw {
    fd: OwnedFd,
    ifname: String,
}

impl Raw {
    /// Opens a raw socket on host interface `ifname` (which must exist and
    /// be up), in promiscuous mode.
    ///
    /// # Errors
    /// [`BackendError::NoSuchInterface`], or [`BackendError::Raw`] (without
    /// `CAP_NET_RAW` the message says so).
    pub fn open(ifname: &str) -> Result<Raw, BackendError> {
        let err = |source| BackendError::Raw {
            ifname: ifname.to_owned(),
            source,
        };
        let c = CString::new(ifname).map_err(|_| err(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: reads the NUL-terminated name, which lives across the call.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if ifname.is_empty() || index == 0 {
            return Err(BackendError::NoSuchInterface {
                ifname: ifname.to_owned(),
            });
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto.into(),
            )
        };
        if fd < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        for opt in [PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING] {
            setsockopt(&fd, opt, &one).map_err(err)?;
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set next.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as libc::c_int;
        // SAFETY: binds to a sockaddr_ll of the given size, alive across
        // the call.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: an all-zero packet_mreq is valid; the fields are set next.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index as libc::c_int;
        mreq.mr_type = PACKET_MR_PROMISC;
        setsockopt(&fd, PACKET_ADD_MEMBERSHIP, &mreq).map_err(err)?;
        Ok(Raw {
            fd,
            ifname: ifname.to_owned(),
        })
    }

    /// The host interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// One `recvmsg` into `iovs`; returns the packet's whole length
    /// (`MSG_TRUNC`), which may exceed what fitted.
    fn recv_msg(&self, iovs: &mut [libc::iovec]) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is valid; the iovecs are set next.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = iovs.len();
        // SAFETY: the iovecs name live, writable buffers the caller keeps
        // across the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the option reads `size_of::<T>()` bytes from `value`, which
    // lives across the call and has the layout the option expects.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Backend for Raw {
    fn send(&self, iovs: &mut [libc::iovec]) -> io::Result<()> {
        iovs[0].iov_len = PACKET_HDR_LEN;
        writev_all(self.fd.as_raw_fd(), iovs)
    }

    fn recv(&self, hdr: &mut [u8; HDR_LEN], frame: &mut [u8]) -> io::Result<usize> {
        let mut iovs = [iov_mut(&mut hdr[..PACKET_HDR_LEN]), iov_mut(frame)];
        let n = self.recv_msg(&mut iovs)?;
        let len = n
            .checked_sub(PACKET_HDR_LEN)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if len > frame.len() {
            // Cut short: refuse rather than hand over part of a frame.
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(len)
    }

    fn host_hdr_len(&self) -> usize {
        PACKET_HDR_LEN
    }

    fn recv_iov(&self, iovs: &mut [libc::iovec]) -> Option<io::Result<usize>> {
        Some(self.recv_msg(iovs))
    }

    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        true
    }

    fn offloads(&self) -> u64 {
        offload::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named() {
        let e = Raw::open("lklnosuch0").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"lklnosuch0\""), "{text}");
        assert!(text.contains("ip link"), "{text}");
    }
}
