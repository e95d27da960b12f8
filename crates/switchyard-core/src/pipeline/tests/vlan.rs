//! 802.1Q tests: a trunk's frames handed to the port of their tag, and the frames a
//! VLAN-aware bridge (the kernel's, `vlan_filtering = 1`) refuses.

use super::*;
use crate::wire::virtio_net::{F_NEEDS_CSUM, GSO_TCPV4};
use crate::wire::{EtherType, VirtioNetHdr};

/// Port `r/eth0.10`: the trunk's carrier, itself VLAN 10 of network "default".
const T10: PortId = PortId(5);
/// Port `r/eth0.20`: VLAN 20 of network "other", carried by `T10`'s device.
const T20: PortId = PortId(6);
/// A host on both VLANs: the one MAC a router's sub-interfaces share.
const ROUTER: u8 = 0x50;

/// The common spec plus a trunk "r" carrying VLAN 10 ("default") and VLAN 20
/// ("other"), without a native network; with `native`, "other" is untagged on it
/// instead.
fn trunk_spec(native: bool) -> Spec {
    let mut s = spec(64);
    s.ports.push(PortSpec {
        vlan: Some(10),
        ..PortSpec::new("r/eth0.10", DomainId(0))
    });
    s.ports.push(PortSpec {
        vlan: (!native).then_some(20),
        carrier: Some(T10),
        ..PortSpec::new("r/eth0.20", DomainId(1))
    });
    s
}

fn trunk() -> Pipeline {
    Pipeline::new(trunk_spec(false)).unwrap()
}

/// `frame` with an 802.1Q tag of control field `tci` after its addresses.
fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    tagged_as(frame, EtherType::VLAN, tci)
}

fn tagged_as(frame: &[u8], tpid: EtherType, tci: u16) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&tpid.0.to_be_bytes());
    v.extend_from_slice(&tci.to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}

fn drops(p: &Pipeline, port: PortId, r: DropReason) -> u64 {
    p.counters().ports[port.index()].drops[r as usize]
}

/// Every port's books balance: received = forwarded + consumed + dropped + held.
fn balanced(p: &Pipeline) {
    for (i, c) in p.counters().ports.iter().enumerate() {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "port {i}: {c:?}"
        );
    }
}

#[test]
fn a_tagged_frame_is_its_vlans_frame_untagged_with_its_priority() {
    let mut p = trunk();
    let plain = udp(mac(ROUTER), MacAddr::BROADCAST, 10);
    // PCP 5, DEI 1, VLAN 10.
    let (f, _) = run(&mut p, T10, &tagged(&plain, 0xb000 | 10), 0);
    assert_eq!(f.ingress, T10);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(egress(&p, &f), vec![A, B, C], "VLAN 10 only, not VLAN 20");
    assert_eq!(
        f.data(),
        &plain[..],
        "the tag is off, the frame otherwise as sent"
    );
    assert_eq!(f.vlan_prio, 0xb000);
    // VLAN 20 comes in on the same device and belongs to the other network.
    let (f, _) = run(&mut p, T10, &tagged(&plain, 20), 0);
    assert_eq!(f.ingress, T20);
    assert_eq!(egress(&p, &f), vec![X, Y]);
    assert_eq!(f.vlan_prio, 0);
    // Each VLAN's port counts its own frames.
    assert_eq!(p.counters().ports[T10.index()].rx_frames, 1);
    assert_eq!(p.counters().ports[T20.index()].rx_frames, 1);
    balanced(&p);
}

#[test]
fn a_flood_from_an_access_port_reaches_the_trunk_as_its_vlan() {
    let mut p = trunk();
    let (f, _) = run(&mut p, X, &udp(mac(9), MacAddr::BROADCAST, 10), 0);
    assert_eq!(egress(&p, &f), vec![Y, T20], "to the trunk's VLAN 20 port");
    assert_eq!(p.port(T20).unwrap().vlan, Some(20));
    let (f, _) = run(&mut p, A, &udp(mac(2), MacAddr::BROADCAST, 10), 0);
    assert_eq!(egress(&p, &f), vec![B, C, T10]);
}

