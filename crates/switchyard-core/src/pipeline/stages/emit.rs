//! Stage `emit`: where the frames switchyard makes get their buffers.
//!
//! ARP replies and requests, ICMP errors and packets released from a neighbor queue
//! leave in buffers of the [`Emitter`], allocated once when the dataplane starts. When
//! they run out within a batch, the frame is not made — nothing waits, nothing
//! allocates — and that is counted here. (Fragments are all or nothing with their
//! packet, and counted as its drop: see `ip4-fragment`.)
//!
//! No frame passes through it, so it has no drops, next stages or trace of its own.

use crate::pipeline::counters::counted;
use crate::pipeline::{Emitter, Frame, Pipeline};

pub const NAME: &str = "emit";

counted! {
    /// What emit counts.
    pub enum Event: Event in NAME {
        NoBuffer => ("emit_no_buffer", "packets switchyard could not originate for lack of a buffer"),
    }
}

impl Pipeline {
    /// A cleared frame to fill from `out`, or none (counted) when its buffers are all
    /// in use.
    pub(crate) fn emit<'o>(&mut self, out: &'o mut Emitter) -> Option<&'o mut Frame> {
        let frame = out.alloc();
        if frame.is_none() {
            self.counters.event(Event::NoBuffer);
        }
        frame
    }

    /// True if `out` has a buffer left; counts the packet that cannot be sent if not.
    pub(crate) fn emit_room(&mut self, out: &Emitter) -> bool {
        let room = out.available() > 0;
        if !room {
            self.counters.event(Event::NoBuffer);
        }
        room
    }
}
