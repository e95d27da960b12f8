//! L2 tests: learning, flooding, aging, table limits, the gateway's ARP and ping.

use super::*;
use etherparse::{PacketBuilder, SlicedPacket};
use proptest::prelude::*;

#[test]
fn learns_source_then_forwards_unicast() {
    let mut p = pipeline();
    // a → b, b unknown: flooded to b and c, a learned on port a.
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(3), 10), 0);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(egress(&p, &f), vec![B, C]);
    assert_eq!(p.fdb().lookup(DomainId(0), mac(2)), Some(A));
    assert_eq!(p.counters().events(Event::UnknownUnicastFlooded), 1);
    // b → a: a is known, unicast to port a only.
    let (f, _) = run(&mut p, B, &udp(mac(3), mac(2), 10), 1);
    assert_eq!(f.action, Action::Forward(A));
    assert_eq!(egress(&p, &f), vec![A]);
    // a → b again: now known.
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(3), 10), 2);
    assert_eq!(f.action, Action::Forward(B));
    assert_eq!(p.counters().events(Event::FdbLearned), 2);
}

#[test]
fn broadcast_and_multicast_flood_with_split_horizon() {
    let mut p = pipeline();
    let (f, _) = run(&mut p, B, &udp(mac(3), MacAddr::BROADCAST, 10), 0);
    assert_eq!(
        egress(&p, &f),
        vec![A, C],
        "never back out of the ingress port"
    );
    let (f, _) = run(
        &mut p,
        C,
        &udp(mac(4), MacAddr([0x01, 0x00, 0x5e, 0, 0, 0xfb]), 10),
        0,
    );
    assert_eq!(egress(&p, &f), vec![A, B]);
}

#[test]
fn domains_are_isolated() {
    let mut p = pipeline();
    let (f, _) = run(&mut p, X, &udp(mac(9), MacAddr::BROADCAST, 10), 0);
    assert_eq!(egress(&p, &f), vec![Y]);
    // The same MAC in "default" is a separate FDB entry; "other" does not see it.
    run(&mut p, A, &udp(mac(9), mac(3), 10), 0);
    assert_eq!(p.fdb().lookup(DomainId(0), mac(9)), Some(A));
    assert_eq!(p.fdb().lookup(DomainId(1), mac(9)), Some(X));
    let (f, _) = run(&mut p, Y, &udp(mac(8), mac(9), 10), 0);
    assert_eq!(f.action, Action::Forward(X));
}

#[test]
fn entries_age_out_with_injected_time() {
    let mut p = pipeline();
    run(&mut p, A, &udp(mac(2), mac(3), 10), 1000);
    p.tick(Timestamp::from_secs(1299), &mut Emitter::with_capacity(4));
    assert_eq!(p.fdb().lookup(DomainId(0), mac(2)), Some(A));
    p.tick(Timestamp::from_secs(1300), &mut Emitter::with_capacity(4));
    assert_eq!(
        p.fdb().lookup(DomainId(0), mac(2)),
        None,
        "300 s default aging"
    );
    assert_eq!(p.counters().events(Event::FdbAged), 1);
    // Traffic to it floods again.
    let (f, _) = run(&mut p, B, &udp(mac(3), mac(2), 10), 1301);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
}

#[test]
fn full_table_counts_and_still_forwards_by_flooding() {
    // The whole table (2 entries) is the network's share: the global bound is hit.
    let mut s = spec(2);
    s.domains[0].guard.fdb_max = Some(2);
    let mut p = Pipeline::new(s).unwrap();
    run(&mut p, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    run(&mut p, B, &udp(mac(3), MacAddr::BROADCAST, 10), 0);
    let (f, _) = run(&mut p, C, &udp(mac(4), mac(2), 10), 0);
    assert_eq!(f.action, Action::Forward(A), "the frame is still forwarded");
    assert_eq!(p.counters().events(Event::FdbLimit), 1);
    assert_eq!(p.fdb().len(), 2);
    // Nobody can reach mac 4 by unicast lookup: it is flooded.
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(4), 10), 0);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(egress(&p, &f), vec![B, C]);
}

