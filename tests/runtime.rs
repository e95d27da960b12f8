//! Changing a running instance, on real namespaces: networks created, inspected and
//! removed; endpoints created and removed with every table entry of theirs; a second
//! network connected and disconnected; a namespace someone else made attached and
//! left alone; `show config` after changes taken back as a file; runtime namespaces
//! removed at exit and by `down` after a crash; hostile and concurrent change
//! requests. Some tests drive the real `switchyard` binary's verbs, others send the
//! protocol's requests. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::control::client::{self, ClientError};
use switchyard::control::protocol::{
    Changed, ConntrackReport, EndpointCreate, EndpointRow, ErrorCode, FdbRow, NeighborRow,
    NetworkConnect, NetworkCreate, NetworkRow, PortRow, Reply, Request, RouteRow, Table,
};
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_os::netns;
use switchyard_testkit::process::{text, Instance};
use switchyard_testkit::traffic::{ping, tcp_connect, tcp_listener};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const SHORT: Duration = Duration::from_millis(400);

// ---- helpers ----------------------------------------------------------------------

/// `switchyard ARGS --prefix P` with the instance's run directory given by `--run-dir`.
fn cli(inst: &Instance, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--run-dir")
        .arg(inst.run_dir())
        .args(args)
        .args(["--prefix", &inst.prefix])
        .output()
        .expect("the switchyard binary runs")
}

/// A verb that must succeed; its standard output.
fn ok(inst: &Instance, args: &[&str]) -> String {
    let o = cli(inst, args);
    assert!(
        o.status.success(),
        "switchyard {args:?} failed: {}",
        text(&o)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A verb that must be refused; what it printed.
fn refused(inst: &Instance, args: &[&str]) -> String {
    let o = cli(inst, args);
    assert!(
        !o.status.success(),
        "switchyard {args:?} succeeded: {}",
        text(&o)
    );
    text(&o)
}

fn ask(socket: &Path, req: &Request) -> Result<Reply, ClientError> {
    client::request(socket, req)
}

/// A request that must be refused with `code`; the server's message.
fn refused_with(socket: &Path, req: &Request, code: ErrorCode) -> String {
    match ask(socket, req) {
        Err(ClientError::Remote { code: c, message }) => {
            assert_eq!(c, code, "{} refused with {c:?}: {message}", req.name());
            message
        }
        other => panic!("{} was not refused: {other:?}", req.name()),
    }
}

fn table<T: serde::de::DeserializeOwned>(socket: &Path, table: Table) -> T {
    let reply = ask(socket, &Request::Show { table }).expect("show answers");
    serde_json::from_value(reply.payload()).expect("the documented shape")
}

fn config(socket: &Path) -> String {
    match ask(
        socket,
        &Request::Show {
            table: Table::Config,
        },
    )
    .expect("show config answers")
    {
        Reply::Config(c) => c.toml,
        r => panic!("show config answered {r:?}"),
    }
}

fn changed(r: Result<Reply, ClientError>) -> Changed {
    match r {
        Ok(Reply::Changed(c)) => c,
        r => panic!("expected a `changed` reply, got {r:?}"),
    }
}

fn endpoint(r: Result<Reply, ClientError>) -> EndpointRow {
    match r {
        Ok(Reply::Endpoint(e)) => e,
        r => panic!("expected an `endpoint` reply, got {r:?}"),
    }
}

fn net(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnet: subnet.into(),
        gateway: None,
        mtu: None,
        masquerade: false,
        internal: false,
        icc: None,
        dns: None,
        dns_domain: None,
    }
}

fn network_create(name: &str, subnet: &str) -> Request {
    Request::NetworkCreate(net(name, subnet))
}

fn endpoint_create(name: &str, network: &str) -> EndpointCreate {
    EndpointCreate {
        name: name.into(),
        network: network.into(),
        ip: None,
        mac: None,
        publish: vec![],
        netns: None,
        ifname: None,
        aliases: Vec::new(),
        handover: false,
    }
}

/// The address of an interface row, without its prefix length.
fn addr(ip_with_len: &str) -> Ipv4Addr {
    ip_with_len.split('/').next().unwrap().parse().unwrap()
}

/// Waits until `ns` gets an answer from `dst` (the first ping may wait for ARP).
fn pings(ns: &str, dst: Ipv4Addr) {
    wait_until(
        Duration::from_secs(5),
        &format!("{ns} to ping {dst}"),
        || ping(ns, dst, SHORT).is_ok(),
    );
}

/// Asserts that `ns` gets no answer from `dst`, three times over.
fn no_answer(ns: &str, dst: Ipv4Addr) {
    for _ in 0..3 {
        assert!(ping(ns, dst, SHORT).is_err(), "{ns} still reaches {dst}");
    }
}

/// `ip ARGS`; its output, and whether it succeeded.
fn ip(args: &[&str]) -> (bool, String) {
    let o = Command::new("ip").args(args).output().expect("ip runs");
    (o.status.success(), text(&o))
}

/// Namespaces a test creates itself or expects switchyard to make at run time:
/// removed when the test ends, however it ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            if netns::exists(n) {
                let _ = netns::delete(n);
            }
        }
    }
}

/// A file removed when the test ends.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---- 1. network create, ls, inspect, rm; refused changes --------------------------

