//! The zpoline trampoline: the sled at virtual address 0, the entry stub and the
//! syscall hook, shared by `lkl-run --zpoline` and `libzpoline.so`.
//!
//! Contract:
//! - [`install`] maps the sled page at 0, routes every syscall number and makes page 0
//!   execute-only where protection keys allow it (elsewhere read+exec, see
//!   `docs/zpoline.md`). Call it once, single-threaded, before any site is rewritten.
//! - After that, a rewritten site (`call *%rax`) enters the stub, which either does the
//!   syscall itself (fast pass-through, no vector state touched) or calls the Rust hook.
//! - The hook never allocates, never calls libc and never touches Rust thread-local
//!   storage: it runs on the program's threads with the program's `%fs`, on a
//!   per-thread interposer stack of ours ([`stack`]), never on the program's stack.
//! - The [`Backend`] decides what a syscall does and which numbers it must see
//!   ([`Backend::route`]). [`Host`] passes everything to the host kernel; the LKL backend
//!   (crate `zpoline-lkl`) sends sockets and their fds to LKL.

pub mod alloc;
pub mod cache;
pub mod elfcode;
mod entry_x86_64;
pub mod guard;
mod hook;
mod mapfile;
pub mod names;
pub mod sled;
pub mod stack;
pub mod sud;
mod sys;
pub mod trace;

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

pub use entry_x86_64::{entry_address, Frame};
pub use hook::host_read_head;
pub use rewriter::live::sys::syscall6;

/// Errors from setting the trampoline up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Mapping page 0 failed; usually `vm.mmap_min_addr` is not 0.
    #[error(
        "cannot map the trampoline at address 0 (errno {0}); run `sysctl -w vm.mmap_min_addr=0`"
    )]
    MapZero(i32),
    /// Something else already lives at address 0.
    #[error("address 0 is already mapped")]
    ZeroInUse,
    /// `mprotect` of page 0 failed.
    #[error("cannot protect the trampoline page (errno {0})")]
    Protect(i32),
    /// The CPU or kernel lacks XSAVE, which the hook path needs to keep vector state.
    #[error("the CPU does not support XSAVE (OSXSAVE not set)")]
    NoXsave,
    /// Enabling Syscall User Dispatch failed.
    #[error("prctl(PR_SET_SYSCALL_USER_DISPATCH) failed with errno {0}")]
    Sud(i32),
    /// Installing the SIGSYS handler failed.
    #[error("rt_sigaction(SIGSYS) failed with errno {0}")]
    Sigaction(i32),
    /// No address below 2 GiB was free for the sled's jump pad.
    #[error("cannot map the sled's jump pad below 2 GiB: every candidate address is taken")]
    Pad,
    /// `install` was called twice.
    #[error("the trampoline is already installed")]
    AlreadyInstalled,
}

/// Which kernel served a syscall (shown by `--trace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The host kernel.
    Host,
    /// LKL, the kernel inside the process.
    Lkl,
    /// LKL was asked, but it does not implement the call (the program got `ENOSYS`).
    LklMissing,
    /// Answered by the interposer itself (a view, a placeholder, a refused call).
    Interposer,
}

/// How the entry stub dispatches a syscall number (see `entry_x86_64.S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the host kernel, in assembly.
    Fast,
    /// Through the Rust hook and the backend.
    Hook,
    /// Through the hook only when the first argument is an fd marked with [`mark_fd`].
    FdArg,
}

/// What [`Backend::read_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// This many bytes were read.
    Read(usize),
    /// The file could not be opened (a negative errno); `backend`: the path is the
    /// backend's, not the host's.
    OpenFailed {
        /// The negative errno of the open.
        errno: i64,
        /// The path is the backend's.
        backend: bool,
    },
    /// It was opened, but the read failed (a directory, an I/O error).
    ReadFailed,
}

/// Where a syscall goes.
pub trait Backend: Sync + Send {
    /// Runs syscall `nr` with `args`; returns the result or a negative errno.
    fn syscall(&self, nr: u64, args: &[u64; 6]) -> i64;

    /// Runs syscall `nr` and says which kernel served it (for `--trace`).
    fn call(&self, nr: u64, args: &[u64; 6]) -> (i64, Target) {
        (self.syscall(nr, args), Target::Host)
    }

