//! The kernel's way, for comparison: Docker's default network built from kernel parts,
//! inside namespaces made for the purpose.
//!
//! ```text
//!   ns <prefix>a      ns <prefix>b            ns <prefix>outside
//!    eth0 (veth)       eth0 (veth)             eth0 (veth) 198.51.100.2
//!      │                 │                       │
//!  ┌───┴─────────────────┴───── ns <prefix>host ─┴──────────────────────┐
//!  │  ve0 ──┐       ve1 ──┐                      vo0 198.51.100.1         │
//!  │        br0 (docker0) 172.17.0.1/16                                   │
//!  │  ip_forward=1; iptables -t nat: MASQUERADE -s 172.17.0.0/16 -o vo0    │
//!  │                                 DNAT -d 198.51.100.1 --dport 8080 …   │
//!  └─────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The "host" is a namespace too: nothing is ever configured in the machine's own
//! network namespace. Interfaces are made with netlink; the NAT rules with the
//! `iptables` program, as Docker makes them (it must be installed). Everything is
//! removed when the [`KernelNet`] is dropped.

use crate::kernel_links::KernelLinks;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use switchyard_core::wire::{Ipv4Cidr, MacAddr};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;

/// A published port on the kernel side: `-p host_port:target_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPublish {
    pub udp: bool,
    pub host_port: u16,
    pub target: Ipv4Addr,
    pub target_port: u16,
}

/// The outside: a network beyond the host, with one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelOutside {
    pub subnet: Ipv4Cidr,
    /// The host's address there (switchyard's uplink address on the other side).
    pub uplink: Ipv4Addr,
    pub peer_name: String,
    pub peer_ip: Ipv4Addr,
    /// MASQUERADE traffic from the bridge subnet leaving by the outside.
    pub masquerade: bool,
    pub publish: Vec<KernelPublish>,
}

/// One bridged network (a docker0): a Linux bridge in the host namespace with the
/// gateway address, and a veth pair to each endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBridge {
    pub subnet: Ipv4Cidr,
    /// The bridge's address: the endpoints' default gateway.
    pub gateway: Ipv4Addr,
    pub endpoints: Vec<(String, Ipv4Addr)>,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    /// Prefix of every namespace made (unique per run).
    pub prefix: String,
    pub mtu: u16,
    /// Bridges br0, br1, ...; the host routes between them (`ip_forward`).
    pub bridges: Vec<KernelBridge>,
    pub outside: Option<KernelOutside>,
}

/// Why the kernel network could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
    #[error("the program {0} is needed for the kernel comparison but is not installed")]
    MissingTool(&'static str),
}

fn step<T, E: std::fmt::Display>(
    what: impl Into<String>,
    r: Result<T, E>,
) -> Result<T, KernelError> {
    r.map_err(|e| KernelError::Step {
        what: what.into(),
        detail: e.to_string(),
    })
}

/// The kernel network; torn down on drop.
pub struct KernelNet {
    namespaces: Vec<String>,
    prefix: String,
}

impl KernelNet {
    /// Builds `spec`. On failure, whatever was made is removed.
    pub fn build(spec: &KernelSpec) -> Result<KernelNet, KernelError> {
        if spec
            .outside
            .as_ref()
            .is_some_and(|o| o.masquerade || !o.publish.is_empty())
            && !have("iptables")
        {
            return Err(KernelError::MissingTool("iptables"));
        }
        let mut net = KernelNet {
            namespaces: Vec::new(),
            prefix: spec.prefix.clone(),
        };
        net.build_inner(spec)?;
        for ns in &net.namespaces {
            wait_running(ns)?;
        }
        Ok(net)
    }

