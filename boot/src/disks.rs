//! The config's `disks`: images opened and added before the boot ([`attach`]), mounted
//! at their paths inside LKL after it ([`mount`]), the one at `/` made the root of
//! every LKL process made afterwards, and left clean at the end ([`Mounts::unmount`]).
//!
//! Each disk is first mounted by [`lkl::mount_disk`] (device node, sysfs, the kernel's
//! message on a refusal), then moved to a staging directory of LKL's boot root file
//! system, then to its path: inside the root image if there is one (its mount point
//! made if missing, unless that image is read-only), else in the boot root file
//! system. Last ([`Mounts::enter_root`], after the configuration's network keys were
//! applied in LKL's own root file system, so that nothing of them is written to an
//! image), the root image is moved onto `/` and made the root of `host0` (whose fs
//! the boot thread's LKL task shares), which every fresh LKL process copies, with
//! `proc`, `sysfs` and `devtmpfs` mounted on its `/proc`, `/sys` and `/dev` where the
//! image has those directories (nothing is ever made in an image for them).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lkl::{sys, Errno};
use lkl_fs::FsError;
use lkl_hijack_config::{Config, Disk};

/// Where disks wait between their first mount and their place (in LKL's boot root
/// file system, never in an image).
const STAGING: &str = "/.lkl-disks";
/// The read-ahead given to each disk, in KiB (as the file-system tools).
const READ_AHEAD_KB: u32 = 4096;
/// How long the end waits for a disk's device to be released after its unmount.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a disk could not be opened or mounted. Each message names the `disks[N]`
/// entry (the `--root`/`--mount` flags come after the config's own entries) and the
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image cannot be opened: missing, a directory or another non-image, too
    /// small.
    #[error("{key}.image: {source}{}", open_fix(source))]
    Open {
        /// `disks[N]`.
        key: String,
        /// What opening it said.
        source: lkl::DiskError,
    },
    /// Another program (or another entry of this run) holds a lock on the image.
    #[error(
        "{key}.image: {} is in use: another program holds a lock on it (an lklfuse or \
         another lkl-run that has it mounted, or another entry of this run naming the same \
         image): stop that program first (`fuser -v {}` names it){}",
        path.display(), path.display(),
        if *read_only { "" } else { ", or mount it read-only in both (\"readonly\": \"1\", :ro)" }
    )]
    Locked {
        /// `disks[N]`.
        key: String,
        /// The image.
        path: PathBuf,
        /// Whether it was opened read-only.
        read_only: bool,
    },
    /// No known file system signature.
    #[error(
        "{key}: cannot detect the file system of {}{}: no ext2/ext3/ext4, btrfs, xfs or vfat \
         signature{}; give its type (\"type\" in the disk's entry) if the kernel knows it",
        path.display(),
        partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
        if *partitioned { " (the image has a partition table: choose a partition with :part=N or \"partition\")" } else { "" }
    )]
    Detect {
        /// `disks[N]`.
        key: String,
        /// The image.
        path: PathBuf,
        /// The partition probed.
        partition: Option<u32>,
        /// Whether the whole image was probed and holds a partition table.
        partitioned: bool,
    },
    /// The image could not be read, or has no such partition.
    #[error("{key}: {source}")]
    Probe {
        /// `disks[N]` (`.partition` for a missing partition).
        key: String,
        /// What probing it said.
        source: Box<FsError>,
    },
    /// The disk could not be given to the kernel.
    #[error("{key}: cannot add the disk {}: {source}", path.display())]
    Add {
        /// `disks[N]`.
        key: String,
        /// The image.
        path: PathBuf,
        /// Why.
        source: lkl::DiskError,
    },
    /// A type the kernel does not have.
    #[error("{key}.type: unknown file system type {fstype:?}: this kernel knows {}", known.join(", "))]
    UnknownType {
        /// `disks[N]`.
        key: String,
        /// The type asked for.
        fstype: String,
        /// What the kernel offers.
        known: Vec<String>,
    },
    /// The kernel refused the mount.
    #[error(transparent)]
    Mount(Box<Refusal>),
    /// The mount point is missing in a read-only root image.
    #[error(
        "{key}.path: {} does not exist in the root image {}, which is read-only: make the \
         directory in the image, or mount the root read-write",
        path.display(), root.display()
    )]
    NoMountPoint {
        /// `disks[N]`.
        key: String,
        /// The path in the tree's view.
        path: PathBuf,
        /// The root image.
        root: PathBuf,
    },
    /// The mount point exists but is not a directory.
    #[error("{key}.path: {} is not a directory in the tree's root: give the path of a directory", path.display())]
    NotADirectory {
        /// `disks[N]`.
        key: String,
        /// The path in the tree's view.
        path: PathBuf,
    },
    /// The staging directory was asked for as a mount point.
    #[error("{key}.path: {STAGING} is where disks wait to be mounted: choose another path")]
    Reserved {
        /// `disks[N]`.
        key: String,
    },
    /// A step of putting the disks in place failed.
    #[error("{key}: {op} {}: {errno}", path.display())]
    Step {
        /// `disks[N]`, or `disks` for the root switch.
        key: String,
        /// What was being done.
        op: &'static str,
        /// The path inside LKL.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// A mount the kernel refused, with its own words.
#[derive(Debug, thiserror::Error)]
#[error(
    "{key}: cannot mount {}{} as {fstype}: {errno}{}{}",
    path.display(),
    partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
    lkl_fs::said(kernel),
    lkl_fs::hint(*errno, options.as_deref(), kernel, "\"debug\": \"1\"")
)]
pub struct Refusal {
    /// `disks[N]`.
    pub key: String,
    /// The image.
    pub path: PathBuf,
    /// The partition.
    pub partition: Option<u32>,
    /// The type tried.
    pub fstype: String,
    /// The kernel's answer.
    pub errno: Errno,
    /// The mount data given, if any.
    pub options: Option<String>,
    /// What the kernel logged while it refused.
    pub kernel: Vec<String>,
}

