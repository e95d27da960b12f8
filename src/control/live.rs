//! Live answers: requests answered by lines sent as things happen in the dataplane
//! rather than by one reply. Each is a [`Live`] stream the server pulls from; its
//! source is a [`Tap`] the workers feed without ever waiting (see
//! [`observe`](crate::dataplane::observe)).
//!
//! * `trace`: a `trace_start` line once every worker traces, then the next N frames
//!   received on some ports, each traced through every stage with its verdict
//!   ([`FrameTrace`]), then a `trace_end` line.
//! * `events`: every change in the tables as it happens ([`TableEvent`]), for as
//!   long as the client reads (`docs/events.md`).
//! * `capture`: every frame crossing some ports, both ways, copied whole (see
//!   [`mod@capture`]), in `capture_packets` lines with a
//!   `capture_status` line every [`CAPTURE_STATUS_EVERY`]; with a count, a
//!   `capture_end` line after that many packets.

use super::events::{event_row, rfc3339, Names};
use super::protocol::{
    CaptureDirection, CaptureRequest, CaptureStarted, CaptureStatus, CapturedPacket, ErrorCode,
    ErrorReply, EventRow, Reply, Response, TraceEnd, TraceStart, MAX_TRACE_FRAMES,
};
use super::server::{live_line, Answer, Live, Pull};
use crate::dataplane::capture::{self, CaptureTap, Direction, Pool, MAX_CAPTURE_BYTES};
use crate::dataplane::observe::{self, Tap, TraceSession};
use crate::dataplane::{self, Applied, Claim};
use base64::Engine as _;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::{FrameTrace, Layout, PortId, TableEvent};

/// Finished traces a worker may have waiting for a slow reader before it skips.
const TRACE_QUEUE: usize = 256;

/// Starts a live trace of the next `count` frames received on `ports` (all if none).
pub fn trace(
    dp: &dataplane::Handle,
    ports: &[String],
    count: u32,
) -> Result<Answer, dataplane::NotRunning> {
    let refuse = |code, msg: String| Ok(Answer::Whole(Response::error(ErrorReply::new(code, msg))));
    if count == 0 || count > MAX_TRACE_FRAMES {
        return refuse(
            ErrorCode::BadRequest,
            format!("count must be from 1 to {MAX_TRACE_FRAMES}, not {count}"),
        );
    }
    let ids = match port_ids(dp, ports)? {
        Ok(ids) => ids,
        Err(msg) => return refuse(ErrorCode::UnknownPort, msg),
    };
    let Some(claim) = dp.claim_trace() else {
        return refuse(
            ErrorCode::InUse,
            "another client is tracing this instance (one live trace at a time); \
             try again when it ends"
                .into(),
        );
    };
    let (feed, tap) = observe::feed(TRACE_QUEUE.min(count as usize));
    let session = Arc::new(TraceSession {
        count,
        budget: Arc::new(AtomicU32::new(count)),
        ports: ids,
        feed,
    });
    let s = session.clone();
    let armed = dp.observe(move |obs, pipeline, _| {
        pipeline.tracer().start(s.budget_left(), &s.ports);
        obs.trace = Some(s.clone());
        obs.trace_numbers.clear();
    })?;
    Ok(Answer::Live(Box::new(TraceLive {
        dp: dp.clone(),
        session,
        tap,
        armed,
        started: Some(TraceStart {
            count,
            ports: ports.to_vec(),
        }),
        want: count,
        got: 0,
        ended: false,
        _claim: claim,
    })))
}

