//! The zpoline rewriter.
//!
//! Contract: given the bytes of an executable region and the address they live at,
//! [`plan::Plan::scan`] finds every `syscall` (`0F 05`) and `sysenter` (`0F 34`)
//! instruction and records how to turn it into `call *%rax` (`FF D0`). The planning
//! half is pure, safe Rust and works on plain buffers so it can be tested without
//! touching live memory.
//!
//! [`live`] is the small unsafe half: it applies a plan to mapped memory, making the
//! affected pages writable for the moment of the write and restoring the protection
//! the caller says they had. It never allocates and never calls libc, so it can run
//! inside an interposed program's syscall hook (where the program owns `%fs`).
//!
//! # Decoding choice
//! We decode by *linear sweep* over the whole executable region, like upstream
//! zpoline. It sees every instruction a compiler emitted in `.text`, but data placed
//! inside an executable segment (jump tables, literal pools, padding) can make the
//! decoder mis-synchronise for a few instructions. In practice the x86 decoder
//! re-synchronises within a handful of bytes; a byte pair `0F 05` that is part of
//! data *and* happens to fall on a decoded boundary would be patched wrongly. The
//! loader's Syscall User Dispatch fallback covers the opposite failure (a real
//! `syscall` that the sweep missed). See `docs/zpoline.md`.

pub mod live;
pub mod plan;

pub use plan::{Plan, Site, SiteKind};

/// Initialises the decoder's lazily built tables (legacy, VEX, EVEX, XOP, 3DNow!) now.
///
/// iced-x86 builds each table on first use, which allocates. Inside a syscall hook
/// that would run our libc's `malloc` on the program's thread (wrong TLS, stale heap
/// break, maybe inside the program's own `malloc`). Call this once before any hook can
/// run; afterwards scanning never allocates (see `tests/no_alloc.rs`).
pub fn warm_up() {
    // One instruction of each encoding family, plus a 3DNow! one:
    // add eax,ebx | vaddps ymm0,ymm1,ymm2 (VEX) | vaddps zmm0,zmm1,zmm2 (EVEX) |
    // XOP vpcmov | 3DNow! pfadd | syscall
    const SAMPLES: &[u8] = &[
        0x01, 0xD8, // add eax, ebx
        0xC5, 0xF4, 0x58, 0xC2, // vaddps ymm0, ymm1, ymm2
        0x62, 0xF1, 0x74, 0x48, 0x58, 0xC2, // vaddps zmm0, zmm1, zmm2
        0x8F, 0xE8, 0x78, 0xA2, 0xC2, 0x30, // vpcmov xmm0, xmm0, xmm2, xmm3
        0x0F, 0x0F, 0xC1, 0x9E, // pfadd mm0, mm1
        0x0F, 0x05, // syscall
    ];
    plan::for_each_site(SAMPLES, 0, |_| {});
}

/// Errors from applying a patch plan to live memory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `mprotect` failed while making a site writable or restoring its protection.
    #[error("mprotect({addr:#x}, {len:#x}) failed with errno {errno}")]
    Mprotect {
        /// Start of the page range.
        addr: u64,
        /// Length of the page range in bytes.
        len: u64,
        /// The positive errno the kernel returned.
        errno: i32,
    },
    /// A site in the plan did not hold the bytes the plan expected.
    #[error("site {addr:#x} does not hold a syscall instruction any more")]
    Changed {
        /// Address of the site.
        addr: u64,
    },
}
