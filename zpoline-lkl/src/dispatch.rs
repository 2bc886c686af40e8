//! The handlers: each call the routing table (`table.rs`) sends to the backend is
//! served here, by the [`Handler`] its entry names.
//!
//! Arguments the backend reads or writes itself (paths, `open_how`, socket addresses,
//! `struct stat`, `statx`, `sendfile`'s offset) go through `usermem`, so a bad pointer
//! gets `EFAULT` as from the host kernel. Data buffers, iovecs and message headers are
//! passed to LKL as they are (see `docs/zpoline.md`, Limits).

use core::sync::atomic::{AtomicI32, Ordering};

use trampoline::Target;
use usermem::UserAddr;

use crate::helpers::{lkl_stat, sys};
use crate::linger::{close_lingering, drain_at_exit};
use crate::paths::{self, PathBuf, Place};
use crate::table::{self, Handler};
use crate::{
    blocking, boot, epoll, fds, kernel, mmap, passthrough, pathcall, signals, wait, world, Lkl,
};

use libc::{EAFNOSUPPORT, EAGAIN, EBADF, EINTR, EINVAL, ENETDOWN, ENOSYS};
const AT_FDCWD: i64 = libc::AT_FDCWD as i64;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// LKL's number of a call the backend makes itself.
macro_rules! nr {
    ($name:ident) => {
        lkl_sys::$name as i64
    };
}
pub(crate) use nr;

/// Runs LKL system call `nr` (LKL's number) on a borrowed thread block.
pub(crate) fn lkl_call(nr: i64, args: [i64; 6]) -> i64 {
    if kernel::forked_without_lkl() {
        // A private LKL runs in the parent only (the dispatch answers a fork child
        // before this).
        return -i64::from(EBADF);
    }
    kernel::stop_if_ending();
    loop {
        match world::enter() {
            Ok(guard) => {
                if !boot::ensure_running() {
                    return -i64::from(ENETDOWN);
                }
                // The program's own arguments for this call, with its fds translated
                // and the arguments we read ourselves copied into our memory; LKL
                // reads the program's memory as the host kernel would (a bad data
                // pointer faults in a private kernel: see the module doc).
                let r = kernel::call(nr, args);
                // A call of the shared kernel that a signal interrupted.
                let sigs = if r == -i64::from(EINTR) && kernel::shared() {
                    world::take_signals()
                } else {
                    0
                };
                // The deferred handlers run here.
                drop(guard);
                if sigs != 0 && sigs & 2 == 0 && restartable(nr) {
                    // Every handler had SA_RESTART: the call starts again, as the
                    // kernel restarts it.
                    continue;
                }
                return r;
            }
            Err(world::EnterError::Nested) => return -i64::from(EINTR),
            Err(world::EnterError::NoShadow) => return -i64::from(EAGAIN),
        }
    }
}

/// True for LKL call `nr` that the kernel restarts after a handler with `SA_RESTART`
/// (signal(7): reads, writes, `ioctl`, and the socket calls without a timeout); `poll`,
/// `select` and `epoll_wait` fail with `EINTR` whatever the handler.
fn restartable(nr: i64) -> bool {
    use lkl_sys as s;
    matches!(
        nr as u32,
        s::__lkl__NR_read
            | s::__lkl__NR_readv
            | s::__lkl__NR_write
            | s::__lkl__NR_writev
            | s::__lkl__NR_ioctl
            | s::__lkl__NR_recvfrom
            | s::__lkl__NR_recvmsg
            | s::__lkl__NR_recvmmsg
            | s::__lkl__NR_sendto
            | s::__lkl__NR_sendmsg
            | s::__lkl__NR_sendmmsg
            | s::__lkl__NR_accept
            | s::__lkl__NR_accept4
    )
}

/// The pid of this process image (set at start; a `fork` child's differs, and so does
/// a vfork child's, which shares our memory).
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

/// Records the pid of this process image (at start, and in a fork child).
pub(crate) fn set_owner_pid() {
    // SAFETY: getpid has no arguments.
    let pid = unsafe { sys(libc::SYS_getpid, [0; 6]) } as i32;
    OWNER_PID.store(pid, Ordering::Relaxed);
}

/// The pid of this process image (the parent's, in a vfork child).
pub(crate) fn owner_pid() -> i32 {
    OWNER_PID.load(Ordering::Relaxed)
}

