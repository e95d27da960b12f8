//! Host interfaces as ports (`parent`, macvlan's bridge mode): a veth pair whose one
//! end (`eth1`) sits in a "parent" namespace handed to switchyard with
//! `parent_netns`, and whose other end (`lan0`) is in a "lan" namespace holding a host
//! of the LAN. The host and the endpoints reach each other by ping and TCP, the
//! endpoints each other; `show ports` lists the parent; a MAC flood from the LAN
//! stops at the network's FDB share; and when switchyard stops the parent is as it
//! was (same ifindex, MAC, MTU, addresses, up, promiscuity back to what it was).
//! Bad parents are refused before anything is made.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::Duration;
use switchyard::control::protocol::{FdbRow, PortRow, Table};
use switchyard::control::{StartError, Switchyard};
use switchyard::topology::config::{self, ParentMode};
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology, TopologyBuilder};
use switchyard_core::wire::MacAddr;
use switchyard_os::netlink::packet::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo as LinkInfoAttr, LinkMessage,
};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::fixtures::*;
use switchyard_testkit::traffic::{self, Capture};

const T: Duration = Duration::from_secs(10);
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// An address of the parent's own host, on a subnet of its own: it must be there
/// after switchyard is gone.
const PARENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The "parent" and "lan" namespaces joined by a veth pair, removed when dropped
/// (also while a failing test unwinds).
struct Lan {
    par: String,
    lan: String,
}

/// What must be the same before and after switchyard had the parent.
#[derive(Debug, PartialEq, Eq)]
struct ParentState {
    index: u32,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
    up: bool,
    promiscuity: Option<u32>,
    addrs: Vec<(Ipv4Addr, u8)>,
}

impl Lan {
    fn new(prefix: &str) -> Lan {
        let lan = Lan {
            par: format!("{prefix}par"),
            lan: format!("{prefix}lan"),
        };
        netns::create(&lan.par).unwrap();
        netns::create(&lan.lan).unwrap();
        let lan_fd = netns::open(&lan.lan).unwrap();
        netns::run_in_named(&lan.par, || {
            let mut r = Rtnl::new().unwrap();
            let mut peer = LinkMessage::default();
            peer.attributes
                .push(LinkAttribute::IfName("lan0".to_string()));
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName("eth1".to_string()));
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfoAttr::Kind(InfoKind::Veth),
                LinkInfoAttr::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]));
            r.link_add(m, || "add veth eth1 peer lan0".into()).unwrap();
            let peer = r.link_index("lan0").unwrap();
            r.link_set_netns(peer, lan_fd.as_fd()).unwrap();
            let eth1 = r.link_index("eth1").unwrap();
            r.addr_add_v4(eth1, PARENT_ADDR, 24).unwrap();
            r.link_set_up(eth1).unwrap();
        })
        .unwrap();
        netns::run_in_named(&lan.lan, || {
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
            let mut r = Rtnl::new().unwrap();
            let lo = r.link_index("lo").unwrap();
            r.link_set_up(lo).unwrap();
            let lan0 = r.link_index("lan0").unwrap();
            r.addr_add_v4(lan0, LAN_HOST, 24).unwrap();
            r.link_set_up(lan0).unwrap();
        })
        .unwrap();
        lan
    }

    fn parent_state(&self) -> ParentState {
        netns::run_in_named(&self.par, || {
            let mut r = Rtnl::new().unwrap();
            let l = r
                .links()
                .unwrap()
                .into_iter()
                .find(|l| l.name == "eth1")
                .expect("eth1 still exists");
            let addrs = r
                .addrs_v4()
                .unwrap()
                .into_iter()
                .filter(|a| a.0 == l.index)
                .map(|a| (a.1, a.2))
                .collect();
            ParentState {
                index: l.index,
                mac: l.mac,
                mtu: l.mtu,
                up: l.up,
                promiscuity: l.promiscuity,
                addrs,
            }
        })
        .unwrap()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = netns::delete(&self.par);
        let _ = netns::delete(&self.lan);
    }
}

/// Network `lan` 10.77.0.0/24 with `eth1` of `par` as its parent; endpoints `a`
/// and `b`; two workers, so the parent is a fanout group of two sockets.
fn on_lan(
    prefix: &str,
    lan: &Lan,
    net: impl FnOnce(NetworkBuilder) -> NetworkBuilder,
) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .switch(|s| s.workers = 2)
        .network(net(
            NetworkBuilder::new("lan", "10.77.0.0/24").parent("eth1", Some(&lan.par))
        ))
        .endpoint(EndpointBuilder::new("a").on("lan").ip(A))
        .endpoint(EndpointBuilder::new("b").on("lan").ip(B))
}

