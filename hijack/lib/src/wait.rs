//! `poll`, `ppoll`, `select`, `pselect` and `epoll` over the program's fds,
//! mixed host and LKL sets included, through `lkl-fdmux`.
//!
//! What the library reads or writes of the program's memory itself (the
//! `pollfd` array, `fd_set`s, timeouts, signal masks, `epoll_event`s) goes
//! through `usermem`: a bad pointer gets `EFAULT`, as from the kernel. Sets
//! that go to the host as they are are read by the host kernel only, and a
//! `poll` array is not read here at all until LKL has given out an fd.

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lkl_fdmux::{Epoll, Fd, PollFd};
use usermem::{UserAddr, KERNEL_SIGSET_SIZE};

use crate::fds::{c_result, efault, host, mux_fd, set_errno, FORKED, LKL_FDS, LKL_FD_OFFSET};

/// `pollfd`s read at a time while looking for LKL fds.
const SCAN_CHUNK: usize = 32;

/// A `poll` timeout in ms as the mux takes it (negative: forever).
fn ms(timeout_ms: c_int) -> Option<Duration> {
    (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64))
}

/// A `timespec` timeout (null: forever).
fn ts(ts: *const libc::timespec) -> Result<Option<Duration>, c_int> {
    if ts.is_null() {
        return Ok(None);
    }
    let t = UserAddr::new(ts as u64)
        .read::<libc::timespec>()
        .map_err(|_| libc::EFAULT)?;
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(libc::EINVAL);
    }
    Ok(Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
}

/// The program's signal mask at `mask` (null: none).
fn sigmask(mask: *const libc::sigset_t) -> Result<Option<libc::sigset_t>, c_int> {
    if mask.is_null() {
        return Ok(None);
    }
    UserAddr::new(mask as u64)
        .read_sigmask()
        .map(Some)
        .map_err(|_| libc::EFAULT)
}

/// Whether the program's `n` pollfds at `fds` name an LKL fd (never, until
/// LKL has given out one), read a chunk at a time.
fn any_lkl(fds: *const libc::pollfd, n: usize) -> Result<bool, c_int> {
    if !LKL_FDS.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let mut chunk = [libc::pollfd {
        fd: 0,
        events: 0,
        revents: 0,
    }; SCAN_CHUNK];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(SCAN_CHUNK);
        let at = UserAddr::new(fds as u64 + (done * std::mem::size_of::<libc::pollfd>()) as u64);
        at.read_slice(&mut chunk[..k]).map_err(|_| libc::EFAULT)?;
        if chunk[..k].iter().any(|f| f.fd >= LKL_FD_OFFSET) {
            return Ok(true);
        }
        done += k;
    }
    Ok(false)
}

/// The mux's poll over the program's `n` pollfds at `fds`, copied in and
/// (with their `revents`) out.
fn mux_poll_user(
    fds: *mut libc::pollfd,
    n: usize,
    timeout: Option<Duration>,
    mask: Option<&libc::sigset_t>,
) -> c_int {
    let at = UserAddr::new(fds as u64);
    let mut all = vec![
        libc::pollfd {
            fd: 0,
            events: 0,
            revents: 0
        };
        n
    ];
    if at.read_slice(&mut all).is_err() {
        return efault();
    }
    let r = mux_poll(&mut all, timeout, mask);
    if r >= 0 && at.write_slice(&all).is_err() {
        return efault();
    }
    r
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
/// None beyond the kernel's: `fds` is read through `usermem`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
    if n == 0 || fds.is_null() {
        return host!(libc::SYS_poll, fds, n, timeout_ms) as c_int;
    }
    match any_lkl(fds, n as usize) {
        Ok(true) => mux_poll_user(fds, n as usize, ms(timeout_ms), None),
        Ok(false) => host!(libc::SYS_poll, fds, n, timeout_ms) as c_int,
        Err(_) => efault(),
    }
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
/// None beyond the kernel's: the pointers are read through `usermem`.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    // The kernel reads KERNEL_SIGSET_SIZE bytes of the mask.
    let host_ppoll = || host!(libc::SYS_ppoll, fds, n, tmo, mask, KERNEL_SIGSET_SIZE) as c_int;
    if n == 0 || fds.is_null() {
        return host_ppoll();
    }
    match any_lkl(fds, n as usize) {
        Ok(true) => {}
        Ok(false) => return host_ppoll(),
        Err(_) => return efault(),
    }
    let (timeout, mask) = match (ts(tmo), sigmask(mask)) {
        (Ok(t), Ok(m)) => (t, m),
        (Err(e), _) | (_, Err(e)) => {
            set_errno(e);
            return -1;
        }
    };
    mux_poll_user(fds, n as usize, timeout, mask.as_ref())
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

/// The `u64` words of an `fd_set`.
const SET_WORDS: usize = libc::FD_SETSIZE / 64;

/// The shared part of `select` and `pselect` once a set holds LKL fds: the
/// sets' first `nfds` bits copied in, and the result out.
fn mux_select(
    nfds: c_int,
    sets: [*mut libc::fd_set; 3],
    timeout: Option<Duration>,
    mask: Option<&libc::sigset_t>,
) -> c_int {
    if FORKED.load(Ordering::Relaxed) {
        set_errno(libc::EBADF);
        return -1;
    }
    let words = (nfds.max(0) as usize).div_ceil(64).min(SET_WORDS);
    let mut copies = [[0u64; SET_WORDS]; 3];
    for (set, copy) in sets.iter().zip(copies.iter_mut()) {
        if !set.is_null()
            && UserAddr::new(*set as u64)
                .read_slice(&mut copy[..words])
                .is_err()
        {
            return efault();
        }
    }
    let mut fd_sets = copies.map(|c| {
        // SAFETY: an fd_set is FD_SETSIZE bits, as these SET_WORDS words.
        unsafe { std::mem::transmute::<[u64; SET_WORDS], libc::fd_set>(c) }
    });
    let [r, w, e] = &mut fd_sets;
    let pick = |p: *mut libc::fd_set, s| (!p.is_null()).then_some(s);
    let n = c_result(lkl_fdmux::select(
        nfds,
        pick(sets[0], r),
        pick(sets[1], w),
        pick(sets[2], e),
        timeout,
        mask,
        &mux_fd,
    ));
    if n < 0 {
        return n;
    }
    for (set, s) in sets.iter().zip(fd_sets) {
        // SAFETY: as above, the other way.
        let words_out = unsafe { std::mem::transmute::<libc::fd_set, [u64; SET_WORDS]>(s) };
        if !set.is_null()
            && UserAddr::new(*set as u64)
                .write_slice(&words_out[..words])
                .is_err()
        {
            return efault();
        }
    }
    n
}

/// `select(2)`: sets holding no LKL fd (`nfds <= 512`) go to the host;
/// others through the mux. Like Linux, the timeout is updated with the
/// time left.
///
/// # Safety
/// None beyond the kernel's: the pointers are read through `usermem`.
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
    let tv_at = UserAddr::new(tv as u64);
    let timeout = if tv.is_null() {
        None
    } else {
        let Ok(t) = tv_at.read::<libc::timeval>() else {
            return efault();
        };
        if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
            set_errno(libc::EINVAL);
            return -1;
        }
        Some(Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32))
    };
    let start = std::time::Instant::now();
    let n = mux_select(nfds, [r, w, e], timeout, None);
    if let (Some(t), false) = (timeout, tv.is_null()) {
        let left = t.saturating_sub(start.elapsed());
        let left = libc::timeval {
            tv_sec: left.as_secs() as _,
            tv_usec: left.subsec_micros() as _,
        };
        if tv_at.write(&left).is_err() {
            return efault();
        }
    }
    n
}

