//! Table events: what changed in the switch's tables, as it happens — the stream
//! `switchyard events` prints, like `conntrack -E`, `bridge monitor fdb` and
//! `ip monitor neigh` do for the kernel's tables.
//!
//! An event is made where its change happens, on whichever worker makes it: a MAC
//! learned or moved in `l2-learn`, aged in `l2-age`; a neighbor's state changed in
//! `arp-input`, `ip4-neighbor` or the timer; a connection started in `ct-lookup` or
//! `nat-snat`, assured by a packet, destroyed by the timer, a lookup that found it
//! expired, or another flow's need for room. Each worker keeps its own bounded
//! [`EventLog`], which the dataplane drains after every batch and tick.
//!
//! Nobody listening is the usual case, and then events cost one predictable branch
//! at each change (the log is off), build nothing and allocate nothing. A table
//! method that changes entries on its own (aging, garbage collection, eviction to
//! make room) tells its caller what it did through a [`Report`], which is off unless
//! the caller's log is on. With a listener the log is bounded: an event that finds
//! it full is not kept, only counted ([`EventLog::skipped`]).

use super::conntrack::Conn;
use super::neighbor::NeighborState;
use super::{DomainId, PortId, Timestamp};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// Where a table method reports the changes it makes on its own: to a caller's
/// closure, or nowhere. Off, reporting is one branch and builds nothing.
pub struct Report<'a, T>(Option<&'a mut (dyn FnMut(T) + 'a)>);

impl<'a, T> Report<'a, T> {
    /// Reports go nowhere.
    pub fn off() -> Report<'a, T> {
        Report(None)
    }

    /// Reports go to `f`.
    pub fn to(f: &'a mut (dyn FnMut(T) + 'a)) -> Report<'a, T> {
        Report(Some(f))
    }

    /// Reports `make()`, built only when someone listens.
    #[inline]
    pub fn emit(&mut self, make: impl FnOnce() -> T) {
        if let Some(f) = self.0.as_mut() {
            f(make())
        }
    }

    /// The same destination, for a nested call.
    #[inline]
    pub fn reborrow(&mut self) -> Report<'_, T> {
        Report(self.0.as_mut().map(|f| &mut **f as &mut dyn FnMut(T)))
    }
}

/// Why a MAC was not learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacRefusal {
    /// The FDB is full (`fdb_max`).
    TableFull,
    /// The network's share of the FDB is full.
    NetworkFull,
    /// The MAC is bound to another port (an endpoint's own MAC): not moved.
    Pinned { owner: PortId },
}

/// Where a neighbor entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborTo {
    /// To this state (or the same state with a new MAC).
    State(NeighborState),
    /// Gone: no answer to the last ARP request of a resolution or probe (the
    /// kernel's FAILED); packets waiting for it got ICMP host unreachable.
    Failed,
    /// Gone: evicted to make room for another address (waiting packets dropped).
    Evicted,
    /// Gone: STALE and unused for `stale_ms` (the kernel's `gc_stale_time`).
    Expired,
    /// Gone: the network's entries were flushed.
    Flushed,
}

/// A change of a neighbor entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborChange {
    pub domain: DomainId,
    pub ip: Ipv4Addr,
    /// The entry's MAC (zero while INCOMPLETE).
    pub mac: MacAddr,
    /// The state before (`None`: a new entry).
    pub from: Option<NeighborState>,
    pub to: NeighborTo,
}

/// Why a connection's entry was destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestroyReason {
    /// Its timeout passed without traffic.
    Timeout,
    /// Its timeout passed after a TCP RST (state CLOSE).
    Reset,
    /// Its timeout passed after the TCP close handshake (state TIME_WAIT).
    Closed,
    /// Evicted early to make room for a new flow (not assured; netfilter's
    /// `early_drop`).
    Evicted,
}

