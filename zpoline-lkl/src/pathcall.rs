//! The file-system calls by path when some paths are LKL's (`--root`, `--mount`; see
//! `paths.rs`): each goes to the kernel its path belongs to. The x86-64 calls without
//! a directory fd (`mkdir`, `unlink`, `chown`…) become LKL's `*at` calls; `utime` and
//! `utimes` become `utimensat`. A call naming two paths (`rename`, `link`) on both
//! kernels fails with `EXDEV`, as across mounts. `chdir`/`fchdir` move the cwd between
//! the kernels, `chroot` into LKL's files makes every path LKL's, and the identity
//! calls are LKL's when the tree is rooted in an image (it runs as root there,
//! whatever the host user).

use trampoline::Target;
use usermem::UserAddr;

use crate::dispatch::{host, lkl_call, nr, on_lkl};
use crate::fds;
use crate::helpers::lkl_stat;
use crate::paths::{self, PathBuf, Place};

const AT_FDCWD_U: u64 = libc::AT_FDCWD as i64 as u64;

fn refused(neg_errno: i64) -> (i64, Target) {
    (neg_errno, Target::Interposer)
}

/// One path argument: its directory fd's argument (`None`: the cwd), its own, and
/// whether the call follows a link in its last component.
#[derive(Clone, Copy)]
struct PathArg {
    dirfd: Option<usize>,
    path: usize,
    follow: bool,
}

const fn at(dirfd: usize, path: usize) -> PathArg {
    PathArg {
        dirfd: Some(dirfd),
        path,
        follow: true,
    }
}

const fn cwd(path: usize) -> PathArg {
    PathArg {
        dirfd: None,
        path,
        follow: true,
    }
}

impl PathArg {
    /// The call does not follow a link in the last component.
    const fn nofollow(self) -> PathArg {
        self.follow_if(false)
    }

    /// The call follows a link in the last component when `follow`.
    const fn follow_if(self, follow: bool) -> PathArg {
        PathArg {
            dirfd: self.dirfd,
            path: self.path,
            follow,
        }
    }
}

/// Runs x86-64 call `nr` on the path argument `arg` placed at `place` (its LKL form or
/// absolute form in `buf`).
fn run_at(
    nr: u64,
    a: &[u64; 6],
    arg: PathArg,
    place: Place,
    buf: &PathBuf,
    lkl: &impl Fn(i64, i64) -> i64,
) -> (i64, Target) {
    match place {
        Place::Host => host(nr, a),
        Place::HostAbs => {
            let mut b = *a;
            b[arg.path] = buf.arg() as u64;
            if let Some(k) = arg.dirfd {
                b[k] = AT_FDCWD_U;
            }
            host(nr, &b)
        }
        Place::Lkl(d) => on_lkl(lkl(d, buf.arg())),
    }
}

/// Serves x86-64 call `nr` on one path: the host's call unchanged, the host's on the
/// rewritten path, or `lkl(dirfd, path)` on LKL.
fn one(nr: u64, a: &[u64; 6], arg: PathArg, lkl: impl Fn(i64, i64) -> i64) -> (i64, Target) {
    let mut buf = PathBuf::new();
    let dirfd = arg.dirfd.map_or(AT_FDCWD_U, |k| a[k]);
    let place = match paths::place(dirfd, a[arg.path], &mut buf) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    run_placed(nr, a, arg, place, &mut buf, lkl)
}

/// Serves x86-64 call `nr` on its path argument `(dirfd, path, follow)` (as
/// [`PathArg`]) already placed at `first` (its LKL or absolute form in `buf`): runs it
/// there, and once more where a link really leads when that kernel missed
/// (`paths::reroute`).
pub(crate) fn placed(
    nr: u64,
    a: &[u64; 6],
    (dirfd, path, follow): (Option<usize>, usize, bool),
    first: Place,
    buf: &mut PathBuf,
    lkl: impl Fn(i64, i64) -> i64,
) -> (i64, Target) {
    run_placed(
        nr,
        a,
        PathArg {
            dirfd,
            path,
            follow,
        },
        first,
        buf,
        lkl,
    )
}

