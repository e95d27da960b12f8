//! Changing the layout at runtime: ports and networks added and removed while the
//! tables keep what they know, workers taking up the new layout one by one, and the
//! tables purged of what a removed port or network left behind.

use super::nat::{a, hmac, nat_router_of, nat_spec, tcp, FA, OUT};
use super::*;
use crate::pipeline::neighbor::NeighborState;

const D0: DomainId = DomainId(0);

fn port(name: &str, d: u16) -> PortSpec {
    PortSpec::new(name, DomainId(d))
}

/// `spec(64)` with one more port, "d", in the default network: `PortId(5)`.
fn with_d() -> Spec {
    let mut s = spec(64);
    s.ports.push(port("d", 0));
    s
}

const D: PortId = PortId(5);

/// A network 10.8.0.0/24 with gateway 10.8.0.1.
fn net8() -> DomainSpec {
    DomainSpec {
        name: "eight".into(),
        subnet: "10.8.0.0/24".parse().unwrap(),
        mtu: 1500,
        gateway: Some(GatewaySpec {
            ip: Ipv4Addr::new(10, 8, 0, 1),
            mac: MacAddr([2, 0, 10, 8, 0, 1]),
        }),
        mode: DomainMode::Bridge,
        proxy_arp: false,
        masquerade: false,
        external: false,
        dns: false,
        guard: Default::default(),
    }
}

fn broadcast_from(p: &mut Pipeline, port: PortId, src: MacAddr, now: u64) -> Vec<PortId> {
    let (f, _) = run(p, port, &udp(src, MacAddr::BROADCAST, 10), now);
    assert_eq!(f.action, Action::Flood(D0));
    egress(p, &f)
}

/// rx = forwarded + consumed + dropped + held, on every port of every worker.
fn assert_accounted(workers: &[&Pipeline]) {
    let total = Pipeline::merged_counters(workers.iter().map(|w| w.counters()));
    for (i, c) in total.ports.iter().enumerate() {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "port {i}: {c:?}"
        );
    }
}

#[test]
fn a_port_added_at_runtime_is_flooded_to_and_forwarded_to() {
    let mut p = pipeline();
    run(&mut p, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    let layout = p.reshape(with_d()).unwrap();
    assert_eq!(p.ports().len(), 5, "nothing changes before adoption");
    p.adopt(&layout);
    assert_eq!(p.counters().ports.len(), 6, "counters grew");
    assert_eq!(p.port_by_name("d"), Some(D));
    // What the tables learned before is still known.
    let (f, _) = run(&mut p, D, &udp(mac(9), mac(2), 10), 1);
    assert_eq!(f.action, Action::Forward(A));
    assert_eq!(broadcast_from(&mut p, B, mac(3), 1), vec![A, C, D]);
    let (f, _) = run(&mut p, B, &udp(mac(3), mac(9), 10), 1);
    assert_eq!(f.action, Action::Forward(D), "learned on the new port");
    assert_eq!(p.counters().ports[D.index()].rx_frames, 1);
    assert_accounted(&[&p]);
}

#[test]
fn a_removed_port_is_no_longer_flooded_to_nor_forwarded_to_and_its_counters_are_zeroed() {
    let mut p = pipeline();
    run(&mut p, C, &udp(mac(4), MacAddr::BROADCAST, 10), 0);
    assert_eq!(p.counters().ports[C.index()].rx_frames, 1);
    let mut s = spec(64);
    s.ports[C.index()] = PortSpec::vacant();
    p.adopt(&p.reshape(s).unwrap());
    assert_eq!(p.counters().ports[C.index()], PortCounters::default());
    assert_eq!(p.ports().len(), 5, "the slot stays");
    assert!(p.ports()[C.index()].is_vacant());
    assert_eq!((p.port(C), p.port_by_name("")), (None, None));
    assert_eq!(broadcast_from(&mut p, A, mac(2), 1), vec![B]);
    // Its MAC is still in the FDB until forgotten, but not followed: flooded.
    assert_eq!(p.fdb().lookup(D0, mac(4)), Some(C));
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(4), 10), 1);
    assert_eq!((f.action, egress(&p, &f)), (Action::Flood(D0), vec![B]));
    let gone = p.forget_port(C, D0, Some(ip(4)), Some(mac(4)));
    assert_eq!(gone.fdb, 1);
    assert!(p.fdb().entries().iter().all(|(_, _, e)| e.port != C));
    // A frame on the vacant port (a what-if may name one) is dropped, not a panic.
    let mut f = Frame::from_bytes(C, &udp(mac(4), mac(2), 10));
    let t = p.what_if(&mut f, Timestamp::from_secs(2));
    assert_eq!(f.action, Action::Drop(DropReason::PortGone), "{t:?}");
    let (f, _) = run(&mut p, C, &udp(mac(4), mac(2), 10), 2);
    assert_eq!(f.action, Action::Drop(DropReason::PortGone));
    assert_eq!(p.fdb().lookup(D0, mac(4)), None, "nothing learned");
    assert_accounted(&[&p]);
}

