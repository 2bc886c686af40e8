//! The `lkl-run` command line: parse, load, interpose, jump.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};

use crate::elf::{self, Image};
use crate::files::{Files, Opened};
use crate::map;
use crate::stack::{self, at, AuxVal};
use crate::Error;

/// Which syscall backend serves the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// LKL serves sockets and their fds (booted from the hijack configuration); the
    /// rest goes to the host kernel. See `docs/zpoline.md` for the table.
    Lkl,
    /// Pass every syscall to the host kernel.
    Host,
}

/// When Syscall User Dispatch is armed (see `trampoline::sud`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SudMode {
    /// At the first writable+executable mapping.
    Lazy,
    /// From the first instruction.
    Always,
    /// Never.
    Never,
}

/// Run a Linux x86-64 program with every system call interposed.
#[derive(Debug, Parser)]
#[command(name = "lkl-run", version, about)]
pub struct Cli {
    /// Interpose with zpoline (binary rewriting of syscall instructions).
    #[arg(long)]
    pub zpoline: bool,
    /// Where syscalls go.
    #[arg(long, value_enum, default_value = "lkl")]
    pub backend: BackendKind,
    /// The LKL configuration (upstream's hijack JSON), as `LKL_HIJACK_CONFIG_FILE`.
    /// Without it: `LKL_HIJACK_CONFIG_FILE`, `./lkl-hijack.json`, then the
    /// `LKL_HIJACK_*` variables, as for lkl-hijack.sh.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log every interposed syscall like strace, to stderr or to FILE.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub trace: Option<String>,
    /// Print a per-syscall summary when the program exits.
    #[arg(long)]
    pub count: bool,
    /// When to switch on the Syscall User Dispatch fallback for syscalls the rewriter
    /// cannot see: `lazy` (at the first writable+executable mapping), `always` (costs
    /// every syscall the kernel's slow path), `never`.
    #[arg(long, value_enum, default_value = "lazy", value_name = "WHEN")]
    pub sud: SudMode,
    /// Leave page 0 unmapped so NULL reads fault exactly as natively, entering the stub
    /// through SIGSEGV instead (microseconds per syscall). For CPUs without protection
    /// keys running programs that rely on NULL faults (the JVM's implicit null checks).
    #[arg(long)]
    pub null_guard: bool,
    /// Directory of the site cache (default: $XDG_CACHE_HOME/zpoline or
    /// ~/.cache/zpoline). It must be private (0700) to the user.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Decode every executable section afresh instead of using the site cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not switch to `--null-guard` when a JVM (libjvm.so) or ThreadSanitizer's
    /// runtime (libtsan.so) is loaded on a CPU without protection keys.
    #[arg(long)]
    pub no_auto_guard: bool,
    /// Same as `--sud=never`.
    #[arg(long)]
    pub no_sud: bool,
    /// Give each process its own LKL, booted at its first LKL call, instead of one
    /// kernel shared by every process the program starts (upstream's behaviour: a
    /// forked child cannot use its parent's LKL sockets; a little faster per call).
    #[arg(long)]
    pub private_kernel: bool,
    /// Make the file system in IMAGE the root of the program's file system: every path
    /// the program and its children use is looked up inside LKL, in the image. `:ro`
    /// opens it read-only (nothing is ever written to it), `:part=N` mounts its
    /// partition N (MBR or GPT) instead of the whole image; the type (ext2/3/4, btrfs,
    /// xfs, vfat) is detected. The image is locked while the tree runs and left clean
    /// when it ends. Needs the shared kernel (not with --private-kernel or
    /// --backend host).
    #[arg(long, value_name = "IMAGE[:ro][:part=N]")]
    pub root: Option<String>,
    /// Mount the file system in IMAGE at PATH (absolute) for the program and its
    /// children: paths under PATH are looked up inside LKL, the others on the host.
    /// Repeatable. `:ro` and `:part=N` as for --root. PATH is made inside LKL if
    /// missing (in the root image with --root, unless it is read-only).
    #[arg(long = "mount", value_name = "IMAGE:PATH[:ro][:part=N]")]
    pub mounts: Vec<String>,
    /// Mount host directory HOSTDIR at PATH (absolute) inside LKL, over virtio-fs:
    /// paths under PATH are looked up inside LKL and served from HOSTDIR, whose files
    /// the program reads and writes (nothing outside HOSTDIR is ever reached through
    /// it). Repeatable. `:ro` refuses every change (EROFS). PATH is made inside LKL if
    /// missing (in the root image with --root, unless it is read-only). Needs the
    /// shared kernel.
    #[arg(long = "volume", value_name = "HOSTDIR:PATH[:ro]")]
    pub volumes: Vec<String>,
    /// Run the tree as UID:GID (numbers; GID defaults to UID) inside LKL instead of
    /// root: the owner of the files it makes in images, and who LKL's permission
    /// checks see. The host user and its privileges are unchanged. Needs the shared
    /// kernel.
    #[arg(long, value_name = "UID[:GID]", value_parser = parse_user)]
    pub user: Option<(u32, u32)>,
    /// The tree's kernel process (used when re-executing).
    #[arg(long, hide = true, value_name = "PID:FD:ADDR")]
    pub shared_kernel: Option<String>,
    /// Take PROGRAM as a path, without searching PATH (used when re-executing).
    #[arg(long, hide = true)]
    pub no_path_search: bool,
    /// `argv[0]` to give the program (used when re-executing).
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub argv0: Option<OsString>,
    /// This lkl-run was started by an interposed execve.
    #[arg(long, hide = true)]
    pub child: bool,
    /// This re-executed process prints the `--count` summary (it was the first one).
    #[arg(long, hide = true)]
    pub summary: bool,
    /// Inherited trace file descriptor.
    #[arg(long, hide = true)]
    pub trace_fd: Option<i32>,
    /// Inherited counter memory file descriptor.
    #[arg(long, hide = true)]
    pub count_fd: Option<i32>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM ARGS")]
    pub command: Vec<OsString>,
}

