//! The graph in one place: after each stage, where a frame goes, and what it carries
//! there.
//!
//! Every stage is a method that looks at a frame and returns its own `Next` — an enum
//! of the places a frame may go from it, declared in the stage's module. [`Pipeline::walk`]
//! turns each `Next` into the [`Node`] to run next, until one is a verdict (an
//! [`Action`]); the picture of the whole is in the [module documentation](super). A
//! frame runs through the stages to completion before the next frame starts.
//!
//! Walking costs no allocation and no dynamic dispatch: a node is a small `Copy` enum
//! carrying the few facts one stage hands the next (what the Ethernet header said,
//! the next hop, the adjacency), and the walk is a loop over one `match`.
//!
//! Besides ethernet-input, two more places start a walk part-way: a packet released
//! from a neighbor queue enters at nat-rewrite (its next hop now known), and a packet
//! whose next hop never answered enters at icmp-error (host unreachable).

use super::stages::icmp_error::IcmpError;
use super::stages::ip4_output::Via;
use super::stages::{
    arp_input, ct_lookup, ethernet_input, icmp_error, ip4_forward, ip4_fragment, ip4_input,
    ip4_local, ip4_neighbor, ip4_output, l2_flood, l2_forward, l2_learn, l3_input, nat_rewrite,
    nat_snat,
};
use super::{Action, DomainId, DropReason, Emitter, Frame, Pipeline};
use crate::wire::{EtherType, MacAddr};
use std::net::Ipv4Addr;

/// What ethernet-input read from the Ethernet header, for the L2 and L3 input stages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L2 {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The type field right after the addresses (a VLAN tag's for a tagged frame).
    pub ethertype: EtherType,
    /// The bridge domain of the ingress port.
    pub domain: DomainId,
}

/// A next hop to resolve: a neighbor's address and the network it is on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hop {
    pub ip: Ipv4Addr,
    pub domain: DomainId,
}

/// How a routed packet leaves once its next hop is known — VPP's *adjacency*: the
/// egress network and the MAC the frame is rewritten to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Adjacency {
    pub domain: DomainId,
    pub mac: MacAddr,
}

/// A stage, with what the frame brings into it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node {
    EthernetInput,
    L2Learn(L2),
    L2Forward(L2),
    /// `answered`: arp-input took the frame first and answered it.
    L2Flood {
        l2: L2,
        answered: bool,
    },
    L3Input(L2),
    ArpInput(L2),
    Ip4Input(L2),
    CtLookup(L2),
    Ip4Local(L2),
    /// `dst`: where the packet goes — its header's destination, or where ct-lookup
    /// says its tracked flow goes.
    Ip4Forward {
        l2: L2,
        dst: Ipv4Addr,
    },
    NatSnat(Hop),
    Ip4Neighbor(Hop),
    /// `reserve`: emitter buffers to leave free for the caller (a packet released from
    /// a neighbor queue needs one to leave in).
    NatRewrite {
        adj: Adjacency,
        reserve: usize,
    },
    Ip4Output {
        adj: Adjacency,
        reserve: usize,
    },
    Ip4Fragment {
        via: Via,
        mtu: usize,
        reserve: usize,
    },
    /// The packet is dropped for `then`, after the error goes back to its sender.
    IcmpError {
        domain: DomainId,
        error: IcmpError,
        then: DropReason,
    },
}

