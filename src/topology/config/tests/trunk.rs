//! `vlan = N` on networks and `trunk = [...]` on endpoints: the interfaces a trunk
//! endpoint gets, the ports the pipeline sees, and the files refused.

use super::*;

const VLANS: &str = r#"
[[network]]
name = "v10"
subnet = "10.10.0.0/24"
gateway = "10.10.0.1"
vlan = 10

[[network]]
name = "v20"
subnet = "10.20.0.0/24"
gateway = "10.20.0.1"
vlan = 20
mtu = 9000

[[network]]
name = "mgmt"
subnet = "10.99.0.0/24"

[[endpoint]]
name = "a"
network = "v10"
"#;

#[test]
fn a_trunk_is_eth0_and_a_vlan_interface_per_tagged_network() {
    let t = parse(
        &format!(
            "{VLANS}\n[[endpoint]]\nname = \"router\"\n\
             trunk = [\"v10\", {{ network = \"v20\", ip = \"10.20.0.254\" }}]\n"
        ),
        "t.toml",
    )
    .unwrap();
    assert_eq!(t.networks[0].vlan, Some(10));
    let r = &t.endpoints[1];
    let names: Vec<&str> = r.interfaces.iter().map(|i| i.ifname.as_str()).collect();
    assert_eq!(names, ["eth0.10", "eth0.20"]);
    // The lowest free address where none is given, as attach does.
    assert_eq!(r.interfaces[0].ip, Ipv4Addr::new(10, 10, 0, 3));
    assert_eq!(r.interfaces[1].ip, Ipv4Addr::new(10, 20, 0, 254));
    // One MAC: eth0's, which the VLAN devices take.
    assert_eq!(r.interfaces[0].mac, r.interfaces[1].mac);
    let spec = t.pipeline_spec();
    let (p10, p20) = (r.interfaces[0].port, r.interfaces[1].port);
    assert_eq!(spec.ports[p10.index()].name, "router/eth0.10");
    assert_eq!(spec.ports[p10.index()].vlan, Some(10));
    assert_eq!(
        spec.ports[p10.index()].carrier,
        None,
        "the carrier reads eth0"
    );
    assert_eq!(spec.ports[p20.index()].vlan, Some(20));
    assert_eq!(spec.ports[p20.index()].carrier, Some(p10));
    switchyard_core::pipeline::Pipeline::new(spec).expect("the pipeline takes it");
}

#[test]
fn a_native_network_is_eth0_itself() {
    let t = parse(
        &format!(
            "{VLANS}\n[[endpoint]]\nname = \"router\"\nnative = \"mgmt\"\nip = \"10.99.0.5\"\n\
             trunk = [\"v10\"]\n"
        ),
        "t.toml",
    )
    .unwrap();
    let r = &t.endpoints[1];
    assert_eq!(r.interfaces[0].ifname, "eth0");
    assert_eq!(r.interfaces[0].ip, Ipv4Addr::new(10, 99, 0, 5));
    assert_eq!(r.interfaces[1].ifname, "eth0.10");
    let spec = t.pipeline_spec();
    let eth0 = &spec.ports[r.interfaces[0].port.index()];
    assert_eq!((eth0.name.as_str(), eth0.vlan), ("router", None));
    assert_eq!(
        spec.ports[r.interfaces[1].port.index()].carrier,
        Some(r.interfaces[0].port)
    );
}

#[test]
fn a_trunk_prints_back_as_written() {
    let t = parse(
        &format!(
            "{VLANS}\n[[endpoint]]\nname = \"router\"\nnative = \"mgmt\"\n\
             trunk = [\"v10\", \"v20\"]\n"
        ),
        "t.toml",
    )
    .unwrap();
    let text = t.to_toml();
    let mut again = parse(&text, "printed").unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    again.source = t.source.clone();
    assert_eq!(again, t, "{text}");
}

#[test]
fn bad_vlans_and_trunks_are_refused() {
    let ps = problems(&format!(
        "{VLANS}\n[[network]]\nname = \"dup\"\nsubnet = \"10.30.0.0/24\"\nvlan = 10\n\
         [[network]]\nname = \"big\"\nsubnet = \"10.31.0.0/24\"\nvlan = 4095\n"
    ));
    assert!(
        has(&ps, "network \"dup\".vlan", "already network \"v10\"'s"),
        "{ps:?}"
    );
    assert!(has(&ps, "network \"big\".vlan", "1 to 4094"), "{ps:?}");
    let ps = problems(&format!(
        "{VLANS}\n[[endpoint]]\nname = \"r\"\ntrunk = [\"mgmt\"]\nnetwork = \"v10\"\nip = \"10.10.0.9\"\n"
    ));
    assert!(
        has(&ps, "endpoint \"r\".trunk[0].network", "has no vlan"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "endpoint \"r\".trunk", "takes no network"),
        "{ps:?}"
    );
    assert!(
        has(&ps, "endpoint \"r\".ip", "native network's address"),
        "{ps:?}"
    );
    let ps = problems(&format!(
        "{VLANS}\n[[endpoint]]\nname = \"r\"\nnative = \"v10\"\ntrunk = [\"v10\"]\n"
    ));
    assert!(
        has(&ps, "endpoint \"r\".trunk[0].network", "already attached"),
        "{ps:?}"
    );
    let ps = problems(&format!(
        "{VLANS}\n[[endpoint]]\nname = \"r\"\nnative = \"v10\"\n"
    ));
    assert!(
        has(&ps, "endpoint \"r\".native", "list the tagged ones"),
        "{ps:?}"
    );
}
