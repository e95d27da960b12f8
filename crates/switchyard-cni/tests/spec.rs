//! The plugin driven as a runtime drives it — environment, network config on stdin,
//! result or error object on stdout, exit status — against a stand-in control
//! server: a unix socket at `<run dir>/<prefix>/control.sock` that reads each request
//! line, records it, and answers with a canned response. The tests check the
//! requests the plugin sends and what it makes of the answers.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard::control::protocol::{
    Changed, EndpointRow, Envelope, ErrorCode, ErrorReply, ForgottenRow, InterfaceRow, NetworkRow,
    PortRow, Reply, Request, Response,
};

const PREFIX: &str = "cni-t-";
const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
const NAME: &str = "c-3f2a9c1b7d4e";
const NETNS: &str = "/run/netns/netns-5e1f";

/// A private run directory, removed when the test ends, even by a panic.
struct RunDir(PathBuf);

impl RunDir {
    fn new(test: &str) -> RunDir {
        let dir = std::env::temp_dir().join(format!("sy-cni-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(PREFIX)).unwrap();
        RunDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join(PREFIX).join("control.sock")
    }

    /// A stand-in server answering the requests in turn with `script`, one
    /// connection each, as `switchyard::control::client` makes them. Joining it gives
    /// the requests it read. It gives up when no client comes for five seconds.
    fn serve(&self, script: Vec<Response>) -> JoinHandle<Vec<Request>> {
        let _ = std::fs::remove_file(self.socket());
        let listener = UnixListener::bind(self.socket()).unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in script {
                let deadline = Instant::now() + Duration::from_secs(5);
                let conn = loop {
                    match listener.accept() {
                        Ok((c, _)) => break c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            assert!(Instant::now() < deadline, "the plugin sent no request");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                let env: Envelope = serde_json::from_str(&line).unwrap();
                assert_eq!(env.version, 1, "{line}");
                seen.push(env.request);
                let mut out = serde_json::to_string(&answer).unwrap();
                out.push('\n');
                (&conn).write_all(out.as_bytes()).unwrap();
            }
            seen
        })
    }

    /// The network config podman writes for a conflist of version `version`.
    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "synet",
            "type": "switchyard-cni",
            "network": "apps",
            "prefix": PREFIX,
            "runDir": self.0.to_str().unwrap(),
            "capabilities": {"portMappings": true},
        })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a run of the plugin printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The error object, checked for the spec's shape.
    fn error(&self) -> (u64, String) {
        assert_ne!(self.code, 0, "{}", self.stdout);
        let v = self.json();
        assert!(v["cniVersion"].is_string(), "{v}");
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_string(),
        )
    }
}

/// Runs the plugin with podman's environment for `command` (plus `extra`).
fn plugin(command: &str, extra: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut env: Vec<(&str, &str)> = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", ID),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];
    for (k, v) in extra {
        env.retain(|(n, _)| n != k);
        if !v.is_empty() {
            env.push((k, v));
        }
    }
    run_with(&env, stdin)
}

