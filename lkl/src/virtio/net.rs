//! Network devices: virtio-net over a host backend, and finding the
//! kernel's interface for each.
//!
//! ```no_run
//! let id = lkl::add_net(lkl::NetBackend::Tap { ifname: "tap0".into() }, None)?;
//! let kernel = lkl::boot(&lkl::BootOptions::default())?;
//! let eth = lkl::net_ifname(id)?; // "eth0", found by MAC in /sys/class/net
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The device itself, its backends and threads are `lkl-virtio`'s
//! ([`lkl_virtio::net`], re-exported here: [`device`], [`backend`],
//! [`tap`], [`raw`], [`pipe`], [`offload`], [`rx`], [`tx`],
//! [`coalesce`]); this module gives a device to the kernel (an interrupt
//! line, an MMIO window, the command line or a hot-add), starts its
//! threads, stops them at halt and finds the kernel's interface.
//!
//! Each device gets a MAC of its own unless one is given
//! (`02:4c:4b:4c:00:NN`, locally administered), and [`net_ifname`] finds
//! the kernel's interface by it, so names never have to be guessed.

use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use lkl_virtio::net::*;

use super::kernel::{IrqLine, KernelMemory};
use super::mmio::{MmioTransport, WINDOW_SIZE};
use super::sysfs;
use crate::{Errno, MmioRegistry, MmioWindow};

/// Everything that can go wrong adding or finding a network device.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The backend could not be opened (no such tap, no privilege...).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An offload mask with bits that are not offload features.
    #[error("offload mask {mask:#x} has bits {unknown:#x} that are not offload features: use VIRTIO_NET_F_* bits 0-1 and 7-15 (CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN, GUEST_UFO, HOST_TSO4/6, HOST_ECN, HOST_UFO, MRG_RXBUF), e.g. 0xc803")]
    Offload {
        /// The mask given.
        mask: u64,
        /// Its bits that are not offloads.
        unknown: u64,
    },
    /// The receive thread or its eventfd could not be made.
    #[error("cannot start the receive thread of network device {id}: {source}")]
    Thread {
        /// The device.
        id: NetId,
        /// Why.
        source: std::io::Error,
    },
    /// No interrupt line was free for the device.
    #[error("no interrupt line for the network device: {0}")]
    Irq(Errno),
    /// The MMIO window could not be registered.
    #[error("cannot register the network device's mmio window: {0}")]
    Mmio(#[from] crate::Error),
    /// The running kernel refused the hot-added device.
    #[error("the kernel refused the hot-added network device {id}: {errno}")]
    HotAdd {
        /// The device.
        id: NetId,
        /// What `lkl_virtio_mmio_add` returned.
        errno: Errno,
    },
    /// Devices can be added before boot or while the kernel runs, not now.
    #[error("cannot add a network device while the kernel is {state}")]
    NotAddable {
        /// What the kernel is doing.
        state: &'static str,
    },
    /// A backend this build cannot drive yet.
    #[error("network backend {0:?} is not supported yet")]
    Unsupported(&'static str),
    /// An id that [`add_net`] did not return.
    #[error("no network device {0}")]
    UnknownNet(NetId),
    /// The kernel is not running.
    #[error("the kernel is not running")]
    NotRunning,
    /// The kernel did not create an interface for the device.
    #[error("no interface with address {mac} in /sys/class/net (network device {id})")]
    NoInterface {
        /// The device.
        id: NetId,
        /// Its MAC, `aa:bb:cc:dd:ee:ff`.
        mac: String,
    },
    /// A system call inside the kernel failed.
    #[error("{op} {path}: {errno}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: String,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// Where a network device's frames go on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetBackend {
    /// An existing host tap interface.
    Tap {
        /// Its name.
        ifname: String,
    },
    /// A macvtap character device, e.g. `/dev/tap5`.
    Macvtap {
        /// Its path.
        path: std::path::PathBuf,
    },
    /// An `AF_PACKET` socket on an existing host interface.
    Raw {
        /// The host interface's name.
        ifname: String,
    },
    /// Frames read from one FIFO (or fd path) and written to another, for
    /// tests between two processes.
    Pipe {
        /// Where frames come in.
        rx: std::path::PathBuf,
        /// Where frames go out.
        tx: std::path::PathBuf,
    },
}

impl NetBackend {
    /// The configuration's name for the backend (`tap`, `macvtap`, `raw`,
    /// `pipe`).
    pub fn type_name(&self) -> &'static str {
        match self {
            NetBackend::Tap { .. } => "tap",
            NetBackend::Macvtap { .. } => "macvtap",
            NetBackend::Raw { .. } => "raw",
            NetBackend::Pipe { .. } => "pipe",
        }
    }
}

device_id! {
    /// A device added with [`add_net`]: its index in the order of adding.
    NetId
}

struct Entry {
    mac: [u8; 6],
    transport: Arc<MmioTransport<Net>>,
    _window: MmioWindow,
    name: Option<String>,
}

