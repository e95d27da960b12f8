//! The names each network's resolver knows, made from the topology that runs.
//!
//! A network that serves DNS gets one zone: for every endpoint with an interface on it,
//! the endpoint's name and its aliases lead to that interface's address — the address
//! *on this network*, so an endpoint on two networks is found on each by the address it
//! has there. An endpoint that shares another's namespace (`mode = "container:web"`) is a
//! second name for the same interfaces, as it is the same host. Names that are not valid
//! DNS names are left out (the resolver refuses them); networks that do not serve DNS get
//! no zone, and a query from one is never punted to begin with.

use crate::topology::Topology;
use switchyard_dns::{Zone, Zones};

/// Every zone of `t`, keyed by the network's bridge-domain number.
pub fn zones_of(t: &Topology) -> Zones {
    let mut zones = Zones::default();
    let mut made = vec![None; t.networks.len()];
    for (i, n) in t.networks.iter().enumerate() {
        let (true, Some(gw)) = (n.serves_dns(), n.gateway) else {
            continue;
        };
        made[i] = Some(Zone::new(
            &n.name,
            gw.ip,
            n.subnet.addr(),
            n.subnet.prefix_len(),
            n.dns_domain.as_deref(),
        ));
    }
    for e in &t.endpoints {
        // The endpoint whose interfaces these names lead to.
        let owner = e.shares.map_or(e, |s| &t.endpoints[s]);
        for iface in &owner.interfaces {
            let Some(zone) = made[iface.network].as_mut() else {
                continue;
            };
            zone.add(&e.name, iface.ip, e.shares.is_none());
            for alias in &e.aliases {
                zone.add(alias, iface.ip, false);
            }
        }
    }
    for (i, z) in made.into_iter().enumerate() {
        if let Some(z) = z {
            zones.insert(t.networks[i].domain.0, z);
        }
    }
    zones
}
