//! The LKL boot test: boot the real kernel once, then run each case against
//! it through the system-call interface.
//!
//! The cases live here so that the integration test (`tests/boot.rs`, run by
//! the README's test command) and the runnable example (`examples/boot.rs`)
//! share them. One kernel runs per process, so the runner boots once, runs
//! the cases in order and halts; cases that need a kernel of their own (a
//! boot that must fail) run in a child process.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use lkl::Errno;
use lkl_sys as sys;

/// The memory the test kernel boots with; `mem_honoured` checks it.
pub const TEST_MEMORY: u64 = 48 << 20;

/// A case's verdict: `Err` carries what went wrong.
pub type Outcome = Result<(), String>;

/// Counts cases and prints a line for each as it ends, in cargo's format:
/// `test SUITE::NAME ... ok` or `... FAILED: why`.
#[derive(Debug)]
pub struct Report {
    suite: &'static str,
    /// Cases that passed so far.
    pub passed: usize,
    /// Cases that failed so far.
    pub failed: usize,
}

impl Report {
    /// An empty report for the cases of `suite`.
    pub fn new(suite: &'static str) -> Self {
        Report {
            suite,
            passed: 0,
            failed: 0,
        }
    }

    /// Records case `name` and prints its line.
    pub fn case(&mut self, name: &str, outcome: Outcome) {
        let suite = self.suite;
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("test {suite}::{name} ... ok");
            }
            Err(why) => {
                self.failed += 1;
                println!("test {suite}::{name} ... FAILED: {why}");
            }
        }
        let _ = std::io::stdout().flush();
    }
}

/// One named check.
pub struct Case {
    pub name: &'static str,
    pub run: fn() -> Outcome,
}

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

/// The cases run against the booted kernel, in order.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "getpid_is_1",
            run: getpid_is_1,
        },
        Case {
            name: "umask",
            run: umask,
        },
        Case {
            name: "file_io",
            run: file_io,
        },
        Case {
            name: "open_missing_is_enoent",
            run: open_missing_is_enoent,
        },
        Case {
            name: "mkdir_stat",
            run: mkdir_stat,
        },
        Case {
            name: "nanosleep_accuracy",
            run: nanosleep_accuracy,
        },
        Case {
            name: "pipe2_round_trip",
            run: pipe2_round_trip,
        },
        Case {
            name: "epoll_0_then_1",
            run: epoll_0_then_1,
        },
        Case {
            name: "mount_proc_getdents",
            run: mount_proc_getdents,
        },
        Case {
            name: "mount_sysfs",
            run: mount_sysfs,
        },
        Case {
            name: "filesystems_configured",
            run: filesystems_configured,
        },
        Case {
            name: "crc32c_with_the_cpu_instruction",
            run: crc32c_with_the_cpu_instruction,
        },
        Case {
            name: "mount_tmpfs_devtmpfs",
            run: mount_tmpfs_devtmpfs,
        },
        Case {
            name: "wall_clock_is_the_hosts",
            run: wall_clock_is_the_hosts,
        },
        Case {
            name: "mem_honoured",
            run: mem_honoured,
        },
        Case {
            name: "lo_tcp_echo",
            run: lo_tcp_echo,
        },
        Case {
            name: "two_threads_blocked",
            run: two_threads_blocked,
        },
        Case {
            name: "threads_64_reaped",
            run: threads_64_reaped,
        },
        Case {
            name: "threads_contend_for_the_cpu",
            run: threads_contend_for_the_cpu,
        },
    ]
}

fn getpid_is_1() -> Outcome {
    let pid = lkl::getpid().map_err(e("getpid"))?;
    ensure!(pid == 1, "getpid returned {pid}, expected 1");
    Ok(())
}

fn umask() -> Outcome {
    let old = lkl::umask(0o777).map_err(e("umask"))?;
    ensure!(old == 0o022, "initial umask {old:o}, expected 22");
    let back = lkl::umask(old).map_err(e("umask"))?;
    ensure!(back == 0o777, "umask returned {back:o}, expected 777");
    Ok(())
}