#[test]
fn mac_move_follows_the_host() {
    let mut p = pipeline();
    run(&mut p, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    run(&mut p, C, &udp(mac(2), MacAddr::BROADCAST, 10), 1);
    assert_eq!(p.counters().events(Event::FdbMoved), 1);
    let (f, _) = run(&mut p, B, &udp(mac(3), mac(2), 10), 2);
    assert_eq!(f.action, Action::Forward(C));
}

#[test]
fn drop_reasons() {
    let mut p = pipeline();
    let cases: Vec<(PortId, Vec<u8>, DropReason)> = vec![
        (A, vec![0u8; 13], DropReason::Truncated),
        (
            A,
            udp(MacAddr([0x01, 0, 0x5e, 0, 0, 1]), mac(3), 10),
            DropReason::GroupSourceMac,
        ),
        (
            A,
            udp(MacAddr::BROADCAST, mac(3), 10),
            DropReason::GroupSourceMac,
        ),
        (A, udp(MacAddr::ZERO, mac(3), 10), DropReason::ZeroSourceMac),
        (A, udp(GW_MAC, mac(3), 10), DropReason::OwnSourceMac),
        (A, udp(mac(2), mac(3), 1500), DropReason::FrameTooLong),
    ];
    for (port, bytes, want) in cases {
        let (f, _) = run(&mut p, port, &bytes, 0);
        assert_eq!(f.action, Action::Drop(want), "{want:?}");
        assert!(p.egress(&f).next().is_none());
    }
    // Exactly at the MTU is fine: 1500 bytes of IP = 28 of headers + 1472 of payload.
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(3), 1472), 0);
    assert!(matches!(f.action, Action::Flood(_)));
    // Same port: b learned on port b, then a frame to b arrives on port b.
    run(&mut p, B, &udp(mac(3), MacAddr::BROADCAST, 10), 0);
    let (f, _) = run(&mut p, B, &udp(mac(5), mac(3), 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::SamePort));
    // A one-port domain has nowhere to flood.
    let mut lonely = Pipeline::new(Spec {
        ports: vec![PortSpec::new("solo", DomainId(0))],
        ..spec(8)
    })
    .unwrap();
    let (f, _) = run(&mut lonely, A, &udp(mac(2), mac(3), 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::NoEgressPort));

    let c = p.counters().ports[A.index()];
    assert_eq!(c.drops[DropReason::GroupSourceMac as usize], 2);
    assert_eq!(c.drops[DropReason::Truncated as usize], 1);
}

/// `frame` with 802.1Q tags of VLAN 100 inserted after the MAC addresses.
fn tagged(frame: &[u8], tags: usize) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    for _ in 0..tags {
        v.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
    }
    v.extend_from_slice(&frame[12..]);
    v
}

#[test]
fn tagged_frames_on_an_access_port_are_not_bridged_as_they_are() {
    // An access port is in one network, untagged, as a port of the kernel's
    // VLAN-aware bridge with only its PVID: a tag is a VLAN it is not a member of
    // (see tests/vlan.rs for trunks).
    let mut p = pipeline();
    let (f, _) = run(&mut p, A, &tagged(&udp(mac(2), mac(3), 1472), 1), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanNotAllowed));
    let (f, _) = run(&mut p, A, &tagged(&udp(mac(2), GW_MAC, 10), 1), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanNotAllowed));
    let (f, _) = run(&mut p, A, &tagged(&udp(mac(2), mac(3), 10), 2), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanStacked));
}

