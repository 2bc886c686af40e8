//! The routing table: every x86-64 system call the LKL backend treats specially, what
//! happens to it and why, as data.
//!
//! Each [`Entry`] names the call (its number from `libc::SYS_*`), where it goes
//! ([`Where`], the column of the routing table in `docs/zpoline.md`), when the entry
//! stub sends it through the hook ([`Pass`]), the [`Handler`] that serves it, and a
//! one-line note. Every other call goes to the host on the stub's fast path. The route
//! bytes given to the trampoline ([`route`]) and the dispatch ([`lookup`]) both come
//! from [`TABLE`]; a unit test checks the docs' table against it.

use core::sync::atomic::{AtomicI32, Ordering};

use trampoline::Route;

/// Where a call goes (the "where" column of the docs' routing table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Where {
    /// The host kernel (the backend may look at it on the way).
    Host,
    /// LKL when the first argument is an LKL fd, else the host, unchanged.
    ByFd,
    /// LKL's side when the epoll fd (first argument) has LKL entries, else the host.
    ByEpollFd,
    /// LKL for the families LKL serves, else the host.
    ByFamily,
    /// LKL for the paths of LKL's views, else the host.
    ByPath,
    /// As [`Where::ByPath`], and LKL for an LKL fd with an empty path.
    ByPathOrFd,
    /// Both kernels may take part in one call.
    Split,
    /// LKL when the tree's root is an image (or the process `chroot`ed into LKL),
    /// else the host.
    ByRoot,
}

#[cfg_attr(not(test), allow(dead_code))]
impl Where {
    /// The words of the docs' table.
    pub(crate) const fn words(self) -> &'static str {
        match self {
            Where::Host => "host",
            Where::ByFd => "by fd",
            Where::ByEpollFd => "by epoll fd",
            Where::ByFamily => "by family",
            Where::ByPath => "by path",
            Where::ByPathOrFd => "by path or fd",
            Where::Split => "split",
            Where::ByRoot => "by root",
        }
    }
}

/// When the entry stub sends the call through the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Always.
    Hook,
    /// When the first argument is a marked fd (an LKL placeholder, a muxed epoll fd).
    FirstFd,
    /// Always when the configuration has views, else never.
    Views,
    /// Always when the configuration has views, else as [`Pass::FirstFd`].
    ViewsElseFirstFd,
    /// Always when some paths are LKL's (`--root`, `--mount`), else never.
    Files,
    /// Never (the interposer's own default applies).
    Default,
}

/// What serves the call once it reaches the backend (see `dispatch.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    /// The host's call, unchanged.
    Host,
    /// LKL's call of the same name on the LKL fd (`lkl_sys::SYSCALL_DEFS`).
    Fd,
    /// [`Handler::Fd`], after a wait that a signal can end (blocking receives).
    Recv,
    /// `accept`/`accept4`: a sliced wait, then a placeholder for the new fd.
    Accept,
    /// `connect`: the address copied in; a sliced wait on a blocking socket.
    Connect,
    /// `bind`: the address copied in.
    Bind,
    /// `close`: LKL's close (lingering while data is queued), then the placeholder.
    Close,
    /// `fstat`: LKL's `struct stat` converted.
    Fstat,
    /// `dup`: LKL's `dup` and a new placeholder.
    Dup,
    /// `fcntl`: `F_DUPFD*` as `dup`, the rest LKL's.
    Fcntl,
    /// `sendfile`: LKL's between LKL fds, else copied from the host file.
    Sendfile,
    /// `copy_file_range`: LKL's between LKL fds, else `EXDEV`.
    CopyFileRange,
    /// `socket`.
    Socket,
    /// `dup2`/`dup3`.
    Dup2,
    /// `close_range`.
    CloseRange,
    /// `poll`/`ppoll`/`select`/`pselect6` (`wait.rs`).
    Wait,
    /// `epoll_ctl` (`epoll.rs`).
    EpollCtl,
    /// `epoll_wait`/`epoll_pwait`/`epoll_pwait2` (`epoll.rs`).
    EpollWait,
    /// `open`/`openat`/`openat2`.
    Open,
    /// `stat`/`lstat`.
    Stat,
    /// `newfstatat`.
    Fstatat,
    /// `statx`.
    Statx,
    /// `access`/`faccessat`/`faccessat2`.
    Access,
    /// A file-system call by path (`pathcall.rs`).
    Path,
    /// An identity call (`pathcall::identity`).
    Ident,
    /// `mmap` (`mmap.rs`): an LKL file mapped by copy.
    Mmap,
    /// `rt_sigaction` (`signals.rs`).
    Sigaction,
    /// `exit`: the thread's shadow given back.
    Exit,
    /// `exit_group`: LKL's send queues drained.
    ExitGroup,
}

