//! `pipeline` — the switching logic, and nothing else.
//!
//! Given a batch of frames, each tagged with the port it came in on, and the current
//! time, the pipeline decides the fate of each: forward it to a port, flood it over its
//! bridge domain, answer it (switchyard's own ARP and ping), hand it to one of
//! switchyard's services (a DNS query, *punted*: [`Action::Punt`]), or drop it with a
//! named reason. It performs no system calls, starts no threads and reads no clock — time is
//! passed in — so every behaviour here is tested with synthetic frames and injected
//! time, fuzzed, and benchmarked without root.
//!
//! A frame walks a graph of stages, one module each in `stages/` (after VPP's graph
//! nodes: each module declares its drop reasons, events, next stages and trace lines).
//! The edges are all in one place, `graph.rs`:
//!
//! ```text
//! vlan-input                                                                        a trunk's frame: its VLAN's port's, untagged
//!  │
//! ethernet-input ─▶ port-security ─▶ l2-learn ─▶ l2-forward ─┬─▶ port                    known unicast
//!                                                            ├─▶ l2-flood ─▶ ports       group, unknown unicast
//!                                                            ├─▶ arp-input ─▶ l2-flood   broadcast ARP: for us too?
//!                                                            └─▶ l3-input                to the gateway MAC
//!                                                                  ├─▶ arp-input ─▶ reply, or consumed
//!                                                                  └─▶ ip4-input ─▶ ct-lookup ─┬─▶ ip4-local ─▶ reply, or punt (DNS)
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
//!
//! # Changing the layout at runtime
//!
//! What the pipeline shares between workers is in two halves. The *layout* — ports,
//! networks, routes, `allow` rules, published ports, who owns which address — is
//! read-only and changes only as a whole; the *tables* — FDB, neighbor table,
//! conntrack — change with every packet and must survive a change of layout (a new
//! network must not cost the others their learned MACs and tracked flows). So the
//! tables are held by `Arc`s of their own, and a layout ([`Layout`]) is a new
//! [`Shared`] over the same tables. Their sizes are fixed when the pipeline is made;
//! only each network's share of them follows the layout (see `shares.rs`).
//!
//! Ids stay stable: a removed port or network leaves a *vacant* slot
//! ([`PortSpec::vacant`], [`DomainSpec::vacant`]; a port slot stays even when the
//! new spec's list ends before it) that a later one may reuse, so the
//! entries the tables hold, the counters and the application's names all keep
//! meaning the same thing. A vacant port is in no network; a vacant network has no
//! gateway, no route and no share of the tables; [`Pipeline::port`] and
//! [`Pipeline::domain`] do not return them.
//!
//! A change runs in three steps, so no worker ever waits for another:
//!
//! 1. [`Pipeline::reshape`], on a control thread, checks the new spec as
//!    [`Pipeline::new`] does and builds the layout, resizing the networks' shares and
//!    pinning new endpoints' MACs in the tables at once.
//! 2. Each worker calls [`Pipeline::adopt`] between two batches. Until it does it
//!    keeps switching on the old layout (its own reference keeps it alive): a port it
//!    does not know is dropped (`port_gone`), an FDB entry pointing at a port that is
//!    not one of the network's in its layout is not followed (the frame floods).
//! 3. Once every worker has adopted a layout where a port or network is vacant,
//!    [`Pipeline::forget_port`] or [`Pipeline::forget_domain`] removes what the
//!    tables still know of it — FDB entries, neighbor entries and the packets waiting
//!    for them, tracked flows with their NAT ports — while the workers run on.
//!
//! Counters follow the slots: adopting a layout zeroes those of its vacant ports, so a
//! port that later reuses a slot starts from zero, and a packet of a gone port that
//! was still waiting for its next hop is not booked when it leaves.

pub mod conntrack;
mod counters;
pub mod ct_cache;
pub mod events;
mod fdb;
pub mod fdb_cache;
pub mod fib;
mod frame;
mod graph;
pub mod ipvlan;
mod memory;
pub mod neighbor;
mod shares;
mod stages;
mod trace;
mod what_if;

