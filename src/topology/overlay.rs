//! Opening the tunnels of overlay networks (`vxlan = {...}`) when switchyard starts.
//!
//! A tunnel's sockets belong to its underlay namespace, so they are opened on a
//! thread that entered it ([`switchyard_os::netns::run_in`]), as a TAP is made inside
//! its endpoint's namespace. The same thread reads, over rtnetlink, the MTU of the
//! interface that holds the `local` address: an overlay network's MTU is that minus
//! the 50 bytes VXLAN costs, unless the file gives one — which may not be more,
//! since outer packets are never fragmented.
//!
//! This runs before any namespace or TAP is made (the endpoints' TAPs take the
//! network's MTU), so a missing underlay, a `local` address that is not there or a
//! port in use stops `up` with nothing to undo.

use super::config::{Network, Overlay, Topology};
use std::fs::File;
use switchyard_core::wire::vxlan;
use switchyard_os::netns;
use switchyard_os::port::vxlan::{underlay_mtu, VxlanConfig, VxlanError, VxlanPort};

/// Why an overlay network's tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("network \"{network}\": underlay namespace {path}: {source}")]
    Underlay {
        network: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network \"{network}\": entering the underlay namespace: {source}")]
    Enter {
        network: String,
        #[source]
        source: netns::NetnsError,
    },
    #[error("network \"{network}\": vxlan.local {local} is not an address in {underlay}")]
    NoLocal {
        network: String,
        local: std::net::Ipv4Addr,
        underlay: String,
    },
    #[error("network \"{network}\": reading the underlay's MTU: {source}")]
    Netlink {
        network: String,
        #[source]
        source: switchyard_os::netlink::NetlinkError,
    },
    #[error("network \"{network}\": mtu {mtu} does not fit the underlay: its interface's MTU {underlay} less {overhead} bytes of VXLAN leaves {max}")]
    MtuTooBig {
        network: String,
        mtu: u16,
        underlay: u32,
        overhead: u16,
        max: u32,
    },
    #[error("network \"{network}\": {source}")]
    Socket {
        network: String,
        #[source]
        source: VxlanError,
    },
}

/// Opens every overlay network's tunnel with `queues` queues, in tunnel port order,
/// and settles each overlay network's MTU in `topo` (from the underlay, unless given).
pub fn open_tunnels(topo: &mut Topology, queues: usize) -> Result<Vec<VxlanPort>, OverlayError> {
    let mut ports = Vec::new();
    for n in topo.networks.iter_mut() {
        let Some(o) = n.vxlan.clone() else { continue };
        let (mtu, port) = open(n, &o, queues)?;
        n.mtu = mtu;
        n.mtu_from_underlay = false;
        ports.push((o.tunnel, port));
    }
    ports.sort_by_key(|(p, _)| *p);
    Ok(ports.into_iter().map(|(_, p)| p).collect())
}

fn open(n: &Network, o: &Overlay, queues: usize) -> Result<(u16, VxlanPort), OverlayError> {
    let network = n.name.clone();
    let underlay = o.underlay_netns.as_ref().map_or_else(
        || "switchyard's own namespace".to_string(),
        |p| format!("namespace {}", p.display()),
    );
    let work = || -> Result<(u16, VxlanPort), OverlayError> {
        let got = underlay_mtu(o.local).map_err(|source| OverlayError::Netlink {
            network: network.clone(),
            source,
        })?;
        let Some(under) = got else {
            return Err(OverlayError::NoLocal {
                network: network.clone(),
                local: o.local,
                underlay: underlay.clone(),
            });
        };
        let max = under.saturating_sub(u32::from(vxlan::OVERHEAD));
        let mtu = if !n.mtu_from_underlay {
            if u32::from(n.mtu) > max {
                return Err(OverlayError::MtuTooBig {
                    network: network.clone(),
                    mtu: n.mtu,
                    underlay: under,
                    overhead: vxlan::OVERHEAD,
                    max,
                });
            }
            n.mtu
        } else {
            max.clamp(68, 65535) as u16
        };
        let config = VxlanConfig {
            vni: o.vni,
            local: o.local,
            remotes: o.remotes.clone(),
            port: o.port,
            udp_csum: o.udp_csum,
            mtu,
        };
        let port = VxlanPort::open(config, queues).map_err(|source| OverlayError::Socket {
            network: network.clone(),
            source,
        })?;
        Ok((mtu, port))
    };
    match &o.underlay_netns {
        None => work(),
        Some(path) => {
            let ns = File::open(path).map_err(|source| OverlayError::Underlay {
                network: network.clone(),
                path: path.display().to_string(),
                source,
            })?;
            netns::run_in(&ns, work).map_err(|source| OverlayError::Enter {
                network: network.clone(),
                source,
            })?
        }
    }
}
