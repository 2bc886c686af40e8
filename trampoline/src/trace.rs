//! `--trace` lines and `--count` counters, formatted without allocating (the hook runs
//! inside the program, see the crate docs).

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::names;
use crate::{sys, syscall6};

/// Size of the shared counter area in `u64`s: calls at `[nr]`, errors at `[SLOTS + nr]`.
pub const COUNTER_WORDS: usize = 2 * SLOTS;
/// Syscall numbers counted.
pub const SLOTS: usize = 1024;

/// A fixed line buffer; output past its end is dropped.
pub(crate) struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub(crate) fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes all of `bytes` to `fd` with raw `write` calls.
pub(crate) fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let r = sys::write(fd, bytes);
        if r == -(libc::EINTR as i64) {
            continue;
        }
        if r <= 0 {
            return;
        }
        bytes = &bytes[r as usize..];
    }
}

/// Warns on the trace when the hook allocated (it must not, see `crate::alloc`).
#[inline(never)]
pub(crate) fn warn_allocations(fd: i32) {
    let n = crate::alloc::post_seal_allocations();
    if n > 0 {
        let mut l = Line::new();
        let _ = writeln!(l, "zpoline: warning: {n} allocations inside the hook");
        write_all(fd, l.bytes());
    }
}

/// Writes one strace-like line: `name(arg, ...) = result` (or `= ?` when the result is
/// not seen, for calls that do not come back through the hook).
#[inline(never)]
pub(crate) fn trace(fd: i32, nr: u64, args: &[u64; 6], result: Option<i64>) {
    trace_to(fd, nr, args, result, crate::Target::Host);
}

/// [`trace`] naming the kernel that served the call when the backend is not the host
/// alone: `[pid] lkl socket(...) = 3`, `[pid] host read(...) = 5`.
#[inline(never)]
pub(crate) fn trace_to(
    fd: i32,
    nr: u64,
    args: &[u64; 6],
    result: Option<i64>,
    target: crate::Target,
) {
    let mut l = Line::new();
    // SAFETY: getpid has no arguments.
    let pid = unsafe { syscall6(sys::NR_GETPID, [0; 6]) };
    let _ = write!(l, "[{pid}] ");
    if crate::TAG_TRACE.load(core::sync::atomic::Ordering::Relaxed) {
        let _ = write!(
            l,
            "{} ",
            match target {
                crate::Target::Host => "host",
                crate::Target::Lkl | crate::Target::LklMissing => "lkl",
                crate::Target::Interposer => "zpoline",
            }
        );
    }
    match names::name(nr) {
        Some(n) => {
            let _ = write!(l, "{n}(");
        }
        None => {
            let _ = write!(l, "syscall_{nr}(");
        }
    }
    let strings = string_args(nr);
    for (i, a) in args.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        if strings & (1 << i) != 0 && *a != 0 {
            let _ = write!(l, "{sep}");
            quote(&mut l, *a);
        } else if *a as u32 == AT_FDCWD as u32 && dirfd_args(nr) & (1 << i) != 0 {
            let _ = write!(l, "{sep}AT_FDCWD");
        } else {
            let _ = write!(l, "{sep}{a:#x}");
        }
    }
    let _ = match result {
        Some(_) if target == crate::Target::LklMissing => {
            writeln!(l, ") = -1 ENOSYS (not implemented by LKL)")
        }
        Some(r) if (-4095..0).contains(&r) => match errno_name(-r) {
            Some(e) => writeln!(l, ") = -1 {e}"),
            None => writeln!(l, ") = -1 (errno {})", -r),
        },
        // Addresses in hex, like strace: mmap, brk, mremap.
        Some(r) if matches!(nr, sys::NR_MMAP | sys::NR_BRK | sys::NR_MREMAP) => {
            writeln!(l, ") = {r:#x}")
        }
        Some(r) => writeln!(l, ") = {r}"),
        None => writeln!(l, ") = ?"),
    };
    write_all(fd, l.bytes());
}

use sys::AT_FDCWD;

/// Bit i set: argument i is a path string.
// The libc crate's `SYS_*` names are lower case after the `SYS_`.
#[allow(non_upper_case_globals)]
fn string_args(nr: u64) -> u8 {
    use libc::*;
    let Ok(nr) = c_long::try_from(nr) else {
        return 0;
    };
    match nr {
        SYS_open | SYS_stat | SYS_lstat | SYS_access | SYS_execve | SYS_truncate | SYS_chdir
        | SYS_mkdir | SYS_rmdir | SYS_unlink | SYS_readlink | SYS_chmod | SYS_chown
        | SYS_lchown | SYS_mknod | SYS_statfs | SYS_chroot | SYS_acct | SYS_mount | SYS_umount2 => {
            0b1
        }
        SYS_rename | SYS_link | SYS_symlink => 0b11,
        SYS_openat | SYS_mkdirat | SYS_mknodat | SYS_fchownat | SYS_newfstatat | SYS_unlinkat
        | SYS_readlinkat | SYS_fchmodat | SYS_faccessat | SYS_utimensat | SYS_execveat
        | SYS_statx | SYS_openat2 | SYS_faccessat2 => 0b10,
        SYS_renameat | SYS_linkat | SYS_renameat2 => 0b1010,
        SYS_symlinkat => 0b101,
        _ => 0,
    }
}

