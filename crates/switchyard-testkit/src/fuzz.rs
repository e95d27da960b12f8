//! The fuzzing harness, shared by `fuzz/fuzz_targets/pipeline.rs` and the test that
//! replays the saved corpus (`tests/fuzz_corpus.rs`), so CI runs every saved input.
//!
//! Input format, repeated until the bytes run out: one byte picks the ingress port,
//! one byte advances the clock (in seconds), two bytes (big-endian) give a length,
//! then that many bytes (or what is left) are the frame. Fuzzing finds frames that
//! make a stage panic or break the accounting invariant; both abort here.

use std::net::Ipv4Addr;
use switchyard_core::pipeline::*;
use switchyard_core::wire::{IpProtocol, Ipv4Cidr, MacAddr};

/// The topology every fuzz input runs against: two bridge networks with gateways
/// joined for routing (front masquerades), an L3-only network, a network without
/// gateway, an external network with published ports, a static route, and small
/// tables and a narrow NAT port range so that "full" and "exhausted" paths are reached.
pub fn spec() -> Spec {
    let gw = |a: u8| GatewaySpec {
        ip: Ipv4Addr::new(10, a, 0, 1),
        mac: MacAddr([2, 0x42, 10, a, 0, 1]),
    };
    let dom = |name: &str, a: u8, mtu: u16, gateway: bool, mode: DomainMode| DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, a, 0, 0), 24).expect("/24"),
        mtu,
        gateway: gateway.then(|| gw(a)),
        mode,
        proxy_arp: a == 1,
        masquerade: a == 1 || a == 4,
        external: a == 5,
        guard: Default::default(),
    };
    let port = |n: &str, d: u16| PortSpec::new(n, DomainId(d));
    Spec {
        domains: vec![
            dom("front", 1, 1500, true, DomainMode::Bridge),
            dom("back", 2, 9000, true, DomainMode::Bridge),
            dom("plain", 3, 576, false, DomainMode::Bridge),
            dom("l3", 4, 1280, true, DomainMode::L3),
            dom("outside", 5, 1500, true, DomainMode::Bridge),
        ],
        ports: vec![
            port("a", 0),
            port("b", 0),
            port("c", 1),
            port("d", 1),
            port("e", 2),
            port("f", 2),
            port("g", 3),
            port("h", 3),
            port("o", 4),
            port("p", 4),
        ],
        fdb_max: 16,
        fdb_aging_secs: 30,
        routes: vec![StaticRoute {
            prefix: Ipv4Cidr::new(Ipv4Addr::new(10, 9, 0, 0), 16).expect("/16"),
            via: Ipv4Addr::new(10, 2, 0, 254),
        }],
        allow: vec![(DomainId(0), DomainId(1)), (DomainId(3), DomainId(0))],
        neighbor: NeighborConfig {
            max: 8,
            held_max: 6,
            ..NeighborConfig::default()
        },
        nat: NatSpec {
            publish: vec![
                PublishSpec {
                    proto: IpProtocol::TCP,
                    host_port: 8080,
                    target: Ipv4Addr::new(10, 1, 0, 2),
                    target_port: 80,
                },
                PublishSpec {
                    proto: IpProtocol::UDP,
                    host_port: 5353,
                    target: Ipv4Addr::new(10, 2, 0, 3),
                    target_port: 53,
                },
            ],
            port_range: (40000, 40003),
            conntrack_max: 12,
            conntrack_shares: Vec::new(),
            timeouts: Timeouts::default(),
        },
    }
}

/// Runs one fuzz input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let spec = spec();
    let nports = spec.ports.len();
    let mut p = Pipeline::new(spec).expect("fuzz spec is valid");
    p.tracer().start(u32::MAX, None);
    let mut out = Emitter::with_capacity(64);
    let mut batch: Vec<Frame> = Vec::new();
    let mut now = 0u64;
    let mut rest = data;
    let mut frames = 0u64;
    while rest.len() >= 4 {
        let port = PortId(u16::from(rest[0]) % nports as u16);
        now += u64::from(rest[1]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        rest = &rest[4..];
        let take = len.min(rest.len());
        let mut f = Frame::from_bytes(port, &rest[..take]);
        f.ingress = port;
        batch.push(f);
        rest = &rest[take..];
        frames += 1;
        if batch.len() == 8 || rest.len() < 4 {
            out.clear();
            let t = Timestamp::from_secs(now);
            // Only frames addressed to a gateway MAC may leave their network (routed).
            let routed: Vec<bool> = batch
                .iter()
                .map(|f| {
                    let d = p.port(f.ingress).expect("ingress").domain;
                    let gw = p.domain(d).and_then(|d| d.gateway).map(|g| g.mac.0);
                    f.len() >= 6 && gw.is_some_and(|m| f.data()[..6] == m)
                })
                .collect();
            p.process(&mut batch, t, &mut out);
            for (f, routed) in batch.iter().zip(routed) {
                let d = p.port(f.ingress).expect("ingress").domain;
                for e in p.egress(f) {
                    assert!(
                        e != f.ingress || f.action == Action::Reply || routed,
                        "sent back out of its ingress port"
                    );
                    assert!(
                        routed || p.port(e).expect("egress").domain == d,
                        "bridged across networks"
                    );
                }
            }
            for f in out.frames() {
                assert!(p.egress(f).count() >= 1, "emitted frame goes nowhere");
            }
            out.clear();
            p.tick(t, &mut out);
            for f in out.frames() {
                assert!(p.egress(f).count() >= 1, "emitted frame goes nowhere");
            }
            batch.clear();
            assert!(p.fdb().len() <= p.fdb().capacity(), "FDB over its bound");
            assert!(
                p.conntrack().len() <= p.conntrack().capacity(),
                "conntrack over its bound"
            );
            let _ = p.tracer().drain();
        }
    }
    // Let every pending resolution run out, so nothing stays held.
    for _ in 0..8 {
        now += 1;
        out.clear();
        p.tick(Timestamp::from_secs(now), &mut out);
    }
    let total = p.counters().total();
    assert_eq!(total.rx_frames, frames);
    assert_eq!(total.held, 0, "every held packet was settled");
    assert_eq!(p.neighbors().held(), 0, "no buffer is left in a queue");
    for c in &p.counters().ports {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "accounting invariant"
        );
        assert_eq!(c.dropped, c.drops.iter().sum::<u64>());
    }
}
