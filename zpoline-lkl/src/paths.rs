//! Which kernel a path belongs to, under the tree's file-system view
//! (`lkl_shared_kernel::FsView`, from `--root` and `--mount`).
//!
//! - **Rooted** (an image is the root, or the process `chroot`ed into LKL's files):
//!   every path is LKL's, except the few that name the host process itself: its
//!   terminal (`/dev/tty`, `/dev/pts/…`, `/dev/ptmx`), its host fds (`/dev/fd/N`,
//!   `/dev/std{in,out,err}`, `/proc/self/fd/N` for a host fd N) and its own process
//!   files (`/proc/self/…` but the mount tables, `/proc/<host pid>/…`,
//!   `/proc/thread-self/…`).
//! - **Mounts** (`--mount IMAGE:PATH`): a path is LKL's when, made absolute (from the
//!   cwd or the directory fd) and normalized lexically (`.`, `..`, doubled `/`), it is
//!   PATH or below. LKL mounts each image at the same path, so such a path is given to
//!   LKL as it is, absolute.
//!
//! A relative path follows the cwd: the process's cwd is LKL's after a `chdir` into
//! LKL's files ([`set_cwd_lkl`]), and then relative paths go to LKL, whose process
//! keeps that cwd. A path relative to an LKL directory fd is LKL's.
//!
//! Symbolic links are followed by the kernel that owns the path; a link that leads to
//! the other kernel's side (a host link into a mount, a link in an image that leads out
//! of its mount) makes that kernel miss (`ENOENT`, `ENOTDIR`). Then [`reroute`] walks
//! the path a component at a time, reading each link on the side that owns it, as the
//! kernel's own walk would, and the call is made again on the side where the walk ends.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use usermem::UserAddr;

use crate::fds;
use crate::helpers::{sys, PATH_MAX};

const AT_FDCWD: i64 = libc::AT_FDCWD as i64;

/// 0: no file is LKL's, 1: mounts, 2: rooted.
static MODE: AtomicU8 = AtomicU8::new(0);
/// The mounts' paths (absolute, normalized).
static MOUNTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
/// The cwd is in LKL's files (always when rooted).
static CWD_LKL: AtomicBool = AtomicBool::new(false);

/// Takes the tree's view. Call once, before the program runs.
pub(crate) fn init(view: &lkl_shared_kernel::FsView) {
    let _ = MOUNTS.set(view.mounts.clone());
    let mode = if view.root {
        2
    } else if !view.mounts.is_empty() {
        1
    } else {
        0
    };
    MODE.store(mode, Ordering::Release);
    CWD_LKL.store(view.root, Ordering::Release);
}

/// True when some paths are LKL's (the path calls must come to the backend).
#[inline(always)]
pub(crate) fn active() -> bool {
    MODE.load(Ordering::Relaxed) != 0
}

/// True when every path is LKL's (an image is the root, or a `chroot` into LKL).
#[inline(always)]
pub(crate) fn rooted() -> bool {
    MODE.load(Ordering::Relaxed) == 2
}

/// The process `chroot`ed into LKL's files: every path is LKL's from now on.
pub(crate) fn set_rooted() {
    MODE.store(2, Ordering::Release);
    CWD_LKL.store(true, Ordering::Release);
}

/// True when relative paths go to LKL.
#[inline(always)]
pub(crate) fn cwd_lkl() -> bool {
    CWD_LKL.load(Ordering::Relaxed)
}

/// The cwd moved to LKL's files (`true`) or the host's.
pub(crate) fn set_cwd_lkl(lkl: bool) {
    CWD_LKL.store(lkl || rooted(), Ordering::Release);
}

/// Where a path argument goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// The host's: the call goes unchanged.
    Host,
    /// The host's, with the path now in the caller's buffer (absolute): a relative
    /// path that leaves a mount by `..` from a cwd in LKL's files.
    HostAbs,
    /// LKL's: with this directory fd (LKL's, or `AT_FDCWD`) and the path now in the
    /// caller's buffer.
    Lkl(i64),
}

