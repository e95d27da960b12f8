//! Stage `ethernet-input`: the first look at every received frame.
//!
//! Counts the frame on its port, selects it for tracing, and refuses a frame from a
//! port that is not one of the layout's (vacant, or known only to a newer layout:
//! see "Changing the layout at runtime" in the pipeline's module) and what no bridge
//! may forward (as the kernel's `br_handle_frame` does): a frame shorter than an
//! Ethernet header, a source address that cannot belong to one host (a group address,
//! all zeros), a frame claiming to come from switchyard's own gateway MAC (spoofed, or
//! looped back), and a payload over the network's MTU that is not an offload
//! super-frame (which is big on purpose and segmented later), and an offload header
//! that cannot be right (a segment size below 64 bytes or over the MTU, offsets past
//! the end of the frame: see [`vnet_check`]).
//!
//! It records where the network header starts, past any VLAN tags (`Frame::l3`), and
//! hands the addresses and type on to every later stage ([`L2`]).
//!
//! Next: `l2-learn`, or drop. Trace:
//! `ethernet-input: port a: 02:42:ac:11:00:02 > ff:ff:ff:ff:ff:ff ARP, 42 bytes`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline};
use crate::wire::virtio_net::{GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4};
use crate::wire::{ethernet, EtherType, EthernetFrame, MacAddr, VirtioNetHdr};
use std::fmt;

pub const NAME: &str = "ethernet-input";

counted! {
    /// Why ethernet-input drops a frame.
    pub enum Drop: DropReason in NAME {
        Truncated => ("truncated", "frame shorter than an Ethernet header"),
        GroupSourceMac => ("group_source_mac", "source MAC is multicast or broadcast"),
        ZeroSourceMac => ("zero_source_mac", "source MAC is all zeros"),
        OwnSourceMac => ("own_source_mac", "source MAC is switchyard's own gateway MAC"),
        FrameTooLong => ("frame_too_long", "frame longer than the network MTU allows"),
        BadVnetHeader => ("bad_vnet_header", "offload (virtio-net) header impossible for the frame: segment size, checksum or header offsets"),
        PortGone => ("port_gone", "arrived on a port that is not (or no longer) in the layout"),
    }
}

/// Where a frame goes from ethernet-input.
pub enum Next {
    /// Accepted, with what its Ethernet header says.
    L2Learn(L2),
    Drop(DropReason),
}

/// What ethernet-input says about a frame.
pub enum Trace<'a> {
    Truncated {
        port: &'a str,
        len: usize,
    },
    Frame {
        port: &'a str,
        src: MacAddr,
        dst: MacAddr,
        ethertype: EtherType,
        len: usize,
    },
    GroupSource(MacAddr),
    ZeroSource,
    OwnSource(MacAddr),
    TooLong {
        payload: usize,
        mtu: usize,
    },
    BadVnet(&'static str),
    /// The port's number: a vacant slot has no name.
    PortGone(u16),
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Truncated { port, len } => write!(
                f,
                "port {port}: {len} bytes, shorter than an Ethernet header: drop"
            ),
            Trace::Frame {
                port,
                src,
                dst,
                ethertype,
                len,
            } => write!(f, "port {port}: {src} > {dst} {ethertype}, {len} bytes"),
            Trace::GroupSource(src) => write!(f, "source {src} is a group address: drop"),
            Trace::ZeroSource => f.write_str("source MAC is all zeros: drop"),
            Trace::OwnSource(src) => {
                write!(f, "source {src} is switchyard's own gateway MAC: drop")
            }
            Trace::TooLong { payload, mtu } => {
                write!(f, "payload of {payload} bytes over the MTU of {mtu}: drop")
            }
            Trace::BadVnet(why) => write!(f, "offload header: {why}: drop"),
            Trace::PortGone(port) => write!(f, "port #{port} is not in the layout: drop"),
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

/// Smallest segment size accepted in a super-frame: below it a 64 KB super-frame
/// would become over a thousand frames for a port that cannot take it whole.
pub const MIN_GSO_SIZE: u16 = 64;

/// Whether the offload header that came with a frame of `len` bytes, on a network of
/// IP MTU `mtu`, describes work that can be done: a segment size from
/// [`MIN_GSO_SIZE`] to the MTU, a header length and a checksum position inside the
/// frame. The kernel never hands over anything else; a frame that claims otherwise
/// would make switchyard segment it into thousands of frames, or write a checksum
/// past its end.
pub fn vnet_check(vnet: &VirtioNetHdr, len: usize, mtu: usize) -> Result<(), &'static str> {
    if vnet.needs_csum() && usize::from(vnet.csum_start) + usize::from(vnet.csum_offset) + 2 > len {
        return Err("checksum position outside the frame");
    }
    if vnet.is_gso() {
        if !matches!(
            vnet.gso_type & !GSO_ECN,
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP | GSO_UDP_L4
        ) {
            return Err("unknown segmentation type");
        }
        if vnet.gso_size < MIN_GSO_SIZE {
            return Err("segment size below 64 bytes");
        }
        if usize::from(vnet.gso_size) > mtu {
            return Err("segment size over the network MTU");
        }
        if usize::from(vnet.hdr_len) > len {
            return Err("header length past the end of the frame");
        }
    }
    Ok(())
}

