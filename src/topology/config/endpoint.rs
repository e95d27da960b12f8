//! `[[endpoint]]`: the network namespaces and their interfaces.
//!
//! An endpoint has one interface (`network = ...`, the shorthand), several
//! (`attach = [...]`, becoming eth0, eth1, ... in order), or none of its own: `mode =
//! "none"` leaves it only `lo`, `mode = "container:<other>"` makes it a second name for
//! another endpoint's namespace, as `docker run --network` does.
//!
//! This pass resolves the shape of each endpoint and which networks its interfaces
//! are on; the addresses are assigned afterwards, for all endpoints at once
//! ([`super::addressing`]), so that an address someone asked for is never handed out
//! automatically first.

use super::network::Networks;
use super::{publish, valid_name, Checker, Endpoint, Publish, TrunkRole, MAX_NAME};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use switchyard_core::wire::MacAddr;

/// `[[endpoint]]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach: Vec<AttachSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The interface's name inside the namespace, with `network` (default `eth0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// Attach a namespace switchyard did not create, by path (`/run/netns/x`,
    /// `/proc/PID/ns/net`): switchyard adds only its interfaces there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// More DNS names for the endpoint, on every DNS network it is attached to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Networks whose frames eth0 carries tagged (each network's `vlan`), each on
    /// a VLAN sub-interface `eth0.N` made in the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<TrunkEntry>,
    /// With `trunk`: the network of eth0's untagged frames, its address on eth0
    /// itself (`ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<String>,
    /// With `netns` and `ifname`: the TAP is made in switchyard's own namespace,
    /// named `ifname`, for a container runtime to move into `netns` and configure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handover: bool,
}

/// One entry of `trunk = [...]`: a network by name (its address the lowest free),
/// or a network with the address of the endpoint's sub-interface on it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TrunkEntry {
    Network(String),
    With(TrunkSection),
}

/// `{ network = "...", ip = "..." }` in `trunk = [...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSection {
    pub network: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
}

impl TrunkEntry {
    /// The network's name and the address asked for, if any.
    pub fn parts(&self) -> (&str, Option<Ipv4Addr>) {
        match self {
            TrunkEntry::Network(n) => (n, None),
            TrunkEntry::With(t) => (&t.network, t.ip),
        }
    }
}

/// One entry of `attach = [...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttachSection {
    pub network: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The interface's name (default `ethN`, N its place in the list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// An interface before addresses are assigned.
pub(super) struct Pending {
    /// Index of its endpoint.
    pub endpoint: usize,
    pub ifname: String,
    /// Index of its network.
    pub network: usize,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    /// Where it was declared, for messages (`endpoint "web"`, `endpoint "m".attach[1]`).
    pub field: String,
    /// Its place on the endpoint's trunk, if it has one.
    pub trunk: Option<TrunkRole>,
}

/// The endpoints, still without interfaces, and what the later passes complete
/// them with.
pub(super) struct Endpoints {
    pub list: Vec<Endpoint>,
    /// Their interfaces, waiting for addresses.
    pub pending: Vec<Pending>,
    /// Their published ports: (endpoint index, index in its `publish`, rule).
    pub publish: Vec<(usize, usize, Publish)>,
}

