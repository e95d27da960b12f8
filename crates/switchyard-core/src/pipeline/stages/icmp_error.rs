//! Stage `icmp-error`: the ICMP errors a router owes the sender of a packet it could
//! not deliver (RFC 792, RFC 1812 section 4.3), and the rules for when it must stay
//! silent.
//!
//! `ip4-forward` sends here a packet it will not forward (TTL expired, no route, too
//! big with DF), and `ip4-neighbor` a packet whose next hop never answered; the packet
//! is dropped for that reason once the error is made. The error goes back from the
//! gateway of the network the packet came from, out of the port it came in on.
//!
//! An error quotes the offending IP header and the start of its payload (RFC 1812
//! 4.3.2.3: as much as fits in 576 bytes), so the sender can match it to a socket.
//! It is never sent about (RFC 1122 3.2.2, RFC 1812 4.3.2.7):
//! * an ICMP error (no error storms),
//! * a fragment other than the first (the quote would be meaningless),
//! * a packet to a broadcast or multicast address, or sent as a link-layer broadcast,
//! * a packet whose source cannot be answered (0.0.0.0/8, 127/8, multicast, broadcast).
//!
//! Errors are rate-limited as Linux limits them: per destination a token bucket
//! allowing a burst of 6 and then one per second (`icmp_ratelimit` = 1000 ms,
//! `XRLIM_BURST_FACTOR` = 6), and over all destinations 1000 per second with a burst
//! of 50 (`icmp_msgs_per_sec`, `icmp_msgs_burst`) — both per network, the one the
//! error goes to, so that a network spending its budget (an endpoint spraying
//! packets that each earn an error) does not silence the errors another network is
//! owed. Suppressed errors are counted.
//!
//! Next: drop, for the reason the packet was sent here with. Trace:
//! `icmp-error: time exceeded from 10.1.0.1 to 10.1.0.2`

use crate::pipeline::counters::counted;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{
    lock, Action, DomainId, DropReason, Emitter, Frame, Pipeline, PortId, Timestamp, DEFAULT_TTL,
};
use crate::wire::ethernet::{self, write_header};
use crate::wire::icmp::{code, kind};
use crate::wire::ipv4::{write_header as write_ip, Ipv4Repr};
use crate::wire::{EtherType, IcmpPacket, IpProtocol, Ipv4Packet, MacAddr};
use hashbrown::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "icmp-error";

counted! {
    /// What icmp-error counts.
    pub enum Event: Event in NAME {
        IcmpTimeExceeded => ("icmp_time_exceeded", "ICMP time exceeded sent"),
        IcmpNetUnreachable => ("icmp_net_unreachable", "ICMP net unreachable sent"),
        IcmpHostUnreachable => ("icmp_host_unreachable", "ICMP host unreachable sent"),
        IcmpFragNeeded => ("icmp_frag_needed", "ICMP fragmentation needed sent"),
        IcmpRateLimited => ("icmp_rate_limited", "ICMP errors suppressed by the rate limit"),
    }
}

/// Where a packet goes from icmp-error: it was not delivered, and is dropped.
pub enum Next {
    Drop(DropReason),
}

/// What icmp-error says about the error it owes.
pub enum Trace {
    Silent(&'static str),
    RateLimited {
        what: &'static str,
        to: Ipv4Addr,
    },
    Sent {
        what: &'static str,
        from: Ipv4Addr,
        to: Ipv4Addr,
    },
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Silent(what) => write!(
                f,
                "no {what}: not sent about this packet (RFC 1812 4.3.2.7)"
            ),
            Trace::RateLimited { what, to } => {
                write!(f, "{what} to {to} suppressed by the rate limit")
            }
            Trace::Sent { what, from, to } => write!(f, "{what} from {from} to {to}"),
        }
    }
}

impl TraceLine for Trace {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    /// Sends the error `error` about the packet in `f` (which arrived on `domain`)
    /// back to its sender, unless the silence rules or the rate limit say no; the
    /// packet is dropped for `then`.
    pub(crate) fn icmp_error<const DRY: bool>(
        &mut self,
        f: &Frame,
        domain: DomainId,
        error: IcmpError,
        then: DropReason,
        out: &mut Emitter,
    ) -> Next {
        let ip = f.ipv4();
        let what = error.describe();
        if !may_answer(&ip, f.ethernet().dst()) {
            trace!(self, f, Trace::Silent(what));
            return Next::Drop(then);
        }
        let Some(gw) = self.sh.domains[domain.index()].spec.gateway else {
            return Next::Drop(then);
        };
        let to = ip.src();
        let allowed = if DRY {
            lock(&self.sh.icmp[domain.index()]).would_allow(to, self.now)
        } else {
            lock(&self.sh.icmp[domain.index()]).allow(to, self.now)
        };
        if !allowed {
            self.counters.event(Event::IcmpRateLimited);
            trace!(self, f, Trace::RateLimited { what, to });
            return Next::Drop(then);
        }
        let ident = self.next_ident();
        let Some(slot) = self.emit(out) else {
            return Next::Drop(then);
        };
        build(
            slot,
            f.ethernet().src(),
            ip,
            error,
            ErrorSource {
                ip: gw.ip,
                mac: gw.mac,
            },
            ident,
        );
        slot.ingress = PortId::LOCAL;
        slot.action = Action::Forward(f.ingress);
        // Back to the sender, behind the VTEP it came from (on an overlay network).
        slot.tunnel = f.tunnel;
        slot.trace = f.trace;
        self.counters.event(error.event());
        trace!(
            self,
            f,
            Trace::Sent {
                what,
                from: gw.ip,
                to,
            }
        );
        Next::Drop(then)
    }
}

