//! IPv4 fragmentation (RFC 791 section 3.2, RFC 1812 5.2.7): splitting a datagram
//! that does not fit the egress MTU and may be fragmented (DF clear).
//!
//! Every fragment but the last carries a multiple of 8 payload bytes (the offset field
//! counts 8-byte units) and has More Fragments set; the last keeps the original's MF,
//! so fragmenting a fragment works too. Options whose "copied" flag is clear go only
//! into the first fragment (see [`crate::wire::Ipv4Packet::copy_for_fragment`]).

use crate::wire::Ipv4Packet;

/// The payload bytes each fragment carries for a header of `hlen` bytes and an MTU.
pub fn chunk_size(mtu: usize, hlen: usize) -> usize {
    (mtu.saturating_sub(hlen)) & !7
}

/// Makes `ip` the header of a fragment: `total` bytes long (header included), at
/// `offset` bytes into the original datagram, with More Fragments as `more`; the
/// checksum is computed afresh.
pub fn finish_header(ip: &mut Ipv4Packet<&mut [u8]>, total: usize, offset: usize, more: bool) {
    ip.set_total_len(total as u16);
    ip.set_fragment(offset, more, false);
    ip.fill_checksum();
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
