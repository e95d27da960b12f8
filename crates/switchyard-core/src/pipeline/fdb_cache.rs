//! A worker's own cache in front of the shared FDB: the answers it got from the
//! table lately, kept so that a bridged frame takes no lock in the common case.
//!
//! The FDB is shared by every worker and locks per shard ([`Fdb`]). A known-unicast
//! frame asks it twice — l2-learn refreshes the source MAC, l2-forward looks up the
//! destination — and each ask takes a shard lock, whose cache line travels between
//! cores when two workers switch frames of the same hosts. Yet the answers almost
//! never change: a MAC stays on its port for minutes. So each worker keeps the
//! answers it got in a small table of its own, made once with the worker and never
//! grown (no allocation on the packet path), direct-mapped by the FDB key
//! (network and MAC together — an answer for one network is never one for another).
//!
//! **When an answer may be reused.** The FDB counts, per network, every change that
//! could make an answer wrong — a MAC moving to another port or VTEP, an entry
//! removed, aged out, flushed with its port or network, pinned by a new layout
//! ([`Fdb::generation`]). A cached answer carries the count of its network as it was
//! when the answer was read, under the shard lock; it is used only while the count
//! is still the same. A new MAC learned changes no answer (only entries found are
//! cached) and leaves the count alone; a change in one network leaves every other
//! network's answers valid, so a network flooding MAC moves makes the cache useless
//! for itself alone, and costs no more than the table without a cache.
//!
//! **Learning without a lock.** The table keeps the second a MAC was last seen. A
//! frame from a known MAC on its known port changes nothing in it if that second is
//! already the current one, and the cache knows when *this* worker last wrote it: a
//! source seen on the port (and VTEP) the cache holds, by a worker that refreshed it
//! during this second, is answered [`Learn::Refreshed`] from the cache. Otherwise —
//! another port or VTEP (a move, refused or not, is decided under the lock exactly as
//! before), a new second, an answer gone stale — the table is asked, as it would be
//! without the cache, so its results, counters and events are the same; the table
//! is written at most once a second per MAC and worker, as before at most once a
//! second per MAC. A MAC's first frame (a new entry) leaves the cache as it is, so
//! that a MAC flood — every source new, each seen once — does not push out the
//! answers of the hosts that keep talking; the cache then helps them as before, and
//! the flood's frames cost what they did without it.

use super::counters::counted;
use super::fdb::{key, Fdb, Learn};
use super::{DomainId, PortId};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// What the counters name this cache, in the place of a stage.
pub const NAME: &str = "fdb-cache";

counted! {
    /// What a worker's FDB cache counts.
    pub enum Event: Event in NAME {
        FdbCacheHits => ("fdb_cache_hits", "FDB lookups and source refreshes answered by the worker's own cache, without a lock"),
        FdbCacheMisses => ("fdb_cache_misses", "FDB lookups and source refreshes the worker's cache passed to the shared table"),
    }
}

/// The counter an ask answered one way or the other moves.
#[inline]
pub(crate) fn cache_event(answered: Answered) -> Event {
    match answered {
        Answered::Cache => Event::FdbCacheHits,
        Answered::Table => Event::FdbCacheMisses,
    }
}

/// Entries of a worker's cache: a power of two. 32 bytes each, so 16 KB a worker;
/// the MACs a worker switches at once are usually far fewer.
pub const SLOTS: usize = 512;

/// `refreshed` of an answer this worker has not written to the table itself (one
/// found by a lookup): the next frame from that MAC refreshes it under the lock.
const NOT_REFRESHED: u32 = u32::MAX;

/// One cached answer. A slot whose `generation` is 0 is empty: the FDB's counts
/// start at 1.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The FDB key: network and MAC.
    key: u64,
    /// The network's change count the answer was read at.
    generation: u64,
    /// The second this worker last refreshed the entry in the table.
    refreshed: u32,
    port: PortId,
    vtep: Option<Ipv4Addr>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        key: 0,
        generation: 0,
        refreshed: NOT_REFRESHED,
        port: PortId(0),
        vtep: None,
    };
}

/// Whether an ask was answered from the cache (a hit) or by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Cache,
    Table,
}

/// One worker's cache of FDB answers. Never shared: each worker makes its own.
pub struct FdbCache {
    slots: Box<[Slot]>,
}

impl Default for FdbCache {
    fn default() -> Self {
        FdbCache::new()
    }
}

impl FdbCache {
    /// An empty cache of [`SLOTS`] entries, allocated here once.
    pub fn new() -> FdbCache {
        FdbCache {
            slots: vec![Slot::EMPTY; SLOTS].into_boxed_slice(),
        }
    }

