//! A worker's own cache in front of conntrack's tuple index: which entry each flow
//! it saw lately lives in, so that a packet of an established flow goes straight to
//! its entry without the index shard's lock.
//!
//! Conntrack finds a packet's flow in two steps ([`ConnTrack`](super::ConnTrack)): the tuple index, a
//! hash table split into shards each behind a lock, gives the entry's slot; the
//! entry, behind a lock of its own, holds the flow's state. The first step is the
//! same answer for every packet of a flow; only the second has work to do. So each
//! worker remembers, for the tuples it met lately, the slot and direction the index
//! gave and the slot's *generation* — conntrack gives a slot a new one each time it
//! holds a new flow ([`CtRef`](super::CtRef) is checked the same way). A packet whose
//! tuple is cached locks that slot alone, as it would after the index, and uses it
//! only if the slot still holds the same generation and a flow with that tuple;
//! otherwise (the flow expired, was evicted, was forgotten with its endpoint, or its
//! slot went to another flow) it asks the index as before. Removing an entry empties
//! its slot before taking its tuples out of the index, so a cached slot is never
//! used after the index has stopped leading to it.
//!
//! So the validation is per flow, not one count for the whole table: flows coming
//! and going — a SYN flood evicting unassured entries — leave every other flow's
//! cached slot valid, and no network can make another's cache useless. The entry's
//! own lock, its state machine, windows, counters and timeouts are as without the
//! cache. The cache has a fixed number of entries, made with the worker.

use super::conntrack::{CtSlot, Tuple};
use super::counters::counted;
use super::fdb_cache::Answered;

/// What the counters name this cache, in the place of a stage.
pub const NAME: &str = "ct-cache";

counted! {
    /// What a worker's conntrack cache counts.
    pub enum Event: Event in NAME {
        CtCacheHits => ("ct_cache_hits", "tracked packets whose flow the worker's own cache found, without the index's lock"),
        CtCacheMisses => ("ct_cache_misses", "packets looked up in conntrack's index: not in the worker's cache, or cached but gone"),
    }
}

/// The counter a lookup answered one way or the other moves.
#[inline]
pub(crate) fn cache_event(answered: Answered) -> Event {
    match answered {
        Answered::Cache => Event::CtCacheHits,
        Answered::Table => Event::CtCacheMisses,
    }
}

/// Entries of a worker's cache: a power of two. At most 28 bytes each, 14 KB a worker.
pub const SLOTS: usize = 512;

/// One cached index answer: the tuple, and where its flow was.
#[derive(Debug, Clone, Copy)]
struct Slot {
    tuple: Tuple,
    at: CtSlot,
}

/// One worker's cache of conntrack index answers. Never shared.
pub struct CtCache {
    slots: Box<[Option<Slot>]>,
}

impl Default for CtCache {
    fn default() -> Self {
        CtCache::new()
    }
}

#[inline]
fn index(t: &Tuple) -> usize {
    let mut h = u64::from(u32::from(t.src)) << 32 | u64::from(u32::from(t.dst));
    h ^= (u64::from(t.sport) << 16 | u64::from(t.dport)) << 8 | u64::from(t.proto.0);
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & (SLOTS - 1)
}

impl CtCache {
    /// An empty cache of [`SLOTS`] entries, allocated here once.
    pub fn new() -> CtCache {
        CtCache {
            slots: vec![None; SLOTS].into_boxed_slice(),
        }
    }

    /// Where the index last said the flow of `t` was, if this cache remembers.
    #[inline]
    pub(crate) fn get(&self, t: &Tuple) -> Option<CtSlot> {
        self.slots[index(t)]
            .as_ref()
            .filter(|s| s.tuple == *t)
            .map(|s| s.at)
    }

    /// Remembers that the index gave `at` for `t`.
    #[inline]
    pub(crate) fn put(&mut self, t: &Tuple, at: CtSlot) {
        self.slots[index(t)] = Some(Slot { tuple: *t, at });
    }

    /// Forgets `t` (its cached slot went stale).
    #[inline]
    pub(crate) fn forget(&mut self, t: &Tuple) {
        let s = &mut self.slots[index(t)];
        if s.is_some_and(|s| s.tuple == *t) {
            *s = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use std::net::Ipv4Addr;

    fn tuple(sport: u16) -> Tuple {
        Tuple {
            proto: IpProtocol::TCP,
            src: Ipv4Addr::new(10, 1, 0, 2),
            dst: Ipv4Addr::new(198, 51, 100, 2),
            sport,
            dport: 80,
        }
    }

    #[test]
    fn remembers_forgets_and_tells_tuples_apart() {
        let mut c = CtCache::new();
        let at = CtSlot::new_for_tests(3, 7);
        assert_eq!(c.get(&tuple(1)), None);
        c.put(&tuple(1), at);
        assert_eq!(c.get(&tuple(1)), Some(at));
        // Another tuple is not this one's, even when it lands on the same entry.
        let other = (2..u16::MAX)
            .find(|&p| index(&tuple(p)) == index(&tuple(1)))
            .expect("some port shares the entry");
        assert_eq!(c.get(&tuple(other)), None);
        // Forgetting another tuple leaves it; forgetting it empties the entry.
        c.forget(&tuple(other));
        assert_eq!(c.get(&tuple(1)), Some(at));
        c.forget(&tuple(1));
        assert_eq!(c.get(&tuple(1)), None);
        // The one put last on an entry is the one kept.
        c.put(&tuple(1), at);
        c.put(&tuple(other), CtSlot::new_for_tests(4, 1));
        assert_eq!(c.get(&tuple(1)), None);
        assert_eq!(c.get(&tuple(other)), Some(CtSlot::new_for_tests(4, 1)));
    }

    #[test]
    fn an_entry_is_small() {
        // What the module's doc says a worker's cache costs.
        assert!(std::mem::size_of::<Option<Slot>>() <= 28);
    }
}
