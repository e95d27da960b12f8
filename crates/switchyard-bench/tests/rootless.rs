//! The connection-rate generator against a real server, and pasta and slirp4netns as
//! systems of `switchyard bench`: a short nat-out run measures every metric on them
//! (when installed) and leaves no namespace and no child process behind; a missing
//! program and a scenario they do not run are reported as skipped, with why. Needs
//! root.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_bench::connrate::{self, ConnServer};
use switchyard_bench::kernel::{have, KernelBridge, KernelNet, KernelSpec};
use switchyard_bench::systems::{Scenario, SystemKind};
use switchyard_bench::{self as bench, report, BenchError, Options};
use switchyard_testkit::fixtures::{namespaces_with, require_root, unique_prefix};

const A: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
const PORT: u16 = 5301;

/// Two namespaces, a and b, on one Linux bridge.
fn two_on_a_bridge() -> KernelNet {
    KernelNet::build(&KernelSpec {
        prefix: unique_prefix(),
        mtu: 1500,
        bridges: vec![KernelBridge {
            subnet: "10.10.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 10, 0, 1),
            endpoints: vec![("a".into(), A), ("b".into(), B)],
        }],
        outside: None,
    })
    .expect("the bridge builds")
}

#[test]
fn the_generator_counts_connections_the_server_answered() {
    if !require_root() {
        return;
    }
    let net = two_on_a_bridge();
    let server = ConnServer::start(
        &net.namespace("b"),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT),
        3,
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let r = connrate::conn_rate(
        &net.namespace("a"),
        SocketAddrV4::new(B, PORT),
        2,
        Duration::from_millis(700),
        &stop,
    )
    .unwrap();
    assert!(r.completed > 50, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.first_error, None);
    assert!(r.secs >= 0.7 && r.secs < 3.0, "{r:?}");
    assert!((r.per_sec - r.completed as f64 / r.secs).abs() < 1e-6);
    // Every connection the client completed, the server answered (and none more than
    // the client tried).
    let answered = server.answered();
    assert!(
        answered >= r.completed && answered <= r.completed + r.failed + 2,
        "server answered {answered}, client completed {}",
        r.completed
    );
}

#[test]
fn without_a_server_every_attempt_is_a_failure_with_its_reason() {
    if !require_root() {
        return;
    }
    let net = two_on_a_bridge();
    let stop = AtomicBool::new(false);
    let r = connrate::conn_rate(
        &net.namespace("a"),
        SocketAddrV4::new(B, PORT),
        2,
        Duration::from_millis(300),
        &stop,
    )
    .unwrap();
    assert_eq!(r.completed, 0);
    assert!(r.failed > 0);
    assert_eq!(r.per_sec, 0.0);
    let why = r.first_error.unwrap_or_default();
    assert!(why.contains("refused"), "{why}");
}

/// Processes whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(text) {
                found.push(cmd);
            }
        }
    }
    found
}

fn rootless_quick() -> Options {
    Options {
        scenarios: vec![Scenario::NatOut],
        systems: vec![SystemKind::Pasta, SystemKind::Slirp4netns],
        search_steps: 2,
        latency_count: 300,
        conn_secs: 0.5,
        ..Options::quick()
    }
}

/// The prefix of everything `bench::run` builds in this process.
fn our_prefix() -> String {
    format!("b{}s", std::process::id())
}

