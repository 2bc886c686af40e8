//! The program's memory, as the interposers (the zpoline LKL backend and the hijack
//! library) reach it: typed copies in and out that answer `EFAULT` for a bad pointer,
//! as the kernel does, instead of crashing the program.
//!
//! A program address is a [`UserAddr`], never a Rust reference. [`UserAddr::read`],
//! [`UserAddr::write`], the byte copies and [`UserAddr::read_cstr`] copy in one of two
//! ways, with the same answers:
//!
//! - **In process** (`copy.rs`, `copy_x86_64.S`), once [`copy::enable`] was called:
//!   zpoline's interposer owns SIGSEGV in every mode, and its handler asks
//!   [`copy::fault_fixup`] first. The copy is a `rep movsb` (a byte loop for strings)
//!   whose faulting access resumes at a recovery label that returns `EFAULT`, as the
//!   kernel's exception table does for its own user copies. It costs a few
//!   nanoseconds, plus one `rt_sigprocmask` reading the thread's mask: with SIGSEGV
//!   blocked a fault would kill the process (the kernel forces a blocked fault signal
//!   to its default action), so then the copy takes the other way.
//! - **Through the kernel**: `process_vm_readv`/`process_vm_writev` on our own
//!   process. The kernel copies, and an unmapped range, a `PROT_NONE` page or (for
//!   writes) a read-only page makes the call fail with `EFAULT`, with no signal. A copy
//!   costs two system calls (`getpid` and the transfer, with the kernel pinning the
//!   pages: about 1.5 us on a VM; the pid is not cached, so a forked child reads its
//!   own memory). The hijack library, which does not own SIGSEGV, always copies so.
//!
//! Either is right for paths and small structures, not for data buffers: those are
//! passed to the kernel that serves the call, which reads them itself.
//!
//! Page 0 belongs to the interposer (zpoline's sled lives there), so an address below
//! [`LOW_LIMIT`] is `EFAULT` without a copy: a `NULL + 1` pointer fails as it does
//! natively.
//!
//! Everything here is a raw `syscall` instruction or our own assembly: no libc call, no
//! `errno`, no thread-local, no allocation, so it is safe inside zpoline's hook, which
//! runs with the program's `%fs`.
//!
//! Where the kernel refuses the transfer itself (a seccomp filter without
//! `process_vm_readv`: `ENOSYS` or `EPERM`), the copy falls back to a plain memory
//! copy: a bad pointer then faults as it did before this check existed.

#![no_std]

use core::mem::{size_of, MaybeUninit};

pub mod copy;

/// Addresses below this are refused with `EFAULT` (page 0: zpoline's sled).
pub const LOW_LIMIT: u64 = 4096;

const PAGE: u64 = 4096;

/// The size of the kernel's signal mask, 64 signals: what [`UserAddr::read_sigmask`]
/// reads, and the `sigsetsize` argument of `rt_sigprocmask`, `ppoll`, `pselect6` and
/// `epoll_pwait`.
pub const KERNEL_SIGSET_SIZE: usize = 8;

/// A bad address: the call fails with `EFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

impl Fault {
    /// The negative errno a system call returns for it.
    pub const fn neg_errno(self) -> i64 {
        -(libc::EFAULT as i64)
    }
}

/// Why a string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrError {
    /// A byte of it is not readable (`EFAULT`).
    Fault,
    /// No NUL within the buffer (`ENAMETOOLONG` for a path).
    TooLong,
}

impl StrError {
    /// The negative errno a system call returns for it.
    pub const fn neg_errno(self) -> i64 {
        match self {
            StrError::Fault => -(libc::EFAULT as i64),
            StrError::TooLong => -(libc::ENAMETOOLONG as i64),
        }
    }
}

/// Types that any bit pattern makes valid, with no padding whose contents matter:
/// what may be copied from or to the program's memory as bytes.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`.
pub unsafe trait Plain: Copy {}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: integers and C structures of integers: any bits are valid.
            unsafe impl Plain for $t {}
        )*
    };
}

