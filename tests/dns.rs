//! DNS at the gateways, asked from inside endpoint namespaces with real resolvers:
//! `dig` (bind9-dnsutils) and glibc's `getent hosts` through the resolv.conf switchyard
//! wrote. Names resolve over UDP and TCP, PTR answers, views are per network, a name
//! added at runtime resolves at once and one removed stops, unknown names get NXDOMAIN,
//! other names REFUSED without an upstream and forwarded with one (an upstream server
//! in a namespace the test made), garbage is counted and answered FORMERR or dropped.
//! Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::Duration;
use switchyard::control::client;
use switchyard::control::protocol::{Reply, Request, Table};
use switchyard::control::Switchyard;
use switchyard::dns::DnsView;
use switchyard::topology::Topology;
use switchyard_os::netns;
use switchyard_testkit::dns;

/// Networks `front` (with a search domain) and `back`, endpoint `db` on both, and a
/// network named `default`, which serves no DNS (as docker0's).
fn topology(prefix: &str, switch_extra: &str) -> Topology {
    let text = format!(
        r#"
[switch]
prefix = "{prefix}"
{switch_extra}

[[network]]
name = "front"
subnet = "10.71.0.0/24"
gateway = "10.71.0.1"
dns_domain = "front.internal"

[[network]]
name = "back"
subnet = "10.72.0.0/24"
gateway = "10.72.0.1"

[[network]]
name = "default"
subnet = "10.73.0.0/24"
gateway = "10.73.0.1"

[[endpoint]]
name = "web"
network = "front"
ip = "10.71.0.2"
aliases = ["www", "shop.v2"]

[[endpoint]]
name = "db"
attach = [ {{ network = "front", ip = "10.71.0.3" }}, {{ network = "back", ip = "10.72.0.3" }} ]

[[endpoint]]
name = "cache"
network = "back"
ip = "10.72.0.4"

[[endpoint]]
name = "legacy"
network = "default"
ip = "10.73.0.2"
"#
    );
    switchyard::topology::config::parse(&text, "dns test topology")
        .unwrap_or_else(|e| panic!("the test topology is invalid: {e}"))
}

/// `dig ARGS` inside namespace `ns`, one try with a short wait: its output.
fn dig(ns: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "dig", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig runs (bind9-dnsutils)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The answer's status (`NOERROR`, `NXDOMAIN`, ...), or `TIMEOUT` when none came.
fn status(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|| "TIMEOUT".into())
}

