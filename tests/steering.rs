//! CPU-local switching: each TAP steers a frame to the queue of the CPU that sent it,
//! and the worker that reads that queue is pinned to that CPU, so a frame is switched
//! where it was sent. And adaptive polling: an idle switch sleeps. Real TAPs in
//! namespaces of their own; needs root and two CPUs.

use switchyard_testkit::fixtures as common;

use common::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::protocol::{CountersReport, PortRow, Table};
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
use switchyard_os::port::steer;
use switchyard_testkit::traffic;

/// Two endpoints on one network, two workers, `steering` as given, adaptive polling.
fn pair(steering: &str) -> Option<Switchyard> {
    require_root().then(|| {
        let s = steering.to_string();
        start(build(
            Topology::builder()
                .prefix(unique_prefix())
                .switch(move |sw| {
                    sw.workers = 2;
                    sw.steering = s.clone();
                    sw.adaptive_poll = true;
                })
                .network(NetworkBuilder::new("n", "10.1.0.0/24").gateway("10.1.0.1"))
                .endpoint(EndpointBuilder::new("a").on("n").ip("10.1.0.2"))
                .endpoint(EndpointBuilder::new("b").on("n").ip("10.1.0.3")),
        ))
    })
}

/// The two CPUs the tests pin themselves to. The tests need two.
fn two_cpus() -> [usize; 2] {
    let cpus = steer::allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "steering needs at least two CPUs to be told apart; this process may use {cpus:?}"
    );
    [cpus[0], cpus[1]]
}

fn rx_by_worker(c: &CountersReport) -> Vec<u64> {
    let mut w: Vec<_> = c.workers.iter().map(|w| (w.worker, w.rx_frames)).collect();
    w.sort();
    w.into_iter().map(|(_, rx)| rx).collect()
}

/// Sends `n` datagrams from a to b on a thread pinned to `cpu`.
fn send_from_cpu(a: &str, cpu: usize, n: usize) {
    let from = traffic::udp_socket(a, SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 0)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            steer::pin_current_thread(&[cpu]).unwrap();
            let to = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 3), 9000);
            for i in 0..n {
                from.send_to(&(i as u32).to_be_bytes(), to).unwrap();
                // Paced, so no datagram is lost to a full queue.
                if i % 16 == 15 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
    });
}

#[test]
fn taps_are_steered_by_cpu_and_each_worker_is_pinned_to_its_cpus() {
    let Some(sy) = pair("cpu") else { return };
    let cpus = two_cpus();
    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    for p in &ports {
        assert_eq!((p.queues, p.steering.as_str()), (2, "cpu"), "{p:?}");
    }
    let c = counters(&sy);
    let mut pinned: Vec<_> = c
        .workers
        .iter()
        .map(|w| (w.worker, w.cpus.clone()))
        .collect();
    pinned.sort();
    // CPU c belongs to worker c % 2.
    let allowed = steer::allowed_cpus();
    for (w, set) in &pinned {
        assert_eq!(set, &steer::worker_cpus(*w, 2, &allowed), "{pinned:?}");
        assert!(!set.is_empty(), "{pinned:?}");
    }
    assert!(pinned.iter().any(|(_, s)| s.contains(&cpus[0])));
    stop(sy);
}

#[test]
fn a_frame_is_switched_by_the_worker_on_the_cpu_that_sent_it() {
    let Some(sy) = pair("cpu") else { return };
    let cpus = two_cpus();
    let (a, b) = (ns(&sy, "a"), ns(&sy, "b"));
    let _sink =
        traffic::udp_socket(&b, SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 3), 9000)).unwrap();
    // Resolve b first, so the datagrams below are all that a sends.
    traffic::ping(&a, Ipv4Addr::new(10, 1, 0, 3), Duration::from_secs(5)).unwrap();
    for cpu in cpus {
        let worker = cpu % 2;
        let before = rx_by_worker(&counters(&sy));
        send_from_cpu(&a, cpu, 400);
        let mut after = before.clone();
        wait_until(Duration::from_secs(5), "the datagrams are switched", || {
            after = rx_by_worker(&counters(&sy));
            after.iter().sum::<u64>() >= before.iter().sum::<u64>() + 400
        });
        let got: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
        assert!(
            got[worker] >= 400 && got[1 - worker] < 40,
            "sent from CPU {cpu}: frames read by each worker {got:?}"
        );
    }
    stop(sy);
}

#[test]
fn with_hash_steering_the_workers_are_not_pinned() {
    let Some(sy) = pair("hash") else { return };
    let ports: Vec<PortRow> = show(&sy, Table::Ports);
    assert!(ports.iter().all(|p| p.steering == "hash"), "{ports:?}");
    let c = counters(&sy);
    assert!(
        c.workers.iter().all(|w| w.cpus.is_empty()),
        "{:?}",
        c.workers
    );
    let a = ns(&sy, "a");
    traffic::ping(&a, Ipv4Addr::new(10, 1, 0, 3), Duration::from_secs(5)).unwrap();
    stop(sy);
}

#[test]
fn an_idle_switch_sleeps() {
    let Some(sy) = pair("cpu") else { return };
    let a = ns(&sy, "a");
    // Request/response traffic first, which makes the workers poll between packets.
    for _ in 0..200 {
        traffic::ping(&a, Ipv4Addr::new(10, 1, 0, 3), Duration::from_secs(5)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let cpu = |c: &CountersReport| c.workers.iter().map(|w| w.cpu_secs).sum::<f64>();
    let before = cpu(&counters(&sy));
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu(&counters(&sy)) - before;
    // Timers run every 100 ms; polling through the two seconds would be 4 CPU-s.
    assert!(
        spent < 0.05,
        "two idle workers used {spent:.3} CPU-s in 2 s"
    );
    stop(sy);
}
