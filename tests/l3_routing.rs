//! End to end across switchyard's router, on the `routed` topology of the fixtures:
//! two joined networks with an MTU step, a static route to a router endpoint, an
//! isolated network, an L3-only network, and the endpoint modes `none` and
//! `container:`. Each test starts a switch of its own. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};
use switchyard::control::protocol::{NeighborRow, RouteRow, Table};
use switchyard::control::Switchyard;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::traffic::{self, IcmpReply};

const T: Duration = Duration::from_secs(5);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
/// switchyard's address on front: the first hop of everything web sends away.
const FRONT_GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

/// A switch of this test's own on the `routed` topology, or None to skip (not root).
fn up() -> Option<Switchyard> {
    require_root().then(|| start(build(routed(&unique_prefix()))))
}

/// An ICMP error's (from, type, code), or a panic naming what came instead.
fn icmp_error(reply: IcmpReply, expected: &str) -> (Ipv4Addr, u8, u8) {
    match reply {
        IcmpReply::Error { from, kind, code } => (from, kind, code),
        other => panic!("expected {expected}, got {other:?}"),
    }
}

#[test]
fn ping_crosses_the_router() {
    let Some(sy) = up() else { return };
    traffic::ping(&ns(&sy, "web"), DB, T).expect("web reaches db through the router");
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn ttl_probes_get_time_exceeded_from_the_gateway_and_an_echo_from_the_host() {
    let Some(sy) = up() else { return };
    let web = ns(&sy, "web");
    let hop1 = traffic::icmp_probe(&web, DB, 1, 56, false, T).unwrap();
    assert_eq!(
        icmp_error(hop1, "time exceeded"),
        (FRONT_GW, 11, 0),
        "hop 1 is the gateway: time exceeded"
    );
    assert!(
        matches!(
            traffic::icmp_probe(&web, DB, 2, 56, false, T).unwrap(),
            IcmpReply::Echo { from, .. } if from == DB
        ),
        "hop 2 is db itself"
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn no_route_gets_net_unreachable() {
    let Some(sy) = up() else { return };
    let reply = traffic::icmp_probe(
        &ns(&sy, "web"),
        Ipv4Addr::new(192, 0, 2, 1),
        64,
        56,
        false,
        T,
    )
    .unwrap();
    assert_eq!(
        icmp_error(reply, "net unreachable"),
        (FRONT_GW, 3, 0),
        "net unreachable, not a timeout"
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_neighbor_that_never_answers_gets_host_unreachable_after_the_arp_retries() {
    let Some(sy) = up() else { return };
    // The time this takes is the behaviour under test: switchyard gives up on
    // 10.2.0.77 only after its ARP retries (3 a second apart by default).
    let started = Instant::now();
    let reply = traffic::icmp_probe(
        &ns(&sy, "web"),
        Ipv4Addr::new(10, 2, 0, 77),
        64,
        56,
        false,
        Duration::from_secs(8),
    )
    .unwrap();
    assert_eq!(
        icmp_error(reply, "host unreachable"),
        (FRONT_GW, 3, 1),
        "host unreachable"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "after ARP retries, not at once"
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn path_mtu_discovery_carries_tcp_across_the_mtu_step() {
    let Some(sy) = up() else { return };
    let (web, db) = (ns(&sy, "web"), ns(&sy, "db"));
    // db's interface claims MTU 1500 (advertising MSS 1460) while its network is
    // 1280, so web's full-size segments hit the MTU step and only frag-needed
    // messages from switchyard make the transfer work.
    netns::run_in_named(&db, || {
        let mut r = Rtnl::new().unwrap();
        let i = r.link_index("eth0").unwrap();
        r.link_set_mtu(i, 1500).unwrap();
    })
    .unwrap();
    let frag_needed_before = events(&sy, "icmp_frag_needed");
    let size = 10 * 1024 * 1024;
    let to = SocketAddrV4::new(DB, 9001);
    let sink = traffic::tcp_sink(&db, to, Duration::from_secs(60)).unwrap();
    let sent = traffic::tcp_send(&web, to, size, 7, Duration::from_secs(60)).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(
        (got.bytes, got.digest),
        (size, sent),
        "10 MB intact across the MTU step"
    );
    assert!(
        events(&sy, "icmp_frag_needed") > frag_needed_before,
        "path MTU discovery did the work"
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_df_datagram_too_big_for_the_next_network_gets_frag_needed() {
    let Some(sy) = up() else { return };
    // 1400 bytes with DF set, towards back's MTU of 1280.
    let reply = traffic::icmp_probe(&ns(&sy, "web"), DB, 64, 1400, true, T).unwrap();
    assert_eq!(
        icmp_error(reply, "fragmentation needed"),
        (FRONT_GW, 3, 4),
        "frag needed"
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_large_datagram_without_df_is_fragmented_and_arrives_whole() {
    let Some(sy) = up() else { return };
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let to = SocketAddrV4::new(DB, 7007);
    let echo = traffic::udp_echo_server(&ns(&sy, "db"), to, 1, T).unwrap();
    let back = traffic::udp_request_df(&ns(&sy, "web"), to, &payload, T, false).unwrap();
    assert_eq!(back, payload, "3000 bytes across the MTU step, both ways");
    echo.join().unwrap().unwrap();
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_static_route_leads_through_a_router_endpoint() {
    let Some(sy) = up() else { return };
    // rtr (10.2.0.254) owns 10.9.0.1, inside the routed 10.9.0.0/16.
    netns::run_in_named(&ns(&sy, "rtr"), || {
        let mut r = Rtnl::new().unwrap();
        let lo = r.link_index("lo").unwrap();
        r.addr_add_v4(lo, Ipv4Addr::new(10, 9, 0, 1), 32).unwrap();
    })
    .unwrap();
    traffic::ping(&ns(&sy, "web"), Ipv4Addr::new(10, 9, 0, 1), T).expect("routed via 10.2.0.254");
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_network_without_allow_is_isolated_both_ways() {
    let Some(sy) = up() else { return };
    // dmz is joined to nothing: neither way gets an answer, and the gateway counts
    // what it dropped. (The short timeout is how long "no answer" is waited for.)
    let quiet = Duration::from_millis(500);
    assert!(traffic::ping(&ns(&sy, "web"), Ipv4Addr::new(10, 3, 0, 2), quiet).is_err());
    assert!(traffic::ping(&ns(&sy, "lonely"), WEB, quiet).is_err());
    assert!(drops(&sy, "isolated") >= 2);
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn an_l3_network_routes_between_its_own_endpoints() {
    let Some(sy) = up() else { return };
    let l3a = ns(&sy, "l3a");
    let l3b_ip = Ipv4Addr::new(10, 4, 0, 3);
    traffic::ping(&l3a, l3b_ip, T).expect("routed within the L3 network");
    // Hop 1 is the gateway even within the network.
    let reply = traffic::icmp_probe(&l3a, l3b_ip, 1, 56, false, T).unwrap();
    let (from, kind, _) = icmp_error(reply, "time exceeded within the L3 network");
    assert_eq!((from, kind), (Ipv4Addr::new(10, 4, 0, 1), 11));
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn endpoint_modes_container_and_none() {
    let Some(sy) = up() else { return };
    // "side" is web's namespace under a second name.
    let side_addrs = netns::run_in_named(&ns(&sy, "side"), || {
        Rtnl::new().unwrap().addrs_v4().unwrap()
    })
    .unwrap();
    assert!(side_addrs.iter().any(|a| a.1 == WEB), "{side_addrs:?}");
    // "quiet" has only lo.
    let quiet_links =
        netns::run_in_named(&ns(&sy, "quiet"), || Rtnl::new().unwrap().links().unwrap()).unwrap();
    assert_eq!(
        quiet_links
            .iter()
            .map(|l| (l.name.as_str(), l.up))
            .collect::<Vec<_>>(),
        vec![("lo", true)]
    );
    stop(sy);
}

#[test]
fn show_routes_lists_connected_and_static_routes() {
    let Some(sy) = up() else { return };
    let routes: Vec<RouteRow> = show(&sy, Table::Routes);
    assert_eq!(routes[0].prefix, "10.1.0.0/24", "longest prefixes first");
    assert!(routes.iter().any(|r| r.prefix == "10.9.0.0/16"
        && r.via.as_deref() == Some("10.2.0.254")
        && r.origin == "static"));
    assert!(routes.iter().any(|r| r.prefix == "10.2.0.0/24"
        && r.network == "back"
        && r.mtu == 1280
        && r.origin == "connected"));
    stop(sy);
}

#[test]
fn show_neighbors_lists_a_resolved_next_hop() {
    let Some(sy) = up() else { return };
    traffic::ping(&ns(&sy, "web"), DB, T).expect("web reaches db, so db is resolved");
    let neighbors: Vec<NeighborRow> = show(&sy, Table::Neighbors);
    assert!(
        neighbors.iter().any(|n| n.ip == "10.2.0.2"
            && n.network == "back"
            && n.state == "reachable"
            && n.mac == "02:42:0a:02:00:02"),
        "{neighbors:?}"
    );
    stop(sy);
}
