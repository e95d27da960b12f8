//! Stage `port-security`: on a network with `port_security = true`, an endpoint may
//! send only as itself — as OVN's `port_security` and OpenStack's anti-spoofing rules
//! have it.
//!
//! switchyard assigns every endpoint's MAC and IPv4 address, so it knows what each
//! port may claim. Checked before anything learns from the frame, so a refused frame
//! teaches neither the FDB nor the neighbor table:
//! * the Ethernet source is the endpoint's MAC (else another endpoint's MAC could be
//!   taken over: the FDB would move it);
//! * an IPv4 source is the endpoint's address, or 0.0.0.0 (what a DHCP client or an
//!   address conflict probe sends before it has an address);
//! * an ARP sender is the endpoint's MAC and address (or 0.0.0.0, an RFC 5227 probe),
//!   so a gratuitous ARP cannot take over another endpoint's address.
//!
//! Other protocols (IPv6: switchyard assigns no IPv6 addresses) are checked for their
//! MAC only. On a network without port security this stage is one branch.
//!
//! Next: `l2-learn`, or drop. Trace:
//! `port-security: port web may send from 02:42:0a:01:00:02 only, not 02:42:0a:01:00:03: drop`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline};
use crate::wire::{ArpPacket, EtherType, Ipv4Packet, MacAddr};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "port-security";

counted! {
    /// Why port-security drops a frame.
    pub enum Drop: DropReason in NAME {
        PortSecurityMac => ("port_security_mac", "source MAC is not the endpoint's own (port security)"),
        PortSecurityIp => ("port_security_ip", "IPv4 source is not the endpoint's own address (port security)"),
        PortSecurityArp => ("port_security_arp", "ARP sender MAC or address is not the endpoint's own (port security)"),
    }
}

/// Where a frame goes from port-security.
pub enum Next {
    L2Learn,
    Drop(DropReason),
}

/// What port-security says about a frame it refuses.
pub enum Trace<'a> {
    Mac {
        port: &'a str,
        own: MacAddr,
        src: MacAddr,
    },
    Ip {
        port: &'a str,
        own: Option<Ipv4Addr>,
        src: Ipv4Addr,
    },
    Arp {
        port: &'a str,
        sha: MacAddr,
        spa: Ipv4Addr,
    },
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Mac { port, own, src } => {
                write!(f, "port {port} may send from {own} only, not {src}: drop")
            }
            Trace::Ip { port, own, src } => match own {
                Some(own) => write!(f, "port {port} may send as {own} only, not {src}: drop"),
                None => write!(f, "port {port} has no address to send {src} from: drop"),
            },
            Trace::Arp { port, sha, spa } => write!(
                f,
                "ARP from port {port} claims {spa} at {sha}, not its endpoint's: drop"
            ),
        }
    }
}

impl TraceLine for Trace<'_> {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn port_security(&mut self, f: &Frame, l2: &L2) -> Next {
        if !self.sh.domains[l2.domain.index()].spec.guard.port_security {
            return Next::L2Learn;
        }
        let port = &self.sh.ports[f.ingress.index()];
        let (own_mac, own_ip) = (port.mac, port.ip);
        if let Some(own) = own_mac {
            if l2.src != own {
                trace!(
                    self,
                    f,
                    Trace::Mac {
                        port: self.port_name(f.ingress),
                        own,
                        src: l2.src,
                    }
                );
                return Next::Drop(Drop::PortSecurityMac.into());
            }
        }
        // The type of what follows the tags (ethernet-input set `l3` past them).
        let l3 = usize::from(f.l3);
        let data = f.data();
        let inner = EtherType(u16::from_be_bytes([data[l3 - 2], data[l3 - 1]]));
        let ip_ok = |ip: Ipv4Addr| ip.is_unspecified() || Some(ip) == own_ip;
        match inner {
            EtherType::IPV4 => {
                if let Ok(ip) = Ipv4Packet::new_checked(f.network()) {
                    let src = ip.src();
                    if !ip_ok(src) {
                        trace!(
                            self,
                            f,
                            Trace::Ip {
                                port: self.port_name(f.ingress),
                                own: own_ip,
                                src,
                            }
                        );
                        return Next::Drop(Drop::PortSecurityIp.into());
                    }
                }
            }
            EtherType::ARP => {
                if let Ok(arp) = ArpPacket::new_checked(f.network()) {
                    let (sha, spa) = (arp.sender_mac(), arp.sender_ip());
                    if own_mac.is_some_and(|m| m != sha) || !ip_ok(spa) {
                        trace!(
                            self,
                            f,
                            Trace::Arp {
                                port: self.port_name(f.ingress),
                                sha,
                                spa,
                            }
                        );
                        return Next::Drop(Drop::PortSecurityArp.into());
                    }
                }
            }
            _ => {}
        }
        Next::L2Learn
    }
}
