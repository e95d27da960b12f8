//! The user-space NAT a rootless-container user would pick instead of a switch:
//! pasta (from passt) and slirp4netns, on the `nat-out` scenario.
//!
//! Neither is a switch. Each owns a TAP device in one namespace (the container's) and
//! turns what the container sends into ordinary sockets of the namespace it runs in —
//! a TCP connection out of the container becomes a `connect()` of pasta's or
//! slirp4netns's own, from the host's address. That is masquerade done in user space,
//! so the harness measures them where it measures masquerade: the client `a` reaching
//! the server `outside` at 198.51.100.2.
//!
//! ```text
//!   ns <prefix>a                    ns <prefix>host                ns <prefix>outside
//!    eth0 (TAP of pasta/slirp4netns)  up0 203.0.113.1/24 ───veth─── eth0 198.51.100.2/24
//!      │  fd                          default via 203.0.113.2        lo   203.0.113.2/32
//!      └──── pasta / slirp4netns ───  (its sockets live here)        route 203.0.113.0/24 dev eth0
//! ```
//!
//! Both run as children of the harness inside the "host" namespace, as a rootless
//! runtime runs them in the user's namespace, configured as their manuals recommend
//! for a namespace:
//!
//! * `pasta --config-net --netns PATH --ns-ifname eth0 --mtu 1500 --address 172.17.0.2
//!   --netmask 16 --gateway 172.17.0.1 --ipv4-only --tcp-ports none --udp-ports none
//!   --tcp-ns none --udp-ns none --runas 0 --foreground --quiet`: the client keeps the
//!   address it has on every other system; no ports are forwarded in either direction
//!   (nat-out needs none); `--runas 0` because pasta started as root otherwise drops
//!   to `nobody`, who may not enter a namespace bound under `/run/netns`.
//! * `slirp4netns --configure --mtu=1500 --disable-host-loopback --netns-type=path PATH
//!   eth0`: its fixed addressing, 10.0.2.100/24 with gateway 10.0.2.2 (what rootless
//!   Podman and Docker see).
//!
//! Both get the MTU the kernel and switchyard use on the client's `eth0` in `nat-out`,
//! 1500 (their own defaults are 65520, which would compare a different path); the
//! report states every system's measured MTU.
//!
//! Why the next hop: left to its defaults, pasta copies the host's address and routes
//! into the namespace, and from there a destination on the host's own subnet cannot
//! be reached (tried with this version, 2023-03: a connection to an on-link
//! 198.51.100.2 times out; the namespace asks ARP for it and nobody answers). So the
//! outside is one hop away from the host namespace, which is valid whatever addressing
//! pasta is given: the host routes everything via 203.0.113.2, an address the outside
//! namespace owns on `lo` (so it answers ARP for it) while its only address on the
//! link stays 198.51.100.2 — the source of every reply, as on the other systems,
//! which a connected UDP socket in the client checks.
//!
//! Everything is removed when the [`PeerNet`] drops: the child ended by its PID,
//! then the namespaces, then the scratch directory with the child's log.

use super::kernel::{have, veth, wait_running};
use super::peers::{make_ns, PeerNet};
use super::systems::{Scenario, SystemKind};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;

/// The MTU both run with: the client's `eth0` MTU on the kernel and switchyard in
/// `nat-out`.
pub const MTU: u32 = 1500;
/// The host namespace's address on its uplink.
pub const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The host's next hop towards the outside (owned by the outside namespace).
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The outside server, as on every system.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// How long the child may take to bring the client's `eth0` up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The program behind a system, if it is one of these two.
fn program(system: SystemKind) -> Option<&'static str> {
    match system {
        SystemKind::Pasta => Some("pasta"),
        SystemKind::Slirp4netns => Some("slirp4netns"),
        _ => None,
    }
}

/// Why `system` cannot run `scenario`, or None if it can.
pub fn unavailable(system: SystemKind, scenario: Scenario) -> Option<String> {
    let program = program(system)?;
    if scenario != Scenario::NatOut {
        return Some(format!(
            "{program} is measured on nat-out only: it gives one namespace its way out, \
             with no network between endpoints"
        ));
    }
    if !have(program) {
        return Some(format!("not installed ({program} not found)"));
    }
    None
}

