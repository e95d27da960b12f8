//! VXLAN overlays (RFC 7348) between real namespaces standing in for hosts: a
//! switchyard network spanning "host1" and "host2", joined by a veth pair (the
//! underlay, 192.0.2.0/24).
//!
//! * With Linux on the other side: a `vxlan` device on a Linux bridge in host2, an
//!   endpoint namespace behind it. ARP, ping and 10 MB of TCP each way arrive intact;
//!   Linux learns switchyard's endpoint behind switchyard's VTEP and switchyard
//!   Linux's behind Linux's; a DF packet of exactly the overlay's MTU passes and one
//!   byte more gets "fragmentation needed". Once with Linux learning from a `remote`,
//!   once with `nolearning` and a static all-zeros FDB entry (head-end replication as
//!   Open vSwitch and EVPN setups configure it).
//! * Two switchyard instances with the same VNI: ping and TCP between their endpoints.
//! * Strangers: a datagram from an address that is no configured VTEP, or with
//!   another VNI, is dropped and counted, and teaches the FDB nothing.
//!
//! The Linux side is set up with `ip` and `bridge` (iproute2), as a user would; every
//! namespace has the test's unique prefix and is removed even when the test panics.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::Duration;
use switchyard::control::protocol::{FdbRow, PortRow, Table};
use switchyard::control::Switchyard;
use switchyard::topology::config::parse;
use switchyard_testkit::fixtures::*;
use switchyard_testkit::traffic::{icmp_probe, ping, tcp_send, tcp_sink, udp_socket, IcmpReply};

const T: Duration = Duration::from_secs(5);
const HOST1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const TEN_MB: u64 = 10 * 1024 * 1024;

