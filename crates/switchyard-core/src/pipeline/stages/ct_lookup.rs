//! Stage `ct-lookup`: which tracked flow a packet belongs to, before it is routed.
//!
//! switchyard does itself the two translations Docker sets up with iptables, with
//! connection tracking as netfilter keeps it ([`ConnTrack`](crate::pipeline::ConnTrack)),
//! in three stages placed where the kernel's hooks are:
//! * `ct-lookup` (PREROUTING), here: finds the packet's flow — a published port
//!   changes where the packet goes, so this comes before routing;
//! * `nat-snat` (POSTROUTING): starts a masqueraded flow — it depends on the egress
//!   network, so it comes after routing;
//! * `nat-rewrite` (on output): rewrites the bytes — after the forwarding checks, so
//!   an ICMP error switchyard sends about a translated packet quotes it as its sender
//!   sent it.
//!
//! The translations:
//! * **Masquerade (SNAT).** A new flow from a network with `masquerade` that is routed
//!   out of the external network leaves with switchyard's uplink address as its source
//!   (`-j MASQUERADE`; see `nat-snat`).
//! * **Published ports (DNAT).** A new flow to the uplink address on a published port
//!   goes to the endpoint's port (`-p 8080:80`), and is started here. When the client
//!   is itself inside (hairpin: an endpoint using another's published address), its
//!   source is also rewritten to the gateway address of the network the flow goes to,
//!   so the reply comes back through switchyard instead of straight to the client, who
//!   would not recognise it.
//! * **Everything after the first packet** follows the conntrack entry: replies are
//!   translated back, and only tracked flows may cross from the external network in
//!   (the return half of a masqueraded flow, or a published port).
//! * **ICMP errors** about a tracked flow (port unreachable, fragmentation needed, time
//!   exceeded from beyond the uplink) are found by the packet they quote, and both the
//!   error and its quote are translated (`nat-rewrite`), so the error reaches the right
//!   endpoint and makes sense to it.
//!
//! Only flows that are translated are tracked, and only when there is an external
//! network. A TCP flow is started by a SYN only (netfilter's default for NAT), and a
//! TCP packet out of state for its flow is counted but passed, as netfilter passes
//! INVALID packets unless a rule drops them. A TCP segment outside its connection's
//! windows (netfilter's `tcp_in_window`), such as a blind RST, is dropped and
//! changes nothing: netfilter leaves it without its conntrack, so it would not be
//! translated back to the endpoint either.
//!
//! Next: `ip4-local` (an untracked packet to one of switchyard's addresses),
//! `ip4-forward` (towards the header's destination, or where the tracked flow goes),
//! or drop. Trace: `ct-lookup: reply flow tcp 10.1.0.2:40000 > 198.51.100.2:80
//! (Tcp(Established)): to 10.1.0.2:40000`

use super::ip4_forward;
use super::nat_snat;
use crate::pipeline::conntrack::{
    starts_connection, CtRef, Dir, InsertError, Miss, PacketFlow, ProtoState, Segment, TcpState,
    TcpVerdict, Tuple,
};
use crate::pipeline::counters::counted;
use crate::pipeline::events::{Report, TableChange};
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{Conn, DomainId, DropReason, Frame, Pipeline};
use crate::wire::IpProtocol;
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "ct-lookup";

counted! {
    /// Why ct-lookup drops a packet.
    pub enum Drop: DropReason in NAME {
        ConntrackFull => ("conntrack_full", "conntrack table full and no unassured entry to evict"),
        ConntrackInvalid => ("conntrack_invalid", "TCP packet that neither starts nor belongs to a tracked connection"),
        ConntrackNetworkFull => ("conntrack_network_full", "the network's share of the conntrack table (its conntrack_max) full, and none of its unassured entries to evict"),
        ConntrackOutOfWindow => ("conntrack_out_of_window", "TCP segment of a tracked connection outside its window, or a RST out of sequence (the connection is left as it was)"),
    }
}

counted! {
    /// What ct-lookup counts (new flows are counted here whichever stage starts them).
    pub enum Event: Event in NAME {
        CtNew => ("ct_new", "connections tracked"),
        CtEvicted => ("ct_evicted", "unassured connections evicted to make room (early drop)"),
        CtTcpInvalid => ("ct_tcp_invalid", "TCP packets out of state for their connection (passed)"),
        DnatFlows => ("dnat_flows", "flows to published ports"),
        CtZoneMismatch => ("ct_zone_mismatch", "packets with a tracked flow's tuple from another network than the flow's (handled as untracked)"),
        CtRelatedMismatch => ("ct_related_mismatch", "ICMP errors quoting a tracked flow but not from its network or not to its endpoint (handled as untracked)"),
    }
}

