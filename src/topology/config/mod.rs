//! The config file: what users write (TOML, in the shape of the config contract) and
//! the validated [`Topology`] switchyard builds from it.
//!
//! Validation happens completely before anything is created. Every problem found is
//! reported at once, each naming the file, the field (`endpoint "web".ip`) and the
//! reason; a file with any problem changes nothing on the machine.
//!
//! Addresses left out are filled in as Docker's IPAM does: an endpoint without `ip`
//! gets the lowest free host address of its subnet; an endpoint without `mac` gets
//! `02:42` followed by its IPv4 address; the gateway MAC is derived the same way.
//!
//! # How it is organised
//!
//! A file is read in two steps. serde turns the TOML into a [`ConfigFile`], the file
//! as written: one struct per section, unknown keys refused. [`validate`] then turns
//! that into a [`Topology`], the model everything else uses: names resolved to
//! indexes, every address assigned, every rule checked. Each section has a module of
//! its own (a file in this directory) with its raw struct and its checks:
//!
//! | file            | what it checks                                                  |
//! |-----------------|-----------------------------------------------------------------|
//! | `switch.rs`     | `[switch]`: prefix, table sizes, neighbor and conntrack timers, workers |
//! | `network.rs`    | `[[network]]`: subnets, gateways, MTU, modes, roles in NAT      |
//! | `endpoint.rs`   | `[[endpoint]]`: names, one interface or several, `mode`         |
//! | `addressing.rs` | IPAM: subnet overlaps, address assignment, MAC derivation       |
//! | `routes.rs`     | `[[allow]]` and `[[route]]`                                     |
//! | `publish.rs`    | published ports and the NAT port range                          |
//! | `dns.rs`        | DNS names, the networks that serve DNS, aliases, upstreams      |
//! | `overlay.rs`    | `vxlan = {...}`: a network spanning hosts (VNI, VTEPs, underlay) |
//!
//! `print.rs` goes the other way: a [`Topology`] back to a [`ConfigFile`] and its TOML,
//! what `switchyard show config` prints.
//!
//! Files are not the only way in: [`crate::topology::builder`] assembles a
//! [`ConfigFile`] in code and hands it to the same [`validate`], so a topology built
//! in Rust obeys the same rules and gets the same messages as one read from disk.

mod addressing;
pub mod dns;
mod endpoint;
mod network;
pub mod overlay;
mod print;
mod publish;
mod routes;
mod switch;

pub use dns::{dns_name_ok, parse_dns_name};
pub use endpoint::{check_netns_path, AttachSection, EndpointSection, TrunkEntry, TrunkSection};
pub use network::NetworkSection;
pub use overlay::VxlanSection;
pub use publish::{parse_port_range, parse_publish, Publish};
pub use routes::{AllowSection, RouteSection};
pub use switch::{check_prefix, SwitchSection, MAX_PREFIX};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use switchyard_core::pipeline::{
    self, DomainGuard, DomainId, DomainMode, DomainSpec, GatewaySpec, NatSpec, NeighborConfig,
    PortId, PortSpec, PublishSpec, StaticRoute, Timeouts,
};
use switchyard_core::wire::{IpProtocol, Ipv4Cidr, MacAddr};
pub use switchyard_os::port::steer::Steering;
use switchyard_os::port::uring::IoMode;

/// The built-in default topology (also shipped as `examples/default.toml`).
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../../examples/default.toml");

// ---- the file as written ------------------------------------------------------

/// The config file, as parsed (before validation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub switch: SwitchSection,
    #[serde(default, rename = "network", skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkSection>,
    #[serde(default, rename = "endpoint", skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSection>,
    #[serde(default, rename = "allow", skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowSection>,
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSection>,
}

// ---- the validated model -------------------------------------------------------

