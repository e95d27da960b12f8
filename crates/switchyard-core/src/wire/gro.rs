//! UDP coalescing: the mirror image of segmentation offload, done on the way out.
//!
//! Under small-datagram load a batch read from one port often holds a run of
//! datagrams of one flow, all going to the same port. Writing each is one system call
//! and one trip up the receiver's stack. When the egress TAP takes UDP super-frames
//! (`TUN_F_USO4`), the run can be written as one: the headers of the first datagram,
//! then every payload back to back, and a virtio-net header saying `GSO_UDP_L4` with
//! `gso_size` = the payload size. The kernel cuts it into the original datagrams
//! (`__udp_gso_segment`) before any socket sees them, so the receiver gets what was
//! sent, datagram by datagram, at a fraction of the cost. This is what the kernel's
//! own GRO does for UDP when a socket asks for it (`UDP_GRO`), here in user space.
//!
//! The rules, chosen so that nothing a receiver could observe changes:
//!
//! * untagged Ethernet, IPv4 with no options, not a fragment, Don't Fragment set (the
//!   kernel gives the segments consecutive IP IDs; with DF the ID has no meaning,
//!   RFC 6864), UDP;
//! * the UDP checksum was left to offload (`NEEDS_CSUM`, start at the UDP header): no
//!   checksum was ever computed, so none is lost; a datagram with a complete checksum
//!   is never coalesced, since a wrong checksum would then be made right;
//! * every field of the headers equal but the IP ID, lengths and checksums: MACs, TOS,
//!   TTL, addresses, ports;
//! * every payload the size of the first, but the last, which may be shorter (as the
//!   segmentation cuts them); at most [`MAX_SEGMENTS`] datagrams.

use super::checksum;
use super::ethernet::{self, EtherType, EthernetFrame};
use super::ipv4::{IpProtocol, Ipv4Packet};
use super::udp::{self, UdpPacket};
use super::virtio_net::{VirtioNetHdr, F_NEEDS_CSUM, GSO_UDP_L4};
use super::MacAddr;
use std::net::Ipv4Addr;

/// Where the IPv4 header starts.
const L3: usize = ethernet::HEADER_LEN;
/// Where the UDP header starts: IPv4 without options.
const L4: usize = L3 + Ipv4Packet::<&[u8]>::MIN_HEADER_LEN;
/// Ethernet, IPv4 (no options) and UDP headers.
pub const HEADERS: usize = L4 + UdpPacket::<&[u8]>::HEADER_LEN;
/// Datagrams in one super-frame at most (the kernel accepts 64 and more).
pub const MAX_SEGMENTS: usize = 64;

/// What two datagrams must share to travel in one super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFlow {
    dst_mac: MacAddr,
    src_mac: MacAddr,
    dscp_ecn: u8,
    ttl: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
}

/// If `frame` may be coalesced, its flow and payload length.
pub fn udp4_candidate(frame: &[u8], vnet: &VirtioNetHdr) -> Option<(UdpFlow, usize)> {
    if vnet.is_gso()
        || vnet.flags & F_NEEDS_CSUM == 0
        || usize::from(vnet.csum_start) != L4
        || usize::from(vnet.csum_offset) != udp::field::CHECKSUM
        || frame.len() < HEADERS
    {
        return None;
    }
    let eth = EthernetFrame::new_unchecked(frame);
    let ip = Ipv4Packet::new_unchecked(&frame[L3..]);
    if eth.ethertype() != EtherType::IPV4
        || ip.version() != 4
        || ip.header_len() != L4 - L3
        || !ip.dont_fragment()
        || ip.more_fragments()
        || ip.frag_offset() != 0
        || ip.protocol() != IpProtocol::UDP
    {
        return None;
    }
    let udp = UdpPacket::new_unchecked(&frame[L4..]);
    let (total, udp_len) = (ip.total_len(), usize::from(udp.len()));
    if total != frame.len() - L3 || udp_len != frame.len() - L4 || udp_len <= HEADERS - L4 {
        return None;
    }
    let flow = UdpFlow {
        dst_mac: eth.dst(),
        src_mac: eth.src(),
        dscp_ecn: ip.dscp_ecn(),
        ttl: ip.ttl(),
        src: ip.src(),
        dst: ip.dst(),
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
    };
    Some((flow, udp_len - (HEADERS - L4)))
}

