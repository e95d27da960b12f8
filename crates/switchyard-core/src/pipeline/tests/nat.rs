//! Connection tracking and NAT: masquerade, published ports, hairpin, ICMP error
//! translation, table limits, timeouts, checksums.

use super::*;
use crate::pipeline::conntrack::{ProtoState, TcpState};
use crate::wire::{checksum, IpProtocol, Ipv4Packet};
use etherparse::{SlicedPacket, TransportSlice};

// front 10.1.0.0/24 (masquerade): ports fa (10.1.0.2), fb (10.1.0.3)
// back 10.2.0.0/24 (masquerade): port ba (10.2.0.2)
// outside 198.51.100.0/24 (external, uplink 198.51.100.1): port out, peer 198.51.100.2
// published: tcp 8080 -> 10.1.0.2:80, udp 5353 -> 10.1.0.3:53
pub(super) const FA: PortId = PortId(0);
pub(super) const FB: PortId = PortId(1);
pub(super) const BA: PortId = PortId(2);
pub(super) const OUT: PortId = PortId(3);
pub(super) const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

pub(super) fn hmac(ip: Ipv4Addr) -> MacAddr {
    MacAddr::from_ipv4(ip)
}

pub(super) fn gw(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr::from_ipv4(Ipv4Addr::new(o[0], o[1], o[2], 1))
}

pub(super) fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(super) fn nat_router(conntrack_max: usize, port_range: (u16, u16)) -> Pipeline {
    nat_router_shared(conntrack_max, port_range, Vec::new())
}

/// [`nat_router`] with networks' own shares of the conntrack table.
fn nat_router_shared(
    conntrack_max: usize,
    port_range: (u16, u16),
    conntrack_shares: Vec<(DomainId, usize)>,
) -> Pipeline {
    nat_router_full(conntrack_max, port_range, conntrack_shares, true)
}

/// [`nat_router`] with source validation off, to test what conntrack's zones do on
/// their own (the two guards overlap: a forged reply also has a spoofed source).
fn nat_router_without_rp_filter() -> Pipeline {
    nat_router_full(64, (1024, 65535), Vec::new(), false)
}

fn nat_router_full(
    conntrack_max: usize,
    port_range: (u16, u16),
    conntrack_shares: Vec<(DomainId, usize)>,
    rp_filter: bool,
) -> Pipeline {
    let mut spec = nat_spec(conntrack_max, port_range, rp_filter);
    for (d, max) in conntrack_shares {
        spec.domains[d.index()].guard.conntrack_max = Some(max);
    }
    nat_router_of(spec)
}

/// The spec of [`nat_router`], to change before building the pipeline.
pub(super) fn nat_spec(conntrack_max: usize, port_range: (u16, u16), rp_filter: bool) -> Spec {
    let dom =
        |name: &str, subnet: &str, gw_ip: &str, masquerade: bool, external: bool| DomainSpec {
            name: name.into(),
            subnet: subnet.parse().unwrap(),
            mtu: 1500,
            gateway: Some(GatewaySpec {
                ip: a(gw_ip),
                mac: MacAddr::from_ipv4(a(gw_ip)),
            }),
            mode: DomainMode::Bridge,
            proxy_arp: false,
            masquerade,
            external,
            dns: false,
            guard: DomainGuard {
                rp_filter,
                ..Default::default()
            },
        };
    let domains = vec![
        dom("front", "10.1.0.0/24", "10.1.0.1", true, false),
        dom("back", "10.2.0.0/24", "10.2.0.1", true, false),
        dom("outside", "198.51.100.0/24", "198.51.100.1", false, true),
    ];
    let port = |n: &str, d: u16| PortSpec::new(n, DomainId(d));
    Spec {
        nat: NatSpec {
            publish: vec![
                PublishSpec {
                    proto: IpProtocol::TCP,
                    host_port: 8080,
                    target: a("10.1.0.2"),
                    target_port: 80,
                },
                PublishSpec {
                    proto: IpProtocol::UDP,
                    host_port: 5353,
                    target: a("10.1.0.3"),
                    target_port: 53,
                },
            ],
            port_range,
            conntrack_max,
            timeouts: Timeouts::default(),
        },
        ..Spec::new(
            domains,
            vec![port("fa", 0), port("fb", 0), port("ba", 1), port("out", 2)],
        )
    }
}

/// The pipeline of `spec` (a [`nat_spec`]), with every host's ARP answer learned.
pub(super) fn nat_router_of(spec: Spec) -> Pipeline {
    let mut p = Pipeline::new(spec).unwrap();
    // Every host has answered ARP already.
    for (port, ip) in [
        (FA, "10.1.0.2"),
        (FB, "10.1.0.3"),
        (BA, "10.2.0.2"),
        (OUT, "198.51.100.2"),
    ] {
        let ip = a(ip);
        let mut v = vec![0u8; 42];
        crate::wire::ethernet::write_header(&mut v, gw(ip), hmac(ip), crate::wire::EtherType::ARP);
        let o = ip.octets();
        crate::wire::arp::write(
            &mut v[14..],
            crate::wire::arp::ArpOp::Reply,
            hmac(ip),
            ip,
            gw(ip),
            Ipv4Addr::new(o[0], o[1], o[2], 1),
        );
        run(&mut p, port, &v, 0);
    }
    p
}

/// A TCP segment from `src:sp` to `dst:dp` with the given flags, sent to the
/// gateway of the sender's network.
pub(super) fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: &str, ttl: u8) -> Vec<u8> {
    let (s, d) = (a(src), a(dst));
    let mut b = etherparse::PacketBuilder::ethernet2(hmac(s).0, gw(s).0)
        .ipv4(s.octets(), d.octets(), ttl)
        .tcp(sp, dp, 1000, 64000);
    for c in flags.chars() {
        b = match c {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, b"data").unwrap();
    v
}

pub(super) fn udp4(src: &str, sp: u16, dst: &str, dp: u16) -> Vec<u8> {
    let (s, d) = (a(src), a(dst));
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(hmac(s).0, gw(s).0)
        .ipv4(s.octets(), d.octets(), 64)
        .udp(sp, dp)
        .write(&mut v, b"hello")
        .unwrap();
    v
}

/// (src, sport, dst, dport) of a frame, after checking every checksum in it.
pub(super) fn flow_of(f: &Frame) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = SlicedPacket::from_ethernet(f.data()).unwrap();
    let Some(etherparse::NetSlice::Ipv4(v4)) = &p.net else {
        panic!("not IPv4")
    };
    let h = v4.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum, "IP checksum");
    let (sp, dp) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(),
                t.checksum(),
                "TCP checksum"
            );
            (t.source_port(), t.destination_port())
        }
        Some(TransportSlice::Udp(u)) => {
            assert_eq!(
                u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap(),
                u.checksum(),
                "UDP checksum"
            );
            (u.source_port(), u.destination_port())
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert!(checksum::verify(i.slice()), "ICMP checksum");
            let id = u16::from_be_bytes([i.slice()[4], i.slice()[5]]);
            (id, id)
        }
        other => panic!("unexpected transport {other:?}"),
    };
    (
        v4.header().source_addr(),
        sp,
        v4.header().destination_addr(),
        dp,
    )
}

