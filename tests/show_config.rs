//! `switchyard show config`: the running topology printed as a config file. The
//! fixtures' topologies survive printing and parsing without root; then, as root, an
//! instance started on a topology with many keys set prints a file that `check`
//! accepts and that builds the topology the instance runs.

use std::path::Path;
use std::process::Output;
use switchyard::topology::config;
use switchyard::topology::{NetworkBuilder, Topology, TopologyBuilder};
use switchyard_os::netns;
use switchyard_testkit::fixtures::*;
use switchyard_testkit::process::{text, Instance};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// `t` printed and parsed again, its `source` set back to `t`'s (the one thing that
/// says where a topology came from rather than what it is).
fn reparsed(t: &Topology, text: &str) -> Topology {
    let mut again = config::parse(text, "printed").unwrap_or_else(|e| panic!("{e}\n{text}"));
    again.source = t.source.clone();
    again
}

fn fixtures(prefix: &str) -> Vec<(&'static str, TopologyBuilder)> {
    vec![
        ("three", three(prefix)),
        ("routed", routed(prefix)),
        ("nat", nat(prefix)),
        (
            "front_and_back",
            front_and_back(
                prefix,
                |f| f.conntrack_max(100).port_security().rp_filter(false),
                |b| b.fdb_max(10).neighbor_max(5).held_max(3).offloads(false),
            ),
        ),
    ]
}

#[test]
fn every_fixture_survives_a_round_trip() {
    for (name, b) in fixtures("rt-") {
        let t = build(b);
        let printed = t.to_toml();
        assert_eq!(reparsed(&t, &printed), t, "{name}:\n{printed}");
    }
}

/// The routed fixture (container: and none endpoints, an L3 network, a route, an
/// allow) with `[switch]` keys and per-network shares set away from their defaults.
fn rich(prefix: &str) -> TopologyBuilder {
    routed(prefix)
        .switch(|s| {
            s.workers = 2;
            s.fdb_max = 4096;
            s.arp_retries = 4;
            s.conntrack_udp_secs = Some(45);
            s.nat_port_range = "30000-40000".into();
        })
        .network(
            NetworkBuilder::new("extra", "10.6.0.0/24")
                .gateway("10.6.0.1")
                .proxy_arp()
                .port_security()
                .fdb_max(64)
                .mtu(9000),
        )
}

/// Removes the namespaces of a topology, whatever happens to the test.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = netns::delete(n);
        }
    }
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8(o.stdout).expect("UTF-8")
}

#[test]
fn show_config_prints_the_running_topology_as_a_file_up_accepts() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(Path::new(BIN), "show-config");
    let builder = rich(&inst.prefix);
    let running = build(builder.clone().source(inst.config.display().to_string()));
    std::fs::write(&inst.config, builder.to_toml().unwrap()).unwrap();
    let _cleanup = Namespaces(running.endpoints.iter().map(|e| e.netns.clone()).collect());
    let mut up = inst.up(&[]);

    let shown = ok(
        inst.cmd()
            .args(["show", "config", "--prefix", &inst.prefix])
            .output()
            .unwrap(),
        "show config",
    );
    // What the instance runs, not the file: that one leaves most keys out.
    assert_eq!(reparsed(&running, &shown), running, "{shown}");
    assert!(shown.contains("workers = 2"), "{shown}");
    assert!(shown.contains("mode = \"container:web\""), "{shown}");

    // `check` takes the printed file, and `show --config` finds the instance by the
    // prefix in it and prints the same text.
    let file = inst.dir.join("shown.toml");
    std::fs::write(&file, &shown).unwrap();
    let checked = ok(
        inst.cmd().arg("check").arg(&file).output().unwrap(),
        "check",
    );
    assert!(checked.contains(": ok ("), "{checked}");
    let again = ok(
        inst.cmd()
            .args(["show", "config", "--config"])
            .arg(&file)
            .output()
            .unwrap(),
        "show config --config",
    );
    assert_eq!(again, shown);

    // --json: the same file as JSON.
    let json: serde_json::Value = serde_json::from_str(&ok(
        inst.cmd()
            .args(["show", "config", "--json", "--socket"])
            .arg(inst.socket())
            .output()
            .unwrap(),
        "show config --json",
    ))
    .unwrap();
    assert_eq!(json["switch"]["prefix"], inst.prefix.as_str());
    assert_eq!(json["switch"]["workers"], 2);
    assert_eq!(
        json["network"].as_array().map(Vec::len),
        Some(running.networks.len())
    );
    assert_eq!(
        json["endpoint"].as_array().map(Vec::len),
        Some(running.endpoints.len())
    );
    let from_json: config::ConfigFile = serde_json::from_value(json).unwrap();
    let mut t = config::validate(&from_json, "json").unwrap();
    t.source = running.source.clone();
    assert_eq!(t, running);

    let o = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(o.status.success(), "{}", text(&o));
}
