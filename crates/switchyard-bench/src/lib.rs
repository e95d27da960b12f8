//! switchyard-bench — the harness that compares switchyard with the kernel bridge (and
//! with Open vSwitch, vde_switch, pasta and slirp4netns when installed), run as
//! `switchyard bench`.
//!
//! * [`kernel`], [`kernel_links`]: Docker's network built from kernel parts (veth,
//!   bridge, iptables).
//! * [`peers`]: Open vSwitch (userspace datapath) and vde_switch, when installed.
//! * [`rootless`]: pasta and slirp4netns, the user-space NAT of rootless containers,
//!   on `nat-out`, when installed.
//! * [`systems`]: the scenarios (`l2`, `routed`, `nat-out`, `nat-in`), built the
//!   same way, with the same addresses, by every system.
//! * [`load`], [`iperf`]: the measurements — TCP bulk (iperf3), 64-byte UDP at full
//!   load and the highest zero-loss rate (RFC 2544), request/response latency in an
//!   HDR histogram — [`connrate`]: new TCP connections per second — and
//!   [`report`]: the table, the JSON and the SVG.
//! * [`cli`]: the command line, as `switchyard bench` passes it on.
//!
//! [`run`] measures every system on every scenario in one run, alternating between
//! systems for every metric and repeat, so that drift in the machine hits all alike,
//! and reports medians. Everything it builds is removed at the end, also when it is
//! interrupted (`stop`). Traffic comes from `switchyard_testkit::traffic`: sockets
//! opened inside the namespaces, so every system sees the same.
#![forbid(unsafe_code)]

pub mod cli;
pub mod connrate;
pub mod iperf;
pub mod kernel;
pub mod kernel_links;
pub mod load;
pub mod overlay;
pub mod peers;
pub mod report;
pub mod rootless;
pub mod systems;

use load::{Latency, Trial, UdpEcho, UdpSink};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_os::port::uring::IoMode;
use systems::{Deployed, Scenario, SwitchyardTuning, SystemKind};

/// What to measure and for how long.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub scenarios: Vec<Scenario>,
    pub systems: Vec<SystemKind>,
    /// Each metric is measured this many times on each system; medians are reported.
    pub repeat: usize,
    /// Length of a TCP bulk run.
    pub tcp_secs: u64,
    /// Length of a 64-byte UDP trial.
    pub load_secs: f64,
    /// Trials of the zero-loss binary search.
    pub search_steps: usize,
    /// Round trips per latency measurement.
    pub latency_count: u64,
    /// switchyard's workers (0: one per core).
    pub workers: usize,
    /// How long `switchyard-bp` spins after its last packet.
    pub busy_poll_us: u64,
    /// Length of a connection-rate run, seconds.
    pub conn_secs: f64,
    /// Parallel connectors of a connection-rate run.
    pub connectors: usize,
    /// How switchyard's workers read and write the TAPs (`[switch] io`).
    pub io: IoMode,
    #[serde(skip)]
    pub run_root: PathBuf,
}

impl Options {
    /// The full run: every scenario, the systems found, 3 repeats.
    pub fn full() -> Options {
        Options {
            scenarios: Scenario::ALL.to_vec(),
            systems: SystemKind::ALL.to_vec(),
            repeat: 3,
            tcp_secs: 5,
            load_secs: 2.0,
            search_steps: 7,
            latency_count: 20_000,
            workers: 0,
            busy_poll_us: 200,
            conn_secs: 3.0,
            connectors: 4,
            io: IoMode::default(),
            run_root: std::env::temp_dir().join("switchyard-bench"),
        }
    }

    /// A short run that proves the harness works: the l2 scenario, kernel and
    /// switchyard, one repeat, short trials.
    pub fn quick() -> Options {
        Options {
            scenarios: vec![Scenario::L2],
            systems: vec![SystemKind::Kernel, SystemKind::Switchyard],
            repeat: 1,
            tcp_secs: 1,
            load_secs: 0.5,
            search_steps: 3,
            latency_count: 1000,
            conn_secs: 1.0,
            ..Options::full()
        }
    }
}

