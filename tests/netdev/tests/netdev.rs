//! virtio-net end to end: every backend, offloads on and off.
//!
//! Case `devices`: the parent (root) makes namespace `lklnd-PID` holding
//! - tap `lkltap0` (198.18.0.1/24), LKL's eth0 without offloads, and
//!   `lkltap1` for a hot-added device;
//! - tap `lkltapo` (198.18.1.1/24), a device with offloads (checksum, TSO
//!   both ways, mergeable receive buffers);
//! - veth `lklmvA` (198.18.2.1/24) / `lklmvB`, with macvtap `lklmvt0` on
//!   `lklmvB` (`/dev/tapN`, N its ifindex, chosen unique);
//! - veth `lklrwA` (198.18.3.1/24) / `lklrwB`, a raw (AF_PACKET) device on
//!   `lklrwB`;
//! - tap `lkltapj` (198.18.5.1/24), MTU 9000, a jumbo-frame device
//!   (mergeable buffers);
//! - macvtap and raw again (198.18.6.0/24, 198.18.7.0/24), with offloads
//!   (the raw one's veth peer sends large segments);
//!
//! then runs itself inside it with `--devices`: one LKL kernel gets all of
//! them (LKL at .2 in each subnet) and sends 1 MiB each way over TCP with
//! a listener in the namespace, checking every byte; the host pings LKL.
//!
//! Case `pipe`: two processes (`--pipe a`, `--pipe b`), each its own LKL
//! over opposite ends of two FIFOs (198.18.4.1 and .2, one with offloads,
//! one without), ping and TCP 1 MiB each way between the two kernels.
//!
//! The namespace and FIFOs are removed however the children end; no
//! traffic leaves the namespace. Prints `N passed, N failed`, counting the
//! children's `ok:` and `FAIL:` lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use lkl_netdev_test::{
    configure, inet_socket, lkl_read_exact, lkl_write_all, pattern, ping, require_root, s,
    timeouts, HostIcmp, LklIcmp, Netns, Outcome, TempDir,
};

/// Socket timeouts in LKL: a stall fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

const MAC0: [u8; 6] = [0x02, 0x4c, 0x4b, 0x4c, 0xaa, 0x01];
const MAC_MVT: [u8; 6] = [0x02, 0x4c, 0x4b, 0x4c, 0xaa, 0x03];
const MAC_MVT2: [u8; 6] = [0x02, 0x4c, 0x4b, 0x4c, 0xaa, 0x06];
/// Checksum and TSO both ways, mergeable receive buffers.
const FULL_OFFLOAD: u64 = 0x9983;
/// Bytes sent each way: many frames, so receive buffers are refilled.
const PAYLOAD: usize = 1 << 20;
/// A child gives up after this long.
const DEADLINE: Duration = Duration::from_secs(120);

/// One device of the `devices` case.
struct Dev {
    what: &'static str,
    /// The subnet's third byte: host .1, LKL .2.
    net: u8,
    mtu: u32,
    offload: u64,
    /// Whether frames larger than 1514 bytes must cross (TSO, jumbo).
    large: bool,
    /// Receive busy polling (the default) or none.
    busy_poll: bool,
}

const DEVS: [Dev; 7] = [
    Dev {
        what: "tap",
        net: 0,
        mtu: 1500,
        offload: 0,
        large: false,
        busy_poll: true,
    },
    // No busy polling: frames queue in the tap while the receive thread
    // wakes, and are joined (`coalesced_download`).
    Dev {
        what: "tap with offloads",
        net: 1,
        mtu: 1500,
        offload: FULL_OFFLOAD,
        large: true,
        busy_poll: false,
    },
    Dev {
        what: "macvtap",
        net: 2,
        mtu: 1500,
        offload: 0,
        large: false,
        busy_poll: true,
    },
    Dev {
        what: "raw",
        net: 3,
        mtu: 1500,
        offload: 0,
        large: false,
        busy_poll: true,
    },
    Dev {
        what: "tap at MTU 9000 with mergeable buffers",
        net: 5,
        mtu: 9000,
        offload: 0x8000,
        large: true,
        busy_poll: true,
    },
    Dev {
        what: "macvtap with offloads",
        net: 6,
        mtu: 1500,
        offload: FULL_OFFLOAD,
        large: true,
        busy_poll: true,
    },
    Dev {
        what: "raw with offloads",
        net: 7,
        mtu: 1500,
        offload: FULL_OFFLOAD,
        large: true,
        busy_poll: true,
    },
];

