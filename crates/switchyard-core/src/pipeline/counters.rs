//! Accounting: every frame a port receives ends as forwarded, consumed or dropped,
//! and every drop has a named reason.
//!
//! Like a VPP graph node's error counters, each reason carries the stage that decides
//! it and a sentence a person can read in `show counters`. Besides drops there are
//! *events*: things a stage did that are worth counting without being a fate of the
//! frame (a MAC learned, a MAC moved, a MAC not learned because the table is full).
//!
//! The invariant, per port and checked by the tests:
//! `rx_frames == forwarded + consumed + dropped + held`, where `held` counts the
//! packets waiting, right now, for their next hop's MAC.

use serde::Serialize;

macro_rules! counted_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => ($id:literal, $stage:literal, $text:literal),)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name { $($variant,)* }

        impl $name {
            /// Every value, in declaration order (the index of each is `as usize`).
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// How many values there are.
            pub const COUNT: usize = $name::ALL.len();

            /// A stable snake_case identifier, used in JSON.
            pub fn id(self) -> &'static str {
                match self { $($name::$variant => $id,)* }
            }

            /// The pipeline stage that counts it.
            pub fn stage(self) -> &'static str {
                match self { $($name::$variant => $stage,)* }
            }

            /// A sentence for people.
            pub fn text(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.text())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.id())
            }
        }
    };
}

counted_enum! {
    /// Why a frame was dropped.
    DropReason {
        Truncated => ("truncated", "ethernet-input", "frame shorter than an Ethernet header"),
        GroupSourceMac => ("group_source_mac", "ethernet-input", "source MAC is multicast or broadcast"),
        ZeroSourceMac => ("zero_source_mac", "ethernet-input", "source MAC is all zeros"),
        OwnSourceMac => ("own_source_mac", "ethernet-input", "source MAC is switchyard's own gateway MAC"),
        FrameTooLong => ("frame_too_long", "ethernet-input", "frame longer than the network MTU allows"),
        SamePort => ("same_port", "l2-forward", "destination MAC is on the ingress port"),
        NoEgressPort => ("no_egress_port", "l2-flood", "flooded, but no other port in the bridge domain"),
        L3NoBridge => ("l3_no_bridge", "l2-forward", "an L3 network does not bridge between endpoints"),
        L3NoFlood => ("l3_no_flood", "l2-flood", "an L3 network does not flood broadcast or multicast"),
        ArpMalformed => ("arp_malformed", "arp-input", "malformed or non-Ethernet/IPv4 ARP"),
        ArpNotForUs => ("arp_not_for_us", "arp-input", "ARP to switchyard's MAC for an address it does not own or proxy"),
        TaggedToGateway => ("tagged_to_gateway", "l3-input", "802.1Q-tagged frame to the gateway MAC (no VLAN interfaces)"),
        UnsupportedEtherType => ("unsupported_ethertype", "l3-input", "EtherType to the gateway MAC that switchyard does not route"),
        Ip4Malformed => ("ip4_malformed", "ip4-input", "IPv4 header invalid (version, IHL or lengths)"),
        Ip4BadChecksum => ("ip4_bad_checksum", "ip4-input", "IPv4 header checksum wrong"),
        MartianSource => ("martian_source", "ip4-input", "source address not valid for forwarding (0/8, 127/8, multicast, broadcast)"),
        NotRouted => ("not_routed", "ip4-input", "broadcast or multicast destination is not routed"),
        TtlExpired => ("ttl_expired", "ip4-forward", "TTL expired in transit"),
        NoRoute => ("no_route", "ip4-lookup", "no route to the destination"),
        Isolated => ("isolated", "ip4-forward", "networks not joined by an [[allow]] rule"),
        FragNeeded => ("frag_needed", "ip4-forward", "over the egress MTU with Don't Fragment set"),
        GsoOverMtu => ("gso_over_mtu", "ip4-output", "UDP super-frame without DF whose datagrams exceed the egress MTU (no segment-then-fragment)"),
        NeighborQueueFull => ("neighbor_queue_full", "ip4-neighbor", "pushed out of a full queue while the next hop was resolved"),
        NeighborUnresolved => ("neighbor_unresolved", "ip4-neighbor", "next hop did not answer ARP"),
        NeighborTableFull => ("neighbor_table_full", "ip4-neighbor", "neighbor table full"),
        NoBuffer => ("no_buffer", "ip4-neighbor", "no free buffer to queue the packet or its fragments"),
        ConntrackFull => ("conntrack_full", "ct-lookup", "conntrack table full and no unassured entry to evict"),
        ConntrackInvalid => ("conntrack_invalid", "ct-lookup", "TCP packet that neither starts nor belongs to a tracked connection"),
        ConntrackGone => ("conntrack_gone", "nat-rewrite", "its connection expired while the packet waited"),
        NatExhausted => ("nat_exhausted", "nat-snat", "no free source port for the translated flow"),
        NatFragment => ("nat_fragment", "nat-snat", "fragment of a flow to translate (switchyard does not reassemble)"),
        NatUnsupported => ("nat_unsupported", "nat-snat", "protocol that cannot be translated (only TCP, UDP, ICMP echo)"),
        LocalFragment => ("local_fragment", "ip4-local", "fragment addressed to switchyard (it does not reassemble)"),
        LocalProtocol => ("local_protocol", "ip4-local", "protocol not served at switchyard's address"),
        IcmpMalformed => ("icmp_malformed", "ip4-local", "ICMP to switchyard truncated or with a bad checksum"),
    }
}

