//! The protocol's types against its schema, `docs/control-protocol.md`, and against
//! themselves: every request and reply survives a trip through JSON, and a bad
//! request line gets the error code the schema promises.

use super::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = include_str!("../../../docs/control-protocol.md");

/// One request of every kind. The match is there to be noticed: a new kind of request
/// needs a sample here, and then the doc test asks for its section.
fn sample_requests() -> Vec<Request> {
    let all = vec![
        Request::Show {
            table: Table::Counters,
        },
        Request::Trace {
            ports: vec!["a".into()],
            count: 10,
        },
        Request::TracePacket {
            packet: "in=a,dst=198.51.100.7,proto=tcp,dport=443".into(),
        },
        Request::Events {},
        Request::Capture(CaptureRequest {
            ports: vec!["a".into(), "b".into()],
            drops: true,
            count: Some(100),
        }),
        Request::NetworkCreate(NetworkCreate {
            name: "back".into(),
            subnet: "10.20.0.0/24".into(),
            gateway: Some("10.20.0.1".into()),
            mtu: Some(1450),
            masquerade: true,
            internal: false,
            icc: Some(false),
            dns: Some(true),
            dns_domain: Some("back.internal".into()),
        }),
        Request::NetworkRm {
            name: "back".into(),
        },
        Request::NetworkLs {},
        Request::NetworkInspect {
            name: "back".into(),
        },
        Request::NetworkConnect(NetworkConnect {
            network: "back".into(),
            endpoint: "web".into(),
            ip: Some("10.20.0.5".into()),
            ifname: Some("eth1".into()),
        }),
        Request::NetworkDisconnect {
            network: "back".into(),
            endpoint: "web".into(),
        },
        Request::EndpointCreate(EndpointCreate {
            name: "web".into(),
            network: "default".into(),
            ip: Some("172.17.0.9".into()),
            mac: Some("02:42:ac:11:00:09".into()),
            publish: vec!["8080:80/tcp".into()],
            netns: Some("/run/netns/ctr1".into()),
            ifname: Some("eth0".into()),
            aliases: vec!["www".into()],
            handover: true,
        }),
        Request::EndpointRm { name: "web".into() },
        Request::EndpointLs {},
        Request::AllowAdd {
            a: "default".into(),
            b: "back".into(),
        },
        Request::AllowRm {
            a: "default".into(),
            b: "back".into(),
        },
        Request::RouteAdd {
            prefix: "192.168.50.0/24".into(),
            via: "10.20.0.254".into(),
        },
        Request::RouteRm {
            prefix: "192.168.50.0/24".into(),
            via: "10.20.0.254".into(),
        },
    ];
    for r in &all {
        match r {
            Request::Show { .. }
            | Request::Trace { .. }
            | Request::TracePacket { .. }
            | Request::Events {}
            | Request::Capture(_)
            | Request::NetworkCreate(_)
            | Request::NetworkRm { .. }
            | Request::NetworkLs {}
            | Request::NetworkInspect { .. }
            | Request::NetworkConnect(_)
            | Request::NetworkDisconnect { .. }
            | Request::EndpointCreate(_)
            | Request::EndpointRm { .. }
            | Request::EndpointLs {}
            | Request::AllowAdd { .. }
            | Request::AllowRm { .. }
            | Request::RouteAdd { .. }
            | Request::RouteRm { .. } => {}
        }
    }
    all
}

fn port_counters(port: &str) -> PortCounterRow {
    PortCounterRow {
        port: port.into(),
        rx_frames: 6,
        rx_bytes: 476,
        forwarded: 4,
        consumed: 2,
        dropped: 0,
        held: 0,
        tx_frames: 6,
        tx_bytes: 476,
        tx_errors: 0,
        rx_errors: 0,
        rx_gso: 0,
        tx_gso: 0,
        tx_segmented: 0,
        tx_segments: 0,
        tx_coalesced: 0,
        tx_coalesced_datagrams: 0,
        punted: 0,
        punt_dropped: 0,
        punt_replies: 0,
        punt_stale: 0,
        rx_tagged: 0,
        rx_truncated: 0,
        rx_kernel_drops: 0,
        rx_unclaimed: 0,
        // Keyed by drop reason: its keys are data, not fields, so the sample leaves it
        // empty and the walk over fields stops at it.
        drops: BTreeMap::new(),
    }
}

