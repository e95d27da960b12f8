//! The podman harness (switchyard_testkit::podman) itself, with only the standard
//! `loopback` CNI plugin, which touches no host interface: podman runs containers from
//! the scratch root filesystem on a network the test wrote, without a network when
//! told, exec and stop work, and dropping the harness leaves nothing behind — no
//! directory, mount, process, cgroup, network namespace or CNI cache file. Needs root,
//! podman, runc, busybox-static and containernetworking-plugins (.ci/run installs them).

use serde_json::json;
use std::path::{Path, PathBuf};
use switchyard_testkit::podman::{is_cache_file_of, mounts_under, text, Podman, CNI_CACHE};

/// Interface names `ip -o link` lists, without the `@peer` part.
fn links(ip_o_link: &str) -> Vec<String> {
    ip_o_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn cache_files(network: &str) -> Vec<String> {
    std::fs::read_dir(CNI_CACHE)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| is_cache_file_of(n, network))
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs of processes whose command line names `dir` (conmon names its bundle and
/// exit directories) or whose cgroup is under `cgroup_parent`.
fn processes_of(dir: &Path, cgroup_parent: &str) -> Vec<(u32, String)> {
    let dir = dir.to_str().unwrap();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        let in_cgroup = cgroup.lines().any(|l| {
            l.split(':')
                .nth(2)
                .is_some_and(|p| p.starts_with(cgroup_parent))
        });
        if cmdline.contains(dir) || in_cgroup {
            found.push((pid, cmdline));
        }
    }
    found
}

#[test]
fn a_container_on_a_loopback_network_says_hello() {
    let Some(pm) = Podman::require("sy-podman") else {
        return;
    };
    // The standard loopback plugin behind a script that records what podman asks of
    // it: runc brings lo up by itself, so only the record shows the plugin ran.
    let log = pm.dir().join("plugin.log");
    let recorder = pm.dir().join("recorder.sh");
    std::fs::write(
        &recorder,
        format!(
            "#!/bin/sh\n\
             conf=$(cat)\n\
             printf '%s %s %s %s\\n' \"$CNI_COMMAND\" \"$CNI_IFNAME\" \"$CNI_CONTAINERID\" \
             \"$(printf '%s' \"$conf\" | tr -d '\\n')\" >> {log}\n\
             printf '%s' \"$conf\" | exec /usr/lib/cni/loopback\n",
            log = log.display()
        ),
    )
    .unwrap();
    pm.install_plugin("sy-recorder", &recorder);
    let net = pm.add_conflist("lo", json!([{ "type": "sy-recorder" }]));
    assert!(net.starts_with(pm.prefix()));

    // Podman reads the scratch network directory, not the machine's.
    let ls = pm.run(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.status.success(), "{}", text(&ls));
    let names: Vec<&str> = std::str::from_utf8(&ls.stdout).unwrap().lines().collect();
    assert!(names.contains(&net.as_str()), "{names:?}");

    let out = pm.run_container(Some(&net), &[], "echo hello");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    // ADD when the container started and DEL when `--rm` removed it, for the same
    // container, on eth0, with the conflist's name and version.
    let log = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<(&str, &str, &str, serde_json::Value)> = log
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(4, ' ');
            let (cmd, ifname, id) = (w.next()?, w.next()?, w.next()?);
            let conf = serde_json::from_str(w.next()?).ok()?;
            matches!(cmd, "ADD" | "DEL").then_some((cmd, ifname, id, conf))
        })
        .collect();
    let commands: Vec<&str> = calls.iter().map(|c| c.0).collect();
    assert_eq!(commands, ["ADD", "DEL"], "{log}");
    assert_eq!(calls[0].2, calls[1].2, "{log}");
    assert_eq!(calls[0].2.len(), 64, "{log}");
    for (_, ifname, _, conf) in &calls {
        assert_eq!(*ifname, "eth0");
        assert_eq!(conf["name"], net.as_str());
        assert_eq!(conf["cniVersion"], "0.4.0");
    }

    // `--rm` leaves no cache file: DEL removed it.
    assert_eq!(cache_files(&net), Vec::<String>::new());
}

