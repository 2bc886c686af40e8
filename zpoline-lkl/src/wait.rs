//! `poll`, `ppoll`, `select` and `pselect6` over sets that may hold LKL fds.
//!
//! - No LKL fd: the host's call, unchanged (exact, masks included).
//! - Only LKL fds: LKL's `ppoll`, in slices of [`SLICE_MS`] so that a signal handled
//!   meanwhile ends the wait with `EINTR`, as the host's `poll` would.
//! - Both: `lkl_fdmux::poll`, a real wait on both sides at once (a helper thread polls
//!   the host side and wakes the LKL side through an LKL eventfd).
//!
//! The work runs in our world (`crate::world`), where it may allocate. The program's
//! `pollfd` array, `fd_set`s, timeouts and signal masks are read and written through
//! `usermem` (`EFAULT` for a bad pointer); a program with no LKL fd at all never has them
//! read, its calls go straight to the host.

use std::time::{Duration, Instant};

use usermem::UserAddr;

use crate::helpers::KERNEL_SIGSET_SIZE;
use crate::{fds, world, Target};

/// Slice of an LKL-only wait.
const SLICE_MS: i64 = 20;

const POLL: u64 = libc::SYS_poll as u64;
const SELECT: u64 = libc::SYS_select as u64;
const PPOLL: u64 = libc::SYS_ppoll as u64;
const EINTR: i64 = libc::EINTR as i64;
const EINVAL: i64 = libc::EINVAL as i64;
use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI};

type PollFd = libc::pollfd;

use crate::dispatch::host;

/// `pollfd`s read from the program at a time while looking for LKL fds (on the
/// program's stack, in the hook).
const SCAN_CHUNK: usize = 32;

/// Reads a `{sec, nsec}` timespec (or `{sec, usec}` timeval) as a timeout.
fn timeout_of(p: u64, usec: bool) -> Result<Option<Duration>, i64> {
    if p == 0 {
        return Ok(None);
    }
    let [s, f] = UserAddr::new(p)
        .read::<[i64; 2]>()
        .map_err(|f| f.neg_errno())?;
    if s < 0 || f < 0 || f >= if usec { 1_000_000 } else { 1_000_000_000 } {
        return Err(-EINVAL);
    }
    let nanos = if usec { f * 1000 } else { f };
    Ok(Some(Duration::new(s as u64, nanos as u32)))
}

/// True when bit `fd` is set in the program's `fd_set` at `set`.
fn isset(set: u64, fd: usize) -> Result<bool, i64> {
    if set == 0 {
        return Ok(false);
    }
    let word = UserAddr::new(set + (fd / 64 * core::mem::size_of::<u64>()) as u64)
        .read::<u64>()
        .map_err(|f| f.neg_errno())?;
    Ok(word & (1 << (fd % 64)) != 0)
}

/// Whether the program's `n` pollfds at `ptr` name an LKL fd, read a chunk at a time.
fn poll_has_lkl(ptr: u64, n: usize) -> Result<bool, i64> {
    let mut chunk = [PollFd {
        fd: 0,
        events: 0,
        revents: 0,
    }; SCAN_CHUNK];
    let size = core::mem::size_of::<PollFd>() as u64;
    let mut done = 0;
    while done < n {
        let k = (n - done).min(SCAN_CHUNK);
        UserAddr::new(ptr + done as u64 * size)
            .read_slice(&mut chunk[..k])
            .map_err(|f| f.neg_errno())?;
        if chunk[..k]
            .iter()
            .any(|p| fds::lkl_of(p.fd as u64).is_some())
        {
            return Ok(true);
        }
        done += k;
    }
    Ok(false)
}

