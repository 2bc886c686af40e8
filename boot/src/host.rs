//! The few host calls [`start`](crate::start) needs (CPU affinity): the
//! crate's only unsafe code.
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