fn run_placed(
    nr: u64,
    a: &[u64; 6],
    arg: PathArg,
    place: Place,
    buf: &mut PathBuf,
    lkl: impl Fn(i64, i64) -> i64,
) -> (i64, Target) {
    let r = run_at(nr, a, arg, place, buf, &lkl);
    if paths::missed(r.0) {
        let dirfd = arg.dirfd.map_or(AT_FDCWD_U, |k| a[k]);
        if let Some(p) = paths::reroute(dirfd, a[arg.path], arg.follow, place, buf) {
            return run_at(nr, a, arg, p, buf, &lkl);
        }
    }
    r
}

/// Serves x86-64 call `nr` on two paths: both LKL's, `lkl(dirfd1, path1, dirfd2,
/// path2)`; both the host's, the host's call; one on each, `EXDEV`.
fn two(
    nr: u64,
    a: &[u64; 6],
    first: PathArg,
    second: PathArg,
    lkl: impl Fn(i64, i64, i64, i64) -> i64,
) -> (i64, Target) {
    let mut b1 = PathBuf::new();
    let mut b2 = PathBuf::new();
    let d1 = first.dirfd.map_or(AT_FDCWD_U, |k| a[k]);
    let d2 = second.dirfd.map_or(AT_FDCWD_U, |k| a[k]);
    let mut p1 = match paths::place(d1, a[first.path], &mut b1) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let mut p2 = match paths::place(d2, a[second.path], &mut b2) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let r = run_two(nr, a, (first, p1, &b1), (second, p2, &b2), &lkl);
    if !paths::missed(r.0) {
        return r;
    }
    let mut moved = false;
    if let Some(p) = paths::reroute(d1, a[first.path], first.follow, p1, &mut b1) {
        (p1, moved) = (p, true);
    }
    if let Some(p) = paths::reroute(d2, a[second.path], second.follow, p2, &mut b2) {
        (p2, moved) = (p, true);
    }
    if !moved {
        return r;
    }
    run_two(nr, a, (first, p1, &b1), (second, p2, &b2), &lkl)
}

/// [`two`] once both paths are placed.
fn run_two(
    nr: u64,
    a: &[u64; 6],
    (first, p1, b1): (PathArg, Place, &PathBuf),
    (second, p2, b2): (PathArg, Place, &PathBuf),
    lkl: &impl Fn(i64, i64, i64, i64) -> i64,
) -> (i64, Target) {
    match (p1, p2) {
        (Place::Lkl(x), Place::Lkl(y)) => on_lkl(lkl(x, b1.arg(), y, b2.arg())),
        (Place::Lkl(_), _) | (_, Place::Lkl(_)) => refused(-i64::from(libc::EXDEV)),
        (p1, p2) => {
            let mut b = *a;
            for (p, buf, arg) in [(p1, b1, first), (p2, b2, second)] {
                if p == Place::HostAbs {
                    b[arg.path] = buf.arg() as u64;
                    if let Some(k) = arg.dirfd {
                        b[k] = AT_FDCWD_U;
                    }
                }
            }
            host(nr, &b)
        }
    }
}

/// `struct timeval[2]` (or NULL) at `tv` as `struct timespec[2]` in `ts`; the
/// pointer to give `utimensat`.
fn timevals(tv: u64, ts: &mut [[i64; 2]; 2]) -> Result<i64, i64> {
    if tv == 0 {
        return Ok(0);
    }
    let v = UserAddr::new(tv)
        .read::<[[i64; 2]; 2]>()
        .map_err(|f| f.neg_errno())?;
    for k in 0..2 {
        if !(0..1_000_000).contains(&v[k][1]) {
            return Err(-i64::from(libc::EINVAL));
        }
        ts[k] = [v[k][0], v[k][1] * 1000];
    }
    Ok(ts.as_ptr() as i64)
}

