//! `switchyard up --metrics ADDR:PORT`, as an operator runs it: a scrape parses as
//! Prometheus text and says what `show counters --json` says; an address off loopback
//! is refused unless `--metrics-public`, and so is a port in use, with nothing left
//! behind; another path is 404; clients that connect and say nothing hold up neither
//! a scrape nor SIGTERM, after which the port is closed. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use nix::sys::signal::Signal;
use prometheus_parse::{LineInfo, Scrape, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use switchyard::control::protocol::{ConntrackReport, CountersReport, FdbRow, NeighborRow};
use switchyard_core::pipeline::DropReason;
use switchyard_testkit::process::{text, Instance};
use switchyard_testkit::traffic::ping;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

const B: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);

/// A loopback port free right now (the kernel's pick, released for `up` to take).
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET path` over HTTP/1.0: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("a whole answer");
    let raw = String::from_utf8(raw).expect("a text answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// One scrape of `/metrics`, parsed: every line must be a comment, a sample the parser
/// takes, or empty (the parser skips what it cannot read, so that is checked here).
fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    for line in body.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "not Prometheus text: {line:?}"
        );
    }
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let samples = body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(s.samples.len(), samples, "every sample line was read");
    s
}

/// The value of `name` with exactly `labels`, and its type.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Value {
    let found: Vec<&Value> = s
        .samples
        .iter()
        .filter(|x| {
            x.metric == name
                && x.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })
        .map(|x| &x.value)
        .collect();
    assert_eq!(found.len(), 1, "one {name}{labels:?}, found {found:?}");
    found[0].clone()
}

fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(s, name, labels) {
        Value::Counter(v) => v as u64,
        v => panic!("{name}{labels:?} is not a counter: {v:?}"),
    }
}

fn gauge(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(s, name, labels) {
        Value::Gauge(v) => v as u64,
        v => panic!("{name}{labels:?} is not a gauge: {v:?}"),
    }
}

/// `switchyard show TABLE --json` of the instance, as the CLI prints it.
fn show_json<T: serde::de::DeserializeOwned>(inst: &Instance, table: &str) -> T {
    let out = inst
        .cmd()
        .args(["show", table, "--json", "--prefix", &inst.prefix])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("the documented shape")
}

/// `show counters --json` once it stops changing: the traffic is over, every frame
/// counted (an answer can be on its way before the worker counted its write).
fn settled_counters(inst: &Instance) -> CountersReport {
    let per_port = |c: &CountersReport| serde_json::to_string(&c.ports).unwrap();
    let mut last: CountersReport = show_json(inst, "counters");
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now: CountersReport = show_json(inst, "counters");
        if per_port(&now) == per_port(&last) {
            return now;
        }
        last = now;
    }
    panic!("the counters never settled: {}", per_port(&last));
}

#[test]
fn a_scrape_says_what_show_counters_says() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "metrics");
    let addr = free_port();
    let mut up = inst.up_with(&["--metrics", &addr.to_string()], &[]);
    let a = inst.netns("a");
    for _ in 0..3 {
        ping(&a, B, Duration::from_secs(2)).expect("a reaches b");
    }
    ping(&a, GATEWAY, Duration::from_secs(2)).expect("a reaches the gateway");
    settled_counters(&inst);

    // Taken right after one another with no traffic between: the same numbers.
    let s = scrape(addr);
    let c: CountersReport = show_json(&inst, "counters");
    let fdb: Vec<FdbRow> = show_json(&inst, "fdb");
    let neighbors: Vec<NeighborRow> = show_json(&inst, "neighbors");
    let ct: ConntrackReport = show_json(&inst, "conntrack");

    assert_eq!(c.ports.len(), 3);
    for p in &c.ports {
        let l = [("port", p.port.as_str()), ("network", "default")];
        let port = &l[..];
        assert_eq!(
            counter(&s, "switchyard_port_rx_packets_total", port),
            p.rx_frames
        );
        assert_eq!(
            counter(&s, "switchyard_port_rx_bytes_total", port),
            p.rx_bytes
        );
        assert_eq!(
            counter(&s, "switchyard_port_tx_packets_total", port),
            p.tx_frames
        );
        assert_eq!(
            counter(&s, "switchyard_port_tx_bytes_total", port),
            p.tx_bytes
        );
        assert_eq!(
            counter(&s, "switchyard_port_forwarded_total", port),
            p.forwarded
        );
        assert_eq!(
            counter(&s, "switchyard_port_consumed_total", port),
            p.consumed
        );
        assert_eq!(
            counter(&s, "switchyard_port_dropped_total", port),
            p.dropped
        );
        assert_eq!(
            counter(&s, "switchyard_port_tx_errors_total", port),
            p.tx_errors
        );
        assert_eq!(
            counter(&s, "switchyard_port_rx_errors_total", port),
            p.rx_errors
        );
        assert_eq!(counter(&s, "switchyard_port_rx_gso_total", port), p.rx_gso);
        assert_eq!(gauge(&s, "switchyard_port_held", port), p.held);
        // Every reason, zeros included; the non-zero ones are the port's `drops`.
        let mut nonzero = BTreeMap::new();
        for r in DropReason::ALL {
            let n = counter(
                &s,
                "switchyard_drops_total",
                &[("port", p.port.as_str()), ("reason", r.id())],
            );
            if n > 0 {
                nonzero.insert(r.id().to_string(), n);
            }
        }
        assert_eq!(nonzero, p.drops, "port {}", p.port);
    }
    // Three echo requests to b and one to the gateway (which answered it itself).
    let a_rx = c.ports.iter().find(|p| p.port == "a").unwrap();
    assert!(a_rx.rx_frames >= 4 && a_rx.consumed >= 1, "{a_rx:?}");

    for e in &c.events {
        let l = [("event", e.id.as_str()), ("stage", e.stage.as_str())];
        assert_eq!(
            counter(&s, "switchyard_events_total", &l),
            e.count,
            "{}",
            e.id
        );
    }
    assert!(c
        .events
        .iter()
        .any(|e| e.id == "echo_replies" && e.count >= 1));

    let tables = [
        ("fdb", fdb.len()),
        ("neighbors", neighbors.len()),
        ("conntrack", ct.count),
    ];
    for (t, n) in tables {
        assert_eq!(
            gauge(&s, "switchyard_table_entries", &[("table", t)]),
            n as u64,
            "{t}"
        );
    }
    assert!(!fdb.is_empty(), "a and b were learned");
    assert_eq!(
        gauge(&s, "switchyard_table_capacity", &[("table", "conntrack")]),
        ct.max as u64
    );
    // The fixture leaves fdb_max and neighbor_max at their defaults (docs/config.md).
    assert_eq!(
        gauge(&s, "switchyard_table_capacity", &[("table", "fdb")]),
        8192
    );
    assert_eq!(
        gauge(&s, "switchyard_table_capacity", &[("table", "neighbors")]),
        1024
    );

    // CPU time goes on between the two looks; the workers are the same.
    assert!(!c.workers.is_empty());
    for w in &c.workers {
        let id = w.worker.to_string();
        match value(
            &s,
            "switchyard_worker_cpu_seconds_total",
            &[("worker", &id)],
        ) {
            Value::Counter(v) => assert!(v > 0.0 && v <= w.cpu_secs, "{v} vs {w:?}"),
            v => panic!("not a counter: {v:?}"),
        }
        assert_eq!(
            counter(&s, "switchyard_worker_rx_packets_total", &[("worker", &id)]),
            w.rx_frames
        );
    }

    let out = up.signal(Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("metrics        http://{addr}/metrics")),
        "{}",
        text(&out)
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the port is closed after teardown"
    );
}

#[test]
fn another_path_is_404_and_silent_clients_hold_up_neither_a_scrape_nor_sigterm() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "metrics-silent");
    let addr = free_port();
    let mut up = inst.up_with(&["--metrics", &addr.to_string()], &[]);
    for path in ["/", "/metric", "/metrics/x", "/favicon.ico"] {
        assert_eq!(get(addr, path).0, 404, "{path}");
    }
    // More clients that connect and say nothing than the endpoint serves at once.
    let silent: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // One that sent half a request line and stopped.
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metr").unwrap();
    // Time for the endpoint to take them all in before the scrape comes (it would be
    // answered all the same if it came first, but would prove less).
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let s = scrape(addr);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
    assert!(s
        .samples
        .iter()
        .any(|x| x.metric == "switchyard_port_rx_packets_total"));
    eprintln!("scrape with 41 silent clients connected: {took:?}");

    let (out, took) = up
        .signal_within(Signal::SIGTERM, Duration::from_secs(10))
        .expect("up exits on SIGTERM");
    assert!(out.status.success(), "{}", text(&out));
    assert!(took < Duration::from_secs(3), "teardown took {took:?}");
    assert_gone(&inst.namespaces());
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the port is closed after teardown"
    );
    assert!(
        !inst.run_dir().join(&inst.prefix).exists(),
        "the instance directory (and the endpoint's unix socket) is gone"
    );
    drop((silent, half));
}

/// Runs `up --metrics ARGS...` expecting it to fail at once.
fn up_fails(inst: &Instance, args: &[&str]) -> String {
    let out = inst
        .cmd()
        .arg("up")
        .arg(&inst.config)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "up {args:?} started: {}", text(&out));
    assert_gone(&inst.namespaces());
    assert!(
        !inst.run_dir().join(&inst.prefix).exists(),
        "up {args:?} left its instance directory"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_address_off_loopback_or_a_port_in_use_is_refused_before_anything_is_created() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "metrics-refused");
    for addr in ["0.0.0.0:19477", "[::]:19477", "192.0.2.1:19477"] {
        let err = up_fails(&inst, &["--metrics", addr]);
        assert!(
            err.contains(&format!("--metrics {addr}"))
                && err.contains("is not a loopback address")
                && err.contains("--metrics-public"),
            "{err}"
        );
    }
    // With --metrics-public the address is taken: one this machine does not have
    // (TEST-NET-1) then fails at the bind, still before anything is created.
    let err = up_fails(&inst, &["--metrics", "192.0.2.1:19477", "--metrics-public"]);
    assert!(err.contains("cannot listen there"), "{err}");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = up_fails(&inst, &["--metrics", &addr]);
    assert!(
        err.contains(&format!("--metrics {addr}: cannot listen there")) && err.contains("in use"),
        "{err}"
    );
    // The port still belongs to whoever had it.
    assert_eq!(taken.local_addr().unwrap().to_string(), addr);
}
