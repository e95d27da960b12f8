//! The control socket server: a unix socket (mode 0600) per instance, answering one
//! JSON request per line. It runs on its own thread and reads the dataplane's tables
//! by sending a query closure to the dataplane thread ([`dataplane::Handle::query`]),
//! so a `show` never races the packets being switched.

use super::protocol::*;
use crate::dataplane::{self, PortStatus, View};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use switchyard_core::pipeline::conntrack::ProtoState;
use switchyard_core::pipeline::{
    Conn, Counters, DropReason, Event, NeighborState, NextHop, Pipeline, PortId, RouteOrigin, Tuple,
};

/// What the server knows of each port from the topology (it does not change).
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub port: String,
    pub endpoint: String,
    pub interface: String,
    pub netns: String,
    pub network: String,
    pub mac: String,
    pub ip: String,
}

/// A running control server.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file) and starts answering.
    pub fn start(path: &Path, dp: dataplane::Handle, ports: Vec<PortInfo>) -> io::Result<Server> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ports = Arc::new(ports);
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-ctl".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        // One client at a time is plenty for a control socket; a
                        // timeout keeps a stuck client from blocking the others.
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let _ = serve(conn, &dp, &ports);
                    }
                }
            })?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the server and removes the socket file.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept with a connection of our own.
            let _ = UnixStream::connect(&self.path);
            let _ = t.join();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn serve(conn: UnixStream, dp: &dataplane::Handle, ports: &Arc<Vec<PortInfo>>) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        let resp = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => match handle(req, dp, ports) {
                Ok(v) => Response {
                    ok: Some(v),
                    error: None,
                },
                Err(e) => Response {
                    ok: None,
                    error: Some(e),
                },
            },
            Err(e) => Response {
                ok: None,
                error: Some(format!("bad request: {e}")),
            },
        };
        let mut text = serde_json::to_string(&resp).expect("responses serialize");
        text.push('\n');
        writer.write_all(text.as_bytes())?;
        line.clear();
    }
    Ok(())
}

