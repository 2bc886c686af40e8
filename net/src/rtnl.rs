//! An rtnetlink socket inside LKL: requests with acknowledgements, and
//! dumps.

use lkl::Errno;
use lkl_sys as sys;

use crate::error::{sc, Error};
use crate::nl::{self, Builder, Msg};

/// `SOL_NETLINK` (from the C library's `bits/socket.h`; the kernel keeps
/// it out of uapi).
const SOL_NETLINK: i32 = 270;

/// `MSG_TRUNC`: return a datagram's real length even if it did not fit
/// (`include/linux/socket.h`, not in uapi either).
const MSG_TRUNC: i32 = 0x20;

/// Receive buffer: bigger than any dump chunk the kernel sends (it sizes
/// them to at most 32 KiB for a reader this large).
const RECV_BUF: usize = 64 << 10;

/// An `AF_NETLINK`/`NETLINK_ROUTE` socket inside LKL. Closed on drop.
#[derive(Debug)]
pub struct Rtnl {
    fd: i32,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens the socket, asking for extended acks (the kernel's message
    /// with each refusal) and capped echoes.
    ///
    /// # Errors
    /// [`Error::Syscall`] if the socket cannot be made (kernel not booted:
    /// `ENOSYS`).
    pub fn open() -> Result<Rtnl, Error> {
        let ty = sys::LKL_SOCK_RAW | sys::LKL_O_CLOEXEC;
        let fd = lkl::socket(
            sys::LKL_AF_NETLINK as i32,
            ty as i32,
            sys::LKL_NETLINK_ROUTE as i32,
        )
        .map_err(sc("netlink socket"))?;
        // Both are optional comforts: ignore kernels without them.
        let _ = lkl::setsockopt_int(fd, SOL_NETLINK, sys::LKL_NETLINK_EXT_ACK as i32, 1);
        let _ = lkl::setsockopt_int(fd, SOL_NETLINK, sys::LKL_NETLINK_CAP_ACK as i32, 1);
        Ok(Rtnl {
            fd,
            seq: 1,
            buf: vec![0; RECV_BUF],
        })
    }

    fn send(&mut self, what: &str, msg: Builder, flags: u32) -> Result<u32, Error> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = msg.finish(self.seq, flags);
        let n = lkl::sendto(self.fd, &bytes, 0, None).map_err(sc(format!("{what}: send")))?;
        if n != bytes.len() {
            return Err(Error::Malformed {
                what: what.into(),
                reason: format!("sent {n} of {} bytes", bytes.len()),
            });
        }
        Ok(self.seq)
    }

    fn recv(&mut self, what: &str) -> Result<Vec<Msg>, Error> {
        let flags = MSG_TRUNC;
        let (n, _) = loop {
            match lkl::recvfrom(self.fd, &mut self.buf, flags) {
                Err(Errno::EINTR) => continue,
                r => break r.map_err(sc(format!("{what}: receive")))?,
            }
        };
        if n > self.buf.len() {
            return Err(Error::Malformed {
                what: what.into(),
                reason: format!(
                    "a {n}-byte datagram does not fit in {} bytes",
                    self.buf.len()
                ),
            });
        }
        nl::messages(&self.buf[..n]).map_err(|reason| Error::Malformed {
            what: what.into(),
            reason,
        })
    }

    /// Turns an `NLMSG_ERROR` into `Ok(())` (code 0) or the error.
    fn check_error(what: &str, m: &Msg) -> Result<(), Error> {
        let (code, message) = nl::error_of(m).map_err(|reason| Error::Malformed {
            what: what.into(),
            reason,
        })?;
        if code == 0 {
            Ok(())
        } else {
            Err(Error::Netlink {
                what: what.into(),
                errno: Errno(code.saturating_neg()),
                message,
            })
        }
    }

    /// Sends a request that changes something and waits for its ack.
    ///
    /// # Errors
    /// [`Error::Netlink`] with the kernel's errno and message.
    pub fn request(&mut self, what: &str, msg: Builder) -> Result<(), Error> {
        let seq = self.send(what, msg, sys::LKL_NLM_F_ACK)?;
        loop {
            for m in self.recv(what)? {
                if m.seq == seq && u32::from(m.ty) == sys::LKL_NLMSG_ERROR {
                    return Self::check_error(what, &m);
                }
            }
        }
    }

    /// Sends a `GET` for one object and returns the answer.
    ///
    /// # Errors
    /// [`Error::Netlink`] if the kernel answers with an error.
    pub fn get(&mut self, what: &str, msg: Builder) -> Result<Msg, Error> {
        let seq = self.send(what, msg, 0)?;
        loop {
            for m in self.recv(what)? {
                if m.seq != seq {
                    continue;
                }
                if u32::from(m.ty) == sys::LKL_NLMSG_ERROR {
                    Self::check_error(what, &m)?;
                    continue;
                }
                return Ok(m);
            }
        }
    }

    /// Sends a dump request and returns every message up to `NLMSG_DONE`.
    ///
    /// # Errors
    /// [`Error::Netlink`] if the kernel answers with an error.
    pub fn dump(&mut self, what: &str, msg: Builder) -> Result<Vec<Msg>, Error> {
        let seq = self.send(what, msg, sys::LKL_NLM_F_DUMP)?;
        let mut out = Vec::new();
        loop {
            for m in self.recv(what)? {
                if m.seq != seq {
                    continue;
                }
                match u32::from(m.ty) {
                    sys::LKL_NLMSG_DONE => return Ok(out),
                    sys::LKL_NLMSG_ERROR => Self::check_error(what, &m)?,
                    sys::LKL_NLMSG_NOOP => {}
                    _ => out.push(m),
                }
            }
        }
    }
}

impl Drop for Rtnl {
    fn drop(&mut self) {
        let _ = lkl::close(self.fd);
    }
}
