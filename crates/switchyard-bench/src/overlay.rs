//! The `overlay` scenario: one network spanning two hosts over VXLAN (RFC 7348), the way
//! Docker's overlay driver and Open vSwitch join containers on several hosts.
//!
//! ```text
//!   ns <prefix>a 10.30.0.2                              ns <prefix>b 10.30.0.3  (kernel)
//!   ns <p0>a     10.30.0.2                              ns <p1>b     10.30.0.3  (switchyard)
//!        │ eth0, MTU 1450                                     │
//!  ┌─────┴──── ns <prefix>h1 ────┐  underlay veth   ┌────┴──── ns <prefix>h2 ────┐
//!  │ kernel: br0 + vx0 (VNI 42)   │ 192.0.2.1 ───── 192.0.2.2 │ kernel: br0 + vx0      │
//!  │ switchyard: an instance whose│   UDP 4789       │ switchyard: the other one │
//!  │ overlay network's VTEP is here│                  │                           │
//!  └──────────────────────────────┘                  └───────────────────────────┘
//! ```
//!
//! Both systems get the same underlay (two "host" namespaces joined by a veth pair, MTU
//! 1500) and the same overlay MTU (1450: 50 bytes for the outer Ethernet, IPv4, UDP and
//! VXLAN headers). The kernel side is a Linux `vxlan` device on a bridge in each host,
//! with a veth to its endpoint, as `ip link add vx0 type vxlan id 42 local A remote B
//! dstport 4789` builds it; the switchyard side is two instances, one per host, whose
//! overlay network names the other as its remote.

use crate::kernel::{configure_ns, veth, wait_running};
use crate::kernel_links::KernelLinks;
use crate::systems::SwitchyardTuning;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use switchyard::control::Switchyard;
use switchyard_os::netlink::packet::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;

/// The overlay's VXLAN network identifier.
pub const VNI: u32 = 42;
/// The VXLAN UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;
/// The hosts' underlay addresses.
pub const UNDERLAY: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
/// The overlay's MTU: the underlay's 1500 less VXLAN's 50 bytes.
pub const OVERLAY_MTU: u16 = 1450;
/// The endpoints: `a` on the first host (the client), `b` on the second (the server).
pub const ENDPOINTS: [(&str, Ipv4Addr); 2] = [
    ("a", Ipv4Addr::new(10, 30, 0, 2)),
    ("b", Ipv4Addr::new(10, 30, 0, 3)),
];

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Runs netlink calls inside namespace `ns`.
fn in_ns<T: Send>(
    ns: &str,
    f: impl FnOnce(&mut Rtnl) -> Result<T, String> + Send,
) -> Result<T, String> {
    netns::run_in_named(ns, || {
        let mut r = Rtnl::new().map_err(|e| e.to_string())?;
        f(&mut r)
    })
    .map_err(|e| e.to_string())?
}

/// Two host namespaces joined by a veth pair: the network the outer packets cross.
pub struct Underlay {
    prefix: String,
    namespaces: Vec<String>,
}

impl Underlay {
    /// Builds `<prefix>h1` and `<prefix>h2` with 192.0.2.1/24 and 192.0.2.2/24.
    pub fn build(prefix: &str) -> Result<Underlay, String> {
        let mut u = Underlay {
            prefix: prefix.to_string(),
            namespaces: Vec::new(),
        };
        for h in [u.host(0), u.host(1)] {
            u.make_ns(&h)?;
        }
        let (h1, h2) = (u.host(0), u.host(1));
        let target = netns::open(&h2).map_err(|e| err("open the second host", e))?;
        in_ns(&h1, move |r| {
            r.link_add_veth("und0", "und1").map_err(|e| e.to_string())?;
            let p = r.link_index("und1").map_err(|e| e.to_string())?;
            r.link_set_netns(p, target.as_fd())
                .map_err(|e| e.to_string())
        })?;
        for (i, h) in [h1, h2].iter().enumerate() {
            let dev = format!("und{i}");
            let ip = UNDERLAY[i];
            in_ns(h, move |r| {
                let d = r.link_index(&dev).map_err(|e| e.to_string())?;
                r.addr_add_v4(d, ip, 24).map_err(|e| e.to_string())?;
                r.link_set_up(d).map_err(|e| e.to_string())
            })?;
        }
        for h in &u.namespaces {
            wait_running(h).map_err(|e| e.to_string())?;
        }
        Ok(u)
    }

    /// The namespace of host `i` (0 or 1).
    pub fn host(&self, i: usize) -> String {
        format!("{}h{}", self.prefix, i + 1)
    }

    /// Makes namespace `name` with lo up and IPv6 off; removed with the underlay.
    fn make_ns(&mut self, name: &str) -> Result<(), String> {
        netns::create(name).map_err(|e| err(&format!("create namespace {name}"), e))?;
        self.namespaces.push(name.to_string());
        configure_ns(name).map_err(|e| e.to_string())
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = netns::delete(ns);
        }
    }
}

/// The kernel's overlay: a `vxlan` device on a bridge in each host.
pub struct KernelOverlay {
    // Dropped first: the endpoints' namespaces, then the hosts.
    endpoints: Vec<String>,
    underlay: Underlay,
}

