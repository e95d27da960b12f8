//! The endpoint over a dataplane with no ports (everything but the TAPs, so no root):
//! who may listen, what a scrape looks like, and clients that misbehave.

use super::*;
use crate::dataplane::{Dataplane, Options};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::{Pipeline, Spec};

#[test]
fn only_loopback_is_served_without_metrics_public() {
    for ok in [
        "127.0.0.1:9477",
        "127.1.2.3:0",
        "[::1]:9477",
        "[::ffff:127.0.0.1]:1",
    ] {
        let a: SocketAddr = ok.parse().unwrap();
        assert!(is_loopback(&a), "{ok}");
        check_address(a, false).unwrap();
    }
    for refused in [
        "0.0.0.0:9477",
        "[::]:9477",
        "10.0.0.1:80",
        "[::ffff:10.0.0.1]:1",
    ] {
        let a: SocketAddr = refused.parse().unwrap();
        let e = check_address(a, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("--metrics {a}: ")) && msg.contains("--metrics-public"),
            "{msg}"
        );
        check_address(a, true).unwrap();
    }
}

#[test]
fn a_port_in_use_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Listener::bind(addr, false).unwrap_err();
    assert!(matches!(e, MetricsError::Bind { .. }), "{e}");
    assert!(e.to_string().contains("cannot listen there"), "{e}");
}

/// An endpoint on a free loopback port over a dataplane with no ports.
struct TestEndpoint {
    exporter: Option<Exporter>,
    dataplane: Option<dataplane::Running>,
    dir: PathBuf,
}

impl TestEndpoint {
    fn new(name: &str) -> TestEndpoint {
        let dir = std::env::temp_dir().join(format!("sy-metrics-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pipeline = Pipeline::new(Spec::new(Vec::new(), Vec::new())).unwrap();
        let running = Dataplane::new(pipeline, vec![Vec::new()], Options::default())
            .spawn()
            .unwrap();
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let exporter = Exporter::start(
            l,
            &dir.join("metrics.sock"),
            running.handle(),
            crate::control::LiveTopology::new(crate::topology::config::parse("", "empty").unwrap()),
            None,
        )
        .unwrap();
        TestEndpoint {
            exporter: Some(exporter),
            dataplane: Some(running),
            dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.exporter.as_ref().unwrap().local_addr()
    }

    /// Sends `request` and reads until the endpoint closes: the raw answer.
    fn raw(&self, request: &[u8]) -> String {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(&self, path: &str) -> String {
        self.raw(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
    }
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        if let Some(e) = self.exporter.take() {
            e.stop();
        }
        if let Some(d) = self.dataplane.take() {
            d.stop().unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_scrape_is_prometheus_text_and_other_paths_are_not_found() {
    let t = TestEndpoint::new("scrape");
    let a = t.get("/metrics");
    assert!(a.starts_with("HTTP/1.0 200 "), "{a}");
    assert!(
        a.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{a}"
    );
    let body = a.split_once("\r\n\r\n").unwrap().1;
    for want in [
        "# TYPE switchyard_table_capacity gauge\n",
        "switchyard_table_capacity{table=\"conntrack\"} ",
        "# TYPE switchyard_events_total counter\n",
        "switchyard_events_total{event=\"fdb_learned\",stage=\"l2-learn\"} 0\n",
        "# TYPE switchyard_worker_cpu_seconds_total counter\n",
        "switchyard_worker_cpu_seconds_total{worker=\"0\"} ",
    ] {
        assert!(body.contains(want), "no {want:?} in\n{body}");
    }
    // A query string is no other path.
    assert!(t.get("/metrics?x=1").starts_with("HTTP/1.0 200 "));
    for path in ["/", "/metricsx", "/metrics/", "/../metrics"] {
        let a = t.get(path);
        assert!(a.starts_with("HTTP/1.0 404 "), "{path}: {a}");
    }
    let a = t.raw(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert!(
        a.starts_with("HTTP/1.0 405 ") && a.contains("Allow: GET, HEAD"),
        "{a}"
    );
}

#[test]
fn a_request_without_end_is_cut_off_and_others_are_answered() {
    let t = TestEndpoint::new("flood");
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nX: ").unwrap();
    // A header line that never ends: the relay hangs up past its limit.
    let line = vec![b'a'; 4096];
    let mut sent = 0;
    while sent <= 2 * relay::MAX_REQUEST_BYTES && s.write_all(&line).is_ok() {
        sent += line.len();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(t.get("/metrics").starts_with("HTTP/1.0 200 "));
}

#[test]
fn a_client_that_never_reads_holds_up_neither_others_nor_stop() {
    let mut t = TestEndpoint::new("stuck");
    let mut stuck = TcpStream::connect(t.addr()).unwrap();
    stuck
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // Pipelined scrapes up to the relay's limit, none of the answers read.
    let req = b"GET /metrics HTTP/1.1\r\n\r\n";
    for _ in 0..relay::MAX_REQUEST_BYTES / req.len() {
        if stuck.write_all(req).is_err() {
            break;
        }
    }
    // Time for the answers to pile up unread (the scrape below is answered all the same
    // if it comes sooner, but would prove less).
    std::thread::sleep(Duration::from_millis(500));
    let took = Instant::now();
    assert!(t.get("/metrics").starts_with("HTTP/1.0 200 "));
    assert!(
        took.elapsed() < Duration::from_secs(1),
        "{:?}",
        took.elapsed()
    );
    let took = Instant::now();
    let addr = t.addr();
    t.exporter.take().unwrap().stop();
    assert!(
        took.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        took.elapsed()
    );
    assert!(TcpStream::connect(addr).is_err(), "the port is closed");
    assert!(
        !t.dir.join("metrics.sock").exists(),
        "the unix socket is removed"
    );
}

#[test]
fn a_silent_client_loses_its_slot() {
    let t = TestEndpoint::new("silent");
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(relay::IDLE_TIMEOUT * 3)).unwrap();
    let took = Instant::now();
    let mut out = Vec::new();
    // Closed without a word once idle too long (a read error would be a timeout).
    s.read_to_end(&mut out).expect("closed by the endpoint");
    let took = took.elapsed();
    assert!(out.is_empty());
    assert!(
        took >= relay::IDLE_TIMEOUT && took < relay::IDLE_TIMEOUT * 2,
        "{took:?}"
    );
}
