//! The control socket server: a unix socket (mode 0600, in a directory only its
//! owner may enter) per instance, answering each request line with one response line
//! (see [`protocol`](super::protocol) for the shapes).
//!
//! One thread serves every client from one `epoll` loop (mio), on non-blocking
//! sockets, so no client can hold another off:
//!
//! * at most [`MAX_CLIENTS`] connections at once. When all are taken, a newcomer
//!   takes the slot of the connection idle the longest (no request in progress); if
//!   every one is in the middle of a request, the newcomer is answered `busy` and
//!   closed. 200 clients that connect and say nothing cost an answer nothing.
//! * a request line longer than [`MAX_REQUEST_BYTES`] is answered `too_large` and the
//!   connection closed; the server never buffers more than that per client.
//! * a connection that makes no progress for [`CLIENT_TIMEOUT`] — sends nothing, or
//!   takes none of its answer — is closed. A client that sends requests and never
//!   reads gets no further answers until it has taken the last (its requests stay in
//!   its own socket buffer), then is closed.
//! * stopping the server wakes the loop, which drops every connection as it is: a
//!   stuck client never delays teardown.
//!
//! Tables are read on this thread, not on a worker's: [`dataplane::Handle::tables`]
//! copies them entry by entry under their own fine-grained locks while the workers
//! keep switching. The big ones (`fdb`, `conntrack`) are then streamed: the response
//! line is written [`STREAM_ROWS`] rows at a time, as fast as the client takes it, so
//! a 65 536-flow dump never sits whole in a buffer. What each worker counts on its own
//! (`counters`, `ports`) is a small copy each worker makes between two batches.

use super::protocol::*;
use super::snapshot::LiveTopology;
pub use super::snapshot::PortInfo;
use super::snapshot::{counters, gather, port_rows};
use crate::dataplane::{self, View};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::conntrack::ProtoState;
use switchyard_core::pipeline::{Conn, NeighborState, NextHop, PortId, RouteOrigin, Tuple};

/// How long a connection may go without progress: sending its request, or taking in
/// the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CLIENTS: usize = 64;
/// Rows of a streamed table serialized at a time.
pub const STREAM_ROWS: usize = 512;

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);

/// What the server knows of the instance besides the dataplane's tables.
pub struct Instance {
    /// The topology the instance runs now (`show config` prints it, `show ports`
    /// and `network inspect` describe it).
    pub topology: LiveTopology,
    /// Where changes go (`None`: this instance takes none, and says so).
    pub changes: Option<super::change::Changes>,
    /// The DNS service (`None`: none runs, and `show dns` says so).
    pub dns: Option<crate::dns::DnsHandle>,
}

