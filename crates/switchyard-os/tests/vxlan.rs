//! A tunnel port's super-frames leave as one UDP super-packet (`UDP_SEGMENT`) and
//! arrive as the datagrams they stand for, in order and intact; a coalesced read
//! (`UDP_GRO`) is split back into frames; too big is refused and counted. Each test
//! runs in a namespace of its own, on its loopback (MTU 1500, as an underlay).

mod common;

use common::{require_root, TestNs};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};
use switchyard_core::pipeline::Frame;
use switchyard_core::wire::checksum;
use switchyard_core::wire::virtio_net::{self, VirtioNetHdr};
use switchyard_core::wire::IpProtocol;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_os::port::vxlan::{VxlanConfig, VxlanPort, VxlanQueue, DROPS, SOURCE_PORTS};
use switchyard_os::port::Port;

const VNI: u32 = 42;
const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SEQ: u32 = 1_000_000;
const INNER_SRC: Ipv4Addr = Ipv4Addr::new(10, 80, 0, 2);
const INNER_DST: Ipv4Addr = Ipv4Addr::new(10, 80, 0, 9);

/// Loopback up with an Ethernet-sized MTU, so that too big can happen.
fn underlay() {
    let mut r = Rtnl::new().unwrap();
    let lo = r.link_index("lo").unwrap();
    r.link_set_up(lo).unwrap();
    r.link_set_mtu(lo, 1500).unwrap();
}

/// A tunnel port of one queue from `local` to `remote`: the queue and the source
/// ports it sends from.
fn tunnel(local: Ipv4Addr, remote: Ipv4Addr) -> (VxlanQueue, Vec<u16>) {
    let port = VxlanPort::open(
        VxlanConfig {
            vni: VNI,
            local,
            remotes: vec![remote],
            port: 4789,
            udp_csum: false,
            mtu: 1450,
        },
        1,
    )
    .unwrap();
    let ports = port.source_ports();
    assert_eq!(ports.len(), SOURCE_PORTS);
    (port.into_queues().pop().unwrap(), ports)
}

/// A frame of one segment whose checksum is left partial (not a super-frame).
fn partial(payload: usize) -> Frame {
    let mut f = super_frame(1400, 1, payload);
    f.vnet.gso_type = virtio_net::GSO_NONE;
    f.vnet.gso_size = 0;
    f
}

/// Payload byte `i` of the stream: a pattern that shows a lost, repeated or
/// reordered segment.
fn byte(i: usize) -> u8 {
    (i * 7 + i / 251) as u8
}

