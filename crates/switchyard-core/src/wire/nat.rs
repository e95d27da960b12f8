//! Rewriting addresses and ports in place, with every checksum kept right — the byte
//! work of NAT.
//!
//! Which checksums a rewrite touches:
//! * the IPv4 header checksum, for an address (RFC 1624 incremental update);
//! * the TCP or UDP checksum, for an address (it is in the pseudo-header) and for a
//!   port. A UDP checksum of zero means "none" and stays zero; a computed zero is sent
//!   as 0xffff (RFC 768);
//! * with checksum offload (`partial`: virtio-net `NEEDS_CSUM`) the TCP/UDP field holds
//!   only the pseudo-header sum, not complemented: an address change updates it the
//!   same way but without the complement, and a port change does not touch it at all —
//!   ports are covered by the sum the receiver computes over the segment later;
//! * the ICMP checksum, for an echo identifier (ICMP has no pseudo-header, so
//!   addresses do not enter it).
//!
//! An ICMP error quotes the packet it is about; translating the error means
//! translating the quote too (its IP header, its ports) — see [`rewrite_icmp_error`].

use super::checksum::{update_partial_u32, update_u16, update_u32};
use super::icmp::{IcmpPacket, Quoted};
use super::ipv4::{IpProtocol, Ipv4Packet};
use super::tcp::{self, TcpPacket};
use super::udp::{self, UdpPacket};
use super::{get_u16, set_u16};
use std::net::Ipv4Addr;

/// The addresses and ports a packet should carry after NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub src: Ipv4Addr,
    /// Source port, or the ICMP echo identifier.
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// Why a packet could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("packet too short for its transport header")]
    Truncated,
}

/// How a TCP or UDP checksum follows a change of address or port.
#[derive(Debug, Clone, Copy)]
struct TransportChecksum {
    /// UDP: zero means "no checksum" and stays so; a computed zero is sent as 0xffff.
    udp: bool,
    /// The field holds a partial (pseudo-header) sum, not a complemented checksum.
    partial: bool,
}

impl TransportChecksum {
    /// The checksum after a pseudo-header address changed from `old` to `new`.
    fn after_address(self, c: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
        if old == new || (self.udp && c == 0 && !self.partial) {
            return c;
        }
        if self.partial {
            return update_partial_u32(c, u32::from(old), u32::from(new));
        }
        self.not_zero(update_u32(c, u32::from(old), u32::from(new)))
    }

    /// The checksum after a port changed from `old` to `new`. A partial sum covers
    /// only the pseudo-header, and ports are not in it.
    fn after_port(self, c: u16, old: u16, new: u16) -> u16 {
        if old == new || self.partial || (self.udp && c == 0) {
            return c;
        }
        self.not_zero(update_u16(c, old, new))
    }

    fn not_zero(self, c: u16) -> u16 {
        if self.udp && c == 0 {
            0xffff
        } else {
            c
        }
    }

    /// The checksum after a whole flow's addresses and ports changed.
    fn after(self, c: u16, from: Endpoints, to: Endpoints) -> u16 {
        let c = self.after_address(c, from.src, to.src);
        let c = self.after_address(c, from.dst, to.dst);
        let c = self.after_port(c, from.sport, to.sport);
        self.after_port(c, from.dport, to.dport)
    }
}

