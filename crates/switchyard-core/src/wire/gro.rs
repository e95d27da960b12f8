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
use super::virtio_net::{VirtioNetHdr, F_NEEDS_CSUM, GSO_UDP_L4};

const ETH: usize = 14;
const IP: usize = 20;
const UDP: usize = 8;
/// Ethernet, IPv4 (no options) and UDP headers.
pub const HEADERS: usize = ETH + IP + UDP;
/// Datagrams in one super-frame at most (the kernel accepts 64 and more).
pub const MAX_SEGMENTS: usize = 64;

/// What two datagrams must share to travel in one super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFlow {
    macs: [u8; 12],
    tos: u8,
    ttl: u8,
    addrs: [u8; 8],
    ports: [u8; 4],
}

/// If `frame` may be coalesced, its flow and payload length.
pub fn udp4_candidate(frame: &[u8], vnet: &VirtioNetHdr) -> Option<(UdpFlow, usize)> {
    if vnet.is_gso()
        || vnet.flags & F_NEEDS_CSUM == 0
        || usize::from(vnet.csum_start) != ETH + IP
        || vnet.csum_offset != 6
        || frame.len() < HEADERS
        || frame[12..14] != [0x08, 0x00]
    {
        return None;
    }
    let ip = &frame[ETH..];
    // Version 4, IHL 5; DF set, MF clear, offset 0; protocol UDP.
    if ip[0] != 0x45 || ip[6] != 0x40 || ip[7] != 0 || ip[9] != 17 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let udp_len = usize::from(u16::from_be_bytes([ip[IP + 4], ip[IP + 5]]));
    if total != frame.len() - ETH || udp_len != total - IP || udp_len <= UDP {
        return None;
    }
    let mut flow = UdpFlow {
        macs: [0; 12],
        tos: ip[1],
        ttl: ip[8],
        addrs: [0; 8],
        ports: [0; 4],
    };
    flow.macs.copy_from_slice(&frame[..12]);
    flow.addrs.copy_from_slice(&ip[12..20]);
    flow.ports.copy_from_slice(&ip[IP..IP + 4]);
    Some((flow, udp_len - UDP))
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
    let (total, udp_len) = ((end - ETH) as u16, (end - ETH - IP) as u16);
    let ip = &mut buf[ETH..end];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[10..12].fill(0);
    let c = checksum::checksum(&ip[..IP]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[IP + 4..IP + 6].copy_from_slice(&udp_len.to_be_bytes());
    // The partial checksum the kernel expects of a UDP super-frame: the pseudo-header
    // sum over the whole length, which it adjusts for each segment.
    let mut src = [0u8; 4];
    let mut dst = [0u8; 4];
    src.copy_from_slice(&ip[12..16]);
    dst.copy_from_slice(&ip[16..20]);
    let partial = checksum::fold(checksum::pseudo_header_sum(src, dst, 17, udp_len));
    ip[IP + 6..IP + 8].copy_from_slice(&partial.to_be_bytes());
    let vnet = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: HEADERS as u16,
        gso_size: mss as u16,
        csum_start: (ETH + IP) as u16,
        csum_offset: 6,
        num_buffers: 0,
    };
    (end, vnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gso;

    /// A datagram as an endpoint's stack hands it to a TAP with checksum offload: the
    /// UDP checksum field holds the pseudo-header sum.
    fn datagram(id: u16, payload: &[u8], df: bool) -> (Vec<u8>, VirtioNetHdr) {
        let mut f = vec![0u8; HEADERS + payload.len()];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[8, 0]);
        let total = (IP + UDP + payload.len()) as u16;
        let ip = &mut f[ETH..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6] = if df { 0x40 } else { 0 };
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = checksum::checksum(&ip[..IP]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[IP..IP + 2].copy_from_slice(&4000u16.to_be_bytes());
        ip[IP + 2..IP + 4].copy_from_slice(&9000u16.to_be_bytes());
        let ulen = (UDP + payload.len()) as u16;
        ip[IP + 4..IP + 6].copy_from_slice(&ulen.to_be_bytes());
        let p = checksum::fold(checksum::pseudo_header_sum(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            ulen,
        ));
        ip[IP + 6..IP + 8].copy_from_slice(&p.to_be_bytes());
        ip[IP + UDP..].copy_from_slice(payload);
        let vnet = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: (ETH + IP) as u16,
            csum_offset: 6,
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
            assert!(checksum::verify(&s[ETH..ETH + IP]), "IP checksum {k}");
            let ulen = u16::from_be_bytes([s[ETH + IP + 4], s[ETH + IP + 5]]);
            assert_eq!(usize::from(ulen), UDP + payloads[k].len());
            let pseudo = checksum::pseudo_header_sum([10, 0, 0, 1], [10, 0, 0, 2], 17, ulen);
            assert_eq!(
                checksum::fold(checksum::sum(pseudo, &s[ETH + IP..])),
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
        frag[ETH + 7] = 1;
        assert!(udp4_candidate(&frag, &v).is_none());
        let mut tcp = f.clone();
        tcp[ETH + 9] = 6;
        assert!(udp4_candidate(&tcp, &v).is_none());
        let mut gso = v;
        gso.gso_type = GSO_UDP_L4;
        assert!(udp4_candidate(&f, &gso).is_none());
        // Lengths that disagree with the frame.
        assert!(udp4_candidate(&f[..f.len() - 1], &v).is_none());
        // A different TTL or port is a different flow.
        let (mut g, _) = datagram(2, &[7; 64], true);
        g[ETH + 8] = 63;
        assert_ne!(
            udp4_candidate(&g, &v).unwrap().0,
            udp4_candidate(&f, &v).unwrap().0
        );
    }
}
