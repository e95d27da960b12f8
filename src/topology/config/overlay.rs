//! `[[network]] vxlan = { ... }`: a network that spans hosts (an overlay, RFC 7348).
//! Its frames to and from other hosts travel as UDP datagrams between tunnel
//! endpoints (VTEPs) over an *underlay* network: switchyard's own namespace's, or
//! that of `underlay_netns`.
//!
//! ```toml
//! vxlan = { vni = 42, local = "192.0.2.1", remotes = ["192.0.2.2"], port = 4789, underlay_netns = "host1" }
//! ```
//! What can be checked without touching the system is checked here: the VNI's range,
//! the addresses (unicast, none twice, `local` not among the remotes), the port, the
//! namespace's name, and that no two overlay networks would share one UDP socket
//! address (the kernel would spread their datagrams over both networks' sockets).
//! Whether `local` is an address in the underlay, and the MTU it allows, is learnt
//! when the tunnel is opened at start ([`crate::topology::overlay`]).

use super::{Checker, Overlay};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use switchyard_core::pipeline::PortId;
use switchyard_core::wire::vxlan;

/// The most remote VTEPs one network lists: a flood is sent to each in turn.
pub const MAX_REMOTES: usize = 64;

/// `vxlan = { ... }` of a `[[network]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanSection {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub remotes: Vec<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_netns: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub udp_csum: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why an address cannot be a VTEP's, if it cannot.
fn not_unicast(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("is the unspecified address")
    } else if ip.is_broadcast() {
        Some("is the broadcast address")
    } else if ip.is_multicast() {
        Some(
            "is a multicast address (multicast underlays are not supported; list the remote VTEPs)",
        )
    } else if ip.is_loopback() {
        Some("is a loopback address, which never leaves its host")
    } else {
        None
    }
}

/// Checks one network's `vxlan` key (`field`: `network "x".vxlan`); the tunnel port
/// number is given later, once the endpoints' ports are numbered.
pub(super) fn check(s: &VxlanSection, field: &str, c: &mut Checker) -> Overlay {
    let fld = |k: &str| format!("{field}.{k}");
    if s.vni > vxlan::MAX_VNI {
        c.bad(
            fld("vni"),
            format!(
                "{} is more than 24 bits (at most {})",
                s.vni,
                vxlan::MAX_VNI
            ),
        );
    }
    if let Some(why) = not_unicast(s.local) {
        c.bad(fld("local"), format!("{} {why}", s.local));
    }
    if s.remotes.is_empty() {
        c.bad(
            fld("remotes"),
            "lists no remote VTEP: the network would reach no other host",
        );
    }
    if s.remotes.len() > MAX_REMOTES {
        c.bad(
            fld("remotes"),
            format!("{} remote VTEPs; at most {MAX_REMOTES}", s.remotes.len()),
        );
    }
    for (i, &r) in s.remotes.iter().enumerate() {
        let f = format!("{}[{i}]", fld("remotes"));
        if let Some(why) = not_unicast(r) {
            c.bad(f, format!("{r} {why}"));
        } else if r == s.local {
            c.bad(f, format!("{r} is the local address itself"));
        } else if s.remotes[..i].contains(&r) {
            c.bad(f, format!("{r} is listed twice"));
        }
    }
    if s.port == Some(0) {
        c.bad(fld("port"), "0 is not a UDP port (the default is 4789)");
    }
    let underlay_netns =
        s.underlay_netns
            .as_deref()
            .and_then(|n| match super::dns::parse_upstream_netns(n) {
                Ok(p) => Some(p),
                Err(why) => {
                    c.bad(fld("underlay_netns"), why);
                    None
                }
            });
    Overlay {
        vni: s.vni,
        local: s.local,
        remotes: s.remotes.clone(),
        port: s.port.unwrap_or(vxlan::DEFAULT_PORT),
        underlay_netns,
        udp_csum: s.udp_csum,
        tunnel: PortId(0),
    }
}

/// Two overlay networks may not listen on the same address and port of the same
/// underlay: both would bind it (`SO_REUSEPORT`) and the kernel would hand each
/// network's datagrams to either.
pub(super) fn check_sockets(networks: &[super::Network], c: &mut Checker) {
    let mut seen: Vec<(&Option<PathBuf>, Ipv4Addr, u16, &str)> = Vec::new();
    for n in networks {
        let Some(o) = &n.vxlan else { continue };
        if let Some((_, _, _, other)) = seen
            .iter()
            .find(|s| *s.0 == o.underlay_netns && s.1 == o.local && s.2 == o.port)
        {
            c.bad(
                format!("network \"{}\".vxlan", n.name),
                format!(
                    "listens on {}:{} like network \"{other}\"; give each overlay network its own port or local address",
                    o.local, o.port
                ),
            );
        } else {
            seen.push((&o.underlay_netns, o.local, o.port, &n.name));
        }
    }
}

impl Overlay {
    /// The key as a config file writes it.
    pub fn to_section(&self) -> VxlanSection {
        VxlanSection {
            vni: self.vni,
            local: self.local,
            remotes: self.remotes.clone(),
            port: Some(self.port),
            underlay_netns: self
                .underlay_netns
                .as_ref()
                .map(|p| p.display().to_string()),
            udp_csum: self.udp_csum,
        }
    }
}
