//! `ring` — a worker's TAP writes put off to the end of its batch, then handed to the
//! kernel together: one `io_uring_enter(2)` for the batch instead of one `writev(2)`
//! per frame and port (`[switch] io = "uring"`, see [`Ring`]).
//!
//! While a batch is sent, each frame whose every egress port can take it as one ring
//! write (a TAP queue, a frame it takes whole) is readied — virtio-net header in its
//! headroom — and noted here: which port, which frame of the batch. The notes are
//! written out ([`RingIo::flush`]) once the batch is sent, before anything else is
//! sent, and before the batch's buffers are read into again. A frame flooded to
//! several ports gives several writes of the same bytes.
//!
//! Everything else goes as before, by the port's own system calls: frames to a VXLAN
//! tunnel, a host interface or a trunk's VLAN, super-frames cut into segments,
//! coalesced UDP runs, frames switchyard made, and every frame while a capture runs
//! (it records what went out, write by write). Such a frame is sent only after the
//! notes taken so far are written out, so that the frames to each port leave in the
//! order the pipeline decided them, and so that a port that writes into a frame's
//! headroom (a VLAN's tag, a tunnel's headers) never does it under a write still
//! waiting to go.
//!
//! The results come back per write, in order: a port's counters are kept from them
//! exactly as from `writev` (a refused write is a transmit error, never retried).

use super::PortStatus;
use std::io;
use std::os::fd::RawFd;
use switchyard_core::pipeline::{Frame, Pipeline};
use switchyard_os::port::uring::{Op, Ring};
use switchyard_os::port::Port;

/// A worker's ring and the writes noted for it.
pub(super) struct RingIo {
    ring: Ring,
    /// Sized once to the ring's capacity: full, it is written out before more is noted.
    pending: Vec<Pending>,
}

/// A write noted for the end of the batch.
#[derive(Clone, Copy)]
struct Pending {
    /// The port, by index.
    port: u16,
    /// The frame, by its place in the batch.
    frame: u16,
    fd: RawFd,
    /// Bytes in front of the frame's data that go with it.
    prefix: u8,
    /// The frame's length (what `tx_bytes` counts) and whether it is a super-frame.
    len: u32,
    gso: bool,
}

impl RingIo {
    pub(super) fn new(capacity: u32) -> io::Result<RingIo> {
        let ring = Ring::new(capacity)?;
        let pending = Vec::with_capacity(ring.capacity());
        Ok(RingIo { ring, pending })
    }

    /// The ring, for a port to read a batch on.
    pub(super) fn ring(&mut self) -> &mut Ring {
        &mut self.ring
    }

    /// Notes the writes of `batch[i]` to every port its verdict names, if each of
    /// them can take it as one ring write; returns false, having done nothing,
    /// otherwise (the caller sends it by the ports' own system calls, after
    /// [`RingIo::flush`]). A frame with nowhere to go is done with at once.
    pub(super) fn defer(
        &mut self,
        pipeline: &Pipeline,
        ports: &mut [Box<dyn Port>],
        status: &mut [PortStatus],
        batch: &mut [Frame],
        i: usize,
    ) -> bool {
        let f = &batch[i];
        let mut writes = 0;
        for e in pipeline.egress(f) {
            let up = status.get(e.index()).is_some_and(|s| s.down.is_none());
            if !up || ports[e.index()].ring_write(f).is_none() {
                return false;
            }
            writes += 1;
        }
        if self.pending.len() + writes > self.pending.capacity() {
            self.flush(batch, status);
            if writes > self.pending.capacity() {
                // More ports than the ring takes writes at once: sent the old way.
                return false;
            }
        }
        let f = &mut batch[i];
        let (len, gso) = (f.len() as u32, f.vnet.is_gso());
        for e in pipeline.egress(f) {
            let port = &mut ports[e.index()];
            let Some(w) = port.ring_write(f) else {
                // Cannot happen (asked above, and readying a frame for one port
                // does not turn it into a super-frame for another); sent as a
                // frame a port refused would be: counted, not lost silently.
                status[e.index()].io.tx_errors += 1;
                continue;
            };
            port.ready_ring_write(f);
            self.pending.push(Pending {
                port: e.0,
                frame: i as u16,
                fd: w.fd,
                prefix: w.prefix,
                len,
                gso,
            });
        }
        true
    }

    /// Writes out what was noted, in order, in one submission, and counts each write
    /// on its port.
    pub(super) fn flush(&mut self, batch: &[Frame], status: &mut [PortStatus]) {
        if self.pending.is_empty() {
            return;
        }
        let writes = self.pending.iter().map(|p| {
            let f = &batch[usize::from(p.frame)];
            Op::Write(p.fd, f.with_prefix(usize::from(p.prefix)))
        });
        let done = self.ring.submit(writes);
        for (p, r) in self.pending.iter().zip(done.iter()) {
            let Some(st) = status.get_mut(usize::from(p.port)) else {
                continue;
            };
            let io = &mut st.io;
            match r {
                Ok(_) => {
                    io.tx_frames += 1;
                    io.tx_bytes += u64::from(p.len);
                    if p.gso {
                        io.tx_gso += 1;
                    }
                }
                Err(_) => io.tx_errors += 1,
            }
        }
        self.pending.clear();
    }
}
