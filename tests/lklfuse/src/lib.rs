//! End-to-end tests of lklfuse on real images: helpers.
//!
//! Images come from the real `mkfs.*`; lklfuse runs as a child process
//! (`CARGO_BIN_EXE_lklfuse-e2e`, the tool under a test name) and the real
//! programs (`cp -a`, `tar`, `find | xargs`, `setfattr`, ...) work on its
//! mount point, as root or as an unprivileged user (`setpriv`). Every mount
//! is held by a [`Mount`] guard that unmounts it on drop (`fusermount3 -u`,
//! then `-uz` as a last resort), so a failing test leaves no stale mount;
//! a [`Scratch`] directory is removed on drop.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use lkl_disk_test::{have, noise};
pub use lkl_fstools_test::{compare, fsck, manifest, mkfs_empty, s, Rules};

pub use lkl_fstools_test::fuse::{
    command, is_mounted, run_as as run, run_cmd, sh, Mount, Outcome, User, NOBODY,
};

/// A directory under the system temp dir, removed on drop unless kept.
#[derive(Debug)]
pub struct Scratch {
    /// The directory.
    pub path: PathBuf,
    /// Keep it (for a look after a failure).
    pub keep: bool,
}

impl Scratch {
    /// A new empty directory, world-searchable (an unprivileged user
    /// works in subdirectories of it).
    pub fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("lklfuse-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("make scratch dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod scratch dir");
        Scratch { path, keep: false }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn write(p: &Path, data: &[u8]) -> Outcome {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    std::fs::write(p, data).map_err(|e| format!("write {}: {e}", p.display()))
}

/// The source tree: nested directories, a 50 MB file, empty files, a
/// sparse file, unicode names and, unless `fat`, symlinks, hard links,
/// odd modes, a fifo and xattrs.
pub fn make_tree(root: &Path, fat: bool) -> Outcome {
    write(&root.join("a/b/c/d/deep.txt"), b"deep\n")?;
    write(&root.join("big.bin"), &noise(50 << 20, 7))?;
    write(&root.join("empty"), b"")?;
    write(&root.join("a/empty2"), b"")?;
    write(&root.join("ünïcødé/日本語.txt"), "こんにちは\n".as_bytes())?;
    write(&root.join("a/b/small.dat"), &noise(12345, 3))?;
    for i in 0..40 {
        write(
            &root.join(format!("many/f{i:03}")),
            &noise(100 + i * 37, i as u64),
        )?;
    }
    let sparse = root.join("sparse.img");
    let f = std::fs::File::create(&sparse).map_err(|e| e.to_string())?;
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).map_err(|e| e.to_string())?;
    f.write_all_at(b"tail", (20 << 20) - 4)
        .map_err(|e| e.to_string())?;
    drop(f);
    if fat {
        return Ok(());
    }
    let ln = |t: &str, l: &str| {
        std::os::unix::fs::symlink(t, root.join(l)).map_err(|e| format!("symlink {l}: {e}"))
    };
    ln("a/b/c/d/deep.txt", "link-to-deep")?;
    ln("../nowhere", "a/dangling")?;
    ln("ünïcødé", "dir-link")?;
    std::fs::hard_link(root.join("a/b/small.dat"), root.join("hard1"))
        .map_err(|e| e.to_string())?;
    std::fs::hard_link(root.join("a/b/small.dat"), root.join("a/hard2"))
        .map_err(|e| e.to_string())?;
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m))
            .map_err(|e| format!("chmod {p}: {e}"))
    };
    write(&root.join("modes/setuid"), b"#!/bin/sh\n")?;
    write(&root.join("modes/none"), b"x")?;
    write(&root.join("modes/exec"), b"x")?;
    std::fs::create_dir_all(root.join("modes/sticky")).map_err(|e| e.to_string())?;
    mode("modes/setuid", 0o4755)?;
    mode("modes/none", 0o000)?;
    mode("modes/exec", 0o711)?;
    mode("modes/sticky", 0o1777)?;
    let fifo = CString::new(root.join("modes/fifo").as_os_str().as_bytes()).expect("path");
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) } != 0 {
        return Err(format!("mkfifo: {}", std::io::Error::last_os_error()));
    }
    run(
        None,
        "setfattr",
        &[
            "-n",
            "user.color",
            "-v",
            "blue",
            s(&root.join("a/b/small.dat")),
        ],
    )?;
    run(
        None,
        "setfattr",
        &["-n", "user.empty", s(&root.join("empty"))],
    )?;
    Ok(())
}

/// A tree of `n` small files in nested directories, packed as `tar`.
pub fn make_tarball(dir: &Path, tar: &Path, n: usize) -> Outcome {
    for i in 0..n {
        let p = dir.join(format!("d{:02}/e{:02}/file{i:05}.txt", i % 23, i % 7));
        write(&p, &noise(50 + (i * 131) % 3000, i as u64 + 1))?;
    }
    run(None, "tar", &["-cf", s(tar), "-C", s(dir), "."]).map(drop)
}

/// Gives `path` (recursively) to `uid`.
pub fn chown_r(path: &Path, uid: u32) -> Outcome {
    run(None, "chown", &["-R", &format!("{uid}:{uid}"), s(path)]).map(drop)
}
