//! `pipeline` — the switching logic, and nothing else.
//!
//! Given a batch of frames, each tagged with the port it came in on, and the current
//! time, the pipeline decides the fate of each: forward it to a port, flood it over its
//! bridge domain, answer it (switchyard's own ARP and ping), or drop it with a named
//! reason. It performs no system calls, starts no threads and reads no clock — time is
//! passed in — so every behaviour here is tested with synthetic frames and injected
//! time, fuzzed, and benchmarked without root.
//!
//! A frame walks a graph of stages, one module each in `stages/` (after VPP's graph
//! nodes: each module declares its drop reasons, events, next stages and trace lines).
//! The edges are all in one place, `graph.rs`:
//!
//! ```text
//! ethernet-input ─▶ port-security ─▶ l2-learn ─▶ l2-forward ─┬─▶ port                    known unicast
//!                                                            ├─▶ l2-flood ─▶ ports       group, unknown unicast
//!                                                            ├─▶ arp-input ─▶ l2-flood   broadcast ARP: for us too?
//!                                                            └─▶ l3-input                to the gateway MAC
//!                                                                  ├─▶ arp-input ─▶ reply, or consumed
//!                                                                  └─▶ ip4-input ─▶ ct-lookup ─┬─▶ ip4-local ─▶ reply
//!                                                                                              └─▶ ip4-forward
//!
//! ip4-forward ─┬─▶ icmp-error ─▶ drop      TTL expired, no route (ip4-lookup), too big with DF
//!              ├─▶ nat-snat ─┐             a new flow to masquerade
//!              └─────────────┴─▶ ip4-neighbor ─┬─▶ held        next hop unresolved
//!                                              └─▶ nat-rewrite ─▶ ip4-output
//!                                                                   ├─▶ port or flood
//!                                                                   └─▶ ip4-fragment ─▶ port or flood
//! ```
//!
//! Any stage may also drop the frame, with a reason it declares. Held packets walk on
//! later: from `nat-rewrite` once `arp-input` sees their next hop answer, or to
//! `icmp-error` (host unreachable) when the timer gives up on it. The timer also runs
//! `l2-age` (FDB aging) and `ct-gc` (expired connections); `emit` hands out the
//! buffers of the frames switchyard makes.
//!
//! Each frame runs through the stages to completion before the next one starts; the
//! batching that pays for system calls happens in the dataplane around this call.
//! Headers are parsed once, at input: the frame carries its offsets ([`Frame`]).

pub mod conntrack;
mod counters;
pub mod events;
mod fdb;
pub mod fib;
mod frame;
mod graph;
mod memory;
pub mod neighbor;
mod shares;
mod stages;
mod trace;
mod what_if;

pub use conntrack::{Conn, ConnTrack, CtRef, Timeouts, Tuple};
pub use counters::{Counters, DropReason, Event, PortCounters};
pub use events::{EventKind, EventLog, TableChange, TableEvent};
pub use fdb::{Fdb, FdbEntry, Learn};
pub use fib::{Fib, NextHop, Route, RouteOrigin};
pub use frame::{Egress, Emitter, Frame, BUFFER_LEN, HEADROOM, MAX_FRAME_LEN};
pub use memory::TableMemory;
pub use neighbor::{
    Neighbor, NeighborConfig, NeighborShare, NeighborState, NeighborTable, TickWork, WouldResolve,
};
pub use stages::icmp_error::IcmpLimiter;
pub use trace::{summarize, FrameTrace, StageLine, TraceRecord, Tracer, Verdict};

use crate::wire::{IpProtocol, Ipv4Cidr, MacAddr};
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Locks a table (or a shard of one), ignoring poisoning: every critical section in
/// the pipeline is a handful of field updates that leave the table consistent even if
/// a worker panics halfway through its batch.
#[inline]
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// TTL of packets switchyard originates, as Linux's default `ip_default_ttl`.
pub const DEFAULT_TTL: u8 = 64;

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
    /// No domain: the domain of a vacant port slot.
    pub const NONE: DomainId = DomainId(u16::MAX);

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
    /// Taken into a neighbor queue until the next hop's MAC is known; the frame's
    /// buffer was swapped for a spare, so nothing goes out now.
    Held,
}

