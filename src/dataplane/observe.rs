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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use switchyard_core::pipeline::{FrameTrace, PortId};

/// The worker's end of a bounded, lossy channel to one reader.
pub struct Feed<T> {
    tx: Sender<T>,
    skipped: Arc<AtomicU64>,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Feed {
            tx: self.tx.clone(),
            skipped: self.skipped.clone(),
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
        // A sender cannot ask directly; an empty, disconnected channel is what a
        // zero-capacity probe would report, so compare receiver counts instead.
        self.tx.receiver_count() == 0
    }
}

/// The reader's end of a [`Feed`]. Dropping it closes the feed.
pub struct Tap<T> {
    rx: Receiver<T>,
    skipped: Arc<AtomicU64>,
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
    (
        Feed {
            tx,
            skipped: skipped.clone(),
        },
        Tap { rx, skipped },
    )
}

/// A live trace as the workers share it: how many frames are still to be selected
/// over all workers, and where finished traces go.
pub struct TraceSession {
    /// Frames still to select, over all workers together.
    pub budget: Arc<AtomicU32>,
    /// Only frames received on these ports (empty: every port).
    pub ports: Vec<PortId>,
    pub feed: Feed<FrameTrace>,
}

impl TraceSession {
    /// Takes one frame from the shared budget; false once it is spent.
    pub fn claim(&self) -> bool {
        self.budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What one worker reports to, and to whom. Changed between batches by
/// [`Handle::observe`](super::Handle::observe).
#[derive(Default)]
pub struct Observers {
    /// The live trace being taken, if any (one at a time per instance; a new one
    /// replaces the old).
    pub trace: Option<Arc<TraceSession>>,
}

impl Observers {
    /// True if nobody watches this worker.
    pub fn idle(&self) -> bool {
        self.trace.is_none()
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
            budget: Arc::new(AtomicU32::new(2)),
            ports: Vec::new(),
            feed,
        };
        assert!(s.claim());
        assert!(s.claim());
        assert!(!s.claim());
        assert_eq!(s.budget.load(Ordering::Relaxed), 0);
    }
}
