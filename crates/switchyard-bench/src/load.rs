//! Small-frame load and latency, measured with the project's own client and server.
//!
//! * [`UdpSink`] counts 64-byte UDP datagrams arriving in a namespace (`recvmmsg`).
//! * [`blast`] sends them from another namespace (`sendmmsg`), as fast as the
//!   sending stack takes them or paced to a rate, for a fixed time; a [`Trial`] reports
//!   the offered and received rates and the loss.
//! * [`zero_loss_rate`] searches, in the manner of RFC 2544 section 26.1, for the
//!   highest offered rate that loses nothing: a binary search between zero and the rate
//!   the full-load trial offered.
//! * [`latency`] measures request/response round trips one at a time (a UDP echo) into
//!   an HDR histogram.
//!
//! Sockets are opened inside the namespaces (see [`super::traffic`]); the counting and
//! pacing happen here, so the same code measures every system under test.

use hdrhistogram::Histogram;
use nix::sys::socket::{setsockopt, sockopt};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_testkit::traffic::{self, MmsgBuffers};

/// UDP payload bytes of a small frame (the "64-byte UDP payload").
pub const PAYLOAD: usize = 64;
/// Datagrams per `sendmmsg`/`recvmmsg` call.
const VLEN: usize = 32;

/// The result of one load trial.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Trial {
    /// Datagrams per second the sender's stack accepted.
    pub offered_pps: f64,
    /// Datagrams per second that arrived.
    pub received_pps: f64,
    /// Fraction lost, 0..=1.
    pub loss: f64,
}

