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

use super::checksum::{self, update_partial_u32, update_u16, update_u32};
use super::{get_ipv4, get_u16, set_ipv4, set_u16};
use std::net::Ipv4Addr;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

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

fn fix_l4_addr(l4: &mut [u8], at: usize, old: Ipv4Addr, new: Ipv4Addr, partial: bool, udp: bool) {
    if old == new {
        return;
    }
    let c = get_u16(l4, at);
    if udp && c == 0 && !partial {
        return;
    }
    let n = if partial {
        update_partial_u32(c, u32::from(old), u32::from(new))
    } else {
        let n = update_u32(c, u32::from(old), u32::from(new));
        if udp && n == 0 {
            0xffff
        } else {
            n
        }
    };
    set_u16(l4, at, n);
}

fn fix_l4_port(l4: &mut [u8], at: usize, field: usize, new: u16, partial: bool, udp: bool) {
    let old = get_u16(l4, field);
    if old == new {
        return;
    }
    set_u16(l4, field, new);
    if partial {
        return;
    }
    let c = get_u16(l4, at);
    if udp && c == 0 {
        return;
    }
    let mut n = update_u16(c, old, new);
    if udp && n == 0 {
        n = 0xffff;
    }
    set_u16(l4, at, n);
}

/// Rewrites the IPv4 packet `ip` (header and all, not a non-first fragment) to carry
/// `to`. `partial`: the TCP/UDP checksum is a partial (pseudo-header) sum.
pub fn rewrite(ip: &mut [u8], to: Endpoints, partial: bool) -> Result<(), RewriteError> {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    let (old_src, old_dst) = (get_ipv4(ip, 12), get_ipv4(ip, 16));
    let old_hdr_src = u32::from(old_src);
    let old_hdr_dst = u32::from(old_dst);
    // The header checksum first.
    let c = get_u16(ip, 10);
    let c = update_u32(c, old_hdr_src, u32::from(to.src));
    let c = update_u32(c, old_hdr_dst, u32::from(to.dst));
    set_u16(ip, 10, c);
    set_ipv4(ip, 12, to.src);
    set_ipv4(ip, 16, to.dst);
    let l4 = &mut ip[hl..];
    match proto {
        TCP | UDP => {
            let udp = proto == UDP;
            let at = if udp { 6 } else { 16 };
            if l4.len() < at + 2 {
                return Err(RewriteError::Truncated);
            }
            fix_l4_addr(l4, at, old_src, to.src, partial, udp);
            fix_l4_addr(l4, at, old_dst, to.dst, partial, udp);
            fix_l4_port(l4, at, 0, to.sport, partial, udp);
            fix_l4_port(l4, at, 2, to.dport, partial, udp);
        }
        ICMP => {
            if l4.len() < 8 {
                return Err(RewriteError::Truncated);
            }
            // Echo request/reply: the identifier stands in for a port.
            if matches!(l4[0], 0 | 8) {
                let old = get_u16(l4, 4);
                if old != to.sport {
                    set_u16(l4, 4, to.sport);
                    let c = update_u16(get_u16(l4, 2), old, to.sport);
                    set_u16(l4, 2, c);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Translates an ICMP error (the IPv4 packet `ip`): the outer addresses become
/// `outer_src`/`outer_dst`, and the quoted packet gets `inner`. The quote's transport
/// checksum is fixed when the quote is long enough to hold it; the quote's header
/// checksum and the ICMP checksum are recomputed (an error is at most 576 bytes).
pub fn rewrite_icmp_error(
    ip: &mut [u8],
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner: Endpoints,
) -> Result<(), RewriteError> {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(get_u16(ip, 2)).min(ip.len());
    let (s, d) = (u32::from(get_ipv4(ip, 12)), u32::from(get_ipv4(ip, 16)));
    let c = update_u32(get_u16(ip, 10), s, u32::from(outer_src));
    let c = update_u32(c, d, u32::from(outer_dst));
    set_u16(ip, 10, c);
    set_ipv4(ip, 12, outer_src);
    set_ipv4(ip, 16, outer_dst);

    let icmp = &mut ip[hl..total];
    if icmp.len() < 8 + 20 {
        return Err(RewriteError::Truncated);
    }
    let q = &mut icmp[8..];
    let qhl = usize::from(q[0] & 0x0f) * 4;
    if qhl < 20 || q.len() < qhl {
        return Err(RewriteError::Truncated);
    }
    let proto = q[9];
    let (old_src, old_dst) = (get_ipv4(q, 12), get_ipv4(q, 16));
    set_ipv4(q, 12, inner.src);
    set_ipv4(q, 16, inner.dst);
    set_u16(q, 10, 0);
    let qc = checksum::checksum(&q[..qhl]);
    set_u16(q, 10, qc);
    let l4 = &mut q[qhl..];
    match proto {
        TCP | UDP if l4.len() >= 4 => {
            let udp = proto == UDP;
            let at = if udp { 6 } else { 16 };
            let (old_sport, old_dport) = (get_u16(l4, 0), get_u16(l4, 2));
            set_u16(l4, 0, inner.sport);
            set_u16(l4, 2, inner.dport);
            if l4.len() >= at + 2 {
                // Fix the quoted transport checksum when the quote holds it.
                let c = get_u16(l4, at);
                if !(udp && c == 0) {
                    let mut c = update_u32(c, u32::from(old_src), u32::from(inner.src));
                    c = update_u32(c, u32::from(old_dst), u32::from(inner.dst));
                    c = update_u16(c, old_sport, inner.sport);
                    c = update_u16(c, old_dport, inner.dport);
                    set_u16(l4, at, c);
                }
            }
        }
        ICMP if l4.len() >= 8 && matches!(l4[0], 0 | 8) => {
            let old = get_u16(l4, 4);
            set_u16(l4, 4, inner.sport);
            let c = update_u16(get_u16(l4, 2), old, inner.sport);
            set_u16(l4, 2, c);
        }
        _ => {}
    }
    set_u16(icmp, 2, 0);
    let c = checksum::checksum(icmp);
    set_u16(icmp, 2, c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    fn build(
        proto: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64);
        let mut v = Vec::new();
        match proto {
            TCP => b
                .tcp(sport, dport, 1, 1000)
                .syn()
                .write(&mut v, payload)
                .unwrap(),
            UDP => b.udp(sport, dport).write(&mut v, payload).unwrap(),
            _ => b
                .icmpv4_echo_request(sport, 1)
                .write(&mut v, payload)
                .unwrap(),
        }
        v
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
        fn rewrites_keep_every_checksum_valid(proto in prop_oneof![Just(TCP), Just(UDP), Just(ICMP)],
                                               src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                               sport in any::<u16>(), dport in any::<u16>(),
                                               to in any::<([u8; 4], u16, [u8; 4], u16)>(),
                                               payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut ip = build(proto, src, sport, dst, dport, &payload);
            prop_assert!(all_checksums_ok(&ip));
            let e = Endpoints { src: to.0.into(), sport: to.1, dst: to.2.into(), dport: if proto == ICMP { to.1 } else { to.3 } };
            rewrite(&mut ip, e, false).unwrap();
            prop_assert!(all_checksums_ok(&ip));
            prop_assert_eq!(get_ipv4(&ip, 12), e.src);
            prop_assert_eq!(get_ipv4(&ip, 16), e.dst);
        }

        /// With a partial checksum (offload), completing it after the rewrite gives the
        /// same result as a full checksum of the rewritten packet.
        #[test]
        fn partial_checksums_stay_partial_and_right(udp in any::<bool>(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                                     to in any::<([u8; 4], u16, [u8; 4], u16)>(),
                                                     payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let proto = if udp { UDP } else { TCP };
            let mut ip = build(proto, src, 1111, dst, 2222, &payload);
            let l4len = ip.len() - 20;
            let at = 20 + if udp { 6 } else { 16 };
            // Turn the checksum into what a sender with offload leaves: the pseudo-header sum.
            let partial = checksum::fold(checksum::pseudo_header_sum(src, dst, proto, l4len as u16));
            ip[at..at + 2].copy_from_slice(&partial.to_be_bytes());
            let e = Endpoints { src: to.0.into(), sport: to.1, dst: to.2.into(), dport: to.3 };
            rewrite(&mut ip, e, true).unwrap();
            let want = checksum::fold(checksum::pseudo_header_sum(to.0, to.2, proto, l4len as u16));
            let got = get_u16(&ip, at);
            prop_assert!(got == want || (got == 0xffff && want == 0) || (got == 0 && want == 0xffff));
            prop_assert!(checksum::complete_partial(&mut ip, 20, at - 20));
            prop_assert!(all_checksums_ok(&ip));
        }
    }

    #[test]
    fn a_zero_udp_checksum_stays_zero() {
        let mut ip = build(UDP, [10, 0, 0, 1], 5, [10, 0, 0, 2], 6, b"abc");
        ip[26..28].fill(0);
        rewrite(
            &mut ip,
            Endpoints {
                src: [1, 2, 3, 4].into(),
                sport: 7,
                dst: [5, 6, 7, 8].into(),
                dport: 9,
            },
            false,
        )
        .unwrap();
        assert_eq!(&ip[26..28], &[0, 0]);
        assert_eq!(get_u16(&ip, 20), 7);
    }

    #[test]
    fn icmp_error_quote_is_translated() {
        // A port unreachable from 198.51.100.2 to the uplink, quoting the SNAT'd packet.
        let inner = build(
            UDP,
            [198, 51, 100, 1],
            40000,
            [198, 51, 100, 2],
            53,
            b"query",
        );
        let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner);
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = PacketBuilder::ipv4([198, 51, 100, 2], [198, 51, 100, 1], 64);
        let _ = &mut ip;
        let mut pkt = vec![0u8; 20];
        super::super::ipv4::write_header(
            &mut pkt,
            &super::super::ipv4::Ipv4Repr {
                src: [198, 51, 100, 2].into(),
                dst: [198, 51, 100, 1].into(),
                protocol: super::super::IpProtocol::ICMP,
                ttl: 64,
                ident: 1,
                dont_fragment: false,
                payload_len: icmp.len(),
            },
        );
        pkt.extend_from_slice(&icmp);
        rewrite_icmp_error(
            &mut pkt,
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
        let q = &pkt[28..];
        assert_eq!(get_ipv4(q, 12), Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(get_u16(q, 20), 1234);
        assert!(all_checksums_ok(q), "the quoted packet's checksums too");
    }
}
