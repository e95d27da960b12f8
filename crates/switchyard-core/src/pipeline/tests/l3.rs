//! L3 tests: routing, isolation, neighbor resolution, ICMP errors, fragmentation,
//! proxy ARP and L3-only networks.

use super::*;
use crate::wire::icmp::kind;
use crate::wire::{ArpPacket, Ipv4Packet};

// front 10.1.0.0/24 (mtu 1500): ports fa, fb      back 10.2.0.0/24 (mtu 1280): ports ba, bb
// dmz   10.3.0.0/24: port da (joined to nothing)   l3net 10.4.0.0/24 (L3 only): ports la, lb
// proxied 10.5.0.0/24 (proxy_arp, joined to back): port pa
// front <-> back joined; route 10.9.0.0/16 via 10.2.0.254.
const FA: PortId = PortId(0);
const FB: PortId = PortId(1);
const BB: PortId = PortId(3);
const DA: PortId = PortId(4);
const LA: PortId = PortId(5);
const LB: PortId = PortId(6);
const PA: PortId = PortId(7);

pub(super) fn rmac(net: u8, n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 10, net, 0, n])
}

pub(super) fn rip(net: u8, n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, 0, n)
}

pub(super) fn gw(net: u8) -> MacAddr {
    rmac(net, 1)
}

pub(super) fn router() -> Pipeline {
    let dom = |name: &str, net: u8, mtu: u16, mode: DomainMode, proxy_arp: bool| DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(rip(net, 0), 24).unwrap(),
        mtu,
        gateway: Some(GatewaySpec {
            ip: rip(net, 1),
            mac: gw(net),
        }),
        mode,
        proxy_arp,
        masquerade: false,
        external: false,
        dns: false,
        guard: Default::default(),
    };
    let port = |n: &str, d: u16| PortSpec::new(n, DomainId(d));
    Pipeline::new(Spec {
        routes: vec![StaticRoute {
            prefix: "10.9.0.0/16".parse().unwrap(),
            via: rip(2, 254),
        }],
        allow: vec![(DomainId(0), DomainId(1)), (DomainId(4), DomainId(1))],
        ..Spec::new(
            vec![
                dom("front", 1, 1500, DomainMode::Bridge, false),
                dom("back", 2, 1280, DomainMode::Bridge, false),
                dom("dmz", 3, 1500, DomainMode::Bridge, false),
                dom("l3net", 4, 1500, DomainMode::L3, false),
                dom("proxied", 5, 1500, DomainMode::Bridge, true),
            ],
            vec![
                port("fa", 0),
                port("fb", 0),
                port("ba", 1),
                port("bb", 1),
                port("da", 2),
                port("la", 3),
                port("lb", 3),
                port("pa", 4),
            ],
        )
    })
    .unwrap()
}

/// A UDP packet from host `s` on net `sn` to `dst`, sent to the gateway MAC.
pub(super) fn routed_udp(
    sn: u8,
    s: u8,
    dst: Ipv4Addr,
    ttl: u8,
    payload: usize,
    df: bool,
) -> Vec<u8> {
    let mut v = Vec::new();
    let mut ip = etherparse::Ipv4Header::new(
        0,
        ttl,
        etherparse::IpNumber::UDP,
        rip(sn, s).octets(),
        dst.octets(),
    )
    .unwrap();
    ip.dont_fragment = df;
    PacketBuilder::ethernet2(rmac(sn, s).0, gw(sn).0)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(4000, 5000)
        .write(&mut v, &(0..payload).map(|i| i as u8).collect::<Vec<_>>())
        .unwrap();
    v
}

fn arp_reply(net: u8, n: u8, to_mac: MacAddr, to_ip: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut v, to_mac, rmac(net, n), crate::wire::EtherType::ARP);
    crate::wire::arp::write(
        &mut v[14..],
        crate::wire::arp::ArpOp::Reply,
        rmac(net, n),
        rip(net, n),
        to_mac,
        to_ip,
    );
    v
}

pub(super) struct Out {
    pub(super) frame: Frame,
    pub(super) emitted: Vec<Frame>,
}

