//! Stage `ip4-forward`: the decision to route a packet that came in on one network
//! towards its destination, and the route itself.
//!
//! In order, as RFC 1812 section 5.2 lists a router's duties:
//! 1. TTL: a packet with TTL ≤ 1 is not forwarded; ICMP time exceeded goes back
//!    (RFC 1812 5.3.1).
//! 2. Lookup: longest-prefix match in the FIB; no route → ICMP net unreachable. The
//!    lookup keeps VPP's name for it, `ip4-lookup`, in counters and traces.
//! 3. Isolation: between two different networks only if an `[[allow]]` rule joins
//!    them (dropped silently otherwise, like Docker's isolation rules). Tracked flows
//!    (replies to masqueraded flows, published ports) and new flows about to be
//!    masqueraded pass. On a network with `icc = false`, a packet routed back into
//!    the network it came from (one endpoint to another through the gateway) is
//!    dropped (`icc_disabled`, declared by `l2-forward`) unless it belongs to a
//!    tracked flow or is being translated to a published port (hairpin NAT), which
//!    Docker lets through as well (its userland proxy connects from the gateway).
//! 4. MTU: over the egress MTU with DF set → ICMP fragmentation needed, carrying the
//!    next-hop MTU (this is what makes path MTU discovery work, RFC 1191); without DF
//!    the packet is fragmented on output. A super-frame leaves as segments, and it is
//!    each segment that must fit.
//! 5. TTL is decremented (checksum patched incrementally, RFC 1624) and the packet
//!    counted as routed — before masquerade decides its source, as the kernel's
//!    FORWARD hook comes before POSTROUTING.
//!
//! Next: `nat-snat` (a new flow to masquerade), `ip4-neighbor`, `icmp-error` (then
//! drop), or drop. Trace:
//! `ip4-lookup: 10.2.0.2 matches 10.2.0.0/24 (connected, network back)`,
//! `ip4-forward: TTL 1 would expire: drop, time exceeded to 10.1.0.2`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::{Hop, L2};
use crate::pipeline::stages::icmp_error::IcmpError;
use crate::pipeline::stages::l2_forward;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, NextHop, Pipeline};
use crate::wire::icmp::{code, kind};
use crate::wire::{gso, Ipv4Cidr};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "ip4-forward";
/// The name the FIB lookup step reports under.
pub const LOOKUP: &str = "ip4-lookup";

counted! {
    /// Why ip4-forward drops a packet.
    pub enum Drop: DropReason in NAME {
        TtlExpired => ("ttl_expired", "TTL expired in transit"),
        NoRoute in LOOKUP => ("no_route", "no route to the destination"),
        Isolated => ("isolated", "networks not joined by an [[allow]] rule"),
        FragNeeded => ("frag_needed", "over the egress MTU with Don't Fragment set"),
    }
}

counted! {
    /// What ip4-forward counts.
    pub enum Event: Event in NAME {
        Routed => ("routed", "packets routed between or within networks"),
    }
}

/// Where a packet goes from ip4-forward.
pub enum Next {
    /// A new flow leaving by the external network from a masquerading one.
    NatSnat(Hop),
    Ip4Neighbor(Hop),
    /// Not forwarded: an error goes back to the sender, then the packet is dropped.
    IcmpError {
        error: IcmpError,
        then: DropReason,
    },
    Drop(DropReason),
}

/// What ip4-forward says about a packet.
pub enum Trace<'a> {
    TtlExpired {
        ttl: u8,
        to: Ipv4Addr,
    },
    Route {
        dst: Ipv4Addr,
        prefix: Ipv4Cidr,
        next_hop: NextHop,
        network: &'a str,
    },
    NoRoute(Ipv4Addr),
    Isolated {
        from: &'a str,
        to: &'a str,
    },
    IccDisabled {
        network: &'a str,
    },
    FragNeeded {
        len: usize,
        mtu: usize,
        network: &'a str,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::TtlExpired { ttl, to } => {
                write!(f, "TTL {ttl} would expire: drop, time exceeded to {to}")
            }
            Trace::Route {
                dst,
                prefix,
                next_hop,
                network,
            } => {
                write!(f, "{dst} matches {prefix} (")?;
                match next_hop {
                    NextHop::Connected { .. } => f.write_str("connected")?,
                    NextHop::Via { gateway, .. } => write!(f, "via {gateway}")?,
                }
                write!(f, ", network {network})")
            }
            Trace::NoRoute(dst) => write!(f, "no route to {dst}: drop, net unreachable"),
            Trace::Isolated { from, to } => write!(
                f,
                "networks {from} and {to} are not joined by [[allow]]: drop"
            ),
            Trace::IccDisabled { network } => write!(
                f,
                "routed back into network {network}, where icc is off: drop"
            ),
            Trace::FragNeeded { len, mtu, network } => write!(
                f,
                "{len} bytes over MTU {mtu} of {network} with DF: drop, fragmentation needed"
            ),
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        match self {
            Trace::Route { .. } | Trace::NoRoute(_) => LOOKUP,
            _ => NAME,
        }
    }
}

