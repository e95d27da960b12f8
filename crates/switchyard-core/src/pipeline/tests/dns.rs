//! DNS queries to switchyard's addresses: punted to the DNS service from a network
//! that has it, refused as before from one that does not, and never for another
//! port, a fragment or a header too short to read the port from.

use super::l3::{gw, rip, rmac};
use super::*;
use crate::pipeline::stages::ip4_local;

// front 10.1.0.0/24 (DNS): port fa     back 10.2.0.0/24 (no DNS): port ba
// dmz 10.3.0.0/24 (DNS, joined to nothing): port da       front <-> back joined.
const FA: PortId = PortId(0);
const BA: PortId = PortId(1);
const DA: PortId = PortId(2);

fn dns_networks() -> Pipeline {
    let dom = |name: &str, net: u8, dns: bool| DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(rip(net, 0), 24).unwrap(),
        mtu: 1500,
        gateway: Some(GatewaySpec {
            ip: rip(net, 1),
            mac: gw(net),
        }),
        mode: DomainMode::Bridge,
        proxy_arp: false,
        masquerade: false,
        external: false,
        dns,
        guard: Default::default(),
    };
    let port = |n: &str, d: u16| PortSpec::new(n, DomainId(d));
    Pipeline::new(Spec {
        allow: vec![(DomainId(0), DomainId(1))],
        ..Spec::new(
            vec![
                dom("front", 1, true),
                dom("back", 2, false),
                dom("dmz", 3, true),
            ],
            vec![port("fa", 0), port("ba", 1), port("da", 2)],
        )
    })
    .unwrap()
}

/// A UDP datagram from host 2 of net `sn`, through its gateway, to `dst:dport`.
fn udp_to(sn: u8, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(rmac(sn, 2).0, gw(sn).0)
        .ipv4(rip(sn, 2).octets(), dst.octets(), 64)
        .udp(40000, dport)
        .write(&mut v, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        .unwrap();
    v
}

/// A TCP SYN from host 2 of net `sn`, through its gateway, to `dst:dport`.
fn syn_to(sn: u8, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(rmac(sn, 2).0, gw(sn).0)
        .ipv4(rip(sn, 2).octets(), dst.octets(), 64)
        .tcp(40001, dport, 1000, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

/// An IPv4 header of protocol `proto` from host 2 of net `sn` to `dst` carrying
/// `payload` as is (a transport header as short or as fragmented as a test wants).
fn raw_to(sn: u8, dst: Ipv4Addr, proto: etherparse::IpNumber, payload: &[u8], mf: bool) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(
        payload.len() as u16,
        64,
        proto,
        rip(sn, 2).octets(),
        dst.octets(),
    )
    .unwrap();
    ip.more_fragments = mf;
    ip.header_checksum = ip.calc_header_checksum();
    let mut v = Vec::new();
    etherparse::Ethernet2Header {
        source: rmac(sn, 2).0,
        destination: gw(sn).0,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut v)
    .unwrap();
    ip.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}

fn punted(p: &Pipeline) -> u64 {
    p.counters().events(Event::DnsPunted)
}

fn accounted(p: &Pipeline) {
    for (i, c) in p.counters().ports.iter().enumerate() {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "port {i}: {c:?}"
        );
    }
}

#[test]
fn udp_and_tcp_to_the_gateway_port_53_are_punted_and_counted() {
    let mut p = dns_networks();
    let (f, out) = run(&mut p, FA, &udp_to(1, rip(1, 1), 53), 1);
    assert_eq!(f.action, Action::Punt);
    assert!(out.is_empty(), "nothing of switchyard's own goes out");
    assert_eq!(egress(&p, &f), vec![], "a punted frame leaves by no port");
    assert_eq!(
        f.data(),
        &udp_to(1, rip(1, 1), 53)[..],
        "handed over as received"
    );
    let (f, _) = run(&mut p, FA, &syn_to(1, rip(1, 1), 53), 1);
    assert_eq!(f.action, Action::Punt);
    assert_eq!(punted(&p), 2);
    let c = p.counters().ports[FA.index()];
    assert_eq!((c.rx_frames, c.consumed, c.dropped), (2, 2, 0));
    accounted(&p);
}

#[test]
fn a_network_without_dns_refuses_port_53_as_before() {
    let mut p = dns_networks();
    let (f, _) = run(&mut p, BA, &udp_to(2, rip(2, 1), 53), 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalProtocol.into())
    );
    let (f, _) = run(&mut p, BA, &syn_to(2, rip(2, 1), 53), 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalProtocol.into())
    );
    assert_eq!(punted(&p), 0);
    accounted(&p);
}

