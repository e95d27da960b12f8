use super::*;

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
    assert_eq!(t.networks.len(), 1);
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
    assert_eq!(names, vec![("a", "sy-a"), ("b", "sy-b")]);
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
    assert_eq!(spec.ports.len(), 2);
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
fn later_features_are_parsed_then_refused_clearly() {
    let ps = problems(
        r#"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
masquerade = true

[[network]]
name = "outside"
subnet = "198.51.100.0/24"
external = true

[[endpoint]]
name = "web"
network = "front"
publish = ["8080:80/tcp", "80:http"]

[[endpoint]]
name = "side"
mode = "container:web"

[[allow]]
between = ["front", "outside"]

[[route]]
prefix = "10.9.0.0/16"
via = "10.1.0.254"
"#,
    );
    for field in [
        "network \"front\".masquerade",
        "network \"outside\".external",
        "endpoint \"web\".publish[0]",
        "endpoint \"side\".mode",
        "allow[0]",
        "route[0]",
    ] {
        assert!(has(&ps, field, "not supported yet"), "{field}: {ps:#?}");
    }
    assert!(
        has(&ps, "endpoint \"web\".publish[1]", "not a port"),
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
