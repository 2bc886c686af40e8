//! Virtio devices in the host library, reached by the kernel's
//! virtio-mmio driver.
//!
//! - [`mmio`]: the virtio-mmio version 2 register file and the device
//!   status state machine ([`MmioTransport`]), which plugs into the MMIO
//!   window registry ([`crate::MmioRegistry`]).
//! - [`queue`]: the split virtqueue, device side, with every driver value
//!   validated before use.
//! - [`block`]: virtio-blk over an image file, optionally copy-on-write
//!   (writes kept in memory by an [`Overlay`], the file never written).
//! - [`net`]: virtio-net over a host backend (tap, macvtap, raw socket,
//!   FIFO pair), [`add_net`] and [`net_ifname`].
//! - [`disk`](mod@disk): the API: [`Disk::open`], [`Disk::open_overlay`]
//!   (copy-on-write), [`check_image_type`], [`add_disk`] (before
//!   boot on the command line, after boot hot-added), [`mount_disk`] and
//!   [`umount_disk`].
//!
//! virtio-blk requests and virtio-net transmissions are handled on the
//! thread that notifies the queue (the kernel's, holding its CPU), then
//! the device raises its interrupt with [`crate::trigger_irq`];
//! virtio-net also has a receive thread per device, and a transmit thread
//! that takes over sending while traffic is bulk (`docs/net-device.md`).

use crate::Errno;

pub mod block;
pub mod disk;
pub mod memory;
pub mod mmio;
pub mod net;
pub mod queue;
mod sysfs;

pub use block::{Block, BlockStats, Overlay};
pub use disk::{
    add_disk, check_image_type, disk_name, disk_stats, mount_disk, umount_disk, Disk, DiskId,
    SECTOR_SIZE,
};
pub use memory::{GuestMemory, KernelMemory};
pub use mmio::{Interrupt, IrqLine, MmioTransport, VirtioDevice};
pub use net::{
    add_net, add_net_with, net_ifindex, net_ifname, net_stats, NetBackend, NetError, NetId,
    NetOptions, NetStats, BUSY_POLL_GAP, DEFAULT_BUSY_POLL,
};
pub use queue::{Descriptor, DescriptorChain, Queue};

/// What is wrong with what the driver put in a queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue was used before the driver made it ready.
    #[error("the queue is not ready")]
    NotReady,
    /// A queue size that is zero, too large or not a power of two.
    #[error("invalid queue size {size}: must be a power of two up to {max}")]
    Size {
        /// The size asked for.
        size: u16,
        /// The device's maximum.
        max: u16,
    },
    /// A ring address without the alignment the spec requires.
    #[error("{what} address {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        /// Which area.
        what: &'static str,
        /// The address.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
    /// A range that is not in the driver's memory.
    #[error("{len} bytes at {addr:#x} are outside the driver's memory")]
    Memory {
        /// First address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// A descriptor index beyond the table.
    #[error("descriptor index {index} is out of range for a queue of {size}")]
    DescIndex {
        /// The index.
        index: u16,
        /// The queue size.
        size: u16,
    },
    /// A chain longer than the queue: a loop.
    #[error("the descriptor chain at {head} is longer than the queue ({size}): a loop")]
    ChainTooLong {
        /// The chain's head.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// An indirect descriptor, which the device does not offer.
    #[error("descriptor {index} is indirect, which was not negotiated")]
    Indirect {
        /// The descriptor.
        index: u16,
    },
    /// A device-readable buffer after a device-writable one.
    #[error("the descriptor chain at {head} has a readable buffer after a writable one")]
    Order {
        /// The chain's head.
        head: u16,
    },
    /// The available index moved further than the ring holds.
    #[error("the driver made {pending} buffers available in a queue of {size}")]
    AvailOverrun {
        /// How many it claims.
        pending: u16,
        /// The queue size.
        size: u16,
    },
}

/// Everything that can go wrong adding, finding or mounting a disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image file could not be opened or examined.
    #[error("cannot open disk image {path}: {error}")]
    Open {
        /// The image.
        path: std::path::PathBuf,
        /// Why (in the message, not a separate source: printed once).
        error: std::io::Error,
    },
    /// The path is something no disk can be made of (a fifo, socket,
    /// character device or directory).
    #[error("disk image {path} is {kind}: give an image file or a block device")]
    NotAnImage {
        /// The path.
        path: std::path::PathBuf,
        /// What it is (`a fifo`, ...).
        kind: &'static str,
    },
    /// Another open disk (in this process or another) holds a lock on the
    /// image that conflicts: an exclusive one, or any when opening
    /// read-write.
    #[error("disk image {path} is in use (locked) and cannot be opened {}", if *read_only { "read-only" } else { "read-write" })]
    Locked {
        /// The image.
        path: std::path::PathBuf,
        /// Whether it was being opened read-only.
        read_only: bool,
    },
    /// An image smaller than one sector.
    #[error("disk image {path} holds {size} bytes, less than one 512-byte sector")]
    TooSmall {
        /// The image.
        path: std::path::PathBuf,
        /// Its size.
        size: u64,
    },
    /// No interrupt line was free for the device.
    #[error("no interrupt line for the disk: {0}")]
    Irq(Errno),
    /// The MMIO window could not be registered.
    #[error("cannot register the disk's mmio window: {0}")]
    Mmio(#[from] crate::Error),
    /// The running kernel refused the hot-added device.
    #[error("the kernel refused the hot-added disk {path}: {errno}")]
    HotAdd {
        /// The image.
        path: std::path::PathBuf,
        /// What `lkl_virtio_mmio_add` returned.
        errno: Errno,
    },
    /// Disks can be added before boot or while the kernel runs, not now.
    #[error("cannot add a disk while the kernel is {state}")]
    NotAddable {
        /// What the kernel is doing.
        state: &'static str,
    },
    /// An id that [`add_disk`] did not return.
    #[error("no disk {0}")]
    UnknownDisk(DiskId),
    /// The kernel is not running.
    #[error("the kernel is not running")]
    NotRunning,
    /// The kernel did not create a block device for the disk.
    #[error("no block device with serial {serial:?} in /sys/block (disk {path})")]
    NoBlockDevice {
        /// The serial the device reports.
        serial: String,
        /// The image.
        path: std::path::PathBuf,
    },
    /// The disk has no such partition.
    #[error("{disk} has no partition {partition}")]
    NoPartition {
        /// The block device name (`vda`).
        disk: String,
        /// The partition asked for.
        partition: u32,
    },
    /// A read-write mount of a disk added read-only.
    #[error("{disk} ({path}) was added read-only and cannot be mounted read-write")]
    ReadOnly {
        /// The block device name.
        disk: String,
        /// The image.
        path: std::path::PathBuf,
    },
    /// A system call inside the kernel failed.
    #[error("{op} {path}: {errno}")]
    Sys {
        /// What was being done (`mount ext4 /dev/vda1 on`, `mknod`, ...).
        op: String,
        /// The path it was done to.
        path: std::path::PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
    /// A sysfs file that does not say what it should.
    #[error("unexpected contents {contents:?} in {path}")]
    Sysfs {
        /// The file.
        path: std::path::PathBuf,
        /// What it held.
        contents: String,
    },
}
