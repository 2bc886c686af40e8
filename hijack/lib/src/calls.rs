//! The socket and descriptor calls: LKL fds go to LKL, host fds to the
//! host kernel with `syscall(2)`.

use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::sync::atomic::Ordering;

use lkl_sys as sys;
use usermem::UserAddr;

use crate::fds::{
    efault, host, lkl_call, lkl_call_fd, lkl_fd, p, pm, set_errno, ACTIVE, FORKED, LKL_FD_OFFSET,
};

/// `socket(2)`.
#[no_mangle]
pub extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let lkl_family = matches!(
        domain,
        libc::AF_INET | libc::AF_INET6 | libc::AF_NETLINK | libc::AF_PACKET
    );
    if lkl_family && FORKED.load(Ordering::Relaxed) {
        // LKL does not run in a forked child (see the crate doc); the
        // host's network would be a silent surprise.
        set_errno(libc::EAFNOSUPPORT);
        return -1;
    }
    if lkl_family && ACTIVE.load(Ordering::Acquire) {
        // SAFETY: integer arguments only.
        unsafe {
            lkl_call_fd(
                sys::__lkl__NR_socket,
                [domain.into(), ty.into(), protocol.into(), 0, 0, 0],
            )
        }
    } else {
        host!(libc::SYS_socket, domain, ty, protocol) as c_int
    }
}

/// `bind(2)`.
///
/// # Safety
/// `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const libc::sockaddr, len: u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer, same sockaddr layout in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_bind, [l, p(addr), len.into(), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_bind, fd, addr, len) as c_int,
    }
}

/// `connect(2)`.
///
/// # Safety
/// `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const libc::sockaddr, len: u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer, same sockaddr layout in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_connect, [l, p(addr), len.into(), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_connect, fd, addr, len) as c_int,
    }
}

/// `listen(2)`.
#[no_mangle]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_listen, [l, backlog.into(), 0, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_listen, fd, backlog) as c_int,
    }
}

/// `accept4(2)`.
///
/// # Safety
/// `addr` and `len` are null or point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut u32,
    flags: c_int,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers, same layouts in LKL.
        Some(l) => unsafe {
            lkl_call_fd(
                sys::__lkl__NR_accept4,
                [l, pm(addr), pm(len), flags.into(), 0, 0],
            )
        },
        None => host!(libc::SYS_accept4, fd, addr, len, flags) as c_int,
    }
}

/// `accept(2)`.
///
/// # Safety
/// As [`accept4`].
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut libc::sockaddr, len: *mut u32) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// `getsockname(2)`.
///
/// # Safety
/// `addr` and `len` point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut libc::sockaddr, len: *mut u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers, same layouts in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_getsockname, [l, pm(addr), pm(len), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_getsockname, fd, addr, len) as c_int,
    }
}

/// `getpeername(2)`.
///
/// # Safety
/// `addr` and `len` point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut libc::sockaddr, len: *mut u32) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers, same layouts in LKL.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_getpeername, [l, pm(addr), pm(len), 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_getpeername, fd, addr, len) as c_int,
    }
}

/// `setsockopt(2)`.
///
/// # Safety
/// `val` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: u32,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_setsockopt,
                [l, level.into(), name.into(), p(val), len.into(), 0],
            ) as c_int
        },
        None => host!(libc::SYS_setsockopt, fd, level, name, val, len) as c_int,
    }
}

/// `getsockopt(2)`.
///
/// # Safety
/// `val` and `len` point to a buffer and its length.
#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut u32,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_getsockopt,
                [l, level.into(), name.into(), pm(val), pm(len), 0],
            ) as c_int
        },
        None => host!(libc::SYS_getsockopt, fd, level, name, val, len) as c_int,
    }
}

/// `sendto(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes, `addr` to `alen` (or is null).
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    alen: u32,
) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_sendto,
                [l, p(buf), n as c_long, flags.into(), p(addr), alen.into()],
            ) as isize
        },
        None => host!(libc::SYS_sendto, fd, buf, n, flags, addr, alen) as isize,
    }
}