fn flow(src: &str, dst: &str) -> FlowTuple {
    FlowTuple {
        src: src.into(),
        dst: dst.into(),
        sport: 40000,
        dport: 80,
        packets: 4,
        bytes: 300,
    }
}

/// The reply to `show table`, with every list non-empty and every optional field both
/// present and absent somewhere, so that walking its JSON finds every field and kind.
fn sample_reply(table: Table) -> Reply {
    match table {
        Table::Ports => Reply::Ports(vec![
            PortRow {
                port: "a".into(),
                kind: "tap".into(),
                endpoint: "a".into(),
                interface: "eth0".into(),
                netns: "sy-a".into(),
                network: "default".into(),
                mac: "02:42:ac:11:00:02".into(),
                ip: "172.17.0.2/16".into(),
                mtu: 1500,
                vnet_hdr: true,
                offloads: "csum tso4".into(),
                queues: 2,
                steering: "cpu".into(),
                io: "uring".into(),
                rx_frames: 6,
                tx_frames: 6,
                dropped: 0,
                state: "up".into(),
                down_reason: None,
            },
            PortRow {
                port: "b".into(),
                kind: "tap".into(),
                endpoint: "b".into(),
                interface: "eth0".into(),
                netns: "sy-b".into(),
                network: "default".into(),
                mac: "02:42:ac:11:00:03".into(),
                ip: "172.17.0.3/16".into(),
                mtu: 1500,
                vnet_hdr: true,
                offloads: "csum tso4".into(),
                queues: 2,
                steering: "cpu".into(),
                io: "syscalls".into(),
                rx_frames: 2,
                tx_frames: 1,
                dropped: 0,
                state: "down".into(),
                down_reason: Some("its network namespace was removed".into()),
            },
        ]),
        Table::Fdb => Reply::Fdb(vec![FdbRow {
            network: "default".into(),
            mac: "02:42:ac:11:00:02".into(),
            port: "vxlan:default".into(),
            age_secs: 3,
            vtep: Some("192.0.2.2".into()),
        }]),
        Table::Counters => Reply::Counters(CountersReport {
            ports: vec![port_counters("a"), port_counters("b")],
            drops: vec![NamedCount {
                id: "truncated".into(),
                stage: "ethernet-input".into(),
                text: "frame shorter than an Ethernet header".into(),
                count: 0,
            }],
            events: vec![NamedCount {
                id: "fdb_learned".into(),
                stage: "l2-learn".into(),
                text: "MACs learned".into(),
                count: 2,
            }],
            workers: vec![WorkerRow {
                worker: 0,
                cpu_secs: 0.12,
                rx_frames: 4,
                cpus: vec![0],
            }],
        }),
        Table::Routes => Reply::Routes(vec![
            RouteRow {
                prefix: "10.9.0.0/16".into(),
                via: Some("10.2.0.254".into()),
                network: "back".into(),
                origin: "static".into(),
                mtu: 1280,
            },
            RouteRow {
                prefix: "10.1.0.0/24".into(),
                via: None,
                network: "front".into(),
                origin: "connected".into(),
                mtu: 1500,
            },
        ]),
        Table::Neighbors => Reply::Neighbors(vec![NeighborRow {
            ip: "10.2.0.2".into(),
            mac: "02:42:0a:02:00:02".into(),
            network: "back".into(),
            state: "reachable".into(),
            age_secs: 4,
            queued: 0,
        }]),
        Table::Conntrack => Reply::Conntrack(ConntrackReport {
            count: 1,
            max: 65536,
            connections: vec![ConntrackRow {
                proto: "tcp".into(),
                state: "ESTABLISHED".into(),
                timeout_secs: 431999,
                assured: true,
                nat: "snat".into(),
                original: flow("172.17.0.2", "198.51.100.2"),
                reply: flow("198.51.100.2", "198.51.100.1"),
            }],
        }),
        Table::Config => Reply::Config(ConfigText {
            toml: "[switch]\nprefix = \"sy-\"\n".into(),
        }),
        Table::Dns => {
            use crate::dns::service::{DnsRecordRow, DnsZoneRow, FrameStats};
            let zone = |network: &str, domain: Option<&str>| DnsZoneRow {
                network: network.into(),
                server: "10.1.0.1".parse().unwrap(),
                domain: domain.map(str::to_string),
                records: vec![DnsRecordRow {
                    name: "db".into(),
                    address: "10.1.0.3".parse().unwrap(),
                    alias: false,
                }],
            };
            Reply::Dns(Box::new(crate::dns::DnsView {
                zones: vec![zone("app", Some("app.internal")), zone("back", None)],
                upstreams: vec!["192.0.2.53:53".into()],
                upstream_netns: Some("/run/netns/host1".into()),
                counters: switchyard_dns::CountersSnapshot {
                    queries: 12,
                    ..Default::default()
                },
                frames: FrameStats {
                    punted: 12,
                    ..Default::default()
                },
            }))
        }
    }
}