pub(crate) fn dispatch(nr: u64, a: &[u64; 6], forked: bool) -> (i64, Target) {
    if nr == POLL || nr == PPOLL {
        let (ptr, n) = (a[0], a[1] as usize);
        if ptr == 0 || n == 0 || n > 1 << 20 || forked || !fds::any() {
            return host(nr, a);
        }
        match poll_has_lkl(ptr, n) {
            Ok(true) => {}
            Ok(false) => return host(nr, a),
            Err(e) => return (e, Target::Interposer),
        }
        let timeout = if nr == POLL {
            (a[2] as i32 >= 0).then(|| Duration::from_millis(a[2] as i32 as u64))
        } else {
            match timeout_of(a[2], false) {
                Ok(t) => t,
                Err(e) => return (e, Target::Interposer),
            }
        };
        let mask = if nr == PPOLL {
            (a[3], a[4])
        } else {
            (0, KERNEL_SIGSET_SIZE)
        };
        return in_world(|| {
            let mut set = vec![
                PollFd {
                    fd: 0,
                    events: 0,
                    revents: 0
                };
                n
            ];
            let at = UserAddr::new(ptr);
            if let Err(f) = at.read_slice(&mut set) {
                return f.neg_errno();
            }
            let r = poll(&mut set, timeout, mask);
            if r >= 0 {
                if let Err(f) = at.write_slice(&set) {
                    return f.neg_errno();
                }
            }
            r
        });
    }
    // select(nfds, r, w, e, tv) / pselect6(nfds, r, w, e, ts, &{mask, size})
    let nfds = (a[0] as i32).clamp(0, fds::MAX_FDS as i32) as usize;
    if forked || !fds::any() {
        return host(nr, a);
    }
    let mut any = false;
    for fd in (0..nfds).filter(|&fd| fds::lkl_of(fd as u64).is_some()) {
        for &set in &a[1..4] {
            match isset(set, fd) {
                Ok(true) => any = true,
                Ok(false) => {}
                Err(e) => return (e, Target::Interposer),
            }
        }
    }
    if !any {
        return host(nr, a);
    }
    let timeout = match timeout_of(a[4], nr == SELECT) {
        Ok(t) => t,
        Err(e) => return (e, Target::Interposer),
    };
    let mask = if nr == SELECT || a[5] == 0 {
        (0, KERNEL_SIGSET_SIZE)
    } else {
        // pselect6's sixth argument is a {const sigset_t *, size_t} pair.
        match UserAddr::new(a[5]).read::<[u64; 2]>() {
            Ok([m, s]) => (m, s),
            Err(f) => return (f.neg_errno(), Target::Interposer),
        }
    };
    in_world(|| select(nfds, [a[1], a[2], a[3]], timeout, mask))
}

/// Runs `f` in our world (a borrowed thread block, LKL booted); its result is LKL's.
pub(crate) fn in_world(f: impl FnOnce() -> i64) -> (i64, Target) {
    if crate::kernel::forked_without_lkl() {
        // A private LKL (and our world's locks) belong to the parent.
        return (-i64::from(libc::EBADF), Target::Interposer);
    }
    crate::kernel::stop_if_ending();
    match world::enter() {
        Ok(guard) => {
            if !crate::boot::ensure_running() {
                return (-i64::from(libc::ENETDOWN), Target::Interposer);
            }
            let r = f();
            drop(guard);
            (r, Target::Lkl)
        }
        Err(world::EnterError::Nested) => (-EINTR, Target::Interposer),
        Err(world::EnterError::NoShadow) => (-i64::from(libc::EAGAIN), Target::Interposer),
    }
}

fn lkl_ppoll(set: &mut [PollFd], ms: i64) -> i64 {
    let ts = [ms / 1000, (ms % 1000) * 1_000_000];
    let args = [
        set.as_mut_ptr() as i64,
        set.len() as i64,
        ts.as_ptr() as i64,
        0,
        KERNEL_SIGSET_SIZE as i64,
        0,
    ];
    // SAFETY: our pollfd array and timespec; LKL's pollfd layout is the same.
    crate::kernel::call(lkl_sys::__lkl__NR_ppoll as i64, args)
}

/// The poll proper, on the program's pollfd array (program fds).
fn poll(set: &mut [PollFd], timeout: Option<Duration>, mask: (u64, u64)) -> i64 {
    let start = Instant::now();
    let left_ms = |cap: i64| -> i64 {
        match timeout {
            None => cap,
            Some(t) => {
                let left = t.saturating_sub(start.elapsed());
                (left.as_micros().div_ceil(1000) as i64).min(cap)
            }
        }
    };
    let (lkl_idx, host_idx): (Vec<usize>, Vec<usize>) = (0..set.len())
        .filter(|&i| set[i].fd >= 0)
        .partition(|&i| fds::lkl_of(set[i].fd as u64).is_some());
    let mut lkl: Vec<PollFd> = lkl_idx
        .iter()
        .map(|&i| PollFd {
            fd: fds::lkl_of(set[i].fd as u64).unwrap_or(-1) as i32,
            events: set[i].events,
            revents: 0,
        })
        .collect();
    if !host_idx.is_empty() {
        return mixed(set, &lkl_idx, &host_idx, timeout, mask);
    }
    let mut a;
    world::take_signal();
    loop {
        let ms = left_ms(SLICE_MS);
        a = lkl_ppoll(&mut lkl, ms);
        if a != 0 || ms == 0 || left_ms(1) == 0 {
            break;
        }
        if world::take_signal() {
            return -EINTR;
        }
    }
    if a < 0 {
        return a;
    }
    for p in set.iter_mut() {
        p.revents = 0;
    }
    for (&i, p) in lkl_idx.iter().zip(&lkl) {
        set[i].revents = p.revents;
    }
    set.iter().filter(|p| p.revents != 0).count() as i64
}

