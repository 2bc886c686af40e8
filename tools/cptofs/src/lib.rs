//! cptofs/cpfromfs: copy files into or out of a file system image through
//! LKL.
//!
//! One program, two names, as upstream: run as `cptofs` it copies host
//! files into the image (`-i IMAGE ... SRC... DST`, DST a directory in the
//! image), run as `cpfromfs` it copies files out of the image (SRC paths in
//! the image, DST a host directory). The name is taken from `argv[0]`
//! (anything containing `cpfromfs` copies out); Cargo builds both names
//! (`src/main.rs` and `src/bin/cpfromfs.rs`).
//!
//! Like upstream: a SRC made only of `.` and `/` (`.`, `/`, `./`) copies
//! the directory's contents into DST, and so does `DIR/.` (as with
//! `cp -a DIR/. DST`); any other SRC is copied into DST under its own
//! name. Patterns (`*`, `?`, `[...]`, in any component) are
//! expanded on the SRC's side: in the image for `cpfromfs`. Unlike
//! upstream, `-t` may be omitted (the type is detected), devices, fifos,
//! hard links, extended attributes and holes are kept, and owners are
//! kept unless `-o`/`-g` say otherwise.

pub mod copy;
pub mod glob;
pub mod side;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use lkl_fs::{FileKind, MountOptions, Mounted};

use copy::{Copier, Item, Settings};
use side::{Host, Image, Side};

/// Which way files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Host to image.
    ToFs,
    /// Image to host.
    FromFs,
}

static PROG: OnceLock<&'static str> = OnceLock::new();

/// The program's name for messages.
pub fn prog() -> &'static str {
    PROG.get().copied().unwrap_or("cptofs")
}

/// Copy files into (cptofs) or out of (cpfromfs) a file system image,
/// through LKL (the Linux kernel as a library): no root, no kernel module.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Show the Linux kernel's messages (printk) on stderr.
    #[arg(short = 'p', long = "enable-printk")]
    printk: bool,
    /// Partition number (1-based, MBR or GPT) holding the file system.
    #[arg(short = 'P', long = "partition", value_name = "PART")]
    partition: Option<u32>,
    /// File system type (ext2, ext3, ext4, btrfs, xfs, vfat, ...); detected
    /// from the image when omitted.
    #[arg(short = 't', long = "filesystem-type", value_name = "FSTYPE")]
    fstype: Option<String>,
    /// The file system image (a file or block device).
    #[arg(
        short = 'i',
        long = "filesystem-image",
        value_name = "IMAGE",
        required = true
    )]
    image: Option<PathBuf>,
    /// Owner (uid) of every destination file, instead of the source's.
    #[arg(short = 'o', long = "owner", value_name = "UID")]
    owner: Option<u32>,
    /// Group (gid) of every destination file, instead of the source's.
    #[arg(short = 'g', long = "group", value_name = "GID")]
    group: Option<u32>,
    /// SELinux context (security.selinux) to give every destination file.
    #[arg(short = 's', long = "selinux", value_name = "CONTEXT")]
    selinux: Option<String>,
    /// Memory for the kernel, in MiB.
    #[arg(short = 'm', long = "mb", value_name = "MB", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(16..=65536))]
    mb: u64,
    /// Mount options for the file system (its data string).
    #[arg(long = "mount-options", value_name = "OPTS")]
    mount_options: Option<String>,
    /// Never show a progress bar.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Files to copy (patterns allowed), then the destination directory.
    #[arg(value_name = "PATH", required = true, num_args = 2..)]
    paths: Vec<OsString>,
}

/// The mode a program called `argv0` runs in; `default` when the name says
/// neither.
pub fn mode_of(argv0: &OsString, default: Mode) -> Mode {
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let has = |w: &[u8]| name.windows(w.len()).any(|x| x == w);
    if has(b"cpfromfs") {
        Mode::FromFs
    } else if has(b"cptofs") {
        Mode::ToFs
    } else {
        default
    }
}

