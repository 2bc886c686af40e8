//! The kernel's process entry points (see `linux/arch/lkl/kernel/syscalls.c`), as the
//! kernel process uses them: each returns a negative errno on failure.

/// A new LKL process: a fork of `parent`'s, or a fresh one (`parent` = 0).
pub(crate) fn proc_create(parent: i64) -> i64 {
    // SAFETY: plain integers; the kernel checks them.
    unsafe { lkl_proc_create(parent as _) as i64 }
}

/// The calling host thread becomes a thread of LKL process `pid`, whose user memory is
/// host process `user`'s.
pub(crate) fn thread_join(pid: i64, user: i32) -> i64 {
    // SAFETY: plain integers; the kernel checks them.
    unsafe { lkl_thread_join(pid as _, user as _) as i64 }
}

/// The calling host thread's task ends.
pub(crate) fn thread_leave() -> i64 {
    // SAFETY: no arguments.
    unsafe { lkl_thread_leave() as i64 }
}

/// What an exec does to the calling thread's process (close-on-exec fds closed).
pub(crate) fn proc_exec() -> i64 {
    // SAFETY: no arguments.
    unsafe { lkl_proc_exec() as i64 }
}

/// Ends LKL process `pid` (SIGKILL): its blocked calls return, and it goes once its
/// threads have left.
pub(crate) fn proc_kill(pid: i64) -> i64 {
    // SAFETY: plain integers; the kernel checks them.
    unsafe { lkl_proc_kill(pid as _) as i64 }
}

/// LKL system call `nr` of the calling host thread's task.
pub(crate) fn syscall(nr: i64, mut args: [i64; 6]) -> i64 {
    // SAFETY: the arguments are the caller's; pointers in them are the client's (read
    // through the user-memory host operations) or the window's.
    unsafe { lkl_sys::lkl_syscall(nr, args.as_mut_ptr()) }
}

// TEMPORARY until lkl-sys exposes them.
extern "C" {
    fn lkl_proc_create(parent: libc::c_long) -> libc::c_long;
    fn lkl_thread_join(pid: libc::c_long, user: libc::c_ulong) -> libc::c_long;
    fn lkl_thread_leave() -> libc::c_long;
    fn lkl_proc_exec() -> libc::c_long;
    fn lkl_proc_kill(pid: libc::c_long) -> libc::c_long;
}
