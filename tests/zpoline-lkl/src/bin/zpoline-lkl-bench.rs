//! `zpoline-lkl-bench`: zpoline backed by LKL against its baselines, in one run, in a
//! network namespace it makes (root): ns per syscall routed to LKL (`getsockname` on an
//! LKL socket) against the host kernel's; ns per pass-through syscall (`getppid`)
//! against native; UDP echo round trip and TCP 1-byte request/response under
//! `lkl-run --zpoline` against the same client under the LD_PRELOAD hijack library.
//!
//! Usage: `zpoline-lkl-bench [N]` (N calls or round trips per figure, default 200000
//! syscalls and 2000 round trips). Builds `lkl-run` and `liblkl-hijack.so` if needed.
//! The internal modes (`loop-*`, `echo-server`, `udp`, `tcp`) are what it runs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lkl_test_support::{self as support, Netns, TempDir};

const SERVER: &str = "198.18.0.1";
const UDP_PORT: u16 = 7777;
const TCP_PORT: u16 = 7778;

fn per_call(n: u64, mut f: impl FnMut()) -> f64 {
    // Best of three rounds: noise only ever adds time.
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn getsockname_loop(family: i32, n: u64) -> f64 {
    // SAFETY: a plain socket(2).
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    per_call(n, || {
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockname into our buffer; a raw syscall, as libc's internals make.
        unsafe {
            libc::syscall(
                libc::SYS_getsockname,
                fd,
                &mut ss as *mut libc::sockaddr_storage,
                &mut len as *mut libc::socklen_t,
            )
        };
    })
}

fn echo_server() {
    let udp = UdpSocket::bind((SERVER, UDP_PORT)).expect("udp bind");
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((n, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(&b[..n], from);
        }
    });
    let tcp = TcpListener::bind((SERVER, TCP_PORT)).expect("tcp bind");
    for s in tcp.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
        });
    }
}

fn udp_client(n: u64) -> f64 {
    let s = UdpSocket::bind(("0.0.0.0", 0)).expect("udp");
    s.connect((SERVER, UDP_PORT)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut b = [0u8; 1];
    for _ in 0..100 {
        s.send(b"x").expect("send");
        s.recv(&mut b).expect("recv");
    }
    per_call(n / 3, || {
        s.send(b"x").expect("send");
        s.recv(&mut b).expect("recv");
    }) / 1000.0
}

fn tcp_client(n: u64) -> f64 {
    let mut s = TcpStream::connect((SERVER, TCP_PORT)).expect("connect");
    s.set_nodelay(true).ok();
    let _ = s.as_raw_fd();
    let mut b = [0u8; 1];
    for _ in 0..100 {
        s.write_all(b"x").expect("write");
        s.read_exact(&mut b).expect("read");
    }
    per_call(n / 3, || {
        s.write_all(b"x").expect("write");
        s.read_exact(&mut b).expect("read");
    }) / 1000.0
}

/// Runs `cmd`, which prints one number, and returns it.
fn figure(cmd: &mut Command) -> Result<f64, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", support::describe(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            support::describe(cmd),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim()
        .lines()
        .last()
        .unwrap_or("")
        .parse()
        .map_err(|_| format!("bad output {s:?} from {}", support::describe(cmd)))
}

fn row(name: &str, ours: &Result<f64, String>, base: &Result<f64, String>, unit: &str) {
    match (ours, base) {
        (Ok(a), Ok(b)) => println!(
            "{name:<48} {a:>9.1} {unit:<3} vs {b:>9.1} {unit:<3}  ratio {:.2}  (+{:.1} {unit})",
            a / b,
            a - b
        ),
        (Err(e), _) | (_, Err(e)) => println!("{name:<48} error: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize, d: u64| arg(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match arg(1) {
        Some("-h" | "--help") => {
            println!(
                "usage: zpoline-lkl-bench [N]\n\nzpoline backed by LKL against its baselines, in a \
                 network namespace it makes (root): LKL-routed getsockname vs the host kernel's, \
                 pass-through getppid vs native, UDP echo and TCP 1-byte request/response under \
                 lkl-run --zpoline vs the LD_PRELOAD hijack library, TCP request/response from a \
                 forked worker of the tree's one kernel vs its first process, and vs the host \
                 kernel's own (the client in the namespace, the server on its address)."
            );
            return;
        }
        Some("loop-getsockname-inet") => {
            return println!("{:.2}", getsockname_loop(libc::AF_INET, num(2, 200_000)))
        }
        Some("loop-getsockname-unix") => {
            return println!("{:.2}", getsockname_loop(libc::AF_UNIX, num(2, 200_000)))
        }
        Some("loop-getppid") => {
            let ns = per_call(num(2, 200_000), || {
                // SAFETY: getppid has no arguments.
                unsafe { libc::syscall(libc::SYS_getppid) };
            });
            return println!("{ns:.2}");
        }
        Some("loop-sigmask") => {
            // What blocking signals around each LKL call would add: two rt_sigprocmask.
            let all = !0u64;
            let mut old = 0u64;
            let ns = per_call(num(2, 200_000), || {
                // SAFETY: rt_sigprocmask on our own 8-byte sets; the mask is restored.
                unsafe {
                    libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &all, &mut old, 8);
                    libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &old, 0, 8);
                }
            });
            return println!("{ns:.2}");
        }
        Some("echo-server") => return echo_server(),
        Some("udp") => return println!("{:.2}", udp_client(num(2, 2000))),
        Some("tcp") => return println!("{:.2}", tcp_client(num(2, 2000))),
        Some("tcp-forked") => {
            // The same client in a forked child (a worker of a forking server).
            // SAFETY: fork from this single-threaded process; the child only runs the
            // client and exits.
            match unsafe { libc::fork() } {
                0 => {
                    println!("{:.2}", tcp_client(num(2, 2000)));
                    std::process::exit(0);
                }
                pid if pid > 0 => {
                    let mut st = 0;
                    // SAFETY: waiting for our child.
                    unsafe { libc::waitpid(pid, &mut st, 0) };
                    std::process::exit(i32::from(
                        !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0),
                    ));
                }
                _ => std::process::exit(1),
            }
        }
        _ => {}
    }
    if let Err(e) = run(num(1, 200_000)) {
        eprintln!("zpoline-lkl-bench: {e}");
        std::process::exit(1);
    }
}