/// switchyard's own address on a network: it answers ARP and ping there and routes
/// through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySpec {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// How a network moves frames between its own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DomainMode {
    /// A learning bridge, like docker0.
    #[default]
    Bridge,
    /// L3 only, like ipvlan in L3 mode: no bridging or flooding between endpoints;
    /// switchyard answers every ARP request (proxy ARP) and routes all traffic, even
    /// between two endpoints of the same subnet.
    L3,
}

/// A bridge domain as the pipeline needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    pub subnet: Ipv4Cidr,
    /// IP MTU of every port in the domain.
    pub mtu: u16,
    pub gateway: Option<GatewaySpec>,
    pub mode: DomainMode,
    /// Answer ARP for addresses routed via another network (the kernel's `proxy_arp`).
    pub proxy_arp: bool,
    /// New flows from this network leaving by the external network are masqueraded.
    pub masquerade: bool,
    /// The uplink: the way out, where published ports listen on the gateway address.
    pub external: bool,
    /// Source validation, port security and the network's shares of the tables.
    pub guard: DomainGuard,
}

impl DomainSpec {
    /// A slot with no domain in it.
    pub fn vacant() -> DomainSpec {
        DomainSpec {
            name: String::new(),
            subnet: Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 32).expect("/32"),
            mtu: 1500,
            gateway: None,
            mode: DomainMode::Bridge,
            proxy_arp: false,
            masquerade: false,
            external: false,
            guard: DomainGuard::default(),
        }
    }

    pub fn is_vacant(&self) -> bool {
        self.name.is_empty()
    }
}

/// What a network defends itself with: source validation, port security, and its
/// shares of the tables every network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainGuard {
    /// Strict reverse-path filtering (the kernel's `rp_filter = 1`): a packet to the
    /// gateway whose source the FIB would not route back through this network is
    /// dropped (`spoofed_source`).
    pub rp_filter: bool,
    /// An endpoint may send only with its own MAC and address (OVN's port security).
    pub port_security: bool,
    /// At most this many FDB entries for the network; `None`: an even share of the
    /// global `fdb_max` (see [`DomainGuard::share`]).
    pub fdb_max: Option<usize>,
    /// At most this many neighbor entries; `None`: an even share of the table.
    pub neighbor_max: Option<usize>,
    /// At most this many packets waiting for a next hop on the network; `None`: an
    /// even share of the held buffers.
    pub held_max: Option<usize>,
    /// At most this many conntrack entries for flows started in the network; `None`:
    /// only the global `conntrack_max` bounds them (conntrack grows with use, so an
    /// even split would cap busy networks for nothing).
    pub conntrack_max: Option<usize>,
    /// Inter-container communication (Docker's `enable_icc`): when off, endpoints
    /// of the network reach the gateway and, through it, other networks and the
    /// outside, but not each other — neither bridged nor routed back into the
    /// network (`icc_disabled`). A published port is still reachable by its uplink
    /// address (hairpin NAT), as in Docker, whose userland proxy connects to it
    /// from the gateway address.
    pub icc: bool,
}

impl Default for DomainGuard {
    fn default() -> Self {
        DomainGuard {
            rp_filter: true,
            port_security: false,
            icc: true,
            fdb_max: None,
            neighbor_max: None,
            held_max: None,
            conntrack_max: None,
        }
    }
}

impl DomainGuard {
    /// A network's share of a table of `global` entries shared by `networks`: the
    /// configured limit, else an even split. Even shares add up to no more than the
    /// table, so however hard one network floods its share, every other network
    /// still finds its own share free.
    pub fn share(limit: Option<usize>, global: usize, networks: usize) -> usize {
        limit
            .unwrap_or(global / networks.max(1))
            .clamp(1, global.max(1))
    }
}

