//! Start-up before `main` and the end at exit.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use lkl_hijack_config::{Config, Debug, SingleCpu};

use crate::fds::{host, ACTIVE, FORKED, LKL_FD_OFFSET};

/// The running kernel, halted at exit.
static KERNEL: Mutex<Option<lkl::Kernel>> = Mutex::new(None);

/// What the exit handler needs of the configuration.
static AT_EXIT: Mutex<Option<ExitPlan>> = Mutex::new(None);

struct ExitPlan {
    debug: Debug,
    dump: Vec<String>,
    /// Copies of stdout and stderr made at start: programs may close
    /// theirs in an exit handler that runs before ours (coreutils'
    /// `close_stdout` does).
    out: Option<std::fs::File>,
    err: Option<std::fs::File>,
}

/// The lowest number of the library's own copies of the program's fds:
/// high, to stay out of the program's way, and below [`crate::LKL_FD_OFFSET`].
const SAVED_FD_MIN: i32 = 400;

/// A close-on-exec copy of `fd`, numbered from [`SAVED_FD_MIN`].
fn save_fd(fd: i32) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    let copy = host!(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, SAVED_FD_MIN) as i32;
    // SAFETY: `copy` is a new descriptor that nothing else owns.
    (copy >= 0).then(|| unsafe { std::fs::File::from_raw_fd(copy) })
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    if let Err(e) = start() {
        eprintln!("lkl-hijack: {e}");
        std::process::exit(1);
    }
}

/// Loads the configuration (unknown keys are warnings, as upstream's
/// README promises), boots LKL with [`lkl_boot::start`], and sleeps
/// `delay_main`.
fn start() -> Result<(), String> {
    let loaded = lkl_hijack_config::load().map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        eprintln!("lkl-hijack: warning: {w}");
    }
    let mut config = loaded.config;
    if !config.disks.is_empty() {
        eprintln!(
            "lkl-hijack: warning: disks: ignored: the hijack library leaves files to the host; \
             mount images inside LKL with LKL_HIJACK_ZPOLINE=1 or lkl-run --zpoline (see docs/zpoline.md)"
        );
        config.disks.clear();
    }
    limit_host_fds();
    // As upstream: before the kernel starts (time to attach a debugger).
    if config.debug.has(Debug::WAIT_ENTER) {
        eprintln!("lkl-hijack: debug 0x200: press Enter to continue");
        let mut b = [0u8; 1];
        while host!(libc::SYS_read, libc::STDIN_FILENO, b.as_mut_ptr(), 1usize) == 1
            && b[0] != b'\n'
        {}
    }
    if config.single_cpu == SingleCpu::KernelAndPollThreads {
        lkl_fdmux::set_waiter_affinity(first_cpu());
    }
    let started = lkl_boot::start(&config).map_err(|e| e.to_string())?;
    for w in &started.warnings {
        eprintln!("lkl-hijack: warning: {w}");
    }
    if config.debug.enabled() {
        debug_summary(&config, &started.ifindexes);
    }
    *KERNEL.lock().unwrap_or_else(|p| p.into_inner()) = Some(started.kernel);
    *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()) = Some(ExitPlan {
        debug: config.debug,
        dump: config.dump.clone(),
        out: save_fd(libc::STDOUT_FILENO),
        err: save_fd(libc::STDERR_FILENO),
    });
    // SAFETY: `at_exit` is an `extern "C" fn()` that lives as long as the
    // process (this library is never unloaded while the program runs).
    if unsafe { libc::atexit(at_exit) } != 0 {
        return Err("atexit failed".into());
    }
    // SAFETY: `forked` is an `extern "C" fn()` living as long as the process.
    unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    ACTIVE.store(true, Ordering::Release);
    if let Some(d) = config.delay_main {
        std::thread::sleep(d);
    }
    Ok(())
}