/// The fix for an image that cannot be opened.
fn open_fix(e: &lkl::DiskError) -> &'static str {
    match e {
        lkl::DiskError::Open { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            ": give the path of an existing image file (make one with mkfs, e.g. \
             `truncate -s 64M disk.img && mkfs.ext4 disk.img`)"
        }
        _ => "",
    }
}

/// A disk given to the kernel, not mounted yet.
#[derive(Debug)]
pub struct Attached {
    index: usize,
    id: lkl::DiskId,
    fstype: String,
}

/// Opens each of `config.disks` (read-only ones as copy-on-write disks: the file is
/// never written, but a journal can be replayed in memory), detects its type unless
/// given, and adds it to the kernel. Call before the boot. Nothing is written to any
/// image.
///
/// # Errors
/// [`DiskError::Open`], [`DiskError::Locked`], [`DiskError::Detect`],
/// [`DiskError::Probe`], [`DiskError::Add`].
pub fn attach(config: &Config) -> Result<Vec<Attached>, DiskError> {
    let mut out = Vec::new();
    for (index, d) in config.disks.iter().enumerate() {
        let key = format!("disks[{index}]");
        let opened = if d.read_only {
            lkl::Disk::open_overlay(&d.image)
        } else {
            lkl::Disk::open(&d.image, false)
        };
        let disk = opened.map_err(|source| match source {
            lkl::DiskError::Locked { path, read_only } => DiskError::Locked {
                key: key.clone(),
                path,
                read_only,
            },
            source => DiskError::Open {
                key: key.clone(),
                source,
            },
        })?;
        let fstype = match &d.fstype {
            Some(t) => t.clone(),
            None => match lkl_fs::probe_image(&d.image, d.partition) {
                Ok(t) => t.name().to_owned(),
                Err(FsError::UnknownFs {
                    path,
                    partition,
                    partitioned,
                }) => {
                    return Err(DiskError::Detect {
                        key,
                        path,
                        partition,
                        partitioned,
                    })
                }
                Err(source @ FsError::NoPartition { .. }) => {
                    return Err(DiskError::Probe {
                        key: format!("{key}.partition"),
                        source: Box::new(source),
                    })
                }
                Err(source) => {
                    return Err(DiskError::Probe {
                        key,
                        source: Box::new(source),
                    })
                }
            },
        };
        let id = lkl::add_disk(disk).map_err(|source| DiskError::Add {
            key,
            path: d.image.clone(),
            source,
        })?;
        out.push(Attached { index, id, fstype });
    }
    Ok(out)
}

