//! lklfuse: mount a file system image through FUSE, served by LKL.
//!
//! `lklfuse IMAGE MOUNTPOINT [-o type=FSTYPE,ro,part=N,mb=MEM,opts=...]`
//! boots Linux inside this process (the `lkl` crate), mounts the image
//! there (`lkl-fs`) and serves it to the host through FUSE (`fuser`), on
//! several threads at once. Like upstream's lklfuse (and every FUSE file
//! system) it goes to the background once mounted, unless `-f` or `-d`.
//! It unmounts cleanly on `fusermount3 -u MOUNTPOINT`, SIGTERM, SIGINT or
//! SIGHUP: the FUSE session ends, every open file is closed, the file
//! system is synced and unmounted inside LKL, and the kernel halts.
//!
//! See `docs/lklfuse.md` for the design (threads, node ids, shutdown).

mod fs;
mod nodes;
mod options;
mod sys;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use fuser::{Config, MountOption, Session, SessionACL};

use crate::fs::{LklFs, Shared};
use crate::nodes::{Nodes, PathFd};
use crate::options::Options;

/// The version upstream's `-V` reports is its own; this is ours.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Serving threads when `threads=` is not given: four. Since the kernel
/// port hands the CPU straight to a waiting thread (no idle bounce), four
/// threads untar 10 000 small files about 2x faster than one and stream
/// as fast (docs/lklfuse.md, "Threads").
const DEFAULT_THREADS: usize = 4;

#[derive(Parser, Debug)]
#[command(
    name = "lklfuse",
    version = VERSION,
    about = "Mount a file system image through FUSE, served by Linux running inside this process (LKL).",
    after_help = "lklfuse options (-o, comma-separated, backslash escapes ',' and '='):
    type=FSTYPE        file system type (ext4, btrfs, xfs, vfat, ...); detected if omitted
    ro                 mount read-only; the image is opened read-only and never written
    part=N             mount partition N (1-based, MBR or GPT)
    mb=MEM             the kernel's memory in MiB (default 256, at least 16); each inode
                       the host caches holds about 1.6 KiB of it
    opts=OPTIONS       the file system's own mount options (e.g. opts=data\\=journal)
    log=FILE           where messages go once in the background (default: discarded)
    max_nodes=N        inodes the host may keep cached (each held open inside LKL) before
                       the oldest files are given back (default: mb x 128)
    threads=N          serving threads (default 4; 1 to 64)
    writeback          let the host kernel cache writes (FUSE write-back cache); on by default,
                       nowriteback turns it off

FUSE options (-o): allow_other, allow_root, default_permissions, auto_unmount,
    fsname=NAME, subtype=NAME, dev, nodev, suid, nosuid, exec, noexec, atime,
    noatime, dirsync, sync, async.

Unmount with `fusermount3 -u MOUNTPOINT` (or SIGTERM/SIGINT to lklfuse):
everything is flushed to the image before lklfuse exits.

Examples:
    lklfuse disk.img /mnt/img -o type=ext4
    lklfuse disk.img /mnt/img -o ro,part=2
    lklfuse -f disk.img /mnt/img -o type=btrfs,opts=compress\\=zstd"
)]
struct Cli {
    /// The image file (or block device).
    image: PathBuf,
    /// An existing directory to mount on.
    mountpoint: PathBuf,
    /// Mount options, comma-separated (see below). May be repeated.
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    options: Vec<String>,
    /// Stay in the foreground.
    #[arg(short = 'f')]
    foreground: bool,
    /// Debug: foreground, every kernel message, and a line per failed request.
    #[arg(short = 'd')]
    debug: bool,
    /// Serve requests on one thread (as upstream; the default is 4).
    #[arg(short = 's')]
    single_thread: bool,
}

