//! Connection tracking, as netfilter does it: one entry per flow, found from packets
//! of either direction, holding the flow's state and the NAT applied to it.
//!
//! Each entry has two tuples (protocol, source and destination address and port —
//! the echo identifier for ICMP). The *original* tuple is the first packet as it
//! arrived; the *reply* tuple is what a reply will look like when it arrives, after
//! NAT. The NAT itself is nothing but the difference between the two: a packet in the
//! original direction leaves as `reply.dst → reply.src`, a reply leaves as
//! `orig.dst → orig.src`. A masqueraded flow from 172.17.0.2:40000 to 198.51.100.2:80
//! is
//!
//! ```text
//! orig:  tcp 172.17.0.2:40000 → 198.51.100.2:80
//! reply: tcp 198.51.100.2:80  → 198.51.100.1:40000     (SNAT to the uplink address)
//! ```
//!
//! Both tuples are keys of one hash table, so either direction finds the entry in one
//! lookup. The table is bounded (`conntrack_max`); when full, a new flow first evicts
//! an entry that is not *assured* (one that never saw traffic both ways — what a SYN
//! flood makes), as the kernel's `early_drop` does; if there is none, the new flow is
//! refused and counted. Entries expire by timeouts that are data, per protocol and TCP
//! state, with the kernel's defaults ([`Timeouts`]); expired entries are reclaimed by an
//! incremental scan and are never matched.
//!
//! Which flow a packet belongs to is read from its headers by [`PacketFlow::of`], as
//! netfilter's `nf_ct_get_tuple` does: ports for TCP and UDP, the identifier for ICMP
//! echo, and for an ICMP error the flow of the packet it quotes.
//!
//! Three things keep one network's packets out of another's flows:
//! * **Zones.** Each direction records the network it is expected to arrive from (the
//!   original: where the first packet came from; the reply: where it was routed to). A
//!   packet with a direction's tuple from any other network is not of the flow
//!   ([`Miss::OtherZone`]), so a forged reply cannot be de-NATed into the flow's network.
//! * **TCP windows**, as netfilter's `tcp_in_window` keeps them ([`TcpSide`]): a segment
//!   outside what either side has sent or may send, or a RST before what the other side
//!   acknowledged, changes nothing ([`TcpVerdict::OutOfWindow`]); a blind RST cannot
//!   close a connection.
//! * **Shares.** A network may have a share of the table of its own; at its share it
//!   evicts only its own unassured entries. ICMP entries are never assured, as in
//!   netfilter, so answered pings stay evictable.
//!
//! What the table does on its own — a flow becoming assured, an entry destroyed by
//! its timeout or evicted for room — is reported to the caller's [`Report`] when it
//! asks (the `*_reporting` methods), for the table events `switchyard events` streams.
//!
//! Memory follows use: entries are allocated a chunk at a time when no freed one is
//! left, the index grows as hash tables do, and a table whose maximum is 2^24 costs
//! next to nothing until flows come ([`ConnTrack::bytes_for`] gives a full table's
//! cost; ~220 bytes a flow, measured by `tests/conntrack_memory.rs`).

use super::ct_cache::CtCache;
use super::events::{ConnChange, DestroyReason, Report};
use super::fdb_cache::Answered;
use super::shares::DomainShares;
use super::{lock, DomainId, Timestamp};
use crate::wire::nat::Endpoints;
use crate::wire::{IcmpPacket, IpProtocol, Ipv4Packet, Quoted, TcpFlags, TcpPacket, UdpPacket};
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// One direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// TCP, UDP or ICMP (echo): the protocols that are tracked.
    pub proto: IpProtocol,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Source port, or the ICMP echo identifier.
    pub sport: u16,
    /// Destination port, or the ICMP echo identifier (the same value both ways).
    pub dport: u16,
}

impl Tuple {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.proto {
            IpProtocol::TCP => "tcp",
            IpProtocol::UDP => "udp",
            IpProtocol::ICMP => "icmp",
            _ => "ip",
        };
        if self.proto == IpProtocol::ICMP {
            write!(f, "{p} {} > {} id {}", self.src, self.dst, self.sport)
        } else {
            write!(
                f,
                "{p} {}:{} > {}:{}",
                self.src, self.sport, self.dst, self.dport
            )
        }
    }
}

/// Which way a packet travels in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Dir {
    Original,
    Reply,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }
}

/// TCP connection states, netfilter's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

impl TcpState {
    pub const ALL: [TcpState; 8] = [
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }
}

/// The protocol part of an entry's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    Tcp(TcpState),
    /// UDP: has a reply been seen?
    Udp {
        replied: bool,
    },
    Icmp,
}

/// Timeouts in seconds, per protocol and TCP state: data, with the kernel's defaults
/// (`net.netfilter.nf_conntrack_*_timeout*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Indexed like [`TcpState::ALL`].
    pub tcp: [u32; 8],
    pub udp_unreplied: u32,
    pub udp_assured: u32,
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            //     SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE
            tcp: [120, 60, 432_000, 120, 60, 30, 120, 10],
            udp_unreplied: 30,
            udp_assured: 120,
            icmp: 30,
        }
    }
}

impl Timeouts {
    fn for_state(&self, s: ProtoState) -> u32 {
        match s {
            ProtoState::Tcp(t) => self.tcp[TcpState::ALL.iter().position(|&x| x == t).unwrap_or(0)],
            ProtoState::Udp { replied: false } => self.udp_unreplied,
            ProtoState::Udp { replied: true } => self.udp_assured,
            ProtoState::Icmp => self.icmp,
        }
    }
}

/// What connection tracking sees in a packet: its flow, or why it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketFlow {
    /// A TCP, UDP or ICMP echo packet: its tuple, and what window tracking reads
    /// from a TCP segment (nothing for the others).
    Flow(Tuple, Segment),
    /// An ICMP error: the tuple of the packet it quotes.
    IcmpError(Tuple),
    /// A fragment after the first: no ports to see.
    Fragment,
    /// Another protocol, another ICMP message, or a transport header cut short.
    Other,
}

impl PacketFlow {
    /// The flow of the IPv4 packet `ip`, found as netfilter's `nf_ct_get_tuple` finds
    /// it: TCP and UDP by their ports, an ICMP echo by its identifier (standing for
    /// both ports), an ICMP error by the packet it quotes.
    pub fn of<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> PacketFlow {
        if ip.is_later_fragment() {
            return PacketFlow::Fragment;
        }
        let (src, dst, l4) = (ip.src(), ip.dst(), ip.payload());
        let tuple = |proto, sport, dport| Tuple {
            proto,
            src,
            dst,
            sport,
            dport,
        };
        match ip.protocol() {
            IpProtocol::TCP => match TcpPacket::new_checked(l4) {
                Ok(tcp) => PacketFlow::Flow(
                    tuple(IpProtocol::TCP, tcp.src_port(), tcp.dst_port()),
                    Segment::of(&tcp),
                ),
                Err(_) => PacketFlow::Other,
            },
            IpProtocol::UDP => match UdpPacket::new_checked(l4) {
                Ok(udp) => PacketFlow::Flow(
                    tuple(IpProtocol::UDP, udp.src_port(), udp.dst_port()),
                    Segment::default(),
                ),
                Err(_) => PacketFlow::Other,
            },
            IpProtocol::ICMP => match IcmpPacket::new_checked(l4) {
                Ok(icmp) if icmp.is_echo() => {
                    let id = icmp.echo_ident();
                    PacketFlow::Flow(tuple(IpProtocol::ICMP, id, id), Segment::default())
                }
                Ok(icmp) if icmp.is_error() => icmp
                    .quoted()
                    .ok()
                    .and_then(|q| quoted_tuple(&q))
                    .map_or(PacketFlow::Other, PacketFlow::IcmpError),
                _ => PacketFlow::Other,
            },
            _ => PacketFlow::Other,
        }
    }
}

/// What TCP window tracking reads from a segment (all zero for UDP and ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    /// The advertised window, as sent (not yet scaled).
    pub win: u16,
    /// Bytes of data (SYN and FIN not counted).
    pub len: u32,
    /// The window scale option, read on a SYN only.
    pub wscale: Option<u8>,
}

impl Segment {
    pub fn of<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) -> Segment {
        let flags = tcp.flags();
        Segment {
            flags,
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            win: tcp.window(),
            len: tcp.payload().len() as u32,
            wscale: if flags.syn() {
                tcp.window_scale()
            } else {
                None
            },
        }
    }

    /// A segment with these flags and nothing else (tests, and UDP and ICMP).
    pub fn flags(flags: TcpFlags) -> Segment {
        Segment {
            flags,
            ..Segment::default()
        }
    }

    /// The sequence number after this segment: SYN and FIN take one each
    /// (netfilter's `segment_seq_plus_len`).
    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add(u32::from(self.flags.syn()))
            .wrapping_add(u32::from(self.flags.fin()))
    }
}

/// `a` comes before `b` in sequence space (RFC 793's modular comparison).
#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// One side of a TCP connection as window tracking knows it: netfilter's
/// `ip_ct_tcp_state` (`td_end`, `td_maxend`, `td_maxwin`, `td_maxack`, `td_scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSide {
    /// The highest sequence number this side has sent (`td_end`).
    pub end: u32,
    /// The highest sequence number this side may send, by the other side's window
    /// (`td_maxend`).
    pub maxend: u32,
    /// The largest window this side has advertised, scaled (`td_maxwin`); 0 until
    /// this side is seen.
    pub maxwin: u32,
    /// The highest acknowledgement this side has sent (`td_maxack`).
    pub maxack: u32,
    /// Its window scale shift (`td_scale`).
    pub scale: u8,
    /// [`TcpSide::WSCALE`], [`TcpSide::MAXACK_SET`].
    pub flags: u8,
}