/// Builds a super-frame in `buf`, which holds the first datagram (`len` bytes, a
/// candidate) and has room after it: every payload of `more` is appended, and the
/// headers made to describe the whole. Returns the super-frame's length and the
/// virtio-net header to send it with. `more` must hold payloads of the same flow,
/// each the first's size but the last (which may be shorter).
pub fn build<'a>(
    buf: &mut [u8],
    len: usize,
    more: impl Iterator<Item = &'a [u8]>,
) -> (usize, VirtioNetHdr) {
    let mss = len - HEADERS;
    let mut end = len;
    for p in more {
        debug_assert!(p.len() <= mss);
        buf[end..end + p.len()].copy_from_slice(p);
        end += p.len();
    }
    let (total, udp_len) = ((end - L3) as u16, (end - L4) as u16);
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[L3..end]);
    ip.set_total_len(total);
    ip.fill_checksum();
    // The partial checksum the kernel expects of a UDP super-frame: the pseudo-header
    // sum over the whole length, which it adjusts for each segment.
    let partial = checksum::fold(checksum::pseudo_header_sum(
        ip.src(),
        ip.dst(),
        IpProtocol::UDP,
        udp_len,
    ));
    let mut udp = UdpPacket::new_unchecked(&mut buf[L4..end]);
    udp.set_len(udp_len);
    udp.set_checksum(partial);
    let vnet = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: HEADERS as u16,
        gso_size: mss as u16,
        csum_start: L4 as u16,
        csum_offset: udp::field::CHECKSUM as u16,
        num_buffers: 0,
    };
    (end, vnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gso;
    use crate::wire::ipv4::{self, Ipv4Repr};

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A datagram as an endpoint's stack hands it to a TAP with checksum offload: the
    /// UDP checksum field holds the pseudo-header sum.
    fn datagram(id: u16, payload: &[u8], df: bool) -> (Vec<u8>, VirtioNetHdr) {
        let mut f = vec![0u8; HEADERS + payload.len()];
        ethernet::write_header(
            &mut f,
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr([2, 0, 0, 0, 0, 1]),
            EtherType::IPV4,
        );
        let ulen = (HEADERS - L4 + payload.len()) as u16;
        ipv4::write_header(
            &mut f[L3..],
            &Ipv4Repr {
                src: SRC,
                dst: DST,
                protocol: IpProtocol::UDP,
                ttl: 64,
                ident: id,
                dont_fragment: df,
                payload_len: usize::from(ulen),
            },
        );
        let mut udp = UdpPacket::new_checked(&mut f[L4..]).unwrap();
        udp.set_src_port(4000);
        udp.set_dst_port(9000);
        udp.set_len(ulen);
        udp.set_checksum(checksum::fold(checksum::pseudo_header_sum(
            SRC,
            DST,
            IpProtocol::UDP,
            ulen,
        )));
        udp.payload_mut().copy_from_slice(payload);
        let vnet = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: L4 as u16,
            csum_offset: udp::field::CHECKSUM as u16,
            ..VirtioNetHdr::default()
        };
        (f, vnet)
    }

    #[test]
    fn a_run_becomes_one_super_frame_that_cuts_back_into_the_datagrams() {
        let payloads: Vec<Vec<u8>> = (0..5u8)
            .map(|k| (0..if k == 4 { 30 } else { 64 }).map(|i| i ^ k).collect())
            .collect();
        let frames: Vec<_> = payloads
            .iter()
            .enumerate()
            .map(|(k, p)| datagram(100 + k as u16, p, true))
            .collect();
        let (flow, mss) = udp4_candidate(&frames[0].0, &frames[0].1).unwrap();
        assert_eq!(mss, 64);
        for (f, v) in &frames[1..] {
            assert_eq!(udp4_candidate(f, v).unwrap().0, flow, "same flow");
        }
        let mut buf = vec![0u8; 4096];
        buf[..frames[0].0.len()].copy_from_slice(&frames[0].0);
        let (len, vnet) = build(
            &mut buf,
            frames[0].0.len(),
            frames[1..].iter().map(|(f, _)| &f[HEADERS..]),
        );
        assert_eq!(len, HEADERS + 4 * 64 + 30);
        assert_eq!(
            (vnet.gso_type, vnet.gso_size, vnet.hdr_len),
            (GSO_UDP_L4, 64, 42)
        );

        // Cut it as the kernel would: the datagrams come back, valid, payloads intact.
        let mut segs = Vec::new();
        let mut scratch = vec![0u8; 4096];
        let n = gso::segment(&buf[..len], &vnet, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 5);
        for (k, s) in segs.iter().enumerate() {
            assert_eq!(&s[HEADERS..], &payloads[k][..], "payload {k}");
            assert!(
                Ipv4Packet::new_checked(&s[L3..]).unwrap().checksum_ok(),
                "IP checksum {k}"
            );
            let ulen = UdpPacket::new_checked(&s[L4..]).unwrap().len();
            assert_eq!(usize::from(ulen), HEADERS - L4 + payloads[k].len());
            let pseudo = checksum::pseudo_header_sum(SRC, DST, IpProtocol::UDP, ulen);
            assert_eq!(
                checksum::fold(checksum::sum(pseudo, &s[L4..])),
                0xffff,
                "UDP checksum {k}"
            );
        }
    }

    #[test]
    fn only_untouched_offloaded_df_datagrams_qualify() {
        let (f, v) = datagram(1, &[7; 64], true);
        assert!(udp4_candidate(&f, &v).is_some());
        // No DF: the IP IDs the kernel would give the segments could matter.
        let (f2, v2) = datagram(1, &[7; 64], false);
        assert!(udp4_candidate(&f2, &v2).is_none());
        // A complete checksum (possibly a wrong one) is never coalesced.
        let mut v3 = v;
        v3.flags = 0;
        assert!(udp4_candidate(&f, &v3).is_none());
        // A fragment, options, another protocol, a super-frame already.
        let mut frag = f.clone();
        Ipv4Packet::new_unchecked(&mut frag[L3..]).set_fragment(8, false, true);
        assert!(udp4_candidate(&frag, &v).is_none());
        let mut tcp = f.clone();
        tcp[L3 + 9] = IpProtocol::TCP.0; // the protocol byte
        assert!(udp4_candidate(&tcp, &v).is_none());
        let mut gso = v;
        gso.gso_type = GSO_UDP_L4;
        assert!(udp4_candidate(&f, &gso).is_none());
        // Lengths that disagree with the frame.
        assert!(udp4_candidate(&f[..f.len() - 1], &v).is_none());
        // A different TTL or port is a different flow.
        let (mut g, _) = datagram(2, &[7; 64], true);
        Ipv4Packet::new_unchecked(&mut g[L3..]).set_ttl(63);
        assert_ne!(
            udp4_candidate(&g, &v).unwrap().0,
            udp4_candidate(&f, &v).unwrap().0
        );
    }
}