/// A running control server.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file) and starts answering. The
    /// directory of `path` should be private (mode 0700, as the instance directory
    /// is): the socket is made 0600 right after `bind`, and no one but the owner can
    /// reach it even in between.
    pub fn start(path: &Path, dp: dataplane::Handle, instance: Instance) -> io::Result<Server> {
        if std::fs::symlink_metadata(path).is_ok() {
            std::fs::remove_file(path)?;
        }
        let mut listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let m = std::fs::symlink_metadata(path)?;
        if m.mode() & 0o077 != 0 || m.uid() != nix::unistd::geteuid().as_raw() {
            let _ = std::fs::remove_file(path);
            return Err(io::Error::other(format!(
                "{} came out with mode {:o} and owner {}; refusing to serve on it",
                path.display(),
                m.mode() & 0o777,
                m.uid()
            )));
        }
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-ctl".into())
            .spawn(move || {
                let mut l = Loop {
                    poll,
                    listener,
                    clients: HashMap::new(),
                    next: 2,
                    dp,
                    instance,
                    stop: stop2,
                };
                if let Err(e) = l.run() {
                    tracing::error!("the control socket stopped: {e}");
                }
            })?;
        tracing::debug!(socket = %path.display(), "control socket listening");
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Wakes the server's loop: a live stream that was waiting has its next line
    /// (the answer to a change) and is pulled now rather than at the next poll.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the server (whatever its clients are doing) and removes the socket file.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.waker.wake();
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

/// The rest of a streamed response, chunk by chunk.
type Chunks = Box<dyn Iterator<Item = Vec<u8>>>;

/// How often the server looks for new lines of live streams that were waiting.
pub const LIVE_POLL: Duration = Duration::from_millis(20);

/// What a live stream has next.
pub enum Pull {
    /// Bytes to send: part of a response line, or whole lines.
    Line(Vec<u8>),
    /// Nothing yet: ask again later (the server polls every [`LIVE_POLL`]).
    Pending,
    /// The stream is over; the connection takes requests again.
    End,
}

/// An answer written as it comes: a live trace, a capture, an event stream. The
/// server pulls whenever the client has taken what was pulled before, so a slow
/// client slows only its own stream (whose source must then skip, not wait).
/// Dropping it (the client hung up, or the server stops) must release whatever it
/// holds in the dataplane. Live streams never leave the server's thread.
pub trait Live {
    fn pull(&mut self) -> Pull;
}

/// A response whose pieces are all known up front, as a [`Live`] stream.
struct Pieces(Chunks);

impl Live for Pieces {
    fn pull(&mut self) -> Pull {
        self.0.next().map_or(Pull::End, Pull::Line)
    }
}

/// The answer to a change, once the change thread has carried it out.
struct ChangeAnswer(Option<crossbeam_channel::Receiver<Response>>);

impl Live for ChangeAnswer {
    fn pull(&mut self) -> Pull {
        let Some(rx) = &self.0 else {
            return Pull::End;
        };
        let r = match rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return Pull::Pending,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Response::error(ErrorReply::new(
                ErrorCode::DataplaneStopped,
                "the instance is stopping",
            )),
        };
        self.0 = None;
        Pull::Line(line_of(&r))
    }
}

/// One response line of a live stream.
pub fn live_line(reply: Reply) -> Vec<u8> {
    line_of(&Response::ok(reply))
}

/// One connection.
struct Client {
    stream: UnixStream,
    /// Bytes received and not yet answered (at most one request line and a read).
    inbuf: Vec<u8>,
    /// The answer being written, and how much of it is written.
    out: Vec<u8>,
    sent: usize,
    /// What is left of a streamed or live answer.
    rest: Option<Box<dyn Live>>,
    /// The client closed its end: answer what it sent, then close.
    eof: bool,
    close_when_sent: bool,
    /// Closed if no progress by then.
    deadline: Instant,
    /// Since when the connection has had nothing in progress.
    idle_since: Instant,
}

impl Client {
    fn new(stream: UnixStream, now: Instant) -> Client {
        Client {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            sent: 0,
            rest: None,
            eof: false,
            close_when_sent: false,
            deadline: now + CLIENT_TIMEOUT,
            idle_since: now,
        }
    }

    /// True while a request is being received or answered.
    fn in_progress(&self) -> bool {
        !self.inbuf.is_empty() || self.sent < self.out.len() || self.rest.is_some()
    }

    fn progress(&mut self) {
        self.deadline = Instant::now() + CLIENT_TIMEOUT;
    }

    fn answer_with(&mut self, a: Answer) {
        match a {
            Answer::Whole(r) => {
                self.out = line_of(&r);
                self.rest = None;
            }
            Answer::Streamed(chunks) => {
                self.out.clear();
                self.rest = Some(Box::new(Pieces(chunks)));
            }
            Answer::Live(live) => {
                self.out.clear();
                self.rest = Some(live);
            }
        }
        self.sent = 0;
    }

    /// True while a live answer waits for its source (not for the client).
    fn waiting_live(&self) -> bool {
        self.rest.is_some() && self.sent >= self.out.len()
    }

