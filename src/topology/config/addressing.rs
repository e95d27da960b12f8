//! Addresses, as Docker's IPAM hands them out: subnets may not overlap; an interface
//! without `ip` gets the lowest free host address of its subnet; an interface without
//! `mac` gets `02:42` followed by its IPv4 address, and so does every gateway.
//!
//! Explicit addresses are taken first, for every endpoint, and only then are the
//! automatic ones chosen, so an address someone asked for is never given to an
//! endpoint declared before them. A derived MAC is unique as long as the addresses
//! are; an explicit one is checked against every other.

use super::endpoint::Pending;
use super::{Checker, Endpoint, Interface, Network};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use switchyard_core::pipeline::PortId;
use switchyard_core::wire::{Ipv4Cidr, MacAddr};

/// Address blocks no network, gateway, endpoint or route may use, and why. None of
/// them can be a unicast host on a link: the kernel would not route them (martians,
/// RFC 1812 §5.3.7), or they mean something else entirely.
const RESERVED: [([u8; 4], u8, &str); 4] = [
    (
        [0, 0, 0, 0],
        8,
        "\"this network\" (RFC 1122), not a host address",
    ),
    ([127, 0, 0, 0], 8, "loopback (RFC 1122), never on a link"),
    (
        [224, 0, 0, 0],
        4,
        "multicast (RFC 5771), not a host address",
    ),
    (
        [240, 0, 0, 0],
        4,
        "reserved (RFC 1112) and the limited broadcast",
    ),
];

/// Why `net` may not be a subnet or a route's prefix: the whole address space, or
/// overlapping a reserved block. None if it may.
pub(super) fn reserved_block(net: Ipv4Cidr) -> Option<String> {
    if net.prefix_len() == 0 {
        return Some(format!(
            "{net} is every address; a network is one subnet (and a default route goes via the external network)"
        ));
    }
    RESERVED.iter().find_map(|&(a, len, why)| {
        let block = Ipv4Cidr::new(Ipv4Addr::from(a), len).expect("valid block");
        net.overlaps(&block)
            .then(|| format!("{net} overlaps {block}: {why}"))
    })
}

/// Why `ip` may not be a gateway, endpoint or next-hop address. None if it may.
pub(super) fn reserved_addr(ip: Ipv4Addr) -> Option<String> {
    RESERVED.iter().find_map(|&(a, len, why)| {
        let block = Ipv4Cidr::new(Ipv4Addr::from(a), len).expect("valid block");
        block
            .contains(ip)
            .then(|| format!("{ip} is in {block}: {why}"))
    })
}

/// The MAC of an interface (or gateway) that was given none: `02:42` + its IPv4
/// address, as Docker derives it.
pub(super) fn derived_mac(ip: Ipv4Addr) -> MacAddr {
    MacAddr::from_ipv4(ip)
}

/// Reports `subnet` (at `field`) overlapping any network declared before it.
pub(super) fn check_overlaps(before: &[Network], subnet: Ipv4Cidr, field: &str, c: &mut Checker) {
    for prev in before {
        if prev.subnet.overlaps(&subnet) {
            c.bad(
                field,
                format!(
                    "{subnet} overlaps {} of network \"{}\"",
                    prev.subnet, prev.name
                ),
            );
        }
    }
}

/// Gives every pending interface its address and MAC and adds it to its endpoint.
/// An interface whose address or MAC is refused is left out (the file is refused).
pub(super) fn assign(
    networks: &[Network],
    pending: &[Pending],
    endpoints: &mut [Endpoint],
    c: &mut Checker,
) {
    let assigned = assign_ips(networks, pending, c);
    assign_macs(networks, pending, &assigned, endpoints, c);
}