#[test]
fn gateway_answers_broadcast_arp_and_floods_it() {
    let mut p = pipeline();
    let req = arp_request(mac(2), ip(2), GW_IP, MacAddr::BROADCAST);
    let (f, emitted) = run(&mut p, A, &req, 0);
    assert_eq!(egress(&p, &f), vec![B, C], "the request is still flooded");
    assert_eq!(emitted.len(), 1);
    let (action, bytes) = &emitted[0];
    assert_eq!(*action, Action::Forward(A));
    let eth = crate::wire::EthernetFrame::new_checked(&bytes[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (mac(2), GW_MAC));
    let arp = crate::wire::ArpPacket::new_checked(&bytes[14..]).unwrap();
    assert_eq!(arp.op(), crate::wire::arp::ArpOp::Reply);
    assert_eq!((arp.sender_mac(), arp.sender_ip()), (GW_MAC, GW_IP));
    assert_eq!((arp.target_mac(), arp.target_ip()), (mac(2), ip(2)));
    assert_eq!(p.counters().events(Event::ArpReplies), 1);

    // A request for another host's address is flooded, not answered.
    let (f, emitted) = run(
        &mut p,
        A,
        &arp_request(mac(2), ip(2), ip(3), MacAddr::BROADCAST),
        0,
    );
    assert!(emitted.is_empty());
    assert_eq!(f.action, Action::Flood(DomainId(0)));
}

#[test]
fn gateway_answers_unicast_arp_in_place_and_refuses_others() {
    let mut p = pipeline();
    let (f, emitted) = run(&mut p, B, &arp_request(mac(3), ip(3), GW_IP, GW_MAC), 0);
    assert!(emitted.is_empty());
    assert_eq!(f.action, Action::Reply);
    assert_eq!(egress(&p, &f), vec![B]);
    let arp = crate::wire::ArpPacket::new_checked(&f.data()[14..]).unwrap();
    assert_eq!((arp.sender_ip(), arp.target_ip()), (GW_IP, ip(3)));

    let (f, _) = run(&mut p, B, &arp_request(mac(3), ip(3), ip(9), GW_MAC), 0);
    assert_eq!(f.action, Action::Drop(DropReason::ArpNotForUs));
    let mut bad = arp_request(mac(3), ip(3), GW_IP, GW_MAC);
    bad[14 + 4] = 8; // hardware address length 8
    let (f, _) = run(&mut p, B, &bad, 0);
    assert_eq!(f.action, Action::Drop(DropReason::ArpMalformed));
}

#[test]
fn gateway_answers_ping() {
    let mut p = pipeline();
    let (f, _) = run(&mut p, A, &echo_request(mac(2), ip(2), GW_MAC, GW_IP), 0);
    assert_eq!(f.action, Action::Reply);
    let pkt = SlicedPacket::from_ethernet(f.data()).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ipv4)) = pkt.net else {
        panic!("not IPv4")
    };
    assert_eq!(ipv4.header().source_addr(), GW_IP);
    assert_eq!(ipv4.header().destination_addr(), ip(2));
    assert_eq!(ipv4.header().ttl(), 64);
    let hdr = ipv4.header().to_header();
    assert_eq!(
        hdr.calc_header_checksum(),
        hdr.header_checksum,
        "IP checksum valid"
    );
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = pkt.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x77, seq: 3 })
    );
    assert_eq!(icmp.payload(), b"switchyard ping");
    assert!(
        crate::wire::checksum::verify(icmp.slice()),
        "ICMP checksum valid"
    );
    assert_eq!(p.counters().events(Event::EchoReplies), 1);
    assert_eq!(p.counters().ports[A.index()].consumed, 1);
}

#[test]
fn malformed_ip_to_gateway_is_dropped_with_a_reason() {
    let mut p = pipeline();
    let good = echo_request(mac(2), ip(2), GW_MAC, GW_IP);
    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0xff;
    let mut bad_len = good.clone();
    bad_len[14 + 2..14 + 4].copy_from_slice(&2000u16.to_be_bytes());
    let mut bad_icmp = good.clone();
    let n = bad_icmp.len();
    bad_icmp[n - 1] ^= 0xff;
    let routed = echo_request(mac(2), ip(2), GW_MAC, Ipv4Addr::new(8, 8, 8, 8));
    let udp_to_gw = {
        let b = PacketBuilder::ethernet2(mac(2).0, GW_MAC.0)
            .ipv4(ip(2).octets(), GW_IP.octets(), 64)
            .udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, b"x").unwrap();
        v
    };
    let mut ipv6 = good.clone();
    ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    for (bytes, want) in [
        (bad_sum, DropReason::Ip4BadChecksum),
        (bad_len, DropReason::Ip4Malformed),
        (good[..14 + 19].to_vec(), DropReason::Ip4Malformed),
        (bad_icmp, DropReason::IcmpMalformed),
        (routed, DropReason::NoRoute),
        (udp_to_gw, DropReason::LocalProtocol),
        (ipv6, DropReason::UnsupportedEtherType),
    ] {
        let (f, _) = run(&mut p, A, &bytes, 0);
        assert_eq!(f.action, Action::Drop(want));
    }
}