fn run_with(env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A plugin that refuses early may not read everything: a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn endpoint_row(gateway: Option<&str>) -> EndpointRow {
    EndpointRow {
        name: NAME.into(),
        netns: NETNS.into(),
        foreign: true,
        handover: false,
        interfaces: vec![InterfaceRow {
            ifname: "eth0".into(),
            network: "apps".into(),
            port: format!("{NAME}.eth0"),
            mac: "02:42:ac:14:00:09".into(),
            ip: "172.20.0.9/16".into(),
            gateway: gateway.map(String::from),
            mtu: 1500,
        }],
        publish: vec!["8080:80/tcp".into()],
        aliases: Vec::new(),
    }
}

fn port_row(state: &str, reason: Option<&str>) -> PortRow {
    PortRow {
        port: format!("{NAME}.eth0"),
        kind: "tap".into(),
        endpoint: NAME.into(),
        interface: "eth0".into(),
        netns: NETNS.into(),
        network: "apps".into(),
        mac: "02:42:ac:14:00:09".into(),
        ip: "172.20.0.9/16".into(),
        mtu: 1500,
        vnet_hdr: true,
        offloads: "csum,tso4".into(),
        queues: 1,
        steering: "hash".into(),
        io: "uring".into(),
        rx_frames: 0,
        tx_frames: 0,
        dropped: 0,
        state: state.into(),
        down_reason: reason.map(String::from),
    }
}

fn refused(code: ErrorCode, msg: &str) -> Response {
    Response::error(ErrorReply::new(code, msg))
}

fn removed() -> Response {
    Response::ok(Reply::Changed(Changed {
        change: format!("endpoint {NAME} removed"),
        forgotten: ForgottenRow::default(),
    }))
}

#[test]
fn add_then_check_then_del() {
    let dir = RunDir::new("lifecycle");
    let mut conf = dir.conf("0.4.0");
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    ]});

    // ADD, with podman's --ip.
    let server = dir.serve(vec![Response::ok(Reply::Endpoint(endpoint_row(Some(
        "172.20.0.1",
    ))))]);
    let add = plugin(
        "ADD",
        &[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=172.20.0.9")],
        &bytes(&conf),
    );
    let sent = server.join().unwrap();
    assert_eq!(add.code, 0, "{}", add.stdout);
    match &sent[..] {
        [Request::EndpointCreate(c)] => {
            assert_eq!(c.name, NAME);
            assert_eq!(c.network, "apps");
            assert_eq!(c.ip.as_deref(), Some("172.20.0.9"));
            assert_eq!(c.mac, None);
            assert_eq!(c.publish, ["8080:80/tcp"]);
            assert_eq!(c.netns.as_deref(), Some(NETNS));
            assert_eq!(c.ifname.as_deref(), Some("eth0"));
        }
        other => panic!("{other:?}"),
    }
    let result = add.json();
    assert_eq!(
        result,
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "02:42:ac:14:00:09", "sandbox": NETNS}],
            "ips": [{"version": "4", "address": "172.20.0.9/16", "gateway": "172.20.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "172.20.0.1"}],
            "dns": {}
        })
    );

    // CHECK with the result as prevResult, as podman passes it.
    let mut with_prev = dir.conf("0.4.0");
    with_prev["prevResult"] = result;
    let server = dir.serve(vec![
        Response::ok(Reply::Endpoints(vec![endpoint_row(Some("172.20.0.1"))])),
        Response::ok(Reply::Ports(vec![port_row("up", None)])),
    ]);
    let check = plugin("CHECK", &[], &bytes(&with_prev));
    let sent = server.join().unwrap();
    assert_eq!((check.code, check.stdout.as_str()), (0, ""));
    assert!(matches!(
        &sent[..],
        [Request::EndpointLs {}, Request::Show { .. }]
    ));

    // DEL.
    let server = dir.serve(vec![
        Response::ok(Reply::Endpoints(vec![endpoint_row(Some("172.20.0.1"))])),
        removed(),
    ]);
    let del = plugin("DEL", &[], &bytes(&with_prev));
    let sent = server.join().unwrap();
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
    assert_eq!(
        sent[1],
        Request::EndpointRm {
            name: NAME.to_string()
        }
    );
}

#[test]
fn a_100_result_has_no_address_family() {
    let dir = RunDir::new("v100");
    let server = dir.serve(vec![Response::ok(Reply::Endpoint(endpoint_row(None)))]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("1.0.0")));
    server.join().unwrap();
    assert_eq!(add.code, 0, "{}", add.stdout);
    assert_eq!(
        add.json(),
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "02:42:ac:14:00:09", "sandbox": NETNS}],
            "ips": [{"address": "172.20.0.9/16", "interface": 0}],
            "dns": {}
        })
    );
}

/// The `network_inspect` answer for network `apps`.
fn network_row(dns: bool, domain: Option<&str>) -> NetworkRow {
    NetworkRow {
        name: "apps".into(),
        subnet: "172.20.0.0/16".into(),
        gateway: Some("172.20.0.1".into()),
        mtu: 1500,
        mode: "bridge".into(),
        masquerade: false,
        external: false,
        internal: false,
        icc: true,
        dns,
        dns_domain: domain.map(String::from),
        endpoints: Vec::new(),
    }
}

