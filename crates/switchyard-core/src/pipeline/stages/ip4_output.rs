//! Stage `ip4-output`: a routed packet becomes a frame of its egress network.
//!
//! Both MACs are rewritten — the gateway's as the source, the next hop's as the
//! destination — and the frame goes out like any bridged frame of that network: to
//! the port the FDB knows the next hop behind, or flooded over the network when the
//! FDB does not (yet) know it.
//!
//! A packet over the egress MTU (without DF: `ip4-forward` answered the others) is
//! cut by `ip4-fragment`. A super-frame is not fragmented but left for segmentation
//! offload, and it is its segments that must fit: a TCP super-frame is a byte stream
//! cut at the sender's chosen size, so when its segments would not fit the segment
//! size is lowered (rather than fragmenting every segment, as the kernel would); a UDP
//! super-frame's segments are datagrams, whose size is not switchyard's to change, so
//! one that does not fit is dropped.
//!
//! Next: a port or a flood, `ip4-fragment`, or drop. Trace:
//! `ip4-output: 02:42:0a:02:00:01 > 02:42:0a:02:00:03 to port bb`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::Adjacency;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{Action, DomainId, DropReason, Frame, Pipeline, PortId};
use crate::wire::{gso, MacAddr};
use std::fmt;

pub const NAME: &str = "ip4-output";

counted! {
    /// Why ip4-output drops a packet.
    pub enum Drop: DropReason in NAME {
        GsoOverMtu => ("gso_over_mtu", "UDP super-frame without DF whose datagrams exceed the egress MTU (no segment-then-fragment)"),
    }
}

counted! {
    /// What ip4-output counts.
    pub enum Event: Event in NAME {
        GsoSegmentSizeLowered => ("gso_segment_size_lowered", "TCP super-frames without DF cut smaller to fit the egress MTU"),
    }
}

/// Where a routed frame leaves: like a bridged frame of its egress network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The port the FDB knows the next hop's MAC on.
    Port(PortId),
    /// Every port of the network, the MAC not being in the FDB.
    Flood(DomainId),
}

impl Via {
    pub fn action(self) -> Action {
        match self {
            Via::Port(p) => Action::Forward(p),
            Via::Flood(d) => Action::Flood(d),
        }
    }
}

/// Where a frame goes from ip4-output.
pub enum Next {
    Send(Via),
    /// Over the MTU: cut into fragments that leave the same way.
    Ip4Fragment {
        via: Via,
        mtu: usize,
    },
    Drop(DropReason),
}

/// What ip4-output says about a frame.
pub enum Trace<'a> {
    SegmentSizeLowered {
        mtu: usize,
        from: u16,
        to: u16,
    },
    UdpSuperFrameOverMtu(usize),
    Out {
        src: MacAddr,
        dst: MacAddr,
        /// The port's name, or the network's when flooded.
        port: Option<&'a str>,
        network: &'a str,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::SegmentSizeLowered { mtu, from, to } => write!(
                f,
                "super-frame's segments exceed MTU {mtu} without DF: segment size {from} lowered to {to}"
            ),
            Trace::UdpSuperFrameOverMtu(mtu) => write!(
                f,
                "UDP super-frame's datagrams exceed MTU {mtu} without DF: drop"
            ),
            Trace::Out {
                src,
                dst,
                port,
                network,
            } => match port {
                Some(p) => write!(f, "{src} > {dst} to port {p}"),
                None => write!(
                    f,
                    "{src} > {dst} to all ports of {network} (MAC not in the FDB)"
                ),
            },
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn ip4_output(&mut self, f: &mut Frame, adj: Adjacency) -> Next {
        let d = &self.sh.domains[adj.domain.index()].spec;
        let gw_mac = d
            .gateway
            .expect("routes only lead to networks with a gateway")
            .mac;
        let mtu = usize::from(d.mtu);
        let mut eth = f.ethernet_mut();
        eth.set_dst(adj.mac);
        eth.set_src(gw_mac);
        // The VTEP goes with the frame: whatever it came in behind is no concern of
        // the network it leaves on.
        let (via, vtep) = match self.fdb_via(adj.domain, adj.mac) {
            Some((p, vtep)) => (Via::Port(p), vtep),
            None => (Via::Flood(adj.domain), None),
        };
        f.tunnel = vtep;
        let mut fragment = false;
        if f.vnet.is_gso() {
            if gso::segment_network_len(f.data(), &f.vnet).is_some_and(|n| n > mtu) {
                match gso::segment_headers(f.data(), &f.vnet) {
                    Some((headers, true)) if mtu > headers => {
                        let mss = (mtu - headers) as u16;
                        trace!(
                            self,
                            f,
                            Trace::SegmentSizeLowered {
                                mtu,
                                from: f.vnet.gso_size,
                                to: mss,
                            }
                        );
                        f.vnet.gso_size = mss;
                        self.counters.event(Event::GsoSegmentSizeLowered);
                    }
                    _ => {
                        trace!(self, f, Trace::UdpSuperFrameOverMtu(mtu));
                        return Next::Drop(Drop::GsoOverMtu.into());
                    }
                }
            }
        } else {
            fragment = f.len() - usize::from(f.l3) > mtu;
        }
        trace!(
            self,
            f,
            Trace::Out {
                src: gw_mac,
                dst: adj.mac,
                port: match via {
                    Via::Port(p) => Some(self.port_name(p)),
                    Via::Flood(_) => None,
                },
                network: &self.sh.domains[adj.domain.index()].spec.name,
            }
        );
        if fragment {
            Next::Ip4Fragment { via, mtu }
        } else {
            Next::Send(via)
        }
    }
}
