//! The control socket server: a unix socket (mode 0600) per instance, answering one
//! request line with one response line (see [`protocol`](super::protocol) for the
//! shapes). It runs on its own thread and reads the dataplane's tables by sending a
//! query closure to the dataplane thread ([`dataplane::Handle::query`]), so a `show`
//! never races the packets being switched.
//!
//! Clients are served one at a time, which is plenty for a control socket; timeouts
//! on reads and writes keep a stuck client from holding the others off for long, and
//! the request line is capped at [`MAX_REQUEST_BYTES`] so no client can make the
//! server buffer without bound.

use super::protocol::*;
use crate::dataplane::{self, PortStatus, View};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use switchyard_core::pipeline::conntrack::ProtoState;
use switchyard_core::pipeline::{
    Conn, Counters, DropReason, Event, NeighborState, NextHop, Pipeline, PortId, RouteOrigin, Tuple,
};

/// How long a client may take to send its request, or to take in the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server knows of each port from the topology (it does not change).
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub port: String,
    pub endpoint: String,
    pub interface: String,
    pub netns: String,
    pub network: String,
    pub mac: String,
    pub ip: String,
}

/// A running control server.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file) and starts answering.
    pub fn start(path: &Path, dp: dataplane::Handle, ports: Vec<PortInfo>) -> io::Result<Server> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-ctl".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(conn) => {
                            if let Err(e) = serve(conn, &dp, &ports) {
                                // The client's loss (it went away or stalled); the
                                // server carries on with the next one.
                                tracing::debug!("control client dropped: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("control socket accept failed: {e}"),
                    }
                }
            })?;
        tracing::debug!(socket = %path.display(), "control socket listening");
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the server and removes the socket file.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept with a connection of our own.
            let _ = UnixStream::connect(&self.path);
            if t.join().is_err() {
                tracing::error!("the control socket thread panicked");
            }
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// What reading the next request line found.
#[derive(Debug, PartialEq, Eq)]
enum Incoming {
    /// A line, now in the buffer without its newline.
    Line,
    /// More than [`MAX_REQUEST_BYTES`] without a newline.
    TooLarge,
    /// The client closed its end.
    End,
}

/// Reads the next request line into `buf`, never more than [`MAX_REQUEST_BYTES`] and
/// its newline. A last line without a newline counts as a line.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Incoming> {
    buf.clear();
    let limit = MAX_REQUEST_BYTES as u64 + 1;
    let n = reader.take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Incoming::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Incoming::Line);
    }
    if n as u64 == limit {
        return Ok(Incoming::TooLarge);
    }
    Ok(Incoming::Line)
}

