//! Building and tearing down what a [`Topology`] describes: one named network
//! namespace per endpoint, a TAP device per interface inside it, addresses, a default
//! route via the first network's gateway, `lo` up.
//!
//! Everything created is recorded *before* it is created, in a state file under the
//! run directory (`/run/switchyard/<prefix>/state.json`), so that
//! * a failure half-way through removes exactly what was made (rollback),
//! * a clean exit removes it all and the state file with it,
//! * after a crash, `switchyard down` finds the list and removes it.
//!
//! switchyard never takes over a namespace it did not create: if an endpoint's
//! namespace already exists, setup stops before touching anything.

use super::config::Topology;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_os::port::tap::TapPort;
use switchyard_os::port::Offloads;

/// Where instances keep their control socket and state file by default.
pub const DEFAULT_RUN_ROOT: &str = "/run/switchyard";
/// Frames a TAP queue holds for switchyard to read (the ring between an endpoint's
/// stack and the switch; the kernel's TAP default is 500). A user-space switch is a
/// thread among others: on a busy machine it can wait a scheduler slice (a few ms)
/// before it reads again, and at 500 000 small frames/s that is over a thousand
/// frames. 4096 rides that out; the memory stays bounded by the senders' socket
/// buffers, since a queued frame is an skb charged to its socket.
pub const TAP_TXQUEUELEN: u32 = 4096;

/// Files of one instance (one prefix) under a run root.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path, prefix: &str) -> RunDir {
        RunDir {
            dir: root.join(prefix),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
}

/// What an instance created, as written to its state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub prefix: String,
    /// The process that owns the instance, and its start time (clock ticks after
    /// boot, from /proc/PID/stat), which tells a live owner from a reused PID.
    pub pid: u32,
    pub pid_start: u64,
    pub source: String,
    /// Namespaces created, in order (each listed just before its creation).
    pub namespaces: Vec<String>,
}

/// A failure to build, tear down or clean up an instance.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("switchyard with prefix {prefix:?} is already running (pid {pid}); stop it first")]
    AlreadyRunning { prefix: String, pid: u32 },
    #[error("a previous switchyard with prefix {prefix:?} (pid {pid}) exited without cleaning up; run `switchyard down --prefix {prefix}` first")]
    Stale { prefix: String, pid: u32 },
    #[error("network namespace {0} already exists and was not created by this switchyard; remove it (ip netns del {0}) or use another prefix")]
    NamespaceExists(String),
    #[error("endpoint {endpoint}: {what}: {source}")]
    Endpoint {
        endpoint: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("state file {path} is not readable: {reason}")]
    BadState { path: String, reason: String },
    #[error("no switchyard state for prefix {prefix:?} under {root} (nothing to clean up)")]
    NoState { prefix: String, root: String },
}

fn file_err(path: &Path) -> impl FnOnce(io::Error) -> SetupError + '_ {
    move |source| SetupError::File {
        path: path.display().to_string(),
        source,
    }
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl State {
    /// True if the process that wrote this state still runs.
    pub fn owner_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.pid_start)
    }
}

