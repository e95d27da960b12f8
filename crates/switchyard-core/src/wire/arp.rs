//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! ```text
//!  0       2       4   5   6       8
//! +-------+-------+---+---+-------+
//! | htype | ptype |hln|pln| oper  |      htype 1 (Ethernet), ptype 0x0800 (IPv4),
//! +-------+-------+---+---+-------+      hln 6, pln 4, oper 1 request / 2 reply
//! | sender MAC (sha)      | sender IP (spa) |
//! | target MAC (tha)      | target IP (tpa) |   28 bytes in all
//! ```
//! A request asks "who has tpa? tell spa" and is broadcast; the owner of tpa answers
//! with a unicast reply whose sender fields carry its own addresses. A *gratuitous* ARP
//! is a packet whose sender and target IP are the same: a host announcing (or
//! defending) its address, which lets every listener refresh its cache.

use super::{
    check_len, get_ipv4, get_mac, get_u16, set_ipv4, set_u16, EtherType, MacAddr, WireError,
};
use std::net::Ipv4Addr;

/// The ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
    Other(u16),
}

impl From<u16> for ArpOp {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            v => ArpOp::Other(v),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(op: ArpOp) -> u16 {
        match op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// The hardware type of Ethernet.
const HTYPE_ETHERNET: u16 = 1;

/// A view over an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const LEN: usize = 28;

    /// Wraps `buf`, failing unless it holds 28 bytes of Ethernet/IPv4 ARP.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        check_len(b, Self::LEN)?;
        if get_u16(b, field::HTYPE) != HTYPE_ETHERNET
            || get_u16(b, field::PTYPE) != EtherType::IPV4.0
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::Malformed("ARP is not Ethernet/IPv4"));
        }
        Ok(ArpPacket { buf })
    }

    /// Wraps `buf` without a check, for a packet already accepted by
    /// [`Self::new_checked`]. An accessor that reaches past the slice panics; nothing
    /// is ever read out of bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        ArpPacket { buf }
    }

    #[inline]
    pub fn op(&self) -> ArpOp {
        get_u16(self.buf.as_ref(), field::OPER).into()
    }

    #[inline]
    pub fn sender_mac(&self) -> MacAddr {
        get_mac(self.buf.as_ref(), field::SHA)
    }

    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        get_ipv4(self.buf.as_ref(), field::SPA)
    }

    #[inline]
    pub fn target_mac(&self) -> MacAddr {
        get_mac(self.buf.as_ref(), field::THA)
    }

    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        get_ipv4(self.buf.as_ref(), field::TPA)
    }

    /// Sender and target IP are equal: an announcement, not a question.
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Turns a request for `our_ip` into the reply from `our_mac`, in place: the
    /// requester's addresses move to the target fields and ours become the sender.
    pub fn make_reply(&mut self, our_mac: MacAddr) {
        let b = self.buf.as_mut();
        let (req_mac, req_ip) = (get_mac(b, field::SHA), get_ipv4(b, field::SPA));
        let our_ip = get_ipv4(b, field::TPA);
        set_u16(b, field::OPER, ArpOp::Reply.into());
        b[field::SHA..field::SHA + 6].copy_from_slice(&our_mac.0);
        set_ipv4(b, field::SPA, our_ip);
        b[field::THA..field::THA + 6].copy_from_slice(&req_mac.0);
        set_ipv4(b, field::TPA, req_ip);
    }
}

/// Writes a complete Ethernet/IPv4 ARP packet into `buf[..28]`.
pub fn write(
    buf: &mut [u8],
    op: ArpOp,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) {
    set_u16(buf, field::HTYPE, HTYPE_ETHERNET);
    set_u16(buf, field::PTYPE, EtherType::IPV4.0);
    buf[field::HLEN] = 6;
    buf[field::PLEN] = 4;
    set_u16(buf, field::OPER, op.into());
    buf[field::SHA..field::SHA + 6].copy_from_slice(&sender_mac.0);
    set_ipv4(buf, field::SPA, sender_ip);
    buf[field::THA..field::THA + 6].copy_from_slice(&target_mac.0);
    set_ipv4(buf, field::TPA, target_ip);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_to_reply_in_place() {
        let mut b = [0u8; 28];
        let host = MacAddr([2, 0x42, 172, 17, 0, 2]);
        let gw = MacAddr([2, 0x42, 172, 17, 0, 1]);
        write(
            &mut b,
            ArpOp::Request,
            host,
            Ipv4Addr::new(172, 17, 0, 2),
            MacAddr::ZERO,
            Ipv4Addr::new(172, 17, 0, 1),
        );
        let mut p = ArpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.op(), ArpOp::Request);
        assert!(!p.is_gratuitous());
        p.make_reply(gw);
        assert_eq!(p.op(), ArpOp::Reply);
        assert_eq!(p.sender_mac(), gw);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(p.target_mac(), host);
        assert_eq!(p.target_ip(), Ipv4Addr::new(172, 17, 0, 2));
    }

    #[test]
    fn refuses_non_ethernet_ipv4() {
        let mut b = [0u8; 28];
        write(
            &mut b,
            ArpOp::Request,
            MacAddr::ZERO,
            Ipv4Addr::UNSPECIFIED,
            MacAddr::ZERO,
            Ipv4Addr::UNSPECIFIED,
        );
        b[4] = 8;
        assert!(ArpPacket::new_checked(&b[..]).is_err());
        assert!(ArpPacket::new_checked(&b[..27]).is_err());
    }

    #[test]
    fn agrees_with_etherparse() {
        let mut b = [0u8; 28];
        write(
            &mut b,
            ArpOp::Reply,
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 0, 1),
            MacAddr([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        let theirs = etherparse::ArpPacketSlice::from_slice(&b).unwrap();
        assert_eq!(theirs.operation(), etherparse::ArpOperation::REPLY);
        assert_eq!(theirs.sender_hw_addr(), &[2, 0, 0, 0, 0, 1]);
        assert_eq!(theirs.target_protocol_addr(), &[10, 0, 0, 2]);
    }
}
