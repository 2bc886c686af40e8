//! The window: the memory shared by the kernel process and every process of the tree,
//! mapped at the same address in each, so that a pointer into it means the same bytes
//! on both sides (LKL copies from and to it with `memcpy`).
//!
//! Layout: a [`Header`] page, then [`SLOTS`] slots of [`SLOT_SIZE`] bytes, each a
//! [`Ctl`] block (the call channel of one program thread) followed by a data area that
//! the caller may use for arguments LKL reads or writes. The memory file is sparse:
//! only touched pages cost memory.

use core::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

use crate::Error;

/// Number of slots: the most program threads that may call LKL at once in the tree.
pub const SLOTS: usize = 1024;
/// Bytes per slot, its [`Ctl`] included.
pub const SLOT_SIZE: usize = 512 << 10;
/// Bytes before the first slot.
pub const HEADER_SIZE: usize = 4096;
/// Offset of a slot's data area within the slot.
pub const DATA_OFFSET: usize = 512;
/// Bytes of a slot's data area.
pub const DATA_SIZE: usize = SLOT_SIZE - DATA_OFFSET;
/// The window's size.
pub const WINDOW_SIZE: usize = HEADER_SIZE + SLOTS * SLOT_SIZE;
/// Where the first process asks for the window, so that exec'd images find it free:
/// below where Linux puts PIE programs (from `0x555555554000` up) and their heaps, far
/// from its mmap area, and inside the application memory of the sanitizers' layouts
/// (AddressSanitizer's high memory, ThreadSanitizer's PIE range
/// `0x550000000000..0x568000000000`), which refuse mappings elsewhere.
pub const PREFERRED_ADDR: usize = 0x5500_0000_0000;

const MAGIC: u64 = u64::from_le_bytes(*b"LKLTREE1");

/// The window's first page.
#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    /// Set when the kernel process ends: calls fail at once.
    pub halted: AtomicU32,
    /// Bumped by each slot claim; the kernel process's slot thread sleeps on it.
    pub doorbell: AtomicU32,
    /// One more than the highest slot ever claimed: the kernel process looks at no
    /// slot above it, so the untouched slots' pages are never faulted in (each costs a
    /// page of the memory file).
    pub used: AtomicU32,
}

/// Offset in the header page of the file-system view ([`crate::fsview`]), written by
/// the kernel process before the program starts and read-only after.
const VIEW_OFFSET: usize = 1024;

/// A slot's state ([`Ctl::state`]).
pub mod state {
    /// Free for a claim.
    pub const FREE: u32 = 0;
    /// Claimed by a thread; the kernel process has not attached a thread to it yet.
    pub const CLAIMED: u32 = 1;
    /// A kernel-process thread serves it.
    pub const SERVED: u32 = 2;
    /// Being claimed: the claiming thread fills in who it is.
    pub const FILLING: u32 = 3;
}

/// What a posted request asks for ([`Ctl::op`]); the kernel process's answers are in
/// `crate::server`.
pub mod op {
    /// LKL system call `nr` with `args`.
    pub const CALL: u32 = 0;
    /// Before a fork: a new LKL process, a copy of the caller's; returns a ticket.
    pub const FORK: u32 = 1;
    /// After a fork: ticket `args[0]` is process `args[1]` (the child's pid), or the
    /// fork failed (`args[1]` = 0).
    pub const BIND: u32 = 2;
    /// Before an exec in a vfork child (pid `args[0]`): its own LKL process from now
    /// on, a copy of the caller's.
    pub const SPAWN: u32 = 3;
    /// Before an exec of process `args[0]`: keep its fd table, `args[1]` pairs of
    /// `i32` (program fd, LKL fd) in the data area, until the new image asks.
    pub const EXEC: u32 = 4;
    /// The exec of process `args[0]` failed: forget what [`EXEC`] kept.
    pub const EXEC_FAILED: u32 = 5;
    /// A new image starts: close the close-on-exec fds and those not in the table,
    /// retire the old image's threads, and give back the fd table (pairs in the data
    /// area; returns how many).
    pub const EXEC_DONE: u32 = 6;
    /// The process ends (`exit_group`): returns 1 when it was the last one; the
    /// kernel process then exits, and the caller waits for that (its devices are
    /// released by then) with [`crate::client::wait_server_gone`].
    pub const EXIT: u32 = 7;
    /// The caller is done with this slot: its thread leaves after answering.
    pub const LEAVE: u32 = 8;
}