impl TcpSide {
    /// The side sent a window scale option.
    pub const WSCALE: u8 = 1;
    /// `maxack` holds an acknowledgement.
    pub const MAXACK_SET: u8 = 2;

    /// Starts tracking a side from its SYN (or SYN/ACK).
    fn init_from_syn(&mut self, seg: &Segment) {
        let end = seg.end();
        *self = TcpSide {
            end,
            maxend: end,
            maxwin: u32::from(seg.win).max(1),
            ..TcpSide::default()
        };
        if let Some(scale) = seg.wscale {
            self.scale = scale;
            self.flags |= TcpSide::WSCALE;
        }
    }
}

/// The window of acknowledgements accepted from a side never seen (netfilter's
/// `MAXACKWINCONST`).
const MAXACKWINCONST: u32 = 66_000;

/// Is `seg`, sent by `sides[s]` to `sides[1 - s]` in TCP state `state`, inside the
/// windows? Updates both sides if so. netfilter's `tcp_in_window`: the segment's
/// sequence numbers must fall within what the receiver can accept (I: not past the
/// highest its window allows; II: not more than a window behind what was sent) and
/// its acknowledgement within what the receiver has sent (III: nothing not yet sent;
/// IV: not more than a window behind). A side first seen without its SYN is picked
/// up mid-stream, liberally: its first segment defines it. SACK blocks are not read,
/// which only makes check IV stricter by what a SACK would have moved the ack.
fn tcp_in_window(sides: &mut [TcpSide; 2], s: usize, state: TcpState, seg: &Segment) -> bool {
    let (mut sender, mut receiver) = (sides[s], sides[1 - s]);
    let f = seg.flags;
    let (mut seq, mut ack) = (seg.seq, seg.ack);
    let mut end = seg.end();
    let mut win = u32::from(seg.win);
    let from_original = s == 0;
    if sender.maxwin == 0 {
        if f.syn() {
            // The responder's SYN/ACK (or a simultaneous open): the side starts here.
            sender.init_from_syn(seg);
            // RFC 7323: scaling only if both sides offered it.
            if sender.flags & receiver.flags & TcpSide::WSCALE == 0 {
                sender.scale = 0;
                receiver.scale = 0;
            }
            if !f.ack() {
                sides[s] = sender;
                sides[1 - s] = receiver;
                return true;
            }
        } else {
            // Mid-stream: the history is lost, take the segment as it comes.
            sender.end = end;
            let swin = win << sender.scale;
            sender.maxwin = swin.max(1);
            sender.maxend = end.wrapping_add(sender.maxwin);
            if receiver.maxwin == 0 {
                receiver.end = ack;
                receiver.maxend = ack;
            } else if ack == receiver.end.wrapping_add(1) {
                // Likely the answer to a keepalive.
                receiver.end = receiver.end.wrapping_add(1);
            }
        }
    } else if ((state == TcpState::SynSent && from_original)
        || (state == TcpState::SynRecv && !from_original))
        && after(end, sender.end)
    {
        // A SYN (or SYN/ACK) sent again with a new initial sequence number (RFC 793:
        // a reinitialised TCP need only use larger sequence numbers).
        sender.init_from_syn(seg);
    }
    if !f.ack() || (f.rst() && ack == 0) {
        // No acknowledgement (or a broken stack's RST with ACK and a zero ack): as if
        // it acknowledged exactly what was sent.
        ack = receiver.end;
    }
    if f.rst() && seq == 0 && state == TcpState::SynSent {
        // A RST answering a SYN.
        seq = sender.end;
        end = sender.end;
    }
    let maxackwin = if sender.maxwin == 0 {
        MAXACKWINCONST
    } else {
        sender.maxwin
    };
    let in_recv_win = receiver.maxwin == 0
        || after(
            end,
            sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
        );
    let ok = before(seq, sender.maxend.wrapping_add(1))
        && in_recv_win
        && before(ack, receiver.end.wrapping_add(1))
        && after(ack, receiver.end.wrapping_sub(maxackwin).wrapping_sub(1));
    if !ok {
        return false;
    }
    if !f.syn() {
        win <<= sender.scale;
    }
    sender.maxwin = sender.maxwin.max(win);
    if after(end, sender.end) {
        sender.end = end;
    }
    if f.ack() && (sender.flags & TcpSide::MAXACK_SET == 0 || after(ack, sender.maxack)) {
        sender.maxack = ack;
        sender.flags |= TcpSide::MAXACK_SET;
    }
    if receiver.maxwin != 0 && after(end, sender.maxend) {
        receiver.maxwin = receiver
            .maxwin
            .wrapping_add(end.wrapping_sub(sender.maxend));
    }
    if after(ack.wrapping_add(win), receiver.maxend.wrapping_sub(1)) {
        receiver.maxend = ack.wrapping_add(win);
        if win == 0 {
            receiver.maxend = receiver.maxend.wrapping_add(1);
        }
    }
    sides[s] = sender;
    sides[1 - s] = receiver;
    true
}

/// The tuple of the packet an ICMP error quotes.
fn quoted_tuple(q: &Quoted<&[u8]>) -> Option<Tuple> {
    let h = q.header();
    // A quote that is not IPv4, or of a later fragment (whose first bytes are data,
    // not ports), names no flow: the kernel's conntrack finds no tuple in it either,
    // and the error is then handled as untracked.
    if h.version() != 4 || h.frag_offset() != 0 {
        return None;
    }
    let (proto, sport, dport) = match h.protocol() {
        p @ (IpProtocol::TCP | IpProtocol::UDP) => (p, q.src_port(), q.dst_port()),
        IpProtocol::ICMP => {
            let echo = IcmpPacket::new_checked(q.transport())
                .ok()
                .filter(|i| i.is_echo())?;
            (IpProtocol::ICMP, echo.echo_ident(), echo.echo_ident())
        }
        _ => return None,
    };
    Some(Tuple {
        proto,
        src: h.src(),
        dst: h.dst(),
        sport,
        dport,
    })
}

/// A SYN without ACK: the only segment that may start a tracked connection.
pub fn starts_connection(flags: TcpFlags) -> bool {
    flags.syn() && !flags.ack()
}

/// What a TCP packet did to its connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVerdict {
    /// A valid transition (possibly to the same state).
    Ok(TcpState),
    /// Not valid in this state (kept as it was; the packet still passes, as netfilter
    /// passes INVALID packets unless a rule drops them).
    Invalid,
    /// Outside the connection's windows, or a RST before what the other side has
    /// acknowledged: not of this connection as far as anyone can tell (a blind RST, a
    /// forged segment). The entry is left as it was, and the packet is not
    /// translated (netfilter leaves such a packet without its conntrack).
    OutOfWindow,
}

/// netfilter's TCP state table (`tcp_conntrack_states` in nf_conntrack_proto_tcp.c),
/// reduced to the flags that matter (SYN, ACK, FIN, RST): `dir` is the packet's
/// direction.
pub fn tcp_transition(state: TcpState, dir: Dir, f: TcpFlags) -> TcpVerdict {
    use TcpState::*;
    use TcpVerdict::*;
    if f.rst() {
        return Ok(Close);
    }
    match (dir, f.syn(), f.ack(), f.fin()) {
        // SYN from the initiator: a (re)open.
        (Dir::Original, true, false, _) => match state {
            SynSent | TimeWait | Close => Ok(SynSent),
            _ => Invalid,
        },
        // SYN/ACK from the responder.
        (Dir::Reply, true, true, _) => match state {
            SynSent | SynRecv => Ok(SynRecv),
            _ => Invalid,
        },
        (_, true, _, _) => Invalid,
        // FIN (with or without ACK).
        (_, false, _, true) => match state {
            SynRecv | Established => Ok(FinWait),
            FinWait | CloseWait | LastAck => Ok(LastAck),
            TimeWait => Ok(TimeWait),
            Close => Ok(Close),
            SynSent => Invalid,
        },
        // Plain ACK.
        (d, false, true, false) => match (state, d) {
            (SynRecv, Dir::Original) => Ok(Established),
            (SynRecv, Dir::Reply) => Ok(SynRecv),
            (Established, _) => Ok(Established),
            (FinWait, _) => Ok(CloseWait),
            (CloseWait, _) => Ok(CloseWait),
            (LastAck, _) => Ok(TimeWait),
            (TimeWait, _) => Ok(TimeWait),
            (Close, _) => Ok(Close),
            (SynSent, _) => Invalid,
        },
        _ => Invalid,
    }
}