/// One reply of every kind. As with the requests, the match is a reminder: a reply
/// that answers something other than `show` needs a sample here.
fn sample_replies() -> Vec<Reply> {
    let mut all: Vec<Reply> = Table::ALL.into_iter().map(sample_reply).collect();
    all.push(Reply::TraceStart(TraceStart {
        count: 10,
        ports: vec!["a".into()],
    }));
    all.push(Reply::Trace(switchyard_core::pipeline::FrameTrace {
        packet: 1,
        time_ns: 1_796_101_012_063_658_000,
        port: "a".into(),
        summary: "02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff, ARP request who-has 172.17.0.3 \
                  tell 172.17.0.2, 42 bytes"
            .into(),
        continued: false,
        lines: vec![switchyard_core::pipeline::StageLine {
            stage: "l2-learn".into(),
            text: "learned 02:42:ac:11:00:02 on port a (bridge default)".into(),
        }],
        verdict: switchyard_core::pipeline::Verdict {
            action: "drop".into(),
            ports: vec!["b".into()],
            reason: Some("ttl_expired".into()),
            text: "flooded over network default: to port b".into(),
        },
    }));
    all.push(Reply::TraceEnd(TraceEnd {
        frames: 10,
        skipped: 0,
    }));
    all.push(Reply::Event(Box::new(sample_event())));
    all.push(Reply::CaptureStarted(CaptureStarted {
        ports: vec!["a".into(), "b".into()],
        buffers: 1056,
        buffer_bytes: 4_195_200,
    }));
    all.push(Reply::CapturePackets(vec![CapturedPacket {
        port: 0,
        direction: CaptureDirection::In,
        time_ns: 1_796_101_012_063_659_000,
        len: 60,
        data: "////////AQBeAAAHCAA=".into(),
        drop: Some("group_source_mac".into()),
        reason: Some("source MAC is multicast or broadcast".into()),
    }]));
    all.push(Reply::CaptureStatus(CaptureStatus {
        packets: 120,
        skipped: 3,
    }));
    all.push(Reply::CaptureEnd(CaptureStatus {
        packets: 100,
        skipped: 0,
    }));
    all.push(Reply::Network(sample_network()));
    all.push(Reply::Networks(vec![sample_network()]));
    all.push(Reply::Endpoint(sample_endpoint()));
    all.push(Reply::Endpoints(vec![sample_endpoint()]));
    all.push(Reply::Changed(Changed {
        change: "endpoint web removed".into(),
        forgotten: ForgottenRow {
            fdb: 1,
            neighbors: 1,
            held: 0,
            conntrack: 2,
        },
    }));
    for r in &all {
        match r {
            Reply::Ports(_)
            | Reply::Fdb(_)
            | Reply::Counters(_)
            | Reply::Routes(_)
            | Reply::Neighbors(_)
            | Reply::Conntrack(_)
            | Reply::Config(_)
            | Reply::Dns(_)
            | Reply::TraceStart(_)
            | Reply::Trace(_)
            | Reply::TraceEnd(_)
            | Reply::Event(_)
            | Reply::CaptureStarted(_)
            | Reply::CapturePackets(_)
            | Reply::CaptureStatus(_)
            | Reply::CaptureEnd(_)
            | Reply::Network(_)
            | Reply::Networks(_)
            | Reply::Endpoint(_)
            | Reply::Endpoints(_)
            | Reply::Changed(_) => {}
        }
    }
    all
}