pub(super) fn send(p: &mut Pipeline, port: PortId, bytes: &[u8], now_ms: u64) -> Out {
    let mut frames = [Frame::from_bytes(port, bytes)];
    let mut out = Emitter::with_capacity(16);
    p.process(&mut frames, Timestamp::from_millis(now_ms), &mut out);
    let emitted = out.frames().iter().map(copy).collect();
    let [frame] = frames;
    Out { frame, emitted }
}

fn tick(p: &mut Pipeline, now_ms: u64) -> Vec<Frame> {
    let mut out = Emitter::with_capacity(16);
    p.tick(Timestamp::from_millis(now_ms), &mut out);
    out.frames().iter().map(copy).collect()
}

fn copy(f: &Frame) -> Frame {
    let mut c = Frame::from_bytes(f.ingress, f.data());
    c.action = f.action;
    c
}

/// Teaches the router that 10.`net`.0.`n` is at its MAC, on `port`.
pub(super) fn resolve(p: &mut Pipeline, net: u8, n: u8, port: PortId, now_ms: u64) {
    send(p, port, &arp_reply(net, n, gw(net), rip(net, 1)), now_ms);
}

fn icmp_of(f: &Frame) -> (u8, u8, Ipv4Addr, Ipv4Addr, Vec<u8>) {
    let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
    assert!(ip.checksum_ok());
    assert_eq!(ip.protocol(), crate::wire::IpProtocol::ICMP);
    let icmp = ip.payload();
    assert!(crate::wire::checksum::verify(icmp), "ICMP checksum");
    (icmp[0], icmp[1], ip.src(), ip.dst(), icmp.to_vec())
}

fn invariant(p: &Pipeline) {
    for c in &p.counters().ports {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "{c:?}"
        );
    }
}

#[test]
fn routes_between_joined_networks_after_resolving_the_next_hop() {
    let mut p = router();
    let pkt = routed_udp(1, 2, rip(2, 3), 64, 100, true);
    let o = send(&mut p, FA, &pkt, 0);
    assert_eq!(o.frame.action, Action::Held, "waits for 10.2.0.3's MAC");
    assert_eq!(p.counters().ports[FA.index()].held, 1);
    // The ARP request went out on back, from back's gateway.
    assert_eq!(o.emitted.len(), 1);
    let arp = ArpPacket::new_checked(&o.emitted[0].data()[14..]).unwrap();
    assert_eq!((arp.sender_ip(), arp.target_ip()), (rip(2, 1), rip(2, 3)));
    assert_eq!(o.emitted[0].action, Action::Flood(DomainId(1)));

    // The reply releases the packet at once.
    let r = send(&mut p, BB, &arp_reply(2, 3, gw(2), rip(2, 1)), 5);
    assert_eq!(r.frame.action, Action::Consume);
    assert_eq!(r.emitted.len(), 1);
    let out = &r.emitted[0];
    assert_eq!(
        out.action,
        Action::Forward(BB),
        "bb was learned from its reply"
    );
    assert_eq!(
        &out.data()[0..12],
        &[rmac(2, 3).0, gw(2).0].concat()[..],
        "both MACs rewritten"
    );
    let ip = Ipv4Packet::new_checked(&out.data()[14..]).unwrap();
    assert_eq!(ip.ttl(), 63);
    assert!(ip.checksum_ok());
    assert_eq!(&out.data()[14 + 20..], &pkt[14 + 20..], "payload untouched");
    let c = p.counters().ports[FA.index()];
    assert_eq!((c.forwarded, c.held), (1, 0));
    assert_eq!(p.counters().events(Event::NeighborsResolved), 1);

    // Now resolved: the next packet goes straight through.
    let o = send(&mut p, FA, &pkt, 10);
    assert_eq!(o.frame.action, Action::Forward(BB));
    invariant(&p);
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_ingress_gateway() {
    let mut p = router();
    let pkt = routed_udp(1, 2, rip(2, 3), 1, 10, false);
    let o = send(&mut p, FA, &pkt, 0);
    assert_eq!(o.frame.action, Action::Drop(DropReason::TtlExpired));
    assert_eq!(o.emitted.len(), 1);
    assert_eq!(o.emitted[0].action, Action::Forward(FA));
    let (t, c, src, dst, body) = icmp_of(&o.emitted[0]);
    assert_eq!(
        (t, c, src, dst),
        (kind::TIME_EXCEEDED, 0, rip(1, 1), rip(1, 2))
    );
    assert_eq!(&body[8..28], &pkt[14..34], "the offending header is quoted");
    assert_eq!(
        &o.emitted[0].data()[0..6],
        &rmac(1, 2).0,
        "back to the sender's MAC"
    );
}

#[test]
fn no_route_gets_net_unreachable() {
    let mut p = router();
    let o = send(
        &mut p,
        FA,
        &routed_udp(1, 2, Ipv4Addr::new(192, 0, 2, 1), 64, 10, false),
        0,
    );
    assert_eq!(o.frame.action, Action::Drop(DropReason::NoRoute));
    let (t, c, src, _, _) = icmp_of(&o.emitted[0]);
    assert_eq!((t, c, src), (kind::DEST_UNREACHABLE, 0, rip(1, 1)));
}

#[test]
fn df_and_too_big_gets_frag_needed_with_the_mtu() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    let o = send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 64, 1400, true), 0);
    assert_eq!(o.frame.action, Action::Drop(DropReason::FragNeeded));
    let (t, c, _, _, body) = icmp_of(&o.emitted[0]);
    assert_eq!((t, c), (kind::DEST_UNREACHABLE, 4));
    assert_eq!(
        u16::from_be_bytes([body[6], body[7]]),
        1280,
        "next-hop MTU of back"
    );
}

