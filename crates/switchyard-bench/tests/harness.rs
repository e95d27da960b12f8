//! `switchyard bench`: a short run of the l2 scenario measures every metric on the
//! kernel bridge and on switchyard and removes everything it built; an interrupted
//! run (a stop flag, or SIGINT to the binary) removes everything too; bad options are
//! refused before anything is built. Needs root.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_bench::{self as bench, report, systems::SystemKind, BenchError, Options};
use switchyard_testkit::fixtures::{namespaces_with, wait_until};

/// The `switchyard` binary, which runs the harness as `switchyard bench`. It is built
/// with the workspace's tests (`cargo test` at the top), next to the harness binary.
fn switchyard() -> std::path::PathBuf {
    let p =
        std::path::Path::new(env!("CARGO_BIN_EXE_switchyard-bench")).with_file_name("switchyard");
    assert!(
        p.is_file(),
        "{} is missing: run the tests from the top of the workspace (cargo test)",
        p.display()
    );
    p
}

/// Runs in one process share a namespace prefix ("b<pid>..."), so they take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn our_prefix(pid: u32) -> String {
    format!("b{pid}s")
}

#[test]
fn quick_run_measures_every_metric_and_cleans_up() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = Options::quick();
    let stop = AtomicBool::new(false);
    let mut steps = Vec::new();
    let mut saw_namespaces = false;
    let report = bench::run(&opts, "test", &stop, |what| {
        steps.push(what.to_string());
        saw_namespaces |= !namespaces_with(&our_prefix(std::process::id())).is_empty();
    })
    .expect("the quick run completes");
    assert!(saw_namespaces, "the run built its namespaces");
    assert_eq!(steps.len() as u64, bench::total_steps(&opts));
    assert!(
        namespaces_with(&our_prefix(std::process::id())).is_empty(),
        "every namespace the run made is gone"
    );

    assert_eq!(report.scenarios.len(), 1);
    let l2 = &report.scenarios[0];
    for system in [SystemKind::Kernel, SystemKind::Switchyard] {
        let r = l2
            .systems
            .iter()
            .find(|r| r.system == system)
            .expect("system measured");
        assert_eq!(r.skipped, None, "{system:?} ran");
        let s = &r.samples;
        assert!(
            s.tcp1_gbps[0] > 0.1,
            "{system:?} TCP 1 stream: {:?}",
            s.tcp1_gbps
        );
        assert!(
            s.tcp4_gbps[0] > 0.1,
            "{system:?} TCP 4 streams: {:?}",
            s.tcp4_gbps
        );
        assert!(s.udp_offered_kpps[0] > 1.0);
        assert!(s.udp_received_kpps[0] > 1.0, "{system:?} received nothing");
        assert!(s.udp_received_kpps[0] <= s.udp_offered_kpps[0] * 1.01);
        assert!((0.0..=100.0).contains(&s.udp_loss_pct[0]));
        assert!(s.zero_loss_kpps[0] > 0.0, "{system:?} zero-loss rate");
        assert!(s.lat_p50_us[0] > 0.0 && s.lat_p50_us[0] <= s.lat_p99_us[0]);
        assert!(s.lat_p99_us[0] <= s.lat_p999_us[0] && s.lat_p999_us[0] <= s.lat_max_us[0]);
        assert!(
            s.tcp1_gbit_per_cpu_s[0] > 0.0 && s.tcp4_gbit_per_cpu_s[0] > 0.0,
            "{system:?} Gbit per CPU-second: {:?} {:?}",
            s.tcp1_gbit_per_cpu_s,
            s.tcp4_gbit_per_cpu_s
        );
        assert!(s.machine_cpu_tcp1_s[0] > 0.0);
        assert!(
            s.conn_per_s[0] > 10.0,
            "{system:?} connections/s: {:?}",
            s.conn_runs
        );
        assert_eq!(s.conn_runs[0].failed, 0, "{system:?}: {:?}", s.conn_runs);
        assert_eq!(r.client_mtu, Some(1500), "{system:?} client MTU");
        assert!(!r.latency_cdf.is_empty());
        assert!(
            (r.latency_cdf.last().unwrap().1 - 1.0).abs() < 1e-9,
            "the CDF ends at 1"
        );
    }
    // Only the switch that is a process has CPU time of its own to report.
    let sy = l2
        .systems
        .iter()
        .find(|r| r.system == SystemKind::Switchyard)
        .unwrap();
    assert!(
        sy.samples.switch_cpu_tcp1_s[0] > 0.0,
        "switchyard's workers used CPU"
    );
    let k = l2
        .systems
        .iter()
        .find(|r| r.system == SystemKind::Kernel)
        .unwrap();
    assert!(k.samples.switch_cpu_tcp1_s.is_empty());

    let table = report::table(&report);
    assert!(
        table.contains("TCP 1 stream") && table.contains("sy/kernel"),
        "{table}"
    );
    assert!(
        table.contains("TCP 1 stream, Gbit per CPU-second")
            && table.contains("TCP connections/s")
            && table.contains("MTU of the client's eth0: kernel 1500, switchyard 1500"),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenarios"][0]["scenario"], "l2");
    assert_eq!(json["scenarios"][0]["systems"][1]["system"], "switchyard");
    let svg =
        std::env::temp_dir().join(format!("switchyard-bench-test-{}.svg", std::process::id()));
    report::svg(&report, &svg).expect("the chart draws");
    let text = std::fs::read_to_string(&svg).unwrap();
    std::fs::remove_file(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("switchyard") && text.contains("latency CDF"));
    assert!(text.contains("conn/s") && text.contains("TCP 1 per CPU-s"));
}

