//! Packet tracing: each stage explains, in one sentence, what it did to a traced
//! packet and why, and the trace ends with the packet's fate.
//!
//! Tracing is chosen per packet when it enters (the next *n* packets, optionally only
//! those from some ports, like VPP's `trace add`). A traced frame carries a non-zero
//! packet number; a stage checks that number — one branch when tracing is off — and,
//! if set, appends a line. When the frame's walk ends, the pipeline adds the verdict
//! (sent where, answered, held, or dropped and why) and the trace of that frame is
//! complete: a [`FrameTrace`], kept in a bounded buffer until the dataplane (or a
//! test) takes it.
//!
//! A packet held for neighbor resolution ends its first walk "held"; when it walks
//! on later (released, or given up on), its further lines and final verdict come as
//! a second [`FrameTrace`] with the same packet number, marked as a continuation.

use super::{Action, PortId};
use crate::wire::{
    arp::{ArpOp, ArpPacket},
    ethernet::{EtherType, EthernetFrame},
    icmp::IcmpPacket,
    ipv4::{IpProtocol, Ipv4Packet},
    tcp::TcpPacket,
    udp::UdpPacket,
};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;

/// One sentence from one stage about one packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TraceRecord {
    /// Packet number, starting at 1, in the order packets were selected.
    pub packet: u32,
    pub stage: &'static str,
    pub text: String,
}

impl std::fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.text)
    }
}

/// One stage's line in a [`FrameTrace`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageLine {
    /// The stage's name (as `graph.rs` and the counters name it).
    pub stage: Cow<'static, str>,
    pub text: String,
}

/// What became of a traced frame, in words and as data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// `forward` (to one port), `flood`, `reply` (switchyard answered), `consume`,
    /// `punt` (handed to switchyard's DNS service), `held` (waiting for a next hop's
    /// MAC) or `drop`.
    pub action: String,
    /// The ports the frame leaves on.
    pub ports: Vec<String>,
    /// For a drop: the reason's id, as `show counters` names it.
    pub reason: Option<String>,
    /// The verdict as a sentence.
    pub text: String,
}

/// Everything a trace says about one frame: what it was, what each stage did to it,
/// and its fate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameTrace {
    /// Packet number, starting at 1, in the order packets were selected.
    pub packet: u32,
    /// When it was processed: the pipeline's clock in nanoseconds (the dataplane
    /// turns it into wall-clock time before anyone reads it).
    pub time_ns: u64,
    /// The port it came in on.
    pub port: String,
    /// The frame as it arrived, in one line (addresses, protocol, ports, length).
    pub summary: String,
    /// True for the second part of a held packet's trace (it walked on later).
    pub continued: bool,
    pub lines: Vec<StageLine>,
    pub verdict: Verdict,
}

/// Which packets to trace and what they said.
#[derive(Debug)]
pub struct Tracer {
    remaining: u32,
    /// Only packets from these ports (empty: from every port).
    filter: Vec<PortId>,
    next_packet: u32,
    /// Frames whose walk is under way (the frame being processed, and a held packet
    /// walking on while another frame is processed).
    open: Vec<FrameTrace>,
    /// The packet number of the frame whose walk is under way, if traced.
    current: u32,
    /// Finished traces, oldest first, until taken.
    done: VecDeque<FrameTrace>,
    max_frames: usize,
}

impl Tracer {
    /// Keeps at most this many finished frame traces unread; older ones are
    /// dropped first.
    pub const DEFAULT_MAX_FRAMES: usize = 1024;
    /// Most frames open at once; a stale one (never finished) is closed to make room.
    const MAX_OPEN: usize = 8;

    pub fn new() -> Tracer {
        Tracer {
            remaining: 0,
            filter: Vec::new(),
            next_packet: 1,
            open: Vec::new(),
            current: 0,
            done: VecDeque::new(),
            max_frames: Self::DEFAULT_MAX_FRAMES,
        }
    }

    /// Traces the next `count` packets that enter, only from `ports` if not empty.
    pub fn start(&mut self, count: u32, ports: &[PortId]) {
        self.remaining = count;
        self.filter = ports.to_vec();
    }

    /// Stops selecting new packets.
    pub fn stop(&mut self) {
        self.remaining = 0;
    }

    /// True while packets are still to be selected.
    pub fn active(&self) -> bool {
        self.remaining != 0
    }

    /// Decides whether a packet entering at `port` is traced; returns its number or 0.
    #[inline]
    pub fn select(&mut self, port: PortId) -> u32 {
        if self.remaining == 0 {
            return 0;
        }
        self.select_slow(port)
    }

    #[cold]
    fn select_slow(&mut self, port: PortId) -> u32 {
        if !self.filter.is_empty() && !self.filter.contains(&port) {
            return 0;
        }
        self.remaining -= 1;
        let n = self.next_packet;
        self.next_packet = self.next_packet.wrapping_add(1).max(1);
        n
    }

