//! The scenarios and the systems that run them.
//!
//! Every system builds the same scenario with the same addresses, in namespaces of its
//! own (a unique prefix each), so the traffic tools cannot tell them apart:
//!
//! | scenario  | client                 | server                  | the client targets     |
//! |-----------|------------------------|-------------------------|------------------------|
//! | `l2`      | a 10.10.0.2            | b 10.10.0.3 (same net)  | 10.10.0.3              |
//! | `routed`  | a 10.10.0.2            | b 10.20.0.2 (other net) | 10.20.0.2              |
//! | `nat-out` | a 172.17.0.2 (inside)  | outside 198.51.100.2    | 198.51.100.2           |
//! | `nat-in`  | outside 198.51.100.2   | a 172.17.0.2            | 198.51.100.1 (published)|
//! | `overlay` | a 10.30.0.2 (host 1)   | b 10.30.0.3 (host 2)    | 10.30.0.3 (over VXLAN) |
//!
//! Systems: the kernel (veth pairs on Linux bridges in a "host" namespace, forwarding
//! and iptables MASQUERADE/DNAT, as Docker builds it), and switchyard. Open vSwitch's
//! userspace datapath and vde_switch are tried when installed and reported as skipped
//! otherwise; so are pasta and slirp4netns, the user-space NAT of rootless containers,
//! on `nat-out` (see [`super::rootless`]).

use super::kernel::{KernelBridge, KernelNet, KernelOutside, KernelPublish, KernelSpec};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use switchyard::control::Switchyard;
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology, TopologyBuilder};
use switchyard_os::port::uring::IoMode;

/// Ports the traffic uses (and publishes in `nat-in`).
pub const TCP_PORT: u16 = 5201;
pub const LOAD_PORT: u16 = 9100;
pub const ECHO_PORT: u16 = 9101;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    L2,
    Routed,
    NatOut,
    NatIn,
    Overlay,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::L2,
        Scenario::Routed,
        Scenario::NatOut,
        Scenario::NatIn,
        Scenario::Overlay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::L2 => "l2",
            Scenario::Routed => "routed",
            Scenario::NatOut => "nat-out",
            Scenario::NatIn => "nat-in",
            Scenario::Overlay => "overlay",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::L2 => "two endpoints on one network (bridged)",
            Scenario::Routed => "two networks, routed through the gateway",
            Scenario::NatOut => "endpoint to outside through masquerade",
            Scenario::NatIn => "outside to endpoint through a published port",
            Scenario::Overlay => "one network over VXLAN between two hosts",
        }
    }

    fn client_server(self) -> (&'static str, &'static str) {
        match self {
            Scenario::L2 | Scenario::Routed | Scenario::NatOut => (
                "a",
                if self == Scenario::NatOut {
                    "outside"
                } else {
                    "b"
                },
            ),
            Scenario::NatIn => ("outside", "a"),
            Scenario::Overlay => ("a", "b"),
        }
    }

    /// The address the client sends to.
    pub fn target(self) -> Ipv4Addr {
        match self {
            Scenario::L2 => Ipv4Addr::new(10, 10, 0, 3),
            Scenario::Routed => Ipv4Addr::new(10, 20, 0, 2),
            Scenario::NatOut => Ipv4Addr::new(198, 51, 100, 2),
            Scenario::NatIn => Ipv4Addr::new(198, 51, 100, 1),
            Scenario::Overlay => super::overlay::ENDPOINTS[1].1,
        }
    }
}