/// Runs `ip ARGS` (or another iproute2 tool), panicking with its output on failure.
fn run(tool: &str, args: &[&str]) -> String {
    let o = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
    assert!(
        o.status.success(),
        "{tool} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Namespaces made by `ip netns add`, deleted when dropped (also while a panic
/// unwinds).
struct Namespaces(Vec<String>);

impl Namespaces {
    fn add(&mut self, name: String) -> String {
        run("ip", &["netns", "add", &name]);
        self.0.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Two "hosts" joined by a veth pair: `host1` 192.0.2.1/24, `host2` 192.0.2.2/24.
/// The pair is made inside host1 with its peer moved straight to host2: nothing is
/// ever created in the test's own namespace.
fn hosts(prefix: &str, nss: &mut Namespaces) -> (String, String) {
    let h1 = nss.add(format!("{prefix}host1"));
    let h2 = nss.add(format!("{prefix}host2"));
    run(
        "ip",
        &[
            "-n", &h1, "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &h2,
        ],
    );
    run(
        "ip",
        &["-n", &h1, "addr", "add", "192.0.2.1/24", "dev", "u1"],
    );
    run(
        "ip",
        &["-n", &h2, "addr", "add", "192.0.2.2/24", "dev", "u2"],
    );
    run("ip", &["-n", &h1, "link", "set", "u1", "up"]);
    run("ip", &["-n", &h2, "link", "set", "u2", "up"]);
    (h1, h2)
}

/// A switchyard instance whose network `over` (10.80.0.0/24, gateway .1) spans
/// hosts over VNI 42 from `local` in `underlay` to `remote`, with endpoint `a`
/// (`a_ip`) on it, and network `near` (10.81.0.0/24, MTU 1500) with endpoint `r`,
/// routed to `over`.
fn overlay_switch(
    prefix: &str,
    underlay: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    a_ip: &str,
) -> Switchyard {
    overlay_switch_with(prefix, underlay, local, remote, a_ip, "")
}

/// [`overlay_switch`] with more keys for network `over`.
fn overlay_switch_with(
    prefix: &str,
    underlay: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    a_ip: &str,
    over_keys: &str,
) -> Switchyard {
    let text = format!(
        r#"
[switch]
prefix = "{prefix}"

[[network]]
name = "over"
subnet = "10.80.0.0/24"
gateway = "10.80.0.1"
vxlan = {{ vni = 42, local = "{local}", remotes = ["{remote}"], underlay_netns = "{underlay}" }}
{over_keys}

[[network]]
name = "near"
subnet = "10.81.0.0/24"
gateway = "10.81.0.1"

[[allow]]
between = ["over", "near"]

[[endpoint]]
name = "a"
network = "over"
ip = "{a_ip}"

[[endpoint]]
name = "r"
network = "near"
ip = "10.81.0.2"
"#
    );
    let topo = parse(&text, "vxlan test topology").unwrap_or_else(|e| panic!("{e}"));
    start(topo)
}

/// In host2: a Linux bridge with a `vxlan` device (VNI 42, port 4789, from
/// 192.0.2.2) and a veth to endpoint namespace `lnx` (10.80.0.9/24, default route
/// via switchyard's gateway 10.80.0.1). `learning`: the device has `remote
/// 192.0.2.1` and learns; else `nolearning` with a static all-zeros entry.
fn linux_vtep(h2: &str, lnx: &str, learning: bool) {
    let mut add = vec![
        "-n",
        h2,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
        "local",
        "192.0.2.2",
    ];
    if learning {
        add.extend(["remote", "192.0.2.1"]);
    } else {
        add.push("nolearning");
    }
    run("ip", &add);
    if !learning {
        run(
            "bridge",
            &[
                "-n",
                h2,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vx0",
                "dst",
                "192.0.2.1",
            ],
        );
    }
    run("ip", &["-n", h2, "link", "add", "br0", "type", "bridge"]);
    run("ip", &["-n", h2, "link", "set", "vx0", "master", "br0"]);
    run(
        "ip",
        &[
            "-n", h2, "link", "add", "vl", "type", "veth", "peer", "name", "eth0", "netns", lnx,
        ],
    );
    run("ip", &["-n", h2, "link", "set", "vl", "master", "br0"]);
    for dev in ["vx0", "vl", "br0"] {
        run("ip", &["-n", h2, "link", "set", dev, "up"]);
    }
    // The overlay's MTU on a 1500-byte underlay, as Linux gives vx0 by itself.
    run("ip", &["-n", lnx, "link", "set", "eth0", "mtu", "1450"]);
    run(
        "ip",
        &["-n", lnx, "addr", "add", "10.80.0.9/24", "dev", "eth0"],
    );
    run("ip", &["-n", lnx, "link", "set", "eth0", "up"]);
    run(
        "ip",
        &["-n", lnx, "route", "add", "default", "via", "10.80.0.1"],
    );
}

/// 10 MB from `from` to `to_ns` at `to`, checked by digest.
fn transfer(from: &str, to_ns: &str, to: Ipv4Addr, port: u16, seed: u64) {
    let sink = tcp_sink(to_ns, SocketAddrV4::new(to, port), Duration::from_secs(30)).unwrap();
    let sent = tcp_send(
        from,
        SocketAddrV4::new(to, port),
        TEN_MB,
        seed,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("TCP from {from} to {to}: {e}"));
    let got = sink.join().unwrap().unwrap();
    assert_eq!(got.bytes, TEN_MB);
    assert_eq!(got.digest, sent, "the bytes arrived intact");
}

fn mac_of(sy: &Switchyard, endpoint: &str) -> String {
    let t = sy.topology();
    let e = t.endpoints.iter().find(|e| e.name == endpoint).unwrap();
    e.interfaces[0].mac.to_string()
}

fn interop_with_linux(learning: bool) {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let mut nss = Namespaces(Vec::new());
    let (h1, h2) = hosts(&prefix, &mut nss);
    let lnx = nss.add(format!("{prefix}lnx"));
    linux_vtep(&h2, &lnx, learning);
    let sy = overlay_switch(&prefix, &h1, HOST1, HOST2, "10.80.0.2");
    let (a, r) = (ns(&sy, "a"), ns(&sy, "r"));
    let lnx_ip = Ipv4Addr::new(10, 80, 0, 9);

    // The overlay's MTU came from the underlay: 1500 less 50.
    assert_eq!(sy.topology().networks[0].mtu, 1450);
    // ARP and ping across the tunnel, both ways.
    ping(&a, lnx_ip, T).expect("a pings the Linux endpoint");
    ping(&lnx, Ipv4Addr::new(10, 80, 0, 2), T).expect("the Linux endpoint pings a");
    // Each side learnt the other's MAC behind the other's VTEP.
    let a_mac = mac_of(&sy, "a");
    if learning {
        let fdb = run("bridge", &["-n", &h2, "fdb", "show", "dev", "vx0"]);
        assert!(
            fdb.lines()
                .any(|l| l.starts_with(&a_mac) && l.contains("dst 192.0.2.1")),
            "Linux knows {a_mac} behind 192.0.2.1:\n{fdb}"
        );
    }
    let lnx_mac = run("ip", &["-n", &lnx, "-br", "link", "show", "eth0"]);
    let lnx_mac = lnx_mac.split_whitespace().nth(2).unwrap().to_string();
    let rows: Vec<FdbRow> = show(&sy, Table::Fdb);
    assert!(
        rows.iter().any(|r| r.mac == lnx_mac
            && r.port == "vxlan:over"
            && r.vtep.as_deref() == Some("192.0.2.2")),
        "{lnx_mac} behind 192.0.2.2 in {rows:?}"
    );

    // DNS at switchyard's gateway answers the remote endpoint too: the answer goes
    // back through the tunnel, behind the asker's VTEP.
    let o = Command::new("ip")
        .args([
            "netns", "exec", &lnx, "dig", "+short", "+time=2", "+tries=2",
        ])
        .args(["@10.80.0.1", "-q", "a"])
        .output()
        .expect("dig runs (bind9-dnsutils)");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "10.80.0.2",
        "{o:?}"
    );

    // 10 MB each way: a's TSO super-frames are cut before encapsulation, and the
    // super-packets Linux hands over whole through the veth go on as super-frames.
    transfer(&a, &lnx, lnx_ip, 5001, 1);
    transfer(&lnx, &a, Ipv4Addr::new(10, 80, 0, 2), 5002, 2);

    // Routed from `near` into the overlay: exactly the overlay's MTU with DF passes,
    // one byte more is answered "fragmentation needed" with the MTU to use.
    let exact = 1450 - 28;
    match icmp_probe(&r, lnx_ip, 64, exact, true, T).unwrap() {
        IcmpReply::Echo { .. } => {}
        other => panic!("a DF packet of 1450 bytes: {other:?}"),
    }
    match icmp_probe(&r, lnx_ip, 64, exact + 1, true, T).unwrap() {
        IcmpReply::Error {
            from,
            kind: 3,
            code: 4,
        } => {
            assert_eq!(from, Ipv4Addr::new(10, 81, 0, 1), "from the gateway")
        }
        other => panic!("a DF packet of 1451 bytes: {other:?}"),
    }
    assert_eq!(
        drops(&sy, "vxlan_tx_too_big"),
        0,
        "nothing too big went to the tunnel"
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn interop_with_a_learning_linux_vtep() {
    interop_with_linux(true);
}

#[test]
fn interop_with_a_linux_vtep_without_learning() {
    interop_with_linux(false);
}

#[test]
fn two_switchyard_instances_share_an_overlay() {
    if !require_root() {
        return;
    }
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let mut nss = Namespaces(Vec::new());
    let (h1, h2) = hosts(&p1, &mut nss);
    let one = overlay_switch(&p1, &h1, HOST1, HOST2, "10.80.0.2");
    let two = overlay_switch(&p2, &h2, HOST2, HOST1, "10.80.0.3");
    let (a1, a2) = (ns(&one, "a"), ns(&two, "a"));
    ping(&a1, Ipv4Addr::new(10, 80, 0, 3), T).expect("one's a pings two's a");
    ping(&a2, Ipv4Addr::new(10, 80, 0, 2), T).expect("two's a pings one's a");
    transfer(&a1, &a2, Ipv4Addr::new(10, 80, 0, 3), 5003, 3);
    transfer(&a2, &a1, Ipv4Addr::new(10, 80, 0, 2), 5004, 4);
    // Each instance knows the other's endpoint behind the other's VTEP.
    let rows: Vec<FdbRow> = show(&one, Table::Fdb);
    let b_mac = mac_of(&two, "a");
    assert!(
        rows.iter()
            .any(|r| r.mac == b_mac && r.vtep.as_deref() == Some("192.0.2.2")),
        "{rows:?}"
    );
    assert_accounted(&one);
    assert_accounted(&two);
    stop(one);
    stop(two);
}

/// A VXLAN datagram carrying a broadcast frame from `src_mac` with `vni`.
fn datagram(vni: u32, src_mac: [u8; 6]) -> Vec<u8> {
    let mut d = vec![0u8; 8 + 14 + 46];
    switchyard_core::wire::vxlan::write_header(&mut d, vni).unwrap();
    d[8..14].copy_from_slice(&[0xff; 6]);
    d[14..20].copy_from_slice(&src_mac);
    d[20..22].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    d
}

#[test]
fn strangers_and_other_vnis_are_dropped_counted_and_not_learnt() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let mut nss = Namespaces(Vec::new());
    let (h1, h2) = hosts(&prefix, &mut nss);
    // A third address on host2 that is no configured VTEP.
    run(
        "ip",
        &["-n", &h2, "addr", "add", "192.0.2.66/24", "dev", "u2"],
    );
    let sy = overlay_switch(&prefix, &h1, HOST1, HOST2, "10.80.0.2");
    let to = SocketAddrV4::new(HOST1, 4789);
    let stranger = udp_socket(&h2, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 0)).unwrap();
    let vtep = udp_socket(&h2, SocketAddrV4::new(HOST2, 0)).unwrap();
    let send = |s: &UdpSocket, d: &[u8]| {
        s.send_to(d, to).unwrap();
    };
    send(&stranger, &datagram(42, [2, 0, 0, 0, 0, 0x66]));
    send(&vtep, &datagram(43, [2, 0, 0, 0, 0, 0x43]));
    let mut no_vni = datagram(42, [2, 0, 0, 0, 0, 0x44]);
    no_vni[0] = 0;
    send(&vtep, &no_vni);
    send(&vtep, &[0x08, 0, 0, 0, 0, 0, 42, 0, 1, 2, 3]);
    // The one good datagram, last: once it is learnt, the others were read.
    send(&vtep, &datagram(42, [2, 0, 0, 0, 0, 0x42]));
    wait_until(T, "the good datagram's MAC is learnt", || {
        let rows: Vec<FdbRow> = show(&sy, Table::Fdb);
        rows.iter().any(|r| r.mac == "02:00:00:00:00:42")
    });
    wait_until(T, "every refusal counted", || {
        [
            "vxlan_unknown_vtep",
            "vxlan_vni_mismatch",
            "vxlan_no_vni",
            "vxlan_runt",
        ]
        .iter()
        .all(|id| drops(&sy, id) == 1)
    });
    let rows: Vec<FdbRow> = show(&sy, Table::Fdb);
    for bad in [
        "02:00:00:00:00:66",
        "02:00:00:00:00:43",
        "02:00:00:00:00:44",
    ] {
        assert!(!rows.iter().any(|r| r.mac == bad), "{bad} learnt: {rows:?}");
    }
    // `show ports` lists the tunnel: the overlay's MTU, no offloads, a socket per worker.
    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    let t = ports.iter().find(|p| p.port == "vxlan:over").unwrap();
    assert_eq!((t.mtu, t.offloads.as_str()), (1450, "none"), "{t:?}");
    assert_eq!(
        (t.interface.as_str(), t.ip.as_str()),
        ("vni 42", "192.0.2.1:4789")
    );
    assert_eq!(usize::from(t.queues), sy.topology().workers);
    // Per port too, under the tunnel's name.
    let c = counters(&sy);
    let port = c.ports.iter().find(|p| p.port == "vxlan:over").unwrap();
    assert_eq!(port.drops.get("vxlan_unknown_vtep"), Some(&1), "{port:?}");
    stop(sy);
}

#[test]
fn a_local_address_not_in_the_underlay_stops_up_with_nothing_made() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let mut nss = Namespaces(Vec::new());
    let (h1, _) = hosts(&prefix, &mut nss);
    let text = format!(
        r#"
[switch]
prefix = "{prefix}"
[[network]]
name = "over"
subnet = "10.80.0.0/24"
vxlan = {{ vni = 42, local = "192.0.2.9", remotes = ["192.0.2.2"], underlay_netns = "{h1}" }}
[[endpoint]]
name = "a"
network = "over"
"#
    );
    let topo = parse(&text, "t").unwrap();
    let names = namespaces(&topo);
    let err = match Switchyard::start(topo, &run_root()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without its local address"),
    };
    assert!(
        err.contains("vxlan.local 192.0.2.9 is not an address in namespace /run/netns/"),
        "{err}"
    );
    assert_gone(&names);
    // An MTU the underlay cannot carry is refused as clearly.
    let text = text.replace("192.0.2.9", "192.0.2.1").replace(
        "subnet = \"10.80.0.0/24\"",
        "subnet = \"10.80.0.0/24\"\nmtu = 1451",
    );
    let err = match Switchyard::start(parse(&text, "t").unwrap(), &run_root()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started with an MTU too big for the underlay"),
    };
    assert!(err.contains("mtu 1451 does not fit the underlay"), "{err}");
}

#[test]
fn an_instance_changes_around_its_overlay_and_keeps_the_tunnel() {
    use switchyard::control::client::{self, ClientError};
    use switchyard::control::protocol::{EndpointCreate, ErrorCode, Request};
    if !require_root() {
        return;
    }
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let mut nss = Namespaces(Vec::new());
    let (h1, h2) = hosts(&p1, &mut nss);
    let one = overlay_switch(&p1, &h1, HOST1, HOST2, "10.80.0.2");
    let two = overlay_switch(&p2, &h2, HOST2, HOST1, "10.80.0.3");
    // A new endpoint on the overlay while it runs: a port number of its own, not
    // the tunnel's, and it reaches the other host through the tunnel.
    let req = Request::EndpointCreate(EndpointCreate {
        name: "late".into(),
        network: "over".into(),
        ip: Some("10.80.0.20".into()),
        mac: None,
        publish: Vec::new(),
        netns: None,
        ifname: None,
        aliases: Vec::new(),
        handover: false,
    });
    client::request(one.socket(), &req).expect("endpoint create");
    let late = ns(&one, "late");
    ping(&late, Ipv4Addr::new(10, 80, 0, 3), T).expect("the new endpoint pings across");
    let ports: Vec<PortRow> = show(&one, Table::Ports);
    let names: Vec<&str> = ports.iter().map(|p| p.port.as_str()).collect();
    assert_eq!(names, ["a", "r", "vxlan:over", "late"]);
    // An overlay network is not removed at run time, and says why.
    match client::request(
        one.socket(),
        &Request::NetworkRm {
            name: "over".into(),
        },
    ) {
        Err(ClientError::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::InUse);
            assert!(message.contains("overlay"), "{message}");
        }
        other => panic!("network rm of an overlay: {other:?}"),
    }
    ping(&ns(&one, "a"), Ipv4Addr::new(10, 80, 0, 3), T).expect("still switching");
    stop(one);
    stop(two);
}

#[test]
fn a_mac_flood_from_a_remote_fills_the_networks_share_and_no_more() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let mut nss = Namespaces(Vec::new());
    let (h1, h2) = hosts(&prefix, &mut nss);
    let sy = overlay_switch_with(&prefix, &h1, HOST1, HOST2, "10.80.0.2", "fdb_max = 16");
    let vtep = udp_socket(&h2, SocketAddrV4::new(HOST2, 0)).unwrap();
    for n in 0..200u8 {
        vtep.send_to(
            &datagram(42, [2, 0, 0, 0, 1, n]),
            SocketAddrV4::new(HOST1, 4789),
        )
        .unwrap();
    }
    wait_until(T, "the flood read", || {
        let c = counters(&sy);
        c.ports
            .iter()
            .find(|p| p.port == "vxlan:over")
            .is_some_and(|p| p.rx_frames == 200)
    });
    let rows: Vec<FdbRow> = show(&sy, Table::Fdb);
    let over = rows.iter().filter(|r| r.network == "over").count();
    assert_eq!(over, 16, "the network's share: {rows:?}");
    assert!(events(&sy, "fdb_network_limit") > 0);
    // The endpoint still reaches its gateway.
    ping(&ns(&sy, "a"), Ipv4Addr::new(10, 80, 0, 1), T).expect("a pings its gateway");
    stop(sy);
}
