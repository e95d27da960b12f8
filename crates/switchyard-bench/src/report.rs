//! Presenting a run: a table per scenario with every system's medians and
//! switchyard's ratio to the kernel bridge, and an SVG of the same (bars per metric,
//! normalised to the kernel, and the latency CDFs).

use super::{median, Report, Samples, ScenarioResult, SystemKind};
use plotters::prelude::*;
use std::fmt::Write as _;

/// A row of the table.
pub struct Metric {
    pub label: &'static str,
    pub higher_is_better: bool,
    /// The target ratio switchyard/kernel, if the project set one.
    pub target: Option<f64>,
    pub pick: fn(&Samples) -> &Vec<f64>,
}

/// Labels the chart finds its rows by.
const TCP1_PER_CPU: &str = "TCP 1 stream, Gbit per CPU-second";
const CONN_RATE: &str = "TCP connections/s (16 B each way)";

pub const METRICS: &[Metric] = &[
    Metric {
        label: "TCP 1 stream, Gbit/s",
        higher_is_better: true,
        target: Some(1.0),
        pick: |s| &s.tcp1_gbps,
    },
    Metric {
        label: "TCP 4 streams, Gbit/s",
        higher_is_better: true,
        target: None,
        pick: |s| &s.tcp4_gbps,
    },
    Metric {
        label: TCP1_PER_CPU,
        higher_is_better: true,
        target: None,
        pick: |s| &s.tcp1_gbit_per_cpu_s,
    },
    Metric {
        label: "TCP 4 streams, Gbit per CPU-second",
        higher_is_better: true,
        target: None,
        pick: |s| &s.tcp4_gbit_per_cpu_s,
    },
    Metric {
        label: "64B UDP offered, kpps",
        higher_is_better: true,
        target: None,
        pick: |s| &s.udp_offered_kpps,
    },
    Metric {
        label: "64B UDP received, kpps",
        higher_is_better: true,
        target: Some(1.0),
        pick: |s| &s.udp_received_kpps,
    },
    Metric {
        label: "64B UDP loss at full load, %",
        higher_is_better: false,
        target: None,
        pick: |s| &s.udp_loss_pct,
    },
    Metric {
        label: "zero-loss rate, kpps",
        higher_is_better: true,
        target: Some(0.5),
        pick: |s| &s.zero_loss_kpps,
    },
    Metric {
        label: "latency p50, µs",
        higher_is_better: false,
        target: Some(2.0),
        pick: |s| &s.lat_p50_us,
    },
    Metric {
        label: "latency p99, µs",
        higher_is_better: false,
        target: None,
        pick: |s| &s.lat_p99_us,
    },
    Metric {
        label: "latency p99.9, µs",
        higher_is_better: false,
        target: None,
        pick: |s| &s.lat_p999_us,
    },
    Metric {
        label: "latency max, µs",
        higher_is_better: false,
        target: None,
        pick: |s| &s.lat_max_us,
    },
    Metric {
        label: CONN_RATE,
        higher_is_better: true,
        target: None,
        pick: |s| &s.conn_per_s,
    },
    Metric {
        label: "TCP connections failed, per run",
        higher_is_better: false,
        target: None,
        pick: |s| &s.conn_failed,
    },
    Metric {
        label: "switch CPU in TCP 1 stream, s",
        higher_is_better: false,
        target: None,
        pick: |s| &s.switch_cpu_tcp1_s,
    },
    Metric {
        label: "switch CPU in 64B full load, s",
        higher_is_better: false,
        target: None,
        pick: |s| &s.switch_cpu_udp_s,
    },
    Metric {
        label: "all cores busy in TCP 1 stream, %",
        higher_is_better: false,
        target: None,
        pick: |s| &s.machine_busy_tcp1_pct,
    },
];

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The median of `m` on `ours` over that on `base`, for a scenario (None when either
/// was not measured).
pub fn ratio_of(s: &ScenarioResult, m: &Metric, ours: SystemKind, base: SystemKind) -> Option<f64> {
    let get = |k: SystemKind| {
        s.systems
            .iter()
            .find(|r| r.system == k && r.skipped.is_none())
            .map(|r| median((m.pick)(&r.samples)))
    };
    let (ours, theirs) = (get(ours)?, get(base)?);
    (ours.is_finite() && theirs.is_finite() && theirs != 0.0).then(|| ours / theirs)
}

/// switchyard's median over the kernel's, for a metric of a scenario.
pub fn ratio(s: &ScenarioResult, m: &Metric) -> Option<f64> {
    ratio_of(s, m, SystemKind::Switchyard, SystemKind::Kernel)
}

/// Whether `q` (ours / theirs) is at least as good as `target`.
fn meets(m: &Metric, q: f64, target: f64) -> bool {
    if m.higher_is_better {
        q >= target
    } else {
        q <= target
    }
}

/// The ratio columns of a scenario: each switchyard variant over the kernel, and over
/// Open vSwitch with TSO (which the project means to be ahead of on every metric).
/// A switchyard system's name in the ratio columns.
fn short_name(k: SystemKind) -> &'static str {
    match k {
        SystemKind::SwitchyardBusyPoll => "sy-bp",
        SystemKind::SwitchyardCpu => "sy-cpu",
        _ => "sy",
    }
}