/// Every sample of one system on one scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    pub tcp1_gbps: Vec<f64>,
    pub tcp4_gbps: Vec<f64>,
    pub udp_offered_kpps: Vec<f64>,
    pub udp_received_kpps: Vec<f64>,
    pub udp_loss_pct: Vec<f64>,
    pub zero_loss_kpps: Vec<f64>,
    pub lat_p50_us: Vec<f64>,
    pub lat_p99_us: Vec<f64>,
    pub lat_p999_us: Vec<f64>,
    pub lat_max_us: Vec<f64>,
    /// CPU seconds the switch used during the 1-stream TCP run (none for the kernel,
    /// whose forwarding is charged to whatever task runs).
    pub switch_cpu_tcp1_s: Vec<f64>,
    /// CPU seconds the switch used during the 64-byte full-load trial.
    pub switch_cpu_udp_s: Vec<f64>,
    /// Share of all cores busy during the 1-stream TCP run, percent.
    pub machine_busy_tcp1_pct: Vec<f64>,
    /// CPU seconds the whole machine spent (all cores, every task) during the 1- and
    /// 4-stream TCP runs.
    pub machine_cpu_tcp1_s: Vec<f64>,
    pub machine_cpu_tcp4_s: Vec<f64>,
    /// Gbit carried per CPU second of the whole machine: the TCP run's throughput times
    /// its length, over `machine_cpu_tcp*_s`.
    pub tcp1_gbit_per_cpu_s: Vec<f64>,
    pub tcp4_gbit_per_cpu_s: Vec<f64>,
    /// New TCP connections per second (connect, 16 bytes each way, close).
    pub conn_per_s: Vec<f64>,
    /// Connection attempts that did not complete, per run.
    pub conn_failed: Vec<f64>,
    /// Every connection-rate run, in order.
    pub conn_runs: Vec<connrate::ConnRate>,
    /// Every trial of every zero-loss search, in order.
    pub zero_loss_trials: Vec<load::SearchTrial>,
}

/// One system on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    pub system: SystemKind,
    /// Why it was not measured.
    pub skipped: Option<String>,
    /// The MTU of the client's `eth0` as deployed (read back from the namespace).
    pub client_mtu: Option<u32>,
    pub samples: Samples,
    /// The last latency measurement's CDF (latency ns, fraction).
    pub latency_cdf: Vec<(u64, f64)>,
}

/// One scenario on every system.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub description: &'static str,
    pub systems: Vec<SystemResult>,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub model: String,
    pub kernel: String,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// UTC, ISO 8601.
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub tcp_tool: &'static str,
    pub options: Options,
    pub scenarios: Vec<ScenarioResult>,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("interrupted")]
    Interrupted,
    #[error("must run as root: it creates network namespaces")]
    NotRoot,
    #[error("{system} on {scenario}: {what}: {detail}")]
    Measure {
        system: &'static str,
        scenario: &'static str,
        what: &'static str,
        detail: String,
    },
}

/// The median of some samples (NaN when there are none).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// The MTU of `eth0` in namespace `ns`, as the kernel reports it.
fn eth0_mtu(ns: &str) -> Option<u32> {
    switchyard_os::netns::run_in_named(ns, || {
        let mut r = switchyard_os::netlink::Rtnl::new().ok()?;
        r.links().ok()?.into_iter().find(|l| l.name == "eth0")?.mtu
    })
    .ok()
    .flatten()
}

/// Busy and total jiffies of all CPUs, from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = text.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

fn machine() -> Machine {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A deployed system with its UDP servers running.
struct Live {
    d: Deployed,
    sink: UdpSink,
    _echo: UdpEcho,
}

/// The steps of one repeat, each run on every system in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tcp1,
    Tcp4,
    Udp,
    Latency,
    ConnRate,
}

/// Connection setup comes last: the flows it leaves in TIME_WAIT sit in the NAT
/// tables of the next repeat, not of this one's other metrics.
const STEPS: [Step; 5] = [
    Step::Tcp1,
    Step::Tcp4,
    Step::Udp,
    Step::Latency,
    Step::ConnRate,
];

/// How many progress steps a run has.
pub fn total_steps(o: &Options) -> u64 {
    (o.scenarios.len() * o.systems.len() * o.repeat * STEPS.len()) as u64
}

