//! `epoll` on sets holding LKL fds, through `lkl-fdmux`.
//!
//! The program's epoll fd stays a host epoll fd. When an LKL fd is first added to it,
//! it becomes *muxed*: an `lkl_fdmux::Epoll` around it (with an LKL epoll fd made for
//! the LKL entries), kept in a table, and the fd is marked so that `epoll_wait`,
//! `epoll_pwait`, `epoll_pwait2` and `close` on it reach the hook. A muxed wait waits on
//! both sides at once (`lkl_fdmux`'s helper thread, no polling rounds).

use core::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lkl_fdmux::{Epoll, Fd};
use usermem::UserAddr;

use crate::wait::in_world;
use crate::{fds, Target};

/// Host epoll fds that are muxed (1).
static MUXED: [AtomicU8; fds::MAX_FDS] = [const { AtomicU8::new(0) }; fds::MAX_FDS];
/// Their `Epoll`s (only touched in our world).
static TABLE: Mutex<Vec<(i32, Arc<Epoll>)>> = Mutex::new(Vec::new());

/// True when `fd` is a muxed epoll fd.
pub(crate) fn muxed(fd: u64) -> bool {
    let fd = fd as i32;
    fd >= 0 && (fd as usize) < fds::MAX_FDS && MUXED[fd as usize].load(Ordering::Acquire) != 0
}

fn get(epfd: i32) -> Option<Arc<Epoll>> {
    let t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    t.iter().find(|(f, _)| *f == epfd).map(|(_, e)| e.clone())
}

/// `epoll_ctl(epfd, op, fd, event)` where `fd` is LKL's or `epfd` is muxed.
pub(crate) fn ctl(a: &[u64; 6]) -> (i64, Target) {
    let (epfd, op, fd, ev) = (a[0] as i32, a[1] as i32, a[2], a[3]);
    if epfd < 0 || epfd as usize >= fds::MAX_FDS {
        return (-i64::from(libc::EBADF), Target::Interposer);
    }
    in_world(|| {
        let ep = match get(epfd) {
            Some(e) => e,
            None => {
                // F_GETFD says whether the host epoll fd is close-on-exec.
                // SAFETY: fcntl(F_GETFD) on the program's fd.
                let cloexec = unsafe { libc::syscall(libc::SYS_fcntl, epfd, libc::F_GETFD) };
                if cloexec < 0 {
                    return -i64::from(libc::EBADF);
                }
                let flags = if cloexec & 1 != 0 {
                    libc::EPOLL_CLOEXEC
                } else {
                    0
                };
                let e = Arc::new(Epoll::from_host_fd(epfd, flags));
                TABLE
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((epfd, e.clone()));
                MUXED[epfd as usize].store(1, Ordering::Release);
                trampoline::mark_fd(epfd, true);
                e
            }
        };
        let side = match fds::lkl_of(fd) {
            Some(l) => Fd::Lkl(l as i32),
            None => Fd::Host(fd as i32),
        };
        // The program's epoll_event (packed, 12 bytes, as libc's on x86-64).
        let event = if ev != 0 {
            match UserAddr::new(ev).read::<libc::epoll_event>() {
                Ok(e) => Some(e),
                Err(f) => return f.neg_errno(),
            }
        } else {
            None
        };
        match ep.ctl(op, side, event.as_ref()) {
            Ok(()) => 0,
            Err(e) => -i64::from(e.0),
        }
    })
}

/// `epoll_wait`/`epoll_pwait`/`epoll_pwait2` on a muxed epoll fd.
pub(crate) fn wait(nr: u64, a: &[u64; 6]) -> (i64, Target) {
    let (epfd, events, max) = (a[0] as i32, a[1], a[2] as i32);
    if max <= 0 || events == 0 {
        return (-i64::from(libc::EINVAL), Target::Interposer);
    }
    let timeout = if nr == libc::SYS_epoll_pwait2 as u64 {
        if a[3] == 0 {
            None
        } else {
            match UserAddr::new(a[3]).read::<[i64; 2]>() {
                Ok([s, ns]) => Some(Duration::new(
                    s.max(0) as u64,
                    ns.clamp(0, 999_999_999) as u32,
                )),
                Err(f) => return (f.neg_errno(), Target::Interposer),
            }
        }
    } else {
        (a[3] as i32 >= 0).then(|| Duration::from_millis(a[3] as i32 as u64))
    };
    let mask = if nr == libc::SYS_epoll_wait as u64 {
        None
    } else {
        match crate::wait::sigmask_of(a[4]) {
            Ok(m) => m,
            Err(e) => return (e, Target::Interposer),
        }
    };
    in_world(|| {
        let Some(ep) = get(epfd) else {
            return -i64::from(libc::EBADF);
        };
        // Our buffer, copied out: as many events as came.
        let mut buf = vec![libc::epoll_event { events: 0, u64: 0 }; (max as usize).min(1 << 16)];
        let n = crate::wait::sliced(timeout, |t| {
            ep.wait(&mut buf, t, mask.as_ref())
                .map_err(|e| -i64::from(e.0))
        });
        if n > 0 {
            if let Err(f) = UserAddr::new(events).write_slice(&buf[..n as usize]) {
                return f.neg_errno();
            }
        }
        n
    })
}

/// The program closes `epfd` (muxed): forget its `Epoll` (which closes the LKL side).
pub(crate) fn closed(epfd: u64) {
    let epfd = epfd as i32;
    MUXED[epfd as usize].store(0, Ordering::Release);
    trampoline::mark_fd(epfd, false);
    let _ = in_world(|| {
        let mut t = TABLE.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|(f, _)| *f != epfd);
        0
    });
}
