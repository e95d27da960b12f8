//! Segmentation offload with real TAPs: TCP super-frames cross switchyard whole
//! between ports that take them (bridged, routed, and through NAT), and are cut in
//! software for a port that does not; runs of small UDP datagrams leave as one
//! super-frame where the port takes it. The bytes arrive intact either way. Each
//! test starts a switch of its own. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::protocol::{CountersReport, PortRow, Table};
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_core::wire::MacAddr;
use switchyard_testkit::traffic;

const T: Duration = Duration::from_secs(30);
const SIZE: u64 = 10 * 1024 * 1024;

/// Two networks with offloads and one without, all joined: f1 and f2 on fast
/// (bridged to each other), g1 on fast2 and s1 on slow (routed from fast).
fn offload_networks() -> Option<Switchyard> {
    require_root().then(|| {
        start(build(
            Topology::builder()
                .prefix(unique_prefix())
                .switch(|s| s.workers = 2)
                .network(NetworkBuilder::new("fast", "10.1.0.0/24").gateway("10.1.0.1"))
                .network(NetworkBuilder::new("fast2", "10.2.0.0/24").gateway("10.2.0.1"))
                .network(
                    NetworkBuilder::new("slow", "10.3.0.0/24")
                        .gateway("10.3.0.1")
                        .offloads(false),
                )
                .allow("fast", "fast2")
                .allow("fast", "slow")
                .endpoint(EndpointBuilder::new("f1").on("fast").ip("10.1.0.2"))
                .endpoint(EndpointBuilder::new("f2").on("fast").ip("10.1.0.3"))
                .endpoint(EndpointBuilder::new("g1").on("fast2").ip("10.2.0.2"))
                .endpoint(EndpointBuilder::new("s1").on("slow").ip("10.3.0.2")),
        ))
    })
}