    #[inline]
    fn slot(&mut self, k: u64) -> &mut Slot {
        // Fibonacci hashing; the FDB picks its shard from the top bits, this from the
        // ones below, so a cache's sets do not line up with the table's shards.
        let i = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & (SLOTS - 1);
        &mut self.slots[i]
    }

    /// The port `mac` was last seen on in `domain`, and the remote VTEP behind it
    /// when that port is a tunnel: [`Fdb::lookup_via`], from the cache while its
    /// answer is current.
    #[inline]
    pub fn lookup_via(
        &mut self,
        fdb: &Fdb,
        domain: DomainId,
        mac: MacAddr,
    ) -> (Option<(PortId, Option<Ipv4Addr>)>, Answered) {
        let k = key(domain, mac);
        let s = self.slot(k);
        // The network's count is read only for a key that is there: a miss costs no
        // atomic load.
        if s.key == k && s.generation == fdb.generation(domain) {
            return (Some((s.port, s.vtep)), Answered::Cache);
        }
        let found = fdb.lookup_via_generation(domain, mac);
        if let Some((port, vtep, generation)) = found {
            *s = Slot {
                key: k,
                generation,
                refreshed: NOT_REFRESHED,
                port,
                vtep,
            };
        }
        (found.map(|(p, v, _)| (p, v)), Answered::Table)
    }