    /// Opens the trace of packet `packet`, which came in on `port` looking like
    /// `summary`.
    #[cold]
    pub(crate) fn open(&mut self, packet: u32, time_ns: u64, port: &str, summary: String) {
        self.current = packet;
        self.open_frame(FrameTrace {
            packet,
            time_ns,
            port: port.to_string(),
            summary,
            continued: false,
            lines: Vec::new(),
            verdict: Verdict::pending(),
        });
    }

    fn open_frame(&mut self, t: FrameTrace) {
        if self.open.len() == Self::MAX_OPEN {
            let stale = self.open.remove(0);
            self.push_done(stale);
        }
        self.open.push(t);
    }

    /// The number of the traced frame whose walk is under way (0: none), forgotten.
    #[inline]
    pub(crate) fn take_current(&mut self) -> u32 {
        std::mem::take(&mut self.current)
    }

    /// Appends a line for `packet` from `stage`.
    #[cold]
    pub fn add(&mut self, packet: u32, stage: &'static str, text: String) {
        let line = StageLine {
            stage: Cow::Borrowed(stage),
            text,
        };
        match self.open.iter_mut().find(|t| t.packet == packet) {
            Some(t) => t.lines.push(line),
            None => {
                // A held packet walking on: its first part is finished already.
                self.open_frame(FrameTrace {
                    packet,
                    time_ns: 0,
                    port: String::new(),
                    summary: String::new(),
                    continued: true,
                    lines: vec![line],
                    verdict: Verdict::pending(),
                });
            }
        }
    }

    /// Ends the trace of `packet` with `verdict`.
    #[cold]
    pub(crate) fn finish(&mut self, packet: u32, verdict: Verdict) {
        if let Some(i) = self.open.iter().position(|t| t.packet == packet) {
            let mut t = self.open.swap_remove(i);
            t.verdict = verdict;
            self.push_done(t);
        }
    }

    fn push_done(&mut self, t: FrameTrace) {
        if self.done.len() == self.max_frames {
            self.done.pop_front();
        }
        self.done.push_back(t);
    }

    /// True if finished traces wait to be taken.
    #[inline]
    pub fn has_frames(&self) -> bool {
        !self.done.is_empty()
    }

    /// Takes the oldest finished trace.
    pub fn next_frame(&mut self) -> Option<FrameTrace> {
        self.done.pop_front()
    }

    /// Takes every line recorded so far, finished frames first, flattened (for tests
    /// that look at the lines alone).
    pub fn drain(&mut self) -> Vec<TraceRecord> {
        let mut frames: Vec<FrameTrace> = self.done.drain(..).collect();
        frames.append(&mut self.open);
        frames.sort_by_key(|t| t.packet);
        frames
            .into_iter()
            .flat_map(|t| {
                let packet = t.packet;
                t.lines.into_iter().map(move |l| TraceRecord {
                    packet,
                    stage: match l.stage {
                        Cow::Borrowed(s) => s,
                        Cow::Owned(_) => "?",
                    },
                    text: l.text,
                })
            })
            .collect()
    }

    /// Frames traced and not yet taken (finished or not).
    pub fn pending(&self) -> usize {
        self.done.len() + self.open.len()
    }
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer::new()
    }
}

impl Verdict {
    fn pending() -> Verdict {
        Verdict {
            action: "unfinished".into(),
            ports: Vec::new(),
            reason: None,
            text: "the trace ended before the packet's walk did".into(),
        }
    }

    /// The verdict of `action`, whose egress ports are `ports` (by name) and whose
    /// ingress port is `ingress`.
    pub(crate) fn of(action: Action, ports: Vec<String>, ingress: &str, network: &str) -> Verdict {
        let list = ports.join(", ");
        let (kind, reason, text) = match action {
            Action::Forward(_) => ("forward", None, format!("sent to port {list}")),
            Action::Flood(_) => (
                "flood",
                None,
                match ports.len() {
                    0 => format!("flooded over network {network}, which has no other port"),
                    1 => format!("flooded over network {network}: to port {list}"),
                    n => format!("flooded over network {network}: to {n} ports, {list}"),
                },
            ),
            Action::Reply => (
                "reply",
                None,
                format!("answered by switchyard: the reply goes back out of port {ingress}"),
            ),
            Action::Consume => (
                "consume",
                None,
                "taken by switchyard; nothing goes out".into(),
            ),
            Action::Punt => (
                "punt",
                None,
                format!(
                    "handed to switchyard's DNS service; its answer goes back out of port \
                     {ingress}"
                ),
            ),
            Action::Held => (
                "held",
                None,
                "held until the next hop answers ARP; it walks on then (or is answered \
                 host unreachable)"
                    .into(),
            ),
            Action::Drop(r) => (
                "drop",
                Some(r.id().to_string()),
                format!("dropped: {} [{}]", r.text(), r.id()),
            ),
        };
        Verdict {
            action: kind.into(),
            ports,
            reason,
            text,
        }
    }
}

