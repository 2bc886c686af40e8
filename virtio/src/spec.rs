//! The virtio constants the devices use, written out from the Virtual I/O
//! Device (VIRTIO) Version 1.2 specification (OASIS, committee
//! specification 01), with the names of Linux's uapi headers
//! (`linux/virtio_*.h`) without their `LKL_` prefix. The section each
//! group comes from is given above it.
//!
//! They are the same numbers the kernel's driver uses: `lkl` has a unit
//! test comparing every one of them with the kernel's own headers
//! (`lkl_sys::LKL_VIRTIO_*`), so this crate needs no kernel build.
//!
//! Types follow the kernel's bindings (`u32`), so the numbers mix with
//! the register values and feature shifts the devices compute.

// Device types (section 5: 5.1 network device, 5.2 block device).

/// `VIRTIO_ID_NET`.
pub const VIRTIO_ID_NET: u32 = 1;
/// `VIRTIO_ID_BLOCK`.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// `VIRTIO_ID_FS` (section 5.11, file system device).
pub const VIRTIO_ID_FS: u32 = 26;

// Device status field (section 2.1).

/// `VIRTIO_CONFIG_S_ACKNOWLEDGE`: the guest found the device.
pub const VIRTIO_CONFIG_S_ACKNOWLEDGE: u32 = 1;
/// `VIRTIO_CONFIG_S_DRIVER`: the guest knows how to drive it.
pub const VIRTIO_CONFIG_S_DRIVER: u32 = 2;
/// `VIRTIO_CONFIG_S_DRIVER_OK`: the driver is ready.
pub const VIRTIO_CONFIG_S_DRIVER_OK: u32 = 4;
/// `VIRTIO_CONFIG_S_FEATURES_OK`: feature negotiation is complete.
pub const VIRTIO_CONFIG_S_FEATURES_OK: u32 = 8;
/// `VIRTIO_CONFIG_S_NEEDS_RESET`: the device hit an error.
pub const VIRTIO_CONFIG_S_NEEDS_RESET: u32 = 0x40;
/// `VIRTIO_CONFIG_S_FAILED`: the driver gave up.
pub const VIRTIO_CONFIG_S_FAILED: u32 = 0x80;

// Reserved feature bits (section 6).

/// `VIRTIO_RING_F_EVENT_IDX` (section 2.7.10).
pub const VIRTIO_RING_F_EVENT_IDX: u32 = 29;
/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u32 = 32;

// Split virtqueue (section 2.7.5, The Virtqueue Descriptor Table; 2.7.6,
// The Virtqueue Available Ring).

/// `VRING_DESC_F_NEXT`: the buffer continues in `next`.
pub const VRING_DESC_F_NEXT: u32 = 1;
/// `VRING_DESC_F_WRITE`: the device writes the buffer.
pub const VRING_DESC_F_WRITE: u32 = 2;
/// `VRING_DESC_F_INDIRECT`: the buffer holds a descriptor table.
pub const VRING_DESC_F_INDIRECT: u32 = 4;
/// `VRING_AVAIL_F_NO_INTERRUPT`: the driver asks for no interrupt.
pub const VRING_AVAIL_F_NO_INTERRUPT: u32 = 1;

// MMIO device register layout, version 2 (section 4.2.2).