/// The `nat` topology of the fixtures with two workers: a inside, publishing
/// 8080 -> 80; outside beyond the uplink.
fn nat_two_workers() -> Option<Switchyard> {
    require_root().then(|| start(build(nat(&unique_prefix()).switch(|s| s.workers = 2))))
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
fn ports_show_their_offloads_and_a_queue_per_worker() {
    let Some(sy) = offload_networks() else { return };
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
    stop(sy);
}

#[test]
fn bridged_super_frames_cross_whole() {
    let Some(sy) = offload_networks() else { return };
    // Both ports take offloads.
    transfer(
        &ns(&sy, "f1"),
        &ns(&sy, "f2"),
        Ipv4Addr::new(10, 1, 0, 3),
        9000,
        1,
    );
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
    // What the kernel hands over always passes the offload header checks.
    assert_eq!(drops(&sy, "bad_vnet_header"), 0, "{c:?}");
    stop(sy);
}

#[test]
fn routed_super_frames_cross_whole_between_networks_with_offloads() {
    let Some(sy) = offload_networks() else { return };
    // TTL and MACs are rewritten on the super-frame's headers.
    transfer(
        &ns(&sy, "f1"),
        &ns(&sy, "g1"),
        Ipv4Addr::new(10, 2, 0, 2),
        9001,
        2,
    );
    let c = counters(&sy);
    assert!(
        port(&c, "g1").tx_gso > 0,
        "routed super-frames: {:?}",
        port(&c, "g1")
    );
    stop(sy);
}

#[test]
fn super_frames_are_cut_in_software_for_a_port_without_offloads() {
    let Some(sy) = offload_networks() else { return };
    // Routed to the network without offloads: cut, checksums complete.
    transfer(
        &ns(&sy, "f1"),
        &ns(&sy, "s1"),
        Ipv4Addr::new(10, 3, 0, 2),
        9002,
        3,
    );
    let c = counters(&sy);
    let s = port(&c, "s1");
    assert!(
        s.tx_segmented > 0 && s.tx_segments > s.tx_segmented,
        "cut for s1: {s:?}"
    );
    assert_eq!(s.tx_gso, 0, "nothing whole to a port without offload");
    assert_eq!(port(&c, "s1").tx_errors, 0);
    assert_eq!(drops(&sy, "bad_vnet_header"), 0, "{c:?}");
    stop(sy);
}

#[test]
fn super_frames_cross_masquerade_whole() {
    let Some(sy) = nat_two_workers() else { return };
    // Addresses and ports rewritten on the super-frame's headers, the partial
    // checksum fixed, the bytes intact.
    transfer(
        &ns(&sy, "a"),
        &ns(&sy, "outside"),
        Ipv4Addr::new(198, 51, 100, 2),
        9000,
        4,
    );
    let c = counters(&sy);
    assert!(port(&c, "a").rx_gso > 0, "{:?}", port(&c, "a"));
    assert!(
        port(&c, "outside").tx_gso > 0,
        "masqueraded super-frames: {:?}",
        port(&c, "outside")
    );
    assert_eq!(port(&c, "outside").tx_segmented, 0);
    stop(sy);
}

#[test]
fn super_frames_cross_a_published_port_whole() {
    let Some(sy) = nat_two_workers() else { return };
    // 198.51.100.1:8080 -> 172.17.0.2:80.
    let a = ns(&sy, "a");
    let sink =
        traffic::tcp_sink(&a, SocketAddrV4::new(Ipv4Addr::new(172, 17, 0, 2), 80), T).unwrap();
    let sent = traffic::tcp_send(
        &ns(&sy, "outside"),
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
    assert!(port(&c, "outside").rx_gso > 0, "{:?}", port(&c, "outside"));
    assert!(
        port(&c, "a").tx_gso > 0,
        "DNATed super-frames: {:?}",
        port(&c, "a")
    );
    assert_eq!(port(&c, "a").tx_errors + port(&c, "outside").tx_errors, 0);
    stop(sy);
}

#[test]
fn parallel_flows_spread_over_both_workers() {
    let Some(sy) = offload_networks() else { return };
    let (f1, f2) = (ns(&sy, "f1"), ns(&sy, "f2"));
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
    stop(sy);
}

/// Datagram `k` of a run: numbered in its first 4 bytes, the rest a pattern of the
/// number, its length varying with the number so a merged or split payload would show.
fn datagram(k: u32) -> Vec<u8> {
    let len = 32 + (k % 5) as usize * 8;
    let mut p: Vec<u8> = (0..len).map(|i| (i as u32 ^ k) as u8).collect();
    p[..4].copy_from_slice(&k.to_be_bytes());
    p
}

/// Sends a run of 20000 small datagrams from f1 to `to` (received in `to_ns`) and
/// checks that each arrives at most once, intact and its own length, and most arrive.
fn send_run_and_check(f1: &str, to_ns: &str, to: Ipv4Addr, port: u16) {
    let dst = SocketAddrV4::new(to, port);
    let rx = traffic::udp_socket(to_ns, dst).unwrap();
    // As root, beyond net.core.rmem_max: the receiver must not drop what came.
    nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBufForce, &(16 << 20))
        .expect("SO_RCVBUFFORCE (as root)");
    // The run is over when nothing more comes for this long.
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tx = traffic::udp_socket(f1, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    // Bursts, so that batches hold runs of the flow, with pauses, so that a slow
    // (debug) build keeps up: the pacing is part of the traffic, not a wait.
    const N: u32 = 20_000;
    for k in 0..N {
        let _ = tx.send_to(&datagram(k), dst);
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
            &datagram(k)[..],
            "datagram {k} intact, its own length"
        );
        assert!(!seen[k as usize], "datagram {k} twice");
        seen[k as usize] = true;
        got += 1;
    }
    assert!(got > N as usize / 2, "most arrive: {got} of {N}");
}

#[test]
fn runs_of_small_datagrams_are_coalesced_for_a_port_with_uso_and_arrive_intact() {
    let Some(sy) = offload_networks() else { return };
    // Bridged to a port with UDP segmentation offload: runs go out as super-frames,
    // which the receiving kernel cuts back into the datagrams.
    send_run_and_check(
        &ns(&sy, "f1"),
        &ns(&sy, "f2"),
        Ipv4Addr::new(10, 1, 0, 3),
        7000,
    );
    let c = counters(&sy);
    let p = port(&c, "f2");
    assert!(p.tx_coalesced > 0, "runs were coalesced: {p:?}");
    assert!(p.tx_coalesced_datagrams >= 2 * p.tx_coalesced);
    assert_eq!(p.tx_errors, 0);
    stop(sy);
}

#[test]
fn small_datagrams_to_a_port_without_offloads_are_never_coalesced_and_arrive_intact() {
    let Some(sy) = offload_networks() else { return };
    send_run_and_check(
        &ns(&sy, "f1"),
        &ns(&sy, "s1"),
        Ipv4Addr::new(10, 3, 0, 2),
        7001,
    );
    let c = counters(&sy);
    assert_eq!(port(&c, "s1").tx_coalesced, 0);
    stop(sy);
}

/// A TCP segment of `payload` bytes from f1 (10.1.0.2) to s1 (10.3.0.2), sent to
/// fast's gateway, with its checksum left partial (as with checksum offload).
fn tcp_to_slow(payload: usize) -> Vec<u8> {
    let (src, dst) = (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 3, 0, 2));
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(
        MacAddr::from_ipv4(src).0,
        MacAddr::from_ipv4(Ipv4Addr::new(10, 1, 0, 1)).0,
    )
    .ipv4(src.octets(), dst.octets(), 64)
    .tcp(40000, 9999, 1, 64000)
    .write(&mut v, &vec![0x5a; payload])
    .unwrap();
    v
}