fn serve(conn: UnixStream, dp: &dataplane::Handle, ports: &[PortInfo]) -> io::Result<()> {
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    conn.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut line = Vec::new();
    loop {
        let (resp, close) = match next_line(&mut reader, &mut line)? {
            Incoming::End => return Ok(()),
            Incoming::Line => (answer(&line, dp, ports), false),
            // The rest of the line is still unread and would be taken for the next
            // request: answer, then hang up.
            Incoming::TooLarge => (
                Response::error(ErrorReply::new(
                    ErrorCode::TooLarge,
                    format!(
                        "request line longer than {MAX_REQUEST_BYTES} bytes; closing the \
                         connection"
                    ),
                )),
                true,
            ),
        };
        let mut text = serde_json::to_string(&resp).expect("responses serialize");
        text.push('\n');
        writer.write_all(text.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}

/// The response to one request line.
fn answer(line: &[u8], dp: &dataplane::Handle, ports: &[PortInfo]) -> Response {
    let req = match parse_request(line) {
        Ok(req) => req,
        Err(e) => {
            tracing::debug!("control request refused: {e}");
            return Response::error(e);
        }
    };
    tracing::debug!(request = req.name(), "control request");
    // A bug while answering costs this answer, not the control socket: the thread
    // would otherwise be gone for the rest of the instance's life.
    match catch_unwind(AssertUnwindSafe(|| handle(&req, dp, ports))) {
        Ok(Ok(reply)) => Response::ok(reply),
        Ok(Err(dataplane::NotRunning)) => Response::error(ErrorReply::new(
            ErrorCode::DataplaneStopped,
            "the dataplane is not running (its workers stopped; the log of \
             `switchyard up` says why)",
        )),
        Err(_) => {
            tracing::error!(request = req.name(), "answering a control request panicked");
            Response::error(ErrorReply::new(
                ErrorCode::Internal,
                format!("switchyard failed while answering {:?}", req.name()),
            ))
        }
    }
}

fn handle(
    req: &Request,
    dp: &dataplane::Handle,
    ports: &[PortInfo],
) -> Result<Reply, dataplane::NotRunning> {
    Ok(match *req {
        Request::Show { table } => match table {
            Table::Ports => Reply::Ports(port_rows(&gather(dp)?, ports)),
            Table::Fdb => Reply::Fdb(dp.query(|v| fdb_rows(&v))?),
            Table::Counters => Reply::Counters(counters(&gather(dp)?)),
            Table::Routes => Reply::Routes(dp.query(|v| route_rows(&v))?),
            Table::Neighbors => Reply::Neighbors(dp.query(|v| neighbor_rows(&v))?),
            Table::Conntrack => Reply::Conntrack(dp.query(|v| conntrack_report(&v))?),
        },
    })
}

/// What every worker keeps on its own, summed over the workers.
struct Merged {
    counters: Counters,
    ports: Vec<PortStatus>,
    names: Vec<String>,
    workers: Vec<WorkerRow>,
}

/// Asks every worker for its counters, I/O counters and CPU time, and adds them up.
fn gather(dp: &dataplane::Handle) -> Result<Merged, dataplane::NotRunning> {
    let per_worker = dp.query_all(|v| {
        let names = (0..v.pipeline.ports().len())
            .map(|i| {
                v.pipeline
                    .port(PortId(i as u16))
                    .map_or_else(|| format!("#{i}"), |s| s.name.clone())
            })
            .collect::<Vec<_>>();
        (
            v.pipeline.counters().clone(),
            v.ports.to_vec(),
            v.cpu_time(),
            names,
            v.worker,
        )
    })?;
    let counters = Pipeline::merged_counters(per_worker.iter().map(|w| &w.0));
    let mut ports: Vec<PortStatus> = per_worker.first().map(|w| w.1.clone()).unwrap_or_default();
    for w in per_worker.iter().skip(1) {
        for (a, b) in ports.iter_mut().zip(&w.1) {
            a.io.add(&b.io);
        }
    }
    let workers = per_worker
        .iter()
        .map(|w| WorkerRow {
            worker: w.4,
            cpu_secs: w.2.as_secs_f64(),
            rx_frames: w.0.total().rx_frames,
        })
        .collect();
    let names = per_worker
        .into_iter()
        .next()
        .map(|w| w.3)
        .unwrap_or_default();
    Ok(Merged {
        counters,
        ports,
        names,
        workers,
    })
}

fn port_rows(m: &Merged, info: &[PortInfo]) -> Vec<PortRow> {
    info.iter()
        .zip(&m.ports)
        .zip(&m.counters.ports)
        .map(|((i, s), c)| PortRow {
            port: i.port.clone(),
            endpoint: i.endpoint.clone(),
            interface: i.interface.clone(),
            netns: i.netns.clone(),
            network: i.network.clone(),
            mac: i.mac.clone(),
            ip: i.ip.clone(),
            mtu: s.caps.mtu,
            vnet_hdr: s.caps.vnet_hdr,
            offloads: s.caps.offloads.to_string(),
            queues: s.caps.queues,
            rx_frames: c.rx_frames,
            tx_frames: s.io.tx_frames,
            dropped: c.dropped,
        })
        .collect()
}

fn fdb_rows(v: &View<'_>) -> Vec<FdbRow> {
    let p = &*v.pipeline;
    let now = v.now.secs();
    let mut rows: Vec<FdbRow> = p
        .fdb()
        .entries()
        .into_iter()
        .map(|(d, mac, e)| FdbRow {
            network: p
                .domain(d)
                .map_or_else(|| format!("#{}", d.0), |s| s.name.clone()),
            mac: mac.to_string(),
            port: p
                .port(e.port)
                .map_or_else(|| format!("#{}", e.port.0), |s| s.name.clone()),
            // A pinned entry (an endpoint's own MAC, bound to its port) never ages.
            age_secs: if e.pinned {
                0
            } else {
                now.saturating_sub(e.last_seen)
            },
        })
        .collect();
    rows.sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    rows
}

fn counters(m: &Merged) -> CountersReport {
    let c = &m.counters;
    let ports = c
        .ports
        .iter()
        .enumerate()
        .map(|(i, pc)| {
            let io = m.ports.get(i).map(|s| s.io).unwrap_or_default();
            PortCounterRow {
                port: m.names.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
                rx_frames: pc.rx_frames,
                rx_bytes: pc.rx_bytes,
                forwarded: pc.forwarded,
                consumed: pc.consumed,
                dropped: pc.dropped,
                held: pc.held,
                tx_frames: io.tx_frames,
                tx_bytes: io.tx_bytes,
                tx_errors: io.tx_errors,
                rx_errors: io.rx_errors,
                rx_gso: io.rx_gso,
                tx_gso: io.tx_gso,
                tx_segmented: io.tx_segmented,
                tx_segments: io.tx_segments,
                tx_coalesced: io.tx_coalesced,
                tx_coalesced_datagrams: io.tx_coalesced_datagrams,
                drops: pc
                    .drop_reasons()
                    .map(|(r, n)| (r.id().to_string(), n))
                    .collect(),
            }
        })
        .collect();
    let total = c.total();
    CountersReport {
        ports,
        drops: DropReason::ALL
            .iter()
            .map(|&r| NamedCount {
                id: r.id().into(),
                stage: r.stage().into(),
                text: r.text().into(),
                count: total.drops[r as usize],
            })
            .collect(),
        events: Event::ALL
            .iter()
            .map(|&e| NamedCount {
                id: e.id().into(),
                stage: e.stage().into(),
                text: e.text().into(),
                count: c.events(e),
            })
            .collect(),
        workers: m.workers.clone(),
    }
}

fn route_rows(v: &View<'_>) -> Vec<RouteRow> {
    let p = &*v.pipeline;
    let mut rows: Vec<RouteRow> = p
        .fib()
        .routes()
        .iter()
        .map(|r| {
            let d = r.next_hop.domain();
            let spec = p.domain(d);
            RouteRow {
                prefix: r.prefix.to_string(),
                via: match r.next_hop {
                    NextHop::Via { gateway, .. } => Some(gateway.to_string()),
                    NextHop::Connected { .. } => None,
                },
                network: spec.map_or_else(|| format!("#{}", d.0), |s| s.name.clone()),
                origin: match r.origin {
                    RouteOrigin::Connected => "connected".into(),
                    RouteOrigin::Static => "static".into(),
                },
                mtu: spec.map_or(0, |s| s.mtu),
            }
        })
        .collect();
    // Most specific first, as a router reads its table.
    rows.sort_by(|a, b| {
        let len = |r: &RouteRow| {
            r.prefix
                .rsplit('/')
                .next()
                .and_then(|l| l.parse::<u8>().ok())
                .unwrap_or(0)
        };
        len(b).cmp(&len(a)).then_with(|| a.prefix.cmp(&b.prefix))
    });
    rows
}

fn neighbor_rows(v: &View<'_>) -> Vec<NeighborRow> {
    let p = &*v.pipeline;
    let mut rows: Vec<NeighborRow> = p
        .neighbors()
        .entries()
        .into_iter()
        .map(|n| NeighborRow {
            ip: n.ip.to_string(),
            mac: if n.state == NeighborState::Incomplete {
                String::new()
            } else {
                n.mac.to_string()
            },
            network: p
                .domain(n.domain)
                .map_or_else(|| format!("#{}", n.domain.0), |s| s.name.clone()),
            state: serde_json::to_value(n.state)
                .ok()
                .and_then(|s| s.as_str().map(String::from))
                .unwrap_or_default(),
            age_secs: v.now.0.saturating_sub(n.updated) / 1_000_000_000,
            queued: n.queued(),
        })
        .collect();
    rows.sort_by_key(|r| {
        r.ip.parse::<std::net::Ipv4Addr>()
            .map(u32::from)
            .unwrap_or(0)
    });
    rows
}

fn conntrack_report(v: &View<'_>) -> ConntrackReport {
    let p = &*v.pipeline;
    let ct = p.conntrack();
    let tuple = |t: &Tuple, d: usize, c: &Conn| FlowTuple {
        src: t.src.to_string(),
        dst: t.dst.to_string(),
        sport: t.sport,
        dport: t.dport,
        packets: c.packets[d],
        bytes: c.bytes[d],
    };
    let mut connections: Vec<ConntrackRow> = ct
        .entries(v.now)
        .into_iter()
        .map(|(c, left)| ConntrackRow {
            // "tcp", "udp", "icmp", or "proto N".
            proto: c.orig.proto.to_string(),
            state: match c.state {
                ProtoState::Tcp(s) => s.name().into(),
                ProtoState::Udp { replied: false } => "UNREPLIED".into(),
                ProtoState::Udp { replied: true } => "REPLIED".into(),
                ProtoState::Icmp if c.packets[1] == 0 => "UNREPLIED".into(),
                ProtoState::Icmp => "REPLIED".into(),
            },
            timeout_secs: left,
            assured: c.assured,
            nat: match (c.is_snat(), c.is_dnat()) {
                (true, true) => "snat+dnat".into(),
                (false, true) => "dnat".into(),
                _ => "snat".into(),
            },
            original: tuple(&c.orig, 0, &c),
            reply: tuple(&c.reply, 1, &c),
        })
        .collect();
    connections.sort_by(|a, b| {
        (&a.original.src, a.original.sport).cmp(&(&b.original.src, b.original.sport))
    });
    ConntrackReport {
        count: ct.len(),
        max: ct.capacity(),
        connections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client;
    use crate::dataplane::{Dataplane, Options};
    use std::io::Cursor;
    use switchyard_core::pipeline::Spec;

    fn lines(input: &[u8]) -> Vec<(Incoming, Vec<u8>)> {
        let mut r = Cursor::new(input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let got = next_line(&mut r, &mut buf).unwrap();
            let end = got == Incoming::End;
            out.push((got, buf.clone()));
            if end {
                return out;
            }
        }
    }

    #[test]
    fn a_line_may_be_as_long_as_the_limit_and_no_longer() {
        let mut at_limit = vec![b'x'; MAX_REQUEST_BYTES];
        at_limit.push(b'\n');
        at_limit.extend_from_slice(b"next\nlast");
        let got = lines(&at_limit);
        assert_eq!(got[0].0, Incoming::Line);
        assert_eq!(got[0].1.len(), MAX_REQUEST_BYTES);
        assert_eq!(got[1], (Incoming::Line, b"next".to_vec()));
        // A last line without its newline still counts.
        assert_eq!(got[2], (Incoming::Line, b"last".to_vec()));
        assert_eq!(got[3].0, Incoming::End);

        let over = vec![b'x'; MAX_REQUEST_BYTES + 1];
        assert_eq!(lines(&over)[0].0, Incoming::TooLarge);
        let mut endless = Cursor::new(vec![b'{'; 10 * MAX_REQUEST_BYTES]);
        let mut buf = Vec::new();
        assert_eq!(
            next_line(&mut endless, &mut buf).unwrap(),
            Incoming::TooLarge
        );
        assert_eq!(buf.len(), MAX_REQUEST_BYTES + 1, "never buffers more");
    }

    /// A server over a dataplane with no ports: everything but the TAPs, so no root.
    struct TestServer {
        server: Option<Server>,
        dataplane: Option<dataplane::Running>,
        dir: PathBuf,
    }

    impl TestServer {
        fn new(name: &str) -> TestServer {
            let dir = std::env::temp_dir().join(format!("sy-ctl-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let pipeline = Pipeline::new(Spec::new(Vec::new(), Vec::new())).unwrap();
            let running = Dataplane::new(pipeline, vec![Vec::new()], Options::default())
                .spawn()
                .unwrap();
            let server =
                Server::start(&dir.join("control.sock"), running.handle(), Vec::new()).unwrap();
            TestServer {
                server: Some(server),
                dataplane: Some(running),
                dir,
            }
        }

        fn socket(&self) -> PathBuf {
            self.dir.join("control.sock")
        }

        /// Writes `bytes` and returns every line the server sends before it hangs up.
        fn raw(&self, bytes: &[u8]) -> Vec<String> {
            let mut conn = UnixStream::connect(self.socket()).unwrap();
            conn.write_all(bytes).unwrap();
            conn.shutdown(std::net::Shutdown::Write).unwrap();
            BufReader::new(conn).lines().map(Result::unwrap).collect()
        }

        fn code_of(&self, line: &str) -> ErrorCode {
            let answers = self.raw(format!("{line}\n").as_bytes());
            assert_eq!(answers.len(), 1, "{answers:?}");
            let r: Response = serde_json::from_str(&answers[0]).unwrap();
            assert_eq!(r.version, PROTOCOL_VERSION);
            r.result.expect_err(line).code
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(s) = self.server.take() {
                s.stop();
            }
            if let Some(d) = self.dataplane.take() {
                d.stop().unwrap();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn the_server_answers_typed_replies_and_coded_errors() {
        let b = TestServer::new("answers");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(b.socket()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        for t in Table::ALL {
            let reply = client::request(&b.socket(), &Request::Show { table: t }).unwrap();
            assert_eq!(reply.name(), t.name());
        }
        assert_eq!(
            client::request(&b.socket(), &Request::Show { table: Table::Fdb }).unwrap(),
            Reply::Fdb(Vec::new())
        );

        assert_eq!(
            b.code_of(r#"{"version":2,"request":{"show":{"table":"fdb"}}}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            b.code_of(r#"{"version":1,"request":"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            b.code_of(r#"{"version":1,"request":{"capture":{}}}"#),
            ErrorCode::UnknownRequest
        );

        // Requests in turn on one connection, each answered in order.
        let good = r#"{"version":1,"request":{"show":{"table":"routes"}}}"#;
        let answers = b.raw(format!("{good}\nnonsense\n{good}\n").as_bytes());
        let codes: Vec<Result<&str, ErrorCode>> = answers
            .iter()
            .map(|a| {
                let r: Response = serde_json::from_str(a).unwrap();
                r.result.map(|x| x.name()).map_err(|e| e.code)
            })
            .collect();
        assert_eq!(
            codes,
            [Ok("routes"), Err(ErrorCode::BadRequest), Ok("routes")]
        );
    }

    #[test]
    fn an_oversize_line_is_refused_and_the_connection_closed() {
        let b = TestServer::new("oversize");
        let mut flood = vec![b' '; 2 * MAX_REQUEST_BYTES];
        flood.extend_from_slice(b"\n{\"version\":1,\"request\":{\"show\":{\"table\":\"fdb\"}}}\n");
        let mut conn = UnixStream::connect(b.socket()).unwrap();
        // The server may hang up before taking all of it.
        let _ = conn.write_all(&flood);
        let answers: Vec<String> = BufReader::new(conn).lines().map_while(Result::ok).collect();
        assert_eq!(answers.len(), 1, "one answer, then the server hangs up");
        let r: Response = serde_json::from_str(&answers[0]).unwrap();
        assert_eq!(r.result.unwrap_err().code, ErrorCode::TooLarge);
        // And the server is still there for the next client.
        client::request(&b.socket(), &Request::Show { table: Table::Fdb }).unwrap();
    }

    #[test]
    fn a_stopped_dataplane_is_reported_as_such() {
        let mut b = TestServer::new("stopped");
        b.dataplane.take().unwrap().stop().unwrap();
        let e = client::request(
            &b.socket(),
            &Request::Show {
                table: Table::Counters,
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::DataplaneStopped), "{e}");
    }
}
