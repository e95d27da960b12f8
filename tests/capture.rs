//! `switchyard capture`: recording ports of a running `switchyard up` (a child
//! process), end to end. A ping between endpoints a and b is recorded on both ports
//! with the right directions (the ARP request flooded, its reply, the echo and its
//! reply); a capture with drops holds a dropped frame with its reason; tcpdump reads
//! a capture from a pipe; `-c` stops it; a client that stops reading makes the
//! capture skip frames while the endpoints keep talking without loss. Needs root.

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard::control::client;
use switchyard::control::protocol::{
    CaptureRequest, Envelope, ErrorCode, Reply, Request, Response,
};
use switchyard_core::pipeline::DropReason;
use switchyard_testkit::fixtures::{require_root, wait_until};
use switchyard_testkit::process::Instance;
use switchyard_testkit::traffic::{self, ping};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const A: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);
const INBOUND: u32 = 0b01;
const OUTBOUND: u32 = 0b10;

/// A `switchyard capture` child, killed if the test panics.
struct CaptureProcess(Option<Child>);

impl CaptureProcess {
    fn start(inst: &Instance, args: &[&str]) -> CaptureProcess {
        let child = inst
            .cmd()
            .arg("capture")
            .args(args)
            .args(["--prefix", &inst.prefix])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        CaptureProcess(Some(child))
    }

    /// Ctrl-C, then its exit status and stderr.
    fn interrupt(mut self) -> (bool, String) {
        let child = self.0.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits at most `limit` for it to end by itself.
    fn exit_within(mut self, limit: Duration) -> Option<std::process::Output> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.0.as_mut().unwrap().try_wait().unwrap().is_some() {
                return Some(self.0.take().unwrap().wait_with_output().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for CaptureProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until a capture written to `file` has started (its header is there), and
/// gives the workers a moment to take it up between two batches.
fn wait_started(file: &Path) {
    wait_until(Duration::from_secs(10), "the capture to start", || {
        std::fs::metadata(file).is_ok_and(|m| m.len() > 0)
    });
    std::thread::sleep(Duration::from_millis(300));
}

/// A packet read back: its interface's name, direction flags, bytes and comment.
#[derive(Debug)]
struct Read {
    port: String,
    flags: u32,
    data: Vec<u8>,
    original_len: u32,
    comment: Option<String>,
    time_ns: u128,
}

fn read_pcapng(file: &Path) -> Vec<Read> {
    let bytes = std::fs::read(file).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).expect("a pcapng file");
    let mut epbs: Vec<EnhancedPacketBlock<'static>> = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.expect("whole blocks") {
            epbs.push(p.into_owned());
        }
    }
    let names: Vec<String> = r
        .interfaces()
        .iter()
        .map(|i| {
            assert!(i.snaplen >= 65_535 + 14, "a snaplen that fits super-frames");
            i.options
                .iter()
                .find_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                })
                .expect("if_name")
        })
        .collect();
    epbs.into_iter()
        .map(|p| Read {
            port: names[p.interface_id as usize].clone(),
            flags: p
                .options
                .iter()
                .find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                })
                .expect("epb_flags"),
            comment: p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            }),
            original_len: p.original_len,
            time_ns: p.timestamp.as_nanos(),
            data: p.data.into_owned(),
        })
        .collect()
}

fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

fn is_arp(f: &[u8], op: u16) -> bool {
    f.len() >= 42 && ethertype(f) == 0x0806 && u16::from_be_bytes([f[20], f[21]]) == op
}

fn is_icmp(f: &[u8], kind: u8) -> bool {
    f.len() >= 42 && ethertype(f) == 0x0800 && f[23] == 1 && f[14 + 20] == kind
}

/// How many packets on `port` with `flags` match `what`.
fn count(packets: &[Read], port: &str, flags: u32, what: impl Fn(&[u8]) -> bool) -> usize {
    packets
        .iter()
        .filter(|p| p.port == port && p.flags == flags && what(&p.data))
        .count()
}

