//! switchyard-core — the packet formats and the switching logic of switchyard, with
//! nothing else.
//!
//! Two layers, each using only the one before it:
//!
//! 1. [`wire`] — typed views over packet bytes (Ethernet, ARP, IPv4, ICMP, UDP, TCP,
//!    the virtio-net offload header), incremental checksums, software segmentation;
//!    no allocation, no I/O.
//! 2. [`pipeline`] — the stages a frame walks through (learning, forwarding, ARP,
//!    routing, connection tracking and NAT) and the tables they keep. Given a batch of
//!    frames and the current time it decides each frame's fate.
//!
//! This crate makes no system call, starts no thread and reads no clock: time is passed
//! in. It depends on no operating-system crate (no libc, nix, mio or netlink), so all of
//! its tests run as an ordinary user, and the fuzzer and the criterion benches drive it
//! directly. The tables are shared between the dataplane's workers and lock per shard
//! or per entry; that is the only concurrency it knows about.
#![forbid(unsafe_code)]

pub mod pipeline;
pub mod wire;