#[test]
fn one_mac_on_two_vlans_is_two_fdb_entries() {
    let mut p = trunk();
    let plain = udp(mac(ROUTER), mac(2), 10);
    run(&mut p, T10, &tagged(&plain, 10), 0);
    run(&mut p, T10, &tagged(&plain, 20), 0);
    assert_eq!(p.fdb().lookup(DomainId(0), mac(ROUTER)), Some(T10));
    assert_eq!(p.fdb().lookup(DomainId(1), mac(ROUTER)), Some(T20));
    // Unicast to it goes to the port of each network's own VLAN.
    let (f, _) = run(&mut p, A, &udp(mac(2), mac(ROUTER), 10), 1);
    assert_eq!(f.action, Action::Forward(T10));
    let (f, _) = run(&mut p, X, &udp(mac(9), mac(ROUTER), 10), 1);
    assert_eq!(f.action, Action::Forward(T20));
}

#[test]
fn a_vlan_the_trunk_does_not_carry_is_dropped_and_counted() {
    let mut p = trunk();
    let plain = udp(mac(ROUTER), MacAddr::BROADCAST, 10);
    let (f, _) = run(&mut p, T10, &tagged(&plain, 30), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanNotAllowed));
    // VLAN 4095 is reserved: no port has it.
    let (f, _) = run(&mut p, T10, &tagged(&plain, 4095), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanNotAllowed));
    assert_eq!(drops(&p, T10, DropReason::VlanNotAllowed), 2);
    assert_eq!(
        p.fdb().lookup(DomainId(0), mac(ROUTER)),
        None,
        "nothing learned"
    );
    balanced(&p);
}

#[test]
fn untagged_on_a_trunk_without_native_is_dropped_and_counted() {
    let mut p = trunk();
    let (f, _) = run(&mut p, T10, &udp(mac(ROUTER), MacAddr::BROADCAST, 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanUntagged));
    assert_eq!(drops(&p, T10, DropReason::VlanUntagged), 1);
    balanced(&p);
}

#[test]
fn untagged_on_a_trunk_with_native_is_the_native_networks() {
    let mut p = Pipeline::new(trunk_spec(true)).unwrap();
    let plain = udp(mac(ROUTER), MacAddr::BROADCAST, 10);
    let (f, _) = run(&mut p, T10, &plain, 0);
    assert_eq!(f.ingress, T20);
    assert_eq!(egress(&p, &f), vec![X, Y]);
    // And VLAN 20 is not on the trunk any more: "other" is untagged there.
    let (f, _) = run(&mut p, T10, &tagged(&plain, 20), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanNotAllowed));
}

#[test]
fn a_priority_tag_is_no_vlan() {
    let mut p = trunk();
    let plain = udp(mac(2), MacAddr::BROADCAST, 10);
    // On an access port: the port's own frame, untagged, its priority kept.
    let (f, _) = run(&mut p, A, &tagged(&plain, 0x6000), 0);
    assert_eq!(f.action, Action::Flood(DomainId(0)));
    assert_eq!(f.data(), &plain[..]);
    assert_eq!(f.vlan_prio, 0x6000);
    // On a trunk without a native network it is untagged, and dropped as such.
    let (f, _) = run(&mut p, T10, &tagged(&plain, 0x6000), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanUntagged));
    // With a native network, it is the native network's.
    let mut p = Pipeline::new(trunk_spec(true)).unwrap();
    let (f, _) = run(&mut p, T10, &tagged(&plain, 0x6000), 0);
    assert_eq!(f.ingress, T20);
    assert_eq!(f.action, Action::Flood(DomainId(1)));
}

#[test]
fn a_tagged_frame_on_an_access_port_is_dropped() {
    let mut p = trunk();
    let (f, _) = run(&mut p, A, &tagged(&udp(mac(2), mac(3), 10), 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanNotAllowed));
    assert_eq!(drops(&p, A, DropReason::VlanNotAllowed), 1);
    balanced(&p);
}

