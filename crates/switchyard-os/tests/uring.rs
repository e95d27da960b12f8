//! A TAP queue's reads and writes through a [`Ring`] against the kernel, in a namespace
//! of the test's own (as root): the facts `port::uring` relies on — reads of an empty
//! non-blocking queue complete at once with "would block", frames are read and
//! written whole and in order, all inline (no io_uring worker thread appears), and a
//! failed write fails alone.
//!
//! The other end of the TAP is a packet socket on its device inside the namespace
//! ([`PacketPort`]): what it sends the TAP's fd reads, and what the fd writes it
//! receives.

use std::time::{Duration, Instant};
use switchyard_core::pipeline::{Frame, PortId};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_os::port::packet::{PacketPort, PacketQueue};
use switchyard_os::port::tap::{TapPort, TapQueue};
use switchyard_os::port::uring::{Op, Ring};
use switchyard_os::port::{Offloads, Port};

mod common;
use common::{require_root, TestNs};

/// The local experimental EtherType the test's frames carry (the namespace's own
/// IPv6 chatter on the device is told apart by it).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// A broadcast frame numbered `seq`, `len` bytes long.
fn frame(seq: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(len.max(60), (seq & 0xff) as u8);
    f
}

fn seq_of(data: &[u8]) -> Option<u16> {
    (data.len() >= 16 && data[12..14] == ETHERTYPE)
        .then(|| u16::from_be_bytes([data[14], data[15]]))
}

/// The names of this process's threads that io_uring runs (its io-wq workers).
fn ring_workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("iou-"))
        .count()
}

/// A TAP `ring0` with one queue, up, and a packet socket on its device.
fn tap_and_peer() -> (TapQueue, PacketQueue) {
    let tap = TapPort::create("ring0", 1, Offloads::NONE, 1500).unwrap();
    let mut r = Rtnl::new().unwrap();
    let i = r.link_index("ring0").unwrap();
    r.link_set_up(i).unwrap();
    let peer = PacketPort::open("ring0", 1)
        .unwrap()
        .into_queues()
        .remove(0);
    (tap.into_queues().remove(0), peer)
}

/// Reads the test's frames from the TAP through the ring until `want` came or a
/// short quiet time passed.
fn read_on_ring(q: &mut TapQueue, ring: &mut Ring, want: usize) -> Vec<Vec<u8>> {
    let mut batch: Vec<Frame> = (0..64).map(|_| Frame::new()).collect();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < want && start.elapsed() < Duration::from_secs(2) {
        let n = q.recv_batch_on(&mut batch, ring).unwrap();
        got.extend(
            batch[..n]
                .iter()
                .filter(|f| seq_of(f.data()).is_some())
                .map(|f| f.data().to_vec()),
        );
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    got
}

#[test]
fn a_tap_queue_reads_and_writes_batches_on_a_ring_in_order_and_inline() {
    if !require_root() {
        return;
    }
    let ns = TestNs::create("ur");
    netns::run_in_named(&ns.0, || {
        let mut ring = Ring::new(64).unwrap();
        let (mut q, mut peer) = tap_and_peer();
        assert!(q.uses_ring());
        let workers_before = ring_workers();

        // Nothing waiting: the reads complete at once, with nothing.
        let start = Instant::now();
        let mut batch: Vec<Frame> = (0..64).map(|_| Frame::new()).collect();
        while q.recv_batch_on(&mut batch, &mut ring).unwrap() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the device keeps talking"
            );
        }
        assert!(start.elapsed() < Duration::from_secs(2));

        // In from the device: 150 frames of all sizes, read back whole and in order,
        // more than a batch and more than the ring takes in one submission.
        let sent: Vec<Vec<u8>> = (0..150).map(|s| frame(s, 60 + 9 * s as usize)).collect();
        for f in &sent {
            peer.send(&mut Frame::from_bytes(PortId(0), f)).unwrap();
        }
        let got = read_on_ring(&mut q, &mut ring, sent.len());
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "frames read out of order or changed");

        // Out to the device: 200 frames in submissions of 64, in order.
        let mut frames: Vec<Frame> = (0..200)
            .map(|s| Frame::from_bytes(PortId(0), &frame(1000 + s, 60 + 7 * s as usize)))
            .collect();
        for chunk in frames.chunks_mut(64) {
            let writes: Vec<_> = chunk
                .iter_mut()
                .map(|f| {
                    let w = q.ring_write(f).expect("a plain frame is one write");
                    q.ready_ring_write(f);
                    w
                })
                .collect();
            let ops = chunk
                .iter()
                .zip(&writes)
                .map(|(f, w)| Op::Write(w.fd, w.bytes(f)));
            let done = ring.submit(ops);
            assert_eq!(done.len(), chunk.len());
            for (f, r) in chunk.iter().zip(done.iter()) {
                // The virtio-net header goes with the frame.
                assert_eq!(r.unwrap(), f.len() + 12);
            }
        }
        let mut out = Vec::new();
        let mut rx: Vec<Frame> = (0..64).map(|_| Frame::new()).collect();
        let start = Instant::now();
        while out.len() < frames.len() && start.elapsed() < Duration::from_secs(2) {
            let n = peer.recv_batch(&mut rx).unwrap();
            out.extend(rx[..n].iter().filter_map(|f| {
                seq_of(f.data())
                    .filter(|s| *s >= 1000)
                    .map(|_| f.data().to_vec())
            }));
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let want: Vec<Vec<u8>> = frames.iter().map(|f| f.data().to_vec()).collect();
        assert_eq!(out.len(), want.len());
        assert!(out == want, "frames written out of order or changed");

        // A write to a file that is not there fails alone, in its place.
        let f = Frame::from_bytes(PortId(0), &frame(2000, 60));
        let mut g = Frame::from_bytes(PortId(0), &frame(2001, 60));
        let w = q.ring_write(&g).unwrap();
        q.ready_ring_write(&mut g);
        let done = ring.submit([
            Op::Write(w.fd, w.bytes(&g)),
            Op::Write(-1, f.data()),
            Op::Write(w.fd, w.bytes(&g)),
        ]);
        let results: Vec<_> = done
            .iter()
            .map(|r| r.map_err(|e| e.raw_os_error()))
            .collect();
        assert_eq!(results, vec![Ok(72), Err(Some(libc::EBADF)), Ok(72)]);

        // All of it done inline: io_uring started no worker thread.
        assert_eq!(
            ring_workers(),
            workers_before,
            "io_uring punted work to its workers"
        );
    })
    .unwrap();
}