pub use conntrack::{Conn, ConnTrack, CtRef, Timeouts, Tuple};
pub use counters::{Counters, DropReason, Event, PortCounters};
pub use ct_cache::CtCache;
pub use events::{EventKind, EventLog, TableChange, TableEvent};
pub use fdb::{Fdb, FdbEntry, Learn};
pub use fdb_cache::{Answered, FdbCache};
pub use fib::{Fib, NextHop, Route, RouteOrigin};
pub use frame::{Egress, Emitter, Frame, BUFFER_LEN, HEADROOM, MAX_FRAME_LEN};
pub use memory::TableMemory;
pub use neighbor::{
    Neighbor, NeighborConfig, NeighborShare, NeighborState, NeighborTable, Orphaned, TickWork,
    WouldResolve,
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

/// Most bridge domains (networks, vacant slots included) a pipeline may have: the
/// tables count every network's share from the start, so that networks can be
/// added while the switch runs without resizing them under the workers.
pub const MAX_DOMAINS: usize = 4096;

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
    /// No domain: the domain of a vacant port slot ([`PortSpec::vacant`]).
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
    /// Taken to one of switchyard's services (DNS): the dataplane hands the frame to
    /// the service thread, whose answer, if any, comes back later as a frame of its
    /// own. Nothing goes out now; the ingress port books it as consumed.
    Punt,
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

/// A bridge domain as the pipeline needs it. A domain with an empty name is a vacant
/// slot ([`DomainSpec::vacant`]): a network that was removed, whose id stays taken
/// until a new network reuses it.
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
    /// switchyard answers DNS at this network's gateway address (UDP and TCP port
    /// 53, as Docker's embedded resolver): queries from the network's endpoints to
    /// any of switchyard's addresses are punted to the DNS service
    /// ([`Action::Punt`]) instead of refused.
    pub dns: bool,
    /// Source validation, port security and the network's shares of the tables.
    pub guard: DomainGuard,
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

impl DomainSpec {
    /// A vacant slot: no name, no gateway, not external, no member ports, no
    /// routes, not joined to any network by `allow`, no share of the tables.
    pub fn vacant() -> DomainSpec {
        DomainSpec {
            name: String::new(),
            subnet: Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 32).expect("a /32 is a prefix"),
            mtu: 0,
            gateway: None,
            mode: DomainMode::Bridge,
            proxy_arp: false,
            masquerade: false,
            external: false,
            dns: false,
            guard: DomainGuard::default(),
        }
    }

    /// True for a vacant slot (an empty name).
    pub fn is_vacant(&self) -> bool {
        self.name.is_empty()
    }
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
    /// A network's share of a table of `global` entries shared by `networks` (vacant
    /// slots do not count): the configured limit, else an even split. Even shares add up to no more than the
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
    /// The 802.1Q VLAN id this port's frames carry on the wire (a trunk's
    /// sub-interface, `eth0.100`); `None`: untagged. vlan-input takes the tag off
    /// what arrives, the port's egress puts it back on.
    pub vlan: Option<u16>,
    /// The port whose device carries this port's frames, for the further VLANs of a
    /// trunk: frames arrive on the carrier and vlan-input hands each to the port of
    /// its tag; `None`: the port has a device of its own (it may itself be a
    /// trunk's carrier).
    pub carrier: Option<PortId>,
}

impl PortSpec {
    /// A vacant slot: a port that was removed, whose id stays taken until a new
    /// port reuses it. No name, no domain ([`DomainId::NONE`]), no addresses.
    pub fn vacant() -> PortSpec {
        PortSpec::new("", DomainId::NONE)
    }

    /// True for a vacant slot (its domain is [`DomainId::NONE`]).
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
            vlan: None,
            carrier: None,
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
    #[error("too many bridge domains ({0}); at most {max}", max = MAX_DOMAINS)]
    TooManyDomains(usize),
    #[error("port {port} refers to bridge domain {domain}, which is vacant")]
    VacantDomain { port: String, domain: u16 },
    #[error("vacant bridge domain {0} has a gateway or is external")]
    BadVacantDomain(u16),
    #[error("fdb_max must be at least 1")]
    EmptyFdb,
    #[error("route {prefix} via {via}: {via} is not on a network with a gateway")]
    UnreachableNextHop { prefix: Ipv4Cidr, via: Ipv4Addr },
    #[error("allow rule names bridge domain {0}, which does not exist or is vacant")]
    NoSuchAllowDomain(u16),
    #[error("more than one external network, or one without a gateway")]
    BadExternal,
    #[error("published ports need an external network")]
    PublishWithoutExternal,
    #[error("NAT port range {0}-{1} is empty")]
    EmptyPortRange(u16, u16),
    #[error("port {port}: VLAN id {vlan} is outside 1-4094")]
    BadVlanId { port: String, vlan: u16 },
    #[error("port {port}: its carrier is not a port with a device of its own")]
    BadCarrier { port: String },
    #[error("port {port}: its trunk already carries VLAN {vlan} (or untagged frames, 0) on another port")]
    DuplicateVlan { port: String, vlan: u16 },
}

