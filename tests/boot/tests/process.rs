//! Processes for a kernel server, against the real kernel: one host
//! process boots LKL and its host threads act as server threads, each
//! joining an LKL process (lkl::process). One kernel per process, so the
//! cases run in order against one boot.
use std::ffi::c_long;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use lkl::process::{self, UserMemory};
use lkl::Errno;
use lkl_sys as sys;

use lkl_boot_test::{Outcome, Report};

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn e(context: &str) -> impl Fn(Errno) -> String + '_ {
    move |err| format!("{context}: {err}")
}

/// A raw system call with numbers (or pointers that stay valid for it).
fn raw(no: u32, args: &[c_long]) -> Result<c_long, Errno> {
    let mut all = [0; 6];
    all[..args.len()].copy_from_slice(args);
    // SAFETY: the callers pass numbers, or pointers into memory that lives
    // across the call in the memory the calling thread's task refers to
    // (or pointers that are meant to fault).
    unsafe { lkl::syscall(no as c_long, all) }
}

/// Runs `f` on a new host thread joined to process `pid`, then leaves.
fn in_process<T: Send + 'static>(
    pid: i32,
    user: UserMemory,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    thread::spawn(move || {
        process::thread_join(pid, user).map_err(e("thread_join"))?;
        let out = f();
        process::thread_leave().map_err(e("thread_leave"))?;
        out
    })
    .join()
    .map_err(|_| "server thread panicked".to_string())?
}

fn fd_flags(fd: i32) -> Result<c_long, Errno> {
    raw(sys::__lkl__NR_fcntl, &[fd.into(), sys::LKL_F_GETFD.into()])
}

