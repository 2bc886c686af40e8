//! Receive coalescing: consecutive TCP/IPv4 segments of one flow that the
//! host has queued together are handed to the driver as one large segment
//! (what a NIC's large receive offload does, and what GRO does inside a
//! kernel).
//!
//! A tap hands over at most 64 KiB per frame (its `tso_max_size`), and
//! the receiving kernel acknowledges about every frame it gets. Each of
//! those acknowledgements costs the host a `write` to the tap and a pass
//! through its TCP sender, on LKL's CPU, and each frame a pass through
//! the driver and LKL's TCP: a download through a tap was bound by that
//! per-frame work, not by its copies (docs/net-device.md). Joining the
//! segments the host already queued cuts both; nothing waits for a
//! segment that is not there yet, so no latency is added.
//!
//! The device reads each frame straight into the driver's buffers; the
//! next frame lands in the chains after the current one, its headers at
//! the start of its first chain. If it continues the current segment
//! (same flow, next sequence number, same segment size, nothing but ACK
//! and PSH set, the same options layout) its first chain's payload is
//! moved over its headers (at most one buffer, a few KiB) and its chains
//! join the frame; else it stays where it is, a frame of its own.
//!
//! The joined frame keeps the first segment's headers with the last one's
//! acknowledgement, window, timestamps and PSH, the IPv4 total length (0
//! above 64 KiB: BIG TCP, `iph_totlen`), and a partial checksum
//! (`VIRTIO_NET_HDR_F_NEEDS_CSUM` with the pseudo-header sum for the new
//! length, as a sender's stack leaves it): the host had verified or not
//! yet computed each segment's checksum, and only such segments are
//! joined. Only IPv4 (an IPv6 segment above 64 KiB would need a jumbo
//! option), and only when the driver took mergeable buffers, TSO4 and
//! checksum offload.

use crate::spec;

use super::offload::{fold, ones_sum, HDR_LEN};

/// Bytes of a frame looked at: the virtio-net header, Ethernet, IPv4
/// without options, TCP with the timestamp option.
pub const HEAD: usize = HDR_LEN + ETH + IP + TCP_TS;

/// Frames are joined until this much payload (then one more may join).
pub const LIMIT: usize = 192 << 10;

const ETH: usize = 14;
const IP: usize = 20;
const TCP: usize = 20;
const TCP_TS: usize = TCP + 12;
/// Where the TCP header starts in the head (after the virtio-net header).
const TH: usize = HDR_LEN + ETH + IP;
/// Where the IPv4 header starts.
const IH: usize = HDR_LEN + ETH;

const NEEDS_CSUM: u8 = spec::VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
const DATA_VALID: u8 = spec::VIRTIO_NET_HDR_F_DATA_VALID as u8;
const GSO_NONE: u8 = spec::VIRTIO_NET_HDR_GSO_NONE as u8;
const GSO_TCPV4: u8 = spec::VIRTIO_NET_HDR_GSO_TCPV4 as u8;

const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
/// NOP, NOP, timestamps (kind 8, length 10): the options Linux sends on an
/// established connection with timestamps on.
const TS_OPTION: [u8; 4] = [1, 1, 8, 10];

/// A TCP/IPv4 segment that may be joined with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Bytes of Ethernet, IPv4 and TCP headers.
    pub hdr_len: usize,
    /// Bytes of TCP payload.
    pub payload: usize,
    /// The segment size: `gso_size`, or the payload of a single segment.
    pub mss: usize,
    /// Whether the host handed it over as a large segment.
    pub gso: bool,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// What `head` (the virtio-net header then the frame's first bytes, up to
/// [`HEAD`]) says of a frame of `frame_len` bytes (without the virtio-net
/// header): a segment that may be joined, or `None`.
pub fn segment(head: &[u8], frame_len: usize) -> Option<Segment> {
    if head.len() < TH + TCP {
        return None;
    }
    let (flags, gso_type) = (head[0], head[1]);
    // The host verified the checksum, or left it to be computed.
    if flags & (NEEDS_CSUM | DATA_VALID) == 0 || (gso_type != GSO_NONE && gso_type != GSO_TCPV4) {
        return None;
    }
    let ip = &head[IH..];
    let ipv4_no_options = ip[0] == 0x45;
    let not_fragment = be16(ip, 6) & 0x3fff == 0;
    if head[HDR_LEN + 12..IH] != [0x08, 0x00]
        || !ipv4_no_options
        || !not_fragment
        || ip[9] != 6
        || be16(ip, 2) != frame_len - ETH
    {
        return None;
    }
    let th = &head[TH..];
    let tcp_len = usize::from(th[12] >> 4) * 4;
    let options_ok = match tcp_len {
        TCP => true,
        TCP_TS => head.len() >= TH + TCP_TS && th[TCP..TCP + 4] == TS_OPTION,
        _ => false,
    };
    // Nothing but ACK and PSH: no SYN, FIN, RST, URG, ECE, CWR.
    if !options_ok || th[13] & !TCP_PSH != TCP_ACK {
        return None;
    }
    let hdr_len = ETH + IP + tcp_len;
    let payload = frame_len.checked_sub(hdr_len).filter(|&p| p > 0)?;
    let gso = gso_type == GSO_TCPV4;
    let mss = if gso { le16(head, 4) } else { payload };
    (mss > 0).then_some(Segment {
        hdr_len,
        payload,
        mss,
        gso,
    })
}