impl KernelOverlay {
    pub fn build(prefix: &str) -> Result<KernelOverlay, String> {
        let mut k = KernelOverlay {
            endpoints: Vec::new(),
            underlay: Underlay::build(prefix)?,
        };
        for (i, (name, ip)) in ENDPOINTS.iter().enumerate() {
            let host = k.underlay.host(i);
            let (local, remote) = (UNDERLAY[i], UNDERLAY[1 - i]);
            in_ns(&host, move |r| {
                r.link_add_bridge("br0").map_err(|e| e.to_string())?;
                let br = r.link_index("br0").map_err(|e| e.to_string())?;
                r.link_set_mtu(br, u32::from(OVERLAY_MTU))
                    .map_err(|e| e.to_string())?;
                r.link_set_up(br).map_err(|e| e.to_string())?;
                let mut m = LinkMessage::default();
                m.attributes.push(LinkAttribute::IfName("vx0".into()));
                m.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Vxlan),
                    LinkInfo::Data(InfoData::Vxlan(vec![
                        InfoVxlan::Id(VNI),
                        InfoVxlan::Local(local),
                        InfoVxlan::Group(remote),
                        InfoVxlan::Port(VXLAN_PORT),
                        InfoVxlan::Learning(true),
                    ])),
                ]));
                r.link_add(m, || "add vxlan vx0".to_string())
                    .map_err(|e| e.to_string())?;
                let vx = r.link_index("vx0").map_err(|e| e.to_string())?;
                r.link_set_mtu(vx, u32::from(OVERLAY_MTU))
                    .map_err(|e| e.to_string())?;
                r.link_set_master(vx, br).map_err(|e| e.to_string())?;
                r.link_set_up(vx).map_err(|e| e.to_string())
            })
            .map_err(|e| err(&format!("the vxlan device in {host}"), e))?;
            let ns = format!("{prefix}{name}");
            netns::create(&ns).map_err(|e| err(&format!("create namespace {ns}"), e))?;
            k.endpoints.push(ns.clone());
            configure_ns(&ns).map_err(|e| e.to_string())?;
            veth(
                &host,
                &ns,
                "ve0",
                Some("br0"),
                None,
                *ip,
                24,
                u32::from(OVERLAY_MTU),
                None,
            )
            .map_err(|e| e.to_string())?;
        }
        for ns in k.underlay.namespaces.iter().chain(&k.endpoints) {
            wait_running(ns).map_err(|e| e.to_string())?;
        }
        Ok(k)
    }

    /// The namespace of endpoint `name`.
    pub fn namespace(&self, name: &str) -> String {
        format!("{}{name}", self.underlay.prefix)
    }
}

impl Drop for KernelOverlay {
    fn drop(&mut self) {
        for ns in self.endpoints.iter().rev() {
            let _ = netns::delete(ns);
        }
    }
}

/// switchyard's overlay: an instance per host, their overlay networks each other's
/// remote.
pub struct SwitchyardOverlay {
    // Stopped first, while their underlay still exists.
    pub instances: Vec<Switchyard>,
    _underlay: Underlay,
    prefixes: [String; 2],
}

impl SwitchyardOverlay {
    /// The config file of the instance on host `i`.
    pub fn config(prefix: &str, host_ns: &str, i: usize, tuning: SwitchyardTuning) -> String {
        let (name, ip) = ENDPOINTS[i];
        format!(
            r#"[switch]
prefix = "{prefix}"
{keys}
[[network]]
name = "overlay"
subnet = "10.30.0.0/24"
vxlan = {{ vni = {VNI}, local = "{local}", remotes = ["{remote}"], port = {VXLAN_PORT}, underlay_netns = "{host_ns}" }}

[[endpoint]]
name = "{name}"
network = "overlay"
ip = "{ip}"
"#,
            keys = tuning.switch_keys(),
            local = UNDERLAY[i],
            remote = UNDERLAY[1 - i],
        )
    }

    /// The second instance's prefix: the first one's with its last character changed
    /// (same length, still the bench's pattern).
    fn second_prefix(prefix: &str) -> String {
        let mut p = prefix.to_string();
        let last = p.pop().unwrap_or('-');
        p.push(if last == '_' { '-' } else { '_' });
        p
    }

    pub fn build(
        prefix: &str,
        run_root: &Path,
        tuning: SwitchyardTuning,
    ) -> Result<SwitchyardOverlay, String> {
        let underlay = Underlay::build(prefix)?;
        let prefixes = [prefix.to_string(), Self::second_prefix(prefix)];
        let mut instances = Vec::new();
        for (i, p) in prefixes.iter().enumerate() {
            let text = Self::config(p, &underlay.host(i), i, tuning);
            let topo = switchyard::topology::config::parse(&text, "overlay bench topology")
                .map_err(|e| e.to_string())?;
            instances.push(Switchyard::start(topo, run_root).map_err(|e| e.to_string())?);
        }
        Ok(SwitchyardOverlay {
            instances,
            _underlay: underlay,
            prefixes,
        })
    }

    /// The namespace of endpoint `i` (0: the client `a`, 1: the server `b`).
    pub fn namespace(&self, i: usize) -> String {
        format!("{}{}", self.prefixes[i], ENDPOINTS[i].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_instances_differ_in_prefix_only_by_the_last_character() {
        assert_eq!(SwitchyardOverlay::second_prefix("b1s4y1-"), "b1s4y1_");
        assert_eq!(SwitchyardOverlay::second_prefix("b1s4y1_"), "b1s4y1-");
    }
}
