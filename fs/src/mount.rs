//! An image mounted inside a kernel booted for it.

use std::path::{Path, PathBuf};

use lkl::{DiskError, Errno};

use crate::probe::probe_image;
use crate::FsError;

/// How to open and mount an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// The image file (or block device).
    pub image: PathBuf,
    /// Open the image read-only and mount read-only: nothing is ever
    /// written to it.
    pub read_only: bool,
    /// With `read_only`: give the kernel a copy-on-write disk
    /// ([`lkl::Disk::open_overlay`]) instead of a read-only one. The file
    /// is still opened `O_RDONLY` and never written, but a file system
    /// that must write to mount (a journal to replay after a crash or a
    /// killed writer, orphans to clean up) can, into memory: ext4 and xfs
    /// replay their log on a read-only mount of a writable device, btrfs
    /// its log tree. Default `true`; `false` gives a read-only device, on
    /// which such an image fails to mount with `EROFS`.
    pub overlay: bool,
    /// The partition to mount (1-based, MBR or GPT), or the whole image.
    pub partition: Option<u32>,
    /// The file system type (`ext4`, `btrfs`, `xfs`, `vfat`, ...), or
    /// `None` to detect it ([`crate::probe_image`]).
    pub fstype: Option<String>,
    /// The file system's mount data (`"errors=remount-ro"`...).
    pub options: Option<String>,
    /// The kernel's memory in bytes. Default 100 MiB (as upstream's tools).
    pub memory: u64,
    /// Print the kernel's messages on stderr (upstream's `-p`); otherwise
    /// only emergencies are.
    pub printk: bool,
    /// Halt the kernel on close, drop, or a failed mount (default). A
    /// program that exits right after may set `false`: closing then
    /// unmounts and writes everything back but leaves the kernel to the
    /// process's exit, which is quicker and never waits on the halt.
    pub halt: bool,
    /// The disk's read-ahead in KiB (`/sys/block/vdX/queue/read_ahead_kb`);
    /// 0 leaves the kernel's default (128). Default 4096: large files are
    /// read in few, large block requests, each of which costs the kernel a
    /// few host thread switches.
    pub read_ahead_kb: u32,
}

impl MountOptions {
    /// Image `image` read-only, type detected, whole image, 100 MiB.
    pub fn read_only(image: impl Into<PathBuf>) -> MountOptions {
        MountOptions {
            image: image.into(),
            read_only: true,
            overlay: true,
            partition: None,
            fstype: None,
            options: None,
            memory: 100 << 20,
            printk: false,
            halt: true,
            read_ahead_kb: 4096,
        }
    }

    /// Image `image` read-write, type detected, whole image, 100 MiB.
    pub fn read_write(image: impl Into<PathBuf>) -> MountOptions {
        MountOptions {
            read_only: false,
            ..MountOptions::read_only(image)
        }
    }
}

/// A mounted image and the kernel serving it. [`Mounted::close`] (or drop)
/// unmounts it, with everything written back to the image, and halts the
/// kernel.
#[derive(Debug)]
pub struct Mounted {
    kernel: Option<lkl::Kernel>,
    path: PathBuf,
    fstype: String,
    read_only: bool,
    mounted: bool,
    halt: bool,
    disk: lkl::DiskId,
    partition: Option<u32>,
}

