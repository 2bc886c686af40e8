//! LKL, the Linux Kernel Library: a Linux kernel that runs inside this
//! process and is called through its system-call interface.
//!
//! This crate is the host side. [`host`] implements every operation the
//! kernel needs from the process (threads, semaphores, mutexes, TLS keys,
//! memory, time, timers, jump buffers, MMIO windows, printing), as the C
//! functions of the table declared in
//! `linux/arch/lkl/include/uapi/asm/host_ops.h`. Above it sits a safe API:
//!
//! - [`boot`] starts the kernel with [`BootOptions`] (memory size, extra
//!   command line, log level) and returns a [`Kernel`]. One kernel per
//!   process, booted once.
//! - [`syscall`] makes any system call; typed wrappers ([`getpid`],
//!   [`openat`], [`read`], ...) return `Result<_, Errno>`. Any host thread
//!   may call them; a call before boot or after halt fails with
//!   [`Errno::ENOSYS`].
//! - [`Kernel::halt`] shuts the kernel down and checks that every host
//!   thread the library created was joined.
//! - Devices: [`MmioRegistry`] gives a device ([`MmioDevice`]) an MMIO
//!   window the kernel reaches through `ioremap`/`iomem_access`;
//!   [`get_free_irq`], [`trigger_irq`] and [`virtio_mmio_add`] wire it up.
//!   The virtio device models are the `lkl-virtio` crate's (built and
//!   tested without the kernel); [`virtio`] gives them to the kernel and
//!   re-exports them.
//! - Disks ([`virtio`]): [`Disk::open`] an image (or
//!   [`Disk::open_overlay`]: copy-on-write, the file never written),
//!   [`add_disk`] it (before
//!   boot or hot), [`mount_disk`] it (or one of its partitions) inside the
//!   kernel and [`umount_disk`] it.
//! - Network devices ([`virtio::net`]): [`add_net`]/[`add_net_with`] a
//!   virtio-net device over a tap, macvtap, raw socket or FIFO pair
//!   ([`NetBackend`], [`NetOptions`]), then [`net_ifname`] finds its
//!   interface inside the kernel.
//! - Processes ([`process`]): a kernel server gives each client process an
//!   LKL process of its own ([`process::create`], [`process::fork`]) and
//!   serves each client thread on a host thread that
//!   [`process::thread_join`]s it; the client's user memory is reached
//!   through `process_vm_readv`/`process_vm_writev` or the shared window
//!   ([`set_shared_window`]).
//!
//! System call numbers, constants and structures come from `lkl-sys`, which
//! generates them from the kernel's own uapi headers (`__lkl__NR_*`,
//! `lkl_*`, `LKL_*`).

use std::cell::UnsafeCell;
use std::ffi::{c_long, CString};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use lkl_sys::lkl_host_operations;

pub mod console;
mod error;
pub mod host;
mod irq;
pub mod process;
mod syscalls;
pub mod virtio;

pub use error::{Errno, Error};
pub use host::{MmioDevice, MmioRegistry, MmioWindow};
pub use irq::{get_free_irq, put_irq, trigger_irq, virtio_mmio_add};
pub use process::set_shared_window;
pub use syscalls::*;
pub use virtio::{
    add_disk, add_net, add_net_with, check_image_type, disk_name, disk_reader, disk_stats,
    mount_disk, net_ifindex, net_ifname, net_stats, partition_start, umount_disk, Disk, DiskError,
    DiskId, DiskReader, NetBackend, NetError, NetId, NetOptions, NetStats, BUSY_POLL_GAP,
    DEFAULT_BUSY_POLL,
};
pub use virtio::{
    add_volume, mount_volume, report_volume_stats, umount_volumes, volume_path, volume_tag,
    VolumeError, VolumeId,
};

/// The raw bindings: system call numbers (`sys::__lkl__NR_*`), constants
/// (`sys::LKL_*`) and structures (`sys::lkl_*`).
pub use lkl_sys as sys;