/// The whole program: parses the command line and copies.
pub fn main_with(default: Mode) -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mode = mode_of(argv.first().unwrap_or(&OsString::new()), default);
    let name = match mode {
        Mode::ToFs => "cptofs",
        Mode::FromFs => "cpfromfs",
    };
    let _ = PROG.set(name);
    let (about, usage) = match mode {
        Mode::ToFs => (
            "Copy host files into a file system image, through LKL (the Linux kernel as a library)",
            "cptofs -i IMAGE [-t FSTYPE] [-P PART] [-p] [OPTIONS] SRC... DST\n       \
             (SRC on the host, patterns allowed; DST a directory in the image, e.g. /)",
        ),
        Mode::FromFs => (
            "Copy files out of a file system image, through LKL (the Linux kernel as a library)",
            "cpfromfs -i IMAGE [-t FSTYPE] [-P PART] [-p] [OPTIONS] SRC... DST\n       \
             (SRC in the image, patterns expanded in the image; DST a host directory)",
        ),
    };
    let cmd = Args::command()
        .name(name)
        .bin_name(name)
        .about(about)
        .override_usage(usage);
    let matches = cmd.get_matches_from(&argv);
    let args = match <Args as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match run(mode, &args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("{name}: {n} error(s); the rest was copied");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A usage error: the message, then the usage line, exit status 2.
fn usage_error(mode: Mode, msg: &str) -> ! {
    let name = prog();
    let usage = match mode {
        Mode::ToFs => "cptofs -i IMAGE [-t FSTYPE] [-P PART] [-p] SRC... DST",
        Mode::FromFs => "cpfromfs -i IMAGE [-t FSTYPE] [-P PART] [-p] SRC... DST",
    };
    eprintln!("{name}: {msg}\nUsage: {usage}\nTry '{name} --help' for more information.");
    std::process::exit(2);
}

/// A SRC that means "the contents of" a directory rather than the
/// directory itself: upstream's rule (only `.` and `/`: `.`, `/`, `./`),
/// and `DIR/.` as `cp -a DIR/. DST` reads it. Returns the directory.
fn contents_of(src: &[u8]) -> Option<&[u8]> {
    if !src.is_empty()
        && src.iter().all(|&c| c == b'.' || c == b'/')
        && !src.windows(2).any(|w| w == b"..")
    {
        return Some(src);
    }
    let trimmed = {
        let mut t = src;
        while t.len() > 1 && t.ends_with(b"/") {
            t = &t[..t.len() - 1];
        }
        t
    };
    trimmed
        .strip_suffix(b"/.")
        .map(|dir| if dir.is_empty() { b"/".as_slice() } else { dir })
}

/// Expands pattern `pat` on side `s`, relative to `base` (the image's
/// mount point, or empty on the host). Components without a pattern are
/// kept as they are (their existence is checked when they are copied).
fn expand<S: Side>(s: &S, base: &Path, pat: &[u8]) -> Result<Vec<PathBuf>> {
    let start = if !base.as_os_str().is_empty() {
        base.to_path_buf()
    } else if pat.starts_with(b"/") {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let mut found = vec![start];
    for comp in pat.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if glob::is_pattern(comp) {
            for dir in &found {
                let list_at = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir.as_path()
                };
                let Ok(names) = s.read_dir(list_at) else {
                    continue;
                };
                for n in names {
                    if glob::matches(comp, n.as_bytes()) {
                        next.push(dir.join(&n));
                    }
                }
            }
        } else {
            let c = OsString::from_vec(glob::unquote(comp));
            next = found.iter().map(|d| d.join(&c)).collect();
        }
        found = next;
        if found.is_empty() {
            break;
        }
    }
    Ok(found)
}

/// An image path (as typed) under the mount point; `..` cannot leave it.
fn in_image(mnt: &Path, p: &[u8]) -> PathBuf {
    let mut out = mnt.to_path_buf();
    for c in Path::new(std::ffi::OsStr::from_bytes(p)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if out != mnt => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn run(mode: Mode, args: &Args) -> Result<usize> {
    let image = args.image.clone().expect("required by clap");
    let (srcs, dst) = args.paths.split_at(args.paths.len() - 1);
    let dst = &dst[0];
    if mode == Mode::FromFs {
        match std::fs::metadata(dst) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => usage_error(
                mode,
                &format!("DST {} is not a directory", Path::new(dst).display()),
            ),
            Err(e) => usage_error(
                mode,
                &format!(
                    "DST {}: {e} (it must be an existing directory)",
                    Path::new(dst).display()
                ),
            ),
        }
    }
    // The image as the host knows it: never copied into itself, never
    // overwritten by a copy out of it.
    let image_id = lkl_fs::host::FileId::of(&image).map(|i| i.dev_ino());
    if mode == Mode::FromFs {
        // Before any thread: a termination signal removes the file being
        // written (the image is only read, so exiting at once is safe).
        lkl_fs::host::on_signals_remove_partial("cpfromfs").context("cannot watch for signals")?;
    }
    let mut opts = if mode == Mode::ToFs {
        MountOptions::read_write(&image)
    } else {
        MountOptions::read_only(&image)
    };
    opts.fstype = args.fstype.clone();
    opts.partition = args.partition;
    opts.printk = args.printk;
    opts.memory = args.mb << 20;
    opts.options = args.mount_options.clone();
    // The process exits right after: no need to wait on the halt.
    opts.halt = false;
    let mounted = match Mounted::open(&opts) {
        Ok(m) => m,
        Err(lkl_fs::FsError::UnknownType { fstype, known }) => usage_error(
            mode,
            &format!(
                "unknown file system type {fstype:?} (-t): this kernel knows {}",
                known.join(", ")
            ),
        ),
        Err(e) => return Err(e.into()),
    };
    let mnt = mounted.path().to_path_buf();
    let progress = !args.quiet && std::io::stderr().is_terminal();
    // SAFETY: geteuid/getegid only read the process's credentials.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    let settings = Settings {
        owner: args.owner,
        group: args.group,
        // As upstream: the context's bytes, without a NUL.
        selinux: args.selinux.as_ref().map(|s| s.as_bytes().to_vec()),
        created_as: if mode == Mode::ToFs { (0, 0) } else { me },
        chmod_always: mode == Mode::FromFs,
        progress,
        image_in_src: image_id.filter(|_| mode == Mode::ToFs),
        image_in_dst: image_id.filter(|_| mode == Mode::FromFs),
    };
    let errors = match mode {
        Mode::ToFs => {
            let dst_dir = in_image(&mnt, dst.as_bytes());
            match Image.lstat(&dst_dir) {
                Ok(m) if m.kind == FileKind::Dir => {}
                _ => usage_error(
                    mode,
                    &format!(
                        "DST {} is not a directory in the image",
                        Path::new(dst).display()
                    ),
                ),
            }
            copy_all(&Host, &Image, Path::new(""), srcs, &dst_dir, settings)?
        }
        Mode::FromFs => copy_all(&Image, &Host, &mnt, srcs, Path::new(dst), settings)?,
    };
    mounted.close().context("cannot finish writing the image")?;
    Ok(errors)
}