/// Entry point of the `lkl-run` binary.
pub fn main() {
    let cli = Cli::parse();
    // trailing_var_arg lets `--unknown` through as PROGRAM; treat it as the usage error it is.
    if cli.command[0].as_bytes().starts_with(b"-") {
        use clap::CommandFactory;
        let msg = format!("unexpected argument '{}'", cli.command[0].to_string_lossy());
        Cli::command()
            .error(clap::error::ErrorKind::UnknownArgument, msg)
            .exit();
    }
    if !cli.zpoline {
        eprintln!(
            "lkl-run: only --zpoline mode exists so far; run `lkl-run --zpoline PROGRAM ARGS...`"
        );
        std::process::exit(2);
    }
    let e = run(cli);
    eprintln!("lkl-run: {e}");
    #[cfg(feature = "lkl")]
    zpoline_lkl::leave_tree();
    std::process::exit(e.exit_code());
}

/// `p` for a message: lossy UTF-8, and a path of thousands of bytes cut to its start
/// and its length.
fn shown(p: &OsStr) -> String {
    const MAX: usize = 160;
    let s = p.to_string_lossy();
    if s.len() <= MAX {
        return s.into_owned();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes)", &s[..cut], p.len())
}

/// Checks that `p` is a file we may execute, as `execve` would; the error names why not.
fn check_program(files: Files, p: &Path) -> Result<(), Error> {
    let show = shown(p.as_os_str());
    match files.metadata(p) {
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NoSuchFile(show),
            Some(libc::ENAMETOOLONG) => Error::NameTooLong(show),
            Some(libc::ENOTDIR) => Error::NotDirectory(show),
            Some(libc::EACCES) => Error::NotExecutable(show),
            _ => Error::Io(show, e),
        }),
        Ok(m) if m.is_dir => Err(Error::IsDirectory(show)),
        Ok(_) if !files.executable(p) => Err(Error::NotExecutable(show)),
        Ok(_) => Ok(()),
    }
}