/// Checks every `[[endpoint]]`: names, shapes, the networks its interfaces are on,
/// the syntax of its published ports, and whose namespace a `container:` endpoint
/// shares. Namespaces are named `prefix` + endpoint name.
pub(super) fn check(
    raw: &[EndpointSection],
    networks: &Networks,
    prefix: &str,
    c: &mut Checker,
) -> Endpoints {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut ep_names: HashMap<&str, usize> = HashMap::new();
    let mut shares: Vec<Option<String>> = Vec::new();
    let mut publish_raw: Vec<(usize, usize, Publish)> = Vec::new();
    // Handed-over TAPs are all made in switchyard's own namespace: one name each.
    let mut handover_names: HashMap<&str, &str> = HashMap::new();
    for (i, e) in raw.iter().enumerate() {
        let f = format!("endpoint \"{}\"", e.name);
        let fld = |k: &str| format!("{f}.{k}");
        if !valid_name(&e.name) {
            c.bad(
                format!("endpoint[{i}].name"),
                format!(
                    "{:?} must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                    e.name
                ),
            );
        }
        if ep_names.contains_key(e.name.as_str()) {
            c.bad(fld("name"), "an endpoint with this name is already defined");
        } else {
            ep_names.insert(&e.name, i);
        }
        publish_raw.extend(publish::parse_rules(i, &e.publish, &f, c));
        let mut ifaces = Vec::new();
        // Per interface: whether it is on a trunk, and tagged there.
        let mut on_trunk: Vec<Option<bool>> = Vec::new();
        let mut shares_name = None;
        let trunked = !e.trunk.is_empty() || e.native.is_some();
        if trunked {
            trunk_shape(e, &f, c);
            if let Some(native) = &e.native {
                ifaces.push((native.clone(), e.ip, e.mac, None, fld("native")));
                on_trunk.push(Some(false));
            }
            for (k, t) in e.trunk.iter().enumerate() {
                let (net, ip) = t.parts();
                // The one MAC of eth0, which its sub-interfaces share, is the first's.
                let mac = if ifaces.is_empty() { e.mac } else { None };
                ifaces.push((net.to_string(), ip, mac, None, format!("{f}.trunk[{k}]")));
                on_trunk.push(Some(true));
            }
        }
        match (&e.mode, &e.network, e.attach.is_empty()) {
            _ if trunked => {}
            (Some(mode), _, _) => {
                if mode == "none" {
                    // Only lo: nothing to check.
                } else if let Some(other) =
                    mode.strip_prefix("container:").filter(|m| !m.is_empty())
                {
                    shares_name = Some(other.to_string());
                } else {
                    c.bad(fld("mode"), format!("{mode:?} is not a network mode; use \"none\" or \"container:<endpoint>\""));
                }
                // `none` keeps its aliases (they answer again once it is connected);
                // a second name for another namespace has no interfaces of its own.
                if shares_name.is_some() && !e.aliases.is_empty() {
                    c.bad(
                        fld("aliases"),
                        "an endpoint sharing another's namespace has no interface of its own \
                         to name; give the aliases to that endpoint",
                    );
                }
                if e.network.is_some()
                    || !e.attach.is_empty()
                    || e.ip.is_some()
                    || e.mac.is_some()
                    || !e.publish.is_empty()
                    || e.ifname.is_some()
                    || e.netns.is_some()
                {
                    c.bad(
                        fld("mode"),
                        "an endpoint with a mode takes no network, attach, ip, mac, ifname, netns or publish",
                    );
                }
            }
            (None, Some(net), true) => {
                ifaces.push((net.clone(), e.ip, e.mac, e.ifname.clone(), f.clone()))
            }
            (None, Some(_), false) => c.bad(
                fld("attach"),
                "give either network (one interface) or attach (several), not both",
            ),
            (None, None, false) => {
                if e.ip.is_some() || e.mac.is_some() {
                    c.bad(
                        f.clone(),
                        "with attach, put ip and mac inside each attach entry",
                    );
                }
                if e.ifname.is_some() {
                    c.bad(
                        fld("ifname"),
                        "with attach, put ifname inside each attach entry",
                    );
                }
                for (k, a) in e.attach.iter().enumerate() {
                    let field = format!("{f}.attach[{k}]");
                    ifaces.push((a.network.clone(), a.ip, a.mac, a.ifname.clone(), field));
                }
            }
            (None, None, true) => c.bad(f.clone(), "needs a network (or attach, or mode)"),
        }
        shares.push(shares_name);
        if e.handover {
            handover_shape(e, &f, c);
            if let Some(name) = &e.ifname {
                if let Some(other) = handover_names.insert(name, &e.name) {
                    c.bad(
                        fld("ifname"),
                        format!(
                            "endpoint {other:?} hands over an interface named {name:?} too; \
                             both would be made in switchyard's own namespace"
                        ),
                    );
                }
            }
        }
        if let Some(path) = &e.netns {
            if let Err(why) = check_netns_path(path) {
                c.bad(fld("netns"), why);
            }
        }
        let mut seen_nets = BTreeSet::new();
        let mut seen_ifnames = BTreeSet::new();
        for (k, (net, ip, mac, ifname, field)) in ifaces.into_iter().enumerate() {
            let tagged = on_trunk.get(k).copied().flatten();
            let mut trunk = None;
            if let Some(tagged) = tagged {
                let vlan = match networks.index(&net).map(|ni| &networks.list[ni]) {
                    Some(n) if tagged && n.vlan.is_none() => {
                        c.bad(
                            format!("{field}.network"),
                            format!(
                                "network {net:?} has no vlan to tag its frames with on a trunk"
                            ),
                        );
                        continue;
                    }
                    Some(n) if tagged => n.vlan,
                    _ => None,
                };
                trunk = Some(TrunkRole {
                    vlan,
                    carrier: k == 0,
                });
            }
            // A trunk's native network is on eth0 itself, each VLAN on eth0.N.
            let ifname = match trunk {
                Some(TrunkRole { vlan: Some(v), .. }) => Some(format!("eth0.{v}")),
                Some(TrunkRole { vlan: None, .. }) => Some("eth0".to_string()),
                None => ifname,
            };
            let ifname = ifname.unwrap_or_else(|| format!("eth{k}"));
            if let Err(why) = check_ifname(&ifname) {
                c.bad(format!("{field}.ifname"), why);
            } else if !seen_ifnames.insert(ifname.clone()) {
                c.bad(
                    format!("{field}.ifname"),
                    format!("the endpoint already has an interface named {ifname:?}"),
                );
            }
            let Some(ni) = networks.index(&net) else {
                c.bad(
                    format!("{field}.network"),
                    format!("no network named {net:?}"),
                );
                continue;
            };
            if !seen_nets.insert(ni) {
                c.bad(
                    format!("{field}.network"),
                    format!("already attached to network {net:?}"),
                );
                continue;
            }
            pending.push(Pending {
                endpoint: i,
                ifname,
                network: ni,
                ip,
                mac,
                field,
                trunk,
            });
        }
        let aliases = super::dns::check_aliases(&fld("aliases"), &e.aliases, c);
        endpoints.push(Endpoint {
            name: e.name.clone(),
            aliases,
            netns: match &e.netns {
                Some(path) => path.clone(),
                None => format!("{prefix}{}", e.name),
            },
            foreign: e.netns.is_some(),
            handover: e.handover,
            interfaces: Vec::new(),
            shares: None,
        });
    }
    for (i, other) in shares.iter().enumerate() {
        let Some(other) = other else { continue };
        let f = format!("endpoint \"{}\".mode", endpoints[i].name);
        match ep_names.get(other.as_str()) {
            None => c.bad(
                f,
                format!("no endpoint named {other:?} to share a namespace with"),
            ),
            Some(&j) if j == i => c.bad(f, "an endpoint cannot share its own namespace"),
            Some(&j) if shares[j].is_some() => c.bad(
                f,
                format!("{other:?} itself shares another namespace; name that one instead"),
            ),
            Some(&j) if raw[j].netns.is_some() => c.bad(
                f,
                format!(
                    "{other:?} is a namespace switchyard did not create; it cannot name it twice"
                ),
            ),
            Some(&j) => endpoints[i].shares = Some(j),
        }
    }
    Endpoints {
        list: endpoints,
        pending,
        publish: publish_raw,
    }
}

