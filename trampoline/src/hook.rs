//! The Rust syscall hook. Runs on the program's threads with the program's `%fs`: no
//! allocation, no libc, no thread-locals, no locks, no panics on the normal path.

use core::sync::atomic::Ordering;

use crate::entry_x86_64::Frame;
use crate::trace;
use crate::{sys, syscall6, ReExec, BACKEND, COUNTS, OPTIONS, PATCHED, ROOT_PID};

use crate::sys::{
    AT_EMPTY_PATH, AT_FDCWD, MAP_PRIVATE, MAP_TYPE, NR_EXECVE, NR_EXECVEAT, NR_EXIT_GROUP, NR_FORK,
    NR_MMAP, NR_MPROTECT, NR_MREMAP, NR_MUNMAP, NR_READLINK, NR_READLINKAT, NR_RT_SIGACTION,
    NR_SIGALTSTACK, PROT_EXEC, PROT_READ, PROT_WRITE, SIGSEGV, SIGSYS,
};

const ENOEXEC: i64 = libc::ENOEXEC as i64;
const EACCES: i64 = libc::EACCES as i64;
const E2BIG: i64 = libc::E2BIG as i64;

/// What the stub should do after the hook.
pub(crate) enum Outcome {
    /// The syscall is done; here is its result.
    Done(i64),
    /// Run the stub's special path (rt_sigreturn, clone, vfork, clone3).
    Special,
}

/// Called by the stub's hook path.
pub(crate) fn on_syscall(frame: &mut Frame) -> u64 {
    let args = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    match handle(frame.rax, &args) {
        Outcome::Done(r) => {
            frame.rax = r as u64;
            0
        }
        Outcome::Special => 1,
    }
}

/// In the child of a fork made in the hook: what the stub does for the ones it makes.
fn forked_child() {
    crate::FORKED.store(1, Ordering::Relaxed);
    crate::stack::forked();
    crate::sud::reenable_in_child();
}