#[test]
fn forget_port_clears_its_fdb_neighbor_and_conntrack_entries() {
    let mut p = nat_router_of(nat_spec(64, (1024, 65535), true));
    let fa_ip = a("10.1.0.2");
    // A masqueraded flow from fa, a published-port flow to it, and one from fb.
    let (f, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64),
        1,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    let (f, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 5555, "198.51.100.1", 8080, "S", 64),
        1,
    );
    assert_eq!(f.action, Action::Forward(FA));
    let (f, _) = run(
        &mut p,
        PortId(1),
        &tcp("10.1.0.3", 40001, "198.51.100.2", 80, "S", 64),
        1,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    let fdb_of = |p: &Pipeline| {
        let mut v: Vec<_> = p
            .fdb()
            .entries()
            .into_iter()
            .map(|(d, m, e)| (d, m, e.port))
            .collect();
        v.sort();
        v
    };
    let (fdb_before, ct_before) = (fdb_of(&p), p.conntrack().len());
    assert!(fdb_before.contains(&(D0, hmac(fa_ip), FA)));
    assert_eq!(
        p.neighbors().get(fa_ip).map(|n| n.state),
        Some(NeighborState::Reachable)
    );
    assert_eq!((ct_before, p.conntrack().zone_len(D0)), (3, 2));

    let mut s = nat_spec(64, (1024, 65535), true);
    s.ports[FA.index()] = PortSpec::vacant();
    s.nat.publish.retain(|p| p.target != fa_ip);
    p.adopt(&p.reshape(s).unwrap());
    let gone = p.forget_port(FA, D0, Some(fa_ip), Some(hmac(fa_ip)));
    assert_eq!(
        gone,
        Forgotten {
            fdb: 1,
            neighbors: 1,
            held: 0,
            conntrack: 2,
        }
    );
    let fdb_after = fdb_of(&p);
    let expected: Vec<_> = fdb_before.into_iter().filter(|e| e.2 != FA).collect();
    assert_eq!(fdb_after, expected, "only fa's MAC went");
    assert!(p.neighbors().get(fa_ip).is_none());
    assert!(p.neighbors().get(a("10.1.0.3")).is_some(), "fb's stays");
    let flows = p.conntrack().entries(p.now());
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].0.orig.src, a("10.1.0.3"));
    assert_eq!(p.conntrack().zone_len(D0), 1);
    // Forgetting again finds nothing.
    assert_eq!(
        p.forget_port(FA, D0, Some(fa_ip), Some(hmac(fa_ip))),
        Forgotten::default()
    );
}

#[test]
fn forget_port_frees_the_nat_ports_of_its_flows() {
    // One NAT port only: fb's flow finds it taken by fa's.
    let mut p = nat_router_of(nat_spec(64, (2000, 2000), true));
    let fb = PortId(1);
    let (f, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 2000, "198.51.100.2", 80, "S", 64),
        1,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    let from_fb = tcp("10.1.0.3", 2000, "198.51.100.2", 80, "S", 64);
    let (f, _) = run(&mut p, fb, &from_fb, 1);
    assert_eq!(f.action, Action::Drop(DropReason::NatExhausted));
    let mut s = nat_spec(64, (2000, 2000), true);
    s.ports[FA.index()] = PortSpec::vacant();
    p.adopt(&p.reshape(s).unwrap());
    let gone = p.forget_port(FA, D0, Some(a("10.1.0.2")), None);
    assert_eq!(gone.conntrack, 1);
    assert_eq!((p.conntrack().len(), p.conntrack().zone_len(D0)), (0, 0));
    let (f, _) = run(&mut p, fb, &from_fb, 2);
    assert_eq!(f.action, Action::Forward(OUT), "the port is free again");
    assert_eq!(p.conntrack().entries(p.now())[0].0.reply.dport, 2000);
    assert_accounted(&[&p]);
}

