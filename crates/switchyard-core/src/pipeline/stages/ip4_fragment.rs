//! Stage `ip4-fragment`: cutting a datagram that does not fit the egress MTU and may
//! be fragmented (DF clear), as RFC 791 section 3.2 and RFC 1812 5.2.7 describe.
//!
//! Every fragment but the last carries a multiple of 8 payload bytes (the offset field
//! counts 8-byte units) and has More Fragments set; the last keeps the original's MF,
//! so fragmenting a fragment works too. Options whose "copied" flag is clear go only
//! into the first fragment ([`crate::wire::Ipv4Packet::copy_for_fragment`]). A
//! checksum left to offload cannot be completed by the receiver once the datagram is
//! in pieces, so it is completed first.
//!
//! The frame keeps the first fragment; the others are made in the emitter's buffers
//! and leave the same way. All or nothing: if the buffers do not suffice, the packet
//! is dropped whole (counted as `ip4-neighbor`'s `no_buffer`, the reason for every
//! packet a routed path has no buffer for).
//!
//! Next: the packet's way out, or drop. Trace:
//! `ip4-fragment: 3000 bytes over MTU 1500: 3 fragments`

use super::ip4_neighbor;
use super::ip4_output::Via;
use crate::pipeline::counters::counted;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Emitter, Frame, Pipeline};
use crate::wire::{checksum, ipv4, Ipv4Packet};
use std::fmt;

pub const NAME: &str = "ip4-fragment";

counted! {
    /// What ip4-fragment counts.
    pub enum Event: Event in NAME {
        Fragmented => ("fragmented", "packets fragmented to fit the egress MTU"),
        FragmentsSent => ("fragments_sent", "fragments made"),
    }
}

/// Where a packet goes from ip4-fragment.
pub enum Next {
    /// The first fragment, the others having been emitted to leave the same way.
    Send(Via),
    Drop(DropReason),
}

/// What ip4-fragment says about a packet.
pub enum Trace {
    Fragmented {
        len: usize,
        mtu: usize,
        count: usize,
    },
    CannotFragment,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Fragmented { len, mtu, count } => {
                write!(f, "{len} bytes over MTU {mtu}: {count} fragments")
            }
            Trace::CannotFragment => f.write_str("cannot fragment: drop"),
        }
    }
}

impl TraceLine for Trace {
    fn stage(&self) -> &'static str {
        NAME
    }
}

/// The payload bytes each fragment carries for a header of `hlen` bytes and an MTU.
fn chunk_size(mtu: usize, hlen: usize) -> usize {
    (mtu.saturating_sub(hlen)) & !7
}

/// Makes `ip` the header of a fragment: `total` bytes long (header included), at
/// `offset` bytes into the original datagram, with More Fragments as `more`; the
/// checksum is computed afresh.
fn finish_header(ip: &mut Ipv4Packet<&mut [u8]>, total: usize, offset: usize, more: bool) {
    ip.set_total_len(total as u16);
    ip.set_fragment(offset, more, false);
    ip.fill_checksum();
}

impl Pipeline {
    /// Splits the IPv4 packet in `f` to fit `mtu`: `f` keeps the first fragment, the
    /// others are emitted to leave by `via`; `out` keeps `reserve` buffers free for
    /// the caller.
    pub(crate) fn ip4_fragment(
        &mut self,
        f: &mut Frame,
        via: Via,
        mtu: usize,
        out: &mut Emitter,
        reserve: usize,
    ) -> Next {
        if f.vnet.needs_csum() {
            let (start, off) = (
                usize::from(f.vnet.csum_start),
                usize::from(f.vnet.csum_offset),
            );
            checksum::complete_partial(f.data_mut(), start, off);
            f.vnet = Default::default();
        }
        let l3 = usize::from(f.l3);
        let ip = f.ipv4();
        let (len, hlen) = (ip.total_len(), ip.header_len());
        let payload = len - hlen;
        let (orig_off, orig_mf) = (ip.frag_offset(), ip.more_fragments());
        let first = chunk_size(mtu, hlen);
        let mut later_hdr = [0u8; ipv4::MAX_HEADER_LEN];
        let later_hlen = ip.copy_for_fragment(&mut later_hdr);
        let later = chunk_size(mtu, later_hlen);
        let count = 1 + payload.saturating_sub(first).div_ceil(later.max(1));
        if first == 0 || later == 0 || out.available() < count - 1 + reserve {
            trace!(self, f, Trace::CannotFragment);
            return Next::Drop(ip4_neighbor::Drop::NoBuffer.into());
        }
        let (link, body) = (&f.data()[..l3], ip.payload());
        let mut pos = first;
        while pos < payload {
            let n = later.min(payload - pos);
            let slot = out.alloc().expect("counted above");
            slot.set_len(l3 + later_hlen + n);
            slot.l3 = f.l3;
            let b = slot.data_mut();
            // The same link header, the header later fragments carry, a piece of payload.
            b[..l3].copy_from_slice(link);
            b[l3..l3 + later_hlen].copy_from_slice(&later_hdr[..later_hlen]);
            b[l3 + later_hlen..].copy_from_slice(&body[pos..pos + n]);
            let more = pos + n < payload || orig_mf;
            finish_header(&mut slot.ipv4_mut(), later_hlen + n, orig_off + pos, more);
            slot.ingress = f.ingress;
            slot.trace = f.trace;
            slot.action = via.action();
            slot.tunnel = f.tunnel;
            pos += n;
        }
        finish_header(&mut f.ipv4_mut(), hlen + first, orig_off, true);
        f.set_len(l3 + hlen + first);
        self.counters.event(Event::Fragmented);
        self.counters.event_n(Event::FragmentsSent, count as u64);
        trace!(self, f, Trace::Fragmented { len, mtu, count });
        Next::Send(via)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_multiples_of_eight() {
        assert_eq!(chunk_size(1500, 20), 1480);
        assert_eq!(chunk_size(576, 24), 552);
        assert_eq!(chunk_size(1006, 20), 984);
    }
}
