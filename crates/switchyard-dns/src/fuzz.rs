//! The fuzz oracle: any bytes, as queries and as upstream datagrams, against a resolver
//! with two small zones and one upstream. Shared by the `dns` fuzz target and the test
//! that replays its saved inputs, so both check the same things:
//!
//! - nothing panics;
//! - every answer is a DNS response that parses, with the query's ID, within the
//!   transport's size limit;
//! - a network's answers never hold the other network's names or addresses;
//! - a forwarded query is the client's message but for the ID, and no more than the
//!   maximum wait at once;
//! - an upstream answer is accepted only for the query it answers, and comes back
//!   with the client's ID;
//! - every query is counted under exactly one outcome.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use simple_dns::rdata::{RData, A};
use simple_dns::{header_buffer, Packet, PacketFlag, ResourceRecord, CLASS};

use crate::{
    Counters, Outcome, Resolver, Transport, Zone, Zones, CLASSIC_UDP_PAYLOAD, EDNS_UDP_PAYLOAD,
    TCP_MAX_MESSAGE,
};

const UPSTREAM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 53), 53);
const MAX_OUTSTANDING: usize = 4;
const TIMEOUT_NS: u64 = 2_000_000_000;

/// Network 1 ("front", 10.1.0.0/24, domain front.internal) and network 2 ("back",
/// 10.2.0.0/24, no domain); bridge domain 9 has no zone.
fn zones() -> Zones {
    let mut front = Zone::new(
        "front",
        Ipv4Addr::new(10, 1, 0, 1),
        Ipv4Addr::new(10, 1, 0, 0),
        24,
        Some("front.internal"),
    );
    front.add("web", Ipv4Addr::new(10, 1, 0, 2), true);
    front.add("api", Ipv4Addr::new(10, 1, 0, 3), true);
    front.add("www.example", Ipv4Addr::new(10, 1, 0, 2), false);
    front.add("pool", Ipv4Addr::new(10, 1, 0, 2), false);
    front.add("pool", Ipv4Addr::new(10, 1, 0, 3), false);
    let mut back = Zone::new(
        "back",
        Ipv4Addr::new(10, 2, 0, 1),
        Ipv4Addr::new(10, 2, 0, 0),
        24,
        None,
    );
    back.add("db", Ipv4Addr::new(10, 2, 0, 2), true);
    let mut zones = Zones::default();
    zones.insert(1, front);
    zones.insert(2, back);
    zones
}

struct Harness {
    resolver: Resolver<u32>,
    counters: Arc<Counters>,
    out: Vec<u8>,
    next_token: u32,
    /// Forwarded queries by the ID they went upstream with: (token, client ID, bytes).
    forwarded: HashMap<u16, (u32, u16, Vec<u8>)>,
    last_forwarded: Option<u16>,
    now: u64,
}

impl Harness {
    fn query(&mut self, domain: u16, msg: &[u8], transport: Transport) {
        let token = self.next_token;
        self.next_token += 1;
        let outcome = self
            .resolver
            .query(domain, msg, transport, self.now, token, &mut self.out);
        match outcome {
            Outcome::Drop => assert!(
                msg.len() < 12 || msg[2] & 0x80 != 0,
                "only a message without a header or a response is dropped"
            ),
            Outcome::Answer => self.check_answer(domain, msg, transport),
            Outcome::Forward { to } => {
                assert_eq!(to, UPSTREAM);
                assert_eq!(self.out.len(), msg.len(), "forwarded as it came");
                assert_eq!(
                    self.out[2..],
                    msg[2..],
                    "forwarded as it came but for the ID"
                );
                let id = header_buffer::id_unchecked(&self.out);
                let client_id = header_buffer::id_unchecked(msg);
                let again = self
                    .forwarded
                    .insert(id, (token, client_id, self.out.clone()));
                assert!(
                    again.is_none(),
                    "an upstream ID is used by one query at a time"
                );
                self.last_forwarded = Some(id);
            }
        }
        assert!(self.resolver.outstanding() <= MAX_OUTSTANDING);
        assert_eq!(self.resolver.outstanding(), self.forwarded.len());
    }

