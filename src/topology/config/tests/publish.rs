//! Published ports and the NAT settings.

use super::*;

#[test]
fn nat_settings_resolve() {
    let t = default_topology();
    let ext = t.external().expect("the default has an outside");
    assert_eq!(
        (ext.name.as_str(), ext.gateway.unwrap().ip),
        ("outside", Ipv4Addr::new(198, 51, 100, 1))
    );
    assert!(t.networks[0].masquerade);
    assert_eq!(t.publish.len(), 2);
    assert_eq!(t.publish[0].target, Ipv4Addr::new(172, 17, 0, 2));
    assert_eq!(
        t.publish[0].rule,
        Publish {
            host_port: 8080,
            container_port: 80,
            udp: false
        }
    );
    assert_eq!(t.nat_port_range, (1024, 65535));
    let spec = t.pipeline_spec();
    assert_eq!(spec.nat.publish.len(), 2);
    assert_eq!(
        spec.nat.publish[1].proto,
        switchyard_core::wire::IpProtocol::UDP
    );
    switchyard_core::pipeline::Pipeline::new(spec).expect("the default's spec holds together");
}

#[test]
fn bad_nat_settings_are_refused() {
    let ps = problems(
        r#"
[switch]
nat_port_range = "5000-4000"
conntrack_udp_secs = 0

[[network]]
name = "front"
subnet = "10.1.0.0/24"
masquerade = true

[[network]]
name = "out1"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true
masquerade = true

[[network]]
name = "out2"
subnet = "203.0.113.0/24"
external = true

[[endpoint]]
name = "web"
network = "front"
publish = ["8080:80/tcp", "80:http"]

[[endpoint]]
name = "api"
network = "front"
publish = ["8080:8000/tcp"]

[[endpoint]]
name = "peer"
network = "out1"
publish = ["9000:90"]
"#,
    );
    assert!(
        has(&ps, "network \"front\".masquerade", "needs a gateway"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network \"out1\".masquerade", "not masqueraded"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network \"out2\".external", "needs a gateway"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "network", "only one network can be external"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"web\".publish[1]", "not a port"),
        "{ps:#?}"
    );
    assert!(
        has(
            &ps,
            "endpoint \"api\".publish[0]",
            "already published by endpoint \"web\""
        ),
        "{ps:#?}"
    );
    assert!(
        has(
            &ps,
            "endpoint \"peer\".publish[0]",
            "on the external network already"
        ),
        "{ps:#?}"
    );
    assert!(has(&ps, "switch.nat_port_range", "not a range"), "{ps:#?}");
    assert!(
        has(&ps, "switch.conntrack_udp_secs", "at least 1"),
        "{ps:#?}"
    );
    let ps = problems("[[network]]\nname = \"n\"\nsubnet = \"10.0.0.0/24\"\ngateway = \"10.0.0.1\"\nmasquerade = true\n[[endpoint]]\nname = \"x\"\nnetwork = \"n\"\npublish = [\"80:80\"]\n");
    assert!(
        has(&ps, "network \"n\".masquerade", "no external network"),
        "{ps:#?}"
    );
    assert!(
        has(
            &ps,
            "endpoint \"x\".publish[0]",
            "needs an external network"
        ),
        "{ps:#?}"
    );
}

#[test]
fn publish_syntax() {
    assert_eq!(
        parse_publish("8080:80/tcp").unwrap(),
        Publish {
            host_port: 8080,
            container_port: 80,
            udp: false
        }
    );
    assert_eq!(
        parse_publish("5353:53/udp").unwrap(),
        Publish {
            host_port: 5353,
            container_port: 53,
            udp: true
        }
    );
    assert!(parse_publish("8080:80").is_ok());
    assert!(parse_publish("8080").is_err());
    assert!(parse_publish("0:80").is_err());
    assert!(parse_publish("8080:80/sctp").is_err());
}