fn handle(
    req: Request,
    dp: &dataplane::Handle,
    ports: &Arc<Vec<PortInfo>>,
) -> Result<serde_json::Value, String> {
    let ports = ports.clone();
    let value = match req {
        Request::Show { table } => match table {
            Table::Ports => gather(dp).map(|m| serde_json::to_value(port_rows(&m, &ports))),
            Table::Fdb => dp.query(|v| serde_json::to_value(fdb_rows(&v))),
            Table::Counters => gather(dp).map(|m| serde_json::to_value(counters(&m))),
            Table::Routes => dp.query(|v| serde_json::to_value(route_rows(&v))),
            Table::Neighbors => dp.query(|v| serde_json::to_value(neighbor_rows(&v))),
            Table::Conntrack => dp.query(|v| serde_json::to_value(conntrack_report(&v))),
        },
    };
    value.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

/// What every worker keeps on its own, summed over the workers.
struct Merged {
    counters: Counters,
    ports: Vec<PortStatus>,
    names: Vec<String>,
    workers: Vec<WorkerRow>,
}

/// Asks every worker for its counters, I/O counters and CPU time, and adds them up.
fn gather(dp: &dataplane::Handle) -> Result<Merged, dataplane::NotRunning> {
    let per_worker = dp.query_all(|v| {
        let names = (0..v.pipeline.ports().len())
            .map(|i| {
                v.pipeline
                    .port(PortId(i as u16))
                    .map_or_else(|| format!("#{i}"), |s| s.name.clone())
            })
            .collect::<Vec<_>>();
        (
            v.pipeline.counters().clone(),
            v.ports.to_vec(),
            v.cpu_time(),
            names,
            v.worker,
        )
    })?;
    let counters = Pipeline::merged_counters(per_worker.iter().map(|w| &w.0));
    let mut ports: Vec<PortStatus> = per_worker.first().map(|w| w.1.clone()).unwrap_or_default();
    for w in per_worker.iter().skip(1) {
        for (a, b) in ports.iter_mut().zip(&w.1) {
            a.io.add(&b.io);
        }
    }
    let workers = per_worker
        .iter()
        .map(|w| WorkerRow {
            worker: w.4,
            cpu_secs: w.2.as_secs_f64(),
            rx_frames: w.0.total().rx_frames,
        })
        .collect();
    let names = per_worker
        .into_iter()
        .next()
        .map(|w| w.3)
        .unwrap_or_default();
    Ok(Merged {
        counters,
        ports,
        names,
        workers,
    })
}

fn port_rows(m: &Merged, info: &[PortInfo]) -> Vec<PortRow> {
    info.iter()
        .zip(&m.ports)
        .zip(&m.counters.ports)
        .map(|((i, s), c)| PortRow {
            port: i.port.clone(),
            endpoint: i.endpoint.clone(),
            interface: i.interface.clone(),
            netns: i.netns.clone(),
            network: i.network.clone(),
            mac: i.mac.clone(),
            ip: i.ip.clone(),
            mtu: s.caps.mtu,
            vnet_hdr: s.caps.vnet_hdr,
            offloads: s.caps.offloads.to_string(),
            queues: s.caps.queues,
            rx_frames: c.rx_frames,
            tx_frames: s.io.tx_frames,
            dropped: c.dropped,
        })
        .collect()
}

fn fdb_rows(v: &View<'_>) -> Vec<FdbRow> {
    let p = &*v.pipeline;
    let now = v.now.secs();
    let mut rows: Vec<FdbRow> = p
        .fdb()
        .entries()
        .into_iter()
        .map(|(d, mac, e)| FdbRow {
            network: p
                .domain(d)
                .map_or_else(|| format!("#{}", d.0), |s| s.name.clone()),
            mac: mac.to_string(),
            port: p
                .port(e.port)
                .map_or_else(|| format!("#{}", e.port.0), |s| s.name.clone()),
            age_secs: now.saturating_sub(e.last_seen),
        })
        .collect();
    rows.sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    rows
}

fn counters(m: &Merged) -> CountersReport {
    let c = &m.counters;
    let ports = c
        .ports
        .iter()
        .enumerate()
        .map(|(i, pc)| {
            let io = m.ports.get(i).map(|s| s.io).unwrap_or_default();
            PortCounterRow {
                port: m.names.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
                rx_frames: pc.rx_frames,
                rx_bytes: pc.rx_bytes,
                forwarded: pc.forwarded,
                consumed: pc.consumed,
                dropped: pc.dropped,
                held: pc.held,
                tx_frames: io.tx_frames,
                tx_bytes: io.tx_bytes,
                tx_errors: io.tx_errors,
                rx_errors: io.rx_errors,
                rx_gso: io.rx_gso,
                tx_gso: io.tx_gso,
                tx_segmented: io.tx_segmented,
                tx_segments: io.tx_segments,
                tx_coalesced: io.tx_coalesced,
                tx_coalesced_datagrams: io.tx_coalesced_datagrams,
                drops: pc
                    .drop_reasons()
                    .map(|(r, n)| (r.id().to_string(), n))
                    .collect(),
            }
        })
        .collect();
    let total = c.total();
    CountersReport {
        ports,
        drops: DropReason::ALL
            .iter()
            .map(|&r| NamedCount {
                id: r.id().into(),
                stage: r.stage().into(),
                text: r.text().into(),
                count: total.drops[r as usize],
            })
            .collect(),
        events: Event::ALL
            .iter()
            .map(|&e| NamedCount {
                id: e.id().into(),
                stage: e.stage().into(),
                text: e.text().into(),
                count: c.events(e),
            })
            .collect(),
        workers: m.workers.clone(),
    }
}

fn route_rows(v: &View<'_>) -> Vec<RouteRow> {
    let p = &*v.pipeline;
    let mut rows: Vec<RouteRow> = p
        .fib()
        .routes()
        .iter()
        .map(|r| {
            let d = r.next_hop.domain();
            let spec = p.domain(d);
            RouteRow {
                prefix: r.prefix.to_string(),
                via: match r.next_hop {
                    NextHop::Via { gateway, .. } => Some(gateway.to_string()),
                    NextHop::Connected { .. } => None,
                },
                network: spec.map_or_else(|| format!("#{}", d.0), |s| s.name.clone()),
                origin: match r.origin {
                    RouteOrigin::Connected => "connected".into(),
                    RouteOrigin::Static => "static".into(),
                },
                mtu: spec.map_or(0, |s| s.mtu),
            }
        })
        .collect();
    // Most specific first, as a router reads its table.
    rows.sort_by(|a, b| {
        let len = |r: &RouteRow| {
            r.prefix
                .rsplit('/')
                .next()
                .and_then(|l| l.parse::<u8>().ok())
                .unwrap_or(0)
        };
        len(b).cmp(&len(a)).then_with(|| a.prefix.cmp(&b.prefix))
    });
    rows
}

fn neighbor_rows(v: &View<'_>) -> Vec<NeighborRow> {
    let p = &*v.pipeline;
    let mut rows: Vec<NeighborRow> = p
        .neighbors()
        .entries()
        .into_iter()
        .map(|n| NeighborRow {
            ip: n.ip.to_string(),
            mac: if n.state == NeighborState::Incomplete {
                String::new()
            } else {
                n.mac.to_string()
            },
            network: p
                .domain(n.domain)
                .map_or_else(|| format!("#{}", n.domain.0), |s| s.name.clone()),
            state: serde_json::to_value(n.state)
                .ok()
                .and_then(|s| s.as_str().map(String::from))
                .unwrap_or_default(),
            age_secs: v.now.0.saturating_sub(n.updated) / 1_000_000_000,
            queued: n.queued(),
        })
        .collect();
    rows.sort_by_key(|r| {
        r.ip.parse::<std::net::Ipv4Addr>()
            .map(u32::from)
            .unwrap_or(0)
    });
    rows
}

fn conntrack_report(v: &View<'_>) -> ConntrackReport {
    let p = &*v.pipeline;
    let ct = p.conntrack();
    let tuple = |t: &Tuple, d: usize, c: &Conn| FlowTuple {
        src: t.src.to_string(),
        dst: t.dst.to_string(),
        sport: t.sport,
        dport: t.dport,
        packets: c.packets[d],
        bytes: c.bytes[d],
    };
    let mut connections: Vec<ConntrackRow> = ct
        .entries(v.now)
        .into_iter()
        .map(|(c, left)| ConntrackRow {
            // "tcp", "udp", "icmp", or "proto N".
            proto: c.orig.proto.to_string(),
            state: match c.state {
                ProtoState::Tcp(s) => s.name().into(),
                ProtoState::Udp { replied: false } => "UNREPLIED".into(),
                ProtoState::Udp { replied: true } => "REPLIED".into(),
                ProtoState::Icmp if c.packets[1] == 0 => "UNREPLIED".into(),
                ProtoState::Icmp => "REPLIED".into(),
            },
            timeout_secs: left,
            assured: c.assured,
            nat: match (c.is_snat(), c.is_dnat()) {
                (true, true) => "snat+dnat".into(),
                (false, true) => "dnat".into(),
                _ => "snat".into(),
            },
            original: tuple(&c.orig, 0, &c),
            reply: tuple(&c.reply, 1, &c),
        })
        .collect();
    connections.sort_by(|a, b| {
        (&a.original.src, a.original.sport).cmp(&(&b.original.src, b.original.sport))
    });
    ConntrackReport {
        count: ct.len(),
        max: ct.capacity(),
        connections,
    }
}
