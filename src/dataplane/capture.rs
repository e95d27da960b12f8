//! Packet capture on chosen ports: what the workers copy for `switchyard capture`.
//!
//! A capture names some ports. Every frame that crosses the TAP of one of them, in
//! either direction, is copied by the worker that moved it into a buffer of the
//! capture's [`Pool`] and offered to the capture's reader (the control socket, which
//! streams it to the client). Nothing here may slow the dataplane beyond that copy:
//!
//! * buffers come from a bounded pool, allocated once when the capture starts and
//!   recycled by the reader, so a running capture allocates nothing per packet; when
//!   the pool is empty (the reader is behind), the frame is skipped and counted, never
//!   waited for;
//! * the channel to the reader holds as many frames as the pool has buffers, so an
//!   offer that got a buffer finds room; a reader that is gone closes it and the
//!   workers drop the capture at their next offer;
//! * with no capture running, a worker pays one branch per batch (an empty list).
//!
//! What is recorded, and when:
//!
//! * **inbound** (the endpoint sent it into switchyard): the frame as read from the
//!   TAP, copied before the pipeline looks at it — the pipeline rewrites frames in
//!   place (NAT, TTL, MAC addresses), but the copy keeps the bytes that arrived. A
//!   frame the pipeline then drops is recorded only by a capture that asked for
//!   drops, with the reason; otherwise its copy goes back to the pool unrecorded.
//! * **outbound** (switchyard wrote it to the endpoint): the frame after the port
//!   took it, as written — a UDP super-frame coalesced from datagrams, a checksum
//!   completed for a port without checksum offload, the frames switchyard makes
//!   itself (ARP replies and requests, echo replies, ICMP errors). A super-frame the
//!   port had to cut in software is recorded as the segments that were written.
//!   A write the kernel refused is not recorded (nothing crossed).
//!
//! Super-frames (segmentation offload, up to 64 KiB) are recorded whole, as they
//! crossed the TAP, like tcpdump on a veth: the captured length is always the
//! original length.
//!
//! Timestamps are the worker's clock reading of the batch (one per batch, already
//! taken for the pipeline), on the dataplane's monotonic clock; the reader turns them
//! into wall-clock time with the offset the dataplane took when it started
//! ([`Handle::wall_ns`](super::Handle::wall_ns)).

use super::observe::{self, Feed, Offer, Tap};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use switchyard_core::pipeline::{Action, DropReason, Frame, PortId, Timestamp, MAX_FRAME_LEN};
use switchyard_core::wire::gso;

/// Bytes of a small buffer: a full-size Ethernet frame with two VLAN tags, and more.
pub const SMALL_BUFFER: usize = 2048;
/// Small buffers per capture.
pub const SMALL_BUFFERS: usize = 1024;
/// Bytes of a large buffer: the largest frame a worker handles (a 64 KiB super-frame).
pub const LARGE_BUFFER: usize = MAX_FRAME_LEN;
/// Large buffers per capture (for super-frames and jumbo frames).
pub const LARGE_BUFFERS: usize = 32;
/// The memory one capture's buffers take (4 MiB): allocated when it starts, never
/// grown.
pub const MAX_CAPTURE_BYTES: usize = SMALL_BUFFER * SMALL_BUFFERS + LARGE_BUFFER * LARGE_BUFFERS;

/// Which way a frame crossed a port's TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the endpoint into switchyard.
    In,
    /// From switchyard to the endpoint.
    Out,
}

/// One captured frame.
#[derive(Debug)]
pub struct Captured {
    pub port: PortId,
    pub direction: Direction,
    /// The worker's clock at the batch that moved it (see [`Pool::new`] for the
    /// origin).
    pub time: Timestamp,
    /// Why the pipeline dropped it (inbound frames of a capture with drops only).
    pub drop: Option<DropReason>,
    /// The whole frame, from the Ethernet header on. Give it back with
    /// [`Pool::put`] once read.
    pub data: Vec<u8>,
}

