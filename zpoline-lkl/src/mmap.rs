//! `mmap` of an LKL file. The host cannot map it: the program's fd is a placeholder
//! (an `O_PATH` descriptor of an empty memory file, see `fds.rs`). So the mapping is made of
//! anonymous memory, filled by reading the file through LKL, then given the protection
//! the program asked for:
//! - `MAP_PRIVATE`, any protection (`PROT_EXEC` included: the hook then rewrites the
//!   code as for any executable mapping, reading the file's sections through LKL),
//!   `MAP_FIXED`, any page-aligned offset; bytes past the end of the file read as zeros.
//! - `MAP_SHARED` read-only: the same copy; later writes to the file (by this process or
//!   another) are not seen through it.
//! - `MAP_SHARED` writable: refused with `ENODEV` (nothing would write it back).
//!
//! Other LKL fds (sockets, devices) get `ENODEV`, as a file without `mmap` would.

use lkl_sys as s;
use trampoline::Target;

use crate::dispatch::nr;
use crate::helpers::sys;
use crate::{kernel, marshal, wait};

const PAGE: u64 = 4096;
const PROT_READ: u64 = libc::PROT_READ as u64;
const PROT_WRITE: u64 = libc::PROT_WRITE as u64;
const MAP_TYPE: u64 = 0x0f;
const MAP_SHARED: u64 = libc::MAP_SHARED as u64;
const MAP_SHARED_VALIDATE: u64 = libc::MAP_SHARED_VALIDATE as u64;
const MAP_PRIVATE: u64 = libc::MAP_PRIVATE as u64;
const MAP_ANONYMOUS: u64 = libc::MAP_ANONYMOUS as u64;
/// Flags that name what backs the mapping (huge pages, DAX): not ours to pass on to an
/// anonymous copy. `MAP_HUGE_*` sizes are the bits from `MAP_HUGE_SHIFT` (26) up.
const BACKING: u64 = libc::MAP_HUGETLB as u64 | libc::MAP_SYNC as u64 | (0x3f << 26);

/// Bytes read per LKL `pread64`: with the shared kernel, what fits the slot's data
/// area (one copy through the window instead of one host call per page); a private LKL
/// copies straight into the mapping.
fn chunk() -> usize {
    if kernel::shared() {
        marshal::ROOM & !(PAGE as usize - 1)
    } else {
        1 << 20
    }
}

/// `mmap(addr, len, prot, flags, fd, off)` (`a`) where `fd` is LKL fd `l`.
pub(crate) fn map(a: &[u64; 6], l: i64) -> (i64, Target) {
    let (addr, len, prot, flags, off) = (a[0], a[1], a[2], a[3], a[5]);
    let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
    if len == 0 || off % PAGE != 0 || (!shared && flags & MAP_TYPE != MAP_PRIVATE) {
        return (-i64::from(libc::EINVAL), Target::Interposer);
    }
    wait::in_world(|| {
        let size = match check(l, shared && prot & PROT_WRITE != 0) {
            Ok(size) => size,
            Err(e) => return e,
        };
        let keep = flags & !(MAP_TYPE | BACKING);
        // SAFETY: an anonymous private mapping where the program asked for its file
        // mapping (MAP_FIXED replaces what is there, as the program's call would).
        let m = unsafe {
            sys(
                libc::SYS_mmap,
                [
                    addr,
                    len,
                    PROT_READ | PROT_WRITE,
                    keep | MAP_PRIVATE | MAP_ANONYMOUS,
                    u64::MAX,
                    0,
                ],
            )
        };
        if m < 0 {
            return m;
        }
        let want = len.min(size.saturating_sub(off));
        let r = fill(l, m as u64, want, off);
        let r = if r < 0 {
            r
        } else if prot != PROT_READ | PROT_WRITE {
            // SAFETY: the protection the program asked for, on the mapping just made.
            unsafe { sys(libc::SYS_mprotect, [m as u64, len, prot, 0, 0, 0]) }
        } else {
            0
        };
        if r < 0 {
            // SAFETY: unmapping the mapping just made for this call.
            unsafe { sys(libc::SYS_munmap, [m as u64, len, 0, 0, 0, 0]) };
            return r;
        }
        m
    })
}

/// In our world: the size of LKL file `l` if it can be mapped so (`shared_write`:
/// `MAP_SHARED` with `PROT_WRITE`), else the call's negative errno.
fn check(l: i64, shared_write: bool) -> Result<u64, i64> {
    let mut st = s::lkl_stat::default();
    let r = kernel::call(
        nr!(__lkl__NR3264_fstat),
        [l, &mut st as *mut s::lkl_stat as i64, 0, 0, 0, 0],
    );
    if r < 0 {
        return Err(r);
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(-i64::from(libc::ENODEV));
    }
    let fl = kernel::call(
        nr!(__lkl__NR3264_fcntl),
        [l, i64::from(libc::F_GETFL), 0, 0, 0, 0],
    );
    if fl < 0 {
        return Err(fl);
    }
    let mode = fl & i64::from(libc::O_ACCMODE);
    if mode == i64::from(libc::O_WRONLY) || (shared_write && mode != i64::from(libc::O_RDWR)) {
        return Err(-i64::from(libc::EACCES));
    }
    if shared_write {
        return Err(-i64::from(libc::ENODEV));
    }
    Ok(st.st_size.max(0) as u64)
}

/// In our world: reads `len` bytes of LKL file `l` from `off` into `[dst, dst + len)`;
/// stops early at the end of the file (the rest stays zero). 0, or a negative errno.
fn fill(l: i64, dst: u64, len: u64, off: u64) -> i64 {
    let step = chunk() as u64;
    let mut done = 0u64;
    let mut interrupted = 0;
    while done < len {
        let want = (len - done).min(step);
        let r = kernel::call(
            nr!(__lkl__NR_pread64),
            [
                l,
                (dst + done) as i64,
                want as i64,
                (off + done) as i64,
                0,
                0,
            ],
        );
        match r {
            0 => break,
            r if r > 0 => done += r as u64,
            // A signal interrupted the read (shared kernel): mmap is not interrupted.
            r if r == -i64::from(libc::EINTR) && interrupted < 100 => interrupted += 1,
            r => return r,
        }
    }
    0
}
