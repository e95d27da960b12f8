//! What-if traces: a frame made up by the user runs through the live tables as if it
//! had arrived, and the pipeline says what it would do to it — without doing any of it
//! (Open vSwitch's `ofproto/trace`).
//!
//! The walk is the dataplane's own ([`graph`](super::graph)), compiled a second time
//! in its dry-run mode: every stage that would change a table asks the table what the
//! change would be instead (`Fdb::would_learn`, `ConnTrack::lookup_preview` and
//! `would_insert`, `NeighborTable::would_resolve` and `would_learn`,
//! `IcmpLimiter::would_allow`) and says it in its trace line ("would learn ...",
//! "would be tracked and masqueraded ..."). So nothing is learned, refreshed, tracked,
//! reserved, held or charged; the frames switchyard would make (ARP replies and
//! requests, ICMP errors, fragments) go to a scratch emitter and are described, never
//! sent. The walk runs on a pipeline of its own over the shared tables, so no worker's
//! counters move either.

use super::trace::TraceRecord;
use super::{Action, Emitter, Frame, Pipeline, PortId, Timestamp};
use crate::wire::icmp::kind;
use crate::wire::{
    ArpPacket, EtherType, EthernetFrame, IcmpPacket, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};
use std::fmt::Write;

/// Buffers of the scratch emitter: enough for the fragments of the largest packet
/// into the smallest MTU a network is given.
const SCRATCH_BUFFERS: usize = 64;

/// What a what-if trace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIf {
    /// The frame as it arrived: port, addresses, protocol, length.
    pub summary: String,
    /// One line per stage, in order; the frames switchyard would send meanwhile are
    /// the last lines (stage `emit`).
    pub lines: Vec<TraceRecord>,
    /// The verdict the dataplane would reach.
    pub action: Action,
    /// The verdict in words: where the frame would go, or why it would be dropped.
    pub verdict: String,
}

impl Pipeline {
    /// Runs `frame` (which arrived on `frame.ingress`) through the live tables at time
    /// `now` without changing them, and tells what would happen to it. The frame is
    /// left as the walk made it (rewritten for its way out, or the reply switchyard
    /// would send in its place).
    pub fn what_if(&self, frame: &mut Frame, now: Timestamp) -> WhatIf {
        let ingress = frame.ingress;
        let summary = format!("port {}: {}", self.port_name(ingress), describe(frame.data()));
        let before = Endpoints::of(frame.data());
        // A pipeline of its own: its counters, tracer and scratch state are thrown
        // away afterwards, and it runs no timer.
        let mut p = self.worker();
        p.now = now;
        p.tracer.start(1, Some(ingress));
        frame.forget_pipeline_meta();
        let mut out = Emitter::with_capacity(SCRATCH_BUFFERS);
        let action = p.walk::<true>(frame, &mut out);
        frame.action = action;
        for e in out.frames() {
            let to = match e.action {
                Action::Forward(port) => format!("to port {}", self.port_name(port)),
                Action::Flood(d) => format!("flooded on {}", self.sh.domains[d.index()].spec.name),
                _ => String::from("nowhere"),
            };
            p.tracer
                .add(1, "emit", format!("would send {} {to}", describe(e.data())));
        }
        let lines = p.tracer.drain();
        let verdict = p.verdict(frame, action, before);
        WhatIf {
            summary,
            lines,
            action,
            verdict,
        }
    }

    /// The verdict in words, for a frame whose walk ended in `action`; `before` is
    /// what its headers said when it arrived.
    fn verdict(&self, f: &Frame, action: Action, before: Option<Endpoints>) -> String {
        let ingress = f.ingress;
        let arp = EthernetFrame::new_checked(f.data())
            .is_ok_and(|e| e.ethertype() == EtherType::ARP);
        match action {
            Action::Drop(r) => format!("dropped ({}): {}", r.id(), r.text()),
            Action::Consume if arp => "consumed: an ARP reply to switchyard".to_string(),
            Action::Consume => "consumed by switchyard".to_string(),
            Action::Reply if arp => format!(
                "consumed: ARP request answered, the reply sent back to port {}",
                self.port_name(ingress)
            ),
            Action::Reply => format!(
                "consumed: ping answered, the echo reply sent back to port {}",
                self.port_name(ingress)
            ),
            Action::Held => match self.what_if_hop {
                Some(ip) => format!("held: would wait for ARP resolution of {ip}"),
                None => "held: would wait for ARP resolution of its next hop".to_string(),
            },
            Action::Forward(_) | Action::Flood(_) => {
                let routed = before.as_ref().is_some_and(|b| b.mac_src != Endpoints::mac_src_of(f.data()));
                let mut s = String::new();
                match action {
                    Action::Forward(port) if routed => {
                        let _ = write!(s, "routed to port {}", self.port_name(port));
                    }
                    Action::Forward(port) => {
                        let _ = write!(s, "sent to port {} (unicast)", self.port_name(port));
                    }
                    _ => {
                        let ports: Vec<&str> = self
                            .egress(f)
                            .map(|p: PortId| self.port_name(p))
                            .collect();
                        let how = if routed { "routed and flooded" } else { "flooded" };
                        let _ = write!(s, "{how} to ports {}", list(&ports));
                    }
                }
                let after = Endpoints::of(f.data());
                if let (Some(b), Some(a)) = (before, after) {
                    if b.l3 != a.l3 {
                        let _ = write!(s, ", translated from {} to {}", b.l3, a.l3);
                    }
                }
                s
            }
        }
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "(none: no other port on the network)".to_string()
    } else {
        names.join(", ")
    }
}

