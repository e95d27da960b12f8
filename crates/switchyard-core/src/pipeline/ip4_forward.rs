//! Stages `ip4-forward`, `ip4-neighbor`, `ip4-output` and `ip4-fragment`: routing a
//! packet that came in on one network towards its destination.
//!
//! In order, as RFC 1812 section 5.2 lists a router's duties:
//! 1. TTL: a packet with TTL ≤ 1 is not forwarded; ICMP time exceeded goes back.
//! 2. Lookup: longest-prefix match in the FIB; no route → ICMP net unreachable.
//! 3. Isolation: between two different networks only if an `[[allow]]` rule joins
//!    them (dropped silently otherwise, like Docker's isolation rules).
//! 4. MTU: over the egress MTU with DF set → ICMP fragmentation needed, carrying the
//!    next-hop MTU (this is what makes path MTU discovery work); without DF the packet
//!    is fragmented on output.
//! 5. TTL is decremented (checksum patched incrementally, RFC 1624).
//! 6. Neighbor: the next hop's MAC from the neighbor table; unknown → the packet
//!    waits in a small queue while an ARP request goes out.
//! 7. Output: both MACs rewritten (the gateway's MAC as source), fragmented if needed,
//!    and sent like any bridged frame of the egress network (FDB lookup or flood).
//!
//! Trace: `ip4-lookup: 10.2.0.2 via 10.2.0.0/24 (connected, network back)`,
//! `ip4-neighbor: 10.2.0.2 unresolved: queued (1 waiting), ARP request sent`.

use super::fragment;
use super::icmp_error::{self, ErrorSource, IcmpError};
use super::neighbor::{Held, Resolve, TickWork};
use super::trace::note;
use super::{
    lock, Action, DomainId, DropReason, Emitter, Event, Frame, NextHop, Pipeline, PortId, L2,
};
use crate::wire::arp::{self, ArpOp};
use crate::wire::ethernet::{self, write_header};
use crate::wire::icmp::{code, kind};
use crate::wire::{checksum, gso, ArpPacket, EtherType, MacAddr};
use std::net::Ipv4Addr;

const FORWARD: &str = "ip4-forward";
const LOOKUP: &str = "ip4-lookup";
const NEIGHBOR: &str = "ip4-neighbor";
const OUTPUT: &str = "ip4-output";
const ICMP: &str = "icmp-error";

