//! Waiting on host and LKL file descriptors together: `poll`, `ppoll`,
//! `select`, `pselect` and `epoll` over sets that mix both kinds, for the
//! hijack library and the zpoline backend.
//!
//! The API does not care how a program numbers its descriptors: each entry
//! names its side, [`Fd::Host`] or [`Fd::Lkl`] (the caller maps its own
//! numbers; [`select`] takes the mapping as a function).
//!
//! # How a mixed wait works
//! A host entry already ready ends the wait at once (a host `ppoll` with
//! timeout 0, then one of LKL's). Otherwise each thread that waits on a
//! mixed set gets, once, a *waiter*: a host eventfd, an LKL eventfd and a
//! host helper thread that lives as long as the thread (no thread is made
//! per call). A wait then:
//! 1. hands the host entries to the helper, which `ppoll`s them plus the
//!    host eventfd (no timeout);
//! 2. `ppoll`s the LKL entries plus the LKL eventfd inside LKL, with the
//!    caller's timeout, on the calling thread;
//! 3. if the helper's poll finds a host entry ready first, the helper
//!    writes the LKL eventfd (an LKL `write`), which ends step 2;
//! 4. when step 2 ends for any reason, the caller writes the host eventfd
//!    if the helper is still polling (it will then not write the LKL
//!    eventfd), drains the LKL eventfd if the helper wrote it, and takes
//!    the host side's result as a `ppoll` snapshot with timeout 0. It does
//!    not wait for a cancelled helper: the next wait does, which keeps the
//!    helper's wake-up off this call's path.
//!
//! The LKL `ppoll` reports every ready LKL entry when it returns and the
//! snapshot every ready host entry. The hand-over and the cancel happen
//! under one mutex, so no wakeup is lost and none is left over for the
//! next call. Sets with only host entries go straight to the host's
//! `ppoll`, sets with only LKL entries straight to LKL's.
//!
//! # Signals
//! A host-only wait is the host's `ppoll` with the caller's mask (exact).
//! In a wait that involves LKL, the calling thread sleeps inside LKL: the
//! mask is applied to the thread for the duration of the wait (so handlers
//! run), but a signal does not end the wait with `EINTR`; it ends when
//! something is ready or the timeout passes.
//!
//! # Epoll
//! An [`Epoll`] is a host epoll fd plus an LKL epoll fd (made on the first
//! LKL entry). `wait` waits on both fds through the mixed wait above, then
//! collects each with timeout 0, taking turns at which side fills the
//! buffer first.
//!
//! # fork
//! A forked child has none of the helper threads and cannot call the
//! parent's kernel: call [`forget_waiter_after_fork`] in the child, never
//! drop an [`Epoll`] there (forget it), and give the mux no LKL entries.
//!
//! Every LKL call needs a booted kernel; before boot and after halt they
//! fail with `ENOSYS`.

mod epoll;
mod host;
mod select;
mod waiter;

pub use epoll::Epoll;
pub use lkl::Errno;
pub use select::select;
pub use waiter::{forget_waiter_after_fork, poll, set_waiter_affinity};

/// A descriptor and the kernel it belongs to. A negative number is ignored
/// by [`poll`], as `poll(2)` ignores negative fds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fd {
    /// A host kernel descriptor.
    Host(i32),
    /// A descriptor of LKL's (its number inside LKL).
    Lkl(i32),
}

impl Fd {
    /// The number on its own side.
    pub fn raw(self) -> i32 {
        match self {
            Fd::Host(n) | Fd::Lkl(n) => n,
        }
    }
}

/// One entry of [`poll`]: `struct pollfd` with its side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollFd {
    /// The descriptor.
    pub fd: Fd,
    /// What to wait for (`POLLIN`, `POLLOUT`, ...; same bits on both sides).
    pub events: i16,
    /// What is ready (set by [`poll`]).
    pub revents: i16,
}

impl PollFd {
    /// An entry waiting for `events` on `fd`.
    pub fn new(fd: Fd, events: i16) -> PollFd {
        PollFd {
            fd,
            events,
            revents: 0,
        }
    }
}

#[cfg(test)]
mod tests;
