//! Topologies built in Rust instead of read from a file — for tests, the benchmark
//! harness and tools that make topologies of their own.
//!
//! A builder assembles the same [`ConfigFile`] a TOML file parses into, section by
//! section, and [`TopologyBuilder::build`] hands it to the same [`config::validate`]:
//! one set of rules, one set of messages, whichever way a topology comes in. What a
//! builder cannot check by types — a mistyped address given as text — is refused at
//! `build` as a [`ConfigError::Parse`], as a file with a bad value would be.
//!
//! ```
//! use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology};
//!
//! let topology = Topology::builder()
//!     .prefix("demo-")
//!     .switch(|s| s.workers = 1)
//!     .network(
//!         NetworkBuilder::new("front", "10.1.0.0/24")
//!             .gateway("10.1.0.1")
//!             .masquerade(),
//!     )
//!     .network(NetworkBuilder::new("back", "10.2.0.0/24").gateway("10.2.0.1").mtu(9000))
//!     .network(
//!         NetworkBuilder::new("outside", "198.51.100.0/24")
//!             .gateway("198.51.100.1")
//!             .external(),
//!     )
//!     .endpoint(EndpointBuilder::new("web").on("front").ip("10.1.0.2").publish("8080:80/tcp"))
//!     // Several interfaces: eth0 on front, eth1 on back (with an automatic address).
//!     .endpoint(EndpointBuilder::new("api").on("front").on("back"))
//!     .endpoint(EndpointBuilder::new("sidecar").container("web"))
//!     .allow("front", "back")
//!     .route("10.9.0.0/16", "10.2.0.254")
//!     .build()
//!     .expect("a valid topology");
//! assert_eq!(topology.endpoints[1].interfaces[1].ifname, "eth1");
//! ```
//!
//! [`TopologyBuilder::to_toml`] prints the file a builder stands for, which parses to
//! the same topology.

use super::config::{
    self, AllowSection, AttachSection, ConfigError, ConfigFile, EndpointSection, NetworkSection,
    RouteSection, SwitchSection, Topology, TrunkEntry, TrunkSection,
};
use std::net::Ipv4Addr;
use switchyard_core::wire::MacAddr;

/// What [`TopologyBuilder::build`] calls the topology in messages (and in
/// [`Topology::source`]) unless [`TopologyBuilder::source`] names it.
pub const BUILT: &str = "built topology";

impl Topology {
    /// A builder with every `[switch]` setting at its default and nothing else.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::new()
    }
}

/// An address a builder takes either typed or as the text a config file would hold.
/// Text that does not parse is reported when the topology is built.
pub trait AddrArg<T> {
    fn into_addr(self) -> Result<T, String>;
}

impl AddrArg<Ipv4Addr> for Ipv4Addr {
    fn into_addr(self) -> Result<Ipv4Addr, String> {
        Ok(self)
    }
}

impl AddrArg<Ipv4Addr> for [u8; 4] {
    fn into_addr(self) -> Result<Ipv4Addr, String> {
        Ok(self.into())
    }
}

impl AddrArg<MacAddr> for MacAddr {
    fn into_addr(self) -> Result<MacAddr, String> {
        Ok(self)
    }
}

impl AddrArg<MacAddr> for [u8; 6] {
    fn into_addr(self) -> Result<MacAddr, String> {
        Ok(MacAddr(self))
    }
}

impl AddrArg<Ipv4Addr> for &str {
    fn into_addr(self) -> Result<Ipv4Addr, String> {
        self.parse()
            .map_err(|_| format!("{self:?} is not an IPv4 address"))
    }
}

impl AddrArg<MacAddr> for &str {
    fn into_addr(self) -> Result<MacAddr, String> {
        self.parse().map_err(|e| format!("{e}"))
    }
}

/// Records the value of `arg`, or why it is not one, under `field`.
fn take<T>(arg: impl AddrArg<T>, field: String, errors: &mut Vec<String>) -> Option<T> {
    match arg.into_addr() {
        Ok(v) => Some(v),
        Err(why) => {
            errors.push(format!("{field}: {why}"));
            None
        }
    }
}

/// Builds a [`Topology`]: the `[switch]` settings, then networks, endpoints,
/// `[[allow]]` and `[[route]]` in the order they are added, as a file lists them.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    file: ConfigFile,
    source: String,
    /// Values that could not be taken (text that is not an address), each with its field.
    errors: Vec<String>,
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        TopologyBuilder::new()
    }
}

