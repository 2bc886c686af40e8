//! virtio-mmio device models for LKL, in host code: what the kernel's
//! `virtio_mmio` driver talks to. Nothing here needs the kernel: the
//! devices reach it only through small traits that `lkl` implements
//! ([`GuestMemory`] for the driver's buffers, [`Interrupt`] for its
//! interrupt line, [`MmioDevice`] for its register window), so this crate
//! builds and its unit tests run without building the kernel, against a
//! driver played by the tests (the rings laid out in a fake address
//! space, chains made available the way Linux makes them).
//!
//! - [`mmio`]: the virtio-mmio version 2 register file and the device
//!   status state machine ([`MmioTransport`]).
//! - [`queue`]: the split virtqueue, device side, with every driver value
//!   validated before use.
//! - [`memory`]: how the device reaches the driver's buffers.
//! - [`block`]: virtio-blk over an image file, optionally copy-on-write
//!   (writes kept in memory by an [`Overlay`], the file never written).
//! - [`net`]: virtio-net over a host backend (tap, macvtap, raw socket,
//!   FIFO pair), with its receive and transmit threads.
//! - [`fs`]: virtio-fs, a host directory served to the kernel's
//!   `virtiofs` driver by a FUSE server of our own (passthrough, every
//!   name resolved beneath the directory), with a pool of worker threads.
//! - [`spec`]: the virtio constants, from the virtio 1.2 specification.
//!
//! virtio-blk requests and virtio-net transmissions are handled on the
//! thread that notifies the queue (the kernel's, holding its CPU), then
//! the device raises its interrupt; virtio-net also has a receive thread
//! per device, and a transmit thread that takes over sending while
//! traffic is bulk (`docs/net-device.md`).
//!
//! `lkl` (`lkl/src/virtio/`) gives the devices to the kernel: interrupt
//! lines, MMIO windows, the boot command line, hot-add, and the disk and
//! network APIs (`lkl::add_disk`, `lkl::add_net`, ...).

pub mod block;
pub mod diag;
pub mod fs;
pub mod memory;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod spec;

pub use block::{Block, BlockStats, Overlay, SECTOR_SIZE};
pub use fs::{Fs, FsError};
pub use memory::GuestMemory;
pub use mmio::{Interrupt, MmioDevice, MmioTransport, VirtioDevice};
pub use net::{Backend, BackendError, Net, NetOptions, NetStats, BUSY_POLL_GAP, DEFAULT_BUSY_POLL};
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
