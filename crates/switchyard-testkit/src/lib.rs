//! switchyard-testkit — what switchyard's tests (and its benchmark harness) use to
//! make traffic and set up switches, kept out of the libraries they test.
//!
//! * [`traffic`] — sockets opened inside a network namespace and used from anywhere:
//!   ping, UDP, TCP bulk with a digest of the bytes, an `AF_PACKET` capture, batched
//!   UDP send and receive. No external program is run, so a fresh machine needs
//!   nothing more.
//! * [`fixtures`] — unique names per test, the root check, a switch that is torn down
//!   even when a test panics, and the topologies several tests share.
//! * [`fuzz`] — the fuzz driver, shared by the fuzz target and the test that replays
//!   the saved corpus.
//! * [`alloc`] — a counting global allocator, to prove a path allocates nothing.
//! * [`process`] — `switchyard up` as a separate process: signals, exit status, log.
//! * [`podman`] — real podman in a scratch directory, with CNI networks a test writes.
//! * [`docker`] — a real dockerd with scratch state, its own containerd and cgroups.
//!
//! Besides `switchyard-os`, this is the one crate with `unsafe` code (socket calls the
//! standard library does not wrap); every block has its `// SAFETY:` line.

pub mod alloc;
pub mod dns;
pub mod docker;
pub mod fixtures;
pub mod fuzz;
pub mod podman;
pub mod process;
pub mod traffic;
