//! Stages `ct-lookup`, `nat-snat` and `nat-rewrite`: connection tracking and the two
//! translations Docker sets up with iptables, done by switchyard itself.
//!
//! * **Masquerade (SNAT).** A new flow from a network with `masquerade` that is routed
//!   out of the external network leaves with switchyard's uplink address as its source
//!   (`-j MASQUERADE`). The source port is kept when that leaves the flow unique, as the
//!   kernel does; otherwise another is picked from `nat_port_range`. No port left:
//!   [`DropReason::NatExhausted`].
//! * **Published ports (DNAT).** A new flow to the uplink address on a published port
//!   goes to the endpoint's port (`-p 8080:80`). When the client is itself inside
//!   (hairpin: an endpoint using another's published address), its source is also
//!   rewritten to the gateway address of the network the flow goes to, so the reply
//!   comes back through switchyard instead of straight to the client, who would not
//!   recognise it.
//! * **Everything after the first packet** follows the conntrack entry: replies are
//!   translated back, and only tracked flows may cross from the external network in
//!   (the return half of a masqueraded flow, or a published port).
//! * **ICMP errors** about a tracked flow (port unreachable, fragmentation needed, time
//!   exceeded from beyond the uplink) are found by the packet they quote, and both the
//!   error and its quote are translated, so the error reaches the right endpoint and
//!   makes sense to it.
//!
//! The flow is looked up before routing (`ct-lookup`, the kernel's PREROUTING: a
//! published port changes where the packet goes), masquerade is decided after routing
//! (`nat-snat`, POSTROUTING: it depends on the egress network), and the bytes are
//! rewritten last, on output (`nat-rewrite`) — after the forwarding checks, so an ICMP
//! error switchyard sends about a translated packet quotes it as its sender sent it.
//!
//! Only flows that are translated are tracked. TCP flows are created by a SYN only;
//! other protocols than TCP, UDP and ICMP echo, and fragments after the first, cannot
//! be translated (switchyard does not reassemble) and are dropped with a reason.

use super::conntrack::{
    starts_connection, CtRef, Dir, InsertError, PacketFlow, ProtoState, TcpState, TcpVerdict, Tuple,
};
use super::trace::note;
use super::{DomainId, DropReason, Event, Frame, Pipeline, L2};
use crate::wire::icmp::kind;
use crate::wire::nat::{self, Endpoints};
use crate::wire::{IcmpPacket, IpProtocol};
use std::net::Ipv4Addr;

const LOOKUP: &str = "ct-lookup";
const SNAT: &str = "nat-snat";
const REWRITE: &str = "nat-rewrite";
/// Ports tried before a new masqueraded flow gives up (the kernel tries 128).
const PORT_PROBES: u32 = 256;

/// What `ct-lookup` decided before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pre {
    /// Not a tracked flow: route on the header's destination.
    Untracked,
    /// Part of a tracked flow (`f.ct` is set): route to this destination.
    Tracked {
        dst: Ipv4Addr,
    },
    Drop(DropReason),
}

/// The addresses a packet of flow `c` travelling in `dir` leaves with.
fn translated(orig: &Tuple, reply: &Tuple, dir: Dir) -> Endpoints {
    match dir {
        Dir::Original => Endpoints {
            src: reply.dst,
            sport: reply.dport,
            dst: reply.src,
            dport: reply.sport,
        },
        Dir::Reply => Endpoints {
            src: orig.dst,
            sport: orig.dport,
            dst: orig.src,
            dport: orig.sport,
        },
    }
}

impl Pipeline {
    /// True when NAT is configured at all (an external network); otherwise nothing is tracked.
    #[inline]
    fn nat_enabled(&self) -> bool {
        self.sh.external.is_some()
    }

