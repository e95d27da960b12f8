//! The same NAT scenario through switchyard and through the kernel (veth + Linux
//! bridge + iptables MASQUERADE and DNAT, as Docker sets them up, in namespaces this
//! test makes): the servers must see the same kind of source in both — the same
//! address, and the source port kept or changed alike. switchyard runs the `nat`
//! topology of the fixtures; the kernel side is built to match it. Needs root and
//! iptables.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use switchyard_bench::kernel::{
    self, KernelBridge, KernelNet, KernelOutside, KernelPublish, KernelSpec,
};
use switchyard_testkit::traffic;

const T: Duration = Duration::from_secs(10);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// What the servers saw: the source address, and whether the client's port was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    out_tcp: Vec<(IpAddr, bool)>,
    out_udp: Vec<(IpAddr, bool)>,
    in_tcp: (IpAddr, bool),
    in_udp: (IpAddr, bool),
}

fn kind(peer: SocketAddr, client_port: u16) -> (IpAddr, bool) {
    (peer.ip(), peer.port() == client_port)
}

/// Runs the scenario between namespaces `a`, `b` (inside) and `out` (outside).
fn scenario(a: &str, b: &str, out: &str) -> Seen {
    // Out, TCP: a and b connect from the same source port to the same server. a's
    // connection is accepted before b connects, so a's is the flow that had the
    // port first, and the first the server lists.
    let server = traffic::tcp_listener(out, SocketAddrV4::new(PEER, 9000)).unwrap();
    server.set_nonblocking(true).unwrap();
    let accept = |who: &str| {
        wait_for(
            T,
            &format!("the server to accept {who}'s connection"),
            || server.accept().ok(),
        )
    };
    let c1 = traffic::tcp_connect_from(a, 40000, SocketAddrV4::new(PEER, 9000), T).unwrap();
    let (s1, p1) = accept("a");
    let c2 = traffic::tcp_connect_from(b, 40000, SocketAddrV4::new(PEER, 9000), T).unwrap();
    let (s2, p2) = accept("b");
    drop((c1, c2, s1, s2));
    let out_tcp = vec![kind(p1, 40000), kind(p2, 40000)];

    // Out, UDP: the same with datagrams.
    let echo = traffic::udp_echo_server(out, SocketAddrV4::new(PEER, 9001), 2, T).unwrap();
    traffic::udp_request_from(a, 41000, SocketAddrV4::new(PEER, 9001), b"one", T).unwrap();
    traffic::udp_request_from(b, 41000, SocketAddrV4::new(PEER, 9001), b"two", T).unwrap();
    let out_udp = echo
        .join()
        .unwrap()
        .unwrap()
        .iter()
        .map(|p| kind(*p, 41000))
        .collect();

    // In, TCP and UDP, through the published ports.
    let server =
        traffic::tcp_accept_peers(a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 1, T).unwrap();
    let c = traffic::tcp_connect_from(out, 42000, SocketAddrV4::new(UPLINK, 8080), T).unwrap();
    let in_tcp = kind(server.join().unwrap().unwrap()[0], 42000);
    drop(c);
    let echo =
        traffic::udp_echo_server(a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53), 1, T).unwrap();
    traffic::udp_request_from(out, 43000, SocketAddrV4::new(UPLINK, 5353), b"q", T).unwrap();
    let in_udp = kind(echo.join().unwrap().unwrap()[0], 43000);
    Seen {
        out_tcp,
        out_udp,
        in_tcp,
        in_udp,
    }
}

#[test]
fn switchyard_nat_matches_the_kernels() {
    if !require_root() {
        return;
    }
    assert!(
        kernel::have("iptables"),
        "this test compares with the kernel's NAT and needs iptables (apt-get install iptables; .ci/run installs it)"
    );

    let sy = start(build(nat(&unique_prefix())));
    let ours = scenario(&ns(&sy, "a"), &ns(&sy, "b"), &ns(&sy, "outside"));
    stop(sy);

    let spec = KernelSpec {
        prefix: format!("k{}", unique_prefix()),
        mtu: 1500,
        bridges: vec![KernelBridge {
            subnet: "172.17.0.0/16".parse().unwrap(),
            gateway: Ipv4Addr::new(172, 17, 0, 1),
            endpoints: vec![
                ("a".into(), Ipv4Addr::new(172, 17, 0, 2)),
                ("b".into(), Ipv4Addr::new(172, 17, 0, 3)),
            ],
        }],
        outside: Some(KernelOutside {
            subnet: "198.51.100.0/24".parse().unwrap(),
            uplink: UPLINK,
            peer_name: "outside".into(),
            peer_ip: PEER,
            masquerade: true,
            publish: vec![
                KernelPublish {
                    udp: false,
                    host_port: 8080,
                    target: Ipv4Addr::new(172, 17, 0, 2),
                    target_port: 80,
                },
                KernelPublish {
                    udp: true,
                    host_port: 5353,
                    target: Ipv4Addr::new(172, 17, 0, 2),
                    target_port: 53,
                },
            ],
        }),
    };
    let k = KernelNet::build(&spec).expect("the kernel side builds");
    let theirs = scenario(
        &k.namespace("a"),
        &k.namespace("b"),
        &k.namespace("outside"),
    );
    let kernel_names = [
        k.host(),
        k.namespace("a"),
        k.namespace("b"),
        k.namespace("outside"),
    ];
    drop(k);
    assert_gone(&kernel_names);

    eprintln!("switchyard saw: {ours:?}\nkernel saw:     {theirs:?}");
    assert_eq!(
        ours, theirs,
        "the servers see the same kind of source through both"
    );
    // And that kind is what Docker users expect.
    let up = IpAddr::V4(UPLINK);
    assert_eq!(
        ours.out_tcp,
        vec![(up, true), (up, false)],
        "masqueraded; a kept its port, b could not"
    );
    assert_eq!(ours.out_udp, vec![(up, true), (up, false)]);
    assert_eq!(
        ours.in_tcp,
        (IpAddr::V4(PEER), true),
        "published: the real client, its port kept"
    );
    assert_eq!(ours.in_udp, (IpAddr::V4(PEER), true));
}
