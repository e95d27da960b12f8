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
            // Protocol and addresses, not the header checksum between them: it
            // changes with every packet's identification, and one flow must keep
            // one port (or the receiver's queues reorder it).
            mix(&ip[9..10]);
            mix(&ip[12..20]);
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

/// Finishes an inner TCP or UDP checksum (IPv4, unfragmented) that a sender on the
/// same machine left partial, and says whether it did.
///
/// A tunnel endpoint behind a veth (another namespace, a container) hands its
/// encapsulated packets over with the inner checksum still to be done by an offload
/// — the kernel's `CHECKSUM_PARTIAL` travels beside the buffer, not in it, and a UDP
/// socket does not pass it on. Such a checksum field holds the pseudo-header sum (not
/// complemented), as a virtio-net `NEEDS_CSUM` frame's does. A checksum that is right
/// is left alone; one that is neither right nor that partial sum is left alone too,
/// for the receiving stack to refuse as a wire's corruption.
pub fn complete_inner_checksum(frame: &mut [u8]) -> bool {
    const ETH: usize = super::ethernet::HEADER_LEN;
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] || frame[ETH] >> 4 != 4 {
        return false;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let at = match ip[9] {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    if ihl < 20 || total < ihl + at + 2 || total > ip.len() || fragment {
        return false;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = IpProtocol(ip[9]);
    let l4 = ETH + ihl;
    let end = ETH + total;
    let field = u16::from_be_bytes([frame[l4 + at], frame[l4 + at + 1]]);
    if proto == IpProtocol::UDP && field == 0 {
        return false; // no checksum was sent
    }
    let pseudo = checksum::pseudo_header_sum(src, dst, proto, (total - ihl) as u16);
    if checksum::fold(checksum::sum(pseudo, &frame[l4..end])) == 0xffff {
        return false; // right as it is
    }
    if field != checksum::fold(pseudo) {
        return false;
    }
    checksum::complete_partial(&mut frame[..end], l4, at)
}

/// Takes an inner frame longer than the network's `mtu` allows for the TCP
/// super-frame it is, if it is one, and returns the offload header that says so.
///
/// A sender on the same machine (behind a veth) may hand over a VXLAN packet still
/// carrying a TCP segmentation-offload super-packet: the kernel delivers it to a UDP
/// socket whole, as one datagram of up to 64 KB, where a wire would have carried the
/// segments. Its inner IPv4 header counts the whole, and its checksum is to be done
/// per segment. Such a frame goes on as the TAPs' super-frames do: with
/// `GSO_TCPV4`, segments of the most the MTU holds, and the TCP checksum field set
/// to the pseudo-header sum the segments' checksums are finished from. Anything else
/// too long is left for the pipeline to refuse.
pub fn super_frame(frame: &mut [u8], mtu: u16) -> Option<super::VirtioNetHdr> {
    use super::virtio_net;
    const ETH: usize = super::ethernet::HEADER_LEN;
    if frame.len() <= ETH + usize::from(mtu) || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || fragment || total != ip.len() {
        return None;
    }
    let l4 = ETH + ihl;
    if frame.len() < l4 + 20 {
        return None;
    }
    let thl = usize::from(frame[l4 + 12] >> 4) * 4;
    if thl < 20 || frame.len() < l4 + thl || usize::from(mtu) <= ihl + thl + 64 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let pseudo = checksum::pseudo_header_sum(src, dst, IpProtocol::TCP, (total - ihl) as u16);
    frame[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    Some(super::VirtioNetHdr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: virtio_net::GSO_TCPV4,
        hdr_len: (l4 + thl) as u16,
        gso_size: (usize::from(mtu) - ihl - thl) as u16,
        csum_start: l4 as u16,
        csum_offset: 16,
        num_buffers: 0,
    })
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
    fn a_partial_inner_checksum_is_finished_and_others_are_left_alone() {
        // A UDP datagram with 4 bytes of payload and Ethernet padding behind it.
        let mut f = frame(7);
        f[14 + 2..14 + 4].copy_from_slice(&32u16.to_be_bytes());
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4, 0, 0]);
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let pseudo = checksum::pseudo_header_sum(src, dst, IpProtocol::UDP, 12);
        let good = {
            let mut g = f.clone();
            g[40..42].copy_from_slice(&[0, 0]);
            let c = !checksum::fold(checksum::sum(pseudo, &g[34..46]));
            g[40..42].copy_from_slice(&c.to_be_bytes());
            g
        };
        // Partial: the pseudo-header sum in the field.
        f[40..42].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        assert!(complete_inner_checksum(&mut f));
        assert_eq!(f, good);
        // Right already, or wrong in another way, or none: untouched.
        let mut g = good.clone();
        assert!(!complete_inner_checksum(&mut g));
        g[40] ^= 1;
        let bad = g.clone();
        assert!(!complete_inner_checksum(&mut g));
        assert_eq!(g, bad);
        g[40..42].copy_from_slice(&[0, 0]);
        assert!(!complete_inner_checksum(&mut g));
        // Runts and non-IPv4 frames are no concern of it.
        assert!(!complete_inner_checksum(&mut g[..30]));
    }

    #[test]
    fn a_tcp_packet_longer_than_the_mtu_goes_on_as_a_super_frame() {
        // 14 + 20 + 20 + 2800 bytes of TCP: a 2-segment super-packet on MTU 1450.
        let mut f = frame(7);
        f[14 + 9] = 6;
        f.resize(14 + 40 + 2800, 0xab);
        f[14 + 2..14 + 4].copy_from_slice(&2840u16.to_be_bytes());
        f[14 + 20 + 12] = 5 << 4;
        let vnet = super_frame(&mut f, 1450).expect("a super-frame");
        assert_eq!(
            (vnet.gso_size, vnet.hdr_len, vnet.csum_start),
            (1410, 54, 34)
        );
        let pseudo = checksum::pseudo_header_sum(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::TCP,
            2820,
        );
        assert_eq!(u16::from_be_bytes([f[50], f[51]]), checksum::fold(pseudo));
        // Cut as a TAP's would be, each segment's checksum verifies.
        let mut scratch = vec![0u8; 65536];
        let mut segs = 0;
        super::super::gso::segment(&f, &vnet, &mut scratch, |seg| {
            assert!(seg.len() <= 14 + 1450);
            segs += 1;
        })
        .unwrap();
        assert_eq!(segs, 2);
        // Within the MTU, or not TCP, or a length that does not add up: not one.
        assert!(super_frame(&mut f[..1464], 1450).is_none());
        f[14 + 9] = 17;
        assert!(super_frame(&mut f, 1450).is_none());
        f[14 + 9] = 6;
        f.push(0);
        assert!(super_frame(&mut f, 1450).is_none());
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
        // Packets of one flow differ in identification and header checksum.
        let mut b = frame(1000);
        b[14 + 4] ^= 0x5a;
        b[14 + 10] ^= 0xa5;
        assert_eq!(source_port(&b), a, "same flow, same port");
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
