//! The kernel's process entry points (`lkl::process`), as the kernel process uses
//! them: each returns a negative errno on failure.

use lkl::process::{self, UserMemory};

fn neg(e: lkl::Errno) -> i64 {
    -i64::from(e.0)
}

/// A new LKL process: a fork of `parent`'s, or a fresh one (`parent` = 0).
pub(crate) fn proc_create(parent: i64) -> i64 {
    let r = if parent == 0 {
        process::create()
    } else {
        process::fork(parent as i32)
    };
    r.map_or_else(neg, i64::from)
}

/// The calling host thread becomes a thread of LKL process `pid`, whose user memory is
/// host process `user`'s.
pub(crate) fn thread_join(pid: i64, user: i32) -> i64 {
    process::thread_join(pid as i32, UserMemory::Process(user)).map_or_else(neg, i64::from)
}

/// The calling host thread becomes a thread of LKL process `pid`, with its own memory
/// as user memory (the kernel process's own threads).
pub(crate) fn thread_join_local(pid: i64) -> i64 {
    process::thread_join(pid as i32, UserMemory::Local).map_or_else(neg, i64::from)
}

/// Makes the blocked call of LKL thread `tid` return `EINTR`.
pub(crate) fn thread_interrupt(tid: i32) -> i64 {
    process::thread_interrupt(tid).map_or_else(neg, |()| 0)
}

/// The calling host thread's task ends.
pub(crate) fn thread_leave() -> i64 {
    process::thread_leave().map_or_else(neg, |()| 0)
}

/// What an exec does to the calling thread's process (close-on-exec fds closed).
pub(crate) fn proc_exec() -> i64 {
    process::exec().map_or_else(neg, |()| 0)
}

/// Ends LKL process `pid` (SIGKILL): its blocked calls return, and it goes once its
/// threads have left.
pub(crate) fn proc_kill(pid: i64) -> i64 {
    process::kill(pid as i32).map_or_else(neg, |()| 0)
}

/// LKL system call `nr` of the calling host thread's task.
pub(crate) fn syscall(nr: i64, mut args: [i64; 6]) -> i64 {
    // SAFETY: the arguments are the caller's; pointers in them are the client's (read
    // through the user-memory host operations) or the window's.
    unsafe { lkl_sys::lkl_syscall(nr, args.as_mut_ptr()) }
}