#[test]
fn add_gives_the_container_name_and_aliases_and_reports_the_networks_dns() {
    let dir = RunDir::new("dns");
    let mut conf = dir.conf("1.0.0");
    conf["capabilities"] = json!({"portMappings": true, "aliases": true});
    conf["runtimeConfig"] = json!({"aliases": {"synet": ["Cache", "not_dns", "web"]}});
    let server = dir.serve(vec![
        Response::ok(Reply::Endpoint(endpoint_row(Some("172.20.0.1")))),
        Response::ok(Reply::Network(network_row(true, Some("apps.internal")))),
    ]);
    let add = plugin("ADD", &[], &bytes(&conf));
    let sent = server.join().unwrap();
    assert_eq!(add.code, 0, "{}", add.stdout);
    match &sent[..] {
        [Request::EndpointCreate(c), Request::NetworkInspect { name }] => {
            // podman's K8S_POD_NAME=web first, then the capability's, once each;
            // names no one could ask for are left out.
            assert_eq!(c.aliases, ["web", "cache"]);
            assert_eq!(name, "apps");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        add.json()["dns"],
        json!({"nameservers": ["172.20.0.1"], "domain": "apps.internal", "search": ["apps.internal"]})
    );

    // A network without DNS: nothing to tell; a container name that is no DNS name:
    // no alias, and the endpoint is made all the same.
    let server = dir.serve(vec![
        Response::ok(Reply::Endpoint(endpoint_row(Some("172.20.0.1")))),
        Response::ok(Reply::Network(network_row(false, None))),
    ]);
    let add = plugin(
        "ADD",
        &[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=my_ctr")],
        &bytes(&dir.conf("1.0.0")),
    );
    let sent = server.join().unwrap();
    assert_eq!(add.code, 0, "{}", add.stdout);
    match &sent[..] {
        [Request::EndpointCreate(c), Request::NetworkInspect { .. }] => {
            assert!(c.aliases.is_empty(), "{:?}", c.aliases)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(add.json()["dns"], json!({}));

    // The network cannot be inspected (a refusal): the endpoint stands, the result
    // carries no DNS.
    let server = dir.serve(vec![
        Response::ok(Reply::Endpoint(endpoint_row(Some("172.20.0.1")))),
        refused(ErrorCode::NotFound, "there is no network named \"apps\""),
    ]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("1.0.0")));
    server.join().unwrap();
    assert_eq!(add.code, 0, "{}", add.stdout);
    assert_eq!(add.json()["dns"], json!({}));
}

#[test]
fn add_twice_is_an_error_naming_the_endpoint() {
    let dir = RunDir::new("twice");
    let server = dir.serve(vec![
        refused(
            ErrorCode::Invalid,
            &format!("endpoint {NAME}: an endpoint with this name is already defined"),
        ),
        Response::ok(Reply::Endpoints(vec![endpoint_row(None)])),
    ]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("0.4.0")));
    server.join().unwrap();
    let (code, msg) = add.error();
    assert_eq!(code, 101, "{msg}");
    assert!(msg.contains(NAME) && msg.contains("DEL"), "{msg}");

    // The name is taken by an endpoint of switchyard's config file.
    let mut own = endpoint_row(None);
    own.foreign = false;
    own.netns = format!("{PREFIX}{NAME}");
    let server = dir.serve(vec![
        refused(
            ErrorCode::Invalid,
            "an endpoint with this name is already defined",
        ),
        Response::ok(Reply::Endpoints(vec![own])),
    ]);
    let (code, msg) = plugin("ADD", &[], &bytes(&dir.conf("0.4.0"))).error();
    server.join().unwrap();
    assert_eq!(code, 101, "{msg}");
    assert!(
        msg.contains("switchyard's own endpoint") && msg.contains("rename"),
        "{msg}"
    );
}

#[test]
fn a_full_subnet_is_refused_with_switchyards_words() {
    let dir = RunDir::new("full");
    let server = dir.serve(vec![
        refused(
            ErrorCode::Invalid,
            "network apps: no free address in 172.20.0.0/30",
        ),
        Response::ok(Reply::Endpoints(vec![])),
    ]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("0.4.0")));
    server.join().unwrap();
    let (code, msg) = add.error();
    assert_eq!(code, 100);
    assert!(msg.contains("no free address in 172.20.0.0/30"), "{msg}");
    assert_eq!(add.json()["cniVersion"], "0.4.0");
}

#[test]
fn an_unknown_network_is_an_invalid_config() {
    let dir = RunDir::new("nonet");
    let server = dir.serve(vec![refused(ErrorCode::NotFound, "no network named apps")]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("1.0.0")));
    server.join().unwrap();
    let (code, msg) = add.error();
    assert_eq!(code, 7);
    assert!(msg.contains("no network named apps"), "{msg}");
}