/// A UDP packet from `src` (on the default network) to `dst`, via the gateway.
fn routed(src: u8, dst: Ipv4Addr) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(src).0, GW_MAC.0)
        .ipv4(ip(src).octets(), dst.octets(), 64)
        .udp(1, 2)
        .write(&mut v, b"x")
        .unwrap();
    v
}

#[test]
fn forgetting_a_port_drops_the_packets_waiting_for_it_and_frees_its_own() {
    let mut p = pipeline();
    // b's packet waits for a's address, a's waits for 172.17.0.9: neither answers.
    let (f, _) = run(&mut p, B, &routed(3, ip(2)), 0);
    assert_eq!(f.action, Action::Held);
    let (f, _) = run(&mut p, A, &routed(2, ip(9)), 0);
    assert_eq!(f.action, Action::Held);
    assert_eq!(p.neighbors().held(), 2);
    let mut s = spec(64);
    s.ports[A.index()] = PortSpec::vacant();
    p.adopt(&p.reshape(s).unwrap());
    let gone = p.forget_port(A, D0, Some(ip(2)), Some(mac(2)));
    assert_eq!((gone.neighbors, gone.held), (1, 2));
    assert_eq!(p.neighbors().held(), 0);
    assert_eq!(p.neighbors().domain_usage(D0), (1, 0), "172.17.0.9 stays");
    // b's packet is booked as dropped; a's counters stay zero.
    p.tick(Timestamp::from_millis(100), &mut Emitter::with_capacity(4));
    let b = p.counters().ports[B.index()];
    assert_eq!((b.held, b.dropped), (0, 1));
    assert_eq!(b.drops[DropReason::NeighborFlushed as usize], 1);
    assert_eq!(p.counters().ports[A.index()], PortCounters::default());
    // 172.17.0.9's retries run out with nothing left to answer.
    p.tick(Timestamp::from_secs(5), &mut Emitter::with_capacity(4));
    assert_eq!(p.counters().ports[A.index()], PortCounters::default());
    assert_accounted(&[&p]);
}

#[test]
fn a_port_removed_from_the_end_of_the_list_stays_a_vacant_slot() {
    // d is the last port; its packet waits for 172.17.0.20, which never answers.
    let mut p = pipeline();
    p.adopt(&p.reshape(with_d()).unwrap());
    let (f, _) = run(&mut p, D, &routed(9, ip(20)), 0);
    assert_eq!(f.action, Action::Held);
    // Without d, a topology numbers its ports up to 4: the spec is one shorter.
    p.adopt(&p.reshape(spec(64)).unwrap());
    assert_eq!(p.ports().len(), 6, "the slot stays");
    assert!(p.ports()[D.index()].is_vacant());
    let gone = p.forget_port(D, D0, Some(ip(9)), Some(mac(9)));
    assert_eq!(gone.held, 1, "its packet is freed with it");
    assert_eq!(p.neighbors().held(), 0);
    // The retries run out with nothing booked to the gone port.
    p.tick(Timestamp::from_secs(5), &mut Emitter::with_capacity(4));
    assert_eq!(p.counters().ports[D.index()], PortCounters::default());
    // A port that takes the number later starts from zero.
    p.adopt(&p.reshape(with_d()).unwrap());
    run(&mut p, D, &udp(mac(30), MacAddr::BROADCAST, 10), 6);
    let d = p.counters().ports[D.index()];
    assert_eq!((d.rx_frames, d.forwarded, d.dropped, d.held), (1, 1, 0, 0));
    assert_accounted(&[&p]);
}

