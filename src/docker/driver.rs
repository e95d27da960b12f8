//! The driver's answers: each Docker verb becomes requests on the instance's control
//! socket — the same `network_create`, `endpoint_create` and `endpoint_rm` that
//! `switchyard network create` and `switchyard endpoint create` send, so a Docker
//! network obeys every rule of a switchyard network and is refused in the same words.
//!
//! | Docker sends | switchyard does |
//! |---|---|
//! | `CreateNetwork` | `network_create` from the IPAM pool and gateway and the `-o` options |
//! | `CreateEndpoint` | remembers the address Docker's IPAM chose, answers with the MAC |
//! | `Join` | `endpoint_create` with `handover`: a TAP in switchyard's namespace, its MTU set, returned for Docker to move into the container |
//! | `ProgramExternalConnectivity` | notes the name Docker gave the interface in the container |
//! | `Leave` | `endpoint_rm`: the TAP's queues closed, every table entry of it forgotten |
//! | `DeleteEndpoint` | forgets the endpoint (and removes it first if `Leave` never came) |
//! | `DeleteNetwork` | `network_rm` |
//!
//! After a restart, [`Driver::restore`] creates the networks again and re-attaches the
//! containers whose namespaces are still there (their interfaces went with the old
//! process's TAP queues); the others are reported as gone.

use super::api::{self, PortBinding};
use super::state::{short, DriverState, EndpointState, Joined, NetworkState};
use crate::control::client::{self, ClientError};
use crate::control::protocol::{EndpointCreate, ErrorCode, NetworkCreate, Reply, Request};
use crate::topology::config::parse_publish;
use serde_json::{Map, Value};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use switchyard_core::wire::MacAddr;

/// The `-o` options a switchyard network takes, with Docker's bridge names beside.
pub const OPTIONS: &[&str] = &[
    "name",
    "mtu",
    "com.docker.network.driver.mtu",
    "masquerade",
    "com.docker.network.bridge.enable_ip_masquerade",
    "icc",
    "com.docker.network.bridge.enable_icc",
    "dns",
    "dns_domain",
];

/// The driver: its state and the instance it drives.
pub struct Driver {
    /// The instance's control socket.
    control: PathBuf,
    /// The instance's prefix: the devices the driver has made carry it.
    prefix: String,
    state_path: PathBuf,
    state: DriverState,
}

/// What a restart found, for the log and for `switchyard docker ls`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Networks created again (switchyard names).
    pub networks: Vec<String>,
    /// Networks that could not be created again, with why.
    pub failed_networks: Vec<(String, String)>,
    /// Endpoints whose containers still run, attached again.
    pub reattached: Vec<String>,
    /// Endpoints whose containers are gone (their namespace no longer exists), or whose
    /// re-attachment failed, with why.
    pub gone: Vec<(String, String)>,
}

impl Driver {
    pub fn new(control: &Path, prefix: &str, state_path: &Path, state: DriverState) -> Driver {
        Driver {
            control: control.to_path_buf(),
            prefix: prefix.to_string(),
            state_path: state_path.to_path_buf(),
            state,
        }
    }

    /// What the driver remembers now.
    pub fn state(&self) -> &DriverState {
        &self.state
    }

    fn ask(&self, req: Request) -> Result<Reply, ClientError> {
        client::request(&self.control, &req)
    }

    fn save(&self) -> Result<(), String> {
        self.state
            .save(&self.state_path)
            .map_err(|e| format!("switchyard could not save its Docker driver state: {e}"))
    }