/// A path copied out of the program, NUL-terminated.
pub(crate) struct PathBuf {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl PathBuf {
    pub(crate) const fn new() -> PathBuf {
        PathBuf {
            buf: [0; PATH_MAX],
            len: 0,
        }
    }

    /// The path's bytes, without the NUL.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The NUL-terminated path, as an LKL argument.
    pub(crate) fn arg(&self) -> i64 {
        self.buf.as_ptr() as i64
    }

    /// Replaces the path with `p`; false when it does not fit.
    fn set(&mut self, p: &[u8]) -> bool {
        if p.len() >= PATH_MAX {
            return false;
        }
        self.buf[..p.len()].copy_from_slice(p);
        self.buf[p.len()] = 0;
        self.len = p.len();
        true
    }

    /// Copies the program's path at `at`; `-EFAULT`/`-ENAMETOOLONG` when it cannot.
    pub(crate) fn read(&mut self, at: u64) -> Result<(), i64> {
        let n = UserAddr::new(at)
            .read_cstr(&mut self.buf)
            .map_err(|e| e.neg_errno())?;
        self.len = n.len();
        Ok(())
    }
}

/// Where the program's path at `path`, relative to `dirfd`, goes; for LKL, the path
/// to give it is left in `out`. `-EFAULT`/`-ENAMETOOLONG` for a bad path. Call only
/// when [`active`].
pub(crate) fn place(dirfd: u64, path: u64, out: &mut PathBuf) -> Result<Place, i64> {
    if path == 0 {
        // NULL: `AT_EMPTY_PATH`-style calls on the fd itself (futimens).
        return Ok(fd_place(dirfd));
    }
    out.read(path)?;
    Ok(place_bytes(dirfd, out))
}

/// The place of an empty path (the fd itself).
fn fd_place(dirfd: u64) -> Place {
    match fds::lkl_of(dirfd) {
        Some(l) => Place::Lkl(l),
        None => Place::Host,
    }
}

/// [`place`] for a path already in `out`.
fn place_bytes(dirfd: u64, out: &mut PathBuf) -> Place {
    let p = out.bytes();
    if p.is_empty() {
        return fd_place(dirfd);
    }
    let absolute = p[0] == b'/';
    if !absolute {
        if let Some(l) = fds::lkl_of(dirfd) {
            return Place::Lkl(l);
        }
    }
    if let Some(l) = lkl_fd_path(p).filter(|_| absolute) {
        // The program's name of one of its LKL fds: LKL's name of that fd.
        let mut name = [0u8; 40];
        let n = fds::fd_link(l, &mut name);
        out.set(&name[..n]);
        return Place::Lkl(AT_FDCWD);
    }
    if rooted() {
        if absolute {
            return if host_process_path(p) {
                Place::Host
            } else {
                Place::Lkl(AT_FDCWD)
            };
        }
        // Relative to the cwd (LKL's) or to a host directory fd.
        return if dirfd as i32 == AT_FDCWD as i32 {
            Place::Lkl(AT_FDCWD)
        } else {
            Place::Host
        };
    }
    // Mounts: the path made absolute and normalized, then matched.
    let mut joined = [0u8; PATH_MAX];
    let from_lkl_cwd = !absolute && dirfd as i32 == AT_FDCWD as i32 && cwd_lkl();
    if from_lkl_cwd && !has_dotdot(p) {
        // Below the cwd, which is in a mount.
        return Place::Lkl(AT_FDCWD);
    }
    let base_len = if absolute {
        0
    } else {
        match dir_path(dirfd, &mut joined) {
            Some(n) => n,
            None if from_lkl_cwd => return Place::Lkl(AT_FDCWD),
            None => return Place::Host,
        }
    };
    let Some((n, crossed)) = normalize(&mut joined, base_len, p) else {
        return Place::Host;
    };
    let norm = &joined[..n];
    if under_mount(norm) {
        if out.set(norm) {
            Place::Lkl(AT_FDCWD)
        } else {
            Place::Host
        }
    } else if crossed || from_lkl_cwd {
        // `..` out of a mount (from an LKL cwd, or in a path through a mount): the
        // host's path, made absolute and normalized.
        if out.set(norm) {
            Place::HostAbs
        } else {
            Place::Host
        }
    } else {
        Place::Host
    }
}

/// True when the (absolute, normalized) `p` is a mount's path or below one.
pub(crate) fn under_mount(p: &[u8]) -> bool {
    MOUNTS.get().is_some_and(|ms| {
        ms.iter().any(|m| {
            p.starts_with(m) && (p.len() == m.len() || p[m.len()] == b'/' || m.as_slice() == b"/")
        })
    })
}

/// True when LKL call result `r` may come from a link to the other kernel's side (see
/// the module doc): the path calls then [`reroute`].
#[inline(always)]
pub(crate) fn missed(r: i64) -> bool {
    (r == -i64::from(libc::ENOENT) || r == -i64::from(libc::ENOTDIR))
        && MODE.load(Ordering::Relaxed) == 1
}

/// After a call on `was` [`missed`]: the place where the program's path at `path`
/// (relative to `dirfd`) really leads, with the resolved absolute path in `out`, when
/// it is on the other kernel's side (`None`: the answer stands). `follow`: the call
/// follows a link in the last component.
pub(crate) fn reroute(
    dirfd: u64,
    path: u64,
    follow: bool,
    was: Place,
    out: &mut PathBuf,
) -> Option<Place> {
    if MODE.load(Ordering::Relaxed) != 1 || path == 0 {
        return None;
    }
    out.read(path).ok()?;
    let p = out.bytes();
    if p.is_empty() {
        return None;
    }
    let mut full = [0u8; PATH_MAX];
    let base = if p[0] == b'/' {
        0
    } else if fds::lkl_of(dirfd).is_some() {
        return None;
    } else {
        dir_path(dirfd, &mut full)?
    };
    if base + 1 + p.len() >= PATH_MAX {
        return None;
    }
    let mut n = base;
    if base > 0 {
        full[n] = b'/';
        n += 1;
    }
    full[n..n + p.len()].copy_from_slice(p);
    n += p.len();
    full[n] = 0;
    if !through_link(&full[..=n], follow, matches!(was, Place::Lkl(_))) {
        // No link on the way: the kernel's answer stands.
        return None;
    }
    let mut resolved = [0u8; PATH_MAX];
    let (len, both) = walk(&full[..n], follow, &mut resolved)?;
    let lkl = under_mount(&resolved[..len]);
    let now = if lkl {
        Place::Lkl(AT_FDCWD)
    } else {
        Place::HostAbs
    };
    let same = matches!((was, now), (Place::Lkl(_), Place::Lkl(_)))
        || (!lkl && matches!(was, Place::Host | Place::HostAbs));
    // Ending on the same side after a visit to the other (a link out and one back in),
    // the resolved path is what that kernel could not find.
    if (same && !both) || !out.set(&resolved[..len]) {
        return None;
    }
    Some(now)
}

/// True when resolving the NUL-terminated absolute `p` on LKL's side (`lkl`) or the
/// host's meets a link (one `openat2` with `RESOLVE_NO_SYMLINKS` failing with `ELOOP`):
/// only then can the path lead to the other side, and a miss needs a walk.
fn through_link(p: &[u8], follow: bool, lkl: bool) -> bool {
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    let flags = libc::O_PATH | libc::O_CLOEXEC | if follow { 0 } else { libc::O_NOFOLLOW };
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how = [flags as u64, 0, RESOLVE_NO_SYMLINKS];
    let args = [
        AT_FDCWD,
        p.as_ptr() as i64,
        how.as_ptr() as i64,
        core::mem::size_of_val(&how) as i64,
        0,
        0,
    ];
    let r = if lkl {
        crate::dispatch::lkl_call(crate::dispatch::nr!(__lkl__NR_openat2), args)
    } else {
        // SAFETY: openat2 of our NUL-terminated path with our open_how.
        unsafe { sys(libc::SYS_openat2, args.map(|x| x as u64)) }
    };
    if r >= 0 {
        if lkl {
            crate::dispatch::lkl_close(r);
        } else {
            // SAFETY: closing the descriptor we just opened.
            unsafe { sys(libc::SYS_close, [r as u64, 0, 0, 0, 0, 0]) };
        }
    }
    r == -i64::from(libc::ELOOP)
}

/// Most links a walk follows (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Resolves the absolute `path` a component at a time, reading each link on the side
/// that owns it (LKL's under a mount, else the host's); `follow`: the last component's
/// link too. Stops resolving at the first component that does not exist (the rest is
/// appended as it is, lexically). The resolved path's length in `out`, and whether
/// links were read on both sides; `None` on a loop or an overlong path.
fn walk(path: &[u8], follow: bool, out: &mut [u8; PATH_MAX]) -> Option<(usize, bool)> {
    let mut seen = 0u8;
    let mut rest = [0u8; PATH_MAX];
    let mut rn = path.len();
    rest[..rn].copy_from_slice(path);
    let mut pos = 0;
    // `out[..cn]`: the resolved prefix, "" for the root, kept NUL-terminated.
    let mut cn = 0;
    let mut links = 0;
    let mut target = [0u8; PATH_MAX];
    loop {
        while pos < rn && rest[pos] == b'/' {
            pos += 1;
        }
        if pos >= rn {
            break;
        }
        let start = pos;
        while pos < rn && rest[pos] != b'/' {
            pos += 1;
        }
        let last = rest[pos..rn].iter().all(|&b| b == b'/');
        let c = &rest[start..pos];
        if c == b"." {
            continue;
        }
        if c == b".." {
            while cn > 0 && out[cn - 1] != b'/' {
                cn -= 1;
            }
            cn = cn.saturating_sub(1);
            out[cn] = 0;
            continue;
        }
        let before = cn;
        if cn + 1 + c.len() + 1 >= PATH_MAX {
            return None;
        }
        out[cn] = b'/';
        out[cn + 1..cn + 1 + c.len()].copy_from_slice(c);
        cn += 1 + c.len();
        out[cn] = 0;
        if last && !follow {
            break;
        }
        let lkl = under_mount(&out[..cn]);
        seen |= if lkl { 2 } else { 1 };
        let t = read_link(&out[..=cn], lkl, &mut target);
        if t == -i64::from(libc::EINVAL) {
            // Not a link.
            continue;
        }
        if t < 0 {
            // Missing (or unreadable): the rest as it is.
            let (n, _) = normalize(out, cn, &rest[pos..rn])?;
            return Some((n, seen == 3));
        }
        links += 1;
        if links > MAX_LINKS {
            return None;
        }
        // The link's target replaces the component, before the rest of the path.
        let tl = t as usize;
        let tail_len = rn - pos;
        if tl + tail_len >= PATH_MAX {
            return None;
        }
        let mut next = [0u8; PATH_MAX];
        next[..tl].copy_from_slice(&target[..tl]);
        next[tl..tl + tail_len].copy_from_slice(&rest[pos..rn]);
        rest[..tl + tail_len].copy_from_slice(&next[..tl + tail_len]);
        rn = tl + tail_len;
        pos = 0;
        cn = if target[0] == b'/' { 0 } else { before };
        out[cn] = 0;
    }
    if cn == 0 {
        out[0] = b'/';
        cn = 1;
    }
    Some((cn, seen == 3))
}

/// `readlink` of the NUL-terminated absolute `p` on LKL's side or the host's, into
/// `buf`: the length, or a negative errno (`-EINVAL`: not a link).
fn read_link(p: &[u8], lkl: bool, buf: &mut [u8; PATH_MAX]) -> i64 {
    let args = [
        AT_FDCWD,
        p.as_ptr() as i64,
        buf.as_mut_ptr() as i64,
        PATH_MAX as i64 - 1,
        0,
        0,
    ];
    let r = if lkl {
        crate::dispatch::lkl_call(crate::dispatch::nr!(__lkl__NR_readlinkat), args)
    } else {
        // SAFETY: readlinkat of our NUL-terminated path into our buffer.
        unsafe { sys(libc::SYS_readlinkat, args.map(|x| x as u64)) }
    };
    if r == 0 {
        -i64::from(libc::ENOENT)
    } else {
        r
    }
}

/// True when `p` has a `..` component.
fn has_dotdot(p: &[u8]) -> bool {
    p.split(|&b| b == b'/').any(|c| c == b"..")
}

/// Appends `rel` to the absolute path in `buf[..base]` (`base` 0: `rel` is absolute),
/// resolving `.`, `..` and doubled `/` lexically. The length, and whether a `..` left
/// a mount on the way; `None` if too long.
fn normalize(buf: &mut [u8; PATH_MAX], base: usize, rel: &[u8]) -> Option<(usize, bool)> {
    let mut crossed = false;
    let mut n = base;
    // The base is absolute and normalized; trim a trailing '/'.
    while n > 0 && buf[n - 1] == b'/' {
        n -= 1;
    }
    for c in rel.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                crossed |= n > 0 && under_mount(&buf[..n]);
                while n > 0 && buf[n - 1] != b'/' {
                    n -= 1;
                }
                n = n.saturating_sub(1);
            }
            c => {
                if n + 1 + c.len() >= PATH_MAX {
                    return None;
                }
                buf[n] = b'/';
                buf[n + 1..n + 1 + c.len()].copy_from_slice(c);
                n += 1 + c.len();
            }
        }
    }
    if n == 0 {
        buf[0] = b'/';
        n = 1;
    }
    Some((n, crossed))
}

