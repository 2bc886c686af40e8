//! Passthrough reads of volume files: a regular file of a volume (a host directory
//! inside LKL over virtio-fs, `--volume`) that the program opens read-only is read
//! straight from the host, as Linux's `FUSE_PASSTHROUGH` does for a FUSE server.
//!
//! LKL opens the file first (its permission checks, its fd in its table). Then
//! [`offer`] opens the same host file for the program: the path LKL resolved (LKL's
//! `/proc/self/fd/L`) less the volume's path, relative to the volume's host directory,
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`, so nothing outside the directory, and no link, is ever followed
//! on the host. The host file must be the one LKL opened: a regular file with the inode
//! number (the virtio-fs server passes the host's through), size and modification time
//! of LKL's `fstat`. Any doubt and the fd stays LKL's alone.
//!
//! The host fd then *is* the program's fd: it replaces the placeholder at the same
//! number (`fds::set_passthrough` marks it). The calls that read or move the offset
//! (`read`, `pread64`, `readv`, `preadv`, `preadv2`, `lseek`, `fadvise64`,
//! `readahead`, a `copy_file_range` to a host fd, `mmap`, `splice` and `sendfile` from
//! it) go to the host file; every other call (`fstat`, `fcntl`, `close`, ...) is LKL's
//! fd's, as for any LKL fd. The offset lives in one place, the host's open file
//! description, which `dup`, `fork` and `exec` share as for any host fd.
//!
//! The volume's writes reach the host file as they are made (no write-back cache), so
//! the host file is the truth: a write through LKL by another fd is seen by the next
//! passthrough read.

use std::sync::OnceLock;

use lkl_shared_kernel::ViewVolume;

use crate::dispatch::{lkl_call, nr};
use crate::fds;
use crate::helpers::{sys, PATH_MAX};

/// Files smaller than this are read through LKL: one or two reads through the window
/// cost less than the host open and the checks.
pub(crate) const MIN_SIZE: i64 = 64 << 10;

/// The tree's volumes, and every LKL mount path (the longest mount around a file says
/// whether it is a volume's).
struct Volumes {
    /// As published, each `host_dir` with a NUL appended (a system call argument).
    volumes: Vec<ViewVolume>,
    mounts: Vec<Vec<u8>>,
    debug: bool,
}

static VOLUMES: OnceLock<Volumes> = OnceLock::new();

/// Takes the tree's view. Call once, before the program runs.
pub(crate) fn init(view: &lkl_shared_kernel::FsView) {
    if view.volumes.is_empty() {
        return;
    }
    let _ = VOLUMES.set(Volumes {
        volumes: view
            .volumes
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.host_dir.push(0);
                v
            })
            .collect(),
        mounts: view.mounts.clone(),
        debug: std::env::var_os("LKL_TREE_DEBUG").is_some(),
    });
}

/// True when call `nr` (x86-64's) with arguments `a` on passthrough fd `a[0]` goes to
/// the host file.
#[inline]
pub(crate) fn to_host(nr: u64, a: &[u64; 6]) -> bool {
    match nr as libc::c_long {
        libc::SYS_read
        | libc::SYS_pread64
        | libc::SYS_readv
        | libc::SYS_preadv
        | libc::SYS_preadv2
        | libc::SYS_lseek
        | libc::SYS_fadvise64
        | libc::SYS_readahead => true,
        // To a host fd: the host copies; to an LKL fd the caller gets EXDEV (`dispatch`).
        libc::SYS_copy_file_range => fds::lkl_of(a[2]).is_none(),
        _ => false,
    }
}

/// The open flags that may read through the host: read-only, and nothing the host
/// open would do differently from LKL's (create, truncate, direct I/O, a path fd).
fn eligible(flags: i64) -> bool {
    let refused = libc::O_PATH | libc::O_TRUNC | libc::O_CREAT | libc::O_DIRECT | libc::O_TMPFILE;
    flags & i64::from(libc::O_ACCMODE) == i64::from(libc::O_RDONLY)
        && flags & i64::from(refused) == 0
}

/// Program fd `fd` was just given LKL fd `l`, opened with `flags`: when it is a
/// volume's regular file, the host file takes the place of its placeholder.
pub(crate) fn offer(fd: i64, l: i64, flags: i64) {
    let Some(v) = VOLUMES.get() else { return };
    if !eligible(flags) {
        return;
    }
    let mut st = lkl_sys::lkl_stat::default();
    let r = lkl_call(
        nr!(__lkl__NR3264_fstat),
        [l, &mut st as *mut lkl_sys::lkl_stat as i64, 0, 0, 0, 0],
    );
    if r < 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size < MIN_SIZE {
        return;
    }
    let mut link = [0u8; PATH_MAX];
    let n = crate::exec::lkl_fd_link(l, &mut link);
    if n <= 0 || n as usize >= link.len() {
        if v.debug {
            say(&[
                b"no passthrough for fd ",
                &digits(fd),
                b": LKL has no /proc/self/fd",
            ]);
        }
        return;
    }
    let n = n as usize;
    link[n] = 0;
    let path = &link[..n];
    let Some((vol, rest)) = volume_of(v, path) else {
        return;
    };
    match open_host(vol, &link[n - rest.len()..=n], &st) {
        Ok(h) => {
            // SAFETY: dup3 of our host fd onto the program's placeholder (replaced at
            // once: the number never stands for nothing), then closing ours.
            let r = unsafe {
                let r = sys(
                    libc::SYS_dup3,
                    [h as u64, fd as u64, libc::O_CLOEXEC as u64, 0, 0, 0],
                );
                sys(libc::SYS_close, [h as u64, 0, 0, 0, 0, 0]);
                r
            };
            if r >= 0 {
                fds::set_passthrough(fd);
                if v.debug {
                    say(&[b"passthrough read of ", path, b" (fd ", &digits(fd), b")"]);
                }
            }
        }
        Err(e) if v.debug => say(&[b"no passthrough for ", path, b": ", e]),
        Err(_) => {}
    }
}

/// The volume whose files `path` (LKL's absolute path) names, and the rest of the path
/// below it; `None` when the innermost mount around `path` is not a volume (a disk
/// mounted inside a volume) or `path` is the volume itself.
fn volume_of<'a>(v: &'a Volumes, path: &'a [u8]) -> Option<(&'a ViewVolume, &'a [u8])> {
    let under = |m: &[u8]| path.len() > m.len() + 1 && path.starts_with(m) && path[m.len()] == b'/';
    let innermost = v
        .mounts
        .iter()
        .filter(|m| under(m))
        .max_by_key(|m| m.len())?;
    let vol = v.volumes.iter().find(|vol| &vol.path == innermost)?;
    Some((vol, &path[innermost.len() + 1..]))
}

/// Opens `name` (NUL-terminated) below volume `vol`'s host directory (NUL-terminated
/// too, see [`Volumes`]), read-only, and checks it is the file LKL's `fstat` describes
/// (`st`): the host fd, or why not.
fn open_host(vol: &ViewVolume, name: &[u8], st: &lkl_sys::lkl_stat) -> Result<i64, &'static [u8]> {
    if name.last() != Some(&0) || vol.host_dir.last() != Some(&0) {
        return Err(b"a path without its NUL");
    }
    let dir = &vol.host_dir;
    // SAFETY: open of our NUL-terminated path.
    let d = unsafe {
        sys(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                dir.as_ptr() as u64,
                (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )
    };
    if d < 0 {
        return Err(b"the host directory cannot be opened");
    }
    let dst = host_stat(d);
    let f = if dst.is_some_and(|s| s.st_dev == vol.dev && s.st_ino == vol.ino) {
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        let how: [u64; 3] = [
            (libc::O_RDONLY
                | libc::O_CLOEXEC
                | libc::O_NOCTTY
                | libc::O_NONBLOCK
                | libc::O_NOFOLLOW) as u64,
            0,
            libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS
                | libc::RESOLVE_NO_XDEV,
        ];
        // SAFETY: openat2 of our NUL-terminated name with our open_how.
        unsafe {
            sys(
                libc::SYS_openat2,
                [
                    d as u64,
                    name.as_ptr() as u64,
                    how.as_ptr() as u64,
                    core::mem::size_of_val(&how) as u64,
                    0,
                    0,
                ],
            )
        }
    } else {
        -i64::from(libc::ESTALE)
    };
    // SAFETY: closing our directory fd.
    unsafe { sys(libc::SYS_close, [d as u64, 0, 0, 0, 0, 0]) };
    if f == -i64::from(libc::ESTALE) {
        return Err(b"the host directory is not the volume's any more");
    }
    if f < 0 {
        return Err(match -f as i32 {
            libc::ELOOP => b"a link on the host side (ELOOP)",
            libc::EXDEV => b"it leaves the host directory (EXDEV)",
            libc::EACCES | libc::EPERM => b"the host refuses the open (EACCES)",
            _ => b"the host open fails",
        });
    }
    let same = host_stat(f).is_some_and(|h| {
        h.st_mode & libc::S_IFMT == libc::S_IFREG
            && h.st_ino == st.st_ino
            && h.st_size == st.st_size
            && h.st_mtime == st.st_mtime
            && h.st_mtime_nsec == st.st_mtime_nsec as i64
    });
    // SAFETY: clearing O_NONBLOCK (there only so that no open blocks) of our fd; or
    // closing it.
    unsafe {
        if !same {
            sys(libc::SYS_close, [f as u64, 0, 0, 0, 0, 0]);
            return Err(b"the host file is not the one LKL opened");
        }
        sys(
            libc::SYS_fcntl,
            [f as u64, libc::F_SETFL as u64, 0, 0, 0, 0],
        );
    }
    Ok(f)
}

/// `fstat` of host fd `fd`.
fn host_stat(fd: i64) -> Option<libc::stat> {
    // SAFETY: an all-zero struct stat is valid.
    let mut s: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat into our struct stat.
    let r = unsafe {
        sys(
            libc::SYS_fstat,
            [fd as u64, &mut s as *mut libc::stat as u64, 0, 0, 0, 0],
        )
    };
    (r == 0).then_some(s)
}

/// True when host fd `h` still holds the file of LKL fd `l` as a passthrough fd does
/// (a regular file, open for reading, with the inode number LKL reports): after an
/// exec, or in a vfork child that may have replaced the number. `lkl` makes the LKL
/// call, leaving the slot's data area alone (it holds the fd table being handed on).
pub(crate) fn still_same(h: i64, l: i64, lkl: impl Fn(i64, [i64; 6]) -> i64) -> bool {
    // SAFETY: F_GETFL of a number.
    let fl = unsafe {
        sys(
            libc::SYS_fcntl,
            [h as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        )
    };
    if fl < 0 || fl & i64::from(libc::O_PATH | libc::O_ACCMODE) != i64::from(libc::O_RDONLY) {
        return false;
    }
    let Some(hs) = host_stat(h) else { return false };
    let mut st = lkl_sys::lkl_stat::default();
    let r = lkl(
        nr!(__lkl__NR3264_fstat),
        [l, &mut st as *mut lkl_sys::lkl_stat as i64, 0, 0, 0, 0],
    );
    r == 0
        && hs.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
        && hs.st_ino == st.st_ino
}

/// After an exec: program fd `h`, a host file [`still_same`] found to be LKL fd
/// `l`'s, is a passthrough fd again.
pub(crate) fn kept(h: i64, l: i64) {
    fds::set(h, Some(l));
    fds::set_passthrough(h);
    // A regular file, never a socket.
    fds::set_file(h);
    if VOLUMES.get().is_some_and(|v| v.debug) {
        say(&[
            b"passthrough read of fd ",
            &digits(h),
            b" kept through the exec",
        ]);
    }
}

/// `fd`'s decimal digits.
fn digits(fd: i64) -> [u8; 40] {
    let mut link = [0u8; 40];
    let n = fds::fd_link(fd, &mut link);
    let head = b"/proc/self/fd/".len();
    let mut out = [0u8; 40];
    out[..n - head].copy_from_slice(&link[head..n]);
    out
}

/// One `lkl-tree: ...` line on stderr, from parts (NULs dropped), with no allocation.
fn say(parts: &[&[u8]]) {
    let mut line = [0u8; 512];
    let mut n = 0;
    for b in [b"lkl-tree: ".as_slice()]
        .iter()
        .chain(parts)
        .flat_map(|p| p.iter())
    {
        if *b != 0 && n < line.len() - 1 {
            line[n] = *b;
            n += 1;
        }
    }
    line[n] = b'\n';
    // SAFETY: write of our buffer to fd 2.
    unsafe {
        sys(
            libc::SYS_write,
            [2, line.as_ptr() as u64, n as u64 + 1, 0, 0, 0],
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_paths() {
        assert!(eligible(i64::from(libc::O_RDONLY | libc::O_CLOEXEC)));
        assert!(eligible(i64::from(libc::O_RDONLY | libc::O_NOFOLLOW)));
        assert!(!eligible(i64::from(libc::O_RDWR)));
        assert!(!eligible(i64::from(libc::O_WRONLY)));
        assert!(!eligible(i64::from(libc::O_RDONLY | libc::O_TRUNC)));
        assert!(!eligible(i64::from(libc::O_PATH)));
        assert!(!eligible(i64::from(libc::O_RDONLY | libc::O_CREAT)));
        let vol = |p: &[u8]| ViewVolume {
            path: p.to_vec(),
            host_dir: b"/srv".to_vec(),
            ..ViewVolume::default()
        };
        let v = Volumes {
            volumes: vec![vol(b"/v"), vol(b"/v/inner")],
            mounts: vec![b"/v".to_vec(), b"/v/disk".to_vec(), b"/v/inner".to_vec()],
            debug: false,
        };
        let of = |p: &'static [u8]| volume_of(&v, p).map(|(vol, rest)| (vol.path.clone(), rest));
        assert_eq!(of(b"/v/a/b"), Some((b"/v".to_vec(), b"a/b".as_slice())));
        assert_eq!(
            of(b"/v/inner/x"),
            Some((b"/v/inner".to_vec(), b"x".as_slice()))
        );
        assert_eq!(of(b"/v/disk/x"), None, "a disk inside the volume");
        assert_eq!(of(b"/v"), None);
        assert_eq!(of(b"/vx/a"), None);
        assert_eq!(of(b"/other"), None);
        assert_eq!(&digits(1234)[..5], b"1234\0");
    }
}
