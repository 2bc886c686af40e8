//! Virtio devices given to the kernel's virtio-mmio driver.
//!
//! The device models are the `lkl-virtio` crate's ([`lkl_virtio`]: the
//! transport, virtqueue, virtio-blk and virtio-net, built and tested
//! without the kernel), re-exported here under their old paths
//! ([`mmio`], [`queue`], [`memory`], [`block`], [`net`]). This module is
//! the kernel side of them:
//!
//! - [`kernel`]: what the devices reach the kernel through: its memory
//!   ([`KernelMemory`]) and its interrupt lines ([`IrqLine`]).
//! - [`disk`](mod@disk): the disk API: [`Disk::open`],
//!   [`Disk::open_overlay`] (copy-on-write), [`check_image_type`],
//!   [`add_disk`] (before boot on the command line, after boot
//!   hot-added), [`disk_name`], [`mount_disk`] and [`umount_disk`].
//! - [`net`]: [`add_net`], [`net_ifname`] and the device threads' start
//!   and stop.
//! - [`volume`]: host directories over virtio-fs: [`add_volume`] and
//!   [`mount_volume`] (the kernel's `virtiofs`), the workers' start and
//!   stop.
//!
//! Each device's [`MmioTransport`] gets a window in the MMIO registry
//! ([`crate::MmioRegistry`]) and an interrupt line
//! ([`crate::get_free_irq`]); the kernel learns of it on the command line
//! or, while it runs, through [`crate::virtio_mmio_add`].

use crate::Errno;

/// A device's id: its index in the order of adding, shown as `#N`.
macro_rules! device_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "#{}", self.0)
            }
        }
    };
}

pub mod disk;
pub mod kernel;
pub mod net;
mod sysfs;
pub mod volume;

pub use lkl_virtio::{block, memory, mmio, queue, spec, QueueError};

pub use block::{Block, BlockStats, Overlay};
pub use disk::{
    add_disk, check_image_type, disk_name, disk_reader, disk_stats, mount_disk, partition_start,
    umount_disk, Disk, DiskId, DiskReader, SECTOR_SIZE,
};
pub use kernel::{IrqLine, KernelMemory};
pub use memory::GuestMemory;
pub use mmio::{Interrupt, MmioTransport, VirtioDevice};
pub use net::{
    add_net, add_net_with, net_ifindex, net_ifname, net_stats, BackendError, NetBackend, NetError,
    NetId, NetOptions, NetStats, BUSY_POLL_GAP, DEFAULT_BUSY_POLL,
};
pub use queue::{Descriptor, DescriptorChain, Queue};
pub use volume::{
    add_volume, mount_volume, report_volume_stats, umount_volumes, volume_path, volume_tag,
    VolumeError, VolumeId,
};

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

/// The device crate's virtio constants ([`spec`], written out from the
/// specification) against the kernel's own headers.
#[cfg(test)]
mod spec_matches_kernel {
    use std::mem::{offset_of, size_of};

    use lkl_sys as sys;

    use super::spec::{self, blk_config};

    /// (name, ours, the kernel's) for each `NAME = LKL_NAME`.
    macro_rules! pairs {
        ($($name:ident = $lkl:ident),* $(,)?) => {
            [$((stringify!($name), spec::$name, sys::$lkl as u32)),*]
        };
    }

