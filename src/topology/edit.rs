//! Changes to a running topology, as a config file would express them.
//!
//! A change (`network create`, `endpoint rm`, `allow add`, ...) is applied to the
//! config file of what runs now ([`Topology::to_config`]), and the result is
//! validated as a whole by the same [`validate`] a file goes through: a change is
//! refused for the same reasons, in the same words, as the file it amounts to.
//!
//! Two things a file does not say are carried over from the running topology by
//! [`keep_numbers`]: which bridge domain each network is and which port each
//! interface is. The pipeline's tables refer to both by number, so a network or an
//! interface keeps its number for as long as it exists, and a new one takes the
//! lowest number free (one freed by an earlier change, whose table entries were
//! forgotten when it went).
//!
//! [`Diff`] then says what the machine must gain and lose: endpoints and interfaces
//! to make, ports to stop reading, networks whose table entries to forget.

use super::config::{validate, AttachSection, ConfigFile, Endpoint, EndpointSection, Topology};
use super::config::{AllowSection, NetworkSection, ParentMode, RouteSection};
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use switchyard_core::pipeline::{DomainId, PortId};
use switchyard_core::wire::{Ipv4Cidr, MacAddr};

/// Where a refused change's problems say they come from.
pub const SOURCE: &str = "the running topology";

/// Why a change cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The change breaks a rule of the config file (the message lists each problem).
    #[error("{0}")]
    Invalid(String),
    /// It names a network, endpoint, rule or route that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something else still uses what it would remove.
    #[error("{0}")]
    InUse(String),
}

/// One change, in the words of the control protocol's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    NetworkCreate {
        name: String,
        subnet: String,
        gateway: Option<String>,
        mtu: Option<u32>,
        masquerade: bool,
        internal: bool,
        icc: Option<bool>,
        dns: Option<bool>,
        dns_domain: Option<String>,
    },
    NetworkRm {
        name: String,
    },
    Connect {
        network: String,
        endpoint: String,
        ip: Option<String>,
        ifname: Option<String>,
    },
    Disconnect {
        network: String,
        endpoint: String,
    },
    EndpointCreate {
        name: String,
        network: String,
        ip: Option<String>,
        mac: Option<String>,
        publish: Vec<String>,
        netns: Option<String>,
        ifname: Option<String>,
        aliases: Vec<String>,
        handover: bool,
    },
    EndpointRm {
        name: String,
    },
    AllowAdd {
        a: String,
        b: String,
    },
    AllowRm {
        a: String,
        b: String,
    },
    RouteAdd {
        prefix: String,
        via: String,
    },
    RouteRm {
        prefix: String,
        via: String,
    },
}

/// Parses an address argument, naming the argument when it is not one.
fn parse<T: std::str::FromStr>(what: &str, v: &str) -> Result<T, EditError>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>()
        .map_err(|e| EditError::Invalid(format!("{what} {v:?}: {e}")))
}

/// [`parse`] of an argument that may be left out.
fn addr<T: std::str::FromStr>(what: &str, s: &Option<String>) -> Result<Option<T>, EditError>
where
    T::Err: std::fmt::Display,
{
    s.as_deref().map(|v| parse(what, v)).transpose()
}

impl Edit {
    /// What the change does, in words (`endpoint web removed`).
    pub fn describe(&self) -> String {
        match self {
            Edit::NetworkCreate { name, .. } => format!("network {name} created"),
            Edit::NetworkRm { name } => format!("network {name} removed"),
            Edit::Connect {
                network, endpoint, ..
            } => format!("endpoint {endpoint} connected to network {network}"),
            Edit::Disconnect { network, endpoint } => {
                format!("endpoint {endpoint} disconnected from network {network}")
            }
            Edit::EndpointCreate { name, .. } => format!("endpoint {name} created"),
            Edit::EndpointRm { name } => format!("endpoint {name} removed"),
            Edit::AllowAdd { a, b } => format!("networks {a} and {b} joined"),
            Edit::AllowRm { a, b } => format!("networks {a} and {b} no longer joined"),
            Edit::RouteAdd { prefix, via } => format!("route {prefix} via {via} added"),
            Edit::RouteRm { prefix, via } => format!("route {prefix} via {via} removed"),
        }
    }

