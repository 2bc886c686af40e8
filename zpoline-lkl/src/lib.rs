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
//! `/proc/sys/net`, `/sys/class/net` when `mount` has `proc`/`sysfs`). The full table
//! is in `docs/zpoline.md`. LKL calls run on the program's thread wearing a thread block
//! of ours (`world.rs`); signal handlers are wrapped to get the program's back
//! (`signals.rs`); LKL fds live in the program's fd space as placeholders (`fds.rs`);
//! `poll`/`select` over mixed sets are in `wait.rs`, `epoll` in `epoll.rs`.

mod blocking;
mod epoll;
mod fds;
mod signals;
mod wait;
mod world;

use core::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use trampoline::{syscall6, Route, Target};

/// Errors of [`start`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be read.
    #[error("{0}")]
    Config(#[from] lkl_hijack_config::Error),
    /// The trial boot (see [`start`]) failed; the message names the key.
    #[error("{0}")]
    Trial(String),
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

static BACKEND: OnceLock<Lkl> = OnceLock::new();
/// The configuration, for a boot at the first LKL call.
static CONFIG: OnceLock<lkl_hijack_config::Config> = OnceLock::new();
/// The kernel, never halted while the program runs (exit ends it with the process).
static KERNEL: OnceLock<lkl::Kernel> = OnceLock::new();
/// 0: not booted yet, 1: running, 2: the boot failed.
static STATE: AtomicU8 = AtomicU8::new(0);
static BOOT_LOCK: Mutex<()> = Mutex::new(());

/// x86-64 syscall number → LKL's (generic table) number + 1, 0 when LKL has none.
static NR_MAP: [AtomicI32; 512] = [const { AtomicI32::new(0) }; 512];

/// What [`start`] did.
#[derive(Debug)]
pub struct Started {
    /// The backend to install.
    pub backend: &'static Lkl,
    /// Warnings about the configuration (unknown keys).
    pub warnings: Vec<String>,
    /// The configuration file used, if any.
    pub file: Option<std::path::PathBuf>,
}

/// Loads the hijack configuration (`LKL_HIJACK_CONFIG_FILE`, `./lkl-hijack.json` or the
/// `LKL_HIJACK_*` variables) and prepares the backend. LKL itself boots at the first
/// call that goes to LKL: most processes of a shell never open a socket, and a parent
/// that held the tap would keep its children from booting on it. With `check_boot`
/// (the first process), a trial boot in a forked child reports a bad configuration or
/// a failed boot here, before the program runs. Call once, from `lkl-run`'s own world,
/// before the program runs, while it has one thread.
///
/// # Errors
/// [`Error`]: a bad configuration, a missing device, a failed boot.
pub fn start(check_boot: bool) -> Result<Started, Error> {
    let loaded = lkl_hijack_config::load()?;
    let config = loaded.config;
    if check_boot {
        trial_boot(&config)?;
    }
    for (nr, slot) in NR_MAP.iter().enumerate() {
        let lkl = trampoline::names::name(nr as u64).and_then(|n| {
            let n = lkl_name(n);
            lkl_sys::SYSCALL_DEFS.iter().find(|d| d.name == n)
        });
        slot.store(lkl.map_or(0, |d| d.nr as i32 + 1), Ordering::Relaxed);
    }
    if !world::init() {
        return Err(Error::Shadow);
    }
    OWNER_PID.store(std::process::id() as i32, Ordering::Relaxed);
    let has = |m: &str| config.mount.iter().any(|x| x == m);
    let backend = BACKEND.get_or_init(|| Lkl {
        resolv: config.nameserver.is_some(),
        proc_net: has("proc"),
        sys_net: has("sysfs"),
    });
    let _ = CONFIG.set(config);
    Ok(Started {
        backend,
        warnings: loaded.warnings,
        file: loaded.file,
    })
}

/// Boots LKL from `config` in a forked child, which then exits: a bad configuration,
/// a missing device or a failed boot is reported before the program runs, while the
/// process itself boots at its first LKL call. So a program that never opens a socket
/// (a shell) never holds the tap, and the children it forks and executes can boot
/// their own LKL on it.
fn trial_boot(config: &lkl_hijack_config::Config) -> Result<(), Error> {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 into our array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Trial(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: lkl-run has one thread here (nothing of LKL's runs yet); the child only
    // boots LKL, writes the outcome and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let msg = match lkl_boot::start(config) {
            Ok(started) => {
                for w in &started.warnings {
                    eprintln!("lkl-run: warning: {w}");
                }
                String::new()
            }
            Err(e) => e.to_string(),
        };
        // SAFETY: writing our buffer to the pipe, then leaving without atexit handlers.
        unsafe {
            libc::write(p[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(i32::from(!msg.is_empty()));
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(p[1]) };
    if pid < 0 {
        return Err(Error::Trial(std::io::Error::last_os_error().to_string()));
    }
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(p[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        msg.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: closing our read end, reaping our child.
    unsafe {
        libc::close(p[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if !msg.is_empty() {
        return Err(Error::Trial(String::from_utf8_lossy(&msg).into_owned()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(Error::Trial(abnormal_end(status)));
    }
    Ok(())
}

/// What to say of a trial boot that ended without a message.
fn abnormal_end(status: i32) -> String {
    let how = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: strsignal returns a static (or thread-local) string for any number.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
        format!("was killed by signal {sig} ({})", name.to_string_lossy())
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    };
    format!(
        "LKL's trial boot {how} before it could report (the kernel's log, if any, is above): \
         check boot_cmdline (mem=, options the kernel refuses) and the interfaces, \
         or run with \"debug\": \"1\" to see the whole boot"
    )
}

/// The name in LKL's (generic) table of the x86-64 call named `x86`.
fn lkl_name(x86: &str) -> &str {
    match x86 {
        "fstat" => "newfstat",
        other => other,
    }
}

/// In our world: boots LKL if this process has not yet. False when it cannot run.
pub(crate) fn ensure_running() -> bool {
    match STATE.load(Ordering::Acquire) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let _g = BOOT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if STATE.load(Ordering::Acquire) == 0 {
        let r = CONFIG.get().map(lkl_boot::start);
        match r {
            Some(Ok(started)) => {
                let _ = KERNEL.set(started.kernel);
                // `delay_main`: upstream waits after the boot, before the program goes on
                // (for the network to settle); the boot is here, at the first LKL call.
                if let Some(d) = CONFIG.get().and_then(|c| c.delay_main) {
                    std::thread::sleep(d);
                }
                STATE.store(1, Ordering::Release);
            }
            Some(Err(e)) => {
                eprintln!(
                    "lkl-run: cannot start LKL in process {}: {e}; its network calls fail with ENETDOWN",
                    std::process::id()
                );
                STATE.store(2, Ordering::Release);
            }
            None => STATE.store(2, Ordering::Release),
        }
    }
    STATE.load(Ordering::Acquire) == 1
}

// x86-64 syscall numbers the backend handles by name.
const READ: u64 = 0;
const OPEN: u64 = 2;
const CLOSE: u64 = 3;
const STAT: u64 = 4;
const FSTAT: u64 = 5;
const LSTAT: u64 = 6;
const POLL: u64 = 7;
const RT_SIGACTION: u64 = 13;
const ACCESS: u64 = 21;
const SELECT: u64 = 23;
const DUP: u64 = 32;
const DUP2: u64 = 33;
const SOCKET: u64 = 41;
const CONNECT: u64 = 42;
const ACCEPT: u64 = 43;
const FCNTL: u64 = 72;
const SENDFILE: u64 = 40;
const COPY_FILE_RANGE: u64 = 326;
const EPOLL_WAIT: u64 = 232;
const EPOLL_CTL: u64 = 233;
const EPOLL_PWAIT: u64 = 281;
const EPOLL_PWAIT2: u64 = 441;
const OPENAT: u64 = 257;
const NEWFSTATAT: u64 = 262;
const FACCESSAT: u64 = 269;
const PSELECT6: u64 = 270;
const PPOLL: u64 = 271;
const ACCEPT4: u64 = 288;
const DUP3: u64 = 292;
const STATX: u64 = 332;
const CLOSE_RANGE: u64 = 436;
const EXIT_GROUP: u64 = 231;
const EXIT: u64 = 60;
const OPENAT2: u64 = 437;
const FACCESSAT2: u64 = 439;

use libc::{EAFNOSUPPORT, EAGAIN, EBADF, EINTR, EINVAL, ENETDOWN, ENOSYS};
const AT_FDCWD: i64 = libc::AT_FDCWD as i64;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
const F_DUPFD: u64 = libc::F_DUPFD as u64;
const F_DUPFD_CLOEXEC: u64 = libc::F_DUPFD_CLOEXEC as u64;

/// x86-64 calls whose first argument is an fd and that LKL serves for its fds.
const FD_FIRST: &[u64] = &[
    READ, 1, CLOSE, FSTAT, 8, 16, 17, 18, 19, 20, 40, 42, ACCEPT, 44, 45, 46, 47, 48, 49, 50, 51,
    52, 54, 55, DUP, FCNTL, 73, 74, 75, 77, 78, 81, 91, 93, 138, 187, 190, 193, 196, 199, 217, 221,
    232, 277, 281, 285, ACCEPT4, 295, 296, 299, 306, 307, 326, 327, 328, 441,
];

/// LKL's number of a call the backend makes itself.
macro_rules! nr {
    (close) => {
        lkl_sys::__lkl__NR_close as i64
    };
    (dup) => {
        lkl_sys::__lkl__NR_dup as i64
    };
    (dup3) => {
        lkl_sys::__lkl__NR_dup3 as i64
    };
    (sendfile) => {
        lkl_sys::__lkl__NR3264_sendfile as i64
    };
    (write) => {
        lkl_sys::__lkl__NR_write as i64
    };
    (fcntl) => {
        lkl_sys::__lkl__NR3264_fcntl as i64
    };
    (socket) => {
        lkl_sys::__lkl__NR_socket as i64
    };
    (accept4) => {
        lkl_sys::__lkl__NR_accept4 as i64
    };
    (openat) => {
        lkl_sys::__lkl__NR_openat as i64
    };
    (newfstatat) => {
        lkl_sys::__lkl__NR3264_fstatat as i64
    };
    (fstat) => {
        lkl_sys::__lkl__NR3264_fstat as i64
    };
    (statx) => {
        lkl_sys::__lkl__NR_statx as i64
    };
    (faccessat) => {
        lkl_sys::__lkl__NR_faccessat as i64
    };
}

/// Runs LKL system call `nr` (LKL's number) on a borrowed thread block.
pub(crate) fn lkl_call(nr: i64, args: [i64; 6]) -> i64 {
    if trampoline::forked_child() {
        // LKL runs in the parent only (the dispatch answers a fork child before this).
        return -i64::from(EBADF);
    }
    match world::enter() {
        Ok(guard) => {
            if !ensure_running() {
                return -i64::from(ENETDOWN);
            }
            let mut a = args;
            // SAFETY: the program's own arguments for this call, with its fds
            // translated; LKL runs in this address space and reads the program's memory
            // as the host kernel would.
            let r = unsafe { lkl_sys::lkl_syscall(nr, a.as_mut_ptr()) };
            drop(guard);
            r
        }
        Err(world::EnterError::Nested) => -i64::from(EINTR),
        Err(world::EnterError::NoShadow) => -i64::from(EAGAIN),
    }
}

/// The pid of this process image (set at start; a `fork` child's differs, and so does
/// a vfork child's, which shares our memory).
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

/// True in a vfork (or `CLONE_VM` without `CLONE_THREAD`) child: our memory, another
/// process.
fn vfork_child() -> bool {
    // SAFETY: getpid has no arguments.
    let pid = unsafe { syscall6(39, [0; 6]) } as i32;
    pid != OWNER_PID.load(Ordering::Relaxed)
}

/// LKL's number for x86-64 syscall `nr`.
fn lkl_nr(nr: u64) -> Option<i64> {
    match NR_MAP.get(nr as usize)?.load(Ordering::Relaxed) {
        0 => None,
        n => Some(i64::from(n - 1)),
    }
}

fn host(nr: u64, args: &[u64; 6]) -> (i64, Target) {
    // SAFETY: the program's own call, passed through unchanged.
    (unsafe { syscall6(nr, *args) }, Target::Host)
}

fn on_lkl(r: i64) -> (i64, Target) {
    (
        r,
        if r == -i64::from(ENOSYS) {
            Target::LklMissing
        } else {
            Target::Lkl
        },
    )
}

fn lkl_close(l: i64) {
    lkl_call(nr!(close), [l, 0, 0, 0, 0, 0]);
}

/// LKL's number of the call named `name` (a name the generic table has).
#[cfg(test)]
fn sys_nr(name: &str) -> i64 {
    lkl_sys::SYSCALL_DEFS
        .iter()
        .find(|d| d.name == name)
        .map_or(-1, |d| i64::from(d.nr))
}

/// Length of the NUL-terminated string at `p` (at most 4096).
fn path_of(p: u64) -> &'static [u8] {
    if p == 0 {
        return &[];
    }
    let mut n = 0;
    // SAFETY: the program passed a NUL-terminated path; we stop at 4096 bytes.
    while n < 4096 && unsafe { *((p + n as u64) as *const u8) } != 0 {
        n += 1;
    }
    // SAFETY: the `n` bytes just read.
    unsafe { core::slice::from_raw_parts(p as *const u8, n) }
}

/// Copies LKL's `struct stat` (generic layout) into the program's x86-64 one.
fn stat_to_x86(s: &lkl_sys::lkl_stat, out: u64) {
    let mut x = [0u64; 18];
    x[0] = s.st_dev;
    x[1] = s.st_ino;
    x[2] = u64::from(s.st_nlink);
    x[3] = u64::from(s.st_mode) | (u64::from(s.st_uid) << 32);
    x[4] = u64::from(s.st_gid);
    x[5] = s.st_rdev;
    x[6] = s.st_size as u64;
    x[7] = s.st_blksize as u64;
    x[8] = s.st_blocks as u64;
    x[9] = s.st_atime as u64;
    x[10] = s.st_atime_nsec;
    x[11] = s.st_mtime as u64;
    x[12] = s.st_mtime_nsec;
    x[13] = s.st_ctime as u64;
    x[14] = s.st_ctime_nsec;
    // SAFETY: the program gave a 144-byte struct stat.
    unsafe { core::ptr::write_unaligned(out as *mut [u64; 18], x) };
}

/// An LKL stat-family call into a temporary, converted into the program's buffer.
fn lkl_stat(nr: i64, mut args: [i64; 6], out_arg: usize) -> i64 {
    let mut s = lkl_sys::lkl_stat::default();
    let out = args[out_arg] as u64;
    args[out_arg] = &mut s as *mut lkl_sys::lkl_stat as i64;
    let r = lkl_call(nr, args);
    if r == 0 {
        stat_to_x86(&s, out);
    }
    r
}

/// At `exit_group`: what the host kernel does for its sockets, LKL must do before the
/// process (and LKL with it) ends. Waits up to [`DRAIN_LIMIT`] for the send queues
/// of the open LKL sockets to empty (`SIOCOUTQ`: unsent and unacknowledged bytes),
/// then closes them, so their data and FINs are out.
fn drain_at_exit() {
    let mut open: Vec<i64> = fds::in_range(0, u64::MAX).map(|(_, l)| l).collect();
    open.extend(
        LINGERING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    if open.is_empty() {
        return;
    }
    let _ = wait::in_world(|| {
        let call = |nr: i64, mut args: [i64; 6]| {
            // SAFETY: LKL calls on our own buffers (we are in our world).
            unsafe { lkl_sys::lkl_syscall(nr, args.as_mut_ptr()) }
        };
        let start = std::time::Instant::now();
        while start.elapsed() < DRAIN_LIMIT {
            let queued = open.iter().any(|&l| outq(l) > 0);
            if !queued {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for &l in &open {
            call(nr!(close), [l, 0, 0, 0, 0, 0]);
        }
        0
    });
}

/// LKL sockets the program closed while data was still queued: kept open by a
/// duplicate (after `shutdown(SHUT_WR)`, so the peer gets its FIN after the data as
/// with a close) until their queue is empty, so that an exit soon after does not cut
/// them off. Reaped at each close and drained at exit.
static LINGERING: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// `SIOCOUTQ` of LKL fd `l` (unsent and unacknowledged bytes), in our world; 0 for a
/// socket that is not connected (a `connect` still waiting for its SYN to be answered
/// has a queue of one).
fn outq(l: i64) -> i64 {
    let mut addr = [0u8; 128];
    let mut alen = addr.len() as i32;
    let mut args = [
        l,
        addr.as_mut_ptr() as i64,
        &mut alen as *mut i32 as i64,
        0,
        0,
        0,
    ];
    // SAFETY: getpeername into our buffers (we are in our world).
    if unsafe { lkl_sys::lkl_syscall(lkl_sys::__lkl__NR_getpeername as i64, args.as_mut_ptr()) }
        != 0
    {
        return 0;
    }
    let mut n = 0i32;
    let mut args = [l, 0x5411, &mut n as *mut i32 as i64, 0, 0, 0];
    // SAFETY: an ioctl writing one int into our buffer (we are in our world).
    let r = unsafe { lkl_sys::lkl_syscall(lkl_sys::__lkl__NR_ioctl as i64, args.as_mut_ptr()) };
    if r == 0 {
        i64::from(n)
    } else {
        0
    }
}

/// `close` of LKL fd `l`, lingering when data is still queued (see [`LINGERING`]).
fn close_lingering(l: i64) -> i64 {
    wait::in_world(|| {
        let call = |nr: i64, mut args: [i64; 6]| {
            // SAFETY: LKL calls on integers (we are in our world).
            unsafe { lkl_sys::lkl_syscall(nr, args.as_mut_ptr()) }
        };
        let mut lingering = LINGERING.lock().unwrap_or_else(|p| p.into_inner());
        lingering.retain(|&d| {
            let busy = outq(d) > 0;
            if !busy {
                call(nr!(close), [d, 0, 0, 0, 0, 0]);
            }
            busy
        });
        if outq(l) > 0 {
            let d = call(nr!(dup), [l, 0, 0, 0, 0, 0]);
            if d >= 0 {
                call(lkl_sys::__lkl__NR_shutdown as i64, [d, 1, 0, 0, 0, 0]);
                lingering.push(d);
            }
        }
        call(nr!(close), [l, 0, 0, 0, 0, 0])
    })
    .0
}

/// How long [`drain_at_exit`] waits at most.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// LKL does not signal the program: a write to a broken connection that LKL answers
/// with `EPIPE` raises `SIGPIPE` here, as the host kernel would (not with
/// `MSG_NOSIGNAL`).
#[cold]
fn sigpipe(nr: u64, a: &[u64; 6]) {
    let flags = match nr {
        44 | 307 => a[3],
        46 => a[2],
        1 | 20 | 18 | 296 | 328 => 0,
        _ => return,
    };
    if flags & libc::MSG_NOSIGNAL as u64 != 0 {
        return;
    }
    // SAFETY: getpid/gettid have no arguments; tgkill of our own thread.
    unsafe {
        let (pid, tid) = (syscall6(39, [0; 6]), syscall6(186, [0; 6]));
        syscall6(234, [pid as u64, tid as u64, libc::SIGPIPE as u64, 0, 0, 0]);
    }
}

/// `sendfile` from host fd `input` to LKL fd `out`: the host file is read in chunks
/// and written to LKL (LKL cannot read the host's files). Stops at a short write.
fn sendfile_to_lkl(out: i64, input: u64, offset: u64, count: usize) -> i64 {
    // The copy itself runs in our world, where the buffer may be allocated.
    crate::wait::in_world(|| {
        let mut buf = vec![0u8; count.clamp(1, 1 << 16)];
        let mut done = 0usize;
        while done < count {
            let want = (count - done).min(buf.len());
            let got = if offset != 0 {
                // SAFETY: the program's loff_t.
                let off = unsafe { *(offset as *const i64) };
                // SAFETY: pread into our buffer; the program's offset advanced after.
                let n = unsafe {
                    syscall6(
                        17,
                        [
                            input,
                            buf.as_mut_ptr() as u64,
                            want as u64,
                            off as u64,
                            0,
                            0,
                        ],
                    )
                };
                if n > 0 {
                    // SAFETY: as above.
                    unsafe { *(offset as *mut i64) = off + n };
                }
                n
            } else {
                // SAFETY: read into our buffer.
                unsafe { syscall6(0, [input, buf.as_mut_ptr() as u64, want as u64, 0, 0, 0]) }
            };
            if got <= 0 {
                return if done > 0 { done as i64 } else { got };
            }
            let mut args = [out, buf.as_ptr() as i64, got, 0, 0, 0];
            // SAFETY: writing our buffer to the LKL fd (we are already in our world).
            let w = unsafe { lkl_sys::lkl_syscall(nr!(write), args.as_mut_ptr()) };
            if w < 0 {
                return if done > 0 { done as i64 } else { w };
            }
            done += w as usize;
            if w < got {
                // Give back what LKL did not take.
                if offset != 0 {
                    // SAFETY: the program's loff_t, advanced by `got` above.
                    unsafe { *(offset as *mut i64) -= got - w };
                } else {
                    // SAFETY: lseek(input, -(got - w), SEEK_CUR) on the program's file.
                    unsafe { syscall6(8, [input, (w - got) as u64, 1, 0, 0, 0]) };
                }
                break;
            }
        }
        done as i64
    })
    .0
}

impl Lkl {
    /// True when the absolute path `p` names one of LKL's files we show the program.
    fn is_view(&self, p: &[u8]) -> bool {
        (self.resolv && p == b"/etc/resolv.conf")
            || (self.proc_net
                && (p.starts_with(b"/proc/net")
                    || p.starts_with(b"/proc/self/net")
                    || p.starts_with(b"/proc/sys/net")))
            || (self.sys_net && p.starts_with(b"/sys/class/net"))
    }

    fn path_view(&self, dirfd: u64, path: u64) -> bool {
        let p = path_of(path);
        (dirfd as i32 == AT_FDCWD as i32 || p.first() == Some(&b'/')) && self.is_view(p)
    }

    fn dispatch(&self, nr: u64, a: &[u64; 6]) -> (i64, Target) {
        let i = |k: usize| a[k] as i64;
        let forked = trampoline::forked_child();
        match nr {
            // A vfork child (posix_spawn, subprocess) shares our memory, fd table and
            // LKL, but not our host fds: its closes and dup2s are its own. They must
            // not close LKL fds, nor change the table, that the parent still uses.
            CLOSE | CLOSE_RANGE | DUP2 | DUP3 if !forked && vfork_child() => host(nr, a),
            SOCKET => {
                let lkl_family = matches!(a[0], 2 | 10 | 16 | 17);
                if !lkl_family {
                    return host(nr, a);
                }
                if forked {
                    return (-i64::from(EAFNOSUPPORT), Target::Interposer);
                }
                let l = lkl_call(nr!(socket), [i(0), i(1), i(2), 0, 0, 0]);
                if l < 0 {
                    return on_lkl(l);
                }
                (fds::adopt(l, 0, lkl_close), Target::Lkl)
            }
            RT_SIGACTION => (signals::sigaction(a), Target::Host),
            EXIT => {
                // A fork child never touches the shadows (their lock may have been
                // held by another thread of the parent at the fork).
                if !forked {
                    world::release_current();
                }
                host(nr, a)
            }
            EXIT_GROUP => {
                if !forked && STATE.load(Ordering::Acquire) == 1 {
                    drain_at_exit();
                }
                host(nr, a)
            }
            CLOSE_RANGE => {
                let hi = if a[1] as u32 == u32::MAX {
                    u64::MAX
                } else {
                    a[1] & 0xffff_ffff
                };
                if a[2] & 4 == 0 {
                    // Not CLOSE_RANGE_CLOEXEC: the LKL fds go too.
                    for (h, l) in fds::in_range(a[0] & 0xffff_ffff, hi) {
                        if !forked {
                            lkl_close(l);
                        }
                        fds::set(h, None);
                    }
                }
                host(nr, a)
            }
            DUP2 | DUP3 => self.dup2(nr, a, forked),
            POLL | PPOLL | SELECT | PSELECT6 => wait::dispatch(nr, a, forked),
            EPOLL_CTL if !forked && (fds::lkl_of(a[2]).is_some() || epoll::muxed(a[0])) => {
                epoll::ctl(a)
            }
            EPOLL_WAIT | EPOLL_PWAIT | EPOLL_PWAIT2 if !forked && epoll::muxed(a[0]) => {
                epoll::wait(nr, a)
            }
            CLOSE if !forked && epoll::muxed(a[0]) => {
                epoll::closed(a[0]);
                host(nr, a)
            }
            OPEN | OPENAT | OPENAT2 => {
                let (dirfd, path) = if nr == OPEN {
                    (AT_FDCWD as u64, a[0])
                } else {
                    (a[0], a[1])
                };
                if forked || !self.path_view(dirfd, path) {
                    return host(nr, a);
                }
                let (flags, mode) = match nr {
                    OPEN => (i(1), i(2)),
                    OPENAT => (i(2), i(3)),
                    // struct open_how { u64 flags; u64 mode; u64 resolve; }
                    // SAFETY: the program's open_how.
                    _ => unsafe {
                        let how = a[2] as *const u64;
                        (*how as i64, *how.add(1) as i64)
                    },
                };
                let l = lkl_call(nr!(openat), [AT_FDCWD, path as i64, flags, mode, 0, 0]);
                if l < 0 {
                    return on_lkl(l);
                }
                (fds::adopt(l, 0, lkl_close), Target::Lkl)
            }
            STAT | LSTAT if !forked && self.path_view(AT_FDCWD as u64, a[0]) => {
                let flags = if nr == LSTAT { 0x100 } else { 0 };
                on_lkl(lkl_stat(
                    nr!(newfstatat),
                    [AT_FDCWD, i(0), i(1), flags, 0, 0],
                    2,
                ))
            }
            NEWFSTATAT => {
                if let Some(l) = fds::lkl_of(a[0]) {
                    if a[3] & AT_EMPTY_PATH != 0 && path_of(a[1]).is_empty() {
                        if forked {
                            return (-i64::from(EBADF), Target::Interposer);
                        }
                        return on_lkl(lkl_stat(nr!(fstat), [l, i(2), 0, 0, 0, 0], 1));
                    }
                }
                if !forked && self.path_view(a[0], a[1]) {
                    return on_lkl(lkl_stat(
                        nr!(newfstatat),
                        [AT_FDCWD, i(1), i(2), i(3), 0, 0],
                        2,
                    ));
                }
                host(nr, a)
            }
            STATX => {
                let empty = a[2] & AT_EMPTY_PATH != 0 && path_of(a[1]).is_empty();
                match fds::lkl_of(a[0]) {
                    Some(_) if forked && empty => (-i64::from(EBADF), Target::Interposer),
                    Some(l) if empty => {
                        on_lkl(lkl_call(nr!(statx), [l, i(1), i(2), i(3), i(4), 0]))
                    }
                    _ if !forked && self.path_view(a[0], a[1]) => {
                        on_lkl(lkl_call(nr!(statx), [AT_FDCWD, i(1), i(2), i(3), i(4), 0]))
                    }
                    _ => host(nr, a),
                }
            }
            ACCESS | FACCESSAT | FACCESSAT2 => {
                let (dirfd, path, mode) = if nr == ACCESS {
                    (AT_FDCWD as u64, a[0], i(1))
                } else {
                    (a[0], a[1], i(2))
                };
                if forked || !self.path_view(dirfd, path) {
                    return host(nr, a);
                }
                on_lkl(lkl_call(
                    nr!(faccessat),
                    [AT_FDCWD, path as i64, mode, 0, 0, 0],
                ))
            }
            _ if FD_FIRST.contains(&nr) => match fds::lkl_of(a[0]) {
                None => host(nr, a),
                Some(l) => self.fd_call(nr, a, l, forked),
            },
            _ => host(nr, a),
        }
    }

    /// A call whose first argument is LKL fd `l` (program fd `a[0]`).
    fn fd_call(&self, nr: u64, a: &[u64; 6], l: i64, forked: bool) -> (i64, Target) {
        let i = |k: usize| a[k] as i64;
        if forked {
            // LKL runs in the parent only: its fds are dead here (documented).
            if nr == CLOSE {
                fds::set(i(0), None);
                return host(nr, a);
            }
            return (-i64::from(EBADF), Target::Interposer);
        }
        match nr {
            CLOSE => {
                let r = close_lingering(l);
                fds::set(i(0), None);
                host(nr, a);
                on_lkl(r)
            }
            FSTAT => on_lkl(lkl_stat(nr!(fstat), [l, i(1), 0, 0, 0, 0], 1)),
            READ | 19 | 45 | 47 | ACCEPT | ACCEPT4
                if signals::any_handler() && !blocking::dontwait(nr, a) =>
            {
                loop {
                    // Handlers of signals that came meanwhile have run when this returns.
                    match blocking::wait_readable(l) {
                        blocking::RESTART => continue,
                        0 => return self.fd_call_now(nr, a, l),
                        e => return (e, Target::Lkl),
                    }
                }
            }
            CONNECT if signals::any_handler() => {
                let mut started = false;
                loop {
                    match blocking::connect(l, a[1], a[2], started) {
                        blocking::RESTART => started = true,
                        r => return on_lkl(r),
                    }
                }
            }
            _ => self.fd_call_now(nr, a, l),
        }
    }

    /// [`Lkl::fd_call`] once any wait is over.
    fn fd_call_now(&self, nr: u64, a: &[u64; 6], l: i64) -> (i64, Target) {
        let i = |k: usize| a[k] as i64;
        match nr {
            ACCEPT | ACCEPT4 => {
                let flags = if nr == ACCEPT { 0 } else { i(3) };
                let n = lkl_call(nr!(accept4), [l, i(1), i(2), flags, 0, 0]);
                if n < 0 {
                    return on_lkl(n);
                }
                (fds::adopt(n, 0, lkl_close), Target::Lkl)
            }
            DUP => self.dup_lkl(l, 0),
            SENDFILE => match fds::lkl_of(a[1]) {
                Some(lin) => on_lkl(lkl_call(nr!(sendfile), [l, lin, i(2), i(3), 0, 0])),
                None => (sendfile_to_lkl(l, a[1], a[2], a[3] as usize), Target::Lkl),
            },
            COPY_FILE_RANGE => match fds::lkl_of(a[2]) {
                Some(lout) => on_lkl(lkl_call(
                    lkl_nr(nr).unwrap_or(-1),
                    [l, i(1), lout, i(3), i(4), i(5)],
                )),
                None => (-i64::from(libc::EXDEV), Target::Interposer),
            },
            FCNTL if a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC => self.dup_lkl(l, i(2)),
            _ => match lkl_nr(nr) {
                None => (-i64::from(ENOSYS), Target::LklMissing),
                Some(n) => {
                    let r = lkl_call(n, [l, i(1), i(2), i(3), i(4), i(5)]);
                    if r == -i64::from(libc::EPIPE) {
                        sigpipe(nr, a);
                    }
                    on_lkl(r)
                }
            },
        }
    }

    /// `dup`/`F_DUPFD` of LKL fd `l` to a program fd at or above `min`.
    fn dup_lkl(&self, l: i64, min: i64) -> (i64, Target) {
        let n = lkl_call(nr!(dup), [l, 0, 0, 0, 0, 0]);
        if n < 0 {
            return on_lkl(n);
        }
        (fds::adopt(n, min, lkl_close), Target::Lkl)
    }

    /// `dup2`/`dup3`, where either side may be LKL's.
    fn dup2(&self, nr: u64, a: &[u64; 6], forked: bool) -> (i64, Target) {
        let (old, new) = (a[0], a[1]);
        let (lo, ln) = (fds::lkl_of(old), fds::lkl_of(new));
        if lo.is_none() && ln.is_none() {
            return host(nr, a);
        }
        if old as i32 == new as i32 {
            return if nr == DUP3 {
                (-i64::from(EINVAL), Target::Interposer)
            } else {
                (new as i32 as i64, Target::Interposer)
            };
        }
        if forked && lo.is_some() {
            return (-i64::from(EBADF), Target::Interposer);
        }
        let fresh = match lo {
            Some(l) => {
                let n = lkl_call(nr!(dup), [l, 0, 0, 0, 0, 0]);
                if n < 0 {
                    return on_lkl(n);
                }
                Some(n)
            }
            None => None,
        };
        let flags = if fresh.is_some() {
            0o2000000
        } else if nr == DUP3 {
            a[2]
        } else {
            0
        };
        // SAFETY: dup3 of the old fd (or its placeholder, kept close-on-exec) onto the
        // program's new fd; old != new.
        let r = unsafe { syscall6(DUP3, [old, new, flags, 0, 0, 0]) };
        if r < 0 {
            if let Some(n) = fresh {
                lkl_close(n);
            }
            return (r, Target::Host);
        }
        if let Some(l) = ln {
            if !forked {
                lkl_close(l);
            }
        }
        fds::set(new as i32 as i64, fresh);
        (
            r,
            if fresh.is_some() {
                Target::Lkl
            } else {
                Target::Host
            },
        )
    }
}

impl trampoline::Backend for Lkl {
    fn syscall(&self, nr: u64, args: &[u64; 6]) -> i64 {
        self.dispatch(nr, args).0
    }

    fn call(&self, nr: u64, args: &[u64; 6]) -> (i64, Target) {
        self.dispatch(nr, args)
    }

    fn route(&self, nr: u64) -> Option<Route> {
        let views = self.resolv || self.proc_net || self.sys_net;
        match nr {
            // Without views, path calls matter only on an LKL dirfd (glibc's fstat is
            // newfstatat(fd, "", AT_EMPTY_PATH)).
            NEWFSTATAT | STATX if !views => Some(Route::FdArg),
            OPEN | OPENAT | OPENAT2 | STAT | LSTAT | ACCESS | FACCESSAT | FACCESSAT2 if !views => {
                None
            }
            SOCKET | RT_SIGACTION | CLOSE_RANGE | DUP2 | DUP3 | POLL | PPOLL | SELECT
            | EXIT_GROUP | PSELECT6 | EPOLL_CTL | OPEN | OPENAT | OPENAT2 | STAT | LSTAT
            | NEWFSTATAT | STATX | ACCESS | FACCESSAT | FACCESSAT2 => Some(Route::Hook),
            _ if FD_FIRST.contains(&nr) => Some(Route::FdArg),
            _ => None,
        }
    }

    fn mixed(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_boot_that_dies_says_how() {
        // wait statuses: killed by SIGABRT; exited with status 3
        let killed = abnormal_end(libc::SIGABRT);
        assert!(
            killed.starts_with(
                "LKL's trial boot was killed by signal 6 (Aborted) before it could report"
            ),
            "{killed}"
        );
        assert!(killed.contains("check boot_cmdline"), "{killed}");
        assert!(abnormal_end(3 << 8).starts_with("LKL's trial boot exited with status 3"));
    }

    #[test]
    fn stat_layout_matches_x86_64() {
        assert_eq!(core::mem::size_of::<libc::stat>(), 144);
        let s = lkl_sys::lkl_stat {
            st_dev: 1,
            st_ino: 2,
            st_mode: 0o140777,
            st_nlink: 3,
            st_uid: 4,
            st_gid: 5,
            st_size: 6,
            st_blksize: 7,
            st_blocks: 8,
            st_mtime: 9,
            ..Default::default()
        };
        // SAFETY: an all-zero struct stat is valid.
        let mut x: libc::stat = unsafe { core::mem::zeroed() };
        stat_to_x86(&s, &mut x as *mut libc::stat as u64);
        assert_eq!(
            (x.st_dev, x.st_ino, x.st_nlink, x.st_mode, x.st_uid, x.st_gid),
            (1, 2, 3, 0o140777, 4, 5)
        );
        assert_eq!(
            (x.st_size, x.st_blksize, x.st_blocks, x.st_mtime),
            (6, 7, 8, 9)
        );
    }

    #[test]
    fn routes() {
        // Every fd-first call has an LKL equivalent by name, except the x86-64-only
        // ones the backend answers itself or leaves to ENOSYS.
        // (fadvise64: LKL is built without CONFIG_ADVISE_SYSCALLS.)
        let no_lkl = ["getdents", "epoll_wait", "sendfile", "fadvise64"];
        for &nr in FD_FIRST {
            let name = trampoline::names::name(nr).unwrap_or("?");
            let name = lkl_name(name);
            let has = lkl_sys::SYSCALL_DEFS.iter().any(|d| d.name == name);
            assert!(has || no_lkl.contains(&name), "{nr} {name} has no LKL call");
        }
        let lkl = Lkl {
            resolv: true,
            proc_net: false,
            sys_net: false,
        };
        use trampoline::Backend;
        assert_eq!(lkl.route(SOCKET), Some(Route::Hook));
        assert_eq!(lkl.route(READ), Some(Route::FdArg));
        assert_eq!(lkl.route(OPENAT), Some(Route::Hook));
        assert_eq!(lkl.route(39), None);
        let plain = Lkl {
            resolv: false,
            proc_net: false,
            sys_net: false,
        };
        assert_eq!(plain.route(OPENAT), None);
        assert_eq!(plain.route(NEWFSTATAT), Some(Route::FdArg));
        assert!(lkl.is_view(b"/etc/resolv.conf") && !plain.is_view(b"/etc/resolv.conf"));
        assert!(!lkl.is_view(b"/proc/net/dev"));
        assert_eq!(sys_nr("close"), nr!(close));
        assert_eq!(sys_nr("dup3"), nr!(dup3));
        assert_eq!(sys_nr("newfstatat"), nr!(newfstatat));
        assert_eq!(sys_nr("newfstat"), nr!(fstat));
        assert_eq!(sys_nr("fcntl"), nr!(fcntl));
    }
}