    #[test]
    fn every_constant_is_the_kernels() {
        let pairs = pairs! {
        VIRTIO_ID_NET = LKL_VIRTIO_ID_NET,
        VIRTIO_ID_BLOCK = LKL_VIRTIO_ID_BLOCK,
        VIRTIO_ID_FS = LKL_VIRTIO_ID_FS,
        VIRTIO_CONFIG_S_ACKNOWLEDGE = LKL_VIRTIO_CONFIG_S_ACKNOWLEDGE,
        VIRTIO_CONFIG_S_DRIVER = LKL_VIRTIO_CONFIG_S_DRIVER,
        VIRTIO_CONFIG_S_DRIVER_OK = LKL_VIRTIO_CONFIG_S_DRIVER_OK,
        VIRTIO_CONFIG_S_FEATURES_OK = LKL_VIRTIO_CONFIG_S_FEATURES_OK,
        VIRTIO_CONFIG_S_NEEDS_RESET = LKL_VIRTIO_CONFIG_S_NEEDS_RESET,
        VIRTIO_CONFIG_S_FAILED = LKL_VIRTIO_CONFIG_S_FAILED,
        VIRTIO_RING_F_EVENT_IDX = LKL_VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_F_VERSION_1 = LKL_VIRTIO_F_VERSION_1,
        VRING_DESC_F_NEXT = LKL_VRING_DESC_F_NEXT,
        VRING_DESC_F_WRITE = LKL_VRING_DESC_F_WRITE,
        VRING_DESC_F_INDIRECT = LKL_VRING_DESC_F_INDIRECT,
        VRING_AVAIL_F_NO_INTERRUPT = LKL_VRING_AVAIL_F_NO_INTERRUPT,
        VIRTIO_MMIO_MAGIC_VALUE = LKL_VIRTIO_MMIO_MAGIC_VALUE,
        VIRTIO_MMIO_VERSION = LKL_VIRTIO_MMIO_VERSION,
        VIRTIO_MMIO_DEVICE_ID = LKL_VIRTIO_MMIO_DEVICE_ID,
        VIRTIO_MMIO_VENDOR_ID = LKL_VIRTIO_MMIO_VENDOR_ID,
        VIRTIO_MMIO_DEVICE_FEATURES = LKL_VIRTIO_MMIO_DEVICE_FEATURES,
        VIRTIO_MMIO_DEVICE_FEATURES_SEL = LKL_VIRTIO_MMIO_DEVICE_FEATURES_SEL,
        VIRTIO_MMIO_DRIVER_FEATURES = LKL_VIRTIO_MMIO_DRIVER_FEATURES,
        VIRTIO_MMIO_DRIVER_FEATURES_SEL = LKL_VIRTIO_MMIO_DRIVER_FEATURES_SEL,
        VIRTIO_MMIO_QUEUE_SEL = LKL_VIRTIO_MMIO_QUEUE_SEL,
        VIRTIO_MMIO_QUEUE_NUM_MAX = LKL_VIRTIO_MMIO_QUEUE_NUM_MAX,
        VIRTIO_MMIO_QUEUE_NUM = LKL_VIRTIO_MMIO_QUEUE_NUM,
        VIRTIO_MMIO_QUEUE_READY = LKL_VIRTIO_MMIO_QUEUE_READY,
        VIRTIO_MMIO_QUEUE_NOTIFY = LKL_VIRTIO_MMIO_QUEUE_NOTIFY,
        VIRTIO_MMIO_INTERRUPT_STATUS = LKL_VIRTIO_MMIO_INTERRUPT_STATUS,
        VIRTIO_MMIO_INTERRUPT_ACK = LKL_VIRTIO_MMIO_INTERRUPT_ACK,
        VIRTIO_MMIO_STATUS = LKL_VIRTIO_MMIO_STATUS,
        VIRTIO_MMIO_QUEUE_DESC_LOW = LKL_VIRTIO_MMIO_QUEUE_DESC_LOW,
        VIRTIO_MMIO_QUEUE_DESC_HIGH = LKL_VIRTIO_MMIO_QUEUE_DESC_HIGH,
        VIRTIO_MMIO_QUEUE_AVAIL_LOW = LKL_VIRTIO_MMIO_QUEUE_AVAIL_LOW,
        VIRTIO_MMIO_QUEUE_AVAIL_HIGH = LKL_VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
        VIRTIO_MMIO_QUEUE_USED_LOW = LKL_VIRTIO_MMIO_QUEUE_USED_LOW,
        VIRTIO_MMIO_QUEUE_USED_HIGH = LKL_VIRTIO_MMIO_QUEUE_USED_HIGH,
        VIRTIO_MMIO_SHM_SEL = LKL_VIRTIO_MMIO_SHM_SEL,
        VIRTIO_MMIO_SHM_LEN_LOW = LKL_VIRTIO_MMIO_SHM_LEN_LOW,
        VIRTIO_MMIO_SHM_LEN_HIGH = LKL_VIRTIO_MMIO_SHM_LEN_HIGH,
        VIRTIO_MMIO_SHM_BASE_LOW = LKL_VIRTIO_MMIO_SHM_BASE_LOW,
        VIRTIO_MMIO_SHM_BASE_HIGH = LKL_VIRTIO_MMIO_SHM_BASE_HIGH,
        VIRTIO_MMIO_CONFIG_GENERATION = LKL_VIRTIO_MMIO_CONFIG_GENERATION,
        VIRTIO_MMIO_CONFIG = LKL_VIRTIO_MMIO_CONFIG,
        VIRTIO_MMIO_INT_VRING = LKL_VIRTIO_MMIO_INT_VRING,
        VIRTIO_MMIO_INT_CONFIG = LKL_VIRTIO_MMIO_INT_CONFIG,
        VIRTIO_NET_F_CSUM = LKL_VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM = LKL_VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_MAC = LKL_VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_GUEST_TSO4 = LKL_VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6 = LKL_VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_ECN = LKL_VIRTIO_NET_F_GUEST_ECN,
        VIRTIO_NET_F_GUEST_UFO = LKL_VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_HOST_TSO4 = LKL_VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6 = LKL_VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_ECN = LKL_VIRTIO_NET_F_HOST_ECN,
        VIRTIO_NET_F_HOST_UFO = LKL_VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_MRG_RXBUF = LKL_VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_HDR_F_NEEDS_CSUM = LKL_VIRTIO_NET_HDR_F_NEEDS_CSUM,
        VIRTIO_NET_HDR_F_DATA_VALID = LKL_VIRTIO_NET_HDR_F_DATA_VALID,
        VIRTIO_NET_HDR_GSO_NONE = LKL_VIRTIO_NET_HDR_GSO_NONE,
        VIRTIO_NET_HDR_GSO_TCPV4 = LKL_VIRTIO_NET_HDR_GSO_TCPV4,
        VIRTIO_NET_HDR_GSO_UDP = LKL_VIRTIO_NET_HDR_GSO_UDP,
        VIRTIO_NET_HDR_GSO_TCPV6 = LKL_VIRTIO_NET_HDR_GSO_TCPV6,
        VIRTIO_NET_HDR_GSO_ECN = LKL_VIRTIO_NET_HDR_GSO_ECN,
        VIRTIO_BLK_F_SIZE_MAX = LKL_VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_SEG_MAX = LKL_VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_RO = LKL_VIRTIO_BLK_F_RO,
        VIRTIO_BLK_F_FLUSH = LKL_VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_DISCARD = LKL_VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES = LKL_VIRTIO_BLK_F_WRITE_ZEROES,
        VIRTIO_BLK_T_IN = LKL_VIRTIO_BLK_T_IN,
        VIRTIO_BLK_T_OUT = LKL_VIRTIO_BLK_T_OUT,
        VIRTIO_BLK_T_FLUSH = LKL_VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID = LKL_VIRTIO_BLK_T_GET_ID,
        VIRTIO_BLK_T_DISCARD = LKL_VIRTIO_BLK_T_DISCARD,
        VIRTIO_BLK_T_WRITE_ZEROES = LKL_VIRTIO_BLK_T_WRITE_ZEROES,
        VIRTIO_BLK_S_OK = LKL_VIRTIO_BLK_S_OK,
        VIRTIO_BLK_S_IOERR = LKL_VIRTIO_BLK_S_IOERR,
        VIRTIO_BLK_S_UNSUPP = LKL_VIRTIO_BLK_S_UNSUPP,
        VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = LKL_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
        VIRTIO_BLK_ID_BYTES = LKL_VIRTIO_BLK_ID_BYTES,
        };
        for (name, ours, kernel) in pairs {
            assert_eq!(
                ours, kernel,
                "{name}: ours {ours:#x}, the kernel's {kernel:#x}"
            );
        }
    }

