//! switchyard — a user-space packet switching engine for Linux.
//!
//! Each endpoint is a network namespace with a TAP device as its `eth0`; switchyard
//! holds the other end of every TAP and does, in one process, what Docker's default
//! network does with kernel parts: MAC-learning bridging, ARP, IPv4 routing and NAT.
//!
//! The crate is layered; each layer uses only those listed before it:
//!
//! 1. [`wire`] — typed views over packet bytes; no allocation, no I/O.
//! 2. [`pipeline`] — the switching logic: stages and tables, pure and testable.
//! 3. [`port`] — I/O: TAP devices inside namespaces.
//! 4. [`dataplane`] — the poll loop that moves batches between ports and the pipeline.
//! 5. [`topology`] — the config file, its validation, and building the namespaces.
//! 6. [`control`] — the control socket and the `show` commands.
//! 7. [`bench`] — traffic helpers and the benchmark harness.

pub mod bench;
pub mod control;
pub mod dataplane;
pub mod pipeline;
pub mod port;
pub mod topology;
pub mod wire;
