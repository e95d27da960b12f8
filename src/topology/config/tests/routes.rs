//! `[[allow]]` and `[[route]]` (with the endpoint modes they are declared beside).

use super::*;

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
fn a_prefix_is_routed_one_way_only() {
    let ps = problems(&format!(
        "{TWO}
[[route]]
prefix = \"10.9.0.0/16\"
via = \"10.2.0.254\"
[[route]]
prefix = \"10.9.0.0/16\"
via = \"10.1.0.254\"
"
    ));
    assert!(
        has(
            &ps,
            "route[1].prefix",
            "10.9.0.0/16 is routed via 10.2.0.254 already"
        ),
        "{ps:#?}"
    );
}