impl Mounted {
    /// Opens `opts.image`, adds it as a disk, boots the kernel and mounts
    /// the file system on `/mnt/vdaN` inside it.
    ///
    /// # Errors
    /// [`FsError::Read`], [`FsError::NoPartition`] and
    /// [`FsError::UnknownFs`] from probing; [`FsError::Disk`] if the image
    /// cannot be opened or locked; [`FsError::Kernel`] if the kernel does
    /// not boot (one kernel per process); [`FsError::UnknownType`] for a
    /// type the kernel lacks; [`FsError::Mount`] if the kernel refuses to
    /// mount it (corrupt, truncated, not that file system).
    pub fn open(opts: &MountOptions) -> Result<Mounted, FsError> {
        let fstype = match &opts.fstype {
            Some(t) => t.clone(),
            None => probe_image(&opts.image, opts.partition)?.name().to_owned(),
        };
        let disk = if opts.read_only && opts.overlay {
            lkl::Disk::open_overlay(&opts.image)?
        } else {
            lkl::Disk::open(&opts.image, opts.read_only)?
        };
        let id = lkl::add_disk(disk)?;
        let boot = lkl::BootOptions {
            memory: opts.memory,
            loglevel: if opts.printk { None } else { Some(1) },
            cmdline: String::new(),
        };
        let kernel = if opts.printk {
            lkl::boot(&boot)?
        } else {
            // The banner is printed before `loglevel=` is read.
            lkl::console::quiet(|| lkl::boot(&boot))?
        };
        let mut m = Mounted {
            kernel: Some(kernel),
            path: PathBuf::new(),
            fstype: fstype.clone(),
            read_only: opts.read_only,
            mounted: false,
            halt: opts.halt,
            disk: id,
            partition: opts.partition,
        };
        // Files come out with the modes they are given.
        let _ = lkl::umask(0);
        let log_before = kernel_log().len();
        match lkl::mount_disk(
            id,
            opts.partition,
            &fstype,
            opts.options.as_deref(),
            opts.read_only,
        ) {
            Ok(path) => {
                m.path = path;
                m.mounted = true;
                if opts.read_ahead_kb > 0 {
                    // Only a tuning: a kernel without the file is still fine.
                    let _ = set_read_ahead(id, opts.read_ahead_kb);
                }
                Ok(m)
            }
            Err(DiskError::Sys { errno, op, .. }) if op.starts_with("mount") => {
                if errno == Errno::ENODEV {
                    let known = kernel_filesystems();
                    if !known.contains(&fstype) {
                        return Err(FsError::UnknownType { fstype, known });
                    }
                }
                Err(FsError::Mount {
                    path: opts.image.clone(),
                    partition: opts.partition,
                    fstype,
                    errno,
                    options: opts.options.clone().filter(|o| !o.is_empty()),
                    kernel: kernel_log_since(log_before),
                })
            }
            Err(DiskError::NoPartition { partition, .. }) => {
                let found = std::fs::File::open(&opts.image)
                    .ok()
                    .and_then(|f| crate::probe::read_partitions(&f, &opts.image).ok())
                    .map(|p| p.iter().map(|p| p.number).collect())
                    .unwrap_or_default();
                Err(FsError::NoPartition {
                    path: opts.image.clone(),
                    partition,
                    found,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Where the file system is mounted inside LKL (`/mnt/vda`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system type mounted.
    pub fn fstype(&self) -> &str {
        &self.fstype
    }

    /// Whether it is mounted read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// A reader of files' data straight from the image
    /// ([`crate::direct`]), where that reads what the kernel would: an
    /// ext2/3/4 mount that is read-only, on a disk that reads exactly as
    /// its image (nothing was written to its copy-on-write overlay: no
    /// journal replayed, no orphan cleaned up, so no block the kernel
    /// holds differs from the image's). `None` otherwise.
    pub fn direct_reader(&self) -> Option<crate::direct::DirectReader> {
        if !self.mounted || !self.read_only || !matches!(&*self.fstype, "ext2" | "ext3" | "ext4") {
            return None;
        }
        let disk = lkl::disk_reader(self.disk).ok()?;
        if !disk.reads_as_image() {
            return None;
        }
        let start = match self.partition {
            Some(n) => lkl::partition_start(self.disk, n).ok()?,
            None => 0,
        };
        Some(crate::direct::DirectReader::new(disk, start))
    }

    /// Writes everything back (`syncfs`), unmounts (returning once the
    /// device is released and every block is in the image) and halts the
    /// kernel (unless [`MountOptions::halt`] is false).
    ///
    /// # Errors
    /// The first of: [`FsError::Sys`] from `syncfs`, [`FsError::Disk`]
    /// from the unmount (`EBUSY` while a file is open), [`FsError::Kernel`]
    /// from the halt. The kernel is halted in every case.
    pub fn close(mut self) -> Result<(), FsError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FsError> {
        let mut result = Ok(());
        if self.mounted {
            self.mounted = false;
            if !self.read_only {
                if let Err(e) = crate::ops::sync_fs(&self.path) {
                    result = Err(e);
                }
            }
            if let Err(e) = lkl::umount_disk(&self.path) {
                if result.is_ok() {
                    result = Err(e.into());
                }
            }
        }
        let Some(k) = self.kernel.take() else {
            return result;
        };
        if !self.halt {
            // Left running for the process's exit (MountOptions::halt):
            // dropping a Kernel does not halt it.
            drop(k);
            return result;
        }
        {
            if let Err(e) = k.halt() {
                if result.is_ok() {
                    result = Err(e.into());
                }
            }
        }
        result
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The file system types the running kernel offers, from
/// `/proc/filesystems` (mounted on `/proc` for this if needed).
pub fn kernel_filesystems() -> Vec<String> {
    let _ = lkl::mkdir("/proc", 0o555);
    if lkl::stat("/proc/filesystems").is_err() {
        let _ = lkl::mount("proc", "/proc", "proc", 0, None);
    }
    let Ok(f) = crate::ops::open(Path::new("/proc/filesystems"), crate::ops::O_RDONLY, 0) else {
        return Vec::new();
    };
    let mut buf = vec![0u8; 8192];
    let n = f.read_full(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The kernel's log buffer (`syslog(SYSLOG_ACTION_READ_ALL)`), or
/// nothing if it cannot be read.
pub fn kernel_log() -> Vec<u8> {
    const READ_ALL: std::ffi::c_long = 3;
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: syslog writes at most `buf.len()` bytes into `buf`, which
    // lives across the call.
    let r = unsafe {
        lkl::syscall(
            lkl::sys::__lkl__NR_syslog as std::ffi::c_long,
            [
                READ_ALL,
                buf.as_mut_ptr() as std::ffi::c_long,
                buf.len() as std::ffi::c_long,
                0,
                0,
                0,
            ],
        )
    };
    match r {
        Ok(n) if n > 0 => {
            buf.truncate(n as usize);
            buf
        }
        _ => Vec::new(),
    }
}

/// The kernel's messages logged after byte `from` of its log, without
/// their level and time stamp: what it said about a refused mount.
pub fn kernel_log_since(from: usize) -> Vec<String> {
    let log = kernel_log();
    let text = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
    text.lines()
        .map(|l| {
            // "<3>[    1.234567] ext4: Unknown parameter 'x'"
            let l = l
                .strip_prefix('<')
                .and_then(|r| r.split_once('>'))
                .map_or(l, |r| r.1);
            let l = l
                .strip_prefix('[')
                .and_then(|r| r.split_once("] "))
                .map_or(l, |r| r.1);
            l.trim().to_owned()
        })
        .filter(|l| !l.is_empty())
        .take(8)
        .collect()
}

/// Sets the read-ahead of disk `id`'s queue, in KiB.
pub fn set_read_ahead(id: lkl::DiskId, kb: u32) -> Result<(), FsError> {
    let name = lkl::disk_name(id)?;
    let path = PathBuf::from(format!("/sys/block/{name}/queue/read_ahead_kb"));
    let f = crate::ops::open(&path, crate::ops::O_WRONLY, 0)?;
    f.write_all(kb.to_string().as_bytes())
}
