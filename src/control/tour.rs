//! `switchyard tour [--step]`: a guided tour for a learner. It builds a small
//! topology of its own, runs switchyard on it in this process, and walks through
//! eight steps. Each step sends traffic from inside an endpoint's namespace, prints
//! the frames it caused as `switchyard trace` does, what changed in the tables as
//! `switchyard show` has them, and why switchyard did what it did, with the RFC or
//! the kernel or Docker behaviour it follows. `docs/walkthrough.md` is its output,
//! explained; a test keeps the two the same.
//!
//! The tour talks to its switch as any client does: the live trace and the tables
//! come over the instance's control socket ([`client`]). Its traffic comes from
//! sockets opened inside the namespaces ([`probe`]).
//!
//! Every run prints the same text (the namespace prefix aside, which carries the
//! process id so that a tour never meets another instance): addresses and MACs are
//! fixed, the probes' identifiers and ports too, times and ages are left out, and
//! one dataplane worker keeps the frames in one order.
//!
//! Everything is removed at the end, on an error, and on SIGINT, SIGTERM or SIGHUP:
//! the signals only set a flag, which every wait in the tour looks at.

mod probe;

use super::client::{self, LiveStream, Next};
use super::protocol::{
    ConntrackReport, ConntrackRow, CountersReport, ErrorCode, FdbRow, FlowTuple, NamedCount,
    NeighborRow, Reply, Request, Table,
};
use super::{render, Switchyard};
use crate::dataplane;
use crate::topology::{config, EndpointBuilder, NetworkBuilder, Topology};
use anyhow::{bail, Context, Result};
use probe::Echo;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::FrameTrace;

/// How many steps the tour has.
pub const STEPS: u32 = 8;

/// Longest wait for an answer that should come (an echo reply, a TCP handshake).
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How long step 8 waits for the answer that must not come.
const SILENCE_WAIT: Duration = Duration::from_millis(500);
/// The trace of a step ends once no frame was traced for this long after its
/// traffic: a frame's trace reaches the socket within a few tens of milliseconds
/// (the server looks for new lines every 20 ms).
const QUIET: Duration = Duration::from_millis(200);
/// Frames one step may trace at most; a step causes a handful.
const TRACE_BUDGET: u32 = 64;
/// Longest wait for the workers to start or stop a trace.
const ARM_WAIT: Duration = Duration::from_secs(3);

/// The TCP port the tour's client connects from, so its conntrack entry reads the
/// same every time (the kernel would pick a random ephemeral port).
const CLIENT_PORT: u16 = 40000;

/// The tour's addresses. 198.51.100.0/24 is TEST-NET-2 (RFC 5737), set aside for
/// documentation: it stands for the internet and is never a real host.
const WEB: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const CACHE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const FRONT_GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const DB: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The prefix of a tour run by process `pid`: "syt<pid>-". A process id is unique
/// among running processes, so two tours never share one, and a running
/// `switchyard up` would have to have picked this very shape to meet it (setup then
/// refuses rather than take over its namespaces).
pub fn prefix_for(pid: u32) -> String {
    format!("syt{pid}-")
}

/// The tour's topology under `prefix`:
///
/// | network | subnet          | gateway      | endpoints                           |
/// |---------|-----------------|--------------|-------------------------------------|
/// | front   | 10.1.0.0/24     | 10.1.0.1     | web .2 (publishes 8080→80), cache .3 |
/// | back    | 10.2.0.0/24     | 10.2.0.1     | db .2                               |
/// | outside | 198.51.100.0/24 | 198.51.100.1 | internet .2                         |
///
/// front masquerades to outside (the external network) and is joined to back by
/// `[[allow]]`; back is joined to nothing else. One worker, so frames are switched
/// (and traced) in the order they come.
pub fn topology(prefix: &str) -> Result<Topology> {
    Topology::builder()
        .source("the tour's topology")
        .prefix(prefix)
        .switch(|s| s.workers = 1)
        .network(
            NetworkBuilder::new("front", "10.1.0.0/24")
                .gateway(FRONT_GW)
                .masquerade(),
        )
        .network(NetworkBuilder::new("back", "10.2.0.0/24").gateway("10.2.0.1"))
        .network(
            NetworkBuilder::new("outside", "198.51.100.0/24")
                .gateway(UPLINK)
                .external(),
        )
        .allow("front", "back")
        .endpoint(
            EndpointBuilder::new("web")
                .on("front")
                .ip(WEB)
                .mac("02:42:0a:01:00:02")
                .publish("8080:80/tcp"),
        )
        .endpoint(
            EndpointBuilder::new("cache")
                .on("front")
                .ip(CACHE)
                .mac("02:42:0a:01:00:03"),
        )
        .endpoint(
            EndpointBuilder::new("db")
                .on("back")
                .ip(DB)
                .mac("02:42:0a:02:00:02"),
        )
        .endpoint(
            EndpointBuilder::new("internet")
                .on("outside")
                .ip(INTERNET)
                .mac("02:42:c6:33:64:02"),
        )
        .build()
        .context("the tour's topology")
}

