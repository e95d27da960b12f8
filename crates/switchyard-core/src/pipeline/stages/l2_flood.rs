//! Stage `l2-flood`: a frame for everyone, or for a MAC the FDB does not know.
//!
//! Broadcast, multicast and unknown unicast go to every port of the bridge domain but
//! the ingress port (split horizon, as the kernel bridge and every switch do). With no
//! other port there is nowhere to send it — unless switchyard itself already answered
//! it (a broadcast ARP for the gateway), in which case the frame was consumed.
//!
//! An L3-only network (ipvlan L3 mode) floods nothing: a broadcast ARP is for
//! switchyard alone, which answered it in `arp-input`, and other broadcasts and
//! multicasts are dropped. (Unknown unicast never gets here on such a network:
//! `l2-forward` refuses unicast not sent to the gateway.)
//!
//! A network with `icc = false` floods nothing either: every other port is another
//! endpoint's. A broadcast ARP for the gateway was answered in `arp-input` and is
//! consumed; anything else is dropped (`icc_disabled`, which `l2-forward` declares).
//!
//! Next: the domain's ports, or consumed, or drop. Trace:
//! `l2-flood: broadcast to 2 ports of bridge default: b, c`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::stages::l2_forward;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DomainId, DomainMode, DropReason, Frame, Pipeline};
use crate::wire::{EtherType, MacAddr};
use std::fmt;

pub const NAME: &str = "l2-flood";

counted! {
    /// Why l2-flood drops a frame.
    pub enum Drop: DropReason in NAME {
        NoEgressPort => ("no_egress_port", "flooded, but no other port in the bridge domain"),
        L3NoFlood => ("l3_no_flood", "an L3 network does not flood broadcast or multicast"),
    }
}

/// Where a frame goes from l2-flood.
pub enum Next {
    /// To every port of the domain but the ingress port.
    Flood(DomainId),
    /// switchyard answered it, and there is no one else to send it to.
    Consume,
    Drop(DropReason),
}

/// Why a frame is flooded: its destination.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    Broadcast,
    Multicast,
    UnknownUnicast,
}

impl Cause {
    fn of(dst: MacAddr) -> Cause {
        if dst.is_broadcast() {
            Cause::Broadcast
        } else if dst.is_multicast() {
            Cause::Multicast
        } else {
            Cause::UnknownUnicast
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Broadcast => "broadcast",
            Cause::Multicast => "multicast",
            Cause::UnknownUnicast => "unknown unicast",
        })
    }
}

/// What l2-flood says about a frame.
pub enum Trace<'a> {
    Flood {
        cause: Cause,
        bridge: &'a str,
        ports: Vec<&'a str>,
    },
    Answered {
        cause: Cause,
        bridge: &'a str,
    },
    NoOtherPort {
        cause: Cause,
        bridge: &'a str,
    },
    L3ArpNotFlooded,
    L3NoFlood,
    IccAnswered {
        cause: Cause,
    },
    IccDisabled {
        cause: Cause,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Flood {
                cause,
                bridge,
                ports,
            } => write!(
                f,
                "{cause} to {} ports of bridge {bridge}: {}",
                ports.len(),
                ports.join(", ")
            ),
            Trace::Answered { cause, bridge } => write!(
                f,
                "{cause}: no other port in bridge {bridge}; answered by switchyard"
            ),
            Trace::NoOtherPort { cause, bridge } => {
                write!(f, "{cause}: no other port in bridge {bridge}: drop")
            }
            Trace::L3ArpNotFlooded => {
                f.write_str("L3 network: ARP handled by switchyard alone, not flooded")
            }
            Trace::L3NoFlood => f.write_str("L3 network: no flooding: drop"),
            Trace::IccAnswered { cause } => write!(
                f,
                "{cause}: icc is off, not flooded to other endpoints; answered by switchyard"
            ),
            Trace::IccDisabled { cause } => {
                write!(
                    f,
                    "{cause}: icc is off, not flooded to other endpoints: drop"
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

impl Pipeline {
    /// Floods `f` over its domain. `answered`: `arp-input` took it first and answered.
    pub(crate) fn l2_flood(&mut self, f: &Frame, l2: &L2, answered: bool) -> Next {
        let d = &self.sh.domains[l2.domain.index()];
        if d.spec.mode == DomainMode::L3 {
            if l2.ethertype == EtherType::ARP {
                trace!(self, f, Trace::L3ArpNotFlooded);
                return Next::Consume;
            }
            trace!(self, f, Trace::L3NoFlood);
            return Next::Drop(Drop::L3NoFlood.into());
        }
        let cause = Cause::of(l2.dst);
        if !d.spec.guard.icc {
            if answered {
                trace!(self, f, Trace::IccAnswered { cause });
                return Next::Consume;
            }
            trace!(self, f, Trace::IccDisabled { cause });
            return Next::Drop(l2_forward::Drop::IccDisabled.into());
        }
        // The ingress port is always a member of its own domain.
        if d.ports.len() <= 1 {
            if answered {
                trace!(
                    self,
                    f,
                    Trace::Answered {
                        cause,
                        bridge: &self.sh.domains[l2.domain.index()].spec.name,
                    }
                );
                return Next::Consume;
            }
            trace!(
                self,
                f,
                Trace::NoOtherPort {
                    cause,
                    bridge: &self.sh.domains[l2.domain.index()].spec.name,
                }
            );
            return Next::Drop(Drop::NoEgressPort.into());
        }
        trace!(self, f, {
            let d = &self.sh.domains[l2.domain.index()];
            Trace::Flood {
                cause,
                bridge: &d.spec.name,
                ports: d
                    .ports
                    .iter()
                    .filter(|&&p| p != f.ingress)
                    .map(|&p| self.sh.ports[p.index()].name.as_str())
                    .collect(),
            }
        });
        Next::Flood(l2.domain)
    }
}