fn sample_network() -> NetworkRow {
    NetworkRow {
        name: "default".into(),
        subnet: "172.17.0.0/16".into(),
        gateway: Some("172.17.0.1".into()),
        mtu: 1500,
        mode: "bridge".into(),
        masquerade: true,
        external: false,
        internal: false,
        icc: true,
        endpoints: vec![AttachedRow {
            endpoint: "a".into(),
            port: "a".into(),
            interface: "eth0".into(),
            mac: "02:42:ac:11:00:02".into(),
            ip: "172.17.0.2/16".into(),
        }],
        dns: true,
        dns_domain: Some("app.internal".into()),
    }
}

fn sample_endpoint() -> EndpointRow {
    EndpointRow {
        name: "web".into(),
        netns: "sy-web".into(),
        foreign: false,
        handover: false,
        interfaces: vec![InterfaceRow {
            ifname: "eth0".into(),
            network: "default".into(),
            port: "web".into(),
            mac: "02:42:ac:11:00:04".into(),
            ip: "172.17.0.4/16".into(),
            gateway: Some("172.17.0.1".into()),
            mtu: 1500,
        }],
        publish: vec!["8080:80/tcp".into()],
        aliases: vec!["www".into()],
    }
}

/// A line of the `events` stream with every field there is (no one event has
/// them all; the schema lists each).
fn sample_event() -> EventRow {
    EventRow {
        network: Some("front".into()),
        port: Some("a".into()),
        mac: Some("02:42:ac:11:00:02".into()),
        from_port: Some("b".into()),
        owner_port: Some("b".into()),
        ip: Some("198.51.100.2".into()),
        state: Some("reachable".into()),
        old_state: Some("incomplete".into()),
        reason: Some("timeout".into()),
        reply_network: Some("outside".into()),
        conntrack: Some(ConntrackRow {
            proto: "udp".into(),
            state: "REPLIED".into(),
            timeout_secs: 120,
            assured: true,
            nat: "snat".into(),
            original: flow("10.1.0.2", "198.51.100.2"),
            reply: flow("198.51.100.2", "198.51.100.1"),
        }),
        skipped: Some(3),
        ..EventRow::new("2026-12-01T05:00:00.000000Z".into(), "conntrack_new")
    }
}

// ---- reading the doc ----

/// The text under the heading `heading` (e.g. "## Replies") up to the next heading of
/// the same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let level = heading.find(' ').unwrap();
    let mut start = None;
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        let line = l.trim_end();
        match start {
            None if line == heading => start = Some(at + l.len()),
            Some(s) => {
                let hashes = line.chars().take_while(|&c| c == '#').count();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    return &text[s..at];
                }
            }
            None => {}
        }
        at += l.len();
    }
    let s = start.unwrap_or_else(|| panic!("the doc has no heading {heading:?}"));
    &text[s..]
}

/// The names of the `### `name`` headings in `text`, in order.
fn subsections(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`'))
        .map(String::from)
        .collect()
}

/// Rows of the markdown tables in `text` whose first cell is `code`: that name and
/// the other cells.
fn table_rows(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.strip_prefix('|')?.strip_suffix('|')?.split('|').collect();
            let first = cells[0].trim().strip_prefix('`')?.strip_suffix('`')?;
            Some((
                first.to_string(),
                cells[1..].iter().map(|c| c.trim().to_string()).collect(),
            ))
        })
        .collect()
}

/// The ```json blocks in `text`.
fn json_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for l in text.lines() {
        match (&mut current, l.trim()) {
            (None, "```json") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => b.push_str(l),
            (None, _) => {}
        }
    }
    blocks
}