#[test]
fn networks_are_created_inspected_and_removed_and_bad_ones_refused() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "rt-net");
    let _ns = Namespaces(vec![inst.netns("x"), inst.netns("t1"), inst.netns("t2")]);
    let mut up = inst.up(&[]);
    let sock = inst.socket();

    ok(
        &inst,
        &[
            "network",
            "create",
            "blue",
            "--subnet",
            "10.20.0.0/24",
            "--gateway",
            "10.20.0.254",
            "--mtu",
            "1400",
            "--icc",
            "false",
        ],
    );
    ok(
        &inst,
        &[
            "endpoint",
            "create",
            "x",
            "--network",
            "blue",
            "--ip",
            "10.20.0.5",
            "--mac",
            "02:00:0a:14:00:05",
        ],
    );
    assert!(netns::exists(&inst.netns("x")));

    let shown = ok(&inst, &["network", "inspect", "blue"]);
    for want in [
        "network blue",
        "10.20.0.0/24",
        "10.20.0.254",
        "1400",
        "icc=false",
        "x",
        "eth0",
        "02:00:0a:14:00:05",
        "10.20.0.5/24",
    ] {
        assert!(shown.contains(want), "{want:?} not in\n{shown}");
    }
    let n: NetworkRow =
        serde_json::from_str(&ok(&inst, &["network", "inspect", "blue", "--json"])).unwrap();
    assert_eq!(
        (
            n.name.as_str(),
            n.subnet.as_str(),
            n.gateway.as_deref(),
            n.mtu,
            n.icc
        ),
        ("blue", "10.20.0.0/24", Some("10.20.0.254"), 1400, false)
    );
    assert!(!n.masquerade && !n.internal && !n.external);
    assert_eq!(n.endpoints.len(), 1, "{n:?}");
    let e = &n.endpoints[0];
    assert_eq!(
        (
            e.endpoint.as_str(),
            e.interface.as_str(),
            e.mac.as_str(),
            e.ip.as_str()
        ),
        ("x", "eth0", "02:00:0a:14:00:05", "10.20.0.5/24")
    );
    let ls = ok(&inst, &["network", "ls"]);
    assert!(ls.contains("blue") && ls.contains("default"), "{ls}");
    let all: Vec<NetworkRow> =
        serde_json::from_str(&ok(&inst, &["network", "ls", "--json"])).unwrap();
    assert_eq!(
        all.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["default", "blue"]
    );

    // In use: refused, and the network stays.
    let why = refused(&inst, &["network", "rm", "blue"]);
    assert!(why.contains("in_use"), "{why}");
    ok(&inst, &["network", "inspect", "blue"]);

    // Changes the config file's rules refuse: `invalid`, with the file's words, and
    // nothing changes.
    ok(
        &inst,
        &["network", "create", "tiny", "--subnet", "10.40.0.0/30"],
    );
    ok(&inst, &["endpoint", "create", "t1", "--network", "tiny"]);
    let before = config(&sock);
    for (args, says) in [
        (
            &["network", "create", "red", "--subnet", "10.20.0.128/25"][..],
            "overlap",
        ),
        (
            &["network", "create", "blue", "--subnet", "10.30.0.0/24"][..],
            "blue",
        ),
        (
            &["endpoint", "create", "t2", "--network", "tiny"][..],
            "tiny",
        ),
    ] {
        let why = refused(&inst, args);
        assert!(why.contains("[invalid]"), "{args:?}: {why}");
        assert!(why.to_lowercase().contains(says), "{args:?}: {why}");
        eprintln!("{args:?} refused: {}", why.trim());
        assert_eq!(config(&sock), before, "{args:?} changed the running config");
    }
    assert!(!netns::exists(&inst.netns("t2")));

    // Once its endpoint is gone, the network goes.
    ok(&inst, &["endpoint", "rm", "x"]);
    assert!(!netns::exists(&inst.netns("x")));
    ok(&inst, &["network", "rm", "blue"]);
    let ls = ok(&inst, &["network", "ls"]);
    assert!(!ls.contains("blue"), "{ls}");
    let why = refused(&inst, &["network", "inspect", "blue"]);
    assert!(why.contains("not_found"), "{why}");

    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert_gone(&[inst.netns("t1")]);
}

// ---- 2. endpoints on a new network; allow and route ------------------------------