/// True in a vfork (or `CLONE_VM` without `CLONE_THREAD`) child: our memory, another
/// process.
pub(crate) fn vfork_child() -> bool {
    // SAFETY: getpid has no arguments.
    let pid = unsafe { sys(libc::SYS_getpid, [0; 6]) } as i32;
    pid != OWNER_PID.load(Ordering::Relaxed)
}

pub(crate) fn host(nr: u64, args: &[u64; 6]) -> (i64, Target) {
    // SAFETY: the program's own call, passed through unchanged.
    (unsafe { trampoline::syscall6(nr, *args) }, Target::Host)
}

pub(crate) fn on_lkl(r: i64) -> (i64, Target) {
    (
        r,
        if r == -i64::from(ENOSYS) {
            Target::LklMissing
        } else {
            Target::Lkl
        },
    )
}

fn refused(neg_errno: i64) -> (i64, Target) {
    (neg_errno, Target::Interposer)
}

pub(crate) fn lkl_close(l: i64) {
    lkl_call(nr!(__lkl__NR_close), [l, 0, 0, 0, 0, 0]);
}

/// The longest view name or prefix is shorter than this.
const VIEW_HEAD: usize = 32;

/// True when the program's path at `p` is empty: "" (or NULL, which the kernel accepts
/// with `AT_EMPTY_PATH`).
fn empty_path(p: u64) -> Result<bool, i64> {
    if p == 0 {
        return Ok(true);
    }
    UserAddr::new(p)
        .read::<u8>()
        .map(|b| b == 0)
        .map_err(|f| f.neg_errno())
}

/// LKL system call `nr` with a program's `struct sockaddr` (`a[1]`, length `a[2]`)
/// copied into our memory, as the kernel's `move_addr_to_kernel` does.
fn with_sockaddr(a: &[u64; 6], f: impl FnOnce(u64, u64) -> i64) -> i64 {
    let len = a[2] as i32;
    let mut ss = [0u8; core::mem::size_of::<libc::sockaddr_storage>()];
    if len < 0 || len as usize > ss.len() {
        return -i64::from(EINVAL);
    }
    if len > 0 {
        if let Err(f) = UserAddr::new(a[1]).read_bytes(&mut ss[..len as usize]) {
            return f.neg_errno();
        }
    }
    f(ss.as_ptr() as u64, len as u64)
}

/// `dup2`/`dup3` in a vfork child (`posix_spawn`'s file actions, `subprocess`'s
/// `stdin=`): the host's call is the child's own; an LKL old fd is also duplicated in
/// an LKL process of the child's own (`kernel::own_process`; the fd table in memory is
/// the parent's), and the exec hands the new fd on (`kernel::vfork_dup`).
fn vfork_dup2(nr: u64, a: &[u64; 6]) -> (i64, Target) {
    let Some(l) = fds::lkl_of(a[0]).filter(|_| kernel::shared()) else {
        return host(nr, a);
    };
    if a[0] as i32 == a[1] as i32 {
        return host(nr, a);
    }
    let cloexec = nr == libc::SYS_dup3 as u64 && a[2] & libc::O_CLOEXEC as u64 != 0;
    let (l2, _) = wait::in_world(|| match kernel::own_process() {
        Ok(()) => {
            let n = kernel::call(nr!(__lkl__NR_dup), [l, 0, 0, 0, 0, 0]);
            if n >= 0 && cloexec {
                let setfd = nr!(__lkl__NR3264_fcntl);
                kernel::call(setfd, [n, i64::from(libc::F_SETFD), 1, 0, 0, 0]);
            }
            n
        }
        Err(e) => e,
    });
    if l2 < 0 {
        return on_lkl(l2);
    }
    let (r, _) = host(nr, a);
    if r < 0 || !kernel::vfork_dup(a[1] as i32 as i64, l2) {
        let _ = wait::in_world(|| kernel::call(nr!(__lkl__NR_close), [l2, 0, 0, 0, 0, 0]));
        return (
            if r < 0 { r } else { -i64::from(libc::EMFILE) },
            Target::Lkl,
        );
    }
    (r, Target::Lkl)
}