    /// The route this backend needs for `nr`, or `None` for the interposer's default.
    fn route(&self, _nr: u64) -> Option<Route> {
        None
    }

    /// True when `fd` is not a host file but stands for one of the backend's (an LKL
    /// file behind a placeholder): the interposer then reads it through
    /// [`Backend::syscall`] (`pread64`, `fstat`, `close`) to rewrite code mapped from
    /// it, and keys the site cache by the backend's identity of the file.
    fn owns_fd(&self, _fd: i32) -> bool {
        false
    }

    /// Reads the first bytes of the file at `path` (NUL-terminated) into `buf`, from the
    /// kernel the backend's routing sends that path to, without giving the program a
    /// descriptor (an interposed `execve` checks the magic this way, in a vfork child
    /// too). The default reads the host's file.
    fn read_head(&self, path: u64, buf: &mut [u8]) -> Head {
        hook::host_read_head(path, buf)
    }

    /// The absolute path, in the backend's file system, of the backend's fd `fd` (see
    /// [`Backend::owns_fd`]) into `buf`: its length, or a negative errno. An interposed
    /// `execveat` relative to such a directory builds its path from it.
    fn fd_path(&self, _fd: i32, _buf: &mut [u8]) -> i64 {
        -(libc::EBADF as i64)
    }

    /// True when calls may go elsewhere than the host: `--trace` then names the kernel
    /// that served each call.
    fn mixed(&self) -> bool {
        false
    }

    /// True when the backend runs fork-like calls itself ([`Backend::fork`]): `fork`,
    /// and `clone`/`clone3` without `CLONE_VM` and without a new stack then reach it,
    /// so that it can prepare before the call and act in both processes after it.
    fn forks(&self) -> bool {
        false
    }

    /// An `execve` is about to replace the process (through the loader, every check
    /// passed): the backend may hand its state on to the new image.
    fn before_exec(&self) {}

    /// The `execve` announced by [`Backend::before_exec`] failed; the process goes on.
    fn exec_failed(&self) {}

    /// Runs fork-like call `nr` (see [`Backend::forks`]) and returns its result in both
    /// processes (0 in the child). The default makes the call.
    fn fork(&self, nr: u64, args: &[u64; 6]) -> i64 {
        // SAFETY: the program's own call, unchanged.
        unsafe { syscall6(nr, *args) }
    }
}

/// True when `clone`/`clone3` (`nr`) with `args` makes a fork-like child: its own
/// memory (no `CLONE_VM`) and no new stack, so the child returns where the parent does.
pub(crate) fn fork_like(nr: u64, args: &[u64; 6]) -> bool {
    const CLONE_VM: u64 = libc::CLONE_VM as u64;
    match nr {
        56 => args[0] & CLONE_VM == 0 && args[1] == 0,
        435 => {
            // struct clone_args { flags; pidfd; child_tid; parent_tid; exit_signal;
            // stack; stack_size; ... }: at least 64 bytes (the stub checks the size).
            if args[1] < 64 || args[0] == 0 {
                return false;
            }
            // SAFETY: the program passed a clone_args of args[1] >= 64 bytes; a bad
            // pointer faults here as it would in the kernel's copy (the program's bug).
            let (flags, stack) = unsafe {
                let p = args[0] as *const u64;
                (p.read_unaligned(), p.add(5).read_unaligned())
            };
            flags & CLONE_VM == 0 && stack == 0
        }
        _ => false,
    }
}

/// One byte per fd (modulo 65536): non-zero sends calls of route [`Route::FdArg`] on
/// that fd through the hook. Read by the entry stub.
pub(crate) static FD_MARK: [AtomicU8; 65536] = [const { AtomicU8::new(0) }; 65536];

/// Set in the child of a `fork` (or fork-like `clone`/`clone3`) by the entry stub and
/// the hook: the child has its own copy of memory, without the parent's other threads.
pub(crate) static FORKED: AtomicU8 = AtomicU8::new(0);

