//! What the tables cost at their maximum, before a single packet flows.
//!
//! Every table is bounded. The FDB and the neighbor table are allocated up front (so a
//! flood never makes switchyard allocate); conntrack grows with use, in chunks, up to its
//! maximum. Either way the size in the config bounds the memory a table takes. These
//! functions compute that memory from the types the tables are made of
//! (`size_of` of their entries, the hash index laid out as hashbrown lays it out), so
//! `switchyard check` can print it and the config can refuse what would not fit,
//! and so the figures follow any change to an entry type.

use super::Spec;

/// Bytes of a hashbrown map with room for `capacity` items of `item` bytes: a power of
/// two of buckets at a load of at most 7/8, each bucket an item and one control byte,
/// plus one group of trailing control bytes.
pub(crate) fn hash_index_bytes(capacity: usize, item: usize) -> usize {
    const GROUP: usize = 16;
    let buckets = if capacity < 8 {
        8
    } else {
        (capacity.saturating_mul(8) / 7).next_power_of_two()
    };
    buckets.saturating_mul(item + 1).saturating_add(GROUP)
}

/// The memory the tables of a switch built from a spec take at their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMemory {
    pub fdb_entries: usize,
    pub fdb_bytes: usize,
    pub neighbor_entries: usize,
    /// Neighbor entries and the buffers of packets held for unresolved next hops.
    pub neighbor_bytes: usize,
    pub held_packets: usize,
    pub conntrack_entries: usize,
    pub conntrack_bytes: usize,
}

impl TableMemory {
    /// What [`super::Pipeline::new`] allocates for the tables of `spec`.
    pub fn of(spec: &Spec) -> TableMemory {
        // The table is made for its maximum even without an external network (and so
        // without a flow to track): one may be added while the switch runs. Its
        // memory is taken only as flows come.
        let conntrack = spec.nat.conntrack_max.max(1);
        TableMemory {
            fdb_entries: spec.fdb_max,
            fdb_bytes: super::Fdb::bytes_for(spec.fdb_max),
            neighbor_entries: spec.neighbor.max,
            neighbor_bytes: super::NeighborTable::bytes_for(&spec.neighbor),
            held_packets: spec.neighbor.held_max,
            conntrack_entries: conntrack,
            conntrack_bytes: super::ConnTrack::bytes_for(conntrack),
        }
    }

    pub fn total_bytes(&self) -> usize {
        self.fdb_bytes
            .saturating_add(self.neighbor_bytes)
            .saturating_add(self.conntrack_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_index_grows_by_powers_of_two_at_seven_eighths() {
        assert_eq!(hash_index_bytes(7, 8), 8 * 9 + 16);
        assert_eq!(hash_index_bytes(14, 8), 16 * 9 + 16);
        assert_eq!(hash_index_bytes(15, 8), 32 * 9 + 16);
    }

    #[test]
    fn table_memory_grows_with_the_sizes_and_follows_the_entry_types() {
        use crate::pipeline::{DomainSpec, NeighborConfig, Spec};
        let mut spec = Spec::new(Vec::<DomainSpec>::new(), Vec::new());
        let small = TableMemory::of(&spec);
        // No external network yet: one may come at runtime, so the maximum counts.
        assert_eq!(small.conntrack_entries, spec.nat.conntrack_max);
        spec.fdb_max *= 4;
        spec.neighbor = NeighborConfig {
            max: spec.neighbor.max * 4,
            ..spec.neighbor
        };
        let big = TableMemory::of(&spec);
        // The per-network counters (shares, change counts) are the same whatever the size.
        let shares =
            crate::pipeline::shares::DomainShares::BYTES + crate::pipeline::Fdb::GENERATION_BYTES;
        assert!(big.fdb_bytes - shares >= 4 * (small.fdb_bytes - shares) - 4096);
        assert!(big.neighbor_bytes > small.neighbor_bytes);
        // At least the entries themselves, at most a few times them with the index.
        let per_fdb = big.fdb_bytes / big.fdb_entries;
        assert!(per_fdb >= std::mem::size_of::<crate::pipeline::FdbEntry>());
        assert!(per_fdb < 16 * std::mem::size_of::<crate::pipeline::FdbEntry>() + 64);
        assert_eq!(
            big.total_bytes(),
            big.fdb_bytes + big.neighbor_bytes + big.conntrack_bytes
        );
    }
}
