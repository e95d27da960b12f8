//! The DNS keys: names, which networks serve DNS by default, aliases, upstreams.

use super::*;
use crate::topology::config::dns::{parse_upstream, parse_upstream_netns};
use std::net::SocketAddrV4;
use std::path::PathBuf;

#[test]
fn dns_names_are_case_folded_and_checked_label_by_label() {
    assert_eq!(parse_dns_name("App.Internal.").unwrap(), "app.internal");
    assert_eq!(parse_dns_name("db").unwrap(), "db");
    assert_eq!(parse_dns_name("db-1.v2").unwrap(), "db-1.v2");
    assert_eq!(parse_dns_name("3com").unwrap(), "3com");
    let label63 = "a".repeat(63);
    assert!(dns_name_ok(&label63));
    let long = [label63.as_str(); 4].join("."); // 4 * 63 + 3 = 255
    assert!(!dns_name_ok(&long[..254]), "254 characters");
    assert!(dns_name_ok(&long[..253]));
    for bad in [
        "",
        ".",
        "a..b",
        ".a",
        "-db",
        "db-",
        "a.-b",
        "under_score",
        "sp ace",
        "dé",
        "10.1.0.2",
        "host.42",
        &"a".repeat(64),
    ] {
        assert!(!dns_name_ok(bad), "{bad:?} accepted");
    }
}