#[test]
fn new_endpoints_reach_their_gateway_and_each_other_only_while_allowed() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "rt-allow");
    let _ns = Namespaces(vec![inst.netns("r1"), inst.netns("b1")]);
    let mut up = inst.up(&[]);
    let sock = inst.socket();
    for (name, subnet) in [("red", "10.21.0.0/24"), ("blue", "10.22.0.0/24")] {
        ask(&sock, &network_create(name, subnet)).expect("network created");
    }
    let r1 = endpoint(ask(
        &sock,
        &Request::EndpointCreate(endpoint_create("r1", "red")),
    ));
    let b1 = endpoint(ask(
        &sock,
        &Request::EndpointCreate(endpoint_create("b1", "blue")),
    ));
    assert_eq!(r1.netns, inst.netns("r1"));
    let (r1_ip, b1_ip) = (addr(&r1.interfaces[0].ip), addr(&b1.interfaces[0].ip));
    assert_eq!(r1.interfaces[0].gateway.as_deref(), Some("10.21.0.1"));

    pings(&r1.netns, "10.21.0.1".parse().unwrap());
    pings(&b1.netns, "10.22.0.1".parse().unwrap());
    no_answer(&r1.netns, b1_ip);

    let c = ok(&inst, &["allow", "add", "red", "blue"]);
    eprintln!("allow add: {}", c.trim());
    pings(&r1.netns, b1_ip);
    pings(&b1.netns, r1_ip);
    ok(&inst, &["allow", "rm", "red", "blue"]);
    no_answer(&r1.netns, b1_ip);
    no_answer(&b1.netns, r1_ip);

    let has_route = |sock: &Path| {
        table::<Vec<RouteRow>>(sock, Table::Routes)
            .iter()
            .any(|r| r.prefix == "10.99.0.0/16" && r.via.as_deref() == Some("10.22.0.2"))
    };
    assert_eq!(
        b1_ip,
        Ipv4Addr::new(10, 22, 0, 2),
        "the lowest free address"
    );
    ok(&inst, &["route", "add", "10.99.0.0/16", "10.22.0.2"]);
    assert!(has_route(&sock));
    let routes = ok(&inst, &["show", "routes"]);
    assert!(routes.contains("10.99.0.0/16"), "{routes}");
    ok(&inst, &["route", "rm", "10.99.0.0/16", "10.22.0.2"]);
    assert!(!has_route(&sock));

    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert_gone(&[inst.netns("r1"), inst.netns("b1")]);
}

// ---- 3. endpoint rm forgets every table entry of its own ---------------------------

#[test]
fn endpoint_rm_forgets_its_fdb_neighbor_and_conntrack_entries_and_published_port() {
    if !require_root() {
        return;
    }
    // Docker's default network with a way out, and a host beyond the uplink.
    let prefix = unique_prefix();
    let _ns = Namespaces(vec![format!("{prefix}w")]);
    let sy = start(build(
        Topology::builder()
            .prefix(&prefix)
            .network(
                NetworkBuilder::new("default", "172.17.0.0/16")
                    .gateway("172.17.0.1")
                    .masquerade(),
            )
            .network(
                NetworkBuilder::new("outside", "198.51.100.0/24")
                    .gateway("198.51.100.1")
                    .external(),
            )
            .endpoint(EndpointBuilder::new("b").on("default").ip("172.17.0.3"))
            .endpoint(
                EndpointBuilder::new("outside")
                    .on("outside")
                    .ip("198.51.100.2"),
            ),
    ));
    let sock = sy.socket().to_path_buf();
    let outside = ns(&sy, "outside");
    let uplink = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 8080);
    let w_ip = Ipv4Addr::new(172, 17, 0, 10);

    let w = endpoint(ask(
        &sock,
        &Request::EndpointCreate(EndpointCreate {
            ip: Some(w_ip.to_string()),
            publish: vec!["8080:80/tcp".into()],
            ..endpoint_create("w", "default")
        }),
    ));
    assert_eq!(w.publish, ["8080:80/tcp"]);
    let w_ns = w.netns.clone();

    // In through the published port...
    let server = tcp_listener(&w_ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80)).unwrap();
    let mut inbound =
        tcp_connect(&outside, uplink, Duration::from_secs(3)).expect("the published port answers");
    let (mut accepted, _) = server.accept().unwrap();
    inbound.write_all(b"in").unwrap();
    let mut buf = [0u8; 2];
    accepted.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"in");
    // ... and out, masqueraded.
    let far = tcp_listener(
        &outside,
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 9000),
    )
    .unwrap();
    let mut outbound = tcp_connect(
        &w_ns,
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 9000),
        Duration::from_secs(3),
    )
    .expect("a masqueraded connection out");
    let (mut far_end, from) = far.accept().unwrap();
    assert_eq!(
        from.ip(),
        std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        "masqueraded"
    );
    outbound.write_all(b"out").unwrap();
    let mut buf = [0u8; 3];
    far_end.read_exact(&mut buf).unwrap();
    // And the neighbor b, on the same bridge.
    pings(&w_ns, Ipv4Addr::new(172, 17, 0, 3));

    let w_mac = w.interfaces[0].mac.clone();
    let ws = w_ip.to_string();
    let fdb_of_w = |sock: &Path| {
        table::<Vec<FdbRow>>(sock, Table::Fdb)
            .into_iter()
            .filter(|r| r.port == "w")
            .count()
    };
    let neighbors_of_w = |sock: &Path| {
        table::<Vec<NeighborRow>>(sock, Table::Neighbors)
            .into_iter()
            .filter(|r| r.ip == ws || r.mac == w_mac)
            .count()
    };
    let conntrack_of_w = |sock: &Path| {
        table::<ConntrackReport>(sock, Table::Conntrack)
            .connections
            .into_iter()
            .filter(|c| {
                [&c.original.src, &c.original.dst, &c.reply.src, &c.reply.dst].contains(&&ws)
            })
            .count()
    };
    let (fdb, neighbors, conns) = (
        fdb_of_w(&sock),
        neighbors_of_w(&sock),
        conntrack_of_w(&sock),
    );
    assert!(fdb >= 1, "w's MAC is learned");
    assert!(neighbors >= 1, "the router knows w's MAC");
    assert!(
        conns >= 2,
        "the inbound and outbound connections are tracked"
    );

    let c = changed(ask(&sock, &Request::EndpointRm { name: "w".into() }));
    eprintln!("endpoint rm w: {c:?}");
    assert_eq!(
        (
            c.forgotten.fdb,
            c.forgotten.neighbors,
            c.forgotten.conntrack
        ),
        (fdb, neighbors, conns),
        "the reply counts what the tables had"
    );
    assert!(!netns::exists(&w_ns), "its namespace is removed");
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    assert!(ports.iter().all(|p| p.endpoint != "w"), "{ports:?}");
    assert_eq!(fdb_of_w(&sock), 0);
    assert_eq!(neighbors_of_w(&sock), 0);
    assert_eq!(conntrack_of_w(&sock), 0);
    // Nothing answers on the published port any more.
    assert!(
        tcp_connect(&outside, uplink, Duration::from_secs(1)).is_err(),
        "the published port still answers"
    );
    // The rest keeps working.
    pings(&ns(&sy, "b"), Ipv4Addr::new(172, 17, 0, 1));
    assert_accounted(&sy);
    drop((inbound, accepted, outbound, far_end));
    stop(sy);
}

