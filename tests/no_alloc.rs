//! The hot path does not allocate: after warm-up, processing batches of every common
//! kind of frame (known unicast, flood, ARP for the gateway, ping to the gateway,
//! MAC learning, drops) makes zero heap allocations. Counted with a global allocator
//! that counts, so this runs without root.

use std::net::Ipv4Addr;
use switchyard_core::pipeline::*;
use switchyard_core::wire::{Ipv4Cidr, MacAddr};
use switchyard_testkit::alloc::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

fn frames() -> Vec<(PortId, Vec<u8>)> {
    let gw = MacAddr([2, 0x42, 10, 0, 0, 1]);
    let m = |n: u8| MacAddr([2, 0x42, 10, 0, 0, n]);
    let udp = |s: u8, d: MacAddr| {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(m(s).0, d.0)
            .ipv4([10, 0, 0, s], [10, 0, 0, 9], 64)
            .udp(1, 2)
            .write(&mut v, &[0u8; 18])
            .unwrap();
        v
    };
    let mut arp = vec![0u8; 42];
    switchyard_core::wire::ethernet::write_header(
        &mut arp,
        MacAddr::BROADCAST,
        m(2),
        switchyard_core::wire::EtherType::ARP,
    );
    switchyard_core::wire::arp::write(
        &mut arp[14..],
        switchyard_core::wire::arp::ArpOp::Request,
        m(2),
        Ipv4Addr::new(10, 0, 0, 2),
        MacAddr::ZERO,
        Ipv4Addr::new(10, 0, 0, 1),
    );
    let mut ping = Vec::new();
    etherparse::PacketBuilder::ethernet2(m(3).0, gw.0)
        .ipv4([10, 0, 0, 3], [10, 0, 0, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"payload")
        .unwrap();
    let routed = |dst: [u8; 4], ttl: u8, payload: usize, df: bool| {
        let mut ip =
            etherparse::Ipv4Header::new(0, ttl, etherparse::IpNumber::UDP, [10, 0, 0, 2], dst)
                .unwrap();
        ip.dont_fragment = df;
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(m(2).0, gw.0)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(1, 2)
            .write(&mut v, &vec![0u8; payload])
            .unwrap();
        v
    };
    // The router endpoint on network m answers switchyard's ARP.
    let r_mac = MacAddr([2, 0x42, 10, 1, 0, 5]);
    let mut arp_reply = vec![0u8; 42];
    switchyard_core::wire::ethernet::write_header(
        &mut arp_reply,
        MacAddr([2, 0x42, 10, 1, 0, 1]),
        r_mac,
        switchyard_core::wire::EtherType::ARP,
    );
    switchyard_core::wire::arp::write(
        &mut arp_reply[14..],
        switchyard_core::wire::arp::ArpOp::Reply,
        r_mac,
        Ipv4Addr::new(10, 1, 0, 5),
        MacAddr([2, 0x42, 10, 1, 0, 1]),
        Ipv4Addr::new(10, 1, 0, 1),
    );
    vec![
        (PortId(3), arp_reply), // neighbor learned (or refreshed)
        (PortId(0), routed([10, 1, 0, 5], 64, 100, true)), // routed to a known neighbor
        (PortId(0), routed([10, 1, 0, 5], 64, 1400, false)), // routed and fragmented
        (PortId(0), routed([10, 1, 0, 5], 1, 10, false)), // TTL expired: ICMP error
        (PortId(0), routed([10, 1, 0, 99], 64, 10, false)), // unresolved: queued, ARP sent
        (PortId(0), routed([192, 0, 2, 1], 64, 10, false)), // no route: ICMP error
        (PortId(0), udp(2, m(3))), // known unicast
        (PortId(1), udp(3, m(2))), // known unicast back
        (PortId(0), udp(2, m(77))), // unknown unicast: flood
        (PortId(2), udp(4, MacAddr::BROADCAST)),
        (PortId(0), arp),           // ARP for the gateway: flood + emitted reply
        (PortId(1), ping),          // ping the gateway: reply in place
        (PortId(2), vec![1, 2, 3]), // runt: drop
        (PortId(1), udp(3, m(3))),  // to itself: same-port drop after learning
    ]
}

#[test]
fn the_pipeline_does_not_allocate_per_packet() {
    let dom = |name: &str, net: u8, mtu: u16| DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, net, 0, 0), 24).unwrap(),
        mtu,
        gateway: Some(GatewaySpec {
            ip: Ipv4Addr::new(10, net, 0, 1),
            mac: MacAddr([2, 0x42, 10, net, 0, 1]),
        }),
        mode: DomainMode::Bridge,
        proxy_arp: false,
        masquerade: false,
        external: false,
        dns: false,
        guard: Default::default(),
    };
    let mut ports: Vec<PortSpec> = (0..3)
        .map(|i| PortSpec::new(format!("p{i}"), DomainId(0)))
        .collect();
    ports.push(PortSpec::new("r", DomainId(1)));
    let spec = Spec {
        fdb_max: 1024,
        allow: vec![(DomainId(0), DomainId(1))],
        ..Spec::new(vec![dom("n", 0, 1500), dom("m", 1, 1000)], ports)
    };
    let mut p = Pipeline::new(spec).unwrap();
    let templates = frames();
    let mut batch: Vec<Frame> = templates
        .iter()
        .map(|(port, b)| Frame::from_bytes(*port, b))
        .collect();
    let mut out = Emitter::with_capacity(64);
    // A MAC-learning storm's worth of new sources, prepared before counting.
    let mut learners: Vec<Frame> = (0..200u16)
        .map(|i| {
            let mut f = Frame::from_bytes(PortId(i % 3), &templates[0].1);
            f.data_mut()[6..12].copy_from_slice(&[2, 9, 0, 0, (i >> 8) as u8, i as u8]);
            f
        })
        .collect();

    let mut run = |p: &mut Pipeline, batch: &mut Vec<Frame>, learners: &mut Vec<Frame>, t: u64| {
        for (f, (port, bytes)) in batch.iter_mut().zip(&templates) {
            f.load(bytes);
            f.ingress = *port;
        }
        out.clear();
        p.process(batch, Timestamp::from_secs(t), &mut out);
        p.process(learners, Timestamp::from_secs(t), &mut out);
        p.tick(Timestamp::from_secs(t), &mut out);
        for f in batch.iter() {
            let _ = p.egress(f).count();
        }
        out.len()
    };
    // Warm-up: the first pass learns the MACs (into space reserved up front).
    run(&mut p, &mut batch, &mut learners, 1);
    let mut emitted = 0;
    let allocs = ALLOC.count(|| {
        for t in 2..50 {
            emitted += run(&mut p, &mut batch, &mut learners, t);
        }
    });
    assert!(emitted > 0, "ARP replies were made");
    assert_eq!(allocs, 0, "allocations on the hot path");
    assert_eq!(p.counters().events(Event::ArpReplies), 49);
}
