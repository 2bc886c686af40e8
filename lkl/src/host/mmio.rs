//! MMIO windows for virtio-mmio devices.
//!
//! Devices do not live in real memory: each registered device gets a
//! window in a fake physical range starting at [`MMIO_BASE`]. The kernel is
//! told about it on the command line (`virtio_mmio.device=SIZE@ADDR:IRQ`),
//! maps it with `ioremap` (which hands the address back unchanged if it lies
//! in a window), and every `readl`/`writel` on it becomes an
//! `iomem_access` call, dispatched here to the device's [`MmioDevice`]
//! handler with the offset into its window.
//!
//! Windows are whole 4 KiB pages, allocated first-fit from the lowest free
//! address, so an unregistered window's address can be reused.

use std::ffi::{c_int, c_long, c_void};
use std::ptr;
use std::sync::{Arc, RwLock};

use crate::Error;

/// Where the fake physical range for device windows starts (4 GiB, above
/// anything the kernel's `mem=` gives it).
pub const MMIO_BASE: u64 = 0x1_0000_0000;
/// The size of the fake physical range.
pub const MMIO_RANGE: u64 = 0x1000_0000;
/// Window granularity.
pub const MMIO_PAGE: u64 = 0x1000;

pub use lkl_virtio::MmioDevice;

/// A device's window in the fake physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioWindow {
    /// First address.
    pub base: u64,
    /// Length in bytes (a multiple of [`MMIO_PAGE`]).
    pub size: u64,
    /// The interrupt line the device raises.
    pub irq: u32,
}

impl MmioWindow {
    /// The kernel parameter announcing this device:
    /// `virtio_mmio.device=SIZE@ADDR:IRQ`.
    pub fn cmdline(&self) -> String {
        format!(
            "virtio_mmio.device={}@{:#x}:{}",
            self.size, self.base, self.irq
        )
    }

    fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && len <= self.size && addr - self.base <= self.size - len
    }
}

struct Entry {
    window: MmioWindow,
    device: Arc<dyn MmioDevice>,
}

/// A set of device windows. The host operations use [`MmioRegistry::global`];
/// separate instances are for tests.
pub struct MmioRegistry {
    /// Sorted by base address.
    entries: RwLock<Vec<Entry>>,
}

impl Default for MmioRegistry {
    fn default() -> Self {
        Self::new()
    }
}

static GLOBAL: MmioRegistry = MmioRegistry::new();

impl MmioRegistry {
    /// An empty registry.
    pub const fn new() -> Self {
        MmioRegistry {
            entries: RwLock::new(Vec::new()),
        }
    }

    /// The registry the kernel's `ioremap`/`iomem_access` consult.
    pub fn global() -> &'static MmioRegistry {
        &GLOBAL
    }

    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `device` a window of at least `size` bytes raising `irq`.
    ///
    /// # Errors
    /// [`Error::MmioSize`] for a size of 0 or more than the whole range,
    /// [`Error::MmioExhausted`] when no gap is large enough.
    pub fn register(
        &self,
        device: Arc<dyn MmioDevice>,
        size: u64,
        irq: u32,
    ) -> Result<MmioWindow, Error> {
        if size == 0 || size > MMIO_RANGE {
            return Err(Error::MmioSize {
                size,
                max: MMIO_RANGE,
            });
        }
        let size = size.div_ceil(MMIO_PAGE) * MMIO_PAGE;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // First fit: the lowest gap that holds `size`.
        let mut base = MMIO_BASE;
        let mut at = entries.len();
        for (i, e) in entries.iter().enumerate() {
            if e.window.base - base >= size {
                at = i;
                break;
            }
            base = e.window.base + e.window.size;
        }
        if MMIO_BASE + MMIO_RANGE - base < size {
            return Err(Error::MmioExhausted { size });
        }
        let window = MmioWindow { base, size, irq };
        entries.insert(at, Entry { window, device });
        Ok(window)
    }

    /// Removes the window starting at `base`.
    ///
    /// # Errors
    /// [`Error::MmioNotRegistered`] if no window starts there.
    pub fn unregister(&self, base: u64) -> Result<(), Error> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let i = entries
            .iter()
            .position(|e| e.window.base == base)
            .ok_or(Error::MmioNotRegistered { base })?;
        entries.remove(i);
        Ok(())
    }

    /// Every window, by address.
    pub fn windows(&self) -> Vec<MmioWindow> {
        self.read_entries().iter().map(|e| e.window).collect()
    }

    /// The command-line parameters announcing every window, space-separated
    /// (empty if there is none).
    pub fn cmdline(&self) -> String {
        self.read_entries()
            .iter()
            .map(|e| e.window.cmdline())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether `[addr, addr + len)` lies inside one window.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.read_entries()
            .iter()
            .any(|e| e.window.contains(addr, len))
    }

    /// Reads (`write == false`) or writes `data` at `addr`, dispatched to the
    /// device owning it. Returns false if no window holds the whole access.
    pub fn access(&self, addr: u64, data: &mut [u8], write: bool) -> bool {
        let device = {
            let entries = self.read_entries();
            let Some(e) = entries
                .iter()
                .find(|e| e.window.contains(addr, data.len() as u64))
            else {
                return false;
            };
            (e.device.clone(), addr - e.window.base)
        };
        // The lock is released: a handler may register or unregister devices.
        let (device, offset) = device;
        if write {
            device.write(offset, data);
        } else {
            device.read(offset, data);
        }
        true
    }
}