/// True unless `flags` has `AT_SYMLINK_NOFOLLOW`.
fn follows(flags: u64) -> bool {
    flags & libc::AT_SYMLINK_NOFOLLOW as u64 == 0
}

/// Serves path call `nr` (a `Handler::Path` entry).
pub(crate) fn dispatch(nr: u64, a: &[u64; 6]) -> (i64, Target) {
    let i = |k: usize| a[k] as i64;
    use libc as c;
    match nr as libc::c_long {
        c::SYS_mkdir => one(nr, a, cwd(0).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_mkdirat), [d, p, i(1), 0, 0, 0])
        }),
        c::SYS_mkdirat => one(nr, a, at(0, 1).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_mkdirat), [d, p, i(2), 0, 0, 0])
        }),
        c::SYS_rmdir => one(nr, a, cwd(0).nofollow(), |d, p| {
            lkl_call(
                nr!(__lkl__NR_unlinkat),
                [d, p, i64::from(c::AT_REMOVEDIR), 0, 0, 0],
            )
        }),
        c::SYS_unlink => one(nr, a, cwd(0).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_unlinkat), [d, p, 0, 0, 0, 0])
        }),
        c::SYS_unlinkat => one(nr, a, at(0, 1).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_unlinkat), [d, p, i(2), 0, 0, 0])
        }),
        c::SYS_chmod => one(nr, a, cwd(0), |d, p| {
            lkl_call(nr!(__lkl__NR_fchmodat), [d, p, i(1), 0, 0, 0])
        }),
        c::SYS_fchmodat => one(nr, a, at(0, 1), |d, p| {
            lkl_call(nr!(__lkl__NR_fchmodat), [d, p, i(2), 0, 0, 0])
        }),
        c::SYS_chown | c::SYS_lchown => {
            let flags = if nr == c::SYS_lchown as u64 {
                i64::from(c::AT_SYMLINK_NOFOLLOW)
            } else {
                0
            };
            one(nr, a, cwd(0).follow_if(flags == 0), |d, p| {
                lkl_call(nr!(__lkl__NR_fchownat), [d, p, i(1), i(2), flags, 0])
            })
        }
        c::SYS_fchownat => one(nr, a, at(0, 1).follow_if(follows(a[4])), |d, p| {
            lkl_call(nr!(__lkl__NR_fchownat), [d, p, i(2), i(3), i(4), 0])
        }),
        c::SYS_readlink => one(nr, a, cwd(0).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_readlinkat), [d, p, i(1), i(2), 0, 0])
        }),
        c::SYS_readlinkat => one(nr, a, at(0, 1).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_readlinkat), [d, p, i(2), i(3), 0, 0])
        }),
        c::SYS_mknod => one(nr, a, cwd(0).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_mknodat), [d, p, i(1), i(2), 0, 0])
        }),
        c::SYS_mknodat => one(nr, a, at(0, 1).nofollow(), |d, p| {
            lkl_call(nr!(__lkl__NR_mknodat), [d, p, i(2), i(3), 0, 0])
        }),
        c::SYS_truncate => one(nr, a, cwd(0), |_, p| {
            lkl_call(nr!(__lkl__NR3264_truncate), [p, i(1), 0, 0, 0, 0])
        }),
        c::SYS_statfs => one(nr, a, cwd(0), |_, p| {
            lkl_call(nr!(__lkl__NR3264_statfs), [p, i(1), 0, 0, 0, 0])
        }),
        c::SYS_getxattr
        | c::SYS_lgetxattr
        | c::SYS_setxattr
        | c::SYS_lsetxattr
        | c::SYS_listxattr
        | c::SYS_llistxattr
        | c::SYS_removexattr
        | c::SYS_lremovexattr => {
            let Some(n) = crate::table::lkl_nr(nr) else {
                return refused(-i64::from(c::ENOSYS));
            };
            let follow = matches!(
                nr as libc::c_long,
                c::SYS_getxattr | c::SYS_setxattr | c::SYS_listxattr | c::SYS_removexattr
            );
            one(nr, a, cwd(0).follow_if(follow), |_, p| {
                lkl_call(n, [p, i(1), i(2), i(3), i(4), 0])
            })
        }
        c::SYS_utimensat => one(nr, a, at(0, 1).follow_if(follows(a[3])), |d, p| {
            let p = if a[1] == 0 { 0 } else { p };
            lkl_call(nr!(__lkl__NR_utimensat), [d, p, i(2), i(3), 0, 0])
        }),
        c::SYS_utimes | c::SYS_futimesat => {
            let (arg, tv) = if nr == c::SYS_utimes as u64 {
                (cwd(0), a[1])
            } else {
                (at(0, 1), a[2])
            };
            one(nr, a, arg, |d, p| {
                let mut ts = [[0i64; 2]; 2];
                match timevals(tv, &mut ts) {
                    Ok(t) => lkl_call(nr!(__lkl__NR_utimensat), [d, p, t, 0, 0, 0]),
                    Err(e) => e,
                }
            })
        }
        c::SYS_utime => one(nr, a, cwd(0), |d, p| {
            // struct utimbuf { time_t actime, modtime; } or NULL (now).
            let t = if a[1] == 0 {
                None
            } else {
                match UserAddr::new(a[1]).read::<[i64; 2]>() {
                    Ok(v) => Some([[v[0], 0], [v[1], 0]]),
                    Err(f) => return f.neg_errno(),
                }
            };
            let tp = t.as_ref().map_or(0, |t| t.as_ptr() as i64);
            lkl_call(nr!(__lkl__NR_utimensat), [d, p, tp, 0, 0, 0])
        }),
        c::SYS_rename => two(
            nr,
            a,
            cwd(0).nofollow(),
            cwd(1).nofollow(),
            |d1, p1, d2, p2| lkl_call(nr!(__lkl__NR_renameat2), [d1, p1, d2, p2, 0, 0]),
        ),
        c::SYS_renameat => two(
            nr,
            a,
            at(0, 1).nofollow(),
            at(2, 3).nofollow(),
            |d1, p1, d2, p2| lkl_call(nr!(__lkl__NR_renameat2), [d1, p1, d2, p2, 0, 0]),
        ),
        c::SYS_renameat2 => two(
            nr,
            a,
            at(0, 1).nofollow(),
            at(2, 3).nofollow(),
            |d1, p1, d2, p2| lkl_call(nr!(__lkl__NR_renameat2), [d1, p1, d2, p2, i(4), 0]),
        ),
        c::SYS_link => two(
            nr,
            a,
            cwd(0).nofollow(),
            cwd(1).nofollow(),
            |d1, p1, d2, p2| lkl_call(nr!(__lkl__NR_linkat), [d1, p1, d2, p2, 0, 0]),
        ),
        c::SYS_linkat => two(
            nr,
            a,
            at(0, 1).follow_if(a[4] & libc::AT_SYMLINK_FOLLOW as u64 != 0),
            at(2, 3).nofollow(),
            |d1, p1, d2, p2| lkl_call(nr!(__lkl__NR_linkat), [d1, p1, d2, p2, i(4), 0]),
        ),
        // The target is the link's contents, not a path to resolve.
        c::SYS_symlink | c::SYS_symlinkat => {
            let arg = if nr == c::SYS_symlink as u64 {
                cwd(1).nofollow()
            } else {
                at(1, 2).nofollow()
            };
            one(nr, a, arg, |d, p| {
                let mut target = PathBuf::new();
                match target.read(a[0]) {
                    Ok(()) => lkl_call(nr!(__lkl__NR_symlinkat), [target.arg(), d, p, 0, 0, 0]),
                    Err(e) => e,
                }
            })
        }
        c::SYS_chdir if crate::kernel::shared() && crate::dispatch::vfork_child() => {
            spawn_chdir(nr, a)
        }
        c::SYS_chdir => {
            let (r, t) = one(nr, a, cwd(0), |_, p| {
                lkl_call(nr!(__lkl__NR_chdir), [p, 0, 0, 0, 0, 0])
            });
            if r == 0 {
                moved_cwd(t == Target::Lkl);
            }
            (r, t)
        }
        c::SYS_fchdir => match fds::lkl_of(a[0]) {
            Some(l) => {
                let r = lkl_call(nr!(__lkl__NR_fchdir), [l, 0, 0, 0, 0, 0]);
                if r == 0 {
                    paths::set_cwd_lkl(true);
                }
                on_lkl(r)
            }
            None => {
                let (r, t) = host(nr, a);
                if r == 0 {
                    moved_cwd(false);
                }
                (r, t)
            }
        },
        c::SYS_getcwd if paths::cwd_lkl() => {
            on_lkl(lkl_call(nr!(__lkl__NR_getcwd), [i(0), i(1), 0, 0, 0, 0]))
        }
        c::SYS_chroot => {
            let (r, t) = one(nr, a, cwd(0), |_, p| {
                lkl_call(nr!(__lkl__NR_chroot), [p, 0, 0, 0, 0, 0])
            });
            if r == 0 && t == Target::Lkl {
                paths::set_rooted();
            }
            (r, t)
        }
        c::SYS_mount => one(nr, a, cwd(1), |_, p| {
            lkl_call(nr!(__lkl__NR_mount), [i(0), p, i(2), i(3), i(4), 0])
        }),
        c::SYS_umount2 => one(nr, a, cwd(0).follow_if(a[1] & 8 == 0), |_, p| {
            lkl_call(nr!(__lkl__NR_umount2), [p, i(1), 0, 0, 0, 0])
        }),
        c::SYS_pivot_root => two(nr, a, cwd(0), cwd(1), |_, p1, _, p2| {
            lkl_call(nr!(__lkl__NR_pivot_root), [p1, p2, 0, 0, 0, 0])
        }),
        // An inotify instance watches one kernel's files: LKL's when rooted.
        c::SYS_inotify_init | c::SYS_inotify_init1 => {
            if !paths::rooted() {
                return host(nr, a);
            }
            let flags = if nr == c::SYS_inotify_init as u64 {
                0
            } else {
                i(0)
            };
            let l = lkl_call(nr!(__lkl__NR_inotify_init1), [flags, 0, 0, 0, 0, 0]);
            if l < 0 {
                return on_lkl(l);
            }
            on_lkl(fds::adopt(l, 0, crate::dispatch::lkl_close))
        }
        // A watch on an LKL path needs an LKL instance and the other way round
        // (EXDEV); LKL's call has no directory fd, so the path must be absolute or
        // relative to LKL's cwd.
        c::SYS_inotify_add_watch => {
            let mut arg = cwd(1);
            if a[2] & c::IN_DONT_FOLLOW as u64 != 0 {
                arg = arg.nofollow();
            }
            match fds::lkl_of(a[0]) {
                None => one(nr, a, arg, |_, _| -i64::from(c::EXDEV)),
                Some(l) => one(nr, a, arg, |d, p| {
                    if d != i64::from(c::AT_FDCWD) {
                        return -i64::from(c::EXDEV);
                    }
                    lkl_call(nr!(__lkl__NR_inotify_add_watch), [l, p, i(2), 0, 0, 0])
                }),
            }
        }
        c::SYS_umask => {
            // Both kernels create files: both take the mask.
            let (h, _) = host(nr, a);
            let l = lkl_call(nr!(__lkl__NR_umask), [i(0) & 0o777, 0, 0, 0, 0, 0]);
            if paths::rooted() && l >= 0 {
                on_lkl(l)
            } else {
                (h, Target::Host)
            }
        }
        _ => host(nr, a),
    }
}