/// One tracked flow.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub orig: Tuple,
    pub reply: Tuple,
    /// The network each direction is expected to arrive from (original, reply): its
    /// conntrack *zone*. A packet with the tuple of a direction that arrives from
    /// another network is not of this flow.
    pub zone: [DomainId; 2],
    pub state: ProtoState,
    /// TCP window tracking, original then reply side (unused for UDP and ICMP).
    pub tcp: [TcpSide; 2],
    /// Saw traffic both ways (and, for TCP, the handshake completed): not evicted
    /// early when the table fills.
    pub assured: bool,
    /// When it expires (ns on the pipeline clock).
    pub expires: u64,
    /// Packets and bytes, original then reply direction.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl Conn {
    /// The addresses and ports a packet of this flow travelling in `dir` leaves with:
    /// the NAT is the difference between the two tuples.
    /// The network packets travelling in `dir` arrive from.
    pub fn zone(&self, dir: Dir) -> DomainId {
        self.zone[dir.index()]
    }

    /// The tuple packets travelling in `dir` arrive with, and the one they leave as
    /// (what a reply to them looks like, reversed).
    pub fn tuples(&self, dir: Dir) -> (Tuple, Tuple) {
        match dir {
            Dir::Original => (self.orig, self.reply),
            Dir::Reply => (self.reply, self.orig),
        }
    }

    pub fn translated(&self, dir: Dir) -> Endpoints {
        let (orig, reply) = (&self.orig, &self.reply);
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

    /// True if the flow's addresses or ports are rewritten.
    pub fn is_nat(&self) -> bool {
        self.reply != self.orig.reversed()
    }

    /// The source is rewritten (SNAT, masquerade).
    pub fn is_snat(&self) -> bool {
        self.reply.dst != self.orig.src || self.reply.dport != self.orig.sport
    }

    /// The destination is rewritten (DNAT, a published port).
    pub fn is_dnat(&self) -> bool {
        self.reply.src != self.orig.dst || self.reply.sport != self.orig.dport
    }

    fn has(&self, t: &Tuple) -> bool {
        self.orig == *t || self.reply == *t
    }

    /// Accounts a packet and advances the state; returns the TCP verdict. A TCP
    /// segment out of window changes nothing, not even the counters or the timeout.
    fn update(
        &mut self,
        dir: Dir,
        len: usize,
        seg: &Segment,
        now: Timestamp,
        timeouts: &Timeouts,
    ) -> TcpVerdict {
        let d = dir.index();
        let mut verdict = TcpVerdict::Ok(TcpState::Established);
        self.state = match self.state {
            ProtoState::Tcp(s) => match tcp_transition(s, dir, seg.flags) {
                TcpVerdict::Ok(next) => {
                    let mut sides = self.tcp;
                    if next == TcpState::SynSent
                        && matches!(s, TcpState::TimeWait | TcpState::Close)
                    {
                        // The connection is opened again: its windows start afresh.
                        sides = [TcpSide::default(); 2];
                    }
                    if !self.rst_in_sequence(s, d, seg) || !tcp_in_window(&mut sides, d, s, seg) {
                        return TcpVerdict::OutOfWindow;
                    }
                    self.tcp = sides;
                    verdict = TcpVerdict::Ok(next);
                    if next == TcpState::Established {
                        self.assured = true;
                    }
                    ProtoState::Tcp(next)
                }
                _ => {
                    verdict = TcpVerdict::Invalid;
                    ProtoState::Tcp(s)
                }
            },
            ProtoState::Udp { replied } => {
                let replied = replied || dir == Dir::Reply;
                // "Traffic both ways: some kind of UDP stream" — assured.
                if replied {
                    self.assured = true;
                }
                ProtoState::Udp { replied }
            }
            // Never assured, as in netfilter (`icmp_packet` does not set
            // IPS_ASSURED): answered pings stay evictable, and a ping flood cannot
            // hold the table with entries nothing may take from it.
            ProtoState::Icmp => ProtoState::Icmp,
        };
        self.packets[d] += 1;
        self.bytes[d] += len as u64;
        self.expires = now.0 + u64::from(timeouts.for_state(self.state)) * 1_000_000_000;
        verdict
    }

    /// A RST counts only if its sequence number is not before what the other side has
    /// already acknowledged (netfilter's "invalid rst" check): a RST from a stack that
    /// really holds the connection carries its current sequence number. A zero
    /// sequence number before the connection is established answers a SYN.
    fn rst_in_sequence(&self, state: TcpState, d: usize, seg: &Segment) -> bool {
        if !seg.flags.rst() {
            return true;
        }
        let other = &self.tcp[1 - d];
        if other.flags & TcpSide::MAXACK_SET == 0 {
            return true;
        }
        if seg.seq == 0 && matches!(state, TcpState::SynSent | TcpState::SynRecv) {
            return true;
        }
        !before(seg.seq, other.maxack)
    }
}

/// A handle to an entry, checked against reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtRef {
    pub index: u32,
    pub generation: u32,
    pub dir: Dir,
}

/// Why a packet is not of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No live flow has its tuple.
    Untracked,
    /// A flow has its tuple, but expects that direction from another network.
    OtherZone,
}

/// Why a new flow could not be tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// Full, and no unassured entry to evict.
    Full,
    /// The network the flow starts in has its share of the table, and no unassured
    /// entry of its own to evict.
    ZoneFull,
    /// One of the tuples is already in use (the caller picks another mapping).
    Clash,
}

/// Where the index said a tuple's flow is — its slot with the direction bit, as the
/// index stores it — and the slot's generation then: what a worker's [`CtCache`]
/// keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CtSlot {
    index: u32,
    generation: u32,
}

#[cfg(test)]
impl CtSlot {
    pub(crate) fn new_for_tests(index: u32, generation: u32) -> CtSlot {
        CtSlot { index, generation }
    }
}

/// A slot of the entry table: the flow, and a generation that changes on every reuse.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<Conn>,
    generation: u32,
}

/// An index entry: the slot of the flow, and the direction (the top bit) the tuple is.
type IndexShard = HashMap<Tuple, u32, foldhash::fast::RandomState>;

const REPLY_BIT: u32 = 1 << 31;

#[inline]
fn index_value(i: u32, dir: Dir) -> u32 {
    match dir {
        Dir::Original => i,
        Dir::Reply => i | REPLY_BIT,
    }
}

#[inline]
fn index_entry(v: u32) -> (u32, Dir) {
    if v & REPLY_BIT == 0 {
        (v, Dir::Original)
    } else {
        (v & !REPLY_BIT, Dir::Reply)
    }
}

/// Shards of the tuple index.
const SHARDS: usize = 64;

/// Slots are allocated this many at a time, as the table fills: a table sized for
/// millions of flows costs next to nothing until they come.
const CHUNK: usize = 1024;

/// [`CHUNK`] slots, allocated at once.
type Chunk = Box<[Mutex<Slot>]>;

/// Lists of free slots (each freed slot goes to list `index % FREE_LISTS`).
const FREE_LISTS: usize = 16;

/// The connection tracking table, shared by the dataplane's workers without a global
/// lock: the tuple index is split into shards, each entry has its own lock, and freed
/// entries wait in sharded free lists. A packet takes one shard lock (to find its
/// entry) and one entry lock (to update it); only workers handling the same flow, or
/// tuples in the same shard at the same instant, ever wait for each other. Lock
/// order, to rule out deadlocks: index shards (in ascending order) before entries,
/// entries before free lists.
///
/// Memory grows with use, never past the maximum: entries are allocated in chunks of
/// 1024 (`CHUNK`) when no freed one is left, and the index shards grow as hash tables do.
/// An entry holds both tuples, its zones, state, TCP windows, timeout and counters
/// (~130 bytes); the index holds each tuple once more with the entry's number (~21
/// bytes, at a hash table's load). [`ConnTrack::bytes_for`] says what a full table
/// takes.
pub struct ConnTrack {
    index: Box<[Mutex<IndexShard>]>,
    chunks: Box<[OnceLock<Chunk>]>,
    max: usize,
    /// Slots handed out at least once: `0..fresh` (their chunks exist).
    fresh: AtomicUsize,
    free: Box<[Mutex<Vec<u32>>]>,
    free_len: AtomicUsize,
    len: AtomicUsize,
    /// Live entries per network (by the zone of their original direction), and each
    /// network's share (`usize::MAX`: none but the table's).
    shares: DomainShares,
    next_generation: AtomicU32,
    timeouts: Timeouts,
    gc_cursor: AtomicUsize,
    evict_cursor: AtomicUsize,
    evicted: AtomicU64,
    expired: AtomicU64,
}

/// Ports tried before a new translated flow gives up (the kernel tries 128).
const PORT_PROBES: u32 = 256;

/// Slots examined per early-drop attempt (the kernel looks at a bounded stretch too).
const EVICT_SCAN: usize = 256;

#[inline]
fn shard_of(t: &Tuple) -> usize {
    let mut h = u64::from(u32::from(t.src)) << 32 | u64::from(u32::from(t.dst));
    h ^= (u64::from(t.sport) << 16 | u64::from(t.dport)) << 8 | u64::from(t.proto.0);
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
}

impl ConnTrack {
    /// A table of at most `max` entries; memory is taken as entries come.
    pub fn new(max: usize, timeouts: Timeouts) -> ConnTrack {
        let max = max.clamp(1, REPLY_BIT as usize);
        ConnTrack {
            index: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(Default::default())))
                .collect(),
            chunks: (0..max.div_ceil(CHUNK)).map(|_| OnceLock::new()).collect(),
            max,
            fresh: AtomicUsize::new(0),
            free: (0..FREE_LISTS).map(|_| Mutex::new(Vec::new())).collect(),
            free_len: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            shares: DomainShares::default(),
            next_generation: AtomicU32::new(1),
            timeouts,
            gc_cursor: AtomicUsize::new(0),
            evict_cursor: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// Gives network `d` a share of at most `shares[d]` entries (None: only the
    /// table's maximum bounds it). A flow counts against the network its first packet
    /// came from.
    pub fn with_zone_shares(mut self, shares: &[Option<usize>]) -> ConnTrack {
        self.shares = DomainShares::new(shares.iter().map(|s| s.unwrap_or(usize::MAX)));
        self
    }

    /// Gives network `zone` a share of at most `max` entries (`None`: only the
    /// table's maximum), while workers track flows. A network over a smaller share
    /// keeps its flows and starts none until it is under it (or evicts one of its
    /// own unassured entries for room, as at its share).
    pub fn set_zone_share(&self, zone: DomainId, max: Option<usize>) {
        self.shares.set_max(zone, max);
    }

