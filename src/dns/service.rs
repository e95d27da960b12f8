//! The DNS service thread: punted frames in, answers out.
//!
//! One thread serves every network. It blocks until a worker punts a frame, an upstream
//! server answers, a forwarded query or a TCP timer is due, or the zones change; it then
//! does everything that is ready and wakes the workers it handed answers to — once per
//! round, not once per answer.
//!
//! Buffers circulate, they are not made: a worker swaps a spare into its batch for every
//! frame it punts, and every frame that reaches this thread goes back — as the answer
//! (built in the query's own buffer when it can be), or as a spare. The thread keeps a
//! small pool of its own for answers that arrive later (upstream answers, TCP segments),
//! and sends the surplus back to the worker it came from ([`POOL`]).

use super::frames::{self, ReturnPath, Segment};
use super::tcp::{Conn, TcpFronts};
use super::upstream::Upstream;
use super::zones::zones_of;
use crate::dataplane::punt::{Punted, ServiceLink, ToService, ToWorker};
use crate::topology::Topology;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::Frame;
use switchyard_dns::{Counters, CountersSnapshot, Outcome, Resolver, Transport, Zones};

/// Frames the thread keeps for answers it builds later; beyond that, a frame goes
/// back to the worker it came from.
pub const POOL: usize = 64;
/// Forwarded queries waiting for an upstream answer at most.
pub const MAX_OUTSTANDING: usize = 1024;
/// How long an upstream server has to answer before the client gets SERVFAIL: short
/// enough that a client (glibc waits 5 s) hears SERVFAIL before it gives up itself.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the thread sleeps without looking at its timers.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Punted frames handled per round before timers and TCP get their turn.
const ROUND: usize = 256;

/// Who asked: where its answer must go.
#[derive(Debug, Clone, Copy)]
enum Client {
    Udp {
        path: ReturnPath,
        peer: SocketAddrV4,
        ours: SocketAddrV4,
    },
    Tcp(Conn),
}

/// What the thread counts about frames (the resolver counts queries and answers).
#[derive(Debug, Default)]
struct FrameCounters {
    punted: AtomicU64,
    bad_frames: AtomicU64,
    answers_sent: AtomicU64,
    no_buffer: AtomicU64,
    worker_busy: AtomicU64,
    upstream_send_errors: AtomicU64,
    tcp_connections: AtomicU64,
    tcp_refused_segments: AtomicU64,
    tcp_aborted: AtomicU64,
}

/// Frame-level figures of the DNS service, for `show dns` and metrics.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames the workers handed over.
    pub punted: u64,
    /// Punted frames that were not well-formed UDP/TCP over IPv4 (or had a bad checksum).
    pub bad_frames: u64,
    /// Answer frames handed to workers to send.
    pub answers_sent: u64,
    /// Answers lost because no buffer was free.
    pub no_buffer: u64,
    /// Answers lost because a worker's queue was full.
    pub worker_busy: u64,
    /// Queries the kernel refused to send upstream.
    pub upstream_send_errors: u64,
    /// Upstream answers dropped because the service was behind.
    pub upstream_dropped: u64,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// TCP segments not taken (too many addresses, or the stack's queue full).
    pub tcp_refused_segments: u64,
    /// TCP connections aborted (idle, or not reading their answers).
    pub tcp_aborted: u64,
    /// Forwarded queries waiting for an answer now.
    pub outstanding: u64,
    /// TCP connections open now.
    pub tcp_open: u64,
}

/// One name in a zone, for `show dns`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsRecordRow {
    pub name: String,
    pub address: Ipv4Addr,
    /// An alias rather than the endpoint's own name.
    pub alias: bool,
}

/// One network's zone, for `show dns`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsZoneRow {
    pub network: String,
    /// The address the network's endpoints ask.
    pub server: Ipv4Addr,
    pub domain: Option<String>,
    pub records: Vec<DnsRecordRow>,
}