/// Rewrites the IPv4 packet `ip` (not a fragment after the first) to carry `to`.
/// `partial`: the TCP/UDP checksum is a partial (pseudo-header) sum.
pub fn rewrite<T: AsRef<[u8]> + AsMut<[u8]>>(
    ip: &mut Ipv4Packet<T>,
    to: Endpoints,
    partial: bool,
) -> Result<(), RewriteError> {
    let (old_src, old_dst) = (ip.src(), ip.dst());
    // The header checksum is patched by the address setters.
    ip.set_src(to.src);
    ip.set_dst(to.dst);
    let protocol = ip.protocol();
    let l4 = ip.payload_mut();
    match protocol {
        IpProtocol::TCP => {
            let mut tcp = TcpPacket::new_checked(l4).map_err(|_| RewriteError::Truncated)?;
            let from = Endpoints {
                src: old_src,
                sport: tcp.src_port(),
                dst: old_dst,
                dport: tcp.dst_port(),
            };
            let sum = TransportChecksum {
                udp: false,
                partial,
            };
            tcp.set_checksum(sum.after(tcp.checksum(), from, to));
            tcp.set_src_port(to.sport);
            tcp.set_dst_port(to.dport);
        }
        IpProtocol::UDP => {
            let mut udp = UdpPacket::new_checked(l4).map_err(|_| RewriteError::Truncated)?;
            let from = Endpoints {
                src: old_src,
                sport: udp.src_port(),
                dst: old_dst,
                dport: udp.dst_port(),
            };
            let sum = TransportChecksum { udp: true, partial };
            udp.set_checksum(sum.after(udp.checksum(), from, to));
            udp.set_src_port(to.sport);
            udp.set_dst_port(to.dport);
        }
        IpProtocol::ICMP => {
            let mut icmp = IcmpPacket::new_checked(l4).map_err(|_| RewriteError::Truncated)?;
            // Echo request/reply: the identifier stands in for a port. ICMP has no
            // pseudo-header, so the addresses do not enter its checksum.
            if icmp.is_echo() {
                set_echo_ident(&mut icmp, to.sport);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Sets an echo's identifier, patching the ICMP checksum.
fn set_echo_ident<T: AsRef<[u8]> + AsMut<[u8]>>(icmp: &mut IcmpPacket<T>, id: u16) {
    let old = icmp.echo_ident();
    if old != id {
        icmp.set_echo_ident(id);
        icmp.set_checksum(update_u16(icmp.checksum(), old, id));
    }
}

/// Translates an ICMP error (the IPv4 packet `ip`): the outer addresses become
/// `outer_src`/`outer_dst`, and the quoted packet gets `inner`. The quote's transport
/// checksum is fixed when the quote is long enough to hold it; the quote's header
/// checksum and the ICMP checksum are recomputed (an error is at most 576 bytes).
pub fn rewrite_icmp_error<T: AsRef<[u8]> + AsMut<[u8]>>(
    ip: &mut Ipv4Packet<T>,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner: Endpoints,
) -> Result<(), RewriteError> {
    ip.set_src(outer_src);
    ip.set_dst(outer_dst);
    let mut icmp =
        IcmpPacket::new_checked(ip.payload_mut()).map_err(|_| RewriteError::Truncated)?;
    rewrite_quote(
        &mut icmp.quoted_mut().map_err(|_| RewriteError::Truncated)?,
        inner,
    );
    icmp.fill_checksum();
    Ok(())
}

/// Gives a quoted packet the addresses and ports `to`.
fn rewrite_quote(q: &mut Quoted<&mut [u8]>, to: Endpoints) {
    let (from_src, from_dst, protocol) = {
        let h = q.header();
        (h.src(), h.dst(), h.protocol())
    };
    {
        let mut h = q.header_mut();
        h.set_src(to.src);
        h.set_dst(to.dst);
        h.fill_checksum();
    }
    match protocol {
        IpProtocol::TCP | IpProtocol::UDP => {
            let from = Endpoints {
                src: from_src,
                sport: q.src_port(),
                dst: from_dst,
                dport: q.dst_port(),
            };
            q.set_src_port(to.sport);
            q.set_dst_port(to.dport);
            let udp = protocol == IpProtocol::UDP;
            // UDP's checksum is within the 8 quoted bytes; TCP's only in a longer quote.
            let at = if udp {
                udp::field::CHECKSUM
            } else {
                tcp::field::CHECKSUM
            };
            let l4 = q.transport_mut();
            if l4.len() >= at + 2 {
                let sum = TransportChecksum {
                    udp,
                    partial: false,
                };
                let c = sum.after(get_u16(l4, at), from, to);
                set_u16(l4, at, c);
            }
        }
        IpProtocol::ICMP => {
            if let Ok(mut echo) = IcmpPacket::new_checked(q.transport_mut()) {
                if echo.is_echo() {
                    set_echo_ident(&mut echo, to.sport);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use etherparse::icmpv4::DestUnreachableHeader;
    use etherparse::{Icmpv4Type, PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    fn build(
        proto: IpProtocol,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64);
        let mut v = Vec::new();
        match proto {
            IpProtocol::TCP => b
                .tcp(sport, dport, 1, 1000)
                .syn()
                .write(&mut v, payload)
                .unwrap(),
            IpProtocol::UDP => b.udp(sport, dport).write(&mut v, payload).unwrap(),
            _ => b
                .icmpv4_echo_request(sport, 1)
                .write(&mut v, payload)
                .unwrap(),
        }
        v
    }

    fn view(ip: &mut [u8]) -> Ipv4Packet<&mut [u8]> {
        Ipv4Packet::new_checked(ip).unwrap()
    }

    /// Verifies every checksum of an IPv4 packet by recomputing it with etherparse.
    fn all_checksums_ok(ip: &[u8]) -> bool {
        let p = SlicedPacket::from_ip(ip).unwrap();
        let Some(etherparse::NetSlice::Ipv4(v4)) = &p.net else {
            return false;
        };
        let h = v4.header().to_header();
        if h.calc_header_checksum() != h.header_checksum {
            return false;
        }
        match p.transport {
            Some(TransportSlice::Tcp(t)) => {
                t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap() == t.checksum()
            }
            Some(TransportSlice::Udp(u)) => {
                u.checksum() == 0
                    || u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap() == u.checksum()
            }
            Some(TransportSlice::Icmpv4(i)) => checksum::verify(i.slice()),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn rewrites_keep_every_checksum_valid(proto in prop_oneof![Just(IpProtocol::TCP), Just(IpProtocol::UDP), Just(IpProtocol::ICMP)],
                                               src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                               sport in any::<u16>(), dport in any::<u16>(),
                                               to in any::<([u8; 4], u16, [u8; 4], u16)>(),
                                               payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut ip = build(proto, src, sport, dst, dport, &payload);
            prop_assert!(all_checksums_ok(&ip));
            let e = Endpoints { src: to.0.into(), sport: to.1, dst: to.2.into(), dport: if proto == IpProtocol::ICMP { to.1 } else { to.3 } };
            rewrite(&mut view(&mut ip), e, false).unwrap();
            prop_assert!(all_checksums_ok(&ip));
            let v = view(&mut ip);
            prop_assert_eq!((v.src(), v.dst()), (e.src, e.dst));
        }

        /// With a partial checksum (offload), completing it after the rewrite gives the
        /// same result as a full checksum of the rewritten packet.
        #[test]
        fn partial_checksums_stay_partial_and_right(udp in any::<bool>(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                                     to in any::<([u8; 4], u16, [u8; 4], u16)>(),
                                                     payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let proto = if udp { IpProtocol::UDP } else { IpProtocol::TCP };
            let mut ip = build(proto, src, 1111, dst, 2222, &payload);
            let l4len = (ip.len() - 20) as u16;
            let offset = if udp { udp::field::CHECKSUM } else { tcp::field::CHECKSUM };
            // Turn the checksum into what a sender with offload leaves: the pseudo-header sum.
            let partial = checksum::fold(checksum::pseudo_header_sum(src.into(), dst.into(), proto, l4len));
            set_u16(&mut ip[20..], offset, partial);
            let e = Endpoints { src: to.0.into(), sport: to.1, dst: to.2.into(), dport: to.3 };
            rewrite(&mut view(&mut ip), e, true).unwrap();
            let want = checksum::fold(checksum::pseudo_header_sum(e.src, e.dst, proto, l4len));
            let got = get_u16(&ip[20..], offset);
            prop_assert!(got == want || (got == 0xffff && want == 0) || (got == 0 && want == 0xffff));
            prop_assert!(checksum::complete_partial(&mut ip, 20, offset));
            prop_assert!(all_checksums_ok(&ip));
        }
    }

    #[test]
    fn a_zero_udp_checksum_stays_zero() {
        let mut ip = build(IpProtocol::UDP, [10, 0, 0, 1], 5, [10, 0, 0, 2], 6, b"abc");
        UdpPacket::new_checked(&mut ip[20..])
            .unwrap()
            .set_checksum(0);
        rewrite(
            &mut view(&mut ip),
            Endpoints {
                src: [1, 2, 3, 4].into(),
                sport: 7,
                dst: [5, 6, 7, 8].into(),
                dport: 9,
            },
            false,
        )
        .unwrap();
        let udp = UdpPacket::new_checked(&ip[20..]).unwrap();
        assert_eq!((udp.checksum(), udp.src_port()), (0, 7));
    }

    #[test]
    fn a_truncated_transport_header_is_refused() {
        let mut ip = build(IpProtocol::TCP, [10, 0, 0, 1], 5, [10, 0, 0, 2], 6, b"");
        // Cut the TCP header to 19 bytes (and say so in the total length).
        ip.truncate(39);
        ip[2..4].copy_from_slice(&39u16.to_be_bytes());
        view(&mut ip).fill_checksum();
        let to = Endpoints {
            src: [1, 2, 3, 4].into(),
            sport: 7,
            dst: [5, 6, 7, 8].into(),
            dport: 9,
        };
        assert_eq!(
            rewrite(&mut view(&mut ip), to, false),
            Err(RewriteError::Truncated)
        );
    }

    #[test]
    fn icmp_error_quote_is_translated() {
        // A port unreachable from 198.51.100.2 to the uplink, quoting the SNAT'd packet.
        let inner = build(
            IpProtocol::UDP,
            [198, 51, 100, 1],
            40000,
            [198, 51, 100, 2],
            53,
            b"query",
        );
        let mut pkt = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 2], [198, 51, 100, 1], 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::Port,
            ))
            .write(&mut pkt, &inner)
            .unwrap();
        rewrite_icmp_error(
            &mut view(&mut pkt),
            [198, 51, 100, 2].into(),
            [172, 17, 0, 2].into(),
            Endpoints {
                src: [172, 17, 0, 2].into(),
                sport: 1234,
                dst: [198, 51, 100, 2].into(),
                dport: 53,
            },
        )
        .unwrap();
        assert!(all_checksums_ok(&pkt), "outer IP and ICMP checksums");
        let ip = view(&mut pkt);
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        let q = icmp.quoted().unwrap();
        assert_eq!(q.header().src(), Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(q.src_port(), 1234);
        assert!(
            all_checksums_ok(icmp.data()),
            "the quoted packet's checksums too"
        );
    }

    #[test]
    fn a_minimal_quote_of_tcp_gets_its_ports_translated() {
        // RFC 792's 8 bytes of a TCP segment: ports and sequence number, no checksum.
        let inner = build(
            IpProtocol::TCP,
            [198, 51, 100, 1],
            40000,
            [198, 51, 100, 2],
            80,
            b"",
        );
        let mut pkt = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 2], [198, 51, 100, 1], 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::Port,
            ))
            .write(&mut pkt, &inner[..28])
            .unwrap();
        let to = Endpoints {
            src: [172, 17, 0, 2].into(),
            sport: 1234,
            dst: [198, 51, 100, 2].into(),
            dport: 80,
        };
        rewrite_icmp_error(
            &mut view(&mut pkt),
            [198, 51, 100, 2].into(),
            [172, 17, 0, 2].into(),
            to,
        )
        .unwrap();
        assert!(all_checksums_ok(&pkt));
        let ip = view(&mut pkt);
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        let q = icmp.quoted().unwrap();
        assert_eq!(
            (q.header().src(), q.src_port(), q.dst_port()),
            (to.src, 1234, 80)
        );
        assert!(q.header().checksum_ok());
        assert_eq!(
            &q.transport()[4..8],
            &inner[24..28],
            "the sequence number is left alone"
        );
    }
}
