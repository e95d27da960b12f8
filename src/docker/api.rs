//! The messages of Docker's remote network driver protocol (libnetwork's "remote"
//! driver): what dockerd POSTs to `/NetworkDriver.<Verb>` and what it expects back.
//! Field names are Docker's (Go's exported names, hence the capitals).
//!
//! Only what switchyard reads is typed; the rest of a request is ignored, as Docker
//! adds fields between versions. Answers are typed completely.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of every answer, as Docker's plugin helpers send it.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// `/Plugin.Activate`'s answer: the kinds of plugin this is.
#[derive(Debug, Serialize)]
pub struct Activate {
    #[serde(rename = "Implements")]
    pub implements: Vec<&'static str>,
}

/// `/NetworkDriver.GetCapabilities`'s answer. `local`: the networks exist on this host
/// only, so Docker needs no cluster store to share them.
#[derive(Debug, Serialize)]
pub struct Capabilities {
    #[serde(rename = "Scope")]
    pub scope: &'static str,
    #[serde(rename = "ConnectivityScope")]
    pub connectivity_scope: &'static str,
}

/// One address pool of a network, as Docker's IPAM handed it out.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamData {
    /// The subnet, `10.214.0.0/24`.
    #[serde(rename = "Pool", default)]
    pub pool: String,
    /// The gateway with the pool's prefix length, `10.214.0.1/24`.
    #[serde(rename = "Gateway", default)]
    pub gateway: String,
}

/// `/NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// `com.docker.network.generic` holds the `-o key=value` options;
    /// `com.docker.network.internal` is `--internal`; `com.docker.network.enable_ipv6`
    /// is `--ipv6`.
    #[serde(rename = "Options", default)]
    pub options: Map<String, Value>,
    #[serde(rename = "IPv4Data", default)]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default)]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// `/NetworkDriver.DeleteNetwork`.
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkId {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The interface part of `/NetworkDriver.CreateEndpoint`, both ways.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Interface {
    /// The address Docker's IPAM chose, with the prefix length: `10.214.0.2/24`.
    #[serde(rename = "Address", default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(
        rename = "AddressIPv6",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    #[serde(
        rename = "MacAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub mac_address: String,
}

/// `/NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Interface", default)]
    pub interface: Option<Interface>,
    /// `com.docker.network.portmap` holds `-p`'s port mappings.
    #[serde(rename = "Options", default)]
    pub options: Map<String, Value>,
}

/// `/NetworkDriver.CreateEndpoint`'s answer. The interface says only what Docker did
/// not: a MAC when Docker gave none (Docker refuses an answer that restates what it
/// sent).
#[derive(Debug, Serialize)]
pub struct CreateEndpointAnswer {
    #[serde(rename = "Interface")]
    pub interface: Interface,
}

/// One `-p` mapping in `com.docker.network.portmap`.
#[derive(Debug, Clone, Deserialize)]
pub struct PortBinding {
    /// The IP protocol number: 6 TCP, 17 UDP, 132 SCTP.
    #[serde(rename = "Proto")]
    pub proto: u8,
    /// The container's port.
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "HostIP", default)]
    pub host_ip: String,
    #[serde(rename = "HostPort", default)]
    pub host_port: u16,
    #[serde(rename = "HostPortEnd", default)]
    pub host_port_end: u16,
}

/// The requests that name one endpoint (`Leave`, `DeleteEndpoint`,
/// `EndpointOperInfo`, the external connectivity pair).
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointId {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `/NetworkDriver.Join`: the container's namespace is `sandbox_key`.
#[derive(Debug, Clone, Deserialize)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
}

/// The device Docker moves into the container, and the prefix of its name there
/// (Docker appends a number: `eth0`, `eth1`, ...).
#[derive(Debug, Serialize)]
pub struct InterfaceName {
    #[serde(rename = "SrcName")]
    pub src_name: String,
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: &'static str,
}

/// `/NetworkDriver.Join`'s answer.
#[derive(Debug, Serialize)]
pub struct JoinAnswer {
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    /// The container's default gateway: switchyard's address on the network.
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// switchyard is the way out: Docker must not add its own gateway bridge.
    #[serde(rename = "DisableGatewayService")]
    pub disable_gateway_service: bool,
}

/// `/NetworkDriver.EndpointOperInfo`'s answer: shown by nothing in Docker 20.10, but
/// it is where a driver says what it made.
#[derive(Debug, Serialize)]
pub struct OperInfo {
    #[serde(rename = "Value")]
    pub value: Map<String, Value>,
}

/// Every refusal: Docker shows `Err` to the user, prefixed with the driver's name.
#[derive(Debug, Serialize)]
pub struct Refusal {
    #[serde(rename = "Err")]
    pub err: String,
}

/// An empty success (`{}`).
#[derive(Debug, Serialize)]
pub struct Empty {}
