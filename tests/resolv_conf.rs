//! The resolv.conf of endpoint namespaces, on real namespaces and the real
//! `/etc/netns`: written at setup for namespaces on DNS networks (and seen by
//! `ip netns exec` as /etc/resolv.conf), removed at teardown, by `down` after a
//! crash and with the endpoint at run time, rewritten on connect and disconnect; a
//! symlink planted at its path is refused, never followed. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard::topology::resolv::ETC_NETNS;
use switchyard::topology::{setup, Deployment, EndpointBuilder, NetworkBuilder, Topology};
use switchyard_os::netns;
use switchyard_testkit::process::{text, Instance};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// `/etc/netns/<ns>`.
fn dir(ns: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(ns)
}

/// What processes in namespace `ns` read as /etc/resolv.conf, as `ip netns exec`
/// shows them.
fn resolv_conf(ns: &str) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/etc/resolv.conf"])
        .output()
        .expect("ip runs");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Namespaces and `/etc/netns` entries of a test: removed when it ends, however it
/// ends (the directories only under the test's own prefix).
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for n in &self.0 {
            if netns::exists(n) {
                let _ = netns::delete(n);
            }
            let d = dir(n);
            if std::fs::symlink_metadata(&d).is_ok() {
                let _ = std::fs::remove_dir_all(&d);
            }
        }
    }
}

/// `app` serves DNS (domain app.internal), `default` does not: `a` is on app, `b` on
/// default, `m` on both (default as eth0), `s` shares a's namespace.
fn topo(prefix: &str) -> Topology {
    build(
        Topology::builder()
            .prefix(prefix)
            .network(NetworkBuilder::new("default", "172.17.0.0/16").gateway("172.17.0.1"))
            .network(
                NetworkBuilder::new("app", "10.61.0.0/24")
                    .gateway("10.61.0.1")
                    .dns_domain("App.Internal"),
            )
            .endpoint(EndpointBuilder::new("a").on("app").alias("web"))
            .endpoint(EndpointBuilder::new("b").on("default"))
            .endpoint(EndpointBuilder::new("m").on("default").on("app"))
            .endpoint(EndpointBuilder::new("s").container("a")),
    )
}

