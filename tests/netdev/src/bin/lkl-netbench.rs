//! `lkl-netbench`: LKL's TCP/IP stack over virtio-net beside the host
//! kernel's, in one run, in network namespaces it makes (run as root).
//!
//! A server with host sockets sits in namespace S. The clients, each a run
//! of this program, measure TCP throughput both ways, 1-byte TCP
//! request/response latency and ping round trips against it:
//! - LKL (its own sockets, through `lkl::` system calls) over a tap in S,
//!   without offloads and with offloads (0x9983: checksum, TSO both ways,
//!   mergeable receive buffers);
//! - the host kernel (the same code on host sockets) from namespace C over
//!   a veth pair to S: with the veth's offloads, and without segmentation
//!   offload (`gso_max_segs 1` on both ends; there is no ethtool here to
//!   turn checksum offload off too);
//! - the host kernel behind a tap, as LKL is: from namespace C over a tap
//!   joined to a tap in S by a relay process (`relay`) that copies frames
//!   both ways, with offloads.
//!
//! Each figure is printed beside the host's, with the ratio: the goals are
//! against the veth (the host's fastest path), the tap figures show what
//! the tap itself costs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use lkl_netdev_test::{configure, ping, HostIcmp, IcmpSocket, LklIcmp, Netns};

/// The server's port.
const PORT: u16 = 5201;
/// The server's plain echo port.
const ECHO_PORT: u16 = 5202;
/// Bytes per write in the throughput runs.
const CHUNK: usize = 64 << 10;

#[derive(Parser)]
#[command(
    name = "lkl-netbench",
    about = "Compares LKL's TCP/IP stack over virtio-net (tap) with the host kernel's \
             (veth between two namespaces): TCP throughput with and without offloads, \
             1-byte TCP request/response latency, ping RTT; prints each figure beside \
             the host's with the ratio. Run as root: it makes its own namespaces."
)]
struct Cli {
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Round trips in the request/response measurement.
    #[arg(long, default_value_t = 3000)]
    rr: usize,
    /// Pings in the ping measurement (their median is the figure).
    #[arg(long, default_value_t = 200)]
    pings: usize,
    /// Rounds: the five clients take turns this many times; the best of
    /// each measurement is kept.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The offload mask of the LKL device "with offloads".
    #[arg(long, default_value = "0x9983", value_parser = parse_mask)]
    offload: u64,
    /// The LKL devices' receive busy polling, in µs (0: off; default:
    /// the library's, lkl::DEFAULT_BUSY_POLL).
    #[arg(long, default_value_t = lkl::DEFAULT_BUSY_POLL.as_micros() as u64)]
    busy_poll_us: u64,
    /// Turn the LKL devices' receive coalescing off (on by default:
    /// lkl::NetOptions::coalesce).
    #[arg(long)]
    no_coalesce: bool,
    /// Turn the LKL devices' transmit thread off (on by default:
    /// lkl::NetOptions::transmit_thread).
    #[arg(long)]
    no_transmit_thread: bool,
    /// Client: only the latency figures (ping, request/response), no
    /// throughput runs.
    #[arg(long)]
    latency_only: bool,
    /// Per-stage timestamps of LKL's request/response round trip in each
    /// placement (instead of the comparison): where the microseconds go.
    #[arg(long)]
    stages: bool,
    /// `lkl-run` and treebench (tests/zpoline-lkl/c/treebench.c): also
    /// measure request/response from a program on plain sockets under
    /// `lkl-run --zpoline` (needs vm.mmap_min_addr=0).
    #[arg(long, requires = "treebench")]
    lkl_run: Option<std::path::PathBuf>,
    /// See --lkl-run.
    #[arg(long, requires = "lkl_run")]
    treebench: Option<std::path::PathBuf>,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// (internal) The server, with host sockets.
    Server,
    /// (internal) Joins tap `a` (in this namespace) and tap `b` (in
    /// namespace `b_netns`) by copying frames between them, with the
    /// virtio-net header and offloads: the host's stack behind a tap, as
    /// LKL is.
    Relay {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[arg(long)]
        b_netns: String,
    },
    /// (internal) One client run; prints `RESULT name value` lines.
    Client {
        /// Whose stack.
        #[arg(long)]
        stack: Stack,
        /// The server's address.
        #[arg(long)]
        target: Ipv4Addr,
        /// LKL: the tap to use.
        #[arg(long, default_value = "")]
        tap: String,
        /// LKL: its address (/24).
        #[arg(long, default_value = "0.0.0.0")]
        ip: Ipv4Addr,
        /// LKL: the offload mask.
        #[arg(long, default_value = "0", value_parser = parse_mask)]
        offload: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Stack {
    Lkl,
    Host,
}

fn parse_mask(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches("0x");
    u64::from_str_radix(t, if t.len() < s.len() { 16 } else { 10 })
        .map_err(|e| format!("bad mask {s:?}: {e}"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.role {
        None => orchestrate(&cli),
        Some(Role::Server) => serve(),
        Some(Role::Relay {
            ref a,
            ref b,
            ref b_netns,
        }) => relay(a, b, b_netns, Duration::from_micros(cli.busy_poll_us)),
        Some(Role::Client {
            stack,
            target,
            ref tap,
            ip,
            offload,
        }) => client(&cli, stack, target, tap, ip, offload),
    }
}

/// A connected TCP socket of either stack.
trait Conn {
    fn write(&mut self, buf: &[u8]) -> Result<usize>;
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
    fn shutdown_write(&mut self) -> Result<()>;
    fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            buf = &buf[n..];
        }
        Ok(())
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut have = 0;
        while have < buf.len() {
            let n = self.read(&mut buf[have..])?;
            if n == 0 {
                bail!("the server closed early");
            }
            have += n;
        }
        Ok(())
    }
}

/// A host TCP socket.
struct HostConn(TcpStream);

impl Conn for HostConn {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        Ok(self.0.write(buf)?)
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        Ok(self.0.read(buf)?)
    }
    fn shutdown_write(&mut self) -> Result<()> {
        Ok(self.0.shutdown(std::net::Shutdown::Write)?)
    }
}

/// `SHUT_WR`.
const SHUT_WR: i32 = 1;
/// `TCP_NODELAY` (linux/tcp.h).
const TCP_NODELAY: i32 = 1;

/// An LKL TCP socket.
struct LklConn(i32);

impl Drop for LklConn {
    fn drop(&mut self) {
        let _ = lkl::close(self.0);
    }
}

impl Conn for LklConn {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        lkl::write(self.0, buf).map_err(|e| anyhow!("LKL write: {e}"))
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        lkl::read(self.0, buf).map_err(|e| anyhow!("LKL read: {e}"))
    }
    fn shutdown_write(&mut self) -> Result<()> {
        lkl::shutdown(self.0, SHUT_WR).map_err(|e| anyhow!("shutdown: {e}"))
    }
}

