//! Stage `ip4-local`: IPv4 packets for switchyard's own addresses.
//!
//! switchyard's stack serves one thing at its addresses: ICMP echo (ping), answered in
//! place — addresses swapped, type 8 → 0, TTL set afresh, checksums patched
//! incrementally (RFC 792, RFC 1624), the frame sent back out of its ingress port.
//! Other ICMP messages are taken and noted; other protocols are refused. It does not
//! reassemble fragments.
//!
//! Next: the reply back out of the ingress port, consumed, or drop. Trace:
//! `ip4-local: echo request 172.17.0.2 > 172.17.0.1 id 7 seq 1: replying`

use crate::pipeline::counters::counted;
use crate::pipeline::graph::L2;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline, DEFAULT_TTL};
use crate::wire::icmp::kind;
use crate::wire::{IcmpPacket, IpProtocol};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "ip4-local";

counted! {
    /// Why ip4-local drops a packet.
    pub enum Drop: DropReason in NAME {
        LocalFragment => ("local_fragment", "fragment addressed to switchyard (it does not reassemble)"),
        LocalProtocol => ("local_protocol", "protocol not served at switchyard's address"),
        IcmpMalformed => ("icmp_malformed", "ICMP to switchyard truncated or with a bad checksum"),
    }
}

counted! {
    /// What ip4-local counts.
    pub enum Event: Event in NAME {
        EchoReplies => ("echo_replies", "ICMP echo replies sent from switchyard's addresses"),
    }
}

/// Where a packet goes from ip4-local.
pub enum Next {
    /// Answered in place: the frame goes back out of its ingress port.
    Reply,
    /// Taken.
    Consume,
    Drop(DropReason),
}

/// What ip4-local says about a packet.
pub enum Trace {
    Fragment,
    NotServed(IpProtocol),
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
        let gw = self.sh.domains[l2.domain.index()]
            .spec
            .gateway
            .expect("frames reach L3 only through their network's gateway MAC");
        let ip = f.ipv4();
        if ip.more_fragments() || ip.is_later_fragment() {
            trace!(self, f, Trace::Fragment);
            return Next::Drop(Drop::LocalFragment.into());
        }
        if ip.protocol() != IpProtocol::ICMP {
            trace!(self, f, Trace::NotServed(ip.protocol()));
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
}
