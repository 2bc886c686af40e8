//! One kernel per test process: a single test boots LKL and runs every
//! case in turn, naming the one that fails.

use std::time::{Duration, Instant};

use crate::{poll, select, Epoll, Fd, PollFd};

/// A host pipe: (read end, write end).
fn host_pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

fn host_write(fd: i32) {
    // SAFETY: writes one byte from a live buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn host_read(fd: i32) {
    let mut b = [0u8; 16];
    // SAFETY: reads into a live buffer of its size.
    assert!(unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) } > 0);
}

fn lkl_pipe() -> (i32, i32) {
    let [r, w] = lkl::pipe2(0).expect("LKL pipe2");
    (r, w)
}

const IN: i16 = libc::POLLIN;
const MS: fn(u64) -> Duration = Duration::from_millis;

struct Pipes {
    hr: i32,
    hw: i32,
    lr: i32,
    lw: i32,
}

fn mixed_set(p: &Pipes) -> [PollFd; 3] {
    [
        PollFd::new(Fd::Host(p.hr), IN),
        PollFd::new(Fd::Lkl(p.lr), IN),
        PollFd::new(Fd::Host(-1), IN),
    ]
}

fn nothing_ready_times_out(p: &Pipes) {
    for _ in 0..3 {
        let mut set = mixed_set(p);
        let t = Instant::now();
        assert_eq!(poll(&mut set, Some(MS(80)), None), Ok(0));
        let spent = t.elapsed();
        assert!(spent >= MS(75) && spent < MS(2000), "{spent:?}");
        assert!(set.iter().all(|f| f.revents == 0));
    }
}

fn host_side_wakes(p: &Pipes) {
    let hw = p.hw;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(MS(50));
        host_write(hw);
    });
    let mut set = mixed_set(p);
    let t = Instant::now();
    assert_eq!(poll(&mut set, Some(MS(10_000)), None), Ok(1));
    assert!(t.elapsed() < MS(2000), "{:?}", t.elapsed());
    assert_eq!(set[0].revents, IN);
    assert_eq!(set[1].revents, 0);
    writer.join().unwrap();
    host_read(p.hr);
}

fn lkl_side_wakes(p: &Pipes) {
    let lw = p.lw;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(MS(50));
        lkl::write(lw, b"y").unwrap();
    });
    let mut set = mixed_set(p);
    let t = Instant::now();
    assert_eq!(poll(&mut set, None, None), Ok(1));
    assert!(t.elapsed() < MS(2000), "{:?}", t.elapsed());
    assert_eq!(set[0].revents, 0);
    assert_eq!(set[1].revents, IN);
    writer.join().unwrap();
    let mut b = [0u8; 8];
    lkl::read(p.lr, &mut b).unwrap();
}

fn both_ready_and_no_leftover_wakeup(p: &Pipes) {
    for _ in 0..50 {
        host_write(p.hw);
        lkl::write(p.lw, b"z").unwrap();
        let mut set = mixed_set(p);
        let n = poll(&mut set, Some(MS(5000)), None).unwrap();
        // Both are ready before the call: the LKL side is seen at once,
        // the host side by the helper or its cancelled snapshot.
        assert!(n >= 1, "{set:?}");
        assert_eq!(set[1].revents, IN);
        host_read(p.hr);
        let mut b = [0u8; 8];
        lkl::read(p.lr, &mut b).unwrap();
    }
    // No wakeup is left over for the next wait.
    nothing_ready_times_out(p);
}

fn zero_timeout_snapshot(p: &Pipes) {
    host_write(p.hw);
    let mut set = mixed_set(p);
    assert_eq!(poll(&mut set, Some(Duration::ZERO), None), Ok(1));
    assert_eq!(set[0].revents, IN);
    host_read(p.hr);
    let mut set = mixed_set(p);
    assert_eq!(poll(&mut set, Some(Duration::ZERO), None), Ok(0));
}

fn single_sides(p: &Pipes) {
    lkl::write(p.lw, b"a").unwrap();
    let mut set = [PollFd::new(Fd::Lkl(p.lr), IN)];
    assert_eq!(poll(&mut set, Some(MS(1000)), None), Ok(1));
    let mut b = [0u8; 8];
    lkl::read(p.lr, &mut b).unwrap();
    let mut set = [PollFd::new(Fd::Host(p.hr), IN)];
    assert_eq!(poll(&mut set, Some(MS(20)), None), Ok(0));
    // A closed LKL descriptor is POLLNVAL, as in the kernel.
    let mut set = [
        PollFd::new(Fd::Lkl(900), IN),
        PollFd::new(Fd::Host(p.hr), IN),
    ];
    assert_eq!(poll(&mut set, Some(MS(1000)), None), Ok(1));
    assert_eq!(set[0].revents, libc::POLLNVAL);
}