#[test]
fn trace_explains_an_arp_request_and_a_unicast_frame() {
    let mut p = pipeline();
    p.tracer().start(2, &[]);
    run(
        &mut p,
        A,
        &arp_request(mac(2), ip(2), ip(3), MacAddr::BROADCAST),
        0,
    );
    run(&mut p, B, &udp(mac(3), mac(2), 10), 0);
    // Tracing stopped after two packets.
    run(&mut p, C, &udp(mac(4), mac(2), 10), 0);
    let lines: Vec<String> = p
        .tracer()
        .drain()
        .iter()
        .map(|r| format!("{} {r}", r.packet))
        .collect();
    assert_eq!(
        lines,
        vec![
            "1 ethernet-input: port a: 02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff ARP, 42 bytes",
            "1 l2-learn: learned 02:42:ac:11:00:02 on port a (bridge default)",
            "1 arp-input: Request for 172.17.0.3 from 172.17.0.2: not for switchyard",
            "1 l2-flood: broadcast to 2 ports of bridge default: b, c",
            "2 ethernet-input: port b: 02:42:ac:11:00:03 > 02:42:ac:11:00:02 IPv4, 52 bytes",
            "2 l2-learn: learned 02:42:ac:11:00:03 on port b (bridge default)",
            "2 l2-forward: 02:42:ac:11:00:02 is on port a",
        ]
    );
}

#[test]
fn trace_filter_selects_one_port() {
    let mut p = pipeline();
    p.tracer().start(1, &[B]);
    run(&mut p, A, &udp(mac(2), mac(3), 10), 0);
    run(&mut p, B, &udp(mac(3), mac(2), 10), 0);
    let recs = p.tracer().drain();
    assert!(!recs.is_empty());
    assert!(recs[0].text.starts_with("port b:"), "{:?}", recs[0]);
}

// --- properties -------------------------------------------------------------

/// A frame description proptest can shrink: small sets of MACs so that learning,
/// moves and hits happen, plus raw garbage and truncation.
#[derive(Debug, Clone)]
pub(super) enum Gen {
    Udp {
        port: u8,
        src: u8,
        dst: u8,
        len: u16,
    },
    Raw {
        port: u8,
        bytes: Vec<u8>,
    },
    ArpToGw {
        port: u8,
        src: u8,
        broadcast: bool,
    },
    PingGw {
        port: u8,
        src: u8,
    },
}

fn mac_of(n: u8) -> MacAddr {
    match n % 8 {
        0 => MacAddr::BROADCAST,
        1 => MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
        2 => MacAddr::ZERO,
        3 => GW_MAC,
        k => mac(k),
    }
}

pub(super) fn gen() -> impl Strategy<Value = Gen> {
    prop_oneof![
        4 => (0u8..5, any::<u8>(), any::<u8>(), 0u16..1600).prop_map(|(port, src, dst, len)| Gen::Udp { port, src, dst, len }),
        2 => (0u8..5, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(port, bytes)| Gen::Raw { port, bytes }),
        1 => (0u8..5, any::<u8>(), any::<bool>()).prop_map(|(port, src, broadcast)| Gen::ArpToGw { port, src, broadcast }),
        1 => (0u8..5, any::<u8>()).prop_map(|(port, src)| Gen::PingGw { port, src }),
    ]
}

