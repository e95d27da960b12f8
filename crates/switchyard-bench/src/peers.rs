//! The switches a user might pick instead, when they are installed: Open vSwitch's
//! userspace datapath (`datapath_type=netdev`, TAP ports, with and without
//! `other_config:userspace-tso-enable`) and `vde_switch`.
//!
//! Both run as child processes of the harness inside namespaces it makes: OVS gets a
//! namespace, a database and control sockets of its own (nothing touches a system
//! OVS), vde_switch a socket directory. Each endpoint's `eth0` is a TAP of the switch:
//! OVS creates its TAP ports in its namespace and the harness moves them into the
//! endpoints' namespaces (the switch keeps its file descriptors); `vde_plug2tap` is
//! started inside each endpoint's namespace and creates the TAP there. Both are used
//! as plain L2 switches (OVS with its `NORMAL` learning action), so only the `l2`
//! scenario runs on them; routed and NAT scenarios are reported as skipped.
//!
//! Everything is removed on drop: the children are ended by their PIDs, then the
//! namespaces and the scratch directory go.

use super::kernel::have;
use super::systems::{Scenario, SystemKind};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_core::wire::MacAddr;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;

/// A peer switch deployment; torn down on drop.
pub struct PeerNet {
    /// Removed on drop, last made first.
    pub(crate) namespaces: Vec<String>,
    /// Ended by their PIDs on drop, before the namespaces go.
    pub(crate) children: Vec<Child>,
    /// Scratch directory (sockets, databases, logs), removed on drop.
    pub(crate) dir: PathBuf,
}

impl PeerNet {
    /// An empty deployment of `system` with a fresh scratch directory
    /// (`switchyard-bench-<prefix><system>` under the temporary directory).
    pub(crate) fn scratch(system: SystemKind, prefix: &str) -> Result<PeerNet, String> {
        let dir = std::env::temp_dir().join(format!("switchyard-bench-{prefix}{}", system.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(PeerNet {
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        })
    }

    /// CPU time used by the switch's processes (user + system, all threads).
    pub fn switch_cpu(&self) -> Option<Duration> {
        let ticks = clock_ticks();
        let mut total = 0u64;
        for c in &self.children {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id())).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
            total += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        }
        Some(Duration::from_secs_f64(total as f64 / ticks as f64))
    }
}

/// The kernel's clock ticks per second, the unit of CPU times in `/proc/PID/stat`.
pub(crate) fn clock_ticks() -> i64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t,
        _ => 100,
    }
}

