//! Building and tearing down what a [`Topology`] describes: one named network
//! namespace per endpoint, a TAP device per interface inside it (one `eth0` for a
//! trunk, with a VLAN device `eth0.N` on it for each of its tagged networks),
//! addresses, a default route via the first network's gateway, `lo` up, and the
//! namespace's resolv.conf when it is on a network that serves DNS
//! ([`super::resolv`]).
//!
//! Everything created is recorded *before* it is created, in a state file under the
//! run directory (`/run/switchyard/<prefix>/state.json`), so that
//! * a failure half-way through removes exactly what was made (rollback),
//! * a clean exit removes it all and the state file with it,
//! * after a crash, `switchyard down` finds the list and removes it.
//!
//! A handed-over endpoint (`handover`) is the exception to "inside": its one TAP is
//! made in switchyard's own namespace, configured no further than its MAC, MTU and
//! queue length, for a container runtime to move into the container's namespace and
//! configure there.
//!
//! switchyard never takes over a namespace it did not create: if an endpoint's
//! namespace already exists, setup stops before touching anything. Nor does it trust
//! a name later: each namespace's identity (nsfs device and inode, and the kernel's
//! namespace cookie) is recorded once it exists, and teardown, rollback and `down`
//! delete a name only while it still carries the instance's prefix and names that
//! very namespace — one another tool created under a recorded name after ours went
//! away is left alone.
//!
//! As root, files are where attacks hide. The run root and the instance directory
//! must be directories owned by the current user that neither group nor others may
//! write (anything else is refused, with the reason); the instance directory is
//! created mode 0700, so the control socket in it is never reachable by others. The
//! state file is written to a temporary opened with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! (a symlink planted there is never followed) and renamed over the real one.

use super::config::{Endpoint, Interface, Steering, Topology};
use super::resolv::{self, EtcNetns, RecordedResolv};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns::{self, Identity};
use switchyard_os::port::tap::{TapPort, TapQueue};
use switchyard_os::port::vlan::VlanPort;
use switchyard_os::port::{Offloads, Port};

/// Where instances keep their control socket and state file by default.
pub const DEFAULT_RUN_ROOT: &str = "/run/switchyard";
/// Frames a TAP queue holds for switchyard to read (the ring between an endpoint's
/// stack and the switch; the kernel's TAP default is 500). A user-space switch is a
/// thread among others: on a busy machine it can wait a scheduler slice (a few ms)
/// before it reads again, and at 500 000 small frames/s that is over a thousand
/// frames. 4096 rides that out; the memory stays bounded by the senders' socket
/// buffers, since a queued frame is an skb charged to its socket.
pub const TAP_TXQUEUELEN: u32 = 4096;

/// Test hook: with this variable set (read as each endpoint is made), a trunk's
/// eth0 is made without its VLAN devices (`eth0.N` and their addresses), so that
/// the switching of a trunk's frames can be tested with frames crafted on eth0 on a
/// kernel without 802.1Q support (`CONFIG_VLAN_8021Q`), which cannot make them.
pub const NO_VLAN_DEVICES_ENV: &str = "SWITCHYARD_TEST_NO_VLAN_DEVICES";

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

    /// The unix socket the metrics endpoint's HTTP server listens on, behind the
    /// relay that owns the TCP port (`control::metrics`).
    pub fn metrics_socket(&self) -> PathBuf {
        self.dir.join("metrics.sock")
    }
}

/// The version of the state file this build writes and reads.
pub const STATE_VERSION: u32 = 2;

/// A namespace an instance made: its name, and its identity once it exists (`None`
/// between recording the name and creating the namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedNs {
    pub name: String,
    #[serde(default)]
    pub identity: Option<Identity>,
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
    /// Namespaces created, in order (each listed just before its creation, its
    /// identity added just after).
    pub namespaces: Vec<RecordedNs>,
    /// The resolv.conf files written for them (`/etc/netns/<name>/resolv.conf`,
    /// see [`super::resolv`]); absent in the files of older builds.
    #[serde(default)]
    pub resolv: Vec<RecordedResolv>,
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
    #[error("run directory {path} refused: {reason}")]
    UnsafeRunDir { path: String, reason: String },
    #[error("prefix refused: {0}")]
    BadPrefix(String),
    #[error("resolv.conf of namespace {netns}: {source}")]
    Resolv {
        netns: String,
        #[source]
        source: resolv::ResolvError,
    },
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