/// `send(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: the caller's contract.
    unsafe { sendto(fd, buf, n, flags, std::ptr::null(), 0) }
}

/// `sendmsg(2)`.
///
/// # Safety
/// `msg` is a valid `msghdr` (LKL's `user_msghdr` has the same layout).
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_sendmsg, [l, p(msg), flags.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_sendmsg, fd, msg, flags) as isize,
    }
}

/// `recvfrom(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes; `addr`/`alen` null or a buffer and
/// its length.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    alen: *mut u32,
) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_recvfrom,
                [l, pm(buf), n as c_long, flags.into(), pm(addr), pm(alen)],
            ) as isize
        },
        None => host!(libc::SYS_recvfrom, fd, buf, n, flags, addr, alen) as isize,
    }
}

/// `recv(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: the caller's contract.
    unsafe {
        recvfrom(
            fd,
            buf,
            n,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// `recvmsg(2)`.
///
/// # Safety
/// `msg` is a valid `msghdr` (LKL's `user_msghdr` has the same layout).
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_recvmsg, [l, pm(msg), flags.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_recvmsg, fd, msg, flags) as isize,
    }
}

/// `sendmmsg(2)`.
///
/// # Safety
/// `msgs` points to `n` valid `mmsghdr`s (same layout in LKL).
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: libc::c_uint,
    flags: c_int,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_sendmmsg,
                [l, pm(msgs), n.into(), flags.into(), 0, 0],
            ) as c_int
        },
        None => host!(libc::SYS_sendmmsg, fd, msgs, n, flags) as c_int,
    }
}

/// `recvmmsg(2)`. The timeout is a 64-bit `timespec`, as LKL's.
///
/// # Safety
/// `msgs` points to `n` valid `mmsghdr`s; `timeout` is null or valid.
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: libc::c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointers.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_recvmmsg,
                [l, pm(msgs), n.into(), flags.into(), pm(timeout), 0],
            ) as c_int
        },
        None => host!(libc::SYS_recvmmsg, fd, msgs, n, flags, timeout) as c_int,
    }
}

/// `sendfile(2)`. Host to host goes to the host. With an LKL fd on either
/// side the copy is done here, 64 KiB at a time: `pread`/`read` from the
/// source, `write` to the destination (each on its own kernel), as
/// `sendfile` does for a socket destination: it stops at the first short
/// write and reports what was sent, and moves `*offset` (or the source's
/// file offset when `offset` is null).
///
/// `*offset` is read first and written back last, as the kernel does: a
/// bad `offset` gets `EFAULT`.
///
/// # Safety
/// None beyond the kernel's: `offset` is null or read through `usermem`.
#[no_mangle]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off_t,
    count: usize,
) -> isize {
    if lkl_fd(out_fd).is_none() && lkl_fd(in_fd).is_none() {
        return host!(libc::SYS_sendfile, out_fd, in_fd, offset, count) as isize;
    }
    let at = UserAddr::new(offset as u64);
    let mut off = match (!offset.is_null()).then(|| at.read::<libc::off_t>()) {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(_)) => return efault() as isize,
    };
    let r = copy_chunks(out_fd, in_fd, off.as_mut(), count);
    match off {
        Some(o) if r >= 0 && at.write(&o).is_err() => efault() as isize,
        _ => r,
    }
}

/// [`sendfile`]'s copy, with `offset` in our memory.
fn copy_chunks(
    out_fd: c_int,
    in_fd: c_int,
    mut offset: Option<&mut libc::off_t>,
    count: usize,
) -> isize {
    let mut buf = vec![0u8; count.clamp(1, 64 << 10)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(buf.len());
        let got = match offset.as_deref() {
            // SAFETY: `buf` has room for `want` bytes.
            None => unsafe { read(in_fd, buf.as_mut_ptr().cast(), want) },
            // SAFETY: room for `want` bytes in `buf`.
            Some(&o) => unsafe { pread64(in_fd, buf.as_mut_ptr().cast(), want, o) },
        };
        if got < 0 {
            return if done > 0 { done as isize } else { -1 };
        }
        if got == 0 {
            break;
        }
        // SAFETY: `got` bytes of `buf` are filled.
        let put = unsafe { write(out_fd, buf.as_ptr().cast(), got as usize) };
        if put < 0 {
            // What was read but not sent goes back to the source.
            if offset.is_none() {
                // SAFETY: integer arguments only.
                unsafe { lseek_back(in_fd, got) };
            }
            return if done > 0 { done as isize } else { -1 };
        }
        if let Some(o) = offset.as_deref_mut() {
            *o += put as libc::off_t;
        } else if put < got {
            // SAFETY: integer arguments only.
            unsafe { lseek_back(in_fd, got - put) };
        }
        done += put as usize;
        if put < got {
            break;
        }
    }
    done as isize
}

