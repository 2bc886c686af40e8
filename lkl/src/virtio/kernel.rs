//! What the devices of `lkl-virtio` reach the kernel through: the
//! kernel's memory, where the driver's buffers are ([`KernelMemory`], a
//! [`GuestMemory`]), and its interrupt lines ([`IrqLine`], an
//! [`Interrupt`]).

use lkl_virtio::{GuestMemory, Interrupt};

use crate::host::mmio::{MMIO_BASE, MMIO_RANGE};

/// The kernel's memory: addresses are host addresses.
///
/// It cannot know every range the kernel owns (page-cache pages come from
/// its memory block, but the zero page lives in the kernel image), so it
/// refuses only what can never be kernel memory: NULL, ranges that wrap or
/// leave the user half of the address space, and the fake MMIO range.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelMemory;

/// The top of the x86-64 user address space (47 bits).
const USER_TOP: u64 = 1 << 47;

impl GuestMemory for KernelMemory {
    fn translate(&self, addr: u64, len: u64) -> Option<*mut u8> {
        let end = addr.checked_add(len)?;
        let in_mmio = addr < MMIO_BASE + MMIO_RANGE && end > MMIO_BASE;
        if addr == 0 || end > USER_TOP || in_mmio {
            return None;
        }
        Some(addr as usize as *mut u8)
    }
}

/// An LKL interrupt line, raised with [`crate::trigger_irq`].
#[derive(Debug, Clone, Copy)]
pub struct IrqLine(pub u32);

impl Interrupt for IrqLine {
    fn trigger(&self) {
        // Fails only once the kernel is halted, when nobody listens.
        let _ = crate::trigger_irq(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_memory_refuses_null_wrap_and_mmio() {
        let k = KernelMemory;
        assert!(k.translate(0, 1).is_none());
        assert!(k.translate(u64::MAX, 2).is_none());
        assert!(k.translate(MMIO_BASE + 8, 4).is_none());
        assert!(k.translate(MMIO_BASE - 4, 8).is_none());
        assert!(k.translate(USER_TOP - 4, 8).is_none());
        assert_eq!(k.translate(0x1000, 16), Some(0x1000 as *mut u8));
    }
}
