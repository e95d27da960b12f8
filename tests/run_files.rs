//! Files and names as root: what switchyard refuses to trust. A run directory others
//! can write, a symlink planted at the state file's temporary path, a namespace that
//! someone else re-created under a name switchyard recorded, a prefix that is a path.
//! Needs root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard::topology::{setup, Deployment, SetupError};
use switchyard_os::netns;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A directory of the test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("switchyard-rf-{tag}-{}", unique_prefix()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn refused(r: Result<Deployment, SetupError>) -> String {
    match r {
        Ok(_) => panic!("setup should have been refused"),
        Err(e @ SetupError::UnsafeRunDir { .. }) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
    }
}

#[test]
fn a_run_directory_others_can_write_is_refused() {
    if !require_root() {
        return;
    }
    let topo = build(three(&unique_prefix()));
    let dir = Dir::new("open");
    let root = dir.0.join("run");
    std::fs::create_dir(&root).unwrap();

    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = refused(Deployment::create(&topo, &root));
    assert!(e.contains("0777") && e.contains("everyone"), "{e}");
    assert_gone(&namespaces(&topo));

    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o775)).unwrap();
    let e = refused(Deployment::create(&topo, &root));
    assert!(e.contains("its group"), "{e}");

    // Owned by someone else, however tight its mode.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let e = refused(Deployment::create(&topo, &root));
    assert!(e.contains("owned by uid 65534"), "{e}");
    assert_gone(&namespaces(&topo));

    // A symlink in place of the instance directory.
    std::os::unix::fs::chown(&root, Some(0), Some(0)).unwrap();
    let elsewhere = dir.0.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join(&topo.prefix)).unwrap();
    let e = refused(Deployment::create(&topo, &root));
    assert!(e.contains("symbolic link"), "{e}");

    // `down` reads a state file from it only if nobody else could have written it.
    std::fs::remove_file(root.join(&topo.prefix)).unwrap();
    std::fs::create_dir(root.join(&topo.prefix)).unwrap();
    std::fs::write(root.join(&topo.prefix).join("state.json"), "{}").unwrap();
    std::fs::set_permissions(
        root.join(&topo.prefix),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let e = setup::down(&topo.prefix, &root).unwrap_err();
    assert!(matches!(e, SetupError::UnsafeRunDir { .. }), "{e}");
}

#[test]
fn a_symlink_at_the_state_temporary_is_not_followed() {
    if !require_root() {
        return;
    }
    let topo = build(three(&unique_prefix()));
    let dir = Dir::new("symlink");
    let root = dir.0.join("run");
    let victim = dir.0.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // The instance directory as a crash (of an older switchyard, which made it 0755)
    // left it, with a symlink planted where the state's temporary goes.
    let inst = root.join(&topo.prefix);
    std::fs::create_dir_all(&inst).unwrap();
    std::fs::set_permissions(&inst, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&victim, inst.join("state.json.tmp")).unwrap();

    std::fs::set_permissions(&inst, std::fs::Permissions::from_mode(0o755)).unwrap();

    let d = Deployment::create(&topo, &root).expect("setup goes ahead");
    let mode = std::fs::metadata(&inst).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the instance directory is made private");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let state = std::fs::symlink_metadata(inst.join("state.json")).unwrap();
    assert!(
        state.file_type().is_file(),
        "the state is a file of its own"
    );
    assert_eq!(state.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(inst.join("state.json")).unwrap();
    assert!(
        text.contains(&topo.prefix) && text.contains("\"cookie\""),
        "{text}"
    );
    d.teardown().unwrap();
    assert_gone(&namespaces(&topo));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn a_namespace_recreated_under_a_recorded_name_survives_down() {
    if !require_root() {
        return;
    }
    let topo = build(three(&unique_prefix()));
    let dir = Dir::new("recreated");
    let root = dir.0.join("run");
    let mut d = Deployment::create(&topo, &root).expect("setup");
    // A crash: the TAPs close with the process, the namespaces and state stay.
    drop(d.take_ports());
    std::mem::forget(d);
    let names = namespaces(&topo);
    // Our `a` went away and another tool made a namespace of that name (the kernel
    // even gives it the freed one's inode number).
    assert!(netns::delete(&names[0]).unwrap());
    netns::create(&names[0]).unwrap();
    let guard = Cleanup(names[0].clone());

    let removed = setup::down(&topo.prefix, &root).expect("down");
    assert!(
        netns::exists(&names[0]),
        "the other tool's namespace survives"
    );
    assert!(!removed.contains(&names[0]), "{removed:?}");
    assert_gone(&names[1..]);
    assert!(!root.join(&topo.prefix).join("state.json").exists());
    drop(guard);
}

/// Removes a namespace the test made itself.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

#[test]
fn a_prefix_that_is_not_a_name_is_refused() {
    if !require_root() {
        return;
    }
    let dir = Dir::new("prefix");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .env("SWITCHYARD_RUN_DIR", dir.0.join("run"))
            .args(args)
            .output()
            .unwrap()
    };
    for bad in ["../../etc", "a/b", "..", "", "much-too-long-prefix-"] {
        for verb in ["down", "show"] {
            let mut args = vec![verb];
            if verb == "show" {
                args.push("ports");
            }
            args.extend(["--prefix", bad]);
            let o = run(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{args:?}");
            assert!(
                err.contains("--prefix") && err.contains("must be 1 to 12 characters"),
                "{args:?}: {err}"
            );
        }
    }
    let e = setup::down("../x", Path::new(&dir.0)).unwrap_err();
    assert!(matches!(e, SetupError::BadPrefix(_)), "{e}");
}