/// The systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SystemKind {
    /// veth pairs on a Linux bridge, iptables NAT (as Docker builds it).
    Kernel,
    /// switchyard as configured by default.
    Switchyard,
    /// switchyard with busy polling on (`busy_poll_us`), for latency.
    #[serde(rename = "switchyard-bp")]
    #[value(name = "switchyard-bp")]
    SwitchyardBusyPoll,
    /// switchyard with frames steered to the worker on the CPU that sent them
    /// (`steering = "cpu"`, workers pinned) and adaptive polling: the latency setting.
    #[serde(rename = "switchyard-cpu")]
    #[value(name = "switchyard-cpu")]
    SwitchyardCpu,
    /// Open vSwitch, userspace (netdev) datapath, TAP ports, TSO off.
    Ovs,
    /// The same with `userspace-tso-enable`.
    OvsTso,
    /// vde_switch with vde_plug2tap in each endpoint.
    #[serde(rename = "vde")]
    #[value(name = "vde")]
    VdeSwitch,
    /// pasta (passt) giving the client namespace its way out (nat-out only).
    Pasta,
    /// slirp4netns giving the client namespace its way out (nat-out only).
    #[serde(rename = "slirp4netns")]
    #[value(name = "slirp4netns")]
    Slirp4netns,
}

impl SystemKind {
    /// Every system, in the order the report lists them.
    pub const ALL: [SystemKind; 9] = [
        SystemKind::Kernel,
        SystemKind::Switchyard,
        SystemKind::SwitchyardBusyPoll,
        SystemKind::SwitchyardCpu,
        SystemKind::Ovs,
        SystemKind::OvsTso,
        SystemKind::VdeSwitch,
        SystemKind::Pasta,
        SystemKind::Slirp4netns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Kernel => "kernel",
            SystemKind::Switchyard => "switchyard",
            SystemKind::SwitchyardBusyPoll => "switchyard-bp",
            SystemKind::SwitchyardCpu => "switchyard-cpu",
            SystemKind::Ovs => "ovs",
            SystemKind::OvsTso => "ovs-tso",
            SystemKind::VdeSwitch => "vde",
            SystemKind::Pasta => "pasta",
            SystemKind::Slirp4netns => "slirp4netns",
        }
    }
}

/// How switchyard runs in the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchyardTuning {
    /// Workers (0: one per core).
    pub workers: usize,
    /// Busy-poll time of the `switchyard-bp` system (plain `switchyard` never spins).
    pub busy_poll_us: u64,
    /// How the workers read and write the TAPs.
    pub io: IoMode,
    /// Steering by CPU with pinned workers and adaptive polling (`switchyard-cpu`).
    pub cpu: bool,
}

impl SwitchyardTuning {
    /// How `system` (one of switchyard's) runs.
    fn of(system: SystemKind, t: SwitchyardTuning) -> SwitchyardTuning {
        SwitchyardTuning {
            busy_poll_us: if system == SystemKind::SwitchyardBusyPoll {
                t.busy_poll_us
            } else {
                0
            },
            cpu: system == SystemKind::SwitchyardCpu,
            ..t
        }
    }

    /// The `[switch]` keys of the tuning, as lines of a config file.
    pub fn switch_keys(&self) -> String {
        let mut s = format!(
            "workers = {}\nbusy_poll_us = {}\nio = \"{}\"\n",
            self.workers,
            self.busy_poll_us,
            self.io.as_str()
        );
        if self.cpu {
            s.push_str("steering = \"cpu\"\nadaptive_poll = true\n");
        }
        s
    }
}

/// A scenario built by one system; torn down when dropped.
pub struct Deployed {
    pub system: SystemKind,
    pub scenario: Scenario,
    /// Namespaces of the client and of the server.
    pub client: String,
    pub server: String,
    inner: Inner,
}

