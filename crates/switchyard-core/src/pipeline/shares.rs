//! Per-network shares of a table that every network uses: how many entries each
//! network holds, against the most it may hold.
//!
//! The FDB and conntrack count their entries per network here, beside the table's
//! global bound, so a flood in one network fills that network's share and never
//! another's. The counters are atomics, so workers take and give back places without
//! a lock of their own. (The neighbor table keeps its shares under the lock it already
//! holds.)
//!
//! Networks come and go while the switch runs, so there is room for every network id
//! up to [`MAX_DOMAINS`] from the start, and each network's most is an atomic too:
//! [`DomainShares::set_max`] changes it while workers take and give back places. A
//! share set below what the network holds takes nothing from it: the network keeps
//! its entries and takes no new one until it is under its share again.

use super::{DomainId, MAX_DOMAINS};
use std::sync::atomic::{AtomicUsize, Ordering};

/// No share of its own: only the table's bound.
const NONE: usize = usize::MAX;

/// Entries per network, and each network's most. A network past [`MAX_DOMAINS`], or
/// whose share is `usize::MAX`, has no share of its own.
#[derive(Debug)]
pub(crate) struct DomainShares {
    used: Box<[AtomicUsize]>,
    max: Box<[AtomicUsize]>,
}

impl Default for DomainShares {
    fn default() -> Self {
        DomainShares::new([])
    }
}

impl DomainShares {
    /// Heap bytes a set of shares takes: two counters for each of [`MAX_DOMAINS`]
    /// networks.
    pub(crate) const BYTES: usize = 2 * MAX_DOMAINS * std::mem::size_of::<AtomicUsize>();

    /// Network `i` may hold at most `max[i]` entries; networks not listed have no
    /// share of their own until [`DomainShares::set_max`] gives them one.
    pub(crate) fn new(max: impl IntoIterator<Item = usize>) -> DomainShares {
        let s = DomainShares {
            used: (0..MAX_DOMAINS).map(|_| AtomicUsize::new(0)).collect(),
            max: (0..MAX_DOMAINS).map(|_| AtomicUsize::new(NONE)).collect(),
        };
        for (m, slot) in max.into_iter().zip(s.max.iter()) {
            slot.store(m, Ordering::Relaxed);
        }
        s
    }

    /// Gives network `d` a share of at most `max` entries (`None`: no share of its
    /// own). Entries it holds beyond a smaller share stay; it takes no new one until
    /// it is under the share.
    pub(crate) fn set_max(&self, d: DomainId, max: Option<usize>) {
        if let Some(m) = self.max.get(d.index()) {
            m.store(max.unwrap_or(NONE), Ordering::Relaxed);
        }
    }

    /// Takes one place in `d`'s share; false when the share is full.
    pub(crate) fn try_take(&self, d: DomainId) -> bool {
        let (Some(used), Some(max)) = (self.used.get(d.index()), self.max.get(d.index())) else {
            return true;
        };
        let max = max.load(Ordering::Relaxed);
        used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
    }

    /// Gives back a place [`DomainShares::try_take`] took.
    pub(crate) fn give_back(&self, d: DomainId) {
        if let Some(used) = self.used.get(d.index()) {
            used.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Entries `d` holds now.
    pub(crate) fn used(&self, d: DomainId) -> usize {
        self.used
            .get(d.index())
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// The most `d` may hold, if it has a share of its own.
    pub(crate) fn max(&self, d: DomainId) -> Option<usize> {
        self.max
            .get(d.index())
            .map(|m| m.load(Ordering::Relaxed))
            .filter(|&m| m != NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_fills_gives_back_and_leaves_others_alone() {
        let s = DomainShares::new([1, usize::MAX]);
        assert!(s.try_take(DomainId(0)));
        assert!(!s.try_take(DomainId(0)), "full");
        assert_eq!(s.used(DomainId(0)), 1);
        s.give_back(DomainId(0));
        assert!(s.try_take(DomainId(0)));
        // No share of its own: always room, still counted.
        assert!((0..5).all(|_| s.try_take(DomainId(1))));
        assert_eq!((s.used(DomainId(1)), s.max(DomainId(1))), (5, None));
        // Not listed: no share of its own, counted all the same.
        assert!(s.try_take(DomainId(7)));
        assert_eq!((s.used(DomainId(7)), s.max(DomainId(7))), (1, None));
        // Past the ids there is room for: no share at all, nothing counted.
        assert!(s.try_take(DomainId::NONE));
        assert_eq!(s.used(DomainId::NONE), 0);
    }

    #[test]
    fn a_share_resized_below_its_use_keeps_its_entries_and_takes_none_until_under() {
        let s = DomainShares::new([4]);
        let d = DomainId(0);
        assert!((0..4).all(|_| s.try_take(d)));
        s.set_max(d, Some(2));
        assert_eq!((s.used(d), s.max(d)), (4, Some(2)), "nothing taken away");
        assert!(!s.try_take(d), "over its share: no new place");
        s.give_back(d);
        s.give_back(d);
        assert!(!s.try_take(d), "at its share: still none");
        s.give_back(d);
        assert!(s.try_take(d), "under it: a place again");
        assert!(!s.try_take(d));
        // Grown, and a network given a share later, at run time.
        s.set_max(d, Some(3));
        assert!(s.try_take(d));
        let later = DomainId(100);
        assert!(s.try_take(later));
        s.set_max(later, Some(1));
        assert!(!s.try_take(later));
        s.set_max(later, None);
        assert!(s.try_take(later));
        assert_eq!(s.used(later), 2);
    }
}
