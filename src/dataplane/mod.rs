//! `dataplane` — the loops that move frames between ports and the pipeline.
//!
//! One worker thread per core (configurable). Every TAP device is opened with one
//! queue per worker, and each worker owns its queue of every port, reading and
//! writing only its own file descriptors. Which queue a frame lands on is the
//! kernel's choice, steered (`steering = "cpu"`, see [`steer`]) to the queue of the
//! CPU that sent it, with worker `w` pinned to the CPUs whose frames reach queue `w`:
//! a frame is switched on the CPU that sent it, as the kernel bridge does. All workers share the
//! pipeline's tables, which lock per shard or per entry, never globally.
//!
//! A worker sleeps in `epoll` (through mio) until one of its queues is readable, then,
//! queue by queue in turn, reads a batch of frames, runs the pipeline over the batch
//! with one clock reading, writes each frame to the ports its verdict names, and
//! repeats until every queue would block. With `io = "uring"` a worker
//! reads and writes its TAP queues through an io_uring of its own: a batch's reads
//! in one system call, and all its writes in one more at the end of the batch
//! ([`ring`]); else one `read(2)`/`writev(2)` per frame. Buffers are allocated once at start; nothing
//! on this path allocates, logs or reads the clock per packet. After its last packet a
//! worker keeps polling for a while that adapts to the traffic ([`Spin`]), or for a
//! fixed `busy_poll`, before it sleeps again. The dataplane makes no forwarding decision of its own: it asks
//! [`Pipeline::egress`] where each frame goes.
//!
//! Other threads (the control socket) read the shared tables themselves, through a
//! pipeline of their own over the same tables that never switches a packet
//! ([`Handle::tables`]): copying a big table (a conntrack dump) then takes the
//! per-shard and per-entry locks one at a time on the reader's thread, and the
//! workers go on forwarding. What each worker keeps on its own (counters, I/O
//! counters, CPU time) is a small copy a worker makes between batches when asked
//! ([`Handle::query_all`]).
//!
//! What must not run on a worker — switchyard's DNS server — runs on a service thread:
//! a frame the pipeline punts (a DNS query to a gateway) is handed to it through
//! [`punt`], without waiting and without allocating, and its replies come back to the
//! worker, which sends them as it sends every frame.
//!
//! A port whose device goes away under switchyard (its TAP deleted, or its namespace)
//! is marked down: the worker that finds out stops polling it, logs it once, and the
//! rest keeps switching. A worker that panics or meets an error it cannot carry on
//! from ends, and [`Running::stop`] reports it, so `switchyard up` exits non-zero.
//!
//! Test hook: `SWITCHYARD_TEST_WORKER_PANIC_AFTER=N`, read once when the dataplane is
//! built, makes each worker panic after N batches of its own — the real path of a
//! worker dying, for the tests of what follows (teardown, a non-zero exit).

pub mod capture;
pub mod observe;
pub mod punt;
mod ring;

use capture::CaptureFeed;
use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use observe::{Observers, Offer};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::{
    Egress, Emitter, Frame, Pipeline, PortId, TableChange, Timestamp, MAX_FRAME_LEN,
};
use switchyard_core::wire::{ethernet, gro};
use switchyard_os::port::uring::{IoMode, Ring};
use switchyard_os::port::{steer, Capabilities, Offloads, Port, PortDrop};

/// Frames read from one queue before moving on to the next (fairness between ports).
pub const BATCH: usize = 64;
/// Buffers for frames switchyard originates within one batch (ARP, ICMP errors,
/// fragments, packets released from neighbor queues).
const EMIT_BUFFERS: usize = 2 * BATCH;
/// How often the pipeline's timers run (ARP retransmissions are due every second;
/// a finer tick keeps them close to that).
const TICK: Duration = Duration::from_millis(100);
const WAKER: Token = Token(usize::MAX);
/// A port takes UDP super-frames if it has both of these offloads.
const USO: Offloads = Offloads::USO4.union(Offloads::CSUM);
/// Largest UDP super-frame built: an IPv4 packet of 65535 bytes behind Ethernet.
const MAX_SUPER_FRAME: usize = ethernet::HEADER_LEN + 65535;
const _: () = assert!(MAX_SUPER_FRAME <= MAX_FRAME_LEN);

/// How the workers run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep polling without sleeping for this long after the last packet (0: off).
    /// Set, it replaces `adaptive`.
    pub busy_poll: Duration,
    /// Poll for a while after a packet, as long as that has been paying off (see
    /// [`Spin`]); sleep at once otherwise.
    pub adaptive: bool,
    /// Pin worker `w` to the CPUs whose frames the TAPs' steering sends to its queue
    /// (see [`steer`]): on with `steering = "cpu"`.
    pub pin: bool,
    /// How the workers read and write their TAP queues (see [`ring`]).
    pub io: IoMode,
}

/// I/O counters of one port on one worker (the pipeline counts decisions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortIo {
    /// Frames written (segments count one each).
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Writes the kernel refused (device down, a super-frame that could not be cut).
    pub tx_errors: u64,
    /// Reads that failed with something other than "would block".
    pub rx_errors: u64,
    /// Super-frames received (segmentation offload at the sender).
    pub rx_gso: u64,
    /// Super-frames passed on whole.
    pub tx_gso: u64,
    /// Super-frames cut into segments in software for a port without the offload,
    /// and the segments that made.
    pub tx_segmented: u64,
    pub tx_segments: u64,
    /// UDP super-frames built from runs of datagrams of one flow (see
    /// [`gro`]), and the datagrams they carried.
    pub tx_coalesced: u64,
    pub tx_coalesced_datagrams: u64,
    /// Frames the pipeline punted (DNS queries to a gateway) handed to the service
    /// thread, and those dropped instead: no spare buffer, or the service's queue
    /// full (see [`punt`]).
    pub punted: u64,
    pub punt_dropped: u64,
    /// The service's replies sent out of the port, and those dropped because the
    /// port is no longer the endpoint that asked (or the frame is not one a port can
    /// write: see [`punt::ToWorker::Reply`]).
    pub punt_replies: u64,
    pub punt_stale: u64,
    /// What the port refused before the pipeline saw it (tagged frames on a host
    /// interface, frames the kernel dropped for its sockets): see
    /// [`Port::rx_refused`].
    pub rx_tagged: u64,
    pub rx_truncated: u64,
    pub rx_kernel_drops: u64,
    pub rx_unclaimed: u64,
}

