//! `wire` — typed views over the bytes of a frame.
//!
//! Everything a switch knows about a packet it reads from a few fixed offsets: the
//! Ethernet addresses, an EtherType, an ARP or IPv4 header. This layer gives those
//! offsets names. Each view wraps a byte slice (`&[u8]` to read, `&mut [u8]` to write),
//! is created with `new_checked`, which verifies the slice is long enough for every field
//! the view can touch, and afterwards reads and writes fields without further checks.
//! Nothing here allocates or does I/O, so the same views serve the hot path, the tests
//! and the fuzzer.
//!
//! Parsing that must validate many rules at once (IPv4 version, IHL and lengths) leans
//! on `etherparse`; rewriting is done by patching bytes in place with incremental
//! checksum updates (RFC 1624, see [`checksum`]), never by re-serialising a header.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod ipv4;
pub mod mac;
pub mod nat;
pub mod virtio_net;

pub use arp::ArpPacket;
pub use ethernet::{EtherType, EthernetFrame};
pub use icmp::IcmpPacket;
pub use ipv4::{IpProtocol, Ipv4Cidr, Ipv4Packet};
pub use mac::MacAddr;
pub use virtio_net::VirtioNetHdr;

/// Why a view could not be made over a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The slice ends before a field the view needs.
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    /// A field holds a value the protocol forbids (a bad version, a length that
    /// contradicts the slice, an unsupported hardware type).
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// Fails with [`WireError::Truncated`] unless `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn check_len(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            needed,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
pub(crate) fn get_ipv4(buf: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}

#[inline]
pub(crate) fn set_ipv4(buf: &mut [u8], at: usize, addr: std::net::Ipv4Addr) {
    buf[at..at + 4].copy_from_slice(&addr.octets());
}