fn read_state(path: &Path) -> Result<State, SetupError> {
    let text = fs::read_to_string(path).map_err(file_err(path))?;
    serde_json::from_str(&text).map_err(|e| SetupError::BadState {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Writes the state atomically (temp file + rename) so a crash never leaves half a file.
fn write_state(path: &Path, state: &State) -> Result<(), SetupError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(file_err(&tmp))?;
    let text = serde_json::to_string_pretty(state).expect("state serializes");
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(file_err(&tmp))?;
    fs::rename(&tmp, path).map_err(file_err(path))
}

/// One endpoint as set up: its namespace and TAP ports (in interface order).
pub struct EndpointPorts {
    pub netns: String,
    pub taps: Vec<TapPort>,
}

/// A deployed topology: namespaces and TAPs exist until [`Deployment::teardown`] (or drop).
pub struct Deployment {
    run: RunDir,
    state: State,
    ports: Vec<TapPort>,
    active: bool,
}

impl Deployment {
    /// Creates every namespace and TAP of `topo`, recording them under `run_root`.
    /// On failure everything made so far is removed again before the error returns.
    pub fn create(topo: &Topology, run_root: &Path) -> Result<Deployment, SetupError> {
        let run = RunDir::new(run_root, &topo.prefix);
        fs::create_dir_all(run.dir()).map_err(file_err(run.dir()))?;
        let state_path = run.state();
        if state_path.exists() {
            let old = read_state(&state_path)?;
            return Err(if old.owner_alive() {
                SetupError::AlreadyRunning {
                    prefix: topo.prefix.clone(),
                    pid: old.pid,
                }
            } else {
                SetupError::Stale {
                    prefix: topo.prefix.clone(),
                    pid: old.pid,
                }
            });
        }
        // Refuse before creating anything if a namespace name is taken.
        for e in &topo.endpoints {
            if netns::exists(&e.netns) {
                return Err(SetupError::NamespaceExists(e.netns.clone()));
            }
        }
        let pid = std::process::id();
        let state = State {
            version: 1,
            prefix: topo.prefix.clone(),
            pid,
            pid_start: process_start_time(pid).unwrap_or(0),
            source: topo.source.clone(),
            namespaces: Vec::new(),
        };
        // Claim the prefix: create_new fails if a concurrent `up` got there first.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&state_path)
            .map_err(file_err(&state_path))?;
        write_state(&state_path, &state)?;
        let mut inst = Deployment {
            run,
            state,
            ports: Vec::new(),
            active: true,
        };
        match inst.build(topo) {
            Ok(()) => Ok(inst),
            Err(e) => {
                let _ = inst.teardown_inner();
                Err(e)
            }
        }
    }

    fn build(&mut self, topo: &Topology) -> Result<(), SetupError> {
        for ep in topo.endpoints.iter().filter(|e| e.shares.is_none()) {
            // Record first: a crash between these two lines leaves a name in the
            // state file that `down` finds absent, which is harmless.
            self.state.namespaces.push(ep.netns.clone());
            write_state(&self.run.state(), &self.state)?;
            netns::create(&ep.netns).map_err(|e| SetupError::Endpoint {
                endpoint: ep.name.clone(),
                what: format!("create namespace {}", ep.netns),
                source: Box::new(e),
            })?;
            let ifaces: Vec<IfaceSetup> = ep
                .interfaces
                .iter()
                .map(|i| {
                    let net = &topo.networks[i.network];
                    IfaceSetup {
                        queues: topo.workers,
                        offloads: if net.offloads {
                            Offloads::ALL
                        } else {
                            Offloads::NONE
                        },
                        ifname: i.ifname.clone(),
                        ip: i.ip,
                        prefix_len: net.subnet.prefix_len(),
                        mac: i.mac.0,
                        mtu: net.mtu,
                        gateway: net.gateway.map(|g| g.ip),
                    }
                })
                .collect();
            let name = ep.name.clone();
            let taps = netns::run_in_named(&ep.netns, move || configure_namespace(&ifaces))
                .map_err(|e| SetupError::Endpoint {
                    endpoint: name.clone(),
                    what: "enter namespace".into(),
                    source: Box::new(e),
                })?
                .map_err(|(what, source)| SetupError::Endpoint {
                    endpoint: name,
                    what,
                    source,
                })?;
            self.ports.extend(taps);
        }
        // `mode = "container:<other>"`: a second name for the other's namespace.
        for ep in &topo.endpoints {
            let Some(target) = ep.shares else { continue };
            let target = &topo.endpoints[target].netns;
            self.state.namespaces.push(ep.netns.clone());
            write_state(&self.run.state(), &self.state)?;
            netns::alias(target, &ep.netns).map_err(|e| SetupError::Endpoint {
                endpoint: ep.name.clone(),
                what: format!("share namespace {target}"),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// The TAP ports, in port order, for the dataplane to own. Called once.
    pub fn take_ports(&mut self) -> Vec<TapPort> {
        std::mem::take(&mut self.ports)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    /// Removes every namespace the instance created (and with them the TAPs, once
    /// their fds are closed), the control socket and the state file. Returns the
    /// namespaces removed.
    pub fn teardown(mut self) -> Result<Vec<String>, SetupError> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<Vec<String>, SetupError> {
        if !self.active {
            return Ok(Vec::new());
        }
        self.active = false;
        // Close the TAP fds we still hold so the devices go at once.
        self.ports.clear();
        let removed = remove_recorded(&self.state, &self.run)?;
        Ok(removed)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_inner() {
            tracing::error!("cleanup incomplete: {e}");
        }
    }
}

/// Deletes the namespaces listed in `state` (those still present), then the socket,
/// the state file and the instance directory.
fn remove_recorded(state: &State, run: &RunDir) -> Result<Vec<String>, SetupError> {
    let mut removed = Vec::new();
    let mut first_err = None;
    for ns in state.namespaces.iter().rev() {
        match netns::delete(ns) {
            Ok(true) => removed.push(ns.clone()),
            Ok(false) => {}
            Err(e) => {
                first_err.get_or_insert(SetupError::Endpoint {
                    endpoint: ns.clone(),
                    what: "delete namespace".into(),
                    source: Box::new(e),
                });
            }
        }
    }
    if let Some(e) = first_err {
        // Keep the state file so `switchyard down` can try again.
        return Err(e);
    }
    let _ = fs::remove_file(run.socket());
    let _ = fs::remove_file(run.state());
    let _ = fs::remove_dir(run.dir());
    Ok(removed)
}

/// Cleans up after an instance that did not exit cleanly (`switchyard down`).
/// Refuses while the owning process still runs.
pub fn down(prefix: &str, run_root: &Path) -> Result<Vec<String>, SetupError> {
    let run = RunDir::new(run_root, prefix);
    let path = run.state();
    if !path.exists() {
        return Err(SetupError::NoState {
            prefix: prefix.to_string(),
            root: run_root.display().to_string(),
        });
    }
    let state = read_state(&path)?;
    if state.owner_alive() && state.pid != std::process::id() {
        return Err(SetupError::AlreadyRunning {
            prefix: prefix.to_string(),
            pid: state.pid,
        });
    }
    remove_recorded(&state, &run)
}

/// What one interface needs inside its namespace.
struct IfaceSetup {
    /// TAP queues: one per dataplane worker.
    queues: usize,
    /// Offloads to ask for.
    offloads: Offloads,
    ifname: String,
    ip: Ipv4Addr,
    prefix_len: u8,
    mac: [u8; 6],
    mtu: u16,
    gateway: Option<Ipv4Addr>,
}

type StepError = (String, Box<dyn std::error::Error + Send + Sync>);

fn step<T, E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
    r: Result<T, E>,
) -> Result<T, StepError> {
    r.map_err(|e| (what.into(), Box::new(e) as _))
}

/// Runs inside the endpoint's namespace (on a thread that entered it): creates the
/// TAPs and configures them like a container's interfaces.
fn configure_namespace(ifaces: &[IfaceSetup]) -> Result<Vec<TapPort>, StepError> {
    // The networks are IPv4-only, as Docker's are by default; with IPv6 off the
    // endpoint sends no router solicitations or DAD probes to be flooded.
    let _ = fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    let _ = fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    let mut rtnl = step("open netlink", Rtnl::new())?;
    let lo = step("find lo", rtnl.link_index("lo"))?;
    step("set lo up", rtnl.link_set_up(lo))?;
    let mut taps = Vec::with_capacity(ifaces.len());
    let mut first_index = None;
    for i in ifaces {
        let tap = step(
            format!("create TAP {}", i.ifname),
            TapPort::create(&i.ifname, i.queues, i.offloads, i.mtu),
        )?;
        let idx = step(format!("find {}", i.ifname), rtnl.link_index(&i.ifname))?;
        step(
            format!("set MAC of {}", i.ifname),
            rtnl.link_set_mac(idx, i.mac),
        )?;
        step(
            format!("set MTU of {}", i.ifname),
            rtnl.link_set_mtu(idx, u32::from(i.mtu)),
        )?;
        step(
            format!("set txqueuelen of {}", i.ifname),
            rtnl.link_set_txqueuelen(idx, TAP_TXQUEUELEN),
        )?;
        step(
            format!("add {}/{} to {}", i.ip, i.prefix_len, i.ifname),
            rtnl.addr_add_v4(idx, i.ip, i.prefix_len),
        )?;
        step(format!("set {} up", i.ifname), rtnl.link_set_up(idx))?;
        first_index.get_or_insert(idx);
        taps.push(tap);
    }
    // Like a container: the default route goes via the gateway of the first network.
    if let (Some(first), Some(idx)) = (ifaces.first(), first_index) {
        if let Some(gw) = first.gateway {
            step(
                format!("add default route via {gw}"),
                rtnl.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(idx)),
            )?;
        }
    }
    Ok(taps)
}