    /// Moves the connection on as far as it goes without blocking: writes what is
    /// pending, answers complete request lines, reads more. Returns false when the
    /// connection is to be closed.
    fn drive(&mut self, dp: &dataplane::Handle, instance: &Instance) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            while self.sent < self.out.len() {
                match self.stream.write(&self.out[self.sent..]) {
                    Ok(0) => return false,
                    Ok(n) => {
                        self.sent += n;
                        self.progress();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            self.out.clear();
            self.sent = 0;
            if let Some(rest) = self.rest.as_mut() {
                match rest.pull() {
                    Pull::Line(chunk) => {
                        self.out = chunk;
                        continue;
                    }
                    Pull::End => {
                        self.rest = None;
                        self.idle_since = Instant::now();
                    }
                    Pull::Pending => {
                        // Waiting on switchyard, not on the client: no deadline runs.
                        // Reading on tells a client that hung up from one that waits.
                        self.progress();
                        return self.read_while_live(&mut buf);
                    }
                }
            }
            if self.close_when_sent {
                return false;
            }
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                if pos > MAX_REQUEST_BYTES {
                    self.refuse_too_large();
                    continue;
                }
                let line: Vec<u8> = self.inbuf.drain(..=pos).take(pos).collect();
                let a = answer(&line, dp, instance);
                self.answer_with(a);
                self.progress();
                if self.inbuf.is_empty() {
                    self.idle_since = Instant::now();
                }
                continue;
            }
            if self.inbuf.len() > MAX_REQUEST_BYTES {
                self.refuse_too_large();
                continue;
            }
            if self.eof {
                if self.inbuf.is_empty() {
                    return false;
                }
                // A last line without its newline still counts.
                let line = std::mem::take(&mut self.inbuf);
                let a = answer(&line, dp, instance);
                self.answer_with(a);
                self.close_when_sent = true;
                continue;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.progress();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Reads what the client sends while its live answer waits: nothing is answered
    /// until the stream ends, and a request line is bounded as always. False if the
    /// client hung up.
    fn read_while_live(&mut self, buf: &mut [u8]) -> bool {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if self.inbuf.len() + n > MAX_REQUEST_BYTES + 1 {
                        return false;
                    }
                    self.inbuf.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The rest of the line is unread and would be taken for the next request:
    /// answer, then hang up.
    fn refuse_too_large(&mut self) {
        self.inbuf.clear();
        self.answer_with(Answer::Whole(Response::error(ErrorReply::new(
            ErrorCode::TooLarge,
            format!("request line longer than {MAX_REQUEST_BYTES} bytes; closing the connection"),
        ))));
        self.close_when_sent = true;
    }
}

fn line_of(r: &Response) -> Vec<u8> {
    let mut text = serde_json::to_vec(r).expect("responses serialize");
    text.push(b'\n');
    text
}

/// The server's event loop and its state.
struct Loop {
    poll: Poll,
    listener: UnixListener,
    clients: HashMap<Token, Client>,
    next: usize,
    dp: dataplane::Handle,
    instance: Instance,
    stop: Arc<AtomicBool>,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let mut timeout = self
                .clients
                .values()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(60));
            let live = self.clients.values().any(Client::waiting_live);
            if live {
                timeout = timeout.min(LIVE_POLL);
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.stop.load(Ordering::SeqCst) {
                // Every connection is dropped as it is, answered or not.
                return Ok(());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKE => {}
                    t => self.drive(t),
                }
            }
            if live {
                let waiting: Vec<Token> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.waiting_live())
                    .map(|(&t, _)| t)
                    .collect();
                for t in waiting {
                    self.drive(t);
                }
            }
            let now = Instant::now();
            self.clients.retain(|_, c| {
                let alive = c.deadline > now;
                if !alive {
                    tracing::debug!("control client timed out");
                }
                alive
            });
        }
    }