fn udp_socket(flags: u32) -> Result<i32, String> {
    let fd = lkl::socket(
        sys::LKL_AF_INET as i32,
        (sys::LKL_SOCK_DGRAM | flags) as i32,
        0,
    )
    .map_err(e("socket"))?;
    Ok(fd)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn local_port(fd: i32) -> Result<u16, String> {
    match lkl::getsockname(fd).map_err(e("getsockname"))? {
        Some(addr) => Ok(addr.port()),
        None => Err("getsockname gave no address".into()),
    }
}

/// Whether /proc/`pid` exists (a live or zombie process or thread).
fn proc_exists(pid: i32) -> bool {
    lkl::stat(format!("/proc/{pid}")).is_ok()
}

/// Waits up to 5 s for `cond`.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// State carried between the cases: P1 and its socket's port.
struct World {
    p1: i32,
    p2: i32,
    port: u16,
    fd: i32,
}

fn fresh_process_is_empty(w: &mut World) -> Outcome {
    w.p1 = process::create().map_err(e("create"))?;
    ensure!(w.p1 > 1, "create gave pid {}", w.p1);
    let p1 = w.p1;
    let (pid, flags, mask, cwd) = in_process(w.p1, UserMemory::Local, move || {
        let pid = lkl::getpid().map_err(e("getpid"))?;
        let flags = fd_flags(0);
        let mask = lkl::umask(0o22).map_err(e("umask"))?;
        let mut buf = [0u8; 64];
        let len = raw(
            sys::__lkl__NR_getcwd,
            &[buf.as_mut_ptr() as c_long, buf.len() as c_long],
        )
        .map_err(e("getcwd"))?;
        Ok((pid, flags, mask, buf[..len as usize - 1].to_vec()))
    })?;
    ensure!(pid == p1, "getpid in P1 gave {pid}, expected {p1}");
    ensure!(
        flags == Err(Errno::EBADF),
        "fcntl(0, F_GETFD) in a fresh process gave {flags:?}, expected EBADF"
    );
    ensure!(mask == 0o22, "umask of a fresh process is {mask:o}");
    ensure!(
        cwd == b"/",
        "cwd of a fresh process is {:?}",
        String::from_utf8_lossy(&cwd)
    );
    Ok(())
}

fn fork_copies_the_file_table(w: &mut World) -> Outcome {
    let (fd, port) = in_process(w.p1, UserMemory::Local, || {
        let fd = udp_socket(0)?;
        lkl::bind(fd, &loopback(0)).map_err(e("bind"))?;
        Ok((fd, local_port(fd)?))
    })?;
    w.fd = fd;
    w.port = port;
    w.p2 = process::fork(w.p1).map_err(e("fork"))?;
    ensure!(w.p2 != w.p1, "fork gave the parent's pid");
    let p2_port = in_process(w.p2, UserMemory::Local, move || local_port(fd))?;
    ensure!(p2_port == port, "P2 sees port {p2_port}, P1 bound {port}");

    // closing it in P1 leaves P2's
    in_process(w.p1, UserMemory::Local, move || {
        lkl::close(fd).map_err(e("close in P1"))
    })?;
    let (p1_flags, p2_port) = in_process(w.p2, UserMemory::Local, move || Ok((0, local_port(fd)?)))
        .and_then(|(_, port)| {
            let flags = in_process(w.p1, UserMemory::Local, move || Ok(fd_flags(fd)))?;
            Ok((flags, port))
        })?;
    ensure!(
        p1_flags == Err(Errno::EBADF),
        "P1's closed fd: {p1_flags:?}"
    );
    ensure!(
        p2_port == port,
        "P2's copy after P1's close: port {p2_port}"
    );
    Ok(())
}

fn exec_closes_cloexec_fds(w: &mut World) -> Outcome {
    let (cloexec, plain, after) = in_process(w.p2, UserMemory::Local, || {
        // SOCK_CLOEXEC is O_CLOEXEC
        let cloexec = udp_socket(sys::LKL_O_CLOEXEC)?;
        let plain = udp_socket(0)?;
        process::exec().map_err(e("exec"))?;
        Ok((cloexec, plain, (fd_flags(cloexec), fd_flags(plain))))
    })?;
    ensure!(
        after.0 == Err(Errno::EBADF),
        "FD_CLOEXEC fd {cloexec} after exec: {:?}",
        after.0
    );
    ensure!(
        after.1 == Ok(0),
        "plain fd {plain} after exec: {:?}",
        after.1
    );
    // what the fork copied is not close-on-exec either
    let fd = w.fd;
    let port = in_process(w.p2, UserMemory::Local, move || local_port(fd))?;
    ensure!(port == w.port, "P2's forked fd after exec: port {port}");
    Ok(())
}

fn kill_wakes_a_blocked_call(w: &mut World) -> Outcome {
    let (fd, p2) = (w.fd, w.p2);
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(
        move || -> Result<(Result<usize, Errno>, Duration), String> {
            process::thread_join(p2, UserMemory::Local).map_err(e("thread_join"))?;
            tx.send(()).unwrap();
            let start = Instant::now();
            let mut buf = [0u8; 16];
            let got = lkl::recvfrom(fd, &mut buf, 0).map(|r| r.0);
            let took = start.elapsed();
            process::thread_leave().map_err(e("thread_leave"))?;
            Ok((got, took))
        },
    );
    rx.recv().map_err(|_| "server thread gone")?;
    thread::sleep(Duration::from_millis(100));
    process::kill(p2).map_err(e("kill"))?;
    let (got, took) = server.join().map_err(|_| "server thread panicked")??;
    ensure!(
        got.is_err(),
        "recvfrom in a killed process returned {got:?}"
    );
    ensure!(
        took < Duration::from_secs(2),
        "recvfrom returned {took:?} after blocking, not promptly"
    );
    println!("    blocked recvfrom returned {got:?} after {took:?}");
    ensure!(
        eventually(|| !proc_exists(p2)),
        "/proc/{p2} still there: a zombie"
    );
    ensure!(
        process::kill(p2) == Err(Errno::ESRCH),
        "a second kill of P2 did not give ESRCH"
    );
    // P2's last reference to the socket is gone: the port is free again
    let port = w.port;
    in_process(w.p1, UserMemory::Local, move || {
        let fd = udp_socket(0)?;
        lkl::bind(fd, &loopback(port)).map_err(e("bind the freed port again"))?;
        lkl::close(fd).map_err(e("close"))
    })
}

fn cwd_is_inherited_by_a_fork(w: &mut World) -> Outcome {
    in_process(w.p1, UserMemory::Local, || {
        lkl::mkdir("/p1-cwd", 0o755).map_err(e("mkdir"))?;
        let path = c"/p1-cwd";
        raw(sys::__lkl__NR_chdir, &[path.as_ptr() as c_long]).map_err(e("chdir"))?;
        lkl::umask(0o077).map_err(e("umask"))?;
        Ok(())
    })?;
    let child = process::fork(w.p1).map_err(e("fork"))?;
    let (cwd, mask) = in_process(child, UserMemory::Local, || {
        let mut buf = [0u8; 64];
        let len = raw(
            sys::__lkl__NR_getcwd,
            &[buf.as_mut_ptr() as c_long, buf.len() as c_long],
        )
        .map_err(e("getcwd"))?;
        let mask = lkl::umask(0o022).map_err(e("umask"))?;
        Ok((buf[..len as usize - 1].to_vec(), mask))
    })?;
    process::kill(child).map_err(e("kill"))?;
    ensure!(
        cwd == b"/p1-cwd",
        "the fork's cwd is {:?}",
        String::from_utf8_lossy(&cwd)
    );
    ensure!(mask == 0o077, "the fork's umask is {mask:o}");
    Ok(())
}

fn fork_copies_the_forking_threads_credentials(w: &mut World) -> Outcome {
    let p3 = process::fork(w.p1).map_err(e("fork"))?;
    let (from_thread, gid) = in_process(p3, UserMemory::Local, move || {
        raw(sys::__lkl__NR_setresgid, &[1234, 1234, 1234]).map_err(e("setresgid"))?;
        let child = process::fork(p3).map_err(e("fork from a thread of P3"))?;
        let gid = raw(sys::__lkl__NR_getgid, &[]).map_err(e("getgid"))?;
        Ok((child, gid))
    })?;
    ensure!(gid == 1234, "setresgid did not take: gid {gid}");
    let from_leader = process::fork(p3).map_err(e("fork from outside"))?;
    let gid_of = |pid| {
        in_process(pid, UserMemory::Local, || {
            raw(sys::__lkl__NR_getgid, &[]).map_err(e("getgid"))
        })
    };
    let (a, b) = (gid_of(from_thread)?, gid_of(from_leader)?);
    for pid in [p3, from_thread, from_leader] {
        process::kill(pid).map_err(e("kill"))?;
    }
    ensure!(
        a == 1234,
        "a fork made by a thread of P3 has gid {a}, not the thread's"
    );
    ensure!(
        b == 0,
        "a fork made from outside has gid {b}, not the leader's"
    );
    Ok(())
}

fn killed_from_inside_still_ends(_w: &mut World) -> Outcome {
    let pid = process::create().map_err(e("create"))?;
    // a client's own kill(getpid(), SIGKILL), made as a system call
    let ret = in_process(pid, UserMemory::Local, move || {
        Ok(raw(
            sys::__lkl__NR_kill,
            &[pid.into(), libc::SIGKILL.into()],
        ))
    })?;
    ensure!(ret == Ok(0), "kill(self, SIGKILL) gave {ret:?}");
    ensure!(proc_exists(pid), "the leader went before lkl_proc_kill");
    process::kill(pid).map_err(e("lkl_proc_kill after the signal"))?;
    ensure!(eventually(|| !proc_exists(pid)), "/proc/{pid} still there");
    Ok(())
}

fn interrupt_ends_one_blocked_call(w: &mut World) -> Outcome {
    let p1 = w.p1;
    let (tx, rx) = mpsc::channel();
    let returned = Arc::new(AtomicBool::new(false));
    let first_returned = returned.clone();
    let server = thread::spawn(move || -> Result<_, String> {
        let tid = process::thread_join(p1, UserMemory::Local).map_err(e("thread_join"))?;
        let fd = udp_socket(0)?;
        lkl::bind(fd, &loopback(0)).map_err(e("bind"))?;
        tx.send(tid).unwrap();
        let mut buf = [0u8; 16];
        let first = lkl::recvfrom(fd, &mut buf, 0).map(|r| r.0);
        first_returned.store(true, Ordering::SeqCst);
        // the next call is not interrupted
        let second = lkl::recvfrom(fd, &mut buf, libc::MSG_DONTWAIT).map(|r| r.0);
        lkl::close(fd).map_err(e("close"))?;
        process::thread_leave().map_err(e("thread_leave"))?;
        Ok((first, second))
    });
    let tid = rx.recv().map_err(|_| "server thread gone")?;
    // a no-op while the thread is not (yet) blocked is allowed; repeat
    // until its call returns
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(50));
        if returned.load(Ordering::SeqCst) {
            break;
        }
        match process::thread_interrupt(tid) {
            // the call returned and the thread left since the check
            Err(Errno::ESRCH) if returned.load(Ordering::SeqCst) => break,
            other => other.map_err(e("thread_interrupt"))?,
        }
    }
    let (first, second) = server.join().map_err(|_| "server thread panicked")??;
    ensure!(
        first == Err(Errno::EINTR),
        "interrupted recvfrom gave {first:?}"
    );
    ensure!(
        second == Err(Errno::EAGAIN),
        "the next recvfrom gave {second:?}"
    );
    ensure!(
        process::thread_interrupt(tid) == Err(Errno::ESRCH),
        "interrupting a thread that left did not give ESRCH"
    );
    Ok(())
}