/// Everything decided before the kernel boots.
struct Plan {
    image: PathBuf,
    mountpoint: PathBuf,
    opts: Options,
    /// The `-o log=` file, opened (so a bad path fails before the image
    /// is touched).
    log: Option<std::fs::File>,
    read_only: bool,
    threads: usize,
    debug: bool,
}

/// Checks everything it can before the image is opened: the options, the
/// mount point (an existing directory, not above the image), the image's
/// type (a fifo, socket or character device is refused before any read),
/// the kernel's memory against the host's, the log file (opened here;
/// never the image).
fn plan(cli: Cli) -> Result<Plan> {
    let opts = Options::parse(&cli.options)?;
    let host_mb = host_memory_mb();
    if host_mb > 0 && opts.mb > host_mb {
        bail!(
            "-o mb={} is too large: this host has {host_mb} MiB of memory (the default is {})",
            opts.mb,
            options::DEFAULT_MB
        );
    }
    let meta = std::fs::metadata(&cli.mountpoint)
        .with_context(|| format!("mount point {}", cli.mountpoint.display()))?;
    if !meta.is_dir() {
        bail!(
            "mount point {} is not a directory: give an existing directory",
            cli.mountpoint.display()
        );
    }
    let image_meta =
        std::fs::metadata(&cli.image).with_context(|| format!("image {}", cli.image.display()))?;
    lkl::check_image_type(&cli.image, &image_meta)?;
    // An image under the mount point would be hidden by the mount, and
    // reaching it by its path would go through the mount itself.
    if let (Ok(img), Ok(mnt)) = (
        std::fs::canonicalize(&cli.image),
        std::fs::canonicalize(&cli.mountpoint),
    ) {
        if img.starts_with(&mnt) {
            bail!(
                "image {} is under the mount point {}: the mount would hide it; choose a mount \
                 point outside the image's directory",
                cli.image.display(),
                cli.mountpoint.display()
            );
        }
    }
    let log = match &opts.log {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("-o log={}: cannot open the log file", p.display()))?;
            let id = f.metadata().map(|m| lkl_fs::host::FileId::from_meta(&m));
            if let (Ok(id), Some(img)) = (id, lkl_fs::host::FileId::of(&cli.image)) {
                if id.same(&img) {
                    bail!(
                        "-o log={} is the image {} itself: messages would be written into it",
                        p.display(),
                        cli.image.display()
                    );
                }
            }
            Some(f)
        }
        None => None,
    };
    let mut read_only = opts.read_only;
    if !read_only && !writable(&cli.image) {
        eprintln!(
            "lklfuse: {} is not writable: mounting it read-only",
            cli.image.display()
        );
        read_only = true;
    }
    let threads = if cli.single_thread {
        1
    } else {
        opts.threads.unwrap_or(DEFAULT_THREADS)
    };
    Ok(Plan {
        image: cli.image,
        mountpoint: cli.mountpoint,
        opts,
        log,
        read_only,
        threads,
        debug: cli.debug,
    })
}

/// The host's memory in MiB (0 if unknown).
fn host_memory_mb() -> u64 {
    // SAFETY: sysinfo fills the zeroed struct it is given.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid sysinfo struct to write.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    (info.totalram as u64).saturating_mul(u64::from(info.mem_unit)) >> 20
}

