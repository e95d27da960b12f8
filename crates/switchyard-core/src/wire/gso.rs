//! Software segmentation: cutting a TCP or UDP super-frame into wire-sized packets,
//! for a port that cannot take the super-frame itself.
//!
//! With segmentation offload, a sender hands over one large "frame" — headers once,
//! then up to 64 KB of payload — and a virtio-net header saying how to cut it: the
//! protocol (`gso_type`) and the payload per segment (`gso_size`, the MSS). Normally the
//! super-frame travels whole and the receiving stack takes it as is. Only when it must
//! leave through a port without that offload does switchyard do the cutting, as the
//! kernel's `skb_gso_segment` would:
//!
//! * every segment repeats the headers; the IPv4 total length (IPv6 payload length),
//!   and for IPv4 the identification (+1 per segment) and header checksum, are set
//!   per segment;
//! * TCP: the sequence number advances by the bytes before the segment; FIN and PSH
//!   stay only on the last segment, CWR only on the first;
//! * UDP (UDP GSO, `UDP_SEGMENT`): each segment is its own datagram with its own
//!   length;
//! * the transport checksum of each segment is computed in full — the super-frame's
//!   field held only a partial (pseudo-header) sum.

use super::checksum;
use super::ethernet::{self, EtherType, EthernetFrame};
use super::ipv4::{IpProtocol, Ipv4Packet};
use super::set_u16;
use super::tcp::{TcpFlags, TcpPacket};
use super::udp::UdpPacket;
use super::virtio_net::{VirtioNetHdr, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};

/// The fixed IPv6 header (RFC 8200), which this module alone needs: what it must set
/// per segment and read for the pseudo-header. Extension headers are not supported.
mod ipv6 {
    pub const HEADER_LEN: usize = 40;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    /// Source then destination address, 16 bytes each.
    pub const ADDRESSES: std::ops::Range<usize> = 8..40;
}

/// Why a super-frame could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    #[error("not a TCP/UDP over IPv4/IPv6 super-frame this code can cut")]
    Unsupported,
    #[error("headers truncated or inconsistent")]
    Malformed,
    #[error("segment size 0")]
    ZeroSize,
}

/// Where the headers are.
struct Layout {
    v6: bool,
    l3: usize,
    l4: usize,
    /// First payload byte.
    payload: usize,
    tcp: bool,
}

/// The network-layer length (IP header and all) of the largest segment a super-frame
/// will be cut into: what must fit the MTU of the path, as the kernel's
/// `skb_gso_validate_network_len` checks. None if the frame cannot be cut.
pub fn segment_network_len(frame: &[u8], vnet: &VirtioNetHdr) -> Option<usize> {
    let lay = layout(frame, vnet).ok()?;
    let payload = frame.len() - lay.payload;
    Some(lay.payload - lay.l3 + payload.min(usize::from(vnet.gso_size)))
}

/// The bytes of IP and transport headers every segment repeats, and whether the
/// super-frame is TCP (whose segment size is free to choose; a UDP super-frame's
/// segment size is its datagrams' size). None if the frame cannot be cut.
pub fn segment_headers(frame: &[u8], vnet: &VirtioNetHdr) -> Option<(usize, bool)> {
    let lay = layout(frame, vnet).ok()?;
    Some((lay.payload - lay.l3, lay.tcp))
}