/// The bounded set of buffers one capture copies frames into, shared by the workers
/// and the reader. Two sizes, so that a capture of ordinary frames does not pin 64 KiB
/// per frame while super-frames still fit.
pub struct Pool {
    small: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    large: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

impl Pool {
    /// A pool of [`SMALL_BUFFERS`] and [`LARGE_BUFFERS`] buffers, allocated here (on
    /// the control thread), never on a worker.
    pub fn new() -> Arc<Pool> {
        Pool::with_buffers(SMALL_BUFFERS, LARGE_BUFFERS)
    }

    /// A pool of the given numbers of buffers (tests use small ones).
    pub fn with_buffers(small: usize, large: usize) -> Arc<Pool> {
        let p = Pool {
            small: crossbeam_channel::bounded(small.max(1)),
            large: crossbeam_channel::bounded(large.max(1)),
        };
        for _ in 0..small {
            let _ = p.small.0.try_send(Vec::with_capacity(SMALL_BUFFER));
        }
        for _ in 0..large {
            let _ = p.large.0.try_send(Vec::with_capacity(LARGE_BUFFER));
        }
        Arc::new(p)
    }

    /// How many buffers the pool holds when none is in use: the most frames that can
    /// be on their way to the reader.
    pub fn capacity(&self) -> usize {
        self.small.0.capacity().unwrap_or(0) + self.large.0.capacity().unwrap_or(0)
    }

    /// A buffer holding a copy of `bytes`, or `None` when every buffer that fits is
    /// in use. Never allocates: a buffer's capacity fits its class.
    #[inline]
    pub fn copy(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let class = if bytes.len() <= SMALL_BUFFER {
            &self.small.1
        } else {
            &self.large.1
        };
        match class.try_recv() {
            Ok(mut b) if b.capacity() >= bytes.len() => {
                b.clear();
                b.extend_from_slice(bytes);
                Some(b)
            }
            // Only buffers of the class are ever put back in it.
            Ok(_) | Err(_) => None,
        }
    }

    /// Gives a buffer back (the reader, once it has sent its bytes on).
    pub fn put(&self, buf: Vec<u8>) {
        let class = if buf.capacity() >= LARGE_BUFFER {
            &self.large.0
        } else {
            &self.small.0
        };
        // Full cannot happen (only the pool's own buffers come back); a stray buffer
        // is simply freed.
        let _ = class.try_send(buf);
    }
}

/// One capture as a worker holds it: which ports, whether drops are wanted, the pool
/// and the channel to the reader. Each worker has its own copy (made by [`clone`]).
///
/// [`clone`]: Clone::clone
pub struct CaptureFeed {
    /// Indexed by port: is it captured?
    ports: Box<[bool]>,
    drops: bool,
    pool: Arc<Pool>,
    feed: Feed<Captured>,
    /// This worker's copies of the current batch's inbound frames, by position in the
    /// batch, held until the pipeline has decided on them.
    pending: Vec<Option<Vec<u8>>>,
    /// Where a super-frame that a port cuts in software is cut again for the record;
    /// allocated the first time that happens.
    scratch: Vec<u8>,
    closed: bool,
}

impl Clone for CaptureFeed {
    fn clone(&self) -> Self {
        CaptureFeed {
            ports: self.ports.clone(),
            drops: self.drops,
            pool: self.pool.clone(),
            feed: self.feed.clone(),
            // Made on the worker when the capture is attached, never per packet.
            pending: (0..super::BATCH).map(|_| None).collect(),
            scratch: Vec::new(),
            closed: false,
        }
    }
}

/// The reader's end of a capture: the frames, and the pool to give their buffers
/// back to. Dropping it ends the capture on every worker.
pub struct CaptureTap {
    pub frames: Tap<Captured>,
    pub pool: Arc<Pool>,
}

impl CaptureTap {
    /// Frames not recorded so far because no buffer was free (the reader is behind).
    pub fn skipped(&self) -> u64 {
        self.frames.skipped()
    }
}

/// A new capture of `ports` (indices of the pipeline's ports, out of `port_count`),
/// with dropped frames when `drops`: the feed to hand to every worker, and the
/// reader's end.
pub fn capture(
    ports: &[PortId],
    port_count: usize,
    drops: bool,
    pool: Arc<Pool>,
) -> (CaptureFeed, CaptureTap) {
    let mut wanted = vec![false; port_count].into_boxed_slice();
    for p in ports {
        if let Some(w) = wanted.get_mut(p.index()) {
            *w = true;
        }
    }
    // As many places as buffers: a frame that got a buffer always finds room.
    let (feed, tap) = observe::feed(pool.capacity());
    (
        CaptureFeed {
            ports: wanted,
            drops,
            pool: pool.clone(),
            feed,
            pending: Vec::new(),
            scratch: Vec::new(),
            closed: false,
        },
        CaptureTap { frames: tap, pool },
    )
}

impl CaptureFeed {
    /// Is `port` captured?
    #[inline]
    pub fn wants(&self, port: PortId) -> bool {
        self.ports.get(port.index()).copied().unwrap_or(false)
    }