/// Runs the benchmark. `progress` is told what is being measured before each step;
/// `stop` (set by a signal handler) ends the run early, with everything cleaned up.
pub fn run(
    opts: &Options,
    command: &str,
    stop: &AtomicBool,
    mut progress: impl FnMut(&str),
) -> Result<Report, BenchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    let tuning = SwitchyardTuning {
        workers: opts.workers,
        busy_poll_us: opts.busy_poll_us,
        cpu: false,
        io: opts.io,
    };
    let mut results = Vec::new();
    for (si, &scenario) in opts.scenarios.iter().enumerate() {
        let mut live: Vec<(SystemKind, Result<Live, String>)> = Vec::new();
        for (i, &system) in opts.systems.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(BenchError::Interrupted);
            }
            // Unique per run, scenario and system: "b<pid>s<scenario>y<system>-".
            let prefix = format!("b{}s{si}y{i}-", std::process::id());
            let deployed = systems::deploy(system, scenario, &prefix, &opts.run_root, tuning)
                .and_then(|d| {
                    let bind = |p| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
                    let sink = UdpSink::start(&d.server, bind(systems::LOAD_PORT))
                        .map_err(|e| e.to_string())?;
                    let echo = UdpEcho::start(&d.server, bind(systems::ECHO_PORT))
                        .map_err(|e| e.to_string())?;
                    Ok(Live {
                        d,
                        sink,
                        _echo: echo,
                    })
                });
            live.push((system, deployed));
        }
        let mut res: Vec<SystemResult> = live
            .iter()
            .map(|(s, l)| SystemResult {
                system: *s,
                skipped: l.as_ref().err().cloned(),
                client_mtu: l.as_ref().ok().and_then(|l| eth0_mtu(&l.d.client)),
                samples: Samples::default(),
                latency_cdf: Vec::new(),
            })
            .collect();
        for r in 0..opts.repeat {
            for step in STEPS {
                // Rotate the order every repeat, so no system is always first.
                let n = live.len();
                for k in 0..n {
                    let i = (k + r) % n;
                    if stop.load(Ordering::Relaxed) {
                        return Err(BenchError::Interrupted);
                    }
                    let system = live[i].0.name();
                    let l = match &live[i].1 {
                        Ok(l) if res[i].skipped.is_none() => l,
                        _ => {
                            // Not running: the step still counts for the progress bar.
                            progress(&format!("{system} on {}: skipped", scenario.name()));
                            continue;
                        }
                    };
                    progress(&format!(
                        "{system} on {}: {:?} ({} of {})",
                        scenario.name(),
                        step,
                        r + 1,
                        opts.repeat
                    ));
                    match measure(opts, l, step, &mut res[i], stop) {
                        Ok(()) => {}
                        Err(BenchError::Measure { what, detail, .. }) => {
                            // One system failing does not end a long run: it is
                            // reported as failed, with why, and the others go on.
                            res[i].skipped = Some(format!("failed: {what}: {detail}"));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        results.push(ScenarioResult {
            scenario,
            description: scenario.describe(),
            systems: res,
        });
        // `live` drops here: every namespace of this scenario is removed.
    }
    Ok(Report {
        date: utc_now(),
        command: command.to_string(),
        machine: machine(),
        tcp_tool: iperf::tool(),
        options: opts.clone(),
        scenarios: results,
    })
}

fn measure(
    opts: &Options,
    l: &Live,
    step: Step,
    out: &mut SystemResult,
    stop: &AtomicBool,
) -> Result<(), BenchError> {
    let d = &l.d;
    let target = d.scenario.target();
    let fail = |what: &'static str, e: std::io::Error| BenchError::Measure {
        system: d.system.name(),
        scenario: d.scenario.name(),
        what,
        detail: e.to_string(),
    };
    let s = &mut out.samples;
    match step {
        Step::Tcp1 | Step::Tcp4 => {
            let streams = if step == Step::Tcp1 { 1 } else { 4 };
            let cpu0 = d.switch_cpu();
            let busy0 = cpu_jiffies();
            let gbps = iperf::tcp_bulk(
                &d.client,
                &d.server,
                target,
                systems::TCP_PORT,
                streams,
                Duration::from_secs(opts.tcp_secs),
            )
            .map_err(|e| fail("TCP bulk", e))?;
            let busy1 = cpu_jiffies();
            // Every task's CPU time counts: sender, receiver, switch, softirqs (and
            // whatever else the machine ran meanwhile).
            let cpu_s = (busy1.0 - busy0.0) as f64 / peers::clock_ticks() as f64;
            let per_cpu_s = gbps * opts.tcp_secs as f64 / cpu_s;
            let (cpu, eff) = if step == Step::Tcp1 {
                (&mut s.machine_cpu_tcp1_s, &mut s.tcp1_gbit_per_cpu_s)
            } else {
                (&mut s.machine_cpu_tcp4_s, &mut s.tcp4_gbit_per_cpu_s)
            };
            cpu.push(cpu_s);
            if cpu_s > 0.0 {
                eff.push(per_cpu_s);
            }
            if step == Step::Tcp1 {
                s.tcp1_gbps.push(gbps);
                let (b, t) = (busy1.0 - busy0.0, (busy1.1 - busy0.1).max(1));
                s.machine_busy_tcp1_pct.push(100.0 * b as f64 / t as f64);
                if let (Some(a), Some(b)) = (cpu0, d.switch_cpu()) {
                    s.switch_cpu_tcp1_s.push((b - a).as_secs_f64());
                }
            } else {
                s.tcp4_gbps.push(gbps);
            }
        }
        Step::Udp => {
            let to = SocketAddrV4::new(target, systems::LOAD_PORT);
            let dur = Duration::from_secs_f64(opts.load_secs);
            let cpu0 = d.switch_cpu();
            let full: Trial = load::trial(&d.client, to, &l.sink, None, dur)
                .map_err(|e| fail("64-byte load", e))?;
            if let (Some(a), Some(b)) = (cpu0, d.switch_cpu()) {
                s.switch_cpu_udp_s.push((b - a).as_secs_f64());
            }
            s.udp_offered_kpps.push(full.offered_pps / 1e3);
            s.udp_received_kpps.push(full.received_pps / 1e3);
            s.udp_loss_pct.push(full.loss * 100.0);
            let zl = load::zero_loss_rate(
                &d.client,
                to,
                &l.sink,
                full.offered_pps,
                opts.search_steps,
                dur,
                stop,
                &mut s.zero_loss_trials,
            )
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    BenchError::Interrupted
                } else {
                    fail("zero-loss search", e)
                }
            })?;
            s.zero_loss_kpps.push(zl / 1e3);
        }
        Step::Latency => {
            let lat: Latency = load::latency(
                &d.client,
                SocketAddrV4::new(target, systems::ECHO_PORT),
                opts.latency_count,
            )
            .map_err(|e| fail("latency", e))?;
            s.lat_p50_us.push(lat.p50_ns as f64 / 1e3);
            s.lat_p99_us.push(lat.p99_ns as f64 / 1e3);
            s.lat_p999_us.push(lat.p999_ns as f64 / 1e3);
            s.lat_max_us.push(lat.max_ns as f64 / 1e3);
            out.latency_cdf = lat.cdf;
        }
        Step::ConnRate => {
            let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, systems::TCP_PORT);
            // On the TCP port, which every scenario reaches (and nat-in publishes);
            // only for this step, so iperf3 has the port the rest of the time.
            let _server = connrate::ConnServer::start(&d.server, bind, opts.connectors + 1)
                .map_err(|e| fail("connection-rate server", e))?;
            let r = connrate::conn_rate(
                &d.client,
                SocketAddrV4::new(target, systems::TCP_PORT),
                opts.connectors,
                Duration::from_secs_f64(opts.conn_secs),
                stop,
            )
            .map_err(|e| fail("connection rate", e))?;
            if stop.load(Ordering::Relaxed) {
                return Err(BenchError::Interrupted);
            }
            s.conn_per_s.push(r.per_sec);
            s.conn_failed.push(r.failed as f64);
            s.conn_runs.push(r);
        }
    }
    Ok(())
}

/// How long a run takes, roughly (for the progress bar's estimate): peers that
/// cannot run a scenario (not installed, or not set up for it) take no time.
pub fn estimate(o: &Options) -> Duration {
    let per = o.tcp_secs as f64 * 2.0
        + 1.5
        + o.load_secs * (1.0 + o.search_steps as f64)
        + 0.3 * (o.search_steps as f64 + 1.0)
        + o.latency_count as f64 * 60e-6
        + o.conn_secs
        + 0.2;
    let runs = o
        .scenarios
        .iter()
        .flat_map(|&sc| o.systems.iter().map(move |&sy| (sy, sc)))
        .filter(|&(sy, sc)| peers::unavailable(sy, sc).is_none())
        .count();
    Duration::from_secs_f64(per * (runs * o.repeat) as f64)
}
