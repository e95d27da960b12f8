//! `punt` — the way between the workers and switchyard's service thread (the DNS
//! server), which must never run on a worker's hot path.
//!
//! A frame the pipeline marks [`Action::Punt`] (a DNS query to a gateway address)
//! is *punted*: the worker swaps a spare buffer into the frame's batch slot and hands
//! the frame, untouched, to the service thread ([`ToService::Punt`]). The service
//! answers later with a frame of its own making ([`ToWorker::Reply`]), which the
//! worker that punted the query sends out of the port the query came in on, through
//! the same path as every frame it sends (so the port's tx counters and captures see
//! it). Nothing here waits: every send is a `try_send`, and a frame that finds no
//! room is dropped and counted.
//!
//! # Buffers
//!
//! No buffer is allocated per packet. Frames are allocated once, at start: each
//! worker keeps up to [`WORKER_SPARES`] spares, the service starts with
//! [`SERVICE_SPARES`] ([`ServiceLink::take_pool`]). Buffers then travel: a punted
//! query leaves its worker one spare short, and the reply (or a spare) given back
//! makes it up. So that neither side hoards them, both follow the same rule:
//!
//! * a worker holding more than [`WORKER_SPARES`] spares sends the extra back to the
//!   service ([`ToService::Spare`]), if the service's queue has room (else it keeps
//!   them);
//! * the service, holding more than the [`SERVICE_SPARES`] it started with (queries
//!   it did not answer, spares sent back), sends the extra to workers that are short
//!   ([`ToWorker::Spare`]). It can keep the count per worker without asking: each
//!   [`Punted`] from a worker leaves it one short, each `Reply` or `Spare` sent to it
//!   makes one up, and a [`ToService::Spare`] from it says it was over.
//!
//! A worker with no spare left (the service is slow, or nobody runs it) drops the
//! query and counts it (`punt_dropped`), and goes on switching everything else.
//!
//! # Queues
//!
//! One bounded queue from all workers to the service ([`SERVICE_QUEUE`] messages),
//! and one per worker back from it, which holds as many messages as there are
//! buffers outside the workers' batches (every worker's spares and the service's):
//! no more than that can ever be on their way to one worker, so a reply or a spare
//! never finds a worker's queue full. A worker drains its queue at every turn of its
//! loop; [`ServiceLink::wake`] wakes it from its poll.
//!
//! # A reply and a changed layout
//!
//! Ports and networks may change while a query is with the service. A query is
//! stamped with the layout it was punted under ([`Punted::generation`]), and its
//! reply goes out only to the same endpoint: under the same layout, or, after a
//! change, a port with the same name in the same network, whose network still has
//! the same name. Anything else (the endpoint went, and its port number was perhaps
//! given to another) drops the reply, counted as `punt_stale`. To tell, each worker
//! remembers who its ports were in the last [`REMEMBERED_LAYOUTS`] layouts it ran.

use super::{transmit, Worker};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchyard_core::pipeline::{Action, DomainId, Frame, Pipeline, PortId, Timestamp, HEADROOM};

/// Messages the service's queue holds, from all workers together.
pub const SERVICE_QUEUE: usize = 1024;
/// Spare buffers a worker keeps for punting (and allocates at start).
pub const WORKER_SPARES: usize = 32;
/// Spare buffers the service starts with.
pub const SERVICE_SPARES: usize = 64;
/// Past layouts a worker remembers its ports of, to check a late reply against.
pub const REMEMBERED_LAYOUTS: usize = 4;

/// What a worker hands the service thread.
pub enum ToService {
    Punt(Punted),
    /// A spare frame back to the service's pool.
    Spare(Frame),
}

/// A frame a worker punted, and where it came from.
pub struct Punted {
    /// The Ethernet frame exactly as received. Its `vnet` is the offload header it
    /// came with: a sender with checksum offload may have left the UDP or TCP
    /// checksum for the receiver to complete (`VIRTIO_NET_HDR_F_NEEDS_CSUM`), and a
    /// sender with segmentation offload may have sent a TCP super-frame.
    pub frame: Frame,
    /// The worker that punted it, and which is to send the reply.
    pub worker: usize,
    /// The ingress port.
    pub port: PortId,
    /// The ingress network: the view the query is answered from.
    pub domain: DomainId,
    /// The layout the worker ran when it punted the frame
    /// ([`Pipeline::layout_generation`]).
    pub generation: u64,
}

