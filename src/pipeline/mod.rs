//! `pipeline` — the switching logic, and nothing else.
//!
//! Given a batch of frames, each tagged with the port it came in on, and the current
//! time, the pipeline decides the fate of each: forward it to a port, flood it over its
//! bridge domain, answer it (switchyard's own ARP and ping), or drop it with a named
//! reason. It performs no system calls, starts no threads and reads no clock — time is
//! passed in — so every behaviour here is tested with synthetic frames and injected
//! time, fuzzed, and benchmarked without root.
//!
//! A frame walks these stages, one module each (after VPP's graph nodes; each module
//! documents its drop reasons and trace lines):
//!
//! ```text
//! ethernet-input ─▶ l2-learn ─▶ l2-forward ─┬─▶ port (known unicast)
//!   validate          FDB         │         ├─▶ l2-flood (broadcast, multicast, unknown)
//!                                 │         │     └─▶ arp-input (a broadcast ARP may be for us)
//!                                 │         └─▶ l3-input (to the gateway MAC)
//!                                 │               ├─▶ arp-input ─▶ reply
//!                                 │               └─▶ ip4-input ─▶ ip4-local ─▶ echo reply
//! ```
//!
//! Each frame runs through the stages to completion before the next one starts; the
//! batching that pays for system calls happens in the dataplane around this call.

mod arp;
mod counters;
mod ethernet_input;
mod fdb;
mod frame;
pub mod fuzz;
mod ip4;
mod l2_forward;
mod l2_learn;
mod trace;

pub use counters::{Counters, DropReason, Event, PortCounters};
pub use fdb::{Fdb, FdbEntry, Learn};
pub use frame::{Egress, Emitter, Frame, BUFFER_LEN, HEADROOM, MAX_FRAME_LEN};
pub use trace::{TraceRecord, Tracer};

use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// Index of a port (one TAP queue set: one endpoint interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    /// Not a port: switchyard itself, as the source of the frames it originates.
    pub const LOCAL: PortId = PortId(u16::MAX);

    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Index of a bridge domain (one network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u16);

impl DomainId {
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A point on the pipeline's monotonic clock, in nanoseconds from an arbitrary origin.
/// The dataplane reads the clock once per batch; tests make times up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_secs(s: u64) -> Timestamp {
        Timestamp(s.saturating_mul(1_000_000_000))
    }

    pub fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    /// Whole seconds, the resolution tables age at.
    #[inline]
    pub fn secs(self) -> u32 {
        (self.0 / 1_000_000_000) as u32
    }
}

/// What happens to a frame. Set by the pipeline, carried out by the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Dropped, for this reason.
    Drop(DropReason),
    /// Taken by switchyard's own stack; nothing goes out.
    Consume,
    /// Taken by switchyard, and the buffer now holds its answer (an ARP reply, an echo
    /// reply), to be sent back out of the ingress port.
    Reply,
    /// Sent to one port.
    Forward(PortId),
    /// Sent to every port of the domain except the ingress port (split horizon).
    Flood(DomainId),
}

/// switchyard's own address on a network: it answers ARP and ping there and, from L3
/// on, routes through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySpec {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: MacAddr,
}

/// A bridge domain as the pipeline needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    /// IP MTU of every port in the domain.
    pub mtu: u16,
    pub gateway: Option<GatewaySpec>,
}

/// A port as the pipeline needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Display name: the endpoint (`web`), or endpoint/interface beyond eth0 (`multi/eth1`).
    pub name: String,
    pub domain: DomainId,
}

/// Everything the pipeline is built from; the topology layer produces it from the
/// config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub domains: Vec<DomainSpec>,
    pub ports: Vec<PortSpec>,
    pub fdb_max: usize,
    pub fdb_aging_secs: u32,
}

/// A spec that does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("port {port} refers to bridge domain {domain}, but there are only {count}")]
    NoSuchDomain {
        port: String,
        domain: u16,
        count: usize,
    },
    #[error("too many ports ({0}); at most {max}", max = u16::MAX - 1)]
    TooManyPorts(usize),
    #[error("too many bridge domains ({0})")]
    TooManyDomains(usize),
    #[error("fdb_max must be at least 1")]
    EmptyFdb,
}

/// A bridge domain with its member ports.
#[derive(Debug)]
struct Domain {
    spec: DomainSpec,
    ports: Vec<PortId>,
}

