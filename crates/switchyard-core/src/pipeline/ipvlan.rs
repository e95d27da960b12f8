//! ipvlan's L2 mode at a host interface: the endpoints of a network share the
//! parent's MAC on the LAN, as containers on an ipvlan-l2 network do.
//!
//! Inside switchyard the endpoints keep MACs of their own — the bridge needs them to
//! tell its ports apart — and the translation happens where the LAN begins, at the
//! parent port, in both directions:
//!
//! * **Out to the LAN** ([`IpvlanL2::outbound`]): the Ethernet source of every frame
//!   becomes the parent's MAC, and so does the sender hardware address of an ARP
//!   packet. An endpoint's ARP reply therefore tells the LAN "10.77.0.2 is at the
//!   parent's MAC", and its requests ask in the parent's name. The frame may be a
//!   flood still on its way to other ports, so the change is undone after the write
//!   ([`IpvlanL2::restore`]).
//! * **In from the LAN** ([`IpvlanL2::inbound`]): a frame to the parent's MAC is for
//!   whichever endpoint owns its destination address — the IPv4 destination, or the
//!   target address of an ARP packet — and its destination MAC (and an ARP packet's
//!   target hardware address) become that endpoint's, after which the bridge delivers
//!   it as it delivers any frame. A destination that is no endpoint's goes to the
//!   network's gateway (switchyard routes it on) when there is one. Broadcast and
//!   multicast frames pass as they are. A unicast frame to any other MAC (the parent
//!   is promiscuous and sees the LAN's own unicast) is not for the network:
//!   [`Inbound::NotOurs`].
//!
//! The parent's own host shares the MAC: frames for *its* addresses reach its stack
//! as always (the kernel delivers them whatever switchyard's socket does) and are
//! [`Inbound::NotOurs`] here.

use crate::wire::ethernet::{EtherType, HEADER_LEN};
use crate::wire::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Where the addresses sit in an untagged frame.
const ETHERTYPE: usize = 12;
const IPV4_DST: usize = HEADER_LEN + 16;
const ARP_SHA: usize = HEADER_LEN + 8;
const ARP_THA: usize = HEADER_LEN + 18;
const ARP_TPA: usize = HEADER_LEN + 24;

/// The translation of one network at its parent.
#[derive(Debug, Clone)]
pub struct IpvlanL2 {
    parent: MacAddr,
    /// Each address switchyard's side of the LAN owns (endpoints, the gateway), and
    /// the MAC it has inside.
    hosts: HashMap<Ipv4Addr, MacAddr>,
    /// Where a frame to the parent's MAC for another address goes (the gateway).
    fallback: Option<MacAddr>,
}

/// What [`IpvlanL2::inbound`] made of a frame from the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Broadcast or multicast, or too short to tell: as it came.
    Kept,
    /// To the parent's MAC, now addressed to the endpoint (or gateway) it is for.
    Claimed,
    /// Not for the network: unicast to another MAC, or to an address nobody here has.
    NotOurs,
}

/// What [`IpvlanL2::outbound`] changed, for [`IpvlanL2::restore`].
#[derive(Debug, Clone, Copy)]
pub struct Undo {
    src: [u8; 6],
    arp_sha: Option<[u8; 6]>,
}

impl IpvlanL2 {
    pub fn new(
        parent: MacAddr,
        hosts: impl IntoIterator<Item = (Ipv4Addr, MacAddr)>,
        fallback: Option<MacAddr>,
    ) -> IpvlanL2 {
        IpvlanL2 {
            parent,
            hosts: hosts.into_iter().collect(),
            fallback,
        }
    }

    /// The MAC the network shows the LAN.
    pub fn parent_mac(&self) -> MacAddr {
        self.parent
    }

    /// A frame from the LAN (untagged): see the module's documentation.
    pub fn inbound(&self, frame: &mut [u8]) -> Inbound {
        if frame.len() < HEADER_LEN {
            return Inbound::Kept;
        }
        let dst = MacAddr(frame[..6].try_into().expect("6 bytes"));
        if dst.is_multicast() {
            return Inbound::Kept;
        }
        if dst != self.parent {
            return Inbound::NotOurs;
        }
        let ethertype = EtherType(u16::from_be_bytes([frame[ETHERTYPE], frame[ETHERTYPE + 1]]));
        let (at, arp) = match ethertype {
            EtherType::IPV4 => (IPV4_DST, false),
            EtherType::ARP => (ARP_TPA, true),
            _ => return Inbound::NotOurs,
        };
        let Some(ip) = frame.get(at..at + 4) else {
            return Inbound::NotOurs;
        };
        let ip = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
        let Some(mac) = self.hosts.get(&ip).copied().or(self.fallback) else {
            return Inbound::NotOurs;
        };
        frame[..6].copy_from_slice(&mac.0);
        if arp && frame.len() >= ARP_THA + 6 && frame[ARP_THA..ARP_THA + 6] == self.parent.0 {
            frame[ARP_THA..ARP_THA + 6].copy_from_slice(&mac.0);
        }
        Inbound::Claimed
    }

