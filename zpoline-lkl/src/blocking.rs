//! Blocking LKL receives that a signal can end, as on the host kernel.
//!
//! A handler of a signal that arrives during an LKL call runs when the call ends (see
//! `crate::signals`), and LKL knows nothing of host signals. So while the program has
//! a handler installed, a receive on a blocking LKL socket (`read`, `readv`,
//! `recvfrom`, `recvmsg`, `accept`, `accept4`, without `MSG_DONTWAIT`) first waits for
//! readability with LKL's `ppoll` in slices of [`SLICE_MS`], honouring `SO_RCVTIMEO`.
//! A signal ends the wait; its handler runs; then the call returns `EINTR`, or, for a
//! handler with `SA_RESTART`, waits again, as the kernel restarts the call. Then the
//! call itself runs, normally without blocking.
//!
//! A blocking `connect` is made non-blocking for the call, waits for writability in
//! the same slices, and reads `SO_ERROR`: a signal ends it with `EINTR` (the
//! connection goes on, as on the host: a later `connect` says `EALREADY` or
//! `EISCONN`), or with `SA_RESTART` waits on.

use std::time::{Duration, Instant};

use crate::helpers::KERNEL_SIGSET_SIZE;
use crate::world;

/// Slice of the wait.
const SLICE_MS: i64 = 20;
const O_NONBLOCK: i64 = libc::O_NONBLOCK as i64;

/// True when the call cannot block for long: `MSG_DONTWAIT` in its flags.
pub(crate) fn dontwait(nr: u64, a: &[u64; 6]) -> bool {
    let flags = match nr as libc::c_long {
        libc::SYS_recvfrom => a[3],
        libc::SYS_recvmsg => a[2],
        _ => 0,
    };
    flags & libc::MSG_DONTWAIT as u64 != 0
}

/// [`wait_readable`]'s answer when a handler with `SA_RESTART` ran: wait again.
pub(crate) const RESTART: i64 = i64::MIN;

/// Waits until LKL fd `l` is readable, unless it is non-blocking. Returns 0 to go on
/// with the call, [`RESTART`], or the error to return instead (`-EINTR`, `-EAGAIN`
/// when `SO_RCVTIMEO` passes).
pub(crate) fn wait_readable(l: i64) -> i64 {
    crate::wait::in_world(|| {
        let fl = call(
            lkl_sys::__lkl__NR3264_fcntl,
            [l, i64::from(libc::F_GETFL), 0, 0, 0, 0],
        );
        if fl < 0 || fl & O_NONBLOCK != 0 {
            return 0;
        }
        let mut tv = [0i64; 2];
        let mut len = core::mem::size_of_val(&tv) as i32;
        let r = call(
            lkl_sys::__lkl__NR_getsockopt,
            [
                l,
                i64::from(libc::SOL_SOCKET),
                i64::from(libc::SO_RCVTIMEO),
                tv.as_mut_ptr() as i64,
                &mut len as *mut i32 as i64,
                0,
            ],
        );
        let limit = (r == 0 && (tv[0] > 0 || tv[1] > 0))
            .then(|| Duration::new(tv[0] as u64, (tv[1] * 1000) as u32));
        wait_for(l, libc::POLLIN, limit)
    })
    .0
}

/// LKL system call `nr` on integer and pointer arguments, in our world.
fn call(nr: u32, args: [i64; 6]) -> i64 {
    crate::kernel::call(i64::from(nr), args)
}

/// Waits up to [`SLICE_MS`] at a time for `events` on LKL fd `l` until ready (or an
/// error the call itself will report); returns 0 then, `-EINTR` or [`RESTART`] when a
/// signal came, `-EAGAIN` when `limit` passes.
fn wait_for(l: i64, events: i16, limit: Option<Duration>) -> i64 {
    let start = Instant::now();
    world::take_signals();
    loop {
        let mut ms = SLICE_MS;
        if let Some(t) = limit {
            let left = t.saturating_sub(start.elapsed());
            if left.is_zero() {
                return -i64::from(libc::EAGAIN);
            }
            ms = ms.min(left.as_millis() as i64 + 1);
        }
        let mut pfd = [l as i32, i32::from(events)];
        let ts = [ms / 1000, (ms % 1000) * 1_000_000];
        let n = call(
            lkl_sys::__lkl__NR_ppoll,
            [
                pfd.as_mut_ptr() as i64,
                1,
                ts.as_ptr() as i64,
                0,
                KERNEL_SIGSET_SIZE as i64,
                0,
            ],
        );
        if n != 0 && n != -i64::from(libc::EINTR) {
            return 0;
        }
        match world::take_signals() {
            0 => {}
            b if b & 2 != 0 => return -i64::from(libc::EINTR),
            _ => return RESTART,
        }
    }
}

/// `connect(l, addr, len)` on a blocking LKL socket, ended by signals (see the module
/// doc). `again`: a restart after [`RESTART`], only waiting for the connection.
pub(crate) fn connect(l: i64, addr: u64, len: u64, again: bool) -> i64 {
    crate::wait::in_world(|| {
        let fl = call(
            lkl_sys::__lkl__NR3264_fcntl,
            [l, i64::from(libc::F_GETFL), 0, 0, 0, 0],
        );
        if fl < 0 || fl & O_NONBLOCK != 0 {
            if again {
                return 0;
            }
            return call(
                lkl_sys::__lkl__NR_connect,
                [l, addr as i64, len as i64, 0, 0, 0],
            );
        }
        let set = |f: i64| {
            call(
                lkl_sys::__lkl__NR3264_fcntl,
                [l, i64::from(libc::F_SETFL), f, 0, 0, 0],
            )
        };
        let mut r = 0;
        if !again {
            set(fl | O_NONBLOCK);
            r = call(
                lkl_sys::__lkl__NR_connect,
                [l, addr as i64, len as i64, 0, 0, 0],
            );
            set(fl);
        }
        if again || r == -i64::from(libc::EINPROGRESS) {
            r = wait_for(l, libc::POLLOUT, None);
            if r == 0 {
                let mut err = 0i32;
                let mut n = core::mem::size_of_val(&err) as i32;
                call(
                    lkl_sys::__lkl__NR_getsockopt,
                    [
                        l,
                        i64::from(libc::SOL_SOCKET),
                        i64::from(libc::SO_ERROR),
                        &mut err as *mut i32 as i64,
                        &mut n as *mut i32 as i64,
                        0,
                    ],
                );
                r = -i64::from(err);
            }
        }
        r
    })
    .0
}