/// The directory a relative path starts from, absolute, in `buf`: the cwd (`AT_FDCWD`)
/// or host directory fd `dirfd`'s path; its length.
fn dir_path(dirfd: u64, buf: &mut [u8; PATH_MAX]) -> Option<usize> {
    if dirfd as i32 == AT_FDCWD as i32 {
        getcwd(cwd_lkl(), buf)
    } else {
        host_fd_path(dirfd, buf)
    }
}

/// The cwd in `buf`, LKL's (`lkl`) or the host's; its length.
pub(crate) fn getcwd(lkl: bool, buf: &mut [u8; PATH_MAX]) -> Option<usize> {
    let r = if lkl {
        crate::dispatch::lkl_call(
            crate::dispatch::nr!(__lkl__NR_getcwd),
            [buf.as_mut_ptr() as i64, PATH_MAX as i64, 0, 0, 0, 0],
        )
    } else {
        // SAFETY: getcwd into our buffer.
        unsafe {
            sys(
                libc::SYS_getcwd,
                [buf.as_mut_ptr() as u64, PATH_MAX as u64, 0, 0, 0, 0],
            )
        }
    };
    // The call returns the length with the NUL; a path that is not reachable from the
    // root starts with "(unreachable)".
    (r > 1 && buf[0] == b'/').then(|| r as usize - 1)
}