/// Host fds at or above [`LKL_FD_OFFSET`] would be taken for LKL's: lower
/// the soft `RLIMIT_NOFILE` to it, so the host kernel never hands one out
/// (`EMFILE` instead of a wrong fd).
fn limit_host_fds() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0
        && r.rlim_cur > LKL_FD_OFFSET as libc::rlim_t
    {
        r.rlim_cur = LKL_FD_OFFSET as libc::rlim_t;
        // SAFETY: a live rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

/// The first CPU this thread may run on, as a one-CPU set.
fn first_cpu() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a live set of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return None;
    }
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: reads a bit of a live set below its size.
    let cpu = (0..bits).find(|&c| unsafe { libc::CPU_ISSET(c, &set) })?;
    // SAFETY: as above.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sets a bit of a live set below its size.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    Some(one)
}

/// With `debug` on: what was set up, on stderr.
fn debug_summary(config: &Config, ifindexes: &[i32]) {
    for (i, (iface, ix)) in config.interfaces.iter().zip(ifindexes).enumerate() {
        eprintln!(
            "lkl-hijack: interfaces[{i}]: {} {:?} is LKL ifindex {ix}",
            iface.backend.type_name(),
            iface.backend
        );
    }
    eprintln!("lkl-hijack: LKL is up; running the program");
}

/// In the child of `fork`: LKL's threads are not there.
extern "C" fn forked() {
    FORKED.store(true, Ordering::Release);
    ACTIVE.store(false, Ordering::Release);
    lkl_fdmux::forget_waiter_after_fork();
    crate::wait::forget_epolls_after_fork();
}

/// At exit: `dump`, the `debug` 0x100 pause, then halt.
extern "C" fn at_exit() {
    if FORKED.load(Ordering::Acquire) {
        // The kernel belongs to the parent.
        return;
    }
    let plan = AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(mut plan) = plan {
        if let Some(out) = &mut plan.out {
            for path in &plan.dump {
                dump(out, path);
            }
        }
        if plan.debug.has(Debug::PAUSE_AT_EXIT) {
            let mut err: Box<dyn Write> = match plan.err.take() {
                Some(f) => Box::new(f),
                None => Box::new(std::io::stderr()),
            };
            let _ = writeln!(
                err,
                "lkl-hijack: debug 0x100: the program has exited; LKL stays up for inspection \
                 (pid {}); end it with a signal (Ctrl-C, kill)",
                std::process::id()
            );
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        }
    }
    ACTIVE.store(false, Ordering::Release);
    let kernel = KERNEL.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(k) = kernel {
        halt_bounded(k);
    }
}

/// How long the exit handler waits for the kernel to halt.
const HALT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Halts the kernel on a thread of its own and waits up to
/// [`HALT_TIMEOUT`]: the process is exiting either way, and a halt that
/// does not finish (seen rarely, with two interfaces and IPv6: the kernel
/// waiting for a system call to be aborted) must not keep the program from
/// ending with its own status.
fn halt_bounded(kernel: lkl::Kernel) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("lkl-halt".into())
        .spawn(move || {
            let _ = tx.send(kernel.halt());
        });
    let msg = match spawned {
        Err(e) => format!("cannot start the halt: {e}"),
        Ok(_) => match rx.recv_timeout(HALT_TIMEOUT) {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("halt: {e}"),
            Err(_) => format!("LKL did not halt within {HALT_TIMEOUT:?}; exiting without it"),
        },
    };
    eprintln!("lkl-hijack: {msg}");
}

/// Upstream's `dump` key: prints LKL file `path` (e.g. a `/proc/sys`
/// entry, with `mount` giving `/proc`) to stdout.
fn dump(out: &mut std::fs::File, path: &str) {
    let text = match lkl_net::read_file(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read: {e})\n"),
    };
    // Flush the program's own buffered output first, to keep the order.
    let _ = std::io::stdout().flush();
    let _ = write!(out, "{path}: {text}");
    if !text.ends_with('\n') {
        let _ = writeln!(out);
    }
}