/// `splice(2)`. Between two host fds it is the host's. With an LKL fd on
/// one side (the other is then a host pipe: a pipe here is the host's),
/// the bytes are copied here, at most 64 KiB per call: read from the source
/// (at `*off_in` if given, which moves), written to the destination (at
/// `*off_out` if given). `SPLICE_F_NONBLOCK` is passed on as `MSG_DONTWAIT`
/// when the source is an LKL socket. If the write fails, the bytes read are
/// lost (a pipe or socket cannot take them back): the call returns -1. The
/// offsets are read first and written back last: a bad one gets `EFAULT`.
///
/// # Safety
/// None beyond the kernel's: the offsets are null or read through `usermem`.
#[no_mangle]
pub unsafe extern "C" fn splice(
    fd_in: c_int,
    off_in: *mut libc::loff_t,
    fd_out: c_int,
    off_out: *mut libc::loff_t,
    len: usize,
    flags: libc::c_uint,
) -> isize {
    if lkl_fd(fd_in).is_none() && lkl_fd(fd_out).is_none() {
        return host!(libc::SYS_splice, fd_in, off_in, fd_out, off_out, len, flags) as isize;
    }
    let (at_in, at_out) = (UserAddr::new(off_in as u64), UserAddr::new(off_out as u64));
    let read_off = |at: UserAddr| (!at.is_null()).then(|| at.read::<libc::loff_t>());
    let (o_in, o_out) = match (read_off(at_in), read_off(at_out)) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => return efault() as isize,
        (i, o) => (i.and_then(Result::ok), o.and_then(Result::ok)),
    };
    let mut buf = vec![0u8; len.clamp(1, 64 << 10)];
    let want = len.min(buf.len());
    let got = if let Some(o) = o_in {
        // SAFETY: room for `want` bytes in `buf`.
        unsafe { pread64(fd_in, buf.as_mut_ptr().cast(), want, o) }
    } else if lkl_fd(fd_in).is_some() && flags & libc::SPLICE_F_NONBLOCK != 0 {
        // SAFETY: room for `want` bytes in `buf`.
        unsafe { recv(fd_in, buf.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) }
    } else {
        // SAFETY: room for `want` bytes in `buf`.
        unsafe { read(fd_in, buf.as_mut_ptr().cast(), want) }
    };
    if got <= 0 {
        return got;
    }
    let put = match o_out {
        // SAFETY: `got` bytes of `buf` are filled.
        None => unsafe { write(fd_out, buf.as_ptr().cast(), got as usize) },
        // SAFETY: `got` filled bytes.
        Some(o) => unsafe { pwrite64(fd_out, buf.as_ptr().cast(), got as usize, o) },
    };
    if put > 0 {
        for (at, o) in [(at_in, o_in), (at_out, o_out)] {
            if let Some(o) = o {
                if at.write(&(o + put as libc::loff_t)).is_err() {
                    return efault() as isize;
                }
            }
        }
    }
    put
}

/// `pwrite64(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    off: libc::off_t,
) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_pwrite64, [l, p(buf), n as c_long, off, 0, 0]) as isize
        },
        None => host!(libc::SYS_pwrite64, fd, buf, n, off) as isize,
    }
}

/// `pwrite(2)`: `pwrite64` on x86-64.
///
/// # Safety
/// As [`pwrite64`].
#[no_mangle]
pub unsafe extern "C" fn pwrite(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    off: libc::off_t,
) -> isize {
    // SAFETY: the caller's contract.
    unsafe { pwrite64(fd, buf, n, off) }
}

