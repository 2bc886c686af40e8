//! The typed system call wrappers against the real kernel.
//!
//! A process boots LKL once, so this file is one test that boots, runs
//! every check in order, and halts.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use lkl::Errno;
use lkl_sys as sys;

fn files() {
    assert_eq!(lkl::umask(0o022).unwrap(), 0o022, "default umask");
    assert_eq!(lkl::umask(0o777).unwrap(), 0o022);
    assert_eq!(lkl::umask(0o022).unwrap(), 0o777);

    let fd = lkl::creat("/file", 0o721).unwrap();
    assert_eq!(lkl::write(fd, b"test\n").unwrap(), 5);
    lkl::close(fd).unwrap();
    let fd = lkl::open("/file", sys::LKL_O_RDWR as i32, 0).unwrap();
    assert_eq!(lkl::lseek(fd, 1, sys::LKL_SEEK_SET).unwrap(), 1);
    let mut buf = [0u8; 16];
    assert_eq!(lkl::read(fd, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"est\n");
    let st = lkl::fstat(fd).unwrap();
    assert_eq!(st.st_size, 5);
    assert_eq!(st.st_mode & 0o7777, 0o721 & !0o022);
    lkl::close(fd).unwrap();
    assert_eq!(lkl::close(fd), Err(Errno::EBADF));

    assert_eq!(lkl::open("/missing", 0, 0), Err(Errno::ENOENT));
    lkl::mkdir("/dir", 0o755).unwrap();
    let st = lkl::stat("/dir").unwrap();
    assert_eq!(st.st_mode & sys::LKL_S_IFMT, sys::LKL_S_IFDIR);
    assert_eq!(lkl::mkdir("/dir", 0o755), Err(Errno::EEXIST));
    lkl::unlinkat(lkl::AT_FDCWD, "/dir", sys::LKL_AT_REMOVEDIR as i32).unwrap();
    lkl::unlinkat(lkl::AT_FDCWD, "/file", 0).unwrap();
    assert_eq!(lkl::stat("/file").map(|_| ()), Err(Errno::ENOENT));
}

fn sleep_is_accurate() {
    // Never short; within 10% in the best of five (scheduling noise on a
    // loaded machine is not the kernel's clock).
    for ms in [50u64, 200] {
        let want = Duration::from_millis(ms);
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t0 = Instant::now();
            lkl::nanosleep(want).unwrap();
            let took = t0.elapsed();
            assert!(took >= want, "{ms} ms sleep took {took:?}");
            best = best.min(took);
            if best <= want + want / 10 {
                break;
            }
        }
        assert!(
            best <= want + want / 10,
            "{ms} ms sleep took {best:?} at best"
        );
    }
}

fn pipes_and_epoll() {
    let [r, w] = lkl::pipe2(0).unwrap();
    let ep = lkl::epoll_create1(0).unwrap();
    let ev = sys::lkl_epoll_event {
        // EPOLLIN is POLLIN (its own macro has a cast bindgen cannot evaluate).
        events: sys::LKL_POLLIN as _,
        data: 42,
    };
    lkl::epoll_ctl(ep, sys::LKL_EPOLL_CTL_ADD as i32, r, Some(&ev)).unwrap();
    let mut out = [sys::lkl_epoll_event { events: 0, data: 0 }; 4];
    assert_eq!(lkl::epoll_pwait(ep, &mut out, 0).unwrap(), 0);
    assert_eq!(lkl::write(w, b"ping").unwrap(), 4);
    assert_eq!(lkl::epoll_pwait(ep, &mut out, 1000).unwrap(), 1);
    let data = out[0].data;
    assert_eq!(data, 42);
    let mut buf = [0u8; 8];
    assert_eq!(lkl::read(r, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"ping");
    for fd in [ep, r, w] {
        lkl::close(fd).unwrap();
    }
}

fn proc_and_sys() {
    lkl::mkdir("/proc", 0o555).unwrap();
    lkl::mount("proc", "/proc", "proc", 0, None).unwrap();
    let fd = lkl::open(
        "/proc",
        (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY) as i32,
        0,
    )
    .unwrap();
    let names: Vec<_> = lkl::getdents64(fd)
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect();
    lkl::close(fd).unwrap();
    for want in [".", "..", "1", "self", "meminfo"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not in /proc: {names:?}"
        );
    }
    // mem= is honoured.
    let fd = lkl::open("/proc/meminfo", 0, 0).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = lkl::read(fd, &mut buf).unwrap();
    lkl::close(fd).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    let total_kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        (16 * 1024..=32 * 1024).contains(&total_kb),
        "MemTotal {total_kb} kB"
    );
    lkl::umount2("/proc", 0).unwrap();
    lkl::mkdir("/sys", 0o555).unwrap();
    lkl::mount("sysfs", "/sys", "sysfs", 0, None).unwrap();
    lkl::umount2("/sys", 0).unwrap();
}