#[test]
fn a_ping_is_recorded_on_both_ports_with_its_directions() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(Path::new(BIN), "capture-ping");
    let _up = inst.up(&[]);
    let file = inst.dir.join("ping.pcapng");
    let cap = CaptureProcess::start(&inst, &["a", "b", "-w", file.to_str().unwrap()]);
    wait_started(&file);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    ping(&inst.netns("a"), B, Duration::from_secs(3)).expect("ping a -> b");
    let (ok, stderr) = cap.interrupt();
    assert!(ok, "Ctrl-C ends a capture cleanly: {stderr}");
    assert!(stderr.contains("capturing on a, b"), "{stderr}");
    assert!(stderr.contains("packets captured"), "{stderr}");
    assert!(stderr.contains("0 packets skipped"), "{stderr}");

    let p = read_pcapng(&file);
    // The ARP request: broadcast from a, so in on a and flooded out of b.
    assert_eq!(count(&p, "a", INBOUND, |f| is_arp(f, 1)), 1, "{p:#?}");
    assert_eq!(count(&p, "b", OUTBOUND, |f| is_arp(f, 1)), 1, "{p:#?}");
    // Its reply: in on b, out of a.
    assert_eq!(count(&p, "b", INBOUND, |f| is_arp(f, 2)), 1, "{p:#?}");
    assert_eq!(count(&p, "a", OUTBOUND, |f| is_arp(f, 2)), 1, "{p:#?}");
    // The echo request goes a -> b, the reply b -> a.
    assert_eq!(count(&p, "a", INBOUND, |f| is_icmp(f, 8)), 1, "{p:#?}");
    assert_eq!(count(&p, "b", OUTBOUND, |f| is_icmp(f, 8)), 1, "{p:#?}");
    assert_eq!(count(&p, "b", INBOUND, |f| is_icmp(f, 0)), 1, "{p:#?}");
    assert_eq!(count(&p, "a", OUTBOUND, |f| is_icmp(f, 0)), 1, "{p:#?}");
    for r in &p {
        assert_eq!(r.original_len as usize, r.data.len(), "recorded whole");
        assert!(r.comment.is_none(), "no drop asked for: {r:?}");
        assert!(
            r.time_ns >= before - 1_000_000_000,
            "wall-clock time: {r:?}"
        );
    }
    // The echo request crossed a before b.
    let when = |port: &str, flags| {
        p.iter()
            .find(|r| r.port == port && r.flags == flags && is_icmp(&r.data, 8))
            .unwrap()
            .time_ns
    };
    assert!(when("a", INBOUND) <= when("b", OUTBOUND));
}

/// A frame from a multicast source MAC, which ethernet-input drops.
fn multicast_source_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([0x01, 0x00, 0x5e, 0x00, 0x00, 0x07]);
    f.extend([0x08, 0x00]);
    f.extend([0u8; 46]);
    f
}

#[test]
fn a_capture_with_drops_holds_a_dropped_frame_and_its_reason_and_one_without_does_not() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(Path::new(BIN), "capture-drops");
    let _up = inst.up(&[]);
    let with = inst.dir.join("with.pcapng");
    let without = inst.dir.join("without.pcapng");
    // Two captures of the same port at once, each on its own.
    let cap_with = CaptureProcess::start(&inst, &["a", "--drops", "-w", with.to_str().unwrap()]);
    let cap_without = CaptureProcess::start(&inst, &["a", "-w", without.to_str().unwrap()]);
    wait_started(&with);
    wait_started(&without);
    let wire = traffic::Capture::open(&inst.netns("a"), "eth0").unwrap();
    let frame = multicast_source_frame();
    wire.send(&frame).unwrap();
    ping(&inst.netns("a"), B, Duration::from_secs(3)).expect("ping a -> b");
    let (ok, stderr) = cap_with.interrupt();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("capturing on a with drops"), "{stderr}");
    let (ok, stderr) = cap_without.interrupt();
    assert!(ok, "{stderr}");

    let p = read_pcapng(&with);
    let dropped: Vec<&Read> = p.iter().filter(|r| r.comment.is_some()).collect();
    assert_eq!(dropped.len(), 1, "{p:#?}");
    let d = dropped[0];
    assert_eq!(
        d.comment.as_deref(),
        Some(DropReason::GroupSourceMac.text())
    );
    assert_eq!((d.port.as_str(), d.flags), ("a", INBOUND));
    assert_eq!(d.data, frame, "the bytes as they arrived");
    assert_eq!(count(&p, "a", INBOUND, |f| is_icmp(f, 8)), 1);

    let q = read_pcapng(&without);
    assert!(q.iter().all(|r| r.comment.is_none()));
    assert!(
        !q.iter().any(|r| r.data == frame),
        "a drop is left out unless asked for"
    );
    assert_eq!(count(&q, "a", INBOUND, |f| is_icmp(f, 8)), 1, "{q:#?}");
    assert_eq!(count(&q, "a", OUTBOUND, |f| is_icmp(f, 0)), 1, "{q:#?}");
}