#[test]
fn without_a_network_a_container_has_only_lo() {
    let Some(pm) = Podman::require("sy-podman") else {
        return;
    };
    let out = pm.run_container(Some("none"), &[], "ip -o link");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(links(&String::from_utf8_lossy(&out.stdout)), ["lo"]);

    // Naming no network gives the same: the scratch configuration's default, where
    // podman's own would be a bridge on the host.
    let out = pm.run_container(None, &[], "ip -o link");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(links(&String::from_utf8_lossy(&out.stdout)), ["lo"]);
}

#[test]
fn dropping_the_harness_leaves_nothing_behind() {
    let Some(pm) = Podman::require("sy-podman") else {
        return;
    };
    // A plugin installed into the scratch plugin directory, under a name of its own.
    pm.install_plugin("sy-loopback", Path::new("/usr/lib/cni/loopback"));
    let net = pm.add_conflist("own", json!([{ "type": "sy-loopback" }]));

    // One container stopped by the test: exec works, stop calls DEL.
    let a = pm
        .run_detached("a", Some(&net), &[])
        .unwrap_or_else(|o| panic!("{}", text(&o)));
    let out = pm.exec(&a, "echo in-$(hostname)");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("in-"));
    assert_eq!(cache_files(&net).len(), 1, "ADD's result is cached");
    let out = pm.stop(&a);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pm.inspect(&a, "{{.State.Status}}"), "exited");
    assert_eq!(cache_files(&net), Vec::<String>::new(), "stop calls DEL");
    let out = pm.rm_force(&a);
    assert!(out.status.success(), "{}", text(&out));

    // One left running for the drop.
    let b = pm
        .run_detached("b", Some(&net), &[])
        .unwrap_or_else(|o| panic!("{}", text(&o)));
    assert_eq!(pm.inspect(&b, "{{.State.Status}}"), "running");
    let netns = PathBuf::from(pm.inspect(&b, "{{.NetworkSettings.SandboxKey}}"));
    assert!(netns.exists(), "{}", netns.display());
    assert_eq!(cache_files(&net).len(), 1);
    assert!(!pm.cgroup_pids().is_empty());
    assert!(!pm.cgroup_dirs().is_empty());
    assert!(
        !mounts_under(pm.dir()).is_empty(),
        "the container's /dev/shm"
    );

    let dir = pm.dir().to_path_buf();
    let parent = pm.cgroup_parent();
    let cgroups = pm.cgroup_dirs();
    drop(pm);

    assert!(!dir.exists(), "{} is left", dir.display());
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!netns.exists(), "{} is left", netns.display());
    assert_eq!(cache_files(&net), Vec::<String>::new());
    assert_eq!(processes_of(&dir, &parent), Vec::new());
    for c in cgroups {
        assert!(!c.exists(), "cgroup {} is left", c.display());
    }
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    if !switchyard_testkit::fixtures::require_root() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::panic::catch_unwind(move || {
        let pm = Podman::require("sy-podman").unwrap();
        let net = pm.add_conflist("lo", json!([{ "type": "loopback" }]));
        let c = pm
            .run_detached("a", Some(&net), &[])
            .unwrap_or_else(|o| panic!("{}", text(&o)));
        let netns = PathBuf::from(pm.inspect(&c, "{{.NetworkSettings.SandboxKey}}"));
        tx.send((pm.dir().to_path_buf(), pm.cgroup_parent(), net, netns))
            .unwrap();
        panic!("the test fails with its container running");
    });
    assert!(panicked.is_err());
    let (dir, parent, net, netns) = rx.recv().expect("the container started");
    assert!(!dir.exists(), "{} is left", dir.display());
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!netns.exists(), "{} is left", netns.display());
    assert_eq!(cache_files(&net), Vec::<String>::new());
    assert_eq!(processes_of(&dir, &parent), Vec::new());
}