pub(super) fn materialize(g: &Gen) -> (PortId, Vec<u8>) {
    match g {
        Gen::Udp {
            port,
            src,
            dst,
            len,
        } => (
            PortId(u16::from(*port)),
            udp(mac_of(*src), mac_of(*dst), usize::from(*len)),
        ),
        Gen::Raw { port, bytes } => (PortId(u16::from(*port)), bytes.clone()),
        Gen::ArpToGw {
            port,
            src,
            broadcast,
        } => {
            let dst = if *broadcast {
                MacAddr::BROADCAST
            } else {
                GW_MAC
            };
            (
                PortId(u16::from(*port)),
                arp_request(mac_of(*src), ip(*src), GW_IP, dst),
            )
        }
        Gen::PingGw { port, src } => (
            PortId(u16::from(*port)),
            echo_request(mac_of(*src), ip(*src), GW_MAC, GW_IP),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever arrives: rx = forwarded + consumed + dropped on every port, the FDB
    /// never exceeds its bound, nothing leaves by its ingress port unless it is
    /// switchyard's own reply, and nothing crosses domains.
    #[test]
    fn every_frame_is_accounted_for(frames in proptest::collection::vec(gen(), 1..60),
                                     fdb_max in 1usize..6, step in 0u64..200) {
        let mut p = Pipeline::new(spec(fdb_max)).unwrap();
        let mut out = Emitter::with_capacity(8);
        let mut batch: Vec<Frame> = Vec::new();
        let mut now = 0u64;
        for chunk in frames.chunks(7) {
            batch.clear();
            for g in chunk {
                let (port, bytes) = materialize(g);
                batch.push(Frame::from_bytes(port, &bytes));
            }
            out.clear();
            p.process(&mut batch, Timestamp::from_secs(now), &mut out);
            for f in &batch {
                let ingress_domain = p.port(f.ingress).unwrap().domain;
                for e in p.egress(f) {
                    prop_assert!(e != f.ingress || f.action == Action::Reply);
                    prop_assert_eq!(p.port(e).unwrap().domain, ingress_domain);
                }
            }
            for f in out.frames() {
                prop_assert!(matches!(f.action, Action::Forward(_)));
            }
            prop_assert!(p.fdb().len() <= fdb_max);
            now += step;
            out.clear();
            p.tick(Timestamp::from_secs(now), &mut out);
        }
        let mut rx = 0;
        for c in &p.counters().ports {
            prop_assert_eq!(c.rx_frames, c.forwarded + c.consumed + c.dropped + c.held);
            prop_assert_eq!(c.dropped, c.drops.iter().sum::<u64>());
            rx += c.rx_frames;
        }
        prop_assert_eq!(rx, frames.len() as u64);
    }
}

#[test]
fn a_frame_trace_has_the_summary_the_lines_and_the_verdict() {
    let mut p = pipeline();
    p.tracer().start(3, &[]);
    run(
        &mut p,
        A,
        &arp_request(mac(2), ip(2), ip(3), MacAddr::BROADCAST),
        0,
    );
    run(&mut p, B, &udp(mac(3), mac(2), 10), 0);
    run(
        &mut p,
        A,
        &udp(MacAddr([0x01, 0, 0x5e, 0, 0, 1]), mac(3), 10),
        0,
    );
    let flood = p.tracer().next_frame().expect("the ARP request's trace");
    assert_eq!(flood.packet, 1);
    assert_eq!(flood.port, "a");
    assert_eq!(
        flood.summary,
        "02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff, ARP request who-has 172.17.0.3 tell 172.17.0.2, 42 bytes"
    );
    assert_eq!(flood.lines.len(), 4, "{:?}", flood.lines);
    assert_eq!(flood.verdict.action, "flood");
    assert_eq!(flood.verdict.ports, vec!["b", "c"]);
    assert_eq!(
        flood.verdict.text,
        "flooded over network default: to 2 ports, b, c"
    );
    let unicast = p.tracer().next_frame().expect("the unicast frame's trace");
    assert_eq!(unicast.verdict.action, "forward");
    assert_eq!(unicast.verdict.ports, vec!["a"]);
    assert_eq!(unicast.verdict.text, "sent to port a");
    assert!(unicast.summary.contains("udp"), "{}", unicast.summary);
    let dropped = p.tracer().next_frame().expect("the dropped frame's trace");
    assert_eq!(dropped.verdict.action, "drop");
    assert_eq!(dropped.verdict.reason.as_deref(), Some("group_source_mac"));
    assert!(
        dropped.verdict.text.starts_with("dropped: "),
        "{}",
        dropped.verdict.text
    );
    assert!(p.tracer().next_frame().is_none());
}

#[test]
fn a_mac_behind_a_tunnel_is_sent_to_its_vtep_and_a_flood_to_every_one() {
    // Port C stands for an overlay network's tunnel: its frames carry the VTEP they
    // came from, and frames to a MAC learned there carry it back out.
    let mut p = pipeline();
    let vtep = std::net::Ipv4Addr::new(192, 0, 2, 2);
    p.tracer().start(2, &[]);
    let mut frames = [Frame::from_bytes(C, &udp(mac(7), mac(2), 10))];
    frames[0].tunnel = Some(vtep);
    let mut out = Emitter::with_capacity(4);
    p.process(&mut frames, Timestamp::from_secs(0), &mut out);
    assert_eq!(
        p.fdb().lookup_via(DomainId(0), mac(7)),
        Some((C, Some(vtep)))
    );
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(7), 10), 1);
    assert_eq!(f.action, Action::Forward(C));
    assert_eq!(f.tunnel, Some(vtep));
    // Traces say which VTEP.
    let lines: Vec<String> = p.tracer().drain().iter().map(|r| r.to_string()).collect();
    assert!(
        lines.contains(
            &"l2-learn: learned 02:42:ac:11:00:07 on port c behind VTEP 192.0.2.2 (bridge default)"
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"l2-forward: 02:42:ac:11:00:07 is on port c behind VTEP 192.0.2.2".to_string()
        ),
        "{lines:?}"
    );
    // A broadcast from a local port goes to every remote VTEP.
    let (f, _) = run(&mut p, A, &udp(mac(2), MacAddr::BROADCAST, 10), 1);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(f.tunnel, None);
}
