//! The mixed wait (see the crate doc): one waiter per thread, made once.

use std::cell::RefCell;
use std::ffi::c_long;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use lkl::Errno;
use lkl_sys as sys;

use crate::host;
use crate::{Fd, PollFd};

/// What the helper is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request.
    Idle,
    /// A request was handed over, not yet picked up.
    Request,
    /// Polling the host entries.
    Running,
    /// The caller asked it to stop (wrote the host eventfd).
    Cancelled,
    /// Finished (`wrote_lkl` says whether it woke the caller).
    Done,
    /// The owning thread is gone: end.
    Exit,
}

struct State {
    phase: Phase,
    /// The host entries of the current request.
    fds: Vec<libc::pollfd>,
    /// Whether the helper wrote the LKL eventfd for this request.
    wrote_lkl: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// The host eventfd the helper polls besides the request's entries.
    host_ev: i32,
    /// The LKL eventfd the caller polls besides its LKL entries.
    lkl_ev: i32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A thread's waiter: the helper thread and the two eventfds.
struct Waiter {
    shared: Arc<Shared>,
    helper: Option<std::thread::JoinHandle<()>>,
}

/// The CPUs the helper threads run on (`singlecpu` "2"), if pinned.
static AFFINITY: Mutex<Option<CpuSet>> = Mutex::new(None);

#[derive(Clone, Copy)]
struct CpuSet(libc::cpu_set_t);

/// Pins the helper threads made from now on to `set` (`None`: no pinning),
/// for upstream's `singlecpu` "2", which pins the poll threads too.
pub fn set_waiter_affinity(set: Option<libc::cpu_set_t>) {
    *AFFINITY.lock().unwrap_or_else(|p| p.into_inner()) = set.map(CpuSet);
}

impl Waiter {
    fn new() -> Result<Waiter, Errno> {
        let host_ev = host::eventfd()?;
        let flags = (sys::LKL_O_NONBLOCK | sys::LKL_O_CLOEXEC) as c_long;
        // SAFETY: integer arguments only.
        let lkl_ev = match unsafe {
            lkl::syscall(sys::__lkl__NR_eventfd2 as c_long, [0, flags, 0, 0, 0, 0])
        } {
            Ok(fd) => fd as i32,
            Err(e) => {
                host::close(host_ev);
                return Err(e);
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Idle,
                fds: Vec::new(),
                wrote_lkl: false,
            }),
            cv: Condvar::new(),
            host_ev,
            lkl_ev,
        });
        let s = shared.clone();
        let affinity = *AFFINITY.lock().unwrap_or_else(|p| p.into_inner());
        let helper = std::thread::Builder::new()
            .name("lkl-fdmux".into())
            .spawn(move || helper(&s, affinity))
            .map_err(|e| {
                host::close(host_ev);
                let _ = lkl::close(lkl_ev);
                Errno(e.raw_os_error().unwrap_or(libc::EAGAIN))
            })?;
        Ok(Waiter {
            shared,
            helper: Some(helper),
        })
    }

    /// One mixed wait: `lkl_fds` (LKL numbers) and `host_fds`.
    ///
    /// The host side's result is a `ppoll` snapshot taken on this thread
    /// once the LKL side returns; the helper only wakes this thread. A
    /// helper still polling then is cancelled but not waited for: the next
    /// call waits for it (by then it has long finished), which keeps its
    /// wake-up off this call's path.
    fn wait(
        &self,
        lkl_fds: &mut [libc::pollfd],
        host_fds: &mut [libc::pollfd],
        timeout: Option<Duration>,
    ) -> Result<usize, Errno> {
        let sh = &*self.shared;
        {
            let mut st = sh.lock();
            // The previous request, if cancelled, may still be ending.
            while !matches!(st.phase, Phase::Idle | Phase::Done) {
                st = sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.wrote_lkl {
                drain_lkl(sh.lkl_ev);
            }
            st.fds.clear();
            st.fds.extend_from_slice(host_fds);
            st.wrote_lkl = false;
            st.phase = Phase::Request;
        }
        sh.cv.notify_all();
        let mut set: Vec<libc::pollfd> = Vec::with_capacity(lkl_fds.len() + 1);
        set.extend_from_slice(lkl_fds);
        set.push(libc::pollfd {
            fd: sh.lkl_ev,
            events: libc::POLLIN,
            revents: 0,
        });
        let lkl_result = lkl_ppoll(&mut set, timeout);
        {
            let mut st = sh.lock();
            match st.phase {
                Phase::Request | Phase::Running => {
                    // The helper will not write the LKL eventfd now.
                    host::eventfd_signal(sh.host_ev);
                    st.phase = Phase::Cancelled;
                }
                Phase::Done if st.wrote_lkl => {
                    drain_lkl(sh.lkl_ev);
                    st.wrote_lkl = false;
                }
                _ => {}
            }
        }
        for (f, r) in lkl_fds.iter_mut().zip(&set) {
            f.revents = r.revents;
        }
        lkl_result?;
        let host_ready = host::ppoll(host_fds, Some(Duration::ZERO), None)?;
        let lkl_ready = lkl_fds.iter().filter(|f| f.revents != 0).count();
        Ok(lkl_ready + host_ready)
    }
}