/// What `show dns` prints: every zone, where other names go, and the counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsView {
    pub zones: Vec<DnsZoneRow>,
    /// Upstream servers (`[switch] dns_upstream`); empty: other names are refused.
    pub upstreams: Vec<String>,
    /// The namespace queries to them leave from (none: switchyard's own).
    pub upstream_netns: Option<String>,
    pub counters: CountersSnapshot,
    pub frames: FrameStats,
}

/// What the thread and its handles share.
struct Shared {
    counters: Arc<Counters>,
    frames: FrameCounters,
    zones: Mutex<Arc<Zones>>,
    upstreams: Vec<SocketAddrV4>,
    upstream_netns: Option<PathBuf>,
    upstream_dropped: Mutex<Option<Arc<AtomicU64>>>,
    outstanding: AtomicU64,
    tcp_open: AtomicU64,
}

/// New zones, with each network's MTU (the TCP stacks size their segments by it).
struct Published {
    zones: Arc<Zones>,
    mtus: HashMap<u16, u16>,
}

/// A handle on the service: publish new zones, read what `show dns` prints.
#[derive(Clone)]
pub struct DnsHandle {
    shared: Arc<Shared>,
    publish: Sender<Published>,
}

impl DnsHandle {
    /// Makes the zones of `t` the ones queries are answered from. Called by a runtime
    /// change before it answers, so a name added is found by the next query.
    pub fn publish(&self, t: &Topology) {
        let p = published(t);
        *self.shared.zones.lock().unwrap_or_else(|e| e.into_inner()) = p.zones.clone();
        let _ = self.publish.send(p);
    }

    /// Zones, upstreams and counters.
    pub fn view(&self) -> DnsView {
        let s = &self.shared;
        let zones = s.zones.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut rows: Vec<DnsZoneRow> = zones
            .iter()
            .map(|(_, z)| DnsZoneRow {
                network: z.network().to_string(),
                server: z.gateway(),
                domain: z.domain().map(str::to_string),
                records: z
                    .records()
                    .into_iter()
                    .map(|(name, address, primary)| DnsRecordRow {
                        name,
                        address,
                        alias: !primary,
                    })
                    .collect(),
            })
            .collect();
        rows.sort_by(|a, b| a.network.cmp(&b.network));
        DnsView {
            zones: rows,
            upstreams: s.upstreams.iter().map(|u| u.to_string()).collect(),
            upstream_netns: s.upstream_netns.as_ref().map(|p| p.display().to_string()),
            counters: s.counters.snapshot(),
            frames: self.frame_stats(),
        }
    }

    /// The frame-level figures.
    pub fn frame_stats(&self) -> FrameStats {
        let f = &self.shared.frames;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FrameStats {
            punted: r(&f.punted),
            bad_frames: r(&f.bad_frames),
            answers_sent: r(&f.answers_sent),
            no_buffer: r(&f.no_buffer),
            worker_busy: r(&f.worker_busy),
            upstream_send_errors: r(&f.upstream_send_errors),
            upstream_dropped: self
                .shared
                .upstream_dropped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map_or(0, |d| d.load(Ordering::Relaxed)),
            tcp_connections: r(&f.tcp_connections),
            tcp_refused_segments: r(&f.tcp_refused_segments),
            tcp_aborted: r(&f.tcp_aborted),
            outstanding: r(&self.shared.outstanding),
            tcp_open: r(&self.shared.tcp_open),
        }
    }

    /// The resolver's counters.
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters.snapshot()
    }
}

fn published(t: &Topology) -> Published {
    Published {
        zones: Arc::new(zones_of(t)),
        mtus: t.networks.iter().map(|n| (n.domain.0, n.mtu)).collect(),
    }
}

