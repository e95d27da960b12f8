//! Changes to a running instance do not disturb the traffic of others: two TCP
//! transfers — `a` → `b` on one network (bridged) and `a` → `c` on another (routed
//! through switchyard's gateway, the two networks joined by an allow) — keep going
//! without loss or stall while networks and endpoints come and go through the
//! control socket.
//!
//! The test runs the same transfer twice on one instance (2 workers): first alone
//! (the baseline), then while a churn loop makes, as fast as the control socket
//! answers, cycles of
//!
//! network create → endpoint create on it → ping its gateway from it →
//! network connect of it to a's network → ping `b` from it → allow add and rm
//! between its network and an unrelated one → network disconnect → endpoint rm →
//! network rm.
//!
//! Each sender writes a stream of numbered 8-byte words; each receiver checks every
//! word (so a lost, repeated, reordered or corrupted byte is seen), counts the bytes,
//! and records the longest time between two successive reads (a stall) and the
//! bytes per 100 ms. Beside them, one probe asks the workers for an answer between
//! two batches every 5 ms (how long a worker is away from its ports) and another
//! measures how late a 1 ms sleep wakes (how long the machine keeps a runnable
//! thread from a core: the noise every figure carries on a shared machine).
//!
//! The test asserts that every byte arrived; that the longest stall and the longest
//! worker pause under churn stay within [`STALL_BOUND`] and [`PAUSE_BOUND`] beyond
//! that noise; that nothing was lost on the way (the receivers saw no segment out
//! of order and every retransmission of a's came back as a D-SACK: it had arrived);
//! that ports `a`, `b` and `c` dropped nothing; and that the churn leaves nothing
//! behind: no namespace, no port, no FDB or neighbor entry of what it removed. It
//! prints the figures (`-- --nocapture`). Needs root.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard::control::client;
use switchyard::control::protocol::{
    EndpointCreate, FdbRow, NeighborRow, NetworkConnect, NetworkCreate, PortRow, Reply, Request,
    Table,
};
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology, TopologyBuilder};
use switchyard_os::netns;
use switchyard_testkit::fixtures::*;
use switchyard_testkit::traffic;

const A: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);

/// How long the baseline transfer runs.
const BASELINE: Duration = Duration::from_secs(4);
/// The churn makes at least this many cycles, and runs at least [`CHURN_TIME`].
const CYCLES: usize = 30;
const CHURN_TIME: Duration = Duration::from_secs(4);
/// The longest a transfer may go without a byte while the churn runs, beyond what
/// the machine's scheduler costs anyway (see [`noise`]). A worker takes up a new
/// layout between two batches, so a change should cost a stream nothing the baseline
/// does not see too (its longest stalls measured 11–108 ms, the churn's 30–150 ms on a
/// 2-core machine shared with compilers; docs/testing.md). 200 ms is TCP's minimum
/// retransmission timeout: a stall that long means a timeout had to fire, and the
/// worker that closed a removed port's TAP queue itself stalled the transfers for
/// 368–811 ms.
const STALL_BOUND: Duration = Duration::from_millis(200);
/// The longest a worker may be away from its ports (its answer to a query between
/// two batches) while the churn runs, beyond [`noise`]: measured 9–76 ms without
/// churn and 14–112 ms with it (the worker waiting for a core, not for a change);
/// a worker closing a TAP queue was away for up to 835 ms.
const PAUSE_BOUND: Duration = Duration::from_millis(150);
/// A sender or receiver that waits this long for its socket has stalled for good.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the machine's scheduler adds to a bound: a stall or pause that every
/// thread suffered (the longest time a sleeping thread of the test waited for a
/// core after its sleep) is not one the switch caused. Twice, as the worker and
/// the receiver each wait for their turn.
fn noise<R>(t: &Transfer<R>) -> Duration {
    2 * t.late
}