fn tcp_state(p: &Pipeline) -> Vec<TcpState> {
    p.conntrack()
        .entries(p.now())
        .into_iter()
        .filter_map(|(c, _)| match c.state {
            ProtoState::Tcp(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn masquerade_follows_a_tcp_connection_through_every_state() {
    let mut p = nat_router(64, (1024, 65535));
    let steps: [(PortId, Vec<u8>, TcpState); 8] = [
        (
            FA,
            tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64),
            TcpState::SynSent,
        ),
        (
            OUT,
            tcp("198.51.100.2", 80, "198.51.100.1", 40000, "SA", 64),
            TcpState::SynRecv,
        ),
        (
            FA,
            tcp("10.1.0.2", 40000, "198.51.100.2", 80, "A", 64),
            TcpState::Established,
        ),
        (
            OUT,
            tcp("198.51.100.2", 80, "198.51.100.1", 40000, "A", 64),
            TcpState::Established,
        ),
        (
            FA,
            tcp("10.1.0.2", 40000, "198.51.100.2", 80, "FA", 64),
            TcpState::FinWait,
        ),
        (
            OUT,
            tcp("198.51.100.2", 80, "198.51.100.1", 40000, "A", 64),
            TcpState::CloseWait,
        ),
        (
            OUT,
            tcp("198.51.100.2", 80, "198.51.100.1", 40000, "FA", 64),
            TcpState::LastAck,
        ),
        (
            FA,
            tcp("10.1.0.2", 40000, "198.51.100.2", 80, "A", 64),
            TcpState::TimeWait,
        ),
    ];
    for (i, (port, bytes, state)) in steps.iter().enumerate() {
        let (f, _) = run(&mut p, *port, bytes, 1 + i as u64);
        if *port == FA {
            assert_eq!(f.action, Action::Forward(OUT));
            assert_eq!(
                flow_of(&f),
                (UPLINK, 40000, PEER, 80),
                "masqueraded, port kept"
            );
        } else {
            assert_eq!(f.action, Action::Forward(FA));
            assert_eq!(
                flow_of(&f),
                (PEER, 80, a("10.1.0.2"), 40000),
                "reply translated back"
            );
        }
        assert_eq!(tcp_state(&p), vec![*state], "after step {i}");
    }
    assert_eq!(p.counters().events(Event::SnatFlows), 1);
    assert_eq!(
        p.conntrack()
            .entries(p.now())
            .into_iter()
            .next()
            .unwrap()
            .0
            .packets,
        [4, 4]
    );
    // TIME_WAIT lasts 120 s; then the entry is reclaimed.
    p.tick(
        Timestamp::from_secs(8 + 119),
        &mut Emitter::with_capacity(4),
    );
    assert_eq!(p.conntrack().len(), 1);
    for s in 0..12 {
        p.tick(
            Timestamp::from_secs(8 + 121 + s),
            &mut Emitter::with_capacity(4),
        );
    }
    assert_eq!(p.conntrack().len(), 0);
    assert_eq!(p.counters().events(Event::CtExpired), 1);
    // A packet of the old flow is no longer translated: not a SYN, no connection.
    let (f, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 80, "198.51.100.1", 40000, "A", 64),
        200,
    );
    assert!(matches!(f.action, Action::Drop(_)));
}

#[test]
fn udp_is_unreplied_for_30s_then_assured_for_120s() {
    let mut p = nat_router(64, (1024, 65535));
    let (f, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 0);
    assert_eq!(flow_of(&f), (UPLINK, 5000, PEER, 53));
    let c = p.conntrack().entries(p.now()).into_iter().next().unwrap();
    assert_eq!(
        (c.0.state, c.0.assured, c.1),
        (ProtoState::Udp { replied: false }, false, 30)
    );
    let (f, _) = run(
        &mut p,
        OUT,
        &udp4("198.51.100.2", 53, "198.51.100.1", 5000),
        10,
    );
    assert_eq!(
        (f.action, flow_of(&f)),
        (Action::Forward(FA), (PEER, 53, a("10.1.0.2"), 5000))
    );
    let c = p.conntrack().entries(p.now()).into_iter().next().unwrap();
    assert_eq!(
        (c.0.state, c.0.assured, c.1),
        (ProtoState::Udp { replied: true }, true, 120)
    );
}

#[test]
fn icmp_echo_is_tracked_by_identifier() {
    let mut p = nat_router(64, (1024, 65535));
    let (f, _) = run(
        &mut p,
        FA,
        &echo_request(hmac(a("10.1.0.2")), a("10.1.0.2"), gw(a("10.1.0.2")), PEER),
        0,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    assert_eq!(flow_of(&f), (UPLINK, 0x77, PEER, 0x77));
    // The reply: echo reply from the peer to the uplink, same id.
    let mut reply = Vec::new();
    etherparse::PacketBuilder::ethernet2(hmac(PEER).0, gw(PEER).0)
        .ipv4(PEER.octets(), UPLINK.octets(), 64)
        .icmpv4_echo_reply(0x77, 3)
        .write(&mut reply, b"switchyard ping")
        .unwrap();
    let (f, _) = run(&mut p, OUT, &reply, 1);
    assert_eq!(f.action, Action::Forward(FA));
    assert_eq!(flow_of(&f), (PEER, 0x77, a("10.1.0.2"), 0x77));
}

#[test]
fn two_endpoints_with_the_same_source_port_get_distinct_mappings() {
    let mut p = nat_router(64, (1024, 65535));
    let (f1, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64),
        0,
    );
    let (f2, _) = run(
        &mut p,
        BA,
        &tcp("10.2.0.2", 40000, "198.51.100.2", 80, "S", 64),
        0,
    );
    let (_, p1, _, _) = flow_of(&f1);
    let (_, p2, _, _) = flow_of(&f2);
    assert_eq!(p1, 40000, "the first keeps its port");
    assert_ne!(p2, 40000, "the second gets another");
    assert!(p2 >= 1024);
    assert_eq!(p.counters().events(Event::SnatPortChanged), 1);
    // Each reply goes back to its own endpoint.
    let (r1, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 80, "198.51.100.1", p1, "SA", 64),
        1,
    );
    let (r2, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 80, "198.51.100.1", p2, "SA", 64),
        1,
    );
    assert_eq!(
        (r1.action, flow_of(&r1).2, flow_of(&r1).3),
        (Action::Forward(FA), a("10.1.0.2"), 40000)
    );
    assert_eq!(
        (r2.action, flow_of(&r2).2, flow_of(&r2).3),
        (Action::Forward(BA), a("10.2.0.2"), 40000)
    );
}