/// What the service hands a worker.
pub enum ToWorker {
    /// Send `frame` (a complete Ethernet frame, vnet header default) out of `port` —
    /// only if the port is still the one it was: same generation, or (generation
    /// changed) the port's spec still has the same name and domain and that domain
    /// the same name; else dropped and counted (`punt_stale`). Then the frame becomes
    /// a spare. The frame must start at least [`HEADROOM`] bytes into its buffer, as
    /// [`Frame::load`] puts it (the port writes its virtio-net header there); one
    /// that does not, or is empty, is dropped and counted the same.
    Reply {
        frame: Frame,
        port: PortId,
        domain: DomainId,
        generation: u64,
    },
    Spare(Frame),
}

/// The service thread's end of the punt path.
pub struct ServiceLink {
    from_workers: Receiver<ToService>,
    workers: Vec<WorkerLink>,
    pool: Vec<Frame>,
}

/// The service's way to one worker.
struct WorkerLink {
    queue: Sender<ToWorker>,
    waker: Arc<Waker>,
    /// Sent something since the last [`ServiceLink::wake`].
    sent: AtomicBool,
}

impl ServiceLink {
    /// Where the workers' punted frames and spares arrive. It disconnects once every
    /// worker has stopped: the service's cue to end.
    pub fn receiver(&self) -> &Receiver<ToService> {
        &self.from_workers
    }

    /// How many workers there are (the valid values of `w` in [`ServiceLink::send`]).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Queues `msg` for worker `w`; never blocks; gives it back when the queue is
    /// full (which the queue's size rules out while buffers are only those of the
    /// punt path), the worker is gone, or there is no worker `w`.
    pub fn send(&self, w: usize, msg: ToWorker) -> Result<(), ToWorker> {
        let Some(link) = self.workers.get(w) else {
            return Err(msg);
        };
        match link.queue.try_send(msg) {
            Ok(()) => {
                link.sent.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }

    /// Wakes every worker sent something since the last call (one mio Waker wake
    /// each): sending does not, so that a burst of replies costs one wake per worker.
    pub fn wake(&self) {
        for link in &self.workers {
            if link.sent.swap(false, Ordering::Relaxed) {
                let _ = link.waker.wake();
            }
        }
    }

    /// The service's own spare frames (allocated at start): take them once; later
    /// calls give none.
    pub fn take_pool(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.pool)
    }
}

/// The service's end before the workers' wakers exist (they come with the workers'
/// polls, made when the workers start).
pub(super) struct ServiceSide {
    from_workers: Receiver<ToService>,
    queues: Vec<Sender<ToWorker>>,
    pool: Vec<Frame>,
}

impl ServiceSide {
    /// The link, given each worker's waker (in worker order).
    pub(super) fn link(self, wakers: Vec<Arc<Waker>>) -> ServiceLink {
        ServiceLink {
            from_workers: self.from_workers,
            workers: self
                .queues
                .into_iter()
                .zip(wakers)
                .map(|(queue, waker)| WorkerLink {
                    queue,
                    waker,
                    sent: AtomicBool::new(false),
                })
                .collect(),
            pool: self.pool,
        }
    }
}

/// Makes the queues and the buffers of the punt path for `workers` workers: the
/// service's end, and each worker's.
pub(super) fn plumb(workers: usize) -> (ServiceSide, Vec<WorkerEnd>) {
    let (to_service, from_workers) = crossbeam_channel::bounded(SERVICE_QUEUE);
    // Every buffer outside the batches: no more can be queued for one worker.
    let circulating = workers * WORKER_SPARES + SERVICE_SPARES;
    let mut queues = Vec::with_capacity(workers);
    let ends = (0..workers)
        .map(|_| {
            let (tx, rx) = crossbeam_channel::bounded(circulating);
            queues.push(tx);
            let mut spares = Vec::with_capacity(circulating);
            spares.extend((0..WORKER_SPARES).map(|_| Frame::new()));
            WorkerEnd {
                to_service: to_service.clone(),
                from_service: rx,
                spares,
                past: VecDeque::with_capacity(REMEMBERED_LAYOUTS),
            }
        })
        .collect();
    let pool = (0..SERVICE_SPARES).map(|_| Frame::new()).collect();
    (
        ServiceSide {
            from_workers,
            queues,
            pool,
        },
        ends,
    )
}

/// A worker's end of the punt path.
pub(super) struct WorkerEnd {
    to_service: Sender<ToService>,
    from_service: Receiver<ToWorker>,
    /// Spare buffers; room reserved for every buffer there is, so that keeping more
    /// than [`WORKER_SPARES`] (the service's queue full) never allocates.
    spares: Vec<Frame>,
    /// Who the ports were in the layouts this worker ran before its current one,
    /// newest first.
    past: VecDeque<PastLayout>,
}

/// Who a layout's ports were: what a late reply is checked against.
struct PastLayout {
    generation: u64,
    /// By port slot: the port's name, network and the network's name (`None` for a
    /// vacant slot).
    ports: Vec<Option<(String, DomainId, String)>>,
}

impl PastLayout {
    fn of(p: &Pipeline) -> PastLayout {
        let ports = p
            .ports()
            .iter()
            .map(|s| {
                let network = p.domain(s.domain)?;
                Some((s.name.clone(), s.domain, network.name.clone()))
            })
            .collect();
        PastLayout {
            generation: p.layout_generation(),
            ports,
        }
    }
}

impl WorkerEnd {
    /// Called before the worker's pipeline takes up a new layout: remembers who the
    /// ports of the current one are. Allocates (a change of layout is rare).
    #[cold]
    pub(super) fn leaving(&mut self, p: &Pipeline) {
        if self.past.len() == REMEMBERED_LAYOUTS {
            self.past.pop_back();
        }
        self.past.push_front(PastLayout::of(p));
    }