/// Marks (or unmarks) `fd` so that [`Route::FdArg`] calls on it take the hook. Marks are
/// per `fd & 0xffff`: the backend must check the exact fd in the hook.
pub fn mark_fd(fd: i32, on: bool) {
    FD_MARK[(fd as u32 & 0xffff) as usize].store(u8::from(on), Ordering::Relaxed);
}

/// True in a process made by `fork` (or a fork-like `clone`) of an interposed process.
pub fn forked_child() -> bool {
    FORKED.load(Ordering::Relaxed) != 0
}

/// The host backend: every syscall goes to the host kernel unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Host;

impl Backend for Host {
    #[inline(always)]
    fn syscall(&self, nr: u64, args: &[u64; 6]) -> i64 {
        // SAFETY: we forward exactly what the program asked for; the program owns
        // the consequences, as it would with a native syscall.
        unsafe { syscall6(nr, *args) }
    }
}

/// How an `execve` is turned into a re-exec through the loader, so the new image is
/// interposed again.
#[derive(Debug, Clone)]
pub struct ReExec {
    /// NUL-terminated path of the loader binary.
    pub loader: Vec<u8>,
    /// NUL-terminated arguments placed between the loader and `--argv0 NAME -- PATH ...`.
    pub args: Vec<Vec<u8>>,
    /// One more NUL-terminated argument added when the process that prints the
    /// `--count` summary execs (its pid, and so its duty, survives the exec).
    pub root_arg: Option<Vec<u8>>,
}

/// What the hook does besides calling the backend.
#[derive(Debug, Default)]
pub struct Options {
    /// File descriptor for `--trace` lines, if tracing.
    pub trace_fd: Option<i32>,
    /// Address of a shared counter area of [`trace::COUNTER_WORDS`] `u64`s, if counting.
    pub count_area: Option<usize>,
    /// Print the `--count` summary to this descriptor when this process calls
    /// `exit_group` (a duplicate of stderr: programs often close fd 2 before exiting).
    pub summary_fd: Option<i32>,
    /// Re-exec `execve` through the loader (lkl-run); `None` leaves `execve` alone
    /// (LD_PRELOAD mode, where the environment carries LD_PRELOAD).
    pub reexec: Option<ReExec>,
    /// Rewrite code mapped executable later (`mmap`/`mprotect` with `PROT_EXEC`).
    pub rewrite_new_code: bool,
    /// Address ranges never rewritten: our own code, the vDSO, page 0.
    pub exclude: Vec<(u64, u64)>,
    /// NULL guard mode: leave page 0 unmapped and enter the stub through SIGSEGV (slow,
    /// exact NULL faults; see [`guard`]). For CPUs without protection keys.
    pub null_guard: bool,
    /// Switch to NULL guard mode when a JVM (`libjvm.so`) or ThreadSanitizer's runtime
    /// (`libtsan.so*`) is mapped and page 0 is not execute-only: the JVM's implicit null
    /// checks need NULL reads to fault, and ThreadSanitizer refuses a mapping at page 0.
    pub auto_guard_jvm: bool,
    /// Absolute path of the program, NUL-terminated, when `/proc/self/exe` names the
    /// loader instead (lkl-run): `execve` and `readlink` of `/proc/self/exe` use it.
    pub program: Option<Vec<u8>>,
}

pub(crate) static OPTIONS: OnceLock<Options> = OnceLock::new();
pub(crate) static BACKEND: OnceLock<&'static dyn Backend> = OnceLock::new();
/// The pid that prints the summary (0: none).
pub(crate) static ROOT_PID: AtomicI32 = AtomicI32::new(0);
/// Counter area (null when not counting).
pub(crate) static COUNTS: AtomicPtr<AtomicU64> = AtomicPtr::new(core::ptr::null_mut());
/// Sites rewritten so far, by anyone.
pub(crate) static PATCHED: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// `--trace` lines name the kernel that served each call (see [`Backend::mixed`]).
pub(crate) static TAG_TRACE: AtomicBool = AtomicBool::new(false);
pub(crate) static EXEC_ONLY: AtomicBool = AtomicBool::new(false);

use sys::{PROT_EXEC, PROT_READ, PROT_WRITE};