/// The ports whose frames share one device (a trunk): the tag each one's frames
/// carry (`None`: untagged), and the port. vlan-input looks up a frame's port here.
type TrunkPorts = Box<[(Option<u16>, PortId)]>;

/// Checks the VLANs of `ports` and groups each trunk's ports under its carrier:
/// ids from 1 to 4094, a carrier that is a port with a device of its own, and on
/// one trunk no VLAN twice and at most one untagged port.
fn trunks_of(ports: &[PortSpec]) -> Result<Vec<Option<TrunkPorts>>, SpecError> {
    let mut groups: Vec<Vec<(Option<u16>, PortId)>> = vec![Vec::new(); ports.len()];
    for (i, p) in ports.iter().enumerate() {
        if p.is_vacant() {
            continue;
        }
        if let Some(v) = p.vlan.filter(|v| !(1..=4094).contains(v)) {
            return Err(SpecError::BadVlanId {
                port: p.name.clone(),
                vlan: v,
            });
        }
        let carrier = match p.carrier {
            None => i,
            Some(c) => {
                let ok = ports
                    .get(c.index())
                    .is_some_and(|q| !q.is_vacant() && q.carrier.is_none() && c.index() != i);
                if !ok {
                    return Err(SpecError::BadCarrier {
                        port: p.name.clone(),
                    });
                }
                c.index()
            }
        };
        let group = &mut groups[carrier];
        if group.iter().any(|&(v, _)| v == p.vlan) {
            return Err(SpecError::DuplicateVlan {
                port: p.name.clone(),
                vlan: p.vlan.unwrap_or(0),
            });
        }
        group.push((p.vlan, PortId(i as u16)));
    }
    // A lone untagged port is an access port: no trunk to look up.
    Ok(groups
        .into_iter()
        .map(|g| match g.as_slice() {
            [] | [(None, _)] => None,
            _ => Some(g.into_boxed_slice()),
        })
        .collect())
}

/// A bridge domain with its member ports.
#[derive(Debug)]
struct Domain {
    spec: DomainSpec,
    ports: Vec<PortId>,
}

/// What every worker shares: the layout (ports, networks, routes, who owns which
/// address), read-only, and the tables, each of which takes care of its own locking
/// (sharded, or a short lock per operation) so that workers never queue behind one
/// global lock. The tables are held by `Arc`s of their own: a new layout
/// ([`Pipeline::reshape`]) is a new `Shared` over the same tables.
pub struct Shared {
    ports: Vec<PortSpec>,
    domains: Vec<Domain>,
    fib: Fib,
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
    /// The external network, if any.
    external: Option<DomainId>,
    /// Published ports: (protocol, host port) → (target address, target port).
    publish: HashMap<(IpProtocol, u16), (Ipv4Addr, u16), foldhash::fast::RandomState>,
    port_range: (u16, u16),
    /// By port: the trunk it carries, if it is a trunk's carrier (see
    /// [`PortSpec::carrier`]); `None` for an access port.
    trunks: Vec<Option<TrunkPorts>>,
    fdb: Arc<Fdb>,
    neighbors: Arc<NeighborTable>,
    conntrack: Arc<ConnTrack>,
    /// This layout's number: each layout made over these tables has a higher one.
    generation: u64,
    /// The numbering, and the newest layout any worker has adopted.
    generations: Arc<Generations>,
}

/// The layouts made over one set of tables, counted, and the newest a worker runs.
/// A worker on an older layout than that knows that a port vacant to it may be a
/// port of the newer one (see `Pipeline::settle_held`).
#[derive(Debug, Default)]
struct Generations {
    made: std::sync::atomic::AtomicU64,
    adopted: std::sync::atomic::AtomicU64,
}

/// One layout of the switch — its ports, networks, routes, `allow` rules and
/// published ports — over its tables: what [`Pipeline::reshape`] makes and each
/// worker takes up with [`Pipeline::adopt`]. Cloning it is cheap (a reference).
#[derive(Clone)]
pub struct Layout(Arc<Shared>);

impl Layout {
    /// Every port slot, vacant ones included ([`PortSpec::is_vacant`]).
    pub fn ports(&self) -> &[PortSpec] {
        &self.0.ports
    }