/// `one` (a, b) joined to `two` (c); `idle` has no endpoint and is what the churn's
/// networks are joined to and parted from.
fn topology(prefix: &str) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .switch(|s| s.workers = 2)
        .network(NetworkBuilder::new("one", "10.10.0.0/24").gateway("10.10.0.1"))
        .network(NetworkBuilder::new("two", "10.20.0.0/24").gateway("10.20.0.1"))
        .network(NetworkBuilder::new("idle", "10.30.0.0/24").gateway("10.30.0.1"))
        .allow("one", "two")
        .endpoint(EndpointBuilder::new("a").on("one").ip(A))
        .endpoint(EndpointBuilder::new("b").on("one").ip(B))
        .endpoint(EndpointBuilder::new("c").on("two").ip(C))
}

// ---- the byte stream ------------------------------------------------------------

/// Word `n` of the stream for `seed`: a number no other position repeats.
fn word(seed: u64, n: u64) -> u64 {
    n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

/// Writes words of the stream to `s` until `stop` is set, then closes its sending
/// side and waits for the receiver to close. Returns the bytes written.
fn send_until(mut s: TcpStream, seed: u64, stop: &AtomicBool) -> io::Result<u64> {
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for w in buf.chunks_exact_mut(8) {
            w.copy_from_slice(&word(seed, n).to_le_bytes());
            n += 1;
        }
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest)? > 0 {}
    Ok(sent)
}

/// What a receiver saw.
#[derive(Debug)]
struct Flow {
    bytes: u64,
    /// The longest time between two reads that returned data, and when (from the
    /// first byte) it ended.
    stall: Duration,
    stall_at: Duration,
    stall_end: Option<Instant>,
    /// Bytes received in each 100 ms since the first byte.
    per_100ms: Vec<u64>,
}

