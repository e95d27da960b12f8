//! Frames as the pipeline sees them: an owned buffer plus the little metadata a
//! switch carries along (ingress port, offload header, verdict, trace id, and where
//! its headers are).
//!
//! Headers are parsed once. ethernet-input records where the network header starts
//! (`l3`, past any VLAN tags), ip4-input validates the IPv4 header and records where
//! the transport header starts (`l4`); every later stage reads and writes the headers
//! through views made on those offsets without checking them again
//! ([`Frame::ipv4`], [`Frame::ethernet_mut`], ...).
//!
//! Buffers are allocated once, at start, and recycled forever: the dataplane reads
//! into them, the pipeline rewrites them in place, the dataplane writes them out. A
//! buffer is large enough for the biggest thing a TAP can hand over (a 64 KB TCP
//! super-frame with offloads on) and keeps [`HEADROOM`] bytes free in front of the
//! Ethernet header, so the virtio-net header (or, later, an encapsulation) can be put
//! in front without moving the frame.

use super::conntrack::CtRef;
use super::{Action, DomainId, PortId};
use crate::wire::{ethernet, EthernetFrame, Ipv4Packet, VirtioNetHdr};
use std::net::Ipv4Addr;

/// Free bytes kept before the Ethernet header.
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds: an IPv4 packet of 65535 bytes behind an Ethernet
/// header with two VLAN tags, rounded up.
pub const MAX_FRAME_LEN: usize = 65535 + ethernet::HEADER_LEN + 2 * ethernet::TAG_LEN + 7;
/// Bytes allocated per buffer.
pub const BUFFER_LEN: usize = HEADROOM + MAX_FRAME_LEN;

/// One frame and its metadata.
pub struct Frame {
    buf: Box<[u8]>,
    start: usize,
    len: usize,
    /// Offload metadata that arrived with the frame (all zero when there was none).
    pub vnet: VirtioNetHdr,
    /// The port the frame came in on, or [`PortId::LOCAL`] for frames switchyard made.
    pub ingress: PortId,
    /// The verdict, set by the pipeline.
    pub action: Action,
    /// Non-zero when this frame is being traced: the packet number in the trace.
    pub trace: u32,
    /// The remote tunnel endpoint (VTEP) of an overlay network the frame is tied to.
    /// On receive: the VTEP it came from, set by an overlay port (`None` from any
    /// other port: [`Frame::set_bounds`] clears it). After the pipeline:
    /// the VTEP it goes to when it leaves by an overlay port — set by whichever stage
    /// picked the port from the FDB, kept for a reply out of the ingress port, `None`
    /// (every remote VTEP, head-end replication) for a flood or an unknown MAC.
    pub tunnel: Option<Ipv4Addr>,
    /// The tracked flow the packet belongs to, when it is translated (NAT); the rewrite
    /// itself happens on output.
    pub ct: Option<CtRef>,
    /// The packet is an ICMP error about that flow (its quote is translated too).
    pub ct_related: bool,
    /// The priority bits (PCP and DEI: the top four bits of the tag control field)
    /// of the 802.1Q tag the frame arrived with, kept by vlan-input when it takes
    /// the tag off, for the tag a trunk's port puts back on; zero for a frame that
    /// came untagged, was routed, or was made by switchyard.
    pub vlan_prio: u16,
    /// Offset in [`Frame::data`] of the network header: the end of the Ethernet header
    /// and its VLAN tags. Set by ethernet-input.
    pub(crate) l3: u16,
    /// Offset in [`Frame::data`] of the first byte after the IPv4 header and its
    /// options: the transport header, unless the packet is a later fragment. Set by
    /// ip4-input once the IPv4 header is valid; zero before.
    pub(crate) l4: u16,
}

impl Frame {
    /// Allocates a buffer of [`BUFFER_LEN`] bytes. Only done when pools are filled.
    pub fn new() -> Frame {
        Frame {
            buf: vec![0u8; BUFFER_LEN].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            vnet: VirtioNetHdr::default(),
            ingress: PortId::LOCAL,
            action: Action::Consume,
            trace: 0,
            tunnel: None,
            ct: None,
            ct_related: false,
            vlan_prio: 0,
            l3: 0,
            l4: 0,
        }
    }

