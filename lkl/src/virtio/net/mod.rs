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
//! - [`device`]: the virtio-net device ([`Net`]).
//! - [`backend`]: the [`Backend`] trait, one frame per call.
//! - [`tap`]: the tap and macvtap backends ([`Tap`]).
//! - [`raw`]: the `AF_PACKET` backend ([`Raw`]).
//! - [`pipe`]: the FIFO-pair backend ([`Pipe`]).
//! - [`offload`]: the offload bits and the virtio-net header.
//! - [`rx`]: the receive thread, one per device, with its busy polling.
//! - [`tx`]: the transmit thread, which takes over sending while traffic
//!   is bulk.
//! - [`coalesce`]: receive coalescing, TCP/IPv4 segments of one flow
//!   joined into one large segment.
//!
//! Each device gets a MAC of its own unless one is given
//! (`02:4c:4b:4c:00:NN`, locally administered), and [`net_ifname`] finds
//! the kernel's interface by it, so names never have to be guessed.

use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod backend;
pub mod coalesce;
pub mod device;
pub mod offload;
pub mod pipe;
pub mod raw;
pub mod rx;
pub mod rx_queue;
pub mod tap;
pub mod tx;

pub use backend::{Backend, Wake};
pub use device::{Net, NetStats};
pub use pipe::Pipe;
pub use raw::Raw;
pub use tap::Tap;

use super::memory::KernelMemory;
use super::mmio::{IrqLine, MmioTransport, WINDOW_SIZE};
use super::sysfs;
use crate::{Errno, MmioRegistry, MmioWindow};

/// Everything that can go wrong adding or finding a network device.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No host interface of that name in this network namespace.
    #[error("no tap interface {ifname:?} on the host: create it with `ip tuntap add dev {ifname} mode tap`")]
    NoSuchTap {
        /// The interface name.
        ifname: String,
    },
    /// `/dev/net/tun`, through which a tap is attached, could not be
    /// opened.
    #[error(
        "cannot open /dev/net/tun for tap interface {ifname:?}: {source}{}",
        tun_hint(source)
    )]
    TunDevice {
        /// The tap interface.
        ifname: String,
        /// Why.
        source: std::io::Error,
    },
    /// The tap could not be attached.
    #[error(
        "cannot attach to tap interface {ifname:?}: {source}{}",
        tap_hint(ifname, source)
    )]
    Tap {
        /// The interface name.
        ifname: String,
        /// Why.
        source: std::io::Error,
    },
    /// No macvtap character device at that path.
    #[error("no macvtap device {}: create a macvtap on a host interface with `ip link add link IFACE name mvt0 type macvtap mode bridge`, then use /dev/tapN with N from `cat /sys/class/net/mvt0/ifindex`", path.display())]
    NoSuchMacvtap {
        /// The path.
        path: std::path::PathBuf,
    },
    /// The macvtap device could not be opened or set up.
    #[error("cannot use macvtap device {}: {source}", path.display())]
    Macvtap {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No host interface of that name for the raw backend.
    #[error("no interface {ifname:?} on the host for the raw backend: name an existing one (see `ip link`)")]
    NoSuchInterface {
        /// The interface name.
        ifname: String,
    },
    /// The raw socket could not be opened or bound.
    #[error(
        "cannot open a raw (AF_PACKET) socket on {ifname:?}: {source}{}",
        raw_hint(source)
    )]
    Raw {
        /// The interface name.
        ifname: String,
        /// Why.
        source: std::io::Error,
    },
    /// No FIFO at that path for the pipe backend.
    #[error("no FIFO {}: create it with `mkfifo {}`", path.display(), path.display())]
    NoSuchPipe {
        /// The path.
        path: std::path::PathBuf,
    },
    /// A pipe path could not be opened or set up.
    #[error("cannot use pipe {}: {source}", path.display())]
    Pipe {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
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

/// What to add to an error opening `/dev/net/tun`: how to get the device.
fn tun_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            " (the device is not open to this user: `chmod 0666 /dev/net/tun`, \
             the usual mode, or run as root)"
        }
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => {
            " (no tun device: `modprobe tun`, or `mkdir -p /dev/net && \
             mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun`)"
        }
        _ => "",
    }
}