#[test]
fn a_network_added_at_runtime_answers_ping_and_routes_once_allowed_then_goes() {
    let mut p = pipeline();
    let gw8 = net8().gateway.unwrap();
    let n = D; // the new network's port
    let n_mac = MacAddr([2, 0, 10, 8, 0, 2]);
    let n_ip = Ipv4Addr::new(10, 8, 0, 2);
    let mut s = spec(64);
    s.domains.push(net8());
    s.ports.push(port("n", 2));
    p.adopt(&p.reshape(s.clone()).unwrap());
    assert_eq!(
        (p.domain_count(), p.local_domain(gw8.ip)),
        (3, Some(DomainId(2)))
    );
    let (f, _) = run(&mut p, n, &echo_request(n_mac, n_ip, gw8.mac, gw8.ip), 1);
    assert_eq!(f.action, Action::Reply, "ping to the new gateway answered");
    // 172.17.0.2 is known (it asked for the gateway): routed only once allowed.
    run(
        &mut p,
        A,
        &arp_request(mac(2), ip(2), GW_IP, MacAddr::BROADCAST),
        1,
    );
    let mut to_a = Vec::new();
    PacketBuilder::ethernet2(n_mac.0, gw8.mac.0)
        .ipv4(n_ip.octets(), ip(2).octets(), 64)
        .udp(1, 2)
        .write(&mut to_a, b"x")
        .unwrap();
    let (f, _) = run(&mut p, n, &to_a, 1);
    assert_eq!(f.action, Action::Drop(DropReason::Isolated));
    s.allow.push((D0, DomainId(2)));
    p.adopt(&p.reshape(s.clone()).unwrap());
    assert!(p.allowed(DomainId(2), D0));
    let (f, _) = run(&mut p, n, &to_a, 2);
    assert_eq!(f.action, Action::Forward(A), "routed between the networks");
    assert!(p.fdb().domain_len(DomainId(2)) > 0);

    // The network goes: its slot, and its port's, stay vacant.
    s.domains[2] = DomainSpec::vacant();
    s.ports[n.index()] = PortSpec::vacant();
    s.allow.clear();
    p.adopt(&p.reshape(s).unwrap());
    assert_eq!((p.domain(DomainId(2)), p.domain_count()), (None, 3));
    assert_eq!(p.local_domain(gw8.ip), None);
    assert!(p.fib().lookup(gw8.ip).is_none(), "no route to it");
    let (f, _) = run(&mut p, n, &to_a, 3);
    assert_eq!(f.action, Action::Drop(DropReason::PortGone));
    p.forget_port(n, DomainId(2), Some(n_ip), Some(n_mac));
    let gone = p.forget_domain(DomainId(2));
    assert_eq!(gone.held, 0);
    assert_eq!(p.fdb().domain_len(DomainId(2)), 0);
    assert!(p.fdb().entries().iter().all(|e| e.0 != DomainId(2)));
    assert_eq!(p.neighbors().domain_usage(DomainId(2)), (0, 0));
    assert!(p
        .neighbors()
        .entries()
        .iter()
        .all(|n| n.domain != DomainId(2)));
    assert_eq!(p.fdb().domain_capacity(DomainId(2)), 0, "no share");
    assert_accounted(&[&p]);
}