#[test]
fn without_df_a_big_packet_is_fragmented_correctly() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    let pkt = routed_udp(1, 2, rip(2, 3), 64, 1400, false);
    let o = send(&mut p, FA, &pkt, 0);
    assert_eq!(o.frame.action, Action::Forward(BB));
    let mut frags = vec![copy(&o.frame)];
    frags.extend(o.emitted.iter().map(copy));
    assert_eq!(frags.len(), 2);
    let mut payload = vec![0u8; 0];
    for (i, f) in frags.iter().enumerate() {
        assert!(f.len() - 14 <= 1280, "fits the MTU");
        let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(ip.ttl(), 63);
        assert_eq!(ip.frag_offset(), payload.len());
        assert_eq!(ip.more_fragments(), i == 0);
        if i == 0 {
            assert_eq!(ip.payload().len() % 8, 0);
        }
        payload.extend_from_slice(ip.payload());
        assert_eq!(f.action, Action::Forward(BB));
    }
    assert_eq!(
        &payload[..],
        &pkt[14 + 20..],
        "the fragments reassemble to the original"
    );
    assert_eq!(p.counters().events(Event::Fragmented), 1);
}

#[test]
fn trace_of_a_fragmented_packet_has_a_line_from_ip4_fragment() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    p.tracer().start(1, &[]);
    send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 64, 1400, false), 1);
    let lines: Vec<String> = p.tracer().drain().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        &lines[lines.len() - 2..],
        [
            "ip4-output: 02:42:0a:02:00:01 > 02:42:0a:02:00:03 to port bb",
            "ip4-fragment: 1428 bytes over MTU 1280: 2 fragments",
        ]
    );
}

#[test]
fn the_frame_carries_the_offsets_of_its_headers() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    let o = send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 64, 8, false), 1);
    assert_eq!(o.frame.action, Action::Forward(BB));
    assert_eq!((o.frame.l3, o.frame.l4), (14, 34));
    // A recycled buffer forgets them: a frame dropped before any header is read
    // carries none of the last packet's.
    let mut frames = [o.frame];
    frames[0].load(&[0u8; 10]);
    frames[0].ingress = FA;
    frames[0].l3 = 14;
    frames[0].l4 = 34;
    p.process(
        &mut frames,
        Timestamp::from_secs(2),
        &mut Emitter::with_capacity(4),
    );
    assert_eq!(frames[0].action, Action::Drop(DropReason::Truncated));
    assert_eq!((frames[0].l3, frames[0].l4), (0, 0));
}