/// LKL does not signal the program: a write to a broken connection that LKL answers
/// with `EPIPE` raises `SIGPIPE` here, as the host kernel would (not with
/// `MSG_NOSIGNAL`).
#[cold]
fn sigpipe(nr: u64, a: &[u64; 6]) {
    let flags = match nr as libc::c_long {
        libc::SYS_sendto | libc::SYS_sendmmsg => a[3],
        libc::SYS_sendmsg => a[2],
        libc::SYS_write
        | libc::SYS_writev
        | libc::SYS_pwrite64
        | libc::SYS_pwritev
        | libc::SYS_pwritev2 => 0,
        _ => return,
    };
    if flags & libc::MSG_NOSIGNAL as u64 != 0 {
        return;
    }
    // SAFETY: getpid/gettid have no arguments; tgkill of our own thread.
    unsafe {
        let (pid, tid) = (sys(libc::SYS_getpid, [0; 6]), sys(libc::SYS_gettid, [0; 6]));
        sys(
            libc::SYS_tgkill,
            [pid as u64, tid as u64, libc::SIGPIPE as u64, 0, 0, 0],
        );
    }
}

/// `sendfile` from host fd `input` to LKL fd `out`: the host file is read in chunks
/// and written to LKL (LKL cannot read the host's files). Stops at a short write.
/// `offset`: the program's `loff_t` (0: the file's offset), read first and written
/// back last, as the kernel does.
fn sendfile_to_lkl(out: i64, input: u64, offset: u64, count: usize) -> i64 {
    let at = UserAddr::new(offset);
    let mut off = if offset != 0 {
        match at.read::<i64>() {
            Ok(o) => Some(o),
            Err(f) => return f.neg_errno(),
        }
    } else {
        None
    };
    // The copy itself runs in our world, where the buffer may be allocated.
    let (r, _) = wait::in_world(|| {
        let mut buf = vec![0u8; count.clamp(1, 1 << 16)];
        let mut done = 0usize;
        while done < count {
            let want = (count - done).min(buf.len());
            let dst = buf.as_mut_ptr() as u64;
            // SAFETY: pread/read into our buffer.
            let got = unsafe {
                match off {
                    Some(o) => sys(libc::SYS_pread64, [input, dst, want as u64, o as u64, 0, 0]),
                    None => sys(libc::SYS_read, [input, dst, want as u64, 0, 0, 0]),
                }
            };
            if got <= 0 {
                return if done > 0 { done as i64 } else { got };
            }
            let w = kernel::call(
                nr!(__lkl__NR_write),
                [out, buf.as_ptr() as i64, got, 0, 0, 0],
            );
            if w < 0 {
                if off.is_none() {
                    // SAFETY: lseek back over what was read but not sent.
                    unsafe {
                        sys(
                            libc::SYS_lseek,
                            [input, (-got) as u64, libc::SEEK_CUR as u64, 0, 0, 0],
                        )
                    };
                }
                return if done > 0 { done as i64 } else { w };
            }
            done += w as usize;
            match off.as_mut() {
                Some(o) => *o += w,
                None if w < got => {
                    // Give back what LKL did not take.
                    // SAFETY: lseek(input, -(got - w), SEEK_CUR) on the program's file.
                    unsafe {
                        sys(
                            libc::SYS_lseek,
                            [input, (w - got) as u64, libc::SEEK_CUR as u64, 0, 0, 0],
                        )
                    };
                }
                None => {}
            }
            if w < got {
                break;
            }
        }
        done as i64
    });
    match off {
        Some(o) if r >= 0 => at.write(&o).map_or_else(|f| f.neg_errno(), |()| r),
        _ => r,
    }
}

impl Lkl {
    /// True when the absolute path `p` names one of LKL's files we show the program;
    /// `whole`: `p` is the whole path, not its first bytes.
    pub(crate) fn is_view(&self, p: &[u8], whole: bool) -> bool {
        (self.resolv && whole && p == b"/etc/resolv.conf")
            || (self.proc_net
                && (p.starts_with(b"/proc/net")
                    || p.starts_with(b"/proc/self/net")
                    || p.starts_with(b"/proc/sys/net")))
            || (self.sys_net && p.starts_with(b"/sys/class/net"))
    }

    /// Where the path argument `path` (relative to `dirfd`) goes: a path of LKL's file
    /// systems or of LKL's views is LKL's, left in `buf` as LKL is to get it (a view's
    /// with `AT_FDCWD`), as is a host path made absolute (`Place::HostAbs`).
    /// `-EFAULT`/`-ENAMETOOLONG` when the path cannot be read.
    pub(crate) fn path_arg(&self, dirfd: u64, path: u64, buf: &mut PathBuf) -> Result<Place, i64> {
        if paths::active() {
            let place = paths::place(dirfd, path, buf)?;
            if place != Place::Host {
                return Ok(place);
            }
        }
        let mut head = [0u8; VIEW_HEAD];
        let (p, whole) = UserAddr::new(path)
            .read_cstr_prefix(&mut head)
            .map_err(|f| f.neg_errno())?;
        let anchored = dirfd as i32 == AT_FDCWD as i32 || p.first() == Some(&b'/');
        if anchored && self.is_view(p, whole) {
            buf.read(path)?;
            Ok(Place::Lkl(AT_FDCWD))
        } else {
            Ok(Place::Host)
        }
    }

