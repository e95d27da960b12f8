//! switchyard as Docker's network, end to end: a scratch dockerd (the testkit's
//! `Dockerd`) and `switchyard up --docker-driver` as an operator runs them. Docker
//! creates switchyard networks, runs busybox containers on them that reach each other,
//! the gateway and, through a published port, a host beyond the uplink; a container is
//! connected to a second network and disconnected; switchyard restarts and attaches the
//! running containers again; everything is removed and nothing is left: not the plugin
//! socket, nor dockerd, its namespaces or its cgroups. Needs root.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::path::Path;
use std::time::Duration;
use switchyard_os::netns;
use switchyard_testkit::docker::Dockerd;
use switchyard_testkit::fixtures::{namespaces_with, nat, wait_for, wait_until};
use switchyard_testkit::process::{text, DriverInstance};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const IMAGE: &str = "syboxdrv:1";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `docker inspect` of a container: its address on network `net`.
fn ip_on(d: &Dockerd, ctr: &str, net: &str) -> String {
    let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
    stdout(&d.docker_ok(&["inspect", "-f", &f, ctr]))
}

fn ping(d: &Dockerd, ctr: &str, to: &str) -> bool {
    d.docker(&["exec", ctr, "ping", "-c", "1", "-W", "2", to])
        .status
        .success()
}

/// An HTTP GET of `/index.html` at 198.51.100.1:8082 from the namespace `ns`: the
/// body, or why not.
fn get_published(ns: &str) -> Result<String, String> {
    netns::run_in_named(ns, || -> Result<String, String> {
        let to = SocketAddrV4::new([198, 51, 100, 1].into(), 8082);
        let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        Ok(body)
    })
    .map_err(|e| e.to_string())?
}

