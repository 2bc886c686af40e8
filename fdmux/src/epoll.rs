//! An epoll instance over both kernels: a host epoll fd plus an LKL one.

use std::ffi::c_long;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lkl::Errno;
use lkl_sys as sys;

use crate::host;
use crate::{poll, Fd, PollFd};

/// An epoll instance whose interest list may hold host and LKL
/// descriptors. The host epoll fd is the instance's identity (a program
/// sees it as the epoll fd); the LKL epoll fd is made on the first LKL
/// entry and closed on drop. The host fd is the caller's to close.
///
/// `epoll_event` is the same 12-byte packed structure on both sides; its
/// `u64` data is passed through untouched.
#[derive(Debug)]
pub struct Epoll {
    host: i32,
    /// LKL's epoll fd, or -1 before the first LKL entry.
    lkl: AtomicI32,
    /// Serialises the making of `lkl`.
    make_lkl: Mutex<()>,
    cloexec: bool,
    /// Entries added minus entries deleted, per side: a side with none is
    /// not waited on. (A descriptor closed without `EPOLL_CTL_DEL` stays
    /// counted, which only costs a mixed wait.)
    host_entries: AtomicUsize,
    lkl_entries: AtomicUsize,
    /// Made around an existing host fd whose entries we did not see: the
    /// host side always counts as holding some.
    adopted: bool,
    /// Which side fills the event buffer first: alternates, so neither
    /// starves the other.
    lkl_first: AtomicBool,
}

impl Epoll {
    /// A new instance: host `epoll_create1(flags)` (`EPOLL_CLOEXEC` is the
    /// one flag; it is given to the LKL fd too).
    ///
    /// # Errors
    /// The host's errno.
    pub fn new(flags: i32) -> Result<Epoll, Errno> {
        // SAFETY: integer arguments only.
        let fd = host::check(unsafe { libc::syscall(libc::SYS_epoll_create1, flags) })?;
        let mut ep = Epoll::from_host_fd(fd as i32, flags);
        ep.adopted = false;
        Ok(ep)
    }

    /// An instance around an existing host epoll fd (made with `flags`),
    /// which may already hold host entries.
    pub fn from_host_fd(host: i32, flags: i32) -> Epoll {
        Epoll {
            host,
            lkl: AtomicI32::new(-1),
            make_lkl: Mutex::new(()),
            cloexec: flags & libc::EPOLL_CLOEXEC != 0,
            host_entries: AtomicUsize::new(0),
            lkl_entries: AtomicUsize::new(0),
            adopted: true,
            lkl_first: AtomicBool::new(false),
        }
    }

    /// The host epoll fd.
    pub fn host_fd(&self) -> i32 {
        self.host
    }

    /// LKL's epoll fd, once an LKL entry was added.
    pub fn lkl_fd(&self) -> Option<i32> {
        let fd = self.lkl.load(Ordering::Acquire);
        (fd >= 0).then_some(fd)
    }

    /// LKL's epoll fd, made now if needed.
    fn lkl_or_make(&self) -> Result<i32, Errno> {
        if let Some(fd) = self.lkl_fd() {
            return Ok(fd);
        }
        let _g = self.make_lkl.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = self.lkl_fd() {
            return Ok(fd);
        }
        let flags = if self.cloexec {
            sys::LKL_EPOLL_CLOEXEC as i32
        } else {
            0
        };
        let fd = lkl::epoll_create1(flags)?;
        self.lkl.store(fd, Ordering::Release);
        Ok(fd)
    }

    /// `epoll_ctl(op, fd, event)` on the side of `fd`. `event` may be
    /// `None` for `EPOLL_CTL_DEL`.
    ///
    /// # Errors
    /// That kernel's errno (`EEXIST`, `ENOENT`, `EBADF`, `EPERM`, ...).
    pub fn ctl(&self, op: i32, fd: Fd, event: Option<&libc::epoll_event>) -> Result<(), Errno> {
        let evp = event.map_or(std::ptr::null(), |e| e as *const libc::epoll_event);
        let count = match fd {
            Fd::Host(n) => {
                // SAFETY: `evp` is null or a live epoll_event.
                host::check(unsafe { libc::syscall(libc::SYS_epoll_ctl, self.host, op, n, evp) })?;
                &self.host_entries
            }
            Fd::Lkl(n) => {
                let ep = if op == libc::EPOLL_CTL_ADD {
                    self.lkl_or_make()?
                } else {
                    self.lkl_fd().ok_or(Errno(libc::ENOENT))?
                };
                let args = [ep as c_long, op as c_long, n as c_long, evp as c_long, 0, 0];
                // SAFETY: `evp` is null or a live epoll_event, whose layout
                // is LKL's `epoll_event` (both packed, 12 bytes).
                unsafe { lkl::syscall(sys::__lkl__NR_epoll_ctl as c_long, args) }?;
                &self.lkl_entries
            }
        };
        match op {
            libc::EPOLL_CTL_ADD => {
                count.fetch_add(1, Ordering::AcqRel);
            }
            libc::EPOLL_CTL_DEL => {
                let _ =
                    count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
            }
            _ => {}
        }
        Ok(())
    }