    #[test]
    fn block_layouts_are_the_kernels() {
        type Config = sys::lkl_virtio_blk_config;
        assert_eq!(
            spec::VIRTIO_BLK_OUTHDR_SIZE,
            size_of::<sys::lkl_virtio_blk_outhdr>()
        );
        assert_eq!(
            spec::VIRTIO_BLK_DISCARD_WRITE_ZEROES_SIZE,
            size_of::<sys::lkl_virtio_blk_discard_write_zeroes>()
        );
        assert_eq!(blk_config::SIZE, size_of::<Config>());
        /// (field, our offset, the kernel's) for each `field = OURS`.
        macro_rules! offsets {
            ($($field:ident = $ours:ident),* $(,)?) => {
                [$((stringify!($field), blk_config::$ours, offset_of!(Config, $field))),*]
            };
        }
        for (name, ours, kernel) in offsets! {
            capacity = CAPACITY,
            size_max = SIZE_MAX,
            seg_max = SEG_MAX,
            num_queues = NUM_QUEUES,
            max_discard_sectors = MAX_DISCARD_SECTORS,
            max_discard_seg = MAX_DISCARD_SEG,
            discard_sector_alignment = DISCARD_SECTOR_ALIGNMENT,
            max_write_zeroes_sectors = MAX_WRITE_ZEROES_SECTORS,
            max_write_zeroes_seg = MAX_WRITE_ZEROES_SEG,
            write_zeroes_may_unmap = WRITE_ZEROES_MAY_UNMAP,
        } {
            assert_eq!(ours, kernel, "virtio_blk_config.{name}");
        }
    }
}
