//! IPv4 fragmentation (RFC 791 section 3.2, RFC 1812 5.2.7): splitting a datagram
//! that does not fit the egress MTU and may be fragmented (DF clear).
//!
//! Every fragment but the last carries a multiple of 8 payload bytes (the offset field
//! counts 8-byte units) and has More Fragments set; the last keeps the original's MF,
//! so fragmenting a fragment works too. Options whose "copied" flag is clear go only
//! into the first fragment.

use crate::wire::{checksum, Ipv4Packet};

/// The payload bytes each fragment carries for a header of `hlen` bytes and an MTU.
pub fn chunk_size(mtu: usize, hlen: usize) -> usize {
    (mtu.saturating_sub(hlen)) & !7
}

/// The options of `header` (a full IPv4 header) that every fragment repeats, padded
/// with End-of-Options to a multiple of 4, written after a 20-byte header copy into
/// `out`. Returns the new header length.
pub fn copied_header(header: &[u8], out: &mut [u8]) -> usize {
    out[..20].copy_from_slice(&header[..20]);
    let mut n = 20;
    let opts = &header[20..];
    let mut i = 0;
    while i < opts.len() {
        let t = opts[i];
        match t {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {
                let len = usize::from(*opts.get(i + 1).unwrap_or(&0));
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if t & 0x80 != 0 {
                    out[n..n + len].copy_from_slice(&opts[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    while n % 4 != 0 {
        out[n] = 0;
        n += 1;
    }
    out[0] = (out[0] & 0xf0) | (n / 4) as u8;
    n
}

/// Sets total length, offset and MF of the header at the start of `ip` and refreshes
/// its checksum. `offset` is in bytes from the start of the original datagram.
pub fn finish_header(
    ip: &mut [u8],
    hlen: usize,
    payload: usize,
    offset: usize,
    more: bool,
    dont_fragment: bool,
) {
    ip[2..4].copy_from_slice(&((hlen + payload) as u16).to_be_bytes());
    let mut ff = (offset / 8) as u16;
    if more {
        ff |= 0x2000;
    }
    if dont_fragment {
        ff |= 0x4000;
    }
    ip[6..8].copy_from_slice(&ff.to_be_bytes());
    ip[10..12].fill(0);
    let c = checksum::checksum(&ip[..hlen]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The original datagram's own offset and MF flag.
pub fn original_position<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> (usize, bool) {
    (ip.frag_offset(), ip.more_fragments())
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

    #[test]
    fn only_copied_options_repeat() {
        // Header with options: NOP, Record Route (type 7, not copied, len 7), a
        // copied option type 0x83 (loose source route) len 7, EOL padding.
        let mut h = vec![0u8; 40];
        h[0] = 0x4a; // IHL 10
        let opts = [
            1, 7, 7, 4, 0, 0, 0, 0, 0x83, 7, 4, 10, 0, 0, 1, 0, 0, 0, 0, 0,
        ];
        h[20..40].copy_from_slice(&opts);
        let mut out = [0u8; 60];
        let n = copied_header(&h, &mut out);
        assert_eq!(n, 28);
        assert_eq!(out[0] & 0x0f, 7);
        assert_eq!(&out[20..27], &[0x83, 7, 4, 10, 0, 0, 1]);
        assert_eq!(out[27], 0);
    }
}