    /// A frame to the LAN (untagged): its source, and an ARP sender, become the
    /// parent's MAC. Undo with [`IpvlanL2::restore`] before the frame goes anywhere else.
    pub fn outbound(&self, frame: &mut [u8]) -> Undo {
        let mut undo = Undo {
            src: [0; 6],
            arp_sha: None,
        };
        if frame.len() < HEADER_LEN {
            return undo;
        }
        undo.src.copy_from_slice(&frame[6..12]);
        frame[6..12].copy_from_slice(&self.parent.0);
        let arp = frame[ETHERTYPE..ETHERTYPE + 2] == EtherType::ARP.0.to_be_bytes();
        if arp && frame.len() >= ARP_SHA + 6 {
            let mut sha = [0u8; 6];
            sha.copy_from_slice(&frame[ARP_SHA..ARP_SHA + 6]);
            undo.arp_sha = Some(sha);
            frame[ARP_SHA..ARP_SHA + 6].copy_from_slice(&self.parent.0);
        }
        undo
    }

    /// Puts back what [`IpvlanL2::outbound`] changed.
    pub fn restore(frame: &mut [u8], undo: Undo) {
        if frame.len() < HEADER_LEN {
            return;
        }
        frame[6..12].copy_from_slice(&undo.src);
        if let Some(sha) = undo.arp_sha {
            frame[ARP_SHA..ARP_SHA + 6].copy_from_slice(&sha);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::arp::{self, ArpOp};

    const PARENT: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    const EP: MacAddr = MacAddr([0x02, 0x42, 10, 77, 0, 2]);
    const GW: MacAddr = MacAddr([0x02, 0x42, 10, 77, 0, 1]);
    const LAN: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 9]);

    fn l2() -> IpvlanL2 {
        IpvlanL2::new(PARENT, [(Ipv4Addr::new(10, 77, 0, 2), EP)], Some(GW))
    }

    fn ipv4_to(dst_mac: MacAddr, dst: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst_mac.0);
        f[6..12].copy_from_slice(&LAN.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[IPV4_DST..IPV4_DST + 4].copy_from_slice(&dst.octets());
        f
    }

    fn arp_frame(
        dst: MacAddr,
        src: MacAddr,
        op: ArpOp,
        sha: MacAddr,
        tha: MacAddr,
        tpa: Ipv4Addr,
    ) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        arp::write(
            &mut f[HEADER_LEN..],
            op,
            sha,
            Ipv4Addr::new(10, 77, 0, 100),
            tha,
            tpa,
        );
        f
    }

    #[test]
    fn a_frame_to_the_parents_mac_goes_to_the_endpoint_owning_its_address() {
        let mut f = ipv4_to(PARENT, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(l2().inbound(&mut f), Inbound::Claimed);
        assert_eq!(f[..6], EP.0);
        // Another address behind the parent's MAC: routed on by the gateway.
        let mut f = ipv4_to(PARENT, Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(l2().inbound(&mut f), Inbound::Claimed);
        assert_eq!(f[..6], GW.0);
        let none = IpvlanL2::new(PARENT, [], None);
        let mut f = ipv4_to(PARENT, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(none.inbound(&mut f), Inbound::NotOurs);
    }

    #[test]
    fn other_unicast_is_not_ours_and_broadcast_passes() {
        let mut f = ipv4_to(LAN, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(l2().inbound(&mut f), Inbound::NotOurs);
        let mut f = ipv4_to(MacAddr::BROADCAST, Ipv4Addr::new(10, 77, 0, 2));
        let before = f.clone();
        assert_eq!(l2().inbound(&mut f), Inbound::Kept);
        assert_eq!(f, before);
        assert_eq!(l2().inbound(&mut [0u8; 10]), Inbound::Kept);
    }

    #[test]
    fn an_arp_reply_to_the_parent_reaches_the_endpoint_that_asked() {
        let tpa = Ipv4Addr::new(10, 77, 0, 2);
        let mut f = arp_frame(PARENT, LAN, ArpOp::Reply, LAN, PARENT, tpa);
        assert_eq!(l2().inbound(&mut f), Inbound::Claimed);
        let a = arp::ArpPacket::new_checked(&f[HEADER_LEN..]).unwrap();
        assert_eq!((a.target_mac(), a.target_ip()), (EP, tpa));
        assert_eq!(f[..6], EP.0);
    }

    #[test]
    fn out_to_the_lan_the_endpoint_speaks_with_the_parents_mac_and_it_is_undone() {
        let mut f = arp_frame(
            LAN,
            EP,
            ArpOp::Reply,
            EP,
            LAN,
            Ipv4Addr::new(10, 77, 0, 100),
        );
        let before = f.clone();
        let undo = l2().outbound(&mut f);
        assert_eq!(f[6..12], PARENT.0);
        let a = arp::ArpPacket::new_checked(&f[HEADER_LEN..]).unwrap();
        assert_eq!(a.sender_mac(), PARENT);
        IpvlanL2::restore(&mut f, undo);
        assert_eq!(f, before);
        let mut f = ipv4_to(LAN, Ipv4Addr::new(10, 77, 0, 100));
        f[6..12].copy_from_slice(&EP.0);
        let before = f.clone();
        let undo = l2().outbound(&mut f);
        assert_eq!(f[6..12], PARENT.0);
        assert_eq!(f[22..], before[22..], "only the source MAC changes");
        IpvlanL2::restore(&mut f, undo);
        assert_eq!(f, before);
    }
}