impl TopologyBuilder {
    pub fn new() -> TopologyBuilder {
        TopologyBuilder {
            file: ConfigFile::default(),
            source: BUILT.to_string(),
            errors: Vec::new(),
        }
    }

    /// Names the topology in messages, as a file's path does.
    pub fn source(mut self, name: impl Into<String>) -> Self {
        self.source = name.into();
        self
    }

    /// `[switch] prefix`: the start of every namespace name.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.file.switch.prefix = prefix.into();
        self
    }

    /// Sets any `[switch]` key: `.switch(|s| { s.workers = 2; s.offloads = false; })`.
    pub fn switch(mut self, set: impl FnOnce(&mut SwitchSection)) -> Self {
        set(&mut self.file.switch);
        self
    }

    /// Adds a `[[network]]`.
    pub fn network(mut self, n: NetworkBuilder) -> Self {
        self.errors.extend(n.errors);
        self.file.networks.push(n.section);
        self
    }

    /// Adds an `[[endpoint]]`.
    pub fn endpoint(mut self, e: EndpointBuilder) -> Self {
        let (section, errors) = e.finish();
        self.errors.extend(errors);
        self.file.endpoints.push(section);
        self
    }

    /// Adds `[[allow]] between = [a, b]`: switchyard routes between the two networks.
    pub fn allow(mut self, a: impl Into<String>, b: impl Into<String>) -> Self {
        self.file.allow.push(AllowSection {
            between: vec![a.into(), b.into()],
        });
        self
    }

    /// Adds a `[[route]]`: `prefix` (like "10.9.0.0/16") via the router at `via`.
    pub fn route(mut self, prefix: impl ToString, via: impl AddrArg<Ipv4Addr>) -> Self {
        let field = format!("route[{}].via", self.file.routes.len());
        // A `via` that is not an address stands in as 0.0.0.0, so the routes after it
        // keep their index; build() refuses the topology before validating it.
        let via = take(via, field, &mut self.errors).unwrap_or(Ipv4Addr::UNSPECIFIED);
        self.file.routes.push(RouteSection {
            prefix: prefix.to_string(),
            via,
        });
        self
    }

    /// The config file this builder stands for, as parsing its TOML would give it.
    pub fn config(&self) -> Result<&ConfigFile, ConfigError> {
        if self.errors.is_empty() {
            Ok(&self.file)
        } else {
            Err(ConfigError::Parse {
                file: self.source.clone(),
                message: self.errors.join("\n"),
            })
        }
    }

    /// Validates the topology, with the rules and messages of a config file.
    pub fn build(&self) -> Result<Topology, ConfigError> {
        config::validate(self.config()?, &self.source)
    }

    /// The config file as TOML, sections in the order of the config contract.
    /// `[switch]` keys at their defaults are left out, so the text holds what this
    /// topology sets and nothing else.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let file = self.config()?;
        let print = |what: &str, r: Result<String, toml::ser::Error>| {
            r.unwrap_or_else(|e| panic!("{what} prints as TOML: {e}"))
        };
        // Every [switch] value is a scalar on a line of its own, so a line that
        // reads the same as in the defaults' text is a key left at its default.
        let defaults = print("[switch]", toml::to_string(&SwitchSection::default()));
        let switch = print("[switch]", toml::to_string(&file.switch));
        let set: Vec<&str> = switch
            .lines()
            .filter(|l| !defaults.lines().any(|d| d == *l))
            .collect();
        let mut text = String::new();
        if !set.is_empty() {
            text = format!("[switch]\n{}\n\n", set.join("\n"));
        }
        let sections = Sections {
            networks: &file.networks,
            endpoints: &file.endpoints,
            allow: &file.allow,
            routes: &file.routes,
        };
        text += &print("the sections", toml::to_string(&sections));
        Ok(text)
    }
}

/// The sections after `[switch]`, in the order of [`ConfigFile`].
#[derive(serde::Serialize)]
struct Sections<'a> {
    #[serde(rename = "network", skip_serializing_if = "<[_]>::is_empty")]
    networks: &'a [NetworkSection],
    #[serde(rename = "endpoint", skip_serializing_if = "<[_]>::is_empty")]
    endpoints: &'a [EndpointSection],
    #[serde(rename = "allow", skip_serializing_if = "<[_]>::is_empty")]
    allow: &'a [AllowSection],
    #[serde(rename = "route", skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [RouteSection],
}

/// Builds a `[[network]]`: a name and a subnet, and optionally the rest.
#[derive(Debug, Clone)]
pub struct NetworkBuilder {
    section: NetworkSection,
    errors: Vec<String>,
}

