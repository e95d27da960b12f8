use super::*;
use crate::topology::config::{parse, Problem};

/// Every key of the config contract, in TOML.
const EVERYTHING: &str = r#"
[switch]
prefix = "b-"
fdb_max = 100
fdb_aging_secs = 30
conntrack_max = 200
arp_reachable_secs = 5
arp_stale_secs = 6
arp_retries = 2
arp_retry_ms = 300
arp_queue = 4
neighbor_max = 50
nat_port_range = "20000-30000"
conntrack_tcp_established_secs = 600
conntrack_udp_secs = 20
conntrack_udp_stream_secs = 90
conntrack_icmp_secs = 15
workers = 2
busy_poll_us = 40
offloads = false

[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
mtu = 9000
masquerade = true
offloads = true

[[network]]
name = "back"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"
proxy_arp = true

[[network]]
name = "flat"
subnet = "10.4.0.0/24"
gateway = "10.4.0.1"
mode = "l3"

[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true

[[endpoint]]
name = "web"
network = "front"
ip = "10.1.0.2"
mac = "02:00:00:00:00:02"
publish = ["8080:80/tcp", "5353:53/udp"]

[[endpoint]]
name = "auto"
network = "back"

[[endpoint]]
name = "multi"
attach = [ { network = "front" }, { network = "back", ip = "10.2.0.3", mac = "02:00:00:00:00:03" }, { network = "flat" } ]

[[endpoint]]
name = "side"
mode = "container:web"

[[endpoint]]
name = "quiet"
mode = "none"

[[allow]]
between = ["front", "back"]

[[route]]
prefix = "10.9.0.0/16"
via = "10.2.0.254"
"#;

fn everything() -> TopologyBuilder {
    Topology::builder()
        .source("t")
        .prefix("b-")
        .switch(|s| {
            s.fdb_max = 100;
            s.fdb_aging_secs = 30;
            s.conntrack_max = 200;
            s.arp_reachable_secs = 5;
            s.arp_stale_secs = 6;
            s.arp_retries = 2;
            s.arp_retry_ms = 300;
            s.arp_queue = 4;
            s.neighbor_max = 50;
            s.nat_port_range = "20000-30000".into();
            s.conntrack_tcp_established_secs = Some(600);
            s.conntrack_udp_secs = Some(20);
            s.conntrack_udp_stream_secs = Some(90);
            s.conntrack_icmp_secs = Some(15);
            s.workers = 2;
            s.busy_poll_us = 40;
            s.offloads = false;
        })
        .network(
            NetworkBuilder::new("front", "10.1.0.0/24")
                .gateway("10.1.0.1")
                .mtu(9000)
                .masquerade()
                .offloads(true),
        )
        .network(
            NetworkBuilder::new("back", "10.2.0.0/24")
                .gateway(Ipv4Addr::new(10, 2, 0, 1))
                .proxy_arp(),
        )
        .network(
            NetworkBuilder::new("flat", "10.4.0.0/24")
                .gateway([10, 4, 0, 1])
                .l3(),
        )
        .network(
            NetworkBuilder::new("outside", "198.51.100.0/24")
                .gateway("198.51.100.1")
                .external(),
        )
        .endpoint(
            EndpointBuilder::new("web")
                .on("front")
                .ip("10.1.0.2")
                .mac("02:00:00:00:00:02")
                .publish("8080:80/tcp")
                .publish("5353:53/udp"),
        )
        .endpoint(EndpointBuilder::new("auto").on("back"))
        .endpoint(
            EndpointBuilder::new("multi")
                .on("front")
                .on("back")
                .ip("10.2.0.3")
                .mac([2, 0, 0, 0, 0, 3])
                .on("flat"),
        )
        .endpoint(EndpointBuilder::new("side").container("web"))
        .endpoint(EndpointBuilder::new("quiet").none())
        .allow("front", "back")
        .route("10.9.0.0/16", "10.2.0.254")
}

#[test]
fn agrees_with_parsing_the_same_toml() {
    let from_file: ConfigFile = toml::from_str(EVERYTHING).unwrap();
    let b = everything();
    assert_eq!(b.config().unwrap(), &from_file, "the same sections");
    let built = b.build().unwrap();
    assert_eq!(built, parse(EVERYTHING, "t").unwrap(), "the same topology");
    // And it is the topology asked for, not just the same one.
    assert_eq!(built.workers, 2);
    assert_eq!(built.networks[0].mtu, 9000);
    assert!(built.networks[0].offloads && !built.networks[1].offloads);
    let multi = &built.endpoints[2];
    assert_eq!(multi.netns, "b-multi");
    let ifaces: Vec<_> = multi
        .interfaces
        .iter()
        .map(|i| (i.ifname.as_str(), i.network, i.ip.to_string()))
        .collect();
    assert_eq!(
        ifaces,
        vec![
            ("eth0", 0, "10.1.0.3".into()),
            ("eth1", 1, "10.2.0.3".into()),
            ("eth2", 2, "10.4.0.2".into())
        ],
        "attach in order; automatic addresses after the explicit ones"
    );
    assert_eq!(built.endpoints[3].shares, Some(0));
    assert_eq!(built.publish.len(), 2);
}

#[test]
fn an_empty_builder_is_an_empty_file() {
    assert_eq!(
        Topology::builder().source("t").build().unwrap(),
        parse("", "t").unwrap()
    );
    assert_eq!(Topology::builder().build().unwrap().source, BUILT);
}

#[test]
fn its_toml_parses_back_to_the_same_topology() {
    let b = everything();
    let text = b.to_toml().unwrap();
    assert_eq!(parse(&text, "t").unwrap(), b.build().unwrap(), "{text}");

    // [switch] keys at their defaults are left out.
    let small = Topology::builder()
        .prefix("p-")
        .network(NetworkBuilder::new("n", "10.0.0.0/24"))
        .endpoint(EndpointBuilder::new("a").on("n"));
    let text = small.to_toml().unwrap();
    assert!(text.contains("prefix = \"p-\""), "{text}");
    assert!(!text.contains("fdb_max"), "{text}");
    assert_eq!(
        parse(&text, BUILT).unwrap(),
        small.build().unwrap(),
        "{text}"
    );
}

fn fields(ps: &[Problem]) -> Vec<(&str, &str)> {
    ps.iter()
        .map(|p| (p.field.as_str(), p.reason.as_str()))
        .collect()
}

#[test]
fn refused_with_the_problems_a_file_gets() {
    let toml = r#"
[switch]
prefix = "a/b"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
[[network]]
name = "wide"
subnet = "10.0.0.0/8"
[[endpoint]]
name = "web"
network = "front"
ip = "10.9.0.2"
[[endpoint]]
name = "multi"
attach = [ { network = "front" }, { network = "front" } ]
[[allow]]
between = ["front", "wide"]
[[route]]
prefix = "10.9.0.1/16"
via = "10.1.0.9"
"#;
    let built = Topology::builder()
        .prefix("a/b")
        .network(NetworkBuilder::new("front", "10.1.0.0/24"))
        .network(NetworkBuilder::new("wide", "10.0.0.0/8"))
        .endpoint(EndpointBuilder::new("web").on("front").ip("10.9.0.2"))
        .endpoint(EndpointBuilder::new("multi").on("front").on("front"))
        .allow("front", "wide")
        .route("10.9.0.1/16", "10.1.0.9")
        .source("f.toml")
        .build()
        .unwrap_err();
    let parsed = parse(toml, "f.toml").unwrap_err();
    assert_eq!(fields(built.problems()), fields(parsed.problems()));
    assert_eq!(built.to_string(), parsed.to_string());
    assert!(
        built.problems().len() >= 6,
        "every pass had something to say: {built}"
    );
}

#[test]
fn text_that_is_not_an_address_is_refused_as_a_file_value_would_be() {
    let e = Topology::builder()
        .network(NetworkBuilder::new("n", "10.0.0.0/24").gateway("10.0.0.x"))
        .endpoint(EndpointBuilder::new("a").on("n").mac("02:42"))
        .endpoint(EndpointBuilder::new("b").ip("10.0.0.5"))
        .route("10.9.0.0/16", "nowhere")
        .route("10.8.0.0/16", "nowhere.either")
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    let msg = e.to_string();
    for part in [
        "built topology: ",
        "network \"n\".gateway: \"10.0.0.x\" is not an IPv4 address",
        "endpoint \"a\".mac: bad MAC address \"02:42\"",
        "endpoint \"b\".ip: an address belongs to an interface",
        "route[0].via: \"nowhere\" is not an IPv4 address",
        "route[1].via: \"nowhere.either\" is not an IPv4 address",
    ] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
    assert!(Topology::builder()
        .network(NetworkBuilder::new("n", "10.0.0.0/24").gateway("10.0.0.x"))
        .to_toml()
        .is_err());
}