/// The hook proper (the stub's; the SIGSYS and SIGSEGV handlers enter through the stub).
fn handle(nr: u64, args: &[u64; 6]) -> Outcome {
    let Some(opts) = OPTIONS.get() else {
        // SAFETY: not set up yet: behave like the real instruction.
        return Outcome::Done(unsafe { syscall6(nr, *args) });
    };
    let counts = COUNTS.load(Ordering::Relaxed);
    let backend = BACKEND.get().copied().unwrap_or(&crate::Host);
    if matches!(nr, 56 | 435) && backend.forks() && crate::fork_like(nr, args) {
        if let Some(fd) = opts.trace_fd {
            trace::trace(fd, nr, args, None);
        }
        let r = backend.fork(nr, args);
        if r == 0 {
            forked_child();
        }
        trace::count(counts, nr, r);
        return Outcome::Done(r);
    }
    if matches!(nr, 15 | 56 | 58 | 435) {
        trace::count(counts, nr, 0);
        if let Some(fd) = opts.trace_fd {
            trace::trace(fd, nr, args, None);
        }
        return Outcome::Special;
    }
    match nr {
        NR_EXECVE | NR_EXECVEAT if opts.reexec.is_some() => {
            if let Some(fd) = opts.trace_fd {
                trace::trace(fd, nr, args, None);
            }
            // Counted before: a successful exec never comes back here.
            trace::count(counts, nr, 0);
            let r = exec(
                opts.reexec.as_ref().unwrap_or_else(|| unreachable!()),
                nr,
                args,
            );
            trace::count_error(counts, nr, r);
            return Outcome::Done(r);
        }
        NR_EXIT_GROUP => {
            trace::count(counts, nr, 0);
            if let Some(fd) = opts.trace_fd {
                trace::trace(fd, nr, args, None);
                trace::warn_allocations(fd);
            }
            // SAFETY: getpid has no arguments.
            let pid = unsafe { syscall6(sys::NR_GETPID, [0; 6]) } as i32;
            match opts.summary_fd {
                Some(fd) if ROOT_PID.load(Ordering::Relaxed) == pid => trace::summary(fd, counts),
                _ => {}
            }
        }
        NR_MMAP | NR_MPROTECT | NR_MUNMAP | NR_MREMAP
            if !crate::guard::enabled() && touches_page0(nr, args) =>
        {
            // Page 0 holds the sled: every rewritten syscall goes through it. Answer
            // as a kernel with the usual vm.mmap_min_addr would, page 0 being unmapped.
            let r = match nr {
                NR_MUNMAP if args[0] + args[1] > 4096 => {
                    let end = args[0] + args[1];
                    // SAFETY: unmapping what the program asked for, minus page 0.
                    unsafe { syscall6(NR_MUNMAP, [4096, end - 4096, 0, 0, 0, 0]) }
                }
                NR_MUNMAP => 0,
                NR_MPROTECT => -12, // ENOMEM: not mapped
                NR_MREMAP => -14,   // EFAULT
                _ => -1,            // EPERM: below mmap_min_addr
            };
            trace::count(counts, nr, r);
            if let Some(fd) = opts.trace_fd {
                trace::trace(fd, nr, args, Some(r));
            }
            return Outcome::Done(r);
        }
        NR_READLINK | NR_READLINKAT if opts.program.is_some() => {
            let (path, buf, size) = if nr == NR_READLINK {
                (args[0], args[1], args[2])
            } else {
                (args[1], args[2], args[3])
            };
            // SAFETY: the program's NUL-terminated path argument.
            if path != 0 && unsafe { is_proc_self_exe(path as *const u8) } {
                let prog = opts.program.as_deref().unwrap_or(b"\0");
                let n = (prog.len() - 1).min(size as usize);
                // SAFETY: the program gave us a buffer of `size` bytes.
                unsafe { core::ptr::copy_nonoverlapping(prog.as_ptr(), buf as *mut u8, n) };
                let r = n as i64;
                trace::count(counts, nr, r);
                if let Some(fd) = opts.trace_fd {
                    trace::trace(fd, nr, args, Some(r));
                }
                return Outcome::Done(r);
            }
        }
        NR_RT_SIGACTION if args[0] == SIGSEGV && crate::guard::owns_segv() => {
            // SIGSEGV is ours (`guard::own_segv`): record the program's action.
            let r = crate::guard::sigaction(args[1], args[2]);
            trace::count(counts, nr, r);
            if let Some(fd) = opts.trace_fd {
                trace::trace(fd, nr, args, Some(r));
            }
            return Outcome::Done(r);
        }
        NR_SIGALTSTACK if crate::guard::enabled() => {
            let r = crate::stack::program_sigaltstack(args[0], args[1]);
            trace::count(counts, nr, r);
            if let Some(fd) = opts.trace_fd {
                trace::trace(fd, nr, args, Some(r));
            }
            return Outcome::Done(r);
        }
        NR_RT_SIGACTION if args[0] == SIGSYS && crate::sud::handler_installed() => {
            // SIGSYS belongs to the Syscall User Dispatch fallback: pretend success.
            if args[2] != 0 {
                // SAFETY: the program passed `oldact` of `args[3] + 24` bytes.
                unsafe { core::ptr::write_bytes(args[2] as *mut u8, 0, 24 + args[3] as usize) };
            }
            trace::count(counts, nr, 0);
            return Outcome::Done(0);
        }
        _ => {}
    }
    // NULL guard: SIGSEGV must never be blocked, see `crate::guard`.
    let mut set = 0u64;
    let mut act = [0u64; 4];
    let mut pset = [0u64; 2];
    let mut guarded = *args;
    let args = if crate::guard::enabled() {
        unblock_segv(nr, &mut guarded, &mut set, &mut act, &mut pset);
        &guarded
    } else {
        args
    };
    let (r, target) = if nr == NR_FORK && backend.forks() {
        (backend.fork(nr, args), crate::Target::Host)
    } else {
        backend.call(nr, args)
    };
    if nr == NR_FORK && r == 0 {
        forked_child();
    }
    if (nr == NR_MMAP || nr == NR_MPROTECT)
        && !(-4095..0).contains(&r)
        && args[2] & PROT_EXEC != 0
        && (args[2] & PROT_WRITE != 0 || (nr == NR_MMAP && args[3] & MAP_TYPE != MAP_PRIVATE))
    {
        // Writable and executable at once (a JIT), or shared code we do not rewrite.
        crate::sud::arm_all();
    }
    if opts.rewrite_new_code && !(-4095..0).contains(&r) {
        if nr == NR_MMAP && args[2] & PROT_EXEC != 0 && args[3] & MAP_TYPE == MAP_PRIVATE {
            let len = mapped_file_len(args);
            let file = (args[3] & sys::MAP_ANONYMOUS == 0).then_some((args[4] as i32, args[5]));
            if let Some((fd, _)) = file {
                if opts.auto_guard_jvm
                    && !crate::page0_execute_only()
                    && (is_libjvm(fd) || is_libtsan(fd))
                {
                    crate::guard::switch_on();
                }
            }
            // SAFETY: the kernel just mapped [r, r+len) from `file` with that protection
            // for the program, and `len` stops at the end of the file (no SIGBUS).
            let _ = unsafe { rewrite(r as u64, len, args[2], file) };
        } else if nr == NR_MPROTECT && args[2] & PROT_EXEC != 0 {
            // SAFETY: the program just made [addr, addr+len) executable.
            let _ = unsafe { rewrite(args[0], args[1], args[2], None) };
        }
    }
    if nr != NR_EXIT_GROUP {
        trace::count(counts, nr, r);
        if let Some(fd) = opts.trace_fd {
            trace::trace_to(fd, nr, args, Some(r), target);
        }
    }
    Outcome::Done(r)
}

