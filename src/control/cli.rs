//! The CLI verbs. `main.rs` parses the command line and calls one of these; the
//! argument groups the verbs take ([`Target`], shared by `show` and `down`, and
//! [`TableArg`]) live here beside them, mapped onto the protocol's types.
//!
//! What a verb prints (the `up` summary, a table, a verdict) is the program's output
//! and goes to stdout; diagnostics go through `tracing`, which `main.rs` sends to
//! stderr.

use super::protocol::{Reply, Request, Table};
use super::{client, metrics, render, Switchyard};
use crate::topology::{config, setup, RunDir, Topology};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::pipeline::DomainMode;

/// Which running instance a verb talks to. With none of these, the instance of the
/// built-in default (prefix "sy-").
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// Prefix of the instance (without --config or --socket: "sy-", the built-in
    /// default's).
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// Topology file the instance was started with (for its prefix).
    #[arg(long, global = true, conflicts_with = "prefix")]
    pub config: Option<PathBuf>,
    /// Control socket of the instance (overrides --prefix and --config).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
}

impl Target {
    fn prefix(&self) -> Result<String> {
        if let Some(p) = &self.prefix {
            config::check_prefix(p).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
            return Ok(p.clone());
        }
        if let Some(f) = &self.config {
            return Ok(config::load(f)?.prefix);
        }
        Ok(config::default_topology().prefix)
    }

    /// The instance's control socket.
    fn socket(&self, run_root: &Path) -> Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        Ok(RunDir::new(run_root, &self.prefix()?).socket())
    }

    /// The instance's run root and prefix. A socket names them too, since it sits in
    /// the instance's directory (`RUN_DIR/PREFIX/control.sock`).
    fn instance(&self, run_root: &Path) -> Result<(PathBuf, String)> {
        let Some(socket) = &self.socket else {
            return Ok((run_root.to_path_buf(), self.prefix()?));
        };
        let dir = socket.parent().unwrap_or(Path::new(""));
        let root = dir.parent().map(Path::to_path_buf);
        let prefix = dir.file_name().and_then(|p| p.to_str()).map(String::from);
        match (root, prefix) {
            (Some(root), Some(prefix)) if RunDir::new(&root, &prefix).socket() == *socket => {
                Ok((root, prefix))
            }
            _ => anyhow::bail!(
                "{} is not where an instance keeps its control socket \
                 (RUN_DIR/PREFIX/control.sock); name the instance with --prefix or --config",
                socket.display()
            ),
        }
    }
}

/// The tables of `show`, as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableArg {
    /// Ports: endpoint, interface, network, addresses, MTU, offloads, I/O counters.
    Ports,
    /// The forwarding database: learned MACs per network, their port and age.
    Fdb,
    /// Per-port accounting, drops by reason, and stage events.
    Counters,
    /// The FIB: connected networks and static routes.
    Routes,
    /// The neighbor (ARP) table.
    Neighbors,
    /// Tracked connections (translated flows), like `conntrack -L`.
    Conntrack,
    /// The running topology, as a config file `switchyard up` takes.
    Config,
    /// DNS at the gateways: names and addresses per network, upstreams, counters.
    Dns,
}

impl From<TableArg> for Table {
    fn from(t: TableArg) -> Table {
        match t {
            TableArg::Ports => Table::Ports,
            TableArg::Fdb => Table::Fdb,
            TableArg::Counters => Table::Counters,
            TableArg::Routes => Table::Routes,
            TableArg::Neighbors => Table::Neighbors,
            TableArg::Conntrack => Table::Conntrack,
            TableArg::Config => Table::Config,
            TableArg::Dns => Table::Dns,
        }
    }
}

fn load_topology(file: Option<&Path>) -> Result<Topology> {
    Ok(match file {
        Some(f) => config::load(f)?,
        None => config::default_topology(),
    })
}

/// The metrics options of `up`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (an IP address and a port,
    /// e.g. 127.0.0.1:9477 or [::1]:9477; a loopback address unless --metrics-public).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on an address other than loopback. The endpoint has no
    /// authentication and tells whoever reaches it every port, counter and table size.
    #[arg(long, requires = "metrics")]
    pub metrics_public: bool,
}

