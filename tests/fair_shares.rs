//! Fair shares, end to end: one network floods switchyard's shared tables with
//! crafted frames (`Capture::send`), and another network goes on learning MACs,
//! resolving and routing to new neighbors, and getting the ICMP errors it is owed.
//! Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_core::wire::MacAddr;
use switchyard_testkit::traffic::{self, Capture, IcmpReply};

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

/// A frame of the IEEE local experimental EtherType carrying `marker`.
fn raw_frame(src: MacAddr, dst: MacAddr, marker: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    frame[14..14 + marker.len()].copy_from_slice(marker);
    frame
}

/// A UDP datagram from `src` to `dst` with the given TTL, in a frame to `gw`.
fn udp_frame(smac: MacAddr, gw: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(smac.0, gw.0)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(5000, 9999)
        .write(&mut v, b"flood")
        .unwrap();
    v
}

/// Sends frames made by `frame(i)` from `cap` until `stop` is set.
fn flood_until(
    cap: Capture,
    stop: Arc<AtomicBool>,
    frame: impl Fn(u32) -> Vec<u8> + Send + 'static,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            cap.send(&frame(i)).unwrap();
            i = i.wrapping_add(1);
        }
        i
    })
}

#[test]
fn a_mac_flood_in_one_network_does_not_stop_learning_in_another() {
    if !require_root() {
        return;
    }
    // flood 10.1.0.0/24 (f1) and calm 10.2.0.0/24 (c1, c2, c3); a 64-entry FDB.
    let sy = start(build(
        Topology::builder()
            .prefix(unique_prefix())
            .switch(|s| s.fdb_max = 64)
            .network(NetworkBuilder::new("flood", "10.1.0.0/24"))
            .network(NetworkBuilder::new("calm", "10.2.0.0/24"))
            .endpoint(EndpointBuilder::new("f1").on("flood"))
            .endpoint(EndpointBuilder::new("c1").on("calm"))
            .endpoint(EndpointBuilder::new("c2").on("calm"))
            .endpoint(EndpointBuilder::new("c3").on("calm")),
    ));
    let f1 = Capture::open(&ns(&sy, "f1"), "eth0").unwrap();
    for i in 0..2000u32 {
        let src = MacAddr([0x02, 0xee, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        f1.send(&raw_frame(src, MacAddr::BROADCAST, b"flood"))
            .unwrap();
    }
    wait_until(T, "the flood to be counted", || {
        events(&sy, "fdb_network_limit") > 0
    });
    // A MAC calm has never seen, after the flood: c1 sends from it, then c2 sends
    // to it. Learned, the frame goes to c1 only; not learned, c3 would see it too.
    let fresh = MacAddr([0x02, 0xcc, 0, 0, 0, 1]);
    let c1 = Capture::open(&ns(&sy, "c1"), "eth0").unwrap();
    let c2 = Capture::open(&ns(&sy, "c2"), "eth0").unwrap();
    let at_c3 = Capture::open(&ns(&sy, "c3"), "eth0").unwrap();
    c1.send(&raw_frame(fresh, MacAddr::BROADCAST, b"hello-from-fresh"))
        .unwrap();
    let seen = at_c3.collect(QUIET, 1000).unwrap();
    assert!(
        seen.iter().any(|s| s.src == fresh),
        "the capture works: {seen:?}"
    );
    let c2_mac = MacAddr([0x02, 0xcc, 0, 0, 0, 2]);
    c2.send(&raw_frame(c2_mac, fresh, b"unicast-to-fresh"))
        .unwrap();
    let at_c1 = c1.collect(QUIET, 1000).unwrap();
    let at_c3 = at_c3.collect(QUIET, 1000).unwrap();
    assert!(at_c1.iter().any(|s| s.dst == fresh), "{at_c1:?}");
    assert!(
        !at_c3.iter().any(|s| s.dst == fresh),
        "flooded: calm did not learn the MAC: {at_c3:?}"
    );
    assert_eq!(events(&sy, "fdb_limit"), 0, "the global table never filled");
    assert_accounted(&sy);
    stop(sy);
}

/// noisy 10.1.0.0/16 (n1) joined to dark 10.2.0.0/16 (d1); left 10.3.0.0/24 (l1)
/// joined to right 10.4.0.0/24 (r1). A 256-entry neighbor table.
fn four_networks() -> Switchyard {
    start(build(
        Topology::builder()
            .prefix(unique_prefix())
            .switch(|s| s.neighbor_max = 256)
            .network(NetworkBuilder::new("noisy", "10.1.0.0/16").gateway("10.1.0.1"))
            .network(NetworkBuilder::new("dark", "10.2.0.0/16").gateway("10.2.0.1"))
            .network(NetworkBuilder::new("left", "10.3.0.0/24").gateway("10.3.0.1"))
            .network(NetworkBuilder::new("right", "10.4.0.0/24").gateway("10.4.0.1"))
            .allow("noisy", "dark")
            .allow("left", "right")
            .endpoint(EndpointBuilder::new("n1").on("noisy").ip("10.1.0.2"))
            .endpoint(EndpointBuilder::new("d1").on("dark").ip("10.2.0.2"))
            .endpoint(EndpointBuilder::new("l1").on("left").ip("10.3.0.2"))
            .endpoint(EndpointBuilder::new("r1").on("right").ip("10.4.0.2")),
    ))
}

fn n1_mac() -> MacAddr {
    MacAddr::from_ipv4(Ipv4Addr::new(10, 1, 0, 2))
}

fn noisy_gw() -> MacAddr {
    MacAddr::from_ipv4(Ipv4Addr::new(10, 1, 0, 1))
}

#[test]
fn packets_to_unused_addresses_in_one_network_do_not_stop_routing_in_another() {
    if !require_root() {
        return;
    }
    let sy = four_networks();
    // n1 sprays dark's unused addresses, without end: every one an unresolved
    // neighbor for three seconds.
    let stop_flag = Arc::new(AtomicBool::new(false));
    let n1 = Capture::open(&ns(&sy, "n1"), "eth0").unwrap();
    let flood = flood_until(n1, stop_flag.clone(), |i| {
        let dst = Ipv4Addr::new(10, 2, 1 + (i >> 8) as u8 % 250, i as u8);
        udp_frame(n1_mac(), noisy_gw(), Ipv4Addr::new(10, 1, 0, 2), dst, 64)
    });
    // More requests than the table has entries: the table has seen it all.
    wait_until(T, "the flood to outgrow the neighbor table", || {
        events(&sy, "arp_requests") > 300
    });
    // left reaches right's endpoint, which switchyard has not resolved yet.
    let result = traffic::ping(&ns(&sy, "l1"), Ipv4Addr::new(10, 4, 0, 2), T);
    stop_flag.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    result
        .unwrap_or_else(|e| panic!("left cannot reach right under the flood ({sent} frames): {e}"));
    assert_eq!(drops(&sy, "neighbor_table_full"), 0, "{:?}", counters(&sy));
    assert!(drops(&sy, "neighbor_evicted") > 0, "{:?}", counters(&sy));
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn one_network_spending_the_icmp_error_budget_does_not_silence_another() {
    if !require_root() {
        return;
    }
    let sy = four_networks();
    // n1 sends TTL-1 packets from ever new addresses of its own /16 (valid sources,
    // each earning an error of its own), faster than the budget refills.
    let stop_flag = Arc::new(AtomicBool::new(false));
    let n1 = Capture::open(&ns(&sy, "n1"), "eth0").unwrap();
    let flood = flood_until(n1, stop_flag.clone(), |i| {
        let src = Ipv4Addr::new(10, 1, 2 + (i >> 8) as u8 % 250, (i as u8).max(1));
        udp_frame(n1_mac(), noisy_gw(), src, Ipv4Addr::new(10, 2, 0, 2), 1)
    });
    wait_until(T, "noisy's budget to run out", || {
        events(&sy, "icmp_rate_limited") > 1000
    });
    // left's endpoint is still told, every time.
    let start = Instant::now();
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(
            traffic::icmp_probe(&ns(&sy, "l1"), Ipv4Addr::new(10, 4, 0, 2), 1, 56, false, T)
                .unwrap(),
        );
    }
    stop_flag.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    for r in &replies {
        assert!(
            matches!(r, IcmpReply::Error { kind: 11, .. }),
            "no time exceeded for left under noisy's flood ({sent} frames, {:?}): {replies:?}",
            start.elapsed()
        );
    }
    assert_accounted(&sy);
    stop(sy);
}
