//! A real dockerd (docker.io 20.10, Debian 12) with scratch state the test owns: for
//! tests that prove what Docker does with switchyard as its network driver, through the
//! same daemon and client a user runs.
//!
//! ```no_run
//! use switchyard_testkit::docker::Dockerd;
//!
//! let Some(d) = Dockerd::require("sy-docker") else { return };
//! d.import_busybox("busybox:scratch");
//! let out = d.docker_ok(&["run", "--rm", "--network", "none", "busybox:scratch", "echo", "hi"]);
//! assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
//! assert!(d.stop().is_empty()); // or drop it: the same cleanup, also during a panic
//! ```
//!
//! One private directory `/tmp/<dir_prefix>-t<pid><letters>` holds the daemon's state
//! (`--data-root <dir>/data`), its run-time state (`--exec-root <dir>/exec`, where the
//! containerd dockerd starts keeps its socket, configuration and state, and where
//! libnetwork mounts the containers' network namespaces), its pid file, its API socket
//! (`-H unix://<dir>/docker.sock`), an empty `--config-file` (the machine's
//! `/etc/docker/daemon.json` changes nothing), its log (`<dir>/dockerd.log`, whose tail
//! failure messages carry), the client's configuration (`DOCKER_CONFIG`) and the root
//! filesystem images are made from. The directory is under `/tmp`, not `$TMPDIR`:
//! containerd's socket `<exec-root>/containerd/containerd.sock.ttrpc` must fit a unix
//! socket address (107 bytes).
//!
//! The daemon touches no host network: `--bridge=none` (no `docker0`), `--iptables=false`,
//! `--ip-forward=false`, `--ip-masq=false`; a test's containers use `--network none` or a
//! network whose driver the test provides. Its cgroups go under `--cgroup-parent
//! /<prefix>docker` (Docker's default, `/docker`, is shared with any other dockerd), so the
//! harness finds its containers' processes there in every hierarchy.
//!
//! What dockerd and containerd still put outside the directory, and how the harness
//! removes it ([`Dockerd::stop`], or dropping the harness):
//!
//! * containers: `docker rm -f` of every container, while the daemon still runs; then
//!   dockerd gets SIGTERM by its PID (SIGKILL after 20 s), and stops its containerd.
//! * processes that outlive the daemon: containerd's shims (`containerd-shim-runc-v2`)
//!   are not dockerd's children (they detach to PID 1). containerd, shims and runc whose
//!   command lines name the private directory, and every process in the cgroup parent
//!   (the containers'), are this harness's: they get SIGKILL by their PID (containerd
//!   first SIGTERM and 5 s).
//! * shim sockets `/run/containerd/s/<sha256>`: containerd 1.6 puts them there whatever
//!   its state directory. A shim removes its socket when it exits; for a shim the harness
//!   must kill, its socket (read from the shim's own file descriptors) is removed after.
//! * mounts: `<exec-root>/netns/<sandbox>` (a network namespace, which can stay mounted
//!   after dockerd exits), the overlay mounts of running containers, and the private
//!   bind mount overlay2 makes of `<data-root>` on itself: everything under the directory
//!   in `/proc/self/mountinfo` is detached (`umount -l`), deepest first.
//! * cgroups: `/<prefix>docker` and the containers' cgroups under it, in each hierarchy
//!   under `/sys/fs/cgroup`: here nine cgroup v1 hierarchies (`name=systemd` among them)
//!   and a v2 one at `/sys/fs/cgroup/unified`. The parent is absolute, so containers land
//!   there even where the test's own cgroup is not the root (memory, here).
//! * `/etc/docker/key.json` (dockerd 20.10 writes its identity key there, whatever its
//!   data root), and the directories `/etc/docker`, `/run/docker/plugins` (where dockerd
//!   looks for plugin sockets), `/run/docker`, `/run/containerd/s` and `/run/containerd`:
//!   those that did not exist before
//!   this process's first harness started are removed when its last harness stops
//!   (directories only when empty); what the machine had before is never touched. The
//!   count is per process: a dockerd of another process that starts meanwhile may lose
//!   the key file later, which it reads only when it starts, and a shim makes its
//!   socket directory again when it is missing.
//!
//! [`Dockerd::stop`] returns [`Leftovers`]: what is still there after all of that, for a
//! test to assert it is empty.