/// `switchyard tour [--step]`: runs the tour, printing to stdout. With `step`, waits
/// for Enter before each step (end of input: goes on).
pub fn tour(step: bool, run_root: &Path) -> Result<()> {
    // Handlers first, so a Ctrl-C during setup still ends in a clean teardown.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    // A learner's first command: say what is missing before anything is printed.
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the tour creates network namespaces and TAP devices, which needs root: \
             sudo switchyard tour"
        );
    }
    let prefix = prefix_for(std::process::id());
    config::check_prefix(&prefix).map_err(|e| anyhow::anyhow!("the tour's prefix: {e}"))?;
    let topo = topology(&prefix)?;
    let stdout = std::io::stdout();
    let bold = stdout.is_terminal();
    let mut out = stdout.lock();
    intro(&mut out, &topo, step, run_root)?;
    let enter = step.then(Enter::start);
    let sy = Switchyard::start(topo, run_root).context("start the tour's switch")?;
    let socket = sy.socket().to_path_buf();
    let mut tour = Tour {
        out: &mut out,
        bold,
        prefix,
        stop,
        keep: Vec::new(),
        dp: sy.handle(),
        socket,
        sy: Some(sy),
    };
    let ran = tour.run(enter.as_ref());
    // The tour's own sockets hold their namespaces: closed before the teardown.
    tour.keep.clear();
    let sy = tour.sy.take().expect("the switch runs until here");
    let ended = match &ran {
        Ok(Ran::ToTheEnd) => "end of the tour: removing what it created ...",
        Ok(Ran::Interrupted) => "interrupted: removing what the tour created ...",
        Err(_) => "the tour failed: removing what it created ...",
    };
    // Output that fails now (stdout closed) must not keep the teardown from running.
    let _ = writeln!(out, "\n{ended}").and_then(|()| out.flush());
    let end = sy.shutdown();
    let removed = end.removed?;
    let _ = writeln!(
        out,
        "removed {} namespace(s): {}",
        removed.len(),
        removed.join(" ")
    )
    .and_then(|()| out.flush());
    ran?;
    end.dataplane.context("the dataplane failed")?;
    Ok(())
}

/// How the steps ended.
enum Ran {
    ToTheEnd,
    Interrupted,
}

/// The tour's state while it runs.
struct Tour<'a> {
    out: &'a mut dyn Write,
    bold: bool,
    prefix: String,
    stop: Arc<AtomicBool>,
    /// Sockets kept open to the end: closing a connection would send frames into
    /// the next step's trace.
    keep: Vec<OwnedFd>,
    dp: dataplane::Handle,
    socket: std::path::PathBuf,
    sy: Option<Switchyard>,
}

