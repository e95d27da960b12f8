//! The config unit tests, one file per section as the code is; this one holds the
//! helpers and the tests of whole files.

use super::*;
use switchyard_core::pipeline::DomainMode;

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, "test.toml") {
        Err(e @ ConfigError::Invalid { .. }) => e.problems().to_vec(),
        Err(e) => panic!("expected validation problems, got: {e}"),
        Ok(_) => panic!("expected the config to be refused"),
    }
}

fn has(ps: &[Problem], field: &str, reason_part: &str) -> bool {
    ps.iter()
        .any(|p| p.field == field && p.reason.contains(reason_part))
}

mod addressing;
mod dns;
mod endpoint;
mod limits;
mod network;
mod overlay;
mod print;
mod publish;
mod routes;
mod switch;
mod trunk;

const NET: &str = r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
"#;

#[test]
fn default_is_dockers_default_bridge() {
    let t = default_topology();
    assert_eq!(t.prefix, "sy-");
    assert_eq!(
        t.networks.len(),
        2,
        "default, and the outside standing for the host's network"
    );
    let n = &t.networks[0];
    assert_eq!(
        (n.name.as_str(), n.subnet.to_string().as_str(), n.mtu),
        ("default", "172.17.0.0/16", 1500)
    );
    let g = n.gateway.unwrap();
    assert_eq!(g.ip, Ipv4Addr::new(172, 17, 0, 1));
    assert_eq!(g.mac.to_string(), "02:42:ac:11:00:01");
    let names: Vec<_> = t
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.netns.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("a", "sy-a"), ("b", "sy-b"), ("outside", "sy-outside")]
    );
    let a = &t.endpoints[0].interfaces[0];
    assert_eq!(
        (a.ifname.as_str(), a.ip, a.mac.to_string()),
        (
            "eth0",
            Ipv4Addr::new(172, 17, 0, 2),
            "02:42:ac:11:00:02".into()
        )
    );
    let spec = t.pipeline_spec();
    assert_eq!(spec.ports.len(), 3);
    assert_eq!(spec.fdb_max, 8192);
    assert_eq!(spec.fdb_aging_secs, 300);
}

#[test]
fn every_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn unknown_keys_are_errors_not_ignored() {
    let e = parse(&format!("{NET}\nmtuu = 1400\n"), "typo.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("typo.toml") && msg.contains("mtuu"), "{msg}");
}

#[test]
fn refuses_overlaps_duplicates_and_strays_all_at_once() {
    let ps = problems(
        r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.1.1"

[[network]]
name = "front"
subnet = "10.3.0.5/24"

[[network]]
name = "wide"
subnet = "10.0.0.0/8"

[[endpoint]]
name = "web"
network = "front"
ip = "10.1.0.2"

[[endpoint]]
name = "web"
network = "front"
ip = "10.1.0.2"

[[endpoint]]
name = "far"
network = "front"
ip = "192.168.1.2"

[[endpoint]]
name = "ghost"
network = "nowhere"
"#,
    );
    assert!(
        has(&ps, "network \"front\".gateway", "outside the subnet"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network \"front\".name", "already defined"),
        "{ps:#?}"
    );
    assert!(
        has(
            &ps,
            "network \"front\".subnet",
            "has host bits set; did you mean 10.3.0.0/24"
        ),
        "{ps:#?}"
    );
    assert!(
        has(
            &ps,
            "network \"wide\".subnet",
            "overlaps 10.1.0.0/24 of network \"front\""
        ),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"web\".name", "already defined"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"web\".ip", "10.1.0.2 is already used"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"far\".ip", "outside network \"front\""),
        "{ps:#?}"
    );
    assert!(
        has(
            &ps,
            "endpoint \"ghost\".network",
            "no network named \"nowhere\""
        ),
        "{ps:#?}"
    );
}

#[test]
fn numbers_and_names_are_range_checked() {
    let ps = problems(
        r#"
[switch]
prefix = "this/is/bad"
fdb_max = 0
fdb_aging_secs = 0

[[network]]
name = "front"
subnet = "10.1.0.0/31"
mtu = 40

[[network]]
name = "x y"
subnet = "10.2.0.0/24"

[[endpoint]]
name = "lonely"
"#,
    );
    assert!(has(&ps, "switch.prefix", "must be"), "{ps:#?}");
    assert!(has(&ps, "switch.fdb_max", "from 1"), "{ps:#?}");
    assert!(has(&ps, "switch.fdb_aging_secs", "at least 1"), "{ps:#?}");
    assert!(has(&ps, "network \"front\".subnet", "no room"), "{ps:#?}");
    assert!(has(&ps, "network \"front\".mtu", "68"), "{ps:#?}");
    assert!(has(&ps, "network[1].name", "must be"), "{ps:#?}");
    assert!(
        has(&ps, "endpoint \"lonely\"", "needs a network"),
        "{ps:#?}"
    );
}

#[test]
fn problems_are_listed_in_the_order_of_the_passes() {
    // `switchyard check` and `up` print them in this order, so it stays put: the
    // [switch] tables, networks, endpoints and their addresses, routes, published
    // ports, and then the NAT port range, conntrack timeouts and workers.
    let ps = problems(
        r#"
[switch]
fdb_max = 0
nat_port_range = "x"
conntrack_icmp_secs = 0
workers = 65
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
mtu = 1
[[endpoint]]
name = "a"
network = "front"
ip = "10.2.0.2"
publish = ["80:80"]
[[route]]
prefix = "10.9.0.0/16"
via = "10.3.0.1"
"#,
    );
    let fields: Vec<_> = ps.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "switch.fdb_max",
            "network \"front\".mtu",
            "endpoint \"a\".ip",
            "route[0].via",
            "endpoint \"a\".publish[0]",
            "switch.nat_port_range",
            "switch.conntrack_icmp_secs",
            "switch.workers",
        ]
    );
}