/// Where a packet goes from ct-lookup.
pub enum Next {
    /// Not tracked, and for one of switchyard's own addresses.
    Ip4Local,
    /// To be routed towards this address: the header's destination, or where the
    /// packet's tracked flow goes (`Frame::ct` is then set).
    Ip4Forward(Ipv4Addr),
    Drop(DropReason),
}

/// What ct-lookup says about a packet.
pub enum Trace {
    Tracked {
        dir: Dir,
        flow: Tuple,
        state: ProtoState,
        to: Ipv4Addr,
        port: u16,
    },
    OutOfWindow {
        dir: Dir,
        flow: Tuple,
        state: ProtoState,
    },
    NotSyn(Tuple),
    CannotTrack {
        flow: Tuple,
        reason: DropReason,
    },
    Published {
        flow: Tuple,
        target: Ipv4Addr,
        target_port: u16,
        /// The client's translated source, when it is inside too.
        hairpin: Option<(Ipv4Addr, u16)>,
        /// What-if: the flow would be tracked, and is not.
        would: bool,
    },
    /// What-if: how the packet would change its flow's entry.
    WouldUpdate {
        was: ProtoState,
        state: ProtoState,
        expires_in: u64,
    },
    /// What-if: the table is full, and an unassured flow would be evicted.
    WouldEvict,
    Related {
        flow: Tuple,
        to: Ipv4Addr,
    },
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Tracked {
                dir,
                flow,
                state,
                to,
                port,
            } => {
                let dir = match dir {
                    Dir::Original => "original",
                    Dir::Reply => "reply",
                };
                write!(f, "{dir} flow {flow} ({state:?}): to {to}:{port}")
            }
            Trace::OutOfWindow { dir, flow, state } => write!(
                f,
                "{} segment of {flow} ({state:?}) out of window: drop, connection unchanged",
                match dir {
                    Dir::Original => "original",
                    Dir::Reply => "reply",
                }
            ),
            Trace::NotSyn(t) => write!(f, "{t}: not a SYN, and no connection: drop"),
            Trace::CannotTrack { flow, reason } => {
                write!(f, "{flow}: cannot track a new flow: drop ({reason})")
            }
            Trace::Published {
                flow,
                target,
                target_port,
                hairpin,
                would,
            } => {
                let tracked = if *would {
                    ", would be tracked (no entry made)"
                } else {
                    ""
                };
                write!(
                    f,
                    "new flow {flow} to a published port{tracked}: DNAT to {target}:{target_port}"
                )?;
                match hairpin {
                    Some((src, sport)) => write!(f, ", SNAT to {src}:{sport} (hairpin)"),
                    None => Ok(()),
                }
            }
            Trace::WouldUpdate {
                was,
                state,
                expires_in,
            } => {
                if was == state {
                    write!(f, "would stay {state:?}")?;
                } else {
                    write!(f, "would go from {was:?} to {state:?}")?;
                }
                write!(f, ", timeout reset to {expires_in} s (entry unchanged)")
            }
            Trace::WouldEvict => {
                f.write_str("table full: an unassured flow would be evicted to make room")
            }
            Trace::Related { flow, to } => write!(f, "ICMP error about flow {flow}: to {to}"),
        }
    }
}

