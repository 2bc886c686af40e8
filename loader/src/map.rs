//! Mapping a load plan into our address space and jumping to it: the only unsafe part
//! of the loader.
//!
//! Raw `mmap` rather than `memmap2`: segments go at fixed addresses inside one
//! reservation (`MAP_FIXED` over it, `MAP_FIXED_NOREPLACE` for the reservation) and are
//! never unmapped by us, which `memmap2`'s owned, drop-unmapped maps do not express.

use std::os::fd::AsRawFd;

use crate::elf::{Image, PAGE};
use crate::Error;

fn down(a: u64) -> u64 {
    a & !(PAGE - 1)
}

fn up(a: u64) -> u64 {
    (a + PAGE - 1) & !(PAGE - 1)
}

/// A mapped image.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// Added to every `p_vaddr` (0 for `ET_EXEC`).
    pub bias: u64,
    /// Executable regions as (start, len, prot, file offset), page-aligned, for the
    /// rewriter.
    pub exec_regions: Vec<(u64, u64, i32, u64)>,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Maps every `PT_LOAD` of `img` from `file` (named `path` in errors).
///
/// # Errors
/// [`Error::Map`] when the kernel refuses a mapping (e.g. an `ET_EXEC` range is taken).
pub fn map_image(path: &str, file: &std::fs::File, img: &Image) -> Result<Mapped, Error> {
    let lo = img.min_vaddr();
    let span = img.max_vaddr() - lo;
    let fail = |what: &str| Error::Map(path.to_string(), what.to_string(), errno());
    // Reserve the whole span first so segments land at fixed offsets from each other.
    let (hint, flags) = if img.relocatable {
        (0, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    } else {
        (
            lo,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
        )
    };
    // SAFETY: an anonymous PROT_NONE reservation; NOREPLACE keeps existing mappings.
    let base = unsafe { libc::mmap(hint as *mut _, span as usize, libc::PROT_NONE, flags, -1, 0) };
    if base == libc::MAP_FAILED {
        return Err(fail("reserving address space"));
    }
    let bias = base as u64 - lo;
    let mut exec_regions = Vec::new();
    for s in &img.segments {
        let start = down(s.vaddr + bias);
        let file_end = s.vaddr + bias + s.filesz;
        let mem_end = up(s.vaddr + bias + s.memsz);
        let needs_zero = s.memsz > s.filesz;
        let map_prot = if needs_zero {
            s.prot | libc::PROT_WRITE
        } else {
            s.prot
        };
        if s.filesz > 0 {
            let len = up(file_end) - start;
            // SAFETY: MAP_FIXED inside our own reservation.
            let r = unsafe {
                libc::mmap(
                    start as *mut _,
                    len as usize,
                    map_prot,
                    libc::MAP_PRIVATE | libc::MAP_FIXED,
                    file.as_raw_fd(),
                    down(s.offset) as i64,
                )
            };
            if r == libc::MAP_FAILED {
                return Err(fail("mapping a segment"));
            }
        }
        if needs_zero {
            // Zero the tail of the last file page, then map anonymous pages for the rest.
            let zero_from = if s.filesz > 0 { file_end } else { start };
            let page_end = up(zero_from);
            if s.filesz > 0 && page_end > zero_from {
                // SAFETY: inside the segment we just mapped writable.
                unsafe {
                    std::ptr::write_bytes(zero_from as *mut u8, 0, (page_end - zero_from) as usize)
                };
            }
            let anon_from = if s.filesz > 0 { page_end } else { start };
            if mem_end > anon_from {
                // SAFETY: MAP_FIXED inside our own reservation.
                let r = unsafe {
                    libc::mmap(
                        anon_from as *mut _,
                        (mem_end - anon_from) as usize,
                        s.prot,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if r == libc::MAP_FAILED {
                    return Err(fail("mapping bss"));
                }
            }
            if s.filesz > 0 {
                // SAFETY: restoring the segment's own protection on our mapping.
                unsafe { libc::mprotect(start as *mut _, (up(file_end) - start) as usize, s.prot) };
            }
        }
        if s.is_exec() {
            exec_regions.push((
                start,
                up(s.vaddr + bias + s.filesz) - start,
                s.prot,
                down(s.offset),
            ));
        }
    }
    Ok(Mapped { bias, exec_regions })
}

/// Maps a fresh stack of `size` bytes and returns its top.
///
/// # Errors
/// [`Error::Map`] when the mapping fails.
pub fn map_stack(size: usize) -> Result<u64, Error> {
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::Map(
            "stack".into(),
            "mapping the stack".into(),
            errno(),
        ));
    }
    Ok(p as u64 + size as u64)
}

/// Copies the stack image to `sp`.
///
/// # Safety
/// `[sp, sp + image.len())` must be mapped writable stack memory of ours.
pub unsafe fn place_stack(sp: u64, image: &[u8]) {
    // SAFETY: the caller guarantees the destination is our mapped stack.
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), sp as *mut u8, image.len()) };
}