    /// The share of network `zone` (None: no share of its own).
    pub fn zone_share(&self, zone: DomainId) -> Option<usize> {
        self.shares.max(zone)
    }

    /// Live entries whose flow started in network `zone`.
    pub fn zone_len(&self, zone: DomainId) -> usize {
        self.shares.used(zone)
    }

    /// Heap bytes a table of at most `max` entries takes when full: every entry, the
    /// index at the load hash tables grow to, and the bookkeeping. A pure estimate for
    /// `switchyard check`; `tests/conntrack_memory.rs` measures the real thing.
    pub fn bytes_for(max: usize) -> usize {
        use std::mem::size_of;
        let max = max.max(1);
        let slots = max.div_ceil(CHUNK) * CHUNK * size_of::<Mutex<Slot>>();
        // Each shard holds ~2 max / SHARDS tuples.
        let per_shard = (2 * max).div_ceil(SHARDS);
        let index = SHARDS * super::memory::hash_index_bytes(per_shard, size_of::<(Tuple, u32)>());
        // Free lists can hold every slot once; the chunk table one pointer a chunk.
        let free = max * size_of::<u32>();
        let chunks = max.div_ceil(CHUNK) * size_of::<OnceLock<Chunk>>();
        slots + index + free + chunks + DomainShares::BYTES
    }

    /// Heap bytes an entry costs in a full table of the default size (65 536).
    pub fn bytes_per_entry() -> usize {
        ConnTrack::bytes_for(1 << 16) >> 16
    }

    /// Slot `i`, which has been handed out (so its chunk exists).
    #[inline]
    fn slot(&self, i: u32) -> &Mutex<Slot> {
        let i = i as usize;
        &self.chunks[i / CHUNK]
            .get()
            .expect("a slot handed out has its chunk")[i % CHUNK]
    }

    /// Slot `i` if its chunk exists.
    #[inline]
    fn slot_checked(&self, i: usize) -> Option<&Mutex<Slot>> {
        self.chunks.get(i / CHUNK)?.get().map(|c| &c[i % CHUNK])
    }