/// IPv4 addresses: explicit ones checked first, then the automatic ones.
fn assign_ips(networks: &[Network], pending: &[Pending], c: &mut Checker) -> Vec<Option<Ipv4Addr>> {
    let mut taken: HashMap<Ipv4Addr, String> = HashMap::new();
    for n in networks {
        if let Some(g) = n.gateway {
            taken.insert(g.ip, format!("the gateway of network \"{}\"", n.name));
        }
    }
    let mut assigned: Vec<Option<Ipv4Addr>> = vec![None; pending.len()];
    for (p, slot) in pending.iter().zip(assigned.iter_mut()) {
        let Some(ip) = p.ip else { continue };
        let net = &networks[p.network];
        if let Some(why) = reserved_addr(ip) {
            c.bad(format!("{}.ip", p.field), why);
        } else if !net.subnet.contains(ip) {
            c.bad(
                format!("{}.ip", p.field),
                format!(
                    "{ip} is outside network \"{}\" subnet {}",
                    net.name, net.subnet
                ),
            );
        } else if ip == net.subnet.network() || ip == net.subnet.broadcast() {
            c.bad(
                format!("{}.ip", p.field),
                format!("{ip} is the network or broadcast address of {}", net.subnet),
            );
        } else if let Some(owner) = taken.get(&ip) {
            c.bad(
                format!("{}.ip", p.field),
                format!("{ip} is already used by {owner}"),
            );
        } else {
            taken.insert(ip, p.field.clone());
            *slot = Some(ip);
        }
    }
    for (p, slot) in pending.iter().zip(assigned.iter_mut()) {
        if p.ip.is_some() {
            continue;
        }
        let net = &networks[p.network];
        let first = u32::from(net.subnet.network()) + 1;
        let last = u32::from(net.subnet.broadcast());
        let free = (first..last)
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains_key(a));
        match free {
            Some(ip) => {
                taken.insert(ip, p.field.clone());
                *slot = Some(ip);
            }
            None => c.bad(
                format!("{}.ip", p.field),
                format!(
                    "network \"{}\" ({}) has no free address left",
                    net.name, net.subnet
                ),
            ),
        }
    }
    assigned
}

/// MACs: explicit ones must be unicast and unique, derived ones follow the IP.
fn assign_macs(
    networks: &[Network],
    pending: &[Pending],
    assigned: &[Option<Ipv4Addr>],
    endpoints: &mut [Endpoint],
    c: &mut Checker,
) {
    let mut macs: HashMap<MacAddr, String> = HashMap::new();
    for n in networks {
        if let Some(g) = n.gateway {
            macs.insert(g.mac, format!("the gateway of network \"{}\"", n.name));
        }
    }
    // A trunk's VLAN sub-interfaces take eth0's MAC, as the kernel gives them.
    let mut trunk_macs: HashMap<usize, MacAddr> = HashMap::new();
    for (p, ip) in pending.iter().zip(assigned) {
        let Some(ip) = *ip else { continue };
        if p.trunk.is_some_and(|t| !t.carrier) {
            if let Some(&mac) = trunk_macs.get(&p.endpoint) {
                endpoints[p.endpoint].interfaces.push(Interface {
                    ifname: p.ifname.clone(),
                    network: p.network,
                    ip,
                    mac,
                    port: PortId(0),
                    trunk: p.trunk,
                });
            }
            continue;
        }
        let mac = p.mac.unwrap_or_else(|| derived_mac(ip));
        if let Some(m) = p.mac {
            if m.is_multicast() || m.is_zero() {
                c.bad(
                    format!("{}.mac", p.field),
                    format!("{m} is a multicast or zero address; an interface needs a unicast MAC"),
                );
                continue;
            }
        }
        if let Some(owner) = macs.get(&mac) {
            c.bad(
                format!("{}.mac", p.field),
                format!("{mac} is already used by {owner}"),
            );
            continue;
        }
        macs.insert(mac, p.field.clone());
        if p.trunk.is_some() {
            trunk_macs.insert(p.endpoint, mac);
        }
        endpoints[p.endpoint].interfaces.push(Interface {
            ifname: p.ifname.clone(),
            network: p.network,
            ip,
            mac,
            // Numbered once every interface is known (see `validate`).
            port: PortId(0),
            trunk: p.trunk,
        });
    }
}
