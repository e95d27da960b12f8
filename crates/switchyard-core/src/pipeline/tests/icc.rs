//! `icc = false`: endpoints of a network reach the gateway and, through it, other
//! networks, the outside and published ports — but not each other, neither bridged
//! nor routed back into the network.

use super::nat::{
    a, flow_of, gw, hmac, nat_router_of, nat_spec, tcp, udp4, BA, FA, FB, OUT, UPLINK,
};
use super::*;

/// The NAT router of the NAT tests, with inter-endpoint traffic off on "front" (fa,
/// fb) and "front" joined to "back" (ba).
fn closed_front(icc: bool) -> Pipeline {
    let mut spec = nat_spec(64, (1024, 65535), true);
    spec.domains[0].guard.icc = icc;
    spec.allow.push((DomainId(0), DomainId(1)));
    nat_router_of(spec)
}

/// How many frames from `port` were dropped because icc is off.
fn icc_drops(p: &Pipeline, port: PortId) -> u64 {
    p.counters().ports[port.index()].drops[DropReason::IccDisabled as usize]
}

#[test]
fn unicast_to_another_endpoint_is_dropped_with_its_reason() {
    let mut p = closed_front(false);
    let fb = a("10.1.0.3");
    // fb's MAC is known (it answered ARP from its port), and fa sends to it directly.
    let mut frame = udp4("10.1.0.2", 5000, "10.1.0.3", 53);
    frame[0..6].copy_from_slice(&hmac(fb).0);
    let (f, _) = run(&mut p, FA, &frame, 1);
    assert_eq!(f.action, Action::Drop(DropReason::IccDisabled));
    assert_eq!(icc_drops(&p, FA), 1);
    assert_eq!(DropReason::IccDisabled.id(), "icc_disabled");
    // With icc on, the same frame is bridged.
    let mut open = closed_front(true);
    let (f, _) = run(&mut open, FA, &frame, 1);
    assert_eq!(f.action, Action::Forward(FB));
    // An unknown unicast is flooded, and the flood reaches no one.
    frame[0..6].copy_from_slice(&hmac(a("10.1.0.9")).0);
    let (f, _) = run(&mut p, FA, &frame, 1);
    assert_eq!(f.action, Action::Drop(DropReason::IccDisabled));
    assert_eq!(icc_drops(&p, FA), 2);
}

#[test]
fn a_flood_reaches_no_endpoint_but_the_gateway_answers() {
    let mut p = closed_front(false);
    let (fa, fb) = (a("10.1.0.2"), a("10.1.0.3"));
    // ARP for another endpoint: not flooded to it.
    let (f, emitted) = run(
        &mut p,
        FA,
        &arp_request(hmac(fa), fa, fb, MacAddr::BROADCAST),
        1,
    );
    assert_eq!(f.action, Action::Drop(DropReason::IccDisabled));
    assert!(emitted.is_empty());
    // ARP for the gateway: answered by switchyard, and flooded to no one.
    let (f, emitted) = run(
        &mut p,
        FA,
        &arp_request(hmac(fa), fa, a("10.1.0.1"), MacAddr::BROADCAST),
        1,
    );
    assert_eq!(f.action, Action::Consume);
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].0, Action::Forward(FA));
    let arp = crate::wire::ArpPacket::new_checked(&emitted[0].1[14..]).unwrap();
    assert_eq!((arp.sender_mac(), arp.sender_ip()), (gw(fa), a("10.1.0.1")));
    // Ping of the gateway.
    let (f, _) = run(
        &mut p,
        FA,
        &echo_request(hmac(fa), fa, gw(fa), a("10.1.0.1")),
        1,
    );
    assert_eq!(f.action, Action::Reply);
    assert_eq!(icc_drops(&p, FA), 1);
}

#[test]
fn routed_to_another_network_and_masqueraded_out_still_work() {
    let mut p = closed_front(false);
    let (f, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "10.2.0.2", 53), 1);
    assert_eq!(f.action, Action::Forward(BA));
    // And back.
    let (f, _) = run(&mut p, BA, &udp4("10.2.0.2", 53, "10.1.0.2", 5000), 1);
    assert_eq!(f.action, Action::Forward(FA));
    let (f, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 1);
    assert_eq!(f.action, Action::Forward(OUT));
    assert_eq!(flow_of(&f).0, UPLINK, "masqueraded");
    assert_eq!(icc_drops(&p, FA), 0);
}

#[test]
fn routed_back_into_the_network_is_dropped_but_a_published_port_hairpins() {
    let mut p = closed_front(false);
    // fa sends to fb's address through the gateway: routed back into front.
    let (f, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "10.1.0.3", 53), 1);
    assert_eq!(f.action, Action::Drop(DropReason::IccDisabled));
    assert_eq!(icc_drops(&p, FA), 1);
    let mut open = closed_front(true);
    let (f, _) = run(&mut open, FA, &udp4("10.1.0.2", 5000, "10.1.0.3", 53), 1);
    assert_eq!(
        f.action,
        Action::Forward(FB),
        "routed within front with icc on"
    );
    // fb uses fa's published port by the uplink address: Docker lets that through.
    let (f, _) = run(
        &mut p,
        FB,
        &tcp("10.1.0.3", 45000, "198.51.100.1", 8080, "S", 64),
        2,
    );
    assert_eq!(f.action, Action::Forward(FA));
    assert_eq!(flow_of(&f), (a("10.1.0.1"), 45000, a("10.1.0.2"), 80));
    let (r, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 80, "10.1.0.1", 45000, "SA", 64),
        3,
    );
    assert_eq!(r.action, Action::Forward(FB));
    assert_eq!(flow_of(&r), (UPLINK, 8080, a("10.1.0.3"), 45000));
    assert_eq!(icc_drops(&p, FA) + icc_drops(&p, FB), 1);
}
