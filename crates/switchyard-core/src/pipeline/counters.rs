//! Accounting: every frame a port receives ends as forwarded, consumed or dropped,
//! and every drop has a named reason.
//!
//! Like a VPP graph node's error counters, the reasons are declared by the stage that
//! decides them, each with a stable id and a sentence a person can read in `show
//! counters` (see [`counted!`], used at the top of every stage module). Besides drops
//! there are *events*: things a stage did that are worth counting without being a fate
//! of the frame (a MAC learned, a MAC moved, a MAC not learned because the table is
//! full). This module gathers every stage's reasons into one [`DropReason`] and every
//! stage's events into one [`Event`], in a fixed order — the index of the per-port
//! arrays, and the order in which `show counters` and its JSON list them.
//!
//! The invariant, per port and checked by the tests:
//! `rx_frames == forwarded + consumed + dropped + held`, where `held` counts the
//! packets waiting, right now, for their next hop's MAC.

use super::stages::{
    arp_input, ct_gc, ct_lookup, emit, ethernet_input, icmp_error, ip4_forward, ip4_fragment,
    ip4_input, ip4_local, ip4_neighbor, ip4_output, l2_age, l2_flood, l2_forward, l2_learn,
    l3_input, nat_rewrite, nat_snat, port_security, vlan_input,
};
use super::{ct_cache, fdb_cache};
use serde::Serialize;

/// Declares what one stage counts — its drop reasons or its events — as an enum whose
/// every value has a stable snake_case id (used in JSON), the stage it belongs to, and
/// a sentence for people, and which converts into the pipeline-wide enum (`DropReason`
/// or `Event`, whose value of the same name it becomes):
///
/// ```text
/// counted! {
///     /// Why ethernet-input drops a frame.
///     pub enum Drop: DropReason in NAME {
///         Truncated => ("truncated", "frame shorter than an Ethernet header"),
///         ...
///     }
/// }
/// ```
/// A value may name another stage (`NoRoute in LOOKUP => ...`) when a stage does a
/// step that keeps a name of its own in counters and traces.
macro_rules! counted {
    ($(#[$meta:meta])* pub enum $name:ident: $flat:ident in $stage:path {
        $($(#[$vmeta:meta])* $variant:ident $(in $vstage:path)? => ($id:literal, $text:literal),)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        // Values are named as in the pipeline-wide enum, where a shared prefix (`Fdb…`,
        // `Icmp…`) is what tells them from the other stages' values.
        #[allow(clippy::enum_variant_names)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// A stable snake_case identifier, used in JSON.
            pub const fn id(self) -> &'static str {
                match self {
                    $($name::$variant => $id,)*
                }
            }

            /// The stage that counts it.
            pub const fn stage(self) -> &'static str {
                match self {
                    $($name::$variant => $crate::pipeline::counters::counted!(@stage $stage $(, $vstage)?),)*
                }
            }

            /// A sentence for people.
            pub const fn text(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl From<$name> for $crate::pipeline::$flat {
            #[inline]
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => Self::$variant,)*
                }
            }
        }
    };
    (@stage $stage:path) => { $stage };
    (@stage $stage:path, $vstage:path) => { $vstage };
}
pub(crate) use counted;

/// Makes the pipeline-wide enum `$flat` of the stages' `$kind` enums, valued in the
/// order listed; each value's id, stage and sentence are the stage's.
macro_rules! gather {
    ($(#[$meta:meta])* $flat:ident from $kind:ident { $($stage:ident::$variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $flat {
            $($variant,)*
        }

        impl $flat {
            /// Every value, in order (the index of each is `as usize`).
            pub const ALL: &'static [$flat] = &[$($flat::$variant,)*];
            /// How many values there are.
            pub const COUNT: usize = $flat::ALL.len();

            /// A stable snake_case identifier, used in JSON.
            pub fn id(self) -> &'static str {
                match self {
                    $($flat::$variant => $stage::$kind::$variant.id(),)*
                }
            }

            /// The pipeline stage that counts it.
            pub fn stage(self) -> &'static str {
                match self {
                    $($flat::$variant => $stage::$kind::$variant.stage(),)*
                }
            }

            /// A sentence for people.
            pub fn text(self) -> &'static str {
                match self {
                    $($flat::$variant => $stage::$kind::$variant.text(),)*
                }
            }
        }

        impl std::fmt::Display for $flat {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.text())
            }
        }

        impl Serialize for $flat {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.id())
            }
        }
    };
}

gather! {
    /// Why a frame was dropped.
    DropReason from Drop {
        vlan_input::VlanNotAllowed,
        vlan_input::VlanUntagged,
        vlan_input::VlanStacked,
        vlan_input::VlanTruncated,
        ethernet_input::Truncated,
        ethernet_input::GroupSourceMac,
        ethernet_input::ZeroSourceMac,
        ethernet_input::OwnSourceMac,
        ethernet_input::FrameTooLong,
        ethernet_input::BadVnetHeader,
        ethernet_input::PortGone,
        port_security::PortSecurityMac,
        port_security::PortSecurityIp,
        port_security::PortSecurityArp,
        l2_forward::SamePort,
        l2_flood::NoEgressPort,
        l2_forward::L3NoBridge,
        l2_flood::L3NoFlood,
        l2_forward::IccDisabled,
        arp_input::ArpMalformed,
        arp_input::ArpNotForUs,
        l3_input::TaggedToGateway,
        l3_input::UnsupportedEtherType,
        ip4_input::Ip4Malformed,
        ip4_input::Ip4BadChecksum,
        ip4_input::MartianSource,
        ip4_input::NotRouted,
        ip4_input::SpoofedSource,
        ip4_forward::TtlExpired,
        ip4_forward::NoRoute,
        ip4_forward::Isolated,
        ip4_forward::FragNeeded,
        ip4_output::GsoOverMtu,
        ip4_neighbor::NeighborQueueFull,
        ip4_neighbor::NeighborUnresolved,
        ip4_neighbor::NeighborTableFull,
        ip4_neighbor::NoBuffer,
        ip4_neighbor::NeighborEvicted,
        ip4_neighbor::NeighborFlushed,
        ct_lookup::ConntrackFull,
        ct_lookup::ConntrackNetworkFull,
        ct_lookup::ConntrackInvalid,
        ct_lookup::ConntrackOutOfWindow,
        nat_rewrite::ConntrackGone,
        nat_snat::NatExhausted,
        nat_snat::NatFragment,
        nat_snat::NatUnsupported,
        ip4_local::LocalFragment,
        ip4_local::LocalProtocol,
        ip4_local::IcmpMalformed,
        ip4_local::LocalL4Truncated,
    }
}

