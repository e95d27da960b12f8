//! Host interfaces attached to networks (`parent = "eth1"`, optionally with
//! `parent_netns`): opened as ports when switchyard starts, before it makes anything,
//! so that a missing interface, a loopback or a namespace that is not there stops
//! `up` with nothing to undo.
//!
//! A parent is someone else's device. switchyard records nothing about it in its
//! state file because it creates nothing: the packet sockets it opens
//! (`switchyard_os::port::packet`) are the whole attachment, and closing them — at
//! exit, or by the kernel when the process dies — detaches it, promiscuous mode
//! included. See `docs/host-interfaces.md`.

use super::config::{Network, Parent, ParentMode, Steering, Topology};
use std::path::Path;
use switchyard_core::pipeline::ipvlan::IpvlanL2;
use switchyard_core::pipeline::PortId;
use switchyard_core::wire::MacAddr;
use switchyard_os::netns;
use switchyard_os::port::packet::PacketPort;

/// Why a parent could not be attached.
#[derive(Debug, thiserror::Error)]
#[error("network {network}: parent {ifname}{}: {source}", in_netns(.netns))]
pub struct ParentError {
    pub network: String,
    pub ifname: String,
    pub netns: Option<String>,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn in_netns(ns: &Option<String>) -> String {
    ns.as_ref()
        .map_or_else(String::new, |ns| format!(" in namespace {ns}"))
}

/// Opens every parent of `topo` with one queue per worker, in port order.
pub fn open_all(topo: &Topology) -> Result<Vec<(PortId, PacketPort)>, ParentError> {
    let mut out: Vec<(PortId, PacketPort)> = topo
        .parents()
        .map(|(n, p)| {
            open(p, topo.workers.max(1), topo.steering)
                .map(|mut port| {
                    if p.mode == ParentMode::IpvlanL2 {
                        port.translate(ipvlan_l2(topo, n, MacAddr(port.mac())));
                    }
                    port
                })
                .inspect(|port| {
                    // The network's MTU is given to its TAPs; a parent with a smaller
                    // one drops what the endpoints may send. Said, not changed: the
                    // parent is not switchyard's to reconfigure.
                    let mtu = port.capabilities().mtu;
                    if mtu < n.mtu {
                        tracing::warn!(
                            "network {}: parent {} has MTU {mtu}, below the network's {}; \
                             larger packets from endpoints will not cross it",
                            n.name,
                            p.ifname,
                            n.mtu
                        );
                    }
                })
                .map(|port| (p.port, port))
                .map_err(|source| ParentError {
                    network: n.name.clone(),
                    ifname: p.ifname.clone(),
                    netns: p.netns.clone(),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// The ipvlan-l2 translation of network `n`: its endpoints' addresses and the
/// gateway's, each with the MAC it has inside, behind the parent's MAC `parent`.
pub fn ipvlan_l2(topo: &Topology, n: &Network, parent: MacAddr) -> IpvlanL2 {
    let hosts = topo
        .interfaces()
        .filter(|(_, i)| topo.networks[i.network].name == n.name)
        .map(|(_, i)| (i.ip, i.mac))
        .chain(n.gateway.map(|g| (g.ip, g.mac)));
    IpvlanL2::new(parent, hosts, n.gateway.map(|g| g.mac))
}

/// Opens one parent: in its namespace when it names one (on a thread that entered
/// it), else in switchyard's own.
fn open(
    p: &Parent,
    queues: usize,
    steering: Steering,
) -> Result<PacketPort, Box<dyn std::error::Error + Send + Sync>> {
    let ifname = p.ifname.as_str();
    let Some(ns) = &p.netns else {
        return Ok(PacketPort::open_steered(ifname, queues, steering)?);
    };
    let fd = if ns.starts_with('/') {
        netns::open_path(Path::new(ns))?
    } else {
        netns::open(ns)?
    };
    Ok(netns::run_in(&fd, || {
        PacketPort::open_steered(ifname, queues, steering)
    })??)
}