/// A port as the pipeline needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Display name: the endpoint (`web`), or endpoint/interface beyond eth0 (`multi/eth1`).
    pub name: String,
    pub domain: DomainId,
    /// The endpoint's MAC on this port, when switchyard assigned it: what port
    /// security allows as a source, and what an L3 network binds to this port.
    pub mac: Option<MacAddr>,
    /// The endpoint's IPv4 address on this port, when known (as `mac`).
    pub ip: Option<Ipv4Addr>,
}

impl PortSpec {
    /// A slot with no port in it.
    pub fn vacant() -> PortSpec {
        PortSpec::new("", DomainId::NONE)
    }

    pub fn is_vacant(&self) -> bool {
        self.domain == DomainId::NONE
    }

    /// A port of `domain` whose endpoint's addresses are not known.
    pub fn new(name: impl Into<String>, domain: DomainId) -> PortSpec {
        PortSpec {
            name: name.into(),
            domain,
            mac: None,
            ip: None,
        }
    }
}

/// A static route: `prefix` via the router at `via`, which must be on a network
/// with a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: Ipv4Cidr,
    pub via: Ipv4Addr,
}

/// A published port: flows to the uplink address on `host_port` go to `target:target_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishSpec {
    /// TCP or UDP.
    pub proto: IpProtocol,
    pub host_port: u16,
    pub target: Ipv4Addr,
    pub target_port: u16,
}

/// Connection tracking and NAT settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSpec {
    pub publish: Vec<PublishSpec>,
    /// Source ports masquerade picks from when the original one is taken.
    pub port_range: (u16, u16),
    pub conntrack_max: usize,
    pub timeouts: Timeouts,
}

impl Default for NatSpec {
    fn default() -> Self {
        NatSpec {
            publish: Vec::new(),
            port_range: (1024, 65535),
            conntrack_max: 65536,
            timeouts: Timeouts::default(),
        }
    }
}

/// Everything the pipeline is built from; the topology layer produces it from the
/// config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub domains: Vec<DomainSpec>,
    pub ports: Vec<PortSpec>,
    pub fdb_max: usize,
    pub fdb_aging_secs: u32,
    pub routes: Vec<StaticRoute>,
    /// Pairs of networks joined for routing (both directions).
    pub allow: Vec<(DomainId, DomainId)>,
    pub neighbor: NeighborConfig,
    pub nat: NatSpec,
}

impl Spec {
    /// A spec with the given domains and ports and defaults for everything else.
    pub fn new(domains: Vec<DomainSpec>, ports: Vec<PortSpec>) -> Spec {
        Spec {
            domains,
            ports,
            fdb_max: 8192,
            fdb_aging_secs: 300,
            routes: Vec::new(),
            allow: Vec::new(),
            neighbor: NeighborConfig::default(),
            nat: NatSpec::default(),
        }
    }
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
    #[error("route {prefix} via {via}: {via} is not on a network with a gateway")]
    UnreachableNextHop { prefix: Ipv4Cidr, via: Ipv4Addr },
    #[error("allow rule names bridge domain {0}, which does not exist")]
    NoSuchAllowDomain(u16),
    #[error("more than one external network, or one without a gateway")]
    BadExternal,
    #[error("published ports need an external network")]
    PublishWithoutExternal,
    #[error("NAT port range {0}-{1} is empty")]
    EmptyPortRange(u16, u16),
}

/// A bridge domain with its member ports.
#[derive(Debug)]
struct Domain {
    spec: DomainSpec,
    ports: Vec<PortId>,
}