impl TraceLine for Trace {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    /// Finds the packet's flow, or starts one for a published port.
    pub(crate) fn ct_lookup<const DRY: bool>(&mut self, f: &mut Frame, l2: &L2) -> Next {
        let ip = f.ipv4();
        let dst = ip.dst();
        // Without an external network nothing is translated, so nothing is tracked.
        let Some(ext) = self.sh.external else {
            return self.untracked(dst);
        };
        let (t, seg) = match PacketFlow::of(&ip) {
            PacketFlow::Flow(t, seg) => (t, seg),
            PacketFlow::IcmpError(quoted) => return self.ct_related(f, l2, quoted, dst),
            PacketFlow::Fragment | PacketFlow::Other => return self.untracked(dst),
        };
        let (now, len) = (self.now, f.len());
        // A flow's direction is matched only from the network it is expected from
        // (its zone); from any other network the packet is untracked, and isolation
        // applies to it as to any packet.
        let tracked = if DRY {
            self.sh
                .conntrack
                .lookup_preview(&t, l2.domain, len, &seg, now)
        } else {
            // Through this worker's cache of the index: the same answer, with only the
            // entry's lock when the cache knows the flow (see `ct_cache.rs`).
            let (sh, log, cache) = (&self.sh, &mut self.events, &mut self.ct_cache);
            let (found, answered) = if log.is_on() {
                let mut put = |c| log.push(now, TableChange::from(c));
                sh.conntrack.lookup_update_cached(
                    cache,
                    &t,
                    l2.domain,
                    len,
                    &seg,
                    now,
                    Report::to(&mut put),
                )
            } else {
                sh.conntrack.lookup_update_cached(
                    cache,
                    &t,
                    l2.domain,
                    len,
                    &seg,
                    now,
                    Report::off(),
                )
            };
            self.counters
                .event(crate::pipeline::ct_cache::cache_event(answered));
            found
        };
        if DRY && tracked.is_err() {
            let gone = self.sh.conntrack.expired_entry(&t, now);
            if let Some(w) = self.what_if.as_mut() {
                w.gone = gone;
            }
        }
        if matches!(tracked, Err(Miss::OtherZone)) {
            self.counters.event(Event::CtZoneMismatch);
        }
        if let Ok((r, c, verdict)) = tracked {
            match verdict {
                TcpVerdict::Invalid => self.counters.event(Event::CtTcpInvalid),
                TcpVerdict::OutOfWindow => {
                    trace!(
                        self,
                        f,
                        Trace::OutOfWindow {
                            dir: r.dir,
                            flow: c.orig,
                            state: c.state,
                        }
                    );
                    return Next::Drop(Drop::ConntrackOutOfWindow.into());
                }
                TcpVerdict::Ok(_) => {}
            }
            let to = c.translated(r.dir);
            trace!(
                self,
                f,
                Trace::Tracked {
                    dir: r.dir,
                    flow: c.orig,
                    state: c.state,
                    to: to.dst,
                    port: to.dport,
                }
            );
            if DRY {
                trace!(self, f, {
                    let was = self.sh.conntrack.get(r).map_or(c.state, |old| old.state);
                    Trace::WouldUpdate {
                        was,
                        state: c.state,
                        expires_in: c.expires.saturating_sub(now.0) / 1_000_000_000,
                    }
                });
            }
            f.ct = Some(r);
            return Next::Ip4Forward(to.dst);
        }
        // A new flow to a published port of the uplink address?
        let uplink = self.sh.domains[ext.index()].spec.gateway.map(|g| g.ip);
        if Some(t.dst) != uplink || t.proto == IpProtocol::ICMP {
            return self.untracked(dst);
        }
        let Some(&(target, target_port)) = self.sh.publish.get(&(t.proto, t.dport)) else {
            return self.untracked(dst);
        };
        if t.proto == IpProtocol::TCP && !starts_connection(seg.flags) {
            trace!(self, f, Trace::NotSyn(t));
            return Next::Drop(Drop::ConntrackInvalid.into());
        }
        // The flow's replies come from the network of the target.
        let no_route = Next::Drop(ip4_forward::Drop::NoRoute.into());
        let Some(egress) = self.sh.fib.lookup(target).map(|r| r.next_hop.domain()) else {
            return no_route;
        };
        // Hairpin: a client inside also gets its source rewritten, to the gateway of
        // the network the flow goes to, so that the reply returns through switchyard.
        let (src, sport) = if l2.domain == ext {
            (t.src, t.sport)
        } else {
            let Some(gw) = self.sh.domains[egress.index()].spec.gateway else {
                return no_route;
            };
            let port = self.sh.conntrack.pick_port_except(
                t.proto,
                target,
                target_port,
                gw.ip,
                t.sport,
                self.sh.port_range,
                self.what_if_gone::<DRY>(),
            );
            match port {
                Some(p) => (gw.ip, p),
                None => return Next::Drop(nat_snat::Drop::NatExhausted.into()),
            }
        };
        let reply = Tuple {
            proto: t.proto,
            src: target,
            sport: target_port,
            dst: src,
            dport: sport,
        };
        let state = if t.proto == IpProtocol::TCP {
            ProtoState::Tcp(TcpState::SynSent)
        } else {
            ProtoState::Udp { replied: false }
        };
        let zone = [l2.domain, egress];
        let tracked = if DRY {
            self.ct_would_insert(f, t, reply, zone, state, &seg)
                .map(|()| None)
        } else {
            self.ct_insert(t, reply, zone, state).map(Some)
        };
        let r = match tracked {
            Ok(r) => r,
            Err(reason) => {
                trace!(self, f, Trace::CannotTrack { flow: t, reason });
                return Next::Drop(reason);
            }
        };
        if let Some(r) = r {
            self.sh.conntrack.seen(r, len, &seg, now);
        }
        self.counters.event(Event::DnatFlows);
        trace!(
            self,
            f,
            Trace::Published {
                flow: t,
                target,
                target_port,
                hairpin: (src != t.src).then_some((src, sport)),
                would: DRY,
            }
        );
        f.ct = r;
        Next::Ip4Forward(target)
    }