/// One row of the routing table. The name, [`Where`] and the note document the row
/// (the unit tests check them against the numbers and the docs); the dispatch reads the
/// number, [`Pass`] and the handler.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Entry {
    /// The x86-64 number.
    pub(crate) nr: u64,
    /// The x86-64 name.
    pub(crate) name: &'static str,
    /// Where it goes.
    pub(crate) to: Where,
    /// When the stub sends it to the hook.
    pub(crate) pass: Pass,
    /// What serves it.
    pub(crate) handler: Handler,
    /// Why, in a line.
    pub(crate) note: &'static str,
}

const fn e(
    nr: libc::c_long,
    name: &'static str,
    to: Where,
    pass: Pass,
    handler: Handler,
    note: &'static str,
) -> Entry {
    Entry {
        nr: nr as u64,
        name,
        to,
        pass,
        handler,
        note,
    }
}

use Handler as H;
use Pass as P;
use Where as W;

const TRANSLATED: &str = "LKL's call of the same name (lkl_sys::SYSCALL_DEFS); none: ENOSYS";
const SOCKET_CALL: &str = "LKL's socket call on the LKL fd";
const VIEW: &str = "LKL's file for a view path (absolute, or AT_FDCWD), else the host's";
const FILES: &str = "LKL's when the path is LKL's (paths.rs), else the host's";
const TWO_PATHS: &str = "both paths LKL's: LKL's; both the host's: the host's; one of each: EXDEV";
const IDENT: &str = "LKL's credentials when rooted, else the host's";