#[test]
fn a_setup_failure_is_an_io_failure() {
    let dir = RunDir::new("setup");
    let server = dir.serve(vec![refused(
        ErrorCode::SetupFailed,
        "cannot enter namespace /run/netns/netns-5e1f: No such file or directory",
    )]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("1.0.0")));
    server.join().unwrap();
    let (code, msg) = add.error();
    assert_eq!(code, 5);
    assert!(msg.contains("cannot enter namespace"), "{msg}");
}

#[test]
fn a_switchyard_that_does_not_serve_endpoints_says_so() {
    let dir = RunDir::new("old");
    let server = dir.serve(vec![refused(
        ErrorCode::UnknownRequest,
        "unknown request \"endpoint_create\"",
    )]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("0.4.0")));
    server.join().unwrap();
    let (code, msg) = add.error();
    assert_eq!(code, 102);
    assert!(msg.contains("endpoint_create"), "{msg}");
}

#[test]
fn del_of_an_unknown_container_succeeds() {
    let dir = RunDir::new("delunknown");
    let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![]))]);
    let del = plugin("DEL", &[], &bytes(&dir.conf("0.4.0")));
    let sent = server.join().unwrap();
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
    assert_eq!(sent, [Request::EndpointLs {}]);
}

#[test]
fn del_of_an_endpoint_removed_meanwhile_succeeds() {
    let dir = RunDir::new("delrace");
    let server = dir.serve(vec![
        Response::ok(Reply::Endpoints(vec![endpoint_row(None)])),
        refused(ErrorCode::NotFound, &format!("no endpoint named {NAME}")),
    ]);
    let del = plugin("DEL", &[("CNI_NETNS", "")], &bytes(&dir.conf("1.0.0")));
    let sent = server.join().unwrap();
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
    assert_eq!(sent.len(), 2);
}

#[test]
fn del_leaves_an_endpoint_that_is_not_the_containers() {
    // One switchyard made itself (a config file endpoint of the same name), and one
    // attached in another namespace that still exists (a file stands in for its
    // bind mount): neither is removed.
    let dir = RunDir::new("delother");
    let live = dir.0.join("live-ns");
    std::fs::write(&live, b"").unwrap();
    let mut own = endpoint_row(None);
    own.foreign = false;
    let mut elsewhere = endpoint_row(None);
    elsewhere.netns = live.to_str().unwrap().into();
    for row in [own, elsewhere] {
        let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![row]))]);
        let del = plugin("DEL", &[], &bytes(&dir.conf("0.4.0")));
        let sent = server.join().unwrap();
        assert_eq!((del.code, del.stdout.as_str()), (0, ""));
        assert_eq!(sent, [Request::EndpointLs {}]);
    }
}

#[test]
fn del_removes_the_containers_endpoint_whose_namespace_is_gone() {
    let dir = RunDir::new("delstale");
    let mut stale = endpoint_row(None);
    stale.netns = dir.0.join("gone-ns").to_str().unwrap().into();
    let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![stale])), removed()]);
    let del = plugin("DEL", &[], &bytes(&dir.conf("0.4.0")));
    let sent = server.join().unwrap();
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
    assert_eq!(sent.len(), 2, "{sent:?}");
}

