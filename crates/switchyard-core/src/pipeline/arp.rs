//! Stage `arp-input`: switchyard's side of ARP — answering for its gateway addresses,
//! answering on behalf of others where configured (proxy ARP), and learning its
//! neighbors.
//!
//! * A request for a gateway address is answered with the gateway MAC. The broadcast
//!   request itself is still flooded on a bridge network (see `l2-forward`), so that
//!   answer is a new frame; a unicast request to the gateway MAC is answered in place.
//! * Proxy ARP: on a network with `proxy_arp`, a request for an address switchyard
//!   routes to *another* network (one it may route to) is answered with the gateway
//!   MAC, as the kernel's `proxy_arp` does; on an L3-only network every request is
//!   answered that way, including for addresses of the same subnet — all traffic then
//!   goes through switchyard, as with ipvlan in L3 mode.
//! * Learning (the kernel's rules): a request addressed to switchyard tells it the
//!   sender's MAC (entry created or updated); a reply to switchyard confirms an entry
//!   (REACHABLE) and releases packets waiting for it; a gratuitous ARP (sender IP =
//!   target IP) updates an existing entry but creates none. Only senders inside the
//!   network's subnet are learned.
//! * Anything else addressed to the gateway MAC is not answered
//!   ([`DropReason::ArpNotForUs`]).
//!
//! Events: [`Event::ArpReplies`], [`Event::ProxyArpReplies`], [`Event::NeighborsResolved`].
//! Trace: `arp-input: who-has 172.17.0.1 tell 172.17.0.2: gateway of default, replying 02:42:ac:11:00:01`

use super::neighbor::{LearnOutcome, Learned};
use super::trace::note;
use super::{
    Action, DomainId, DomainMode, DropReason, Emitter, Event, Frame, Pipeline, PortId, L2,
};
use crate::wire::arp::{self, ArpOp};
use crate::wire::ethernet::{self, write_header};
use crate::wire::{ArpPacket, EtherType, MacAddr};
use std::net::Ipv4Addr;

const STAGE: &str = "arp-input";

/// Why switchyard answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Gateway,
    Proxy,
}

impl Pipeline {
    /// Should switchyard answer "who-has `target`" from `sender` on `domain`?
    fn arp_answer(&self, domain: DomainId, sender: Ipv4Addr, target: Ipv4Addr) -> Option<Answer> {
        let d = &self.sh.domains[domain.index()].spec;
        let gw = d.gateway?;
        if target == gw.ip {
            return Some(Answer::Gateway);
        }
        if target == sender
            || target.is_unspecified()
            || self.sh.local.contains_key(&u32::from(target))
        {
            return None;
        }
        let l3 = d.mode == DomainMode::L3;
        if l3 && d.subnet.contains(target) && target != d.subnet.broadcast() {
            return Some(Answer::Proxy);
        }
        if l3 || d.proxy_arp {
            let route = self.sh.fib.lookup(target)?;
            let egress = route.next_hop.domain();
            if egress != domain && self.allowed(domain, egress) {
                return Some(Answer::Proxy);
            }
        }
        None
    }

    /// Learns the sender of an ARP packet seen on `domain`.
    fn arp_learn(
        &mut self,
        f: &Frame,
        domain: DomainId,
        ip: Ipv4Addr,
        mac: MacAddr,
        how: Learned,
        out: &mut Emitter,
    ) {
        let d = &self.sh.domains[domain.index()].spec;
        if !d.subnet.contains(ip)
            || ip == d.subnet.network()
            || ip == d.subnet.broadcast()
            || !mac.is_valid_source()
        {
            return;
        }
        match self.sh.neighbors.learn(ip, domain, mac, how, self.now) {
            LearnOutcome::Resolved { queued } => {
                self.counters.event(Event::NeighborsResolved);
                note!(
                    self,
                    f,
                    STAGE,
                    "{ip} is at {mac}: resolved, {queued} packet(s) released"
                );
                self.work.clear();
                self.sh.neighbors.release(ip, &mut self.work);
                self.neighbor_work(out);
            }
            LearnOutcome::Created => note!(self, f, STAGE, "neighbor {ip} is at {mac} (new entry)"),
            LearnOutcome::Changed => note!(self, f, STAGE, "neighbor {ip} moved to {mac}"),
            LearnOutcome::Refreshed | LearnOutcome::Ignored => {}
        }
    }

