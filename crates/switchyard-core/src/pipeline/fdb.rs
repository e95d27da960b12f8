//! The forwarding database (FDB): which port each MAC address was last seen on, per
//! bridge domain — the "MAC table" of a learning bridge (IEEE 802.1D).
//!
//! Key and value are 8 bytes each, as in VPP's l2fib: the key packs the 16-bit domain
//! and the 48-bit MAC into one `u64`; the value holds the port and the second the MAC
//! was last seen. The table is bounded: its memory is reserved up front for `max`
//! entries and, once full, new MACs are simply not learned (the caller counts that
//! and floods their traffic instead) — a MAC flood cannot grow memory. Entries age by
//! a periodic scan ([`Fdb::age`]), not per packet, as the kernel bridge and VPP do;
//! between scans a lookup may still return an entry a fraction of a second past its
//! age, which is harmless.
//!
//! Besides the global bound each bridge domain has its share ([`Fdb::with_shares`]):
//! a MAC flood in one network fills that network's share and no other's. An entry may
//! be *pinned* ([`Fdb::pin`]): an endpoint's own MAC bound to its port by the
//! configuration, which never moves to another port and never ages.
//!
//! On an overlay network (VXLAN) one port stands for every remote host: a MAC
//! learned there also records the remote tunnel endpoint (VTEP) it came from, so
//! that frames to it are sent to that host alone — the kernel's `bridge fdb ... dst`.
//! The VTEP is part of where a MAC is: one seen behind another VTEP has moved, even
//! on the same port.
//!
//! Each network has a change count ([`Fdb::generation`]), raised under the shard
//! lock by every change that could make an answer given earlier wrong: a MAC moved
//! (to another port or VTEP), pinned, forgotten, aged out or flushed. Learning a new
//! MAC and refreshing a known one raise nothing. Workers keep the answers they got
//! in caches of their own while the count stays the same (`fdb_cache.rs`).

use super::events::Report;
use super::shares::DomainShares;
use super::{lock, DomainId, PortId, MAX_DOMAINS};
use crate::wire::MacAddr;
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// An FDB entry's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub port: PortId,
    /// Seconds (on the pipeline clock) when the MAC was last seen as a source.
    pub last_seen: u32,
    /// Bound to its port by the configuration (an endpoint's own MAC on a network
    /// that knows its endpoints): never moves, never ages.
    pub pinned: bool,
    /// The remote VTEP behind which the MAC was seen, when `port` is an overlay
    /// network's tunnel port; `None` for a MAC on a local port.
    pub vtep: Option<Ipv4Addr>,
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// A new MAC, now in the table.
    New,
    /// Known on this port; its age was reset.
    Refreshed,
    /// Known on another port; it moved here (a host moved, or a loop).
    Moved { from: PortId },
    /// Unknown and the table is full: not learned.
    TableFull,
    /// Unknown and the network's share of the table is full: not learned.
    DomainFull,
    /// Bound to another port (an endpoint's own MAC): not moved.
    Pinned { owner: PortId },
}

/// Shards the table is split into; workers contend only when they touch the same one.
const SHARDS: usize = 16;

type Shard = HashMap<u64, FdbEntry, foldhash::fast::RandomState>;

/// The forwarding database, shared by the dataplane's workers: the table is split
/// into shards, each behind its own short-held lock, so there is no global lock and
/// two workers only wait for each other when they touch the same shard at once.
pub struct Fdb {
    shards: Box<[Mutex<Shard>]>,
    len: AtomicUsize,
    max: usize,
    aging_secs: u32,
    /// Entries per bridge domain, and each domain's share: one domain's MAC flood
    /// fills its share, never the others'. Domains not given one have no share
    /// of their own (only the global bound); shares change at run time
    /// ([`Fdb::set_share`]).
    shares: DomainShares,
    /// Per network, the count of changes that could make an answer wrong (see the
    /// module's doc); networks past [`MAX_DOMAINS`] share the last one.
    generations: Box<[AtomicU64]>,
}

/// The FDB key: the domain in the top 16 bits, the MAC below.
#[inline]
pub(crate) fn key(domain: DomainId, mac: MacAddr) -> u64 {
    (u64::from(domain.0) << 48) | mac.to_u64()
}

impl Fdb {
    /// Bytes a table of at most `max` entries allocates (see [`Fdb::new`]).
    pub fn bytes_for(max: usize) -> usize {
        let per_shard = max.div_ceil(SHARDS) * 2;
        let item = std::mem::size_of::<(u64, FdbEntry)>();
        SHARDS
            * (std::mem::size_of::<Mutex<Shard>>()
                + super::memory::hash_index_bytes(per_shard, item))
            + super::shares::DomainShares::BYTES
            + Fdb::GENERATION_BYTES
    }