    /// Serves x86-64 call `nr` whose path is argument `path` (relative to the directory
    /// fd in argument `dirfd`, or the cwd): `lkl(dirfd, path)` for a path of LKL's
    /// files or views, the host's call otherwise (see `pathcall::placed`); `follow`:
    /// the call follows a link in the last component.
    fn by_path(
        &self,
        nr: u64,
        a: &[u64; 6],
        dirfd: Option<usize>,
        path: usize,
        follow: bool,
        lkl: impl Fn(i64, i64) -> i64,
    ) -> (i64, Target) {
        let mut buf = PathBuf::new();
        match self.path_arg(dirfd.map_or(AT_FDCWD as u64, |k| a[k]), a[path], &mut buf) {
            Err(e) => refused(e),
            Ok(first) => pathcall::placed(nr, a, (dirfd, path, follow), first, &mut buf, lkl),
        }
    }

    /// Serves x86-64 call `nr` with arguments `a`; says which kernel did.
    pub(crate) fn dispatch(&self, nr: u64, a: &[u64; 6]) -> (i64, Target) {
        let Some(entry) = table::lookup(nr) else {
            return host(nr, a);
        };
        let i = |k: usize| a[k] as i64;
        let forked = kernel::forked_without_lkl();
        match entry.handler {
            Handler::Host => host(nr, a),
            // A vfork child (posix_spawn, subprocess) shares our memory, fd table and
            // LKL, but not our host fds: its closes and dup2s are its own. They must
            // not close LKL fds, nor change the table, that the parent still uses.
            Handler::Dup2 if !forked && vfork_child() => vfork_dup2(nr, a),
            Handler::Close | Handler::CloseRange if !forked && vfork_child() => host(nr, a),
            Handler::Socket => {
                let lkl_family = matches!(
                    a[0] as i32,
                    libc::AF_INET | libc::AF_INET6 | libc::AF_NETLINK | libc::AF_PACKET
                );
                if !lkl_family {
                    return host(nr, a);
                }
                if forked {
                    return refused(-i64::from(EAFNOSUPPORT));
                }
                let l = lkl_call(nr!(__lkl__NR_socket), [i(0), i(1), i(2), 0, 0, 0]);
                if l < 0 {
                    return on_lkl(l);
                }
                (fds::adopt(l, 0, lkl_close), Target::Lkl)
            }
            Handler::Sigaction => (signals::sigaction(a), Target::Host),
            Handler::Exit => {
                // A fork child never touches the shadows (their lock may have been
                // held by another thread of the parent at the fork).
                if !forked {
                    world::release_current();
                }
                host(nr, a)
            }
            Handler::ExitGroup => {
                if !forked && boot::running() && !vfork_child() {
                    if !kernel::shared() {
                        drain_at_exit();
                    } else if kernel::exiting() {
                        // Only this thread calls LKL from here on (a second
                        // `exit_group` skips all this).
                        drain_at_exit();
                        kernel::leave();
                    }
                }
                host(nr, a)
            }
            Handler::CloseRange => {
                let hi = if a[1] as u32 == u32::MAX {
                    u64::MAX
                } else {
                    a[1] & 0xffff_ffff
                };
                if a[2] & u64::from(libc::CLOSE_RANGE_CLOEXEC) == 0 {
                    // Not CLOSE_RANGE_CLOEXEC: the LKL fds go too.
                    for (h, l) in fds::in_range(a[0] & 0xffff_ffff, hi) {
                        if !forked {
                            lkl_close(l);
                        }
                        fds::set(h, None);
                    }
                }
                host(nr, a)
            }
            Handler::Dup2 => self.dup2(nr, a, forked),
            Handler::Wait => wait::dispatch(nr, a, forked),
            Handler::EpollCtl if !forked && (fds::lkl_of(a[2]).is_some() || epoll::muxed(a[0])) => {
                epoll::ctl(a)
            }
            Handler::EpollWait if !forked && epoll::muxed(a[0]) => epoll::wait(nr, a),
            Handler::Close if !forked && epoll::muxed(a[0]) => {
                epoll::closed(a[0]);
                host(nr, a)
            }
            Handler::Open => {
                let legacy = matches!(nr as libc::c_long, libc::SYS_open | libc::SYS_creat);
                if forked {
                    return host(nr, a);
                }
                let (flags, mode) = match nr as libc::c_long {
                    libc::SYS_open => (i(1), i(2)),
                    libc::SYS_creat => (
                        i64::from(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC),
                        i(1),
                    ),
                    libc::SYS_openat => (i(2), i(3)),
                    // struct open_how { u64 flags; u64 mode; u64 resolve; }
                    _ => match UserAddr::new(a[2]).read::<[u64; 2]>() {
                        Ok([f, m]) => (f as i64, m as i64),
                        Err(f) => return refused(f.neg_errno()),
                    },
                };
                let excl = libc::O_CREAT | libc::O_EXCL;
                let follow = flags & i64::from(libc::O_NOFOLLOW) == 0
                    && flags & i64::from(excl) != i64::from(excl);
                let arg = (!legacy).then_some(0);
                self.by_path(nr, a, arg, usize::from(!legacy), follow, |d, p| {
                    let l = lkl_call(nr!(__lkl__NR_openat), [d, p, flags, mode, 0, 0]);
                    if l < 0 {
                        return l;
                    }
                    let fd = fds::adopt(l, 0, lkl_close);
                    if fd >= 0 {
                        fds::set_file(fd);
                        passthrough::offer(fd, l, flags);
                    }
                    fd
                })
            }
            Handler::Stat if !forked => {
                let lstat = nr == libc::SYS_lstat as u64;
                let flags = if lstat {
                    i64::from(libc::AT_SYMLINK_NOFOLLOW)
                } else {
                    0
                };
                self.by_path(nr, a, None, 0, !lstat, |d, p| {
                    pathcall::stat_lkl(d, p, a[1], flags)
                })
            }
            Handler::Fstatat => {
                if let Some(l) = fds::lkl_of(a[0]) {
                    if a[3] & AT_EMPTY_PATH != 0 {
                        match empty_path(a[1]) {
                            Err(e) => return refused(e),
                            Ok(true) if forked => return refused(-i64::from(EBADF)),
                            Ok(true) => {
                                return on_lkl(lkl_stat(
                                    nr!(__lkl__NR3264_fstat),
                                    [l, i(2), 0, 0, 0, 0],
                                    1,
                                ))
                            }
                            Ok(false) => {}
                        }
                    }
                }
                if forked {
                    return host(nr, a);
                }
                let follow = a[3] & libc::AT_SYMLINK_NOFOLLOW as u64 == 0;
                self.by_path(nr, a, Some(0), 1, follow, |d, p| {
                    pathcall::stat_lkl(d, p, a[2], i(3))
                })
            }
            Handler::Statx => self.statx(a, forked),
            Handler::Access => {
                if forked {
                    return host(nr, a);
                }
                let legacy = nr == libc::SYS_access as u64;
                let mode = if legacy { i(1) } else { i(2) };
                // faccessat2's flags (faccessat has none).
                let flags = if nr == libc::SYS_faccessat2 as u64 {
                    i(3)
                } else {
                    0
                };
                let follow = flags & i64::from(libc::AT_SYMLINK_NOFOLLOW) == 0;
                let arg = (!legacy).then_some(0);
                self.by_path(nr, a, arg, usize::from(!legacy), follow, |d, p| {
                    lkl_call(nr!(__lkl__NR_faccessat2), [d, p, mode, flags, 0, 0])
                })
            }
            Handler::Path if forked => host(nr, a),
            Handler::Path => pathcall::dispatch(nr, a),
            Handler::Ident if forked => host(nr, a),
            Handler::Ident => pathcall::identity(nr, a),
            Handler::Fd
            | Handler::Recv
            | Handler::Accept
            | Handler::Connect
            | Handler::Bind
            | Handler::Close
            | Handler::Fstat
            | Handler::Dup
            | Handler::Fcntl
            | Handler::Sendfile
            | Handler::CopyFileRange
            | Handler::EpollWait => match fds::lkl_of(a[0]) {
                None => host(nr, a),
                // A volume's file read from the host (passthrough.rs).
                Some(_) if fds::passthrough(a[0]) && passthrough::to_host(nr, a) => host(nr, a),
                Some(l) => self.fd_call(entry.handler, nr, a, l, forked),
            },
            // mmap(addr, len, prot, flags, fd, off) of an LKL file: a copy (a passthrough
            // fd is the host file itself: the host maps it).
            Handler::Mmap => match fds::lkl_of(a[4]) {
                Some(l)
                    if !forked
                        && a[3] & libc::MAP_ANONYMOUS as u64 == 0
                        && !fds::passthrough(a[4]) =>
                {
                    mmap::map(a, l)
                }
                _ => host(nr, a),
            },
            Handler::Stat | Handler::EpollCtl => host(nr, a),
        }
    }

