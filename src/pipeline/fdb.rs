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

use super::{DomainId, PortId};
use crate::wire::MacAddr;
use hashbrown::HashMap;

/// An FDB entry's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub port: PortId,
    /// Seconds (on the pipeline's clock) when the MAC was last seen as a source.
    pub last_seen: u32,
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
}

/// The forwarding database.
pub struct Fdb {
    map: HashMap<u64, FdbEntry, foldhash::fast::RandomState>,
    max: usize,
    aging_secs: u32,
}

#[inline]
fn key(domain: DomainId, mac: MacAddr) -> u64 {
    (u64::from(domain.0) << 48) | mac.to_u64()
}

impl Fdb {
    /// A table of at most `max` entries that forgets a MAC `aging_secs` after it was
    /// last seen.
    pub fn new(max: usize, aging_secs: u32) -> Fdb {
        Fdb {
            map: HashMap::with_capacity_and_hasher(max, Default::default()),
            max,
            aging_secs,
        }
    }

    /// Records that `mac` was seen as a source on `port` at second `now`.
    #[inline]
    pub fn learn(&mut self, domain: DomainId, mac: MacAddr, port: PortId, now: u32) -> Learn {
        let k = key(domain, mac);
        if let Some(e) = self.map.get_mut(&k) {
            // Refreshing is the common case: one lookup, one store (skipped when the
            // second has not changed, to keep the cache line clean).
            if e.port == port {
                if e.last_seen != now {
                    e.last_seen = now;
                }
                return Learn::Refreshed;
            }
            let from = e.port;
            e.port = port;
            e.last_seen = now;
            return Learn::Moved { from };
        }
        if self.map.len() >= self.max {
            return Learn::TableFull;
        }
        self.map.insert(
            k,
            FdbEntry {
                port,
                last_seen: now,
            },
        );
        Learn::New
    }

    /// The port `mac` was last seen on in `domain`.
    #[inline]
    pub fn lookup(&self, domain: DomainId, mac: MacAddr) -> Option<PortId> {
        self.map.get(&key(domain, mac)).map(|e| e.port)
    }

    /// Forgets entries not seen for the aging time; returns how many went.
    pub fn age(&mut self, now: u32) -> usize {
        let before = self.map.len();
        let aging = self.aging_secs;
        self.map
            .retain(|_, e| now.saturating_sub(e.last_seen) < aging);
        before - self.map.len()
    }

    /// Forgets every MAC learned on `port` (when the port goes away).
    pub fn flush_port(&mut self, port: PortId) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| e.port != port);
        before - self.map.len()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.max
    }

    pub fn aging_secs(&self) -> u32 {
        self.aging_secs
    }

    /// Every entry as (domain, MAC, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (DomainId, MacAddr, FdbEntry)> + '_ {
        self.map
            .iter()
            .map(|(&k, &e)| (DomainId((k >> 48) as u16), MacAddr::from_u64(k), e))
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
        let mut f = Fdb::new(16, 300);
        assert_eq!(f.learn(D0, mac(1), PortId(0), 10), Learn::New);
        assert_eq!(f.learn(D0, mac(1), PortId(0), 11), Learn::Refreshed);
        assert_eq!(
            f.learn(D0, mac(1), PortId(2), 12),
            Learn::Moved { from: PortId(0) }
        );
        assert_eq!(f.lookup(D0, mac(1)), Some(PortId(2)));
        // The same MAC in another domain is another entry.
        assert_eq!(f.lookup(D1, mac(1)), None);
        assert_eq!(f.learn(D1, mac(1), PortId(5), 12), Learn::New);
        assert_eq!(f.len(), 2);
        let mut rows: Vec<_> = f.iter().collect();
        rows.sort_by_key(|r| r.0);
        assert_eq!(
            rows[0],
            (
                D0,
                mac(1),
                FdbEntry {
                    port: PortId(2),
                    last_seen: 12
                }
            )
        );
        assert_eq!(rows[1].0, D1);
    }

    #[test]
    fn ages_by_scan_with_injected_time() {
        let mut f = Fdb::new(16, 300);
        f.learn(D0, mac(1), PortId(0), 1000);
        f.learn(D0, mac(2), PortId(0), 1200);
        assert_eq!(f.age(1299), 0);
        assert_eq!(f.age(1300), 1, "mac 1 is 300 s old");
        assert_eq!(f.lookup(D0, mac(1)), None);
        assert_eq!(f.lookup(D0, mac(2)), Some(PortId(0)));
        // Seeing it again resets its age.
        f.learn(D0, mac(2), PortId(0), 1450);
        assert_eq!(f.age(1700), 0);
        assert_eq!(f.age(1750), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn full_table_stops_learning_but_keeps_known_macs() {
        let mut f = Fdb::new(2, 300);
        assert_eq!(f.learn(D0, mac(1), PortId(0), 0), Learn::New);
        assert_eq!(f.learn(D0, mac(2), PortId(1), 0), Learn::New);
        assert_eq!(f.learn(D0, mac(3), PortId(1), 0), Learn::TableFull);
        assert_eq!(f.lookup(D0, mac(3)), None);
        // Known MACs still refresh and move when the table is full.
        assert_eq!(f.learn(D0, mac(1), PortId(0), 1), Learn::Refreshed);
        assert_eq!(
            f.learn(D0, mac(2), PortId(0), 1),
            Learn::Moved { from: PortId(1) }
        );
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn flush_port_forgets_only_that_port() {
        let mut f = Fdb::new(8, 300);
        f.learn(D0, mac(1), PortId(0), 0);
        f.learn(D0, mac(2), PortId(1), 0);
        assert_eq!(f.flush_port(PortId(0)), 1);
        assert_eq!(f.lookup(D0, mac(2)), Some(PortId(1)));
    }
}
