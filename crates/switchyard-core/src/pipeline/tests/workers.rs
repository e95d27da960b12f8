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

/// The FDB cache events of one worker: (hits, misses).
fn fdb_cache(p: &Pipeline) -> (u64, u64) {
    let c = p.counters();
    (
        c.events(Event::FdbCacheHits),
        c.events(Event::FdbCacheMisses),
    )
}

#[test]
fn a_mac_moved_on_one_worker_is_followed_by_the_others_next_frame() {
    let mut w1 = pipeline();
    let mut w2 = w1.worker();
    run(&mut w1, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    // w2 forwards to it twice; the second time its own cache answers.
    for _ in 0..2 {
        let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 0);
        assert_eq!(f.action, Action::Forward(A));
    }
    let (hits, _) = fdb_cache(&w2);
    assert_eq!(
        hits, 1,
        "the second frame's lookup (its source is new the first time)"
    );
    // The MAC shows up on port c, on w1: w2's very next frame goes to c.
    run(&mut w1, C, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 0);
    assert_eq!(f.action, Action::Forward(C));
    // Back on a, seen by w2 this time (whose cache still remembers a from before
    // the move): a move, decided and counted as without a cache.
    run(&mut w2, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    let (f, _) = run(&mut w1, B, &udp(mac(3), mac(2), 10), 0);
    assert_eq!(f.action, Action::Forward(A));
    let total = Pipeline::merged_counters([w1.counters(), w2.counters()]);
    assert_eq!(total.events(Event::FdbMoved), 2);
    assert_eq!(total.events(Event::FdbLearned), 2);
}

#[test]
fn a_mac_move_flood_across_workers_is_followed_frame_by_frame() {
    let mut w = [pipeline(), pipeline()];
    w[1] = w[0].worker();
    run(&mut w[0], B, &udp(mac(3), MacAddr::BROADCAST, 10), 0);
    run(&mut w[1], B, &udp(mac(3), MacAddr::BROADCAST, 10), 0);
    // One worker sees mac 2 on a port, the other forwards to it at once: always to
    // the port it was seen on last, all within one second.
    for i in 0..100usize {
        let port = if i % 3 == 0 { A } else { C };
        let (seen, fwd) = (i % 2, 1 - i % 2);
        run(&mut w[seen], port, &udp(mac(2), MacAddr::BROADCAST, 10), 1);
        let (f, _) = run(&mut w[fwd], B, &udp(mac(3), mac(2), 10), 1);
        assert_eq!(f.action, Action::Forward(port), "frame {i}");
    }
    let total = Pipeline::merged_counters([w[0].counters(), w[1].counters()]);
    // Port a on frames 0, 3, 6, ...: a move at every change of port.
    let moves = (1..100)
        .filter(|i| (i % 3 == 0) != ((i - 1) % 3 == 0))
        .count();
    assert_eq!(total.events(Event::FdbMoved), moves as u64);
}

#[test]
fn an_aged_out_or_forgotten_mac_is_not_served_from_a_workers_cache() {
    let mut w1 = pipeline();
    let mut w2 = w1.worker();
    run(&mut w1, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    for _ in 0..2 {
        let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 0);
        assert_eq!(f.action, Action::Forward(A));
    }
    // Aged out by the worker that keeps the tables' time: w2 floods.
    w1.tick(Timestamp::from_secs(400), &mut Emitter::with_capacity(4));
    assert!(w1.fdb().lookup(DomainId(0), mac(2)).is_none());
    let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 400);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    // Learned again and cached again; then forgotten: w2 floods again.
    run(&mut w1, A, &udp(mac(2), MacAddr::BROADCAST, 10), 400);
    let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 400);
    assert_eq!(f.action, Action::Forward(A));
    assert!(w1.fdb().forget(DomainId(0), mac(2)));
    let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 400);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    // A MAC that w2 itself refreshed this second, aged out meanwhile, is learned
    // anew when it is seen again (not taken for a refresh from the cache).
    run(&mut w2, A, &udp(mac(2), MacAddr::BROADCAST, 10), 401);
    w1.fdb().forget(DomainId(0), mac(2));
    let before = w2.counters().events(Event::FdbLearned);
    run(&mut w2, A, &udp(mac(2), MacAddr::BROADCAST, 10), 401);
    assert_eq!(w2.counters().events(Event::FdbLearned), before + 1);
}

#[test]
fn a_move_in_one_network_leaves_the_others_cached_answers_alone() {
    let mut w1 = pipeline();
    let mut w2 = w1.worker();
    // The same MAC in both networks, on a and on x.
    run(&mut w1, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    run(&mut w1, X, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    for _ in 0..2 {
        let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 0);
        assert_eq!(f.action, Action::Forward(A));
    }
    let (f, _) = run(&mut w2, Y, &udp(mac(4), mac(2), 10), 0);
    assert_eq!(f.action, Action::Forward(X), "the other network's entry");
    // It moves to y in network "other", again and again (within one second).
    for port in [Y, X, Y] {
        run(&mut w1, port, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    }
    // Network "default" is untouched: w2 answers its frame from its cache alone.
    let before = fdb_cache(&w2);
    let (f, _) = run(&mut w2, B, &udp(mac(3), mac(2), 10), 0);
    assert_eq!(f.action, Action::Forward(A));
    assert_eq!(fdb_cache(&w2), (before.0 + 2, before.1));
    // In "other", mac 2 is now on y, the port this frame came in on.
    let (f, _) = run(&mut w2, Y, &udp(mac(4), mac(2), 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::SamePort));
}
