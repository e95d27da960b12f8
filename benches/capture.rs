//! What a running capture costs a worker per frame, without I/O.
//!
//! `cargo bench --bench capture` — each benchmark records a batch of frames (64, or 32
//! super-frames: as many as a capture has large buffers) the way
//! a worker does for a captured port (inbound: copied before the pipeline, then
//! offered once decided; outbound: copied and offered after the write), and the reader
//! takes them and gives the buffers back, as the control thread does (without the
//! base64 and the socket, which are the control thread's cost, not the worker's).
//! `idle` is the same batch with a capture of another port: the cost of a capture
//! that does not concern the frame. Throughput lines (elements/s) are frames/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use switchyard::dataplane::capture::{capture, Pool, LARGE_BUFFERS};
use switchyard_core::pipeline::{Action, Frame, PortId, Timestamp};

const BATCH: usize = 64;

fn batch(len: usize, n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let mut f = Frame::from_bytes(PortId(0), &vec![i as u8; len]);
            f.action = Action::Forward(PortId(1));
            f
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("capture");
    // Super-frames in batches of as many as the pool has large buffers.
    for (name, len, n) in [
        ("98B", 98, BATCH),
        ("1514B", 1514, BATCH),
        ("64KiB", 65_000, LARGE_BUFFERS),
    ] {
        g.throughput(Throughput::Elements(n as u64));
        let frames = batch(len, n);
        let (mut feed, tap) = capture(&[PortId(0), PortId(1)], 2, false, Pool::new());
        g.bench_function(format!("inbound_{name}"), |b| {
            b.iter(|| {
                feed.inbound(PortId(0), &frames);
                feed.inbound_decided(PortId(0), &frames, Timestamp(1));
                while let Some(c) = tap.frames.try_recv() {
                    tap.pool.put(black_box(c).data);
                }
            })
        });
        g.bench_function(format!("outbound_{name}"), |b| {
            b.iter(|| {
                for f in &frames {
                    feed.outbound(PortId(1), f, 1, Timestamp(1));
                }
                while let Some(c) = tap.frames.try_recv() {
                    tap.pool.put(black_box(c).data);
                }
            })
        });
        assert_eq!(tap.skipped(), 0, "the bench recorded every frame");
    }
    // A capture of port 5 while frames cross ports 0 and 1.
    g.throughput(Throughput::Elements(BATCH as u64));
    let frames = batch(98, BATCH);
    let (mut feed, _tap) = capture(&[PortId(5)], 8, false, Pool::new());
    g.bench_function("idle_98B", |b| {
        b.iter(|| {
            feed.inbound(PortId(0), black_box(&frames));
            feed.inbound_decided(PortId(0), &frames, Timestamp(1));
            for f in &frames {
                feed.outbound(PortId(1), black_box(f), 1, Timestamp(1));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
