//! Pipeline tests with synthetic frames and injected time, and the helpers they share.

use super::*;
use crate::wire::MacAddr;
use etherparse::PacketBuilder;

mod dns;
mod events;
mod guard;
mod icc;
mod l2;
mod l3;
mod layout;
mod nat;
mod vlan;
mod what_if;
mod workers;

pub(super) const GW_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
pub(super) const GW_MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x01]);

pub(super) fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, n])
}

pub(super) fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, n)
}

/// One domain "default" with a gateway and ports a, b, c; a second domain "other"
/// (no gateway) with ports x, y.
pub(super) fn spec(fdb_max: usize) -> Spec {
    let port = |name: &str, d: u16| PortSpec::new(name, DomainId(d));
    Spec {
        fdb_max,
        ..Spec::new(
            vec![
                DomainSpec {
                    name: "default".into(),
                    subnet: "172.17.0.0/16".parse().unwrap(),
                    mtu: 1500,
                    gateway: Some(GatewaySpec {
                        ip: GW_IP,
                        mac: GW_MAC,
                    }),
                    mode: DomainMode::Bridge,
                    proxy_arp: false,
                    masquerade: false,
                    external: false,
                    dns: false,
                    guard: Default::default(),
                },
                DomainSpec {
                    name: "other".into(),
                    subnet: "192.168.7.0/24".parse().unwrap(),
                    mtu: 1500,
                    gateway: None,
                    mode: DomainMode::Bridge,
                    proxy_arp: false,
                    masquerade: false,
                    external: false,
                    dns: false,
                    guard: Default::default(),
                },
            ],
            vec![
                port("a", 0),
                port("b", 0),
                port("c", 0),
                port("x", 1),
                port("y", 1),
            ],
        )
    }
}

pub(super) const A: PortId = PortId(0);
pub(super) const B: PortId = PortId(1);
pub(super) const C: PortId = PortId(2);
pub(super) const X: PortId = PortId(3);
pub(super) const Y: PortId = PortId(4);

pub(super) fn pipeline() -> Pipeline {
    Pipeline::new(spec(64)).unwrap()
}

pub(super) fn udp(src: MacAddr, dst: MacAddr, payload_len: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([172, 17, 0, src.0[5]], [172, 17, 0, dst.0[5]], 64)
        .udp(4000, 5000);
    let payload = vec![0xabu8; payload_len];
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    v
}

pub(super) fn arp_request(
    src: MacAddr,
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
    dst: MacAddr,
) -> Vec<u8> {
    let mut v = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut v, dst, src, crate::wire::EtherType::ARP);
    crate::wire::arp::write(
        &mut v[14..],
        crate::wire::arp::ArpOp::Request,
        src,
        src_ip,
        MacAddr::ZERO,
        target,
    );
    v
}

pub(super) fn echo_request(
    src: MacAddr,
    src_ip: Ipv4Addr,
    dst: MacAddr,
    dst_ip: Ipv4Addr,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src_ip.octets(), dst_ip.octets(), 64)
        .icmpv4_echo_request(0x77, 3);
    let mut v = Vec::new();
    b.write(&mut v, b"switchyard ping").unwrap();
    v
}

/// Runs one frame through the pipeline; returns it with the frames switchyard emitted.
pub(super) fn run(
    p: &mut Pipeline,
    port: PortId,
    bytes: &[u8],
    now: u64,
) -> (Frame, Vec<(Action, Vec<u8>)>) {
    let mut frames = [Frame::from_bytes(port, bytes)];
    let mut out = Emitter::with_capacity(4);
    p.process(&mut frames, Timestamp::from_secs(now), &mut out);
    let emitted = out
        .frames()
        .iter()
        .map(|f| (f.action, f.data().to_vec()))
        .collect();
    let [f] = frames;
    (f, emitted)
}

pub(super) fn egress(p: &Pipeline, f: &Frame) -> Vec<PortId> {
    let mut v: Vec<_> = p.egress(f).collect();
    v.sort();
    v
}