use crate::fixtures::require_root;
use crate::podman::{
    cgroup_mounts, detach, elf_has_interpreter, find_in_path, mounts_under, output_within,
    private_dir_in, remove_cgroup_tree, text, walk_dirs, Unavailable, BUSYBOX,
};
use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a docker client command may take before the harness ends it (by its PID)
/// and reports it as hung. Each command here takes 1.2 s at most on an idle machine.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long dockerd may take to answer `docker version` after it starts (0.25 to 1 s here).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long dockerd may take to exit after SIGTERM before it gets SIGKILL. It stops its
/// containers first, each with its own stop timeout.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The client of the docker.io package. Another client earlier in `PATH` (a newer one in
/// /usr/local/bin on some machines) may speak an API version dockerd 20.10 refuses.
const DOCKER_CLIENT: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// The longest path a unix socket address holds (`sun_path` less its NUL).
const SUN_PATH_MAX: usize = 107;

/// Paths outside the private directory that dockerd or containerd create when missing.
const OUTSIDE: [&str; 6] = [
    "/etc/docker/key.json",
    "/etc/docker",
    "/run/docker/plugins",
    "/run/docker",
    "/run/containerd/s",
    "/run/containerd",
];

/// Where containerd 1.6's shims put their sockets.
const SHIM_SOCKETS: &str = "/run/containerd/s";

/// The harnesses of this process that are running, and which [`OUTSIDE`] paths were
/// missing when the first of them started.
static OUTSIDE_STATE: Mutex<(usize, Vec<&'static str>)> = Mutex::new((0, Vec::new()));

/// A scratch dockerd: its own directory, state, containerd and cgroups. [`Dockerd::stop`]
/// or dropping it (during a panic's unwinding too) ends it and removes every trace; see
/// the module's documentation.
#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    prefix: String,
    client: PathBuf,
    daemon: Child,
    /// Set once the cleanup ran, so dropping after [`Dockerd::stop`] does nothing.
    stopped: bool,
    /// Shim sockets seen on shims this harness had to kill.
    killed_shim_sockets: Mutex<HashSet<PathBuf>>,
}

/// What is left after [`Dockerd::stop`]: each list empty when the cleanup was complete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// dockerd's PID, if it still runs.
    pub dockerd: Option<i32>,
    /// Processes (PID, command line) whose command line names the directory (containerd,
    /// shims) or that sit in the harness's cgroups.
    pub processes: Vec<(i32, String)>,
    /// Mount points at or under the directory.
    pub mounts: Vec<PathBuf>,
    /// The harness's cgroup directories, in any hierarchy.
    pub cgroups: Vec<PathBuf>,
    /// The directory, if it still exists.
    pub dir: Option<PathBuf>,
    /// Sockets of shims the harness had to kill (their shim did not remove them).
    pub shim_sockets: Vec<PathBuf>,
    /// Paths outside the directory that the harness created and could not remove (only
    /// checked when the last harness of the process stops).
    pub outside: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing left");
        }
        if let Some(pid) = self.dockerd {
            writeln!(f, "dockerd {pid} still runs")?;
        }
        for (pid, cmd) in &self.processes {
            writeln!(f, "process {pid}: {cmd}")?;
        }
        for m in &self.mounts {
            writeln!(f, "mount {}", m.display())?;
        }
        for c in &self.cgroups {
            writeln!(f, "cgroup {}", c.display())?;
        }
        if let Some(d) = &self.dir {
            writeln!(f, "directory {}", d.display())?;
        }
        for s in &self.shim_sockets {
            writeln!(f, "shim socket {}", s.display())?;
        }
        for p in &self.outside {
            writeln!(f, "outside: {}", p.display())?;
        }
        Ok(())
    }
}