    fn drive(&mut self, t: Token) {
        let Some(c) = self.clients.get_mut(&t) else {
            return;
        };
        let (dp, instance) = (&self.dp, &self.instance);
        // A bug while answering costs this client, not the control socket.
        let keep = catch_unwind(AssertUnwindSafe(|| c.drive(dp, instance))).unwrap_or_else(|_| {
            tracing::error!("serving a control client panicked; closing its connection");
            false
        });
        if !keep {
            self.clients.remove(&t);
        }
    }

    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS && !self.evict_idle() {
                tracing::debug!("control socket busy: {MAX_CLIENTS} requests in progress");
                let busy = Response::error(ErrorReply::new(
                    ErrorCode::Busy,
                    format!(
                        "the control socket is busy ({MAX_CLIENTS} connections in the middle \
                         of a request); closing this one, try again"
                    ),
                ));
                // Best effort: a fresh socket's buffer takes a line.
                let _ = stream.write(&line_of(&busy));
                continue;
            }
            let t = Token(self.next);
            self.next += 1;
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                t,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!("control socket: cannot poll a client: {e}");
                continue;
            }
            self.clients.insert(t, Client::new(stream, Instant::now()));
        }
    }

    /// Closes the connection idle the longest, if one is idle. True if a slot is free.
    fn evict_idle(&mut self) -> bool {
        let victim = self
            .clients
            .iter()
            .filter(|(_, c)| !c.in_progress())
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(&t, _)| t);
        match victim {
            Some(t) => {
                tracing::debug!("control socket full: closing the connection idle the longest");
                self.clients.remove(&t);
                true
            }
            None => false,
        }
    }
}

/// An answer: one response, a response streamed in chunks, or a live stream of
/// response lines.
pub enum Answer {
    Whole(Response),
    Streamed(Chunks),
    Live(Box<dyn Live>),
}

/// A response line written in pieces: what `empty` serializes to, with `rows` put
/// into its list that ends with `marker` (`[]`), [`STREAM_ROWS`] at a time.
fn streamed<T: serde::Serialize + 'static>(
    empty: Reply,
    marker: &str,
    rows: impl Iterator<Item = T> + 'static,
) -> Answer {
    let text = serde_json::to_string(&Response::ok(empty)).expect("responses serialize");
    let at = text.rfind(marker).expect("the empty reply has its list") + marker.len() - 1;
    let head = text.as_bytes()[..at].to_vec();
    let mut tail = text.as_bytes()[at..].to_vec();
    tail.push(b'\n');
    let mut rows = rows.peekable();
    let mut first = true;
    let body = std::iter::from_fn(move || {
        rows.peek()?;
        let mut chunk = Vec::new();
        for row in rows.by_ref().take(STREAM_ROWS) {
            if !first {
                chunk.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut chunk, &row).expect("rows serialize");
        }
        Some(chunk)
    });
    Answer::Streamed(Box::new(
        std::iter::once(head)
            .chain(body)
            .chain(std::iter::once(tail)),
    ))
}

/// The answer to one request line.
fn answer(line: &[u8], dp: &dataplane::Handle, instance: &Instance) -> Answer {
    let req = match parse_request(line) {
        Ok(req) => req,
        Err(e) => {
            tracing::debug!("control request refused: {e}");
            return Answer::Whole(Response::error(e));
        }
    };
    tracing::debug!(request = req.name(), "control request");
    // A bug while answering costs this answer, not the control socket: the thread
    // would otherwise be gone for the rest of the instance's life.
    match catch_unwind(AssertUnwindSafe(|| handle(&req, dp, instance))) {
        Ok(Ok(a)) => a,
        Ok(Err(dataplane::NotRunning)) => Answer::Whole(Response::error(ErrorReply::new(
            ErrorCode::DataplaneStopped,
            "the dataplane is not running (its workers stopped; the log of \
             `switchyard up` says why)",
        ))),
        Err(_) => {
            tracing::error!(request = req.name(), "answering a control request panicked");
            Answer::Whole(Response::error(ErrorReply::new(
                ErrorCode::Internal,
                format!("switchyard failed while answering {:?}", req.name()),
            )))
        }
    }
}