fn file_io() -> Outcome {
    let fd = lkl::creat("/file_io", 0o721).map_err(e("creat"))?;
    let n = lkl::write(fd, b"test\0").map_err(e("write"))?;
    ensure!(n == 5, "write wrote {n} bytes, expected 5");
    lkl::close(fd).map_err(e("close"))?;

    let fd = lkl::open("/file_io", sys::LKL_O_RDWR as i32, 0).map_err(e("open"))?;
    let pos = lkl::lseek(fd, 0, sys::LKL_SEEK_SET).map_err(e("lseek"))?;
    ensure!(pos == 0, "lseek returned {pos}");
    let mut buf = [0u8; 16];
    let n = lkl::read(fd, &mut buf).map_err(e("read"))?;
    ensure!(&buf[..n] == b"test\0", "read back {:?}", &buf[..n]);
    let st = lkl::fstat(fd).map_err(e("fstat"))?;
    ensure!(st.st_size == 5, "fstat size {}, expected 5", st.st_size);
    // creat's 0721 under the default umask 022
    let mode = st.st_mode & 0o7777;
    ensure!(mode == 0o701, "fstat mode {mode:o}, expected 701");
    ensure!(
        st.st_mode & sys::LKL_S_IFMT == sys::LKL_S_IFREG,
        "not a regular file: mode {:o}",
        st.st_mode
    );
    lkl::close(fd).map_err(e("close"))?;
    Ok(())
}

fn open_missing_is_enoent() -> Outcome {
    match lkl::open("/no/such/file", sys::LKL_O_RDONLY as i32, 0) {
        Err(err) if err == Errno::ENOENT => Ok(()),
        Err(err) => Err(format!("expected ENOENT, got {err}")),
        Ok(fd) => Err(format!("opened a missing file as fd {fd}")),
    }
}

fn mkdir_stat() -> Outcome {
    lkl::mkdir("/mkdir_stat", 0o755).map_err(e("mkdir"))?;
    let st = lkl::stat("/mkdir_stat").map_err(e("stat"))?;
    ensure!(
        st.st_mode & sys::LKL_S_IFMT == sys::LKL_S_IFDIR,
        "not a directory: mode {:o}",
        st.st_mode
    );
    ensure!(st.st_mode & 0o777 == 0o755, "mode {:o}", st.st_mode);
    Ok(())
}

fn nanosleep_accuracy() -> Outcome {
    // The best of three: a sleep can only be late, and on a loaded machine
    // the host may run the woken thread late; the kernel's timing shows in
    // the best run.
    for ms in [20u64, 100] {
        let asked = Duration::from_millis(ms);
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            lkl::nanosleep(asked).map_err(e("nanosleep"))?;
            best = best.min(start.elapsed());
        }
        ensure!(
            best >= asked && best <= asked + asked / 10,
            "nanosleep({asked:?}) took {best:?} at best, not within 10%"
        );
    }
    Ok(())
}

fn pipe2_round_trip() -> Outcome {
    let [r, w] = lkl::pipe2(0).map_err(e("pipe2"))?;
    lkl::write(w, b"ping").map_err(e("write"))?;
    let mut buf = [0u8; 8];
    let n = lkl::read(r, &mut buf).map_err(e("read"))?;
    ensure!(&buf[..n] == b"ping", "read {:?}", &buf[..n]);
    lkl::close(r).map_err(e("close"))?;
    lkl::close(w).map_err(e("close"))?;
    Ok(())
}

fn epoll_0_then_1() -> Outcome {
    let [r, w] = lkl::pipe2(0).map_err(e("pipe2"))?;
    let ep = lkl::epoll_create1(0).map_err(e("epoll_create1"))?;
    let ev = sys::lkl_epoll_event {
        events: sys::LKL_EPOLLIN,
        data: r as u64,
    };
    lkl::epoll_ctl(ep, sys::LKL_EPOLL_CTL_ADD as i32, r, Some(&ev)).map_err(e("epoll_ctl"))?;
    let mut out = [sys::lkl_epoll_event::default(); 4];
    let n = lkl::epoll_pwait(ep, &mut out, 0).map_err(e("epoll_pwait"))?;
    ensure!(n == 0, "{n} events on an empty pipe");
    lkl::write(w, b"x").map_err(e("write"))?;
    let n = lkl::epoll_pwait(ep, &mut out, 1000).map_err(e("epoll_pwait"))?;
    ensure!(n == 1, "{n} events after a write, expected 1");
    let data = out[0].data;
    ensure!(data == r as u64, "event for {data}, expected fd {r}");
    for fd in [ep, r, w] {
        lkl::close(fd).map_err(e("close"))?;
    }
    Ok(())
}