#[test]
fn tcpdump_reads_a_capture_from_a_pipe_and_c_stops_it() {
    if !require_root() {
        return;
    }
    assert!(
        Command::new("tcpdump").arg("--version").output().is_ok(),
        "tcpdump is not installed (.ci/run installs it)"
    );
    let inst = Instance::new(Path::new(BIN), "capture-pipe");
    let _up = inst.up(&[]);
    // Two echo exchanges after the ARP exchange: 6 packets on a.
    let pipeline = format!(
        "{BIN} capture a -w - -c 6 --prefix {} | tcpdump -r - -n icmp",
        inst.prefix
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", &pipeline])
        .env("SWITCHYARD_RUN_DIR", inst.run_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cap = CaptureProcess(Some(sh.spawn().unwrap()));
    // No file to watch: give the capture time to start.
    std::thread::sleep(Duration::from_millis(800));
    for _ in 0..2 {
        ping(&inst.netns("a"), B, Duration::from_secs(3)).expect("ping a -> b");
    }
    let out = cap
        .exit_within(Duration::from_secs(10))
        .expect("-c 6 ends the capture, and tcpdump with it");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    assert_eq!(
        text.matches("ICMP echo request").count(),
        2,
        "{text}\n{err}"
    );
    assert_eq!(text.matches("ICMP echo reply").count(), 2, "{text}\n{err}");
    assert!(text.contains(&format!("{A} > {B}")), "{text}");
    assert!(err.contains("6 packets captured"), "{err}");

    // The same with a file: exactly N packets in it.
    let file = inst.dir.join("three.pcapng");
    let cap = CaptureProcess::start(&inst, &["a", "b", "-c", "3", "-w", file.to_str().unwrap()]);
    wait_started(&file);
    ping(&inst.netns("a"), B, Duration::from_secs(3)).expect("ping a -> b");
    let out = cap
        .exit_within(Duration::from_secs(10))
        .expect("-c 3 ends the capture");
    assert!(out.status.success());
    assert_eq!(read_pcapng(&file).len(), 3);
}

#[test]
fn unknown_ports_are_named_with_the_ports_there_are() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(Path::new(BIN), "capture-unknown");
    let _up = inst.up(&[]);
    let req = Request::Capture(CaptureRequest {
        ports: vec!["a".into(), "nope".into()],
        drops: false,
        count: None,
    });
    let e = client::stream(
        &inst.socket(),
        &req,
        |_| std::ops::ControlFlow::Continue(()),
    )
    .expect_err("refused");
    assert_eq!(e.code(), Some(ErrorCode::UnknownPort));
    let msg = e.to_string();
    assert!(msg.contains("\"nope\"") && msg.contains("a, b, c"), "{msg}");
    // And from the command line, as an error.
    let out = inst
        .cmd()
        .args(["capture", "zz", "--prefix", &inst.prefix])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the ports are: a, b, c"),
        "{out:?}"
    );
}

/// Reads response lines until one is a capture status line; returns it.
fn next_status(lines: &mut impl BufRead) -> (u64, u64) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended");
        let r: Response = serde_json::from_str(&line).unwrap();
        match r.result.unwrap() {
            Reply::CaptureStatus(s) => return (s.packets, s.skipped),
            Reply::CapturePackets(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_client_that_stops_reading_makes_the_capture_skip_while_pings_go_on_without_loss() {
    if !require_root() {
        return;
    }
    let inst = Instance::new(Path::new(BIN), "capture-slow");
    let _up = inst.up(&[]);
    let mut conn = UnixStream::connect(inst.socket()).unwrap();
    let req = Envelope::new(Request::Capture(CaptureRequest {
        ports: vec!["a".into(), "b".into()],
        drops: false,
        count: None,
    }));
    let mut line = serde_json::to_string(&req).unwrap();
    line.push('\n');
    conn.write_all(line.as_bytes()).unwrap();
    let mut lines = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    let started: Response = serde_json::from_str(&first).unwrap();
    assert!(matches!(
        started.result,
        Ok(Reply::CaptureStarted(ref s)) if s.ports == ["a", "b"] && s.buffers > 0
    ));
    std::thread::sleep(Duration::from_millis(300));

    // Now the client reads nothing for a while (less than the server's 5 s progress
    // timeout) while a flood of datagrams crosses both captured ports, far more than
    // the capture's buffers and the socket hold.
    let sink = traffic::udp_socket(&inst.netns("b"), SocketAddrV4::new(B, 9000)).unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let src = traffic::udp_socket(&inst.netns("a"), SocketAddrV4::new(A, 0)).unwrap();
    let payload = [0x5au8; 1000];
    let stall = Instant::now();
    let mut pings = 0;
    let mut sent = 0u64;
    while stall.elapsed() < Duration::from_millis(2500) {
        for _ in 0..2000 {
            if src.send_to(&payload, SocketAddrV4::new(B, 9000)).is_ok() {
                sent += 1;
            }
        }
        // The dataplane never waits for the capture: every ping is answered.
        ping(&inst.netns("a"), B, Duration::from_secs(1)).expect("a ping during the stall");
        pings += 1;
    }
    assert!(pings >= 3, "{pings} pings during the stall");
    assert!(sent > 5000, "{sent} datagrams sent");

    // Reading again: the status says how many frames were skipped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (packets, skipped) = next_status(&mut lines);
        if skipped > 0 {
            assert!(packets > 0, "what fitted was sent");
            break;
        }
        assert!(Instant::now() < deadline, "no frame was skipped");
    }
    // And the capture goes on recording once the client reads.
    ping(&inst.netns("a"), B, Duration::from_secs(1)).expect("ping after the stall");
    drop(lines);
    drop(conn);
}
