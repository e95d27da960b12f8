//! Stage `ip4-input`: the checks of an IPv4 packet sent to a gateway MAC.
//!
//! It validates the header as RFC 1812 section 5.2.2 asks of a router before anything
//! trusts it: version 4, header length at least 20 bytes, total length covering the
//! header and within the frame, header checksum correct. It refuses to route what no
//! router routes: martian sources (0/8, 127/8, multicast, broadcast) and broadcast or
//! multicast destinations (RFC 1812 5.3.7, 5.3.5). On a network with `rp_filter` (the
//! default) it validates the source as the kernel's strict reverse-path filter does
//! (RFC 3704 2.2): the route back to the source must lead out of the network the
//! packet came from, so an endpoint cannot borrow another network's addresses and
//! have the answers — or a masqueraded flow's replies — delivered there.
//!
//! Once the header is valid it records where the transport header starts
//! (`Frame::l4`); no later stage checks the IPv4 header again.
//!
//! Next: `ct-lookup`, or drop. Trace: `ip4-input: 10.1.0.2 > 10.2.0.3 udp ttl 64 len 36`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline, RouteOrigin};
use crate::wire::{IpProtocol, Ipv4Packet, WireError};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "ip4-input";

counted! {
    /// Why ip4-input drops a packet.
    pub enum Drop: DropReason in NAME {
        Ip4Malformed => ("ip4_malformed", "IPv4 header invalid (version, IHL or lengths)"),
        Ip4BadChecksum => ("ip4_bad_checksum", "IPv4 header checksum wrong"),
        MartianSource => ("martian_source", "source address not valid for forwarding (0/8, 127/8, multicast, broadcast)"),
        NotRouted => ("not_routed", "broadcast or multicast destination is not routed"),
        SpoofedSource => ("spoofed_source", "source address not reachable back through the network it came from (strict reverse path)"),
    }
}

/// Where a packet goes from ip4-input.
pub enum Next {
    /// Valid: connection tracking looks at it before routing.
    CtLookup,
    Drop(DropReason),
}

/// What ip4-input says about a packet.
pub enum Trace<'a> {
    Invalid(WireError),
    BadChecksum(u16),
    Packet {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        ttl: u8,
        len: usize,
    },
    Martian(Ipv4Addr),
    NotRouted(Ipv4Addr),
    Spoofed {
        src: Ipv4Addr,
        network: &'a str,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Invalid(e) => write!(f, "invalid IPv4 header ({e}): drop"),
            Trace::BadChecksum(c) => write!(f, "header checksum 0x{c:04x} is wrong: drop"),
            Trace::Packet {
                src,
                dst,
                protocol,
                ttl,
                len,
            } => write!(f, "{src} > {dst} {protocol} ttl {ttl} len {len}"),
            Trace::Martian(src) => write!(f, "martian source {src}: drop"),
            Trace::NotRouted(dst) => {
                write!(f, "{dst} is a broadcast or multicast address: not routed")
            }
            Trace::Spoofed { src, network } => write!(
                f,
                "source {src} is not reachable back through network {network} (reverse path): drop"
            ),
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

/// A source no router forwards from (RFC 1812 5.3.7).
fn martian(src: Ipv4Addr) -> bool {
    src.octets()[0] == 0 || src.is_loopback() || src.is_multicast() || src.is_broadcast()
}

impl Pipeline {
    pub(crate) fn ip4_input(&mut self, f: &mut Frame, l2: &L2) -> Next {
        let ip = match Ipv4Packet::new_checked(f.network()) {
            Ok(ip) => ip,
            Err(e) => {
                trace!(self, f, Trace::Invalid(e));
                return Next::Drop(Drop::Ip4Malformed.into());
            }
        };
        if !ip.checksum_ok() {
            trace!(self, f, Trace::BadChecksum(ip.header_checksum()));
            return Next::Drop(Drop::Ip4BadChecksum.into());
        }
        let (src, dst, hlen) = (ip.src(), ip.dst(), ip.header_len());
        trace!(
            self,
            f,
            Trace::Packet {
                src,
                dst,
                protocol: ip.protocol(),
                ttl: ip.ttl(),
                len: ip.total_len(),
            }
        );
        // Valid: from here on the header is read through views on the offsets.
        f.l4 = f.l3 + hlen as u16;
        if martian(src) {
            trace!(self, f, Trace::Martian(src));
            return Next::Drop(Drop::MartianSource.into());
        }
        let subnet = self.sh.domains[l2.domain.index()].spec.subnet;
        if dst.is_broadcast() || dst.is_multicast() || dst == subnet.broadcast() {
            trace!(self, f, Trace::NotRouted(dst));
            return Next::Drop(Drop::NotRouted.into());
        }
        if self.sh.domains[l2.domain.index()].spec.guard.rp_filter && !self.source_valid(src, l2) {
            trace!(
                self,
                f,
                Trace::Spoofed {
                    src,
                    network: &self.sh.domains[l2.domain.index()].spec.name,
                }
            );
            return Next::Drop(Drop::SpoofedSource.into());
        }
        Next::CtLookup
    }

    /// Strict reverse path (RFC 3704 section 2.2, the kernel's `rp_filter = 1`): the
    /// route back to `src` leaves through the network the packet came in on —
    /// its connected subnet, or a static route via a router on it — and `src` is
    /// not one of switchyard's own addresses.
    fn source_valid(&self, src: Ipv4Addr, l2: &L2) -> bool {
        let Some(route) = self.sh.fib.lookup(src) else {
            return false;
        };
        if route.next_hop.domain() != l2.domain {
            return false;
        }
        // The one address of switchyard's on a connected subnet is its gateway, so the
        // common case needs no table lookup; a static route (a /32 to another
        // network's gateway, say) needs the full check.
        match route.origin {
            RouteOrigin::Connected => self.sh.domains[l2.domain.index()]
                .spec
                .gateway
                .is_none_or(|g| g.ip != src),
            RouteOrigin::Static => !self.sh.local.contains_key(&u32::from(src)),
        }
    }
}
