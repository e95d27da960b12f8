//! Conntrack zones and shares, end to end: networks `front` and `back`, not joined,
//! both masquerading to `outside`. An endpoint of back forges packets that match a
//! flow of front (its reply, or an ICMP error about a flow) and a capture in front's
//! endpoint shows that nothing crosses; a flood of answered pings or connections from
//! front does not stop back's new flows. Needs root.

use switchyard_testkit::fixtures::*;

use etherparse::{icmpv4::DestUnreachableHeader, Icmpv4Type, PacketBuilder};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::Switchyard;
use switchyard_core::wire::MacAddr;
use switchyard_testkit::traffic::{self, Capture};

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(700);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const BACK_GW: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// front (web 10.1.0.2) and back (db 10.2.0.2), not joined, both masquerading to
/// outside (peer, a host at 198.51.100.2).
fn up() -> Option<Switchyard> {
    up_with(65536, None, true)
}

/// [`up`] with a conntrack table of `max` entries, front's own share of it, and
/// back's source validation on or off (off tests what conntrack's zones do on their
/// own: a forged reply also has a spoofed source, which `rp_filter` drops first).
fn up_with(max: usize, front_share: Option<usize>, back_rp_filter: bool) -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            front_and_back(
                &unique_prefix(),
                |front| match front_share {
                    Some(share) => front.conntrack_max(share),
                    None => front,
                },
                |back| back.rp_filter(back_rp_filter),
            )
            .switch(|s| s.conntrack_max = max),
        ))
    })
}

/// Frames that reached front's endpoint carrying `needle`.
fn seen_with(cap: &Capture, needle: &[u8]) -> usize {
    cap.collect(QUIET, 1000)
        .unwrap()
        .iter()
        .filter(|s| s.bytes.windows(needle.len()).any(|w| w == needle))
        .count()
}

#[test]
fn a_reply_forged_from_another_network_is_not_delivered_into_the_flows_network() {
    let Some(sy) = up_with(65536, None, false) else {
        return;
    };
    let server = traffic::udp_socket(&ns(&sy, "peer"), SocketAddrV4::new(PEER, 53)).unwrap();
    server.set_read_timeout(Some(T)).unwrap();
    let client = traffic::udp_socket(
        &ns(&sy, "web"),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000),
    )
    .unwrap();
    client.set_read_timeout(Some(QUIET)).unwrap();
    client
        .send_to(b"query", SocketAddrV4::new(PEER, 53))
        .unwrap();
    let mut buf = [0u8; 1500];
    let (_, seen) = server.recv_from(&mut buf).unwrap();
    let std::net::SocketAddr::V4(seen) = seen else {
        panic!("{seen}")
    };
    assert_eq!(*seen.ip(), UPLINK, "masqueraded");
    let at_web = Capture::open(&ns(&sy, "web"), "eth0").unwrap();
    let db = Capture::open(&ns(&sy, "db"), "eth0").unwrap();
    // db forges the reply (198.51.100.2:53 > the translated address) to its gateway.
    let mut forged = Vec::new();
    PacketBuilder::ethernet2(MacAddr::from_ipv4(DB).0, MacAddr::from_ipv4(BACK_GW).0)
        .ipv4(PEER.octets(), seen.ip().octets(), 64)
        .udp(53, seen.port())
        .write(&mut forged, b"forged-reply")
        .unwrap();
    let before = drops(&sy, "local_protocol");
    db.send(&forged).unwrap();
    assert_eq!(
        seen_with(&at_web, b"forged-reply"),
        0,
        "nothing reached front"
    );
    assert!(
        client.recv_from(&mut buf).is_err(),
        "the client got no datagram"
    );
    assert_eq!(events(&sy, "ct_zone_mismatch"), 1);
    assert_eq!(drops(&sy, "local_protocol"), before + 1, "dropped, counted");
    // The flow is intact: the real reply, from outside, comes back.
    server.send_to(b"answer", seen).unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"answer");
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn an_icmp_error_about_a_flow_of_back_is_not_delivered_into_front() {
    let Some(sy) = up() else { return };
    let server = traffic::udp_socket(&ns(&sy, "peer"), SocketAddrV4::new(PEER, 53)).unwrap();
    server.set_read_timeout(Some(T)).unwrap();
    let client = traffic::udp_socket(
        &ns(&sy, "db"),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 6000),
    )
    .unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    client
        .send_to(b"query", SocketAddrV4::new(PEER, 53))
        .unwrap();
    let mut buf = [0u8; 1500];
    let (_, seen) = server.recv_from(&mut buf).unwrap();
    server.send_to(b"answer", seen).unwrap();
    client.recv_from(&mut buf).unwrap();
    // back's flow is tracked both ways. db now sends a port unreachable quoting the
    // reply it received (198.51.100.2:53 > 10.2.0.2:6000), addressed to web.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(PEER.octets(), DB.octets(), 63)
        .udp(53, 6000)
        .write(&mut quoted, b"answer")
        .unwrap();
    quoted.truncate(28);
    let mut error = Vec::new();
    PacketBuilder::ethernet2(MacAddr::from_ipv4(DB).0, MacAddr::from_ipv4(BACK_GW).0)
        .ipv4(DB.octets(), WEB.octets(), 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut error, &quoted)
        .unwrap();
    let at_web = Capture::open(&ns(&sy, "web"), "eth0").unwrap();
    let db = Capture::open(&ns(&sy, "db"), "eth0").unwrap();
    let before = drops(&sy, "isolated");
    db.send(&error).unwrap();
    let icmp_errors = at_web
        .collect(QUIET, 1000)
        .unwrap()
        .into_iter()
        .filter(|s| s.ethertype == 0x0800 && s.bytes[14 + 9] == 1 && s.bytes[34] == 3)
        .count();
    assert_eq!(icmp_errors, 0, "no ICMP error reached front");
    assert_eq!(events(&sy, "ct_related_mismatch"), 1);
    assert_eq!(drops(&sy, "isolated"), before + 1, "dropped as isolated");
    assert_accounted(&sy);
    stop(sy);
}

