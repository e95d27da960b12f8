//! The `switchyard` binary as a user runs it: `up FILE`, show, SIGTERM, a crash and
//! `down`, `check`, bad config files. The files are written as a user would: the
//! fixtures' `three` topology printed as TOML, and hand-written broken ones. Needs
//! root.

use switchyard_testkit::fixtures as common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use switchyard_os::netns;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

struct Scratch {
    dir: PathBuf,
    prefix: String,
}

impl Scratch {
    fn new() -> Scratch {
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("switchyard-cli-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, prefix }
    }

    /// Writes a config file; `PREFIX` in `text` becomes this test's prefix.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text.replace("PREFIX", &self.prefix)).unwrap();
        p
    }

    /// The fixtures' three endpoints a, b, c on one network, as a config file.
    fn three(&self) -> PathBuf {
        let text = three(&self.prefix).to_toml().expect("the fixture prints");
        self.file("three.toml", &text)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("SWITCHYARD_RUN_DIR", self.dir.join("run"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run").join(&self.prefix).join("control.sock")
    }

    fn namespaces(&self) -> Vec<String> {
        ["a", "b", "c"]
            .iter()
            .map(|e| format!("{}{e}", self.prefix))
            .collect()
    }

    fn up(&self, file: &Path) -> Running {
        let child = self
            .cmd()
            .arg("up")
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let r = Running(Some(child));
        wait_until(
            Duration::from_secs(20),
            "switchyard up to open its control socket",
            || self.socket().exists(),
        );
        r
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Whatever happened, leave nothing behind.
        let _ = self.cmd().args(["down", "--prefix", &self.prefix]).output();
        for n in self.namespaces() {
            let _ = netns::delete(&n);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child `switchyard up`, killed if the test panics.
struct Running(Option<Child>);

impl Running {
    fn signal(&mut self, sig: nix::sys::signal::Signal) -> Output {
        let child = self.0.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn up_creates_the_namespaces_and_a_private_control_socket() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let _up = s.up(&s.three());
    for n in s.namespaces() {
        assert!(netns::exists(&n), "{n} created");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket is private to root");
    switchyard_testkit::traffic::ping(
        &s.namespaces()[0],
        "172.17.0.3".parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
}

#[test]
fn show_finds_the_instance_by_prefix_or_by_config_file() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let file = s.three();
    let _up = s.up(&file);
    // a's ping teaches the FDB a's MAC.
    switchyard_testkit::traffic::ping(
        &s.namespaces()[0],
        "172.17.0.3".parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();

    let o = s.run(&["show", "fdb", "--prefix", &s.prefix]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.starts_with("NETWORK  MAC"), "{out}");
    assert!(out.contains("02:42:ac:11:00:02  a"), "{out}");

    let o = s.run(&[
        "show",
        "ports",
        "--json",
        "--config",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[1]["port"], "b");
    assert_eq!(v[1]["netns"], format!("{}b", s.prefix));

    let o = s.run(&["show", "counters", "--prefix", &s.prefix]);
    assert!(text(&o).contains("FORWARDED"), "{}", text(&o));
}

#[test]
fn down_refuses_while_the_instance_runs() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let _up = s.up(&s.three());
    let o = s.run(&["down", "--prefix", &s.prefix]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already running"), "{}", text(&o));
    for n in s.namespaces() {
        assert!(netns::exists(&n), "{n} left alone");
    }
}

#[test]
fn sigterm_exits_cleanly_and_removes_everything() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let mut up = s.up(&s.three());
    let o = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("ip netns exec") && out.contains("removed 3 namespace(s)"),
        "{out}"
    );
    assert_gone(&s.namespaces());
    assert!(!s.socket().exists());
}

#[test]
fn down_cleans_up_after_a_crash() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let file = s.three();
    let mut up = s.up(&file);
    // A crash: no chance to clean up.
    let o = up.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(!o.status.success());
    for n in s.namespaces() {
        assert!(netns::exists(&n), "{n} left behind by the crash");
    }
    // A new `up` refuses to run over the remains...
    let o = s.run(&["up", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("switchyard down"), "{}", text(&o));
    // ... and `down` removes them.
    let o = s.run(&["down", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed 3 namespace(s)"), "{}", text(&o));
    assert_gone(&s.namespaces());
    // Nothing left: a second `down` says so.
    let o = s.run(&["down", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nothing to clean up"), "{}", text(&o));
}

/// Overlapping subnets and an address outside its network.
const BAD: &str = r#"
[switch]
prefix = "PREFIX"
[[network]]
name = "front"
subnet = "10.1.0.0/24"
[[network]]
name = "back"
subnet = "10.1.0.128/25"
[[endpoint]]
name = "a"
network = "front"
ip = "10.9.0.2"
[[endpoint]]
name = "b"
network = "front"
mac = "02:42:0a:01:00:02"
"#;

#[test]
fn up_refuses_a_bad_config_before_anything_is_created() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let bad = s.file("bad.toml", BAD);
    let o = s.run(&["up", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains(bad.to_str().unwrap()), "names the file: {err}");
    assert!(
        err.contains("network \"back\".subnet") && err.contains("overlaps"),
        "{err}"
    );
    assert!(
        err.contains("endpoint \"a\".ip") && err.contains("outside"),
        "{err}"
    );
    assert_gone(&s.namespaces());
    assert!(!s
        .dir
        .join("run")
        .join(&s.prefix)
        .join("state.json")
        .exists());
}

#[test]
fn check_refuses_a_bad_config_and_says_where() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let bad = s.file("bad.toml", BAD);
    let o = s.run(&["check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let bad_mac = s.file("mac.toml", "[[network]]\nname = \"n\"\nsubnet = \"10.0.0.0/24\"\n[[endpoint]]\nname = \"x\"\nnetwork = \"n\"\nmac = \"02:42:0a\"\n");
    let o = s.run(&["check", bad_mac.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("bad MAC address") && text(&o).contains("line 7"),
        "{}",
        text(&o)
    );
}

#[test]
fn check_accepts_a_good_config() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let o = s.run(&["check", s.three().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 endpoint(s)"));
}

#[test]
fn check_prints_what_the_tables_take_and_refuses_reserved_addresses_and_huge_tables() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let net = "[[network]]\nname = \"o\"\nsubnet = \"198.51.100.0/24\"\ngateway = \"198.51.100.1\"\nexternal = true\n";
    let small = s.file(
        "small.toml",
        &format!("[switch]\nconntrack_max = 1024\n{net}"),
    );
    let big = s.file(
        "big.toml",
        &format!("[switch]\nconntrack_max = 1048576\n{net}"),
    );
    let o = s.run(&["check", small.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("tables at their maximum"), "{out}");
    assert!(out.contains("conntrack       1024 entries"), "{out}");
    let o = s.run(&["check", big.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let conntrack_line = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("conntrack"))
            .map(str::to_string)
            .unwrap()
    };
    assert!(conntrack_line(&text(&o)).contains("MiB"), "{}", text(&o));
    // The figure grows with the table: a thousand times the entries, several hundred
    // times the bytes at least.
    assert_ne!(conntrack_line(&out), conntrack_line(&text(&o)));

    let bad = s.file(
        "reserved.toml",
        "[switch]\nconntrack_max = 16777216\n[[network]]\nname = \"lo\"\nsubnet = \"127.0.0.0/8\"\n",
    );
    let o = s.run(&["check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("reserved.toml"), "names the file: {t}");
    assert!(
        t.contains("network \"lo\".subnet") && t.contains("loopback"),
        "field and reason: {t}"
    );
    assert!(
        t.contains("switch.conntrack_max") && t.contains("4194304"),
        "field and cap: {t}"
    );
}

#[test]
fn an_existing_namespace_is_never_taken_over() {
    if !require_root() {
        return;
    }
    let s = Scratch::new();
    let file = s.three();
    let foreign = format!("{}b", s.prefix);
    netns::create(&foreign).unwrap();
    let o = s.run(&["up", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("already exists and was not created by this switchyard"),
        "{}",
        text(&o)
    );
    assert!(
        netns::exists(&foreign),
        "the foreign namespace is left alone"
    );
    assert!(
        !netns::exists(&format!("{}a", s.prefix)),
        "nothing else was created"
    );
    netns::delete(&foreign).unwrap();
}
