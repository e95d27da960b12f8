//! Shared setup for integration tests: unique names per test, root checks, a running
//! switch that is torn down even when the test panics, waiting for a condition
//! instead of sleeping, and the topologies several tests use.
//!
//! A test builds its topology with one of the builder functions below (or its own,
//! if no other test needs it) under a prefix of its own, starts a switch on it and
//! stops it at the end:
//!
//! ```no_run
//! use switchyard_testkit::fixtures::*;
//!
//! let sy = start(build(three(&unique_prefix())));
//! let a = ns(&sy, "a");
//! // ... traffic from namespace `a` ...
//! stop(sy); // and every namespace is gone
//! ```
//!
//! Tests run in parallel threads and in parallel processes, so nothing here is
//! shared between two switches: each has its own prefix, and with it its own
//! namespaces and run directory.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use switchyard::control::protocol::{CountersReport, Table};
use switchyard::control::Switchyard;
use switchyard::topology::config::MAX_PREFIX;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology, TopologyBuilder};
use switchyard_os::netns;

/// Tests need root (namespaces, TAPs). Without it they fail with this message,
/// unless SWITCHYARD_SKIP_ROOT_TESTS=1 explicitly skips them. Returns false to skip.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("SWITCHYARD_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: not root and SWITCHYARD_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!(
        "this test creates network namespaces and TAP devices and must run as root \
         (sudo -E cargo test); set SWITCHYARD_SKIP_ROOT_TESTS=1 to skip it explicitly"
    );
}

/// A namespace prefix no other call makes, in this process or in any other running:
/// `t<pid><n>-`, with `n` the number of the call in letters (a, ..., z, aa, ab, ...).
///
/// The letters cannot be mistaken for digits of the pid, so two processes never
/// meet, and they grow with the count instead of wrapping around. What limits the
/// count is the prefix's length ([`MAX_PREFIX`]): with the longest pids Linux hands
/// out (7 digits) three letters fit, 18278 prefixes a process; beyond that this
/// panics rather than repeat one. CI finds namespaces tests left behind by the
/// shape `t<digits><letters>-` (see `.ci/run`).
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    prefix_for(std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn prefix_for(pid: u32, n: u32) -> String {
    let p = format!("t{pid}{}-", letters(n));
    assert!(
        p.len() <= MAX_PREFIX,
        "call {n} of unique_prefix in process {pid} would make {p:?}, longer than the \
         {MAX_PREFIX} characters a prefix may have"
    );
    p
}

/// `n` in bijective base 26: 0 is "a", 25 "z", 26 "aa", 27 "ab", ... — a different
/// string for every number.
fn letters(mut n: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

/// Where test instances keep sockets and state files.
pub fn run_root() -> PathBuf {
    std::env::temp_dir().join("switchyard-tests")
}

/// Validates a test topology; an invalid one is a mistake in the test.
pub fn build(b: TopologyBuilder) -> Topology {
    b.source("test topology")
        .build()
        .unwrap_or_else(|e| panic!("the test topology is invalid: {e}"))
}

/// Starts a switch; it is stopped and everything removed when the returned value is
/// dropped, including during a panic's unwinding.
pub fn start(topo: Topology) -> Switchyard {
    Switchyard::start(topo, &run_root()).expect("switchyard starts")
}

/// Stops a switch and asserts that every namespace of its topology is gone.
pub fn stop(sy: Switchyard) {
    let names = namespaces(&sy.topology());
    drop(sy);
    assert_gone(&names);
}

/// The namespace of endpoint `endpoint` of a running switch.
pub fn ns(sy: &Switchyard, endpoint: &str) -> String {
    sy.topology()
        .endpoints
        .iter()
        .find(|e| e.name == endpoint)
        .unwrap_or_else(|| panic!("the topology has no endpoint {endpoint:?}"))
        .netns
        .clone()
}

/// Names of the namespaces a topology uses.
pub fn namespaces(t: &Topology) -> Vec<String> {
    t.endpoints.iter().map(|e| e.netns.clone()).collect()
}

/// Asserts that none of `names` exists any more.
pub fn assert_gone(names: &[String]) {
    for n in names {
        assert!(!netns::exists(n), "namespace {n} still exists");
    }
}

/// The named namespaces (as `ip netns list` shows them) whose names start with
/// `prefix`: what a run with that prefix has left behind.
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Waits until `condition` holds, checking every few milliseconds; panics naming
/// `what` if it does not within `timeout`. For ordering a test's steps on what has
/// happened rather than on how long it usually takes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(timeout, what, || condition().then_some(()))
}

/// Like [`wait_until`], for a condition that comes with a value: returns the first
/// `Some` that `poll` gives.
pub fn wait_for<T>(timeout: Duration, what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = poll() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("waited {timeout:?} for {what}, and it never happened");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A table of a running instance, from its control socket, as the CLI's `--json` has it.
pub fn show<T: serde::de::DeserializeOwned>(
    sy: &Switchyard,
    table: switchyard::control::protocol::Table,
) -> T {
    let reply = switchyard::control::client::request(
        sy.socket(),
        &switchyard::control::protocol::Request::Show { table },
    )
    .expect("the control socket answers");
    serde_json::from_value(reply.payload()).expect("the answer has the documented shape")
}

/// `show counters`.
pub fn counters(sy: &Switchyard) -> CountersReport {
    show(sy, Table::Counters)
}

/// How many frames were dropped for reason `id` (`show counters`).
pub fn drops(sy: &Switchyard, id: &str) -> u64 {
    let c = counters(sy);
    c.drops
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no drop reason {id:?} in {:?}", c.drops))
        .count
}

/// How many times event `id` happened (`show counters`).
pub fn events(sy: &Switchyard, id: &str) -> u64 {
    let c = counters(sy);
    c.events
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("no event {id:?} in {:?}", c.events))
        .count
}

/// Asserts that every port accounts for every frame it received: forwarded,
/// consumed, dropped (with a reason) or held waiting for a neighbor.
pub fn assert_accounted(sy: &Switchyard) {
    for p in &counters(sy).ports {
        assert_eq!(
            p.rx_frames,
            p.forwarded + p.consumed + p.dropped + p.held,
            "{p:?}"
        );
    }
}

// ---- topologies several tests share ---------------------------------------------

/// Three endpoints on one network, like three containers on docker0: `default`
/// 172.17.0.0/16 with gateway .1, endpoints `a` .2, `b` .3, `c` .4.
pub fn three(prefix: &str) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .network(NetworkBuilder::new("default", "172.17.0.0/16").gateway("172.17.0.1"))
        .endpoint(EndpointBuilder::new("a").on("default").ip("172.17.0.2"))
        .endpoint(EndpointBuilder::new("b").on("default").ip("172.17.0.3"))
        .endpoint(EndpointBuilder::new("c").on("default").ip("172.17.0.4"))
}

