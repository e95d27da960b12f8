//! End to end: three namespaces on one switchyard network, real traffic through real
//! TAP devices. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::Duration;
use switchyard::control::protocol::{CountersReport, FdbRow, PortRow, Table};
use switchyard_core::wire::MacAddr;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::traffic::{self, Capture};

const T: Duration = Duration::from_secs(5);

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, n)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, n])
}

#[test]
fn arp_ping_udp_tcp_between_three_namespaces() {
    if !require_root() {
        return;
    }
    let topo = topology(THREE);
    let names = namespaces(&topo);
    let (ns_a, ns_b, ns_c) = (names[0].clone(), names[1].clone(), names[2].clone());
    let sy = start(topo);
    // Held across the teardown to prove the TAP inside is gone, not just the name.
    let a_fd = netns::open(&ns_a).unwrap();

    // ARP: c watches its eth0 while a resolves b.
    let cap = Capture::open(&ns_c, "eth0").unwrap();
    let rtt = traffic::ping(&ns_a, ip(3), T).expect("a pings b");
    assert!(rtt < T);
    let seen = cap.collect(Duration::from_millis(300), 100).unwrap();
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
    let neigh =
        netns::run_in_named(&ns_a, || Rtnl::new().unwrap().neighbours_v4().unwrap()).unwrap();
    assert!(
        neigh
            .iter()
            .any(|n| n.ip == ip(3) && n.mac == Some(mac(3).0)),
        "a resolved b: {neigh:?}"
    );

    // ICMP echo: between endpoints and to the gateway (switchyard itself).
    traffic::ping(&ns_b, ip(2), T).expect("b pings a");
    traffic::ping(&ns_c, ip(1), T).expect("c pings the gateway");

    // UDP request/response.
    let server = traffic::udp_echo_server(&ns_b, SocketAddrV4::new(ip(3), 5353), 1, T).unwrap();
    let reply = traffic::udp_request(
        &ns_a,
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

    // TCP: 10 MB from a to c, intact.
    let size = 10 * 1024 * 1024;
    let sink = traffic::tcp_sink(
        &ns_c,
        SocketAddrV4::new(ip(4), 9000),
        Duration::from_secs(30),
    )
    .unwrap();
    let sent = traffic::tcp_send(
        &ns_a,
        SocketAddrV4::new(ip(4), 9000),
        size,
        42,
        Duration::from_secs(30),
    )
    .unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(got.bytes, size);
    assert_eq!(got.digest, sent, "the bytes arrived intact");

    // show fdb lists the three learned MACs on their ports.
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

    // show counters: every frame accounted for, no drops in a clean exchange.
    let counters: CountersReport = show(&sy, Table::Counters);
    for p in &counters.ports {
        assert_eq!(p.rx_frames, p.forwarded + p.consumed + p.dropped, "{p:?}");
        assert!(p.rx_frames > 0);
    }
    let replies = counters
        .events
        .iter()
        .find(|e| e.id == "echo_replies")
        .unwrap();
    assert!(replies.count >= 1);

    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    assert_eq!(ports.len(), 3);
    assert_eq!(ports[0].ip, "172.17.0.2/16");
    assert!(ports
        .iter()
        .all(|p| p.vnet_hdr && p.mtu == 1500 && p.netns.starts_with(&sy.topology().prefix)));

    // Teardown removes every namespace, and the TAP inside is gone with it.
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
    let topo = topology(THREE);
    let names = namespaces(&topo);
    let result = std::panic::catch_unwind(move || {
        let _sy = start(topo);
        panic!("a test failing half-way");
    });
    assert!(result.is_err());
    assert_gone(&names);
}

#[test]
fn isolated_networks_do_not_see_each_other() {
    if !require_root() {
        return;
    }
    let topo = topology(
        r#"
[switch]
prefix = "PREFIX"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
[[network]]
name = "back"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"
[[endpoint]]
name = "web"
network = "front"
[[endpoint]]
name = "cache"
network = "front"
[[endpoint]]
name = "db"
network = "back"
[[endpoint]]
name = "multi"
attach = [ { network = "front" }, { network = "back" } ]
"#,
    );
    let names = namespaces(&topo);
    let sy = start(topo);
    let (web, db, multi) = (&names[0], &names[2], &names[3]);
    let cap = Capture::open(db, "eth0").unwrap();
    traffic::ping(web, Ipv4Addr::new(10, 1, 0, 3), T).expect("same network");
    // multi sits on both networks, with eth0 on front and eth1 on back.
    traffic::ping(multi, Ipv4Addr::new(10, 1, 0, 2), T).expect("multi reaches front");
    traffic::ping(multi, Ipv4Addr::new(10, 2, 0, 2), T).expect("multi reaches back");
    traffic::ping(multi, Ipv4Addr::new(10, 2, 0, 1), T).expect("multi pings the back gateway");
    let seen = cap.collect(Duration::from_millis(300), 100).unwrap();
    assert!(
        !seen.iter().any(|s| s.src.0[..4] == [0x02, 0x42, 10, 1]),
        "nothing from front's endpoints reached db: {seen:?}"
    );
    // Across networks not joined by [[allow]]: no reply (the gateway drops it, counted).
    assert!(traffic::ping(web, Ipv4Addr::new(10, 2, 0, 2), Duration::from_millis(500)).is_err());
    let counters: CountersReport = show(&sy, Table::Counters);
    let isolated = counters.drops.iter().find(|d| d.id == "isolated").unwrap();
    assert!(isolated.count >= 1, "{counters:?}");
    drop(sy);
    assert_gone(&names);
}