/// A validated topology: every name resolved, every address assigned and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Where it came from (a path, or "built-in default"), for messages.
    pub source: String,
    /// Prefix of every namespace (and device) switchyard creates.
    pub prefix: String,
    pub fdb_max: usize,
    pub fdb_aging_secs: u32,
    pub conntrack_max: usize,
    pub neighbor: NeighborConfig,
    pub networks: Vec<Network>,
    pub endpoints: Vec<Endpoint>,
    /// Static routes: prefix via a router on one of the networks.
    pub routes: Vec<StaticRoute>,
    /// Pairs of networks (indexes into `networks`) joined for routing.
    pub allow: Vec<(usize, usize)>,
    /// Published ports, in the order declared.
    pub publish: Vec<Published>,
    pub nat_port_range: (u16, u16),
    pub timeouts: Timeouts,
    /// Dataplane workers (and queues per TAP), at least 1.
    pub workers: usize,
    /// Busy polling after the last packet, in microseconds (0: off).
    pub busy_poll_us: u64,
    /// How frames sent into a TAP are spread over the workers (`[switch] steering`).
    pub steering: Steering,
    /// Adaptive polling (`[switch] adaptive_poll`; `busy_poll_us` overrides it).
    pub adaptive_poll: bool,
    /// How the workers read and write the TAPs.
    pub io: IoMode,
    /// Where the DNS servers send the names they do not know (empty: they answer
    /// REFUSED).
    pub dns_upstream: Vec<SocketAddrV4>,
    /// The namespace whose network carries queries to `dns_upstream` (None:
    /// switchyard's own, as Docker's resolver uses the host's).
    pub dns_upstream_netns: Option<PathBuf>,
}

/// A published port: the uplink address's `host_port` leads to an endpoint's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Index into [`Topology::endpoints`].
    pub endpoint: usize,
    pub rule: Publish,
    /// The endpoint's address the flows go to (its eth0).
    pub target: Ipv4Addr,
}

/// A network: one bridge domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub subnet: Ipv4Cidr,
    pub gateway: Option<Gateway>,
    /// IP MTU of every interface on the network.
    pub mtu: u16,
    pub mode: DomainMode,
    pub proxy_arp: bool,
    pub masquerade: bool,
    pub external: bool,
    /// No way in or out (Docker's `--internal`).
    pub internal: bool,
    /// A DNS server answers at the gateway (resolved: never true without a gateway).
    pub dns: bool,
    /// The search domain of endpoints on the network, normalised (lowercase, no
    /// trailing dot); only with `dns`.
    pub dns_domain: Option<String>,
    /// Checksum and segmentation offloads on this network's TAPs.
    pub offloads: bool,
    /// A host interface attached as a port of the network (`parent`).
    pub parent: Option<Parent>,
    /// The 802.1Q VLAN id of the network's frames on trunk ports (`vlan = N`).
    pub vlan: Option<u16>,
    /// Source validation, port security and table shares.
    pub guard: DomainGuard,
    /// The network spans hosts over VXLAN (`vxlan = {...}`).
    pub vxlan: Option<Overlay>,
    /// An overlay network without `mtu`: its MTU is to come from the underlay when
    /// the tunnel is opened (which settles `mtu` and clears this).
    pub mtu_from_underlay: bool,
    /// The bridge domain it is in the pipeline. A config file numbers its networks
    /// in order; a running instance keeps each network's number for as long as the
    /// network exists, and gives a new one the lowest number free.
    pub domain: DomainId,
}

impl Network {
    /// Whether a DNS server answers at the network's gateway: what the pipeline's
    /// `DomainSpec.dns` is made from.
    pub fn serves_dns(&self) -> bool {
        self.dns && self.gateway.is_some()
    }
}

/// A host interface attached to a network as one of its ports (`parent`, after
/// macvlan's bridge mode): switchyard opens packet sockets on it and never creates,
/// deletes or reconfigures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// Its name in its namespace (`eth1`).
    pub ifname: String,
    /// The namespace it is in, by name or absolute path (`None`: switchyard's own).
    pub netns: Option<String>,
    /// The switchyard port it is: numbered after the endpoints' interfaces.
    pub port: PortId,
    /// How the endpoints appear on the LAN.
    pub mode: ParentMode,
}

/// How a network's endpoints appear on its parent's LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParentMode {
    /// Each with its own MAC (macvlan's bridge mode; the network's `mode = "bridge"`).
    #[default]
    Macvlan,
    /// All with the parent's MAC (ipvlan's L2 mode; `mode = "ipvlan-l2"`).
    IpvlanL2,
}

impl Parent {
    /// Its name as a port: `parent:eth1`.
    pub fn port_name(&self) -> String {
        format!("parent:{}", self.ifname)
    }
}