/// Networks joined by switchyard's router, and the ways networks stay apart:
///
/// | network | subnet (gateway .1) | endpoints                   | what for                    |
/// |---------|---------------------|-----------------------------|-----------------------------|
/// | front   | 10.1.0.0/24         | web .2                      | where probes start          |
/// | back    | 10.2.0.0/24, MTU 1280 | db .2, rtr .254           | joined to front; an MTU step |
/// | dmz     | 10.3.0.0/24         | lonely .2                   | joined to nothing           |
/// | flat    | 10.4.0.0/24, L3     | l3a .2, l3b .3              | routed even within itself   |
///
/// A static route sends 10.9.0.0/16 via rtr (10.2.0.254); `side` shares web's
/// namespace (`container:web`) and `quiet` has none but `lo`.
pub fn routed(prefix: &str) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .network(NetworkBuilder::new("front", "10.1.0.0/24").gateway("10.1.0.1"))
        .network(
            NetworkBuilder::new("back", "10.2.0.0/24")
                .gateway("10.2.0.1")
                .mtu(1280),
        )
        .network(NetworkBuilder::new("dmz", "10.3.0.0/24").gateway("10.3.0.1"))
        .network(
            NetworkBuilder::new("flat", "10.4.0.0/24")
                .gateway("10.4.0.1")
                .l3(),
        )
        .allow("front", "back")
        .route("10.9.0.0/16", "10.2.0.254")
        .endpoint(EndpointBuilder::new("web").on("front").ip("10.1.0.2"))
        .endpoint(EndpointBuilder::new("db").on("back").ip("10.2.0.2"))
        .endpoint(EndpointBuilder::new("rtr").on("back").ip("10.2.0.254"))
        .endpoint(EndpointBuilder::new("lonely").on("dmz").ip("10.3.0.2"))
        .endpoint(EndpointBuilder::new("l3a").on("flat").ip("10.4.0.2"))
        .endpoint(EndpointBuilder::new("l3b").on("flat").ip("10.4.0.3"))
        .endpoint(EndpointBuilder::new("side").container("web"))
        .endpoint(EndpointBuilder::new("quiet").none())
}