/// Both tests below run `bench::run` in this process, whose namespaces share a prefix.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn nat_out_on_pasta_and_slirp4netns_measures_every_metric() {
    if !require_root() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let installed: Vec<SystemKind> = [SystemKind::Pasta, SystemKind::Slirp4netns]
        .into_iter()
        .filter(|k| have(k.name()))
        .collect();
    if installed.is_empty() {
        eprintln!("skipped: neither pasta nor slirp4netns is installed");
        return;
    }
    let opts = Options {
        systems: installed.clone(),
        ..rootless_quick()
    };
    let stop = AtomicBool::new(false);
    let report = bench::run(&opts, "test", &stop, |_| {}).expect("the run completes");
    assert!(namespaces_with(&our_prefix()).is_empty(), "all removed");
    assert!(
        processes_mentioning(&format!("/run/netns/{}", our_prefix())).is_empty(),
        "every child ended"
    );
    let nat = &report.scenarios[0];
    for k in installed {
        let r = nat.systems.iter().find(|r| r.system == k).unwrap();
        assert_eq!(r.skipped, None, "{k:?} ran");
        assert_eq!(r.client_mtu, Some(1500), "{k:?} runs at the others' MTU");
        let s = &r.samples;
        for (what, v) in [
            ("TCP 1 stream", &s.tcp1_gbps),
            ("TCP 4 streams", &s.tcp4_gbps),
            ("TCP 1 per CPU-second", &s.tcp1_gbit_per_cpu_s),
            ("TCP 4 per CPU-second", &s.tcp4_gbit_per_cpu_s),
            ("machine CPU in TCP 1", &s.machine_cpu_tcp1_s),
            ("64B received", &s.udp_received_kpps),
            ("latency p50", &s.lat_p50_us),
            ("connections/s", &s.conn_per_s),
            ("its own CPU in TCP 1", &s.switch_cpu_tcp1_s),
        ] {
            assert!(
                v.len() == 1 && v[0] > 0.0 && v[0].is_finite(),
                "{k:?} {what}: {v:?}"
            );
        }
        assert_eq!(s.conn_runs.len(), 1);
        assert!(s.conn_runs[0].completed > 0, "{:?}", s.conn_runs[0]);
    }
    let table = report::table(&report);
    for want in [
        "Gbit per CPU-second",
        "TCP connections/s",
        "MTU of the client's eth0:",
    ] {
        assert!(table.contains(want), "{want} missing:\n{table}");
    }
    let json = serde_json::to_value(&report).unwrap();
    let sys = &json["scenarios"][0]["systems"][0];
    assert_eq!(sys["client_mtu"], 1500);
    assert!(sys["samples"]["conn_per_s"][0].as_f64().unwrap() > 0.0);
    assert!(sys["samples"]["tcp1_gbit_per_cpu_s"][0].as_f64().unwrap() > 0.0);
}

#[test]
fn a_stopped_run_ends_the_rootless_children() {
    if !require_root() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !have("pasta") && !have("slirp4netns") {
        eprintln!("skipped: neither pasta nor slirp4netns is installed");
        return;
    }
    let opts = rootless_quick();
    let stop = AtomicBool::new(false);
    let mut children_seen = 0;
    let result = bench::run(&opts, "test", &stop, |_| {
        // Called once both are deployed: they are running now. Stop as Ctrl-C does.
        if children_seen == 0 {
            children_seen = processes_mentioning(&format!("/run/netns/{}", our_prefix())).len();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(matches!(result, Err(BenchError::Interrupted)));
    assert!(children_seen > 0, "the children ran");
    assert!(
        processes_mentioning(&format!("/run/netns/{}", our_prefix())).is_empty(),
        "every child ended"
    );
    assert!(namespaces_with(&our_prefix()).is_empty());
}

#[test]
fn a_missing_program_and_another_scenario_are_skipped_with_the_reason() {
    if !require_root() {
        return;
    }
    let json =
        std::env::temp_dir().join(format!("switchyard-bench-skip-{}.json", std::process::id()));
    // Nothing on the PATH: neither program can be found.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard-bench"))
        .args([
            "--quick",
            "--no-progress",
            "--scenarios",
            "l2,nat-out",
            "--systems",
            "pasta,slirp4netns",
            "--json",
        ])
        .arg(&json)
        .env("PATH", "/nonexistent")
        .env(
            "SWITCHYARD_RUN_DIR",
            std::env::temp_dir().join("switchyard-bench-skip"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    for (i, scenario) in ["l2", "nat-out"].iter().enumerate() {
        let s = &v["scenarios"][i];
        assert_eq!(s["scenario"], *scenario);
        for (j, program) in ["pasta", "slirp4netns"].iter().enumerate() {
            let r = &s["systems"][j];
            assert_eq!(r["system"], *program);
            let why = r["skipped"].as_str().unwrap_or_default();
            let want = if *scenario == "l2" {
                "nat-out only".to_string()
            } else {
                format!("not installed ({program} not found)")
            };
            assert!(why.contains(&want), "{scenario} {program}: {why}");
            assert!(
                r["samples"]["tcp1_gbps"].as_array().unwrap().is_empty(),
                "nothing faked"
            );
        }
    }
    assert!(
        stdout.contains("pasta: skipped (not installed (pasta not found))"),
        "{stdout}"
    );
}