impl Tour<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(&mut self, enter: Option<&Enter>) -> Result<Ran> {
        // The kernels in the namespaces re-check a neighbor they learned from a
        // request 5 s after first using it (DELAY → PROBE): a unicast ARP request
        // that would show up in whatever step runs then.
        for e in ["web", "cache", "db", "internet"] {
            let ns = self.ns(e);
            probe::sysctl(&ns, "net.ipv4.neigh.eth0.delay_first_probe_time", "3600")
                .with_context(|| format!("set delay_first_probe_time in {ns}"))?;
        }
        for n in 1..=STEPS {
            if let Some(enter) = enter {
                writeln!(
                    self.out,
                    "-- press Enter for step {n} of {STEPS} (Ctrl-C ends the tour) --"
                )?;
                self.out.flush()?;
                if !enter.wait(&self.stop) {
                    return Ok(Ran::Interrupted);
                }
            }
            if self.stopped() {
                return Ok(Ran::Interrupted);
            }
            match self.step(n) {
                // Whatever failed because a signal came is no failure of the tour.
                Err(_) if self.stopped() => return Ok(Ran::Interrupted),
                r => r?,
            }
            if self.stopped() {
                return Ok(Ran::Interrupted);
            }
        }
        Ok(Ran::ToTheEnd)
    }

    /// The namespace of endpoint `e`.
    fn ns(&self, e: &str) -> String {
        format!("{}{e}", self.prefix)
    }

    /// What a user would type to do the same from a shell.
    fn exec(&self, e: &str, cmd: &str) -> String {
        format!("ip netns exec {} {cmd}", self.ns(e))
    }

    fn step(&mut self, n: u32) -> Result<()> {
        let s = script(n);
        let title = format!("step {n} of {STEPS}: {}", s.title);
        if self.bold {
            writeln!(self.out, "\n\x1b[1m{title}\x1b[0m")?;
        } else {
            writeln!(self.out, "\n{title}")?;
        }
        writeln!(self.out, "\n{}", wrap(s.what, "  "))?;
        for (e, cmd) in s.commands {
            writeln!(self.out, "    $ {}", self.exec(e, cmd))?;
        }
        self.out.flush()?;

        let before = Tables::read(&self.socket)?;
        let trace = Trace::start(&self.socket, &self.dp, &self.stop)?;
        let results = self.send(n)?;
        let frames = trace.finish(&self.stop)?;
        let after = Tables::read(&self.socket)?;

        writeln!(self.out)?;
        for r in &results {
            writeln!(self.out, "{}", wrap(r, "  "))?;
        }
        writeln!(
            self.out,
            "\n  the frames it caused (switchyard trace; times left out):\n"
        )?;
        // As `switchyard trace` prints them: a blank line after each frame.
        for f in &frames {
            for line in render::frame_trace(f).lines() {
                writeln!(self.out, "  {line}")?;
            }
            writeln!(self.out)?;
        }
        let received = frames.iter().filter(|f| !f.continued).count();
        writeln!(
            self.out,
            "  ({received} frame{} received)",
            if received == 1 { "" } else { "s" }
        )?;
        writeln!(
            self.out,
            "\n  what changed in the tables (switchyard show):\n"
        )?;
        for line in before.changes(&after) {
            writeln!(self.out, "{}", format!("  {line}").trim_end())?;
        }
        writeln!(self.out, "\n  why:\n{}", wrap(s.why, "  "))?;
        self.out.flush()?;
        Ok(())
    }

    /// Sends step `n`'s traffic; what the endpoints saw of it, one line each.
    fn send(&mut self, n: u32) -> Result<Vec<String>> {
        let ping = |from, to, seq, ttl, watch, expect| Ping {
            from,
            to,
            seq,
            ttl,
            watch,
            expect,
        };
        let pings = match n {
            1 => vec![ping("web", CACHE, 1, 64, Some("cache"), Expect::Reply)],
            2 => vec![ping("web", CACHE, 1, 64, None, Expect::Reply)],
            3 => vec![ping("web", FRONT_GW, 1, 64, None, Expect::Reply)],
            4 => vec![ping("web", DB, 1, 64, Some("db"), Expect::Reply)],
            5 => vec![ping(
                "web",
                INTERNET,
                1,
                64,
                Some("internet"),
                Expect::Reply,
            )],
            6 => return self.connect_published(),
            7 => vec![
                ping("web", DB, 1, 1, None, Expect::TimeExceeded),
                ping("web", DB, 2, 2, Some("db"), Expect::Reply),
            ],
            8 => vec![ping("internet", WEB, 1, 64, Some("web"), Expect::Nothing)],
            _ => unreachable!("the tour has {STEPS} steps"),
        };
        let mut lines = Vec::new();
        for p in &pings {
            lines.extend(self.ping(n, p, pings.len() > 1)?);
        }
        Ok(lines)
    }

    /// Sends one echo request of step `n` and says what answered it and, if it is
    /// watched, how it arrived.
    fn ping(&self, n: u32, p: &Ping, label: bool) -> Result<Vec<String>> {
        // The identifier is the step's number: the same in every run, and each
        // step's probes told apart in a trace.
        let ident = n as u16;
        let arrivals = match p.watch {
            Some(e) => Some(probe::Arrivals::watch(&self.ns(e))?),
            None => None,
        };
        let wait = match p.expect {
            Expect::Nothing => SILENCE_WAIT,
            _ => ANSWER_WAIT,
        };
        let got = probe::echo(&self.ns(p.from), p.to, ident, p.seq, p.ttl, wait)
            .with_context(|| format!("step {n}: ping {} from {}", p.to, p.from))?;
        let expected = match p.expect {
            Expect::Reply => matches!(got, Echo::Reply { .. }),
            Expect::TimeExceeded => matches!(
                got,
                Echo::Error {
                    kind: probe::TIME_EXCEEDED,
                    ..
                }
            ),
            Expect::Nothing => got == Echo::Nothing,
        };
        if !expected {
            bail!(
                "step {n}: {} pinged {} with TTL {} and got {got}, which switchyard \
                 should not have done",
                p.from,
                p.to,
                p.ttl
            );
        }
        let mut lines = Vec::new();
        let tag = if label {
            format!("with TTL {}: ", p.ttl)
        } else {
            String::new()
        };
        match got {
            Echo::Nothing => lines.push(format!(
                "{tag}{} got no answer within {} ms",
                p.from,
                wait.as_millis()
            )),
            _ => lines.push(format!("{tag}{} got {got}", p.from)),
        }
        if let (Some(e), Some(a)) = (p.watch, arrivals) {
            // It arrived before the answer left, so it is waiting in the socket by now.
            match a.echo_request(ident, p.seq, QUIET)? {
                Some(arr) => lines.push(format!(
                    "{tag}{e} received it from {} with TTL {} (sent with {})",
                    arr.src, arr.ttl, p.ttl
                )),
                None => lines.push(format!("{tag}{e} received nothing")),
            }
        }
        Ok(lines)
    }

    /// Step 6: a TCP connection from internet to web's published port.
    fn connect_published(&mut self) -> Result<Vec<String>> {
        let listener = probe::tcp_listen(&self.ns("web"), 80).context("step 6: listen in web")?;
        let conn = probe::tcp_connect(
            &self.ns("internet"),
            CLIENT_PORT,
            SocketAddrV4::new(UPLINK, 8080),
            ANSWER_WAIT,
        )
        .context("step 6: connect from internet to 198.51.100.1:8080")?;
        let (accepted, peer) =
            probe::tcp_accept(&listener, ANSWER_WAIT).context("step 6: accept in web")?;
        self.keep.push(conn.into());
        self.keep.push(accepted.into());
        self.keep.push(listener.into());
        Ok(vec![
            format!("internet connected to {UPLINK}:8080"),
            format!("web accepted the connection on port 80, from {peer}"),
        ])
    }
}