    /// Bytes of the per-network change counts, whatever the table's size.
    pub const GENERATION_BYTES: usize = (MAX_DOMAINS + 1) * std::mem::size_of::<AtomicU64>();

    /// A table of at most `max` entries that forgets a MAC `aging_secs` after it was
    /// last seen.
    pub fn new(max: usize, aging_secs: u32) -> Fdb {
        Fdb::with_shares(max, aging_secs, Vec::new())
    }

    /// A table of at most `max` entries, of which domain `i` may hold at most
    /// `shares[i]` (domains past the list: no share of their own, until
    /// [`Fdb::set_share`] gives them one).
    pub fn with_shares(max: usize, aging_secs: u32, shares: Vec<usize>) -> Fdb {
        // Room for twice an even share in every shard, so a fair spread of MACs never
        // makes a shard grow on the hot path.
        let per_shard = max.div_ceil(SHARDS) * 2;
        Fdb {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(HashMap::with_capacity_and_hasher(
                        per_shard,
                        Default::default(),
                    ))
                })
                .collect(),
            len: AtomicUsize::new(0),
            max,
            aging_secs,
            shares: DomainShares::new(shares),
            // From 1: a cache's empty entry (count 0) is never current.
            generations: (0..=MAX_DOMAINS).map(|_| AtomicU64::new(1)).collect(),
        }
    }

    #[inline]
    fn generation_of(&self, domain: DomainId) -> &AtomicU64 {
        &self.generations[domain.index().min(MAX_DOMAINS)]
    }

    /// The count of changes to `domain`'s entries that could make an earlier answer
    /// wrong: an answer read when it was `n` is still the table's while it is `n`.
    #[inline]
    pub fn generation(&self, domain: DomainId) -> u64 {
        self.generation_of(domain).load(Ordering::Acquire)
    }

    /// Counts a change to an entry of `domain`. Called with the entry's shard
    /// locked, so that an answer read under that lock, with the count read under it
    /// too, is either the changed one or read at an older count.
    #[inline]
    fn changed(&self, domain: DomainId) {
        self.generation_of(domain).fetch_add(1, Ordering::Release);
    }

    /// Reserves a place for a new entry of `domain`: in the table, then in its share.
    fn reserve(&self, domain: DomainId) -> Result<(), Learn> {
        if self.len.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Learn::TableFull);
        }
        if !self.shares.try_take(domain) {
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Learn::DomainFull);
        }
        Ok(())
    }

    /// Binds `mac` to `port` in `domain` for good: it is not learned on any other
    /// port and does not age. Returns false if there was no room.
    pub fn pin(&self, domain: DomainId, mac: MacAddr, port: PortId) -> bool {
        let k = key(domain, mac);
        let mut shard = lock(self.shard(k));
        if shard.get(&k).is_none() && self.reserve(domain).is_err() {
            return false;
        }
        self.changed(domain);
        shard.insert(
            k,
            FdbEntry {
                port,
                last_seen: 0,
                pinned: true,
                vtep: None,
            },
        );
        true
    }

    /// Gives `domain` a share of at most `max` entries (`None`: only the table's
    /// bound), while workers learn. A domain over a smaller share keeps its entries
    /// and learns no new MAC until it is under it.
    pub fn set_share(&self, domain: DomainId, max: Option<usize>) {
        self.shares.set_max(domain, max);
    }

    /// Entries of `domain` now.
    pub fn domain_len(&self, domain: DomainId) -> usize {
        self.shares.used(domain)
    }

    /// The most entries `domain` may hold.
    pub fn domain_capacity(&self, domain: DomainId) -> usize {
        self.shares.max(domain).unwrap_or(self.max)
    }

    #[inline]
    fn shard(&self, k: u64) -> &Mutex<Shard> {
        // Fibonacci hashing of the key picks the shard (the map hashes it again inside).
        &self.shards[(k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS]
    }

    /// Records that `mac` was seen as a source on `port` (behind remote VTEP `vtep`,
    /// for a tunnel port) at second `now`.
    #[inline]
    pub fn learn(
        &self,
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
        vtep: Option<Ipv4Addr>,
        now: u32,
    ) -> Learn {
        self.learn_generation(domain, mac, port, vtep, now).0
    }

    /// As [`Fdb::learn`], with `domain`'s [`Fdb::generation`] read under the same
    /// lock after the change: the entry is `(port, vtep)` as of that count.
    #[inline]
    pub(crate) fn learn_generation(
        &self,
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
        vtep: Option<Ipv4Addr>,
        now: u32,
    ) -> (Learn, u64) {
        let k = key(domain, mac);
        let mut shard = lock(self.shard(k));
        let result = match shard.get_mut(&k) {
            // Refreshing is the common case: one lookup, one store (skipped when the
            // second has not changed, to keep the cache line clean).
            Some(e) if e.port == port && e.vtep == vtep => {
                if e.last_seen != now && !e.pinned {
                    e.last_seen = now;
                }
                Learn::Refreshed
            }
            Some(e) if e.pinned => Learn::Pinned { owner: e.port },
            Some(e) => {
                let from = e.port;
                e.port = port;
                e.vtep = vtep;
                e.last_seen = now;
                self.changed(domain);
                Learn::Moved { from }
            }
            // Reserve a place first, so that workers learning at once never overshoot.
            None => match self.reserve(domain) {
                Err(full) => full,
                Ok(()) => {
                    shard.insert(
                        k,
                        FdbEntry {
                            port,
                            last_seen: now,
                            pinned: false,
                            vtep,
                        },
                    );
                    Learn::New
                }
            },
        };
        (result, self.generation(domain))
    }

    /// What [`Fdb::learn`] would do, changing nothing (for what-if traces): the same
    /// answer, read under the same shard lock, with no entry added, moved or refreshed.
    pub fn would_learn(
        &self,
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
        vtep: Option<Ipv4Addr>,
    ) -> Learn {
        let k = key(domain, mac);
        let shard = lock(self.shard(k));
        if let Some(e) = shard.get(&k) {
            return if e.port == port && e.vtep == vtep {
                Learn::Refreshed
            } else if e.pinned {
                Learn::Pinned { owner: e.port }
            } else {
                Learn::Moved { from: e.port }
            };
        }
        if self.len.load(Ordering::Relaxed) >= self.max {
            Learn::TableFull
        } else if self
            .shares
            .max(domain)
            .is_some_and(|max| self.shares.used(domain) >= max)
        {
            Learn::DomainFull
        } else {
            Learn::New
        }
    }

    /// The port `mac` was last seen on in `domain`.
    #[inline]
    pub fn lookup(&self, domain: DomainId, mac: MacAddr) -> Option<PortId> {
        let k = key(domain, mac);
        lock(self.shard(k)).get(&k).map(|e| e.port)
    }

    /// The port `mac` was last seen on in `domain`, and the remote VTEP behind it
    /// when that port is a tunnel.
    #[inline]
    pub fn lookup_via(&self, domain: DomainId, mac: MacAddr) -> Option<(PortId, Option<Ipv4Addr>)> {
        let k = key(domain, mac);
        lock(self.shard(k)).get(&k).map(|e| (e.port, e.vtep))
    }

    /// As [`Fdb::lookup_via`], with `domain`'s [`Fdb::generation`] read under the
    /// same lock: the answer is the table's as of that count.
    #[inline]
    pub(crate) fn lookup_via_generation(
        &self,
        domain: DomainId,
        mac: MacAddr,
    ) -> Option<(PortId, Option<Ipv4Addr>, u64)> {
        let k = key(domain, mac);
        let shard = lock(self.shard(k));
        shard
            .get(&k)
            .map(|e| (e.port, e.vtep, self.generation(domain)))
    }

    /// Forgets entries not seen for the aging time; returns how many went.
    pub fn age(&self, now: u32) -> usize {
        self.age_reporting(now, Report::off())
    }

    /// As [`Fdb::age`], reporting every entry that went (domain, MAC, its port).
    pub fn age_reporting(
        &self,
        now: u32,
        report: Report<'_, (DomainId, MacAddr, PortId)>,
    ) -> usize {
        let aging = self.aging_secs;
        self.remove_where(
            |_, e| !e.pinned && now.saturating_sub(e.last_seen) >= aging,
            report,
        )
    }

    /// Forgets every MAC learned on `port`, pinned or not (when the port goes away).
    pub fn flush_port(&self, port: PortId) -> usize {
        self.remove_where(|_, e| e.port == port, Report::off())
    }

    /// Forgets every MAC of `domain` (when the network goes away).
    pub fn flush_domain(&self, domain: DomainId) -> usize {
        self.remove_where(|d, _| d == domain, Report::off())
    }

    /// Forgets `mac` in `domain`, wherever it was seen; true if it was known.
    pub fn forget(&self, domain: DomainId, mac: MacAddr) -> bool {
        let k = key(domain, mac);
        {
            let mut shard = lock(self.shard(k));
            if shard.remove(&k).is_none() {
                return false;
            }
            self.changed(domain);
        }
        self.shares.give_back(domain);
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    fn remove_where(
        &self,
        doomed: impl Fn(DomainId, &FdbEntry) -> bool,
        mut report: Report<'_, (DomainId, MacAddr, PortId)>,
    ) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut s = lock(s);
            s.retain(|&k, e| {
                let domain = DomainId((k >> 48) as u16);
                if !doomed(domain, e) {
                    return true;
                }
                self.changed(domain);
                self.shares.give_back(domain);
                report.emit(|| (domain, MacAddr::from_u64(k), e.port));
                removed += 1;
                false
            });
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
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

    pub fn aging_secs(&self) -> u32 {
        self.aging_secs
    }

    /// Every entry as (domain, MAC, value), in no particular order.
    pub fn entries(&self) -> Vec<(DomainId, MacAddr, FdbEntry)> {
        let mut v = Vec::with_capacity(self.len());
        for s in self.shards.iter() {
            v.extend(
                lock(s)
                    .iter()
                    .map(|(&k, &e)| (DomainId((k >> 48) as u16), MacAddr::from_u64(k), e)),
            );
        }
        v
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
    fn learn_refresh_move() {
        let f = Fdb::new(16, 300);
        assert_eq!(f.learn(D0, mac(1), PortId(0), None, 10), Learn::New);
        assert_eq!(f.learn(D0, mac(1), PortId(0), None, 11), Learn::Refreshed);
        assert_eq!(
            f.learn(D0, mac(1), PortId(2), None, 12),
            Learn::Moved { from: PortId(0) }
        );
        assert_eq!(f.lookup(D0, mac(1)), Some(PortId(2)));
        // The same MAC in another domain is another entry.
        assert_eq!(f.lookup(D1, mac(1)), None);
        assert_eq!(f.learn(D1, mac(1), PortId(5), None, 12), Learn::New);
        assert_eq!(f.len(), 2);
        let mut rows: Vec<_> = f.entries();
        rows.sort_by_key(|r| r.0);
        assert_eq!(
            rows[0],
            (
                D0,
                mac(1),
                FdbEntry {
                    port: PortId(2),
                    last_seen: 12,
                    pinned: false,
                    vtep: None,
                }
            )
        );
        assert_eq!(rows[1].0, D1);
    }

    #[test]
    fn ages_by_scan_with_injected_time() {
        let f = Fdb::new(16, 300);
        f.learn(D0, mac(1), PortId(0), None, 1000);
        f.learn(D0, mac(2), PortId(0), None, 1200);
        assert_eq!(f.age(1299), 0);
        assert_eq!(f.age(1300), 1, "mac 1 is 300 s old");
        assert_eq!(f.lookup(D0, mac(1)), None);
        assert_eq!(f.lookup(D0, mac(2)), Some(PortId(0)));
        // Seeing it again resets its age.
        f.learn(D0, mac(2), PortId(0), None, 1450);
        assert_eq!(f.age(1700), 0);
        assert_eq!(f.age(1750), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn full_table_stops_learning_but_keeps_known_macs() {
        let f = Fdb::new(2, 300);
        assert_eq!(f.learn(D0, mac(1), PortId(0), None, 0), Learn::New);
        assert_eq!(f.learn(D0, mac(2), PortId(1), None, 0), Learn::New);
        assert_eq!(f.learn(D0, mac(3), PortId(1), None, 0), Learn::TableFull);
        assert_eq!(f.lookup(D0, mac(3)), None);
        // Known MACs still refresh and move when the table is full.
        assert_eq!(f.learn(D0, mac(1), PortId(0), None, 1), Learn::Refreshed);
        assert_eq!(
            f.learn(D0, mac(2), PortId(0), None, 1),
            Learn::Moved { from: PortId(1) }
        );
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a_domain_fills_its_share_and_no_more() {
        let f = Fdb::with_shares(4, 300, vec![2, 2]);
        assert_eq!(f.learn(D0, mac(1), PortId(0), None, 0), Learn::New);
        assert_eq!(f.learn(D0, mac(2), PortId(0), None, 0), Learn::New);
        assert_eq!(f.learn(D0, mac(3), PortId(0), None, 0), Learn::DomainFull);
        // The other domain still has its share.
        assert_eq!(f.learn(D1, mac(3), PortId(1), None, 0), Learn::New);
        assert_eq!((f.domain_len(D0), f.domain_len(D1), f.len()), (2, 1, 3));
        // Aging gives the share back.
        assert_eq!(f.age(300), 3);
        assert_eq!((f.domain_len(D0), f.len()), (0, 0));
        assert_eq!(f.learn(D0, mac(3), PortId(0), None, 301), Learn::New);
    }

    #[test]
    fn pinned_entries_neither_move_nor_age() {
        let f = Fdb::new(4, 300);
        assert!(f.pin(D0, mac(1), PortId(0)));
        assert_eq!(
            f.learn(D0, mac(1), PortId(3), None, 5),
            Learn::Pinned { owner: PortId(0) }
        );
        assert_eq!(f.lookup(D0, mac(1)), Some(PortId(0)));
        assert_eq!(f.learn(D0, mac(1), PortId(0), None, 5), Learn::Refreshed);
        assert_eq!(f.age(10_000), 0);
        assert_eq!(f.lookup(D0, mac(1)), Some(PortId(0)));
    }

    #[test]
    fn a_mac_behind_another_vtep_has_moved() {
        let f = Fdb::new(4, 300);
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3));
        assert_eq!(f.learn(D0, mac(1), PortId(7), Some(a), 0), Learn::New);
        assert_eq!(f.lookup_via(D0, mac(1)), Some((PortId(7), Some(a))));
        assert_eq!(f.learn(D0, mac(1), PortId(7), Some(a), 1), Learn::Refreshed);
        assert_eq!(
            f.learn(D0, mac(1), PortId(7), Some(b), 2),
            Learn::Moved { from: PortId(7) }
        );
        assert_eq!(f.lookup_via(D0, mac(1)), Some((PortId(7), Some(b))));
        assert_eq!(
            f.would_learn(D0, mac(1), PortId(7), Some(a)),
            Learn::Moved { from: PortId(7) }
        );
        // Back on a local port: no VTEP any more.
        assert_eq!(
            f.learn(D0, mac(1), PortId(1), None, 3),
            Learn::Moved { from: PortId(7) }
        );
        assert_eq!(f.lookup_via(D0, mac(1)), Some((PortId(1), None)));
        // Remote MACs age like local ones.
        f.learn(D0, mac(2), PortId(7), Some(a), 3);
        assert_eq!(f.age(303), 2);
    }

    #[test]
    fn flush_port_forgets_only_that_port() {
        let f = Fdb::new(8, 300);
        f.learn(D0, mac(1), PortId(0), None, 0);
        f.learn(D0, mac(2), PortId(1), None, 0);
        assert_eq!(f.flush_port(PortId(0)), 1);
        assert_eq!(f.lookup(D0, mac(2)), Some(PortId(1)));
    }

    #[test]
    fn flush_domain_and_forget_give_the_share_back() {
        let f = Fdb::with_shares(8, 300, vec![2, 2]);
        f.learn(D0, mac(1), PortId(0), None, 0);
        assert!(f.pin(D0, mac(2), PortId(1)));
        f.learn(D1, mac(1), PortId(2), None, 0);
        assert_eq!(f.flush_domain(D0), 2, "pinned entries too");
        assert_eq!((f.domain_len(D0), f.domain_len(D1), f.len()), (0, 1, 1));
        assert!(f.forget(D1, mac(1)));
        assert!(!f.forget(D1, mac(1)));
        assert_eq!((f.domain_len(D1), f.len()), (0, 0));
    }

    #[test]
    fn a_share_shrunk_below_its_use_keeps_its_macs_and_learns_none_until_under() {
        let f = Fdb::with_shares(8, 300, vec![3]);
        for n in 1..=3 {
            assert_eq!(f.learn(D0, mac(n), PortId(0), None, 0), Learn::New);
        }
        f.set_share(D0, Some(1));
        assert_eq!(f.domain_capacity(D0), 1);
        assert_eq!(f.domain_len(D0), 3, "nothing forgotten");
        assert_eq!(f.learn(D0, mac(2), PortId(0), None, 1), Learn::Refreshed);
        assert_eq!(f.learn(D0, mac(4), PortId(0), None, 1), Learn::DomainFull);
        assert!(f.forget(D0, mac(1)) && f.forget(D0, mac(2)));
        assert_eq!(f.learn(D0, mac(4), PortId(0), None, 1), Learn::DomainFull);
        assert!(f.forget(D0, mac(3)));
        assert_eq!(f.learn(D0, mac(4), PortId(0), None, 1), Learn::New);
        // A network given a share at run time.
        f.set_share(D1, Some(1));
        assert_eq!(f.learn(D1, mac(1), PortId(1), None, 1), Learn::New);
        assert_eq!(f.learn(D1, mac(2), PortId(1), None, 1), Learn::DomainFull);
    }
}