    /// `epoll_pwait`: waits up to `timeout` (`None`: forever) for events
    /// of either side and fills `events` from the front. Only one side
    /// holding entries: that kernel's `epoll_pwait` directly. Both: a mixed
    /// [`poll`] on the two epoll fds, then each is read with timeout 0.
    ///
    /// # Errors
    /// `EINVAL` for an empty buffer, else the kernels' errnos.
    pub fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout: Option<Duration>,
        sigmask: Option<&libc::sigset_t>,
    ) -> Result<usize, Errno> {
        if events.is_empty() {
            return Err(Errno(libc::EINVAL));
        }
        let lkl = self
            .lkl_fd()
            .filter(|_| self.lkl_entries.load(Ordering::Acquire) > 0);
        let Some(lkl) = lkl else {
            return self.host_wait(events, timeout, sigmask);
        };
        if !self.adopted && self.host_entries.load(Ordering::Acquire) == 0 {
            let old = sigmask.map(host::set_sigmask);
            let r = lkl_wait(lkl, events, timeout);
            if let Some(old) = old {
                host::set_sigmask(&old);
            }
            return r;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut fds = [
                PollFd::new(Fd::Host(self.host), libc::POLLIN),
                PollFd::new(Fd::Lkl(lkl), libc::POLLIN),
            ];
            poll(&mut fds, left, sigmask)?;
            let lkl_first = self.lkl_first.fetch_xor(true, Ordering::AcqRel);
            let zero = Some(Duration::ZERO);
            let n = if lkl_first {
                let a = lkl_wait(lkl, events, zero)?;
                a + self.host_wait_some(&mut events[a..])?
            } else {
                let a = self.host_wait(events, zero, None)?;
                a + lkl_wait_some(lkl, &mut events[a..])?
            };
            if n > 0 || left == Some(Duration::ZERO) {
                return Ok(n);
            }
        }
    }

    /// Host `epoll_pwait` on the host fd.
    fn host_wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout: Option<Duration>,
        sigmask: Option<&libc::sigset_t>,
    ) -> Result<usize, Errno> {
        let maskp = sigmask.map_or(std::ptr::null(), |m| m as *const libc::sigset_t);
        // SAFETY: `events` is a live buffer of the length passed; `maskp`
        // is null or live (the kernel reads 8 bytes).
        let r = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait,
                self.host,
                events.as_mut_ptr(),
                events.len().min(i32::MAX as usize) as i32,
                timeout_ms(timeout),
                maskp,
                host::KERNEL_SIGSET,
            )
        };
        host::check(r).map(|n| n as usize)
    }

    /// [`Epoll::host_wait`] with timeout 0 into what is left of a buffer.
    fn host_wait_some(&self, events: &mut [libc::epoll_event]) -> Result<usize, Errno> {
        if events.is_empty() {
            return Ok(0);
        }
        self.host_wait(events, Some(Duration::ZERO), None)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        if let Some(fd) = self.lkl_fd() {
            let _ = lkl::close(fd);
        }
    }
}

/// A timeout in milliseconds for `epoll_wait` (rounded up; -1 forever).
fn timeout_ms(t: Option<Duration>) -> i32 {
    match t {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// LKL `epoll_pwait` on `ep`.
fn lkl_wait(
    ep: i32,
    events: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> Result<usize, Errno> {
    let args = [
        ep as c_long,
        events.as_mut_ptr() as c_long,
        events.len().min(i32::MAX as usize) as c_long,
        timeout_ms(timeout) as c_long,
        0,
        host::KERNEL_SIGSET as c_long,
    ];
    // SAFETY: `events` is a live buffer of the length passed, laid out as
    // LKL's `epoll_event`; the mask is null.
    unsafe { lkl::syscall(sys::__lkl__NR_epoll_pwait as c_long, args) }.map(|n| n as usize)
}

/// [`lkl_wait`] with timeout 0 into what is left of a buffer.
fn lkl_wait_some(ep: i32, events: &mut [libc::epoll_event]) -> Result<usize, Errno> {
    if events.is_empty() {
        return Ok(0);
    }
    lkl_wait(ep, events, Some(Duration::ZERO))
}

const _: () = assert!(
    std::mem::size_of::<libc::epoll_event>() == std::mem::size_of::<sys::lkl_epoll_event>()
);
