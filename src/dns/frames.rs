//! Taking a punted frame apart, and building the frames that answer it.
//!
//! A punted frame is exactly what the endpoint sent: Ethernet, IPv4, UDP or TCP to port
//! 53. Its checksum may be *partial* — a namespace's kernel leaves the transport checksum
//! to the device when the TAP offers checksum offload (virtio-net `NEEDS_CSUM`) — so it is
//! completed here first, as a NIC would, and only then checked.
//!
//! Answers go back the way the query came: out of the port it came in by, to the MAC that
//! sent it, from the MAC and address it was sent to. An answer therefore reaches only the
//! one who asked — a query with a forged source address gets its answer sent to the
//! forger's own port, so the service cannot be used to send answers to someone else.

use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::SocketAddrV4;
use switchyard_core::pipeline::{DomainId, Frame, PortId, MAX_FRAME_LEN};
use switchyard_core::wire::checksum::complete_partial;

/// Ethernet header length (frames with VLAN tags are not served).
const ETH_LEN: usize = 14;
/// TTL of the packets switchyard sends from its own addresses.
const TTL: u8 = 64;

/// Where an answer goes back: the worker that punted the query, the port it came in
/// by (as the layout numbered it then), the querier's MAC and the MAC it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnPath {
    pub worker: usize,
    pub port: PortId,
    pub domain: DomainId,
    pub generation: u64,
    pub peer_mac: [u8; 6],
    pub our_mac: [u8; 6],
    /// The remote VTEP the query came through, when it came over an overlay
    /// network's tunnel: the answer goes back to it.
    pub tunnel: Option<std::net::Ipv4Addr>,
}

/// What a punted frame carries.
pub enum Segment<'a> {
    /// A UDP datagram: its payload is the DNS message.
    Udp {
        peer: SocketAddrV4,
        ours: SocketAddrV4,
        payload: &'a [u8],
    },
    /// A TCP segment, as the IPv4 packet that holds it (the TCP stack takes it whole).
    Tcp {
        peer: SocketAddrV4,
        ours: SocketAddrV4,
        packet: &'a [u8],
    },
}

/// Why a punted frame is not served (counted by the service as `bad_frames`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Not Ethernet + IPv4 + UDP/TCP, or cut short.
    Malformed,
    /// Carries VLAN tags (no network here is tagged).
    Tagged,
    /// The UDP checksum does not match.
    BadChecksum,
}

/// Completes a partial checksum, then reads the frame. `peer_mac`/`our_mac` come back
/// with the segment so the caller can make its [`ReturnPath`].
pub fn parse(f: &mut Frame) -> Result<([u8; 6], [u8; 6], Segment<'_>), Unfit> {
    if f.vnet.needs_csum() {
        let (start, offset) = (
            usize::from(f.vnet.csum_start),
            usize::from(f.vnet.csum_offset),
        );
        if !complete_partial(f.data_mut(), start, offset) {
            return Err(Unfit::Malformed);
        }
    }
    let data = f.data();
    let p = SlicedPacket::from_ethernet(data).map_err(|_| Unfit::Malformed)?;
    if !p.link_exts.is_empty() {
        return Err(Unfit::Tagged);
    }
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        return Err(Unfit::Malformed);
    };
    let (peer_mac, our_mac) = (eth.source(), eth.destination());
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return Err(Unfit::Malformed);
    };
    let h = ip.header();
    if ip.is_payload_fragmented() {
        return Err(Unfit::Malformed);
    }
    let (src, dst) = (h.source_addr(), h.destination_addr());
    match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let want = u
                    .to_header()
                    .calc_checksum_ipv4(&h.to_header(), u.payload())
                    .map_err(|_| Unfit::Malformed)?;
                if want != u.checksum() {
                    return Err(Unfit::BadChecksum);
                }
            }
            Ok((
                peer_mac,
                our_mac,
                Segment::Udp {
                    peer: SocketAddrV4::new(src, u.source_port()),
                    ours: SocketAddrV4::new(dst, u.destination_port()),
                    payload: u.payload(),
                },
            ))
        }
        Some(TransportSlice::Tcp(t)) => {
            let total = usize::from(h.total_len());
            let packet = data.get(ETH_LEN..ETH_LEN + total).ok_or(Unfit::Malformed)?;
            Ok((
                peer_mac,
                our_mac,
                Segment::Tcp {
                    peer: SocketAddrV4::new(src, t.source_port()),
                    ours: SocketAddrV4::new(dst, t.destination_port()),
                    packet,
                },
            ))
        }
        _ => Err(Unfit::Malformed),
    }
}

