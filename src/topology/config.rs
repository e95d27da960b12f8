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

use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use switchyard_core::pipeline::{
    self, DomainId, DomainMode, DomainSpec, GatewaySpec, NatSpec, NeighborConfig, PortSpec,
    PublishSpec, StaticRoute, Timeouts,
};
use switchyard_core::wire::{IpProtocol, Ipv4Cidr, MacAddr};

/// The built-in default topology (also shipped as `examples/default.toml`).
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../examples/default.toml");

// ---- the file as written ------------------------------------------------------

/// The config file, as parsed (before validation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub switch: SwitchSection,
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkSection>,
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointSection>,
    #[serde(default, rename = "allow")]
    pub allow: Vec<AllowSection>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
}

/// `[switch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSection {
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_fdb_max")]
    pub fdb_max: usize,
    #[serde(default = "default_fdb_aging")]
    pub fdb_aging_secs: u32,
    #[serde(default = "default_conntrack_max")]
    pub conntrack_max: usize,
    /// How long a confirmed neighbor stays REACHABLE.
    #[serde(default = "default_arp_reachable")]
    pub arp_reachable_secs: u32,
    /// How long an unused STALE neighbor is kept.
    #[serde(default = "default_arp_stale")]
    pub arp_stale_secs: u32,
    /// ARP requests sent before a next hop is declared unreachable.
    #[serde(default = "default_arp_retries")]
    pub arp_retries: u8,
    /// Time between those requests.
    #[serde(default = "default_arp_retry_ms")]
    pub arp_retry_ms: u32,
    /// Packets queued per unresolved next hop.
    #[serde(default = "default_arp_queue")]
    pub arp_queue: u8,
    /// Neighbor table capacity.
    #[serde(default = "default_neighbor_max")]
    pub neighbor_max: usize,
    /// Source ports masquerade picks from when a flow's own is taken: "LOW-HIGH".
    #[serde(default = "default_nat_port_range")]
    pub nat_port_range: String,
    /// Conntrack timeouts in seconds (the kernel's defaults when absent).
    pub conntrack_tcp_established_secs: Option<u32>,
    pub conntrack_udp_secs: Option<u32>,
    pub conntrack_udp_stream_secs: Option<u32>,
    pub conntrack_icmp_secs: Option<u32>,
    /// Dataplane worker threads (and queues per TAP); 0: one per CPU core.
    #[serde(default)]
    pub workers: usize,
    /// Keep polling this many microseconds after the last packet before sleeping (0: off).
    #[serde(default)]
    pub busy_poll_us: u64,
    /// Use checksum and segmentation offloads on the TAPs (per network too).
    #[serde(default = "default_true")]
    pub offloads: bool,
}

fn default_true() -> bool {
    true
}

fn default_nat_port_range() -> String {
    "1024-65535".into()
}

fn default_arp_reachable() -> u32 {
    30
}
fn default_arp_stale() -> u32 {
    60
}
fn default_arp_retries() -> u8 {
    3
}
fn default_arp_retry_ms() -> u32 {
    1000
}
fn default_arp_queue() -> u8 {
    3
}
fn default_neighbor_max() -> usize {
    1024
}

fn default_prefix() -> String {
    "sy-".into()
}
fn default_fdb_max() -> usize {
    8192
}
fn default_fdb_aging() -> u32 {
    300
}
fn default_conntrack_max() -> usize {
    65536
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection {
            prefix: default_prefix(),
            fdb_max: default_fdb_max(),
            fdb_aging_secs: default_fdb_aging(),
            conntrack_max: default_conntrack_max(),
            arp_reachable_secs: default_arp_reachable(),
            arp_stale_secs: default_arp_stale(),
            arp_retries: default_arp_retries(),
            arp_retry_ms: default_arp_retry_ms(),
            arp_queue: default_arp_queue(),
            neighbor_max: default_neighbor_max(),
            nat_port_range: default_nat_port_range(),
            conntrack_tcp_established_secs: None,
            conntrack_udp_secs: None,
            conntrack_udp_stream_secs: None,
            conntrack_icmp_secs: None,
            workers: 0,
            busy_poll_us: 0,
            offloads: true,
        }
    }
}