/// `chdir` in a vfork child (`posix_spawn`'s, `subprocess`'s `cwd=`): the child calls
/// LKL as its parent until it executes, so it first gets an LKL process of its own
/// (`kernel::own_process`), whose cwd moves; the exec'd image finds it there. A host
/// `chdir` is the child's own already (and LKL's cwd then goes to the root, see
/// [`moved_cwd`]). The flag of where the cwd is stays the parent's: the new image
/// sets its own.
fn spawn_chdir(nr: u64, a: &[u64; 6]) -> (i64, Target) {
    let as_child = |path: i64| {
        crate::wait::in_world(|| match crate::kernel::own_process() {
            Ok(()) => crate::kernel::call(nr!(__lkl__NR_chdir), [path, 0, 0, 0, 0, 0]),
            Err(e) => e,
        })
        .0
    };
    let mut buf = PathBuf::new();
    match paths::place(AT_FDCWD_U, a[0], &mut buf) {
        Err(e) => refused(e),
        Ok(Place::Lkl(_)) => on_lkl(as_child(buf.arg())),
        Ok(p) => {
            let mut b = *a;
            if p == Place::HostAbs {
                b[0] = buf.arg() as u64;
            }
            let (r, t) = host(nr, &b);
            if r == 0 && paths::cwd_lkl() && !paths::rooted() {
                as_child(c"/".as_ptr() as i64);
            }
            (r, t)
        }
    }
}

