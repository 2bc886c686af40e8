//! What the interposer reads of a program in LKL's file system to exec it: the first
//! bytes of a file (`execve`'s checks, [`Lkl::read_head`]), and the path of an LKL
//! directory fd (`execveat` relative to it, [`Lkl::fd_path`]). Neither gives the
//! program a descriptor: a vfork child makes these calls in its parent's memory, whose
//! fd table (`fds.rs`) must not change.

use trampoline::Head;

use crate::dispatch::nr;
use crate::paths::{PathBuf, Place};
use crate::{fds, wait, Lkl};

const AT_FDCWD: i64 = libc::AT_FDCWD as i64;

impl Lkl {
    /// [`trampoline::Backend::read_head`]: LKL's file for a path of LKL's, else the
    /// host's.
    pub(crate) fn head(&self, path: u64, buf: &mut [u8]) -> Head {
        let mut p = PathBuf::new();
        let d = match self.path_arg(AT_FDCWD as u64, path, &mut p) {
            Ok(Place::Host) => return trampoline::host_read_head(path, buf),
            Ok(Place::HostAbs) => return trampoline::host_read_head(p.arg() as u64, buf),
            Ok(Place::Lkl(d)) => d,
            Err(e) => {
                return Head::OpenFailed {
                    errno: e,
                    backend: false,
                }
            }
        };
        let mut got = Head::ReadFailed;
        let _ = wait::in_world(|| {
            let fd = crate::kernel::call(
                nr!(__lkl__NR_openat),
                [
                    d,
                    p.arg(),
                    i64::from(libc::O_RDONLY | libc::O_CLOEXEC),
                    0,
                    0,
                    0,
                ],
            );
            if fd < 0 {
                got = Head::OpenFailed {
                    errno: fd,
                    backend: true,
                };
                return fd;
            }
            let n = crate::kernel::call(
                nr!(__lkl__NR_read),
                [fd, buf.as_mut_ptr() as i64, buf.len() as i64, 0, 0, 0],
            );
            crate::kernel::call(nr!(__lkl__NR_close), [fd, 0, 0, 0, 0, 0]);
            if n >= 0 {
                got = Head::Read(n as usize);
            }
            n
        });
        got
    }

    /// [`trampoline::Backend::fd_path`]: LKL's own name of the LKL fd behind program fd
    /// `fd`, from LKL's `/proc/self/fd` (so LKL must have `proc` mounted).
    pub(crate) fn lkl_fd_path(&self, fd: i32, buf: &mut [u8]) -> i64 {
        let Some(l) = fds::lkl_of(fd as u64) else {
            return -i64::from(libc::EBADF);
        };
        let r = lkl_fd_link(l, buf);
        if r >= buf.len() as i64 {
            return -i64::from(libc::ENAMETOOLONG);
        }
        if r > 0 && buf[0] != b'/' {
            // Not a path (a socket, a pipe): nothing to exec relative to.
            return -i64::from(libc::ENOTDIR);
        }
        r
    }
}

/// LKL's name of its fd `l` (its `/proc/self/fd/L`, so LKL must have `proc` mounted)
/// into `buf`: the length (`buf.len()` when cut short) or a negative errno.
pub(crate) fn lkl_fd_link(l: i64, buf: &mut [u8]) -> i64 {
    let mut link = [0u8; 40];
    fds::fd_link(l, &mut link);
    let text = link.as_ptr() as u64;
    let (r, _) = wait::in_world(|| {
        crate::kernel::call(
            nr!(__lkl__NR_readlinkat),
            [
                AT_FDCWD,
                text as i64,
                buf.as_mut_ptr() as i64,
                buf.len() as i64,
                0,
                0,
            ],
        )
    });
    r
}
