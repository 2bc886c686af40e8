//! The offload feature bits (`VIRTIO_NET_F_*`, upstream LKL's `offload`
//! mask), the `virtio_net_hdr_v1` that carries their per-frame state, and
//! what the device does when the driver did not take an offload the host
//! side used anyway (a partial checksum is completed in software).

use crate::spec;

/// The header before every frame once `VIRTIO_F_VERSION_1` is negotiated:
/// `flags`, `gso_type`, `hdr_len`, `gso_size`, `csum_start`,
/// `csum_offset`, `num_buffers` (virtio 1.2, 5.1.6).
pub const HDR_LEN: usize = 12;

const fn bit(n: u32) -> u64 {
    1 << n
}

/// Driver to device: the device completes the checksum.
pub const CSUM: u64 = bit(spec::VIRTIO_NET_F_CSUM);
/// Device to driver: the driver accepts partial checksums.
pub const GUEST_CSUM: u64 = bit(spec::VIRTIO_NET_F_GUEST_CSUM);
/// The driver accepts TCP/IPv4 segments larger than the MTU.
pub const GUEST_TSO4: u64 = bit(spec::VIRTIO_NET_F_GUEST_TSO4);
/// The driver accepts TCP/IPv6 segments larger than the MTU.
pub const GUEST_TSO6: u64 = bit(spec::VIRTIO_NET_F_GUEST_TSO6);
/// The driver accepts large segments with ECN.
pub const GUEST_ECN: u64 = bit(spec::VIRTIO_NET_F_GUEST_ECN);
/// The driver accepts large UDP datagrams.
pub const GUEST_UFO: u64 = bit(spec::VIRTIO_NET_F_GUEST_UFO);
/// The device segments large TCP/IPv4 packets.
pub const HOST_TSO4: u64 = bit(spec::VIRTIO_NET_F_HOST_TSO4);
/// The device segments large TCP/IPv6 packets.
pub const HOST_TSO6: u64 = bit(spec::VIRTIO_NET_F_HOST_TSO6);
/// The device segments large packets with ECN.
pub const HOST_ECN: u64 = bit(spec::VIRTIO_NET_F_HOST_ECN);
/// The device fragments large UDP datagrams.
pub const HOST_UFO: u64 = bit(spec::VIRTIO_NET_F_HOST_UFO);
/// The driver's receive buffers may be merged: a frame spans several
/// chains, counted in `num_buffers`.
pub const MRG_RXBUF: u64 = bit(spec::VIRTIO_NET_F_MRG_RXBUF);

/// Every bit an `offload` mask may hold.
pub const ALL: u64 = CSUM
    | GUEST_CSUM
    | GUEST_TSO4
    | GUEST_TSO6
    | GUEST_ECN
    | GUEST_UFO
    | HOST_TSO4
    | HOST_TSO6
    | HOST_ECN
    | HOST_UFO
    | MRG_RXBUF;

/// Whether `mask` has bit `b`.
pub fn has(mask: u64, b: u64) -> bool {
    mask & b != 0
}

/// `mask` less every feature whose prerequisite is missing (virtio 1.2,
/// 5.1.3.1: TSO/UFO need the checksum offload of their direction, ECN a
/// TSO), so the device never offers an inconsistent set.
pub fn consistent(mut mask: u64) -> u64 {
    if !has(mask, GUEST_CSUM) {
        mask &= !(GUEST_TSO4 | GUEST_TSO6 | GUEST_UFO);
    }
    if !has(mask, GUEST_TSO4 | GUEST_TSO6) {
        mask &= !GUEST_ECN;
    }
    if !has(mask, CSUM) {
        mask &= !(HOST_TSO4 | HOST_TSO6 | HOST_UFO);
    }
    if !has(mask, HOST_TSO4 | HOST_TSO6) {
        mask &= !HOST_ECN;
    }
    mask
}