/// Protection keys: true when `pkey_alloc` works (the kernel then makes `PROT_EXEC`
/// mappings execute-only).
pub fn pkeys_available() -> bool {
    // SAFETY: pkey_alloc(0, 0) has no memory arguments.
    let k = unsafe { syscall6(sys::NR_PKEY_ALLOC, [0, 0, 0, 0, 0, 0]) };
    if k >= 0 {
        // SAFETY: freeing the key we just got.
        unsafe { syscall6(sys::NR_PKEY_FREE, [k as u64, 0, 0, 0, 0, 0]) };
        true
    } else {
        false
    }
}

/// True when a NULL read faults: page 0 is execute-only, or unmapped (NULL guard).
pub fn page0_execute_only() -> bool {
    EXEC_ONLY.load(Ordering::Relaxed)
}

/// Number of sites rewritten so far through [`rewrite_region`] and the hook.
pub fn patched_sites() -> u64 {
    PATCHED.load(Ordering::Relaxed)
}

/// Maps the sled at address 0, sets up routing and the hook options.
///
/// Call once, before any site is rewritten and while the process has one thread.
///
/// # Errors
/// See [`Error`]: page 0 cannot be mapped, XSAVE missing, or called twice.
pub fn install(options: Options, backend: &'static dyn Backend) -> Result<(), Error> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyInstalled);
    }
    entry_x86_64::init_xsave_size()?;
    // Before the sled is built: it picks the entry stub (see `stack`).
    stack::init();
    // The hook decodes code mapped later; the decoder's tables must exist before then,
    // since building them allocates (see `rewriter::warm_up`).
    rewriter::warm_up();
    if options.null_guard {
        guard::enable()?;
    } else {
        map_page0()?;
        guard::own_segv()?;
    }
    EXEC_ONLY.store(options.null_guard || pkeys_available(), Ordering::Relaxed);

    if let Some(area) = options.count_area {
        COUNTS.store(area as *mut AtomicU64, Ordering::Relaxed);
    }
    if options.summary_fd.is_some() {
        // SAFETY: getpid has no arguments.
        ROOT_PID.store(
            unsafe { syscall6(sys::NR_GETPID, [0; 6]) } as i32,
            Ordering::Relaxed,
        );
    }
    let every = options.trace_fd.is_some() || options.count_area.is_some();
    for (nr, slot) in entry_x86_64::ROUTE.iter().enumerate() {
        let special = matches!(nr, 15 | 56 | 58 | 435);
        // fork goes through the hook: the child must turn Syscall User Dispatch on again.
        let hooked = (matches!(nr, 9 | 10 | 59 | 322 | 13)
            && (options.rewrite_new_code || options.reexec.is_some()))
            || (matches!(nr, 89 | 267) && options.program.is_some())
            || nr == 57
            // rt_sigaction(SIGSEGV): SIGSEGV is ours (see `guard::own_segv`).
            || nr == 13
            // mmap/mprotect/munmap/mremap must not touch the sled page.
            || (!options.null_guard && matches!(nr, 9 | 10 | 11 | 25))
            || (options.null_guard && matches!(nr, 13 | 14 | 130 | 131 | 270 | 271 | 281 | 441));
        let route = if every && (nr <= sled::MAX_NR) {
            1
        } else if special && matches!(nr, 56 | 435) && backend.forks() {
            // The hook hands fork-like ones to the backend, the rest to the special path.
            1
        } else if special {
            2
        } else if hooked {
            1
        } else {
            match backend.route(nr as u64) {
                Some(Route::Hook) => 1,
                Some(Route::FdArg) => 3,
                Some(Route::Fast) | None => 0,
            }
        };
        slot.store(route, Ordering::Relaxed);
    }
    TAG_TRACE.store(backend.mixed(), Ordering::Relaxed);
    let _ = BACKEND.set(backend);
    let _ = OPTIONS.set(options);
    Ok(())
}