fn tcp_echo() {
    lkl::if_up("lo").unwrap();
    let s = lkl::socket(sys::LKL_AF_INET as i32, sys::LKL_SOCK_STREAM as i32, 0).unwrap();
    lkl::setsockopt_int(s, sys::LKL_IPPROTO_IP as i32, sys::LKL_IP_TTL as i32, 32).unwrap();
    lkl::bind(s, &"127.0.0.1:0".parse().unwrap()).unwrap();
    lkl::listen(s, 4).unwrap();
    let addr: SocketAddr = lkl::getsockname(s).unwrap().unwrap();
    assert_ne!(addr.port(), 0);
    let server = thread::spawn(move || {
        let (c, peer) = lkl::accept4(s, 0).unwrap();
        assert!(peer.unwrap().ip().is_loopback());
        let mut buf = [0u8; 64];
        let (n, _) = lkl::recvfrom(c, &mut buf, 0).unwrap();
        lkl::sendto(c, &buf[..n], 0, None).unwrap();
        lkl::close(c).unwrap();
    });
    let c = lkl::socket(sys::LKL_AF_INET as i32, sys::LKL_SOCK_STREAM as i32, 0).unwrap();
    lkl::connect(c, &addr).unwrap();
    lkl::write(c, b"hello, kernel").unwrap();
    let mut buf = [0u8; 64];
    let n = lkl::read(c, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello, kernel");
    server.join().unwrap();
    lkl::close(c).unwrap();
    lkl::close(s).unwrap();
}

fn threads() {
    // Two threads blocked in the kernel at once, each woken by the other.
    let [r1, w1] = lkl::pipe2(0).unwrap();
    let [r2, w2] = lkl::pipe2(0).unwrap();
    let a = thread::spawn(move || {
        let mut b = [0u8; 1];
        lkl::read(r1, &mut b).unwrap();
        lkl::write(w2, b"y").unwrap();
    });
    let b = thread::spawn(move || {
        let mut b = [0u8; 1];
        lkl::read(r2, &mut b).unwrap();
    });
    thread::sleep(Duration::from_millis(20));
    lkl::write(w1, b"x").unwrap();
    a.join().unwrap();
    b.join().unwrap();
    for fd in [r1, w1, r2, w2] {
        lkl::close(fd).unwrap();
    }
    // 64 threads, each with a task of its own.
    let tids: Vec<i32> = (0..64)
        .map(|_| thread::spawn(|| lkl::gettid().unwrap()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut unique = tids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 64);
}

#[test]
fn syscalls_on_a_booted_kernel() {
    assert_eq!(lkl::getpid(), Err(Errno::ENOSYS), "before boot");
    let opts = lkl::BootOptions {
        memory: 32 << 20,
        ..Default::default()
    };
    let kernel = lkl::boot(&opts).unwrap();
    assert!(matches!(
        lkl::boot(&opts),
        Err(lkl::Error::AlreadyBooted { .. })
    ));
    assert_eq!(lkl::getpid().unwrap(), 1);
    files();
    sleep_is_accurate();
    pipes_and_epoll();
    proc_and_sys();
    tcp_echo();
    threads();
    kernel.halt().unwrap();
    assert_eq!(lkl::host::live_threads(), 0);
    assert_eq!(lkl::getpid(), Err(Errno::ENOSYS), "after halt");
}