    /// The config file `running` amounts to with this change made, checked by the
    /// same rules as any file, as a topology; its networks and interfaces keep the
    /// numbers they have in `running`.
    pub fn apply(&self, running: &Topology) -> Result<Topology, EditError> {
        let mut cfg = running.to_config();
        self.edit(&mut cfg)?;
        let mut next = validate(&cfg, SOURCE).map_err(|e| EditError::Invalid(e.to_string()))?;
        next.source.clone_from(&running.source);
        same_parents(running, &next)?;
        keep_numbers(running, &mut next);
        Ok(next)
    }

    /// Makes the change in the file.
    fn edit(&self, cfg: &mut ConfigFile) -> Result<(), EditError> {
        match self {
            Edit::NetworkCreate {
                name,
                subnet,
                gateway,
                mtu,
                masquerade,
                internal,
                icc,
                dns,
                dns_domain,
            } => {
                let gateway = match addr::<Ipv4Addr>("gateway", gateway)? {
                    Some(g) => Some(g),
                    // As Docker: the subnet's first host address. A subnet that does
                    // not parse is left for validation to describe.
                    None => subnet
                        .parse::<Ipv4Cidr>()
                        .ok()
                        .map(|s| Ipv4Addr::from(u32::from(s.trunc().network()) + 1)),
                };
                cfg.networks.push(NetworkSection {
                    name: name.clone(),
                    subnet: subnet.clone(),
                    gateway,
                    mtu: *mtu,
                    masquerade: *masquerade,
                    internal: *internal,
                    icc: *icc,
                    dns: *dns,
                    dns_domain: dns_domain.clone(),
                    ..NetworkSection::default()
                });
            }
            Edit::NetworkRm { name } => {
                let at = cfg
                    .networks
                    .iter()
                    .position(|n| &n.name == name)
                    .ok_or_else(|| no_network(name))?;
                let users: Vec<&str> = cfg
                    .endpoints
                    .iter()
                    .filter(|e| networks_of(e).any(|n| n == name))
                    .map(|e| e.name.as_str())
                    .collect();
                if cfg.networks[at].vxlan.is_some() {
                    // Its tunnel's sockets are opened in the underlay when switchyard
                    // starts, with the workers; a change does not reopen them.
                    return Err(EditError::InUse(format!(
                        "network {name} is an overlay (vxlan): its tunnel lives as long as the instance; change the config file and restart"
                    )));
                }
                if !users.is_empty() {
                    return Err(EditError::InUse(format!(
                        "network {name} has endpoints attached ({}); disconnect or remove them first",
                        users.join(", ")
                    )));
                }
                let via = cfg.networks[at].subnet.parse::<Ipv4Cidr>().ok();
                if let Some(r) = cfg
                    .routes
                    .iter()
                    .find(|r| via.is_some_and(|s| s.contains(r.via)))
                {
                    return Err(EditError::InUse(format!(
                        "route {} goes via {} on network {name}; remove it first",
                        r.prefix, r.via
                    )));
                }
                cfg.networks.remove(at);
                // Joins with the network go with it, as Docker's do.
                cfg.allow.retain(|a| !a.between.iter().any(|n| n == name));
            }
            Edit::Connect {
                network,
                endpoint,
                ip,
                ifname,
            } => {
                let ip = addr::<Ipv4Addr>("ip", ip)?;
                let e = find_endpoint(cfg, endpoint)?;
                if e.handover {
                    // Its interface went to the runtime, which configures the
                    // container's interfaces itself: one more comes the same way.
                    return Err(EditError::Invalid(format!(
                        "endpoint {endpoint} is a handed-over interface, and such an \
                         endpoint has only that one; connect the container to network \
                         {network} through its runtime, which makes another endpoint"
                    )));
                }
                // An endpoint left only `lo` (its last network disconnected, or
                // `mode = "none"`) takes a network again; one sharing another's
                // namespace does not (validation says so).
                if e.mode.as_deref() == Some("none") {
                    e.mode = None;
                }
                let mut attach = attachments(e);
                let ifname = ifname.clone().unwrap_or_else(|| {
                    let taken: BTreeSet<String> =
                        attach.iter().filter_map(|a| a.ifname.clone()).collect();
                    (0..)
                        .map(|k| format!("eth{k}"))
                        .find(|n| !taken.contains(n))
                        .expect("a free name")
                });
                attach.push(AttachSection {
                    network: network.clone(),
                    ip,
                    mac: None,
                    ifname: Some(ifname),
                });
                set_attachments(e, attach);
            }
            Edit::Disconnect { network, endpoint } => {
                let e = find_endpoint(cfg, endpoint)?;
                let mut attach = attachments(e);
                let at = attach
                    .iter()
                    .position(|a| &a.network == network)
                    .ok_or_else(|| {
                        EditError::NotFound(format!(
                            "endpoint {endpoint} is not connected to network {network}"
                        ))
                    })?;
                attach.remove(at);
                if attach.is_empty() {
                    if e.netns.is_some() {
                        return Err(EditError::InUse(format!(
                            "network {network} is the last of endpoint {endpoint}, whose \
                             namespace switchyard did not create; remove the endpoint instead"
                        )));
                    }
                    // Like `docker network disconnect` of a container's last network:
                    // it keeps only lo, and its published ports lead nowhere.
                    e.publish.clear();
                    e.mode = Some("none".into());
                }
                set_attachments(e, attach);
            }
            Edit::EndpointCreate {
                name,
                network,
                ip,
                mac,
                publish,
                netns,
                ifname,
                aliases,
                handover,
            } => {
                cfg.endpoints.push(EndpointSection {
                    name: name.clone(),
                    network: Some(network.clone()),
                    ip: addr::<Ipv4Addr>("ip", ip)?,
                    mac: addr::<MacAddr>("mac", mac)?,
                    publish: publish.clone(),
                    netns: netns.clone(),
                    ifname: ifname.clone(),
                    aliases: aliases.clone(),
                    handover: *handover,
                    ..EndpointSection::default()
                });
            }
            Edit::EndpointRm { name } => {
                let at = cfg
                    .endpoints
                    .iter()
                    .position(|e| &e.name == name)
                    .ok_or_else(|| no_endpoint(name))?;
                let mode = format!("container:{name}");
                if let Some(other) = cfg
                    .endpoints
                    .iter()
                    .find(|e| e.mode.as_deref() == Some(mode.as_str()))
                {
                    return Err(EditError::InUse(format!(
                        "endpoint {} shares the namespace of {name}; remove it first",
                        other.name
                    )));
                }
                cfg.endpoints.remove(at);
            }
            Edit::AllowAdd { a, b } => {
                if !cfg.allow.iter().any(|x| joins(x, a, b)) {
                    cfg.allow.push(AllowSection {
                        between: vec![a.clone(), b.clone()],
                    });
                }
            }
            Edit::AllowRm { a, b } => {
                let before = cfg.allow.len();
                cfg.allow.retain(|x| !joins(x, a, b));
                if cfg.allow.len() == before {
                    return Err(EditError::NotFound(format!(
                        "networks {a} and {b} are not joined"
                    )));
                }
            }
            Edit::RouteAdd { prefix, via } => {
                let via = parse::<Ipv4Addr>("via", via)?;
                cfg.routes.push(RouteSection {
                    prefix: prefix.clone(),
                    via,
                });
            }
            Edit::RouteRm { prefix, via } => {
                let v = parse::<Ipv4Addr>("via", via)?;
                let p = prefix.parse::<Ipv4Cidr>().ok();
                let before = cfg.routes.len();
                cfg.routes.retain(|r| {
                    !(r.via == v && (r.prefix == *prefix || r.prefix.parse::<Ipv4Cidr>().ok() == p))
                });
                if cfg.routes.len() == before {
                    return Err(EditError::NotFound(format!(
                        "there is no route {prefix} via {via}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn no_network(name: &str) -> EditError {
    EditError::NotFound(format!("there is no network named {name:?}"))
}

fn no_endpoint(name: &str) -> EditError {
    EditError::NotFound(format!("there is no endpoint named {name:?}"))
}

fn find_endpoint<'a>(
    cfg: &'a mut ConfigFile,
    name: &str,
) -> Result<&'a mut EndpointSection, EditError> {
    cfg.endpoints
        .iter_mut()
        .find(|e| e.name == name)
        .ok_or_else(|| no_endpoint(name))
}

fn joins(x: &AllowSection, a: &str, b: &str) -> bool {
    matches!(x.between.as_slice(), [p, q] if (p == a && q == b) || (p == b && q == a))
}

/// The networks an endpoint section names.
fn networks_of(e: &EndpointSection) -> impl Iterator<Item = &str> {
    e.network
        .iter()
        .chain(e.attach.iter().map(|a| &a.network))
        .chain(e.native.iter())
        .map(String::as_str)
        .chain(e.trunk.iter().map(|t| t.parts().0))
}

/// An endpoint's interfaces as an attach list, every interface name written out: a
/// name left to its place in the list would change when an earlier one goes.
fn attachments(e: &EndpointSection) -> Vec<AttachSection> {
    let mut list: Vec<AttachSection> = match &e.network {
        Some(n) => vec![AttachSection {
            network: n.clone(),
            ip: e.ip,
            mac: e.mac,
            ifname: e.ifname.clone(),
        }],
        None => e.attach.clone(),
    };
    for (k, a) in list.iter_mut().enumerate() {
        a.ifname.get_or_insert_with(|| format!("eth{k}"));
    }
    list
}

/// Writes an attach list back: one interface in the shorthand, several as a list.
fn set_attachments(e: &mut EndpointSection, mut list: Vec<AttachSection>) {
    e.network = None;
    e.ip = None;
    e.mac = None;
    e.ifname = None;
    e.attach = Vec::new();
    match list.len() {
        0 => {}
        1 => {
            let one = list.remove(0);
            e.network = Some(one.network);
            e.ip = one.ip;
            e.mac = one.mac;
            e.ifname = one.ifname;
        }
        _ => e.attach = list,
    }
}

/// Host interfaces (`parent`) are attached when switchyard starts and stay for as
/// long as it runs: a change that would remove a network with one refuses.
fn same_parents(running: &Topology, next: &Topology) -> Result<(), EditError> {
    for (n, p) in running.parents() {
        let kept = next
            .networks
            .iter()
            .any(|m| m.name == n.name && m.parent.as_ref() == Some(p));
        if !kept {
            return Err(EditError::InUse(format!(
                "network {:?} has host interface {} attached (parent); it is set in the \
                 config file and stays while switchyard runs",
                n.name,
                p.port_name()
            )));
        }
        // The parent port's table of who owns which address is made at start.
        let hosts = |t: &Topology| {
            let mut v: Vec<_> = t
                .interfaces()
                .filter(|(_, i)| t.networks[i.network].name == n.name)
                .map(|(_, i)| (i.ip, i.mac))
                .collect();
            v.sort();
            v
        };
        if p.mode == ParentMode::IpvlanL2 && hosts(running) != hosts(next) {
            return Err(EditError::InUse(format!(
                "network {:?} is ipvlan-l2: its endpoints are fixed at start, when its \
                 parent {} learns which address is whose",
                n.name,
                p.port_name()
            )));
        }
    }
    Ok(())
}

/// Gives every network and interface of `next` that `running` has its number there,
/// and each new one the lowest number free. A number `running` uses is not free even
/// if this change removes its owner: it becomes free for the next change, once the
/// workers have stopped using it and its table entries are forgotten.
pub fn keep_numbers(running: &Topology, next: &mut Topology) {
    let domains: HashMap<&str, DomainId> = running
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.domain))
        .collect();
    let mut taken: BTreeSet<u16> = running.networks.iter().map(|n| n.domain.0).collect();
    for n in &mut next.networks {
        n.domain = match domains.get(n.name.as_str()) {
            Some(&d) => d,
            None => DomainId(lowest_free(&mut taken)),
        };
    }
    // An interface is the same one if its endpoint, name and network are.
    let ports: HashMap<(&str, &str, &str), PortId> = running
        .interfaces()
        .map(|(e, i)| {
            let net = running.networks[i.network].name.as_str();
            ((e.name.as_str(), i.ifname.as_str(), net), i.port)
        })
        .collect();
    let kept: Vec<Option<PortId>> = next
        .interfaces()
        .map(|(e, i)| {
            let net = next.networks[i.network].name.as_str();
            ports
                .get(&(e.name.as_str(), i.ifname.as_str(), net))
                .copied()
        })
        .collect();
    // An overlay network's tunnel port keeps its number as long as the network.
    let tunnels: HashMap<&str, PortId> = running
        .tunnels()
        .map(|(n, o)| (n.name.as_str(), o.tunnel))
        .collect();
    let mut taken: BTreeSet<u16> = running
        .interfaces()
        .map(|(_, i)| i.port.0)
        .chain(running.parents().map(|(_, p)| p.port.0))
        .chain(tunnels.values().map(|p| p.0))
        .collect();
    // A parent keeps its port (a change cannot add or remove one: `same_parents`).
    for n in &mut next.networks {
        let Some(p) = n.parent.as_mut() else { continue };
        let was = running
            .parents()
            .find(|(m, q)| m.name == n.name && q.ifname == p.ifname && q.netns == p.netns);
        p.port = match was {
            Some((_, q)) => q.port,
            None => PortId(lowest_free(&mut taken)),
        };
    }
    let mut kept = kept.into_iter();
    for e in &mut next.endpoints {
        for i in &mut e.interfaces {
            i.port = match kept.next().flatten() {
                Some(p) => p,
                None => PortId(lowest_free(&mut taken)),
            };
        }
    }
    for n in &mut next.networks {
        let name = n.name.as_str();
        if let Some(o) = n.vxlan.as_mut() {
            o.tunnel = match tunnels.get(name) {
                Some(&p) => p,
                None => PortId(lowest_free(&mut taken)),
            };
        }
    }
}

/// Takes and returns the lowest number not in `taken`.
fn lowest_free(taken: &mut BTreeSet<u16>) -> u16 {
    let n = (0..=u16::MAX - 1)
        .find(|n| !taken.contains(n))
        .expect("fewer than 65535 in use (validation caps ports and networks)");
    taken.insert(n);
    n
}

/// What a change makes and removes on the machine and in the pipeline.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Endpoints to make (their namespace unless foreign, and every interface).
    pub new_endpoints: Vec<String>,
    /// Interfaces to add to endpoints that stay: (endpoint, ifname).
    pub new_interfaces: Vec<(String, String)>,
    /// Endpoints to remove (after their ports are gone).
    pub gone_endpoints: Vec<Endpoint>,
    /// Ports to stop reading and forget: the port, its network, address and MAC.
    pub gone_ports: Vec<GonePort>,
    /// Networks whose table entries to forget.
    pub gone_networks: Vec<DomainId>,
}

/// A port a change removes, and what the tables may know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GonePort {
    pub port: PortId,
    pub domain: DomainId,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

impl Diff {
    /// What turns `running` into `next` (numbers already kept: [`keep_numbers`]).
    pub fn between(running: &Topology, next: &Topology) -> Diff {
        let mut d = Diff::default();
        let next_ports: BTreeSet<u16> = next.interfaces().map(|(_, i)| i.port.0).collect();
        for e in &running.endpoints {
            if !next.endpoints.iter().any(|x| x.name == e.name) {
                d.gone_endpoints.push(e.clone());
            }
        }
        for (_, i) in running.interfaces() {
            let domain = running.networks[i.network].domain;
            if !next_ports.contains(&i.port.0) {
                d.gone_ports.push(GonePort {
                    port: i.port,
                    domain,
                    ip: i.ip,
                    mac: i.mac,
                });
            }
        }
        let running_ports: BTreeSet<u16> = running.interfaces().map(|(_, i)| i.port.0).collect();
        for e in &next.endpoints {
            if !running.endpoints.iter().any(|x| x.name == e.name) {
                d.new_endpoints.push(e.name.clone());
                continue;
            }
            for i in &e.interfaces {
                if !running_ports.contains(&i.port.0) {
                    d.new_interfaces.push((e.name.clone(), i.ifname.clone()));
                }
            }
        }
        let next_domains: BTreeSet<u16> = next.networks.iter().map(|n| n.domain.0).collect();
        d.gone_networks = running
            .networks
            .iter()
            .map(|n| n.domain)
            .filter(|dm| !next_domains.contains(&dm.0))
            .collect();
        d
    }
}

#[cfg(test)]
mod tests;