/// `VIRTIO_MMIO_MAGIC_VALUE`: "virt".
pub const VIRTIO_MMIO_MAGIC_VALUE: u32 = 0x000;
/// `VIRTIO_MMIO_VERSION`.
pub const VIRTIO_MMIO_VERSION: u32 = 0x004;
/// `VIRTIO_MMIO_DEVICE_ID`.
pub const VIRTIO_MMIO_DEVICE_ID: u32 = 0x008;
/// `VIRTIO_MMIO_VENDOR_ID`.
pub const VIRTIO_MMIO_VENDOR_ID: u32 = 0x00c;
/// `VIRTIO_MMIO_DEVICE_FEATURES`.
pub const VIRTIO_MMIO_DEVICE_FEATURES: u32 = 0x010;
/// `VIRTIO_MMIO_DEVICE_FEATURES_SEL`.
pub const VIRTIO_MMIO_DEVICE_FEATURES_SEL: u32 = 0x014;
/// `VIRTIO_MMIO_DRIVER_FEATURES`.
pub const VIRTIO_MMIO_DRIVER_FEATURES: u32 = 0x020;
/// `VIRTIO_MMIO_DRIVER_FEATURES_SEL`.
pub const VIRTIO_MMIO_DRIVER_FEATURES_SEL: u32 = 0x024;
/// `VIRTIO_MMIO_QUEUE_SEL`.
pub const VIRTIO_MMIO_QUEUE_SEL: u32 = 0x030;
/// `VIRTIO_MMIO_QUEUE_NUM_MAX`.
pub const VIRTIO_MMIO_QUEUE_NUM_MAX: u32 = 0x034;
/// `VIRTIO_MMIO_QUEUE_NUM`.
pub const VIRTIO_MMIO_QUEUE_NUM: u32 = 0x038;
/// `VIRTIO_MMIO_QUEUE_READY`.
pub const VIRTIO_MMIO_QUEUE_READY: u32 = 0x044;
/// `VIRTIO_MMIO_QUEUE_NOTIFY`.
pub const VIRTIO_MMIO_QUEUE_NOTIFY: u32 = 0x050;
/// `VIRTIO_MMIO_INTERRUPT_STATUS`.
pub const VIRTIO_MMIO_INTERRUPT_STATUS: u32 = 0x060;
/// `VIRTIO_MMIO_INTERRUPT_ACK`.
pub const VIRTIO_MMIO_INTERRUPT_ACK: u32 = 0x064;
/// `VIRTIO_MMIO_STATUS`.
pub const VIRTIO_MMIO_STATUS: u32 = 0x070;
/// `VIRTIO_MMIO_QUEUE_DESC_LOW`.
pub const VIRTIO_MMIO_QUEUE_DESC_LOW: u32 = 0x080;
/// `VIRTIO_MMIO_QUEUE_DESC_HIGH`.
pub const VIRTIO_MMIO_QUEUE_DESC_HIGH: u32 = 0x084;
/// `VIRTIO_MMIO_QUEUE_AVAIL_LOW`.
pub const VIRTIO_MMIO_QUEUE_AVAIL_LOW: u32 = 0x090;
/// `VIRTIO_MMIO_QUEUE_AVAIL_HIGH`.
pub const VIRTIO_MMIO_QUEUE_AVAIL_HIGH: u32 = 0x094;
/// `VIRTIO_MMIO_QUEUE_USED_LOW`.
pub const VIRTIO_MMIO_QUEUE_USED_LOW: u32 = 0x0a0;
/// `VIRTIO_MMIO_QUEUE_USED_HIGH`.
pub const VIRTIO_MMIO_QUEUE_USED_HIGH: u32 = 0x0a4;
/// `VIRTIO_MMIO_SHM_SEL`.
pub const VIRTIO_MMIO_SHM_SEL: u32 = 0x0ac;
/// `VIRTIO_MMIO_SHM_LEN_LOW`.
pub const VIRTIO_MMIO_SHM_LEN_LOW: u32 = 0x0b0;
/// `VIRTIO_MMIO_SHM_LEN_HIGH`.
pub const VIRTIO_MMIO_SHM_LEN_HIGH: u32 = 0x0b4;
/// `VIRTIO_MMIO_SHM_BASE_LOW`.
pub const VIRTIO_MMIO_SHM_BASE_LOW: u32 = 0x0b8;
/// `VIRTIO_MMIO_SHM_BASE_HIGH`.
pub const VIRTIO_MMIO_SHM_BASE_HIGH: u32 = 0x0bc;
/// `VIRTIO_MMIO_CONFIG_GENERATION`.
pub const VIRTIO_MMIO_CONFIG_GENERATION: u32 = 0x0fc;
/// `VIRTIO_MMIO_CONFIG`: the device configuration space starts here.
pub const VIRTIO_MMIO_CONFIG: u32 = 0x100;
/// `VIRTIO_MMIO_INT_VRING`: `InterruptStatus` bit for used buffers.
pub const VIRTIO_MMIO_INT_VRING: u32 = 1;
/// `VIRTIO_MMIO_INT_CONFIG`: `InterruptStatus` bit for a configuration
/// change.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 2;

// Network device feature bits (section 5.1.3).

/// `VIRTIO_NET_F_CSUM`.
pub const VIRTIO_NET_F_CSUM: u32 = 0;
/// `VIRTIO_NET_F_GUEST_CSUM`.
pub const VIRTIO_NET_F_GUEST_CSUM: u32 = 1;
/// `VIRTIO_NET_F_MAC`.
pub const VIRTIO_NET_F_MAC: u32 = 5;
/// `VIRTIO_NET_F_GUEST_TSO4`.
pub const VIRTIO_NET_F_GUEST_TSO4: u32 = 7;
/// `VIRTIO_NET_F_GUEST_TSO6`.
pub const VIRTIO_NET_F_GUEST_TSO6: u32 = 8;
/// `VIRTIO_NET_F_GUEST_ECN`.
pub const VIRTIO_NET_F_GUEST_ECN: u32 = 9;
/// `VIRTIO_NET_F_GUEST_UFO`.
pub const VIRTIO_NET_F_GUEST_UFO: u32 = 10;
/// `VIRTIO_NET_F_HOST_TSO4`.
pub const VIRTIO_NET_F_HOST_TSO4: u32 = 11;
/// `VIRTIO_NET_F_HOST_TSO6`.
pub const VIRTIO_NET_F_HOST_TSO6: u32 = 12;
/// `VIRTIO_NET_F_HOST_ECN`.
pub const VIRTIO_NET_F_HOST_ECN: u32 = 13;
/// `VIRTIO_NET_F_HOST_UFO`.
pub const VIRTIO_NET_F_HOST_UFO: u32 = 14;
/// `VIRTIO_NET_F_MRG_RXBUF`.
pub const VIRTIO_NET_F_MRG_RXBUF: u32 = 15;