/// The Docker network driver options of `up`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DockerArgs {
    /// Serve Docker's remote network driver protocol on
    /// /run/docker/plugins/NAME.sock (NAME default "switchyard"), so that `docker
    /// network create -d NAME` makes switchyard networks. Put it after FILE (or write
    /// --docker-driver=NAME): a word right after it is taken as the NAME.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = crate::docker::DEFAULT_NAME)]
    pub docker_driver: Option<String>,
    /// Where the driver keeps its networks and endpoints across restarts (default
    /// /var/lib/switchyard/docker/NAME.json).
    #[arg(long, value_name = "PATH", requires = "docker_driver")]
    pub docker_state: Option<PathBuf>,
}

/// `switchyard up [FILE]`: build the topology, switch until SIGINT/SIGTERM, clean up.
pub fn up(file: Option<&Path>, run_root: &Path, m: &MetricsArgs, d: &DockerArgs) -> Result<()> {
    // A refused address stops `up` before the topology file is even read.
    if let Some(addr) = m.metrics {
        metrics::check_address(addr, m.metrics_public)?;
    }
    if let Some(name) = &d.docker_driver {
        crate::docker::check_name(name).map_err(anyhow::Error::msg)?;
        if file.is_none() && name.ends_with(".toml") && Path::new(name).exists() {
            anyhow::bail!(
                "--docker-driver took {name:?} as the driver's name; to run that file, \
                 write `switchyard up {name} --docker-driver`"
            );
        }
    }
    let topo = load_topology(file)?;
    // The port is taken before anything is created: one already in use stops `up`
    // with nothing to undo.
    let listener = m
        .metrics
        .map(|addr| metrics::Listener::bind(addr, m.metrics_public))
        .transpose()?;
    // Handlers first, so a Ctrl-C during setup still leads to a clean teardown.
    // SIGHUP too: a dropped SSH session must not leave namespaces behind.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let sy = Switchyard::start_with(topo, run_root, listener).context("switchyard up")?;
    print_summary(&sy.topology(), sy.socket(), sy.metrics_addr());
    let driver = match &d.docker_driver {
        None => None,
        Some(name) => {
            let cfg = crate::docker::DriverConfig {
                name: name.clone(),
                plugin_dir: PathBuf::from(crate::docker::PLUGIN_DIR),
                state: d
                    .docker_state
                    .clone()
                    .unwrap_or_else(|| crate::docker::default_state(name)),
                control: sy.socket().to_path_buf(),
                prefix: sy.topology().prefix.clone(),
            };
            match crate::docker::DockerDriver::start(cfg.clone()) {
                Ok((driver, restored)) => {
                    print_restored(&cfg, &restored);
                    Some(driver)
                }
                Err(e) => {
                    // Nothing of the instance is left running without its driver.
                    let _ = sy.shutdown();
                    return Err(anyhow::Error::new(e).context("the Docker network driver"));
                }
            }
        }
    };
    while !stop.load(Ordering::SeqCst) {
        if sy.dataplane_died() {
            tracing::error!("the dataplane stopped unexpectedly; cleaning up");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nstopping: removing what switchyard created ...");
    // Docker is told no more first: a request now would find the instance going.
    if let Some(d) = driver {
        d.stop();
    }
    let end = sy.shutdown();
    let removed = end.removed?;
    println!(
        "removed {} namespace(s): {}",
        removed.len(),
        removed.join(" ")
    );
    // A failed dataplane is a failure of `up`, whatever the cleanup did: a service
    // manager restarts only what exits non-zero.
    end.dataplane
        .context("the dataplane failed (everything switchyard created was removed)")?;
    Ok(())
}

fn print_restored(cfg: &crate::docker::DriverConfig, r: &crate::docker::driver::Restored) {
    println!(
        "  docker driver {:?} at {} (state {})",
        cfg.name,
        cfg.socket().display(),
        cfg.state.display()
    );
    for n in &r.networks {
        println!("  docker network {n} created again");
    }
    for (n, why) in &r.failed_networks {
        tracing::error!("docker network {n} could not be created again: {why}");
    }
    for e in &r.reattached {
        println!("  docker endpoint {e} attached again to its container");
    }
    for (e, why) in &r.gone {
        tracing::warn!("docker endpoint {e} not attached again: {why}");
    }
}

/// `switchyard docker ls`: the driver's state file, as tables (or JSON), with whether
/// each joined container's namespace still exists.
pub fn docker_ls(name: &str, state: Option<&Path>, json: bool) -> Result<()> {
    crate::docker::check_name(name).map_err(anyhow::Error::msg)?;
    let path = state.map_or_else(|| crate::docker::default_state(name), Path::to_path_buf);
    if !path.exists() {
        anyhow::bail!(
            "{}: no state: the Docker driver {name:?} has never run with it",
            path.display()
        );
    }
    let st = crate::docker::state::DriverState::load(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    print!("{}", crate::docker::render(&st));
    Ok(())
}

fn print_summary(t: &Topology, socket: &Path, metrics: Option<SocketAddr>) {
    println!("switchyard: running {} (prefix {:?})", t.source, t.prefix);
    for n in &t.networks {
        let mut how = String::new();
        if n.mode == DomainMode::L3 {
            how.push_str("  L3 only");
        }
        if n.proxy_arp {
            how.push_str("  proxy ARP");
        }
        if n.masquerade {
            how.push_str("  masquerade");
        }
        if n.external {
            how.push_str("  external (uplink)");
        }
        match n.gateway {
            Some(g) => println!(
                "  network {:<10} {}  gateway {} ({})  mtu {}{how}",
                n.name, n.subnet, g.ip, g.mac, n.mtu
            ),
            None => println!(
                "  network {:<10} {}  no gateway  mtu {}{how}",
                n.name, n.subnet, n.mtu
            ),
        }
    }
    for &(a, b) in &t.allow {
        println!(
            "  allow   {} <-> {}",
            t.networks[a].name, t.networks[b].name
        );
    }
    for r in &t.routes {
        println!("  route   {} via {}", r.prefix, r.via);
    }
    if let Some(up) = t.external().and_then(|n| n.gateway) {
        for p in &t.publish {
            let e = &t.endpoints[p.endpoint];
            println!(
                "  publish {}:{}/{} -> {} {}:{}",
                up.ip,
                p.rule.host_port,
                if p.rule.udp { "udp" } else { "tcp" },
                e.name,
                p.target,
                p.rule.container_port
            );
        }
    }
    for e in &t.endpoints {
        if let Some(other) = e.shares {
            let o = &t.endpoints[other];
            println!(
                "  endpoint {:<9} netns {:<12} shares the namespace of {} ({})",
                e.name, e.netns, o.name, o.netns
            );
            continue;
        }
        if e.interfaces.is_empty() {
            println!(
                "  endpoint {:<9} netns {:<12} no network (only lo)",
                e.name, e.netns
            );
        }
        for i in &e.interfaces {
            let n = &t.networks[i.network];
            println!(
                "  endpoint {:<9} netns {:<12} {} {}/{} {}  on {}",
                e.name,
                e.netns,
                i.ifname,
                i.ip,
                n.subnet.prefix_len(),
                i.mac,
                n.name
            );
        }
    }
    println!("  control socket {}", socket.display());
    if let Some(addr) = metrics {
        println!("  metrics        http://{addr}{}", metrics::PATH);
    }
    println!();
    println!("try it (in another terminal):");
    let mut ifaces = t.interfaces();
    if let (Some((e1, _)), Some((_, i2))) = (ifaces.next(), ifaces.next()) {
        println!("  ip netns exec {} ping {}", e1.netns, i2.ip);
    }
    if let Some((e, i)) = t.interfaces().next() {
        if let Some(g) = t.networks[i.network].gateway {
            println!("  ip netns exec {} ping {}", e.netns, g.ip);
        }
    }
    println!(
        "  switchyard show ports --prefix {}    (also: fdb, counters, routes, neighbors, conntrack, config; --json)",
        t.prefix
    );
    println!("Ctrl-C stops switchyard and removes everything it created.");
}

/// `switchyard down [FILE | --prefix P | --config F | --socket S]`: clean up after a
/// crashed `up`.
pub fn down(target: &Target, run_root: &Path) -> Result<()> {
    let (root, prefix) = target.instance(run_root)?;
    let removed = setup::down(&prefix, &root)?;
    if removed.is_empty() {
        println!("nothing left to remove for prefix {prefix:?}; state cleared");
    } else {
        println!(
            "removed {} namespace(s): {}",
            removed.len(),
            removed.join(" ")
        );
    }
    Ok(())
}

/// `switchyard check FILE`: validate a config without touching the machine.
pub fn check(file: &Path) -> Result<()> {
    let t = config::load(file)?;
    let ports: usize = t.endpoints.iter().map(|e| e.interfaces.len()).sum();
    println!(
        "{}: ok ({} network(s), {} endpoint(s), {} port(s), prefix {:?})",
        file.display(),
        t.networks.len(),
        t.endpoints.len(),
        ports,
        t.prefix
    );
    let m = switchyard_core::pipeline::TableMemory::of(&t.pipeline_spec());
    println!(
        "tables at their maximum: {} (fdb and neighbors allocated at start, conntrack as flows come)\n  \
         fdb        {:>9} entries                   {}\n  \
         neighbors  {:>9} entries, {:>4} held packets {}\n  \
         conntrack  {:>9} entries                   {}",
        human_bytes(m.total_bytes()),
        m.fdb_entries,
        human_bytes(m.fdb_bytes),
        m.neighbor_entries,
        m.held_packets,
        human_bytes(m.neighbor_bytes),
        m.conntrack_entries,
        human_bytes(m.conntrack_bytes),
    );
    Ok(())
}

/// Bytes for people: KiB, MiB or GiB with one decimal.
fn human_bytes(b: usize) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// `switchyard show TABLE`: print a table of a running instance, laid out for people
/// or (`json`) as the reply's JSON payload. `show config` prints the TOML file, and
/// with `json` the same file as JSON: its tables as objects, its arrays of tables as
/// arrays.
pub fn show(table: Table, json: bool, target: &Target, run_root: &Path) -> Result<()> {
    let socket = target.socket(run_root)?;
    let reply = client::request(&socket, &Request::Show { table })?;
    if let (Reply::Config(c), true) = (&reply, json) {
        let file: toml::Table = toml::from_str(&c.toml)?;
        println!("{}", serde_json::to_string_pretty(&file)?);
    } else if json {
        println!("{}", serde_json::to_string_pretty(&reply.payload())?);
    } else {
        print!("{}", render::reply(&reply));
    }
    Ok(())
}

/// The verbs that change or list networks, endpoints, joins and routes: asks the
/// instance and prints its answer (`--json`: the reply's payload).
pub fn ask(req: &Request, json: bool, target: &Target, run_root: &Path) -> Result<()> {
    let socket = target.socket(run_root)?;
    let reply = client::request(&socket, req)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply.payload())?);
    } else {
        print!("{}", render::reply(&reply));
    }
    Ok(())
}

