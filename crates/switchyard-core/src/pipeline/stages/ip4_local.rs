//! Stage `ip4-local`: IPv4 packets for switchyard's own addresses.
//!
//! switchyard's stack serves two things at its addresses:
//! * ICMP echo (ping), answered in place — addresses swapped, type 8 → 0, TTL set
//!   afresh, checksums patched incrementally (RFC 792, RFC 1624), the frame sent back
//!   out of its ingress port. Other ICMP messages are taken and noted.
//! * DNS (UDP and TCP port 53), on networks that have it (`DomainSpec::dns`), as
//!   Docker's embedded resolver: the packet is *punted* — handed whole to the DNS
//!   service, which runs on a thread of its own, never on a worker. Which network
//!   the query came from decides, not which address it asks: the answer depends on
//!   the asker's view (the names its network sees), and a Linux host answers on all
//!   of its addresses, so a query to another network's gateway is punted too when
//!   the asker's network has DNS.
//!
//! Other protocols and ports are refused. It does not reassemble fragments, so a
//! fragment of a query is dropped like any other (DNS over UDP fits one datagram or
//! is retried over TCP).
//!
//! Next: the reply back out of the ingress port, consumed, punted, or drop. Trace:
//! `ip4-local: echo request 172.17.0.2 > 172.17.0.1 id 7 seq 1: replying`,
//! `ip4-local: DNS over udp 172.18.0.2:40000 > 172.18.0.1:53: to the DNS service`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline, DEFAULT_TTL};
use crate::wire::icmp::kind;
use crate::wire::{IcmpPacket, IpProtocol, TcpPacket, UdpPacket};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "ip4-local";

counted! {
    /// Why ip4-local drops a packet.
    pub enum Drop: DropReason in NAME {
        LocalFragment => ("local_fragment", "fragment addressed to switchyard (it does not reassemble)"),
        LocalProtocol => ("local_protocol", "protocol not served at switchyard's address"),
        IcmpMalformed => ("icmp_malformed", "ICMP to switchyard truncated or with a bad checksum"),
        LocalL4Truncated => ("local_l4_truncated", "UDP or TCP to switchyard on a network with DNS, its header truncated or malformed"),
    }
}

counted! {
    /// What ip4-local counts.
    pub enum Event: Event in NAME {
        EchoReplies => ("echo_replies", "ICMP echo replies sent from switchyard's addresses"),
        DnsPunted => ("dns_punted", "queries handed to the DNS service"),
    }
}

/// Where a packet goes from ip4-local.
pub enum Next {
    /// Answered in place: the frame goes back out of its ingress port.
    Reply,
    /// Taken.
    Consume,
    /// Handed to the DNS service (a query to port 53).
    Punt,
    Drop(DropReason),
}

/// The port DNS is served on, over UDP and TCP (RFC 1035, section 4.2).
pub const DNS_PORT: u16 = 53;

/// What ip4-local says about a packet.
pub enum Trace {
    Fragment,
    NotServed(IpProtocol),
    L4Truncated(IpProtocol),
    PortNotServed(IpProtocol, u16),
    Dns {
        proto: IpProtocol,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
    },
    IcmpMalformed,
    IcmpNoted(u8),
    EchoReply {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        seq: u16,
    },
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Fragment => f.write_str("fragment for switchyard (no reassembly): drop"),
            Trace::NotServed(p) => write!(f, "{p} to switchyard's address is not served: drop"),
            Trace::L4Truncated(p) => write!(f, "{p} header truncated or malformed: drop"),
            Trace::PortNotServed(p, port) => {
                write!(
                    f,
                    "{p} port {port} is not served at switchyard's address: drop"
                )
            }
            Trace::Dns {
                proto,
                src,
                sport,
                dst,
                dport,
            } => write!(
                f,
                "DNS over {proto} {src}:{sport} > {dst}:{dport}: to the DNS service"
            ),
            Trace::IcmpMalformed => f.write_str("ICMP truncated or with a bad checksum: drop"),
            Trace::IcmpNoted(t) => write!(f, "ICMP type {t} to switchyard: noted"),
            Trace::EchoReply { src, dst, id, seq } => {
                write!(f, "echo request {src} > {dst} id {id} seq {seq}: replying")
            }
        }
    }
}

impl TraceLine for Trace {
    fn stage(&self) -> &'static str {
        NAME
    }
}

impl Pipeline {
    pub(crate) fn ip4_local(&mut self, f: &mut Frame, l2: &L2) -> Next {
        let spec = &self.sh.domains[l2.domain.index()].spec;
        let gw = spec
            .gateway
            .expect("frames reach L3 only through their network's gateway MAC");
        // The asker's network decides, whichever of switchyard's addresses it asks.
        let dns = spec.dns;
        let ip = f.ipv4();
        if ip.more_fragments() || ip.is_later_fragment() {
            trace!(self, f, Trace::Fragment);
            return Next::Drop(Drop::LocalFragment.into());
        }
        let proto = ip.protocol();
        if dns && (proto == IpProtocol::UDP || proto == IpProtocol::TCP) {
            return self.ip4_local_dns(f, proto);
        }
        if proto != IpProtocol::ICMP {
            trace!(self, f, Trace::NotServed(proto));
            return Next::Drop(Drop::LocalProtocol.into());
        }
        let (src, dst) = (ip.src(), ip.dst());
        let Some(icmp) = IcmpPacket::new_checked(ip.payload())
            .ok()
            .filter(|i| i.checksum_ok())
        else {
            trace!(self, f, Trace::IcmpMalformed);
            return Next::Drop(Drop::IcmpMalformed.into());
        };
        if icmp.msg_type() != kind::ECHO_REQUEST {
            trace!(self, f, Trace::IcmpNoted(icmp.msg_type()));
            return Next::Consume;
        }
        let (id, seq) = (icmp.echo_ident(), icmp.echo_seq());
        let mut ip = f.ipv4_mut();
        IcmpPacket::new_unchecked(ip.payload_mut()).make_echo_reply();
        ip.set_src(dst);
        ip.set_dst(src);
        ip.set_ttl(DEFAULT_TTL);
        let mut eth = f.ethernet_mut();
        eth.set_dst(l2.src);
        eth.set_src(gw.mac);
        f.vnet = Default::default();
        self.counters.event(Event::EchoReplies);
        trace!(self, f, Trace::EchoReply { src, dst, id, seq });
        Next::Reply
    }

    /// UDP or TCP to switchyard from a network with DNS: a query to port 53 goes to
    /// the DNS service; any other port is not served. The header must be whole to
    /// read the port from.
    fn ip4_local_dns(&mut self, f: &mut Frame, proto: IpProtocol) -> Next {
        let ip = f.ipv4();
        let ports = if proto == IpProtocol::UDP {
            UdpPacket::new_checked(ip.payload())
                .ok()
                .map(|u| (u.src_port(), u.dst_port()))
        } else {
            TcpPacket::new_checked(ip.payload())
                .ok()
                .map(|t| (t.src_port(), t.dst_port()))
        };
        let Some((sport, dport)) = ports else {
            trace!(self, f, Trace::L4Truncated(proto));
            return Next::Drop(Drop::LocalL4Truncated.into());
        };
        if dport != DNS_PORT {
            trace!(self, f, Trace::PortNotServed(proto, dport));
            return Next::Drop(Drop::LocalProtocol.into());
        }
        let (src, dst) = (ip.src(), ip.dst());
        self.counters.event(Event::DnsPunted);
        trace!(
            self,
            f,
            Trace::Dns {
                proto,
                src,
                sport,
                dst,
                dport,
            }
        );
        Next::Punt
    }
}