fn handle(
    req: &Request,
    dp: &dataplane::Handle,
    instance: &Instance,
) -> Result<Answer, dataplane::NotRunning> {
    let whole = |r| Answer::Whole(Response::ok(r));
    Ok(match *req {
        Request::Show { table } => match table {
            Table::Ports => whole(Reply::Ports(port_rows(
                &gather(dp)?,
                &instance.topology.ports(),
            ))),
            Table::Fdb => dp.tables(|v| fdb_stream(&v))?,
            Table::Counters => whole(Reply::Counters(counters(&gather(dp)?))),
            Table::Routes => whole(Reply::Routes(dp.tables(|v| route_rows(&v))?)),
            Table::Neighbors => whole(Reply::Neighbors(dp.tables(|v| neighbor_rows(&v))?)),
            Table::Conntrack => dp.tables(|v| conntrack_stream(&v))?,
            // Printed from the topology the instance holds, not read from the file it
            // was started with: what runs is what is shown.
            Table::Config => whole(Reply::Config(ConfigText {
                toml: instance.topology.read(|t| t.to_toml()),
            })),
            Table::Dns => match &instance.dns {
                Some(d) => whole(Reply::Dns(Box::new(d.view()))),
                None => Answer::Whole(Response::error(ErrorReply::new(
                    ErrorCode::NotFound,
                    "this instance runs no DNS service",
                ))),
            },
        },
        Request::Trace { ref ports, count } => super::live::trace(dp, ports, count)?,
        Request::TracePacket { ref packet } => {
            Answer::Whole(dp.tables(|v| trace_packet(&v, packet))?)
        }
        Request::Events {} => super::live::events(dp)?,
        Request::Capture(ref c) => super::live::capture(dp, c)?,
        Request::NetworkLs {} => whole(Reply::Networks(
            instance.topology.read(super::change::network_rows),
        )),
        Request::NetworkInspect { ref name } => instance.topology.read(|t| {
            if t.networks.iter().any(|n| &n.name == name) {
                whole(Reply::Network(super::change::network_row(t, name)))
            } else {
                Answer::Whole(Response::error(ErrorReply::new(
                    ErrorCode::NotFound,
                    format!("there is no network named {name:?}"),
                )))
            }
        }),
        Request::EndpointLs {} => whole(Reply::Endpoints(
            instance.topology.read(super::change::endpoint_rows),
        )),
        // The rest change the instance (`Request::is_change`).
        _ => {
            let submitted = match &instance.changes {
                Some(c) => c.submit(req),
                None => Err(ErrorReply::new(
                    ErrorCode::UnknownRequest,
                    format!("{} is not served by this instance", req.name()),
                )),
            };
            match submitted {
                // The change is carried out on its own thread; the connection waits
                // for its answer like a live stream waits for its next line.
                Ok(rx) => Answer::Live(Box::new(ChangeAnswer(Some(rx)))),
                Err(e) => Answer::Whole(Response::error(e)),
            }
        }
    })
}

/// A what-if trace of the packet `spec` describes, on the control thread's own
/// pipeline over the shared tables: nothing is changed, and no worker is asked
/// anything. A SPEC that cannot be built is a `bad_request` naming its key
/// (`unknown_port` for an ingress port the instance does not have).
fn trace_packet(v: &View<'_>, spec: &str) -> Response {
    let p = &*v.pipeline;
    match super::spec::parse(spec).and_then(|s| s.build(p)) {
        Ok(mut frame) => Response::ok(Reply::Trace(p.what_if(&mut frame, v.now))),
        Err(e) => {
            let code = if e.unknown_port {
                ErrorCode::UnknownPort
            } else {
                ErrorCode::BadRequest
            };
            Response::error(ErrorReply::new(code, e.to_string()))
        }
    }
}

