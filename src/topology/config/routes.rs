//! `[[allow]]` and `[[route]]`: what switchyard routes besides a network's own
//! traffic.
//!
//! Networks are isolated from each other, as Docker's user-defined networks are;
//! `[[allow]]` joins two of them for routing. `[[route]]` adds a static route: a
//! prefix reached through a router endpoint on one of the networks. Both need
//! networks switchyard has an address on (a gateway), since it is switchyard that
//! routes.

use super::network::Networks;
use super::{Checker, Network};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use switchyard_core::pipeline::StaticRoute;
use switchyard_core::wire::Ipv4Cidr;

/// `[[allow]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSection {
    pub between: Vec<String>,
}

/// `[[route]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub prefix: String,
    pub via: Ipv4Addr,
}

/// `[[allow]]`: pairs of networks switchyard may route between, as indexes into
/// the networks.
pub(super) fn check_allow(
    raw: &[AllowSection],
    networks: &Networks,
    c: &mut Checker,
) -> Vec<(usize, usize)> {
    let mut allow = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let f = format!("allow[{i}].between");
        if a.between.len() != 2 || a.between[0] == a.between[1] {
            c.bad(f.clone(), "names exactly two different networks");
            continue;
        }
        let mut pair = [0usize; 2];
        let mut ok = true;
        for (k, n) in a.between.iter().enumerate() {
            match networks.index(n) {
                None => {
                    c.bad(f.clone(), format!("no network named {n:?}"));
                    ok = false;
                }
                Some(idx) if networks.list[idx].gateway.is_none() => {
                    c.bad(f.clone(), format!("network {n:?} has no gateway, so switchyard cannot route to or from it"));
                    ok = false;
                }
                Some(idx) if networks.list[idx].internal => {
                    c.bad(
                        f.clone(),
                        format!("network {n:?} is internal: it is never joined to another"),
                    );
                    ok = false;
                }
                Some(idx) => pair[k] = idx,
            }
        }
        if ok {
            allow.push((pair[0], pair[1]));
        }
    }
    allow
}

/// `[[route]]`: the next hop must sit on a network switchyard has an address on.
pub(super) fn check_routes(
    raw: &[RouteSection],
    networks: &[Network],
    c: &mut Checker,
) -> Vec<StaticRoute> {
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let f = format!("route[{i}]");
        let prefix = match r.prefix.parse::<Ipv4Cidr>() {
            Ok(p) if p.trunc() != p => {
                c.bad(
                    format!("{f}.prefix"),
                    format!("{p} has host bits set; did you mean {}?", p.trunc()),
                );
                continue;
            }
            Ok(p) => p,
            Err(e) => {
                c.bad(format!("{f}.prefix"), e);
                continue;
            }
        };
        if let Some(why) = super::addressing::reserved_block(prefix) {
            c.bad(format!("{f}.prefix"), why);
            continue;
        }
        if let Some(why) = super::addressing::reserved_addr(r.via) {
            c.bad(format!("{f}.via"), why);
            continue;
        }
        if let Some(n) = networks
            .iter()
            .find(|n| n.subnet == prefix && n.gateway.is_some())
        {
            c.bad(
                format!("{f}.prefix"),
                format!(
                    "{prefix} is network \"{}\" itself, already routed directly",
                    n.name
                ),
            );
            continue;
        }
        match networks
            .iter()
            .find(|n| n.gateway.is_some() && n.subnet.contains(r.via))
        {
            None => c.bad(
                format!("{f}.via"),
                format!(
                    "{} is not inside a network with a gateway, so switchyard cannot reach it",
                    r.via
                ),
            ),
            Some(n) if n.internal => c.bad(
                format!("{f}.via"),
                format!(
                    "{} is on network \"{}\", which is internal: nothing is routed through it",
                    r.via, n.name
                ),
            ),
            Some(n) if n.gateway.is_some_and(|g| g.ip == r.via) => c.bad(
                format!("{f}.via"),
                format!(
                    "{} is switchyard's own address on network \"{}\"",
                    r.via, n.name
                ),
            ),
            Some(_) => match routes.iter().find(|x: &&StaticRoute| x.prefix == prefix) {
                // One next hop a prefix: a second would make the FIB's choice an
                // accident of order.
                Some(other) => c.bad(
                    format!("{f}.prefix"),
                    format!("{prefix} is routed via {} already", other.via),
                ),
                None => routes.push(StaticRoute { prefix, via: r.via }),
            },
        }
    }
    routes
}