/// Resets the LKL eventfd (non-blocking read).
fn drain_lkl(fd: i32) {
    let mut v = [0u8; 8];
    let _ = lkl::read(fd, &mut v);
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.shared.lock().phase = Phase::Exit;
        self.shared.cv.notify_all();
        if let Some(h) = self.helper.take() {
            let _ = h.join();
        }
        host::close(self.shared.host_ev);
        let _ = lkl::close(self.shared.lkl_ev);
    }
}

/// The helper thread: polls the host entries of each request.
fn helper(sh: &Shared, affinity: Option<CpuSet>) {
    // Signals are the program's threads' business, not this one's.
    let all = host::full_sigset();
    host::set_sigmask(&all);
    if let Some(CpuSet(set)) = affinity {
        // SAFETY: `set` is a live cpu_set_t of the size passed. A failure
        // leaves the thread unpinned, which is only slower.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    }
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        {
            let mut st = sh.lock();
            // A request cancelled before it was picked up is still polled
            // (the eventfd is set, so at once): the caller wants a snapshot.
            while !matches!(st.phase, Phase::Request | Phase::Cancelled | Phase::Exit) {
                st = sh.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.phase == Phase::Exit {
                return;
            }
            if st.phase == Phase::Request {
                st.phase = Phase::Running;
            }
            fds.clear();
            fds.extend_from_slice(&st.fds);
        }
        fds.push(libc::pollfd {
            fd: sh.host_ev,
            events: libc::POLLIN,
            revents: 0,
        });
        let r = loop {
            match host::ppoll(&mut fds, None, None) {
                Err(Errno(libc::EINTR)) => continue,
                r => break r,
            }
        };
        let mut st = sh.lock();
        // The caller's cancel, if any, was written before it set Cancelled
        // under this lock: reset the eventfd for the next request.
        host::eventfd_drain(sh.host_ev);
        // Something ready (or an error the caller's snapshot will see):
        // wake the caller, unless it has already moved on.
        let wake = !matches!(r, Ok(0));
        if st.phase == Phase::Running && wake {
            let _ = lkl::write(sh.lkl_ev, &1u64.to_ne_bytes());
            st.wrote_lkl = true;
        }
        if st.phase == Phase::Exit {
            return;
        }
        st.phase = Phase::Done;
        drop(st);
        sh.cv.notify_all();
    }
}

/// LKL `ppoll` of `fds` (LKL numbers), no signal mask.
fn lkl_ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> Result<usize, Errno> {
    let ts = timeout.map(|d| sys::__lkl__kernel_timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| {
        t as *const sys::__lkl__kernel_timespec
    });
    let args = [
        fds.as_mut_ptr() as c_long,
        fds.len() as c_long,
        tsp as c_long,
        0,
        host::KERNEL_SIGSET as c_long,
        0,
    ];
    // SAFETY: `fds` is a live slice of pollfds (LKL's `pollfd` has the same
    // layout), `tsp` is null or a live timespec, the mask is null.
    unsafe { lkl::syscall(sys::__lkl__NR_ppoll as c_long, args) }.map(|n| n as usize)
}

thread_local! {
    static WAITER: RefCell<Option<Waiter>> = const { RefCell::new(None) };
}

/// In the child of a `fork`: forgets this thread's waiter without
/// dropping it. Its helper thread was not copied into the child and its
/// LKL eventfd belongs to the parent's kernel: dropping it (at the child's
/// exit) would join a thread that is not there and call into a kernel that
/// does not run. Call it from a `pthread_atfork` child handler.
pub fn forget_waiter_after_fork() {
    WAITER.with(|w| {
        if let Ok(mut slot) = w.try_borrow_mut() {
            std::mem::forget(slot.take());
        }
    });
}

/// `ppoll` over a set that may mix host and LKL entries (see the crate
/// doc). `timeout` `None` waits forever. `sigmask` is the mask during the
/// wait (exact for host-only sets; see the crate doc otherwise). Entries
/// with a negative number are ignored (`revents` 0). Returns how many
/// entries have a non-zero `revents`.
///
/// # Errors
/// What either kernel's `ppoll` returns (`EINVAL`, `EFAULT`, `EINTR` for a
/// host-only wait, `ENOSYS` when an LKL entry is given and LKL is not
/// running), or the errno of making the thread's waiter.
pub fn poll(
    fds: &mut [PollFd],
    timeout: Option<Duration>,
    sigmask: Option<&libc::sigset_t>,
) -> Result<usize, Errno> {
    let raw = |f: &PollFd| libc::pollfd {
        fd: f.fd.raw(),
        events: f.events,
        revents: 0,
    };
    let mut lkl_fds: Vec<libc::pollfd> = Vec::new();
    let mut host_fds: Vec<libc::pollfd> = Vec::new();
    for f in fds.iter() {
        match f.fd {
            Fd::Lkl(n) if n >= 0 => lkl_fds.push(raw(f)),
            Fd::Host(n) if n >= 0 => host_fds.push(raw(f)),
            _ => {}
        }
    }
    let n = if lkl_fds.is_empty() {
        host::ppoll(&mut host_fds, timeout, sigmask)?
    } else {
        let old = sigmask.map(host::set_sigmask);
        let r = if host_fds.is_empty() {
            lkl_ppoll(&mut lkl_fds, timeout)
        } else if timeout == Some(Duration::ZERO) {
            // Nothing to wait for: two snapshots on this thread.
            lkl_ppoll(&mut lkl_fds, timeout)
                .and_then(|a| host::ppoll(&mut host_fds, timeout, None).map(|b| a + b))
        } else {
            // A host entry already ready needs no helper: two snapshots.
            match host::ppoll(&mut host_fds, Some(Duration::ZERO), None) {
                Ok(0) => mixed(&mut lkl_fds, &mut host_fds, timeout),
                Ok(b) => lkl_ppoll(&mut lkl_fds, Some(Duration::ZERO)).map(|a| a + b),
                Err(e) => Err(e),
            }
        };
        if let Some(old) = old {
            host::set_sigmask(&old);
        }
        r?
    };
    let (mut l, mut h) = (lkl_fds.iter(), host_fds.iter());
    for f in fds.iter_mut() {
        f.revents = match f.fd {
            Fd::Lkl(n) if n >= 0 => l.next().map_or(0, |p| p.revents),
            Fd::Host(n) if n >= 0 => h.next().map_or(0, |p| p.revents),
            _ => 0,
        };
    }
    Ok(n)
}

/// A mixed wait on this thread's waiter (made on first use). A nested call
/// (from a signal handler during a wait) uses a waiter of its own.
fn mixed(
    lkl_fds: &mut [libc::pollfd],
    host_fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
) -> Result<usize, Errno> {
    let nested = WAITER.with(|w| {
        let Ok(mut slot) = w.try_borrow_mut() else {
            return None;
        };
        if slot.is_none() {
            match Waiter::new() {
                Ok(new) => *slot = Some(new),
                Err(e) => return Some(Err(e)),
            }
        }
        slot.as_ref().map(|w| w.wait(lkl_fds, host_fds, timeout))
    });
    match nested {
        Some(r) => r,
        None => Waiter::new()?.wait(lkl_fds, host_fds, timeout),
    }
}