/// The FDB, copied entry by entry, sorted by network and MAC, streamed.
fn fdb_stream(v: &View<'_>) -> Answer {
    let p = &*v.pipeline;
    let now = v.now.secs();
    let mut entries = p.fdb().entries();
    let domains: HashMap<u16, String> = entries
        .iter()
        .map(|e| {
            let d = e.0;
            let name = p
                .domain(d)
                .map_or_else(|| format!("#{}", d.0), |s| s.name.clone());
            (d.0, name)
        })
        .collect();
    let ports: Vec<String> = (0..p.ports().len())
        .map(|i| {
            p.port(PortId(i as u16))
                .map_or_else(|| format!("#{i}"), |s| s.name.clone())
        })
        .collect();
    entries.sort_by(|a, b| (&domains[&a.0 .0], a.1 .0).cmp(&(&domains[&b.0 .0], b.1 .0)));
    let rows = entries.into_iter().map(move |(d, mac, e)| FdbRow {
        network: domains[&d.0].clone(),
        mac: mac.to_string(),
        port: ports
            .get(e.port.index())
            .cloned()
            .unwrap_or_else(|| format!("#{}", e.port.0)),
        // A pinned entry (an endpoint's own MAC, bound to its port) never ages.
        age_secs: if e.pinned {
            0
        } else {
            now.saturating_sub(e.last_seen)
        },
        vtep: e.vtep.map(|v| v.to_string()),
    });
    streamed(Reply::Fdb(Vec::new()), "[]", rows)
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

/// One tracked connection as `show conntrack` has it.
pub(crate) fn conntrack_row(c: &Conn, left: u64) -> ConntrackRow {
    let tuple = |t: &Tuple, d: usize| FlowTuple {
        src: t.src.to_string(),
        dst: t.dst.to_string(),
        sport: t.sport,
        dport: t.dport,
        packets: c.packets[d],
        bytes: c.bytes[d],
    };
    ConntrackRow {
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
        original: tuple(&c.orig, 0),
        reply: tuple(&c.reply, 1),
    }
}

/// The conntrack table, copied entry by entry (each under its own lock, so the
/// workers never wait for more than one entry's copy), sorted by original source,
/// and streamed: rows are made and written [`STREAM_ROWS`] at a time.
fn conntrack_stream(v: &View<'_>) -> Answer {
    let ct = v.pipeline.conntrack();
    let mut entries = ct.entries(v.now);
    entries.sort_by_key(|(c, _)| (u32::from(c.orig.src), c.orig.sport, c.orig.dport));
    let empty = ConntrackReport {
        count: ct.len(),
        max: ct.capacity(),
        connections: Vec::new(),
    };
    let rows = entries.into_iter().map(|(c, left)| conntrack_row(&c, left));
    streamed(Reply::Conntrack(empty), "\"connections\":[]", rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client;
    use crate::dataplane::{Dataplane, Options};
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    use switchyard_core::pipeline::{Pipeline, Spec};

    #[test]
    fn a_line_may_be_as_long_as_the_limit_and_no_longer() {
        let b = TestServer::new("limit");
        let mut at_limit = vec![b' '; MAX_REQUEST_BYTES - 2];
        at_limit.extend_from_slice(b"{}\n");
        assert_eq!(at_limit.len(), MAX_REQUEST_BYTES + 1);
        // Not a request, but read whole and answered as such; then the next one.
        at_limit.extend_from_slice(b"next\nlast");
        let answers = b.raw(&at_limit);
        let codes: Vec<ErrorCode> = answers
            .iter()
            .map(|a| {
                serde_json::from_str::<Response>(a)
                    .unwrap()
                    .result
                    .unwrap_err()
                    .code
            })
            .collect();
        // A last line without its newline still counts.
        assert_eq!(
            codes,
            [
                ErrorCode::UnsupportedVersion,
                ErrorCode::BadRequest,
                ErrorCode::BadRequest
            ]
        );

        let mut over = vec![b' '; MAX_REQUEST_BYTES + 1];
        over.push(b'\n');
        let answers = b.raw(&over);
        assert_eq!(answers.len(), 1);
        let r: Response = serde_json::from_str(&answers[0]).unwrap();
        assert_eq!(r.result.unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn idle_connections_make_room_and_busy_ones_get_busy() {
        let b = TestServer::new("slots");
        let req = Request::Show {
            table: Table::Routes,
        };
        // Twice as many idle connections as slots: the oldest give way.
        let idle: Vec<UnixStream> = (0..2 * MAX_CLIENTS)
            .map(|_| UnixStream::connect(b.socket()).unwrap())
            .collect();
        let t = std::time::Instant::now();
        client::request(&b.socket(), &req).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        drop(idle);
        // Every slot in the middle of a request (half a line sent): no room.
        let half: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| {
                let mut c = UnixStream::connect(b.socket()).unwrap();
                c.write_all(b"{\"version\":1,").unwrap();
                c
            })
            .collect();
        // Let the server read them all before the newcomer arrives (nothing a client
        // sees tells when it has; it takes microseconds, so a second is ample).
        std::thread::sleep(Duration::from_secs(1));
        let e = client::request(&b.socket(), &req).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
        // A slot frees when a request completes.
        let mut first = &half[0];
        first
            .write_all(b"\"request\":{\"show\":{\"table\":\"fdb\"}}}\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(first).read_line(&mut line).unwrap();
        assert!(line.contains("\"fdb\""), "{line}");
        client::request(&b.socket(), &req).unwrap();
    }

    #[test]
    fn a_client_that_never_reads_holds_up_neither_others_nor_stop() {
        let b = TestServer::new("stuck");
        let mut stuck = UnixStream::connect(b.socket()).unwrap();
        stuck
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let line = b"{\"version\":1,\"request\":{\"show\":{\"table\":\"counters\"}}}\n";
        // Requests until its own socket buffer is full: the server stopped reading
        // once it could not hand over an answer.
        let mut sent = 0;
        while stuck.write_all(line).is_ok() && sent < 100_000 {
            sent += 1;
        }
        let t = std::time::Instant::now();
        client::request(
            &b.socket(),
            &Request::Show {
                table: Table::Ports,
            },
        )
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let t = std::time::Instant::now();
        drop(b);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            t.elapsed()
        );
    }

    /// A server over a dataplane with no ports: everything but the TAPs, so no root.
    struct TestServer {
        server: Option<Server>,
        dns: Option<crate::dns::DnsService>,
        dataplane: Option<dataplane::Running>,
        dir: PathBuf,
    }

    impl TestServer {
        fn new(name: &str) -> TestServer {
            let dir = std::env::temp_dir().join(format!("sy-ctl-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let pipeline = Pipeline::new(Spec::new(Vec::new(), Vec::new())).unwrap();
            let mut running = Dataplane::new(pipeline, vec![Vec::new()], Options::default())
                .spawn()
                .unwrap();
            let topology = crate::topology::config::parse("", "empty").unwrap();
            let dns =
                crate::dns::DnsService::start(running.take_service_link().unwrap(), &topology)
                    .unwrap();
            let instance = Instance {
                topology: LiveTopology::new(topology),
                changes: None,
                dns: Some(dns.handle()),
            };
            let server =
                Server::start(&dir.join("control.sock"), running.handle(), instance).unwrap();
            TestServer {
                server: Some(server),
                dns: Some(dns),
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
            if let Some(d) = self.dns.take() {
                d.stop();
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
        // `config` is the topology the server was given, printed.
        let empty = crate::topology::config::parse("", "empty").unwrap();
        assert_eq!(
            client::request(
                &b.socket(),
                &Request::Show {
                    table: Table::Config
                }
            )
            .unwrap(),
            Reply::Config(ConfigText {
                toml: empty.to_toml()
            })
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
            b.code_of(r#"{"version":1,"request":{"reboot":{}}}"#),
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
