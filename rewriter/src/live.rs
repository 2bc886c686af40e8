//! Applying a patch plan to live, mapped memory.
//!
//! Everything here uses raw `syscall` instructions (never libc), does not allocate
//! and does not touch thread-local storage, because it also runs inside the syscall
//! hook of an interposed program whose `%fs` belongs to the program's own libc.
//!
//! # Concurrency
//! Each site is written with one 2-byte (or, for prefixed sites, byte-wise) store of
//! `FF D0` over `0F 05`. A 2-byte store that does not cross a cache line is atomic
//! on x86, so another thread executing the site sees either the old or the new
//! instruction. A site crossing a 64-byte line is written in one `mov` too, but the
//! hardware may split it; we only patch code before it can run (loader, constructor,
//! `mmap`/`mprotect` hook before returning), so this window is not reached in
//! practice. See `docs/zpoline.md`.

use crate::plan::{for_each_site, Site};
use crate::Error;

/// Raw system calls, free of libc and `errno`.
pub mod sys {
    use core::arch::asm;

    /// `mprotect` syscall number.
    pub const NR_MPROTECT: u64 = 10;

    /// Issues syscall `nr` with up to six arguments and returns the raw kernel result
    /// (negative errno on failure).
    ///
    /// # Safety
    /// The caller must uphold whatever the specific system call requires of its
    /// arguments (valid pointers, no unmapping of memory in use, ...).
    #[inline(always)]
    pub unsafe fn syscall6(nr: u64, a: [u64; 6]) -> i64 {
        let ret: i64;
        // SAFETY: the caller guarantees the syscall's own preconditions; the asm only
        // clobbers what the `syscall` instruction clobbers (rcx, r11) and rax.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") nr as i64 => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
}

const PAGE: u64 = 4096;

fn page_down(a: u64) -> u64 {
    a & !(PAGE - 1)
}

fn page_up(a: u64) -> u64 {
    (a + PAGE - 1) & !(PAGE - 1)
}

/// A run of pages that is currently made writable.
struct Span {
    start: u64,
    end: u64,
}

/// mprotect without libc.
///
/// # Safety
/// `[start, end)` must be page-aligned pages the caller owns.
unsafe fn mprotect(start: u64, end: u64, prot: i32) -> Result<(), Error> {
    // SAFETY: forwarded to the caller: the range is ours to reprotect.
    let r = unsafe { sys::syscall6(sys::NR_MPROTECT, [start, end - start, prot as u64, 0, 0, 0]) };
    if r < 0 {
        return Err(Error::Mprotect {
            addr: start,
            len: end - start,
            errno: -r as i32,
        });
    }
    Ok(())
}

/// Writes the replacement bytes of `site`.
///
/// # Safety
/// The site's bytes must be mapped writable.
unsafe fn write_site(site: &Site) {
    let (bytes, n) = site.replacement();
    let p = site.addr as *mut u8;
    if n == 2 {
        let v = u16::from_le_bytes([bytes[0], bytes[1]]);
        // SAFETY: the two bytes are mapped writable (caller); a single 16-bit store
        // is atomic when it stays within a cache line, see the module docs.
        unsafe {
            core::arch::asm!("mov word ptr [{p}], {v:x}", p = in(reg) p, v = in(reg) v, options(nostack));
        }
    } else {
        for (i, b) in bytes[..n].iter().enumerate() {
            // SAFETY: every byte of the site is mapped writable (caller).
            unsafe { core::ptr::write_volatile(p.add(i), *b) };
        }
    }
}

/// Writes sites, making the pages under them writable in runs of adjacent pages and
/// restoring `prot` when a run ends.
struct Patcher {
    prot: i32,
    span: Option<Span>,
    count: usize,
}

impl Patcher {
    const RWX: i32 = 1 | 2 | 4;

    /// Patches one site.
    ///
    /// # Safety
    /// The site must be in mapped memory whose protection is `self.prot`, sites must
    /// come in address order.
    unsafe fn site(&mut self, site: &Site) -> Result<(), Error> {
        let (lo, hi) = (page_down(site.addr), page_up(site.end()));
        match &mut self.span {
            Some(s) if lo <= s.end => {
                if hi > s.end {
                    // SAFETY: pages of the caller's region, next to the current run.
                    unsafe { mprotect(s.end, hi, Self::RWX)? };
                    s.end = hi;
                }
            }
            _ => {
                // SAFETY: ends the current run, then starts one at this site; both are
                // pages of the caller's region.
                unsafe {
                    self.finish()?;
                    mprotect(lo, hi, Self::RWX)?;
                }
                self.span = Some(Span { start: lo, end: hi });
            }
        }
        // SAFETY: the run now covers every byte of the site with write access (a site
        // straddling a page boundary has both pages in it).
        unsafe { write_site(site) };
        self.count += 1;
        Ok(())
    }