fn layout(frame: &[u8], vnet: &VirtioNetHdr) -> Result<Layout, GsoError> {
    const L3: usize = ethernet::HEADER_LEN;
    if frame.len() < L3 + Ipv4Packet::<&[u8]>::MIN_HEADER_LEN {
        return Err(GsoError::Malformed);
    }
    let gso = vnet.gso_type & !GSO_ECN;
    let (v6, l4, proto) = match EthernetFrame::new_unchecked(frame).ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_unchecked(&frame[L3..]);
            let ihl = ip.header_len();
            if ihl < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN || frame.len() < L3 + ihl {
                return Err(GsoError::Malformed);
            }
            (false, L3 + ihl, ip.protocol())
        }
        EtherType::IPV6 => {
            if frame.len() < L3 + ipv6::HEADER_LEN {
                return Err(GsoError::Malformed);
            }
            // No extension headers: the next header must be the transport.
            (
                true,
                L3 + ipv6::HEADER_LEN,
                IpProtocol(frame[L3 + ipv6::NEXT_HEADER]),
            )
        }
        _ => return Err(GsoError::Unsupported),
    };
    let (tcp, l4len) = match (gso, proto) {
        (GSO_TCPV4 | GSO_TCPV6, IpProtocol::TCP) => {
            let tcp = TcpPacket::new_checked(&frame[l4..]).map_err(|_| GsoError::Malformed)?;
            (true, tcp.header_len())
        }
        (GSO_UDP_L4, IpProtocol::UDP) => {
            UdpPacket::new_checked(&frame[l4..]).map_err(|_| GsoError::Malformed)?;
            (false, UdpPacket::<&[u8]>::HEADER_LEN)
        }
        _ => return Err(GsoError::Unsupported),
    };
    Ok(Layout {
        v6,
        l3: L3,
        l4,
        payload: l4 + l4len,
        tcp,
    })
}