/// The switch: its tables, counters and trace, and the stages that use them.
/// What every worker shares: the configuration, read-only, and the tables, each of
/// which takes care of its own locking (sharded, or a short lock per operation) so that
/// workers never queue behind one global lock.
pub struct Shared {
    ports: Vec<PortSpec>,
    domains: Vec<Domain>,
    fdb: Fdb,
    fib: Fib,
    neighbors: NeighborTable,
    /// The ICMP error rate limit, one per network: a network that uses up its
    /// budget silences only itself.
    icmp: Vec<std::sync::Mutex<IcmpLimiter>>,
    /// Endpoint addresses bound to their port, on networks that know their
    /// endpoints (L3 networks, port security): ARP from another port does not move
    /// them.
    owners: HashMap<u32, PortId, foldhash::fast::RandomState>,
    /// switchyard's own addresses (the gateways) and their domains.
    local: HashMap<u32, DomainId, foldhash::fast::RandomState>,
    /// `allowed[a * n + b]`: domain a may route to domain b.
    allowed: Vec<bool>,
    conntrack: ConnTrack,
    /// The external network, if any.
    external: Option<DomainId>,
    /// Published ports: (protocol, host port) → (target address, target port).
    publish: HashMap<(IpProtocol, u16), (Ipv4Addr, u16), foldhash::fast::RandomState>,
    port_range: (u16, u16),
}