    /// True once the reader is gone; the worker then drops the feed.
    pub fn is_closed(&self) -> bool {
        self.closed || self.feed.is_closed()
    }

    fn offer(&mut self, c: Captured) {
        if self.closed {
            return;
        }
        // The channel has a place for every buffer of the pool, so a frame that got
        // a buffer is never refused for want of room (which would free the buffer
        // here, on the worker).
        if self.feed.offer(c) == Offer::Closed {
            self.closed = true;
        }
    }

    /// Copies the frames of a batch just read from `port`, before the pipeline
    /// touches them; [`CaptureFeed::inbound_decided`] records them once it has.
    pub fn inbound(&mut self, port: PortId, batch: &[Frame]) {
        if !self.wants(port) {
            return;
        }
        if self.pending.len() < batch.len() {
            // Only for a feed that was not cloned for a worker (tests).
            self.pending.resize_with(batch.len(), || None);
        }
        let (pool, feed) = (&self.pool, &self.feed);
        for (slot, f) in self.pending.iter_mut().zip(batch) {
            *slot = copy(pool, feed, f.data());
        }
    }

    /// Records the inbound frames copied by [`CaptureFeed::inbound`], now that the
    /// pipeline has decided on them: a dropped frame only if drops are wanted, with its
    /// reason.
    pub fn inbound_decided(&mut self, port: PortId, batch: &[Frame], time: Timestamp) {
        if !self.wants(port) {
            return;
        }
        for (i, f) in batch.iter().enumerate() {
            let Some(data) = self.pending.get_mut(i).and_then(Option::take) else {
                continue;
            };
            let drop = match f.action {
                Action::Drop(r) if self.drops => Some(r),
                Action::Drop(_) => {
                    self.pool.put(data);
                    continue;
                }
                _ => None,
            };
            self.offer(Captured {
                port,
                direction: Direction::In,
                time,
                drop,
                data,
            });
        }
    }