#[test]
fn setup_writes_it_where_ip_netns_exec_finds_it_and_teardown_removes_it() {
    if !require_root() {
        return;
    }
    let t = topo(&unique_prefix());
    let names = namespaces(&t);
    let _left = Leftovers(names.clone());
    let ns = |e: &str| format!("{}{e}", t.prefix);
    let dep = Deployment::create(&t, &run_root()).expect("setup");
    let a = resolv_conf(&ns("a"));
    assert!(a.contains("nameserver 10.61.0.1\n"), "{a}");
    assert!(a.contains("search app.internal\n"), "{a}");
    assert!(a.contains("options ndots:0\n"), "{a}");
    // eth0 on a network without DNS: the gateway of its other network is named.
    let m = resolv_conf(&ns("m"));
    assert!(
        m.contains("nameserver 10.61.0.1\n") && !m.contains("172.17.0.1"),
        "{m}"
    );
    // A second name for a's namespace gets a's file under its own name.
    assert!(resolv_conf(&ns("s")).contains("nameserver 10.61.0.1\n"));
    // No DNS network: nothing written, and the host's file is what it sees.
    assert!(!dir(&ns("b")).exists());
    assert_eq!(dep.state().resolv.len(), 3, "{:?}", dep.state().resolv);
    let mode = std::fs::metadata(dir(&ns("a")).join("resolv.conf"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o644
    );

    dep.teardown().expect("teardown");
    assert_gone(&names);
    for e in ["a", "m", "s"] {
        assert!(!dir(&ns(e)).exists(), "/etc/netns/{} is left", ns(e));
    }
}

#[test]
fn a_symlink_at_its_path_is_refused_and_setup_rolled_back() {
    if !require_root() {
        return;
    }
    let t = topo(&unique_prefix());
    let names = namespaces(&t);
    let _left = Leftovers(names.clone());
    let a = format!("{}a", t.prefix);
    // Someone prepared /etc/netns/<ns>/resolv.conf pointing at a file of theirs.
    let target = std::env::temp_dir().join(format!("switchyard-resolv-target-{}", t.prefix));
    std::fs::write(&target, "precious\n").unwrap();
    std::fs::create_dir_all(dir(&a)).unwrap();
    std::os::unix::fs::symlink(&target, dir(&a).join("resolv.conf")).unwrap();
    let err = match Deployment::create(&t, &run_root()) {
        Ok(_) => panic!("setup should refuse the symlink"),
        Err(e) => e.to_string(),
    };
    let written = std::fs::read_to_string(&target).unwrap();
    let _ = std::fs::remove_file(&target);
    assert!(
        err.contains("resolv.conf") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(written, "precious\n", "the symlink was followed");
    assert_gone(&names);
    // The symlink and the directory were someone else's: still there.
    assert!(std::fs::symlink_metadata(dir(&a).join("resolv.conf"))
        .unwrap()
        .file_type()
        .is_symlink());
    // What was written before the refusal (m's, s's) went with the rollback.
    for e in ["m", "s"] {
        let d = dir(&format!("{}{e}", t.prefix));
        assert!(!d.exists(), "{} is left", d.display());
    }
    assert!(!run_root().join(&t.prefix).join("state.json").exists());
}

#[test]
fn down_after_a_crash_removes_them() {
    if !require_root() {
        return;
    }
    let t = topo(&unique_prefix());
    let names = namespaces(&t);
    let _left = Leftovers(names.clone());
    let mut dep = Deployment::create(&t, &run_root()).expect("setup");
    // A crash: nothing of the instance runs its teardown (the TAPs are closed so
    // the namespaces can go).
    drop(dep.take_ports());
    std::mem::forget(dep);
    assert!(dir(&format!("{}a", t.prefix)).join("resolv.conf").exists());
    setup::down(&t.prefix, &run_root()).expect("down");
    assert_gone(&names);
    for e in ["a", "m", "s"] {
        let d = dir(&format!("{}{e}", t.prefix));
        assert!(!d.exists(), "{} is left", d.display());
    }
}

/// `switchyard ARGS` against `inst`, which must succeed; its standard output.
fn ok(inst: &Instance, args: &[&str]) -> String {
    let o = inst
        .cmd()
        .args(args)
        .args(["--prefix", &inst.prefix])
        .output()
        .unwrap();
    assert!(o.status.success(), "switchyard {args:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn runtime_changes_write_rewrite_and_remove_it() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "resolv");
    let mut all = inst.namespaces();
    all.extend([inst.netns("g1"), inst.netns("k1")]);
    let _left = Leftovers(all);
    let mut up = inst.up(&[]);
    let (a, g1) = (inst.netns("a"), inst.netns("g1"));
    // The fixture's network is `default`: no DNS, no file.
    assert!(!dir(&a).exists());
    ok(
        &inst,
        &[
            "network",
            "create",
            "green",
            "--subnet",
            "10.62.0.0/24",
            "--dns-domain",
            "green.internal",
        ],
    );
    ok(
        &inst,
        &[
            "endpoint",
            "create",
            "g1",
            "--network",
            "green",
            "--alias",
            "Db",
        ],
    );
    let g = resolv_conf(&g1);
    assert!(
        g.contains("nameserver 10.62.0.1\n") && g.contains("search green.internal\n"),
        "{g}"
    );
    let shown = ok(&inst, &["endpoint", "ls"]);
    assert!(shown.contains("db"), "{shown}");

    // a, connected to green, gets one; disconnected, loses it.
    ok(&inst, &["network", "connect", "green", "a"]);
    assert!(resolv_conf(&a).contains("nameserver 10.62.0.1\n"));
    ok(&inst, &["network", "disconnect", "green", "a"]);
    assert!(!dir(&a).exists(), "a's file goes with its last DNS network");

    ok(&inst, &["endpoint", "rm", "g1"]);
    assert!(!dir(&g1).exists(), "endpoint rm removes it");

    // After SIGKILL, `down` removes what runtime changes wrote.
    ok(&inst, &["endpoint", "create", "k1", "--network", "green"]);
    assert!(dir(&inst.netns("k1")).join("resolv.conf").exists());
    let out = up.signal(Signal::SIGKILL);
    assert!(!out.status.success());
    let o = inst
        .cmd()
        .args(["down", "--prefix", &inst.prefix])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir(&inst.netns("k1")).exists());
}
