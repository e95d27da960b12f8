//! `switchyard trace`: the live trace of a running instance, end to end. A ping
//! between two endpoints is traced frame by frame (the ARP request flooded and its
//! source learned, the reply and the echo exchange sent to one port each), a ping to
//! the gateway is answered by switchyard, and the trace's own rules hold: one at a
//! time, unknown ports named, a client that hangs up frees it. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;
use switchyard::control::client;
use switchyard::control::protocol::{ErrorCode, Reply, Request, TraceEnd};
use switchyard_core::pipeline::FrameTrace;
use switchyard_testkit::traffic::ping;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Starts a live trace of `count` frames on `ports` in the background; the frames
/// and the end line come back through the receiver once the trace is over.
fn trace_in_background(
    socket: &Path,
    ports: &[&str],
    count: u32,
) -> mpsc::Receiver<(Vec<FrameTrace>, TraceEnd)> {
    let (tx, rx) = mpsc::channel();
    let socket = socket.to_path_buf();
    let req = Request::Trace {
        ports: ports.iter().map(|p| p.to_string()).collect(),
        count,
    };
    let req_count = count;
    let (started_tx, started) = mpsc::channel();
    std::thread::spawn(move || {
        let mut frames = Vec::new();
        let mut end = None;
        client::stream(&socket, &req, |r| match r {
            Reply::TraceStart(s) => {
                assert_eq!(s.count, req_count);
                let _ = started_tx.send(());
                ControlFlow::Continue(())
            }
            Reply::Trace(t) => {
                frames.push(t);
                ControlFlow::Continue(())
            }
            Reply::TraceEnd(e) => {
                end = Some(e);
                ControlFlow::Break(())
            }
            other => panic!("unexpected reply {other:?}"),
        })
        .expect("the trace stream");
        let _ = tx.send((frames, end.expect("a trace_end line")));
    });
    // Nothing is sent before every worker traces.
    started
        .recv_timeout(Duration::from_secs(5))
        .expect("the trace_start line");
    rx
}

fn stages(t: &FrameTrace) -> Vec<&str> {
    t.lines.iter().map(|l| l.stage.as_ref()).collect()
}

#[test]
fn a_trace_of_one_ping_shows_the_flood_the_learning_and_the_unicast_reply() {
    if !require_root() {
        return;
    }
    let sy = start(build(three(&unique_prefix())));
    let rx = trace_in_background(sy.socket(), &[], 4);
    ping(
        &ns(&sy, "a"),
        Ipv4Addr::new(172, 17, 0, 3),
        Duration::from_secs(2),
    )
    .expect("ping");
    let (frames, end) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the trace ends after four frames");
    assert_eq!(
        end,
        TraceEnd {
            frames: 4,
            skipped: 0
        }
    );
    let numbers: Vec<u32> = frames.iter().map(|t| t.packet).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);

    // Two workers report in the order they finish, which need not be the order on
    // the wire: find each frame by what it is.
    let find = |what: &str| {
        frames
            .iter()
            .find(|t| t.summary.contains(what))
            .unwrap_or_else(|| panic!("no {what} in {frames:#?}"))
    };
    let request = find("ARP request");
    let reply = find("ARP reply");
    let echo = find("icmp echo request");
    let echo_reply = find("icmp echo reply");
    // The ARP request: broadcast, so flooded to every other port; its source learned.
    assert_eq!(request.port, "a");
    assert!(
        request
            .summary
            .contains("ARP request who-has 172.17.0.3 tell 172.17.0.2"),
        "{}",
        request.summary
    );
    assert_eq!(
        stages(request),
        ["ethernet-input", "l2-learn", "arp-input", "l2-flood"]
    );
    assert!(
        request.lines[1].text.starts_with("learned "),
        "{:?}",
        request.lines
    );
    assert_eq!(request.verdict.action, "flood");
    assert_eq!(request.verdict.ports, ["b", "c"]);
    assert!(
        request.time_ns > 1_700_000_000_000_000_000,
        "wall-clock time"
    );

    // The ARP reply: b's MAC learned, and a is known now: one port.
    assert_eq!(reply.port, "b");
    assert!(
        reply.summary.contains("ARP reply 172.17.0.3 is-at"),
        "{}",
        reply.summary
    );
    assert_eq!(stages(reply), ["ethernet-input", "l2-learn", "l2-forward"]);
    assert!(
        reply.lines[1].text.starts_with("learned "),
        "{:?}",
        reply.lines
    );
    assert_eq!(
        (reply.verdict.action.as_str(), &reply.verdict.ports[..]),
        ("forward", &["a".to_string()][..])
    );

    // The echo and its reply: both MACs known, unicast both ways, nothing learned anew.
    assert!(
        echo.summary.contains("icmp echo request"),
        "{}",
        echo.summary
    );
    assert_eq!(echo.verdict.ports, ["b"]);
    assert!(
        echo_reply.summary.contains("icmp echo reply"),
        "{}",
        echo_reply.summary
    );
    assert_eq!(echo_reply.verdict.ports, ["a"]);
    for t in [echo, echo_reply] {
        assert_eq!(t.verdict.action, "forward");
        assert!(t.lines[1].text.contains("already known"), "{:?}", t.lines);
        assert_eq!(
            t.verdict.text,
            format!("sent to port {}", t.verdict.ports[0])
        );
    }

    // A ping to the gateway, traced on a only: a asks for the gateway's MAC (a
    // broadcast: flooded, and answered by switchyard), then switchyard answers the
    // echo itself.
    let rx = trace_in_background(sy.socket(), &["a"], 2);
    ping(
        &ns(&sy, "a"),
        Ipv4Addr::new(172, 17, 0, 1),
        Duration::from_secs(2),
    )
    .expect("ping");
    let (frames, _) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("two frames");
    let arp = frames
        .iter()
        .find(|t| t.summary.contains("ARP request who-has 172.17.0.1"))
        .unwrap_or_else(|| panic!("{frames:#?}"));
    assert!(
        arp.lines
            .iter()
            .any(|l| l.stage == "arp-input" && l.text.contains("reply")),
        "{:#?}",
        arp.lines
    );
    let echo = frames
        .iter()
        .find(|t| t.summary.contains("icmp echo request"))
        .unwrap_or_else(|| panic!("{frames:#?}"));
    assert_eq!(echo.verdict.action, "reply", "{echo:#?}");
    assert_eq!(echo.verdict.ports, ["a"]);
    stop(sy);
}