/// `[[network]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub name: String,
    pub subnet: String,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub masquerade: bool,
    #[serde(default)]
    pub external: bool,
    /// "bridge" (default) or "l3".
    pub mode: Option<String>,
    #[serde(default)]
    pub proxy_arp: bool,
    /// Checksum and segmentation offloads on this network's TAPs (default: [switch]'s).
    pub offloads: Option<bool>,
}

/// `[[endpoint]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    pub name: String,
    pub network: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub attach: Vec<AttachSection>,
    pub mode: Option<String>,
}

/// One entry of `attach = [...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachSection {
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
}

/// `[[allow]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSection {
    pub between: Vec<String>,
}

/// `[[route]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub prefix: String,
    pub via: Ipv4Addr,
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
    /// Checksum and segmentation offloads on this network's TAPs.
    pub offloads: bool,
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
    /// The namespace's name: prefix + name.
    pub netns: String,
    /// No interfaces and `shares` unset: `mode = "none"` (only lo).
    pub interfaces: Vec<Interface>,
    /// `mode = "container:<other>"`: this endpoint is a second name for the namespace
    /// of endpoint `shares` (an index into [`Topology::endpoints`]).
    pub shares: Option<usize>,
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
}

impl Topology {
    /// The display name of an endpoint's interface as a switchyard port: the endpoint
    /// name for eth0, `endpoint/ethN` for the others.
    pub fn port_name(endpoint: &Endpoint, iface: &Interface) -> String {
        if iface.ifname == "eth0" {
            endpoint.name.clone()
        } else {
            format!("{}/{}", endpoint.name, iface.ifname)
        }
    }

    /// Every interface in port order (port `i` is the `i`-th item).
    pub fn interfaces(&self) -> impl Iterator<Item = (&Endpoint, &Interface)> {
        self.endpoints
            .iter()
            .flat_map(|e| e.interfaces.iter().map(move |i| (e, i)))
    }

    /// What the pipeline is built from.
    pub fn pipeline_spec(&self) -> pipeline::Spec {
        pipeline::Spec {
            domains: self
                .networks
                .iter()
                .map(|n| DomainSpec {
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
                })
                .collect(),
            ports: self
                .interfaces()
                .map(|(e, i)| PortSpec {
                    name: Topology::port_name(e, i),
                    domain: DomainId(i.network as u16),
                })
                .collect(),
            fdb_max: self.fdb_max,
            fdb_aging_secs: self.fdb_aging_secs,
            routes: self.routes.clone(),
            allow: self
                .allow
                .iter()
                .map(|&(a, b)| (DomainId(a as u16), DomainId(b as u16)))
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

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}: {}", p.field, p.reason)?;
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
/// Longest namespace prefix.
const MAX_PREFIX: usize = 12;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
        && !s.starts_with('-')
}

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

/// An interface before addresses are assigned.
struct Pending {
    endpoint: usize,
    ifname: String,
    network: usize,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
    field: String,
}

/// Checks a parsed file and resolves it into a [`Topology`].
pub fn validate(raw: &ConfigFile, file: &str) -> Result<Topology, ConfigError> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let sw = &raw.switch;

