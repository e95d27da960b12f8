//! A topology printed as a config file ([`Topology::to_toml`]) parses back into the
//! same topology.

use super::*;

/// Prints `t`, parses the text again and checks both topologies are equal (all but
/// `source`, which names where each came from). Returns the text.
fn round_trip(t: &Topology) -> String {
    let text = t.to_toml();
    let mut again = parse(&text, "printed").unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    again.source = t.source.clone();
    assert_eq!(&again, t, "the printed file:\n{text}");
    // Printing the reparsed topology gives the same text: nothing drifts.
    assert_eq!(again.to_toml(), text);
    text
}

/// Every key the config contract has, none at its default.
const EVERY_KEY: &str = r#"
[switch]
prefix = "all-"
fdb_max = 4096
fdb_aging_secs = 120
conntrack_max = 10000
arp_reachable_secs = 20
arp_stale_secs = 40
arp_retries = 5
arp_retry_ms = 250
arp_queue = 7
neighbor_max = 512
nat_port_range = "20000-30000"
conntrack_tcp_established_secs = 3600
conntrack_udp_secs = 20
conntrack_udp_stream_secs = 90
conntrack_icmp_secs = 15
workers = 3
busy_poll_us = 50
steering = "cpu"
adaptive_poll = true
io = "uring"
offloads = false
dns_upstream = ["192.0.2.53", "192.0.2.54:5353"]
dns_upstream_netns = "upstream"

[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
mtu = 9000
masquerade = true
proxy_arp = true
offloads = true
conntrack_max = 500
rp_filter = false
port_security = true
fdb_max = 100
neighbor_max = 50
held_max = 20
icc = false
dns_domain = "Front.Internal."

[[network]]
name = "flat"
subnet = "10.4.0.0/24"
gateway = "10.4.0.1"
mode = "l3"
dns = false

[[network]]
name = "bare"
subnet = "10.5.0.0/24"
mode = "bridge"
vlan = 5

[[network]]
name = "tagged"
subnet = "10.6.0.0/24"
vlan = 6

[[network]]
name = "over"
subnet = "10.7.0.0/24"
vxlan = { vni = 42, local = "192.0.2.1", remotes = ["192.0.2.2", "192.0.2.3"], port = 8472, underlay_netns = "host1", udp_csum = true }

[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true

[[endpoint]]
name = "web"
network = "front"
ip = "10.1.0.20"
mac = "02:00:00:00:00:20"
publish = ["8080:80/tcp", "5353:53/udp", "8443:443"]
aliases = ["www", "Web.V2"]

[[endpoint]]
name = "multi"
attach = [ { network = "front" }, { network = "flat", ip = "10.4.0.9", mac = "02:00:00:00:00:09" }, { network = "bare" } ]

[[endpoint]]
name = "auto"
network = "flat"

[[endpoint]]
name = "side"
mode = "container:web"

[[endpoint]]
name = "lo-only"
mode = "none"

[[endpoint]]
name = "out"
network = "outside"

[[endpoint]]
name = "trunked"
native = "flat"
ip = "10.4.0.77"
mac = "02:00:00:00:00:77"
trunk = ["tagged", { network = "bare", ip = "10.5.0.77" }]

[[allow]]
between = ["front", "flat"]

[[route]]
prefix = "10.9.0.0/16"
via = "10.4.0.9"
"#;

#[test]
fn every_key_survives_a_round_trip() {
    let t = parse(EVERY_KEY, "every-key.toml").unwrap_or_else(|e| panic!("{e}"));
    let text = round_trip(&t);
    // Assigned addresses and resolved defaults are written out.
    for line in [
        "ip = \"10.1.0.2\"",           // multi's eth0, assigned
        "mac = \"02:42:0a:01:00:02\"", // and derived
        "rp_filter = true",            // flat's default
        "offloads = false",            // [switch]'s, resolved per network
        "workers = 3",
        "mode = \"container:web\"",
        "mode = \"none\"",
        "\"8443:443/tcp\"",
        "dns_domain = \"front.internal\"", // normalised
        "aliases = [\"www\", \"web.v2\"]",
        "dns_upstream = [\"192.0.2.53\", \"192.0.2.54:5353\"]",
        "dns_upstream_netns = \"/run/netns/upstream\"",
        "dns = false", // flat's, as given, and bare's and outside's by default
        "underlay_netns = \"/run/netns/host1\"",
        "remotes = [\"192.0.2.2\", \"192.0.2.3\"]",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn the_default_and_every_example_survive_a_round_trip() {
    round_trip(&default_topology());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            round_trip(&load(&path).unwrap_or_else(|e| panic!("{e}")));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn workers_left_to_the_machine_are_printed_as_the_number_running() {
    let t = parse("[switch]\nworkers = 0\n", "t.toml").unwrap();
    let printed = parse(&t.to_toml(), "printed").unwrap();
    assert_eq!(printed.workers, t.workers);
    assert!(printed.workers >= 1);
}

#[test]
fn an_empty_topology_prints_only_switch() {
    let t = parse("", "empty.toml").unwrap();
    let text = round_trip(&t);
    assert!(text.starts_with("[switch]\n"), "{text}");
    assert!(!text.contains("[[network]]"), "{text}");
}