    /// True if a reply stamped `port`, `domain`, `generation` goes to the endpoint
    /// that asked (see the module's documentation).
    fn still(&self, p: &Pipeline, port: PortId, domain: DomainId, generation: u64) -> bool {
        let Some(now) = p.port(port) else {
            return false;
        };
        if now.domain != domain {
            return false;
        }
        if generation == p.layout_generation() {
            return true;
        }
        let Some(then) = self.past.iter().find(|l| l.generation == generation) else {
            return false;
        };
        let Some(Some((name, was_in, network))) = then.ports.get(port.index()) else {
            return false;
        };
        *name == now.name
            && *was_in == domain
            && p.domain(domain).is_some_and(|d| d.name == *network)
    }

    /// True if the service has sent something not yet taken.
    #[inline]
    pub(super) fn has_mail(&self) -> bool {
        !self.from_service.is_empty()
    }

    /// Takes a spare buffer back: kept, or sent on to the service if this worker
    /// has more than its share (kept after all if the service's queue is full).
    fn give_back(&mut self, f: Frame) {
        if self.spares.len() < WORKER_SPARES {
            self.spares.push(f);
            return;
        }
        if let Err(e) = self.to_service.try_send(ToService::Spare(f)) {
            let (TrySendError::Full(m) | TrySendError::Disconnected(m)) = e;
            if let ToService::Spare(f) = m {
                self.spares.push(f);
            }
        }
    }
}

impl Worker {
    /// Hands the frames of the batch's first `n` that the pipeline punted to the
    /// service, each swapped for a spare (whose verdict sends it nowhere).
    pub(super) fn hand_punted(&mut self, n: usize, now: Timestamp) {
        let generation = self.pipeline.layout_generation();
        for i in 0..n {
            if self.batch[i].action != Action::Punt {
                continue;
            }
            // The port the pipeline took the query as coming from (only a port of
            // the layout gets as far as a verdict of Punt): on a trunk, the port of
            // its VLAN, not the one whose device it was read from; the answer goes
            // back there, and the query is of that port's network.
            let port = self.batch[i].ingress;
            let domain = self
                .pipeline
                .port(port)
                .map_or(DomainId::NONE, |s| s.domain);
            if self.punt.spares.is_empty() {
                self.drain_service(now);
            }
            let p = port.index();
            let Some(mut spare) = self.punt.spares.pop() else {
                self.status[p].io.punt_dropped += 1;
                continue;
            };
            std::mem::swap(&mut self.batch[i], &mut spare);
            // The slot's new buffer holds nothing to send.
            self.batch[i].action = Action::Punt;
            let msg = ToService::Punt(Punted {
                frame: spare,
                worker: self.index,
                port,
                domain,
                generation,
            });
            let io = &mut self.status[p].io;
            match self.punt.to_service.try_send(msg) {
                Ok(()) => io.punted += 1,
                Err(e) => {
                    io.punt_dropped += 1;
                    let (TrySendError::Full(m) | TrySendError::Disconnected(m)) = e;
                    if let ToService::Punt(back) = m {
                        self.punt.spares.push(back.frame);
                    }
                }
            }
        }
    }