fn host_ip(net: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, net, 1)
}

fn lkl_ip(net: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, net, 2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help") {
        println!("netdev: end-to-end virtio-net test (root; makes its own namespace)");
        return ExitCode::SUCCESS;
    }
    if let Some(i) = args.iter().position(|a| a == "--devices") {
        return child(|| run_devices(&args[i + 1..]));
    }
    if let Some(i) = args.iter().position(|a| a == "--pipe") {
        return child(|| run_pipe(&args[i + 1..]));
    }
    let mut tally = (0, 0);
    for (name, case) in [
        ("devices", devices_case as fn() -> Outcome),
        ("pipe", pipe_case),
    ] {
        let (p, f) = count(case());
        if p + f == 0 {
            eprintln!("FAIL {name}: no result");
            tally.1 += 1;
        }
        tally.0 += p;
        tally.1 += f;
    }
    println!("{} passed, {} failed", tally.0, tally.1);
    if tally.1 == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Counts the children's `ok:`/`FAIL:` lines, collected in `out`; a case
/// that failed as a whole counts once more.
fn count(r: Result<(), String>) -> (usize, usize) {
    let lines = RESULTS.with(|l| std::mem::take(&mut *l.borrow_mut()));
    let passed = lines.iter().filter(|l| l.starts_with("ok:")).count();
    let failed = lines.iter().filter(|l| l.starts_with("FAIL:")).count();
    match r {
        Ok(()) => (passed, failed),
        Err(e) => {
            eprintln!("FAIL: {e}");
            (passed, failed + 1)
        }
    }
}

thread_local! {
    static RESULTS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `cmd`, echoing its stdout and keeping its result lines.
fn run_child(mut cmd: Command, what: &str) -> Result<std::process::Child, String> {
    cmd.stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))
}

fn collect(child: &mut std::process::Child) {
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            RESULTS.with(|l| l.borrow_mut().push(line));
        }
    }
}

fn wait(mut child: std::process::Child, what: &str) -> Outcome {
    collect(&mut child);
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed: {status}"));
    }
    Ok(())
}

fn devices_case() -> Outcome {
    let ns = Netns::new("lklnd")?;
    let addr = |net: u8| format!("{}/24", host_ip(net));
    for (tap, net) in [("lkltap0", 0), ("lkltapo", 1), ("lkltapj", 5)] {
        ns.add_tap(tap, &[&addr(net)])?;
    }
    ns.ip(&["link", "set", "lkltapj", "mtu", "9000"])?;
    ns.add_tap("lkltap1", &[])?;
    ns.add_veth("lklmvA", &[&addr(2)], "lklmvB", &[])?;
    ns.add_veth("lklrwA", &[&addr(3)], "lklrwB", &[])?;
    // The host's TCP sends large segments over a veth unless told not to;
    // the raw device (no receive offloads here) would have to drop them.
    ns.ip(&["link", "set", "lklrwA", "gso_max_segs", "1"])?;
    ns.add_veth("lklmoA", &[&addr(6)], "lklmoB", &[])?;
    ns.add_veth("lklroA", &[&addr(7)], "lklroB", &[])?;
    // /dev/tapN is named by ifindex across namespaces: pick rare ones.
    let base = 20_000 + std::process::id() % 40_000;
    let dev = add_macvtap(&ns, "lklmvB", "lklmvt0", base, MAC_MVT)?;
    let dev2 = add_macvtap(&ns, "lklmoB", "lklmvt1", base + 1, MAC_MVT2)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = ns.command(&exe);
    cmd.args(["--devices", &dev, &dev2]);
    let child = run_child(cmd, &format!("the child in namespace {}", ns.name()))?;
    wait(child, "the --devices child")
}