    /// `statx(dirfd, path, flags, mask, buf)`: an LKL fd with an empty path, or a view.
    /// LKL fills our buffer, which is copied out.
    fn statx(&self, a: &[u64; 6], forked: bool) -> (i64, Target) {
        let lkl = fds::lkl_of(a[0]);
        let empty = if a[2] & AT_EMPTY_PATH != 0 && lkl.is_some() {
            match empty_path(a[1]) {
                Ok(e) => e,
                Err(e) => return refused(e),
            }
        } else {
            false
        };
        let run = |fd: i64, path: i64| {
            let mut buf = [0u8; core::mem::size_of::<lkl_sys::lkl_statx>()];
            let r = lkl_call(
                nr!(__lkl__NR_statx),
                [
                    fd,
                    path,
                    a[2] as i64,
                    a[3] as i64,
                    buf.as_mut_ptr() as i64,
                    0,
                ],
            );
            if r == 0 {
                if let Err(f) = UserAddr::new(a[4]).write_bytes(&buf) {
                    return f.neg_errno();
                }
            }
            r
        };
        match lkl {
            Some(_) if forked && empty => refused(-i64::from(EBADF)),
            Some(l) if empty => on_lkl(run(l, c"".as_ptr() as i64)),
            _ if forked => host(libc::SYS_statx as u64, a),
            _ => {
                let follow = a[2] & libc::AT_SYMLINK_NOFOLLOW as u64 == 0;
                self.by_path(libc::SYS_statx as u64, a, Some(0), 1, follow, run)
            }
        }
    }

