//! Processes for a kernel server: one kernel shared by a tree of host
//! processes.
//!
//! A *kernel server* runs LKL for several *client* host processes. Each
//! client process is an LKL process of its own ([`create`] a fresh one or
//! [`fork`] another): its own file table, cwd, root, umask, credentials
//! and limits. Each client thread is served by a host thread of the server
//! that [`thread_join`]s the client's process; from then on every system
//! call made on that host thread ([`crate::syscall`] and the typed
//! wrappers) runs as that LKL thread, and its user pointers refer to the
//! memory named by [`UserMemory`].
//!
//! A process's leader holds what the process owns and never makes calls
//! itself, so a process outlives its threads: a client thread ending is
//! [`thread_leave`]; a client process ending is [`kill`], then
//! [`thread_leave`] on each host thread still joined to it (their blocked
//! calls return at the kill). Its files are closed once both are done.
//! The kernel reaps processes and threads itself. The system calls `exit`
//! and `exit_group` must not be made on a joined thread.
//!
//! [`exec`] does to the kernel state what `execve` does (close the
//! `FD_CLOEXEC` descriptors, reset signal handlers), and
//! [`thread_interrupt`] makes one blocked call return `EINTR`.

use std::ffi::c_long;

use crate::{check_running, Errno};

pub use crate::host::usermem::set_shared_window;

/// Whose memory a joined thread's user pointers refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserMemory {
    /// This host process's own memory (copied with `memcpy`).
    Local,
    /// The memory of the host process with this pid: reached with
    /// `process_vm_readv`/`process_vm_writev` (which need the right to
    /// ptrace it), or `memcpy` inside the shared window
    /// ([`set_shared_window`]). A bad address makes the call fail with
    /// `EFAULT`.
    Process(libc::pid_t),
}

fn result(ret: c_long) -> Result<i32, Errno> {
    Errno::result(ret).map(|r| r as i32)
}

/// Makes a fresh process: no open files, cwd and root `/`, umask 022,
/// init's credentials, `RLIMIT_NOFILE` 65536. Returns its pid.
///
/// # Errors
/// `ENOSYS` if the kernel is not running; what the kernel returned.
pub fn create() -> Result<i32, Errno> {
    check_running()?;
    // SAFETY: plain numbers; callable from any host thread.
    result(unsafe { lkl_sys::lkl_proc_create(0) })
}

/// Makes a fork of process `parent` as it is now: a copy of its file table
/// (`FD_CLOEXEC` kept), cwd, root, umask, limits and credentials (those of
/// the calling host thread's task if it is joined to `parent`, as a fork
/// copies the forking thread's; else those of `parent`'s leader). Returns
/// the new process's pid.
///
/// # Errors
/// `ESRCH` if `parent` is no live process; `ENOSYS` if the kernel is not
/// running.
pub fn fork(parent: i32) -> Result<i32, Errno> {
    check_running()?;
    if parent <= 0 {
        return Err(Errno::ESRCH);
    }
    // SAFETY: as in create.
    result(unsafe { lkl_sys::lkl_proc_create(parent.into()) })
}

/// Makes the calling host thread a thread of process `pid`, its user
/// memory `user`. Returns the new thread's tid.
///
/// # Errors
/// `EBUSY` if this host thread already has a kernel task (a joined thread
/// must [`thread_leave`] first; a thread that made system calls before
/// joining has one too), `ESRCH` if `pid` is no live process, `EOPNOTSUPP`
/// for a pid that is not positive.
pub fn thread_join(pid: i32, user: UserMemory) -> Result<i32, Errno> {
    check_running()?;
    let cookie = match user {
        UserMemory::Local => 0,
        UserMemory::Process(host_pid) if host_pid > 0 => host_pid as libc::c_ulong,
        UserMemory::Process(_) => return Err(Errno::EOPNOTSUPP),
    };
    // SAFETY: plain numbers; the cookie is only passed back to our own
    // user_read/user_write.
    result(unsafe { lkl_sys::lkl_thread_join(pid.into(), cookie) })
}

/// The calling host thread's kernel thread exits; the host thread may
/// join again or end.
///
/// # Errors
/// `ESRCH` if the thread has no kernel task.
pub fn thread_leave() -> Result<(), Errno> {
    check_running()?;
    // SAFETY: acts on the calling thread's own task only.
    result(unsafe { lkl_sys::lkl_thread_leave() }).map(drop)
}

/// What `execve` does to the calling thread's process: its `FD_CLOEXEC`
/// descriptors are closed and its signal handlers reset.
///
/// # Errors
/// `ESRCH` if the thread has no kernel task.
pub fn exec() -> Result<(), Errno> {
    check_running()?;
    // SAFETY: acts on the calling thread's own process only.
    result(unsafe { lkl_sys::lkl_proc_exec() }).map(drop)
}

/// Ends process `pid` as `SIGKILL` does: its threads' blocked calls
/// return (`EINTR` or the call's own error). Each host thread joined to it
/// must then [`thread_leave`]. Callable from any host thread.
///
/// # Errors
/// `ESRCH` if `pid` is no live process.
pub fn kill(pid: i32) -> Result<(), Errno> {
    check_running()?;
    // SAFETY: plain numbers; callable from any host thread.
    result(unsafe { lkl_sys::lkl_proc_kill(pid.into()) }).map(drop)
}

/// Makes the blocked system call of thread `tid` return `EINTR`; nothing
/// happens if it is not waiting inside a call.
///
/// # Errors
/// `ESRCH` if there is no such thread.
pub fn thread_interrupt(tid: i32) -> Result<(), Errno> {
    check_running()?;
    // SAFETY: plain numbers; callable from any host thread.
    result(unsafe { lkl_sys::lkl_thread_interrupt(tid.into()) }).map(drop)
}
