//! TCP headers (RFC 9293, which replaced RFC 793).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+-------------------------------+
//! |          source port          |       destination port        |
//! +-------------------------------+-------------------------------+
//! |                        sequence number                        |
//! +---------------------------------------------------------------+
//! |                     acknowledgment number                     |
//! +-------+-------+-+-+-+-+-+-+-+-+-------------------------------+
//! | data  |       |C|E|U|A|P|R|S|F|                               |
//! | offset|reservd|W|C|R|C|S|S|Y|I|            window             |
//! |       |       |R|E|G|K|H|T|N|N|                               |
//! +-------+-------+-+-+-+-+-+-+-+-+-------------------------------+
//! |           checksum            |        urgent pointer         |
//! +-------------------------------+-------------------------------+
//! |                options (data offset > 5) ...                  |
//! ```
//! The data offset counts 32-bit words, so the header is 20 to 60 bytes long; the
//! payload starts right after it.
//!
//! The checksum covers a *pseudo-header* (source and destination address, protocol,
//! TCP length — see [`super::checksum::pseudo_header_sum`]) and the whole segment. So
//! a NAT that changes an address must fix the TCP checksum although TCP carries no
//! address. With checksum offload (virtio-net `NEEDS_CSUM`) the field holds only the
//! pseudo-header sum, which the receiver completes; how a rewrite keeps either form
//! right is the business of [`super::nat`]. That is why the setters here write their
//! field and nothing else: the view cannot know which form the checksum is in.

use super::{check_len, checksum, get_u16, set_u16, IpProtocol, WireError};
use std::fmt;

/// Byte offsets of the fields.
pub(crate) mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// The eight flag bits of a TCP header (byte 13).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers: the first segment of each direction.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push the data to the application.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is valid.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is valid.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The flags of a header's flag byte.
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    /// The flag byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Both sets of flags.
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }

    /// These flags without those of `other`.
    pub const fn without(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & !other.0)
    }

    /// True if every flag of `other` is set here.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn fin(self) -> bool {
        self.contains(TcpFlags::FIN)
    }

    pub const fn syn(self) -> bool {
        self.contains(TcpFlags::SYN)
    }

    pub const fn rst(self) -> bool {
        self.contains(TcpFlags::RST)
    }

    pub const fn ack(self) -> bool {
        self.contains(TcpFlags::ACK)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, other: TcpFlags) -> TcpFlags {
        self.union(other)
    }
}

/// The flags by name, as `SYN|ACK`; `-` when none is set.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

/// A view over a TCP segment (the IPv4 payload: header, options and data).
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Bytes of a header without options.
    pub const HEADER_LEN: usize = 20;

    /// Wraps `buf` after checking that it holds the fixed header, that the data offset
    /// is at least 5 words, and that the options it announces are there too.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        check_len(b, Self::HEADER_LEN)?;
        let p = TcpPacket { buf };
        let hl = p.header_len();
        if hl < Self::HEADER_LEN {
            return Err(WireError::Malformed("TCP data offset below 5"));
        }
        check_len(p.buf.as_ref(), hl)?;
        Ok(p)
    }

    /// Wraps `buf` without a check, for a segment whose header was already accepted
    /// by [`Self::new_checked`]. An accessor that reaches past the slice panics;
    /// nothing is ever read out of bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        TcpPacket { buf }
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buf.as_ref(), field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buf.as_ref(), field::ACK)
    }

    /// Header length in bytes, options included (the data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buf.as_ref()[field::FLAGS])
    }

    #[inline]
    pub fn window(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::URGENT)
    }

    /// The window scale option's shift count (RFC 7323 2.2; capped at 14, as the RFC
    /// and the kernel cap it), if the options carry one. Only meaningful on a SYN.
    pub fn window_scale(&self) -> Option<u8> {
        const END: u8 = 0;
        const NOP: u8 = 1;
        const WSCALE: u8 = 3;
        let opts = &self.buf.as_ref()[Self::HEADER_LEN..self.header_len()];
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                END => return None,
                NOP => i += 1,
                kind => {
                    let len = usize::from(*opts.get(i + 1)?);
                    if len < 2 || i + len > opts.len() {
                        return None;
                    }
                    if kind == WSCALE && len == 3 {
                        return Some(opts[i + 2].min(14));
                    }
                    i += len;
                }
            }
        }
        None
    }

    /// The data after the header and its options.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buf.as_mut(), field::SRC_PORT, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buf.as_mut(), field::DST_PORT, port);
    }

    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        self.buf.as_mut()[field::SEQ..field::SEQ + 4].copy_from_slice(&seq.to_be_bytes());
    }

    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        self.buf.as_mut()[field::ACK..field::ACK + 4].copy_from_slice(&ack.to_be_bytes());
    }

    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buf.as_mut()[field::FLAGS] = flags.0;
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        set_u16(self.buf.as_mut(), field::CHECKSUM, checksum);
    }

    /// Sets the data offset to a header of `len` bytes (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buf.as_mut();
        b[field::DATA_OFFSET] = (((len / 4) as u8) << 4) | (b[field::DATA_OFFSET] & 0x0f);
    }

    #[inline]
    pub fn set_window(&mut self, window: u16) {
        set_u16(self.buf.as_mut(), field::WINDOW, window);
    }

    /// Fills in the checksum of a segment from `src` to `dst` (RFC 793: over the
    /// pseudo-header and the whole segment).
    pub fn fill_checksum(&mut self, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buf.as_ref();
        let acc = checksum::pseudo_header_sum(src, dst, IpProtocol::TCP, b.len() as u16);
        let c = !checksum::fold(checksum::sum(acc, b));
        self.set_checksum(c);
    }
}

