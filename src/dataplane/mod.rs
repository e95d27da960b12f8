//! `dataplane` — the loop that moves frames between ports and the pipeline.
//!
//! One worker thread owns the pipeline and every port. It sleeps in `epoll` (through
//! mio) until a port is readable, then, port by port in turn, reads a batch of frames,
//! runs the pipeline over the batch with one clock reading, writes each frame to the
//! ports its verdict names, and repeats until every port would block. Buffers are
//! allocated once at start; nothing on this path allocates, logs or reads the clock
//! per packet. The dataplane makes no forwarding decision of its own: it asks
//! [`Pipeline::egress`] where each frame goes.
//!
//! Other threads (the control socket) reach the pipeline by sending a closure that
//! the worker runs between batches ([`Handle::query`]), so the tables need no locks
//! and a `show fdb` sees a consistent table.

use crate::pipeline::{Emitter, Frame, Pipeline, PortId, Timestamp};
use crate::port::{Capabilities, Port};
use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames read from one port before moving on to the next (fairness between ports).
pub const BATCH: usize = 64;
/// Buffers for frames switchyard originates within one batch (ARP, ICMP errors,
/// fragments, packets released from neighbor queues).
const EMIT_BUFFERS: usize = 2 * BATCH;
/// How often the pipeline's timers run (ARP retransmissions are due every second;
/// a finer tick keeps them close to that).
const TICK: Duration = Duration::from_millis(100);
const WAKER: Token = Token(usize::MAX);

/// I/O counters of one port, kept by the dataplane (the pipeline counts decisions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortIo {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Writes the kernel refused (device down, queue full).
    pub tx_errors: u64,
    /// Reads that failed with something other than "would block".
    pub rx_errors: u64,
}

/// What a query sees of a port besides the pipeline's counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortStatus {
    pub name: String,
    pub caps: Capabilities,
    pub io: PortIo,
}

/// The dataplane's state as a query closure sees it.
pub struct View<'a> {
    pub pipeline: &'a mut Pipeline,
    pub ports: &'a [PortStatus],
    /// The pipeline clock's current reading.
    pub now: Timestamp,
}

type Job = Box<dyn FnOnce(View<'_>) + Send>;

/// Controls a running dataplane from other threads.
#[derive(Clone)]
pub struct Handle {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

/// The dataplane stopped or failed before answering.
#[derive(Debug, thiserror::Error)]
#[error("the dataplane is not running")]
pub struct NotRunning;

impl Handle {
    /// Runs `f` on the dataplane thread between batches and returns its result.
    pub fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(View<'_>) -> T + Send + 'static,
    ) -> Result<T, NotRunning> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.jobs
            .send(Box::new(move |view| {
                let _ = tx.send(f(view));
            }))
            .map_err(|_| NotRunning)?;
        self.waker.wake().map_err(|_| NotRunning)?;
        rx.recv().map_err(|_| NotRunning)
    }

    /// Asks the dataplane to stop after the current batch.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A dataplane running on its own thread.
pub struct Running {
    handle: Handle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the worker and waits for it; ports are closed when this returns.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.handle.request_stop();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("dataplane thread panicked"))),
            None => Ok(()),
        }
    }

    /// True once the worker has exited (on its own, after an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// The worker's state.
pub struct Dataplane {
    pipeline: Pipeline,
    ports: Vec<Box<dyn Port>>,
    status: Vec<PortStatus>,
    batch: Vec<Frame>,
    emit: Emitter,
    start: Instant,
}

impl Dataplane {
    /// `ports[i]` is the pipeline's `PortId(i)`.
    pub fn new(pipeline: Pipeline, ports: Vec<Box<dyn Port>>) -> Dataplane {
        let status = ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortStatus {
                name: pipeline
                    .port(PortId(i as u16))
                    .map_or_else(|| format!("port{i}"), |s| s.name.clone()),
                caps: p.capabilities(),
                io: PortIo::default(),
            })
            .collect();
        Dataplane {
            pipeline,
            ports,
            status,
            batch: (0..BATCH).map(|_| Frame::new()).collect(),
            emit: Emitter::with_capacity(EMIT_BUFFERS),
            start: Instant::now(),
        }
    }

    /// Starts the worker thread.
    pub fn spawn(self) -> io::Result<Running> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Handle {
            jobs: jobs_tx,
            waker,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("switchyard-dp".into())
            .spawn(move || self.run(poll, jobs_rx, stop))?;
        Ok(Running {
            handle,
            thread: Some(thread),
        })
    }

    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp(self.start.elapsed().as_nanos() as u64)
    }

    fn run(mut self, mut poll: Poll, jobs: Receiver<Job>, stop: Arc<AtomicBool>) -> io::Result<()> {
        for (i, p) in self.ports.iter().enumerate() {
            let fd = p.fd(0);
            poll.registry()
                .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(256);
        // Ports that reported readable and have not yet returned "would block".
        let mut ready: Vec<bool> = vec![true; self.ports.len()];
        let mut next_tick = self.now().0 + TICK.as_nanos() as u64;
        loop {
            let any_ready = ready.iter().any(|&r| r);
            let timeout = if any_ready {
                Duration::ZERO
            } else {
                Duration::from_nanos(next_tick.saturating_sub(self.now().0))
            };
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
                let now = self.now();
                job(View {
                    pipeline: &mut self.pipeline,
                    ports: &self.status,
                    now,
                });
            }
            // One round: a batch from every ready port.
            for (i, r) in ready.iter_mut().enumerate() {
                if *r {
                    *r = self.service(PortId(i as u16));
                }
            }
            let now = self.now();
            if now.0 >= next_tick {
                self.emit.clear();
                self.pipeline.tick(now, &mut self.emit);
                self.transmit_emitted();
                next_tick = now.0 + TICK.as_nanos() as u64;
            }
        }
    }

    /// Reads one batch from `port`, runs it through the pipeline and sends it on.
    /// Returns true if the port may have more to read.
    fn service(&mut self, port: PortId) -> bool {
        let p = port.index();
        let n = match self.ports[p].recv_batch(0, &mut self.batch) {
            Ok(n) => n,
            Err(_) => {
                self.status[p].io.rx_errors += 1;
                return false;
            }
        };
        if n == 0 {
            return false;
        }
        for f in &mut self.batch[..n] {
            f.ingress = port;
            f.trace = 0;
        }
        let now = self.now();
        self.emit.clear();
        self.pipeline
            .process(&mut self.batch[..n], now, &mut self.emit);
        for f in &mut self.batch[..n] {
            transmit(&self.pipeline, &mut self.ports, &mut self.status, f);
        }
        self.transmit_emitted();
        n == BATCH
    }

    /// Sends the frames the pipeline originated.
    fn transmit_emitted(&mut self) {
        for i in 0..self.emit.len() {
            let f = self.emit.frame_mut(i);
            transmit(&self.pipeline, &mut self.ports, &mut self.status, f);
        }
        self.emit.clear();
    }
}

/// Sends `f` to every port its verdict names.
#[inline]
fn transmit(
    pipeline: &Pipeline,
    ports: &mut [Box<dyn Port>],
    status: &mut [PortStatus],
    f: &mut Frame,
) {
    for e in pipeline.egress(f) {
        let len = f.len() as u64;
        let io = &mut status[e.index()].io;
        match ports[e.index()].send(0, f) {
            Ok(()) => {
                io.tx_frames += 1;
                io.tx_bytes += len;
            }
            Err(_) => io.tx_errors += 1,
        }
    }
}