fn connect(stack: Stack, to: SocketAddr, op: u8) -> Result<Box<dyn Conn>> {
    let start = Instant::now();
    let mut conn: Box<dyn Conn> = loop {
        let r: Result<Box<dyn Conn>> = match stack {
            Stack::Host => TcpStream::connect(to)
                .and_then(|c| c.set_nodelay(true).map(|()| c))
                .map(|c| Box::new(HostConn(c)) as Box<dyn Conn>)
                .map_err(Into::into),
            Stack::Lkl => (|| {
                let fd = lkl_netdev_test::inet_socket(lkl::sys::LKL_SOCK_STREAM, 0)
                    .map_err(|e| anyhow!(e))?;
                let c = LklConn(fd);
                lkl::setsockopt_int(fd, lkl::sys::LKL_IPPROTO_TCP as i32, TCP_NODELAY, 1)
                    .map_err(|e| anyhow!("TCP_NODELAY: {e}"))?;
                lkl::connect(fd, &to).map_err(|e| anyhow!("connect {to}: {e}"))?;
                Ok(Box::new(c) as Box<dyn Conn>)
            })(),
        };
        match r {
            Ok(c) => break c,
            Err(e) if start.elapsed() > Duration::from_secs(10) => {
                return Err(e.context(format!("connecting to {to}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    conn.write_all(&[op])?;
    Ok(conn)
}

/// Throughput from us to the server, in Mbit/s (as the server counted).
fn upload(stack: Stack, to: SocketAddr, secs: u64) -> Result<f64> {
    let mut c = connect(stack, to, b'U')?;
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        c.write_all(&buf)?;
    }
    c.shutdown_write()?;
    let mut count = [0u8; 8];
    c.read_exact(&mut count)?;
    let t = start.elapsed().as_secs_f64();
    Ok(u64::from_le_bytes(count) as f64 * 8.0 / t / 1e6)
}

/// Throughput from the server to us, in Mbit/s.
fn download(stack: Stack, to: SocketAddr, secs: u64) -> Result<f64> {
    let mut c = connect(stack, to, b'D')?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let n = c.read(&mut buf)?;
        if n == 0 {
            bail!("the server closed early");
        }
        total += n as u64;
    }
    let t = start.elapsed().as_secs_f64();
    Ok(total as f64 * 8.0 / t / 1e6)
}

/// 1-byte request/response round trip, in µs: the best mean of 5 rounds
/// of `n / 5` (as treebench's `rr`, the program under `lkl-run`), after
/// `n / 10` to warm up.
fn request_response(stack: Stack, to: SocketAddr, n: usize) -> Result<f64> {
    let mut c = connect(stack, to, b'R')?;
    let mut b = [0u8; 1];
    for _ in 0..n / 10 {
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
    }
    let per_round = (n / RR_ROUNDS).max(1);
    let mut best = f64::MAX;
    for _ in 0..RR_ROUNDS {
        let start = Instant::now();
        for _ in 0..per_round {
            c.write_all(&b)?;
            c.read_exact(&mut b)?;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / per_round as f64);
    }
    Ok(best)
}

/// The spans of one LKL request/response round trip, in order, each
/// named by what happens in it; they add up to the round trip.
const STAGE_SPANS: [&str; 4] = [
    "send-to-device",
    "device-to-reply-read",
    "reply-to-interrupt",
    "interrupt-to-program",
];

/// Spans that overlap the chain above, shares of round trips, counts per
/// round trip.
const STAGE_EXTRA: [&str; 9] = [
    "tap-write",
    "interrupt-to-task-post",
    "task-post-to-program",
    "task-post-share",
    "interrupt-call",
    "irq-inline-share",
    "call-outlived-read-share",
    "lkl-wakeups",
    "context-switches",
];

/// Median µs of each span of `n` LKL round trips (see
/// [`lkl::virtio::net::trace`]): program send -> device transmit (LKL's
/// system call, TCP, the driver, the notify) -> reply read by the
/// receive thread (the tap write, which runs the host's stack on the
/// sending thread, the server, its reply, the receive thread finding it)
/// -> interrupt raised (delivery into the driver's buffers) -> program
/// back from `read` (handler, receive softirq, the program's wake-up and
/// return). Then the round trip; `tap-write` (inside the second span);
/// the last span split where the receive thread, in the interrupt call,
/// posted the woken task's semaphore (handler, softirq, TCP and the switch
/// to the program's task before; the host wake-up of the program's thread
/// and its return after; over the round trips where that happened, and
/// their share); `interrupt-call`, how long raising the interrupt kept the receive
/// thread; the share of round trips whose interrupt ran on the receive
/// thread (a call above 1 µs; else it was left pending for the CPU's
/// holder), and whose call returned only after the program was back;
/// per round trip, the host wake-ups LKL's semaphores made
/// ([`lkl::host::sem::handoffs`]) and this process's context switches.
fn stages(to: SocketAddr, n: usize) -> Result<Vec<(String, f64)>> {
    use lkl::virtio::net::trace::{self, Stage};
    trace::enable();
    let mut c = connect(Stack::Lkl, to, b'R')?;
    let mut b = [0u8; 1];
    for _ in 0..n / 10 {
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
    }
    let mut spans: Vec<Vec<u64>> = vec![Vec::with_capacity(n); STAGE_SPANS.len() + 3];
    let (mut to_post, mut post_to_end) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut inline, mut outlived) = (0, 0);
    let (h0, cs0) = (lkl::host::sem::handoffs(), context_switches());
    for _ in 0..n {
        trace::reset();
        let t0 = trace::now_ns();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        let end = trace::now_ns();
        // The interrupt call's end, stamped after the program is back
        // when the call outlives the read.
        let mut st = trace::read();
        for _ in 0..1000 {
            if st[Stage::IrqRaise as usize] == 0 || st[Stage::IrqDone as usize] != 0 {
                break;
            }
            std::thread::yield_now();
            st = trace::read();
        }
        let at = |s: Stage| st[s as usize];
        let points = [
            t0,
            at(Stage::TxStart),
            at(Stage::RxRead),
            at(Stage::IrqRaise),
            end,
        ];
        // A round trip that took another path (a frame not stamped) is
        // left out.
        if points.windows(2).any(|w| w[1] < w[0] || w[1] == 0)
            || at(Stage::TxSent) < at(Stage::TxStart)
            || at(Stage::IrqDone) < at(Stage::IrqRaise)
        {
            continue;
        }
        for (i, w) in points.windows(2).enumerate() {
            spans[i].push(w[1] - w[0]);
        }
        spans[STAGE_SPANS.len()].push(end - t0);
        spans[STAGE_SPANS.len() + 1].push(at(Stage::TxSent) - at(Stage::TxStart));
        let post = at(Stage::TaskPost);
        if post >= at(Stage::IrqRaise) && post <= end {
            to_post.push(post - at(Stage::IrqRaise));
            post_to_end.push(end - post);
        }
        let call = at(Stage::IrqDone) - at(Stage::IrqRaise);
        spans[STAGE_SPANS.len() + 2].push(call);
        inline += usize::from(call > 1000);
        outlived += usize::from(at(Stage::IrqDone) > end);
    }
    let handoffs = (lkl::host::sem::handoffs() - h0) as f64 / n as f64;
    let switches = (context_switches() - cs0) as f64 / n as f64;
    let counted = spans[0].len();
    if counted == 0 {
        bail!("no round trip went through every stage");
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e3
    };
    let names = STAGE_SPANS
        .iter()
        .chain(&["round-trip", "tap-write", "interrupt-call"]);
    let mut out: Vec<(String, f64)> = names
        .zip(spans.iter_mut())
        .map(|(name, v)| (name.to_string(), median(v)))
        .collect();
    let posted = to_post.len();
    if posted > 0 {
        out.push(("interrupt-to-task-post".into(), median(&mut to_post)));
        out.push(("task-post-to-program".into(), median(&mut post_to_end)));
    }
    out.push(("task-post-share".into(), posted as f64 / counted as f64));
    out.push(("irq-inline-share".into(), inline as f64 / counted as f64));
    out.push((
        "call-outlived-read-share".into(),
        outlived as f64 / counted as f64,
    ));
    out.push(("lkl-wakeups".into(), handoffs));
    out.push(("context-switches".into(), switches));
    out.push(("counted".into(), counted as f64));
    Ok(out)
}

/// This process's context switches so far, voluntary and not.
fn context_switches() -> u64 {
    // SAFETY: a zeroed rusage for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

/// Rounds of a request/response measurement (treebench's too).
const RR_ROUNDS: usize = 5;

/// Median ping round trip, in µs, after one warm-up ping (a median: on
/// a shared machine one preempted ping moved a mean of 30 threefold).
fn ping_rtt(sock: &dyn IcmpSocket, to: Ipv4Addr, n: usize) -> Result<f64> {
    ping(sock, to, 1, Duration::from_secs(10)).map_err(|e| anyhow!(e))?;
    let mut rtts = ping(sock, to, n, Duration::from_secs(30)).map_err(|e| anyhow!(e))?;
    rtts.sort_unstable();
    Ok(rtts[rtts.len() / 2].as_secs_f64() * 1e6)
}

fn client(
    cli: &Cli,
    stack: Stack,
    target: Ipv4Addr,
    tap: &str,
    ip: Ipv4Addr,
    offload: u64,
) -> Result<()> {
    let kernel = match stack {
        Stack::Host => None,
        Stack::Lkl => {
            let opts = lkl::NetOptions {
                mac: None,
                offload,
                busy_poll: Duration::from_micros(cli.busy_poll_us),
                coalesce: !cli.no_coalesce,
                transmit_thread: !cli.no_transmit_thread,
            };
            let id = lkl::add_net_with(lkl::NetBackend::Tap { ifname: tap.into() }, &opts)?;
            let k = lkl::boot(&lkl::BootOptions {
                memory: 256 << 20,
                ..Default::default()
            })?;
            configure(id, ip, 1500).map_err(|e| anyhow!(e))?;
            Some(k)
        }
    };
    let to = SocketAddr::from((target, PORT));
    let run = || -> Result<()> {
        let icmp: Box<dyn IcmpSocket> = match stack {
            Stack::Host => Box::new(HostIcmp::open().map_err(|e| anyhow!(e))?),
            Stack::Lkl => Box::new(LklIcmp::open().map_err(|e| anyhow!(e))?),
        };
        // The best of --repeat runs of each (the orchestrator runs each
        // client once a round and keeps the best of the rounds).
        if cli.stages {
            for (name, us) in stages(to, cli.rr)? {
                println!("RESULT {name} {us}");
            }
            return Ok(());
        }
        let (mut ping, mut rr, mut up, mut down) = (f64::MAX, f64::MAX, 0f64, 0f64);
        for _ in 0..cli.repeat {
            ping = ping.min(ping_rtt(&*icmp, target, cli.pings)?);
            rr = rr.min(request_response(stack, to, cli.rr)?);
            if !cli.latency_only {
                up = up.max(upload(stack, to, cli.seconds)?);
                down = down.max(download(stack, to, cli.seconds)?);
            }
        }
        println!("RESULT ping {ping}");
        println!("RESULT rr {rr}");
        if !cli.latency_only {
            println!("RESULT upload {up}");
            println!("RESULT download {down}");
        }
        Ok(())
    };
    let r = run();
    if let Some(k) = kernel {
        k.halt()?;
    }
    r
}

/// Serves clients until killed, one thread each: on [`PORT`] the first
/// byte says what to do, on [`ECHO_PORT`] every byte is sent back (for
/// treebench's `rr`).
fn serve() -> Result<()> {
    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).context("bind the server")?;
    let echo = TcpListener::bind((Ipv4Addr::UNSPECIFIED, ECHO_PORT)).context("bind the echo")?;
    std::thread::spawn(move || {
        for conn in echo.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                echo_bytes(&mut c);
            });
        }
    });
    println!("listening");
    for conn in l.incoming() {
        let Ok(mut c) = conn else { continue };
        std::thread::spawn(move || {
            let _ = c.set_nodelay(true);
            let mut op = [0u8; 1];
            if c.read_exact(&mut op).is_err() {
                return;
            }
            let mut buf = vec![0u8; CHUNK];
            match op[0] {
                b'U' => {
                    let mut total = 0u64;
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        total += n as u64;
                    }
                    let _ = c.write_all(&total.to_le_bytes());
                }
                b'D' => while c.write_all(&buf).is_ok() {},
                b'R' => echo_bytes(&mut c),
                _ => {}
            }
        });
    }
    Ok(())
}

