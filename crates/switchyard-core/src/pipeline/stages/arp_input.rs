//! Stage `arp-input`: switchyard's side of ARP (RFC 826) — answering for its gateway
//! addresses, answering on behalf of others where configured (proxy ARP), and
//! learning its neighbors.
//!
//! * A request for a gateway address is answered with the gateway MAC. A broadcast
//!   request is still flooded on a bridge network afterwards (`l2-flood`), so the
//!   answer is a new frame; a unicast request to the gateway MAC is answered in place.
//! * Proxy ARP: on a network with `proxy_arp`, a request for an address switchyard
//!   routes to *another* network (one it may route to) is answered with the gateway
//!   MAC, as the kernel's `proxy_arp` does; on an L3-only network every request is
//!   answered that way, including for addresses of the same subnet — all traffic then
//!   goes through switchyard, as with ipvlan in L3 mode.
//! * Learning (the kernel's rules): a request addressed to switchyard tells it the
//!   sender's MAC (entry created or updated); a reply to switchyard confirms an entry
//!   (REACHABLE) and releases the packets waiting for it (`ip4-neighbor`'s queue); a
//!   gratuitous ARP (sender IP = target IP) updates an existing entry but creates none.
//!   Only senders inside the network's subnet are learned. On an L3 network and on
//!   one with port security, an endpoint's own address is bound to its port: ARP from
//!   any other port claiming it is not learned (`neighbor_bind_refused`).
//! * Anything else addressed to the gateway MAC is not answered.
//!
//! Next: `l2-flood` (a broadcast, answered or not), the reply back out of the ingress
//! port, consumed (a reply to switchyard), or drop. Trace:
//! `arp-input: who-has 172.17.0.1 tell 172.17.0.2: gateway of default, replying 02:42:ac:11:00:01 to port a`

use super::ip4_neighbor;
use crate::pipeline::counters::counted;
use crate::pipeline::events::{Report, TableChange};
use crate::pipeline::graph::L2;
use crate::pipeline::neighbor::{LearnOutcome, Learned};
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{Action, DomainId, DomainMode, DropReason, Emitter, Frame, Pipeline, PortId};
use crate::wire::arp::{self, ArpOp};
use crate::wire::ethernet::{self, write_header};
use crate::wire::{ArpPacket, EtherType, MacAddr};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "arp-input";

counted! {
    /// Why arp-input drops a frame.
    pub enum Drop: DropReason in NAME {
        ArpMalformed => ("arp_malformed", "malformed or non-Ethernet/IPv4 ARP"),
        ArpNotForUs => ("arp_not_for_us", "ARP to switchyard's MAC for an address it does not own or proxy"),
    }
}

counted! {
    /// What arp-input counts.
    pub enum Event: Event in NAME {
        ArpReplies => ("arp_replies", "ARP replies sent for switchyard's addresses"),
        ProxyArpReplies => ("proxy_arp_replies", "ARP replies sent for proxied addresses"),
        NeighborBindRefused => ("neighbor_bind_refused", "ARP claiming an endpoint's address from another port: not learned"),
    }
}

/// Where a frame goes from arp-input.
pub enum Next {
    /// A broadcast, flooded on; `answered` if switchyard replied to it.
    L2Flood {
        answered: bool,
    },
    /// Answered in place: the frame goes back out of its ingress port.
    Reply,
    /// A reply to switchyard, taken.
    Consume,
    Drop(DropReason),
}

/// Why switchyard answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Gateway,
    Proxy,
}

impl Answer {
    fn event(self) -> Event {
        match self {
            Answer::Gateway => Event::ArpReplies,
            Answer::Proxy => Event::ProxyArpReplies,
        }
    }
}

