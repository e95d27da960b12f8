//! The neighbor table (ARP cache): which MAC answers for an IPv4 address on a
//! network, and the packets waiting while that is being found out.
//!
//! States follow the kernel's (`include/net/neighbour.h`), simplified:
//!
//! ```text
//!            packet to an unknown address: queue it, broadcast an ARP request
//!   (none) ──────────────────────────────────────────────▶ INCOMPLETE
//!                                                           │ reply   │ no reply after
//!                                                           ▼         ▼ `probes` tries
//!   STALE ◀── reachable time passes ── REACHABLE ◀──────────┘       (gone: queued packets
//!     │  ▲                               ▲                           get ICMP host unreachable)
//!     │  └ unsolicited ARP (new MAC)     │ reply to the probe
//!     └── used for a packet ──▶ PROBE ───┘ (unicast ARP; no reply after `probes` tries: gone)
//! ```
//!
//! A STALE entry is still used (the MAC is probably right) while it is re-confirmed;
//! an unused STALE entry is forgotten after `stale_ms`. Everything is bounded: the
//! number of entries, the packets queued per entry (the oldest is dropped when a new
//! one arrives, as Linux does with `unres_qlen`), and the buffers for queued packets,
//! which are allocated once and swapped with the dataplane's, never copied.
//!
//! Every change of an entry's state (and of its MAC), and every entry that goes, is
//! reported to the caller's [`Report`] when it asks (the `*_reporting` methods),
//! for the table events `switchyard events` streams.
//!
//! Fair shares: each network may hold at most its share of the entries and of the
//! held packets ([`NeighborShare`]; by default an even split), so a flood of packets
//! to unused addresses in one network fills that network's share and no other. And
//! unresolved entries never pin the table: when there is no room, the oldest
//! INCOMPLETE entry is evicted first (its waiting packets dropped), then the least
//! recently used unused STALE one — as the kernel's forced neighbor GC prefers
//! entries that are not in use.

use super::events::{NeighborChange, NeighborTo, Report};
use super::{lock, DomainId, Frame, PortId, Timestamp, MAX_DOMAINS};
use crate::wire::MacAddr;
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Largest per-neighbor queue the table supports.
pub const MAX_QUEUE: usize = 16;

/// Timers and bounds, with the kernel's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborConfig {
    /// How long a confirmed entry stays REACHABLE (`base_reachable_time`, 30 s).
    pub reachable_ms: u64,
    /// How long an unused STALE entry is kept (`gc_stale_time`, 60 s).
    pub stale_ms: u64,
    /// Time between ARP requests for the same address (`retrans_time`, 1 s).
    pub retrans_ms: u64,
    /// Requests sent before giving up (`mcast_solicit`/`ucast_solicit`, 3).
    pub probes: u8,
    /// Packets queued per unresolved address (the classic `unres_qlen`, 3).
    pub queue_len: u8,
    /// Entries at most (like `gc_thresh3`, 1024).
    pub max: usize,
    /// Packets queued over all entries at most.
    pub held_max: usize,
}

impl Default for NeighborConfig {
    fn default() -> Self {
        NeighborConfig {
            reachable_ms: 30_000,
            stale_ms: 60_000,
            retrans_ms: 1_000,
            probes: 3,
            queue_len: 3,
            max: 1024,
            held_max: 256,
        }
    }
}

/// An entry's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighborState {
    Incomplete,
    Reachable,
    Stale,
    Probe,
}

impl std::fmt::Display for NeighborState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NeighborState::Incomplete => "INCOMPLETE",
            NeighborState::Reachable => "REACHABLE",
            NeighborState::Stale => "STALE",
            NeighborState::Probe => "PROBE",
        })
    }
}

/// One neighbor.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub ip: Ipv4Addr,
    pub domain: DomainId,
    /// Zero while INCOMPLETE.
    pub mac: MacAddr,
    pub state: NeighborState,
    /// When the entry was last confirmed or changed (ns).
    pub updated: u64,
    /// When a packet last used it (ns).
    pub used: u64,
    /// Requests sent in the current resolution or probe.
    pub probes: u8,
    next_probe: u64,
    queue: [u32; MAX_QUEUE],
    qlen: u8,
}

impl Neighbor {
    /// Packets waiting for this neighbor.
    pub fn queued(&self) -> usize {
        usize::from(self.qlen)
    }
}

/// How an address was learned, which decides the state it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// An ARP reply addressed to switchyard: confirmed, REACHABLE.
    Reply,
    /// An ARP request to switchyard (the sender told us its MAC): creates or updates
    /// an entry, STALE unless the MAC is unchanged (as the kernel does).
    Request,
    /// A gratuitous or other unsolicited ARP: updates an existing entry only.
    Unsolicited,
}

/// What to do with a packet for a neighbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Send it to this MAC.
    Mac(MacAddr),
    /// Send it to this MAC, and re-confirm the entry with a unicast ARP request.
    MacAndProbe(MacAddr),
    /// The packet was taken into the queue (the caller's frame now holds a spare
    /// buffer). `request`: a new resolution started; broadcast an ARP request.
    /// `evicted`: a held packet pushed out of the full queue, to be dropped.
    Queued {
        request: bool,
        evicted: Option<Held>,
    },
    /// Nothing could be queued: the table or the packet buffers are full.
    TableFull,
    NoBuffer,
}

/// What [`NeighborTable::resolve`] would do, as [`NeighborTable::would_resolve`]
/// tells without doing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WouldResolve {
    /// Sent to this MAC.
    Mac(MacAddr),
    /// Sent to this MAC; the stale entry re-confirmed with a unicast ARP request.
    MacAndProbe(MacAddr),
    /// Held until the address answers. `request`: a new entry, and a broadcast ARP
    /// request; `waiting`: packets already queued; `evicts`: an entry evicted to make
    /// room; `pushes_out`: the queue is full, its oldest packet would be dropped.
    Held {
        request: bool,
        waiting: usize,
        evicts: Option<Ipv4Addr>,
        pushes_out: bool,
    },
    TableFull,
    NoBuffer,
}

/// A handle to a held packet, to take it out with [`NeighborTable::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held(u32);

