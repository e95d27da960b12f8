//! The scratch dockerd (switchyard_testkit::docker) itself, with containers on no
//! network at all (`--network none`): the daemon comes up on its private directory, an
//! image made from busybox-static runs, and stopping the harness with a container
//! running leaves nothing behind — no dockerd, containerd, shim or container process, no
//! mount, cgroup or directory. Needs root and the Debian packages docker.io and
//! busybox-static (.ci/run installs them).

use std::path::Path;
use std::time::Instant;
use switchyard_testkit::docker::Dockerd;

const IMAGE: &str = "sy-busybox:scratch";

/// Runs `f`, printing how long it took.
fn timed<T>(step: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("{step}: {:.2} s", start.elapsed().as_secs_f64());
    out
}

#[test]
fn a_container_says_hello_and_stopping_leaves_nothing() {
    let test = Instant::now();
    let Some(d) = timed("start", || Dockerd::require("sy-dockerd")) else {
        return;
    };
    let dir = d.dir().to_path_buf();
    let cgroup_parent = d.cgroup_parent();
    assert!(
        d.socket().exists(),
        "no API socket at {}",
        d.socket().display()
    );
    // The containerd dockerd started is under the exec root, not the machine's.
    let processes = d.processes();
    let dir_s = dir.to_string_lossy().into_owned();
    assert!(
        processes
            .iter()
            .any(|(_, cmd)| cmd.starts_with("containerd ") && cmd.contains(&dir_s)),
        "no containerd of this daemon among {processes:?}"
    );

    timed("import busybox", || d.import_busybox(IMAGE));
    let out = timed("run --rm echo", || {
        d.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "busybox",
            "echo",
            "hello",
        ])
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    let out = timed("run -d sleep", || {
        d.docker_ok(&["run", "-d", "--network", "none", IMAGE, "sleep", "1000"])
    });
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = d.docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Pid}} {{.NetworkSettings.SandboxKey}}",
        &id,
    ]);
    let inspected = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (pid, sandbox) = inspected.split_once(' ').expect("pid and sandbox key");
    let pid: i32 = pid.parse().expect("a pid");
    // The container sits in the harness's cgroup parent, its namespace under the exec root.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.lines().all(|l| l
            .split(':')
            .nth(2)
            .is_some_and(|p| p.starts_with(&cgroup_parent))),
        "container {pid} is not under {cgroup_parent}: {cgroups}"
    );
    assert!(
        Path::new(sandbox).starts_with(d.exec_root()),
        "sandbox {sandbox} is not under {}",
        d.exec_root().display()
    );
    assert!(d.processes().iter().any(|(p, _)| *p == pid));

    let daemon = d.pid();
    let left = timed("stop", || d.stop());
    assert!(left.is_empty(), "stopping the harness left:\n{left}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "container {pid} still runs"
    );
    assert!(
        !Path::new(&format!("/proc/{daemon}")).exists(),
        "dockerd {daemon} still runs"
    );
    assert!(!dir.exists());
    eprintln!("whole test: {:.2} s", test.elapsed().as_secs_f64());
}

/// What a test can still see of a harness after it is gone: its processes (by command
/// line or cgroup), mounts, cgroups and directory.
fn traces(dir: &Path, cgroup_parent: &str) -> Vec<String> {
    let dir_s = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        let in_parent = cgroup.lines().any(|l| {
            l.split(':')
                .nth(2)
                .is_some_and(|p| p == cgroup_parent || p.starts_with(&format!("{cgroup_parent}/")))
        });
        if cmdline.contains(&format!("{dir_s}/")) || in_parent {
            found.push(format!(
                "process {}: {cmdline}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    for m in switchyard_testkit::podman::mounts_under(dir) {
        found.push(format!("mount {}", m.display()));
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let c = h.path().join(cgroup_parent.trim_start_matches('/'));
        if c.exists() {
            found.push(format!("cgroup {}", c.display()));
        }
    }
    if dir.exists() {
        found.push(format!("directory {}", dir.display()));
    }
    found
}

#[test]
fn a_panic_with_a_container_running_leaves_nothing() {
    if !switchyard_testkit::fixtures::require_root() {
        return;
    }
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let d = Dockerd::require("sy-dockerd").unwrap();
        *seen.lock().unwrap() = Some((d.dir().to_path_buf(), d.cgroup_parent()));
        d.import_busybox(IMAGE);
        d.docker_ok(&["run", "-d", "--network", "none", IMAGE, "sleep", "1000"]);
        assert!(!traces(d.dir(), &d.cgroup_parent()).is_empty());
        panic!("a test failing with a container running");
    });
    assert!(result.is_err());
    let (dir, parent) = seen.into_inner().unwrap().expect("the harness started");
    let left = traces(&dir, &parent);
    assert!(left.is_empty(), "the unwinding left: {left:#?}");
}

#[test]
fn a_killed_dockerd_leaves_nothing_after_stop() {
    let Some(d) = Dockerd::require("sy-dockerd") else {
        return;
    };
    d.import_busybox(IMAGE);
    d.docker_ok(&["run", "-d", "--network", "none", IMAGE, "sleep", "1000"]);
    let sockets = d.shim_sockets();
    assert_eq!(
        sockets.len(),
        1,
        "one shim socket for one container: {sockets:?}"
    );
    // The daemon dies without stopping anything: containerd, the shim, the container
    // and the namespace mount stay for the harness to remove.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (dir, parent) = (d.dir().to_path_buf(), d.cgroup_parent());
    let left = timed("stop after SIGKILL", || d.stop());
    assert!(left.is_empty(), "stopping the harness left:\n{left}");
    assert!(
        traces(&dir, &parent).is_empty(),
        "{:#?}",
        traces(&dir, &parent)
    );
    for s in sockets {
        assert!(!s.exists(), "shim socket {} is still there", s.display());
    }
}
