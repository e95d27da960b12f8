//! `vxlan = {...}`: what a network spanning hosts may say, and the tunnel port it gets.

use super::*;

fn with_vxlan(vxlan: &str) -> String {
    format!(
        r#"
[[network]]
name = "over"
subnet = "10.6.0.0/24"
vxlan = {vxlan}

[[endpoint]]
name = "a"
network = "over"
"#
    )
}

#[test]
fn an_overlay_network_gets_a_tunnel_port_after_every_interface() {
    let t = parse(
        &with_vxlan(r#"{ vni = 42, local = "192.0.2.1", remotes = ["192.0.2.2"] }"#),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = t.networks[0].vxlan.as_ref().expect("an overlay");
    assert_eq!((o.vni, o.port, o.udp_csum), (42, 4789, false));
    assert_eq!(o.underlay_netns, None);
    assert_eq!(o.tunnel, PortId(1), "after endpoint a's eth0");
    assert!(t.networks[0].mtu_from_underlay);
    let spec = t.pipeline_spec();
    assert_eq!(spec.ports[1].name, "vxlan:over");
    assert_eq!(spec.ports[1].domain, t.networks[0].domain);
    assert_eq!(spec.ports[1].mac, None, "a tunnel has no MAC of its own");
}

#[test]
fn bad_vxlan_keys_are_refused_with_the_field_and_the_reason() {
    let ps = problems(&with_vxlan(
        r#"{ vni = 16777216, local = "0.0.0.0", remotes = ["192.0.2.2", "224.0.0.1", "192.0.2.2", "127.0.0.1"], port = 0, underlay_netns = "a/b" }"#,
    ));
    let f = "network \"over\".vxlan";
    assert!(has(&ps, &format!("{f}.vni"), "more than 24 bits"), "{ps:?}");
    assert!(has(&ps, &format!("{f}.local"), "unspecified"), "{ps:?}");
    assert!(has(&ps, &format!("{f}.remotes[1]"), "multicast"), "{ps:?}");
    assert!(
        has(&ps, &format!("{f}.remotes[2]"), "listed twice"),
        "{ps:?}"
    );
    assert!(has(&ps, &format!("{f}.remotes[3]"), "loopback"), "{ps:?}");
    assert!(has(&ps, &format!("{f}.port"), "not a UDP port"), "{ps:?}");
    assert!(
        has(&ps, &format!("{f}.underlay_netns"), "neither"),
        "{ps:?}"
    );

    let ps = problems(&with_vxlan(
        r#"{ vni = 1, local = "192.0.2.1", remotes = [] }"#,
    ));
    assert!(
        has(&ps, &format!("{f}.remotes"), "no remote VTEP"),
        "{ps:?}"
    );
    let ps = problems(&with_vxlan(
        r#"{ vni = 1, local = "192.0.2.1", remotes = ["192.0.2.1"] }"#,
    ));
    assert!(
        has(&ps, &format!("{f}.remotes[0]"), "the local address itself"),
        "{ps:?}"
    );
    // A misspelt key is not ignored.
    match parse(
        &with_vxlan(r#"{ vni = 1, local = "192.0.2.1", remotes = ["192.0.2.2"], remote = "x" }"#),
        "t.toml",
    ) {
        Err(ConfigError::Parse { message, .. }) => assert!(message.contains("remote"), "{message}"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn two_overlays_on_one_socket_address_or_an_l3_overlay_are_refused() {
    let ps = problems(
        r#"
[[network]]
name = "one"
subnet = "10.6.0.0/24"
vxlan = { vni = 1, local = "192.0.2.1", remotes = ["192.0.2.2"] }

[[network]]
name = "two"
subnet = "10.7.0.0/24"
gateway = "10.7.0.1"
mode = "l3"
vxlan = { vni = 2, local = "192.0.2.1", remotes = ["192.0.2.3"] }
"#,
    );
    assert!(
        has(&ps, "network \"two\".vxlan", "like network \"one\""),
        "{ps:?}"
    );
    assert!(has(&ps, "network \"two\".vxlan", "L3 network"), "{ps:?}");
    // Another port, or another underlay, is another socket.
    parse(
        r#"
[[network]]
name = "one"
subnet = "10.6.0.0/24"
vxlan = { vni = 1, local = "192.0.2.1", remotes = ["192.0.2.2"] }

[[network]]
name = "two"
subnet = "10.7.0.0/24"
vxlan = { vni = 2, local = "192.0.2.1", remotes = ["192.0.2.3"], port = 4790 }

[[network]]
name = "three"
subnet = "10.8.0.0/24"
vxlan = { vni = 3, local = "192.0.2.1", remotes = ["192.0.2.3"], underlay_netns = "elsewhere" }
"#,
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
