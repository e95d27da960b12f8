//! Spoofing from inside a network, end to end: crafted frames put on one endpoint's
//! wire (`Capture::send`), and captures on the other namespaces proving that nothing
//! crossed. Covers the strict reverse-path check at the gateway, port security on a
//! bridged network, and the binding of endpoint addresses to their ports on an L3
//! network. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_core::wire::MacAddr;
use switchyard_testkit::traffic::{self, Capture, Seen};

const T: Duration = Duration::from_secs(5);
/// How long a capture listens after the last frame, to be sure nothing else comes.
const QUIET: Duration = Duration::from_millis(500);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn ip(n: u8, h: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, n, 0, h)
}

/// switchyard's MACs are derived from the addresses: 02:42 and the IPv4 address.
fn mac(n: u8, h: u8) -> MacAddr {
    MacAddr::from_ipv4(ip(n, h))
}

/// A UDP datagram from `src:5000` to `dst:9999` carrying `marker`, in a frame from
/// `smac` to `dmac`, checksums right.
fn udp_frame(smac: MacAddr, dmac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, marker: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(smac.0, dmac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(5000, 9999)
        .write(&mut v, marker)
        .unwrap();
    v
}

/// A gratuitous ARP: `sha` says it is `spa`.
fn gratuitous_arp(sha: MacAddr, spa: Ipv4Addr) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(sha.0, [0xff; 6])
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REPLY,
                &sha.0,
                &spa.octets(),
                &[0xff; 6],
                &spa.octets(),
            )
            .unwrap(),
        )
        .write(&mut v)
        .unwrap();
    v
}

fn carries(seen: &[Seen], marker: &[u8]) -> bool {
    seen.iter()
        .any(|s| s.bytes.windows(marker.len()).any(|w| w == marker))
}

/// front 10.1.0.0/24 (web .2) and back 10.2.0.0/24 (db .2), not joined, both
/// masquerading to outside 198.51.100.0/24 (peer .2).
fn front_and_back() -> Option<Switchyard> {
    require_root().then(|| {
        start(build(common::front_and_back(
            &unique_prefix(),
            |n| n,
            |n| n,
        )))
    })
}

#[test]
fn a_spoofed_source_of_another_network_never_leaves_and_no_reply_reaches_it() {
    let Some(sy) = front_and_back() else { return };
    let db = Capture::open(&ns(&sy, "db"), "eth0").unwrap();
    let at_web = Capture::open(&ns(&sy, "web"), "eth0").unwrap();
    let at_peer = Capture::open(&ns(&sy, "peer"), "eth0").unwrap();
    let peer_sock = traffic::udp_socket(&ns(&sy, "peer"), SocketAddrV4::new(PEER, 9999)).unwrap();
    peer_sock.set_read_timeout(Some(T)).unwrap();

    // db as itself: masqueraded out (the first datagram waits for the peer's ARP).
    db.send(&udp_frame(
        mac(2, 2),
        mac(2, 1),
        ip(2, 2),
        PEER,
        b"genuine-from-db",
    ))
    .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = peer_sock
        .recv_from(&mut buf)
        .expect("the genuine datagram arrives");
    assert_eq!(&buf[..n], b"genuine-from-db");
    assert_eq!(from.ip(), std::net::IpAddr::V4(UPLINK));

    // db with web's address as its source: dropped at back's gateway.
    db.send(&udp_frame(
        mac(2, 2),
        mac(2, 1),
        ip(1, 2),
        PEER,
        b"spoofed-as-web",
    ))
    .unwrap();
    let seen = at_peer.collect(QUIET, 1000).unwrap();
    assert!(
        carries(&seen, b"genuine-from-db"),
        "the capture works: {seen:?}"
    );
    assert!(
        !carries(&seen, b"spoofed-as-web"),
        "the spoofed datagram reached outside: {seen:?}"
    );
    // The peer answers what would have been the spoofed flow: nothing reaches front.
    peer_sock
        .send_to(b"reply-to-web", SocketAddrV4::new(UPLINK, 5000))
        .unwrap();
    let seen = at_web.collect(QUIET, 1000).unwrap();
    assert!(
        !carries(&seen, b"reply-to-web") && !carries(&seen, b"spoofed-as-web"),
        "traffic of the spoofed flow reached front: {seen:?}"
    );
    assert!(drops(&sy, "spoofed_source") >= 1, "{:?}", counters(&sy));
    assert_accounted(&sy);
    stop(sy);
}