/// What arp-input says about an ARP packet.
pub enum Trace<'a> {
    NotEthernetIpv4,
    NotForSwitchyard {
        op: ArpOp,
        tpa: Ipv4Addr,
        spa: Ipv4Addr,
    },
    NoBuffer {
        tpa: Ipv4Addr,
        spa: Ipv4Addr,
    },
    /// A reply made for a broadcast request: `bridge` is set when answering for the
    /// gateway of that network, unset for proxy ARP.
    Replied {
        tpa: Ipv4Addr,
        spa: Ipv4Addr,
        bridge: Option<&'a str>,
        mac: MacAddr,
        port: &'a str,
    },
    Malformed,
    NotOurs {
        tpa: Ipv4Addr,
        spa: Ipv4Addr,
    },
    RepliedInPlace {
        tpa: Ipv4Addr,
        spa: Ipv4Addr,
        mac: MacAddr,
    },
    ReplyConsumed {
        spa: Ipv4Addr,
        sha: MacAddr,
    },
    UnknownOp(u16),
    Resolved {
        ip: Ipv4Addr,
        mac: MacAddr,
        released: u8,
    },
    NewNeighbor {
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    NeighborMoved {
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    Bound {
        ip: Ipv4Addr,
        owner: &'a str,
        port: &'a str,
    },
    /// What-if: what learning the sender would do to the neighbor table.
    WouldLearn {
        ip: Ipv4Addr,
        mac: MacAddr,
        would: LearnOutcome,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::NotEthernetIpv4 => f.write_str("not Ethernet/IPv4 ARP; not for switchyard"),
            Trace::NotForSwitchyard { op, tpa, spa } => {
                write!(f, "{op:?} for {tpa} from {spa}: not for switchyard")
            }
            Trace::NoBuffer { tpa, spa } => {
                write!(f, "who-has {tpa} tell {spa}: no buffer for the reply")
            }
            Trace::Replied {
                tpa,
                spa,
                bridge,
                mac,
                port,
            } => {
                write!(f, "who-has {tpa} tell {spa}: ")?;
                match bridge {
                    Some(b) => write!(f, "gateway of {b}")?,
                    None => f.write_str("proxy ARP")?,
                }
                write!(f, ", replying {mac} to port {port}")
            }
            Trace::Malformed => f.write_str("malformed ARP to the gateway MAC: drop"),
            Trace::NotOurs { tpa, spa } => write!(
                f,
                "who-has {tpa} tell {spa}: not switchyard's address: drop"
            ),
            Trace::RepliedInPlace { tpa, spa, mac } => write!(
                f,
                "who-has {tpa} tell {spa} (unicast): replying {mac} in place"
            ),
            Trace::ReplyConsumed { spa, sha } => write!(f, "reply from {spa} ({sha}) consumed"),
            Trace::UnknownOp(n) => write!(f, "ARP operation {n}: drop"),
            Trace::Resolved { ip, mac, released } => write!(
                f,
                "{ip} is at {mac}: resolved, {released} packet(s) released"
            ),
            Trace::NewNeighbor { ip, mac } => write!(f, "neighbor {ip} is at {mac} (new entry)"),
            Trace::NeighborMoved { ip, mac } => write!(f, "neighbor {ip} moved to {mac}"),
            Trace::WouldLearn { ip, mac, would } => match would {
                LearnOutcome::Created => {
                    write!(f, "would learn neighbor {ip} at {mac} (new entry)")
                }
                LearnOutcome::Resolved { queued } => write!(
                    f,
                    "{ip} is at {mac}: would resolve it and release {queued} waiting packet(s)"
                ),
                LearnOutcome::Changed => write!(f, "neighbor {ip} would move to {mac}"),
                LearnOutcome::Refreshed => write!(
                    f,
                    "neighbor {ip} at {mac} already known: would be confirmed"
                ),
                LearnOutcome::Ignored => write!(
                    f,
                    "neighbor {ip} at {mac} would not be learned (unsolicited, or no room)"
                ),
            },
            Trace::Bound { ip, owner, port } => write!(
                f,
                "{ip} is the address of the endpoint on port {owner}: not learned from port {port}"
            ),
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    /// An ARP frame: a broadcast (from `l2-forward`) or one sent to the gateway MAC
    /// (from `l3-input`).
    pub(crate) fn arp_input<const DRY: bool>(
        &mut self,
        f: &mut Frame,
        l2: &L2,
        out: &mut Emitter,
    ) -> Next {
        if l2.dst.is_broadcast() {
            let answered = self.arp_broadcast::<DRY>(f, l2, out);
            Next::L2Flood { answered }
        } else {
            self.arp_unicast::<DRY>(f, l2, out)
        }
    }

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

    /// Learns the sender of an ARP packet seen on `domain`; a next hop that is now
    /// resolved has its waiting packets released at once.
    fn arp_learn<const DRY: bool>(
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
        // An endpoint's own address, on a network that knows its endpoints, is
        // learned from that endpoint's port only.
        if let Some(&owner) = self.sh.owners.get(&u32::from(ip)) {
            if owner != f.ingress && self.sh.ports[owner.index()].domain == domain {
                self.counters.event(Event::NeighborBindRefused);
                trace!(
                    self,
                    f,
                    Trace::Bound {
                        ip,
                        owner: self.port_name(owner),
                        port: self.port_name(f.ingress),
                    }
                );
                return;
            }
        }
        if DRY {
            let would = self.sh.neighbors.would_learn(ip, domain, mac, how);
            trace!(self, f, Trace::WouldLearn { ip, mac, would });
            return;
        }
        let learned = if self.events.is_on() {
            let (sh, log, now) = (&self.sh, &mut self.events, self.now);
            let mut put = |c| log.push(now, TableChange::Neighbor(c));
            sh.neighbors
                .learn_reporting(ip, domain, mac, how, now, Report::to(&mut put))
        } else {
            self.sh.neighbors.learn(ip, domain, mac, how, self.now)
        };
        self.settle_orphans();
        match learned {
            LearnOutcome::Resolved { queued } => {
                self.counters.event(ip4_neighbor::Event::NeighborsResolved);
                trace!(
                    self,
                    f,
                    Trace::Resolved {
                        ip,
                        mac,
                        released: queued,
                    }
                );
                self.work.clear();
                self.sh.neighbors.release(ip, &mut self.work);
                self.neighbor_work(out);
            }
            LearnOutcome::Created => trace!(self, f, Trace::NewNeighbor { ip, mac }),
            LearnOutcome::Changed => trace!(self, f, Trace::NeighborMoved { ip, mac }),
            LearnOutcome::Refreshed | LearnOutcome::Ignored => {}
        }
    }

    /// A broadcast ARP frame. Returns true if switchyard answered (the reply is queued
    /// in `out`); the frame itself is flooded on either way.
    fn arp_broadcast<const DRY: bool>(&mut self, f: &Frame, l2: &L2, out: &mut Emitter) -> bool {
        let Some(gw) = self.sh.domains[l2.domain.index()].spec.gateway else {
            return false;
        };
        let Ok(req) = ArpPacket::new_checked(f.network()) else {
            trace!(self, f, Trace::NotEthernetIpv4);
            return false;
        };
        let (op, sha, spa, tpa) = (req.op(), req.sender_mac(), req.sender_ip(), req.target_ip());
        if op == ArpOp::Request && tpa == gw.ip {
            self.arp_learn::<DRY>(f, l2.domain, spa, sha, Learned::Request, out);
        } else if spa == tpa || op == ArpOp::Reply {
            self.arp_learn::<DRY>(f, l2.domain, spa, sha, Learned::Unsolicited, out);
        }
        let answer = if op == ArpOp::Request {
            self.arp_answer(l2.domain, spa, tpa)
        } else {
            None
        };
        let Some(answer) = answer else {
            trace!(self, f, Trace::NotForSwitchyard { op, tpa, spa });
            return false;
        };
        let Some(reply) = self.emit(out) else {
            trace!(self, f, Trace::NoBuffer { tpa, spa });
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
        reply.tunnel = f.tunnel;
        reply.trace = f.trace;
        self.counters.event(answer.event());
        trace!(
            self,
            f,
            Trace::Replied {
                tpa,
                spa,
                bridge: (answer == Answer::Gateway)
                    .then(|| self.sh.domains[l2.domain.index()].spec.name.as_str()),
                mac: gw.mac,
                port: self.port_name(f.ingress),
            }
        );
        true
    }

    /// A unicast ARP frame to the gateway MAC.
    fn arp_unicast<const DRY: bool>(&mut self, f: &mut Frame, l2: &L2, out: &mut Emitter) -> Next {
        let gw = self.sh.domains[l2.domain.index()]
            .spec
            .gateway
            .expect("frames reach L3 only through their network's gateway MAC");
        let Ok(pkt) = ArpPacket::new_checked(f.network()) else {
            trace!(self, f, Trace::Malformed);
            return Next::Drop(Drop::ArpMalformed.into());
        };
        let (op, sha, spa, tpa) = (pkt.op(), pkt.sender_mac(), pkt.sender_ip(), pkt.target_ip());
        match op {
            ArpOp::Request => {
                if tpa == gw.ip {
                    self.arp_learn::<DRY>(f, l2.domain, spa, sha, Learned::Request, out);
                }
                let Some(answer) = self.arp_answer(l2.domain, spa, tpa) else {
                    trace!(self, f, Trace::NotOurs { tpa, spa });
                    return Next::Drop(Drop::ArpNotForUs.into());
                };
                ArpPacket::new_unchecked(f.network_mut()).make_reply(gw.mac);
                let mut eth = f.ethernet_mut();
                eth.set_dst(l2.src);
                eth.set_src(gw.mac);
                f.vnet = Default::default();
                self.counters.event(answer.event());
                trace!(
                    self,
                    f,
                    Trace::RepliedInPlace {
                        tpa,
                        spa,
                        mac: gw.mac,
                    }
                );
                Next::Reply
            }
            ArpOp::Reply => {
                self.arp_learn::<DRY>(f, l2.domain, spa, sha, Learned::Reply, out);
                trace!(self, f, Trace::ReplyConsumed { spa, sha });
                Next::Consume
            }
            ArpOp::Other(n) => {
                trace!(self, f, Trace::UnknownOp(n));
                Next::Drop(Drop::ArpMalformed.into())
            }
        }
    }
}