impl Pipeline {
    pub(crate) fn ethernet_input(&mut self, f: &mut Frame) -> Next {
        let port = f.ingress;
        f.trace = self.tracer.select(port);
        if f.trace != 0 {
            self.open_trace(f);
        }
        // Counted on its port, if this worker has counters for it (a port of a newer
        // layout does not yet); the drop is booked the same way.
        if let Some(c) = self.counters.ports.get_mut(port.index()) {
            c.rx_frames += 1;
            c.rx_bytes += f.len() as u64;
        }
        // The dataplane never reads from a vacant port, but a what-if may name one,
        // and a worker not yet on the newest layout may see a port it lacks.
        let Some(domain) = self.port_domain(port) else {
            trace!(self, f, Trace::PortGone(port.0));
            return Next::Drop(Drop::PortGone.into());
        };

        let Ok(eth) = EthernetFrame::new_checked(f.data()) else {
            trace!(
                self,
                f,
                Trace::Truncated {
                    port: self.port_name(port),
                    len: f.len(),
                }
            );
            return Next::Drop(Drop::Truncated.into());
        };
        let (dst, src, ethertype) = (eth.dst(), eth.src(), eth.ethertype());
        // Where the network header starts, past any VLAN tags (a tag cut short leaves
        // nothing after the Ethernet header that a stage could read).
        let l3 = eth
            .payload_type()
            .map_or(ethernet::HEADER_LEN, |(_, at)| at);
        f.l3 = l3 as u16;
        trace!(
            self,
            f,
            Trace::Frame {
                port: self.port_name(port),
                src,
                dst,
                ethertype,
                len: f.len(),
            }
        );

        if src.is_multicast() {
            trace!(self, f, Trace::GroupSource(src));
            return Next::Drop(Drop::GroupSourceMac.into());
        }
        if src.is_zero() {
            trace!(self, f, Trace::ZeroSource);
            return Next::Drop(Drop::ZeroSourceMac.into());
        }
        let dom = &self.sh.domains[domain.index()].spec;
        if dom.gateway.is_some_and(|g| g.mac == src) {
            trace!(self, f, Trace::OwnSource(src));
            return Next::Drop(Drop::OwnSourceMac.into());
        }
        let mtu = usize::from(dom.mtu);
        // A tagged frame may be 4 bytes longer per tag for the same payload.
        if f.len() > mtu + ethernet::HEADER_LEN && !f.vnet.is_gso() && f.len() - l3 > mtu {
            trace!(
                self,
                f,
                Trace::TooLong {
                    payload: f.len() - l3,
                    mtu,
                }
            );
            return Next::Drop(Drop::FrameTooLong.into());
        }
        if let Err(why) = vnet_check(&f.vnet, f.len(), mtu) {
            trace!(self, f, Trace::BadVnet(why));
            return Next::Drop(Drop::BadVnetHeader.into());
        }
        Next::L2Learn(L2 {
            dst,
            src,
            ethertype,
            domain,
        })
    }
}