/// `dig +short`: the records' data, one per line.
fn short(ns: &str, server: &str, args: &[&str]) -> Vec<String> {
    let at = format!("@{server}");
    let mut a = vec![at.as_str(), "+short"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = dig(ns, &a).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// The status of `dig @server ARGS`.
fn ask_status(ns: &str, server: &str, args: &[&str]) -> String {
    let at = format!("@{server}");
    let mut a = vec![at.as_str()];
    a.extend_from_slice(args);
    status(&dig(ns, &a))
}

fn dns_view(sy: &Switchyard) -> DnsView {
    show(sy, Table::Dns)
}

/// A namespace the test made, removed when the test ends.
struct TestNs(String);

impl TestNs {
    fn new(name: String) -> TestNs {
        netns::create(&name).expect("create a test namespace");
        TestNs(name)
    }

    /// The namespace `<prefix>up` where upstream servers live: its loopback up and
    /// holding `addrs` (so the DNS service's socket, opened there, reaches them).
    fn upstream(prefix: &str, addrs: &[&str]) -> TestNs {
        let ns = TestNs::new(format!("{prefix}up"));
        let mut steps = vec![vec![
            "link".to_string(),
            "set".into(),
            "lo".into(),
            "up".into(),
        ]];
        for a in addrs {
            steps.push(vec![
                "addr".into(),
                "add".into(),
                format!("{a}/32"),
                "dev".into(),
                "lo".into(),
            ]);
        }
        for args in steps {
            let o = Command::new("ip")
                .args(["-n", &ns.0])
                .args(&args)
                .output()
                .unwrap();
            assert!(o.status.success(), "ip {args:?}: {o:?}");
        }
        ns
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn resolv_conf(netns_name: &str) -> std::path::PathBuf {
    std::path::Path::new("/etc/netns")
        .join(netns_name)
        .join("resolv.conf")
}

#[test]
fn names_resolve_per_network_over_udp_and_tcp() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(topology(&prefix, ""));
    let web = ns(&sy, "web");
    let dbns = ns(&sy, "db");
    let legacy = ns(&sy, "legacy");
    let gw = "10.71.0.1";

    // Names, aliases and the search domain, over UDP and TCP.
    assert_eq!(short(&web, gw, &["db"]), ["10.71.0.3"]);
    assert_eq!(short(&web, gw, &["+tcp", "db"]), ["10.71.0.3"]);
    assert_eq!(short(&web, gw, &["DB.front.internal"]), ["10.71.0.3"]);
    assert_eq!(short(&web, gw, &["www"]), ["10.71.0.2"]);
    assert_eq!(short(&web, gw, &["shop.v2"]), ["10.71.0.2"]);
    assert_eq!(
        short(&web, gw, &["+tcp", "www.front.internal"]),
        ["10.71.0.2"]
    );
    // A name known, a type not held: no data, not "no such name" (glibc asks AAAA).
    assert_eq!(ask_status(&web, gw, &["db", "AAAA"]), "NOERROR");
    assert!(short(&web, gw, &["db", "AAAA"]).is_empty());
    // PTR: the endpoint's own name, in the network's domain.
    assert_eq!(
        short(&web, gw, &["-x", "10.71.0.3"]),
        ["db.front.internal."]
    );
    assert_eq!(ask_status(&web, gw, &["-x", "10.71.0.99"]), "NXDOMAIN");

    // Per network: cache is on back only; web (front only) never learns its address,
    // by name or by reverse lookup; db, on both, finds it by asking back's gateway.
    assert_eq!(ask_status(&web, gw, &["cache"]), "NXDOMAIN");
    assert_eq!(ask_status(&web, gw, &["cache.front.internal"]), "NXDOMAIN");
    assert_eq!(ask_status(&web, gw, &["-x", "10.72.0.4"]), "REFUSED");
    assert_eq!(short(&dbns, "10.72.0.1", &["cache"]), ["10.72.0.4"]);
    // ... and db is found on each network by the address it has there.
    assert_eq!(short(&dbns, "10.72.0.1", &["+tcp", "db"]), ["10.72.0.3"]);

    // Unknown names in the zone: NXDOMAIN. Others, with no upstream: REFUSED.
    assert_eq!(ask_status(&web, gw, &["nosuch"]), "NXDOMAIN");
    assert_eq!(ask_status(&web, gw, &["nosuch.front.internal"]), "NXDOMAIN");
    assert_eq!(ask_status(&web, gw, &["example.com"]), "REFUSED");
    assert_eq!(ask_status(&web, gw, &["+tcp", "example.com"]), "REFUSED");

    // glibc, through the resolv.conf switchyard wrote for the namespace.
    let conf = std::fs::read_to_string(resolv_conf(&web)).expect("web has a resolv.conf");
    assert!(conf.contains("nameserver 10.71.0.1"), "{conf}");
    let o = Command::new("ip")
        .args(["netns", "exec", &web, "getent", "hosts", "db"])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&o.stdout);
    assert!(got.starts_with("10.71.0.3"), "getent hosts db: {got:?}");
    let o = Command::new("ip")
        .args(["netns", "exec", &web, "getent", "hosts", "cache"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "cache resolved from web: {o:?}");

    // The network named default serves no DNS, and its endpoint gets no resolv.conf.
    assert_eq!(ask_status(&legacy, "10.73.0.1", &["db"]), "TIMEOUT");
    assert!(!resolv_conf(&legacy).exists());

    // Runtime: an endpoint added resolves at once, and stops when removed.
    let create: Request = serde_json::from_value(serde_json::json!({
        "endpoint_create": {"name": "late", "network": "front", "ip": "10.71.0.9",
                            "aliases": ["tardy"]}
    }))
    .expect("an endpoint_create request");
    client::request(sy.socket(), &create).expect("endpoint create");
    assert_eq!(short(&web, gw, &["late"]), ["10.71.0.9"]);
    assert_eq!(short(&web, gw, &["+tcp", "tardy"]), ["10.71.0.9"]);
    assert!(resolv_conf(&format!("{prefix}late")).exists());
    let rm: Request =
        serde_json::from_value(serde_json::json!({"endpoint_rm": {"name": "late"}})).unwrap();
    client::request(sy.socket(), &rm).expect("endpoint rm");
    assert_eq!(ask_status(&web, gw, &["late"]), "NXDOMAIN");
    assert!(!resolv_conf(&format!("{prefix}late")).exists());

    // show dns lists the names per network, and the counters add up.
    let view = dns_view(&sy);
    let front = view.zones.iter().find(|z| z.network == "front").unwrap();
    assert_eq!(front.server, Ipv4Addr::new(10, 71, 0, 1));
    assert_eq!(front.domain.as_deref(), Some("front.internal"));
    let has = |name: &str, ip: [u8; 4]| {
        front
            .records
            .iter()
            .any(|r| r.name == name && r.address == Ipv4Addr::from(ip))
    };
    assert!(has("web", [10, 71, 0, 2]) && has("www", [10, 71, 0, 2]));
    assert!(has("db", [10, 71, 0, 3]) && !has("cache", [10, 72, 0, 4]));
    assert!(!view.zones.iter().any(|z| z.network == "default"));
    let c = view.counters;
    assert!(c.queries >= 20, "{c:?}");
    assert!(c.answers >= 8 && c.nxdomain >= 5 && c.refused >= 3, "{c:?}");
    assert!(c.tcp_queries >= 4, "{c:?}");
    assert_eq!(c.forwarded, 0);
    assert!(view.frames.tcp_connections >= 4, "{:?}", view.frames);
    // Every frame is accounted for: punted frames count as taken.
    assert!(events(&sy, "dns_punted") >= view.frames.punted);
    assert_accounted(&sy);

    // The CLI prints the same, per network.
    let o = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["show", "dns", "--socket"])
        .arg(sy.socket())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{printed}");
    for want in [
        "network front (server 10.71.0.1, domain front.internal)",
        "network back (server 10.72.0.1)",
        "www",
        "upstream: none (other names are refused)",
        "nxdomain",
    ] {
        assert!(printed.contains(want), "{want:?} not in:\n{printed}");
    }

    let confs = [resolv_conf(&web), resolv_conf(&dbns)];
    stop(sy);
    for c in confs {
        assert!(!c.exists(), "{} left behind", c.display());
    }
}

#[test]
fn garbage_is_counted_and_never_stops_the_service() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(topology(&prefix, ""));
    let web = ns(&sy, "web");
    let sock = netns::run_in_named(&web, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let gw = SocketAddrV4::new(Ipv4Addr::new(10, 71, 0, 1), 53);
    // A header that claims a question it does not hold: FORMERR, same ID.
    let mut bad = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0x3f, b'x']);
    sock.send_to(&bad, gw).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("an answer to a broken query");
    assert!(n >= 12);
    assert_eq!(&buf[..2], &[0xab, 0xcd]);
    assert_eq!(buf[3] & 0x0f, 1, "rcode FORMERR");
    // Too short to be a message: dropped, no answer.
    sock.send_to(&[1, 2, 3], gw).unwrap();
    assert!(sock.recv_from(&mut buf).is_err(), "an answer to 3 bytes");
    // A response sent as if a query: dropped (answering it could start a loop).
    let mut resp = vec![0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
    resp.truncate(12);
    sock.send_to(&resp, gw).unwrap();
    assert!(sock.recv_from(&mut buf).is_err(), "an answer to a response");
    // A flood of junk, then a good query still answered.
    for i in 0..2000u32 {
        let junk: Vec<u8> = (0..(i % 64)).map(|k| (k * 31 + i) as u8).collect();
        let _ = sock.send_to(&junk, gw);
    }
    wait_until(Duration::from_secs(10), "a good query answered", || {
        short(&web, "10.71.0.1", &["db"]) == ["10.71.0.3"]
    });
    let c = dns_view(&sy).counters;
    assert!(c.malformed >= 3, "{c:?}");
    assert!(c.formerr >= 1, "{c:?}");
    stop(sy);
}

#[test]
fn other_names_go_to_the_upstream_in_its_namespace() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let up = TestNs::upstream(&prefix, &["10.99.0.53"]);
    // example.test has an address with a TTL of 1234, silent.test is never
    // answered, other names are NXDOMAIN.
    let server = dns::Server::start(
        &up.0,
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 53), 53),
        |name| match name {
            "example.test" => dns::Says::A(Ipv4Addr::new(192, 0, 2, 7), 1234),
            "big.test" => dns::Says::Many(60),
            "silent.test" => dns::Says::Silent,
            _ => dns::Says::NxDomain,
        },
    )
    .expect("the upstream server starts");
    let extra = format!(
        "dns_upstream = [\"10.99.0.53\"]\ndns_upstream_netns = \"{}\"",
        up.0
    );
    let sy = start(topology(&prefix, &extra));
    let web = ns(&sy, "web");
    let gw = "10.71.0.1";

    // Forwarded and relayed with the upstream's TTL, over UDP and TCP.
    let out = dig(&web, &["@10.71.0.1", "+noall", "+answer", "example.test"]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&"1234"), "the upstream's TTL: {out}");
    assert_eq!(fields.last(), Some(&"192.0.2.7"), "{out}");
    assert_eq!(short(&web, gw, &["+tcp", "example.test"]), ["192.0.2.7"]);
    assert_eq!(ask_status(&web, gw, &["nothing.test"]), "NXDOMAIN");
    // An answer too big for UDP: truncated to a client without EDNS, which retries over
    // TCP, and then forwarded over TCP, so all 60 records arrive.
    assert_eq!(short(&web, gw, &["+noedns", "big.test"]).len(), 60);
    assert_eq!(short(&web, gw, &["+tcp", "big.test"]).len(), 60);
    // Local names are still answered locally.
    assert_eq!(short(&web, gw, &["db"]), ["10.71.0.3"]);
    // No answer upstream: SERVFAIL once the wait is over, not silence.
    let out = dig(&web, &["+time=5", "@10.71.0.1", "silent.test"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");

    let c = dns_view(&sy).counters;
    assert!(c.forwarded >= 4, "{c:?}");
    assert!(c.upstream_answers >= 3, "{c:?}");
    assert!(c.upstream_timeouts >= 1 && c.servfail >= 1, "{c:?}");
    assert_eq!(c.refused, 0, "{c:?}");
    let shown = client::request(sy.socket(), &Request::Show { table: Table::Dns }).unwrap();
    let Reply::Dns(v) = shown else {
        panic!("show dns answered {shown:?}");
    };
    assert_eq!(v.upstreams, ["10.99.0.53:53"]);
    stop(sy);
    assert!(server.stop() >= 3);
}

#[test]
fn a_flood_of_tcp_connections_is_bounded_and_udp_keeps_answering() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(topology(&prefix, ""));
    let web = ns(&sy, "web");
    let gw = SocketAddrV4::new(Ipv4Addr::new(10, 71, 0, 1), 53);
    // Connections that ask nothing and hold on: the stack serves a bounded number at
    // once and resets the rest, as a full listen backlog would.
    let held: Vec<_> = (0..24)
        .filter_map(|_| {
            switchyard_testkit::traffic::tcp_connect(&web, gw, Duration::from_secs(1)).ok()
        })
        .collect();
    assert_eq!(
        held.len(),
        switchyard::dns::tcp::CONNECTIONS,
        "connections accepted of 24 asked"
    );
    // UDP is not held up by them.
    assert_eq!(short(&web, "10.71.0.1", &["db"]), ["10.71.0.3"]);
    // Once they go, TCP serves again.
    drop(held);
    wait_until(Duration::from_secs(10), "TCP answers again", || {
        short(&web, "10.71.0.1", &["+tcp", "db"]) == ["10.71.0.3"]
    });
    stop(sy);
}