/// Timer work found by [`NeighborTable::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickWork {
    /// Send an ARP request for `ip` on `domain`: broadcast, or unicast to `to`.
    Request {
        ip: Ipv4Addr,
        domain: DomainId,
        to: Option<MacAddr>,
    },
    /// Resolution failed: this held packet is to be answered with ICMP host unreachable.
    Unreachable(Held),
    /// A queued packet for a now-resolved neighbor, to be sent to `mac` on `domain`.
    Release {
        held: Held,
        mac: MacAddr,
        domain: DomainId,
    },
}

/// Why the table dropped a held packet on its own, for the pipeline to account
/// (see [`NeighborTable::take_orphan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphaned {
    /// Its entry was evicted to make room for another.
    Evicted,
    /// Its entry was forgotten: the endpoint or network it waited for is gone.
    Flushed,
}

/// A network's share of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborShare {
    /// Entries at most.
    pub max: usize,
    /// Packets held at most, over all of the network's entries.
    pub held_max: usize,
}

/// The table, behind the lock of [`NeighborTable`].
struct Neighbors {
    cfg: NeighborConfig,
    index: HashMap<u32, u32, foldhash::fast::RandomState>,
    entries: Vec<Option<Neighbor>>,
    free_entries: Vec<u32>,
    held: Vec<Frame>,
    free_held: Vec<u32>,
    /// The network each held buffer's packet waits on (valid while it is held).
    held_domain: Vec<u16>,
    /// Each network's share (networks past the end of `shares` have no share of
    /// their own, only the global bounds; replaced at run time by
    /// [`NeighborTable::set_shares`]), and what each network up to [`MAX_DOMAINS`]
    /// uses, counted whether it has a share or not, so that a share given later
    /// starts from the truth.
    shares: Vec<NeighborShare>,
    domain_entries: Vec<usize>,
    domain_held: Vec<usize>,
    /// Ingress ports of packets dropped because their entry was evicted or
    /// forgotten, for the pipeline to account (see [`NeighborTable::take_orphan`]).
    orphans: Vec<(PortId, Orphaned)>,
}

impl Neighbors {
    fn new(cfg: NeighborConfig, shares: Vec<NeighborShare>) -> Neighbors {
        let cfg = NeighborConfig {
            queue_len: cfg.queue_len.clamp(1, MAX_QUEUE as u8),
            probes: cfg.probes.max(1),
            max: cfg.max.max(1),
            ..cfg
        };
        Neighbors {
            index: HashMap::with_capacity_and_hasher(cfg.max, Default::default()),
            entries: vec![None; cfg.max],
            free_entries: (0..cfg.max as u32).rev().collect(),
            held: (0..cfg.held_max).map(|_| Frame::new()).collect(),
            free_held: (0..cfg.held_max as u32).rev().collect(),
            held_domain: vec![0; cfg.held_max],
            domain_entries: vec![0; MAX_DOMAINS],
            domain_held: vec![0; MAX_DOMAINS],
            shares,
            orphans: Vec::with_capacity(cfg.held_max),
            cfg,
        }
    }

    /// Whether `domain` may have one more entry: frees one if need be, evicting
    /// an entry of that network when it is at its share, else of any network.
    fn room_for_entry(&mut self, domain: DomainId, report: &mut Rep<'_>) -> bool {
        let d = domain.index();
        let at_share = self
            .shares
            .get(d)
            .is_some_and(|s| self.domain_entries[d] >= s.max);
        if !at_share && !self.free_entries.is_empty() {
            return true;
        }
        let victim = if at_share {
            self.victim(|n| n.domain == domain)
        } else {
            self.victim(|_| true)
        };
        match victim {
            Some(ip) => {
                self.evict(ip, report);
                true
            }
            None => false,
        }
    }

    /// Whether a packet for a new entry of `domain` can be held: evicts the
    /// network's oldest unresolved entry if its share of buffers is used up.
    fn room_for_held(&mut self, domain: DomainId, report: &mut Rep<'_>) -> bool {
        let d = domain.index();
        let full = |t: &Neighbors| {
            t.free_held.is_empty()
                || t.shares
                    .get(d)
                    .is_some_and(|s| t.domain_held[d] >= s.held_max)
        };
        if !full(self) {
            return true;
        }
        let oldest = self
            .entries
            .iter()
            .flatten()
            .filter(|n| n.domain == domain && n.state == NeighborState::Incomplete && n.qlen > 0)
            .min_by_key(|n| n.updated)
            .map(|n| n.ip);
        if let Some(ip) = oldest {
            self.evict(ip, report);
        }
        !full(self)
    }

    /// The entry to evict among those `eligible`: the oldest INCOMPLETE one (an
    /// address that has not answered holds no information worth keeping), else the
    /// least recently used STALE one with nothing queued.
    fn victim(&self, eligible: impl Fn(&Neighbor) -> bool) -> Option<Ipv4Addr> {
        let candidates = || self.entries.iter().flatten().filter(|n| eligible(n));
        candidates()
            .filter(|n| n.state == NeighborState::Incomplete)
            .min_by_key(|n| n.updated)
            .or_else(|| {
                candidates()
                    .filter(|n| n.state == NeighborState::Stale && n.qlen == 0)
                    .min_by_key(|n| n.used)
            })
            .map(|n| n.ip)
    }

    /// Removes an entry to make room; the packets it held are dropped (their
    /// ingress ports go to `orphans` to be accounted).
    fn evict(&mut self, ip: Ipv4Addr, report: &mut Rep<'_>) {
        let Some(&slot) = self.index.get(&u32::from(ip)) else {
            return;
        };
        if let Some(n) = self.entries[slot as usize].take() {
            report.emit(|| gone(&n, NeighborTo::Evicted));
            for &h in &n.queue[..usize::from(n.qlen)] {
                self.orphans
                    .push((self.held[h as usize].ingress, Orphaned::Evicted));
                self.release_held(h);
            }
            self.entries[slot as usize] = Some(Neighbor { qlen: 0, ..n });
        }
        self.remove(ip);
    }