fn parent_row(sy: &Switchyard) -> PortRow {
    show::<Vec<PortRow>>(sy, Table::Ports)
        .into_iter()
        .find(|r| r.port == "parent:eth1")
        .expect("show ports lists the parent")
}

/// `bytes` over TCP from `from` to `to` (listening in `to_ns`): every byte arrives,
/// and from the sender's own address (nothing translated).
fn tcp_transfer(from_ns: &str, from: Ipv4Addr, to_ns: &str, to: Ipv4Addr, bytes: u64, seed: u64) {
    let at = SocketAddrV4::new(to, 5001);
    let sink = traffic::tcp_sink(to_ns, at, T).unwrap();
    let sent = traffic::tcp_send(from_ns, at, bytes, seed, T).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.digest, sent, "the stream arrived intact");
    assert_eq!(got.peer.ip(), std::net::IpAddr::V4(from));
}

#[test]
fn endpoints_sit_on_the_parents_lan_and_the_parent_is_left_as_it_was() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lan = Lan::new(&prefix);
    let before = lan.parent_state();
    let sy = start(build(on_lan(&prefix, &lan, |n| n)));
    let (a, b) = (ns(&sy, "a"), ns(&sy, "b"));

    let row = parent_row(&sy);
    assert_eq!(
        (row.kind.as_str(), row.state.as_str(), row.network.as_str()),
        ("parent", "up", "lan")
    );
    assert_eq!(
        (row.interface.as_str(), row.netns.as_str()),
        ("eth1", lan.par.as_str())
    );
    assert_eq!(row.queues, 2, "one socket per worker");
    let during = lan.parent_state();
    assert_eq!(
        during.promiscuity,
        before.promiscuity.map(|p| p + 1),
        "promiscuous through switchyard's socket membership while attached"
    );

    traffic::ping(&lan.lan, A, T).expect("the LAN host pings endpoint a");
    traffic::ping(&lan.lan, B, T).expect("the LAN host pings endpoint b");
    traffic::ping(&a, LAN_HOST, T).expect("endpoint a pings the LAN host");
    traffic::ping(&a, B, T).expect("endpoint a pings endpoint b");
    traffic::ping(&b, A, T).expect("endpoint b pings endpoint a");
    // Each endpoint is on the LAN with its own MAC, as with macvlan.
    let fdb: Vec<FdbRow> = show(&sy, Table::Fdb);
    for mac in ["02:42:0a:4d:00:02", "02:42:0a:4d:00:03"] {
        assert!(fdb.iter().any(|r| r.mac == mac), "{mac} learned: {fdb:?}");
    }
    assert!(
        fdb.iter().any(|r| r.port == "parent:eth1"),
        "the LAN host's MAC is learned on the parent: {fdb:?}"
    );

    tcp_transfer(&lan.lan, LAN_HOST, &a, A, 16 << 20, 1);
    tcp_transfer(&b, B, &lan.lan, LAN_HOST, 16 << 20, 2);
    let c = counters(&sy);
    let p = c.ports.iter().find(|p| p.port == "parent:eth1").unwrap();
    // What a veth parent delivers: the LAN host's TSO super-frames, whole.
    assert!(p.rx_gso > 0, "a veth hands TCP over as super-frames: {p:?}");
    assert_eq!(p.rx_truncated, 0, "{p:?}");
    assert_accounted(&sy);

    stop(sy);
    assert_eq!(lan.parent_state(), before, "the parent is as it was");
}

#[test]
fn super_frames_and_partial_checksums_from_the_parent_are_finished_for_taps_without_offloads() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lan = Lan::new(&prefix);
    // The LAN host's TCP leaves it as 64 KB super-frames with partial checksums (a
    // veth takes TSO and checksum offload); the endpoints' TAPs take neither.
    let sy = start(build(on_lan(&prefix, &lan, |n| n.offloads(false))));
    let a = ns(&sy, "a");
    tcp_transfer(&lan.lan, LAN_HOST, &a, A, 8 << 20, 5);
    let c = counters(&sy);
    let parent = c.ports.iter().find(|p| p.port == "parent:eth1").unwrap();
    let to_a = c.ports.iter().find(|p| p.port == "a").unwrap();
    assert!(parent.rx_gso > 0, "{parent:?}");
    assert!(
        to_a.tx_segmented > 0 && to_a.tx_segments > to_a.tx_segmented,
        "cut in software for a: {to_a:?}"
    );
    assert_accounted(&sy);
    stop(sy);
}

