//! End to end: 802.1Q trunks. A trunk endpoint "r" — a router, or any VLAN-aware
//! host — has eth0 carrying VLAN 10 (network v10) and VLAN 20 (v20), with the
//! VLAN devices eth0.10 and eth0.20 switchyard made in its namespace; access
//! endpoints "a" and "a2" are on v10, "b" on v20. The tests check what a VLAN-aware
//! bridge (the kernel's, `vlan_filtering = 1`) would do: traffic on each VLAN, floods
//! kept to their VLAN, one MAC learned once per VLAN, and the frames it refuses,
//! counted. A second trunk, "s", carries VLAN 10 only. Each test starts a switch of
//! its own. Needs root.
//!
//! On a kernel without 802.1Q support (no `CONFIG_VLAN_8021Q`), which cannot make
//! eth0.10 and eth0.20, the trunk's eth0 is made bare (the setup's test hook
//! [`NO_VLAN_DEVICES_ENV`]) and the tests speak 802.1Q on it themselves, with frames
//! crafted on eth0; the one test that needs the VLAN devices' own traffic (ping and
//! TCP from eth0.N) says it is skipped.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::Duration;
use switchyard::control::protocol::{FdbRow, Table};
use switchyard::control::Switchyard;
use switchyard::topology::setup::NO_VLAN_DEVICES_ENV;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology, TopologyBuilder};
use switchyard_core::wire::MacAddr;
use switchyard_testkit::traffic::{self, Capture};

const T: Duration = Duration::from_secs(5);
/// How long a capture listens after the last frame, to be sure nothing else comes.
const QUIET: Duration = Duration::from_millis(300);

const A: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const A2: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const B: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const R10: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 254);
const R20: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 254);
/// The router's eth0 MAC, which eth0.10 and eth0.20 share.
const R_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x0a, 0x00, 0xfe]);

fn topology(prefix: &str) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .network(
            NetworkBuilder::new("v10", "10.10.0.0/24")
                .gateway("10.10.0.1")
                .vlan(10),
        )
        .network(
            NetworkBuilder::new("v20", "10.20.0.0/24")
                .gateway("10.20.0.1")
                .vlan(20),
        )
        .endpoint(EndpointBuilder::new("a").on("v10").ip(A))
        .endpoint(EndpointBuilder::new("a2").on("v10").ip(A2))
        .endpoint(EndpointBuilder::new("b").on("v20").ip(B))
        .endpoint(
            EndpointBuilder::new("r")
                .trunk("v10", R10)
                .trunk("v20", R20),
        )
        .endpoint(EndpointBuilder::new("s").trunk("v10", "10.10.0.253"))
}

/// Whether this kernel makes VLAN devices. Found out once, by starting the
/// topology: without 802.1Q support the start fails saying so, and leaves nothing
/// behind; the hook is then set for every later start.
fn vlan_devices() -> bool {
    static FULL: OnceLock<bool> = OnceLock::new();
    *FULL.get_or_init(|| {
        let topo = build(topology(&unique_prefix()));
        let names = namespaces(&topo);
        match Switchyard::start(topo, &run_root()) {
            Ok(sy) => {
                stop(sy);
                true
            }
            Err(e) if e.to_string().contains("no 802.1Q VLAN support") => {
                assert_gone(&names);
                eprintln!(
                    "this kernel has no 802.1Q support ({e}): trunks are tested without eth0.N"
                );
                std::env::set_var(NO_VLAN_DEVICES_ENV, "1");
                false
            }
            Err(e) => panic!("switchyard starts: {e}"),
        }
    })
}

/// A switch of this test's own, and whether its trunk has its VLAN devices; None
/// to skip (not root).
fn up() -> Option<(Switchyard, bool)> {
    if !require_root() {
        return None;
    }
    let full = vlan_devices();
    Some((start(build(topology(&unique_prefix()))), full))
}

/// A broadcast ARP request from the router for `target`, tagged with `vid`.
fn arp_request(vid: u16, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = MacAddr::BROADCAST.0.to_vec();
    f.extend_from_slice(&R_MAC.0);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&R_MAC.0);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A broadcast UDP/IPv4 frame from `src`, with `tags` (TPID, TCI) after the addresses.