impl DestroyReason {
    /// Why an entry whose time ran out in `c`'s state went.
    pub fn expired(c: &Conn) -> DestroyReason {
        use super::conntrack::{ProtoState, TcpState};
        match c.state {
            ProtoState::Tcp(TcpState::Close) => DestroyReason::Reset,
            ProtoState::Tcp(TcpState::TimeWait) => DestroyReason::Closed,
            _ => DestroyReason::Timeout,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            DestroyReason::Timeout => "timeout",
            DestroyReason::Reset => "reset",
            DestroyReason::Closed => "closed",
            DestroyReason::Evicted => "evicted",
        }
    }
}

/// What conntrack reports of the changes it makes on its own.
#[derive(Debug, Clone, Copy)]
pub enum ConnChange {
    /// A packet made the flow assured.
    Assured(Conn),
    /// The entry is gone.
    Destroyed(Conn, DestroyReason),
}

impl From<ConnChange> for TableChange {
    fn from(c: ConnChange) -> TableChange {
        match c {
            ConnChange::Assured(c) => TableChange::ConnAssured(c),
            ConnChange::Destroyed(c, why) => TableChange::ConnDestroyed(c, why),
        }
    }
}

/// One change in the switch's tables.
#[derive(Debug, Clone, Copy)]
pub enum TableChange {
    /// A new MAC in the FDB.
    MacLearned {
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
    },
    /// A known MAC seen on another port.
    MacMoved {
        domain: DomainId,
        mac: MacAddr,
        from: PortId,
        to: PortId,
    },
    /// A MAC not seen for the aging time, forgotten.
    MacAged {
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
    },
    /// A MAC seen as a source on `port` that was not learned (or not moved there).
    MacRefused {
        domain: DomainId,
        mac: MacAddr,
        port: PortId,
        why: MacRefusal,
    },
    Neighbor(NeighborChange),
    /// A new tracked connection.
    ConnNew(Conn),
    /// A connection saw traffic both ways (and, for TCP, finished its handshake).
    ConnAssured(Conn),
    ConnDestroyed(Conn, DestroyReason),
    /// A port's device went away under switchyard.
    PortDown {
        port: PortId,
    },
}

/// The kinds of event, for counting them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    MacLearned,
    MacMoved,
    MacAged,
    MacRefused,
    Neighbor,
    ConnNew,
    ConnAssured,
    ConnDestroyed,
    PortDown,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::MacLearned,
        EventKind::MacMoved,
        EventKind::MacAged,
        EventKind::MacRefused,
        EventKind::Neighbor,
        EventKind::ConnNew,
        EventKind::ConnAssured,
        EventKind::ConnDestroyed,
        EventKind::PortDown,
    ];

    /// The kind's name in the stream and in metrics.
    pub fn id(self) -> &'static str {
        match self {
            EventKind::MacLearned => "mac_learned",
            EventKind::MacMoved => "mac_moved",
            EventKind::MacAged => "mac_aged",
            EventKind::MacRefused => "mac_refused",
            EventKind::Neighbor => "neighbor",
            EventKind::ConnNew => "conntrack_new",
            EventKind::ConnAssured => "conntrack_assured",
            EventKind::ConnDestroyed => "conntrack_destroyed",
            EventKind::PortDown => "port_down",
        }
    }
}

impl TableChange {
    pub fn kind(&self) -> EventKind {
        match self {
            TableChange::MacLearned { .. } => EventKind::MacLearned,
            TableChange::MacMoved { .. } => EventKind::MacMoved,
            TableChange::MacAged { .. } => EventKind::MacAged,
            TableChange::MacRefused { .. } => EventKind::MacRefused,
            TableChange::Neighbor(_) => EventKind::Neighbor,
            TableChange::ConnNew(_) => EventKind::ConnNew,
            TableChange::ConnAssured(_) => EventKind::ConnAssured,
            TableChange::ConnDestroyed(..) => EventKind::ConnDestroyed,
            TableChange::PortDown { .. } => EventKind::PortDown,
        }
    }
}