/// The cwd moved to LKL's files (`lkl`) or to the host's: when to the host's, LKL's
/// cwd goes back to its root, so that an exec'd image finds where the cwd is
/// ([`init_cwd`]).
fn moved_cwd(lkl: bool) {
    if !lkl && paths::cwd_lkl() && !paths::rooted() {
        lkl_call(nr!(__lkl__NR_chdir), [c"/".as_ptr() as i64, 0, 0, 0, 0, 0]);
    }
    paths::set_cwd_lkl(lkl);
}

/// This process's LKL credentials become `uid`:`gid` (see `crate::set_identity`).
pub(crate) fn set_identity(uid: u32, gid: u32) -> Result<(), i64> {
    let (u, g) = (i64::from(uid), i64::from(gid));
    for (nr, args) in [
        (nr!(__lkl__NR_setgroups), [0, 0, 0, 0, 0, 0]),
        (nr!(__lkl__NR_setresgid), [g, g, g, 0, 0, 0]),
        (nr!(__lkl__NR_setresuid), [u, u, u, 0, 0, 0]),
    ] {
        let r = lkl_call(nr, args);
        if r < 0 {
            return Err(r);
        }
    }
    Ok(())
}

/// Serves an identity call (`getuid`, `setresgid`…): LKL's when rooted.
pub(crate) fn identity(nr: u64, a: &[u64; 6]) -> (i64, Target) {
    if !paths::rooted() {
        return host(nr, a);
    }
    match crate::table::lkl_nr(nr) {
        Some(n) => on_lkl(lkl_call(n, a.map(|x| x as i64))),
        None => host(nr, a),
    }
}