/// A wait on host and LKL fds at once, through `lkl_fdmux` (a real wait on both).
fn mixed(
    set: &mut [PollFd],
    lkl_idx: &[usize],
    host_idx: &[usize],
    timeout: Option<Duration>,
    mask: (u64, u64),
) -> i64 {
    let mut mux: Vec<lkl_fdmux::PollFd> = lkl_idx
        .iter()
        .map(|&i| {
            let l = fds::lkl_of(set[i].fd as u64).unwrap_or(-1) as i32;
            lkl_fdmux::PollFd::new(lkl_fdmux::Fd::Lkl(l), set[i].events)
        })
        .chain(
            host_idx
                .iter()
                .map(|&i| lkl_fdmux::PollFd::new(lkl_fdmux::Fd::Host(set[i].fd), set[i].events)),
        )
        .collect();
    let sigmask = match sigmask_of(mask.0) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let r = sliced(timeout, |t| {
        lkl_fdmux::poll(&mut mux, t, sigmask.as_ref()).map_err(|e| -i64::from(e.0))
    });
    if r <= 0 {
        return r;
    }
    for p in set.iter_mut() {
        p.revents = 0;
    }
    for (&i, p) in lkl_idx.iter().chain(host_idx).zip(&mux) {
        set[i].revents = p.revents;
    }
    set.iter().filter(|p| p.revents != 0).count() as i64
}

/// The program's kernel signal mask (8 bytes) at `p` as a `sigset_t` (`None` for NULL).
pub(crate) fn sigmask_of(p: u64) -> Result<Option<libc::sigset_t>, i64> {
    if p == 0 {
        return Ok(None);
    }
    UserAddr::new(p)
        .read_sigmask()
        .map(Some)
        .map_err(|f| f.neg_errno())
}

/// Runs a wait `f(timeout)` that a host signal does not end (LKL's side of it):
/// while the program has handlers, in slices of [`SLICE_MS`], ending with `-EINTR`
/// once a signal came (its handler runs when the LKL crossing ends). Returns what `f`
/// returned last, or its error.
pub(crate) fn sliced(
    timeout: Option<Duration>,
    mut f: impl FnMut(Option<Duration>) -> Result<usize, i64>,
) -> i64 {
    if !crate::signals::any_handler() {
        return f(timeout).map_or_else(|e| e, |n| n as i64);
    }
    let start = Instant::now();
    world::take_signal();
    loop {
        let slice = Duration::from_millis(SLICE_MS as u64);
        let t = match timeout {
            None => slice,
            Some(t) => t.saturating_sub(start.elapsed()).min(slice),
        };
        match f(Some(t)) {
            Ok(0) => {}
            Ok(n) => return n as i64,
            Err(e) => return e,
        }
        if world::take_signal() {
            return -EINTR;
        }
        if timeout.is_some_and(|to| start.elapsed() >= to) {
            return 0;
        }
    }
}

/// `select` as a [`poll`] over the fds set in the three sets.
fn select(nfds: usize, sets: [u64; 3], timeout: Option<Duration>, mask: (u64, u64)) -> i64 {
    let words = nfds.div_ceil(64);
    // The program's three sets, copied in (an empty Vec for a NULL set).
    let mut inp: [Vec<u64>; 3] = Default::default();
    for (set, v) in sets.iter().zip(inp.iter_mut()) {
        if *set != 0 {
            v.resize(words, 0);
            if let Err(f) = UserAddr::new(*set).read_slice(v) {
                return f.neg_errno();
            }
        }
    }
    let bit = |v: &Vec<u64>, fd: usize| !v.is_empty() && v[fd / 64] & (1 << (fd % 64)) != 0;
    let mut pfds = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if bit(&inp[0], fd) {
            events |= POLLIN;
        }
        if bit(&inp[1], fd) {
            events |= POLLOUT;
        }
        if bit(&inp[2], fd) {
            events |= POLLPRI;
        }
        if events != 0 {
            pfds.push(PollFd {
                fd: fd as i32,
                events,
                revents: 0,
            });
        }
    }
    let r = poll(&mut pfds, timeout, mask);
    if r < 0 {
        return r;
    }
    if pfds.iter().any(|p| p.revents & POLLNVAL != 0) {
        return -i64::from(libc::EBADF);
    }
    let mut out: [Vec<u64>; 3] = Default::default();
    for (o, i) in out.iter_mut().zip(&inp) {
        o.resize(i.len(), 0);
    }
    let mut count = 0;
    let mut mark = |o: &mut Vec<u64>, fd: i32| {
        if o.is_empty() {
            return;
        }
        let fd = fd as usize;
        o[fd / 64] |= 1 << (fd % 64);
        count += 1;
    };
    for p in &pfds {
        let rv = p.revents;
        if p.events & POLLIN != 0 && rv & (POLLIN | POLLHUP | POLLERR) != 0 {
            mark(&mut out[0], p.fd);
        }
        if p.events & POLLOUT != 0 && rv & (POLLOUT | POLLERR) != 0 {
            mark(&mut out[1], p.fd);
        }
        if p.events & POLLPRI != 0 && rv & POLLPRI != 0 {
            mark(&mut out[2], p.fd);
        }
    }
    for (set, o) in sets.iter().zip(&out) {
        if !o.is_empty() {
            if let Err(f) = UserAddr::new(*set).write_slice(o) {
                return f.neg_errno();
            }
        }
    }
    count
}