/// An echo request from web to the host outside, crafted (so every one has an
/// identifier of its own and starts a flow).
fn ping_from_web(id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(
        MacAddr::from_ipv4(WEB).0,
        MacAddr::from_ipv4(Ipv4Addr::new(10, 1, 0, 1)).0,
    )
    .ipv4(WEB.octets(), PEER.octets(), 64)
    .icmpv4_echo_request(id, 1)
    .write(&mut v, b"flood")
    .unwrap();
    v
}

/// 32 answered pings from front fill a table of 32 entries; as in netfilter an ICMP
/// entry is never assured, so back's new flow still gets in (evicting a ping).
#[test]
fn answered_pings_from_one_network_do_not_lock_the_table_for_another() {
    let Some(sy) = up_with(32, None, true) else {
        return;
    };
    let web = Capture::open(&ns(&sy, "web"), "eth0").unwrap();
    for id in 0..32 {
        web.send(&ping_from_web(id)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // The host outside answers every one: the table is full of answered pings.
    let replies = web
        .collect(QUIET, 1000)
        .unwrap()
        .into_iter()
        .filter(|s| s.ethertype == 0x0800 && s.bytes[14 + 9] == 1 && s.bytes[34] == 0)
        .count();
    assert_eq!(replies, 32, "echo replies that reached web");
    assert_eq!(events(&sy, "ct_new"), 32);
    let server = SocketAddrV4::new(PEER, 7000);
    let echo = traffic::udp_echo_server(&ns(&sy, "peer"), server, 1, T).unwrap();
    assert_eq!(
        traffic::udp_request(&ns(&sy, "db"), server, b"from back", T).unwrap(),
        b"from back"
    );
    echo.join().unwrap().unwrap();
    assert_eq!(drops(&sy, "conntrack_full"), 0);
    assert!(events(&sy, "ct_evicted") >= 1);
    assert_accounted(&sy);
    stop(sy);
}

/// front's share is 4 entries of 64: four open connections hold it, front's fifth is
/// refused (`conntrack_network_full`), and back still connects.
#[test]
fn a_network_at_its_conntrack_share_does_not_stop_another_networks_flows() {
    let Some(sy) = up_with(64, Some(4), true) else {
        return;
    };
    let server = SocketAddrV4::new(PEER, 9000);
    let listener = traffic::tcp_listener(&ns(&sy, "peer"), server).unwrap();
    let web = ns(&sy, "web");
    let mut open = Vec::new();
    for _ in 0..4 {
        let c = traffic::tcp_connect(&web, server, T).unwrap();
        open.push((c, listener.accept().unwrap().0));
    }
    assert!(
        traffic::tcp_connect(&web, server, Duration::from_secs(1)).is_err(),
        "front's fifth connection is refused"
    );
    assert!(drops(&sy, "conntrack_network_full") >= 1);
    let from_back = traffic::tcp_connect(&ns(&sy, "db"), server, T);
    assert!(from_back.is_ok(), "back connects: {from_back:?}");
    assert_eq!(drops(&sy, "conntrack_full"), 0);
    drop(open);
    assert_accounted(&sy);
    stop(sy);
}