    /// A free slot: a freed one if there is any, else one never used (allocating its
    /// chunk if it is the first of one).
    fn take_slot(&self, hint: usize) -> Option<u32> {
        if self.free_len.load(Ordering::Relaxed) > 0 {
            for k in 0..FREE_LISTS {
                let mut list = lock(&self.free[(hint + k) % FREE_LISTS]);
                if let Some(i) = list.pop() {
                    // Counted under the list's lock, as the push was: never below zero.
                    self.free_len.fetch_sub(1, Ordering::Relaxed);
                    return Some(i);
                }
            }
        }
        let i = self
            .fresh
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                (f < self.max).then_some(f + 1)
            })
            .ok()?;
        self.chunks[i / CHUNK]
            .get_or_init(|| (0..CHUNK).map(|_| Mutex::new(Slot::default())).collect());
        Some(i as u32)
    }

    fn give_slot(&self, i: u32) {
        let mut list = lock(&self.free[i as usize % FREE_LISTS]);
        list.push(i);
        self.free_len.fetch_add(1, Ordering::Relaxed);
    }

    /// How many slots have been handed out: the stretch scans look at.
    fn used(&self) -> usize {
        self.fresh.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.max
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Entries evicted early to make room, since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Entries expired, since the start.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// True if some live entry uses `t` as one of its tuples.
    pub fn tuple_in_use(&self, t: &Tuple) -> bool {
        lock(&self.index[shard_of(t)]).contains_key(t)
    }

    /// A port for the translated source `new_src` of a `proto` flow to `dst:dport`:
    /// `want` if the reply tuple it makes is free — the kernel keeps the source port
    /// when it can — else one from `range`, probed from a point derived from the flow
    /// so that different flows spread out. For ICMP the port is the echo identifier,
    /// the same both ways.
    pub fn pick_port(
        &self,
        proto: IpProtocol,
        dst: Ipv4Addr,
        dport: u16,
        new_src: Ipv4Addr,
        want: u16,
        (lo, hi): (u16, u16),
    ) -> Option<u16> {
        self.pick_port_except(proto, dst, dport, new_src, want, (lo, hi), None)
    }

    /// [`ConnTrack::pick_port`] as if the expired entry `gone` had been removed (for
    /// what-if traces: the real packet's lookup removes the expired entry of its
    /// tuple before its new flow picks a port).
    #[allow(clippy::too_many_arguments)]
    pub fn pick_port_except(
        &self,
        proto: IpProtocol,
        dst: Ipv4Addr,
        dport: u16,
        new_src: Ipv4Addr,
        want: u16,
        (lo, hi): (u16, u16),
        gone: Option<&Conn>,
    ) -> Option<u16> {
        let reply = |p: u16| Tuple {
            proto,
            src: dst,
            sport: if proto == IpProtocol::ICMP { p } else { dport },
            dst: new_src,
            dport: p,
        };
        let taken = |t: &Tuple| self.tuple_in_use(t) && !gone.is_some_and(|c| c.has(t));
        if !taken(&reply(want)) {
            return Some(want);
        }
        let n = u32::from(hi - lo) + 1;
        let seed = u32::from(dst).wrapping_mul(2_654_435_761)
            ^ u32::from(want).wrapping_mul(40503)
            ^ u32::from(dport);
        (0..n.min(PORT_PROBES))
            .map(|k| lo + ((seed.wrapping_add(k)) % n) as u16)
            .find(|&p| !taken(&reply(p)))
    }

    /// The entry with tuple `t` if it has expired and is still in the table: the one
    /// [`ConnTrack::lookup_update`] would remove on meeting `t` (for what-if traces).
    pub fn expired_entry(&self, t: &Tuple, now: Timestamp) -> Option<Conn> {
        let (i, _) = index_entry(*lock(&self.index[shard_of(t)]).get(t)?);
        let slot = lock(self.slot(i));
        slot.conn.filter(|c| c.has(t) && c.expires <= now.0)
    }

    /// Finds the flow a packet with tuple `t`, arriving from network `zone`, belongs
    /// to, and its direction; accounts the packet (`len` bytes, TCP `flags`) and
    /// advances the flow's state. Returns a copy of the entry as updated. A packet from
    /// another network than the direction's zone is not of the flow (None). Expired
    /// entries are removed here, not matched.
    pub fn lookup_update(
        &self,
        t: &Tuple,
        zone: DomainId,
        len: usize,
        seg: &Segment,
        now: Timestamp,
    ) -> Result<(CtRef, Conn, TcpVerdict), Miss> {
        self.lookup_update_reporting(t, zone, len, seg, now, Report::off())
    }

    /// As [`ConnTrack::lookup_update`], reporting a flow that becomes assured and an
    /// expired entry it removes.
    pub fn lookup_update_reporting(
        &self,
        t: &Tuple,
        zone: DomainId,
        len: usize,
        seg: &Segment,
        now: Timestamp,
        report: Report<'_, ConnChange>,
    ) -> Result<(CtRef, Conn, TcpVerdict), Miss> {
        let v = *lock(&self.index[shard_of(t)])
            .get(t)
            .ok_or(Miss::Untracked)?;
        let (i, dir) = index_entry(v);
        let slot = lock(self.slot(i));
        self.update_found(slot, i, dir, t, zone, len, seg, now, report)
    }

    /// As [`ConnTrack::lookup_update_reporting`], finding the flow's entry through a
    /// worker's own cache of the index ([`CtCache`]) when it holds the tuple and the
    /// entry it names still holds that flow: then no index shard is locked, only the
    /// entry. Otherwise the index is asked, and its answer cached. The result is the
    /// same either way; the second value says which way it was found.
    #[allow(clippy::too_many_arguments)]
    pub fn lookup_update_cached(
        &self,
        cache: &mut CtCache,
        t: &Tuple,
        zone: DomainId,
        len: usize,
        seg: &Segment,
        now: Timestamp,
        report: Report<'_, ConnChange>,
    ) -> (Result<(CtRef, Conn, TcpVerdict), Miss>, Answered) {
        if let Some(at) = cache.get(t) {
            let (i, dir) = index_entry(at.index);
            let slot = lock(self.slot(i));
            if slot.generation == at.generation && slot.conn.as_ref().is_some_and(|c| c.has(t)) {
                let found = self.update_found(slot, i, dir, t, zone, len, seg, now, report);
                return (found, Answered::Cache);
            }
            // Stale: the flow went, or its slot holds another now. The slot's lock
            // is let go before the index is locked (index before entries).
            drop(slot);
            cache.forget(t);
        }
        let found = {
            let shard = lock(&self.index[shard_of(t)]);
            shard.get(t).copied()
        };
        let Some(v) = found else {
            return (Err(Miss::Untracked), Answered::Table);
        };
        let (i, dir) = index_entry(v);
        let slot = lock(self.slot(i));
        let generation = slot.generation;
        let found = self.update_found(slot, i, dir, t, zone, len, seg, now, report);
        if found.is_ok() {
            cache.put(
                t,
                CtSlot {
                    index: v,
                    generation,
                },
            );
        }
        (found, Answered::Table)
    }

    /// The rest of a lookup once the index has named slot `i` (direction `dir`) for
    /// tuple `t` and the slot is locked: the flow must still be there with that
    /// tuple, unexpired (an expired one is removed) and from the direction's zone;
    /// the packet is then accounted and the state advanced.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn update_found(
        &self,
        mut slot: std::sync::MutexGuard<'_, Slot>,
        i: u32,
        dir: Dir,
        t: &Tuple,
        zone: DomainId,
        len: usize,
        seg: &Segment,
        now: Timestamp,
        mut report: Report<'_, ConnChange>,
    ) -> Result<(CtRef, Conn, TcpVerdict), Miss> {
        let generation = slot.generation;
        let c = slot
            .conn
            .as_mut()
            .filter(|c| c.has(t))
            .ok_or(Miss::Untracked)?;
        if c.expires <= now.0 {
            drop(slot);
            if let Some(c) = self.remove(i, generation) {
                self.expired.fetch_add(1, Ordering::Relaxed);
                report.emit(|| ConnChange::Destroyed(c, DestroyReason::expired(&c)));
            }
            return Err(Miss::Untracked);
        }
        if c.zone[dir.index()] != zone {
            return Err(Miss::OtherZone);
        }
        let was_assured = c.assured;
        let verdict = c.update(dir, len, seg, now, &self.timeouts);
        if c.assured && !was_assured {
            report.emit(|| ConnChange::Assured(*c));
        }
        Ok((
            CtRef {
                index: i,
                generation,
                dir,
            },
            *c,
            verdict,
        ))
    }

    /// What [`ConnTrack::lookup_update`] would find and do, changing nothing (for
    /// what-if traces): the entry as the packet would leave it (state, windows,
    /// counters, timeout) is a copy; the table keeps the original. An expired entry is
    /// reported as a miss but not removed.
    pub fn lookup_preview(
        &self,
        t: &Tuple,
        zone: DomainId,
        len: usize,
        seg: &Segment,
        now: Timestamp,
    ) -> Result<(CtRef, Conn, TcpVerdict), Miss> {
        let v = *lock(&self.index[shard_of(t)])
            .get(t)
            .ok_or(Miss::Untracked)?;
        let (i, dir) = index_entry(v);
        let slot = lock(self.slot(i));
        let mut c = slot
            .conn
            .filter(|c| c.has(t) && c.expires > now.0)
            .ok_or(Miss::Untracked)?;
        if c.zone[dir.index()] != zone {
            return Err(Miss::OtherZone);
        }
        // On a copy: a segment out of window leaves it as it was, as it would the entry.
        let verdict = c.update(dir, len, seg, now, &self.timeouts);
        Ok((
            CtRef {
                index: i,
                generation: slot.generation,
                dir,
            },
            c,
            verdict,
        ))
    }

    /// Whether [`ConnTrack::insert`] would track a new flow, changing nothing (for
    /// what-if traces): `Ok(true)` if it would first evict an unassured entry to make
    /// room. The eviction candidates are looked for in the stretch the next eviction
    /// would scan, as `insert` would. `gone`: an expired entry the packet's own
    /// lookup would have removed first (see [`ConnTrack::expired_entry`]), counted as
    /// removed.
    pub fn would_insert(
        &self,
        orig: &Tuple,
        reply: &Tuple,
        zone: [DomainId; 2],
        now: Timestamp,
        gone: Option<&Conn>,
    ) -> Result<bool, InsertError> {
        let taken = |t: &Tuple| self.tuple_in_use(t) && !gone.is_some_and(|c| c.has(t));
        if taken(orig) || taken(reply) {
            return Err(InsertError::Clash);
        }
        let owner = zone[0];
        let freed = usize::from(gone.is_some());
        let freed_here = usize::from(gone.is_some_and(|c| c.zone[0] == owner));
        let mut evict = false;
        if self
            .shares
            .max(owner)
            .is_some_and(|max| self.shares.used(owner).saturating_sub(freed_here) >= max)
        {
            if !self.evictable(now, Some(owner)) {
                return Err(InsertError::ZoneFull);
            }
            evict = true;
        }
        if !evict && self.len().saturating_sub(freed) >= self.max {
            if !self.evictable(now, None) {
                return Err(InsertError::Full);
            }
            evict = true;
        }
        Ok(evict)
    }

    /// True if [`ConnTrack::early_drop`] would find an entry to evict (of network
    /// `zone` only, if given), looking at the same stretch without moving its cursor.
    fn evictable(&self, now: Timestamp, zone: Option<DomainId>) -> bool {
        let n = self.used();
        if n == 0 {
            return false;
        }
        let start = self.evict_cursor.load(Ordering::Relaxed) % n;
        (0..EVICT_SCAN.min(n)).any(|k| {
            let Some(slot) = self.slot_checked((start + k) % n) else {
                return false;
            };
            lock(slot).conn.is_some_and(|c| {
                (c.expires <= now.0 || !c.assured) && zone.is_none_or(|z| c.zone[0] == z)
            })
        })
    }

    /// Finds the flow of tuple `t` without accounting a packet (for ICMP errors about it).
    pub fn lookup(&self, t: &Tuple, now: Timestamp) -> Option<(CtRef, Conn)> {
        let (i, dir) = index_entry(*lock(&self.index[shard_of(t)]).get(t)?);
        let slot = lock(self.slot(i));
        let c = slot.conn.filter(|c| c.has(t) && c.expires > now.0)?;
        Some((
            CtRef {
                index: i,
                generation: slot.generation,
                dir,
            },
            c,
        ))
    }

    /// A copy of the entry behind `r`, if it is still the same flow.
    pub fn get(&self, r: CtRef) -> Option<Conn> {
        let slot = lock(self.slot_checked(r.index as usize)?);
        slot.conn.filter(|_| slot.generation == r.generation)
    }

    /// Accounts a packet on a flow found earlier (the first packet of a new flow).
    pub fn seen(&self, r: CtRef, len: usize, seg: &Segment, now: Timestamp) -> TcpVerdict {
        let Some(slot) = self.slot_checked(r.index as usize) else {
            return TcpVerdict::Invalid;
        };
        let mut slot = lock(slot);
        if slot.generation != r.generation {
            return TcpVerdict::Invalid;
        }
        match slot.conn.as_mut() {
            Some(c) => c.update(r.dir, len, seg, now, &self.timeouts),
            None => TcpVerdict::Invalid,
        }
    }

    /// Tracks a new flow whose original direction arrives from network `zone[0]` and
    /// whose replies arrive from `zone[1]`. On a full table, or with network `zone[0]`
    /// at its share, evicts one evictable entry first (of that network, for its
    /// share); the flag says whether it did.
    pub fn insert(
        &self,
        orig: Tuple,
        reply: Tuple,
        zone: [DomainId; 2],
        state: ProtoState,
        now: Timestamp,
    ) -> Result<(CtRef, bool), InsertError> {
        self.insert_reporting(orig, reply, zone, state, now, Report::off())
    }

    /// As [`ConnTrack::insert`], reporting the entries it evicts.
    pub fn insert_reporting(
        &self,
        orig: Tuple,
        reply: Tuple,
        zone: [DomainId; 2],
        state: ProtoState,
        now: Timestamp,
        mut report: Report<'_, ConnChange>,
    ) -> Result<(CtRef, bool), InsertError> {
        if self.tuple_in_use(&orig) || self.tuple_in_use(&reply) {
            return Err(InsertError::Clash);
        }
        let mut evicted = false;
        // The network's share first: a flood in one network makes room among its own
        // entries, or is refused, and never takes another network's.
        let owner = zone[0];
        while !self.shares.try_take(owner) {
            if self.early_drop(now, Some(owner), &mut report) {
                evicted = true;
            } else {
                return Err(InsertError::ZoneFull);
            }
        }
        let unshare = || self.shares.give_back(owner);
        // Then a place in the table, evicting if it is full.
        loop {
            let n = self.len.load(Ordering::Relaxed);
            if n < self.max {
                if self
                    .len
                    .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
            } else if self.early_drop(now, None, &mut report) {
                evicted = true;
            } else {
                unshare();
                return Err(InsertError::Full);
            }
        }
        let Some(i) = self.take_slot(shard_of(&orig)) else {
            // Entries being removed right now: counted out, not yet back in a list.
            self.len.fetch_sub(1, Ordering::Relaxed);
            unshare();
            return Err(InsertError::Full);
        };
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed).max(1);
        let (a, b) = (shard_of(&orig), shard_of(&reply));
        let (lo, hi) = (a.min(b), a.max(b));
        let mut first = lock(&self.index[lo]);
        let mut second = (hi != lo).then(|| lock(&self.index[hi]));
        let clash = {
            let shard = |k: usize| {
                if k == lo {
                    &*first
                } else {
                    second.as_deref().expect("two shards")
                }
            };
            shard(a).contains_key(&orig) || shard(b).contains_key(&reply)
        };
        if clash {
            drop((first, second));
            self.give_slot(i);
            self.len.fetch_sub(1, Ordering::Relaxed);
            unshare();
            return Err(InsertError::Clash);
        }
        {
            let mut slot = lock(self.slot(i));
            slot.generation = generation;
            slot.conn = Some(self.fresh(orig, reply, zone, state, now));
        }
        for (t, k, dir) in [(orig, a, Dir::Original), (reply, b, Dir::Reply)] {
            let shard = if k == lo {
                &mut *first
            } else {
                second.as_deref_mut().expect("two shards")
            };
            shard.insert(t, index_value(i, dir));
        }
        Ok((
            CtRef {
                index: i,
                generation,
                dir: Dir::Original,
            },
            evicted,
        ))
    }

    /// The entry [`ConnTrack::insert`] would make for a new flow, as its first packet
    /// (`len` bytes, TCP segment `seg`) would leave it — a copy for what-if traces,
    /// never put in the table.
    #[allow(clippy::too_many_arguments)]
    pub fn preview_new(
        &self,
        orig: Tuple,
        reply: Tuple,
        zone: [DomainId; 2],
        state: ProtoState,
        len: usize,
        seg: &Segment,
        now: Timestamp,
    ) -> Conn {
        let mut c = self.fresh(orig, reply, zone, state, now);
        c.update(Dir::Original, len, seg, now, &self.timeouts);
        c
    }

    /// A new entry for a flow, nothing seen yet, expiring after its state's timeout.
    fn fresh(
        &self,
        orig: Tuple,
        reply: Tuple,
        zone: [DomainId; 2],
        state: ProtoState,
        now: Timestamp,
    ) -> Conn {
        Conn {
            orig,
            reply,
            zone,
            state,
            tcp: [TcpSide::default(); 2],
            assured: false,
            expires: now.0 + u64::from(self.timeouts.for_state(state)) * 1_000_000_000,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    /// Removes entry `i` if it still holds generation `generation`. Returns what it
    /// removed.
    fn remove(&self, i: u32, generation: u32) -> Option<Conn> {
        let conn = {
            let mut slot = lock(self.slot(i));
            if slot.generation != generation {
                return None;
            }
            slot.conn.take()?
        };
        for t in [conn.orig, conn.reply] {
            let mut shard = lock(&self.index[shard_of(&t)]);
            if shard.get(&t).is_some_and(|&v| index_entry(v).0 == i) {
                shard.remove(&t);
            }
        }
        self.give_slot(i);
        self.shares.give_back(conn.zone[0]);
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(conn)
    }

    /// Frees a slot held by an unassured (or expired) entry — of network `zone`
    /// only, if given — scanning a bounded stretch of the table, the one closest to
    /// expiring first.
    fn early_drop(
        &self,
        now: Timestamp,
        zone: Option<DomainId>,
        report: &mut Report<'_, ConnChange>,
    ) -> bool {
        let n = self.used();
        if n == 0 {
            return false;
        }
        let start = self.evict_cursor.fetch_add(EVICT_SCAN, Ordering::Relaxed) % n;
        let mut victim: Option<(u32, u32, u64)> = None;
        for k in 0..EVICT_SCAN.min(n) {
            let i = (start + k) % n;
            let Some(Ok(slot)) = self.slot_checked(i).map(Mutex::try_lock) else {
                continue;
            };
            if let Some(c) = &slot.conn {
                let evictable =
                    (c.expires <= now.0 || !c.assured) && zone.is_none_or(|z| c.zone[0] == z);
                if evictable && victim.is_none_or(|(_, _, e)| c.expires < e) {
                    victim = Some((i as u32, slot.generation, c.expires));
                }
            }
        }
        match victim.and_then(|(i, g, _)| self.remove(i, g)) {
            Some(c) => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                // An expired entry taken for room went by its timeout all the same.
                let why = if c.expires <= now.0 {
                    DestroyReason::expired(&c)
                } else {
                    DestroyReason::Evicted
                };
                report.emit(|| ConnChange::Destroyed(c, why));
                true
            }
            None => false,
        }
    }

    /// Reclaims expired entries, looking at no more than `budget` slots per call
    /// (the scan resumes where it stopped). Returns how many were reclaimed.
    pub fn gc(&self, now: Timestamp, budget: usize) -> usize {
        self.gc_reporting(now, budget, Report::off())
    }

    /// As [`ConnTrack::gc`], reporting every entry it reclaims.
    pub fn gc_reporting(
        &self,
        now: Timestamp,
        budget: usize,
        mut report: Report<'_, ConnChange>,
    ) -> usize {
        let n = self.used();
        if n == 0 {
            return 0;
        }
        let budget = budget.min(n);
        let start = self.gc_cursor.fetch_add(budget, Ordering::Relaxed) % n;
        let mut reclaimed = 0;
        for k in 0..budget {
            let i = (start + k) % n;
            let Some(slot) = self.slot_checked(i) else {
                continue;
            };
            let expired = {
                let slot = lock(slot);
                slot.conn
                    .as_ref()
                    .filter(|c| c.expires <= now.0)
                    .map(|_| slot.generation)
            };
            if let Some(c) = expired.and_then(|g| self.remove(i as u32, g)) {
                reclaimed += 1;
                report.emit(|| ConnChange::Destroyed(c, DestroyReason::expired(&c)));
            }
        }
        self.expired.fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }

    /// Every slot handed out so far.
    fn slots(&self) -> impl Iterator<Item = &Mutex<Slot>> {
        (0..self.used()).filter_map(|i| self.slot_checked(i))
    }

    /// Copies of the live entries with their seconds left.
    pub fn entries(&self, now: Timestamp) -> Vec<(Conn, u64)> {
        self.slots()
            .filter_map(|s| {
                let c = lock(s).conn?;
                (c.expires > now.0).then(|| (c, (c.expires - now.0) / 1_000_000_000))
            })
            .collect()
    }

    /// Forgets every flow that has `ip` in either tuple (an endpoint went away).
    pub fn flush_address(&self, ip: Ipv4Addr) -> usize {
        self.forget_where(|c| [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst].contains(&ip))
    }

    /// Forgets every flow `doomed` picks (an endpoint or a network went away): each
    /// goes as an expired one does — its tuples out of the index (so the NAT ports
    /// of its reply tuple are free again), its slot back to the free lists, its place
    /// back to its network's share and the table's — but is not counted as expired.
    /// Safe while workers use the table: an entry reused meanwhile is left alone.
    pub fn forget_where(&self, doomed: impl Fn(&Conn) -> bool) -> usize {
        let doomed: Vec<(u32, u32)> = self
            .slots()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = lock(s);
                let c = s.conn.as_ref()?;
                doomed(c).then_some((i as u32, s.generation))
            })
            .collect();
        doomed
            .into_iter()
            .filter(|&(i, g)| self.remove(i, g).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn t(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
        Tuple {
            proto: IpProtocol::TCP,
            src: src.into(),
            dst: dst.into(),
            sport,
            dport,
        }
    }

    const SYN: TcpFlags = TcpFlags::SYN;
    const SYNACK: TcpFlags = TcpFlags::SYN.union(TcpFlags::ACK);
    const ACK: TcpFlags = TcpFlags::ACK;
    const FIN: TcpFlags = TcpFlags::FIN.union(TcpFlags::ACK);
    const RST: TcpFlags = TcpFlags::RST;

    /// Zones of the flows in these tests: originals from network 0, replies from 1.
    const Z: [DomainId; 2] = [DomainId(0), DomainId(1)];

    fn secs(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    fn masq() -> (Tuple, Tuple) {
        let orig = t([172, 17, 0, 2], 40000, [198, 51, 100, 2], 80);
        let reply = t([198, 51, 100, 2], 80, [198, 51, 100, 1], 40000);
        (orig, reply)
    }

    fn state(ct: &ConnTrack, r: CtRef) -> TcpState {
        match ct.get(r).unwrap().state {
            ProtoState::Tcp(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// Sends a packet of the flow with tuple `tuple` at time `now`.
    fn pkt(
        ct: &ConnTrack,
        tuple: &Tuple,
        flags: TcpFlags,
        now: u64,
    ) -> Option<(CtRef, TcpVerdict)> {
        // From the network the tuple's direction is expected from.
        let zone = ct
            .lookup(tuple, secs(now))
            .map_or(Z[0], |(r, _)| Z[r.dir as usize]);
        ct.lookup_update(tuple, zone, 60, &Segment::flags(flags), secs(now))
            .ok()
            .map(|(r, _, v)| (r, v))
    }

    #[test]
    fn every_tcp_transition_of_a_connection_lifetime() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        let (o, _) = ct
            .insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        assert_eq!(ct.lookup(&reply, secs(0)).unwrap().0.dir, Dir::Reply);
        assert_eq!(state(&ct, o), SynSent);
        let steps = [
            (reply, SYNACK, SynRecv),
            (orig, ACK, Established),
            (orig, ACK, Established),
            (reply, ACK, Established),
            (orig, FIN, FinWait),
            (reply, ACK, CloseWait),
            (reply, FIN, LastAck),
            (orig, ACK, TimeWait),
        ];
        for (tuple, flags, want) in steps {
            assert_eq!(
                pkt(&ct, &tuple, flags, 1).unwrap().1,
                TcpVerdict::Ok(want),
                "{flags:?} {tuple}"
            );
            assert_eq!(state(&ct, o), want);
        }
        let c = ct.get(o).unwrap();
        assert!(c.assured, "assured once established");
        assert_eq!(c.packets, [4, 4]);
        // TIME_WAIT lasts 120 s; an expired entry is not matched, and goes.
        assert!(ct.lookup(&orig, secs(120)).is_some());
        assert!(pkt(&ct, &orig, ACK, 122).is_none());
        assert!(ct.is_empty());
        assert_eq!(ct.expired(), 1);
    }

    #[test]
    fn rst_closes_and_close_times_out_fast() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        assert_eq!(pkt(&ct, &orig, RST, 5).unwrap().1, TcpVerdict::Ok(Close));
        assert!(ct.lookup(&orig, secs(14)).is_some());
        assert!(ct.lookup(&orig, secs(15)).is_none(), "CLOSE lasts 10 s");
    }

    #[test]
    fn both_sides_fin_and_simultaneous_close() {
        assert_eq!(
            tcp_transition(Established, Dir::Reply, FIN),
            TcpVerdict::Ok(FinWait)
        );
        assert_eq!(
            tcp_transition(FinWait, Dir::Original, FIN),
            TcpVerdict::Ok(LastAck)
        );
        assert_eq!(
            tcp_transition(LastAck, Dir::Reply, ACK),
            TcpVerdict::Ok(TimeWait)
        );
        assert_eq!(
            tcp_transition(TimeWait, Dir::Original, SYN),
            TcpVerdict::Ok(SynSent),
            "port reuse"
        );
        assert_eq!(
            tcp_transition(Established, Dir::Original, SYN),
            TcpVerdict::Invalid
        );
        assert_eq!(
            tcp_transition(SynSent, Dir::Original, ACK),
            TcpVerdict::Invalid
        );
    }

    #[test]
    fn tcp_timeouts_follow_the_state() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        assert!(ct.lookup(&orig, secs(119)).is_some(), "SYN_SENT: 120 s");
        assert!(ct.lookup(&orig, secs(121)).is_none());
        ct.gc(secs(121), 16);
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(200))
            .unwrap();
        pkt(&ct, &reply, SYNACK, 200);
        pkt(&ct, &orig, ACK, 200);
        assert!(
            ct.lookup(&orig, secs(200 + 431_999)).is_some(),
            "ESTABLISHED: 5 days"
        );
    }

    #[test]
    fn udp_unreplied_then_assured() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let (mut orig, mut reply) = masq();
        orig.proto = IpProtocol::UDP;
        reply.proto = IpProtocol::UDP;
        let (o, _) = ct
            .insert(orig, reply, Z, ProtoState::Udp { replied: false }, secs(0))
            .unwrap();
        pkt(&ct, &orig, TcpFlags::default(), 0);
        assert!(!ct.get(o).unwrap().assured);
        assert!(ct.lookup(&orig, secs(29)).is_some(), "unreplied: 30 s");
        pkt(&ct, &reply, TcpFlags::default(), 29);
        assert!(ct.get(o).unwrap().assured);
        assert!(ct.lookup(&orig, secs(29 + 119)).is_some(), "replied: 120 s");
        assert!(ct.lookup(&orig, secs(29 + 121)).is_none());
    }

    #[test]
    fn full_table_evicts_unassured_else_refuses() {
        let ct = ConnTrack::new(2, Timeouts::default());
        let flow = |n: u8| {
            (
                t([10, 0, 0, n], 1, [10, 0, 0, 9], 80),
                t([10, 0, 0, 9], 80, [10, 0, 0, n], 1),
            )
        };
        for n in [1, 2] {
            let (o, r) = flow(n);
            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(0))
                .unwrap();
            // Assured: a real connection.
            pkt(&ct, &r, SYNACK, 1);
            pkt(&ct, &o, ACK, 1);
        }
        let (o3, r3) = flow(3);
        assert_eq!(
            ct.insert(o3, r3, Z, ProtoState::Tcp(SynSent), secs(2)),
            Err(InsertError::Full)
        );
        assert_eq!(ct.len(), 2, "nothing assured was evicted");
        // An unassured (half-open) entry is evicted for a new flow.
        let ct2 = ConnTrack::new(1, Timeouts::default());
        let (o1, r1) = flow(1);
        ct2.insert(o1, r1, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let (_, evicted) = ct2
            .insert(o3, r3, Z, ProtoState::Tcp(SynSent), secs(1))
            .unwrap();
        assert!(evicted);
        assert_eq!(ct2.evicted(), 1);
        assert!(ct2.lookup(&o3, secs(1)).is_some());
        assert!(ct2.lookup(&o1, secs(1)).is_none());
    }

    #[test]
    fn clashing_tuples_are_refused_and_stale_refs_detected() {
        let ct = ConnTrack::new(4, Timeouts::default());
        let (orig, reply) = masq();
        let (o, _) = ct
            .insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let other = t([172, 17, 0, 3], 40000, [198, 51, 100, 2], 80);
        assert_eq!(
            ct.insert(other, reply, Z, ProtoState::Tcp(SynSent), secs(0)),
            Err(InsertError::Clash)
        );
        assert!(ct.tuple_in_use(&reply));
        // Expire it, reuse the slot: the old reference no longer resolves.
        for _ in 0..4 {
            ct.gc(secs(200), 1);
        }
        assert!(ct.get(o).is_none());
        let (o2, _) = ct
            .insert(other, reply, Z, ProtoState::Tcp(SynSent), secs(200))
            .unwrap();
        assert_ne!(o2.generation, o.generation);
        assert_eq!(
            ct.seen(o, 40, &Segment::flags(ACK), secs(200)),
            TcpVerdict::Invalid,
            "a stale reference changes nothing"
        );
    }

    #[test]
    fn gc_is_incremental() {
        let ct = ConnTrack::new(8, Timeouts::default());
        for i in 0..8u8 {
            let (mut o, mut r) = masq();
            o.sport = u16::from(i);
            r.dport = u16::from(i);
            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(0))
                .unwrap();
        }
        assert_eq!(ct.gc(secs(500), 3), 3);
        assert_eq!(ct.len(), 5);
        assert_eq!(ct.gc(secs(500), 100), 5);
        assert_eq!(ct.expired(), 8);
    }

    /// Workers inserting, looking up and collecting at once: no deadlock, the bound
    /// holds, and every entry that is found is whole (both tuples point at it).
    #[test]
    fn concurrent_workers_keep_the_table_consistent() {
        let ct = std::sync::Arc::new(ConnTrack::new(64, Timeouts::default()));
        let threads: Vec<_> = (0..4u8)
            .map(|w| {
                let ct = ct.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u16 {
                        let o = t([10, w, (i >> 8) as u8, i as u8], i, [198, 51, 100, 2], 80);
                        let r = t(
                            [198, 51, 100, 2],
                            80,
                            [198, 51, 100, 1],
                            i.wrapping_mul(7).wrapping_add(u16::from(w)),
                        );
                        let _ =
                            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(u64::from(i / 100)));
                        if let Ok((rf, c, _)) = ct.lookup_update(
                            &r,
                            Z[1],
                            40,
                            &Segment::flags(SYNACK),
                            secs(u64::from(i / 100)),
                        ) {
                            assert_eq!(rf.dir, Dir::Reply);
                            assert_eq!(c.reply, r);
                        }
                        if i % 64 == 0 {
                            ct.gc(secs(u64::from(i / 100) + 200), 16);
                        }
                        assert!(ct.len() <= ct.capacity());
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let live = ct.entries(secs(0));
        assert!(live.len() <= 64);
        for (c, _) in live {
            assert!(ct.tuple_in_use(&c.orig) && ct.tuple_in_use(&c.reply));
        }
    }

    /// A packet through a worker's cache: the result, and whether the cache found it.
    fn cached(
        ct: &ConnTrack,
        cache: &mut CtCache,
        tuple: &Tuple,
        zone: DomainId,
        flags: TcpFlags,
        now: u64,
    ) -> (Result<(CtRef, Conn, TcpVerdict), Miss>, Answered) {
        ct.lookup_update_cached(
            cache,
            tuple,
            zone,
            60,
            &Segment::flags(flags),
            secs(now),
            Report::off(),
        )
    }

    /// Why a lookup missed, if it did, and how it was answered.
    fn miss<T>((r, how): (Result<T, Miss>, Answered)) -> (Option<Miss>, Answered) {
        (r.err(), how)
    }

    #[test]
    fn a_cached_flow_skips_the_index_and_is_updated_as_without() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let mut cache = CtCache::new();
        let (orig, reply) = masq();
        let (o, _) = ct
            .insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let (first, how) = cached(&ct, &mut cache, &reply, Z[1], SYNACK, 1);
        assert_eq!(how, Answered::Table);
        assert_eq!(first.unwrap().2, TcpVerdict::Ok(SynRecv));
        let (r, c, v) = cached(&ct, &mut cache, &orig, Z[0], ACK, 1).0.unwrap();
        assert_eq!((r, v), (o, TcpVerdict::Ok(Established)));
        assert!(c.assured);
        // Both directions are cached now: found without the index, same updates.
        let (found, how) = cached(&ct, &mut cache, &reply, Z[1], ACK, 2);
        assert_eq!(how, Answered::Cache);
        let (r, c, _) = found.unwrap();
        assert_eq!((r.dir, c.packets), (Dir::Reply, [1, 2]));
        assert_eq!(ct.get(o).unwrap().packets, [1, 2]);
        // The zone is checked on a cached flow as on any: a forged reply from the
        // original's network is not of the flow.
        assert_eq!(
            miss(cached(&ct, &mut cache, &reply, Z[0], ACK, 2)),
            (Some(Miss::OtherZone), Answered::Cache)
        );
    }

    #[test]
    fn a_flow_gone_is_not_served_from_a_cache() {
        let ct = ConnTrack::new(1, Timeouts::default());
        let mut cache = CtCache::new();
        let (orig, reply) = masq();
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        cached(&ct, &mut cache, &orig, Z[0], SYN, 0).0.unwrap();
        assert_eq!(
            cached(&ct, &mut cache, &orig, Z[0], SYN, 0).1,
            Answered::Cache
        );
        // Forgotten (its endpoint went): the cached slot is empty.
        assert_eq!(ct.forget_where(|_| true), 1);
        assert_eq!(
            miss(cached(&ct, &mut cache, &orig, Z[0], SYN, 1)),
            (Some(Miss::Untracked), Answered::Table)
        );
        // Its slot reused by another flow: the old tuple does not find the new one,
        // and the new one's packets are its own.
        let (o2, r2) = (
            t([172, 17, 0, 3], 40000, [198, 51, 100, 2], 80),
            t([198, 51, 100, 2], 80, [198, 51, 100, 1], 40001),
        );
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(1))
            .unwrap();
        cached(&ct, &mut cache, &orig, Z[0], SYN, 1).0.unwrap();
        assert_eq!(ct.forget_where(|_| true), 1);
        let (n, _) = ct
            .insert(o2, r2, Z, ProtoState::Tcp(SynSent), secs(1))
            .unwrap();
        assert_eq!(
            miss(cached(&ct, &mut cache, &orig, Z[0], SYN, 1)),
            (Some(Miss::Untracked), Answered::Table)
        );
        assert_eq!(ct.get(n).unwrap().packets, [0, 0]);
        // The same tuple tracked again in a new flow is found as that flow.
        ct.forget_where(|_| true);
        let (again, _) = ct
            .insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(2))
            .unwrap();
        let (r, _, _) = cached(&ct, &mut cache, &orig, Z[0], SYN, 2).0.unwrap();
        assert_eq!(r, again);
        assert_eq!(
            cached(&ct, &mut cache, &orig, Z[0], SYN, 2).1,
            Answered::Cache
        );
        // Expired: removed on meeting it, through the cache as through the index.
        assert_eq!(
            miss(cached(&ct, &mut cache, &orig, Z[0], SYN, 200)),
            (Some(Miss::Untracked), Answered::Cache)
        );
        assert!(ct.is_empty());
        assert_eq!(ct.expired(), 1);
        assert_eq!(
            miss(cached(&ct, &mut cache, &orig, Z[0], SYN, 200)),
            (Some(Miss::Untracked), Answered::Table)
        );
    }

    #[test]
    fn a_tuple_back_in_its_slot_the_other_way_round_is_found_as_such() {
        let ct = ConnTrack::new(1, Timeouts::default());
        let mut cache = CtCache::new();
        let (orig, reply) = masq();
        ct.insert(orig, reply, Z, ProtoState::Udp { replied: false }, secs(0))
            .unwrap();
        let (r, _, _) = cached(&ct, &mut cache, &orig, Z[0], TcpFlags::default(), 0)
            .0
            .unwrap();
        assert_eq!(r.dir, Dir::Original);
        // Gone, and the same slot now holds a flow whose *reply* is that tuple,
        // expected from the other network: the cached direction (and with it the
        // zone checked, and the NAT applied) is not this flow's.
        ct.forget_where(|_| true);
        let (r2, _) = ct
            .insert(
                orig.reversed(),
                orig,
                [Z[1], Z[0]],
                ProtoState::Udp { replied: false },
                secs(1),
            )
            .unwrap();
        assert_eq!(r2.index, r.index, "the same slot");
        let (found, how) = cached(&ct, &mut cache, &orig, Z[0], TcpFlags::default(), 1);
        assert_eq!(how, Answered::Table);
        let (r, c, _) = found.unwrap();
        assert_eq!((r.dir, c.orig), (Dir::Reply, orig.reversed()));
    }

    #[test]
    fn evicted_flows_are_not_served_from_a_cache() {
        let ct = ConnTrack::new(1, Timeouts::default());
        let mut cache = CtCache::new();
        let (orig, reply) = masq();
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        cached(&ct, &mut cache, &orig, Z[0], SYN, 0).0.unwrap();
        // A new flow on the full table evicts the unassured one and takes its slot.
        let (o2, r2) = (
            t([172, 17, 0, 3], 40000, [198, 51, 100, 2], 80),
            t([198, 51, 100, 2], 80, [198, 51, 100, 1], 40001),
        );
        let (_, evicted) = ct
            .insert(o2, r2, Z, ProtoState::Tcp(SynSent), secs(1))
            .unwrap();
        assert!(evicted);
        assert_eq!(
            miss(cached(&ct, &mut cache, &orig, Z[0], SYN, 1)),
            (Some(Miss::Untracked), Answered::Table)
        );
    }

    #[test]
    fn a_direction_matches_only_from_its_zone() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        ct.insert(orig, reply, Z, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let syn_ack = Segment::flags(SYNACK);
        assert_eq!(
            ct.lookup_update(&reply, Z[0], 60, &syn_ack, secs(1)).err(),
            Some(Miss::OtherZone),
            "the reply direction, from the original's network"
        );
        assert_eq!(state(&ct, ct.lookup(&orig, secs(1)).unwrap().0), SynSent);
        let (r, _, _) = ct
            .lookup_update(&reply, Z[1], 60, &syn_ack, secs(1))
            .unwrap();
        assert_eq!(r.dir, Dir::Reply);
    }

    #[test]
    fn freed_entries_are_reused_before_the_table_grows() {
        let ct = ConnTrack::new(1 << 24, Timeouts::default());
        for sport in 1..=3u16 {
            let (mut o, mut r) = masq();
            o.sport = sport;
            r.dport = sport;
            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(0))
                .unwrap();
        }
        assert_eq!(ct.used(), 3);
        assert_eq!(ct.gc(secs(500), 100), 3);
        let (o, r) = masq();
        let (c, _) = ct
            .insert(o, r, Z, ProtoState::Tcp(SynSent), secs(500))
            .unwrap();
        assert!(c.index < 3, "a freed entry, not a new one");
        assert_eq!(ct.used(), 3);
        assert_eq!(ct.capacity(), 1 << 24);
    }

    #[test]
    fn a_network_at_its_share_evicts_only_its_own() {
        let ct = ConnTrack::new(8, Timeouts::default()).with_zone_shares(&[Some(2), None]);
        let flow = |n: u8| {
            (
                t([10, 0, 0, n], 1, [10, 0, 0, 9], 80),
                t([10, 0, 0, 9], 80, [10, 0, 0, n], 1),
            )
        };
        let other = [DomainId(1), DomainId(0)];
        let (o, r) = flow(1);
        ct.insert(o, r, other, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        for n in 2..=3 {
            let (o, r) = flow(n);
            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(0))
                .unwrap();
        }
        // Network 0 is at its share: its next flow evicts one of its own.
        let (o, r) = flow(4);
        let (_, evicted) = ct
            .insert(o, r, Z, ProtoState::Tcp(SynSent), secs(1))
            .unwrap();
        assert!(evicted);
        assert_eq!((ct.zone_len(DomainId(0)), ct.zone_len(DomainId(1))), (2, 1));
        assert!(
            ct.lookup(&flow(1).0, secs(1)).is_some(),
            "network 1's flow stays"
        );
        // With nothing of its own to evict (all assured), it is refused.
        for (c, _) in ct.entries(secs(1)) {
            if c.zone[0] == DomainId(0) {
                pkt(&ct, &c.reply, SYNACK, 1);
                pkt(&ct, &c.orig, ACK, 1);
            }
        }
        let (o, r) = flow(5);
        assert_eq!(
            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(2)),
            Err(InsertError::ZoneFull)
        );
        assert_eq!(ct.zone_share(DomainId(0)), Some(2));
        assert_eq!(ct.zone_share(DomainId(1)), None);
    }

    #[test]
    fn a_zone_share_shrunk_at_run_time_keeps_its_flows_and_forgetting_frees_them() {
        let ct = ConnTrack::new(8, Timeouts::default()).with_zone_shares(&[None]);
        let flow = |n: u8| {
            (
                t([10, 0, 0, n], 1, [10, 0, 0, 9], 80),
                t([10, 0, 0, 9], 80, [10, 0, 0, n], 1),
            )
        };
        for n in 1..=3 {
            let (o, r) = flow(n);
            ct.insert(o, r, Z, ProtoState::Tcp(SynSent), secs(0))
                .unwrap();
            pkt(&ct, &r, SYNACK, 0);
            pkt(&ct, &o, ACK, 0);
        }
        ct.set_zone_share(DomainId(0), Some(1));
        assert_eq!((ct.zone_len(DomainId(0)), ct.len()), (3, 3), "flows kept");
        let (o4, r4) = flow(4);
        let new = || ct.insert(o4, r4, Z, ProtoState::Tcp(SynSent), secs(1));
        assert_eq!(new(), Err(InsertError::ZoneFull), "over its share");
        let src1 = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(ct.forget_where(|c| c.orig.src == src1), 1);
        assert_eq!(ct.zone_len(DomainId(0)), 2);
        assert!(
            !ct.tuple_in_use(&flow(1).1),
            "its reply tuple is free again"
        );
        assert_eq!(new(), Err(InsertError::ZoneFull), "still over");
        assert_eq!(ct.forget_where(|c| c.zone[0] == DomainId(0)), 2);
        assert_eq!((ct.zone_len(DomainId(0)), ct.len()), (0, 0));
        assert_eq!(ct.expired(), 0, "forgotten, not expired");
        assert!(new().is_ok());
    }

    /// A side first seen without its SYN is taken as it comes (liberal pickup), and
    /// from then on held to its windows.
    #[test]
    fn a_side_first_seen_mid_stream_is_picked_up() {
        let mut sides = [TcpSide::default(); 2];
        let seg = |seq: u32, ack: u32, len: u32| Segment {
            flags: ACK,
            seq,
            ack,
            win: 1000,
            len,
            wscale: None,
        };
        assert!(tcp_in_window(
            &mut sides,
            0,
            Established,
            &seg(5000, 9000, 100)
        ));
        assert_eq!((sides[0].end, sides[1].end), (5100, 9000));
        assert!(tcp_in_window(
            &mut sides,
            1,
            Established,
            &seg(9000, 5100, 10)
        ));
        assert!(tcp_in_window(
            &mut sides,
            0,
            Established,
            &seg(5100, 9010, 100)
        ));
        assert!(
            !tcp_in_window(&mut sides, 0, Established, &seg(900_000, 9010, 100)),
            "far past the window"
        );
        assert!(
            !tcp_in_window(&mut sides, 1, Established, &seg(9010, 700_000, 0)),
            "acknowledging what was never sent"
        );
    }
}