impl NetworkBuilder {
    /// A bridged network without a gateway: `subnet` like "10.1.0.0/24".
    pub fn new(name: impl Into<String>, subnet: impl ToString) -> NetworkBuilder {
        NetworkBuilder {
            section: NetworkSection {
                name: name.into(),
                subnet: subnet.to_string(),
                ..NetworkSection::default()
            },
            errors: Vec::new(),
        }
    }

    fn field(&self, key: &str) -> String {
        format!("network \"{}\".{key}", self.section.name)
    }

    /// switchyard's own address on the network.
    pub fn gateway(mut self, ip: impl AddrArg<Ipv4Addr>) -> Self {
        let field = self.field("gateway");
        self.section.gateway = take(ip, field, &mut self.errors);
        self
    }

    /// The 802.1Q VLAN id of the network's frames on trunk ports (`vlan = N`).
    pub fn vlan(mut self, id: u32) -> Self {
        self.section.vlan = Some(id);
        self
    }

    /// The IP MTU of every interface on the network.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.section.mtu = Some(mtu);
        self
    }

    /// Traffic leaving through the external network takes its gateway address.
    pub fn masquerade(mut self) -> Self {
        self.section.masquerade = true;
        self
    }

    /// The way out: published ports listen on this network's gateway address.
    pub fn external(mut self) -> Self {
        self.section.external = true;
        self
    }

    /// `mode = "l3"`: switchyard routes all traffic, even within the network.
    pub fn l3(mut self) -> Self {
        self.section.mode = Some("l3".into());
        self
    }

    /// switchyard answers ARP for every address of the subnet with the gateway MAC.
    pub fn proxy_arp(mut self) -> Self {
        self.section.proxy_arp = true;
        self
    }

    /// Checksum and segmentation offloads on this network's TAPs (else `[switch]`'s).
    pub fn offloads(mut self, on: bool) -> Self {
        self.section.offloads = Some(on);
        self
    }

    /// This network's share of the conntrack table (`conntrack_max`).
    pub fn conntrack_max(mut self, max: usize) -> Self {
        self.section.conntrack_max = Some(max);
        self
    }

    /// `rp_filter = false`: routed packets' sources are not validated.
    pub fn rp_filter(mut self, on: bool) -> Self {
        self.section.rp_filter = Some(on);
        self
    }

    /// `port_security = true`: endpoints send only with their own MAC and address.
    pub fn port_security(mut self) -> Self {
        self.section.port_security = true;
        self
    }

    /// `icc = false`: endpoints reach the gateway and beyond, but not each other.
    pub fn icc(mut self, on: bool) -> Self {
        self.section.icc = Some(on);
        self
    }

    /// `fdb_max`: the network's share of the FDB.
    pub fn fdb_max(mut self, n: usize) -> Self {
        self.section.fdb_max = Some(n);
        self
    }

    /// `neighbor_max`: the network's share of the neighbor table.
    pub fn neighbor_max(mut self, n: usize) -> Self {
        self.section.neighbor_max = Some(n);
        self
    }

    /// `held_max`: packets at most waiting for next hops on the network.
    pub fn held_max(mut self, n: usize) -> Self {
        self.section.held_max = Some(n);
        self
    }

    /// `dns`: a DNS server at the gateway, or none (default: see `config::dns`).
    pub fn dns(mut self, on: bool) -> Self {
        self.section.dns = Some(on);
        self
    }

    /// `dns_domain`: the search domain of the network's endpoints.
    pub fn dns_domain(mut self, domain: impl Into<String>) -> Self {
        self.section.dns_domain = Some(domain.into());
        self
    }

    /// `mode = "ipvlan-l2"`: the endpoints show the parent's LAN the parent's MAC
    /// (needs [`parent`](Self::parent)).
    pub fn ipvlan_l2(mut self) -> Self {
        self.section.mode = Some("ipvlan-l2".into());
        self
    }

    /// `parent` (and `parent_netns`): the existing interface `ifname`, in namespace
    /// `netns` (a name or an absolute path; `None`: switchyard's own), attached as a
    /// port of the network.
    pub fn parent(mut self, ifname: impl Into<String>, netns: Option<&str>) -> Self {
        self.section.parent = Some(ifname.into());
        self.section.parent_netns = netns.map(str::to_string);
        self
    }
}