/// Sends back every byte read, one at a time, until the peer closes.
fn echo_bytes(c: &mut TcpStream) {
    let mut b = [0u8; 1];
    while c.read_exact(&mut b).is_ok() && c.write_all(&b).is_ok() {}
}

/// Copies frames between tap `a` here and tap `b` in namespace `b_netns`
/// until killed: one thread each way, each reading a frame (header and
/// all, large segments included) and writing it to the other tap, and
/// polling for the next one without sleeping for `busy_poll` after each,
/// as LKL's device does.
fn relay(a: &str, b: &str, b_netns: &str, busy_poll: Duration) -> Result<()> {
    use lkl::virtio::net::{Backend, Tap};
    use std::os::fd::AsRawFd;
    let ta = Tap::open(a, true)?;
    let ns = std::fs::File::open(format!("/var/run/netns/{b_netns}"))
        .with_context(|| format!("namespace {b_netns}"))?;
    // SAFETY: a namespace descriptor; only this thread moves, and every
    // thread started after it (the other pump) starts in it: the taps are
    // opened by then, and no socket is made.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {b_netns}: {}", std::io::Error::last_os_error());
    }
    let tb = Tap::open(b, true)?;
    // What a driver with TSO and checksum offload both ways takes.
    let features = lkl::virtio::net::offload::GUEST_CSUM
        | lkl::virtio::net::offload::GUEST_TSO4
        | lkl::virtio::net::offload::GUEST_TSO6;
    ta.negotiated(features)?;
    tb.negotiated(features)?;
    let (ta, tb) = (std::sync::Arc::new(ta), std::sync::Arc::new(tb));
    let (ta2, tb2) = (ta.clone(), tb.clone());
    std::thread::spawn(move || pump(&*tb2, &*ta2, busy_poll));
    println!("relaying");
    pump(&*ta, &*tb, busy_poll)
}