/// The MACs the LAN host has for `ips`, as its neighbor table says.
fn lan_neighbors(lan: &Lan, ips: &[Ipv4Addr]) -> Vec<Option<[u8; 6]>> {
    let ips = ips.to_vec();
    netns::run_in_named(&lan.lan, move || {
        let table = Rtnl::new().unwrap().neighbours_v4().unwrap();
        ips.iter()
            .map(|ip| table.iter().find(|n| n.ip == *ip).and_then(|n| n.mac))
            .collect()
    })
    .unwrap()
}

#[test]
fn ipvlan_l2_endpoints_show_the_lan_the_parents_mac() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lan = Lan::new(&prefix);
    let before = lan.parent_state();
    let gw = Ipv4Addr::new(10, 77, 0, 1);
    let sy = start(build(on_lan(&prefix, &lan, |n| n.ipvlan_l2().gateway(gw))));
    let (a, b) = (ns(&sy, "a"), ns(&sy, "b"));

    traffic::ping(&lan.lan, A, T).expect("the LAN host pings endpoint a");
    traffic::ping(&lan.lan, B, T).expect("the LAN host pings endpoint b");
    traffic::ping(&lan.lan, gw, T).expect("the LAN host pings the gateway");
    traffic::ping(&a, LAN_HOST, T).expect("endpoint a pings the LAN host");
    traffic::ping(&b, LAN_HOST, T).expect("endpoint b pings the LAN host");
    traffic::ping(&a, B, T).expect("endpoint a pings endpoint b");
    // Every address of the network is at the parent's MAC, seen from the LAN.
    assert_eq!(
        lan_neighbors(&lan, &[A, B, gw]),
        vec![before.mac; 3],
        "the LAN sees one MAC, the parent's"
    );
    tcp_transfer(&lan.lan, LAN_HOST, &a, A, 8 << 20, 3);
    tcp_transfer(&b, B, &lan.lan, LAN_HOST, 8 << 20, 4);
    // Unicast on the LAN to someone else is not the network's (the parent is
    // promiscuous and sees it): refused and counted, never flooded to the endpoints.
    let host = Capture::open(&lan.lan, "lan0").unwrap();
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0xdd, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[0x02, 0xdd, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    host.send(&frame).unwrap();
    wait_until(T, "the stray frame to be counted", || {
        counters(&sy)
            .ports
            .iter()
            .any(|p| p.port == "parent:eth1" && p.rx_unclaimed > 0)
    });
    assert_accounted(&sy);
    stop(sy);
    assert_eq!(lan.parent_state(), before, "the parent is as it was");
}