/// One mounted disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The image.
    pub image: PathBuf,
    /// The partition mounted, if not the whole image.
    pub partition: Option<u32>,
    /// The file system type.
    pub fstype: String,
    /// Where it is, in the tree's view and inside LKL (`/` for the root).
    pub path: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// Its block device (`vda`, `vdb1`).
    pub device: String,
    /// Its entry in the config's `disks`.
    pub index: usize,
}

/// The mounted disks, for [`Mounts::unmount`] at the end.
#[derive(Debug, Default)]
pub struct Mounts {
    /// In mount order.
    pub mounts: Vec<Mount>,
    /// `/dev` of LKL's boot root file system (where the disks' nodes are), kept
    /// open to wait for each device's release at the end.
    dev_dir: Option<i32>,
    /// The root disk (index in `mounts`) while it waits in its staging directory for
    /// [`Mounts::enter_root`].
    root: Option<usize>,
}

/// Mounts the disks [`attach`] added, each at its path (see the module doc). Call
/// after the boot, from the boot thread (whose LKL calls run as `host0`, or share its
/// fs), before any LKL process is made.
///
/// Every disk is first mounted read-only and unmounted again, with the root's mount
/// points checked meanwhile, so that what the kernel refuses (a type, options, a
/// corrupt image) or a missing mount point is found before anything is mounted
/// read-write: a failed start writes nothing to a clean image. (A journal that needs
/// replay is replayed by that first mount, as the real one would.) On a later error
/// the disks mounted so far are unmounted again.
///
/// # Errors
/// [`DiskError::UnknownType`], [`DiskError::Mount`] (with the kernel's own words),
/// [`DiskError::NoMountPoint`], [`DiskError::NotADirectory`], [`DiskError::Step`].
pub fn mount(config: &Config, attached: &[Attached]) -> Result<Mounts, DiskError> {
    if let Some(i) = config
        .disks
        .iter()
        .position(|d| d.path.starts_with(STAGING))
    {
        return Err(DiskError::Reserved {
            key: format!("disks[{i}]"),
        });
    }
    // With one disk the trial finds nothing the real mount would not: a refused mount
    // writes nothing, and there is no mount point to check. It costs a mount and an
    // unmount of the start-up.
    if attached.len() > 1 {
        trial(config, attached)?;
    }
    let mut m = Mounts::default();
    match mount_all(config, attached, &mut m) {
        Ok(()) => Ok(m),
        Err(e) => {
            m.unmount();
            Err(e)
        }
    }
}

fn mount_all(config: &Config, attached: &[Attached], m: &mut Mounts) -> Result<(), DiskError> {
    let step = |key: &str, op: &'static str, path: &Path| {
        let (key, path) = (key.to_owned(), path.to_path_buf());
        move |errno| DiskError::Step {
            key,
            op,
            path,
            errno,
        }
    };
    mkdir_p(Path::new(STAGING)).map_err(step("disks", "mkdir", Path::new(STAGING)))?;
    // The staged mounts, in config order: (disk, staging dir).
    let mut staged: Vec<(&Attached, &Disk, PathBuf)> = Vec::new();
    for a in attached {
        let d = &config.disks[a.index];
        let key = format!("disks[{}]", a.index);
        let at = mount_one(&key, d, a, false)?;
        let dir = Path::new(STAGING).join(a.index.to_string());
        mkdir_p(&dir).map_err(step(&key, "mkdir", &dir))?;
        move_mount(&at, &dir).map_err(step(&key, "move the mount to", &dir))?;
        let _ = lkl::unlinkat(lkl::AT_FDCWD, &at, sys::LKL_AT_REMOVEDIR as i32);
        let device = at
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        m.mounts.push(Mount {
            image: d.image.clone(),
            partition: d.partition,
            fstype: a.fstype.clone(),
            path: dir.clone(),
            read_only: d.read_only,
            device,
            index: a.index,
        });
        staged.push((a, d, dir));
    }
    if m.dev_dir.is_none() {
        let flags = (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY | sys::LKL_O_CLOEXEC) as i32;
        m.dev_dir = lkl::open("/dev", flags, 0).ok();
    }
    let root = staged.iter().position(|(_, d, _)| d.path == Path::new("/"));
    // Parents before children: a disk at /a/b goes into the one at /a.
    let mut order: Vec<usize> = (0..staged.len()).filter(|&i| Some(i) != root).collect();
    order.sort_by_key(|&i| staged[i].1.path.components().count());
    for i in order {
        let (a, d, dir) = &staged[i];
        let key = format!("disks[{}]", a.index);
        let target = match root {
            Some(r) => staged[r]
                .2
                .join(d.path.strip_prefix("/").unwrap_or(&d.path)),
            None => d.path.clone(),
        };
        let root_ro = root.map(|r| (staged[r].1.read_only, staged[r].1.image.clone()));
        mount_point(&key, &d.path, &target, root_ro)?;
        move_mount(dir, &target).map_err(step(&key, "move the mount to", &target))?;
        // Where it is now (inside the staged root until enter_root).
        m.mounts[i].path = target;
    }
    m.root = root;
    Ok(())
}