/// Makes `f` the UDP datagram `ours → peer` carrying `payload`, framed from our MAC to
/// the peer's. False if it would not fit a frame.
pub fn udp_reply(
    f: &mut Frame,
    path: &ReturnPath,
    ours: SocketAddrV4,
    peer: SocketAddrV4,
    payload: &[u8],
) -> bool {
    let b = PacketBuilder::ethernet2(path.our_mac, path.peer_mac)
        .ipv4(ours.ip().octets(), peer.ip().octets(), TTL)
        .udp(ours.port(), peer.port());
    let len = b.size(payload.len());
    if len > MAX_FRAME_LEN {
        return false;
    }
    f.reset(len);
    f.tunnel = path.tunnel;
    let mut w: &mut [u8] = f.data_mut();
    b.write(&mut w, payload).is_ok()
}

/// Makes `f` the Ethernet frame from our MAC to the peer's around the IPv4 `packet`.
pub fn ip_frame(f: &mut Frame, path: &ReturnPath, packet: &[u8]) -> bool {
    let len = ETH_LEN + packet.len();
    if len > MAX_FRAME_LEN {
        return false;
    }
    f.reset(len);
    f.tunnel = path.tunnel;
    let d = f.data_mut();
    d[..6].copy_from_slice(&path.peer_mac);
    d[6..12].copy_from_slice(&path.our_mac);
    d[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    d[ETH_LEN..].copy_from_slice(packet);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use switchyard_core::wire::virtio_net::F_NEEDS_CSUM;

    fn path() -> ReturnPath {
        ReturnPath {
            worker: 0,
            port: PortId(1),
            domain: DomainId(0),
            generation: 1,
            peer_mac: [2, 0, 0, 0, 0, 2],
            our_mac: [2, 0, 0, 0, 0, 1],
            tunnel: None,
        }
    }

    #[test]
    fn an_answer_built_here_reads_back_as_sent() {
        let mut f = Frame::new();
        let ours = SocketAddrV4::new([10, 1, 0, 1].into(), 53);
        let peer = SocketAddrV4::new([10, 1, 0, 2].into(), 40000);
        assert!(udp_reply(&mut f, &path(), ours, peer, b"answer"));
        // Seen from the other side: the peer's view swaps the roles.
        let (src_mac, dst_mac, seg) = parse(&mut f).unwrap();
        assert_eq!((src_mac, dst_mac), (path().our_mac, path().peer_mac));
        let Segment::Udp {
            peer: from,
            ours: to,
            payload,
        } = seg
        else {
            panic!("not UDP");
        };
        assert_eq!((from, to, payload), (ours, peer, &b"answer"[..]));
    }

    #[test]
    fn a_bad_udp_checksum_is_refused() {
        let mut f = Frame::new();
        let a = SocketAddrV4::new([10, 1, 0, 2].into(), 40000);
        let b = SocketAddrV4::new([10, 1, 0, 1].into(), 53);
        assert!(udp_reply(&mut f, &path(), a, b, b"query"));
        let n = f.len();
        f.data_mut()[n - 1] ^= 0xff;
        assert_eq!(parse(&mut f).err(), Some(Unfit::BadChecksum));
    }

    proptest! {
        /// Whatever an endpoint sends, with whatever offload header it claims, taking
        /// it apart neither panics nor reads past it.
        #[test]
        fn any_frame_is_taken_apart_or_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            head in proptest::collection::vec(any::<u8>(), 0..20),
            needs_csum in any::<bool>(),
            csum_start in any::<u16>(),
            csum_offset in any::<u16>(),
        ) {
            // Half the time a plausible Ethernet + IPv4 start, so parsing goes deep.
            let mut data = Vec::new();
            if head.len() % 2 == 0 {
                data.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x45]);
            }
            data.extend_from_slice(&bytes);
            let mut f = Frame::from_bytes(PortId(0), &data);
            if needs_csum {
                f.vnet.flags = F_NEEDS_CSUM;
                f.vnet.csum_start = csum_start;
                f.vnet.csum_offset = csum_offset;
            }
            let len = f.len();
            if let Ok((_, _, seg)) = parse(&mut f) {
                match seg {
                    Segment::Udp { payload, .. } => prop_assert!(payload.len() <= len),
                    Segment::Tcp { packet, .. } => prop_assert!(packet.len() <= len),
                }
            }
        }
    }
}