impl PortIo {
    pub fn add(&mut self, o: &PortIo) {
        self.tx_frames += o.tx_frames;
        self.tx_bytes += o.tx_bytes;
        self.tx_errors += o.tx_errors;
        self.rx_errors += o.rx_errors;
        self.rx_gso += o.rx_gso;
        self.tx_gso += o.tx_gso;
        self.tx_segmented += o.tx_segmented;
        self.tx_segments += o.tx_segments;
        self.tx_coalesced += o.tx_coalesced;
        self.tx_coalesced_datagrams += o.tx_coalesced_datagrams;
        self.punted += o.punted;
        self.punt_dropped += o.punt_dropped;
        self.punt_replies += o.punt_replies;
        self.punt_stale += o.punt_stale;
        self.rx_tagged += o.rx_tagged;
        self.rx_truncated += o.rx_truncated;
        self.rx_kernel_drops += o.rx_kernel_drops;
        self.rx_unclaimed += o.rx_unclaimed;
    }
}

/// What a query sees of a port besides the pipeline's counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortStatus {
    pub name: String,
    pub caps: Capabilities,
    pub io: PortIo,
    /// Why the port is down (its device is gone), or `None` while it is up.
    pub down: Option<String>,
    /// What the port itself refused, by reason (a tunnel's datagrams from
    /// strangers, ...): read from the port when a query runs.
    pub drops: Vec<PortDrop>,
    /// How this worker reads and writes the port: through its ring, or the port's
    /// own system calls.
    pub io_mode: IoMode,
}

/// How long a caller waits for a worker to answer a query before taking it for gone.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The environment variable of the test hook (see the module's documentation).
pub const PANIC_AFTER_ENV: &str = "SWITCHYARD_TEST_WORKER_PANIC_AFTER";

/// One worker's state as a query closure sees it.
pub struct View<'a> {
    pub pipeline: &'a mut Pipeline,
    /// This worker's I/O counters, by port.
    pub ports: &'a [PortStatus],
    /// The pipeline clock's current reading.
    pub now: Timestamp,
    /// Which worker this is (0 runs the shared timers).
    pub worker: usize,
    /// The CPUs the worker is pinned to (empty: unpinned).
    pub cpus: &'a [usize],
}

impl PortStatus {
    /// The status of a slot with no port in it.
    fn vacant() -> PortStatus {
        PortStatus {
            name: String::new(),
            caps: Capabilities::default(),
            io: PortIo::default(),
            down: None,
            drops: Vec::new(),
            io_mode: IoMode::Syscalls,
        }
    }
}

impl View<'_> {
    /// CPU time this worker thread has used (user + system), for the harness.
    pub fn cpu_time(&self) -> Duration {
        thread_cpu_time()
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu_time() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID) {
        Ok(ts) => Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
        Err(_) => Duration::ZERO,
    }
}

/// What other threads ask of a worker.
enum Job {
    /// Run a closure over the worker's state between batches.
    Query(Box<dyn FnOnce(View<'_>) + Send>),
    /// The device behind a port is gone: stop using it.
    PortDown(PortId, String),
    /// Change what the worker reports to (see [`observe`]).
    Observe(ObserveFn, Arc<AtomicUsize>),
    /// Switch to a new layout of ports and networks (see [`Handle::reshape`]).
    Reshape(Reshape, Arc<AtomicUsize>),
}

/// A change of ports and networks for one worker: how its pipeline adopts the new
/// layout, the queues it starts reading (this worker's queue of each new port) and
/// the ports it stops using, and where their queues go.
struct Reshape {
    adopt: AdoptFn,
    add: Vec<QueueOf>,
    remove: Vec<PortId>,
    retired: Sender<Box<dyn Port>>,
}

/// One worker's queue of a new port, with the port's id and name.
type QueueOf = (PortId, String, Box<dyn Port>);

/// How a pipeline takes up a new layout (the same for every worker).
pub type AdoptFn = Arc<dyn Fn(&mut Pipeline) + Send + Sync>;

/// A port a change adds: its id, its name, and one queue per worker.
pub struct NewPort {
    pub id: PortId,
    pub name: String,
    pub queues: Vec<Box<dyn Port>>,
}

/// A change to a worker's [`Observers`], run between batches on every worker.
type ObserveFn = Arc<dyn Fn(&mut Observers, &mut Pipeline, usize) + Send + Sync>;

#[derive(Clone)]
struct Link {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
}

/// Controls running workers from other threads.
#[derive(Clone)]
pub struct Handle {
    links: Vec<Link>,
    stop: Arc<AtomicBool>,
    /// A pipeline over the shared tables that switches nothing, for readers.
    observer: Arc<Mutex<Pipeline>>,
    /// The workers' clock origin.
    start: Instant,
    /// The same origin as wall-clock time (ns since the Unix epoch).
    epoch_ns: u64,
    /// Live traces running now: at most one (the workers have one tracer each).
    traces: Places,
    /// Event streams open now (each holds a bounded buffer: their number is capped).
    event_streams: Places,
    /// Captures running now (each holds a pool of buffers: their number is capped).
    captures: Places,
}

/// How far a change made with [`Handle::observe`] has got.
pub struct Applied {
    /// Workers that have applied it.
    by: Arc<AtomicUsize>,
    workers: usize,
    /// The queues of the ports a [`Handle::reshape`] removed, handed back by the
    /// workers (none for other changes).
    retired: Option<Receiver<Box<dyn Port>>>,
}

impl Applied {
    /// True once every worker has applied the change.
    pub fn everywhere(&self) -> bool {
        self.by.load(Ordering::SeqCst) >= self.workers
    }

    /// Closes, on the calling thread, the queues of removed ports the workers have
    /// handed back so far; returns how many. (Those still on their way are closed
    /// when the [`Applied`] is dropped, on the thread that drops it.)
    pub fn close_retired(&self) -> usize {
        self.retired.as_ref().map_or(0, |r| r.try_iter().count())
    }
}

/// How many live readers of one kind there are, each holding a [`Claim`].
#[derive(Clone, Default)]
struct Places(Arc<AtomicUsize>);

impl Places {
    /// A place, unless `max` are taken.
    fn claim(&self, max: usize) -> Option<Claim> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Claim(self.0.clone()))
    }
}