#[test]
fn stacked_tags_and_service_tags_are_dropped() {
    let mut p = trunk();
    let plain = udp(mac(ROUTER), MacAddr::BROADCAST, 10);
    let qinq = tagged(&tagged(&plain, 20), 10);
    let (f, _) = run(&mut p, T10, &qinq, 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanStacked));
    let s_tag = tagged_as(&tagged(&plain, 20), EtherType::QINQ, 10);
    let (f, _) = run(&mut p, T10, &s_tag, 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanStacked));
    let lone_s_tag = tagged_as(&plain, EtherType::QINQ, 10);
    let (f, _) = run(&mut p, A, &lone_s_tag, 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanStacked));
    assert_eq!(drops(&p, T10, DropReason::VlanStacked), 2);
    // A tag cut short, and a frame too short for any header.
    let (f, _) = run(&mut p, T10, &tagged(&plain, 10)[..16], 0);
    assert_eq!(f.action, Action::Drop(DropReason::VlanTruncated));
    let (f, _) = run(&mut p, T10, &plain[..10], 0);
    assert_eq!(f.action, Action::Drop(DropReason::Truncated));
    assert_eq!(drops(&p, T10, DropReason::Truncated), 1);
    balanced(&p);
}

#[test]
fn a_routed_packet_leaves_without_the_priority_it_came_with() {
    let mut s = trunk_spec(false);
    s.domains[1].gateway = Some(GatewaySpec {
        ip: Ipv4Addr::new(192, 168, 7, 1),
        mac: MacAddr([2, 0x42, 192, 168, 7, 1]),
    });
    s.allow.push((DomainId(0), DomainId(1)));
    let mut p = Pipeline::new(s).unwrap();
    let ping = echo_request(
        mac(ROUTER),
        ip(ROUTER),
        GW_MAC,
        Ipv4Addr::new(192, 168, 7, 9),
    );
    let (f, _) = run(&mut p, T10, &tagged(&ping, 0xe000 | 10), 0);
    assert_eq!(f.ingress, T10);
    assert_eq!(f.action, Action::Held, "waits for 192.168.7.9's MAC");
    // Answered to the gateway itself, the reply keeps the priority.
    let ping = echo_request(mac(ROUTER), ip(ROUTER), GW_MAC, GW_IP);
    let (f, _) = run(&mut p, T10, &tagged(&ping, 0xe000 | 10), 0);
    assert_eq!(f.action, Action::Reply);
    assert_eq!(egress(&p, &f), vec![T10], "back out of VLAN 10");
    assert_eq!(f.vlan_prio, 0xe000);
}

#[test]
fn tags_go_on_and_off_in_place_with_the_checksum_position() {
    let plain = udp(mac(2), mac(3), 100);
    let mut f = Frame::from_bytes(A, &plain);
    f.vnet = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    assert!(f.push_vlan_tag(0x2000 | 300));
    assert_eq!(f.data(), &tagged(&plain, 0x2000 | 300)[..]);
    assert_eq!((f.vnet.csum_start, f.vnet.hdr_len), (38, 54));
    assert_eq!(f.pop_vlan_tag(), 0x2000 | 300);
    assert_eq!(f.data(), &plain[..]);
    assert_eq!((f.vnet.csum_start, f.vnet.hdr_len), (34, 54));
    // No room left for a tag and a virtio-net header in front: nothing changes.
    let len = f.len();
    f.set_bounds(VirtioNetHdr::LEN + 3, len);
    assert!(!f.push_vlan_tag(10));
    assert_eq!(f.start(), VirtioNetHdr::LEN + 3);
}

#[test]
fn a_spec_with_bad_vlans_is_refused() {
    let mut s = trunk_spec(false);
    s.ports[T20.index()].vlan = Some(10);
    assert!(matches!(
        Pipeline::new(s),
        Err(SpecError::DuplicateVlan { vlan: 10, .. })
    ));
    let mut s = trunk_spec(false);
    s.ports[T20.index()].vlan = Some(4095);
    assert!(matches!(
        Pipeline::new(s),
        Err(SpecError::BadVlanId { vlan: 4095, .. })
    ));
    // A carrier must be a port with a device of its own.
    let mut s = trunk_spec(false);
    s.ports[A.index()].carrier = Some(T20);
    assert!(matches!(
        Pipeline::new(s),
        Err(SpecError::BadCarrier { .. })
    ));
    let mut s = trunk_spec(false);
    s.ports[T20.index()].carrier = Some(PortId(40));
    assert!(matches!(
        Pipeline::new(s),
        Err(SpecError::BadCarrier { .. })
    ));
}

