//! A small, bounds-checked netlink encoder and decoder (safe code only).
//!
//! Messages are built into a `Vec<u8>`: the `nlmsghdr`, a family header
//! (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, `fib_rule_hdr`, `ndmsg`, `tcmsg`,
//! each encoded field by field in the kernel's layout, whose sizes are
//! checked against `lkl-sys` at compile time), then `rtattr`s padded to 4
//! bytes. Integers are in host order, addresses in network order, as
//! netlink wants. Decoding never reads past a length it was given: every
//! length field is checked against what is left.

use std::mem::size_of;
use std::net::IpAddr;

use lkl_sys as sys;

/// `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// `struct nlmsgerr` without the echoed message: the error code.
const NLMSGERR_LEN: usize = 4;
/// `struct rtattr`.
const RTA_HDRLEN: usize = 4;

pub const IFINFOMSG_LEN: usize = 16;
pub const IFADDRMSG_LEN: usize = 8;
pub const RTMSG_LEN: usize = 12;
pub const FIB_RULE_HDR_LEN: usize = 12;
pub const NDMSG_LEN: usize = 12;
pub const TCMSG_LEN: usize = 20;

// Our field-by-field encodings follow the kernel's own structures.
const _: () = assert!(size_of::<sys::lkl_nlmsghdr>() == NLMSG_HDRLEN);
const _: () = assert!(size_of::<sys::lkl_rtattr>() == RTA_HDRLEN);
const _: () = assert!(size_of::<sys::lkl_ifinfomsg>() == IFINFOMSG_LEN);
const _: () = assert!(size_of::<sys::lkl_ifaddrmsg>() == IFADDRMSG_LEN);
const _: () = assert!(size_of::<sys::lkl_rtmsg>() == RTMSG_LEN);
const _: () = assert!(size_of::<sys::lkl_fib_rule_hdr>() == FIB_RULE_HDR_LEN);
const _: () = assert!(size_of::<sys::lkl_ndmsg>() == NDMSG_LEN);
const _: () = assert!(size_of::<sys::lkl_tcmsg>() == TCMSG_LEN);