/// lan 10.1.0.0/24 with port security (a .2, b .3, c .4); flat 10.4.0.0/24, L3 only
/// and without port security (la .2, lb .3, lc .4).
fn secured() -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            Topology::builder()
                .prefix(unique_prefix())
                .network(
                    NetworkBuilder::new("lan", "10.1.0.0/24")
                        .gateway("10.1.0.1")
                        .port_security(),
                )
                .network(
                    NetworkBuilder::new("flat", "10.4.0.0/24")
                        .gateway("10.4.0.1")
                        .l3(),
                )
                .endpoint(EndpointBuilder::new("a").on("lan").ip("10.1.0.2"))
                .endpoint(EndpointBuilder::new("b").on("lan").ip("10.1.0.3"))
                .endpoint(EndpointBuilder::new("c").on("lan").ip("10.1.0.4"))
                .endpoint(EndpointBuilder::new("la").on("flat").ip("10.4.0.2"))
                .endpoint(EndpointBuilder::new("lb").on("flat").ip("10.4.0.3"))
                .endpoint(EndpointBuilder::new("lc").on("flat").ip("10.4.0.4")),
        ))
    })
}

#[test]
fn port_security_keeps_an_endpoint_from_taking_anothers_mac_or_address() {
    let Some(sy) = secured() else { return };
    traffic::ping(&ns(&sy, "c"), ip(1, 2), T).expect("c pings a");
    let b = Capture::open(&ns(&sy, "b"), "eth0").unwrap();
    let at_a = Capture::open(&ns(&sy, "a"), "eth0").unwrap();
    let at_c = Capture::open(&ns(&sy, "c"), "eth0").unwrap();
    // b sends as a (a's MAC), as a with its own MAC (a's address), and claims a's
    // address by ARP.
    b.send(&udp_frame(
        mac(1, 2),
        mac(1, 4),
        ip(1, 2),
        ip(1, 4),
        b"b-with-a-mac",
    ))
    .unwrap();
    b.send(&udp_frame(
        mac(1, 3),
        mac(1, 4),
        ip(1, 2),
        ip(1, 4),
        b"b-with-a-ip",
    ))
    .unwrap();
    b.send(&gratuitous_arp(mac(1, 3), ip(1, 2))).unwrap();
    // b as itself still gets through.
    b.send(&udp_frame(
        mac(1, 3),
        MacAddr::BROADCAST,
        ip(1, 3),
        ip(1, 255),
        b"b-as-b",
    ))
    .unwrap();
    let seen_c = at_c.collect(QUIET, 1000).unwrap();
    let seen_a = at_a.collect(QUIET, 1000).unwrap();
    assert!(carries(&seen_c, b"b-as-b"), "the capture works: {seen_c:?}");
    for seen in [&seen_a, &seen_c] {
        assert!(!carries(seen, b"b-with-a-mac") && !carries(seen, b"b-with-a-ip"));
        assert!(
            !seen
                .iter()
                .any(|s| s.ethertype == 0x0806 && s.src == mac(1, 3)),
            "b's ARP claiming a's address was flooded: {seen:?}"
        );
    }
    // c still reaches a (a's MAC did not move to b).
    traffic::ping(&ns(&sy, "c"), ip(1, 2), T).expect("c still pings a");
    for id in ["port_security_mac", "port_security_ip", "port_security_arp"] {
        assert!(drops(&sy, id) >= 1, "{id}: {:?}", counters(&sy));
    }
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn on_an_l3_network_an_endpoint_cannot_take_anothers_address_or_mac() {
    let Some(sy) = secured() else { return };
    traffic::ping(&ns(&sy, "lc"), ip(4, 2), T).expect("lc pings la");
    let lb = Capture::open(&ns(&sy, "lb"), "eth0").unwrap();
    // lb claims la's address, then sends with la's MAC as its source.
    lb.send(&gratuitous_arp(mac(4, 3), ip(4, 2))).unwrap();
    lb.send(&udp_frame(
        mac(4, 2),
        mac(4, 1),
        ip(4, 3),
        ip(4, 4),
        b"lb-with-la-mac",
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // la's traffic still goes to la, and none of it to lb.
    traffic::ping(&ns(&sy, "lc"), ip(4, 2), T).expect("lc still pings la");
    let seen = lb.collect(QUIET, 1000).unwrap();
    assert!(
        !seen
            .iter()
            .any(|s| s.ethertype == 0x0800 && s.bytes[30..34] == ip(4, 2).octets()),
        "traffic for la reached lb: {seen:?}"
    );
    assert!(
        events(&sy, "neighbor_bind_refused") >= 1,
        "{:?}",
        counters(&sy)
    );
    assert!(events(&sy, "fdb_move_refused") >= 1, "{:?}", counters(&sy));
    assert_accounted(&sy);
    stop(sy);
}