/// A frame in one line, as tcpdump would start it: MACs, then what it carries.
pub fn summarize(data: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return format!("{} bytes, too short for Ethernet", data.len());
    };
    let mut s = format!("{} > {}", eth.src(), eth.dst());
    let (ethertype, at) = eth
        .payload_type()
        .unwrap_or((eth.ethertype(), crate::wire::ethernet::HEADER_LEN));
    let l3 = &data[at.min(data.len())..];
    match ethertype {
        EtherType::ARP => match ArpPacket::new_checked(l3) {
            Ok(a) => match a.op() {
                ArpOp::Request => {
                    let _ = write!(
                        s,
                        ", ARP request who-has {} tell {}",
                        a.target_ip(),
                        a.sender_ip()
                    );
                }
                ArpOp::Reply => {
                    let _ = write!(s, ", ARP reply {} is-at {}", a.sender_ip(), a.sender_mac());
                }
                ArpOp::Other(op) => {
                    let _ = write!(s, ", ARP operation {op}");
                }
            },
            Err(_) => s.push_str(", ARP (malformed)"),
        },
        EtherType::IPV4 => match Ipv4Packet::new_checked(l3) {
            Ok(ip) => {
                let _ = write!(s, ", IPv4 {} > {}", ip.src(), ip.dst());
                transport(&mut s, &ip);
                let _ = write!(s, ", ttl {}", ip.ttl());
                if ip.dont_fragment() {
                    s.push_str(", DF");
                }
                if ip.more_fragments() || ip.frag_offset() != 0 {
                    let _ = write!(s, ", fragment at {}", ip.frag_offset());
                }
            }
            Err(_) => s.push_str(", IPv4 (malformed)"),
        },
        t => {
            let _ = write!(s, ", {t}");
        }
    }
    let _ = write!(s, ", {} bytes", data.len());
    s
}

/// The transport part of a summary: protocol, ports or ICMP type.
fn transport(s: &mut String, ip: &Ipv4Packet<&[u8]>) {
    if ip.is_later_fragment() {
        let _ = write!(s, " {}", ip.protocol());
        return;
    }
    let p = ip.payload();
    match ip.protocol() {
        IpProtocol::TCP => match TcpPacket::new_checked(p) {
            Ok(t) => {
                let _ = write!(
                    s,
                    " tcp {} > {} [{}]",
                    t.src_port(),
                    t.dst_port(),
                    t.flags()
                );
            }
            Err(_) => s.push_str(" tcp (truncated)"),
        },
        IpProtocol::UDP => match UdpPacket::new_checked(p) {
            Ok(u) => {
                let _ = write!(s, " udp {} > {}", u.src_port(), u.dst_port());
            }
            Err(_) => s.push_str(" udp (truncated)"),
        },
        IpProtocol::ICMP => match IcmpPacket::new_checked(p) {
            Ok(i) => {
                let _ = match (i.msg_type(), i.code()) {
                    (8, 0) => write!(
                        s,
                        " icmp echo request id {} seq {}",
                        i.echo_ident(),
                        i.echo_seq()
                    ),
                    (0, 0) => write!(
                        s,
                        " icmp echo reply id {} seq {}",
                        i.echo_ident(),
                        i.echo_seq()
                    ),
                    (3, c) => write!(s, " icmp destination unreachable (code {c})"),
                    (11, c) => write!(s, " icmp time exceeded (code {c})"),
                    (t, c) => write!(s, " icmp type {t} code {c}"),
                };
            }
            Err(_) => s.push_str(" icmp (truncated)"),
        },
        other => {
            let _ = write!(s, " {other}");
        }
    }
}

/// What one stage says about one packet: a value that prints as the sentence and
/// knows which stage says it. Every stage declares its own, an enum `Trace` with a
/// `Display` impl — the trace record and format function of a VPP node.
pub(crate) trait TraceLine: std::fmt::Display {
    fn stage(&self) -> &'static str;
}

/// The stage and text of a line, made only for traced packets.
#[cold]
pub(crate) fn render(line: impl TraceLine) -> (&'static str, String) {
    (line.stage(), line.to_string())
}

/// Appends `$line` (a [`TraceLine`]) for `$frame` if it is traced:
/// `trace!(self, f, Trace::Learned { .. })`. The line is only made and formatted (which
/// allocates) for traced frames — one branch otherwise — and before the tracer is
/// borrowed, so it may borrow from the pipeline.
macro_rules! trace {
    ($pl:expr, $frame:expr, $line:expr) => {
        if $frame.trace != 0 {
            let (stage, text) = $crate::pipeline::trace::render($line);
            $pl.tracer.add($frame.trace, stage, text);
        }
    };
}
pub(crate) use trace;
