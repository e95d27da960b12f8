//! End to end: namespaces on switchyard networks, real traffic through real TAP
//! devices — learning and flooding, echo, UDP and TCP on one network (the `three`
//! topology of the fixtures), the tables that show it, teardown, and networks that
//! do not see each other. Each test starts a switch of its own. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::Duration;
use switchyard::control::protocol::{FdbRow, PortRow, Table};
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_core::wire::MacAddr;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::traffic::{self, Capture};

const T: Duration = Duration::from_secs(5);
/// How long a capture listens after the last frame, to be sure nothing else comes.
const QUIET: Duration = Duration::from_millis(300);

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, n)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, n])
}

/// A switch of this test's own on the `three` topology, or None to skip (not root).
fn up() -> Option<Switchyard> {
    require_root().then(|| start(build(three(&unique_prefix()))))
}

#[test]
fn an_arp_request_is_flooded_and_the_reply_and_the_ping_are_not() {
    let Some(sy) = up() else { return };
    let (a, c) = (ns(&sy, "a"), ns(&sy, "c"));
    // c watches its eth0 while a resolves b.
    let cap = Capture::open(&c, "eth0").unwrap();
    let rtt = traffic::ping(&a, ip(3), T).expect("a pings b");
    assert!(rtt < T);
    let seen = cap.collect(QUIET, 100).unwrap();
    let arp: Vec<_> = seen.iter().filter(|s| s.ethertype == 0x0806).collect();
    assert!(
        arp.iter()
            .any(|s| s.dst == MacAddr::BROADCAST && s.src == mac(2)),
        "a's broadcast ARP request was flooded to c: {seen:?}"
    );
    assert!(
        !arp.iter().any(|s| s.src == mac(3)),
        "b's unicast ARP reply must not reach c: {seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s.ethertype == 0x0800),
        "the ping itself went only to b (b was learned from its ARP reply): {seen:?}"
    );
    // a's kernel learned b's MAC from the reply.
    let neigh = netns::run_in_named(&a, || Rtnl::new().unwrap().neighbours_v4().unwrap()).unwrap();
    assert!(
        neigh
            .iter()
            .any(|n| n.ip == ip(3) && n.mac == Some(mac(3).0)),
        "a resolved b: {neigh:?}"
    );
    stop(sy);
}

#[test]
fn endpoints_answer_echo_and_so_does_the_gateway() {
    let Some(sy) = up() else { return };
    traffic::ping(&ns(&sy, "b"), ip(2), T).expect("b pings a");
    traffic::ping(&ns(&sy, "c"), ip(1), T).expect("c pings the gateway");
    assert!(
        events(&sy, "echo_replies") >= 1,
        "the gateway's reply is counted"
    );
    stop(sy);
}

#[test]
fn udp_request_and_reply_on_one_network_without_nat() {
    let Some(sy) = up() else { return };
    let server =
        traffic::udp_echo_server(&ns(&sy, "b"), SocketAddrV4::new(ip(3), 5353), 1, T).unwrap();
    let reply = traffic::udp_request(
        &ns(&sy, "a"),
        SocketAddrV4::new(ip(3), 5353),
        b"hello over switchyard",
        T,
    )
    .unwrap();
    assert_eq!(reply, b"hello over switchyard");
    let peers = server.join().unwrap().unwrap();
    assert_eq!(
        peers[0].ip(),
        std::net::IpAddr::V4(ip(2)),
        "no NAT on the same network"
    );
    stop(sy);
}

#[test]
fn tcp_carries_10_mb_intact() {
    let Some(sy) = up() else { return };
    let size = 10 * 1024 * 1024;
    let to = SocketAddrV4::new(ip(4), 9000);
    let sink = traffic::tcp_sink(&ns(&sy, "c"), to, Duration::from_secs(30)).unwrap();
    let sent = traffic::tcp_send(&ns(&sy, "a"), to, size, 42, Duration::from_secs(30)).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(got.bytes, size);
    assert_eq!(got.digest, sent, "the bytes arrived intact");
    stop(sy);
}

/// Traffic from every endpoint: a and b ping each other, c pings the gateway.
fn everyone_talks(sy: &Switchyard) {
    traffic::ping(&ns(sy, "a"), ip(3), T).expect("a pings b");
    traffic::ping(&ns(sy, "c"), ip(1), T).expect("c pings the gateway");
}

#[test]
fn show_fdb_lists_the_learned_macs_on_their_ports_and_never_the_gateway() {
    let Some(sy) = up() else { return };
    everyone_talks(&sy);
    let fdb: Vec<FdbRow> = show(&sy, Table::Fdb);
    for (port, m) in [("a", mac(2)), ("b", mac(3)), ("c", mac(4))] {
        assert!(
            fdb.iter()
                .any(|r| r.port == port && r.mac == m.to_string() && r.network == "default"),
            "{m} on {port} in {fdb:?}"
        );
    }
    // The gateway is switchyard itself, never learned.
    assert!(!fdb.iter().any(|r| r.mac == "02:42:ac:11:00:01"));
    stop(sy);
}

#[test]
fn show_counters_accounts_for_every_frame_on_every_port() {
    let Some(sy) = up() else { return };
    everyone_talks(&sy);
    for p in &counters(&sy).ports {
        assert_eq!(p.rx_frames, p.forwarded + p.consumed + p.dropped, "{p:?}");
        assert!(p.rx_frames > 0);
    }
    stop(sy);
}

