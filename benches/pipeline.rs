//! ns per frame through the pipeline, batch by batch, without I/O.
//!
//! `cargo bench --bench pipeline` — each benchmark runs a batch of 64 frames through
//! `Pipeline::process` and reports the time per batch; criterion's throughput line
//! (elements/s) is frames per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;
use switchyard_core::pipeline::*;
use switchyard_core::wire::{Ipv4Cidr, MacAddr};

const BATCH: usize = 64;

fn gw_mac(net: u8) -> MacAddr {
    MacAddr([2, 0x42, 10, net, 0, 1])
}

fn host_mac(net: u8, n: u8) -> MacAddr {
    MacAddr([2, 0x42, 10, net, 0, n])
}

fn domain(name: &str, net: u8) -> DomainSpec {
    DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, net, 0, 0), 24).unwrap(),
        mtu: 1500,
        gateway: Some(GatewaySpec {
            ip: Ipv4Addr::new(10, net, 0, 1),
            mac: gw_mac(net),
        }),
        mode: DomainMode::Bridge,
        proxy_arp: false,
        masquerade: false,
        external: false,
        dns: false,
        guard: Default::default(),
    }
}

/// Two joined networks, `front` (ports 0..8) and `back` (ports 8..16).
fn spec() -> Spec {
    let ports = (0..16)
        .map(|i| PortSpec::new(format!("p{i}"), DomainId(if i < 8 { 0 } else { 1 })))
        .collect();
    Spec {
        allow: vec![(DomainId(0), DomainId(1))],
        ..Spec::new(vec![domain("front", 1), domain("back", 2)], ports)
    }
}

fn udp_frame(
    src: MacAddr,
    dst: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    payload: usize,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src_ip.octets(), dst_ip.octets(), 64)
        .udp(4000, 5000)
        .write(&mut v, &vec![0u8; payload])
        .unwrap();
    v
}

fn arp_reply(net: u8, n: u8) -> Vec<u8> {
    let mut v = vec![0u8; 42];
    switchyard_core::wire::ethernet::write_header(
        &mut v,
        gw_mac(net),
        host_mac(net, n),
        switchyard_core::wire::EtherType::ARP,
    );
    switchyard_core::wire::arp::write(
        &mut v[14..],
        switchyard_core::wire::arp::ArpOp::Reply,
        host_mac(net, n),
        Ipv4Addr::new(10, net, 0, n),
        gw_mac(net),
        Ipv4Addr::new(10, net, 0, 1),
    );
    v
}

/// Runs `templates` as one batch per iteration. The paths measured here rewrite only
/// headers in place (MACs, TTL, addresses, ports, checksums), so only the first 54
/// bytes (Ethernet, IPv4, TCP) are restored between iterations, not the whole frame:
/// the time is the pipeline's, not a memcpy's.
fn bench_batch(
    c: &mut Criterion,
    group: &str,
    name: &str,
    p: &mut Pipeline,
    templates: &[(PortId, Vec<u8>)],
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(templates.len() as u64));
    let mut batch: Vec<Frame> = templates
        .iter()
        .map(|(port, b)| Frame::from_bytes(*port, b))
        .collect();
    let mut out = Emitter::with_capacity(2 * BATCH);
    g.bench_function(name, |b| {
        b.iter(|| {
            for (f, (port, bytes)) in batch.iter_mut().zip(templates) {
                let n = bytes.len().min(54);
                f.data_mut()[..n].copy_from_slice(&bytes[..n]);
                f.ingress = *port;
            }
            out.clear();
            p.process(&mut batch, Timestamp::from_secs(2), &mut out);
        })
    });
    g.finish();
}

/// Runs `templates` as one batch per iteration on each of two workers over the same
/// tables, each on a thread of its own and both at once: what the workers cost each
/// other in the shared tables (their locks and the cache lines those move between
/// cores). The time is the wall time of the pair of batches, so the throughput line
/// counts the frames of both.
fn bench_two_workers(
    c: &mut Criterion,
    group: &str,
    name: &str,
    p: &Pipeline,
    templates: &[(PortId, Vec<u8>)],
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(2 * templates.len() as u64));
    let mut workers = [p.worker(), p.worker()];
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = std::sync::Barrier::new(2);
            let begun = std::time::Instant::now();
            std::thread::scope(|s| {
                for w in workers.iter_mut() {
                    let start = &start;
                    s.spawn(move || {
                        let mut batch: Vec<Frame> = templates
                            .iter()
                            .map(|(port, b)| Frame::from_bytes(*port, b))
                            .collect();
                        let mut out = Emitter::with_capacity(2 * BATCH);
                        start.wait();
                        for _ in 0..iters {
                            for (f, (port, bytes)) in batch.iter_mut().zip(templates) {
                                let n = bytes.len().min(54);
                                f.data_mut()[..n].copy_from_slice(&bytes[..n]);
                                f.ingress = *port;
                            }
                            out.clear();
                            w.process(&mut batch, Timestamp::from_secs(2), &mut out);
                        }
                    });
                }
            });
            begun.elapsed()
        })
    });
    g.finish();
}