fn mount_proc_getdents() -> Outcome {
    lkl::mkdir("/proc", 0o555).map_err(e("mkdir /proc"))?;
    lkl::mount("proc", "/proc", "proc", 0, None).map_err(e("mount proc"))?;
    let fd = lkl::open(
        "/proc",
        (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY) as i32,
        0,
    )
    .map_err(e("open /proc"))?;
    let entries = lkl::getdents64(fd).map_err(e("getdents64"))?;
    lkl::close(fd).map_err(e("close"))?;
    let names: Vec<String> = entries
        .iter()
        .map(|d| d.name.to_string_lossy().into_owned())
        .collect();
    for want in ["1", "self", "meminfo", "net"] {
        ensure!(
            names.iter().any(|n| n == want),
            "/proc has no {want}: {names:?}"
        );
    }
    lkl::umount2("/proc", 0).map_err(e("umount /proc"))?;
    // proc is mounted again for the cases that read it
    lkl::mount("proc", "/proc", "proc", 0, None).map_err(e("mount proc"))?;
    Ok(())
}

fn mount_sysfs() -> Outcome {
    lkl::mkdir("/sys", 0o555).map_err(e("mkdir /sys"))?;
    lkl::mount("sysfs", "/sys", "sysfs", 0, None).map_err(e("mount sysfs"))?;
    lkl::stat("/sys/kernel").map_err(e("stat /sys/kernel"))?;
    lkl::stat("/sys/class/net/lo").map_err(e("stat /sys/class/net/lo"))?;
    Ok(())
}

/// Reads a whole file of the kernel's.
pub fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let fd = lkl::open(path, sys::LKL_O_RDONLY as i32, 0).map_err(e(path))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = lkl::read(fd, &mut buf).map_err(e(path))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    lkl::close(fd).map_err(e(path))?;
    Ok(out)
}

fn filesystems_configured() -> Outcome {
    let list = String::from_utf8_lossy(&read_file("/proc/filesystems")?).into_owned();
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for fs in [
        "ext4", "btrfs", "xfs", "vfat", "tmpfs", "proc", "sysfs", "devtmpfs",
    ] {
        ensure!(
            names.contains(&fs),
            "{fs} missing from /proc/filesystems: {names:?}"
        );
    }
    Ok(())
}

/// On a CPU with SSE4.2, the kernel's "crc32c" (ext4's and btrfs's metadata
/// checksums, xfs's through libcrc32c) is the arch port's, with the crc32
/// instruction, above the generic table code.
fn crc32c_with_the_cpu_instruction() -> Outcome {
    let list = String::from_utf8_lossy(&read_file("/proc/crypto")?).into_owned();
    let ours = list.split("\n\n").find(|entry| {
        entry
            .lines()
            .any(|l| l.split_whitespace().eq(["driver", ":", "crc32c-lkl-insn"]))
    });
    if !std::arch::is_x86_feature_detected!("sse4.2") {
        ensure!(
            ours.is_none(),
            "crc32c-lkl-insn registered on a CPU without SSE4.2"
        );
        return Ok(());
    }
    let ours = ours.ok_or_else(|| format!("no crc32c-lkl-insn in /proc/crypto: {list}"))?;
    let priority = |entry: &str| {
        entry.lines().find_map(|l| {
            l.strip_prefix("priority")
                .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse::<u32>().ok())
        })
    };
    let generic = list.split("\n\n").find(|entry| {
        entry
            .lines()
            .any(|l| l.split_whitespace().eq(["driver", ":", "crc32c-generic"]))
    });
    ensure!(
        priority(ours) > generic.and_then(priority),
        "crc32c-lkl-insn does not rank above crc32c-generic: {list}"
    );
    Ok(())
}

