//! `poll`, `ppoll`, `select`, `pselect` and `epoll` over the program's fds,
//! mixed host and LKL sets included, through `lkl-fdmux`.

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lkl_fdmux::{Epoll, Fd, PollFd};

use crate::fds::{c_result, host, mux_fd, set_errno, FORKED, LKL_FD_OFFSET};

/// A `poll` timeout in ms as the mux takes it (negative: forever).
fn ms(timeout_ms: c_int) -> Option<Duration> {
    (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64))
}

/// A `timespec` timeout (null: forever).
///
/// # Safety
/// `ts` is null or points to a valid `timespec`.
unsafe fn ts(ts: *const libc::timespec) -> Result<Option<Duration>, c_int> {
    if ts.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let t = unsafe { *ts };
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(libc::EINVAL);
    }
    Ok(Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
}

/// Whether any entry of `fds` is LKL's.
fn any_lkl(fds: &[libc::pollfd]) -> bool {
    fds.iter().any(|f| f.fd >= LKL_FD_OFFSET)
}

/// The mux's poll over the program's `pollfd`s.
fn mux_poll(
    fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
    mask: Option<&libc::sigset_t>,
) -> c_int {
    if FORKED.load(Ordering::Relaxed) {
        // LKL does not run in a forked child (see the crate doc).
        set_errno(libc::EBADF);
        return -1;
    }
    let mut set: Vec<PollFd> = fds
        .iter()
        .map(|f| PollFd::new(mux_fd(f.fd), f.events))
        .collect();
    let r = lkl_fdmux::poll(&mut set, timeout, mask);
    if r.is_ok() {
        for (f, s) in fds.iter_mut().zip(&set) {
            f.revents = s.revents;
        }
    }
    c_result(r)
}

/// `poll(2)`: host-only sets go straight to the host; others through the
/// mux (a real wait on both kernels).
///
/// # Safety
/// `fds` points to `n` pollfds.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
    if n == 0 || fds.is_null() {
        return host!(libc::SYS_poll, fds, n, timeout_ms) as c_int;
    }
    // SAFETY: the caller's `n` pollfds.
    let all = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    if !any_lkl(all) {
        return host!(libc::SYS_poll, fds, n, timeout_ms) as c_int;
    }
    mux_poll(all, ms(timeout_ms), None)
}

/// glibc's fortified `poll`.
///
/// # Safety
/// As [`poll`]; `fdslen` is the array's real size in bytes.
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout_ms: c_int,
    fdslen: usize,
) -> c_int {
    if (fdslen / std::mem::size_of::<libc::pollfd>()) < n as usize {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { poll(fds, n, timeout_ms) }
}

/// `ppoll(2)`.
///
/// # Safety
/// `fds` points to `n` pollfds; `tmo` and `mask` are null or valid.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: the caller's pointers; the kernel reads 8 bytes of the mask.
    let host_ppoll = || host!(libc::SYS_ppoll, fds, n, tmo, mask, 8usize) as c_int;
    if n == 0 || fds.is_null() {
        return host_ppoll();
    }
    // SAFETY: the caller's `n` pollfds.
    let all = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    if !any_lkl(all) {
        return host_ppoll();
    }
    // SAFETY: the caller's timespec.
    let timeout = match unsafe { ts(tmo) } {
        Ok(t) => t,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    // SAFETY: null or the caller's valid sigset.
    mux_poll(all, timeout, unsafe { mask.as_ref() })
}

/// glibc's fortified `ppoll`.
///
/// # Safety
/// As [`ppoll`]; `fdslen` is the array's real size in bytes.
#[no_mangle]
pub unsafe extern "C" fn __ppoll_chk(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
    fdslen: usize,
) -> c_int {
    if (fdslen / std::mem::size_of::<libc::pollfd>()) < n as usize {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { ppoll(fds, n, tmo, mask) }
}

/// The shared part of `select` and `pselect` once a set holds LKL fds.
///
/// # Safety
/// Each set is null or a valid `fd_set`; `mask` null or valid.
unsafe fn mux_select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: Option<Duration>,
    mask: *const libc::sigset_t,
) -> c_int {
    if FORKED.load(Ordering::Relaxed) {
        set_errno(libc::EBADF);
        return -1;
    }
    // SAFETY: null or the caller's valid sets and mask.
    let (r, w, e, mask) = unsafe { (r.as_mut(), w.as_mut(), e.as_mut(), mask.as_ref()) };
    c_result(lkl_fdmux::select(nfds, r, w, e, timeout, mask, &mux_fd))
}

/// `select(2)`: sets holding no LKL fd (`nfds <= 512`) go to the host;
/// others through the mux. Like Linux, the timeout is updated with the
/// time left.
///
/// # Safety
/// Each set is null or a valid `fd_set`; `tv` is null or a valid timeval.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    if nfds <= LKL_FD_OFFSET {
        return host!(libc::SYS_select, nfds, r, w, e, tv) as c_int;
    }
    let timeout = if tv.is_null() {
        None
    } else {
        // SAFETY: a valid timeval (the caller's contract).
        let t = unsafe { *tv };
        if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
            set_errno(libc::EINVAL);
            return -1;
        }
        Some(Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32))
    };
    let start = std::time::Instant::now();
    // SAFETY: the caller's contract; no mask.
    let n = unsafe { mux_select(nfds, r, w, e, timeout, std::ptr::null()) };
    if let (Some(t), false) = (timeout, tv.is_null()) {
        let left = t.saturating_sub(start.elapsed());
        // SAFETY: a valid timeval (the caller's contract).
        unsafe {
            (*tv).tv_sec = left.as_secs() as _;
            (*tv).tv_usec = left.subsec_micros() as _;
        }
    }
    n
}

