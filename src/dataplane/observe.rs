//! Watching the workers from outside: what a live trace, a capture or an event stream
//! reads while the dataplane switches.
//!
//! A worker must never wait for a reader. Everything it reports goes through a
//! [`Feed`]: a bounded channel that the worker *offers* an item to and that refuses it
//! when full. A refused item is counted as skipped, so the reader can say how much it
//! missed (as tcpdump reports "packets dropped by kernel"), and the worker carries on
//! at the same speed. The reader holds the other end, a [`Tap`]; when it goes away
//! (its client hung up), the next offer finds the feed closed and the worker forgets
//! it.
//!
//! What a worker reports to is its [`Observers`], changed between batches through
//! [`Handle::observe`](super::Handle::observe). With nobody watching, each kind of
//! report costs the worker one branch per batch (an empty list, or a tracer with
//! nothing to select).

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use switchyard_core::pipeline::{FrameTrace, PortId, TableEvent};

/// The worker's end of a bounded, lossy channel to one reader.
pub struct Feed<T> {
    tx: Sender<T>,
    skipped: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Feed {
            tx: self.tx.clone(),
            skipped: self.skipped.clone(),
            closed: self.closed.clone(),
        }
    }
}

/// What became of an offered item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The reader will get it.
    Sent,
    /// The channel was full: the item is gone and counted as skipped.
    Skipped,
    /// The reader is gone: drop the feed.
    Closed,
}

impl<T> Feed<T> {
    /// Hands `item` to the reader if there is room; never blocks.
    #[inline]
    pub fn offer(&self, item: T) -> Offer {
        match self.tx.try_send(item) {
            Ok(()) => Offer::Sent,
            Err(TrySendError::Full(_)) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                Offer::Skipped
            }
            Err(TrySendError::Disconnected(_)) => Offer::Closed,
        }
    }

    /// Counts `n` items skipped before they were even offered (a worker that had no
    /// buffer to copy them into).
    pub fn skip(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }

    /// True once the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The reader's end of a [`Feed`]. Dropping it closes the feed.
pub struct Tap<T> {
    rx: Receiver<T>,
    skipped: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

impl<T> Drop for Tap<T> {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl<T> Tap<T> {
    /// The next item, if one is waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Items refused so far because the channel was full.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// A bounded, lossy channel of `capacity` items from workers to one reader.
pub fn feed<T>(capacity: usize) -> (Feed<T>, Tap<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let skipped = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    (
        Feed {
            tx,
            skipped: skipped.clone(),
            closed: closed.clone(),
        },
        Tap {
            rx,
            skipped,
            closed,
        },
    )
}

/// A live trace as the workers share it: how many frames are still to be selected
/// over all workers, and where finished traces go.
pub struct TraceSession {
    /// Frames asked for.
    pub count: u32,
    /// Frames still to select, over all workers together.
    pub budget: Arc<AtomicU32>,
    /// Only frames received on these ports (empty: every port).
    pub ports: Vec<PortId>,
    pub feed: Feed<FrameTrace>,
}

impl TraceSession {
    /// Frames still to select.
    pub fn budget_left(&self) -> u32 {
        self.budget.load(Ordering::Acquire)
    }

    /// Takes one frame from the shared budget: its number in the trace (from 1, in
    /// the order workers finished them), or `None` once the budget is spent.
    pub fn claim(&self) -> Option<u32> {
        self.budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|left| self.count - left + 1)
    }
}

/// A worker's map from its tracer's packet numbers to the live trace's, for the
/// second part of a held packet's trace (it comes later, under the first's number).
#[derive(Default)]
pub struct TraceNumbers {
    map: std::collections::VecDeque<(u32, u32)>,
}

impl TraceNumbers {
    const KEEP: usize = 64;

    pub fn insert(&mut self, local: u32, global: u32) {
        if self.map.len() == Self::KEEP {
            self.map.pop_front();
        }
        self.map.push_back((local, global));
    }

    pub fn get(&self, local: u32) -> Option<u32> {
        self.map.iter().find(|&&(l, _)| l == local).map(|&(_, g)| g)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// What one worker reports to, and to whom. Changed between batches by
/// [`Handle::observe`](super::Handle::observe).
#[derive(Default)]
pub struct Observers {
    /// The live trace being taken, if any (one at a time per instance; a new one
    /// replaces the old).
    pub trace: Option<Arc<TraceSession>>,
    /// This worker's packet numbers in the live trace.
    pub trace_numbers: TraceNumbers,
    /// Event streams: every table change the worker makes goes to each (while there
    /// is one, the worker's pipeline keeps its table events).
    pub events: Vec<Feed<TableEvent>>,
    /// Running captures (`switchyard capture`), each of some ports.
    pub capture: Vec<super::capture::CaptureFeed>,
}

impl Observers {
    /// True if nobody watches this worker.
    pub fn idle(&self) -> bool {
        self.trace.is_none() && self.events.is_empty() && self.capture.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_feed_skips_and_counts_and_a_dropped_tap_closes_it() {
        let (feed, tap) = feed::<u32>(2);
        assert_eq!(feed.offer(1), Offer::Sent);
        assert_eq!(feed.offer(2), Offer::Sent);
        assert_eq!(feed.offer(3), Offer::Skipped);
        feed.skip(2);
        assert_eq!(tap.skipped(), 3);
        assert_eq!(tap.try_recv(), Some(1));
        assert_eq!(feed.offer(4), Offer::Sent);
        assert!(!feed.is_closed());
        drop(tap);
        assert!(feed.is_closed());
        assert_eq!(feed.offer(5), Offer::Closed);
    }

    #[test]
    fn the_trace_budget_is_shared_and_never_overdrawn() {
        let (feed, _tap) = feed(8);
        let s = TraceSession {
            count: 2,
            budget: Arc::new(AtomicU32::new(2)),
            ports: Vec::new(),
            feed,
        };
        assert_eq!(s.claim(), Some(1));
        assert_eq!(s.claim(), Some(2));
        assert_eq!(s.claim(), None);
        assert_eq!(s.budget.load(Ordering::Relaxed), 0);
    }
}
