//! Host interfaces as ports (`port::packet`) against the kernel, in a namespace of the
//! test's own (as root): a loopback or a missing interface is refused, a frame sent
//! into a veth reaches one of the port's fanout sockets whole, a frame the port sends
//! goes out and never comes back in to it, a tagged frame is refused and counted, and
//! promiscuity is the device's again once the port is closed.

use std::time::{Duration, Instant};
use switchyard_core::pipeline::{Frame, PortId};
use switchyard_os::netlink::packet::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo as Kind, LinkMessage,
};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_os::port::packet::{PacketError, PacketPort, PacketQueue};
use switchyard_os::port::steer::Steering;
use switchyard_os::port::Port;

mod common;
use common::{require_root, TestNs};

fn add_veth(r: &mut Rtnl, name: &str, peer: &str) {
    let mut p = LinkMessage::default();
    p.attributes.push(LinkAttribute::IfName(peer.to_string()));
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        Kind::Kind(InfoKind::Veth),
        Kind::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    r.link_add(m, || format!("add veth {name}")).unwrap();
}

fn promiscuity(r: &mut Rtnl, name: &str) -> u32 {
    let l = r
        .links()
        .unwrap()
        .into_iter()
        .find(|l| l.name == name)
        .unwrap();
    l.promiscuity.unwrap()
}

/// A broadcast frame of the local experimental EtherType carrying `marker`, 802.1Q
/// tagged with `vlan` when given.
fn frame(marker: u8, vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, marker]);
    if let Some(v) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.resize(f.len() + 46, marker);
    f
}

/// Reads every queue until `want` of the test's frames came or a short quiet time
/// passed; frames of the namespace's own stack (IPv6 router and listener messages
/// of the veth's ends) are left out.
fn drain(queues: &mut [PacketQueue], want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut batch: Vec<Frame> = (0..8).map(|_| Frame::new()).collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) && got.len() < want {
        for q in queues.iter_mut() {
            let n = q.recv_batch(&mut batch).unwrap();
            got.extend(
                batch[..n]
                    .iter()
                    .map(|f| f.data().to_vec())
                    .filter(|d| d.len() > 14 && d[12..14] == [0x88, 0xb5]),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    got
}

#[test]
fn a_parent_port_receives_sends_and_leaves_the_device_as_it_was() {
    if !require_root() {
        return;
    }
    let ns = TestNs::create("pk");
    netns::run_in_named(&ns.0, || {
        let mut r = Rtnl::new().unwrap();
        let lo = r.link_index("lo").unwrap();
        r.link_set_up(lo).unwrap();
        match PacketPort::open("lo", 1) {
            Err(PacketError::Loopback(n)) => assert_eq!(n, "lo"),
            other => panic!("lo attached: {:?}", other.err()),
        }
        match PacketPort::open("nosuch0", 1) {
            Err(e @ PacketError::NoSuchInterface(_)) => {
                assert!(e.to_string().contains("no interface \"nosuch0\""), "{e}")
            }
            other => panic!("a missing interface attached: {:?}", other.err()),
        }

        add_veth(&mut r, "par0", "peer0");
        for n in ["par0", "peer0"] {
            let i = r.link_index(n).unwrap();
            r.link_set_up(i).unwrap();
        }
        let before = promiscuity(&mut r, "par0");
        let port = PacketPort::open("par0", 2).unwrap();
        assert_eq!(port.capabilities().queues, 2);
        assert_eq!(port.capabilities().mtu, 1500);
        assert_eq!(promiscuity(&mut r, "par0"), before + 1);
        let mut par = port.into_queues();
        let mut peer = PacketPort::open("peer0", 1).unwrap().into_queues();

        // In from the wire: some socket of the fanout group gets it, once, whole.
        let mut f = Frame::from_bytes(PortId(0), &frame(1, None));
        assert_eq!(peer[0].send(&mut f).unwrap(), 1);
        let got = drain(&mut par, 1);
        assert_eq!(got, vec![frame(1, None)]);

        // Out to the wire: the peer has it, and the port does not read it back.
        let mut f = Frame::from_bytes(PortId(0), &frame(2, None));
        par[1].send(&mut f).unwrap();
        assert_eq!(drain(&mut peer, 1), vec![frame(2, None)]);
        let back = drain(&mut par, 1);
        assert!(back.is_empty(), "a sent frame came back in: {back:02x?}");

        // Tagged: refused before anyone sees it, and counted.
        let mut f = Frame::from_bytes(PortId(0), &frame(3, Some(100)));
        peer[0].send(&mut f).unwrap();
        assert!(drain(&mut par, 1).is_empty(), "a tagged frame was let in");
        let tagged: u64 = par.iter_mut().map(|q| q.rx_refused().tagged).sum();
        assert_eq!(tagged, 1);

        drop(par);
        assert_eq!(
            promiscuity(&mut r, "par0"),
            before,
            "promiscuity given back"
        );
    })
    .unwrap();
}

/// Which of `queues` read the frame marked `marker` (the first that has it).
fn reader_of(queues: &mut [PacketQueue], marker: u8) -> Option<usize> {
    let mut batch: Vec<Frame> = (0..8).map(|_| Frame::new()).collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        for (i, q) in queues.iter_mut().enumerate() {
            let n = q.recv_batch(&mut batch).unwrap();
            if batch[..n].iter().any(|f| f.data() == frame(marker, None)) {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn with_steering_by_cpu_a_frame_reaches_the_socket_of_the_cpu_it_arrived_on() {
    if !require_root() {
        return;
    }
    let cpus = switchyard_os::port::steer::allowed_cpus();
    assert!(cpus.len() >= 2, "needs two CPUs, has {cpus:?}");
    let ns = TestNs::create("pc");
    netns::run_in_named(&ns.0, || {
        let mut r = Rtnl::new().unwrap();
        add_veth(&mut r, "par0", "peer0");
        for n in ["par0", "peer0"] {
            let i = r.link_index(n).unwrap();
            r.link_set_up(i).unwrap();
        }
        let port = PacketPort::open_steered("par0", 2, Steering::Cpu).unwrap();
        assert_eq!(port.capabilities().steering, Steering::Cpu);
        let mut par = port.into_queues();
        let mut peer = PacketPort::open("peer0", 1).unwrap().into_queues();
        // A veth hands a frame to its peer on the CPU that sent it, so the sending
        // thread's CPU is the CPU the frame arrives on.
        for (k, &cpu) in cpus.iter().take(2).enumerate() {
            for round in 0..4u8 {
                let marker = 10 + 4 * k as u8 + round;
                std::thread::scope(|s| {
                    s.spawn(|| {
                        switchyard_os::port::steer::pin_current_thread(&[cpu]).unwrap();
                        let mut f = Frame::from_bytes(PortId(0), &frame(marker, None));
                        peer[0].send(&mut f).unwrap();
                    });
                });
                assert_eq!(
                    reader_of(&mut par, marker),
                    Some(cpu % 2),
                    "a frame sent on CPU {cpu}"
                );
            }
        }
    })
    .unwrap();
}