    /// An ARP frame sent to the broadcast address. Returns true if switchyard answered
    /// (the reply is queued in `out`); the caller still floods the request on a bridge
    /// network.
    pub(super) fn arp_input_broadcast(&mut self, f: &Frame, l2: &L2, out: &mut Emitter) -> bool {
        let Some(gw) = self.sh.domains[l2.domain.index()].spec.gateway else {
            return false;
        };
        let Ok(req) = ArpPacket::new_checked(f.network()) else {
            note!(self, f, STAGE, "not Ethernet/IPv4 ARP; not for switchyard");
            return false;
        };
        let (op, sha, spa, tpa) = (req.op(), req.sender_mac(), req.sender_ip(), req.target_ip());
        if op == ArpOp::Request && tpa == gw.ip {
            self.arp_learn(f, l2.domain, spa, sha, Learned::Request, out);
        } else if spa == tpa || op == ArpOp::Reply {
            self.arp_learn(f, l2.domain, spa, sha, Learned::Unsolicited, out);
        }
        let answer = if op == ArpOp::Request {
            self.arp_answer(l2.domain, spa, tpa)
        } else {
            None
        };
        let Some(answer) = answer else {
            note!(
                self,
                f,
                STAGE,
                "{:?} for {} from {}: not for switchyard",
                op,
                tpa,
                spa
            );
            return false;
        };
        let Some(reply) = out.alloc() else {
            self.counters.event(Event::NoBuffer);
            note!(
                self,
                f,
                STAGE,
                "who-has {} tell {}: no buffer for the reply",
                tpa,
                spa
            );
            return false;
        };
        reply.set_len(ethernet::HEADER_LEN + ArpPacket::<&[u8]>::LEN);
        let b = reply.data_mut();
        write_header(b, l2.src, gw.mac, EtherType::ARP);
        arp::write(
            &mut b[ethernet::HEADER_LEN..],
            ArpOp::Reply,
            gw.mac,
            tpa,
            sha,
            spa,
        );
        reply.ingress = PortId::LOCAL;
        reply.action = Action::Forward(f.ingress);
        reply.trace = f.trace;
        self.counters.event(match answer {
            Answer::Gateway => Event::ArpReplies,
            Answer::Proxy => Event::ProxyArpReplies,
        });
        note!(
            self,
            f,
            STAGE,
            "who-has {} tell {}: {}, replying {} to port {}",
            tpa,
            spa,
            match answer {
                Answer::Gateway => format!(
                    "gateway of {}",
                    self.sh.domains[l2.domain.index()].spec.name
                ),
                Answer::Proxy => "proxy ARP".to_string(),
            },
            gw.mac,
            self.port_name(f.ingress)
        );
        true
    }

    /// A unicast ARP frame to the gateway MAC.
    pub(super) fn arp_input_unicast(
        &mut self,
        f: &mut Frame,
        l2: &L2,
        out: &mut Emitter,
    ) -> Action {
        let gw = self.sh.domains[l2.domain.index()]
            .spec
            .gateway
            .expect("only called for a domain with a gateway");
        let Ok(pkt) = ArpPacket::new_checked(f.network()) else {
            note!(self, f, STAGE, "malformed ARP to the gateway MAC: drop");
            return Action::Drop(DropReason::ArpMalformed);
        };
        let (op, sha, spa, tpa) = (pkt.op(), pkt.sender_mac(), pkt.sender_ip(), pkt.target_ip());
        match op {
            ArpOp::Request => {
                if tpa == gw.ip {
                    self.arp_learn(f, l2.domain, spa, sha, Learned::Request, out);
                }
                let Some(answer) = self.arp_answer(l2.domain, spa, tpa) else {
                    note!(
                        self,
                        f,
                        STAGE,
                        "who-has {} tell {}: not switchyard's address: drop",
                        tpa,
                        spa
                    );
                    return Action::Drop(DropReason::ArpNotForUs);
                };
                ArpPacket::new_unchecked(f.network_mut()).make_reply(gw.mac);
                let mut eth = f.ethernet_mut();
                eth.set_dst(l2.src);
                eth.set_src(gw.mac);
                f.vnet = Default::default();
                self.counters.event(if answer == Answer::Gateway {
                    Event::ArpReplies
                } else {
                    Event::ProxyArpReplies
                });
                note!(
                    self,
                    f,
                    STAGE,
                    "who-has {} tell {} (unicast): replying {} in place",
                    tpa,
                    spa,
                    gw.mac
                );
                Action::Reply
            }
            ArpOp::Reply => {
                self.arp_learn(f, l2.domain, spa, sha, Learned::Reply, out);
                note!(self, f, STAGE, "reply from {spa} ({sha}) consumed");
                Action::Consume
            }
            ArpOp::Other(n) => {
                note!(self, f, STAGE, "ARP operation {n}: drop");
                Action::Drop(DropReason::ArpMalformed)
            }
        }
    }
}
