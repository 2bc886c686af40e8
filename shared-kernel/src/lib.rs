//! One LKL for a whole process tree.
//!
//! `lkl-run --zpoline` with an LKL configuration starts a *kernel process* ([`server`])
//! before the program: it boots LKL from the configuration and serves every process of
//! the tree (forked, vforked and exec'd at any depth) until the last one ends, then
//! exits, which releases the kernel's devices. Each host process of the tree is its own
//! process inside LKL (own file table, cwd, credentials), each of its threads a thread
//! of it; the kernel process runs one host thread per program thread that calls LKL.
//!
//! The processes reach it through a *window* ([`window`]): one shared memory mapping at
//! the same address in the kernel process and in every process of the tree, cut into
//! slots, one per calling thread. A call is posted in the thread's slot and answered
//! there ([`client`]); both sides spin briefly before they sleep on a futex, so a call
//! from a busy thread costs two cache-line transfers besides LKL's own work. LKL reaches
//! the caller's memory through host operations: a copy from the window, or
//! `process_vm_readv`/`process_vm_writev` on the caller's pid for other addresses.
//!
//! A process is known by its host pid. A fork registers the child's LKL process before
//! the host fork (so it copies the file table at that instant) and binds it to the
//! child's pid after; an exec keeps its LKL process (close-on-exec fds closed) and gets
//! its fd table back from the kernel process; the kernel process watches every pid
//! with a pidfd, so a process killed at any moment has its LKL process ended (its
//! sockets closed, its ports free) while the rest goes on.

pub mod client;
pub mod fsview;
pub mod futex;
mod kapi;
pub mod server;
pub mod window;

use std::fmt;

pub use fsview::{FsView, ViewVolume};

/// Where a process of the tree finds the kernel process: passed to exec'd images on
/// `lkl-run`'s command line as `PID:FD:ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The kernel process's pid.
    pub pid: i32,
    /// Its fd of the window's memory file (opened through `/proc/PID/fd/FD`).
    pub fd: i32,
    /// The window's address, the same in every process.
    pub addr: usize,
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:#x}", self.pid, self.fd, self.addr)
    }
}

impl std::str::FromStr for Spec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Spec(s.to_owned());
        let mut it = s.split(':');
        let pid = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let fd = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let addr = it
            .next()
            .and_then(|v| usize::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .ok_or_else(bad)?;
        if it.next().is_some() || pid <= 0 || fd < 0 || addr == 0 {
            return Err(bad());
        }
        Ok(Spec { pid, fd, addr })
    }
}

/// Errors of starting or reaching the kernel process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed `--shared-kernel` value.
    #[error("bad kernel process address {0:?} (expected PID:FD:ADDR, as lkl-run passes it)")]
    Spec(String),
    /// A host call failed.
    #[error("{what}: {err}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The host's error.
        err: std::io::Error,
    },
    /// The kernel process could not boot LKL (the message names the key).
    #[error("{0}")]
    Boot(String),
    /// The kernel process is gone.
    #[error("the kernel process (pid {0}) is gone: start the program again")]
    Gone(i32),
}

impl Error {
    pub(crate) fn os(what: &'static str) -> Self {
        Error::Os {
            what,
            err: std::io::Error::last_os_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_bad_ones_are_named() {
        let s = Spec {
            pid: 42,
            fd: 7,
            addr: 0x2000_0000_0000,
        };
        assert_eq!(s.to_string(), "42:7:0x200000000000");
        assert_eq!(s.to_string().parse::<Spec>().unwrap(), s);
        for bad in ["", "1:2", "x:1:0x10", "1:2:0", "1:2:3:4", "0:1:0x10"] {
            let e = bad.parse::<Spec>().unwrap_err().to_string();
            assert!(e.contains("PID:FD:ADDR"), "{bad}: {e}");
        }
    }
}
