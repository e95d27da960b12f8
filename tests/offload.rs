//! Segmentation offload with real TAPs: TCP super-frames cross switchyard whole
//! between ports that take them (bridged and routed), and are cut in software for a
//! port that does not; the bytes arrive intact either way. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::protocol::{CountersReport, PortRow, Table};
use switchyard_testkit::traffic;

const T: Duration = Duration::from_secs(30);
const SIZE: u64 = 10 * 1024 * 1024;

const TOPOLOGY: &str = r#"
[switch]
prefix = "PREFIX"
workers = 2

[[network]]
name = "fast"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"

[[network]]
name = "fast2"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"

[[network]]
name = "slow"
subnet = "10.3.0.0/24"
gateway = "10.3.0.1"
offloads = false

[[allow]]
between = ["fast", "fast2"]

[[allow]]
between = ["fast", "slow"]

[[endpoint]]
name = "f1"
network = "fast"
ip = "10.1.0.2"

[[endpoint]]
name = "f2"
network = "fast"
ip = "10.1.0.3"

[[endpoint]]
name = "g1"
network = "fast2"
ip = "10.2.0.2"

[[endpoint]]
name = "s1"
network = "slow"
ip = "10.3.0.2"
"#;

fn counters(sy: &switchyard::control::Switchyard) -> CountersReport {
    show(sy, Table::Counters)
}

fn port<'a>(
    c: &'a CountersReport,
    name: &str,
) -> &'a switchyard::control::protocol::PortCounterRow {
    c.ports.iter().find(|p| p.port == name).unwrap()
}

fn transfer(from: &str, to_ns: &str, to: Ipv4Addr, port: u16, seed: u64) {
    let sink = traffic::tcp_sink(to_ns, SocketAddrV4::new(to, port), T).unwrap();
    let sent = traffic::tcp_send(from, SocketAddrV4::new(to, port), SIZE, seed, T).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(
        (got.bytes, got.digest),
        (SIZE, sent),
        "{from} -> {to}: 10 MB intact"
    );
}

#[test]
fn super_frames_pass_whole_or_are_cut_for_ports_without_offload() {
    if !require_root() {
        return;
    }
    let topo = topology(TOPOLOGY);
    let names = namespaces(&topo);
    let (f1, f2, g1, s1) = (&names[0], &names[1], &names[2], &names[3]);
    let sy = start(topo.clone());

    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    let f1p = ports.iter().find(|p| p.port == "f1").unwrap();
    assert!(
        f1p.offloads.contains("tso4") && f1p.offloads.contains("csum"),
        "{f1p:?}"
    );
    assert_eq!(f1p.queues, 2, "one queue per worker");
    assert_eq!(
        ports.iter().find(|p| p.port == "s1").unwrap().offloads,
        "none"
    );

    // Bridged, both ports with offload: super-frames cross whole.
    transfer(f1, f2, Ipv4Addr::new(10, 1, 0, 3), 9000, 1);
    let c = counters(&sy);
    assert!(
        port(&c, "f1").rx_gso > 0,
        "f1 sent super-frames: {:?}",
        port(&c, "f1")
    );
    assert!(
        port(&c, "f2").tx_gso > 0,
        "and f2 got them whole: {:?}",
        port(&c, "f2")
    );
    assert_eq!(port(&c, "f2").tx_segmented, 0);

    // Routed between two offload networks: still whole (TTL and MACs rewritten on
    // the super-frame's headers).
    transfer(f1, g1, Ipv4Addr::new(10, 2, 0, 2), 9001, 2);
    let c = counters(&sy);
    assert!(
        port(&c, "g1").tx_gso > 0,
        "routed super-frames: {:?}",
        port(&c, "g1")
    );

    // Routed to a network without offloads: cut in software, checksums complete.
    transfer(f1, s1, Ipv4Addr::new(10, 3, 0, 2), 9002, 3);
    let c = counters(&sy);
    let s = port(&c, "s1");
    assert!(
        s.tx_segmented > 0 && s.tx_segments > s.tx_segmented,
        "cut for s1: {s:?}"
    );
    assert_eq!(s.tx_gso, 0, "nothing whole to a port without offload");
    assert_eq!(port(&c, "s1").tx_errors, 0);

    drop(sy);
    assert_gone(&names);
}

const NAT_TOPOLOGY: &str = r#"
[switch]
prefix = "PREFIX"
workers = 2

[[network]]
name = "inside"
subnet = "172.17.0.0/16"
gateway = "172.17.0.1"
masquerade = true