/// `TUN_F_*` (linux/if_tun.h): what `TUNSETOFFLOAD` lets the tap hand us.
pub mod tun {
    /// Partial checksums.
    pub const CSUM: u32 = 0x01;
    /// TCP/IPv4 segmentation.
    pub const TSO4: u32 = 0x02;
    /// TCP/IPv6 segmentation.
    pub const TSO6: u32 = 0x04;
    /// TSO with ECN.
    pub const TSO_ECN: u32 = 0x08;
    /// UDP fragmentation.
    pub const UFO: u32 = 0x10;
}

/// The `TUN_F_*` flags matching the receive offloads the driver
/// negotiated in `features`.
pub fn tun_flags(features: u64) -> u32 {
    let mut f = 0;
    if has(features, GUEST_CSUM) {
        f |= tun::CSUM;
    }
    if has(features, GUEST_TSO4) {
        f |= tun::TSO4;
    }
    if has(features, GUEST_TSO6) {
        f |= tun::TSO6;
    }
    if has(features, GUEST_ECN) {
        f |= tun::TSO_ECN;
    }
    if has(features, GUEST_UFO) {
        f |= tun::UFO;
    }
    f
}

const F_NEEDS_CSUM: u8 = spec::VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
const GSO_NONE: u8 = spec::VIRTIO_NET_HDR_GSO_NONE as u8;
const GSO_ECN: u8 = spec::VIRTIO_NET_HDR_GSO_ECN as u8;

/// Why a received frame cannot go to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A large segment of a kind the driver did not negotiate.
    Gso(u8),
    /// A partial checksum whose offsets lie outside the frame.
    Csum,
}

/// Makes the header the host side gave with `frame` fit what the driver
/// negotiated in `features`: without `GUEST_CSUM`, a partial checksum is
/// completed here and the flags cleared (5.1.6.3: "the device MUST set
/// flags to zero"); a large segment the driver did not take is refused.
/// `num_buffers` is left for the caller.
pub fn fit_received(
    features: u64,
    hdr: &mut [u8; HDR_LEN],
    frame: &mut [u8],
) -> Result<(), Refused> {
    let gso = hdr[1];
    if gso != GSO_NONE {
        let allowed = match gso & !GSO_ECN {
            t if u32::from(t) == spec::VIRTIO_NET_HDR_GSO_TCPV4 => has(features, GUEST_TSO4),
            t if u32::from(t) == spec::VIRTIO_NET_HDR_GSO_TCPV6 => has(features, GUEST_TSO6),
            t if u32::from(t) == spec::VIRTIO_NET_HDR_GSO_UDP => has(features, GUEST_UFO),
            _ => false,
        } && (gso & GSO_ECN == 0 || has(features, GUEST_ECN));
        if !allowed {
            return Err(Refused::Gso(gso));
        }
    }
    if !has(features, GUEST_CSUM) {
        if hdr[0] & F_NEEDS_CSUM != 0 {
            let start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
            let offset = usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
            complete_checksum(frame, start, offset).ok_or(Refused::Csum)?;
        }
        hdr[0] = 0;
    }
    Ok(())
}

/// Fills in a partial checksum: the ones' complement of the sum of
/// `frame[start..]` (whose field at `start + offset` already holds the
/// pseudo-header sum), stored at `start + offset`. `None` if the offsets
/// do not fit the frame.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> Option<()> {
    let at = start.checked_add(offset)?;
    if at + 2 > frame.len() {
        return None;
    }
    let sum = !fold(ones_sum(&frame[start..]));
    // A UDP checksum of 0 means "none": it is sent as all ones instead.
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Some(())
}