#[test]
fn port_exhaustion_is_counted() {
    let mut p = nat_router(64, (40000, 40000));
    run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64),
        0,
    );
    let (f, _) = run(
        &mut p,
        BA,
        &tcp("10.2.0.2", 40000, "198.51.100.2", 80, "S", 64),
        0,
    );
    assert_eq!(f.action, Action::Drop(DropReason::NatExhausted));
}

#[test]
fn a_full_table_evicts_unassured_flows_else_refuses_new_ones() {
    let mut p = nat_router(2, (1024, 65535));
    run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 1, "198.51.100.2", 80, "S", 64),
        0,
    );
    run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 2, "198.51.100.2", 80, "S", 64),
        0,
    );
    // A third half-open flow evicts one of the unassured two (a SYN flood cannot lock
    // the table).
    let (f, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 3, "198.51.100.2", 80, "S", 64),
        0,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    assert_eq!(p.counters().events(Event::CtEvicted), 1);
    assert_eq!(p.conntrack().len(), 2);
    // Make both remaining flows established (assured).
    let ports: Vec<u16> = p
        .conntrack()
        .entries(p.now())
        .into_iter()
        .map(|(c, _)| c.orig.sport)
        .collect();
    for sp in &ports {
        run(
            &mut p,
            OUT,
            &tcp("198.51.100.2", 80, "198.51.100.1", *sp, "SA", 64),
            1,
        );
        run(
            &mut p,
            FA,
            &tcp("10.1.0.2", *sp, "198.51.100.2", 80, "A", 64),
            1,
        );
    }
    let (f, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 4, "198.51.100.2", 80, "S", 64),
        2,
    );
    assert_eq!(f.action, Action::Drop(DropReason::ConntrackFull));
    assert_eq!(p.conntrack().len(), 2, "never more than the maximum");
}

#[test]
fn a_published_port_reaches_the_endpoint_and_replies_come_back() {
    let mut p = nat_router(64, (1024, 65535));
    let (f, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 33333, "198.51.100.1", 8080, "S", 64),
        0,
    );
    assert_eq!(f.action, Action::Forward(FA));
    assert_eq!(
        flow_of(&f),
        (PEER, 33333, a("10.1.0.2"), 80),
        "DNAT; the client's address is kept"
    );
    let (r, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 80, "198.51.100.2", 33333, "SA", 64),
        1,
    );
    assert_eq!(r.action, Action::Forward(OUT));
    assert_eq!(flow_of(&r), (UPLINK, 8080, PEER, 33333));
    assert_eq!(p.counters().events(Event::DnatFlows), 1);
    // UDP too.
    let (f, _) = run(
        &mut p,
        OUT,
        &udp4("198.51.100.2", 7777, "198.51.100.1", 5353),
        2,
    );
    assert_eq!(
        (f.action, flow_of(&f)),
        (Action::Forward(FB), (PEER, 7777, a("10.1.0.3"), 53))
    );
    // A port that is not published is switchyard's own: nothing listens.
    let (f, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 33333, "198.51.100.1", 9999, "S", 64),
        3,
    );
    assert_eq!(f.action, Action::Drop(DropReason::LocalProtocol));
    // Not a SYN and no connection: invalid.
    let (f, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 44444, "198.51.100.1", 8080, "A", 64),
        3,
    );
    assert_eq!(f.action, Action::Drop(DropReason::ConntrackInvalid));
}

#[test]
fn hairpin_to_a_published_port_comes_back_through_switchyard() {
    let mut p = nat_router(64, (1024, 65535));
    // fb (10.1.0.3) uses the published address of fa's service, on its own network.
    let (f, _) = run(
        &mut p,
        FB,
        &tcp("10.1.0.3", 45000, "198.51.100.1", 8080, "S", 64),
        0,
    );
    assert_eq!(f.action, Action::Forward(FA));
    assert_eq!(
        flow_of(&f),
        (a("10.1.0.1"), 45000, a("10.1.0.2"), 80),
        "source rewritten to the gateway"
    );
    // fa answers the gateway; switchyard turns it back into the published address.
    let (r, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 80, "10.1.0.1", 45000, "SA", 64),
        1,
    );
    assert_eq!(r.action, Action::Forward(FB));
    assert_eq!(flow_of(&r), (UPLINK, 8080, a("10.1.0.3"), 45000));
    // From another network too (back is not joined to front, but published ports are public).
    let (f, _) = run(
        &mut p,
        BA,
        &tcp("10.2.0.2", 45000, "198.51.100.1", 8080, "S", 64),
        2,
    );
    assert_eq!(
        (f.action, flow_of(&f).0),
        (Action::Forward(FA), a("10.1.0.1"))
    );
}