    /// Records a frame written to `port`: `sent` is what the port's `send` returned
    /// (1: the frame went whole; more: the port cut the super-frame into that many
    /// segments, which are recorded instead).
    pub fn outbound(&mut self, port: PortId, f: &Frame, sent: usize, time: Timestamp) {
        if !self.wants(port) {
            return;
        }
        if sent <= 1 {
            self.outbound_bytes(port, f.data(), time);
            return;
        }
        if self.scratch.is_empty() {
            // Once per capture and worker, and only for a port without segmentation
            // offload.
            self.scratch = vec![0u8; MAX_FRAME_LEN];
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        // The port cut the same bytes the same way; cutting again gives what it wrote.
        let _ = gso::segment(f.data(), &f.vnet, &mut scratch, |seg| {
            self.outbound_bytes(port, seg, time)
        });
        self.scratch = scratch;
    }

    fn outbound_bytes(&mut self, port: PortId, bytes: &[u8], time: Timestamp) {
        if let Some(data) = copy(&self.pool, &self.feed, bytes) {
            self.offer(Captured {
                port,
                direction: Direction::Out,
                time,
                drop: None,
                data,
            });
        }
    }
}

/// Copies `bytes` into a buffer of `pool`, or counts the frame as skipped.
#[inline]
fn copy(pool: &Pool, feed: &Feed<Captured>, bytes: &[u8]) -> Option<Vec<u8>> {
    let b = pool.copy(bytes);
    if b.is_none() {
        feed.skip(1);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::pipeline::DomainId;

    fn frame(port: u16, len: usize, action: Action) -> Frame {
        let mut f = Frame::from_bytes(PortId(port), &vec![0xab; len]);
        f.action = action;
        f
    }

    #[test]
    fn inbound_frames_are_recorded_as_they_arrived_and_drops_only_when_asked() {
        for drops in [false, true] {
            let (mut feed, tap) = capture(&[PortId(1)], 3, drops, Pool::with_buffers(8, 1));
            let mut batch = vec![
                frame(1, 60, Action::Forward(PortId(2))),
                frame(1, 70, Action::Flood(DomainId(0))),
            ];
            feed.inbound(PortId(1), &batch);
            // The pipeline rewrites the first frame and drops the second.
            batch[0].data_mut()[0] = 0;
            batch[1].action = Action::Drop(DropReason::GroupSourceMac);
            feed.inbound_decided(PortId(1), &batch, Timestamp(5));
            let first = tap.frames.try_recv().unwrap();
            assert_eq!(first.direction, Direction::In);
            assert_eq!(first.data, vec![0xab; 60], "the bytes as they arrived");
            assert_eq!(
                (first.port, first.time, first.drop),
                (PortId(1), Timestamp(5), None)
            );
            tap.pool.put(first.data);
            let second = tap.frames.try_recv();
            if drops {
                let second = second.unwrap();
                assert_eq!(second.drop, Some(DropReason::GroupSourceMac));
                assert_eq!(second.data.len(), 70);
            } else {
                assert!(second.is_none(), "a drop is left out unless asked for");
            }
            // Every buffer is back or on its way: nothing leaked.
            assert_eq!(
                tap.pool.small.1.len() + tap.frames.len(),
                8 - usize::from(drops)
            );
            assert_eq!(tap.skipped(), 0);
        }
    }

    #[test]
    fn other_ports_are_not_recorded() {
        let (mut feed, tap) = capture(&[PortId(0)], 2, true, Pool::with_buffers(4, 1));
        let f = frame(1, 60, Action::Forward(PortId(0)));
        feed.inbound(PortId(1), std::slice::from_ref(&f));
        feed.inbound_decided(PortId(1), std::slice::from_ref(&f), Timestamp(1));
        feed.outbound(PortId(1), &f, 1, Timestamp(1));
        assert!(tap.frames.try_recv().is_none());
        feed.outbound(PortId(0), &f, 1, Timestamp(2));
        let c = tap.frames.try_recv().unwrap();
        assert_eq!((c.port, c.direction), (PortId(0), Direction::Out));
    }

    #[test]
    fn an_empty_pool_skips_and_counts_without_allocating_more() {
        let (mut feed, tap) = capture(&[PortId(0)], 1, false, Pool::with_buffers(2, 1));
        let small = frame(0, 100, Action::Forward(PortId(0)));
        let big = frame(0, 30_000, Action::Forward(PortId(0)));
        for _ in 0..5 {
            feed.outbound(PortId(0), &small, 1, Timestamp(0));
        }
        feed.outbound(PortId(0), &big, 1, Timestamp(0));
        feed.outbound(PortId(0), &big, 1, Timestamp(0));
        assert_eq!(tap.frames.len(), 3, "two small buffers and one large");
        assert_eq!(tap.skipped(), 4);
        // The reader gives the buffers back: recording goes on with the same buffers.
        while let Some(c) = tap.frames.try_recv() {
            tap.pool.put(c.data);
        }
        feed.outbound(PortId(0), &big, 1, Timestamp(0));
        let c = tap.frames.try_recv().unwrap();
        assert_eq!(c.data.len(), 30_000);
        assert!(c.data.capacity() >= LARGE_BUFFER);
    }

    #[test]
    fn a_reader_that_hangs_up_closes_the_feed() {
        let (mut feed, tap) = capture(&[PortId(0)], 1, false, Pool::with_buffers(2, 1));
        drop(tap);
        let f = frame(0, 60, Action::Forward(PortId(0)));
        feed.outbound(PortId(0), &f, 1, Timestamp(0));
        assert!(feed.is_closed());
    }
}
