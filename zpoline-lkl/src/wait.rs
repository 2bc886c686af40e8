//! `poll`, `ppoll`, `select` and `pselect6` over sets that may hold LKL fds.
//!
//! - No LKL fd: the host's call, unchanged (exact, masks included).
//! - Only LKL fds: LKL's `ppoll`, in slices of [`SLICE_MS`] so that a signal handled
//!   meanwhile ends the wait with `EINTR`, as the host's `poll` would.
//! - Both: `lkl_fdmux::poll`, a real wait on both sides at once (a helper thread polls
//!   the host side and wakes the LKL side through an LKL eventfd).
//!
//! The work runs in our world (`crate::world`), where it may allocate.

use std::time::{Duration, Instant};

use crate::{fds, world, Target};
use trampoline::syscall6;

/// Slice of an LKL-only wait.
const SLICE_MS: i64 = 20;

const POLL: u64 = 7;
const SELECT: u64 = 23;
const PPOLL: u64 = 271;
const EINTR: i64 = 4;
const EINVAL: i64 = 22;
const POLLIN: i16 = 1;
const POLLPRI: i16 = 2;
const POLLOUT: i16 = 4;
const POLLERR: i16 = 8;
const POLLHUP: i16 = 16;
const POLLNVAL: i16 = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

fn host(nr: u64, a: &[u64; 6]) -> (i64, Target) {
    // SAFETY: the program's own call, passed through unchanged.
    (unsafe { syscall6(nr, *a) }, Target::Host)
}

/// Reads a `{sec, nsec}` timespec (or `{sec, usec}` timeval) as a timeout.
fn timeout_of(p: u64, usec: bool) -> Result<Option<Duration>, i64> {
    if p == 0 {
        return Ok(None);
    }
    // SAFETY: the program passed a 16-byte timespec/timeval.
    let [s, f] = unsafe { core::ptr::read_unaligned(p as *const [i64; 2]) };
    if s < 0 || f < 0 || f >= if usec { 1_000_000 } else { 1_000_000_000 } {
        return Err(-EINVAL);
    }
    let nanos = if usec { f * 1000 } else { f };
    Ok(Some(Duration::new(s as u64, nanos as u32)))
}

/// True when bit `fd` is set in the `fd_set` at `set`.
fn isset(set: u64, fd: usize) -> bool {
    // SAFETY: the program's fd_set covers `nfds` bits.
    set != 0 && unsafe { *((set + (fd / 64 * 8) as u64) as *const u64) } & (1 << (fd % 64)) != 0
}

pub(crate) fn dispatch(nr: u64, a: &[u64; 6], forked: bool) -> (i64, Target) {
    if nr == POLL || nr == PPOLL {
        let (ptr, n) = (a[0], a[1] as usize);
        if ptr == 0 || n == 0 || n > 1 << 20 {
            return host(nr, a);
        }
        // SAFETY: the program's array of n pollfds.
        let set = unsafe { core::slice::from_raw_parts_mut(ptr as *mut PollFd, n) };
        if forked || !set.iter().any(|p| fds::lkl_of(p.fd as u64).is_some()) {
            return host(nr, a);
        }
        let timeout = if nr == POLL {
            (a[2] as i32 >= 0).then(|| Duration::from_millis(a[2] as i32 as u64))
        } else {
            match timeout_of(a[2], false) {
                Ok(t) => t,
                Err(e) => return (e, Target::Interposer),
            }
        };
        let mask = if nr == PPOLL { (a[3], a[4]) } else { (0, 8) };
        return in_world(|| poll(set, timeout, mask));
    }
    // select(nfds, r, w, e, tv) / pselect6(nfds, r, w, e, ts, &{mask, size})
    let nfds = (a[0] as i32).clamp(0, 65536) as usize;
    let any = (0..nfds).any(|fd| {
        fds::lkl_of(fd as u64).is_some() && (isset(a[1], fd) || isset(a[2], fd) || isset(a[3], fd))
    });
    if forked || !any {
        return host(nr, a);
    }
    let timeout = match timeout_of(a[4], nr == SELECT) {
        Ok(t) => t,
        Err(e) => return (e, Target::Interposer),
    };
    let mask = if nr == SELECT || a[5] == 0 {
        (0, 8)
    } else {
        // SAFETY: pselect6's sixth argument is a {const sigset_t *, size_t} pair.
        let [m, s] = unsafe { core::ptr::read_unaligned(a[5] as *const [u64; 2]) };
        (m, s)
    };
    in_world(|| select(nfds, [a[1], a[2], a[3]], timeout, mask))
}

/// Runs `f` in our world (a borrowed thread block, LKL booted); its result is LKL's.
pub(crate) fn in_world(f: impl FnOnce() -> i64) -> (i64, Target) {
    if trampoline::forked_child() {
        // LKL (and our world's locks) belong to the parent.
        return (-i64::from(libc::EBADF), Target::Interposer);
    }
    match world::enter() {
        Ok(guard) => {
            if !crate::boot::ensure_running() {
                return (-100, Target::Interposer);
            }
            let r = f();
            drop(guard);
            (r, Target::Lkl)
        }
        Err(world::EnterError::Nested) => (-EINTR, Target::Interposer),
        Err(world::EnterError::NoShadow) => (-11, Target::Interposer),
    }
}

fn lkl_ppoll(set: &mut [PollFd], ms: i64) -> i64 {
    let ts = [ms / 1000, (ms % 1000) * 1_000_000];
    let mut args = [
        set.as_mut_ptr() as i64,
        set.len() as i64,
        ts.as_ptr() as i64,
        0,
        8,
        0,
    ];
    // SAFETY: our pollfd array and timespec; LKL's pollfd layout is the same.
    unsafe { lkl_sys::lkl_syscall(lkl_sys::__lkl__NR_ppoll as i64, args.as_mut_ptr()) }
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
    let sigmask = (mask.0 != 0).then(|| {
        // SAFETY: an all-zero sigset_t is valid; the program's kernel mask is 8 bytes.
        let mut m: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: copying the program's 8-byte mask into ours.
        unsafe {
            core::ptr::copy_nonoverlapping(
                mask.0 as *const u8,
                (&mut m as *mut libc::sigset_t).cast(),
                8,
            )
        };
        m
    });
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
    let mut pfds = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if isset(sets[0], fd) {
            events |= POLLIN;
        }
        if isset(sets[1], fd) {
            events |= POLLOUT;
        }
        if isset(sets[2], fd) {
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
        return -9;
    }
    let words = nfds.div_ceil(64);
    for &set in &sets {
        if set != 0 {
            // SAFETY: the program's fd_set holds at least `words` words for nfds bits.
            unsafe { core::ptr::write_bytes(set as *mut u64, 0, words) };
        }
    }
    let mut count = 0;
    let mut mark = |set: u64, fd: i32| {
        if set == 0 {
            return;
        }
        let fd = fd as usize;
        // SAFETY: as above, fd < nfds.
        unsafe { *((set + (fd / 64 * 8) as u64) as *mut u64) |= 1 << (fd % 64) };
        count += 1;
    };
    for p in &pfds {
        let rv = p.revents;
        if p.events & POLLIN != 0 && rv & (POLLIN | POLLHUP | POLLERR) != 0 {
            mark(sets[0], p.fd);
        }
        if p.events & POLLOUT != 0 && rv & (POLLOUT | POLLERR) != 0 {
            mark(sets[1], p.fd);
        }
        if p.events & POLLPRI != 0 && rv & POLLPRI != 0 {
            mark(sets[2], p.fd);
        }
    }
    count
}