/// Builds an `[[endpoint]]`. Each [`on`](Self::on) adds an interface (eth0, eth1, ...
/// in order); [`ip`](Self::ip) and [`mac`](Self::mac) set those of the interface
/// added last. One interface is written as `network = ...`, several as `attach`.
#[derive(Debug, Clone)]
pub struct EndpointBuilder {
    name: String,
    interfaces: Vec<AttachSection>,
    publish: Vec<String>,
    mode: Option<String>,
    aliases: Vec<String>,
    trunk: Vec<TrunkEntry>,
    native: Option<(String, Option<Ipv4Addr>)>,
    errors: Vec<String>,
}

impl EndpointBuilder {
    pub fn new(name: impl Into<String>) -> EndpointBuilder {
        EndpointBuilder {
            name: name.into(),
            interfaces: Vec::new(),
            publish: Vec::new(),
            mode: None,
            aliases: Vec::new(),
            trunk: Vec::new(),
            native: None,
            errors: Vec::new(),
        }
    }

    /// Adds a tagged network to the endpoint's trunk (`trunk = [...]`): its VLAN
    /// device `eth0.N` gets address `ip`.
    pub fn trunk(mut self, network: impl Into<String>, ip: impl AddrArg<Ipv4Addr>) -> Self {
        let ip = take(ip, self.field("trunk"), &mut self.errors);
        self.trunk.push(TrunkEntry::With(TrunkSection {
            network: network.into(),
            ip,
        }));
        self
    }

    /// The trunk's native network (`native`), untagged on eth0 with address `ip`.
    pub fn native(mut self, network: impl Into<String>, ip: impl AddrArg<Ipv4Addr>) -> Self {
        let ip = take(ip, self.field("native"), &mut self.errors);
        self.native = Some((network.into(), ip));
        self
    }

    fn field(&self, key: &str) -> String {
        format!("endpoint \"{}\".{key}", self.name)
    }

    /// Adds an interface on `network`; its address is automatic until [`ip`](Self::ip).
    pub fn on(mut self, network: impl Into<String>) -> Self {
        self.interfaces.push(AttachSection {
            network: network.into(),
            ..AttachSection::default()
        });
        self
    }

    /// The address of the interface added last.
    pub fn ip(mut self, ip: impl AddrArg<Ipv4Addr>) -> Self {
        let field = self.field("ip");
        if let Some(ip) = take(ip, field.clone(), &mut self.errors) {
            match self.interfaces.last_mut() {
                Some(i) => i.ip = Some(ip),
                None => self.errors.push(format!(
                    "{field}: an address belongs to an interface; add one with on(network) first"
                )),
            }
        }
        self
    }

    /// The MAC of the interface added last.
    pub fn mac(mut self, mac: impl AddrArg<MacAddr>) -> Self {
        let field = self.field("mac");
        if let Some(mac) = take(mac, field.clone(), &mut self.errors) {
            match self.interfaces.last_mut() {
                Some(i) => i.mac = Some(mac),
                None => self.errors.push(format!(
                    "{field}: a MAC belongs to an interface; add one with on(network) first"
                )),
            }
        }
        self
    }

    /// Publishes a port, `HOST:CONTAINER[/tcp|/udp]` as `docker run -p` takes it.
    pub fn publish(mut self, rule: impl Into<String>) -> Self {
        self.publish.push(rule.into());
        self
    }

    /// One more DNS name of the endpoint (`aliases`).
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.aliases.push(name.into());
        self
    }

    /// `mode = "none"`: a namespace with only `lo`.
    pub fn none(mut self) -> Self {
        self.mode = Some("none".into());
        self
    }

    /// `mode = "container:<endpoint>"`: a second name for `endpoint`'s namespace.
    pub fn container(mut self, endpoint: &str) -> Self {
        self.mode = Some(format!("container:{endpoint}"));
        self
    }

    fn finish(self) -> (EndpointSection, Vec<String>) {
        let mut section = EndpointSection {
            name: self.name,
            network: None,
            ip: None,
            publish: self.publish,
            mode: self.mode,
            aliases: self.aliases,
            trunk: self.trunk,
            ..EndpointSection::default()
        };
        if let Some((network, ip)) = self.native {
            section.native = Some(network);
            section.ip = ip;
        }
        match <[AttachSection; 1]>::try_from(self.interfaces) {
            Ok([one]) => {
                section.network = Some(one.network);
                section.ip = one.ip;
                section.mac = one.mac;
                section.ifname = one.ifname;
            }
            Err(several_or_none) => section.attach = several_or_none,
        }
        (section, self.errors)
    }
}

#[cfg(test)]
mod tests;
