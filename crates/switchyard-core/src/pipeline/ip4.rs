//! Stages `ip4-input` and `ip4-local`: IPv4 packets sent to a gateway MAC.
//!
//! `ip4-input` validates the header as RFC 1812 section 5.2.2 asks of a router before
//! anything trusts it: version 4, header length at least 20 bytes, total length
//! covering the header and within the frame, header checksum correct. It refuses to
//! route what no router routes: martian sources (0/8, 127/8, multicast, broadcast)
//! and broadcast or multicast destinations. A packet for any of switchyard's own
//! addresses — the gateway of any network, as a Linux host answers on all its
//! addresses — goes to `ip4-local`; everything else to `ip4-forward`.
//!
//! `ip4-local` answers ICMP echo (ping) in place: addresses swapped, type 8 → 0, TTL
//! set afresh, checksums patched incrementally. It does not reassemble fragments.
//!
//! Drops: [`DropReason::Ip4Malformed`], [`DropReason::Ip4BadChecksum`],
//! [`DropReason::MartianSource`], [`DropReason::NotRouted`], [`DropReason::LocalFragment`],
//! [`DropReason::LocalProtocol`], [`DropReason::IcmpMalformed`]. Events: [`Event::EchoReplies`].
//! Trace: `ip4-local: echo request 172.17.0.2 > 172.17.0.1 id 7 seq 1: replying`

use super::nat::Pre;
use super::trace::note;
use super::{Action, DropReason, Emitter, Event, Frame, Pipeline, L2};
use crate::wire::icmp::kind;
use crate::wire::{IcmpPacket, IpProtocol, Ipv4Packet};
use std::net::Ipv4Addr;

const INPUT: &str = "ip4-input";
const LOCAL: &str = "ip4-local";
/// TTL of packets switchyard originates, as Linux's default `ip_default_ttl`.
pub(super) const DEFAULT_TTL: u8 = 64;

fn martian(src: Ipv4Addr) -> bool {
    src.octets()[0] == 0 || src.is_loopback() || src.is_multicast() || src.is_broadcast()
}

impl Pipeline {
    pub(super) fn ip4_input(&mut self, f: &mut Frame, l2: &L2, out: &mut Emitter) -> Action {
        let ip = match Ipv4Packet::new_checked(f.network()) {
            Ok(ip) => ip,
            Err(e) => {
                note!(self, f, INPUT, "invalid IPv4 header ({e}): drop");
                return Action::Drop(DropReason::Ip4Malformed);
            }
        };
        if !ip.checksum_ok() {
            note!(
                self,
                f,
                INPUT,
                "header checksum 0x{:04x} is wrong: drop",
                ip.header_checksum()
            );
            return Action::Drop(DropReason::Ip4BadChecksum);
        }
        let (src, dst, hlen) = (ip.src(), ip.dst(), ip.header_len());
        note!(
            self,
            f,
            INPUT,
            "{} > {} {} ttl {} len {}",
            src,
            dst,
            ip.protocol(),
            ip.ttl(),
            ip.total_len()
        );
        // Valid: from here on the header is read through views on the offsets.
        f.l4 = f.l3 + hlen as u16;
        if martian(src) {
            note!(self, f, INPUT, "martian source {src}: drop");
            return Action::Drop(DropReason::MartianSource);
        }
        let subnet = self.sh.domains[l2.domain.index()].spec.subnet;
        if dst.is_broadcast() || dst.is_multicast() || dst == subnet.broadcast() {
            note!(
                self,
                f,
                INPUT,
                "{dst} is a broadcast or multicast address: not routed"
            );
            return Action::Drop(DropReason::NotRouted);
        }
        // Connection tracking first: a published port or a reply to a masqueraded
        // flow changes where the packet goes.
        match self.ct_lookup(f, l2) {
            Pre::Drop(r) => Action::Drop(r),
            Pre::Tracked { dst } => self.ip4_forward(f, l2, dst, out),
            Pre::Untracked if self.sh.local.contains_key(&u32::from(dst)) => self.ip4_local(f, l2),
            Pre::Untracked => self.ip4_forward(f, l2, dst, out),
        }
    }

    fn ip4_local(&mut self, f: &mut Frame, l2: &L2) -> Action {
        let gw_mac = self.sh.domains[l2.domain.index()]
            .spec
            .gateway
            .map(|g| g.mac)
            .expect("gateway");
        let ip = f.ipv4();
        if ip.more_fragments() || ip.frag_offset() != 0 {
            note!(
                self,
                f,
                LOCAL,
                "fragment for switchyard (no reassembly): drop"
            );
            return Action::Drop(DropReason::LocalFragment);
        }
        if ip.protocol() != IpProtocol::ICMP {
            let proto = ip.protocol();
            note!(
                self,
                f,
                LOCAL,
                "{proto} to switchyard's address is not served: drop"
            );
            return Action::Drop(DropReason::LocalProtocol);
        }
        let (src, dst) = (ip.src(), ip.dst());
        let Some(icmp) = IcmpPacket::new_checked(ip.payload())
            .ok()
            .filter(|i| i.checksum_ok())
        else {
            note!(
                self,
                f,
                LOCAL,
                "ICMP truncated or with a bad checksum: drop"
            );
            return Action::Drop(DropReason::IcmpMalformed);
        };
        if icmp.msg_type() != kind::ECHO_REQUEST {
            let t = icmp.msg_type();
            note!(self, f, LOCAL, "ICMP type {t} to switchyard: noted");
            return Action::Consume;
        }
        let (id, seq) = (icmp.echo_ident(), icmp.echo_seq());
        let mut ip = f.ipv4_mut();
        IcmpPacket::new_unchecked(ip.payload_mut()).make_echo_reply();
        ip.set_src(dst);
        ip.set_dst(src);
        ip.set_ttl(DEFAULT_TTL);
        let mut eth = f.ethernet_mut();
        eth.set_dst(l2.src);
        eth.set_src(gw_mac);
        f.vnet = Default::default();
        self.counters.event(Event::EchoReplies);
        note!(
            self,
            f,
            LOCAL,
            "echo request {} > {} id {} seq {}: replying",
            src,
            dst,
            id,
            seq
        );
        Action::Reply
    }
}
