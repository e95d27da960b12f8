//! Changes checked as config files: refused for the file's reasons, numbers kept,
//! and the difference a change makes.

use super::*;
use crate::topology::config::{default_topology, parse};

fn base() -> Topology {
    default_topology()
}

fn create(name: &str, network: &str) -> Edit {
    Edit::EndpointCreate {
        name: name.into(),
        network: network.into(),
        ip: None,
        mac: None,
        publish: Vec::new(),
        netns: None,
        ifname: None,
        aliases: Vec::new(),
        handover: false,
    }
}

fn net(name: &str, subnet: &str) -> Edit {
    Edit::NetworkCreate {
        name: name.into(),
        subnet: subnet.into(),
        gateway: None,
        mtu: None,
        masquerade: false,
        internal: false,
        icc: None,
        dns: None,
        dns_domain: None,
    }
}

#[test]
fn a_new_endpoint_gets_the_lowest_free_address_and_a_new_port() {
    let t = base();
    let ports_before = t.interfaces().count();
    let next = create("c", "default").apply(&t).unwrap();
    let c = next.endpoints.iter().find(|e| e.name == "c").unwrap();
    // a and b hold .2 and .3 of 172.17.0.0/16.
    assert_eq!(c.interfaces[0].ip.to_string(), "172.17.0.4");
    assert_eq!(c.interfaces[0].port, PortId(ports_before as u16));
    assert_eq!(c.netns, "sy-c");
    // Everything else keeps its number.
    for (e, i) in t.interfaces() {
        let (_, j) = next
            .interfaces()
            .find(|(f, j)| f.name == e.name && j.ifname == i.ifname)
            .unwrap();
        assert_eq!(i.port, j.port, "{}", e.name);
    }
    let d = Diff::between(&t, &next);
    assert_eq!(d.new_endpoints, vec!["c".to_string()]);
    assert!(d.gone_ports.is_empty() && d.gone_endpoints.is_empty());
}

#[test]
fn a_change_is_refused_in_the_config_files_words() {
    let t = base();
    let e = create("a", "default").apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("an endpoint with this name is already defined")),
        "{e}"
    );
    let e = create("z", "nowhere").apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("no network named \"nowhere\"")),
        "{e}"
    );
    let e = net("n2", "172.17.5.0/24").apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("overlaps")),
        "{e}"
    );
    let e = Edit::EndpointRm {
        name: "nope".into(),
    }
    .apply(&t)
    .unwrap_err();
    assert!(matches!(e, EditError::NotFound(_)));
}

#[test]
fn a_full_subnet_is_refused() {
    let t = net("tiny", "10.9.0.0/30").apply(&base()).unwrap();
    // /30: the gateway takes .1, one endpoint .2, and then there is no room.
    let t = create("one", "tiny").apply(&t).unwrap();
    let e = create("two", "tiny").apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("no free address")),
        "{e}"
    );
}

#[test]
fn removing_frees_the_number_for_the_change_after() {
    let t = base();
    let a_port = t.endpoints[0].interfaces[0].port;
    let next = Edit::EndpointRm { name: "a".into() }.apply(&t).unwrap();
    let d = Diff::between(&t, &next);
    assert_eq!(d.gone_endpoints.len(), 1);
    assert_eq!(d.gone_ports.len(), 1);
    assert_eq!(d.gone_ports[0].port, a_port);
    // The spec keeps a's slot vacant.
    let spec = next.pipeline_spec();
    assert!(spec.ports[a_port.index()].is_vacant());
    // The next endpoint takes it.
    let again = create("c", "default").apply(&next).unwrap();
    let c = again.endpoints.iter().find(|e| e.name == "c").unwrap();
    assert_eq!(c.interfaces[0].port, a_port);
}

#[test]
fn connect_and_disconnect_keep_interface_names_and_numbers() {
    let t = net("back", "10.20.0.0/24").apply(&base()).unwrap();
    let t1 = Edit::Connect {
        network: "back".into(),
        endpoint: "a".into(),
        ip: Some("10.20.0.9".into()),
        ifname: None,
    }
    .apply(&t)
    .unwrap();
    let a = t1.endpoints.iter().find(|e| e.name == "a").unwrap();
    assert_eq!(a.interfaces.len(), 2);
    assert_eq!(a.interfaces[1].ifname, "eth1");
    assert_eq!(a.interfaces[1].ip.to_string(), "10.20.0.9");
    let d = Diff::between(&t, &t1);
    assert_eq!(
        d.new_interfaces,
        vec![("a".to_string(), "eth1".to_string())]
    );
    // Disconnecting eth0's network leaves eth1 named eth1, on its port.
    let eth1_port = a.interfaces[1].port;
    let t2 = Edit::Disconnect {
        network: "default".into(),
        endpoint: "a".into(),
    }
    .apply(&t1)
    .unwrap();
    let a = t2.endpoints.iter().find(|e| e.name == "a").unwrap();
    assert_eq!(a.interfaces.len(), 1);
    assert_eq!(
        (a.interfaces[0].ifname.as_str(), a.interfaces[0].port),
        ("eth1", eth1_port)
    );
    // And the result prints as a file that builds the same topology.
    let again = parse(&t2.to_toml(), "again").unwrap();
    assert_eq!(again.endpoints, {
        let mut e = t2.endpoints.clone();
        for (k, i) in e
            .iter_mut()
            .flat_map(|e| e.interfaces.iter_mut())
            .enumerate()
        {
            i.port = PortId(k as u16);
        }
        e
    });
    // The last network gone: only lo, as `docker network disconnect` leaves it, and
    // a's published port goes with it.
    let t3 = Edit::Disconnect {
        network: "back".into(),
        endpoint: "a".into(),
    }
    .apply(&t2)
    .unwrap();
    let a = t3.endpoints.iter().find(|e| e.name == "a").unwrap();
    assert!(a.interfaces.is_empty());
    assert!(t3
        .publish
        .iter()
        .all(|p| t3.endpoints[p.endpoint].name != "a"));
}