/// The path of host directory fd `fd` in `buf` (`/proc/self/fd/N`), its length.
fn host_fd_path(fd: u64, buf: &mut [u8; PATH_MAX]) -> Option<usize> {
    let r = fds::read_fd_link(i64::from(fd as i32), &mut buf[..PATH_MAX - 1]);
    (r > 0 && buf[0] == b'/').then_some(r as usize)
}

/// True for an absolute path that names the host process itself (see the module
/// doc), which stays the host's when rooted.
fn host_process_path(p: &[u8]) -> bool {
    if p == b"/dev/tty"
        || p == b"/dev/ptmx"
        || p.starts_with(b"/dev/pts/")
        || p == b"/dev/pts"
        || p == b"/dev/stdin"
        || p == b"/dev/stdout"
        || p == b"/dev/stderr"
    {
        return true;
    }
    if let Some(n) = p.strip_prefix(b"/dev/fd/") {
        return fd_number_is_host(n);
    }
    let Some(rest) = p.strip_prefix(b"/proc/") else {
        return false;
    };
    let (first, tail) = match rest.iter().position(|&b| b == b'/') {
        Some(k) => (&rest[..k], &rest[k + 1..]),
        None => (rest, &b""[..]),
    };
    if first == b"thread-self" {
        return true;
    }
    let own = first == b"self" || (!first.is_empty() && first.iter().all(u8::is_ascii_digit));
    if !own {
        return false;
    }
    let (what, more) = match tail.iter().position(|&b| b == b'/') {
        Some(k) => (&tail[..k], &tail[k + 1..]),
        None => (tail, &b""[..]),
    };
    match what {
        // LKL's: what the process sees of the file systems and the network.
        b"mounts" | b"mountinfo" | b"mountstats" | b"net" | b"cwd" | b"root" => false,
        b"fd" if !more.is_empty() => {
            fd_number_is_host(more.split(|&b| b == b'/').next().unwrap_or(b""))
        }
        // A pid of LKL's own (not the host's) would be LKL's; the tree sees host pids.
        _ => true,
    }
}