/// `ioremap`: `addr` itself if `[addr, addr + size)` lies in a registered
/// window, NULL otherwise.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the operations table.
pub unsafe extern "C" fn ioremap(addr: c_long, size: c_int) -> *mut c_void {
    if size < 0 || !GLOBAL.contains(addr as u64, size as u64) {
        return ptr::null_mut();
    }
    addr as usize as *mut c_void
}

/// `iomem_access`: reads or writes `size` bytes at the window address
/// `addr`, from or to `val`. Returns 0, or `-EFAULT` if no window holds the
/// access.
///
/// # Safety
/// `val` must be valid for `size` bytes of reads and writes.
pub unsafe extern "C" fn iomem_access(
    addr: *const c_void,
    val: *mut c_void,
    size: c_int,
    write: c_int,
) -> c_int {
    if size <= 0 || val.is_null() {
        return -(lkl_sys::LKL_EINVAL as c_int);
    }
    // SAFETY: the caller passes `size` valid bytes at `val`.
    let data = unsafe { std::slice::from_raw_parts_mut(val.cast::<u8>(), size as usize) };
    if GLOBAL.access(addr as u64, data, write != 0) {
        0
    } else {
        -(lkl_sys::LKL_EFAULT as c_int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records accesses; reads return the offset's low bytes.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<(bool, u64, Vec<u8>)>>,
    }

    impl MmioDevice for Recorder {
        fn read(&self, offset: u64, data: &mut [u8]) {
            let bytes = offset.to_le_bytes();
            data.copy_from_slice(&bytes[..data.len()]);
            self.log
                .lock()
                .unwrap()
                .push((false, offset, data.to_vec()));
        }
        fn write(&self, offset: u64, data: &[u8]) {
            self.log.lock().unwrap().push((true, offset, data.to_vec()));
        }
    }

    #[test]
    fn windows_are_page_rounded_first_fit() {
        let r = MmioRegistry::new();
        let d = Arc::new(Recorder::default());
        let a = r.register(d.clone(), 0x200, 5).unwrap();
        let b = r.register(d.clone(), 0x1001, 6).unwrap();
        let c = r.register(d.clone(), 0x100, 7).unwrap();
        assert_eq!(
            a,
            MmioWindow {
                base: MMIO_BASE,
                size: 0x1000,
                irq: 5
            }
        );
        assert_eq!(
            b,
            MmioWindow {
                base: MMIO_BASE + 0x1000,
                size: 0x2000,
                irq: 6
            }
        );
        assert_eq!(c.base, MMIO_BASE + 0x3000);
        // A freed gap is reused by something that fits, skipped otherwise.
        r.unregister(b.base).unwrap();
        let big = r.register(d.clone(), 0x3000, 8).unwrap();
        assert_eq!(big.base, MMIO_BASE + 0x4000);
        let small = r.register(d.clone(), 0x2000, 9).unwrap();
        assert_eq!(small.base, MMIO_BASE + 0x1000);
        assert_eq!(
            r.windows().iter().map(|w| w.irq).collect::<Vec<_>>(),
            [5, 9, 7, 8]
        );
        assert!(matches!(
            r.unregister(0x1234),
            Err(Error::MmioNotRegistered { base: 0x1234 })
        ));
    }

    #[test]
    fn bad_sizes_and_exhaustion() {
        let r = MmioRegistry::new();
        let d = Arc::new(Recorder::default());
        assert!(matches!(
            r.register(d.clone(), 0, 1),
            Err(Error::MmioSize { .. })
        ));
        assert!(matches!(
            r.register(d.clone(), MMIO_RANGE + 1, 1),
            Err(Error::MmioSize { .. })
        ));
        r.register(d.clone(), MMIO_RANGE - MMIO_PAGE, 1).unwrap();
        r.register(d.clone(), 1, 2).unwrap();
        let e = r.register(d.clone(), 1, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no free mmio window of 0x1000 bytes left in the device address range"
        );
    }

    #[test]
    fn cmdline_names_every_device() {
        let r = MmioRegistry::new();
        assert_eq!(r.cmdline(), "");
        let d = Arc::new(Recorder::default());
        r.register(d.clone(), 0x200, 5).unwrap();
        r.register(d, 0x200, 6).unwrap();
        assert_eq!(
            r.cmdline(),
            "virtio_mmio.device=4096@0x100000000:5 virtio_mmio.device=4096@0x100001000:6"
        );
    }

    #[test]
    fn accesses_dispatch_with_offsets_and_bounds() {
        let r = MmioRegistry::new();
        let d1 = Arc::new(Recorder::default());
        let d2 = Arc::new(Recorder::default());
        let w1 = r.register(d1.clone(), 0x1000, 5).unwrap();
        let w2 = r.register(d2.clone(), 0x1000, 6).unwrap();
        let mut v = [0u8; 4];
        assert!(r.access(w1.base + 0x70, &mut v, false));
        assert_eq!(v, [0x70, 0, 0, 0]);
        let mut v = 0xdead_beef_u32.to_le_bytes();
        assert!(r.access(w2.base + 0x50, &mut v, true));
        // The last 4 bytes of a window are in; one byte further is not.
        let mut v = [0u8; 4];
        assert!(r.access(w2.base + 0xffc, &mut v, false));
        assert!(!r.access(w2.base + 0xffd, &mut v, false));
        assert!(!r.access(MMIO_BASE - 4, &mut v, false));
        assert_eq!(
            *d1.log.lock().unwrap(),
            [(false, 0x70, vec![0x70, 0, 0, 0])]
        );
        assert_eq!(
            *d2.log.lock().unwrap(),
            [
                (true, 0x50, vec![0xef, 0xbe, 0xad, 0xde]),
                (false, 0xffc, vec![0xfc, 0x0f, 0, 0]),
            ]
        );
    }

    #[test]
    fn host_operations_use_the_global_registry() {
        let _g = crate::host::test_serial();
        let d = Arc::new(Recorder::default());
        let w = MmioRegistry::global()
            .register(d.clone(), 0x200, 9)
            .unwrap();
        let mut val = 0u32;
        // SAFETY: `val` is a live 4-byte local.
        unsafe {
            assert_eq!(
                ioremap(w.base as c_long, 0x200),
                w.base as usize as *mut c_void
            );
            assert!(ioremap(w.base as c_long, 0x1001).is_null());
            let addr = (w.base + 8) as usize as *const c_void;
            assert_eq!(iomem_access(addr, ptr::addr_of_mut!(val).cast(), 4, 0), 0);
            assert_eq!(val, 8);
            val = 0x1234;
            assert_eq!(iomem_access(addr, ptr::addr_of_mut!(val).cast(), 2, 1), 0);
            let outside = (w.base + w.size) as usize as *const c_void;
            assert_eq!(
                iomem_access(outside, ptr::addr_of_mut!(val).cast(), 4, 0),
                -(lkl_sys::LKL_EFAULT as c_int)
            );
        }
        assert_eq!(d.log.lock().unwrap()[1], (true, 8, vec![0x34, 0x12]));
        MmioRegistry::global().unregister(w.base).unwrap();
    }
}
