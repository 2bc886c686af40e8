//! End-to-end tests of fs2tar and cptofs/cpfromfs on real images: the
//! helpers (a known source tree, manifests of trees, running programs
//! with a deadline, images made by the real `mkfs.*`).
//!
//! The tools are built inside this crate under names of their own
//! (`fstools-fs2tar`, `fstools-cptofs`, `fstools-cpfromfs`, thin wrappers
//! over the `fs2tar` and `cptofs` libraries), so that the tests find them
//! through `CARGO_BIN_EXE_*` in a fresh clone.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod fuse;

/// What a program run gave.
#[derive(Debug)]
pub struct Output {
    /// Exit status; `None` if it was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// A one-line account for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?}, stderr: {}",
            self.status,
            self.stderr
                .trim()
                .lines()
                .take(8)
                .collect::<Vec<_>>()
                .join(" | ")
        )
    }
}

/// Runs `prog args` with a deadline (killed past it).
pub fn run_for(prog: &str, args: &[&str], limit: Duration) -> Result<Output, String> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    run_cmd_for(cmd, limit, || {})
}

/// Runs `cmd` (stdin empty, stdout and stderr captured) with a deadline
/// (killed past it), calling `tick` every 5 ms while it runs.
pub fn run_cmd_for(
    mut cmd: Command,
    limit: Duration,
    mut tick: impl FnMut(),
) -> Result<Output, String> {
    let prog = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("wait {prog}: {e}"))? {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tick();
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    })
}

/// Runs a program that must succeed within 5 minutes; its stdout.
pub fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let o = run_for(prog, args, Duration::from_secs(300))?;
    if o.code() != Some(0) {
        return Err(format!("{prog} {args:?}: {}", o.describe()));
    }
    Ok(o.stdout)
}

/// A path as a `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

pub use lkl_disk_test::noise;