/// An answer goes back to the port and MAC that asked, whatever source address the query
/// claims: an endpoint forging another's address gets the answer itself, and the
/// endpoint it named gets nothing (no reflection onto a neighbour).
#[test]
fn a_forged_source_gets_its_answer_on_its_own_port() {
    use switchyard_testkit::traffic::Capture;
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(topology(&prefix, ""));
    let t = sy.topology();
    let front = t.networks.iter().find(|n| n.name == "front").unwrap();
    let gw_mac = front.gateway.unwrap().mac.0;
    let iface = |e: &str| t.endpoints.iter().find(|x| x.name == e).unwrap().interfaces[0].clone();
    let web_mac = iface("web").mac.0;
    let web = Capture::open(&ns(&sy, "web"), "eth0").unwrap();
    let db = Capture::open(&ns(&sy, "db"), "eth0").unwrap();
    let query = dns::a_query(0x5151, "web");
    // From web's MAC, claiming db's address.
    let b = etherparse::PacketBuilder::ethernet2(web_mac, gw_mac)
        .ipv4([10, 71, 0, 3], [10, 71, 0, 1], 64)
        .udp(5353, 53);
    let mut frame = Vec::new();
    b.write(&mut frame, &query).unwrap();
    let is_answer = |s: &switchyard_testkit::traffic::Seen| {
        s.ethertype == 0x0800 && s.bytes.len() > 42 && s.bytes[34..36] == 53u16.to_be_bytes()
    };
    let mut answered = Vec::new();
    for _ in 0..3 {
        web.send(&frame).unwrap();
        answered = web.collect(Duration::from_millis(300), 16).unwrap();
        if answered.iter().any(is_answer) {
            break;
        }
    }
    let answer = answered
        .iter()
        .find(|s| is_answer(s))
        .expect("the forger's own port got the answer");
    assert_eq!(answer.dst.0, web_mac, "sent to the MAC that asked");
    assert_eq!(
        &answer.bytes[30..34],
        &[10, 71, 0, 3],
        "to the address it claimed"
    );
    let at_db = db.collect(Duration::from_millis(300), 64).unwrap();
    assert!(
        !at_db.iter().any(is_answer),
        "db got an answer it never asked for"
    );
    stop(sy);
}