    fn check_answer(&self, domain: u16, msg: &[u8], transport: Transport) {
        let r = Packet::parse(&self.out).expect("an answer parses");
        assert!(r.has_flags(PacketFlag::RESPONSE));
        assert_eq!(
            r.id(),
            header_buffer::id_unchecked(msg),
            "the answer has the query's ID"
        );
        let limit = match (
            transport,
            Packet::parse(msg).ok().and_then(|q| q.opt().cloned()),
        ) {
            (Transport::Tcp, _) => TCP_MAX_MESSAGE,
            (Transport::Udp, None) => CLASSIC_UDP_PAYLOAD,
            (Transport::Udp, Some(_)) => EDNS_UDP_PAYLOAD.into(),
        };
        assert!(
            self.out.len() <= limit,
            "{} bytes over {transport:?}",
            self.out.len()
        );
        let records = r
            .answers
            .iter()
            .chain(&r.name_servers)
            .chain(&r.additional_records);
        for rr in records {
            match (domain, &rr.rdata) {
                (1, RData::A(a)) => assert_eq!(subnet(a), [10, 1, 0], "{rr:?}"),
                (2, RData::A(a)) => assert_eq!(subnet(a), [10, 2, 0], "{rr:?}"),
                (1, RData::PTR(n)) => assert!(n.0.to_string().ends_with(".front.internal")),
                (2, RData::PTR(n)) => assert_eq!(n.0.to_string(), "db"),
                (1, RData::SOA(s)) => assert_eq!(s.mname.to_string(), "front.internal"),
                (d, other) => panic!("network {d} answered {other:?}"),
            }
        }
    }

    fn upstream(&mut self, from: SocketAddrV4, msg: &[u8]) {
        let id = header_buffer::id(msg).ok();
        match self.resolver.upstream_reply(from, msg, &mut self.out) {
            None => {}
            Some(token) => {
                let id = id.expect("an accepted answer has a header");
                let (want, client_id, sent) = self
                    .forwarded
                    .remove(&id)
                    .expect("it answers a forwarded query");
                assert_eq!(token, want, "the answer goes to the client that asked");
                assert_eq!(from, UPSTREAM);
                let asked = Packet::parse(&sent).expect("a forwarded query parses");
                let answered = Packet::parse(msg).expect("an accepted answer parses");
                assert_eq!(
                    question(&asked),
                    question(&answered),
                    "the answer is to the question asked"
                );
                let r = Packet::parse(&self.out).expect("a relayed answer parses");
                assert_eq!(r.id(), client_id, "with the client's ID");
            }
        }
        assert_eq!(self.resolver.outstanding(), self.forwarded.len());
    }

    /// An answer to the last forwarded query, built by the crate, with addresses from
    /// `chunk`, then spoiled as its first byte says: from another source, another ID,
    /// or another question.
    fn answer_last(&mut self, chunk: &[u8]) {
        let Some(id) = self.last_forwarded else {
            return;
        };
        let Some((_, _, sent)) = self.forwarded.get(&id) else {
            return;
        };
        let sent = sent.clone();
        let Ok(q) = Packet::parse(&sent) else { return };
        let mut reply = q.clone().into_reply();
        let how = chunk.first().copied().unwrap_or(0);
        for ip in chunk.chunks_exact(4).skip(1) {
            let ip = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
            let name = reply.questions[0].qname.clone();
            reply.answers.push(ResourceRecord::new(
                name,
                CLASS::IN,
                300,
                RData::A(A::from(ip)),
            ));
        }
        let mut from = UPSTREAM;
        match how % 4 {
            1 => from = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 53),
            2 => reply.set_id(id ^ 1),
            3 => reply.questions[0].qtype = simple_dns::TYPE::TXT.into(),
            _ => {}
        }
        let Ok(bytes) = reply.build_bytes_vec_compressed() else {
            return;
        };
        self.upstream(from, &bytes);
        // The spoiled answer may still answer another query that waits for the same
        // question under the ID it was given (`upstream` checked that); never this one.
        let same_question = how % 4 == 3 && q.questions[0].qtype == simple_dns::TYPE::TXT.into();
        let answered = !self.forwarded.contains_key(&id);
        assert_eq!(
            answered,
            how % 4 == 0 || same_question,
            "spoiled answers are refused ({how})"
        );
    }

    fn expire(&mut self, now: u64) {
        self.now = now;
        let mut ended = Vec::new();
        self.resolver.expire(now, |token, bytes| {
            let r = Packet::parse(bytes).expect("a timeout answer parses");
            assert_eq!(r.rcode(), simple_dns::RCODE::ServerFailure);
            ended.push(token);
        });
        for token in ended {
            let id = self
                .forwarded
                .iter()
                .find(|(_, v)| v.0 == token)
                .map(|(&k, _)| k);
            self.forwarded
                .remove(&id.expect("a timeout ends a forwarded query"));
        }
        assert_eq!(self.resolver.outstanding(), self.forwarded.len());
        if let Some(d) = self.resolver.next_deadline() {
            assert!(d > now);
        }
    }
}

