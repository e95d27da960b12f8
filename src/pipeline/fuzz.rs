//! The fuzzing harness, shared by `fuzz/fuzz_targets/pipeline.rs` and the test that
//! replays the saved corpus (`tests/fuzz_corpus.rs`), so CI runs every saved input.
//!
//! Input format, repeated until the bytes run out: one byte picks the ingress port,
//! one byte advances the clock (in seconds), two bytes (big-endian) give a length,
//! then that many bytes (or what is left) are the frame. Fuzzing finds frames that
//! make a stage panic or break the accounting invariant; both abort here.

use super::*;

/// The topology every fuzz input runs against: two domains with gateways and a
/// third without, small tables so that "full" paths are reached.
pub fn spec() -> Spec {
    let gw = |a: u8, b: u8| GatewaySpec {
        ip: Ipv4Addr::new(10, a, b, 1),
        prefix_len: 24,
        mac: MacAddr([2, 0x42, 10, a, b, 1]),
    };
    let port = |n: &str, d: u16| PortSpec {
        name: n.into(),
        domain: DomainId(d),
    };
    Spec {
        domains: vec![
            DomainSpec {
                name: "front".into(),
                mtu: 1500,
                gateway: Some(gw(1, 0)),
            },
            DomainSpec {
                name: "back".into(),
                mtu: 9000,
                gateway: Some(gw(2, 0)),
            },
            DomainSpec {
                name: "plain".into(),
                mtu: 576,
                gateway: None,
            },
        ],
        ports: vec![
            port("a", 0),
            port("b", 0),
            port("c", 1),
            port("d", 1),
            port("e", 2),
            port("f", 2),
        ],
        fdb_max: 16,
        fdb_aging_secs: 30,
    }
}

/// Runs one fuzz input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let spec = spec();
    let nports = spec.ports.len();
    let mut p = Pipeline::new(spec).expect("fuzz spec is valid");
    p.tracer().start(u32::MAX, None);
    let mut out = Emitter::with_capacity(8);
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
            p.process(&mut batch, t, &mut out);
            for f in &batch {
                let d = p.port(f.ingress).expect("ingress").domain;
                for e in p.egress(f) {
                    assert!(
                        e != f.ingress || f.action == Action::Reply,
                        "sent back out of its ingress port"
                    );
                    assert_eq!(
                        p.port(e).expect("egress").domain,
                        d,
                        "crossed bridge domains"
                    );
                }
            }
            for f in out.frames() {
                assert!(p.egress(f).count() >= 1, "emitted frame goes nowhere");
            }
            p.tick(t);
            batch.clear();
            assert!(p.fdb().len() <= p.fdb().capacity(), "FDB over its bound");
            let _ = p.tracer().drain();
        }
    }
    let total = p.counters().total();
    assert_eq!(total.rx_frames, frames);
    for c in &p.counters().ports {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped,
            "accounting invariant"
        );
        assert_eq!(c.dropped, c.drops.iter().sum::<u64>());
    }
}