/// The JSON kind of a value, as the doc's type column names it.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field path under `v` (`[].port`, `connections[].original.src`) with the
/// kinds of value seen there.
fn fields(v: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<&'static str>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.entry(p.clone()).or_default().insert(kind(x));
                fields(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                fields(x, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn field_map(v: &Value) -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut out = BTreeMap::new();
    fields(v, "", &mut out);
    out
}

/// Checks a documented field table against the fields of `sample`.
fn check_fields(what: &str, doc: &str, sample: &Value) {
    let documented: BTreeMap<String, String> = table_rows(doc)
        .into_iter()
        .map(|(name, cells)| (name, cells[0].clone()))
        .collect();
    let actual = field_map(sample);
    let doc_names: BTreeSet<&String> = documented.keys().collect();
    let actual_names: BTreeSet<&String> = actual.keys().collect();
    assert_eq!(
        doc_names, actual_names,
        "{what}: the doc's fields (left) differ from the type's (right)"
    );
    for (name, kinds) in &actual {
        for k in kinds {
            assert!(
                documented[name].contains(k),
                "{what}: field `{name}` is documented as {:?} but holds a JSON {k}",
                documented[name]
            );
        }
    }
}

// ---- the doc against the types ----

#[test]
fn the_doc_states_the_version_and_the_line_limit() {
    assert!(
        DOC.contains(&format!("This is version {PROTOCOL_VERSION}.")),
        "the doc's version is not {PROTOCOL_VERSION}"
    );
    assert!(
        DOC.contains(&format!("{MAX_REQUEST_BYTES} bytes")),
        "the doc does not give the request line limit of {MAX_REQUEST_BYTES} bytes"
    );
}

#[test]
fn the_doc_lists_every_request_with_its_arguments_and_an_example() {
    let requests = section(DOC, "## Requests");
    let samples = sample_requests();
    let names: Vec<&str> = samples.iter().map(Request::name).collect();
    assert_eq!(subsections(requests), names, "requests in the doc");
    assert_eq!(Request::NAMES, names, "Request::NAMES");
    for r in &samples {
        let text = section(requests, &format!("### `{}`", r.name()));
        let wire = serde_json::to_value(r).unwrap();
        check_fields(&format!("request {}", r.name()), text, &wire[r.name()]);
        let examples: Vec<Envelope> = json_blocks(text)
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("{b}: {e}")))
            .collect();
        assert!(
            examples.iter().any(|e| e.request.name() == r.name()),
            "the doc has no example of request {}",
            r.name()
        );
    }
    // `table` takes every table there is.
    let show = section(requests, "### `show`");
    for t in Table::ALL {
        assert!(show.contains(&format!("`{t}`")), "`show` does not list {t}");
    }
}

#[test]
fn the_doc_describes_every_reply_field_by_field() {
    let replies = section(DOC, "## Replies");
    let samples = sample_replies();
    let names: Vec<&str> = samples.iter().map(Reply::name).collect();
    assert_eq!(subsections(replies), names, "reply sections in the doc");
    // The table of replies comes before the first reply's section.
    let overview = table_rows(replies.split("\n### ").next().unwrap());
    assert_eq!(
        overview.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names,
        "the doc's table of replies"
    );
    for (r, (_, cells)) in samples.iter().zip(&overview) {
        let payload = r.payload();
        assert!(
            cells[1].starts_with(kind(&payload)),
            "reply {}: the payload is documented as {:?} but is a JSON {}",
            r.name(),
            cells[1],
            kind(&payload)
        );
        let text = section(replies, &format!("### `{}`", r.name()));
        check_fields(&format!("reply {}", r.name()), text, &payload);
        // The example as written: a misspelt optional field would parse (as absent),
        // but its path is not one the reply has.
        let example = json_blocks(text)
            .iter()
            .map(|b| {
                let typed: Response =
                    serde_json::from_str(b).unwrap_or_else(|e| panic!("{b}: {e}"));
                (typed, serde_json::from_str::<Value>(b).unwrap())
            })
            .find(|(typed, _)| typed.result.as_ref().is_ok_and(|x| x.name() == r.name()))
            .map(|(_, raw)| raw["ok"][r.name()].clone())
            .unwrap_or_else(|| panic!("the doc has no example of reply {}", r.name()));
        let documented = field_map(&payload);
        for path in field_map(&example).keys() {
            assert!(
                documented.contains_key(path),
                "the example of reply {} has a field `{path}` the reply does not",
                r.name()
            );
        }
    }
}

