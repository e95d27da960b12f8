//! Proof with a real container runtime: podman 4.3 (CNI backend, configured in a
//! directory the test owns by the testkit's harness) runs a busybox container on a
//! switchyard network through `switchyard-cni`. The container pings its gateway and
//! another endpoint, reaches the outside through masquerade, serves on a port
//! published with `-p` that the outside reaches through switchyard's uplink, and
//! stopping it removes its port from `show ports`. Needs root and the Debian packages
//! podman, runc, containernetworking-plugins and busybox-static (.ci/run installs them).

use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard::control::protocol::{PortRow, Table};
use switchyard::control::Switchyard;
use switchyard_testkit::fixtures::{
    build, nat, require_root, run_root, show, start, unique_prefix, wait_until,
};
use switchyard_testkit::podman::{text, Podman};
use switchyard_testkit::traffic::{tcp_connect, tcp_listener};

/// The ports `show ports` lists now.
fn ports(sy: &Switchyard) -> Vec<PortRow> {
    show(sy, Table::Ports)
}

#[test]
fn a_podman_container_on_a_switchyard_network() {
    if !require_root() {
        return;
    }
    let Some(pm) = Podman::require("sy-podman-cni") else {
        return;
    };
    let prefix = unique_prefix();
    // Network default (172.17.0.0/16, masqueraded; a .2 and b .3) and the uplink
    // to `outside` (198.51.100.0/24), where a's 8080 is published.
    let sy = start(build(nat(&prefix)));
    let outside = format!("{prefix}outside");
    pm.install_plugin(
        "switchyard-cni",
        std::path::Path::new(env!("CARGO_BIN_EXE_switchyard-cni")),
    );
    let network = pm.add_conflist(
        "sy",
        json!([{
            "type": "switchyard-cni",
            "network": "default",
            "prefix": prefix,
            "runDir": run_root(),
            "capabilities": {"portMappings": true}
        }]),
    );

    // A container that pings the gateway, another endpoint and a host beyond the
    // uplink (masqueraded), and says which address it got.
    let listener = tcp_listener(&outside, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000)).unwrap();
    // Accepted at once and closed, so the container's nc ends.
    let accepted = std::thread::spawn(move || {
        let (s, from) = listener.accept().unwrap();
        drop(s);
        from
    });
    let out = pm.run_container(
        Some(&network),
        &[],
        "ip -4 -o addr show eth0 && ip route && ping -c1 -W2 172.17.0.1 && \
         ping -c1 -W2 172.17.0.3 && echo out | nc -w 2 198.51.100.2 7000 && echo all-good",
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("inet 172.17.0."), "{said}");
    assert!(said.contains("default via 172.17.0.1 dev eth0"), "{said}");
    assert!(said.contains("all-good"), "{said}");
    // The outside saw the flow from switchyard's uplink address, not the container's.
    let from = accepted.join().unwrap();
    assert_eq!(from.ip().to_string(), "198.51.100.1", "masqueraded");
    // `run --rm` ended with a DEL: its port is gone.
    wait_until(
        Duration::from_secs(5),
        "the --rm container's port gone",
        || ports(&sy).iter().all(|p| !p.port.starts_with("c-")),
    );

    // A container serving HTTP on port 80, published as 9080.
    let name = pm
        .run_detached("web", Some(&network), &["-p", "9080:80/tcp"])
        .unwrap_or_else(|o| panic!("podman run -d: {}", text(&o)));
    let id = pm.inspect(&name, "{{.Id}}");
    let port_name = format!("c-{}", &id[..12]);
    let row = ports(&sy)
        .into_iter()
        .find(|p| p.port == port_name)
        .unwrap_or_else(|| panic!("no port {port_name} in show ports"));
    assert_eq!((row.state.as_str(), row.interface.as_str()), ("up", "eth0"));
    let serve = pm.exec(
        &name,
        "mkdir -p /tmp/www && echo hello-from-podman > /tmp/www/index.html && \
         httpd -p 80 -h /tmp/www",
    );
    assert!(serve.status.success(), "{}", text(&serve));
    let mut body = String::new();
    wait_until(
        Duration::from_secs(5),
        "the published port to answer",
        || {
            let Ok(mut s) = tcp_connect(
                &outside,
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 9080),
                Duration::from_secs(2),
            ) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            body.clear();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
                && s.read_to_string(&mut body).is_ok()
                && body.contains("hello-from-podman")
        },
    );
    // It reaches the other endpoint, and the other endpoint reaches it.
    let ip = row.ip.split('/').next().unwrap().to_string();
    let ping = pm.exec(&name, "ping -c1 -W2 172.17.0.3");
    assert!(ping.status.success(), "{}", text(&ping));
    switchyard_testkit::traffic::ping(
        &format!("{prefix}b"),
        ip.parse().unwrap(),
        Duration::from_secs(2),
    )
    .unwrap();

    // Stopping it removes its port.
    let stopped = pm.stop(&name);
    assert!(stopped.status.success(), "{}", text(&stopped));
    wait_until(
        Duration::from_secs(5),
        "the stopped container's port gone",
        || ports(&sy).iter().all(|p| p.port != port_name),
    );
    let rm = pm.rm_force(&name);
    assert!(rm.status.success(), "{}", text(&rm));
    drop(pm);
    sy.stop().unwrap();
}

