//! UDP headers (RFC 768).
//!
//! ```text
//!  0               1               2               3
//! +-------------------------------+-------------------------------+
//! |          source port          |       destination port        |
//! +-------------------------------+-------------------------------+
//! |            length             |           checksum            |
//! +-------------------------------+-------------------------------+
//! |                          data ...                             |
//! ```
//! The length covers header and data. The checksum, like TCP's, covers a pseudo-header
//! (addresses, protocol, UDP length) and the datagram, with two twists over IPv4: a
//! checksum of zero means "none was computed" and must stay zero through a rewrite, and
//! a computed zero is therefore sent as 0xffff (its one's-complement twin).
//!
//! The length field is read, not trusted: the IPv4 total length already bounds the
//! datagram, and a UDP super-frame (segmentation offload) carries the length of the
//! whole. As with TCP, the setters write their field only and leave the checksum to
//! the caller, who knows whether it is complete or a partial (offload) sum.

use super::{check_len, checksum, get_u16, set_u16, IpProtocol, WireError};

/// Byte offsets of the fields.
pub(crate) mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view over a UDP datagram (the IPv4 payload).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buf`, failing unless it holds the 8-byte header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        check_len(buf.as_ref(), Self::HEADER_LEN)?;
        Ok(UdpPacket { buf })
    }

    /// Wraps `buf` without a check, for a datagram whose header was already accepted
    /// by [`Self::new_checked`]. An accessor that reaches past the slice panics;
    /// nothing is ever read out of bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        UdpPacket { buf }
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::DST_PORT)
    }

    /// The length field: header and data, in bytes.
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::LENGTH)
    }

    /// True if the length field says there is not even a header.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) < Self::HEADER_LEN
    }

    /// The checksum; zero means the sender computed none.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// The bytes after the header (to the end of the view).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[Self::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buf.as_mut(), field::SRC_PORT, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buf.as_mut(), field::DST_PORT, port);
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buf.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buf.as_mut(), field::CHECKSUM, checksum);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[Self::HEADER_LEN..]
    }

    /// Fills in the checksum of a datagram from `src` to `dst` (RFC 768: over the
    /// pseudo-header and the whole datagram; a computed zero is sent as all ones).
    pub fn fill_checksum(&mut self, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buf.as_ref();
        let acc = checksum::pseudo_header_sum(src, dst, IpProtocol::UDP, b.len() as u16);
        let c = !checksum::fold(checksum::sum(acc, b));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn datagram() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5353, 53)
            .write(&mut v, b"query")
            .unwrap();
        v.split_off(20)
    }

    #[test]
    fn fields_agree_with_etherparse() {
        let b = datagram();
        let u = UdpPacket::new_checked(&b[..]).unwrap();
        let theirs = etherparse::UdpSlice::from_slice(&b).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (5353, 53));
        assert_eq!(u.len(), 13);
        assert!(!u.is_empty());
        assert_eq!(u.len(), theirs.length());
        assert_eq!(u.checksum(), theirs.checksum());
        assert_ne!(u.checksum(), 0, "etherparse computes one");
        assert_eq!(u.payload(), b"query");
    }

    #[test]
    fn setters_round_trip() {
        let mut b = datagram();
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        u.set_src_port(1000);
        u.set_dst_port(2000);
        u.set_len(9);
        u.set_checksum(0);
        u.payload_mut()[0] = b'Q';
        assert_eq!(
            (u.src_port(), u.dst_port(), u.len(), u.checksum()),
            (1000, 2000, 9, 0)
        );
        let theirs = etherparse::UdpSlice::from_slice_lax(&b).unwrap();
        assert_eq!(
            (
                theirs.source_port(),
                theirs.destination_port(),
                theirs.checksum()
            ),
            (1000, 2000, 0)
        );
        assert_eq!(&b[8..], b"Query");
    }

    #[test]
    fn truncation_is_refused() {
        let b = datagram();
        assert!(matches!(
            UdpPacket::new_checked(&b[..7]),
            Err(WireError::Truncated { needed: 8, have: 7 })
        ));
        assert!(UdpPacket::new_checked(&b[..8])
            .unwrap()
            .payload()
            .is_empty());
    }
}