// ---- 4. network connect and disconnect ---------------------------------------------

#[test]
fn a_connected_network_brings_eth1_and_disconnect_takes_it_away() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "rt-conn");
    let _ns = Namespaces(vec![inst.netns("g1")]);
    let mut up = inst.up(&[]);
    let sock = inst.socket();
    let a = inst.netns("a");
    ok(
        &inst,
        &["network", "create", "green", "--subnet", "10.23.0.0/24"],
    );
    ok(
        &inst,
        &[
            "endpoint",
            "create",
            "g1",
            "--network",
            "green",
            "--ip",
            "10.23.0.2",
        ],
    );
    let e: EndpointRow = serde_json::from_str(&ok(
        &inst,
        &[
            "network",
            "connect",
            "green",
            "a",
            "--ip",
            "10.23.0.7",
            "--json",
        ],
    ))
    .unwrap();
    let eth1 = e.interfaces.iter().find(|i| i.network == "green").unwrap();
    assert_eq!(
        (eth1.ifname.as_str(), eth1.ip.as_str()),
        ("eth1", "10.23.0.7/24")
    );
    let (found, addrs) = ip(&["-n", &a, "-4", "addr", "show", "dev", "eth1"]);
    assert!(found && addrs.contains("10.23.0.7/24"), "{addrs}");

    // Straight over green, both ways; eth0 still works.
    pings(&a, Ipv4Addr::new(10, 23, 0, 2));
    pings(&inst.netns("g1"), Ipv4Addr::new(10, 23, 0, 7));
    pings(&a, Ipv4Addr::new(172, 17, 0, 3));
    let on_eth1 = |sock: &Path| {
        table::<Vec<FdbRow>>(sock, Table::Fdb)
            .into_iter()
            .filter(|r| r.port == "a/eth1")
            .count()
    };
    let learned = on_eth1(&sock);
    assert!(learned >= 1, "a's eth1 MAC is learned");
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    assert!(ports.iter().any(|p| p.port == "a/eth1"), "{ports:?}");

    let said: Changed = serde_json::from_str(&ok(
        &inst,
        &["network", "disconnect", "green", "a", "--json"],
    ))
    .unwrap();
    eprintln!("network disconnect: {said:?}");
    assert_eq!(
        said.forgotten.fdb, learned,
        "the reply counts eth1's FDB entries"
    );
    let (found, _) = ip(&["-n", &a, "link", "show", "dev", "eth1"]);
    assert!(!found, "eth1 is still in {a}");
    assert_eq!(on_eth1(&sock), 0);
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    assert!(ports.iter().all(|p| p.port != "a/eth1"), "{ports:?}");
    assert!(
        table::<Vec<NeighborRow>>(&sock, Table::Neighbors)
            .iter()
            .all(|n| n.ip != "10.23.0.7"),
        "the neighbor entry of eth1 is forgotten"
    );
    no_answer(&inst.netns("g1"), Ipv4Addr::new(10, 23, 0, 7));
    pings(&a, Ipv4Addr::new(172, 17, 0, 3));
    pings(&a, Ipv4Addr::new(172, 17, 0, 1));

    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
}

// ---- 5. attaching a namespace someone else made ------------------------------------