#[test]
fn another_port_is_not_punted() {
    let mut p = dns_networks();
    let (f, _) = run(&mut p, FA, &udp_to(1, rip(1, 1), 54), 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalProtocol.into())
    );
    let (f, _) = run(&mut p, FA, &syn_to(1, rip(1, 1), 5353), 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalProtocol.into())
    );
    assert_eq!(punted(&p), 0);
}

#[test]
fn the_asking_network_decides_not_the_address_asked() {
    let mut p = dns_networks();
    // From front (DNS) to back's gateway: punted, the query answered in front's view.
    let (f, _) = run(&mut p, FA, &udp_to(1, rip(2, 1), 53), 1);
    assert_eq!(f.action, Action::Punt);
    assert_eq!(f.ingress, FA);
    assert_eq!(p.port(f.ingress).unwrap().domain, DomainId(0));
    // From back (no DNS) to front's gateway: refused, though front has DNS.
    let (f, _) = run(&mut p, BA, &udp_to(2, rip(1, 1), 53), 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalProtocol.into())
    );
    // dmz has DNS of its own at its gateway.
    let (f, _) = run(&mut p, DA, &udp_to(3, rip(3, 1), 53), 1);
    assert_eq!(f.action, Action::Punt);
    assert_eq!(punted(&p), 2);
    accounted(&p);
}

#[test]
fn a_fragment_or_a_short_header_is_dropped_not_punted() {
    let mut p = dns_networks();
    // The first fragment of a query: the port is there, but switchyard does not
    // reassemble.
    let mut first = Vec::new();
    etherparse::UdpHeader {
        source_port: 40000,
        destination_port: 53,
        length: 600,
        checksum: 0,
    }
    .write(&mut first)
    .unwrap();
    first.extend_from_slice(&[0u8; 64]);
    let frag = raw_to(1, rip(1, 1), etherparse::IpNumber::UDP, &first, true);
    let (f, _) = run(&mut p, FA, &frag, 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalFragment.into())
    );
    // Four bytes of UDP header, and a TCP header cut at 12 bytes.
    let short = raw_to(1, rip(1, 1), etherparse::IpNumber::UDP, &first[..4], false);
    let (f, _) = run(&mut p, FA, &short, 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalL4Truncated.into())
    );
    let syn = syn_to(1, rip(1, 1), 53);
    let tcp12 = raw_to(1, rip(1, 1), etherparse::IpNumber::TCP, &syn[34..46], false);
    let (f, _) = run(&mut p, FA, &tcp12, 1);
    assert_eq!(
        f.action,
        Action::Drop(ip4_local::Drop::LocalL4Truncated.into())
    );
    assert_eq!(punted(&p), 0);
    accounted(&p);
}

#[test]
fn a_trace_and_a_what_if_show_the_punt() {
    let mut p = dns_networks();
    p.tracer().start(1, &[]);
    run(&mut p, FA, &udp_to(1, rip(1, 1), 53), 1);
    let t = p.tracer().next_frame().expect("the query was traced");
    let lines: Vec<String> = t
        .lines
        .iter()
        .map(|l| format!("{}: {}", l.stage, l.text))
        .collect();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("ip4-local: DNS over udp 10.1.0.2:40000 > 10.1.0.1:53: to the DNS service"),
        "{lines:#?}"
    );
    assert_eq!(t.verdict.action, "punt");
    assert_eq!(
        t.verdict.text,
        "handed to switchyard's DNS service; its answer goes back out of port fa"
    );
    let mut f = Frame::from_bytes(FA, &syn_to(1, rip(1, 1), 53));
    let before = punted(&p);
    let w = p.what_if(&mut f, Timestamp::from_secs(2));
    assert_eq!(f.action, Action::Punt);
    assert_eq!(w.verdict.action, "punt");
    assert_eq!(
        w.verdict.text,
        "punted: handed to switchyard's DNS service, whose answer goes back out of port fa"
    );
    assert_eq!(punted(&p), before, "a what-if counts nothing");
}
