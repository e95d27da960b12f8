//! Stage `l3-input`: a unicast frame to the gateway MAC, for switchyard's own stack.
//!
//! Dispatches on the EtherType as a host's network stack does: ARP to `arp-input`,
//! IPv4 to `ip4-input`. vlan-input takes every tag off before a frame comes here
//! (a trunk's VLAN is a port of its own), so a frame still tagged — only a what-if
//! can make one — is refused, and so is any other protocol (IPv6 is not routed).
//!
//! Next: `arp-input`, `ip4-input`, or drop. Trace:
//! `l3-input: EtherType IPv6 to the gateway MAC is not routed: drop`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline};
use crate::wire::EtherType;
use std::fmt;

pub const NAME: &str = "l3-input";

counted! {
    /// Why l3-input drops a frame.
    pub enum Drop: DropReason in NAME {
        TaggedToGateway => ("tagged_to_gateway", "802.1Q-tagged frame to the gateway MAC that vlan-input did not untag"),
        UnsupportedEtherType => ("unsupported_ethertype", "EtherType to the gateway MAC that switchyard does not route"),
    }
}

/// Where a frame goes from l3-input.
pub enum Next {
    ArpInput,
    Ip4Input,
    Drop(DropReason),
}

/// What l3-input says about a frame it refuses.
pub enum Trace {
    Tagged(EtherType),
    Unsupported(EtherType),
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Tagged(t) => write!(f, "{t}-tagged frame to the gateway MAC: drop"),
            Trace::Unsupported(t) => {
                write!(f, "EtherType {t} to the gateway MAC is not routed: drop")
            }
        }
    }
}

impl TraceLine for Trace {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn l3_input(&mut self, f: &Frame, l2: &L2) -> Next {
        match l2.ethertype {
            EtherType::ARP => Next::ArpInput,
            EtherType::IPV4 => Next::Ip4Input,
            t @ (EtherType::VLAN | EtherType::QINQ) => {
                trace!(self, f, Trace::Tagged(t));
                Next::Drop(Drop::TaggedToGateway.into())
            }
            t => {
                trace!(self, f, Trace::Unsupported(t));
                Next::Drop(Drop::UnsupportedEtherType.into())
            }
        }
    }
}
