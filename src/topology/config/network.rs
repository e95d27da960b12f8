//! `[[network]]`: the bridge domains — each a subnet, optionally with a gateway
//! address switchyard owns, an MTU, a mode (bridged or L3-only) and its role in NAT
//! (`masquerade` on the inside, `external` for the one way out), and whether its
//! endpoints may talk to each other (`icc`), and whether a DNS server answers at
//! its gateway (`dns`, `dns_domain`: checked by [`super::dns`]), and the 802.1Q tag
//! its frames carry on trunk ports (`vlan`: one network per VLAN id, as a VLAN is one
//! broadcast domain).
//!
//! Later passes refer to networks by name (endpoints attach to them, `[[allow]]` joins
//! them, routes lead through them), so this pass also builds the name index they use.

use super::{addressing, valid_name, Checker, Gateway, Network, Parent, ParentMode, MAX_NAME};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use switchyard_core::pipeline::{DomainGuard, DomainId, DomainMode, PortId, MAX_DOMAINS};
use switchyard_core::wire::Ipv4Cidr;

/// `[[network]]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub name: String,
    pub subnet: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub masquerade: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    /// "bridge" (default) or "l3".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxy_arp: bool,
    /// Checksum and segmentation offloads on this network's TAPs (default: `[switch]`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offloads: Option<bool>,
    /// This network's share of the conntrack table: at most this many flows started
    /// in it (default: only `[switch]`'s `conntrack_max` bounds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conntrack_max: Option<usize>,
    /// Strict reverse-path filtering of routed sources (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_filter: Option<bool>,
    /// Endpoints may only send with their own MAC and address.
    #[serde(default, skip_serializing_if = "is_false")]
    pub port_security: bool,
    /// The network's share of the FDB (default: `[switch] fdb_max` split evenly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdb_max: Option<usize>,
    /// The network's share of the neighbor table (default: an even split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neighbor_max: Option<usize>,
    /// Packets at most waiting for next hops on the network (default: an even split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_max: Option<usize>,
    /// Inter-endpoint traffic (Docker's `enable_icc`, default true): when false,
    /// endpoints reach only the gateway and, through it, what lies beyond.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icc: Option<bool>,
    /// No way in or out (Docker's `--internal`): the network is never joined to
    /// another (`[[allow]]`), masqueraded, routed through or published.
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    /// A DNS server at the gateway (default: on when there is a gateway, except on
    /// the network named `default` and the external one; see [`super::dns`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<bool>,
    /// The search domain endpoints on the network are given (`app.internal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    /// An existing host interface attached to the network as a port, so endpoints
    /// sit on its LAN with MACs of their own (macvlan's bridge mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The namespace the parent is in: a name (`/run/netns/NAME`) or an absolute
    /// path (default: switchyard's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_netns: Option<String>,
    /// The network spans hosts over VXLAN (see [`super::overlay`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<super::VxlanSection>,
    /// The 802.1Q VLAN id the network's frames carry on trunk ports (1 to 4094).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The checked networks, in the order declared (a network's index is its domain id).
pub(super) struct Networks<'a> {
    pub list: Vec<Network>,
    by_name: HashMap<&'a str, usize>,
}

impl Networks<'_> {
    /// The index of the network named `name` (the first, if the name is repeated).
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Whether there is an external network: the uplink masquerade and published
    /// ports use.
    pub fn has_external(&self) -> bool {
        self.list.iter().any(|n| n.external)
    }
}

