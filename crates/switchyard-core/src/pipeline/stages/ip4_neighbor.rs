//! Stage `ip4-neighbor`: the MAC of a routed packet's next hop (RFC 826, RFC 1122
//! 2.3.2.2), from the neighbor table.
//!
//! A REACHABLE or PROBE entry gives the MAC at once; a STALE one too, while a unicast
//! ARP request re-confirms it (the kernel's NUD). An unknown next hop makes the packet
//! wait in a small queue — its buffer swapped for a spare, never copied — while an ARP
//! request goes out; a full queue pushes its oldest packet out, as Linux does with
//! `unres_qlen`. The wait ends in `arp-input`, when the reply comes (the packets walk
//! on from `nat-rewrite`), or on the timer, when the retries are spent (each packet
//! gets ICMP host unreachable from `icmp-error`). [`Pipeline::neighbor_work`] carries
//! out both, and sends the timer's retransmissions. When the network's share of the
//! table or of the held buffers is used up, its oldest unresolved entry is evicted
//! to make room, and the packets it held are dropped (`neighbor_evicted`). An entry
//! forgotten because its endpoint or network was removed drops its packets too
//! (`neighbor_flushed`), as does a release towards a network the layout no longer has.
//!
//! Next: `nat-rewrite` with the next hop's MAC, held, or drop. Trace:
//! `ip4-neighbor: 10.2.0.2 unresolved: queued (1 waiting), ARP request sent`

use super::icmp_error::IcmpError;
use crate::pipeline::counters::counted;
use crate::pipeline::events::{Report, TableChange};
use crate::pipeline::graph::{Adjacency, Hop};
use crate::pipeline::neighbor::{Held, Orphaned, Resolve, TickWork, WouldResolve};
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{Action, DomainId, DropReason, Emitter, Frame, Pipeline, PortId};
use crate::wire::arp::{self, ArpOp};
use crate::wire::ethernet::{self, write_header};
use crate::wire::icmp::{code, kind};
use crate::wire::{ArpPacket, EtherType, MacAddr};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "ip4-neighbor";

counted! {
    /// Why ip4-neighbor drops a packet.
    pub enum Drop: DropReason in NAME {
        NeighborQueueFull => ("neighbor_queue_full", "pushed out of a full queue while the next hop was resolved"),
        NeighborUnresolved => ("neighbor_unresolved", "next hop did not answer ARP"),
        NeighborTableFull => ("neighbor_table_full", "neighbor table full"),
        NoBuffer => ("no_buffer", "no free buffer to queue the packet or its fragments"),
        NeighborEvicted => ("neighbor_evicted", "waiting for a next hop whose unresolved entry was evicted to make room"),
        NeighborFlushed => ("neighbor_flushed", "waiting for a next hop on a network or endpoint that was removed"),
    }
}

counted! {
    /// What ip4-neighbor counts.
    pub enum Event: Event in NAME {
        ArpRequests => ("arp_requests", "ARP requests sent to resolve next hops"),
        NeighborsResolved => ("neighbors_resolved", "next hops resolved"),
        NeighborsFailed => ("neighbors_failed", "next hops that did not answer"),
    }
}

/// Where a packet goes from ip4-neighbor.
pub enum Next {
    /// The next hop's MAC is known.
    NatRewrite(Adjacency),
    /// Waiting in the next hop's queue (the frame now holds a spare buffer).
    Held,
    Drop(DropReason),
}