/// Docker's default network with a way out: `default` 172.17.0.0/16 (gateway .1)
/// masquerades to `outside` 198.51.100.0/24, whose gateway .1 is switchyard's uplink
/// address. Endpoint `a` (.2) publishes 8080→80/tcp and 5353→53/udp; `b` (.3) sits
/// beside it; `outside` (198.51.100.2) is a host beyond the uplink, and a static
/// route sends 203.0.113.0/24 on to it.
pub fn nat(prefix: &str) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .network(
            NetworkBuilder::new("default", "172.17.0.0/16")
                .gateway("172.17.0.1")
                .masquerade(),
        )
        .network(
            NetworkBuilder::new("outside", "198.51.100.0/24")
                .gateway("198.51.100.1")
                .external(),
        )
        .route("203.0.113.0/24", "198.51.100.2")
        .endpoint(
            EndpointBuilder::new("a")
                .on("default")
                .ip("172.17.0.2")
                .publish("8080:80/tcp")
                .publish("5353:53/udp"),
        )
        .endpoint(EndpointBuilder::new("b").on("default").ip("172.17.0.3"))
        .endpoint(
            EndpointBuilder::new("outside")
                .on("outside")
                .ip("198.51.100.2"),
        )
}

/// Two networks kept apart, as an attacker in one meets them: `front` 10.1.0.0/24
/// (`web` .2) and `back` 10.2.0.0/24 (`db` .2), not joined, both with gateway .1 and
/// masquerading to `outside` 198.51.100.0/24, whose gateway .1 is the uplink and where
/// `peer` (.2) is a host beyond it. `front` and `back` come as builders so a test can
/// add to them (a conntrack share, `rp_filter`, port security).
pub fn front_and_back(
    prefix: &str,
    front: impl FnOnce(NetworkBuilder) -> NetworkBuilder,
    back: impl FnOnce(NetworkBuilder) -> NetworkBuilder,
) -> TopologyBuilder {
    let net = |name: &str, a: u8| {
        NetworkBuilder::new(name, format!("10.{a}.0.0/24"))
            .gateway(Ipv4Addr::new(10, a, 0, 1))
            .masquerade()
    };
    Topology::builder()
        .prefix(prefix)
        .network(front(net("front", 1)))
        .network(back(net("back", 2)))
        .network(
            NetworkBuilder::new("outside", "198.51.100.0/24")
                .gateway("198.51.100.1")
                .external(),
        )
        .endpoint(EndpointBuilder::new("web").on("front").ip("10.1.0.2"))
        .endpoint(EndpointBuilder::new("db").on("back").ip("10.2.0.2"))
        .endpoint(
            EndpointBuilder::new("peer")
                .on("outside")
                .ip("198.51.100.2"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn letters_never_repeat() {
        let all: Vec<String> = (0..20_000).map(letters).collect();
        assert_eq!(&all[..3], ["a", "b", "c"]);
        assert_eq!(&all[25..28], ["z", "aa", "ab"]);
        assert_eq!(all[26 + 26 * 26], "aaa");
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }

    #[test]
    fn prefixes_stay_distinct_valid_and_in_the_shape_ci_looks_for() {
        let mut seen = HashSet::new();
        // The longest pid Linux gives (pid_max is at most 2^22), with as many
        // prefixes as fit.
        for n in 0..18_278 {
            let p = prefix_for(4_194_304, n);
            assert!(seen.insert(p.clone()), "{p} twice");
        }
        // The 27th prefix no longer meets the first.
        assert_ne!(prefix_for(7, 26), prefix_for(7, 0));
        for p in [unique_prefix(), prefix_for(4_194_304, 18_277)] {
            build(three(&p)); // a prefix the config accepts
            let rest = p.strip_prefix('t').unwrap().strip_suffix('-').unwrap();
            let digits = rest.trim_end_matches(|c: char| c.is_ascii_lowercase());
            assert!(
                !digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && rest.len() > digits.len(),
                "{p} is t<digits><letters>-, as .ci/run's leftover check expects"
            );
        }
    }

    #[test]
    #[should_panic(expected = "longer than the 12 characters")]
    fn running_out_of_room_is_a_panic_not_a_repeat() {
        prefix_for(4_194_304, 18_278);
    }
}