    /// An untracked packet is for switchyard if it is addressed to one of its own
    /// addresses (the gateway of any network, as a Linux host answers on all of its
    /// addresses), and routed otherwise.
    fn untracked(&self, dst: Ipv4Addr) -> Next {
        if self.sh.local.contains_key(&u32::from(dst)) {
            Next::Ip4Local
        } else {
            Next::Ip4Forward(dst)
        }
    }

    /// An ICMP error: is it about a tracked flow? The quoted packet was sent after
    /// translation, so a reply to it has the tuple of one of the flow's two directions,
    /// and the error travels as that reply would. It is *related* only if it also
    /// arrives as that reply would: from the network the quoted packet went to (the
    /// direction's zone), and addressed to the flow's endpoint there (the address its
    /// sender is known by on that side). Anything else is an untracked packet: an
    /// error about a flow of one network cannot be aimed into another.
    fn ct_related(&mut self, f: &mut Frame, l2: &L2, quoted: Tuple, outer_dst: Ipv4Addr) -> Next {
        let Some((r, c)) = self.sh.conntrack.lookup(&quoted.reversed(), self.now) else {
            return self.untracked(outer_dst);
        };
        let (from, to) = c.tuples(r.dir);
        if c.zone(r.dir) != l2.domain || outer_dst != from.dst {
            self.counters.event(Event::CtRelatedMismatch);
            return self.untracked(outer_dst);
        }
        let dst = to.src;
        trace!(
            self,
            f,
            Trace::Related {
                flow: c.orig,
                to: dst
            }
        );
        f.ct = Some(r);
        f.ct_related = true;
        Next::Ip4Forward(dst)
    }

    /// What-if: whether a new flow would be tracked (for ct-lookup's published ports
    /// and nat-snat's masquerade alike). Nothing is put in the table; the entry the
    /// flow would get is kept for the rest of the walk (`nat-rewrite` translates by it).
    pub(crate) fn ct_would_insert(
        &mut self,
        f: &Frame,
        orig: Tuple,
        reply: Tuple,
        zone: [DomainId; 2],
        state: ProtoState,
        seg: &Segment,
    ) -> Result<(), DropReason> {
        let evicts = self
            .sh
            .conntrack
            .would_insert(&orig, &reply, zone, self.now, self.what_if_gone::<true>())
            .map_err(|e| -> DropReason {
                match e {
                    InsertError::Full => Drop::ConntrackFull.into(),
                    InsertError::ZoneFull => Drop::ConntrackNetworkFull.into(),
                    InsertError::Clash => nat_snat::Drop::NatExhausted.into(),
                }
            })?;
        if evicts {
            trace!(self, f, Trace::WouldEvict);
        }
        let c = self
            .sh
            .conntrack
            .preview_new(orig, reply, zone, state, f.len(), seg, self.now);
        if let Some(w) = self.what_if.as_mut() {
            w.ct = Some(c);
        }
        Ok(())
    }

    /// In a what-if, the expired entry the real packet's lookup would have removed
    /// (see `DryRun::gone`); never any in the dataplane's walk.
    #[inline]
    pub(crate) fn what_if_gone<const DRY: bool>(&self) -> Option<&Conn> {
        if DRY {
            self.what_if.as_ref().and_then(|w| w.gone.as_ref())
        } else {
            None
        }
    }

    /// Tracks a new flow (for ct-lookup's published ports and nat-snat's masquerade
    /// alike), counting it and any unassured flow evicted to make room.
    pub(crate) fn ct_insert(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        zone: [DomainId; 2],
        state: ProtoState,
    ) -> Result<CtRef, DropReason> {
        let now = self.now;
        let inserted = if self.events.is_on() {
            let (sh, log) = (&self.sh, &mut self.events);
            let mut put = |c| log.push(now, TableChange::from(c));
            sh.conntrack
                .insert_reporting(orig, reply, zone, state, now, Report::to(&mut put))
        } else {
            self.sh.conntrack.insert(orig, reply, zone, state, now)
        };
        let (r, evicted) = inserted.map_err(|e| -> DropReason {
            match e {
                InsertError::Full => Drop::ConntrackFull.into(),
                InsertError::ZoneFull => Drop::ConntrackNetworkFull.into(),
                // A tuple of the new flow is taken: as good as no port left.
                InsertError::Clash => nat_snat::Drop::NatExhausted.into(),
            }
        })?;
        if evicted {
            self.counters.event(Event::CtEvicted);
        }
        self.counters.event(Event::CtNew);
        if self.events.is_on() {
            if let Some(c) = self.sh.conntrack.get(r) {
                self.events.push(now, TableChange::ConnNew(c));
            }
        }
        Ok(r)
    }
}