/// A message's first question: its name in lowercase (RFC 4343), type and class.
fn question(p: &Packet<'_>) -> Option<(String, u16, u16)> {
    let q = p.questions.first()?;
    let name = q.qname.to_string().to_ascii_lowercase();
    Some((name, q.qtype.into(), q.qclass.into()))
}

/// The /24 an A record's address is in.
fn subnet(a: &A) -> [u8; 3] {
    let [x, y, z, _] = Ipv4Addr::from(a.address).octets();
    [x, y, z]
}

/// Runs `data` through the resolver and checks the invariants above; panics when one
/// does not hold. The upstream IDs are drawn from a seed (the first byte), so an input
/// replays the same way every time.
pub fn fuzz_check(data: &[u8]) {
    let counters = Arc::new(Counters::default());
    let mut resolver = Resolver::new(
        vec![UPSTREAM],
        MAX_OUTSTANDING,
        TIMEOUT_NS,
        Arc::clone(&counters),
    )
    .with_id_seed(u64::from(data.first().copied().unwrap_or(0)));
    resolver.set_zones(Arc::new(zones()));
    let mut h = Harness {
        resolver,
        counters,
        out: Vec::new(),
        next_token: 0,
        forwarded: HashMap::new(),
        last_forwarded: None,
        now: 0,
    };
    // The whole input as one message, every way it can arrive.
    h.query(1, data, Transport::Udp);
    h.query(1, data, Transport::Tcp);
    h.query(2, data, Transport::Udp);
    h.query(9, data, Transport::Udp);
    h.upstream(UPSTREAM, data);
    h.answer_last(data);
    // Then as steps: an operation byte, a length byte, that many bytes.
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let (chunk, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        match op % 7 {
            0 => h.query(1, chunk, Transport::Udp),
            1 => h.query(1, chunk, Transport::Tcp),
            2 => h.query(2, chunk, Transport::Udp),
            3 => h.upstream(UPSTREAM, chunk),
            4 => h.answer_last(chunk),
            5 => {
                // The chunk under the last forwarded ID, from the upstream.
                if let (Some(id), true) = (h.last_forwarded, chunk.len() >= 2) {
                    let mut m = chunk.to_vec();
                    m[..2].copy_from_slice(&id.to_be_bytes());
                    h.upstream(UPSTREAM, &m);
                }
            }
            _ => {
                let step = u64::from(chunk.first().copied().unwrap_or(0)) * 100_000_000;
                h.expire(h.now + step);
            }
        }
    }
    h.expire(u64::MAX);
    assert_eq!(h.resolver.outstanding(), 0, "every forwarded query ends");
    let c = h.counters.snapshot();
    assert_eq!(c.queries, c.udp_queries + c.tcp_queries);
    let dropped = c.malformed - c.formerr;
    let ended = c.answers
        + c.nodata
        + c.nxdomain
        + c.forwarded
        + c.refused
        + c.upstream_busy
        + c.formerr
        + c.notimp
        + dropped;
    assert_eq!(
        c.queries, ended,
        "every query is counted under one outcome: {c:?}"
    );
    assert_eq!(c.forwarded, c.upstream_answers + c.upstream_timeouts);
    assert_eq!(c.servfail, c.upstream_busy + c.upstream_timeouts);
}