plain!(
    u8,
    u16,
    u32,
    u64,
    i8,
    i16,
    i32,
    i64,
    usize,
    isize,
    libc::pollfd,
    libc::epoll_event,
    libc::timespec,
    libc::timeval,
    libc::stat,
    libc::sigset_t,
    libc::sockaddr_storage,
);

// SAFETY: an array of plain values is plain.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// An address in the program's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAddr(u64);

impl UserAddr {
    /// The program's address `a` (a system call argument, say).
    pub const fn new(a: u64) -> Self {
        UserAddr(a)
    }

    /// The address as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// True for NULL.
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// The address `n` bytes on.
    pub const fn add(self, n: u64) -> Self {
        UserAddr(self.0.wrapping_add(n))
    }

    /// Copies `out.len()` bytes from the program into `out`.
    ///
    /// # Errors
    /// [`Fault`] when a byte of the range is not readable.
    pub fn read_bytes(self, out: &mut [u8]) -> Result<(), Fault> {
        transfer(Dir::In, out.as_mut_ptr(), out.len(), self.0)
    }

    /// Copies `data` into the program's memory.
    ///
    /// # Errors
    /// [`Fault`] when a byte of the range is not writable (some bytes before it may
    /// have been written, as with the kernel's copies).
    pub fn write_bytes(self, data: &[u8]) -> Result<(), Fault> {
        transfer(Dir::Out, data.as_ptr().cast_mut(), data.len(), self.0)
    }

    /// Reads a `T` from the program (any alignment).
    ///
    /// # Errors
    /// [`Fault`] when the `size_of::<T>()` bytes are not readable.
    pub fn read<T: Plain>(self) -> Result<T, Fault> {
        let mut v = MaybeUninit::<T>::uninit();
        transfer(Dir::In, v.as_mut_ptr().cast(), size_of::<T>(), self.0)?;
        // SAFETY: every byte was written by the copy, and any bits are a valid T.
        Ok(unsafe { v.assume_init() })
    }

    /// Writes `v` into the program's memory (any alignment).
    ///
    /// # Errors
    /// As [`UserAddr::write_bytes`].
    pub fn write<T: Plain>(self, v: &T) -> Result<(), Fault> {
        transfer(
            Dir::Out,
            (v as *const T).cast_mut().cast(),
            size_of::<T>(),
            self.0,
        )
    }

    /// Reads `out.len()` values of `T` from the program.
    ///
    /// # Errors
    /// [`Fault`] when a byte of the range is not readable.
    pub fn read_slice<T: Plain>(self, out: &mut [T]) -> Result<(), Fault> {
        transfer(Dir::In, out.as_mut_ptr().cast(), size_of_val(out), self.0)
    }

    /// Writes `data` into the program's memory.
    ///
    /// # Errors
    /// As [`UserAddr::write_bytes`].
    pub fn write_slice<T: Plain>(self, data: &[T]) -> Result<(), Fault> {
        transfer(
            Dir::Out,
            data.as_ptr().cast_mut().cast(),
            size_of_val(data),
            self.0,
        )
    }

    /// Reads the kernel's signal mask (8 bytes, one bit per signal) at this address as
    /// a `sigset_t` (the rest of it empty).
    ///
    /// # Errors
    /// [`Fault`] when the 8 bytes are not readable.
    pub fn read_sigmask(self) -> Result<libc::sigset_t, Fault> {
        let bits = self.read::<[u8; KERNEL_SIGSET_SIZE]>()?;
        let bits = u64::from_ne_bytes(bits);
        // SAFETY: an all-zero sigset_t is valid.
        let mut m: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: the first 8 bytes of our sigset_t (128 bytes) hold the kernel's mask.
        unsafe { core::ptr::write_unaligned((&mut m as *mut libc::sigset_t).cast::<u64>(), bits) };
        Ok(m)
    }

