//! `lkl-run`: runs a Linux x86-64 program with every syscall interposed (zpoline).
//!
//! Pipeline: ELF → validated load plan ([`elf`], safe) → initial stack ([`stack`],
//! safe) → mapping and the jump ([`map`], the only unsafe part). The trampoline is
//! installed and the program and its interpreter are rewritten before the first
//! instruction of the program runs. [`cli`] glues it together for the binary.

pub mod cli;

/// The allocator of every binary built on this crate: the system one until the jump
/// into the program, then a hook-safe bump area (see `trampoline::alloc`).
#[global_allocator]
static ALLOCATOR: trampoline::alloc::HookSafe = trampoline::alloc::HookSafe;
pub mod elf;
pub mod map;
pub mod stack;

/// Errors from loading a program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program was not found (shell exit status 127).
    #[error("{0}: command not found")]
    NotFound(String),
    /// The program exists but cannot be run (shell exit status 126).
    #[error("{0}: permission denied")]
    NotExecutable(String),
    /// Reading the program failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The file is not an ELF file (nor a `#!` script).
    #[error("{0}: not an ELF executable")]
    NotElf(String),
    /// The ELF file is not for x86-64.
    #[error("{0}: not an x86-64 ELF executable")]
    WrongArch(String),
    /// The ELF file is malformed.
    #[error("{0}: bad ELF file: {1}")]
    BadElf(String, String),
    /// The headers lie past the bytes read so far (read more and parse again).
    #[error("{0}: ELF headers past the part read")]
    Short(String),
    /// Mapping failed.
    #[error("{0}: {1} failed (errno {2})")]
    Map(String, String, i32),
    /// `vm.mmap_min_addr` is not 0.
    #[error(
        "vm.mmap_min_addr is {0}, but zpoline needs address 0: run `sysctl -w vm.mmap_min_addr=0`"
    )]
    MmapMinAddr(u64),
    /// LKL could not be started from its configuration.
    #[error("{0}")]
    Lkl(String),
    /// Setting up the trampoline failed.
    #[error(transparent)]
    Trampoline(#[from] trampoline::Error),
}

impl Error {
    /// The exit status a shell would use for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound(_) => 127,
            Error::NotExecutable(_)
            | Error::NotElf(_)
            | Error::WrongArch(_)
            | Error::BadElf(..) => 126,
            Error::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound => 127,
            Error::Io(..) => 126,
            _ => 1,
        }
    }
}