/// The pipeline as one worker runs it: the shared tables, and what is the worker's own
/// (its counters, trace, clock reading, scratch space). Make more workers with
/// [`Pipeline::worker`]; the first one also runs the table-wide timers.
pub struct Pipeline {
    sh: Arc<Shared>,
    /// Counters of this worker's decisions; [`Pipeline::merged_counters`] of all
    /// workers' gives the totals.
    counters: Counters,
    tracer: Tracer,
    /// The time of the batch or tick being processed.
    now: Timestamp,
    fdb_aged_at: u32,
    /// IP identification for packets switchyard originates.
    ident: u16,
    /// Timer and release work, reused (capacity reserved once).
    work: Vec<TickWork>,
    /// A spare frame for taking packets out of neighbor queues.
    scratch: Option<Frame>,
    /// The worker that runs table-wide timers (aging, ARP retries, conntrack GC).
    primary: bool,
    /// What a what-if walk found out on the way (none in the dataplane's workers;
    /// boxed, so that it costs the workers' pipeline one pointer).
    what_if: Option<Box<what_if::DryRun>>,
    /// Table changes this worker made since the dataplane last drained them; off
    /// unless someone listens (see [`events`]).
    events: EventLog,
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
        let n = spec.domains.len();
        let externals: Vec<usize> = spec
            .domains
            .iter()
            .enumerate()
            .filter(|(_, d)| d.external)
            .map(|(i, _)| i)
            .collect();
        if externals.len() > 1 || externals.iter().any(|&i| spec.domains[i].gateway.is_none()) {
            return Err(SpecError::BadExternal);
        }
        let external = externals.first().map(|&i| DomainId(i as u16));
        if external.is_none() && !spec.nat.publish.is_empty() {
            return Err(SpecError::PublishWithoutExternal);
        }
        let (lo, hi) = spec.nat.port_range;
        if lo > hi {
            return Err(SpecError::EmptyPortRange(lo, hi));
        }
        let mut publish = HashMap::with_hasher(Default::default());
        for p in &spec.nat.publish {
            publish.insert((p.proto, p.host_port), (p.target, p.target_port));
        }
        // Connected routes for every network switchyard has an address on, then the
        // static ones, each resolved to the network its next hop is on.
        let mut routes: Vec<Route> = spec
            .domains
            .iter()
            .enumerate()
            .filter(|(_, d)| d.gateway.is_some())
            .map(|(i, d)| Route {
                prefix: d.subnet.trunc(),
                next_hop: NextHop::Connected {
                    domain: DomainId(i as u16),
                },
                origin: RouteOrigin::Connected,
            })
            .collect();
        for r in &spec.routes {
            let domain = spec
                .domains
                .iter()
                .position(|d| d.gateway.is_some() && d.subnet.contains(r.via))
                .ok_or(SpecError::UnreachableNextHop {
                    prefix: r.prefix,
                    via: r.via,
                })?;
            routes.push(Route {
                prefix: r.prefix,
                next_hop: NextHop::Via {
                    domain: DomainId(domain as u16),
                    gateway: r.via,
                },
                origin: RouteOrigin::Static,
            });
        }
        let mut allowed = vec![false; n * n];
        for i in 0..n {
            allowed[i * n + i] = true;
        }
        for &(a, b) in &spec.allow {
            for d in [a, b] {
                if d.index() >= n {
                    return Err(SpecError::NoSuchAllowDomain(d.0));
                }
            }
            allowed[a.index() * n + b.index()] = true;
            allowed[b.index() * n + a.index()] = true;
        }
        let conntrack_shares: Vec<Option<usize>> =
            spec.domains.iter().map(|d| d.guard.conntrack_max).collect();
        let mut local = HashMap::with_hasher(Default::default());
        for (i, d) in spec.domains.iter().enumerate() {
            if let Some(g) = d.gateway {
                local.insert(u32::from(g.ip), DomainId(i as u16));
            }
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
        // Every network's share of the shared tables (see DomainGuard::share).
        let shares = |f: fn(&DomainGuard) -> Option<usize>, global: usize| -> Vec<usize> {
            domains
                .iter()
                .map(|d| DomainGuard::share(f(&d.spec.guard), global, n))
                .collect()
        };
        let fdb = Fdb::with_shares(
            spec.fdb_max,
            spec.fdb_aging_secs,
            shares(|g| g.fdb_max, spec.fdb_max),
        );
        let neighbor_shares = shares(|g| g.neighbor_max, spec.neighbor.max.max(1))
            .into_iter()
            .zip(shares(|g| g.held_max, spec.neighbor.held_max))
            .map(|(max, held_max)| NeighborShare { max, held_max })
            .collect();
        let neighbors = NeighborTable::with_shares(spec.neighbor, neighbor_shares);
        let mut owners = HashMap::with_hasher(Default::default());
        for (i, p) in spec.ports.iter().enumerate() {
            let d = &domains[p.domain.index()].spec;
            if d.mode != DomainMode::L3 && !d.guard.port_security {
                continue;
            }
            if let Some(mac) = p.mac {
                fdb.pin(p.domain, mac, PortId(i as u16));
            }
            if let Some(ip) = p.ip {
                owners.insert(u32::from(ip), PortId(i as u16));
            }
        }
        let work_cap = neighbors.config().max + neighbors.config().held_max;
        let nports = spec.ports.len();
        let sh = Shared {
            ports: spec.ports,
            domains,
            fdb,
            fib: Fib::new(routes),
            neighbors,
            icmp: (0..n)
                .map(|_| std::sync::Mutex::new(IcmpLimiter::new(1024)))
                .collect(),
            owners,
            local,
            allowed,
            // Only flows that are translated are tracked: without an external network
            // there are none, and the table stays small.
            conntrack: ConnTrack::new(
                if external.is_some() {
                    spec.nat.conntrack_max
                } else {
                    1
                },
                spec.nat.timeouts,
            )
            .with_zone_shares(&conntrack_shares),
            external,
            publish,
            port_range: (lo, hi),
        };
        Ok(Pipeline {
            sh: Arc::new(sh),
            counters: Counters::new(nports),
            tracer: Tracer::new(),
            now: Timestamp(0),
            fdb_aged_at: 0,
            ident: 0,
            work: Vec::with_capacity(work_cap),
            scratch: Some(Frame::new()),
            primary: true,
            what_if: None,
            events: EventLog::default(),
        })
    }

    /// Another worker over the same tables, with counters and trace of its own.
    pub fn worker(&self) -> Pipeline {
        Pipeline {
            sh: self.sh.clone(),
            counters: Counters::new(self.sh.ports.len()),
            tracer: Tracer::new(),
            now: self.now,
            fdb_aged_at: 0,
            ident: self.ident.wrapping_add(0x8000),
            work: Vec::with_capacity(self.work.capacity()),
            scratch: Some(Frame::new()),
            primary: false,
            what_if: None,
            events: EventLog::default(),
        }
    }