/// A live reader's place (a trace, an event stream, a capture), given back when
/// dropped.
pub struct Claim(Arc<AtomicUsize>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The dataplane stopped or failed before answering.
#[derive(Debug, thiserror::Error)]
#[error("the dataplane is not running")]
pub struct NotRunning;

impl Handle {
    /// Runs `f` over the shared tables on the calling thread, never on a worker: the
    /// tables lock per shard or per entry, so the workers keep switching while `f`
    /// copies them. The view has no per-worker state (no port I/O counters, and
    /// counters of its own that stay zero).
    pub fn tables<T>(&self, f: impl FnOnce(View<'_>) -> T) -> Result<T, NotRunning> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(NotRunning);
        }
        let mut p = self.observer.lock().unwrap_or_else(|e| e.into_inner());
        let now = Timestamp(self.start.elapsed().as_nanos() as u64);
        Ok(f(View {
            pipeline: &mut p,
            ports: &[],
            now,
            worker: usize::MAX,
            cpus: &[],
        }))
    }

    /// Runs `f` on the first worker between batches and returns its result. For a
    /// small copy of a worker's own state; tables are read with [`Handle::tables`].
    pub fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(View<'_>) -> T + Send + 'static,
    ) -> Result<T, NotRunning> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let link = self.links.first().ok_or(NotRunning)?;
        link.jobs
            .send(Job::Query(Box::new(move |view| {
                let _ = tx.send(f(view));
            })))
            .map_err(|_| NotRunning)?;
        link.waker.wake().map_err(|_| NotRunning)?;
        rx.recv_timeout(QUERY_TIMEOUT).map_err(|_| NotRunning)
    }

    /// Tells every worker that `port`'s device is gone (`why`); they stop polling and
    /// writing it, and `show ports` says it is down.
    pub fn port_down(&self, port: PortId, why: &str) {
        for l in &self.links {
            if l.jobs.send(Job::PortDown(port, why.to_string())).is_ok() {
                let _ = l.waker.wake();
            }
        }
    }

    /// Runs `f` on every worker (for what each keeps on its own: counters, CPU time)
    /// and returns the results in worker order.
    pub fn query_all<T, F>(&self, f: F) -> Result<Vec<T>, NotRunning>
    where
        T: Send + 'static,
        F: Fn(View<'_>) -> T + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut answers = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let f = f.clone();
            link.jobs
                .send(Job::Query(Box::new(move |view| {
                    let _ = tx.send(f(view));
                })))
                .map_err(|_| NotRunning)?;
            link.waker.wake().map_err(|_| NotRunning)?;
            answers.push(rx);
        }
        answers
            .into_iter()
            .map(|rx| rx.recv_timeout(QUERY_TIMEOUT).map_err(|_| NotRunning))
            .collect()
    }

    /// Runs `f` on every worker between its batches, to add or remove what the worker
    /// reports to (a live trace, a capture, an event stream). Does not wait for the
    /// workers: each applies it before its next batch, and the [`Applied`] returned
    /// says when all have — from then on, nothing the change watches for is missed.
    pub fn observe<F>(&self, f: F) -> Result<Applied, NotRunning>
    where
        F: Fn(&mut Observers, &mut Pipeline, usize) + Send + Sync + 'static,
    {
        if self.stop.load(Ordering::SeqCst) {
            return Err(NotRunning);
        }
        let f: ObserveFn = Arc::new(f);
        let applied = Applied {
            by: Arc::new(AtomicUsize::new(0)),
            workers: self.links.len(),
            retired: None,
        };
        for l in &self.links {
            l.jobs
                .send(Job::Observe(f.clone(), applied.by.clone()))
                .map_err(|_| NotRunning)?;
            let _ = l.waker.wake();
        }
        Ok(applied)
    }

    /// Changes the ports and networks under running workers. `adopt` moves a
    /// pipeline to the new layout; it runs here on the readers' pipeline, and on each
    /// worker between two batches, where the worker also starts reading its queue of
    /// each port in `add` and closes its queue of each port in `remove`. Nothing
    /// waits: the [`Applied`] returned says when every worker has switched — from
    /// then on no worker uses a removed port, so its table entries can be forgotten
    /// and its namespace deleted. Each port in `add` must have one queue per worker.
    ///
    /// The workers do not close the queues of removed ports: closing a TAP queue
    /// waits for the kernel (`tun_detach` calls `synchronize_net()`, and closing the
    /// last queue unregisters the device under the RTNL lock, behind whatever
    /// namespace work holds it), which took a worker off its ports for up to 0.8 s.
    /// They hand them back through the [`Applied`] instead, and the caller closes
    /// them ([`Applied::close_retired`]).
    pub fn reshape(
        &self,
        adopt: AdoptFn,
        add: Vec<NewPort>,
        remove: Vec<PortId>,
    ) -> Result<Applied, NotRunning> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(NotRunning);
        }
        adopt(&mut self.observer.lock().unwrap_or_else(|e| e.into_inner()));
        let workers = self.links.len();
        let mut per_worker: Vec<Vec<QueueOf>> = (0..workers).map(|_| Vec::new()).collect();
        for p in add {
            for (w, q) in p.queues.into_iter().enumerate() {
                per_worker[w % workers].push((p.id, p.name.clone(), q));
            }
        }
        // Room for every queue handed back: a worker never waits to send.
        let (retired, back) = crossbeam_channel::bounded(remove.len() * workers);
        let applied = Applied {
            by: Arc::new(AtomicUsize::new(0)),
            workers,
            retired: Some(back),
        };
        for (l, add) in self.links.iter().zip(per_worker) {
            let job = Reshape {
                adopt: adopt.clone(),
                add,
                remove: remove.clone(),
                retired: retired.clone(),
            };
            l.jobs
                .send(Job::Reshape(job, applied.by.clone()))
                .map_err(|_| NotRunning)?;
            let _ = l.waker.wake();
        }
        Ok(applied)
    }

    /// The wall-clock time of a reading of the workers' clock, in nanoseconds since
    /// the Unix epoch.
    pub fn wall_ns(&self, t: Timestamp) -> u64 {
        self.epoch_ns.saturating_add(t.0)
    }

    /// Claims a place for an event stream; `None` while `max` are open.
    pub fn claim_event_stream(&self, max: usize) -> Option<Claim> {
        self.event_streams.claim(max)
    }

    /// Claims a place for a capture; `None` while `max` run.
    pub fn claim_capture(&self, max: usize) -> Option<Claim> {
        self.captures.claim(max)
    }

    /// Claims the instance's live trace; `None` while another one runs.
    pub fn claim_trace(&self) -> Option<Claim> {
        self.traces.claim(1)
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.links.len()
    }

    /// Asks the workers to stop after their current batch.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in &self.links {
            let _ = l.waker.wake();
        }
    }
}

