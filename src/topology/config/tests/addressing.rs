//! IPAM: automatic addresses and MACs, refused and duplicate MACs.

use super::*;

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
