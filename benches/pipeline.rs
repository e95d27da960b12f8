//! ns per frame through the pipeline, batch by batch, without I/O.
//!
//! `cargo bench --bench pipeline` — each benchmark runs a batch of 64 frames through
//! `Pipeline::process` and reports time per frame (criterion's throughput in
//! elements/s is frames/s).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;
use switchyard::pipeline::*;
use switchyard::wire::MacAddr;

const BATCH: usize = 64;

fn spec(ports: u16) -> Spec {
    Spec {
        domains: vec![DomainSpec {
            name: "default".into(),
            mtu: 1500,
            gateway: Some(GatewaySpec {
                ip: Ipv4Addr::new(172, 17, 0, 1),
                prefix_len: 16,
                mac: MacAddr([2, 0x42, 172, 17, 0, 1]),
            }),
        }],
        ports: (0..ports)
            .map(|i| PortSpec {
                name: format!("p{i}"),
                domain: DomainId(0),
            })
            .collect(),
        fdb_max: 8192,
        fdb_aging_secs: 300,
    }
}

fn mac(n: u16) -> MacAddr {
    MacAddr([2, 0x42, 172, 17, (n >> 8) as u8, n as u8])
}

fn udp_frame(src: MacAddr, dst: MacAddr, payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([172, 17, 0, 2], [172, 17, 0, 3], 64)
        .udp(4000, 5000)
        .write(&mut v, &vec![0u8; payload])
        .unwrap();
    v
}

/// Known unicast between 8 hosts on 8 ports: learn (refresh) + lookup + forward.
fn l2_known_unicast(c: &mut Criterion) {
    let mut g = c.benchmark_group("l2");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut p = Pipeline::new(spec(8)).unwrap();
    let mut out = Emitter::with_capacity(BATCH);
    // Teach the FDB every host first.
    let mut warm: Vec<Frame> = (0..8)
        .map(|i| Frame::from_bytes(PortId(i), &udp_frame(mac(i + 2), MacAddr::BROADCAST, 18)))
        .collect();
    p.process(&mut warm, Timestamp::from_secs(1), &mut out);
    let templates: Vec<(PortId, Vec<u8>)> = (0..BATCH as u16)
        .map(|i| {
            let (s, d) = (i % 8, (i + 3) % 8);
            (PortId(s), udp_frame(mac(s + 2), mac(d + 2), 18))
        })
        .collect();
    let mut batch: Vec<Frame> = templates
        .iter()
        .map(|(port, b)| Frame::from_bytes(*port, b))
        .collect();
    g.bench_function("known_unicast_64B", |b| {
        b.iter(|| {
            out.clear();
            p.process(&mut batch, Timestamp::from_secs(2), &mut out);
        })
    });
    // Unknown destinations: every frame floods to 7 ports.
    let mut p2 = Pipeline::new(spec(8)).unwrap();
    let mut flood: Vec<Frame> = (0..BATCH as u16)
        .map(|i| Frame::from_bytes(PortId(i % 8), &udp_frame(mac(i % 8 + 2), mac(1000 + i), 18)))
        .collect();
    g.bench_function("unknown_unicast_flood_64B", |b| {
        b.iter(|| {
            out.clear();
            p2.process(&mut flood, Timestamp::from_secs(2), &mut out);
        })
    });
    // A MAC-learning storm: a new source MAC in every frame, table far from full.
    g.bench_function("learn_new_macs_64B", |b| {
        let mut n: u32 = 0;
        b.iter_batched_ref(
            || {
                let mut p = Pipeline::new(spec(8)).unwrap();
                p.tick(Timestamp::from_secs(0));
                let frames: Vec<Frame> = (0..BATCH)
                    .map(|_| {
                        n = n.wrapping_add(1);
                        let src = MacAddr([2, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 7]);
                        Frame::from_bytes(PortId((n % 8) as u16), &udp_frame(src, mac(2), 18))
                    })
                    .collect();
                (p, frames)
            },
            |(p, frames)| {
                let mut out = Emitter::with_capacity(4);
                p.process(frames, Timestamp::from_secs(2), &mut out);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, l2_known_unicast);
criterion_main!(benches);
