//! Stage `l2-forward`: where a frame goes inside its bridge domain.
//!
//! * To the domain's gateway MAC: the frame is for switchyard itself and enters L3
//!   (`l3-input`).
//! * To a group address (broadcast, multicast): flooded (`l2-flood`). A broadcast ARP
//!   on a network with a gateway may be for switchyard, or teach it a neighbor, so
//!   `arp-input` sees it first — as the kernel bridge floods a broadcast *and* passes
//!   it up to the bridge device.
//! * To a known unicast MAC: sent to its port — unless that is the port it came in on
//!   (the two hosts share a segment beyond the port, and the frame already reached its
//!   destination there).
//! * To an unknown unicast MAC: flooded.
//!
//! On an L3-only network nothing is bridged between endpoints: unicast frames must be
//! addressed to the gateway MAC.
//!
//! On a network with `icc = false` (Docker's `enable_icc=false`, which the kernel
//! bridge gets from an iptables `-i br -o br -j DROP`) a known unicast to another
//! endpoint's port is dropped (`icc_disabled`); an unknown one goes on to `l2-flood`,
//! which sends it nowhere either.
//!
//! Next: `l3-input`, `arp-input`, `l2-flood`, a port, or drop. Trace:
//! `l2-forward: 02:42:ac:11:00:03 is on port b`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::stages::l2_learn;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DomainMode, DropReason, Frame, Pipeline, PortId};
use crate::wire::{EtherType, MacAddr};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "l2-forward";

counted! {
    /// Why l2-forward drops a frame.
    pub enum Drop: DropReason in NAME {
        SamePort => ("same_port", "destination MAC is on the ingress port"),
        L3NoBridge => ("l3_no_bridge", "an L3 network does not bridge between endpoints"),
        IccDisabled => ("icc_disabled", "inter-endpoint traffic is off on this network (icc = false)"),
    }
}

counted! {
    /// What l2-forward counts.
    pub enum Event: Event in NAME {
        UnknownUnicastFlooded => ("unknown_unicast_flooded", "unknown unicast frames flooded"),
    }
}

/// Where a frame goes from l2-forward.
pub enum Next {
    /// A broadcast ARP on a network with a gateway: switchyard's look first.
    ArpInput,
    /// A group or unknown destination.
    L2Flood,
    /// To the gateway MAC.
    L3Input,
    /// To the port its destination MAC was learned on.
    /// To a port, and to the remote VTEP behind it when that port is a tunnel.
    Forward(PortId, Option<Ipv4Addr>),
    Drop(DropReason),
}

/// What l2-forward says about a frame's destination.
pub enum Trace<'a> {
    OnIngressPort {
        mac: MacAddr,
        port: &'a str,
    },
    OnPort {
        mac: MacAddr,
        port: &'a str,
        vtep: l2_learn::Via,
    },
    Unknown(MacAddr),
    L3NotGateway(MacAddr),
    IccDisabled {
        mac: MacAddr,
        port: &'a str,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::OnIngressPort { mac, port } => {
                write!(f, "{mac} is on the ingress port {port}: drop")
            }
            Trace::OnPort { mac, port, vtep } => write!(f, "{mac} is on port {port}{vtep}"),
            Trace::Unknown(mac) => write!(f, "{mac} not in the FDB: flood"),
            Trace::L3NotGateway(mac) => {
                write!(f, "L3 network: {mac} is not the gateway MAC: drop")
            }
            Trace::IccDisabled { mac, port } => {
                write!(
                    f,
                    "{mac} is on port {port}, another endpoint, and icc is off: drop"
                )
            }
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn l2_forward(&mut self, f: &Frame, l2: &L2) -> Next {
        let d = &self.sh.domains[l2.domain.index()].spec;
        let (gateway, icc) = (d.gateway, d.guard.icc);
        if l2.dst.is_multicast() {
            if l2.dst.is_broadcast() && gateway.is_some() && l2.ethertype == EtherType::ARP {
                return Next::ArpInput;
            }
            return Next::L2Flood;
        }
        if gateway.is_some_and(|gw| l2.dst == gw.mac) {
            return Next::L3Input;
        }
        if d.mode == DomainMode::L3 {
            trace!(self, f, Trace::L3NotGateway(l2.dst));
            return Next::Drop(Drop::L3NoBridge.into());
        }
        match self.fdb_via(l2.domain, l2.dst) {
            Some((port, _)) if port == f.ingress => {
                trace!(
                    self,
                    f,
                    Trace::OnIngressPort {
                        mac: l2.dst,
                        port: self.port_name(port),
                    }
                );
                Next::Drop(Drop::SamePort.into())
            }
            Some((port, _)) if !icc => {
                trace!(
                    self,
                    f,
                    Trace::IccDisabled {
                        mac: l2.dst,
                        port: self.port_name(port),
                    }
                );
                Next::Drop(Drop::IccDisabled.into())
            }
            Some((port, vtep)) => {
                trace!(
                    self,
                    f,
                    Trace::OnPort {
                        mac: l2.dst,
                        port: self.port_name(port),
                        vtep: l2_learn::Via(vtep),
                    }
                );
                Next::Forward(port, vtep)
            }
            None => {
                self.counters.event(Event::UnknownUnicastFlooded);
                trace!(self, f, Trace::Unknown(l2.dst));
                Next::L2Flood
            }
        }
    }
}
