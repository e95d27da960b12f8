//! The CLI verbs. `main.rs` parses the command line and calls one of these.

use super::protocol::{
    ConntrackReport, CountersReport, FdbRow, NeighborRow, PortRow, Request, RouteRow, Table,
};
use super::{client, render, Switchyard};
use crate::bench::{
    self,
    systems::{Scenario, SystemKind},
};
use crate::pipeline::DomainMode;
use crate::topology::{config, setup, Topology};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which running instance a verb talks to.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// An explicit socket path.
    pub socket: Option<PathBuf>,
    /// A config file whose prefix names the instance.
    pub config: Option<PathBuf>,
    /// The prefix naming the instance (default "sy-").
    pub prefix: Option<String>,
    /// The run root (default /run/switchyard).
    pub run_root: PathBuf,
}

impl Target {
    fn prefix(&self) -> Result<String> {
        if let Some(p) = &self.prefix {
            return Ok(p.clone());
        }
        if let Some(f) = &self.config {
            return Ok(config::load(f)?.prefix);
        }
        Ok(config::default_topology().prefix)
    }

    fn socket(&self) -> Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        Ok(setup::RunDir::new(&self.run_root, &self.prefix()?).socket())
    }
}

fn load_topology(file: Option<&Path>) -> Result<Topology> {
    Ok(match file {
        Some(f) => config::load(f)?,
        None => config::default_topology(),
    })
}

/// `switchyard up [FILE]`: build the topology, switch until SIGINT/SIGTERM, clean up.
pub fn up(file: Option<&Path>, run_root: &Path) -> Result<()> {
    let topo = load_topology(file)?;
    // Handlers first, so a Ctrl-C during setup still leads to a clean teardown.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let sy = Switchyard::start(topo, run_root).context("switchyard up")?;
    print_summary(sy.topology(), sy.socket());
    while !stop.load(Ordering::SeqCst) {
        if sy.dataplane_died() {
            eprintln!("switchyard: the dataplane stopped unexpectedly; cleaning up");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nstopping: removing what switchyard created ...");
    let removed = sy.stop()?;
    println!(
        "removed {} namespace(s): {}",
        removed.len(),
        removed.join(" ")
    );
    Ok(())
}

fn print_summary(t: &Topology, socket: &Path) {
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
        "  switchyard show ports --prefix {}    (also: fdb, counters, routes, neighbors, conntrack; --json)",
        t.prefix
    );
    println!("Ctrl-C stops switchyard and removes everything it created.");
}

/// `switchyard down [FILE | --prefix P]`: clean up after a crashed `up`.
pub fn down(target: &Target) -> Result<()> {
    let prefix = target.prefix()?;
    let removed = setup::down(&prefix, &target.run_root)?;
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
    Ok(())
}

/// `switchyard show TABLE`: print a table of a running instance.
pub fn show(table: Table, json: bool, target: &Target) -> Result<()> {
    let socket = target.socket()?;
    let v = client::request(&socket, &Request::Show { table })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let text = match table {
        Table::Ports => render::ports(&serde_json::from_value::<Vec<PortRow>>(v)?),
        Table::Fdb => render::fdb(&serde_json::from_value::<Vec<FdbRow>>(v)?),
        Table::Counters => render::counters(&serde_json::from_value::<CountersReport>(v)?),
        Table::Routes => render::routes(&serde_json::from_value::<Vec<RouteRow>>(v)?),
        Table::Neighbors => render::neighbors(&serde_json::from_value::<Vec<NeighborRow>>(v)?),
        Table::Conntrack => render::conntrack(&serde_json::from_value::<ConntrackReport>(v)?),
    };
    print!("{text}");
    Ok(())
}

/// What `switchyard bench` was asked for, as parsed from the command line.
#[derive(Debug, Clone, Default)]
pub struct BenchArgs {
    pub quick: bool,
    pub scenarios: Option<String>,
    pub systems: Option<String>,
    pub repeat: Option<usize>,
    pub tcp_secs: Option<u64>,
    pub load_secs: Option<f64>,
    pub latency_count: Option<u64>,
    pub workers: Option<usize>,
    pub busy_poll_us: Option<u64>,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub no_progress: bool,
}

impl BenchArgs {
    /// The harness options: `--quick` or the full run, with every given option on top.
    pub fn options(&self, run_root: &Path) -> Result<bench::Options> {
        let mut o = if self.quick {
            bench::Options::quick()
        } else {
            bench::Options::full()
        };
        if let Some(s) = &self.scenarios {
            o.scenarios = Scenario::parse_list(s).map_err(anyhow::Error::msg)?;
        }
        if let Some(s) = &self.systems {
            o.systems = SystemKind::parse_list(s).map_err(anyhow::Error::msg)?;
        }
        anyhow::ensure!(!o.scenarios.is_empty(), "--scenarios names no scenario");
        anyhow::ensure!(!o.systems.is_empty(), "--systems names no system");
        if let Some(r) = self.repeat {
            anyhow::ensure!(r >= 1, "--repeat must be at least 1");
            o.repeat = r;
        }
        if let Some(t) = self.tcp_secs {
            anyhow::ensure!(t >= 1, "--tcp-secs must be at least 1");
            o.tcp_secs = t;
        }
        if let Some(t) = self.load_secs {
            anyhow::ensure!(
                t.is_finite() && t >= 0.1,
                "--load-secs must be at least 0.1"
            );
            o.load_secs = t;
        }
        if let Some(n) = self.latency_count {
            anyhow::ensure!(n >= 10, "--latency-count must be at least 10");
            o.latency_count = n;
        }
        if let Some(w) = self.workers {
            o.workers = w;
        }
        if let Some(b) = self.busy_poll_us {
            anyhow::ensure!(b >= 1, "--busy-poll-us must be at least 1 (leave switchyard-bp out of --systems to measure without it)");
            o.busy_poll_us = b;
        }
        o.run_root = run_root.join("bench");
        Ok(o)
    }
}

/// `switchyard bench`: build every scenario on every system, measure, report; remove
/// everything at the end, also on SIGINT/SIGTERM.
pub fn bench(args: &BenchArgs, run_root: &Path, command: &str) -> Result<()> {
    let opts = args.options(run_root)?;
    // Files are checked before a minute of measuring, not after.
    for f in [&args.json, &args.svg].into_iter().flatten() {
        if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
            anyhow::ensure!(dir.is_dir(), "{}: no such directory", dir.display());
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let total = bench::total_steps(&opts);
    let bar = if args.no_progress {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} (about {eta} left) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    eprintln!(
        "switchyard bench: {} scenario(s) × {} system(s) × {} repeat(s), about {} s",
        opts.scenarios.len(),
        opts.systems.len(),
        opts.repeat,
        bench::estimate(&opts).as_secs()
    );
    let mut first = true;
    let result = bench::run(&opts, command, &stop, |what| {
        if !first {
            bar.inc(1);
        }
        first = false;
        bar.set_message(what.to_string());
    });
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(bench::BenchError::Interrupted) => {
            eprintln!("switchyard bench: interrupted; everything it created was removed");
            anyhow::bail!("interrupted");
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", bench::report::table(&report));
    if let Some(f) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(f, text).with_context(|| format!("write {}", f.display()))?;
        println!("every sample: {}", f.display());
    }
    if let Some(f) = &args.svg {
        bench::report::svg(&report, f)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("draw {}", f.display()))?;
        println!("chart: {}", f.display());
    }
    Ok(())
}