/// Finds PROGRAM like a shell does: a name without `/` is searched in `PATH`, where
/// a file that is there but not executable is reported only if no directory has an
/// executable one.
fn resolve(files: Files, prog: &OsStr, search: bool) -> Result<PathBuf, Error> {
    if !search || prog.as_bytes().contains(&b'/') {
        return check_program(files, Path::new(prog)).map(|()| PathBuf::from(prog));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found = Error::NotFound(shown(prog));
    for dir in std::env::split_paths(&path) {
        let p = dir.join(prog);
        match check_program(files, &p) {
            Ok(()) => return Ok(p),
            Err(e @ Error::NotExecutable(_)) => found = e,
            Err(Error::NameTooLong(_)) if matches!(found, Error::NotFound(_)) => {
                found = Error::NameTooLong(shown(prog));
            }
            Err(_) => {}
        }
    }
    Err(found)
}

/// Follows `#!` lines like the kernel. Returns the path of the ELF file to load and
/// the argv to use.
fn follow_scripts(
    files: Files,
    mut path: PathBuf,
    mut argv: Vec<OsString>,
) -> Result<(PathBuf, Vec<OsString>), Error> {
    for _ in 0..4 {
        let show = shown(path.as_os_str());
        let bytes = files
            .head(&path, 256)
            .map_err(|e| Error::Io(show.clone(), e))?;
        if !bytes.starts_with(b"#!") {
            return Ok((path, argv));
        }
        let line = bytes[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let line = &line[..line.len().min(255)];
        let text = std::str::from_utf8(line)
            .map_err(|_| Error::NotElf(show.clone()))?
            .trim();
        let (interp, arg) = match text.split_once([' ', '\t']) {
            Some((i, a)) => (i, Some(a.trim())),
            None => (text, None),
        };
        if interp.is_empty() {
            return Err(Error::NotElf(show));
        }
        let mut new = vec![OsString::from(interp)];
        if let Some(a) = arg.filter(|a| !a.is_empty()) {
            new.push(a.into());
        }
        new.push(path.clone().into_os_string());
        new.extend(argv.into_iter().skip(1));
        argv = new;
        path = resolve(files, OsStr::new(interp), false)
            .map_err(|e| Error::BadInterpreter(show, Box::new(e)))?;
    }
    Err(Error::TooManyInterpreters(shown(path.as_os_str())))
}

/// The site cache directory to use, if any.
fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    if cli.no_cache {
        return None;
    }
    if let Some(d) = &cli.cache_dir {
        return Some(d.clone());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("zpoline"))
}

fn mmap_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

/// An address range `[start, end)`.
type Range = (u64, u64);

/// The r-xp mapping containing `addr`, and the vDSO, from /proc/self/maps.
fn own_ranges(addr: u64) -> (Option<Range>, Option<Range>) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let (mut text, mut vdso) = (None, None);
    for l in maps.lines() {
        let mut it = l.split_whitespace();
        let Some((a, b)) = it.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if a <= addr && addr < b {
            text = Some((a, b));
        }
        if l.ends_with("[vdso]") {
            vdso = Some((a, b));
        }
    }
    (text, vdso)
}

/// Duplicates `fd` to a high number (>= 900) without close-on-exec, so it survives
/// the program's re-execs and stays out of its way.
fn high_fd(fd: i32) -> i32 {
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_DUPFD, 900) }
}

fn fd_valid(fd: i32) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn setup_trace(cli: &Cli) -> Option<i32> {
    if let Some(fd) = cli.trace_fd.filter(|&fd| fd_valid(fd)) {
        return Some(fd);
    }
    let target = cli.trace.as_deref().or(cli.trace_fd.map(|_| "-"))?;
    if target == "-" {
        return Some(high_fd(2));
    }
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    if !cli.child {
        o.truncate(false);
        let _ = std::fs::File::create(target);
    }
    match o.open(target) {
        Ok(f) => Some(high_fd(f.as_raw_fd())),
        Err(e) => {
            eprintln!("lkl-run: --trace={target}: {e}; tracing to stderr");
            Some(high_fd(2))
        }
    }
}