fn run(n: u64) -> Result<(), String> {
    support::require_root("network namespaces, a tap and vm.mmap_min_addr=0")?;
    support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let release = support::cargo_build("loader")?;
    let lkl_run: PathBuf = release.join("lkl-run");
    let hijack = support::cargo_build("lkl-hijack")?.join("liblkl_hijack.so");
    let ns = Netns::new("zpb")?;
    ns.add_tap("zpbtap0", &["198.18.0.1/24"])?;
    let tmp = TempDir::new("zpb")?;
    let conf = tmp.path().join("conf.json");
    std::fs::write(
        &conf,
        r#"{"interfaces": [{"type": "tap", "param": "zpbtap0", "ip": "198.18.0.2", "masklen": "24"}]}"#,
    )
    .map_err(|e| e.to_string())?;
    let _server = ns.spawn(ns.command(&me).arg("echo-server"))?;
    std::thread::sleep(Duration::from_millis(300));
    let ns_s = n.to_string();
    let rt = (n / 100).max(300).to_string();
    let zp = |mode: &str, count: &str| -> Result<f64, String> {
        figure(
            ns.command(&lkl_run)
                .args(["--zpoline", "--config"])
                .arg(&conf)
                .arg(&me)
                .args([mode, count]),
        )
    };
    let native = |mode: &str, count: &str| figure(ns.command(&me).args([mode, count]));
    let preload = |mode: &str, count: &str, lib: &Path| {
        // Through env(1), so that `ip netns exec` itself is not preloaded.
        let mut preload = std::ffi::OsString::from("LD_PRELOAD=");
        preload.push(lib);
        figure(
            ns.command("env")
                .arg(preload)
                .arg(&me)
                .args([mode, count])
                .env("LKL_HIJACK_CONFIG_FILE", &conf),
        )
    };
    println!(
        "zpoline backed by LKL ({} calls, {} round trips per figure; best of 3)",
        n, rt
    );
    println!("{:<48} {:>13}    {:>13}", "", "ours", "baseline");
    row(
        "getsockname, LKL socket: lkl-run vs host kernel",
        &zp("loop-getsockname-inet", &ns_s),
        &native("loop-getsockname-inet", &ns_s),
        "ns",
    );
    row(
        "getsockname, host AF_UNIX: lkl-run vs native",
        &zp("loop-getsockname-unix", &ns_s),
        &native("loop-getsockname-unix", &ns_s),
        "ns",
    );
    row(
        "getppid pass-through: lkl-run vs native",
        &zp("loop-getppid", &ns_s),
        &native("loop-getppid", &ns_s),
        "ns",
    );
    match native("loop-sigmask", &ns_s) {
        Ok(v) => println!(
            "{:<48} {v:>9.1} ns (why signal handlers are wrapped instead)",
            "blocking signals around a call would add"
        ),
        Err(e) => println!("sigmask: {e}"),
    }
    row(
        "UDP echo round trip: lkl-run vs LD_PRELOAD hijack",
        &zp("udp", &rt),
        &preload("udp", &rt, &hijack),
        "us",
    );
    row(
        "TCP 1-byte request/response: lkl-run vs hijack",
        &zp("tcp", &rt),
        &preload("tcp", &rt, &hijack),
        "us",
    );
    row(
        "TCP request/response, forked worker vs first",
        &zp("tcp-forked", &rt),
        &zp("tcp", &rt),
        "us",
    );
    row(
        "TCP request/response: lkl-run vs host (local)",
        &zp("tcp", &rt),
        &native("tcp", &rt),
        "us",
    );
    Ok(())
}