/// Whether this process may open `path` for writing.
fn writable(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

/// Tells the waiting parent how the mount went (in the background).
struct Ready(Option<std::fs::File>);

impl Ready {
    /// Sends `msg` to the parent; false if there is none (foreground).
    fn send(&mut self, msg: &str) -> bool {
        match self.0.take() {
            Some(mut f) => {
                let _ = f.write_all(msg.as_bytes());
                true
            }
            None => false,
        }
    }
}

/// Goes to the background: forks; the parent waits until the child has
/// mounted (or failed) and exits with its verdict. Returns the pipe the
/// child reports on. Must run before any thread is started.
fn daemonize() -> Result<Ready> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: they were just made by pipe2.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (the kernel boots in the child).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(rd);
            // SAFETY: setsid has no memory effects.
            unsafe { libc::setsid() };
            Ok(Ready(Some(std::fs::File::from(wr))))
        }
        child => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            if msg == "ok" {
                std::process::exit(0);
            }
            // A failure: wait until the child has let go of the image (its
            // lock) and the mount point, so nothing is left half done.
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is written.
            unsafe { libc::waitpid(child, &mut status, 0) };
            if msg.is_empty() {
                msg = "lklfuse: the background process ended before mounting".into();
            }
            eprintln!("{msg}");
            std::process::exit(1);
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null (or the log file).
fn detach_stdio(log: Option<&std::fs::File>) -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    let out = match log {
        Some(f) => f.try_clone().context("the log file")?,
        None => null.try_clone()?,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto the standard descriptors; both sources are open.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(out.as_raw_fd(), 1);
        libc::dup2(out.as_raw_fd(), 2);
    }
    let _ = std::env::set_current_dir("/");
    Ok(())
}

/// Blocks the termination signals in this thread, and so in every thread
/// started from now on; [`signal_thread`] takes them with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: a sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// Waits for a termination signal and unmounts the FUSE file system,
/// which ends the session; the main thread then shuts LKL down.
fn signal_thread(set: libc::sigset_t, mut unmounter: fuser::SessionUnmounter, mnt: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("lklfuse-signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` holds the blocked signals; sigwait writes `sig`.
            unsafe { libc::sigwait(&set, &mut sig) };
            eprintln!("lklfuse: signal {sig}: unmounting {}", mnt.display());
            if unmounter.unmount().is_err() {
                // Busy: detach it, so the session ends once it is unused.
                lazy_unmount(&mnt);
            }
        });
}

fn lazy_unmount(mnt: &Path) {
    let _ = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg("--")
        .arg(mnt)
        .stderr(std::process::Stdio::null())
        .status();
}

fn run(plan: Plan, ready: &mut Ready) -> Result<()> {
    let set = block_signals();
    let mut mopts = if plan.read_only {
        lkl_fs::MountOptions::read_only(&plan.image)
    } else {
        lkl_fs::MountOptions::read_write(&plan.image)
    };
    mopts.partition = plan.opts.partition;
    mopts.fstype = plan.opts.fstype.clone();
    mopts.options = plan.opts.fs_opts.clone();
    mopts.memory = plan.opts.mb << 20;
    mopts.printk = plan.debug;
    let mounted = lkl_fs::Mounted::open(&mopts).map_err(explain)?;
    let result = serve(&plan, &mounted, set, ready);
    // Unmount inside LKL first: once umount_disk returns, every block is
    // in the image. Then halt, under a watchdog: the port's halt hangs now
    // and then (a spin in syscalls_abort_blocked, see docs/lklfuse.md);
    // with the image already complete, exiting is then safe.
    let flushed = (|| {
        if !plan.read_only {
            lkl_fs::ops::sync_fs(mounted.path())?;
        }
        lkl::umount_disk(mounted.path()).map_err(lkl_fs::FsError::from)
    })()
    .context("unmounting inside LKL");
    let code = i32::from(result.is_err() || flushed.is_err());
    let _ = std::thread::Builder::new()
        .name("lklfuse-halt-watchdog".into())
        .spawn(move || {
            std::thread::sleep(HALT_GRACE);
            eprintln!(
                "lklfuse: the kernel did not halt within {HALT_GRACE:?}; the image was already \
                 unmounted inside LKL{}: exiting",
                if code == 0 { " and is complete" } else { "" }
            );
            std::process::exit(code);
        });
    let closed = mounted.close();
    match (result, flushed) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        // Its own unmount fails (already done); only the halt matters.
        (Ok(()), Ok(())) => match closed {
            Err(lkl_fs::FsError::Kernel(e)) => Err(anyhow!("halting the kernel: {e}")),
            _ => Ok(()),
        },
    }
}

