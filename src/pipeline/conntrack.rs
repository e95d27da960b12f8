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

use super::Timestamp;
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// Protocol numbers tracked.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// One direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub proto: u8,
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
            TCP => "tcp",
            UDP => "udp",
            ICMP => "icmp",
            _ => "ip",
        };
        if self.proto == ICMP {
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

/// TCP flags that drive the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    /// A SYN without ACK: the only segment that may start a tracked connection.
    pub fn starts_connection(&self) -> bool {
        self.syn && !self.ack
    }

    /// From the flags byte of a TCP header.
    pub fn from_byte(b: u8) -> TcpFlags {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
            ack: b & 0x10 != 0,
        }
    }
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
/// reduced to the flags that matter: `dir` is the packet's direction.
pub fn tcp_transition(state: TcpState, dir: Dir, f: TcpFlags) -> TcpVerdict {
    use TcpState::*;
    use TcpVerdict::*;
    if f.rst {
        return Ok(Close);
    }
    match (dir, f.syn, f.ack, f.fin) {
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
#[derive(Debug, Clone)]
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
    /// Changes every time the slot is reused, so stale references are detected.
    pub generation: u32,
}

impl Conn {
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

/// The connection tracking table.
pub struct ConnTrack {
    index: HashMap<Tuple, (u32, Dir), foldhash::fast::RandomState>,
    slots: Vec<Option<Conn>>,
    free: Vec<u32>,
    next_generation: u32,
    timeouts: Timeouts,
    gc_cursor: usize,
    evict_cursor: usize,
    /// Entries evicted early to make room, and expired, since the start.
    pub evicted: u64,
    pub expired: u64,
}

/// Slots examined per early-drop attempt (the kernel looks at a bounded stretch too).
const EVICT_SCAN: usize = 256;

impl ConnTrack {
    /// A table of at most `max` entries, allocated now.
    pub fn new(max: usize, timeouts: Timeouts) -> ConnTrack {
        let max = max.max(1);
        ConnTrack {
            index: HashMap::with_capacity_and_hasher(2 * max, Default::default()),
            slots: vec![None; max],
            free: (0..max as u32).rev().collect(),
            next_generation: 1,
            timeouts,
            gc_cursor: 0,
            evict_cursor: 0,
            evicted: 0,
            expired: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
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

    /// True if some live entry uses `t` as one of its tuples.
    pub fn tuple_in_use(&self, t: &Tuple) -> bool {
        self.index.contains_key(t)
    }

    /// Finds the flow a packet with tuple `t` belongs to, and its direction.
    /// Expired entries are removed here rather than matched.
    pub fn lookup(&mut self, t: &Tuple, now: Timestamp) -> Option<CtRef> {
        let &(i, dir) = self.index.get(t)?;
        let c = self.slots[i as usize].as_ref()?;
        if c.expires <= now.0 {
            self.remove(i);
            self.expired += 1;
            return None;
        }
        Some(CtRef {
            index: i,
            generation: c.generation,
            dir,
        })
    }

    /// The entry behind `r`, if it is still the same flow.
    pub fn get(&self, r: CtRef) -> Option<&Conn> {
        self.slots
            .get(r.index as usize)?
            .as_ref()
            .filter(|c| c.generation == r.generation)
    }

    /// Tracks a new flow. On a full table, evicts one unassured entry first.
    pub fn insert(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        state: ProtoState,
        now: Timestamp,
    ) -> Result<CtRef, InsertError> {
        if self.index.contains_key(&orig) || self.index.contains_key(&reply) {
            return Err(InsertError::Clash);
        }
        if self.free.is_empty() && !self.early_drop(now) {
            return Err(InsertError::Full);
        }
        let i = self.free.pop().expect("room was made");
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.slots[i as usize] = Some(Conn {
            orig,
            reply,
            state,
            assured: false,
            expires: now.0 + u64::from(self.timeouts.for_state(state)) * 1_000_000_000,
            packets: [0; 2],
            bytes: [0; 2],
            generation,
        });
        self.index.insert(orig, (i, Dir::Original));
        self.index.insert(reply, (i, Dir::Reply));
        Ok(CtRef {
            index: i,
            generation,
            dir: Dir::Original,
        })
    }

    /// Frees a slot held by an unassured (or expired) entry, scanning a bounded stretch
    /// of the table, oldest-to-expire first within it.
    fn early_drop(&mut self, now: Timestamp) -> bool {
        let n = self.slots.len();
        let mut victim: Option<(usize, u64)> = None;
        for k in 0..EVICT_SCAN.min(n) {
            let i = (self.evict_cursor + k) % n;
            if let Some(c) = &self.slots[i] {
                let evictable = c.expires <= now.0 || !c.assured;
                if evictable && victim.is_none_or(|(_, e)| c.expires < e) {
                    victim = Some((i, c.expires));
                }
            }
        }
        self.evict_cursor = (self.evict_cursor + EVICT_SCAN) % n;
        match victim {
            Some((i, _)) => {
                self.remove(i as u32);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, i: u32) {
        if let Some(c) = self.slots[i as usize].take() {
            self.index.remove(&c.orig);
            self.index.remove(&c.reply);
            self.free.push(i);
        }
    }

    /// Accounts a packet of `len` bytes on the flow and advances its state. For TCP
    /// `flags` drive the state machine. Returns the TCP verdict (always Ok for others).
    pub fn seen(&mut self, r: CtRef, len: usize, flags: TcpFlags, now: Timestamp) -> TcpVerdict {
        let timeouts = self.timeouts;
        let Some(c) = self.slots[r.index as usize]
            .as_mut()
            .filter(|c| c.generation == r.generation)
        else {
            return TcpVerdict::Invalid;
        };
        let d = r.dir.index();
        c.packets[d] += 1;
        c.bytes[d] += len as u64;
        let mut verdict = TcpVerdict::Ok(TcpState::Established);
        c.state = match c.state {
            ProtoState::Tcp(s) => match tcp_transition(s, r.dir, flags) {
                TcpVerdict::Ok(next) => {
                    verdict = TcpVerdict::Ok(next);
                    if next == TcpState::Established {
                        c.assured = true;
                    }
                    ProtoState::Tcp(next)
                }
                TcpVerdict::Invalid => {
                    verdict = TcpVerdict::Invalid;
                    ProtoState::Tcp(s)
                }
            },
            ProtoState::Udp { replied } => {
                let replied = replied || r.dir == Dir::Reply;
                // "Traffic both ways: some kind of UDP stream" — assured.
                if replied {
                    c.assured = true;
                }
                ProtoState::Udp { replied }
            }
            ProtoState::Icmp => {
                if r.dir == Dir::Reply {
                    c.assured = true;
                }
                ProtoState::Icmp
            }
        };
        c.expires = now.0 + u64::from(timeouts.for_state(c.state)) * 1_000_000_000;
        verdict
    }

    /// Reclaims expired entries, looking at no more than `budget` slots per call
    /// (the scan resumes where it stopped). Returns how many were reclaimed.
    pub fn gc(&mut self, now: Timestamp, budget: usize) -> usize {
        let n = self.slots.len();
        let mut reclaimed = 0;
        for _ in 0..budget.min(n) {
            let i = self.gc_cursor;
            self.gc_cursor = (self.gc_cursor + 1) % n;
            if self.slots[i].as_ref().is_some_and(|c| c.expires <= now.0) {
                self.remove(i as u32);
                reclaimed += 1;
            }
        }
        self.expired += reclaimed as u64;
        reclaimed
    }

    /// Live entries with their seconds left.
    pub fn iter(&self, now: Timestamp) -> impl Iterator<Item = (&Conn, u64)> + '_ {
        self.slots
            .iter()
            .flatten()
            .filter(move |c| c.expires > now.0)
            .map(move |c| (c, (c.expires - now.0) / 1_000_000_000))
    }

    /// Forgets every flow that has `ip` in either tuple (an endpoint went away).
    pub fn flush_address(&mut self, ip: Ipv4Addr) -> usize {
        let doomed: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref()?;
                [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst]
                    .contains(&ip)
                    .then_some(i as u32)
            })
            .collect();
        for &i in &doomed {
            self.remove(i);
        }
        doomed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn t(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
        Tuple {
            proto: TCP,
            src: src.into(),
            dst: dst.into(),
            sport,
            dport,
        }
    }

    const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    const SYNACK: TcpFlags = TcpFlags {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    const ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    const FIN: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };
    const RST: TcpFlags = TcpFlags {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
    };

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

    #[test]
    fn every_tcp_transition_of_a_connection_lifetime() {
        let mut ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        let o = ct
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let r = ct.lookup(&reply, secs(0)).unwrap();
        assert_eq!(r.dir, Dir::Reply);
        assert_eq!(state(&ct, o), SynSent);
        let steps = [
            (r, SYNACK, SynRecv),
            (o, ACK, Established),
            (o, ACK, Established),
            (r, ACK, Established),
            (o, FIN, FinWait),
            (r, ACK, CloseWait),
            (r, FIN, LastAck),
            (o, ACK, TimeWait),
        ];
        for (who, flags, want) in steps {
            assert_eq!(
                ct.seen(who, 60, flags, secs(1)),
                TcpVerdict::Ok(want),
                "{flags:?} {:?}",
                who.dir
            );
            assert_eq!(state(&ct, o), want);
        }
        assert!(ct.get(o).unwrap().assured, "assured once established");
        assert_eq!(ct.get(o).unwrap().packets, [4, 4]);
        // TIME_WAIT lasts 120 s.
        assert!(ct.lookup(&orig, secs(120)).is_some());
        assert!(ct.lookup(&orig, secs(122)).is_none());
        assert!(ct.is_empty());
    }

    #[test]
    fn rst_closes_and_close_times_out_fast() {
        let mut ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        let o = ct
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        assert_eq!(ct.seen(o, 40, RST, secs(5)), TcpVerdict::Ok(Close));
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
        let mut ct = ConnTrack::new(16, Timeouts::default());
        let (orig, reply) = masq();
        let o = ct
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        assert!(ct.lookup(&orig, secs(119)).is_some(), "SYN_SENT: 120 s");
        assert!(ct.lookup(&orig, secs(121)).is_none());
        let o2 = ct
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(200))
            .unwrap();
        let r2 = ct.lookup(&reply, secs(200)).unwrap();
        ct.seen(r2, 40, SYNACK, secs(200));
        ct.seen(o2, 40, ACK, secs(200));
        assert!(
            ct.lookup(&orig, secs(200 + 431_999)).is_some(),
            "ESTABLISHED: 5 days"
        );
        let _ = o;
    }

    #[test]
    fn udp_unreplied_then_assured() {
        let mut ct = ConnTrack::new(16, Timeouts::default());
        let mut orig = masq().0;
        orig.proto = UDP;
        let mut reply = masq().1;
        reply.proto = UDP;
        let o = ct
            .insert(orig, reply, ProtoState::Udp { replied: false }, secs(0))
            .unwrap();
        ct.seen(o, 40, TcpFlags::default(), secs(0));
        assert!(!ct.get(o).unwrap().assured);
        assert!(ct.lookup(&orig, secs(29)).is_some(), "unreplied: 30 s");
        let r = ct.lookup(&reply, secs(29)).unwrap();
        ct.seen(r, 40, TcpFlags::default(), secs(29));
        assert!(ct.get(o).unwrap().assured);
        assert!(ct.lookup(&orig, secs(29 + 119)).is_some(), "replied: 120 s");
        assert!(ct.lookup(&orig, secs(29 + 121)).is_none());
    }

    #[test]
    fn full_table_evicts_unassured_else_refuses() {
        let mut ct = ConnTrack::new(2, Timeouts::default());
        let a = ct
            .insert(
                t([10, 0, 0, 1], 1, [10, 0, 0, 9], 80),
                t([10, 0, 0, 9], 80, [10, 0, 0, 1], 1),
                ProtoState::Tcp(SynSent),
                secs(0),
            )
            .unwrap();
        let b = ct
            .insert(
                t([10, 0, 0, 2], 1, [10, 0, 0, 9], 80),
                t([10, 0, 0, 9], 80, [10, 0, 0, 2], 1),
                ProtoState::Tcp(SynSent),
                secs(0),
            )
            .unwrap();
        // Assure both: the table is full of real connections.
        for o in [a, b] {
            let c = ct.get(o).unwrap().clone();
            let r = ct.lookup(&c.reply, secs(1)).unwrap();
            ct.seen(r, 40, SYNACK, secs(1));
            ct.seen(o, 40, ACK, secs(1));
        }
        let new = (
            t([10, 0, 0, 3], 1, [10, 0, 0, 9], 80),
            t([10, 0, 0, 9], 80, [10, 0, 0, 3], 1),
        );
        assert_eq!(
            ct.insert(new.0, new.1, ProtoState::Tcp(SynSent), secs(2)),
            Err(InsertError::Full)
        );
        assert_eq!(ct.len(), 2, "nothing assured was evicted");
        // An unassured (half-open) entry is evicted for a new flow.
        let mut ct2 = ConnTrack::new(1, Timeouts::default());
        ct2.insert(
            t([10, 0, 0, 1], 1, [10, 0, 0, 9], 80),
            t([10, 0, 0, 9], 80, [10, 0, 0, 1], 1),
            ProtoState::Tcp(SynSent),
            secs(0),
        )
        .unwrap();
        assert!(ct2
            .insert(new.0, new.1, ProtoState::Tcp(SynSent), secs(1))
            .is_ok());
        assert_eq!(ct2.evicted, 1);
        assert!(ct2.lookup(&new.0, secs(1)).is_some());
        assert!(ct2
            .lookup(&t([10, 0, 0, 1], 1, [10, 0, 0, 9], 80), secs(1))
            .is_none());
    }

    #[test]
    fn clashing_tuples_are_refused_and_stale_refs_detected() {
        let mut ct = ConnTrack::new(4, Timeouts::default());
        let (orig, reply) = masq();
        let o = ct
            .insert(orig, reply, ProtoState::Tcp(SynSent), secs(0))
            .unwrap();
        let other = t([172, 17, 0, 3], 40000, [198, 51, 100, 2], 80);
        assert_eq!(
            ct.insert(other, reply, ProtoState::Tcp(SynSent), secs(0)),
            Err(InsertError::Clash)
        );
        assert!(ct.tuple_in_use(&reply));
        // Expire it, reuse the slot: the old reference no longer resolves.
        ct.gc(secs(200), 10);
        assert!(ct.get(o).is_none());
        let o2 = ct
            .insert(other, reply, ProtoState::Tcp(SynSent), secs(200))
            .unwrap();
        assert_ne!(o2.generation, o.generation);
    }

    #[test]
    fn gc_is_incremental() {
        let mut ct = ConnTrack::new(8, Timeouts::default());
        for i in 0..8u8 {
            let mut o = masq().0;
            o.sport = u16::from(i);
            let mut r = masq().1;
            r.dport = u16::from(i);
            ct.insert(o, r, ProtoState::Tcp(SynSent), secs(0)).unwrap();
        }
        assert_eq!(ct.gc(secs(500), 3), 3);
        assert_eq!(ct.len(), 5);
        assert_eq!(ct.gc(secs(500), 100), 5);
        assert_eq!(ct.expired, 8);
    }
}
