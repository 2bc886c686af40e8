//! The LKL backend of the zpoline interposer: which system calls go to LKL and which to
//! the host.
//!
//! [`start`] loads the hijack configuration (checking it with a trial boot in a forked
//! child before the program runs) and returns the [`Lkl`] backend, which
//! `lkl-run --zpoline` installs in the trampoline; each process boots LKL
//! (`lkl_boot::start`) at its first call that goes to LKL. Sockets of the families LKL serves (`AF_INET`, `AF_INET6`,
//! `AF_NETLINK`, `AF_PACKET`) and every fd they lead to go to LKL; files, memory,
//! threads, signals, processes stay on the host, except the views of LKL's files the
//! configuration asks for (`/etc/resolv.conf` from `nameserver`, and `/proc/net`,
//! `/proc/sys/net`, `/sys/class/net` when `mount` has `proc`/`sysfs`).
//!
//! The policy is data: `table.rs` holds one entry per system call the backend treats
//! specially (where it goes, when the entry stub hooks it, its handler, why), from which
//! [`Lkl`]'s route bytes and its dispatch come; `docs/zpoline.md`'s routing table is
//! checked against it by a unit test. The handlers are in `dispatch.rs`, the boot in
//! `boot.rs`; arguments the backend reads or writes itself go through `usermem`
//! (`EFAULT` for a bad pointer). LKL calls run on the program's thread wearing a thread block
//! of ours (`world.rs`); signal handlers are wrapped to get the program's back
//! (`signals.rs`); LKL fds live in the program's fd space as placeholders (`fds.rs`);
//! `poll`/`select` over mixed sets are in `wait.rs`, `epoll` in `epoll.rs`; a volume's
//! files opened read-only are read straight from the host (`passthrough.rs`).

mod blocking;
mod boot;
mod dispatch;
mod epoll;
mod exec;
mod fds;
mod helpers;
mod kernel;
mod linger;
mod marshal;
mod mmap;
mod passthrough;
mod pathcall;
mod paths;
mod signals;
mod table;
mod wait;
mod world;

pub use boot::{start, Mode, Started};

/// lkl-run's own thread is done calling the backend (it read the program through it,
/// see `loader/src/files.rs`): the thread block it borrowed for those calls, with its
/// LKL task and slot, goes to the program's first thread that calls LKL. Call it once,
/// just before the program runs.
pub fn loader_done() {
    world::release_current();
}

/// lkl-run gives up before the program runs (it could not be found or loaded): this
/// process leaves the tree as its `exit_group` would, so that when it was the last, the
/// kernel process has ended, its images unlocked and written back, when lkl-run exits.
pub fn leave_tree() {
    if kernel::shared() && kernel::exiting() {
        kernel::leave();
    }
}

/// Makes the tree run as `uid`:`gid` inside LKL (`lkl-run --user`): this process's LKL
/// credentials (real, effective, saved; no supplementary groups), which its children
/// inherit. Call once, after [`start`], before the program runs.
///
/// # Errors
/// The errno of the LKL call that refused.
pub fn set_identity(uid: u32, gid: u32) -> Result<(), std::io::Error> {
    pathcall::set_identity(uid, gid).map_err(|e| std::io::Error::from_raw_os_error(-e as i32))
}
use trampoline::{Route, Target};

/// Errors of [`start`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be read.
    #[error("{0}")]
    Config(#[from] lkl_hijack_config::Error),
    /// The trial boot (see [`start`]) failed; the message names the key.
    #[error("{0}")]
    Trial(String),
    /// The tree's kernel process could not start or be reached.
    #[error("{0}")]
    Kernel(#[from] lkl_shared_kernel::Error),
    /// The bootstrap shadow thread could not be made.
    #[error("cannot create the thread that lends its thread block to LKL calls")]
    Shadow,
}

/// The LKL backend (see the crate doc).
#[derive(Debug)]
pub struct Lkl {
    /// `/etc/resolv.conf` is LKL's.
    resolv: bool,
    /// `/proc/net`, `/proc/self/net`, `/proc/sys/net` are LKL's.
    proc_net: bool,
    /// `/sys/class/net` is LKL's.
    sys_net: bool,
}

impl trampoline::Backend for Lkl {
    fn syscall(&self, nr: u64, args: &[u64; 6]) -> i64 {
        self.dispatch(nr, args).0
    }

    fn call(&self, nr: u64, args: &[u64; 6]) -> (i64, Target) {
        self.dispatch(nr, args)
    }

    fn route(&self, nr: u64) -> Option<Route> {
        table::route(
            nr,
            self.resolv || self.proc_net || self.sys_net,
            paths::active(),
        )
    }

    fn owns_fd(&self, fd: i32) -> bool {
        fds::lkl_of(fd as u64).is_some()
    }

    fn read_head(&self, path: u64, buf: &mut [u8]) -> trampoline::Head {
        self.head(path, buf)
    }

    fn fd_path(&self, fd: i32, buf: &mut [u8]) -> i64 {
        self.lkl_fd_path(fd, buf)
    }

    fn mixed(&self) -> bool {
        true
    }

    fn forks(&self) -> bool {
        kernel::shared()
    }

    fn fork(&self, nr: u64, args: &[u64; 6]) -> i64 {
        kernel::fork(nr, args)
    }

    fn before_exec(&self) {
        kernel::before_exec();
    }

    fn exec_failed(&self) {
        kernel::exec_failed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_configuration() {
        use trampoline::Backend;
        let lkl = Lkl {
            resolv: true,
            proc_net: false,
            sys_net: false,
        };
        assert_eq!(lkl.route(libc::SYS_socket as u64), Some(Route::Hook));
        assert_eq!(lkl.route(libc::SYS_read as u64), Some(Route::FdArg));
        assert_eq!(lkl.route(libc::SYS_openat as u64), Some(Route::Hook));
        assert_eq!(lkl.route(libc::SYS_getpid as u64), None);
        let plain = Lkl {
            resolv: false,
            proc_net: false,
            sys_net: false,
        };
        assert_eq!(plain.route(libc::SYS_openat as u64), None);
        assert_eq!(plain.route(libc::SYS_newfstatat as u64), Some(Route::FdArg));
    }
}
