//! The harness's command line: `switchyard bench [OPTIONS]` (the `switchyard` binary
//! hands its arguments to the `switchyard-bench` binary, so the daemon does not link
//! the harness). The options are declared here once.

use crate::systems::{Scenario, SystemKind};
use crate::{BenchError, Options};
use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use switchyard_os::port::uring::IoMode;

/// Where `switchyard` keeps control sockets and state files, unless told otherwise.
const DEFAULT_RUN_ROOT: &str = switchyard::topology::DEFAULT_RUN_ROOT;

/// Measure switchyard against the kernel bridge (and Open vSwitch, vde_switch, pasta
/// and slirp4netns when installed) on scenarios it builds itself in namespaces of its own; everything is
/// removed at the end, also on Ctrl-C.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchyard bench", bin_name = "switchyard bench", version)]
pub struct BenchArgs {
    /// A short run proving the harness works: l2, kernel and switchyard, one repeat,
    /// short trials. Options given as well apply on top.
    #[arg(long)]
    pub quick: bool,
    /// Scenarios to run [default: all; l2 with --quick].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<ScenarioArg>,
    /// Systems to measure [default: all; kernel,switchyard with --quick].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub systems: Vec<SystemKind>,
    /// Measurements of each metric on each system; medians are reported
    /// [default: 3; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: Option<u32>,
    /// Seconds of each TCP bulk run [default: 5; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tcp_secs: Option<u64>,
    /// Seconds of each 64-byte UDP trial [default: 2; 0.5 with --quick].
    #[arg(long, value_parser = parse_load_secs)]
    pub load_secs: Option<f64>,
    /// Round trips per latency measurement [default: 20000; 1000 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub latency_count: Option<u64>,
    /// Seconds of each connection-rate run [default: 3; 1 with --quick].
    #[arg(long, value_parser = parse_load_secs)]
    pub conn_secs: Option<f64>,
    /// Parallel connectors of the connection-rate run, each opening one connection
    /// at a time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connectors: u16,
    /// switchyard's worker threads (0: one per core).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub workers: u16,
    /// How long the switchyard-bp system spins after its last packet, in µs (leave
    /// switchyard-bp out of --systems to measure without busy polling).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub busy_poll_us: u64,
    /// How switchyard's workers read and write the TAPs: batches through io_uring,
    /// or one system call per frame (`[switch] io`) [default: switchyard's default].
    #[arg(long, value_enum)]
    pub io: Option<IoArg>,
    /// Write every sample, the options and the machine as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the comparison as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Directory for the state of the switchyard instances the run starts (a `bench`
    /// folder is made in it).
    #[arg(long, env = "SWITCHYARD_RUN_DIR", default_value = DEFAULT_RUN_ROOT)]
    pub run_dir: PathBuf,
}

/// `--io`: switchyard's `[switch] io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoArg {
    /// A batch of TAP reads or writes per system call (io_uring).
    Uring,
    /// One read(2)/writev(2) per frame.
    Syscalls,
}

impl IoArg {
    pub fn mode(self) -> IoMode {
        match self {
            IoArg::Uring => IoMode::Uring,
            IoArg::Syscalls => IoMode::Syscalls,
        }
    }
}

/// A scenario on the command line: one, or a group of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    /// Two endpoints on one network (bridged).
    L2,
    /// Two networks, routed through the gateway.
    Routed,
    /// Both NAT directions (nat-out, nat-in).
    Nat,
    /// Endpoint to outside through masquerade.
    NatOut,
    /// Outside to endpoint through a published port.
    NatIn,
    /// One network over VXLAN between two hosts (kernel and switchyard only).
    Overlay,
    /// Every scenario.
    All,
}

impl ScenarioArg {
    /// The scenarios this stands for.
    pub fn scenarios(self) -> &'static [Scenario] {
        match self {
            ScenarioArg::L2 => &[Scenario::L2],
            ScenarioArg::Routed => &[Scenario::Routed],
            ScenarioArg::Nat => &[Scenario::NatOut, Scenario::NatIn],
            ScenarioArg::NatOut => &[Scenario::NatOut],
            ScenarioArg::NatIn => &[Scenario::NatIn],
            ScenarioArg::Overlay => &[Scenario::Overlay],
            ScenarioArg::All => &Scenario::ALL,
        }
    }
}

fn parse_load_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0.1 and 3600 seconds".into())
    }
}