#[test]
fn an_unresolved_next_hop_queues_a_few_then_gives_up_with_host_unreachable() {
    let mut p = router();
    for i in 0..5 {
        let o = send(
            &mut p,
            FA,
            &routed_udp(1, 2, rip(2, 77), 64, 10 + i, false),
            i as u64,
        );
        assert_eq!(o.frame.action, Action::Held);
    }
    let c = p.counters().ports[FA.index()];
    assert_eq!(c.held, 3, "the queue holds three");
    assert_eq!(
        c.drops[DropReason::NeighborQueueFull as usize],
        2,
        "the two oldest were pushed out"
    );
    invariant(&p);
    // Two more requests, a second apart; then the third second gives up.
    let t1 = tick(&mut p, 1000);
    assert_eq!(t1.len(), 1);
    assert_eq!(
        ArpPacket::new_checked(&t1[0].data()[14..])
            .unwrap()
            .target_ip(),
        rip(2, 77)
    );
    assert_eq!(tick(&mut p, 2000).len(), 1);
    let t3 = tick(&mut p, 3000);
    assert_eq!(t3.len(), 3, "host unreachable for each queued packet");
    for f in &t3 {
        let (t, c, src, dst, _) = icmp_of(f);
        assert_eq!(
            (t, c, src, dst),
            (kind::DEST_UNREACHABLE, 1, rip(1, 1), rip(1, 2))
        );
        assert_eq!(f.action, Action::Forward(FA));
    }
    let c = p.counters().ports[FA.index()];
    assert_eq!(
        (c.held, c.drops[DropReason::NeighborUnresolved as usize]),
        (0, 3)
    );
    assert!(p.neighbors().get(rip(2, 77)).is_none());
    invariant(&p);
}

#[test]
fn networks_are_isolated_unless_joined() {
    let mut p = router();
    let o = send(&mut p, FA, &routed_udp(1, 2, rip(3, 5), 64, 10, false), 0);
    assert_eq!(o.frame.action, Action::Drop(DropReason::Isolated));
    assert!(
        o.emitted.is_empty(),
        "dropped silently, like Docker's isolation rules"
    );
    let o = send(&mut p, DA, &routed_udp(3, 5, rip(1, 2), 64, 10, false), 0);
    assert_eq!(
        o.frame.action,
        Action::Drop(DropReason::Isolated),
        "in both directions"
    );
    // front and back are joined.
    let o = send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 64, 10, false), 0);
    assert_eq!(o.frame.action, Action::Held);
    // Every gateway address answers ping, from any network (like a Linux host).
    let o = send(
        &mut p,
        DA,
        &echo_request(rmac(3, 5), rip(3, 5), gw(3), rip(1, 1)),
        0,
    );
    assert_eq!(o.frame.action, Action::Reply);
    let ip = Ipv4Packet::new_checked(&o.frame.data()[14..]).unwrap();
    assert_eq!(ip.src(), rip(1, 1));
}

#[test]
fn a_static_route_resolves_its_gateway() {
    let mut p = router();
    let o = send(
        &mut p,
        FA,
        &routed_udp(1, 2, Ipv4Addr::new(10, 9, 1, 1), 64, 10, false),
        0,
    );
    assert_eq!(o.frame.action, Action::Held);
    let arp = ArpPacket::new_checked(&o.emitted[0].data()[14..]).unwrap();
    assert_eq!(
        arp.target_ip(),
        rip(2, 254),
        "ARP for the router, not the destination"
    );
    let r = send(&mut p, PortId(2), &arp_reply(2, 254, gw(2), rip(2, 1)), 5);
    assert_eq!(&r.emitted[0].data()[0..6], &rmac(2, 254).0);
}

#[test]
fn proxy_arp_answers_for_addresses_routed_elsewhere() {
    let mut p = router();
    // proxied is joined to back: 10.2.0.3 is answered with proxied's gateway MAC.
    let o = send(
        &mut p,
        PA,
        &arp_request(rmac(5, 2), rip(5, 2), rip(2, 3), MacAddr::BROADCAST),
        0,
    );
    assert_eq!(o.emitted.len(), 1);
    let arp = ArpPacket::new_checked(&o.emitted[0].data()[14..]).unwrap();
    assert_eq!((arp.sender_mac(), arp.sender_ip()), (gw(5), rip(2, 3)));
    assert_eq!(p.counters().events(Event::ProxyArpReplies), 1);
    // dmz is not joined to proxied: no answer.
    let o = send(
        &mut p,
        PA,
        &arp_request(rmac(5, 2), rip(5, 2), rip(3, 9), MacAddr::BROADCAST),
        0,
    );
    assert!(o.emitted.is_empty());
    // An address of proxied's own subnet is not proxied on a bridge network.
    let o = send(
        &mut p,
        PA,
        &arp_request(rmac(5, 2), rip(5, 2), rip(5, 3), MacAddr::BROADCAST),
        0,
    );
    assert!(o.emitted.is_empty());
    // front has no proxy_arp: 10.2.0.3 is not answered there.
    let o = send(
        &mut p,
        FA,
        &arp_request(rmac(1, 2), rip(1, 2), rip(2, 3), MacAddr::BROADCAST),
        0,
    );
    assert!(o.emitted.is_empty());
}

