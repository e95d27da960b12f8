//! Attacks from inside one network, and the guards that stop them: source validation
//! (strict reverse path), port security, endpoint addresses bound to their ports on
//! L3 networks, per-network shares of the FDB, the neighbor table and the ICMP error
//! budget, and offload headers that cannot be right.
//!
//! Each test first shows the traffic a guard must not disturb, then the attack.

use super::*;
use crate::wire::virtio_net::{F_NEEDS_CSUM, GSO_TCPV4};
use crate::wire::VirtioNetHdr;

/// Host `h` of network `n`: 10.n.0.h at 02:42:0a:n:00:h (`h` = 1 is the gateway).
fn hmac(n: u8, h: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 10, n, 0, h])
}

fn hip(n: u8, h: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, n, 0, h)
}

const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x42, 198, 51, 100, 1]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x42, 198, 51, 100, 2]);

/// Network `n`: 10.n.0.0/24 with its gateway at .1.
fn net(name: &str, n: u8) -> DomainSpec {
    DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(hip(n, 0), 24).unwrap(),
        mtu: 1500,
        gateway: Some(GatewaySpec {
            ip: hip(n, 1),
            mac: hmac(n, 1),
        }),
        mode: DomainMode::Bridge,
        proxy_arp: false,
        masquerade: false,
        external: false,
        dns: false,
        guard: DomainGuard::default(),
    }
}

/// The port of host `h` on network `n` (domain `d`), its addresses known.
fn host(name: &str, d: u16, n: u8, h: u8) -> PortSpec {
    PortSpec {
        mac: Some(hmac(n, h)),
        ip: Some(hip(n, h)),
        ..PortSpec::new(name, DomainId(d))
    }
}

fn send(p: &mut Pipeline, port: PortId, bytes: &[u8], now_ms: u64) -> (Frame, Vec<Frame>) {
    send_vnet(p, port, bytes, VirtioNetHdr::default(), now_ms)
}

fn send_vnet(
    p: &mut Pipeline,
    port: PortId,
    bytes: &[u8],
    vnet: VirtioNetHdr,
    now_ms: u64,
) -> (Frame, Vec<Frame>) {
    let mut frames = [Frame::from_bytes(port, bytes)];
    frames[0].vnet = vnet;
    let mut out = Emitter::with_capacity(16);
    p.process(&mut frames, Timestamp::from_millis(now_ms), &mut out);
    let emitted = out
        .frames()
        .iter()
        .map(|f| {
            let mut c = Frame::from_bytes(f.ingress, f.data());
            c.action = f.action;
            c
        })
        .collect();
    let [f] = frames;
    (f, emitted)
}

fn tick(p: &mut Pipeline, now_ms: u64) -> Vec<Frame> {
    let mut out = Emitter::with_capacity(64);
    p.tick(Timestamp::from_millis(now_ms), &mut out);
    out.frames()
        .iter()
        .map(|f| {
            let mut c = Frame::from_bytes(f.ingress, f.data());
            c.action = f.action;
            c
        })
        .collect()
}

/// A UDP packet from `src` (behind MAC `smac`) to `dst`, in a frame to `dmac`.
fn udp_from(smac: MacAddr, src: Ipv4Addr, dmac: MacAddr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac.0, dmac.0)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(5000, 53)
        .write(&mut v, b"query")
        .unwrap();
    v
}

/// An ARP packet: `op` from `sha`/`spa` about `tpa`, in a frame from `src` to `dst`.
fn arp(
    op: crate::wire::arp::ArpOp,
    src: MacAddr,
    dst: MacAddr,
    sha: MacAddr,
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut v = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut v, dst, src, crate::wire::EtherType::ARP);
    crate::wire::arp::write(&mut v[14..], op, sha, spa, MacAddr::ZERO, tpa);
    v
}