#[test]
fn icmp_errors_about_translated_flows_are_translated() {
    let mut p = nat_router(64, (1024, 65535));
    let (out, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 0);
    // The peer answers the masqueraded datagram with a port unreachable.
    let mut err = Frame::new();
    super::super::stages::icmp_error::build_about_frame(
        &mut err,
        out.data(),
        super::super::stages::icmp_error::IcmpError {
            kind: 3,
            code: 3,
            mtu: 0,
        },
        super::super::stages::icmp_error::ErrorSource {
            ip: PEER,
            mac: hmac(PEER),
        },
        9,
    );
    let mut bytes = err.data().to_vec();
    bytes[0..6].copy_from_slice(&gw(PEER).0);
    bytes[6..12].copy_from_slice(&hmac(PEER).0);
    let (f, _) = run(&mut p, OUT, &bytes, 1);
    assert_eq!(f.action, Action::Forward(FA), "delivered to the endpoint");
    let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
    assert!(ip.checksum_ok());
    assert_eq!((ip.src(), ip.dst()), (PEER, a("10.1.0.2")));
    let icmp = ip.payload();
    assert!(checksum::verify(icmp));
    let q = Ipv4Packet::new_checked(&icmp[8..]).unwrap();
    assert!(q.checksum_ok(), "the quoted header's checksum");
    assert_eq!(
        (q.src(), q.dst()),
        (a("10.1.0.2"), PEER),
        "the quote shows what the endpoint sent"
    );
    assert_eq!(u16::from_be_bytes([icmp[8 + 20], icmp[8 + 21]]), 5000);
    assert_eq!(p.counters().events(Event::IcmpErrorsTranslated), 1);

    // An endpoint's port unreachable about a published UDP flow comes out from the uplink.
    let (inb, _) = run(
        &mut p,
        OUT,
        &udp4("198.51.100.2", 7777, "198.51.100.1", 5353),
        2,
    );
    let mut err = Frame::new();
    super::super::stages::icmp_error::build_about_frame(
        &mut err,
        inb.data(),
        super::super::stages::icmp_error::IcmpError {
            kind: 3,
            code: 3,
            mtu: 0,
        },
        super::super::stages::icmp_error::ErrorSource {
            ip: a("10.1.0.3"),
            mac: hmac(a("10.1.0.3")),
        },
        9,
    );
    let mut bytes = err.data().to_vec();
    bytes[0..6].copy_from_slice(&gw(a("10.1.0.3")).0);
    bytes[6..12].copy_from_slice(&hmac(a("10.1.0.3")).0);
    let (f, _) = run(&mut p, FB, &bytes, 3);
    assert_eq!(f.action, Action::Forward(OUT));
    let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (UPLINK, PEER));
    let q = Ipv4Packet::new_checked(&ip.payload()[8..]).unwrap();
    assert_eq!(
        (q.src(), q.dst()),
        (PEER, UPLINK),
        "the quote shows what the peer sent"
    );
    assert_eq!(
        u16::from_be_bytes([ip.payload()[8 + 22], ip.payload()[8 + 23]]),
        5353
    );
}

#[test]
fn errors_switchyard_sends_about_translated_packets_quote_them_as_sent() {
    let mut p = nat_router(64, (1024, 65535));
    // A published-port SYN that arrives with TTL 1: time exceeded back to the peer,
    // quoting the packet the peer sent (to the uplink address, not the endpoint).
    let pkt = tcp("198.51.100.2", 33333, "198.51.100.1", 8080, "S", 1);
    let (f, emitted) = run(&mut p, OUT, &pkt, 0);
    assert_eq!(f.action, Action::Drop(DropReason::TtlExpired));
    let (_, bytes) = &emitted[0];
    let ip = Ipv4Packet::new_checked(&bytes[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (UPLINK, PEER));
    assert_eq!(&ip.payload()[8..28], &pkt[14..34]);
}

#[test]
fn unsolicited_inbound_traffic_is_isolated() {
    let mut p = nat_router(64, (1024, 65535));
    let (f, _) = run(
        &mut p,
        OUT,
        &tcp("198.51.100.2", 33333, "10.1.0.2", 80, "S", 64),
        0,
    );
    assert_eq!(f.action, Action::Drop(DropReason::Isolated));
}

#[test]
fn fragments_and_other_protocols_cannot_be_masqueraded() {
    let mut p = nat_router(64, (1024, 65535));
    let mut frag = udp4("10.1.0.2", 5000, "198.51.100.2", 53);
    frag[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes());
    frag[14 + 10..14 + 12].fill(0);
    let c = checksum::checksum(&frag[14..34]);
    frag[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        run(&mut p, FA, &frag, 0).0.action,
        Action::Drop(DropReason::NatFragment)
    );
    let mut gre = udp4("10.1.0.2", 5000, "198.51.100.2", 53);
    gre[14 + 9] = 47;
    gre[14 + 10..14 + 12].fill(0);
    let c = checksum::checksum(&gre[14..34]);
    gre[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        run(&mut p, FA, &gre, 0).0.action,
        Action::Drop(DropReason::NatUnsupported)
    );
}

#[test]
fn partial_checksums_are_translated_as_partial() {
    let mut p = nat_router(64, (1024, 65535));
    let mut bytes = tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64);
    // As a sender with checksum offload leaves it: the pseudo-header sum, not complemented.
    let l4len = (bytes.len() - 34) as u16;
    let partial = checksum::fold(checksum::pseudo_header_sum(
        a("10.1.0.2"),
        PEER,
        IpProtocol::TCP,
        l4len,
    ));
    bytes[34 + 16..34 + 18].copy_from_slice(&partial.to_be_bytes());
    let mut frames = [Frame::from_bytes(FA, &bytes)];
    frames[0].vnet.flags = crate::wire::virtio_net::F_NEEDS_CSUM;
    frames[0].vnet.csum_start = 34;
    frames[0].vnet.csum_offset = 16;
    p.process(
        &mut frames,
        Timestamp::from_secs(1),
        &mut Emitter::with_capacity(4),
    );
    let f = &mut frames[0];
    assert_eq!(f.action, Action::Forward(OUT));
    let got = u16::from_be_bytes([f.data()[50], f.data()[51]]);
    let want = checksum::fold(checksum::pseudo_header_sum(
        UPLINK,
        PEER,
        IpProtocol::TCP,
        l4len,
    ));
    assert_eq!(got, want, "still a partial sum, now over the new addresses");
    assert!(checksum::complete_partial(f.data_mut(), 34, 16));
    assert_eq!(
        flow_of(f),
        (UPLINK, 40000, PEER, 80),
        "and right once completed"
    );
}