/// Containers on a network that serves DNS find each other by podman's container name
/// and by `--network-alias`, through switchyard's resolver at the gateway, and podman
/// writes the nameserver the plugin's result carries into the container's resolv.conf.
#[test]
fn podman_containers_find_each_other_by_name() {
    if !require_root() {
        return;
    }
    let Some(pm) = Podman::require("sy-podman-dns") else {
        return;
    };
    let prefix = unique_prefix();
    let topology = switchyard::topology::config::parse(
        &format!(
            "[switch]\nprefix = \"{prefix}\"\n\n[[network]]\nname = \"app\"\n\
             subnet = \"10.88.0.0/24\"\ngateway = \"10.88.0.1\"\ndns_domain = \"app.internal\"\n"
        ),
        "podman dns test",
    )
    .unwrap();
    let sy = start(topology);
    pm.install_plugin(
        "switchyard-cni",
        std::path::Path::new(env!("CARGO_BIN_EXE_switchyard-cni")),
    );
    let network = pm.add_conflist(
        "syapp",
        json!([{
            "type": "switchyard-cni",
            "network": "app",
            "prefix": prefix,
            "runDir": run_root(),
            "capabilities": {"aliases": true}
        }]),
    );
    let db = pm
        .run_detached("db", Some(&network), &["--network-alias", "database"])
        .unwrap_or_else(|o| panic!("podman run -d: {}", text(&o)));
    let id = pm.inspect(&db, "{{.Id}}");
    let port_name = format!("c-{}", &id[..12]);
    let row = ports(&sy)
        .into_iter()
        .find(|p| p.port == port_name)
        .unwrap_or_else(|| panic!("no port {port_name} in show ports"));
    let ip = row.ip.split('/').next().unwrap().to_string();

    let out = pm.run_container(
        Some(&network),
        &[],
        &format!(
            "cat /etc/resolv.conf && nslookup {db} 10.88.0.1 && nslookup database 10.88.0.1 \
             && nslookup database.app.internal 10.88.0.1 && ping -c1 -W2 {db} && echo all-good"
        ),
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("nameserver 10.88.0.1"), "{said}");
    assert!(
        said.matches(&format!("Address: {ip}")).count() >= 3,
        "{said}"
    );
    assert!(said.contains("all-good"), "{said}");

    let stopped = pm.stop(&db);
    assert!(stopped.status.success(), "{}", text(&stopped));
    let rm = pm.rm_force(&db);
    assert!(rm.status.success(), "{}", text(&rm));
    drop(pm);
    sy.stop().unwrap();
}
