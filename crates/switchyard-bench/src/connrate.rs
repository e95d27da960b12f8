//! Connection setup rate: how many short TCP connections a path carries per second.
//!
//! Each of a few *connectors* in the client namespace loops for a fixed time: connect,
//! send a 16-byte request, read the 16-byte answer, read the server's close, close.
//! A [`ConnServer`] in the server namespace accepts on several threads, reads the
//! request, answers it and closes first. What is counted is the completed round: a
//! connection whose handshake, exchange or close did not finish is a failure, with the
//! first error kept to say why.
//!
//! Every connection costs the path a new flow: a conntrack entry (kernel, switchyard),
//! a socket of the NAT process's own (pasta, slirp4netns). Three limits shape the
//! figure, and are part of what it measures:
//!
//! * **TIME_WAIT.** The side that closes first keeps the connection's 4-tuple for 60 s.
//!   The server closes first, so the client's ports are free again at once and the
//!   client's ~28 000 ephemeral ports are not used up; the server's TIME_WAIT
//!   connections accept a new SYN for the same 4-tuple (RFC 6191, with timestamps).
//! * **The NAT table.** Each closed connection's entry stays in TIME_WAIT for 120 s in
//!   conntrack (kernel and switchyard, netfilter's default). A new connection from a
//!   client port already in the table re-opens that entry, so at most one entry per
//!   client port stays (≈ 28 000), below switchyard's default `conntrack_max` of 65 536
//!   (the harness leaves it at the default) and the kernel's `nf_conntrack_max`. A
//!   table that fills refuses new flows: their SYNs are dropped, and a connector waits
//!   [`CONNECT_TIMEOUT`] for each, so a full table shows as failures and a collapsed
//!   rate — a real limit, reported as such, not a fault of the generator.
//! * **Sockets.** Each connector holds one connection at a time, the server one per
//!   accepting thread.
//!
//! Connectors are threads that entered the client namespace once, so a connection
//! costs no namespace switch.

use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_os::netns;
use switchyard_testkit::traffic;

/// What the client sends, and the server sends back: 16 bytes each way.
pub const REQUEST: &[u8; 16] = b"switchyard conn\n";
/// How long a connector waits for a handshake. Linux retransmits a SYN after 1 s, so
/// a connection that needed a retransmission (a dropped SYN) counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long either side waits for the other's bytes or close.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// One run of the generator.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConnRate {
    /// Connections that completed: connected, exchanged, closed.
    pub completed: u64,
    /// Attempts that did not.
    pub failed: u64,
    /// From the first attempt to the end of the last one.
    pub secs: f64,
    /// Completed connections per second.
    pub per_sec: f64,
    /// The first failure's error, if any.
    pub first_error: Option<String>,
}

/// A TCP server in a namespace that answers one request per connection and closes
/// first; stopped when dropped.
pub struct ConnServer {
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ConnServer {
    /// Listens on `bind` inside `ns`, accepting on `threads` threads.
    pub fn start(ns: &str, bind: SocketAddrV4, threads: usize) -> io::Result<ConnServer> {
        let listener = traffic::tcp_listener(ns, bind)?;
        // accept() gives up after this, so every thread sees the stop flag.
        setsockopt(&listener, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
            .map_err(io::Error::from)?;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (l, s, n) = (listener.try_clone()?, stop.clone(), answered.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("bench-conn-srv{i}"))
                    .spawn(move || serve(l, &s, &n))?,
            );
        }
        Ok(ConnServer {
            answered,
            stop,
            threads: handles,
        })
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool, answered: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            // A connection that misbehaves is the client's failure to count.
            Ok((conn, _)) => {
                if answer(conn).is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The timeout goes round to the stop check.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Out of file descriptors, say: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Reads the request, answers it, and closes (first: the TIME_WAIT stays here).
fn answer(mut conn: TcpStream) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; REQUEST.len()];
    conn.read_exact(&mut buf)?;
    conn.write_all(&buf)
}

impl Drop for ConnServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection: connect, exchange, see the server's close, close.
fn one(to: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(REQUEST)?;
    let mut buf = [0u8; REQUEST.len()];
    s.read_exact(&mut buf)?;
    if &buf != REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the answer is not the request",
        ));
    }
    // The server's FIN: it closes first.
    match s.read(&mut buf)? {
        0 => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more bytes than the answer",
        )),
    }
}

/// What one connector did.
#[derive(Default)]
struct Tally {
    completed: u64,
    failed: u64,
    first_error: Option<String>,
}

fn connector(to: SocketAddr, until: Instant, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        match one(to) {
            Ok(()) => t.completed += 1,
            Err(e) => {
                t.failed += 1;
                if t.first_error.is_none() {
                    t.first_error = Some(e.to_string());
                }
                // No ephemeral port free, or the server refusing: do not spin.
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrNotAvailable | io::ErrorKind::ConnectionRefused
                ) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    t
}

/// `connectors` connectors in namespace `client` open connections to `to` for
/// `duration` (or until `stop`); returns what completed.
pub fn conn_rate(
    client: &str,
    to: SocketAddrV4,
    connectors: usize,
    duration: Duration,
    stop: &AtomicBool,
) -> io::Result<ConnRate> {
    let ns = netns::open(client).map_err(|e| io::Error::other(e.to_string()))?;
    let start = Instant::now();
    let until = start + duration;
    let tallies: Vec<io::Result<Tally>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..connectors.max(1))
            .map(|_| {
                let ns = &ns;
                s.spawn(move || {
                    netns::run_in(ns, || connector(SocketAddr::V4(to), until, stop))
                        .map_err(|e| io::Error::other(e.to_string()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        let t = t?;
        all.completed += t.completed;
        all.failed += t.failed;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    Ok(ConnRate {
        completed: all.completed,
        failed: all.failed,
        secs,
        per_sec: all.completed as f64 / secs,
        first_error: all.first_error,
    })
}