#[test]
fn show_ports_lists_every_tap_with_its_address_and_namespace() {
    let Some(sy) = up() else { return };
    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    assert_eq!(ports.len(), 3);
    assert_eq!(ports[0].ip, "172.17.0.2/16");
    assert!(ports
        .iter()
        .all(|p| p.vnet_hdr && p.mtu == 1500 && p.netns.starts_with(&sy.topology().prefix)));
    stop(sy);
}

#[test]
fn stopping_removes_every_namespace_and_the_taps_inside() {
    let Some(sy) = up() else { return };
    let names = namespaces(&sy.topology());
    // Held across the teardown to prove the TAP inside is gone, not just the name.
    let a_fd = netns::open(&names[0]).unwrap();
    let removed = sy.stop().unwrap();
    assert_eq!(removed.len(), 3);
    assert_gone(&names);
    let still_there = netns::run_in(a_fd.as_fd(), || {
        Rtnl::new().unwrap().link_exists("eth0").unwrap()
    })
    .unwrap();
    assert!(!still_there, "the TAP device eth0 was removed");
}

#[test]
fn everything_is_removed_after_a_panic() {
    if !require_root() {
        return;
    }
    let topo = build(three(&unique_prefix()));
    let names = namespaces(&topo);
    let result = std::panic::catch_unwind(move || {
        let _sy = start(topo);
        panic!("a test failing half-way");
    });
    assert!(result.is_err());
    assert_gone(&names);
}

/// Two networks not joined by `[[allow]]`: web and cache on front, db on back, and
/// multi on both (eth0 on front, eth1 on back). Addresses are automatic: web
/// 10.1.0.2, cache .3, multi .4 on front; db 10.2.0.2, multi .3 on back.
fn front_and_back() -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            Topology::builder()
                .prefix(unique_prefix())
                .network(NetworkBuilder::new("front", "10.1.0.0/24").gateway("10.1.0.1"))
                .network(NetworkBuilder::new("back", "10.2.0.0/24").gateway("10.2.0.1"))
                .endpoint(EndpointBuilder::new("web").on("front"))
                .endpoint(EndpointBuilder::new("cache").on("front"))
                .endpoint(EndpointBuilder::new("db").on("back"))
                .endpoint(EndpointBuilder::new("multi").on("front").on("back")),
        ))
    })
}

#[test]
fn frames_of_one_network_never_reach_another() {
    let Some(sy) = front_and_back() else { return };
    let cap = Capture::open(&ns(&sy, "db"), "eth0").unwrap();
    // Broadcasts (ARP) and unicast on front, from an endpoint on front only and
    // from one on both networks.
    traffic::ping(&ns(&sy, "web"), Ipv4Addr::new(10, 1, 0, 3), T).expect("same network");
    traffic::ping(&ns(&sy, "multi"), Ipv4Addr::new(10, 1, 0, 2), T).expect("multi reaches front");
    let seen = cap.collect(QUIET, 100).unwrap();
    assert!(
        !seen.iter().any(|s| s.src.0[..4] == [0x02, 0x42, 10, 1]),
        "nothing from front's endpoints reached db: {seen:?}"
    );
    stop(sy);
}

#[test]
fn an_endpoint_on_two_networks_reaches_both() {
    let Some(sy) = front_and_back() else { return };
    let multi = ns(&sy, "multi");
    traffic::ping(&multi, Ipv4Addr::new(10, 1, 0, 2), T).expect("multi reaches front");
    traffic::ping(&multi, Ipv4Addr::new(10, 2, 0, 2), T).expect("multi reaches back");
    traffic::ping(&multi, Ipv4Addr::new(10, 2, 0, 1), T).expect("multi pings the back gateway");
    stop(sy);
}

#[test]
fn networks_not_joined_by_allow_are_not_routed() {
    let Some(sy) = front_and_back() else { return };
    // No reply (the short timeout is how long "no reply" is waited for); the
    // gateway drops it and counts why.
    assert!(traffic::ping(
        &ns(&sy, "web"),
        Ipv4Addr::new(10, 2, 0, 2),
        Duration::from_millis(500)
    )
    .is_err());
    let isolated = drops(&sy, "isolated");
    assert!(isolated >= 1, "{:?}", counters(&sy));
    stop(sy);
}

#[test]
fn a_raw_frame_sent_from_one_namespace_is_switched_like_any_other() {
    let Some(sy) = up() else { return };
    let (a, b) = (ns(&sy, "a"), ns(&sy, "b"));
    let from_a = Capture::open(&a, "eth0").unwrap();
    let at_b = Capture::open(&b, "eth0").unwrap();
    // A frame of an unknown EtherType from a MAC no stack uses, to a unicast MAC nobody
    // has: flooded, so b sees it exactly as sent.
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x77]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // IEEE local experimental
    frame[14..18].copy_from_slice(b"test");
    from_a.send(&frame).unwrap();
    let seen = at_b.collect(QUIET, 100).unwrap();
    assert!(
        seen.iter().any(|s| s.bytes == frame),
        "the injected frame reached b unchanged: {seen:?}"
    );
    assert!(
        from_a
            .collect(QUIET, 100)
            .unwrap()
            .iter()
            .all(|s| s.bytes != frame),
        "a's own frame is not reported back to a"
    );
    assert_accounted(&sy);
    stop(sy);
}
