//! virtio-net over a host backend.
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
//! - [`trace`]: per-stage timestamps (off unless asked for).
//!
//! `lkl` gives a device to the kernel (`lkl::add_net`) and starts its
//! threads ([`rx::run`], [`tx::run`]).

pub mod backend;
pub mod coalesce;
pub mod device;
pub mod offload;
pub mod pipe;
pub mod raw;
pub mod rx;
pub mod rx_queue;
pub mod tap;
pub mod trace;
pub mod tx;

pub use backend::{Backend, Wake};
pub use device::{Net, NetStats};
pub use pipe::Pipe;
pub use raw::Raw;
pub use tap::Tap;

/// A backend that could not be opened: what is missing and how to make
/// it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
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

/// How a network device is set up, beside its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// Its MAC; `lkl::virtio::net::default_mac` when `None`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_socket_refused_for_want_of_privilege_says_which() {
        let e = BackendError::Raw {
            ifname: "eth9".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
    }
}