/// What the kernel of this process is doing; one of the `STATE_*` values.
static STATE: AtomicU8 = AtomicU8::new(STATE_OFF);
const STATE_OFF: u8 = 0;
const STATE_BOOTING: u8 = 1;
const STATE_RUNNING: u8 = 2;
const STATE_HALTING: u8 = 3;
const STATE_HALTED: u8 = 4;
const STATE_FAILED: u8 = 5;

fn state_name(state: u8) -> &'static str {
    match state {
        STATE_OFF => "not booted",
        STATE_BOOTING => "booting",
        STATE_RUNNING => "running",
        STATE_HALTING => "halting",
        STATE_HALTED => "halted",
        _ => "failed to boot",
    }
}

/// Whether the kernel is booted and not (being) halted.
pub fn is_running() -> bool {
    STATE.load(Ordering::Acquire) == STATE_RUNNING || !REMOTE.load(Ordering::Acquire).is_null()
}

/// `Ok` while the kernel can take system calls, [`Errno::ENOSYS`] otherwise.
fn check_running() -> Result<(), Errno> {
    if is_running() {
        Ok(())
    } else {
        Err(Errno::ENOSYS)
    }
}

/// The operations table handed to `lkl_init`; the kernel keeps the pointer.
struct OpsCell(UnsafeCell<lkl_host_operations>);
// SAFETY: the table is written once (in get_or_init) and then only read, by
// the kernel, from any thread.
unsafe impl Sync for OpsCell {}
// SAFETY: as above; it holds only function pointers and a NULL string.
unsafe impl Send for OpsCell {}

static OPS: OnceLock<OpsCell> = OnceLock::new();

/// How to boot the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptions {
    /// Memory for the kernel in bytes (`mem=`), at least 1 KiB; passed in
    /// MiB when it is a whole number of them, else in KiB (rounded down).
    /// Default 64 MiB.
    pub memory: u64,
    /// The kernel's console log level (`loglevel=`): messages below it are
    /// printed to stderr. `None` leaves the kernel's default (everything).
    /// Default `Some(4)`: warnings and worse.
    pub loglevel: Option<u8>,
    /// Extra kernel command line, appended last.
    pub cmdline: String,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            memory: 64 << 20,
            loglevel: Some(4),
            cmdline: String::new(),
        }
    }
}

impl BootOptions {
    /// The full kernel command line: `mem=`, `loglevel=`, the registered
    /// virtio-mmio devices, then [`BootOptions::cmdline`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a memory size under 1 KiB, a log level
    /// over 8, or a command line holding a NUL byte.
    pub fn kernel_cmdline(&self) -> Result<String, Error> {
        let mut parts = Vec::new();
        parts.push(if self.memory & ((1 << 20) - 1) == 0 && self.memory > 0 {
            format!("mem={}M", self.memory >> 20)
        } else if self.memory >= 1 << 10 {
            format!("mem={}K", self.memory >> 10)
        } else {
            return Err(Error::InvalidOption {
                option: "memory",
                reason: format!("{} bytes is less than 1 KiB", self.memory),
            });
        });
        if let Some(level) = self.loglevel {
            if level > 8 {
                return Err(Error::InvalidOption {
                    option: "loglevel",
                    reason: format!("{level} is not in 0..=8"),
                });
            }
            parts.push(format!("loglevel={level}"));
        }
        let devices = MmioRegistry::global().cmdline();
        if !devices.is_empty() {
            parts.push(devices);
        }
        if !self.cmdline.trim().is_empty() {
            parts.push(self.cmdline.trim().to_owned());
        }
        let line = parts.join(" ");
        if line.contains('\0') {
            return Err(Error::InvalidOption {
                option: "cmdline",
                reason: format!("{:?} contains a NUL byte", self.cmdline),
            });
        }
        Ok(line)
    }
}