/// Whether segment `next` (with its head) continues `cur` (the segment so
/// far, with its head) so that its payload may be appended: the same
/// flow, addresses, TTL, TOS (ECN marks included) and DF, the next
/// sequence number, the same header layout, and segment sizes that stay
/// whole (the current one ends on a full segment; the next has the same
/// size, or is a single segment no longer).
pub fn follows(cur: &[u8], c: &Segment, next: &[u8], n: &Segment) -> bool {
    let same = |from: usize, to: usize| cur[from..to] == next[from..to];
    let seq_next = be32(cur, TH + 4).wrapping_add(c.payload as u32);
    c.payload.is_multiple_of(c.mss)
        && n.hdr_len == c.hdr_len
        && (if n.gso { n.mss == c.mss } else { n.payload <= c.mss })
        && same(HDR_LEN, IH) // Ethernet addresses and type
        && same(IH, IH + 2) // version, header length, TOS
        && cur[IH + 6] & 0x40 == next[IH + 6] & 0x40 // DF
        && same(IH + 8, IH + 10) // TTL, protocol
        && same(IH + 12, IH + 20) // addresses
        && same(TH, TH + 4) // ports
        && be32(next, TH + 4) == seq_next
}

/// Rewrites `cur` (the head of the segment so far) for `payload` bytes
/// with `next` appended: `next`'s acknowledgement, window, timestamps and
/// PSH; the IPv4 total length and header checksum; a large TCP segment of
/// `mss` with a partial checksum for the new length.
pub fn append(cur: &mut [u8], c: &Segment, next: &[u8]) {
    let payload = c.payload;
    let tcp_len = c.hdr_len - ETH - IP;
    // The virtio-net header: a partial checksum, a TCPv4 large segment.
    cur[0] = NEEDS_CSUM;
    cur[1] = GSO_TCPV4;
    cur[2..4].copy_from_slice(&(c.hdr_len as u16).to_le_bytes());
    cur[4..6].copy_from_slice(&(c.mss as u16).to_le_bytes());
    cur[6..8].copy_from_slice(&((ETH + IP) as u16).to_le_bytes());
    cur[8..10].copy_from_slice(&16u16.to_le_bytes());
    // IPv4: the total length (0 above 64 KiB) and the header checksum.
    let total = IP + tcp_len + payload;
    let tot_len = u16::try_from(total).unwrap_or(0);
    cur[IH + 2..IH + 4].copy_from_slice(&tot_len.to_be_bytes());
    cur[IH + 10..IH + 12].copy_from_slice(&[0, 0]);
    let ip_sum = !fold(ones_sum(&cur[IH..IH + IP]));
    cur[IH + 10..IH + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP: acknowledgement, flags (PSH), window from the last segment.
    cur[TH + 8..TH + 12].copy_from_slice(&next[TH + 8..TH + 12]);
    cur[TH + 13] |= next[TH + 13] & TCP_PSH;
    cur[TH + 14..TH + 16].copy_from_slice(&next[TH + 14..TH + 16]);
    if tcp_len == TCP_TS {
        cur[TH + 24..TH + 32].copy_from_slice(&next[TH + 24..TH + 32]);
    }
    // The pseudo-header sum for the new length, not complemented: what a
    // sender's stack leaves for the checksum offload to finish.
    let seg_len = (tcp_len + payload) as u64;
    let pseudo = ones_sum(&cur[IH + 12..IH + 20]) + 6 + (seg_len >> 16) + (seg_len & 0xffff);
    cur[TH + 16..TH + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A head for a TCP/IPv4 segment of `payload` bytes at `seq`, with
    /// the timestamp option, as a tap hands it over (`gso` 0: a single
    /// segment).
    pub fn head(seq: u32, payload: usize, gso: u16) -> (Vec<u8>, usize) {
        let mut h = vec![0u8; HEAD];
        h[0] = NEEDS_CSUM;
        if gso > 0 {
            h[1] = GSO_TCPV4;
            h[4..6].copy_from_slice(&gso.to_le_bytes());
        }
        h[HDR_LEN..HDR_LEN + 6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        h[HDR_LEN + 6..HDR_LEN + 12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        h[HDR_LEN + 12..IH].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut h[IH..TH];
        ip[0] = 0x45;
        let tot = (IP + TCP_TS + payload) as u16;
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
        ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
        let th = &mut h[TH..];
        th[0..4].copy_from_slice(&[0x14, 0x51, 0x9c, 0x40]);
        th[4..8].copy_from_slice(&seq.to_be_bytes());
        th[8..12].copy_from_slice(&77u32.to_be_bytes());
        th[12] = 8 << 4;
        th[13] = TCP_ACK;
        th[14..16].copy_from_slice(&500u16.to_be_bytes());
        th[20..24].copy_from_slice(&TS_OPTION);
        th[24..28].copy_from_slice(&1000u32.to_be_bytes());
        (h, ETH + IP + TCP_TS + payload)
    }

    #[test]
    fn a_tcp_ipv4_segment_is_recognised() {
        let (h, len) = head(1, 2896, 1448);
        let s = segment(&h, len).unwrap();
        assert_eq!((s.hdr_len, s.payload, s.mss, s.gso), (66, 2896, 1448, true));
        let (h, len) = head(1, 100, 0);
        assert_eq!(segment(&h, len).unwrap().mss, 100);
    }

    #[test]
    fn other_frames_are_not_joined() {
        let (h, len) = head(1, 1448, 0);
        let variants: [(usize, u8); 7] = [
            (0, 0),                 // checksum neither verified nor partial
            (HDR_LEN + 12, 0x86),   // not IPv4
            (IH, 0x46),             // IP options
            (IH + 6, 0x20),         // more fragments
            (IH + 9, 17),           // UDP
            (TH + 13, TCP_ACK | 1), // FIN
            (TH + 20, 5),           // other options (SACK)
        ];
        for (at, v) in variants {
            let mut x = h.clone();
            x[at] = v;
            assert_eq!(segment(&x, len), None, "byte {at} = {v:#x}");
        }
        assert_eq!(segment(&h, len + 1), None, "padding after the IP packet");
        let (h0, len0) = head(1, 0, 0);
        assert_eq!(segment(&h0, len0), None, "no payload");
        let mut psh = h.clone();
        psh[TH + 13] |= TCP_PSH;
        assert!(segment(&psh, len).is_some(), "PSH may be joined");
    }

    #[test]
    fn the_next_segment_must_continue_the_flow() {
        let (a, la) = head(1000, 2896, 1448);
        let sa = segment(&a, la).unwrap();
        let (b, lb) = head(1000 + 2896, 1448 * 3, 1448);
        let sb = segment(&b, lb).unwrap();
        assert!(follows(&a, &sa, &b, &sb));
        let (gap, lg) = head(1000 + 2897, 1448, 1448);
        assert!(!follows(&a, &sa, &gap, &segment(&gap, lg).unwrap()));
        let (other_mss, lo) = head(1000 + 2896, 2800, 1400);
        assert!(!follows(
            &a,
            &sa,
            &other_mss,
            &segment(&other_mss, lo).unwrap()
        ));
        let mut port = b.clone();
        port[TH + 1] ^= 1;
        assert!(!follows(&a, &sa, &port, &sb));
        let mut ce = b.clone();
        ce[IH + 1] = 3; // ECN CE
        assert!(!follows(&a, &sa, &ce, &sb));
        // A short last segment ends the run; a short single one may join.
        let (short, ls) = head(1000, 2000, 1448);
        let ss = segment(&short, ls).unwrap();
        let (after, la2) = head(3000, 1448, 1448);
        assert!(!follows(
            &short,
            &ss,
            &after,
            &segment(&after, la2).unwrap()
        ));
        let (tail, lt) = head(1000 + 2896, 700, 0);
        assert!(follows(&a, &sa, &tail, &segment(&tail, lt).unwrap()));
    }

    #[test]
    fn joined_headers_carry_the_last_acknowledgement_and_a_partial_checksum() {
        let (mut a, la) = head(1000, 2896, 1448);
        let mut sa = segment(&a, la).unwrap();
        let (mut b, lb) = head(1000 + 2896, 1448, 0);
        b[TH + 8..TH + 12].copy_from_slice(&99u32.to_be_bytes());
        b[TH + 13] |= TCP_PSH;
        b[TH + 24..TH + 28].copy_from_slice(&1001u32.to_be_bytes());
        let sb = segment(&b, lb).unwrap();
        sa.payload += sb.payload;
        append(&mut a, &sa, &b);
        assert_eq!(be32(&a, TH + 8), 99);
        assert_eq!(a[TH + 13], TCP_ACK | TCP_PSH);
        assert_eq!(be32(&a, TH + 24), 1001);
        assert_eq!(be16(&a, IH + 2), IP + TCP_TS + 4344);
        assert_eq!(fold(ones_sum(&a[IH..TH])), 0xffff, "IP header checksum");
        assert_eq!(
            (a[0], a[1], le16(&a, 4), le16(&a, 6)),
            (NEEDS_CSUM, GSO_TCPV4, 1448, 34)
        );
        let seg = (TCP_TS + 4344) as u64;
        let pseudo = fold(ones_sum(&a[IH + 12..IH + 20]) + 6 + seg);
        assert_eq!(be16(&a, TH + 16), usize::from(pseudo));
        // Above 64 KiB the total length is 0 (BIG TCP).
        sa.payload = 100_000;
        append(&mut a, &sa, &b);
        assert_eq!(be16(&a, IH + 2), 0);
        assert_eq!(fold(ones_sum(&a[IH..TH])), 0xffff);
    }
}
