//! ICMP for IPv4 (RFC 792).
//!
//! ```text
//!  0               1               2               3
//! +---------------+---------------+-------------------------------+
//! |     type      |     code      |           checksum            |
//! +---------------+---------------+-------------------------------+
//! |                rest of header (meaning by type)               |
//! +---------------------------------------------------------------+
//! |                           data ...                            |
//! ```
//! The checksum covers the whole message (header and data), with no pseudo-header.
//!
//! Messages come in two families, and the rest of the header means something
//! different in each:
//! * **queries** — echo request (8) and echo reply (0): an identifier and a sequence
//!   number, each 16 bits; the data is echoed back unchanged. The identifier plays the
//!   part of a port for NAT.
//! * **errors** — destination unreachable (3), source quench (4), redirect (5), time
//!   exceeded (11), parameter problem (12): the rest of the header is unused (zero),
//!   except for "fragmentation needed" (type 3 code 4), whose low 16 bits carry the
//!   next-hop MTU (RFC 1191) — the number path MTU discovery lives on. The data is a
//!   *quote* of the packet that caused the error: its IPv4 header and at least the
//!   first 8 bytes after it (RFC 792; RFC 1812 4.3.2.3 lets a router quote up to 576
//!   bytes in all), which is enough to find the ports and so the socket — or the NAT
//!   mapping — it belongs to. [`Quoted`] is the view of that quote.

use super::checksum;
use super::ipv4::Ipv4Packet;
use super::{check_len, get_u16, set_u16, WireError};

/// ICMP message types switchyard reads or writes.
pub mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Codes of destination unreachable (type 3).
pub mod code {
    pub const NET_UNREACHABLE: u8 = 0;
    pub const HOST_UNREACHABLE: u8 = 1;
    pub const PORT_UNREACHABLE: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
}

/// Byte offsets of the fields.
mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST_OF_HEADER: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
}