/// Workers running on their threads.
pub struct Running {
    handle: Handle,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// The service thread's end of the punt path, until it is taken.
    service: Option<punt::ServiceLink>,
}

impl Running {
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The service thread's end of the punt path (see [`punt`]): `Some` once. While
    /// nobody takes it, punted frames wait in its queue until the workers' spares run
    /// out, then are dropped and counted (`punt_dropped`).
    pub fn take_service_link(&mut self) -> Option<punt::ServiceLink> {
        self.service.take()
    }

    /// Stops the workers and waits for them; the ports are closed when this returns.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.handle.request_stop();
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("dataplane worker panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// True once any worker has exited on its own (after an error).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropped without `stop` (an error path): the workers' error has no caller left
        // to return to.
        if let Err(e) = self.stop_inner() {
            tracing::error!("the dataplane stopped with an error: {e}");
        }
    }
}

/// The workers, ready to start.
pub struct Dataplane {
    workers: Vec<Worker>,
    /// The service's end of the punt path, linked to the workers when they start.
    service: punt::ServiceSide,
    opts: Options,
    observer: Pipeline,
    start: Instant,
    epoch_ns: u64,
}

/// One worker's state.
struct Worker {
    index: usize,
    pipeline: Pipeline,
    ports: Vec<Box<dyn Port>>,
    status: Vec<PortStatus>,
    batch: Vec<Frame>,
    emit: Emitter,
    start: Instant,
    busy_poll: Duration,
    /// How long to poll after the last packet before sleeping, when `busy_poll` is
    /// not set (None: sleep at once).
    spin: Option<Spin>,
    /// Test hook: panic after this many batches.
    panic_after: Option<u64>,
    /// Who watches this worker (a live trace, captures, ...).
    observers: Observers,
    /// The clock origin as wall-clock time (ns since the Unix epoch).
    epoch_ns: u64,
    /// This worker's end of the punt path.
    punt: punt::WorkerEnd,
    /// The CPUs this worker pins itself to when it starts (empty: none).
    cpus: Vec<usize>,
    /// The worker's io_uring and the writes waiting for the end of the batch, with
    /// `io = "uring"` (see [`ring`]).
    ring: Option<ring::RingIo>,
}

impl Dataplane {
    /// `queues[w][p]` is worker `w`'s queue of the pipeline's `PortId(p)`; worker 0 runs
    /// `pipeline` and the others run workers derived from it ([`Pipeline::worker`]).
    pub fn new(pipeline: Pipeline, queues: Vec<Vec<Box<dyn Port>>>, opts: Options) -> Dataplane {
        let start = Instant::now();
        let epoch_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut first = Some(pipeline);
        let template = first.as_ref().map(|p| p.worker()).expect("pipeline");
        let observer = template.worker();
        let panic_after = std::env::var(PANIC_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = panic_after {
            tracing::warn!("test hook {PANIC_AFTER_ENV}: each worker panics after {n} batches");
        }
        let (service, ends) = punt::plumb(queues.len());
        let allowed = if opts.pin {
            steer::allowed_cpus()
        } else {
            Vec::new()
        };
        let count = queues.len();
        let mut rings = make_rings(opts.io, queues.len()).into_iter();
        let workers = queues
            .into_iter()
            .zip(ends)
            .enumerate()
            .map(|(index, (ports, punt))| {
                let pipeline = first.take().unwrap_or_else(|| template.worker());
                let ring = rings.next().flatten();
                let status = ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| PortStatus {
                        name: pipeline
                            .port(PortId(i as u16))
                            .map_or_else(|| format!("port{i}"), |s| s.name.clone()),
                        caps: p.capabilities(),
                        io: PortIo::default(),
                        down: None,
                        drops: Vec::new(),
                        io_mode: io_mode(&ring, p.as_ref()),
                    })
                    .collect();
                Worker {
                    index,
                    pipeline,
                    ports,
                    status,
                    batch: (0..BATCH).map(|_| Frame::new()).collect(),
                    emit: Emitter::with_capacity(EMIT_BUFFERS),
                    start,
                    busy_poll: opts.busy_poll,
                    spin: (opts.adaptive && opts.busy_poll.is_zero()).then(Spin::default),
                    panic_after,
                    observers: Observers::default(),
                    epoch_ns,
                    punt,
                    cpus: steer::worker_cpus(index, count, &allowed),
                    ring,
                }
            })
            .collect();
        Dataplane {
            workers,
            service,
            opts,
            observer,
            start,
            epoch_ns,
        }
    }

