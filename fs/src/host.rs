//! The tools' guards on the host side: never writing where they read
//! ([`same_file`]), and removing half-written output when told to stop
//! ([`on_signals_remove_partial`], [`Partial`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// What identifies a file on the host: its device and inode, and for a
/// block device the device it stands for (two nodes of one disk are the
/// same disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    rdev: Option<u64>,
}

impl FileId {
    /// The id of `path`, following symlinks; `None` if it does not exist
    /// (or cannot be examined).
    pub fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId::from_meta(&m))
    }

    /// The id of an examined file.
    pub fn from_meta(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            rdev: m.file_type().is_block_device().then(|| m.rdev()),
        }
    }

    /// Whether both name the same file (or the same block device).
    pub fn same(&self, other: &FileId) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
            || (self.rdev.is_some() && self.rdev == other.rdev)
    }

    /// The `(st_dev, st_ino)` pair.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Whether `a` and `b` are the same existing file, through any path, hard
/// link or symlink (or two nodes of one block device).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (FileId::of(a), FileId::of(b)) {
        (Some(x), Some(y)) => x.same(&y),
        _ => false,
    }
}

/// Files being written that a termination signal must remove.
struct Registry {
    next: u64,
    files: Vec<(u64, PathBuf)>,
}

static PARTIAL: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    files: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    PARTIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file being written: removed by [`on_signals_remove_partial`]'s
/// thread if a termination signal comes before it is finished. Dropping
/// it only forgets it (the file stays).
#[derive(Debug)]
pub struct Partial {
    id: u64,
    path: PathBuf,
}

impl Partial {
    /// Creates `path` with `create`, registered as partial; the
    /// registration and the creation are one step for the signal thread
    /// (it never sees a file created but not registered).
    ///
    /// # Errors
    /// Those of `create`.
    pub fn create<T>(
        path: &Path,
        create: impl FnOnce(&Path) -> io::Result<T>,
    ) -> io::Result<(T, Partial)> {
        let mut reg = registry();
        let made = create(path)?;
        reg.next += 1;
        let id = reg.next;
        reg.files.push((id, path.to_path_buf()));
        Ok((
            made,
            Partial {
                id,
                path: path.to_path_buf(),
            },
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the finished file to `to`, as one step for the signal
    /// thread (it removes either the partial file before, or nothing).
    ///
    /// # Errors
    /// Those of `rename`; the file is still registered then.
    pub fn rename_to(self, to: &Path) -> io::Result<()> {
        let mut reg = registry();
        std::fs::rename(&self.path, to)?;
        reg.files.retain(|(i, _)| *i != self.id);
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        registry().files.retain(|(i, _)| *i != self.id);
    }
}

/// The signals that end a tool: SIGINT, SIGTERM, SIGHUP.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Takes SIGINT, SIGTERM and SIGHUP (those not ignored when the process
/// started, as under `nohup`) on a thread of its own: on one, every
/// [`Partial`] file still registered is removed, `prog` says so on stderr,
/// and the process exits with status 128 + the signal's number.
///
/// The signals are blocked in the calling thread and so in every thread
/// started after it: call this first, before any thread exists (the
/// kernel's threads included). The process exits without unmounting:
/// only tools that do not write their image may use it.
///
/// # Errors
/// The thread cannot be started.
pub fn on_signals_remove_partial(prog: &'static str) -> io::Result<()> {
    // SAFETY: a sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe { libc::sigemptyset(&mut set) };
    for s in SIGNALS {
        // SAFETY: a sigaction is plain data; sigaction only reads the
        // current disposition into it.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above; a null new action changes nothing.
        let r = unsafe { libc::sigaction(s, std::ptr::null(), &mut old) };
        // A signal ignored by whoever started us (nohup) stays ignored.
        if r == 0 && old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: `set` is a valid sigset_t.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    // SAFETY: blocks the signals in `set` for this thread (and its future
    // threads); no memory is involved beyond `set`.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    std::thread::Builder::new()
        .name(format!("{prog}-signals"))
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` holds the blocked signals; sigwait writes `sig`.
            while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
            // Held until the exit: nothing is created, renamed or
            // registered from now on.
            let reg = registry();
            let name = match sig {
                libc::SIGINT => "SIGINT",
                libc::SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            let mut removed = Vec::new();
            for (_, p) in &reg.files {
                if std::fs::remove_file(p).is_ok() {
                    removed.push(p.display().to_string());
                }
            }
            if removed.is_empty() {
                eprintln!("{prog}: stopped by {name}");
            } else {
                eprintln!("{prog}: stopped by {name}: removed {}", removed.join(", "));
            }
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_through_links() {
        let d = std::env::temp_dir().join(format!("lkl-fs-same-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let a = d.join("a");
        std::fs::write(&a, "x").unwrap();
        std::fs::hard_link(&a, d.join("hard")).unwrap();
        std::os::unix::fs::symlink(&a, d.join("sym")).unwrap();
        std::fs::write(d.join("other"), "x").unwrap();
        assert!(same_file(&a, &d.join("hard")));
        assert!(same_file(&a, &d.join("sym")));
        assert!(same_file(&a, &d.join(".").join("a")));
        assert!(!same_file(&a, &d.join("other")));
        assert!(!same_file(&a, &d.join("missing")));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn partial_files_register_and_rename() {
        let d = std::env::temp_dir().join(format!("lkl-fs-partial-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (_, p) = Partial::create(&d.join("t.tmp"), |p| std::fs::File::create(p)).unwrap();
        assert_eq!(registry().files.len(), 1);
        p.rename_to(&d.join("t")).unwrap();
        assert!(registry().files.is_empty());
        assert!(d.join("t").exists() && !d.join("t.tmp").exists());
        let (_, p) = Partial::create(&d.join("u"), |p| std::fs::File::create(p)).unwrap();
        drop(p);
        assert!(registry().files.is_empty() && d.join("u").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