/// An overlay network's tunnel (`vxlan = {...}`, see [`overlay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub vni: u32,
    /// The underlay address tunnel packets leave from and arrive at.
    pub local: Ipv4Addr,
    /// The remote VTEPs: the only senders accepted, and where floods go.
    pub remotes: Vec<Ipv4Addr>,
    /// The UDP port (4789 unless given).
    pub port: u16,
    /// The namespace whose network carries the tunnel (None: switchyard's own).
    pub underlay_netns: Option<PathBuf>,
    /// Outer packets carry a UDP checksum (default: zero, as Linux sends).
    pub udp_csum: bool,
    /// The switchyard port that stands for every remote host of the network: after
    /// the endpoints' interfaces and the parents, one per overlay network in order.
    pub tunnel: PortId,
}

/// switchyard's own address on a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// An endpoint: a network namespace with interfaces eth0, eth1, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    /// The namespace's name: prefix + name; or, for a namespace switchyard did not
    /// create (`foreign`), the path it was attached by.
    pub netns: String,
    /// `netns = "/run/netns/x"`: a namespace someone else made, which switchyard only
    /// adds its interfaces to (and removes only them).
    pub foreign: bool,
    /// `handover = true` (with `foreign`): its one TAP is made in switchyard's own
    /// namespace, named by its `ifname`, for a container runtime to move into
    /// `netns`; switchyard sets no address, route or link state on it.
    pub handover: bool,
    /// No interfaces and `shares` unset: `mode = "none"` (only lo).
    pub interfaces: Vec<Interface>,
    /// `mode = "container:<other>"`: this endpoint is a second name for the namespace
    /// of endpoint `shares` (an index into [`Topology::endpoints`]).
    pub shares: Option<usize>,
    /// More DNS names of the endpoint, on every DNS network it is attached to,
    /// normalised (lowercase, no trailing dot).
    pub aliases: Vec<String>,
}

/// One TAP interface of an endpoint: one switchyard port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name inside the namespace: eth0, eth1, ...
    pub ifname: String,
    /// Index into [`Topology::networks`].
    pub network: usize,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The switchyard port it is: numbered in order in a config file, and kept for
    /// as long as the interface exists in a running instance (as `Network::domain`).
    pub port: PortId,
    /// Its place on the endpoint's trunk, if the endpoint has one (`trunk = [...]`).
    pub trunk: Option<TrunkRole>,
}

/// An interface's place on a trunk: an endpoint whose eth0 carries the frames of
/// several networks, each VLAN's tagged and on a sub-interface `eth0.N` in the
/// namespace, the native network's untagged and on eth0 itself. Its interfaces are
/// the native one (if any) and then the VLANs, in the order of `trunk`; all share
/// eth0's MAC. Each is a port of its own to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkRole {
    /// The 802.1Q VLAN id of its frames on eth0; `None`: the native network.
    pub vlan: Option<u16>,
    /// The first of the trunk's interfaces: its port reads eth0 for all of them
    /// (see `switchyard_os::port::vlan`).
    pub carrier: bool,
}

impl Topology {
    /// The display name of an endpoint's interface as a switchyard port: the endpoint
    /// name for eth0, `endpoint/ethN` for the others.
    /// A handed-over interface is its endpoint's only one, and its `ifname` only the
    /// name it had before the runtime renamed it: the port is named after the endpoint.
    pub fn port_name(endpoint: &Endpoint, iface: &Interface) -> String {
        if iface.ifname == "eth0" || endpoint.handover {
            endpoint.name.clone()
        } else {
            format!("{}/{}", endpoint.name, iface.ifname)
        }
    }

    /// The display name of an overlay network's tunnel port: `vxlan:NETWORK`.
    pub fn tunnel_name(network: &Network) -> String {
        format!("vxlan:{}", network.name)
    }

    /// Every overlay network with its tunnel, in order.
    pub fn tunnels(&self) -> impl Iterator<Item = (&Network, &Overlay)> {
        self.networks
            .iter()
            .filter_map(|n| n.vxlan.as_ref().map(|o| (n, o)))
    }

    /// The port that reads the trunk's device for `iface`, when that is another
    /// port: the trunk's carrier, for its other interfaces.
    pub fn carrier(endpoint: &Endpoint, iface: &Interface) -> Option<PortId> {
        if iface.trunk.is_none_or(|t| t.carrier) {
            return None;
        }
        endpoint
            .interfaces
            .iter()
            .find(|i| i.trunk.is_some_and(|t| t.carrier))
            .map(|i| i.port)
    }

