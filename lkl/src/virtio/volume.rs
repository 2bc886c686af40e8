//! Volumes: a host directory as a virtio-fs device, mounted inside the
//! kernel with its `virtiofs` file system.
//!
//! ```no_run
//! let id = lkl::add_volume("/srv/data", false)?; // before boot: on the command line
//! let kernel = lkl::boot(&lkl::BootOptions::default())?;
//! lkl::mount_volume(id, "/data")?;
//! // ... lkl::open("/data/file", ...) reads /srv/data/file ...
//! kernel.halt()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each volume's device carries a tag of its own (`lkl-volume-N`), which
//! is what `mount -t virtiofs` names. The device serves small requests on
//! the kernel's notifying thread and large reads and writes on
//! [`WORKERS`](lkl_virtio::fs::WORKERS) host threads, started when the
//! volume is added and stopped when the kernel halts.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use lkl_sys as sys;
use lkl_virtio::fs::{self, Fs};

use super::kernel::{IrqLine, KernelMemory};
use super::mmio::{MmioTransport, WINDOW_SIZE};
use crate::{Errno, MmioRegistry, MmioWindow};

/// Everything that can go wrong adding or mounting a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The host directory cannot be served (missing, not a directory).
    #[error("volume: {0}")]
    Device(#[from] lkl_virtio::FsError),
    /// No interrupt line was free for the device.
    #[error("no interrupt line for the volume: {0}")]
    Irq(Errno),
    /// The MMIO window could not be registered.
    #[error("cannot register the volume's mmio window: {0}")]
    Mmio(#[from] crate::Error),
    /// A worker thread could not be started.
    #[error("cannot start the volume's worker threads: {0}")]
    Thread(std::io::Error),
    /// The running kernel refused the hot-added device.
    #[error("the kernel refused the hot-added volume {path}: {errno}")]
    HotAdd {
        /// The host directory.
        path: PathBuf,
        /// What `lkl_virtio_mmio_add` returned.
        errno: Errno,
    },
    /// Volumes can be added before boot or while the kernel runs, not now.
    #[error("cannot add a volume while the kernel is {state}")]
    NotAddable {
        /// What the kernel is doing.
        state: &'static str,
    },
    /// An id that [`add_volume`] did not return.
    #[error("no volume {0}")]
    UnknownVolume(VolumeId),
    /// The kernel is not running.
    #[error("the kernel is not running")]
    NotRunning,
    /// A system call inside the kernel failed.
    #[error("{op} {path}: {errno}")]
    Sys {
        /// What was being done.
        op: String,
        /// The path it was done to.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

device_id! {
    /// A volume added with [`add_volume`]: its index in the order of adding.
    VolumeId
}

struct Entry {
    path: PathBuf,
    /// Where [`mount_volume`] mounted it.
    mounted: Vec<PathBuf>,
    tag: String,
    read_only: bool,
    transport: Arc<MmioTransport<Fs>>,
    workers: Vec<JoinHandle<()>>,
    _window: MmioWindow,
    /// When it was added (for [`STATS_ENV`]).
    added: std::time::Instant,
}

static VOLUMES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn volumes() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    VOLUMES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives host directory `dir` to the kernel as a virtio-fs device,
/// read-only (every change refused with `EROFS`) or not. Before boot it is
/// announced on the command line; while the kernel runs it is hot-added.
/// Mount it with [`mount_volume`].
///
/// # Errors
/// [`VolumeError::Device`] if `dir` is missing or not a directory,
/// [`VolumeError::NotAddable`] while the kernel boots or halts,
/// [`VolumeError::Irq`]/[`VolumeError::Mmio`] when no line or window is
/// left, [`VolumeError::HotAdd`] if the running kernel refuses it.
pub fn add_volume(dir: impl AsRef<Path>, read_only: bool) -> Result<VolumeId, VolumeError> {
    let state = crate::STATE.load(Ordering::Acquire);
    if state != crate::STATE_OFF && state != crate::STATE_RUNNING {
        return Err(VolumeError::NotAddable {
            state: crate::state_name(state),
        });
    }
    let path = dir.as_ref().to_path_buf();
    let mut list = volumes();
    let id = VolumeId(list.len());
    let tag = format!("lkl-volume-{}", id.0);
    let device = Fs::new(&path, &tag, read_only, Arc::new(KernelMemory))?;
    let irq = crate::get_free_irq(c"virtio-fs").map_err(VolumeError::Irq)?;
    let transport = Arc::new(MmioTransport::new(
        device,
        Box::new(KernelMemory),
        Box::new(IrqLine(irq)),
    ));
    let window = match MmioRegistry::global().register(transport.clone(), WINDOW_SIZE, irq) {
        Ok(w) => w,
        Err(e) => {
            crate::put_irq(irq, c"virtio-fs");
            return Err(e.into());
        }
    };
    let mut workers = Vec::with_capacity(fs::WORKERS);
    let mut spawn_error = None;
    for n in 0..fs::WORKERS {
        let worker = transport.with_device(Fs::worker);
        let t = transport.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("lkl-virtiofs-{}.{n}", id.0))
            .spawn(move || worker.run(&t));
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                spawn_error = Some(e);
                break;
            }
        }
    }
    let undo = |workers: Vec<JoinHandle<()>>| {
        transport.with_device(Fs::stop);
        for w in workers {
            let _ = w.join();
        }
        let _ = MmioRegistry::global().unregister(window.base);
        crate::put_irq(irq, c"virtio-fs");
    };
    if let Some(e) = spawn_error {
        undo(workers);
        return Err(VolumeError::Thread(e));
    }
    if state == crate::STATE_RUNNING {
        if let Err(errno) = crate::virtio_mmio_add(&window) {
            undo(workers);
            return Err(VolumeError::HotAdd { path, errno });
        }
    }
    list.push(Entry {
        path,
        mounted: Vec::new(),
        tag,
        read_only,
        transport,
        workers,
        _window: window,
        added: std::time::Instant::now(),
    });
    Ok(id)
}

