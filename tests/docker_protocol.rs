//! The Docker driver's protocol spoken directly, as dockerd speaks it, without a
//! dockerd: what each verb does to switchyard, step by step (the TAP handed over in
//! `Join` and moved into a namespace as Docker moves it), the socket's safety, and a
//! restart that finds one container still running and one gone. The whole story with a
//! real dockerd is tests/docker_driver.rs. Needs root.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::fixtures::{nat, require_root};
use switchyard_testkit::process::{text, DriverInstance, Instance, Up};
use switchyard_testkit::traffic;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const NET: &str = "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9012345";
const EP1: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90aabbccdd";
const EP2: &str = "b1b2c3d4e5f60718293a4b5c6d7e8f90aabbccdd";

struct Plugin {
    drv: DriverInstance,
    /// Namespaces this test made, as Docker makes a sandbox.
    sandboxes: Vec<String>,
}

impl Plugin {
    fn new() -> Plugin {
        Plugin {
            drv: DriverInstance::new(Path::new(BIN), "dockerproto", nat),
            sandboxes: Vec::new(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.drv.socket()
    }

    fn up(&self) -> Up {
        self.drv.up()
    }

    /// One POST, as dockerd sends it: the status and the JSON answer.
    fn post(&self, verb: &str, body: Value) -> (u16, Value) {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.to_string();
        write!(
            s,
            "POST /{verb} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let status: u16 = answer[9..12].parse().unwrap();
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    fn ok(&self, verb: &str, body: Value) -> Value {
        let (status, v) = self.post(verb, body);
        assert_eq!(status, 200, "{verb}: {v}");
        v
    }

    /// A namespace standing for a container's sandbox.
    fn sandbox(&mut self, tag: &str) -> String {
        let name = format!("{}{tag}", self.drv.inst.prefix);
        netns::create(&name).unwrap();
        self.sandboxes.push(name.clone());
        format!("/run/netns/{name}")
    }

    fn sy_json(&self, args: &[&str]) -> Value {
        self.drv.sy(args)
    }

    fn docker_ls(&self) -> String {
        self.drv.docker_ls()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        for s in &self.sandboxes {
            let _ = netns::delete(s);
        }
    }
}

/// A ping from namespace `ns` to `to` is answered (three tries: the first may wait
/// for ARP).
fn ping(ns: &str, to: &str) -> bool {
    let to = to.parse().unwrap();
    (0..3).any(|_| traffic::ping(ns, to, Duration::from_secs(1)).is_ok())
}

/// What Docker does with the interface a `Join` names: moves it from switchyard's
/// namespace into the sandbox, names it `eth0`, gives it the address and the default
/// route, and brings it up.
fn move_in_as_docker_does(device: &str, sandbox: &str, addr: &str, gateway: &str) -> u32 {
    let ns = netns::open_path(Path::new(sandbox)).unwrap();
    let mut r = Rtnl::new().unwrap();
    let i = r.link_index(device).unwrap();
    r.link_set_netns(i, ns.as_fd()).unwrap();
    let (ip, len) = addr.split_once('/').unwrap();
    let (ip, len): (std::net::Ipv4Addr, u8) = (ip.parse().unwrap(), len.parse().unwrap());
    let gw: std::net::Ipv4Addr = gateway.parse().unwrap();
    let device = device.to_string();
    netns::run_in(&ns, move || {
        let mut r = Rtnl::new().unwrap();
        let lo = r.link_index("lo").unwrap();
        r.link_set_up(lo).unwrap();
        let i = r.link_index(&device).unwrap();
        r.link_set_name(i, "eth0").unwrap();
        r.addr_add_v4(i, ip, len).unwrap();
        r.link_set_up(i).unwrap();
        r.route_add_v4(std::net::Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(i))
            .unwrap();
        r.links()
            .unwrap()
            .into_iter()
            .find(|l| l.name == "eth0")
            .and_then(|l| l.mtu)
            .unwrap()
    })
    .unwrap()
}

fn create_network(p: &Plugin) {
    p.ok(
        "NetworkDriver.CreateNetwork",
        json!({
            "NetworkID": NET,
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {"mtu": "1400", "name": "apps"}
            },
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.214.0.0/24",
                          "Gateway": "10.214.0.1/24", "AuxAddresses": null}],
            "IPv6Data": []
        }),
    );
}

/// CreateEndpoint and Join; returns the device named in the answer.
fn join(p: &Plugin, ep: &str, addr: &str, sandbox: &str, host_port: u16) -> (String, Value) {
    let a = p.ok(
        "NetworkDriver.CreateEndpoint",
        json!({
            "NetworkID": NET, "EndpointID": ep,
            "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": host_port, "HostPortEnd": host_port}
            ]}
        }),
    );
    let j = p.ok(
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": ep, "SandboxKey": sandbox, "Options": {}}),
    );
    let device = j["InterfaceName"]["SrcName"].as_str().unwrap().to_string();
    assert_eq!(j["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(j["Gateway"], "10.214.0.1");
    assert_eq!(j["DisableGatewayService"], true);
    (device, a)
}

#[test]
fn each_verb_does_what_docker_expects_and_a_restart_reports_the_gone() {
    if !require_root() {
        return;
    }
    let mut p = Plugin::new();
    let mut up = p.up();
    // The socket: root's alone.
    let mode = std::fs::metadata(p.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let act = p.ok("Plugin.Activate", json!({}));
    assert_eq!(act["Implements"], json!(["NetworkDriver"]));
    let (status, v) = p.post("NetworkDriver.Frobnicate", json!({}));
    assert_eq!(status, 404, "{v}");

    create_network(&p);
    let net = p.sy_json(&["network", "inspect", "apps"]);
    assert_eq!(net["subnet"], "10.214.0.0/24");
    assert_eq!(net["gateway"], "10.214.0.1");
    assert_eq!(net["mtu"], 1400);

    // A container joins: its TAP waits in switchyard's namespace, MTU already set.
    let s1 = p.sandbox("c1");
    let (dev, created) = join(&p, EP1, "10.214.0.2/24", &s1, 8082);
    assert_eq!(created["Interface"]["MacAddress"], "02:42:0a:d6:00:02");
    assert!(
        dev.starts_with(&p.drv.inst.prefix),
        "{dev} carries the instance's prefix"
    );
    assert!(Rtnl::new().unwrap().link_exists(&dev).unwrap());
    let mtu = move_in_as_docker_does(&dev, &s1, "10.214.0.2/24", "10.214.0.1");
    assert_eq!(mtu, 1400);
    p.ok(
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": NET, "EndpointID": EP1, "Options": {}}),
    );
    let s1_name = s1.trim_start_matches("/run/netns/").to_string();
    assert!(
        ping(&s1_name, "10.214.0.1"),
        "the container reaches the gateway"
    );
    let ep = p.sy_json(&["endpoint", "ls"]);
    let row = ep
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == EP1[..12])
        .unwrap_or_else(|| panic!("no endpoint {} in {ep}", &EP1[..12]))
        .clone();
    assert_eq!(row["publish"], json!(["8082:80/tcp"]));
    // Docker's answer to an unknown network is a refusal in words.
    let (status, v) = p.post(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": "nope", "EndpointID": EP2,
               "Interface": {"Address": "10.214.0.3/24"}}),
    );
    assert_eq!(status, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("not one of this switchyard's"),
        "{v}"
    );

    // A second container joins; then switchyard restarts, and meanwhile the second
    // container goes away.
    let s2 = p.sandbox("c2");
    // Docker's bridge refuses a host port taken twice before a container starts; so
    // does switchyard, at CreateEndpoint.
    let (status, v) = p.post(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP2,
               "Interface": {"Address": "10.214.0.3/24"},
               "Options": {"com.docker.network.portmap": [
                   {"Proto": 6, "Port": 81, "HostPort": 8082, "HostPortEnd": 8082}]}}),
    );
    assert_eq!(status, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("8082/tcp is published already"),
        "{v}"
    );
    let (dev2, _) = join(&p, EP2, "10.214.0.3/24", &s2, 8083);
    move_in_as_docker_does(&dev2, &s2, "10.214.0.3/24", "10.214.0.1");
    p.ok(
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": NET, "EndpointID": EP2, "Options": {}}),
    );
    let out = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!p.socket().exists(), "the plugin socket goes at exit");
    let gone = p.sandboxes.pop().unwrap();
    netns::delete(&gone).unwrap();
    let listed = p.docker_ls();
    assert!(listed.contains("container gone"), "{listed}");
    let mut up = p.up();
    assert!(
        ping(&s1_name, "10.214.0.1"),
        "the running container is attached again"
    );
    let ep = p.sy_json(&["endpoint", "ls"]);
    let names: Vec<&str> = ep
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&&EP1[..12]) && !names.contains(&&EP2[..12]),
        "{names:?}"
    );
    let listed = p.docker_ls();
    assert!(
        listed.contains("attached") && listed.contains("container gone"),
        "{listed}"
    );

    // The re-attached container's MAC is in the FDB (it pinged); Leave takes it out.
    let fdb_has = |mac: &str| {
        p.sy_json(&["show", "fdb"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["mac"] == mac)
    };
    assert!(fdb_has("02:42:0a:d6:00:02"));

    // Docker cleans up: Leave and DeleteEndpoint of both (the gone one too), then
    // DeleteNetwork.
    for ep in [EP1, EP2] {
        let id = json!({"NetworkID": NET, "EndpointID": ep});
        p.ok("NetworkDriver.RevokeExternalConnectivity", id.clone());
        p.ok("NetworkDriver.Leave", id.clone());
        p.ok("NetworkDriver.DeleteEndpoint", id);
    }
    assert!(
        !fdb_has("02:42:0a:d6:00:02"),
        "Leave removed the endpoint's FDB entry"
    );
    let s1_has_eth0 = netns::run_in_named(&s1_name, || {
        Rtnl::new().unwrap().link_exists("eth0").unwrap()
    })
    .unwrap();
    assert!(
        !s1_has_eth0,
        "Leave closed the TAP, and the device went with it"
    );
    p.ok("NetworkDriver.DeleteNetwork", json!({"NetworkID": NET}));
    let nets = p.sy_json(&["network", "ls"]);
    assert!(
        !nets.as_array().unwrap().iter().any(|n| n["name"] == "apps"),
        "{nets}"
    );
    // An internal network: Docker is given no gateway, so the container gets no
    // default route through it.
    p.ok(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "internal0123456789", "Options": {"com.docker.network.internal": true},
               "IPv4Data": [{"Pool": "10.216.0.0/24", "Gateway": "10.216.0.1/24"}]}),
    );
    let inet = p.sy_json(&["network", "inspect", "internal0123"]);
    assert_eq!(inet["internal"], true);
    assert_eq!(inet["masquerade"], false);
    p.ok(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": "internal0123456789", "EndpointID": EP1,
               "Interface": {"Address": "10.216.0.2/24"}}),
    );
    let s3 = p.sandbox("c3");
    let j = p.ok(
        "NetworkDriver.Join",
        json!({"NetworkID": "internal0123456789", "EndpointID": EP1, "SandboxKey": s3}),
    );
    assert_eq!(j.get("Gateway"), None, "{j}");
    let id = json!({"NetworkID": "internal0123456789", "EndpointID": EP1});
    p.ok("NetworkDriver.Leave", id.clone());
    p.ok("NetworkDriver.DeleteEndpoint", id);
    p.ok(
        "NetworkDriver.DeleteNetwork",
        json!({"NetworkID": "internal0123456789"}),
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&p.drv.state).unwrap()).unwrap();
    assert_eq!(state["networks"], json!({}));
    assert_eq!(state["endpoints"], json!({}));
    let out = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_second_driver_of_the_same_name_is_refused_and_a_stale_socket_replaced() {
    if !require_root() {
        return;
    }
    let p = Plugin::new();
    // A socket file nobody answers on, as a killed switchyard leaves it.
    std::fs::create_dir_all("/run/docker/plugins").unwrap();
    let stale = std::os::unix::net::UnixListener::bind(p.socket()).unwrap();
    drop(stale);
    let mut up = p.up();
    assert_eq!(
        p.ok("Plugin.Activate", json!({}))["Implements"],
        json!(["NetworkDriver"])
    );
    // The same name again, from another instance: refused, and that instance cleans up.
    let other = Instance::new(Path::new(BIN), "dockerproto2");
    let out = other
        .cmd()
        .arg("up")
        .arg(&other.config)
        .args(["--docker-driver", &p.drv.name, "--docker-state"])
        .arg(other.dir.join("s.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("is in use"), "{}", text(&out));
    for n in other.namespaces() {
        assert!(!netns::exists(&n), "{n} left behind");
    }
    // The first one still answers.
    assert_eq!(
        p.ok("Plugin.Activate", json!({}))["Implements"],
        json!(["NetworkDriver"])
    );
    let out = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!p.socket().exists());
}