/// The LKL fd that the absolute `p` names when it is one of the program's names of its
/// own fds (`/dev/std{in,out,err}`, `/dev/fd/N`, `/proc/self/fd/N`) and N is an LKL
/// fd's placeholder.
fn lkl_fd_path(p: &[u8]) -> Option<i64> {
    if !fds::any() {
        return None;
    }
    let n: &[u8] = match p {
        b"/dev/stdin" => b"0",
        b"/dev/stdout" => b"1",
        b"/dev/stderr" => b"2",
        _ => p
            .strip_prefix(b"/dev/fd/")
            .or_else(|| p.strip_prefix(b"/proc/self/fd/"))
            .or_else(|| p.strip_prefix(b"/proc/thread-self/fd/"))
            .or_else(|| own_proc_fd(p))?,
    };
    let fd = core::str::from_utf8(n).ok()?.parse::<u64>().ok()?;
    fds::lkl_of(fd)
}

/// `N` of `/proc/PID/fd/N` (or `/proc/PID/task/TID/fd/N`) when PID is this process's
/// or the calling thread's id.
fn own_proc_fd(p: &[u8]) -> Option<&[u8]> {
    let rest = p.strip_prefix(b"/proc/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (pid, tail) = (&rest[..slash], &rest[slash..]);
    let n = tail.strip_prefix(b"/fd/").or_else(|| {
        // /proc/PID/task/TID/fd/N
        let t = tail.strip_prefix(b"/task/")?;
        let k = t.iter().position(|&b| b == b'/')?;
        t[k..].strip_prefix(b"/fd/")
    })?;
    let pid: i64 = core::str::from_utf8(pid).ok()?.parse().ok()?;
    // SAFETY: getpid and gettid have no arguments.
    let (me, tid) = unsafe { (sys(libc::SYS_getpid, [0; 6]), sys(libc::SYS_gettid, [0; 6])) };
    (pid == me || pid == tid).then_some(n)
}

/// True when the decimal `n` is a host fd (not an LKL placeholder).
fn fd_number_is_host(n: &[u8]) -> bool {
    let Ok(s) = core::str::from_utf8(n) else {
        return true;
    };
    match s.parse::<u64>() {
        Ok(fd) => fds::lkl_of(fd).is_none(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(base: &str, rel: &str) -> String {
        let mut buf = [0u8; PATH_MAX];
        buf[..base.len()].copy_from_slice(base.as_bytes());
        let (n, _) = normalize(&mut buf, base.len(), rel.as_bytes()).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(norm("", "/a//b/./c/"), "/a/b/c");
        assert_eq!(norm("", "/a/../../b"), "/b");
        assert_eq!(norm("", "/"), "/");
        assert_eq!(norm("", "/.."), "/");
        assert_eq!(norm("/mnt/disk", "../x"), "/mnt/x");
        assert_eq!(norm("/mnt", "disk/y"), "/mnt/disk/y");
        assert_eq!(norm("/", "a"), "/a");
        assert_eq!(norm("/a/", "."), "/a");
    }

    #[test]
    fn host_process_paths() {
        for p in [
            "/dev/tty",
            "/dev/pts/0",
            "/dev/stdin",
            "/proc/self/maps",
            "/proc/self/exe",
            "/proc/123/status",
            "/proc/thread-self/comm",
            "/dev/fd/1",
            "/proc/self/fd/2",
        ] {
            assert!(host_process_path(p.as_bytes()), "{p}");
        }
        for p in [
            "/dev/null",
            "/proc/mounts",
            "/proc/self/mounts",
            "/proc/self/net/dev",
            "/proc/meminfo",
            "/etc/passwd",
            "/procfoo",
        ] {
            assert!(!host_process_path(p.as_bytes()), "{p}");
        }
    }
}