    /// Restores the protection of the current run.
    ///
    /// # Safety
    /// As for [`Patcher::site`].
    unsafe fn finish(&mut self) -> Result<(), Error> {
        if let Some(s) = self.span.take() {
            // SAFETY: restoring the protection the caller told us the pages had.
            unsafe { mprotect(s.start, s.end, self.prot)? };
        }
        Ok(())
    }
}

/// Patches every `syscall`/`sysenter` in the mapped region `[start, start + len)`.
///
/// Pages holding sites are made `PROT_READ|PROT_WRITE|PROT_EXEC` only while they are
/// written, in runs of adjacent pages (a site straddling a page boundary makes both
/// pages writable), then set back to `prot`, the protection the region had. Returns
/// the number of sites patched. Scans and patches in one pass without allocating.
///
/// # Safety
/// The region must be mapped, readable, and currently have protection `prot`; it must
/// not contain the code doing the patching or the vDSO; no other thread may be
/// changing its mappings at the same time.
///
/// # Errors
/// [`Error::Mprotect`] when a page cannot be made writable or restored; sites written
/// before the error stay patched.
pub unsafe fn patch_region(start: u64, len: u64, prot: i32) -> Result<usize, Error> {
    // SAFETY: forwarded to the caller.
    unsafe { patch_region_with(start, len, prot, |_| {}) }
}

/// [`patch_region`], calling `seen` with every site it patches (for a site cache).
///
/// # Safety
/// As for [`patch_region`].
///
/// # Errors
/// As for [`patch_region`].
pub unsafe fn patch_region_with(
    start: u64,
    len: u64,
    prot: i32,
    mut seen: impl FnMut(&Site),
) -> Result<usize, Error> {
    // SAFETY: the caller guarantees the region is mapped and readable for its length.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
    let mut p = Patcher {
        prot,
        span: None,
        count: 0,
    };
    let mut result = Ok(());
    for_each_site(code, start, |site| {
        if result.is_ok() {
            // SAFETY: sites of the caller's region, found in address order.
            result = unsafe { p.site(&site) };
            if result.is_ok() {
                seen(&site);
            }
        }
    });
    // SAFETY: as above.
    unsafe { p.finish()? };
    result.map(|()| p.count)
}

/// Patches known sites (from a site cache) without decoding, after checking that each
/// still holds `syscall`/`sysenter`. Stops at the first site that does not.
///
/// # Safety
/// Every site must lie in mapped, readable memory with protection `prot`, and the sites
/// must come in address order.
///
/// # Errors
/// [`Error::Changed`] for a site that does not hold a syscall instruction (the sites
/// before it stay patched); [`Error::Mprotect`] as for [`patch_region`].
pub unsafe fn patch_sites(sites: impl Iterator<Item = Site>, prot: i32) -> Result<usize, Error> {
    let mut p = Patcher {
        prot,
        span: None,
        count: 0,
    };
    for site in sites {
        // SAFETY: the caller guarantees the site is mapped and readable.
        let tail = unsafe { *((site.end() - 2) as *const [u8; 2]) };
        if site.len < 2 || (tail != crate::plan::SYSCALL && tail != crate::plan::SYSENTER) {
            // SAFETY: as for `Patcher::finish`.
            unsafe { p.finish()? };
            return Err(Error::Changed { addr: site.addr });
        }
        // SAFETY: in address order, vouched for by the caller.
        unsafe { p.site(&site)? };
    }
    // SAFETY: as above.
    unsafe { p.finish()? };
    Ok(p.count)
}

/// Applies a plan made by [`crate::Plan::scan`] over the live memory it was scanned
/// from. Checks that every site still holds its instruction before writing.
///
/// # Safety
/// As for [`patch_region`]: the plan's sites must be mapped, readable and have
/// protection `prot`.
///
/// # Errors
/// [`Error::Changed`] when a site no longer holds `syscall`/`sysenter`;
/// [`Error::Mprotect`] as for [`patch_region`].
pub unsafe fn apply(plan: &crate::Plan, prot: i32) -> Result<usize, Error> {
    // SAFETY: forwarded to the caller; plan sites come in address order.
    unsafe { patch_sites(plan.sites().iter().copied(), prot) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP_PRIVATE: u64 = 2;
    const MAP_ANONYMOUS: u64 = 0x20;

    fn map(pages: u64) -> u64 {
        // SAFETY: anonymous mmap of fresh memory.
        let r = unsafe {
            sys::syscall6(
                9,
                [0, pages * PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX, 0],
            )
        };
        assert!(r > 0);
        r as u64
    }

    #[test]
    fn patches_site_straddling_a_page_boundary() {
        let base = map(3);
        // SAFETY: the mapping is ours and writable.
        let buf = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, 3 * PAGE as usize) };
        buf.fill(0x90);
        buf[PAGE as usize - 1] = 0x0F;
        buf[PAGE as usize] = 0x05;
        buf[2 * PAGE as usize + 10] = 0x0F;
        buf[2 * PAGE as usize + 11] = 0x05;
        // Make it read+exec like real text, then patch.
        // SAFETY: our own mapping.
        unsafe { mprotect(base, base + 3 * PAGE, 5).unwrap() };
        // SAFETY: our own mapping, protection 5 (r-x), no code of ours in it.
        let n = unsafe { patch_region(base, 3 * PAGE, 5) }.unwrap();
        assert_eq!(n, 2);
        // SAFETY: still mapped and readable.
        let buf = unsafe { core::slice::from_raw_parts(base as *const u8, 3 * PAGE as usize) };
        assert_eq!(&buf[PAGE as usize - 1..PAGE as usize + 1], &[0xFF, 0xD0]);
        assert_eq!(
            &buf[2 * PAGE as usize + 10..2 * PAGE as usize + 12],
            &[0xFF, 0xD0]
        );
        // The original protection was restored.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{base:x}-")))
            .unwrap();
        assert!(line.contains(" r-xp "), "{line}");
    }

    #[test]
    fn applies_a_plan_and_refuses_a_stale_one() {
        let base = map(1);
        // SAFETY: the mapping is ours and writable.
        let buf = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, PAGE as usize) };
        buf.fill(0x90);
        buf[100] = 0x0F;
        buf[101] = 0x05;
        let plan = crate::Plan::scan(buf, base);
        // SAFETY: our own mapping, read-write.
        assert_eq!(unsafe { apply(&plan, 3) }, Ok(1));
        assert_eq!(&buf[100..102], &[0xFF, 0xD0]);
        // SAFETY: as above; the site was patched already, so the plan is stale.
        let again = unsafe { apply(&plan, 3) };
        assert_eq!(again, Err(Error::Changed { addr: base + 100 }));
    }
}