    /// Answers one request: `path` is the URL (`/NetworkDriver.Join`), `body` its JSON.
    /// `Err` is the message of a refusal.
    pub fn handle(&mut self, path: &str, body: &[u8]) -> Result<Value, Refusal> {
        let verb = path.trim_start_matches('/');
        match verb {
            "Plugin.Activate" => Ok(json(&api::Activate {
                implements: vec!["NetworkDriver"],
            })),
            "NetworkDriver.GetCapabilities" => Ok(json(&api::Capabilities {
                scope: "local",
                connectivity_scope: "local",
            })),
            "NetworkDriver.CreateNetwork" => {
                self.create_network(parse(body)?).map_err(Refusal::Err)?;
                Ok(json(&api::Empty {}))
            }
            "NetworkDriver.DeleteNetwork" => {
                let r: api::NetworkId = parse(body)?;
                self.delete_network(&r.network_id).map_err(Refusal::Err)?;
                Ok(json(&api::Empty {}))
            }
            "NetworkDriver.CreateEndpoint" => {
                let a = self.create_endpoint(parse(body)?).map_err(Refusal::Err)?;
                Ok(json(&a))
            }
            "NetworkDriver.Join" => {
                let a = self.join(parse(body)?).map_err(Refusal::Err)?;
                Ok(json(&a))
            }
            "NetworkDriver.ProgramExternalConnectivity" => {
                let r: api::EndpointId = parse(body)?;
                self.note_ifname(&r.endpoint_id);
                Ok(json(&api::Empty {}))
            }
            "NetworkDriver.Leave" => {
                let r: api::EndpointId = parse(body)?;
                self.leave(&r.endpoint_id).map_err(Refusal::Err)?;
                Ok(json(&api::Empty {}))
            }
            "NetworkDriver.DeleteEndpoint" => {
                let r: api::EndpointId = parse(body)?;
                self.delete_endpoint(&r.endpoint_id).map_err(Refusal::Err)?;
                Ok(json(&api::Empty {}))
            }
            "NetworkDriver.EndpointOperInfo" => {
                let r: api::EndpointId = parse(body)?;
                self.note_ifname(&r.endpoint_id);
                let mut value = Map::new();
                if let Some(e) = self.state.endpoints.get(&r.endpoint_id) {
                    value.insert("switchyard.endpoint".into(), e.name.clone().into());
                    value.insert("switchyard.mac".into(), e.mac.clone().into());
                }
                Ok(json(&api::OperInfo { value }))
            }
            // Published ports are set up with the endpoint (`Join`), and the
            // discovery notifications concern cluster drivers only.
            "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.AllocateNetwork"
            | "NetworkDriver.FreeNetwork" => Ok(json(&api::Empty {})),
            _ => Err(Refusal::Unknown(format!(
                "switchyard's network driver does not implement {path}"
            ))),
        }
    }

    /// `docker network create -d switchyard`.
    fn create_network(&mut self, r: api::CreateNetwork) -> Result<(), String> {
        if self.state.networks.contains_key(&r.network_id) {
            // Docker retries a create it thinks failed: the network is there.
            return Ok(());
        }
        let create = self.network_request(&r)?;
        let name = create.name.clone();
        self.ask(Request::NetworkCreate(create.clone()))
            .map_err(|e| refused(&e))?;
        self.state
            .networks
            .insert(r.network_id.clone(), NetworkState { create });
        if let Err(e) = self.save() {
            let _ = self.ask(Request::NetworkRm { name });
            self.state.networks.remove(&r.network_id);
            return Err(e);
        }
        tracing::info!(
            "docker network {} is switchyard network {name}",
            short(&r.network_id)
        );
        Ok(())
    }

