//! Per-network shares of a table that every network uses: how many entries each
//! network holds, against the most it may hold.
//!
//! The FDB and conntrack count their entries per network here, beside the table's
//! global bound, so a flood in one network fills that network's share and never
//! another's. The counters are atomics, so workers take and give back places without
//! a lock of their own. (The neighbor table keeps its shares under the lock it already
//! holds.)

use super::DomainId;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Entries per network, and each network's most. A network past the end of the list,
/// or whose share is `usize::MAX`, has no share of its own.
#[derive(Debug, Default)]
pub(crate) struct DomainShares {
    used: Box<[AtomicUsize]>,
    max: Box<[usize]>,
}

impl DomainShares {
    /// Network `i` may hold at most `max[i]` entries.
    pub(crate) fn new(max: impl IntoIterator<Item = usize>) -> DomainShares {
        let max: Box<[usize]> = max.into_iter().collect();
        DomainShares {
            used: max.iter().map(|_| AtomicUsize::new(0)).collect(),
            max,
        }
    }

    /// Takes one place in `d`'s share; false when the share is full.
    pub(crate) fn try_take(&self, d: DomainId) -> bool {
        let (Some(used), Some(&max)) = (self.used.get(d.index()), self.max.get(d.index())) else {
            return true;
        };
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
            .copied()
            .filter(|&m| m != usize::MAX)
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
        // Past the end of the list: no share at all.
        assert!(s.try_take(DomainId(7)));
        assert_eq!(s.used(DomainId(7)), 0);
    }
}
