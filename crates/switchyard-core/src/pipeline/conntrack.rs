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

use super::{lock, Timestamp};
use crate::wire::nat::Endpoints;
use crate::wire::{IcmpPacket, IpProtocol, Ipv4Packet, Quoted, TcpFlags, TcpPacket, UdpPacket};
use crossbeam_queue::ArrayQueue;
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

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
    /// A TCP, UDP or ICMP echo packet: its tuple, and its TCP flags (none for the others).
    Flow(Tuple, TcpFlags),
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
                    tcp.flags(),
                ),
                Err(_) => PacketFlow::Other,
            },
            IpProtocol::UDP => match UdpPacket::new_checked(l4) {
                Ok(udp) => PacketFlow::Flow(
                    tuple(IpProtocol::UDP, udp.src_port(), udp.dst_port()),
                    TcpFlags::default(),
                ),
                Err(_) => PacketFlow::Other,
            },
            IpProtocol::ICMP => match IcmpPacket::new_checked(l4) {
                Ok(icmp) if icmp.is_echo() => {
                    let id = icmp.echo_ident();
                    PacketFlow::Flow(tuple(IpProtocol::ICMP, id, id), TcpFlags::default())
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

/// The tuple of the packet an ICMP error quotes.
fn quoted_tuple(q: &Quoted<&[u8]>) -> Option<Tuple> {
    let h = q.header();
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
    pub state: ProtoState,
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

    /// Accounts a packet and advances the state; returns the TCP verdict.
    fn update(
        &mut self,
        dir: Dir,
        len: usize,
        flags: TcpFlags,
        now: Timestamp,
        timeouts: &Timeouts,
    ) -> TcpVerdict {
        let d = dir.index();
        self.packets[d] += 1;
        self.bytes[d] += len as u64;
        let mut verdict = TcpVerdict::Ok(TcpState::Established);
        self.state = match self.state {
            ProtoState::Tcp(s) => match tcp_transition(s, dir, flags) {
                TcpVerdict::Ok(next) => {
                    verdict = TcpVerdict::Ok(next);
                    if next == TcpState::Established {
                        self.assured = true;
                    }
                    ProtoState::Tcp(next)
                }
                TcpVerdict::Invalid => {
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
            ProtoState::Icmp => {
                if dir == Dir::Reply {
                    self.assured = true;
                }
                ProtoState::Icmp
            }
        };
        self.expires = now.0 + u64::from(timeouts.for_state(self.state)) * 1_000_000_000;
        verdict
    }
}

/// A handle to an entry, checked against reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtRef {
    pub index: u32,
    pub generation: u32,
    pub dir: Dir,
}

/// Why a new flow could not be tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// Full, and no unassured entry to evict.
    Full,
    /// One of the tuples is already in use (the caller picks another mapping).
    Clash,
}

/// A slot of the entry table: the flow, and a generation that changes on every reuse.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<Conn>,
    generation: u32,
}

type IndexShard = HashMap<Tuple, (u32, Dir), foldhash::fast::RandomState>;

/// Shards of the tuple index.
const SHARDS: usize = 64;

/// The connection tracking table, shared by the dataplane's workers without a global
/// lock: the tuple index is split into shards, each entry has its own lock, and free
/// entries wait in a lock-free queue. A packet takes one shard lock (to find its entry)
/// and one entry lock (to update it); only workers handling the same flow, or tuples
/// in the same shard at the same instant, ever wait for each other. Lock order, to
/// rule out deadlocks: index shards (in ascending order) before entries.
pub struct ConnTrack {
    index: Box<[Mutex<IndexShard>]>,
    slots: Box<[Mutex<Slot>]>,
    free: ArrayQueue<u32>,
    len: AtomicUsize,
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
    /// Bytes a table of at most `max` entries allocates (see [`ConnTrack::new`]): the
    /// entries, the free queue, and the tuple index (two tuples per entry).
    pub fn bytes_for(max: usize) -> usize {
        use std::mem::size_of;
        let max = max.max(1);
        let per_shard = (2 * max).div_ceil(SHARDS) * 2;
        let index = SHARDS
            * (size_of::<Mutex<IndexShard>>()
                + super::memory::hash_index_bytes(per_shard, size_of::<(Tuple, (u32, Dir))>()));
        // A queue slot is the value and a stamp.
        let free = max * size_of::<(usize, u32)>();
        max * size_of::<Mutex<Slot>>() + free + index
    }

    /// A table of at most `max` entries, allocated now.
    pub fn new(max: usize, timeouts: Timeouts) -> ConnTrack {
        let max = max.max(1);
        let free = ArrayQueue::new(max);
        for i in 0..max as u32 {
            let _ = free.push(i);
        }
        // Two tuples per entry, spread over the shards, with room to spare.
        let per_shard = (2 * max).div_ceil(SHARDS) * 2;
        ConnTrack {
            index: (0..SHARDS)
                .map(|_| {
                    Mutex::new(HashMap::with_capacity_and_hasher(
                        per_shard,
                        Default::default(),
                    ))
                })
                .collect(),
            slots: (0..max).map(|_| Mutex::new(Slot::default())).collect(),
            free,
            len: AtomicUsize::new(0),
            next_generation: AtomicU32::new(1),
            timeouts,
            gc_cursor: AtomicUsize::new(0),
            evict_cursor: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
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
        let reply = |p: u16| Tuple {
            proto,
            src: dst,
            sport: if proto == IpProtocol::ICMP { p } else { dport },
            dst: new_src,
            dport: p,
        };
        if !self.tuple_in_use(&reply(want)) {
            return Some(want);
        }
        let n = u32::from(hi - lo) + 1;
        let seed = u32::from(dst).wrapping_mul(2_654_435_761)
            ^ u32::from(want).wrapping_mul(40503)
            ^ u32::from(dport);
        (0..n.min(PORT_PROBES))
            .map(|k| lo + ((seed.wrapping_add(k)) % n) as u16)
            .find(|&p| !self.tuple_in_use(&reply(p)))
    }

    /// Finds the flow a packet with tuple `t` belongs to, and its direction; accounts
    /// the packet (`len` bytes, TCP `flags`) and advances the flow's state. Returns a
    /// copy of the entry as updated. Expired entries are removed here, not matched.
    pub fn lookup_update(
        &self,
        t: &Tuple,
        len: usize,
        flags: TcpFlags,
        now: Timestamp,
    ) -> Option<(CtRef, Conn, TcpVerdict)> {
        let (i, dir) = *lock(&self.index[shard_of(t)]).get(t)?;
        let mut slot = lock(&self.slots[i as usize]);
        let generation = slot.generation;
        let c = slot.conn.as_mut().filter(|c| c.has(t))?;
        if c.expires <= now.0 {
            drop(slot);
            if self.remove(i, generation) {
                self.expired.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        let verdict = c.update(dir, len, flags, now, &self.timeouts);
        Some((
            CtRef {
                index: i,
                generation,
                dir,
            },
            *c,
            verdict,
        ))
    }

    /// Finds the flow of tuple `t` without accounting a packet (for ICMP errors about it).
    pub fn lookup(&self, t: &Tuple, now: Timestamp) -> Option<(CtRef, Conn)> {
        let (i, dir) = *lock(&self.index[shard_of(t)]).get(t)?;
        let slot = lock(&self.slots[i as usize]);
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
        let slot = lock(self.slots.get(r.index as usize)?);
        slot.conn.filter(|_| slot.generation == r.generation)
    }

    /// Accounts a packet on a flow found earlier (the first packet of a new flow).
    pub fn seen(&self, r: CtRef, len: usize, flags: TcpFlags, now: Timestamp) -> TcpVerdict {
        let mut slot = lock(&self.slots[r.index as usize]);
        if slot.generation != r.generation {
            return TcpVerdict::Invalid;
        }
        match slot.conn.as_mut() {
            Some(c) => c.update(r.dir, len, flags, now, &self.timeouts),
            None => TcpVerdict::Invalid,
        }
    }

    /// Tracks a new flow. On a full table, evicts one unassured entry first; the flag
    /// says whether it did.
    pub fn insert(
        &self,
        orig: Tuple,
        reply: Tuple,
        state: ProtoState,
        now: Timestamp,
    ) -> Result<(CtRef, bool), InsertError> {
        if self.tuple_in_use(&orig) || self.tuple_in_use(&reply) {
            return Err(InsertError::Clash);
        }
        // Reserve a place, evicting if the table is full.
        let mut evicted = false;
        loop {
            let n = self.len.load(Ordering::Relaxed);
            if n < self.slots.len() {
                if self
                    .len
                    .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
            } else if self.early_drop(now) {
                evicted = true;
            } else {
                return Err(InsertError::Full);
            }
        }
        let Some(i) = self.free.pop() else {
            // Entries being removed right now: counted out, not yet back in the queue.
            self.len.fetch_sub(1, Ordering::Relaxed);
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
            let _ = self.free.push(i);
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(InsertError::Clash);
        }
        {
            let mut slot = lock(&self.slots[i as usize]);
            slot.generation = generation;
            slot.conn = Some(Conn {
                orig,
                reply,
                state,
                assured: false,
                expires: now.0 + u64::from(self.timeouts.for_state(state)) * 1_000_000_000,
                packets: [0; 2],
                bytes: [0; 2],
            });
        }
        if a == lo {
            first.insert(orig, (i, Dir::Original));
        } else {
            second
                .as_mut()
                .expect("two shards")
                .insert(orig, (i, Dir::Original));
        }
        if b == lo {
            first.insert(reply, (i, Dir::Reply));
        } else {
            second
                .as_mut()
                .expect("two shards")
                .insert(reply, (i, Dir::Reply));
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

    /// Removes entry `i` if it still holds generation `generation`. Returns whether it did.
    fn remove(&self, i: u32, generation: u32) -> bool {
        let conn = {
            let mut slot = lock(&self.slots[i as usize]);
            if slot.generation != generation {
                return false;
            }
            match slot.conn.take() {
                Some(c) => c,
                None => return false,
            }
        };
        for t in [conn.orig, conn.reply] {
            let mut shard = lock(&self.index[shard_of(&t)]);
            if shard.get(&t).is_some_and(|&(j, _)| j == i) {
                shard.remove(&t);
            }
        }
        let _ = self.free.push(i);
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Frees a slot held by an unassured (or expired) entry, scanning a bounded stretch
    /// of the table, the one closest to expiring first.
    fn early_drop(&self, now: Timestamp) -> bool {
        let n = self.slots.len();
        let start = self.evict_cursor.fetch_add(EVICT_SCAN, Ordering::Relaxed) % n;
        let mut victim: Option<(u32, u32, u64)> = None;
        for k in 0..EVICT_SCAN.min(n) {
            let i = (start + k) % n;
            let Ok(slot) = self.slots[i].try_lock() else {
                continue;
            };
            if let Some(c) = &slot.conn {
                let evictable = c.expires <= now.0 || !c.assured;
                if evictable && victim.is_none_or(|(_, _, e)| c.expires < e) {
                    victim = Some((i as u32, slot.generation, c.expires));
                }
            }
        }
        match victim {
            Some((i, g, _)) if self.remove(i, g) => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Reclaims expired entries, looking at no more than `budget` slots per call
    /// (the scan resumes where it stopped). Returns how many were reclaimed.
    pub fn gc(&self, now: Timestamp, budget: usize) -> usize {
        let n = self.slots.len();
        let budget = budget.min(n);
        let start = self.gc_cursor.fetch_add(budget, Ordering::Relaxed) % n;
        let mut reclaimed = 0;
        for k in 0..budget {
            let i = (start + k) % n;
            let expired = {
                let slot = lock(&self.slots[i]);
                slot.conn
                    .as_ref()
                    .filter(|c| c.expires <= now.0)
                    .map(|_| slot.generation)
            };
            if let Some(g) = expired {
                if self.remove(i as u32, g) {
                    reclaimed += 1;
                }
            }
        }
        self.expired.fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }

    /// Copies of the live entries with their seconds left.
    pub fn entries(&self, now: Timestamp) -> Vec<(Conn, u64)> {
        self.slots
            .iter()
            .filter_map(|s| {
                let c = lock(s).conn?;
                (c.expires > now.0).then(|| (c, (c.expires - now.0) / 1_000_000_000))
            })
            .collect()
    }

    /// Forgets every flow that has `ip` in either tuple (an endpoint went away).
    pub fn flush_address(&self, ip: Ipv4Addr) -> usize {
        let doomed: Vec<(u32, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = lock(s);
                let c = s.conn.as_ref()?;
                [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst]
                    .contains(&ip)
                    .then_some((i as u32, s.generation))
            })
            .collect();
        doomed
            .into_iter()
            .filter(|&(i, g)| self.remove(i, g))
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
        ct.lookup_update(tuple, 60, flags, secs(now))
            .map(|(r, _, v)| (r, v))
    }

    #[test]
    fn every_tcp_transition_of_a_connection_lifetime() {
        let ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        let (o, _) = ct
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
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
        ct.insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
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
        ct.insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        assert!(ct.lookup(&orig, secs(119)).is_some(), "SYN_SENT: 120 s");
        assert!(ct.lookup(&orig, secs(121)).is_none());
        ct.gc(secs(121), 16);
        ct.insert(orig, reply, ProtoState::Tcp(SynSent), secs(200))
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
            .insert(orig, reply, ProtoState::Udp { replied: false }, secs(0))
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
            ct.insert(o, r, ProtoState::Tcp(SynSent), secs(0)).unwrap();
            // Assured: a real connection.
            pkt(&ct, &r, SYNACK, 1);
            pkt(&ct, &o, ACK, 1);
        }
        let (o3, r3) = flow(3);
        assert_eq!(
            ct.insert(o3, r3, ProtoState::Tcp(SynSent), secs(2)),
            Err(InsertError::Full)
        );
        assert_eq!(ct.len(), 2, "nothing assured was evicted");
        // An unassured (half-open) entry is evicted for a new flow.
        let ct2 = ConnTrack::new(1, Timeouts::default());
        let (o1, r1) = flow(1);
        ct2.insert(o1, r1, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let (_, evicted) = ct2
            .insert(o3, r3, ProtoState::Tcp(SynSent), secs(1))
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
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let other = t([172, 17, 0, 3], 40000, [198, 51, 100, 2], 80);
        assert_eq!(
            ct.insert(other, reply, ProtoState::Tcp(SynSent), secs(0)),
            Err(InsertError::Clash)
        );
        assert!(ct.tuple_in_use(&reply));
        // Expire it, reuse the slot: the old reference no longer resolves.
        for _ in 0..4 {
            ct.gc(secs(200), 1);
        }
        assert!(ct.get(o).is_none());
        let (o2, _) = ct
            .insert(other, reply, ProtoState::Tcp(SynSent), secs(200))
            .unwrap();
        assert_ne!(o2.generation, o.generation);
        assert_eq!(
            ct.seen(o, 40, ACK, secs(200)),
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
            ct.insert(o, r, ProtoState::Tcp(SynSent), secs(0)).unwrap();
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
                        let _ = ct.insert(o, r, ProtoState::Tcp(SynSent), secs(u64::from(i / 100)));
                        if let Some((rf, c, _)) =
                            ct.lookup_update(&r, 40, SYNACK, secs(u64::from(i / 100)))
                        {
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
}
