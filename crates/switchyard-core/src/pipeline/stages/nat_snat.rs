//! Stage `nat-snat`: masquerade — a new flow from a network with `masquerade`, routed
//! out of the external network, leaves with switchyard's uplink address as its source,
//! as `iptables -t nat -A POSTROUTING -j MASQUERADE` makes Docker's containers leave
//! the host.
//!
//! `ip4-forward` sends here the packets that start such a flow (it knows the egress
//! network; see `ct-lookup` for the whole of NAT). The source port is kept when that
//! leaves the flow unique, as the kernel does; otherwise another is picked from
//! `nat_port_range`. The flow is tracked from here on; the bytes are rewritten on
//! output (`nat-rewrite`). Only what can be translated is: TCP (from a SYN), UDP and
//! ICMP echo requests — not fragments after the first (switchyard does not
//! reassemble, so it cannot see their ports) nor other protocols.
//!
//! Next: `ip4-neighbor`, or drop. Trace:
//! `nat-snat: new flow tcp 10.1.0.2:40000 > 198.51.100.2:80: masquerade as 198.51.100.1:40000`

use super::ct_lookup;
use crate::pipeline::conntrack::{starts_connection, PacketFlow, ProtoState, TcpState, Tuple};
use crate::pipeline::counters::counted;
use crate::pipeline::graph::{Hop, L2};
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline};
use crate::wire::icmp::kind;
use crate::wire::{IcmpPacket, IpProtocol};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "nat-snat";

counted! {
    /// Why nat-snat drops a packet.
    pub enum Drop: DropReason in NAME {
        NatExhausted => ("nat_exhausted", "no free source port for the translated flow"),
        NatFragment => ("nat_fragment", "fragment of a flow to translate (switchyard does not reassemble)"),
        NatUnsupported => ("nat_unsupported", "protocol that cannot be translated (only TCP, UDP, ICMP echo)"),
    }
}

counted! {
    /// What nat-snat counts.
    pub enum Event: Event in NAME {
        SnatFlows => ("snat_flows", "flows masqueraded to the uplink address"),
        SnatPortChanged => ("snat_port_changed", "masqueraded flows whose source port was taken and changed"),
    }
}

/// Where a packet goes from nat-snat.
pub enum Next {
    /// Masqueraded (its flow tracked in `Frame::ct`): on to its next hop.
    Ip4Neighbor,
    Drop(DropReason),
}

/// What nat-snat says about a packet.
pub enum Trace {
    Fragment,
    Unsupported(IpProtocol),
    NotSyn(Tuple),
    NoPort {
        flow: Tuple,
        uplink: Ipv4Addr,
    },
    Masquerade {
        flow: Tuple,
        uplink: Ipv4Addr,
        port: u16,
        /// What-if: the flow would be tracked, and the port reserved; neither is.
        would: bool,
    },
    /// The new flow could not be tracked (the table or the network's share full).
    CannotTrack {
        flow: Tuple,
        reason: DropReason,
    },
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Fragment => {
                f.write_str("fragment of a flow to masquerade (no reassembly): drop")
            }
            Trace::Unsupported(p) => write!(f, "{p} cannot be masqueraded: drop"),
            Trace::NotSyn(t) => write!(f, "{t}: not a SYN, and no connection: drop"),
            Trace::NoPort { flow, uplink } => write!(f, "{flow}: no free port on {uplink}: drop"),
            Trace::Masquerade {
                flow,
                uplink,
                port,
                would,
            } => {
                if *would {
                    write!(
                        f,
                        "new flow {flow}, would be tracked and masqueraded as {uplink}:{port}"
                    )?;
                } else {
                    write!(f, "new flow {flow}: masquerade as {uplink}:{port}")?;
                }
                if *port != flow.sport {
                    f.write_str(" (source port taken)")?;
                }
                if *would {
                    f.write_str(" (no entry made, port not reserved)")?;
                }
                Ok(())
            }
            Trace::CannotTrack { flow, reason } => {
                write!(f, "{flow}: cannot track a new flow: drop ({reason})")
            }
        }
    }
}

impl TraceLine for Trace {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    /// Starts the masqueraded flow of the packet in `f`, leaving by `hop.domain` (the
    /// external network): its original direction arrives from the ingress network,
    /// its replies from the external one.
    pub(crate) fn nat_snat<const DRY: bool>(&mut self, f: &mut Frame, l2: &L2, hop: Hop) -> Next {
        let uplink = self.sh.domains[hop.domain.index()]
            .spec
            .gateway
            .expect("external networks have a gateway")
            .ip;
        let ip = f.ipv4();
        let (t, seg) = match PacketFlow::of(&ip) {
            PacketFlow::Flow(t, seg) => (t, seg),
            PacketFlow::Fragment => {
                trace!(self, f, Trace::Fragment);
                return Next::Drop(Drop::NatFragment.into());
            }
            PacketFlow::IcmpError(_) | PacketFlow::Other => {
                trace!(self, f, Trace::Unsupported(ip.protocol()));
                return Next::Drop(Drop::NatUnsupported.into());
            }
        };
        if t.proto == IpProtocol::TCP && !starts_connection(seg.flags) {
            trace!(self, f, Trace::NotSyn(t));
            return Next::Drop(ct_lookup::Drop::ConntrackInvalid.into());
        }
        // An echo reply starts no flow: only a request is answered through the NAT.
        if t.proto == IpProtocol::ICMP
            && IcmpPacket::new_checked(ip.payload()).map(|i| i.msg_type()) != Ok(kind::ECHO_REQUEST)
        {
            return Next::Drop(Drop::NatUnsupported.into());
        }
        let port = self.sh.conntrack.pick_port_except(
            t.proto,
            t.dst,
            t.dport,
            uplink,
            t.sport,
            self.sh.port_range,
            self.what_if_gone::<DRY>(),
        );
        let Some(port) = port else {
            trace!(self, f, Trace::NoPort { flow: t, uplink });
            return Next::Drop(Drop::NatExhausted.into());
        };
        let reply = Tuple {
            proto: t.proto,
            src: t.dst,
            sport: if t.proto == IpProtocol::ICMP {
                port
            } else {
                t.dport
            },
            dst: uplink,
            dport: port,
        };
        let state = match t.proto {
            IpProtocol::TCP => ProtoState::Tcp(TcpState::SynSent),
            IpProtocol::UDP => ProtoState::Udp { replied: false },
            _ => ProtoState::Icmp,
        };
        let zone = [l2.domain, hop.domain];
        let tracked = if DRY {
            self.ct_would_insert(f, t, reply, zone, state, &seg)
                .map(|()| None)
        } else {
            self.ct_insert(t, reply, zone, state).map(Some)
        };
        let r = match tracked {
            Ok(r) => r,
            Err(reason) => {
                trace!(self, f, Trace::CannotTrack { flow: t, reason });
                return Next::Drop(reason);
            }
        };
        if let Some(r) = r {
            self.sh.conntrack.seen(r, f.len(), &seg, self.now);
        }
        self.counters.event(Event::SnatFlows);
        if port != t.sport {
            self.counters.event(Event::SnatPortChanged);
        }
        trace!(
            self,
            f,
            Trace::Masquerade {
                flow: t,
                uplink,
                port,
                would: DRY,
            }
        );
        f.ct = r;
        Next::Ip4Neighbor
    }
}
