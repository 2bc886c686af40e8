//! Disks: an image file as a virtio-blk device, and mounting it inside
//! the kernel.
//!
//! ```no_run
//! let disk = lkl::Disk::open("fs.img", false)?;
//! let id = lkl::add_disk(disk)?; // before boot: on the command line
//! let kernel = lkl::boot(&lkl::BootOptions::default())?;
//! let mnt = lkl::mount_disk(id, None, "ext4", None, false)?; // /mnt/vda
//! // ... lkl::open(mnt.join("file"), ...) ...
//! lkl::umount_disk(&mnt)?;
//! kernel.halt()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The kernel names its block devices in probe order (`vda`, `vdb`, ...).
//! Each disk reports a serial of its own (`lkl-disk-N`, through
//! `VIRTIO_BLK_T_GET_ID`), and [`disk_name`] finds it by reading
//! `/sys/block/vd*/serial`, so names never have to be guessed. Mounting
//! needs sysfs: it is mounted on `/sys` if nothing is there yet.

use std::ffi::c_long;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lkl_sys as sys;

use super::block::{Block, BlockStats};
use super::kernel::{IrqLine, KernelMemory};
use super::mmio::{MmioTransport, WINDOW_SIZE};
use super::sysfs;
use super::DiskError;
use crate::{Errno, MmioRegistry, MmioWindow};

pub use super::block::SECTOR_SIZE;

/// An image file, opened, ready for [`add_disk`].
pub struct Disk {
    path: PathBuf,
    file: File,
    read_only: bool,
    overlay: bool,
    size: u64,
}

/// Refuses what cannot be a disk image: a fifo, socket or character
/// device (reading one would wait forever or never end) and a directory.
/// Regular files and block devices pass.
///
/// # Errors
/// [`DiskError::NotAnImage`] naming the path and what it is.
pub fn check_image_type(path: &Path, meta: &std::fs::Metadata) -> Result<(), DiskError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Err(DiskError::NotAnImage {
        path: path.to_path_buf(),
        kind,
    })
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("overlay", &self.overlay)
            .field("size", &self.size)
            .finish()
    }
}

impl Disk {
    /// Opens the image at `path` (a file or a block device), read-only
    /// (the file is opened `O_RDONLY`, and the device refuses writes) or
    /// read-write.
    ///
    /// The image is locked with `flock` for as long as the disk lives:
    /// shared when read-only, exclusive when read-write, so two writers (or
    /// a writer and a reader) in this or other processes that also lock
    /// cannot corrupt it.
    ///
    /// # Errors
    /// [`DiskError::Open`] if the file cannot be opened,
    /// [`DiskError::Locked`] if another user holds a conflicting lock,
    /// [`DiskError::TooSmall`] if it holds less than one sector.
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<Disk, DiskError> {
        Disk::open_with(path.as_ref(), read_only, false)
    }

    /// Opens the image at `path` read-only (`O_RDONLY`, a shared lock) as
    /// a copy-on-write disk: the kernel sees a writable device, and every
    /// block it writes, discards or zeroes is kept in this process's
    /// memory, never in the file. A file system whose journal needs replay
    /// (after a crash or a killed writer) can then be mounted read-only:
    /// the replay happens in memory and the image is left as it was.
    ///
    /// # Errors
    /// As [`Disk::open`].
    pub fn open_overlay(path: impl AsRef<Path>) -> Result<Disk, DiskError> {
        Disk::open_with(path.as_ref(), true, true)
    }