    // [switch]
    let prefix_ok = !sw.prefix.is_empty()
        && sw.prefix.len() <= MAX_PREFIX
        && sw
            .prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        && !sw.prefix.starts_with('.');
    if !prefix_ok {
        c.bad(
            "switch.prefix",
            format!("{:?} must be 1 to {MAX_PREFIX} characters of letters, digits, '-', '_' or '.', not starting with '.'", sw.prefix),
        );
    }
    if sw.fdb_max == 0 || sw.fdb_max > 1 << 24 {
        c.bad(
            "switch.fdb_max",
            format!("{} must be from 1 to {}", sw.fdb_max, 1 << 24),
        );
    }
    if sw.fdb_aging_secs == 0 {
        c.bad("switch.fdb_aging_secs", "must be at least 1 second");
    }
    if sw.conntrack_max == 0 || sw.conntrack_max > 1 << 24 {
        c.bad(
            "switch.conntrack_max",
            format!("{} must be from 1 to {}", sw.conntrack_max, 1 << 24),
        );
    }
    if sw.arp_reachable_secs == 0 {
        c.bad("switch.arp_reachable_secs", "must be at least 1 second");
    }
    if sw.arp_stale_secs == 0 {
        c.bad("switch.arp_stale_secs", "must be at least 1 second");
    }
    if sw.arp_retries == 0 || sw.arp_retries > 10 {
        c.bad(
            "switch.arp_retries",
            format!("{} must be from 1 to 10", sw.arp_retries),
        );
    }
    if sw.arp_retry_ms < 10 || sw.arp_retry_ms > 60_000 {
        c.bad(
            "switch.arp_retry_ms",
            format!("{} must be from 10 to 60000", sw.arp_retry_ms),
        );
    }
    if sw.arp_queue == 0 || usize::from(sw.arp_queue) > pipeline::neighbor::MAX_QUEUE {
        c.bad(
            "switch.arp_queue",
            format!(
                "{} must be from 1 to {}",
                sw.arp_queue,
                pipeline::neighbor::MAX_QUEUE
            ),
        );
    }
    if sw.neighbor_max == 0 || sw.neighbor_max > 1 << 20 {
        c.bad(
            "switch.neighbor_max",
            format!("{} must be from 1 to {}", sw.neighbor_max, 1 << 20),
        );
    }

