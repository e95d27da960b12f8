//! `[[network]]`: modes and proxy ARP, and what they need.

use super::*;

#[test]
fn network_modes_and_proxy_arp() {
    let t = parse(
        r#"
[[network]]
name = "flat"
subnet = "10.4.0.0/24"
gateway = "10.4.0.1"
mode = "l3"
[[network]]
name = "px"
subnet = "10.5.0.0/24"
gateway = "10.5.0.1"
proxy_arp = true
"#,
        "t",
    )
    .unwrap();
    assert_eq!(t.networks[0].mode, DomainMode::L3);
    assert!(t.networks[1].proxy_arp);
    let ps = problems(
        r#"
[[network]]
name = "flat"
subnet = "10.4.0.0/24"
mode = "l3"
proxy_arp = true
[[network]]
name = "odd"
subnet = "10.6.0.0/24"
mode = "macvlan"
"#,
    );
    assert!(
        has(&ps, "network \"flat\".mode", "needs a gateway"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network \"flat\".proxy_arp", "needs a gateway"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network \"odd\".mode", "not a network mode"),
        "{ps:#?}"
    );
}

#[test]
fn a_network_may_have_a_share_of_the_conntrack_table() {
    let t = parse(
        r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
masquerade = true
conntrack_max = 1000
[[network]]
name = "back"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"
masquerade = true
[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true
"#,
        "t",
    )
    .unwrap();
    assert_eq!(t.networks[0].conntrack_max, Some(1000));
    assert_eq!(t.networks[1].conntrack_max, None);
    assert_eq!(
        t.pipeline_spec().nat.conntrack_shares,
        vec![(switchyard_core::pipeline::DomainId(0), 1000)]
    );
    let ps = problems(
        r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
conntrack_max = 0
[[network]]
name = "back"
subnet = "10.2.0.0/24"
conntrack_max = 16777217
"#,
    );
    for n in ["front", "back"] {
        assert!(
            has(
                &ps,
                &format!("network \"{n}\".conntrack_max"),
                "must be from 1 to"
            ),
            "{ps:#?}"
        );
    }
}