/// `mac`/`ip` answers the gateway's ARP (a reply to the gateway `gw_mac`); returns
/// what that released.
fn answer(
    p: &mut Pipeline,
    port: PortId,
    mac: MacAddr,
    ip: Ipv4Addr,
    gw_mac: MacAddr,
    now: u64,
) -> Vec<Frame> {
    let mut v = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut v, gw_mac, mac, crate::wire::EtherType::ARP);
    crate::wire::arp::write(
        &mut v[14..],
        crate::wire::arp::ArpOp::Reply,
        mac,
        ip,
        gw_mac,
        Ipv4Addr::UNSPECIFIED,
    );
    let (f, released) = send(p, port, &v, now);
    assert_eq!(f.action, Action::Consume, "{ip} answered");
    released
}

/// Every port accounts for every frame it received.
fn assert_accounted(p: &Pipeline) {
    for (i, c) in p.counters().ports.iter().enumerate() {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "port {i}: {c:?}"
        );
    }
}

fn drops(p: &Pipeline, r: DropReason) -> u64 {
    p.counters().total().drops[r as usize]
}

// ---- strict reverse path ---------------------------------------------------------

// front 10.1.0.0/24 and back 10.2.0.0/24, not joined, both masquerading to outside
// 198.51.100.0/24; a route 10.9.0.0/16 via back's router 10.2.0.254.
const FA: PortId = PortId(0);
const BA: PortId = PortId(1);
const RTR: PortId = PortId(2);
const OUT: PortId = PortId(3);

fn masquerading(rp_filter: bool) -> Pipeline {
    let mut front = net("front", 1);
    front.masquerade = true;
    let mut back = net("back", 2);
    back.masquerade = true;
    back.guard.rp_filter = rp_filter;
    let mut outside = net("outside", 0);
    outside.subnet = "198.51.100.0/24".parse().unwrap();
    outside.gateway = Some(GatewaySpec {
        ip: UPLINK,
        mac: UPLINK_MAC,
    });
    outside.external = true;
    let mut p = Pipeline::new(Spec {
        routes: vec![StaticRoute {
            prefix: "10.9.0.0/16".parse().unwrap(),
            via: hip(2, 254),
        }],
        ..Spec::new(
            vec![front, back, outside],
            vec![
                host("fa", 0, 1, 2),
                host("ba", 1, 2, 2),
                host("rtr", 1, 2, 254),
                PortSpec::new("out", DomainId(2)),
            ],
        )
    })
    .unwrap();
    answer(&mut p, OUT, PEER_MAC, PEER, UPLINK_MAC, 0);
    answer(&mut p, FA, hmac(1, 2), hip(1, 2), hmac(1, 1), 0);
    p
}

#[test]
fn a_source_of_another_network_does_not_leave_by_masquerade() {
    let mut p = masquerading(true);
    // back's endpoint as itself: masqueraded out.
    let (f, _) = send(
        &mut p,
        BA,
        &udp_from(hmac(2, 2), hip(2, 2), hmac(2, 1), PEER, 64),
        1,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    assert_eq!(p.conntrack().len(), 1);
    // A host behind back's router, by the static route: fine too.
    let (f, _) = send(
        &mut p,
        RTR,
        &udp_from(hmac(2, 254), hip(9, 7), hmac(2, 1), PEER, 64),
        2,
    );
    assert_eq!(f.action, Action::Forward(OUT));

    // back's endpoint with a source of front's: dropped at the gateway, no flow made,
    // nothing out, so no reply can come back into front.
    let (f, emitted) = send(
        &mut p,
        BA,
        &udp_from(hmac(2, 2), hip(1, 7), hmac(2, 1), PEER, 64),
        3,
    );
    assert_eq!(f.action, Action::Drop(DropReason::SpoofedSource));
    assert!(emitted.is_empty(), "{emitted:?}");
    // So are a source behind a route through another network, switchyard's own
    // addresses, and an address no route leads back to.
    for src in [
        hip(9, 7),
        hip(1, 1),
        hip(2, 1),
        UPLINK,
        Ipv4Addr::new(203, 0, 113, 9),
    ] {
        let port = if src == hip(9, 7) { FA } else { BA };
        let smac = if port == FA { hmac(1, 2) } else { hmac(2, 2) };
        let gw = if port == FA { hmac(1, 1) } else { hmac(2, 1) };
        let (f, _) = send(&mut p, port, &udp_from(smac, src, gw, PEER, 64), 4);
        assert_eq!(f.action, Action::Drop(DropReason::SpoofedSource), "{src}");
    }
    assert_eq!(p.conntrack().len(), 2, "only the two genuine flows");
    assert_eq!(drops(&p, DropReason::SpoofedSource), 6);
    // A reply from outside to the uplink finds no flow of front's to ride on.
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, UPLINK_MAC.0)
        .ipv4(PEER.octets(), UPLINK.octets(), 64)
        .udp(53, 5000)
        .write(&mut reply, b"answer")
        .unwrap();
    let (f, _) = send(&mut p, OUT, &reply, 5);
    assert!(
        !matches!(f.action, Action::Forward(FA) | Action::Flood(DomainId(0))),
        "{:?}",
        f.action
    );
    assert_accounted(&p);
}