counted_enum! {
    /// Things a stage counts that are not a frame's fate.
    Event {
        FdbLearned => ("fdb_learned", "l2-learn", "MACs learned"),
        FdbMoved => ("fdb_moved", "l2-learn", "MAC moves (a known MAC seen on another port)"),
        FdbLimit => ("fdb_limit", "l2-learn", "MACs not learned because the FDB is full"),
        FdbAged => ("fdb_aged", "l2-age", "MACs aged out"),
        UnknownUnicastFlooded => ("unknown_unicast_flooded", "l2-forward", "unknown unicast frames flooded"),
        ArpReplies => ("arp_replies", "arp-input", "ARP replies sent for switchyard's addresses"),
        ProxyArpReplies => ("proxy_arp_replies", "arp-input", "ARP replies sent for proxied addresses"),
        ArpRequests => ("arp_requests", "ip4-neighbor", "ARP requests sent to resolve next hops"),
        NeighborsResolved => ("neighbors_resolved", "ip4-neighbor", "next hops resolved"),
        NeighborsFailed => ("neighbors_failed", "ip4-neighbor", "next hops that did not answer"),
        EchoReplies => ("echo_replies", "ip4-local", "ICMP echo replies sent from switchyard's addresses"),
        Routed => ("routed", "ip4-forward", "packets routed between or within networks"),
        Fragmented => ("fragmented", "ip4-fragment", "packets fragmented to fit the egress MTU"),
        FragmentsSent => ("fragments_sent", "ip4-fragment", "fragments made"),
        IcmpTimeExceeded => ("icmp_time_exceeded", "icmp-error", "ICMP time exceeded sent"),
        IcmpNetUnreachable => ("icmp_net_unreachable", "icmp-error", "ICMP net unreachable sent"),
        IcmpHostUnreachable => ("icmp_host_unreachable", "icmp-error", "ICMP host unreachable sent"),
        IcmpFragNeeded => ("icmp_frag_needed", "icmp-error", "ICMP fragmentation needed sent"),
        GsoSegmentSizeLowered => ("gso_segment_size_lowered", "ip4-output", "TCP super-frames without DF cut smaller to fit the egress MTU"),
        IcmpRateLimited => ("icmp_rate_limited", "icmp-error", "ICMP errors suppressed by the rate limit"),
        CtNew => ("ct_new", "ct-lookup", "connections tracked"),
        CtEvicted => ("ct_evicted", "ct-lookup", "unassured connections evicted to make room (early drop)"),
        CtExpired => ("ct_expired", "ct-gc", "connections expired"),
        CtTcpInvalid => ("ct_tcp_invalid", "ct-lookup", "TCP packets out of state for their connection (passed)"),
        SnatFlows => ("snat_flows", "nat-snat", "flows masqueraded to the uplink address"),
        SnatPortChanged => ("snat_port_changed", "nat-snat", "masqueraded flows whose source port was taken and changed"),
        DnatFlows => ("dnat_flows", "ct-lookup", "flows to published ports"),
        IcmpErrorsTranslated => ("icmp_errors_translated", "nat-rewrite", "ICMP errors about translated flows, translated"),
        NoBuffer => ("emit_no_buffer", "emit", "packets switchyard could not originate for lack of a buffer"),
    }
}

/// Per-port accounting of the pipeline's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Sent on to at least one port (unicast or flood).
    pub forwarded: u64,
    /// Taken by switchyard's own stack (ARP for the gateway, ping to the gateway).
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

    #[inline]
    pub fn event(&mut self, e: Event) {
        self.events[e as usize] += 1;
    }

    #[inline]
    pub fn event_n(&mut self, e: Event, n: u64) {
        self.events[e as usize] += n;
    }

    #[inline]
    pub fn events(&self, e: Event) -> u64 {
        self.events[e as usize]
    }

    /// Adds another worker's counters into these.
    pub fn add(&mut self, other: &Counters) {
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
