//! VXLAN (RFC 7348): an Ethernet frame carried in a UDP datagram between two tunnel
//! endpoints (VTEPs), so that one bridge domain spans several hosts.
//!
//! ```text
//!  outer IPv4 (20) | outer UDP (8) | VXLAN (8)                 | inner Ethernet frame
//!                  | sport: flow   | flags: I bit | VNI (24 b) |
//!                  | dport: 4789   |                           |
//! ```
//! The VXLAN header is 8 bytes: a flags byte whose I bit (0x08) says the VNI is valid,
//! 24 reserved bits, the 24-bit VXLAN Network Identifier and 8 more reserved bits.
//! Reserved bits are sent as zero and ignored on receipt (RFC 7348 §5).
//!
//! Encapsulation costs 50 bytes of the underlay's IP MTU: 20 (outer IPv4) + 8 (UDP) +
//! 8 (VXLAN) + 14 (the inner Ethernet header, which an IP MTU does not count). Hence an
//! overlay network's MTU is the underlay's minus [`OVERHEAD`].
//!
//! The outer UDP source port is a hash of the inner flow (§5: "entropy"), so that
//! routers spreading flows over paths (ECMP) and receivers spreading them over queues
//! (RSS, `SO_REUSEPORT`) see one flow's packets together and different flows apart.
//! The outer UDP checksum may be zero over IPv4 (§5), as Linux sends it by default.

use super::{checksum, IpProtocol, WireError};
use std::net::Ipv4Addr;

/// Bytes of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes of outer IPv4 + UDP + VXLAN headers in front of an inner frame.
pub const OUTER_LEN: usize = 20 + 8 + HEADER_LEN;
/// What an overlay costs of the underlay's IP MTU (outer headers and the inner
/// Ethernet header).
pub const OVERHEAD: u16 = (OUTER_LEN + 14) as u16;
/// The IANA-assigned UDP port.
pub const DEFAULT_PORT: u16 = 4789;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// The flag saying the VNI is valid.
const FLAG_I: u8 = 0x08;
/// Source ports chosen from Linux's default range for tunnels (32768-60999).
const SPORT_BASE: u16 = 32768;
const SPORT_SPAN: u32 = 60999 - 32768 + 1;

/// Why a datagram is not a VXLAN frame of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than a VXLAN header and an Ethernet header.
    Short,
    /// The I flag is clear: no VNI.
    NoVni,
    /// Another network's VNI.
    OtherVni(u32),
}

/// Checks the VXLAN header at the start of `datagram` (the UDP payload) against the
/// network's `vni`; on success the inner Ethernet frame starts at [`HEADER_LEN`].
pub fn decapsulate(datagram: &[u8], vni: u32) -> Result<(), Refused> {
    if datagram.len() < HEADER_LEN + super::ethernet::HEADER_LEN {
        return Err(Refused::Short);
    }
    if datagram[0] & FLAG_I == 0 {
        return Err(Refused::NoVni);
    }
    let got = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    if got != vni {
        return Err(Refused::OtherVni(got));
    }
    Ok(())
}

