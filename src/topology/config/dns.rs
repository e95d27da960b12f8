//! The DNS keys: which networks have a resolver at their gateway (`[[network]] dns`,
//! `dns_domain`), the names an endpoint answers to besides its own (`[[endpoint]]
//! aliases`), and where names outside switchyard's zones go (`[switch] dns_upstream`,
//! `dns_upstream_netns`).
//!
//! Like Docker's embedded resolver on user-defined networks, a network with a gateway
//! serves DNS by default, with two exceptions: the network named `default` (docker0's
//! network has no resolver in Docker either) and the external network, whose
//! "endpoints" are the outside world — answering and forwarding for them would make
//! switchyard an open resolver. Either may still turn it on with `dns = true`.
//!
//! A DNS name here is what a resolver can be asked for: labels of 1 to 63 letters,
//! digits and '-' (not first or last), joined by dots, at most 253 characters, and a
//! last label that is not all digits (so that no name reads as an IPv4 address).
//! Names are case-insensitive; switchyard keeps them in lowercase, without the
//! trailing dot of the absolute form. [`parse_dns_name`] is the one rule, used by the
//! config file, the command line and the CNI plugin alike.

use super::{Checker, Network};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

/// Most aliases of one endpoint.
pub const MAX_ALIASES: usize = 32;
/// Most upstream servers (`[switch] dns_upstream`); glibc's resolver reads three,
/// a forwarder that tries them in turn has no use for dozens.
pub const MAX_UPSTREAMS: usize = 8;
/// The port of an upstream given without one.
pub const DNS_PORT: u16 = 53;
/// Longest DNS name in its text form (RFC 1035's 255 octets on the wire, less the
/// first length octet and the root label).
pub const MAX_DNS_NAME: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_DNS_LABEL: usize = 63;

/// True if `s` is a DNS name switchyard can answer for, in any case and with or
/// without a trailing dot (see [`parse_dns_name`]).
pub fn dns_name_ok(s: &str) -> bool {
    parse_dns_name(s).is_ok()
}

/// `s` as the DNS name switchyard keeps: lowercased, without a trailing dot; or why
/// it is not one.
pub fn parse_dns_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let refuse = |why: &str| Err(format!("{s:?} is not a DNS name: {why}"));
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_DNS_NAME {
        return refuse("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return refuse("an empty label (two dots in a row, or a dot first)");
        }
        if label.len() > MAX_DNS_LABEL {
            return refuse("a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return refuse("labels are letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return refuse("a label starts or ends with '-'");
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return refuse("its last label is all digits, as an address's are");
    }
    Ok(name)
}

/// An upstream server, `192.0.2.53` or `192.0.2.53:5353` (port 53 when left out).
pub fn parse_upstream(s: &str) -> Result<SocketAddrV4, String> {
    let addr = match s.parse::<SocketAddrV4>() {
        Ok(a) => a,
        Err(_) => match s.parse::<Ipv4Addr>() {
            Ok(ip) => SocketAddrV4::new(ip, DNS_PORT),
            Err(_) => {
                return Err(format!(
                    "{s:?} is not an IPv4 address, optionally with a port (192.0.2.53:53)"
                ))
            }
        },
    };
    if addr.port() == 0 {
        return Err(format!("{s:?}: port 0 is no server's port"));
    }
    let ip = *addr.ip();
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(format!(
            "{ip} is not one server (unspecified, broadcast or multicast)"
        ));
    }
    Ok(addr)
}

/// `[switch] dns_upstream_netns`: a bare name is `/run/netns/<name>`, a path is taken
/// as it is (checked as an endpoint's `netns`).
pub fn parse_upstream_netns(s: &str) -> Result<PathBuf, String> {
    if s.starts_with('/') {
        super::check_netns_path(s)?;
        return Ok(PathBuf::from(s));
    }
    let ok = !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.contains('/')
        && !s.contains('\0');
    if !ok {
        return Err(format!(
            "{s:?} is neither a namespace name (as `ip netns` lists them) nor an absolute path"
        ));
    }
    Ok(PathBuf::from("/run/netns").join(s))
}