/// True when the call would map, unmap or reprotect page 0 (the sled). A hint address
/// without MAP_FIXED/MAP_FIXED_NOREPLACE is only a hint: the kernel keeps it out of
/// page 0 by itself.
fn touches_page0(nr: u64, a: &[u64; 6]) -> bool {
    use crate::sys::{MAP_FIXED, MAP_FIXED_NOREPLACE, MREMAP_FIXED};
    let overlaps = |addr: u64, len: u64| addr < crate::sled::PAGE as u64 && len > 0;
    match nr {
        NR_MMAP => a[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 && overlaps(a[0], a[1]),
        NR_MPROTECT | NR_MUNMAP => overlaps(a[0], a[1]),
        // mremap(old, old_len, new_len, flags, new_addr)
        NR_MREMAP => overlaps(a[0], a[1]) || (a[3] & MREMAP_FIXED != 0 && overlaps(a[4], a[2])),
        _ => false,
    }
}

/// Rewrites the arguments of the calls that set a signal mask so that the mask never
/// includes SIGSEGV (NULL guard mode). The buffers hold the rewritten copies.
fn unblock_segv(nr: u64, a: &mut [u64; 6], set: &mut u64, act: &mut [u64; 4], pset: &mut [u64; 2]) {
    use crate::guard::without_segv;
    match nr {
        // rt_sigaction(sig, act, ...): the handler's sa_mask
        NR_RT_SIGACTION if a[1] != 0 => {
            // SAFETY: the program passed a 32-byte kernel sigaction.
            *act = unsafe { *(a[1] as *const [u64; 4]) };
            act[3] &= !crate::guard::SEGV_BIT;
            a[1] = act.as_ptr() as u64;
        }
        // rt_sigprocmask(how, set, ...) for SIG_BLOCK and SIG_SETMASK
        14 if a[0] != 1 => a[1] = without_segv(a[1], set),
        // rt_sigsuspend(mask)
        130 => a[0] = without_segv(a[0], set),
        // ppoll(.., mask), epoll_pwait(.., mask), epoll_pwait2(.., mask)
        271 => a[3] = without_segv(a[3], set),
        281 | 441 => a[4] = without_segv(a[4], set),
        // pselect6(.., &{mask, size})
        270 if a[5] != 0 => {
            // SAFETY: the program passed a {const sigset_t *, size_t} pair.
            *pset = unsafe { *(a[5] as *const [u64; 2]) };
            pset[0] = without_segv(pset[0], set);
            a[5] = pset.as_ptr() as u64;
        }
        _ => {}
    }
}

/// Reads the path of `fd` (through /proc/self/fd) into `buf`; returns its length, or
/// 0 when it cannot be read.
#[inline(never)]
fn fd_path(fd: i32, buf: &mut [u8; 512]) -> usize {
    use core::fmt::Write;
    let mut link = trace::Line::new();
    let _ = write!(link, "/proc/self/fd/{fd}\0");
    // SAFETY: readlink of a NUL-terminated path into our buffer.
    let n = unsafe {
        syscall6(
            sys::NR_READLINK,
            [
                link.bytes().as_ptr() as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        )
    };
    n.max(0) as usize
}

/// True when `fd` is a file named `libjvm.so`.
#[inline(never)]
fn is_libjvm(fd: i32) -> bool {
    let mut buf = [0u8; 512];
    let n = fd_path(fd, &mut buf);
    buf[..n].ends_with(b"/libjvm.so")
}

/// True when `fd` is ThreadSanitizer's runtime (`libtsan.so`, `libtsan.so.2`, ...).
/// It checks the address-space layout in its initialiser and aborts on a mapping at
/// page 0; ld.so maps every library before any initialiser runs, so switching to the
/// NULL guard here is early enough.
#[inline(never)]
fn is_libtsan(fd: i32) -> bool {
    let mut buf = [0u8; 512];
    let n = fd_path(fd, &mut buf);
    let name = buf[..n].rsplit(|&b| b == b'/').next().unwrap_or(&[]);
    name.starts_with(b"libtsan.so")
}

/// The part of an `mmap` that is backed by the file: pages past its end fault with
/// SIGBUS when read. Anonymous mappings are returned whole.
fn mapped_file_len(args: &[u64; 6]) -> u64 {
    let len = args[1];
    if args[3] & sys::MAP_ANONYMOUS != 0 {
        return len;
    }
    let mut st = [0u64; 18];
    // An LKL file's size is LKL's (its placeholder is an empty memory file).
    if crate::mapfile::MapFile::of(args[4] as i32).fstat(&mut st) < 0 {
        return 0;
    }
    let size = st[6]; // st_size
    let off = args[5];
    len.min(size.saturating_sub(off))
}

/// Rewrites a mapping that just became executable, unless it overlaps an excluded
/// range. With `file = Some((fd, offset))` (the file and offset the mapping starts at)
/// only the file's executable sections are swept, see [`crate::elfcode`].
///
/// # Safety
/// `[start, start+len)` must be mapped with `prot` and hold the program's code; `fd`
/// must be the file it was mapped from.
pub(crate) unsafe fn rewrite(
    start: u64,
    len: u64,
    prot: u64,
    file: Option<(i32, u64)>,
) -> Result<usize, rewriter::Error> {
    let len = (len + 4095) & !4095;
    if len == 0 || start & 4095 != 0 {
        return Ok(0);
    }
    if let Some(opts) = OPTIONS.get() {
        if opts
            .exclude
            .iter()
            .any(|&(a, b)| start < b && a < start + len)
        {
            return Ok(0);
        }
    }
    let readable = prot & PROT_READ != 0;
    if !readable {
        // SAFETY: adding read access to the program's own executable region.
        unsafe { syscall6(sys::NR_MPROTECT, [start, len, prot | PROT_READ, 0, 0, 0]) };
    }
    let rprot = (prot | PROT_READ) as i32;
    let mut result = Ok(0usize);
    let mut add = |r: Result<usize, rewriter::Error>| match (&mut result, r) {
        (Ok(total), Ok(n)) => *total += n,
        (Ok(_), Err(e)) => result = Err(e),
        _ => {}
    };
    let by_sections = file.is_some_and(|(fd, off)| {
        // A file of the backend's (an LKL file mapped by copy) is read through it.
        let file = crate::mapfile::MapFile::of(fd);
        crate::elfcode::in_file(&file, |so, ss| {
            let (lo, hi) = (so.max(off), (so + ss).min(off + len));
            if lo < hi {
                let base = start + (lo - off);
                // SAFETY: a sub-range of the mapping the caller vouches for.
                add(unsafe { rewrite_range(&file, lo, hi, base, rprot) });
            }
        })
    });
    if !by_sections {
        // SAFETY: forwarded from our caller; protection is now prot|READ.
        add(unsafe { rewriter::live::patch_region(start, len, rprot) });
    }
    if !readable {
        // SAFETY: restoring the protection the program asked for.
        unsafe { syscall6(sys::NR_MPROTECT, [start, len, prot, 0, 0, 0]) };
    }
    if let Ok(n) = result {
        PATCHED.fetch_add(n as u64, Ordering::Relaxed);
    }
    result
}

/// Patches the file range `[lo, hi)` mapped at `base`: from the site cache when it has
/// this range, else by decoding (and then filling the cache).
///
/// # Safety
/// `[base, base + hi - lo)` must be mapped readable with protection `prot` from `file`
/// at offset `lo` (or hold a copy of those bytes).
unsafe fn rewrite_range(
    file: &crate::mapfile::MapFile,
    lo: u64,
    hi: u64,
    base: u64,
    prot: i32,
) -> Result<usize, rewriter::Error> {
    let key = crate::cache::Key::new(file, lo, hi);
    let mut writer = None;
    if let Some(key) = &key {
        match crate::cache::patch_cached(key, base, prot) {
            Some(Ok(n)) => return Ok(n),
            // A stale entry: decode the rest, but do not record a partial list.
            Some(Err(_)) => {}
            None => writer = crate::cache::Writer::begin(key),
        }
    }
    // SAFETY: forwarded to our caller.
    let r = unsafe {
        rewriter::live::patch_region_with(base, hi - lo, prot, |site| {
            if let Some(w) = writer.as_mut() {
                w.push(site.addr - base, site.len);
            }
        })
    };
    if let Some(w) = writer {
        w.finish(r.is_ok());
    }
    r
}

/// Length of the NUL-terminated string at `p`.
///
/// # Safety
/// `p` must point to a NUL-terminated string.
unsafe fn cstrlen(p: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a terminating NUL.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n
}

/// True when the string at `p` is `/proc/self/exe` or `/proc/<our pid>/exe`.
///
/// # Safety
/// `p` must point to a NUL-terminated string.
#[inline(never)]
unsafe fn is_proc_self_exe(p: *const u8) -> bool {
    // SAFETY: forwarded to the caller.
    let s = unsafe { core::slice::from_raw_parts(p, cstrlen(p)) };
    if s == b"/proc/self/exe" {
        return true;
    }
    let Some(rest) = s
        .strip_prefix(b"/proc/")
        .and_then(|r| r.strip_suffix(b"/exe"))
    else {
        return false;
    };
    // SAFETY: getpid has no arguments.
    let pid = unsafe { syscall6(sys::NR_GETPID, [0; 6]) } as u64;
    let mut want = trace::Line::new();
    use core::fmt::Write;
    let _ = write!(want, "{pid}");
    rest == want.bytes()
}

/// [`crate::Backend::read_head`] on the host: open, read, close.
pub fn host_read_head(path: u64, buf: &mut [u8]) -> crate::Head {
    // SAFETY: openat with a NUL-terminated path string, read-only.
    let fd = unsafe {
        syscall6(
            sys::NR_OPENAT,
            [AT_FDCWD, path, sys::O_RDONLY | sys::O_CLOEXEC, 0, 0, 0],
        )
    };
    if fd < 0 {
        return crate::Head::OpenFailed {
            errno: fd,
            backend: false,
        };
    }
    let n = sys::read(fd as i32, buf);
    // SAFETY: closing our own fd.
    unsafe { syscall6(sys::NR_CLOSE, [fd as u64, 0, 0, 0, 0, 0]) };
    if n < 0 {
        crate::Head::ReadFailed
    } else {
        crate::Head::Read(n as usize)
    }
}

/// Turns `execve`/`execveat` into an `execve` of the loader with the same environment,
/// so the new image is interposed from its first instruction. Checks first what the
/// kernel would check (exists, executable, regular, ELF or `#!`) so that a failing
/// `execve` still fails in the calling program, which may go on (a shell's PATH walk).
#[inline(never)]
fn exec(re: &ReExec, nr: u64, args: &[u64; 6]) -> i64 {
    let (dirfd, path, argv, envp, flags) = if nr == NR_EXECVE {
        (AT_FDCWD, args[0], args[1], args[2], 0)
    } else {
        (args[0], args[1], args[2], args[3], args[4])
    };
    let backend = BACKEND.get().copied().unwrap_or(&crate::Host);
    // Build a path the loader can open: "/proc/self/fd/N[/path]" for dirfd-relative or
    // AT_EMPTY_PATH forms; for a dirfd of the backend's (an LKL directory, or file with
    // AT_EMPTY_PATH), its path in the backend's file system instead.
    let mut pbuf = [0u8; 4200];
    let path = if path == 0 {
        return -(libc::EFAULT as i64);
    } else if dirfd == AT_FDCWD || {
        // SAFETY: path is the program's NUL-terminated string.
        unsafe { *(path as *const u8) == b'/' }
    } {
        path
    } else {
        // SAFETY: path is the program's NUL-terminated string.
        let rel =
            unsafe { core::slice::from_raw_parts(path as *const u8, cstrlen(path as *const u8)) };
        let mut n = if backend.owns_fd(dirfd as i32) {
            let n = backend.fd_path(dirfd as i32, &mut pbuf[..4096]);
            if n < 0 {
                return n;
            }
            n as usize
        } else {
            use core::fmt::Write;
            let mut l = trace::Line::new();
            let _ = write!(l, "/proc/self/fd/{}", dirfd as i32);
            let head = l.bytes();
            pbuf[..head.len()].copy_from_slice(head);
            head.len()
        };
        if n + 1 + rel.len() + 1 > pbuf.len() {
            return -(libc::ENAMETOOLONG as i64);
        }
        if !(rel.is_empty() && flags & AT_EMPTY_PATH != 0) {
            pbuf[n] = b'/';
            pbuf[n + 1..n + 1 + rel.len()].copy_from_slice(rel);
            n += 1 + rel.len();
        }
        pbuf[n] = 0;
        pbuf.as_ptr() as u64
    };
    let path = match OPTIONS.get().and_then(|o| o.program.as_deref()) {
        // SAFETY: the program's NUL-terminated path.
        Some(prog) if unsafe { is_proc_self_exe(path as *const u8) } => prog.as_ptr() as u64,
        _ => path,
    };
    // The checks go where the backend's routing sends the path (LKL's file system for
    // an LKL path); the host backend makes them on the host.
    let r = backend.syscall(sys::NR_FACCESSAT, &[AT_FDCWD, path, sys::X_OK, 0, 0, 0]);
    if r < 0 {
        return r;
    }
    let mut magic = [0u8; 4];
    let n = match backend.read_head(path, &mut magic) {
        crate::Head::Read(n) => n,
        crate::Head::OpenFailed { backend: false, .. } => {
            // Executable but not readable: we cannot load it ourselves; run it natively.
            // SAFETY: the program's own arguments.
            return unsafe { syscall6(NR_EXECVE, [path, argv, envp, 0, 0, 0]) };
        }
        crate::Head::OpenFailed { backend: true, .. } | crate::Head::ReadFailed => return -EACCES,
    };
    let elf = n == 4 && magic == *b"\x7fELF";
    let script = n >= 2 && magic[..2] == *b"#!";
    if !elf && !script {
        return -ENOEXEC;
    }
    // argv: loader, fixed args, --argv0 A0, --, path, argv[1..], NULL
    let argv = argv as *const u64;
    let mut argc = 0usize;
    if !argv.is_null() {
        // SAFETY: argv is the program's NULL-terminated pointer array.
        while unsafe { *argv.add(argc) } != 0 {
            argc += 1;
        }
    }
    let argv0 = if argc > 0 {
        // SAFETY: argv has argc > 0 entries.
        unsafe { *argv }
    } else {
        c"".as_ptr() as u64
    };
    // SAFETY: getpid has no arguments.
    let is_root =
        ROOT_PID.load(Ordering::Relaxed) == unsafe { syscall6(sys::NR_GETPID, [0; 6]) } as i32;
    let root_arg = re.root_arg.as_ref().filter(|_| is_root);
    let fixed = 1 + re.args.len() + usize::from(root_arg.is_some()) + 4;
    let total = fixed + argc.saturating_sub(1) + 1;
    let mut small = [0u64; 512];
    if total > small.len() {
        return -E2BIG;
    }
    let out = &mut small[..total];
    let mut i = 0;
    out[i] = re.loader.as_ptr() as u64;
    i += 1;
    for a in re.args.iter().chain(root_arg) {
        out[i] = a.as_ptr() as u64;
        i += 1;
    }
    for a in [
        c"--argv0".as_ptr() as u64,
        argv0,
        c"--".as_ptr() as u64,
        path,
    ] {
        out[i] = a;
        i += 1;
    }
    for k in 1..argc {
        // SAFETY: k < argc.
        out[i] = unsafe { *argv.add(k) };
        i += 1;
    }
    out[i] = 0;
    let backend = BACKEND.get().copied().unwrap_or(&crate::Host);
    backend.before_exec();
    // SAFETY: a NULL-terminated argv of valid strings, the program's envp.
    let r = unsafe {
        syscall6(
            NR_EXECVE,
            [
                re.loader.as_ptr() as u64,
                out.as_ptr() as u64,
                envp,
                0,
                0,
                0,
            ],
        )
    };
    backend.exec_failed();
    r
}
