//! Helpers for the disk tests: host-side images built with the real
//! `mkfs.*` tools and file access inside LKL.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lkl::sys;

/// A failed step, with what was being done.
pub type Outcome = Result<(), String>;

/// Runs a host program, failing with its output unless it exits 0.
pub fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{prog} {args:?}: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// Whether `prog` is on PATH (or in /sbin, /usr/sbin).
pub fn have(prog: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/sbin", "/usr/sbin"])
        .any(|d| Path::new(d).join(prog).exists());
    found
}

/// A sparse file of `size` bytes.
pub fn sparse(path: &Path, size: u64) -> Result<(), String> {
    let f = File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    f.set_len(size)
        .map_err(|e| format!("truncate {}: {e}", path.display()))
}

/// Copies all of image `part` into `image` at byte `offset`.
pub fn place(image: &Path, part: &Path, offset: u64) -> Result<(), String> {
    let data = std::fs::read(part).map_err(|e| format!("read {}: {e}", part.display()))?;
    let f = File::options()
        .write(true)
        .open(image)
        .map_err(|e| format!("open {}: {e}", image.display()))?;
    f.write_all_at(&data, offset)
        .map_err(|e| format!("write {}: {e}", image.display()))
}

/// Copies `len` bytes of `image` from `offset` into a new file `out`.
pub fn extract(image: &Path, offset: u64, len: u64, out: &Path) -> Result<(), String> {
    let f = File::open(image).map_err(|e| format!("open {}: {e}", image.display()))?;
    let mut data = vec![0u8; len as usize];
    f.read_exact_at(&mut data, offset)
        .map_err(|e| format!("read {}: {e}", image.display()))?;
    std::fs::write(out, data).map_err(|e| format!("write {}: {e}", out.display()))
}

/// Deterministic pseudo-random bytes (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The source tree the images are made from: `(relative path, contents)`.
pub fn source_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("hello.txt", b"hello from the host\n".to_vec()),
        ("empty", Vec::new()),
        ("nested/a/b/deep.txt", b"deep inside\n".to_vec()),
        ("big.bin", noise(3 << 20, 0x5eed)),
    ]
}

/// Writes [`source_files`] under `dir`.
pub fn write_tree(dir: &Path) -> Result<(), String> {
    for (rel, data) in source_files() {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent"))
            .and_then(|()| std::fs::write(&p, data))
            .map_err(|e| format!("write {}: {e}", p.display()))?;
    }
    Ok(())
}

/// A whole file inside LKL.
pub fn lkl_read(path: impl AsRef<Path>) -> Result<Vec<u8>, String> {
    let path = path.as_ref();
    let fd = lkl::open(path, sys::LKL_O_RDONLY as i32, 0)
        .map_err(|e| format!("open {} in lkl: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let r = loop {
        match lkl::read(fd, &mut buf) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(format!("read {} in lkl: {e}", path.display())),
        }
    };
    let _ = lkl::close(fd);
    r
}

/// Creates (or truncates) a file inside LKL with `data`.
pub fn lkl_write(path: impl AsRef<Path>, data: &[u8]) -> Result<(), String> {
    let path = path.as_ref();
    let fd =
        lkl::creat(path, 0o644).map_err(|e| format!("creat {} in lkl: {e}", path.display()))?;
    let mut done = 0;
    let r = loop {
        if done == data.len() {
            break Ok(());
        }
        match lkl::write(fd, &data[done..]) {
            Ok(n) => done += n,
            Err(e) => break Err(format!("write {} in lkl: {e}", path.display())),
        }
    };
    let _ = lkl::close(fd);
    r
}

/// Checks that every file of [`source_files`] under `mnt` (inside LKL)
/// has its contents.
pub fn check_tree(mnt: &Path) -> Outcome {
    for (rel, want) in source_files() {
        let got = lkl_read(mnt.join(rel))?;
        if got != want {
            return Err(format!(
                "{rel}: {} bytes read, {} expected, contents differ",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

/// A scratch directory for one test run.
pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lkl-disk-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}