    /// A call whose first argument is LKL fd `l` (program fd `a[0]`).
    fn fd_call(&self, h: Handler, nr: u64, a: &[u64; 6], l: i64, forked: bool) -> (i64, Target) {
        let i = |k: usize| a[k] as i64;
        if forked {
            // LKL runs in the parent only: its fds are dead here (documented).
            if h == Handler::Close {
                fds::set(i(0), None);
                return host(nr, a);
            }
            return refused(-i64::from(EBADF));
        }
        match h {
            Handler::Close => {
                let r = close_lingering(i(0), l);
                fds::set(i(0), None);
                host(nr, a);
                on_lkl(r)
            }
            Handler::Fstat => on_lkl(lkl_stat(nr!(__lkl__NR3264_fstat), [l, i(1), 0, 0, 0, 0], 1)),
            Handler::Recv | Handler::Accept
                if signals::any_handler() && !blocking::dontwait(nr, a) =>
            {
                loop {
                    // Handlers of signals that came meanwhile have run when this returns.
                    match blocking::wait_readable(l) {
                        blocking::RESTART => continue,
                        0 => return self.fd_call_now(h, nr, a, l),
                        e => return (e, Target::Lkl),
                    }
                }
            }
            Handler::Connect => on_lkl(with_sockaddr(a, |addr, len| {
                if !signals::any_handler() {
                    return lkl_call(
                        nr!(__lkl__NR_connect),
                        [l, addr as i64, len as i64, 0, 0, 0],
                    );
                }
                let mut started = false;
                loop {
                    match blocking::connect(l, addr, len, started) {
                        blocking::RESTART => started = true,
                        r => return r,
                    }
                }
            })),
            _ => self.fd_call_now(h, nr, a, l),
        }
    }

