//! Stage `vlan-input`: which port a received frame belongs to, by its 802.1Q tag.
//!
//! A trunk is one device (an endpoint's `eth0`) carrying the frames of several
//! networks, each network's with its own VLAN tag, and perhaps one network's
//! untagged (the *native* one). switchyard sees it as one port per network — every
//! other stage keeps "a port is in one network" — and this stage hands each frame
//! that arrives on the trunk's device (its *carrier* port) to the port of its tag,
//! taking the tag off and keeping its priority bits ([`Frame::vlan_prio`]) for the
//! tag the frame gets again if it leaves by another trunk. The egress of a tagged
//! port puts the tag back on (the port layer does, as it writes to the device).
//!
//! The rules are the kernel bridge's with `vlan_filtering = 1`:
//! * a tag for a VLAN the port is not a member of is dropped (`vlan_not_allowed`),
//!   and so is every tagged frame on an access port, whose only VLAN is untagged;
//! * an untagged frame on a trunk without a native network is dropped
//!   (`vlan_untagged`: it has no PVID);
//! * a priority tag (VLAN id 0) is no VLAN: the frame is the port's untagged one,
//!   its priority kept (`br_allowed_ingress` puts it in the PVID the same way);
//! * stacked tags (QinQ: a tag after the tag) and 802.1ad service tags are
//!   dropped (`vlan_stacked`); switchyard bridges 802.1Q only, and a frame whose
//!   inner tag no port would look at must not slip through into a VLAN unseen.
//!
//! Frames from an access port with no tag — nearly all — pass with one look at
//! the type field and one at the port's trunk slot.
//!
//! Next: `ethernet-input` (on the frame's own port), or drop. Trace (of a drop):
//! `vlan-input: port router/eth0.10: VLAN 30 is not on this port: drop`

use crate::pipeline::counters::counted;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline, PortId};
use crate::wire::{ethernet, EtherType};
use std::fmt;

pub const NAME: &str = "vlan-input";

counted! {
    /// Why vlan-input drops a frame.
    pub enum Drop: DropReason in NAME {
        VlanNotAllowed => ("vlan_not_allowed", "802.1Q tag of a VLAN the port does not carry (any tag on an access port)"),
        VlanUntagged => ("vlan_untagged", "untagged frame on a trunk port without a native network"),
        VlanStacked => ("vlan_stacked", "stacked VLAN tags (QinQ) or an 802.1ad service tag"),
        VlanTruncated => ("vlan_truncated", "802.1Q tag cut short"),
    }
}

/// Where a frame goes from vlan-input.
pub enum Next {
    /// On to ethernet-input, untagged, its ingress the port of its VLAN.
    EthernetInput,
    Drop(DropReason),
}