/// `pselect(2)`.
///
/// # Safety
/// Each set is null or a valid `fd_set`; `tmo` and `mask` null or valid.
#[no_mangle]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    if nfds <= LKL_FD_OFFSET {
        // The kernel's pselect6 takes the mask as {pointer, size}.
        let m: [usize; 2] = [mask as usize, 8];
        let mp = if mask.is_null() {
            std::ptr::null()
        } else {
            m.as_ptr()
        };
        // pselect6 may write the time left: work on a copy, as glibc does.
        let mut copy = if tmo.is_null() {
            None
        } else {
            // SAFETY: a valid timespec (the caller's contract).
            Some(unsafe { *tmo })
        };
        let tp = copy
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
        return host!(libc::SYS_pselect6, nfds, r, w, e, tp, mp) as c_int;
    }
    // SAFETY: the caller's timespec.
    let timeout = match unsafe { ts(tmo) } {
        Ok(t) => t,
        Err(err) => {
            set_errno(err);
            return -1;
        }
    };
    // SAFETY: the caller's contract.
    unsafe { mux_select(nfds, r, w, e, timeout, mask) }
}

// ---------------------------------------------------------------------
// epoll

/// Epoll instances that have (or had) an LKL entry, by their host fd:
/// others are plain host epoll fds and never looked up.
static EPOLLS: Mutex<Option<HashMap<c_int, Arc<Epoll>>>> = Mutex::new(None);
/// `EPOLLS`' size, so that `close` of other fds does not take the lock.
static EPOLL_COUNT: AtomicUsize = AtomicUsize::new(0);

fn epolls() -> std::sync::MutexGuard<'static, Option<HashMap<c_int, Arc<Epoll>>>> {
    EPOLLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The mixed instance of host epoll fd `epfd`, if it has one.
fn lookup(epfd: c_int) -> Option<Arc<Epoll>> {
    if EPOLL_COUNT.load(Ordering::Acquire) == 0 || FORKED.load(Ordering::Relaxed) {
        return None;
    }
    epolls().as_ref().and_then(|m| m.get(&epfd).cloned())
}

/// In a forked child: the mixed instances belong to the parent's kernel;
/// forget them without dropping (which would close LKL fds). If another
/// thread held the table's lock at the fork, the table is left as it is
/// (never looked at again: `lookup` refuses in a child).
pub(crate) fn forget_epolls_after_fork() {
    if let Ok(mut g) = EPOLLS.try_lock() {
        std::mem::forget(g.take());
    }
    EPOLL_COUNT.store(0, Ordering::Release);
}

/// Called by `close` for host fds: a mixed instance dies with its fd.
pub(crate) fn forget_epoll(fd: c_int) {
    if EPOLL_COUNT.load(Ordering::Acquire) == 0 || FORKED.load(Ordering::Relaxed) {
        return;
    }
    let mut g = epolls();
    if let Some(m) = g.as_mut() {
        if m.remove(&fd).is_some() {
            EPOLL_COUNT.store(m.len(), Ordering::Release);
        }
    }
}

