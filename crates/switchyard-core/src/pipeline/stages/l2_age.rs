//! Stage `l2-age`: forgetting MACs that fell silent.
//!
//! As the kernel bridge does (`ageing_time`, 300 s by default), an FDB entry not
//! refreshed by a frame from its MAC for the aging time is removed, so traffic to a
//! host that left is flooded (and finds it wherever it went) instead of being sent to
//! a port it is no longer behind. Like VPP, the table is swept by a periodic scan —
//! once a second, on the timer — not checked per packet.
//!
//! Each MAC that goes is a table event (`mac_aged`) when someone listens.
//!
//! No frame passes through it, so it has no drops, next stages or trace of its own.

use crate::pipeline::counters::counted;
use crate::pipeline::events::{Report, TableChange};
use crate::pipeline::{Pipeline, Timestamp};

pub const NAME: &str = "l2-age";

counted! {
    /// What l2-age counts.
    pub enum Event: Event in NAME {
        FdbAged => ("fdb_aged", "MACs aged out"),
    }
}

impl Pipeline {
    /// Ages the FDB once per second of `now`.
    pub(crate) fn l2_age(&mut self, now: Timestamp) {
        if now.secs() != self.fdb_aged_at {
            self.fdb_aged_at = now.secs();
            let aged = if self.events.is_on() {
                let (sh, log) = (&self.sh, &mut self.events);
                let mut aged = |(domain, mac, port)| {
                    log.push(now, TableChange::MacAged { domain, mac, port });
                };
                sh.fdb.age_reporting(now.secs(), Report::to(&mut aged))
            } else {
                self.sh.fdb.age(now.secs())
            };
            self.counters.event_n(Event::FdbAged, aged as u64);
        }
    }
}