/// Maps the shared counter area; returns (address, fd to pass on).
fn setup_count(cli: &Cli) -> Option<(usize, i32)> {
    let size = trampoline::trace::COUNTER_WORDS * 8;
    let map = |fd: i32| {
        // SAFETY: a shared mapping of our counter memfd.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p as usize)
    };
    if let Some(fd) = cli.count_fd.filter(|&fd| fd_valid(fd)) {
        if let Some(p) = map(fd) {
            return Some((p, fd));
        }
    }
    if !cli.count && cli.count_fd.is_none() {
        return None;
    }
    // SAFETY: creating an anonymous memory file.
    let fd = unsafe { libc::memfd_create(c"zpoline-count".as_ptr(), 0) };
    // SAFETY: sizing our own memfd.
    if fd < 0 || unsafe { libc::ftruncate(fd, size as i64) } < 0 {
        return None;
    }
    let hi = high_fd(fd);
    // SAFETY: closing the original descriptor we just duplicated.
    unsafe { libc::close(fd) };
    map(hi).map(|p| (p, hi))
}

fn read_auxv() -> Vec<(u64, u64)> {
    let raw = std::fs::read("/proc/self/auxv").unwrap_or_default();
    raw.chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(c[8..].try_into().unwrap_or_default()),
            )
        })
        .take_while(|&(k, _)| k != at::NULL)
        .collect()
}

/// Opens and parses an ELF file, reading only its first 64 KiB unless the headers lie
/// further in.
fn load(files: Files, path: &Path) -> Result<(Opened, Image), Error> {
    use std::io::{Read, Seek};
    let show = shown(path.as_os_str());
    let io = |e| Error::Io(show.clone(), e);
    let opened = files.open(path).map_err(io)?;
    let f = &opened.file;
    let len = f.metadata().map_err(io)?.len();
    let mut prefix = Vec::new();
    f.take(64 << 10).read_to_end(&mut prefix).map_err(io)?;
    let img = match elf::parse_prefix(&show, &prefix, len) {
        Err(Error::Short(_)) => {
            let mut all = Vec::new();
            let mut f = f;
            f.rewind().map_err(io)?;
            f.read_to_end(&mut all).map_err(io)?;
            elf::parse(&show, &all)?
        }
        r => r?,
    };
    Ok((opened, img))
}

/// The disks of `--root` and `--mount`, in that order, and the volumes of `--volume`
/// (checked for what they may be used with: the shared kernel of the LKL backend).
fn cli_files(cli: &Cli) -> Result<CliFiles, Error> {
    let disks = cli_disks(cli)?;
    let mut volumes = Vec::new();
    for v in &cli.volumes {
        volumes.push(parse_volume(v).map_err(|e| Error::Disks(format!("--volume {v}: {e}")))?);
    }
    if !volumes.is_empty() {
        if cli.backend == BackendKind::Host {
            return Err(Error::Disks(
                "--volume mounts a host directory inside LKL, but --backend host leaves every \
                 call to the host kernel: drop --backend host (the directory is on the host \
                 already)"
                    .into(),
            ));
        }
        if cli.private_kernel {
            return Err(Error::Disks(
                "--volume needs the kernel shared by the whole tree (one file system for every \
                 process): drop --private-kernel"
                    .into(),
            ));
        }
    }
    Ok((disks, volumes))
}

/// The disks and volumes of the command line.
type CliFiles = (Vec<lkl_hijack_config::Disk>, Vec<lkl_hijack_config::Volume>);

