//! Shared setup for integration tests: unique names per test, root checks, and a
//! running switch that is torn down even when the test panics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use switchyard::control::Switchyard;
use switchyard::topology::{config, Topology};
use switchyard_os::netns;

/// Tests need root (namespaces, TAPs). Without it they fail with this message,
/// unless SWITCHYARD_SKIP_ROOT_TESTS=1 explicitly skips them. Returns false to skip.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("SWITCHYARD_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: not root and SWITCHYARD_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!(
        "this test creates network namespaces and TAP devices and must run as root \
         (sudo -E cargo test); set SWITCHYARD_SKIP_ROOT_TESTS=1 to skip it explicitly"
    );
}

/// A prefix unique to this test in this run: `t<pid><letter>-`.
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "t{}{}-",
        std::process::id(),
        char::from(b'a' + (n % 26) as u8)
    )
}

/// Where test instances keep sockets and state files.
pub fn run_root() -> PathBuf {
    std::env::temp_dir().join("switchyard-tests")
}

/// Parses a topology with `PREFIX` replaced by a fresh unique prefix.
pub fn topology(toml_with_prefix: &str) -> Topology {
    let prefix = unique_prefix();
    let text = toml_with_prefix.replace("PREFIX", &prefix);
    config::parse(&text, "test topology").expect("test topology is valid")
}

/// Starts a switch; it is stopped and everything removed when the returned value is
/// dropped, including during a panic's unwinding.
pub fn start(topo: Topology) -> Switchyard {
    Switchyard::start(topo, &run_root()).expect("switchyard starts")
}

/// Names of the namespaces a topology uses.
pub fn namespaces(t: &Topology) -> Vec<String> {
    t.endpoints.iter().map(|e| e.netns.clone()).collect()
}

/// Asserts that none of `names` exists any more.
pub fn assert_gone(names: &[String]) {
    for n in names {
        assert!(!netns::exists(n), "namespace {n} still exists");
    }
}

/// Three endpoints on one network, like three containers on docker0.
pub const THREE: &str = r#"
[switch]
prefix = "PREFIX"

[[network]]
name = "default"
subnet = "172.17.0.0/16"
gateway = "172.17.0.1"

[[endpoint]]
name = "a"
network = "default"
ip = "172.17.0.2"

[[endpoint]]
name = "b"
network = "default"
ip = "172.17.0.3"

[[endpoint]]
name = "c"
network = "default"
ip = "172.17.0.4"
"#;

/// A table of a running instance, from its control socket, as the CLI's `--json` has it.
pub fn show<T: serde::de::DeserializeOwned>(
    sy: &Switchyard,
    table: switchyard::control::protocol::Table,
) -> T {
    let reply = switchyard::control::client::request(
        sy.socket(),
        &switchyard::control::protocol::Request::Show { table },
    )
    .expect("the control socket answers");
    serde_json::from_value(reply.payload()).expect("the answer has the documented shape")
}