/// The command line of `system` for the namespace at `netns_path`.
pub fn command(system: SystemKind, netns_path: &Path) -> Vec<String> {
    let path = netns_path.to_string_lossy().to_string();
    let args: Vec<String> = match system {
        SystemKind::Pasta => [
            "--config-net",
            "--netns",
            &path,
            "--ns-ifname",
            "eth0",
            "--mtu",
            &MTU.to_string(),
            "--address",
            "172.17.0.2",
            "--netmask",
            "16",
            "--gateway",
            "172.17.0.1",
            "--ipv4-only",
            "--tcp-ports",
            "none",
            "--udp-ports",
            "none",
            "--tcp-ns",
            "none",
            "--udp-ns",
            "none",
            "--runas",
            "0",
            "--foreground",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        _ => vec![
            "--configure".into(),
            format!("--mtu={MTU}"),
            "--disable-host-loopback".into(),
            "--netns-type=path".into(),
            path,
            "eth0".into(),
        ],
    };
    args
}

/// Builds `nat-out` with `system` as the client's way out.
pub fn deploy(system: SystemKind, scenario: Scenario, prefix: &str) -> Result<PeerNet, String> {
    if let Some(why) = unavailable(system, scenario) {
        return Err(why);
    }
    let program = program(system).ok_or("not a rootless peer")?;
    let mut net = PeerNet::scratch(system, prefix)?;
    let dir = net.dir.clone();
    let (host, client, outside) = (
        format!("{prefix}host"),
        format!("{prefix}a"),
        format!("{prefix}outside"),
    );
    for ns in [&host, &client, &outside] {
        make_ns(&mut net, ns)?;
    }
    veth(
        &host,
        &outside,
        "up0",
        None,
        Some((HOST_UPLINK, 24)),
        OUTSIDE,
        24,
        MTU,
        None,
    )
    .map_err(|e| e.to_string())?;
    in_ns(&outside, |r| {
        let lo = r.link_index("lo").map_err(|e| e.to_string())?;
        r.addr_add_v4(lo, NEXT_HOP, 32).map_err(|e| e.to_string())?;
        let eth0 = r.link_index("eth0").map_err(|e| e.to_string())?;
        r.route_add_v4(Ipv4Addr::new(203, 0, 113, 0), 24, None, Some(eth0))
            .map_err(|e| e.to_string())
    })?;
    in_ns(&host, |r| {
        r.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(NEXT_HOP), None)
            .map_err(|e| e.to_string())
    })?;
    for ns in [&host, &outside] {
        wait_running(ns).map_err(|e| e.to_string())?;
    }
    let path = netns::path_of(&client).map_err(|e| e.to_string())?;
    let log = dir.join(format!("{program}.log"));
    let child = spawn_logged(&host, program, &command(system, &path), &log)?;
    net.children.push(child);
    wait_ready(&mut net, &client, program, &log)?;
    Ok(net)
}

/// Runs `f` with a netlink socket of namespace `ns`.
fn in_ns(ns: &str, f: impl FnOnce(&mut Rtnl) -> Result<(), String> + Send) -> Result<(), String> {
    netns::run_in_named(ns, move || {
        let mut r = Rtnl::new().map_err(|e| e.to_string())?;
        f(&mut r)
    })
    .map_err(|e| e.to_string())?
}

/// Starts `program` inside `ns` with its output in `log` (read back if it fails).
fn spawn_logged(ns: &str, program: &str, args: &[String], log: &Path) -> Result<Child, String> {
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let (program, args) = (program.to_string(), args.to_vec());
    netns::run_in_named(ns, move || {
        Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {program}: {e}"))
    })
    .map_err(|e| e.to_string())?
}

/// Waits until the child has configured the client: `eth0` up with a default route.
/// A child that exits first is a failure, with what it logged.
fn wait_ready(net: &mut PeerNet, client: &str, program: &str, log: &Path) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let ready = netns::run_in_named(client, || -> Option<bool> {
            let mut r = Rtnl::new().ok()?;
            let up = r.links().ok()?.iter().any(|l| l.name == "eth0" && l.up);
            let routed = r.routes_v4().ok()?.iter().any(|rt| rt.prefix_len == 0);
            Some(up && routed)
        })
        .ok()
        .flatten()
        .unwrap_or(false);
        if ready {
            return Ok(());
        }
        let said = || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        if let Some(child) = net.children.last_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{program} exited ({status}): {}", said()));
            }
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{program} did not bring eth0 up in {client} within {} s: {}",
                READY_TIMEOUT.as_secs(),
                said()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nat_out_and_never_another_system() {
        for s in Scenario::ALL {
            for k in [SystemKind::Pasta, SystemKind::Slirp4netns] {
                let why = unavailable(k, s);
                if s != Scenario::NatOut {
                    let why = why.expect("skipped off nat-out");
                    assert!(why.contains("nat-out only"), "{why}");
                }
            }
        }
        assert_eq!(unavailable(SystemKind::Kernel, Scenario::L2), None);
    }

    #[test]
    fn both_run_at_the_mtu_of_the_others_into_the_namespace_given() {
        let path = Path::new("/run/netns/b1s2y6-a");
        let pasta = command(SystemKind::Pasta, path).join(" ");
        for want in [
            "--config-net",
            "--netns /run/netns/b1s2y6-a",
            "--mtu 1500",
            "--runas 0",
            "--foreground",
            "--tcp-ports none",
            "--address 172.17.0.2",
        ] {
            assert!(pasta.contains(want), "{want} missing from pasta {pasta}");
        }
        let slirp = command(SystemKind::Slirp4netns, path);
        assert_eq!(
            slirp,
            [
                "--configure",
                "--mtu=1500",
                "--disable-host-loopback",
                "--netns-type=path",
                "/run/netns/b1s2y6-a",
                "eth0"
            ]
        );
    }
}
