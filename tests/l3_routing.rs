//! End to end across switchyard's router: two joined networks with an MTU step, a
//! static route to a router endpoint, an isolated network, an L3-only network, and
//! the endpoint modes `none` and `container:`. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};
use switchyard::control::client;
use switchyard::control::protocol::{CountersReport, NeighborRow, Request, RouteRow, Table};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::traffic::{self, IcmpReply};

const T: Duration = Duration::from_secs(5);

const ROUTED: &str = r#"
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
mtu = 1280

[[network]]
name = "dmz"
subnet = "10.3.0.0/24"
gateway = "10.3.0.1"

[[network]]
name = "flat"
subnet = "10.4.0.0/24"
gateway = "10.4.0.1"
mode = "l3"

[[allow]]
between = ["front", "back"]

[[route]]
prefix = "10.9.0.0/16"
via = "10.2.0.254"

[[endpoint]]
name = "web"
network = "front"
ip = "10.1.0.2"

[[endpoint]]
name = "db"
network = "back"
ip = "10.2.0.2"

[[endpoint]]
name = "rtr"
network = "back"
ip = "10.2.0.254"

[[endpoint]]
name = "lonely"
network = "dmz"
ip = "10.3.0.2"

[[endpoint]]
name = "l3a"
network = "flat"
ip = "10.4.0.2"

[[endpoint]]
name = "l3b"
network = "flat"
ip = "10.4.0.3"

[[endpoint]]
name = "side"
mode = "container:web"

[[endpoint]]
name = "quiet"
mode = "none"
"#;

fn show<T: serde::de::DeserializeOwned>(sock: &std::path::Path, table: Table) -> T {
    serde_json::from_value(
        client::request(sock, &Request::Show { table })
            .unwrap()
            .payload(),
    )
    .unwrap()
}

fn ns_of(t: &switchyard::topology::Topology, name: &str) -> String {
    t.endpoints
        .iter()
        .find(|e| e.name == name)
        .unwrap()
        .netns
        .clone()
}