fn mount_tmpfs_devtmpfs() -> Outcome {
    lkl::mkdir("/tmp", 0o1777).map_err(e("mkdir /tmp"))?;
    lkl::mount("tmpfs", "/tmp", "tmpfs", 0, None).map_err(e("mount tmpfs"))?;
    let fd = lkl::creat("/tmp/x", 0o600).map_err(e("creat on tmpfs"))?;
    lkl::write(fd, b"tmpfs").map_err(e("write on tmpfs"))?;
    lkl::close(fd).map_err(e("close"))?;
    ensure!(read_file("/tmp/x")? == b"tmpfs", "tmpfs read back differs");
    lkl::umount2("/tmp", 0).map_err(e("umount tmpfs"))?;
    // the initial ramfs already has /dev (for /dev/console)
    match lkl::mkdir("/dev", 0o755) {
        Ok(()) => {}
        Err(err) if err == Errno::EEXIST => {}
        Err(err) => return Err(format!("mkdir /dev: {err}")),
    }
    lkl::mount("devtmpfs", "/dev", "devtmpfs", 0, None).map_err(e("mount devtmpfs"))?;
    let st = lkl::stat("/dev/null").map_err(e("stat /dev/null"))?;
    ensure!(
        st.st_mode & sys::LKL_S_IFMT == sys::LKL_S_IFCHR,
        "/dev/null is not a character device: {:o}",
        st.st_mode
    );
    Ok(())
}

fn wall_clock_is_the_hosts() -> Outcome {
    let fd = lkl::creat("/clock", 0o600).map_err(e("creat"))?;
    lkl::close(fd).map_err(e("close"))?;
    let st = lkl::stat("/clock").map_err(e("stat"))?;
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|err| format!("host clock: {err}"))?
        .as_secs() as i64;
    let mtime = st.st_mtime as i64;
    ensure!(
        (host - mtime).abs() <= 5,
        "a new file's mtime is {mtime}, the host's time {host}"
    );
    Ok(())
}

fn mem_honoured() -> Outcome {
    let meminfo = String::from_utf8_lossy(&read_file("/proc/meminfo")?).into_owned();
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no MemTotal in /proc/meminfo: {meminfo}"))?;
    let asked_kb = TEST_MEMORY >> 10;
    // the kernel's own image is not part of mem=, but its page tables are
    ensure!(
        total_kb <= asked_kb && total_kb >= asked_kb * 9 / 10,
        "MemTotal {total_kb} kB for mem={asked_kb}K"
    );
    Ok(())
}

fn lo_tcp_echo() -> Outcome {
    lkl::if_up("lo").map_err(e("bring lo up"))?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7777));
    let stream = sys::LKL_SOCK_STREAM as i32;
    let srv = lkl::socket(sys::LKL_AF_INET as i32, stream, 0).map_err(e("socket"))?;
    lkl::bind(srv, &addr).map_err(e("bind"))?;
    lkl::listen(srv, 1).map_err(e("listen"))?;

    // the server echoes on a host thread of its own
    let server = thread::spawn(move || -> Result<(), String> {
        let (conn, _) = lkl::accept4(srv, 0).map_err(e("accept"))?;
        let mut buf = [0u8; 64];
        let (n, _) = lkl::recvfrom(conn, &mut buf, 0).map_err(e("recv"))?;
        lkl::sendto(conn, &buf[..n], 0, None).map_err(e("send"))?;
        lkl::close(conn).map_err(e("close"))?;
        Ok(())
    });

    let cli = lkl::socket(sys::LKL_AF_INET as i32, stream, 0).map_err(e("socket"))?;
    lkl::connect(cli, &addr).map_err(e("connect"))?;
    lkl::sendto(cli, b"hello over lo", 0, None).map_err(e("send"))?;
    let mut buf = [0u8; 64];
    let (n, _) = lkl::recvfrom(cli, &mut buf, 0).map_err(e("recv"))?;
    server
        .join()
        .map_err(|_| "server thread panicked".to_string())??;
    ensure!(
        &buf[..n] == b"hello over lo",
        "echo returned {:?}",
        &buf[..n]
    );
    lkl::close(cli).map_err(e("close"))?;
    lkl::close(srv).map_err(e("close"))?;
    Ok(())
}