    /// Domain slots, vacant ones included.
    pub fn domain_count(&self) -> usize {
        self.0.domains.len()
    }

    /// This layout's number (see [`Pipeline::layout_generation`]).
    pub fn generation(&self) -> u64 {
        self.0.generation
    }

    /// True if both are the same layout (not merely equal ones): a reader that kept
    /// one learns cheaply whether a change has come since.
    pub fn same(&self, other: &Layout) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("ports", &self.0.ports.len())
            .field("domains", &self.0.domains.len())
            .finish()
    }
}

/// What [`Pipeline::forget_port`] or [`Pipeline::forget_domain`] removed from the
/// tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Forgotten {
    /// FDB entries.
    pub fdb: usize,
    /// Neighbor entries.
    pub neighbors: usize,
    /// Packets that were waiting in neighbor queues.
    pub held: usize,
    /// Conntrack entries.
    pub conntrack: usize,
}

/// The layout half of [`Shared`]: everything a spec decides but the tables.
struct Plan {
    ports: Vec<PortSpec>,
    domains: Vec<Domain>,
    fib: Fib,
    owners: HashMap<u32, PortId, foldhash::fast::RandomState>,
    local: HashMap<u32, DomainId, foldhash::fast::RandomState>,
    allowed: Vec<bool>,
    external: Option<DomainId>,
    publish: HashMap<(IpProtocol, u16), (Ipv4Addr, u16), foldhash::fast::RandomState>,
    port_range: (u16, u16),
    trunks: Vec<Option<TrunkPorts>>,
}

impl Plan {
    /// Checks that `spec` holds together and builds its layout: the one check and
    /// build [`Pipeline::new`] and [`Pipeline::reshape`] both use, so a spec is
    /// refused by both alike.
    fn of(spec: Spec) -> Result<Plan, SpecError> {
        if spec.ports.len() >= usize::from(u16::MAX) {
            return Err(SpecError::TooManyPorts(spec.ports.len()));
        }
        if spec.domains.len() > MAX_DOMAINS {
            return Err(SpecError::TooManyDomains(spec.domains.len()));
        }
        if spec.fdb_max == 0 {
            return Err(SpecError::EmptyFdb);
        }
        let n = spec.domains.len();
        if let Some(i) = spec
            .domains
            .iter()
            .position(|d| d.is_vacant() && (d.gateway.is_some() || d.external))
        {
            return Err(SpecError::BadVacantDomain(i as u16));
        }
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
        // static ones, each resolved to the network its next hop is on. (A vacant
        // network has no gateway, so no route leads to it.)
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
                if spec
                    .domains
                    .get(d.index())
                    .is_none_or(DomainSpec::is_vacant)
                {
                    return Err(SpecError::NoSuchAllowDomain(d.0));
                }
            }
            allowed[a.index() * n + b.index()] = true;
            allowed[b.index() * n + a.index()] = true;
        }
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
        let mut owners = HashMap::with_hasher(Default::default());
        for (i, p) in spec.ports.iter().enumerate() {
            // A vacant port is in no network, and owns nothing.
            if p.is_vacant() {
                continue;
            }
            let count = domains.len();
            let d = domains
                .get_mut(p.domain.index())
                .ok_or_else(|| SpecError::NoSuchDomain {
                    port: p.name.clone(),
                    domain: p.domain.0,
                    count,
                })?;
            if d.spec.is_vacant() {
                return Err(SpecError::VacantDomain {
                    port: p.name.clone(),
                    domain: p.domain.0,
                });
            }
            d.ports.push(PortId(i as u16));
            if d.spec.mode == DomainMode::L3 || d.spec.guard.port_security {
                if let Some(ip) = p.ip {
                    owners.insert(u32::from(ip), PortId(i as u16));
                }
            }
        }
        let trunks = trunks_of(&spec.ports)?;
        Ok(Plan {
            trunks,
            ports: spec.ports,
            domains,
            fib: Fib::new(routes),
            owners,
            local,
            allowed,
            external,
            publish,
            port_range: (lo, hi),
        })
    }

    /// The layout over these tables: every network gets its share of them (see
    /// [`DomainGuard::share`]; a vacant network, or one past the layout, none at
    /// all), and the endpoints' own MACs on networks that know their endpoints are
    /// pinned to their ports.
    fn over(
        self,
        fdb: Arc<Fdb>,
        neighbors: Arc<NeighborTable>,
        conntrack: Arc<ConnTrack>,
        generations: Arc<Generations>,
    ) -> Shared {
        let live = self.domains.iter().filter(|d| !d.spec.is_vacant()).count();
        let guard = |i: usize| {
            self.domains
                .get(i)
                .filter(|d| !d.spec.is_vacant())
                .map(|d| d.spec.guard)
        };
        let ncfg = *neighbors.config();
        let mut neighbor_shares = Vec::with_capacity(MAX_DOMAINS);
        for i in 0..MAX_DOMAINS {
            let d = DomainId(i as u16);
            match guard(i) {
                Some(g) => {
                    fdb.set_share(d, Some(DomainGuard::share(g.fdb_max, fdb.capacity(), live)));
                    conntrack.set_zone_share(d, g.conntrack_max);
                    neighbor_shares.push(NeighborShare {
                        max: DomainGuard::share(g.neighbor_max, ncfg.max, live),
                        held_max: DomainGuard::share(g.held_max, ncfg.held_max, live),
                    });
                }
                None => {
                    fdb.set_share(d, Some(0));
                    conntrack.set_zone_share(d, Some(0));
                    neighbor_shares.push(NeighborShare {
                        max: 0,
                        held_max: 0,
                    });
                }
            }
        }
        neighbors.set_shares(neighbor_shares);
        for (i, p) in self.ports.iter().enumerate() {
            let Some(d) = self.domains.get(p.domain.index()) else {
                continue;
            };
            if d.spec.mode != DomainMode::L3 && !d.spec.guard.port_security {
                continue;
            }
            if let Some(mac) = p.mac {
                fdb.pin(p.domain, mac, PortId(i as u16));
            }
        }
        // Only networks with a gateway send ICMP errors: the others need no limiter.
        let icmp = self
            .domains
            .iter()
            .map(|d| {
                let dsts = if d.spec.gateway.is_some() { 1024 } else { 0 };
                std::sync::Mutex::new(IcmpLimiter::new(dsts))
            })
            .collect();
        Shared {
            ports: self.ports,
            domains: self.domains,
            fib: self.fib,
            icmp,
            owners: self.owners,
            local: self.local,
            allowed: self.allowed,
            external: self.external,
            publish: self.publish,
            port_range: self.port_range,
            trunks: self.trunks,
            fdb,
            neighbors,
            conntrack,
            generation: generations
                .made
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            generations,
        }
    }
}