#[test]
fn a_full_mtu_packet_fits_behind_its_tag() {
    let mut p = trunk();
    let (f, _) = run(&mut p, T10, &tagged(&udp(mac(ROUTER), mac(3), 1472), 10), 0);
    assert!(matches!(f.action, Action::Flood(_)));
    assert_eq!(
        usize::from(f.l3),
        14,
        "the network header right after the addresses"
    );
    let (f, _) = run(&mut p, T10, &tagged(&udp(mac(ROUTER), mac(3), 1473), 10), 0);
    assert_eq!(f.action, Action::Drop(DropReason::FrameTooLong));
    assert_eq!(drops(&p, T10, DropReason::FrameTooLong), 1);
}

#[test]
fn a_trace_tells_which_vlan_port_a_frame_is_and_why_a_tag_is_refused() {
    let mut p = trunk();
    p.tracer().start(2, &[]);
    let plain = udp(mac(ROUTER), MacAddr::BROADCAST, 10);
    run(&mut p, T10, &tagged(&plain, 20), 0);
    run(&mut p, T10, &tagged(&plain, 30), 0);
    let lines: Vec<String> = p
        .tracer()
        .drain()
        .iter()
        .map(|r| format!("{} {r}", r.packet))
        .collect();
    assert_eq!(
        lines[0],
        "1 ethernet-input: port r/eth0.20: 02:42:ac:11:00:50 > ff:ff:ff:ff:ff:ff IPv4, 52 bytes",
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "2 vlan-input: port r/eth0.10: VLAN 30 is not on this port: drop"
    );
}

proptest::proptest! {
    /// Whatever tags a frame carries, on whatever port, it is dropped or stays in the
    /// network its tag (or, untagged, its port) belongs to; and the books balance.
    #[test]
    fn no_tag_takes_a_frame_into_another_vlan(
        frames in proptest::collection::vec(
            (0usize..7, 0u8..4, 0u16..=0xffff, proptest::bool::ANY, 1u8..40),
            1..40,
        )
    ) {
        let mut p = trunk();
        let ports = [A, B, C, X, Y, T10, T20];
        for (port, kind, tci, double, host) in frames {
            let plain = udp(mac(host), MacAddr::BROADCAST, 10);
            let tpid = [EtherType::VLAN, EtherType::QINQ, EtherType::IPV4, EtherType(0x9100)][usize::from(kind)];
            let bytes = match (tpid, double) {
                (EtherType::IPV4, _) => plain.clone(),
                (t, false) => tagged_as(&plain, t, tci),
                (t, true) => tagged_as(&tagged(&plain, tci), t, tci),
            };
            let ingress = ports[port];
            let (f, _) = run(&mut p, ingress, &bytes, 0);
            let vid = tci & 0x0fff;
            // The network the frame may be switched in, if any.
            let allowed = match (tpid, double) {
                (EtherType::IPV4, _) if ingress == T10 => None,
                (EtherType::IPV4, _) => Some(p.port(ingress).unwrap().domain),
                (EtherType::VLAN, false) if vid == 0 && ingress != T10 => {
                    Some(p.port(ingress).unwrap().domain)
                }
                (EtherType::VLAN, false) if ingress == T10 && vid == 10 => Some(DomainId(0)),
                (EtherType::VLAN, false) if ingress == T10 && vid == 20 => Some(DomainId(1)),
                // 0x9100 is no tag to switchyard: an EtherType like any other.
                (EtherType(0x9100), _) if ingress != T10 => Some(p.port(ingress).unwrap().domain),
                _ => None,
            };
            let went: Vec<DomainId> = p.egress(&f).map(|e| p.port(e).unwrap().domain).collect();
            match allowed {
                None => proptest::prop_assert!(
                    matches!(f.action, Action::Drop(_)),
                    "{:?} on {ingress:?} tci {tci:#x}: {:?}", tpid, f.action
                ),
                Some(d) => proptest::prop_assert!(
                    went.iter().all(|&w| w == d),
                    "{:?} on {ingress:?} tci {tci:#x} went to {went:?}, not only {d:?}", tpid
                ),
            }
        }
        balanced(&p);
    }
}
