//! Arguments copied through the window for the shared kernel's frequent calls.
//!
//! The kernel process reaches a program's memory with `process_vm_readv`/`writev`
//! (about 1.5 us each on a VM), and a `getsockname` touches it three times. For the
//! calls below, the pointed-to bytes are copied into the calling thread's slot data
//! area instead, the call is made on window addresses (a `memcpy` for LKL), and what
//! the kernel wrote is copied back. As with a private kernel, the copies are plain
//! loads and stores: a bad pointer faults here, where the host kernel would return
//! `EFAULT` (see `docs/zpoline.md`, Limits). Calls and sizes not listed, or larger than
//! the data area, go unchanged and the kernel process reads the program's memory.

use lkl_sys as s;

/// Bytes of the data area used (a little is kept for alignment).
pub(crate) const ROOM: usize = lkl_shared_kernel::window::DATA_SIZE - 256;
/// Largest socket address or option value copied.
const SMALL: usize = 4096;
/// LKL's `struct epoll_event` (not packed, unlike x86-64's).
const EV: usize = core::mem::size_of::<s::lkl_epoll_event>();

/// One pointer argument: which, how many bytes go in, how many may come out.
#[derive(Clone, Copy, Default)]
struct Arg {
    idx: usize,
    len: usize,
    copy_in: bool,
    copy_out: bool,
}

/// How much of an output argument to copy back after the call returned `ret`.
#[derive(Clone, Copy)]
enum Back {
    /// Everything the argument may hold, when `ret >= 0`.
    All,
    /// `ret` bytes (read and receive buffers).
    Ret,
    /// `ret` entries of this size (epoll events).
    RetTimes(usize),
    /// As many bytes as the `i32` length argument `k` says after the call, at most the
    /// argument's size (socket addresses, option values).
    LenArg(usize),
}

/// The size of a NUL-terminated path at `p` (ours: the handlers copy the program's
/// paths first), its NUL included; at most `PATH_MAX`.
fn cstr_size(p: i64) -> usize {
    let p = p as *const u8;
    let mut n = 0;
    // SAFETY: `p` is a NUL-terminated path in our memory (see the doc).
    while n < crate::helpers::PATH_MAX && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n + 1
}

/// LKL's `struct stat` and `struct statfs` (the generic layouts).
const STAT: usize = core::mem::size_of::<s::lkl_stat>();
const STATX: usize = core::mem::size_of::<s::lkl_statx>();
const STATFS: usize = core::mem::size_of::<s::lkl_statfs>();
const _: () = assert!(STATFS == core::mem::size_of::<libc::statfs>());

/// Reads the `i32` at `p` (the program's).
fn read_i32(p: i64) -> usize {
    // SAFETY: the program passed a length pointer for this call (see the module doc).
    unsafe { (p as *const i32).read_unaligned() }.clamp(0, SMALL as i32) as usize
}