impl Pipeline {
    /// Runs `f` through the graph from `at` to its verdict. Frames switchyard makes
    /// meanwhile (replies, ARP requests, ICMP errors, fragments) go to `out`.
    pub(crate) fn walk(&mut self, f: &mut Frame, mut at: Node, out: &mut Emitter) -> Action {
        loop {
            at = match at {
                Node::EthernetInput => match self.ethernet_input(f) {
                    ethernet_input::Next::L2Learn(l2) => Node::L2Learn(l2),
                    ethernet_input::Next::Drop(r) => return Action::Drop(r),
                },
                Node::L2Learn(l2) => match self.l2_learn(f, &l2) {
                    l2_learn::Next::L2Forward => Node::L2Forward(l2),
                },
                Node::L2Forward(l2) => match self.l2_forward(f, &l2) {
                    l2_forward::Next::ArpInput => Node::ArpInput(l2),
                    l2_forward::Next::L2Flood => Node::L2Flood {
                        l2,
                        answered: false,
                    },
                    l2_forward::Next::L3Input => Node::L3Input(l2),
                    l2_forward::Next::Forward(p) => return Action::Forward(p),
                    l2_forward::Next::Drop(r) => return Action::Drop(r),
                },
                Node::L2Flood { l2, answered } => match self.l2_flood(f, &l2, answered) {
                    l2_flood::Next::Flood(d) => return Action::Flood(d),
                    l2_flood::Next::Consume => return Action::Consume,
                    l2_flood::Next::Drop(r) => return Action::Drop(r),
                },
                Node::L3Input(l2) => match self.l3_input(f, &l2) {
                    l3_input::Next::ArpInput => Node::ArpInput(l2),
                    l3_input::Next::Ip4Input => Node::Ip4Input(l2),
                    l3_input::Next::Drop(r) => return Action::Drop(r),
                },
                Node::ArpInput(l2) => match self.arp_input(f, &l2, out) {
                    arp_input::Next::L2Flood { answered } => Node::L2Flood { l2, answered },
                    arp_input::Next::Reply => return Action::Reply,
                    arp_input::Next::Consume => return Action::Consume,
                    arp_input::Next::Drop(r) => return Action::Drop(r),
                },
                Node::Ip4Input(l2) => match self.ip4_input(f, &l2) {
                    ip4_input::Next::CtLookup => Node::CtLookup(l2),
                    ip4_input::Next::Drop(r) => return Action::Drop(r),
                },
                Node::CtLookup(l2) => match self.ct_lookup(f, &l2) {
                    ct_lookup::Next::Ip4Local => Node::Ip4Local(l2),
                    ct_lookup::Next::Ip4Forward(dst) => Node::Ip4Forward { l2, dst },
                    ct_lookup::Next::Drop(r) => return Action::Drop(r),
                },
                Node::Ip4Local(l2) => match self.ip4_local(f, &l2) {
                    ip4_local::Next::Reply => return Action::Reply,
                    ip4_local::Next::Consume => return Action::Consume,
                    ip4_local::Next::Drop(r) => return Action::Drop(r),
                },
                Node::Ip4Forward { l2, dst } => match self.ip4_forward(f, &l2, dst) {
                    ip4_forward::Next::NatSnat(hop) => Node::NatSnat(hop),
                    ip4_forward::Next::Ip4Neighbor(hop) => Node::Ip4Neighbor(hop),
                    ip4_forward::Next::IcmpError { error, then } => Node::IcmpError {
                        domain: l2.domain,
                        error,
                        then,
                    },
                    ip4_forward::Next::Drop(r) => return Action::Drop(r),
                },
                Node::NatSnat(hop) => match self.nat_snat(f, hop) {
                    nat_snat::Next::Ip4Neighbor => Node::Ip4Neighbor(hop),
                    nat_snat::Next::Drop(r) => return Action::Drop(r),
                },
                Node::Ip4Neighbor(hop) => match self.ip4_neighbor(f, hop, out) {
                    ip4_neighbor::Next::NatRewrite(adj) => Node::NatRewrite { adj, reserve: 0 },
                    ip4_neighbor::Next::Held => return Action::Held,
                    ip4_neighbor::Next::Drop(r) => return Action::Drop(r),
                },
                Node::NatRewrite { adj, reserve } => match self.nat_rewrite(f) {
                    nat_rewrite::Next::Ip4Output => Node::Ip4Output { adj, reserve },
                    nat_rewrite::Next::Drop(r) => return Action::Drop(r),
                },
                Node::Ip4Output { adj, reserve } => match self.ip4_output(f, adj) {
                    ip4_output::Next::Send(via) => return via.action(),
                    ip4_output::Next::Ip4Fragment { via, mtu } => {
                        Node::Ip4Fragment { via, mtu, reserve }
                    }
                    ip4_output::Next::Drop(r) => return Action::Drop(r),
                },
                Node::Ip4Fragment { via, mtu, reserve } => {
                    match self.ip4_fragment(f, via, mtu, out, reserve) {
                        ip4_fragment::Next::Send(via) => return via.action(),
                        ip4_fragment::Next::Drop(r) => return Action::Drop(r),
                    }
                }
                Node::IcmpError {
                    domain,
                    error,
                    then,
                } => match self.icmp_error(f, domain, error, then, out) {
                    icmp_error::Next::Drop(r) => return Action::Drop(r),
                },
            }
        }
    }
}