/// How long the kernel may take to halt once the image is unmounted.
const HALT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// An `lkl-fs` error in lklfuse's terms (its options, not fs2tar's).
fn explain(e: lkl_fs::FsError) -> anyhow::Error {
    use lkl_fs::FsError;
    let part = |p: Option<u32>| p.map(|p| format!(" partition {p}")).unwrap_or_default();
    match e {
        FsError::UnknownFs {
            path,
            partition,
            partitioned,
        } => anyhow!(
            "cannot detect the file system of {}{}: no ext2/ext3/ext4, btrfs, xfs or vfat \
             signature; give the type with -o type=FSTYPE{}",
            path.display(),
            part(partition),
            if partitioned {
                " (the image has a partition table: choose a partition with -o part=N)"
            } else {
                ""
            }
        ),
        FsError::Mount {
            path,
            partition,
            fstype,
            errno,
            options,
            kernel,
        } => anyhow!(
            "cannot mount {}{} as {fstype}: {errno}{}{}",
            path.display(),
            part(partition),
            lkl_fs::said(&kernel),
            lkl_fs::hint(errno, options.as_deref(), &kernel, "-d")
        ),
        e => e.into(),
    }
}

/// Serves the mounted file system until the FUSE mount goes away.
fn serve(
    plan: &Plan,
    mounted: &lkl_fs::Mounted,
    set: libc::sigset_t,
    ready: &mut Ready,
) -> Result<()> {
    // One O_PATH descriptor per node the host knows; room for many.
    let _ = sys::set_nofile(1 << 20);
    match lkl::mkdir("/proc", 0o555) {
        Ok(()) | Err(lkl::Errno::EEXIST) => {}
        Err(e) => bail!("mkdir /proc inside LKL: {e}"),
    }
    lkl::mount("proc", "/proc", "proc", 0, None)
        .map_err(|e| anyhow!("mount /proc inside LKL: {e}"))?;
    let root_flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let root = sys::openat(sys::AT_FDCWD, mounted.path().as_os_str(), root_flags, 0)
        .map_err(|e| anyhow!("open {} inside LKL: {e}", mounted.path().display()))?;
    let root = PathFd(root);
    // Up to two descriptors per node (its O_PATH one and its data one):
    // the descriptor table grows by doubling, each time one contiguous
    // allocation in this kernel (no MMU), which can fail with ENOMEM once
    // its memory is fragmented by the page cache. Grow it now instead.
    sys::reserve_fds(
        root.0,
        max_nodes(plan).saturating_mul(2).saturating_add(1024),
    );
    let st = sys::fstat(root.0).map_err(|e| anyhow!("stat the root inside LKL: {e}"))?;
    let shared = Arc::new(Shared {
        nodes: Nodes::default(),
        handles: Default::default(),
    });
    shared.nodes.set_root(root, st.st_dev, st.st_ino);
    let served = serve_nodes(plan, mounted, set, ready, &shared);
    // Whatever happened, nothing stays open inside LKL: the unmount that
    // follows must find the file system unused.
    shared.close_all();
    served
}

/// Nodes the host may keep cached (`-o max_nodes=`, default `mb` x 128).
fn max_nodes(plan: &Plan) -> usize {
    plan.opts
        .max_nodes
        .unwrap_or((plan.opts.mb as usize).saturating_mul(128))
}