gather! {
    /// Things a stage counts that are not a frame's fate.
    Event from Event {
        l2_learn::FdbLearned,
        l2_learn::FdbMoved,
        l2_learn::FdbLimit,
        l2_learn::FdbNetworkLimit,
        l2_learn::FdbMoveRefused,
        l2_age::FdbAged,
        l2_forward::UnknownUnicastFlooded,
        arp_input::ArpReplies,
        arp_input::ProxyArpReplies,
        arp_input::NeighborBindRefused,
        ip4_neighbor::ArpRequests,
        ip4_neighbor::NeighborsResolved,
        ip4_neighbor::NeighborsFailed,
        ip4_local::EchoReplies,
        ip4_local::DnsPunted,
        ip4_forward::Routed,
        ip4_fragment::Fragmented,
        ip4_fragment::FragmentsSent,
        icmp_error::IcmpTimeExceeded,
        icmp_error::IcmpNetUnreachable,
        icmp_error::IcmpHostUnreachable,
        icmp_error::IcmpFragNeeded,
        ip4_output::GsoSegmentSizeLowered,
        icmp_error::IcmpRateLimited,
        ct_lookup::CtNew,
        ct_lookup::CtEvicted,
        ct_gc::CtExpired,
        ct_lookup::CtTcpInvalid,
        nat_snat::SnatFlows,
        nat_snat::SnatPortChanged,
        ct_lookup::DnatFlows,
        ct_lookup::CtZoneMismatch,
        ct_lookup::CtRelatedMismatch,
        nat_rewrite::IcmpErrorsTranslated,
        emit::NoBuffer,
        fdb_cache::FdbCacheHits,
        fdb_cache::FdbCacheMisses,
        ct_cache::CtCacheHits,
        ct_cache::CtCacheMisses,
    }
}

/// Per-port accounting of the pipeline's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Sent on to at least one port (unicast or flood).
    pub forwarded: u64,
    /// Taken by switchyard's own stack (ARP for the gateway, ping to the gateway) or
    /// handed to one of its services (DNS).
    pub consumed: u64,
    pub dropped: u64,
    /// Waiting right now in a neighbor queue for their next hop to be resolved; each
    /// ends as forwarded or dropped.
    pub held: u64,
    /// `dropped`, split by reason (indexed by `DropReason as usize`).
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_frames: 0,
            rx_bytes: 0,
            forwarded: 0,
            consumed: 0,
            dropped: 0,
            held: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl PortCounters {
    /// Adds `other` into `self` (to total ports, or workers).
    pub fn add(&mut self, other: &PortCounters) {
        self.rx_frames += other.rx_frames;
        self.rx_bytes += other.rx_bytes;
        self.forwarded += other.forwarded;
        self.consumed += other.consumed;
        self.dropped += other.dropped;
        self.held = self.held.wrapping_add(other.held);
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
    }

    /// Drop reasons with a non-zero count.
    pub fn drop_reasons(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.drops[r as usize]))
            .filter(|&(_, n)| n != 0)
    }
}

/// All of the pipeline's counters.
#[derive(Debug, Clone)]
pub struct Counters {
    pub ports: Vec<PortCounters>,
    pub events: [u64; Event::COUNT],
}

impl Counters {
    pub fn new(ports: usize) -> Counters {
        Counters {
            ports: vec![PortCounters::default(); ports],
            events: [0; Event::COUNT],
        }
    }

    /// Counts one event: a stage's own (`l2_learn::Event::FdbLearned`) or the
    /// pipeline-wide one it becomes.
    #[inline]
    pub fn event(&mut self, e: impl Into<Event>) {
        self.events[e.into() as usize] += 1;
    }

    #[inline]
    pub fn event_n(&mut self, e: impl Into<Event>, n: u64) {
        self.events[e.into() as usize] += n;
    }

    #[inline]
    pub fn events(&self, e: Event) -> u64 {
        self.events[e as usize]
    }

    /// Adds another worker's counters into these. A worker that has adopted a layout
    /// with more ports has more counters: these grow to as many.
    pub fn add(&mut self, other: &Counters) {
        if self.ports.len() < other.ports.len() {
            self.ports
                .resize(other.ports.len(), PortCounters::default());
        }
        for (a, b) in self.ports.iter_mut().zip(&other.ports) {
            a.add(b);
        }
        for (a, b) in self.events.iter_mut().zip(&other.events) {
            *a += b;
        }
    }

    /// The sum over every port.
    pub fn total(&self) -> PortCounters {
        let mut t = PortCounters::default();
        for p in &self.ports {
            t.add(p);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_indexes_match() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut ids: Vec<_> = DropReason::ALL.iter().map(|r| r.id()).collect();
        ids.extend(Event::ALL.iter().map(|e| e.id()));
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
