//! TCP bulk throughput: with iperf3 when it is installed (the tool users trust), with
//! the project's own sender and receiver otherwise (and the report says which).

use super::kernel::have;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_os::netns;
use switchyard_testkit::traffic;

/// Which tool measured.
pub fn tool() -> &'static str {
    if have("iperf3") {
        "iperf3"
    } else {
        "switchyard's own TCP sender"
    }
}

fn spawn_in(ns: &str, args: Vec<String>) -> io::Result<Child> {
    netns::run_in_named(ns, move || {
        Command::new("iperf3")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    })
    .map_err(|e| io::Error::other(e.to_string()))?
}

/// An iperf3 server, ended (by its PID) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Goodput in Gbit/s of `streams` TCP streams from `client` to `target:port` (served
/// in `server`) over `duration`.
pub fn tcp_bulk(
    client: &str,
    server: &str,
    target: Ipv4Addr,
    port: u16,
    streams: usize,
    duration: Duration,
) -> io::Result<f64> {
    if have("iperf3") {
        iperf3(client, server, target, port, streams, duration)
    } else {
        own(client, server, target, port, streams, duration)
    }
}

fn iperf3(
    client: &str,
    server: &str,
    target: Ipv4Addr,
    port: u16,
    streams: usize,
    duration: Duration,
) -> io::Result<f64> {
    let _server = Server(spawn_in(
        server,
        vec!["-s".into(), "-1".into(), "-p".into(), port.to_string()],
    )?);
    // The server needs a moment to listen; the client retries its connection anyway.
    std::thread::sleep(Duration::from_millis(300));
    let secs = duration.as_secs().max(1).to_string();
    let mut last = String::new();
    for _ in 0..3 {
        let child = spawn_in(
            client,
            vec![
                "-c".into(),
                target.to_string(),
                "-p".into(),
                port.to_string(),
                "-t".into(),
                secs.clone(),
                "-P".into(),
                streams.to_string(),
                "-J".into(),
                "--connect-timeout".into(),
                "3000".into(),
            ],
        )?;
        let out = wait_with_timeout(child, duration + Duration::from_secs(20))?;
        let v: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| io::Error::other(format!("iperf3 output: {e}")))?;
        if let Some(bps) = v
            .pointer("/end/sum_received/bits_per_second")
            .and_then(|b| b.as_f64())
        {
            return Ok(bps / 1e9);
        }
        last = v
            .pointer("/error")
            .and_then(|e| e.as_str())
            .unwrap_or("no result")
            .to_string();
        std::thread::sleep(Duration::from_millis(300));
    }
    Err(io::Error::other(format!("iperf3: {last}")))
}

/// Waits for a child's stdout, ending it (by its PID) if it takes longer than `limit`.
fn wait_with_timeout(mut child: Child, limit: Duration) -> io::Result<Vec<u8>> {
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "iperf3 did not finish",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader
        .join()
        .map_err(|_| io::Error::other("reader panicked"))
}

/// The fallback: `streams` connections sending as fast as they can for `duration`,
/// counted at the receiver.
fn own(
    client: &str,
    server: &str,
    target: Ipv4Addr,
    port: u16,
    streams: usize,
    duration: Duration,
) -> io::Result<f64> {
    let listener = traffic::tcp_listener(server, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for i in 0..streams {
        let s = traffic::tcp_connect(
            client,
            SocketAddrV4::new(target, port),
            Duration::from_secs(5),
        )?;
        let (mut conn, _) = listener.accept()?;
        let (r, st) = (received.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if !st.load(Ordering::Relaxed) {
                    r.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }));
        let st = stop.clone();
        senders.push(std::thread::spawn(move || {
            let mut s = s;
            let mut pattern = traffic::PatternStream::new(i as u64 + 1);
            let mut buf = vec![0u8; 256 * 1024];
            pattern.fill(&mut buf);
            while !st.load(Ordering::Relaxed) {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        }));
    }
    // Skip the first half second (slow start), then count for `duration`.
    std::thread::sleep(Duration::from_millis(500));
    let before = received.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(duration);
    let bytes = received.load(Ordering::Relaxed) - before;
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in senders {
        let _ = t.join();
    }
    for t in readers {
        let _ = t.join();
    }
    Ok(bytes as f64 * 8.0 / secs / 1e9)
}
