//! Boot: the configuration loaded and checked with a trial boot before the program
//! runs ([`start`]), and LKL booted in each process at its first LKL call
//! ([`ensure_running`]).

use core::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{dispatch, kernel, passthrough, pathcall, paths, table, world, Error, Lkl};

static BACKEND: OnceLock<Lkl> = OnceLock::new();
/// The configuration, for a boot at the first LKL call.
static CONFIG: OnceLock<lkl_hijack_config::Config> = OnceLock::new();
/// The kernel, never halted while the program runs (exit ends it with the process).
static KERNEL: OnceLock<lkl::Kernel> = OnceLock::new();
/// 0: not booted yet, 1: running, 2: the boot failed.
static STATE: AtomicU8 = AtomicU8::new(0);
static BOOT_LOCK: Mutex<()> = Mutex::new(());

/// True once LKL runs in this process.
pub(crate) fn running() -> bool {
    STATE.load(Ordering::Acquire) == 1
}

/// What [`start`] did.
#[derive(Debug)]
pub struct Started {
    /// The backend to install.
    pub backend: &'static Lkl,
    /// Warnings about the configuration (unknown keys).
    pub warnings: Vec<String>,
    /// The configuration file used, if any.
    pub file: Option<std::path::PathBuf>,
    /// The shared kernel's address, for `--shared-kernel` of exec'd images (`None`: a
    /// private kernel).
    pub shared: Option<String>,
}

/// How [`start`] reaches LKL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// The first process of the tree: start the tree's kernel process.
    SharedFirst,
    /// An exec'd process of the tree: the kernel process's address (`PID:FD:ADDR`).
    SharedChild(&'a str),
    /// A private LKL in each process, booted at its first LKL call; `first` checks the
    /// configuration with a trial boot before the program runs.
    Private {
        /// The first process (the one the user started).
        first: bool,
    },
}

/// Loads the hijack configuration (`LKL_HIJACK_CONFIG_FILE`, `./lkl-hijack.json` or the
/// `LKL_HIJACK_*` variables) and prepares the backend.
///
/// With the shared kernel ([`Mode::SharedFirst`]), the kernel process boots LKL now and
/// serves every process of the tree; a bad configuration or a failed boot is reported
/// here, before the program runs. An exec'd process ([`Mode::SharedChild`]) maps the
/// kernel process's window and takes back its LKL fds.
///
/// With a private kernel, LKL itself boots at the first call that goes to LKL: most
/// processes of a shell never open a socket, and a parent that held the tap would keep
/// its children from booting on it; the first process checks the configuration with a
/// trial boot in a forked child.
///
/// `disks` (`lkl-run`'s `--root` and `--mount`) and `volumes` (`--volume`: host
/// directories mounted inside LKL) come after the configuration's own. Both need the
/// shared kernel: with [`Mode::Private`] any (given here or in the configuration) is
/// refused; an exec'd process ([`Mode::SharedChild`]) takes none (it reads the tree's
/// file-system view from the window).
///
/// `meanwhile` is work of the caller's that needs no kernel: with
/// [`Mode::SharedFirst`] it runs on this thread while the kernel process boots (after
/// the fork), otherwise before this returns.
///
/// Call once, from `lkl-run`'s own world, before the program runs, while it has one
/// thread.
///
/// # Errors
/// [`Error`]: a bad configuration, a missing device, a failed boot, a kernel process
/// that is gone; [`Error::Config`] for a disk or volume at a path another has;
/// [`Error::Trial`] for disks or volumes with a private kernel.
pub fn start(
    mode: Mode<'_>,
    disks: Vec<lkl_hijack_config::Disk>,
    volumes: Vec<lkl_hijack_config::Volume>,
    meanwhile: &mut dyn FnMut(),
) -> Result<Started, Error> {
    let loaded = lkl_hijack_config::load()?;
    let mut config = loaded.config;
    config.add_disks(disks)?;
    config.add_volumes(volumes)?;
    if matches!(mode, Mode::Private { .. })
        && (!config.disks.is_empty() || !config.volumes.is_empty())
    {
        return Err(Error::Trial(
            "disks and volumes (the configuration's \"disks\" and \"volumes\", --root, \
             --mount, --volume) need the kernel shared by the whole tree: drop \
             --private-kernel, or the disks and volumes"
                .into(),
        ));
    }
    let mut warnings = loaded.warnings;
    let mut shared = None;
    match mode {
        Mode::Private { first } => {
            meanwhile();
            if first {
                trial_boot(&config)?;
            }
        }
        Mode::SharedFirst => {
            let started = lkl_shared_kernel::server::spawn(&config, meanwhile)?;
            let view = started.window.fs_view();
            paths::init(&view);
            passthrough::init(&view);
            warnings.extend(started.warnings);
            shared = Some(started.spec.to_string());
        }
        Mode::SharedChild(spec) => {
            meanwhile();
            let spec: lkl_shared_kernel::Spec = spec.parse()?;
            let window = lkl_shared_kernel::window::Window::attach(&spec)?;
            let view = window.fs_view();
            paths::init(&view);
            passthrough::init(&view);
            lkl_shared_kernel::client::init(window, spec.pid);
            shared = Some(spec.to_string());
        }
    }
    table::map_lkl_numbers();
    if !world::init() {
        return Err(Error::Shadow);
    }
    dispatch::set_owner_pid();
    if shared.is_some() {
        kernel::set_shared();
        STATE.store(1, Ordering::Release);
        if matches!(mode, Mode::SharedChild(_)) {
            let r = kernel::exec_done();
            if r < 0 {
                return Err(Error::Kernel(lkl_shared_kernel::Error::Boot(format!(
                    "the kernel process refused this image (error {})",
                    -r
                ))));
            }
        }
        pathcall::init_cwd();
    }
    let has = |m: &str| config.mount.iter().any(|x| x == m);
    let backend = BACKEND.get_or_init(|| Lkl {
        resolv: config.nameserver.is_some(),
        proc_net: has("proc"),
        sys_net: has("sysfs"),
    });
    let _ = CONFIG.set(config);
    Ok(Started {
        backend,
        warnings,
        file: loaded.file,
        shared,
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
    // SAFETY: the pipe's read end is ours from here on (closed with the File).
    let mut from = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(p[0])
    });
    let _ = std::io::Read::read_to_end(&mut from, &mut msg);
    drop(from);
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
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
}