impl Drop for PeerNet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = netns::delete(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The endpoints of the l2 scenario: (name, address).
const ENDPOINTS: [(&str, [u8; 4]); 2] = [("a", [10, 10, 0, 2]), ("b", [10, 10, 0, 3])];
const PREFIX_LEN: u8 = 24;

/// Why a peer cannot run `scenario`, or None if it can.
pub fn unavailable(system: SystemKind, scenario: Scenario) -> Option<String> {
    let needs: &[&str] = match system {
        SystemKind::Ovs | SystemKind::OvsTso => {
            &["ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl"]
        }
        SystemKind::VdeSwitch => &["vde_switch", "vde_plug2tap"],
        SystemKind::Pasta | SystemKind::Slirp4netns => {
            return super::rootless::unavailable(system, scenario)
        }
        _ => return None,
    };
    if let Some(missing) = needs.iter().find(|p| !have(p)) {
        return Some(format!("not installed ({missing} not found)"));
    }
    if scenario != Scenario::L2 {
        return Some(format!(
            "{} is set up as an L2 switch here: no routing or NAT",
            system.name()
        ));
    }
    if matches!(system, SystemKind::Ovs | SystemKind::OvsTso) && schema().is_none() {
        return Some("Open vSwitch's database schema (vswitch.ovsschema) not found".into());
    }
    None
}

fn schema() -> Option<PathBuf> {
    [
        "/usr/share/openvswitch/vswitch.ovsschema",
        "/usr/local/share/openvswitch/vswitch.ovsschema",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Builds the l2 scenario on a peer switch.
pub fn deploy(system: SystemKind, scenario: Scenario, prefix: &str) -> Result<PeerNet, String> {
    if let Some(why) = unavailable(system, scenario) {
        return Err(why);
    }
    let mut net = PeerNet::scratch(system, prefix)?;
    let dir = net.dir.clone();
    for (name, _) in ENDPOINTS {
        make_ns(&mut net, &format!("{prefix}{name}"))?;
    }
    match system {
        SystemKind::VdeSwitch => deploy_vde(&mut net, prefix, &dir)?,
        _ => deploy_ovs(&mut net, prefix, &dir, system == SystemKind::OvsTso)?,
    }
    for (name, ip) in ENDPOINTS {
        configure(&format!("{prefix}{name}"), Ipv4Addr::from(ip))?;
    }
    Ok(net)
}

pub(crate) fn make_ns(net: &mut PeerNet, name: &str) -> Result<(), String> {
    netns::create(name).map_err(|e| e.to_string())?;
    net.namespaces.push(name.to_string());
    netns::run_in_named(name, || {
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        let mut r = Rtnl::new().map_err(|e| e.to_string())?;
        let lo = r.link_index("lo").map_err(|e| e.to_string())?;
        r.link_set_up(lo).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

/// Starts `program` inside namespace `ns` (None: the caller's) as a child of ours.
fn spawn(ns: Option<&str>, program: &str, args: &[String], stdin: Stdio) -> Result<Child, String> {
    let (program, args) = (program.to_string(), args.to_vec());
    let run = move || {
        Command::new(&program)
            .args(&args)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {program}: {e}"))
    };
    match ns {
        Some(ns) => netns::run_in_named(ns, run).map_err(|e| e.to_string())?,
        None => run(),
    }
}

fn run_cmd(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Waits until `path` exists.
fn wait_for(path: &Path, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "{what} did not come up ({} missing)",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until link `name` exists in namespace `ns`.
pub(crate) fn wait_link(ns: &str, name: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let n = name.to_string();
        let there = netns::run_in_named(ns, move || {
            Rtnl::new()
                .and_then(|mut r| r.link_exists(&n))
                .unwrap_or(false)
        })
        .unwrap_or(false);
        if there {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{name} did not appear in {ns}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn deploy_ovs(net: &mut PeerNet, prefix: &str, dir: &Path, tso: bool) -> Result<(), String> {
    let ovs_ns = format!("{prefix}ovs");
    make_ns(net, &ovs_ns)?;
    let db = dir.join("conf.db");
    let sock = dir.join("db.sock");
    let schema = schema().ok_or("no schema")?;
    run_cmd(
        "ovsdb-tool",
        &["create", &db.to_string_lossy(), &schema.to_string_lossy()],
    )?;
    let p = |x: &str| dir.join(x).to_string_lossy().to_string();
    let server = spawn(
        None,
        "ovsdb-server",
        &[
            db.to_string_lossy().to_string(),
            format!("--remote=punix:{}", sock.display()),
            format!("--unixctl={}", p("ovsdb.ctl")),
            "--no-chdir".into(),
        ],
        Stdio::null(),
    )?;
    net.children.push(server);
    wait_for(&sock, "ovsdb-server")?;
    let db_arg = format!("--db=unix:{}", sock.display());
    run_cmd("ovs-vsctl", &[&db_arg, "--no-wait", "init"])?;
    if tso {
        // Read at start-up: set before ovs-vswitchd runs.
        run_cmd(
            "ovs-vsctl",
            &[
                &db_arg,
                "--no-wait",
                "set",
                "Open_vSwitch",
                ".",
                "other_config:userspace-tso-enable=true",
            ],
        )?;
    }
    let vswitchd = spawn(
        Some(&ovs_ns),
        "ovs-vswitchd",
        &[
            format!("unix:{}", sock.display()),
            format!("--unixctl={}", p("vswitchd.ctl")),
            "--no-chdir".into(),
        ],
        Stdio::null(),
    )?;
    net.children.push(vswitchd);
    wait_for(&dir.join("vswitchd.ctl"), "ovs-vswitchd")?;
    run_cmd(
        "ovs-vsctl",
        &[
            &db_arg,
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
        ],
    )?;
    for (i, (name, _)) in ENDPOINTS.iter().enumerate() {
        let tap = format!("sytap{i}");
        run_cmd(
            "ovs-vsctl",
            &[
                &db_arg,
                "add-port",
                "br0",
                &tap,
                "--",
                "set",
                "interface",
                &tap,
                "type=tap",
            ],
        )?;
        wait_link(&ovs_ns, &tap)?;
        let target = netns::open(&format!("{prefix}{name}")).map_err(|e| e.to_string())?;
        let t = tap.clone();
        netns::run_in_named(&ovs_ns, move || -> Result<(), String> {
            let mut r = Rtnl::new().map_err(|e| e.to_string())?;
            let idx = r.link_index(&t).map_err(|e| e.to_string())?;
            r.link_set_netns(idx, target.as_fd())
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??;
        let ns = format!("{prefix}{name}");
        netns::run_in_named(&ns, move || -> Result<(), String> {
            let mut r = Rtnl::new().map_err(|e| e.to_string())?;
            let idx = r.link_index(&tap).map_err(|e| e.to_string())?;
            r.link_set_name(idx, "eth0").map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn deploy_vde(net: &mut PeerNet, prefix: &str, dir: &Path) -> Result<(), String> {
    let sock = dir.join("switch");
    // In the foreground, vde_switch reads management commands from stdin: give it a
    // pipe that stays open (and quiet) for its lifetime.
    let sw = spawn(
        None,
        "vde_switch",
        &["--sock".into(), sock.to_string_lossy().to_string()],
        Stdio::piped(),
    )?;
    net.children.push(sw);
    wait_for(&sock.join("ctl"), "vde_switch")?;
    for (name, _) in ENDPOINTS {
        let ns = format!("{prefix}{name}");
        let plug = spawn(
            Some(&ns),
            "vde_plug2tap",
            &[
                "--sock".into(),
                sock.to_string_lossy().to_string(),
                "eth0".into(),
            ],
            Stdio::null(),
        )?;
        net.children.push(plug);
        wait_link(&ns, "eth0")?;
    }
    Ok(())
}

/// Gives `eth0` in `ns` its address, MAC (as switchyard and Docker derive it) and state.
fn configure(ns: &str, ip: Ipv4Addr) -> Result<(), String> {
    netns::run_in_named(ns, move || -> Result<(), String> {
        let mut r = Rtnl::new().map_err(|e| e.to_string())?;
        let idx = r.link_index("eth0").map_err(|e| e.to_string())?;
        r.link_set_mac(idx, MacAddr::from_ipv4(ip).0)
            .map_err(|e| e.to_string())?;
        r.addr_add_v4(idx, ip, PREFIX_LEN)
            .map_err(|e| e.to_string())?;
        r.link_set_up(idx).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}
