//! Queries per second answered by switchyard's DNS, end to end: a client in an endpoint
//! namespace keeps a window of queries in flight to the gateway and counts the answers
//! that come back, over the real path (TAP, worker, punt, service thread, worker, TAP).
//!
//! Three kinds of query: a name in the zone (answered locally), an unknown name in the
//! zone (NXDOMAIN, also local), and a name forwarded to an upstream server in a namespace
//! of the bench's own (a tiny server that answers at once, so the figure is switchyard's
//! relaying, not a real resolver's lookups). Each is run `REPEATS` times for `SECONDS`;
//! the median is printed. Needs root:
//!
//! ```text
//! cargo bench --bench dns
//! ```

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchyard_os::netns;
use switchyard_testkit::dns::{a_query, Says, Server};
use switchyard_testkit::fixtures::{ns, require_root, start, unique_prefix};

const SECONDS: f64 = 3.0;
const REPEATS: usize = 5;
/// Queries in flight at once.
const WINDOW: usize = 64;

/// Answers per second for `secs`, with `WINDOW` queries for `name` in flight.
fn load(sock: &UdpSocket, server: SocketAddrV4, name: &str, secs: f64) -> f64 {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let msgs: Vec<Vec<u8>> = (0..WINDOW as u16).map(|i| a_query(i, name)).collect();
    let mut buf = [0u8; 2048];
    let mut in_flight = 0usize;
    let mut answered = 0u64;
    let mut next = 0usize;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        while in_flight < WINDOW {
            if sock.send_to(&msgs[next % WINDOW], server).is_err() {
                break;
            }
            next += 1;
            in_flight += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok(_) => {
                answered += 1;
                in_flight -= 1;
            }
            // Lost on the way (a queue was full): refill the window.
            Err(_) => in_flight = 0,
        }
    }
    answered as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A namespace the bench made, removed at the end.
struct BenchNs(String);

impl Drop for BenchNs {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !require_root() {
        eprintln!("the DNS bench needs root (it creates namespaces)");
        return;
    }
    let prefix = unique_prefix();
    let up = BenchNs(format!("{prefix}up"));
    netns::create(&up.0).expect("create the upstream namespace");
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", "10.99.0.53/32", "dev", "lo"],
    ] {
        let ok = Command::new("ip")
            .args(["-n", &up.0])
            .args(&args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?}");
    }
    // A server that answers every name at once, so the figure is switchyard's relaying.
    let upstream = Server::start(
        &up.0,
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 53), 53),
        |_| Says::A(Ipv4Addr::new(192, 0, 2, 7), 300),
    )
    .expect("the upstream server starts");
    let text = format!(
        r#"
[switch]
prefix = "{prefix}"
dns_upstream = ["10.99.0.53"]
dns_upstream_netns = "{}"

[[network]]
name = "app"
subnet = "10.71.0.0/24"
gateway = "10.71.0.1"

[[endpoint]]
name = "client"
network = "app"
ip = "10.71.0.2"

[[endpoint]]
name = "db"
network = "app"
ip = "10.71.0.3"
"#,
        up.0
    );
    let topo = switchyard::topology::config::parse(&text, "dns bench").expect("valid");
    let sy = start(topo);
    let client = ns(&sy, "client");
    let sock = netns::run_in_named(&client, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let server = SocketAddrV4::new(Ipv4Addr::new(10, 71, 0, 1), 53);
    // Warm up: ARP, the first allocations.
    load(&sock, server, "db", 0.5);
    println!("DNS queries answered per second (median of {REPEATS} × {SECONDS} s, {WINDOW} in flight, one client socket):");
    for (what, name) in [
        ("local name (A)", "db"),
        ("unknown name (NXDOMAIN)", "nosuch"),
        ("forwarded upstream", "example.test"),
    ] {
        let runs: Vec<f64> = (0..REPEATS)
            .map(|_| load(&sock, server, name, SECONDS))
            .collect();
        println!(
            "  {what:<26} {:>9.0} q/s   (runs: {})",
            median(runs.clone()),
            runs.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    drop(sy);
    upstream.stop();
}