#[inline]
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// A SYN/ACK with a window scale option (data offset 6), built by etherparse.
    fn segment() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 0x0102_0304, 29200)
            .syn()
            .ack(0x0a0b_0c0d)
            .urg(7)
            .options(&[etherparse::TcpOptionElement::WindowScale(7)])
            .unwrap()
            .write(&mut v, b"hello")
            .unwrap();
        v.split_off(20)
    }

    #[test]
    fn fields_agree_with_etherparse() {
        let b = segment();
        let t = TcpPacket::new_checked(&b[..]).unwrap();
        let theirs = etherparse::TcpHeaderSlice::from_slice(&b).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (40000, 80));
        assert_eq!(t.seq_number(), 0x0102_0304);
        assert_eq!(t.ack_number(), 0x0a0b_0c0d);
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.header_len(), usize::from(theirs.data_offset()) * 4);
        assert_eq!(t.flags(), TcpFlags::SYN | TcpFlags::ACK | TcpFlags::URG);
        assert!(t.flags().syn() && t.flags().ack() && !t.flags().fin() && !t.flags().rst());
        assert_eq!(t.window(), 29200);
        assert_eq!(t.checksum(), theirs.checksum());
        assert_eq!(t.urgent(), 7);
        assert_eq!(t.payload(), b"hello");
    }

    #[test]
    fn setters_round_trip() {
        let mut b = segment();
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq_number(0xdead_beef);
        t.set_ack_number(42);
        t.set_flags(TcpFlags::FIN | TcpFlags::ACK);
        t.set_checksum(0x1234);
        assert_eq!((t.src_port(), t.dst_port()), (1, 2));
        assert_eq!((t.seq_number(), t.ack_number()), (0xdead_beef, 42));
        assert_eq!(t.flags(), TcpFlags::FIN | TcpFlags::ACK);
        assert_eq!(t.checksum(), 0x1234);
        assert_eq!(t.payload(), b"hello", "the rest is untouched");
        let theirs = etherparse::TcpSlice::from_slice(&b).unwrap();
        assert_eq!(
            (theirs.sequence_number(), theirs.fin(), theirs.syn()),
            (0xdead_beef, true, false),
            "etherparse reads what was written"
        );
    }

    #[test]
    fn truncation_and_bad_offsets_are_refused() {
        let b = segment();
        assert!(matches!(
            TcpPacket::new_checked(&b[..19]),
            Err(WireError::Truncated { needed: 20, .. })
        ));
        assert!(
            TcpPacket::new_checked(&b[..23]).is_err(),
            "the options the data offset announces are cut off"
        );
        let mut small = b.clone();
        small[field::DATA_OFFSET] = 4 << 4;
        assert!(matches!(
            TcpPacket::new_checked(&small[..]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn flags_print_by_name() {
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "SYN|ACK");
        assert_eq!(TcpFlags::default().to_string(), "-");
        assert_eq!(
            (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK).without(TcpFlags::FIN | TcpFlags::PSH),
            TcpFlags::ACK
        );
        assert_eq!(TcpFlags::from_bits(0x12).bits(), 0x12);
    }
}