impl Pipeline {
    /// Routes the packet in `f` towards `dst`: its header's destination, or where
    /// connection tracking says it goes.
    pub(crate) fn ip4_forward(&mut self, f: &mut Frame, l2: &L2, dst: Ipv4Addr) -> Next {
        // A routed packet leaves in a frame of the router's making: its VLAN tag, if
        // it gets one, has priority 0, as a Linux VLAN device's default egress map
        // gives; the priority of the tag it came with stays on its own link.
        f.vlan_prio = 0;
        let ip = f.ipv4();
        let (ttl, total, df) = (ip.ttl(), ip.total_len(), ip.dont_fragment());

        if ttl <= 1 {
            trace!(self, f, Trace::TtlExpired { ttl, to: ip.src() });
            return Next::IcmpError {
                error: IcmpError::new(kind::TIME_EXCEEDED, 0),
                then: Drop::TtlExpired.into(),
            };
        }
        let Some(route) = self.sh.fib.lookup(dst).copied() else {
            trace!(self, f, Trace::NoRoute(dst));
            return Next::IcmpError {
                error: IcmpError::new(kind::DEST_UNREACHABLE, code::NET_UNREACHABLE),
                then: Drop::NoRoute.into(),
            };
        };
        let egress = route.next_hop.domain();
        trace!(
            self,
            f,
            Trace::Route {
                dst,
                prefix: route.prefix,
                next_hop: route.next_hop,
                network: &self.sh.domains[egress.index()].spec.name,
            }
        );
        let masquerading = f.ct.is_none()
            && Some(egress) == self.sh.external
            && egress != l2.domain
            && self.sh.domains[l2.domain.index()].spec.masquerade;
        if f.ct.is_none() && !masquerading && !self.allowed(l2.domain, egress) {
            trace!(
                self,
                f,
                Trace::Isolated {
                    from: &self.sh.domains[l2.domain.index()].spec.name,
                    to: &self.sh.domains[egress.index()].spec.name,
                }
            );
            return Next::Drop(Drop::Isolated.into());
        }
        // A new flow to a published port is routed to `dst`, its target, not to the
        // header's destination (the uplink address): that one may hairpin.
        if egress == l2.domain
            && !self.sh.domains[egress.index()].spec.guard.icc
            && f.ct.is_none()
            && dst == f.ipv4().dst()
        {
            trace!(
                self,
                f,
                Trace::IccDisabled {
                    network: &self.sh.domains[egress.index()].spec.name,
                }
            );
            return Next::Drop(l2_forward::Drop::IccDisabled.into());
        }
        let mtu = usize::from(self.sh.domains[egress.index()].spec.mtu);
        let len = if f.vnet.is_gso() {
            gso::segment_network_len(f.data(), &f.vnet).unwrap_or(total)
        } else {
            total
        };
        if len > mtu && df {
            trace!(
                self,
                f,
                Trace::FragNeeded {
                    len,
                    mtu,
                    network: &self.sh.domains[egress.index()].spec.name,
                }
            );
            return Next::IcmpError {
                error: IcmpError::frag_needed(mtu as u16),
                then: Drop::FragNeeded.into(),
            };
        }
        f.ipv4_mut().set_ttl(ttl - 1);
        self.counters.event(Event::Routed);
        let hop = Hop {
            ip: route.next_hop.neighbor(dst),
            domain: egress,
        };
        if masquerading {
            Next::NatSnat(hop)
        } else {
            Next::Ip4Neighbor(hop)
        }
    }
}
