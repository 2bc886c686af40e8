//! virtio-net end to end, inside a network namespace this test creates.
//!
//! The parent (root) makes namespace `lkltest-PID` with tap `lkltap0`
//! addressed 198.18.0.1/24, then runs itself again inside it with
//! `--child`. The child boots LKL with the tap as a virtio-net device,
//! gives the kernel's interface 198.18.0.2/24 with lkl-net, and connects
//! from LKL to a listener on 198.18.0.1 in a host thread, sending bytes
//! both ways. The namespace is deleted however the child ends, so no
//! traffic ever leaves it. Prints `N passed, N failed`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitCode};
use std::time::Duration;

type Outcome = Result<(), String>;

const TAP: &str = "lkltap0";
/// A second tap, hot-added after boot.
const TAP2: &str = "lkltap1";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const LKL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const MAC: [u8; 6] = [0x02, 0x4c, 0x4b, 0x4c, 0xaa, 0x01];
/// Bytes sent each way: many frames, so receive buffers are refilled.
const PAYLOAD: usize = 1 << 20;
/// The child gives up after this long.
const DEADLINE: Duration = Duration::from_secs(90);

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--child") {
        return child();
    }
    let (passed, failed) = match parent() {
        Ok(()) => (1, 0),
        Err(e) => {
            eprintln!("FAIL virtio-net over tap: {e}");
            (0, 1)
        }
    };
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `ip ARGS`; an error names the command and what it printed.
fn ip(args: &[&str]) -> Outcome {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Deletes the namespace when dropped, on success and failure alike.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.0]) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn parent() -> Outcome {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("this test needs root (network namespaces and a tap)".into());
    }
    let name = format!("lkltest-{}", std::process::id());
    ip(&["netns", "add", &name])?;
    let ns = Namespace(name);
    let in_ns = |args: &[&str]| {
        let mut all = vec!["netns", "exec", &ns.0, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    };
    in_ns(&["link", "set", "lo", "up"])?;
    in_ns(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
    in_ns(&["addr", "add", "198.18.0.1/24", "dev", TAP])?;
    in_ns(&["link", "set", TAP, "up"])?;
    in_ns(&["tuntap", "add", "dev", TAP2, "mode", "tap"])?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(&exe)
        .arg("--child")
        .status()
        .map_err(|e| format!("cannot run the child in {}: {e}", ns.0))?;
    if !status.success() {
        return Err(format!("the child in namespace {} failed: {status}", ns.0));
    }
    Ok(())
}

fn child() -> ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        eprintln!("child: no result after {DEADLINE:?}, giving up");
        std::process::exit(2);
    });
    match run_child() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed.into()) as u8
        })
        .collect()
}