    /// Gives a held buffer back to the free list and its network's share.
    fn release_held(&mut self, h: u32) {
        self.free_held.push(h);
        let d = usize::from(self.held_domain[h as usize]);
        if let Some(n) = self.domain_held.get_mut(d) {
            *n -= 1;
        }
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Neighbor> {
        let slot = *self.index.get(&u32::from(ip))?;
        self.entries[slot as usize].as_ref()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Packets held over all entries.
    pub fn held(&self) -> usize {
        self.held.len() - self.free_held.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Neighbor> {
        self.entries.iter().flatten()
    }

    fn slot_mut(&mut self, ip: Ipv4Addr) -> Option<&mut Neighbor> {
        let slot = *self.index.get(&u32::from(ip))?;
        self.entries[slot as usize].as_mut()
    }

    /// Finds the MAC for `ip` to send `frame` to, or queues `frame` while it is resolved.
    pub fn resolve(
        &mut self,
        ip: Ipv4Addr,
        domain: DomainId,
        now: Timestamp,
        frame: &mut Frame,
        report: &mut Rep<'_>,
    ) -> Resolve {
        let now = now.0;
        let retrans = self.cfg.retrans_ms * 1_000_000;
        if let Some(n) = self.slot_mut(ip) {
            n.used = now;
            match n.state {
                NeighborState::Reachable => return Resolve::Mac(n.mac),
                NeighborState::Probe => return Resolve::Mac(n.mac),
                NeighborState::Stale => {
                    n.state = NeighborState::Probe;
                    n.probes = 1;
                    n.next_probe = now + retrans;
                    report.emit(|| moved(n, NeighborState::Stale));
                    return Resolve::MacAndProbe(n.mac);
                }
                NeighborState::Incomplete => return self.enqueue(ip, frame, false),
            }
        }
        if !self.room_for_entry(domain, report) {
            return Resolve::TableFull;
        }
        if !self.room_for_held(domain, report) {
            return Resolve::NoBuffer;
        }
        let slot = self.free_entries.pop().expect("checked above");
        self.count_entry(domain, 1);
        self.entries[slot as usize] = Some(Neighbor {
            ip,
            domain,
            mac: MacAddr::ZERO,
            state: NeighborState::Incomplete,
            updated: now,
            used: now,
            probes: 1,
            next_probe: now + retrans,
            queue: [0; MAX_QUEUE],
            qlen: 0,
        });
        self.index.insert(u32::from(ip), slot);
        report.emit(|| NeighborChange {
            domain,
            ip,
            mac: MacAddr::ZERO,
            from: None,
            to: NeighborTo::State(NeighborState::Incomplete),
        });
        self.enqueue(ip, frame, true)
    }

    fn enqueue(&mut self, ip: Ipv4Addr, frame: &mut Frame, request: bool) -> Resolve {
        let domain = self.get(ip).expect("entry exists").domain;
        let d = domain.index();
        if self
            .shares
            .get(d)
            .is_some_and(|s| self.domain_held[d] >= s.held_max)
        {
            return Resolve::NoBuffer;
        }
        let Some(h) = self.free_held.pop() else {
            return Resolve::NoBuffer;
        };
        self.held_domain[h as usize] = domain.0;
        if let Some(n) = self.domain_held.get_mut(d) {
            *n += 1;
        }
        std::mem::swap(&mut self.held[h as usize], frame);
        let max = usize::from(self.cfg.queue_len);
        let n = self.slot_mut(ip).expect("entry exists");
        let mut evicted = None;
        if usize::from(n.qlen) == max {
            // Drop the oldest, as the kernel does when unres_qlen is exceeded.
            evicted = Some(Held(n.queue[0]));
            n.queue.copy_within(1..max, 0);
            n.qlen -= 1;
        }
        n.queue[usize::from(n.qlen)] = h;
        n.qlen += 1;
        Resolve::Queued { request, evicted }
    }

    /// Counts an entry of `domain` in (`1`) or out (`-1`) of its share.
    fn count_entry(&mut self, domain: DomainId, delta: isize) {
        if let Some(n) = self.domain_entries.get_mut(domain.index()) {
            *n = n.wrapping_add_signed(delta);
        }
    }

    fn remove(&mut self, ip: Ipv4Addr) {
        if let Some(slot) = self.index.remove(&u32::from(ip)) {
            if let Some(n) = self.entries[slot as usize].take() {
                self.count_entry(n.domain, -1);
            }
            self.free_entries.push(slot);
        }
    }

    /// The entry [`Self::room_for_entry`] would evict for a new entry of `domain`,
    /// changing nothing: `Ok(None)` if there is room without evicting, `Err(())` if
    /// there is no room at all.
    fn entry_room_preview(&self, domain: DomainId) -> Result<Option<Ipv4Addr>, ()> {
        let d = domain.index();
        let at_share = self
            .shares
            .get(d)
            .is_some_and(|s| self.domain_entries[d] >= s.max);
        if !at_share && !self.free_entries.is_empty() {
            return Ok(None);
        }
        let victim = if at_share {
            self.victim(|n| n.domain == domain)
        } else {
            self.victim(|_| true)
        };
        victim.map(Some).ok_or(())
    }

    /// True if a packet of `domain` could be held without evicting anything.
    fn held_room_preview(&self, domain: DomainId) -> bool {
        let d = domain.index();
        !(self.free_held.is_empty()
            || self
                .shares
                .get(d)
                .is_some_and(|s| self.domain_held[d] >= s.held_max))
    }

    /// What [`Self::resolve`] would do, changing nothing.
    pub fn resolve_preview(&self, ip: Ipv4Addr, domain: DomainId) -> WouldResolve {
        if let Some(n) = self.get(ip) {
            return match n.state {
                NeighborState::Reachable | NeighborState::Probe => WouldResolve::Mac(n.mac),
                NeighborState::Stale => WouldResolve::MacAndProbe(n.mac),
                NeighborState::Incomplete => {
                    if !self.held_room_preview(n.domain) {
                        return WouldResolve::NoBuffer;
                    }
                    WouldResolve::Held {
                        request: false,
                        waiting: n.queued(),
                        evicts: None,
                        pushes_out: n.qlen == self.cfg.queue_len,
                    }
                }
            };
        }
        let Ok(evicts) = self.entry_room_preview(domain) else {
            return WouldResolve::TableFull;
        };
        // An unresolved entry of the network with packets queued would make room for
        // the packet (see `room_for_held`).
        let held_room =
            self.held_room_preview(domain)
                || self.entries.iter().flatten().any(|n| {
                    n.domain == domain && n.state == NeighborState::Incomplete && n.qlen > 0
                });
        if !held_room {
            return WouldResolve::NoBuffer;
        }
        WouldResolve::Held {
            request: true,
            waiting: 0,
            evicts,
            pushes_out: false,
        }
    }

    /// What [`Self::learn`] would do, changing nothing.
    pub fn learn_preview(
        &self,
        ip: Ipv4Addr,
        domain: DomainId,
        mac: MacAddr,
        how: Learned,
    ) -> LearnOutcome {
        if let Some(n) = self.get(ip) {
            return if n.state == NeighborState::Incomplete {
                LearnOutcome::Resolved { queued: n.qlen }
            } else if n.mac != mac {
                LearnOutcome::Changed
            } else {
                LearnOutcome::Refreshed
            };
        }
        if how == Learned::Unsolicited || self.entry_room_preview(domain).is_err() {
            return LearnOutcome::Ignored;
        }
        LearnOutcome::Created
    }

    /// Takes a held packet out: it is swapped into `into` (whose buffer becomes a spare).
    pub fn take(&mut self, held: Held, into: &mut Frame) {
        std::mem::swap(&mut self.held[held.0 as usize], into);
        self.release_held(held.0);
    }

    /// Records that `ip` is at `mac` on `domain`. Returns true if the entry was
    /// INCOMPLETE and has packets to release (see [`Self::tick`], which releases them),
    /// and whether anything changed at all.
    pub fn learn(
        &mut self,
        ip: Ipv4Addr,
        domain: DomainId,
        mac: MacAddr,
        how: Learned,
        now: Timestamp,
        report: &mut Rep<'_>,
    ) -> LearnOutcome {
        let now = now.0;
        if let Some(n) = self.slot_mut(ip) {
            let changed = n.mac != mac;
            let was = n.state;
            n.mac = mac;
            n.state = match (how, was) {
                (Learned::Reply, _) => NeighborState::Reachable,
                (_, NeighborState::Incomplete) => NeighborState::Reachable,
                (_, s) if changed => {
                    let _ = s;
                    NeighborState::Stale
                }
                (_, s) => s,
            };
            if n.state == NeighborState::Reachable || changed {
                n.updated = now;
                n.probes = 0;
            }
            if n.state != was || changed {
                report.emit(|| moved(n, was));
            }
            return if was == NeighborState::Incomplete {
                LearnOutcome::Resolved { queued: n.qlen }
            } else if changed {
                LearnOutcome::Changed
            } else {
                LearnOutcome::Refreshed
            };
        }
        if how == Learned::Unsolicited {
            return LearnOutcome::Ignored;
        }
        if !self.room_for_entry(domain, report) {
            return LearnOutcome::Ignored;
        }
        let slot = self.free_entries.pop().expect("checked above");
        self.count_entry(domain, 1);
        self.entries[slot as usize] = Some(Neighbor {
            ip,
            domain,
            mac,
            state: if how == Learned::Reply {
                NeighborState::Reachable
            } else {
                NeighborState::Stale
            },
            updated: now,
            used: now,
            probes: 0,
            next_probe: 0,
            queue: [0; MAX_QUEUE],
            qlen: 0,
        });
        self.index.insert(u32::from(ip), slot);
        if let Some(n) = &self.entries[slot as usize] {
            report.emit(|| NeighborChange {
                from: None,
                ..moved(n, n.state)
            });
        }
        LearnOutcome::Created
    }

    /// Runs the timers: retransmissions, failures, REACHABLE → STALE, garbage
    /// collection, and the release of packets whose neighbor has been resolved.
    /// The work is appended to `work` (reserve capacity once to avoid allocating).
    pub fn tick(&mut self, now: Timestamp, work: &mut Vec<TickWork>, report: &mut Rep<'_>) {
        let now = now.0;
        let c = self.cfg;
        let ms = 1_000_000;
        let mut gone: [Ipv4Addr; 16] = [Ipv4Addr::UNSPECIFIED; 16];
        let mut ngone = 0;
        for n in self.entries.iter_mut().flatten() {
            match n.state {
                NeighborState::Incomplete | NeighborState::Probe if now >= n.next_probe => {
                    if n.probes < c.probes {
                        n.probes += 1;
                        n.next_probe = now + c.retrans_ms * ms;
                        let to = (n.state == NeighborState::Probe).then_some(n.mac);
                        work.push(TickWork::Request {
                            ip: n.ip,
                            domain: n.domain,
                            to,
                        });
                    } else {
                        for &h in &n.queue[..usize::from(n.qlen)] {
                            work.push(TickWork::Unreachable(Held(h)));
                        }
                        n.qlen = 0;
                        if ngone < gone.len() {
                            gone[ngone] = n.ip;
                            ngone += 1;
                            report.emit(|| self::gone(n, NeighborTo::Failed));
                        }
                    }
                }
                NeighborState::Reachable if now >= n.updated + c.reachable_ms * ms => {
                    n.state = NeighborState::Stale;
                    report.emit(|| moved(n, NeighborState::Reachable));
                }
                NeighborState::Stale
                    if now >= n.used.max(n.updated) + c.stale_ms * ms && ngone < gone.len() =>
                {
                    gone[ngone] = n.ip;
                    ngone += 1;
                    report.emit(|| self::gone(n, NeighborTo::Expired));
                }
                _ => {}
            }
            // Resolved entries release what they held.
            if n.state != NeighborState::Incomplete && n.qlen > 0 {
                for &h in &n.queue[..usize::from(n.qlen)] {
                    work.push(TickWork::Release {
                        held: Held(h),
                        mac: n.mac,
                        domain: n.domain,
                    });
                }
                n.qlen = 0;
            }
        }
        for ip in &gone[..ngone] {
            self.remove(*ip);
        }
    }

    /// Hands out the packets queued for `ip` if it is resolved (right after the ARP
    /// reply, rather than at the next tick).
    pub fn release(&mut self, ip: Ipv4Addr, work: &mut Vec<TickWork>) {
        if let Some(n) = self.slot_mut(ip) {
            if n.state != NeighborState::Incomplete {
                for &h in &n.queue[..usize::from(n.qlen)] {
                    work.push(TickWork::Release {
                        held: Held(h),
                        mac: n.mac,
                        domain: n.domain,
                    });
                }
                n.qlen = 0;
            }
        }
    }

    /// Forgets every entry learned on `domain` and hands back what they held.
    pub fn flush_domain(
        &mut self,
        domain: DomainId,
        work: &mut Vec<TickWork>,
        report: &mut Rep<'_>,
    ) {
        let ips: Vec<Ipv4Addr> = self
            .iter()
            .filter(|n| n.domain == domain)
            .map(|n| n.ip)
            .collect();
        for ip in ips {
            if let Some(n) = self.slot_mut(ip) {
                for &h in &n.queue[..usize::from(n.qlen)] {
                    work.push(TickWork::Unreachable(Held(h)));
                }
                n.qlen = 0;
                report.emit(|| gone(n, NeighborTo::Flushed));
            }
            self.remove(ip);
        }
    }

    /// Forgets the entries `doomed` picks, and every held packet whose ingress port
    /// `port_gone` names, wherever it waits. The packets of a forgotten entry from
    /// other ports are dropped and handed back to be accounted (`orphans`); those
    /// from a port that is gone are not (its counters are no more). Returns the
    /// entries and the packets that went.
    fn forget_where(
        &mut self,
        doomed: impl Fn(&Neighbor) -> bool,
        port_gone: impl Fn(PortId) -> bool,
        report: &mut Rep<'_>,
    ) -> (usize, usize) {
        let (mut entries, mut held) = (0, 0);
        for slot in 0..self.entries.len() {
            let Some(mut n) = self.entries[slot].take() else {
                continue;
            };
            let kill = doomed(&n);
            let mut kept = 0;
            for k in 0..usize::from(n.qlen) {
                let h = n.queue[k];
                let port = self.held[h as usize].ingress;
                let from_gone = port_gone(port);
                if kill || from_gone {
                    if !from_gone {
                        self.orphans.push((port, Orphaned::Flushed));
                    }
                    self.release_held(h);
                    held += 1;
                } else {
                    n.queue[kept] = h;
                    kept += 1;
                }
            }
            n.qlen = kept as u8;
            if kill {
                report.emit(|| gone(&n, NeighborTo::Flushed));
                self.index.remove(&u32::from(n.ip));
                self.count_entry(n.domain, -1);
                self.free_entries.push(slot as u32);
                entries += 1;
            } else {
                self.entries[slot] = Some(n);
            }
        }
        (entries, held)
    }
}

/// Where the table reports its changes.
type Rep<'a> = Report<'a, NeighborChange>;

/// `n` now, having been in state `from`.
fn moved(n: &Neighbor, from: NeighborState) -> NeighborChange {
    NeighborChange {
        domain: n.domain,
        ip: n.ip,
        mac: n.mac,
        from: Some(from),
        to: NeighborTo::State(n.state),
    }
}

/// `n` gone, for this reason.
fn gone(n: &Neighbor, to: NeighborTo) -> NeighborChange {
    NeighborChange {
        domain: n.domain,
        ip: n.ip,
        mac: n.mac,
        from: Some(n.state),
        to,
    }
}

/// The neighbor table shared by the dataplane's workers. Every operation takes the
/// table's lock for a few field updates; packets are queued and released by swapping
/// buffers, never by copying, so nothing slow happens under the lock.
pub struct NeighborTable {
    inner: Mutex<Neighbors>,
    cfg: NeighborConfig,
    /// Set when an eviction left packets to account, so the hot path checks a flag
    /// instead of taking the lock.
    orphaned: AtomicBool,
}

impl NeighborTable {
    /// Bytes a table with these settings allocates (see [`NeighborTable::new`]): the
    /// entries and their index, and a full buffer for every packet it may hold.
    pub fn bytes_for(cfg: &NeighborConfig) -> usize {
        use std::mem::size_of;
        let max = cfg.max.max(1);
        let index = super::memory::hash_index_bytes(max, size_of::<(u32, u32)>());
        let entries = max * (size_of::<Option<Neighbor>>() + size_of::<u32>());
        let held = cfg.held_max * (size_of::<Frame>() + super::BUFFER_LEN + size_of::<u32>());
        // Entries and held packets counted for every network there may be.
        let per_network = 2 * super::MAX_DOMAINS * size_of::<usize>();
        size_of::<Self>() + index + entries + held + per_network
    }

    /// Allocates everything up front: `max` entries and `held_max` packet buffers.
    pub fn new(cfg: NeighborConfig) -> NeighborTable {
        NeighborTable::with_shares(cfg, Vec::new())
    }

    /// As [`NeighborTable::new`], network `i` holding at most `shares[i]`.
    pub fn with_shares(cfg: NeighborConfig, shares: Vec<NeighborShare>) -> NeighborTable {
        let inner = Neighbors::new(cfg, shares);
        NeighborTable {
            cfg: inner.cfg,
            inner: Mutex::new(inner),
            orphaned: AtomicBool::new(false),
        }
    }

    /// The ingress port of a packet dropped because the entry it waited on was
    /// evicted to make room, one at a time; `None` when there are no more.
    pub fn take_orphan(&self) -> Option<(PortId, Orphaned)> {
        if !self.orphaned.load(Ordering::Relaxed) {
            return None;
        }
        let mut t = lock(&self.inner);
        let p = t.orphans.pop();
        if t.orphans.is_empty() {
            self.orphaned.store(false, Ordering::Relaxed);
        }
        p
    }

    fn note_orphans(&self, t: &Neighbors) {
        if !t.orphans.is_empty() {
            self.orphaned.store(true, Ordering::Relaxed);
        }
    }

    /// Entries of `domain` now, and packets held for it.
    pub fn domain_usage(&self, domain: DomainId) -> (usize, usize) {
        let t = lock(&self.inner);
        let d = domain.index();
        (
            t.domain_entries.get(d).copied().unwrap_or(0),
            t.domain_held.get(d).copied().unwrap_or(0),
        )
    }

    pub fn config(&self) -> &NeighborConfig {
        &self.cfg
    }

    /// A copy of the entry for `ip`.
    pub fn get(&self, ip: Ipv4Addr) -> Option<Neighbor> {
        lock(&self.inner).get(ip).cloned()
    }

    /// Copies of every entry.
    pub fn entries(&self) -> Vec<Neighbor> {
        lock(&self.inner).iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packets held over all entries.
    pub fn held(&self) -> usize {
        lock(&self.inner).held()
    }

    /// Finds the MAC for `ip` to send `frame` to, or queues `frame` while it is resolved.
    pub fn resolve(
        &self,
        ip: Ipv4Addr,
        domain: DomainId,
        now: Timestamp,
        frame: &mut Frame,
    ) -> Resolve {
        self.resolve_reporting(ip, domain, now, frame, Report::off())
    }

    /// As [`NeighborTable::resolve`], reporting the changes it makes.
    pub fn resolve_reporting(
        &self,
        ip: Ipv4Addr,
        domain: DomainId,
        now: Timestamp,
        frame: &mut Frame,
        mut report: Rep<'_>,
    ) -> Resolve {
        let mut t = lock(&self.inner);
        let r = t.resolve(ip, domain, now, frame, &mut report);
        self.note_orphans(&t);
        r
    }

    /// What [`NeighborTable::resolve`] would do for a packet to `ip`, changing
    /// nothing: no entry made, no packet held, no state or time of use touched (for
    /// what-if traces).
    pub fn would_resolve(&self, ip: Ipv4Addr, domain: DomainId) -> WouldResolve {
        lock(&self.inner).resolve_preview(ip, domain)
    }

    /// What [`NeighborTable::learn`] would do, changing nothing (for what-if traces).
    pub fn would_learn(
        &self,
        ip: Ipv4Addr,
        domain: DomainId,
        mac: MacAddr,
        how: Learned,
    ) -> LearnOutcome {
        lock(&self.inner).learn_preview(ip, domain, mac, how)
    }

    /// Takes a held packet out: it is swapped into `into` (whose buffer becomes a spare).
    pub fn take(&self, held: Held, into: &mut Frame) {
        lock(&self.inner).take(held, into)
    }

    /// Records that `ip` is at `mac` on `domain`.
    pub fn learn(
        &self,
        ip: Ipv4Addr,
        domain: DomainId,
        mac: MacAddr,
        how: Learned,
        now: Timestamp,
    ) -> LearnOutcome {
        self.learn_reporting(ip, domain, mac, how, now, Report::off())
    }

    /// As [`NeighborTable::learn`], reporting the changes it makes.
    pub fn learn_reporting(
        &self,
        ip: Ipv4Addr,
        domain: DomainId,
        mac: MacAddr,
        how: Learned,
        now: Timestamp,
        mut report: Rep<'_>,
    ) -> LearnOutcome {
        let mut t = lock(&self.inner);
        let r = t.learn(ip, domain, mac, how, now, &mut report);
        self.note_orphans(&t);
        r
    }

    /// Runs the timers; the work is appended to `work`.
    pub fn tick(&self, now: Timestamp, work: &mut Vec<TickWork>) {
        self.tick_reporting(now, work, Report::off())
    }

    /// As [`NeighborTable::tick`], reporting the changes it makes.
    pub fn tick_reporting(&self, now: Timestamp, work: &mut Vec<TickWork>, mut report: Rep<'_>) {
        lock(&self.inner).tick(now, work, &mut report)
    }

    /// Hands out the packets queued for `ip` if it is resolved.
    pub fn release(&self, ip: Ipv4Addr, work: &mut Vec<TickWork>) {
        lock(&self.inner).release(ip, work)
    }

    /// Forgets every entry learned on `domain` and hands back what they held.
    pub fn flush_domain(&self, domain: DomainId, work: &mut Vec<TickWork>) {
        lock(&self.inner).flush_domain(domain, work, &mut Report::off())
    }

    /// Replaces every network's share (network `i` holds at most `shares[i]`;
    /// networks past the list have no share of their own), while workers use the
    /// table. A network over its new share keeps its entries and packets; it makes
    /// no new entry and holds no new packet but by evicting its own, as at its share.
    pub fn set_shares(&self, shares: Vec<NeighborShare>) {
        let old = std::mem::replace(&mut lock(&self.inner).shares, shares);
        // Freed outside the lock.
        drop(old);
    }

    /// Forgets the entries `doomed` picks (an endpoint or a network went away), and
    /// frees every held packet whose ingress port `gone` names, wherever it waits:
    /// the port is gone and its counters with it, so those packets are not
    /// accounted. The other packets a forgotten entry held are dropped and handed
    /// back to be accounted ([`NeighborTable::take_orphan`], [`Orphaned::Flushed`]).
    /// Buffers and shares are given back as when an entry fails. Returns the
    /// entries and the packets that went.
    pub fn forget(
        &self,
        doomed: impl Fn(&Neighbor) -> bool,
        gone: impl Fn(PortId) -> bool,
    ) -> (usize, usize) {
        let mut t = lock(&self.inner);
        let r = t.forget_where(doomed, gone, &mut Report::off());
        self.note_orphans(&t);
        r
    }
}

/// What [`NeighborTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnOutcome {
    /// A new entry.
    Created,
    /// An INCOMPLETE entry got its MAC; `queued` packets are ready to go.
    Resolved { queued: u8 },
    /// An entry's MAC changed.
    Changed,
    /// Confirmed or unchanged.
    Refreshed,
    /// Unsolicited news about an address we do not track, or no room.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: DomainId = DomainId(0);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_millis(n)
    }

    fn frame(tag: u8) -> Frame {
        Frame::from_bytes(super::super::PortId(0), &[tag; 20])
    }

    fn table() -> NeighborTable {
        NeighborTable::new(NeighborConfig {
            held_max: 8,
            max: 4,
            ..Default::default()
        })
    }

    #[test]
    fn resolve_queue_reply_release() {
        let t = table();
        let mut f = frame(1);
        assert_eq!(
            t.resolve(IP, D, ms(0), &mut f),
            Resolve::Queued {
                request: true,
                evicted: None
            }
        );
        assert!(f.is_empty(), "the caller got a spare buffer");
        let mut f2 = frame(2);
        assert_eq!(
            t.resolve(IP, D, ms(10), &mut f2),
            Resolve::Queued {
                request: false,
                evicted: None
            }
        );
        assert_eq!(t.get(IP).unwrap().state, NeighborState::Incomplete);
        assert_eq!(t.held(), 2);

        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        assert_eq!(
            t.learn(IP, D, mac, Learned::Reply, ms(20)),
            LearnOutcome::Resolved { queued: 2 }
        );
        let mut work = Vec::new();
        t.tick(ms(30), &mut work);
        assert_eq!(work.len(), 2);
        let mut out = Frame::new();
        for (i, w) in work.iter().enumerate() {
            let TickWork::Release { held, mac: m, .. } = *w else {
                panic!("{w:?}")
            };
            assert_eq!(m, mac);
            t.take(held, &mut out);
            assert_eq!(out.data()[0], i as u8 + 1, "released in arrival order");
        }
        assert_eq!(t.held(), 0);
        assert_eq!(t.resolve(IP, D, ms(40), &mut frame(3)), Resolve::Mac(mac));
    }

    #[test]
    fn retries_then_unreachable() {
        let t = table();
        t.resolve(IP, D, ms(0), &mut frame(1));
        let mut work = Vec::new();
        t.tick(ms(500), &mut work);
        assert!(work.is_empty(), "not yet time to retransmit");
        t.tick(ms(1000), &mut work);
        assert_eq!(
            work,
            vec![TickWork::Request {
                ip: IP,
                domain: D,
                to: None
            }]
        );
        work.clear();
        t.tick(ms(2000), &mut work);
        assert_eq!(work.len(), 1, "third request");
        work.clear();
        t.tick(ms(3000), &mut work);
        assert!(matches!(work[..], [TickWork::Unreachable(_)]), "{work:?}");
        assert!(t.get(IP).is_none(), "the failed entry is gone");
    }

    #[test]
    fn queue_overflow_drops_the_oldest() {
        let t = table();
        for i in 0..3 {
            assert!(matches!(
                t.resolve(IP, D, ms(0), &mut frame(i)),
                Resolve::Queued { evicted: None, .. }
            ));
        }
        let Resolve::Queued {
            evicted: Some(old), ..
        } = t.resolve(IP, D, ms(0), &mut frame(9))
        else {
            panic!("the fourth packet pushes the first out");
        };
        let mut spare = Frame::new();
        t.take(old, &mut spare);
        assert_eq!(spare.data()[0], 0, "the oldest packet");
        assert_eq!(t.get(IP).unwrap().queued(), 3);
        assert_eq!(t.held(), 3);
    }

    #[test]
    fn held_buffers_are_bounded_and_never_pinned_by_the_unresolved() {
        let t = NeighborTable::new(NeighborConfig {
            held_max: 2,
            ..Default::default()
        });
        let mut first = Frame::from_bytes(PortId(7), &[1; 20]);
        t.resolve(Ipv4Addr::new(10, 0, 0, 1), D, ms(0), &mut first);
        t.resolve(Ipv4Addr::new(10, 0, 0, 2), D, ms(1), &mut frame(0));
        assert_eq!(t.held(), 2);
        // Every buffer waits on an unresolved address: the oldest entry makes room,
        // and its packet is handed back to be accounted.
        assert!(matches!(
            t.resolve(Ipv4Addr::new(10, 0, 0, 3), D, ms(2), &mut frame(0)),
            Resolve::Queued { request: true, .. }
        ));
        assert!(t.get(Ipv4Addr::new(10, 0, 0, 1)).is_none());
        assert_eq!(t.take_orphan(), Some((PortId(7), Orphaned::Evicted)));
        assert_eq!(t.take_orphan(), None);
        assert_eq!(t.held(), 2);
    }

    #[test]
    fn incomplete_entries_are_evicted_first() {
        let t = table(); // max 4, held 8
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        t.learn(Ipv4Addr::new(10, 0, 0, 1), D, mac, Learned::Request, ms(0));
        for i in 2..=4 {
            t.resolve(
                Ipv4Addr::new(10, 0, 0, i),
                D,
                ms(u64::from(i)),
                &mut frame(i),
            );
        }
        // Full: the oldest INCOMPLETE entry goes, not the older STALE one.
        assert!(matches!(
            t.resolve(Ipv4Addr::new(10, 0, 0, 5), D, ms(10), &mut frame(5)),
            Resolve::Queued { .. }
        ));
        assert!(t.get(Ipv4Addr::new(10, 0, 0, 2)).is_none());
        assert!(t.get(Ipv4Addr::new(10, 0, 0, 1)).is_some());
        assert_eq!(t.take_orphan(), Some((PortId(0), Orphaned::Evicted)));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_network_fills_its_share_and_no_more() {
        let share = NeighborShare {
            max: 2,
            held_max: 4,
        };
        let t = NeighborTable::with_shares(
            NeighborConfig {
                max: 4,
                held_max: 8,
                ..Default::default()
            },
            vec![share, share],
        );
        let d1 = DomainId(1);
        // Network 0 floods unused addresses: it recycles its own two entries.
        for i in 1..=20u8 {
            assert!(matches!(
                t.resolve(
                    Ipv4Addr::new(10, 0, 0, i),
                    D,
                    ms(u64::from(i)),
                    &mut frame(i)
                ),
                Resolve::Queued { .. }
            ));
        }
        assert_eq!(t.domain_usage(D), (2, 2));
        // Network 1 still resolves, and learns.
        assert!(matches!(
            t.resolve(Ipv4Addr::new(10, 1, 0, 9), d1, ms(30), &mut frame(0)),
            Resolve::Queued { request: true, .. }
        ));
        let mac = MacAddr([2, 0, 0, 0, 1, 9]);
        assert_eq!(
            t.learn(Ipv4Addr::new(10, 1, 0, 9), d1, mac, Learned::Reply, ms(31)),
            LearnOutcome::Resolved { queued: 1 }
        );
        assert_eq!(
            t.learn(
                Ipv4Addr::new(10, 1, 0, 8),
                d1,
                mac,
                Learned::Request,
                ms(31)
            ),
            LearnOutcome::Created
        );
        assert_eq!(t.domain_usage(d1), (2, 1));
    }

    #[test]
    fn forgetting_an_entry_gives_back_its_packets_and_its_share() {
        let share = NeighborShare {
            max: 2,
            held_max: 4,
        };
        let t = NeighborTable::with_shares(
            NeighborConfig {
                max: 4,
                held_max: 8,
                ..Default::default()
            },
            vec![share, share],
        );
        let (d1, other) = (DomainId(1), Ipv4Addr::new(10, 1, 0, 9));
        let from = |port: u16, tag: u8| Frame::from_bytes(PortId(port), &[tag; 20]);
        // 10.0.0.9 waits with a packet of port 0 and one of port 5; 10.1.0.9 with
        // one of port 5. Port 5 is gone.
        t.resolve(IP, D, ms(0), &mut from(0, 1));
        t.resolve(IP, D, ms(0), &mut from(5, 2));
        t.resolve(other, d1, ms(0), &mut from(5, 3));
        assert_eq!(t.held(), 3);
        assert_eq!(t.forget(|n| n.ip == IP, |p| p == PortId(5)), (1, 3));
        // Port 0's packet is handed back to be accounted; port 5's are not.
        assert_eq!(t.take_orphan(), Some((PortId(0), Orphaned::Flushed)));
        assert_eq!(t.take_orphan(), None);
        assert!(t.get(IP).is_none());
        assert_eq!(t.get(other).unwrap().queued(), 0, "kept, without port 5's");
        assert_eq!((t.held(), t.len()), (0, 1));
        assert_eq!(t.domain_usage(D), (0, 0));
        assert_eq!(t.domain_usage(d1), (1, 0));
        // The buffers are back: a full queue's worth can wait again.
        for i in 0..3 {
            assert!(matches!(
                t.resolve(IP, D, ms(1), &mut frame(i)),
                Resolve::Queued { evicted: None, .. }
            ));
        }
    }

    #[test]
    fn a_share_shrunk_at_run_time_keeps_its_entries_and_grows_no_more() {
        let t = NeighborTable::with_shares(
            NeighborConfig {
                max: 8,
                held_max: 8,
                ..Default::default()
            },
            vec![NeighborShare {
                max: 4,
                held_max: 4,
            }],
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let learn = |d: DomainId, i: u8, at: u64| {
            t.learn(
                Ipv4Addr::new(10, d.0 as u8, 0, i),
                d,
                mac,
                Learned::Request,
                ms(at),
            )
        };
        for i in 1..=3 {
            assert_eq!(learn(D, i, u64::from(i)), LearnOutcome::Created);
        }
        let small = NeighborShare {
            max: 1,
            held_max: 1,
        };
        t.set_shares(vec![small]);
        assert_eq!(t.domain_usage(D), (3, 0), "nothing forgotten");
        // A new address of the network takes the place of one of its own.
        assert_eq!(learn(D, 4, 10), LearnOutcome::Created);
        assert_eq!(t.domain_usage(D), (3, 0));
        assert!(
            t.get(Ipv4Addr::new(10, 0, 0, 1)).is_none(),
            "the least used"
        );
        // Network 1 had no share and was counted all the same; given one, it
        // recycles its own entries too.
        assert_eq!(learn(DomainId(1), 1, 11), LearnOutcome::Created);
        t.set_shares(vec![small, small]);
        assert_eq!(learn(DomainId(1), 2, 12), LearnOutcome::Created);
        assert_eq!(t.domain_usage(DomainId(1)), (1, 0));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn reachable_goes_stale_then_probe_then_reachable() {
        let t = table();
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        t.learn(IP, D, mac, Learned::Reply, ms(0));
        let mut work = Vec::new();
        t.tick(ms(29_999), &mut work);
        assert_eq!(t.get(IP).unwrap().state, NeighborState::Reachable);
        t.tick(ms(30_000), &mut work);
        assert_eq!(t.get(IP).unwrap().state, NeighborState::Stale);
        // Used while stale: still sent to the known MAC, and probed.
        assert_eq!(
            t.resolve(IP, D, ms(30_500), &mut frame(0)),
            Resolve::MacAndProbe(mac)
        );
        assert_eq!(t.get(IP).unwrap().state, NeighborState::Probe);
        t.learn(IP, D, mac, Learned::Reply, ms(30_600));
        assert_eq!(t.get(IP).unwrap().state, NeighborState::Reachable);
        assert!(work.is_empty());
    }

    #[test]
    fn unused_stale_entries_are_collected() {
        let t = table();
        t.learn(IP, D, MacAddr([2, 0, 0, 0, 0, 9]), Learned::Request, ms(0));
        assert_eq!(
            t.get(IP).unwrap().state,
            NeighborState::Stale,
            "learned from a request: stale"
        );
        let mut work = Vec::new();
        t.tick(ms(59_999), &mut work);
        assert!(t.get(IP).is_some());
        t.tick(ms(60_000), &mut work);
        assert!(t.get(IP).is_none());
    }

    #[test]
    fn gratuitous_arp_updates_but_does_not_create() {
        let t = table();
        let (m1, m2) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(
            t.learn(IP, D, m1, Learned::Unsolicited, ms(0)),
            LearnOutcome::Ignored
        );
        assert!(t.get(IP).is_none());
        t.learn(IP, D, m1, Learned::Reply, ms(0));
        assert_eq!(
            t.learn(IP, D, m2, Learned::Unsolicited, ms(5)),
            LearnOutcome::Changed
        );
        let n = t.get(IP).unwrap();
        assert_eq!((n.mac, n.state), (m2, NeighborState::Stale));
    }

    #[test]
    fn full_table_evicts_unused_stale_first() {
        let t = table(); // max 4
        for i in 1..=4 {
            t.learn(
                Ipv4Addr::new(10, 0, 0, i),
                D,
                MacAddr([2, 0, 0, 0, 0, i]),
                Learned::Request,
                ms(u64::from(i)),
            );
        }
        // A fifth address pushes out the least recently used stale entry (10.0.0.1).
        assert_eq!(
            t.learn(
                Ipv4Addr::new(10, 0, 0, 5),
                D,
                MacAddr([2, 0, 0, 0, 0, 5]),
                Learned::Request,
                ms(10)
            ),
            LearnOutcome::Created
        );
        assert!(t.get(Ipv4Addr::new(10, 0, 0, 1)).is_none());
        assert_eq!(t.len(), 4);
    }
}