/// Bit i set: argument i is a directory file descriptor.
// The libc crate's `SYS_*` names are lower case after the `SYS_`.
#[allow(non_upper_case_globals)]
fn dirfd_args(nr: u64) -> u8 {
    use libc::*;
    let Ok(nr) = c_long::try_from(nr) else {
        return 0;
    };
    match nr {
        SYS_openat | SYS_mkdirat | SYS_mknodat | SYS_fchownat | SYS_futimesat | SYS_newfstatat
        | SYS_unlinkat | SYS_readlinkat | SYS_fchmodat | SYS_faccessat | SYS_utimensat
        | SYS_execveat | SYS_statx | SYS_openat2 | SYS_faccessat2 => 0b1,
        SYS_renameat | SYS_linkat | SYS_renameat2 => 0b101,
        SYS_symlinkat => 0b10,
        _ => 0,
    }
}

/// Writes the string at `addr` quoted and shortened like strace, read with
/// `process_vm_readv` so a bad pointer gives `0x...` instead of a crash.
fn quote(l: &mut Line, addr: u64) {
    let mut buf = [0u8; 64];
    let local = [buf.as_mut_ptr() as u64, buf.len() as u64];
    let remote = [addr, buf.len() as u64];
    // SAFETY: getpid has no arguments; process_vm_readv copies into our buffer and
    // reports faults on the remote side as errors.
    let n = unsafe {
        let pid = syscall6(sys::NR_GETPID, [0; 6]);
        syscall6(
            sys::NR_PROCESS_VM_READV,
            [
                pid as u64,
                local.as_ptr() as u64,
                1,
                remote.as_ptr() as u64,
                1,
                0,
            ],
        )
    };
    if n <= 0 {
        let _ = write!(l, "{addr:#x}");
        return;
    }
    let got = &buf[..n as usize];
    let end = got.iter().position(|&c| c == 0);
    let _ = write!(l, "\"");
    for &c in &got[..end.unwrap_or(got.len())] {
        let _ = match c {
            b'"' => write!(l, "\\\""),
            b'\\' => write!(l, "\\\\"),
            b'\n' => write!(l, "\\n"),
            0x20..=0x7e => write!(l, "{}", c as char),
            _ => write!(l, "\\x{c:02x}"),
        };
    }
    let _ = write!(l, "{}", if end.is_some() { "\"" } else { "\"..." });
}

/// The symbolic name of common errnos.
fn errno_name(e: i64) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        32 => "EPIPE",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        95 => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        115 => "EINPROGRESS",
        _ => return None,
    })
}

/// Counts one call of `nr` with `result` in the area at `area`.
pub(crate) fn count(area: *mut AtomicU64, nr: u64, result: i64) {
    let i = nr as usize;
    if i >= SLOTS || area.is_null() {
        return;
    }
    // SAFETY: `area` points to COUNTER_WORDS atomics (see `Options::count_area`) and
    // i < SLOTS.
    unsafe {
        (*area.add(i)).fetch_add(1, Ordering::Relaxed);
        if (-4095..0).contains(&result) {
            (*area.add(SLOTS + i)).fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts an error for `nr` when `result` is one (the call itself was counted before).
pub(crate) fn count_error(area: *mut AtomicU64, nr: u64, result: i64) {
    let i = nr as usize;
    if i >= SLOTS || area.is_null() || !(-4095..0).contains(&result) {
        return;
    }
    // SAFETY: in bounds of the COUNTER_WORDS area.
    unsafe { (*area.add(SLOTS + i)).fetch_add(1, Ordering::Relaxed) };
}

/// Prints the `--count` summary: one line per syscall seen, then the total.
#[inline(never)]
pub(crate) fn summary(fd: i32, area: *mut AtomicU64) {
    if area.is_null() {
        return;
    }
    let mut l = Line::new();
    let _ = writeln!(l, "zpoline: syscall summary\n     calls    errors syscall\n---------- --------- ----------------");
    write_all(fd, l.bytes());
    let (mut calls, mut errors) = (0u64, 0u64);
    for nr in 0..SLOTS {
        // SAFETY: in bounds of the COUNTER_WORDS area.
        let (c, e) = unsafe {
            (
                (*area.add(nr)).load(Ordering::Relaxed),
                (*area.add(SLOTS + nr)).load(Ordering::Relaxed),
            )
        };
        if c == 0 {
            continue;
        }
        calls += c;
        errors += e;
        let mut l = Line::new();
        let _ = match names::name(nr as u64) {
            Some(n) => writeln!(l, "{c:>10} {e:>9} {n}"),
            None => writeln!(l, "{c:>10} {e:>9} syscall_{nr}"),
        };
        write_all(fd, l.bytes());
    }
    let mut l = Line::new();
    let _ = writeln!(
        l,
        "---------- --------- ----------------\n{calls:>10} {errors:>9} total"
    );
    write_all(fd, l.bytes());
}