#[test]
fn a_network_with_endpoints_or_routes_through_it_stays() {
    let t = base();
    let e = Edit::NetworkRm {
        name: "default".into(),
    }
    .apply(&t)
    .unwrap_err();
    assert!(
        matches!(&e, EditError::InUse(m) if m.contains("a, b")),
        "{e}"
    );
    let t = net("n", "10.30.0.0/24").apply(&t).unwrap();
    let t = Edit::AllowAdd {
        a: "n".into(),
        b: "default".into(),
    }
    .apply(&t)
    .unwrap();
    assert_eq!(t.allow.len(), 1);
    let t = Edit::RouteAdd {
        prefix: "192.168.50.0/24".into(),
        via: "10.30.0.7".into(),
    }
    .apply(&t)
    .unwrap();
    let e = Edit::NetworkRm { name: "n".into() }.apply(&t).unwrap_err();
    assert!(matches!(e, EditError::InUse(_)));
    let t = Edit::RouteRm {
        prefix: "192.168.50.0/24".into(),
        via: "10.30.0.7".into(),
    }
    .apply(&t)
    .unwrap();
    let n = t.networks.iter().find(|x| x.name == "n").unwrap().domain;
    let after = Edit::NetworkRm { name: "n".into() }.apply(&t).unwrap();
    // Its join went with it.
    assert!(after.allow.is_empty());
    assert_eq!(Diff::between(&t, &after).gone_networks, vec![n]);
}

#[test]
fn internal_networks_are_never_joined_masqueraded_or_published() {
    let t = Edit::NetworkCreate {
        name: "secret".into(),
        subnet: "10.40.0.0/24".into(),
        gateway: None,
        mtu: None,
        masquerade: false,
        internal: true,
        icc: None,
        dns: None,
        dns_domain: None,
    }
    .apply(&base())
    .unwrap();
    let e = Edit::AllowAdd {
        a: "secret".into(),
        b: "default".into(),
    }
    .apply(&t)
    .unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("internal")),
        "{e}"
    );
    let mut ep = create("s", "secret");
    if let Edit::EndpointCreate { publish, .. } = &mut ep {
        publish.push("9000:80/tcp".into());
    }
    let e = ep.apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("internal")),
        "{e}"
    );
    let e = Edit::NetworkCreate {
        name: "x".into(),
        subnet: "10.41.0.0/24".into(),
        gateway: None,
        mtu: None,
        masquerade: true,
        internal: true,
        icc: None,
        dns: None,
        dns_domain: None,
    }
    .apply(&t)
    .unwrap_err();
    assert!(matches!(e, EditError::Invalid(_)));
}

#[test]
fn a_foreign_namespace_is_named_by_path_and_round_trips() {
    let mut ep = create("c1", "default");
    if let Edit::EndpointCreate { netns, ifname, .. } = &mut ep {
        *netns = Some("/run/netns/netns-1234".into());
        *ifname = Some("net0".into());
    }
    let t = ep.apply(&base()).unwrap();
    let c = t.endpoints.iter().find(|e| e.name == "c1").unwrap();
    assert!(c.foreign);
    assert_eq!(c.netns, "/run/netns/netns-1234");
    assert_eq!(c.interfaces[0].ifname, "net0");
    let again = parse(&t.to_toml(), "again").unwrap();
    assert_eq!(again.endpoints, t.endpoints);
    // A relative path, or one that climbs, is refused.
    for bad in ["netns-1", "/run/netns/../x"] {
        let mut ep = create("c2", "default");
        if let Edit::EndpointCreate { netns, .. } = &mut ep {
            *netns = Some(bad.into());
        }
        assert!(
            matches!(ep.apply(&base()), Err(EditError::Invalid(_))),
            "{bad}"
        );
    }
    // So is an interface name the kernel would not take.
    let mut ep = create("c3", "default");
    if let Edit::EndpointCreate { ifname, .. } = &mut ep {
        *ifname = Some("a-very-long-interface-name".into());
    }
    assert!(matches!(ep.apply(&base()), Err(EditError::Invalid(_))));
}

