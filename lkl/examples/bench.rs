//! `cargo run --release -p lkl --example bench`
//!
//! Prints, in one run, each LKL figure beside its baseline and the ratio:
//! boot-to-ready and halt time (against the 20 ms goal), a fast-path system
//! call (`getpid`, right after boot and once the kernel has settled; an
//! 8-byte pipe write plus read) against the same call on the host kernel,
//! and a round trip that hands the kernel to another host thread and back
//! (a pipe ping-pong between two threads) against the host.

use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: u32 = 20_000;

fn per_call(rounds: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..rounds / 10 {
        f();
    }
    let t0 = Instant::now();
    for _ in 0..rounds {
        f();
    }
    t0.elapsed() / rounds
}

fn report(name: &str, lkl: Duration, base: Duration, base_name: &str) {
    println!(
        "{name:<32} lkl {:>10.2?}   {base_name} {:>10.2?}   ratio {:>6.2}",
        lkl,
        base,
        lkl.as_secs_f64() / base.as_secs_f64()
    );
}

fn host_pipe() -> [i32; 2] {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-parameter.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    fds
}

fn host_write(fd: i32, buf: &[u8]) {
    // SAFETY: `buf` is valid for reads of its length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    assert_eq!(n, buf.len() as isize);
}

fn host_read(fd: i32, buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of its length.
    assert!(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0);
}

fn main() {
    let goal = Duration::from_millis(20);
    let t0 = Instant::now();
    let kernel = lkl::boot(&lkl::BootOptions::default()).expect("boot");
    report("boot to ready", t0.elapsed(), goal, "goal");

    let host_getpid = per_call(ROUNDS, || {
        // SAFETY: getpid has no preconditions (raw, so glibc cannot cache it).
        unsafe { libc::syscall(libc::SYS_getpid) };
    });
    // Right after boot the kernel still has work of its own that each
    // system call's exit lets run; measure there and once it has settled.
    let lkl_getpid = per_call(ROUNDS / 4, || {
        lkl::getpid().unwrap();
    });
    report("getpid, right after boot", lkl_getpid, host_getpid, "host");
    thread::sleep(Duration::from_secs(2));
    let lkl_getpid = per_call(ROUNDS, || {
        lkl::getpid().unwrap();
    });
    report("getpid, 2 s after boot", lkl_getpid, host_getpid, "host");

    let [r, w] = lkl::pipe2(0).unwrap();
    let mut buf = [0u8; 8];
    let lkl_pipe = per_call(ROUNDS, || {
        lkl::write(w, b"12345678").unwrap();
        lkl::read(r, &mut buf).unwrap();
    });
    let [hr, hw] = host_pipe();
    let host_pipe_rw = per_call(ROUNDS, || {
        host_write(hw, b"12345678");
        host_read(hr, &mut buf);
    });
    report("8-byte pipe write + read", lkl_pipe, host_pipe_rw, "host");

    // Ping-pong: each round wakes a thread blocked in the other kernel.
    let rounds = ROUNDS / 4;
    let [r2, w2] = lkl::pipe2(0).unwrap();
    let echo = thread::spawn(move || {
        let mut b = [0u8; 1];
        for _ in 0..rounds + rounds / 10 {
            lkl::read(r, &mut b).unwrap();
            lkl::write(w2, &b).unwrap();
        }
    });
    let lkl_pp = per_call(rounds, || {
        lkl::write(w, b"x").unwrap();
        lkl::read(r2, &mut buf[..1]).unwrap();
    });
    echo.join().unwrap();
    let [hr2, hw2] = host_pipe();
    let echo = thread::spawn(move || {
        let mut b = [0u8; 1];
        for _ in 0..rounds + rounds / 10 {
            host_read(hr, &mut b);
            host_write(hw2, &b);
        }
    });
    let host_pp = per_call(rounds, || {
        host_write(hw, b"x");
        host_read(hr2, &mut buf[..1]);
    });
    echo.join().unwrap();
    report("cross-thread pipe round trip", lkl_pp, host_pp, "host");

    for fd in [r, w, r2, w2] {
        lkl::close(fd).unwrap();
    }
    let t0 = Instant::now();
    kernel.halt().expect("halt");
    report("halt", t0.elapsed(), goal, "goal");
}
