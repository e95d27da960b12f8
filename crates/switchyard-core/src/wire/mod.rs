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
//!
//! The views, one module each: [`ethernet`] (and 802.1Q tags), [`arp`], [`ipv4`],
//! [`icmp`] (with the packet an error quotes), [`udp`], [`tcp`], and the
//! [`virtio_net`] offload header, and the [`vxlan`] encapsulation. On top of them: [`nat`] (rewriting addresses and
//! ports with every checksum kept right), [`gso`] (cutting super-frames) and [`gro`]
//! (coalescing datagrams into one). Byte offsets live here and nowhere else: the
//! pipeline names every field it reads or writes through a view. A view made with
//! `new_unchecked` skips the checks, for bytes some earlier `new_checked` accepted
//! (the pipeline carries the offsets it validated with each frame).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod ipv4;
pub mod mac;
pub mod nat;
pub mod tcp;
pub mod udp;
pub mod virtio_net;
pub mod vxlan;

pub use arp::ArpPacket;
pub use ethernet::{EtherType, EthernetFrame};
pub use icmp::{IcmpPacket, Quoted};
pub use ipv4::{IpProtocol, Ipv4Cidr, Ipv4Packet};
pub use mac::MacAddr;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;
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

// Byte access for the views below; private to this layer.

/// Fails with [`WireError::Truncated`] unless `buf` holds at least `needed` bytes.
#[inline]
fn check_len(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            needed,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

// Each accessor takes one subslice (one bounds check) and copies out of it.

#[inline]
fn get_u16(buf: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&buf[at..at + 2]);
    u16::from_be_bytes(b)
}

#[inline]
fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn get_ipv4(buf: &[u8], at: usize) -> std::net::Ipv4Addr {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    std::net::Ipv4Addr::from(b)
}

#[inline]
fn get_mac(buf: &[u8], at: usize) -> MacAddr {
    let mut b = [0u8; 6];
    b.copy_from_slice(&buf[at..at + 6]);
    MacAddr(b)
}

#[inline]
fn set_ipv4(buf: &mut [u8], at: usize, addr: std::net::Ipv4Addr) {
    buf[at..at + 4].copy_from_slice(&addr.octets());
}
