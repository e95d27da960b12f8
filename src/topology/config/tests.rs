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
fn addresses_are_assigned_like_docker_ipam() {
    let t = parse(
        &format!(
            "{NET}
[[endpoint]]
name = \"x\"
network = \"front\"
[[endpoint]]
name = \"y\"
network = \"front\"
ip = \"10.1.0.2\"
[[endpoint]]
name = \"z\"
network = \"front\"
"
        ),
        "t",
    )
    .unwrap();
    let ips: Vec<_> = t
        .endpoints
        .iter()
        .map(|e| e.interfaces[0].ip.to_string())
        .collect();
    // y asked for .2, so x (declared first) gets .3 and z .4; .1 is the gateway.
    assert_eq!(ips, vec!["10.1.0.3", "10.1.0.2", "10.1.0.4"]);
    assert_eq!(
        t.endpoints[0].interfaces[0].mac.to_string(),
        "02:42:0a:01:00:03"
    );
}

#[test]
fn several_interfaces_become_eth0_eth1() {
    let t =
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/one-host-two-networks.toml"))
            .unwrap();
    let api = &t.endpoints[0];
    let names: Vec<_> = api.interfaces.iter().map(|i| i.ifname.as_str()).collect();
    assert_eq!(names, vec!["eth0", "eth1"]);
    let spec = t.pipeline_spec();
    assert_eq!(spec.ports[0].name, "api");
    assert_eq!(spec.ports[1].name, "api/eth1");
    assert_eq!(spec.ports[1].domain, DomainId(1));
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
fn refuses_bad_and_duplicate_macs() {
    let e = parse(
        &format!(
            "{NET}\n[[endpoint]]\nname = \"a\"\nnetwork = \"front\"\nmac = \"02:42:zz:00:00:01\"\n"
        ),
        "bad.toml",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("bad.toml:"), "{msg}");
    assert!(
        msg.contains("bad MAC address") && msg.contains("mac"),
        "{msg}"
    );

    let ps = problems(&format!(
        "{NET}
[[endpoint]]
name = \"a\"
network = \"front\"
mac = \"02:00:00:00:00:01\"
[[endpoint]]
name = \"b\"
network = \"front\"
mac = \"02:00:00:00:00:01\"
[[endpoint]]
name = \"c\"
network = \"front\"
mac = \"01:00:5e:00:00:01\"
[[endpoint]]
name = \"d\"
network = \"front\"
mac = \"02:42:0a:01:00:01\"
"
    ));
    assert!(
        has(&ps, "endpoint \"b\".mac", "already used by endpoint \"a\""),
        "{ps:#?}"
    );
    assert!(has(&ps, "endpoint \"c\".mac", "multicast"), "{ps:#?}");
    assert!(
        has(
            &ps,
            "endpoint \"d\".mac",
            "the gateway of network \"front\""
        ),
        "{ps:#?}"
    );
}

#[test]
fn unknown_keys_are_errors_not_ignored() {
    let e = parse(&format!("{NET}\nmtuu = 1400\n"), "typo.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("typo.toml") && msg.contains("mtuu"), "{msg}");
}

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

const TWO: &str = r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"

[[network]]
name = "back"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"

[[network]]
name = "plain"
subnet = "10.3.0.0/24"
"#;

#[test]
fn allow_routes_and_modes_resolve() {
    let t = parse(
        &format!(
            "{TWO}
[[allow]]
between = [\"front\", \"back\"]
[[route]]
prefix = \"10.9.0.0/16\"
via = \"10.2.0.254\"
[[endpoint]]
name = \"web\"
network = \"front\"
[[endpoint]]
name = \"side\"
mode = \"container:web\"
[[endpoint]]
name = \"quiet\"
mode = \"none\"
"
        ),
        "t",
    )
    .unwrap();
    assert_eq!(t.allow, vec![(0, 1)]);
    assert_eq!(t.routes.len(), 1);
    assert_eq!(t.routes[0].via, Ipv4Addr::new(10, 2, 0, 254));
    assert_eq!(t.endpoints[1].shares, Some(0));
    assert!(t.endpoints[1].interfaces.is_empty());
    assert_eq!(t.endpoints[2].shares, None);
    assert!(t.endpoints[2].interfaces.is_empty());
    let spec = t.pipeline_spec();
    assert_eq!(spec.allow, vec![(DomainId(0), DomainId(1))]);
    assert_eq!(spec.ports.len(), 1, "only web has an interface");
    switchyard_core::pipeline::Pipeline::new(spec).expect("the spec holds together");
}

#[test]
fn bad_allow_routes_and_modes_are_refused() {
    let ps = problems(&format!(
        "{TWO}
[[allow]]
between = [\"front\"]
[[allow]]
between = [\"front\", \"plain\"]
[[allow]]
between = [\"front\", \"nowhere\"]
[[route]]
prefix = \"10.9.0.0/16\"
via = \"10.3.0.254\"
[[route]]
prefix = \"10.8.0.1/16\"
via = \"10.2.0.254\"
[[route]]
prefix = \"10.7.0.0/16\"
via = \"10.2.0.1\"
[[route]]
prefix = \"10.1.0.0/24\"
via = \"10.2.0.254\"
[[endpoint]]
name = \"side\"
mode = \"container:ghost\"
[[endpoint]]
name = \"weird\"
mode = \"host\"
[[endpoint]]
name = \"both\"
mode = \"none\"
network = \"front\"
"
    ));
    assert!(has(&ps, "allow[0].between", "exactly two"), "{ps:#?}");
    assert!(has(&ps, "allow[1].between", "no gateway"), "{ps:#?}");
    assert!(has(&ps, "allow[2].between", "no network named"), "{ps:#?}");
    assert!(
        has(&ps, "route[0].via", "not inside a network with a gateway"),
        "{ps:#?}"
    );
    assert!(has(&ps, "route[1].prefix", "host bits"), "{ps:#?}");
    assert!(
        has(&ps, "route[2].via", "switchyard's own address"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "route[3].prefix", "already routed directly"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"side\".mode", "no endpoint named \"ghost\""),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"weird\".mode", "not a network mode"),
        "{ps:#?}"
    );
    assert!(
        has(&ps, "endpoint \"both\".mode", "takes no network"),
        "{ps:#?}"
    );
}

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
fn neighbor_settings_are_checked_and_carried() {
    let t = parse(
        "[switch]\narp_retries = 5\narp_retry_ms = 200\narp_queue = 8\n",
        "t",
    )
    .unwrap();
    assert_eq!(t.neighbor.probes, 5);
    assert_eq!(t.neighbor.retrans_ms, 200);
    assert_eq!(t.neighbor.queue_len, 8);
    let ps = problems("[switch]\narp_retries = 0\narp_queue = 99\narp_retry_ms = 1\n");
    assert!(has(&ps, "switch.arp_retries", "from 1"), "{ps:#?}");
    assert!(has(&ps, "switch.arp_queue", "from 1"), "{ps:#?}");
    assert!(has(&ps, "switch.arp_retry_ms", "from 10"), "{ps:#?}");
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

#[test]
fn fast_path_settings_resolve_and_are_checked() {
    let t = parse(
        r#"
[switch]
workers = 3
busy_poll_us = 50
offloads = true
[[network]]
name = "a"
subnet = "10.1.0.0/24"
[[network]]
name = "b"
subnet = "10.2.0.0/24"
offloads = false
"#,
        "t",
    )
    .unwrap();
    assert_eq!((t.workers, t.busy_poll_us), (3, 50));
    assert!(t.networks[0].offloads, "a network takes [switch]'s setting");
    assert!(!t.networks[1].offloads, "and can turn it off for itself");

    // 0 workers: one per core.
    let t = parse("[switch]\nworkers = 0\n", "t").unwrap();
    assert_eq!(
        t.workers,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Defaults: busy polling off, offloads on.
    let t = default_topology();
    assert_eq!(t.busy_poll_us, 0);
    assert!(t.networks.iter().all(|n| n.offloads));

    let ps = problems("[switch]\nworkers = 65\nbusy_poll_us = 2000000\n");
    assert!(has(&ps, "switch.workers", "more than 64"), "{ps:?}");
    assert!(has(&ps, "switch.busy_poll_us", "at most 1000000"), "{ps:?}");
}