/// The routing table (see the module doc).
#[rustfmt::skip]
pub(crate) static TABLE: &[Entry] = &[
    // Sockets.
    e(libc::SYS_socket, "socket", W::ByFamily, P::Hook, H::Socket, "AF_INET, AF_INET6, AF_NETLINK, AF_PACKET: LKL's, offered as a placeholder fd; other families: the host's"),
    e(libc::SYS_socketpair, "socketpair", W::Host, P::Default, H::Host, "AF_UNIX, the only family it serves, is the host's"),
    e(libc::SYS_bind, "bind", W::ByFd, P::FirstFd, H::Bind, "the address is copied in (EFAULT when unreadable)"),
    e(libc::SYS_connect, "connect", W::ByFd, P::FirstFd, H::Connect, "the address is copied in; a blocking connect waits in slices a signal can end"),
    e(libc::SYS_listen, "listen", W::ByFd, P::FirstFd, H::Fd, SOCKET_CALL),
    e(libc::SYS_accept, "accept", W::ByFd, P::FirstFd, H::Accept, "the new LKL fd gets a placeholder"),
    e(libc::SYS_accept4, "accept4", W::ByFd, P::FirstFd, H::Accept, "the new LKL fd gets a placeholder"),
    e(libc::SYS_getsockname, "getsockname", W::ByFd, P::FirstFd, H::Fd, SOCKET_CALL),
    e(libc::SYS_getpeername, "getpeername", W::ByFd, P::FirstFd, H::Fd, SOCKET_CALL),
    e(libc::SYS_setsockopt, "setsockopt", W::ByFd, P::FirstFd, H::Fd, SOCKET_CALL),
    e(libc::SYS_getsockopt, "getsockopt", W::ByFd, P::FirstFd, H::Fd, SOCKET_CALL),
    e(libc::SYS_sendto, "sendto", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE unless MSG_NOSIGNAL"),
    e(libc::SYS_recvfrom, "recvfrom", W::ByFd, P::FirstFd, H::Recv, "a blocking receive waits in slices a signal can end"),
    e(libc::SYS_sendmsg, "sendmsg", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE unless MSG_NOSIGNAL"),
    e(libc::SYS_recvmsg, "recvmsg", W::ByFd, P::FirstFd, H::Recv, "a blocking receive waits in slices a signal can end"),
    e(libc::SYS_sendmmsg, "sendmmsg", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE unless MSG_NOSIGNAL"),
    e(libc::SYS_recvmmsg, "recvmmsg", W::ByFd, P::FirstFd, H::Fd, "not sliced: a handler waits for the call to end"),
    e(libc::SYS_shutdown, "shutdown", W::ByFd, P::FirstFd, H::Fd, SOCKET_CALL),
    // Generic fd calls.
    e(libc::SYS_read, "read", W::ByFd, P::FirstFd, H::Recv, "a blocking receive waits in slices a signal can end"),
    e(libc::SYS_write, "write", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE"),
    e(libc::SYS_pread64, "pread64", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_pwrite64, "pwrite64", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE"),
    e(libc::SYS_readv, "readv", W::ByFd, P::FirstFd, H::Recv, "a blocking receive waits in slices a signal can end"),
    e(libc::SYS_writev, "writev", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE"),
    e(libc::SYS_preadv, "preadv", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_pwritev, "pwritev", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE"),
    e(libc::SYS_preadv2, "preadv2", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_pwritev2, "pwritev2", W::ByFd, P::FirstFd, H::Fd, "EPIPE raises SIGPIPE"),
    e(libc::SYS_ioctl, "ioctl", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_lseek, "lseek", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fsync, "fsync", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fdatasync, "fdatasync", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_ftruncate, "ftruncate", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_flock, "flock", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fchmod, "fchmod", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fchown, "fchown", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fstatfs, "fstatfs", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_getdents, "getdents", W::ByFd, P::FirstFd, H::Fd, "x86-64 only: ENOSYS"),
    e(libc::SYS_getdents64, "getdents64", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fadvise64, "fadvise64", W::ByFd, P::FirstFd, H::Fd, "LKL is built without CONFIG_ADVISE_SYSCALLS: ENOSYS"),
    e(libc::SYS_readahead, "readahead", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fsetxattr, "fsetxattr", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fgetxattr, "fgetxattr", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_flistxattr, "flistxattr", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fremovexattr, "fremovexattr", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fallocate, "fallocate", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_sync_file_range, "sync_file_range", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_syncfs, "syncfs", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_fchdir, "fchdir", W::ByFd, P::ViewsElseFirstFd, H::Path, "LKL's on an LKL fd, the host's on a host fd: the cwd moves to that kernel"),
    e(libc::SYS_fstat, "fstat", W::ByFd, P::FirstFd, H::Fstat, "LKL's generic struct stat converted to x86-64's"),
    e(libc::SYS_close, "close", W::ByFd, P::FirstFd, H::Close, "LKL's close (lingering while data is queued), then the placeholder's; a vfork child's: the host's only"),
    e(libc::SYS_dup, "dup", W::ByFd, P::FirstFd, H::Dup, "LKL's dup and a new placeholder"),
    e(libc::SYS_fcntl, "fcntl", W::ByFd, P::FirstFd, H::Fcntl, "F_DUPFD[_CLOEXEC]: LKL's dup and a placeholder at or above the minimum; the rest LKL's"),
    // Copies between fds.
    e(libc::SYS_sendfile, "sendfile", W::Split, P::FirstFd, H::Sendfile, "to an LKL fd: from an LKL fd LKL's, from a host file read on the host and written to LKL"),
    e(libc::SYS_copy_file_range, "copy_file_range", W::ByFd, P::FirstFd, H::CopyFileRange, "both LKL: LKL's; mixed: EXDEV"),
    e(libc::SYS_splice, "splice", W::Host, P::Default, H::Host, "an LKL placeholder there fails with EBADF/EINVAL"),
    e(libc::SYS_tee, "tee", W::Host, P::Default, H::Host, "an LKL placeholder there fails with EBADF/EINVAL"),
    e(libc::SYS_vmsplice, "vmsplice", W::Host, P::Default, H::Host, "an LKL placeholder there fails with EBADF/EINVAL"),
    // Descriptors.
    e(libc::SYS_dup2, "dup2", W::Split, P::Hook, H::Dup2, "an LKL old fd: LKL's dup and the placeholder dup3ed onto the new number"),
    e(libc::SYS_dup3, "dup3", W::Split, P::Hook, H::Dup2, "an LKL old fd: LKL's dup and the placeholder dup3ed onto the new number"),
    e(libc::SYS_close_range, "close_range", W::Split, P::Hook, H::CloseRange, "the LKL fds in the range closed in LKL, then the host's call"),
    // Waits.
    e(libc::SYS_poll, "poll", W::Split, P::Hook, H::Wait, "host-only sets: the host's; LKL-only: LKL's ppoll in slices; mixed: lkl_fdmux"),
    e(libc::SYS_ppoll, "ppoll", W::Split, P::Hook, H::Wait, "as poll"),
    e(libc::SYS_select, "select", W::Split, P::Hook, H::Wait, "as poll"),
    e(libc::SYS_pselect6, "pselect6", W::Split, P::Hook, H::Wait, "as poll"),
    e(libc::SYS_epoll_create, "epoll_create", W::Host, P::Default, H::Host, "the program's epoll fd is always a host epoll fd"),
    e(libc::SYS_epoll_create1, "epoll_create1", W::Host, P::Default, H::Host, "the program's epoll fd is always a host epoll fd"),
    e(libc::SYS_epoll_ctl, "epoll_ctl", W::Split, P::Hook, H::EpollCtl, "adding an LKL fd makes the epoll fd muxed (lkl_fdmux::Epoll)"),
    e(libc::SYS_epoll_wait, "epoll_wait", W::ByEpollFd, P::FirstFd, H::EpollWait, "muxed: lkl_fdmux::Epoll::wait on both kernels"),
    e(libc::SYS_epoll_pwait, "epoll_pwait", W::ByEpollFd, P::FirstFd, H::EpollWait, "muxed: lkl_fdmux::Epoll::wait on both kernels"),
    e(libc::SYS_epoll_pwait2, "epoll_pwait2", W::ByEpollFd, P::FirstFd, H::EpollWait, "muxed: lkl_fdmux::Epoll::wait on both kernels"),
    // Paths: LKL's views.
    e(libc::SYS_open, "open", W::ByPath, P::Views, H::Open, VIEW),
    e(libc::SYS_creat, "creat", W::ByPath, P::Views, H::Open, VIEW),
    e(libc::SYS_openat, "openat", W::ByPath, P::Views, H::Open, VIEW),
    e(libc::SYS_openat2, "openat2", W::ByPath, P::Views, H::Open, VIEW),
    e(libc::SYS_stat, "stat", W::ByPath, P::Views, H::Stat, VIEW),
    e(libc::SYS_lstat, "lstat", W::ByPath, P::Views, H::Stat, VIEW),
    e(libc::SYS_access, "access", W::ByPath, P::Views, H::Access, VIEW),
    e(libc::SYS_faccessat, "faccessat", W::ByPath, P::Views, H::Access, VIEW),
    e(libc::SYS_faccessat2, "faccessat2", W::ByPath, P::Views, H::Access, VIEW),
    e(libc::SYS_newfstatat, "newfstatat", W::ByPathOrFd, P::ViewsElseFirstFd, H::Fstatat, "an LKL fd with \"\" and AT_EMPTY_PATH (glibc's fstat): LKL's fstat; else as a view path"),
    e(libc::SYS_statx, "statx", W::ByPathOrFd, P::ViewsElseFirstFd, H::Statx, "an LKL fd with \"\" and AT_EMPTY_PATH: LKL's statx; else as a view path"),
    // Paths: LKL's file systems (--root, --mount).
    e(libc::SYS_mkdir, "mkdir", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_mkdirat, "mkdirat", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_rmdir, "rmdir", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_unlink, "unlink", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_unlinkat, "unlinkat", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_chmod, "chmod", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_fchmodat, "fchmodat", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_chown, "chown", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_lchown, "lchown", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_fchownat, "fchownat", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_readlink, "readlink", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_readlinkat, "readlinkat", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_mknod, "mknod", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_mknodat, "mknodat", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_truncate, "truncate", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_statfs, "statfs", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_getxattr, "getxattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_lgetxattr, "lgetxattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_setxattr, "setxattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_lsetxattr, "lsetxattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_listxattr, "listxattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_llistxattr, "llistxattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_removexattr, "removexattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_lremovexattr, "lremovexattr", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_utimensat, "utimensat", W::ByPath, P::Files, H::Path, "a NULL path: by the fd; else as the other path calls"),
    e(libc::SYS_utimes, "utimes", W::ByPath, P::Files, H::Path, "LKL's utimensat, the timevals converted"),
    e(libc::SYS_futimesat, "futimesat", W::ByPath, P::Files, H::Path, "LKL's utimensat, the timevals converted"),
    e(libc::SYS_utime, "utime", W::ByPath, P::Files, H::Path, "LKL's utimensat, the utimbuf converted"),
    e(libc::SYS_rename, "rename", W::ByPath, P::Files, H::Path, TWO_PATHS),
    e(libc::SYS_renameat, "renameat", W::ByPath, P::Files, H::Path, TWO_PATHS),
    e(libc::SYS_renameat2, "renameat2", W::ByPath, P::Files, H::Path, TWO_PATHS),
    e(libc::SYS_link, "link", W::ByPath, P::Files, H::Path, TWO_PATHS),
    e(libc::SYS_linkat, "linkat", W::ByPath, P::Files, H::Path, TWO_PATHS),
    e(libc::SYS_symlink, "symlink", W::ByPath, P::Files, H::Path, "by the link's path; the target is its contents"),
    e(libc::SYS_symlinkat, "symlinkat", W::ByPath, P::Files, H::Path, "by the link's path; the target is its contents"),
    e(libc::SYS_chdir, "chdir", W::ByPath, P::Files, H::Path, "the cwd moves to the kernel of the path"),
    e(libc::SYS_getcwd, "getcwd", W::ByPath, P::Files, H::Path, "LKL's while the cwd is in LKL's files"),
    e(libc::SYS_chroot, "chroot", W::ByPath, P::Files, H::Path, "into LKL's files: every path is LKL's from then on"),
    e(libc::SYS_mount, "mount", W::ByPath, P::Files, H::Path, "by the target's path"),
    e(libc::SYS_umount2, "umount2", W::ByPath, P::Files, H::Path, FILES),
    e(libc::SYS_pivot_root, "pivot_root", W::ByPath, P::Files, H::Path, TWO_PATHS),
    e(libc::SYS_inotify_init, "inotify_init", W::ByRoot, P::Files, H::Path, "rooted: LKL's inotify_init1(0); else the host's"),
    e(libc::SYS_inotify_init1, "inotify_init1", W::ByRoot, P::Files, H::Path, "rooted: LKL's; else the host's"),
    e(libc::SYS_inotify_add_watch, "inotify_add_watch", W::ByPath, P::Files, H::Path, "the instance's kernel must own the path (else EXDEV)"),
    e(libc::SYS_inotify_rm_watch, "inotify_rm_watch", W::ByFd, P::FirstFd, H::Fd, TRANSLATED),
    e(libc::SYS_umask, "umask", W::Split, P::Files, H::Path, "both kernels take the mask; rooted, LKL's old one is returned"),
    // Identity: the tree runs as root inside an image.
    e(libc::SYS_getuid, "getuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_geteuid, "geteuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_getgid, "getgid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_getegid, "getegid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_getresuid, "getresuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_getresgid, "getresgid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_getgroups, "getgroups", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setuid, "setuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setgid, "setgid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setreuid, "setreuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setregid, "setregid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setresuid, "setresuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setresgid, "setresgid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setgroups, "setgroups", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setfsuid, "setfsuid", W::ByRoot, P::Files, H::Ident, IDENT),
    e(libc::SYS_setfsgid, "setfsgid", W::ByRoot, P::Files, H::Ident, IDENT),
    // Memory.
    e(libc::SYS_mmap, "mmap", W::Split, P::Views, H::Mmap, "an LKL file (fd: the fifth argument): anonymous memory filled through LKL, then the asked protection; MAP_SHARED writable: ENODEV"),
    // Signals and processes.
    e(libc::SYS_rt_sigaction, "rt_sigaction", W::Host, P::Hook, H::Sigaction, "handlers are wrapped so that they run with the program's %fs"),
    e(libc::SYS_exit, "exit", W::Host, P::Default, H::Exit, "when it reaches the hook (--trace, SUD): the thread's shadow is given back"),
    e(libc::SYS_exit_group, "exit_group", W::Host, P::Hook, H::ExitGroup, "LKL sockets' send queues drained (at most 2 s) and closed first"),
    e(libc::SYS_fork, "fork", W::Host, P::Default, H::Host, "the interposer marks the child: its LKL fds fail with EBADF"),
    e(libc::SYS_clone, "clone", W::Host, P::Default, H::Host, "fork-like: the interposer marks the child"),
    e(libc::SYS_clone3, "clone3", W::Host, P::Default, H::Host, "fork-like: the interposer marks the child"),
];

/// Numbers at or above this have no entry.
const NRS: usize = 512;
const NONE: u8 = u8::MAX;

/// `INDEX[nr]`: the position of `nr`'s entry in [`TABLE`], or [`NONE`]. Building it
/// fails the compilation on a duplicate entry or a number out of range.
static INDEX: [u8; NRS] = {
    let mut index = [NONE; NRS];
    let mut k = 0;
    while k < TABLE.len() {
        let nr = TABLE[k].nr as usize;
        assert!(nr < NRS && k < NONE as usize);
        assert!(index[nr] == NONE, "two entries for one number");
        index[nr] = k as u8;
        k += 1;
    }
    index
};

/// The entry of x86-64 call `nr`, if the backend treats it specially.
#[inline(always)]
pub(crate) fn lookup(nr: u64) -> Option<&'static Entry> {
    match INDEX.get(nr as usize) {
        Some(&k) if k != NONE => Some(&TABLE[k as usize]),
        _ => None,
    }
}

/// The route byte of `nr` for the trampoline; `views`: the configuration shows some of
/// LKL's files; `files`: some paths are LKL's (`--root`, `--mount`).
pub(crate) fn route(nr: u64, views: bool, files: bool) -> Option<Route> {
    let views = views || files;
    match lookup(nr)?.pass {
        Pass::Hook => Some(Route::Hook),
        Pass::FirstFd => Some(Route::FdArg),
        Pass::Views => views.then_some(Route::Hook),
        Pass::ViewsElseFirstFd if views => Some(Route::Hook),
        Pass::ViewsElseFirstFd => Some(Route::FdArg),
        Pass::Files => files.then_some(Route::Hook),
        Pass::Default => None,
    }
}

/// x86-64 number → LKL's (generic table) number + 1, 0 when LKL has none.
static NR_MAP: [AtomicI32; NRS] = [const { AtomicI32::new(0) }; NRS];

/// The name in LKL's (generic) table of the x86-64 call named `x86`.
pub(crate) fn lkl_name(x86: &str) -> &str {
    match x86 {
        "fstat" => "newfstat",
        other => other,
    }
}

/// Fills the x86-64 → LKL number map from both tables' names.
pub(crate) fn map_lkl_numbers() {
    for (nr, slot) in NR_MAP.iter().enumerate() {
        let lkl = trampoline::names::name(nr as u64).and_then(|n| {
            let n = lkl_name(n);
            lkl_sys::SYSCALL_DEFS.iter().find(|d| d.name == n)
        });
        slot.store(lkl.map_or(0, |d| d.nr as i32 + 1), Ordering::Relaxed);
    }
}

/// LKL's number for x86-64 syscall `nr`.
pub(crate) fn lkl_nr(nr: u64) -> Option<i64> {
    match NR_MAP.get(nr as usize)?.load(Ordering::Relaxed) {
        0 => None,
        n => Some(i64::from(n - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_numbers() {
        for e in TABLE {
            assert_eq!(
                trampoline::names::name(e.nr),
                Some(e.name),
                "entry {} has number {}",
                e.name,
                e.nr
            );
            assert!(!e.note.is_empty(), "{} has no note", e.name);
        }
    }

    #[test]
    fn where_and_pass_agree() {
        for e in TABLE {
            let ok = match e.to {
                Where::ByFd => matches!(e.pass, Pass::FirstFd | Pass::ViewsElseFirstFd),
                Where::ByEpollFd => e.pass == Pass::FirstFd,
                Where::ByPath => matches!(e.pass, Pass::Views | Pass::Files),
                Where::ByRoot => e.pass == Pass::Files,
                Where::ByPathOrFd => e.pass == Pass::ViewsElseFirstFd,
                Where::ByFamily => e.pass == Pass::Hook,
                Where::Split => {
                    matches!(
                        e.pass,
                        Pass::Hook | Pass::FirstFd | Pass::Views | Pass::Files
                    )
                }
                Where::Host => e.handler != Handler::Fd,
            };
            assert!(ok, "{}: {:?} with {:?}", e.name, e.to, e.pass);
        }
    }

    #[test]
    fn fd_calls_have_lkl_equivalents() {
        // Every call LKL serves by name has an LKL call of that name, except the
        // x86-64-only ones answered with ENOSYS (fadvise64: LKL is built without
        // CONFIG_ADVISE_SYSCALLS).
        let no_lkl = ["getdents", "fadvise64"];
        for e in TABLE
            .iter()
            .filter(|e| matches!(e.handler, Handler::Fd | Handler::Recv))
        {
            let name = lkl_name(e.name);
            let has = lkl_sys::SYSCALL_DEFS.iter().any(|d| d.name == name);
            assert!(has || no_lkl.contains(&name), "{} has no LKL call", e.name);
        }
    }

    /// The rows of the routing table in `docs/zpoline.md`: the names in backquotes of
    /// the first column, and the second column.
    fn doc_rows() -> Vec<(Vec<String>, String)> {
        let doc = include_str!("../../docs/zpoline.md");
        let section = doc
            .split("### Routing policy")
            .nth(1)
            .expect("docs/zpoline.md has a Routing policy section");
        let section = section.split("\n#").next().unwrap_or(section);
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with('|')) {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            if cols.len() < 4 || cols[1] == "syscalls" || cols[1].starts_with("---") {
                continue;
            }
            let names = cols[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect();
            rows.push((names, cols[2].to_owned()));
        }
        rows
    }

    #[test]
    fn the_docs_table_matches() {
        let rows = doc_rows();
        assert!(!rows.is_empty(), "no rows found in docs/zpoline.md");
        let mut seen = Vec::new();
        for (names, to) in &rows {
            for name in names {
                let e = TABLE
                    .iter()
                    .find(|e| e.name == name)
                    .unwrap_or_else(|| panic!("docs/zpoline.md names `{name}`, not in TABLE"));
                assert_eq!(
                    to,
                    e.to.words(),
                    "docs/zpoline.md says `{name}` goes {to:?}, TABLE says {:?}",
                    e.to.words()
                );
                seen.push(e.name);
            }
        }
        for e in TABLE {
            assert!(
                seen.contains(&e.name),
                "TABLE's `{}` is not in docs/zpoline.md's routing table",
                e.name
            );
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(libc::SYS_socket as u64, false, false),
            Some(Route::Hook)
        );
        assert_eq!(
            route(libc::SYS_read as u64, false, false),
            Some(Route::FdArg)
        );
        assert_eq!(
            route(libc::SYS_openat as u64, true, false),
            Some(Route::Hook)
        );
        assert_eq!(route(libc::SYS_openat as u64, false, false), None);
        assert_eq!(
            route(libc::SYS_newfstatat as u64, false, false),
            Some(Route::FdArg)
        );
        assert_eq!(
            route(libc::SYS_newfstatat as u64, true, false),
            Some(Route::Hook)
        );
        assert_eq!(route(libc::SYS_getpid as u64, true, false), None);
        assert_eq!(route(libc::SYS_exit as u64, true, false), None);
        assert_eq!(
            route(libc::SYS_exit_group as u64, false, false),
            Some(Route::Hook)
        );
        assert_eq!(route(libc::SYS_mkdir as u64, true, false), None);
        assert_eq!(
            route(libc::SYS_mkdir as u64, false, true),
            Some(Route::Hook)
        );
        assert_eq!(
            route(libc::SYS_openat as u64, false, true),
            Some(Route::Hook)
        );
        assert_eq!(
            route(libc::SYS_getuid as u64, false, true),
            Some(Route::Hook)
        );
    }
}