/// What keeps a deployment alive; dropping it tears the deployment down.
enum Inner {
    Kernel(#[allow(dead_code)] KernelNet),
    Switchyard(Box<Switchyard>),
    Peer(#[allow(dead_code)] super::peers::PeerNet),
    KernelOverlay(#[allow(dead_code)] super::overlay::KernelOverlay),
    SwitchyardOverlay(super::overlay::SwitchyardOverlay),
}

impl Deployed {
    /// CPU time the switch itself has used so far, where it can be told apart: the
    /// switchyard workers' threads. The kernel forwards in softirq context, charged to
    /// whatever task happens to run, so it has none to report.
    pub fn switch_cpu(&self) -> Option<Duration> {
        match &self.inner {
            Inner::Switchyard(s) => s
                .handle()
                .query_all(|v| v.cpu_time())
                .ok()
                .map(|v| v.into_iter().sum()),
            Inner::Kernel(_) | Inner::KernelOverlay(_) => None,
            Inner::Peer(p) => p.switch_cpu(),
            Inner::SwitchyardOverlay(o) => o
                .instances
                .iter()
                .map(|s| s.handle().query_all(|v| v.cpu_time()).ok())
                .try_fold(Duration::ZERO, |sum, v| {
                    v.map(|v| sum + v.into_iter().sum::<Duration>())
                }),
        }
    }
}

/// The scenario as a switchyard topology, with the addresses of the table above.
fn switchyard_topology(s: Scenario, prefix: &str, t: SwitchyardTuning) -> TopologyBuilder {
    let topo = Topology::builder()
        .source("bench topology")
        .prefix(prefix)
        .switch(|sw| {
            sw.workers = t.workers;
            sw.busy_poll_us = t.busy_poll_us;
            if t.cpu {
                sw.steering = "cpu".into();
                sw.adaptive_poll = true;
            }
            sw.io = t.io.as_str().into();
        });
    let n1 = || NetworkBuilder::new("n1", "10.10.0.0/24").gateway("10.10.0.1");
    match s {
        Scenario::L2 => topo
            .network(n1())
            .endpoint(EndpointBuilder::new("a").on("n1").ip("10.10.0.2"))
            .endpoint(EndpointBuilder::new("b").on("n1").ip("10.10.0.3")),
        Scenario::Routed => topo
            .network(n1())
            .network(NetworkBuilder::new("n2", "10.20.0.0/24").gateway("10.20.0.1"))
            .allow("n1", "n2")
            .endpoint(EndpointBuilder::new("a").on("n1").ip("10.10.0.2"))
            .endpoint(EndpointBuilder::new("b").on("n2").ip("10.20.0.2")),
        // Built by `overlay`, as two instances.
        Scenario::NatOut | Scenario::NatIn | Scenario::Overlay => topo
            .network(
                NetworkBuilder::new("inside", "172.17.0.0/16")
                    .gateway("172.17.0.1")
                    .masquerade(),
            )
            .network(
                NetworkBuilder::new("outside", "198.51.100.0/24")
                    .gateway("198.51.100.1")
                    .external(),
            )
            .endpoint(
                EndpointBuilder::new("a")
                    .on("inside")
                    .ip("172.17.0.2")
                    .publish(format!("{TCP_PORT}:{TCP_PORT}/tcp"))
                    .publish(format!("{LOAD_PORT}:{LOAD_PORT}/udp"))
                    .publish(format!("{ECHO_PORT}:{ECHO_PORT}/udp")),
            )
            .endpoint(
                EndpointBuilder::new("outside")
                    .on("outside")
                    .ip("198.51.100.2"),
            ),
    }
}

fn kernel_spec(s: Scenario, prefix: &str) -> KernelSpec {
    let net = |subnet: &str, gw: [u8; 4], eps: &[(&str, [u8; 4])]| KernelBridge {
        subnet: subnet.parse().expect("valid subnet"),
        gateway: gw.into(),
        endpoints: eps
            .iter()
            .map(|(n, ip)| (n.to_string(), Ipv4Addr::from(*ip)))
            .collect(),
    };
    let (bridges, outside) = match s {
        Scenario::L2 => (
            vec![net(
                "10.10.0.0/24",
                [10, 10, 0, 1],
                &[("a", [10, 10, 0, 2]), ("b", [10, 10, 0, 3])],
            )],
            None,
        ),
        Scenario::Routed => (
            vec![
                net("10.10.0.0/24", [10, 10, 0, 1], &[("a", [10, 10, 0, 2])]),
                net("10.20.0.0/24", [10, 20, 0, 1], &[("b", [10, 20, 0, 2])]),
            ],
            None,
        ),
        Scenario::NatOut | Scenario::NatIn | Scenario::Overlay => (
            vec![net(
                "172.17.0.0/16",
                [172, 17, 0, 1],
                &[("a", [172, 17, 0, 2])],
            )],
            Some(KernelOutside {
                subnet: "198.51.100.0/24".parse().expect("valid subnet"),
                uplink: Ipv4Addr::new(198, 51, 100, 1),
                peer_name: "outside".into(),
                peer_ip: Ipv4Addr::new(198, 51, 100, 2),
                masquerade: true,
                publish: [(false, TCP_PORT), (true, LOAD_PORT), (true, ECHO_PORT)]
                    .iter()
                    .map(|&(udp, p)| KernelPublish {
                        udp,
                        host_port: p,
                        target: Ipv4Addr::new(172, 17, 0, 2),
                        target_port: p,
                    })
                    .collect(),
            }),
        ),
    };
    KernelSpec {
        prefix: prefix.to_string(),
        mtu: 1500,
        bridges,
        outside,
    }
}

/// Builds `scenario` on `system`. `Err` carries why it could not (a missing program
/// makes the system "skipped").
pub fn deploy(
    system: SystemKind,
    scenario: Scenario,
    prefix: &str,
    run_root: &Path,
    tuning: SwitchyardTuning,
) -> Result<Deployed, String> {
    let (c, sv) = scenario.client_server();
    let ns = |n: &str| format!("{prefix}{n}");
    if scenario == Scenario::Overlay {
        return deploy_overlay(system, prefix, run_root, tuning);
    }
    match system {
        SystemKind::Kernel => {
            let k = KernelNet::build(&kernel_spec(scenario, prefix)).map_err(|e| e.to_string())?;
            Ok(Deployed {
                system,
                scenario,
                client: k.namespace(c),
                server: k.namespace(sv),
                inner: Inner::Kernel(k),
            })
        }
        SystemKind::Switchyard | SystemKind::SwitchyardBusyPoll | SystemKind::SwitchyardCpu => {
            let tuning = SwitchyardTuning::of(system, tuning);
            let topo = switchyard_topology(scenario, prefix, tuning)
                .build()
                .map_err(|e| e.to_string())?;
            let sy = Switchyard::start(topo, run_root).map_err(|e| e.to_string())?;
            Ok(Deployed {
                system,
                scenario,
                client: ns(c),
                server: ns(sv),
                inner: Inner::Switchyard(Box::new(sy)),
            })
        }
        SystemKind::Ovs
        | SystemKind::OvsTso
        | SystemKind::VdeSwitch
        | SystemKind::Pasta
        | SystemKind::Slirp4netns => {
            let peer = if matches!(system, SystemKind::Pasta | SystemKind::Slirp4netns) {
                super::rootless::deploy(system, scenario, prefix)?
            } else {
                super::peers::deploy(system, scenario, prefix)?
            };
            Ok(Deployed {
                system,
                scenario,
                client: ns(c),
                server: ns(sv),
                inner: Inner::Peer(peer),
            })
        }
    }
}

/// The `overlay` scenario, which the kernel and switchyard build (see [`super::overlay`]).
fn deploy_overlay(
    system: SystemKind,
    prefix: &str,
    run_root: &Path,
    tuning: SwitchyardTuning,
) -> Result<Deployed, String> {
    use super::overlay::{KernelOverlay, SwitchyardOverlay, ENDPOINTS};
    let scenario = Scenario::Overlay;
    match system {
        SystemKind::Kernel => {
            let k = KernelOverlay::build(prefix)?;
            Ok(Deployed {
                system,
                scenario,
                client: k.namespace(ENDPOINTS[0].0),
                server: k.namespace(ENDPOINTS[1].0),
                inner: Inner::KernelOverlay(k),
            })
        }
        SystemKind::Switchyard | SystemKind::SwitchyardBusyPoll | SystemKind::SwitchyardCpu => {
            let tuning = SwitchyardTuning::of(system, tuning);
            let o = SwitchyardOverlay::build(prefix, run_root, tuning)?;
            Ok(Deployed {
                system,
                scenario,
                client: o.namespace(0),
                server: o.namespace(1),
                inner: Inner::SwitchyardOverlay(o),
            })
        }
        SystemKind::Ovs
        | SystemKind::OvsTso
        | SystemKind::VdeSwitch
        | SystemKind::Pasta
        | SystemKind::Slirp4netns => Err(format!(
            "the overlay scenario is built for the kernel and switchyard only, not {}",
            system.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::topology::config::Steering;

    #[test]
    fn names_agree_between_the_table_the_json_and_the_command_line() {
        for k in SystemKind::ALL {
            use clap::ValueEnum;
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
            assert_eq!(SystemKind::from_str(k.name(), false).unwrap(), k);
        }
        for s in Scenario::ALL {
            use clap::ValueEnum;
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            let arg = crate::cli::ScenarioArg::from_str(s.name(), false).unwrap();
            assert_eq!(arg.scenarios(), &[s]);
        }
        use clap::ValueEnum;
        assert!(SystemKind::from_str("docker", false).is_err());
    }

    #[test]
    fn switchyard_and_the_kernel_build_each_scenario_with_the_same_addresses() {
        let tuning = SwitchyardTuning {
            workers: 1,
            busy_poll_us: 200,
            cpu: false,
            io: IoMode::Syscalls,
        };
        for s in Scenario::ALL {
            if s == Scenario::Overlay {
                // Two instances of their own: the next test.
                continue;
            }
            let topo = switchyard_topology(s, "b1s0y1-", tuning)
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", s.name()));
            assert_eq!((topo.workers, topo.busy_poll_us), (1, 200));
            assert_eq!((topo.steering, topo.adaptive_poll), (Steering::Hash, false));
            let cpu = SwitchyardTuning::of(SystemKind::SwitchyardCpu, tuning);
            let local = switchyard_topology(s, "b1s0y3-", cpu).build().unwrap();
            assert_eq!(
                (local.steering, local.adaptive_poll, local.busy_poll_us),
                (Steering::Cpu, true, 0)
            );
            assert_eq!(topo.io, IoMode::Syscalls);
            let mut ours: Vec<(String, Ipv4Addr)> = topo
                .interfaces()
                .map(|(e, i)| (e.name.clone(), i.ip))
                .collect();
            let k = kernel_spec(s, "b1s0y0-");
            let mut theirs: Vec<(String, Ipv4Addr)> = k
                .bridges
                .iter()
                .flat_map(|b| b.endpoints.iter().cloned())
                .chain(k.outside.iter().map(|o| (o.peer_name.clone(), o.peer_ip)))
                .collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{}", s.name());
            let (client, server) = s.client_server();
            assert!(ours.iter().any(|(n, _)| n == client) && ours.iter().any(|(n, _)| n == server));
            let uplink = topo.external().and_then(|n| n.gateway).map(|g| g.ip);
            assert!(
                ours.iter().any(|(_, ip)| *ip == s.target()) || uplink == Some(s.target()),
                "{} targets an address of its own",
                s.name()
            );
        }
    }

    #[test]
    fn each_overlay_instance_is_a_valid_config_with_the_other_as_its_remote() {
        use crate::overlay::{SwitchyardOverlay, ENDPOINTS, UNDERLAY};
        let cpu = SwitchyardTuning {
            workers: 1,
            busy_poll_us: 0,
            io: IoMode::Uring,
            cpu: true,
        };
        for i in 0..2 {
            let text = SwitchyardOverlay::config("b1s4y1-", "b1s4y1-h1", i, cpu);
            let topo = switchyard::topology::config::parse(&text, "overlay")
                .unwrap_or_else(|e| panic!("instance {i}: {e}"));
            assert_eq!((topo.workers, topo.steering), (1, Steering::Cpu));
            assert_eq!(topo.io, IoMode::Uring, "as the tuning says");
            let ours: Vec<_> = topo
                .interfaces()
                .map(|(e, i)| (e.name.clone(), i.ip))
                .collect();
            assert_eq!(ours, [(ENDPOINTS[i].0.to_string(), ENDPOINTS[i].1)]);
            assert!(text.contains(&format!("remotes = [\"{}\"]", UNDERLAY[1 - i])));
        }
        assert_eq!(Scenario::Overlay.target(), ENDPOINTS[1].1);
    }
}