/// The tag of volume `id`'s device (what `mount -t virtiofs` names).
///
/// # Errors
/// [`VolumeError::UnknownVolume`].
pub fn volume_tag(id: VolumeId) -> Result<String, VolumeError> {
    let list = volumes();
    Ok(list
        .get(id.0)
        .ok_or(VolumeError::UnknownVolume(id))?
        .tag
        .clone())
}

/// Mounts volume `id` at `target` inside the kernel (made, with its
/// parents, if missing), read-only if the volume is.
///
/// # Errors
/// [`VolumeError::NotRunning`], [`VolumeError::UnknownVolume`],
/// [`VolumeError::Sys`] if a directory cannot be made or the mount fails.
pub fn mount_volume(id: VolumeId, target: impl AsRef<Path>) -> Result<(), VolumeError> {
    if !crate::is_running() {
        return Err(VolumeError::NotRunning);
    }
    let target = target.as_ref();
    let (tag, read_only) = {
        let list = volumes();
        let e = list.get(id.0).ok_or(VolumeError::UnknownVolume(id))?;
        (e.tag.clone(), e.read_only)
    };
    let sys_err = |op: &str, path: &Path| {
        let (op, path) = (op.to_owned(), path.to_path_buf());
        move |errno| VolumeError::Sys { op, path, errno }
    };
    let mut at = PathBuf::from("/");
    for c in target.components().skip(1) {
        at.push(c);
        match crate::mkdir(&at, 0o755) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(sys_err("mkdir", &at)(e)),
        }
    }
    let flags = if read_only {
        u64::from(sys::LKL_MS_RDONLY)
    } else {
        0
    };
    crate::mount(&tag, target, "virtiofs", flags, None)
        .map_err(sys_err(&format!("mount virtiofs {tag} on"), target))?;
    set_read_ahead(target, READ_AHEAD_KB);
    if let Some(e) = volumes().get_mut(id.0) {
        e.mounted.push(target.to_path_buf());
    }
    Ok(())
}

