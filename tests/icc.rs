//! End to end: `icc = false` (Docker's `enable_icc=false`) on real namespaces. On such
//! a network an endpoint reaches the gateway and, through it, a joined network, but
//! not another endpoint of its own network — and `show counters` says why
//! (`icc_disabled`). With the default (icc on) the same endpoints ping each other.
//! Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
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
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// `closed` 10.1.0.0/24 (gateway .1, icc as given, masquerading) with `a` .2, which
/// publishes 8080→80/tcp, and `b` .3; joined to `other` 10.2.0.0/24 (gateway .1) with
/// `c` .2; `outside` 198.51.100.0/24 is the external network (uplink .1) with `peer`
/// .2. None to skip (not root).
fn up(icc: bool) -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            Topology::builder()
                .prefix(unique_prefix())
                .network(
                    NetworkBuilder::new("closed", "10.1.0.0/24")
                        .gateway("10.1.0.1")
                        .masquerade()
                        .icc(icc),
                )
                .network(NetworkBuilder::new("other", "10.2.0.0/24").gateway("10.2.0.1"))
                .network(
                    NetworkBuilder::new("outside", "198.51.100.0/24")
                        .gateway("198.51.100.1")
                        .external(),
                )
                .allow("closed", "other")
                .endpoint(
                    EndpointBuilder::new("a")
                        .on("closed")
                        .ip("10.1.0.2")
                        .publish("8080:80/tcp"),
                )
                .endpoint(EndpointBuilder::new("b").on("closed").ip("10.1.0.3"))
                .endpoint(EndpointBuilder::new("c").on("other").ip("10.2.0.2"))
                .endpoint(
                    EndpointBuilder::new("peer")
                        .on("outside")
                        .ip("198.51.100.2"),
                ),
        ))
    })
}

#[test]
fn with_icc_off_a_reaches_the_gateway_other_networks_and_published_ports_but_not_b() {
    let Some(sy) = up(false) else { return };
    let a = ns(&sy, "a");
    traffic::ping(&a, GATEWAY, T).expect("a pings the gateway");
    traffic::ping(&a, C, T).expect("a pings c on the joined network");
    traffic::ping(&ns(&sy, "c"), B, T).expect("c pings b, routed in from the joined network");
    assert!(
        traffic::ping(&a, B, SHORT).is_err(),
        "a must not reach b on the same network"
    );
    assert!(
        drops(&sy, "icc_disabled") >= 1,
        "a's ARP requests for b were dropped as icc_disabled: {:?}",
        counters(&sy).drops
    );
    // The way out, and a's published port by the uplink address (hairpin): b's
    // connection reaches a from the gateway address.
    traffic::ping(&a, PEER, T).expect("a pings beyond the uplink, masqueraded");
    let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);
    let sink = traffic::tcp_sink(&a, bind, T).unwrap();
    let sent = traffic::tcp_send(
        &ns(&sy, "b"),
        SocketAddrV4::new(UPLINK, 8080),
        100_000,
        7,
        T,
    )
    .expect("b connects to a's published port");
    let got = sink.join().unwrap().unwrap();
    assert_eq!((got.bytes, got.digest), (100_000, sent), "bytes intact");
    assert_eq!(got.peer.ip(), IpAddr::V4(GATEWAY), "a sees the gateway");
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