#[test]
fn rp_filter_off_is_the_old_behaviour() {
    let mut p = masquerading(false);
    let (f, _) = send(
        &mut p,
        BA,
        &udp_from(hmac(2, 2), hip(1, 7), hmac(2, 1), PEER, 64),
        1,
    );
    assert_eq!(f.action, Action::Forward(OUT), "not validated");
}

// ---- port security and bound addresses --------------------------------------------

// lan 10.1.0.0/24 with port security: a (.2), b (.3), c (.4).
// flat 10.4.0.0/24, L3 only, without port security: la (.2), lb (.3).
const PA: PortId = PortId(0);
const PB: PortId = PortId(1);
const PC: PortId = PortId(2);
const LA: PortId = PortId(3);
const LB: PortId = PortId(4);

fn secured() -> Pipeline {
    let mut lan = net("lan", 1);
    lan.guard.port_security = true;
    let mut flat = net("flat", 4);
    flat.mode = DomainMode::L3;
    Pipeline::new(Spec::new(
        vec![lan, flat],
        vec![
            host("a", 0, 1, 2),
            host("b", 0, 1, 3),
            host("c", 0, 1, 4),
            host("la", 1, 4, 2),
            host("lb", 1, 4, 3),
        ],
    ))
    .unwrap()
}

#[test]
fn port_security_refuses_another_endpoints_mac() {
    let mut p = secured();
    let bcast = |src: MacAddr, ip: Ipv4Addr| udp_from(src, ip, MacAddr::BROADCAST, hip(1, 255), 64);
    let (f, _) = send(&mut p, PA, &bcast(hmac(1, 2), hip(1, 2)), 0);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    // b sends as a: dropped before learning, a's MAC stays on a's port.
    let (f, _) = send(&mut p, PB, &bcast(hmac(1, 2), hip(1, 3)), 1);
    assert_eq!(f.action, Action::Drop(DropReason::PortSecurityMac));
    assert_eq!(p.fdb().lookup(DomainId(0), hmac(1, 2)), Some(PA));
    // A made-up MAC is refused too: no MAC flood on a secured network.
    let (f, _) = send(
        &mut p,
        PB,
        &bcast(MacAddr([2, 9, 9, 9, 9, 9]), hip(1, 3)),
        1,
    );
    assert_eq!(f.action, Action::Drop(DropReason::PortSecurityMac));
    let (f, _) = send(
        &mut p,
        PC,
        &udp_from(hmac(1, 4), hip(1, 4), hmac(1, 2), hip(1, 2), 64),
        2,
    );
    assert_eq!(f.action, Action::Forward(PA), "a's traffic still reaches a");
    assert_eq!(p.counters().events(Event::FdbMoved), 0);
    assert_accounted(&p);
}

