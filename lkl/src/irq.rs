//! Interrupt lines and device announcement, for host-side devices.
//!
//! A device reserves a line with [`get_free_irq`], announces its MMIO
//! window (on the boot command line, see [`crate::MmioRegistry`], or after
//! boot with [`virtio_mmio_add`]) and raises the line from any host thread
//! with [`trigger_irq`].

use std::ffi::{c_int, CStr};

use crate::{Errno, MmioWindow};

/// Reserves an unused interrupt line for `user` (kept by the kernel as the
/// line's owner, hence `'static`). Works before boot too.
///
/// # Errors
/// `EBUSY` when every line is taken.
pub fn get_free_irq(user: &'static CStr) -> Result<u32, Errno> {
    // SAFETY: `user` is a NUL-terminated string that lives forever.
    let r = unsafe { lkl_sys::lkl_get_free_irq(user.as_ptr()) };
    Errno::result(r.into()).map(|irq| irq as u32)
}

/// Gives back a line reserved by [`get_free_irq`] with the same `user`.
pub fn put_irq(irq: u32, user: &'static CStr) {
    // SAFETY: as for get_free_irq; the kernel checks the owner.
    unsafe { lkl_sys::lkl_put_irq(irq as c_int, user.as_ptr()) }
}

/// Raises interrupt `irq`; callable from any host thread. The handler runs
/// at once if the kernel's CPU is free, otherwise when its holder lets go.
///
/// # Errors
/// `EINVAL` for a line out of range; an error once the kernel is halted.
pub fn trigger_irq(irq: u32) -> Result<(), Errno> {
    // SAFETY: lkl_trigger_irq validates the line and may be called from any
    // thread at any time.
    let r = unsafe { lkl_sys::lkl_trigger_irq(irq as c_int) };
    Errno::result(r.into()).map(drop)
}

/// Announces a virtio-mmio device to the running kernel (hot-add).
/// Returns the platform device id.
///
/// # Errors
/// [`Errno::ENOSYS`] if the kernel is not running, or what the kernel
/// returned.
pub fn virtio_mmio_add(window: &MmioWindow) -> Result<i64, Errno> {
    crate::check_running()?;
    // SAFETY: plain numbers; the window is registered, so the kernel's
    // accesses to it reach the device.
    let r = unsafe { lkl_sys::lkl_virtio_mmio_add(window.base, window.size, window.irq as c_int) };
    Errno::result(r)
}