#[test]
fn one_trace_at_a_time_unknown_ports_named_and_a_hang_up_frees_it() {
    if !require_root() {
        return;
    }
    let sy = start(build(three(&unique_prefix())));
    let unknown = client::stream(
        sy.socket(),
        &Request::Trace {
            ports: vec!["nosuch".into()],
            count: 1,
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::UnknownPort));
    assert!(
        unknown.to_string().contains("a, b, c"),
        "names the ports: {unknown}"
    );
    let zero = client::stream(
        sy.socket(),
        &Request::Trace {
            ports: vec![],
            count: 0,
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert_eq!(zero.code(), Some(ErrorCode::BadRequest));

    // A trace that waits (nothing is sent) holds the instance's one trace ...
    let waiting = std::os::unix::net::UnixStream::connect(sy.socket()).unwrap();
    {
        use std::io::Write;
        (&waiting)
            .write_all(b"{\"version\":1,\"request\":{\"trace\":{\"count\":5}}}\n")
            .unwrap();
    }
    wait_for(
        Duration::from_secs(5),
        "the second trace to be refused",
        || {
            let e = client::stream(
                sy.socket(),
                &Request::Trace {
                    ports: vec![],
                    count: 1,
                },
                |_| ControlFlow::Break(()),
            )
            .err()?;
            assert_eq!(e.code(), Some(ErrorCode::InUse), "{e}");
            Some(())
        },
    );
    // ... until its client hangs up; then the next one traces.
    drop(waiting);
    wait_for(Duration::from_secs(5), "the trace to be free again", || {
        let rx = trace_in_background(sy.socket(), &["b"], 1);
        ping(
            &ns(&sy, "b"),
            Ipv4Addr::new(172, 17, 0, 4),
            Duration::from_secs(2),
        )
        .ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    });
    stop(sy);
}

#[test]
fn the_trace_verb_prints_text_or_one_json_object_per_frame() {
    if !require_root() {
        return;
    }
    let sy = start(build(three(&unique_prefix())));
    let run = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.arg("trace")
            .arg("--socket")
            .arg(sy.socket())
            .args(["--port", "c", "--count", "2"]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The first line on stderr says the trace is on.
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
        assert_eq!(
            first,
            "tracing the next 2 frames received on port c (Ctrl-C to stop)\n"
        );
        ping(
            &ns(&sy, "c"),
            Ipv4Addr::new(172, 17, 0, 2),
            Duration::from_secs(2),
        )
        .expect("ping");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?} {rest}");
        (String::from_utf8(out.stdout).unwrap(), rest)
    };
    let (text, _) = run(false);
    assert!(text.starts_with("packet 1 at "), "{text}");
    assert!(text.contains(" on port c\n"), "{text}");
    assert!(text.contains("  => "), "{text}");
    assert!(text.trim_end().ends_with("2 frames traced"), "{text}");
    let (json, stderr) = run(true);
    let objects: Vec<FrameTrace> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(objects.len(), 2, "{json}");
    assert!(objects.iter().all(|t| t.port == "c"));
    assert!(stderr.contains("2 frames traced"), "{stderr}");
    stop(sy);
}