/// What `[[network]] dns` resolves to: the value given, else on when the network has
/// a gateway, unless it is the network named `default` or the external one.
pub(super) fn network_default(name: &str, has_gateway: bool, external: bool) -> bool {
    has_gateway && name != "default" && !external
}

/// Checks `dns` and `dns_domain` of one network (at field prefix `f`). Returns the
/// resolved `dns` and the normalised domain.
pub(super) fn check_network(
    f: &str,
    name: &str,
    dns: Option<bool>,
    domain: Option<&str>,
    has_gateway: bool,
    external: bool,
    c: &mut Checker,
) -> (bool, Option<String>) {
    if dns == Some(true) && !has_gateway {
        c.bad(
            format!("{f}.dns"),
            "DNS is served at the gateway; the network has none",
        );
    }
    let on = dns.unwrap_or_else(|| network_default(name, has_gateway, external)) && has_gateway;
    let domain = domain.and_then(|d| match parse_dns_name(d) {
        Ok(d) => Some(d),
        Err(why) => {
            c.bad(format!("{f}.dns_domain"), why);
            None
        }
    });
    if domain.is_some() && !on && dns != Some(true) {
        c.bad(
            format!("{f}.dns_domain"),
            "a search domain needs DNS on the network (dns = true, and a gateway)",
        );
    }
    (on, domain)
}

/// Checks one endpoint's aliases (at field `field`); returns them normalised.
pub(super) fn check_aliases(field: &str, raw: &[String], c: &mut Checker) -> Vec<String> {
    if raw.len() > MAX_ALIASES {
        c.bad(
            field,
            format!("{} aliases; at most {MAX_ALIASES}", raw.len()),
        );
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (k, a) in raw.iter().enumerate() {
        match parse_dns_name(a) {
            Ok(n) if out.contains(&n) => {
                c.bad(format!("{field}[{k}]"), format!("{n:?} is listed twice"))
            }
            Ok(n) => out.push(n),
            Err(why) => c.bad(format!("{field}[{k}]"), why),
        }
    }
    out
}

/// `[switch] dns_upstream` and `dns_upstream_netns`, against the networks' gateways:
/// an upstream that is one of switchyard's own addresses would send every query it
/// cannot answer back to itself.
pub(super) fn check_upstreams(
    upstream: &[String],
    netns: Option<&str>,
    networks: &[Network],
    c: &mut Checker,
) -> (Vec<SocketAddrV4>, Option<PathBuf>) {
    if upstream.len() > MAX_UPSTREAMS {
        c.bad(
            "switch.dns_upstream",
            format!("{} servers; at most {MAX_UPSTREAMS}", upstream.len()),
        );
    }
    let mut out: Vec<SocketAddrV4> = Vec::new();
    for (k, s) in upstream.iter().enumerate() {
        let field = format!("switch.dns_upstream[{k}]");
        let addr = match parse_upstream(s) {
            Ok(a) => a,
            Err(why) => {
                c.bad(field, why);
                continue;
            }
        };
        let ip = *addr.ip();
        if let Some(n) = networks
            .iter()
            .find(|n| n.gateway.is_some_and(|g| g.ip == ip))
        {
            c.bad(
                field,
                format!(
                    "{ip} is switchyard's own gateway on network \"{}\": queries would loop",
                    n.name
                ),
            );
            continue;
        }
        if let Some(n) = networks
            .iter()
            .find(|n| n.subnet.prefix_len() < 31 && n.subnet.broadcast() == ip)
        {
            c.bad(
                field,
                format!("{ip} is the broadcast address of network \"{}\"", n.name),
            );
            continue;
        }
        if out.contains(&addr) {
            c.bad(field, format!("{addr} is listed twice"));
            continue;
        }
        out.push(addr);
    }
    let netns = netns.and_then(|s| match parse_upstream_netns(s) {
        Ok(p) => Some(p),
        Err(why) => {
            c.bad("switch.dns_upstream_netns", why);
            None
        }
    });
    if netns.is_some() && upstream.is_empty() {
        c.bad(
            "switch.dns_upstream_netns",
            "names where queries to dns_upstream go, and there is no dns_upstream",
        );
    }
    (out, netns)
}
