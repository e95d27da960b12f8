//! switchyard's embedded DNS server: the logic, without the sockets.
//!
//! Docker gives every container on a user-defined network a resolver at 127.0.0.11
//! that knows the network's containers by name and forwards every other name to the
//! host's servers. switchyard does the same at each network's gateway address: an
//! endpoint on network `app` asks the gateway, `db` resolves to db's address on `app`,
//! `db.app.internal` too when the network has a search domain, `example.com` goes
//! upstream.
//!
//! What this crate decides, one message at a time:
//!
//! - **Per-network views.** A query is answered from the zone of the network it came in
//!   on, never any other: an endpoint learns the names of its own networks only, just
//!   as it can reach only them. Isolation between networks is a security boundary in
//!   switchyard, and names are part of it. ([`Zone`], [`Zones`])
//! - **Authoritative answers for the zone.** A known name gets its addresses (A), with
//!   a short TTL ([`LOCAL_TTL`]) because endpoints come and go; a known name asked for
//!   another type gets NOERROR with no records (NODATA) — glibc asks AAAA next to A, and
//!   NXDOMAIN there would make it give up on the A it already has; an unknown name of
//!   the zone gets NXDOMAIN; an address of the subnet resolves back to its endpoint's
//!   name (PTR).
//! - **Forwarding the rest.** Other names go to the first upstream server under a
//!   fresh random ID; the answer comes back unchanged but for the client's ID. The
//!   pending queries are bounded and time out into SERVFAIL. ([`Resolver`])
//! - **Never silence.** A resolver that does not answer costs the client a timeout
//!   (five seconds per try in glibc) before it moves on; REFUSED (no upstream, no zone),
//!   SERVFAIL (upstream lost or busy), FORMERR and NOTIMP tell it at once. Only what is
//!   not a query at all — too short for a header, or a response — is dropped, and
//!   counted. ([`Counters`])
//! - **Size rules of the transports.** Over UDP a response fits 512 bytes, or the
//!   client's EDNS size up to [`EDNS_UDP_PAYLOAD`]; a larger one is sent truncated (TC)
//!   so the client asks again over TCP, where 64 KiB fit.
//!
//! Messages are parsed and built with the `simple-dns` crate; this crate only decides.
//! Nothing here does I/O, starts a thread or reads a clock: the service thread passes
//! bytes and the time in, and sends what comes out. One known gap of the parser: a
//! question whose type it does not know (TLSA, SSHFP, NSEC3, ...) fails to parse and
//! is answered FORMERR rather than forwarded.

mod counters;
mod fuzz;
mod resolver;
mod zone;

pub use counters::{Counters, CountersSnapshot, COUNTERS};
pub use fuzz::fuzz_check;
pub use resolver::{
    Outcome, Resolver, Transport, CLASSIC_UDP_PAYLOAD, EDNS_UDP_PAYLOAD, LOCAL_TTL,
    MAX_OUTSTANDING_LIMIT, TCP_MAX_MESSAGE,
};
pub use zone::{Zone, Zones};
