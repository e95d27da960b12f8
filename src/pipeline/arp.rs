//! Stage `arp-input`: switchyard answers ARP for its gateway addresses.
//!
//! A host resolving its default gateway broadcasts "who-has 172.17.0.1"; switchyard
//! answers with the gateway MAC. The broadcast request itself is still flooded (see
//! `l2-forward`), so the answer is a new frame; a unicast request to the gateway MAC
//! (a host re-validating its cache entry) is answered in place, by rewriting the
//! request into the reply. ARP to the gateway MAC about any other address is not
//! answered ([`DropReason::ArpNotForUs`]): switchyard is no proxy.
//!
//! Drops: [`DropReason::ArpMalformed`], [`DropReason::ArpNotForUs`].
//! Events: [`Event::ArpReplies`], [`Event::NoBuffer`].
//! Trace: `arp-input: who-has 172.17.0.1 tell 172.17.0.2: gateway of default, replying 02:42:ac:11:00:01`

use super::trace::note;
use super::{Action, DropReason, Emitter, Event, Frame, Pipeline, PortId, L2};
use crate::wire::arp::{self, ArpOp};
use crate::wire::ethernet::write_header;
use crate::wire::{ArpPacket, EtherType, EthernetFrame};

const STAGE: &str = "arp-input";
const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

impl Pipeline {
    /// A broadcast ARP frame (which is flooded regardless). Returns true if it was a
    /// request for the gateway address and a reply was queued in `out`.
    pub(super) fn arp_input_broadcast(&mut self, f: &Frame, l2: &L2, out: &mut Emitter) -> bool {
        let Some(gw) = self.domains[l2.domain.index()].spec.gateway else {
            return false;
        };
        let Ok(req) = ArpPacket::new_checked(&f.data()[ETH..]) else {
            note!(self, f, STAGE, "not Ethernet/IPv4 ARP; flooded only");
            return false;
        };
        if req.op() != ArpOp::Request || req.target_ip() != gw.ip {
            note!(
                self,
                f,
                STAGE,
                "{:?} for {} from {}: not for switchyard",
                req.op(),
                req.target_ip(),
                req.sender_ip()
            );
            return false;
        }
        let (asker_mac, asker_ip) = (req.sender_mac(), req.sender_ip());
        let Some(reply) = out.alloc() else {
            self.counters.event(Event::NoBuffer);
            note!(
                self,
                f,
                STAGE,
                "who-has {} tell {}: no buffer for the reply",
                gw.ip,
                asker_ip
            );
            return false;
        };
        reply.set_len(ETH + ArpPacket::<&[u8]>::LEN);
        let b = reply.data_mut();
        write_header(b, l2.src, gw.mac, EtherType::ARP);
        arp::write(
            &mut b[ETH..],
            ArpOp::Reply,
            gw.mac,
            gw.ip,
            asker_mac,
            asker_ip,
        );
        reply.ingress = PortId::LOCAL;
        reply.action = Action::Forward(f.ingress);
        reply.trace = f.trace;
        self.counters.event(Event::ArpReplies);
        note!(
            self,
            f,
            STAGE,
            "who-has {} tell {}: gateway of {}, replying {} to port {}",
            gw.ip,
            asker_ip,
            self.domains[l2.domain.index()].spec.name,
            gw.mac,
            self.port_name(f.ingress)
        );
        true
    }

    /// A unicast ARP frame to the gateway MAC.
    pub(super) fn arp_input_unicast(&mut self, f: &mut Frame, l2: &L2) -> Action {
        let gw = self.domains[l2.domain.index()]
            .spec
            .gateway
            .expect("only called for a domain with a gateway");
        let Ok(mut pkt) = ArpPacket::new_checked(&mut f.data_mut()[ETH..]) else {
            note!(self, f, STAGE, "malformed ARP to the gateway MAC: drop");
            return Action::Drop(DropReason::ArpMalformed);
        };
        let (op, target, sender) = (pkt.op(), pkt.target_ip(), pkt.sender_ip());
        match op {
            ArpOp::Request if target == gw.ip => {
                pkt.make_reply(gw.mac);
                let mut eth =
                    EthernetFrame::new_checked(f.data_mut()).expect("checked in ethernet-input");
                eth.set_dst(l2.src);
                eth.set_src(gw.mac);
                f.vnet = Default::default();
                self.counters.event(Event::ArpReplies);
                note!(
                    self,
                    f,
                    STAGE,
                    "who-has {} tell {} (unicast): replying {} in place",
                    target,
                    sender,
                    gw.mac
                );
                Action::Reply
            }
            ArpOp::Request => {
                note!(
                    self,
                    f,
                    STAGE,
                    "who-has {} tell {}: not switchyard's address: drop",
                    target,
                    sender
                );
                Action::Drop(DropReason::ArpNotForUs)
            }
            _ => {
                // Replies to switchyard need a neighbor table to go into; until then
                // they are read and dropped on the floor knowingly.
                note!(
                    self,
                    f,
                    STAGE,
                    "{:?} from {}: noted, nothing outstanding",
                    op,
                    sender
                );
                Action::Consume
            }
        }
    }
}