[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true

[[endpoint]]
name = "a"
network = "inside"
ip = "172.17.0.2"
publish = ["8080:80/tcp"]

[[endpoint]]
name = "out"
network = "outside"
ip = "198.51.100.2"
"#;

#[test]
fn super_frames_cross_masquerade_and_published_ports_whole() {
    if !require_root() {
        return;
    }
    let topo = topology(NAT_TOPOLOGY);
    let names = namespaces(&topo);
    let (a, out) = (&names[0], &names[1]);
    let sy = start(topo.clone());

    // Out through masquerade: addresses and ports rewritten on the super-frame's
    // headers, the partial checksum fixed, the bytes intact.
    transfer(a, out, Ipv4Addr::new(198, 51, 100, 2), 9000, 4);
    let c = counters(&sy);
    assert!(port(&c, "a").rx_gso > 0, "{:?}", port(&c, "a"));
    assert!(
        port(&c, "out").tx_gso > 0,
        "masqueraded super-frames: {:?}",
        port(&c, "out")
    );
    assert_eq!(port(&c, "out").tx_segmented, 0);

    // In through the published port (198.51.100.1:8080 -> 172.17.0.2:80).
    let sink =
        traffic::tcp_sink(a, SocketAddrV4::new(Ipv4Addr::new(172, 17, 0, 2), 80), T).unwrap();
    let sent = traffic::tcp_send(
        out,
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 8080),
        SIZE,
        5,
        T,
    )
    .unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(
        (got.bytes, got.digest),
        (SIZE, sent),
        "10 MB in through the published port, intact"
    );
    let c = counters(&sy);
    assert!(port(&c, "out").rx_gso > 0, "{:?}", port(&c, "out"));
    assert!(
        port(&c, "a").tx_gso > 0,
        "DNATed super-frames: {:?}",
        port(&c, "a")
    );
    assert_eq!(port(&c, "a").tx_errors + port(&c, "out").tx_errors, 0);

    drop(sy);
    assert_gone(&names);
}

#[test]
fn parallel_flows_spread_over_both_workers() {
    if !require_root() {
        return;
    }
    let topo = topology(TOPOLOGY);
    let names = namespaces(&topo);
    let (f1, f2) = (&names[0], &names[1]);
    let sy = start(topo.clone());
    // The TAP spreads an endpoint's flows over its queues by flow hash; with 16
    // flows, the chance that all land on one of 2 queues is 2^-15.
    let threads: Vec<_> = (0..16u16)
        .map(|i| {
            let (f1, f2) = (f1.clone(), f2.clone());
            std::thread::spawn(move || {
                let to = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 3), 9100 + i);
                let sink = traffic::tcp_sink(&f2, to, T).unwrap();
                let sent = traffic::tcp_send(&f1, to, 1 << 20, u64::from(i), T).unwrap();
                let got = sink.join().unwrap().unwrap();
                assert_eq!((got.bytes, got.digest), (1 << 20, sent));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = counters(&sy);
    assert_eq!(c.workers.len(), 2);
    for w in &c.workers {
        assert!(
            w.rx_frames > 0,
            "every worker moved frames: {:?}",
            c.workers
        );
        assert!(w.cpu_secs > 0.0, "{:?}", c.workers);
    }
    drop(sy);
    assert_gone(&names);
}

#[test]
fn runs_of_small_datagrams_are_coalesced_and_arrive_intact() {
    if !require_root() {
        return;
    }
    let topo = topology(TOPOLOGY);
    let names = namespaces(&topo);
    let (f1, f2, s1) = (&names[0], &names[1], &names[3]);
    let sy = start(topo.clone());

    // Datagrams numbered in their first 4 bytes, the rest a pattern of the number,
    // lengths varying by number so a merged or split payload would show.
    fn payload(k: u32) -> Vec<u8> {
        let len = 32 + (k % 5) as usize * 8;
        let mut p: Vec<u8> = (0..len).map(|i| (i as u32 ^ k) as u8).collect();
        p[..4].copy_from_slice(&k.to_be_bytes());
        p
    }
    let send_and_check = |to_ns: &str, to: Ipv4Addr, port: u16| -> usize {
        let dst = SocketAddrV4::new(to, port);
        let rx = traffic::udp_socket(to_ns, dst).unwrap();
        // As root, beyond net.core.rmem_max: the receiver must not drop what came.
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBufForce, &(16 << 20))
            .expect("SO_RCVBUFFORCE (as root)");
        rx.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let tx = traffic::udp_socket(f1, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        // Bursts, so that batches hold runs of the flow, with pauses, so that a slow
        // (debug) build keeps up.
        const N: u32 = 20_000;
        for k in 0..N {
            let _ = tx.send_to(&payload(k), dst);
            if k % 100 == 99 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let mut seen = vec![false; N as usize];
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while let Ok(n) = rx.recv(&mut buf) {
            let k = u32::from_be_bytes(buf[..4].try_into().unwrap());
            assert!(k < N, "a datagram that was never sent: {k}");
            assert_eq!(
                &buf[..n],
                &payload(k)[..],
                "datagram {k} intact, its own length"
            );
            assert!(!seen[k as usize], "datagram {k} twice");
            seen[k as usize] = true;
            got += 1;
        }
        assert!(got > N as usize / 2, "most arrive: {got} of {N}");
        got
    };

    // Bridged to a port with UDP segmentation offload: runs go out as super-frames,
    // which the receiving kernel cuts back into the datagrams.
    send_and_check(f2, Ipv4Addr::new(10, 1, 0, 3), 7000);
    let c = counters(&sy);
    let p = port(&c, "f2");
    assert!(p.tx_coalesced > 0, "runs were coalesced: {p:?}");
    assert!(p.tx_coalesced_datagrams >= 2 * p.tx_coalesced);
    assert_eq!(p.tx_errors, 0);

    // Routed to a port without offloads: never coalesced.
    send_and_check(s1, Ipv4Addr::new(10, 3, 0, 2), 7001);
    let c = counters(&sy);
    assert_eq!(port(&c, "s1").tx_coalesced, 0);

    drop(sy);
    assert_gone(&names);
}
