//! End to end through switchyard's NAT: masquerade out, published ports in, hairpin,
//! ICMP errors about translated flows, 10 MB each way. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use switchyard::control::protocol::{ConntrackReport, Table};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::traffic::{self, IcmpReply};

const T: Duration = Duration::from_secs(10);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const A: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);

pub const NAT: &str = r#"
[switch]
prefix = "PREFIX"

[[network]]
name = "default"
subnet = "172.17.0.0/16"
gateway = "172.17.0.1"
masquerade = true

[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true

[[route]]
prefix = "203.0.113.0/24"
via = "198.51.100.2"

[[endpoint]]
name = "a"
network = "default"
ip = "172.17.0.2"
publish = ["8080:80/tcp", "5353:53/udp"]

[[endpoint]]
name = "b"
network = "default"
ip = "172.17.0.3"

[[endpoint]]
name = "outside"
network = "outside"
ip = "198.51.100.2"
"#;

#[test]
fn masquerade_published_ports_hairpin_and_icmp_errors() {
    if !require_root() {
        return;
    }
    let topo = topology(NAT);
    let names = namespaces(&topo);
    let (a, b, out) = (names[0].clone(), names[1].clone(), names[2].clone());
    let sy = start(topo);
    let size = 10 * 1024 * 1024;

    // Out: a's TCP reaches a server outside, which sees the uplink address.
    let sink = traffic::tcp_sink(&out, SocketAddrV4::new(PEER, 9000), T).unwrap();
    let sent = traffic::tcp_send(&a, SocketAddrV4::new(PEER, 9000), size, 1, T).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!((got.bytes, got.digest), (size, sent), "10 MB out, intact");
    assert_eq!(
        got.peer.ip(),
        IpAddr::V4(UPLINK),
        "the server sees the uplink address"
    );

    // Out: UDP too.
    let echo = traffic::udp_echo_server(&out, SocketAddrV4::new(PEER, 7000), 1, T).unwrap();
    assert_eq!(
        traffic::udp_request(&a, SocketAddrV4::new(PEER, 7000), b"ping over NAT", T).unwrap(),
        b"ping over NAT"
    );
    assert_eq!(echo.join().unwrap().unwrap()[0].ip(), IpAddr::V4(UPLINK));

    // In: a client outside reaches a's port 80 through the published port 8080.
    let sink = traffic::tcp_sink(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), T).unwrap();
    let sent = traffic::tcp_send(&out, SocketAddrV4::new(UPLINK, 8080), size, 2, T).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!((got.bytes, got.digest), (size, sent), "10 MB in, intact");
    assert_eq!(
        got.peer.ip(),
        IpAddr::V4(PEER),
        "the endpoint sees the real client"
    );

    // In: UDP 5353 -> a:53.
    let echo =
        traffic::udp_echo_server(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53), 1, T).unwrap();
    assert_eq!(
        traffic::udp_request(&out, SocketAddrV4::new(UPLINK, 5353), b"query", T).unwrap(),
        b"query"
    );
    assert_eq!(echo.join().unwrap().unwrap()[0].ip(), IpAddr::V4(PEER));

    // Hairpin: b uses a's published address and gets through; a sees the gateway.
    let sink = traffic::tcp_sink(&a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), T).unwrap();
    let sent = traffic::tcp_send(&b, SocketAddrV4::new(UPLINK, 8080), 100_000, 3, T).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(got.digest, sent);
    assert_eq!(
        got.peer.ip(),
        IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)),
        "hairpin: source rewritten to the gateway"
    );

    // An ICMP port unreachable from outside reaches the right endpoint socket.
    let sock: UdpSocket =
        traffic::udp_socket(&b, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    sock.connect(SocketAddrV4::new(PEER, 9)).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    sock.send(b"anyone?").unwrap();
    let err = sock.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "the translated port unreachable arrived: {err}"
    );

    // Time exceeded from beyond the uplink: the outside peer forwards 203.0.113.0/24,
    // so a probe with TTL 2 dies there, and the peer's error finds its way back to a.
    netns::run_in_named(&out, || {
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
    match traffic::icmp_probe(&a, Ipv4Addr::new(203, 0, 113, 5), 2, 56, false, T).unwrap() {
        IcmpReply::Error { from, kind, .. } => {
            assert_eq!((from, kind), (PEER, 11), "time exceeded from the peer")
        }
        other => panic!("expected time exceeded from beyond the uplink, got {other:?}"),
    }

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

    drop(sy);
    assert_gone(&names);
}