#[test]
fn add_replaces_a_stale_endpoint_of_the_same_container() {
    // The container lost its namespace without a DEL (the runtime was killed) and is
    // started again in a new one.
    let dir = RunDir::new("addstale");
    let mut stale = endpoint_row(None);
    stale.netns = dir.0.join("gone-ns").to_str().unwrap().into();
    let taken = || {
        refused(
            ErrorCode::Invalid,
            &format!("endpoint {NAME}: an endpoint with this name is already defined"),
        )
    };
    let server = dir.serve(vec![
        taken(),
        Response::ok(Reply::Endpoints(vec![stale.clone()])),
        removed(),
        Response::ok(Reply::Endpoint(endpoint_row(Some("172.20.0.1")))),
    ]);
    let add = plugin("ADD", &[], &bytes(&dir.conf("1.0.0")));
    let sent = server.join().unwrap();
    assert_eq!(add.code, 0, "{}", add.stdout);
    assert_eq!(add.json()["ips"][0]["address"], "172.20.0.9/16");
    assert!(
        matches!(
            &sent[..],
            [
                Request::EndpointCreate(_),
                Request::EndpointLs {},
                Request::EndpointRm { .. },
                Request::EndpointCreate(_)
            ]
        ),
        "{sent:?}"
    );

    // In a namespace that still exists, the endpoint is another container's: no.
    let live = dir.0.join("live-ns");
    std::fs::write(&live, b"").unwrap();
    let mut other = endpoint_row(None);
    other.netns = live.to_str().unwrap().into();
    let server = dir.serve(vec![taken(), Response::ok(Reply::Endpoints(vec![other]))]);
    let (code, _) = plugin("ADD", &[], &bytes(&dir.conf("1.0.0"))).error();
    assert_eq!(server.join().unwrap().len(), 2);
    assert_eq!(code, 101);
}

#[test]
fn switchyard_not_running_add_says_try_again_and_del_succeeds() {
    let dir = RunDir::new("down");
    let add = plugin("ADD", &[], &bytes(&dir.conf("0.4.0")));
    let (code, msg) = add.error();
    assert_eq!(code, 11);
    let sock = dir.socket();
    assert_eq!(
        msg,
        format!(
            "switchyard is not running with prefix {PREFIX} (no control socket at {}): \
             start `switchyard up` first",
            sock.display()
        )
    );
    let del = plugin("DEL", &[], &bytes(&dir.conf("0.4.0")));
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));

    // A socket left behind by a crash, nobody listening: the same.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(Path::new(&sock).exists());
    assert_eq!(plugin("ADD", &[], &bytes(&dir.conf("0.4.0"))).error().0, 11);
    let del = plugin("DEL", &[], &bytes(&dir.conf("0.4.0")));
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
}

#[test]
fn check_fails_when_the_port_is_down_or_the_endpoint_differs() {
    let dir = RunDir::new("checkbad");
    let row = endpoint_row(Some("172.20.0.1"));
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:42:ac:14:00:09", "sandbox": NETNS}],
        "ips": [{"address": "172.20.0.9/16", "gateway": "172.20.0.1", "interface": 0}],
        "dns": {}
    });
    let mut conf = dir.conf("1.0.0");
    conf["prevResult"] = prev;

    let server = dir.serve(vec![
        Response::ok(Reply::Endpoints(vec![row.clone()])),
        Response::ok(Reply::Ports(vec![port_row("down", Some("namespace gone"))])),
    ]);
    let (code, msg) = plugin("CHECK", &[], &bytes(&conf)).error();
    server.join().unwrap();
    assert_eq!(code, 103);
    assert!(msg.contains("down: namespace gone"), "{msg}");

    let mut moved = row.clone();
    moved.interfaces[0].mac = "02:42:ac:14:00:0a".into();
    let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![moved]))]);
    let (code, msg) = plugin("CHECK", &[], &bytes(&conf)).error();
    server.join().unwrap();
    assert_eq!(code, 103);
    assert!(msg.contains("MAC 02:42:ac:14:00:0a"), "{msg}");

    let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![]))]);
    let (code, msg) = plugin("CHECK", &[], &bytes(&conf)).error();
    server.join().unwrap();
    assert_eq!(code, 103);
    assert!(msg.contains("no endpoint"), "{msg}");

    // Without a prevResult there is nothing to check against.
    let (code, _) = plugin("CHECK", &[], &bytes(&dir.conf("1.0.0"))).error();
    assert_eq!(code, 7);
}