#[test]
fn an_l3_network_answers_every_arp_and_routes_even_within_itself() {
    let mut p = router();
    // la asks for lb: switchyard answers, and the request is not flooded to lb.
    let o = send(
        &mut p,
        LA,
        &arp_request(rmac(4, 2), rip(4, 2), rip(4, 3), MacAddr::BROADCAST),
        0,
    );
    assert_eq!(o.frame.action, Action::Consume);
    let arp = ArpPacket::new_checked(&o.emitted[0].data()[14..]).unwrap();
    assert_eq!((arp.sender_mac(), arp.sender_ip()), (gw(4), rip(4, 3)));
    // la → lb goes through switchyard, TTL decremented.
    let o = send(&mut p, LA, &routed_udp(4, 2, rip(4, 3), 64, 10, false), 1);
    assert_eq!(o.frame.action, Action::Held);
    let r = send(&mut p, LB, &arp_reply(4, 3, gw(4), rip(4, 1)), 2);
    let out = &r.emitted[0];
    assert_eq!(out.action, Action::Forward(LB));
    assert_eq!(
        Ipv4Packet::new_checked(&out.data()[14..]).unwrap().ttl(),
        63
    );
    // Frames straight to lb's MAC are not bridged; broadcasts are not flooded.
    let mut direct = routed_udp(4, 2, rip(4, 3), 64, 10, false);
    direct[0..6].copy_from_slice(&rmac(4, 3).0);
    assert_eq!(
        send(&mut p, LA, &direct, 3).frame.action,
        Action::Drop(DropReason::L3NoBridge)
    );
    let mut bcast = routed_udp(4, 2, rip(4, 255), 64, 10, false);
    bcast[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    assert_eq!(
        send(&mut p, LA, &bcast, 3).frame.action,
        Action::Drop(DropReason::L3NoFlood)
    );
}

#[test]
fn gratuitous_arp_updates_the_neighbor() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    let new_mac = MacAddr([0x02, 0xaa, 0, 0, 0, 3]);
    let mut garp = arp_request(new_mac, rip(2, 3), rip(2, 3), MacAddr::BROADCAST);
    garp[6..12].copy_from_slice(&new_mac.0);
    send(&mut p, BB, &garp, 10);
    let n = p.neighbors().get(rip(2, 3)).unwrap();
    assert_eq!(n.mac, new_mac);
    let o = send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 64, 10, false), 20);
    assert_eq!(&o.frame.data()[0..6], &new_mac.0);
}

#[test]
fn silence_about_icmp_errors_and_broadcasts() {
    let mut p = router();
    // An ICMP time-exceeded message with TTL 1: dropped, but no error about an error.
    let mut err = Frame::new();
    super::super::stages::icmp_error::build_about_frame(
        &mut err,
        &routed_udp(2, 3, rip(1, 2), 9, 8, false),
        super::super::stages::icmp_error::IcmpError {
            kind: kind::TIME_EXCEEDED,
            code: 0,
            mtu: 0,
        },
        super::super::stages::icmp_error::ErrorSource {
            ip: rip(1, 9),
            mac: rmac(1, 9),
        },
        1,
    );
    let mut bytes = err.data().to_vec();
    bytes[0..6].copy_from_slice(&gw(1).0);
    bytes[6..12].copy_from_slice(&rmac(1, 9).0);
    bytes[14 + 16..14 + 20].copy_from_slice(&rip(2, 3).octets());
    bytes[14 + 8] = 1;
    bytes[14 + 10..14 + 12].fill(0);
    let c = crate::wire::checksum::checksum(&bytes[14..34]);
    bytes[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    let o = send(&mut p, FA, &bytes, 0);
    assert_eq!(o.frame.action, Action::Drop(DropReason::TtlExpired));
    assert!(o.emitted.is_empty());
    // A subnet broadcast via the gateway MAC is not routed, and not answered.
    let o = send(&mut p, FA, &routed_udp(1, 2, rip(1, 255), 64, 8, false), 0);
    assert_eq!(o.frame.action, Action::Drop(DropReason::NotRouted));
    assert!(o.emitted.is_empty());
}

#[test]
fn icmp_errors_are_rate_limited_per_destination() {
    let mut p = router();
    let mut sent = 0;
    for i in 0..10 {
        sent += send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 1, 8, false), i)
            .emitted
            .len();
    }
    assert_eq!(sent, 6, "a burst of six, as Linux allows");
    assert_eq!(p.counters().events(Event::IcmpRateLimited), 4);
    assert_eq!(
        send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 1, 8, false), 1500)
            .emitted
            .len(),
        1,
        "one more after a second"
    );
}