fn write(p: &Path, data: &[u8]) -> Result<(), String> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    std::fs::write(p, data).map_err(|e| format!("write {}: {e}", p.display()))
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> Result<(), String> {
    use cptofs::side::Side;
    cptofs::side::Host
        .lsetxattr(p, std::ffi::OsStr::new(name), value)
        .map_err(|e| format!("{e} (the test directory's file system must keep user xattrs)"))
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) -> Result<(), String> {
    let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
    let t = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: a NUL-terminated path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(format!(
            "utimensat {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn mknod(p: &Path, mode: u32, dev: libc::dev_t) -> Result<(), String> {
    let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path and numbers.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } != 0 {
        return Err(format!(
            "mknod {}: {} (the tests run as root, as CI does)",
            p.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn chmod(p: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// The size of the big file in the source tree.
pub const BIG: usize = 50 << 20;

/// Builds the full source tree under `dir`: nested directories, a 50 MB
/// file, empty files, symlinks, hard links, unicode names, xattrs, a
/// sparse file, odd modes, a fifo, a character device, a socket (which
/// the tools skip) and nanosecond mtimes.
pub fn full_tree(dir: &Path) -> Result<(), String> {
    write(&dir.join("hello.txt"), b"hello from the host\n")?;
    write(&dir.join("a/b/c/d/deep.txt"), b"deep inside\n")?;
    write(&dir.join("big.bin"), &noise(BIG, 0x5eed))?;
    write(&dir.join("empty"), b"")?;
    write(&dir.join("a/empty2"), b"")?;
    for i in 0..40 {
        write(
            &dir.join(format!("many/f{i:02}.txt")),
            &noise(100 + i * 997, i as u64),
        )?;
    }
    write(
        &dir.join("ünïcødé ✓/naïve résumé.txt"),
        "ça marche\n".as_bytes(),
    )?;
    std::os::unix::fs::symlink("a/b/c/d/deep.txt", dir.join("link-rel"))
        .map_err(|e| format!("symlink: {e}"))?;
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("link-dangling"))
        .map_err(|e| format!("symlink: {e}"))?;
    std::fs::hard_link(dir.join("hello.txt"), dir.join("a/hard-hello"))
        .map_err(|e| format!("link: {e}"))?;
    std::fs::hard_link(dir.join("hello.txt"), dir.join("hard2"))
        .map_err(|e| format!("link: {e}"))?;
    // Sparse: data at 0, at 8 MiB and at the very end of 24 MiB.
    {
        use std::os::unix::fs::FileExt;
        let p = dir.join("sparse.img");
        let f = std::fs::File::create(&p).map_err(|e| format!("create sparse: {e}"))?;
        f.set_len(24 << 20).map_err(|e| e.to_string())?;
        f.write_all_at(b"start", 0).map_err(|e| e.to_string())?;
        f.write_all_at(&noise(70000, 7), 8 << 20)
            .map_err(|e| e.to_string())?;
        f.write_all_at(b"end", (24 << 20) - 3)
            .map_err(|e| e.to_string())?;
    }
    set_xattr(&dir.join("hello.txt"), "user.greeting", b"bonjour")?;
    set_xattr(&dir.join("a"), "user.dir", b"a directory's attribute")?;
    set_xattr(&dir.join("empty"), "user.bin", &[0, 1, 2, 255])?;
    mknod(&dir.join("fifo"), libc::S_IFIFO | 0o640, 0)?;
    mknod(
        &dir.join("null-dev"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    )?;
    {
        let _sock = std::os::unix::net::UnixListener::bind(dir.join("sock"))
            .map_err(|e| format!("bind socket: {e}"))?;
    }
    write(&dir.join("modes/setuid"), b"#!/bin/sh\n")?;
    chmod(&dir.join("modes/setuid"), 0o4755)?;
    write(&dir.join("modes/none"), b"no access\n")?;
    chmod(&dir.join("modes/none"), 0o000)?;
    write(&dir.join("modes/setgid"), b"g\n")?;
    chmod(&dir.join("modes/setgid"), 0o2750)?;
    std::fs::create_dir_all(dir.join("modes/sticky")).map_err(|e| e.to_string())?;
    chmod(&dir.join("modes/sticky"), 0o1777)?;
    std::fs::create_dir_all(dir.join("modes/private")).map_err(|e| e.to_string())?;
    write(&dir.join("modes/private/inside"), b"x")?;
    chmod(&dir.join("modes/private"), 0o700)?;
    std::os::unix::fs::lchown(dir.join("modes/setgid"), Some(1234), Some(5678))
        .map_err(|e| format!("chown: {e} (the tests run as root)"))?;
    set_mtime(&dir.join("hello.txt"), 1_000_000_000, 123_456_789)?;
    set_mtime(&dir.join("link-rel"), 1_100_000_000, 5)?;
    set_mtime(&dir.join("a/b"), 1_200_000_000, 987_654_321)?;
    Ok(())
}

/// A tree vfat can hold: regular files and directories only.
pub fn vfat_tree(dir: &Path) -> Result<(), String> {
    write(&dir.join("hello.txt"), b"hello from the host\n")?;
    write(&dir.join("a/b/c/deep.txt"), b"deep inside\n")?;
    write(&dir.join("big.bin"), &noise(BIG, 0x5eed))?;
    write(&dir.join("empty"), b"")?;
    write(
        &dir.join("Ünïcødé dir/naïve résumé.txt"),
        "ça marche\n".as_bytes(),
    )?;
    for i in 0..20 {
        write(
            &dir.join(format!("many/f{i:02}.txt")),
            &noise(100 + i * 997, i as u64),
        )?;
    }
    Ok(())
}

/// What is compared of each file.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Permission bits (with set-uid/gid/sticky).
    pub modes: bool,
    /// uid and gid.
    pub owners: bool,
    /// mtime: 0 not at all, 1 seconds, 2 nanoseconds.
    pub mtime: u8,
    /// user.* xattrs.
    pub xattrs: bool,
    /// Which paths are the same file (hard links).
    pub hardlinks: bool,
    /// Whether a sparse file must stay sparse.
    pub holes: bool,
    /// Device numbers of device nodes.
    pub devnums: bool,
}

impl Rules {
    /// Everything.
    pub const ALL: Rules = Rules {
        modes: true,
        owners: true,
        mtime: 2,
        xattrs: true,
        hardlinks: true,
        holes: true,
        devnums: true,
    };
    /// vfat: names, types, sizes and contents.
    pub const CONTENTS: Rules = Rules {
        modes: false,
        owners: false,
        mtime: 0,
        xattrs: false,
        hardlinks: false,
        holes: false,
        devnums: false,
    };
}

fn sha256_file(p: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(p).map_err(|e| format!("open {}: {e}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// The sha256 of a whole file (to show an image was not written).
pub fn image_hash(p: &Path) -> Result<String, String> {
    sha256_file(p)
}

fn user_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
    let mut buf = vec![0u8; 4096];
    // SAFETY: the kernel writes at most buf.len() bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in buf[..n as usize].split(|&b| b == 0) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let cn = CString::new(name).expect("no NUL");
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let r = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if r >= 0 {
            v.truncate(r as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), v));
        }
    }
    out.sort();
    out
}

/// A tree's manifest under `rules`: one line per path (relative, sorted),
/// leaving out the root, `lost+found` and sockets.
pub fn manifest(root: &Path, rules: Rules) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, root, rules, &mut out, &mut inodes)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    rules: Rules,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) -> Result<(), String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read {}: {e}", dir.display()))?;
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let rel = p
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        if rel == "lost+found" {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).map_err(|e| format!("lstat {}: {e}", p.display()))?;
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            continue;
        }
        let mut line = String::new();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_fifo() {
            'p'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            'f'
        };
        line.push(kind);
        if rules.modes {
            let _ = write!(line, " mode={:o}", m.mode() & 0o7777);
        }
        if rules.owners {
            let _ = write!(line, " owner={}:{}", m.uid(), m.gid());
        }
        match rules.mtime {
            1 => {
                let _ = write!(line, " mtime={}", m.mtime());
            }
            2 => {
                let _ = write!(line, " mtime={}.{:09}", m.mtime(), m.mtime_nsec());
            }
            _ => {}
        }
        if rules.xattrs {
            for (k, v) in user_xattrs(&p) {
                let _ = write!(line, " {k}={v:?}");
            }
        }
        match kind {
            'f' => {
                let _ = write!(line, " size={} sha256={}", m.size(), sha256_file(&p)?);
                if rules.hardlinks && m.nlink() > 1 {
                    let first = inodes.entry((m.dev(), m.ino())).or_insert(rel.clone());
                    let _ = write!(line, " links={} same-as={first}", m.nlink());
                }
                if rules.holes && m.size() >= 1 << 20 && m.blocks() * 512 < m.size() / 2 {
                    line.push_str(" sparse");
                }
            }
            'l' => {
                let t = std::fs::read_link(&p).map_err(|e| e.to_string())?;
                let _ = write!(line, " -> {}", t.display());
            }
            'c' | 'b' if rules.devnums => {
                let _ = write!(
                    line,
                    " dev={}:{}",
                    libc::major(m.rdev()),
                    libc::minor(m.rdev())
                );
            }
            _ => {}
        }
        out.insert(rel, line);
        if kind == 'd' {
            walk(root, &p, rules, out, inodes)?;
        }
    }
    Ok(())
}

