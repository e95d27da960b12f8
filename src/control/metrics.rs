//! `metrics` — the Prometheus endpoint of `switchyard up --metrics ADDR:PORT`.
//!
//! A scrape of `/metrics` reports what `show counters` and `show ports` report, from the
//! same gathering ([`snapshot`](super::snapshot)), in the Prometheus text exposition
//! format (0.0.4) as the `prometheus-client` crate writes it; every name starts with
//! `switchyard_`, and `docs/metrics.md` lists them. Any other path is answered 404.
//!
//! Who may listen where is decided before anything is created: [`Listener::bind`]
//! refuses an address that is not loopback unless the operator said `--metrics-public`
//! (the endpoint tells whoever reaches it every port, counter and table size of the
//! switch, and it has no authentication), and a port already taken fails there too,
//! before a namespace exists.
//!
//! Serving takes threads of its own, never a worker's, and no HTTP client can hold it
//! or the rest of the switch up:
//!
//! * HTTP itself is `tiny_http`'s, listening on a unix socket in the instance's private
//!   directory. `tiny_http` reads each connection on a thread of its own with no time
//!   limit, so it is never handed a TCP connection directly: the [`relay`] accepts them,
//!   at most [`relay::MAX_CONNECTIONS`] at once, closes any that makes no progress for
//!   [`relay::IDLE_TIMEOUT`] or lives longer than [`relay::MAX_LIFETIME`], caps what a
//!   client may send, and copies bytes between each client and a unix connection of its
//!   own. A client that connects and says nothing costs one slot for five seconds.
//! * one responder thread answers the requests `tiny_http` has read, one at a time. A
//!   scrape is a small copy each worker makes between two batches (the same as `show
//!   counters`) and three table sizes read on the responder's thread. The relay takes a
//!   response whole as fast as it is written, so a client that does not read never
//!   blocks the responder.
//! * stopping closes the TCP port and every connection at once, then the responder and
//!   the unix socket; it waits for no client.

mod relay;
#[cfg(test)]
mod tests;

use super::protocol::CountersReport;
use super::snapshot::{self, LiveTopology, TableSize};
use crate::dataplane;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use switchyard_core::pipeline::DropReason;
use switchyard_os::port::vxlan;

/// The path metrics are served at.
pub const PATH: &str = "/metrics";

/// Why `--metrics` cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "--metrics {addr}: {ip} is not a loopback address; the metrics endpoint tells \
         whoever reaches it every port, counter and table size of the switch, without \
         authentication. Serve it on 127.0.0.1 or [::1] (and scrape through a tunnel or a \
         local agent), or add --metrics-public to serve it on {addr} anyway",
        ip = addr.ip()
    )]
    NotLoopback { addr: SocketAddr },
    #[error("--metrics {addr}: cannot listen there: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// True if `addr` only reaches this machine: 127.0.0.0/8, ::1, or either written as
/// an IPv4-mapped IPv6 address.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Refuses an address that is not loopback unless `public` is set.
pub fn check_address(addr: SocketAddr, public: bool) -> Result<(), MetricsError> {
    if public || is_loopback(&addr) {
        Ok(())
    } else {
        Err(MetricsError::NotLoopback { addr })
    }
}