fn l2(c: &mut Criterion) {
    // Known unicast between 8 hosts on 8 ports: learn (refresh) + lookup + forward.
    let mut p = Pipeline::new(spec()).unwrap();
    let ip = |n: u8| Ipv4Addr::new(10, 1, 0, n);
    let mut out = Emitter::with_capacity(BATCH);
    let mut warm: Vec<Frame> = (0..8u8)
        .map(|i| {
            Frame::from_bytes(
                PortId(i.into()),
                &udp_frame(
                    host_mac(1, i + 2),
                    MacAddr::BROADCAST,
                    ip(i + 2),
                    ip(255),
                    18,
                ),
            )
        })
        .collect();
    p.process(&mut warm, Timestamp::from_secs(1), &mut out);
    let known: Vec<(PortId, Vec<u8>)> = (0..BATCH as u8)
        .map(|i| {
            let (s, d) = (i % 8, (i + 3) % 8);
            (
                PortId(s.into()),
                udp_frame(
                    host_mac(1, s + 2),
                    host_mac(1, d + 2),
                    ip(s + 2),
                    ip(d + 2),
                    18,
                ),
            )
        })
        .collect();
    bench_batch(c, "l2", "known_unicast_64B", &mut p, &known);
    bench_two_workers(c, "l2", "known_unicast_64B_2_workers", &p, &known);

    // The same with every frame traced (a live trace running): what the sentences,
    // the summary and the verdict cost, and taking the finished traces out as the
    // dataplane does.
    {
        let mut g = c.benchmark_group("l2");
        g.throughput(Throughput::Elements(known.len() as u64));
        let mut batch: Vec<Frame> = known
            .iter()
            .map(|(port, b)| Frame::from_bytes(*port, b))
            .collect();
        p.tracer().start(u32::MAX, &[]);
        g.bench_function("known_unicast_64B_traced", |b| {
            b.iter(|| {
                for (f, (port, bytes)) in batch.iter_mut().zip(&known) {
                    f.data_mut()[..bytes.len().min(54)]
                        .copy_from_slice(&bytes[..bytes.len().min(54)]);
                    f.ingress = *port;
                }
                out.clear();
                p.process(&mut batch, Timestamp::from_secs(2), &mut out);
                while p.tracer().next_frame().is_some() {}
            })
        });
        p.tracer().stop();
        g.finish();
    }

    // Unknown destinations: every frame floods to the 7 other ports.
    let unknown: Vec<(PortId, Vec<u8>)> = (0..BATCH as u8)
        .map(|i| {
            (
                PortId((i % 8).into()),
                udp_frame(host_mac(1, i % 8 + 2), host_mac(9, i), ip(2), ip(3), 18),
            )
        })
        .collect();
    bench_batch(c, "l2", "unknown_unicast_flood_64B", &mut p, &unknown);

    // A MAC-learning storm: a new source MAC in every frame, the table far from full.
    // Each timed batch runs on a pipeline that has already learned a few thousand MACs
    // (so the table's memory is warm); only `process` is timed. Once as usual, once
    // with someone listening to table events (an event per frame, kept in the
    // worker's log and drained after the batch, as the dataplane does, untimed).
    let mut g = c.benchmark_group("l2");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, events) in [
        ("learn_new_macs_64B", false),
        ("learn_new_macs_64B_events_on", true),
    ] {
        g.bench_function(name, |b| {
            let new_pipeline = || {
                let mut p = Pipeline::new(spec()).unwrap();
                if events {
                    p.events().start(1024);
                }
                p
            };
            let mut p = new_pipeline();
            let mut out = Emitter::with_capacity(4);
            let mut n: u32 = 0;
            let mut frames: Vec<Frame> = (0..BATCH).map(|_| Frame::new()).collect();
            let template = udp_frame(host_mac(1, 2), host_mac(1, 3), ip(2), ip(3), 18);
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    if p.fdb().len() + BATCH > 6000 {
                        p = new_pipeline();
                    }
                    for f in frames.iter_mut() {
                        n = n.wrapping_add(1);
                        f.load(&template);
                        f.data_mut()[6..12].copy_from_slice(&[
                            2,
                            0,
                            (n >> 16) as u8,
                            (n >> 8) as u8,
                            n as u8,
                            7,
                        ]);
                        f.ingress = PortId((n % 8) as u16);
                    }
                    out.clear();
                    let start = std::time::Instant::now();
                    p.process(&mut frames, Timestamp::from_secs(2), &mut out);
                    total += start.elapsed();
                    p.events().drain(|e| {
                        std::hint::black_box(e);
                    });
                }
                total
            })
        });
    }
    g.finish();
}