/// One slot's channel. Words written by the caller and by the server are on separate
/// cache lines.
#[repr(C, align(64))]
pub struct Ctl {
    /// [`state`].
    pub state: AtomicU32,
    /// The claiming process's pid.
    pub pid: AtomicI32,
    /// A fork ticket to bind the claiming process with, or 0.
    pub ticket: AtomicU64,
    /// The claiming process's parent, for a process the kernel process does not know.
    pub ppid: AtomicI32,
    /// Set by the kernel process to make the serving thread leave.
    pub retire: AtomicU32,
    /// The serving thread's LKL thread id (set once it has joined).
    pub tid: AtomicI32,
    /// The request (`seq`) the caller wants interrupted: a signal came while it
    /// waited ([`crate::client::call`]); 0 when none.
    pub interrupt: AtomicU32,
    _pad0: [u8; 32],
    /// Bumped by the caller to post a request.
    pub seq: AtomicU32,
    /// 1 while the serving thread sleeps on `seq`.
    pub srv_wait: AtomicU32,
    /// [`op`].
    pub op: AtomicU32,
    _pad1: u32,
    /// System call number (LKL's) or the operation's first word.
    pub nr: AtomicI64,
    /// Arguments.
    pub args: [AtomicI64; 6],
    /// Set to the answered `seq` by the server.
    pub done: AtomicU32,
    /// 1 while the caller sleeps on `done`.
    pub cli_wait: AtomicU32,
    /// The answer.
    pub ret: AtomicI64,
    /// The CPU the caller runs on while it waits for an answer (with `futex::ASLEEP`
    /// while it sleeps): the serving thread does not spin for the next request on that CPU.
    pub cli_cpu: AtomicU32,
    /// The CPU the serving thread runs on while it serves or waits for a request
    /// (with `futex::ASLEEP` while it sleeps): the caller does not spin for its answer on
    /// that CPU.
    pub srv_cpu: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<Ctl>() <= DATA_OFFSET);
const _: () = assert!(core::mem::size_of::<Header>() <= VIEW_OFFSET);
const _: () = assert!(VIEW_OFFSET + crate::fsview::VIEW_BYTES <= HEADER_SIZE);

/// A mapped window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    base: usize,
}

impl Window {
    /// Creates the memory file and maps it, at [`PREFERRED_ADDR`] if free. Returns the
    /// window and the file's fd (close-on-exec).
    pub fn create() -> Result<(Window, i32), Error> {
        // SAFETY: memfd_create of a constant name.
        let fd = unsafe { libc::memfd_create(c"lkl-tree-window".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::os("memfd_create for the window"));
        }
        // SAFETY: sizing our own memory file.
        if unsafe { libc::ftruncate(fd, WINDOW_SIZE as libc::off_t) } != 0 {
            return Err(Error::os("sizing the window"));
        }
        let base = match map(fd, PREFERRED_ADDR, true) {
            Ok(b) => b,
            Err(_) => map(fd, 0, false)?,
        };
        let w = Window { base };
        w.header().magic.store(MAGIC, Ordering::Release);
        Ok((w, fd))
    }