/// One echo request of a step.
struct Ping {
    from: &'static str,
    to: Ipv4Addr,
    seq: u16,
    ttl: u8,
    /// The endpoint that watches it arrive.
    watch: Option<&'static str>,
    expect: Expect,
}

/// What must answer an echo request.
enum Expect {
    Reply,
    TimeExceeded,
    /// Nothing: the request is dropped on the way.
    Nothing,
}

/// The words of one step.
struct Script {
    title: &'static str,
    /// What is sent, in words.
    what: &'static str,
    /// The same from a shell: (endpoint, command run in its namespace).
    commands: Vec<(&'static str, &'static str)>,
    /// Why switchyard did what the trace shows, and whose behaviour it follows.
    why: &'static str,
}

fn script(n: u32) -> Script {
    match n {
        1 => Script {
            title: "a ping within one network",
            what: "web (10.1.0.2) pings cache (10.1.0.3). Both are on network front, so \
                   web sends straight to cache. It does not know cache's MAC address yet, \
                   so it asks first, with ARP.",
            commands: vec![("web", "ping -c1 10.1.0.3")],
            why: "An ARP request goes to the broadcast address ff:ff:ff:ff:ff:ff, because \
                  the sender does not know who has the address it asks for (RFC 826). A \
                  switch floods a broadcast to every other port of the network, as the \
                  Linux bridge does. On the way in, switchyard learned web's MAC on port \
                  web: the bridge learns from the source address of every frame. So \
                  cache's reply, addressed to web's MAC, went to port web alone, and \
                  cache's MAC was learned in turn. The echo request and reply (RFC 792) \
                  then went port to port.",
        },
        2 => Script {
            title: "the same ping again",
            what: "web pings cache once more.",
            commands: vec![("web", "ping -c1 10.1.0.3")],
            why: "No ARP this time: web's kernel keeps cache's MAC in its ARP cache. And \
                  no flood: switchyard's forwarding database (FDB) knows both MACs, so \
                  each frame goes to exactly one port. The tables have nothing new. An \
                  FDB entry stays while its MAC keeps sending, and is forgotten after \
                  300 s of silence, the Linux bridge's default ageing time.",
        },
        3 => Script {
            title: "a ping to the gateway",
            what: "web pings 10.1.0.1, front's gateway. No namespace has this address: \
                   switchyard owns it, as the host owns docker0's address.",
            commands: vec![("web", "ping -c1 10.1.0.1")],
            why: "switchyard owns 10.1.0.1, so it answered the ARP request itself with \
                  the gateway's MAC (RFC 826), and the echo request with an echo reply \
                  (RFC 792). Both answers went back out of port web. The ARP request \
                  was a broadcast all the same, so cache got it too and ignored it: on \
                  a Linux bridge, too, the host answers for its own address and the \
                  bridge floods the broadcast. From the request's sender fields \
                  switchyard noted web's MAC in its neighbor table, as RFC 826 says a \
                  receiver should. The entry is STALE, as the kernel makes it: heard \
                  of, not confirmed.",
        },
        4 => Script {
            title: "a ping across the router",
            what: "web pings db (10.2.0.2), on network back. 10.2.0.2 is not on web's \
                   network, so web sends the echo request to its default gateway, \
                   10.1.0.1: to the gateway's MAC.",
            commands: vec![("web", "ping -c1 10.2.0.2")],
            why: "A frame to the gateway's MAC enters switchyard's router. The route \
                  lookup finds 10.2.0.0/24 on back, and the [[allow]] rule lets front \
                  reach back. As every router must, switchyard lowered the TTL by one \
                  (RFC 1812, section 5.3.1): db got 63, where cache got 64 in step 1 \
                  (a switch leaves the TTL alone). It also rewrote the MACs, from back's \
                  gateway to db. It did not know db's MAC, so it held the packet, asked \
                  with ARP on back, and sent the packet on when db answered (packet 1's \
                  second part shows first: it walked on while packet 2 was handled). \
                  RFC 1122 (section 2.3.2.2) asks for that queue; the kernel keeps one \
                  too. switchyard's own ARP request is no received frame, so it is not \
                  in the trace. On the way back, web's MAC was known but STALE (step \
                  3), so the reply went out at once and switchyard re-confirmed web \
                  with a unicast ARP request. web's answer is packet 4, and the entry \
                  is REACHABLE now: the kernel's neighbor states, STALE, PROBE, \
                  REACHABLE.",
        },
        5 => Script {
            title: "out through masquerade",
            what: "web pings internet (198.51.100.2), a host beyond the uplink: on \
                   outside, the external network, which stands for the internet.",
            commands: vec![("web", "ping -c1 198.51.100.2")],
            why: "front masquerades: a new flow leaving by the external network gets \
                  the uplink address, 198.51.100.1, as its source (source NAT), like the \
                  MASQUERADE rule Docker adds for a bridge network. Connection tracking \
                  remembers the flow, as netfilter's conntrack does, so the reply to \
                  198.51.100.1 was recognised and sent back to 10.1.0.2. internet never \
                  saw a 10.1.0.x address. For ICMP the echo identifier stands in for \
                  the port, and it is kept when it is free.",
        },
        6 => Script {
            title: "in through a published port",
            what: "web listens on TCP port 80. internet connects to 198.51.100.1 port \
                   8080, from its port 40000.",
            commands: vec![
                ("web", "nc -l 80"),
                ("internet", "nc -p 40000 198.51.100.1 8080"),
            ],
            why: "web publishes 8080:80/tcp, like `docker run -p 8080:80`. A new flow \
                  to the uplink address on port 8080 has its destination rewritten to \
                  10.1.0.2 port 80 (destination NAT, as Docker's DNAT rule does). \
                  Conntrack remembers the flow, so web's SYN-ACK got its source turned \
                  back into 198.51.100.1:8080 on the way out. Only the destination is \
                  translated: web sees the client's real address. After the handshake \
                  the flow is ESTABLISHED and ASSURED: seen both ways, so it is not \
                  evicted when the table fills (netfilter's rule too). The connection \
                  stays open until the tour ends.",
        },
        7 => Script {
            title: "a traceroute: TTL 1, then TTL 2",
            what: "web sends an echo request to db with a TTL of 1, then another with a \
                   TTL of 2. traceroute finds the routers on a path this way, one TTL \
                   at a time.",
            commands: vec![
                ("web", "ping -c1 -t 1 10.2.0.2"),
                ("web", "ping -c1 -t 2 10.2.0.2"),
            ],
            why: "A router never forwards a packet whose TTL would run out. It drops \
                  it and tells the sender with ICMP time exceeded (RFC 792; RFC 1812, \
                  section 5.3.1), sent from its own address on the sender's network: \
                  10.1.0.1, the first hop. The drop is counted under its reason. With a \
                  TTL of 2 the packet passes switchyard, reaches db with a TTL of 1, \
                  and db answers: the second hop is the destination.",
        },
        8 => Script {
            title: "refused by isolation",
            what: "internet pings web's own address, 10.1.0.2, directly: not through \
                   the published port.",
            commands: vec![("internet", "ping -c1 -W1 10.1.0.2")],
            why: "Networks are isolated unless an [[allow]] rule joins them, as \
                  Docker's networks are. outside and front are not joined. Masquerade \
                  lets flows from front out, and replies to them back in; a published \
                  port lets one port in. Nothing else from outside reaches front. \
                  switchyard dropped the packet without an answer, and counted it \
                  under its reason, which `switchyard show counters` lists.",
        },
        _ => unreachable!("the tour has {STEPS} steps"),
    }
}