/// The pipeline as one worker runs it: the shared layout and tables, and what is the
/// worker's own (its counters, trace, clock reading, scratch space). Make more workers
/// with [`Pipeline::worker`]; the first one also runs the table-wide timers. A worker
/// takes up a new layout with [`Pipeline::adopt`].
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
    /// This worker's own cache of FDB answers, checked against the FDB's change
    /// counts: a known-unicast frame takes no FDB lock (see `fdb_cache.rs`).
    fdb_cache: FdbCache,
    /// This worker's own cache of where conntrack's index put the flows it saw
    /// lately: a tracked packet locks its entry only (see `ct_cache.rs`).
    ct_cache: CtCache,
}

impl Pipeline {
    pub fn new(spec: Spec) -> Result<Pipeline, SpecError> {
        let (fdb_max, aging, ncfg) = (spec.fdb_max, spec.fdb_aging_secs, spec.neighbor);
        let (conntrack_max, timeouts) = (spec.nat.conntrack_max, spec.nat.timeouts);
        let plan = Plan::of(spec)?;
        let nports = plan.ports.len();
        let neighbors = NeighborTable::new(ncfg);
        let work_cap = neighbors.config().max + neighbors.config().held_max;
        // Sized for the configured maximum even without an external network (and
        // so without a flow to track): an external network may be added while the
        // switch runs, and the table takes memory only as flows come.
        let conntrack = ConnTrack::new(conntrack_max, timeouts);
        let sh = plan.over(
            Arc::new(Fdb::new(fdb_max, aging)),
            Arc::new(neighbors),
            Arc::new(conntrack),
            Arc::default(),
        );
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
            fdb_cache: FdbCache::new(),
            ct_cache: CtCache::new(),
        })
    }

    /// Another worker over the same tables and layout, with counters, trace and
    /// table caches of its own.
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
            fdb_cache: FdbCache::new(),
            ct_cache: CtCache::new(),
        }
    }

    /// A new layout over this pipeline's tables, from `spec` (see "Changing the
    /// layout at runtime" above). `spec` is checked exactly as [`Pipeline::new`]
    /// checks it; the sizes of the tables (`fdb_max`, `fdb_aging_secs`, `neighbor`,
    /// `nat.conntrack_max`, `nat.timeouts`) are not read: they stay those the
    /// pipeline was made with and cannot change at runtime. Every network's share of
    /// the tables is set for the new set of networks at once (workers still on the
    /// old layout are held to the new shares too), and the MACs of endpoints on
    /// networks that know their endpoints are pinned. Nothing else changes until a
    /// worker adopts the layout. Allocates; run it on a control thread.
    ///
    /// The new layout has at least as many port slots as this pipeline's: a spec that
    /// ends before a removed port (the last one went) gets vacant slots up to it. A
    /// removed port must be vacant, not past the layout, which to a worker means a
    /// port of a newer layout than its own: its held packets would be neither freed
    /// by [`Pipeline::forget_port`] nor left unbooked when released, and the counters
    /// of the next port to take the number would start off by them.
    pub fn reshape(&self, mut spec: Spec) -> Result<Layout, SpecError> {
        if spec.ports.len() < self.sh.ports.len() {
            spec.ports.resize(self.sh.ports.len(), PortSpec::vacant());
        }
        let plan = Plan::of(spec)?;
        let sh = plan.over(
            self.sh.fdb.clone(),
            self.sh.neighbors.clone(),
            self.sh.conntrack.clone(),
            self.sh.generations.clone(),
        );
        Ok(Layout(Arc::new(sh)))
    }

    /// The layout this pipeline runs on now.
    pub fn layout(&self) -> Layout {
        Layout(self.sh.clone())
    }

    /// The number of the layout this pipeline runs on now: each layout made over
    /// these tables has a higher one ([`Layout::generation`]). What a frame handed to
    /// a service is stamped with, so that its answer can tell whether the port it
    /// goes back out of is still the one the query came in on.
    pub fn layout_generation(&self) -> u64 {
        self.sh.generation
    }

    /// Takes up `layout` (made by [`Pipeline::reshape`] of a pipeline over the same
    /// tables): the next batch runs on it. Run by each worker between batches. The
    /// counters grow to the layout's ports, and those of every vacant port slot (or
    /// slot past the layout's ports) are zeroed, so that a port that later reuses the slot starts from zero (a packet
    /// of the gone port still waiting for its next hop is not accounted when it
    /// leaves). Allocates only when there are more ports than before.
    pub fn adopt(&mut self, layout: &Layout) {
        debug_assert!(
            Arc::ptr_eq(&self.sh.fdb, &layout.0.fdb),
            "a layout of another pipeline's tables"
        );
        self.sh = layout.0.clone();
        self.sh
            .generations
            .adopted
            .fetch_max(self.sh.generation, std::sync::atomic::Ordering::Release);
        let n = self.sh.ports.len();
        if self.counters.ports.len() < n {
            self.counters.ports.resize(n, PortCounters::default());
        }
        for (i, c) in self.counters.ports.iter_mut().enumerate() {
            // A slot past the layout's ports (a list cut short) is gone as well.
            if self.sh.ports.get(i).is_none_or(PortSpec::is_vacant) {
                *c = PortCounters::default();
            }
        }
    }

    /// Removes from the tables what they know of a port that is gone: the MACs
    /// learned on (or pinned to) `port`; the neighbor entry of `ip` in `domain` and
    /// any entry of `domain` resolved to `mac`, with the packets waiting for them;
    /// every flow of the endpoint `ip` in `domain` — a flow whose original tuple has
    /// `ip` as source or destination and which started in `domain`, or whose reply
    /// tuple has it and is expected from `domain` (so masqueraded flows from it and
    /// published-port flows to it) — each given back as an expired one is, NAT port
    /// and shares included. An address that a port of `domain` in this pipeline's
    /// layout has (the endpoint moved to another port in the same change) is left
    /// alone. Packets from any port vacant in the layout, wherever they wait, are
    /// freed without being accounted (that port's counters were zeroed on adoption).
    ///
    /// Call it on a pipeline that has adopted a layout where `port` is vacant, once
    /// every worker has (no worker then learns anything of the port again). Safe
    /// while workers switch: the tables lock per shard or entry as usual.
    pub fn forget_port(
        &self,
        port: PortId,
        domain: DomainId,
        ip: Option<Ipv4Addr>,
        mac: Option<MacAddr>,
    ) -> Forgotten {
        let fdb = self.sh.fdb.flush_port(port);
        let on_layout = |has: &dyn Fn(&PortSpec) -> bool| {
            self.sh
                .ports
                .iter()
                .any(|p| !p.is_vacant() && p.domain == domain && has(p))
        };
        let ip = ip.filter(|&ip| !on_layout(&|p| p.ip == Some(ip)));
        let mac = mac.filter(|&m| !on_layout(&|p| p.mac == Some(m)));
        let (neighbors, held) = self.sh.neighbors.forget(
            |n| n.domain == domain && (Some(n.ip) == ip || mac.is_some_and(|m| n.mac == m)),
            |p| self.is_vacant(p),
        );
        let conntrack = ip.map_or(0, |ip| {
            self.sh.conntrack.forget_where(|c| {
                let has = |t: &Tuple| t.src == ip || t.dst == ip;
                (c.zone[0] == domain && has(&c.orig)) || (c.zone[1] == domain && has(&c.reply))
            })
        });
        Forgotten {
            fdb,
            neighbors,
            held,
            conntrack,
        }
    }

    /// Removes from the tables everything of a network that is gone: its FDB
    /// entries, its neighbor entries with the packets waiting for them, and every
    /// flow either of whose directions is expected from it (its zone). Its shares
    /// of the tables are then empty. As [`Pipeline::forget_port`]: call it once every
    /// worker has adopted a layout where `domain` is vacant; safe while they switch.
    pub fn forget_domain(&self, domain: DomainId) -> Forgotten {
        let fdb = self.sh.fdb.flush_domain(domain);
        let (neighbors, held) = self
            .sh
            .neighbors
            .forget(|n| n.domain == domain, |p| self.is_vacant(p));
        let conntrack = self
            .sh
            .conntrack
            .forget_where(|c| c.zone[0] == domain || c.zone[1] == domain);
        Forgotten {
            fdb,
            neighbors,
            held,
            conntrack,
        }
    }

    /// True if another worker has adopted a newer layout than this pipeline's.
    #[cold]
    fn behind(&self) -> bool {
        self.sh
            .generations
            .adopted
            .load(std::sync::atomic::Ordering::Acquire)
            > self.sh.generation
    }

    /// True if `port` is a vacant slot of this pipeline's layout.
    #[inline]
    fn is_vacant(&self, port: PortId) -> bool {
        self.sh
            .ports
            .get(port.index())
            .is_some_and(PortSpec::is_vacant)
    }

    /// The trunk `port` carries, if it is a trunk's carrier in this layout.
    #[inline]
    fn trunk(&self, port: PortId) -> Option<&[(Option<u16>, PortId)]> {
        self.sh.trunks.get(port.index()).and_then(|t| t.as_deref())
    }

    /// The network of `port` in this layout, if it is a port of one (not vacant,
    /// not [`PortId::LOCAL`], not a port only a newer layout has).
    #[inline]
    fn port_domain(&self, port: PortId) -> Option<DomainId> {
        let d = self.sh.ports.get(port.index())?.domain;
        (d.index() < self.sh.domains.len()).then_some(d)
    }

    /// The port the FDB knows `mac` on in `domain`, if that port is one of the
    /// network's in this layout: an entry for a port that is gone (before
    /// [`Pipeline::forget_port`] removes it) is not followed.
    ///
    /// With the port, the remote VTEP behind it when it is an overlay network's tunnel.
    ///
    /// Answered from this worker's FDB cache while its answer is current.
    #[inline]
    fn fdb_via(&mut self, domain: DomainId, mac: MacAddr) -> Option<(PortId, Option<Ipv4Addr>)> {
        let (found, answered) = self.fdb_cache.lookup_via(&self.sh.fdb, domain, mac);
        self.counters.event(fdb_cache::cache_event(answered));
        found.filter(|(p, _)| {
            self.sh
                .ports
                .get(p.index())
                .is_some_and(|s| s.domain == domain)
        })
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
        // Metadata of the pipeline's own making starts fresh for every frame: a
        // recycled buffer must not carry the last packet's flow or offsets.
        f.forget_pipeline_meta();
        // vlan-input first: a frame from a trunk is the frame of the port of its tag
        // from here on, for every stage and for the books.
        let refused = match self.vlan_input(f) {
            stages::vlan_input::Next::EthernetInput => None,
            stages::vlan_input::Next::Drop(r) => Some(r),
        };
        // Remembered before the stages run: a frame taken into a neighbor queue is
        // swapped for a spare, and the spare's metadata is not this frame's.
        let ingress = f.ingress;
        let action = match refused {
            None => self.walk::<false>(f, out),
            Some(r) => Action::Drop(r),
        };
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
        // A port this worker has no counters for yet (one of a newer layout, whose
        // held packet this worker releases) is not counted here.
        let Some(c) = self.counters.ports.get_mut(port.index()) else {
            return;
        };
        match action {
            Action::Drop(r) => {
                c.dropped += 1;
                c.drops[r as usize] += 1;
            }
            Action::Consume | Action::Reply | Action::Punt => c.consumed += 1,
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
            Action::Flood(d) => self
                .flood_ports(d)
                .iter()
                .filter(|&&p| p != ingress)
                .map(|&p| self.port_name(p).to_string())
                .collect(),
            Action::Drop(_) | Action::Consume | Action::Held | Action::Punt => Vec::new(),
        };
        let network = match action {
            Action::Flood(d) => self.sh.domains.get(d.index()).map_or("", |d| &d.spec.name),
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

    /// A held packet left its queue: book its final fate. A packet of a port that
    /// is vacant in this worker's layout is not booked: that port's counters were
    /// zeroed when the worker adopted the layout, its held packets with them —
    /// unless a newer layout runs somewhere, whose port took the number.
    fn settle_held(&mut self, port: PortId, action: Action) {
        // Unless another worker runs a newer layout already: then the slot may be
        // taken again there, by the port whose packet this is (a port's own held
        // packets were freed when it was forgotten, before its number could be
        // reused), and it is booked as that worker would.
        if self.is_vacant(port) && !self.behind() {
            return;
        }
        if port != PortId::LOCAL && port.index() >= self.counters.ports.len() {
            self.grow_counters(port.index() + 1);
        }
        if let Some(c) = self.counters.ports.get_mut(port.index()) {
            // Another worker may settle a packet this one held: counted modulo 2^64,
            // the per-worker figures still add up to the true number.
            c.held = c.held.wrapping_sub(1);
        }
        if port != PortId::LOCAL {
            self.account(port, action);
        }
    }

    /// Counters for `n` ports: a worker not yet on the newest layout releases a
    /// packet that a port of that layout sent, and books it as the others would.
    #[cold]
    fn grow_counters(&mut self, n: usize) {
        self.counters.ports.resize(n, PortCounters::default());
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
        // Packets dropped by the table on its own (evicted, or forgotten with their
        // endpoint) are booked here too, not only when a packet next calls on it.
        self.settle_orphans();
        self.ct_gc(now);
    }

    /// The ports a frame leaves on, given its action.
    pub fn egress(&self, f: &Frame) -> Egress<'_> {
        match f.action {
            Action::Forward(p) => Egress::One(p),
            Action::Reply => Egress::One(f.ingress),
            Action::Flood(d) => Egress::Flood {
                ports: self.flood_ports(d),
                except: f.ingress,
                domain: d,
            },
            Action::Drop(_) | Action::Consume | Action::Held | Action::Punt => Egress::None,
        }
    }

    /// The ports of a domain, to flood over (none for a domain not in this layout).
    #[inline]
    fn flood_ports(&self, d: DomainId) -> &[PortId] {
        self.sh.domains.get(d.index()).map_or(&[], |d| &d.ports)
    }

    /// Every port slot, indexed by [`PortId`]; vacant slots (removed ports whose id
    /// is not reused yet) are in it too, and [`PortSpec::is_vacant`] tells them.
    pub fn ports(&self) -> &[PortSpec] {
        &self.sh.ports
    }

    /// The port `id`, unless there is none or its slot is vacant.
    pub fn port(&self, id: PortId) -> Option<&PortSpec> {
        self.sh.ports.get(id.index()).filter(|p| !p.is_vacant())
    }

    /// Finds a port by its display name (never a vacant slot).
    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.sh
            .ports
            .iter()
            .position(|p| !p.is_vacant() && p.name == name)
            .map(|i| PortId(i as u16))
    }

    /// The domain `id`, unless there is none or its slot is vacant.
    pub fn domain(&self, id: DomainId) -> Option<&DomainSpec> {
        self.sh
            .domains
            .get(id.index())
            .map(|d| &d.spec)
            .filter(|d| !d.is_vacant())
    }

    /// Domain slots, vacant ones included: ids run from 0 to this.
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
        from.index() < n && to.index() < n && self.sh.allowed[from.index() * n + to.index()]
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