#[test]
fn a_missing_network_is_error_7_and_nothing_is_asked() {
    let dir = RunDir::new("nonetwork");
    let mut conf = dir.conf("0.4.0");
    conf.as_object_mut().unwrap().remove("network");
    let add = plugin("ADD", &[], &bytes(&conf));
    let (code, msg) = add.error();
    assert_eq!(code, 7);
    assert!(msg.contains("\"network\""), "{msg}");
    assert_eq!(add.json()["cniVersion"], "0.4.0");
    assert!(!dir.socket().exists());
}

#[test]
fn version_lists_the_spoken_versions() {
    // podman sends VERSION with dummy values and {"cniVersion":"1.0.0"}.
    let run = run_with(
        &[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", "dummy"),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_PATH", "dummy"),
        ],
        br#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        run.json(),
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]})
    );
}

#[test]
fn bad_environments_are_error_4() {
    let dir = RunDir::new("badenv");
    let conf = bytes(&dir.conf("0.4.0"));
    for (extra, names) in [
        (("CNI_CONTAINERID", "../../x"), "CNI_CONTAINERID"),
        (("CNI_IFNAME", "eth0/x"), "CNI_IFNAME"),
        (("CNI_NETNS", ""), "CNI_NETNS"),
        (
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default"),
            "K8S_POD_NAMESPACE",
        ),
        (("CNI_COMMAND", "STATUS"), "STATUS"),
    ] {
        let (code, msg) = plugin("ADD", &[extra], &conf).error();
        assert_eq!(code, 4, "{extra:?}: {msg}");
        assert!(msg.contains(names), "{msg}");
    }
    assert!(!dir.socket().exists());
}

#[test]
fn a_host_address_on_a_published_port_is_refused() {
    let dir = RunDir::new("hostip");
    let mut conf = dir.conf("0.4.0");
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
    ]});
    let (code, msg) = plugin("ADD", &[], &bytes(&conf)).error();
    assert_eq!(code, 2);
    assert!(msg.contains("hostIP \"127.0.0.1\""), "{msg}");
    assert!(!dir.socket().exists(), "refused before asking switchyard");

    // podman cleans up a failed ADD with DEL and the same config: it succeeds.
    let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![]))]);
    let del = plugin("DEL", &[], &bytes(&conf));
    assert_eq!(server.join().unwrap(), [Request::EndpointLs {}]);
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
}

#[test]
fn hostile_input_gets_an_error_object_not_a_crash() {
    let huge = vec![b'['; 3 * 1024 * 1024];
    let cases: [&[u8]; 4] = [b"", b"{", b"\xff\xfe\x00", &huge];
    for stdin in cases {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let (code, _) = plugin(cmd, &[], stdin).error();
            assert!(matches!(code, 6 | 7), "{cmd} {code}");
        }
    }
    // Deeply nested JSON within the size cap.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert_eq!(plugin("ADD", &[], deep.as_bytes()).error().0, 6);
    // A port mapping that is none: ADD refuses it before asking anything; DEL, which
    // needs no ports, still cleans up.
    let dir = RunDir::new("hostile");
    let mut conf = dir.conf("0.4.0");
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": -1}]});
    assert_eq!(plugin("ADD", &[], &bytes(&conf)).error().0, 7);
    let server = dir.serve(vec![Response::ok(Reply::Endpoints(vec![]))]);
    let del = plugin("DEL", &[], &bytes(&conf));
    server.join().unwrap();
    assert_eq!((del.code, del.stdout.as_str()), (0, ""));
    // A prevResult that is no result: CHECK cannot use it.
    let mut conf = dir.conf("0.4.0");
    conf["prevResult"] = json!([1, 2]);
    assert_eq!(plugin("CHECK", &[], &bytes(&conf)).error().0, 7);
    conf["prevResult"] = json!({"interfaces": "eth0"});
    assert_eq!(plugin("CHECK", &[], &bytes(&conf)).error().0, 7);
}

#[test]
fn a_garbled_answer_is_an_io_failure() {
    let dir = RunDir::new("garbled");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        (&conn)
            .write_all(b"{\"version\":1,\"ok\":{\"nonsense\":3}}\n")
            .unwrap();
    });
    let (code, msg) = plugin("ADD", &[], &bytes(&dir.conf("0.4.0"))).error();
    server.join().unwrap();
    assert_eq!(code, 5);
    assert!(msg.contains("bad response"), "{msg}");
}