    /// Takes what the service sent: replies go out (if their port is still the
    /// asker's), spares join the pool. Cheap when there is nothing: one `try_recv`.
    pub(super) fn drain_service(&mut self, now: Timestamp) {
        while let Ok(msg) = self.punt.from_service.try_recv() {
            let mut frame = match msg {
                ToWorker::Spare(f) => f,
                ToWorker::Reply {
                    mut frame,
                    port,
                    domain,
                    generation,
                } => {
                    // A frame without its headroom would not take the port's
                    // virtio-net header: refused too, never a worker's panic.
                    let whole = frame.start() >= HEADROOM && !frame.is_empty();
                    let ok = whole && self.punt.still(&self.pipeline, port, domain, generation);
                    if ok {
                        frame.action = Action::Forward(port);
                        frame.ingress = PortId::LOCAL;
                        frame.vnet = Default::default();
                        frame.trace = 0;
                        // `frame.tunnel` is the service's: into an overlay network's
                        // tunnel, the VTEP the query came through.
                        transmit(
                            &self.pipeline,
                            &mut self.ports,
                            &mut self.status,
                            &mut self.observers.capture,
                            now,
                            &mut frame,
                        );
                    }
                    // Counted on the port's slot, if this worker has one.
                    if let Some(st) = self.status.get_mut(port.index()) {
                        if ok {
                            st.io.punt_replies += 1;
                        } else {
                            st.io.punt_stale += 1;
                        }
                    }
                    frame
                }
            };
            frame.reset(0);
            self.punt.give_back(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::pipeline::{DomainSpec, GatewaySpec, PortSpec, Spec};
    use switchyard_core::wire::MacAddr;

    const A: PortId = PortId(0);
    const B: PortId = PortId(1);
    const FRONT: DomainId = DomainId(0);
    const BACK: DomainId = DomainId(1);

    /// Networks `front` and `back` (whatever they are called here), a port in each.
    fn spec(front: &str, a: &str, b: &str) -> Spec {
        let net = |name: &str, n: u8| {
            let ip = std::net::Ipv4Addr::new(10, n, 0, 1);
            DomainSpec {
                name: name.into(),
                subnet: format!("10.{n}.0.0/24").parse().unwrap(),
                mtu: 1500,
                gateway: Some(GatewaySpec {
                    ip,
                    mac: MacAddr::from_ipv4(ip),
                }),
                dns: true,
                ..DomainSpec::vacant()
            }
        };
        Spec::new(
            vec![net(front, 1), net("back", 2)],
            vec![PortSpec::new(a, FRONT), PortSpec::new(b, BACK)],
        )
    }

    fn end() -> WorkerEnd {
        let (_, mut ends) = plumb(1);
        ends.pop().expect("one worker")
    }

    /// Takes up the layout of `s`, remembering the one before as a worker does.
    fn change(p: &mut Pipeline, end: &mut WorkerEnd, s: Spec) {
        let layout = p.reshape(s).expect("a valid spec");
        end.leaving(p);
        p.adopt(&layout);
    }

    #[test]
    fn a_reply_goes_to_the_port_that_asked_under_the_same_layout() {
        let p = Pipeline::new(spec("front", "a", "b")).unwrap();
        let end = end();
        let g = p.layout_generation();
        assert!(end.still(&p, A, FRONT, g));
        assert!(!end.still(&p, A, BACK, g), "not the asker's network");
        assert!(!end.still(&p, PortId(7), FRONT, g), "no such port");
    }

    #[test]
    fn after_a_change_only_the_same_endpoint_on_the_same_network_gets_it() {
        let mut p = Pipeline::new(spec("front", "a", "b")).unwrap();
        let mut end = end();
        let g = p.layout_generation();
        // b's number goes to another endpoint; a stays.
        change(&mut p, &mut end, spec("front", "a", "other"));
        assert!(end.still(&p, A, FRONT, g), "a is still a, on front");
        assert!(
            !end.still(&p, B, BACK, g),
            "another endpoint has b's number"
        );
        let g2 = p.layout_generation();
        // front is renamed under the same id: a query asked of the old one is stale.
        change(&mut p, &mut end, spec("renamed", "a", "other"));
        assert!(!end.still(&p, A, FRONT, g));
        assert!(!end.still(&p, A, FRONT, g2));
        assert!(end.still(&p, A, FRONT, p.layout_generation()));
        // a goes away.
        let mut gone = spec("renamed", "a", "other");
        gone.ports[0] = PortSpec::vacant();
        let g3 = p.layout_generation();
        change(&mut p, &mut end, gone);
        assert!(!end.still(&p, A, FRONT, g3));
        assert!(!end.still(&p, A, FRONT, u64::MAX), "a layout never run");
    }

    #[test]
    fn only_the_last_few_layouts_are_remembered() {
        let mut p = Pipeline::new(spec("front", "a", "b")).unwrap();
        let mut end = end();
        let g = p.layout_generation();
        for _ in 0..REMEMBERED_LAYOUTS {
            change(&mut p, &mut end, spec("front", "a", "b"));
        }
        assert!(
            end.still(&p, A, FRONT, g),
            "{REMEMBERED_LAYOUTS} changes ago"
        );
        change(&mut p, &mut end, spec("front", "a", "b"));
        assert!(!end.still(&p, A, FRONT, g), "forgotten: the reply is stale");
    }

    #[test]
    fn the_service_sends_without_waiting_and_wakes_whom_it_sent_to() {
        let mut polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|p| Arc::new(Waker::new(p.registry(), mio::Token(0)).unwrap()))
            .collect();
        let (side, ends) = plumb(2);
        let mut link = side.link(wakers);
        assert_eq!(link.workers(), 2);
        let pool = link.take_pool();
        assert_eq!(pool.len(), SERVICE_SPARES);
        assert!(link.take_pool().is_empty(), "the pool is taken once");
        assert!(
            link.send(2, ToWorker::Spare(Frame::new())).is_err(),
            "no worker 2"
        );
        // Every buffer there is fits in one worker's queue.
        let circulating = 2 * WORKER_SPARES + SERVICE_SPARES;
        for _ in 0..circulating {
            assert!(link.send(1, ToWorker::Spare(Frame::new())).is_ok());
        }
        assert!(link.send(1, ToWorker::Spare(Frame::new())).is_err(), "full");
        link.wake();
        let mut events = mio::Events::with_capacity(4);
        polls[1]
            .poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        assert_eq!(events.iter().count(), 1, "worker 1 was woken");
        polls[0]
            .poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        assert_eq!(events.iter().count(), 0, "worker 0 was sent nothing");
        assert!(ends[1].has_mail());
        assert!(!ends[0].has_mail());
    }

    #[test]
    fn the_services_queue_disconnects_when_the_workers_stop() {
        let p = Pipeline::new(Spec::new(Vec::new(), Vec::new())).unwrap();
        let queues = vec![Vec::new(), Vec::new()];
        let mut running = super::super::Dataplane::new(p, queues, Default::default())
            .spawn()
            .unwrap();
        let link = running.take_service_link().expect("once");
        assert!(running.take_service_link().is_none());
        assert_eq!(link.workers(), 2);
        running.stop().unwrap();
        assert!(matches!(
            link.receiver()
                .recv_timeout(std::time::Duration::from_secs(5)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ));
        assert!(
            link.send(0, ToWorker::Spare(Frame::new())).is_err(),
            "no worker left"
        );
    }
}