    /// Every interface, endpoint by endpoint (each knows its port: `Interface::port`).
    pub fn interfaces(&self) -> impl Iterator<Item = (&Endpoint, &Interface)> {
        self.endpoints
            .iter()
            .flat_map(|e| e.interfaces.iter().map(move |i| (e, i)))
    }

    /// Every host interface attached to a network (`parent`), with its network.
    pub fn parents(&self) -> impl Iterator<Item = (&Network, &Parent)> {
        self.networks
            .iter()
            .filter_map(|n| n.parent.as_ref().map(|p| (n, p)))
    }

    /// What the pipeline is built from: domain `n.domain` for each network, port
    /// `i.port` for each interface, and vacant slots where a running instance removed
    /// one (see [`Interface::port`]).
    pub fn pipeline_spec(&self) -> pipeline::Spec {
        let slots = self.networks.iter().map(|n| n.domain.index() + 1).max();
        let mut domains = vec![DomainSpec::vacant(); slots.unwrap_or(0)];
        for n in &self.networks {
            domains[n.domain.index()] = DomainSpec {
                name: n.name.clone(),
                subnet: n.subnet,
                mtu: n.mtu,
                gateway: n.gateway.map(|g| GatewaySpec {
                    ip: g.ip,
                    mac: g.mac,
                }),
                mode: n.mode,
                proxy_arp: n.proxy_arp,
                masquerade: n.masquerade,
                external: n.external,
                // Until networks say whether they want it: every network with a
                // gateway but the uplink and Docker's own `default` (docker0 has no
                // embedded DNS either).
                dns: n.serves_dns(),
                guard: n.guard,
            };
        }
        let slots = self
            .interfaces()
            .map(|(_, i)| i.port)
            .chain(self.parents().map(|(_, p)| p.port))
            .chain(self.tunnels().map(|(_, o)| o.tunnel))
            .map(|p| p.index() + 1)
            .max();
        let mut ports = vec![PortSpec::vacant(); slots.unwrap_or(0)];
        for (e, i) in self.interfaces() {
            ports[i.port.index()] = PortSpec {
                name: Topology::port_name(e, i),
                domain: self.networks[i.network].domain,
                mac: Some(i.mac),
                ip: Some(i.ip),
                vlan: i.trunk.and_then(|t| t.vlan),
                carrier: Topology::carrier(e, i),
            };
        }
        // A parent carries the MACs and addresses of a whole LAN: none is its own.
        for (n, p) in self.parents() {
            ports[p.port.index()] = PortSpec::new(p.port_name(), n.domain);
        }
        for (n, o) in self.tunnels() {
            ports[o.tunnel.index()] = PortSpec::new(Topology::tunnel_name(n), n.domain);
        }
        pipeline::Spec {
            domains,
            ports,
            fdb_max: self.fdb_max,
            fdb_aging_secs: self.fdb_aging_secs,
            routes: self.routes.clone(),
            allow: self
                .allow
                .iter()
                .map(|&(a, b)| (self.networks[a].domain, self.networks[b].domain))
                .collect(),
            neighbor: self.neighbor,
            nat: NatSpec {
                publish: self
                    .publish
                    .iter()
                    .map(|p| PublishSpec {
                        proto: if p.rule.udp {
                            IpProtocol::UDP
                        } else {
                            IpProtocol::TCP
                        },
                        host_port: p.rule.host_port,
                        target: p.target,
                        target_port: p.rule.container_port,
                    })
                    .collect(),
                port_range: self.nat_port_range,
                conntrack_max: self.conntrack_max,
                timeouts: self.timeouts,
            },
        }
    }

    /// The external network, if there is one.
    pub fn external(&self) -> Option<&Network> {
        self.networks.iter().find(|n| n.external)
    }
}

// ---- errors ---------------------------------------------------------------------

/// One thing wrong with a config: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {} problem{}:\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, ProblemList(problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a [Problem]);

