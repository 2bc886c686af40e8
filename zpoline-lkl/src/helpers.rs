//! Small helpers of the handlers: raw host calls by `libc::SYS_*` name, and `struct
//! stat` from LKL's generic layout into the program's x86-64 one.

use usermem::UserAddr;

use crate::dispatch::lkl_call;

/// The longest path the kernel takes, its NUL included.
pub(crate) const PATH_MAX: usize = libc::PATH_MAX as usize;

/// The size of the kernel's signal mask (`sigsetsize` of `rt_sigprocmask`, `ppoll`).
pub(crate) const KERNEL_SIGSET_SIZE: u64 = usermem::KERNEL_SIGSET_SIZE as u64;

/// `arch_prctl`'s code to set `%fs` (`<asm/prctl.h>`; the libc crate has no `ARCH_*`).
pub(crate) const ARCH_SET_FS: u64 = 0x1002;

/// Host system call `nr` (a `libc::SYS_*` number) as a raw `syscall`: no libc, no
/// `errno`, so it is safe with the program's `%fs`.
///
/// # Safety
/// The arguments must be what the call requires.
#[inline(always)]
pub(crate) unsafe fn sys(nr: libc::c_long, a: [u64; 6]) -> i64 {
    // SAFETY: the caller's contract.
    unsafe { trampoline::syscall6(nr as u64, a) }
}

/// LKL's `struct stat` (generic layout) as the program's x86-64 one.
pub(crate) fn stat_to_x86(s: &lkl_sys::lkl_stat) -> libc::stat {
    // SAFETY: an all-zero struct stat is valid (the padding included).
    let mut x: libc::stat = unsafe { core::mem::zeroed() };
    x.st_dev = s.st_dev;
    x.st_ino = s.st_ino;
    x.st_nlink = u64::from(s.st_nlink);
    x.st_mode = s.st_mode;
    x.st_uid = s.st_uid;
    x.st_gid = s.st_gid;
    x.st_rdev = s.st_rdev;
    x.st_size = s.st_size;
    x.st_blksize = i64::from(s.st_blksize);
    x.st_blocks = s.st_blocks;
    x.st_atime = s.st_atime;
    x.st_atime_nsec = s.st_atime_nsec as i64;
    x.st_mtime = s.st_mtime;
    x.st_mtime_nsec = s.st_mtime_nsec as i64;
    x.st_ctime = s.st_ctime;
    x.st_ctime_nsec = s.st_ctime_nsec as i64;
    x
}

/// An LKL stat-family call into a temporary, converted into the program's buffer
/// (argument `out_arg`): `-EFAULT` when that cannot be written.
pub(crate) fn lkl_stat(nr: i64, mut args: [i64; 6], out_arg: usize) -> i64 {
    let mut s = lkl_sys::lkl_stat::default();
    let out = UserAddr::new(args[out_arg] as u64);
    args[out_arg] = &mut s as *mut lkl_sys::lkl_stat as i64;
    let r = lkl_call(nr, args);
    if r == 0 {
        if let Err(f) = out.write(&stat_to_x86(&s)) {
            return f.neg_errno();
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_layout_matches_x86_64() {
        assert_eq!(core::mem::size_of::<libc::stat>(), 144);
        let s = lkl_sys::lkl_stat {
            st_dev: 1,
            st_ino: 2,
            st_mode: 0o140777,
            st_nlink: 3,
            st_uid: 4,
            st_gid: 5,
            st_size: 6,
            st_blksize: 7,
            st_blocks: 8,
            st_mtime: 9,
            ..Default::default()
        };
        let mut x = stat_to_x86(&s);
        assert_eq!(
            (x.st_dev, x.st_ino, x.st_nlink, x.st_mode, x.st_uid, x.st_gid),
            (1, 2, 3, 0o140777, 4, 5)
        );
        assert_eq!(
            (x.st_size, x.st_blksize, x.st_blocks, x.st_mtime),
            (6, 7, 8, 9)
        );
        // Into the program's memory: a good buffer, then a bad one.
        let mut y = x;
        y.st_ino = 0;
        UserAddr::new(&mut y as *mut libc::stat as u64)
            .write(&x)
            .unwrap();
        assert_eq!(y.st_ino, 2);
        x.st_ino = 0;
        assert!(UserAddr::new(8).write(&x).is_err());
    }
}