    /// A frame holding a copy of `bytes`, for tests and tools.
    pub fn from_bytes(ingress: PortId, bytes: &[u8]) -> Frame {
        let mut f = Frame::new();
        f.load(bytes);
        f.ingress = ingress;
        f
    }

    /// Clears the metadata and sets the frame to `bytes` (copied after the headroom).
    pub fn load(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(MAX_FRAME_LEN);
        self.buf[HEADROOM..HEADROOM + n].copy_from_slice(&bytes[..n]);
        self.reset(n);
    }

    /// Clears the metadata and sets the frame to the `len` bytes after the headroom.
    pub fn reset(&mut self, len: usize) {
        self.start = HEADROOM;
        self.len = len.min(MAX_FRAME_LEN);
        self.vnet = VirtioNetHdr::default();
        self.ingress = PortId::LOCAL;
        self.action = Action::Consume;
        self.trace = 0;
        self.tunnel = None;
        self.forget_pipeline_meta();
    }

    /// Clears what the pipeline learned about the last packet in this buffer (its
    /// flow, its header offsets): a recycled buffer must not carry them into the next.
    #[inline]
    pub(crate) fn forget_pipeline_meta(&mut self) {
        self.ct = None;
        self.ct_related = false;
        self.vlan_prio = 0;
        self.l3 = 0;
        self.l4 = 0;
    }

    /// The Ethernet header, as ethernet-input accepted it.
    #[inline]
    pub(crate) fn ethernet(&self) -> EthernetFrame<&[u8]> {
        EthernetFrame::new_unchecked(self.data())
    }

    #[inline]
    pub(crate) fn ethernet_mut(&mut self) -> EthernetFrame<&mut [u8]> {
        EthernetFrame::new_unchecked(self.data_mut())
    }

    /// The bytes from the network header on.
    #[inline]
    pub(crate) fn network(&self) -> &[u8] {
        &self.data()[usize::from(self.l3)..]
    }

    #[inline]
    pub(crate) fn network_mut(&mut self) -> &mut [u8] {
        let l3 = usize::from(self.l3);
        &mut self.data_mut()[l3..]
    }

    /// The IPv4 packet, as ip4-input validated it (only for frames that passed it).
    #[inline]
    pub(crate) fn ipv4(&self) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_unchecked(self.network())
    }

    #[inline]
    pub(crate) fn ipv4_mut(&mut self) -> Ipv4Packet<&mut [u8]> {
        Ipv4Packet::new_unchecked(self.network_mut())
    }

    /// The frame's bytes, from the Ethernet header on.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shrinks or grows the frame (within the buffer); new bytes hold whatever the
    /// buffer held before.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len() - self.start);
    }

    /// The whole buffer, for a port to read into. Follow with [`Frame::set_bounds`].
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Sets where the frame a port just read starts and how long it is within the
    /// buffer. The buffer now holds a new frame: the tunnel the last one came by is
    /// forgotten (a tunnel port says its own after this).
    #[inline]
    pub fn set_bounds(&mut self, start: usize, len: usize) {
        self.tunnel = None;
        let start = start.min(self.buf.len());
        self.start = start;
        self.len = len.min(self.buf.len() - start);
    }

    /// Offset of the Ethernet header in the buffer (the free space in front of it).
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// The frame with `n` bytes in front of it (which must fit in the headroom), for a
    /// port that prepends a header such as the virtio-net one.
    #[inline]
    pub fn with_prefix_mut(&mut self, n: usize) -> &mut [u8] {
        let from = self.start - n;
        &mut self.buf[from..self.start + self.len]
    }

    /// The frame with the `n` bytes in front of it that a port wrote there (see
    /// [`Frame::with_prefix_mut`]), for a write that is handed to the kernel later.
    #[inline]
    pub fn with_prefix(&self, n: usize) -> &[u8] {
        let from = self.start - n;
        &self.buf[from..self.start + self.len]
    }
}

