//! Stages `l2-forward` and `l2-flood`: where a frame goes inside its bridge domain.
//!
//! * To the domain's gateway MAC: the frame is for switchyard itself and enters L3
//!   (`l3-input`, which hands ARP to `arp-input` and IPv4 to `ip4-input`).
//! * To a group address (broadcast, multicast): flooded. A broadcast ARP request may
//!   also be for switchyard, so `arp-input` sees a copy first (like the kernel bridge,
//!   which floods a broadcast *and* passes it up to the bridge device).
//! * To a known unicast MAC: sent to its port — unless that is the port it came in on
//!   ([`DropReason::SamePort`]: the two hosts share a segment beyond the port, and the
//!   frame already reached its destination there).
//! * To an unknown unicast MAC: flooded ([`Event::UnknownUnicastFlooded`]).
//!
//! Flooding sends to every port of the domain but the ingress port (split horizon);
//! with no other port it is [`DropReason::NoEgressPort`].
//!
//! On an L3-only network nothing is bridged or flooded between endpoints: a broadcast
//! ARP is answered by switchyard alone, other broadcasts are dropped
//! ([`DropReason::L3NoFlood`]), and unicast frames must be addressed to the gateway
//! MAC ([`DropReason::L3NoBridge`]).
//!
//! Trace: `l2-forward: 02:42:ac:11:00:03 is on port b`,
//! `l2-flood: broadcast to 2 ports of bridge default: b, c`

use super::trace::note;
use super::{Action, DomainMode, DropReason, Emitter, Event, Frame, Pipeline, L2};
use crate::wire::EtherType;

const FORWARD: &str = "l2-forward";
const FLOOD: &str = "l2-flood";
const L3_INPUT: &str = "l3-input";

impl Pipeline {
    pub(super) fn l2_forward(&mut self, f: &mut Frame, l2: &L2, out: &mut Emitter) -> Action {
        let d = &self.sh.domains[l2.domain.index()].spec;
        let (gateway, l3_only) = (d.gateway, d.mode == DomainMode::L3);

        if l2.dst.is_multicast() {
            // A broadcast ARP may be for switchyard, or teach it a neighbor.
            let mut answered = false;
            let is_arp = l2.ethertype == EtherType::ARP;
            if l2.dst.is_broadcast() && gateway.is_some() && is_arp {
                answered = self.arp_input_broadcast(f, l2, out);
            }
            if l3_only {
                if is_arp {
                    note!(
                        self,
                        f,
                        FLOOD,
                        "L3 network: ARP handled by switchyard alone, not flooded"
                    );
                    return Action::Consume;
                }
                note!(self, f, FLOOD, "L3 network: no flooding: drop");
                return Action::Drop(DropReason::L3NoFlood);
            }
            return self.l2_flood(
                f,
                l2,
                if l2.dst.is_broadcast() {
                    "broadcast"
                } else {
                    "multicast"
                },
                answered,
            );
        }

        if let Some(gw) = gateway {
            if l2.dst == gw.mac {
                return self.l3_input(f, l2, out);
            }
        }
        if l3_only {
            note!(
                self,
                f,
                FORWARD,
                "L3 network: {} is not the gateway MAC: drop",
                l2.dst
            );
            return Action::Drop(DropReason::L3NoBridge);
        }

        match self.sh.fdb.lookup(l2.domain, l2.dst) {
            Some(port) if port == f.ingress => {
                note!(
                    self,
                    f,
                    FORWARD,
                    "{} is on the ingress port {}: drop",
                    l2.dst,
                    self.port_name(port)
                );
                Action::Drop(DropReason::SamePort)
            }
            Some(port) => {
                note!(
                    self,
                    f,
                    FORWARD,
                    "{} is on port {}",
                    l2.dst,
                    self.port_name(port)
                );
                Action::Forward(port)
            }
            None => {
                self.counters.event(Event::UnknownUnicastFlooded);
                note!(self, f, FORWARD, "{} not in the FDB: flood", l2.dst);
                self.l2_flood(f, l2, "unknown unicast", false)
            }
        }
    }

    /// Floods over the frame's domain. `answered`: switchyard's own stack already took
    /// a copy, so a domain with no other port still means the frame was consumed.
    fn l2_flood(&mut self, f: &Frame, l2: &L2, what: &str, answered: bool) -> Action {
        let members = self.sh.domains[l2.domain.index()].ports.len();
        // The ingress port is always a member of its own domain.
        if members <= 1 {
            if answered {
                note!(
                    self,
                    f,
                    FLOOD,
                    "{what}: no other port in bridge {}; answered by switchyard",
                    self.sh.domains[l2.domain.index()].spec.name
                );
                return Action::Consume;
            }
            note!(
                self,
                f,
                FLOOD,
                "{what}: no other port in bridge {}: drop",
                self.sh.domains[l2.domain.index()].spec.name
            );
            return Action::Drop(DropReason::NoEgressPort);
        }
        if f.trace != 0 {
            let d = &self.sh.domains[l2.domain.index()];
            let names: Vec<&str> = d
                .ports
                .iter()
                .filter(|&&p| p != f.ingress)
                .map(|&p| self.sh.ports[p.index()].name.as_str())
                .collect();
            let line = format!(
                "{what} to {} ports of bridge {}: {}",
                names.len(),
                d.spec.name,
                names.join(", ")
            );
            self.tracer.add(f.trace, FLOOD, line);
        }
        Action::Flood(l2.domain)
    }

    /// `l3-input`: a unicast frame to the gateway MAC. Dispatches on the EtherType.
    fn l3_input(&mut self, f: &mut Frame, l2: &L2, out: &mut Emitter) -> Action {
        match l2.ethertype {
            EtherType::ARP => self.arp_input_unicast(f, l2, out),
            EtherType::IPV4 => self.ip4_input(f, l2, out),
            t @ (EtherType::VLAN | EtherType::QINQ) => {
                note!(
                    self,
                    f,
                    L3_INPUT,
                    "{t}-tagged frame to the gateway MAC: drop"
                );
                Action::Drop(DropReason::TaggedToGateway)
            }
            t => {
                note!(
                    self,
                    f,
                    L3_INPUT,
                    "EtherType {t} to the gateway MAC is not routed: drop"
                );
                Action::Drop(DropReason::UnsupportedEtherType)
            }
        }
    }
}
