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

#[test]
fn a_handed_over_interface_needs_netns_ifname_and_one_network() {
    let ok = parse(
        &format!(
            "{NET}[[endpoint]]\nname = \"c\"\nnetwork = \"front\"\nnetns = \
             \"/var/run/docker/netns/1a2b\"\nifname = \"sy-c0\"\nhandover = true\n"
        ),
        "test.toml",
    )
    .unwrap();
    let c = &ok.endpoints[0];
    assert!(c.handover && c.foreign);
    assert_eq!(c.interfaces[0].ifname, "sy-c0");

    let ps = problems(&format!(
        "{NET}[[endpoint]]\nname = \"c\"\nnetwork = \"front\"\nhandover = true\n"
    ));
    assert!(has(&ps, "endpoint \"c\".handover", "needs netns"), "{ps:?}");
    assert!(
        has(&ps, "endpoint \"c\".handover", "needs ifname"),
        "{ps:?}"
    );

    let ps = problems(&format!(
        "{NET}[[network]]\nname = \"back\"\nsubnet = \"10.2.0.0/24\"\n\
         [[endpoint]]\nname = \"c\"\nattach = [{{ network = \"front\", ifname = \"x0\" }}, \
         {{ network = \"back\" }}]\nnetns = \"/run/netns/x\"\nhandover = true\n"
    ));
    assert!(
        has(&ps, "endpoint \"c\".handover", "only one: give network"),
        "{ps:?}"
    );

    // Two TAPs of one name in switchyard's own namespace cannot both be made.
    let ps = problems(&format!(
        "{NET}[[endpoint]]\nname = \"c\"\nnetwork = \"front\"\nnetns = \"/run/netns/x\"\n\
         ifname = \"h0\"\nhandover = true\n\
         [[endpoint]]\nname = \"d\"\nnetwork = \"front\"\nnetns = \"/run/netns/y\"\n\
         ifname = \"h0\"\nhandover = true\n"
    ));
    assert!(
        has(
            &ps,
            "endpoint \"d\".ifname",
            "\"c\" hands over an interface named \"h0\""
        ),
        "{ps:?}"
    );
}
