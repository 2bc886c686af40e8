//! Where the kernel's console goes: the host's stderr (the default),
//! nowhere, a file, a buffer in memory, or a callback.
//!
//! The sink is process-wide, like the kernel it serves, and can be changed
//! at any time, before or after boot. Only the kernel's own console output
//! (its `printk`s, through the `print` host operation) goes to the sink; a
//! kernel panic and the host library's diagnostics always go to file
//! descriptor 2. Nothing here touches the process's file descriptors, so
//! the program's own stderr is never redirected.
//!
//! ```no_run
//! // Boot quietly, but keep what the kernel said in case the boot fails.
//! let (kernel, log) = lkl::console::capture(|| lkl::boot(&lkl::BootOptions::default()));
//! if kernel.is_err() {
//!     eprint!("{}", String::from_utf8_lossy(&log));
//! }
//! ```

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

/// A function that receives the kernel's console output.
pub type ConsoleFn = Box<dyn Fn(&[u8]) + Send>;

/// A destination for the kernel's console.
#[derive(Default)]
pub enum Console {
    /// File descriptor 2, written with `write(2)` (the default).
    #[default]
    Stderr,
    /// Dropped.
    Off,
    /// Appended to this file.
    File(File),
    /// Kept in memory; [`take`] returns it.
    Memory(Vec<u8>),
    /// Handed to a function, one chunk of output at a time (a chunk is
    /// what one `printk` printed, often one line). The function runs on
    /// whichever thread the kernel printed from, inside the kernel: it
    /// must not call into LKL.
    Callback(ConsoleFn),
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Console::Stderr => f.write_str("Stderr"),
            Console::Off => f.write_str("Off"),
            Console::File(file) => f.debug_tuple("File").field(file).finish(),
            Console::Memory(buf) => write!(f, "Memory({} bytes)", buf.len()),
            Console::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

static SINK: Mutex<Console> = Mutex::new(Console::Stderr);

fn sink() -> MutexGuard<'static, Console> {
    // A callback that panicked leaves the sink as it was: go on with it.
    SINK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends the console to `to` from now on; returns where it went before.
pub fn set(to: Console) -> Console {
    std::mem::replace(&mut *sink(), to)
}

/// With [`Console::Memory`], returns what was kept so far and empties the
/// buffer; otherwise nothing.
pub fn take() -> Vec<u8> {
    match &mut *sink() {
        Console::Memory(buf) => std::mem::take(buf),
        _ => Vec::new(),
    }
}

/// Runs `f` with the console kept in memory, then puts the sink back;
/// returns what `f` returned and what the kernel printed meanwhile.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
    let before = set(Console::Memory(Vec::new()));
    let out = f();
    let log = match set(before) {
        Console::Memory(buf) => buf,
        _ => Vec::new(),
    };
    (out, log)
}

/// Runs `f` with the console off, then puts the sink back.
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let before = set(Console::Off);
    let out = f();
    set(before);
    out
}

/// The `print` host operation's destination: writes `bytes` to the sink.
pub(crate) fn write(bytes: &[u8]) {
    match &mut *sink() {
        Console::Stderr => crate::host::print::write_stderr(bytes),
        Console::Off => {}
        Console::File(file) => crate::host::print::write_fd(file.as_raw_fd(), bytes),
        Console::Memory(buf) => buf.extend_from_slice(bytes),
        Console::Callback(f) => f(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    /// The sink is process-wide: the cases run in one test, in turn.
    #[test]
    fn sinks() {
        let (n, log) = capture(|| {
            write(b"hello ");
            write(b"kernel\n");
            7
        });
        assert_eq!((n, log.as_slice()), (7, &b"hello kernel\n"[..]));
        assert!(
            matches!(*sink(), Console::Stderr),
            "capture puts the sink back"
        );

        quiet(|| {
            let (_, inner) = capture(|| write(b"inner"));
            assert_eq!(inner, b"inner");
            write(b"dropped");
        });
        assert!(matches!(*sink(), Console::Stderr));

        let got = Arc::new(StdMutex::new(Vec::new()));
        let g = got.clone();
        set(Console::Callback(Box::new(move |b| {
            g.lock().unwrap().extend_from_slice(b)
        })));
        write(b"to the callback");
        set(Console::Stderr);
        assert_eq!(*got.lock().unwrap(), b"to the callback");

        let dir = std::env::temp_dir().join(format!("lkl-console-{}", std::process::id()));
        let file = File::create(&dir).unwrap();
        set(Console::File(file));
        write(b"to a file\n");
        set(Console::Memory(Vec::new()));
        write(b"kept");
        assert_eq!(take(), b"kept");
        assert_eq!(take(), b"");
        set(Console::Stderr);
        assert_eq!(std::fs::read(&dir).unwrap(), b"to a file\n");
        std::fs::remove_file(&dir).unwrap();
    }
}