/// The switch: its tables, counters and trace, and the stages that use them.
pub struct Pipeline {
    ports: Vec<PortSpec>,
    domains: Vec<Domain>,
    fdb: Fdb,
    counters: Counters,
    tracer: Tracer,
}

impl Pipeline {
    pub fn new(spec: Spec) -> Result<Pipeline, SpecError> {
        if spec.ports.len() >= usize::from(u16::MAX) {
            return Err(SpecError::TooManyPorts(spec.ports.len()));
        }
        if spec.domains.len() > usize::from(u16::MAX) {
            return Err(SpecError::TooManyDomains(spec.domains.len()));
        }
        if spec.fdb_max == 0 {
            return Err(SpecError::EmptyFdb);
        }
        let mut domains: Vec<Domain> = spec
            .domains
            .into_iter()
            .map(|spec| Domain {
                spec,
                ports: Vec::new(),
            })
            .collect();
        for (i, p) in spec.ports.iter().enumerate() {
            let count = domains.len();
            let d = domains
                .get_mut(p.domain.index())
                .ok_or_else(|| SpecError::NoSuchDomain {
                    port: p.name.clone(),
                    domain: p.domain.0,
                    count,
                })?;
            d.ports.push(PortId(i as u16));
        }
        Ok(Pipeline {
            counters: Counters::new(spec.ports.len()),
            ports: spec.ports,
            domains,
            fdb: Fdb::new(spec.fdb_max, spec.fdb_aging_secs),
            tracer: Tracer::new(),
        })
    }

    /// Decides the fate of every frame in `frames` (setting each one's `action`) and
    /// puts any packets switchyard originates meanwhile into `out`.
    pub fn process(&mut self, frames: &mut [Frame], now: Timestamp, out: &mut Emitter) {
        let now_s = now.secs();
        for f in frames.iter_mut() {
            self.process_frame(f, now_s, out);
        }
    }

    fn process_frame(&mut self, f: &mut Frame, now_s: u32, out: &mut Emitter) {
        f.action = match self.ethernet_input(f) {
            Err(reason) => Action::Drop(reason),
            Ok(l2) => {
                self.l2_learn(f, &l2, now_s);
                self.l2_forward(f, &l2, out)
            }
        };
        self.account(f);
    }

    /// Books the frame's fate on its ingress port; the one place the invariant
    /// rx = forwarded + consumed + dropped is kept.
    #[inline]
    fn account(&mut self, f: &Frame) {
        let c = &mut self.counters.ports[f.ingress.index()];
        match f.action {
            Action::Drop(r) => {
                c.dropped += 1;
                c.drops[r as usize] += 1;
            }
            Action::Consume | Action::Reply => c.consumed += 1,
            Action::Forward(_) | Action::Flood(_) => c.forwarded += 1,
        }
    }

    /// Periodic work driven by time alone: ages the FDB. Call about once a second.
    pub fn tick(&mut self, now: Timestamp) {
        let aged = self.fdb.age(now.secs());
        self.counters.event_n(Event::FdbAged, aged as u64);
    }

    /// The ports a frame leaves on, given its action.
    pub fn egress(&self, f: &Frame) -> Egress<'_> {
        match f.action {
            Action::Forward(p) => Egress::One(p),
            Action::Reply => Egress::One(f.ingress),
            Action::Flood(d) => Egress::Flood {
                ports: &self.domains[d.index()].ports,
                except: f.ingress,
                domain: d,
            },
            Action::Drop(_) | Action::Consume => Egress::None,
        }
    }

    pub fn ports(&self) -> &[PortSpec] {
        &self.ports
    }

    pub fn port(&self, id: PortId) -> Option<&PortSpec> {
        self.ports.get(id.index())
    }

    /// Finds a port by its display name.
    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| PortId(i as u16))
    }

    pub fn domain(&self, id: DomainId) -> Option<&DomainSpec> {
        self.domains.get(id.index()).map(|d| &d.spec)
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn tracer(&mut self) -> &mut Tracer {
        &mut self.tracer
    }

    /// A port's display name, for trace lines ("switchyard" for [`PortId::LOCAL`]).
    fn port_name(&self, id: PortId) -> &str {
        self.ports
            .get(id.index())
            .map_or("switchyard", |p| p.name.as_str())
    }
}

/// What the L2 stages learned from the Ethernet header, passed along.
#[derive(Debug, Clone, Copy)]
struct L2 {
    dst: MacAddr,
    src: MacAddr,
    domain: DomainId,
}

#[cfg(test)]
mod tests;