#[test]
fn the_doc_lists_every_error_code() {
    let codes = section(DOC, "## Error codes");
    let documented: Vec<String> = table_rows(codes).into_iter().map(|(n, _)| n).collect();
    let actual: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.id()).collect();
    assert_eq!(documented, actual, "error codes in the doc");
    // ALL is every code a server sends: all but the one for codes a client does not know.
    for c in ErrorCode::ALL {
        match c {
            ErrorCode::BadRequest
            | ErrorCode::UnsupportedVersion
            | ErrorCode::UnknownRequest
            | ErrorCode::TooLarge
            | ErrorCode::DataplaneStopped
            | ErrorCode::Internal
            | ErrorCode::Busy
            | ErrorCode::UnknownPort
            | ErrorCode::InUse
            | ErrorCode::Invalid
            | ErrorCode::NotFound
            | ErrorCode::SetupFailed => {}
            ErrorCode::Other => panic!("servers never send `other`"),
        }
    }
    assert!(
        codes.contains("`other`"),
        "the doc says what a client does with a code it does not know"
    );
}

#[test]
fn every_json_example_in_the_doc_is_a_request_or_a_response_of_this_version() {
    let blocks = json_blocks(DOC);
    assert!(blocks.len() >= 10, "found the examples");
    for b in blocks {
        let version = if let Ok(e) = serde_json::from_str::<Envelope>(&b) {
            e.version
        } else {
            let r: Response = serde_json::from_str(&b)
                .unwrap_or_else(|e| panic!("neither a request nor a response ({e}): {b}"));
            r.version
        };
        assert_eq!(version, PROTOCOL_VERSION, "{b}");
    }
}

// ---- the types against themselves ----

#[test]
fn every_request_survives_the_wire() {
    for r in sample_requests() {
        let line = serde_json::to_string(&Envelope::new(r.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<Envelope>(&line).unwrap(),
            Envelope::new(r.clone())
        );
        assert_eq!(parse_request(line.as_bytes()), Ok(r));
    }
    for t in Table::ALL {
        let line = serde_json::to_string(&Envelope::new(Request::Show { table: t })).unwrap();
        assert_eq!(
            line,
            format!(r#"{{"version":{PROTOCOL_VERSION},"request":{{"show":{{"table":"{t}"}}}}}}"#)
        );
    }
}

#[test]
fn every_reply_and_error_survives_the_wire() {
    for r in sample_replies() {
        let resp = Response::ok(r);
        let line = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), resp);
    }
    for c in ErrorCode::ALL {
        let resp = Response::error(ErrorReply::new(c, "why"));
        let line = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            line,
            format!(r#"{{"version":{PROTOCOL_VERSION},"code":"{c}","error":"why"}}"#)
        );
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), resp);
    }
}