static NETS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn nets() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    NETS.lock().unwrap_or_else(|e| e.into_inner())
}

const IRQ_USER: &CStr = c"virtio-net";

/// The MAC given to device `id` when none is asked for.
pub fn default_mac(id: NetId) -> [u8; 6] {
    [0x02, 0x4c, 0x4b, 0x4c, (id.0 >> 8) as u8, id.0 as u8]
}

/// `aa:bb:cc:dd:ee:ff`, as sysfs writes it.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Gives the kernel a virtio-net device over `backend`, with address `mac`
/// (or [`default_mac`]). Before boot it is announced on the command line
/// [`crate::boot`] builds; while the kernel runs it is hot-added. Its
/// receive thread starts at once and holds frames until the driver is up.
///
/// # Errors
/// Those of the backend ([`NetError::Backend`]: [`BackendError::NoSuchTap`],
/// [`BackendError::Tap`]),
/// [`NetError::NotAddable`] while the kernel boots or halts or after it
/// halted, [`NetError::Irq`]/[`NetError::Mmio`] when no line or window is
/// left, [`NetError::Thread`], [`NetError::HotAdd`].
pub fn add_net(backend: NetBackend, mac: Option<[u8; 6]>) -> Result<NetId, NetError> {
    add_net_with(
        backend,
        &NetOptions {
            mac,
            ..Default::default()
        },
    )
}

/// [`add_net`] with every option: the backend, the MAC and the `offload`
/// mask (`VIRTIO_NET_F_*` bits, as upstream LKL's; those the backend
/// cannot honour are not offered, see `docs/net-device.md`).
///
/// # Errors
/// As [`add_net`]; the backend's own ([`BackendError::NoSuchMacvtap`],
/// [`BackendError::Macvtap`], [`BackendError::NoSuchInterface`],
/// [`BackendError::Raw`], [`BackendError::NoSuchPipe`],
/// [`BackendError::Pipe`]);
/// [`NetError::Offload`] for mask bits that are not offloads.
pub fn add_net_with(backend: NetBackend, opts: &NetOptions) -> Result<NetId, NetError> {
    let mac = opts.mac;
    let busy_poll = opts.busy_poll;
    let state = crate::STATE.load(Ordering::Acquire);
    if state != crate::STATE_OFF && state != crate::STATE_RUNNING {
        return Err(NetError::NotAddable {
            state: crate::state_name(state),
        });
    }
    let unknown = opts.offload & !offload::ALL;
    if unknown != 0 {
        return Err(NetError::Offload {
            mask: opts.offload,
            unknown,
        });
    }
    let vnet_hdr = opts.offload != 0;
    let backend: Arc<dyn Backend> = match backend {
        NetBackend::Tap { ifname } => Arc::new(Tap::open(&ifname, vnet_hdr)?),
        NetBackend::Macvtap { path } => Arc::new(Tap::open_macvtap(&path, vnet_hdr)?),
        NetBackend::Raw { ifname } => Arc::new(Raw::open(&ifname)?),
        NetBackend::Pipe { rx, tx } => Arc::new(Pipe::open(&rx, &tx)?),
    };
    let mut list = nets();
    let id = NetId(list.len());
    let mac = mac.unwrap_or_else(|| default_mac(id));
    let thread_err = |source| NetError::Thread { id, source };
    let device = Net::new(mac, backend, Arc::new(KernelMemory), opts).map_err(thread_err)?;
    let shared = device.shared();
    let irq = crate::get_free_irq(IRQ_USER).map_err(NetError::Irq)?;
    let transport = Arc::new(MmioTransport::new(
        device,
        Box::new(KernelMemory),
        Box::new(IrqLine(irq)),
    ));
    let window = match MmioRegistry::global().register(transport.clone(), WINDOW_SIZE, irq) {
        Ok(w) => w,
        Err(e) => {
            crate::put_irq(irq, IRQ_USER);
            return Err(e.into());
        }
    };
    let tx_thread = transport
        .with_device(|d| d.shared().transmit_thread())
        .then(|| {
            let (t, shared) = (transport.clone(), transport.with_device(Net::shared));
            std::thread::Builder::new()
                .name(format!("lkl-net-tx-{}", id.0))
                .spawn(move || tx::run(t, shared, busy_poll))
        });
    if let Some(Err(e)) = tx_thread {
        let _ = MmioRegistry::global().unregister(window.base);
        crate::put_irq(irq, IRQ_USER);
        return Err(thread_err(e));
    }
    let rx_transport = transport.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("lkl-net-rx-{}", id.0))
        .spawn(move || rx::run(rx_transport, shared, busy_poll));
    if let Err(e) = spawned {
        // The transmit thread, if started, sees the stop and ends.
        transport.with_device_mut(Net::stop);
        let _ = MmioRegistry::global().unregister(window.base);
        crate::put_irq(irq, IRQ_USER);
        return Err(thread_err(e));
    }
    if state == crate::STATE_RUNNING {
        if let Err(errno) = crate::virtio_mmio_add(&window) {
            // The device never gets a driver: its threads end.
            transport.with_device_mut(Net::stop);
            let _ = MmioRegistry::global().unregister(window.base);
            crate::put_irq(irq, IRQ_USER);
            return Err(NetError::HotAdd { id, errno });
        }
    }
    list.push(Entry {
        mac,
        transport,
        _window: window,
        name: None,
    });
    Ok(id)
}

