//! `[switch]`: settings of the instance as a whole — the namespace prefix, the sizes
//! of its tables, neighbor resolution, conntrack timeouts and the dataplane's workers.
//!
//! Every key has a default, so a file without `[switch]` is complete. The NAT port
//! range is a `[switch]` key too, but it is checked with the published ports
//! ([`super::publish`]), the other half of NAT.

use super::Checker;
use serde::{Deserialize, Serialize};
use switchyard_core::pipeline::{self, NeighborConfig, Timeouts};
use switchyard_os::port::uring::IoMode;

/// Longest namespace prefix (`[switch] prefix`).
pub const MAX_PREFIX: usize = 12;

/// Most FDB entries (`fdb_max`): sixteen times the hosts of a /16, the largest
/// network Docker hands out; past it a typo, not a plan (the table is allocated up
/// front, see `switchyard check`).
pub const MAX_FDB: usize = 1 << 20;
/// Most neighbor entries (`neighbor_max`): four /16 networks full of hosts.
pub const MAX_NEIGHBORS: usize = 1 << 18;
/// Most conntrack entries (`conntrack_max`): 4 Mi, sixteen times the kernel's
/// `nf_conntrack_max` on a 16 GB host (262 144); the table grows with use up to it,
/// about 220 bytes a flow, so a maximum is also a promise of memory.
pub const MAX_CONNTRACK: usize = 1 << 22;

/// `[switch]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_tcp_established_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_udp_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_udp_stream_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_icmp_secs: Option<u32>,
    /// Dataplane worker threads (and queues per TAP); 0: one per CPU core.
    #[serde(default)]
    pub workers: usize,
    /// Keep polling this many microseconds after the last packet before sleeping (0: off).
    #[serde(default)]
    pub busy_poll_us: u64,
    /// How frames sent into a TAP are spread over the workers: "hash" (the kernel's
    /// flow hash, workers unpinned) or "cpu" (the queue of the sending CPU, read by
    /// the worker pinned to it: lower latency, but a TCP flow sent from two CPUs
    /// can arrive out of order).
    #[serde(default = "default_steering")]
    pub steering: String,
    /// Keep polling briefly after a packet while that pays off, sleep otherwise
    /// (ignored when `busy_poll_us` is set).
    #[serde(default)]
    pub adaptive_poll: bool,
    /// How the workers read and write the TAPs: "uring" (a batch per system call,
    /// through io_uring) or "syscalls" (one read(2)/writev(2) per frame).
    #[serde(default = "default_io")]
    pub io: String,
    /// Use checksum and segmentation offloads on the TAPs (per network too).
    #[serde(default = "default_true")]
    pub offloads: bool,
    /// DNS servers names outside switchyard's zones are forwarded to: `192.0.2.53`
    /// or `192.0.2.53:5353` (checked by [`super::dns`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_upstream: Vec<String>,
    /// The namespace (a name under /run/netns, or a path) whose network carries the
    /// queries to `dns_upstream` (default: switchyard's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_upstream_netns: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_steering() -> String {
    "hash".into()
}

fn default_io() -> String {
    IoMode::default().as_str().into()
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
            steering: default_steering(),
            adaptive_poll: false,
            io: default_io(),
            offloads: true,
            dns_upstream: Vec::new(),
            dns_upstream_netns: None,
        }
    }
}

/// Checks a namespace prefix (`[switch] prefix`, or `--prefix` on the command line):
/// it becomes part of namespace names, of the run directory's path and of device
/// names, so it is 1 to [`MAX_PREFIX`] characters of letters, digits, '-', '_' or
/// '.', not starting with '.' (never a path like `..` or `a/b`). A device name has
/// at most 15 bytes (IFNAMSIZ less its NUL); 12 leaves room for a short suffix.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX
        && prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        && !prefix.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{prefix:?} must be 1 to {MAX_PREFIX} characters of letters, digits, '-', '_' \
             or '.', not starting with '.'"
        ))
    }
}

/// The prefix, the table sizes and neighbor resolution. Returns the neighbor
/// settings the pipeline takes.
pub(super) fn check_tables(sw: &SwitchSection, c: &mut Checker) -> NeighborConfig {
    if let Err(reason) = check_prefix(&sw.prefix) {
        c.bad("switch.prefix", reason);
    }
    if sw.fdb_max == 0 || sw.fdb_max > MAX_FDB {
        c.bad(
            "switch.fdb_max",
            format!(
                "{} must be from 1 to {MAX_FDB} (the table is allocated up front)",
                sw.fdb_max
            ),
        );
    }
    if sw.fdb_aging_secs == 0 {
        c.bad("switch.fdb_aging_secs", "must be at least 1 second");
    }
    if sw.conntrack_max == 0 || sw.conntrack_max > MAX_CONNTRACK {
        c.bad(
            "switch.conntrack_max",
            format!(
                "{} must be from 1 to {MAX_CONNTRACK} (the table may grow to it)",
                sw.conntrack_max
            ),
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
    if sw.neighbor_max == 0 || sw.neighbor_max > MAX_NEIGHBORS {
        c.bad(
            "switch.neighbor_max",
            format!(
                "{} must be from 1 to {MAX_NEIGHBORS} (the table is allocated up front)",
                sw.neighbor_max
            ),
        );
    }
    NeighborConfig {
        reachable_ms: u64::from(sw.arp_reachable_secs) * 1000,
        stale_ms: u64::from(sw.arp_stale_secs) * 1000,
        retrans_ms: u64::from(sw.arp_retry_ms),
        probes: sw.arp_retries,
        queue_len: sw.arp_queue,
        max: sw.neighbor_max,
        held_max: 256,
    }
}

/// Conntrack timeouts: the kernel's defaults, with the ones given replacing them.
pub(super) fn check_timeouts(sw: &SwitchSection, c: &mut Checker) -> Timeouts {
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
    timeouts
}

/// How the workers do their TAP I/O (`[switch] io`).
pub(super) fn check_io(sw: &SwitchSection, c: &mut Checker) -> IoMode {
    IoMode::from_name(&sw.io).unwrap_or_else(|| {
        c.bad(
            "switch.io",
            format!("{:?} must be \"uring\" or \"syscalls\"", sw.io),
        );
        IoMode::default()
    })
}

/// The dataplane's threads. Returns the number of workers, with 0 ("one per core")
/// resolved on this machine.
pub(super) fn check_workers(sw: &SwitchSection, c: &mut Checker) -> usize {
    if sw.workers > 64 {
        c.bad(
            "switch.workers",
            format!("{} workers is more than 64", sw.workers),
        );
    }
    if sw.busy_poll_us > 1_000_000 {
        c.bad("switch.busy_poll_us", "at most 1000000 (one second)");
    }
    if !matches!(sw.steering.as_str(), "cpu" | "hash") {
        c.bad(
            "switch.steering",
            format!("{:?} is not one of \"cpu\", \"hash\"", sw.steering),
        );
    }
    if sw.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        sw.workers
    }
}