impl Pipeline {
    /// Routes the packet in `f` towards `dst`: its header's destination, or where
    /// connection tracking says it goes.
    pub(super) fn ip4_forward(
        &mut self,
        f: &mut Frame,
        l2: &L2,
        dst: Ipv4Addr,
        out: &mut Emitter,
    ) -> Action {
        let ip = f.ipv4();
        let (ttl, total, df) = (ip.ttl(), ip.total_len(), ip.dont_fragment());

        if ttl <= 1 {
            note!(
                self,
                f,
                FORWARD,
                "TTL {ttl} would expire: drop, time exceeded to {}",
                ip.src()
            );
            self.icmp_error(f, l2.domain, kind::TIME_EXCEEDED, 0, out);
            return Action::Drop(DropReason::TtlExpired);
        }
        let Some(route) = self.sh.fib.lookup(dst).copied() else {
            note!(self, f, LOOKUP, "no route to {dst}: drop, net unreachable");
            self.icmp_error(
                f,
                l2.domain,
                kind::DEST_UNREACHABLE,
                code::NET_UNREACHABLE,
                out,
            );
            return Action::Drop(DropReason::NoRoute);
        };
        let egress = route.next_hop.domain();
        if f.trace != 0 {
            let how = match route.next_hop {
                NextHop::Connected { .. } => "connected".to_string(),
                NextHop::Via { gateway, .. } => format!("via {gateway}"),
            };
            note!(
                self,
                f,
                LOOKUP,
                "{dst} matches {} ({how}, network {})",
                route.prefix,
                self.sh.domains[egress.index()].spec.name
            );
        }
        // Isolation: tracked flows (replies to masqueraded flows, published ports) and
        // new flows about to be masqueraded pass; others need an [[allow]].
        let masquerading = f.ct.is_none()
            && Some(egress) == self.sh.external
            && egress != l2.domain
            && self.sh.domains[l2.domain.index()].spec.masquerade;
        if f.ct.is_none() && !masquerading && !self.allowed(l2.domain, egress) {
            note!(
                self,
                f,
                FORWARD,
                "networks {} and {} are not joined by [[allow]]: drop",
                self.sh.domains[l2.domain.index()].spec.name,
                self.sh.domains[egress.index()].spec.name
            );
            return Action::Drop(DropReason::Isolated);
        }
        let mtu = usize::from(self.sh.domains[egress.index()].spec.mtu);
        // A super-frame leaves as segments: each of those must fit, not the whole.
        let total = if f.vnet.is_gso() {
            gso::segment_network_len(f.data(), &f.vnet).unwrap_or(total)
        } else {
            total
        };
        if total > mtu && df {
            note!(
                self,
                f,
                FORWARD,
                "{total} bytes over MTU {mtu} of {} with DF: drop, fragmentation needed",
                self.sh.domains[egress.index()].spec.name
            );
            self.icmp_error_mtu(f, l2.domain, mtu as u16, out);
            return Action::Drop(DropReason::FragNeeded);
        }
        if masquerading {
            if let Err(r) = self.ct_snat(f, l2, egress) {
                return Action::Drop(r);
            }
        }
        f.ipv4_mut().set_ttl(ttl - 1);
        self.counters.event(Event::Routed);

        let next = route.next_hop.neighbor(dst);
        match self.sh.neighbors.resolve(next, egress, self.now, f) {
            Resolve::Mac(mac) => self.ip4_output(f, egress, mac, out, 0),
            Resolve::MacAndProbe(mac) => {
                note!(
                    self,
                    f,
                    NEIGHBOR,
                    "{next} is stale: re-confirming with a unicast ARP request"
                );
                self.send_arp_request(egress, next, Some(mac), out);
                self.ip4_output(f, egress, mac, out, 0)
            }
            Resolve::Queued { request, evicted } => {
                // `f` now holds a spare buffer; the packet waits in the table.
                if request {
                    self.send_arp_request(egress, next, None, out);
                }
                if let Some(old) = evicted {
                    self.drop_held(old, DropReason::NeighborQueueFull);
                }
                let waiting = self.sh.neighbors.get(next).map_or(0, |n| n.queued());
                note!(
                    self,
                    f,
                    NEIGHBOR,
                    "{next} unresolved: queued ({waiting} waiting){}",
                    if request { ", ARP request sent" } else { "" }
                );
                Action::Held
            }
            Resolve::TableFull => {
                note!(self, f, NEIGHBOR, "neighbor table full: drop");
                Action::Drop(DropReason::NeighborTableFull)
            }
            Resolve::NoBuffer => {
                note!(
                    self,
                    f,
                    NEIGHBOR,
                    "no buffer left to queue for {next}: drop"
                );
                Action::Drop(DropReason::NoBuffer)
            }
        }
    }

    /// Rewrites the MACs, fragments if the packet exceeds the egress MTU, and sends it
    /// like a bridged frame of `domain`. Fragments beyond the first go to `out`, which
    /// must keep `reserve` buffers free for the caller.
    pub(super) fn ip4_output(
        &mut self,
        f: &mut Frame,
        domain: DomainId,
        mac: MacAddr,
        out: &mut Emitter,
        reserve: usize,
    ) -> Action {
        if let Err(r) = self.nat_rewrite(f) {
            return Action::Drop(r);
        }
        let d = &self.sh.domains[domain.index()].spec;
        let gw_mac = d
            .gateway
            .expect("routes only lead to networks with a gateway")
            .mac;
        let mtu = usize::from(d.mtu);
        let mut eth = f.ethernet_mut();
        eth.set_dst(mac);
        eth.set_src(gw_mac);
        let action = match self.sh.fdb.lookup(domain, mac) {
            Some(p) => Action::Forward(p),
            None => Action::Flood(domain),
        };
        let total = f.len() - usize::from(f.l3);
        let mut fragments = 0;
        if f.vnet.is_gso() {
            if gso::segment_network_len(f.data(), &f.vnet).is_some_and(|n| n > mtu) {
                // Without DF (with DF, ip4-forward has answered frag needed). A TCP
                // super-frame is a byte stream cut at the sender's chosen size: cut it
                // smaller, so every segment fits, rather than fragment each segment as
                // the kernel does. A UDP super-frame's segments are datagrams, whose
                // size is not ours to change.
                match gso::segment_headers(f.data(), &f.vnet) {
                    Some((headers, true)) if mtu > headers => {
                        let mss = (mtu - headers) as u16;
                        note!(self, f, OUTPUT, "super-frame's segments exceed MTU {mtu} without DF: segment size {} lowered to {mss}", f.vnet.gso_size);
                        f.vnet.gso_size = mss;
                        self.counters.event(Event::GsoSegmentSizeLowered);
                    }
                    _ => {
                        note!(
                            self,
                            f,
                            OUTPUT,
                            "UDP super-frame's datagrams exceed MTU {mtu} without DF: drop"
                        );
                        return Action::Drop(DropReason::GsoOverMtu);
                    }
                }
            }
        } else if total > mtu {
            match self.fragment(f, mtu, action, out, reserve) {
                Ok(n) => fragments = n,
                Err(r) => {
                    note!(self, f, OUTPUT, "cannot fragment: drop");
                    return Action::Drop(r);
                }
            }
        }
        if f.trace != 0 {
            let to = match action {
                Action::Forward(p) => format!("port {}", self.port_name(p)),
                _ => format!(
                    "all ports of {} (MAC not in the FDB)",
                    self.sh.domains[domain.index()].spec.name
                ),
            };
            let frag = if fragments > 0 {
                format!(", as {fragments} fragments")
            } else {
                String::new()
            };
            note!(self, f, OUTPUT, "{} > {} to {to}{frag}", gw_mac, mac);
        }
        action
    }