/// Largest IP datagram an ICMP error may be (RFC 1812 4.3.2.3).
const MAX_ERROR_LEN: usize = 576;
/// The error's own IPv4 header (no options) and ICMP header.
const ERROR_HEADERS: usize = Ipv4Packet::<&[u8]>::MIN_HEADER_LEN + IcmpPacket::<&[u8]>::HEADER_LEN;

/// True if switchyard may send an ICMP error about `ip` (an IPv4 packet that arrived
/// in a frame with link-layer destination `l2_dst`).
pub fn may_answer<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>, l2_dst: MacAddr) -> bool {
    if l2_dst.is_multicast() || ip.frag_offset() != 0 {
        return false;
    }
    let (src, dst) = (ip.src(), ip.dst());
    if dst.is_broadcast() || dst.is_multicast() {
        return false;
    }
    if src.is_unspecified()
        || src.octets()[0] == 0
        || src.is_loopback()
        || src.is_multicast()
        || src.is_broadcast()
    {
        return false;
    }
    if ip.protocol() == IpProtocol::ICMP {
        // An error about an error is never sent; queries (echo) may be answered.
        match IcmpPacket::new_checked(ip.payload()) {
            Ok(icmp) => !icmp.is_error(),
            Err(_) => false,
        }
    } else {
        true
    }
}

/// An ICMP error to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    pub kind: u8,
    pub code: u8,
    /// The next-hop MTU, for "fragmentation needed" (RFC 1191); zero for the others.
    pub mtu: u16,
}

impl IcmpError {
    pub fn new(kind: u8, code: u8) -> IcmpError {
        IcmpError { kind, code, mtu: 0 }
    }

    /// Destination unreachable, fragmentation needed, with the next-hop MTU.
    pub fn frag_needed(mtu: u16) -> IcmpError {
        IcmpError {
            kind: kind::DEST_UNREACHABLE,
            code: code::FRAG_NEEDED,
            mtu,
        }
    }

    /// Its name, for trace lines.
    fn describe(self) -> &'static str {
        match (self.kind, self.code) {
            (kind::TIME_EXCEEDED, _) => "time exceeded",
            (kind::DEST_UNREACHABLE, code::NET_UNREACHABLE) => "net unreachable",
            (kind::DEST_UNREACHABLE, code::HOST_UNREACHABLE) => "host unreachable",
            (kind::DEST_UNREACHABLE, code::FRAG_NEEDED) => "fragmentation needed",
            (kind::DEST_UNREACHABLE, _) => "destination unreachable",
            _ => "error",
        }
    }

    /// The event that counts it once sent.
    fn event(self) -> Event {
        match (self.kind, self.code) {
            (kind::TIME_EXCEEDED, _) => Event::IcmpTimeExceeded,
            (_, code::FRAG_NEEDED) => Event::IcmpFragNeeded,
            (_, code::HOST_UNREACHABLE) => Event::IcmpHostUnreachable,
            _ => Event::IcmpNetUnreachable,
        }
    }
}

/// Who sends an error: one of switchyard's gateway addresses and its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSource {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// Builds, in `out`, the ICMP error `e` about the IPv4 packet `orig`: from `from`
/// back to the packet's sender, whose MAC is `sender_mac`.
pub fn build(
    out: &mut Frame,
    sender_mac: MacAddr,
    orig: Ipv4Packet<&[u8]>,
    e: IcmpError,
    from: ErrorSource,
    ident: u16,
) {
    let to = orig.src();
    let quote_len = orig.total_len().min(MAX_ERROR_LEN - ERROR_HEADERS);
    let quote = &orig.into_inner()[..quote_len];
    let icmp_len = IcmpPacket::<&[u8]>::HEADER_LEN + quote_len;
    out.set_len(ethernet::HEADER_LEN + ERROR_HEADERS + quote_len);
    let b = out.data_mut();
    write_header(b, sender_mac, from.mac, EtherType::IPV4);
    let ip = &mut b[ethernet::HEADER_LEN..];
    write_ip(
        ip,
        &Ipv4Repr {
            src: from.ip,
            dst: to,
            protocol: IpProtocol::ICMP,
            ttl: DEFAULT_TTL,
            ident,
            dont_fragment: false,
            payload_len: icmp_len,
        },
    );
    let mut ip = Ipv4Packet::new_unchecked(ip);
    let mut icmp = IcmpPacket::new_unchecked(ip.payload_mut());
    icmp.set_msg_type(e.kind);
    icmp.set_code(e.code);
    icmp.set_rest_of_header(0);
    icmp.set_next_hop_mtu(e.mtu);
    icmp.data_mut().copy_from_slice(quote);
    icmp.fill_checksum();
}