/// The FUSE session over `shared`'s nodes, until it ends.
fn serve_nodes(
    plan: &Plan,
    mounted: &lkl_fs::Mounted,
    set: libc::sigset_t,
    ready: &mut Ready,
    shared: &Arc<Shared>,
) -> Result<()> {
    let mut mount = vec![
        MountOption::FSName(plan.image.display().to_string()),
        MountOption::Subtype(format!("lklfuse.{}", mounted.fstype())),
    ];
    if plan.read_only {
        mount.push(MountOption::RO);
    }
    mount.extend(plan.opts.mount.iter().cloned());
    let mut config = Config::default();
    config.mount_options = mount;
    config.acl = if plan.opts.allow_other {
        SessionACL::All
    } else if plan.opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(plan.threads);
    config.clone_fd = plan.threads > 1;
    if plan.debug {
        fs::DEBUG.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let writeback = plan.opts.writeback && !plan.read_only;
    // Resolved before the mount: afterwards a lookup would be a FUSE
    // request, which nobody serves yet.
    let resolved = std::fs::canonicalize(&plan.mountpoint).unwrap_or(plan.mountpoint.clone());
    let fs = LklFs::new(shared.clone(), writeback, resolved);
    let mut session =
        Session::new(fs, &plan.mountpoint, &config).with_context(|| fuse_hint(&plan.mountpoint))?;
    signal_thread(set, session.unmount_callable(), plan.mountpoint.clone());
    let trimmer = Trimmer::start(shared.clone(), session.notifier(), max_nodes(plan));
    let served = (|| {
        if plan.log.is_some() || ready_was_background() {
            detach_stdio(plan.log.as_ref())?;
        }
        ready.send("ok");
        session.run().context("serving FUSE requests")
    })();
    trimmer.stop();
    served
}

/// Keeps the node table bounded: every inode the host caches is held open
/// inside LKL, and the host forgets inodes only under its own memory
/// pressure. Past `max` nodes, the least recently looked-up files are
/// invalidated in the host's dentry cache (`FUSE_NOTIFY_INVAL_ENTRY`), so
/// the host evicts them and sends `forget`. It runs on a thread of its own:
/// a notification takes the directory's lock in the host kernel, which a
/// request being served may hold.
struct Trimmer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the trimmer looks at the table.
const TRIM_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

impl Trimmer {
    fn start(shared: Arc<Shared>, notifier: fuser::Notifier, max: usize) -> Trimmer {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lklfuse-trim".into())
            .spawn(move || {
                use std::sync::atomic::Ordering::Relaxed;
                while !flag.load(Relaxed) {
                    std::thread::sleep(TRIM_PERIOD);
                    let len = shared.nodes.len();
                    if len <= max {
                        continue;
                    }
                    let victims = shared.nodes.victims(len - max * 3 / 4);
                    if fs::DEBUG.load(Relaxed) {
                        eprintln!("lklfuse: {len} nodes cached: giving back {}", victims.len());
                    }
                    for (parent, name) in victims {
                        if flag.load(Relaxed) {
                            break;
                        }
                        let _ = notifier.inval_entry(fuser::INodeNo(parent), &name);
                    }
                }
            })
            .ok();
        Trimmer { stop, thread }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static BACKGROUND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn ready_was_background() -> bool {
    BACKGROUND.load(std::sync::atomic::Ordering::Relaxed)
}

/// What to check when the FUSE mount fails.
fn fuse_hint(mnt: &Path) -> String {
    let mut hint = format!("cannot mount FUSE on {}", mnt.display());
    if !Path::new("/dev/fuse").exists() {
        hint += " (/dev/fuse is missing: `modprobe fuse` as root)";
    } else if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
        && which("fusermount3").is_none()
    {
        hint += " (/dev/fuse is not accessible and fusermount3 is missing: apt-get install fuse3)";
    }
    hint
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// The whole program: parses the command line, mounts, serves, unmounts.
/// (A library function so that tests can build the binary under their
/// own name, `CARGO_BIN_EXE_*`.)
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let background = !cli.foreground && !cli.debug;
    let plan = match plan(cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lklfuse: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut ready = if background {
        BACKGROUND.store(true, std::sync::atomic::Ordering::Relaxed);
        match daemonize() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("lklfuse: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        Ready(None)
    };
    match run(plan, &mut ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("lklfuse: {e:#}");
            if !ready.send(&msg) {
                eprintln!("{msg}");
            }
            ExitCode::FAILURE
        }
    }
}