#[test]
fn upstreams_take_a_port_and_refuse_what_is_not_one_server() {
    assert_eq!(
        parse_upstream("192.0.2.53").unwrap(),
        "192.0.2.53:53".parse::<SocketAddrV4>().unwrap()
    );
    assert_eq!(parse_upstream("192.0.2.54:5353").unwrap().port(), 5353);
    for bad in [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.251",
        "192.0.2.53:0",
        "dns.example",
        "192.0.2.53:99999",
        "[::1]:53",
    ] {
        assert!(parse_upstream(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        parse_upstream_netns("host1").unwrap(),
        PathBuf::from("/run/netns/host1")
    );
    assert_eq!(
        parse_upstream_netns("/proc/1/ns/net").unwrap(),
        PathBuf::from("/proc/1/ns/net")
    );
    for bad in ["", "..", "a/b", "/run/netns/../x", "run/netns/x"] {
        assert!(parse_upstream_netns(bad).is_err(), "{bad:?} accepted");
    }
}

const NETS: &str = r#"
[[network]]
name = "app"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
[[network]]
name = "default"
subnet = "172.17.0.0/16"
gateway = "172.17.0.1"
[[network]]
name = "bare"
subnet = "10.2.0.0/24"
[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true
"#;

#[test]
fn a_network_with_a_gateway_serves_dns_unless_default_or_external() {
    let t = parse(NETS, "t").unwrap();
    let dns: Vec<(&str, bool, bool)> = t
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.dns, n.serves_dns()))
        .collect();
    assert_eq!(
        dns,
        vec![
            ("app", true, true),
            ("default", false, false),
            ("bare", false, false),
            ("outside", false, false),
        ]
    );
    assert!(t.networks.iter().all(|n| n.dns_domain.is_none()));
    // The built-in default is docker0's network: no resolver.
    assert!(default_topology().networks.iter().all(|n| !n.serves_dns()));
}

#[test]
fn dns_is_turned_on_and_off_explicitly() {
    let text = NETS
        .replace(
            "name = \"app\"\nsubnet = \"10.1.0.0/24\"",
            "name = \"app\"\nsubnet = \"10.1.0.0/24\"\ndns = false",
        )
        .replace(
            "name = \"default\"\nsubnet = \"172.17.0.0/16\"",
            "name = \"default\"\nsubnet = \"172.17.0.0/16\"\ndns = true\ndns_domain = \"Docker.\"",
        )
        .replace("external = true", "external = true\ndns = true");
    let t = parse(&text, "t").unwrap();
    let on: Vec<bool> = t.networks.iter().map(|n| n.dns).collect();
    assert_eq!(on, vec![false, true, false, true]);
    assert_eq!(t.networks[1].dns_domain.as_deref(), Some("docker"));
}

#[test]
fn dns_needs_a_gateway_and_a_domain_needs_dns() {
    let ps = problems(
        r#"
[[network]]
name = "bare"
subnet = "10.2.0.0/24"
dns = true
[[network]]
name = "off"
subnet = "10.3.0.0/24"
gateway = "10.3.0.1"
dns = false
dns_domain = "off.internal"
[[network]]
name = "nogw"
subnet = "10.4.0.0/24"
dns_domain = "nogw.internal"
[[network]]
name = "badname"
subnet = "10.5.0.0/24"
gateway = "10.5.0.1"
dns_domain = "under_score.internal"
"#,
    );
    assert!(has(&ps, "network \"bare\".dns", "has none"), "{ps:?}");
    assert!(
        has(&ps, "network \"off\".dns_domain", "needs DNS"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "network \"nogw\".dns_domain", "needs DNS"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "network \"badname\".dns_domain", "not a DNS name"),
        "{ps:?}"
    );
    assert_eq!(ps.len(), 4, "{ps:?}");
}

#[test]
fn aliases_are_dns_names_normalised_and_unique() {
    let t = parse(
        &format!(
            "{NETS}
[[endpoint]]
name = \"db_1\"
network = \"app\"
aliases = [\"Database\", \"db.v2.\"]
[[endpoint]]
name = \"idle\"
mode = \"none\"
aliases = [\"later\"]
"
        ),
        "t",
    )
    .unwrap();
    // An endpoint name that is no DNS name is still an endpoint name.
    assert_eq!(t.endpoints[0].name, "db_1");
    assert!(!dns_name_ok(&t.endpoints[0].name));
    assert_eq!(t.endpoints[0].aliases, vec!["database", "db.v2"]);
    assert_eq!(t.endpoints[1].aliases, vec!["later"]);

    let many: Vec<String> = (0..33).map(|k| format!("\"a{k}\"")).collect();
    let ps = problems(&format!(
        "{NETS}
[[endpoint]]
name = \"db\"
network = \"app\"
aliases = [\"x\", \"bad_name\", \"X.\"]
[[endpoint]]
name = \"many\"
network = \"app\"
aliases = [{}]
[[endpoint]]
name = \"side\"
mode = \"container:db\"
aliases = [\"side\"]
",
        many.join(", ")
    ));
    assert!(
        has(&ps, "endpoint \"db\".aliases[1]", "not a DNS name"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "endpoint \"db\".aliases[2]", "listed twice"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "endpoint \"many\".aliases", "at most 32"),
        "{ps:?}"
    );
    assert!(
        has(
            &ps,
            "endpoint \"side\".aliases",
            "sharing another's namespace"
        ),
        "{ps:?}"
    );
}

#[test]
fn upstreams_resolve_and_never_point_back_at_switchyard() {
    let t = parse(
        &format!(
            "[switch]\ndns_upstream = [\"192.0.2.53\", \"127.0.0.53\", \"192.0.2.54:5353\"]\n\
             dns_upstream_netns = \"/run/netns/uplink\"\n{NETS}"
        ),
        "t",
    )
    .unwrap();
    let ups: Vec<String> = t.dns_upstream.iter().map(|a| a.to_string()).collect();
    assert_eq!(ups, ["192.0.2.53:53", "127.0.0.53:53", "192.0.2.54:5353"]);
    assert_eq!(
        t.dns_upstream_netns,
        Some(PathBuf::from("/run/netns/uplink"))
    );
    let none = parse(NETS, "t").unwrap();
    assert!(none.dns_upstream.is_empty() && none.dns_upstream_netns.is_none());

    let ps = problems(&format!(
        "[switch]\ndns_upstream = [\"10.1.0.1\", \"198.51.100.1:53\", \"10.2.0.255\", \
         \"0.0.0.0\", \"192.0.2.1\", \"192.0.2.1:53\"]\n{NETS}"
    ));
    assert!(
        has(
            &ps,
            "switch.dns_upstream[0]",
            "own gateway on network \"app\""
        ),
        "{ps:?}"
    );
    assert!(
        has(
            &ps,
            "switch.dns_upstream[1]",
            "own gateway on network \"outside\""
        ),
        "{ps:?}"
    );
    assert!(
        has(
            &ps,
            "switch.dns_upstream[2]",
            "broadcast address of network \"bare\""
        ),
        "{ps:?}"
    );
    assert!(
        has(&ps, "switch.dns_upstream[3]", "not one server"),
        "{ps:?}"
    );
    assert!(has(&ps, "switch.dns_upstream[5]", "listed twice"), "{ps:?}");
    assert_eq!(ps.len(), 5, "{ps:?}");

    let nine: Vec<String> = (1..=9).map(|k| format!("\"192.0.2.{k}\"")).collect();
    let ps = problems(&format!("[switch]\ndns_upstream = [{}]\n", nine.join(", ")));
    assert!(has(&ps, "switch.dns_upstream", "at most 8"), "{ps:?}");

    let ps = problems("[switch]\ndns_upstream_netns = \"uplink\"\n");
    assert!(
        has(&ps, "switch.dns_upstream_netns", "there is no dns_upstream"),
        "{ps:?}"
    );
    let ps =
        problems("[switch]\ndns_upstream = [\"192.0.2.53\"]\ndns_upstream_netns = \"../etc\"\n");
    assert!(
        has(&ps, "switch.dns_upstream_netns", "neither a namespace name"),
        "{ps:?}"
    );
}
