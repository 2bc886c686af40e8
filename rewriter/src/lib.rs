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