/// How long [`Kernel::halt`] waits for host threads that the kernel left
/// unjoined to end.
pub const HALT_REAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The running kernel. Only one exists per process; system calls do not
/// need it (any thread may make them while it runs), halting does.
///
/// Dropping it without [`Kernel::halt`] leaves the kernel running until the
/// process exits.
#[derive(Debug)]
#[must_use = "the kernel keeps running until halt() is called"]
pub struct Kernel {
    _private: (),
}

/// Boots the kernel: `lkl_init` with the host operations, then
/// `lkl_start_kernel` with [`BootOptions::kernel_cmdline`]. Returns once the
/// kernel takes system calls; the calling thread becomes its init task.
///
/// # Errors
/// [`Error::InvalidOption`] for options that make no command line,
/// [`Error::AlreadyBooted`] if this process booted a kernel before (running
/// or not), [`Error::Init`] if `lkl_init` refuses the operations, and
/// [`Error::Boot`] if the kernel fails to start (it cannot be retried).
pub fn boot(opts: &BootOptions) -> Result<Kernel, Error> {
    let line = format!(
        "lkl_wall_offset={} {}",
        wall_offset_ns(),
        opts.kernel_cmdline()?
    );
    let c_line = CString::new(line.clone()).map_err(|_| Error::InvalidOption {
        option: "cmdline",
        reason: format!("{line:?} contains a NUL byte"),
    })?;
    STATE
        .compare_exchange(
            STATE_OFF,
            STATE_BOOTING,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map_err(|s| Error::AlreadyBooted {
            state: state_name(s),
        })?;
    let ops = OPS
        .get_or_init(|| OpsCell(UnsafeCell::new(host::host_ops())))
        .0
        .get();
    // SAFETY: `ops` points at a complete table that lives for the rest of
    // the process and is never written again.
    let r = unsafe { lkl_sys::lkl_init(ops) };
    if r < 0 {
        STATE.store(STATE_OFF, Ordering::Release);
        return Err(Error::Init(Errno(-r)));
    }
    // SAFETY: a "%s" format with one C string argument: the command line is
    // never interpreted as a format.
    let r = unsafe { lkl_sys::lkl_start_kernel(c"%s".as_ptr(), c_line.as_ptr()) };
    if r < 0 {
        STATE.store(STATE_FAILED, Ordering::Release);
        return Err(Error::Boot {
            cmdline: line,
            errno: Errno(-r),
        });
    }
    STATE.store(STATE_RUNNING, Ordering::Release);
    Ok(Kernel { _private: () })
}

/// The host's `CLOCK_REALTIME` minus its `CLOCK_MONOTONIC` (the kernel's
/// clocksource), in ns: the kernel sets its wall clock from it at the end
/// of boot (`lkl_wall_offset=`, arch/lkl/kernel/time.c), so that files
/// written inside LKL carry real times and its timestamps match the host's.
fn wall_offset_ns() -> i64 {
    let Ok(real) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return 0;
    };
    real.as_nanos() as i64 - host::time::monotonic_ns() as i64
}

impl Kernel {
    /// Shuts the kernel down (`lkl_sys_halt`, which joins the kernel's own
    /// threads and frees its timer), then makes sure that every host thread
    /// this library created has been joined: threads that ended, or end
    /// within [`HALT_REAP_TIMEOUT`], without being joined are joined here
    /// ([`host::thread::reap_all`]); any still running then is an error. System calls fail with
    /// [`Errno::ENOSYS`] from the moment this is called.
    ///
    /// # Errors
    /// [`Error::Halt`] if `lkl_sys_halt` fails, [`Error::ThreadsLeaked`] if
    /// host threads are left (the kernel is halted either way).
    pub fn halt(self) -> Result<(), Error> {
        STATE.store(STATE_HALTING, Ordering::Release);
        // Network receive threads write into the kernel's memory from the
        // host: stop them before it is freed.
        virtio::net::stop_all();
        // So do the volumes' workers.
        virtio::volume::stop_all();
        // SAFETY: the kernel is running (a Kernel exists only after a boot
        // that succeeded, and halt consumes it).
        let r = unsafe { lkl_sys::lkl_sys_halt() };
        if r < 0 {
            STATE.store(STATE_HALTED, Ordering::Release);
            return Err(Error::Halt(Errno(-r as i32)));
        }
        // Before lkl_cleanup forgets the host operations: a kernel thread
        // that was not joined may still be on its way out through them (the
        // boot-time init thread calls thread_exit after waking the caller of
        // lkl_start_kernel, and nobody joins it).
        let threads = host::thread::reap_all(HALT_REAP_TIMEOUT);
        let timers = host::live_timer_threads();
        STATE.store(STATE_HALTED, Ordering::Release);
        if threads != 0 || timers != 0 {
            // Something may still call into the table: keep it.
            return Err(Error::ThreadsLeaked { threads, timers });
        }
        // SAFETY: after a successful halt, with no host thread of ours left
        // running, as lkl_cleanup requires.
        unsafe { lkl_sys::lkl_cleanup() };
        Ok(())
    }
}