#[test]
fn a_foreign_namespace_gets_an_interface_and_keeps_everything_else() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "rt-foreign");
    let ext = format!("{}ext", inst.prefix);
    let path = format!("/run/netns/{ext}");
    let _ns = Namespaces(vec![ext.clone(), inst.netns("y")]);
    let (made, out) = ip(&["netns", "add", &ext]);
    assert!(made, "{out}");
    // Something of the test's own there, which switchyard must leave alone.
    let (made, out) = ip(&[
        "-n", &ext, "link", "add", "own0", "type", "veth", "peer", "name", "own1",
    ]);
    assert!(made, "{out}");
    let mut up = inst.up(&[]);
    let sock = inst.socket();

    ok(
        &inst,
        &["network", "create", "n5", "--subnet", "10.24.0.0/24"],
    );
    let e: EndpointRow = serde_json::from_str(&ok(
        &inst,
        &[
            "endpoint",
            "create",
            "x",
            "--network",
            "n5",
            "--netns",
            &path,
            "--ifname",
            "net0",
            "--json",
        ],
    ))
    .unwrap();
    assert!(e.foreign, "{e:?}");
    let (found, addrs) = ip(&["-n", &ext, "-4", "addr", "show", "dev", "net0"]);
    assert!(found && addrs.contains("10.24.0.2/24"), "{addrs}");
    let (_, routes) = ip(&["-n", &ext, "route", "show", "default"]);
    assert!(routes.contains("via 10.24.0.1 dev net0"), "{routes}");
    pings(&ext, Ipv4Addr::new(10, 24, 0, 1));

    ok(&inst, &["endpoint", "rm", "x"]);
    assert!(netns::exists(&ext), "the foreign namespace is removed");
    let (found, _) = ip(&["-n", &ext, "link", "show", "dev", "net0"]);
    assert!(!found, "net0 is left behind");
    let (found, out) = ip(&["-n", &ext, "link", "show", "dev", "own0"]);
    assert!(found, "the test's own own0 went away: {out}");

    // A path that is not a namespace: refused once setup tries it, nothing left.
    let file = TempFile(inst.dir.join("not-a-namespace"));
    std::fs::write(&file.0, b"").unwrap();
    let before = config(&sock);
    let msg = refused_with(
        &sock,
        &Request::EndpointCreate(EndpointCreate {
            netns: Some(file.0.display().to_string()),
            ..endpoint_create("y", "n5")
        }),
        ErrorCode::SetupFailed,
    );
    eprintln!("--netns on a regular file: {msg}");
    assert_eq!(config(&sock), before);
    assert!(!netns::exists(&inst.netns("y")));
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    assert!(ports.iter().all(|p| p.endpoint != "y"), "{ports:?}");
    assert!(std::fs::metadata(&file.0).unwrap().is_file());

    // Attached again, then switchyard exits: the namespace and own0 stay.
    ok(
        &inst,
        &[
            "endpoint",
            "create",
            "x",
            "--network",
            "n5",
            "--netns",
            &path,
            "--ifname",
            "net0",
        ],
    );
    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert!(netns::exists(&ext), "exit removed the foreign namespace");
    let (found, out) = ip(&["-n", &ext, "link", "show", "dev", "own0"]);
    assert!(found, "exit removed the test's own0: {out}");
    let (found, _) = ip(&["-n", &ext, "link", "show", "dev", "net0"]);
    assert!(!found, "exit left net0 behind");
}

// ---- 6. show config after changes is a config file ---------------------------------

#[test]
fn show_config_after_changes_round_trips() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let _ns = Namespaces(
        ["p1", "p2"]
            .iter()
            .map(|e| format!("{prefix}{e}"))
            .collect(),
    );
    let sy = start(build(three(&prefix)));
    let sock = sy.socket().to_path_buf();
    ask(
        &sock,
        &Request::NetworkCreate(NetworkCreate {
            gateway: Some("10.25.0.100".into()),
            mtu: Some(1300),
            icc: Some(false),
            ..net("purple", "10.25.0.0/24")
        }),
    )
    .unwrap();
    ask(&sock, &network_create("gold", "10.26.0.0/24")).unwrap();
    endpoint(ask(
        &sock,
        &Request::EndpointCreate(EndpointCreate {
            mac: Some("02:00:00:00:25:09".into()),
            ip: Some("10.25.0.9".into()),
            ..endpoint_create("p1", "purple")
        }),
    ));
    endpoint(ask(
        &sock,
        &Request::EndpointCreate(endpoint_create("p2", "gold")),
    ));
    endpoint(ask(
        &sock,
        &Request::NetworkConnect(NetworkConnect {
            network: "gold".into(),
            endpoint: "p1".into(),
            ip: None,
            ifname: Some("side0".into()),
        }),
    ));
    changed(ask(
        &sock,
        &Request::AllowAdd {
            a: "purple".into(),
            b: "default".into(),
        },
    ));
    changed(ask(&sock, &Request::EndpointRm { name: "c".into() }));

    let text_cfg = config(&sock);
    let parsed = switchyard::topology::config::parse(&text_cfg, "show config")
        .unwrap_or_else(|e| panic!("show config does not parse: {e}\n{text_cfg}"));
    let live = sy.topology();
    let nets = |t: &Topology| {
        t.networks
            .iter()
            .map(|n| (n.name.clone(), n.subnet, n.gateway.map(|g| g.ip), n.mtu))
            .collect::<Vec<_>>()
    };
    let eps = |t: &Topology| {
        t.endpoints
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.netns.clone(),
                    e.interfaces
                        .iter()
                        .map(|i| {
                            (
                                i.ifname.clone(),
                                t.networks[i.network].name.clone(),
                                i.ip,
                                i.mac,
                            )
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(nets(&parsed), nets(&live));
    assert_eq!(eps(&parsed), eps(&live));
    assert_eq!(parsed.allow.len(), live.allow.len());
    let names: Vec<String> = live.endpoints.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["a", "b", "p1", "p2"]);
    let p1 = &live.endpoints[2];
    assert_eq!(p1.interfaces[0].mac.to_string(), "02:00:00:00:25:09");
    assert_eq!(p1.interfaces[1].ifname, "side0");

    let file = TempFile(std::env::temp_dir().join(format!("{prefix}shown.toml")));
    std::fs::write(&file.0, &text_cfg).unwrap();
    let o = Command::new(BIN)
        .arg("check")
        .arg(&file.0)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "switchyard check refuses it: {}",
        text(&o)
    );
    stop(sy);
    assert_gone(&[
        format!("{prefix}p1"),
        format!("{prefix}p2"),
        format!("{prefix}c"),
    ]);
}