/// Maps the sled page at address 0, execute-only where protection keys allow.
fn map_page0() -> Result<(), Error> {
    let r = map_fresh(0, sled::PAGE as u64);
    if r == -(libc::EEXIST as i64) {
        return Err(Error::ZeroInUse);
    }
    if r != 0 {
        return Err(Error::MapZero(if r < 0 { -r as i32 } else { 0 }));
    }
    let sled = map_pad()?;
    write_page0(&sled.page);
    // With protection keys the kernel turns a PROT_EXEC-only mapping into an
    // execute-only one; without them x86 makes it readable too.
    // SAFETY: reprotecting our own page 0.
    let r = unsafe { syscall6(sys::NR_MPROTECT, [0, sled::PAGE as u64, PROT_EXEC, 0, 0, 0]) };
    if r < 0 {
        return Err(Error::Protect(-r as i32));
    }
    Ok(())
}

/// Maps `len` bytes of fresh anonymous read-write memory at `addr` without
/// replacing anything there (`MAP_FIXED_NOREPLACE`): the raw `mmap` result.
fn map_fresh(addr: u64, len: u64) -> i64 {
    // SAFETY: a fresh anonymous mapping that cannot replace anything (NOREPLACE).
    unsafe {
        syscall6(
            sys::NR_MMAP,
            [
                addr,
                len,
                PROT_READ | PROT_WRITE,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE,
                u64::MAX,
                0,
            ],
        )
    }
}

/// Maps the sled's jump pad at the first free candidate address (see [`sled`]) and
/// returns the sled that jumps there.
fn map_pad() -> Result<sled::Sled, Error> {
    for c in sled::candidates() {
        let Some(s) = sled::build(c) else { continue };
        let (a, b) = s.pad_range();
        let r = map_fresh(a, b - a);
        if r != a as i64 {
            if r >= 0 {
                // SAFETY: an old kernel put it elsewhere: ours to unmap.
                unsafe { syscall6(sys::NR_MUNMAP, [r as u64, b - a, 0, 0, 0, 0]) };
            }
            continue;
        }
        let pad = s.pad(entry_address());
        // SAFETY: [a, b) is our fresh read-write mapping, `pad` is b - a bytes.
        unsafe { core::ptr::copy_nonoverlapping(pad.as_ptr(), a as *mut u8, pad.len()) };
        // SAFETY: reprotecting our own pad.
        unsafe { syscall6(sys::NR_MPROTECT, [a, b - a, PROT_READ | PROT_EXEC, 0, 0, 0]) };
        return Ok(s);
    }
    Err(Error::Pad)
}

/// Routes the calls the NULL guard must see through the hook (signal masks).
pub(crate) fn route_guard_calls() {
    for nr in [13usize, 14, 130, 131, 270, 271, 281, 441] {
        entry_x86_64::ROUTE[nr].store(1, Ordering::Relaxed);
    }
}

/// Routes every syscall through the Rust hook (for backends that must see all of them).
pub fn route_all_to_hook() {
    for slot in entry_x86_64::ROUTE.iter().take(sled::MAX_NR + 1) {
        slot.store(1, Ordering::Relaxed);
    }
}

fn write_page0(sled: &[u8]) {
    // Rust forbids writing through a null pointer even where address 0 is mapped, so
    // the copy is done by the CPU in inline assembly.
    // SAFETY: page 0 is mapped read-write by `install` and the sled fits in it; the asm
    // reads `sled.len()` bytes from `sled` and writes them at address 0.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rdi") 0usize => _,
            inout("rsi") sled.as_ptr() => _,
            inout("rcx") sled.len() => _,
            options(nostack),
        );
    }
}

/// Rewrites every syscall site in the mapped region `[start, start + len)` (page
/// aligned), which has protection `prot` (`PROT_*` bits). Regions in the exclusion list
/// are skipped. With `file = Some((fd, offset))`, the ELF file the region was mapped
/// from at that offset, only its executable sections are swept. Returns the number of
/// sites patched.
///
/// # Safety
/// The region must be mapped with protection `prot` and hold code of the program (not
/// ours, not the vDSO); no other thread may change its mapping meanwhile.
///
/// # Errors
/// [`rewriter::Error`] when a page cannot be reprotected.
pub unsafe fn rewrite_region(
    start: u64,
    len: u64,
    prot: i32,
    file: Option<(i32, u64)>,
) -> Result<usize, rewriter::Error> {
    // SAFETY: forwarded to our caller.
    unsafe { hook::rewrite(start, len, prot as u64, file) }
}
