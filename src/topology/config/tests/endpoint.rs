//! `[[endpoint]]`: several interfaces become eth0, eth1, ... and ports of their own.

use super::*;

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