    /// Reads the NUL-terminated string at this address into `buf`; returns it without
    /// its NUL. Reads a page at a time, so a string that ends just before an unmapped
    /// page is read whole.
    ///
    /// # Errors
    /// [`StrError::Fault`] when a byte before the NUL is not readable,
    /// [`StrError::TooLong`] when `buf` fills before a NUL.
    pub fn read_cstr(self, buf: &mut [u8]) -> Result<&[u8], StrError> {
        match self.read_cstr_prefix(buf) {
            Ok((s, true)) => Ok(s),
            Ok((_, false)) => Err(StrError::TooLong),
            Err(Fault) => Err(StrError::Fault),
        }
    }

    /// Reads the NUL-terminated string at this address, or its first `buf.len()`
    /// bytes; returns them (without a NUL) and whether the string ended there.
    ///
    /// # Errors
    /// [`Fault`] when a byte of what was to be read is not readable.
    pub fn read_cstr_prefix(self, buf: &mut [u8]) -> Result<(&[u8], bool), Fault> {
        if buf.is_empty() {
            return Ok((buf, false));
        }
        if self.0 < LOW_LIMIT {
            return Err(Fault);
        }
        if copy::usable() {
            // Never past the end of the address space: the rest counts as unmapped.
            let room = usize::try_from(u64::MAX - self.0).unwrap_or(usize::MAX);
            let n = buf.len().min(room);
            // SAFETY: in-process copies are usable in this thread; `buf` holds `n`
            // bytes.
            return match unsafe { copy::string(buf.as_mut_ptr(), self.0 as *const u8, n) } {
                Some(k) if k < n => Ok((&buf[..k], true)),
                Some(_) if n == buf.len() => Ok((buf, false)),
                _ => Err(Fault),
            };
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = self.0.wrapping_add(done as u64);
            let to_page_end = (PAGE - at % PAGE) as usize;
            let n = to_page_end.min(buf.len() - done);
            self.add(done as u64).read_bytes(&mut buf[done..done + n])?;
            if let Some(z) = buf[done..done + n].iter().position(|&b| b == 0) {
                return Ok((&buf[..done + z], true));
            }
            done += n;
        }
        Ok((buf, false))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

/// Copies `len` bytes between our buffer `local` and the program's `remote`.
fn transfer(dir: Dir, local: *mut u8, len: usize, remote: u64) -> Result<(), Fault> {
    if len == 0 {
        return Ok(());
    }
    if remote < LOW_LIMIT || remote.checked_add(len as u64).is_none() {
        return Err(Fault);
    }
    if copy::usable() {
        let (dst, src) = match dir {
            Dir::In => (local, remote as *const u8),
            Dir::Out => (remote as *mut u8, local.cast_const()),
        };
        // SAFETY: in-process copies are usable in this thread; our side holds `len`
        // bytes, and a fault on the program's side returns false.
        return if unsafe { copy::bytes(dst, src, len) } {
            Ok(())
        } else {
            Err(Fault)
        };
    }
    let l = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let r = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: len,
    };
    let nr = match dir {
        Dir::In => libc::SYS_process_vm_readv,
        Dir::Out => libc::SYS_process_vm_writev,
    };
    // SAFETY: getpid has no arguments; process_vm_readv/writev on our own process, with
    // one iovec each: ours covers `len` bytes of the caller's buffer, and the kernel
    // checks the program's range itself.
    let n = unsafe {
        let pid = raw::syscall(libc::SYS_getpid, 0, 0, 0);
        raw::syscall5(
            nr,
            pid as u64,
            &l as *const _ as u64,
            1,
            &r as *const _ as u64,
            1,
        )
    };
    if n == len as i64 {
        return Ok(());
    }
    if n == -(libc::ENOSYS as i64) || n == -(libc::EPERM as i64) {
        // SAFETY: the kernel refused the checked copy (see the crate doc); the caller's
        // pointer is used as it was given, as the program's own code would.
        unsafe {
            match dir {
                Dir::In => core::ptr::copy_nonoverlapping(remote as *const u8, local, len),
                Dir::Out => core::ptr::copy_nonoverlapping(local, remote as *mut u8, len),
            }
        }
        return Ok(());
    }
    Err(Fault)
}

/// Raw system calls: no libc, no `errno`.
mod raw {
    use core::arch::asm;