    /// Splits the IPv4 packet in `f` to fit `mtu`: `f` keeps the first fragment, the
    /// others are emitted with the same `action`. Returns the number of fragments.
    fn fragment(
        &mut self,
        f: &mut Frame,
        mtu: usize,
        action: Action,
        out: &mut Emitter,
        reserve: usize,
    ) -> Result<usize, DropReason> {
        // A checksum left to the receiver cannot be completed once the datagram is
        // in pieces: finish it now.
        if f.vnet.needs_csum() {
            let (start, off) = (
                usize::from(f.vnet.csum_start),
                usize::from(f.vnet.csum_offset),
            );
            checksum::complete_partial(f.data_mut(), start, off);
            f.vnet = Default::default();
        }
        let l3 = usize::from(f.l3);
        let ip = f.ipv4();
        let hlen = ip.header_len();
        let payload = ip.total_len() - hlen;
        let (orig_off, orig_mf) = (ip.frag_offset(), ip.more_fragments());
        let first = fragment::chunk_size(mtu, hlen);
        let mut later_hdr = [0u8; 60];
        let later_hlen = ip.copy_for_fragment(&mut later_hdr);
        let later = fragment::chunk_size(mtu, later_hlen);
        if first == 0 || later == 0 {
            return Err(DropReason::NoBuffer);
        }
        let rest = payload.saturating_sub(first);
        let count = 1 + rest.div_ceil(later);
        if out.available() < count - 1 + reserve {
            return Err(DropReason::NoBuffer);
        }
        let (link, body) = (&f.data()[..l3], ip.payload());
        let mut pos = first;
        while pos < payload {
            let n = later.min(payload - pos);
            let slot = out.alloc().expect("counted above");
            slot.set_len(l3 + later_hlen + n);
            slot.l3 = f.l3;
            let b = slot.data_mut();
            // The same link header, the header later fragments carry, a piece of payload.
            b[..l3].copy_from_slice(link);
            b[l3..l3 + later_hlen].copy_from_slice(&later_hdr[..later_hlen]);
            b[l3 + later_hlen..].copy_from_slice(&body[pos..pos + n]);
            let more = pos + n < payload || orig_mf;
            fragment::finish_header(&mut slot.ipv4_mut(), later_hlen + n, orig_off + pos, more);
            slot.ingress = f.ingress;
            slot.trace = f.trace;
            slot.action = action;
            pos += n;
        }
        fragment::finish_header(&mut f.ipv4_mut(), hlen + first, orig_off, true);
        f.set_len(l3 + hlen + first);
        self.counters.event(Event::Fragmented);
        self.counters.event_n(Event::FragmentsSent, count as u64);
        Ok(count)
    }

    /// Sends an ICMP error about the packet in `f` (which arrived on `domain`) back to
    /// its sender, unless the silence rules or the rate limit say no.
    pub(super) fn icmp_error(
        &mut self,
        f: &Frame,
        domain: DomainId,
        kind_: u8,
        code_: u8,
        out: &mut Emitter,
    ) {
        self.send_icmp_error(
            f,
            domain,
            IcmpError {
                kind: kind_,
                code: code_,
                mtu: 0,
            },
            out,
        );
    }

    /// Sends "fragmentation needed" with the next-hop MTU about the packet in `f`.
    fn icmp_error_mtu(&mut self, f: &Frame, domain: DomainId, mtu: u16, out: &mut Emitter) {
        self.send_icmp_error(
            f,
            domain,
            IcmpError {
                kind: kind::DEST_UNREACHABLE,
                code: code::FRAG_NEEDED,
                mtu,
            },
            out,
        );
    }

