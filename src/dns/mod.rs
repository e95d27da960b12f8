//! DNS at the gateways: endpoints find each other by name.
//!
//! On Docker's user-defined networks a container asks Docker's embedded resolver for
//! `db` and gets the address of the container called `db` on the same network. switchyard
//! owns every network's gateway address, so it answers there, with nothing to set up
//! inside the namespaces but a resolv.conf naming the gateway.
//!
//! How a query travels, and why it never slows the switch:
//!
//! 1. A worker's ip4-local stage sees UDP or TCP to port 53 at one of switchyard's
//!    addresses, from a network that serves DNS, and *punts* the frame: the worker swaps
//!    a spare buffer into its batch and hands the frame over a bounded queue to this
//!    service's thread ([`crate::dataplane::punt`]). That is all a worker does: no
//!    parsing of DNS, no lookups, no sockets.
//! 2. Here the frame is taken apart ([`frames`]). A UDP query is answered by the
//!    resolver (the `switchyard-dns` crate) from the zone of the network the query came
//!    *in on* — the view that keeps an endpoint from learning names of networks it is
//!    not on — and the answer is built into the same buffer, addresses swapped, which
//!    goes back to the worker to send out of the port the query came in by.
//! 3. TCP (what a client falls back to when an answer is truncated) is served by a small
//!    TCP stack per network address ([`tcp`], on smoltcp): segments go in, the stack's
//!    segments come out as frames the same way.
//! 4. A name outside switchyard's zones goes to the upstream servers of
//!    `[switch] dns_upstream` over a UDP socket opened in the chosen namespace
//!    ([`upstream`]); their answer comes back to whoever asked. With no upstream such a
//!    name is refused (REFUSED), never dropped in silence and never sent anywhere not
//!    configured.
//!
//! The zones come from the running topology ([`zones`]); a runtime change publishes new
//! ones before it answers, and the service takes them up before the next query.

pub mod frames;
pub mod service;
pub mod tcp;
pub mod upstream;
pub mod zones;

pub use service::{DnsHandle, DnsService, DnsView};