/// A change and when it happened (the pipeline clock of its batch or tick).
#[derive(Debug, Clone, Copy)]
pub struct TableEvent {
    pub at: Timestamp,
    pub change: TableChange,
}

/// A worker's events since the dataplane last drained them: off (the usual case:
/// nothing kept, nothing allocated) or on with room for a fixed number.
#[derive(Debug, Default)]
pub struct EventLog {
    on: bool,
    events: Vec<TableEvent>,
    /// Events that found the log full, since the last drain.
    skipped: u64,
    /// Events kept since the log was made, by kind.
    counts: [u64; EventKind::ALL.len()],
    /// Events skipped since the log was made.
    skipped_total: u64,
}

impl EventLog {
    /// True while events are kept.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Starts keeping events, at most `capacity` between drains (reserved now).
    pub fn start(&mut self, capacity: usize) {
        self.events = Vec::with_capacity(capacity.max(1));
        self.skipped = 0;
        self.on = true;
    }

    /// Stops keeping events and frees the room.
    pub fn stop(&mut self) {
        self.on = false;
        self.events = Vec::new();
        self.skipped = 0;
    }

    /// Keeps an event, or counts it skipped if the log is full. Callers check
    /// [`EventLog::is_on`] before building one.
    #[inline]
    pub fn push(&mut self, at: Timestamp, change: TableChange) {
        if !self.on {
            return;
        }
        if self.events.len() == self.events.capacity() {
            self.skipped += 1;
            self.skipped_total += 1;
            return;
        }
        self.counts[change.kind() as usize] += 1;
        self.events.push(TableEvent { at, change });
    }

    /// Hands every kept event to `f`, oldest first, and returns how many were
    /// skipped since the last drain.
    pub fn drain(&mut self, mut f: impl FnMut(TableEvent)) -> u64 {
        for e in self.events.drain(..) {
            f(e);
        }
        std::mem::take(&mut self.skipped)
    }

    /// Events kept so far, by kind (in the order of [`EventKind::ALL`]).
    pub fn counts(&self) -> [(EventKind, u64); EventKind::ALL.len()] {
        EventKind::ALL.map(|k| (k, self.counts[k as usize]))
    }

    /// Events that found the log full, since it was made.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Events kept since the last drain.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(n: u8) -> TableChange {
        TableChange::MacLearned {
            domain: DomainId(0),
            mac: MacAddr([2, 0, 0, 0, 0, n]),
            port: PortId(0),
        }
    }

    #[test]
    fn off_keeps_nothing_and_on_is_bounded() {
        let mut log = EventLog::default();
        log.push(Timestamp(1), learned(1));
        assert!(log.is_empty());
        assert_eq!(log.counts()[0].1, 0);
        log.start(2);
        for n in 0..5 {
            log.push(Timestamp(2), learned(n));
        }
        let mut seen = Vec::new();
        assert_eq!(log.drain(|e| seen.push(e)), 3, "three found it full");
        assert_eq!(seen.len(), 2);
        assert_eq!(log.counts()[0], (EventKind::MacLearned, 2));
        assert_eq!(log.skipped_total(), 3);
        // A drain empties the log and its skipped count.
        log.push(Timestamp(3), learned(9));
        assert_eq!(log.drain(|_| {}), 0);
        log.stop();
        log.push(Timestamp(4), learned(1));
        assert!(log.is_empty());
    }

    #[test]
    fn a_report_builds_only_when_on() {
        let mut built = 0;
        let mut off: Report<'_, u32> = Report::off();
        off.emit(|| {
            built += 1;
            1
        });
        assert_eq!(built, 0);
        let mut got = Vec::new();
        let mut sink = |v: u32| got.push(v);
        let mut on = Report::to(&mut sink);
        on.emit(|| 7);
        on.reborrow().emit(|| 8);
        assert_eq!(got, [7, 8]);
    }
}