/// The tour's opening: what it builds and what it does.
fn intro(out: &mut dyn Write, t: &Topology, step: bool, run_root: &Path) -> Result<()> {
    writeln!(out, "switchyard tour")?;
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        wrap(
            &format!(
                "The tour builds a small topology under the prefix {p} (the namespace \
                 of endpoint web is {p}web), runs switchyard on it in this process, \
                 and walks through {STEPS} steps. Each step sends traffic from inside a \
                 namespace, shows the frames it caused as `switchyard trace` prints \
                 them, what changed in the tables as `switchyard show` has them, and \
                 why. Times and ages are left out, so every run prints the same.",
                p = t.prefix
            ),
            ""
        )
    )?;
    writeln!(out)?;
    for n in &t.networks {
        let mut how = String::new();
        if n.masquerade {
            how.push_str("  masquerade");
        }
        if n.external {
            how.push_str("  external (the way out)");
        }
        let gw = n
            .gateway
            .map(|g| format!("gateway {} ({})", g.ip, g.mac))
            .unwrap_or_default();
        writeln!(
            out,
            "  network  {:<8} {:<16} {gw}{how}",
            n.name,
            n.subnet.to_string()
        )?;
    }
    for &(a, b) in &t.allow {
        writeln!(
            out,
            "  allow    {} <-> {}",
            t.networks[a].name, t.networks[b].name
        )?;
    }
    for p in &t.publish {
        writeln!(
            out,
            "  publish  {UPLINK}:{}/{} -> {} {}:{}",
            p.rule.host_port,
            if p.rule.udp { "udp" } else { "tcp" },
            t.endpoints[p.endpoint].name,
            p.target,
            p.rule.container_port
        )?;
    }
    for e in &t.endpoints {
        for i in &e.interfaces {
            writeln!(
                out,
                "  endpoint {:<8} {:<16} {}  on {}",
                e.name,
                i.ip.to_string(),
                i.mac,
                t.networks[i.network].name
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        wrap(
            "internet stands for a host on the internet: 198.51.100.0/24 is set aside \
             for documentation (RFC 5737) and is nobody's real address. So that each \
             step's trace shows only what that step sent, the kernels in the \
             namespaces are told not to re-check a neighbor on their own for an hour \
             (net.ipv4.neigh.eth0.delay_first_probe_time, 5 s by default).",
            ""
        )
    )?;
    if step {
        let mut hint = format!("switchyard show fdb --prefix {}", t.prefix);
        if run_root != Path::new(crate::topology::DEFAULT_RUN_ROOT) {
            hint.push_str(&format!(" --run-dir {}", run_root.display()));
        }
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            wrap(
                "Between steps, look around from another terminal: the namespaces and \
                 the switch are there as long as the tour runs. For example:",
                ""
            )
        )?;
        writeln!(out, "    $ {hint}")?;
        writeln!(
            out,
            "    $ ip netns exec {}web ip neigh    (web's own ARP cache)",
            t.prefix
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Words wrapped at 80 columns, each line indented by `indent`.
fn wrap(text: &str, indent: &str) -> String {
    const WIDTH: usize = 80;
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            lines.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines.join("\n")
}

/// A live trace of one step, over the control socket.
struct Trace {
    stream: LiveStream,
    frames: Vec<FrameTrace>,
    dp: dataplane::Handle,
}

impl Trace {
    /// Starts tracing every port, and returns once the workers trace: the server
    /// says so with the trace's first line, `trace_start`.
    fn start(socket: &Path, dp: &dataplane::Handle, stop: &AtomicBool) -> Result<Trace> {
        let req = Request::Trace {
            ports: Vec::new(),
            count: TRACE_BUDGET,
        };
        let deadline = Instant::now() + ARM_WAIT;
        let mut stream = LiveStream::open(socket, &req)?;
        loop {
            // A refusal comes at once: `in_use` while the server has not yet seen
            // the previous step's trace hang up.
            match stream.next(Some(Duration::from_millis(1))) {
                Ok(Next::Quiet) => {}
                Ok(Next::Reply(Reply::TraceStart(_))) => {
                    return Ok(Trace {
                        stream,
                        frames: Vec::new(),
                        dp: dp.clone(),
                    })
                }
                Ok(Next::Reply(r)) => bail!("the trace answered {} before any frame", r.name()),
                Ok(Next::Closed) => bail!("the control socket closed the trace"),
                Err(e) if e.code() == Some(ErrorCode::InUse) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                    stream = LiveStream::open(socket, &req)?;
                    continue;
                }
                Err(e) => return Err(e).context("start the trace"),
            }
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            if Instant::now() > deadline {
                bail!("the dataplane did not start the trace within {ARM_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reads the frames traced until none came for [`QUIET`], hangs up, and waits
    /// for the workers to stop tracing (so the next step starts from a clean slate).
    fn finish(mut self, stop: &AtomicBool) -> Result<Vec<FrameTrace>> {
        loop {
            match self.stream.next(Some(QUIET))? {
                Next::Reply(Reply::Trace(mut t)) => {
                    // The time of day would make every run's text different.
                    t.time_ns = 0;
                    self.frames.push(t);
                }
                Next::Reply(Reply::TraceEnd(_)) | Next::Closed | Next::Quiet => break,
                Next::Reply(r) => bail!("a trace line was a {} reply", r.name()),
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        drop(self.stream);
        let deadline = Instant::now() + ARM_WAIT;
        while !tracers_are(&self.dp, false)? {
            if Instant::now() > deadline {
                bail!("the dataplane did not stop the trace within {ARM_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(self.frames)
    }
}

/// True if every worker's tracer is `on` (tracing, or not).
fn tracers_are(dp: &dataplane::Handle, on: bool) -> Result<bool> {
    let active = dp
        .query_all(|v| v.pipeline.tracer().active())
        .context("the dataplane stopped")?;
    Ok(active.iter().all(|&a| a == on))
}

/// The tables a step may change, as `show` reads them.
struct Tables {
    fdb: Vec<FdbRow>,
    neighbors: Vec<NeighborRow>,
    conntrack: Vec<ConntrackRow>,
    drops: Vec<NamedCount>,
}

impl Tables {
    fn read(socket: &Path) -> Result<Tables> {
        let show = |table| client::request(socket, &Request::Show { table });
        let (
            Reply::Fdb(fdb),
            Reply::Neighbors(neighbors),
            Reply::Conntrack(ct),
            Reply::Counters(c),
        ) = (
            show(Table::Fdb)?,
            show(Table::Neighbors)?,
            show(Table::Conntrack)?,
            show(Table::Counters)?,
        )
        else {
            bail!("show answered with another table than asked for");
        };
        let ConntrackReport { connections, .. } = ct;
        let CountersReport { drops, .. } = c;
        Ok(Tables {
            fdb,
            neighbors,
            conntrack: connections,
            drops,
        })
    }

    /// What `after` has that `self` had not: new rows, and rows that changed (see
    /// [`diff`]), table by table, without ages and timeouts (they depend on when one
    /// looks).
    fn changes(&self, after: &Tables) -> Vec<String> {
        let mut out = Vec::new();
        let fdb = diff(
            &self.fdb,
            &after.fdb,
            |r| (r.network.clone(), r.mac.clone()),
            |r| vec![r.network.clone(), r.mac.clone(), format!("port {}", r.port)],
        );
        section(&mut out, "fdb", fdb);
        let neighbors = diff(
            &self.neighbors,
            &after.neighbors,
            |r| (r.network.clone(), r.ip.clone()),
            |r| {
                vec![
                    r.ip.clone(),
                    if r.mac.is_empty() {
                        "(incomplete)".into()
                    } else {
                        r.mac.clone()
                    },
                    r.network.clone(),
                    r.state.to_uppercase(),
                ]
            },
        );
        section(&mut out, "neighbors", neighbors);
        let conntrack = diff(
            &self.conntrack,
            &after.conntrack,
            |r| {
                (
                    r.proto.clone(),
                    format!(
                        "{} {} {} {}",
                        r.original.src, r.original.dst, r.original.sport, r.original.dport
                    ),
                )
            },
            conntrack_cells,
        );
        section(&mut out, "conntrack", conntrack);
        let drops: Vec<String> = after
            .drops
            .iter()
            .filter_map(|d| {
                let was = self
                    .drops
                    .iter()
                    .find(|b| b.id == d.id)
                    .map_or(0, |b| b.count);
                (d.count > was)
                    .then(|| format!("+{} dropped: {} [{}]", d.count - was, d.text, d.id))
            })
            .collect();
        section(&mut out, "drops", drops);
        if out.is_empty() {
            out.push("nothing new in fdb, neighbors, conntrack or the drop counters".into());
        }
        out
    }
}

/// A conntrack row as `conntrack -L` prints it, without the timeout.
fn conntrack_cells(r: &ConntrackRow) -> Vec<String> {
    let t = |t: &FlowTuple| {
        format!(
            "src={} dst={} sport={} dport={} packets={} bytes={}",
            t.src, t.dst, t.sport, t.dport, t.packets, t.bytes
        )
    };
    let mut flags = String::new();
    if r.assured {
        flags.push_str("[ASSURED] ");
    }
    flags.push_str(&format!("[{}]", r.nat.to_uppercase()));
    vec![
        r.proto.clone(),
        r.state.clone(),
        format!("{}\n{}", t(&r.original), t(&r.reply)),
        flags,
    ]
}

/// Rows of `after` that are new ("+"), and rows that changed (the old one with "-",
/// then the new one with "+"), against `before`; matched by `key` and compared by
/// the cells `show` prints.
fn diff<R, K: PartialEq>(
    before: &[R],
    after: &[R],
    key: impl Fn(&R) -> K,
    cells: impl Fn(&R) -> Vec<String>,
) -> Vec<String> {
    // Each change with the cells it is sorted by.
    let mut groups: Vec<(Vec<String>, Vec<Row>)> = Vec::new();
    for a in after {
        let now = cells(a);
        match before.iter().find(|b| key(b) == key(a)) {
            None => groups.push((now.clone(), vec![('+', now)])),
            Some(b) if cells(b) != now => {
                groups.push((now.clone(), vec![('-', cells(b)), ('+', now)]))
            }
            Some(_) => {}
        }
    }
    // The tables come in no particular order (hash tables); sorted, they print the
    // same every time.
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Row> = groups.into_iter().flat_map(|g| g.1).collect();
    columns(&rows)
}

/// A row of a table change: its mark ('+' or '-') and its cells.
type Row = (char, Vec<String>);

/// Rows laid out in columns; a cell with a line break goes on over more lines,
/// under its column.
fn columns(rows: &[Row]) -> Vec<String> {
    let cols = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter_map(|r| r.1.get(c))
            .flat_map(|cell| cell.lines().map(str::len))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let mut out = Vec::new();
    for (mark, cells) in rows {
        let depth = cells.iter().map(|c| c.lines().count()).max().unwrap_or(1);
        for d in 0..depth {
            let mut line = if d == 0 {
                format!("{mark} ")
            } else {
                "  ".to_string()
            };
            for (c, cell) in cells.iter().enumerate() {
                let part = cell.lines().nth(d).unwrap_or("");
                line.push_str(&format!("{part:<w$}  ", w = widths[c]));
            }
            out.push(line.trim_end().to_string());
        }
    }
    out
}

fn section(out: &mut Vec<String>, name: &str, rows: Vec<String>) {
    if rows.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push(String::new());
    }
    out.push(format!("{name}:"));
    out.extend(rows.into_iter().map(|r| format!("  {r}")));
}

/// Enter on stdin, read on a thread of its own so that a signal is noticed while
/// the tour waits for it.
struct Enter {
    lines: crossbeam_channel::Receiver<bool>,
}

impl Enter {
    fn start() -> Enter {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                // End of input (or an error reading it) lets the tour go on alone.
                let more = matches!(stdin.read_line(&mut line), Ok(n) if n > 0);
                if tx.send(more).is_err() || !more {
                    return;
                }
            }
        });
        Enter { lines: rx }
    }

    /// Waits for Enter; false if a signal came first. After the end of the input,
    /// returns at once.
    fn wait(&self, stop: &AtomicBool) -> bool {
        loop {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(_) => return !stop.load(Ordering::SeqCst),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return !stop.load(Ordering::SeqCst)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_valid_for_any_pid() {
        // The longest pid Linux hands out has 7 digits (pid_max is at most 2^22).
        for pid in [1, 4_194_304] {
            let p = prefix_for(pid);
            config::check_prefix(&p).unwrap();
            topology(&p).unwrap();
        }
    }

    #[test]
    fn wrapped_text_keeps_every_word_within_80_columns() {
        let text = "word ".repeat(100);
        let w = wrap(&text, "  ");
        assert!(w.lines().all(|l| l.len() <= 80 && l.starts_with("  ")));
        assert_eq!(w.split_whitespace().count(), 100);
    }

    #[test]
    fn a_diff_shows_new_and_changed_rows_only() {
        let row = |mac: &str, port: &str| FdbRow {
            network: "front".into(),
            mac: mac.into(),
            port: port.into(),
            age_secs: 0,
            vtep: None,
        };
        let before = [
            row("02:00:00:00:00:01", "web"),
            row("02:00:00:00:00:02", "db"),
        ];
        let mut after = before.to_vec();
        after[0].age_secs = 7; // older, not changed
        after[1].port = "cache".into(); // moved
        after.push(row("02:00:00:00:00:03", "cache"));
        let d = diff(
            &before,
            &after,
            |r| r.mac.clone(),
            |r| vec![r.mac.clone(), r.port.clone()],
        );
        assert_eq!(
            d,
            [
                "- 02:00:00:00:00:02  db",
                "+ 02:00:00:00:00:02  cache",
                "+ 02:00:00:00:00:03  cache"
            ]
        );
    }

    #[test]
    fn a_cell_over_two_lines_stays_in_its_column() {
        let rows = vec![(
            '+',
            vec!["icmp".into(), "a=1\nb=22".into(), "[SNAT]".into()],
        )];
        assert_eq!(columns(&rows), ["+ icmp  a=1   [SNAT]", "        b=22"]);
    }

    #[test]
    fn every_step_has_its_words() {
        for n in 1..=STEPS {
            let s = script(n);
            assert!(!s.title.is_empty() && !s.what.is_empty() && !s.why.is_empty());
            assert!(!s.commands.is_empty(), "step {n} says what to type");
        }
    }
}
