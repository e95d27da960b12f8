//! Human-readable tables for the `show` verbs, and traces for `trace`: the typed
//! replies of the control protocol, laid out for people (`--json` prints the replies
//! as they are).

use super::protocol::*;
use std::fmt::Write as _;

/// Left-aligned columns separated by two spaces.
struct TextTable {
    rows: Vec<Vec<String>>,
}

impl TextTable {
    fn new(header: &[&str]) -> TextTable {
        TextTable {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The text `show` prints for a reply.
pub fn reply(r: &Reply) -> String {
    match r {
        Reply::Ports(rows) => ports(rows),
        Reply::Fdb(rows) => fdb(rows),
        Reply::Counters(c) => counters(c),
        Reply::Routes(rows) => routes(rows),
        Reply::Neighbors(rows) => neighbors(rows),
        Reply::Conntrack(c) => conntrack(c),
        Reply::Config(c) => c.toml.clone(),
        Reply::Dns(d) => dns(d),
        Reply::TraceStart(t) => trace_start(t),
        Reply::Trace(t) => frame_trace(t),
        Reply::TraceEnd(e) => trace_end(e),
        Reply::Event(e) => event(e) + "\n",
        // A capture's lines are turned into pcapng or packet lines by the capture
        // verb; alone, each says what it is.
        Reply::CaptureStarted(s) => format!("capturing on {}\n", s.ports.join(", ")),
        Reply::CapturePackets(p) => format!("{} packets\n", p.len()),
        Reply::CaptureStatus(s) | Reply::CaptureEnd(s) => {
            format!("{} packets, {} skipped\n", s.packets, s.skipped)
        }
        Reply::Network(n) => network(n),
        Reply::Networks(rows) => networks(rows),
        Reply::Endpoint(e) => endpoints(std::slice::from_ref(e)),
        Reply::Endpoints(rows) => endpoints(rows),
        Reply::Changed(c) => changed(c),
    }
}

/// `network ls`: one line per network, like `docker network ls`.
fn networks(rows: &[NetworkRow]) -> String {
    let mut t = TextTable::new(&[
        "NETWORK",
        "SUBNET",
        "GATEWAY",
        "MTU",
        "OPTIONS",
        "ENDPOINTS",
    ]);
    for n in rows {
        t.row(vec![
            n.name.clone(),
            n.subnet.clone(),
            n.gateway.clone().unwrap_or_else(|| "-".into()),
            n.mtu.to_string(),
            network_options(n),
            n.endpoints.len().to_string(),
        ]);
    }
    t.render()
}

/// The options of a network that differ from a plain bridge, in words.
fn network_options(n: &NetworkRow) -> String {
    let mut o = vec![n.mode.clone()];
    for (on, word) in [
        (n.masquerade, "masquerade"),
        (n.external, "external"),
        (n.internal, "internal"),
        (!n.icc, "icc=false"),
        (n.dns, "dns"),
    ] {
        if on {
            o.push(word.to_string());
        }
    }
    o.join(",")
}

/// `network inspect`: the network, then its endpoints.
fn network(n: &NetworkRow) -> String {
    let dns = match (n.dns, &n.dns_domain) {
        (false, _) => "off".to_string(),
        (true, None) => format!("at {}", n.gateway.as_deref().unwrap_or("-")),
        (true, Some(d)) => format!("at {}, search {d}", n.gateway.as_deref().unwrap_or("-")),
    };
    let mut s = format!(
        "network {}\n  subnet   {}\n  gateway  {}\n  mtu      {}\n  options  {}\n  dns      {dns}\n",
        n.name,
        n.subnet,
        n.gateway.as_deref().unwrap_or("-"),
        n.mtu,
        network_options(n)
    );
    if n.endpoints.is_empty() {
        s.push_str("  no endpoints attached\n");
        return s;
    }
    let mut t = TextTable::new(&["  ENDPOINT", "PORT", "INTERFACE", "MAC", "IP"]);
    for e in &n.endpoints {
        t.row(vec![
            format!("  {}", e.endpoint),
            e.port.clone(),
            e.interface.clone(),
            e.mac.clone(),
            e.ip.clone(),
        ]);
    }
    s.push_str(&t.render());
    s
}

/// `endpoint ls`, and the endpoint a change made: one line per interface.
fn endpoints(rows: &[EndpointRow]) -> String {
    let mut t = TextTable::new(&[
        "ENDPOINT",
        "NETNS",
        "INTERFACE",
        "NETWORK",
        "MAC",
        "IP",
        "PUBLISH",
        "ALIASES",
    ]);
    for e in rows {
        let netns = if e.handover {
            format!("{} (handover)", e.netns)
        } else if e.foreign {
            format!("{} (attached)", e.netns)
        } else {
            e.netns.clone()
        };
        let publish = if e.publish.is_empty() {
            "-".to_string()
        } else {
            e.publish.join(",")
        };
        let aliases = if e.aliases.is_empty() {
            "-".to_string()
        } else {
            e.aliases.join(",")
        };
        if e.interfaces.is_empty() {
            t.row(vec![
                e.name.clone(),
                netns,
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                publish,
                aliases,
            ]);
            continue;
        }
        for (k, i) in e.interfaces.iter().enumerate() {
            let first = k == 0;
            t.row(vec![
                if first { e.name.clone() } else { String::new() },
                if first { netns.clone() } else { String::new() },
                i.ifname.clone(),
                i.network.clone(),
                i.mac.clone(),
                i.ip.clone(),
                if first {
                    publish.clone()
                } else {
                    String::new()
                },
                if first {
                    aliases.clone()
                } else {
                    String::new()
                },
            ]);
        }
    }
    t.render()
}

/// A change that removed or rewired something, and what went with it.
fn changed(c: &Changed) -> String {
    let f = &c.forgotten;
    if f.fdb + f.neighbors + f.held + f.conntrack == 0 {
        return format!("{}\n", c.change);
    }
    format!(
        "{} (forgotten: {} FDB, {} neighbor, {} held packet{}, {} conntrack)\n",
        c.change,
        f.fdb,
        f.neighbors,
        f.held,
        if f.held == 1 { "" } else { "s" },
        f.conntrack
    )
}

/// One traced frame: a heading, the frame in one line, a line per stage, and the
/// verdict after an arrow.
///
/// ```text
/// packet 1 at 09:14:03.201337 on port a
///   02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff, ARP request who-has 172.17.0.3 tell 172.17.0.2, 42 bytes
///   ethernet-input  port a: 02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff ARP, 42 bytes
///   l2-learn        learned 02:42:ac:11:00:02 on port a (bridge default)
///   ...
///   => flooded over network default: to port b
/// ```
pub fn frame_trace(t: &switchyard_core::pipeline::FrameTrace) -> String {
    let mut s = format!("packet {}", t.packet);
    if t.continued {
        s.push_str(" (continued: it waited for its next hop and walks on)");
    } else {
        if t.time_ns != 0 {
            let _ = write!(s, " at {}", time_of_day(t.time_ns));
        }
        let _ = write!(s, " on port {}", t.port);
    }
    s.push('\n');
    if !t.summary.is_empty() {
        let _ = writeln!(s, "  {}", t.summary);
    }
    let width = t.lines.iter().map(|l| l.stage.len()).max().unwrap_or(0);
    for l in &t.lines {
        let _ = writeln!(s, "  {:<width$}  {}", l.stage, l.text);
    }
    let _ = writeln!(s, "  => {}", t.verdict.text);
    s
}

/// The first line of a live trace.
pub fn trace_start(t: &TraceStart) -> String {
    let on = if t.ports.is_empty() {
        "every port".to_string()
    } else {
        format!(
            "port{} {}",
            if t.ports.len() == 1 { "" } else { "s" },
            t.ports.join(", ")
        )
    };
    format!(
        "tracing the next {} frame{} received on {on} (Ctrl-C to stop)\n",
        t.count,
        if t.count == 1 { "" } else { "s" }
    )
}

/// The last line of a live trace.
pub fn trace_end(e: &TraceEnd) -> String {
    let mut s = format!(
        "{} frame{} traced",
        e.frames,
        if e.frames == 1 { "" } else { "s" }
    );
    if e.skipped > 0 {
        let _ = write!(
            s,
            ", {} more skipped (the trace was read too slowly)",
            e.skipped
        );
    }
    s.push('\n');
    s
}

/// `HH:MM:SS.micros` (UTC) of a time in nanoseconds since the Unix epoch.
pub(crate) fn time_of_day(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ns % 1_000_000_000 / 1000
    )
}

pub fn ports(rows: &[PortRow]) -> String {
    let mut t = TextTable::new(&[
        "PORT", "KIND", "STATE", "NETNS", "IFACE", "NETWORK", "MAC", "IP", "MTU", "OFFLOADS",
        "QUEUES", "STEER", "IO", "RX", "TX", "DROPPED",
    ]);
    for r in rows {
        t.row(vec![
            r.port.clone(),
            r.kind.clone(),
            r.state.clone(),
            r.netns.clone(),
            r.interface.clone(),
            r.network.clone(),
            r.mac.clone(),
            r.ip.clone(),
            r.mtu.to_string(),
            r.offloads.clone(),
            r.queues.to_string(),
            r.steering.clone(),
            r.io.clone(),
            r.rx_frames.to_string(),
            r.tx_frames.to_string(),
            r.dropped.to_string(),
        ]);
    }
    t.render()
}

pub fn fdb(rows: &[FdbRow]) -> String {
    if rows.is_empty() {
        return "FDB is empty (no MAC learned yet)\n".into();
    }
    // The VTEP column only when some MAC is behind a tunnel.
    let tunnels = rows.iter().any(|r| r.vtep.is_some());
    let mut t = if tunnels {
        TextTable::new(&["NETWORK", "MAC", "PORT", "VTEP", "AGE"])
    } else {
        TextTable::new(&["NETWORK", "MAC", "PORT", "AGE"])
    };
    for r in rows {
        let mut row = vec![r.network.clone(), r.mac.clone(), r.port.clone()];
        if tunnels {
            row.push(r.vtep.clone().unwrap_or_else(|| "-".into()));
        }
        row.push(format!("{}s", r.age_secs));
        t.row(row);
    }
    let mut s = t.render();
    let _ = writeln!(
        s,
        "{} entr{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
    s
}

pub fn counters(c: &CountersReport) -> String {
    let mut t = TextTable::new(&[
        "PORT",
        "RX",
        "RX-BYTES",
        "FORWARDED",
        "CONSUMED",
        "DROPPED",
        "HELD",
        "TX",
        "TX-BYTES",
        "TX-ERRORS",
        "RX-ERRORS",
        "RX-GSO",
        "TX-GSO",
        "SEGMENTED",
        "COALESCED",
        "PUNTED",
        "PUNT-REPLIES",
    ]);
    for p in &c.ports {
        t.row(vec![
            p.port.clone(),
            p.rx_frames.to_string(),
            p.rx_bytes.to_string(),
            p.forwarded.to_string(),
            p.consumed.to_string(),
            p.dropped.to_string(),
            p.held.to_string(),
            p.tx_frames.to_string(),
            p.tx_bytes.to_string(),
            p.tx_errors.to_string(),
            p.rx_errors.to_string(),
            p.rx_gso.to_string(),
            p.tx_gso.to_string(),
            format!("{} ({} segs)", p.tx_segmented, p.tx_segments),
            format!("{} ({} dgrams)", p.tx_coalesced, p.tx_coalesced_datagrams),
            format!("{} ({} dropped)", p.punted, p.punt_dropped),
            format!("{} ({} stale)", p.punt_replies, p.punt_stale),
        ]);
    }
    let mut s = t.render();
    for p in &c.ports {
        if p.rx_tagged + p.rx_truncated + p.rx_kernel_drops + p.rx_unclaimed > 0 {
            let _ = writeln!(
                s,
                "{}: refused before the pipeline: {} tagged, {} truncated, {} dropped by the kernel, {} unclaimed (ipvlan-l2)",
                p.port, p.rx_tagged, p.rx_truncated, p.rx_kernel_drops, p.rx_unclaimed
            );
        }
    }
    s.push('\n');
    let drops: Vec<&NamedCount> = c.drops.iter().filter(|d| d.count > 0).collect();
    if drops.is_empty() {
        s.push_str("drops: none\n");
    } else {
        s.push_str("drops by reason:\n");
        let mut t = TextTable::new(&["  STAGE", "REASON", "COUNT"]);
        for d in drops {
            t.row(vec![
                format!("  {}", d.stage),
                d.text.clone(),
                d.count.to_string(),
            ]);
        }
        s.push_str(&t.render());
    }
    if !c.workers.is_empty() {
        s.push_str("\nworkers:\n");
        let mut t = TextTable::new(&["  WORKER", "PINNED", "CPU", "RX"]);
        for w in &c.workers {
            let pinned = if w.cpus.is_empty() {
                "-".to_string()
            } else {
                w.cpus
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            t.row(vec![
                format!("  {}", w.worker),
                pinned,
                format!("{:.2}s", w.cpu_secs),
                w.rx_frames.to_string(),
            ]);
        }
        s.push_str(&t.render());
    }
    let events: Vec<&NamedCount> = c.events.iter().filter(|e| e.count > 0).collect();
    if !events.is_empty() {
        s.push_str("\nevents:\n");
        let mut t = TextTable::new(&["  STAGE", "EVENT", "COUNT"]);
        for e in events {
            t.row(vec![
                format!("  {}", e.stage),
                e.text.clone(),
                e.count.to_string(),
            ]);
        }
        s.push_str(&t.render());
    }
    s
}

pub fn routes(rows: &[RouteRow]) -> String {
    let mut t = TextTable::new(&["PREFIX", "VIA", "NETWORK", "ORIGIN", "MTU"]);
    for r in rows {
        t.row(vec![
            r.prefix.clone(),
            r.via.clone().unwrap_or_else(|| "-".into()),
            r.network.clone(),
            r.origin.clone(),
            r.mtu.to_string(),
        ]);
    }
    t.render()
}

pub fn neighbors(rows: &[NeighborRow]) -> String {
    if rows.is_empty() {
        return "no neighbors (nothing routed yet)\n".into();
    }
    let mut t = TextTable::new(&["IP", "MAC", "NETWORK", "STATE", "AGE", "QUEUED"]);
    for r in rows {
        t.row(vec![
            r.ip.clone(),
            if r.mac.is_empty() {
                "(incomplete)".into()
            } else {
                r.mac.clone()
            },
            r.network.clone(),
            r.state.to_uppercase(),
            format!("{}s", r.age_secs),
            r.queued.to_string(),
        ]);
    }
    t.render()
}

/// `show dns`: each network's names, where other names go, and the counters.
pub fn dns(d: &crate::dns::DnsView) -> String {
    let mut s = String::new();
    if d.zones.is_empty() {
        s.push_str("no network serves DNS\n");
    }
    for z in &d.zones {
        let domain = z
            .domain
            .as_deref()
            .map_or(String::new(), |d| format!(", domain {d}"));
        let _ = writeln!(s, "network {} (server {}{domain})", z.network, z.server);
        let mut t = TextTable::new(&["  NAME", "ADDRESS", "KIND"]);
        for r in &z.records {
            t.row(vec![
                format!("  {}", r.name),
                r.address.to_string(),
                if r.alias { "alias" } else { "endpoint" }.to_string(),
            ]);
        }
        s.push_str(&t.render());
    }
    let up = if d.upstreams.is_empty() {
        "none (other names are refused)".to_string()
    } else {
        let via = d
            .upstream_netns
            .as_deref()
            .map_or(String::new(), |n| format!(" via namespace {n}"));
        format!("{}{via}", d.upstreams.join(", "))
    };
    let _ = writeln!(s, "upstream: {up}");
    let mut t = TextTable::new(&["COUNTER", "VALUE"]);
    for (name, value) in d.counters.iter() {
        t.row(vec![name.to_string(), value.to_string()]);
    }
    let f = &d.frames;
    for (name, value) in [
        ("punted_frames", f.punted),
        ("bad_frames", f.bad_frames),
        ("answers_sent", f.answers_sent),
        ("no_buffer", f.no_buffer),
        ("worker_busy", f.worker_busy),
        ("upstream_send_errors", f.upstream_send_errors),
        ("upstream_dropped", f.upstream_dropped),
        ("outstanding", f.outstanding),
        ("tcp_connections", f.tcp_connections),
        ("tcp_open", f.tcp_open),
        ("tcp_refused_segments", f.tcp_refused_segments),
        ("tcp_aborted", f.tcp_aborted),
    ] {
        t.row(vec![name.to_string(), value.to_string()]);
    }
    s.push_str(&t.render());
    s
}

/// Like `conntrack -L`: one line per connection.
pub fn conntrack(r: &ConntrackReport) -> String {
    let mut s = String::new();
    for c in &r.connections {
        let t = |t: &FlowTuple| {
            format!(
                "src={} dst={} sport={} dport={} packets={} bytes={}",
                t.src, t.dst, t.sport, t.dport, t.packets, t.bytes
            )
        };
        let _ = writeln!(
            s,
            "{:<4} {:>6} {:<11} {} {}{} [{}]",
            c.proto,
            c.timeout_secs,
            c.state,
            t(&c.original),
            t(&c.reply),
            if c.assured { " [ASSURED]" } else { "" },
            c.nat.to_uppercase()
        );
    }
    let _ = writeln!(s, "{} of at most {} connections tracked", r.count, r.max);
    s
}

/// One line of `switchyard events` (without its newline), laid out as
/// `TIME TABLE [WHAT] key=value ...`; conntrack's as `conntrack -E` prints them
/// (`docs/events.md` has every kind).
pub fn event(e: &EventRow) -> String {
    let mut s = format!("{} ", e.time);
    let tag = |s: &mut String, table: &str, what: &str| {
        let _ = write!(s, "{table} [{what}]");
    };
    let kv = |s: &mut String, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            let _ = write!(s, " {k}={v}");
        }
    };
    match e.event.as_str() {
        "mac_learned" | "mac_aged" | "mac_refused" => {
            let what = match e.event.as_str() {
                "mac_learned" => "LEARNED",
                "mac_aged" => "AGED",
                _ => "REFUSED",
            };
            tag(&mut s, "fdb", what);
            kv(&mut s, "network", &e.network);
            kv(&mut s, "port", &e.port);
            kv(&mut s, "mac", &e.mac);
            kv(&mut s, "reason", &e.reason);
            kv(&mut s, "owner", &e.owner_port);
        }
        "mac_moved" => {
            tag(&mut s, "fdb", "MOVED");
            kv(&mut s, "network", &e.network);
            kv(&mut s, "mac", &e.mac);
            kv(&mut s, "from", &e.from_port);
            kv(&mut s, "to", &e.port);
        }
        "neighbor" => {
            let state = e.state.as_deref().unwrap_or("").to_uppercase();
            tag(&mut s, "neigh", &state);
            kv(&mut s, "network", &e.network);
            kv(&mut s, "ip", &e.ip);
            kv(&mut s, "mac", &e.mac);
            kv(
                &mut s,
                "was",
                &e.old_state.as_ref().map(|w| w.to_uppercase()),
            );
        }
        "conntrack_new" | "conntrack_assured" | "conntrack_destroyed" => {
            let what = match e.event.as_str() {
                "conntrack_new" => "NEW",
                "conntrack_assured" => "ASSURED",
                _ => "DESTROY",
            };
            tag(&mut s, "conntrack", what);
            if let Some(c) = &e.conntrack {
                let destroyed = what == "DESTROY";
                let number = match c.proto.as_str() {
                    "tcp" => 6,
                    "udp" => 17,
                    "icmp" => 1,
                    _ => 0,
                };
                let _ = write!(s, " {} {number}", c.proto);
                // A destroyed entry has no time left, as in `conntrack -E`.
                if !destroyed {
                    let _ = write!(s, " {}", c.timeout_secs);
                }
                let _ = write!(s, " {}", c.state);
                for t in [&c.original, &c.reply] {
                    let _ = write!(
                        s,
                        " src={} dst={} sport={} dport={}",
                        t.src, t.dst, t.sport, t.dport
                    );
                    if destroyed {
                        let _ = write!(s, " packets={} bytes={}", t.packets, t.bytes);
                    }
                }
                if c.assured {
                    s.push_str(" [ASSURED]");
                }
                let _ = write!(s, " [{}]", c.nat.to_uppercase());
            }
            kv(&mut s, "reason", &e.reason);
            kv(&mut s, "network", &e.network);
            kv(&mut s, "reply-network", &e.reply_network);
        }
        "port_down" => {
            tag(&mut s, "port", "DOWN");
            kv(&mut s, "network", &e.network);
            kv(&mut s, "port", &e.port);
        }
        "skipped" => {
            tag(&mut s, "events", "SKIPPED");
            kv(&mut s, "count", &e.skipped.map(|n| n.to_string()));
        }
        "listening" => tag(&mut s, "events", "LISTENING"),
        // A kind from a newer server: its name and what this client can name.
        other => {
            tag(&mut s, "events", &other.to_uppercase());
            kv(&mut s, "network", &e.network);
            kv(&mut s, "port", &e.port);
            kv(&mut s, "mac", &e.mac);
            kv(&mut s, "ip", &e.ip);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let s = fdb(&[
            FdbRow {
                network: "default".into(),
                mac: "02:42:ac:11:00:02".into(),
                port: "a".into(),
                age_secs: 3,
                vtep: None,
            },
            FdbRow {
                network: "default".into(),
                mac: "02:42:ac:11:00:03".into(),
                port: "bb".into(),
                age_secs: 12,
                vtep: None,
            },
        ]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "NETWORK  MAC                PORT  AGE");
        assert_eq!(lines[1], "default  02:42:ac:11:00:02  a     3s");
        assert_eq!(lines[2], "default  02:42:ac:11:00:03  bb    12s");
        assert_eq!(lines[3], "2 entries");
    }

    #[test]
    fn a_mac_behind_a_tunnel_shows_its_vtep() {
        let row = |port: &str, vtep: Option<&str>| FdbRow {
            network: "over".into(),
            mac: "02:42:ac:11:00:02".into(),
            port: port.into(),
            age_secs: 1,
            vtep: vtep.map(Into::into),
        };
        let s = fdb(&[row("a", None), row("vxlan:over", Some("192.0.2.2"))]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "NETWORK  MAC                PORT        VTEP       AGE"
        );
        assert_eq!(
            lines[1],
            "over     02:42:ac:11:00:02  a           -          1s"
        );
        assert_eq!(
            lines[2],
            "over     02:42:ac:11:00:02  vxlan:over  192.0.2.2  1s"
        );
    }
}