#[test]
fn port_security_refuses_another_endpoints_address() {
    let mut p = secured();
    use crate::wire::arp::ArpOp;
    // a asks for the gateway: the gateway learns a.
    let (f, _) = send(
        &mut p,
        PA,
        &arp(
            ArpOp::Request,
            hmac(1, 2),
            MacAddr::BROADCAST,
            hmac(1, 2),
            hip(1, 2),
            hip(1, 1),
        ),
        0,
    );
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(p.neighbors().get(hip(1, 2)).unwrap().mac, hmac(1, 2));
    // b claims a's address in a gratuitous ARP, with its own MAC: refused.
    let (f, _) = send(
        &mut p,
        PB,
        &arp(
            ArpOp::Reply,
            hmac(1, 3),
            MacAddr::BROADCAST,
            hmac(1, 3),
            hip(1, 2),
            hip(1, 2),
        ),
        1,
    );
    assert_eq!(f.action, Action::Drop(DropReason::PortSecurityArp));
    assert_eq!(p.neighbors().get(hip(1, 2)).unwrap().mac, hmac(1, 2));
    // ... or in IPv4 packets.
    let (f, _) = send(
        &mut p,
        PB,
        &udp_from(hmac(1, 3), hip(1, 2), hmac(1, 4), hip(1, 4), 64),
        2,
    );
    assert_eq!(f.action, Action::Drop(DropReason::PortSecurityIp));
    // An address conflict probe (sender 0.0.0.0, RFC 5227) and a DHCP-like
    // broadcast from 0.0.0.0 pass.
    let (f, _) = send(
        &mut p,
        PB,
        &arp(
            ArpOp::Request,
            hmac(1, 3),
            MacAddr::BROADCAST,
            hmac(1, 3),
            Ipv4Addr::UNSPECIFIED,
            hip(1, 3),
        ),
        3,
    );
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    let dhcp = udp_from(
        hmac(1, 3),
        Ipv4Addr::UNSPECIFIED,
        MacAddr::BROADCAST,
        Ipv4Addr::BROADCAST,
        64,
    );
    let (f, _) = send(&mut p, PB, &dhcp, 3);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(
        (
            drops(&p, DropReason::PortSecurityArp),
            drops(&p, DropReason::PortSecurityIp)
        ),
        (1, 1)
    );
    assert_accounted(&p);
}

#[test]
fn an_l3_network_binds_its_endpoints_mac_and_address_to_their_ports() {
    let mut p = secured();
    use crate::wire::arp::ArpOp;
    answer(&mut p, LA, hmac(4, 2), hip(4, 2), hmac(4, 1), 0);
    answer(&mut p, LB, hmac(4, 3), hip(4, 3), hmac(4, 1), 0);
    let to_la = |_| udp_from(hmac(4, 3), hip(4, 3), hmac(4, 1), hip(4, 2), 64);
    let (f, _) = send(&mut p, LB, &to_la(1), 1);
    assert_eq!(f.action, Action::Forward(LA));

    // lb takes la's address with a gratuitous ARP, then la's MAC as its source.
    let (f, _) = send(
        &mut p,
        LB,
        &arp(
            ArpOp::Request,
            hmac(4, 3),
            MacAddr::BROADCAST,
            hmac(4, 3),
            hip(4, 2),
            hip(4, 2),
        ),
        2,
    );
    assert!(!matches!(f.action, Action::Flood(_)), "{:?}", f.action);
    assert_eq!(p.neighbors().get(hip(4, 2)).unwrap().mac, hmac(4, 2));
    assert_eq!(p.counters().events(Event::NeighborBindRefused), 1);
    send(
        &mut p,
        LB,
        &udp_from(hmac(4, 2), hip(4, 3), hmac(4, 1), hip(4, 1), 64),
        3,
    );
    assert_eq!(p.fdb().lookup(DomainId(1), hmac(4, 2)), Some(LA));
    assert_eq!(p.counters().events(Event::FdbMoveRefused), 1);
    // la's traffic still goes to la.
    let (f, _) = send(&mut p, LB, &to_la(4), 4);
    assert_eq!(f.action, Action::Forward(LA));
    // la itself may still update its own entry.
    let (f, _) = send(
        &mut p,
        LA,
        &arp(
            ArpOp::Reply,
            hmac(4, 2),
            hmac(4, 1),
            hmac(4, 2),
            hip(4, 2),
            hip(4, 1),
        ),
        5,
    );
    assert_eq!(f.action, Action::Consume);
    assert_eq!(p.counters().events(Event::NeighborBindRefused), 1);
    assert_accounted(&p);
}

