//! What `show counters` and `show ports` report, gathered once for every reader: the
//! control socket answers with it and the metrics endpoint exports it, so the two can
//! never disagree. What each worker counts on its own (pipeline counters, port I/O,
//! CPU time) is a small copy each worker makes between two batches
//! ([`dataplane::Handle::query_all`]), added up here; table sizes are read on the
//! caller's thread through [`dataplane::Handle::tables`].

use super::protocol::{CountersReport, NamedCount, PortCounterRow, PortRow, WorkerRow};
use crate::dataplane::{self, PortStatus};
use crate::topology::Topology;
use std::sync::{Arc, RwLock};
use switchyard_core::pipeline::{Counters, DropReason, Event, Pipeline, PortId};
use switchyard_os::port::uring::IoMode;
use switchyard_os::port::vxlan;

/// The topology an instance runs now, shared by everything that describes it (the
/// control socket, the metrics endpoint); a change to the instance replaces it.
#[derive(Clone)]
pub struct LiveTopology(Arc<RwLock<Topology>>);

impl LiveTopology {
    pub fn new(t: Topology) -> LiveTopology {
        LiveTopology(Arc::new(RwLock::new(t)))
    }

    /// A copy of what runs now.
    pub fn get(&self) -> Topology {
        self.read(Topology::clone)
    }

    /// Reads the topology without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&Topology) -> T) -> T {
        f(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces it, once a change has been carried out.
    pub fn set(&self, t: Topology) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// What the topology says of each port, by port number (`None`: a vacant slot).
    pub fn ports(&self) -> Vec<Option<PortInfo>> {
        self.read(port_infos)
    }
}

/// What the topology says of each port, by port number.
pub fn port_infos(t: &Topology) -> Vec<Option<PortInfo>> {
    let slots = t
        .interfaces()
        .map(|(_, i)| i.port.index() + 1)
        .chain(t.tunnels().map(|(_, o)| o.tunnel.index() + 1))
        .max();
    let mut out = vec![None; slots.unwrap_or(0)];
    for (e, i) in t.interfaces() {
        let net = &t.networks[i.network];
        out[i.port.index()] = Some(PortInfo {
            port: Topology::port_name(e, i),
            endpoint: e.name.clone(),
            interface: i.ifname.clone(),
            netns: e.netns.clone(),
            network: net.name.clone(),
            mac: i.mac.to_string(),
            ip: format!("{}/{}", i.ip, net.subnet.prefix_len()),
            kind: "tap",
        });
    }
    // Host interfaces attached to networks (`parent`): no endpoint, no address of
    // switchyard's on them.
    for net in &t.networks {
        let Some(p) = &net.parent else { continue };
        if out.len() <= p.port.index() {
            out.resize(p.port.index() + 1, None);
        }
        out[p.port.index()] = Some(PortInfo {
            port: p.port_name(),
            endpoint: String::new(),
            interface: p.ifname.clone(),
            netns: p.netns.clone().unwrap_or_default(),
            network: net.name.clone(),
            mac: String::new(),
            ip: String::new(),
            kind: "parent",
        });
    }
    // An overlay network's tunnel: no endpoint; its socket's address in the underlay.
    for (n, o) in t.tunnels() {
        if out.len() <= o.tunnel.index() {
            out.resize(o.tunnel.index() + 1, None);
        }
        out[o.tunnel.index()] = Some(PortInfo {
            port: Topology::tunnel_name(n),
            endpoint: String::new(),
            interface: format!("vni {}", o.vni),
            netns: o
                .underlay_netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            network: n.name.clone(),
            mac: String::new(),
            ip: format!("{}:{}", o.local, o.port),
            kind: "vxlan",
        });
    }
    out
}

/// What the server knows of each port from the topology.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub port: String,
    pub endpoint: String,
    pub interface: String,
    pub netns: String,
    pub network: String,
    pub mac: String,
    pub ip: String,
    /// "tap" or "parent".
    pub kind: &'static str,
}

/// What every worker keeps on its own, summed over the workers.
pub(crate) struct Merged {
    counters: Counters,
    ports: Vec<PortStatus>,
    /// Each port's name, by number (`None`: a vacant slot, left out of reports).
    names: Vec<Option<String>>,
    workers: Vec<WorkerRow>,
}

