//! Shared pieces of the virtio-net end-to-end test (`tests/netdev.rs`)
//! and the network bench (`lkl-netbench`): LKL interface set-up, test
//! patterns, and ICMP echo from LKL's stack or the host's. Namespaces and
//! the rest of the set-up come from `lkl-test-support`, re-exported here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub use lkl_test_support::{ip, require_root, unique_name, Netns, TempDir};

/// Results as messages: these are tests and benches, the message is all.
pub type Outcome<T = ()> = Result<T, String>;

/// Any error, as its message.
pub fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Writes all of `data` to LKL socket `fd`.
pub fn lkl_write_all(fd: i32, data: &[u8]) -> Outcome {
    let mut sent = 0;
    while sent < data.len() {
        sent += lkl::write(fd, &data[sent..])
            .map_err(|e| format!("LKL write after {sent} bytes: {e}"))?;
    }
    Ok(())
}

/// Reads exactly `n` bytes from LKL socket `fd`; the peer closing first is
/// an error.
pub fn lkl_read_exact(fd: i32, n: usize) -> Outcome<Vec<u8>> {
    let mut got = vec![0u8; n];
    let mut have = 0;
    while have < n {
        match lkl::read(fd, &mut got[have..]) {
            Ok(0) => return Err(format!("the peer closed after {have} of {n} bytes")),
            Ok(k) => have += k,
            Err(e) => return Err(format!("LKL read after {have} bytes: {e}")),
        }
    }
    Ok(got)
}

/// `n` bytes of a pattern that differs with `seed`.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed.into()) as u8
        })
        .collect()
}

/// Brings LKL device `id` up as `ip`/24 with `mtu`; returns its name.
pub fn configure(id: lkl::NetId, ip: Ipv4Addr, mtu: u32) -> Outcome<String> {
    let name = lkl::net_ifname(id).map_err(s)?;
    let index = lkl::net_ifindex(id).map_err(s)?;
    let mut nl = lkl_net::Rtnl::open().map_err(s)?;
    let link = nl.link(index).map_err(s)?;
    if link.name != name {
        return Err(format!("ifindex {index} is {}, not {name}", link.name));
    }
    if mtu != 1500 {
        nl.set_mtu(index, mtu)
            .map_err(|e| format!("{name} mtu {mtu}: {e}"))?;
    }
    nl.set_up(index, true).map_err(s)?;
    nl.add_addr(index, IpAddr::V4(ip), 24, true).map_err(s)?;
    Ok(name)
}

/// An LKL `AF_INET` socket of type `ty`.
pub fn inet_socket(ty: u32, proto: i32) -> Outcome<i32> {
    lkl::socket(lkl::sys::LKL_AF_INET as i32, ty as i32, proto).map_err(|e| format!("socket: {e}"))
}

/// Send and receive timeouts on LKL socket `fd`, so a stall fails instead
/// of hanging.
pub fn timeouts(fd: i32, t: Duration) -> Outcome {
    let tv = [t.as_secs() as i64, i64::from(t.subsec_micros())]
        .map(i64::to_ne_bytes)
        .concat();
    for opt in [lkl::sys::LKL_SO_RCVTIMEO_OLD, lkl::sys::LKL_SO_SNDTIMEO_OLD] {
        lkl::setsockopt(fd, lkl::sys::LKL_SOL_SOCKET as i32, opt as i32, &tv)
            .map_err(|e| format!("socket timeout: {e}"))?;
    }
    Ok(())
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request with `ident` and `seq` and 56 bytes of data.
pub fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![8u8, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend(pattern(56, seq as u8));
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt
}

/// Whether `got` (an IPv4 packet) is the echo reply from `from` to `req`.
pub fn is_reply(got: &[u8], from: Ipv4Addr, req: &[u8]) -> bool {
    let ihl = usize::from(got.first().map_or(0, |b| b & 0xf)) * 4;
    let (Some(ip), Some(icmp)) = (got.get(..ihl), got.get(ihl..)) else {
        return false;
    };
    ihl >= 20
        && Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]) == from
        && icmp.len() == req.len()
        && icmp[0] == 0
        && icmp[4..] == req[4..]
}

/// A raw ICMP socket, in LKL or on the host: send one packet, receive one
/// (each with a 100 ms timeout).
pub trait IcmpSocket {
    /// Sends `pkt` to `to`.
    fn send(&self, pkt: &[u8], to: Ipv4Addr) -> Outcome;
    /// Receives one IPv4 packet, `None` on timeout.
    fn recv(&self, buf: &mut [u8]) -> Option<usize>;
}

/// An LKL raw ICMP socket.
pub struct LklIcmp(i32);

impl LklIcmp {
    /// Opens it.
    pub fn open() -> Outcome<LklIcmp> {
        let fd = inet_socket(lkl::sys::LKL_SOCK_RAW, lkl::sys::LKL_IPPROTO_ICMP as i32)?;
        let sock = LklIcmp(fd);
        timeouts(fd, Duration::from_millis(100))?;
        Ok(sock)
    }
}

impl Drop for LklIcmp {
    fn drop(&mut self) {
        let _ = lkl::close(self.0);
    }
}

impl IcmpSocket for LklIcmp {
    fn send(&self, pkt: &[u8], to: Ipv4Addr) -> Outcome {
        let to = SocketAddr::from((to, 0));
        lkl::sendto(self.0, pkt, 0, Some(&to)).map_err(|e| format!("echo request: {e}"))?;
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        lkl::recvfrom(self.0, buf, 0).ok().map(|(n, _)| n)
    }
}

/// A host raw ICMP socket.
pub struct HostIcmp(OwnedFd);

impl HostIcmp {
    /// Opens it (needs CAP_NET_RAW).
    pub fn open() -> Outcome<HostIcmp> {
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
            tv_usec: 100_000,
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
        Ok(HostIcmp(fd))
    }
}

impl IcmpSocket for HostIcmp {
    fn send(&self, pkt: &[u8], to: Ipv4Addr) -> Outcome {
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(to).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sends from a live buffer of its length to a sockaddr_in
        // that lives across the call.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(format!("echo request: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: receives into a live buffer of its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n >= 0).then_some(n as usize)
    }
}

/// Pings `peer` until `count` replies came back (each request waits up to
/// 500 ms; all of it up to `within`); returns the round trips.
pub fn ping(
    sock: &dyn IcmpSocket,
    peer: Ipv4Addr,
    count: usize,
    within: Duration,
) -> Outcome<Vec<Duration>> {
    let ident = std::process::id() as u16;
    let mut rtts = Vec::new();
    let start = Instant::now();
    let mut seq = 0u16;
    let mut buf = [0u8; 1500];
    while rtts.len() < count {
        if start.elapsed() > within {
            return Err(format!(
                "{} of {count} echo replies from {peer} within {within:?}",
                rtts.len()
            ));
        }
        seq = seq.wrapping_add(1);
        let req = echo_request(ident, seq);
        let sent = Instant::now();
        sock.send(&req, peer)?;
        while sent.elapsed() < Duration::from_millis(500) {
            if let Some(n) = sock.recv(&mut buf) {
                if is_reply(&buf[..n], peer, &req) {
                    rtts.push(sent.elapsed());
                    break;
                }
            }
        }
    }
    Ok(rtts)
}