/// Many threads entering the kernel at once, blocking and waking each
/// other: three pipe ping-pong pairs, two threads making quick calls and one
/// woken by the timer. Every thread that finds the CPU busy queues to enter
/// and is switched in by the scheduler (the kernel's entry queue); a lost
/// wake-up there would leave a thread waiting for ever.
fn threads_contend_for_the_cpu() -> Outcome {
    const ROUNDS: usize = 2000;
    let mut workers: Vec<thread::JoinHandle<Result<(), String>>> = Vec::new();
    let mut fds = Vec::new();
    for _ in 0..3 {
        let [r1, w1] = lkl::pipe2(0).map_err(e("pipe2"))?;
        let [r2, w2] = lkl::pipe2(0).map_err(e("pipe2"))?;
        fds.extend([r1, w1, r2, w2]);
        workers.push(thread::spawn(move || {
            let mut b = [0u8; 1];
            for i in 0..ROUNDS {
                lkl::write(w1, &[i as u8]).map_err(e("ping write"))?;
                lkl::read(r2, &mut b).map_err(e("ping read"))?;
                ensure!(b[0] == i as u8, "pong {} for ping {}", b[0], i as u8);
            }
            Ok(())
        }));
        workers.push(thread::spawn(move || {
            let mut b = [0u8; 1];
            for _ in 0..ROUNDS {
                lkl::read(r1, &mut b).map_err(e("pong read"))?;
                lkl::write(w2, &b).map_err(e("pong write"))?;
            }
            Ok(())
        }));
    }
    for _ in 0..2 {
        workers.push(thread::spawn(|| {
            for _ in 0..20 * ROUNDS {
                ensure!(lkl::getpid().map_err(e("getpid"))? == 1, "getpid != 1");
            }
            Ok(())
        }));
    }
    workers.push(thread::spawn(|| {
        for _ in 0..50 {
            lkl::nanosleep(Duration::from_micros(200)).map_err(e("nanosleep"))?;
        }
        Ok(())
    }));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !workers.iter().all(|w| w.is_finished()) {
        ensure!(
            Instant::now() < deadline,
            "{} of {} threads still in the kernel after 60 s",
            workers.iter().filter(|w| !w.is_finished()).count(),
            workers.len()
        );
        thread::sleep(Duration::from_millis(10));
    }
    for w in workers {
        w.join().map_err(|_| "worker panicked".to_string())??;
    }
    for fd in fds {
        lkl::close(fd).map_err(e("close"))?;
    }
    Ok(())
}

fn two_threads_blocked() -> Outcome {
    let pipes = [
        lkl::pipe2(0).map_err(e("pipe2"))?,
        lkl::pipe2(0).map_err(e("pipe2"))?,
    ];
    let started = Arc::new(Barrier::new(3));
    let readers: Vec<_> = pipes
        .iter()
        .map(|&[r, _]| {
            let started = started.clone();
            thread::spawn(move || {
                started.wait();
                let mut buf = [0u8; 8];
                let n = lkl::read(r, &mut buf);
                (Instant::now(), n.map(|n| buf[..n].to_vec()))
            })
        })
        .collect();
    started.wait();
    // both readers are now blocked inside the kernel at the same time
    thread::sleep(Duration::from_millis(100));
    ensure!(
        readers.iter().all(|h| !h.is_finished()),
        "a reader returned before anything was written"
    );
    let written = Instant::now();
    for &[_, w] in &pipes {
        lkl::write(w, b"go").map_err(e("write"))?;
    }
    for h in readers {
        let (when, got) = h.join().map_err(|_| "reader panicked".to_string())?;
        let got = got.map_err(e("read"))?;
        ensure!(got == b"go", "reader got {got:?}");
        ensure!(when >= written, "reader woke before the write");
    }
    for [r, w] in pipes {
        lkl::close(r).map_err(e("close"))?;
        lkl::close(w).map_err(e("close"))?;
    }
    Ok(())
}