fn copy_all<S: Side, D: Side>(
    s: &S,
    d: &D,
    base: &Path,
    srcs: &[OsString],
    dst: &Path,
    settings: Settings,
) -> Result<usize> {
    let mut items: Vec<Item> = Vec::new();
    let mut errors = 0;
    for src in srcs {
        let b = src.as_bytes();
        let contents = contents_of(b).is_some();
        let paths = if let Some(dir) = contents_of(b) {
            let root = if base.as_os_str().is_empty() {
                PathBuf::from(std::ffi::OsStr::from_bytes(dir))
            } else {
                in_image(base, dir)
            };
            match s.read_dir(&root) {
                Ok(names) => names.iter().map(|n| root.join(n)).collect(),
                Err(e) => {
                    eprintln!("{}: {e}", prog());
                    errors += 1;
                    continue;
                }
            }
        } else if base.as_os_str().is_empty() {
            expand(s, base, b)?
        } else {
            // Image paths: relative to the image's root, never above it.
            let norm = in_image(base, b);
            let rel = norm.strip_prefix(base).unwrap_or(Path::new(""));
            expand(s, base, rel.as_os_str().as_bytes())?
        };
        if paths.is_empty() && !contents {
            eprintln!(
                "{}: {}: no such file (nothing matches)",
                prog(),
                Path::new(src).display()
            );
            errors += 1;
            continue;
        }
        for p in paths {
            let Some(name) = p.file_name() else {
                eprintln!("{}: {}: cannot copy a root", prog(), p.display());
                errors += 1;
                continue;
            };
            if let Err(e) = copy::plan(s, &p, &dst.join(name), &mut items) {
                eprintln!("{}: {e}", prog());
                errors += 1;
            }
        }
    }
    let mut c = Copier::new(s, d, settings);
    let r = c.run(&items);
    errors += c.errors;
    if let Err(e) = r {
        bail!("{e}; stopped");
    }
    if errors > 0 && items.is_empty() && !srcs.is_empty() {
        bail!("nothing copied");
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_the_mode() {
        let m = |s: &str| mode_of(&OsString::from(s), Mode::ToFs);
        assert_eq!(m("/usr/bin/cpfromfs"), Mode::FromFs);
        assert_eq!(m("cptofs"), Mode::ToFs);
        assert_eq!(m("lkl-cpfromfs"), Mode::FromFs);
        assert_eq!(mode_of(&OsString::from("x"), Mode::FromFs), Mode::FromFs);
    }

    #[test]
    fn roots_and_image_paths() {
        assert_eq!(contents_of(b"."), Some(b".".as_slice()));
        assert_eq!(contents_of(b"/"), Some(b"/".as_slice()));
        assert_eq!(contents_of(b"./"), Some(b"./".as_slice()));
        assert_eq!(contents_of(b"dir/."), Some(b"dir".as_slice()));
        assert_eq!(contents_of(b"/a/b/./"), Some(b"/a/b".as_slice()));
        assert_eq!(contents_of(b".."), None);
        assert_eq!(contents_of(b"a"), None);
        assert_eq!(contents_of(b"a/.."), None);
        let m = Path::new("/mnt/vda");
        assert_eq!(in_image(m, b"/a/b"), Path::new("/mnt/vda/a/b"));
        assert_eq!(in_image(m, b"../../etc"), Path::new("/mnt/vda/etc"));
    }
}