    // [[network]]
    let mut networks: Vec<Network> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, n) in raw.networks.iter().enumerate() {
        let f = format!("network \"{}\"", n.name);
        let fld = |k: &str| format!("{f}.{k}");
        if !valid_name(&n.name) {
            c.bad(
                format!("network[{i}].name"),
                format!(
                    "{:?} must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                    n.name
                ),
            );
        }
        if by_name.contains_key(n.name.as_str()) {
            c.bad(fld("name"), "a network with this name is already defined");
        } else {
            by_name.insert(&n.name, i);
        }
        let subnet = match n.subnet.parse::<Ipv4Cidr>() {
            Ok(s) if s.prefix_len() > 30 => {
                c.bad(
                    fld("subnet"),
                    format!("{s} leaves no room for a gateway and hosts; use /30 or shorter"),
                );
                None
            }
            Ok(s) if s.trunc() != s => {
                c.bad(
                    fld("subnet"),
                    format!("{s} has host bits set; did you mean {}?", s.trunc()),
                );
                None
            }
            Ok(s) => Some(s),
            Err(e) => {
                c.bad(fld("subnet"), e);
                None
            }
        };
        if let Some(s) = subnet {
            for prev in &networks {
                if prev.subnet.overlaps(&s) {
                    c.bad(
                        fld("subnet"),
                        format!("{s} overlaps {} of network \"{}\"", prev.subnet, prev.name),
                    );
                }
            }
        }
        let mtu = match n.mtu {
            None => 1500,
            Some(m) if (68..=65535).contains(&m) => m as u16,
            Some(m) => {
                c.bad(
                    fld("mtu"),
                    format!("{m} is outside 68..=65535 (68 is the IPv4 minimum)"),
                );
                1500
            }
        };
        let gateway = match (n.gateway, subnet) {
            (Some(g), Some(s)) => {
                if !s.contains(g) {
                    c.bad(fld("gateway"), format!("{g} is outside the subnet {s}"));
                } else if g == s.network() || g == s.broadcast() {
                    c.bad(
                        fld("gateway"),
                        format!("{g} is the network or broadcast address of {s}"),
                    );
                }
                Some(Gateway {
                    ip: g,
                    mac: MacAddr::from_ipv4(g),
                })
            }
            (Some(g), None) => Some(Gateway {
                ip: g,
                mac: MacAddr::from_ipv4(g),
            }),
            (None, _) => None,
        };
        if n.external && gateway.is_none() {
            c.bad(fld("external"), "the external network needs a gateway: switchyard's uplink address, where published ports listen");
        }
        if n.masquerade && gateway.is_none() {
            c.bad(
                fld("masquerade"),
                "a masquerading network needs a gateway: its traffic is routed by switchyard",
            );
        }
        if n.masquerade && n.external {
            c.bad(fld("masquerade"), "the external network itself is not masqueraded; set masquerade on the inside networks");
        }
        if n.external && n.mode.as_deref() == Some("l3") {
            c.bad(fld("mode"), "the external network is a bridge network");
        }
        let mode = match n.mode.as_deref() {
            None | Some("bridge") => DomainMode::Bridge,
            Some("l3") => DomainMode::L3,
            Some(other) => {
                c.bad(
                    fld("mode"),
                    format!("{other:?} is not a network mode; use \"bridge\" or \"l3\""),
                );
                DomainMode::Bridge
            }
        };
        if gateway.is_none() && mode == DomainMode::L3 {
            c.bad(
                fld("mode"),
                "an L3 network needs a gateway: switchyard routes all of its traffic",
            );
        }
        if gateway.is_none() && n.proxy_arp {
            c.bad(
                fld("proxy_arp"),
                "proxy ARP needs a gateway: switchyard answers with the gateway MAC",
            );
        }
        networks.push(Network {
            name: n.name.clone(),
            subnet: subnet
                .unwrap_or_else(|| Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 32).expect("/32")),
            gateway,
            mtu,
            mode,
            proxy_arp: n.proxy_arp,
            masquerade: n.masquerade,
            external: n.external,
            offloads: n.offloads.unwrap_or(sw.offloads),
        });
    }
    let externals: Vec<&str> = networks
        .iter()
        .filter(|n| n.external)
        .map(|n| n.name.as_str())
        .collect();
    if externals.len() > 1 {
        c.bad(
            "network",
            format!(
                "only one network can be external, not {}",
                externals.join(", ")
            ),
        );
    }
    let has_external = !externals.is_empty();
    for n in networks.iter().filter(|n| n.masquerade) {
        if !has_external {
            c.bad(
                format!("network \"{}\".masquerade", n.name),
                "there is no external network (external = true) to masquerade to",
            );
        }
    }

    // [[endpoint]]
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut ep_names: HashMap<&str, usize> = HashMap::new();
    let mut shares: Vec<Option<String>> = Vec::new();
    let mut publish_raw: Vec<(usize, usize, Publish)> = Vec::new();
    for (i, e) in raw.endpoints.iter().enumerate() {
        let f = format!("endpoint \"{}\"", e.name);
        let fld = |k: &str| format!("{f}.{k}");
        if !valid_name(&e.name) {
            c.bad(
                format!("endpoint[{i}].name"),
                format!(
                    "{:?} must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                    e.name
                ),
            );
        }
        if ep_names.contains_key(e.name.as_str()) {
            c.bad(fld("name"), "an endpoint with this name is already defined");
        } else {
            ep_names.insert(&e.name, i);
        }
        for (k, p) in e.publish.iter().enumerate() {
            match parse_publish(p) {
                Ok(rule) => publish_raw.push((i, k, rule)),
                Err(why) => c.bad(format!("{f}.publish[{k}]"), why),
            }
        }
        let mut ifaces = Vec::new();
        let mut shares_name = None;
        match (&e.mode, &e.network, e.attach.is_empty()) {
            (Some(mode), _, _) => {
                if mode == "none" {
                    // Only lo: nothing to check.
                } else if let Some(other) =
                    mode.strip_prefix("container:").filter(|m| !m.is_empty())
                {
                    shares_name = Some(other.to_string());
                } else {
                    c.bad(fld("mode"), format!("{mode:?} is not a network mode; use \"none\" or \"container:<endpoint>\""));
                }
                if e.network.is_some()
                    || !e.attach.is_empty()
                    || e.ip.is_some()
                    || e.mac.is_some()
                    || !e.publish.is_empty()
                {
                    c.bad(
                        fld("mode"),
                        "an endpoint with a mode takes no network, attach, ip, mac or publish",
                    );
                }
            }
            (None, Some(net), true) => ifaces.push((net.clone(), e.ip, e.mac, f.clone())),
            (None, Some(_), false) => c.bad(
                fld("attach"),
                "give either network (one interface) or attach (several), not both",
            ),
            (None, None, false) => {
                if e.ip.is_some() || e.mac.is_some() {
                    c.bad(
                        f.clone(),
                        "with attach, put ip and mac inside each attach entry",
                    );
                }
                for (k, a) in e.attach.iter().enumerate() {
                    ifaces.push((a.network.clone(), a.ip, a.mac, format!("{f}.attach[{k}]")));
                }
            }
            (None, None, true) => c.bad(f.clone(), "needs a network (or attach, or mode)"),
        }
        shares.push(shares_name);
        let mut seen_nets = BTreeSet::new();
        for (k, (net, ip, mac, field)) in ifaces.into_iter().enumerate() {
            let Some(&ni) = by_name.get(net.as_str()) else {
                c.bad(
                    format!("{field}.network"),
                    format!("no network named {net:?}"),
                );
                continue;
            };
            if !seen_nets.insert(ni) {
                c.bad(
                    format!("{field}.network"),
                    format!("already attached to network {net:?}"),
                );
                continue;
            }
            pending.push(Pending {
                endpoint: i,
                ifname: format!("eth{k}"),
                network: ni,
                ip,
                mac,
                field,
            });
        }
        endpoints.push(Endpoint {
            name: e.name.clone(),
            netns: format!("{}{}", sw.prefix, e.name),
            interfaces: Vec::new(),
            shares: None,
        });
    }
    for (i, other) in shares.iter().enumerate() {
        let Some(other) = other else { continue };
        let f = format!("endpoint \"{}\".mode", endpoints[i].name);
        match ep_names.get(other.as_str()) {
            None => c.bad(
                f,
                format!("no endpoint named {other:?} to share a namespace with"),
            ),
            Some(&j) if j == i => c.bad(f, "an endpoint cannot share its own namespace"),
            Some(&j) if shares[j].is_some() => c.bad(
                f,
                format!("{other:?} itself shares another namespace; name that one instead"),
            ),
            Some(&j) => endpoints[i].shares = Some(j),
        }
    }

    // Explicit addresses first, so automatic ones never take an address someone asked for.
    let mut taken: HashMap<Ipv4Addr, String> = HashMap::new();
    for n in &networks {
        if let Some(g) = n.gateway {
            taken.insert(g.ip, format!("the gateway of network \"{}\"", n.name));
        }
    }
    let mut assigned: Vec<Option<Ipv4Addr>> = vec![None; pending.len()];
    for (p, slot) in pending.iter().zip(assigned.iter_mut()) {
        let Some(ip) = p.ip else { continue };
        let net = &networks[p.network];
        if !net.subnet.contains(ip) {
            c.bad(
                format!("{}.ip", p.field),
                format!(
                    "{ip} is outside network \"{}\" subnet {}",
                    net.name, net.subnet
                ),
            );
        } else if ip == net.subnet.network() || ip == net.subnet.broadcast() {
            c.bad(
                format!("{}.ip", p.field),
                format!("{ip} is the network or broadcast address of {}", net.subnet),
            );
        } else if let Some(owner) = taken.get(&ip) {
            c.bad(
                format!("{}.ip", p.field),
                format!("{ip} is already used by {owner}"),
            );
        } else {
            taken.insert(ip, p.field.clone());
            *slot = Some(ip);
        }
    }
    for (p, slot) in pending.iter().zip(assigned.iter_mut()) {
        if p.ip.is_some() {
            continue;
        }
        let net = &networks[p.network];
        let first = u32::from(net.subnet.network()) + 1;
        let last = u32::from(net.subnet.broadcast());
        let free = (first..last)
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains_key(a));
        match free {
            Some(ip) => {
                taken.insert(ip, p.field.clone());
                *slot = Some(ip);
            }
            None => c.bad(
                format!("{}.ip", p.field),
                format!(
                    "network \"{}\" ({}) has no free address left",
                    net.name, net.subnet
                ),
            ),
        }
    }

    // MACs: explicit ones must be unicast and unique, derived ones follow the IP.
    let mut macs: HashMap<MacAddr, String> = HashMap::new();
    for n in &networks {
        if let Some(g) = n.gateway {
            macs.insert(g.mac, format!("the gateway of network \"{}\"", n.name));
        }
    }
    for (p, ip) in pending.iter().zip(&assigned) {
        let Some(ip) = *ip else { continue };
        let mac = p.mac.unwrap_or_else(|| MacAddr::from_ipv4(ip));
        if let Some(m) = p.mac {
            if m.is_multicast() || m.is_zero() {
                c.bad(
                    format!("{}.mac", p.field),
                    format!("{m} is a multicast or zero address; an interface needs a unicast MAC"),
                );
                continue;
            }
        }
        if let Some(owner) = macs.get(&mac) {
            c.bad(
                format!("{}.mac", p.field),
                format!("{mac} is already used by {owner}"),
            );
            continue;
        }
        macs.insert(mac, p.field.clone());
        endpoints[p.endpoint].interfaces.push(Interface {
            ifname: p.ifname.clone(),
            network: p.network,
            ip,
            mac,
        });
    }

    // [[allow]]: pairs of networks switchyard may route between.
    let mut allow = Vec::new();
    for (i, a) in raw.allow.iter().enumerate() {
        let f = format!("allow[{i}].between");
        if a.between.len() != 2 || a.between[0] == a.between[1] {
            c.bad(f.clone(), "names exactly two different networks");
            continue;
        }
        let mut pair = [0usize; 2];
        let mut ok = true;
        for (k, n) in a.between.iter().enumerate() {
            match by_name.get(n.as_str()) {
                None => {
                    c.bad(f.clone(), format!("no network named {n:?}"));
                    ok = false;
                }
                Some(&idx) if networks[idx].gateway.is_none() => {
                    c.bad(f.clone(), format!("network {n:?} has no gateway, so switchyard cannot route to or from it"));
                    ok = false;
                }
                Some(&idx) => pair[k] = idx,
            }
        }
        if ok {
            allow.push((pair[0], pair[1]));
        }
    }

    // [[route]]: the next hop must sit on a network switchyard has an address on.
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let f = format!("route[{i}]");
        let prefix = match r.prefix.parse::<Ipv4Cidr>() {
            Ok(p) if p.trunc() != p => {
                c.bad(
                    format!("{f}.prefix"),
                    format!("{p} has host bits set; did you mean {}?", p.trunc()),
                );
                continue;
            }
            Ok(p) => p,
            Err(e) => {
                c.bad(format!("{f}.prefix"), e);
                continue;
            }
        };
        if let Some(n) = networks
            .iter()
            .find(|n| n.subnet == prefix && n.gateway.is_some())
        {
            c.bad(
                format!("{f}.prefix"),
                format!(
                    "{prefix} is network \"{}\" itself, already routed directly",
                    n.name
                ),
            );
            continue;
        }
        match networks
            .iter()
            .find(|n| n.gateway.is_some() && n.subnet.contains(r.via))
        {
            None => c.bad(
                format!("{f}.via"),
                format!(
                    "{} is not inside a network with a gateway, so switchyard cannot reach it",
                    r.via
                ),
            ),
            Some(n) if n.gateway.is_some_and(|g| g.ip == r.via) => c.bad(
                format!("{f}.via"),
                format!(
                    "{} is switchyard's own address on network \"{}\"",
                    r.via, n.name
                ),
            ),
            Some(_) => routes.push(StaticRoute { prefix, via: r.via }),
        }
    }

    // Published ports: on the uplink address, one endpoint per (protocol, port).
    let mut publish = Vec::new();
    let mut seen_ports: HashMap<(bool, u16), String> = HashMap::new();
    for &(i, k, rule) in &publish_raw {
        let e = &endpoints[i];
        let f = format!("endpoint \"{}\".publish[{k}]", e.name);
        if !has_external {
            c.bad(f, "publishing needs an external network (external = true): ports are published on its gateway address");
            continue;
        }
        let Some(eth0) = e.interfaces.first() else {
            c.bad(
                f,
                "an endpoint without a network of its own has nothing to publish",
            );
            continue;
        };
        if networks[eth0.network].external {
            c.bad(
                f,
                "the endpoint is on the external network already; publishing is for the inside",
            );
            continue;
        }
        let proto = if rule.udp { "udp" } else { "tcp" };
        if let Some(other) = seen_ports.get(&(rule.udp, rule.host_port)) {
            c.bad(
                f,
                format!("{}/{proto} is already published by {other}", rule.host_port),
            );
            continue;
        }
        seen_ports.insert(
            (rule.udp, rule.host_port),
            format!("endpoint \"{}\"", e.name),
        );
        publish.push(Published {
            endpoint: i,
            rule,
            target: eth0.ip,
        });
    }
    let nat_port_range = match parse_port_range(&sw.nat_port_range) {
        Ok(r) => r,
        Err(why) => {
            c.bad("switch.nat_port_range", why);
            (1024, 65535)
        }
    };
    let mut timeouts = Timeouts::default();
    for (field, value, slot) in [
        (
            "switch.conntrack_tcp_established_secs",
            sw.conntrack_tcp_established_secs,
            &mut timeouts.tcp[2],
        ),
        (
            "switch.conntrack_udp_secs",
            sw.conntrack_udp_secs,
            &mut timeouts.udp_unreplied,
        ),
        (
            "switch.conntrack_udp_stream_secs",
            sw.conntrack_udp_stream_secs,
            &mut timeouts.udp_assured,
        ),
        (
            "switch.conntrack_icmp_secs",
            sw.conntrack_icmp_secs,
            &mut timeouts.icmp,
        ),
    ] {
        match value {
            Some(0) => c.bad(field, "must be at least 1 second"),
            Some(v) => *slot = v,
            None => {}
        }
    }

    if sw.workers > 64 {
        c.bad(
            "switch.workers",
            format!("{} workers is more than 64", sw.workers),
        );
    }
    if sw.busy_poll_us > 1_000_000 {
        c.bad("switch.busy_poll_us", "at most 1000000 (one second)");
    }

    let port_count: usize = endpoints.iter().map(|e| e.interfaces.len()).sum();
    if port_count >= usize::from(u16::MAX) {
        c.bad(
            "endpoint",
            format!("{port_count} interfaces; at most {}", u16::MAX - 1),
        );
    }

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
        neighbor: NeighborConfig {
            reachable_ms: u64::from(sw.arp_reachable_secs) * 1000,
            stale_ms: u64::from(sw.arp_stale_secs) * 1000,
            retrans_ms: u64::from(sw.arp_retry_ms),
            probes: sw.arp_retries,
            queue_len: sw.arp_queue,
            max: sw.neighbor_max,
            held_max: 256,
        },
        networks,
        endpoints,
        routes,
        allow,
        publish,
        nat_port_range,
        timeouts,
        workers: if sw.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            sw.workers
        },
        busy_poll_us: sw.busy_poll_us,
    })
}

/// Parses a port range "LOW-HIGH" (inclusive, 1..=65535, LOW <= HIGH).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range like \"1024-65535\""))?;
    let p = |x: &str| x.trim().parse::<u16>().ok().filter(|&n| n != 0);
    match (p(a), p(b)) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(format!(
            "{s:?} is not a range of ports LOW-HIGH with 1 <= LOW <= HIGH <= 65535"
        )),
    }
}

/// A published port, `HOST:CONTAINER[/tcp|/udp]` as `docker run -p` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
}

/// Parses `8080:80/tcp`, `5353:53/udp` or `8080:80` (TCP).
pub fn parse_publish(s: &str) -> Result<Publish, String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (s, "tcp"),
    };
    let udp = match proto {
        "tcp" => false,
        "udp" => true,
        other => return Err(format!("{s:?}: protocol {other:?} is not tcp or udp")),
    };
    let (h, c) = ports
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:CONTAINER[/tcp|udp], like \"8080:80/tcp\""))?;
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| format!("{s:?}: {p:?} is not a port from 1 to 65535"))
    };
    Ok(Publish {
        host_port: port(h)?,
        container_port: port(c)?,
        udp,
    })
}

#[cfg(test)]
mod tests;
