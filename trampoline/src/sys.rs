//! The system call numbers and flag values the zpoline core passes to the
//! kernel, by name. Each comes from the `libc` crate (plain constants: the
//! hook still calls no libc function); the few the crate lacks are written
//! once here with the kernel header they come from.

/// A `libc` system call number (`c_long`) as the `u64` `syscall6` takes.
macro_rules! nr {
    ($($name:ident = $sys:ident;)*) => {
        $(pub(crate) const $name: u64 = libc::$sys as u64;)*
    };
}

/// A `libc` flag or signal number (`c_int`) as a `u64` register value.
macro_rules! flag {
    ($($name:ident;)*) => {
        $(pub(crate) const $name: u64 = libc::$name as u64;)*
    };
}

nr! {
    NR_READ = SYS_read;
    NR_WRITE = SYS_write;
    NR_CLOSE = SYS_close;
    NR_PREAD64 = SYS_pread64;
    NR_PWRITE64 = SYS_pwrite64;
    NR_FSTAT = SYS_fstat;
    NR_MMAP = SYS_mmap;
    NR_MPROTECT = SYS_mprotect;
    NR_MUNMAP = SYS_munmap;
    NR_BRK = SYS_brk;
    NR_RT_SIGACTION = SYS_rt_sigaction;
    NR_RT_SIGPROCMASK = SYS_rt_sigprocmask;
    NR_RT_SIGRETURN = SYS_rt_sigreturn;
    NR_MREMAP = SYS_mremap;
    NR_GETPID = SYS_getpid;
    NR_CLONE = SYS_clone;
    NR_FORK = SYS_fork;
    NR_VFORK = SYS_vfork;
    NR_EXECVE = SYS_execve;
    NR_READLINK = SYS_readlink;
    NR_GETEUID = SYS_geteuid;
    NR_SIGALTSTACK = SYS_sigaltstack;
    NR_PRCTL = SYS_prctl;
    NR_ARCH_PRCTL = SYS_arch_prctl;
    NR_GETTID = SYS_gettid;
    NR_EXIT_GROUP = SYS_exit_group;
    NR_GETDENTS64 = SYS_getdents64;
    NR_TGKILL = SYS_tgkill;
    NR_OPENAT = SYS_openat;
    NR_UNLINKAT = SYS_unlinkat;
    NR_RENAMEAT = SYS_renameat;
    NR_READLINKAT = SYS_readlinkat;
    NR_FACCESSAT = SYS_faccessat;
    NR_EXECVEAT = SYS_execveat;
    NR_PROCESS_VM_READV = SYS_process_vm_readv;
    NR_CLONE3 = SYS_clone3;
    NR_PKEY_ALLOC = SYS_pkey_alloc;
    NR_PKEY_FREE = SYS_pkey_free;
}

flag! {
    PROT_NONE;
    PROT_READ;
    PROT_WRITE;
    PROT_EXEC;
    MAP_PRIVATE;
    MAP_TYPE;
    MAP_FIXED;
    MAP_ANONYMOUS;
    MAP_NORESERVE;
    MAP_FIXED_NOREPLACE;
    MREMAP_FIXED;
    O_RDONLY;
    O_WRONLY;
    O_CREAT;
    O_EXCL;
    O_CLOEXEC;
    O_DIRECTORY;
    AT_EMPTY_PATH;
    X_OK;
    SIG_BLOCK;
    SIG_SETMASK;
    SIGSEGV;
    SIGSYS;
    SA_SIGINFO;
    SA_ONSTACK;
    SA_NODEFER;
    SA_RESTART;
    SS_ONSTACK;
    CLONE_VFORK;
}

/// `AT_FDCWD` (-100) as a register value.
pub(crate) const AT_FDCWD: u64 = libc::AT_FDCWD as i64 as u64;
/// `ESRCH` as the negated value a raw system call returns.
pub(crate) const NEG_ESRCH: i64 = -(libc::ESRCH as i64);
/// The kernel's `sigset_t`: 64 signals, the size `rt_sig*` calls take.
pub(crate) const KERNEL_SIGSET: u64 = 8;
/// `SA_RESTORER` (`<asm/signal.h>`; not in the libc crate for x86-64).
pub(crate) const SA_RESTORER: u64 = 0x0400_0000;
/// `ARCH_GET_FS` (`<asm/prctl.h>`; not in the libc crate).
pub(crate) const ARCH_GET_FS: u64 = 0x1003;
/// `PR_SET_SYSCALL_USER_DISPATCH` (`<linux/prctl.h>`; not in the libc crate).
pub(crate) const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
/// `PR_SYS_DISPATCH_ON` (`<linux/prctl.h>`).
pub(crate) const PR_SYS_DISPATCH_ON: u64 = 1;
/// `SYSCALL_DISPATCH_FILTER_BLOCK` (`<linux/prctl.h>`): the selector byte
/// that sends the thread's system calls to `SIGSYS`.
pub(crate) const SYSCALL_DISPATCH_FILTER_BLOCK: u8 = 1;

/// Byte offset of `uc_mcontext.gregs` in the x86-64 `ucontext_t` (after
/// `uc_flags`, `uc_link` and the 24-byte `uc_stack`).
pub(crate) const GREGS: usize = 40;
/// Indexes into `gregs` (`REG_*` of `<sys/ucontext.h>`).
pub(crate) const REG_RAX: usize = libc::REG_RAX as usize;
pub(crate) const REG_RSP: usize = libc::REG_RSP as usize;
pub(crate) const REG_RIP: usize = libc::REG_RIP as usize;

/// `nr(fd, buf, len, arg)`, the shape of `read`, `write`, `pread64` and
/// `getdents64`: the raw result.
///
/// # Safety
/// `nr` must be one of those calls, and `[buf, buf + len)` ours for it (writable
/// for the calls that fill it).
unsafe fn fd_buf(nr: u64, fd: i32, buf: u64, len: usize, arg: u64) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { crate::syscall6(nr, [fd as u64, buf, len as u64, arg, 0, 0]) }
}

/// `read(fd, buf)`: the raw result.
pub(crate) fn read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: read fills at most our buffer's length.
    unsafe { fd_buf(NR_READ, fd, buf.as_mut_ptr() as u64, buf.len(), 0) }
}

/// `write(fd, bytes)`: the raw result.
pub(crate) fn write(fd: i32, bytes: &[u8]) -> i64 {
    // SAFETY: write reads at most our buffer's length.
    unsafe { fd_buf(NR_WRITE, fd, bytes.as_ptr() as u64, bytes.len(), 0) }
}

/// `pread64(fd, buf, off)`: the raw result.
pub(crate) fn pread(fd: i32, buf: &mut [u8], off: u64) -> i64 {
    // SAFETY: pread64 fills at most our buffer's length.
    unsafe { fd_buf(NR_PREAD64, fd, buf.as_mut_ptr() as u64, buf.len(), off) }
}

/// `getdents64(fd, buf)`: the raw result.
pub(crate) fn getdents64(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: getdents64 fills at most our buffer's length.
    unsafe { fd_buf(NR_GETDENTS64, fd, buf.as_mut_ptr() as u64, buf.len(), 0) }
}
