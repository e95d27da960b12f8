//! switchyard — a user-space packet switching engine for Linux.
//!
//! Each endpoint is a network namespace with a TAP device as its `eth0`; switchyard
//! holds the other end of every TAP and does, in one process, what Docker's default
//! network does with kernel parts: MAC-learning bridging, ARP, IPv4 routing and NAT.
//!
//! This crate is the application: it puts the layers below it to work.
//!
//! * [`dataplane`] — the poll loop per worker that moves batches of frames between
//!   the ports (`switchyard_os::port`) and the pipeline (`switchyard_core::pipeline`).
//! * [`topology`] — the config file, its validation, and building the namespaces and
//!   TAPs it describes.
//! * [`control`] — a running instance, its control socket and protocol, and the CLI
//!   verbs (`up`, `down`, `show`, `check`).
//! * [`docker`] — Docker's remote network driver protocol, served by `up
//!   --docker-driver`: Docker's networks and containers become switchyard's.
//!
//! The layers it uses: `switchyard_core` (wire formats and the pipeline, pure) and
//! `switchyard_os` (TAP, namespaces, netlink). The benchmark harness
//! (`switchyard-bench`) and the test helpers (`switchyard-testkit`) are crates of
//! their own, so this one links neither plotting nor test code.
#![forbid(unsafe_code)]

pub mod control;
pub mod dataplane;
pub mod dns;
pub mod docker;
pub mod topology;