/// What vlan-input says about a frame it refuses.
pub enum Trace<'a> {
    NotAllowed { port: &'a str, vlan: u16 },
    Untagged { port: &'a str },
    Stacked { port: &'a str, outer: EtherType },
    Truncated { port: &'a str, len: usize },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::NotAllowed { port, vlan } => {
                write!(f, "port {port}: VLAN {vlan} is not on this port: drop")
            }
            Trace::Untagged { port } => write!(
                f,
                "port {port}: untagged frame on a trunk without a native network: drop"
            ),
            Trace::Stacked { port, outer } => {
                write!(f, "port {port}: stacked tags ({outer} outside): drop")
            }
            Trace::Truncated { port, len } => {
                write!(
                    f,
                    "port {port}: {len} bytes, the 802.1Q tag is cut short: drop"
                )
            }
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

/// Tag control field: the VLAN id bits; the rest (PCP, DEI) is the priority.
const VID_MASK: u16 = 0x0fff;

impl Pipeline {
    pub(crate) fn vlan_input(&mut self, f: &mut Frame) -> Next {
        let port = f.ingress;
        let data = f.data();
        let outer = match data.get(12..14) {
            // A port not in this layout is ethernet-input's to refuse (`port_gone`),
            // tagged or not.
            Some(t) if self.port_domain(port).is_some() => {
                EtherType(u16::from_be_bytes([t[0], t[1]]))
            }
            // Too short for a type field: ethernet-input counts it as truncated,
            // on the port it came in on.
            _ => return Next::EthernetInput,
        };
        if outer != EtherType::VLAN && outer != EtherType::QINQ {
            return self.untagged(f);
        }
        if outer == EtherType::QINQ {
            return self.refuse(f, VlanDrop::Stacked(outer));
        }
        if data.len() < ethernet::HEADER_LEN + ethernet::TAG_LEN {
            return self.refuse(f, VlanDrop::Truncated);
        }
        let inner = EtherType(u16::from_be_bytes([data[16], data[17]]));
        if inner == EtherType::VLAN || inner == EtherType::QINQ {
            return self.refuse(f, VlanDrop::Stacked(outer));
        }
        let tci = u16::from_be_bytes([data[14], data[15]]);
        let vid = tci & VID_MASK;
        let to = if vid == 0 {
            // A priority tag: the port's untagged VLAN.
            self.untagged_port(port)
        } else {
            self.trunk(port)
                .and_then(|t| t.iter().find(|&&(v, _)| v == Some(vid)))
                .map(|&(_, p)| p)
        };
        let Some(to) = to else {
            let why = match vid {
                0 => VlanDrop::Untagged,
                _ => VlanDrop::NotAllowed(vid),
            };
            return self.refuse(f, why);
        };
        f.pop_vlan_tag();
        f.vlan_prio = tci & !VID_MASK;
        f.ingress = to;
        Next::EthernetInput
    }

    /// An untagged frame: on an access port it stays the port's; on a trunk it is
    /// the native network's, if the trunk has one.
    #[inline]
    fn untagged(&mut self, f: &mut Frame) -> Next {
        if self.trunk(f.ingress).is_none() {
            return Next::EthernetInput;
        }
        match self.untagged_port(f.ingress) {
            Some(p) => {
                f.ingress = p;
                Next::EthernetInput
            }
            None => self.refuse(f, VlanDrop::Untagged),
        }
    }

    /// The port of `port`'s untagged frames: itself, for an access port; a trunk's
    /// native port, if it has one.
    fn untagged_port(&self, port: PortId) -> Option<PortId> {
        match self.trunk(port) {
            None => Some(port),
            Some(t) => t.iter().find(|(v, _)| v.is_none()).map(|&(_, p)| p),
        }
    }

    /// Drops a frame refused on its arrival: counted and traced on the port it came
    /// in on, as ethernet-input would have.
    #[cold]
    fn refuse(&mut self, f: &mut Frame, why: VlanDrop) -> Next {
        let port = f.ingress;
        f.trace = self.tracer.select(port);
        if f.trace != 0 {
            self.open_trace(f);
        }
        if let Some(c) = self.counters.ports.get_mut(port.index()) {
            c.rx_frames += 1;
            c.rx_bytes += f.len() as u64;
        }
        let name = self.port_name(port);
        let (line, drop) = match why {
            VlanDrop::NotAllowed(vlan) => {
                (Trace::NotAllowed { port: name, vlan }, Drop::VlanNotAllowed)
            }
            VlanDrop::Untagged => (Trace::Untagged { port: name }, Drop::VlanUntagged),
            VlanDrop::Stacked(outer) => (Trace::Stacked { port: name, outer }, Drop::VlanStacked),
            VlanDrop::Truncated => (
                Trace::Truncated {
                    port: name,
                    len: f.len(),
                },
                Drop::VlanTruncated,
            ),
        };
        trace!(self, f, line);
        Next::Drop(drop.into())
    }
}

/// Why a frame is refused, with what its trace line says.
#[derive(Clone, Copy)]
enum VlanDrop {
    NotAllowed(u16),
    Untagged,
    Stacked(EtherType),
    Truncated,
}
