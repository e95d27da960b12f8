//! `switchyard events` against a running switch on real namespaces: the CLI as a
//! child process, its lines read as they come, while endpoints ping and talk through
//! the NAT — MACs learned, a neighbor resolved, masqueraded flows new, assured and
//! destroyed, each line of the documented shape. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use switchyard::control::client;
use switchyard::control::protocol::{ErrorCode, FdbRow, PortRow, Reply, Request, Table};
use switchyard::control::Switchyard;
use switchyard_testkit::traffic::{self, Capture};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const T: Duration = Duration::from_secs(10);
const A: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The `nat` fixture with short UDP timeouts, so that a flow is destroyed within the
/// test; None to skip (not root).
fn up() -> Option<Switchyard> {
    require_root().then(|| {
        start(build(nat(&unique_prefix()).switch(|s| {
            s.conntrack_udp_secs = Some(2);
            s.conntrack_udp_stream_secs = Some(2);
            s.workers = 2;
        })))
    })
}

/// `switchyard events` running as a child process; its stdout lines arrive on a
/// channel. Killed when dropped, even when the test panics.
struct Events {
    child: Child,
    lines: Receiver<String>,
    /// Every line so far, for failure messages.
    seen: Vec<String>,
}

impl Events {
    fn start(sy: &Switchyard, json: bool) -> Events {
        let mut cmd = Command::new(BIN);
        cmd.arg("events").arg("--socket").arg(sy.socket());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchyard events starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Events {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `want`, for at most `timeout`; returns it.
    fn until(&mut self, timeout: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {what} within {timeout:?}; the stream said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Reads JSON lines until one satisfies `want`; returns it, parsed.
    fn until_json(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let line = self.until(T, what, |l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            check_shape(&v);
            want(&v)
        });
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line is an object with a time in RFC 3339 UTC and a kind, and only the
/// documented fields.
fn check_shape(v: &Value) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let time = o["time"].as_str().expect("a time");
    assert_eq!(time.len(), "2026-12-01T05:00:00.123456Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    assert!(o["event"].is_string(), "{v}");
    for k in o.keys() {
        assert!(
            [
                "time",
                "event",
                "network",
                "port",
                "mac",
                "from_port",
                "owner_port",
                "ip",
                "state",
                "old_state",
                "reason",
                "reply_network",
                "conntrack",
                "skipped"
            ]
            .contains(&k.as_str()),
            "undocumented field {k} in {v}"
        );
    }
}

fn is(v: &Value, event: &str) -> bool {
    v["event"] == event
}

/// The MAC of endpoint `port`'s interface, from `show ports`.
fn mac_of(sy: &Switchyard, port: &str) -> String {
    let rows: Vec<PortRow> = show(sy, Table::Ports);
    rows.into_iter().find(|r| r.port == port).unwrap().mac
}

#[test]
fn events_follow_pings_and_masqueraded_flows() {
    let Some(sy) = up() else { return };
    let mut json = Events::start(&sy, true);
    let mut text = Events::start(&sy, false);
    json.until_json("listening", |v| is(v, "listening"));
    text.until(T, "[LISTENING]", |l| l.contains("events [LISTENING]"));

    // A ping between two endpoints of one network: both MACs learned.
    traffic::ping(&ns(&sy, "a"), B, T).expect("a pings b");
    let (mac_a, mac_b) = (mac_of(&sy, "a"), mac_of(&sy, "b"));
    for (port, mac) in [("a", &mac_a), ("b", &mac_b)] {
        let v = json.until_json("a MAC learned", |v| {
            is(v, "mac_learned") && v["mac"] == mac.as_str()
        });
        assert_eq!(v["network"], "default");
        assert_eq!(v["port"], port);
        text.until(T, "the text line of a MAC learned", |l| {
            l.contains(&format!(
                "fdb [LEARNED] network=default port={port} mac={mac}"
            ))
        });
    }

    // A masqueraded UDP flow: new, assured by the reply, destroyed 2 s after.
    let server = SocketAddrV4::new(PEER, 7000);
    let echo = traffic::udp_echo_server(&ns(&sy, "outside"), server, 1, T).unwrap();
    assert_eq!(
        traffic::udp_request(&ns(&sy, "a"), server, b"events", T).unwrap(),
        b"events"
    );
    echo.join().unwrap().unwrap();
    let udp = |v: &Value| v["conntrack"]["proto"] == "udp";
    let new = json.until_json("a UDP flow new", |v| is(v, "conntrack_new") && udp(v));
    assert_eq!(new["network"], "default");
    assert_eq!(new["reply_network"], "outside");
    let ct = &new["conntrack"];
    assert_eq!(ct["original"]["src"], A.to_string());
    assert_eq!(ct["original"]["dst"], PEER.to_string());
    assert_eq!(ct["original"]["dport"], 7000);
    assert_eq!(ct["reply"]["src"], PEER.to_string());
    assert_eq!(ct["reply"]["dst"], UPLINK.to_string());
    assert_eq!(ct["state"], "UNREPLIED");
    assert_eq!(ct["nat"], "snat");
    let sport = ct["original"]["sport"].clone();
    let same = |v: &Value| udp(v) && v["conntrack"]["original"]["sport"] == sport;
    let assured = json.until_json("the UDP flow assured", |v| {
        is(v, "conntrack_assured") && same(v)
    });
    assert_eq!(assured["conntrack"]["assured"], true);
    assert_eq!(assured["conntrack"]["state"], "REPLIED");
    let gone = json.until_json("the UDP flow destroyed", |v| {
        is(v, "conntrack_destroyed") && same(v)
    });
    assert_eq!(gone["reason"], "timeout");
    assert_eq!(gone["conntrack"]["original"]["packets"], 1);
    assert_eq!(gone["conntrack"]["reply"]["packets"], 1);
    text.until(T, "the text line of the UDP flow destroyed", |l| {
        l.contains("conntrack [DESTROY] udp 17 REPLIED src=172.17.0.2 dst=198.51.100.2")
            && l.contains("reason=timeout network=default reply-network=outside")
    });

    // Resolving the host beyond the uplink for that flow: a neighbor reachable.
    // (The stream is in order, so it came before the flow went; it is in `seen`.)
    let reachable = json
        .seen
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| is(v, "neighbor") && v["ip"] == PEER.to_string() && v["state"] == "reachable")
        .unwrap_or_else(|| panic!("no neighbor reachable:\n{}", json.seen.join("\n")));
    assert_eq!(reachable["network"], "outside");
    assert_eq!(reachable["old_state"], "incomplete");
    assert!(reachable["mac"].is_string());

    // A masqueraded TCP connection: new, then assured once its handshake is done.
    let server = SocketAddrV4::new(PEER, 9000);
    let sink = traffic::tcp_sink(&ns(&sy, "outside"), server, T).unwrap();
    traffic::tcp_send(&ns(&sy, "a"), server, 1000, 7, T).unwrap();
    sink.join().unwrap().unwrap();
    let tcp = |v: &Value| v["conntrack"]["proto"] == "tcp";
    let new = json.until_json("a TCP flow new", |v| is(v, "conntrack_new") && tcp(v));
    assert_eq!(new["conntrack"]["state"], "SYN_SENT");
    assert_eq!(new["conntrack"]["original"]["dport"], 9000);
    let assured = json.until_json("the TCP flow assured", |v| {
        is(v, "conntrack_assured") && tcp(v)
    });
    assert_eq!(assured["conntrack"]["state"], "ESTABLISHED");
    text.until(T, "the text line of the TCP flow new", |l| {
        l.contains("conntrack [NEW] tcp 6 120 SYN_SENT src=172.17.0.2 dst=198.51.100.2")
    });
    drop((json, text));
    stop(sy);
}

#[test]
fn a_stream_ends_with_its_reader_and_their_number_is_bounded() {
    let Some(sy) = up() else { return };
    // A reader through the client library that takes the first line and hangs up.
    let mut first = None;
    client::stream(sy.socket(), &Request::Events {}, |r| {
        first = Some(r);
        std::ops::ControlFlow::Break(())
    })
    .unwrap();
    let Some(Reply::Event(e)) = first else {
        panic!("{first:?}")
    };
    assert_eq!(e.event, "listening");
    // The stream's place is given back: as many streams as the instance serves
    // open again, and one more is refused.
    let max = switchyard::control::live::MAX_EVENT_STREAMS;
    let readers: Vec<Events> = (0..max)
        .map(|_| {
            let mut r = Events::start(&sy, true);
            r.until_json("listening", |v| is(v, "listening"));
            r
        })
        .collect();
    let refused = client::stream(sy.socket(), &Request::Events {}, |_| {
        std::ops::ControlFlow::Continue(())
    });
    let err = refused.expect_err("one stream too many");
    assert_eq!(err.code(), Some(ErrorCode::InUse), "{err}");
    // Switching goes on with every stream open, and with all of them gone.
    traffic::ping(&ns(&sy, "a"), B, T).expect("a pings b");
    drop(readers);
    wait_until(T, "the streams to be gone", || {
        client::stream(sy.socket(), &Request::Events {}, |_| {
            std::ops::ControlFlow::Break(())
        })
        .is_ok()
    });
    traffic::ping(&ns(&sy, "b"), A, T).expect("b pings a");
    stop(sy);
}

/// A frame from `src` to everyone, of an EtherType nobody speaks.
fn flood_frame(src: [u8; 6]) -> Vec<u8> {
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&src);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    frame
}

#[test]
fn a_reader_that_falls_behind_is_told_what_it_missed_and_slows_nothing() {
    let Some(sy) = up() else { return };
    let conn = UnixStream::connect(sy.socket()).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    (&conn)
        .write_all(b"{\"version\":1,\"request\":{\"events\":{}}}\n")
        .unwrap();
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"listening\""), "{line}");
    let fdb_changes = |sy: &Switchyard| {
        ["fdb_learned", "fdb_limit", "fdb_network_limit"]
            .iter()
            .map(|id| events(sy, id))
            .sum::<u64>()
    };
    let before = fdb_changes(&sy);
    // A MAC flood while the reader reads nothing: a change per frame (a MAC learned
    // while the network's share of the FDB lasts, refused after), far more than the
    // stream's buffer and the socket hold.
    const FLOOD: u32 = 20_000;
    let cap = Capture::open(&ns(&sy, "a"), "eth0").unwrap();
    for i in 0..FLOOD {
        cap.send(&flood_frame([
            0x02,
            0xee,
            0,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ]))
        .unwrap();
    }
    // The switch did not wait for the reader.
    traffic::ping(&ns(&sy, "a"), B, T).expect("a pings b while the reader lags");
    // What the switch saw of the flood (a flood outruns a TAP's queue, and what the
    // kernel drops there never reaches the switch): its FDB changes but for the
    // endpoints' own MACs.
    let own = show::<Vec<FdbRow>>(&sy, Table::Fdb)
        .iter()
        .filter(|r| !r.mac.starts_with("02:ee:"))
        .count() as u64;
    let flood_changes = fdb_changes(&sy) - before - own;
    assert!(flood_changes > 4096, "the flood filled the network's share");
    // Reading again: every flood change is either delivered or counted as skipped.
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (mut delivered, mut skipped) = (0u64, 0u64);
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        let e = &v["ok"]["event"];
        check_shape(e);
        if is(e, "skipped") {
            skipped += e["skipped"].as_u64().unwrap();
        } else if e["mac"].as_str().is_some_and(|m| m.starts_with("02:ee:"))
            && (is(e, "mac_learned") || is(e, "mac_refused"))
        {
            delivered += 1;
        }
    }
    assert!(skipped > 0, "the reader lagged and was told so");
    assert!(
        delivered + skipped >= flood_changes,
        "{delivered} delivered + {skipped} skipped < {flood_changes} changes"
    );
    drop(reader);
    drop(conn);
    stop(sy);
}

#[test]
fn a_port_whose_namespace_is_removed_is_reported_down_once() {
    let Some(sy) = up() else { return };
    let mut json = Events::start(&sy, true);
    json.until_json("listening", |v| is(v, "listening"));
    assert!(switchyard_os::netns::delete(&ns(&sy, "b")).unwrap());
    let down = json.until_json("port b down", |v| is(v, "port_down"));
    assert_eq!(down["port"], "b");
    assert_eq!(down["network"], "default");
    // Every worker marks it down; the stream says it once.
    traffic::ping(&ns(&sy, "a"), Ipv4Addr::new(172, 17, 0, 1), T).expect("a pings its gateway");
    json.until_json("a's MAC learned from its ping", |v| {
        is(v, "mac_learned") && v["port"] == "a"
    });
    let downs = json
        .seen
        .iter()
        .filter(|l| l.contains("\"port_down\""))
        .count();
    assert_eq!(downs, 1, "{}", json.seen.join("\n"));
    drop(json);
    stop(sy);
}