#[test]
fn a_mac_flood_from_the_lan_stops_at_the_networks_fdb_share() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lan = Lan::new(&prefix);
    let sy = start(build(on_lan(&prefix, &lan, |n| n.fdb_max(32))));
    let host = Capture::open(&lan.lan, "lan0").unwrap();
    for i in 0..1000u32 {
        let mut frame = vec![0u8; 60];
        frame[..6].copy_from_slice(&MacAddr::BROADCAST.0);
        frame[6..12].copy_from_slice(&[0x02, 0xee, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        host.send(&frame).unwrap();
    }
    wait_until(T, "the flood to meet the network's share", || {
        events(&sy, "fdb_network_limit") > 0
    });
    let fdb: Vec<FdbRow> = show(&sy, Table::Fdb);
    let learned = fdb.iter().filter(|r| r.network == "lan").count();
    assert!(learned <= 32, "{learned} MACs learned, share 32");
    // The endpoints still reach each other and the LAN (flooded if not learned).
    traffic::ping(&ns(&sy, "a"), B, T).expect("a pings b after the flood");
    traffic::ping(&lan.lan, A, T).expect("the LAN host pings a after the flood");
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn a_missing_parent_stops_up_before_anything_is_made() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let lan = Lan::new(&prefix);
    let topo = build(
        Topology::builder()
            .prefix(prefix.as_str())
            .network(NetworkBuilder::new("lan", "10.77.0.0/24").parent("nosuch0", Some(&lan.par)))
            .endpoint(EndpointBuilder::new("a").on("lan")),
    );
    let names = namespaces(&topo);
    let err = match Switchyard::start(topo, &run_root()) {
        Err(e) => e,
        Ok(_) => panic!("a parent that does not exist was attached"),
    };
    assert!(matches!(err, StartError::Parent(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("nosuch0") && msg.contains("no interface") && msg.contains(&lan.par),
        "{msg}"
    );
    assert_gone(&names);
    assert!(
        !run_root().join(&prefix).join("state.json").exists(),
        "no state file: nothing was made"
    );
    // A namespace that is not there is as clear.
    let topo = build(
        Topology::builder()
            .prefix(prefix.as_str())
            .network(
                NetworkBuilder::new("lan", "10.77.0.0/24").parent("eth1", Some("/nonexistent/ns")),
            )
            .endpoint(EndpointBuilder::new("a").on("lan")),
    );
    let err = Switchyard::start(topo, &run_root()).err().expect("refused");
    assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    assert_gone(&names);
}

/// The checks a file gets before anything runs (no root needed).
#[test]
fn bad_parents_are_refused_with_the_field_and_the_reason() {
    let refused = |extra: &str| -> String {
        let text = format!(
            "[[network]]\nname = \"lan\"\nsubnet = \"10.77.0.0/24\"\n{extra}\n\
             [[network]]\nname = \"other\"\nsubnet = \"10.78.0.0/24\"\nparent = \"eth2\"\n"
        );
        config::parse(&text, "t.toml").unwrap_err().to_string()
    };
    let e = refused("parent = \"lo\"");
    assert!(
        e.contains("network \"lan\".parent") && e.contains("loopback"),
        "{e}"
    );
    let e = refused("parent = \"eth2\"");
    assert!(
        e.contains("network \"other\".parent")
            && e.contains("already the parent of network \"lan\""),
        "{e}"
    );
    let e = refused("parent_netns = \"lan\"");
    assert!(
        e.contains("network \"lan\".parent_netns") && e.contains("`parent` is not set"),
        "{e}"
    );
    let e = refused("parent = \"has/slash\"");
    assert!(e.contains("not an interface name"), "{e}");
    let e = refused("parent = \"eth1\"\nparent_netns = \"../x\"");
    assert!(e.contains("network \"lan\".parent_netns"), "{e}");
    let e = refused("parent = \"eth1\"\ngateway = \"10.77.0.1\"\nmode = \"l3\"");
    assert!(e.contains("must be a bridge network"), "{e}");
    let e = refused("mode = \"ipvlan-l2\"");
    assert!(
        e.contains("network \"lan\".mode") && e.contains("needs a `parent`"),
        "{e}"
    );
    // The same name in two namespaces is two interfaces.
    let ok = "[[network]]\nname = \"lan\"\nsubnet = \"10.77.0.0/24\"\nparent = \"eth1\"\nparent_netns = \"x\"\n\
              [[network]]\nname = \"other\"\nsubnet = \"10.78.0.0/24\"\nparent = \"eth1\"\n";
    config::parse(ok, "t.toml").unwrap();
}

/// `show config` writes parents out, and reading it back builds the same topology.
#[test]
fn a_parent_survives_a_round_trip() {
    let t = build(
        Topology::builder()
            .prefix("rt-")
            .network(
                NetworkBuilder::new("lan", "10.77.0.0/24").parent("eth1", Some("/run/netns/x")),
            )
            .network(
                NetworkBuilder::new("host", "10.78.0.0/24")
                    .parent("enp3s0", None)
                    .ipvlan_l2(),
            )
            .endpoint(EndpointBuilder::new("a").on("lan"))
            .endpoint(EndpointBuilder::new("b").on("host")),
    );
    let printed = t.to_toml();
    assert!(
        printed.contains("parent = \"eth1\"")
            && printed.contains("parent_netns = \"/run/netns/x\"")
            && printed.contains("mode = \"ipvlan-l2\""),
        "{printed}"
    );
    assert_eq!(
        t.networks[1].parent.as_ref().map(|p| p.mode),
        Some(ParentMode::IpvlanL2)
    );
    let mut again = config::parse(&printed, "printed").unwrap();
    again.source = t.source.clone();
    assert_eq!(again, t, "{printed}");
    // The parents are ports after the endpoints' interfaces.
    let ports = t.pipeline_spec().ports;
    assert_eq!(ports.len(), 4);
    assert_eq!(
        (ports[2].name.as_str(), ports[3].name.as_str()),
        ("parent:eth1", "parent:enp3s0")
    );
}
