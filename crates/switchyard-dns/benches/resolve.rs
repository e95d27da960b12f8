//! Answering an A query from a zone of 1000 names: the cost of one local answer,
//! parse to response bytes.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use simple_dns::{Packet, Question, CLASS, TYPE};
use switchyard_dns::{Counters, Outcome, Resolver, Transport, Zone, Zones};

fn resolve(c: &mut Criterion) {
    let mut zone = Zone::new(
        "app",
        Ipv4Addr::new(10, 1, 0, 1),
        Ipv4Addr::new(10, 1, 0, 0),
        16,
        Some("app.internal"),
    );
    for i in 0..1000u32 {
        zone.add(
            &format!("svc{i}"),
            Ipv4Addr::from(0x0a01_0000 + 2 + i),
            true,
        );
    }
    let mut zones = Zones::default();
    zones.insert(1, zone);
    let upstream = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 53), 53);
    let mut resolver = Resolver::new(
        vec![upstream],
        1024,
        2_000_000_000,
        Arc::new(Counters::default()),
    );
    resolver.set_zones(Arc::new(zones));

    let mut query = Packet::new_query(0x1234);
    query.questions.push(Question::new(
        "svc500.app.internal".try_into().unwrap(),
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    let query = query.build_bytes_vec().unwrap();
    let mut out = Vec::with_capacity(512);
    c.bench_function("dns_answer_a_from_1000_names", |b| {
        b.iter(|| {
            let o = resolver.query(1, black_box(&query), Transport::Udp, 0, (), &mut out);
            assert_eq!(o, Outcome::Answer);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, resolve);
criterion_main!(benches);
