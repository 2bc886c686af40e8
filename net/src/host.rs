//! The few host calls [`start`](crate::start) needs (CPU affinity, and
//! quieting stderr while the kernel boots): the crate's only unsafe code.
#![allow(unsafe_code)]

use std::io;

/// The calling thread's CPU affinity.
pub(crate) fn affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain bits; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

/// Sets the calling thread's CPU affinity (threads it creates inherit it).
pub(crate) fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to the first CPU of `allowed`.
pub(crate) fn pin_first(allowed: &libc::cpu_set_t) -> io::Result<()> {
    let cpus = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads a bit of a live set, `c` is below its size.
    let Some(cpu) = (0..cpus).find(|&c| unsafe { libc::CPU_ISSET(c, allowed) }) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "this thread may run on no CPU",
        ));
    };
    // SAFETY: as in `affinity`.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes a bit of a live set, `cpu` is below its size.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    set_affinity(&one)
}

/// Runs `f` with file descriptor 2 pointing at an anonymous memory file,
/// then puts it back; returns what `f` (and the threads writing to fd 2
/// meanwhile) printed. Used while the kernel boots with `debug` off: its
/// banner is printed before the kernel reads `loglevel=`, and the log is
/// wanted only if the boot fails. If the file cannot be made, `f` runs
/// with stderr as it is.
pub(crate) fn capture_stderr<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
    // SAFETY: dup on a descriptor number; an error is -1.
    let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return (f(), Vec::new());
    }
    // SAFETY: a NUL-terminated name and plain flags.
    let mem = unsafe { libc::memfd_create(c"lkl-boot-log".as_ptr(), libc::MFD_CLOEXEC) };
    if mem < 0 {
        // SAFETY: `saved` is ours to close.
        unsafe { libc::close(saved) };
        return (f(), Vec::new());
    }
    // SAFETY: both descriptors are open; dup2 replaces fd 2 atomically.
    unsafe { libc::dup2(mem, 2) };
    let out = f();
    // SAFETY: `saved` is the original stderr, put back atomically; then
    // the copy is closed.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut log = Vec::new();
    let mut buf = [0u8; 4096];
    let mut off: libc::off_t = 0;
    loop {
        // SAFETY: reads into a live buffer of its size at offset `off`.
        let n = unsafe { libc::pread(mem, buf.as_mut_ptr().cast(), buf.len(), off) };
        if n <= 0 {
            break;
        }
        log.extend_from_slice(&buf[..n as usize]);
        off += n as libc::off_t;
    }
    // SAFETY: `mem` is ours to close.
    unsafe { libc::close(mem) };
    (out, log)
}
