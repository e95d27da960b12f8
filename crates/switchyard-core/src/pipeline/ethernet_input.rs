//! Stage `ethernet-input`: the first look at every received frame.
//!
//! Counts the frame on its port, selects it for tracing, and refuses what no bridge
//! may forward (as the kernel's `br_handle_frame` does):
//! * [`DropReason::Truncated`] — shorter than an Ethernet header;
//! * [`DropReason::GroupSourceMac`], [`DropReason::ZeroSourceMac`] — a source address
//!   that cannot belong to one host;
//! * [`DropReason::OwnSourceMac`] — a frame claiming to come from switchyard's own
//!   gateway MAC (spoofed, or looped back);
//! * [`DropReason::FrameTooLong`] — a payload over the network's MTU that is not an
//!   offload super-frame (which is big on purpose and segmented later).
//!
//! Trace: `ethernet-input: port a: 02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff ARP, 42 bytes`

use super::trace::note;
use super::{DropReason, Frame, Pipeline, L2};
use crate::wire::{ethernet, EthernetFrame};

const STAGE: &str = "ethernet-input";

impl Pipeline {
    pub(super) fn ethernet_input(&mut self, f: &mut Frame) -> Result<L2, DropReason> {
        let port = f.ingress;
        f.trace = self.tracer.select(port);
        let c = &mut self.counters.ports[port.index()];
        c.rx_frames += 1;
        c.rx_bytes += f.len() as u64;

        let Ok(eth) = EthernetFrame::new_checked(f.data()) else {
            note!(
                self,
                f,
                STAGE,
                "port {}: {} bytes, shorter than an Ethernet header: drop",
                self.port_name(port),
                f.len()
            );
            return Err(DropReason::Truncated);
        };
        let (dst, src, ethertype) = (eth.dst(), eth.src(), eth.ethertype());
        // Where the network header starts, past any VLAN tags (a tag cut short leaves
        // nothing after the Ethernet header that a stage could read).
        let l3 = eth
            .payload_type()
            .map_or(ethernet::HEADER_LEN, |(_, at)| at);
        f.l3 = l3 as u16;
        let domain = self.sh.ports[port.index()].domain;
        note!(
            self,
            f,
            STAGE,
            "port {}: {} > {} {}, {} bytes",
            self.port_name(port),
            src,
            dst,
            ethertype,
            f.len()
        );

        if src.is_multicast() {
            note!(self, f, STAGE, "source {} is a group address: drop", src);
            return Err(DropReason::GroupSourceMac);
        }
        if src.is_zero() {
            note!(self, f, STAGE, "source MAC is all zeros: drop");
            return Err(DropReason::ZeroSourceMac);
        }
        let dom = &self.sh.domains[domain.index()].spec;
        if dom.gateway.is_some_and(|g| g.mac == src) {
            note!(
                self,
                f,
                STAGE,
                "source {} is switchyard's own gateway MAC: drop",
                src
            );
            return Err(DropReason::OwnSourceMac);
        }
        let mtu = usize::from(dom.mtu);
        if f.len() > mtu + ethernet::HEADER_LEN && !f.vnet.is_gso() {
            // A tagged frame may be 4 bytes longer per tag for the same payload.
            let payload = f.len() - l3;
            if payload > mtu {
                note!(
                    self,
                    f,
                    STAGE,
                    "payload of {} bytes over the MTU of {}: drop",
                    payload,
                    mtu
                );
                return Err(DropReason::FrameTooLong);
            }
        }
        Ok(L2 {
            dst,
            src,
            ethertype,
            domain,
        })
    }
}