/// Asks every worker for its counters, I/O counters and CPU time, and adds them up.
pub(crate) fn gather(dp: &dataplane::Handle) -> Result<Merged, dataplane::NotRunning> {
    let per_worker = dp.query_all(|v| {
        let names = (0..v.pipeline.ports().len())
            .map(|i| v.pipeline.port(PortId(i as u16)).map(|s| s.name.clone()))
            .collect::<Vec<_>>();
        (
            v.pipeline.counters().clone(),
            v.ports.to_vec(),
            v.cpu_time(),
            names,
            v.worker,
            v.cpus.to_vec(),
        )
    })?;
    let counters = Pipeline::merged_counters(per_worker.iter().map(|w| &w.0));
    let mut ports: Vec<PortStatus> = per_worker.first().map(|w| w.1.clone()).unwrap_or_default();
    for w in per_worker.iter().skip(1) {
        for (a, b) in ports.iter_mut().zip(&w.1) {
            a.io.add(&b.io);
            // A port's queues refuse the same kinds of things, in the same order.
            for (x, y) in a.drops.iter_mut().zip(&b.drops) {
                x.count += y.count;
            }
            if a.down.is_none() {
                a.down.clone_from(&b.down);
            }
            // "uring" only if every worker's queue of the port uses it.
            if b.io_mode != a.io_mode {
                a.io_mode = IoMode::Syscalls;
            }
        }
    }
    let workers = per_worker
        .iter()
        .map(|w| WorkerRow {
            worker: w.4,
            cpu_secs: w.2.as_secs_f64(),
            rx_frames: w.0.total().rx_frames,
            cpus: w.5.clone(),
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

pub(crate) fn port_rows(m: &Merged, info: &[Option<PortInfo>]) -> Vec<PortRow> {
    // By number: a port the topology has but a worker has not taken up yet (a change
    // in progress) is left out, as is a vacant slot.
    info.iter()
        .enumerate()
        .filter_map(|(n, i)| Some((i.as_ref()?, m.ports.get(n)?, m.counters.ports.get(n)?)))
        .map(|(i, s, c)| PortRow {
            port: i.port.clone(),
            kind: i.kind.to_string(),
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
            steering: s.caps.steering.name().into(),
            io: s.io_mode.as_str().into(),
            rx_frames: c.rx_frames,
            tx_frames: s.io.tx_frames,
            dropped: c.dropped,
            state: if s.down.is_some() { "down" } else { "up" }.into(),
            down_reason: s.down.clone(),
        })
        .collect()
}

pub(crate) fn counters(m: &Merged) -> CountersReport {
    let c = &m.counters;
    let ports = c
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, pc)| Some((m.names.get(i)?.as_ref()?, i, pc)))
        .map(|(name, i, pc)| {
            let io = m.ports.get(i).map(|s| s.io).unwrap_or_default();
            PortCounterRow {
                port: name.clone(),
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
                punted: io.punted,
                punt_dropped: io.punt_dropped,
                punt_replies: io.punt_replies,
                punt_stale: io.punt_stale,
                rx_tagged: io.rx_tagged,
                rx_truncated: io.rx_truncated,
                rx_kernel_drops: io.rx_kernel_drops,
                rx_unclaimed: io.rx_unclaimed,
                drops: pc
                    .drop_reasons()
                    .map(|(r, n)| (r.id().to_string(), n))
                    .chain(
                        m.ports
                            .get(i)
                            .into_iter()
                            .flat_map(|s| &s.drops)
                            .filter(|d| d.count > 0)
                            .map(|d| (d.id.to_string(), d.count)),
                    )
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
            .chain(vxlan::DROPS.iter().map(|&(id, text)| {
                NamedCount {
                    id: id.into(),
                    stage: vxlan::STAGE.into(),
                    text: text.into(),
                    // Refused by the tunnel ports themselves, before any stage.
                    count: m
                        .ports
                        .iter()
                        .flat_map(|s| &s.drops)
                        .filter(|d| d.id == id)
                        .map(|d| d.count)
                        .sum(),
                }
            }))
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

/// How full one bounded table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableSize {
    /// `fdb`, `neighbors` or `conntrack`, as `show` names the tables.
    pub name: &'static str,
    pub entries: usize,
    pub capacity: usize,
}

/// The entries and capacity of the FDB, the neighbor table and conntrack: the counts
/// `show fdb`, `show neighbors` and `show conntrack` list. Each table's count is one
/// atomic or one short lock; nothing is copied.
pub(crate) fn table_sizes(dp: &dataplane::Handle) -> Result<[TableSize; 3], dataplane::NotRunning> {
    dp.tables(|v| {
        let p = &*v.pipeline;
        [
            TableSize {
                name: "fdb",
                entries: p.fdb().len(),
                capacity: p.fdb().capacity(),
            },
            TableSize {
                name: "neighbors",
                entries: p.neighbors().len(),
                capacity: p.neighbors().config().max,
            },
            TableSize {
                name: "conntrack",
                entries: p.conntrack().len(),
                capacity: p.conntrack().capacity(),
            },
        ]
    })
}