impl Dockerd {
    /// Makes the private directory `/tmp/<dir_prefix>-<unique prefix>`, starts dockerd
    /// on it and waits until it answers. Fails with [`Unavailable`] when not root or
    /// when dockerd, its client, containerd, runc or busybox-static is missing; panics
    /// (after the cleanup) with the daemon's log when it does not come up.
    pub fn start(dir_prefix: &str) -> Result<Dockerd, Unavailable> {
        let (dockerd, client, runc) = find_tools()?;
        let (dir, prefix) = private_dir_in(Path::new("/tmp"), dir_prefix);
        let sock = dir.join("exec/containerd/containerd.sock.ttrpc");
        if sock.as_os_str().len() > SUN_PATH_MAX {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "{} is longer than a unix socket address: a shorter dir_prefix is needed",
                sock.display()
            );
        }
        note_outside_paths();
        let daemon = match spawn_dockerd(&dockerd, &runc, &dir, &prefix) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                forget_outside_paths();
                panic!("starting {}: {e}", dockerd.display());
            }
        };
        // From here on a panic drops `d`, which ends the daemon and removes everything.
        let d = Dockerd {
            dir,
            prefix,
            client,
            daemon,
            stopped: false,
            killed_shim_sockets: Mutex::new(HashSet::new()),
        };
        d.wait_ready();
        Ok(d)
    }

    /// [`Dockerd::start`] under the tests' conventions: `None` (skip) without root when
    /// `SWITCHYARD_SKIP_ROOT_TESTS=1`, and a failure naming the missing package when
    /// dockerd cannot run here (`.ci/run` installs the packages, so CI always has them).
    pub fn require(dir_prefix: &str) -> Option<Dockerd> {
        if !require_root() {
            return None;
        }
        match Dockerd::start(dir_prefix) {
            Ok(d) => Some(d),
            Err(u) => panic!("dockerd cannot run here: {u} (.ci/run installs it)"),
        }
    }

    /// The private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unique prefix of this run.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// dockerd's PID.
    pub fn pid(&self) -> i32 {
        self.daemon.id() as i32
    }

    /// The API socket, `<dir>/docker.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// dockerd's `--exec-root`.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// The cgroup (the same path in every hierarchy) every container of this daemon is
    /// put under.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}docker", self.prefix)
    }

    /// The cgroup parent's directory in each hierarchy where it exists.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let parent = self.cgroup_parent();
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(parent.trim_start_matches('/')))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// The last `lines` lines of dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(mut f) = File::open(self.dir.join("dockerd.log")) else {
            return String::new();
        };
        // The log of a short test is small; the last 64 KiB hold more than enough lines.
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `/usr/bin/docker -H unix://<dir>/docker.sock`, in an environment holding only
    /// `PATH` and `DOCKER_CONFIG` (the client's configuration in the directory).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            c.env("PATH", path);
        }
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .env("HOME", &self.dir)
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    /// Runs `docker ARGS` and returns what it printed; panics (with the daemon's log)
    /// if it hangs for [`DOCKER_TIMEOUT`].
    pub fn docker(&self, args: &[&str]) -> Output {
        self.try_docker(args)
            .unwrap_or_else(|e| panic!("{e}\ndockerd's log ends with:\n{}", self.log_tail(30)))
    }

    /// [`Dockerd::docker`], and a panic with its output and the daemon's log unless it
    /// succeeds.
    pub fn docker_ok(&self, args: &[&str]) -> Output {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}\ndockerd's log ends with:\n{}",
            args.join(" "),
            text(&out),
            self.log_tail(30)
        );
        out
    }

    fn try_docker(&self, args: &[&str]) -> Result<Output, String> {
        let mut c = self.command();
        c.args(args);
        output_within(c, DOCKER_TIMEOUT).map_err(|e| format!("docker {}: {e}", args.join(" ")))
    }

    /// Makes the image `image` (`name:tag`) from a root filesystem of busybox-static
    /// (`bin/busybox`) and a link for each of its applets: `tar -C rootfs -c . | docker
    /// import - image`. No registry is asked.
    pub fn import_busybox(&self, image: &str) {
        let rootfs = self.dir.join("rootfs");
        if !rootfs.join("bin/busybox").exists() {
            build_rootfs(&rootfs);
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tar runs");
        let mut c = self.command();
        c.args(["import", "-", image])
            .stdin(Stdio::from(tar.stdout.take().expect("piped")));
        let out = output_within(c, DOCKER_TIMEOUT);
        // docker has read tar's output to its end or has exited; either way tar is done
        // or gets EPIPE, and ends by its PID if not.
        let tar_status = wait_within(&mut tar, Duration::from_secs(5));
        let out = out.unwrap_or_else(|e| {
            panic!(
                "docker import: {e}\ndockerd's log ends with:\n{}",
                self.log_tail(30)
            )
        });
        assert!(
            out.status.success() && tar_status.is_some_and(|s| s.success()),
            "tar -C {} -c . ({tar_status:?}) | docker import - {image}: {}\n\
             dockerd's log ends with:\n{}",
            rootfs.display(),
            text(&out),
            self.log_tail(30)
        );
    }

    /// Ends the daemon and removes every trace of it (see the module's documentation);
    /// returns what is still there, empty when the cleanup was complete.
    pub fn stop(mut self) -> Leftovers {
        self.cleanup()
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(out) = output_within(self.version_command(), Duration::from_secs(5)) {
                if out.status.success() {
                    return;
                }
            }
            // `self` is borrowed: a daemon that exited is seen through its PID.
            if !alive(self.pid()) || start.elapsed() > START_TIMEOUT {
                panic!(
                    "dockerd did not answer `docker version` within {START_TIMEOUT:?} \
                     (running: {})\ndockerd's log ends with:\n{}",
                    alive(self.pid()),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn version_command(&self) -> Command {
        let mut c = self.command();
        c.args(["version", "--format", "{{.Server.Version}}"]);
        c
    }

    fn cleanup(&mut self) -> Leftovers {
        if self.stopped {
            return Leftovers::default();
        }
        self.stopped = true;
        // A daemon that was killed (a zombie until reaped) has nothing to answer with.
        if alive(self.pid()) {
            self.remove_containers();
        }
        self.end_daemon();
        self.kill_leftovers();
        for m in mounts_under(&self.dir) {
            detach(&m);
        }
        for top in self.cgroup_dirs() {
            remove_cgroup_tree(&top);
        }
        let sockets = std::mem::take(
            &mut *self
                .killed_shim_sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for s in &sockets {
            let _ = std::fs::remove_file(s);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != ErrorKind::NotFound {
                eprintln!("dockerd harness: removing {}: {e}", self.dir.display());
            }
        }
        let outside = forget_outside_paths();
        Leftovers {
            dockerd: alive(self.pid()).then(|| self.pid()),
            processes: self.processes(),
            mounts: mounts_under(&self.dir),
            cgroups: self.cgroup_dirs(),
            dir: self.dir.exists().then(|| self.dir.clone()),
            shim_sockets: sockets.into_iter().filter(|s| s.exists()).collect(),
            outside,
        }
    }

    /// `docker rm -f` of every container, so dockerd stops them (and their shims and
    /// network namespaces go) before it exits.
    fn remove_containers(&self) {
        let ids = match self.try_docker(&["ps", "-aq"]) {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            Ok(out) => {
                eprintln!("dockerd harness: docker ps -aq: {}", text(&out));
                return;
            }
            Err(e) => {
                eprintln!("dockerd harness: {e}");
                return;
            }
        };
        if ids.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        match self.try_docker(&args) {
            Ok(out) if !out.status.success() => {
                eprintln!("dockerd harness: docker rm -f: {}", text(&out))
            }
            Err(e) => eprintln!("dockerd harness: {e}"),
            Ok(_) => {}
        }
    }

    /// SIGTERM to dockerd by its PID, SIGKILL after [`STOP_TIMEOUT`]; reaps it.
    fn end_daemon(&mut self) {
        if !matches!(self.daemon.try_wait(), Ok(None)) {
            return;
        }
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        if wait_within(&mut self.daemon, STOP_TIMEOUT).is_none() {
            eprintln!(
                "dockerd harness: dockerd {} still runs {STOP_TIMEOUT:?} after SIGTERM; \
                 SIGKILL\ndockerd's log ends with:\n{}",
                self.pid(),
                self.log_tail(20)
            );
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    /// Ends what outlived the daemon (all of it when dockerd was killed: containerd
    /// then runs on, reparented, and shims never depend on it): containerd first gets
    /// SIGTERM and 5 s to exit, then every process of this harness gets SIGKILL by its
    /// PID until none is left (5 s more). A shim's socket is noted before it is killed.
    fn kill_leftovers(&self) {
        let containerd = |procs: &[(i32, String)]| -> Vec<i32> {
            procs
                .iter()
                .filter(|(_, cmd)| cmd.starts_with("containerd "))
                .map(|(pid, _)| *pid)
                .collect()
        };
        for pid in containerd(&self.processes()) {
            signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let grace = Instant::now() + Duration::from_secs(5);
        while Instant::now() < grace && !containerd(&self.processes()).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = self.processes();
            if procs.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("dockerd harness: processes still running: {procs:?}");
                return;
            }
            for (pid, cmd) in procs {
                if cmd.contains("containerd-shim") {
                    let sockets = listening_shim_sockets(pid);
                    self.killed_shim_sockets
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(sockets);
                }
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sockets under `/run/containerd/s` that this harness's running shims listen
    /// on (containerd 1.6 puts them there whatever its state directory).
    pub fn shim_sockets(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self
            .processes()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("containerd-shim"))
            .flat_map(|(pid, _)| listening_shim_sockets(pid))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// This harness's processes other than dockerd: containerd, its shims and runc, whose
    /// command lines name the private directory, and the processes in the cgroup parent
    /// (the containers'). Only this harness's daemon starts either kind.
    pub fn processes(&self) -> Vec<(i32, String)> {
        let dir = self.dir.to_string_lossy().into_owned();
        let parent = self.cgroup_parent();
        let mut in_cgroups = HashSet::new();
        for top in self.cgroup_dirs() {
            walk_dirs(&top, &mut |d| {
                if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    in_cgroups.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            });
        }
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || pid == self.pid() {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            let in_parent = cgroup
                .lines()
                .any(|l| l.split(':').nth(2).is_some_and(|p| in_cgroup(p, &parent)));
            if (is_runtime_program(&cmdline) && names_dir(&cmdline, &dir))
                || in_parent
                || in_cgroups.contains(&pid)
            {
                found.push((pid, cmdline.trim_end().to_string()));
            }
        }
        found.sort();
        found
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let left = self.cleanup();
        if !left.is_empty() {
            eprintln!("dockerd harness: left behind:\n{left}");
        }
    }
}

/// Checks for root and the tools; returns the paths of dockerd, its client and runc.
fn find_tools() -> Result<(PathBuf, PathBuf, PathBuf), Unavailable> {
    let missing = |what: &str, package: &str| Unavailable {
        reason: format!("{what} is missing (Debian package {package})"),
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(Unavailable {
            reason: "the dockerd harness runs a rootful dockerd and needs root".into(),
        });
    }
    let prefer = |p: &str, tool: &str| {
        Some(PathBuf::from(p))
            .filter(|p| p.is_file())
            .or_else(|| find_in_path(tool))
    };
    let dockerd = prefer(DOCKERD, "dockerd").ok_or_else(|| missing("dockerd", "docker.io"))?;
    let client = prefer(DOCKER_CLIENT, "docker").ok_or_else(|| missing("docker", "docker.io"))?;
    find_in_path("containerd").ok_or_else(|| missing("containerd", "containerd"))?;
    let runc = prefer("/usr/sbin/runc", "runc").ok_or_else(|| missing("runc", "runc"))?;
    let busybox = std::fs::read(BUSYBOX).map_err(|_| missing(BUSYBOX, "busybox-static"))?;
    // The dynamic busybox (package busybox) installs the same path but would not run in
    // an image without its libraries.
    if elf_has_interpreter(&busybox) != Some(false) {
        return Err(Unavailable {
            reason: format!(
                "{BUSYBOX} is not a static 64-bit executable (Debian package busybox-static \
                 replaces it with one)"
            ),
        });
    }
    Ok((dockerd, client, runc))
}

fn spawn_dockerd(dockerd: &Path, runc: &Path, dir: &Path, prefix: &str) -> std::io::Result<Child> {
    let d = |p: &str| dir.join(p);
    std::fs::create_dir(d("client"))?;
    std::fs::write(d("daemon.json"), "{}\n")?;
    let log = File::create(d("dockerd.log"))?;
    let runtime = format!("scratchrunc={}", runc.display());
    Command::new(dockerd)
        .env_clear()
        // dockerd finds containerd, its shim and runc in PATH: those of the packages.
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("--config-file")
        .arg(d("daemon.json"))
        .arg("--data-root")
        .arg(d("data"))
        .arg("--exec-root")
        .arg(d("exec"))
        .arg("--pidfile")
        .arg(d("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", d("docker.sock").display()))
        .args([
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
            // root here may not raise nofile past 20000, nor nproc past 32768
            "--default-ulimit",
            "nofile=20000:20000",
            "--default-ulimit",
            "nproc=32768:32768",
            "--add-runtime",
            &runtime,
            "--default-runtime",
            "scratchrunc",
            "--cgroup-parent",
            &format!("/{prefix}docker"),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

fn build_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
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

/// Records which [`OUTSIDE`] paths are missing when the first running harness starts.
fn note_outside_paths() {
    let mut state = OUTSIDE_STATE.lock().unwrap_or_else(|e| e.into_inner());
    if state.0 == 0 {
        state.1 = OUTSIDE
            .iter()
            .copied()
            .filter(|p| std::fs::symlink_metadata(p).is_err())
            .collect();
    }
    state.0 += 1;
}

/// Counts a harness as stopped; when it was the last, removes the [`OUTSIDE`] paths
/// that were missing before the first (directories only if empty) and returns those
/// still there.
fn forget_outside_paths() -> Vec<PathBuf> {
    let mut state = OUTSIDE_STATE.lock().unwrap_or_else(|e| e.into_inner());
    state.0 = state.0.saturating_sub(1);
    if state.0 > 0 {
        return Vec::new();
    }
    let created = std::mem::take(&mut state.1);
    // OUTSIDE lists files and children before their directories.
    for p in &created {
        let p = Path::new(p);
        let _ = if p.is_dir() {
            std::fs::remove_dir(p)
        } else {
            std::fs::remove_file(p)
        };
    }
    created
        .iter()
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// The sockets under [`SHIM_SOCKETS`] that process `pid` holds, matched by inode
/// between its file descriptors and its network namespace's `/proc/<pid>/net/unix`.
fn listening_shim_sockets(pid: i32) -> Vec<PathBuf> {
    let mut inodes = HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    let mut found = Vec::new();
    for line in unix.lines().skip(1) {
        // Num RefCount Protocol Flags Type St Inode Path
        let f: Vec<&str> = line.split_whitespace().collect();
        if let (Some(inode), Some(path)) = (f.get(6), f.get(7)) {
            if inodes.contains(*inode) && is_shim_socket(path) {
                found.push(PathBuf::from(path));
            }
        }
    }
    found
}

/// Whether `path` is a shim socket: a file directly in [`SHIM_SOCKETS`].
fn is_shim_socket(path: &str) -> bool {
    path.strip_prefix(SHIM_SOCKETS)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Whether a command line (arguments joined by spaces) runs one of the programs dockerd
/// starts outside the containers: containerd, its shims, runc, docker's own helpers. A
/// user's shell or editor that happens to name the directory is never taken for one.
fn is_runtime_program(cmdline: &str) -> bool {
    let argv0 = cmdline.split(' ').next().unwrap_or("");
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    name.starts_with("containerd") || name.starts_with("docker") || name == "runc"
}

/// Whether a command line names `dir` as a whole path component (`/tmp/x-t1a` does not
/// name `/tmp/x-t1` nor the reverse).
fn names_dir(cmdline: &str, dir: &str) -> bool {
    cmdline.match_indices(dir).any(|(i, _)| {
        let after = cmdline[i + dir.len()..].chars().next();
        matches!(after, None | Some('/') | Some(' '))
    })
}

/// Whether the cgroup path `path` is `parent` or under it.
fn in_cgroup(path: &str, parent: &str) -> bool {
    path.strip_prefix(parent)
        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Waits for `child` up to `timeout`; ends it (SIGKILL by its PID) and returns `None`
/// if it is still running then.
fn wait_within(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_harness_directory_is_named() {
        assert!(names_dir(
            "containerd --config /tmp/d-t1a/exec/c.toml",
            "/tmp/d-t1a"
        ));
        assert!(names_dir("x -a /tmp/d-t1a", "/tmp/d-t1a"));
        assert!(names_dir("x /tmp/d-t1a /other", "/tmp/d-t1a"));
        assert!(!names_dir("x /tmp/d-t1ab/exec", "/tmp/d-t1a"));
        assert!(!names_dir("x /tmp/d-t1", "/tmp/d-t1a"));
    }

    #[test]
    fn only_runtime_programs_are_claimed_by_name() {
        assert!(is_runtime_program("containerd --config /tmp/d/exec/c.toml"));
        assert!(is_runtime_program(
            "/usr/bin/containerd-shim-runc-v2 -namespace moby"
        ));
        assert!(is_runtime_program("/usr/sbin/runc --root /tmp/d/x"));
        assert!(is_runtime_program("/usr/bin/docker-proxy -proto tcp"));
        assert!(!is_runtime_program("less /tmp/d/dockerd.log"));
        assert!(!is_runtime_program("/bin/sh -c containerd"));
        assert!(!is_runtime_program("/usr/sbin/runcx"));
    }

    #[test]
    fn cgroups_under_the_parent_only() {
        assert!(in_cgroup("/t1a-docker", "/t1a-docker"));
        assert!(in_cgroup("/t1a-docker/9a4d", "/t1a-docker"));
        assert!(!in_cgroup("/t1a-dockerx", "/t1a-docker"));
        assert!(!in_cgroup("/docker/9a4d", "/t1a-docker"));
    }

    #[test]
    fn shim_sockets_are_files_in_the_shim_directory() {
        assert!(is_shim_socket("/run/containerd/s/ab5b78"));
        assert!(!is_shim_socket("/run/containerd/s/"));
        assert!(!is_shim_socket("/run/containerd/s/a/b"));
        assert!(!is_shim_socket("/run/containerd/sx"));
        assert!(!is_shim_socket("@/containerd-shim/x.sock"));
    }

    #[test]
    fn outside_paths_come_before_their_directories() {
        for (i, p) in OUTSIDE.iter().enumerate() {
            for later in &OUTSIDE[i + 1..] {
                assert!(
                    !Path::new(later).starts_with(p),
                    "{later} is inside {p} but listed after it"
                );
            }
        }
    }
}