#[test]
fn reshape_refuses_what_new_refuses_alike() {
    let p = pipeline();
    let bad: Vec<Spec> = {
        let mut v = Vec::new();
        let mut s = spec(64);
        s.fdb_max = 0;
        v.push(s);
        let mut s = spec(64);
        s.ports.push(port("z", 9));
        v.push(s);
        let mut s = spec(64);
        s.allow.push((D0, DomainId(7)));
        v.push(s);
        let mut s = spec(64);
        s.domains[1] = DomainSpec::vacant();
        v.push(s.clone()); // ports x and y are in a vacant network
        s.ports.truncate(3);
        s.allow.push((D0, DomainId(1)));
        v.push(s.clone()); // allow names a vacant network
        s.allow.clear();
        s.domains[1].gateway = Some(GatewaySpec {
            ip: Ipv4Addr::new(192, 168, 7, 1),
            mac: mac(99),
        });
        v.push(s); // a vacant network with a gateway
        let mut s = spec(64);
        s.domains[0].external = true;
        s.domains.push(net8());
        s.domains[2].external = true;
        v.push(s);
        let mut s = spec(64);
        s.nat.publish.push(PublishSpec {
            proto: IpProtocol::TCP,
            host_port: 80,
            target: ip(2),
            target_port: 80,
        });
        v.push(s);
        let mut s = spec(64);
        s.nat.port_range = (2000, 1999);
        v.push(s);
        let mut s = spec(64);
        s.routes.push(StaticRoute {
            prefix: "10.9.0.0/16".parse().unwrap(),
            via: Ipv4Addr::new(192, 168, 7, 254),
        });
        v.push(s);
        let mut s = spec(64);
        s.domains.resize(MAX_DOMAINS + 1, DomainSpec::vacant());
        v.push(s);
        v
    };
    for s in bad {
        let new = Pipeline::new(s.clone()).err().map(|e| e.to_string());
        let reshaped = p.reshape(s).err().map(|e| e.to_string());
        assert!(new.is_some(), "a bad spec");
        assert_eq!(new, reshaped);
    }
    // Vacant slots are accepted by both.
    let mut s = spec(64);
    s.ports[C.index()] = PortSpec::vacant();
    s.domains.push(DomainSpec::vacant());
    assert!(Pipeline::new(s.clone()).is_ok());
    assert!(p.reshape(s).is_ok());
}

#[test]
fn shares_follow_the_networks_and_a_shrunk_share_keeps_its_entries() {
    // fdb_max 64 over two networks: 32 each.
    let mut p = pipeline();
    assert_eq!(p.fdb().domain_capacity(D0), 32);
    for n in 0..30u8 {
        run(
            &mut p,
            A,
            &udp(MacAddr([2, 1, 0, 0, 0, n]), MacAddr::BROADCAST, 1),
            0,
        );
    }
    assert_eq!(p.fdb().domain_len(D0), 30);
    // A third network and a fourth: 16 each, the default network over its share.
    let mut s = spec(64);
    s.domains.push(net8());
    s.domains.push(DomainSpec {
        name: "nine".into(),
        gateway: None,
        ..net8()
    });
    p.adopt(&p.reshape(s.clone()).unwrap());
    assert_eq!(p.fdb().domain_capacity(D0), 16);
    assert_eq!(p.fdb().domain_capacity(DomainId(3)), 16);
    assert_eq!(p.fdb().domain_len(D0), 30, "nothing forgotten");
    let (f, _) = run(&mut p, B, &udp(mac(3), MacAddr([2, 1, 0, 0, 0, 7]), 1), 1);
    assert_eq!(f.action, Action::Forward(A), "known MACs still forward");
    assert_eq!(p.fdb().lookup(D0, mac(3)), None, "no new one learned");
    assert_eq!(p.counters().events(Event::FdbNetworkLimit), 1);
    // A limit of its own, set at runtime; a vacant network has no share at all.
    s.domains[0].guard.fdb_max = Some(40);
    s.domains[3] = DomainSpec::vacant();
    s.domains[1].guard.conntrack_max = Some(5);
    p.adopt(&p.reshape(s).unwrap());
    assert_eq!(p.fdb().domain_capacity(D0), 40);
    assert_eq!(
        p.fdb().domain_capacity(DomainId(2)),
        21,
        "64 over three networks"
    );
    assert_eq!(p.fdb().domain_capacity(DomainId(3)), 0);
    assert_eq!(p.conntrack().zone_share(DomainId(1)), Some(5));
    assert_eq!(p.conntrack().zone_share(D0), None);
    run(&mut p, B, &udp(mac(3), MacAddr::BROADCAST, 1), 2);
    assert_eq!(p.fdb().lookup(D0, mac(3)), Some(B), "under its share again");
}