/// Adds macvtap `name` with `mac` on `link` at ifindex `index`; returns its
/// `/dev/tapN` once it appears.
fn add_macvtap(ns: &Netns, link: &str, name: &str, index: u32, mac: [u8; 6]) -> Outcome<String> {
    let (index, mac) = (index.to_string(), mac.map(|b| format!("{b:02x}")).join(":"));
    ns.ip(&[
        "link", "add", "link", link, "name", name, "index", &index, "address", &mac, "type",
        "macvtap", "mode", "bridge",
    ])?;
    ns.address(name, &[])?;
    let dev = format!("/dev/tap{index}");
    let start = Instant::now();
    while !Path::new(&dev).exists() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!("{dev} did not appear for macvtap {name}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(dev)
}

/// Runs `f` as a child with a deadline; prints `FAIL: ...` on error.
fn child(f: impl FnOnce() -> Outcome) -> ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        println!("FAIL: no result after {DEADLINE:?}, giving up");
        std::process::exit(2);
    });
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A host listener on `ip` that reads the payload, checks it, and answers
/// with its own; returns the port and the peer it saw.
fn host_server(
    ip: Ipv4Addr,
) -> Result<(u16, std::thread::JoinHandle<Result<SocketAddr, String>>), String> {
    let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    let port = listener.local_addr().map_err(s)?.port();
    let h = std::thread::spawn(move || -> Result<SocketAddr, String> {
        let (mut conn, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(s)?;
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
    Ok((port, h))
}

fn run_devices(args: &[String]) -> Outcome {
    let [macvtap, macvtap2] = args else {
        return Err("--devices needs the two macvtap paths".into());
    };
    let backends = [
        lkl::NetBackend::Tap {
            ifname: "lkltap0".into(),
        },
        lkl::NetBackend::Tap {
            ifname: "lkltapo".into(),
        },
        lkl::NetBackend::Macvtap {
            path: macvtap.into(),
        },
        lkl::NetBackend::Raw {
            ifname: "lklrwB".into(),
        },
        lkl::NetBackend::Tap {
            ifname: "lkltapj".into(),
        },
        lkl::NetBackend::Macvtap {
            path: macvtap2.into(),
        },
        lkl::NetBackend::Raw {
            ifname: "lklroB".into(),
        },
    ];
    let mut ids = Vec::new();
    for (dev, backend) in DEVS.iter().zip(backends) {
        let mac = match dev.net {
            0 => Some(MAC0),
            2 => Some(MAC_MVT),
            6 => Some(MAC_MVT2),
            _ => None,
        };
        let mut opts = lkl::NetOptions {
            mac,
            offload: dev.offload,
            ..Default::default()
        };
        if !dev.busy_poll {
            opts.busy_poll = Duration::ZERO;
        }
        ids.push(lkl::add_net_with(backend, &opts).map_err(|e| format!("{}: {e}", dev.what))?);
    }
    let kernel = lkl::boot(&lkl::BootOptions {
        memory: 96 << 20,
        ..Default::default()
    })
    .map_err(|e| format!("boot: {e}"))?;
    let mut failed = false;
    for (dev, &id) in DEVS.iter().zip(&ids) {
        let r = exchange(id, dev);
        match r {
            Ok(line) => println!("ok: {line}"),
            Err(e) => {
                failed = true;
                println!("FAIL: {}: {e}", dev.what);
            }
        }
    }
    for r in [
        in_order(),
        coalesced_download(ids[1], &DEVS[1]),
        host_pings_lkl(lkl_ip(0)),
        host_pings_lkl(lkl_ip(2)),
        hot_add(ids[0]),
    ] {
        match r {
            Ok(line) => println!("ok: {line}"),
            Err(e) => {
                failed = true;
                println!("FAIL: {e}");
            }
        }
    }
    let halted = halt_watchdog();
    kernel.halt().map_err(|e| format!("halt: {e}"))?;
    halted.store(true, std::sync::atomic::Ordering::Release);
    receive_threads_end()?;
    println!("ok: the receive threads ended at halt");
    if failed {
        return Err("some devices failed (above)".into());
    }
    Ok(())
}

/// TCP 1 MiB each way between LKL on device `id` and a host listener.
fn exchange(id: lkl::NetId, dev: &Dev) -> Result<String, String> {
    let (host, me) = (host_ip(dev.net), lkl_ip(dev.net));
    let name = configure(id, me, dev.mtu)?;
    let (port, server) = host_server(host)?;
    let to = SocketAddr::from((host, port));
    let fd = inet_socket(lkl::sys::LKL_SOCK_STREAM, 0)?;
    let r = timeouts(fd, IO_TIMEOUT)
        .and_then(|()| lkl::connect(fd, &to).map_err(|e| format!("connect from LKL to {to}: {e}")))
        .and_then(|()| talk(fd));
    let _ = lkl::close(fd);
    r?;
    let peer = server
        .join()
        .map_err(|_| "the host listener panicked".to_string())??;
    if peer.ip() != IpAddr::V4(me) {
        return Err(format!("the host saw the connection from {peer}, not {me}"));
    }
    let st = lkl::net_stats(id).map_err(s)?;
    let (tx_avg, rx_avg) = (
        st.tx_bytes / st.tx_frames.max(1),
        st.rx_bytes / st.rx_frames.max(1),
    );
    let biggest = tx_avg.max(rx_avg);
    if dev.large && biggest <= 1514 {
        return Err(format!("no frame larger than 1514 bytes crossed: {st:?}"));
    }
    if !dev.large && biggest > u64::from(dev.mtu) + 14 {
        return Err(format!("frames larger than the MTU crossed: {st:?}"));
    }
    if st.rx_dropped != 0 || st.tx_errors != 0 {
        return Err(format!("frames were lost: {st:?}"));
    }
    // A transfer is bulk traffic: the transmit thread takes over (it needs
    // busy polling).
    if dev.busy_poll && st.tx_threaded == 0 {
        return Err(format!("the transmit thread sent no frame: {st:?}"));
    }
    Ok(format!(
        "{}: TCP {PAYLOAD} bytes each way, byte-exact, LKL {name} {me} <-> host {host} \
         (offload {:#x}, mtu {}, average frame tx {tx_avg} rx {rx_avg} bytes, {} of {} frames \
         sent by the transmit thread)",
        dev.what, dev.offload, dev.mtu, st.tx_threaded, st.tx_frames
    ))
}

/// The host (this namespace's stack) received every segment LKL sent in
/// order: the transmit thread and the kernel's thread never reorder frames
/// when they hand transmission to each other (`TCPOFOQueue` in
/// `/proc/net/netstat` counts segments queued out of order).
fn in_order() -> Result<String, String> {
    let text = std::fs::read_to_string("/proc/net/netstat").map_err(s)?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let found = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "TCPOFOQueue");
        return match found {
            Some((_, "0")) => Ok("the host got LKL's segments in order (TCPOFOQueue 0)".into()),
            Some((_, v)) => Err(format!("the host queued {v} segments out of order")),
            None => Err("no TCPOFOQueue in /proc/net/netstat".into()),
        };
    }
    Err("no TcpExt in /proc/net/netstat".into())
}

/// Bytes of the download that must be coalesced.
const DOWNLOAD: usize = 32 << 20;

/// The host sends [`DOWNLOAD`] bytes to LKL over device `id` (one with
/// mergeable buffers, TSO4 and checksum offload): every byte arrives, and
/// some frames were joined on the way (receive coalescing).
fn coalesced_download(id: lkl::NetId, dev: &Dev) -> Result<String, String> {
    let host = host_ip(dev.net);
    let listener = TcpListener::bind((host, 0)).map_err(|e| format!("bind {host}: {e}"))?;
    let to = SocketAddr::from((host, listener.local_addr().map_err(s)?.port()));
    let sender = std::thread::spawn(move || -> Outcome {
        let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        conn.write_all(&pattern(DOWNLOAD, 11))
            .map_err(|e| format!("host write: {e}"))
    });
    let before = lkl::net_stats(id).map_err(s)?;
    let fd = inet_socket(lkl::sys::LKL_SOCK_STREAM, 0)?;
    let got = timeouts(fd, IO_TIMEOUT)
        .and_then(|()| lkl::connect(fd, &to).map_err(|e| format!("connect to {to}: {e}")))
        .and_then(|()| lkl_read_exact(fd, DOWNLOAD));
    let _ = lkl::close(fd);
    let got = got?;
    sender
        .join()
        .map_err(|_| "the host sender panicked".to_string())??;
    if got != pattern(DOWNLOAD, 11) {
        return Err("LKL received different bytes from what the host sent".into());
    }
    let after = lkl::net_stats(id).map_err(s)?;
    let (frames, joined) = (
        after.rx_frames - before.rx_frames,
        after.rx_coalesced - before.rx_coalesced,
    );
    if joined == 0 || after.rx_dropped != before.rx_dropped {
        return Err(format!(
            "no frame was coalesced, or frames were lost: {frames} frames, {joined} joined, \
             {after:?}"
        ));
    }
    Ok(format!(
        "{}: {DOWNLOAD} bytes from the host, byte-exact, {} host frames reached LKL as {frames} \
         (receive coalescing)",
        dev.what,
        frames + joined
    ))
}

/// Writes the payload, then reads the peer's and checks it.
fn talk(fd: i32) -> Outcome {
    lkl_write_all(fd, &pattern(PAYLOAD, 3))?;
    if lkl_read_exact(fd, PAYLOAD)? != pattern(PAYLOAD, 7) {
        return Err("LKL received different bytes from what the peer sent".into());
    }
    Ok(())
}

/// A device added while the kernel runs gets an interface of its own.
fn hot_add(first: lkl::NetId) -> Result<String, String> {
    let id = lkl::add_net(
        lkl::NetBackend::Tap {
            ifname: "lkltap1".into(),
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
    Ok(format!(
        "hot-added lkltap1 is {name} (ifindex {index}), beside {first_name}"
    ))
}

/// If the halt does not return within 20 s, prints a `FAIL:` line with
/// every thread's name, state and wait channel, and exits.
fn halt_watchdog() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        if seen.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut threads = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
            let state = read("stat").split(") ").nth(1).unwrap_or("").chars().next();
            threads.push(format!(
                "{} {:?} {}",
                read("comm").trim(),
                state,
                read("wchan")
            ));
        }
        // Where they are, if gdb is there to say (for the report).
        let bt = Command::new("gdb")
            .args([
                "-p",
                &std::process::id().to_string(),
                "-batch",
                "-ex",
                "thread apply all bt 12",
            ])
            .output();
        if let Ok(out) = bt {
            eprintln!("halt watchdog: {}", String::from_utf8_lossy(&out.stdout));
        }
        println!(
            "FAIL: halt did not return within 20 s; threads: {}",
            threads.join("; ")
        );
        std::process::exit(3);
    });
    done
}