fn select_mixed(p: &Pipes) {
    // Program numbering: host fds as they are, LKL fd n as 512 + n.
    let map = |fd: i32| {
        if fd >= 512 {
            Fd::Lkl(fd - 512)
        } else {
            Fd::Host(fd)
        }
    };
    let empty = || {
        // SAFETY: an all-zero fd_set is valid; FD_ZERO clears a live one.
        unsafe {
            let mut s: libc::fd_set = std::mem::zeroed();
            libc::FD_ZERO(&mut s);
            s
        }
    };
    let mut r = empty();
    // SAFETY: live sets, fds below FD_SETSIZE.
    unsafe {
        libc::FD_SET(p.hr, &mut r);
        libc::FD_SET(512 + p.lr, &mut r);
    }
    let lw = p.lw;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(MS(30));
        lkl::write(lw, b"s").unwrap();
    });
    let n = select(1024, Some(&mut r), None, None, Some(MS(5000)), None, &map).unwrap();
    writer.join().unwrap();
    assert_eq!(n, 1);
    // SAFETY: a live set, fds below FD_SETSIZE.
    unsafe {
        assert!(libc::FD_ISSET(512 + p.lr, &r));
        assert!(!libc::FD_ISSET(p.hr, &r));
    }
    let mut b = [0u8; 8];
    lkl::read(p.lr, &mut b).unwrap();
    // Writable host and LKL pipe ends, at once.
    let mut w = empty();
    // SAFETY: as above.
    unsafe {
        libc::FD_SET(p.hw, &mut w);
        libc::FD_SET(512 + p.lw, &mut w);
    }
    assert_eq!(
        select(1024, None, Some(&mut w), None, Some(MS(1000)), None, &map),
        Ok(2)
    );
    assert_eq!(
        select(2000, None, None, None, None, None, &map),
        Err(crate::Errno(libc::EINVAL))
    );
}

fn epoll_mixed(p: &Pipes) {
    let ep = Epoll::new(libc::EPOLL_CLOEXEC).unwrap();
    let ev = |data: u64| libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    ep.ctl(libc::EPOLL_CTL_ADD, Fd::Host(p.hr), Some(&ev(1)))
        .unwrap();
    let mut out = [ev(0); 4];
    // Host only: straight to the host.
    assert_eq!(ep.wait(&mut out, Some(MS(20)), None), Ok(0));
    ep.ctl(libc::EPOLL_CTL_ADD, Fd::Lkl(p.lr), Some(&ev(2)))
        .unwrap();
    assert!(ep.lkl_fd().is_some());
    let t = Instant::now();
    assert_eq!(ep.wait(&mut out, Some(MS(60)), None), Ok(0));
    assert!(t.elapsed() >= MS(55));
    let lw = p.lw;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(MS(30));
        lkl::write(lw, b"e").unwrap();
    });
    assert_eq!(ep.wait(&mut out, None, None), Ok(1));
    writer.join().unwrap();
    let data = out[0].u64;
    assert_eq!(data, 2);
    host_write(p.hw);
    // Both ready now: both reported, in either order.
    assert_eq!(ep.wait(&mut out, Some(MS(1000)), None), Ok(2));
    let mut got = [out[0].u64, out[1].u64];
    got.sort();
    assert_eq!(got, [1, 2]);
    // A buffer of one takes turns between the sides.
    let a = ep
        .wait(&mut out[..1], Some(MS(1000)), None)
        .map(|_| out[0].u64);
    let b = ep
        .wait(&mut out[..1], Some(MS(1000)), None)
        .map(|_| out[0].u64);
    assert_ne!(a, b);
    ep.ctl(libc::EPOLL_CTL_DEL, Fd::Lkl(p.lr), None).unwrap();
    assert_eq!(
        ep.ctl(libc::EPOLL_CTL_DEL, Fd::Lkl(p.lr), None),
        Err(crate::Errno(libc::ENOENT))
    );
    host_read(p.hr);
    let mut b = [0u8; 8];
    lkl::read(p.lr, &mut b).unwrap();
    assert_eq!(ep.wait(&mut out, Some(MS(10)), None), Ok(0));
    // SAFETY: the host epoll fd is ours to close.
    unsafe { libc::close(ep.host_fd()) };
}

fn many_threads(p: &Pipes) {
    // Several threads, each with its own waiter, waiting at once.
    let (hr, lr) = (p.hr, p.lr);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let mut set = [PollFd::new(Fd::Host(hr), IN), PollFd::new(Fd::Lkl(lr), IN)];
                    assert_eq!(poll(&mut set, Some(MS(5)), None), Ok(0));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A named case.
type Case = (&'static str, fn(&Pipes));

#[test]
fn mux_against_a_real_kernel() {
    // A hang (here or in the halt) fails the run instead of stalling it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(180));
        eprintln!("lkl-fdmux test: no result after 180 s, giving up");
        std::process::exit(2);
    });
    let kernel = lkl::boot(&lkl::BootOptions::default()).expect("boot");
    let (hr, hw) = host_pipe();
    let (lr, lw) = lkl_pipe();
    let p = Pipes { hr, hw, lr, lw };
    let cases: &[Case] = &[
        ("nothing ready times out", nothing_ready_times_out),
        ("the host side wakes a mixed wait", host_side_wakes),
        ("the LKL side wakes a mixed wait", lkl_side_wakes),
        (
            "both ready, no wakeup left over",
            both_ready_and_no_leftover_wakeup,
        ),
        ("timeout 0 is a snapshot", zero_timeout_snapshot),
        ("one-sided sets", single_sides),
        ("select over both", select_mixed),
        ("epoll over both", epoll_mixed),
        ("many threads", many_threads),
    ];
    for (name, case) in cases {
        eprintln!("case: {name}");
        case(&p);
    }
    kernel.halt().expect("halt");
}