/// Checks every `[[network]]` and resolves it; `default_offloads` is `[switch]`'s
/// setting, which a network may override.
pub(super) fn check<'a>(
    raw: &'a [NetworkSection],
    default_offloads: bool,
    c: &mut Checker,
) -> Networks<'a> {
    let mut networks: Vec<Network> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    if raw.len() > MAX_DOMAINS {
        c.bad(
            "network",
            format!("{} networks; at most {MAX_DOMAINS}", raw.len()),
        );
    }
    for (i, n) in raw.iter().enumerate() {
        let f = format!("network \"{}\"", n.name);
        let fld = |k: &str| format!("{f}.{k}");
        if !valid_name(&n.name) {
            c.bad(
                format!("network[{i}].name"),
                format!(
                    "{:?} must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                    n.name
                ),
            );
        }
        if by_name.contains_key(n.name.as_str()) {
            c.bad(fld("name"), "a network with this name is already defined");
        } else {
            by_name.insert(&n.name, i);
        }
        let subnet = match n.subnet.parse::<Ipv4Cidr>() {
            Ok(s) if s.prefix_len() > 30 => {
                c.bad(
                    fld("subnet"),
                    format!("{s} leaves no room for a gateway and hosts; use /30 or shorter"),
                );
                None
            }
            Ok(s) if s.trunc() != s => {
                c.bad(
                    fld("subnet"),
                    format!("{s} has host bits set; did you mean {}?", s.trunc()),
                );
                None
            }
            Ok(s) => match addressing::reserved_block(s) {
                Some(why) => {
                    c.bad(fld("subnet"), why);
                    None
                }
                None => Some(s),
            },
            Err(e) => {
                c.bad(fld("subnet"), e);
                None
            }
        };
        if let Some(s) = subnet {
            addressing::check_overlaps(&networks, s, &fld("subnet"), c);
        }
        let mtu = match n.mtu {
            None => 1500,
            Some(m) if (68..=65535).contains(&m) => m as u16,
            Some(m) => {
                c.bad(
                    fld("mtu"),
                    format!("{m} is outside 68..=65535 (68 is the IPv4 minimum)"),
                );
                1500
            }
        };
        let gateway = n.gateway.map(|g| Gateway {
            ip: g,
            mac: addressing::derived_mac(g),
        });
        if let Some(why) = n.gateway.and_then(addressing::reserved_addr) {
            c.bad(fld("gateway"), why);
        } else if let (Some(g), Some(s)) = (n.gateway, subnet) {
            if !s.contains(g) {
                c.bad(fld("gateway"), format!("{g} is outside the subnet {s}"));
            } else if g == s.network() || g == s.broadcast() {
                c.bad(
                    fld("gateway"),
                    format!("{g} is the network or broadcast address of {s}"),
                );
            }
        }
        if n.external && gateway.is_none() {
            c.bad(fld("external"), "the external network needs a gateway: switchyard's uplink address, where published ports listen");
        }
        if n.masquerade && gateway.is_none() {
            c.bad(
                fld("masquerade"),
                "a masquerading network needs a gateway: its traffic is routed by switchyard",
            );
        }
        if n.internal && (n.masquerade || n.external) {
            c.bad(
                fld("internal"),
                "an internal network has no way out: it cannot be masqueraded or external",
            );
        }
        if n.masquerade && n.external {
            c.bad(fld("masquerade"), "the external network itself is not masqueraded; set masquerade on the inside networks");
        }
        if n.external && n.mode.as_deref() == Some("l3") {
            c.bad(fld("mode"), "the external network is a bridge network");
        }
        let mode = match n.mode.as_deref() {
            // ipvlan-l2 bridges like "bridge" inside; its parent port translates MACs.
            None | Some("bridge") | Some("ipvlan-l2") => DomainMode::Bridge,
            Some("l3") => DomainMode::L3,
            Some(other) => {
                c.bad(
                    fld("mode"),
                    format!(
                        "{other:?} is not a network mode; use \"bridge\", \"l3\" or \"ipvlan-l2\""
                    ),
                );
                DomainMode::Bridge
            }
        };
        let ipvlan = n.mode.as_deref() == Some("ipvlan-l2");
        if ipvlan && n.parent.is_none() {
            c.bad(
                fld("mode"),
                "ipvlan-l2 shows the LAN the parent's MAC: the network needs a `parent`",
            );
        }
        if gateway.is_none() && mode == DomainMode::L3 {
            c.bad(
                fld("mode"),
                "an L3 network needs a gateway: switchyard routes all of its traffic",
            );
        }
        if gateway.is_none() && n.proxy_arp {
            c.bad(
                fld("proxy_arp"),
                "proxy ARP needs a gateway: switchyard answers with the gateway MAC",
            );
        }
        if n.icc == Some(false) && gateway.is_none() {
            c.bad(
                fld("icc"),
                "icc = false leaves endpoints only the gateway to talk to; the network needs one",
            );
        }
        if let Some(m) = n.conntrack_max {
            if m == 0 || m > super::switch::MAX_CONNTRACK {
                c.bad(
                    fld("conntrack_max"),
                    format!("{m} must be from 1 to {}", super::switch::MAX_CONNTRACK),
                );
            }
        }
        let parent = check_parent(n, mode, &fld, c).map(|mut p| {
            if ipvlan {
                p.mode = ParentMode::IpvlanL2;
            }
            p
        });
        let vlan = match n.vlan {
            None => None,
            Some(v) if (1..=4094).contains(&v) => {
                if let Some(other) = networks.iter().find(|o| o.vlan == Some(v as u16)) {
                    c.bad(
                        fld("vlan"),
                        format!("VLAN {v} is already network \"{}\"'s", other.name),
                    );
                }
                Some(v as u16)
            }
            Some(v) => {
                c.bad(
                    fld("vlan"),
                    format!("{v} is not a VLAN id: 1 to 4094 (0 and 4095 are reserved)"),
                );
                None
            }
        };
        let (dns, dns_domain) = super::dns::check_network(
            &f,
            &n.name,
            n.dns,
            n.dns_domain.as_deref(),
            gateway.is_some(),
            n.external,
            c,
        );
        let vxlan = n
            .vxlan
            .as_ref()
            .map(|v| super::overlay::check(v, &fld("vxlan"), c));
        if vxlan.is_some() && mode == DomainMode::L3 {
            c.bad(
                fld("vxlan"),
                "an L3 network does not bridge, and an overlay bridges hosts; use mode = \"bridge\"",
            );
        }
        if vxlan.is_some() && n.external {
            c.bad(
                fld("vxlan"),
                "the external network is switchyard's uplink; it cannot be an overlay",
            );
        }
        networks.push(Network {
            name: n.name.clone(),
            // A subnet that did not check out stands in as 0.0.0.0/32; the file is
            // refused anyway, this only lets the later passes go on finding problems.
            subnet: subnet
                .unwrap_or_else(|| Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 32).expect("/32")),
            gateway,
            mtu,
            mtu_from_underlay: vxlan.is_some() && n.mtu.is_none(),
            vxlan,
            mode,
            proxy_arp: n.proxy_arp,
            masquerade: n.masquerade,
            external: n.external,
            internal: n.internal,
            dns,
            dns_domain,
            parent,
            offloads: n.offloads.unwrap_or(default_offloads),
            vlan,
            // Numbered in order here; a running instance keeps the numbers of the
            // networks it already has when a change is validated (`keep_slots`).
            domain: DomainId(i as u16),
            guard: DomainGuard {
                rp_filter: n.rp_filter.unwrap_or(true),
                port_security: n.port_security,
                fdb_max: n.fdb_max,
                neighbor_max: n.neighbor_max,
                held_max: n.held_max,
                conntrack_max: n.conntrack_max,
                icc: n.icc.unwrap_or(true),
            },
        });
    }
    let externals: Vec<&str> = networks
        .iter()
        .filter(|n| n.external)
        .map(|n| n.name.as_str())
        .collect();
    if externals.len() > 1 {
        c.bad(
            "network",
            format!(
                "only one network can be external, not {}",
                externals.join(", ")
            ),
        );
    }
    // One interface is one port: two networks cannot share a parent.
    for (i, n) in networks.iter().enumerate() {
        let Some(p) = &n.parent else { continue };
        let first = networks[..i].iter().find(|o| {
            o.parent
                .as_ref()
                .is_some_and(|q| q.ifname == p.ifname && q.netns == p.netns)
        });
        if let Some(o) = first {
            c.bad(
                format!("network \"{}\".parent", n.name),
                format!(
                    "{:?}{} is already the parent of network {:?}; an interface can be \
                     attached to one network only",
                    p.ifname,
                    p.netns
                        .as_ref()
                        .map_or(String::new(), |ns| format!(" in {ns}")),
                    o.name
                ),
            );
        }
    }
    let has_external = !externals.is_empty();
    for n in networks.iter().filter(|n| n.masquerade) {
        if !has_external {
            c.bad(
                format!("network \"{}\".masquerade", n.name),
                "there is no external network (external = true) to masquerade to",
            );
        }
    }
    Networks {
        list: networks,
        by_name,
    }
}

