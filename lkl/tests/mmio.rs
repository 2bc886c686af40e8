//! The MMIO window plumbing against the real kernel: a device registered
//! before boot is announced on the command line, one registered after boot
//! is hot-added, and the kernel's virtio-mmio driver reads their registers
//! through `ioremap` and `iomem_access`.
//!
//! The device answers as a virtio-mmio placeholder (magic "virt", version
//! 2, device id 0), which the driver probes and then leaves alone.

use std::sync::{Arc, Mutex};

use lkl::{sys, MmioDevice, MmioRegistry};

/// Records the offsets read; answers like an empty virtio-mmio slot.
#[derive(Default)]
struct Placeholder {
    reads: Mutex<Vec<u64>>,
    writes: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl MmioDevice for Placeholder {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.reads.lock().unwrap().push(offset);
        let value: u32 = match offset as u32 {
            sys::LKL_VIRTIO_MMIO_MAGIC_VALUE => u32::from_le_bytes(*b"virt"),
            sys::LKL_VIRTIO_MMIO_VERSION => 2,
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.writes.lock().unwrap().push((offset, data.to_vec()));
    }
}

#[test]
fn kernel_probes_a_registered_window() {
    let dev = Arc::new(Placeholder::default());
    let irq = lkl::get_free_irq(c"lkl-mmio-test").unwrap();
    let window = MmioRegistry::global()
        .register(dev.clone(), 0x200, irq)
        .unwrap();
    let opts = lkl::BootOptions::default();
    assert!(opts.kernel_cmdline().unwrap().contains(&window.cmdline()));

    let kernel = lkl::boot(&opts).unwrap();
    let reads = dev.reads.lock().unwrap().clone();
    for reg in [
        sys::LKL_VIRTIO_MMIO_MAGIC_VALUE,
        sys::LKL_VIRTIO_MMIO_VERSION,
        sys::LKL_VIRTIO_MMIO_DEVICE_ID,
    ] {
        assert!(
            reads.contains(&(reg as u64)),
            "register {reg:#x} not read; reads: {reads:x?}"
        );
    }

    // Hot-add: a second window announced to the running kernel.
    let late = Arc::new(Placeholder::default());
    let irq2 = lkl::get_free_irq(c"lkl-mmio-test-late").unwrap();
    let window2 = MmioRegistry::global()
        .register(late.clone(), 0x200, irq2)
        .unwrap();
    assert_ne!(window2.base, window.base);
    let id = lkl::virtio_mmio_add(&window2).unwrap();
    assert!(id >= 0, "platform device id {id}");
    let reads = late.reads.lock().unwrap().clone();
    assert!(
        reads.contains(&(sys::LKL_VIRTIO_MMIO_MAGIC_VALUE as u64)),
        "hot-added window not probed; reads: {reads:x?}"
    );

    kernel.halt().unwrap();
    MmioRegistry::global().unregister(window.base).unwrap();
    MmioRegistry::global().unregister(window2.base).unwrap();
    // After halt the kernel is gone: hot-add is refused, not a crash.
    assert_eq!(lkl::virtio_mmio_add(&window2), Err(lkl::Errno::ENOSYS));
}