/// `sendfile64`: the same on x86-64.
///
/// # Safety
/// As [`sendfile`].
#[no_mangle]
pub unsafe extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off_t,
    count: usize,
) -> isize {
    // SAFETY: the caller's contract.
    unsafe { sendfile(out_fd, in_fd, offset, count) }
}

/// Moves `fd`'s offset back by `n` bytes (what was read but not sent),
/// keeping errno.
///
/// # Safety
/// Integer arguments only; `unsafe` for symmetry with the callers.
unsafe fn lseek_back(fd: c_int, n: isize) {
    // SAFETY: __errno_location is always valid.
    let saved = unsafe { *libc::__errno_location() };
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe {
            lkl_call(
                sys::__lkl__NR_lseek,
                [l, -(n as c_long), libc::SEEK_CUR.into(), 0, 0, 0],
            );
        },
        None => {
            host!(libc::SYS_lseek, fd, -(n as libc::off_t), libc::SEEK_CUR);
        }
    }
    set_errno(saved);
}

/// `pread64(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pread64(fd: c_int, buf: *mut c_void, n: usize, off: libc::off_t) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_pread64, [l, pm(buf), n as c_long, off, 0, 0]) as isize
        },
        None => host!(libc::SYS_pread64, fd, buf, n, off) as isize,
    }
}

/// `pread(2)`: `pread64` on x86-64.
///
/// # Safety
/// As [`pread64`].
#[no_mangle]
pub unsafe extern "C" fn pread(fd: c_int, buf: *mut c_void, n: usize, off: libc::off_t) -> isize {
    // SAFETY: the caller's contract.
    unsafe { pread64(fd, buf, n, off) }
}

/// `shutdown(2)`.
#[no_mangle]
pub extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_shutdown, [l, how.into(), 0, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_shutdown, fd, how) as c_int,
    }
}

// ---------------------------------------------------------------------
// Generic fd calls

/// `read(2)`.
///
/// # Safety
/// `buf` points to `n` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_read, [l, pm(buf), n as c_long, 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_read, fd, buf, n) as isize,
    }
}

/// glibc's fortified `read`.
///
/// # Safety
/// As [`read`]; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, n: usize, buflen: usize) -> isize {
    if n > buflen {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { read(fd, buf, n) }
}

/// glibc's fortified `recv`.
///
/// # Safety
/// As [`recv`]; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    buflen: usize,
    flags: c_int,
) -> isize {
    if n > buflen {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { recv(fd, buf, n, flags) }
}

/// glibc's fortified `recvfrom`.
///
/// # Safety
/// As [`recvfrom`]; `buflen` is the buffer's real size.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    buflen: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    alen: *mut u32,
) -> isize {
    if n > buflen {
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    // SAFETY: the caller's contract.
    unsafe { recvfrom(fd, buf, n, flags, addr, alen) }
}

/// `write(2)`.
///
/// # Safety
/// `buf` points to `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: usize) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_write, [l, p(buf), n as c_long, 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_write, fd, buf, n) as isize,
    }
}

/// `readv(2)`.
///
/// # Safety
/// `iov` points to `cnt` valid `iovec`s (same layout in LKL).
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_readv, [l, p(iov), cnt.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_readv, fd, iov, cnt) as isize,
    }
}

/// `writev(2)`.
///
/// # Safety
/// `iov` points to `cnt` valid `iovec`s (same layout in LKL).
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize {
    match lkl_fd(fd) {
        // SAFETY: the caller's pointer.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_writev, [l, p(iov), cnt.into(), 0, 0, 0]) as isize
        },
        None => host!(libc::SYS_writev, fd, iov, cnt) as isize,
    }
}

/// `close(2)`.
#[no_mangle]
pub extern "C" fn close(fd: c_int) -> c_int {
    match lkl_fd(fd) {
        // In a forked child the fd is only forgotten.
        Some(_) if FORKED.load(Ordering::Relaxed) => 0,
        // SAFETY: integer arguments only.
        Some(l) => unsafe { lkl_call(sys::__lkl__NR_close, [l, 0, 0, 0, 0, 0]) as c_int },
        None => {
            crate::wait::forget_epoll(fd);
            host!(libc::SYS_close, fd) as c_int
        }
    }
}

