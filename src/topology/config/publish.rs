//! Published ports (`publish = ["8080:80/tcp"]` on an endpoint) and the port range
//! masquerade picks from (`[switch] nat_port_range`): the two halves of NAT.
//!
//! A published port is `docker run -p` for switchyard: flows to the external
//! network's gateway address on the host port are DNATed to the endpoint's eth0 on
//! the container port. So publishing needs an external network, an endpoint with an
//! interface of its own on an inside network, and one owner per (protocol, host port).

use super::network::Networks;
use super::{Checker, Endpoint, Published};
use std::collections::HashMap;

/// A published port, `HOST:CONTAINER[/tcp|/udp]` as `docker run -p` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
}

/// Parses `8080:80/tcp`, `5353:53/udp` or `8080:80` (TCP).
pub fn parse_publish(s: &str) -> Result<Publish, String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (s, "tcp"),
    };
    let udp = match proto {
        "tcp" => false,
        "udp" => true,
        other => return Err(format!("{s:?}: protocol {other:?} is not tcp or udp")),
    };
    let (h, c) = ports
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:CONTAINER[/tcp|udp], like \"8080:80/tcp\""))?;
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| format!("{s:?}: {p:?} is not a port from 1 to 65535"))
    };
    Ok(Publish {
        host_port: port(h)?,
        container_port: port(c)?,
        udp,
    })
}

/// Parses a port range "LOW-HIGH" (inclusive, 1..=65535, LOW <= HIGH).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range like \"1024-65535\""))?;
    let p = |x: &str| x.trim().parse::<u16>().ok().filter(|&n| n != 0);
    match (p(a), p(b)) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(format!(
            "{s:?} is not a range of ports LOW-HIGH with 1 <= LOW <= HIGH <= 65535"
        )),
    }
}

/// The syntax of endpoint `endpoint`'s `publish` list (`field` names the endpoint):
/// (endpoint, index in the list, rule) for each rule that parses.
pub(super) fn parse_rules(
    endpoint: usize,
    rules: &[String],
    field: &str,
    c: &mut Checker,
) -> Vec<(usize, usize, Publish)> {
    let mut parsed = Vec::new();
    for (k, p) in rules.iter().enumerate() {
        match parse_publish(p) {
            Ok(rule) => parsed.push((endpoint, k, rule)),
            Err(why) => c.bad(format!("{field}.publish[{k}]"), why),
        }
    }
    parsed
}

/// Published ports: on the uplink address, one endpoint per (protocol, port). Takes
/// the endpoints with their interfaces, since a rule leads to the address of eth0.
pub(super) fn check(
    rules: &[(usize, usize, Publish)],
    endpoints: &[Endpoint],
    networks: &Networks,
    c: &mut Checker,
) -> Vec<Published> {
    let has_external = networks.has_external();
    let mut publish = Vec::new();
    let mut seen_ports: HashMap<(bool, u16), String> = HashMap::new();
    for &(i, k, rule) in rules {
        let e = &endpoints[i];
        let f = format!("endpoint \"{}\".publish[{k}]", e.name);
        if !has_external {
            c.bad(f, "publishing needs an external network (external = true): ports are published on its gateway address");
            continue;
        }
        let Some(eth0) = e.interfaces.first() else {
            c.bad(
                f,
                "an endpoint without a network of its own has nothing to publish",
            );
            continue;
        };
        if networks.list[eth0.network].external {
            c.bad(
                f,
                "the endpoint is on the external network already; publishing is for the inside",
            );
            continue;
        }
        if networks.list[eth0.network].internal {
            c.bad(
                f,
                "the endpoint's network is internal: nothing from outside reaches it",
            );
            continue;
        }
        let proto = if rule.udp { "udp" } else { "tcp" };
        if let Some(other) = seen_ports.get(&(rule.udp, rule.host_port)) {
            c.bad(
                f,
                format!("{}/{proto} is already published by {other}", rule.host_port),
            );
            continue;
        }
        seen_ports.insert(
            (rule.udp, rule.host_port),
            format!("endpoint \"{}\"", e.name),
        );
        publish.push(Published {
            endpoint: i,
            rule,
            target: eth0.ip,
        });
    }
    publish
}

/// `[switch] nat_port_range`; the default range stands in for a bad one.
pub(super) fn check_port_range(range: &str, c: &mut Checker) -> (u16, u16) {
    match parse_port_range(range) {
        Ok(r) => r,
        Err(why) => {
            c.bad("switch.nat_port_range", why);
            (1024, 65535)
        }
    }
}
