//! What the resolver did, counted: every query ends in exactly one answer kind (or a
//! drop), so `show dns` and the metrics can say why a name did not resolve.
//!
//! The counters are atomics updated with `Relaxed` ordering: they are statistics read by
//! the control socket while the service thread counts, and no other memory depends on
//! them. One list ([`COUNTERS`]) names each with a help line, so metrics and docs print
//! the same words.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal,)*) => {
        /// Counters, shared with the control socket (atomics, `Relaxed`).
        #[derive(Debug, Default)]
        pub struct Counters {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        /// The counters' values at one moment.
        #[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $(#[doc = $help] pub $name: u64,)*
        }

        /// Every counter's name and what it counts, in the order `show dns` prints them.
        pub const COUNTERS: &[(&str, &str)] = &[$((stringify!($name), $help),)*];

        impl Counters {
            /// Reads every counter (each on its own: the set is not one atomic moment).
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl CountersSnapshot {
            /// The value of counter `name` (a name of [`COUNTERS`]); 0 for an unknown name.
            pub fn get(&self, name: &str) -> u64 {
                match name {
                    $(stringify!($name) => self.$name,)*
                    _ => 0,
                }
            }

            /// Every (name, value), in the order of [`COUNTERS`].
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }
    };
}

counters! {
    queries: "queries received (both transports)",
    udp_queries: "queries received over UDP",
    tcp_queries: "queries received over TCP",
    answers: "answered from the network's zone with records (NOERROR)",
    nodata: "answered NOERROR without records: the name exists, not with that type (NODATA)",
    nxdomain: "answered NXDOMAIN: the name is inside the network's zone but unknown",
    forwarded: "sent to an upstream server (names outside the zone)",
    upstream_answers: "upstream answers relayed to the client that asked",
    upstream_ignored: "upstream datagrams that answer no outstanding query (late, spoofed or wrong source)",
    refused: "answered REFUSED: no zone for the network, no upstream server, or a class other than IN",
    servfail: "answered SERVFAIL (upstream timed out or too many queries outstanding)",
    upstream_timeouts: "waits for an upstream that ran out (the query goes to the next upstream, or gets SERVFAIL after the last)",
    upstream_busy: "queries not forwarded because too many were outstanding",
    formerr: "answered FORMERR (a query that does not parse, or not exactly one question)",
    malformed: "malformed messages (answered FORMERR, or dropped when no header or a response)",
    notimp: "answered NOTIMP (an opcode other than QUERY)",
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