/// Mounts each disk read-only, checks the root's mount points for the others, and
/// unmounts them all again.
fn trial(config: &Config, attached: &[Attached]) -> Result<(), DiskError> {
    let mut mounted = Vec::new();
    let mut result = Ok(());
    for a in attached {
        let d = &config.disks[a.index];
        match mount_one(&format!("disks[{}]", a.index), d, a, true) {
            Ok(at) => mounted.push((a.index, at)),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        if let Some((_, at)) = mounted
            .iter()
            .find(|(i, _)| config.disks[*i].path == Path::new("/"))
        {
            if let Some(root) = config.disks.iter().find(|d| d.path == Path::new("/")) {
                result = check_mount_points(config, at, root);
            }
        }
    }
    for (_, at) in mounted.iter().rev() {
        let _ = lkl::umount_disk(at);
    }
    result
}

/// Each disk's mount point in the root image (mounted at `at`) is a directory, or is
/// missing from a read-write root (it is made then).
fn check_mount_points(config: &Config, at: &Path, root: &Disk) -> Result<(), DiskError> {
    for (i, d) in config.disks.iter().enumerate() {
        if d.path == Path::new("/") {
            continue;
        }
        let key = format!("disks[{i}]");
        let target = at.join(d.path.strip_prefix("/").unwrap_or(&d.path));
        // A parent mounted from another disk is not in the image: its disk's own
        // mount point is what counts.
        let inside_other = config
            .disks
            .iter()
            .any(|o| o.path != Path::new("/") && o.path != d.path && d.path.starts_with(&o.path));
        if inside_other {
            continue;
        }
        match lkl::stat(&target) {
            Ok(st) if st.st_mode & sys::LKL_S_IFMT == sys::LKL_S_IFDIR => {}
            Ok(_) => {
                return Err(DiskError::NotADirectory {
                    key,
                    path: d.path.clone(),
                })
            }
            Err(_) if !root.read_only => {}
            Err(_) => {
                return Err(DiskError::NoMountPoint {
                    key,
                    path: d.path.clone(),
                    root: root.image.clone(),
                })
            }
        }
    }
    Ok(())
}

/// Mounts one disk where [`lkl::mount_disk`] puts it (`/mnt/vdX`), read-only if it
/// is or `read_only`; its path.
fn mount_one(key: &str, d: &Disk, a: &Attached, read_only: bool) -> Result<PathBuf, DiskError> {
    let log_before = lkl_fs::mount::kernel_log().len();
    match lkl::mount_disk(
        a.id,
        d.partition,
        &a.fstype,
        d.options.as_deref(),
        d.read_only || read_only,
    ) {
        Ok(at) => {
            // Only a tuning: a kernel without the file is still fine.
            let _ = lkl_fs::mount::set_read_ahead(a.id, READ_AHEAD_KB);
            Ok(at)
        }
        Err(lkl::DiskError::Sys { errno, op, .. }) if op.starts_with("mount") => {
            if errno == Errno::ENODEV {
                let known = lkl_fs::mount::kernel_filesystems();
                if !known.contains(&a.fstype) {
                    return Err(DiskError::UnknownType {
                        key: key.to_owned(),
                        fstype: a.fstype.clone(),
                        known,
                    });
                }
            }
            Err(DiskError::Mount(Box::new(Refusal {
                key: key.to_owned(),
                path: d.image.clone(),
                partition: d.partition,
                fstype: a.fstype.clone(),
                errno,
                options: d.options.clone().filter(|o| !o.is_empty()),
                kernel: lkl_fs::mount::kernel_log_since(log_before),
            })))
        }
        Err(lkl::DiskError::NoPartition { partition, .. }) => Err(DiskError::Probe {
            key: format!("{key}.partition"),
            source: Box::new(FsError::NoPartition {
                path: d.image.clone(),
                partition,
                found: Vec::new(),
            }),
        }),
        Err(source) => Err(DiskError::Add {
            key: key.to_owned(),
            path: d.image.clone(),
            source,
        }),
    }
}

/// Makes sure `target` (the place of a disk at `path` in the tree's view) is a
/// directory: made with its parents if missing, unless the root image
/// (`root_ro`: read-only, image) is read-only.
fn mount_point(
    key: &str,
    path: &Path,
    target: &Path,
    root_ro: Option<(bool, PathBuf)>,
) -> Result<(), DiskError> {
    match lkl::stat(target) {
        Ok(st) if st.st_mode & sys::LKL_S_IFMT == sys::LKL_S_IFDIR => return Ok(()),
        Ok(_) => {
            return Err(DiskError::NotADirectory {
                key: key.to_owned(),
                path: path.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    if let Some((true, root)) = root_ro {
        return Err(DiskError::NoMountPoint {
            key: key.to_owned(),
            path: path.to_path_buf(),
            root,
        });
    }
    mkdir_p(target).map_err(|errno| DiskError::Step {
        key: key.to_owned(),
        op: "mkdir -p",
        path: path.to_path_buf(),
        errno,
    })
}

/// The file type bits of `path` (not following a last symlink), if it exists.
fn lstat_mode(path: &Path) -> Option<u32> {
    lkl::newfstatat(lkl::AT_FDCWD, path, sys::LKL_AT_SYMLINK_NOFOLLOW as i32)
        .ok()
        .map(|st| st.st_mode & sys::LKL_S_IFMT)
}

/// `mkdir -p` inside LKL.
fn mkdir_p(path: &Path) -> Result<(), Errno> {
    let mut p = PathBuf::from("/");
    for c in path.components().skip(1) {
        p.push(c);
        match lkl::mkdir(&p, 0o755) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `mount(from, to, NULL, MS_MOVE)`.
fn move_mount(from: &Path, to: &Path) -> Result<(), Errno> {
    lkl::mount(
        &from.to_string_lossy(),
        to,
        "",
        u64::from(sys::LKL_MS_MOVE),
        None,
    )
}

impl Mounts {
    /// Makes the root disk, if any, the root: `proc`, `sysfs` and `devtmpfs` mounted on
    /// its `/proc`, `/sys` and `/dev` where it has those directories; with `nameserver`,
    /// LKL's own `/etc/resolv.conf` (written by [`apply`](crate::apply)) bound over the
    /// image's, if it has one; then the image moved onto `/` and the calling task's
    /// root (and cwd) set to it, which `host0` shares and every fresh LKL process
    /// copies. Call after [`mount`] and `apply`, from the same thread. Returns what was
    /// not done, as warnings.
    ///
    /// # Errors
    /// [`DiskError::Step`] naming the step.
    pub fn enter_root(&mut self, config: &Config) -> Result<Vec<String>, DiskError> {
        let mut warnings = Vec::new();
        let Some(r) = self.root.take() else {
            if !self.mounts.is_empty() {
                Self::mount_own_proc();
            }
            return Ok(warnings);
        };
        let dir = self.mounts[r].path.clone();
        let key = format!("disks[{}]", self.mounts[r].index);
        let step = |op: &'static str, path: &Path| {
            let (key, path) = (key.clone(), path.to_path_buf());
            move |errno| DiskError::Step {
                key,
                op,
                path,
                errno,
            }
        };
        for (sub, fstype) in [("proc", "proc"), ("sys", "sysfs"), ("dev", "devtmpfs")] {
            let at = dir.join(sub);
            if lstat_mode(&at) == Some(sys::LKL_S_IFDIR) {
                lkl::mount(fstype, &at, fstype, 0, None).map_err(step("mount", &at))?;
            }
        }
        if config.nameserver.is_some() {
            let at = dir.join("etc/resolv.conf");
            if lstat_mode(&at) == Some(sys::LKL_S_IFREG) {
                lkl::mount(
                    "/etc/resolv.conf",
                    &at,
                    "",
                    u64::from(sys::LKL_MS_BIND),
                    None,
                )
                .map_err(step("bind LKL's /etc/resolv.conf on", &at))?;
            } else {
                warnings.push(format!(
                    "nameserver: the root image {} has no /etc/resolv.conf file to show LKL's \
                     over (nothing is written to an image): the tree resolves names as the \
                     image says; put a resolv.conf file in the image",
                    self.mounts[r].image.display()
                ));
            }
        }
        lkl::chdir(&dir).map_err(step("chdir", &dir))?;
        move_mount(Path::new("."), Path::new("/"))
            .map_err(step("move the root image onto", Path::new("/")))?;
        lkl::chroot(".").map_err(step("chroot", Path::new("/")))?;
        lkl::chdir("/").map_err(step("chdir", Path::new("/")))?;
        for m in &mut self.mounts {
            if let Ok(rest) = m.path.strip_prefix(&dir) {
                m.path = Path::new("/").join(rest);
            }
        }
        Ok(warnings)
    }

    /// Without a root image: LKL's own `proc` on `/proc` of LKL's root file system (unless
    /// there already), where the interposer finds an LKL fd by its name
    /// (`/proc/self/fd/N`) when a program names one of its own LKL files that way. The
    /// program never sees this `/proc`: its `/proc` paths are the host's.
    pub(crate) fn mount_own_proc() {
        if lkl::stat("/proc/self").is_ok() {
            return;
        }
        let _ = lkl::mkdir("/proc", 0o555);
        let _ = lkl::mount("proc", "/proc", "proc", 0, None);
    }

    /// True when no disk is mounted.
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// Leaves every image clean and complete: `sync`, each disk that is not the root
    /// unmounted (the deepest first; lazily if still busy, which the caller avoids
    /// by ending every LKL process of the tree first) and its device waited for until
    /// released, then the root remounted read-only (its journal and every block
    /// written back), and a last `sync`, which flushes each device to its image file.
    /// Call from a host thread joined to no LKL process. Returns what could not be
    /// done, one sentence each.
    pub fn unmount(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Volumes (host directories) first: one may sit inside a disk's tree.
        lkl::umount_volumes();
        let _ = lkl::sync();
        let mut order: Vec<&Mount> = self
            .mounts
            .iter()
            .filter(|m| m.path != Path::new("/"))
            .collect();
        order.sort_by_key(|m| std::cmp::Reverse(m.path.components().count()));
        for m in order {
            match lkl::umount2(&m.path, 0) {
                Ok(()) => {
                    if let Err(e) = self.wait_released(&m.device) {
                        problems.push(format!(
                            "{} (at {}): its device was not released after the unmount: {e}",
                            m.image.display(),
                            m.path.display()
                        ));
                    }
                }
                Err(Errno::EBUSY) => {
                    let _ = lkl::umount2(&m.path, lkl::MNT_DETACH);
                    problems.push(format!(
                        "{} (at {}) was still in use: detached, written back by the sync",
                        m.image.display(),
                        m.path.display()
                    ));
                }
                Err(e) => problems.push(format!(
                    "{} (at {}): cannot unmount: {e}",
                    m.image.display(),
                    m.path.display()
                )),
            }
        }
        let _ = lkl::sync();
        if let Some(root) = self.mounts.iter().find(|m| m.path == Path::new("/")) {
            if !root.read_only {
                if let Err(e) = lkl::remount("/", u64::from(sys::LKL_MS_RDONLY), None) {
                    problems.push(format!(
                        "{} (the root): cannot remount it read-only ({e}): written back by \
                         the sync only",
                        root.image.display()
                    ));
                }
            }
        }
        let _ = lkl::sync();
        problems
    }

    /// Waits until nothing holds block device `name` exclusively: its file system is
    /// shut down and written back.
    fn wait_released(&self, name: &str) -> Result<(), Errno> {
        let Some(dir) = self.dev_dir else {
            return Ok(());
        };
        let flags = (sys::LKL_O_RDONLY | sys::LKL_O_EXCL | sys::LKL_O_CLOEXEC) as i32;
        let start = Instant::now();
        loop {
            match lkl::openat(dir, name, flags, 0) {
                Ok(fd) => {
                    let _ = lkl::close(fd);
                    return Ok(());
                }
                Err(Errno::EBUSY) if start.elapsed() < RELEASE_TIMEOUT => {
                    let _ = lkl::nanosleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