/// Compares two manifests; the differences, described, if any.
pub fn compare(
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => diffs.push(format!("missing {k} ({v})")),
            Some(g) if g != v => diffs.push(format!("{k}: want [{v}] got [{g}]")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            diffs.push(format!("extra {k} ({v})"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} difference(s): {}",
            diffs.len(),
            diffs
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new, empty scratch directory named after `tag` and this process.
    pub fn new(tag: &str) -> Scratch {
        let base = std::env::var_os("LKL_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let d = base.join(format!("lkl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create the scratch directory");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("LKL_TEST_KEEP").is_none() {
            // Make private, unreadable directories removable.
            let _ = Command::new("chmod")
                .args(["-R", "u+rwx", s(&self.0)])
                .status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A sparse file of `size` bytes.
pub fn sparse_file(p: &Path, size: u64) -> Result<(), String> {
    let _ = std::fs::remove_file(p);
    let f = std::fs::File::create(p).map_err(|e| format!("create {}: {e}", p.display()))?;
    f.set_len(size)
        .map_err(|e| format!("truncate {}: {e}", p.display()))
}

/// The real `mkfs` for `fs`, empty, on a new sparse image of `size`.
pub fn mkfs_empty(fs: &str, img: &Path, size: u64) -> Result<(), String> {
    sparse_file(img, size)?;
    match fs {
        "ext4" => run("mkfs.ext4", &["-q", "-F", s(img)]),
        "btrfs" => run("mkfs.btrfs", &["-q", "-f", s(img)]),
        "xfs" => run("mkfs.xfs", &["-q", "-f", s(img)]),
        "vfat" => run("mkfs.vfat", &[s(img)]),
        _ => Err(format!("no mkfs for {fs}")),
    }
    .map(drop)
}

/// An image of `fs` holding `src`, made by the real tools where they can
/// fill it (`mkfs.ext4 -d`, `mkfs.btrfs --rootdir`, mtools `mcopy -s`);
/// xfs is filled by `cptofs` (see docs/fs-tools.md).
pub fn mkfs_from(fs: &str, src: &Path, img: &Path, size: u64, cptofs: &str) -> Result<(), String> {
    sparse_file(img, size)?;
    match fs {
        "ext4" => run("mkfs.ext4", &["-q", "-F", "-d", s(src), s(img)]).map(drop),
        "btrfs" => run("mkfs.btrfs", &["-q", "-f", "--rootdir", s(src), s(img)]).map(drop),
        "xfs" => {
            run("mkfs.xfs", &["-q", "-f", s(img)])?;
            let o = run_for(
                cptofs,
                &[
                    "-q",
                    "-i",
                    s(img),
                    "-t",
                    "xfs",
                    &format!("{}/.", s(src)),
                    "/",
                ],
                Duration::from_secs(120),
            )?;
            if o.code() != Some(0) {
                return Err(format!("cptofs into xfs: {}", o.describe()));
            }
            Ok(())
        }
        "vfat" => {
            run("mkfs.vfat", &[s(img)])?;
            let mut args = vec!["-s".to_owned(), "-i".into(), s(img).to_owned()];
            let mut names: Vec<_> = std::fs::read_dir(src)
                .map_err(|e| e.to_string())?
                .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            names.sort();
            args.extend(names.iter().map(|p| s(p).to_owned()));
            args.push("::/".into());
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            run("mcopy", &a).map(drop)
        }
        _ => Err(format!("no mkfs for {fs}")),
    }
}

/// The real checker for `fs`, in its read-only mode; Ok if clean.
pub fn fsck(fs: &str, img: &Path) -> Result<(), String> {
    let (prog, args): (&str, Vec<&str>) = match fs {
        "ext4" => ("e2fsck", vec!["-fn", s(img)]),
        "btrfs" => ("btrfs", vec!["check", "--readonly", s(img)]),
        "xfs" => ("xfs_repair", vec!["-n", "-f", s(img)]),
        "vfat" => ("fsck.vfat", vec!["-n", s(img)]),
        _ => return Err(format!("no fsck for {fs}")),
    };
    let o = run_for(prog, &args, Duration::from_secs(120))?;
    if o.code() != Some(0) {
        return Err(format!(
            "{prog} finds {} not clean: {}\n{}",
            img.display(),
            o.describe(),
            o.stdout.lines().take(20).collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

pub use lkl_disk_test::have;

/// What a `mkfs.xfs -p` protofile can express: names without spaces or
/// colons, types but not sockets, modes without the sticky bit, owners,
/// contents. Copies that part of `src` into `dst` (regular files as host
/// hard links, so no data is copied) and returns the protofile for `dst`.
pub fn xfs_proto_tree(src: &Path, dst: &Path) -> Result<String, String> {
    let mut proto = String::from("lkl-fstools\n0 0\n");
    let m = std::fs::metadata(src).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dst).map_err(|e| e.to_string())?;
    let _ = writeln!(
        proto,
        "{} {} {}",
        proto_mode('d', m.mode()),
        m.uid(),
        m.gid()
    );
    proto_dir(src, dst, &mut proto, 1)?;
    proto.push_str("$\n");
    Ok(proto)
}

fn proto_mode(kind: char, mode: u32) -> String {
    format!(
        "{kind}{}{}{:03o}",
        if mode & 0o4000 != 0 { 'u' } else { '-' },
        if mode & 0o2000 != 0 { 'g' } else { '-' },
        mode & 0o777
    )
}

fn proto_dir(src: &Path, dst: &Path, proto: &mut String, depth: usize) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| e.to_string())?
        .map(|e| e.map(|e| e.file_name()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let pad = " ".repeat(depth);
    for name in names {
        let n = name.to_string_lossy().into_owned();
        if n.contains([' ', ':', '$']) {
            continue;
        }
        let (s_path, d_path) = (src.join(&name), dst.join(&name));
        let m = std::fs::symlink_metadata(&s_path).map_err(|e| e.to_string())?;
        let ft = m.file_type();
        let (uid, gid, mode) = (m.uid(), m.gid(), m.mode());
        if ft.is_socket() || (ft.is_dir() && mode & 0o1000 != 0) {
            continue;
        }
        if ft.is_dir() {
            std::fs::create_dir(&d_path).map_err(|e| e.to_string())?;
            let _ = writeln!(proto, "{pad}{n} {} {uid} {gid}", proto_mode('d', mode));
            proto_dir(&s_path, &d_path, proto, depth + 1)?;
            let _ = writeln!(proto, "{pad}$");
            chmod(&d_path, mode & 0o7777)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&s_path).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&t, &d_path).map_err(|e| e.to_string())?;
            let _ = writeln!(
                proto,
                "{pad}{n} {} {uid} {gid} {}",
                proto_mode('l', mode),
                t.display()
            );
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let (k, bits) = if ft.is_fifo() {
                ('p', libc::S_IFIFO)
            } else if ft.is_char_device() {
                ('c', libc::S_IFCHR)
            } else {
                ('b', libc::S_IFBLK)
            };
            mknod(&d_path, bits | (mode & 0o7777), m.rdev())?;
            let dev = if k == 'p' {
                String::new()
            } else {
                format!(" {} {}", libc::major(m.rdev()), libc::minor(m.rdev()))
            };
            let _ = writeln!(proto, "{pad}{n} {} {uid} {gid}{dev}", proto_mode(k, mode));
        } else {
            std::fs::hard_link(&s_path, &d_path).map_err(|e| e.to_string())?;
            let _ = writeln!(
                proto,
                "{pad}{n} {} {uid} {gid} {}",
                proto_mode('-', mode),
                s(&s_path)
            );
            continue;
        }
        std::os::unix::fs::lchown(&d_path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