#[test]
fn neighbors_go_stale_and_are_reprobed_by_unicast() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    assert_eq!(
        p.neighbors().get(rip(2, 3)).unwrap().state,
        NeighborState::Reachable
    );
    tick(&mut p, 30_000);
    assert_eq!(
        p.neighbors().get(rip(2, 3)).unwrap().state,
        NeighborState::Stale
    );
    let o = send(
        &mut p,
        FA,
        &routed_udp(1, 2, rip(2, 3), 64, 8, false),
        30_100,
    );
    assert_eq!(
        o.frame.action,
        Action::Forward(BB),
        "a stale entry is still used"
    );
    let probe = &o.emitted[0];
    assert_eq!(
        &probe.data()[0..6],
        &rmac(2, 3).0,
        "re-confirmed by unicast ARP"
    );
    assert_eq!(probe.action, Action::Forward(BB));
}

#[test]
fn trace_explains_a_routed_packet() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    p.tracer().start(1, &[]);
    send(&mut p, FA, &routed_udp(1, 2, rip(2, 3), 64, 8, false), 1);
    let lines: Vec<String> = p.tracer().drain().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "ethernet-input: port fa: 02:42:0a:01:00:02 > 02:42:0a:01:00:01 IPv4, 50 bytes",
            "l2-learn: learned 02:42:0a:01:00:02 on port fa (bridge front)",
            "ip4-input: 10.1.0.2 > 10.2.0.3 udp ttl 64 len 36",
            "ip4-lookup: 10.2.0.3 matches 10.2.0.0/24 (connected, network back)",
            "ip4-output: 02:42:0a:02:00:01 > 02:42:0a:02:00:03 to port bb",
        ]
    );
}

#[test]
fn bad_specs_are_refused() {
    let mut s = Spec::new(vec![], vec![]);
    s.routes.push(StaticRoute {
        prefix: "10.9.0.0/16".parse().unwrap(),
        via: rip(2, 254),
    });
    assert!(matches!(
        Pipeline::new(s),
        Err(SpecError::UnreachableNextHop { .. })
    ));
    let mut s = Spec::new(vec![], vec![]);
    s.allow.push((DomainId(0), DomainId(5)));
    assert!(Pipeline::new(s).is_err());
    let _ = FB;
}

/// A routed super-frame: `segments` segments of `mss` bytes in one frame, TCP (TSO)
/// or UDP (USO).
fn super_frame(
    port: PortId,
    dst: Ipv4Addr,
    mss: u16,
    segments: usize,
    df: bool,
    tcp: bool,
) -> Frame {
    use crate::wire::virtio_net::{F_NEEDS_CSUM, GSO_TCPV4, GSO_UDP_L4};
    let payload = usize::from(mss) * segments;
    let bytes = if tcp {
        let mut v = Vec::new();
        let mut ip = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::TCP,
            rip(1, 2).octets(),
            dst.octets(),
        )
        .unwrap();
        ip.dont_fragment = df;
        PacketBuilder::ethernet2(rmac(1, 2).0, gw(1).0)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .tcp(4000, 5000, 1, 64000)
            .write(&mut v, &(0..payload).map(|i| i as u8).collect::<Vec<_>>())
            .unwrap();
        v
    } else {
        routed_udp(1, 2, dst, 64, payload, df)
    };
    let mut f = Frame::from_bytes(port, &bytes);
    f.vnet = crate::wire::VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if tcp { GSO_TCPV4 } else { GSO_UDP_L4 },
        hdr_len: if tcp { 54 } else { 42 },
        gso_size: mss,
        csum_start: 34,
        csum_offset: if tcp { 16 } else { 6 },
        num_buffers: 0,
    };
    f
}