/// What to add to an error attaching a tap: who may attach it.
fn tap_hint(ifname: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => format!(
            " (the tap is not this user's: make it with `ip tuntap add dev {ifname} mode tap \
             user $(id -un)`, or run as root)"
        ),
        Some(libc::EBUSY) => " (another process holds it: one LKL per tap)".to_owned(),
        _ => String::new(),
    }
}

/// What to add to a raw socket error: the privilege it needs.
fn raw_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            " (needs CAP_NET_RAW: run as root or `setcap cap_net_raw+ep PROGRAM`)"
        }
        _ => "",
    }
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

/// How a network device is set up, beside its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// Its MAC; [`default_mac`] when `None`.
    pub mac: Option<[u8; 6]>,
    /// The virtio-net feature bits (`VIRTIO_NET_F_*`) to offer where the
    /// backend can honour them (upstream's `offload` mask): checksum,
    /// TSO4/6, mergeable receive buffers. 0 offers none.
    pub offload: u64,
    /// Busy polling: how long the receive thread keeps looking for frames
    /// before it sleeps, while frames come in quick succession (the last
    /// sleep ended within [`BUSY_POLL_GAP`]). A frame found that way costs
    /// no host wake-up, a round trip one fewer; the price is a core busy
    /// for up to this long after each burst of such traffic. Zero turns
    /// it off. Default [`DEFAULT_BUSY_POLL`].
    pub busy_poll: std::time::Duration,
    /// Receive coalescing: TCP/IPv4 segments of one flow that the host
    /// queued together reach the driver as one large segment (up to
    /// [`coalesce::LIMIT`] and one more), so LKL handles and acknowledges
    /// fewer, larger frames. Needs mergeable buffers, TSO4 and checksum
    /// offload negotiated (`offload` 0x8083 or more) and a tap or
    /// macvtap. Default on.
    pub coalesce: bool,
    /// A transmit thread: while traffic is bulk, frames are sent to the
    /// backend by a thread of the device's own instead of the kernel's
    /// thread that queued them, so the host's work for each frame (for an
    /// acknowledgement, its TCP sender's) is not done on LKL's CPU. A
    /// request/response exchange or a ping is still sent at once by the
    /// kernel's thread. Needs [`NetOptions::busy_poll`] (the thread polls
    /// for that long before it sleeps); default on.
    pub transmit_thread: bool,
}

/// The default [`NetOptions::busy_poll`]. On the 2-core test VM a TCP
/// 1-byte request/response over a tap took 16-46 µs with polling and
/// 75-82 µs without; ping took 14-17 µs with 200 µs of polling but 59-68
/// µs with 50, where the host's wake-ups were slow (the next echo reply
/// came after the poll had ended). See docs/net-device.md.
pub const DEFAULT_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// Busy polling starts only after a sleep shorter than this: frames then
/// come in quick succession (a request/response exchange, a transfer),
/// not now and then (an idle link, a ping a second), where polling would
/// only burn a core.
pub const BUSY_POLL_GAP: std::time::Duration = std::time::Duration::from_millis(1);

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            mac: None,
            offload: 0,
            busy_poll: DEFAULT_BUSY_POLL,
            coalesce: true,
            transmit_thread: true,
        }
    }
}

/// A device added with [`add_net`]: its index in the order of adding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetId(pub usize);

impl std::fmt::Display for NetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
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
/// Those of the backend ([`NetError::NoSuchTap`], [`NetError::Tap`]),
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
/// As [`add_net`]; the backend's own ([`NetError::NoSuchMacvtap`],
/// [`NetError::Macvtap`], [`NetError::NoSuchInterface`],
/// [`NetError::Raw`], [`NetError::NoSuchPipe`], [`NetError::Pipe`]);
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
    let tx_thread = transport.with_device(|d| d.shared().tx.enabled).then(|| {
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

    #[test]
    fn a_raw_socket_refused_for_want_of_privilege_says_which() {
        let e = NetError::Raw {
            ifname: "eth9".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
    }
}
