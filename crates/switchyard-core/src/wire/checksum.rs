//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! IPv4, ICMP, UDP and TCP all protect their bytes with the same sum: the one's
//! complement of the one's complement sum of 16-bit big-endian words. Two properties
//! make it cheap for a switch:
//!
//! * the sum is order-independent, so it can be accumulated in wide words and folded
//!   at the end ([`sum`], [`fold`]);
//! * when a router changes one field (a TTL, an address, a port), it need not re-read
//!   the packet: RFC 1624 eqn. 3 gives the new checksum from the old one and the old and
//!   new field values, `HC' = ~(~HC + ~m + m')` ([`update_u16`], [`update_u32`]).
//!
//! A note on the two checksums a frame from a TAP may carry: with checksum offload the
//! sender leaves the TCP/UDP checksum field holding only the *pseudo-header* sum, not
//! complemented (virtio-net `NEEDS_CSUM`); the same incremental update applies to it,
//! but without the final complement — see [`update_partial_u32`].

use super::IpProtocol;
use std::net::Ipv4Addr;

/// Adds the bytes of `data` as big-endian 16-bit words to `acc` (a trailing odd byte is
/// padded with a zero, as RFC 1071 says). Returns an unfolded 64-bit accumulator.
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Folds a wide accumulator into 16 bits with end-around carry (not complemented).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to store over `data`: `!fold(sum(0, data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The IPv4 pseudo-header sum used by TCP and UDP (RFC 793, RFC 768): source, destination,
/// protocol and the transport length.
#[inline]
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, len: u16) -> u64 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + u64::from(protocol.0) + u64::from(len)
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changed from `old` to `new`.
#[inline]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// RFC 1624 for a 32-bit field (an IPv4 address): two 16-bit words at once.
#[inline]
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!check)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold(acc)
}

/// The update for a field that holds a *partial* (pseudo-header, not complemented)
/// checksum, as a TCP/UDP checksum does under virtio-net `NEEDS_CSUM`: the stored
/// value is a plain sum, so the old word is subtracted and the new one added without
/// the complement around it.
#[inline]
pub fn update_partial_u32(partial: u16, old: u32, new: u32) -> u16 {
    !update_u32(!partial, old, new)
}

/// Completes a checksum the sender left partial (virtio-net `NEEDS_CSUM`): the field
/// at `start + offset` holds the pseudo-header sum, so summing everything from `start`
/// to the end — field included — and complementing gives the final checksum. Used
/// before a packet is fragmented or otherwise leaves the offload path. Returns false
/// if the offsets do not fit the frame.
pub fn complete_partial(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if at + 2 > frame.len() || start > frame.len() {
        return false;
    }
    let mut c = checksum(&frame[start..]);
    if offset == 6 && c == 0 {
        // UDP sends an all-zero result as 0xffff (0 means "no checksum").
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// True if `data` (which includes its own checksum field) sums to all ones, i.e. the
/// checksum in it is correct.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    fold(sum(0, data)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // The worked example of RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn completes_a_partial_udp_checksum() {
        // A UDP datagram whose checksum field holds only the pseudo-header sum.
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut udp = vec![0x04, 0x00, 0x08, 0x00, 0x00, 0x0c, 0, 0, 1, 2, 3, 4];
        let partial = fold(pseudo_header_sum(src, dst, IpProtocol::UDP, 12));
        udp[6..8].copy_from_slice(&partial.to_be_bytes());
        assert!(complete_partial(&mut udp, 0, 6));
        // Verify against the full computation.
        let full = fold(sum(pseudo_header_sum(src, dst, IpProtocol::UDP, 12), &udp));
        assert_eq!(full, 0xffff);
        assert!(!complete_partial(&mut udp, 0, 11));
    }

    proptest! {
        #[test]
        fn incremental_u16_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 4..64),
                                              word in 0usize..32, new in any::<u16>()) {
            let len = data.len() & !1;
            data.truncate(len);
            let idx = (word % (len / 2)) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[idx], data[idx + 1]]);
            data[idx..idx + 2].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let inc = update_u16(before, old, new);
            // One's complement has two zeros (0x0000 and 0xffff); both verify the same.
            prop_assert!(inc == after || (inc == 0xffff && after == 0) || (inc == 0 && after == 0xffff));
        }

        #[test]
        fn incremental_u32_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                              new in any::<u32>()) {
            let len = data.len() & !3;
            data.truncate(len);
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            data[0..4].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let inc = update_u32(before, old, new);
            prop_assert!(inc == after || (inc == 0xffff && after == 0) || (inc == 0 && after == 0xffff));
        }

        #[test]
        fn partial_update_matches_pseudo_header(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                                new_src in any::<[u8; 4]>(), len in any::<u16>()) {
            let (src, dst, new_src) = (Ipv4Addr::from(src), Ipv4Addr::from(dst), Ipv4Addr::from(new_src));
            let before = fold(pseudo_header_sum(src, dst, IpProtocol::TCP, len));
            let after = fold(pseudo_header_sum(new_src, dst, IpProtocol::TCP, len));
            let inc = update_partial_u32(before, u32::from(src), u32::from(new_src));
            prop_assert!(inc == after || (inc == 0xffff && after == 0) || (inc == 0 && after == 0xffff));
        }
    }
}