fn send_frame(p: &mut Pipeline, f: Frame) -> Out {
    let mut frames = [f];
    let mut out = Emitter::with_capacity(16);
    p.process(&mut frames, Timestamp::from_millis(0), &mut out);
    let emitted = out.frames().iter().map(copy).collect();
    let [frame] = frames;
    Out { frame, emitted }
}

#[test]
fn a_super_frame_is_held_to_the_mtu_by_its_segments_not_its_length() {
    let mut p = router();
    resolve(&mut p, 2, 3, BB, 0);
    for tcp in [false, true] {
        // 40 segments of 1200 bytes: 48 KB in all, but every segment (1228 or 1240
        // bytes of IP) fits back's MTU of 1280, so the super-frame goes on whole.
        let o = send_frame(&mut p, super_frame(FA, rip(2, 3), 1200, 40, true, tcp));
        assert_eq!(o.frame.action, Action::Forward(BB), "tcp {tcp}");
        assert!(o.emitted.is_empty(), "no fragments, no ICMP");
        assert_eq!(
            o.frame.vnet.gso_size, 1200,
            "still a super-frame, cut as before"
        );

        // Segments of 1400 bytes do not fit: with DF, fragmentation needed with the
        // MTU, which is what path MTU discovery needs to hear about a TSO sender.
        let o = send_frame(&mut p, super_frame(FA, rip(2, 3), 1400, 10, true, tcp));
        assert_eq!(o.frame.action, Action::Drop(DropReason::FragNeeded));
        let (t, c, _, _, body) = icmp_of(&o.emitted[0]);
        assert_eq!((t, c), (kind::DEST_UNREACHABLE, 4));
        assert_eq!(u16::from_be_bytes([body[6], body[7]]), 1280);
    }

    // Without DF, a TCP super-frame is cut smaller: 1280 - 20 - 20 bytes a segment.
    let o = send_frame(&mut p, super_frame(FA, rip(2, 3), 1400, 10, false, true));
    assert_eq!(o.frame.action, Action::Forward(BB));
    assert_eq!(o.frame.vnet.gso_size, 1240);
    assert_eq!(p.counters().events(Event::GsoSegmentSizeLowered), 1);
    // A UDP one's segments are datagrams: their size is not switchyard's to change,
    // and it does not fragment after cutting, so a counted drop.
    let o = send_frame(&mut p, super_frame(FA, rip(2, 3), 1400, 10, false, false));
    assert_eq!(o.frame.action, Action::Drop(DropReason::GsoOverMtu));
}

#[test]
fn a_held_packet_traces_in_two_parts_the_second_with_its_final_verdict() {
    let mut p = router();
    p.tracer().start(1, &[FA]);
    let pkt = routed_udp(1, 2, rip(2, 3), 64, 100, true);
    assert_eq!(send(&mut p, FA, &pkt, 0).frame.action, Action::Held);
    let first = p.tracer().next_frame().expect("the first part");
    assert_eq!(first.verdict.action, "held");
    assert!(!first.continued);
    assert!(
        first.summary.contains("IPv4 10.1.0.2 > 10.2.0.3"),
        "{}",
        first.summary
    );
    // The ARP reply on back is not traced (the filter names fa), but the packet it
    // releases is.
    resolve(&mut p, 2, 3, BB, 5);
    let second = p.tracer().next_frame().expect("the released part");
    assert_eq!(second.packet, first.packet);
    assert!(second.continued);
    assert_eq!(second.verdict.action, "forward");
    assert_eq!(second.verdict.ports, vec![p.port(BB).unwrap().name.clone()]);
    assert!(
        second.lines.iter().any(|l| l.stage == "ip4-neighbor"),
        "{:?}",
        second.lines
    );
    assert!(p.tracer().next_frame().is_none());
}