fn routed(c: &mut Criterion) {
    // front hosts send to 8 back hosts whose MACs switchyard has resolved: validate,
    // TTL, FIB lookup, isolation check, neighbor lookup, MAC rewrite, FDB lookup.
    let mut p = Pipeline::new(spec()).unwrap();
    let mut out = Emitter::with_capacity(BATCH);
    let mut warm: Vec<Frame> = (0..8u8)
        .map(|i| Frame::from_bytes(PortId(8 + u16::from(i)), &arp_reply(2, i + 2)))
        .collect();
    p.process(&mut warm, Timestamp::from_secs(1), &mut out);
    let frames: Vec<(PortId, Vec<u8>)> = (0..BATCH as u8)
        .map(|i| {
            let (s, d) = (i % 8, (i + 5) % 8);
            let src_ip = Ipv4Addr::new(10, 1, 0, s + 2);
            let dst_ip = Ipv4Addr::new(10, 2, 0, d + 2);
            (
                PortId(s.into()),
                udp_frame(host_mac(1, s + 2), gw_mac(1), src_ip, dst_ip, 18),
            )
        })
        .collect();
    bench_batch(c, "routed", "known_neighbor_64B", &mut p, &frames);
    let big: Vec<(PortId, Vec<u8>)> = frames
        .iter()
        .map(|(port, f)| {
            let ip = |b: &[u8], at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
            (
                *port,
                udp_frame(host_mac(1, f[11]), gw_mac(1), ip(f, 26), ip(f, 30), 1472),
            )
        })
        .collect();
    bench_batch(c, "routed", "known_neighbor_1500B", &mut p, &big);
}

fn tcp_frame(
    (src_mac, dst_mac): (MacAddr, MacAddr),
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    syn: bool,
    payload: usize,
) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1, 64000);
    let b = if syn { b.syn() } else { b.ack(1) };
    b.write(&mut v, &vec![0u8; payload]).unwrap();
    v
}

fn nat(c: &mut Criterion) {
    // front (masquerade, ports 0..8) and outside (external, port 8): 8 established
    // flows from 8 hosts to one server outside, masqueraded; and their replies.
    let mut outside = domain("outside", 100);
    outside.external = true;
    let mut front = domain("front", 1);
    front.masquerade = true;
    let mut ports: Vec<PortSpec> = (0..8)
        .map(|i| PortSpec::new(format!("p{i}"), DomainId(0)))
        .collect();
    ports.push(PortSpec::new("out", DomainId(1)));
    let mut p = Pipeline::new(Spec::new(vec![front, outside], ports)).unwrap();
    let mut out = Emitter::with_capacity(2 * BATCH);
    let server = Ipv4Addr::new(10, 100, 0, 9);
    let uplink = Ipv4Addr::new(10, 100, 0, 1);
    let mut warm: Vec<Frame> = vec![Frame::from_bytes(PortId(8), &arp_reply(100, 9))];
    warm.extend((0..8u8).map(|i| Frame::from_bytes(PortId(u16::from(i)), &arp_reply(1, i + 2))));
    warm.extend((0..8u8).map(|i| {
        let h = Ipv4Addr::new(10, 1, 0, i + 2);
        Frame::from_bytes(
            PortId(u16::from(i)),
            &tcp_frame(
                (host_mac(1, i + 2), gw_mac(1)),
                (h, 40000),
                (server, 80),
                true,
                0,
            ),
        )
    }));
    p.process(&mut warm, Timestamp::from_secs(1), &mut out);
    assert_eq!(p.conntrack().len(), 8, "8 flows tracked");
    let outbound: Vec<(PortId, Vec<u8>)> = (0..BATCH as u8)
        .map(|i| {
            let s = i % 8;
            let h = Ipv4Addr::new(10, 1, 0, s + 2);
            (
                PortId(s.into()),
                tcp_frame(
                    (host_mac(1, s + 2), gw_mac(1)),
                    (h, 40000),
                    (server, 80),
                    false,
                    6,
                ),
            )
        })
        .collect();
    bench_batch(c, "nat", "masquerade_established_64B", &mut p, &outbound);
    bench_two_workers(
        c,
        "nat",
        "masquerade_established_64B_2_workers",
        &p,
        &outbound,
    );
    // Replies: the server answers the uplink on the port each flow was given (the
    // first kept 40000, the others could not), and each goes back to its own host.
    let mapped: Vec<u16> = {
        let mut v: Vec<(Ipv4Addr, u16)> = p
            .conntrack()
            .entries(Timestamp::from_secs(1))
            .into_iter()
            .map(|(c, _)| (c.orig.src, c.reply.dport))
            .collect();
        v.sort();
        v.into_iter().map(|(_, port)| port).collect()
    };
    let replies: Vec<(PortId, Vec<u8>)> = (0..BATCH)
        .map(|i| {
            (
                PortId(8),
                tcp_frame(
                    (host_mac(100, 9), gw_mac(100)),
                    (server, 80),
                    (uplink, mapped[i % 8]),
                    false,
                    6,
                ),
            )
        })
        .collect();
    bench_batch(c, "nat", "reply_established_64B", &mut p, &replies);
    let drops: u64 = p.counters().total().dropped;
    assert_eq!(
        drops, 0,
        "every measured frame was translated, none dropped"
    );
}

criterion_group!(benches, l2, routed, nat);
criterion_main!(benches);