/// Whether host fd `fd` is an epoll instance (its `/proc/self/fd` link
/// reads `anon_inode:[eventpoll]`).
fn is_epoll(fd: c_int) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|t| t.as_os_str() == "anon_inode:[eventpoll]")
}

/// `epoll_create(2)`: a host epoll fd (the program's epoll fds are all
/// host fds; an LKL side is added on the first LKL entry).
#[no_mangle]
pub extern "C" fn epoll_create(size: c_int) -> c_int {
    if size <= 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    epoll_create1(0)
}

/// `epoll_create1(2)`.
#[no_mangle]
pub extern "C" fn epoll_create1(flags: c_int) -> c_int {
    host!(libc::SYS_epoll_create1, flags) as c_int
}

/// `epoll_ctl(2)`: the first LKL fd added to a host epoll fd makes it a
/// mixed instance.
///
/// # Safety
/// `ev` is null or a valid `epoll_event`.
#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    let target = mux_fd(fd);
    let ep = match (lookup(epfd), target) {
        (Some(ep), _) => ep,
        (None, Fd::Host(_)) => return host!(libc::SYS_epoll_ctl, epfd, op, fd, ev) as c_int,
        (None, Fd::Lkl(_)) => {
            if epfd >= LKL_FD_OFFSET || FORKED.load(Ordering::Relaxed) {
                set_errno(libc::EINVAL);
                return -1;
            }
            // Check that epfd is a host epoll fd before adopting it.
            let flags = host!(libc::SYS_fcntl, epfd, libc::F_GETFD) as c_int;
            if flags < 0 {
                return -1;
            }
            if !is_epoll(epfd) {
                set_errno(libc::EINVAL);
                return -1;
            }
            let cloexec = if flags & libc::FD_CLOEXEC != 0 {
                libc::EPOLL_CLOEXEC
            } else {
                0
            };
            let ep = Arc::new(Epoll::from_host_fd(epfd, cloexec));
            let mut g = epolls();
            let m = g.get_or_insert_with(HashMap::new);
            let ep = m.entry(epfd).or_insert(ep).clone();
            EPOLL_COUNT.store(m.len(), Ordering::Release);
            ep
        }
    };
    // SAFETY: null or the caller's valid event.
    let ev = unsafe { ev.as_ref() };
    match ep.ctl(op, target, ev) {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e.0);
            -1
        }
    }
}

/// `epoll_pwait(2)`.
///
/// # Safety
/// `events` points to `max` writable events; `mask` null or valid.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout_ms: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    let Some(ep) = lookup(epfd) else {
        // SAFETY: the caller's pointers; the kernel reads 8 bytes of mask.
        return host!(
            libc::SYS_epoll_pwait,
            epfd,
            events,
            max,
            timeout_ms,
            mask,
            8usize
        ) as c_int;
    };
    if max <= 0 || events.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's `max` events.
    let buf = unsafe { std::slice::from_raw_parts_mut(events, max as usize) };
    // SAFETY: null or the caller's valid mask.
    c_result(ep.wait(buf, ms(timeout_ms), unsafe { mask.as_ref() }))
}

/// `epoll_wait(2)`.
///
/// # Safety
/// `events` points to `max` writable events.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout_ms: c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { epoll_pwait(epfd, events, max, timeout_ms, std::ptr::null()) }
}

/// `epoll_pwait2(2)`: a `timespec` timeout.
///
/// # Safety
/// `events` points to `max` writable events; `tmo` and `mask` null or
/// valid.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let Some(ep) = lookup(epfd) else {
        // SAFETY: the caller's pointers; the kernel reads 8 bytes of mask.
        return host!(libc::SYS_epoll_pwait2, epfd, events, max, tmo, mask, 8usize) as c_int;
    };
    if max <= 0 || events.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's timespec.
    let timeout = match unsafe { ts(tmo) } {
        Ok(t) => t,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    // SAFETY: the caller's `max` events.
    let buf = unsafe { std::slice::from_raw_parts_mut(events, max as usize) };
    // SAFETY: null or the caller's valid mask.
    c_result(ep.wait(buf, timeout, unsafe { mask.as_ref() }))
}