// ---- 7. runtime namespaces at exit and after a crash -------------------------------

#[test]
fn runtime_namespaces_go_at_sigterm_and_with_down_after_sigkill() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "rt-term");
    let _ns = Namespaces(vec![inst.netns("r7")]);
    let mut up = inst.up(&[]);
    ok(&inst, &["endpoint", "create", "r7", "--network", "default"]);
    assert!(netns::exists(&inst.netns("r7")));
    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert_gone(&[inst.netns("r7")]);
    assert_gone(&inst.namespaces());

    let inst = Instance::new(BIN.as_ref(), "rt-kill");
    let _ns = Namespaces(vec![inst.netns("k7")]);
    let mut up = inst.up(&[]);
    ok(&inst, &["endpoint", "create", "k7", "--network", "default"]);
    let out = up.signal(Signal::SIGKILL);
    assert!(!out.status.success());
    assert!(netns::exists(&inst.netns("k7")), "SIGKILL leaves it");
    let o = Command::new(BIN)
        .arg("--run-dir")
        .arg(inst.run_dir())
        .args(["down", "--prefix", &inst.prefix])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_gone(&[inst.netns("k7")]);
    assert_gone(&inst.namespaces());
}

// ---- 8. hostile and concurrent change requests --------------------------------------

#[test]
fn absurd_change_requests_get_clear_errors_and_change_nothing() {
    if !require_root() {
        return;
    }
    let sy = start(build(three(&unique_prefix())));
    let sock = sy.socket().to_path_buf();
    let before = config(&sock);
    let a = ns(&sy, "a");

    let publish: Vec<String> = (1..=10_000).map(|p| format!("{p}:80/tcp")).collect();
    let req = Request::EndpointCreate(EndpointCreate {
        publish,
        ..endpoint_create("many", "default")
    });
    match ask(&sock, &req) {
        Err(ClientError::Remote { code, message }) => {
            assert!(
                matches!(code, ErrorCode::TooLarge | ErrorCode::Invalid),
                "{code:?}: {message}"
            );
            eprintln!("10 000 published ports: [{code:?}] {message}");
        }
        r => panic!("10 000 published ports accepted: {r:?}"),
    }
    // Under the size limit, the same host port over and over.
    let req = Request::EndpointCreate(EndpointCreate {
        publish: vec!["1:1".into(); 8_000],
        ..endpoint_create("dup", "default")
    });
    let msg = refused_with(&sock, &req, ErrorCode::Invalid);
    // Thousands of the same mistake make a message a person can read, not megabytes.
    assert!(msg.len() < 4096, "a message of {} bytes", msg.len());
    assert!(msg.contains("more"), "{msg}");
    eprintln!("8000 copies of one published port: {msg}");

    let long = "n".repeat(300);
    let msg = refused_with(
        &sock,
        &Request::EndpointCreate(endpoint_create(&long, "default")),
        ErrorCode::Invalid,
    );
    eprintln!(
        "a 300-character endpoint name: {}",
        &msg[..msg.len().min(300)]
    );
    refused_with(
        &sock,
        &network_create(&long, "10.27.0.0/24"),
        ErrorCode::Invalid,
    );
    let msg = refused_with(
        &sock,
        &Request::EndpointCreate(EndpointCreate {
            mac: Some("not-a-mac".into()),
            ..endpoint_create("m", "default")
        }),
        ErrorCode::Invalid,
    );
    assert!(msg.contains("mac"), "{msg}");
    refused_with(
        &sock,
        &Request::EndpointCreate(EndpointCreate {
            ip: Some("999.1.1.1".into()),
            ..endpoint_create("m", "default")
        }),
        ErrorCode::Invalid,
    );
    refused_with(
        &sock,
        &Request::EndpointRm {
            name: "nobody".into(),
        },
        ErrorCode::NotFound,
    );

    assert_eq!(config(&sock), before, "a refused change changed the config");
    pings(&a, Ipv4Addr::new(172, 17, 0, 3));
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn twenty_clients_create_and_remove_endpoints_at_once() {
    if !require_root() {
        return;
    }
    const CLIENTS: usize = 20;
    let prefix = unique_prefix();
    let _ns = Namespaces((0..CLIENTS).map(|i| format!("{prefix}k{i}")).collect());
    let sy = start(build(three(&prefix)));
    let sock = Arc::new(sy.socket().to_path_buf());
    let before = config(&sock);
    let busy = Arc::new(AtomicUsize::new(0));

    // Sends `req` until it is not refused as busy; counts the busy answers.
    fn until_taken(sock: &Path, req: &Request, busy: &AtomicUsize) -> Reply {
        let t = Instant::now();
        loop {
            match client::request(sock, req) {
                Err(ClientError::Remote {
                    code: ErrorCode::Busy,
                    ..
                }) if t.elapsed() < Duration::from_secs(60) => {
                    busy.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r.unwrap_or_else(|e| panic!("{}: {e}", req.name())),
            }
        }
    }

    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (sock, busy) = (sock.clone(), busy.clone());
            std::thread::spawn(move || {
                let name = format!("k{i}");
                let made = until_taken(
                    &sock,
                    &Request::EndpointCreate(endpoint_create(&name, "default")),
                    &busy,
                );
                let Reply::Endpoint(e) = made else {
                    panic!("endpoint create answered {made:?}")
                };
                assert_eq!(e.name, name);
                let gone = until_taken(&sock, &Request::EndpointRm { name }, &busy);
                assert!(matches!(gone, Reply::Changed(_)), "{gone:?}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every client's create and rm succeed");
    }
    eprintln!(
        "{CLIENTS} clients each created and removed an endpoint in {:?}; {} busy answers retried",
        t.elapsed(),
        busy.load(Ordering::Relaxed)
    );

    let left: Vec<EndpointRow> = match ask(&sock, &Request::EndpointLs {}).unwrap() {
        Reply::Endpoints(e) => e,
        r => panic!("{r:?}"),
    };
    assert_eq!(
        left.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_gone(
        &(0..CLIENTS)
            .map(|i| format!("{prefix}k{i}"))
            .collect::<Vec<_>>(),
    );
    assert_eq!(table::<Vec<PortRow>>(&sock, Table::Ports).len(), 3);
    assert_eq!(config(&sock), before);
    pings(&ns(&sy, "a"), Ipv4Addr::new(172, 17, 0, 4));
    assert_accounted(&sy);
    stop(sy);
}

/// An event stream opened before a change names what the change added: a MAC learned
/// on an endpoint created at runtime is reported on that endpoint's port (the stream
/// copies the names again when the layout changes), not by its number.
#[test]
fn an_open_event_stream_names_ports_added_after_it_started() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(build(three(&prefix)));
    let mut stream =
        client::LiveStream::open(sy.socket(), &Request::Events {}).expect("events open");
    // Wait for `listening`: from then on nothing is missed.
    loop {
        match stream.next(Some(Duration::from_secs(5))).unwrap() {
            client::Next::Reply(Reply::Event(e)) if e.event == "listening" => break,
            client::Next::Reply(_) => {}
            other => panic!("no listening line: {other:?}"),
        }
    }
    let req = Request::EndpointCreate(EndpointCreate {
        name: "late".into(),
        network: "default".into(),
        ip: None,
        mac: None,
        publish: Vec::new(),
        netns: None,
        ifname: None,
        aliases: Vec::new(),
        handover: false,
    });
    let Reply::Endpoint(row) = client::request(sy.socket(), &req).unwrap() else {
        panic!("an endpoint");
    };
    let ip: Ipv4Addr = row.interfaces[0]
        .ip
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    ping(
        &format!("{prefix}late"),
        Ipv4Addr::new(172, 17, 0, 2),
        SHORT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let client::Next::Reply(Reply::Event(e)) =
            stream.next(Some(Duration::from_millis(200))).unwrap()
        {
            if e.event == "mac_learned" && e.mac.as_deref() == Some(row.interfaces[0].mac.as_str())
            {
                assert_eq!(e.port.as_deref(), Some("late"), "{e:?}");
                assert_eq!(e.network.as_deref(), Some("default"), "{e:?}");
                drop(stream);
                sy.stop().unwrap();
                return;
            }
            seen.push(e.event.clone());
        }
    }
    panic!("no mac_learned for {ip} on port late; saw {seen:?}");
}

// ---- 9. handing an interface over to a container runtime ----------------------------

#[test]
fn a_handed_over_tap_is_made_in_switchyards_namespace_and_switches_after_the_move() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "rt-handover");
    // switchyard runs in a namespace of the test's (`host`), so that the TAPs it
    // makes in its own namespace never appear where the tests run; `ctr` is the
    // container's, which the test plays the runtime for.
    let host = format!("{}host", inst.prefix);
    let ctr = format!("{}ctr", inst.prefix);
    let _ns = Namespaces(vec![host.clone(), ctr.clone()]);
    for n in [&host, &ctr] {
        let (made, out) = ip(&["netns", "add", n]);
        assert!(made, "{out}");
    }
    // A device of someone else's under the name a handover will ask for.
    let (made, out) = ip(&[
        "-n", &host, "link", "add", "taken0", "type", "veth", "peer", "name", "taken1",
    ]);
    assert!(made, "{out}");
    let mut up = inst.up_in(Path::new(&format!("/run/netns/{host}")));
    let sock = inst.socket();
    let ctr_path = format!("/run/netns/{ctr}");
    let handover = |name: &str, netns: &str, ifname: &str| {
        Request::EndpointCreate(EndpointCreate {
            netns: Some(netns.into()),
            ifname: Some(ifname.into()),
            handover: true,
            ..endpoint_create(name, "default")
        })
    };

    // Without a namespace to go to, or a name to be made under: refused.
    let args = [
        "endpoint",
        "create",
        "h",
        "--network",
        "default",
        "--handover",
    ];
    let msg = refused(&inst, &[&args[..], &["--ifname", "h0"]].concat());
    assert!(msg.contains("needs netns"), "{msg}");
    let msg = refused(&inst, &[&args[..], &["--netns", &ctr_path]].concat());
    assert!(msg.contains("needs ifname"), "{msg}");

    // A name taken in switchyard's namespace: refused, and nothing changes.
    let before = config(&sock);
    let msg = refused_with(
        &sock,
        &handover("h", &ctr_path, "taken0"),
        ErrorCode::SetupFailed,
    );
    eprintln!("handover under a taken name: {msg}");
    assert!(msg.contains("taken0 already exists"), "{msg}");
    assert_eq!(config(&sock), before);
    let (found, out) = ip(&["-n", &host, "-d", "link", "show", "dev", "taken0"]);
    assert!(found && out.contains("veth"), "{out}");
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    assert!(ports.iter().all(|p| p.endpoint != "h"), "{ports:?}");

    // Made in switchyard's namespace: its MAC, MTU and queue length, down, no
    // address; nothing in the container's namespace yet.
    let e: EndpointRow = serde_json::from_str(&ok(
        &inst,
        &[
            &args[..],
            &["--netns", &ctr_path, "--ifname", "h0", "--json"],
        ]
        .concat(),
    ))
    .unwrap();
    assert!(e.handover && e.foreign, "{e:?}");
    let i = e.interfaces[0].clone();
    let (found, link) = ip(&["-n", &host, "link", "show", "dev", "h0"]);
    assert!(found, "{link}");
    for want in [
        i.mac.as_str(),
        &format!("mtu {}", i.mtu),
        "state DOWN",
        "qlen 4096",
    ] {
        assert!(link.contains(want), "{want:?} not in {link}");
    }
    assert!(!link.contains(",UP"), "{link}");
    let (_, addrs) = ip(&["-n", &host, "-4", "addr", "show", "dev", "h0"]);
    assert!(!addrs.contains("inet "), "{addrs}");
    let (_, routes) = ip(&["-n", &host, "route", "show"]);
    assert!(!routes.contains("h0"), "{routes}");
    let (found, _) = ip(&["-n", &ctr, "link", "show", "dev", "h0"]);
    assert!(!found, "h0 is in the container's namespace before the move");
    let ls = ok(&inst, &["endpoint", "ls"]);
    assert!(ls.contains(&format!("{ctr_path} (handover)")), "{ls}");
    assert!(config(&sock).contains("handover = true"));

    // What the runtime does: move it, rename it, address it, set it up, route.
    let gw = i.gateway.clone().expect("default has a gateway");
    for cmd in [
        vec!["-n", &host, "link", "set", "h0", "netns", &ctr],
        vec!["-n", &ctr, "link", "set", "h0", "name", "eth0"],
        vec!["-n", &ctr, "addr", "add", &i.ip, "dev", "eth0"],
        vec!["-n", &ctr, "link", "set", "eth0", "up"],
        vec!["-n", &ctr, "route", "add", "default", "via", &gw],
    ] {
        let (done, out) = ip(&cmd);
        assert!(done, "ip {cmd:?}: {out}");
    }
    // The queues switchyard holds carry the container's frames from its new place.
    pings(&ctr, gw.parse().unwrap());
    pings(&ctr, Ipv4Addr::new(172, 17, 0, 2));
    pings(&inst.netns("b"), addr(&i.ip));

    // A second network comes through the runtime as another endpoint.
    ok(
        &inst,
        &["network", "create", "n9", "--subnet", "10.29.0.0/24"],
    );
    let msg = refused(&inst, &["network", "connect", "n9", "h"]);
    assert!(msg.contains("through its runtime"), "{msg}");

    // A namespace that does not exist yet is no reason to refuse: the TAP is made
    // all the same, and its port is up (a namespace the watch could not see at
    // the start is not watched).
    let later = format!("/run/netns/{}later", inst.prefix);
    endpoint(ask(&sock, &handover("later", &later, "h1")));
    let (found, link) = ip(&["-n", &host, "link", "show", "dev", "h1"]);
    assert!(found, "{link}");
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    let row = ports
        .iter()
        .find(|p| p.endpoint == "later")
        .expect("a port");
    eprintln!("show ports of a handover whose namespace is not there yet: {row:?}");
    assert_eq!(row.state, "up");
    ok(&inst, &["endpoint", "rm", "later"]);
    let (found, _) = ip(&["-n", &host, "link", "show", "dev", "h1"]);
    assert!(!found, "h1 is left behind");

    // endpoint rm: the device goes from the container's namespace, which stays.
    ok(&inst, &["endpoint", "rm", "h"]);
    wait_until(
        Duration::from_secs(5),
        "eth0 to leave the container",
        || !ip(&["-n", &ctr, "link", "show", "dev", "eth0"]).0,
    );
    assert!(netns::exists(&ctr), "the container's namespace is removed");
    let (_, links) = ip(&["-n", &host, "-o", "link", "show"]);
    assert!(!links.contains("h0"), "{links}");
    let ports: Vec<PortRow> = table(&sock, Table::Ports);
    assert!(ports.iter().all(|p| p.endpoint != "h"), "{ports:?}");
    let (found, _) = ip(&["-n", &host, "link", "show", "dev", "taken0"]);
    assert!(found, "the test's own taken0 went away");

    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
}