/// Maps port names to the pipeline's ids; the error names the unknown one and lists
/// those there are.
pub fn port_ids(
    dp: &dataplane::Handle,
    names: &[String],
) -> Result<Result<Vec<PortId>, String>, dataplane::NotRunning> {
    dp.tables(|v| {
        let mut ids = Vec::with_capacity(names.len());
        for n in names {
            match v.pipeline.port_by_name(n) {
                Some(id) => ids.push(id),
                None => {
                    let known: Vec<&str> =
                        // Vacant slots (ports removed at runtime) have no name.
                        v.pipeline.ports().iter().filter(|p| !p.is_vacant()).map(|p| p.name.as_str()).collect();
                    return Err(format!(
                        "no port {n:?}; the ports are: {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(ids)
    })
}

/// A live trace as the server pulls it.
struct TraceLive {
    dp: dataplane::Handle,
    session: Arc<TraceSession>,
    tap: Tap<FrameTrace>,
    /// Whether every worker traces for this trace yet.
    armed: Applied,
    /// The `trace_start` line, until it is sent (then `None` with `armed` complete).
    started: Option<TraceStart>,
    want: u32,
    got: u32,
    ended: bool,
    _claim: Claim,
}

impl Live for TraceLive {
    fn pull(&mut self) -> Pull {
        if self.ended {
            return Pull::End;
        }
        if !self.armed.everywhere() {
            return Pull::Pending;
        }
        if let Some(start) = self.started.take() {
            // Every worker traces now: a frame sent from here on is caught.
            return Pull::Line(live_line(Reply::TraceStart(start)));
        }
        if self.got < self.want {
            if let Some(t) = self.tap.try_recv() {
                // The second part of a held packet's trace is not another frame.
                if !t.continued {
                    self.got += 1;
                }
                return Pull::Line(live_line(Reply::Trace(t)));
            }
            // A frame the workers traced but could not hand over (this reader was
            // slow) is skipped, and counts towards the total: the trace ends once
            // every frame of the budget was either sent or skipped.
            if u64::from(self.got) + self.tap.skipped() < u64::from(self.want) {
                return Pull::Pending;
            }
        }
        self.ended = true;
        Pull::Line(live_line(Reply::TraceEnd(TraceEnd {
            frames: self.got,
            skipped: self.tap.skipped(),
        })))
    }
}

impl Drop for TraceLive {
    fn drop(&mut self) {
        // Stop the workers' tracers if this trace still holds them (it ended early:
        // the client hung up).
        let s = self.session.clone();
        let _ = self.dp.observe(move |obs, pipeline, _| {
            if obs.trace.as_ref().is_some_and(|t| Arc::ptr_eq(t, &s)) {
                obs.trace = None;
                pipeline.tracer().stop();
                while pipeline.tracer().next_frame().is_some() {}
            }
        });
    }
}

/// Table events a worker keeps between two hand-overs to the streams (it hands
/// them over after every batch and timer tick); more are skipped and counted.
const WORKER_EVENTS: usize = 1024;

/// Events waiting for one stream's reader, over all workers, before more are
/// skipped and counted.
const EVENT_QUEUE: usize = 4096;

/// Event streams an instance serves at once (each holds an [`EVENT_QUEUE`]).
pub const MAX_EVENT_STREAMS: usize = 8;

/// Starts a stream of table events.
pub fn events(dp: &dataplane::Handle) -> Result<Answer, dataplane::NotRunning> {
    let Some(claim) = dp.claim_event_stream(MAX_EVENT_STREAMS) else {
        return Ok(Answer::Whole(Response::error(ErrorReply::new(
            ErrorCode::InUse,
            format!(
                "{MAX_EVENT_STREAMS} event streams are open on this instance, the most it \
                 serves at once; try again when one ends"
            ),
        ))));
    };
    let (names, layout) = dp.tables(|v| (Names::of(v.pipeline), v.pipeline.layout()))?;
    let (feed, tap) = observe::feed(EVENT_QUEUE);
    let installed = dp.observe(move |obs, pipeline, _| {
        obs.events.push(feed.clone());
        if !pipeline.events().is_on() {
            pipeline.events().start(WORKER_EVENTS);
        }
    })?;
    Ok(Answer::Live(Box::new(EventsLive {
        dp: dp.clone(),
        names,
        layout,
        tap,
        installed,
        listening: false,
        skipped: 0,
        _claim: claim,
    })))
}

/// An event stream as the server pulls it.
struct EventsLive {
    dp: dataplane::Handle,
    names: Names,
    /// The layout `names` were copied from: when the instance changes (networks and
    /// endpoints come and go), they are copied again.
    layout: Layout,
    tap: Tap<TableEvent>,
    /// Whether every worker reports to this stream yet.
    installed: Applied,
    /// The `listening` line was sent.
    listening: bool,
    /// Skipped events already reported.
    skipped: u64,
    _claim: Claim,
}

impl Live for EventsLive {
    fn pull(&mut self) -> Pull {
        let line = |row| Pull::Line(live_line(Reply::Event(Box::new(row))));
        let now = || {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            rfc3339(t.as_nanos() as u64)
        };
        if !self.listening {
            // Once every worker reports, nothing that happens later is missed.
            if !self.installed.everywhere() {
                return Pull::Pending;
            }
            self.listening = true;
            return line(EventRow::new(now(), "listening"));
        }
        let skipped = self.tap.skipped();
        if skipped > self.skipped {
            let mut row = EventRow::new(now(), "skipped");
            row.skipped = Some(skipped - self.skipped);
            self.skipped = skipped;
            return line(row);
        }
        match self.tap.try_recv() {
            Some(e) => {
                self.refresh_names();
                line(event_row(&e, &self.names, |t| self.dp.wall_ns(t)))
            }
            None => Pull::Pending,
        }
    }
}

impl EventsLive {
    /// Copies the names again if the instance's layout changed since they were.
    fn refresh_names(&mut self) {
        let fresh = self.dp.tables(|v| {
            let now = v.pipeline.layout();
            (!now.same(&self.layout)).then(|| (Names::of(v.pipeline), now))
        });
        if let Ok(Some((names, layout))) = fresh {
            self.names = names;
            self.layout = layout;
        }
    }
}

/// Captures one instance runs at once; each may hold [`MAX_CAPTURE_BYTES`] of
/// buffers, so together they hold at most 32 MiB.
pub const MAX_CAPTURES: usize = 8;
/// How often a capture sends a status line (the frames skipped so far), packets
/// flowing or not; also how soon a client learns that nothing happens.
pub const CAPTURE_STATUS_EVERY: Duration = Duration::from_millis(500);
/// Most packets in one `capture_packets` line.
const LINE_PACKETS: usize = 64;
/// Most frame bytes in one `capture_packets` line (before base64): a line stays a
/// few hundred KiB even with super-frames.
const LINE_BYTES: usize = 256 * 1024;

/// Starts a capture of `req.ports`.
pub fn capture(
    dp: &dataplane::Handle,
    req: &CaptureRequest,
) -> Result<Answer, dataplane::NotRunning> {
    let refuse = |code, msg: String| Ok(Answer::Whole(Response::error(ErrorReply::new(code, msg))));
    if req.ports.is_empty() {
        return refuse(
            ErrorCode::BadRequest,
            "name at least one port to capture".into(),
        );
    }
    if req.count == Some(0) {
        return refuse(ErrorCode::BadRequest, "count must be at least 1".into());
    }
    // A port named twice is one interface of the capture.
    let mut names: Vec<String> = Vec::with_capacity(req.ports.len());
    for n in &req.ports {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let ids = match port_ids(dp, &names)? {
        Ok(ids) => ids,
        Err(msg) => return refuse(ErrorCode::UnknownPort, msg),
    };
    let Some(slot) = dp.claim_capture(MAX_CAPTURES) else {
        return refuse(
            ErrorCode::InUse,
            format!(
                "{MAX_CAPTURES} captures are running on this instance, the most at once; \
                 try again when one ends"
            ),
        );
    };
    let port_count = dp.tables(|v| v.pipeline.ports().len())?;
    let pool = Pool::new();
    let (feed, tap) = capture::capture(&ids, port_count, req.drops, pool);
    let installed = dp.observe(move |obs, _, _| obs.capture.push(feed.clone()))?;
    // Where each captured port is in the list the client gets.
    let mut index = vec![usize::MAX; port_count];
    for (i, id) in ids.iter().enumerate() {
        index[id.index()] = i;
    }
    Ok(Answer::Live(Box::new(CaptureLive {
        dp: dp.clone(),
        tap: Some(tap),
        names,
        index,
        count: req.count,
        packets: 0,
        started: false,
        ended: false,
        last_status: Instant::now(),
        installed,
        _slot: slot,
    })))
}

/// A capture as the server pulls it.
struct CaptureLive {
    dp: dataplane::Handle,
    /// Taken when the capture is dropped, to close it before the workers are told.
    tap: Option<CaptureTap>,
    names: Vec<String>,
    /// By pipeline port: its place in `names`.
    index: Vec<usize>,
    count: Option<u64>,
    packets: u64,
    started: bool,
    ended: bool,
    last_status: Instant,
    /// Whether every worker captures for this capture yet.
    installed: Applied,
    _slot: Claim,
}

impl CaptureLive {
    fn status(&self, tap: &CaptureTap) -> CaptureStatus {
        CaptureStatus {
            packets: self.packets,
            skipped: tap.skipped(),
        }
    }
}

impl Live for CaptureLive {
    fn pull(&mut self) -> Pull {
        let Some(tap) = self.tap.as_ref() else {
            return Pull::End;
        };
        if self.ended {
            return Pull::End;
        }
        if !self.started {
            // Once every worker captures, no frame crossing the ports is missed.
            if !self.installed.everywhere() {
                return Pull::Pending;
            }
            self.started = true;
            return Pull::Line(live_line(Reply::CaptureStarted(CaptureStarted {
                ports: self.names.clone(),
                buffers: tap.pool.capacity(),
                buffer_bytes: MAX_CAPTURE_BYTES,
            })));
        }
        let left = self.count.map_or(u64::MAX, |c| c - self.packets);
        if left == 0 {
            self.ended = true;
            return Pull::Line(live_line(Reply::CaptureEnd(self.status(tap))));
        }
        if self.last_status.elapsed() >= CAPTURE_STATUS_EVERY {
            self.last_status = Instant::now();
            return Pull::Line(live_line(Reply::CaptureStatus(self.status(tap))));
        }
        let mut packets = Vec::new();
        let mut bytes = 0;
        while packets.len() < LINE_PACKETS && (packets.len() as u64) < left && bytes < LINE_BYTES {
            let Some(c) = tap.frames.try_recv() else {
                break;
            };
            bytes += c.data.len();
            let (drop, reason) = c
                .drop
                .map(|r| (r.id().to_string(), r.text().to_string()))
                .unzip();
            packets.push(CapturedPacket {
                port: self.index.get(c.port.index()).copied().unwrap_or(0),
                direction: match c.direction {
                    Direction::In => CaptureDirection::In,
                    Direction::Out => CaptureDirection::Out,
                },
                time_ns: self.dp.wall_ns(c.time),
                len: c.data.len() as u32,
                data: base64::engine::general_purpose::STANDARD.encode(&c.data),
                drop,
                reason,
            });
            // The bytes are in the line now: the buffer goes back for the next frame.
            tap.pool.put(c.data);
        }
        if packets.is_empty() {
            return Pull::Pending;
        }
        self.packets += packets.len() as u64;
        Pull::Line(live_line(Reply::CapturePackets(packets)))
    }
}

impl Drop for CaptureLive {
    fn drop(&mut self) {
        // Closing the tap closes the feed; then every worker forgets it, even one
        // whose captured ports see no traffic (and so would never find out).
        drop(self.tap.take());
        let _ = self
            .dp
            .observe(|obs, _, _| obs.capture.retain(|c| !c.is_closed()));
    }
}