/// Most problems a message lists. A file (or a change request) with thousands of
/// the same mistake would otherwise make a message of megabytes, which helps no one
/// and is sent whole over the control socket; the count says how many there are.
const MAX_LISTED_PROBLEMS: usize = 20;

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().take(MAX_LISTED_PROBLEMS).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}: {}", p.field, p.reason)?;
        }
        if self.0.len() > MAX_LISTED_PROBLEMS {
            write!(f, "\n  ... and {} more", self.0.len() - MAX_LISTED_PROBLEMS)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The problems found, if the file parsed.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

// ---- loading and validation -------------------------------------------------------

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Topology, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// The built-in default topology.
pub fn default_topology() -> Topology {
    parse(DEFAULT_TOPOLOGY, "built-in default").expect("the built-in default is valid")
}

/// Parses and validates config text; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<Topology, ConfigError> {
    let raw: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    validate(&raw, file)
}

/// Longest name of a network or endpoint.
const MAX_NAME: usize = 48;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
        && !s.starts_with('-')
}

/// Collects the problems of one validation.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }
}

/// Checks a parsed file and resolves it into a [`Topology`].
///
/// Every pass runs even after problems were found, so that one run reports them
/// all; a pass that needs something an earlier one refused works with a stand-in.
/// Problems are listed in the order of the passes below.
pub fn validate(raw: &ConfigFile, file: &str) -> Result<Topology, ConfigError> {
    let mut c = Checker::default();
    let sw = &raw.switch;
    let neighbor = switch::check_tables(sw, &mut c);
    let networks = network::check(&raw.networks, sw.offloads, &mut c);
    network::check_shares(
        &raw.networks,
        sw.fdb_max,
        sw.neighbor_max,
        neighbor.held_max,
        &mut c,
    );
    let mut endpoints = endpoint::check(&raw.endpoints, &networks, &sw.prefix, &mut c);
    addressing::assign(
        &networks.list,
        &endpoints.pending,
        &mut endpoints.list,
        &mut c,
    );
    let allow = routes::check_allow(&raw.allow, &networks, &mut c);
    let routes = routes::check_routes(&raw.routes, &networks.list, &mut c);
    let publish = publish::check(&endpoints.publish, &endpoints.list, &networks, &mut c);
    let nat_port_range = publish::check_port_range(&sw.nat_port_range, &mut c);
    let timeouts = switch::check_timeouts(sw, &mut c);
    let workers = switch::check_workers(sw, &mut c);
    let io = switch::check_io(sw, &mut c);
    let (dns_upstream, dns_upstream_netns) = dns::check_upstreams(
        &sw.dns_upstream,
        sw.dns_upstream_netns.as_deref(),
        &networks.list,
        &mut c,
    );
    endpoint::check_port_count(&endpoints.list, &mut c);
    // Ports in order: endpoint by endpoint, interface by interface.
    for (k, i) in endpoints
        .list
        .iter_mut()
        .flat_map(|e| e.interfaces.iter_mut())
        .enumerate()
    {
        i.port = PortId(k as u16);
    }
    // Then the host interfaces attached to networks, network by network, and then
    // one tunnel port per overlay network.
    let taps = endpoints
        .list
        .iter()
        .map(|e| e.interfaces.len())
        .sum::<usize>();
    let mut networks = networks;
    for (k, p) in networks
        .list
        .iter_mut()
        .filter_map(|n| n.parent.as_mut())
        .enumerate()
    {
        p.port = PortId((taps + k) as u16);
    }
    let parents = networks.list.iter().filter(|n| n.parent.is_some()).count();
    for (k, o) in networks
        .list
        .iter_mut()
        .filter_map(|n| n.vxlan.as_mut())
        .enumerate()
    {
        o.tunnel = PortId((taps + parents + k) as u16);
    }
    overlay::check_sockets(&networks.list, &mut c);

    if !c.problems.is_empty() {
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            problems: c.problems,
        });
    }
    Ok(Topology {
        source: file.to_string(),
        prefix: sw.prefix.clone(),
        fdb_max: sw.fdb_max,
        fdb_aging_secs: sw.fdb_aging_secs,
        conntrack_max: sw.conntrack_max,
        neighbor,
        networks: networks.list,
        endpoints: endpoints.list,
        routes,
        allow,
        publish,
        nat_port_range,
        timeouts,
        workers,
        busy_poll_us: sw.busy_poll_us,
        steering: if sw.steering == "hash" {
            Steering::Hash
        } else {
            Steering::Cpu
        },
        adaptive_poll: sw.adaptive_poll,
        io,
        dns_upstream,
        dns_upstream_netns,
    })
}

#[cfg(test)]
mod tests;
