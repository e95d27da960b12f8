//! `switchyard trace --packet SPEC`: what-if traces against a running instance, end to
//! end. Two isolated networks masquerading to an outside one; after some real traffic,
//! what-ifs of a packet to the other network (dropped, reason named), a new
//! masqueraded flow (translated, yet not tracked), an unknown destination MAC
//! (flooded, the new source not learned), a packet whose next hop is unknown (it would
//! wait, nothing is asked), an ARP request to the gateway (answered, its sender not
//! learned) and a DNS query to the gateway (punted to the DNS service) — and the FDB, conntrack and neighbor tables and the counters, as `show
//! --json` prints them, are the same afterwards, and `switchyard events` reports no
//! change. A malformed SPEC is refused with a message naming its key. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchyard::control::client;
use switchyard::control::protocol::{ErrorCode, EventRow, Reply, Request, Table};
use switchyard::control::Switchyard;
use switchyard::topology::EndpointBuilder;
use switchyard_core::pipeline::FrameTrace;
use switchyard_testkit::traffic::ping;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// front (web 10.1.0.2, app 10.1.0.3) and back (db 10.2.0.2), not joined, both
/// masquerading to outside (peer 198.51.100.2).
fn up() -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            front_and_back(&unique_prefix(), |f| f, |b| b)
                .endpoint(EndpointBuilder::new("app").on("front").ip("10.1.0.3")),
        ))
    })
}

fn what_if(sy: &Switchyard, spec: &str) -> FrameTrace {
    match client::request(
        sy.socket(),
        &Request::TracePacket {
            packet: spec.into(),
        },
    ) {
        Ok(Reply::Trace(t)) => t,
        other => panic!("{spec}: {other:?}"),
    }
}

fn lines(t: &FrameTrace) -> String {
    t.lines
        .iter()
        .map(|l| format!("{}: {}\n", l.stage, l.text))
        .collect()
}

/// The tables and counters as `show --json` has them, with what only time changes
/// (ages, timeouts) taken out: (tables, ages and timeouts in row order).
fn snapshot(sy: &Switchyard) -> (Value, Vec<(String, u64)>) {
    let mut timed = Vec::new();
    let mut strip = |table: &str, mut v: Value, rows: &str| {
        let list = if rows.is_empty() {
            &mut v
        } else {
            &mut v[rows]
        };
        for row in list.as_array_mut().expect("rows") {
            let o = row.as_object_mut().unwrap();
            let key = format!("{table} {}", serde_json::to_string(&o).unwrap());
            for f in ["age_secs", "timeout_secs"] {
                if let Some(x) = o.remove(f) {
                    timed.push((format!("{f} of {key}"), x.as_u64().unwrap()));
                }
            }
        }
        v
    };
    let fdb = strip("fdb", show(sy, Table::Fdb), "");
    let conntrack = strip("conntrack", show(sy, Table::Conntrack), "connections");
    let neighbors = strip("neighbors", show(sy, Table::Neighbors), "");
    let counters: Value = show(sy, Table::Counters);
    let tables = serde_json::json!({
        "fdb": fdb,
        "conntrack": conntrack,
        "neighbors": neighbors,
        "ports": counters["ports"],
        "drops": counters["drops"],
        "events": counters["events"],
    });
    (tables, timed)
}

/// The tables are as they were, and no age was reset nor timeout pushed back: ages
/// only grew and timeouts only shrank, by no more than the time that went by.
fn assert_unchanged(
    before: &(Value, Vec<(String, u64)>),
    after: &(Value, Vec<(String, u64)>),
    secs: u64,
) {
    assert_eq!(before.0, after.0, "the tables changed");
    assert_eq!(before.1.len(), after.1.len());
    for ((what, b), (what_after, a)) in before.1.iter().zip(&after.1) {
        assert_eq!(what, what_after);
        if what.starts_with("age_secs") {
            assert!(*a >= *b && *a <= b + secs + 1, "{what}: {b} then {a}");
        } else {
            assert!(*a <= *b && *a + secs + 1 >= *b, "{what}: {b} then {a}");
        }
    }
}