#[test]
fn dns_settings_of_a_new_network_and_aliases_of_a_new_endpoint_are_checked_as_the_file() {
    // A new network with a gateway serves DNS unless told not to.
    let t = net("app", "10.30.0.0/24").apply(&base()).unwrap();
    let app = t.networks.iter().find(|n| n.name == "app").unwrap();
    assert!(app.serves_dns() && app.dns_domain.is_none());
    let mut off = net("quiet", "10.31.0.0/24");
    if let Edit::NetworkCreate { dns, .. } = &mut off {
        *dns = Some(false);
    }
    let t = off.apply(&t).unwrap();
    assert!(!t.networks.iter().any(|n| n.name == "quiet" && n.dns));
    let mut domain = net("named", "10.32.0.0/24");
    if let Edit::NetworkCreate { dns_domain, .. } = &mut domain {
        *dns_domain = Some("Named.Internal.".into());
    }
    let t = domain.apply(&t).unwrap();
    let named = t.networks.iter().find(|n| n.name == "named").unwrap();
    assert_eq!(named.dns_domain.as_deref(), Some("named.internal"));
    // A domain with DNS off is refused, in the file's words.
    let mut bad = net("bad", "10.33.0.0/24");
    if let Edit::NetworkCreate {
        dns, dns_domain, ..
    } = &mut bad
    {
        *dns = Some(false);
        *dns_domain = Some("bad.internal".into());
    }
    let e = bad.apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("network \"bad\".dns_domain")),
        "{e}"
    );

    let mut ep = create("db", "app");
    if let Edit::EndpointCreate { aliases, .. } = &mut ep {
        *aliases = vec!["Database".into(), "db.v2".into()];
    }
    let t = ep.apply(&t).unwrap();
    let db = t.endpoints.iter().find(|e| e.name == "db").unwrap();
    assert_eq!(db.aliases, ["database", "db.v2"]);
    // Connecting and disconnecting keep them, down to only lo and back.
    let t = Edit::Connect {
        network: "named".into(),
        endpoint: "db".into(),
        ip: None,
        ifname: None,
    }
    .apply(&t)
    .unwrap();
    let t = Edit::Disconnect {
        network: "app".into(),
        endpoint: "db".into(),
    }
    .apply(&t)
    .unwrap();
    let t = Edit::Disconnect {
        network: "named".into(),
        endpoint: "db".into(),
    }
    .apply(&t)
    .unwrap();
    let db = t.endpoints.iter().find(|e| e.name == "db").unwrap();
    assert!(db.interfaces.is_empty());
    assert_eq!(db.aliases, ["database", "db.v2"]);

    let mut ep = create("web2", "app");
    if let Edit::EndpointCreate { aliases, .. } = &mut ep {
        *aliases = vec!["ok".into(), "not_ok".into()];
    }
    let e = ep.apply(&t).unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("endpoint \"web2\".aliases[1]")),
        "{e}"
    );
}

#[test]
fn a_handed_over_interface_round_trips_and_its_endpoint_takes_no_second_network() {
    let mut ep = create("c1", "default");
    if let Edit::EndpointCreate {
        netns,
        ifname,
        handover,
        ..
    } = &mut ep
    {
        *netns = Some("/var/run/docker/netns/4f1a".into());
        // A name a default would give: written out all the same.
        *ifname = Some("eth0".into());
        *handover = true;
    }
    let t = ep.apply(&base()).unwrap();
    let c = t.endpoints.iter().find(|e| e.name == "c1").unwrap();
    assert!(c.handover && c.foreign);
    let text = t.to_toml();
    assert!(text.contains("handover = true"), "{text}");
    let again = parse(&text, "again").unwrap();
    assert_eq!(again.endpoints, t.endpoints);

    let with_back = net("back", "10.30.0.0/24").apply(&t).unwrap();
    let e = Edit::Connect {
        network: "back".into(),
        endpoint: "c1".into(),
        ip: None,
        ifname: None,
    }
    .apply(&with_back)
    .unwrap_err();
    assert!(
        matches!(&e, EditError::Invalid(m) if m.contains("through its runtime")),
        "{e:?}"
    );

    // Without a namespace to go to, or a name to be made under, it is refused.
    for (netns, ifname) in [(None, Some("h0")), (Some("/run/netns/x"), None)] {
        let mut ep = create("c2", "default");
        if let Edit::EndpointCreate {
            netns: n,
            ifname: i,
            handover,
            ..
        } = &mut ep
        {
            *n = netns.map(str::to_string);
            *i = ifname.map(str::to_string);
            *handover = true;
        }
        assert!(
            matches!(ep.apply(&base()), Err(EditError::Invalid(_))),
            "{netns:?} {ifname:?}"
        );
    }
}
