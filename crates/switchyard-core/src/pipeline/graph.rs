//! The graph in one place: after each stage, where a frame goes, and what it carries
//! there.
//!
//! Every stage is a method that looks at a frame and returns its own `Next` — an enum
//! of the places a frame may go from it, declared in the stage's module. The functions
//! here turn each `Next` into a call of the next stage, until one is a verdict (an
//! [`Action`]); the picture of the whole is in the [module documentation](super). A
//! frame runs through the stages to completion before the next frame starts.
//!
//! The graph has no cycles, so the walk is plain code following the edges: a match on
//! each stage's `Next`, and a function for each stage that more than one edge leads to
//! (`walk_from_arp_input`, `walk_from_l2_flood`, ...). That costs no allocation, no dynamic
//! dispatch and no state kept between stages but the few facts one stage hands the
//! next — what the Ethernet header said ([`L2`]), the next hop ([`Hop`]), the
//! adjacency ([`Adjacency`]) — and it compiles to the direct calls a hand-written
//! pipeline would make.
//!
//! The walk has two modes, chosen when it is compiled (`DRY`, a const parameter): the
//! dataplane's, and the dry run of a what-if trace ([`Pipeline::what_if`]), in which
//! every stage that would change a table asks it instead what the change would be, and
//! says so. The few stages that change tables are the only ones that take the
//! parameter; the dataplane's walk carries no test for it at all.
//!
//! Besides ethernet-input, two places start a walk part-way: a packet released from a
//! neighbor queue resumes at nat-rewrite (its next hop now known), and a packet whose
//! next hop never answered ends at icmp-error (host unreachable).