/// What an endpoint with `trunk` (or `native`) may not have besides: its interfaces
/// are eth0 and eth0's VLANs, named by the networks and their tags.
fn trunk_shape(e: &EndpointSection, f: &str, c: &mut Checker) {
    if e.trunk.is_empty() {
        c.bad(
            format!("{f}.native"),
            "native names the untagged network of a trunk; list the tagged ones in trunk",
        );
    }
    if e.network.is_some() || !e.attach.is_empty() || e.mode.is_some() || e.ifname.is_some() {
        c.bad(
            format!("{f}.trunk"),
            "a trunk endpoint takes no network, attach, mode or ifname: its interfaces are \
             eth0 (the native network, if any) and eth0.N for each VLAN",
        );
    }
    if e.native.is_none() && e.ip.is_some() {
        c.bad(
            format!("{f}.ip"),
            "with trunk, ip is the native network's address on eth0; give each VLAN's \
             address in its trunk entry ({ network = \"...\", ip = \"...\" })",
        );
    }
}

/// What a handed-over endpoint needs: one interface (`network`), the namespace the
/// runtime moves it into (`netns`), and the TAP's name until then (`ifname`), which
/// is a name in switchyard's own namespace, where no default may be assumed free.
fn handover_shape(e: &EndpointSection, f: &str, c: &mut Checker) {
    if e.netns.is_none() {
        c.bad(
            format!("{f}.handover"),
            "a handed-over interface needs netns: the path of the namespace the runtime \
             moves it into",
        );
    }
    if e.network.is_none()
        || !e.attach.is_empty()
        || e.mode.is_some()
        || !e.trunk.is_empty()
        || e.native.is_some()
    {
        c.bad(
            format!("{f}.handover"),
            "a handed-over interface is its endpoint's only one: give network, not attach, \
             trunk or mode",
        );
    }
    if e.ifname.is_none() {
        c.bad(
            format!("{f}.handover"),
            "a handed-over interface needs ifname: the TAP's name in switchyard's own \
             namespace until the runtime moves and renames it",
        );
    }
}

/// Every interface is a port, and ports are numbered with 16 bits.
pub(super) fn check_port_count(endpoints: &[Endpoint], c: &mut Checker) {
    let port_count: usize = endpoints.iter().map(|e| e.interfaces.len()).sum();
    if port_count >= usize::from(u16::MAX) {
        c.bad(
            "endpoint",
            format!("{port_count} interfaces; at most {}", u16::MAX - 1),
        );
    }
}

/// An interface name the kernel takes (`IFNAMSIZ`: at most 15 bytes) and that is
/// not `lo`: printable ASCII without '/', ':' or spaces, not `.` or `..`.
pub(super) fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
        && name != "."
        && name != "..";
    if !ok {
        return Err(format!(
            "{name:?} is not an interface name: 1 to 15 printable characters, no '/', ':' or spaces"
        ));
    }
    if name == "lo" {
        return Err("lo is the namespace's loopback, not switchyard's to make".into());
    }
    Ok(())
}

/// The path of a namespace someone else made: absolute, without `..` (a path that
/// climbs out of where it says it is), and of a sane length.
pub fn check_netns_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} must be an absolute path (/run/netns/NAME, /proc/PID/ns/net)"
        ));
    }
    if path.split('/').any(|c| c == "..") || path.len() > 4096 || path.contains('\0') {
        return Err(format!("{path:?} is not a plain absolute path"));
    }
    Ok(())
}
