//! End to end with `[switch] io = "uring"`: the TAPs read and written in batches
//! through the workers' io_uring carry the same traffic as before — a ping, 10 MB of
//! TCP intact (super-frames written whole), a burst of datagrams to one port, in
//! order — `show ports` says which I/O each port uses, and the counters add up to
//! the traffic. With `io = "syscalls"` the ports say so. Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::protocol::{PortRow, Table};
use switchyard::control::Switchyard;
use switchyard_testkit::traffic;

const T: Duration = Duration::from_secs(5);

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, n)
}

/// The `three` topology (a, b, c on one network) with `io` as given, two workers.
fn up(io: &str) -> Option<Switchyard> {
    let io = io.to_string();
    require_root().then(|| {
        start(build(three(&unique_prefix()).switch(move |sw| {
            sw.io = io.clone();
            sw.workers = 2;
        })))
    })
}

fn port<'r>(rows: &'r [PortRow], name: &str) -> &'r PortRow {
    rows.iter()
        .find(|r| r.port == name)
        .unwrap_or_else(|| panic!("no port {name} in {rows:?}"))
}

#[test]
fn traffic_through_the_ring_arrives_whole_in_order_and_counted() {
    let Some(sy) = up("uring") else { return };
    let rows: Vec<PortRow> = show(&sy, Table::Ports);
    for name in ["a", "b", "c"] {
        assert_eq!(port(&rows, name).io, "uring", "{rows:?}");
    }

    traffic::ping(&ns(&sy, "a"), ip(3), T).expect("a pings b");
    traffic::ping(&ns(&sy, "c"), ip(1), T).expect("c pings the gateway");

    // TCP: segments of one stream leave in order (the digest covers the order of
    // the bytes), super-frames included.
    let size = 10 * 1024 * 1024;
    let to = SocketAddrV4::new(ip(4), 9000);
    let sink = traffic::tcp_sink(&ns(&sy, "c"), to, Duration::from_secs(30)).unwrap();
    let sent = traffic::tcp_send(&ns(&sy, "a"), to, size, 7, Duration::from_secs(30)).unwrap();
    let got = sink.join().unwrap().unwrap();
    assert_eq!(got.bytes, size);
    assert_eq!(got.digest, sent, "the bytes arrived intact and in order");

    // A burst of numbered datagrams from a to b: all of them, in order, and b's
    // port counts each as written, none refused.
    let before = counters(&sy);
    let tx_before = before
        .ports
        .iter()
        .find(|p| p.port == "b")
        .unwrap()
        .tx_frames;
    let rx = traffic::udp_socket(&ns(&sy, "b"), SocketAddrV4::new(ip(3), 7000)).unwrap();
    rx.set_read_timeout(Some(T)).unwrap();
    let tx = traffic::udp_socket(&ns(&sy, "a"), SocketAddrV4::new(ip(2), 7001)).unwrap();
    const N: u32 = 600;
    // b reads as the datagrams come (its socket buffer holds a few hundred).
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        while seen.len() < N as usize {
            let Ok((len, _)) = rx.recv_from(&mut buf) else {
                break;
            };
            seen.push(u32::from_be_bytes(buf[..len].try_into().unwrap()));
        }
        seen
    });
    for n in 0..N {
        tx.send_to(&n.to_be_bytes(), SocketAddrV4::new(ip(3), 7000))
            .unwrap();
        if n % 50 == 49 {
            // Bursts of 50: batches for the ring, without overrunning b's socket.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let seen = reader.join().unwrap();
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "in order, none lost");
    let after = counters(&sy);
    let b = after.ports.iter().find(|p| p.port == "b").unwrap();
    assert!(
        b.tx_frames >= tx_before + u64::from(N),
        "b's port counted the datagrams it wrote: {} then {}",
        tx_before,
        b.tx_frames
    );
    for p in &after.ports {
        assert_eq!(p.tx_errors, 0, "{p:?}");
    }
    assert_accounted(&sy);
    let rows: Vec<PortRow> = show(&sy, Table::Ports);
    let a = port(&rows, "a");
    assert!(a.rx_frames >= u64::from(N), "{a:?}");
    stop(sy);
}

#[test]
fn with_syscalls_the_ports_say_so_and_still_switch() {
    let Some(sy) = up("syscalls") else { return };
    let rows: Vec<PortRow> = show(&sy, Table::Ports);
    for name in ["a", "b", "c"] {
        assert_eq!(port(&rows, name).io, "syscalls", "{rows:?}");
    }
    traffic::ping(&ns(&sy, "a"), ip(3), T).expect("a pings b");
    assert_accounted(&sy);
    stop(sy);
}
