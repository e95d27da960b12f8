//! Packet tracing: each stage explains, in one sentence, what it did to a traced
//! packet and why.
//!
//! Tracing is chosen per packet when it enters (the next *n* packets, optionally only
//! those from one port, like VPP's `trace add`). A traced frame carries a non-zero
//! packet number; a stage checks that number — one branch when tracing is off — and,
//! if set, appends a line. Lines are kept in a bounded buffer until read.

use super::PortId;
use std::collections::VecDeque;

/// One sentence from one stage about one packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TraceRecord {
    /// Packet number, starting at 1, in the order packets were selected.
    pub packet: u32,
    pub stage: &'static str,
    pub text: String,
}

impl std::fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.text)
    }
}

/// Which packets to trace and what they said.
#[derive(Debug)]
pub struct Tracer {
    remaining: u32,
    filter: Option<PortId>,
    next_packet: u32,
    records: VecDeque<TraceRecord>,
    max_records: usize,
}

impl Tracer {
    /// Keeps at most this many lines unread; older ones are dropped first.
    pub const DEFAULT_MAX_RECORDS: usize = 10_000;

    pub fn new() -> Tracer {
        Tracer {
            remaining: 0,
            filter: None,
            next_packet: 1,
            records: VecDeque::new(),
            max_records: Self::DEFAULT_MAX_RECORDS,
        }
    }

    /// Traces the next `count` packets that enter, only from `port` if given.
    pub fn start(&mut self, count: u32, port: Option<PortId>) {
        self.remaining = count;
        self.filter = port;
    }

    /// Stops selecting new packets.
    pub fn stop(&mut self) {
        self.remaining = 0;
    }

    /// Decides whether a packet entering at `port` is traced; returns its number or 0.
    #[inline]
    pub fn select(&mut self, port: PortId) -> u32 {
        if self.remaining == 0 {
            return 0;
        }
        self.select_slow(port)
    }

    #[cold]
    fn select_slow(&mut self, port: PortId) -> u32 {
        if self.filter.is_some_and(|p| p != port) {
            return 0;
        }
        self.remaining -= 1;
        let n = self.next_packet;
        self.next_packet = self.next_packet.wrapping_add(1).max(1);
        n
    }

    /// Appends a line for `packet` from `stage`.
    #[cold]
    pub fn add(&mut self, packet: u32, stage: &'static str, text: String) {
        if self.records.len() == self.max_records {
            self.records.pop_front();
        }
        self.records.push_back(TraceRecord {
            packet,
            stage,
            text,
        });
    }

    /// Takes every line recorded so far.
    pub fn drain(&mut self) -> Vec<TraceRecord> {
        self.records.drain(..).collect()
    }

    /// Lines recorded and not yet taken.
    pub fn pending(&self) -> usize {
        self.records.len()
    }
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer::new()
    }
}

/// What one stage says about one packet: a value that prints as the sentence and
/// knows which stage says it. Every stage declares its own, an enum `Trace` with a
/// `Display` impl — the trace record and format function of a VPP node.
pub(crate) trait TraceLine: std::fmt::Display {
    fn stage(&self) -> &'static str;
}

/// The stage and text of a line, made only for traced packets.
#[cold]
pub(crate) fn render(line: impl TraceLine) -> (&'static str, String) {
    (line.stage(), line.to_string())
}

/// Appends `$line` (a [`TraceLine`]) for `$frame` if it is traced:
/// `trace!(self, f, Trace::Learned { .. })`. The line is only made and formatted (which
/// allocates) for traced frames — one branch otherwise — and before the tracer is
/// borrowed, so it may borrow from the pipeline.
macro_rules! trace {
    ($pl:expr, $frame:expr, $line:expr) => {
        if $frame.trace != 0 {
            let (stage, text) = $crate::pipeline::trace::render($line);
            $pl.tracer.add($frame.trace, stage, text);
        }
    };
}
pub(crate) use trace;