/// Counts datagrams arriving on a UDP port inside a namespace, on its own thread.
pub struct UdpSink {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpSink {
    pub fn start(ns: &str, bind: SocketAddrV4) -> io::Result<UdpSink> {
        let sock = traffic::udp_socket(ns, bind)?;
        set_buffers(&sock, Some(8 << 20), None);
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bench-sink".into())
            .spawn(move || {
                let mut batch = MmsgBuffers::new(VLEN, 2048, 0);
                while !s.load(Ordering::Relaxed) {
                    // Timeouts (no datagram for 50 ms) just go round to the stop check.
                    if let Ok(n) = batch.recv(&sock) {
                        c.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(UdpSink {
            count,
            stop,
            thread: Some(thread),
        })
    }

    /// Datagrams counted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks for larger socket buffers; a refusal only leaves the default size.
fn set_buffers(sock: &UdpSocket, recv: Option<usize>, send: Option<usize>) {
    if let Some(b) = recv {
        let _ = setsockopt(sock, sockopt::RcvBuf, &b);
    }
    if let Some(b) = send {
        let _ = setsockopt(sock, sockopt::SndBuf, &b);
    }
}

/// Sends 64-byte UDP datagrams from `ns` to `to` for `duration`: as fast as the
/// sending stack takes them (`rate_pps` None) or paced to `rate_pps`. Returns how many
/// were sent.
pub fn blast(
    ns: &str,
    to: SocketAddrV4,
    rate_pps: Option<f64>,
    duration: Duration,
) -> io::Result<u64> {
    let sock = traffic::udp_socket(ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    set_buffers(&sock, None, Some(4 << 20));
    sock.connect(to)?;
    let mut batch = MmsgBuffers::new(VLEN, PAYLOAD, 0x5a);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        if let Some(rate) = rate_pps {
            // Pace: do not get ahead of where the rate says we should be.
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if sent >= due {
                let wait = ((sent + VLEN as u64) as f64 / rate) - start.elapsed().as_secs_f64();
                if wait > 0.0002 {
                    std::thread::sleep(Duration::from_secs_f64(wait - 0.0001));
                }
                continue;
            }
        }
        // A full send buffer (ENOBUFS) is part of full load: try again.
        if let Ok(n) = batch.send(&sock) {
            sent += n as u64;
        }
    }
    Ok(sent)
}

/// One trial: `rate_pps` (None: full load) for `duration` from `client` to `sink`'s
/// address, then a short wait for the stragglers.
pub fn trial(
    client: &str,
    to: SocketAddrV4,
    sink: &UdpSink,
    rate_pps: Option<f64>,
    duration: Duration,
) -> io::Result<Trial> {
    let before = sink.count();
    let sent = blast(client, to, rate_pps, duration)?;
    std::thread::sleep(Duration::from_millis(150));
    let got = sink.count() - before;
    let secs = duration.as_secs_f64();
    Ok(Trial {
        offered_pps: sent as f64 / secs,
        received_pps: got as f64 / secs,
        loss: if sent == 0 {
            0.0
        } else {
            (sent.saturating_sub(got)) as f64 / sent as f64
        },
    })
}

/// One trial of the zero-loss search.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SearchTrial {
    /// The rate asked of the generator.
    pub asked_pps: f64,
    pub trial: Trial,
    /// Nothing lost, and the generator offered at least 95% of the rate asked.
    pub passed: bool,
}

/// The highest rate (datagrams/s) at which a trial loses nothing, found by a binary
/// search of `steps` trials below `ceiling` (RFC 2544, 26.1). `stop` ends the search
/// between trials (with `ErrorKind::Interrupted`).
#[allow(clippy::too_many_arguments)]
pub fn zero_loss_rate(
    client: &str,
    to: SocketAddrV4,
    sink: &UdpSink,
    ceiling: f64,
    steps: usize,
    duration: Duration,
    stop: &AtomicBool,
    trials: &mut Vec<SearchTrial>,
) -> io::Result<f64> {
    let (mut lo, mut hi) = (0.0f64, ceiling.max(1000.0));
    for _ in 0..steps {
        if stop.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let mid = (lo + hi) / 2.0;
        let t = trial(client, to, sink, Some(mid), duration)?;
        // Zero loss, and the generator really offered the rate asked of it.
        let passed = t.loss == 0.0 && t.offered_pps >= mid * 0.95;
        trials.push(SearchTrial {
            asked_pps: mid,
            trial: t,
            passed,
        });
        if passed {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Round-trip times, in nanoseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub samples: u64,
    pub lost: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
    /// (latency ns, fraction of samples at or below), for a CDF plot.
    pub cdf: Vec<(u64, f64)>,
}

/// Echoes UDP datagrams back to their sender, inside `ns`, until dropped.
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(ns: &str, bind: SocketAddrV4) -> io::Result<UdpEcho> {
        let sock = traffic::udp_socket(ns, bind)?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            })?;
        Ok(UdpEcho {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `count` request/response round trips from `client` to an echo at `to`, one at a
/// time (after a short warm-up that resolves addresses and fills caches).
pub fn latency(client: &str, to: SocketAddrV4, count: u64) -> io::Result<Latency> {
    let sock = traffic::udp_socket(client, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    sock.connect(to)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut h =
        Histogram::<u64>::new_with_bounds(1_000, 10_000_000_000, 3).map_err(io::Error::other)?;
    let mut buf = [0u8; 128];
    let mut lost = 0;
    for i in 0..count + 100 {
        let msg = i.to_be_bytes();
        let t0 = Instant::now();
        sock.send(&msg)?;
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[..8] == msg => {
                    if i >= 100 {
                        let _ = h.record((t0.elapsed().as_nanos() as u64).max(1_000));
                    }
                    break;
                }
                Ok(_) => continue, // a late answer to an earlier request
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    lost += 1;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    // Every half percent, then the tail.
    let cdf = (1..=199)
        .map(|k| f64::from(k) / 200.0)
        .chain([0.999, 0.9999, 1.0])
        .map(|q| (h.value_at_quantile(q), q))
        .collect();
    Ok(Latency {
        samples: h.len(),
        lost,
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        mean_ns: h.mean(),
        cdf,
    })
}
