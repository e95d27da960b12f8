//! The control protocol: one JSON request per line on the control socket, one JSON
//! response per line back. The `--json` output of the `show` commands is exactly the
//! `ok` payload, so scripts can rely on the shapes documented in the README.

use serde::{Deserialize, Serialize};

/// A request from a CLI verb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// `show <table>`
    Show { table: Table },
}

/// The tables `show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Ports: endpoint, interface, network, addresses, MTU, offloads, I/O counters.
    Ports,
    /// The forwarding database: learned MACs per network, their port and age.
    Fdb,
    /// Per-port accounting, drops by reason, and stage events.
    Counters,
    /// The FIB: connected networks and static routes.
    Routes,
    /// The neighbor (ARP) table.
    Neighbors,
    /// Tracked connections (translated flows), like `conntrack -L`.
    Conntrack,
}

/// A response: exactly one of `ok` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One row of `show ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    pub port: String,
    pub endpoint: String,
    pub interface: String,
    pub netns: String,
    pub network: String,
    pub mac: String,
    /// Address with prefix length, e.g. "172.17.0.2/16".
    pub ip: String,
    pub mtu: u16,
    pub vnet_hdr: bool,
    pub offloads: String,
    pub queues: u16,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub dropped: u64,
}

/// One row of `show fdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    pub network: String,
    pub mac: String,
    pub port: String,
    /// Seconds since the MAC was last seen as a source.
    pub age_secs: u32,
}

/// One port in `show counters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounterRow {
    pub port: String,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub consumed: u64,
    pub dropped: u64,
    /// Waiting for their next hop's MAC right now.
    pub held: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub rx_errors: u64,
    /// Super-frames received (the sender used segmentation offload).
    pub rx_gso: u64,
    /// Super-frames sent on whole to this port.
    pub tx_gso: u64,
    /// Super-frames cut in software for this port (it has no segmentation offload),
    /// and the segments that made.
    pub tx_segmented: u64,
    pub tx_segments: u64,
    /// UDP super-frames built from runs of small datagrams of one flow, and the
    /// datagrams they carried.
    pub tx_coalesced: u64,
    pub tx_coalesced_datagrams: u64,
    /// Non-zero drop counts by reason id.
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// A named counter with its stage and description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCount {
    pub id: String,
    pub stage: String,
    pub text: String,
    pub count: u64,
}

/// `show counters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountersReport {
    pub ports: Vec<PortCounterRow>,
    /// Every drop reason with its total over all ports (zeros included).
    pub drops: Vec<NamedCount>,
    /// Every event counter (zeros included).
    pub events: Vec<NamedCount>,
    /// The dataplane workers: CPU time used and frames received by each.
    pub workers: Vec<WorkerRow>,
}

/// One dataplane worker in `show counters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: usize,
    /// CPU seconds (user + system) the worker thread has used.
    pub cpu_secs: f64,
    pub rx_frames: u64,
}

/// One row of `show routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    pub prefix: String,
    /// The router packets go to, for static routes; none for connected networks.
    pub via: Option<String>,
    /// The network packets leave on.
    pub network: String,
    /// "connected" or "static".
    pub origin: String,
    /// MTU of the network packets leave on.
    pub mtu: u16,
}

/// One row of `show neighbors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborRow {
    pub ip: String,
    /// Empty while incomplete.
    pub mac: String,
    pub network: String,
    /// incomplete, reachable, stale or probe.
    pub state: String,
    /// Seconds since the entry was last confirmed or changed.
    pub age_secs: u64,
    /// Packets waiting for this neighbor.
    pub queued: usize,
}

/// One direction of a tracked flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTuple {
    pub src: String,
    pub dst: String,
    /// Ports, or the ICMP echo identifier in both.
    pub sport: u16,
    pub dport: u16,
    pub packets: u64,
    pub bytes: u64,
}

/// One row of `show conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackRow {
    /// tcp, udp or icmp.
    pub proto: String,
    /// The TCP state (SYN_SENT ... CLOSE), or UNREPLIED/REPLIED for UDP and ICMP.
    pub state: String,
    /// Seconds until the entry expires.
    pub timeout_secs: u64,
    /// Traffic seen both ways: not evicted when the table fills.
    pub assured: bool,
    /// "snat", "dnat" or "snat+dnat".
    pub nat: String,
    /// As the first packet arrived.
    pub original: FlowTuple,
    /// As replies arrive (after translation).
    pub reply: FlowTuple,
}

/// `show conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackReport {
    pub count: usize,
    pub max: usize,
    pub connections: Vec<ConntrackRow>,
}