    /// [`Lkl::fd_call`] once any wait is over.
    fn fd_call_now(&self, h: Handler, nr: u64, a: &[u64; 6], l: i64) -> (i64, Target) {
        let i = |k: usize| a[k] as i64;
        match h {
            Handler::Accept => {
                let flags = if nr == libc::SYS_accept as u64 {
                    0
                } else {
                    i(3)
                };
                let n = lkl_call(nr!(__lkl__NR_accept4), [l, i(1), i(2), flags, 0, 0]);
                if n < 0 {
                    return on_lkl(n);
                }
                (fds::adopt(n, 0, lkl_close), Target::Lkl)
            }
            Handler::Bind => on_lkl(with_sockaddr(a, |addr, len| {
                lkl_call(nr!(__lkl__NR_bind), [l, addr as i64, len as i64, 0, 0, 0])
            })),
            Handler::Dup => self.dup_lkl(a[0], l, 0),
            // From a passthrough fd, the host file is read (its offset is the host's).
            Handler::Sendfile => match fds::lkl_of(a[1]) {
                Some(lin) if !fds::passthrough(a[1]) => on_lkl(lkl_sendfile(l, lin, a[2], i(3))),
                _ => (sendfile_to_lkl(l, a[1], a[2], a[3] as usize), Target::Lkl),
            },
            Handler::CopyFileRange => match fds::lkl_of(a[2]) {
                Some(_) if fds::passthrough(a[0]) => refused(-i64::from(libc::EXDEV)),
                Some(lout) => on_lkl(lkl_call(
                    table::lkl_nr(nr).unwrap_or(-1),
                    [l, i(1), lout, i(3), i(4), i(5)],
                )),
                None => refused(-i64::from(libc::EXDEV)),
            },
            Handler::Fcntl
                if a[1] == libc::F_DUPFD as u64 || a[1] == libc::F_DUPFD_CLOEXEC as u64 =>
            {
                self.dup_lkl(a[0], l, i(2))
            }
            _ => match table::lkl_nr(nr) {
                None => (-i64::from(ENOSYS), Target::LklMissing),
                Some(n) => {
                    let r = lkl_call(n, [l, i(1), i(2), i(3), i(4), i(5)]);
                    if r == -i64::from(libc::EPIPE) {
                        sigpipe(nr, a);
                    }
                    on_lkl(r)
                }
            },
        }
    }

    /// `dup`/`F_DUPFD` of program fd `fd` (LKL fd `l`) to a program fd at or above
    /// `min`. A passthrough fd's host file is duplicated in place of a placeholder, so
    /// both share its offset.
    fn dup_lkl(&self, fd: u64, l: i64, min: i64) -> (i64, Target) {
        let n = lkl_call(nr!(__lkl__NR_dup), [l, 0, 0, 0, 0, 0]);
        if n < 0 {
            return on_lkl(n);
        }
        if !fds::passthrough(fd) {
            return (fds::adopt(n, min, lkl_close), Target::Lkl);
        }
        // SAFETY: F_DUPFD_CLOEXEC of the program's passthrough fd (a host file).
        let h = unsafe {
            sys(
                libc::SYS_fcntl,
                [fd, libc::F_DUPFD_CLOEXEC as u64, min.max(0) as u64, 0, 0, 0],
            )
        };
        if h < 0 || h >= fds::MAX_FDS as i64 {
            if h >= 0 {
                // SAFETY: closing the copy we just made.
                unsafe { sys(libc::SYS_close, [h as u64, 0, 0, 0, 0, 0]) };
            }
            lkl_close(n);
            return (
                if h < 0 { h } else { -i64::from(libc::EMFILE) },
                Target::Lkl,
            );
        }
        fds::set(h, Some(n));
        fds::set_passthrough(h);
        (h, Target::Lkl)
    }

    /// `dup2`/`dup3`, where either side may be LKL's.
    fn dup2(&self, nr: u64, a: &[u64; 6], forked: bool) -> (i64, Target) {
        let (old, new) = (a[0], a[1]);
        let (lo, ln) = (fds::lkl_of(old), fds::lkl_of(new));
        if lo.is_none() && ln.is_none() {
            return host(nr, a);
        }
        let dup3 = nr == libc::SYS_dup3 as u64;
        if old as i32 == new as i32 {
            return if dup3 {
                refused(-i64::from(EINVAL))
            } else {
                refused(new as i32 as i64)
            };
        }
        if forked && lo.is_some() {
            return refused(-i64::from(EBADF));
        }
        let fresh = match lo {
            Some(l) => {
                let n = lkl_call(nr!(__lkl__NR_dup), [l, 0, 0, 0, 0, 0]);
                if n < 0 {
                    return on_lkl(n);
                }
                Some(n)
            }
            None => None,
        };
        let flags = if fresh.is_some() {
            libc::O_CLOEXEC as u64
        } else if dup3 {
            a[2]
        } else {
            0
        };
        // SAFETY: dup3 of the old fd (or its placeholder, kept close-on-exec) onto the
        // program's new fd; old != new.
        let r = unsafe { sys(libc::SYS_dup3, [old, new, flags, 0, 0, 0]) };
        if r < 0 {
            if let Some(n) = fresh {
                lkl_close(n);
            }
            return (r, Target::Host);
        }
        if let Some(l) = ln {
            if !forked {
                lkl_close(l);
            }
        }
        fds::set(new as i32 as i64, fresh);
        if fresh.is_some() && fds::passthrough(old) {
            // The host file was duplicated onto `new`: a passthrough fd too.
            fds::set_passthrough(new as i32 as i64);
        }
        if fresh.is_some() && fds::file(old) {
            // A duplicate of a file opened by path is one too.
            fds::set_file(new as i32 as i64);
        }
        (
            r,
            if fresh.is_some() {
                Target::Lkl
            } else {
                Target::Host
            },
        )
    }
}