    pub fn options(&self) -> Options {
        self.opts
    }

    /// Starts one thread per worker.
    pub fn spawn(self) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        let mut threads = Vec::new();
        let mut wakers = Vec::new();
        for w in self.workers {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            wakers.push(waker.clone());
            let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
            links.push(Link {
                jobs: jobs_tx,
                waker,
            });
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("switchyard-w{}", w.index))
                    .spawn(move || w.run(poll, jobs_rx, stop))?,
            );
        }
        Ok(Running {
            handle: Handle {
                links,
                stop,
                observer: Arc::new(Mutex::new(self.observer)),
                start: self.start,
                epoch_ns: self.epoch_ns,
                traces: Places::default(),
                event_streams: Places::default(),
                captures: Places::default(),
            },
            threads,
            service: Some(self.service.link(wakers)),
        })
    }
}

impl Worker {
    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(self.start.elapsed().as_nanos() as u64)
    }

    fn run(mut self, mut poll: Poll, jobs: Receiver<Job>, stop: Arc<AtomicBool>) -> io::Result<()> {
        if !self.cpus.is_empty() {
            if let Err(e) = steer::pin_current_thread(&self.cpus) {
                // Unpinned it still switches; frames may then cross CPUs.
                tracing::warn!(
                    "worker {} cannot pin itself to CPUs {:?}: {e}",
                    self.index,
                    self.cpus
                );
                self.cpus.clear();
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            let fd = p.fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(256);
        // Queues that reported readable and have not yet returned "would block".
        let mut ready: Vec<bool> = vec![true; self.ports.len()];
        let mut next_tick = self.now().0 + TICK.as_nanos() as u64;
        let mut last_packet = self.now().0;
        // Whether the last wait was a sleep (not a poll), for the adaptive spin.
        let mut slept = false;
        loop {
            let any_ready = ready.iter().any(|&r| r);
            let now = self.now().0;
            let window = match &self.spin {
                Some(s) => s.window_ns,
                None => self.busy_poll.as_nanos() as u64,
            };
            let spinning = now.saturating_sub(last_packet) < window;
            let timeout = if any_ready || spinning {
                Duration::ZERO
            } else {
                Duration::from_nanos(next_tick.saturating_sub(now))
            };
            if spinning && !any_ready && self.spin.is_some() {
                // Give the CPU to whoever else is runnable on it (with steering by
                // CPU, that is often the endpoint about to answer): the spin only
                // uses time nobody else wants.
                std::thread::yield_now();
            }
            slept = !timeout.is_zero() || (slept && any_ready);
            match poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    ready[ev.token().0] = true;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            while let Ok(job) = jobs.try_recv() {
                match job {
                    Job::Query(job) => {
                        let now = self.now();
                        for (s, p) in self.status.iter_mut().zip(self.ports.iter_mut()) {
                            s.drops = p.drops();
                            let r = p.rx_refused();
                            s.io.rx_tagged = r.tagged;
                            s.io.rx_truncated = r.truncated;
                            s.io.rx_kernel_drops = r.kernel_drops;
                            s.io.rx_unclaimed = r.unclaimed;
                        }
                        job(View {
                            pipeline: &mut self.pipeline,
                            ports: &self.status,
                            now,
                            worker: self.index,
                            cpus: &self.cpus,
                        });
                    }
                    Job::PortDown(port, why) => {
                        // Whoever found out has logged it.
                        self.mark_down(&poll, port, why, false);
                        ready[port.index()] = false;
                    }
                    Job::Observe(f, applied) => {
                        f(&mut self.observers, &mut self.pipeline, self.index);
                        applied.fetch_add(1, Ordering::SeqCst);
                    }
                    Job::Reshape(r, applied) => {
                        self.reshape(&poll, r, &mut ready)?;
                        applied.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            // What the service sent back: its replies, and spare buffers.
            if self.punt.has_mail() {
                let now = self.now();
                self.drain_service(now);
            }
            // One round: a batch from every ready queue.
            let mut moved = false;
            for (i, r) in ready.iter_mut().enumerate() {
                if *r {
                    let (more, got) = match self.service(PortId(i as u16)) {
                        Ok(r) => r,
                        Err(e) if device_gone(&e) => {
                            self.mark_down(
                                &poll,
                                PortId(i as u16),
                                format!("its device is gone ({e})"),
                                true,
                            );
                            (false, false)
                        }
                        Err(_) => {
                            self.status[i].io.rx_errors += 1;
                            (false, false)
                        }
                    };
                    *r = more;
                    moved |= got;
                }
            }
            if moved {
                if let Some(n) = self.panic_after.as_mut() {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        panic!("{PANIC_AFTER_ENV}: worker {} panics as asked", self.index);
                    }
                }
            }
            let now = self.now();
            if moved {
                if let (Some(spin), true) = (self.spin.as_mut(), slept) {
                    spin.woken_after(now.0.saturating_sub(last_packet));
                }
                slept = false;
                last_packet = now.0;
            }
            if now.0 >= next_tick {
                self.emit.clear();
                self.pipeline.tick(now, &mut self.emit);
                self.transmit_emitted(now);
                next_tick = now.0 + TICK.as_nanos() as u64;
            }
            if self.observers.trace.is_some() {
                self.report_traces();
            }
            if !self.observers.events.is_empty() {
                self.report_events();
            }
        }
    }

    /// Takes up a new layout between two batches: the pipeline adopts it, removed
    /// ports are closed (a slot left behind, so port ids stay put) and new ones are
    /// polled. Registering a queue with epoll is the one step that can fail; it fails
    /// only when the kernel is out of memory, which ends the worker as any other
    /// polling error does.
    #[cold]
    fn reshape(&mut self, poll: &Poll, r: Reshape, ready: &mut Vec<bool>) -> io::Result<()> {
        // Replies to queries punted under the current layout may come after it.
        self.punt.leaving(&self.pipeline);
        (r.adopt)(&mut self.pipeline);
        for port in r.remove {
            let p = port.index();
            if p >= self.ports.len() {
                continue;
            }
            let fd = self.ports[p].fd();
            if fd >= 0 {
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
            }
            let queue =
                std::mem::replace(&mut self.ports[p], GonePort::boxed(Capabilities::default()));
            // Closed by whoever asked for the change (see `Handle::reshape`); if
            // they stopped waiting, it is closed here after all.
            let _ = r.retired.try_send(queue);
            self.status[p] = PortStatus::vacant();
            ready[p] = false;
        }
        for (port, name, queue) in r.add {
            let p = port.index();
            while self.ports.len() <= p {
                self.ports.push(GonePort::boxed(Capabilities::default()));
                self.status.push(PortStatus::vacant());
                ready.push(false);
            }
            let fd = queue.fd();
            self.status[p] = PortStatus {
                name,
                caps: queue.capabilities(),
                io: PortIo::default(),
                down: None,
                drops: Vec::new(),
                io_mode: io_mode(&self.ring, queue.as_ref()),
            };
            self.ports[p] = queue;
            poll.registry()
                .register(&mut SourceFd(&fd), Token(p), Interest::READABLE)?;
            // Read at once: frames may have queued since the TAP was made.
            ready[p] = true;
        }
        Ok(())
    }

    /// Hands the table events kept since the last call to every event stream (those
    /// a full stream refuses, or that found the pipeline's log full, are counted
    /// there as skipped); forgets the streams whose reader is gone, and stops keeping
    /// events when none is left.
    #[cold]
    fn report_events(&mut self) {
        let feeds = &mut self.observers.events;
        let skipped = self.pipeline.events().drain(|e| {
            for f in feeds.iter() {
                f.offer(e);
            }
        });
        for f in feeds.iter() {
            if skipped > 0 {
                f.skip(skipped);
            }
        }
        feeds.retain(|f| !f.is_closed());
        if feeds.is_empty() {
            self.pipeline.events().stop();
        }
    }

    /// Hands the traces finished since the last call to the live trace, while its
    /// budget lasts; then stops tracing. Frames over the budget (another worker took
    /// the last ones) are discarded.
    #[cold]
    fn report_traces(&mut self) {
        let Some(session) = self.observers.trace.clone() else {
            return;
        };
        while let Some(mut t) = self.pipeline.tracer().next_frame() {
            let numbers = &mut self.observers.trace_numbers;
            let number = if t.continued {
                numbers.get(t.packet)
            } else {
                let n = session.claim();
                if let Some(n) = n {
                    numbers.insert(t.packet, n);
                }
                n
            };
            let Some(number) = number else {
                continue;
            };
            t.packet = number;
            t.time_ns = self.epoch_ns.saturating_add(t.time_ns);
            if session.feed.offer(t) == Offer::Closed {
                break;
            }
        }
        let spent = session.budget.load(Ordering::Acquire) == 0;
        if spent || session.feed.is_closed() {
            self.pipeline.tracer().stop();
            while self.pipeline.tracer().next_frame().is_some() {}
            self.observers.trace = None;
            self.observers.trace_numbers.clear();
        }
    }

    /// Stops using `port`: no more polling, reading or writing. With `log`, logged
    /// once per port (by worker 0; the others follow quietly).
    fn mark_down(&mut self, poll: &Poll, port: PortId, why: String, log: bool) {
        let p = port.index();
        let Some(st) = self.status.get_mut(p) else {
            return;
        };
        if st.down.is_some() {
            return;
        }
        let fd = self.ports[p].fd();
        let _ = poll.registry().deregister(&mut SourceFd(&fd));
        // Close the queue: a namespace lives while a TAP of it is open, and this one
        // is no longer anyone's. Not on this thread: closing a TAP queue waits for the
        // kernel (see `Handle::reshape`), and the worker has other ports to serve. A
        // thread of its own, rarely: once per port going down.
        let caps = self.ports[p].capabilities();
        let queue = std::mem::replace(&mut self.ports[p], GonePort::boxed(caps));
        let closer = std::thread::Builder::new()
            .name("switchyard-close".into())
            .spawn(move || drop(queue));
        if let Err(e) = closer {
            // No thread to be had: close it here after all.
            tracing::debug!("closing a queue on the worker: {e}");
        }
        if log && self.index == 0 {
            tracing::warn!(
                "port {} is down: {why}; the other ports keep switching",
                st.name
            );
        }
        st.down = Some(why);
        // Every worker marks the port down; the first reports it.
        if self.index == 0 {
            let now = self.now();
            self.pipeline
                .record_event(now, TableChange::PortDown { port });
        }
    }

    /// Reads one batch from `port`, runs it through the pipeline and sends it on.
    /// Returns whether the queue may have more to read, and whether anything came.
    fn service(&mut self, port: PortId) -> io::Result<(bool, bool)> {
        let p = port.index();
        if self.status[p].down.is_some() {
            return Ok((false, false));
        }
        let n = match self.ring.as_mut() {
            Some(r) => self.ports[p].recv_batch_on(&mut self.batch, r.ring())?,
            None => self.ports[p].recv_batch(&mut self.batch)?,
        };
        if n == 0 {
            return Ok((false, false));
        }
        for f in &mut self.batch[..n] {
            f.ingress = port;
            f.trace = 0;
            if f.vnet.is_gso() {
                self.status[p].io.rx_gso += 1;
            }
        }
        let now = self.now();
        // The one branch a batch pays when nothing is captured.
        let capturing = !self.observers.capture.is_empty();
        if capturing {
            for c in &mut self.observers.capture {
                c.inbound(port, &self.batch[..n]);
            }
        }
        self.emit.clear();
        self.pipeline
            .process(&mut self.batch[..n], now, &mut self.emit);
        if capturing {
            for c in &mut self.observers.capture {
                c.inbound_decided(port, &self.batch[..n], now);
            }
        }
        self.hand_punted(n, now);
        // Writes go on the ring unless a capture records them one by one.
        let deferring = self.ring.is_some() && !capturing;
        let mut i = 0;
        while i < n {
            let absorbed = self.coalesce(i, n);
            if absorbed == 0 {
                let deferred = deferring
                    && self.ring.as_mut().is_some_and(|r| {
                        r.defer(
                            &self.pipeline,
                            &mut self.ports,
                            &mut self.status,
                            &mut self.batch,
                            i,
                        )
                    });
                if !deferred {
                    self.flush_writes();
                    transmit(
                        &self.pipeline,
                        &mut self.ports,
                        &mut self.status,
                        &mut self.observers.capture,
                        now,
                        &mut self.batch[i],
                    );
                }
            } else {
                self.flush_writes();
                self.transmit_coalesced(i, absorbed + 1, now);
            }
            i += 1 + absorbed;
        }
        // Before anything else is sent, and before the batch is read into again.
        self.flush_writes();
        self.transmit_emitted(now);
        if capturing {
            // A capture whose reader is gone ends here, on every worker in turn.
            self.observers.capture.retain(|c| !c.is_closed());
        }
        if !self.observers.events.is_empty() {
            self.report_events();
        }
        Ok((n == BATCH, true))
    }

    /// If the frame at `i` starts a run of UDP datagrams of one flow, all bound for
    /// the same port that takes UDP super-frames, folds the run into that frame (see
    /// [`gro`]) and returns how many frames after it were absorbed (0: none).
    fn coalesce(&mut self, i: usize, n: usize) -> usize {
        let first = &self.batch[i];
        let Egress::One(out) = self.pipeline.egress(first) else {
            return 0;
        };
        let Some(caps) = self.status.get(out.index()).map(|s| s.caps.offloads) else {
            return 0;
        };
        if !caps.contains(USO) || first.trace != 0 || i + 1 >= n {
            return 0;
        }
        let Some((flow, mss)) = gro::udp4_candidate(first.data(), &first.vnet) else {
            return 0;
        };
        let (mut j, mut total) = (i + 1, first.len());
        while j < n && j - i < gro::MAX_SEGMENTS {
            let f = &self.batch[j];
            if f.trace != 0 || !matches!(self.pipeline.egress(f), Egress::One(o) if o == out) {
                break;
            }
            match gro::udp4_candidate(f.data(), &f.vnet) {
                Some((fl, len)) if fl == flow && len <= mss && total + len <= MAX_SUPER_FRAME => {
                    total += len;
                    j += 1;
                    if len < mss {
                        break; // a shorter datagram can only be the last segment
                    }
                }
                _ => break,
            }
        }
        if j - i < 2 {
            return 0;
        }
        let (head, tail) = self.batch.split_at_mut(i + 1);
        let first = &mut head[i];
        let len0 = first.len();
        first.set_len(total);
        let more = tail[..j - i - 1].iter().map(|f| &f.data()[gro::HEADERS..]);
        let (len, vnet) = gro::build(first.data_mut(), len0, more);
        first.set_len(len);
        first.vnet = vnet;
        j - i - 1
    }

    /// Writes out the writes of the batch waiting on the ring (see [`ring`]).
    #[inline]
    fn flush_writes(&mut self) {
        if let Some(r) = self.ring.as_mut() {
            r.flush(&self.batch, &mut self.status);
        }
    }

    /// Sends the super-frame at `i`, built from `datagrams` frames, to its one port.
    fn transmit_coalesced(&mut self, i: usize, datagrams: usize, now: Timestamp) {
        let f = &mut self.batch[i];
        let Egress::One(out) = self.pipeline.egress(f) else {
            return;
        };
        let bytes = (f.len() + (datagrams - 1) * gro::HEADERS) as u64;
        let Some(st) = self.status.get_mut(out.index()) else {
            return;
        };
        if st.down.is_some() {
            st.io.tx_errors += datagrams as u64;
            return;
        }
        let io = &mut st.io;
        match self.ports[out.index()].send(f) {
            Ok(_) => {
                io.tx_frames += datagrams as u64;
                io.tx_bytes += bytes;
                io.tx_coalesced += 1;
                io.tx_coalesced_datagrams += datagrams as u64;
                // The super-frame is what crossed the TAP: it is what is recorded.
                for c in &mut self.observers.capture {
                    c.outbound(out, f, 1, now);
                }
            }
            Err(_) => io.tx_errors += datagrams as u64,
        }
    }

    /// Sends the frames the pipeline originated.
    fn transmit_emitted(&mut self, now: Timestamp) {
        for i in 0..self.emit.len() {
            let f = self.emit.frame_mut(i);
            transmit(
                &self.pipeline,
                &mut self.ports,
                &mut self.status,
                &mut self.observers.capture,
                now,
                f,
            );
        }
        self.emit.clear();
    }
}

/// Sends `f` to every port its verdict names, and records it for the captures of
/// the ports it went out on (`now`: the batch's clock reading).
#[inline]
fn transmit(
    pipeline: &Pipeline,
    ports: &mut [Box<dyn Port>],
    status: &mut [PortStatus],
    captures: &mut [CaptureFeed],
    now: Timestamp,
    f: &mut Frame,
) {
    for e in pipeline.egress(f) {
        let gso = f.vnet.is_gso();
        let len = f.len() as u64;
        // While a change is being taken up, another worker may have learned a MAC on
        // a port this one has not added yet: the frame is lost, as on a port that is
        // not up yet.
        let Some(st) = status.get_mut(e.index()) else {
            continue;
        };
        if st.down.is_some() {
            st.io.tx_errors += 1;
            continue;
        }
        let io = &mut st.io;
        let sent = match ports[e.index()].send(f) {
            Ok(1) => {
                io.tx_frames += 1;
                io.tx_bytes += len;
                if gso {
                    io.tx_gso += 1;
                }
                1
            }
            Ok(n) => {
                io.tx_frames += n as u64;
                io.tx_bytes += len;
                io.tx_segmented += 1;
                io.tx_segments += n as u64;
                n
            }
            Err(_) => {
                io.tx_errors += 1;
                continue;
            }
        };
        // Per frame when nothing is captured: one branch on an empty list.
        for c in captures.iter_mut() {
            c.outbound(e, f, sent, now);
        }
    }
}

/// Adaptive polling: how long a worker keeps polling after its last packet before it
/// sleeps in `epoll`. Sleeping costs a wake-up when the next packet comes (a few µs on
/// one CPU, tens of µs across the CPUs of a virtual machine); polling costs CPU while
/// nothing comes. The window adapts the way KVM's halt polling does: after a sleep that
/// ended sooner than [`Spin::MAX_NS`] — a wake-up a longer window would have saved —
/// it doubles (from [`Spin::START_NS`]); after a sleep longer than that it halves, down
/// to nothing. So request/response traffic (a round trip through the namespaces is
/// 10–20 µs) keeps the worker polling between packets, bulk traffic keeps it busy
/// anyway, and an idle switch sleeps: it costs no CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Spin {
    /// The current window, in ns (0: sleep at once).
    window_ns: u64,
}

impl Spin {
    const START_NS: u64 = 16_000;
    const MAX_NS: u64 = 128_000;

    /// Learns from a sleep that a packet ended `idle_ns` after the previous one.
    fn woken_after(&mut self, idle_ns: u64) {
        if idle_ns <= Self::MAX_NS {
            self.window_ns = (self.window_ns * 2).clamp(Self::START_NS, Self::MAX_NS);
        } else if self.window_ns > 0 {
            self.window_ns /= 2;
            if self.window_ns < Self::START_NS {
                self.window_ns = 0;
            }
        }
    }
}

/// One ring per worker when `io` asks for them; none (each worker's ports use their
/// own system calls) when it does not, or when io_uring cannot be had — said once.
fn make_rings(io: IoMode, workers: usize) -> Vec<Option<ring::RingIo>> {
    if io != IoMode::Uring {
        return (0..workers).map(|_| None).collect();
    }
    let mut rings = Vec::with_capacity(workers);
    for _ in 0..workers {
        match ring::RingIo::new(Ring::DEFAULT_CAPACITY) {
            Ok(r) => rings.push(Some(r)),
            Err(e) => {
                tracing::warn!(
                    "io_uring is not available ({e}): TAP queues are read and written \
                     with read(2)/writev(2) instead (io = \"syscalls\")"
                );
                return (0..workers).map(|_| None).collect();
            }
        }
    }
    rings
}

/// How a worker with `ring` (or none) reads and writes `port`.
fn io_mode(ring: &Option<ring::RingIo>, port: &dyn Port) -> IoMode {
    if ring.is_some() && port.uses_ring() {
        IoMode::Uring
    } else {
        IoMode::Syscalls
    }
}

/// True for the errors a TAP queue gives once its device is gone: `EBADFD` (the
/// device was deleted), `ENODEV`, `EIO`, `ENXIO`.
fn device_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EBADFD | libc_errno::ENODEV | libc_errno::EIO | libc_errno::ENXIO)
    )
}

