//! ICMP for IPv4 (RFC 792).
//!
//! ```text
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |   echo (8) / echo reply (0):
//! +-------+-------+---------------+     identifier, sequence, data
//! |   rest of header (4 bytes)    |   errors (3, 11, ...): unused/MTU, then the
//! +-------------------------------+     offending IP header + 8 bytes of its payload
//! ```
//! The checksum covers the whole ICMP message (header and data), with no pseudo-header.

use super::checksum;
use super::{check_len, get_u16, set_u16, WireError};

/// ICMP message types switchyard reads or writes.
pub mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// A view over an ICMP message (the IPv4 payload).
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub const HEADER_LEN: usize = 8;

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        check_len(buf.as_ref(), Self::HEADER_LEN)?;
        Ok(IcmpPacket { buf })
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), 2)
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), 4)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buf.as_ref(), 6)
    }

    /// True if the checksum over the whole message is correct.
    #[inline]
    pub fn checksum_ok(&self) -> bool {
        checksum::verify(self.buf.as_ref())
    }

    /// An error message (destination unreachable, time exceeded, ...) as opposed to a
    /// query; RFC 1122 3.2.2: never answer an error with an error.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(self.msg_type(), 3 | 4 | 5 | 11 | 12)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Turns an echo request into its reply, in place: the type changes from 8 to 0
    /// and the checksum is patched for that one word; identifier, sequence and data
    /// are echoed unchanged, as RFC 792 requires.
    pub fn make_echo_reply(&mut self) {
        let b = self.buf.as_mut();
        let old = get_u16(b, 0);
        b[0] = kind::ECHO_REPLY;
        b[1] = 0;
        let new = get_u16(b, 0);
        let c = checksum::update_u16(get_u16(b, 2), old, new);
        set_u16(b, 2, c);
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        let b = self.buf.as_mut();
        set_u16(b, 2, 0);
        let c = checksum::checksum(b);
        set_u16(b, 2, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        p.make_echo_reply();
        assert_eq!(p.msg_type(), kind::ECHO_REPLY);
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert!(p.checksum_ok());
    }

    #[test]
    fn short_is_refused() {
        assert!(IcmpPacket::new_checked(&[0u8; 7][..]).is_err());
    }
}
