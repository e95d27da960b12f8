//! The requests that change a running instance — Docker's verbs for networks and
//! endpoints, and the `[[allow]]` and `[[route]]` rules — and their replies.
//!
//! A change is checked by the same validation as a config file (the running topology
//! with the change applied is validated as a whole), so it is refused with the same
//! messages ([`super::ErrorCode::Invalid`]); one that passes is applied without
//! stopping the workers. What a reply describes is what the instance runs afterwards.

use serde::{Deserialize, Serialize};

/// `network_create`: a new network, as `docker network create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// The subnet, `172.20.0.0/16`.
    pub subnet: String,
    /// switchyard's address on it (default: the subnet's first host address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// New flows from the network to the outside are masqueraded.
    #[serde(default)]
    pub masquerade: bool,
    /// No way in or out: the network is never joined to another, masqueraded or
    /// published (Docker's `--internal`).
    #[serde(default)]
    pub internal: bool,
    /// Endpoints may talk to each other (Docker's `enable_icc`; default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icc: Option<bool>,
    /// A DNS server at the gateway (default: on, as the network has a gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<bool>,
    /// The search domain of its endpoints (`app.internal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
}

/// `endpoint_create`: a new endpoint with one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    pub name: String,
    /// The network its interface is on.
    pub network: String,
    /// Its address (default: the lowest free one, as Docker's IPAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Its MAC (default: derived from the address, `02:42:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Published ports, `8080:80/tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Attach a namespace switchyard did not create, by path (`/run/netns/x`,
    /// `/proc/PID/ns/net`): only the interface is added there, and only it is removed.
    /// Absent: switchyard creates the namespace `<prefix><name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The interface's name inside the namespace (default `eth0`); with `handover`,
    /// its name in switchyard's own namespace until the runtime moves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// More DNS names of the endpoint on its DNS networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Make the TAP in switchyard's own namespace, named `ifname`, for a container
    /// runtime to move into `netns` and configure (Docker's remote network drivers
    /// return such a device from `Join`): no address, route or link up is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handover: bool,
}

/// `network_connect`: one more interface for an endpoint, on another network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConnect {
    pub network: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The interface's name (default: the first free `ethN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// A network as `network inspect` and `network ls` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRow {
    pub name: String,
    pub subnet: String,
    pub gateway: Option<String>,
    pub mtu: u16,
    /// `bridge` or `l3`.
    pub mode: String,
    pub masquerade: bool,
    pub external: bool,
    pub internal: bool,
    pub icc: bool,
    /// A DNS server answers at its gateway (absent in the replies of a switchyard
    /// from before DNS: false).
    #[serde(default)]
    pub dns: bool,
    /// The search domain of its endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    /// The interfaces attached to it.
    pub endpoints: Vec<AttachedRow>,
}

/// One interface attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedRow {
    pub endpoint: String,
    /// The switchyard port it is (as `show ports` names it).
    pub port: String,
    pub interface: String,
    pub mac: String,
    /// Address and prefix length, `172.17.0.2/16`.
    pub ip: String,
}

/// An endpoint as `endpoint create`, `network connect` and `endpoint ls` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRow {
    pub name: String,
    /// Its namespace: a name under /run/netns, or the path it was attached by.
    pub netns: String,
    /// True if switchyard attached a namespace it did not create.
    pub foreign: bool,
    /// True if its interface was made in switchyard's own namespace for a runtime to
    /// move into `netns` (absent in the replies of older builds: false).
    #[serde(default)]
    pub handover: bool,
    pub interfaces: Vec<InterfaceRow>,
    /// Its published ports, `8080:80/tcp`.
    pub publish: Vec<String>,
    /// Its DNS names besides its own.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One interface of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRow {
    pub ifname: String,
    pub network: String,
    /// The switchyard port it is.
    pub port: String,
    pub mac: String,
    /// Address and prefix length.
    pub ip: String,
    /// The network's gateway, which the endpoint's default route goes through if this
    /// is its first interface.
    pub gateway: Option<String>,
    pub mtu: u16,
}

/// What a change that removes or rewires something did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The change, in words (`endpoint web removed`).
    pub change: String,
    /// Table entries removed with it.
    pub forgotten: ForgottenRow,
}

/// Table entries a change removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgottenRow {
    pub fdb: usize,
    pub neighbors: usize,
    /// Packets that were waiting for a neighbor, dropped.
    pub held: usize,
    pub conntrack: usize,
}
