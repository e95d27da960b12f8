//! How an instance lives and ends: SIGHUP, a worker that dies, a namespace or TAP
//! removed from under it, and `down` after its owner became a zombie. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use nix::sys::signal::Signal;
use std::net::Ipv4Addr;
use std::time::Duration;
use switchyard::control::client;
use switchyard::control::protocol::{PortRow, Reply, Request, Table};
use switchyard::topology::setup::{self, process_start_time, RecordedNs, State, STATE_VERSION};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::process::{text, Instance};
use switchyard_testkit::traffic::ping;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

const A: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

fn ports(socket: &std::path::Path) -> Vec<PortRow> {
    match client::request(
        socket,
        &Request::Show {
            table: Table::Ports,
        },
    )
    .unwrap()
    {
        Reply::Ports(rows) => rows,
        r => panic!("not ports: {r:?}"),
    }
}

fn state_of(rows: &[PortRow], port: &str) -> String {
    rows.iter()
        .find(|r| r.port == port)
        .unwrap_or_else(|| panic!("no port {port}"))
        .state
        .clone()
}

#[test]
fn sighup_tears_down_like_sigterm() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "hup");
    let mut up = inst.up(&[]);
    ping(&inst.netns("a"), B, Duration::from_secs(2)).expect("switching");
    let (out, took) = up
        .signal_within(Signal::SIGHUP, Duration::from_secs(10))
        .expect("up exits on SIGHUP");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removed 3 namespace(s)"),
        "{}",
        text(&out)
    );
    assert_gone(&inst.namespaces());
    assert!(!inst.socket().exists());
    assert!(!inst.run_dir().join(&inst.prefix).exists());
    eprintln!("SIGHUP to exit: {took:?}");
}

#[test]
fn a_removed_namespace_marks_its_port_down_and_the_rest_keeps_switching() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "nsgone");
    let mut up = inst.up(&[]);
    let (a, b, c) = (inst.netns("a"), inst.netns("b"), inst.netns("c"));
    ping(&a, B, Duration::from_secs(2)).expect("a reaches b");
    ping(&c, A, Duration::from_secs(2)).expect("c reaches a");
    assert!(ports(&inst.socket()).iter().all(|r| r.state == "up"));

    // Another tool removes c's namespace.
    assert!(netns::delete(&c).unwrap());
    let rows = wait_for(Duration::from_secs(5), "port c to go down", || {
        let rows = ports(&inst.socket());
        (state_of(&rows, "c") == "down").then_some(rows)
    });
    let c_row = rows.iter().find(|r| r.port == "c").unwrap();
    assert!(
        c_row
            .down_reason
            .as_deref()
            .is_some_and(|r| r.contains(&c) && r.contains("removed")),
        "{c_row:?}"
    );
    assert_eq!(state_of(&rows, "a"), "up");
    assert_eq!(state_of(&rows, "b"), "up");
    // a and b still talk, both ways, and the switch still answers for itself.
    for _ in 0..3 {
        ping(&a, B, Duration::from_secs(2)).expect("a still reaches b");
        ping(&b, A, Duration::from_secs(2)).expect("b still reaches a");
    }
    ping(&a, Ipv4Addr::new(172, 17, 0, 1), Duration::from_secs(2)).expect("gateway");

    let out = up
        .signal_within(Signal::SIGTERM, Duration::from_secs(10))
        .expect("up exits")
        .0;
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains(c.as_str())).count(),
        1,
        "logged once: {stderr}"
    );
    assert!(
        stderr.contains("was removed from under switchyard"),
        "{stderr}"
    );
    assert_gone(&inst.namespaces());
}

#[test]
fn a_deleted_tap_marks_its_port_down_and_the_rest_keeps_switching() {
    if !require_root() {
        return;
    }
    let sy = start(build(three(&unique_prefix())));
    let (a, b, c) = (ns(&sy, "a"), ns(&sy, "b"), ns(&sy, "c"));
    ping(&c, A, Duration::from_secs(2)).expect("c reaches a");
    // Delete c's eth0 (the TAP) inside its namespace, as `ip link del eth0` would.
    netns::run_in_named(&c, || {
        let mut rtnl = Rtnl::new().unwrap();
        let idx = rtnl.link_index("eth0").unwrap();
        rtnl.link_del(idx).unwrap();
    })
    .unwrap();
    wait_until(Duration::from_secs(5), "port c to go down", || {
        let rows: Vec<PortRow> = show(&sy, Table::Ports);
        state_of(&rows, "c") == "down"
    });
    let rows: Vec<PortRow> = show(&sy, Table::Ports);
    assert_eq!(state_of(&rows, "a"), "up");
    assert_eq!(state_of(&rows, "b"), "up");
    // Flooded frames (ARP for a new address) no longer go to c, and a and b talk on.
    for _ in 0..3 {
        ping(&a, B, Duration::from_secs(2)).expect("a still reaches b");
        ping(&b, A, Duration::from_secs(2)).expect("b still reaches a");
    }
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn up_exits_non_zero_after_a_worker_panic() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(BIN.as_ref(), "panic");
    let mut up = inst.up(&[(
        switchyard::dataplane::PANIC_AFTER_ENV,
        "5", // batches
    )]);
    // Traffic makes batches; the worker panics on the fifth.
    for _ in 0..20 {
        if ping(&inst.netns("a"), B, Duration::from_millis(300)).is_err() {
            break;
        }
    }
    let out = up
        .exit_within(Duration::from_secs(10))
        .expect("up exits once its worker died");
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("the dataplane failed"), "{log}");
    assert!(log.contains("removed 3 namespace(s)"), "{log}");
    assert_gone(&inst.namespaces());
}

#[test]
fn down_treats_a_zombie_owner_as_dead() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let root = std::env::temp_dir().join(format!("switchyard-zombie-{prefix}"));
    let inst_dir = root.join(&prefix);
    std::fs::create_dir_all(&inst_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&inst_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A child that exits at once and that this test never waits for: a zombie.
    let mut child = std::process::Command::new(BIN)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until(Duration::from_secs(5), "the child to be a zombie", || {
        setup::process_is_zombie(pid)
    });
    let name = format!("{prefix}z");
    netns::create(&name).unwrap();
    let state = State {
        version: STATE_VERSION,
        prefix: prefix.clone(),
        pid,
        pid_start: process_start_time(pid).expect("a zombie still has its stat"),
        source: "test".into(),
        resolv: Vec::new(),
        namespaces: vec![RecordedNs {
            name: name.clone(),
            identity: netns::identity(&name).unwrap(),
        }],
    };
    std::fs::write(
        inst_dir.join("state.json"),
        serde_json::to_string(&state).unwrap(),
    )
    .unwrap();
    let result = setup::down(&prefix, &root);
    let _ = netns::delete(&name);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(result.expect("down goes ahead"), vec![name]);
}
