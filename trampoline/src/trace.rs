//! `--trace` lines and `--count` counters, formatted without allocating (the hook runs
//! inside the program, see the crate docs).

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::names;
use crate::syscall6;

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
        // SAFETY: `bytes` is a valid buffer of the given length.
        let r = unsafe {
            syscall6(
                1,
                [
                    fd as u64,
                    bytes.as_ptr() as u64,
                    bytes.len() as u64,
                    0,
                    0,
                    0,
                ],
            )
        };
        if r == -4 {
            continue;
        }
        if r <= 0 {
            return;
        }
        bytes = &bytes[r as usize..];
    }
}

/// Writes one strace-like line: `name(arg, ...) = result` (or `= ?` when the result is
/// not seen, for calls that do not come back through the hook).
pub(crate) fn trace(fd: i32, nr: u64, args: &[u64; 6], result: Option<i64>) {
    let mut l = Line::new();
    // SAFETY: getpid has no arguments.
    let pid = unsafe { syscall6(39, [0; 6]) };
    let _ = write!(l, "[{pid}] ");
    match names::name(nr) {
        Some(n) => {
            let _ = write!(l, "{n}(");
        }
        None => {
            let _ = write!(l, "syscall_{nr}(");
        }
    }
    for (i, a) in args.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(l, "{sep}{a:#x}");
    }
    let _ = match result {
        Some(r) if (-4095..0).contains(&r) => writeln!(l, ") = -1 (errno {})", -r),
        Some(r) => writeln!(l, ") = {r}"),
        None => writeln!(l, ") = ?"),
    };
    write_all(fd, l.bytes());
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