    /// `ct-lookup`: finds the packet's flow, or starts one for a published port.
    pub(super) fn ct_lookup(&mut self, f: &mut Frame, l2: &L2) -> Pre {
        if !self.nat_enabled() {
            return Pre::Untracked;
        }
        let now = self.now;
        let len = f.len();
        let ip = f.ipv4();
        let outer_dst = ip.dst();
        let (t, flags) = match PacketFlow::of(&ip) {
            PacketFlow::Flow(t, flags) => (t, flags),
            PacketFlow::IcmpError(quoted) => return self.ct_related(f, quoted, outer_dst),
            PacketFlow::Fragment | PacketFlow::Other => return Pre::Untracked,
        };
        if let Some((r, c, verdict)) = self.sh.conntrack.lookup_update(&t, len, flags, now) {
            if verdict == TcpVerdict::Invalid {
                self.counters.event(Event::CtTcpInvalid);
            }
            let to = translated(&c.orig, &c.reply, r.dir);
            note!(
                self,
                f,
                LOOKUP,
                "{} flow {} ({:?}): to {}:{}",
                if r.dir == Dir::Original {
                    "original"
                } else {
                    "reply"
                },
                c.orig,
                c.state,
                to.dst,
                to.dport
            );
            f.ct = Some(r);
            return Pre::Tracked { dst: to.dst };
        }
        // A new flow to a published port of the uplink address?
        let Some(ext) = self.sh.external else {
            return Pre::Untracked;
        };
        let uplink = self.sh.domains[ext.index()].spec.gateway.map(|g| g.ip);
        if Some(t.dst) != uplink || t.proto == IpProtocol::ICMP {
            return Pre::Untracked;
        }
        let Some(&(target, target_port)) = self.sh.publish.get(&(t.proto, t.dport)) else {
            return Pre::Untracked;
        };
        if t.proto == IpProtocol::TCP && !starts_connection(flags) {
            note!(self, f, LOOKUP, "{t}: not a SYN, and no connection: drop");
            return Pre::Drop(DropReason::ConntrackInvalid);
        }
        // Hairpin: a client inside also gets its source rewritten, to the gateway of
        // the network the flow goes to, so that the reply returns through switchyard.
        let (src, sport) = if l2.domain == ext {
            (t.src, t.sport)
        } else {
            let Some(egress) = self.sh.fib.lookup(target).map(|r| r.next_hop.domain()) else {
                return Pre::Drop(DropReason::NoRoute);
            };
            let Some(gw) = self.sh.domains[egress.index()].spec.gateway else {
                return Pre::Drop(DropReason::NoRoute);
            };
            match self.nat_port(t.proto, target, target_port, gw.ip, t.sport) {
                Some(p) => (gw.ip, p),
                None => return Pre::Drop(DropReason::NatExhausted),
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
        let r = match self.ct_insert(t, reply, state) {
            Ok(r) => r,
            Err(reason) => {
                note!(
                    self,
                    f,
                    LOOKUP,
                    "{t}: cannot track a new flow: drop ({reason})"
                );
                return Pre::Drop(reason);
            }
        };
        self.sh.conntrack.seen(r, len, flags, now);
        self.counters.event(Event::DnatFlows);
        note!(
            self,
            f,
            LOOKUP,
            "new flow {t} to a published port: DNAT to {target}:{target_port}{}",
            if src != t.src {
                format!(", SNAT to {src}:{sport} (hairpin)")
            } else {
                String::new()
            }
        );
        f.ct = Some(r);
        Pre::Tracked { dst: target }
    }

    /// An ICMP error: is it about a tracked flow? The quoted packet was sent after
    /// translation, so a reply to it has the tuple of one of the flow's two directions.
    fn ct_related(&mut self, f: &mut Frame, quoted: Tuple, outer_dst: Ipv4Addr) -> Pre {
        let Some((r, c)) = self.sh.conntrack.lookup(&quoted.reversed(), self.now) else {
            return Pre::Untracked;
        };
        // The error travels the way a reply to the quoted packet would.
        let (from, to) = match r.dir {
            Dir::Reply => (c.reply, c.orig),
            Dir::Original => (c.orig, c.reply),
        };
        let dst = if outer_dst == from.dst {
            to.src
        } else {
            outer_dst
        };
        note!(
            self,
            f,
            LOOKUP,
            "ICMP error about flow {}: to {dst}",
            c.orig
        );
        f.ct = Some(r);
        f.ct_related = true;
        Pre::Tracked { dst }
    }

    fn ct_insert(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        state: ProtoState,
    ) -> Result<CtRef, DropReason> {
        let (r, evicted) = self
            .sh
            .conntrack
            .insert(orig, reply, state, self.now)
            .map_err(|e| match e {
                InsertError::Full => DropReason::ConntrackFull,
                InsertError::Clash => DropReason::NatExhausted,
            })?;
        if evicted {
            self.counters.event(Event::CtEvicted);
        }
        self.counters.event(Event::CtNew);
        Ok(r)
    }

    /// A port for the translated source `new_src` of a flow to `dst:dport`: `want` if
    /// the resulting reply tuple is free, else one from the configured range.
    fn nat_port(
        &self,
        proto: IpProtocol,
        dst: Ipv4Addr,
        dport: u16,
        new_src: Ipv4Addr,
        want: u16,
    ) -> Option<u16> {
        let reply = |p: u16| Tuple {
            proto,
            src: dst,
            sport: if proto == IpProtocol::ICMP { p } else { dport },
            dst: new_src,
            dport: p,
        };
        if !self.sh.conntrack.tuple_in_use(&reply(want)) {
            return Some(want);
        }
        let (lo, hi) = self.sh.port_range;
        let n = u32::from(hi - lo) + 1;
        // Start at a point derived from the flow, so different flows spread out.
        let seed = u32::from(dst).wrapping_mul(2_654_435_761)
            ^ u32::from(want).wrapping_mul(40503)
            ^ u32::from(dport);
        (0..n.min(PORT_PROBES))
            .map(|k| lo + ((seed.wrapping_add(k)) % n) as u16)
            .find(|&p| !self.sh.conntrack.tuple_in_use(&reply(p)))
    }

    /// `nat-snat`: after routing, a new flow from a masquerading network leaving by the
    /// external network is given the uplink address as its source. Returns true if the
    /// packet is (now) part of a tracked flow.
    pub(super) fn ct_snat(
        &mut self,
        f: &mut Frame,
        l2: &L2,
        egress: DomainId,
    ) -> Result<bool, DropReason> {
        if f.ct.is_some() {
            return Ok(true);
        }
        if Some(egress) != self.sh.external
            || egress == l2.domain
            || !self.sh.domains[l2.domain.index()].spec.masquerade
        {
            return Ok(false);
        }
        let uplink = self.sh.domains[egress.index()]
            .spec
            .gateway
            .expect("external networks have a gateway")
            .ip;
        let len = f.len();
        let ip = f.ipv4();
        let (t, flags) = match PacketFlow::of(&ip) {
            PacketFlow::Flow(t, flags) => (t, flags),
            PacketFlow::Fragment => {
                note!(
                    self,
                    f,
                    SNAT,
                    "fragment of a flow to masquerade (no reassembly): drop"
                );
                return Err(DropReason::NatFragment);
            }
            PacketFlow::IcmpError(_) | PacketFlow::Other => {
                note!(
                    self,
                    f,
                    SNAT,
                    "{} cannot be masqueraded: drop",
                    ip.protocol()
                );
                return Err(DropReason::NatUnsupported);
            }
        };
        if t.proto == IpProtocol::TCP && !starts_connection(flags) {
            note!(self, f, SNAT, "{t}: not a SYN, and no connection: drop");
            return Err(DropReason::ConntrackInvalid);
        }
        if t.proto == IpProtocol::ICMP
            && IcmpPacket::new_checked(ip.payload()).map(|i| i.msg_type()) != Ok(kind::ECHO_REQUEST)
        {
            return Err(DropReason::NatUnsupported);
        }
        let Some(port) = self.nat_port(t.proto, t.dst, t.dport, uplink, t.sport) else {
            note!(self, f, SNAT, "{t}: no free port on {uplink}: drop");
            return Err(DropReason::NatExhausted);
        };
        let reply = Tuple {
            proto: t.proto,
            src: t.dst,
            sport: if t.proto == IpProtocol::ICMP {
                port
            } else {
                t.dport
            },
            dst: uplink,
            dport: port,
        };
        let state = match t.proto {
            IpProtocol::TCP => ProtoState::Tcp(TcpState::SynSent),
            IpProtocol::UDP => ProtoState::Udp { replied: false },
            _ => ProtoState::Icmp,
        };
        let r = self.ct_insert(t, reply, state)?;
        self.sh.conntrack.seen(r, len, flags, self.now);
        self.counters.event(Event::SnatFlows);
        if port != t.sport {
            self.counters.event(Event::SnatPortChanged);
        }
        note!(
            self,
            f,
            SNAT,
            "new flow {t}: masquerade as {uplink}:{port}{}",
            if port != t.sport {
                " (source port taken)"
            } else {
                ""
            }
        );
        f.ct = Some(r);
        Ok(true)
    }

    /// `nat-rewrite`: on output, gives a tracked packet its translated addresses and ports.
    pub(super) fn nat_rewrite(&mut self, f: &mut Frame) -> Result<(), DropReason> {
        let Some(r) = f.ct else { return Ok(()) };
        let Some(c) = self.sh.conntrack.get(r) else {
            note!(self, f, REWRITE, "its connection is gone: drop");
            return Err(DropReason::ConntrackGone);
        };
        let (orig, reply) = (c.orig, c.reply);
        if f.ct_related {
            // An ICMP error travels like a reply to the packet it quotes.
            let (from, to) = match r.dir {
                Dir::Reply => (reply, orig),
                Dir::Original => (orig, reply),
            };
            let mut ip = f.ipv4_mut();
            let (osrc, odst) = (ip.src(), ip.dst());
            let outer_src = if osrc == from.src { to.dst } else { osrc };
            let outer_dst = if odst == from.dst { to.src } else { odst };
            let inner = Endpoints {
                src: to.src,
                sport: to.sport,
                dst: to.dst,
                dport: to.dport,
            };
            nat::rewrite_icmp_error(&mut ip, outer_src, outer_dst, inner)
                .map_err(|_| DropReason::NatUnsupported)?;
            self.counters.event(Event::IcmpErrorsTranslated);
            note!(
                self,
                f,
                REWRITE,
                "ICMP error: {outer_src} > {outer_dst}, quote {}:{} > {}:{}",
                inner.src,
                inner.sport,
                inner.dst,
                inner.dport
            );
            return Ok(());
        }
        let to = translated(&orig, &reply, r.dir);
        // With checksum offload, the checksum from the transport header on is partial.
        let partial = f.vnet.needs_csum() && f.vnet.csum_start == f.l4;
        nat::rewrite(&mut f.ipv4_mut(), to, partial).map_err(|_| DropReason::NatUnsupported)?;
        note!(
            self,
            f,
            REWRITE,
            "{}:{} > {}:{}",
            to.src,
            to.sport,
            to.dst,
            to.dport
        );
        Ok(())
    }
}