/// [`build`] about the IPv4 packet in an Ethernet frame given as bytes.
#[cfg(test)]
pub fn build_about_frame(
    out: &mut Frame,
    frame: &[u8],
    e: IcmpError,
    from: ErrorSource,
    ident: u16,
) {
    let sender = crate::wire::EthernetFrame::new_checked(frame)
        .unwrap()
        .src();
    let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
    build(out, sender, ip, e, from, ident);
}

/// A token bucket in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    last: u64,
}

impl Bucket {
    fn full(cap: u64, now: u64) -> Bucket {
        Bucket {
            tokens: cap,
            last: now,
        }
    }

    fn take(&mut self, now_ms: u64, cost: u64, cap: u64) -> bool {
        self.tokens = (self.tokens + now_ms.saturating_sub(self.last)).min(cap);
        self.last = now_ms;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// The kernel's ICMP rate limits, per destination and global.
#[derive(Debug)]
pub struct IcmpLimiter {
    per_dst: HashMap<u32, Bucket, foldhash::fast::RandomState>,
    max_dsts: usize,
    global: Bucket,
}

/// `icmp_ratelimit`: one error per destination per second...
const PER_DST_COST_MS: u64 = 1000;
/// ... after a burst of six (`XRLIM_BURST_FACTOR`).
const PER_DST_CAP_MS: u64 = 6 * PER_DST_COST_MS;
/// `icmp_msgs_per_sec` = 1000 (1 ms a message) with `icmp_msgs_burst` = 50.
const GLOBAL_CAP_MS: u64 = 50;

impl IcmpLimiter {
    pub fn new(max_dsts: usize) -> IcmpLimiter {
        IcmpLimiter {
            per_dst: HashMap::with_capacity_and_hasher(max_dsts, Default::default()),
            max_dsts,
            global: Bucket::full(GLOBAL_CAP_MS, 0),
        }
    }

    /// What [`IcmpLimiter::allow`] would answer now, charging nothing (for what-if
    /// traces).
    pub fn would_allow(&self, dst: Ipv4Addr, now: Timestamp) -> bool {
        let now_ms = now.0 / 1_000_000;
        let refill = |b: &Bucket, cap: u64| (b.tokens + now_ms.saturating_sub(b.last)).min(cap);
        let per_dst = match self.per_dst.get(&u32::from(dst)) {
            Some(b) => refill(b, PER_DST_CAP_MS),
            None => {
                let full = self.per_dst.len() >= self.max_dsts
                    && self
                        .per_dst
                        .values()
                        .filter(|b| b.tokens + now_ms.saturating_sub(b.last) < PER_DST_CAP_MS)
                        .count()
                        >= self.max_dsts;
                if full {
                    return false;
                }
                PER_DST_CAP_MS
            }
        };
        per_dst >= PER_DST_COST_MS && refill(&self.global, GLOBAL_CAP_MS) >= 1
    }

    /// True if an error to `dst` may be sent now (and charges for it).
    pub fn allow(&mut self, dst: Ipv4Addr, now: Timestamp) -> bool {
        let now_ms = now.0 / 1_000_000;
        if !self.per_dst.contains_key(&u32::from(dst)) && self.per_dst.len() >= self.max_dsts {
            // Forget destinations whose bucket has refilled: they are as good as new.
            self.per_dst
                .retain(|_, b| b.tokens + now_ms.saturating_sub(b.last) < PER_DST_CAP_MS);
            if self.per_dst.len() >= self.max_dsts {
                return false;
            }
        }
        let b = self
            .per_dst
            .entry(u32::from(dst))
            .or_insert(Bucket::full(PER_DST_CAP_MS, now_ms));
        if !b.take(now_ms, PER_DST_COST_MS, PER_DST_CAP_MS) {
            return false;
        }
        self.global.take(now_ms, 1, GLOBAL_CAP_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4(src, dst, 1)
            .udp(1000, 2000)
            .write(&mut v, &vec![7u8; payload])
            .unwrap();
        v
    }

    #[test]
    fn error_quotes_the_packet_and_checksums() {
        let orig = udp([10, 1, 0, 2], [10, 2, 0, 2], 1000);
        let mut out = Frame::new();
        build_about_frame(
            &mut out,
            &orig,
            IcmpError {
                kind: kind::TIME_EXCEEDED,
                code: 0,
                mtu: 0,
            },
            ErrorSource {
                ip: Ipv4Addr::new(10, 1, 0, 1),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
            },
            9,
        );
        let d = out.data();
        assert_eq!(d.len(), 14 + 576, "capped at 576 bytes of IP");
        assert_eq!(&d[0..6], &[2, 0, 0, 0, 0, 2], "back to the sender's MAC");
        let ip = Ipv4Packet::new_checked(&d[14..]).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(
            (ip.src(), ip.dst()),
            (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2))
        );
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(icmp.checksum_ok());
        assert_eq!(icmp.msg_type(), kind::TIME_EXCEEDED);
        assert_eq!(
            &ip.payload()[8..28],
            &orig[14..34],
            "the original IP header is quoted"
        );
    }

    #[test]
    fn frag_needed_carries_the_mtu() {
        let orig = udp([10, 1, 0, 2], [10, 2, 0, 2], 10);
        let mut out = Frame::new();
        build_about_frame(
            &mut out,
            &orig,
            IcmpError {
                kind: kind::DEST_UNREACHABLE,
                code: code::FRAG_NEEDED,
                mtu: 1280,
            },
            ErrorSource {
                ip: Ipv4Addr::new(10, 1, 0, 1),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
            },
            1,
        );
        let d = out.data();
        let ip = Ipv4Packet::new_checked(&d[14..]).unwrap();
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.next_hop_mtu(), 1280);
        assert_eq!(d.len(), 14 + 20 + 8 + 38, "a short packet is quoted whole");
    }

    #[test]
    fn silence_rules() {
        let ok = udp([10, 1, 0, 2], [10, 2, 0, 2], 10);
        let p = |b: &Vec<u8>| Ipv4Packet::new_checked(b[14..].to_vec()).unwrap();
        assert!(may_answer(&p(&ok), MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(
            !may_answer(&p(&ok), MacAddr::BROADCAST),
            "link-layer broadcast"
        );
        assert!(!may_answer(
            &p(&udp([10, 1, 0, 2], [255, 255, 255, 255], 10)),
            MacAddr([2, 0, 0, 0, 0, 1])
        ));
        assert!(!may_answer(
            &p(&udp([10, 1, 0, 2], [224, 0, 0, 1], 10)),
            MacAddr([2, 0, 0, 0, 0, 1])
        ));
        assert!(!may_answer(
            &p(&udp([0, 0, 0, 0], [10, 2, 0, 2], 10)),
            MacAddr([2, 0, 0, 0, 0, 1])
        ));
        let mut frag = ok.clone();
        frag[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 128 bytes
        assert!(
            !may_answer(&p(&frag), MacAddr([2, 0, 0, 0, 0, 1])),
            "not the first fragment"
        );
        // An ICMP error about an ICMP error: silence. About an echo request: fine.
        let mut err = Frame::new();
        build_about_frame(
            &mut err,
            &ok,
            IcmpError {
                kind: kind::TIME_EXCEEDED,
                code: 0,
                mtu: 0,
            },
            ErrorSource {
                ip: Ipv4Addr::new(10, 9, 0, 1),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
            },
            1,
        );
        assert!(!may_answer(
            &Ipv4Packet::new_checked(&err.data()[14..]).unwrap(),
            MacAddr([2, 0, 0, 0, 0, 1])
        ));
        let mut echo = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4([10, 1, 0, 2], [10, 2, 0, 2], 1)
            .icmpv4_echo_request(1, 1)
            .write(&mut echo, b"x")
            .unwrap();
        assert!(may_answer(&p(&echo), MacAddr([2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn rate_limit_like_the_kernel() {
        let mut l = IcmpLimiter::new(4);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let t = |ms| Timestamp::from_millis(ms);
        let burst = (0..10).filter(|_| l.allow(a, t(100_000))).count();
        assert_eq!(burst, 6, "a burst of six per destination");
        assert!(!l.allow(a, t(100_500)));
        assert!(l.allow(a, t(101_000)), "then one a second");
        // Another destination has its own bucket.
        assert!(l.allow(Ipv4Addr::new(10, 0, 0, 2), t(101_000)));
        // Global: 50 in a burst over many destinations.
        let mut g = IcmpLimiter::new(1000);
        let sent = (0..200u32)
            .filter(|i| g.allow(Ipv4Addr::from(0x0a00_0000 + i), t(5_000)))
            .count();
        assert_eq!(sent, 50);
    }
}
