//! Addresses no network may use and table sizes past their caps.

use super::*;

#[test]
fn reserved_blocks_and_the_whole_space_are_refused_as_subnets() {
    for (subnet, why) in [
        ("0.0.0.0/0", "every address"),
        ("0.0.0.0/8", "this network"),
        ("127.0.0.0/8", "loopback"),
        ("127.1.0.0/16", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("239.255.0.0/16", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.0/24", "reserved"),
        // Overlapping a block is enough.
        ("0.0.0.0/1", "this network"),
    ] {
        let ps = problems(&format!(
            "[[network]]\nname = \"n\"\nsubnet = \"{subnet}\"\n"
        ));
        assert!(has(&ps, "network \"n\".subnet", why), "{subnet}: {ps:#?}");
    }
}

#[test]
fn reserved_gateways_endpoints_and_routes_are_refused() {
    let ps = problems(
        r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "127.0.0.1"

[[network]]
name = "back"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"

[[endpoint]]
name = "web"
network = "back"
ip = "224.0.0.5"

[[route]]
prefix = "0.0.0.0/0"
via = "10.2.0.254"

[[route]]
prefix = "127.0.0.0/8"
via = "10.2.0.254"

[[route]]
prefix = "10.9.0.0/16"
via = "0.0.0.1"
"#,
    );
    assert!(has(&ps, "network \"front\".gateway", "loopback"), "{ps:#?}");
    assert!(has(&ps, "endpoint \"web\".ip", "multicast"), "{ps:#?}");
    assert!(has(&ps, "route[0].prefix", "every address"), "{ps:#?}");
    assert!(has(&ps, "route[1].prefix", "loopback"), "{ps:#?}");
    assert!(has(&ps, "route[2].via", "this network"), "{ps:#?}");
}

#[test]
fn ordinary_private_and_public_subnets_stay_accepted() {
    for subnet in [
        "10.0.0.0/8",
        "172.17.0.0/16",
        "192.168.0.0/24",
        "1.0.0.0/8",
        "223.255.255.0/24",
    ] {
        let text = format!("[[network]]\nname = \"n\"\nsubnet = \"{subnet}\"\n");
        assert!(parse(&text, "t.toml").is_ok(), "{subnet}");
    }
}

#[test]
fn table_sizes_past_their_caps_are_refused_with_the_cap() {
    use super::super::switch::{MAX_CONNTRACK, MAX_FDB, MAX_NEIGHBORS};
    let ps = problems(&format!(
        "[switch]\nfdb_max = {}\nconntrack_max = {}\nneighbor_max = {}\n{NET}",
        MAX_FDB + 1,
        1 << 24,
        MAX_NEIGHBORS + 1
    ));
    assert!(has(&ps, "switch.fdb_max", &MAX_FDB.to_string()), "{ps:#?}");
    assert!(
        has(&ps, "switch.conntrack_max", &MAX_CONNTRACK.to_string()),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "switch.neighbor_max", &MAX_NEIGHBORS.to_string()),
        "{ps:#?}"
    );
    // The caps themselves are fine.
    let text = format!(
        "[switch]\nfdb_max = {MAX_FDB}\nconntrack_max = {MAX_CONNTRACK}\nneighbor_max = {MAX_NEIGHBORS}\n{NET}"
    );
    assert!(parse(&text, "t.toml").is_ok());
}

#[test]
fn a_message_lists_twenty_problems_and_counts_the_rest() {
    let problems: Vec<Problem> = (0..25)
        .map(|i| Problem {
            field: format!("endpoint \"e{i}\".ip"),
            reason: "not an address".into(),
        })
        .collect();
    let text = ConfigError::Invalid {
        file: "f.toml".into(),
        problems,
    }
    .to_string();
    assert!(text.starts_with("f.toml: 25 problems:"), "{text}");
    assert!(
        text.contains("\"e19\"") && !text.contains("\"e20\""),
        "{text}"
    );
    assert!(text.ends_with("  ... and 5 more"), "{text}");
}