#[test]
fn an_upstream_namespace_that_is_not_there_stops_the_start_before_anything_is_made() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let extra = format!("dns_upstream = [\"10.99.0.53\"]\ndns_upstream_netns = \"{prefix}gone\"");
    let t = topology(&prefix, &extra);
    let names = namespaces(&t);
    let err = match Switchyard::start(t, &run_root()) {
        Ok(_) => panic!("started without its upstream namespace"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("{prefix}gone")), "{err}");
    for n in names {
        assert!(!netns::exists(&n), "{n} was made");
        assert!(!resolv_conf(&n).exists(), "{n}'s resolv.conf was written");
    }
}

#[test]
fn a_silent_upstream_is_passed_over_for_the_next() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let up = TestNs::upstream(&prefix, &["10.99.0.52", "10.99.0.53"]);
    // 10.99.0.52 runs no server (its port unreachable is not an answer); .53 answers.
    let server = dns::Server::start(
        &up.0,
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 53), 53),
        |name| match name {
            "example.test" => dns::Says::A(Ipv4Addr::new(192, 0, 2, 7), 60),
            _ => dns::Says::Silent,
        },
    )
    .expect("the upstream server starts");
    let extra = format!(
        "dns_upstream = [\"10.99.0.52\", \"10.99.0.53\"]\ndns_upstream_netns = \"{}\"",
        up.0
    );
    let sy = start(topology(&prefix, &extra));
    let web = ns(&sy, "web");
    let started = std::time::Instant::now();
    let out = dig(&web, &["+time=5", "@10.71.0.1", "+short", "example.test"]);
    assert_eq!(out.trim(), "192.0.2.7", "answered by the second upstream");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "after the first one's wait"
    );
    // Silent everywhere: SERVFAIL once the last upstream's wait is over.
    let out = dig(&web, &["+time=8", "@10.71.0.1", "silent.test"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    let c = dns_view(&sy).counters;
    assert_eq!((c.upstream_timeouts, c.servfail), (3, 1), "{c:?}");
    stop(sy);
    server.stop();
}