/// The 32-bit running sum of `data` as big-endian 16-bit words.
pub(super) fn ones_sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    let mut sum: u64 = 0;
    for c in &mut chunks {
        let w = u64::from_be_bytes(c.try_into().expect("8 bytes"));
        sum += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    for c in chunks.remainder().chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

/// `sum` folded to 16 bits (end-around carry), not complemented.
pub(super) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_match_the_spec_and_upstream_examples() {
        // Upstream's README: 0x8002 is MRG_RXBUF + GUEST_CSUM; its example
        // 0xc803 adds CSUM, HOST_TSO4 and HOST_UFO.
        assert_eq!(MRG_RXBUF | GUEST_CSUM, 0x8002);
        assert_eq!(CSUM | GUEST_CSUM | HOST_TSO4 | HOST_UFO | MRG_RXBUF, 0xc803);
        assert_eq!(consistent(0xc803), 0xc803);
        assert_eq!(ALL, 0xff83);
    }

    #[test]
    fn features_without_their_prerequisite_are_dropped() {
        assert_eq!(consistent(HOST_TSO4 | GUEST_TSO6 | MRG_RXBUF), MRG_RXBUF);
        assert_eq!(consistent(CSUM | HOST_ECN), CSUM);
        assert_eq!(
            consistent(GUEST_CSUM | GUEST_TSO4 | GUEST_ECN),
            GUEST_CSUM | GUEST_TSO4 | GUEST_ECN
        );
        assert_eq!(tun_flags(GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6), 7);
        assert_eq!(tun_flags(CSUM | HOST_TSO4 | MRG_RXBUF), 0);
    }

    #[test]
    fn a_partial_checksum_is_completed_when_the_driver_cannot() {
        // An IPv4 UDP datagram; the checksum field holds the pseudo-header
        // sum as the host stack leaves it with CHECKSUM_PARTIAL.
        let src = [198u8, 18, 0, 1];
        let dst = [198u8, 18, 0, 2];
        let payload = b"hello, world!";
        let udp_len = (8 + payload.len()) as u16;
        let mut frame = vec![0u8; 14 + 20];
        frame[14 + 12..14 + 16].copy_from_slice(&src);
        frame[14 + 16..14 + 20].copy_from_slice(&dst);
        let mut udp = vec![0x30, 0x39, 0x00, 0x35];
        udp.extend_from_slice(&udp_len.to_be_bytes());
        let pseudo = ones_sum(&src) + ones_sum(&dst) + 17 + u64::from(udp_len);
        udp.extend_from_slice(&fold(pseudo).to_be_bytes());
        udp.extend_from_slice(payload);
        frame.extend_from_slice(&udp);
        let mut hdr = [0u8; HDR_LEN];
        hdr[0] = F_NEEDS_CSUM;
        hdr[6..8].copy_from_slice(&34u16.to_le_bytes());
        hdr[8..10].copy_from_slice(&6u16.to_le_bytes());
        fit_received(0, &mut hdr, &mut frame).unwrap();
        assert_eq!(hdr[0], 0);
        // Checking: the pseudo-header plus the datagram sums to all ones.
        let verify = fold(
            ones_sum(&src) + ones_sum(&dst) + 17 + u64::from(udp_len) + ones_sum(&frame[34..]),
        );
        assert_eq!(verify, 0xffff);
        // With GUEST_CSUM the partial checksum goes to the driver as is.
        let mut hdr2 = hdr;
        hdr2[0] = F_NEEDS_CSUM;
        fit_received(GUEST_CSUM, &mut hdr2, &mut frame).unwrap();
        assert_eq!(hdr2[0], F_NEEDS_CSUM);
        // Offsets outside the frame.
        hdr2[6..8].copy_from_slice(&1000u16.to_le_bytes());
        assert_eq!(fit_received(0, &mut hdr2, &mut frame), Err(Refused::Csum));
    }

    #[test]
    fn large_segments_need_their_feature() {
        let mut hdr = [0u8; HDR_LEN];
        hdr[1] = spec::VIRTIO_NET_HDR_GSO_TCPV4 as u8;
        let mut f = [0u8; 64];
        assert_eq!(
            fit_received(GUEST_CSUM, &mut hdr, &mut f),
            Err(Refused::Gso(1))
        );
        assert!(fit_received(GUEST_CSUM | GUEST_TSO4, &mut hdr, &mut f).is_ok());
        hdr[1] |= GSO_ECN;
        assert!(fit_received(GUEST_CSUM | GUEST_TSO4, &mut hdr, &mut f).is_err());
    }
}