/// Stops every network device before the kernel's memory is freed (called
/// by [`crate::Kernel::halt`]): the frames queued for sending go out
/// first (a socket's last segments, sent by the transmit thread until
/// then); once this returns, no device thread is reading or writing the
/// kernel's buffers or raising an interrupt, none will again, and each
/// thread ends.
pub(crate) fn stop_all() {
    for e in nets().iter() {
        e.transport.run_queue(device::TX_QUEUE, |dev, queue, mem| {
            let sent = dev.flush_transmit(queue, mem);
            dev.stop();
            sent
        });
        // Also when the queue is not live (no driver, a reset pending).
        e.transport.with_device_mut(Net::stop);
        // Outside the transport's lock: an interrupt being raised by the
        // receive thread may run the kernel's handler, which takes it.
        e.transport.with_device(Net::shared).quiesce();
    }
}

/// The frame counters of device `id`.
///
/// # Errors
/// [`NetError::UnknownNet`].
pub fn net_stats(id: NetId) -> Result<NetStats, NetError> {
    let list = nets();
    let e = list.get(id.0).ok_or(NetError::UnknownNet(id))?;
    Ok(e.transport.with_device(Net::stats))
}

/// How long [`net_ifname`] waits for the interface to appear.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(5);

/// The kernel's interface name for device `id` (`eth0`, ...), found by
/// its MAC in `/sys/class/net` (sysfs is mounted on `/sys` if needed).
///
/// # Errors
/// [`NetError::NotRunning`], [`NetError::UnknownNet`],
/// [`NetError::NoInterface`] if it does not appear within 5 seconds,
/// [`NetError::Sys`] if sysfs cannot be reached.
pub fn net_ifname(id: NetId) -> Result<String, NetError> {
    if !crate::is_running() {
        return Err(NetError::NotRunning);
    }
    let mac = {
        let list = nets();
        let e = list.get(id.0).ok_or(NetError::UnknownNet(id))?;
        if let Some(name) = &e.name {
            return Ok(name.clone());
        }
        format_mac(e.mac)
    };
    ensure_sysfs()?;
    let start = Instant::now();
    loop {
        for name in list_dir("/sys/class/net")? {
            let file = format!("/sys/class/net/{name}/address");
            if read_text(&file).is_ok_and(|s| s.trim() == mac) {
                nets()[id.0].name = Some(name.clone());
                return Ok(name);
            }
        }
        if start.elapsed() > APPEAR_TIMEOUT {
            return Err(NetError::NoInterface { id, mac });
        }
        let _ = crate::nanosleep(Duration::from_millis(10));
    }
}

/// The kernel's interface index for device `id`.
///
/// # Errors
/// Those of [`net_ifname`], and [`NetError::Sys`] if the `ifindex` file
/// cannot be read or parsed.
pub fn net_ifindex(id: NetId) -> Result<i32, NetError> {
    let name = net_ifname(id)?;
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = read_text(&path)?;
    text.trim().parse().map_err(|_| NetError::Sys {
        op: "parse",
        path,
        errno: Errno::EINVAL,
    })
}

/// Mounts sysfs on `/sys` unless `/sys/class/net` is already there.
fn ensure_sysfs() -> Result<(), NetError> {
    Ok(sysfs::ensure_mounted("/sys/class/net")?)
}

fn list_dir(path: &str) -> Result<Vec<String>, NetError> {
    Ok(sysfs::list_dir(path)?)
}

fn read_text(path: &str) -> Result<String, NetError> {
    Ok(sysfs::read_text(path)?)
}

impl From<sysfs::SysfsError> for NetError {
    fn from(e: sysfs::SysfsError) -> Self {
        NetError::Sys {
            op: e.op,
            path: e.path,
            errno: e.errno,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offload_mask_with_other_bits_is_refused_with_the_valid_ones_named() {
        let backend = NetBackend::Tap {
            ifname: "lklnosuch0".into(),
        };
        let opts = NetOptions {
            mac: None,
            offload: 0xc803 | 1 << 17,
            ..Default::default()
        };
        let e = add_net_with(backend, &opts).unwrap_err();
        assert!(matches!(e, NetError::Offload { unknown, .. } if unknown == 1 << 17));
        assert!(e.to_string().contains("0x20000"), "{e}");
        assert!(e.to_string().contains("MRG_RXBUF"), "{e}");
    }
}