/// The TCP port of the endpoint, bound (and listening) but not served yet: taken
/// before the topology is created, so a refused address or a port in use fails
/// before anything exists. Dropping it closes the port.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Checks `addr` ([`check_address`]) and listens on it. Port 0 takes a free port;
    /// [`Listener::local_addr`] says which.
    pub fn bind(addr: SocketAddr, public: bool) -> Result<Listener, MetricsError> {
        check_address(addr, public)?;
        let tcp = TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = tcp
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(Listener { tcp, addr })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The running endpoint: the relay, `tiny_http` on its unix socket, and the responder.
pub struct Exporter {
    addr: SocketAddr,
    relay: Option<relay::Relay>,
    http: Option<Arc<tiny_http::Server>>,
    responder: Option<JoinHandle<()>>,
    /// Set before the responder is unblocked, so that its end is not taken for a failure.
    stopping: Arc<AtomicBool>,
    internal: PathBuf,
}

impl Exporter {
    /// Serves `listener`, with `tiny_http` on the unix socket `internal` (in a
    /// directory only the owner may enter; a stale file there is replaced).
    pub fn start(
        listener: Listener,
        internal: &Path,
        dp: dataplane::Handle,
        topology: LiveTopology,
        dns: Option<crate::dns::DnsHandle>,
    ) -> io::Result<Exporter> {
        if std::fs::symlink_metadata(internal).is_ok() {
            std::fs::remove_file(internal)?;
        }
        let unix = std::os::unix::net::UnixListener::bind(internal)?;
        let mut ex = Exporter {
            addr: listener.addr,
            relay: None,
            http: None,
            responder: None,
            stopping: Arc::new(AtomicBool::new(false)),
            internal: internal.to_path_buf(),
        };
        std::fs::set_permissions(internal, std::fs::Permissions::from_mode(0o600))?;
        let http = tiny_http::Server::from_listener(unix, None)
            .map(Arc::new)
            .map_err(|e| io::Error::other(format!("start the HTTP server: {e}")))?;
        ex.http = Some(http.clone());
        let stopping = ex.stopping.clone();
        ex.responder = Some(
            std::thread::Builder::new()
                .name("switchyard-metrics".into())
                .spawn(move || {
                    respond_until_unblocked(&http, &stopping, &dp, &topology, dns.as_ref())
                })?,
        );
        ex.relay = Some(relay::Relay::start(listener.tcp, internal)?);
        tracing::debug!(addr = %ex.addr, "metrics endpoint listening");
        Ok(ex)
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port and every connection, and stops the responder.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        // The relay first: the port closes and every client's connection with it, so
        // an answer being written fails at once instead of waiting for its reader.
        if let Some(r) = self.relay.take() {
            r.stop();
        }
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(h) = self.http.as_ref() {
            h.unblock();
        }
        if let Some(t) = self.responder.take() {
            if t.join().is_err() {
                tracing::error!("the metrics responder panicked");
            }
        }
        // The last reference: `tiny_http` closes its listener (and removes the file,
        // which is also removed here for a start that failed before `tiny_http` ran).
        self.http.take();
        if let Err(e) = std::fs::remove_file(&self.internal) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", self.internal.display());
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Answers requests until [`tiny_http::Server::unblock`] (or until `tiny_http` itself
/// fails, which is logged: the relay then closes each client after its idle timeout).
fn respond_until_unblocked(
    http: &tiny_http::Server,
    stopping: &AtomicBool,
    dp: &dataplane::Handle,
    topology: &LiveTopology,
    dns: Option<&crate::dns::DnsHandle>,
) {
    loop {
        let rq = match http.recv() {
            Ok(rq) => rq,
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    tracing::error!("the metrics endpoint stopped answering: {e}");
                }
                return;
            }
        };
        // A bug while answering costs this answer, not the endpoint.
        let response = catch_unwind(AssertUnwindSafe(|| {
            answer(rq.method(), rq.url(), dp, topology, dns)
        }))
        .unwrap_or_else(|_| {
            tracing::error!("answering a metrics scrape panicked");
            text(500, "switchyard failed while answering\n".into())
        });
        if let Err(e) = rq.respond(response) {
            tracing::debug!("metrics client gone before its answer: {e}");
        }
    }
}

type Response = tiny_http::Response<io::Cursor<Vec<u8>>>;

fn text(status: u16, body: String) -> Response {
    tiny_http::Response::from_string(body).with_status_code(status)
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// The response to one request.
fn answer(
    method: &tiny_http::Method,
    url: &str,
    dp: &dataplane::Handle,
    topology: &LiveTopology,
    dns: Option<&crate::dns::DnsHandle>,
) -> Response {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    if path != PATH {
        return text(404, format!("not found; metrics are at {PATH}\n"));
    }
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return text(405, "metrics are read with GET\n".into())
            .with_header(header("Allow", "GET, HEAD"));
    }
    match render(dp, topology, dns) {
        Ok(body) => {
            text(200, body).with_header(header("Content-Type", prometheus_text::CONTENT_TYPE))
        }
        Err(dataplane::NotRunning) => text(
            503,
            "the dataplane is not running (its workers stopped; the log of `switchyard up` \
             says why)\n"
                .into(),
        ),
    }
}

/// One scrape: the counters and ports as `show counters` has them, the table sizes,
/// written in the Prometheus text format.
pub fn render(
    dp: &dataplane::Handle,
    topology: &LiveTopology,
    dns: Option<&crate::dns::DnsHandle>,
) -> Result<String, dataplane::NotRunning> {
    let merged = snapshot::gather(dp)?;
    let counters = snapshot::counters(&merged);
    // Each counted port's network, found by the port's name in the topology.
    let network_of: std::collections::HashMap<String, String> = topology
        .ports()
        .into_iter()
        .flatten()
        .map(|p| (p.port, p.network))
        .collect();
    let networks = counters
        .ports
        .iter()
        .map(|r| network_of.get(&r.port).cloned().unwrap_or_default())
        .collect();
    let scrape = Scrape {
        counters,
        networks,
        tables: snapshot::table_sizes(dp)?,
        dns: dns.map(|d| (d.counters(), d.frame_stats())),
    };
    Ok(encode(scrape))
}

/// Writes `scrape` in the Prometheus text format.
fn encode(scrape: Scrape) -> String {
    let mut registry = Registry::with_prefix("switchyard");
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// What one scrape reports; written out by its [`Collector`] implementation.
#[derive(Debug)]
struct Scrape {
    counters: CountersReport,
    /// The network of each port, by port index.
    networks: Vec<String>,
    tables: [TableSize; 3],
    /// The DNS service's counters and frame figures, when it runs.
    dns: Option<(
        switchyard_dns::CountersSnapshot,
        crate::dns::service::FrameStats,
    )>,
}

/// A per-port counter: its name (without `switchyard_` and `_total`), its help, and
/// its value in a `show counters` row.
type PortCounter = (
    &'static str,
    &'static str,
    fn(&super::protocol::PortCounterRow) -> u64,
);

/// A gauge of every bounded table: its name, its help, and its value for one table.
type TableGauge = (&'static str, &'static str, fn(&TableSize) -> usize);

const PORT_COUNTERS: [PortCounter; 15] = [
    ("port_rx_packets", "Frames read from the port's TAP queues.", |p| p.rx_frames),
    ("port_rx_bytes", "Bytes read from the port's TAP queues.", |p| p.rx_bytes),
    ("port_tx_packets", "Frames written to the port (a segment counts one, a coalesced UDP super-frame its datagrams).", |p| p.tx_frames),
    ("port_tx_bytes", "Bytes written to the port.", |p| p.tx_bytes),
    ("port_forwarded", "Frames received on the port and forwarded (to one port, flooded or routed).", |p| p.forwarded),
    ("port_consumed", "Frames received on the port and consumed by switchyard (ARP and ping for its addresses, DNS queries for its DNS service).", |p| p.consumed),
    ("port_dropped", "Frames received on the port and dropped, all reasons together.", |p| p.dropped),
    ("port_tx_errors", "Writes to the port the kernel refused.", |p| p.tx_errors),
    ("port_rx_errors", "Reads from the port that failed with something other than would-block.", |p| p.rx_errors),
    ("port_rx_gso", "Super-frames received on the port (segmentation offload at the sender).", |p| p.rx_gso),
    ("port_punted", "DNS queries received on the port and handed to the DNS service.", |p| p.punted),
    ("port_punt_dropped", "DNS queries received on the port and dropped before the DNS service (it is behind or not running).", |p| p.punt_dropped),
    ("port_punt_replies", "Replies of the DNS service sent out of the port.", |p| p.punt_replies),
    ("port_punt_stale", "Replies of the DNS service dropped because the port is no longer the endpoint that asked.", |p| p.punt_stale),
    ("port_rx_refused", "Frames a host interface (parent) refused before the pipeline: 802.1Q-tagged, longer than a buffer, dropped by the kernel for its packet sockets, or (ipvlan-l2) for no one on the network.", |p| p.rx_tagged + p.rx_truncated + p.rx_kernel_drops + p.rx_unclaimed),
];

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        let network = |i: usize| self.networks.get(i).map_or("", String::as_str);
        for (name, help, value) in PORT_COUNTERS {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, p) in c.ports.iter().enumerate() {
                let labels = [("port", p.port.as_str()), ("network", network(i))];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(p), None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "port_held",
            "Packets received on the port and waiting right now for their next hop's MAC.",
            None,
            MetricType::Gauge,
        )?;
        for (i, p) in c.ports.iter().enumerate() {
            let labels = [("port", p.port.as_str()), ("network", network(i))];
            m.encode_family(&labels)?.encode_gauge(&p.held)?;
        }
        // Every reason on every port, zeros included, so a rate over a reason that
        // starts counting has a series to start from.
        let mut m = enc.encode_descriptor(
            "drops",
            "Frames received on the port and dropped, by reason (the ids of show counters).",
            None,
            MetricType::Counter,
        )?;
        for p in &c.ports {
            // A tunnel port (`vxlan:NETWORK`: no endpoint name has a colon) also has
            // the reasons it refuses datagrams for itself.
            let tunnel = p.port.starts_with("vxlan:");
            let own = vxlan::DROPS.iter().filter(|_| tunnel).map(|(id, _)| *id);
            for id in DropReason::ALL.iter().map(|r| r.id()).chain(own) {
                let n = p.drops.get(id).copied().unwrap_or(0);
                let labels = [("port", p.port.as_str()), ("reason", id)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "events",
            "Stage events, by kind (the events of show counters).",
            None,
            MetricType::Counter,
        )?;
        for e in &c.events {
            let labels = [("event", e.id.as_str()), ("stage", e.stage.as_str())];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&e.count, None)?;
        }
        let table_gauges: [TableGauge; 2] = [
            (
                "table_entries",
                "Entries in a bounded table right now.",
                |t| t.entries,
            ),
            (
                "table_capacity",
                "The most entries a bounded table holds.",
                |t| t.capacity,
            ),
        ];
        for (name, help, value) in table_gauges {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for t in &self.tables {
                m.encode_family(&[("table", t.name)])?
                    .encode_gauge(&value(t))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "worker_cpu_seconds",
            "CPU time a dataplane worker thread has used (user and system).",
            None,
            MetricType::Counter,
        )?;
        for w in &c.workers {
            let id = w.worker.to_string();
            m.encode_family(&[("worker", id.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&w.cpu_secs, None)?;
        }
        let mut m = enc.encode_descriptor(
            "worker_rx_packets",
            "Frames a dataplane worker has read, over all ports.",
            None,
            MetricType::Counter,
        )?;
        for w in &c.workers {
            let id = w.worker.to_string();
            m.encode_family(&[("worker", id.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&w.rx_frames, None)?;
        }
        if let Some((counters, frames)) = &self.dns {
            // One counter per figure of `show dns`, as `switchyard_dns_<name>_total`.
            for ((name, value), (_, help)) in counters.iter().zip(switchyard_dns::COUNTERS) {
                let name = format!("dns_{name}");
                enc.encode_descriptor(&name, help, None, MetricType::Counter)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
            for (name, help, value) in [
                (
                    "dns_punted_frames",
                    "Frames the workers handed to the DNS service.",
                    frames.punted,
                ),
                (
                    "dns_bad_frames",
                    "Punted frames that were not well-formed UDP/TCP over IPv4.",
                    frames.bad_frames,
                ),
                (
                    "dns_answers_sent",
                    "Answer frames the DNS service handed to workers.",
                    frames.answers_sent,
                ),
                (
                    "dns_answers_lost",
                    "Answers lost for want of a buffer or of room in a worker's queue.",
                    frames.no_buffer + frames.worker_busy,
                ),
                (
                    "dns_tcp_connections",
                    "DNS connections over TCP accepted.",
                    frames.tcp_connections,
                ),
            ] {
                enc.encode_descriptor(name, help, None, MetricType::Counter)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
            enc.encode_descriptor(
                "dns_outstanding",
                "Forwarded DNS queries waiting for an upstream answer.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&frames.outstanding)?;
        }
        Ok(())
    }
}