    /// Maps the kernel process's window (`/proc/PID/fd/FD`) at its address.
    pub fn attach(spec: &crate::Spec) -> Result<Window, Error> {
        let path = format!("/proc/{}/fd/{}\0", spec.pid, spec.fd);
        // SAFETY: open of a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::ENOENT) {
                Error::Gone(spec.pid)
            } else {
                Error::Os {
                    what: "opening the kernel process's window",
                    err,
                }
            });
        }
        let r = map(fd, spec.addr, true);
        // SAFETY: closing our own fd (the mapping stays).
        unsafe { libc::close(fd) };
        let w = Window { base: r? };
        if w.header().magic.load(Ordering::Acquire) != MAGIC {
            return Err(Error::Spec(spec.to_string()));
        }
        Ok(w)
    }

    /// A window already mapped at `base` (by [`Window::create`] or [`Window::attach`]).
    ///
    /// # Safety
    /// `base` must be the address of a mapped window.
    pub const unsafe fn at(base: usize) -> Window {
        Window { base }
    }

    /// The window's address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The header.
    pub fn header(&self) -> &'static Header {
        // SAFETY: the window stays mapped for the process's life; Header is atomics.
        unsafe { &*(self.base as *const Header) }
    }

    /// Publishes the tree's file-system view (the kernel process, before any process
    /// of the tree reads it). False when it does not fit.
    pub fn set_fs_view(&self, view: &crate::fsview::FsView) -> bool {
        let Some(bytes) = view.encode() else {
            return false;
        };
        // SAFETY: the view area is inside the header page, which only this call writes,
        // before the program runs.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (self.base + VIEW_OFFSET) as *mut u8,
                bytes.len(),
            )
        };
        true
    }

    /// The tree's file-system view (the empty view if malformed).
    pub fn fs_view(&self) -> crate::fsview::FsView {
        // SAFETY: the view area is inside the mapped header page, written once before
        // the program started.
        let area = unsafe {
            core::slice::from_raw_parts(
                (self.base + VIEW_OFFSET) as *const u8,
                crate::fsview::VIEW_BYTES,
            )
        };
        crate::fsview::FsView::decode(area).unwrap_or_default()
    }

    /// True when the view gives no path to LKL; reads the header without allocating
    /// (for the program's own threads).
    pub fn fs_view_is_empty(&self) -> bool {
        // SAFETY: the view area's first bytes, inside the mapped header page, written
        // once before the program started.
        let head = unsafe { core::ptr::read((self.base + VIEW_OFFSET) as *const [u8; 5]) };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        len == 0 || (len == 1 && head[4] == b'-')
    }

    /// The slots claimed so far: `0..used_slots()` holds every slot that is not free.
    pub fn used_slots(&self) -> usize {
        (self.header().used.load(Ordering::Acquire) as usize).min(SLOTS)
    }

    /// Slot `i`'s channel.
    pub fn ctl(&self, i: usize) -> &'static Ctl {
        assert!(i < SLOTS);
        // SAFETY: in the window, aligned (slots are 128 KiB apart after a page); Ctl
        // is atomics.
        unsafe { &*((self.base + HEADER_SIZE + i * SLOT_SIZE) as *const Ctl) }
    }

    /// Address of slot `i`'s data area ([`DATA_SIZE`] bytes).
    pub fn data(&self, i: usize) -> usize {
        assert!(i < SLOTS);
        self.base + HEADER_SIZE + i * SLOT_SIZE + DATA_OFFSET
    }

    /// Slot `i`'s data area as the fd table an exec hands on: pairs of (program fd,
    /// LKL fd) ([`op::EXEC`], [`op::EXEC_DONE`]).
    ///
    /// # Safety
    /// Only the side whose turn it is may use it: the caller between its requests,
    /// the kernel process while it answers one.
    pub unsafe fn fd_pairs(&self, i: usize) -> &'static mut [[i32; 2]] {
        // SAFETY: the data area is DATA_SIZE bytes, 4-aligned, in the window, and
        // used by one side at a time (the caller's contract).
        unsafe { core::slice::from_raw_parts_mut(self.data(i) as *mut [i32; 2], DATA_SIZE / 8) }
    }
}

/// Maps `fd`'s window at `addr` (exactly, when `fixed`; where the kernel likes else).
fn map(fd: i32, addr: usize, fixed: bool) -> Result<usize, Error> {
    let flags = libc::MAP_SHARED | if fixed { libc::MAP_FIXED_NOREPLACE } else { 0 };
    // SAFETY: a new shared mapping of our file; MAP_FIXED_NOREPLACE never replaces one.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            WINDOW_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::os("mapping the window"));
    }
    if fixed && p as usize != addr {
        // An old kernel that ignores MAP_FIXED_NOREPLACE: not where we need it.
        // SAFETY: unmapping what we just mapped.
        unsafe { libc::munmap(p, WINDOW_SIZE) };
        return Err(Error::Os {
            what: "mapping the window at its address",
            err: std::io::Error::from_raw_os_error(libc::EEXIST),
        });
    }
    Ok(p as usize)
}