    /// System call `nr` with three arguments.
    ///
    /// # Safety
    /// The arguments must be what the call requires.
    #[inline(always)]
    pub(super) unsafe fn syscall(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
        // SAFETY: five-argument form with the last two zero.
        unsafe { syscall5(nr, a, b, c, 0, 0) }
    }

    /// System call `nr` with five arguments (the sixth is 0).
    ///
    /// # Safety
    /// The arguments must be what the call requires.
    #[inline(always)]
    pub(super) unsafe fn syscall5(nr: libc::c_long, a: u64, b: u64, c: u64, d: u64, e: u64) -> i64 {
        let ret: i64;
        // SAFETY: the caller's contract; `syscall` clobbers rcx and r11 only.
        unsafe {
            asm!("syscall",
                inlateout("rax") nr => ret,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") 0u64,
                lateout("rcx") _, lateout("r11") _,
                options(nostack));
        }
        ret
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// A mapping of two pages, the second `PROT_NONE`; unmapped on drop.
    struct Pages(*mut u8);

    impl Pages {
        fn new() -> Pages {
            // SAFETY: a fresh anonymous mapping of ours.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    2 * PAGE as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            // SAFETY: the second page of our mapping.
            let r = unsafe {
                libc::mprotect(
                    p.cast::<u8>().add(PAGE as usize).cast(),
                    PAGE as usize,
                    libc::PROT_NONE,
                )
            };
            assert_eq!(r, 0);
            Pages(p.cast())
        }

        fn at(&self, off: u64) -> UserAddr {
            UserAddr::new(self.0 as u64 + off)
        }
    }

    impl Drop for Pages {
        fn drop(&mut self) {
            // SAFETY: our own mapping.
            unsafe { libc::munmap(self.0.cast(), 2 * PAGE as usize) };
        }
    }

    #[test]
    fn copies_in_and_out() {
        check_copies();
    }

    fn check_copies() {
        let p = Pages::new();
        p.at(8).write(&0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(p.at(8).read::<u64>(), Ok(0x1122_3344_5566_7788));
        assert_eq!(p.at(12).read::<u32>(), Ok(0x1122_3344));
        p.at(100).write_bytes(b"/etc/resolv.conf\0").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(p.at(100).read_cstr(&mut buf), Ok(&b"/etc/resolv.conf"[..]));
        let mut small = [0u8; 4];
        assert_eq!(p.at(100).read_cstr(&mut small), Err(StrError::TooLong));
        assert_eq!(
            p.at(100).read_cstr_prefix(&mut small),
            Ok((&b"/etc"[..], false))
        );
    }

    #[test]
    fn bad_addresses_are_efault() {
        check_bad_addresses();
    }

    fn check_bad_addresses() {
        let p = Pages::new();
        assert_eq!(UserAddr::new(0).read::<u64>(), Err(Fault));
        assert_eq!(UserAddr::new(1).read::<u8>(), Err(Fault));
        // The PROT_NONE page, and a read that runs into it.
        assert_eq!(p.at(PAGE).read::<u8>(), Err(Fault));
        assert_eq!(p.at(PAGE - 4).read::<u64>(), Err(Fault));
        assert_eq!(p.at(PAGE).write(&1u32), Err(Fault));
        // A string whose NUL would be on the PROT_NONE page.
        p.at(PAGE - 3).write_bytes(b"abc").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(p.at(PAGE - 3).read_cstr(&mut buf), Err(StrError::Fault));
        // A string that ends right before it is read whole.
        p.at(PAGE - 3).write_bytes(b"ab\0").unwrap();
        assert_eq!(p.at(PAGE - 3).read_cstr(&mut buf), Ok(&b"ab"[..]));
        // Read-only memory cannot be written.
        let ro: &'static u64 = &7;
        assert_eq!(
            UserAddr::new(ro as *const u64 as u64).write(&1u64),
            Err(Fault)
        );
        assert_eq!(Fault.neg_errno(), -14);
        // A signal mask: the kernel's 8 bytes.
        let bits = 1u64 << (libc::SIGUSR1 - 1);
        let m = UserAddr::new(&bits as *const u64 as u64)
            .read_sigmask()
            .unwrap();
        // SAFETY: sigismember on our own set.
        assert_eq!(unsafe { libc::sigismember(&m, libc::SIGUSR1) }, 1);
        assert!(UserAddr::new(8).read_sigmask().is_err());
    }

    /// A SIGSEGV handler as the contract of [`copy::enable`] asks (the trampoline's
    /// does the same first): a fault in a copy routine resumes at its recovery label.
    extern "C" fn on_segv(_sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t and ucontext_t.
        unsafe {
            let rip =
                &mut (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RIP as usize];
            if (*info).si_code > 0 {
                if let Some(to) = copy::fault_fixup(*rip as u64) {
                    *rip = to as i64;
                    return;
                }
            }
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
    }

    fn sigaction(sig: i32, handler: usize, flags: i32) {
        // SAFETY: an all-zero sigaction is valid; installing a handler of ours.
        unsafe {
            let mut act: libc::sigaction = core::mem::zeroed();
            act.sa_sigaction = handler;
            act.sa_flags = flags;
            assert_eq!(libc::sigaction(sig, &act, core::ptr::null_mut()), 0);
        }
    }

    /// Blocks (`how` = `SIG_BLOCK`) or unblocks SIGSEGV in this thread.
    fn segv_mask(how: i32) {
        // SAFETY: changing this thread's mask with a set of ours.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGSEGV);
            assert_eq!(libc::pthread_sigmask(how, &set, core::ptr::null_mut()), 0);
        }
    }

    static IN_HANDLER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

    /// A signal handler that makes a faulting copy: nested in a signal frame.
    extern "C" fn on_usr1(_sig: i32) {
        let mut b = [0u8; 8];
        let bad = UserAddr::new(8192).read_bytes(&mut b) == Err(Fault);
        let good = UserAddr::new(&IN_HANDLER as *const _ as u64).read::<u32>() == Ok(0);
        if bad && good {
            IN_HANDLER.store(1, core::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn in_process_copies() {
        sigaction(
            libc::SIGSEGV,
            on_segv as *const () as usize,
            libc::SA_SIGINFO | libc::SA_NODEFER,
        );
        // SAFETY: on_segv is installed for the rest of the test binary's life.
        unsafe { copy::enable() };
        assert!(copy::enabled() && copy::usable());
        check_copies();
        check_bad_addresses();
        // Strings: the longest read, and one that runs to the end of the buffer.
        let s = b"/a/b/c\0";
        let mut buf = [0u8; 7];
        let at = UserAddr::new(s.as_ptr() as u64);
        assert_eq!(at.read_cstr_prefix(&mut buf), Ok((&b"/a/b/c"[..], true)));
        let mut small = [0u8; 6];
        assert_eq!(at.read_cstr_prefix(&mut small), Ok((&b"/a/b/c"[..], false)));
        assert_eq!(
            UserAddr::new(u64::MAX - 2).read_cstr(&mut buf),
            Err(StrError::Fault)
        );
        // Nested: a copy that faults inside a signal handler.
        sigaction(libc::SIGUSR1, on_usr1 as *const () as usize, 0);
        // SAFETY: raising a signal we handle.
        unsafe { libc::raise(libc::SIGUSR1) };
        assert_eq!(IN_HANDLER.load(core::sync::atomic::Ordering::SeqCst), 1);
        // SIGSEGV blocked: the copies go through the kernel, with the same answers.
        segv_mask(libc::SIG_BLOCK);
        assert!(!copy::usable());
        check_copies();
        check_bad_addresses();
        segv_mask(libc::SIG_UNBLOCK);
        assert!(copy::usable());
        assert_eq!(copy::fault_fixup(0), None);
    }
}