#[test]
fn what_ifs_say_what_would_happen_and_change_no_table() {
    let Some(sy) = up() else { return };
    // Real traffic first, so that the tables have entries a what-if could disturb:
    // web and db learned, the peer resolved, two pings tracked and masqueraded.
    for from in ["web", "db"] {
        ping(&ns(&sy, from), PEER, Duration::from_secs(3)).expect("ping the peer");
    }
    // The table events, from a listener started now: a what-if must cause none.
    let (tx, events) = mpsc::channel::<EventRow>();
    let socket = sy.socket().to_path_buf();
    std::thread::spawn(move || {
        let _ = client::stream(&socket, &Request::Events {}, |r| match r {
            Reply::Event(e) => match tx.send(*e) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            },
            _ => ControlFlow::Break(()),
        });
    });
    let first = events.recv_timeout(Duration::from_secs(5)).expect("events");
    assert_eq!(first.event, "listening");
    let before = snapshot(&sy);
    let fdb = &before.0["fdb"];
    assert!(fdb.as_array().unwrap().len() >= 3, "{fdb}");
    assert_eq!(
        before.0["conntrack"]["count"], 2,
        "{}",
        before.0["conntrack"]
    );
    let started = Instant::now();

    // To the other, isolated network: dropped, and the reason named.
    let t = what_if(&sy, "in=web,dst=10.2.0.2");
    assert_eq!(t.port, "web");
    assert_eq!(t.verdict.action, "drop");
    assert_eq!(t.verdict.reason.as_deref(), Some("isolated"));
    assert_eq!(
        t.verdict.text,
        "dropped: networks not joined by an [[allow]] rule [isolated]"
    );

    // A new flow to the outside: it would be masqueraded, and is not tracked.
    let t = what_if(&sy, "in=web,dst=198.51.100.2,proto=tcp,dport=443");
    assert_eq!(t.verdict.action, "forward", "{}", lines(&t));
    assert_eq!(t.verdict.ports, ["peer"]);
    assert!(
        lines(&t).contains(
            "nat-snat: new flow tcp 10.1.0.2:40000 > 198.51.100.2:443, would be tracked and \
             masqueraded as 198.51.100.1:40000 (no entry made, port not reserved)"
        ),
        "{}",
        lines(&t)
    );
    assert_eq!(
        t.verdict.text,
        "routed to port peer, translated from 10.1.0.2:40000 > 198.51.100.2:443 to \
         198.51.100.1:40000 > 198.51.100.2:443"
    );

    // An unknown destination MAC, from a MAC not seen yet: flooded, not learned.
    let t = what_if(
        &sy,
        "in=web,src_mac=02:00:00:00:99:01,dst_mac=02:00:00:00:99:02,dst=10.1.0.3,proto=udp",
    );
    assert_eq!(t.verdict.action, "flood", "{}", lines(&t));
    assert_eq!(t.verdict.ports, ["app"]);
    assert_eq!(t.verdict.text, "flooded to ports app");
    assert!(
        lines(&t).contains("l2-learn: would learn 02:00:00:00:99:01 on port web (bridge front)"),
        "{}",
        lines(&t)
    );

    // A next hop nobody has asked for: it would be asked, and the packet held.
    let t = what_if(&sy, "in=web,dst=198.51.100.9,proto=udp,dport=53");
    assert_eq!(t.verdict.action, "held", "{}", lines(&t));
    assert_eq!(
        t.verdict.text,
        "held: would wait for ARP resolution of 198.51.100.9"
    );
    assert!(
        lines(&t).contains("emit: would send 02:"),
        "the ARP request is described: {}",
        lines(&t)
    );

    // An ARP request to the gateway from an endpoint that has not spoken yet:
    // answered, and its sender not learned.
    let t = what_if(&sy, "in=app,proto=arp,target=10.1.0.1");
    assert_eq!(t.verdict.action, "flood", "{}", lines(&t));
    assert_eq!(
        t.verdict.text,
        "flooded to ports web; switchyard answers it, the ARP reply sent back out of port app"
    );
    assert!(
        lines(&t).contains("arp-input: would learn neighbor 10.1.0.3 at "),
        "{}",
        lines(&t)
    );
    assert!(lines(&t).contains("emit: would send "), "{}", lines(&t));

    // A DNS query to the gateway: it would be handed to the DNS service.
    let t = what_if(&sy, "in=web,dst=10.1.0.1,proto=udp,dport=53");
    assert_eq!(t.verdict.action, "punt", "{}", lines(&t));
    assert_eq!(
        t.verdict.text,
        "punted: handed to switchyard's DNS service, whose answer goes back out of port web"
    );
    assert!(
        lines(&t).contains("ip4-local: DNS over udp 10.1.0.2:"),
        "{}",
        lines(&t)
    );

    let secs = started.elapsed().as_secs();
    assert_unchanged(&before, &snapshot(&sy), secs);
    // Then a real change: app's first packet teaches switchyard its MAC. It is the
    // first event since the listener started — the what-ifs reported none.
    ping(
        &ns(&sy, "app"),
        Ipv4Addr::new(10, 1, 0, 1),
        Duration::from_secs(3),
    )
    .expect("ping");
    let e = events
        .recv_timeout(Duration::from_secs(5))
        .expect("an event");
    assert_eq!(
        (e.event.as_str(), e.port.as_deref()),
        ("mac_learned", Some("app")),
        "{e:?}"
    );
    stop(sy);
}