// ---- fair shares -------------------------------------------------------------------

#[test]
fn a_mac_flood_in_one_network_does_not_stop_learning_in_another() {
    // The helpers' topology: "default" (a, b, c) and "other" (x, y); 64 entries.
    let mut p = Pipeline::new(spec(64)).unwrap();
    for i in 0..200u32 {
        let m = MacAddr([0x02, 0xee, 0, 0, (i >> 8) as u8, i as u8]);
        send(&mut p, X, &udp(m, MacAddr::BROADCAST, 4), 1);
    }
    assert_eq!(p.fdb().domain_len(DomainId(1)), 32, "other's even share");
    assert!(p.counters().events(Event::FdbNetworkLimit) > 0);
    send(&mut p, A, &udp(mac(2), MacAddr::BROADCAST, 4), 2);
    assert_eq!(
        p.fdb().lookup(DomainId(0), mac(2)),
        Some(A),
        "default still learns"
    );
    let (f, _) = send(&mut p, B, &udp(mac(3), mac(2), 4), 3);
    assert_eq!(f.action, Action::Forward(A));
    assert_eq!(p.counters().events(Event::FdbLimit), 0);
    assert_accounted(&p);
}

// front 10.1.0.0/24 joined to back 10.2.0.0/16; left 10.3.0.0/24 joined to right
// 10.4.0.0/24; one port each.
const F1: PortId = PortId(0);
const B1: PortId = PortId(1);
const L1: PortId = PortId(2);
const R1: PortId = PortId(3);

fn four_networks(neighbor_max: usize, held_max: usize) -> Pipeline {
    let mut back = net("back", 2);
    back.subnet = "10.2.0.0/16".parse().unwrap();
    Pipeline::new(Spec {
        allow: vec![(DomainId(0), DomainId(1)), (DomainId(2), DomainId(3))],
        neighbor: NeighborConfig {
            max: neighbor_max,
            held_max,
            ..Default::default()
        },
        ..Spec::new(
            vec![net("front", 1), back, net("left", 3), net("right", 4)],
            vec![
                host("f1", 0, 1, 2),
                host("b1", 1, 2, 2),
                host("l1", 2, 3, 2),
                host("r1", 3, 4, 2),
            ],
        )
    })
    .unwrap()
}

#[test]
fn packets_to_unused_addresses_do_not_stop_resolution_elsewhere() {
    // The default table (1024 entries, 256 held packets) over four networks.
    let mut p = four_networks(1024, 256);
    // front sprays back's unused addresses, many times the table over: at ~350 a
    // second each entry waits 3 s, which pinned the whole table before.
    let mut now = 0;
    for i in 0..3000u32 {
        let dst = Ipv4Addr::new(10, 2, 1 + (i >> 8) as u8, i as u8);
        now = u64::from(i) / 4; // 4000 a second
        send(
            &mut p,
            F1,
            &udp_from(hmac(1, 2), hip(1, 2), hmac(1, 1), dst, 64),
            now,
        );
    }
    let (entries, held) = p.neighbors().domain_usage(DomainId(1));
    assert!(
        entries <= 256 && held <= 64,
        "back holds {entries} entries, {held} packets"
    );
    // left still resolves right's endpoint and routes to it.
    let (f, emitted) = send(
        &mut p,
        L1,
        &udp_from(hmac(3, 2), hip(3, 2), hmac(3, 1), hip(4, 2), 64),
        now,
    );
    assert_eq!(f.action, Action::Held, "waits for its next hop");
    assert_eq!(emitted.len(), 1, "an ARP request goes out");
    let out = answer(&mut p, R1, hmac(4, 2), hip(4, 2), hmac(4, 1), now + 1);
    let delivered: Vec<_> = out
        .iter()
        .filter(|f| f.action == Action::Forward(R1))
        .collect();
    assert_eq!(delivered.len(), 1, "the held packet reached right: {out:?}");
    // Even back resolves a new endpoint under the flood: the oldest unresolved
    // entries make room.
    let (f, _) = send(
        &mut p,
        F1,
        &udp_from(hmac(1, 2), hip(1, 2), hmac(1, 1), hip(2, 2), 64),
        now + 3,
    );
    assert_eq!(f.action, Action::Held);
    let out = answer(&mut p, B1, hmac(2, 2), hip(2, 2), hmac(2, 1), now + 4);
    assert!(
        out.iter().any(|f| f.action == Action::Forward(B1)),
        "{out:?}"
    );
    tick(&mut p, now + 5);
    assert!(drops(&p, DropReason::NeighborEvicted) > 0);
    assert_eq!(drops(&p, DropReason::NeighborTableFull), 0);
    assert_accounted(&p);
}

