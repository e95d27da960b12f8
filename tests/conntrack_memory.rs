//! What connection tracking costs in memory, measured with an allocator that keeps
//! the live heap size: 65 536 tracked flows at most 512 bytes each, and a table
//! whose maximum is 2^24 entries allocating next to nothing until it is used.
//! Runs without root. `cargo test --test conntrack_memory -- --nocapture` prints
//! the figures.

use std::net::Ipv4Addr;
use switchyard_core::pipeline::conntrack::{ProtoState, TcpState};
use switchyard_core::pipeline::{ConnTrack, DomainId, Timeouts, Timestamp, Tuple};
use switchyard_core::wire::IpProtocol;
use switchyard_testkit::alloc::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const N: u32 = 65_536;

/// Flow `i`: a masqueraded TCP flow from 10.x.y.z to one server.
fn flow(i: u32) -> (Tuple, Tuple) {
    let o = i.to_be_bytes();
    let orig = Tuple {
        proto: IpProtocol::TCP,
        src: Ipv4Addr::new(10, o[1], o[2], o[3]),
        dst: Ipv4Addr::new(198, 51, 100, 2),
        sport: 40000,
        dport: 80,
    };
    let reply = Tuple {
        proto: IpProtocol::TCP,
        src: orig.dst,
        dst: Ipv4Addr::new(198, 51, 100, 1),
        sport: 80,
        dport: (i % 60_000) as u16 + 1024,
    };
    // Distinct reply tuples: the port and, past 60 000 flows, another uplink address.
    let reply = Tuple {
        dst: Ipv4Addr::new(198, 51, 100, 1 + (i / 60_000) as u8),
        ..reply
    };
    (orig, reply)
}

/// One test, so that nothing else allocates while it measures.
#[test]
fn conntrack_costs_at_most_512_bytes_an_entry_and_grows_with_use() {
    let zones = [DomainId(0), DomainId(1)];
    let base = ALLOC.live_bytes();
    let ct = ConnTrack::new(N as usize, Timeouts::default());
    let empty = ALLOC.live_bytes() - base;
    for i in 0..N {
        let (o, r) = flow(i);
        ct.insert(
            o,
            r,
            zones,
            ProtoState::Tcp(TcpState::SynSent),
            Timestamp(0),
        )
        .unwrap();
    }
    assert_eq!(ct.len(), N as usize);
    let full = ALLOC.live_bytes() - base;
    let per_entry = full / N as usize;
    println!(
        "conntrack: {N} entries take {full} bytes ({per_entry} bytes an entry); \
         the empty table of that maximum {empty} bytes"
    );
    assert!(per_entry <= 512, "{per_entry} bytes an entry");
    // The estimate `switchyard check` prints is an upper bound, and not a loose one.
    let estimate = ConnTrack::bytes_for(N as usize);
    println!(
        "conntrack: estimated {estimate} bytes for {N} ({} bytes an entry)",
        ConnTrack::bytes_per_entry()
    );
    assert!(
        full <= estimate && estimate <= 2 * full,
        "{full} vs {estimate}"
    );
    assert!(ConnTrack::bytes_per_entry() <= 512);

    // Grown once, the table churns without allocating: every flow expires and as many
    // new ones come, twice (the first round sizes the free lists).
    let churn = |round: u64| {
        let now = Timestamp::from_secs(200 * round);
        assert_eq!(ct.gc(now, N as usize), N as usize);
        for i in 0..N {
            let (o, r) = flow(i);
            ct.insert(o, r, zones, ProtoState::Tcp(TcpState::SynSent), now)
                .unwrap();
        }
    };
    churn(1);
    let allocations = ALLOC.count(|| churn(2));
    assert_eq!(allocations, 0, "expiring and tracking {N} flows again");
    assert_eq!(ct.len(), N as usize);
    drop(ct);

    let base = ALLOC.live_bytes();
    let big = ConnTrack::new(1 << 24, Timeouts::default());
    let up_front = ALLOC.live_bytes() - base;
    println!("conntrack: a table of at most 2^24 entries takes {up_front} bytes empty");
    assert!(up_front < 1 << 20, "{up_front} bytes up front");
    drop(big);
}
