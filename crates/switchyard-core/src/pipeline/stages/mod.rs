//! The stages, one module each, as VPP has one file per graph node.
//!
//! A stage module opens by saying what the stage does and which RFC or kernel
//! behaviour it follows, then declares, next to the stage's function:
//! * `NAME`, the stage's name in counters and traces (`"l2-learn"`);
//! * `Drop`, the reasons it drops a frame, and `Event`, the things it counts — each
//!   with a stable id and a sentence (see [`counted!`](super::counters::counted));
//! * `Next`, where a frame may go from it: other stages, or a verdict;
//! * `Trace`, the sentences it writes about a traced packet.
//!
//! A stage that changes a table (`l2-learn`, `arp-input`, `ct-lookup`, `nat-snat`,
//! `ip4-neighbor`, `icmp-error`) also takes the walk's mode, `DRY`: in the dry run of
//! a what-if trace it asks the table what the change would be instead of making it,
//! and its trace line says "would"; `nat-rewrite` then translates a new flow's packet
//! by the entry it would have got (see `what_if.rs`).
//!
//! [`graph`](super::graph) walks the edges; [`counters`](super::counters) gathers the
//! counted enums. Three stages see no frame of their own and only count: `l2-age` and
//! `ct-gc` run on the timer, and `emit` hands out the buffers of the frames switchyard
//! makes.

pub mod arp_input;
pub mod ct_gc;
pub mod ct_lookup;
pub mod emit;
pub mod ethernet_input;
pub mod icmp_error;
pub mod ip4_forward;
pub mod ip4_fragment;
pub mod ip4_input;
pub mod ip4_local;
pub mod ip4_neighbor;
pub mod ip4_output;
pub mod l2_age;
pub mod l2_flood;
pub mod l2_forward;
pub mod l2_learn;
pub mod l3_input;
pub mod nat_rewrite;
pub mod nat_snat;
pub mod port_security;
pub mod vlan_input;