/// `switchyard trace --packet SPEC [--json]`: what a running instance would do with
/// the packet SPEC describes, without sending it or changing any table — printed as a
/// live trace prints a frame (`--json`: the same object). The instance builds the
/// packet and checks the SPEC: it knows the ports' addresses.
pub fn trace_packet(spec: &str, json: bool, target: &Target, run_root: &Path) -> Result<()> {
    let socket = target.socket(run_root)?;
    let reply = client::request(
        &socket,
        &Request::TracePacket {
            packet: spec.to_string(),
        },
    )?;
    match (&reply, json) {
        (Reply::Trace(t), true) => println!("{}", serde_json::to_string(t)?),
        _ => print!("{}", render::reply(&reply)),
    }
    Ok(())
}

/// `switchyard trace [--port P]... [--count N] [--json]`: traces the next `count`
/// frames received on `ports` (every port if none) and prints each as it is switched:
/// the frame, a line per stage, and its verdict. `--json` prints one object per frame.
pub fn trace(
    ports: Vec<String>,
    count: u32,
    json: bool,
    target: &Target,
    run_root: &Path,
) -> Result<()> {
    let socket = target.socket(run_root)?;
    follow(&socket, &Request::Trace { ports, count }, |reply| {
        match (reply, json) {
            (Reply::Trace(t), true) => {
                Shown::Line(serde_json::to_string(t).expect("traces serialize"))
            }
            (Reply::TraceStart(t), _) => {
                // Says when to start sending; on stderr, so stdout holds the frames.
                eprint!("{}", render::trace_start(t));
                Shown::Nothing
            }
            (Reply::TraceEnd(e), true) => {
                // The summary goes to stderr with --json, so stdout stays one object
                // per frame.
                eprint!("{}", render::trace_end(e));
                Shown::End(None)
            }
            (Reply::TraceEnd(e), false) => Shown::End(Some(render::trace_end(e))),
            (r, _) => Shown::Line(render::reply(r)),
        }
    })
}

