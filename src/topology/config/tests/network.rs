//! `[[network]]`: modes and proxy ARP, and what they need.

use super::*;
use switchyard_core::pipeline::DomainGuard;

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
fn guards_and_table_shares() {
    let t = parse(
        r#"
[switch]
fdb_max = 100
[[network]]
name = "lan"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
port_security = true
rp_filter = false
fdb_max = 60
neighbor_max = 10
held_max = 5
[[network]]
name = "plain"
subnet = "10.2.0.0/24"
[[endpoint]]
name = "a"
network = "lan"
"#,
        "t",
    )
    .unwrap();
    let g = t.networks[0].guard;
    assert!(g.port_security && !g.rp_filter);
    assert_eq!(
        (g.fdb_max, g.neighbor_max, g.held_max),
        (Some(60), Some(10), Some(5))
    );
    assert_eq!(t.networks[1].guard, DomainGuard::default());
    assert!(DomainGuard::default().rp_filter, "on unless turned off");
    // The pipeline gets the endpoint's addresses, for port security.
    let spec = t.pipeline_spec();
    assert_eq!(spec.ports[0].ip, Some(Ipv4Addr::new(10, 1, 0, 2)));
    assert_eq!(spec.ports[0].mac, Some(t.endpoints[0].interfaces[0].mac));
    assert_eq!(spec.domains[0].guard, g);
    // Unset shares are even splits of the table; set ones stay within it.
    assert_eq!(DomainGuard::share(None, 100, 2), 50);
    assert_eq!(DomainGuard::share(Some(60), 100, 2), 60);
    assert_eq!(DomainGuard::share(None, 1, 4), 1);

    let ps = problems(
        r#"
[switch]
fdb_max = 100
neighbor_max = 50
[[network]]
name = "lan"
subnet = "10.1.0.0/24"
fdb_max = 101
neighbor_max = 0
held_max = 1000
"#,
    );
    assert!(
        has(&ps, "network \"lan\".fdb_max", "more than switch.fdb_max"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network \"lan\".neighbor_max", "at least 1"),
        "{ps:#?}"
    );
    assert!(has(&ps, "network \"lan\".held_max", "more than"), "{ps:#?}");
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
    assert_eq!(t.networks[0].guard.conntrack_max, Some(1000));
    assert_eq!(t.networks[1].guard.conntrack_max, None);
    assert_eq!(t.pipeline_spec().domains[0].guard.conntrack_max, Some(1000));
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

#[test]
fn icc_is_on_unless_turned_off_and_needs_a_gateway() {
    let t = parse(
        r#"
[[network]]
name = "closed"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
icc = false
[[network]]
name = "open"
subnet = "10.2.0.0/24"
"#,
        "t",
    )
    .unwrap();
    assert!(!t.networks[0].guard.icc);
    assert!(t.networks[1].guard.icc, "on by default, as in Docker");
    let spec = t.pipeline_spec();
    assert!(!spec.domains[0].guard.icc && spec.domains[1].guard.icc);
    let ps = problems(
        r#"
[[network]]
name = "lonely"
subnet = "10.3.0.0/24"
icc = false
"#,
    );
    assert!(has(&ps, "network \"lonely\".icc", "needs one"), "{ps:#?}");
}