/// Unmounts every volume [`mount_volume`] mounted, deepest first (detached if
/// still in use: a volume's writes are on the host already). For the end of a
/// tree, before the disks a volume may sit in are unmounted.
pub fn umount_volumes() {
    let mut all: Vec<PathBuf> = volumes()
        .iter_mut()
        .flat_map(|e| std::mem::take(&mut e.mounted))
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        if crate::umount2(&p, 0) == Err(Errno::EBUSY) {
            let _ = crate::umount2(&p, crate::MNT_DETACH);
        }
    }
    report_volume_stats();
}

/// The read-ahead given to each volume, in KiB: a sequential read then asks the
/// device for up to a megabyte at a time, several requests in flight, instead of
/// the default 128 KiB one after another.
const READ_AHEAD_KB: u32 = 4096;

/// Sets the read-ahead of the file system mounted at `target` through its bdi
/// in sysfs (`/sys/class/bdi/MAJ:MIN/read_ahead_kb`), if sysfs is mounted on
/// `/sys`: a tuning only, so a failure is ignored.
fn set_read_ahead(target: &Path, kb: u32) {
    let Ok(st) = crate::stat(target) else {
        return;
    };
    let dev = st.st_dev;
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    let flags = (sys::LKL_O_WRONLY | sys::LKL_O_CLOEXEC) as i32;
    if let Ok(fd) = crate::open(&path, flags, 0) {
        let _ = crate::write(fd, kb.to_string().as_bytes());
        let _ = crate::close(fd);
    }
}

/// The host directory of volume `id`.
///
/// # Errors
/// [`VolumeError::UnknownVolume`].
pub fn volume_path(id: VolumeId) -> Result<PathBuf, VolumeError> {
    let list = volumes();
    Ok(list
        .get(id.0)
        .ok_or(VolumeError::UnknownVolume(id))?
        .path
        .clone())
}

/// Stops every volume's workers before the kernel's memory is freed
/// (called by [`crate::Kernel::halt`]): once this returns, no worker reads
/// or writes the kernel's buffers or raises an interrupt.
pub(crate) fn stop_all() {
    let mut list = volumes();
    for e in list.iter_mut() {
        e.transport.with_device(Fs::stop);
        for w in e.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Set (to anything but `0`), the requests each volume's server served are
/// written to standard error by [`report_volume_stats`] (called by
/// [`umount_volumes`], and by `lkl-run`'s kernel process as it ends): per
/// opcode, how many and the time spent serving them.
pub const STATS_ENV: &str = "LKL_VOLUME_STATS";

/// With [`STATS_ENV`] set, writes each volume's requests so far to standard
/// error; else does nothing.
pub fn report_volume_stats() {
    if std::env::var_os(STATS_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        volumes().iter().for_each(print_stats);
    }
}

fn print_stats(e: &Entry) {
    let ops = e.transport.with_device(|d| d.server().stats());
    let wall = e.added.elapsed().as_secs_f64();
    let (count, nanos) = ops
        .iter()
        .fold((0, 0), |(c, n), o| (c + o.count, n + o.nanos));
    let mut text = format!(
        "lkl: volume {} ({}): {count} requests, {:.3} s in the server of {wall:.3} s since added\n",
        e.tag,
        e.path.display(),
        nanos as f64 / 1e9,
    );
    for o in &ops {
        text.push_str(&format!(
            "lkl:   {:<12} {:>9} {:>10.3} s {:>8.1} us each\n",
            o.name,
            o.count,
            o.nanos as f64 / 1e9,
            o.nanos as f64 / 1e3 / o.count as f64,
        ));
    }
    eprint!("{text}");
}
