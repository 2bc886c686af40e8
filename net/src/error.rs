//! The crate's error type.

use std::net::IpAddr;
use std::time::Duration;

use lkl::Errno;

/// Everything that can go wrong while configuring LKL's network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call inside LKL failed (socket, send, open, mount, ...).
    #[error("{what}: {errno}")]
    Syscall {
        /// What was being done.
        what: String,
        /// What the kernel returned.
        errno: Errno,
    },
    /// The kernel refused a netlink request.
    #[error("{what}: the kernel refused: {errno}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Netlink {
        /// The request.
        what: String,
        /// The error in the kernel's answer.
        errno: Errno,
        /// The kernel's extended-ack message, if it gave one.
        message: Option<String>,
    },
    /// An answer that does not parse.
    #[error("{what}: malformed netlink answer: {reason}")]
    Malformed {
        /// The request.
        what: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// No interface has this name inside LKL.
    #[error("no interface named {name:?} inside LKL")]
    NoSuchInterface {
        /// The name asked for.
        name: String,
    },
    /// IPv6 duplicate address detection found the address in use.
    #[error("IPv6 duplicate address detection failed for {addr} on interface {ifindex}: another host uses it")]
    DadFailed {
        /// The address.
        addr: IpAddr,
        /// The interface.
        ifindex: i32,
    },
    /// The address stayed tentative (or never appeared).
    #[error("{addr} on interface {ifindex} still tentative after {waited:?} (is the link up?)")]
    DadTimeout {
        /// The address.
        addr: IpAddr,
        /// The interface.
        ifindex: i32,
        /// How long we waited.
        waited: Duration,
    },
    /// A value these helpers cannot send (a name too long, a bad key).
    #[error("{what}: {reason}")]
    Invalid {
        /// The argument.
        what: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The kernel's error number, if this is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Syscall { errno, .. } | Error::Netlink { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// `map_err` helper for system calls: `.map_err(sc("open /x"))`.
pub(crate) fn sc(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let what = what.into();
    move |errno| Error::Syscall { what, errno }
}
