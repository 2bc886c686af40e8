//! The tap backend: `/dev/net/tun` attached to an existing host tap
//! interface with `IFF_TAP | IFF_NO_PI`, so each `read`/`write` is one
//! Ethernet frame.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::backend::Backend;
use super::NetError;

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A host tap interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    ifname: String,
}

impl Tap {
    /// Attaches to the host tap interface `ifname`, which must exist
    /// (`ip tuntap add dev IFNAME mode tap`).
    ///
    /// # Errors
    /// [`NetError::NoSuchTap`] if there is no interface `ifname` in this
    /// network namespace, [`NetError::Tap`] if it cannot be attached (not a
    /// tap, in use, no permission).
    pub fn open(ifname: &str) -> Result<Tap, NetError> {
        let tap_err = |source| NetError::Tap {
            ifname: ifname.to_owned(),
            source,
        };
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(tap_err(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let c = CString::new(ifname).map_err(|_| tap_err(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: reads the NUL-terminated name, which lives across the call.
        if unsafe { libc::if_nametoindex(c.as_ptr()) } == 0 {
            return Err(NetError::NoSuchTap {
                ifname: ifname.to_owned(),
            });
        }
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(tap_err)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        // SAFETY: TUNSETIFF reads (and may write back) one ifreq, which
        // `req` is, laid out as the kernel's and alive across the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(tap_err(io::Error::last_os_error()));
        }
        Ok(Tap {
            file,
            ifname: ifname.to_owned(),
        })
    }

    /// The host interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl Backend for Tap {
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(frame)?;
        if n != frame.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    fn poll_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tap_is_named_with_how_to_create_it() {
        let e = Tap::open("lklnosuch0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no tap interface \"lklnosuch0\" on the host: create it with \
             `ip tuntap add dev lklnosuch0 mode tap`"
        );
        let e = Tap::open("a-name-far-too-long-for-linux").unwrap_err();
        assert!(matches!(e, NetError::Tap { .. }), "{e}");
    }
}