#[test]
fn the_cli_prints_a_what_if_as_a_trace_and_refuses_a_malformed_spec() {
    let Some(sy) = up() else { return };
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("trace")
            .arg("--socket")
            .arg(sy.socket())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (ok, text, err) = run(&["--packet", "in=web dst=10.2.0.2 proto=udp dport=53"]);
    assert!(ok, "{err}");
    assert!(text.starts_with("packet 1 on port web\n"), "{text}");
    assert!(
        text.contains("  02:42:0a:01:00:02 > "),
        "the frame's summary: {text}"
    );
    assert!(
        text.trim_end()
            .ends_with("=> dropped: networks not joined by an [[allow]] rule [isolated]"),
        "{text}"
    );
    let (ok, json, err) = run(&["--packet", "in=web,dst=10.2.0.2", "--json"]);
    assert!(ok, "{err}");
    let t: FrameTrace = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(t.verdict.reason.as_deref(), Some("isolated"));

    // Malformed: the message names the key, and nothing else is printed.
    for (spec, says) in [
        (
            "in=web,dst=10.2.0.2,dport=http",
            "dport=http: not a port number (0-65535)",
        ),
        ("dst=10.2.0.2", "`in` is required"),
        ("in=web,dst=10.2.0.2,colour=red", "unknown key `colour`"),
        (
            "in=nosuch,dst=10.2.0.2",
            "in=nosuch: no such port; ports are web, db, peer, app",
        ),
    ] {
        let (ok, out, err) = run(&["--packet", spec]);
        assert!(!ok, "{spec}: accepted");
        assert!(out.is_empty(), "{spec}: {out}");
        assert!(err.contains(says), "{spec}: {err}");
        assert!(err.contains("packet spec: "), "{spec}: {err}");
    }
    let e = client::request(
        sy.socket(),
        &Request::TracePacket {
            packet: "in=nosuch".into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownPort));
    let e = client::request(
        sy.socket(),
        &Request::TracePacket {
            packet: "in=web,ttl=300".into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    // The CLI does not mix a what-if with a live trace.
    let (ok, _, err) = run(&["--packet", "in=web", "--port", "web"]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    stop(sy);
}