/// A view over an ICMP message (the IPv4 payload).
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buf`, failing unless it holds the 8-byte header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        check_len(buf.as_ref(), Self::HEADER_LEN)?;
        Ok(IcmpPacket { buf })
    }

    /// Wraps `buf` without a check, for a message already accepted by
    /// [`Self::new_checked`], or a buffer being filled with one. An accessor that
    /// reaches past the slice panics; nothing is ever read out of bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        IcmpPacket { buf }
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// The four bytes after the checksum, whatever the type makes of them.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let b = self.buf.as_ref();
        let at = field::REST_OF_HEADER;
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::ECHO_SEQ)
    }

    /// The next-hop MTU of a "fragmentation needed" error (RFC 1191); zero from a
    /// router older than that RFC.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::NEXT_HOP_MTU)
    }

    /// An echo request or reply: a query whose identifier stands for a port.
    #[inline]
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), kind::ECHO_REQUEST | kind::ECHO_REPLY)
    }

    /// An error message (destination unreachable, time exceeded, ...) as opposed to a
    /// query; RFC 1122 3.2.2: never answer an error with an error.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            kind::DEST_UNREACHABLE
                | kind::SOURCE_QUENCH
                | kind::REDIRECT
                | kind::TIME_EXCEEDED
                | kind::PARAMETER_PROBLEM
        )
    }

    /// True if the checksum over the whole message is correct.
    #[inline]
    pub fn checksum_ok(&self) -> bool {
        checksum::verify(self.buf.as_ref())
    }

    /// The bytes after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[Self::HEADER_LEN..]
    }

    /// The packet an error quotes, if the quote holds a whole IPv4 header and the 8
    /// bytes after it. Meaningful for errors only (see [`Self::is_error`]).
    pub fn quoted(&self) -> Result<Quoted<&[u8]>, WireError> {
        Quoted::new_checked(self.data())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buf.as_mut()[field::TYPE] = t;
    }

    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buf.as_mut()[field::CODE] = c;
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buf.as_mut(), field::CHECKSUM, c);
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        let at = field::REST_OF_HEADER;
        self.buf.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes the echo identifier; the checksum is the caller's.
    #[inline]
    pub fn set_echo_ident(&mut self, id: u16) {
        set_u16(self.buf.as_mut(), field::ECHO_IDENT, id);
    }

    #[inline]
    pub fn set_echo_seq(&mut self, seq: u16) {
        set_u16(self.buf.as_mut(), field::ECHO_SEQ, seq);
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        set_u16(self.buf.as_mut(), field::NEXT_HOP_MTU, mtu);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[Self::HEADER_LEN..]
    }

    /// The quoted packet of an error, to rewrite (see [`Self::quoted`]).
    pub fn quoted_mut(&mut self) -> Result<Quoted<&mut [u8]>, WireError> {
        Quoted::new_checked(self.data_mut())
    }

    /// Turns an echo request into its reply, in place: the type changes from 8 to 0
    /// and the checksum is patched for that one word; identifier, sequence and data
    /// are echoed unchanged, as RFC 792 requires.
    pub fn make_echo_reply(&mut self) {
        let old = get_u16(self.buf.as_ref(), field::TYPE);
        self.set_msg_type(kind::ECHO_REPLY);
        self.set_code(0);
        let new = get_u16(self.buf.as_ref(), field::TYPE);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buf.as_ref());
        self.set_checksum(c);
    }
}

/// The packet an ICMP error is about, as the error quotes it: an IPv4 header and at
/// least the first 8 bytes that followed it.
///
/// A quote is a cut-off packet: its header's total length is the original's, longer
/// than what is here, so the header is given as a view of the header alone
/// ([`Self::header`]) and what follows as plain bytes ([`Self::transport`]). Of those,
/// only 8 are certain: enough for TCP's and UDP's ports (their first 4 bytes), UDP's
/// whole header, and an ICMP echo's identifier — but not, in general, a TCP checksum.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Quoted<T> {
    /// Bytes of the quoted transport header that RFC 792 guarantees.
    pub const TRANSPORT_LEN: usize = 8;

    /// Wraps `buf` (an error's data), failing unless it holds an IPv4 header of at
    /// least 20 bytes and the 8 bytes after it.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        check_len(b, Ipv4Packet::<&[u8]>::MIN_HEADER_LEN)?;
        let q = Quoted { buf };
        let hl = q.header_len();
        if hl < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN {
            return Err(WireError::Malformed(
                "quoted IPv4 header length (IHL) below 5",
            ));
        }
        check_len(q.buf.as_ref(), hl + Self::TRANSPORT_LEN)?;
        Ok(q)
    }

    #[inline]
    fn header_len(&self) -> usize {
        Ipv4Packet::new_unchecked(self.buf.as_ref()).header_len()
    }

    /// The quoted IPv4 header, options included, and nothing after it.
    #[inline]
    pub fn header(&self) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_unchecked(&self.buf.as_ref()[..self.header_len()])
    }

    /// The quoted bytes after the header (at least 8).
    #[inline]
    pub fn transport(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }

    /// The quoted source port: the first two bytes after the header, for TCP and UDP
    /// alike.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.transport(), 0)
    }

    /// The quoted destination port (bytes 2 and 3 after the header).
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.transport(), 2)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Quoted<T> {
    #[inline]
    pub fn header_mut(&mut self) -> Ipv4Packet<&mut [u8]> {
        let hl = self.header_len();
        Ipv4Packet::new_unchecked(&mut self.buf.as_mut()[..hl])
    }

    #[inline]
    pub fn transport_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buf.as_mut()[hl..]
    }

    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.transport_mut(), 0, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.transport_mut(), 2, port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use etherparse::icmpv4::DestUnreachableHeader;
    use etherparse::{Icmpv4Type, PacketBuilder};
    use std::net::Ipv4Addr;

    #[test]
    fn echo_reply_in_place_keeps_checksum_valid() {
        let mut b = vec![
            kind::ECHO_REQUEST,
            0,
            0,
            0,
            0x12,
            0x34,
            0,
            1,
            b'h',
            b'i',
            b'!',
        ];
        IcmpPacket::new_checked(&mut b[..]).unwrap().fill_checksum();
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        assert!(p.checksum_ok());
        assert!(p.is_echo() && !p.is_error());
        p.make_echo_reply();
        assert_eq!(p.msg_type(), kind::ECHO_REPLY);
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert_eq!(p.data(), b"hi!");
        assert!(p.checksum_ok());
    }

    #[test]
    fn setters_round_trip() {
        let mut b = [0u8; 12];
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(kind::ECHO_REQUEST);
        p.set_code(0);
        p.set_echo_ident(0x0a0b);
        p.set_echo_seq(0x0c0d);
        p.data_mut().copy_from_slice(b"ping");
        p.fill_checksum();
        assert_eq!(p.rest_of_header(), 0x0a0b_0c0d);
        let theirs = etherparse::Icmpv4Slice::from_slice(&b).unwrap();
        assert_eq!(
            theirs.icmp_type(),
            Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader {
                id: 0x0a0b,
                seq: 0x0c0d
            })
        );
        assert!(IcmpPacket::new_checked(&b[..]).unwrap().checksum_ok());
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(kind::DEST_UNREACHABLE);
        p.set_code(code::FRAG_NEEDED);
        p.set_rest_of_header(0);
        p.set_next_hop_mtu(1280);
        assert_eq!((p.rest_of_header(), p.next_hop_mtu()), (1280, 1280));
        assert!(p.is_error());
    }

    #[test]
    fn short_is_refused() {
        assert!(IcmpPacket::new_checked(&[0u8; 7][..]).is_err());
    }

    /// The UDP datagram an error will be about, as an IPv4 packet.
    fn offending(payload: usize) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 1, 0, 2], [198, 51, 100, 2], 64)
            .udp(40000, 53)
            .write(&mut v, &vec![7u8; payload])
            .unwrap();
        v
    }

    /// An ICMP error about `quote`, as etherparse builds it.
    fn error(t: Icmpv4Type, quote: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 2], [10, 1, 0, 2], 64)
            .icmpv4(t)
            .write(&mut v, quote)
            .unwrap();
        v.split_off(20)
    }

    #[test]
    fn the_quoted_packet_of_a_real_error() {
        let orig = offending(100);
        let b = error(
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1400,
            }),
            &orig,
        );
        let icmp = IcmpPacket::new_checked(&b[..]).unwrap();
        assert!(icmp.checksum_ok());
        assert!(icmp.is_error());
        assert_eq!(
            (icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()),
            (kind::DEST_UNREACHABLE, code::FRAG_NEEDED, 1400)
        );
        let q = icmp.quoted().unwrap();
        let h = q.header();
        assert_eq!(
            (h.src(), h.dst(), h.protocol()),
            (
                Ipv4Addr::new(10, 1, 0, 2),
                Ipv4Addr::new(198, 51, 100, 2),
                IpProtocol::UDP
            )
        );
        assert_eq!(h.total_len(), 128, "the original's length, not the quote's");
        assert!(h.checksum_ok());
        assert!(h.payload().is_empty(), "a header-only view has no payload");
        assert_eq!((q.src_port(), q.dst_port()), (40000, 53));
        assert_eq!(q.transport(), &orig[20..]);
    }

    #[test]
    fn a_minimal_quote_is_enough_and_less_is_refused() {
        let orig = offending(100);
        // RFC 792's minimum: the header and 8 bytes.
        let b = error(
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
            &orig[..28],
        );
        let icmp = IcmpPacket::new_checked(&b[..]).unwrap();
        let q = icmp.quoted().unwrap();
        assert_eq!(q.transport().len(), 8);
        assert_eq!((q.src_port(), q.dst_port()), (40000, 53));
        let cut = error(
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
            &orig[..27],
        );
        assert!(matches!(
            IcmpPacket::new_checked(&cut[..]).unwrap().quoted(),
            Err(WireError::Truncated {
                needed: 28,
                have: 27
            })
        ));
        let mut bad_ihl = b.clone();
        bad_ihl[8] = 0x44;
        assert!(matches!(
            IcmpPacket::new_checked(&bad_ihl[..]).unwrap().quoted(),
            Err(WireError::Malformed(_))
        ));
        assert!(IcmpPacket::new_checked(&b[..20]).unwrap().quoted().is_err());
    }

    #[test]
    fn a_quote_rewritten_through_the_view() {
        let orig = offending(4);
        let mut b = error(
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            &orig,
        );
        let mut icmp = IcmpPacket::new_checked(&mut b[..]).unwrap();
        let mut q = icmp.quoted_mut().unwrap();
        q.header_mut().set_src(Ipv4Addr::new(172, 17, 0, 2));
        q.set_src_port(1234);
        q.set_dst_port(5353);
        icmp.fill_checksum();
        let icmp = IcmpPacket::new_checked(&b[..]).unwrap();
        assert!(icmp.checksum_ok());
        let q = icmp.quoted().unwrap();
        assert_eq!(q.header().src(), Ipv4Addr::new(172, 17, 0, 2));
        assert!(
            q.header().checksum_ok(),
            "set_src patched the quoted header's checksum"
        );
        assert_eq!((q.src_port(), q.dst_port()), (1234, 5353));
    }
}