/// Writes the VXLAN header for `vni` into `b` (at least [`HEADER_LEN`] bytes).
pub fn write_header(b: &mut [u8], vni: u32) -> Result<(), WireError> {
    super::check_len(b, HEADER_LEN)?;
    let v = (vni & MAX_VNI).to_be_bytes();
    b[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    Ok(())
}

/// The outer UDP source port for an inner frame: a hash of its Ethernet addresses
/// and, for IPv4, its addresses, protocol and (unfragmented TCP/UDP) ports, mapped
/// into 32768-60999. Every packet of a flow gets the same port.
pub fn source_port(inner: &[u8]) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    if inner.len() >= 14 {
        mix(&inner[..12]);
        if inner[12..14] == [0x08, 0x00] && inner.len() >= 14 + 20 {
            let ip = &inner[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            mix(&ip[9..20]); // protocol, checksum (skipped below), addresses
            let unfragmented = ip[6] & 0x1f == 0 && ip[7] == 0;
            if unfragmented && matches!(ip[9], 6 | 17) && ip.len() >= ihl + 4 {
                mix(&ip[ihl..ihl + 4]);
            }
        }
    }
    // Fold the high bits in: FNV's low bits alone spread poorly.
    let h = (h ^ (h >> 32)) as u32;
    SPORT_BASE + (h % SPORT_SPAN) as u16
}

/// The outer headers of one encapsulated frame.
#[derive(Debug, Clone, Copy)]
pub struct Outer {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub vni: u32,
}

impl Outer {
    /// Writes outer IPv4, UDP and VXLAN headers for an inner frame of `inner_len`
    /// bytes into `b`. The IPv4 header has DF set (never fragmented on the way: too
    /// big is refused), TTL 64, and identification and header checksum zero, which a
    /// raw socket with `IP_HDRINCL` fills in. `inner_sum`: the unfolded one's
    /// complement sum of the inner frame ([`checksum::sum`]) to make the UDP checksum
    /// from, or `None` to send it zero.
    pub fn write(&self, b: &mut [u8; OUTER_LEN], inner_len: usize, inner_sum: Option<u64>) {
        let udp_len = (8 + HEADER_LEN + inner_len) as u16;
        let total = 20 + udp_len;
        let (ip, rest) = b.split_at_mut(20);
        ip.copy_from_slice(&[
            0x45, 0, 0, 0, // version 4, IHL 5, TOS 0, total length below
            0, 0, 0x40, 0, // identification (filled in by the kernel), DF
            64, 17, 0, 0, // TTL, UDP, header checksum (filled in by the kernel)
            0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let (udp, vx) = rest.split_at_mut(8);
        udp[0..2].copy_from_slice(&self.sport.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dport.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        write_header(vx, self.vni).expect("the header fits");
        if let Some(inner) = inner_sum {
            let mut acc = checksum::pseudo_header_sum(self.src, self.dst, IpProtocol::UDP, udp_len);
            acc = checksum::sum(acc, udp);
            acc = checksum::sum(acc, vx);
            // The header is an even number of bytes, so the inner sum adds on as is.
            let mut c = !checksum::fold(acc + inner);
            if c == 0 {
                c = 0xffff;
            }
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let mut d = vec![0u8; HEADER_LEN + 14];
        write_header(&mut d, 42).unwrap();
        assert_eq!(&d[..8], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(decapsulate(&d, 42), Ok(()));
        assert_eq!(decapsulate(&d, 43), Err(Refused::OtherVni(42)));
        assert_eq!(decapsulate(&d[..HEADER_LEN + 13], 42), Err(Refused::Short));
        d[0] = 0;
        assert_eq!(decapsulate(&d, 42), Err(Refused::NoVni));
        // Reserved bits are ignored on receipt.
        d[0] = 0xff;
        d[1] = 0xff;
        d[7] = 0xff;
        assert_eq!(decapsulate(&d, 42), Ok(()));
    }

    #[test]
    fn one_flow_one_source_port_in_range() {
        let a = source_port(&frame(1000));
        assert_eq!(a, source_port(&frame(1000)));
        let ports: std::collections::HashSet<u16> =
            (0..64).map(|p| source_port(&frame(p))).collect();
        assert!(ports.len() > 32, "flows spread: {}", ports.len());
        assert!(ports.iter().all(|&p| (32768..=60999).contains(&p)));
        assert!((32768..=60999).contains(&source_port(&[])));
    }

    #[test]
    fn outer_headers_with_a_udp_checksum_that_verifies() {
        let inner = frame(7);
        let o = Outer {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            sport: 40000,
            dport: DEFAULT_PORT,
            vni: 42,
        };
        let mut b = [0u8; OUTER_LEN];
        o.write(&mut b, inner.len(), Some(checksum::sum(0, &inner)));
        assert_eq!(
            usize::from(u16::from_be_bytes([b[2], b[3]])),
            OUTER_LEN + inner.len()
        );
        assert_eq!(b[6], 0x40, "DF");
        // The UDP checksum verifies over pseudo-header + datagram.
        let mut dgram = b[20..].to_vec();
        dgram.extend_from_slice(&inner);
        let acc = checksum::pseudo_header_sum(o.src, o.dst, IpProtocol::UDP, dgram.len() as u16);
        assert_eq!(checksum::fold(checksum::sum(acc, &dgram)), 0xffff);
        // Without: zero.
        o.write(&mut b, inner.len(), None);
        assert_eq!(&b[26..28], &[0, 0]);
        assert_eq!(decapsulate(&dgram[8..], 42), Ok(()));
    }
}
