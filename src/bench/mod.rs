//! `bench` — traffic between namespaces, for tests and for the benchmark harness.
//!
//! [`traffic`] opens ordinary sockets *inside* a namespace (a socket belongs to the
//! namespace of the thread that creates it) and uses them from anywhere: ping with a
//! raw ICMP socket, UDP request/response, TCP bulk transfers with a checksum of the
//! bytes, and an `AF_PACKET` capture to see which frames reached an endpoint.

pub mod kernel;
pub mod traffic;