/// Moves frames from `from` to `to` (see [`relay`]).
fn pump(
    from: &dyn lkl::virtio::net::Backend,
    to: &dyn lkl::virtio::net::Backend,
    busy_poll: Duration,
) -> Result<()> {
    use lkl::virtio::net::backend::{iov, poll_readable};
    let mut hdr = [0u8; lkl::virtio::net::offload::HDR_LEN];
    let mut buf = vec![0u8; lkl::virtio::net::device::MAX_FRAME];
    let mut last = Instant::now() - busy_poll;
    loop {
        match from.recv(&mut hdr, &mut buf) {
            Ok(n) => {
                // A frame the other tap refuses is dropped, as on a wire.
                let _ = to.send(&mut [iov(&hdr), iov(&buf[..n])]);
                last = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() < busy_poll {
                    std::thread::yield_now();
                } else {
                    poll_readable([from.poll_fd()], -1)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Kills the server (a child we started, by its pid) when dropped.
struct Server(std::process::Child);

/// Starts `cmd`, one of our own roles that prints a line once it is ready
/// (the server, the relay), and waits for that line; the child is killed
/// when the result is dropped.
fn start_child(mut cmd: std::process::Command, what: &str) -> Result<Server> {
    let mut child = Server(
        cmd.stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {what}"))?,
    );
    let out = child
        .0
        .stdout
        .take()
        .with_context(|| format!("the {what}'s output"))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
        .with_context(|| format!("reading from the {what}"))?;
    if line.is_empty() {
        bail!("the {what} did not start");
    }
    Ok(child)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the client and the server run: the same question asked with
/// every thread in one place, in two, and wherever the host puts them
/// (polling wins when the host would wake a thread on another CPU, and
/// loses when nothing needs to wake).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Placement {
    /// No pinning.
    Free,
    /// Server, client (all of its threads, LKL's too) and relay on CPU 0.
    Same,
    /// Server on CPU 0; client (all of its threads) and relay on CPU 1.
    Split,
}

impl Placement {
    const ALL: [Placement; 3] = [Placement::Free, Placement::Same, Placement::Split];

    fn name(self) -> &'static str {
        match self {
            Placement::Free => "unpinned",
            Placement::Same => "same CPU",
            Placement::Split => "different CPUs",
        }
    }

    /// The server's CPU and the client's (the relay stands for LKL's
    /// device threads, which are the client's, and goes with it).
    fn cpus(self) -> (Option<usize>, Option<usize>) {
        match self {
            Placement::Free => (None, None),
            Placement::Same => (Some(0), Some(0)),
            Placement::Split => (Some(0), Some(1)),
        }
    }
}

/// Pins the process `cmd` starts (and every thread it makes) to `cpu`.
fn pin(cmd: &mut std::process::Command, cpu: Option<usize>) {
    use std::os::unix::process::CommandExt;
    let Some(cpu) = cpu else { return };
    // SAFETY: the closure runs in the forked child before exec and makes
    // one system call (async-signal-safe) on a set built on its stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs one client; returns its results by name.
fn run_client(
    ns: &Netns,
    exe: &Path,
    cli: &Cli,
    args: &[&str],
    cpu: Option<usize>,
    latency_only: bool,
) -> Result<Map> {
    let mut cmd = ns.command(exe);
    cmd.args([
        "--seconds",
        &cli.seconds.to_string(),
        "--rr",
        &cli.rr.to_string(),
        "--pings",
        &cli.pings.to_string(),
        "--repeat",
        "1",
        "--busy-poll-us",
        &cli.busy_poll_us.to_string(),
    ])
    .args(cli.no_coalesce.then_some("--no-coalesce"))
    .args(cli.no_transmit_thread.then_some("--no-transmit-thread"))
    .args(latency_only.then_some("--latency-only"))
    .args(cli.stages.then_some("--stages"))
    .arg("client")
    .args(args)
    .stderr(Stdio::inherit());
    pin(&mut cmd, cpu);
    let out = cmd
        .output()
        .with_context(|| format!("running the client {args:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the client {args:?} failed ({}): {text}", out.status);
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("RESULT ")?.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .collect())
}

/// The address of LKL under `lkl-run --zpoline`, on tap lklbt4.
const ZPOLINE_IP: &str = "198.18.4.2";

/// Request/response from treebench's `rr` (plain sockets) under
/// `lkl-run --zpoline` with `conf` (tap lklbt4), to the server's echo port:
/// LKL in a kernel process serving the tree (lkl-run's default), or in the
/// program's own process (`--private-kernel`).
fn run_zpoline(
    ns: &Netns,
    (lkl_run, treebench, conf): (&Path, &Path, &Path),
    private: bool,
    cli: &Cli,
    cpu: Option<usize>,
) -> Result<Map> {
    let mut cmd = ns.command(lkl_run);
    cmd.arg("--zpoline")
        .args(private.then_some("--private-kernel"))
        .arg("--config")
        .arg(conf)
        .arg(treebench)
        .args(["rr", "198.18.4.1", &ECHO_PORT.to_string()])
        .arg((cli.rr / RR_ROUNDS).max(1).to_string())
        .stderr(Stdio::inherit());
    pin(&mut cmd, cpu);
    let out = cmd
        .output()
        .context("running lkl-run --zpoline treebench rr")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("rr ")?.trim().parse::<f64>().ok());
    match value {
        Some(v) if out.status.success() => Ok(Map::from([("rr".to_owned(), v)])),
        _ => bail!(
            "lkl-run --zpoline treebench rr failed ({}): {text}",
            out.status
        ),
    }
}

/// The clients (see [`orchestrate`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    /// LKL in-process, offloads.
    Lkl,
    /// LKL in-process, no offloads.
    LklNone,
    /// The host over a veth, offloads.
    Veth,
    /// The host over a veth, gso_max_segs 1.
    VethNone,
    /// The host behind a tap (relay).
    Tap,
    /// LKL under `lkl-run --zpoline`, its kernel process (request/response
    /// only).
    Zpoline,
    /// The same with `--private-kernel`: LKL in the program's process.
    ZpolinePrivate,
}

fn orchestrate(cli: &Cli) -> Result<()> {
    let e = |e: String| anyhow!(e);
    let s = Netns::new("lklbs").map_err(e)?;
    let c = Netns::new("lklbc").map_err(e)?;
    s.add_tap("lklbt0", &["198.18.0.1/24"]).map_err(e)?;
    s.add_tap("lklbt1", &["198.18.1.1/24"]).map_err(e)?;
    s.add_tap("lklbt4", &["198.18.4.1/24"]).map_err(e)?;
    for (a, b, net, gso) in [
        ("lklbv0", "lklbv1", 2, false),
        ("lklbw0", "lklbw1", 3, true),
    ] {
        s.ip(&[
            "link",
            "add",
            a,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            c.name(),
        ])
        .map_err(e)?;
        s.address(a, &[&format!("198.18.{net}.1/24")]).map_err(e)?;
        c.address(b, &[&format!("198.18.{net}.2/24")]).map_err(e)?;
        if gso {
            s.ip(&["link", "set", a, "gso_max_segs", "1"]).map_err(e)?;
            c.ip(&["link", "set", b, "gso_max_segs", "1"]).map_err(e)?;
        }
    }
    // The host's stack behind a tap, as LKL's is: a tap in each
    // namespace, joined by a relay process.
    s.add_tap("lklbt2", &["198.18.8.1/24"]).map_err(e)?;
    c.add_tap("lklbt3", &["198.18.8.2/24"]).map_err(e)?;
    let exe = std::env::current_exe()?;
    let off = format!("{:#x}", cli.offload);
    let zpoline = match (&cli.lkl_run, &cli.treebench) {
        (Some(run), Some(tb)) => {
            let conf =
                std::env::temp_dir().join(format!("lkl-netbench-{}.json", std::process::id()));
            std::fs::write(
                &conf,
                format!(
                    r#"{{"interfaces": [{{"type": "tap", "param": "lklbt4", "ip": "{ZPOLINE_IP}", "masklen": "24", "offload": "{off}"}}]}}"#
                ),
            )
            .with_context(|| format!("writing {}", conf.display()))?;
            Some((run.as_path(), tb.as_path(), TempFile(conf)))
        }
        _ => None,
    };
    println!(
        "lkl-netbench: best of {} rounds (the clients take turns): {} s of TCP each \
         way (unpinned only), {} request/response round trips, {} pings, in three \
         placements; load {}",
        cli.repeat,
        cli.seconds,
        cli.rr,
        cli.pings,
        load_average()
    );
    let lkl_off_args = lkl_args("lklbt1", 1, &off);
    if cli.stages {
        return print_stages(cli, &s, &exe, &lkl_off_args);
    }
    let lkl_none_args = lkl_args("lklbt0", 0, "0");
    let host_off_args = ["--stack", "host", "--target", "198.18.2.1"];
    let host_none_args = ["--stack", "host", "--target", "198.18.3.1"];
    let host_tap_args = ["--stack", "host", "--target", "198.18.8.1"];
    let configs: [(Client, &Netns, &[&str]); 5] = [
        (Client::Lkl, &s, &lkl_off_args),
        (Client::Veth, &c, &host_off_args),
        (Client::LklNone, &s, &lkl_none_args),
        (Client::VethNone, &c, &host_none_args),
        (Client::Tap, &c, &host_tap_args),
    ];
    // The clients take turns, placement by placement, --repeat rounds, so a
    // change of load on this machine falls on all of them; the best of
    // each figure is kept.
    let mut best: std::collections::HashMap<(Placement, Client), Map> = Default::default();
    let mut keep = |key: (Placement, Client), got: Map| {
        let best = best.entry(key).or_default();
        for (k, v) in got {
            let lower_is_better = k == "rr" || k == "ping";
            let b = best.entry(k).or_insert(v);
            *b = if lower_is_better { b.min(v) } else { b.max(v) };
        }
    };
    for _ in 0..cli.repeat {
        for placement in Placement::ALL {
            let (server_cpu, client_cpu) = placement.cpus();
            let mut relay = s.command(&exe);
            relay
                .args(["--busy-poll-us", &cli.busy_poll_us.to_string()])
                .args([
                    "relay",
                    "--a",
                    "lklbt2",
                    "--b",
                    "lklbt3",
                    "--b-netns",
                    c.name(),
                ]);
            pin(&mut relay, client_cpu);
            let _relay = start_child(relay, "relay")?;
            let mut server = s.command(&exe);
            server.arg("server");
            pin(&mut server, server_cpu);
            let _server = start_child(server, "server")?;
            let free = placement == Placement::Free;
            for &(client, ns, args) in &configs {
                if !free && matches!(client, Client::LklNone | Client::VethNone) {
                    continue;
                }
                keep(
                    (placement, client),
                    run_client(ns, &exe, cli, args, client_cpu, !free)?,
                );
            }
            if let Some((run, tb, conf)) = &zpoline {
                for (client, private) in [(Client::Zpoline, false), (Client::ZpolinePrivate, true)]
                {
                    keep(
                        (placement, client),
                        run_zpoline(&s, (run, tb, &conf.0), private, cli, client_cpu)?,
                    );
                }
            }
        }
    }
    let get = |p: Placement, c: Client, key: &str| -> f64 {
        best.get(&(p, c))
            .and_then(|m| m.get(key))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{:<66} {:>9} {:>9} {:>7} {:>9} {:>7}  goal",
        "", "LKL", "veth", "ratio", "host tap", "ratio"
    );
    let free = Placement::Free;
    let rows: [(&str, &str, Client, Client, bool, &str); 4] = [
        (
            "TCP upload, offloads (Mbit/s)",
            "upload",
            Client::Lkl,
            Client::Veth,
            true,
            ">= 0.9",
        ),
        (
            "TCP download, offloads (Mbit/s)",
            "download",
            Client::Lkl,
            Client::Veth,
            true,
            ">= 0.9",
        ),
        (
            "TCP upload, no offloads (Mbit/s)",
            "upload",
            Client::LklNone,
            Client::VethNone,
            false,
            "",
        ),
        (
            "TCP download, no offloads (Mbit/s)",
            "download",
            Client::LklNone,
            Client::VethNone,
            false,
            "",
        ),
    ];
    for (name, key, l, h, tap, goal) in rows {
        let (a, b) = (get(free, l, key), get(free, h, key));
        let t = if tap {
            get(free, Client::Tap, key)
        } else {
            f64::NAN
        };
        println!("{}  {goal}", row(name, a, b, t));
    }
    let (a, b) = (
        get(free, Client::LklNone, "rr"),
        get(free, Client::VethNone, "rr"),
    );
    println!(
        "{}",
        row("TCP 1-byte req/resp, no offloads (us)", a, b, f64::NAN)
    );
    for (what, key) in [
        ("TCP 1-byte request/response (us)", "rr"),
        ("ping RTT (us)", "ping"),
    ] {
        for p in Placement::ALL {
            let (a, b, t) = (
                get(p, Client::Lkl, key),
                get(p, Client::Veth, key),
                get(p, Client::Tap, key),
            );
            let met = a / b <= 2.0 && a / t <= 1.3;
            println!(
                "{}  <= 2 veth, <= 1.3 tap: {}",
                row(&format!("{what}, {}", p.name()), a, b, t),
                if met { "met" } else { "NOT met" }
            );
        }
    }
    if zpoline.is_some() {
        println!(
            "{:<66} {:>9} {:>9} {:>7}",
            "", "zpoline", "in-proc", "ratio"
        );
        for (client, how) in [
            (Client::Zpoline, "kernel process"),
            (Client::ZpolinePrivate, "--private-kernel"),
        ] {
            for p in Placement::ALL {
                let (z, l) = (get(p, client, "rr"), get(p, Client::Lkl, "rr"));
                let met = z / l <= 1.2;
                println!(
                    "{:<66} {z:>9.1} {l:>9.1} {:>6.2}x  <= 1.2: {}",
                    format!("req/resp, lkl-run --zpoline, {how}, {} (us)", p.name()),
                    z / l,
                    if met { "met" } else { "NOT met" }
                );
            }
        }
    }
    let poll = cli.busy_poll_us;
    let coalesce = if cli.no_coalesce { "off" } else { "on" };
    let tx_thread = if cli.no_transmit_thread { "off" } else { "on" };
    // The server's stack sends the downloads: its congestion control (the
    // host's default) sets how much work each acknowledgement costs.
    let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map_or_else(|_| "unknown".into(), |c| c.trim().to_owned());
    println!(
        "LKL: virtio-net over a tap (offloads {off} / none; receive busy polling {poll} us, \
         coalescing {coalesce}, transmit thread {tx_thread}). veth: the same client on host \
         sockets over a veth between two namespaces (offloads on / gso_max_segs 1). host tap: \
         the host's stack behind a tap as LKL is, two taps joined by a relay process that \
         copies frames (offloads on, busy polling as LKL's device), one copy more than LKL's \
         path. Placements: same CPU = server, client (every thread) and relay on CPU 0; \
         different CPUs = server on CPU 0, client and relay on CPU 1. zpoline: treebench rr \
         (plain sockets) under lkl-run --zpoline, offloads {off}, LKL in the tree's kernel \
         process (lkl-run's default) or in the program's (--private-kernel), against LKL \
         in-process in the same placement. The server's congestion control: {cc}. Ratios are LKL / \
         baseline. Load at the end: {}",
        load_average()
    );
    Ok(())
}

/// `--stages`: LKL's round trip stage by stage in each placement (the
/// best round's medians, lowest round trip, of --repeat).
fn print_stages(cli: &Cli, s: &Netns, exe: &Path, lkl_args: &[&str]) -> Result<()> {
    let mut cols = Vec::new();
    for placement in Placement::ALL {
        let (server_cpu, client_cpu) = placement.cpus();
        let mut server = s.command(exe);
        server.arg("server");
        pin(&mut server, server_cpu);
        let _server = start_child(server, "server")?;
        let mut best: Option<Map> = None;
        for _ in 0..cli.repeat {
            let got = run_client(s, exe, cli, lkl_args, client_cpu, true)?;
            if best
                .as_ref()
                .is_none_or(|b| got["round-trip"] < b["round-trip"])
            {
                best = Some(got);
            }
        }
        cols.push(best.context("no round")?);
    }
    println!(
        "lkl-netbench --stages: median us per span of {} LKL round trips (best of {} runs); load {}",
        cli.rr,
        cli.repeat,
        load_average()
    );
    print!("{:<26}", "span");
    for p in Placement::ALL {
        print!(" {:>15}", p.name());
    }
    println!();
    let names = STAGE_SPANS
        .iter()
        .chain(&["round-trip"])
        .chain(&STAGE_EXTRA)
        .chain(&["counted"]);
    for name in names {
        print!("{name:<26}");
        for c in &cols {
            print!(" {:>15.2}", c.get(*name).copied().unwrap_or(f64::NAN));
        }
        println!();
    }
    Ok(())
}

/// One row of the table: `a` beside `b` and `t` (NaN: not measured) with
/// the ratios.
fn row(name: &str, a: f64, b: f64, t: f64) -> String {
    let tap = if t.is_nan() {
        format!("{:>9} {:>7}", "-", "-")
    } else {
        format!("{t:>9.1} {:>6.2}x", a / t)
    };
    format!("{name:<66} {a:>9.1} {b:>9.1} {:>6.2}x {tap}", a / b)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// A file removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

type Map = std::collections::HashMap<String, f64>;

fn lkl_args<'a>(tap: &'a str, net: u8, offload: &'a str) -> Vec<&'a str> {
    let (ip, target) = match net {
        0 => ("198.18.0.2", "198.18.0.1"),
        _ => ("198.18.1.2", "198.18.1.1"),
    };
    vec![
        "--stack",
        "lkl",
        "--tap",
        tap,
        "--ip",
        ip,
        "--target",
        target,
        "--offload",
        offload,
    ]
}
