//! The tap and macvtap backends: a tun/tap file descriptor set to
//! `IFF_TAP | IFF_NO_PI`, so each `read`/`write` is one Ethernet frame.
//!
//! - `tap`: `/dev/net/tun` attached (`TUNSETIFF`) to an existing host tap
//!   interface.
//! - `macvtap`: the character device `/dev/tapN` of a macvtap interface
//!   (N is its ifindex), whose flags are set with the same `TUNSETIFF`.
//!
//! With offloads asked for, the descriptor also gets `IFF_VNET_HDR` and a
//! 12-byte header (`TUNSETVNETHDRSZ`), the same `virtio_net_hdr_v1` the
//! driver uses, and `TUNSETOFFLOAD` is set to the receive offloads the
//! driver negotiates (none until then, so the host hands over nothing the
//! driver might refuse).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::backend::{iov_mut, readv, writev_all, Backend};
use super::offload::{self, HDR_LEN};
use super::BackendError;

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNSETOFFLOAD`: `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `TUNSETVNETHDRSZ`: `_IOW('T', 216, int)`.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
/// `IFF_VNET_HDR` (linux/if_tun.h).
const IFF_VNET_HDR: libc::c_int = 0x4000;

/// The offloads a tap can honour: all of them (the tap takes any header
/// on write, and `TUNSETOFFLOAD` says what it may give).
const TAP_OFFLOADS: u64 = offload::ALL;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A host tap interface, or a macvtap's character device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    /// The interface name (tap) or device path (macvtap), for messages.
    name: String,
    vnet_hdr: bool,
}

impl Tap {
    /// Attaches to the host tap interface `ifname`, which must exist
    /// (`ip tuntap add dev IFNAME mode tap`). With `vnet_hdr`, frames
    /// carry the virtio-net header (offloads).
    ///
    /// # Errors
    /// [`BackendError::NoSuchTap`] if there is no interface `ifname` in this
    /// network namespace, [`BackendError::TunDevice`] if `/dev/net/tun` cannot
    /// be opened, [`BackendError::Tap`] if the tap cannot be attached (not a
    /// tap, in use, no permission).
    pub fn open(ifname: &str, vnet_hdr: bool) -> Result<Tap, BackendError> {
        let tap_err = |source| BackendError::Tap {
            ifname: ifname.to_owned(),
            source,
        };
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(tap_err(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let c = CString::new(ifname).map_err(|_| tap_err(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: reads the NUL-terminated name, which lives across the call.
        if unsafe { libc::if_nametoindex(c.as_ptr()) } == 0 {
            return Err(BackendError::NoSuchTap {
                ifname: ifname.to_owned(),
            });
        }
        let file =
            open_rw(Path::new("/dev/net/tun")).map_err(|source| BackendError::TunDevice {
                ifname: ifname.to_owned(),
                source,
            })?;
        let tap = Tap {
            file,
            name: ifname.to_owned(),
            vnet_hdr,
        };
        tap.set_iff(ifname).map_err(tap_err)?;
        tap.start_without_offloads().map_err(tap_err)?;
        Ok(tap)
    }

    /// Opens the macvtap character device `path` (`/dev/tapN`, N the
    /// macvtap interface's ifindex). With `vnet_hdr`, frames carry the
    /// virtio-net header (offloads).
    ///
    /// # Errors
    /// [`BackendError::NoSuchMacvtap`] if `path` does not exist,
    /// [`BackendError::Macvtap`] if it cannot be opened or set up.
    pub fn open_macvtap(path: &Path, vnet_hdr: bool) -> Result<Tap, BackendError> {
        let err = |source| BackendError::Macvtap {
            path: path.to_owned(),
            source,
        };
        let file = open_rw(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                BackendError::NoSuchMacvtap {
                    path: path.to_owned(),
                }
            } else {
                err(e)
            }
        })?;
        let tap = Tap {
            file,
            name: path.display().to_string(),
            vnet_hdr,
        };
        // A macvtap starts with IFF_VNET_HDR on: set the flags we want.
        tap.set_iff("").map_err(err)?;
        tap.start_without_offloads().map_err(err)?;
        Ok(tap)
    }

    fn set_iff(&self, ifname: &str) -> io::Result<()> {
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if self.vnet_hdr {
            flags |= IFF_VNET_HDR;
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: flags as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        // SAFETY: TUNSETIFF reads (and may write back) one ifreq, which
        // `req` is, laid out as the kernel's and alive across the call.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sets the header size (with `vnet_hdr`) and turns every offload off
    /// until the driver negotiates some.
    fn start_without_offloads(&self) -> io::Result<()> {
        if !self.vnet_hdr {
            // The offloads an earlier user of a persistent tap set outlive
            // it: without a header to carry them, the host must not send
            // partial checksums or large segments (TCP stalled).
            return self.set_offload(0);
        }
        let size = HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, alive across the call.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETVNETHDRSZ, &size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // Nothing partial or large until the driver says it takes it.
        self.set_offload(0)
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The host interface's name (tap) or the device's path (macvtap).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Opens `path` read-write, non-blocking.
pub(super) fn open_rw(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

impl Backend for Tap {
    fn send(&self, iovs: &mut [libc::iovec]) -> io::Result<()> {
        let from = usize::from(!self.vnet_hdr);
        writev_all(self.file.as_raw_fd(), &iovs[from..])
    }

    fn recv(&self, hdr: &mut [u8; HDR_LEN], frame: &mut [u8]) -> io::Result<usize> {
        let fd = self.file.as_raw_fd();
        if !self.vnet_hdr {
            return readv(fd, &mut [iov_mut(frame)]);
        }
        let n = readv(fd, &mut [iov_mut(hdr), iov_mut(frame)])?;
        n.checked_sub(HDR_LEN)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    fn recv_iov(&self, iovs: &mut [libc::iovec]) -> Option<io::Result<usize>> {
        Some(readv(self.file.as_raw_fd(), iovs))
    }

    fn poll_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    fn offloads(&self) -> u64 {
        if self.vnet_hdr {
            TAP_OFFLOADS
        } else {
            0
        }
    }

    fn negotiated(&self, features: u64) -> io::Result<()> {
        if self.vnet_hdr {
            self.set_offload(offload::tun_flags(features))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tap_is_named_with_how_to_create_it() {
        let e = Tap::open("lklnosuch0", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no tap interface \"lklnosuch0\" on the host: create it with \
             `ip tuntap add dev lklnosuch0 mode tap`"
        );
        let e = Tap::open("a-name-far-too-long-for-linux", false).unwrap_err();
        assert!(matches!(e, BackendError::Tap { .. }), "{e}");
    }

    #[test]
    fn a_closed_tun_device_is_named_with_the_fix() {
        let e = BackendError::TunDevice {
            ifname: "tap0".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.to_string(),
            "cannot open /dev/net/tun for tap interface \"tap0\": Permission denied (os error 13) \
             (the device is not open to this user: `chmod 0666 /dev/net/tun`, the usual mode, \
             or run as root)"
        );
        let e = BackendError::Tap {
            ifname: "tap0".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(
            e.to_string()
                .contains("`ip tuntap add dev tap0 mode tap user $(id -un)`"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_macvtap_is_named_with_how_to_create_it() {
        let e = Tap::open_macvtap(Path::new("/dev/tap999999"), false).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/dev/tap999999"), "{text}");
        assert!(text.contains("type macvtap"), "{text}");
    }
}
