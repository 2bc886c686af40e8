//! How the device reaches the buffers the driver hands it.
//!
//! Virtqueues carry "physical" addresses; a [`GuestMemory`] turns them
//! into host pointers. In LKL (no MMU) they are host addresses inside this
//! process, so `lkl`'s `KernelMemory` translates them to themselves after
//! basic checks. Unit tests use a bounded, fake address space instead
//! (`VecMemory`, in the tests), which rejects every access outside it, so
//! bounds errors surface in tests.
//!
//! Accesses go through raw pointers, never Rust references: the driver owns
//! the memory and may touch it from another thread.

use std::ptr;

use super::QueueError;

/// A driver address space.
pub trait GuestMemory: Send + Sync {
    /// The host pointer for the `len` bytes at `addr`, or `None` if any of
    /// them lies outside the memory.
    fn translate(&self, addr: u64, len: u64) -> Option<*mut u8>;
}

impl<T: GuestMemory + ?Sized> GuestMemory for std::sync::Arc<T> {
    fn translate(&self, addr: u64, len: u64) -> Option<*mut u8> {
        (**self).translate(addr, len)
    }
}

/// Little-endian integers as they sit in the rings.
pub trait LeInt: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// From little-endian bytes (`b.len() == SIZE`).
    fn from_le(b: &[u8]) -> Self;
    /// Writes little-endian bytes into `b` (`b.len() == SIZE`).
    fn to_le(self, b: &mut [u8]);
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl LeInt for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("SIZE bytes"))
            }
            fn to_le(self, b: &mut [u8]) {
                b.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_int!(u16, u32, u64);

/// Reads a little-endian integer at `addr` (one volatile access when it is
/// aligned, as ring fields are).
pub fn read_le<T: LeInt, M: GuestMemory + ?Sized>(mem: &M, addr: u64) -> Result<T, QueueError> {
    let mut b = [0u8; 8];
    read_bytes(mem, addr, &mut b[..T::SIZE])?;
    Ok(T::from_le(&b[..T::SIZE]))
}

/// Writes a little-endian integer at `addr`.
pub fn write_le<T: LeInt, M: GuestMemory + ?Sized>(
    mem: &M,
    addr: u64,
    value: T,
) -> Result<(), QueueError> {
    let mut b = [0u8; 8];
    value.to_le(&mut b[..T::SIZE]);
    write_bytes(mem, addr, &b[..T::SIZE])
}

/// Copies `out.len()` bytes from `addr`.
pub fn read_bytes<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: u64,
    out: &mut [u8],
) -> Result<(), QueueError> {
    let len = out.len() as u64;
    let p = mem
        .translate(addr, len)
        .ok_or(QueueError::Memory { addr, len })?;
    let aligned = p as usize & (out.len().max(1) - 1) == 0;
    match out.len() {
        2 if aligned => {
            // SAFETY: `translate` vouched for 2 bytes at `p`, which is
            // aligned: one load, so a concurrent update is seen whole.
            let v = unsafe { p.cast::<u16>().read_volatile() };
            out.copy_from_slice(&v.to_ne_bytes());
        }
        4 if aligned => {
            // SAFETY: as above, 4 bytes.
            let v = unsafe { p.cast::<u32>().read_volatile() };
            out.copy_from_slice(&v.to_ne_bytes());
        }
        // SAFETY: `p` is valid for `len` bytes (translate); `out` is ours.
        _ => unsafe { ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) },
    }
    Ok(())
}

/// Copies `data` to `addr`.
pub fn write_bytes<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: u64,
    data: &[u8],
) -> Result<(), QueueError> {
    let len = data.len() as u64;
    let p = mem
        .translate(addr, len)
        .ok_or(QueueError::Memory { addr, len })?;
    let aligned = p as usize & (data.len().max(1) - 1) == 0;
    match data.len() {
        2 if aligned => {
            let v = u16::from_ne_bytes([data[0], data[1]]);
            // SAFETY: `translate` vouched for 2 bytes at `p`, which is
            // aligned: one store, so the driver never sees half an index.
            unsafe { p.cast::<u16>().write_volatile(v) }
        }
        4 if aligned => {
            let v = u32::from_ne_bytes(data.try_into().expect("4 bytes"));
            // SAFETY: as above, 4 bytes.
            unsafe { p.cast::<u32>().write_volatile(v) }
        }
        // SAFETY: `p` is valid for `len` bytes (translate); `data` is ours.
        _ => unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) },
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::UnsafeCell;

    /// A fake address space: `size` bytes starting at address `base`,
    /// backed by a host buffer. Anything outside is refused.
    pub struct VecMemory {
        base: u64,
        buf: Words,
        size: u64,
    }

    /// The buffer: cells, so the device writes through a shared
    /// reference, as into real memory.
    struct Words(Box<[UnsafeCell<u64>]>);

    // SAFETY: the words are only ever reached through the raw pointers
    // `translate` hands out, never through references to the cells, as the
    // kernel's memory is; threads that share them (a device thread and
    // the test playing the driver) touch a location one at a time, ordered
    // by the ring protocol's fences, as a driver and a device do.
    unsafe impl Sync for Words {}

    impl VecMemory {
        pub fn new(base: u64, size: u64) -> Self {
            let words = size.div_ceil(8) as usize;
            let buf = Words((0..words).map(|_| UnsafeCell::new(0)).collect());
            VecMemory { base, buf, size }
        }
    }

    impl GuestMemory for VecMemory {
        fn translate(&self, addr: u64, len: u64) -> Option<*mut u8> {
            let end = addr.checked_add(len)?;
            if addr < self.base || end > self.base + self.size {
                return None;
            }
            let host = self.buf.0.as_ptr() as *mut u8;
            // SAFETY: in bounds, checked above.
            Some(unsafe { host.add((addr - self.base) as usize) })
        }
    }

    #[test]
    fn vec_memory_bounds_and_round_trip() {
        let m = VecMemory::new(0x1000, 0x100);
        write_le(&m, 0x1000, 0xbeefu16).unwrap();
        write_le(&m, 0x1004, 0x1234_5678u32).unwrap();
        write_le(&m, 0x10f8, u64::MAX - 1).unwrap();
        assert_eq!(read_le::<u16, _>(&m, 0x1000).unwrap(), 0xbeef);
        assert_eq!(read_le::<u32, _>(&m, 0x1004).unwrap(), 0x1234_5678);
        assert_eq!(read_le::<u64, _>(&m, 0x10f8).unwrap(), u64::MAX - 1);
        assert_eq!(
            read_le::<u32, _>(&m, 0x10fe),
            Err(QueueError::Memory {
                addr: 0x10fe,
                len: 4
            })
        );
        assert!(write_le(&m, 0xffe, 1u16).is_err());
    }
}
