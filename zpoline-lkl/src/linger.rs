//! Sockets closed with data still queued, and the exit drain: what the host kernel
//! does for its sockets after `close` and `exit`, LKL (which ends with the process)
//! must do before.

use std::sync::Mutex;

use crate::dispatch::nr;
use crate::{fds, wait};

/// At `exit_group`: what the host kernel does for its sockets, LKL must do before the
/// process (and LKL with it) ends. Waits while they shrink ([`DRAIN_LIMIT`] without
/// progress, [`DRAIN_CAP`] in all) for the send queues
/// of the open LKL sockets to empty (`SIOCOUTQ`: unsent and unacknowledged bytes),
/// then closes them, so their data and FINs are out.
pub(crate) fn drain_at_exit() {
    let mut open: Vec<i64> = fds::in_range(0, u64::MAX).map(|(_, l)| l).collect();
    open.extend(
        LINGERING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    if open.is_empty() {
        return;
    }
    let _ = wait::in_world(|| {
        let call = crate::kernel::call;
        let start = std::time::Instant::now();
        let mut progress = start;
        let mut least = i64::MAX;
        // While the queues keep shrinking (a loaded machine may need longer than
        // DRAIN_LIMIT for all of it), up to DRAIN_CAP in all.
        while progress.elapsed() < DRAIN_LIMIT && start.elapsed() < DRAIN_CAP {
            let queued: i64 = open.iter().map(|&l| outq(l)).sum();
            if queued == 0 {
                break;
            }
            if queued < least {
                least = queued;
                progress = std::time::Instant::now();
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for &l in &open {
            call(nr!(__lkl__NR_close), [l, 0, 0, 0, 0, 0]);
        }
        0
    });
}

/// LKL sockets the program closed while data was still queued: kept open by a
/// duplicate (after `shutdown(SHUT_WR)`, so the peer gets its FIN after the data as
/// with a close) until their queue is empty, so that an exit soon after does not cut
/// them off. Reaped at each close and drained at exit.
static LINGERING: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// `SIOCOUTQ` of LKL fd `l` (unsent and unacknowledged bytes), in our world; 0 for a
/// socket that is not connected (a `connect` still waiting for its SYN to be answered
/// has a queue of one).
fn outq(l: i64) -> i64 {
    let mut addr = [0u8; 128];
    let mut alen = addr.len() as i32;
    let args = [
        l,
        addr.as_mut_ptr() as i64,
        &mut alen as *mut i32 as i64,
        0,
        0,
        0,
    ];
    // getpeername into our buffers (we are in our world).
    if crate::kernel::call(lkl_sys::__lkl__NR_getpeername as i64, args) != 0 {
        return 0;
    }
    let mut n = 0i32;
    let args = [l, libc::TIOCOUTQ as i64, &mut n as *mut i32 as i64, 0, 0, 0];
    // SIOCOUTQ is TIOCOUTQ.
    // An ioctl writing one int into our buffer (we are in our world).
    let r = crate::kernel::call(lkl_sys::__lkl__NR_ioctl as i64, args);
    if r == 0 {
        i64::from(n)
    } else {
        0
    }
}

/// `close` of program fd `fd`, LKL fd `l` (before the fd's entry is dropped),
/// lingering when data is still queued (see [`LINGERING`]).
pub(crate) fn close_lingering(fd: i64, l: i64) -> i64 {
    // A file opened by path is never a socket: no send queue to look at.
    let file = fds::file(fd as u64);
    wait::in_world(|| {
        let call = crate::kernel::call;
        let mut lingering = LINGERING.lock().unwrap_or_else(|p| p.into_inner());
        lingering.retain(|&d| {
            let busy = outq(d) > 0;
            if !busy {
                call(nr!(__lkl__NR_close), [d, 0, 0, 0, 0, 0]);
            }
            busy
        });
        if !file && outq(l) > 0 {
            let d = call(nr!(__lkl__NR_dup), [l, 0, 0, 0, 0, 0]);
            if d >= 0 {
                call(
                    nr!(__lkl__NR_shutdown),
                    [d, i64::from(libc::SHUT_WR), 0, 0, 0, 0],
                );
                lingering.push(d);
            }
        }
        call(nr!(__lkl__NR_close), [l, 0, 0, 0, 0, 0])
    })
    .0
}

/// How long [`drain_at_exit`] waits for a send queue that does not shrink.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long [`drain_at_exit`] waits at most, shrinking queues included.
const DRAIN_CAP: std::time::Duration = std::time::Duration::from_secs(20);