/// What ip4-neighbor says about a packet.
pub enum Trace {
    Probe(Ipv4Addr),
    Queued {
        next_hop: Ipv4Addr,
        waiting: usize,
        requested: bool,
    },
    TableFull,
    NoBuffer(Ipv4Addr),
    WaitedInVain(DropReason),
    NeverAnswered,
    Released(MacAddr),
    /// What-if: the packet would wait for its next hop.
    WouldHold {
        next_hop: Ipv4Addr,
        waiting: usize,
        request: bool,
        evicts: Option<Ipv4Addr>,
        pushes_out: bool,
    },
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Probe(ip) => {
                write!(f, "{ip} is stale: re-confirming with a unicast ARP request")
            }
            Trace::Queued {
                next_hop,
                waiting,
                requested,
            } => {
                write!(f, "{next_hop} unresolved: queued ({waiting} waiting)")?;
                if *requested {
                    f.write_str(", ARP request sent")?;
                }
                Ok(())
            }
            Trace::TableFull => f.write_str("neighbor table full: drop"),
            Trace::NoBuffer(ip) => write!(f, "no buffer left to queue for {ip}: drop"),
            Trace::WaitedInVain(reason) => write!(f, "waited in vain: drop ({reason})"),
            Trace::NeverAnswered => f.write_str("next hop never answered: drop, host unreachable"),
            Trace::Released(mac) => write!(f, "next hop answered ({mac}): released"),
            Trace::WouldHold {
                next_hop,
                waiting,
                request,
                evicts,
                pushes_out,
            } => {
                write!(f, "next hop {next_hop} unresolved: would ")?;
                if *request {
                    f.write_str("send an ARP request and ")?;
                }
                write!(f, "hold the packet ({waiting} already waiting)")?;
                if let Some(ip) = evicts {
                    write!(f, "; the entry of {ip} would be evicted to make room")?;
                }
                if *pushes_out {
                    f.write_str("; the oldest waiting packet would be dropped")?;
                }
                Ok(())
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
    /// Finds the MAC of `hop`, or queues the packet while it is asked for.
    pub(crate) fn ip4_neighbor<const DRY: bool>(
        &mut self,
        f: &mut Frame,
        hop: Hop,
        out: &mut Emitter,
    ) -> Next {
        if DRY {
            return self.ip4_neighbor_would(f, hop, out);
        }
        let adjacency = |mac| {
            Next::NatRewrite(Adjacency {
                domain: hop.domain,
                mac,
            })
        };
        let resolved = if self.events.is_on() {
            let (sh, log, now) = (&self.sh, &mut self.events, self.now);
            let mut put = |c| log.push(now, TableChange::Neighbor(c));
            sh.neighbors
                .resolve_reporting(hop.ip, hop.domain, now, f, Report::to(&mut put))
        } else {
            self.sh.neighbors.resolve(hop.ip, hop.domain, self.now, f)
        };
        self.settle_orphans();
        match resolved {
            Resolve::Mac(mac) => adjacency(mac),
            Resolve::MacAndProbe(mac) => {
                trace!(self, f, Trace::Probe(hop.ip));
                self.send_arp_request(hop.domain, hop.ip, Some(mac), out);
                adjacency(mac)
            }
            Resolve::Queued { request, evicted } => {
                // `f` now holds a spare buffer; the packet waits in the table.
                if request {
                    self.send_arp_request(hop.domain, hop.ip, None, out);
                }
                if let Some(old) = evicted {
                    self.drop_held(old, Drop::NeighborQueueFull.into());
                }
                let waiting = self.sh.neighbors.get(hop.ip).map_or(0, |n| n.queued());
                trace!(
                    self,
                    f,
                    Trace::Queued {
                        next_hop: hop.ip,
                        waiting,
                        requested: request,
                    }
                );
                Next::Held
            }
            Resolve::TableFull => {
                trace!(self, f, Trace::TableFull);
                Next::Drop(Drop::NeighborTableFull.into())
            }
            Resolve::NoBuffer => {
                trace!(self, f, Trace::NoBuffer(hop.ip));
                Next::Drop(Drop::NoBuffer.into())
            }
        }
    }

    /// What-if: what resolving `hop` would do. The ARP request it would send goes to
    /// `out` (a scratch emitter, never sent); no entry is made and nothing is held.
    fn ip4_neighbor_would(&mut self, f: &Frame, hop: Hop, out: &mut Emitter) -> Next {
        let adjacency = |mac| {
            Next::NatRewrite(Adjacency {
                domain: hop.domain,
                mac,
            })
        };
        match self.sh.neighbors.would_resolve(hop.ip, hop.domain) {
            WouldResolve::Mac(mac) => adjacency(mac),
            WouldResolve::MacAndProbe(mac) => {
                trace!(self, f, Trace::Probe(hop.ip));
                self.send_arp_request(hop.domain, hop.ip, Some(mac), out);
                adjacency(mac)
            }
            WouldResolve::Held {
                request,
                waiting,
                evicts,
                pushes_out,
            } => {
                if request {
                    self.send_arp_request(hop.domain, hop.ip, None, out);
                }
                trace!(
                    self,
                    f,
                    Trace::WouldHold {
                        next_hop: hop.ip,
                        waiting,
                        request,
                        evicts,
                        pushes_out,
                    }
                );
                if let Some(w) = self.what_if.as_mut() {
                    w.hop = Some(hop.ip);
                }
                Next::Held
            }
            WouldResolve::TableFull => {
                trace!(self, f, Trace::TableFull);
                Next::Drop(Drop::NeighborTableFull.into())
            }
            WouldResolve::NoBuffer => {
                trace!(self, f, Trace::NoBuffer(hop.ip));
                Next::Drop(Drop::NoBuffer.into())
            }
        }
    }

    /// Broadcasts an ARP request for `target` on `domain` (or unicasts it to `to`, to
    /// re-confirm a stale entry).
    fn send_arp_request(
        &mut self,
        domain: DomainId,
        target: Ipv4Addr,
        to: Option<MacAddr>,
        out: &mut Emitter,
    ) {
        // A network gone from the layout (its entries not yet forgotten) has no
        // gateway to ask from.
        let Some(gw) = self
            .sh
            .domains
            .get(domain.index())
            .and_then(|d| d.spec.gateway)
        else {
            return;
        };
        let (action, vtep) = match to.and_then(|m| self.fdb_via(domain, m)) {
            Some((p, vtep)) => (Action::Forward(p), vtep),
            None => (Action::Flood(domain), None),
        };
        let Some(slot) = self.emit(out) else {
            return;
        };
        slot.set_len(ethernet::HEADER_LEN + ArpPacket::<&[u8]>::LEN);
        let b = slot.data_mut();
        write_header(b, to.unwrap_or(MacAddr::BROADCAST), gw.mac, EtherType::ARP);
        arp::write(
            &mut b[ethernet::HEADER_LEN..],
            ArpOp::Request,
            gw.mac,
            gw.ip,
            MacAddr::ZERO,
            target,
        );
        slot.ingress = PortId::LOCAL;
        slot.action = action;
        slot.tunnel = vtep;
        self.counters.event(Event::ArpRequests);
    }

    /// Accounts the packets dropped because the entry they waited on was evicted to
    /// make room (by this worker's last call into the table, or another's), or
    /// forgotten with the endpoint or network it was of.
    pub(crate) fn settle_orphans(&mut self) {
        while let Some((port, why)) = self.sh.neighbors.take_orphan() {
            let reason = match why {
                Orphaned::Evicted => Drop::NeighborEvicted,
                Orphaned::Flushed => Drop::NeighborFlushed,
            };
            self.settle_held(port, Action::Drop(reason.into()));
        }
    }

    /// Drops a packet that was waiting in a neighbor queue.
    fn drop_held(&mut self, held: Held, reason: DropReason) {
        let mut spare = self.scratch.take().expect("scratch frame is present");
        self.sh.neighbors.take(held, &mut spare);
        let port = spare.ingress;
        trace!(self, spare, Trace::WaitedInVain(reason));
        let packet = spare.trace;
        self.scratch = Some(spare);
        self.settle_trace(packet, port, Action::Drop(reason));
        self.settle_held(port, Action::Drop(reason));
    }

    /// Carries out the work the neighbor table handed back (in `self.work`): requests
    /// to send, packets to release now that their next hop is known, packets whose
    /// next hop never answered.
    pub(crate) fn neighbor_work(&mut self, out: &mut Emitter) {
        let mut i = 0;
        while i < self.work.len() {
            let w = self.work[i];
            i += 1;
            match w {
                TickWork::Request { ip, domain, to } => self.send_arp_request(domain, ip, to, out),
                TickWork::Unreachable(h) => {
                    let mut f = self.scratch.take().expect("scratch frame is present");
                    self.sh.neighbors.take(h, &mut f);
                    let port = f.ingress;
                    let unresolved = Drop::NeighborUnresolved.into();
                    let action = match self.port_domain(port) {
                        Some(domain) => {
                            trace!(self, f, Trace::NeverAnswered);
                            let error =
                                IcmpError::new(kind::DEST_UNREACHABLE, code::HOST_UNREACHABLE);
                            self.walk_from_icmp_error::<false>(&f, domain, error, unresolved, out)
                        }
                        // Made by switchyard itself, or from a port that is gone:
                        // there is no one to tell.
                        None => Action::Drop(unresolved),
                    };
                    let packet = f.trace;
                    self.scratch = Some(f);
                    self.counters.event(Event::NeighborsFailed);
                    self.settle_trace(packet, port, action);
                    self.settle_held(port, action);
                }
                TickWork::Release { held, mac, domain } => {
                    let mut f = self.scratch.take().expect("scratch frame is present");
                    self.sh.neighbors.take(held, &mut f);
                    let port = f.ingress;
                    // Its next hop's network is gone from this layout (the entry is
                    // not yet forgotten): nowhere to send it.
                    let on_layout = self
                        .sh
                        .domains
                        .get(domain.index())
                        .is_some_and(|d| d.spec.gateway.is_some());
                    // No buffer to send it in: counted by `emit`, dropped here.
                    let action = if !on_layout {
                        trace!(self, f, Trace::WaitedInVain(Drop::NeighborFlushed.into()));
                        Action::Drop(Drop::NeighborFlushed.into())
                    } else if self.emit_room(out) {
                        trace!(self, f, Trace::Released(mac));
                        // One buffer stays free for the packet itself.
                        self.walk_from_nat_rewrite::<false>(
                            &mut f,
                            Adjacency { domain, mac },
                            1,
                            out,
                        )
                    } else {
                        Action::Drop(Drop::NoBuffer.into())
                    };
                    f.action = action;
                    self.settle_trace(f.trace, port, action);
                    // A slot is taken only for a packet that leaves: a slot taken and
                    // left as it was would send its last occupant again.
                    if !matches!(action, Action::Drop(_)) {
                        if let Some(slot) = out.alloc() {
                            std::mem::swap(slot, &mut f)
                        }
                    }
                    // The emitter slot's old buffer (or the dropped packet's) is the new spare.
                    self.scratch = Some(f);
                    self.settle_held(port, action);
                }
            }
        }
        self.work.clear();
    }
}