/// A TCP super-frame as a TAP hands it over: `segments` segments of `mss` bytes but
/// the last (`last` bytes), checksum partial.
fn super_frame(mss: u16, segments: usize, last: usize) -> Frame {
    let payload = usize::from(mss) * (segments - 1) + last;
    let mut f = vec![0u8; 54 + payload];
    f[..6].copy_from_slice(&[2, 0x42, 10, 80, 0, 9]);
    f[6..12].copy_from_slice(&[2, 0x42, 10, 80, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&INNER_SRC.octets());
    ip[16..20].copy_from_slice(&INNER_DST.octets());
    let sum = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&SEQ.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    tcp[14..16].copy_from_slice(&64000u16.to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = byte(i);
    }
    // A partial checksum holds the pseudo-header sum, as the kernel leaves it.
    let pseudo =
        checksum::pseudo_header_sum(INNER_SRC, INNER_DST, IpProtocol::TCP, (20 + payload) as u16);
    let partial = checksum::fold(pseudo);
    f[34 + 16..34 + 18].copy_from_slice(&partial.to_be_bytes());
    let mut frame = Frame::new();
    frame.load(&f);
    frame.vnet = VirtioNetHdr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: virtio_net::GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    frame
}

/// Checks that `inner` is segment `i` of [`super_frame`]`(mss, ..)`, whole: its
/// sequence number, payload and IPv4 and TCP checksums. Returns its payload length.
fn check_segment(inner: &[u8], i: usize, mss: u16) -> usize {
    assert_eq!(
        &inner[..6],
        &[2, 0x42, 10, 80, 0, 9],
        "segment {i}: destination"
    );
    let total = usize::from(u16::from_be_bytes([inner[16], inner[17]]));
    assert_eq!(total + 14, inner.len(), "segment {i}: IPv4 length");
    assert_eq!(
        checksum::checksum(&inner[14..34]),
        0,
        "segment {i}: IPv4 sum"
    );
    let offset = i * usize::from(mss);
    let seq = u32::from_be_bytes([inner[38], inner[39], inner[40], inner[41]]);
    assert_eq!(seq, SEQ + offset as u32, "segment {i}: sequence number");
    let tcp = &inner[34..];
    let pseudo =
        checksum::pseudo_header_sum(INNER_SRC, INNER_DST, IpProtocol::TCP, tcp.len() as u16);
    assert_eq!(
        checksum::fold(checksum::sum(pseudo, tcp)),
        0xffff,
        "segment {i}: TCP checksum"
    );
    let payload = &tcp[20..];
    for (k, &b) in payload.iter().enumerate() {
        assert_eq!(b, byte(offset + k), "segment {i}: payload byte {k}");
    }
    payload.len()
}

fn drops(q: &VxlanQueue, id: &str) -> u64 {
    assert!(DROPS.iter().any(|&(d, _)| d == id));
    q.drops().iter().find(|d| d.id == id).unwrap().count
}

#[test]
fn a_super_frame_leaves_in_one_sendmsg_as_its_segments_in_order() {
    if !require_root() {
        return;
    }
    let ns = TestNs::create("vx");
    netns::run_in_named(&ns.0, || {
        underlay();
        // A plain UDP socket (no UDP_GRO) at the remote VTEP's address: it gets
        // each datagram on its own, as a VTEP on another host does.
        let remote = UdpSocket::bind((B, 4789)).unwrap();
        remote
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (mut q, ports) = tunnel(A, B);
        let mut f = super_frame(1400, 20, 321);
        assert_eq!(q.send(&mut f).unwrap(), 20, "20 segments");
        assert_eq!(
            q.send_calls(),
            1,
            "one system call for the whole super-frame"
        );

        let mut buf = vec![0u8; 65536];
        let mut sport = None;
        let mut bytes = 0;
        for i in 0..20 {
            let (n, from) = remote.recv_from(&mut buf).unwrap();
            assert_eq!(from.ip(), std::net::IpAddr::V4(A), "from local");
            assert!(
                (32768..=60999).contains(&from.port()),
                "an ephemeral source port: {from}"
            );
            assert!(ports.contains(&from.port()), "one of the port's: {from}");
            assert_eq!(
                *sport.get_or_insert(from.port()),
                from.port(),
                "one flow, one port"
            );
            assert_eq!(
                &buf[..8],
                &[0x08, 0, 0, 0, 0, 0, 42, 0],
                "VXLAN header, VNI 42"
            );
            bytes += check_segment(&buf[8..n], i, 1400);
        }
        assert_eq!(bytes, 19 * 1400 + 321, "every byte");
        remote.set_nonblocking(true).unwrap();
        assert!(remote.recv_from(&mut buf).is_err(), "nothing more");

        // A single frame of the same flow leaves from the same source port.
        let mut one = partial(100);
        assert_eq!(q.send(&mut one).unwrap(), 1);
        remote.set_nonblocking(false).unwrap();
        let (n, from) = remote.recv_from(&mut buf).unwrap();
        check_segment(&buf[8..n], 0, 1400);
        assert_eq!(
            Some(from.port()),
            sport,
            "the flow's port for single frames too"
        );
        assert_eq!(drops(&q, "vxlan_tx_too_big"), 0);
    })
    .unwrap();
}

#[test]
fn a_coalesced_read_is_split_back_into_frames() {
    if !require_root() {
        return;
    }
    let ns = TestNs::create("vx");
    netns::run_in_named(&ns.0, || {
        underlay();
        let (mut qa, _) = tunnel(A, B);
        let (mut qb, _) = tunnel(B, A);
        let mut f = super_frame(1400, 30, 1000);
        assert_eq!(qa.send(&mut f).unwrap(), 30);

        // Fewer frames than datagrams per call: the rest waits for the next.
        let mut frames: Vec<Frame> = (0..8).map(|_| Frame::new()).collect();
        let (mut got, mut bytes) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(2);
        while got < 30 && Instant::now() < deadline {
            let n = qb.recv_batch(&mut frames).unwrap();
            for fr in &frames[..n] {
                assert_eq!(fr.tunnel, Some(A), "behind VTEP A");
                assert!(!fr.vnet.is_gso(), "an ordinary frame");
                bytes += check_segment(fr.data(), got, 1400);
                got += 1;
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(got, 30, "every datagram became a frame");
        assert_eq!(bytes, 29 * 1400 + 1000);
        assert_eq!(qb.recv_batch(&mut frames).unwrap(), 0, "nothing more");
    })
    .unwrap();
}

#[test]
fn too_big_is_refused_and_counted_never_fragmented() {
    if !require_root() {
        return;
    }
    let ns = TestNs::create("vx");
    netns::run_in_named(&ns.0, || {
        underlay();
        let remote = UdpSocket::bind((B, 4789)).unwrap();
        remote.set_nonblocking(true).unwrap();
        let (mut q, _) = tunnel(A, B);
        // 1460-byte segments: 1460 + 54 + 8 + 28 = 1550 bytes of outer packet.
        let mut f = super_frame(1460, 10, 1460);
        assert!(q.send(&mut f).is_err(), "refused");
        assert_eq!(drops(&q, "vxlan_tx_too_big"), 10, "every segment counted");
        // A single frame too big for the underlay.
        let mut one = partial(1460);
        assert!(q.send(&mut one).is_err(), "refused");
        assert_eq!(drops(&q, "vxlan_tx_too_big"), 11);
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = vec![0u8; 65536];
        assert!(
            remote.recv_from(&mut buf).is_err(),
            "nothing arrived, not even a fragment"
        );
    })
    .unwrap();
}