/// True if process `pid` is a zombie (state `Z` in /proc/PID/stat): it has exited
/// and only waits for its parent to collect its status.
pub fn process_is_zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

impl State {
    /// True if the process that wrote this state still runs. A zombie does not: it
    /// has exited (after `kill -9`, say) and only its exit status is left.
    pub fn owner_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.pid_start) && !process_is_zombie(self.pid)
    }
}

/// Refuses a directory that someone else could change under us: it must be a real
/// directory (not a symlink), owned by the current user, and not writable by group
/// or others. Creates it with `mode` if it does not exist.
pub fn secure_dir(path: &Path, mode: u32) -> Result<(), SetupError> {
    let refuse = |reason: String| SetupError::UnsafeRunDir {
        path: path.display().to_string(),
        reason,
    };
    if let Err(e) = fs::DirBuilder::new().mode(mode).create(path) {
        if e.kind() == io::ErrorKind::NotFound {
            // The parents are missing: make them as `mkdir -p` would.
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(file_err(parent))?;
            }
            if let Err(e) = fs::DirBuilder::new().mode(mode).create(path) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(file_err(path)(e));
                }
            }
        } else if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(file_err(path)(e));
        }
    }
    let m = fs::symlink_metadata(path).map_err(file_err(path))?;
    if m.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !m.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(refuse(format!(
            "it is owned by uid {}, not by uid {me} that runs switchyard",
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "mode {:04o} lets {} write in it (chmod go-w it, or use another --run-dir)",
            m.mode() & 0o7777,
            if m.mode() & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            }
        )));
    }
    Ok(())
}

/// Checks the run root and the instance directory under it (creating them: the root
/// 0755, the instance directory 0700).
fn secure_run_dir(run_root: &Path, prefix: &str) -> Result<RunDir, SetupError> {
    super::config::check_prefix(prefix).map_err(SetupError::BadPrefix)?;
    secure_dir(run_root, 0o755)?;
    let run = RunDir::new(run_root, prefix);
    secure_dir(run.dir(), 0o700)?;
    // Made by an older switchyard, it may be 0755: the control socket is bound in
    // it, and only the owner may reach it even before its chmod.
    let m = fs::metadata(run.dir()).map_err(file_err(run.dir()))?;
    if m.mode() & 0o077 != 0 {
        fs::set_permissions(run.dir(), fs::Permissions::from_mode(0o700))
            .map_err(file_err(run.dir()))?;
    }
    Ok(run)
}

fn read_state(path: &Path) -> Result<State, SetupError> {
    use std::io::Read;
    let bad = |reason: String| SetupError::BadState {
        path: path.display().to_string(),
        reason,
    };
    let mut text = String::new();
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(file_err(path))?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| bad(e.to_string()))?
        .get("version")
        .and_then(|v| v.as_u64());
    if version != Some(u64::from(STATE_VERSION)) {
        return Err(bad(format!(
            "version {version:?}, this switchyard reads version {STATE_VERSION}; remove \
             the namespaces it lists by hand (ip netns del NAME) and then the file"
        )));
    }
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// `O_NOFOLLOW`: open fails on a symbolic link instead of following it.
fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Creates `path` for writing, mode 0600, with `O_CREAT|O_EXCL|O_NOFOLLOW`: the file
/// is new and ours, never something a symlink planted at `path` points to.
fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

