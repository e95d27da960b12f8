//! Several workers over the same tables: what one learns the other uses, a packet one
//! queues the other releases, and the merged counters still add up.

use super::*;

#[test]
fn workers_share_the_tables_and_their_counters_add_up() {
    let mut w1 = pipeline();
    let mut w2 = w1.worker();
    // w1 learns a's MAC; w2 forwards to it without flooding.
    run(&mut w1, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 0);
    assert_eq!(f.action, Action::Forward(A));
    // Only the first worker keeps the tables' time: ticks of the second age nothing.
    w2.tick(Timestamp::from_secs(400), &mut Emitter::with_capacity(4));
    assert!(w1.fdb().lookup(DomainId(0), mac(2)).is_some());
    w1.tick(Timestamp::from_secs(400), &mut Emitter::with_capacity(4));
    assert!(w1.fdb().lookup(DomainId(0), mac(2)).is_none());
    let total = Pipeline::merged_counters([w1.counters(), w2.counters()]);
    assert_eq!(total.ports[A.index()].rx_frames, 1);
    assert_eq!(total.ports[B.index()].forwarded, 1);
    assert_eq!(total.events(Event::FdbLearned), 2);
}

#[test]
fn a_packet_queued_by_one_worker_is_released_by_another() {
    // A network with a gateway, two ports; 172.17.0.9 is resolved only later.
    let mut w1 = pipeline();
    let mut w2 = w1.worker();
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(mac(2).0, GW_MAC.0)
        .ipv4(ip(2).octets(), [172, 17, 0, 9], 64)
        .udp(1, 2)
        .write(&mut pkt, b"x")
        .unwrap();
    let (f, _) = run(&mut w1, A, &pkt, 0);
    // Within one network, via the gateway: routed back into the same network.
    assert_eq!(f.action, Action::Held);
    let mut reply = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut reply, GW_MAC, mac(9), crate::wire::EtherType::ARP);
    crate::wire::arp::write(
        &mut reply[14..],
        crate::wire::arp::ArpOp::Reply,
        mac(9),
        Ipv4Addr::new(172, 17, 0, 9),
        GW_MAC,
        GW_IP,
    );
    let (_, emitted) = run(&mut w2, B, &reply, 0);
    assert_eq!(emitted.len(), 1, "w2 released w1's packet");
    let total = Pipeline::merged_counters([w1.counters(), w2.counters()]);
    let a = total.ports[A.index()];
    assert_eq!((a.rx_frames, a.forwarded, a.held), (1, 1, 0));
    for c in &total.ports {
        assert_eq!(c.rx_frames, c.forwarded + c.consumed + c.dropped + c.held);
    }
}
