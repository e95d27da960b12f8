//! Stage `l2-learn`: remember which port a source MAC lives behind.
//!
//! Learning happens before forwarding, so the very frame that teaches the FDB is
//! forwarded by it too (VPP does the same). A MAC already known on another port
//! *moves* — a host that migrated, or a loop if it happens a lot, hence the counter.
//! When the FDB is full nothing new is learned; traffic to unknown MACs is flooded
//! instead, which is slower but never wrong. Entries age out in `l2-age`.
//!
//! Next: `l2-forward`, always. Trace:
//! `l2-learn: learned 02:42:ac:11:00:02 on port a (bridge default)`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{Frame, Learn, Pipeline};
use crate::wire::MacAddr;
use std::fmt;

pub const NAME: &str = "l2-learn";

counted! {
    /// What l2-learn counts.
    pub enum Event: Event in NAME {
        FdbLearned => ("fdb_learned", "MACs learned"),
        FdbMoved => ("fdb_moved", "MAC moves (a known MAC seen on another port)"),
        FdbLimit => ("fdb_limit", "MACs not learned because the FDB is full"),
    }
}

/// Where a frame goes from l2-learn: learning never stops a frame.
pub enum Next {
    L2Forward,
}

/// What l2-learn says about a frame's source.
pub enum Trace<'a> {
    Learned {
        mac: MacAddr,
        port: &'a str,
        bridge: &'a str,
    },
    Refreshed {
        mac: MacAddr,
        port: &'a str,
        bridge: &'a str,
    },
    Moved {
        mac: MacAddr,
        from: &'a str,
        to: &'a str,
        bridge: &'a str,
    },
    TableFull {
        mac: MacAddr,
        capacity: usize,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Learned { mac, port, bridge } => {
                write!(f, "learned {mac} on port {port} (bridge {bridge})")
            }
            Trace::Refreshed { mac, port, bridge } => write!(
                f,
                "{mac} already known on port {port} (bridge {bridge}): age reset"
            ),
            Trace::Moved {
                mac,
                from,
                to,
                bridge,
            } => write!(
                f,
                "{mac} moved from port {from} to port {to} (bridge {bridge})"
            ),
            Trace::TableFull { mac, capacity } => {
                write!(f, "FDB full ({capacity} entries): {mac} not learned")
            }
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn l2_learn(&mut self, f: &Frame, l2: &L2) -> Next {
        let result = self
            .sh
            .fdb
            .learn(l2.domain, l2.src, f.ingress, self.now.secs());
        match result {
            Learn::New => self.counters.event(Event::FdbLearned),
            Learn::Refreshed => {}
            Learn::Moved { .. } => self.counters.event(Event::FdbMoved),
            Learn::TableFull => self.counters.event(Event::FdbLimit),
        }
        trace!(self, f, {
            let (mac, port) = (l2.src, self.port_name(f.ingress));
            let bridge = self.sh.domains[l2.domain.index()].spec.name.as_str();
            match result {
                Learn::New => Trace::Learned { mac, port, bridge },
                Learn::Refreshed => Trace::Refreshed { mac, port, bridge },
                Learn::Moved { from } => Trace::Moved {
                    mac,
                    from: self.port_name(from),
                    to: port,
                    bridge,
                },
                Learn::TableFull => Trace::TableFull {
                    mac,
                    capacity: self.sh.fdb.capacity(),
                },
            }
        });
        Next::L2Forward
    }
}