/// A buffer at the same address in this process and in a forked host
/// child, with different contents in each.
const PAGE: usize = 4096;
const CHILD_PATH: &[u8] = b"/from-child\0";
const PARENT_PATH: &[u8] = b"/from-parent\0";
const UNAME_AT: usize = 1024;

/// The forked child: write its own path, say so, wait, then check that the
/// kernel wrote uname's answer into its memory. Only async-signal-safe
/// calls: the parent has threads.
fn child_main(page: *mut u8, ready: i32, done: i32) -> ! {
    // SAFETY: the page is this process's copy of the parent's buffer; the
    // file descriptors are the pipes made before the fork.
    unsafe {
        std::ptr::copy_nonoverlapping(CHILD_PATH.as_ptr(), page, CHILD_PATH.len());
        libc::write(ready, b"r".as_ptr().cast(), 1);
        let mut b = 0u8;
        libc::read(done, std::ptr::addr_of_mut!(b).cast(), 1);
        let sysname = std::slice::from_raw_parts(page.add(UNAME_AT), 6);
        libc::_exit(if sysname == b"Linux\0" { 0 } else { 1 });
    }
}

fn user_memory_of_another_process(w: &mut World) -> Outcome {
    let mut page = vec![0u8; PAGE];
    page[..PARENT_PATH.len()].copy_from_slice(PARENT_PATH);
    let addr = page.as_mut_ptr() as usize;
    let mut ready = [0i32; 2];
    let mut done = [0i32; 2];
    // SAFETY: pipe(2) into two-int arrays; fork(2) with the child running
    // only child_main.
    let child = unsafe {
        ensure!(libc::pipe(ready.as_mut_ptr()) == 0, "pipe failed");
        ensure!(libc::pipe(done.as_mut_ptr()) == 0, "pipe failed");
        let pid = libc::fork();
        if pid == 0 {
            child_main(addr as *mut u8, ready[1], done[0]);
        }
        pid
    };
    ensure!(child > 0, "fork failed");
    let mut b = 0u8;
    // SAFETY: reading one byte from our pipe.
    unsafe { libc::read(ready[0], std::ptr::addr_of_mut!(b).cast(), 1) };

    let outcome = in_process(w.p1, UserMemory::Process(child), move || {
        // a path read from the child's memory, uname written into it
        raw(
            sys::__lkl__NR_mkdirat,
            &[sys::LKL_AT_FDCWD as c_long, addr as c_long, 0o755],
        )
        .map_err(e("mkdirat with the child's path"))?;
        raw(sys::__lkl__NR_uname, &[(addr + UNAME_AT) as c_long])
            .map_err(e("uname into the child"))?;
        // a bad pointer: EFAULT, not a crash
        let bad = raw(sys::__lkl__NR_uname, &[16]);
        let bad_path = raw(
            sys::__lkl__NR_mkdirat,
            &[sys::LKL_AT_FDCWD as c_long, 16, 0o755],
        );
        Ok((bad, bad_path))
    });
    // SAFETY: one byte to our pipe, then reap our child.
    let status = unsafe {
        libc::write(done[1], b"d".as_ptr().cast(), 1);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        for fd in [ready[0], ready[1], done[0], done[1]] {
            libc::close(fd);
        }
        status
    };
    let (bad, bad_path) = outcome?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child did not find uname's answer in its memory (status {status:#x})"
    );
    ensure!(bad == Err(Errno::EFAULT), "uname(16) gave {bad:?}");
    ensure!(
        bad_path == Err(Errno::EFAULT),
        "mkdirat(16) gave {bad_path:?}"
    );
    ensure!(lkl::stat("/from-child").is_ok(), "/from-child was not made");
    ensure!(
        lkl::stat("/from-parent").is_err(),
        "the path was read from this process"
    );
    ensure!(page[UNAME_AT] == 0, "uname wrote into this process's copy");
    Ok(())
}

