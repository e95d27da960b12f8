//! `switchyard up` as a separate process, as an operator runs it: for tests of what
//! only a process shows — signals, its exit status, its log, what `down` finds after
//! it died.
//!
//! ```no_run
//! use switchyard_testkit::process::Instance;
//! # let bin = std::path::Path::new("switchyard");
//! let inst = Instance::new(bin, "three");
//! let mut up = inst.up(&[]);
//! // ... talk to inst.socket(), traffic in inst.netns("a") ...
//! let out = up.signal(nix::sys::signal::Signal::SIGTERM);
//! assert!(out.status.success());
//! ```

use crate::fixtures::{three, unique_prefix, wait_until};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use switchyard::topology::TopologyBuilder;
use switchyard_os::netns;

/// A scratch directory with a topology file (the fixtures' `three`: endpoints a, b, c
/// on one network, unless made [`Instance::with`] another) and a run directory, under a
/// prefix of its own. Dropping it runs `down` and removes whatever is left.
pub struct Instance {
    bin: PathBuf,
    pub dir: PathBuf,
    pub prefix: String,
    pub config: PathBuf,
    /// The topology's endpoints, by name.
    endpoints: Vec<String>,
}

impl Instance {
    /// `bin` is the `switchyard` binary (`env!("CARGO_BIN_EXE_switchyard")`).
    pub fn new(bin: &Path, tag: &str) -> Instance {
        Instance::with(bin, tag, three)
    }

    /// An instance of the topology `topology` makes for the instance's prefix (a
    /// fixture: `nat`, `routed`, ...) instead of `three`.
    pub fn with(bin: &Path, tag: &str, topology: impl FnOnce(&str) -> TopologyBuilder) -> Instance {
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("switchyard-{tag}-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("three.toml");
        let builder = topology(&prefix);
        let text = builder.to_toml().expect("the fixture prints");
        let endpoints = crate::fixtures::build(builder)
            .endpoints
            .iter()
            .map(|e| e.name.clone())
            .collect();
        std::fs::write(&config, text).unwrap();
        Instance {
            endpoints,
            bin: bin.to_path_buf(),
            dir,
            prefix,
            config,
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir().join(&self.prefix).join("control.sock")
    }

    /// The namespace of endpoint `e`.
    pub fn netns(&self, e: &str) -> String {
        format!("{}{e}", self.prefix)
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| self.netns(e)).collect()
    }

    /// The binary, with this instance's run directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("SWITCHYARD_RUN_DIR", self.run_dir());
        c
    }

    /// Starts `switchyard up` on the topology with extra environment `env`, and waits
    /// until its control socket exists.
    pub fn up(&self, env: &[(&str, &str)]) -> Up {
        self.up_with(&[], env)
    }

    /// [`Instance::up`] with switchyard's own network namespace the one at `netns`
    /// (`/run/netns/NAME`, which the test made) instead of the test's: a device it
    /// makes in its own namespace then never appears where the tests run, and goes
    /// with that namespace whatever happens.
    pub fn up_in(&self, netns: &Path) -> Up {
        let ns = std::fs::File::open(netns).unwrap();
        let mut c = self.cmd();
        // SAFETY: between fork and exec the closure makes one system call (setns),
        // which allocates nothing and touches no lock the parent may hold.
        unsafe {
            c.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        self.spawn(c, &[], &[])
    }

    /// [`Instance::up`] with extra options for `up` (`--metrics ADDR:PORT`).
    pub fn up_with(&self, args: &[&str], env: &[(&str, &str)]) -> Up {
        self.spawn(self.cmd(), args, env)
    }

    fn spawn(&self, mut c: Command, args: &[&str], env: &[(&str, &str)]) -> Up {
        c.arg("up")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let up = Up(Some(c.spawn().unwrap()));
        // Connectable, not merely there: the socket's file exists from bind(2), a
        // moment before listen(2), when a connection is still refused.
        wait_until(
            Duration::from_secs(20),
            "switchyard up to open its control socket",
            || std::os::unix::net::UnixStream::connect(self.socket()).is_ok(),
        );
        up
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.cmd().args(["down", "--prefix", &self.prefix]).output();
        for n in self.namespaces() {
            let _ = netns::delete(&n);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `switchyard up`, killed if the test panics.
pub struct Up(Option<Child>);

impl Up {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().expect("running").id() as i32
    }

    /// Sends `sig` and waits for the process to exit.
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) -> Output {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
        self.0.take().unwrap().wait_with_output().unwrap()
    }

    /// Sends `sig` and waits at most `limit` for the process to exit: its output and
    /// how long it took, or `None` (and the process killed) if it did not exit.
    pub fn signal_within(
        &mut self,
        sig: nix::sys::signal::Signal,
        limit: Duration,
    ) -> Option<(Output, Duration)> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
        let t = Instant::now();
        self.exit_within(limit).map(|o| (o, t.elapsed()))
    }

    /// Waits at most `limit` for the process to exit on its own: its output, or
    /// `None` (and the process killed) if it did not exit.
    pub fn exit_within(&mut self, limit: Duration) -> Option<Output> {
        let t = Instant::now();
        let child = self.0.as_mut().unwrap();
        while t.elapsed() < limit {
            if child.try_wait().unwrap().is_some() {
                return Some(self.0.take().unwrap().wait_with_output().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// stdout and stderr of a finished process, as one text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An [`Instance`] run as Docker's network driver (`up --docker-driver NAME
/// --docker-state PATH`), under a driver name made of the instance's prefix, so that
/// its plugin socket in `/run/docker/plugins` carries the test's prefix too. Dropping it
/// removes the socket a killed `up` leaves.
pub struct DriverInstance {
    pub inst: Instance,
    /// The driver's name: `docker network create -d NAME`.
    pub name: String,
    /// Its state file, in the instance's directory.
    pub state: PathBuf,
}

impl DriverInstance {
    pub fn new(
        bin: &Path,
        tag: &str,
        topology: impl FnOnce(&str) -> TopologyBuilder,
    ) -> DriverInstance {
        let inst = Instance::with(bin, tag, topology);
        let name = format!("{}drv", inst.prefix);
        let state = inst.dir.join("driver-state.json");
        DriverInstance { inst, name, state }
    }

    /// The socket Docker connects to.
    pub fn socket(&self) -> PathBuf {
        Path::new("/run/docker/plugins").join(format!("{}.sock", self.name))
    }

    /// Starts `switchyard up` with the driver, and waits until the plugin socket answers.
    pub fn up(&self) -> Up {
        let state = self.state.display().to_string();
        let up = self.inst.up_with(
            &["--docker-driver", &self.name, "--docker-state", &state],
            &[],
        );
        wait_until(Duration::from_secs(20), "the plugin socket", || {
            std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
        });
        up
    }

    /// `switchyard docker ls` of this driver: its table.
    pub fn docker_ls(&self) -> String {
        let out = self
            .inst
            .cmd()
            .args(["docker", "ls", "--name", &self.name, "--state"])
            .arg(&self.state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `switchyard ARGS --prefix P --json` on the instance: its JSON answer.
    pub fn sy(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .inst
            .cmd()
            .args(args)
            .args(["--prefix", &self.inst.prefix, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "switchyard {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for DriverInstance {
    fn drop(&mut self) {
        // A switchyard killed by a failing test leaves its socket.
        let _ = std::fs::remove_file(self.socket());
    }
}