/// The running service.
pub struct DnsService {
    handle: DnsHandle,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DnsService {
    /// Opens the socket to the upstream servers of `t`, if it names any: before
    /// anything else is made, so an upstream namespace that is not there stops `up`
    /// with nothing to undo.
    pub fn open_upstream(t: &Topology) -> std::io::Result<Option<Upstream>> {
        if t.dns_upstream.is_empty() {
            return Ok(None);
        }
        Upstream::open(t.dns_upstream_netns.as_deref(), t.dns_upstream.clone()).map(Some)
    }

    /// Starts the thread on `link` with the zones and upstreams of `t`. Fails if the
    /// upstream socket cannot be opened (its namespace is gone, say).
    pub fn start(link: ServiceLink, t: &Topology) -> std::io::Result<DnsService> {
        let upstream = DnsService::open_upstream(t)?;
        DnsService::start_with(link, t, upstream)
    }

    /// [`DnsService::start`] with the upstream socket opened beforehand.
    pub fn start_with(
        link: ServiceLink,
        t: &Topology,
        upstream: Option<Upstream>,
    ) -> std::io::Result<DnsService> {
        let first = published(t);
        let shared = Arc::new(Shared {
            counters: Arc::new(Counters::default()),
            frames: FrameCounters::default(),
            zones: Mutex::new(first.zones.clone()),
            upstreams: t.dns_upstream.clone(),
            upstream_netns: t.dns_upstream_netns.clone(),
            upstream_dropped: Mutex::new(upstream.as_ref().map(|u| u.dropped.clone())),
            outstanding: AtomicU64::new(0),
            tcp_open: AtomicU64::new(0),
        });
        let (publish, zones_rx) = crossbeam_channel::unbounded();
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let mut resolver = Resolver::new(
            t.dns_upstream.clone(),
            MAX_OUTSTANDING,
            UPSTREAM_TIMEOUT.as_nanos() as u64,
            shared.counters.clone(),
        );
        resolver.set_zones(first.zones);
        let mut link = link;
        let pool = link.take_pool();
        let service = Service {
            link,
            resolver,
            pool,
            mtus: first.mtus,
            zones_rx,
            upstream,
            tcp: TcpFronts::default(),
            out: Vec::with_capacity(4096),
            start: Instant::now(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("switchyard-dns".into())
            .spawn(move || service.run(&stop_rx))?;
        Ok(DnsService {
            handle: DnsHandle { shared, publish },
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> DnsHandle {
        self.handle.clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the DNS service thread panicked");
            }
        }
    }
}

impl Drop for DnsService {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

struct Service {
    link: ServiceLink,
    resolver: Resolver<Client>,
    pool: Vec<Frame>,
    mtus: HashMap<u16, u16>,
    zones_rx: Receiver<Published>,
    upstream: Option<Upstream>,
    tcp: TcpFronts,
    out: Vec<u8>,
    start: Instant,
    shared: Arc<Shared>,
}

impl Service {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn run(mut self, stop: &Receiver<()>) {
        // Upstream answers, if there are upstreams (a receiver that never gets one if not).
        let answers = self
            .upstream
            .as_ref()
            .map_or_else(crossbeam_channel::never, |u| u.answers().clone());
        loop {
            self.refresh_zones();
            let now = self.now();
            let deadline = [self.resolver.next_deadline(), self.tcp.next_deadline(now)]
                .into_iter()
                .flatten()
                .min();
            let sleep = deadline.map_or(MAX_SLEEP, |d| {
                Duration::from_nanos(d.saturating_sub(now)).min(MAX_SLEEP)
            });
            crossbeam_channel::select! {
                recv(self.link.receiver()) -> m => match m {
                    Ok(m) => self.take(m),
                    // The dataplane is gone: nothing more will come.
                    Err(_) => return,
                },
                recv(answers) -> a => if let Ok(a) = a {
                    self.upstream_answer(a.from, &a.bytes);
                },
                recv(stop) -> _ => return,
                recv(self.zones_rx) -> p => if let Ok(p) = p {
                    self.adopt(p);
                },
                default(sleep) => {}
            }
            // The rest of what is ready, a round at a time.
            for _ in 0..ROUND {
                match self.link.receiver().try_recv() {
                    Ok(m) => self.take(m),
                    Err(_) => break,
                }
            }
            while let Ok(a) = answers.try_recv() {
                self.upstream_answer(a.from, &a.bytes);
            }
            self.expire();
            self.serve_tcp();
            self.link.wake();
            self.shared
                .outstanding
                .store(self.resolver.outstanding() as u64, Ordering::Relaxed);
            self.shared
                .tcp_open
                .store(self.tcp.open_connections() as u64, Ordering::Relaxed);
        }
    }

    /// Takes up zones published since the last look: before any query is answered,
    /// so an answer never predates a change that was already confirmed.
    fn refresh_zones(&mut self) {
        while let Ok(p) = self.zones_rx.try_recv() {
            self.adopt(p);
        }
    }

    fn adopt(&mut self, p: Published) {
        let zones = p.zones.clone();
        self.resolver.set_zones(p.zones);
        self.mtus = p.mtus;
        self.tcp.retain_domains(|d| zones.get(d).is_some());
    }

    fn take(&mut self, m: ToService) {
        match m {
            ToService::Spare(f) => self.pool.push(f),
            ToService::Punt(p) => {
                self.refresh_zones();
                self.punted(p);
            }
        }
    }

    fn punted(&mut self, p: Punted) {
        let f = &self.shared.frames;
        f.punted.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let Punted {
            mut frame,
            worker,
            port,
            domain,
            generation,
        } = p;
        // The tunnel the query came through (an overlay's), before the buffer is reused.
        let tunnel = frame.tunnel;
        let parsed = frames::parse(&mut frame);
        let (peer_mac, our_mac, seg) = match parsed {
            Ok(x) => x,
            Err(_) => {
                f.bad_frames.fetch_add(1, Ordering::Relaxed);
                self.recycle(frame, worker);
                return;
            }
        };
        let path = ReturnPath {
            worker,
            port,
            domain,
            generation,
            peer_mac,
            our_mac,
            tunnel,
        };
        match seg {
            Segment::Udp {
                peer,
                ours,
                payload,
            } => {
                let client = Client::Udp { path, peer, ours };
                let outcome = self.resolver.query(
                    domain.0,
                    payload,
                    Transport::Udp,
                    now,
                    client,
                    &mut self.out,
                );
                match outcome {
                    Outcome::Answer => {
                        if frames::udp_reply(&mut frame, &path, ours, peer, &self.out) {
                            self.send_answer(frame, &path);
                        } else {
                            self.recycle(frame, worker);
                        }
                    }
                    Outcome::Forward { to } => {
                        self.forward(to);
                        self.recycle(frame, worker);
                    }
                    Outcome::Drop => self.recycle(frame, worker),
                }
            }
            Segment::Tcp { peer, ours, packet } => {
                let mtu = self.mtus.get(&domain.0).copied().unwrap_or(1500);
                if !self
                    .tcp
                    .segment(domain.0, ours, peer, packet, path, usize::from(mtu), now)
                {
                    f.tcp_refused_segments.fetch_add(1, Ordering::Relaxed);
                }
                self.recycle(frame, worker);
            }
        }
    }

    /// Sends the query in `self.out` to upstream `to`.
    fn forward(&mut self, to: SocketAddrV4) {
        let sent = self
            .upstream
            .as_ref()
            .is_some_and(|u| u.send(to, &self.out).is_ok());
        if !sent {
            // It stays outstanding and ends in SERVFAIL when its time runs out.
            self.shared
                .frames
                .upstream_send_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn upstream_answer(&mut self, from: SocketAddrV4, bytes: &[u8]) {
        if let Some(client) = self.resolver.upstream_reply(from, bytes, &mut self.out) {
            let msg = std::mem::take(&mut self.out);
            self.deliver(client, &msg);
            self.out = msg;
        }
    }

    /// Queries upstream did not answer in time go to the next upstream, or get SERVFAIL.
    fn expire(&mut self) {
        let now = self.now();
        let mut late = Vec::new();
        self.resolver
            .expire(now, |client, msg| late.push((client, msg.to_vec())));
        for (client, msg) in late {
            self.deliver(client, &msg);
        }
        // Those whose upstream was silent go to the next one.
        let retries: Vec<_> = self.resolver.retries().collect();
        for (to, msg) in retries {
            let sent = self
                .upstream
                .as_ref()
                .is_some_and(|u| u.send(to, &msg).is_ok());
            if !sent {
                self.shared
                    .frames
                    .upstream_send_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends `msg` to `client`, in a frame from the pool (UDP) or on its connection.
    fn deliver(&mut self, client: Client, msg: &[u8]) {
        match client {
            Client::Udp { path, peer, ours } => {
                let Some(mut frame) = self.pool.pop() else {
                    self.shared.frames.no_buffer.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if frames::udp_reply(&mut frame, &path, ours, peer, msg) {
                    self.send_answer(frame, &path);
                } else {
                    self.pool.push(frame);
                }
            }
            Client::Tcp(conn) => {
                self.tcp.answer(conn, msg);
            }
        }
    }

    /// Runs the TCP stacks: answers the queries that completed, sends what they send.
    fn serve_tcp(&mut self) {
        let now = self.now();
        let mut queries = Vec::new();
        self.tcp.take_queries(now, &mut queries);
        for (conn, msg) in queries {
            let outcome = self.resolver.query(
                conn.domain,
                &msg,
                Transport::Tcp,
                now,
                Client::Tcp(conn),
                &mut self.out,
            );
            match outcome {
                Outcome::Answer => {
                    self.tcp.answer(conn, &self.out);
                }
                // Over TCP as it came, so a big answer is not cut short on the way.
                Outcome::Forward { to } => {
                    let over_tcp = self
                        .upstream
                        .as_ref()
                        .is_some_and(|u| u.send_tcp(to, &self.out));
                    if !over_tcp {
                        self.forward(to);
                    }
                }
                Outcome::Drop => {}
            }
        }
        let mut packets = Vec::new();
        self.tcp
            .flush(now, |path, p| packets.push((*path, p.to_vec())));
        for (path, p) in packets {
            let Some(mut frame) = self.pool.pop() else {
                self.shared.frames.no_buffer.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if frames::ip_frame(&mut frame, &path, &p) {
                self.send_answer(frame, &path);
            } else {
                self.pool.push(frame);
            }
        }
        let s = self.tcp.stats;
        let f = &self.shared.frames;
        f.tcp_connections.store(s.connections, Ordering::Relaxed);
        f.tcp_aborted.store(s.aborted, Ordering::Relaxed);
        f.tcp_refused_segments
            .fetch_max(s.refused_segments, Ordering::Relaxed);
    }

    /// Hands an answer frame to the worker of `path`, to go out of its port.
    fn send_answer(&mut self, frame: Frame, path: &ReturnPath) {
        let msg = ToWorker::Reply {
            frame,
            port: path.port,
            domain: path.domain,
            generation: path.generation,
        };
        match self.link.send(path.worker, msg) {
            Ok(()) => {
                self.shared
                    .frames
                    .answers_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(back) => {
                self.shared
                    .frames
                    .worker_busy
                    .fetch_add(1, Ordering::Relaxed);
                let (ToWorker::Reply { frame, .. } | ToWorker::Spare(frame)) = back;
                self.pool.push(frame);
            }
        }
    }

    /// Keeps `frame` for later answers, or gives it back to `worker` when the pool is full.
    fn recycle(&mut self, frame: Frame, worker: usize) {
        if self.pool.len() < POOL {
            self.pool.push(frame);
            return;
        }
        if let Err(ToWorker::Spare(frame) | ToWorker::Reply { frame, .. }) =
            self.link.send(worker, ToWorker::Spare(frame))
        {
            self.pool.push(frame);
        }
    }
}
