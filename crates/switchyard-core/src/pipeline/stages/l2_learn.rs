//! Stage `l2-learn`: remember which port a source MAC lives behind.
//!
//! Learning happens before forwarding, so the very frame that teaches the FDB is
//! forwarded by it too (VPP does the same). A MAC already known on another port
//! *moves* — a host that migrated, or a loop if it happens a lot, hence the counter.
//! When the FDB is full nothing new is learned; traffic to unknown MACs is flooded
//! instead, which is slower but never wrong. Entries age out in `l2-age`.
//!
//! Each network has its share of the FDB (`fdb_max` per network, by default an even
//! split of the global one), so a MAC flood in one network stops learning in that
//! network only. On an L3 network and one with port security, each endpoint's own
//! MAC is bound to its port from the start (pinned): another port sending with it
//! does not move it.
//!
//! Every outcome but a refresh is a table event (learned, moved, refused) when
//! someone listens.
//!
//! Next: `l2-forward`, always. Trace:
//! `l2-learn: learned 02:42:ac:11:00:02 on port a (bridge default)`

use crate::pipeline::counters::counted;
use crate::pipeline::events::{MacRefusal, TableChange};
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{Frame, Learn, Pipeline};
use crate::wire::MacAddr;
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "l2-learn";

counted! {
    /// What l2-learn counts.
    pub enum Event: Event in NAME {
        FdbLearned => ("fdb_learned", "MACs learned"),
        FdbMoved => ("fdb_moved", "MAC moves (a known MAC seen on another port)"),
        FdbLimit => ("fdb_limit", "MACs not learned because the FDB is full"),
        FdbNetworkLimit => ("fdb_network_limit", "MACs not learned because the network's share of the FDB is full"),
        FdbMoveRefused => ("fdb_move_refused", "an endpoint's own MAC seen on another port: not moved"),
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
        vtep: Via,
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
        vtep: Via,
    },
    TableFull {
        mac: MacAddr,
        capacity: usize,
    },
    NetworkFull {
        mac: MacAddr,
        capacity: usize,
        bridge: &'a str,
    },
    Pinned {
        mac: MacAddr,
        owner: &'a str,
        port: &'a str,
    },
    /// What-if: the entry learning would add, refresh (`known`) or move (`from`).
    Would {
        mac: MacAddr,
        port: &'a str,
        bridge: &'a str,
        from: Option<&'a str>,
        known: bool,
    },
}

/// The remote VTEP a MAC is behind, for a trace line: nothing for a local port.
pub struct Via(pub Option<Ipv4Addr>);

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, " behind VTEP {v}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Learned {
                mac,
                port,
                bridge,
                vtep,
            } => {
                write!(f, "learned {mac} on port {port}{vtep} (bridge {bridge})")
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
                vtep,
            } => write!(
                f,
                "{mac} moved from port {from} to port {to}{vtep} (bridge {bridge})"
            ),
            Trace::TableFull { mac, capacity } => {
                write!(f, "FDB full ({capacity} entries): {mac} not learned")
            }
            Trace::NetworkFull {
                mac,
                capacity,
                bridge,
            } => write!(
                f,
                "bridge {bridge} has its share of the FDB ({capacity} entries): {mac} not learned"
            ),
            Trace::Would {
                mac,
                port,
                bridge,
                from,
                known,
            } => match (from, known) {
                (Some(from), _) => write!(
                    f,
                    "{mac} would move from port {from} to port {port} (bridge {bridge})"
                ),
                (None, true) => write!(
                    f,
                    "{mac} already known on port {port} (bridge {bridge}): its age would be reset"
                ),
                (None, false) => write!(f, "would learn {mac} on port {port} (bridge {bridge})"),
            },
            Trace::Pinned { mac, owner, port } => write!(
                f,
                "{mac} is the MAC of the endpoint on port {owner}: not moved to port {port}"
            ),
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn l2_learn<const DRY: bool>(&mut self, f: &Frame, l2: &L2) -> Next {
        if DRY {
            let result = self
                .sh
                .fdb
                .would_learn(l2.domain, l2.src, f.ingress, f.tunnel);
            if matches!(result, Learn::New | Learn::Refreshed | Learn::Moved { .. }) {
                trace!(self, f, {
                    let (mac, port) = (l2.src, self.port_name(f.ingress));
                    let bridge = self.sh.domains[l2.domain.index()].spec.name.as_str();
                    let from = match result {
                        Learn::Moved { from } => Some(self.port_name(from)),
                        _ => None,
                    };
                    Trace::Would {
                        mac,
                        port,
                        bridge,
                        from,
                        known: result == Learn::Refreshed,
                    }
                });
                return Next::L2Forward;
            }
            return self.l2_learn_traced(f, l2, result);
        }
        // Through this worker's cache: the same result, without the shard lock when
        // the table would change nothing (see `fdb_cache.rs`).
        let (result, answered) = self.fdb_cache.learn(
            &self.sh.fdb,
            l2.domain,
            l2.src,
            f.ingress,
            f.tunnel,
            self.now.secs(),
        );
        self.counters
            .event(crate::pipeline::fdb_cache::cache_event(answered));
        match result {
            Learn::New => self.counters.event(Event::FdbLearned),
            Learn::Refreshed => {}
            Learn::Moved { .. } => self.counters.event(Event::FdbMoved),
            Learn::TableFull => self.counters.event(Event::FdbLimit),
            Learn::DomainFull => self.counters.event(Event::FdbNetworkLimit),
            Learn::Pinned { .. } => self.counters.event(Event::FdbMoveRefused),
        }
        if result != Learn::Refreshed {
            self.event(|_| {
                let (domain, mac, port) = (l2.domain, l2.src, f.ingress);
                let refused = |why| TableChange::MacRefused {
                    domain,
                    mac,
                    port,
                    why,
                };
                match result {
                    Learn::New | Learn::Refreshed => TableChange::MacLearned { domain, mac, port },
                    Learn::Moved { from } => TableChange::MacMoved {
                        domain,
                        mac,
                        from,
                        to: port,
                    },
                    Learn::TableFull => refused(MacRefusal::TableFull),
                    Learn::DomainFull => refused(MacRefusal::NetworkFull),
                    Learn::Pinned { owner } => refused(MacRefusal::Pinned { owner }),
                }
            });
        }
        self.l2_learn_traced(f, l2, result)
    }

    /// The trace line of what learning did (or, in a what-if, would not do).
    #[inline]
    fn l2_learn_traced(&mut self, f: &Frame, l2: &L2, result: Learn) -> Next {
        trace!(self, f, {
            let (mac, port) = (l2.src, self.port_name(f.ingress));
            let bridge = self.sh.domains[l2.domain.index()].spec.name.as_str();
            match result {
                Learn::New => Trace::Learned {
                    mac,
                    port,
                    bridge,
                    vtep: Via(f.tunnel),
                },
                Learn::Refreshed => Trace::Refreshed { mac, port, bridge },
                Learn::Moved { from } => Trace::Moved {
                    mac,
                    from: self.port_name(from),
                    to: port,
                    bridge,
                    vtep: Via(f.tunnel),
                },
                Learn::TableFull => Trace::TableFull {
                    mac,
                    capacity: self.sh.fdb.capacity(),
                },
                Learn::DomainFull => Trace::NetworkFull {
                    mac,
                    capacity: self.sh.fdb.domain_capacity(l2.domain),
                    bridge,
                },
                Learn::Pinned { owner } => Trace::Pinned {
                    mac,
                    owner: self.port_name(owner),
                    port,
                },
            }
        });
        Next::L2Forward
    }
}