/// Docker's view of a network against switchyard's: the same subnet and gateway, and
/// the same containers with the same addresses and MACs (switchyard's endpoint names
/// are Docker's short endpoint IDs).
fn assert_views_agree(d: &Dockerd, drv: &DriverInstance, net: &str) -> String {
    let out = d.docker_ok(&["network", "inspect", net]);
    let docker: Value = serde_json::from_slice(&out.stdout).unwrap();
    let docker = &docker[0];
    let id = docker["Id"].as_str().unwrap();
    let sy_name = &id[..12];
    let sy = drv.sy(&["network", "inspect", sy_name]);
    assert_eq!(sy["subnet"], docker["IPAM"]["Config"][0]["Subnet"], "{sy}");
    // Docker shows a gateway only where `--gateway` gave one; its IPAM's default is
    // the subnet's first host address, as switchyard's.
    match &docker["IPAM"]["Config"][0]["Gateway"] {
        Value::Null => {
            let subnet = docker["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
            let first = subnet.trim_end_matches("0/24").to_string() + "1";
            assert_eq!(sy["gateway"], first.as_str(), "{sy}");
        }
        gw => assert_eq!(&sy["gateway"], gw, "{sy}"),
    }
    let mut want: Vec<(String, String, String)> = docker["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| {
            (
                c["EndpointID"].as_str().unwrap()[..12].to_string(),
                c["IPv4Address"].as_str().unwrap().to_string(),
                c["MacAddress"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut have: Vec<(String, String, String)> = sy["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap().to_string(),
                e["ip"].as_str().unwrap().to_string(),
                e["mac"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    have.sort();
    assert_eq!(
        have, want,
        "switchyard's endpoints against Docker's containers"
    );
    sy_name.to_string()
}

#[test]
fn docker_runs_containers_on_switchyard_networks() {
    let Some(d) = Dockerd::require("sydrv") else {
        return;
    };
    let drv = DriverInstance::new(Path::new(BIN), "docker", nat);
    let mut up = drv.up();
    d.import_busybox(IMAGE);
    let name = drv.name.as_str();

    // Networks: Docker's IPAM pool, gateway and options become switchyard's.
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        name,
        "--subnet",
        "10.214.0.0/24",
        "--gateway",
        "10.214.0.1",
        "-o",
        "mtu=1400",
        "n1",
    ]);
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        name,
        "--subnet",
        "10.215.0.0/24",
        "n2",
    ]);
    // Refusals come back in words a Docker user understands, and change nothing.
    let bad = d.docker(&[
        "network",
        "create",
        "-d",
        name,
        "--subnet",
        "10.216.0.0/24",
        "-o",
        "parent=eth0",
        "n3",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("unknown option \"parent\""),
        "{}",
        text(&bad)
    );
    let bad = d.docker(&[
        "network",
        "create",
        "-d",
        name,
        "--subnet",
        "198.51.100.128/25",
        "n4",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("overlaps"), "{}", text(&bad));
    let nets = drv.sy(&["network", "ls"]);
    assert_eq!(
        nets.as_array().unwrap().len(),
        4,
        "default, outside, n1, n2: {nets}"
    );

    // Two containers; one publishes its web server as 8082 on the uplink.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "n1",
        "-p",
        "8082:80",
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && echo hello-from-c1 > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "n1",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let c1 = ip_on(&d, "c1", "n1");
    let c2 = ip_on(&d, "c2", "n1");
    assert!(
        c1.starts_with("10.214.0.") && c2.starts_with("10.214.0."),
        "{c1} {c2}"
    );
    assert!(ping(&d, "c2", &c1), "c2 reaches c1 through switchyard");
    assert!(ping(&d, "c1", "10.214.0.1"), "c1 reaches the gateway");
    // The interface Docker named eth0 is switchyard's TAP, with the network's MTU.
    let link = stdout(&d.docker_ok(&["exec", "c1", "cat", "/sys/class/net/eth0/mtu"]));
    assert_eq!(link, "1400");
    let outside = drv.inst.netns("outside");
    let body = wait_for(Duration::from_secs(10), "the published port", || {
        get_published(&outside).ok()
    });
    assert!(body.contains("hello-from-c1"), "{body}");
    let n1 = assert_views_agree(&d, &drv, "n1");

    // A second network: c2 gets eth1 on it, and loses it again.
    d.docker_ok(&["network", "connect", "n2", "c2"]);
    let c2b = ip_on(&d, "c2", "n2");
    assert!(c2b.starts_with("10.215.0."), "{c2b}");
    assert!(
        ping(&d, "c2", "10.215.0.1"),
        "c2 reaches n2's gateway on eth1"
    );
    let addrs = stdout(&d.docker_ok(&["exec", "c2", "ip", "-4", "-o", "addr"]));
    assert!(addrs.contains("eth1") && addrs.contains(&c2b), "{addrs}");
    let n2 = assert_views_agree(&d, &drv, "n2");
    d.docker_ok(&["network", "disconnect", "n2", "c2"]);
    let n2_now = drv.sy(&["network", "inspect", &n2]);
    assert_eq!(n2_now["endpoints"], Value::Array(vec![]), "{n2_now}");
    let addrs = stdout(&d.docker_ok(&["exec", "c2", "ip", "-o", "link"]));
    assert!(!addrs.contains("eth1"), "{addrs}");
    assert!(ping(&d, "c2", &c1), "c2 still reaches c1 on eth0");

    // A restart: the networks come back from the driver's state, and the running
    // containers are attached again (their interfaces went with the old process).
    // The name Docker gave each interface in its container is known while running
    // (the driver looks, as Docker does not say), for a restart to use again.
    wait_until(Duration::from_secs(5), "the interface names", || {
        let ls = drv.docker_ls();
        ls.matches(" eth0 ").count() == 2
    });
    let out = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !drv.socket().exists(),
        "the plugin socket is removed at exit"
    );
    assert!(!ping(&d, "c2", &c1), "no network while switchyard is down");
    let mut up = drv.up();
    let ls = drv.docker_ls();
    assert!(
        ping(&d, "c2", &c1),
        "c2 reaches c1 again after the restart:\n{ls}"
    );
    let body = wait_for(Duration::from_secs(10), "the published port again", || {
        get_published(&outside).ok()
    });
    assert!(body.contains("hello-from-c1"), "{body}");
    assert_views_agree(&d, &drv, "n1");

    // Everything removed through Docker goes from switchyard too.
    d.docker_ok(&["rm", "-f", "c1", "c2"]);
    let n1_now = drv.sy(&["network", "inspect", &n1]);
    assert_eq!(n1_now["endpoints"], Value::Array(vec![]), "{n1_now}");
    d.docker_ok(&["network", "rm", "n1", "n2"]);
    let nets = drv.sy(&["network", "ls"]);
    assert_eq!(
        nets.as_array().unwrap().len(),
        2,
        "default and outside are left: {nets}"
    );
    let out = up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!drv.socket().exists());
    let left = d.stop();
    assert!(left.is_empty(), "dockerd left: {left}");
    let prefix = drv.inst.prefix.clone();
    drop(drv);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}