/// After the halt, the receive threads (`lkl-net-rx-N`) end.
fn receive_threads_end() -> Outcome {
    let start = Instant::now();
    loop {
        let mut left = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").map_err(s)? {
            let comm =
                std::fs::read_to_string(task.map_err(s)?.path().join("comm")).unwrap_or_default();
            if comm.starts_with("lkl-net-rx") || comm.starts_with("lkl-net-tx") {
                left.push(comm.trim().to_owned());
            }
        }
        if left.is_empty() {
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

/// The host side pings LKL over a raw socket: traffic started from the
/// host, with ARP both ways.
fn host_pings_lkl(to_ip: Ipv4Addr) -> Result<String, String> {
    let sock = HostIcmp::open()?;
    ping(&sock, to_ip, 3, Duration::from_secs(10))?;
    Ok(format!("the host pinged LKL at {to_ip} 3 times"))
}

fn mkfifo(path: &Path) -> Outcome {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(s)?;
    // SAFETY: a NUL-terminated path alive across the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn pipe_case() -> Outcome {
    require_root("the pipe case (FIFOs, two kernels)")?;
    let dir = TempDir::new("lklnd-pipe")?;
    let (ab, ba) = (dir.path().join("a-to-b"), dir.path().join("b-to-a"));
    mkfifo(&ab)?;
    mkfifo(&ba)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let spawn = |side: &str, rx: &Path, tx: &Path| {
        let mut cmd = Command::new(&exe);
        cmd.args(["--pipe", side]).arg(rx).arg(tx);
        run_child(cmd, &format!("pipe side {side}"))
    };
    let a = spawn("a", &ba, &ab)?;
    let b = spawn("b", &ab, &ba)?;
    let ra = wait(a, "pipe side a");
    let rb = wait(b, "pipe side b");
    ra.and(rb)
}

/// The TCP port side a listens on.
const PIPE_PORT: u16 = 5001;

/// One side of the pipe case: `a` (198.18.4.1, offloads 0x8003) serves,
/// `b` (198.18.4.2, none) pings it and connects.
fn run_pipe(args: &[String]) -> Outcome {
    let [side, rx, tx] = args else {
        return Err("--pipe needs SIDE RX TX".into());
    };
    let a = side == "a";
    let (me, peer) = if a {
        (Ipv4Addr::new(198, 18, 4, 1), Ipv4Addr::new(198, 18, 4, 2))
    } else {
        (Ipv4Addr::new(198, 18, 4, 2), Ipv4Addr::new(198, 18, 4, 1))
    };
    let opts = lkl::NetOptions {
        mac: None,
        offload: if a { 0x8003 } else { 0 },
        ..Default::default()
    };
    let backend = lkl::NetBackend::Pipe {
        rx: rx.into(),
        tx: tx.into(),
    };
    let id = lkl::add_net_with(backend, &opts).map_err(s)?;
    let kernel = lkl::boot(&lkl::BootOptions {
        memory: 64 << 20,
        ..Default::default()
    })
    .map_err(|e| format!("boot: {e}"))?;
    let r = configure(id, me, 1500).and_then(|_| if a { pipe_serve() } else { pipe_client(peer) });
    let st = lkl::net_stats(id).map_err(s)?;
    let halted = kernel.halt().map_err(|e| format!("halt: {e}"));
    let line = r?;
    halted?;
    if st.rx_dropped != 0 || st.tx_errors != 0 {
        return Err(format!("pipe side {side}: frames were lost: {st:?}"));
    }
    println!("ok: pipe side {side}: {line}");
    Ok(())
}

fn pipe_serve() -> Result<String, String> {
    let fd = inet_socket(lkl::sys::LKL_SOCK_STREAM, 0)?;
    let at = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PIPE_PORT));
    lkl::bind(fd, &at).map_err(|e| format!("bind {at}: {e}"))?;
    lkl::listen(fd, 1).map_err(|e| format!("listen: {e}"))?;
    let (conn, peer) = lkl::accept4(fd, 0).map_err(|e| format!("accept: {e}"))?;
    let _ = lkl::close(fd);
    timeouts(conn, IO_TIMEOUT)?;
    // The server checks what it got, then answers.
    let r = (|| -> Outcome {
        if lkl_read_exact(conn, PAYLOAD)? != pattern(PAYLOAD, 3) {
            return Err("side a received different bytes from what side b sent".into());
        }
        lkl_write_all(conn, &pattern(PAYLOAD, 7))?;
        let mut end = [0u8; 1];
        lkl::read(conn, &mut end).map_err(|e| format!("read: {e}"))?;
        Ok(())
    })();
    let _ = lkl::close(conn);
    r?;
    Ok(format!(
        "served TCP {PAYLOAD} bytes each way, byte-exact, to {peer:?}"
    ))
}

fn pipe_client(peer: Ipv4Addr) -> Result<String, String> {
    let rtts = lkl_pings(peer)?;
    let to = SocketAddr::from((peer, PIPE_PORT));
    let start = Instant::now();
    let fd = loop {
        let fd = inet_socket(lkl::sys::LKL_SOCK_STREAM, 0)?;
        match lkl::connect(fd, &to) {
            Ok(()) => break fd,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = (lkl::close(fd), e);
                let _ = lkl::nanosleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("connect to {to}: {e}")),
        }
    };
    let r = timeouts(fd, IO_TIMEOUT).and_then(|()| talk(fd));
    let _ = lkl::close(fd);
    r?;
    Ok(format!(
        "pinged {peer} 3 times (rtt {rtts:?}), TCP {PAYLOAD} bytes each way to {to}, byte-exact"
    ))
}

/// Pings `peer` 3 times from LKL, waiting for the peer's kernel to come
/// up; returns the round trips.
fn lkl_pings(peer: Ipv4Addr) -> Result<Vec<Duration>, String> {
    ping(&LklIcmp::open()?, peer, 3, Duration::from_secs(30))
}
