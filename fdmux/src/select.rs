//! `select`/`pselect` built on [`poll`](crate::poll).

use std::time::Duration;

use lkl::Errno;

use crate::{poll, Fd, PollFd};

/// What `select` reports as readable, writable and exceptional.
const READ: i16 = libc::POLLIN | libc::POLLHUP | libc::POLLERR;
const WRITE: i16 = libc::POLLOUT | libc::POLLERR;
const EXCEPT: i16 = libc::POLLPRI;

/// `pselect` over program descriptors `0..nfds`, each mapped to its side
/// by `map`: the sets are turned into [`poll`] entries (`POLLIN` for read,
/// `POLLOUT` for write, `POLLPRI` for except), and the ready ones are left
/// set, as the kernel's `select` does (a hang-up or error counts as
/// readable, an error as writable). Returns the number of bits set.
///
/// # Errors
/// `EINVAL` for `nfds` outside `0..=FD_SETSIZE`, `EBADF` if a set names a
/// closed descriptor, and what [`poll`] returns. The sets are unchanged on
/// error.
pub fn select(
    nfds: i32,
    read: Option<&mut libc::fd_set>,
    write: Option<&mut libc::fd_set>,
    except: Option<&mut libc::fd_set>,
    timeout: Option<Duration>,
    sigmask: Option<&libc::sigset_t>,
    map: &dyn Fn(i32) -> Fd,
) -> Result<usize, Errno> {
    if !(0..=libc::FD_SETSIZE as i32).contains(&nfds) {
        return Err(Errno(libc::EINVAL));
    }
    let isset = |set: &Option<&mut libc::fd_set>, fd: i32| {
        // SAFETY: a live fd_set and an fd below FD_SETSIZE.
        set.as_ref()
            .is_some_and(|s| unsafe { libc::FD_ISSET(fd, &**s) })
    };
    let mut fds = Vec::new();
    let mut numbers = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if isset(&read, fd) {
            events |= libc::POLLIN;
        }
        if isset(&write, fd) {
            events |= libc::POLLOUT;
        }
        if isset(&except, fd) {
            events |= libc::POLLPRI;
        }
        if events != 0 {
            fds.push(PollFd::new(map(fd), events));
            numbers.push(fd);
        }
    }
    poll(&mut fds, timeout, sigmask)?;
    if fds.iter().any(|f| f.revents & libc::POLLNVAL != 0) {
        return Err(Errno(libc::EBADF));
    }
    let mut count = 0;
    for (set, want, bits) in [
        (read, libc::POLLIN, READ),
        (write, libc::POLLOUT, WRITE),
        (except, libc::POLLPRI, EXCEPT),
    ] {
        let Some(set) = set else { continue };
        // SAFETY: a live fd_set.
        unsafe { libc::FD_ZERO(set) };
        for (f, &fd) in fds.iter().zip(&numbers) {
            if f.events & want != 0 && f.revents & bits != 0 {
                // SAFETY: a live fd_set and an fd below FD_SETSIZE.
                unsafe { libc::FD_SET(fd, set) };
                count += 1;
            }
        }
    }
    Ok(count)
}