// LKL's `struct statx` (generic) is x86-64's: copied out as it is.
const _: () =
    assert!(core::mem::size_of::<lkl_sys::lkl_statx>() == core::mem::size_of::<libc::statx>());

/// LKL's `sendfile` between LKL fds, with the program's offset (if any) copied in and
/// out.
fn lkl_sendfile(out: i64, input: i64, offset: u64, count: i64) -> i64 {
    if offset == 0 {
        return lkl_call(nr!(__lkl__NR3264_sendfile), [out, input, 0, count, 0, 0]);
    }
    let at = UserAddr::new(offset);
    let mut off = match at.read::<i64>() {
        Ok(o) => o,
        Err(f) => return f.neg_errno(),
    };
    let r = lkl_call(
        nr!(__lkl__NR3264_sendfile),
        [out, input, &mut off as *mut i64 as i64, count, 0, 0],
    );
    if r >= 0 {
        if let Err(f) = at.write(&off) {
            return f.neg_errno();
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LKL's number of the call named `name` (a name the generic table has).
    fn sys_nr(name: &str) -> i64 {
        lkl_sys::SYSCALL_DEFS
            .iter()
            .find(|d| d.name == name)
            .map_or(-1, |d| i64::from(d.nr))
    }

    #[test]
    fn views_and_lkl_numbers() {
        let lkl = Lkl {
            resolv: true,
            proc_net: false,
            sys_net: false,
        };
        let plain = Lkl {
            resolv: false,
            proc_net: false,
            sys_net: false,
        };
        assert!(lkl.is_view(b"/etc/resolv.conf", true));
        assert!(!lkl.is_view(b"/etc/resolv.conf", false));
        assert!(!plain.is_view(b"/etc/resolv.conf", true));
        assert!(!lkl.is_view(b"/proc/net/dev", true));
        assert_eq!(sys_nr("close"), nr!(__lkl__NR_close));
        assert_eq!(sys_nr("dup3"), nr!(__lkl__NR_dup3));
        assert_eq!(sys_nr("newfstatat"), nr!(__lkl__NR3264_fstatat));
        assert_eq!(sys_nr("newfstat"), nr!(__lkl__NR3264_fstat));
        assert_eq!(sys_nr("fcntl"), nr!(__lkl__NR3264_fcntl));
    }

    #[test]
    fn sockaddrs_and_paths_are_copied_or_efault() {
        let addr = [7u8; 16];
        let a = [0, addr.as_ptr() as u64, 16, 0, 0, 0];
        let r = with_sockaddr(&a, |p, len| {
            // SAFETY: our copy of `len` bytes.
            let got = unsafe { core::slice::from_raw_parts(p as *const u8, len as usize) };
            i64::from(got == addr && p != addr.as_ptr() as u64)
        });
        assert_eq!(r, 1);
        assert_eq!(with_sockaddr(&[0, 1, 16, 0, 0, 0], |_, _| 0), -14);
        assert_eq!(with_sockaddr(&[0, 0, 200, 0, 0, 0], |_, _| 0), -22);
        assert_eq!(PathBuf::new().read(1), Err(-14));
        assert_eq!(empty_path(0), Ok(true));
        assert_eq!(empty_path(c"".as_ptr() as u64), Ok(true));
        assert_eq!(empty_path(16), Err(-14));
        let lkl = Lkl {
            resolv: true,
            proc_net: true,
            sys_net: false,
        };
        let p = c"/proc/net/a/very/long/path/beyond/the/head/buffer";
        let mut buf = PathBuf::new();
        assert_eq!(
            lkl.path_arg(AT_FDCWD as u64, p.as_ptr() as u64, &mut buf),
            Ok(Place::Lkl(AT_FDCWD))
        );
        assert_eq!(buf.bytes(), p.to_bytes());
        assert_eq!(
            lkl.path_arg(3, c"etc".as_ptr() as u64, &mut PathBuf::new()),
            Ok(Place::Host)
        );
        assert_eq!(lkl.path_arg(3, 8, &mut PathBuf::new()), Err(-14));
    }
}
