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

use super::trace::{summarize, FrameTrace};
use super::{Action, Conn, Emitter, Frame, Pipeline, PortId, Timestamp};
use crate::wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// What a what-if walk finds out on the way, for the stages after and the verdict.
#[derive(Debug, Default)]
pub(crate) struct DryRun {
    /// The flow the packet would start: it is not put in the table, so the frame has
    /// no reference to it, and `nat-rewrite` translates by this copy.
    pub ct: Option<Conn>,
    /// The next hop the packet would wait for.
    pub hop: Option<Ipv4Addr>,
    /// An expired entry of the packet's tuple, which the real packet's lookup would
    /// remove: what comes after treats its tuples and its place as free.
    pub gone: Option<Conn>,
}

/// Buffers of the scratch emitter: enough for the fragments of the largest packet
/// into the smallest MTU a network is given.
const SCRATCH_BUFFERS: usize = 64;

impl Pipeline {
    /// Runs `frame` (which arrived on `frame.ingress`) through the live tables at time
    /// `now` without changing them, and tells what would happen to it: the trace of
    /// the frame, as a live trace has it (its summary, a line per stage, the frames
    /// switchyard would send meanwhile as lines of stage `emit`, the verdict). The
    /// frame is left as the walk made it (rewritten for its way out, or the answer
    /// switchyard would send in its place), its `action` the verdict.
    pub fn what_if(&self, frame: &mut Frame, now: Timestamp) -> FrameTrace {
        let before = Endpoints::of(frame.data());
        // A pipeline of its own: its counters, tracer and scratch state are thrown
        // away afterwards, and it runs no timer. It sees this one frame, so it traces
        // whatever port the frame turns out to be on (a trunk's frame becomes its
        // VLAN's port's in vlan-input).
        let mut p = self.worker();
        p.now = now;
        p.what_if = Some(Box::default());
        p.tracer.start(1, &[]);
        frame.forget_pipeline_meta();
        let mut out = Emitter::with_capacity(SCRATCH_BUFFERS);
        // As a live frame: vlan-input first, which may refuse it or move it to the
        // port of its tag.
        let refused = match p.vlan_input(frame) {
            super::stages::vlan_input::Next::EthernetInput => None,
            super::stages::vlan_input::Next::Drop(r) => Some(r),
        };
        let ingress = frame.ingress;
        let action = match refused {
            None => p.walk::<true>(frame, &mut out),
            Some(r) => Action::Drop(r),
        };
        frame.action = action;
        let packet = p.tracer.take_current();
        // Switchyard answers a broadcast ARP request with a frame of its own, and
        // floods the request on: the verdict says both.
        let answered = out.frames().iter().any(|e| {
            e.action == Action::Forward(ingress)
                && EthernetFrame::new_checked(e.data())
                    .is_ok_and(|h| h.ethertype() == EtherType::ARP)
        });
        for e in out.frames() {
            let to = match e.action {
                Action::Forward(port) => format!("to port {}", self.port_name(port)),
                Action::Flood(d) => format!(
                    "flooded over network {}",
                    self.domain(d).map_or("", |d| d.name.as_str())
                ),
                _ => String::from("nowhere"),
            };
            p.tracer.add(
                packet,
                "emit",
                format!("would send {}, {to}", summarize(e.data())),
            );
        }
        p.finish_trace(packet, ingress, action);
        let mut t = p
            .tracer
            .next_frame()
            .expect("ethernet-input selects the first frame it sees for the trace");
        // No time: it did not happen.
        t.time_ns = 0;
        t.verdict.text = p.what_if_verdict(frame, action, before);
        if answered && matches!(action, Action::Flood(_)) {
            let _ = write!(
                t.verdict.text,
                "; switchyard answers it, the ARP reply sent back out of port {}",
                self.port_name(ingress)
            );
        }
        t
    }

    /// The verdict of a what-if in words, for a frame whose walk ended in `action`;
    /// `before` is what its headers said when it arrived. Says more than a live
    /// trace's: whether the frame is routed, how it is translated, which address it
    /// would wait for.
    fn what_if_verdict(&self, f: &Frame, action: Action, before: Option<Endpoints>) -> String {
        let ingress = f.ingress;
        let arp =
            EthernetFrame::new_checked(f.data()).is_ok_and(|e| e.ethertype() == EtherType::ARP);
        match action {
            Action::Drop(r) => format!("dropped: {} [{}]", r.text(), r.id()),
            Action::Consume if arp => "consumed: an ARP reply to switchyard".to_string(),
            Action::Consume => "consumed by switchyard".to_string(),
            Action::Reply if arp => format!(
                "consumed: ARP request answered, the reply sent back out of port {}",
                self.port_name(ingress)
            ),
            Action::Reply => format!(
                "consumed: ping answered, the echo reply sent back out of port {}",
                self.port_name(ingress)
            ),
            Action::Punt => format!(
                "punted: handed to switchyard's DNS service, whose answer goes back out of \
                 port {}",
                self.port_name(ingress)
            ),
            Action::Held => match self.what_if.as_ref().and_then(|w| w.hop) {
                Some(ip) => format!("held: would wait for ARP resolution of {ip}"),
                None => "held: would wait for ARP resolution of its next hop".to_string(),
            },
            Action::Forward(_) | Action::Flood(_) => {
                let routed = before
                    .as_ref()
                    .is_some_and(|b| b.mac_src != Endpoints::mac_src_of(f.data()));
                let mut s = String::new();
                match action {
                    Action::Forward(port) if routed => {
                        let _ = write!(s, "routed to port {}", self.port_name(port));
                    }
                    Action::Forward(port) => {
                        let _ = write!(s, "sent to port {} (unicast)", self.port_name(port));
                    }
                    _ => {
                        let ports: Vec<&str> =
                            self.egress(f).map(|p: PortId| self.port_name(p)).collect();
                        let how = if routed {
                            "routed and flooded"
                        } else {
                            "flooded"
                        };
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