#[test]
fn a_reply_is_tagged_on_the_wire_and_bare_in_its_payload() {
    let Reply::Fdb(rows) = sample_reply(Table::Fdb) else {
        unreachable!()
    };
    let resp = Response::ok(Reply::Fdb(rows.clone()));
    assert_eq!(
        serde_json::to_string(&resp).unwrap(),
        r#"{"version":1,"ok":{"fdb":[{"network":"default","mac":"02:42:ac:11:00:02","port":"vxlan:default","age_secs":3,"vtep":"192.0.2.2"}]}}"#
    );
    // What `show fdb --json` prints: the rows, as before the protocol had versions.
    assert_eq!(
        Reply::Fdb(rows).payload(),
        json!([{"network": "default", "mac": "02:42:ac:11:00:02", "port": "vxlan:default", "age_secs": 3, "vtep": "192.0.2.2"}])
    );
}

#[test]
fn a_response_is_either_ok_or_an_error() {
    for line in [
        r#"{"version":1}"#,
        r#"{"version":1,"ok":{"fdb":[]},"code":"internal","error":"x"}"#,
        r#"{"version":1,"error":"no code"}"#,
        r#"{"version":1,"code":"internal"}"#,
    ] {
        assert!(serde_json::from_str::<Response>(line).is_err(), "{line}");
    }
}

#[test]
fn a_code_from_a_newer_server_reads_as_other() {
    let r: Response =
        serde_json::from_str(r#"{"version":1,"code":"quota_exceeded","error":"too many"}"#)
            .unwrap();
    assert_eq!(r.result, Err(ErrorReply::new(ErrorCode::Other, "too many")));
}

// ---- bad requests get the codes the doc promises ----

fn refused(line: &str) -> ErrorReply {
    parse_request(line.as_bytes()).expect_err(line)
}

#[test]
fn another_version_is_refused_naming_both() {
    let e = refused(r#"{"version":2,"request":{"show":{"table":"fdb"}}}"#);
    assert_eq!(e.code, ErrorCode::UnsupportedVersion);
    assert!(
        e.message.contains("version 2") && e.message.contains("version 1"),
        "{e}"
    );
    // The version is checked before the shape, which a client of another version
    // may well get wrong.
    let e = refused(r#"{"version":0,"request":"whatever"}"#);
    assert_eq!(e.code, ErrorCode::UnsupportedVersion);
    // A client from before versions.
    let e = refused(r#"{"cmd":"show","table":"fdb"}"#);
    assert_eq!(e.code, ErrorCode::UnsupportedVersion);
    assert!(e.message.contains("no \"version\""), "{e}");
}

#[test]
fn a_malformed_line_is_a_bad_request() {
    for line in [
        "",
        "not json",
        r#"{"version":1,"request":{"show":{"table":"fdb"}}"#,
        "[1,2]",
        r#"{"version":"1","request":{"show":{"table":"fdb"}}}"#,
        r#"{"version":1}"#,
        r#"{"version":1,"request":{}}"#,
        r#"{"version":1,"request":{"show":{"table":"fdb"},"extra":{}}}"#,
        r#"{"version":1,"request":{"show":{"table":"vlans"}}}"#,
        r#"{"version":1,"request":{"show":{"table":"fdb","port":"a"}}}"#,
        r#"{"version":1,"request":{"show":{}}}"#,
        r#"{"version":1,"request":"show"}"#,
        r#"{"version":1,"request":{"show":{"table":"fdb"}},"id":7}"#,
    ] {
        assert_eq!(refused(line).code, ErrorCode::BadRequest, "{line}");
    }
    let e = refused(r#"{"version":1,"request":{"show":{"table":"vlans"}}}"#);
    assert!(
        e.message.contains("vlans") && e.message.contains("fdb"),
        "{e}"
    );
}

#[test]
fn an_unknown_request_is_named_with_those_that_exist() {
    let e = refused(r#"{"version":1,"request":{"teleport":{"port":"a"}}}"#);
    assert_eq!(e.code, ErrorCode::UnknownRequest);
    assert!(
        e.message.contains("\"teleport\"") && e.message.contains("show"),
        "{e}"
    );
}

#[test]
fn whitespace_around_a_request_is_fine() {
    assert_eq!(
        parse_request(b" {\"version\":1,\"request\":{\"show\":{\"table\":\"fdb\"}}}\r"),
        Ok(Request::Show { table: Table::Fdb })
    );
}