/// Netlink's alignment: 4 bytes.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A message under construction.
#[derive(Clone, Debug)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// A message of type `ty` with `flags` (`NLM_F_REQUEST` is added) and
    /// the family header `header`.
    pub fn new(ty: u32, flags: u32, header: &[u8]) -> Builder {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&(ty as u16).to_ne_bytes());
        buf[6..8].copy_from_slice(&((flags | sys::LKL_NLM_F_REQUEST) as u16).to_ne_bytes());
        buf.extend_from_slice(header);
        buf.resize(align(buf.len()), 0);
        Builder { buf }
    }

    /// Appends an attribute. Panics if `data` exceeds what an `rtattr`
    /// length can hold (65531 bytes): callers pass addresses and names.
    pub fn attr(mut self, ty: u32, data: &[u8]) -> Builder {
        let len = RTA_HDRLEN + data.len();
        let len16 = u16::try_from(len).expect("netlink attribute over 64 KiB");
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&(ty as u16).to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub fn attr_u32(self, ty: u32, v: u32) -> Builder {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(self, ty: u32, s: &str) -> Builder {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    pub fn attr_ip(self, ty: u32, ip: IpAddr) -> Builder {
        match ip {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    /// The finished message with its length and sequence number.
    pub fn finish(mut self, seq: u32, extra_flags: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        let flags = u16::from_ne_bytes([self.buf[6], self.buf[7]]) | extra_flags as u16;
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg`.
pub fn ifinfomsg(family: u8, index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut b = [0u8; IFINFOMSG_LEN];
    b[0] = family;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `struct ifaddrmsg`.
pub fn ifaddrmsg(
    family: u8,
    prefix_len: u8,
    flags: u8,
    scope: u8,
    index: u32,
) -> [u8; IFADDRMSG_LEN] {
    let mut b = [family, prefix_len, flags, scope, 0, 0, 0, 0];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

/// `struct rtmsg`'s byte fields, in order, and its flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtMsg {
    pub family: u8,
    pub dst_len: u8,
    pub src_len: u8,
    pub tos: u8,
    pub table: u8,
    pub protocol: u8,
    pub scope: u8,
    pub kind: u8,
    pub flags: u32,
}

impl RtMsg {
    pub fn encode(&self) -> [u8; RTMSG_LEN] {
        let mut b = [0u8; RTMSG_LEN];
        b[..8].copy_from_slice(&[
            self.family,
            self.dst_len,
            self.src_len,
            self.tos,
            self.table,
            self.protocol,
            self.scope,
            self.kind,
        ]);
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }

    /// Reads an `rtmsg` (or a `fib_rule_hdr`, which has the same shape:
    /// family, dst_len, src_len, tos, table, res1, res2, action, flags).
    pub fn decode(b: &[u8]) -> Option<RtMsg> {
        let b = b.get(..RTMSG_LEN)?;
        Some(RtMsg {
            family: b[0],
            dst_len: b[1],
            src_len: b[2],
            tos: b[3],
            table: b[4],
            protocol: b[5],
            scope: b[6],
            kind: b[7],
            flags: u32::from_ne_bytes(b[8..12].try_into().ok()?),
        })
    }
}

/// `struct ndmsg`.
pub fn ndmsg(family: u8, ifindex: i32, state: u16, flags: u8) -> [u8; NDMSG_LEN] {
    let mut b = [0u8; NDMSG_LEN];
    b[0] = family;
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..10].copy_from_slice(&state.to_ne_bytes());
    b[10] = flags;
    b
}

/// `struct tcmsg`.
pub fn tcmsg(ifindex: i32, handle: u32, parent: u32) -> [u8; TCMSG_LEN] {
    let mut b = [0u8; TCMSG_LEN];
    b[0] = sys::LKL_AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..12].copy_from_slice(&handle.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b
}

/// A received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    /// Everything after the `nlmsghdr`.
    pub payload: Vec<u8>,
}

pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    u32_at(b, off).map(|v| v as i32)
}

/// Splits a datagram into messages.
///
/// # Errors
/// A length field shorter than a header or longer than what is left.
pub fn messages(mut buf: &[u8]) -> Result<Vec<Msg>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32_at(buf, 0).ok_or("truncated message header")? as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(format!(
                "message length {len} with {} bytes left",
                buf.len()
            ));
        }
        out.push(Msg {
            ty: u16_at(buf, 4).ok_or("truncated header")?,
            flags: u16_at(buf, 6).ok_or("truncated header")?,
            seq: u32_at(buf, 8).ok_or("truncated header")?,
            pid: u32_at(buf, 12).ok_or("truncated header")?,
            payload: buf[NLMSG_HDRLEN..len].to_vec(),
        });
        buf = buf.get(align(len).min(buf.len())..).unwrap_or_default();
    }
    Ok(out)
}

/// Attributes as (type, data) pairs, borrowed from a message.
pub type Attrs<'a> = Vec<(u16, &'a [u8])>;

/// Splits attributes (after a family header); the type has its
/// nested/byte-order flag bits cleared.
///
/// # Errors
/// An attribute length shorter than its header or longer than what is left.
pub fn attrs(mut buf: &[u8]) -> Result<Attrs<'_>, String> {
    let mut out = Vec::new();
    while buf.len() >= RTA_HDRLEN {
        let len = u16_at(buf, 0).ok_or("truncated attribute")? as usize;
        let ty = u16_at(buf, 2).ok_or("truncated attribute")? & (sys::LKL_NLA_TYPE_MASK as u16);
        if len < RTA_HDRLEN || len > buf.len() {
            return Err(format!(
                "attribute {ty} length {len} with {} bytes left",
                buf.len()
            ));
        }
        out.push((ty, &buf[RTA_HDRLEN..len]));
        buf = buf.get(align(len).min(buf.len())..).unwrap_or_default();
    }
    Ok(out)
}

/// The first attribute of type `ty`.
pub fn find<'a>(attrs: &[(u16, &'a [u8])], ty: u32) -> Option<&'a [u8]> {
    attrs
        .iter()
        .find(|(t, _)| u32::from(*t) == ty)
        .map(|(_, d)| *d)
}

/// An address attribute's value.
pub fn ip_of(data: &[u8]) -> Option<IpAddr> {
    match data.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
        _ => None,
    }
}

/// A string attribute's value, without its NUL.
pub fn str_of(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// An `NLMSG_ERROR` payload: the (negative or zero) error code and the
/// extended-ack message if the kernel sent one.
///
/// # Errors
/// A payload too short for the code, or malformed TLVs.
pub fn error_of(msg: &Msg) -> Result<(i32, Option<String>), String> {
    let code = i32_at(&msg.payload, 0).ok_or("truncated NLMSG_ERROR")?;
    if msg.flags as u32 & sys::LKL_NLM_F_ACK_TLVS == 0 {
        return Ok((code, None));
    }
    // The request's header is echoed, and its payload too unless capped.
    let echoed = if msg.flags as u32 & sys::LKL_NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32_at(&msg.payload, NLMSGERR_LEN).ok_or("truncated NLMSG_ERROR")? as usize
    };
    let tlvs = msg
        .payload
        .get(NLMSGERR_LEN + align(echoed)..)
        .ok_or("NLMSG_ERROR shorter than its echoed request")?;
    let text = find(&attrs(tlvs)?, sys::LKL_NLMSGERR_ATTR_MSG).map(str_of);
    Ok((code, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn build_then_parse() {
        let m = Builder::new(
            sys::LKL_RTM_NEWADDR,
            sys::LKL_NLM_F_CREATE,
            &ifaddrmsg(2, 24, 0, 0, 7),
        )
        .attr_ip(sys::LKL_IFA_LOCAL, "10.1.2.3".parse().unwrap())
        .attr_str(3, "lo")
        .finish(42, sys::LKL_NLM_F_ACK);
        assert_eq!(m.len(), 16 + 8 + 8 + 8);
        let msgs = messages(&m).unwrap();
        assert_eq!(msgs.len(), 1);
        let msg = &msgs[0];
        assert_eq!((msg.ty as u32, msg.seq), (sys::LKL_RTM_NEWADDR, 42));
        assert_eq!(
            msg.flags as u32,
            sys::LKL_NLM_F_REQUEST | sys::LKL_NLM_F_CREATE | sys::LKL_NLM_F_ACK
        );
        assert_eq!(&msg.payload[..8], &[2, 24, 0, 0, 7, 0, 0, 0]);
        let a = attrs(&msg.payload[8..]).unwrap();
        assert_eq!(
            ip_of(find(&a, sys::LKL_IFA_LOCAL).unwrap()),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(str_of(find(&a, 3).unwrap()), "lo");
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(messages(&[1, 0, 0, 0]).is_err());
        let mut m = Builder::new(1, 0, &[]).finish(1, 0);
        m[0] = 200;
        assert!(messages(&m).is_err());
        assert!(attrs(&[2, 0, 1, 0]).is_err());
        assert!(attrs(&[9, 0, 1, 0, 0, 0]).is_err());
        assert_eq!(attrs(&[4, 0, 1, 0]).unwrap(), [(1, &[][..])]);
    }

    #[test]
    fn ext_ack_message() {
        // NLMSG_ERROR, capped, with an NLMSGERR_ATTR_MSG TLV
        let mut payload = (-17i32).to_ne_bytes().to_vec();
        payload.extend(Builder::new(20, 0, &[]).finish(5, 0));
        payload.extend_from_slice(&[8, 0, 1, 0, b'b', b'a', b'd', 0]);
        let msg = Msg {
            ty: 2,
            flags: (sys::LKL_NLM_F_CAPPED | sys::LKL_NLM_F_ACK_TLVS) as u16,
            seq: 5,
            pid: 0,
            payload,
        };
        assert_eq!(error_of(&msg), Ok((-17, Some("bad".into()))));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(msgs) = messages(&b) {
                for m in &msgs {
                    let _ = attrs(&m.payload);
                    let _ = error_of(m);
                }
            }
            let _ = attrs(&b);
        }

        #[test]
        fn attributes_round_trip(list in proptest::collection::vec((1u16..0x3fff, proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
            let mut b = Builder::new(16, 0, &ifinfomsg(0, 1, 0, 0));
            for (t, d) in &list {
                b = b.attr(u32::from(*t), d);
            }
            let m = b.finish(9, 0);
            let msgs = messages(&m).unwrap();
            prop_assert_eq!(msgs.len(), 1);
            let a = attrs(&msgs[0].payload[IFINFOMSG_LEN..]).unwrap();
            let back: Vec<(u16, Vec<u8>)> = a.iter().map(|(t, d)| (*t, d.to_vec())).collect();
            prop_assert_eq!(back, list);
        }
    }
}