/// Kernel tasks of the init process (host tasks are its threads).
fn init_tasks() -> Result<usize, String> {
    let fd = lkl::open(
        "/proc/1/task",
        (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY) as i32,
        0,
    )
    .map_err(e("open /proc/1/task"))?;
    let n = lkl::getdents64(fd).map_err(e("getdents64"))?.len() - 2;
    lkl::close(fd).map_err(e("close"))?;
    Ok(n)
}

fn threads_64_reaped() -> Outcome {
    let before = init_tasks()?;
    let go = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let go = go.clone();
            thread::spawn(move || -> Result<i32, String> {
                go.wait();
                let mut tid = 0;
                for _ in 0..50 {
                    tid = lkl::gettid().map_err(e("gettid"))?;
                    lkl::getpid().map_err(e("getpid"))?;
                }
                Ok(tid)
            })
        })
        .collect();
    let mut tids = Vec::new();
    for t in threads {
        tids.push(t.join().map_err(|_| "thread panicked".to_string())??);
    }
    tids.sort_unstable();
    tids.dedup();
    ensure!(
        tids.len() == 64,
        "{} distinct kernel tasks for 64 threads",
        tids.len()
    );

    // each host thread's task exits with it; give RCU a moment to reap
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = init_tasks()?;
        if now == before {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{now} init tasks after the threads exited, {before} before"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Boots, runs every case, halts, and prints one line per case. Returns
/// the numbers of cases passed and failed.
pub fn run_all() -> (usize, usize) {
    let mut r = Report::new("boot");

    r.case("syscall_before_boot_fails", syscall_before_boot_fails());

    let start = Instant::now();
    let opts = lkl::BootOptions {
        memory: TEST_MEMORY,
        ..Default::default()
    };
    let kernel = match lkl::boot(&opts) {
        Ok(k) => k,
        Err(err) => {
            r.case("boot", Err(format!("{err}")));
            return (r.passed, r.failed);
        }
    };
    r.case("boot", Ok(()));
    println!("    booted in {:?}", start.elapsed());

    for case in cases() {
        r.case(case.name, (case.run)());
    }

    // a thread still blocked inside the kernel when it halts
    let blocked_reader = match lkl::pipe2(0) {
        Ok([r, _w]) => {
            let reader = thread::spawn(move || {
                let mut buf = [0u8; 8];
                lkl::read(r, &mut buf)
            });
            thread::sleep(Duration::from_millis(50));
            Some(reader)
        }
        Err(err) => {
            r.case("halt_ends_blocked_calls", Err(format!("pipe2: {err}")));
            None
        }
    };

    let start = Instant::now();
    let halted = kernel.halt().map_err(|err| format!("{err}"));
    r.case("halt_joins_every_thread", halted);
    println!("    halted in {:?}", start.elapsed());
    r.case("syscall_after_halt_fails", syscall_after_halt_fails());
    if let Some(reader) = blocked_reader {
        let outcome = match reader.join() {
            Ok(Err(err)) if err == Errno::ESHUTDOWN => Ok(()),
            Ok(other) => Err(format!(
                "blocked read returned {other:?}, expected ESHUTDOWN"
            )),
            Err(_) => Err("reader panicked".to_string()),
        };
        r.case("halt_ends_blocked_calls", outcome);
    }
    (r.passed, r.failed)
}

fn syscall_before_boot_fails() -> Outcome {
    match lkl::getpid() {
        Err(err) if err == Errno::ENOSYS => Ok(()),
        other => Err(format!(
            "getpid before boot gave {other:?}, expected ENOSYS"
        )),
    }
}

fn syscall_after_halt_fails() -> Outcome {
    match lkl::getpid() {
        Err(err) if err == Errno::ENOSYS => Ok(()),
        other => Err(format!("getpid after halt gave {other:?}, expected ENOSYS")),
    }
}