/// What [`follow`] does with one reply of a live stream.
enum Shown {
    /// Print this (a newline is added if it has none).
    Line(String),
    /// Nothing on stdout.
    Nothing,
    /// The stream is over, after printing this if anything.
    End(Option<String>),
}

/// Prints a live stream's replies on stdout as they come, each as `show` says, until
/// the stream ends, stdout closes (`| head`: the server sees the hang-up) or an
/// error. Each line is flushed at once: a pipe would hold it back otherwise.
fn follow(socket: &Path, req: &Request, mut show: impl FnMut(&Reply) -> Shown) -> Result<()> {
    use std::io::Write as _;
    use std::ops::ControlFlow;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    client::stream(socket, req, |reply| {
        let (text, then) = match show(&reply) {
            Shown::Line(t) => (Some(t), ControlFlow::Continue(())),
            Shown::Nothing => (None, ControlFlow::Continue(())),
            Shown::End(t) => (t, ControlFlow::Break(())),
        };
        if let Some(mut text) = text {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                failed = Some(e);
                return ControlFlow::Break(());
            }
        }
        then
    })?;
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Where `switchyard capture` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureTo {
    /// One line of text per packet on stdout (no `-w`), as tcpdump prints.
    Lines,
    /// pcapng on stdout (`-w -`).
    Stdout,
    /// pcapng to a file (`-w FILE`).
    File(PathBuf),
}