fn run_child() -> Outcome {
    // The listener is bound before LKL connects; it sits in this namespace.
    let listener = TcpListener::bind((HOST_IP, 0)).map_err(|e| format!("bind {HOST_IP}: {e}"))?;
    let port = listener.local_addr().map_err(s)?.port();
    let server = std::thread::spawn(move || -> Result<SocketAddr, String> {
        let (mut conn, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let mut got = vec![0u8; PAYLOAD];
        conn.read_exact(&mut got)
            .map_err(|e| format!("host read: {e}"))?;
        if got != pattern(PAYLOAD, 3) {
            return Err("the host received different bytes from what LKL sent".into());
        }
        conn.write_all(&pattern(PAYLOAD, 7))
            .map_err(|e| format!("host write: {e}"))?;
        Ok(peer)
    });

    let id = lkl::add_net(lkl::NetBackend::Tap { ifname: TAP.into() }, Some(MAC)).map_err(s)?;
    let kernel = lkl::boot(&lkl::BootOptions {
        memory: 64 << 20,
        ..Default::default()
    })
    .map_err(|e| format!("boot: {e}"))?;
    let result = exchange(id, port)
        .and_then(|()| host_pings_lkl())
        .and_then(|()| hot_add(id));
    let stats = lkl::net_stats(id).map_err(s)?;
    eprintln!("child: device counters {stats:?}");
    kernel.halt().map_err(|e| format!("halt: {e}"))?;
    result?;
    receive_threads_end()?;
    let peer = server
        .join()
        .map_err(|_| "the host listener panicked".to_string())??;
    if peer.ip() != IpAddr::V4(LKL_IP) {
        return Err(format!(
            "the host saw the connection from {peer}, not {LKL_IP}"
        ));
    }
    println!("ok: TCP {PAYLOAD} bytes each way between LKL {LKL_IP} and host {HOST_IP}:{port}");
    Ok(())
}

fn exchange(id: lkl::NetId, port: u16) -> Outcome {
    let name = lkl::net_ifname(id).map_err(s)?;
    let index = lkl::net_ifindex(id).map_err(s)?;
    if !name.starts_with("eth") {
        return Err(format!("the device is interface {name}, expected ethN"));
    }
    let mut nl = lkl_net::Rtnl::open().map_err(s)?;
    let link = nl.link(index).map_err(s)?;
    if link.name != name {
        return Err(format!("ifindex {index} is {}, not {name}", link.name));
    }
    nl.set_up(index, true).map_err(s)?;
    nl.add_addr(index, IpAddr::V4(LKL_IP), 24, true)
        .map_err(s)?;

    let fd = lkl::socket(
        lkl::sys::LKL_AF_INET as i32,
        lkl::sys::LKL_SOCK_STREAM as i32,
        0,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let r = talk(fd, port);
    let _ = lkl::close(fd);
    r
}

fn talk(fd: i32, port: u16) -> Outcome {
    let to = SocketAddr::from((HOST_IP, port));
    lkl::connect(fd, &to).map_err(|e| format!("connect from LKL to {to}: {e}"))?;
    let out = pattern(PAYLOAD, 3);
    let mut sent = 0;
    while sent < out.len() {
        sent += lkl::write(fd, &out[sent..]).map_err(|e| format!("LKL write: {e}"))?;
    }
    let mut got = vec![0u8; PAYLOAD];
    let mut have = 0;
    while have < got.len() {
        let n = lkl::read(fd, &mut got[have..]).map_err(|e| format!("LKL read: {e}"))?;
        if n == 0 {
            return Err(format!("the host closed after {have} of {PAYLOAD} bytes"));
        }
        have += n;
    }
    if got != pattern(PAYLOAD, 7) {
        return Err("LKL received different bytes from what the host sent".into());
    }
    Ok(())
}

/// A device added while the kernel runs gets an interface of its own.
fn hot_add(first: lkl::NetId) -> Outcome {
    let id = lkl::add_net(
        lkl::NetBackend::Tap {
            ifname: TAP2.into(),
        },
        None,
    )
    .map_err(|e| format!("hot-add: {e}"))?;
    let (name, first_name) = (
        lkl::net_ifname(id).map_err(s)?,
        lkl::net_ifname(first).map_err(s)?,
    );
    if name == first_name || !name.starts_with("eth") {
        return Err(format!(
            "the hot-added device is {name}, the first {first_name}"
        ));
    }
    let index = lkl::net_ifindex(id).map_err(s)?;
    let link = lkl_net::Rtnl::open().map_err(s)?.link(index).map_err(s)?;
    if link.name != name {
        return Err(format!("ifindex {index} is {}, not {name}", link.name));
    }
    println!("ok: hot-added {TAP2} is {name} (ifindex {index}), beside {first_name}");
    Ok(())
}

/// After the halt, the receive threads (`lkl-net-rx-N`) end.
fn receive_threads_end() -> Outcome {
    let start = std::time::Instant::now();
    loop {
        let mut left = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").map_err(s)? {
            let comm =
                std::fs::read_to_string(task.map_err(s)?.path().join("comm")).unwrap_or_default();
            if comm.starts_with("lkl-net-rx") {
                left.push(comm.trim().to_owned());
            }
        }
        if left.is_empty() {
            println!("ok: the receive threads ended at halt");
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "receive threads still running after halt: {left:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The host side sends ICMP echo requests to LKL over a raw socket and
/// gets the replies: traffic started from the host, with ARP both ways.
fn host_pings_lkl() -> Outcome {
    // SAFETY: plain arguments; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if raw < 0 {
        return Err(format!(
            "raw ICMP socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: SO_RCVTIMEO reads one timeval, which lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("SO_RCVTIMEO: {}", std::io::Error::last_os_error()));
    }
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(LKL_IP).to_be(),
        },
        sin_zero: [0; 8],
    };
    let ident = std::process::id() as u16;
    for seq in 1..=3u16 {
        let mut pkt = vec![8u8, 0, 0, 0];
        pkt.extend_from_slice(&ident.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend(pattern(56, seq as u8));
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        // SAFETY: sends from a live buffer of its length to a sockaddr_in
        // that lives across the call.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(format!(
                "echo request {seq}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let start = std::time::Instant::now();
        loop {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(format!("no echo reply {seq} from {LKL_IP} within 5 s"));
            }
            let mut buf = [0u8; 1500];
            // SAFETY: receives into a live buffer of its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                continue; // the timeout: look at the clock again
            }
            let got = &buf[..n as usize];
            let ihl = usize::from(got[0] & 0xf) * 4;
            let (Some(ip), Some(icmp)) = (got.get(..ihl), got.get(ihl..)) else {
                continue;
            };
            let from = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            if from == LKL_IP && icmp.len() == pkt.len() && icmp[0] == 0 && icmp[4..] == pkt[4..] {
                break;
            }
        }
    }
    println!("ok: the host pinged LKL at {LKL_IP} 3 times over a raw socket");
    Ok(())
}