#[test]
fn a_worker_not_yet_on_the_new_layout_keeps_switching_on_the_old() {
    let mut w1 = pipeline();
    let mut w2 = w1.worker();
    let layout = w1.reshape(with_d()).unwrap();
    w1.adopt(&layout);
    // w1 learns a MAC on the new port; w2 does not know the port: it floods over
    // the ports it knows rather than send to one it lacks.
    run(&mut w1, D, &udp(mac(9), MacAddr::BROADCAST, 10), 0);
    let (f, _) = run(&mut w2, A, &udp(mac(2), mac(9), 10), 0);
    assert_eq!((f.action, egress(&w2, &f)), (Action::Flood(D0), vec![B, C]));
    // A frame w2 is handed on the new port is dropped, and counted nowhere.
    let (f, _) = run(&mut w2, D, &udp(mac(9), mac(2), 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::PortGone));
    assert_eq!(w2.counters().ports.len(), 5);
    // A packet of the new port, held by w1, released by w2 on the old layout.
    let (f, _) = run(&mut w1, D, &routed(9, ip(20)), 0);
    assert_eq!(f.action, Action::Held);
    let mut reply = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut reply, GW_MAC, mac(20), crate::wire::EtherType::ARP);
    crate::wire::arp::write(
        &mut reply[14..],
        crate::wire::arp::ArpOp::Reply,
        mac(20),
        ip(20),
        GW_MAC,
        GW_IP,
    );
    let (_, emitted) = run(&mut w2, B, &reply, 0);
    assert_eq!(emitted.len(), 1, "released all the same");
    // The merged counters have every port of the newest layout.
    let total = Pipeline::merged_counters([w2.counters(), w1.counters()]);
    assert_eq!(total.ports.len(), 6);
    assert_eq!(total.ports[D.index()].rx_frames, 2);
    // Removing a port: w2, still on the old layout, switches it as before.
    let mut s = with_d();
    s.ports[B.index()] = PortSpec::vacant();
    w1.adopt(&w1.reshape(s).unwrap());
    assert_eq!(broadcast_from(&mut w2, A, mac(2), 1), vec![B, C]);
    assert_eq!(broadcast_from(&mut w1, A, mac(2), 1), vec![C, D]);
    w2.adopt(&w1.layout());
    assert_eq!(broadcast_from(&mut w2, A, mac(2), 1), vec![C, D]);
    assert_eq!(w2.counters().ports.len(), 6);
    assert_eq!(w2.counters().ports[B.index()], PortCounters::default());
    assert_accounted(&[&w1, &w2]);
}

#[test]
fn a_packet_of_a_gone_port_released_later_is_not_booked() {
    let mut p = pipeline();
    let (f, _) = run(&mut p, A, &routed(2, ip(20)), 0);
    assert_eq!(f.action, Action::Held);
    let mut s = spec(64);
    s.ports[A.index()] = PortSpec::vacant();
    p.adopt(&p.reshape(s).unwrap());
    assert_eq!(p.counters().ports[A.index()], PortCounters::default());
    // Its next hop answers before the port is forgotten: the packet still goes.
    let mut reply = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut reply, GW_MAC, mac(20), crate::wire::EtherType::ARP);
    crate::wire::arp::write(
        &mut reply[14..],
        crate::wire::arp::ArpOp::Reply,
        mac(20),
        ip(20),
        GW_MAC,
        GW_IP,
    );
    let (_, emitted) = run(&mut p, B, &reply, 1);
    assert_eq!(emitted.len(), 1);
    assert_eq!(p.neighbors().held(), 0);
    // The gone port's counters stay zero for whoever reuses the slot.
    assert_eq!(p.counters().ports[A.index()], PortCounters::default());
    let mut s = spec(64);
    s.ports[A.index()] = port("a2", 0);
    p.adopt(&p.reshape(s).unwrap());
    run(&mut p, A, &udp(mac(30), MacAddr::BROADCAST, 10), 2);
    let a2 = p.counters().ports[A.index()];
    assert_eq!((a2.rx_frames, a2.forwarded, a2.held), (1, 1, 0));
    assert_accounted(&[&p]);
}

