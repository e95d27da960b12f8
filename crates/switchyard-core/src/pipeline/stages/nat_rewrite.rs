//! Stage `nat-rewrite`: a tracked packet gets its translated addresses and ports, on
//! its way out (see `ct-lookup` for the whole of NAT).
//!
//! The rewrite is the difference between the flow's two tuples: a packet in the
//! original direction leaves as `reply.dst → reply.src`, a reply as
//! `orig.dst → orig.src` (see [`Conn::translated`](crate::pipeline::Conn::translated)).
//! Every checksum is patched incrementally, a partial one (checksum offload) as
//! partial ([`crate::wire::nat`]).
//!
//! An ICMP error about a tracked flow travels like a reply to the packet it quotes:
//! its outer addresses are translated as that reply's would be, and the quote is
//! rewritten to show the packet as the endpoint behind the NAT sent or received it
//! (as netfilter's `nf_nat_icmp_reply_translation`).
//!
//! Untracked packets pass unchanged. A packet whose flow expired while it waited for
//! its next hop cannot be translated, and is dropped.
//!
//! Next: `ip4-output`, or drop. Trace: `nat-rewrite: 198.51.100.1:40000 > 198.51.100.2:80`

use super::nat_snat;
use crate::pipeline::conntrack::Dir;
use crate::pipeline::counters::counted;
use crate::pipeline::trace::{trace, TraceLine};
use crate::pipeline::{DropReason, Frame, Pipeline};
use crate::wire::nat::{self, Endpoints};
use std::fmt;
use std::net::Ipv4Addr;

pub const NAME: &str = "nat-rewrite";

counted! {
    /// Why nat-rewrite drops a packet.
    pub enum Drop: DropReason in NAME {
        ConntrackGone => ("conntrack_gone", "its connection expired while the packet waited"),
    }
}

counted! {
    /// What nat-rewrite counts.
    pub enum Event: Event in NAME {
        IcmpErrorsTranslated => ("icmp_errors_translated", "ICMP errors about translated flows, translated"),
    }
}

/// Where a packet goes from nat-rewrite.
pub enum Next {
    Ip4Output,
    Drop(DropReason),
}

/// What nat-rewrite says about a packet.
pub enum Trace {
    Gone,
    IcmpError {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        quote: Endpoints,
    },
    Rewritten(Endpoints),
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Gone => f.write_str("its connection is gone: drop"),
            Trace::IcmpError { src, dst, quote: q } => write!(
                f,
                "ICMP error: {src} > {dst}, quote {}:{} > {}:{}",
                q.src, q.sport, q.dst, q.dport
            ),
            Trace::Rewritten(to) => {
                write!(f, "{}:{} > {}:{}", to.src, to.sport, to.dst, to.dport)
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
    pub(crate) fn nat_rewrite<const DRY: bool>(&mut self, f: &mut Frame) -> Next {
        let (c, dir) = match f.ct {
            Some(r) => match self.sh.conntrack.get(r) {
                Some(c) => (c, r.dir),
                None => {
                    trace!(self, f, Trace::Gone);
                    return Next::Drop(Drop::ConntrackGone.into());
                }
            },
            // What-if: a new flow, which would be tracked but is not in the table.
            None if DRY => match self.what_if.as_ref().and_then(|w| w.ct) {
                Some(c) => (c, Dir::Original),
                None => return Next::Ip4Output,
            },
            None => return Next::Ip4Output,
        };
        let unsupported = Next::Drop(nat_snat::Drop::NatUnsupported.into());
        if f.ct_related {
            // The error travels like a reply to the packet it quotes.
            let (from, to) = match dir {
                Dir::Reply => (c.reply, c.orig),
                Dir::Original => (c.orig, c.reply),
            };
            let mut ip = f.ipv4_mut();
            let (osrc, odst) = (ip.src(), ip.dst());
            let src = if osrc == from.src { to.dst } else { osrc };
            let dst = if odst == from.dst { to.src } else { odst };
            let quote = Endpoints {
                src: to.src,
                sport: to.sport,
                dst: to.dst,
                dport: to.dport,
            };
            if nat::rewrite_icmp_error(&mut ip, src, dst, quote).is_err() {
                return unsupported;
            }
            self.counters.event(Event::IcmpErrorsTranslated);
            trace!(self, f, Trace::IcmpError { src, dst, quote });
            return Next::Ip4Output;
        }
        let to = c.translated(dir);
        // With checksum offload, the checksum from the transport header on is partial.
        let partial = f.vnet.needs_csum() && f.vnet.csum_start == f.l4;
        if nat::rewrite(&mut f.ipv4_mut(), to, partial).is_err() {
            return unsupported;
        }
        trace!(self, f, Trace::Rewritten(to));
        Next::Ip4Output
    }
}
