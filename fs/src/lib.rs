//! Files inside LKL: open an image, detect its file system, mount it, and
//! walk, read and write its files.
//!
//! This is the library under `fs2tar`, `cptofs`/`cpfromfs` and `lklfuse`.
//! Its contract:
//!
//! - [`probe`]: `blkid`-style detection ([`probe_image`]) of ext2/3/4,
//!   btrfs, xfs and vfat from the image's bytes, of the whole image or of
//!   partition N of its MBR or GPT table. Any bytes give an answer or an
//!   error, never a panic.
//! - [`Mounted::open`]: opens the image (read-only: `O_RDONLY` and a
//!   copy-on-write virtio-blk device whose writes stay in memory, so
//!   nothing can be written to it while a journal can still be replayed
//!   for the mount; fifos, sockets and character devices are refused
//!   before any read), adds
//!   the disk, boots LKL with the memory asked for, and mounts the file
//!   system (the type given, or probed) with the options given. The handle
//!   knows the mount's path inside LKL ([`Mounted::path`]).
//!   [`Mounted::close`] syncs, unmounts (waiting until the device is
//!   released, so every block is in the image file) and halts the kernel;
//!   dropping the handle does the same, ignoring errors. One kernel per
//!   process: a second [`Mounted::open`] in the same process fails.
//! - [`host`]: the tools' host-side guards: [`host::same_file`] (never
//!   write where you read) and [`host::Partial`] files removed on
//!   SIGINT/SIGTERM/SIGHUP ([`host::on_signals_remove_partial`]).
//! - [`ops`]: typed file operations on LKL paths and descriptors (stat
//!   with nanosecond times, open/read/write/pread/pwrite, directories,
//!   links, device nodes, xattrs, ownership, modes, times,
//!   `SEEK_DATA`/`SEEK_HOLE`, `fsync`/`syncfs`). Each error is an
//!   [`FsError::Sys`] naming the operation, the path and the errno.
//!
//! ```no_run
//! use lkl_fs::{Mounted, MountOptions, ops};
//! let m = Mounted::open(&MountOptions::read_only("disk.img"))?;
//! for entry in ops::read_dir(m.path())? {
//!     let entry = entry?;
//!     let st = ops::lstat(&m.path().join(&entry.name))?;
//!     println!("{:?} {:o} {}", entry.name, st.mode, st.size);
//! }
//! m.close()?;
//! # Ok::<(), lkl_fs::FsError>(())
//! ```

use std::path::PathBuf;

pub mod direct;
pub mod host;
pub mod mount;
pub mod ops;
pub mod probe;
pub mod readahead;

pub use direct::DirectReader;
pub use lkl::Errno;
pub use mount::{MountOptions, Mounted};
pub use ops::{DirEntry, File, FileKind, Stat, Timespec};
pub use probe::{probe_bytes, probe_image, read_partitions, FsType, Partition};
pub use readahead::ReadAhead;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The image could not be read from the host.
    #[error("cannot read image {path}: {error}")]
    Read {
        /// The image.
        path: PathBuf,
        /// Why (in the message, not a separate source: printed once).
        error: std::io::Error,
    },
    /// No signature of a known file system was found.
    #[error(
        "cannot detect the file system of {path}{}: no ext2/ext3/ext4, btrfs, xfs or vfat \
         signature{}; give the type with -t",
        partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
        if *partitioned { " (the image has a partition table: choose a partition with -P N)" } else { "" }
    )]
    UnknownFs {
        /// The image.
        path: PathBuf,
        /// The partition probed.
        partition: Option<u32>,
        /// Whether the image holds a partition table (and no partition
        /// was asked for).
        partitioned: bool,
    },
    /// The partition asked for is not in the image's table.
    #[error("image {path} has no partition {partition} (partitions found: {})",
        if found.is_empty() { "none".to_owned() } else { found.iter().map(u32::to_string).collect::<Vec<_>>().join(", ") })]
    NoPartition {
        /// The image.
        path: PathBuf,
        /// The partition asked for.
        partition: u32,
        /// The partitions there are.
        found: Vec<u32>,
    },
    /// A file system type the kernel does not know.
    #[error("unknown file system type {fstype:?}: this kernel knows {}", known.join(", "))]
    UnknownType {
        /// The type asked for.
        fstype: String,
        /// The types the kernel offers (from `/proc/filesystems`).
        known: Vec<String>,
    },
    /// The image or disk could not be opened, added or mounted.
    #[error(transparent)]
    Disk(#[from] lkl::DiskError),
    /// The kernel could not be booted or halted.
    #[error("kernel: {0}")]
    Kernel(#[from] lkl::Error),
    /// Mounting failed.
    #[error(
        "cannot mount {path}{} as {fstype}: {errno}{}{}",
        partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
        said(kernel),
        hint(*errno, options.as_deref(), kernel, "-p")
    )]
    Mount {
        /// The image.
        path: PathBuf,
        /// The partition.
        partition: Option<u32>,
        /// The type tried.
        fstype: String,
        /// The kernel's answer.
        errno: Errno,
        /// The mount options given, if any.
        options: Option<String>,
        /// What the kernel logged while it refused (its reason, e.g.
        /// `ext4: Unknown parameter 'x'`).
        kernel: Vec<String>,
    },
    /// A system call inside LKL failed.
    #[error("{op} {path}: {errno}")]
    Sys {
        /// What was being done (`open`, `getdents64`, `lgetxattr user.x`).
        op: &'static str,
        /// The path inside LKL it was done to.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// The kernel's messages about a refused mount, for the error message.
pub fn said(kernel: &[String]) -> String {
    if kernel.is_empty() {
        String::new()
    } else {
        format!(" (the kernel says: {})", kernel.join("; "))
    }
}

/// What a mount error most likely means; `show` is the tool's option that
/// shows the kernel's messages (`-p`, `-d`).
pub fn hint(errno: Errno, options: Option<&str>, kernel: &[String], show: &str) -> String {
    let about_options = kernel.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("parameter") || l.contains("option") || l.contains("bad value")
    });
    // EUCLEAN (117) is what file systems return as EFSCORRUPTED.
    match (errno, options) {
        (Errno::EINVAL, Some(o)) if about_options || kernel.is_empty() => {
            format!(": the file system rejected the mount options '{o}'")
        }
        (Errno::EINVAL | Errno::EIO | Errno(117), _) => format!(
            ": the image is not this file system, or it is corrupt or truncated{}",
            if kernel.is_empty() {
                format!(" (run with {show} to see the kernel's messages)")
            } else {
                String::new()
            }
        ),
        (Errno::EROFS | Errno::EACCES, _) => {
            ": the file system can only be mounted read-only".into()
        }
        _ => String::new(),
    }
}

impl FsError {
    /// The errno of a failed system call, if that is what this is.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            FsError::Sys { errno, .. } | FsError::Mount { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