/// One `--volume HOSTDIR:PATH[:ro]`: `:ro` is taken from the end, then PATH, so a
/// directory's name may hold `:`. The directory is made absolute (the kernel process
/// runs elsewhere) and must exist.
fn parse_volume(spec: &str) -> Result<lkl_hijack_config::Volume, String> {
    let mut v = lkl_hijack_config::Volume::default();
    let mut rest = spec;
    if let Some(head) = rest.strip_suffix(":ro") {
        v.read_only = true;
        rest = head;
    }
    let Some((dir, path)) = rest.rsplit_once(':') else {
        return Err("write HOSTDIR:PATH, e.g. ./src:/src (add :ro for read-only)".into());
    };
    v.path = lkl_hijack_config::disk_path(path).map_err(|e| format!("{path:?} {e}"))?;
    if dir.is_empty() {
        return Err("no host directory: write HOSTDIR:PATH, e.g. ./src:/src".into());
    }
    v.dir = std::path::absolute(dir)
        .map_err(|e| format!("cannot make {dir:?} an absolute path: {e}"))?;
    match std::fs::metadata(&v.dir) {
        Ok(m) if m.is_dir() => Ok(v),
        Ok(_) => Err(format!(
            "{} is not a directory: give a host directory",
            v.dir.display()
        )),
        Err(e) => Err(format!(
            "host directory {}: {e}: give an existing directory",
            v.dir.display()
        )),
    }
}

/// The disks of `--root` and `--mount`, in that order (checked for what they may be
/// used with: the shared kernel of the LKL backend).
fn cli_disks(cli: &Cli) -> Result<Vec<lkl_hijack_config::Disk>, Error> {
    let mut disks = Vec::new();
    if let Some(r) = &cli.root {
        disks.push(parse_disk(r, true).map_err(|e| Error::Disks(format!("--root {r}: {e}")))?);
    }
    for m in &cli.mounts {
        disks.push(parse_disk(m, false).map_err(|e| Error::Disks(format!("--mount {m}: {e}")))?);
    }
    if disks.is_empty() {
        return Ok(disks);
    }
    let flag = if cli.root.is_some() {
        "--root"
    } else {
        "--mount"
    };
    if cli.backend == BackendKind::Host {
        return Err(Error::Disks(format!(
            "{flag} mounts an image inside LKL, but --backend host leaves every call to the \
             host kernel: drop --backend host, or mount the image on the host"
        )));
    }
    if cli.private_kernel {
        return Err(Error::Disks(format!(
            "{flag} needs the kernel shared by the whole tree (one file system for every \
             process): drop --private-kernel"
        )));
    }
    Ok(disks)
}

/// `--user UID[:GID]`.
fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let num = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| {
                format!("{v:?} is not a user or group id: write numbers, e.g. 1000:1000")
            })
    };
    match s.split_once(':') {
        Some((u, g)) => Ok((num(u)?, num(g)?)),
        None => {
            let u = num(s)?;
            Ok((u, u))
        }
    }
}

/// One `--root IMAGE[:ro][:part=N]` (`root`) or `--mount IMAGE:PATH[:ro][:part=N]`:
/// the options are taken from the end, so an image's name may hold `:`. The image is
/// made absolute (the kernel process runs elsewhere).
fn parse_disk(spec: &str, root: bool) -> Result<lkl_hijack_config::Disk, String> {
    let mut rest = spec;
    let mut disk = lkl_hijack_config::Disk::default();
    while let Some((head, opt)) = rest.rsplit_once(':') {
        if opt == "ro" {
            disk.read_only = true;
        } else if let Some(n) = opt.strip_prefix("part=") {
            match n.parse::<u32>() {
                Ok(n @ 1..=128) => disk.partition = Some(n),
                _ => {
                    return Err(format!(
                        "{opt:?} is not a partition: write part=N with N from 1 to 128"
                    ))
                }
            }
        } else {
            break;
        }
        rest = head;
    }
    let image = if root {
        disk.path = "/".into();
        rest
    } else {
        let Some((image, path)) = rest.rsplit_once(':') else {
            return Err("write IMAGE:PATH, e.g. disk.img:/mnt/disk (add :ro for read-only)".into());
        };
        disk.path = lkl_hijack_config::disk_path(path).map_err(|e| format!("{path:?} {e}"))?;
        image
    };
    if image.is_empty() {
        return Err(if root {
            "no image: write IMAGE[:ro][:part=N], e.g. root.img:ro".into()
        } else {
            "no image: write IMAGE:PATH, e.g. disk.img:/mnt/disk".into()
        });
    }
    disk.image = std::path::absolute(image)
        .map_err(|e| format!("cannot make {image:?} an absolute path: {e}"))?;
    Ok(disk)
}