fn ratio_columns(s: &ScenarioResult) -> Vec<(String, SystemKind, SystemKind)> {
    let measured = |k: SystemKind| {
        s.systems
            .iter()
            .any(|r| r.system == k && r.skipped.is_none())
    };
    let mut cols = Vec::new();
    for base in [SystemKind::Kernel, SystemKind::OvsTso] {
        for ours in [
            SystemKind::Switchyard,
            SystemKind::SwitchyardBusyPoll,
            SystemKind::SwitchyardCpu,
        ] {
            if measured(ours) && measured(base) {
                let short = short_name(ours);
                cols.push((format!("{short}/{}", base.name()), ours, base));
            }
        }
    }
    cols
}

/// The terminal table of a run.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "switchyard bench, {} on {} ({} CPUs, Linux {}); TCP by {}",
        r.date, r.machine.model, r.machine.cpus, r.machine.kernel, r.tcp_tool
    );
    let _ = writeln!(
        out,
        "medians of {} repeat(s); sy = switchyard (TAP I/O: {}), sy-bp = switchyard busy-polling {} µs; a ratio is the first system's median over the second's",
        r.options.repeat, r.options.io, r.options.busy_poll_us
    );
    for s in &r.scenarios {
        let _ = writeln!(out, "\n{} — {}", s.scenario.name(), s.description);
        let measured: Vec<_> = s.systems.iter().filter(|x| x.skipped.is_none()).collect();
        let cols = ratio_columns(s);
        let mut header = format!("  {:<34}", "metric");
        // Each column as wide as its name needs (two spaces between), at least 14.
        let widths: Vec<usize> = measured
            .iter()
            .map(|x| (x.system.name().len() + 2).max(14))
            .collect();
        let ratio_widths: Vec<usize> = cols
            .iter()
            .map(|(name, _, _)| (name.len() + 2).max(15))
            .collect();
        for (x, w) in measured.iter().zip(&widths) {
            let _ = write!(header, "{:>w$}", x.system.name());
        }
        for ((name, _, _), w) in cols.iter().zip(&ratio_widths) {
            let _ = write!(header, "{name:>w$}");
        }
        let _ = write!(header, "  target (vs kernel)");
        let _ = writeln!(out, "{header}");
        for m in METRICS {
            let mut line = format!("  {:<34}", m.label);
            for (x, w) in measured.iter().zip(&widths) {
                let _ = write!(line, "{:>w$}", fmt(median((m.pick)(&x.samples))));
            }
            for ((_, ours, base), w) in cols.iter().zip(&ratio_widths) {
                match ratio_of(s, m, *ours, *base) {
                    Some(q) => {
                        let _ = write!(line, "{:>w$.2}×", q, w = w - 1);
                    }
                    None => {
                        let _ = write!(line, "{:>w$}", "-");
                    }
                }
            }
            if let Some(t) = m.target {
                let verdicts: Vec<String> =
                    [SystemKind::Switchyard, SystemKind::SwitchyardBusyPoll]
                        .into_iter()
                        .filter_map(|k| {
                            ratio_of(s, m, k, SystemKind::Kernel).map(|q| {
                                format!(
                                    "{} {}",
                                    short_name(k),
                                    if meets(m, q, t) { "met" } else { "NOT met" }
                                )
                            })
                        })
                        .collect();
                if !verdicts.is_empty() {
                    let _ = write!(
                        line,
                        "  {}{t:.1}×: {}",
                        if m.higher_is_better { "≥" } else { "≤" },
                        verdicts.join(", ")
                    );
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let mtus: Vec<String> = measured
            .iter()
            .map(|x| {
                let mtu = x.client_mtu.map_or("?".into(), |m| m.to_string());
                format!("{} {mtu}", x.system.name())
            })
            .collect();
        if !mtus.is_empty() {
            let _ = writeln!(out, "  MTU of the client's eth0: {}", mtus.join(", "));
        }
        for x in s.systems.iter().filter(|x| x.skipped.is_some()) {
            let _ = writeln!(
                out,
                "  {}: skipped ({})",
                x.system.name(),
                x.skipped.as_deref().unwrap_or("")
            );
        }
    }
    out
}

const COLORS: [RGBColor; 9] = [
    RGBColor(90, 90, 90),
    RGBColor(0, 114, 178),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(213, 94, 0),
    RGBColor(117, 112, 179),
    RGBColor(166, 118, 29),
];

fn color(k: SystemKind) -> RGBColor {
    COLORS[match k {
        SystemKind::Kernel => 0,
        SystemKind::Switchyard => 1,
        SystemKind::SwitchyardBusyPoll => 2,
        SystemKind::Ovs => 3,
        SystemKind::OvsTso => 4,
        SystemKind::VdeSwitch => 5,
        SystemKind::Pasta => 6,
        SystemKind::Slirp4netns => 7,
        SystemKind::SwitchyardCpu => 8,
    }]
}

/// Draws the run as SVG: for each scenario, the metrics as bars normalised to the
/// kernel (1.0 = the kernel's median), and the latency CDFs.
pub fn svg(r: &Report, path: &std::path::Path) -> Result<(), String> {
    let rows = r.scenarios.len().max(1);
    let root = SVGBackend::new(path, (1800, 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((rows, 2));
    // Metrics whose kernel figure is never zero, so a ratio to it means something
    // (loss at full load is 0 for the kernel), by label, with their short names.
    const BARS: [(&str, &str); 8] = [
        ("TCP 1 stream, Gbit/s", "TCP 1"),
        (TCP1_PER_CPU, "TCP 1 per CPU-s"),
        ("TCP 4 streams, Gbit/s", "TCP 4"),
        ("64B UDP received, kpps", "64B received"),
        ("zero-loss rate, kpps", "zero-loss"),
        ("latency p50, µs", "p50 (lower better)"),
        ("latency p99, µs", "p99 (lower better)"),
        (CONN_RATE, "conn/s"),
    ];
    let metrics: Vec<&Metric> = BARS
        .iter()
        .map(|&(label, _)| {
            METRICS
                .iter()
                .find(|m| m.label == label)
                .expect("every bar is a metric")
        })
        .collect();
    for (i, s) in r.scenarios.iter().enumerate() {
        let measured: Vec<_> = s.systems.iter().filter(|x| x.skipped.is_none()).collect();
        let kernel = measured.iter().find(|x| x.system == SystemKind::Kernel);
        // Bars.
        let area = &panels[2 * i];
        let n = measured.len().max(1) as f64;
        let mut max_ratio: f64 = 1.2;
        let mut bars = Vec::new();
        for (mi, m) in metrics.iter().enumerate() {
            let base = kernel
                .map(|k| median((m.pick)(&k.samples)))
                .filter(|b| b.is_finite() && *b != 0.0);
            for (si, x) in measured.iter().enumerate() {
                let v = median((m.pick)(&x.samples));
                let q = match base {
                    Some(b) if v.is_finite() => v / b,
                    _ => continue,
                };
                max_ratio = max_ratio.max(q);
                let x0 = mi as f64 + 0.1 + 0.8 * si as f64 / n;
                bars.push((x0, x0 + 0.8 / n, q, color(x.system)));
            }
        }
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{}: relative to the kernel (1.0)", s.scenario.name()),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..metrics.len() as f64, 0.0..max_ratio * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            // Key points every half unit; a group's name goes under its middle.
            .x_labels(2 * metrics.len() + 1)
            .x_label_formatter(&|x| {
                let middle = (x - x.floor() - 0.5).abs() < 1e-6;
                match BARS.get(x.floor() as usize) {
                    Some((_, name)) if middle => name.to_string(),
                    _ => String::new(),
                }
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x0, x1, q, c)| Rectangle::new([(x0, 0.0), (x1, q)], c.filled())),
            )
            .map_err(|e| e.to_string())?;
        for x in &measured {
            let c = color(x.system);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(|e| e.to_string())?
                .label(x.system.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;

        // Latency CDF.
        let area = &panels[2 * i + 1];
        let xmax = measured
            .iter()
            .flat_map(|x| x.latency_cdf.iter().map(|p| p.0 as f64 / 1e3))
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{}: request/response latency CDF", s.scenario.name()),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((1.0f64..xmax * 1.2).log_scale(), 0.0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("µs")
            .y_desc("fraction")
            .draw()
            .map_err(|e| e.to_string())?;
        for x in &measured {
            let c = color(x.system);
            chart
                .draw_series(LineSeries::new(
                    x.latency_cdf
                        .iter()
                        .map(|&(ns, q)| ((ns as f64 / 1e3).max(1.0), q)),
                    c.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(x.system.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