/// The virtio-net header of a TCPv4 super-frame with segment size `gso_size`.
fn tso_header(gso_size: u16) -> [u8; 10] {
    let mut h = [0u8; 10];
    h[0] = 1; // NEEDS_CSUM
    h[1] = 1; // GSO_TCPV4
    h[2..4].copy_from_slice(&54u16.to_ne_bytes()); // hdr_len
    h[4..6].copy_from_slice(&gso_size.to_ne_bytes());
    h[6..8].copy_from_slice(&34u16.to_ne_bytes()); // csum_start: the TCP header
    h[8..10].copy_from_slice(&16u16.to_ne_bytes()); // csum_offset: its checksum
    h
}

#[test]
fn a_super_frame_with_an_impossible_segment_size_is_dropped_not_cut_into_thousands() {
    let Some(sy) = offload_networks() else { return };
    // s1 answers ARP first, so the test is about the super-frame and not resolution.
    traffic::ping(&ns(&sy, "f1"), Ipv4Addr::new(10, 3, 0, 2), T).expect("f1 pings s1");
    let f1 = ns(&sy, "f1");
    // A genuine one (1448-byte segments) is routed to s1, which has no offloads: cut.
    traffic::send_with_vnet(&f1, "eth0", tso_header(1448), &tcp_to_slow(30_000)).unwrap();
    wait_until(T, "the genuine super-frame to be cut for s1", || {
        port(&counters(&sy), "s1").tx_segmented >= 1
    });
    let before = port(&counters(&sy), "s1").tx_segments;
    // Segment size 1: 30 000 one-byte segments for s1, were it believed.
    traffic::send_with_vnet(&f1, "eth0", tso_header(1), &tcp_to_slow(30_000)).unwrap();
    wait_until(T, "the impossible super-frame to be dropped", || {
        drops(&sy, "bad_vnet_header") >= 1
    });
    let c = counters(&sy);
    assert!(
        port(&c, "s1").tx_segments - before < 100,
        "s1 was sent {} segments",
        port(&c, "s1").tx_segments - before
    );
    assert_accounted(&sy);
    stop(sy);
}