    /// The namespace of endpoint (or outside peer) `name`.
    pub fn namespace(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The namespace that plays the host (bridge, forwarding, iptables).
    pub fn host(&self) -> String {
        format!("{}host", self.prefix)
    }

    fn make_ns(&mut self, name: String) -> Result<(), KernelError> {
        step(format!("create namespace {name}"), netns::create(&name))?;
        self.namespaces.push(name.clone());
        configure_ns(&name)
    }

    fn build_inner(&mut self, spec: &KernelSpec) -> Result<(), KernelError> {
        let host = self.host();
        self.make_ns(host.clone())?;
        let mtu = u32::from(spec.mtu);
        step(
            "enable forwarding in the host namespace",
            netns::run_in_named(&host, || {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())
            .and_then(|r| r),
        )?;
        let mut k = 0;
        for (b, bridge) in spec.bridges.iter().enumerate() {
            let name = format!("br{b}");
            let (gw, plen) = (bridge.gateway, bridge.subnet.prefix_len());
            let br = name.clone();
            step(
                format!("create the bridge {name}"),
                netns::run_in_named(&host, move || -> Result<(), String> {
                    let mut r = Rtnl::new().map_err(|e| e.to_string())?;
                    r.link_add_bridge(&br).map_err(|e| e.to_string())?;
                    let i = r.link_index(&br).map_err(|e| e.to_string())?;
                    r.link_set_mtu(i, mtu).map_err(|e| e.to_string())?;
                    r.addr_add_v4(i, gw, plen).map_err(|e| e.to_string())?;
                    r.link_set_up(i).map_err(|e| e.to_string())
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r),
            )?;
            for (ep, ip) in &bridge.endpoints {
                let ns = self.namespace(ep);
                self.make_ns(ns.clone())?;
                veth(
                    &host,
                    &ns,
                    &format!("ve{k}"),
                    Some(&name),
                    None,
                    *ip,
                    plen,
                    mtu,
                    Some(gw),
                )?;
                k += 1;
            }
        }
        if let Some(o) = &spec.outside {
            let ns = self.namespace(&o.peer_name);
            self.make_ns(ns.clone())?;
            veth(
                &host,
                &ns,
                "vo0",
                None,
                Some((o.uplink, o.subnet.prefix_len())),
                o.peer_ip,
                o.subnet.prefix_len(),
                1500,
                None,
            )?;
            let mut rules: Vec<Vec<String>> = Vec::new();
            if o.masquerade {
                for b in &spec.bridges {
                    rules.push(
                        format!(
                            "-t nat -A POSTROUTING -s {} -o vo0 -j MASQUERADE",
                            b.subnet.trunc()
                        )
                        .split(' ')
                        .map(String::from)
                        .collect(),
                    );
                }
            }
            for p in &o.publish {
                rules.push(
                    format!(
                        "-t nat -A PREROUTING -d {} -p {} --dport {} -j DNAT --to-destination {}:{}",
                        o.uplink,
                        if p.udp { "udp" } else { "tcp" },
                        p.host_port,
                        p.target,
                        p.target_port
                    )
                    .split(' ')
                    .map(String::from)
                    .collect(),
                );
            }
            for args in rules {
                let shown = args.join(" ");
                let out = step(
                    format!("iptables {shown}"),
                    netns::run_in_named(&host, move || {
                        Command::new("iptables").args(&args).output()
                    })
                    .map_err(|e| e.to_string()),
                )?;
                let out = step(format!("iptables {shown}"), out)?;
                if !out.status.success() {
                    return Err(KernelError::Step {
                        what: format!("iptables {shown}"),
                        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Waits until every device that is up in namespace `ns` is also running. The kernel
/// marks a veth's carrier on through its link watch, up to a second after the pair
/// came up, and until then drops what is sent on it: a first SYN lost that way would
/// count as a failed connection.
pub(crate) fn wait_running(ns: &str) -> Result<(), KernelError> {
    step(
        format!("wait for the devices in {ns} to run"),
        netns::run_in_named(ns, || -> Result<(), String> {
            let mut r = Rtnl::new().map_err(|e| e.to_string())?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let links = r.links().map_err(|e| e.to_string())?;
                let waiting: Vec<String> = links
                    .into_iter()
                    .filter(|l| l.up && !l.running)
                    .map(|l| l.name)
                    .collect();
                if waiting.is_empty() {
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("no carrier after 5 s on {}", waiting.join(", ")));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r),
    )
}

/// A veth pair from the host namespace to `ns`, where its end becomes eth0.
#[allow(clippy::too_many_arguments)]
pub(crate) fn veth(
    host: &str,
    ns: &str,
    host_end: &str,
    bridge: Option<&str>,
    host_addr: Option<(Ipv4Addr, u8)>,
    ip: Ipv4Addr,
    plen: u8,
    mtu: u32,
    gateway: Option<Ipv4Addr>,
) -> Result<(), KernelError> {
    let target = step(format!("open namespace {ns}"), netns::open(ns))?;
    let (host_end, peer_end) = (host_end.to_string(), format!("{host_end}p"));
    let bridge = bridge.map(String::from);
    let peer_end2 = peer_end.clone();
    step(
        format!("veth {host_end} in {host}"),
        netns::run_in_named(host, move || -> Result<(), String> {
            let mut r = Rtnl::new().map_err(|e| e.to_string())?;
            r.link_add_veth(&host_end, &peer_end2)
                .map_err(|e| e.to_string())?;
            let h = r.link_index(&host_end).map_err(|e| e.to_string())?;
            r.link_set_mtu(h, mtu).map_err(|e| e.to_string())?;
            if let Some(b) = bridge {
                let b = r.link_index(&b).map_err(|e| e.to_string())?;
                r.link_set_master(h, b).map_err(|e| e.to_string())?;
            }
            if let Some((a, l)) = host_addr {
                r.addr_add_v4(h, a, l).map_err(|e| e.to_string())?;
            }
            r.link_set_up(h).map_err(|e| e.to_string())?;
            let p = r.link_index(&peer_end2).map_err(|e| e.to_string())?;
            r.link_set_netns(p, target.as_fd())
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r),
    )?;
    step(
        format!("configure eth0 in {ns}"),
        netns::run_in_named(ns, move || -> Result<(), String> {
            let mut r = Rtnl::new().map_err(|e| e.to_string())?;
            let p = r.link_index(&peer_end).map_err(|e| e.to_string())?;
            r.link_set_name(p, "eth0").map_err(|e| e.to_string())?;
            r.link_set_mac(p, MacAddr::from_ipv4(ip).0)
                .map_err(|e| e.to_string())?;
            r.link_set_mtu(p, mtu).map_err(|e| e.to_string())?;
            r.addr_add_v4(p, ip, plen).map_err(|e| e.to_string())?;
            r.link_set_up(p).map_err(|e| e.to_string())?;
            if let Some(gw) = gateway {
                r.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(p))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r),
    )
}

/// Turns on `lo` and off IPv6 in the new namespace `name`, as every namespace of the
/// kernel side has them.
pub(crate) fn configure_ns(name: &str) -> Result<(), KernelError> {
    step(
        format!("configure lo in {name}"),
        netns::run_in_named(name, || -> Result<(), String> {
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
            let mut r = Rtnl::new().map_err(|e| e.to_string())?;
            let lo = r.link_index("lo").map_err(|e| e.to_string())?;
            r.link_set_up(lo).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r),
    )
}

impl Drop for KernelNet {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = netns::delete(ns);
        }
    }
}

/// True if `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