/// Jumps to `entry` with `%rsp = sp` and the registers the psABI specifies (rdx = 0:
/// no exit function).
///
/// # Safety
/// `sp` must point at a complete initial stack ([`place_stack`]), and `entry` be the
/// entry point of a fully mapped, rewritten program or interpreter.
pub unsafe fn enter(entry: u64, sp: u64) -> ! {
    // SAFETY: switches to the new stack and never returns; the caller guarantees entry.
    unsafe {
        std::arch::asm!(
            "mov rsp, {sp}",
            "xor ebp, ebp",
            "xor ebx, ebx",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            "jmp {entry}",
            sp = in(reg) sp,
            entry = in(reg) entry,
            in("rdx") 0u64,
            options(noreturn),
        )
    }
}

/// `RSEQ_FLAG_UNREGISTER` of `<linux/rseq.h>`.
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// The signature glibc registers its rseq areas with (`RSEQ_SIG` of its x86 `rseq.h`).
const RSEQ_SIG: u64 = 0x5305_3053;

extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// Unregisters our own libc's rseq area for this thread, so that the program's libc can
/// register its own (the kernel allows one per thread).
pub fn unregister_rseq() {
    // SAFETY: glibc (2.35+) exports these two read-only variables.
    let (off, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return;
    }
    // SAFETY: pthread_self is the thread pointer on x86-64 glibc.
    let tp = unsafe { libc::pthread_self() } as isize;
    let area = (tp + off) as u64;
    for len in [u64::from(size), 32] {
        // SAFETY: unregistering the area our libc registered for this thread.
        let r = unsafe { libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) };
        if r == 0 {
            return;
        }
    }
}

/// Points `/proc/self/cmdline`, `/proc/self/environ` and `/proc/self/auxv` at the
/// program's own argv, environment and auxv on the new stack, so that `ps` and the
/// program itself see its command line instead of lkl-run's. Needs CAP_SYS_RESOURCE;
/// without it the kernel's view stays lkl-run's (harmless).
pub fn set_mm_views(args: (u64, u64), env: (u64, u64), auxv: (u64, u64), auxv_ptr: u64) {
    use libc::{
        PR_SET_MM, PR_SET_MM_ARG_END as ARG_END, PR_SET_MM_ARG_START as ARG_START,
        PR_SET_MM_AUXV as AUXV, PR_SET_MM_ENV_END as ENV_END, PR_SET_MM_ENV_START as ENV_START,
    };
    let set = |what: libc::c_int, v: u64, len: u64| {
        // SAFETY: PR_SET_MM only changes what /proc reports for this process.
        unsafe { libc::prctl(PR_SET_MM, what as u64, v, len, 0u64) }
    };
    // The kernel checks start <= end at every step: move the end first when the new
    // range lies above the old one, the start first otherwise; trying both orders
    // covers either case.
    for (start, end, range) in [(ARG_START, ARG_END, args), (ENV_START, ENV_END, env)] {
        if set(end, range.1, 0) != 0 || set(start, range.0, 0) != 0 {
            set(start, range.0, 0);
            set(end, range.1, 0);
        }
    }
    set(AUXV, auxv_ptr, auxv.1 - auxv.0);
}

/// Gives the program the signal state of a fresh `execve`: no alternate signal stack and
/// no SIGSEGV/SIGBUS handlers of ours (lkl-run starts without Rust's runtime set-up,
/// see `main.rs`, so none should be there; this makes sure). Other dispositions are
/// the ones lkl-run inherited, as an `execve` keeps them: an ignored SIGPIPE stays
/// ignored, a default one default.
pub fn reset_signal_state() {
    let ss = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: disabling the alternate signal stack of this thread.
    unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: restoring the default disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}