#[test]
fn one_network_spending_the_icmp_budget_does_not_silence_another() {
    let mut p = four_networks(1024, 256);
    // front's endpoint sends TTL-1 packets from 200 addresses of its own subnet
    // (valid sources, each its own per-destination bucket): front's budget is spent.
    let mut errors = 0;
    for i in 0..200u32 {
        let src = Ipv4Addr::from(u32::from(hip(1, 0)) + 2 + i % 250);
        let (_, emitted) = send(
            &mut p,
            F1,
            &udp_from(hmac(1, 2), src, hmac(1, 1), hip(2, 9), 1),
            10,
        );
        errors += emitted.len();
    }
    assert_eq!(errors, 50, "front's burst");
    assert!(p.counters().events(Event::IcmpRateLimited) >= 150);
    // left is still told.
    let (f, emitted) = send(
        &mut p,
        L1,
        &udp_from(hmac(3, 2), hip(3, 2), hmac(3, 1), hip(4, 9), 1),
        10,
    );
    assert_eq!(f.action, Action::Drop(DropReason::TtlExpired));
    assert_eq!(emitted.len(), 1, "time exceeded to left's endpoint");
    assert_eq!(emitted[0].action, Action::Forward(L1));
}

// ---- offload headers ---------------------------------------------------------------

fn tcp_super_frame(payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(2).0, mac(3).0)
        .ipv4(ip(2).octets(), ip(3).octets(), 64)
        .tcp(40000, 80, 1, 64000)
        .write(&mut v, &vec![0x5a; payload])
        .unwrap();
    v
}

fn tso(gso_size: u16) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
}

#[test]
fn impossible_offload_headers_are_dropped() {
    let mut p = pipeline();
    send(&mut p, B, &udp(mac(3), MacAddr::BROADCAST, 4), 0);
    let frame = tcp_super_frame(60_000);
    let (f, _) = send_vnet(&mut p, A, &frame, tso(1448), 1);
    assert_eq!(f.action, Action::Forward(B), "a real super-frame passes");
    for (vnet, what) in [
        (tso(1), "segment size 1: 60 000 segments"),
        (tso(63), "below 64"),
        (tso(1501), "over the MTU"),
        (
            VirtioNetHdr {
                hdr_len: 60_100,
                ..tso(1448)
            },
            "header length past the end",
        ),
        (
            VirtioNetHdr {
                csum_start: 60_080,
                ..tso(1448)
            },
            "checksum past the end",
        ),
        (
            VirtioNetHdr {
                gso_type: 0x7f,
                ..tso(1448)
            },
            "unknown type",
        ),
    ] {
        let (f, _) = send_vnet(&mut p, A, &frame, vnet, 2);
        assert_eq!(f.action, Action::Drop(DropReason::BadVnetHeader), "{what}");
    }
    // A small frame with a partial checksum whose position is outside it.
    let small = tcp_super_frame(10);
    let bad = VirtioNetHdr {
        gso_type: 0,
        gso_size: 0,
        csum_offset: 60,
        ..tso(0)
    };
    let (f, _) = send_vnet(&mut p, A, &small, bad, 3);
    assert_eq!(f.action, Action::Drop(DropReason::BadVnetHeader));
    assert_eq!(drops(&p, DropReason::BadVnetHeader), 7);
    assert_accounted(&p);
}