#[test]
fn an_external_network_added_at_runtime_masquerades() {
    // Made without an external network: nothing to track yet, the table sized all
    // the same.
    let mut p = pipeline();
    assert_eq!(p.conntrack().capacity(), NatSpec::default().conntrack_max);
    let uplink = Ipv4Addr::new(198, 51, 100, 1);
    let mut s = spec(64);
    s.domains[0].masquerade = true;
    s.domains.push(DomainSpec {
        name: "outside".into(),
        subnet: "198.51.100.0/24".parse().unwrap(),
        external: true,
        dns: false,
        gateway: Some(GatewaySpec {
            ip: uplink,
            mac: MacAddr::from_ipv4(uplink),
        }),
        ..net8()
    });
    s.ports.push(port("out", 2));
    p.adopt(&p.reshape(s).unwrap());
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(mac(2).0, GW_MAC.0)
        .ipv4(ip(2).octets(), [198, 51, 100, 2], 64)
        .tcp(40000, 80, 1000, 64000)
        .syn()
        .write(&mut syn, b"")
        .unwrap();
    let (f, _) = run(&mut p, A, &syn, 1);
    assert_eq!(f.action, Action::Held, "waits for the peer's MAC");
    let flows = p.conntrack().entries(p.now());
    assert_eq!(flows.len(), 1);
    assert!(flows[0].0.is_snat());
    assert_eq!(flows[0].0.reply.dst, uplink, "masqueraded to the uplink");
}

#[test]
fn forgetting_while_a_worker_switches_keeps_the_tables_consistent() {
    let w1 = pipeline();
    let mut w2 = w1.worker();
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..200u16 {
                let src = MacAddr([2, 3, 0, 0, (round >> 8) as u8, round as u8]);
                run(&mut w2, X, &udp(src, MacAddr::BROADCAST, 10), 0);
                run(&mut w2, Y, &udp(mac(7), src, 10), 0);
            }
        });
        for _ in 0..50 {
            w1.forget_domain(DomainId(1));
            w1.forget_port(X, DomainId(1), None, None);
        }
    });
    // Whatever went when, the share counts what the table holds.
    let held = w1
        .fdb()
        .entries()
        .iter()
        .filter(|e| e.0 == DomainId(1))
        .count();
    assert_eq!(w1.fdb().domain_len(DomainId(1)), held);
    w1.forget_domain(DomainId(1));
    assert_eq!(w1.fdb().domain_len(DomainId(1)), 0);
    assert_accounted(&[&w1, &w2]);
    assert_eq!(w2.counters().ports[X.index()].rx_frames, 200);
}

#[test]
fn an_address_another_port_took_in_the_same_change_is_not_forgotten() {
    let mut p = pipeline();
    // a (172.17.0.2) asks for the gateway: its MAC and address are learned.
    run(
        &mut p,
        A,
        &arp_request(mac(2), ip(2), GW_IP, MacAddr::BROADCAST),
        0,
    );
    assert!(p.neighbors().get(ip(2)).is_some());
    // The endpoint moves to a new port, with its MAC and address, in one change.
    let mut s = spec(64);
    s.ports[A.index()] = PortSpec::vacant();
    s.ports.push(PortSpec {
        mac: Some(mac(2)),
        ip: Some(ip(2)),
        ..port("a2", 0)
    });
    p.adopt(&p.reshape(s).unwrap());
    let gone = p.forget_port(A, D0, Some(ip(2)), Some(mac(2)));
    assert_eq!((gone.fdb, gone.neighbors), (1, 0), "a's MAC entry only");
    assert!(p.neighbors().get(ip(2)).is_some(), "the address lives on");
    run(&mut p, D, &udp(mac(2), MacAddr::BROADCAST, 10), 1);
    assert_eq!(p.fdb().lookup(D0, mac(2)), Some(D));
}

#[test]
fn a_pipeline_tells_the_number_of_the_layout_it_runs() {
    let mut p = Pipeline::new(spec(64)).unwrap();
    let first = p.layout_generation();
    assert_eq!(p.layout().generation(), first);
    let newer = p.reshape(spec(64)).unwrap();
    assert!(newer.generation() > first);
    assert_eq!(p.layout_generation(), first, "not before it is adopted");
    p.adopt(&newer);
    assert_eq!(p.layout_generation(), newer.generation());
}