/// `stat`/`lstat`/`newfstatat` of an LKL path: LKL's `struct stat` converted.
pub(crate) fn stat_lkl(d: i64, p: i64, out: u64, flags: i64) -> i64 {
    lkl_stat(
        nr!(__lkl__NR3264_fstatat),
        [d, p, out as i64, flags, 0, 0],
        2,
    )
}

/// Sets the cwd's kernel at the start of a process image: rooted, LKL's; with mounts,
/// LKL's when LKL's cwd is in a mount (an exec'd image of a process whose cwd was
/// there), or when the host's cwd names a mount's path (then LKL's cwd moves there).
pub(crate) fn init_cwd() {
    if !paths::active() || paths::rooted() {
        return;
    }
    let mut buf = [0u8; crate::helpers::PATH_MAX];
    if paths::getcwd(true, &mut buf).is_some_and(|n| paths::under_mount(&buf[..n])) {
        paths::set_cwd_lkl(true);
        return;
    }
    if paths::getcwd(false, &mut buf).is_some_and(|n| paths::under_mount(&buf[..n])) {
        // getcwd left the path NUL-terminated.
        let ok = lkl_call(nr!(__lkl__NR_chdir), [buf.as_ptr() as i64, 0, 0, 0, 0, 0]);
        paths::set_cwd_lkl(ok == 0);
    }
}