#[test]
fn a_recycled_buffer_does_not_carry_the_last_packets_flow() {
    let mut p = nat_router(64, (1024, 65535));
    let mut out = Emitter::with_capacity(8);
    // The dataplane reuses buffers: it reads the next frame into the same Frame
    // without clearing its metadata.
    let mut frames = [Frame::from_bytes(
        OUT,
        &tcp("198.51.100.2", 33333, "198.51.100.1", 8080, "S", 64),
    )];
    p.process(&mut frames, Timestamp::from_secs(0), &mut out);
    assert!(frames[0].ct.is_some());
    let next = tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64);
    frames[0].buffer_mut()[HEADROOM..HEADROOM + next.len()].copy_from_slice(&next);
    frames[0].set_bounds(HEADROOM, next.len());
    frames[0].ingress = FA;
    p.process(&mut frames, Timestamp::from_secs(1), &mut out);
    assert_eq!(frames[0].action, Action::Forward(OUT));
    assert_eq!(
        flow_of(&frames[0]),
        (UPLINK, 40000, PEER, 80),
        "masqueraded as its own flow"
    );
}

/// `bytes` as sent by the endpoint `from` to its own gateway (Ethernet addresses
/// rewritten), with the IP destination set to `dst` if given (checksum fixed).
fn sent_by(from: &str, mut bytes: Vec<u8>, dst: Option<Ipv4Addr>) -> Vec<u8> {
    bytes[0..6].copy_from_slice(&gw(a(from)).0);
    bytes[6..12].copy_from_slice(&hmac(a(from)).0);
    if let Some(d) = dst {
        bytes[14 + 16..14 + 20].copy_from_slice(&d.octets());
        bytes[14 + 10..14 + 12].fill(0);
        let c = checksum::checksum(&bytes[14..34]);
        bytes[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    }
    bytes
}

/// An ICMP port unreachable from `from` about the packet in `about` (as received).
fn port_unreachable(about: &[u8], from: Ipv4Addr) -> Vec<u8> {
    let mut err = Frame::new();
    super::super::stages::icmp_error::build_about_frame(
        &mut err,
        about,
        super::super::stages::icmp_error::IcmpError {
            kind: 3,
            code: 3,
            mtu: 0,
        },
        super::super::stages::icmp_error::ErrorSource {
            ip: from,
            mac: hmac(from),
        },
        9,
    );
    err.data().to_vec()
}

/// front's flow to 198.51.100.2:53 is tracked; a back endpoint forges its reply
/// (198.51.100.2:53 > 198.51.100.1:5000) and sends it to back's gateway. The reply
/// direction is expected from `outside` only: from back the packet is untracked, is
/// not de-NATed into front, and is dropped.
#[test]
fn a_forged_reply_from_another_network_does_not_match_the_flow() {
    let mut p = nat_router_without_rp_filter();
    let (f, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 0);
    assert_eq!(flow_of(&f), (UPLINK, 5000, PEER, 53));
    let forged = sent_by(
        "10.2.0.2",
        udp4("198.51.100.2", 53, "198.51.100.1", 5000),
        None,
    );
    let (f, emitted) = run(&mut p, BA, &forged, 1);
    assert!(
        matches!(f.action, Action::Drop(_)),
        "not delivered: {:?}",
        f.action
    );
    assert!(emitted.iter().all(|(a, _)| *a != Action::Forward(FA)));
    assert_eq!(p.counters().events(Event::CtZoneMismatch), 1);
    // Aimed straight at the endpoint, it is an untracked packet between networks that
    // are not joined.
    let forged = sent_by("10.2.0.2", udp4("198.51.100.2", 53, "10.1.0.2", 5000), None);
    assert_eq!(
        run(&mut p, BA, &forged, 1).0.action,
        Action::Drop(DropReason::Isolated)
    );
    // The flow itself is untouched: the real reply, from outside, still comes back.
    let (f, _) = run(
        &mut p,
        OUT,
        &udp4("198.51.100.2", 53, "198.51.100.1", 5000),
        2,
    );
    assert_eq!(
        (f.action, flow_of(&f)),
        (Action::Forward(FA), (PEER, 53, a("10.1.0.2"), 5000))
    );
    let c = p.conntrack().entries(p.now()).into_iter().next().unwrap().0;
    assert_eq!(
        c.packets,
        [1, 1],
        "the forged packet was not accounted to it"
    );
}

/// A back endpoint sends an ICMP port unreachable quoting one of back's own tracked
/// flows, addressed to an endpoint of front. It is related to that flow only when it
/// goes where a reply to the quoted packet goes (198.51.100.2, out of the uplink):
/// aimed into front it is an untracked packet between networks not joined, dropped.
#[test]
fn an_icmp_error_about_one_networks_flow_cannot_be_aimed_into_another() {
    let mut p = nat_router(64, (1024, 65535));
    run(&mut p, BA, &udp4("10.2.0.2", 6000, "198.51.100.2", 53), 0);
    let (reply, _) = run(
        &mut p,
        OUT,
        &udp4("198.51.100.2", 53, "198.51.100.1", 6000),
        1,
    );
    assert_eq!(reply.action, Action::Forward(BA));
    let err = port_unreachable(reply.data(), a("10.2.0.2"));
    let aimed = sent_by("10.2.0.2", err.clone(), Some(a("10.1.0.2")));
    let (f, _) = run(&mut p, BA, &aimed, 2);
    assert_eq!(f.action, Action::Drop(DropReason::Isolated));
    assert_eq!(p.counters().events(Event::CtRelatedMismatch), 1);
    assert_eq!(p.counters().events(Event::IcmpErrorsTranslated), 0);
    // The same error to the flow's peer is related, and leaves translated.
    let (f, _) = run(&mut p, BA, &sent_by("10.2.0.2", err, None), 3);
    assert_eq!(f.action, Action::Forward(OUT));
    let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (UPLINK, PEER));
    assert_eq!(p.counters().events(Event::IcmpErrorsTranslated), 1);
}

