//! Floods from one endpoint, and proof that the switch still works afterwards.
//!
//! Each test starts the `switchyard` binary (`up FILE`) on Docker's default network
//! with a way out (`default` 172.17.0.0/16 masquerading to `outside`; endpoints `a`,
//! `b`, `c` and a host `outside`), floods it from `a` with crafted frames put on a's
//! wire ([`Capture::send`], one frame per call, from inside a's namespace, at most
//! [`WINDOW`] frames ahead of what switchyard has taken), and then
//! checks what a user would: a ping between two other endpoints (`b` → `c`), and new
//! UDP and TCP flows from `b` through masquerade to `outside`. Each prints the frames
//! sent and received, the time taken, and switchyard's RSS (`VmRSS` of its process)
//! before and after, and asserts that the RSS grew by no more than the tables take at
//! their maximum (`switchyard check`'s figure) and a margin.
//!
//! * `mac_flood`: 1 M frames, each from a new source MAC (the FDB fills and stops
//!   learning; forwarding for known and unknown MACs goes on).
//! * `syn_flood_through_masquerade`: 1 M TCP SYNs from `a` to 1 M different
//!   (address, port) pairs beyond the uplink (conntrack fills with unassured entries
//!   and evicts them; a new flow still gets an entry).
//! * `arp_flood`: 300 k ARP requests from `a`, each from another sender address of the
//!   subnet (the neighbor table fills; the next hop of a new flow still resolves).
//!
//! The counts are scaled by `SWITCHYARD_STRESS_SCALE` (default 0.05, the short form
//! CI runs: 50 k, 50 k and 15 k frames, a few seconds each); `SWITCHYARD_STRESS_SCALE=1`
//! runs the long form. The tests take turns (one switch at a time), so the timings
//! and RSS figures are each test's own. Needs root.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard::control::client;
use switchyard::control::protocol::{CountersReport, Request, Table};
use switchyard::topology::{EndpointBuilder, Topology, TopologyBuilder};
use switchyard_core::pipeline::TableMemory;
use switchyard_core::wire::{checksum, IpProtocol, MacAddr};
use switchyard_testkit::fixtures::*;
use switchyard_testkit::traffic::*;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Frames a flood keeps in flight at most (below the TAP's queue of 500).
const WINDOW: usize = 200;

/// One flood at a time: the figures are each test's own, and the machine's cores
/// are not split between floods.
static SERIAL: Mutex<()> = Mutex::new(());

/// The share of the long form's counts to run.
fn scale() -> f64 {
    std::env::var("SWITCHYARD_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(0.05)
}

fn scaled(full: usize) -> usize {
    ((full as f64 * scale()) as usize).max(1000)
}

/// Docker's default network with a way out, and a third endpoint `c` to ping.
fn topology(prefix: &str) -> TopologyBuilder {
    nat(prefix).endpoint(EndpointBuilder::new("c").on("default").ip("172.17.0.4"))
}

/// A `switchyard up` child process on [`topology`], stopped (SIGTERM, so it tears
/// down) and cleaned up after when dropped, even during a panic.
struct Instance {
    child: Option<Child>,
    dir: PathBuf,
    prefix: String,
    topo: Topology,
}

impl Instance {
    fn up() -> Instance {
        let prefix = unique_prefix();
        let b = topology(&prefix);
        let topo = build(b.clone());
        let dir = std::env::temp_dir().join(format!("switchyard-stress-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stress.toml");
        std::fs::write(&file, b.to_toml().expect("prints")).unwrap();
        let child = Command::new(BIN)
            .env("SWITCHYARD_RUN_DIR", dir.join("run"))
            .arg("up")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("switchyard starts");
        let me = Instance {
            child: Some(child),
            dir,
            prefix,
            topo,
        };
        wait_until(Duration::from_secs(30), "the control socket", || {
            me.socket().exists()
        });
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run").join(&self.prefix).join("control.sock")
    }

    fn ns(&self, endpoint: &str) -> String {
        let e = self.topo.endpoints.iter().find(|e| e.name == endpoint);
        e.expect("endpoint").netns.clone()
    }

    fn mac(&self, endpoint: &str) -> MacAddr {
        let e = self.topo.endpoints.iter().find(|e| e.name == endpoint);
        e.expect("endpoint").interfaces[0].mac
    }

    fn gateway_mac(&self) -> MacAddr {
        self.topo.networks[0].gateway.expect("gateway").mac
    }

    /// Switchyard's resident memory, in KiB (`VmRSS` of its process).
    fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let mut s = String::new();
        std::fs::File::open(format!("/proc/{pid}/status"))
            .and_then(|mut f| f.read_to_string(&mut s))
            .expect("/proc/PID/status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    fn counters(&self) -> CountersReport {
        let reply = client::request(
            &self.socket(),
            &Request::Show {
                table: Table::Counters,
            },
        )
        .expect("the control socket answers");
        serde_json::from_value(reply.payload()).expect("counters")
    }

    /// Frames switchyard has received from port `port`.
    fn rx(&self, port: &str) -> u64 {
        let c = self.counters();
        c.ports
            .iter()
            .find(|p| p.port == port)
            .expect("port")
            .rx_frames
    }

    fn event(&self, id: &str) -> u64 {
        let c = self.counters();
        c.events.iter().find(|e| e.id == id).map_or(0, |e| e.count)
    }

    fn drop_count(&self, id: &str) -> u64 {
        let c = self.counters();
        c.drops.iter().find(|e| e.id == id).map_or(0, |e| e.count)
    }

    /// What the tables take at their maximum, in KiB.
    fn tables_kib(&self) -> u64 {
        (TableMemory::of(&self.topo.pipeline_spec()).total_bytes() / 1024) as u64
    }

    /// Waits until switchyard has taken everything a's wire carried (its receive
    /// count stops moving).
    fn settle(&self, port: &str) -> u64 {
        let mut last = self.rx(port);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.rx(port);
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Puts `n` frames on a's wire, the `i`-th made by `make(i, buf)`, keeping at most
    /// [`WINDOW`] frames ahead of what switchyard has received: a sender in a namespace
    /// outruns a switch, and frames beyond the TAP's queue would be dropped by the
    /// kernel before switchyard saw them, which would test the queue rather than the
    /// switch. Returns how many switchyard received and the time it all took.
    fn flood(&self, n: usize, mut make: impl FnMut(u32, &mut Vec<u8>)) -> (u64, Duration) {
        let cap = Capture::open(&self.ns("a"), "eth0").unwrap();
        let rx0 = self.rx("a");
        let t0 = Instant::now();
        let mut buf = Vec::with_capacity(128);
        for i in 0..n {
            buf.clear();
            make(i as u32, &mut buf);
            cap.send(&buf).unwrap();
            if (i + 1) % WINDOW == 0 {
                self.catch_up(rx0, i as u64 + 1);
            }
        }
        let received = self.settle("a") - rx0;
        (received, t0.elapsed())
    }

    /// Waits until switchyard has received all but [`WINDOW`] of `sent` frames, or
    /// stops receiving (some were lost on the way).
    fn catch_up(&self, rx0: u64, sent: u64) {
        let mut last = 0;
        let mut still = Instant::now();
        loop {
            let got = self.rx("a") - rx0;
            if got + WINDOW as u64 >= sent {
                return;
            }
            if got != last {
                (last, still) = (got, Instant::now());
            } else if still.elapsed() > Duration::from_millis(50) {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Proof the switch still switches: a ping from b to c, and new UDP and TCP flows
    /// from b through masquerade to the outside host.
    fn still_works(&self, what: &str) {
        let (b, out) = (self.ns("b"), self.ns("outside"));
        let t = Duration::from_secs(3);
        ping(&b, Ipv4Addr::new(172, 17, 0, 4), t)
            .unwrap_or_else(|e| panic!("after {what}: b cannot ping c: {e}"));
        let server = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 7007);
        let echo = udp_echo_server(&out, server, 1, t).unwrap();
        let got = udp_request(&b, server, b"still there?", t)
            .unwrap_or_else(|e| panic!("after {what}: no new UDP flow through masquerade: {e}"));
        assert_eq!(got, b"still there?");
        let peers = echo.join().unwrap().unwrap();
        assert_eq!(
            peers[0].ip().to_string(),
            "198.51.100.1",
            "the UDP flow was masqueraded"
        );
        let listener = tcp_listener(&out, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8008)).unwrap();
        let _conn = tcp_connect(
            &b,
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 8008),
            t,
        )
        .unwrap_or_else(|e| panic!("after {what}: no new TCP flow through masquerade: {e}"));
        let (_s, peer) = listener.accept().unwrap();
        assert_eq!(
            peer.ip().to_string(),
            "198.51.100.1",
            "the TCP flow was masqueraded"
        );
    }

    /// Prints and checks a flood's figures.
    fn report(&self, what: &str, sent: usize, received: u64, took: Duration, before: u64) {
        let after = self.rss_kib();
        println!(
            "{what}: sent {sent} frames, switchyard received {received}, in {:.1} s; \
             RSS {} KiB before, {} KiB after (tables at their maximum: {} KiB)",
            took.as_secs_f64(),
            before,
            after,
            self.tables_kib()
        );
        // The FDB and neighbor table are allocated at start and conntrack grows at most to
        // its maximum; a flood may only touch what the tables may take.
        let margin = 32 * 1024;
        assert!(
            after <= before + self.tables_kib() + margin,
            "{what}: RSS grew from {before} to {after} KiB"
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
        let _ = Command::new(BIN)
            .env("SWITCHYARD_RUN_DIR", self.dir.join("run"))
            .args(["down", "--prefix", &self.prefix])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ethernet + IPv4 header (no options) + `l4`, with the IPv4 checksum filled in.
fn ipv4_frame(
    dst: MacAddr,
    src: MacAddr,
    from: Ipv4Addr,
    to: Ipv4Addr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&to.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

fn arp_request(src: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

#[test]
fn mac_flood() {
    if !require_root() {
        return;
    }
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sy = Instance::up();
    // b and c known before the flood, as they would be on a busy network.
    ping(
        &sy.ns("b"),
        Ipv4Addr::new(172, 17, 0, 4),
        Duration::from_secs(3),
    )
    .unwrap();
    let before = sy.rss_kib();
    let n = scaled(1_000_000);
    // To the gateway MAC, with an EtherType nobody speaks: learned, then dropped at
    // the router, so the flood tests learning without flooding b and c.
    let gw = sy.gateway_mac();
    let (received, took) = sy.flood(n, |i, f| {
        f.extend_from_slice(&gw.0);
        f.extend_from_slice(&[
            0x02,
            0x99,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ]);
        f.extend_from_slice(&0x88b5u16.to_be_bytes());
        f.resize(60, 0);
    });
    assert!(received > 0);
    // Past the network's share of the FDB (8192 split between the default topology's
    // two networks), learning stopped and was counted.
    if received > 4096 {
        assert!(
            sy.event("fdb_network_limit") + sy.event("fdb_limit") > 0,
            "the full FDB share is counted"
        );
    }
    sy.still_works("a MAC flood");
    sy.report("mac_flood", n, received, took, before);
}

#[test]
fn syn_flood_through_masquerade() {
    if !require_root() {
        return;
    }
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sy = Instance::up();
    // The next hop (the outside host) resolved, as it would be on a live uplink.
    ping(
        &sy.ns("a"),
        Ipv4Addr::new(198, 51, 100, 2),
        Duration::from_secs(3),
    )
    .unwrap();
    let before = sy.rss_kib();
    let n = scaled(1_000_000);
    let (gw, a) = (sy.gateway_mac(), sy.mac("a"));
    let from = Ipv4Addr::new(172, 17, 0, 2);
    let (received, took) = sy.flood(n, |i, f| {
        // 1 M different flows: 254 hosts beyond the uplink (203.0.113.0/24, routed
        // via the outside host, which drops them) times source ports.
        let to = Ipv4Addr::new(203, 0, 113, 1 + (i % 254) as u8);
        let sport = 1024 + (i / 254) as u16;
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&i.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02; // SYN
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let pseudo = checksum::pseudo_header_sum(from, to, IpProtocol::TCP, 20);
        let c = !checksum::fold(checksum::sum(pseudo, &tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ipv4_frame(gw, a, from, to, 6, &tcp));
    });
    assert!(received > 0);
    println!(
        "syn_flood_through_masquerade: {} flows masqueraded, {} evicted, {} refused (table full)",
        sy.event("snat_flows"),
        sy.event("ct_evicted"),
        sy.drop_count("conntrack_full")
    );
    sy.still_works("a SYN flood through masquerade");
    sy.report("syn_flood_through_masquerade", n, received, took, before);
}

#[test]
fn arp_flood() {
    if !require_root() {
        return;
    }
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sy = Instance::up();
    let before = sy.rss_kib();
    let n = scaled(300_000);
    let a = sy.mac("a");
    let gw = Ipv4Addr::new(172, 17, 0, 1);
    let (received, took) = sy.flood(n, |i, f| {
        // Who-has the gateway, from ever new sender addresses of the upper half of
        // the subnet: every one an entry for the neighbor table.
        let sender = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 17, 128, 0)) + i % 32_000 + 1);
        f.extend_from_slice(&arp_request(a, sender, gw));
    });
    assert!(received > 0);
    let neighbors = client::request(
        &sy.socket(),
        &Request::Show {
            table: Table::Neighbors,
        },
    )
    .expect("the control socket answers")
    .payload();
    println!(
        "arp_flood: {} neighbor entries after, {} packets refused for a full table",
        neighbors.as_array().map_or(0, |a| a.len()),
        sy.drop_count("neighbor_table_full")
    );
    sy.still_works("an ARP flood");
    sy.report("arp_flood", n, received, took, before);
}