#[test]
fn a_stopped_run_removes_what_it_built() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let opts = Options::quick();
    let stop = AtomicBool::new(false);
    let mut n = 0;
    let result = bench::run(&opts, "test", &stop, |_| {
        n += 1;
        if n == 2 {
            // As the signal handler does: the current measurement ends the run.
            stop.store(true, Ordering::Relaxed);
        }
    });
    assert!(
        matches!(result, Err(BenchError::Interrupted)),
        "{:?}",
        result.err()
    );
    assert!(namespaces_with(&our_prefix(std::process::id())).is_empty());
}

#[test]
fn sigint_to_the_binary_ends_the_run_cleanly() {
    let child = Command::new(switchyard())
        .args(["bench", "--quick", "--no-progress"])
        .env(
            "SWITCHYARD_RUN_DIR",
            std::env::temp_dir().join("switchyard-bench-sigint"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = our_prefix(child.id());
    // The interrupt comes once the scenario is built on both systems (the kernel,
    // "y0", then switchyard, "y1"), when the run has everything to remove and the
    // measuring begins.
    wait_until(
        Duration::from_secs(20),
        "the run to build the scenario on both systems",
        || {
            let made = namespaces_with(&prefix);
            ["y0-", "y1-"]
                .iter()
                .all(|y| made.iter().any(|n| n.contains(y)))
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        namespaces_with(&prefix).is_empty(),
        "left behind: {:?}",
        namespaces_with(&prefix)
    );
}

#[test]
fn bad_options_are_refused_before_anything_is_built() {
    for (args, message) in [
        (
            &["--scenarios", "l3"][..],
            "invalid value 'l3' for '--scenarios",
        ),
        (
            &["--systems", "kernel,docker"][..],
            "invalid value 'docker' for '--systems",
        ),
        (&["--repeat", "0"][..], "0 is not in 1..=1000"),
        (&["--busy-poll-us", "0"][..], "0 is not in 1..=1000000"),
        (
            &["--json", "/nonexistent-dir/x.json"][..],
            "/nonexistent-dir: no such directory",
        ),
    ] {
        let t0 = Instant::now();
        let out = Command::new(switchyard())
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{args:?} was refused only after measuring"
        );
    }
}
