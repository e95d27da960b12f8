//! The plugin against a real switchyard (in this process, on the fixtures' `three`
//! topology: network `default` 172.17.0.0/16, endpoints a .2, b .3, c .4) and a
//! namespace the test makes as a runtime would: ADD gives the namespace an interface
//! that reaches the other endpoints, CHECK passes, a second ADD is refused, DEL
//! removes the interface, and a container whose namespace vanished without a DEL is
//! caught by CHECK and attached again by the next ADD. Needs root.

use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;
use switchyard::control::client;
use switchyard::control::protocol::{Reply, Request};
use switchyard_os::netns;
use switchyard_testkit::fixtures::{
    build, require_root, run_root, start, three, unique_prefix, wait_until,
};
use switchyard_testkit::traffic::ping;

const ID: &str = "5c0ffee5c0ffee00112233445566778899aabbccddeeff00112233445566778899";
const NAME: &str = "c-5c0ffee5c0ff";

/// A namespace made as a runtime makes a container's, removed when dropped.
struct Ns(String);

impl Ns {
    fn new(name: String) -> Ns {
        netns::create(&name).unwrap();
        Ns(name)
    }

    fn path(&self) -> String {
        netns::path_of(&self.0)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Runs the plugin: exit status and stdout (empty, or one JSON value).
fn plugin(command: &str, netns: &str, stdin: &Value) -> (i32, Option<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-cni"))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", ID)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v = (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap());
    (out.status.code().unwrap(), v)
}

fn endpoint_names(socket: &std::path::Path) -> Vec<String> {
    match client::request(socket, &Request::EndpointLs {}).unwrap() {
        Reply::Endpoints(rows) => rows.into_iter().map(|r| r.name).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_container_namespace_is_attached_checked_and_detached() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(build(three(&prefix)));
    let ctr = Ns::new(format!("{prefix}ctr"));
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "synet",
        "type": "switchyard-cni",
        "network": "default",
        "prefix": prefix,
        "runDir": run_root().to_str().unwrap(),
    });

    let (code, result) = plugin("ADD", &ctr.path(), &conf);
    let result = result.unwrap();
    assert_eq!(code, 0, "{result}");
    // The lowest free address, after a, b and c.
    assert_eq!(result["ips"][0]["address"], "172.17.0.5/16");
    assert_eq!(result["ips"][0]["gateway"], "172.17.0.1");
    assert_eq!(result["interfaces"][0]["sandbox"], ctr.path());
    // `default` is docker0's network: no DNS server, nothing to tell the runtime.
    assert_eq!(result["dns"], json!({}));
    assert!(endpoint_names(sy.socket()).contains(&NAME.to_string()));
    // The container's name (K8S_POD_NAME) is the endpoint's DNS name.
    match client::request(sy.socket(), &Request::EndpointLs {}).unwrap() {
        Reply::Endpoints(rows) => {
            let row = rows.iter().find(|r| r.name == NAME).unwrap();
            assert_eq!(row.aliases, ["web"]);
        }
        other => panic!("{other:?}"),
    }
    // The runtime's namespace is the runtime's: switchyard writes no resolv.conf for it.
    assert!(!std::path::Path::new("/etc/netns").join(&ctr.0).exists());
    ping(&ctr.0, Ipv4Addr::new(172, 17, 0, 2), Duration::from_secs(2))
        .expect("the container reaches endpoint a");

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result;
    let (code, out) = plugin("CHECK", &ctr.path(), &with_prev);
    assert_eq!((code, out), (0, None));

    let (code, out) = plugin("ADD", &ctr.path(), &conf);
    assert_eq!(code, 1);
    assert_eq!(out.unwrap()["code"], 101);

    // if_nametoindex asks the kernel through a socket, made in the namespace the
    // thread is in (sysfs would show the namespace it was mounted in instead).
    let in_ns = |name: &str| {
        netns::run_in_named(&ctr.0, || nix::net::if_::if_nametoindex(name).is_ok()).unwrap()
    };
    assert!(in_ns("eth0"));
    let (code, out) = plugin("DEL", &ctr.path(), &with_prev);
    assert_eq!((code, out), (0, None));
    assert!(!endpoint_names(sy.socket()).contains(&NAME.to_string()));
    assert!(!in_ns("eth0"), "DEL leaves no interface in the namespace");
    // DEL again: nothing left, still success.
    let (code, out) = plugin("DEL", &ctr.path(), &with_prev);
    assert_eq!((code, out), (0, None));
}

#[test]
fn a_namespace_gone_without_del_fails_check_and_is_replaced_by_add() {
    if !require_root() {
        return;
    }
    let prefix = unique_prefix();
    let sy = start(build(three(&prefix)));
    let first = Ns::new(format!("{prefix}ctr1"));
    let conf = json!({
        "cniVersion": "0.4.0",
        "name": "synet",
        "type": "switchyard-cni",
        "network": "default",
        "prefix": prefix,
        "runDir": run_root().to_str().unwrap(),
    });
    let (code, result) = plugin("ADD", &first.path(), &conf);
    assert_eq!(code, 0);
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.unwrap();
    let old_path = first.path();
    drop(first);

    // switchyard notices the namespace went and marks the port down.
    wait_until(Duration::from_secs(5), "CHECK fails", || {
        plugin("CHECK", &old_path, &with_prev).0 != 0
    });
    let (_, out) = plugin("CHECK", &old_path, &with_prev);
    let out = out.unwrap();
    assert_eq!(out["code"], 103, "{out}");

    // The container starts again in a new namespace, with no DEL in between.
    let second = Ns::new(format!("{prefix}ctr2"));
    let (code, result) = plugin("ADD", &second.path(), &conf);
    let result = result.unwrap();
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["interfaces"][0]["sandbox"], second.path());
    ping(
        &second.0,
        Ipv4Addr::new(172, 17, 0, 3),
        Duration::from_secs(2),
    )
    .expect("the container reaches endpoint b from its new namespace");
    let (code, _) = plugin("DEL", &second.path(), &conf);
    assert_eq!(code, 0);
    assert!(!endpoint_names(sy.socket()).contains(&NAME.to_string()));
}