/// The LKL backend, started from the configuration (`--config` or the hijack
/// variables) and the disks of `--root` and `--mount`.
#[cfg(feature = "lkl")]
fn lkl_backend(
    cli: &Cli,
    (disks, volumes): CliFiles,
) -> Result<(&'static dyn trampoline::Backend, Option<String>), Error> {
    if let Some(c) = &cli.config {
        let abs = std::fs::canonicalize(c)
            .map_err(|e| Error::Lkl(format!("--config {}: {e}", c.display())))?;
        // Re-executed children read the same file through the environment.
        std::env::set_var("LKL_HIJACK_CONFIG_FILE", abs);
    }
    let mode = match (&cli.shared_kernel, cli.child, cli.private_kernel) {
        (Some(spec), _, _) => zpoline_lkl::Mode::SharedChild(spec),
        (None, false, false) => zpoline_lkl::Mode::SharedFirst,
        (None, child, _) => zpoline_lkl::Mode::Private { first: !child },
    };
    // While the kernel boots: the decoder's tables, which `trampoline::install` needs.
    let mut meanwhile = rewriter::warm_up;
    let started = zpoline_lkl::start(mode, disks, volumes, &mut meanwhile)
        .map_err(|e| Error::Lkl(e.to_string()))?;
    if let (Some((uid, gid)), zpoline_lkl::Mode::SharedFirst) = (cli.user, mode) {
        zpoline_lkl::set_identity(uid, gid)
            .map_err(|e| Error::Lkl(format!("--user {uid}:{gid}: {e}")))?;
    }
    for w in &started.warnings {
        eprintln!("lkl-run: warning: {w}");
    }
    Ok((started.backend, started.shared))
}

/// This build has no LKL backend (cargo feature `lkl` off).
#[cfg(not(feature = "lkl"))]
fn lkl_backend(
    _: &Cli,
    _: CliFiles,
) -> Result<(&'static dyn trampoline::Backend, Option<String>), Error> {
    Err(Error::NoLklBackend)
}