/// `ioctl(2)`, with its one optional argument as a `long` (see the crate
/// doc). Every request on an LKL fd goes to LKL (the `SIOC*` requests and
/// `FIONREAD`/`FIONBIO` alike).
///
/// # Safety
/// `arg` is what `req` expects.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: c_long) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: the caller's argument for this request.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_ioctl, [l, req as c_long, arg, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_ioctl, fd, req, arg) as c_int,
    }
}

/// `fcntl(2)`, with its one optional argument as a `long` (see the crate
/// doc). `F_DUPFD`/`F_DUPFD_CLOEXEC` on an LKL fd take and give program
/// fds.
///
/// # Safety
/// `arg` is what `cmd` expects.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    match lkl_fd(fd) {
        Some(l) if cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC => {
            let min = (arg - c_long::from(LKL_FD_OFFSET)).max(0);
            // SAFETY: integer arguments only.
            unsafe { lkl_call_fd(sys::__lkl__NR_fcntl, [l, cmd.into(), min, 0, 0, 0]) }
        }
        // SAFETY: the caller's argument for this command.
        Some(l) => unsafe {
            lkl_call(sys::__lkl__NR_fcntl, [l, cmd.into(), arg, 0, 0, 0]) as c_int
        },
        None => host!(libc::SYS_fcntl, fd, cmd, arg) as c_int,
    }
}

/// `fcntl64` (glibc's name for `fcntl` on newer versions).
///
/// # Safety
/// As [`fcntl`].
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { fcntl(fd, cmd, arg) }
}

/// `dup(2)`.
#[no_mangle]
pub extern "C" fn dup(fd: c_int) -> c_int {
    match lkl_fd(fd) {
        // SAFETY: integer arguments only.
        Some(l) => unsafe { lkl_call_fd(sys::__lkl__NR_dup, [l, 0, 0, 0, 0, 0]) },
        None => host!(libc::SYS_dup, fd) as c_int,
    }
}

/// `dup3(2)`. Both fds must be in the same space (else `EBADF`).
#[no_mangle]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    match (lkl_fd(old), lkl_fd(new)) {
        // SAFETY: integer arguments only.
        (Some(o), Some(n)) => unsafe {
            lkl_call_fd(sys::__lkl__NR_dup3, [o, n, flags.into(), 0, 0, 0])
        },
        (None, None) => host!(libc::SYS_dup3, old, new, flags) as c_int,
        _ => {
            set_errno(libc::EBADF);
            -1
        }
    }
}

/// `dup2(2)`. Both fds must be in the same space (else `EBADF`).
#[no_mangle]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    match (lkl_fd(old), lkl_fd(new)) {
        (Some(o), Some(_)) if old == new => {
            // dup2 to itself: valid if the fd is open.
            // SAFETY: integer arguments only.
            let r =
                unsafe { lkl_call(sys::__lkl__NR_fcntl, [o, libc::F_GETFD.into(), 0, 0, 0, 0]) };
            if r < 0 {
                -1
            } else {
                new
            }
        }
        (Some(_), Some(_)) => dup3(old, new, 0),
        (None, None) => host!(libc::SYS_dup2, old, new) as c_int,
        _ => {
            set_errno(libc::EBADF);
            -1
        }
    }
}

// The layouts passed through to LKL (see the crate doc).
const _: () =
    assert!(std::mem::size_of::<libc::msghdr>() == std::mem::size_of::<sys::lkl_user_msghdr>());
const _: () = assert!(
    std::mem::offset_of!(libc::msghdr, msg_controllen)
        == std::mem::offset_of!(sys::lkl_user_msghdr, msg_controllen)
);
const _: () =
    assert!(std::mem::size_of::<libc::mmsghdr>() == std::mem::size_of::<sys::lkl_mmsghdr>());
const _: () = assert!(
    std::mem::size_of::<libc::timespec>() == std::mem::size_of::<sys::__lkl__kernel_timespec>()
);