/// `switchyard capture PORT... [-w FILE|-] [-c N] [--drops]`: records the frames
/// crossing the ports, both ways, until Ctrl-C (or N packets). Messages for people
/// ("capturing on ...", the counts at the end) go to stderr, as tcpdump's do, so
/// stdout carries only packets.
pub fn capture(
    ports: Vec<String>,
    to: CaptureTo,
    count: Option<u64>,
    drops: bool,
    target: &Target,
    run_root: &Path,
) -> Result<()> {
    use super::capture::CaptureSink;
    use super::protocol::{CaptureRequest, Reply};
    use std::io::{IsTerminal, Write};
    use std::ops::ControlFlow;

    let socket = target.socket(run_root)?;
    let out: Box<dyn Write> = match &to {
        CaptureTo::Lines => Box::new(std::io::stdout().lock()),
        CaptureTo::Stdout => {
            anyhow::ensure!(
                !std::io::stdout().is_terminal(),
                "-w - writes pcapng to stdout, which is a terminal; pipe it \
                 (`| tcpdump -r -`) or name a file"
            );
            Box::new(std::io::stdout().lock())
        }
        CaptureTo::File(f) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("create {}", f.display()))?,
        )),
    };
    let mut sink = match to {
        CaptureTo::Lines => CaptureSink::lines(out, count),
        _ => CaptureSink::pcapng(out, count),
    };
    // Ctrl-C ends the capture between two lines, so the file ends with whole blocks;
    // a second Ctrl-C ends the program at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("install signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let req = Request::Capture(CaptureRequest {
        ports,
        drops,
        count,
    });
    let mut failed = None;
    let result = client::stream(&socket, &req, |reply| {
        let r = match &reply {
            Reply::CaptureStarted(s) => {
                eprintln!(
                    "capturing on {}{}, both directions",
                    s.ports.join(", "),
                    if drops { " with drops" } else { "" }
                );
                sink.started(s)
            }
            Reply::CapturePackets(p) => sink.packets(p),
            Reply::CaptureStatus(s) => {
                sink.status(s);
                Ok(())
            }
            Reply::CaptureEnd(s) => {
                sink.status(s);
                return ControlFlow::Break(());
            }
            other => Err(std::io::Error::other(format!(
                "unexpected {:?} line in a capture",
                other.name()
            ))),
        };
        if let Err(e) = r {
            failed = Some(e);
            return ControlFlow::Break(());
        }
        if sink.done() || stop.load(Ordering::SeqCst) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    let (written, skipped) = (sink.written, sink.skipped);
    let finished = sink.finish();
    result?;
    match failed {
        // A closed stdout (`| head`) ends the capture like Ctrl-C.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Some(e) => return Err(anyhow::Error::new(e).context("write the capture")),
        None => {}
    }
    if let Err(e) = finished {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(anyhow::Error::new(e).context("write the capture"));
        }
    }
    eprintln!("{written} packets captured");
    eprintln!("{skipped} packets skipped by switchyard (the capture's buffers were full)");
    Ok(())
}