use super::stages::icmp_error::IcmpError;
use super::stages::{
    arp_input, ct_lookup, ethernet_input, icmp_error, ip4_forward, ip4_fragment, ip4_input,
    ip4_local, ip4_neighbor, ip4_output, l2_flood, l2_forward, l2_learn, l3_input, nat_rewrite,
    nat_snat, port_security,
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

impl Pipeline {
    /// A received frame, from ethernet-input to its verdict. Frames switchyard makes
    /// meanwhile (replies, ARP requests, ICMP errors, fragments) go to `out`.
    pub(crate) fn walk<const DRY: bool>(&mut self, f: &mut Frame, out: &mut Emitter) -> Action {
        let l2 = match self.ethernet_input(f) {
            ethernet_input::Next::L2Learn(l2) => l2,
            ethernet_input::Next::Drop(r) => return Action::Drop(r),
        };
        match self.port_security(f, &l2) {
            port_security::Next::L2Learn => {}
            port_security::Next::Drop(r) => return Action::Drop(r),
        }
        match self.l2_learn::<DRY>(f, &l2) {
            l2_learn::Next::L2Forward => {}
        }
        match self.l2_forward(f, &l2) {
            l2_forward::Next::ArpInput => self.walk_from_arp_input::<DRY>(f, &l2, out),
            l2_forward::Next::L2Flood => self.walk_from_l2_flood(f, &l2, false),
            l2_forward::Next::L3Input => match self.l3_input(f, &l2) {
                l3_input::Next::ArpInput => self.walk_from_arp_input::<DRY>(f, &l2, out),
                l3_input::Next::Ip4Input => self.walk_from_ip4_input::<DRY>(f, &l2, out),
                l3_input::Next::Drop(r) => Action::Drop(r),
            },
            l2_forward::Next::Forward(p, vtep) => {
                f.tunnel = vtep;
                Action::Forward(p)
            }
            l2_forward::Next::Drop(r) => Action::Drop(r),
        }
    }

    /// From arp-input: a broadcast ARP (from l2-forward) or one sent to the gateway
    /// MAC (from l3-input).
    // Not inlined into `walk`, as the L3 path below: the bridged path, the most
    // travelled, stays a small function with little to save and restore per frame.
    #[inline(never)]
    fn walk_from_arp_input<const DRY: bool>(
        &mut self,
        f: &mut Frame,
        l2: &L2,
        out: &mut Emitter,
    ) -> Action {
        match self.arp_input::<DRY>(f, l2, out) {
            arp_input::Next::L2Flood { answered } => self.walk_from_l2_flood(f, l2, answered),
            arp_input::Next::Reply => Action::Reply,
            arp_input::Next::Consume => Action::Consume,
            arp_input::Next::Drop(r) => Action::Drop(r),
        }
    }

    /// From l2-flood: a group or unknown destination (from l2-forward), or a broadcast
    /// ARP switchyard had its look at (from arp-input).
    fn walk_from_l2_flood(&mut self, f: &Frame, l2: &L2, answered: bool) -> Action {
        match self.l2_flood(f, l2, answered) {
            l2_flood::Next::Flood(d) => Action::Flood(d),
            l2_flood::Next::Consume => Action::Consume,
            l2_flood::Next::Drop(r) => Action::Drop(r),
        }
    }

    /// From ip4-input: an IPv4 packet sent to the gateway MAC, to be routed or answered.
    // Not inlined into `walk` (see `walk_from_arp_input`).
    #[inline(never)]
    fn walk_from_ip4_input<const DRY: bool>(
        &mut self,
        f: &mut Frame,
        l2: &L2,
        out: &mut Emitter,
    ) -> Action {
        match self.ip4_input(f, l2) {
            ip4_input::Next::CtLookup => {}
            ip4_input::Next::Drop(r) => return Action::Drop(r),
        }
        let dst = match self.ct_lookup::<DRY>(f, l2) {
            ct_lookup::Next::Ip4Forward(dst) => dst,
            ct_lookup::Next::Ip4Local => {
                return match self.ip4_local(f, l2) {
                    ip4_local::Next::Reply => Action::Reply,
                    ip4_local::Next::Consume => Action::Consume,
                    ip4_local::Next::Punt => Action::Punt,
                    ip4_local::Next::Drop(r) => Action::Drop(r),
                }
            }
            ct_lookup::Next::Drop(r) => return Action::Drop(r),
        };
        let hop = match self.ip4_forward(f, l2, dst) {
            ip4_forward::Next::Ip4Neighbor(hop) => hop,
            ip4_forward::Next::NatSnat(hop) => match self.nat_snat::<DRY>(f, l2, hop) {
                nat_snat::Next::Ip4Neighbor => hop,
                nat_snat::Next::Drop(r) => return Action::Drop(r),
            },
            ip4_forward::Next::IcmpError { error, then } => {
                return self.walk_from_icmp_error::<DRY>(f, l2.domain, error, then, out)
            }
            ip4_forward::Next::Drop(r) => return Action::Drop(r),
        };
        match self.ip4_neighbor::<DRY>(f, hop, out) {
            ip4_neighbor::Next::NatRewrite(adj) => {
                self.walk_from_nat_rewrite::<DRY>(f, adj, 0, out)
            }
            ip4_neighbor::Next::Held => Action::Held,
            ip4_neighbor::Next::Drop(r) => Action::Drop(r),
        }
    }

    /// From nat-rewrite: a routed packet whose next hop's MAC is known, from
    /// ip4-neighbor or released from its queue. `reserve`: emitter buffers to leave
    /// free for the caller (a released packet needs one to leave in).
    pub(crate) fn walk_from_nat_rewrite<const DRY: bool>(
        &mut self,
        f: &mut Frame,
        adj: Adjacency,
        reserve: usize,
        out: &mut Emitter,
    ) -> Action {
        match self.nat_rewrite::<DRY>(f) {
            nat_rewrite::Next::Ip4Output => {}
            nat_rewrite::Next::Drop(r) => return Action::Drop(r),
        }
        match self.ip4_output(f, adj) {
            ip4_output::Next::Send(via) => via.action(),
            ip4_output::Next::Ip4Fragment { via, mtu } => {
                match self.ip4_fragment(f, via, mtu, out, reserve) {
                    ip4_fragment::Next::Send(via) => via.action(),
                    ip4_fragment::Next::Drop(r) => Action::Drop(r),
                }
            }
            ip4_output::Next::Drop(r) => Action::Drop(r),
        }
    }

    /// From icmp-error: a packet not forwarded (from ip4-forward), or whose next hop
    /// never answered (from ip4-neighbor's timer), arrived on `domain`; it is dropped
    /// for `then`.
    pub(crate) fn walk_from_icmp_error<const DRY: bool>(
        &mut self,
        f: &Frame,
        domain: DomainId,
        error: IcmpError,
        then: DropReason,
        out: &mut Emitter,
    ) -> Action {
        match self.icmp_error::<DRY>(f, domain, error, then, out) {
            icmp_error::Next::Drop(r) => Action::Drop(r),
        }
    }
}