// Network device packet header (section 5.1.6).

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum is partial.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u32 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u32 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u32 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u32 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`.
pub const VIRTIO_NET_HDR_GSO_UDP: u32 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u32 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`: a flag on the GSO type.
pub const VIRTIO_NET_HDR_GSO_ECN: u32 = 0x80;

// Block device feature bits (section 5.2.3).

/// `VIRTIO_BLK_F_SIZE_MAX`.
pub const VIRTIO_BLK_F_SIZE_MAX: u32 = 1;
/// `VIRTIO_BLK_F_SEG_MAX`.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// `VIRTIO_BLK_F_RO`.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// `VIRTIO_BLK_F_FLUSH`.
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
/// `VIRTIO_BLK_F_DISCARD`.
pub const VIRTIO_BLK_F_DISCARD: u32 = 13;
/// `VIRTIO_BLK_F_WRITE_ZEROES`.
pub const VIRTIO_BLK_F_WRITE_ZEROES: u32 = 14;

// Block device requests (section 5.2.6).

/// `VIRTIO_BLK_T_IN`: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// `VIRTIO_BLK_T_OUT`: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// `VIRTIO_BLK_T_FLUSH`.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_T_GET_ID`: the device's serial.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// `VIRTIO_BLK_T_DISCARD`.
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
/// `VIRTIO_BLK_T_WRITE_ZEROES`.
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
/// `VIRTIO_BLK_S_OK`.
pub const VIRTIO_BLK_S_OK: u32 = 0;
/// `VIRTIO_BLK_S_IOERR`.
pub const VIRTIO_BLK_S_IOERR: u32 = 1;
/// `VIRTIO_BLK_S_UNSUPP`.
pub const VIRTIO_BLK_S_UNSUPP: u32 = 2;
/// `VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP`: the range may be unmapped.
pub const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1;
/// `VIRTIO_BLK_ID_BYTES`: the length of a `GET_ID` answer.
pub const VIRTIO_BLK_ID_BYTES: u32 = 20;
/// The request header (`struct virtio_blk_outhdr`): type (le32), ioprio
/// (le32), sector (le64).
pub const VIRTIO_BLK_OUTHDR_SIZE: usize = 16;
/// One range of a `DISCARD`/`WRITE_ZEROES` request (`struct
/// virtio_blk_discard_write_zeroes`): sector (le64), num_sectors (le32),
/// flags (le32).
pub const VIRTIO_BLK_DISCARD_WRITE_ZEROES_SIZE: usize = 16;

/// Offsets of the fields of the block device's configuration space
/// (`struct virtio_blk_config`, section 5.2.4) that the device fills.
pub mod blk_config {
    /// `capacity` (le64): in 512-byte sectors.
    pub const CAPACITY: usize = 0;
    /// `size_max` (le32).
    pub const SIZE_MAX: usize = 8;
    /// `seg_max` (le32).
    pub const SEG_MAX: usize = 12;
    /// `num_queues` (le16).
    pub const NUM_QUEUES: usize = 34;
    /// `max_discard_sectors` (le32).
    pub const MAX_DISCARD_SECTORS: usize = 36;
    /// `max_discard_seg` (le32).
    pub const MAX_DISCARD_SEG: usize = 40;
    /// `discard_sector_alignment` (le32).
    pub const DISCARD_SECTOR_ALIGNMENT: usize = 44;
    /// `max_write_zeroes_sectors` (le32).
    pub const MAX_WRITE_ZEROES_SECTORS: usize = 48;
    /// `max_write_zeroes_seg` (le32).
    pub const MAX_WRITE_ZEROES_SEG: usize = 52;
    /// `write_zeroes_may_unmap` (u8).
    pub const WRITE_ZEROES_MAY_UNMAP: usize = 56;
    /// The whole structure, up to and including the zoned
    /// characteristics (`zoned`, 24 bytes at 72).
    pub const SIZE: usize = 96;
}
