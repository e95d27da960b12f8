//! End to end: `icc = false` (Docker's `enable_icc=false`) on real namespaces. On such
//! a network an endpoint reaches the gateway and, through it, a joined network, but
//! not another endpoint of its own network — and `show counters` says why
//! (`icc_disabled`). With the default (icc on) the same endpoints ping each other.
//! Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::Ipv4Addr;
use std::time::Duration;
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_testkit::traffic;

const T: Duration = Duration::from_secs(5);
/// How long a ping that must not be answered is given.
const SHORT: Duration = Duration::from_secs(1);

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);

/// `closed` 10.1.0.0/24 (gateway .1, icc as given) with `a` .2 and `b` .3, joined to
/// `other` 10.2.0.0/24 (gateway .1) with `c` .2; or None to skip (not root).
fn up(icc: bool) -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            Topology::builder()
                .prefix(unique_prefix())
                .network(
                    NetworkBuilder::new("closed", "10.1.0.0/24")
                        .gateway("10.1.0.1")
                        .icc(icc),
                )
                .network(NetworkBuilder::new("other", "10.2.0.0/24").gateway("10.2.0.1"))
                .allow("closed", "other")
                .endpoint(EndpointBuilder::new("a").on("closed").ip("10.1.0.2"))
                .endpoint(EndpointBuilder::new("b").on("closed").ip("10.1.0.3"))
                .endpoint(EndpointBuilder::new("c").on("other").ip("10.2.0.2")),
        ))
    })
}

#[test]
fn with_icc_off_a_reaches_the_gateway_and_another_network_but_not_b() {
    let Some(sy) = up(false) else { return };
    let a = ns(&sy, "a");
    traffic::ping(&a, GATEWAY, T).expect("a pings the gateway");
    traffic::ping(&a, C, T).expect("a pings c on the joined network");
    traffic::ping(&ns(&sy, "c"), B, T).expect("c pings b, routed in from outside");
    assert!(
        traffic::ping(&a, B, SHORT).is_err(),
        "a must not reach b on the same network"
    );
    assert!(
        drops(&sy, "icc_disabled") >= 1,
        "a's ARP requests for b were dropped as icc_disabled: {:?}",
        counters(&sy).drops
    );
    assert_accounted(&sy);
    stop(sy);
}

#[test]
fn with_icc_on_a_pings_b() {
    let Some(sy) = up(true) else { return };
    traffic::ping(&ns(&sy, "a"), B, T).expect("a pings b");
    assert_eq!(drops(&sy, "icc_disabled"), 0);
    stop(sy);
}
