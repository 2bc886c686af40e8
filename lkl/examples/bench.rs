//! `cargo run --release -p lkl --example bench`
//!
//! Prints, in one run, each LKL figure beside its baseline and the ratio:
//! boot-to-ready and halt time (against the 20 ms goal), a fast-path system
//! call (`getpid`, right after boot and once the kernel has settled; an
//! 8-byte pipe write plus read) against the same call on the host kernel,
//! and round trips that hand the kernel to another host thread and back (a
//! pipe and a futex ping-pong between two threads) against the host, with
//! the number of host wake-ups (handoffs) each costs, and a wake by an
//! interrupt (a 50 µs `nanosleep`, ended by the host timer's interrupt).

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lkl::host::sem::handoffs;

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

/// `futex(word, op, val)` in LKL (`lkl == true`) or on the host.
fn futex(lkl: bool, word: &AtomicU32, op: i32, val: u32) {
    let op = op | libc::FUTEX_PRIVATE_FLAG;
    if lkl {
        let args = [word.as_ptr() as _, op as _, val as _, 0, 0, 0];
        // SAFETY: `word` is a live u32 for the whole call (no MMU: the
        // kernel reads it at its host address); a NULL timeout.
        match unsafe { lkl::syscall(lkl_sys::__lkl__NR_futex as _, args) } {
            Ok(_) | Err(lkl::Errno::EAGAIN) | Err(lkl::Errno::EINTR) => {}
            Err(e) => panic!("lkl futex: {e}"),
        }
    } else {
        // SAFETY: as above, on the host kernel.
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, 0usize) };
    }
}

/// Per round trip of a futex ping-pong: the turn word goes 1 (the echo
/// thread's turn) and back to 0, each side waking the other.
fn futex_ping_pong(lkl: bool, rounds: u32) -> Duration {
    static TURN: AtomicU32 = AtomicU32::new(0);
    let total = rounds + rounds / 10;
    let echo = thread::spawn(move || {
        for _ in 0..total {
            while TURN.load(Ordering::Acquire) != 1 {
                futex(lkl, &TURN, libc::FUTEX_WAIT, 0);
            }
            TURN.store(0, Ordering::Release);
            futex(lkl, &TURN, libc::FUTEX_WAKE, 1);
        }
    });
    let d = per_call(rounds, || {
        TURN.store(1, Ordering::Release);
        futex(lkl, &TURN, libc::FUTEX_WAKE, 1);
        while TURN.load(Ordering::Acquire) != 0 {
            futex(lkl, &TURN, libc::FUTEX_WAIT, 1);
        }
    });
    echo.join().unwrap();
    d
}

/// Host wake-ups per round of `f` (run `rounds` times).
fn count_handoffs(rounds: u32, f: impl FnOnce() -> Duration) -> (Duration, f64) {
    let h0 = handoffs();
    let d = f();
    // per_call runs rounds + rounds / 10
    let n = rounds + rounds / 10;
    (d, (handoffs() - h0) as f64 / n as f64)
}

fn main() {
    let goal = Duration::from_millis(20);
    let t0 = Instant::now();
    // LKL_BENCH_CMDLINE: extra kernel parameters, to compare settings.
    let opts = lkl::BootOptions {
        cmdline: std::env::var("LKL_BENCH_CMDLINE").unwrap_or_default(),
        ..Default::default()
    };
    let kernel = lkl::boot(&opts).expect("boot");
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
    // The first second after boot, in 100 ms slices: the median cost of a
    // getpid (over blocks of 64, so that host preemption on a busy machine
    // does not count) and the host wake-ups (kernel threads run) in the slice.
    let mut slices = Vec::new();
    let start = Instant::now();
    for slice in 1..=10u32 {
        let (mut blocks, h0) = (Vec::new(), handoffs());
        while start.elapsed() < Duration::from_millis(100) * slice {
            let t0 = Instant::now();
            for _ in 0..64 {
                lkl::getpid().unwrap();
            }
            blocks.push(t0.elapsed() / 64);
        }
        blocks.sort();
        let median = blocks.get(blocks.len() / 2).copied().unwrap_or_default();
        slices.push(format!("{median:.0?}/{}", handoffs() - h0));
    }
    println!("getpid in the first second after boot, per 100 ms (median cost/host wake-ups):");
    println!("  {}", slices.join(" "));

    thread::sleep(Duration::from_secs(1));
    let lkl_getpid = per_call(ROUNDS, || {
        lkl::getpid().unwrap();
    });
    report("getpid, 2 s after boot", lkl_getpid, host_getpid, "host");

    // Two threads making calls at once: they contend for the one CPU.
    let contend = |f: fn()| {
        let n = ROUNDS * 5;
        let h0 = handoffs();
        let t0 = Instant::now();
        let other = thread::spawn(move || (0..n).for_each(|_| f()));
        (0..n).for_each(|_| f());
        other.join().unwrap();
        (
            t0.elapsed() / (2 * n),
            (handoffs() - h0) as f64 / (2 * n) as f64,
        )
    };
    let (lkl_2, h_2) = contend(|| {
        lkl::getpid().unwrap();
    });
    let (host_2, _) = contend(|| {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_getpid) };
    });
    report("getpid, two threads at once", lkl_2, host_2, "host");
    println!("{:<32} {h_2:.2} host wake-ups per call", "");

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
    let (lkl_pp, pp_handoffs) = count_handoffs(rounds, || {
        per_call(rounds, || {
            lkl::write(w, b"x").unwrap();
            lkl::read(r2, &mut buf[..1]).unwrap();
        })
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
    println!("{:<32} {pp_handoffs:.1} host wake-ups per round trip", "");

    let (lkl_fx, fx_handoffs) = count_handoffs(rounds, || futex_ping_pong(true, rounds));
    let host_fx = futex_ping_pong(false, rounds);
    report("cross-thread futex round trip", lkl_fx, host_fx, "host");
    println!("{:<32} {fx_handoffs:.1} host wake-ups per round trip", "");

    // A thread blocked in the kernel, woken by the timer interrupt.
    let nap = Duration::from_micros(50);
    let naps = 1000;
    let (lkl_nap, nap_handoffs) =
        count_handoffs(naps, || per_call(naps, || lkl::nanosleep(nap).unwrap()));
    let host_nap = per_call(naps, || thread::sleep(nap));
    report("50 µs nanosleep (timer wake)", lkl_nap, host_nap, "host");
    println!("{:<32} {nap_handoffs:.1} host wake-ups per sleep", "");

    for fd in [r, w, r2, w2] {
        lkl::close(fd).unwrap();
    }
    let t0 = Instant::now();
    kernel.halt().expect("halt");
    report("halt", t0.elapsed(), goal, "goal");
}