/// The plan for LKL call `nr`: up to four arguments.
fn plan(nr: i64, a: &[i64; 6]) -> Option<([(Arg, Back); 4], usize)> {
    let mut out = [(Arg::default(), Back::All); 4];
    let mut n = 0;
    let mut add = |idx: usize, len: usize, copy_in: bool, copy_out: bool, back: Back| {
        out[n] = (
            Arg {
                idx,
                len,
                copy_in,
                copy_out,
            },
            back,
        );
        n += 1;
    };
    let nr = nr as u32;
    // A path argument (ours, see [`cstr_size`]); NULL is left alone.
    let path = |add: &mut dyn FnMut(usize, usize, bool, bool, Back), k: usize| {
        if a[k] != 0 {
            add(k, cstr_size(a[k]), true, false, Back::All);
        }
    };
    let addr_out =
        |add: &mut dyn FnMut(usize, usize, bool, bool, Back), addr: usize, lenp: usize| {
            if a[addr] != 0 && a[lenp] != 0 {
                let l = read_i32(a[lenp]);
                add(lenp, 4, true, true, Back::All);
                add(addr, l, false, true, Back::LenArg(lenp));
            }
        };
    match nr {
        s::__lkl__NR_read => add(1, a[2] as usize, false, true, Back::Ret),
        s::__lkl__NR_write => add(1, a[2] as usize, true, false, Back::All),
        s::__lkl__NR_recvfrom => {
            add(1, a[2] as usize, false, true, Back::Ret);
            addr_out(&mut add, 4, 5);
        }
        s::__lkl__NR_sendto => {
            add(1, a[2] as usize, true, false, Back::All);
            if a[4] != 0 {
                add(4, (a[5] as usize).min(SMALL), true, false, Back::All);
            }
        }
        s::__lkl__NR_getsockname | s::__lkl__NR_getpeername => addr_out(&mut add, 1, 2),
        s::__lkl__NR_accept4 | s::__lkl__NR_accept => addr_out(&mut add, 1, 2),
        s::__lkl__NR_bind | s::__lkl__NR_connect => {
            add(1, (a[2] as usize).min(SMALL), true, false, Back::All)
        }
        s::__lkl__NR_setsockopt if a[3] != 0 => {
            add(3, (a[4] as usize).min(SMALL), true, false, Back::All)
        }
        s::__lkl__NR_getsockopt if a[3] != 0 && a[4] != 0 => {
            let l = read_i32(a[4]);
            add(4, 4, true, true, Back::All);
            add(3, l, true, true, Back::LenArg(4));
        }
        s::__lkl__NR_ppoll => {
            add(0, (a[1] as usize).saturating_mul(8), true, true, Back::All);
            if a[2] != 0 {
                add(2, 16, true, false, Back::All);
            }
            if a[3] != 0 {
                add(3, (a[4] as usize).min(128), true, false, Back::All);
            }
        }
        s::__lkl__NR_epoll_pwait => {
            add(
                1,
                (a[2] as usize).saturating_mul(EV),
                false,
                true,
                Back::RetTimes(EV),
            );
            if a[4] != 0 {
                add(4, (a[5] as usize).min(128), true, false, Back::All);
            }
        }
        s::__lkl__NR_epoll_ctl if a[3] != 0 => add(3, EV, true, false, Back::All),
        // Files (the handlers pass paths they copied).
        s::__lkl__NR_pread64 => add(1, a[2] as usize, false, true, Back::Ret),
        s::__lkl__NR_pwrite64 => add(1, a[2] as usize, true, false, Back::All),
        s::__lkl__NR_getdents64 => add(1, a[2] as usize, false, true, Back::Ret),
        s::__lkl__NR3264_fstat => add(1, STAT, false, true, Back::All),
        s::__lkl__NR3264_fstatat => {
            path(&mut add, 1);
            add(2, STAT, false, true, Back::All);
        }
        s::__lkl__NR_statx => {
            path(&mut add, 1);
            add(4, STATX, false, true, Back::All);
        }
        s::__lkl__NR3264_statfs => {
            path(&mut add, 0);
            add(1, STATFS, false, true, Back::All);
        }
        s::__lkl__NR3264_fstatfs => add(1, STATFS, false, true, Back::All),
        s::__lkl__NR_openat
        | s::__lkl__NR_faccessat
        | s::__lkl__NR_faccessat2
        | s::__lkl__NR_mkdirat
        | s::__lkl__NR_unlinkat
        | s::__lkl__NR_fchmodat
        | s::__lkl__NR_fchownat
        | s::__lkl__NR_mknodat => path(&mut add, 1),
        s::__lkl__NR_chdir | s::__lkl__NR3264_truncate | s::__lkl__NR_chroot => path(&mut add, 0),
        s::__lkl__NR_openat2 => {
            path(&mut add, 1);
            add(2, (a[3] as usize).min(SMALL), true, false, Back::All);
        }
        s::__lkl__NR_readlinkat => {
            path(&mut add, 1);
            add(2, a[3] as usize, false, true, Back::Ret);
        }
        s::__lkl__NR_getcwd => add(0, a[1] as usize, false, true, Back::Ret),
        s::__lkl__NR_utimensat => {
            path(&mut add, 1);
            if a[2] != 0 {
                add(2, 32, true, false, Back::All);
            }
        }
        s::__lkl__NR_renameat2 | s::__lkl__NR_linkat => {
            path(&mut add, 1);
            path(&mut add, 3);
        }
        s::__lkl__NR_symlinkat => {
            path(&mut add, 0);
            path(&mut add, 2);
        }
        _ => return None,
    }
    let total: usize = out[..n]
        .iter()
        .map(|(x, _)| x.len.next_multiple_of(16))
        .sum();
    (n > 0 && total <= ROOM).then_some((out, n))
}

/// Makes LKL call `nr` through `call` with its arguments copied through `data` (this
/// thread's slot data area) when [`plan`] knows it; else unchanged.
pub(crate) fn call(
    nr: i64,
    mut a: [i64; 6],
    data: Option<&mut [u8]>,
    call: impl FnOnce(i64, [i64; 6]) -> i64,
) -> i64 {
    let (Some(data), Some((plan, n))) = (data, plan(nr, &a)) else {
        return call(nr, a);
    };
    let orig = a;
    let mut off = 0usize;
    let mut at = [0usize; 4];
    for (k, (arg, _)) in plan[..n].iter().enumerate() {
        at[k] = off;
        if arg.len > 0 && orig[arg.idx] != 0 {
            if arg.copy_in {
                // SAFETY: the program's argument of `len` bytes (see the module doc);
                // the data area has room (checked by `plan`).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        orig[arg.idx] as *const u8,
                        data[off..].as_mut_ptr(),
                        arg.len,
                    )
                };
            }
            a[arg.idx] = data[off..].as_ptr() as i64;
        }
        off += arg.len.next_multiple_of(16);
    }
    let ret = call(nr, a);
    if ret < 0 {
        return ret;
    }
    for (k, (arg, back)) in plan[..n].iter().enumerate() {
        if !arg.copy_out || arg.len == 0 || orig[arg.idx] == 0 {
            continue;
        }
        let len = match *back {
            Back::All => arg.len,
            Back::Ret => ret as usize,
            Back::RetTimes(sz) => (ret as usize).saturating_mul(sz),
            Back::LenArg(i) => {
                // The kernel's new length, in the data area where it wrote it.
                let j = plan[..n].iter().position(|(x, _)| x.idx == i).unwrap_or(0);
                let l = i32::from_ne_bytes(data[at[j]..at[j] + 4].try_into().unwrap_or_default());
                l.max(0) as usize
            }
        }
        .min(arg.len);
        // SAFETY: back into the program's argument, no more than it holds.
        unsafe {
            core::ptr::copy_nonoverlapping(data[at[k]..].as_ptr(), orig[arg.idx] as *mut u8, len)
        };
    }
    ret
}