#[test]
fn routing_icmp_errors_pmtud_isolation_and_modes() {
    if !require_root() {
        return;
    }
    let topo = topology(ROUTED);
    let names = namespaces(&topo);
    let web = ns_of(&topo, "web");
    let db = ns_of(&topo, "db");
    let rtr = ns_of(&topo, "rtr");
    let sy = start(topo.clone());

    // Ping and traceroute-like probes across the router.
    traffic::ping(&web, Ipv4Addr::new(10, 2, 0, 2), T).expect("web reaches db through the router");
    match traffic::icmp_probe(&web, Ipv4Addr::new(10, 2, 0, 2), 1, 56, false, T).unwrap() {
        IcmpReply::Error { from, kind, code } => {
            assert_eq!(
                (from, kind, code),
                (Ipv4Addr::new(10, 1, 0, 1), 11, 0),
                "hop 1 is the gateway: time exceeded"
            )
        }
        other => panic!("expected time exceeded, got {other:?}"),
    }
    assert!(
        matches!(
            traffic::icmp_probe(&web, Ipv4Addr::new(10, 2, 0, 2), 2, 56, false, T).unwrap(),
            IcmpReply::Echo { from, .. } if from == Ipv4Addr::new(10, 2, 0, 2)
        ),
        "hop 2 is db itself"
    );

    // Unreachable addresses get an ICMP error, not a timeout.
    match traffic::icmp_probe(&web, Ipv4Addr::new(192, 0, 2, 1), 64, 56, false, T).unwrap() {
        IcmpReply::Error { from, kind, code } => assert_eq!(
            (from, kind, code),
            (Ipv4Addr::new(10, 1, 0, 1), 3, 0),
            "net unreachable"
        ),
        other => panic!("expected net unreachable, got {other:?}"),
    }
    let started = Instant::now();
    match traffic::icmp_probe(
        &web,
        Ipv4Addr::new(10, 2, 0, 77),
        64,
        56,
        false,
        Duration::from_secs(8),
    )
    .unwrap()
    {
        IcmpReply::Error { from, kind, code } => assert_eq!(
            (from, kind, code),
            (Ipv4Addr::new(10, 1, 0, 1), 3, 1),
            "host unreachable"
        ),
        other => panic!("expected host unreachable, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "after ARP retries, not at once"
    );

    // PMTU discovery end to end (first, before anything teaches web's kernel the
    // path MTU): db's interface claims MTU 1500 (advertising MSS
    // 1460) while its network is 1280, so web's full-size segments hit the MTU step
    // and only frag-needed messages from switchyard make the transfer work.
    netns::run_in_named(&db, || {
        let mut r = Rtnl::new().unwrap();
        let i = r.link_index("eth0").unwrap();
        r.link_set_mtu(i, 1500).unwrap();
    })
    .unwrap();
    let frag_needed_before = event(&sy, "icmp_frag_needed");
    let size = 10 * 1024 * 1024;
    let sink = traffic::tcp_sink(
        &db,
        SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9001),
        Duration::from_secs(60),
    )
    .unwrap();
    let sent = traffic::tcp_send(
        &web,
        SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9001),
        size,
        7,
        Duration::from_secs(60),
    )
    .unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(
        (got.bytes, got.digest),
        (size, sent),
        "10 MB intact across the MTU step"
    );
    assert!(
        event(&sy, "icmp_frag_needed") > frag_needed_before,
        "path MTU discovery did the work"
    );
    netns::run_in_named(&db, || {
        let mut r = Rtnl::new().unwrap();
        let i = r.link_index("eth0").unwrap();
        r.link_set_mtu(i, 1280).unwrap();
    })
    .unwrap();

    // DF and too big for back's MTU of 1280: fragmentation needed, with the MTU.
    // (After the burst above, errors to web are limited to one a second, as Linux does.)
    std::thread::sleep(Duration::from_millis(1100));
    match traffic::icmp_probe(&web, Ipv4Addr::new(10, 2, 0, 2), 64, 1400, true, T).unwrap() {
        IcmpReply::Error { from, kind, code } => assert_eq!(
            (from, kind, code),
            (Ipv4Addr::new(10, 1, 0, 1), 3, 4),
            "frag needed"
        ),
        other => panic!("expected fragmentation needed, got {other:?}"),
    }

    // Without DF a large datagram is fragmented by switchyard and arrives whole.
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let echo = traffic::udp_echo_server(
        &db,
        SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 7007),
        1,
        T,
    )
    .unwrap();
    let back = traffic::udp_request_df(
        &web,
        SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 7007),
        &payload,
        T,
        false,
    )
    .unwrap();
    assert_eq!(back, payload, "3000 bytes across the MTU step, both ways");
    echo.join().unwrap().unwrap();

    // A static route to a router endpoint, which owns 10.9.0.1.
    netns::run_in_named(&rtr, || {
        let mut r = Rtnl::new().unwrap();
        let lo = r.link_index("lo").unwrap();
        r.addr_add_v4(lo, Ipv4Addr::new(10, 9, 0, 1), 32).unwrap();
    })
    .unwrap();
    traffic::ping(&web, Ipv4Addr::new(10, 9, 0, 1), T).expect("routed via 10.2.0.254");

    // Isolation: dmz is joined to nothing.
    assert!(traffic::ping(&web, Ipv4Addr::new(10, 3, 0, 2), Duration::from_millis(500)).is_err());
    assert!(traffic::ping(
        &ns_of(&topo, "lonely"),
        Ipv4Addr::new(10, 1, 0, 2),
        Duration::from_millis(500)
    )
    .is_err());
    assert!(drops(&sy, "isolated") >= 2);

    // An L3-only network: l3a reaches l3b through switchyard (hop 1 is the gateway).
    let l3a = ns_of(&topo, "l3a");
    traffic::ping(&l3a, Ipv4Addr::new(10, 4, 0, 3), T).expect("routed within the L3 network");
    match traffic::icmp_probe(&l3a, Ipv4Addr::new(10, 4, 0, 3), 1, 56, false, T).unwrap() {
        IcmpReply::Error { from, kind, .. } => {
            assert_eq!((from, kind), (Ipv4Addr::new(10, 4, 0, 1), 11))
        }
        other => panic!("expected time exceeded within the L3 network, got {other:?}"),
    }

    // Endpoint modes: "side" is web's namespace under a second name; "quiet" has only lo.
    let side_addrs = netns::run_in_named(&ns_of(&topo, "side"), || {
        Rtnl::new().unwrap().addrs_v4().unwrap()
    })
    .unwrap();
    assert!(
        side_addrs.iter().any(|a| a.1 == Ipv4Addr::new(10, 1, 0, 2)),
        "{side_addrs:?}"
    );
    let quiet_links = netns::run_in_named(&ns_of(&topo, "quiet"), || {
        Rtnl::new().unwrap().links().unwrap()
    })
    .unwrap();
    assert_eq!(
        quiet_links
            .iter()
            .map(|l| (l.name.as_str(), l.up))
            .collect::<Vec<_>>(),
        vec![("lo", true)]
    );

    // show routes / show neighbors.
    let routes: Vec<RouteRow> = show(sy.socket(), Table::Routes);
    assert_eq!(routes[0].prefix, "10.1.0.0/24", "longest prefixes first");
    assert!(routes.iter().any(|r| r.prefix == "10.9.0.0/16"
        && r.via.as_deref() == Some("10.2.0.254")
        && r.origin == "static"));
    assert!(routes.iter().any(|r| r.prefix == "10.2.0.0/24"
        && r.network == "back"
        && r.mtu == 1280
        && r.origin == "connected"));
    let neighbors: Vec<NeighborRow> = show(sy.socket(), Table::Neighbors);
    assert!(
        neighbors.iter().any(|n| n.ip == "10.2.0.2"
            && n.network == "back"
            && n.state == "reachable"
            && n.mac == "02:42:0a:02:00:02"),
        "{neighbors:?}"
    );
    let counters: CountersReport = show(sy.socket(), Table::Counters);
    for p in &counters.ports {
        assert_eq!(
            p.rx_frames,
            p.forwarded + p.consumed + p.dropped + p.held,
            "{p:?}"
        );
    }

    drop(sy);
    assert_gone(&names);
}

fn event(sy: &switchyard::control::Switchyard, id: &str) -> u64 {
    let c: CountersReport = show(sy.socket(), Table::Counters);
    c.events.iter().find(|e| e.id == id).unwrap().count
}

fn drops(sy: &switchyard::control::Switchyard, id: &str) -> u64 {
    let c: CountersReport = show(sy.socket(), Table::Counters);
    c.drops.iter().find(|e| e.id == id).unwrap().count
}
