//! `cargo run --release -p lkl-fdmux --example bench`: the cost of a wait
//! that ends when another thread makes a descriptor ready, as a ping-pong
//! between two threads over two pipes (each side waits, reads, writes the
//! other pipe), in microseconds per round trip:
//!
//! - baseline: host `poll` on host pipes (the host kernel alone);
//! - mixed, woken from the host: each `poll` set holds the host pipe plus
//!   an idle LKL pipe, so every wait goes through the helper thread;
//! - mixed, woken from LKL: LKL pipes plus an idle host pipe;
//! - LKL only: LKL pipes, LKL's `ppoll` directly.
//!
//! Each mixed figure is printed beside the baseline as a ratio.

use std::time::{Duration, Instant};

use lkl_fdmux::{poll, Fd, PollFd};

const ROUNDS: u32 = 2000;

/// A pipe on one side: (read end, write end).
#[derive(Clone, Copy)]
struct Pipe {
    r: Fd,
    w: Fd,
}

fn host_pipe() -> Pipe {
    let mut fds = [0; 2];
    // SAFETY: room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    Pipe {
        r: Fd::Host(fds[0]),
        w: Fd::Host(fds[1]),
    }
}

fn lkl_pipe() -> Pipe {
    let [r, w] = lkl::pipe2(0).expect("LKL pipe2");
    Pipe {
        r: Fd::Lkl(r),
        w: Fd::Lkl(w),
    }
}

fn put(fd: Fd) {
    match fd {
        // SAFETY: writes one byte from a live buffer.
        Fd::Host(n) => assert_eq!(unsafe { libc::write(n, b"x".as_ptr().cast(), 1) }, 1),
        Fd::Lkl(n) => assert_eq!(lkl::write(n, b"x"), Ok(1)),
    }
}

fn take(fd: Fd) {
    let mut b = [0u8; 1];
    match fd {
        // SAFETY: reads one byte into a live buffer.
        Fd::Host(n) => assert_eq!(unsafe { libc::read(n, b.as_mut_ptr().cast(), 1) }, 1),
        Fd::Lkl(n) => assert_eq!(lkl::read(n, &mut b), Ok(1)),
    }
}

/// Waits until `p` is readable, with `idle` in the same set (never ready).
fn wait(p: Pipe, idle: Option<Fd>) {
    let mut set = vec![PollFd::new(p.r, libc::POLLIN)];
    if let Some(i) = idle {
        set.push(PollFd::new(i, libc::POLLIN));
    }
    assert_eq!(poll(&mut set, Some(Duration::from_secs(10)), None), Ok(1));
    take(p.r);
}

/// Microseconds per round trip of a ping-pong over `a` (there) and `b`
/// (back), each wait with `idle` beside it.
fn ping_pong(a: Pipe, b: Pipe, idle: Option<Fd>) -> f64 {
    let echo = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            wait(a, idle);
            put(b.w);
        }
    });
    let t = Instant::now();
    for _ in 0..ROUNDS {
        put(a.w);
        wait(b, idle);
    }
    let spent = t.elapsed();
    echo.join().expect("echo thread");
    spent.as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

fn main() {
    let kernel = lkl::boot(&lkl::BootOptions::default()).expect("boot");
    let (h1, h2, hidle) = (host_pipe(), host_pipe(), host_pipe());
    let (l1, l2, lidle) = (lkl_pipe(), lkl_pipe(), lkl_pipe());
    // Warm up each path (threads, waiters).
    ping_pong(h1, h2, Some(lidle.r));
    ping_pong(l1, l2, Some(hidle.r));
    let base = ping_pong(h1, h2, None);
    let mixed_host = ping_pong(h1, h2, Some(lidle.r));
    let mixed_lkl = ping_pong(l1, l2, Some(hidle.r));
    let lkl_only = ping_pong(l1, l2, None);
    println!(
        "wake-up round trip between two threads, {ROUNDS} rounds, microseconds (lower is better)"
    );
    println!("{:<44} {:>9.1}", "host poll, host pipes (baseline)", base);
    println!(
        "{:<44} {:>9.1}  {:.2}x baseline",
        "mixed poll, woken from the host",
        mixed_host,
        mixed_host / base
    );
    println!(
        "{:<44} {:>9.1}  {:.2}x baseline",
        "mixed poll, woken from LKL",
        mixed_lkl,
        mixed_lkl / base
    );
    println!(
        "{:<44} {:>9.1}  {:.2}x baseline",
        "LKL-only poll, LKL pipes",
        lkl_only,
        lkl_only / base
    );
    kernel.halt().expect("halt");
}
