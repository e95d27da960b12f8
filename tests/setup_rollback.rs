//! A setup that fails half-way removes what it had already made. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use switchyard::topology::Deployment;

#[test]
fn failure_half_way_rolls_back() {
    if !require_root() {
        return;
    }
    let mut topo = build(three(&unique_prefix()));
    // An interface name the kernel refuses (over 15 bytes), on the *last* endpoint,
    // so the first two namespaces exist by the time setup fails. Validation would
    // never produce this; the point is what setup does when the kernel says no.
    topo.endpoints[2].interfaces[0].ifname = "a-name-far-too-long-for-linux".into();
    let names = namespaces(&topo);
    let err = match Deployment::create(&topo, &run_root()) {
        Ok(_) => panic!("setup should fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("endpoint c") && err.contains("create TAP"),
        "{err}"
    );
    assert_gone(&names);
    let state = run_root().join(&topo.prefix).join("state.json");
    assert!(!state.exists(), "no state left after a rollback");
}