/// Reads `s` to its end, checking every word against the stream for `seed`.
fn receive(mut s: TcpStream, seed: u64) -> io::Result<Flow> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; 256 * 1024];
    // Bytes at the front of `buf` not checked yet (less than a word).
    let mut have = 0usize;
    let mut n = 0u64;
    let mut flow = Flow {
        bytes: 0,
        stall: Duration::ZERO,
        stall_at: Duration::ZERO,
        stall_end: None,
        per_100ms: Vec::new(),
    };
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    loop {
        let k = s.read(&mut buf[have..])?;
        if k == 0 {
            if have != 0 {
                return Err(io::Error::other(format!(
                    "the stream ended {have} bytes into word {n}"
                )));
            }
            break;
        }
        let now = Instant::now();
        let start = *first.get_or_insert(now);
        if let Some(l) = last {
            if now - l > flow.stall {
                flow.stall = now - l;
                flow.stall_at = now - start;
                flow.stall_end = Some(now);
            }
        }
        last = Some(now);
        let bucket = ((now - start).as_millis() / 100) as usize;
        if flow.per_100ms.len() <= bucket {
            flow.per_100ms.resize(bucket + 1, 0);
        }
        flow.per_100ms[bucket] += k as u64;
        flow.bytes += k as u64;
        have += k;
        let whole = have / 8 * 8;
        for w in buf[..whole].chunks_exact(8) {
            let got = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            if got != word(seed, n) {
                return Err(io::Error::other(format!(
                    "byte {} of the stream differs: word {n} is {got:#018x}, {:#018x} was sent",
                    n * 8,
                    word(seed, n)
                )));
            }
            n += 1;
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    Ok(flow)
}

/// The TCP counters of namespace `ns`, as nstat names them (`TcpRetransSegs`,
/// `TcpExtTCPLossProbes`): its /proc/net/snmp and /proc/net/netstat.
fn tcp_counters(ns: &str) -> HashMap<String, u64> {
    let files = netns::run_in_named(ns, || {
        ["snmp", "netstat"].map(|f| std::fs::read_to_string(format!("/proc/thread-self/net/{f}")))
    })
    .expect("the namespace opens");
    let mut out = HashMap::new();
    for text in files {
        let text = text.expect("/proc/net/snmp and netstat read");
        // Each group is two lines: its field names, then their values.
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks_exact(2) {
            let (names, values) = (pair[0].split_whitespace(), pair[1].split_whitespace());
            let mut names = names.peekable();
            let group = names.next().unwrap_or("").trim_end_matches(':');
            if !group.starts_with("Tcp") {
                continue;
            }
            for (n, v) in names.zip(values.skip(1)) {
                if let Ok(v) = v.parse() {
                    out.insert(format!("{group}{n}"), v);
                }
            }
        }
    }
    out
}

/// How much each counter of `after` grew since `before`.
fn grown(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    after[name] - before.get(name).copied().unwrap_or(0)
}

/// One run of both transfers.
struct Transfer<R> {
    /// (name, bytes sent, what arrived)
    flows: Vec<(&'static str, u64, Flow)>,
    secs: f64,
    /// How a's TCP counters grew.
    a: HashMap<String, u64>,
    /// How b's and c's TCP counters grew (together).
    peers: HashMap<String, u64>,
    /// The longest a worker took to answer a query between two batches (a probe
    /// every few milliseconds): how long a worker was away from its ports.
    worker_pause: Duration,
    /// The longest a thread of this test slept beyond the 1 ms it asked for: how
    /// long the machine kept a runnable thread waiting for a core.
    late: Duration,
    during: R,
}

/// Runs `a` → `b` and `a` → `c` (to `port`) while `during` runs, then stops them.
fn transfer<R>(sy: &Switchyard, port: u16, during: impl FnOnce() -> R) -> Transfer<R> {
    let a = ns(sy, "a");
    let peers = [ns(sy, "b"), ns(sy, "c")];
    let a0 = tcp_counters(&a);
    let p0: Vec<_> = peers.iter().map(|p| tcp_counters(p)).collect();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (flows, during, (worker_pause, late)) = std::thread::scope(|s| {
        let mut running = Vec::new();
        for (name, dst, seed) in [("a→b", B, 0xb0b0_u64), ("a→c", C, 0xc0c0_u64)] {
            let peer = if dst == B { "b" } else { "c" };
            let l = traffic::tcp_listener(&ns(sy, peer), SocketAddrV4::new(dst, port))
                .expect("listens");
            let out = traffic::tcp_connect(&a, SocketAddrV4::new(dst, port), IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("{name} connects: {e}"));
            let (inc, _) = l.accept().expect("accepts");
            let stop = &stop;
            let sender = s.spawn(move || send_until(out, seed, stop));
            let receiver = s.spawn(move || receive(inc, seed));
            running.push((name, sender, receiver));
        }
        let stop = &stop;
        let handle = sy.handle();
        let pauses = s.spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                handle.query_all(|_| ()).expect("the workers answer");
                longest = longest.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(5));
            }
            longest
        });
        let late = s.spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                longest = longest.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            longest
        });
        let during = during();
        stop.store(true, Ordering::Relaxed);
        let probes = (pauses.join().unwrap(), late.join().unwrap());
        let flows: Vec<_> = running
            .into_iter()
            .map(|(name, sender, receiver)| {
                let sent = sender
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{name}: the sender failed: {e}"));
                let flow = receiver
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{name}: the receiver failed: {e}"));
                (name, sent, flow)
            })
            .collect();
        (flows, during, probes)
    });
    let secs = started.elapsed().as_secs_f64();
    let a1 = tcp_counters(&a);
    let a_grew = a1.keys().map(|k| (k.clone(), grown(&a0, &a1, k))).collect();
    let mut p_grew: HashMap<String, u64> = HashMap::new();
    for (p, before) in peers.iter().zip(&p0) {
        let after = tcp_counters(p);
        for k in after.keys() {
            *p_grew.entry(k.clone()).or_default() += grown(before, &after, k);
        }
    }
    Transfer {
        flows,
        secs,
        a: a_grew,
        peers: p_grew,
        worker_pause,
        late,
        during,
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Prints a transfer's figures and asserts every byte arrived.
fn report<R>(what: &str, t: &Transfer<R>) {
    for (name, sent, f) in &t.flows {
        assert_eq!(f.bytes, *sent, "{what} {name}: every byte sent arrived");
        // The last 100 ms are cut short by the end of the transfer.
        let mut full: Vec<u64> = f.per_100ms[..f.per_100ms.len().saturating_sub(1)].to_vec();
        let mbit = |b: u64| b as f64 * 8.0 / 0.1 / 1e6;
        let (min, max) = (
            full.iter().copied().min().unwrap_or(0),
            full.iter().copied().max().unwrap_or(0),
        );
        let med = if full.is_empty() {
            0
        } else {
            median(&mut full)
        };
        eprintln!(
            "{what} {name}: {:.1} MB in {:.1} s ({:.0} Mbit/s); per 100 ms min {:.0} / median {:.0} \
             / max {:.0} Mbit/s; longest stall {:.1} ms (at {:.2} s)",
            f.bytes as f64 / 1e6,
            t.secs,
            f.bytes as f64 * 8.0 / t.secs / 1e6,
            mbit(min),
            mbit(med),
            mbit(max),
            f.stall.as_secs_f64() * 1e3,
            f.stall_at.as_secs_f64(),
        );
    }
    let a = |k: &str| t.a.get(k).copied().unwrap_or(0);
    let p = |k: &str| t.peers.get(k).copied().unwrap_or(0);
    eprintln!(
        "{what}: a sent {} TCP segments, {} retransmitted (loss probes {}, timeouts {}, fast \
         retransmits {}); b and c saw {} out of order, sent {} D-SACKs for duplicates; \
         longest worker pause {:.1} ms, longest wait for a core {:.1} ms",
        a("TcpOutSegs"),
        a("TcpRetransSegs"),
        a("TcpExtTCPLossProbes"),
        a("TcpExtTCPTimeouts"),
        a("TcpExtTCPFastRetrans"),
        p("TcpExtTCPOFOQueue"),
        p("TcpExtTCPDSACKOldSent"),
        t.worker_pause.as_secs_f64() * 1e3,
        t.late.as_secs_f64() * 1e3,
    );
}

// ---- the churn --------------------------------------------------------------------

/// What the churn made and how long its changes took.
#[derive(Default)]
struct Churn {
    cycles: usize,
    secs: f64,
    /// Each change: its request, when it was sent and how long it took.
    log: Vec<(&'static str, Instant, Duration)>,
    pings: Vec<Duration>,
    /// Namespaces, MACs and addresses of the endpoints it made (all removed again).
    namespaces: Vec<String>,
    macs: Vec<String>,
    ips: Vec<String>,
}

impl Churn {
    fn change(&mut self, sy: &Switchyard, req: Request) -> Reply {
        let t = Instant::now();
        let reply = client::request(sy.socket(), &req)
            .unwrap_or_else(|e| panic!("change {} refused: {e}", req.name()));
        self.log.push((req.name(), t, t.elapsed()));
        reply
    }

    fn endpoint(&mut self, reply: Reply) -> String {
        let Reply::Endpoint(row) = reply else {
            panic!("an endpoint reply, not {reply:?}")
        };
        for i in &row.interfaces {
            self.macs.push(i.mac.clone());
            self.ips.push(i.ip.split('/').next().unwrap().to_string());
        }
        row.netns
    }

    fn ping(&mut self, ns: &str, dst: Ipv4Addr) {
        let rtt = traffic::ping(ns, dst, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("ping {dst} from {ns}: {e}"));
        self.pings.push(rtt);
    }

    /// The changes under way during `f`'s longest stall, with their start (relative
    /// to the stall's) and length in ms.
    fn around(&self, f: &Flow) -> String {
        let end = f.stall_end.expect("a stall was measured");
        let begin = end - f.stall;
        let ms = |d: Duration| d.as_millis() as i64;
        self.log
            .iter()
            .filter(|(_, t, d)| *t < end && *t + *d > begin)
            .map(|(k, t, d)| {
                let from = ms(t.saturating_duration_since(begin))
                    - ms(begin.saturating_duration_since(*t));
                format!("{k} at {from:+} ms for {} ms", ms(*d))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Cycles until at least [`CYCLES`] were made and [`CHURN_TIME`] passed.
    fn run(sy: &Switchyard) -> Churn {
        let mut c = Churn::default();
        let start = Instant::now();
        while c.cycles < CYCLES || start.elapsed() < CHURN_TIME {
            let i = c.cycles;
            let (net, ep) = (format!("n{i}"), format!("x{i}"));
            let third = (i % 200) as u8;
            c.change(
                sy,
                Request::NetworkCreate(NetworkCreate {
                    name: net.clone(),
                    subnet: format!("10.99.{third}.0/24"),
                    gateway: None,
                    mtu: None,
                    masquerade: false,
                    internal: false,
                    icc: None,
                    dns: None,
                    dns_domain: None,
                }),
            );
            let created = c.change(
                sy,
                Request::EndpointCreate(EndpointCreate {
                    name: ep.clone(),
                    network: net.clone(),
                    ip: None,
                    mac: None,
                    publish: Vec::new(),
                    netns: None,
                    ifname: None,
                    aliases: Vec::new(),
                    handover: false,
                }),
            );
            let x = c.endpoint(created);
            c.namespaces.push(x.clone());
            c.ping(&x, Ipv4Addr::new(10, 99, third, 1));
            let connected = c.change(
                sy,
                Request::NetworkConnect(NetworkConnect {
                    network: "one".into(),
                    endpoint: ep.clone(),
                    ip: None,
                    ifname: None,
                }),
            );
            c.endpoint(connected);
            // On a's network, next to the transfers.
            c.ping(&x, B);
            let join = (net.clone(), "idle".to_string());
            c.change(
                sy,
                Request::AllowAdd {
                    a: join.0.clone(),
                    b: join.1.clone(),
                },
            );
            c.change(
                sy,
                Request::AllowRm {
                    a: join.0,
                    b: join.1,
                },
            );
            c.change(
                sy,
                Request::NetworkDisconnect {
                    network: "one".into(),
                    endpoint: ep.clone(),
                },
            );
            c.change(sy, Request::EndpointRm { name: ep });
            c.change(sy, Request::NetworkRm { name: net });
            c.cycles += 1;
        }
        c.secs = start.elapsed().as_secs_f64();
        c
    }
}

#[test]
fn transfers_go_on_while_networks_and_endpoints_come_and_go() {
    if !require_root() {
        return;
    }
    let sy = start(build(topology(&unique_prefix())));
    let ports_before: Vec<String> = show::<Vec<PortRow>>(&sy, Table::Ports)
        .into_iter()
        .map(|p| p.port)
        .collect();
    // Both paths work (and a's neighbors are resolved) before anything is timed.
    for dst in [B, C] {
        traffic::ping(&ns(&sy, "a"), dst, Duration::from_secs(2)).expect("a reaches b and c");
    }

    let baseline = transfer(&sy, 9001, || std::thread::sleep(BASELINE));
    report("baseline", &baseline);
    let churned = transfer(&sy, 9002, || Churn::run(&sy));
    report("churn", &churned);

    let churn = &churned.during;
    let mut ms: Vec<u64> = churn
        .log
        .iter()
        .map(|(_, _, d)| d.as_micros() as u64)
        .collect();
    let changes = ms.len();
    let med = median(&mut ms);
    let max = *ms.last().unwrap();
    let max_ping = churn.pings.iter().max().unwrap();
    eprintln!(
        "churn: {} cycles, {changes} changes in {:.1} s ({:.1} changes/s); change answered in \
         median {:.1} ms, max {:.1} ms; {} pings, slowest {:.1} ms",
        churn.cycles,
        churn.secs,
        changes as f64 / churn.secs,
        med as f64 / 1e3,
        max as f64 / 1e3,
        churn.pings.len(),
        max_ping.as_secs_f64() * 1e3,
    );
    for kind in churn.log[..8].iter().map(|(k, ..)| *k) {
        let mut us: Vec<u64> = churn
            .log
            .iter()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, _, d)| d.as_micros() as u64)
            .collect();
        let med = median(&mut us);
        eprintln!(
            "  {kind}: median {:.1} ms, max {:.1} ms",
            med as f64 / 1e3,
            *us.last().unwrap() as f64 / 1e3
        );
    }
    assert!(churn.cycles >= CYCLES);

    for (name, _, f) in &churned.flows {
        let (_, _, before) = baseline.flows.iter().find(|(n, ..)| n == name).unwrap();
        assert!(
            f.stall < STALL_BOUND + noise(&churned),
            "{name}: the transfer stalled for {:?} under churn ({:?} into it; {:?} without \
             churn; threads waited up to {:?} for a core), the changes under way then: {}",
            f.stall,
            f.stall_at,
            before.stall,
            churned.late,
            churn.around(f)
        );
    }
    assert!(
        churned.worker_pause < PAUSE_BOUND + noise(&churned),
        "a worker was away from its ports for {:?} under churn ({:?} without; threads \
         waited up to {:?} for a core)",
        churned.worker_pause,
        baseline.worker_pause,
        churned.late
    );
    // Nothing was lost on the way: a lost segment makes the ones after it arrive
    // out of order, and a retransmission of a segment that did arrive comes back
    // as a D-SACK (RFC 2883). The retransmissions there are are TCP's tail loss
    // probes and timeouts firing while a thread waited for a core — with or
    // without churn.
    for (what, t) in [("baseline", &baseline.peers), ("churn", &churned.peers)] {
        assert_eq!(t["TcpExtTCPOFOQueue"], 0, "{what}: a segment was lost");
    }
    for (what, a, peers) in [
        ("baseline", &baseline.a, &baseline.peers),
        ("churn", &churned.a, &churned.peers),
    ] {
        assert!(
            a["TcpRetransSegs"] <= peers["TcpExtTCPDSACKOldSent"],
            "{what}: a retransmitted {} segments, {} of them had arrived before",
            a["TcpRetransSegs"],
            peers["TcpExtTCPDSACKOldSent"]
        );
    }

    // Nothing of a, b or c was dropped, and every frame is accounted for.
    let counters = counters(&sy);
    for d in counters.drops.iter().filter(|d| d.count > 0) {
        eprintln!("dropped ({}): {}", d.id, d.count);
    }
    for p in counters
        .ports
        .iter()
        .filter(|p| ["a", "b", "c"].contains(&p.port.as_str()))
    {
        assert_eq!(p.dropped, 0, "port {} dropped frames: {p:?}", p.port);
    }
    assert_accounted(&sy);

    // The churn left nothing behind.
    for n in &churn.namespaces {
        assert!(
            !netns::exists(n),
            "namespace {n} of the churn is still there"
        );
    }
    let ports_after: Vec<String> = show::<Vec<PortRow>>(&sy, Table::Ports)
        .into_iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(
        ports_after, ports_before,
        "show ports lists the starting ports"
    );
    let on_one: Vec<String> = vec!["one".into(), "two".into(), "idle".into()];
    for row in show::<Vec<FdbRow>>(&sy, Table::Fdb) {
        assert!(
            on_one.contains(&row.network) && !churn.macs.contains(&row.mac),
            "an FDB entry of a removed endpoint or network: {row:?}"
        );
    }
    for row in show::<Vec<NeighborRow>>(&sy, Table::Neighbors) {
        assert!(
            on_one.contains(&row.network) && !churn.ips.contains(&row.ip),
            "a neighbor entry of a removed endpoint or network: {row:?}"
        );
    }
    stop(sy);
}
