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
