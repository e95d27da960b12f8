//! The memory `switchyard check` prints for the tables is what they really allocate:
//! each table is built under a counting allocator and compared with its `bytes_for`.
//! Conntrack grows with use: empty, it takes a sliver of its maximum here, and
//! `tests/conntrack_memory.rs` fills one and compares. One test only, so that nothing
//! else allocates while counting.

use switchyard_core::pipeline::{
    ConnTrack, Fdb, NeighborConfig, NeighborTable, Timeouts, MAX_DOMAINS,
};
use switchyard_testkit::alloc::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// `got` within 10 % of `want` (the allocator may round, a hash table may keep a
/// few bytes of bookkeeping the estimate leaves out).
fn close(what: &str, got: isize, want: usize) {
    let want = want as isize;
    assert!(
        (got - want).abs() * 10 <= want,
        "{what}: allocated {got} bytes, bytes_for says {want}"
    );
}

#[test]
fn tables_allocate_what_bytes_for_says() {
    for max in [8192, 65536] {
        let (fdb, got) = ALLOC.net_bytes(|| Fdb::new(max, 300));
        close(&format!("fdb {max}"), got, Fdb::bytes_for(max));
        drop(fdb);
        let (ct, got) = ALLOC.net_bytes(|| ConnTrack::new(max, Timeouts::default()));
        // Empty, it holds its per-network counters (two for each network there may
        // be) and a sliver of the rest.
        let shares = (2 * MAX_DOMAINS * std::mem::size_of::<usize>()) as isize;
        assert!(
            (got - shares) * 100 < ConnTrack::bytes_for(max) as isize,
            "conntrack {max}: {got} bytes before its first flow"
        );
        drop(ct);
    }
    let cfg = NeighborConfig {
        max: 4096,
        ..NeighborConfig::default()
    };
    let (nt, got) = ALLOC.net_bytes(|| NeighborTable::new(cfg));
    close("neighbors", got, NeighborTable::bytes_for(&cfg));
    drop(nt);
}