fn broadcast(src: MacAddr, tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = MacAddr::BROADCAST.0.to_vec();
    f.extend_from_slice(&src.0);
    for &(tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    // An IPv4 header (no options) and 8 bytes of UDP, enough for a bridge.
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 10, 0, 254, 255, 255, 255, 255]);
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 16, 0, 0]);
    f.extend_from_slice(b"vlan-tst");
    f
}

#[test]
fn the_trunk_endpoint_pings_and_talks_tcp_on_each_vlan() {
    let Some((sy, full)) = up() else { return };
    if !full {
        eprintln!("skipped: no VLAN devices on this kernel to ping and connect from");
        stop(sy);
        return;
    }
    let r = ns(&sy, "r");
    traffic::ping(&r, A, T).expect("r pings a over eth0.10");
    traffic::ping(&r, B, T).expect("r pings b over eth0.20");
    traffic::ping(&ns(&sy, "b"), R20, T).expect("b pings r's eth0.20");
    traffic::ping(&r, Ipv4Addr::new(10, 20, 0, 1), T).expect("r pings v20's gateway");
    for (peer, dst) in [("a", A), ("b", B)] {
        let size = 4 * 1024 * 1024;
        let to = SocketAddrV4::new(dst, 9000);
        let sink = traffic::tcp_sink(&ns(&sy, peer), to, Duration::from_secs(30)).unwrap();
        let sent = traffic::tcp_send(&r, to, size, 7, Duration::from_secs(30)).unwrap();
        let got = sink.join().unwrap().unwrap();
        assert_eq!(got.bytes, size, "to {peer}");
        assert_eq!(got.digest, sent, "the bytes arrived intact at {peer}");
    }
    // And the other way, from an access port to the trunk.
    let to = SocketAddrV4::new(R10, 9001);
    let sink = traffic::tcp_sink(&r, to, Duration::from_secs(30)).unwrap();
    let sent =
        traffic::tcp_send(&ns(&sy, "a"), to, 1024 * 1024, 9, Duration::from_secs(30)).unwrap();
    assert_eq!(sink.join().unwrap().unwrap().digest, sent);
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn vlans_are_isolated_unless_routing_joins_them() {
    let Some((sy, _)) = up() else { return };
    let a = ns(&sy, "a");
    traffic::ping(&a, A2, T).expect("a pings a2 on its own VLAN");
    assert!(
        traffic::ping(&a, B, Duration::from_secs(1)).is_err(),
        "v10 and v20 are not joined: a cannot reach b"
    );
    stop(sy);
    // With the networks joined, switchyard routes between them.
    let topo = build(topology(&unique_prefix()).allow("v10", "v20"));
    let sy = start(topo);
    traffic::ping(&ns(&sy, "a"), B, T).expect("a pings b, routed by the gateways");
    stop(sy);
}

#[test]
fn the_gateway_of_each_vlan_answers_on_the_trunk() {
    let Some((sy, _)) = up() else { return };
    let trunk = Capture::open(&ns(&sy, "r"), "eth0").unwrap();
    for (vid, me, gw) in [
        (10, R10, Ipv4Addr::new(10, 10, 0, 1)),
        (20, R20, Ipv4Addr::new(10, 20, 0, 1)),
    ] {
        trunk.send(&arp_request(vid, me, gw)).unwrap();
        let gw_mac = MacAddr::from_ipv4(gw);
        let seen = trunk.collect(QUIET, 100).unwrap();
        assert!(
            seen.iter().any(|s| s.src == gw_mac
                && s.dst == R_MAC
                && s.bytes.len() >= 42
                && s.vlan_tci == Some(vid)),
            "VLAN {vid}'s gateway answered back over the trunk, tagged {vid}: {seen:?}"
        );
    }
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn one_mac_on_two_vlans_is_two_fdb_entries() {
    let Some((sy, _)) = up() else { return };
    let trunk = Capture::open(&ns(&sy, "r"), "eth0").unwrap();
    trunk.send(&broadcast(R_MAC, &[(0x8100, 10)])).unwrap();
    trunk.send(&broadcast(R_MAC, &[(0x8100, 20)])).unwrap();
    let mine = || {
        let fdb: Vec<FdbRow> = show(&sy, Table::Fdb);
        let mut mine: Vec<(String, String)> = fdb
            .iter()
            .filter(|row| row.mac == R_MAC.to_string())
            .map(|row| (row.network.clone(), row.port.clone()))
            .collect();
        mine.sort();
        mine
    };
    wait_until(T, "the router's MAC learned on both VLANs", || {
        mine().len() == 2
    });
    assert_eq!(
        mine(),
        [
            ("v10".to_string(), "r/eth0.10".to_string()),
            ("v20".to_string(), "r/eth0.20".to_string())
        ]
    );
    stop(sy);
}

#[test]
fn a_flood_stays_in_its_vlan() {
    let Some((sy, full)) = up() else { return };
    let (r, a, b) = (ns(&sy, "r"), ns(&sy, "a"), ns(&sy, "b"));
    let on_a = Capture::open(&a, "eth0").unwrap();
    let on_b = Capture::open(&b, "eth0").unwrap();
    // A broadcast on VLAN 10, tagged by the router ...
    let trunk = Capture::open(&r, "eth0").unwrap();
    trunk.send(&broadcast(R_MAC, &[(0x8100, 10)])).unwrap();
    let seen_a = on_a.collect(QUIET, 100).unwrap();
    let ours = |seen: &[traffic::Seen]| {
        seen.iter()
            .filter(|s| s.bytes.ends_with(b"vlan-tst"))
            .count()
    };
    assert_eq!(ours(&seen_a), 1, "a (VLAN 10) sees it: {seen_a:?}");
    assert!(
        seen_a.iter().all(|s| s.ethertype != 0x8100),
        "untagged on an access port: {seen_a:?}"
    );
    let seen_b = on_b.collect(QUIET, 100).unwrap();
    assert_eq!(ours(&seen_b), 0, "b (VLAN 20) does not: {seen_b:?}");
    // ... and one from an access port on VLAN 10 reaches the trunk once, as VLAN
    // 10's: on eth0.10, not eth0.20, where the VLAN devices are.
    let (on_r10, on_r20) = match full {
        true => (
            Some(Capture::open(&r, "eth0.10").unwrap()),
            Some(Capture::open(&r, "eth0.20").unwrap()),
        ),
        false => (None, None),
    };
    let _ = trunk.collect(Duration::from_millis(50), 100);
    Capture::open(&a, "eth0")
        .unwrap()
        .send(&broadcast(MacAddr([2, 0x42, 10, 10, 0, 2]), &[]))
        .unwrap();
    let seen = trunk.collect(QUIET, 100).unwrap();
    assert_eq!(ours(&seen), 1, "the trunk carries it once: {seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.bytes.ends_with(b"vlan-tst") && s.vlan_tci == Some(10)),
        "tagged 10, priority 0: {seen:?}"
    );
    if let (Some(on_r10), Some(on_r20)) = (on_r10, on_r20) {
        assert_eq!(ours(&on_r10.collect(QUIET, 100).unwrap()), 1, "on eth0.10");
        assert_eq!(
            ours(&on_r20.collect(QUIET, 100).unwrap()),
            0,
            "not on eth0.20"
        );
    }
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_tagged_frame_leaves_another_trunk_tagged_with_its_priority() {
    let Some((sy, _)) = up() else { return };
    let on_s = Capture::open(&ns(&sy, "s"), "eth0").unwrap();
    let on_a = Capture::open(&ns(&sy, "a"), "eth0").unwrap();
    // PCP 5, DEI 0, VLAN 10, from r's trunk.
    let trunk = Capture::open(&ns(&sy, "r"), "eth0").unwrap();
    trunk
        .send(&broadcast(R_MAC, &[(0x8100, 0xa000 | 10)]))
        .unwrap();
    let seen = on_s.collect(QUIET, 100).unwrap();
    let ours: Vec<_> = seen
        .iter()
        .filter(|s| s.bytes.ends_with(b"vlan-tst"))
        .collect();
    assert_eq!(ours.len(), 1, "{seen:?}");
    assert_eq!(
        ours[0].vlan_tci,
        Some(0xa000 | 10),
        "VLAN 10, priority kept"
    );
    let seen = on_a.collect(QUIET, 100).unwrap();
    assert!(
        seen.iter()
            .any(|s| s.bytes.ends_with(b"vlan-tst") && s.vlan_tci.is_none()),
        "untagged on the access port: {seen:?}"
    );
    assert_accounted(&sy);
    stop(sy);
}

/// A DNS query (UDP to port 53) from the router's VLAN `vid` address `from` to
/// `to`, tagged `vid`: what eth0.N would send.
fn dns_query(vid: u16, from: Ipv4Addr, to: Ipv4Addr, name: &str) -> Vec<u8> {
    let dns = switchyard_testkit::dns::a_query(0x5151, name);
    let gw_mac = MacAddr::from_ipv4(to);
    let mut f = gw_mac.0.to_vec();
    f.extend_from_slice(&R_MAC.0);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + dns.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&from.octets());
    ip.extend_from_slice(&to.octets());
    let sum = switchyard_core::wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    // UDP without a checksum (0: none, as IPv4 allows).
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&dns);
    f
}

#[test]
fn dns_answers_a_trunks_vlan_from_that_vlans_network() {
    let Some((sy, _)) = up() else { return };
    let trunk = Capture::open(&ns(&sy, "r"), "eth0").unwrap();
    let gw20 = Ipv4Addr::new(10, 20, 0, 1);
    trunk.send(&dns_query(20, R20, gw20, "b")).unwrap();
    let answer = wait_for(T, "the DNS answer on VLAN 20", || {
        trunk
            .collect(Duration::from_millis(100), 100)
            .unwrap()
            .into_iter()
            .find(|s| s.src == MacAddr::from_ipv4(gw20) && s.ethertype == 0x0800)
    });
    assert_eq!(
        answer.vlan_tci,
        Some(20),
        "answered on the VLAN it asked on"
    );
    assert!(
        answer.bytes.windows(4).any(|w| w == B.octets()),
        "b's address, from v20's zone: {answer:?}"
    );
    stop(sy);
}

#[test]
fn refused_tags_are_dropped_and_counted() {
    let Some((sy, _)) = up() else { return };
    let (r, a, a2) = (ns(&sy, "r"), ns(&sy, "a"), ns(&sy, "a2"));
    let trunk = Capture::open(&r, "eth0").unwrap();
    let on_a = Capture::open(&a, "eth0").unwrap();
    // A VLAN the trunk does not carry.
    trunk.send(&broadcast(R_MAC, &[(0x8100, 30)])).unwrap();
    wait_until(T, "vlan_not_allowed counted", || {
        drops(&sy, "vlan_not_allowed") == 1
    });
    // Stacked tags, 802.1Q in 802.1Q.
    trunk
        .send(&broadcast(R_MAC, &[(0x8100, 10), (0x8100, 20)]))
        .unwrap();
    wait_until(T, "vlan_stacked counted", || {
        drops(&sy, "vlan_stacked") == 1
    });
    // A priority tag is no VLAN: on this trunk, which has no native network, it is
    // an untagged frame, and refused as one.
    trunk.send(&broadcast(R_MAC, &[(0x8100, 0xa000)])).unwrap();
    trunk.send(&broadcast(R_MAC, &[])).unwrap();
    wait_until(T, "vlan_untagged counted", || {
        drops(&sy, "vlan_untagged") == 2
    });
    assert!(
        !on_a
            .collect(QUIET, 100)
            .unwrap()
            .iter()
            .any(|s| s.bytes.ends_with(b"vlan-tst")),
        "none of them reached VLAN 10"
    );
    // On an access port: a tag is a VLAN the port is not in ...
    let a_mac = MacAddr([2, 0x42, 10, 10, 0, 2]);
    let access = Capture::open(&a, "eth0").unwrap();
    let on_a2 = Capture::open(&a2, "eth0").unwrap();
    access.send(&broadcast(a_mac, &[(0x8100, 10)])).unwrap();
    wait_until(T, "the access port's tag refused", || {
        drops(&sy, "vlan_not_allowed") == 2
    });
    // ... and a priority tag is its own untagged VLAN: bridged, without the tag.
    access.send(&broadcast(a_mac, &[(0x8100, 0x6000)])).unwrap();
    let seen = on_a2.collect(QUIET, 100).unwrap();
    let ours: Vec<_> = seen
        .iter()
        .filter(|s| s.bytes.ends_with(b"vlan-tst"))
        .collect();
    assert_eq!(ours.len(), 1, "only the priority-tagged one: {seen:?}");
    assert_eq!(ours[0].bytes, broadcast(a_mac, &[]), "untagged");
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_trunk_endpoint_goes_whole_and_keeps_its_shape_while_running() {
    use switchyard::control::client::{self, ClientError};
    use switchyard::control::protocol::{ErrorCode, NetworkConnect, PortRow, Reply, Request};
    let Some((sy, _)) = up() else { return };
    let sock = sy.socket().to_path_buf();
    let refused = |req: &Request, code: ErrorCode| match client::request(&sock, req) {
        Err(ClientError::Remote { code: c, message }) => {
            assert_eq!(c, code, "{message}");
            message
        }
        other => panic!("{} was not refused: {other:?}", req.name()),
    };
    // A trunk's networks are its eth0's: no interface of its own to connect.
    let why = refused(
        &Request::NetworkConnect(NetworkConnect {
            network: "v20".into(),
            endpoint: "s".into(),
            ip: None,
            ifname: None,
        }),
        ErrorCode::Invalid,
    );
    assert!(why.contains("trunk endpoint takes no network"), "{why}");
    // A network a trunk carries is in use.
    let why = refused(&Request::NetworkRm { name: "v20".into() }, ErrorCode::InUse);
    assert!(why.contains("(b, r)"), "b on it, and r's trunk: {why}");
    // Learned on both VLANs, then removed with every port of its trunk.
    let trunk = Capture::open(&ns(&sy, "r"), "eth0").unwrap();
    trunk.send(&broadcast(R_MAC, &[(0x8100, 10)])).unwrap();
    trunk.send(&broadcast(R_MAC, &[(0x8100, 20)])).unwrap();
    let learned = || {
        show::<Vec<FdbRow>>(&sy, Table::Fdb)
            .iter()
            .filter(|row| row.mac == R_MAC.to_string())
            .count()
    };
    wait_until(T, "the router's MAC learned on both VLANs", || {
        learned() == 2
    });
    drop(trunk);
    let r_ns = ns(&sy, "r");
    match client::request(&sock, &Request::EndpointRm { name: "r".into() }) {
        Ok(Reply::Changed(c)) => assert_eq!(c.forgotten.fdb, 2, "{c:?}"),
        other => panic!("endpoint rm r: {other:?}"),
    }
    assert!(
        !switchyard_os::netns::exists(&r_ns),
        "its namespace is gone"
    );
    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    assert!(ports.iter().all(|p| p.endpoint != "r"), "{ports:?}");
    assert_eq!(learned(), 0);
    // The other trunk still works.
    let s = Capture::open(&ns(&sy, "s"), "eth0").unwrap();
    s.send(&arp_request(
        10,
        Ipv4Addr::new(10, 10, 0, 253),
        Ipv4Addr::new(10, 10, 0, 1),
    ))
    .unwrap();
    let gw = MacAddr::from_ipv4(Ipv4Addr::new(10, 10, 0, 1));
    let seen = s.collect(QUIET, 100).unwrap();
    assert!(
        seen.iter().any(|f| f.src == gw && f.vlan_tci == Some(10)),
        "{seen:?}"
    );
    assert_accounted(&sy);
    stop(sy);
}