/// Error numbers, from nix (the application crate does not link libc directly).
mod libc_errno {
    use nix::errno::Errno;
    pub const EBADFD: i32 = Errno::EBADFD as i32;
    pub const ENODEV: i32 = Errno::ENODEV as i32;
    pub const EIO: i32 = Errno::EIO as i32;
    pub const ENXIO: i32 = Errno::ENXIO as i32;
}

/// What stands in for a port whose device is gone: nothing to read, nothing written.
struct GonePort {
    caps: Capabilities,
}

impl GonePort {
    /// The stand-in of a port with these capabilities (a vacant slot has none).
    fn boxed(caps: Capabilities) -> Box<dyn Port> {
        Box::new(GonePort { caps })
    }
}

impl Port for GonePort {
    fn recv_batch(&mut self, _: &mut [Frame]) -> io::Result<usize> {
        Ok(0)
    }

    fn send(&mut self, _: &mut Frame) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(libc_errno::ENODEV))
    }

    fn fd(&self) -> std::os::fd::RawFd {
        -1
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }
}

#[cfg(test)]
mod tests {
    use super::Spin;

    #[test]
    fn the_spin_window_grows_while_sleeping_loses_wakeups_and_shrinks_when_idle() {
        let mut s = Spin::default();
        assert_eq!(s.window_ns, 0, "a new worker sleeps at once");
        // Packets 20 µs apart: each sleep cost a wake-up a window would have saved.
        s.woken_after(20_000);
        assert_eq!(s.window_ns, Spin::START_NS);
        for _ in 0..10 {
            s.woken_after(20_000);
        }
        assert_eq!(s.window_ns, Spin::MAX_NS, "doubles up to its limit");
        // Then the traffic stops: each long sleep halves it, down to nothing.
        let mut steps = 0;
        while s.window_ns > 0 {
            s.woken_after(1_000_000_000);
            steps += 1;
            assert!(steps <= 4, "{s:?}");
        }
        s.woken_after(5_000_000);
        assert_eq!(s.window_ns, 0, "an idle worker stays asleep");
    }
}