/// `pselect(2)`.
///
/// # Safety
/// None beyond the kernel's: the pointers are read through `usermem`.
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
        let m: [usize; 2] = [mask as usize, KERNEL_SIGSET_SIZE];
        let mp = if mask.is_null() {
            std::ptr::null()
        } else {
            m.as_ptr()
        };
        // pselect6 may write the time left: work on a copy, as glibc does.
        let mut copy = if tmo.is_null() {
            None
        } else {
            match UserAddr::new(tmo as u64).read::<libc::timespec>() {
                Ok(t) => Some(t),
                Err(_) => return efault(),
            }
        };
        let tp = copy
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
        return host!(libc::SYS_pselect6, nfds, r, w, e, tp, mp) as c_int;
    }
    let (timeout, mask) = match (ts(tmo), sigmask(mask)) {
        (Ok(t), Ok(m)) => (t, m),
        (Err(err), _) | (_, Err(err)) => {
            set_errno(err);
            return -1;
        }
    };
    mux_select(nfds, [r, w, e], timeout, mask.as_ref())
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
/// None beyond the kernel's: `ev` is read through `usermem`.
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
    let ev = if ev.is_null() {
        None
    } else {
        match UserAddr::new(ev as u64).read::<libc::epoll_event>() {
            Ok(e) => Some(e),
            Err(_) => return efault(),
        }
    };
    match ep.ctl(op, target, ev.as_ref()) {
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
/// None beyond the kernel's: the pointers are read and written through
/// `usermem`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout_ms: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    let Some(ep) = lookup(epfd) else {
        return host!(
            libc::SYS_epoll_pwait,
            epfd,
            events,
            max,
            timeout_ms,
            mask,
            KERNEL_SIGSET_SIZE
        ) as c_int;
    };
    if max <= 0 || events.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    match sigmask(mask) {
        Ok(m) => wait_user(&ep, events, max, ms(timeout_ms), m.as_ref()),
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// Waits on `ep` into our buffer, then copies the events that came to the
/// program's `events` (room for `max`).
fn wait_user(
    ep: &Epoll,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: Option<Duration>,
    mask: Option<&libc::sigset_t>,
) -> c_int {
    let mut buf = vec![libc::epoll_event { events: 0, u64: 0 }; (max as usize).min(1 << 16)];
    let n = c_result(ep.wait(&mut buf, timeout, mask));
    if n > 0
        && UserAddr::new(events as u64)
            .write_slice(&buf[..n as usize])
            .is_err()
    {
        return efault();
    }
    n
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
/// None beyond the kernel's: the pointers are read and written through
/// `usermem`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    tmo: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let Some(ep) = lookup(epfd) else {
        return host!(
            libc::SYS_epoll_pwait2,
            epfd,
            events,
            max,
            tmo,
            mask,
            KERNEL_SIGSET_SIZE
        ) as c_int;
    };
    if max <= 0 || events.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    match (ts(tmo), sigmask(mask)) {
        (Ok(t), Ok(m)) => wait_user(&ep, events, max, t, m.as_ref()),
        (Err(e), _) | (_, Err(e)) => {
            set_errno(e);
            -1
        }
    }
}