/// An ICMP error about front's flow is related only from where that flow's packets
/// went: sent from back (even to the uplink address the flow is known by), it is not.
#[test]
fn an_icmp_error_is_related_only_from_the_network_its_flow_went_to() {
    let mut p = nat_router_without_rp_filter();
    let (out, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 0);
    // What the peer would send, sent from back instead.
    let err = port_unreachable(out.data(), PEER);
    let (f, _) = run(&mut p, BA, &sent_by("10.2.0.2", err.clone(), None), 1);
    // An untracked error to switchyard's own address: taken by switchyard, not
    // passed to front.
    assert_eq!(f.action, Action::Consume);
    assert_eq!(p.counters().events(Event::CtRelatedMismatch), 1);
    // From outside it is related and reaches the endpoint.
    let mut from_peer = err;
    from_peer[0..6].copy_from_slice(&gw(PEER).0);
    from_peer[6..12].copy_from_slice(&hmac(PEER).0);
    let (f, _) = run(&mut p, OUT, &from_peer, 2);
    assert_eq!(f.action, Action::Forward(FA));
}

/// An ICMP error whose quote is of a later fragment (or not IPv4 at all) names no
/// flow, as in the kernel's conntrack: its first bytes after the header are data, not
/// ports. It is untracked, so from outside it does not reach front's endpoint.
#[test]
fn an_icmp_error_quoting_a_later_fragment_or_not_ipv4_is_not_related() {
    let mut p = nat_router(64, (1024, 65535));
    let (out, _) = run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 0);
    let mut err = port_unreachable(out.data(), PEER);
    err[0..6].copy_from_slice(&gw(PEER).0);
    err[6..12].copy_from_slice(&hmac(PEER).0);
    // The quoted IPv4 header starts after Ethernet (14), IPv4 (20) and ICMP (8).
    let quote = 14 + 20 + 8;
    let refill = |e: &mut Vec<u8>| {
        e[14 + 20 + 2..14 + 20 + 4].fill(0);
        let c = !checksum::fold(checksum::sum(0, &e[14 + 20..]));
        e[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&c.to_be_bytes());
    };
    let mut fragment = err.clone();
    fragment[quote + 6..quote + 8].copy_from_slice(&0x0010u16.to_be_bytes());
    refill(&mut fragment);
    let mut not_ipv4 = err.clone();
    not_ipv4[quote] = 0xb5;
    refill(&mut not_ipv4);
    for (what, e) in [("a later fragment", fragment), ("not IPv4", not_ipv4)] {
        let (f, _) = run(&mut p, OUT, &e, 1);
        assert_ne!(f.action, Action::Forward(FA), "{what}: not delivered");
    }
    assert_eq!(p.counters().events(Event::IcmpErrorsTranslated), 0);
    // The same error with the quote intact is related and reaches the endpoint.
    let (f, _) = run(&mut p, OUT, &err, 2);
    assert_eq!(f.action, Action::Forward(FA));
}

/// A TCP segment with real sequence numbers: `flags` as in [`tcp`], `wscale` the
/// window scale option (for a SYN), `data` bytes of payload.
#[allow(clippy::too_many_arguments)]
pub(super) fn seg(
    (src, sp): (&str, u16),
    (dst, dp): (&str, u16),
    flags: &str,
    seq: u32,
    ack: u32,
    win: u16,
    wscale: Option<u8>,
    data: usize,
) -> Vec<u8> {
    let (s, d) = (a(src), a(dst));
    let mut h = etherparse::TcpHeader::new(sp, dp, seq, win);
    for c in flags.chars() {
        match c {
            'S' => h.syn = true,
            'A' => {
                h.ack = true;
                h.acknowledgment_number = ack;
            }
            'F' => h.fin = true,
            'R' => h.rst = true,
            _ => {}
        }
    }
    if let Some(w) = wscale {
        h.set_options(&[etherparse::TcpOptionElement::WindowScale(w)])
            .unwrap();
    }
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(hmac(s).0, gw(s).0)
        .ipv4(s.octets(), d.octets(), 64)
        .tcp_header(h)
        .write(&mut v, &vec![0x5a; data])
        .unwrap();
    v
}

const CLIENT: (&str, u16) = ("10.1.0.2", 40000);
/// The server as the client addresses it, and as it answers (to the uplink address).
pub(super) const SERVER: (&str, u16) = ("198.51.100.2", 80);
pub(super) const MASQ: (&str, u16) = ("198.51.100.1", 40000);
const CISN: u32 = 1_000_000;
pub(super) const SISN: u32 = 3_000_000_000;

/// A masqueraded connection, handshake done with window scaling (shift 7 both ways)
/// and 100 bytes each way: the client's next sequence number is CISN + 101, the
/// server's SISN + 101.
pub(super) fn established(p: &mut Pipeline) {
    let steps = [
        (FA, seg(CLIENT, SERVER, "S", CISN, 0, 64240, Some(7), 0)),
        (
            OUT,
            seg(SERVER, MASQ, "SA", SISN, CISN + 1, 65160, Some(7), 0),
        ),
        (
            FA,
            seg(CLIENT, SERVER, "A", CISN + 1, SISN + 1, 502, None, 0),
        ),
        (
            FA,
            seg(CLIENT, SERVER, "A", CISN + 1, SISN + 1, 502, None, 100),
        ),
        (
            OUT,
            seg(SERVER, MASQ, "A", SISN + 1, CISN + 101, 8000, None, 100),
        ),
        (
            FA,
            seg(CLIENT, SERVER, "A", CISN + 101, SISN + 101, 502, None, 0),
        ),
    ];
    for (i, (port, bytes)) in steps.iter().enumerate() {
        let (f, _) = run(p, *port, bytes, 1);
        assert!(
            matches!(f.action, Action::Forward(_)),
            "step {i}: {:?}",
            f.action
        );
    }
    assert_eq!(tcp_state(p), vec![TcpState::Established]);
}