    /// The `network_create` a Docker network becomes.
    fn network_request(&self, r: &api::CreateNetwork) -> Result<NetworkCreate, String> {
        let pool = match r.ipv4_data.as_slice() {
            [] => return Err("a switchyard network needs an IPv4 subnet (--subnet)".into()),
            [one] => one,
            _ => return Err("a switchyard network has one IPv4 subnet; give one --subnet".into()),
        };
        if r.options.get("com.docker.network.enable_ipv6") == Some(&Value::Bool(true))
            || r.ipv6_data.as_ref().is_some_and(|v| !v.is_empty())
        {
            return Err("switchyard networks are IPv4 only; leave out --ipv6".into());
        }
        let internal = r.options.get("com.docker.network.internal") == Some(&Value::Bool(true));
        let mut create = NetworkCreate {
            name: short(&r.network_id).to_string(),
            subnet: pool.pool.clone(),
            gateway: match pool.gateway.split_once('/') {
                Some((ip, _)) => Some(ip.to_string()),
                None if pool.gateway.is_empty() => None,
                None => Some(pool.gateway.clone()),
            },
            mtu: None,
            masquerade: false,
            internal,
            icc: None,
            dns: None,
            dns_domain: None,
        };
        let mut masquerade = None;
        let generic = match r.options.get("com.docker.network.generic") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(format!("options are not a map: {other}")),
        };
        for (key, value) in &generic {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let bad = |what: &str| format!("option {key}={text}: {what}");
            match key.as_str() {
                "name" => create.name = text.clone(),
                "mtu" | "com.docker.network.driver.mtu" => {
                    create.mtu = Some(text.parse().map_err(|_| bad("not a number"))?)
                }
                "masquerade" | "com.docker.network.bridge.enable_ip_masquerade" => {
                    masquerade = Some(parse_bool(&text).ok_or_else(|| bad("not true or false"))?)
                }
                "icc" | "com.docker.network.bridge.enable_icc" => {
                    create.icc = Some(parse_bool(&text).ok_or_else(|| bad("not true or false"))?)
                }
                "dns" => {
                    create.dns = Some(parse_bool(&text).ok_or_else(|| bad("not true or false"))?)
                }
                "dns_domain" => create.dns_domain = Some(text.clone()),
                _ => {
                    return Err(format!(
                        "unknown option {key:?}: a switchyard network takes {}",
                        OPTIONS.join(", ")
                    ))
                }
            }
        }
        // As Docker's bridge: masqueraded unless internal — where there is a way out.
        create.masquerade = match masquerade {
            Some(m) => m,
            None => !internal && self.has_uplink(),
        };
        Ok(create)
    }

    fn has_uplink(&self) -> bool {
        matches!(self.ask(Request::NetworkLs {}), Ok(Reply::Networks(n)) if n.iter().any(|n| n.external))
    }

    /// `docker network rm`.
    fn delete_network(&mut self, id: &str) -> Result<(), String> {
        let Some(net) = self.state.networks.get(id) else {
            // Not ours (any more): nothing to remove.
            return Ok(());
        };
        let name = net.create.name.clone();
        match self.ask(Request::NetworkRm { name: name.clone() }) {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
            Err(e) => return Err(refused(&e)),
        }
        self.state.networks.remove(id);
        self.state.endpoints.retain(|_, e| e.network != id);
        self.save()
    }

    /// An endpoint on a network: Docker's IPAM chose its address; switchyard answers
    /// with the MAC it derives from it (Docker's own rule, `02:42` + the address) unless
    /// Docker gave one (`--mac-address`).
    fn create_endpoint(
        &mut self,
        r: api::CreateEndpoint,
    ) -> Result<api::CreateEndpointAnswer, String> {
        self.state.network(&r.network_id)?;
        let iface = r.interface.unwrap_or_default();
        if !iface.address_ipv6.is_empty() {
            return Err("switchyard networks are IPv4 only".into());
        }
        let Some((ip, _)) = iface.address.split_once('/') else {
            return Err(format!(
                "Docker gave the endpoint no IPv4 address ({:?}); switchyard needs the one \
                 its IPAM chose",
                iface.address
            ));
        };
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{:?} is not an IPv4 address", iface.address))?;
        let (mac, answer_mac) = if iface.mac_address.is_empty() {
            let m = MacAddr::from_ipv4(ip).to_string();
            (m.clone(), m)
        } else {
            let m: MacAddr = iface
                .mac_address
                .parse()
                .map_err(|_| format!("{:?} is not a MAC address", iface.mac_address))?;
            (m.to_string(), String::new())
        };
        let publish = publish_rules(&r.options)?;
        // A host port is the uplink's once: refused here, before Docker starts the
        // container, when another of Docker's endpoints has it (one the config file
        // publishes is refused at `Join`, by switchyard's own check).
        let host_side = |rule: &str| parse_publish(rule).ok().map(|p| (p.host_port, p.udp));
        for rule in &publish {
            let mine = host_side(rule);
            if let Some(other) = self
                .state
                .endpoints
                .values()
                .find(|e| e.publish.iter().any(|o| host_side(o) == mine))
            {
                let (port, udp) = mine.unwrap_or_default();
                let proto = if udp { "udp" } else { "tcp" };
                return Err(format!(
                    "-p {rule}: {port}/{proto} is published already, by endpoint {}",
                    other.name
                ));
            }
        }
        let state = EndpointState {
            network: r.network_id.clone(),
            name: short(&r.endpoint_id).to_string(),
            ip: ip.to_string(),
            mac,
            publish,
            joined: None,
        };
        self.state.endpoints.insert(r.endpoint_id.clone(), state);
        if let Err(e) = self.save() {
            self.state.endpoints.remove(&r.endpoint_id);
            return Err(e);
        }
        Ok(api::CreateEndpointAnswer {
            interface: api::Interface {
                mac_address: answer_mac,
                ..api::Interface::default()
            },
        })
    }

    /// A container joins: switchyard makes the endpoint, its TAP in switchyard's own
    /// namespace for Docker to move into the container.
    fn join(&mut self, r: api::Join) -> Result<api::JoinAnswer, String> {
        let net = self.state.network(&r.network_id)?.create.clone();
        let Some(ep) = self.state.endpoints.get(&r.endpoint_id).cloned() else {
            return Err(format!(
                "endpoint {} was never created",
                short(&r.endpoint_id)
            ));
        };
        if ep.joined.is_some() {
            return Err(format!(
                "endpoint {} has joined a container already",
                short(&r.endpoint_id)
            ));
        }
        let device = self.device_name(&r.endpoint_id)?;
        let req = EndpointCreate {
            name: ep.name.clone(),
            network: net.name.clone(),
            ip: Some(ep.ip.clone()),
            mac: Some(ep.mac.clone()),
            publish: ep.publish.clone(),
            netns: Some(r.sandbox_key.clone()),
            ifname: Some(device.clone()),
            aliases: Vec::new(),
            handover: true,
        };
        let made = self
            .ask(Request::EndpointCreate(req))
            .map_err(|e| refused(&e))?;
        let gateway = match made {
            Reply::Endpoint(row) => row
                .interfaces
                .first()
                .and_then(|i| i.gateway.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if let Some(e) = self.state.endpoints.get_mut(&r.endpoint_id) {
            e.joined = Some(Joined {
                sandbox: r.sandbox_key.clone(),
                device: device.clone(),
                ifname: None,
            });
        }
        if let Err(e) = self.save() {
            let _ = self.ask(Request::EndpointRm { name: ep.name });
            if let Some(e) = self.state.endpoints.get_mut(&r.endpoint_id) {
                e.joined = None;
            }
            return Err(e);
        }
        Ok(api::JoinAnswer {
            interface_name: api::InterfaceName {
                src_name: device,
                dst_prefix: "eth",
            },
            // An internal network has no way out: no default route through it.
            gateway: if net.internal { String::new() } else { gateway },
            disable_gateway_service: true,
        })
    }

    /// A name for a new TAP in switchyard's namespace: the instance's prefix and as
    /// much of the endpoint ID as fits in a device name, one no device has yet.
    fn device_name(&self, endpoint_id: &str) -> Result<String, String> {
        let room = 15usize.saturating_sub(self.prefix.len()).max(1);
        let hex: String = endpoint_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let taken: Vec<&str> = self
            .state
            .endpoints
            .values()
            .filter_map(|e| e.joined.as_ref().map(|j| j.device.as_str()))
            .collect();
        let mut rtnl = switchyard_os::netlink::Rtnl::new()
            .map_err(|e| format!("switchyard cannot look at its devices: {e}"))?;
        for start in 0..hex.len().saturating_sub(room).max(1) {
            let Some(part) = hex.get(start..(start + room).min(hex.len())) else {
                break;
            };
            let name = format!("{}{part}", self.prefix);
            if !taken.contains(&name.as_str()) && !rtnl.link_exists(&name).unwrap_or(true) {
                return Ok(name);
            }
        }
        Err(format!(
            "no free device name for endpoint {}",
            short(endpoint_id)
        ))
    }

    /// Docker has moved the interface into the container and named it: the driver
    /// looks it up there by its MAC, so a restarted switchyard can make it again under
    /// the same name. Not knowing it costs only that.
    fn note_ifname(&mut self, endpoint_id: &str) {
        let Some(ep) = self.state.endpoints.get(endpoint_id) else {
            return;
        };
        let Some(joined) = &ep.joined else { return };
        if joined.ifname.is_some() {
            return;
        }
        let Ok(mac) = ep.mac.parse::<MacAddr>() else {
            return;
        };
        match ifname_in(&joined.sandbox, mac) {
            Ok(Some(name)) => {
                if let Some(j) = self
                    .state
                    .endpoints
                    .get_mut(endpoint_id)
                    .and_then(|e| e.joined.as_mut())
                {
                    j.ifname = Some(name);
                }
                if let Err(e) = self.save() {
                    tracing::warn!("{e}");
                }
            }
            // Not moved in yet, or the container is going.
            Ok(None) => tracing::debug!(
                "endpoint {}: no interface with MAC {mac} in {} yet",
                short(endpoint_id),
                joined.sandbox
            ),
            Err(e) => tracing::debug!("endpoint {}: {e}", short(endpoint_id)),
        }
    }

    /// Notes the container-side name of every joined interface not known yet: when the
    /// driver stops, while the interfaces still exist (Docker names them after `Join`,
    /// and which of its later calls comes after the rename differs between versions).
    pub fn note_all_ifnames(&mut self) {
        let ids: Vec<String> = self
            .state
            .endpoints
            .iter()
            .filter(|(_, e)| e.joined.as_ref().is_some_and(|j| j.ifname.is_none()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.note_ifname(&id);
        }
    }

    /// The container leaves: its endpoint is removed from switchyard (the TAP's
    /// queues closed, which removes the device Docker moved back; every table entry
    /// of it forgotten).
    fn leave(&mut self, endpoint_id: &str) -> Result<(), String> {
        let Some(ep) = self.state.endpoints.get(endpoint_id).cloned() else {
            return Ok(());
        };
        if ep.joined.is_none() {
            return Ok(());
        }
        match self.ask(Request::EndpointRm {
            name: ep.name.clone(),
        }) {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
            Err(e) => return Err(refused(&e)),
        }
        if let Some(e) = self.state.endpoints.get_mut(endpoint_id) {
            e.joined = None;
        }
        self.save()
    }

    fn delete_endpoint(&mut self, endpoint_id: &str) -> Result<(), String> {
        self.leave(endpoint_id)?;
        if self.state.endpoints.remove(endpoint_id).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// After a restart: every network is created again, and every joined endpoint
    /// whose container's namespace still exists is attached to it again, under the name
    /// Docker gave it, with its address, MAC, default route and published ports.
    pub fn restore(&mut self) -> Restored {
        let mut out = Restored::default();
        for net in self.state.networks.values() {
            match self.ask(Request::NetworkCreate(net.create.clone())) {
                Ok(_) => out.networks.push(net.create.name.clone()),
                Err(e) => out
                    .failed_networks
                    .push((net.create.name.clone(), e.to_string())),
            }
        }
        let joined: Vec<EndpointState> = self
            .state
            .endpoints
            .values()
            .filter(|e| e.joined.is_some())
            .cloned()
            .collect();
        for ep in joined {
            let j = ep.joined.as_ref().expect("filtered on joined");
            let Some(net) = self.state.networks.get(&ep.network) else {
                out.gone
                    .push((ep.name.clone(), "its network is not known".into()));
                continue;
            };
            if !is_namespace(&j.sandbox) {
                out.gone.push((
                    ep.name.clone(),
                    format!("container gone: {} does not exist", j.sandbox),
                ));
                continue;
            }
            // A name never seen (switchyard was killed before it looked): the first
            // `ethN` the container does not have, as Docker would pick.
            let Some(ifname) = j.ifname.clone().or_else(|| first_free_eth(&j.sandbox)) else {
                out.gone.push((
                    ep.name.clone(),
                    "no interface name free in the container".into(),
                ));
                continue;
            };
            let req = EndpointCreate {
                name: ep.name.clone(),
                network: net.create.name.clone(),
                ip: Some(ep.ip.clone()),
                mac: Some(ep.mac.clone()),
                publish: ep.publish.clone(),
                netns: Some(j.sandbox.clone()),
                ifname: Some(ifname),
                aliases: Vec::new(),
                handover: false,
            };
            match self.ask(Request::EndpointCreate(req)) {
                Ok(_) => out.reattached.push(ep.name.clone()),
                Err(e) => out.gone.push((ep.name.clone(), e.to_string())),
            }
        }
        out
    }
}

/// A refusal, as Docker is to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A request switchyard understood and refused: answered 500 with `{"Err": ...}`.
    Err(String),
    /// A verb switchyard does not know: answered 404, as Docker's plugin helpers do.
    Unknown(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Err(m) | Refusal::Unknown(m) => m,
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::Err(format!("a request switchyard cannot read: {e}")))
}

/// A control-socket refusal in words for a Docker user: switchyard's own message, which
/// names the problem in the config file's terms.
fn refused(e: &ClientError) -> String {
    match e {
        ClientError::Remote { message, .. } => format!("switchyard: {message}"),
        other => format!("switchyard: {other}"),
    }
}

/// Go's `strconv.ParseBool`, which Docker's own drivers use for their options.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `-p` mappings (`com.docker.network.portmap`) as switchyard publish rules,
/// `8082:80/tcp`. switchyard publishes a fixed port on its uplink address: a mapping to
/// another host address, a port range or a port Docker is to pick is refused.
fn publish_rules(options: &Map<String, Value>) -> Result<Vec<String>, String> {
    let list = match options.get("com.docker.network.portmap") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => v.clone(),
    };
    let maps: Vec<PortBinding> = serde_json::from_value(list)
        .map_err(|e| format!("port mappings switchyard cannot read: {e}"))?;
    let mut out = Vec::with_capacity(maps.len());
    for m in maps {
        let proto = match m.proto {
            6 => "tcp",
            17 => "udp",
            p => {
                return Err(format!(
                    "-p .../{}: switchyard publishes TCP and UDP ports only",
                    proto_name(p)
                ))
            }
        };
        if m.host_port == 0 {
            return Err(format!(
                "-p {}/{proto}: switchyard publishes the host port you name (-p HOST:{}/{proto})",
                m.port, m.port
            ));
        }
        if m.host_port_end != 0 && m.host_port_end != m.host_port {
            return Err(format!(
                "-p {}-{}:{}/{proto}: switchyard publishes one host port per mapping",
                m.host_port, m.host_port_end, m.port
            ));
        }
        if !m.host_ip.is_empty() && m.host_ip != "0.0.0.0" {
            return Err(format!(
                "-p {}:{}:{}/{proto}: switchyard publishes on its uplink address; leave out the host address",
                m.host_ip, m.host_port, m.port
            ));
        }
        out.push(format!("{}:{}/{proto}", m.host_port, m.port));
    }
    Ok(out)
}

fn proto_name(p: u8) -> String {
    match p {
        132 => "sctp".into(),
        p => format!("protocol {p}"),
    }
}

/// Whether `path` is a network namespace file (a container's `SandboxKey` exists while
/// its container does).
pub fn is_namespace(path: &str) -> bool {
    switchyard_os::netns::open_path(Path::new(path)).is_ok()
}

/// The first of `eth0`, `eth1`, ... that the namespace at `path` has no device of.
fn first_free_eth(path: &str) -> Option<String> {
    let names: Vec<String> = links_in(path).ok()?.into_iter().map(|l| l.name).collect();
    (0..64)
        .map(|n| format!("eth{n}"))
        .find(|n| !names.contains(n))
}

/// The name of the interface with `mac` in the namespace at `path`.
fn ifname_in(path: &str, mac: MacAddr) -> Result<Option<String>, String> {
    Ok(links_in(path)?
        .into_iter()
        .find(|l| l.mac == Some(mac.0))
        .map(|l| l.name))
}

/// The devices of the namespace at `path`.
fn links_in(path: &str) -> Result<Vec<switchyard_os::netlink::LinkInfo>, String> {
    let fd = switchyard_os::netns::open_path(Path::new(path)).map_err(|e| e.to_string())?;
    switchyard_os::netns::run_in(&fd, || {
        switchyard_os::netlink::Rtnl::new()
            .and_then(|mut r| r.links())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("answers serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn portmap(v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("com.docker.network.portmap".into(), v);
        m
    }

    #[test]
    fn published_ports_become_switchyard_rules() {
        let m = portmap(json!([
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8082, "HostPortEnd": 8082},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "0.0.0.0", "HostPort": 5353, "HostPortEnd": 0}
        ]));
        assert_eq!(
            publish_rules(&m).unwrap(),
            vec!["8082:80/tcp".to_string(), "5353:53/udp".to_string()]
        );
        assert_eq!(publish_rules(&Map::new()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn port_mappings_switchyard_cannot_honour_are_refused_in_docker_terms() {
        let one = |v: Value| publish_rules(&portmap(json!([v]))).unwrap_err();
        let e = one(json!({"Proto": 6, "Port": 80, "HostPort": 0}));
        assert!(e.contains("-p HOST:80/tcp"), "{e}");
        let e = one(json!({"Proto": 6, "Port": 80, "HostPort": 8000, "HostPortEnd": 8010}));
        assert!(e.contains("one host port"), "{e}");
        let e = one(json!({"Proto": 6, "Port": 80, "HostPort": 8000, "HostIP": "127.0.0.1"}));
        assert!(e.contains("uplink address"), "{e}");
        let e = one(json!({"Proto": 132, "Port": 80, "HostPort": 8000}));
        assert!(e.contains("sctp"), "{e}");
        let e = publish_rules(&portmap(json!("8080:80"))).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn option_booleans_are_read_as_docker_reads_them() {
        for t in ["1", "t", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "f", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("yes"), None);
    }

    fn driver_without_instance() -> Driver {
        // A control socket that does not exist: the requests below must not need it.
        Driver::new(
            Path::new("/nonexistent/switchyard.sock"),
            "sy-",
            Path::new("/nonexistent/state.json"),
            DriverState::default(),
        )
    }

    #[test]
    fn docker_options_map_to_network_keys() {
        let d = driver_without_instance();
        let r: api::CreateNetwork = serde_json::from_value(json!({
            "NetworkID": "0123456789abcdef0123",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {
                    "mtu": "1400", "icc": "false", "masquerade": "true", "dns": "0",
                    "name": "apps", "dns_domain": "apps.internal"
                }
            },
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.214.0.0/24", "Gateway": "10.214.0.1/24"}],
            "IPv6Data": []
        }))
        .unwrap();
        let c = d.network_request(&r).unwrap();
        assert_eq!(c.name, "apps");
        assert_eq!(c.subnet, "10.214.0.0/24");
        assert_eq!(c.gateway.as_deref(), Some("10.214.0.1"));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.icc, Some(false));
        assert!(c.masquerade);
        assert_eq!(c.dns, Some(false));
        assert_eq!(c.dns_domain.as_deref(), Some("apps.internal"));
        assert!(!c.internal);
    }

    #[test]
    fn internal_networks_are_never_masqueraded_and_the_name_defaults_to_the_short_id() {
        let d = driver_without_instance();
        let r: api::CreateNetwork = serde_json::from_value(json!({
            "NetworkID": "0123456789abcdef0123",
            "Options": {"com.docker.network.internal": true, "com.docker.network.generic": {}},
            "IPv4Data": [{"Pool": "10.214.0.0/24", "Gateway": "10.214.0.1/24"}]
        }))
        .unwrap();
        let c = d.network_request(&r).unwrap();
        assert_eq!(c.name, "0123456789ab");
        assert!(c.internal);
        assert!(!c.masquerade);
    }

    #[test]
    fn what_a_switchyard_network_cannot_be_is_refused_with_the_reason() {
        let d = driver_without_instance();
        let req = |v: Value| -> api::CreateNetwork { serde_json::from_value(v).unwrap() };
        let e = d
            .network_request(&req(json!({
                "NetworkID": "n", "Options": {"com.docker.network.generic": {"parent": "eth0"}},
                "IPv4Data": [{"Pool": "10.214.0.0/24"}]
            })))
            .unwrap_err();
        assert!(e.starts_with("unknown option \"parent\""), "{e}");
        assert!(e.contains("mtu"), "{e}");
        let e = d
            .network_request(&req(json!({
                "NetworkID": "n", "Options": {"com.docker.network.generic": {"mtu": "big"}},
                "IPv4Data": [{"Pool": "10.214.0.0/24"}]
            })))
            .unwrap_err();
        assert_eq!(e, "option mtu=big: not a number");
        let e = d
            .network_request(&req(json!({"NetworkID": "n", "IPv4Data": []})))
            .unwrap_err();
        assert!(e.contains("--subnet"), "{e}");
        let e = d
            .network_request(&req(json!({
                "NetworkID": "n", "Options": {"com.docker.network.enable_ipv6": true},
                "IPv4Data": [{"Pool": "10.214.0.0/24"}]
            })))
            .unwrap_err();
        assert!(e.contains("IPv4 only"), "{e}");
    }

    #[test]
    fn an_unknown_verb_is_a_404_and_a_bad_body_a_refusal() {
        let mut d = driver_without_instance();
        assert!(matches!(
            d.handle("/NetworkDriver.Frobnicate", b"{}"),
            Err(Refusal::Unknown(_))
        ));
        let e = d.handle("/NetworkDriver.Join", b"not json").unwrap_err();
        assert!(e.message().contains("cannot read"), "{e:?}");
        let caps = d.handle("/NetworkDriver.GetCapabilities", b"").unwrap();
        assert_eq!(caps["Scope"], "local");
        let act = d.handle("/Plugin.Activate", b"").unwrap();
        assert_eq!(act["Implements"], json!(["NetworkDriver"]));
    }
}