/// Cuts `frame` (an Ethernet super-frame described by `vnet`) into segments, building
/// each in `scratch` (which must hold headers + `gso_size` bytes) and handing it to
/// `emit`. Returns the number of segments.
pub fn segment<E>(
    frame: &[u8],
    vnet: &VirtioNetHdr,
    scratch: &mut [u8],
    mut emit: E,
) -> Result<usize, GsoError>
where
    E: FnMut(&[u8]),
{
    let mss = usize::from(vnet.gso_size);
    if mss == 0 {
        return Err(GsoError::ZeroSize);
    }
    let lay = layout(frame, vnet)?;
    let hdr = lay.payload;
    let payload = &frame[hdr..];
    if scratch.len() < hdr + mss {
        return Err(GsoError::Malformed);
    }
    let n = payload.len().div_ceil(mss).max(1);
    let (seq0, flags0) = if lay.tcp {
        let tcp = TcpPacket::new_unchecked(&frame[lay.l4..]);
        (tcp.seq_number(), tcp.flags())
    } else {
        (0, TcpFlags::default())
    };
    let id0 = if lay.v6 {
        0
    } else {
        Ipv4Packet::new_unchecked(&frame[lay.l3..]).ident()
    };
    let proto = if lay.tcp {
        IpProtocol::TCP
    } else {
        IpProtocol::UDP
    };
    for k in 0..n {
        let off = k * mss;
        let chunk = &payload[off.min(payload.len())..(off + mss).min(payload.len())];
        let len = hdr + chunk.len();
        let seg = &mut scratch[..len];
        seg[..hdr].copy_from_slice(&frame[..hdr]);
        seg[hdr..].copy_from_slice(chunk);
        let l4len = (len - lay.l4) as u16;
        // Network header, and the pseudo-header sum of the transport checksum.
        let pseudo = if lay.v6 {
            let ip = &mut seg[lay.l3..lay.l4];
            set_u16(ip, ipv6::PAYLOAD_LEN, l4len);
            checksum::sum(0, &ip[ipv6::ADDRESSES]) + u64::from(proto.0) + u64::from(l4len)
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut seg[lay.l3..]);
            ip.set_total_len((len - lay.l3) as u16);
            ip.set_ident(id0.wrapping_add(k as u16));
            ip.fill_checksum();
            checksum::pseudo_header_sum(ip.src(), ip.dst(), proto, l4len)
        };
        // Transport header: the checksum of each segment is computed in full.
        let l4 = &mut seg[lay.l4..];
        if lay.tcp {
            let mut flags = flags0;
            if k + 1 < n {
                // FIN and PSH belong to the last segment only...
                flags = flags.without(TcpFlags::FIN | TcpFlags::PSH);
            }
            if k > 0 {
                // ... and CWR to the first.
                flags = flags.without(TcpFlags::CWR);
            }
            let mut tcp = TcpPacket::new_unchecked(&mut *l4);
            tcp.set_seq_number(seq0.wrapping_add(off as u32));
            tcp.set_flags(flags);
            tcp.set_checksum(0);
            let c = !checksum::fold(checksum::sum(pseudo, l4));
            TcpPacket::new_unchecked(l4).set_checksum(c);
        } else {
            let mut udp = UdpPacket::new_unchecked(&mut *l4);
            udp.set_len(l4len);
            udp.set_checksum(0);
            let c = !checksum::fold(checksum::sum(pseudo, l4));
            // A computed zero is sent as 0xffff: zero means "no checksum" (RFC 768).
            UdpPacket::new_unchecked(l4).set_checksum(if c == 0 { 0xffff } else { c });
        }
        emit(seg);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::virtio_net::F_NEEDS_CSUM;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + 7) as u8).collect()
    }

    fn vnet(gso_type: u8, mss: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            gso_size: mss,
            ..Default::default()
        }
    }

    fn cut(frame: &[u8], v: &VirtioNetHdr) -> Vec<Vec<u8>> {
        let mut scratch = vec![0u8; 70_000];
        let mut segs = Vec::new();
        let n = segment(frame, v, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, segs.len());
        segs
    }

    #[test]
    fn tcp4_super_frame_becomes_valid_segments() {
        let data = payload(5000);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1_000_000, 64000)
            .ack(7)
            .psh()
            .fin()
            .write(&mut frame, &data)
            .unwrap();
        let segs = cut(&frame, &vnet(GSO_TCPV4, 1448));
        assert_eq!(segs.len(), 4, "5000 bytes at 1448 a segment");
        let mut got = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!()
            };
            let h = ip.header().to_header();
            assert_eq!(h.calc_header_checksum(), h.header_checksum);
            assert_eq!(h.identification, k as u16, "IP id +1 a segment");
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!()
            };
            assert_eq!(
                t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(),
                t.checksum()
            );
            assert_eq!(t.sequence_number(), 1_000_000 + (k * 1448) as u32);
            assert_eq!(t.fin(), k == 3, "FIN on the last only");
            assert_eq!(t.psh(), k == 3);
            assert!(t.ack());
            assert!(t.payload().len() <= 1448);
            got.extend_from_slice(t.payload());
        }
        assert_eq!(got, data, "the payload, in order, whole");
    }

    #[test]
    fn udp_gso_becomes_datagrams() {
        let data = payload(3000);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 6000)
            .write(&mut frame, &data)
            .unwrap();
        let segs = cut(&frame, &vnet(GSO_UDP_L4, 1000));
        assert_eq!(segs.len(), 3);
        for (k, s) in segs.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!()
            };
            let h = ip.header().to_header();
            let Some(TransportSlice::Udp(u)) = &p.transport else {
                panic!()
            };
            assert_eq!(u.length() as usize, 8 + 1000);
            assert_eq!(
                u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap(),
                u.checksum()
            );
            assert_eq!(u.payload(), &data[k * 1000..(k + 1) * 1000]);
        }
    }

    #[test]
    fn tcp6_super_frame_becomes_valid_segments() {
        let data = payload(3000);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1, 2, 5, 1000)
            .write(&mut frame, &data)
            .unwrap();
        let segs = cut(&frame, &vnet(GSO_TCPV6, 1400));
        assert_eq!(segs.len(), 3);
        let mut got = Vec::new();
        for s in &segs {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
                panic!()
            };
            let h = ip.header().to_header();
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!()
            };
            assert_eq!(
                t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap(),
                t.checksum()
            );
            got.extend_from_slice(t.payload());
        }
        assert_eq!(got, data);
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut frame, &payload(100))
            .unwrap();
        let mut scratch = vec![0u8; 2000];
        assert_eq!(
            segment(&frame, &vnet(GSO_TCPV4, 100), &mut scratch, |_| {}),
            Err(GsoError::Unsupported)
        );
        assert_eq!(
            segment(&frame, &vnet(GSO_UDP_L4, 0), &mut scratch, |_| {}),
            Err(GsoError::ZeroSize)
        );
        assert!(segment(&frame[..30], &vnet(GSO_UDP_L4, 10), &mut scratch, |_| {}).is_err());
    }
}