/// A RST with an arbitrary sequence number, sent from outside to the masqueraded
/// connection's address, is out of window: dropped, counted, and the connection
/// stays ESTABLISHED. Ten seconds later (CLOSE would have timed out by then) the
/// endpoint's traffic still flows both ways.
#[test]
fn a_blind_rst_does_not_close_a_tracked_connection() {
    let mut p = nat_router(64, (1024, 65535));
    established(&mut p);
    let blind = [
        // Nowhere near the server's sequence numbers.
        seg(SERVER, MASQ, "R", 0x1234_5678, 0, 0, None, 0),
        seg(
            SERVER,
            MASQ,
            "RA",
            SISN.wrapping_add(1 << 31),
            CISN + 101,
            0,
            None,
            0,
        ),
        // Inside the window behind, but before what the client has acknowledged.
        seg(SERVER, MASQ, "R", SISN + 50, 0, 0, None, 0),
        // A blind FIN does not start a close either.
        seg(SERVER, MASQ, "FA", 0x1234_5678, CISN + 101, 8000, None, 0),
    ];
    for (i, bytes) in blind.iter().enumerate() {
        let (f, _) = run(&mut p, OUT, bytes, 2);
        assert_eq!(
            f.action,
            Action::Drop(DropReason::ConntrackOutOfWindow),
            "segment {i}"
        );
        assert_eq!(tcp_state(&p), vec![TcpState::Established], "segment {i}");
    }
    let c = p.conntrack().entries(p.now()).into_iter().next().unwrap().0;
    assert_eq!(c.packets, [4, 2], "the dropped segments were not accounted");
    // Past CLOSE's 10 s: the connection carries data both ways.
    for s in 3..14 {
        p.tick(Timestamp::from_secs(s), &mut Emitter::with_capacity(4));
    }
    let (f, _) = run(
        &mut p,
        FA,
        &seg(CLIENT, SERVER, "A", CISN + 101, SISN + 101, 502, None, 200),
        14,
    );
    assert_eq!(f.action, Action::Forward(OUT));
    let (f, _) = run(
        &mut p,
        OUT,
        &seg(SERVER, MASQ, "A", SISN + 101, CISN + 301, 8000, None, 0),
        14,
    );
    assert_eq!(f.action, Action::Forward(FA));
    assert_eq!(tcp_state(&p), vec![TcpState::Established]);
    // The server's own RST, at its current sequence number, does close it.
    let (f, _) = run(
        &mut p,
        OUT,
        &seg(SERVER, MASQ, "R", SISN + 101, 0, 0, None, 0),
        15,
    );
    assert_eq!(f.action, Action::Forward(FA));
    assert_eq!(tcp_state(&p), vec![TcpState::Close]);
}

/// Windows are scaled as the SYNs negotiated: the server's window of 8000 << 7
/// lets the client send 1 MB ahead, and not past it.
#[test]
fn windows_are_scaled_as_negotiated_and_enforced() {
    let mut p = nat_router(64, (1024, 65535));
    established(&mut p);
    // 900 000 bytes ahead: beyond 8000 unscaled, within 8000 << 7 = 1 024 000.
    let far = CISN + 101 + 900_000;
    let (f, _) = run(
        &mut p,
        FA,
        &seg(CLIENT, SERVER, "A", far, SISN + 101, 502, None, 1000),
        2,
    );
    assert_eq!(f.action, Action::Forward(OUT), "within the scaled window");
    // Past what the server's window allows.
    let beyond = CISN + 101 + 2_000_000;
    let (f, _) = run(
        &mut p,
        FA,
        &seg(CLIENT, SERVER, "A", beyond, SISN + 101, 502, None, 1000),
        2,
    );
    assert_eq!(f.action, Action::Drop(DropReason::ConntrackOutOfWindow));
    // An acknowledgement of data the server never sent.
    let (f, _) = run(
        &mut p,
        FA,
        &seg(
            CLIENT,
            SERVER,
            "A",
            CISN + 101,
            SISN + 5_000_000,
            502,
            None,
            0,
        ),
        2,
    );
    assert_eq!(f.action, Action::Drop(DropReason::ConntrackOutOfWindow));
    assert_eq!(
        p.counters().total().drops[DropReason::ConntrackOutOfWindow as usize],
        2
    );
}

fn ping_from(src: &str, id: u16) -> Vec<u8> {
    let s = a(src);
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(hmac(s).0, gw(s).0)
        .ipv4(s.octets(), PEER.octets(), 64)
        .icmpv4_echo_request(id, 1)
        .write(&mut v, b"ping")
        .unwrap();
    v
}

fn pong_to(id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(hmac(PEER).0, gw(PEER).0)
        .ipv4(PEER.octets(), UPLINK.octets(), 64)
        .icmpv4_echo_reply(id, 1)
        .write(&mut v, b"ping")
        .unwrap();
    v
}

/// Answered pings fill the table, but as in netfilter an ICMP entry is never
/// assured: a new flow evicts one instead of being refused.
#[test]
fn answered_pings_do_not_hold_a_full_table() {
    let mut p = nat_router(4, (1024, 65535));
    for id in 1..=4 {
        assert_eq!(
            run(&mut p, FA, &ping_from("10.1.0.2", id), 0).0.action,
            Action::Forward(OUT)
        );
        assert_eq!(
            run(&mut p, OUT, &pong_to(id), 0).0.action,
            Action::Forward(FA)
        );
    }
    assert_eq!(p.conntrack().len(), 4);
    assert!(p
        .conntrack()
        .entries(p.now())
        .iter()
        .all(|(c, _)| !c.assured));
    // Another network's new flow gets in.
    let (f, _) = run(&mut p, BA, &udp4("10.2.0.2", 6000, "198.51.100.2", 53), 1);
    assert_eq!(f.action, Action::Forward(OUT));
    assert_eq!(p.counters().events(Event::CtEvicted), 1);
    assert_eq!(p.conntrack().len(), 4);
}