/// `parent` and `parent_netns` of one network: a plausible interface name (whether
/// it exists, and is no loopback, is found out when switchyard starts, before it
/// makes anything), a namespace given by name or absolute path, and a bridged
/// network (a parent's LAN is bridged to the endpoints).
fn check_parent(
    n: &NetworkSection,
    mode: DomainMode,
    fld: &dyn Fn(&str) -> String,
    c: &mut Checker,
) -> Option<Parent> {
    let Some(ifname) = &n.parent else {
        if n.parent_netns.is_some() {
            c.bad(
                fld("parent_netns"),
                "names the namespace of a parent interface, but `parent` is not set",
            );
        }
        return None;
    };
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname.contains('/')
        || ifname.contains(':')
        || ifname
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
        || ifname == "."
        || ifname == ".."
    {
        c.bad(
            fld("parent"),
            format!(
                "{ifname:?} is not an interface name (1 to 15 bytes, no '/', ':' or whitespace)"
            ),
        );
    } else if ifname == "lo" {
        c.bad(
            fld("parent"),
            "\"lo\" is the loopback interface: it has no LAN to attach",
        );
    }
    if let Some(ns) = &n.parent_netns {
        let bad = if ns.starts_with('/') {
            super::check_netns_path(ns).err()
        } else if ns.is_empty()
            || ns.len() > 255
            || ns.contains('\0')
            || ns.contains('/')
            || ns == "."
            || ns == ".."
        {
            Some(format!(
                "{ns:?} is neither a namespace name (as `ip netns` lists) nor an absolute path"
            ))
        } else {
            None
        };
        if let Some(why) = bad {
            c.bad(fld("parent_netns"), why);
        }
    }
    if mode != DomainMode::Bridge {
        c.bad(
            fld("parent"),
            "a parent is bridged to the network's endpoints: the network must be a bridge network",
        );
    }
    Some(Parent {
        ifname: ifname.clone(),
        netns: n.parent_netns.clone(),
        // Numbered after every endpoint's interface by `validate`.
        port: PortId(0),
        mode: ParentMode::Macvlan,
    })
}

/// The per-network table shares against the global sizes of `[switch]`: each at least
/// 1 and at most the table it is a share of.
pub(super) fn check_shares(
    raw: &[NetworkSection],
    fdb_max: usize,
    neighbor_max: usize,
    held_max: usize,
    c: &mut Checker,
) {
    for n in raw {
        for (key, value, global, what) in [
            ("fdb_max", n.fdb_max, fdb_max, "switch.fdb_max"),
            (
                "neighbor_max",
                n.neighbor_max,
                neighbor_max,
                "switch.neighbor_max",
            ),
            ("held_max", n.held_max, held_max, "the held packet buffers"),
        ] {
            match value {
                Some(0) => c.bad(
                    format!("network \"{}\".{key}", n.name),
                    "must be at least 1",
                ),
                Some(v) if v > global => c.bad(
                    format!("network \"{}\".{key}", n.name),
                    format!("{v} is more than {what} ({global}), the table it is a share of"),
                ),
                _ => {}
            }
        }
    }
}