/// Offsets in the shared window of the test below.
const WIN_PATH: usize = 1024;
const WIN_HOW: usize = 1100;
const WIN_WRITE_IOV: usize = 1200;
const WIN_DATA: usize = 1300;
const WIN_READ_IOV: usize = 1400;
const WIN_READ: usize = 1500;
const WIN_OPTLEN: usize = 1600;
const WIN_OPTVAL: usize = 1604;

fn put_u64s(buf: &mut [u8], at: usize, words: &[u64]) {
    for (i, w) in words.iter().enumerate() {
        buf[at + 8 * i..at + 8 * i + 8].copy_from_slice(&w.to_ne_bytes());
    }
}

/// Every kind of access, through the window: strings (the path),
/// copy_struct_from_user (openat2's open_how), iov_iter both ways
/// (writev, readv, with the iovecs there too), get_user/put_user
/// (getsockopt's length) and plain copies (uname).
fn user_memory_in_the_shared_window(w: &mut World) -> Outcome {
    let mut window = vec![0u8; PAGE];
    let mut outside = vec![0u8; 512];
    let (win, out) = (window.as_mut_ptr() as usize, outside.as_mut_ptr() as usize);
    window[WIN_PATH..WIN_PATH + 10].copy_from_slice(b"/win-file\0");
    let how = (sys::LKL_O_CREAT | sys::LKL_O_RDWR) as u64;
    put_u64s(&mut window, WIN_HOW, &[how, 0o644, 0]);
    window[WIN_DATA..WIN_DATA + 11].copy_from_slice(b"hello world");
    let (data, read) = ((win + WIN_DATA) as u64, (win + WIN_READ) as u64);
    put_u64s(&mut window, WIN_WRITE_IOV, &[data, 6, data + 6, 5]);
    put_u64s(&mut window, WIN_READ_IOV, &[read, 11]);
    window[WIN_OPTLEN..WIN_OPTLEN + 4].copy_from_slice(&4u32.to_ne_bytes());
    lkl::set_shared_window(win, PAGE);
    // a pid no process has: only the window path can reach memory
    let outcome = in_process(w.p1, UserMemory::Process(0x3fff_fff0), move || {
        let at = |off: usize| (win + off) as c_long;
        let inside = raw(sys::__lkl__NR_uname, &[at(0)]);
        let outside = raw(sys::__lkl__NR_uname, &[out as c_long]);
        let fd = raw(
            sys::__lkl__NR_openat2,
            &[sys::LKL_AT_FDCWD as c_long, at(WIN_PATH), at(WIN_HOW), 24],
        )
        .map_err(e("openat2"))?;
        let wrote = raw(sys::__lkl__NR_writev, &[fd, at(WIN_WRITE_IOV), 2]);
        raw(sys::__lkl__NR_lseek, &[fd, 0, sys::LKL_SEEK_SET.into()]).map_err(e("lseek"))?;
        let read = raw(sys::__lkl__NR_readv, &[fd, at(WIN_READ_IOV), 1]);
        lkl::close(fd as i32).map_err(e("close"))?;
        let sock = udp_socket(0)?;
        let opt = raw(
            sys::__lkl__NR_getsockopt,
            &[
                sock.into(),
                sys::LKL_SOL_SOCKET.into(),
                sys::LKL_SO_TYPE.into(),
                at(WIN_OPTVAL),
                at(WIN_OPTLEN),
            ],
        );
        lkl::close(sock).map_err(e("close"))?;
        Ok((inside, outside, wrote, read, opt))
    });
    lkl::set_shared_window(0, 0);
    let (inside, outside_ret, wrote, read, opt) = outcome?;
    ensure!(inside == Ok(0), "uname into the window gave {inside:?}");
    ensure!(&window[..6] == b"Linux\0", "uname did not write the window");
    ensure!(
        outside_ret == Err(Errno::EFAULT),
        "uname outside the window gave {outside_ret:?}"
    );
    ensure!(
        outside.iter().all(|&b| b == 0),
        "uname wrote outside the window"
    );
    ensure!(wrote == Ok(11), "writev from the window gave {wrote:?}");
    ensure!(read == Ok(11), "readv into the window gave {read:?}");
    ensure!(
        &window[WIN_READ..WIN_READ + 11] == b"hello world",
        "readv read {:?}",
        String::from_utf8_lossy(&window[WIN_READ..WIN_READ + 11])
    );
    let optval = u32::from_ne_bytes(window[WIN_OPTVAL..WIN_OPTVAL + 4].try_into().unwrap());
    ensure!(
        opt == Ok(0) && optval == sys::LKL_SOCK_DGRAM,
        "getsockopt(SO_TYPE) into the window gave {opt:?}, value {optval}"
    );
    Ok(())
}