/// What a frame's headers say about where it goes: its source MAC, and its IPv4
/// addresses and ports in words (`10.1.0.2:40000 > 198.51.100.2:80`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    mac_src: Option<crate::wire::MacAddr>,
    l3: String,
}

impl Endpoints {
    fn of(frame: &[u8]) -> Option<Endpoints> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let (_, at) = eth.payload_type().ok()?;
        let ip = Ipv4Packet::new_checked(frame.get(at..)?).ok()?;
        let ports = match ip.protocol() {
            _ if ip.is_later_fragment() => None,
            IpProtocol::TCP => TcpPacket::new_checked(ip.payload())
                .ok()
                .map(|t| (t.src_port(), t.dst_port())),
            IpProtocol::UDP => UdpPacket::new_checked(ip.payload())
                .ok()
                .map(|u| (u.src_port(), u.dst_port())),
            _ => None,
        };
        let l3 = match ports {
            Some((s, d)) => format!("{}:{s} > {}:{d}", ip.src(), ip.dst()),
            None => format!("{} > {}", ip.src(), ip.dst()),
        };
        Some(Endpoints {
            mac_src: Some(eth.src()),
            l3,
        })
    }

    fn mac_src_of(frame: &[u8]) -> Option<crate::wire::MacAddr> {
        EthernetFrame::new_checked(frame).ok().map(|e| e.src())
    }
}

/// A frame in one line, as tcpdump would put it:
/// `02:00:00:00:00:05 > 02:00:00:00:00:01, IPv4 10.1.0.5:40000 > 10.2.0.3:80 tcp [SYN], ttl 64, 54 bytes`.
pub fn describe(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("{} bytes, shorter than an Ethernet header", frame.len());
    };
    let mut s = format!("{} > {}, ", eth.src(), eth.dst());
    let Ok((ethertype, at)) = eth.payload_type() else {
        let _ = write!(s, "truncated VLAN tag, {} bytes", frame.len());
        return s;
    };
    let payload = &frame[at..];
    if ethertype == EtherType::ARP {
        match ArpPacket::new_checked(payload) {
            Ok(a) if a.op() == crate::wire::arp::ArpOp::Request => {
                let _ = write!(s, "ARP who-has {} tell {}", a.target_ip(), a.sender_ip());
            }
            Ok(a) if a.op() == crate::wire::arp::ArpOp::Reply => {
                let _ = write!(
                    s,
                    "ARP reply {} is-at {} (to {})",
                    a.sender_ip(),
                    a.sender_mac(),
                    a.target_ip()
                );
            }
            Ok(a) => {
                let _ = write!(s, "ARP {:?}", a.op());
            }
            Err(_) => s.push_str("malformed ARP"),
        }
    } else if ethertype == EtherType::IPV4 {
        match Ipv4Packet::new_checked(payload) {
            Ok(ip) => {
                let _ = write!(s, "IPv4 {}", describe_ipv4(&ip));
            }
            Err(e) => {
                let _ = write!(s, "malformed IPv4 ({e})");
            }
        }
    } else {
        let _ = write!(s, "{ethertype}");
    }
    let _ = write!(s, ", {} bytes", frame.len());
    s
}

fn describe_ipv4(ip: &Ipv4Packet<&[u8]>) -> String {
    let (src, dst) = (ip.src(), ip.dst());
    let mut s = String::new();
    match ip.protocol() {
        _ if ip.is_later_fragment() => {
            let _ = write!(s, "{src} > {dst} {} (fragment)", ip.protocol());
        }
        IpProtocol::TCP => match TcpPacket::new_checked(ip.payload()) {
            Ok(t) => {
                let _ = write!(
                    s,
                    "{src}:{} > {dst}:{} tcp [{}]",
                    t.src_port(),
                    t.dst_port(),
                    t.flags()
                );
            }
            Err(_) => {
                let _ = write!(s, "{src} > {dst} tcp (truncated)");
            }
        },
        IpProtocol::UDP => match UdpPacket::new_checked(ip.payload()) {
            Ok(u) => {
                let _ = write!(s, "{src}:{} > {dst}:{} udp", u.src_port(), u.dst_port());
            }
            Err(_) => {
                let _ = write!(s, "{src} > {dst} udp (truncated)");
            }
        },
        IpProtocol::ICMP => match IcmpPacket::new_checked(ip.payload()) {
            Ok(i) => {
                let what = match (i.msg_type(), i.code()) {
                    (kind::ECHO_REQUEST, _) => "echo request".to_string(),
                    (kind::ECHO_REPLY, _) => "echo reply".to_string(),
                    (kind::TIME_EXCEEDED, _) => "time exceeded".to_string(),
                    (kind::DEST_UNREACHABLE, c) => format!("destination unreachable (code {c})"),
                    (t, c) => format!("type {t} code {c}"),
                };
                let _ = write!(s, "{src} > {dst} icmp {what}");
            }
            Err(_) => {
                let _ = write!(s, "{src} > {dst} icmp (truncated)");
            }
        },
        p => {
            let _ = write!(s, "{src} > {dst} {p}");
        }
    }
    let _ = write!(s, ", ttl {}", ip.ttl());
    if ip.dont_fragment() {
        s.push_str(", DF");
    }
    s
}