/// Loads and runs the program; returns only on error.
pub fn run(cli: Cli) -> Error {
    match try_run(cli) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_run(cli: Cli) -> Result<std::convert::Infallible, Error> {
    let disks = cli_files(&cli)?;
    if cli.user.is_some() && (cli.private_kernel || cli.backend == BackendKind::Host) {
        return Err(Error::Disks(
            "--user sets the tree's credentials in its shared LKL: drop --private-kernel and \
             --backend host"
                .into(),
        ));
    }
    let min = mmap_min_addr();
    if min != 0 && !cli.null_guard {
        return Err(Error::MmapMinAddr(min));
    }
    static HOST: trampoline::Host = trampoline::Host;
    // With the LKL backend, the backend starts first: the program, its `#!`
    // interpreters and its ELF interpreter may be files of LKL's (`--root`, `--mount`),
    // found and read through the backend's routing.
    let (backend, shared): (&'static dyn trampoline::Backend, _) = match cli.backend {
        BackendKind::Host => (&HOST, None),
        BackendKind::Lkl => lkl_backend(&cli, disks)?,
    };
    let files = match cli.backend {
        BackendKind::Host => Files::Host,
        BackendKind::Lkl => Files::Backend(backend),
    };
    let mut argv = cli.command.clone();
    let path = resolve(files, &argv[0], !cli.no_path_search)?;
    if let Some(a0) = &cli.argv0 {
        argv[0] = a0.clone();
    }
    let (path, argv) = follow_scripts(files, path, argv)?;
    let show = shown(path.as_os_str());
    let (file, img) = load(files, &path)?;
    let interp = match &img.interp {
        Some(i) => Some(
            load(files, Path::new(i))
                .map_err(|e| Error::BadInterpreter(show.clone(), Box::new(e)))?,
        ),
        None => None,
    };

    // Interposition options.
    let trace_fd = setup_trace(&cli);
    let count = setup_count(&cli);
    let loader = std::env::current_exe().map_err(|e| Error::Io("/proc/self/exe".into(), e))?;
    let mut args: Vec<Vec<u8>> = ["--zpoline", "--no-path-search", "--child"]
        .iter()
        .map(|s| cstr(s.as_bytes()))
        .collect();
    if let Some(fd) = trace_fd {
        args.push(cstr(format!("--trace-fd={fd}").as_bytes()));
    }
    if let Some((_, fd)) = count {
        args.push(cstr(format!("--count-fd={fd}").as_bytes()));
    }
    if cli.null_guard {
        args.push(cstr(b"--null-guard"));
    }
    if cli.backend == BackendKind::Host {
        args.push(cstr(b"--backend=host"));
    }
    if cli.no_auto_guard {
        args.push(cstr(b"--no-auto-guard"));
    }
    if let Some(spec) = &shared {
        args.push(cstr(format!("--shared-kernel={spec}").as_bytes()));
    }
    match cache_dir(&cli) {
        Some(dir) => match trampoline::cache::use_dir(&dir) {
            Ok(()) => args.push(cstr(format!("--cache-dir={}", dir.display()).as_bytes())),
            Err(_) => args.push(cstr(b"--no-cache")),
        },
        None => args.push(cstr(b"--no-cache")),
    }
    let sud = match (cli.no_sud, cli.sud) {
        (true, _) | (_, SudMode::Never) => trampoline::sud::Mode::Never,
        (_, SudMode::Lazy) => trampoline::sud::Mode::Lazy,
        (_, SudMode::Always) => trampoline::sud::Mode::Always,
    };
    args.push(cstr(match sud {
        trampoline::sud::Mode::Never => b"--sud=never",
        trampoline::sud::Mode::Lazy => b"--sud=lazy",
        trampoline::sud::Mode::Always => b"--sud=always",
    }));
    let (text, vdso) = own_ranges(trampoline::entry_address());
    let mut exclude = vec![(0, 4096)];
    exclude.extend(text);
    exclude.extend(vdso);
    let options = trampoline::Options {
        trace_fd,
        count_area: count.map(|(p, _)| p),
        summary_fd: ((cli.count && !cli.child) || cli.summary)
            .then(|| trace_fd.unwrap_or_else(|| high_fd(2))),
        reexec: Some(trampoline::ReExec {
            loader: cstr(loader.as_os_str().as_bytes()),
            args,
            root_arg: count.map(|_| cstr(b"--summary")),
        }),
        rewrite_new_code: true,
        null_guard: cli.null_guard,
        auto_guard_jvm: !cli.no_auto_guard,
        exclude,
        program: files
            .canonical(&path)
            .map(|p| cstr(p.as_os_str().as_bytes())),
    };
    // Before install: the NULL guard installs its own SIGSEGV handler.
    map::reset_signal_state();
    trampoline::install(options, backend)?;

    // Map and rewrite the program and its interpreter.
    let prog = map::map_image(&show, &file.file, &img)?;
    let mut entry = img.entry + prog.bias;
    let mut base = 0;
    let mut regions: Vec<_> = prog.exec_regions.iter().map(|&r| (r, file.ident)).collect();
    if let Some((ifile, iimg)) = &interp {
        let name = img.interp.clone().unwrap_or_default();
        let m = map::map_image(&name, &ifile.file, iimg)?;
        base = iimg.min_vaddr() + m.bias;
        entry = iimg.entry + m.bias;
        regions.extend(m.exec_regions.iter().map(|&r| (r, ifile.ident)));
    }
    for ((start, len, prot, off), fd) in regions {
        // SAFETY: regions we just mapped from these files at these offsets, not yet
        // running.
        unsafe { trampoline::rewrite_region(start, len, prot, Some((fd, off))) }
            .map_err(|e| Error::Map(show.clone(), format!("rewriting: {e}"), 0))?;
    }

    if let Some(fd) = trace_fd {
        let line = format!(
            "lkl-run: rewrote {} syscall sites in {show}{}\n",
            trampoline::patched_sites(),
            img.interp
                .as_deref()
                .map(|i| format!(" and {i}"))
                .unwrap_or_default()
        );
        // SAFETY: writing our own buffer to the trace descriptor.
        unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    }

    // The program must not inherit our descriptors.
    drop(file);
    drop(interp);
    #[cfg(feature = "lkl")]
    if cli.backend == BackendKind::Lkl {
        zpoline_lkl::loader_done();
    }

    // The initial stack.
    let mut random = [0u8; 16];
    // SAFETY: getrandom into our buffer.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), 16, 0) };
    let mut auxv: Vec<(u64, AuxVal)> = read_auxv()
        .into_iter()
        .filter(|(k, _)| !at::OWN.contains(k))
        .map(|(k, v)| (k, AuxVal::Value(v)))
        .collect();
    auxv.extend([
        (at::PHDR, AuxVal::Value(img.phdr_vaddr + prog.bias)),
        (at::PHENT, AuxVal::Value(img.phent)),
        (at::PHNUM, AuxVal::Value(img.phnum)),
        (at::BASE, AuxVal::Value(base)),
        (at::FLAGS, AuxVal::Value(0)),
        (at::ENTRY, AuxVal::Value(img.entry + prog.bias)),
        (at::RANDOM, AuxVal::Random(random)),
        (at::PLATFORM, AuxVal::Str("x86_64")),
        (at::EXECFN, AuxVal::ExecFn),
    ]);
    let argv: Vec<Vec<u8>> = argv.into_iter().map(OsStringExt::into_vec).collect();
    let envp: Vec<Vec<u8>> = std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k.into_vec();
            e.push(b'=');
            e.extend(v.into_vec());
            e
        })
        .collect();
    let top = map::map_stack(8 << 20)?;
    let built = stack::build(top, &argv, &envp, path.as_os_str().as_bytes(), &auxv);

    // SAFETY: `top` is the top of the stack we just mapped, and the image fits in it.
    unsafe { map::place_stack(built.sp, &built.image) };
    map::set_mm_views(built.args, built.env, built.auxv, built.auxv.0);
    map::unregister_rseq();
    if let Some((a, b)) = text {
        trampoline::sud::enable(a, b - a, sud)?;
    }
    // Our code runs only in the hook (and LKL's threads) from here on: the system
    // allocator only in our own world.
    trampoline::alloc::seal();
    // SAFETY: the stack is mapped, the program and interpreter are mapped and rewritten.
    unsafe { map::enter(entry, built.sp) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_flags() {
        let cwd = std::env::current_dir().unwrap();
        let d = parse_disk("a:b.img:/mnt/x:ro:part=2", false).unwrap();
        assert_eq!(d.image, cwd.join("a:b.img"));
        assert_eq!(d.path, Path::new("/mnt/x"));
        assert!(d.read_only);
        assert_eq!(d.partition, Some(2));
        let d = parse_disk("/i/root.img", true).unwrap();
        assert_eq!(
            (d.image.as_path(), d.path.as_path()),
            (Path::new("/i/root.img"), Path::new("/"))
        );
        assert!(!d.read_only);
        let d = parse_disk("/i/root.img:part=1:ro", true).unwrap();
        assert!(d.read_only && d.partition == Some(1));
        let e = |s: &str, root: bool| parse_disk(s, root).unwrap_err();
        assert!(e("disk.img", false).starts_with("write IMAGE:PATH"));
        assert!(e("disk.img:mnt", false).starts_with("\"mnt\" is not an absolute path"));
        assert!(e("disk.img:/mnt/../x", false).contains("'..'"));
        assert!(e(":/mnt/x", false).starts_with("no image"));
        assert!(e(":ro", true).starts_with("no image"));
        assert!(e("r.img:part=0", true).contains("part=N with N from 1 to 128"));
        assert!(e("r.img:part=x", true).contains("is not a partition"));
    }
}