    /// Records that `mac` was seen as a source on `port` (behind `vtep`) at second
    /// `now`: [`Fdb::learn`], with the same result, answered from the cache when the
    /// table would change nothing (see the module's doc).
    #[inline]
    pub fn learn(
        &mut self,
        fdb: &Fdb,
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
        vtep: Option<Ipv4Addr>,
        now: u32,
    ) -> (Learn, Answered) {
        let k = key(domain, mac);
        let s = self.slot(k);
        if s.key == k
            && s.port == port
            && s.vtep == vtep
            && s.refreshed == now
            && s.generation == fdb.generation(domain)
        {
            return (Learn::Refreshed, Answered::Cache);
        }
        let (result, generation) = fdb.learn_generation(domain, mac, port, vtep, now);
        match result {
            // The entry is now (port, vtep), written by this worker at `now`.
            Learn::Refreshed | Learn::Moved { .. } => {
                *s = Slot {
                    key: k,
                    generation,
                    refreshed: now,
                    port,
                    vtep,
                };
            }
            // A MAC seen for the first time is kept from its second frame on: a MAC
            // flood (a new source in every frame, each seen once) then passes the
            // cache by and leaves the answers of the hosts that talk in it.
            Learn::New => {}
            // Unchanged elsewhere (pinned), or not in the table: nothing to keep.
            Learn::Pinned { .. } | Learn::TableFull | Learn::DomainFull => {}
        }
        (result, Answered::Table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D0: DomainId = DomainId(0);
    const D1: DomainId = DomainId(1);

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn a_refresh_in_the_same_second_is_answered_without_the_table() {
        let f = Fdb::new(16, 300);
        let mut c = FdbCache::new();
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 10),
            (Learn::New, Answered::Table)
        );
        // Kept from its second frame on (a new MAC's first frame is not cached).
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 10),
            (Learn::Refreshed, Answered::Table)
        );
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 10),
            (Learn::Refreshed, Answered::Cache)
        );
        // A new second: written to the table once, then answered again.
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 11),
            (Learn::Refreshed, Answered::Table)
        );
        assert_eq!(f.entries()[0].2.last_seen, 11);
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 11),
            (Learn::Refreshed, Answered::Cache)
        );
        assert_eq!(
            c.lookup_via(&f, D0, mac(1)),
            (Some((PortId(1), None)), Answered::Cache)
        );
    }

    #[test]
    fn a_move_is_decided_by_the_table_at_once() {
        let f = Fdb::new(16, 300);
        let mut c = FdbCache::new();
        c.learn(&f, D0, mac(1), PortId(1), None, 10);
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(2), None, 10),
            (Learn::Moved { from: PortId(1) }, Answered::Table)
        );
        assert_eq!(
            c.lookup_via(&f, D0, mac(1)),
            (Some((PortId(2), None)), Answered::Cache)
        );
        // Behind another VTEP on the same port is a move too.
        let vtep = Some(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(2), vtep, 10),
            (Learn::Moved { from: PortId(2) }, Answered::Table)
        );
        assert_eq!(c.lookup_via(&f, D0, mac(1)).0, Some((PortId(2), vtep)));
    }

    #[test]
    fn another_workers_move_makes_the_answer_stale() {
        let f = Fdb::new(16, 300);
        let (mut a, mut b) = (FdbCache::new(), FdbCache::new());
        a.learn(&f, D0, mac(1), PortId(1), None, 10);
        assert_eq!(b.lookup_via(&f, D0, mac(1)).0, Some((PortId(1), None)));
        assert_eq!(b.lookup_via(&f, D0, mac(1)).1, Answered::Cache);
        // Worker a sees the MAC on port 2: worker b's next lookup says port 2.
        a.learn(&f, D0, mac(1), PortId(2), None, 10);
        assert_eq!(
            b.lookup_via(&f, D0, mac(1)),
            (Some((PortId(2), None)), Answered::Table)
        );
        // And worker b, seeing it back on port 1 in the same second, moves it back:
        // its own record of port 1 is stale, not a reason to answer "refreshed".
        b.learn(&f, D0, mac(1), PortId(1), None, 10);
        a.learn(&f, D0, mac(1), PortId(2), None, 10);
        assert_eq!(
            b.learn(&f, D0, mac(1), PortId(1), None, 10),
            (Learn::Moved { from: PortId(2) }, Answered::Table)
        );
    }

    #[test]
    fn removed_aged_and_flushed_entries_are_not_served() {
        let f = Fdb::new(16, 300);
        let mut c = FdbCache::new();
        let fill = |c: &mut FdbCache| {
            c.learn(&f, D0, mac(1), PortId(1), None, 10);
            c.lookup_via(&f, D0, mac(1));
            assert_eq!(c.lookup_via(&f, D0, mac(1)).1, Answered::Cache);
        };
        fill(&mut c);
        assert!(f.forget(D0, mac(1)));
        assert_eq!(c.lookup_via(&f, D0, mac(1)), (None, Answered::Table));
        fill(&mut c);
        assert_eq!(f.age(310), 1);
        assert_eq!(c.lookup_via(&f, D0, mac(1)), (None, Answered::Table));
        // Aged out and seen again: new, not a refresh from the cache.
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 10).0,
            Learn::New,
            "the cache remembered second 10, but the entry went"
        );
        assert_eq!(f.flush_port(PortId(1)), 1);
        assert_eq!(c.lookup_via(&f, D0, mac(1)), (None, Answered::Table));
        fill(&mut c);
        assert_eq!(f.flush_domain(D0), 1);
        assert_eq!(c.lookup_via(&f, D0, mac(1)), (None, Answered::Table));
        fill(&mut c);
        // Pinned to another port by a new layout.
        assert!(f.pin(D0, mac(1), PortId(3)));
        assert_eq!(c.lookup_via(&f, D0, mac(1)).0, Some((PortId(3), None)));
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 10).0,
            Learn::Pinned { owner: PortId(3) }
        );
    }

    #[test]
    fn networks_are_kept_apart() {
        let f = Fdb::new(16, 300);
        let mut c = FdbCache::new();
        c.learn(&f, D0, mac(1), PortId(1), None, 10);
        assert_eq!(c.lookup_via(&f, D1, mac(1)), (None, Answered::Table));
        c.learn(&f, D1, mac(1), PortId(5), None, 10);
        assert_eq!(c.lookup_via(&f, D1, mac(1)).0, Some((PortId(5), None)));
        assert_eq!(c.lookup_via(&f, D0, mac(1)).0, Some((PortId(1), None)));
        // A move in network 1 leaves network 0's answers valid.
        c.learn(&f, D1, mac(1), PortId(6), None, 10);
        assert_eq!(
            c.lookup_via(&f, D0, mac(1)),
            (Some((PortId(1), None)), Answered::Cache)
        );
    }

    #[test]
    fn a_full_table_leaves_nothing_in_the_cache() {
        let f = Fdb::new(1, 300);
        let mut c = FdbCache::new();
        c.learn(&f, D0, mac(1), PortId(1), None, 10);
        assert_eq!(
            c.learn(&f, D0, mac(2), PortId(1), None, 10),
            (Learn::TableFull, Answered::Table)
        );
        assert_eq!(
            c.learn(&f, D0, mac(2), PortId(1), None, 10),
            (Learn::TableFull, Answered::Table)
        );
        assert_eq!(c.lookup_via(&f, D0, mac(2)), (None, Answered::Table));
    }

    #[test]
    fn a_mac_flood_leaves_the_talking_hosts_answers() {
        let f = Fdb::new(64 * 1024, 300);
        let mut c = FdbCache::new();
        for _ in 0..2 {
            c.learn(&f, D0, mac(1), PortId(1), None, 10);
        }
        // Many more new MACs than the cache has entries, each seen once.
        for n in 0..(8 * SLOTS as u64) {
            let m = MacAddr::from_u64(0x0200_ee00_0000 | n);
            assert_eq!(c.learn(&f, D0, m, PortId(2), None, 10).0, Learn::New);
        }
        assert_eq!(
            c.learn(&f, D0, mac(1), PortId(1), None, 10),
            (Learn::Refreshed, Answered::Cache)
        );
    }

    #[test]
    fn an_entry_is_small() {
        // What the doc of SLOTS says a worker's cache costs.
        assert!(std::mem::size_of::<Slot>() <= 32);
    }

    #[test]
    fn colliding_keys_evict_each_other_and_stay_correct() {
        let f = Fdb::new(4096, 300);
        let mut c = FdbCache::new();
        // Many more MACs than slots: every answer is still the table's.
        for n in 0..(4 * SLOTS as u32) {
            let m = MacAddr::from_u64(0x0200_0000_0000 | u64::from(n));
            c.learn(&f, D0, m, PortId((n % 7) as u16), None, 10);
        }
        for n in 0..(4 * SLOTS as u32) {
            let m = MacAddr::from_u64(0x0200_0000_0000 | u64::from(n));
            assert_eq!(
                c.lookup_via(&f, D0, m).0,
                Some((PortId((n % 7) as u16), None))
            );
        }
    }

    /// What a worker does to the FDB, in a random history.
    #[derive(Debug, Clone)]
    enum Op {
        /// Worker `w` sees `mac` (of network `d`) as a source on `port`.
        Learn {
            w: usize,
            d: u16,
            mac: u8,
            port: u16,
            vtep: bool,
        },
        /// Worker `w` looks `mac` up in network `d`.
        Lookup {
            w: usize,
            d: u16,
            mac: u8,
        },
        Forget {
            d: u16,
            mac: u8,
        },
        /// Time passes (the clock only goes forward, as the workers' clock does).
        Wait {
            secs: u32,
        },
        Age,
        FlushPort {
            port: u16,
        },
        Pin {
            d: u16,
            mac: u8,
            port: u16,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0..2usize, 0..2u16, 0..6u8, 0..3u16, any::<bool>()).prop_map(
                |(w, d, mac, port, vtep)| Op::Learn { w, d, mac, port, vtep }
            ),
            2 => (0..3u32).prop_map(|secs| Op::Wait { secs }),
            1 => (100..400u32).prop_map(|secs| Op::Wait { secs }),
            6 => (0..2usize, 0..2u16, 0..6u8).prop_map(|(w, d, mac)| Op::Lookup { w, d, mac }),
            1 => (0..2u16, 0..6u8).prop_map(|(d, mac)| Op::Forget { d, mac }),
            1 => Just(Op::Age),
            1 => (0..3u16).prop_map(|port| Op::FlushPort { port }),
            1 => (0..2u16, 0..6u8, 0..3u16).prop_map(|(d, mac, port)| Op::Pin { d, mac, port }),
        ]
    }

    proptest::proptest! {
        /// Two workers through their caches and two workers straight to the table,
        /// the same history on two tables: every answer, and the tables at the end,
        /// are the same (a small table, so it also fills and refuses).
        #[test]
        fn answers_through_caches_are_the_tables(ops in proptest::collection::vec(op(), 1..200)) {
            let (cached, plain) = (Fdb::new(8, 300), Fdb::new(8, 300));
            let mut caches = [FdbCache::new(), FdbCache::new()];
            let mut now = 0u32;
            let vtep = |v: bool| v.then_some(Ipv4Addr::new(192, 0, 2, 2));
            for op in ops {
                match op {
                    Op::Learn { w, d, mac: m, port, vtep: v } => {
                        let (d, p) = (DomainId(d), PortId(port));
                        let (got, _) = caches[w].learn(&cached, d, mac(m), p, vtep(v), now);
                        proptest::prop_assert_eq!(got, plain.learn(d, mac(m), p, vtep(v), now));
                    }
                    Op::Lookup { w, d, mac: m } => {
                        let (got, _) = caches[w].lookup_via(&cached, DomainId(d), mac(m));
                        proptest::prop_assert_eq!(got, plain.lookup_via(DomainId(d), mac(m)));
                    }
                    Op::Forget { d, mac: m } => {
                        cached.forget(DomainId(d), mac(m));
                        plain.forget(DomainId(d), mac(m));
                    }
                    Op::Wait { secs } => now += secs,
                    Op::Age => {
                        proptest::prop_assert_eq!(cached.age(now), plain.age(now));
                    }
                    Op::FlushPort { port } => {
                        cached.flush_port(PortId(port));
                        plain.flush_port(PortId(port));
                    }
                    Op::Pin { d, mac: m, port } => {
                        cached.pin(DomainId(d), mac(m), PortId(port));
                        plain.pin(DomainId(d), mac(m), PortId(port));
                    }
                }
            }
            // The same entries, down to the second each MAC was last seen.
            let rows = |f: &Fdb| {
                let mut v = f.entries();
                v.sort_by_key(|r| (r.0, r.1.to_u64()));
                v
            };
            proptest::prop_assert_eq!(rows(&cached), rows(&plain));
        }
    }
}