/// Processes in /proc (numeric entries) and UDP sockets in use.
fn census() -> Result<(usize, String), String> {
    let fd = lkl::open(
        "/proc",
        (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY) as i32,
        0,
    )
    .map_err(e("open /proc"))?;
    let entries = lkl::getdents64(fd).map_err(e("getdents64"))?;
    lkl::close(fd).map_err(e("close"))?;
    let procs = entries
        .iter()
        .filter(|d| d.name.to_string_lossy().bytes().all(|c| c.is_ascii_digit()))
        .count();
    let fd =
        lkl::open("/proc/net/sockstat", sys::LKL_O_RDONLY as i32, 0).map_err(e("open sockstat"))?;
    let mut buf = [0u8; 1024];
    let n = lkl::read(fd, &mut buf).map_err(e("read sockstat"))?;
    lkl::close(fd).map_err(e("close"))?;
    let udp = String::from_utf8_lossy(&buf[..n])
        .lines()
        .find(|l| l.starts_with("UDP:"))
        .unwrap_or_default()
        .to_string();
    Ok((procs, udp))
}

fn cycles_200_leave_nothing(_w: &mut World) -> Outcome {
    let before = census()?;
    let start = Instant::now();
    thread::spawn(move || -> Outcome {
        for i in 0..200 {
            let pid = process::create().map_err(e("create"))?;
            let tid = process::thread_join(pid, UserMemory::Local).map_err(e("join"))?;
            ensure!(tid > pid, "thread {tid} of process {pid}");
            let fd = udp_socket(0)?;
            lkl::bind(fd, &loopback(0)).map_err(e("bind"))?;
            if i % 2 == 0 {
                process::thread_leave().map_err(e("leave"))?;
                process::kill(pid).map_err(e("kill"))?;
            } else {
                process::kill(pid).map_err(e("kill"))?;
                process::thread_leave().map_err(e("leave"))?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| "cycling thread panicked")??;
    println!("    200 cycles in {:?}", start.elapsed());
    let mut after = census()?;
    if !eventually(|| {
        after = census().unwrap_or_default();
        after == before
    }) {
        return Err(format!("before the cycles {before:?}, after {after:?}"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut r = Report::new("process");

    let kernel = match lkl::boot(&lkl::BootOptions {
        memory: 64 << 20,
        ..Default::default()
    }) {
        Ok(k) => k,
        Err(err) => {
            r.case("boot", Err(format!("{err}")));
            return ExitCode::FAILURE;
        }
    };
    // /proc, from a thread that never joins a process (init's host task)
    let proc_mounted = thread::spawn(|| {
        let _ = lkl::mkdir("/proc", 0o555);
        lkl::mount("proc", "/proc", "proc", 0, None).map_err(e("mount /proc"))
    })
    .join()
    .unwrap_or_else(|_| Err("mount thread panicked".into()));
    r.case("mount_proc", proc_mounted);

    type Case = (&'static str, fn(&mut World) -> Outcome);
    let cases: [Case; 11] = [
        ("fresh_process_is_empty", fresh_process_is_empty),
        ("fork_copies_the_file_table", fork_copies_the_file_table),
        ("exec_closes_cloexec_fds", exec_closes_cloexec_fds),
        ("kill_wakes_a_blocked_call", kill_wakes_a_blocked_call),
        ("cwd_is_inherited_by_a_fork", cwd_is_inherited_by_a_fork),
        (
            "fork_copies_the_forking_threads_credentials",
            fork_copies_the_forking_threads_credentials,
        ),
        (
            "killed_from_inside_still_ends",
            killed_from_inside_still_ends,
        ),
        (
            "interrupt_ends_one_blocked_call",
            interrupt_ends_one_blocked_call,
        ),
        (
            "user_memory_of_another_process",
            user_memory_of_another_process,
        ),
        (
            "user_memory_in_the_shared_window",
            user_memory_in_the_shared_window,
        ),
        ("cycles_200_leave_nothing", cycles_200_leave_nothing),
    ];
    let mut world = World {
        p1: 0,
        p2: 0,
        port: 0,
        fd: -1,
    };
    for (name, run) in cases {
        r.case(name, run(&mut world));
    }
    if world.p1 > 0 {
        r.case("kill_p1", process::kill(world.p1).map_err(e("kill P1")));
    }

    // a live process with a thread blocked in a call when the kernel halts
    let blocked = process::create().map_err(e("create")).map(|pid| {
        let (tx, rx) = mpsc::channel();
        let server = thread::spawn(move || -> Result<Result<usize, Errno>, String> {
            process::thread_join(pid, UserMemory::Local).map_err(e("thread_join"))?;
            let fd = udp_socket(0)?;
            tx.send(()).unwrap();
            let mut buf = [0u8; 8];
            Ok(lkl::recvfrom(fd, &mut buf, 0).map(|r| r.0))
        });
        let _ = rx.recv();
        thread::sleep(Duration::from_millis(50));
        server
    });
    r.case("halt", kernel.halt().map_err(|err| format!("{err}")));
    let outcome = blocked.and_then(|server| match server.join() {
        Ok(Ok(Err(err))) if err == Errno::ESHUTDOWN => Ok(()),
        Ok(other) => Err(format!(
            "blocked recvfrom at halt gave {other:?}, expected ESHUTDOWN"
        )),
        Err(_) => Err("server thread panicked".into()),
    });
    r.case("halt_ends_a_joined_threads_call", outcome);
    println!("{} passed, {} failed", r.passed, r.failed);
    if r.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