/// front has a share of 4 entries. Its assured connections fill it: its next flow is
/// refused (counted as the network's table full, not the switch's), while back's new
/// flows still get in; a SYN flood from front only ever recycles front's own
/// half-open entries.
#[test]
fn a_network_at_its_conntrack_share_does_not_stop_another_networks_flows() {
    let mut p = nat_router_shared(8, (1024, 65535), vec![(DomainId(0), 4)]);
    for port in 1..=4u16 {
        let (f, _) = run(
            &mut p,
            FA,
            &tcp("10.1.0.2", port, "198.51.100.2", 80, "S", 64),
            0,
        );
        assert_eq!(f.action, Action::Forward(OUT));
        run(
            &mut p,
            OUT,
            &tcp("198.51.100.2", 80, "198.51.100.1", port, "SA", 64),
            0,
        );
        run(
            &mut p,
            FA,
            &tcp("10.1.0.2", port, "198.51.100.2", 80, "A", 64),
            0,
        );
    }
    assert_eq!(p.conntrack().zone_len(DomainId(0)), 4);
    let (f, _) = run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 5, "198.51.100.2", 80, "S", 64),
        1,
    );
    assert_eq!(f.action, Action::Drop(DropReason::ConntrackNetworkFull));
    assert_eq!(p.conntrack().zone_len(DomainId(0)), 4);
    // back is not held up by front.
    for port in 1..=4u16 {
        let (f, _) = run(
            &mut p,
            BA,
            &tcp("10.2.0.2", port, "198.51.100.2", 443, "S", 64),
            1,
        );
        assert_eq!(f.action, Action::Forward(OUT), "back's flow {port}");
    }
    assert_eq!(p.conntrack().len(), 8);

    // A SYN flood from front, its share half open: front's flood replaces its own
    // half-open entries, and back keeps every one of its own.
    let mut p = nat_router_shared(8, (1024, 65535), vec![(DomainId(0), 4)]);
    for port in 1..=4u16 {
        run(
            &mut p,
            BA,
            &tcp("10.2.0.2", port, "198.51.100.2", 443, "S", 64),
            0,
        );
    }
    for port in 100..400u16 {
        let (f, _) = run(
            &mut p,
            FA,
            &tcp("10.1.0.2", port, "198.51.100.2", 80, "S", 64),
            1,
        );
        assert_eq!(f.action, Action::Forward(OUT));
    }
    assert_eq!(p.conntrack().zone_len(DomainId(0)), 4);
    assert_eq!(
        p.conntrack().zone_len(DomainId(1)),
        4,
        "back's entries untouched"
    );
    assert!(p
        .conntrack()
        .entries(p.now())
        .iter()
        .filter(|(c, _)| c.zone[0] == DomainId(1))
        .all(|(c, _)| c.orig.dport == 443));
}

/// A packet waits for its next hop while its flow is evicted; when the next hop
/// answers, the packet is dropped (`conntrack_gone`) and nothing else leaves. The
/// emitter is reused as the dataplane reuses it, so a slot taken for the dropped
/// packet would send that slot's last occupant (here the ARP request) again.
#[test]
fn a_released_packet_whose_flow_is_gone_sends_nothing_stale() {
    let mut p = nat_router(2, (1024, 65535));
    let mut out = Emitter::with_capacity(8);
    let send = |p: &mut Pipeline, out: &mut Emitter, port, bytes: &[u8], now| {
        out.clear();
        let mut frames = [Frame::from_bytes(port, bytes)];
        p.process(&mut frames, Timestamp::from_secs(now), out);
        let [f] = frames;
        f
    };
    let waiting = a("198.51.100.9");
    let f = send(
        &mut p,
        &mut out,
        FA,
        &udp4("10.1.0.2", 5000, "198.51.100.9", 53),
        0,
    );
    assert_eq!(f.action, Action::Held);
    assert_eq!(out.frames().len(), 1, "an ARP request for the next hop");
    // Two more flows: the table holds two, so the waiting packet's flow (the oldest,
    // not assured) is evicted.
    for sport in [5001, 5002] {
        let f = send(
            &mut p,
            &mut out,
            FB,
            &udp4("10.1.0.3", sport, "198.51.100.2", 53),
            0,
        );
        assert_eq!(f.action, Action::Forward(OUT));
    }
    // The next hop answers.
    let mut reply = vec![0u8; 42];
    crate::wire::ethernet::write_header(
        &mut reply,
        gw(waiting),
        hmac(waiting),
        crate::wire::EtherType::ARP,
    );
    crate::wire::arp::write(
        &mut reply[14..],
        crate::wire::arp::ArpOp::Reply,
        hmac(waiting),
        waiting,
        gw(waiting),
        UPLINK,
    );
    let f = send(&mut p, &mut out, OUT, &reply, 1);
    assert_eq!(f.action, Action::Consume);
    assert!(
        out.frames().is_empty(),
        "nothing leaves: {:?}",
        out.frames().iter().map(|f| f.action).collect::<Vec<_>>()
    );
    let gone = p
        .counters()
        .total()
        .drop_reasons()
        .find(|(r, _)| *r == DropReason::ConntrackGone)
        .map_or(0, |(_, n)| n);
    assert_eq!(gone, 1, "the waiting packet is dropped and counted");
}

#[test]
fn a_flow_forgotten_or_expired_is_not_served_from_a_workers_cache() {
    let mut w1 = nat_router(64, (1024, 65535));
    let mut w2 = w1.worker();
    let syn = tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64);
    let syn_ack = tcp("198.51.100.2", 80, "198.51.100.1", 40000, "SA", 64);
    let ack = tcp("10.1.0.2", 40000, "198.51.100.2", 80, "A", 64);
    run(&mut w1, FA, &syn, 1);
    run(&mut w1, OUT, &syn_ack, 1);
    // w2 carries the flow on; its second packet is found through its cache.
    for _ in 0..2 {
        let (f, _) = run(&mut w2, FA, &ack, 2);
        assert_eq!(f.action, Action::Forward(OUT));
        assert_eq!(flow_of(&f), (UPLINK, 40000, PEER, 80));
    }
    assert_eq!(w2.counters().events(Event::CtCacheHits), 1);
    assert_eq!(tcp_state(&w2), vec![TcpState::Established]);
    // The endpoint goes, its flows with it: w2's cache does not bring the flow
    // back; its next packet is a new flow's (a SYN), tracked afresh.
    assert_eq!(w1.conntrack().forget_where(|_| true), 1);
    let (f, _) = run(&mut w2, FA, &ack, 3);
    assert!(
        matches!(f.action, Action::Drop(_)),
        "no flow, not a SYN: not translated"
    );
    run(&mut w2, FA, &syn, 3);
    let c = w1.conntrack().entries(w1.now());
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0.packets, [1, 0], "the new flow's own counters");
    // The flow expires (SYN_SENT: 120 s) and is reclaimed by the timers: a packet
    // of it is not matched through w2's cache.
    for s in 0..12 {
        w1.tick(
            Timestamp::from_secs(130 + s),
            &mut Emitter::with_capacity(4),
        );
    }
    assert!(w1.conntrack().is_empty());
    let (f, _) = run(&mut w2, OUT, &syn_ack, 150);
    assert!(matches!(f.action, Action::Drop(_)), "{:?}", f.action);
    let total = Pipeline::merged_counters([w1.counters(), w2.counters()]);
    assert_eq!(total.events(Event::CtNew), 2);
}