    fn open_with(path: &Path, read_only: bool, overlay: bool) -> Result<Disk, DiskError> {
        let path = path.to_path_buf();
        let open_err = |source| DiskError::Open {
            path: path.clone(),
            error: source,
        };
        // Examined first (a socket cannot even be opened), then opened
        // with O_NONBLOCK (a fifo put there meanwhile must not wait for a
        // writer) and examined again.
        check_image_type(&path, &std::fs::metadata(&path).map_err(open_err)?)?;
        let file = File::options()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(open_err)?;
        check_image_type(&path, &file.metadata().map_err(open_err)?)?;
        // SAFETY: F_SETFL on a descriptor we own: back to blocking I/O.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
        let op = if read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
            let source = std::io::Error::last_os_error();
            return Err(if source.kind() == std::io::ErrorKind::WouldBlock {
                DiskError::Locked { path, read_only }
            } else {
                open_err(source)
            });
        }
        let size = (&file).seek(SeekFrom::End(0)).map_err(open_err)?;
        if size < SECTOR_SIZE {
            return Err(DiskError::TooSmall { path, size });
        }
        Ok(Disk {
            path,
            file,
            read_only: read_only && !overlay,
            overlay,
            size,
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the disk is read-only for the kernel (a copy-on-write disk
    /// is not, though its file is never written).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the disk is copy-on-write ([`Disk::open_overlay`]).
    pub fn overlay(&self) -> bool {
        self.overlay
    }

    /// The image's size in bytes (the device sees whole sectors of it).
    pub fn size(&self) -> u64 {
        self.size
    }
}

device_id! {
    /// A disk added with [`add_disk`]: its index in the order of adding.
    DiskId
}

struct Entry {
    path: PathBuf,
    read_only: bool,
    serial: String,
    transport: Arc<MmioTransport<Block>>,
    _window: MmioWindow,
    /// The block device name, once found.
    name: Option<String>,
}

static DISKS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// What [`mount_disk`] mounted: (mount point, device node).
static MOUNTS: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

fn disks() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    DISKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives `disk` to the kernel as a virtio-blk device. Before boot it is
/// announced on the command line [`crate::boot`] builds; while the kernel
/// runs it is hot-added.
///
/// # Errors
/// [`DiskError::NotAddable`] while the kernel boots or halts or after it
/// halted, [`DiskError::Irq`]/[`DiskError::Mmio`] when no line or window is
/// left, [`DiskError::HotAdd`] if the running kernel refuses the device.
pub fn add_disk(disk: Disk) -> Result<DiskId, DiskError> {
    let state = crate::STATE.load(Ordering::Acquire);
    if state != crate::STATE_OFF && state != crate::STATE_RUNNING {
        return Err(DiskError::NotAddable {
            state: crate::state_name(state),
        });
    }
    let mut list = disks();
    let id = DiskId(list.len());
    let serial = format!("lkl-disk-{}", id.0);
    let device = if disk.overlay {
        Block::with_overlay(disk.file, &serial)
    } else {
        Block::new(disk.file, disk.read_only, &serial)
    }
    .map_err(|error| DiskError::Open {
        path: disk.path.clone(),
        error,
    })?;
    let irq = crate::get_free_irq(c"virtio-blk").map_err(DiskError::Irq)?;
    let transport = Arc::new(MmioTransport::new(
        device,
        Box::new(KernelMemory),
        Box::new(IrqLine(irq)),
    ));
    let window = match MmioRegistry::global().register(transport.clone(), WINDOW_SIZE, irq) {
        Ok(w) => w,
        Err(e) => {
            crate::put_irq(irq, c"virtio-blk");
            return Err(e.into());
        }
    };
    if state == crate::STATE_RUNNING {
        if let Err(errno) = crate::virtio_mmio_add(&window) {
            let _ = MmioRegistry::global().unregister(window.base);
            crate::put_irq(irq, c"virtio-blk");
            return Err(DiskError::HotAdd {
                path: disk.path,
                errno,
            });
        }
    }
    list.push(Entry {
        path: disk.path,
        read_only: disk.read_only,
        serial,
        transport,
        _window: window,
        name: None,
    });
    Ok(id)
}

/// The request counters of disk `id`.
///
/// # Errors
/// [`DiskError::UnknownDisk`].
pub fn disk_stats(id: DiskId) -> Result<BlockStats, DiskError> {
    let list = disks();
    let e = list.get(id.0).ok_or(DiskError::UnknownDisk(id))?;
    Ok(e.transport.with_device(Block::stats))
}

/// Reads disk `id`'s bytes from the host side, beside the kernel's driver
/// ([`disk_reader`]).
#[derive(Clone)]
pub struct DiskReader {
    transport: Arc<MmioTransport<Block>>,
    path: PathBuf,
}

impl DiskReader {
    /// Reads `buf.len()` bytes at byte `offset` of the disk, as the
    /// kernel's driver would read them (a copy-on-write disk's overlay
    /// included). The kernel's caches are not consulted: this is what the
    /// device holds, which for a file's data equals what the kernel reads
    /// only while no write of it is pending (a read-only mount).
    ///
    /// # Errors
    /// [`DiskError::Open`] naming the image, for a range past its end or
    /// a failed read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.transport
            .with_device(|b| b.read_at(offset, buf))
            .map_err(|error| DiskError::Open {
                path: self.path.clone(),
                error,
            })
    }

    /// Whether the disk reads exactly as its image file: not a
    /// copy-on-write disk, or one whose overlay holds nothing.
    pub fn reads_as_image(&self) -> bool {
        self.transport
            .with_device(|b| b.stats().overlay_chunks == 0)
    }
}

/// A reader of disk `id`'s bytes on the host side ([`DiskReader`]).
///
/// # Errors
/// [`DiskError::UnknownDisk`].
pub fn disk_reader(id: DiskId) -> Result<DiskReader, DiskError> {
    let list = disks();
    let e = list.get(id.0).ok_or(DiskError::UnknownDisk(id))?;
    Ok(DiskReader {
        transport: e.transport.clone(),
        path: e.path.clone(),
    })
}

/// The byte offset on disk `id` where its partition number `partition`
/// (1-based, MBR or GPT) starts, as the kernel found it
/// (`/sys/block/vdX/vdXN/start`, in 512-byte sectors).
///
/// # Errors
/// As [`disk_name`]; [`DiskError::NoPartition`]; [`DiskError::Sysfs`] for
/// a start that is not a number.
pub fn partition_start(id: DiskId, partition: u32) -> Result<u64, DiskError> {
    let disk = disk_name(id)?;
    let name = find_partition(&disk, partition)?;
    let path = format!("/sys/block/{disk}/{name}/start");
    let text = read_text(&path)?;
    text.trim()
        .parse::<u64>()
        .map(|s| s * SECTOR_SIZE)
        .map_err(|_| DiskError::Sysfs {
            path: path.into(),
            contents: text,
        })
}

/// How long [`disk_name`] waits for the block device to appear.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(5);

/// The kernel's name for disk `id` (`vda`, `vdb`, ...), found by its
/// serial in `/sys/block` (sysfs is mounted on `/sys` if needed).
///
/// # Errors
/// [`DiskError::NotRunning`], [`DiskError::UnknownDisk`],
/// [`DiskError::NoBlockDevice`] if it does not appear within 5 seconds,
/// [`DiskError::Sys`] if sysfs cannot be reached.
pub fn disk_name(id: DiskId) -> Result<String, DiskError> {
    if !crate::is_running() {
        return Err(DiskError::NotRunning);
    }
    let (serial, path) = {
        let list = disks();
        let e = list.get(id.0).ok_or(DiskError::UnknownDisk(id))?;
        if let Some(name) = &e.name {
            return Ok(name.clone());
        }
        (e.serial.clone(), e.path.clone())
    };
    ensure_sysfs()?;
    let start = Instant::now();
    loop {
        for name in list_dir("/sys/block")? {
            if !name.starts_with("vd") {
                continue;
            }
            let file = format!("/sys/block/{name}/serial");
            // A device without a serial answers with an error: not ours.
            if read_text(&file).is_ok_and(|s| s.trim_end_matches(['\n', '\0']) == serial) {
                disks()[id.0].name = Some(name.clone());
                return Ok(name);
            }
        }
        if start.elapsed() > APPEAR_TIMEOUT {
            return Err(DiskError::NoBlockDevice { serial, path });
        }
        let _ = crate::nanosleep(Duration::from_millis(10));
    }
}

/// Mounts disk `id`, or its partition number `partition` (1-based, MBR or
/// GPT), inside the kernel on `/mnt/NAME` (`/mnt/vda`, `/mnt/vdb2`) and
/// returns that path. The device node is made at `/dev/NAME` from the
/// `dev` number in sysfs. `options` is the file system's data string
/// (`"errors=remount-ro"`, ...).
///
/// # Errors
/// [`DiskError::ReadOnly`] for a read-write mount of a read-only disk,
/// [`DiskError::NoPartition`], and [`DiskError::Sys`] naming the step that
/// failed (`mknod`, `mkdir`, `mount ext4 /dev/vda on`...), plus those of
/// [`disk_name`].
pub fn mount_disk(
    id: DiskId,
    partition: Option<u32>,
    fstype: &str,
    options: Option<&str>,
    read_only: bool,
) -> Result<PathBuf, DiskError> {
    let disk = disk_name(id)?;
    let (disk_ro, image) = {
        let list = disks();
        let e = &list[id.0];
        (e.read_only, e.path.clone())
    };
    if disk_ro && !read_only {
        return Err(DiskError::ReadOnly { disk, path: image });
    }
    let name = match partition {
        None => disk.clone(),
        Some(n) => find_partition(&disk, n)?,
    };
    let sys_dir = if name == disk {
        format!("/sys/block/{disk}")
    } else {
        format!("/sys/block/{disk}/{name}")
    };
    let dev = read_dev(&format!("{sys_dir}/dev"))?;
    mkdir_p("/dev")?;
    let node = PathBuf::from(format!("/dev/{name}"));
    make_node(&node, dev)?;
    mkdir_p("/mnt")?;
    let target = PathBuf::from(format!("/mnt/{name}"));
    mkdir_p(&target)?;
    let flags = if read_only {
        u64::from(sys::LKL_MS_RDONLY)
    } else {
        0
    };
    let source = node.to_string_lossy().into_owned();
    // EBUSY while an earlier mount of the device is still being torn down
    // (see umount_disk): wait for it.
    let start = Instant::now();
    loop {
        match crate::mount(&source, &target, fstype, flags, options) {
            Ok(()) => break,
            Err(Errno::EBUSY) if start.elapsed() < RELEASE_TIMEOUT => {
                let _ = crate::nanosleep(Duration::from_millis(2));
            }
            Err(errno) => {
                let _ = rmdir(&target);
                return Err(DiskError::Sys {
                    op: format!("mount {fstype} {source} on"),
                    path: target,
                    errno,
                });
            }
        }
    }
    lock(&MOUNTS).push((target.clone(), node));
    Ok(target)
}

/// How long unmounting and mounting wait for a device's release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until nothing holds block device `node` exclusively, i.e. the
/// file system that was mounted from it is shut down and written back.
fn wait_released(node: &Path) -> Result<(), DiskError> {
    let flags = (sys::LKL_O_RDONLY | sys::LKL_O_EXCL | sys::LKL_O_CLOEXEC) as i32;
    let start = Instant::now();
    loop {
        match crate::open(node, flags, 0) {
            Ok(fd) => {
                let _ = crate::close(fd);
                return Ok(());
            }
            Err(Errno::EBUSY) if start.elapsed() < RELEASE_TIMEOUT => {
                let _ = crate::nanosleep(Duration::from_millis(2));
            }
            Err(errno) => return Err(sys_err("wait for the release of", node)(errno)),
        }
    }
}

/// Unmounts what [`mount_disk`] mounted at `mountpoint` and removes the
/// directory. Returns once the file system is shut down and everything is
/// written to the image, so the host may read it.
///
/// The kernel may finish an unmount after `umount2` returns (the last
/// reference to a mount can be dropped from a worker), so this waits until
/// the device can be opened exclusively again.
///
/// # Errors
/// [`DiskError::Sys`] if the unmount fails (`EBUSY` while files are open)
/// or the device is not released within 10 seconds.
pub fn umount_disk(mountpoint: impl AsRef<Path>) -> Result<(), DiskError> {
    let target = mountpoint.as_ref();
    crate::umount2(target, 0).map_err(sys_err("umount", target))?;
    let node = {
        let mut mounts = lock(&MOUNTS);
        let at = mounts.iter().position(|(m, _)| m == target);
        at.map(|i| mounts.remove(i).1)
    };
    let _ = rmdir(target);
    match node {
        Some(node) => wait_released(&node),
        None => Ok(()),
    }
}

/// The partition of `disk` whose `partition` file says `n`.
fn find_partition(disk: &str, n: u32) -> Result<String, DiskError> {
    let dir = format!("/sys/block/{disk}");
    for name in list_dir(&dir)? {
        if !name.starts_with(disk) {
            continue;
        }
        let Ok(text) = read_text(&format!("{dir}/{name}/partition")) else {
            continue;
        };
        if text.trim().parse::<u32>().ok() == Some(n) {
            return Ok(name);
        }
    }
    Err(DiskError::NoPartition {
        disk: disk.to_owned(),
        partition: n,
    })
}

fn sys_err(op: &str, path: impl AsRef<Path>) -> impl FnOnce(Errno) -> DiskError {
    let path = path.as_ref().to_path_buf();
    let op = op.to_owned();
    move |errno| DiskError::Sys { op, path, errno }
}

/// Mounts sysfs on `/sys` unless `/sys/block` is already there.
fn ensure_sysfs() -> Result<(), DiskError> {
    Ok(sysfs::ensure_mounted("/sys/block")?)
}

fn mkdir_p(path: impl AsRef<Path>) -> Result<(), DiskError> {
    match crate::mkdir(path.as_ref(), 0o755) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(sys_err("mkdir", path)(e)),
    }
}

fn rmdir(path: &Path) -> Result<(), Errno> {
    crate::unlinkat(crate::AT_FDCWD, path, sys::LKL_AT_REMOVEDIR as i32)
}

fn list_dir(path: &str) -> Result<Vec<String>, DiskError> {
    Ok(sysfs::list_dir(path)?)
}

fn read_text(path: &str) -> Result<String, DiskError> {
    Ok(sysfs::read_text(path)?)
}

impl From<sysfs::SysfsError> for DiskError {
    fn from(e: sysfs::SysfsError) -> Self {
        DiskError::Sys {
            op: e.op.to_owned(),
            path: e.path.into(),
            errno: e.errno,
        }
    }
}

/// A `dev` attribute, `MAJOR:MINOR`.
fn read_dev(path: &str) -> Result<(u32, u32), DiskError> {
    let text = read_text(path)?;
    let bad = || DiskError::Sysfs {
        path: path.into(),
        contents: text.clone(),
    };
    let (major, minor) = text.trim().split_once(':').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// The kernel's `new_encode_dev`.
fn encode_dev((major, minor): (u32, u32)) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Makes block device node `node` for `dev`, replacing anything else
/// there.
fn make_node(node: &Path, dev: (u32, u32)) -> Result<(), DiskError> {
    let rdev = encode_dev(dev);
    if let Ok(st) = crate::stat(node) {
        let is_blk = st.st_mode & sys::LKL_S_IFMT == sys::LKL_S_IFBLK;
        if is_blk && st.st_rdev as u32 == rdev {
            return Ok(());
        }
        crate::unlinkat(crate::AT_FDCWD, node, 0).map_err(sys_err("unlink", node))?;
    }
    let c = std::ffi::CString::new(node.as_os_str().as_bytes()).map_err(|_| DiskError::Sys {
        op: "mknod".into(),
        path: node.into(),
        errno: Errno::EINVAL,
    })?;
    let args = [
        crate::AT_FDCWD as c_long,
        c.as_ptr() as c_long,
        (sys::LKL_S_IFBLK | 0o600) as c_long,
        rdev as c_long,
        0,
        0,
    ];
    // SAFETY: mknodat reads the NUL-terminated path, which lives across
    // the call; the other arguments are numbers.
    unsafe { crate::syscall(sys::__lkl__NR_mknodat as c_long, args) }
        .map(drop)
        .map_err(sys_err("mknod", node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_encode_like_the_kernel() {
        assert_eq!(encode_dev((254, 0)), 0xfe00);
        assert_eq!(encode_dev((254, 17)), 0xfe11);
        assert_eq!(encode_dev((259, 0x1234)), 0x120_0000 | 0x34 | 259 << 8);
    }

    #[test]
    fn open_errors_name_the_path() {
        let e = Disk::open("/nonexistent/x.img", true).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot open disk image /nonexistent/x.img: "));
        let dir = std::env::temp_dir().join(format!("lkl-disk-small-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 100]).unwrap();
        let e = Disk::open(&dir, false).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(e, DiskError::TooSmall { size: 100, .. }), "{e}");
    }

    #[test]
    fn images_are_locked() {
        let path = std::env::temp_dir().join(format!("lkl-disk-lock-{}", std::process::id()));
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let ro1 = Disk::open(&path, true).unwrap();
        let ro2 = Disk::open(&path, true).unwrap();
        assert_eq!(ro1.size(), 4096);
        let e = Disk::open(&path, false).unwrap_err();
        assert!(
            matches!(
                e,
                DiskError::Locked {
                    read_only: false,
                    ..
                }
            ),
            "{e}"
        );
        drop((ro1, ro2));
        let rw = Disk::open(&path, false).unwrap();
        let e = Disk::open(&path, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "disk image {} is in use (locked) and cannot be opened read-only",
                path.display()
            )
        );
        drop(rw);
        std::fs::remove_file(&path).unwrap();
    }
}
