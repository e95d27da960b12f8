//! End to end through switchyard's NAT, on the `nat` topology of the fixtures:
//! masquerade out, published ports in, hairpin, ICMP errors about translated flows,
//! and the conntrack table that holds it together. Each test starts a switch of its
//! own. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use switchyard::control::protocol::{ConntrackReport, Table};
use switchyard::control::Switchyard;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::traffic::{self, IcmpReply};

const T: Duration = Duration::from_secs(10);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const A: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const TEN_MB: u64 = 10 * 1024 * 1024;

/// A switch of this test's own on the `nat` topology, or None to skip (not root).
fn up() -> Option<Switchyard> {
    require_root().then(|| start(build(nat(&unique_prefix()))))
}

/// Sends `size` bytes by TCP from `from_ns` to `to` (served in `server_ns` at
/// `bind`), checks they arrived intact, and returns the client address the server saw.
fn tcp_through(
    from_ns: &str,
    to: SocketAddrV4,
    server_ns: &str,
    bind: SocketAddrV4,
    size: u64,
    seed: u64,
) -> IpAddr {
    let sink = traffic::tcp_sink(server_ns, bind, T).unwrap();
    let sent = traffic::tcp_send(from_ns, to, size, seed, T).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!((got.bytes, got.digest), (size, sent), "{size} bytes intact");
    got.peer.ip()
}

#[test]
fn masquerade_carries_10_mb_out_from_the_uplink_address() {
    let Some(sy) = up() else { return };
    let server = SocketAddrV4::new(PEER, 9000);
    let seen = tcp_through(
        &ns(&sy, "a"),
        server,
        &ns(&sy, "outside"),
        server,
        TEN_MB,
        1,
    );
    assert_eq!(
        seen,
        IpAddr::V4(UPLINK),
        "the server sees the uplink address"
    );
    stop(sy);
}

#[test]
fn masquerade_carries_udp_out() {
    let Some(sy) = up() else { return };
    let server = SocketAddrV4::new(PEER, 7000);
    let echo = traffic::udp_echo_server(&ns(&sy, "outside"), server, 1, T).unwrap();
    assert_eq!(
        traffic::udp_request(&ns(&sy, "a"), server, b"ping over NAT", T).unwrap(),
        b"ping over NAT"
    );
    assert_eq!(echo.join().unwrap().unwrap()[0].ip(), IpAddr::V4(UPLINK));
    stop(sy);
}

#[test]
fn a_published_port_carries_10_mb_in_from_the_real_client() {
    let Some(sy) = up() else { return };
    // 198.51.100.1:8080 -> a:80.
    let seen = tcp_through(
        &ns(&sy, "outside"),
        SocketAddrV4::new(UPLINK, 8080),
        &ns(&sy, "a"),
        SocketAddrV4::new(ANY, 80),
        TEN_MB,
        2,
    );
    assert_eq!(seen, IpAddr::V4(PEER), "the endpoint sees the real client");
    stop(sy);
}

#[test]
fn a_published_udp_port_answers() {
    let Some(sy) = up() else { return };
    // 198.51.100.1:5353 -> a:53.
    let echo = traffic::udp_echo_server(&ns(&sy, "a"), SocketAddrV4::new(ANY, 53), 1, T).unwrap();
    assert_eq!(
        traffic::udp_request(
            &ns(&sy, "outside"),
            SocketAddrV4::new(UPLINK, 5353),
            b"query",
            T
        )
        .unwrap(),
        b"query"
    );
    assert_eq!(echo.join().unwrap().unwrap()[0].ip(), IpAddr::V4(PEER));
    stop(sy);
}

#[test]
fn hairpin_reaches_a_neighbor_through_its_published_port() {
    let Some(sy) = up() else { return };
    // b uses a's published address and gets through; a sees the gateway.
    let seen = tcp_through(
        &ns(&sy, "b"),
        SocketAddrV4::new(UPLINK, 8080),
        &ns(&sy, "a"),
        SocketAddrV4::new(ANY, 80),
        100_000,
        3,
    );
    assert_eq!(
        seen,
        IpAddr::V4(GATEWAY),
        "hairpin: source rewritten to the gateway"
    );
    stop(sy);
}

#[test]
fn icmp_port_unreachable_from_outside_reaches_the_right_socket() {
    let Some(sy) = up() else { return };
    let sock: UdpSocket = traffic::udp_socket(&ns(&sy, "b"), SocketAddrV4::new(ANY, 0)).unwrap();
    sock.connect(SocketAddrV4::new(PEER, 9)).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    sock.send(b"anyone?").unwrap();
    let err = sock.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "the translated port unreachable arrived: {err}"
    );
    stop(sy);
}

#[test]
fn time_exceeded_from_beyond_the_uplink_finds_its_way_back() {
    let Some(sy) = up() else { return };
    // The outside peer forwards 203.0.113.0/24 (to a next hop that does not exist),
    // so a probe with TTL 2 dies there, and the peer's error comes back to a.
    netns::run_in_named(&ns(&sy, "outside"), || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        let mut r = Rtnl::new().unwrap();
        let eth0 = r.link_index("eth0").unwrap();
        r.route_add_v4(
            Ipv4Addr::new(203, 0, 113, 0),
            24,
            Some(Ipv4Addr::new(198, 51, 100, 254)),
            Some(eth0),
        )
        .unwrap();
    })
    .unwrap();
    match traffic::icmp_probe(
        &ns(&sy, "a"),
        Ipv4Addr::new(203, 0, 113, 5),
        2,
        56,
        false,
        T,
    )
    .unwrap()
    {
        IcmpReply::Error { from, kind, .. } => {
            assert_eq!((from, kind), (PEER, 11), "time exceeded from the peer")
        }
        other => panic!("expected time exceeded from beyond the uplink, got {other:?}"),
    }
    stop(sy);
}

#[test]
fn show_conntrack_lists_masqueraded_published_and_hairpin_flows() {
    let Some(sy) = up() else { return };
    let (a, b, out) = (ns(&sy, "a"), ns(&sy, "b"), ns(&sy, "outside"));
    let port80 = SocketAddrV4::new(ANY, 80);
    let published = SocketAddrV4::new(UPLINK, 8080);
    let server = SocketAddrV4::new(PEER, 9000);
    tcp_through(&a, server, &out, server, 100_000, 4);
    tcp_through(&out, published, &a, port80, 100_000, 5);
    tcp_through(&b, published, &a, port80, 100_000, 6);

    let ct: ConntrackReport = show(&sy, Table::Conntrack);
    assert!(
        ct.connections.iter().any(|c| c.nat == "snat"
            && c.original.src == A.to_string()
            && c.reply.dst == UPLINK.to_string()),
        "{ct:?}"
    );
    assert!(ct.connections.iter().any(|c| c.nat == "dnat"
        && c.original.dst == UPLINK.to_string()
        && c.original.dport == 8080
        && c.reply.src == A.to_string()));
    assert!(
        ct.connections.iter().any(|c| c.nat == "snat+dnat"),
        "the hairpin flow"
    );
    assert!(ct.count <= ct.max);
    stop(sy);
}