impl BenchArgs {
    /// The harness options: `--quick` or the full run, with every given option on top.
    pub fn options(&self) -> Options {
        let mut o = if self.quick {
            Options::quick()
        } else {
            Options::full()
        };
        if !self.scenarios.is_empty() {
            o.scenarios.clear();
            for s in self.scenarios.iter().flat_map(|a| a.scenarios()) {
                if !o.scenarios.contains(s) {
                    o.scenarios.push(*s);
                }
            }
        }
        if !self.systems.is_empty() {
            o.systems.clear();
            for s in &self.systems {
                if !o.systems.contains(s) {
                    o.systems.push(*s);
                }
            }
        }
        if let Some(r) = self.repeat {
            o.repeat = r as usize;
        }
        if let Some(t) = self.tcp_secs {
            o.tcp_secs = t;
        }
        if let Some(t) = self.load_secs {
            o.load_secs = t;
        }
        if let Some(n) = self.latency_count {
            o.latency_count = n;
        }
        if let Some(t) = self.conn_secs {
            o.conn_secs = t;
        }
        o.connectors = usize::from(self.connectors);
        o.workers = usize::from(self.workers);
        o.busy_poll_us = self.busy_poll_us;
        if let Some(io) = self.io {
            o.io = io.mode();
        }
        o.run_root = self.run_dir.join("bench");
        o
    }
}

/// Runs the harness as the command line asks: build every scenario on every system,
/// measure, report; remove everything at the end, also on SIGINT/SIGTERM.
pub fn run(args: &BenchArgs, command: &str) -> Result<()> {
    let opts = args.options();
    // Files are checked before a minute of measuring, not after.
    for f in [&args.json, &args.svg].into_iter().flatten() {
        check_parent(f)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let total = crate::total_steps(&opts);
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
    tracing::info!(
        "{} scenario(s) × {} system(s) × {} repeat(s), about {} s",
        opts.scenarios.len(),
        opts.systems.len(),
        opts.repeat,
        crate::estimate(&opts).as_secs()
    );
    let mut first = true;
    let result = crate::run(&opts, command, &stop, |what| {
        if !first {
            bar.inc(1);
        }
        first = false;
        bar.set_message(what.to_string());
    });
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(BenchError::Interrupted) => {
            anyhow::bail!("interrupted; everything the run created was removed")
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", crate::report::table(&report));
    if let Some(f) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(f, text).with_context(|| format!("write {}", f.display()))?;
        println!("every sample: {}", f.display());
    }
    if let Some(f) = &args.svg {
        crate::report::svg(&report, f)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("draw {}", f.display()))?;
        println!("chart: {}", f.display());
    }
    Ok(())
}

fn check_parent(f: &Path) -> Result<()> {
    if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
        anyhow::ensure!(dir.is_dir(), "{}: no such directory", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        BenchArgs::try_parse_from(std::iter::once("switchyard-bench").chain(args.iter().copied()))
    }

    #[test]
    fn groups_expand_and_repeat_once() {
        let o = parse(&["--scenarios", "nat,l2,nat-in"]).unwrap().options();
        assert_eq!(
            o.scenarios,
            vec![Scenario::NatOut, Scenario::NatIn, Scenario::L2]
        );
        let o = parse(&["--quick", "--systems", "switchyard,kernel,switchyard"])
            .unwrap()
            .options();
        assert_eq!(o.systems, vec![SystemKind::Switchyard, SystemKind::Kernel]);
        assert_eq!(o.repeat, 1, "--quick sets the defaults the options did not");
    }

    #[test]
    fn ranges_are_checked_by_the_parser() {
        for bad in [
            &["--repeat", "0"][..],
            &["--tcp-secs", "0"],
            &["--load-secs", "0.01"],
            &["--load-secs", "NaN"],
            &["--latency-count", "5"],
            &["--busy-poll-us", "0"],
            &["--workers", "65"],
            &["--scenarios", "l3"],
            &["--systems", "docker"],
            &["--conn-secs", "0"],
            &["--connectors", "0"],
            &["--connectors", "257"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let o = parse(&["--workers", "2", "--busy-poll-us", "50"])
            .unwrap()
            .options();
        assert_eq!((o.workers, o.busy_poll_us), (2, 50));
        assert_eq!(o.io, IoMode::default());
        for (arg, mode) in [("uring", IoMode::Uring), ("syscalls", IoMode::Syscalls)] {
            assert_eq!(parse(&["--io", arg]).unwrap().options().io, mode);
        }
        assert!(parse(&["--io", "epoll"]).is_err());
    }

    #[test]
    fn the_rootless_peers_and_the_connection_rate_are_options() {
        let o = parse(&[
            "--scenarios",
            "nat-out",
            "--systems",
            "kernel,switchyard,pasta,slirp4netns",
        ])
        .unwrap()
        .options();
        assert_eq!(
            o.systems,
            vec![
                SystemKind::Kernel,
                SystemKind::Switchyard,
                SystemKind::Pasta,
                SystemKind::Slirp4netns
            ]
        );
        assert_eq!((o.conn_secs, o.connectors), (3.0, 4), "the defaults");
        let o = parse(&["--quick", "--connectors", "8"]).unwrap().options();
        assert_eq!((o.conn_secs, o.connectors), (1.0, 8), "--quick's length");
        let o = parse(&["--conn-secs", "0.5"]).unwrap().options();
        assert_eq!(o.conn_secs, 0.5);
        assert!(parse(&["--systems", "slirp"]).is_err());
    }
}