    /// The sum of several workers' counters (all workers of one switch).
    pub fn merged_counters<'a>(workers: impl IntoIterator<Item = &'a Counters>) -> Counters {
        let mut total: Option<Counters> = None;
        for c in workers {
            match &mut total {
                None => total = Some(c.clone()),
                Some(t) => t.add(c),
            }
        }
        total.unwrap_or_else(|| Counters::new(0))
    }

    /// Decides the fate of every frame in `frames` (setting each one's `action`) and
    /// puts any packets switchyard originates meanwhile into `out`.
    pub fn process(&mut self, frames: &mut [Frame], now: Timestamp, out: &mut Emitter) {
        self.now = now;
        for f in frames.iter_mut() {
            self.process_frame(f, out);
        }
    }

    fn process_frame(&mut self, f: &mut Frame, out: &mut Emitter) {
        // Remembered before the stages run: a frame taken into a neighbor queue is
        // swapped for a spare, and the spare's metadata is not this frame's.
        let ingress = f.ingress;
        // Metadata of the pipeline's own making starts fresh for every frame: a
        // recycled buffer must not carry the last packet's flow or offsets.
        f.forget_pipeline_meta();
        let action = self.walk::<false>(f, out);
        f.action = action;
        // The traced packet's number, taken from the tracer: a held frame's buffer
        // (and number) is in a neighbor queue by now.
        let packet = self.tracer.take_current();
        if packet != 0 {
            self.finish_trace(packet, ingress, action);
        }
        if action == Action::Held {
            f.ingress = ingress;
            f.set_len(0);
        }
        self.account(ingress, action);
    }

    /// Books a frame's fate on its ingress port; the one place the invariant
    /// rx = forwarded + consumed + dropped + held is kept.
    #[inline]
    fn account(&mut self, port: PortId, action: Action) {
        let c = &mut self.counters.ports[port.index()];
        match action {
            Action::Drop(r) => {
                c.dropped += 1;
                c.drops[r as usize] += 1;
            }
            Action::Consume | Action::Reply => c.consumed += 1,
            Action::Forward(_) | Action::Flood(_) => c.forwarded += 1,
            Action::Held => c.held = c.held.wrapping_add(1),
        }
    }

    /// Opens the trace of a frame just selected for tracing, with its summary.
    #[cold]
    fn open_trace(&mut self, f: &Frame) {
        let summary = trace::summarize(f.data());
        let port = self.port_name(f.ingress).to_string();
        self.tracer.open(f.trace, self.now.0, &port, summary);
    }

    /// Ends the trace of packet `packet`, which came in on `ingress`, with the
    /// verdict of `action`.
    #[cold]
    fn finish_trace(&mut self, packet: u32, ingress: PortId, action: Action) {
        let ports: Vec<String> = match action {
            Action::Forward(p) => vec![self.port_name(p).to_string()],
            Action::Reply => vec![self.port_name(ingress).to_string()],
            Action::Flood(d) => self.sh.domains[d.index()]
                .ports
                .iter()
                .filter(|&&p| p != ingress)
                .map(|&p| self.port_name(p).to_string())
                .collect(),
            Action::Drop(_) | Action::Consume | Action::Held => Vec::new(),
        };
        let network = match action {
            Action::Flood(d) => self.sh.domains[d.index()].spec.name.as_str(),
            _ => "",
        };
        let verdict = trace::Verdict::of(action, ports, self.port_name(ingress), network);
        self.tracer.finish(packet, verdict);
    }

    /// A held packet that was traced ends its walk with `action`.
    #[inline]
    fn settle_trace(&mut self, packet: u32, ingress: PortId, action: Action) {
        if packet != 0 {
            self.finish_trace(packet, ingress, action);
        }
    }

    /// A held packet left its queue: book its final fate.
    fn settle_held(&mut self, port: PortId, action: Action) {
        if let Some(c) = self.counters.ports.get_mut(port.index()) {
            // Another worker may settle a packet this one held: counted modulo 2^64,
            // the per-worker figures still add up to the true number.
            c.held = c.held.wrapping_sub(1);
        }
        if port != PortId::LOCAL {
            self.account(port, action);
        }
    }

    /// Periodic work driven by time alone: FDB aging (`l2-age`, once a second), ARP
    /// retransmissions and their failures (ICMP host unreachable), neighbor state
    /// changes, expired connections (`ct-gc`). Packets it originates go to `out`. Call
    /// every 100 ms or so.
    pub fn tick(&mut self, now: Timestamp, out: &mut Emitter) {
        self.now = now;
        // The tables are shared: one worker keeps their time.
        if !self.primary {
            return;
        }
        self.l2_age(now);
        self.work.clear();
        if self.events.is_on() {
            let (sh, log, work) = (&self.sh, &mut self.events, &mut self.work);
            let mut put = |c| log.push(now, TableChange::Neighbor(c));
            sh.neighbors
                .tick_reporting(now, work, events::Report::to(&mut put));
        } else {
            self.sh.neighbors.tick(now, &mut self.work);
        }
        self.neighbor_work(out);
        self.ct_gc(now);
    }

    /// The ports a frame leaves on, given its action.
    pub fn egress(&self, f: &Frame) -> Egress<'_> {
        match f.action {
            Action::Forward(p) => Egress::One(p),
            Action::Reply => Egress::One(f.ingress),
            Action::Flood(d) => Egress::Flood {
                ports: &self.sh.domains[d.index()].ports,
                except: f.ingress,
                domain: d,
            },
            Action::Drop(_) | Action::Consume | Action::Held => Egress::None,
        }
    }

    pub fn ports(&self) -> &[PortSpec] {
        &self.sh.ports
    }

    pub fn port(&self, id: PortId) -> Option<&PortSpec> {
        self.sh.ports.get(id.index())
    }

    /// Finds a port by its display name.
    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.sh
            .ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| PortId(i as u16))
    }

    pub fn domain(&self, id: DomainId) -> Option<&DomainSpec> {
        self.sh.domains.get(id.index()).map(|d| &d.spec)
    }

    pub fn domain_count(&self) -> usize {
        self.sh.domains.len()
    }

    pub fn fdb(&self) -> &Fdb {
        &self.sh.fdb
    }

    pub fn fib(&self) -> &Fib {
        &self.sh.fib
    }

    pub fn neighbors(&self) -> &NeighborTable {
        &self.sh.neighbors
    }

    pub fn conntrack(&self) -> &ConnTrack {
        &self.sh.conntrack
    }

    /// The current time of the pipeline's clock (of the last batch or tick).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// True if packets may be routed from network `from` to network `to`.
    pub fn allowed(&self, from: DomainId, to: DomainId) -> bool {
        let n = self.sh.domains.len();
        self.sh.allowed[from.index() * n + to.index()]
    }

    /// The network that owns `ip` as its gateway address, if it is switchyard's.
    pub fn local_domain(&self, ip: Ipv4Addr) -> Option<DomainId> {
        self.sh.local.get(&u32::from(ip)).copied()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn tracer(&mut self) -> &mut Tracer {
        &mut self.tracer
    }

    /// This worker's table events: start or stop keeping them, drain them, read
    /// their counts by kind.
    pub fn events(&mut self) -> &mut EventLog {
        &mut self.events
    }

    /// Records a change made outside the pipeline (a port gone down, found by the
    /// dataplane) at `at`, if events are on.
    pub fn record_event(&mut self, at: Timestamp, change: TableChange) {
        self.events.push(at, change);
    }

    /// Records the change `make` builds, at the current batch's time, if events
    /// are on: off, one branch.
    #[inline]
    fn event(&mut self, make: impl FnOnce(&Self) -> TableChange) {
        if self.events.is_on() {
            let change = make(self);
            self.events.push(self.now, change);
        }
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// A port's display name, for trace lines ("switchyard" for [`PortId::LOCAL`]).
    fn port_name(&self, id: PortId) -> &str {
        self.sh
            .ports
            .get(id.index())
            .map_or("switchyard", |p| p.name.as_str())
    }
}

#[cfg(test)]
mod tests;