    fn send_icmp_error(&mut self, f: &Frame, domain: DomainId, e: IcmpError, out: &mut Emitter) {
        let ip = f.ipv4();
        let what = icmp_error::describe(e.kind, e.code);
        if !icmp_error::may_answer(&ip, f.ethernet().dst()) {
            note!(
                self,
                f,
                ICMP,
                "no {what}: not sent about this packet (RFC 1812 4.3.2.7)"
            );
            return;
        }
        let Some(gw) = self.sh.domains[domain.index()].spec.gateway else {
            return;
        };
        let to = ip.src();
        if !lock(&self.sh.icmp).allow(to, self.now) {
            self.counters.event(Event::IcmpRateLimited);
            note!(self, f, ICMP, "{what} to {to} suppressed by the rate limit");
            return;
        }
        let ident = self.next_ident();
        let Some(slot) = out.alloc() else {
            self.counters.event(Event::NoBuffer);
            return;
        };
        icmp_error::build(
            slot,
            f.ethernet().src(),
            ip,
            e,
            ErrorSource {
                ip: gw.ip,
                mac: gw.mac,
            },
            ident,
        );
        slot.ingress = PortId::LOCAL;
        slot.action = Action::Forward(f.ingress);
        slot.trace = f.trace;
        self.counters.event(match (e.kind, e.code) {
            (kind::TIME_EXCEEDED, _) => Event::IcmpTimeExceeded,
            (_, code::FRAG_NEEDED) => Event::IcmpFragNeeded,
            (_, code::HOST_UNREACHABLE) => Event::IcmpHostUnreachable,
            _ => Event::IcmpNetUnreachable,
        });
        note!(self, f, ICMP, "{what} from {} to {to}", gw.ip);
    }

    /// Broadcasts an ARP request for `target` on `domain` (or unicasts it to `to`, to
    /// re-confirm a stale entry).
    pub(super) fn send_arp_request(
        &mut self,
        domain: DomainId,
        target: Ipv4Addr,
        to: Option<MacAddr>,
        out: &mut Emitter,
    ) {
        let Some(gw) = self.sh.domains[domain.index()].spec.gateway else {
            return;
        };
        let action = match to.and_then(|m| self.sh.fdb.lookup(domain, m)) {
            Some(p) => Action::Forward(p),
            None => Action::Flood(domain),
        };
        let Some(slot) = out.alloc() else {
            self.counters.event(Event::NoBuffer);
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
        self.counters.event(Event::ArpRequests);
    }

    /// Drops a packet that was waiting in a neighbor queue.
    fn drop_held(&mut self, held: Held, reason: DropReason) {
        let mut spare = self.scratch.take().expect("scratch frame is present");
        self.sh.neighbors.take(held, &mut spare);
        let port = spare.ingress;
        note!(self, spare, NEIGHBOR, "waited in vain: drop ({})", reason);
        self.scratch = Some(spare);
        self.settle_held(port, Action::Drop(reason));
    }

    /// Carries out the work the neighbor table handed back: requests to send, packets
    /// to release now that their next hop is known, packets whose next hop never
    /// answered.
    pub(super) fn neighbor_work(&mut self, out: &mut Emitter) {
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
                    if let Some(p) = self.sh.ports.get(port.index()) {
                        let domain = p.domain;
                        note!(
                            self,
                            f,
                            NEIGHBOR,
                            "next hop never answered: drop, host unreachable"
                        );
                        self.icmp_error(
                            &f,
                            domain,
                            kind::DEST_UNREACHABLE,
                            code::HOST_UNREACHABLE,
                            out,
                        );
                    }
                    self.scratch = Some(f);
                    self.counters.event(Event::NeighborsFailed);
                    self.settle_held(port, Action::Drop(DropReason::NeighborUnresolved));
                }
                TickWork::Release { held, mac, domain } => {
                    let mut f = self.scratch.take().expect("scratch frame is present");
                    self.sh.neighbors.take(held, &mut f);
                    let port = f.ingress;
                    let action = if out.available() == 0 {
                        self.counters.event(Event::NoBuffer);
                        Action::Drop(DropReason::NoBuffer)
                    } else {
                        note!(self, f, NEIGHBOR, "next hop answered ({mac}): released");
                        // One buffer stays free for the packet itself.
                        self.ip4_output(&mut f, domain, mac, out, 1)
                    };
                    f.action = action;
                    match out.alloc() {
                        Some(slot) if !matches!(action, Action::Drop(_)) => {
                            std::mem::swap(slot, &mut f)
                        }
                        _ => {}
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
