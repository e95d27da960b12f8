//! Ethernet II frames (IEEE 802.3 with an EtherType), optionally 802.1Q-tagged.
//!
//! ```text
//!  0                   6                   12      14
//! +-------------------+-------------------+-------+---------------
//! | destination MAC   | source MAC        | type  | payload ...
//! +-------------------+-------------------+-------+---------------
//! ```
//! With an 802.1Q tag the type field holds 0x8100, followed by a 2-byte tag control
//! field (priority, VLAN id) and then the real EtherType; 802.1ad (0x88a8) stacks a
//! second tag. A bridge forwards tagged frames as they are; only the L3 stages need to
//! look past the tags.
//!
//! "MTU" in this crate always means the *IP* MTU, the largest payload after this
//! header (1500 on Ethernet), as `ip link` prints it; a full frame is up to
//! MTU + 14 bytes (+ 4 per VLAN tag), not counting the FCS, which a TAP never carries.

use super::{check_len, get_mac, get_u16, set_u16, MacAddr, WireError};
use std::fmt;

/// Bytes of an untagged header: two addresses and a type. The one Ethernet header
/// length in switchyard: everything that steps over the header uses it.
pub const HEADER_LEN: usize = 14;
/// Bytes one 802.1Q/802.1ad tag adds.
pub const TAG_LEN: usize = 4;

/// The 16-bit protocol number after the MAC addresses.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const QINQ: EtherType = EtherType(0x88a8);
    pub const IPV6: EtherType = EtherType(0x86dd);
    pub const LLDP: EtherType = EtherType(0x88cc);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType::QINQ => f.write_str("802.1ad"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType::LLDP => f.write_str("LLDP"),
            EtherType(t) if t < 0x0600 => write!(f, "802.3 length {t}"),
            EtherType(t) => write!(f, "0x{t:04x}"),
        }
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A view over an Ethernet frame (without preamble or FCS).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf`, failing unless it holds a whole untagged header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        check_len(buf.as_ref(), HEADER_LEN)?;
        Ok(EthernetFrame { buf })
    }

    /// Wraps `buf` without a check, for a frame already accepted by
    /// [`Self::new_checked`] (the pipeline's ethernet-input did). An accessor that
    /// reaches past the slice panics; nothing is ever read out of bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        EthernetFrame { buf }
    }

    #[inline]
    pub fn dst(&self) -> MacAddr {
        get_mac(self.buf.as_ref(), 0)
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        get_mac(self.buf.as_ref(), 6)
    }

    /// The type field right after the addresses (0x8100 for a tagged frame).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(get_u16(self.buf.as_ref(), 12))
    }

    /// The EtherType of the payload after any VLAN tags, and the payload's offset.
    /// Fails if a tag is cut short.
    pub fn payload_type(&self) -> Result<(EtherType, usize), WireError> {
        let b = self.buf.as_ref();
        let mut at = 12;
        loop {
            check_len(b, at + 2)?;
            let t = EtherType(get_u16(b, at));
            if t == EtherType::VLAN || t == EtherType::QINQ {
                at += TAG_LEN;
            } else {
                return Ok((t, at + 2));
            }
        }
    }

    /// Total length of the frame in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.as_ref().len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.as_ref().is_empty()
    }

    /// The bytes after the untagged header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac.0);
    }

    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        set_u16(self.buf.as_mut(), 12, t.0);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

/// Writes an untagged Ethernet header at the start of `buf` (which must hold
/// [`HEADER_LEN`] bytes).
pub fn write_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    buf[0..6].copy_from_slice(&dst.0);
    buf[6..12].copy_from_slice(&src.0);
    set_u16(buf, 12, ethertype.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_tags() {
        let mut f = [0u8; 22];
        write_header(
            &mut f,
            MacAddr::BROADCAST,
            MacAddr([2, 0, 0, 0, 0, 1]),
            EtherType::VLAN,
        );
        f[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert!(e.dst().is_broadcast());
        assert_eq!(e.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.ethertype(), EtherType::VLAN);
        assert_eq!(e.payload_type().unwrap(), (EtherType::ARP, 18));
    }

    #[test]
    fn short_frames_are_refused() {
        assert!(EthernetFrame::new_checked(&[0u8; 13][..]).is_err());
        // A tag announced but cut off.
        let mut f = [0u8; 15];
        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert!(EthernetFrame::new_checked(&f[..])
            .unwrap()
            .payload_type()
            .is_err());
    }
}