/// 802.1Q: tags on and off in place, moving the two MAC addresses (12 bytes) rather
/// than the payload, which the buffer's headroom allows.
impl Frame {
    /// Takes off the 802.1Q tag that follows the MAC addresses and returns its tag
    /// control field. The frame then starts 4 bytes later; the offload header's
    /// checksum position, counted from the frame's start, moves with it. The frame must hold a
    /// whole tag (`ethernet::HEADER_LEN + ethernet::TAG_LEN` bytes).
    pub fn pop_vlan_tag(&mut self) -> u16 {
        let s = self.start;
        let tci = u16::from_be_bytes([self.buf[s + 14], self.buf[s + 15]]);
        self.buf.copy_within(s..s + 12, s + ethernet::TAG_LEN);
        self.start += ethernet::TAG_LEN;
        self.len -= ethernet::TAG_LEN;
        self.shift_vnet(false);
        tci
    }

    /// Puts an 802.1Q tag with control field `tci` after the MAC addresses (the
    /// frame starts 4 bytes earlier), unless the headroom left in front of the frame
    /// could not then still take a virtio-net header: false, and nothing changed.
    pub fn push_vlan_tag(&mut self, tci: u16) -> bool {
        if self.start < ethernet::TAG_LEN + VirtioNetHdr::LEN || self.len < 12 {
            return false;
        }
        let s = self.start - ethernet::TAG_LEN;
        self.buf.copy_within(s + 4..s + 16, s);
        self.buf[s + 12..s + 14].copy_from_slice(&ethernet::EtherType::VLAN.0.to_be_bytes());
        self.buf[s + 14..s + 16].copy_from_slice(&tci.to_be_bytes());
        self.start = s;
        self.len += ethernet::TAG_LEN;
        self.shift_vnet(true);
        true
    }

    /// Moves the offload header's checksum position by a tag's length, later or
    /// earlier. The header length stays: it is a hint of the headers' size that the
    /// kernel counts without the tag (a TAP hands over `skb_headlen`, the tag being
    /// metadata there), while the checksum position is an offset into the bytes.
    fn shift_vnet(&mut self, later: bool) {
        if self.vnet.needs_csum() {
            let tag = ethernet::TAG_LEN as u16;
            let at = self.vnet.csum_start;
            self.vnet.csum_start = if later {
                at.saturating_add(tag)
            } else {
                at.saturating_sub(tag)
            };
        }
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::new()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.len)
            .field("ingress", &self.ingress)
            .field("action", &self.action)
            .field("vnet", &self.vnet)
            .finish()
    }
}

/// Frames switchyard itself originates while processing a batch (an ARP reply to a
/// broadcast request that is also flooded, later ARP requests and ICMP errors). Its
/// buffers are allocated once; when they run out, the packet is not made and the
/// event counted.
pub struct Emitter {
    frames: Vec<Frame>,
    used: usize,
}

impl Emitter {
    pub fn with_capacity(n: usize) -> Emitter {
        Emitter {
            frames: (0..n).map(|_| Frame::new()).collect(),
            used: 0,
        }
    }

    /// A cleared frame to fill, or `None` when every buffer is in use.
    pub fn alloc(&mut self) -> Option<&mut Frame> {
        let f = self.frames.get_mut(self.used)?;
        self.used += 1;
        f.reset(0);
        Some(f)
    }

    /// The frames made since the last [`Emitter::clear`].
    pub fn frames(&self) -> &[Frame] {
        &self.frames[..self.used]
    }

    /// Buffers still free.
    pub fn available(&self) -> usize {
        self.frames.len() - self.used
    }

    /// The `i`-th frame made since the last [`Emitter::clear`].
    pub fn frame_mut(&mut self, i: usize) -> &mut Frame {
        assert!(i < self.used, "frame {i} was not emitted");
        &mut self.frames[i]
    }

    pub fn clear(&mut self) {
        self.used = 0;
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

/// Where a frame leaves, as computed by [`super::Pipeline::egress`].
#[derive(Debug, Clone, Copy)]
pub enum Egress<'a> {
    None,
    One(PortId),
    /// Every port of a domain except one.
    Flood {
        ports: &'a [PortId],
        except: PortId,
        domain: DomainId,
    },
}

impl Iterator for Egress<'_> {
    type Item = PortId;

    fn next(&mut self) -> Option<PortId> {
        match self {
            Egress::None => None,
            Egress::One(p) => {
                let p = *p;
                *self = Egress::None;
                Some(p)
            }
            Egress::Flood { ports, except, .. } => loop {
                let (&first, rest) = ports.split_first()?;
                *ports = rest;
                if first != *except {
                    return Some(first);
                }
            },
        }
    }
}
