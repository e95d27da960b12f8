//! Real podman (4.3, Debian 12) in a scratch directory the test owns, with CNI networks
//! the test writes: for tests that prove what a container runtime does with a
//! switchyard network, through the same calls a user's podman makes.
//!
//! ```no_run
//! use switchyard_testkit::podman::Podman;
//!
//! let Some(pm) = Podman::require("cni") else { return };
//! let net = pm.add_conflist("lo", serde_json::json!([{ "type": "loopback" }]));
//! let out = pm.run_container(Some(&net), &[], "echo hello");
//! assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
//! // dropping `pm` removes the containers, their mounts and cgroups, and the directory
//! ```
//!
//! Everything podman keeps goes under one private directory: its configuration
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`, `HOME` and `XDG_CONFIG_HOME` all point
//! there, so neither `/etc/containers` nor `~/.config/containers` changes what it does
//! or gets written), its storage (`--root`, `--runroot`), runc's state, its locks
//! (`lock_type = "file"` instead of the machine-wide `/dev/shm/libpod_lock`), its event
//! log, the CNI network configs, the plugin binaries and the containers' root
//! filesystem (busybox-static and its applet links). What podman still puts outside,
//! and how the harness removes it:
//!
//! * `/var/lib/cni/results/<network>-<container id>-<ifname>`: libcni's cache of an ADD
//!   result, which podman cannot move. Podman removes it at DEL; the harness then
//!   removes whatever is left for the networks it created, and nothing else.
//! * `/run/netns/netns-<uuid>`: a running container's network namespace. The harness
//!   asks podman for the namespaces of its containers before removing them, and
//!   unmounts and removes any of those podman left.
//! * cgroups: every container gets `--cgroup-parent /<prefix>podman` (podman's default
//!   parent, `libpod_parent`, is shared by all of the machine's containers), so the
//!   harness finds the processes it started there, and removes the directories podman
//!   leaves (conmon's cgroup stays after its container).
//!
//! The machine needs `runc` (crun, podman's default, refuses cgroups in hybrid mode),
//! explicit ulimits (root here may not raise nofile to podman's default 1048576) and
//! the cgroupfs manager (no systemd): /work/shared/podman-cni.md has the details.

use crate::fixtures::{require_root, unique_prefix};
use std::collections::HashSet;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where libcni caches ADD results; no podman setting moves it.
pub const CNI_CACHE: &str = "/var/lib/cni/results";

/// Where the Debian package containernetworking-plugins installs the standard plugins.
pub const CNI_PLUGINS: &str = "/usr/lib/cni";

/// The longest a podman command may take before the harness ends it (by its PID) and
/// reports it as hung. Every command here takes well under a second on an idle machine.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why podman cannot run here: a missing tool, named with the Debian package that
/// brings it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Unavailable {}

/// A scratch podman: its own directory, configuration, storage and networks. Dropping
/// it (during a panic's unwinding too) removes every container it ran and every trace
/// they left; see the module's documentation.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    prefix: String,
    podman: PathBuf,
    /// Full names of the networks this harness wrote, for the CNI cache cleanup.
    networks: Mutex<Vec<String>>,
    /// Network namespaces of the containers started in the background.
    sandboxes: Mutex<HashSet<PathBuf>>,
}

impl Podman {
    /// Makes the scratch environment under a new private directory in the system's
    /// temporary directory, named `<dir_prefix>-<unique prefix>`. Fails with
    /// [`Unavailable`] when podman, runc, busybox-static or the standard CNI plugins are
    /// missing, or when not running as root (the harness runs rootful podman).
    pub fn setup(dir_prefix: &str) -> Result<Podman, Unavailable> {
        let podman = find_tools()?;
        let (dir, prefix) = private_dir(dir_prefix);
        // From here on a panic drops `pm`, which removes the directory.
        let pm = Podman {
            dir,
            prefix,
            podman,
            networks: Mutex::new(Vec::new()),
            sandboxes: Mutex::new(HashSet::new()),
        };
        pm.write_config();
        pm.build_rootfs();
        Ok(pm)
    }

    /// [`Podman::setup`] under the tests' conventions: `None` (skip) without root when
    /// `SWITCHYARD_SKIP_ROOT_TESTS=1`, and a failure naming the missing package when
    /// podman cannot run here (`.ci/run` installs the packages, so CI always has them).
    pub fn require(dir_prefix: &str) -> Option<Podman> {
        if !require_root() {
            return None;
        }
        match Podman::setup(dir_prefix) {
            Ok(pm) => Some(pm),
            Err(u) => panic!("podman cannot run here: {u} (.ci/run installs it)"),
        }
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unique prefix of this run: network and container names start with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cgroup (the same path in every hierarchy) under which all of this harness's
    /// containers and their conmon run.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}podman", self.prefix)
    }

    /// The containers' root filesystem: busybox-static and its applet links.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The directory podman looks in first for CNI plugins.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// The directory podman reads network configs (`*.conflist`) from.
    pub fn network_config_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }

    /// Copies a CNI plugin binary into the plugin directory as `name`, the `type` a
    /// conflist names it by.
    pub fn install_plugin(&self, name: &str, binary: &Path) {
        assert!(
            !name.is_empty() && !name.contains('/') && name != "runc-wrapper",
            "{name:?} cannot name a plugin"
        );
        let to = self.plugin_dir().join(name);
        std::fs::copy(binary, &to)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", binary.display(), to.display()));
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes the network `<prefix><network>` as a CNI conflist (cniVersion 0.4.0, as
    /// podman 4.3 writes its own) with the plugin configs `plugins` (a JSON array), and
    /// returns its full name, the one `--network` takes.
    pub fn add_conflist(&self, network: &str, plugins: serde_json::Value) -> String {
        assert!(
            plugins.is_array(),
            "the plugins of a conflist are an array: {plugins}"
        );
        let name = format!("{}{network}", self.prefix);
        // CNI's rule for network names (libcni's ValidateNetworkName).
        assert!(
            !network.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
            "{name:?} is not a valid CNI network name"
        );
        let conflist = conflist(&name, plugins);
        // Recorded before the file exists, so a panic later still cleans its cache.
        self.networks.lock().unwrap().push(name.clone());
        let path = self.network_config_dir().join(format!("{name}.conflist"));
        std::fs::write(&path, serde_json::to_vec_pretty(&conflist).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        name
    }

    /// The networks this harness wrote (full names).
    pub fn networks(&self) -> Vec<String> {
        // A panic elsewhere while the list was held still leaves the list right.
        self.networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `podman --root <dir>/storage --runroot <dir>/run`, in an environment holding
    /// only `PATH` and the variables that point podman at the scratch directory.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.podman);
        c.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            c.env("PATH", path);
        }
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("HOME", &self.dir)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    /// Runs `podman ARGS` and returns what it printed; panics if it hangs for
    /// [`PODMAN_TIMEOUT`].
    pub fn run(&self, args: &[&str]) -> Output {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_run(&self, args: &[&str]) -> Result<Output, String> {
        let mut c = self.command();
        c.args(args);
        output_within(c, PODMAN_TIMEOUT).map_err(|e| format!("podman {}: {e}", args.join(" ")))
    }

    /// `podman run --rm [--network N] EXTRA --rootfs <rootfs> /bin/sh -c SCRIPT`.
    /// Without a network the container has none but its loopback (`netns = "none"` in
    /// the scratch configuration: podman's default would be a bridge on the host).
    pub fn run_container(&self, network: Option<&str>, extra: &[&str], script: &str) -> Output {
        let parent = self.cgroup_parent();
        let rootfs = self.rootfs_arg();
        let mut args = vec!["run", "--rm", "--cgroup-parent", &parent];
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, "/bin/sh", "-c", script]);
        self.run(&args)
    }

    /// Starts a container named `<prefix><name>` in the background, running a shell
    /// that waits until it is stopped (it exits at once on SIGTERM, so `stop` does not
    /// wait for podman's timeout). Returns the container's full name, or podman's
    /// output if it did not start.
    pub fn run_detached(
        &self,
        name: &str,
        network: Option<&str>,
        extra: &[&str],
    ) -> Result<String, Output> {
        let full = format!("{}{name}", self.prefix);
        let parent = self.cgroup_parent();
        let rootfs = self.rootfs_arg();
        let mut args = vec!["run", "-d", "--name", &full, "--cgroup-parent", &parent];
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        args.extend(extra);
        // A shell as PID 1 ignores SIGTERM unless it traps it.
        args.extend([
            "--rootfs",
            &rootfs,
            "/bin/sh",
            "-c",
            "trap 'exit 0' TERM; sleep 2147483647 & wait",
        ]);
        let out = self.run(&args);
        if !out.status.success() {
            return Err(out);
        }
        // Kept for the cleanup, in case podman cannot say later.
        let netns = self.inspect(&full, "{{.NetworkSettings.SandboxKey}}");
        if is_podman_netns(&netns) {
            self.sandboxes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(PathBuf::from(netns));
        }
        Ok(full)
    }

    /// `podman exec CONTAINER /bin/sh -c SCRIPT`.
    pub fn exec(&self, container: &str, script: &str) -> Output {
        self.run(&["exec", container, "/bin/sh", "-c", script])
    }

    /// `podman stop CONTAINER`.
    pub fn stop(&self, container: &str) -> Output {
        self.run(&["stop", container])
    }

    /// `podman rm -f CONTAINER`.
    pub fn rm_force(&self, container: &str) -> Output {
        self.run(&["rm", "-f", container])
    }

    /// `podman inspect --format FORMAT CONTAINER`, trimmed; panics if podman fails.
    pub fn inspect(&self, container: &str, format: &str) -> String {
        let out = self.run(&["inspect", "--format", format, container]);
        assert!(
            out.status.success(),
            "podman inspect {container}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The cgroup directories of this harness's containers, one a hierarchy, that exist.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let parent = self.cgroup_parent();
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(parent.trim_start_matches('/')))
            .filter(|p| p.is_dir())
            .collect()
    }

    fn rootfs_arg(&self) -> String {
        self.rootfs()
            .to_str()
            .expect("the scratch directory's path is UTF-8")
            .to_string()
    }

    fn write_config(&self) {
        for sub in [
            "bin",
            "net.d",
            "rootfs/bin",
            "tmp",
            "runc-state",
            "storage",
            "run",
            "config",
        ] {
            std::fs::create_dir_all(self.dir.join(sub)).unwrap();
        }
        let d = |sub: &str| {
            self.dir
                .join(sub)
                .into_os_string()
                .into_string()
                .expect("the scratch directory's path is UTF-8")
        };
        let runc = find_in_path("runc").expect("checked by find_tools");
        // runc's state must stay in the directory; podman passes `--runtime-flag` to
        // its create step but not to its cleanup, so the flag lives in a wrapper.
        let wrapper = self.plugin_dir().join("runc-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} --root {} \"$@\"\n",
                sh_quote(runc.to_str().expect("runc's path is UTF-8")),
                sh_quote(&d("runc-state"))
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(self.dir.join("mounts.conf"), "").unwrap();
        std::fs::write(self.dir.join("registries.conf"), "").unwrap();
        std::fs::write(
            self.dir.join("storage.conf"),
            format!(
                "[storage]\n\
                 # vfs: the root filesystem is a plain directory, nothing to overlay\n\
                 driver = \"vfs\"\n\
                 graphroot = {}\n\
                 runroot = {}\n",
                toml_str(&d("storage")),
                toml_str(&d("run"))
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.join("containers.conf"),
            containers_conf(&d, &self.plugin_dir()),
        )
        .unwrap();
    }

    fn build_rootfs(&self) {
        let bin = self.rootfs().join("bin");
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        let list = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list runs");
        assert!(list.status.success(), "busybox --list: {}", text(&list));
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            // The list names busybox itself too: a link to itself would loop.
            if applet.is_empty() || applet == "busybox" || applet.contains('/') {
                continue;
            }
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }

    /// The network namespaces podman made for this harness's containers. Only paths of
    /// the form podman gives them are returned, so cleanup can never unmount another.
    fn sandboxes(&self) -> HashSet<PathBuf> {
        let mut known = self
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        known.extend(self.sandboxes_podman_knows());
        known
    }

    fn sandboxes_podman_knows(&self) -> Vec<PathBuf> {
        let Ok(ids) = self.try_run(&["ps", "-aq", "--no-trunc"]) else {
            return Vec::new();
        };
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["inspect", "--format", "{{.NetworkSettings.SandboxKey}}"];
        args.extend(ids.iter().map(String::as_str));
        let Ok(out) = self.try_run(&args) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| is_podman_netns(l))
            .map(PathBuf::from)
            .collect()
    }

    /// Ends (SIGKILL, by PID) every process left in this harness's cgroups: only
    /// podman started by this harness puts processes there. Waits up to 5 s for them
    /// to leave the cgroups.
    fn kill_leftovers(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.cgroup_pids();
            if pids.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "podman harness: processes {pids:?} are still in {}",
                    self.cgroup_parent()
                );
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PIDs in this harness's cgroups, in any hierarchy.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = HashSet::new();
        for top in self.cgroup_dirs() {
            walk_dirs(&top, &mut |d| {
                if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            });
        }
        let mut pids: Vec<i32> = pids.into_iter().collect();
        pids.sort_unstable();
        pids
    }

    /// Removes the CNI cache files of this harness's networks.
    fn remove_cni_cache(&self) {
        let networks = self.networks();
        let Ok(entries) = std::fs::read_dir(CNI_CACHE) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if networks.iter().any(|n| is_cache_file_of(name, n)) {
                if let Err(err) = std::fs::remove_file(e.path()) {
                    eprintln!("podman harness: removing {}: {err}", e.path().display());
                }
            }
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let sandboxes = self.sandboxes();
        // Podman stops what runs (no grace time: nothing here needs it), calls DEL on
        // the CNI plugins, unmounts what it mounted and removes its namespaces.
        match self.try_run(&["rm", "-af", "-t", "0"]) {
            Ok(out) if !out.status.success() => {
                eprintln!("podman harness: podman rm -af: {}", text(&out))
            }
            Err(e) => eprintln!("podman harness: {e}"),
            Ok(_) => {}
        }
        // Whatever podman could not: a hung conmon or container, mounts, namespaces.
        self.kill_leftovers();
        for m in mounts_under(&self.dir) {
            detach(&m);
        }
        for ns in sandboxes {
            if ns.exists() {
                detach(&ns);
                let _ = std::fs::remove_file(&ns);
            }
        }
        for top in self.cgroup_dirs() {
            remove_cgroup_tree(&top);
        }
        self.remove_cni_cache();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != ErrorKind::NotFound {
                eprintln!("podman harness: removing {}: {e}", self.dir.display());
            }
        }
    }
}

/// The busybox the root filesystem is made of; busybox-static installs it here.
pub(crate) const BUSYBOX: &str = "/bin/busybox";

/// Checks for root and the tools; returns podman's path.
fn find_tools() -> Result<PathBuf, Unavailable> {
    let missing = |what: &str, package: &str| Unavailable {
        reason: format!("{what} is missing (Debian package {package})"),
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(Unavailable {
            reason: "the podman harness runs rootful podman and needs root".into(),
        });
    }
    let podman = find_in_path("podman").ok_or_else(|| missing("podman", "podman"))?;
    find_in_path("runc").ok_or_else(|| missing("runc", "runc"))?;
    if !Path::new(CNI_PLUGINS).join("loopback").is_file() {
        return Err(missing(
            &format!("the CNI plugin {CNI_PLUGINS}/loopback"),
            "containernetworking-plugins",
        ));
    }
    let busybox = std::fs::read(BUSYBOX).map_err(|_| missing(BUSYBOX, "busybox-static"))?;
    // The dynamic busybox (package busybox) installs the same path but would not run
    // in a root filesystem without its libraries.
    if elf_has_interpreter(&busybox) != Some(false) {
        return Err(Unavailable {
            reason: format!(
                "{BUSYBOX} is not a static 64-bit executable (Debian package busybox-static \
                 replaces it with one)"
            ),
        });
    }
    Ok(podman)
}

/// Whether a 64-bit little-endian ELF executable names a program interpreter
/// (PT_INTERP: dynamically linked); `None` for anything else.
pub(crate) fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1).
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    if phentsize < 4 {
        return None;
    }
    let mut interp = false;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = elf.get(at..at + 4)?;
        interp |= u32::from_le_bytes(p_type.try_into().ok()?) == PT_INTERP;
    }
    Some(interp)
}

/// `tool` in `PATH`, or else in the standard directories: Debian installs runc in
/// /usr/sbin, which a user's `PATH` may lack.
pub(crate) fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A new directory only this user can read, `<temp>/<dir_prefix>-<unique prefix>`.
/// A name left by an earlier process with the same PID is skipped, not reused.
fn private_dir(dir_prefix: &str) -> (PathBuf, String) {
    private_dir_in(&std::env::temp_dir(), dir_prefix)
}

/// [`private_dir`] under `base` instead of the system's temporary directory.
pub(crate) fn private_dir_in(base: &Path, dir_prefix: &str) -> (PathBuf, String) {
    for _ in 0..100 {
        let prefix = unique_prefix();
        let dir = base.join(format!("{dir_prefix}-{}", prefix.trim_end_matches('-')));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return (dir, prefix),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
    }
    panic!("no free name for a scratch directory {dir_prefix}-* in 100 tries");
}

fn containers_conf(d: &dyn Fn(&str) -> String, plugin_dir: &Path) -> String {
    let plugin_dir = plugin_dir.to_str().expect("UTF-8");
    format!(
        r#"# podman for switchyard's tests: everything under one scratch directory.
[containers]
# root here may not raise nofile past 20000, and conmon's hard nproc is 32768
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# no network unless a test names one: podman's default is a bridge on the host
netns = "none"
default_mounts_file = {mounts}

[network]
network_backend = "cni"
cni_plugin_dirs = [{plugins}, {cni}]
network_config_dir = {netd}

[engine]
runtime = "scratchrunc"
# no systemd on these machines
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = {tmp}
# locks under tmp_dir rather than the machine-wide /dev/shm/libpod_lock
lock_type = "file"

[engine.runtimes]
scratchrunc = [{wrapper}]
"#,
        mounts = toml_str(&d("mounts.conf")),
        plugins = toml_str(plugin_dir),
        cni = toml_str(CNI_PLUGINS),
        netd = toml_str(&d("net.d")),
        tmp = toml_str(&d("tmp")),
        wrapper = toml_str(&d("bin/runc-wrapper")),
    )
}

/// A conflist as podman 4.3 reads it.
fn conflist(name: &str, plugins: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": plugins,
    })
}

/// A TOML basic string: JSON's escapes are a subset of TOML's.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A word for sh, quoted.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `file` (a name in [`CNI_CACHE`]) is libcni's cache of a result on
/// `network`: `<network>-<64 hex container id>-<ifname>`. Matching the whole shape
/// keeps network `n` from claiming the files of a network `n-2`.
pub fn is_cache_file_of(file: &str, network: &str) -> bool {
    let Some(rest) = file.strip_prefix(network).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let Some((id, ifname)) = rest.split_at_checked(64) else {
        return false;
    };
    id.bytes().all(|b| b.is_ascii_hexdigit()) && ifname.len() > 1 && ifname.starts_with('-')
}

/// Whether `path` has the form of a namespace podman makes for a container.
fn is_podman_netns(path: &str) -> bool {
    ["/run/netns/netns-", "/var/run/netns/netns-"]
        .iter()
        .any(|p| {
            path.strip_prefix(p)
                .is_some_and(|u| !u.is_empty() && !u.contains('/'))
        })
}

/// The mount points of this process's mount namespace (from `/proc/self/mountinfo`),
/// with the file system type of each.
pub fn mounts() -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(parse_mountinfo_line).collect()
}

/// Mount point and file system type of one line of mountinfo (proc(5)): the fifth
/// field, with octal escapes for space, tab, newline and backslash, and the first
/// field after the `-` separator.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, String)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let point = fields.get(4)?;
    let sep = fields.iter().position(|f| *f == "-")?;
    let fstype = fields.get(sep + 1)?;
    Some((PathBuf::from(unescape_octal(point)), fstype.to_string()))
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `dir`, deepest first (so each unmounts before the one
/// it sits on).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut under: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(dir))
        .collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    under.dedup();
    under
}

/// The mount points of the cgroup hierarchies (v1 and v2).
pub(crate) fn cgroup_mounts() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|(_, t)| t == "cgroup" || t == "cgroup2")
        .map(|(p, _)| p)
        .collect()
}

/// `umount -l`: detaches the mount now, the kernel finishes when it is unused.
pub(crate) fn detach(point: &Path) {
    if let Err(e) = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH) {
        eprintln!("harness: unmounting {}: {e}", point.display());
    }
}

/// Removes a cgroup and the cgroups under it, deepest first; a cgroup directory
/// holds only the kernel's files, so `rmdir` is the way.
pub(crate) fn remove_cgroup_tree(top: &Path) {
    let mut dirs = Vec::new();
    walk_dirs(top, &mut |d| dirs.push(d.to_path_buf()));
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in dirs {
        if let Err(e) = std::fs::remove_dir(&d) {
            eprintln!("harness: removing cgroup {}: {e}", d.display());
        }
    }
}

/// Calls `f` on `top` and every directory under it (not following links).
pub(crate) fn walk_dirs(top: &Path, f: &mut dyn FnMut(&Path)) {
    f(top);
    let Ok(entries) = std::fs::read_dir(top) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&e.path(), f);
        }
    }
}

/// Runs `c` to its end, collecting what it prints; ends it (by its PID) and fails if
/// it takes longer than `timeout`.
pub(crate) fn output_within(mut c: Command, timeout: Duration) -> Result<Output, String> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let out = reader(&mut child, true);
    let err = reader(&mut child, false);
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}, ended"));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn reader(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<Vec<u8>> {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("piped"))
    } else {
        Box::new(child.stderr.take().expect("piped"))
    };
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = pipe.read_to_end(&mut v);
        v
    })
}

/// stdout and stderr of a command, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "c05f0e980aea73a9be6149a7a511e81bac568e527a6dc6431aadb3f1203b6f3a";

    #[test]
    fn cache_files_match_their_network_only() {
        assert!(is_cache_file_of(&format!("t1a-lo-{ID}-eth0"), "t1a-lo"));
        // A network whose name extends another's is not the other's.
        assert!(!is_cache_file_of(&format!("t1a-lo-2-{ID}-eth0"), "t1a-lo"));
        assert!(is_cache_file_of(&format!("t1a-lo-2-{ID}-eth0"), "t1a-lo-2"));
        assert!(!is_cache_file_of(&format!("t1a-lo-{ID}"), "t1a-lo"));
        assert!(!is_cache_file_of(&format!("t1a-lo-{ID}-"), "t1a-lo"));
        assert!(!is_cache_file_of(
            &format!("t1a-lo-{}-eth0", &ID[1..]),
            "t1a-lo"
        ));
        assert!(!is_cache_file_of(&format!("t1a-lo{ID}-eth0"), "t1a-lo"));
        assert!(!is_cache_file_of(&format!("x-t1a-lo-{ID}-eth0"), "t1a-lo"));
    }

    #[test]
    fn only_podman_namespaces_are_claimed() {
        assert!(is_podman_netns(
            "/run/netns/netns-4a4ebe60-0bc7-583c-541e-ba5842aadcbc"
        ));
        assert!(is_podman_netns("/var/run/netns/netns-4a4e"));
        assert!(!is_podman_netns("/run/netns/t1a-a"));
        assert!(!is_podman_netns("/run/netns/netns-"));
        assert!(!is_podman_netns("/run/netns/netns-x/../t1a-a"));
        assert!(!is_podman_netns(""));
        assert!(!is_podman_netns("/proc/1/ns/net"));
    }

    #[test]
    fn mountinfo_lines_give_point_and_type() {
        let line = "36 35 98:0 /mnt1 /tmp/a\\040b rw,noatime master:1 - ext3 /dev/root rw";
        assert_eq!(
            parse_mountinfo_line(line),
            Some((PathBuf::from("/tmp/a b"), "ext3".to_string()))
        );
        let line = "30 25 0:26 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory";
        assert_eq!(
            parse_mountinfo_line(line),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), "cgroup".to_string()))
        );
        assert_eq!(parse_mountinfo_line("garbage"), None);
        assert_eq!(unescape_octal("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(toml_str("/tmp/a\"b\\c"), r#""/tmp/a\"b\\c""#);
    }

    #[test]
    fn only_elf64_without_interpreter_is_static() {
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
        let mut elf = vec![0u8; 64 + 2 * 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert_eq!(elf_has_interpreter(&elf), Some(false));
        elf[120..124].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert_eq!(elf_has_interpreter(&elf), Some(true));
        // Program headers past the end are not a valid answer.
        elf[56..58].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(elf_has_interpreter(&elf), None);
    }

    #[test]
    fn conflists_carry_podmans_version() {
        let c = conflist("t1a-lo", serde_json::json!([{ "type": "loopback" }]));
        assert_eq!(c["cniVersion"], "0.4.0");
        assert_eq!(c["name"], "t1a-lo");
        assert_eq!(c["plugins"][0]["type"], "loopback");
    }
}
