//! Stage `ct-gc`: reclaiming expired connections.
//!
//! An expired conntrack entry is never matched (lookups check the time), but its slot
//! is only reused once it is reclaimed. The timer scans a tenth of the table per tick,
//! so all of it every second at the usual tick of 100 ms — bounded work per tick,
//! whatever the table's size, as netfilter's garbage collection worker does.
//!
//! No frame passes through it, so it has no drops, next stages or trace of its own.

use crate::pipeline::counters::counted;
use crate::pipeline::events::{Report, TableChange};
use crate::pipeline::{Pipeline, Timestamp};

pub const NAME: &str = "ct-gc";

counted! {
    /// What ct-gc counts.
    pub enum Event: Event in NAME {
        CtExpired => ("ct_expired", "connections expired"),
    }
}

/// Entries looked at per tick at least, however small the table.
const MIN_SCAN: usize = 64;

impl Pipeline {
    pub(crate) fn ct_gc(&mut self, now: Timestamp) {
        let budget = (self.sh.conntrack.capacity() / 10).max(MIN_SCAN);
        let expired = if self.events.is_on() {
            let (sh, log) = (&self.sh, &mut self.events);
            let mut put = |c| log.push(now, TableChange::from(c));
            sh.conntrack.gc_reporting(now, budget, Report::to(&mut put))
        } else {
            self.sh.conntrack.gc(now, budget)
        };
        self.counters.event_n(Event::CtExpired, expired as u64);
    }
}
