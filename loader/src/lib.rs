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
pub mod files;
pub mod map;
pub mod stack;

/// Errors from loading a program. Each message names the problem and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command name was not found in any `PATH` directory (shell exit status 127).
    #[error(
        "{0}: command not found in PATH; give the program's path, or add its directory to PATH"
    )]
    NotFound(String),
    /// The program's path names no file (shell exit status 127).
    #[error("{0}: no such file or directory; check the program's path")]
    NoSuchFile(String),
    /// The path or one of its components is too long (`ENAMETOOLONG`).
    #[error(
        "{0}: file name too long (a path is at most 4095 bytes, a component 255); give a shorter path"
    )]
    NameTooLong(String),
    /// A component of the path before the last is not a directory (`ENOTDIR`).
    #[error("{0}: not a directory (a component of the path is a file); check the program's path")]
    NotDirectory(String),
    /// The program's path is a directory.
    #[error("{0}: is a directory; give the path of the program inside it")]
    IsDirectory(String),
    /// The program exists but we may not execute it (shell exit status 126).
    #[error("{0}: permission denied: not executable by this user; run `chmod +x` on it, or check the directories' permissions")]
    NotExecutable(String),
    /// `#!` lines nest deeper than the kernel allows.
    #[error("{0}: too many levels of #! interpreters (at most 4)")]
    TooManyInterpreters(String),
    /// The `#!` interpreter of a script cannot be run.
    #[error("{0}: bad interpreter (the #! line or PT_INTERP): {1}")]
    BadInterpreter(String, Box<Error>),
    /// Reading the program failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The file is not an ELF file (nor a `#!` script).
    #[error(
        "{0}: not an ELF executable nor a #! script; lkl-run runs x86-64 ELF programs and scripts"
    )]
    NotElf(String),
    /// The ELF file is not for x86-64 (the second field says what it is).
    #[error("{0}: {1}, not an x86-64 program: zpoline runs x86-64 programs only; run it natively")]
    WrongArch(String, String),
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
    /// `--backend lkl` (the default) in a build without the LKL backend.
    #[error(
        "this lkl-run was built without the LKL backend (cargo feature `lkl`): \
         run it with --backend host, or build it with the default features \
         (cargo build --release -p loader)"
    )]
    NoLklBackend,
    /// Setting up the trampoline failed.
    #[error(transparent)]
    Trampoline(#[from] trampoline::Error),
    /// A `--root` or `--mount` that is malformed, or given where disks cannot be.
    #[error("{0}")]
    Disks(String),
}

impl Error {
    /// The exit status a shell would use for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound(_) | Error::NoSuchFile(_) => 127,
            Error::NameTooLong(_)
            | Error::NotDirectory(_)
            | Error::IsDirectory(_)
            | Error::NotExecutable(_)
            | Error::TooManyInterpreters(_)
            | Error::BadInterpreter(..)
            | Error::NotElf(_)
            | Error::WrongArch(..)
            | Error::BadElf(..) => 126,
            Error::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound => 127,
            Error::Io(..) => 126,
            Error::Disks(_) => 2,
            _ => 1,
        }
    }
}