/// A system call made in a kernel that runs in another process (see [`set_remote`]):
/// LKL's number and arguments in, the result or a negative errno out.
pub type RemoteCall = fn(c_long, [c_long; 6]) -> c_long;

static REMOTE: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Sends every [`syscall`] (and so every typed wrapper of this crate) to `f` from now
/// on, for a process whose kernel runs in another process (the shared kernel of
/// `lkl-run`'s process tree). Pointer arguments stay this process's: the other
/// process's kernel reads and writes them through its user-memory host operations.
pub fn set_remote(f: RemoteCall) {
    REMOTE.store(f as *mut (), Ordering::Release);
}

/// Makes system call `no` inside the kernel with six raw arguments.
///
/// # Safety
/// The arguments must be what the system call expects: pointers must be
/// valid for what the kernel reads or writes through them (the kernel runs
/// in this address space and trusts them).
///
/// # Errors
/// The call's errno; [`Errno::ENOSYS`] if the kernel is not running.
pub unsafe fn syscall(no: c_long, mut args: [c_long; 6]) -> Result<c_long, Errno> {
    let remote = REMOTE.load(Ordering::Acquire);
    if !remote.is_null() {
        // SAFETY: REMOTE only ever holds a `RemoteCall` (see `set_remote`).
        let f: RemoteCall = unsafe { core::mem::transmute::<*mut (), RemoteCall>(remote) };
        return Errno::result(f(no, args));
    }
    check_running()?;
    // SAFETY: `args` is six longs as lkl_syscall requires; the rest is the
    // caller's contract.
    Errno::result(unsafe { lkl_sys::lkl_syscall(no, args.as_mut_ptr()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_from_options() {
        // Other tests register devices in the global registry.
        let _g = host::test_serial();
        let o = BootOptions::default();
        assert_eq!(o.kernel_cmdline().unwrap(), "mem=64M loglevel=4");
        let o = BootOptions {
            memory: 32 << 20 | 512 << 10,
            loglevel: None,
            cmdline: " init=/x  ".into(),
        };
        assert_eq!(o.kernel_cmdline().unwrap(), "mem=33280K init=/x");
        let bad = BootOptions {
            memory: 100,
            ..Default::default()
        };
        assert_eq!(
            bad.kernel_cmdline().unwrap_err().to_string(),
            "invalid boot option memory: 100 bytes is less than 1 KiB"
        );
        let bad = BootOptions {
            cmdline: "a\0b".into(),
            ..Default::default()
        };
        assert!(matches!(
            bad.kernel_cmdline(),
            Err(Error::InvalidOption {
                option: "cmdline",
                ..
            })
        ));
        let bad = BootOptions {
            loglevel: Some(9),
            ..Default::default()
        };
        assert!(bad.kernel_cmdline().is_err());
    }

    #[test]
    fn no_system_calls_before_boot() {
        assert!(!is_running());
        assert_eq!(check_running(), Err(Errno::ENOSYS));
    }
}