/// Writes the state atomically (temp file + rename) so a crash never leaves half a
/// file. Whatever sits at the temporary's path (the leftover of a crash, or a
/// symlink someone planted) is unlinked, never followed, and the temporary created
/// anew with `O_EXCL`.
fn write_state(path: &Path, state: &State) -> Result<(), SetupError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = match create_private(&tmp) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tracing::warn!(
                "removing {} left at the state file's temporary path",
                tmp.display()
            );
            fs::remove_file(&tmp).map_err(file_err(&tmp))?;
            create_private(&tmp).map_err(file_err(&tmp))?
        }
        Err(e) => return Err(file_err(&tmp)(e)),
    };
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
        let run = secure_run_dir(run_root, &topo.prefix)?;
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
            version: STATE_VERSION,
            prefix: topo.prefix.clone(),
            pid,
            pid_start: process_start_time(pid).unwrap_or(0),
            source: topo.source.clone(),
            namespaces: Vec::new(),
            resolv: Vec::new(),
        };
        // Claim the prefix: create_new fails if a concurrent `up` got there first.
        create_private(&state_path).map_err(file_err(&state_path))?;
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
            let taps = self.make_endpoint(topo, ep)?;
            self.ports.extend(taps);
        }
        // `mode = "container:<other>"`: a second name for the other's namespace.
        for ep in &topo.endpoints {
            self.make_alias(topo, ep)?;
        }
        for ep in &topo.endpoints {
            self.write_resolv(topo, ep)?;
        }
        Ok(())
    }

    /// Makes one endpoint's namespace — or, for a namespace switchyard did not
    /// create, only its interfaces there — and its TAPs, in interface order.
    fn make_endpoint(
        &mut self,
        topo: &Topology,
        ep: &Endpoint,
    ) -> Result<Vec<TapPort>, SetupError> {
        let ifaces: Vec<IfaceSetup> = ep
            .interfaces
            .iter()
            .map(|i| IfaceSetup::of(topo, ep, i))
            .collect();
        if ep.handover {
            // Here, in switchyard's own namespace: the runtime moves it to `netns`.
            return hand_over(&ifaces).map_err(|(what, source)| SetupError::Endpoint {
                endpoint: ep.name.clone(),
                what,
                source,
            });
        }
        if ep.foreign {
            return in_namespace_at(&ep.name, &ep.netns, move || {
                configure_interfaces(&ifaces, Route::IfNone)
            });
        }
        // Record first: a crash between these two lines leaves a name in the
        // state file that `down` finds absent, which is harmless.
        self.record(&ep.netns)?;
        netns::create(&ep.netns).map_err(|e| SetupError::Endpoint {
            endpoint: ep.name.clone(),
            what: format!("create namespace {}", ep.netns),
            source: Box::new(e),
        })?;
        self.confirm(&ep.name, &ep.netns)?;
        in_named_namespace(&ep.name, &ep.netns, move || configure_namespace(&ifaces))
    }

    /// `mode = "container:<other>"`: records and makes the second name.
    fn make_alias(&mut self, topo: &Topology, ep: &Endpoint) -> Result<(), SetupError> {
        let Some(target) = ep.shares else {
            return Ok(());
        };
        let target = &topo.endpoints[target].netns;
        self.record(&ep.netns)?;
        netns::alias(target, &ep.netns).map_err(|e| SetupError::Endpoint {
            endpoint: ep.name.clone(),
            what: format!("share namespace {target}"),
            source: Box::new(e),
        })?;
        self.confirm(&ep.name, &ep.netns)
    }

    /// Adds endpoint `ep` of `topo` while the instance runs: its namespace (unless it
    /// is someone else's) and its TAPs, returned in interface order. A namespace name
    /// that is taken is refused before anything is made; on any failure, what was
    /// made is removed again.
    pub fn add_endpoint(
        &mut self,
        topo: &Topology,
        ep: &Endpoint,
    ) -> Result<Vec<TapPort>, SetupError> {
        if ep.shares.is_some() {
            self.make_alias(topo, ep)?;
            if let Err(e) = self.write_resolv(topo, ep) {
                let _ = self.remove_endpoint(ep);
                return Err(e);
            }
            return Ok(Vec::new());
        }
        if !ep.foreign && netns::exists(&ep.netns) {
            return Err(SetupError::NamespaceExists(ep.netns.clone()));
        }
        let made = self
            .make_endpoint(topo, ep)
            .and_then(|taps| self.write_resolv(topo, ep).map(|()| taps));
        if made.is_err() && !ep.foreign {
            let _ = self.remove_endpoint(ep);
        }
        made
    }

    /// Adds interfaces to an endpoint that exists (`network connect`): TAPs made in
    /// its namespace, in the order given. A default route it has stays as it is; one
    /// without (all its networks were disconnected) gets one via the first new one.
    pub fn add_interfaces(
        &mut self,
        topo: &Topology,
        ep: &Endpoint,
        ifaces: &[&Interface],
    ) -> Result<Vec<TapPort>, SetupError> {
        let setups: Vec<IfaceSetup> = ifaces.iter().map(|i| IfaceSetup::of(topo, ep, i)).collect();
        let run = move || configure_interfaces(&setups, Route::IfNone);
        if ep.foreign {
            in_namespace_at(&ep.name, &ep.netns, run)
        } else {
            in_named_namespace(&ep.name, &ep.netns, run)
        }
    }

    /// Removes what [`Deployment::add_endpoint`] (or the start) made for `ep`: its
    /// namespace, if this instance created it, and its record. Its TAPs go when the
    /// dataplane closes their queues, which must have happened before: a namespace
    /// whose TAP is still open lives on.
    pub fn remove_endpoint(&mut self, ep: &Endpoint) -> Result<(), SetupError> {
        if ep.foreign {
            return Ok(());
        }
        let file = self.remove_resolv(&ep.netns);
        self.remove_namespace(&ep.netns)?;
        file
    }

    /// Makes the resolv.conf of `ep` what `topo` says ([`resolv::contents`]): written
    /// if it has none yet, replaced if it changed, removed if it should have none.
    pub fn write_resolv(&mut self, topo: &Topology, ep: &Endpoint) -> Result<(), SetupError> {
        let want = resolv::contents(topo, ep);
        let have = self.state.resolv.iter().position(|r| r.netns == ep.netns);
        let fail = |source| SetupError::Resolv {
            netns: ep.netns.clone(),
            source,
        };
        match (want, have) {
            (None, None) => Ok(()),
            (None, Some(_)) => self.remove_resolv(&ep.netns),
            (Some(text), Some(at)) => {
                if self.state.resolv[at].text.as_ref() == Some(&text) {
                    return Ok(());
                }
                let Some(old) = self.state.resolv[at].file else {
                    return Ok(());
                };
                let id = EtcNetns::default()
                    .replace(&ep.netns, old, &text)
                    .map_err(fail)?;
                self.state.resolv[at].file = Some(id);
                self.state.resolv[at].text = Some(text);
                write_state(&self.run.state(), &self.state)
            }
            (Some(text), None) => {
                let etc = EtcNetns::default();
                let dir = etc.make_dir(&ep.netns).map_err(fail)?;
                // Listed before the file exists: a crash in between leaves a record
                // without an identity, which `down` reports rather than trusts.
                self.state.resolv.push(RecordedResolv {
                    netns: ep.netns.clone(),
                    dir,
                    file: None,
                    text: None,
                });
                write_state(&self.run.state(), &self.state)?;
                let id = match etc.create(&ep.netns, &text) {
                    Ok(id) => id,
                    Err(e) => {
                        // Nothing was written: the record goes, and the directory
                        // with it if it was made for the file (and is empty).
                        if let Some(rec) = self.state.resolv.pop() {
                            let _ = etc.remove(&rec);
                        }
                        let _ = write_state(&self.run.state(), &self.state);
                        return Err(fail(e));
                    }
                };
                if let Some(last) = self.state.resolv.last_mut() {
                    last.file = Some(id);
                    last.text = Some(text);
                }
                write_state(&self.run.state(), &self.state)
            }
        }
    }

    /// Brings every resolv.conf in line with `topo` after a change: those of
    /// endpoints whose networks changed are rewritten, those of endpoints gone are
    /// removed. Tries them all; returns the first failure.
    pub fn sync_resolv(&mut self, topo: &Topology) -> Result<(), SetupError> {
        let mut first = None;
        let gone: Vec<String> = self
            .state
            .resolv
            .iter()
            .filter(|r| {
                !topo
                    .endpoints
                    .iter()
                    .any(|e| e.netns == r.netns && !e.foreign)
            })
            .map(|r| r.netns.clone())
            .collect();
        for netns in gone {
            if let Err(e) = self.remove_resolv(&netns) {
                first.get_or_insert(e);
            }
        }
        for ep in &topo.endpoints {
            if let Err(e) = self.write_resolv(topo, ep) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Removes the resolv.conf recorded for namespace `netns`, if any, and its record.
    fn remove_resolv(&mut self, netns: &str) -> Result<(), SetupError> {
        let Some(at) = self.state.resolv.iter().position(|r| r.netns == netns) else {
            return Ok(());
        };
        remove_resolv_file(&EtcNetns::default(), &self.state.resolv[at]).map_err(|source| {
            SetupError::Resolv {
                netns: netns.to_string(),
                source,
            }
        })?;
        self.state.resolv.remove(at);
        write_state(&self.run.state(), &self.state)
    }

    /// Deletes the recorded namespace `name` (if it is still the one created) and
    /// drops its record.
    fn remove_namespace(&mut self, name: &str) -> Result<(), SetupError> {
        let Some(at) = self.state.namespaces.iter().position(|r| r.name == name) else {
            return Ok(());
        };
        if let Some(id) = &self.state.namespaces[at].identity {
            match netns::delete_if(name, id) {
                Ok(_) => {}
                Err(e) => {
                    return Err(SetupError::Endpoint {
                        endpoint: name.to_string(),
                        what: "delete namespace".into(),
                        source: Box::new(e),
                    })
                }
            }
        }
        self.state.namespaces.remove(at);
        write_state(&self.run.state(), &self.state)
    }

    /// Records `name` before its namespace is created.
    fn record(&mut self, name: &str) -> Result<(), SetupError> {
        self.state.namespaces.push(RecordedNs {
            name: name.to_string(),
            identity: None,
        });
        write_state(&self.run.state(), &self.state)
    }

    /// Records the identity of the namespace just created as `name` (the last one
    /// recorded).
    fn confirm(&mut self, endpoint: &str, name: &str) -> Result<(), SetupError> {
        let id = netns::identity(name)
            .map_err(|e| SetupError::Endpoint {
                endpoint: endpoint.to_string(),
                what: format!("identify namespace {name}"),
                source: Box::new(e),
            })?
            .ok_or_else(|| SetupError::Endpoint {
                endpoint: endpoint.to_string(),
                what: format!("identify namespace {name}"),
                source: "it vanished right after its creation".into(),
            })?;
        if let Some(last) = self.state.namespaces.last_mut() {
            last.identity = Some(id);
        }
        write_state(&self.run.state(), &self.state)
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

/// Deletes the namespaces listed in `state` that still carry the instance's prefix
/// and are still the namespaces created (same identity), then the socket, the state
/// file and the instance directory. A recorded name that now names another
/// namespace is left alone (and logged).
fn remove_recorded(state: &State, run: &RunDir) -> Result<Vec<String>, SetupError> {
    let mut removed = Vec::new();
    let mut first_err = None;
    // The resolv.conf files were written after their namespaces: they go first.
    let etc = EtcNetns::default();
    for rec in state.resolv.iter().rev() {
        if !rec.netns.starts_with(&state.prefix) || rec.netns.len() == state.prefix.len() {
            tracing::warn!(
                "state lists a resolv.conf for {:?}, which does not carry the prefix {:?}: left alone",
                rec.netns,
                state.prefix
            );
            continue;
        }
        if let Err(source) = remove_resolv_file(&etc, rec) {
            first_err.get_or_insert(SetupError::Resolv {
                netns: rec.netns.clone(),
                source,
            });
        }
    }
    for ns in state.namespaces.iter().rev() {
        let name = &ns.name;
        if !name.starts_with(&state.prefix) || name.len() == state.prefix.len() {
            tracing::warn!(
                "state lists namespace {name:?}, which does not carry the prefix {:?}: left alone",
                state.prefix
            );
            continue;
        }
        let Some(id) = &ns.identity else {
            // Recorded just before creation; created or not, its identity was never
            // seen, so whatever has this name now cannot be shown to be ours.
            if netns::exists(name) {
                tracing::warn!(
                    "namespace {name} was recorded but never confirmed as created by this \
                     instance: left alone (ip netns del {name} if it is a leftover)"
                );
            }
            continue;
        };
        match netns::delete_if(name, id) {
            Ok(netns::Deleted::Removed) => removed.push(name.clone()),
            Ok(netns::Deleted::Absent) => {}
            Ok(netns::Deleted::NotOurs) => tracing::warn!(
                "namespace {name} is no longer the one this instance created (another was \
                 made under its name): left alone"
            ),
            Err(e) => {
                first_err.get_or_insert(SetupError::Endpoint {
                    endpoint: name.clone(),
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
    let _ = fs::remove_file(run.metrics_socket());
    let _ = fs::remove_file(run.state());
    let _ = fs::remove_dir(run.dir());
    Ok(removed)
}

/// Removes one recorded resolv.conf (and its directory if switchyard made it),
/// saying so when something else now stands where it was.
fn remove_resolv_file(etc: &EtcNetns, rec: &RecordedResolv) -> Result<(), resolv::ResolvError> {
    let path = etc.path(&rec.netns);
    // Its directory, if made, is still removed below when empty.
    if rec.file.is_none() && fs::symlink_metadata(&path).is_ok() {
        tracing::warn!(
            "{} was recorded but never confirmed as written by this instance: left alone \
             (remove it if it is a leftover)",
            path.display()
        );
    }
    if etc.remove(rec)? == resolv::Removed::NotOurs {
        tracing::warn!(
            "{} is no longer the file this instance wrote: left alone",
            path.display()
        );
    }
    Ok(())
}

/// Cleans up after an instance that did not exit cleanly (`switchyard down`).
/// Refuses while the owning process still runs.
pub fn down(prefix: &str, run_root: &Path) -> Result<Vec<String>, SetupError> {
    super::config::check_prefix(prefix).map_err(SetupError::BadPrefix)?;
    let run = RunDir::new(run_root, prefix);
    let path = run.state();
    if fs::symlink_metadata(&path).is_err() {
        return Err(SetupError::NoState {
            prefix: prefix.to_string(),
            root: run_root.display().to_string(),
        });
    }
    // The state names namespaces to delete: only trusted from a directory nobody
    // else can write.
    secure_dir(run_root, 0o755)?;
    secure_dir(run.dir(), 0o700)?;
    let state = read_state(&path)?;
    if state.prefix != prefix {
        return Err(SetupError::BadState {
            path: path.display().to_string(),
            reason: format!("it belongs to prefix {:?}, not {prefix:?}", state.prefix),
        });
    }
    if state.owner_alive() && state.pid != std::process::id() {
        return Err(SetupError::AlreadyRunning {
            prefix: prefix.to_string(),
            pid: state.pid,
        });
    }
    remove_recorded(&state, &run)
}

/// Runs `f` inside the namespace named `name` (of endpoint `endpoint`) and maps its
/// failures to [`SetupError`]s naming the endpoint.
fn in_named_namespace<F>(endpoint: &str, name: &str, f: F) -> Result<Vec<TapPort>, SetupError>
where
    F: FnOnce() -> Result<Vec<TapPort>, StepError> + Send,
{
    let fd = netns::open(name).map_err(|e| SetupError::Endpoint {
        endpoint: endpoint.to_string(),
        what: "enter namespace".into(),
        source: Box::new(e),
    })?;
    in_namespace(endpoint, fd, f)
}

/// Runs `f` inside the namespace at `path`, one switchyard did not create. The path
/// must be a network namespace (setns refuses anything else).
fn in_namespace_at<F>(endpoint: &str, path: &str, f: F) -> Result<Vec<TapPort>, SetupError>
where
    F: FnOnce() -> Result<Vec<TapPort>, StepError> + Send,
{
    let fd = netns::open_path(Path::new(path)).map_err(|e| SetupError::Endpoint {
        endpoint: endpoint.to_string(),
        what: format!("open namespace {path}"),
        source: Box::new(e),
    })?;
    in_namespace(endpoint, fd, f)
}

fn in_namespace<F>(
    endpoint: &str,
    fd: std::os::fd::OwnedFd,
    f: F,
) -> Result<Vec<TapPort>, SetupError>
where
    F: FnOnce() -> Result<Vec<TapPort>, StepError> + Send,
{
    netns::run_in(&fd, f)
        .map_err(|e| SetupError::Endpoint {
            endpoint: endpoint.to_string(),
            what: "enter namespace".into(),
            source: Box::new(e),
        })?
        .map_err(|(what, source)| SetupError::Endpoint {
            endpoint: endpoint.to_string(),
            what,
            source,
        })
}

/// What one interface needs inside its namespace.
struct IfaceSetup {
    /// TAP queues: one per dataplane worker.
    queues: usize,
    /// How the TAP's frames are spread over its queues.
    steering: Steering,
    /// Offloads to ask for.
    offloads: Offloads,
    ifname: String,
    /// Make the TAP `device` (every interface but a trunk's further VLANs).
    tap: bool,
    /// The TAP the interface's frames cross: its own name, or a trunk's `eth0`.
    device: String,
    /// The MTU of `device`: on a trunk, the largest of its networks'.
    device_mtu: u16,
    /// A trunk's VLAN: `ifname` is a VLAN device on `device` with this id.
    vlan: Option<u16>,
    /// Make that VLAN device (unless the test hook [`NO_VLAN_DEVICES_ENV`] says not).
    vlan_device: bool,
    ip: Ipv4Addr,
    prefix_len: u8,
    mac: [u8; 6],
    mtu: u16,
    gateway: Option<Ipv4Addr>,
}

impl IfaceSetup {
    fn of(topo: &Topology, ep: &Endpoint, i: &Interface) -> IfaceSetup {
        let net = &topo.networks[i.network];
        // A trunk's eth0 carries all its networks: big enough for the biggest, and
        // with offloads only if every one of them has them.
        let trunk = || ep.interfaces.iter().filter(|x| x.trunk.is_some());
        let (device, device_mtu, offloads) = match i.trunk {
            None => (i.ifname.clone(), net.mtu, net.offloads),
            Some(_) => (
                "eth0".to_string(),
                trunk()
                    .map(|x| topo.networks[x.network].mtu)
                    .max()
                    .unwrap_or(net.mtu),
                trunk().all(|x| topo.networks[x.network].offloads),
            ),
        };
        IfaceSetup {
            queues: topo.workers,
            steering: topo.steering,
            offloads: if offloads {
                Offloads::ALL
            } else {
                Offloads::NONE
            },
            ifname: i.ifname.clone(),
            tap: i.trunk.is_none_or(|t| t.carrier),
            device,
            device_mtu,
            vlan: i.trunk.and_then(|t| t.vlan),
            vlan_device: std::env::var_os(NO_VLAN_DEVICES_ENV).is_none(),
            ip: i.ip,
            prefix_len: net.subnet.prefix_len(),
            mac: i.mac.0,
            mtu: net.mtu,
            gateway: net.gateway.map(|g| g.ip),
        }
    }
}

/// A port's queues, one per dataplane worker.
pub type Queues = Vec<Box<dyn Port>>;

/// The dataplane's ports for the interfaces of `ep`, in order, from the TAPs made
/// for it (`taps`, which gives one per interface, or one per trunk): each
/// interface with its queues, one per worker. A trunk's interfaces share its TAP:
/// the first reads it, for all of them, and each VLAN's port tags what it writes
/// to it ([`VlanPort`]).
pub fn endpoint_ports<'a>(
    ep: &'a Endpoint,
    taps: &mut impl Iterator<Item = TapPort>,
) -> io::Result<Vec<(&'a Interface, Queues)>> {
    let mut ports = Vec::with_capacity(ep.interfaces.len());
    // The trunk's queues, a handle each for its further VLANs to write through.
    let mut trunk: Vec<TapQueue> = Vec::new();
    for i in &ep.interfaces {
        let queues: Vec<Box<dyn Port>> = match i.trunk {
            None => {
                let tap = taps.next().ok_or_else(missing_tap)?;
                tap.into_queues()
                    .into_iter()
                    .map(|q| Box::new(q) as Box<dyn Port>)
                    .collect()
            }
            Some(role) if role.carrier => {
                let tap = taps.next().ok_or_else(missing_tap)?;
                let mut queues = Vec::new();
                for q in tap.into_queues() {
                    trunk.push(q.try_clone()?);
                    queues.push(match role.vlan {
                        Some(v) => Box::new(VlanPort::carrier(Box::new(q), v)) as Box<dyn Port>,
                        None => Box::new(q),
                    });
                }
                queues
            }
            Some(role) => {
                let vid = role
                    .vlan
                    .ok_or_else(|| io::Error::other("a trunk has one native network"))?;
                let mut queues = Vec::with_capacity(trunk.len());
                for q in &trunk {
                    queues
                        .push(Box::new(VlanPort::rider(Box::new(q.try_clone()?), vid))
                            as Box<dyn Port>);
                }
                queues
            }
        };
        ports.push((i, queues));
    }
    Ok(ports)
}

/// `EOPNOTSUPP`: what the kernel answers for a link kind it does not have.
fn libc_eopnotsupp() -> i32 {
    nix::errno::Errno::EOPNOTSUPP as i32
}

fn missing_tap() -> io::Error {
    io::Error::other("fewer TAPs made than the endpoint's interfaces need")
}

/// Whether the interfaces made set the namespace's default route via the first
/// one's gateway.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Always (a namespace switchyard made: nothing else routes there).
    Always,
    /// Unless the namespace has one (someone else's, where a runtime may have set
    /// it; or an endpoint connected to one more network).
    IfNone,
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
    configure_interfaces(ifaces, Route::Always)
}

/// Creates the TAP of `i` (its `device`) in the calling thread's namespace with its
/// queues, steering, MAC, MTU and txqueuelen, still down and without an address;
/// returns it with its interface index. A failure drops the TAP, and the device
/// goes with its last file descriptor.
fn make_tap(rtnl: &mut Rtnl, i: &IfaceSetup) -> Result<(TapPort, u32), StepError> {
    let dev = &i.device;
    let mut tap = step(
        format!("create TAP {dev}"),
        TapPort::create(dev, i.queues, i.offloads, i.device_mtu),
    )?;
    if i.steering == Steering::Cpu {
        // Without it the kernel's flow hash spreads the frames: slower, not wrong.
        if let Err(e) = tap.steer_by_cpu() {
            tracing::warn!("{e}: {dev} keeps the kernel's flow hash");
        }
    }
    let idx = step(format!("find {dev}"), rtnl.link_index(dev))?;
    step(format!("set MAC of {dev}"), rtnl.link_set_mac(idx, i.mac))?;
    step(
        format!("set MTU of {dev}"),
        rtnl.link_set_mtu(idx, u32::from(i.device_mtu)),
    )?;
    step(
        format!("set txqueuelen of {dev}"),
        rtnl.link_set_txqueuelen(idx, TAP_TXQUEUELEN),
    )?;
    Ok((tap, idx))
}

/// A handed-over endpoint's one TAP, made in the calling thread's namespace —
/// switchyard's own — for a container runtime to move into the container's
/// namespace, rename and configure (address, routes, up), as Docker does with the
/// device a network driver's `Join` names. Its queues keep carrying the frames
/// after the move: a TAP's file descriptors follow the device, not the namespace.
///
/// A device of that name there already is refused, not adopted: it is someone
/// else's (and the first queue's `TUNSETIFF` is exclusive besides, should one
/// appear in between).
fn hand_over(ifaces: &[IfaceSetup]) -> Result<Vec<TapPort>, StepError> {
    let [i] = ifaces else {
        return Err((
            "hand over its interface".into(),
            "a handed-over endpoint has exactly one interface".into(),
        ));
    };
    let dev = &i.device;
    let mut rtnl = step("open netlink", Rtnl::new())?;
    if step(format!("look for {dev}"), rtnl.link_exists(dev))? {
        return Err((
            format!("create TAP {dev}"),
            format!(
                "a device named {dev} already exists in switchyard's own namespace; \
                 give the handed-over interface another ifname"
            )
            .into(),
        ));
    }
    let (tap, _) = make_tap(&mut rtnl, i)?;
    Ok(vec![tap])
}

/// Runs inside a namespace (on a thread that entered it): creates the TAPs of
/// `ifaces` and configures them like a container's interfaces, with the default
/// route as `route` says.
fn configure_interfaces(ifaces: &[IfaceSetup], route: Route) -> Result<Vec<TapPort>, StepError> {
    let mut rtnl = step("open netlink", Rtnl::new())?;
    let mut taps = Vec::with_capacity(ifaces.len());
    let mut first_index = None;
    for i in ifaces {
        if i.tap {
            let dev = &i.device;
            let (tap, idx) = make_tap(&mut rtnl, i)?;
            if i.vlan.is_none() {
                step(
                    format!("add {}/{} to {dev}", i.ip, i.prefix_len),
                    rtnl.addr_add_v4(idx, i.ip, i.prefix_len),
                )?;
                first_index.get_or_insert(idx);
            }
            step(format!("set {dev} up"), rtnl.link_set_up(idx))?;
            taps.push(tap);
        }
        if let Some(vid) = i.vlan.filter(|_| i.vlan_device) {
            // A trunk's VLAN: a VLAN device on the trunk's TAP, as a router's
            // eth0.N; it takes the TAP's MAC.
            let parent = step(format!("find {}", i.device), rtnl.link_index(&i.device))?;
            let made = rtnl.link_add_vlan(&i.ifname, parent, vid);
            let hint = match &made {
                Err(e) if e.errno() == Some(libc_eopnotsupp()) => {
                    " (the kernel has no 802.1Q VLAN support: CONFIG_VLAN_8021Q, module 8021q)"
                }
                _ => "",
            };
            step(
                format!("add VLAN {} (id {vid}) on {}{hint}", i.ifname, i.device),
                made,
            )?;
            let idx = step(format!("find {}", i.ifname), rtnl.link_index(&i.ifname))?;
            step(
                format!("set MTU of {}", i.ifname),
                rtnl.link_set_mtu(idx, u32::from(i.mtu)),
            )?;
            step(
                format!("add {}/{} to {}", i.ip, i.prefix_len, i.ifname),
                rtnl.addr_add_v4(idx, i.ip, i.prefix_len),
            )?;
            step(format!("set {} up", i.ifname), rtnl.link_set_up(idx))?;
            first_index.get_or_insert(idx);
        }
    }
    // Like a container: the default route goes via the gateway of the first network.
    if let (Some(first), Some(idx)) = (ifaces.first(), first_index) {
        if let Some(gw) = first.gateway {
            match rtnl.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(idx)) {
                Err(e) if route == Route::IfNone && e.is_exists() => {}
                r => step(format!("add default route via {gw}"), r)?,
            }
        }
    }
    Ok(taps)
}