/// `switchyard events [--json]`: prints the instance's table events as they come,
/// one line each (text, or the event's JSON object), until interrupted or stdout
/// closes.
pub fn events(json: bool, target: &Target, run_root: &Path) -> Result<()> {
    let socket = target.socket(run_root)?;
    follow(&socket, &Request::Events {}, |reply| {
        Shown::Line(match (reply, json) {
            (Reply::Event(e), true) => serde_json::to_string(e).expect("events serialize"),
            (Reply::Event(e), false) => render::event(e),
            (r, _) => render::reply(r),
        })
    })
}

/// `switchyard bench ARGS...`: runs the benchmark harness, the `switchyard-bench`
/// binary next to this one, with the same arguments (so the daemon links no plotting
/// or progress-bar code). Returns only if it could not be started.
pub fn bench(args: &[std::ffi::OsString], run_root: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe().context("find the switchyard binary")?;
    let harness = me.with_file_name("switchyard-bench");
    anyhow::ensure!(
        harness.is_file(),
        "switchyard bench needs {} (the benchmark harness, built by `cargo build --release` \
         at the top of the workspace)",
        harness.display()
    );
    let err = std::process::Command::new(&harness)
        .args(args)
        .env("SWITCHYARD_RUN_DIR", run_root)
        .exec();
    Err(anyhow::Error::new(err).context(format!("run {}", harness.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_names_its_instance_for_down() {
        let root = Path::new("/run/elsewhere");
        let t = Target {
            socket: Some(PathBuf::from("/tmp/sy/t1-/control.sock")),
            ..Default::default()
        };
        assert_eq!(
            t.instance(root).unwrap(),
            (PathBuf::from("/tmp/sy"), "t1-".to_string())
        );
        assert_eq!(
            t.socket(root).unwrap(),
            PathBuf::from("/tmp/sy/t1-/control.sock")
        );
        let t = Target {
            socket: Some(PathBuf::from("/tmp/my.sock")),
            ..Default::default()
        };
        let e = t.instance(root).unwrap_err().to_string();
        assert!(e.contains("/tmp/my.sock") && e.contains("--prefix"), "{e}");
    }

    #[test]
    fn a_prefix_names_its_instance_under_the_run_root() {
        let t = Target {
            prefix: Some("p-".into()),
            ..Default::default()
        };
        let root = Path::new("/run/switchyard");
        assert_eq!(
            t.instance(root).unwrap(),
            (root.to_path_buf(), "p-".to_string())
        );
        assert_eq!(
            t.socket(root).unwrap(),
            PathBuf::from("/run/switchyard/p-/control.sock")
        );
        // Nothing given: the built-in default's instance.
        assert_eq!(Target::default().instance(root).unwrap().1, "sy-");
    }
}
