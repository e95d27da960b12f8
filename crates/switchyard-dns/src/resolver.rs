//! The resolver: one query in, one decision out — answer from the network's zone,
//! forward to an upstream server, or (only for what is not a query at all) drop.
//!
//! It keeps the forwarded queries that wait for an upstream answer, each under a fresh
//! random ID (so an off-path attacker cannot guess which ID to spoof, RFC 5452), with
//! the client's own ID, its token and a deadline. An upstream datagram is accepted only
//! if its ID, its question and its source all match one of them; anything else is
//! counted and ignored. A query the upstream never answers gets SERVFAIL at its
//! deadline, so a client is never left to its own (multi-second) timeout.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::io::Cursor;
use std::net::SocketAddrV4;
use std::sync::Arc;

use simple_dns::rdata::{RData, A, OPT, PTR, SOA};
use simple_dns::{
    header_buffer, Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, OPCODE, QCLASS,
    QTYPE, RCODE, TYPE,
};

use crate::counters::Counters;
use crate::zone::{text_name, Lookup, Zone, Zones};

/// TTL of the zone's records, in seconds. Short because the names change at run time
/// (an endpoint is removed, or comes back with another address) and a client's cache
/// must not outlive that for long; asking again is cheap, the server is one hop away.
/// Docker's embedded DNS answers with 600 s, long enough for a caching client to keep
/// using a removed container's address for ten minutes.
pub const LOCAL_TTL: u32 = 10;

/// The UDP payload size this server advertises with EDNS (RFC 6891): 1232 bytes, the
/// DNS Flag Day 2020 value that fits an IPv6 minimum MTU without fragmentation.
pub const EDNS_UDP_PAYLOAD: u16 = 1232;

/// The largest UDP response to a client that did not send EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: usize = 512;

/// The largest message over TCP: its 2-byte length prefix (RFC 1035 §4.2.2).
pub const TCP_MAX_MESSAGE: usize = 65535;

/// At most this many forwarded queries wait at once, whatever `max_outstanding` says:
/// IDs are 16 bits and drawn at random until one is free, so keeping at least half of
/// them free bounds that draw.
pub const MAX_OUTSTANDING_LIMIT: usize = 32768;

/// One network may hold at most this fraction (1/N) of the outstanding queries, so a
/// network flooding names outside the zone cannot keep the others from forwarding (the
/// per-network shares every table of switchyard has); at least [`MIN_NETWORK_SHARE`].
pub const NETWORK_SHARE_DIVISOR: usize = 4;
/// The smallest share of outstanding queries a network is given.
pub const MIN_NETWORK_SHARE: usize = 16;

/// How the query arrived: it sets how large the response may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: 512 bytes, or the client's EDNS size up to [`EDNS_UDP_PAYLOAD`].
    Udp,
    /// A TCP stream: up to [`TCP_MAX_MESSAGE`].
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds the response to send back.
    Answer,
    /// `out` holds the query to send to `to` (its ID rewritten).
    Forward {
        /// The upstream server.
        to: SocketAddrV4,
    },
    /// Nothing to send (counted as malformed): too short for a header, or a response.
    Drop,
}

/// A question as the upstream must echo it: names compared case-insensitively
/// (RFC 4343), type and class as numbers.
#[derive(Debug, PartialEq, Eq)]
struct QuestionKey {
    labels: Vec<Vec<u8>>,
    qtype: u16,
    qclass: u16,
}

impl QuestionKey {
    fn of(q: &Question<'_>) -> QuestionKey {
        QuestionKey {
            labels: q.qname.as_bytes().map(|l| l.to_ascii_lowercase()).collect(),
            qtype: q.qtype.into(),
            qclass: q.qclass.into(),
        }
    }
}

/// A forwarded query waiting for its upstream answer.
struct Pending<T> {
    token: T,
    /// The network the query came in on (its share of the outstanding queries).
    domain: u16,
    client_id: u16,
    upstream: SocketAddrV4,
    question: QuestionKey,
    deadline: u64,
    /// The largest response the client takes (its transport and EDNS size).
    limit: usize,
    /// The SERVFAIL to send if no upstream answers in time, built now while the query
    /// is at hand.
    servfail: Vec<u8>,
    /// The query as the client sent it, for the next upstream if this one is silent.
    query: Vec<u8>,
    /// Which of the upstreams it was sent to (an index into `upstreams`).
    tried: usize,
}

/// The resolver: answers from the zones, forwards the rest, tracks outstanding
/// forwarded queries. `T` is the caller's token for where the answer must go back
/// (opaque here).
pub struct Resolver<T> {
    upstreams: Vec<SocketAddrV4>,
    max_outstanding: usize,
    timeout_ns: u64,
    counters: Arc<Counters>,
    zones: Arc<Zones>,
    /// Outstanding forwarded queries by the ID they were sent upstream with.
    pending: HashMap<u16, Pending<T>>,
    /// How many of them each network holds.
    per_network: HashMap<u16, usize>,
    /// The same queries by deadline, for `expire` and `next_deadline`.
    deadlines: BTreeSet<(u64, u16)>,
    /// splitmix64 state for upstream IDs, seeded from the standard library's per-process
    /// random hasher keys.
    rng: u64,
    /// Queries whose upstream was silent, to be sent to the next one ([`Resolver::retries`]).
    retry: Vec<(SocketAddrV4, Vec<u8>)>,
}

impl<T> Resolver<T> {
    /// `upstreams`: servers for names outside the zones (empty: answer REFUSED); at most
    /// `max_outstanding` forwarded queries wait at once (beyond that: SERVFAIL at once,
    /// counted upstream_busy; capped at [`MAX_OUTSTANDING_LIMIT`]); a forwarded query
    /// unanswered after `timeout_ns` gets SERVFAIL.
    pub fn new(
        upstreams: Vec<SocketAddrV4>,
        max_outstanding: usize,
        timeout_ns: u64,
        counters: Arc<Counters>,
    ) -> Self {
        let mut seed = RandomState::new().build_hasher();
        seed.write_usize(max_outstanding);
        Resolver {
            upstreams,
            max_outstanding: max_outstanding.min(MAX_OUTSTANDING_LIMIT),
            timeout_ns,
            counters,
            zones: Arc::new(Zones::default()),
            pending: HashMap::new(),
            per_network: HashMap::new(),
            deadlines: BTreeSet::new(),
            retry: Vec::new(),
            rng: seed.finish(),
        }
    }

    /// Draws upstream IDs from `seed` instead of a random one: the same inputs then
    /// give the same IDs, which a fuzzer needs to replay what it found. Anyone who
    /// knows the seed can predict the IDs, so only tests use it.
    pub fn with_id_seed(mut self, seed: u64) -> Self {
        self.rng = seed;
        self
    }

    /// Replaces every zone at once (the topology changed).
    pub fn set_zones(&mut self, zones: Arc<Zones>) {
        self.zones = zones;
    }

    /// The zones answered from.
    pub fn zones(&self) -> &Arc<Zones> {
        &self.zones
    }

    /// The upstream servers, in order: a query goes to the first, and to the next when
    /// one is silent for the timeout.
    pub fn upstreams(&self) -> &[SocketAddrV4] {
        &self.upstreams
    }

    /// The counters this resolver updates.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// One query that arrived on network `domain` over `transport`. Writes into `out`
    /// (cleared first).
    pub fn query(
        &mut self,
        domain: u16,
        msg: &[u8],
        transport: Transport,
        now_ns: u64,
        client: T,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let c = &self.counters;
        Counters::bump(&c.queries);
        Counters::bump(match transport {
            Transport::Udp => &c.udp_queries,
            Transport::Tcp => &c.tcp_queries,
        });
        // Never answer a response: two servers answering each other's answers would
        // loop. Without a whole header there is no ID to answer to.
        if header_buffer::has_flags(msg, PacketFlag::RESPONSE).unwrap_or(true) {
            Counters::bump(&c.malformed);
            return Outcome::Drop;
        }
        let id = header_buffer::id_unchecked(msg);
        let rd = header_buffer::has_flags_unchecked(msg, PacketFlag::RECURSION_DESIRED);
        let opcode = header_buffer::opcode_unchecked(msg);
        if opcode != OPCODE::StandardQuery {
            // NOTIFY, UPDATE, ...: their sections mean other things; say so, don't guess.
            Counters::bump(&c.notimp);
            self.header_only(id, opcode, rd, RCODE::NotImplemented, out);
            return Outcome::Answer;
        }
        let query = match Packet::parse(msg) {
            Ok(p) if p.questions.len() == 1 => p,
            _ => {
                Counters::bump(&c.malformed);
                Counters::bump(&c.formerr);
                self.header_only(id, opcode, rd, RCODE::FormatError, out);
                return Outcome::Answer;
            }
        };
        let limit = match transport {
            // RFC 6891 §6.2.5: a size below 512 means 512.
            Transport::Udp => query.opt().map_or(CLASSIC_UDP_PAYLOAD, |o| {
                usize::from(o.udp_packet_size).clamp(CLASSIC_UDP_PAYLOAD, EDNS_UDP_PAYLOAD.into())
            }),
            Transport::Tcp => TCP_MAX_MESSAGE,
        };
        let zones = Arc::clone(&self.zones);
        let Some(zone) = zones.get(domain) else {
            // No zone: this network does not serve DNS. Say so rather than let the
            // client wait out its timeout.
            Counters::bump(&c.refused);
            self.error_reply(&query, RCODE::Refused, limit, out);
            return Outcome::Answer;
        };
        let question = &query.questions[0];
        let name = text_name(&question.qname);
        let lookup = match name.as_deref() {
            Some(n) => zone.lookup(n),
            // A name no endpoint can have, yet one of the zone's kind: a single label
            // or under the search domain.
            None if question.qname.get_labels().len() == 1 || zone.in_domain(&question.qname) => {
                Lookup::Unknown
            }
            None => Lookup::Outside,
        };
        if lookup == Lookup::Outside {
            return self.forward(domain, &query, msg, limit, now_ns, client, out);
        }
        if question.qclass != QCLASS::CLASS(CLASS::IN) {
            Counters::bump(&c.refused);
            self.error_reply(&query, RCODE::Refused, limit, out);
            return Outcome::Answer;
        }
        let qtype = question.qtype;
        let wants = |t: TYPE| qtype == QTYPE::TYPE(t) || qtype == QTYPE::ANY;
        let owner = question.qname.clone();
        let record = |rdata| ResourceRecord::new(owner.clone(), CLASS::IN, LOCAL_TTL, rdata);
        let (rcode, answers) = match lookup {
            Lookup::Name(addrs) if wants(TYPE::A) => (
                RCODE::NoError,
                addrs
                    .iter()
                    .map(|&(ip, _)| record(RData::A(A::from(ip))))
                    .collect(),
            ),
            Lookup::Reverse(Some(host)) if wants(TYPE::PTR) => {
                let target = zone.qualify(host);
                match Name::new(&target) {
                    Ok(n) => (
                        RCODE::NoError,
                        vec![record(RData::PTR(PTR(n.into_owned())))],
                    ),
                    Err(_) => (RCODE::NoError, Vec::new()),
                }
            }
            Lookup::Apex if wants(TYPE::SOA) => match soa(zone) {
                Some(s) => (RCODE::NoError, vec![s]),
                None => (RCODE::NoError, Vec::new()),
            },
            Lookup::Name(_) | Lookup::Reverse(Some(_)) | Lookup::Apex => {
                (RCODE::NoError, Vec::new())
            }
            Lookup::Reverse(None) | Lookup::Unknown | Lookup::Outside => {
                (RCODE::NameError, Vec::new())
            }
        };
        Counters::bump(match (rcode, answers.is_empty()) {
            (RCODE::NoError, false) => &c.answers,
            (RCODE::NoError, true) => &c.nodata,
            _ => &c.nxdomain,
        });
        // A negative answer carries the SOA of the zone it is negative for (RFC 2308),
        // which sets how long it may be cached; only the search domain has a name
        // to own one.
        let authority = match answers.is_empty() && zone.in_domain(&question.qname) {
            true => soa(zone).into_iter().collect(),
            false => Vec::new(),
        };
        self.respond(&query, rcode, true, answers, authority, limit, out);
        Outcome::Answer
    }

    /// A name outside the zone: to the first upstream under a fresh ID, or REFUSED
    /// (no upstream) or SERVFAIL (too many waiting) at once.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        domain: u16,
        query: &Packet<'_>,
        msg: &[u8],
        limit: usize,
        now_ns: u64,
        client: T,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let c = Arc::clone(&self.counters);
        let Some(&upstream) = self.upstreams.first() else {
            Counters::bump(&c.refused);
            self.error_reply(query, RCODE::Refused, limit, out);
            return Outcome::Answer;
        };
        let held = self.per_network.get(&domain).copied().unwrap_or(0);
        if self.pending.len() >= self.max_outstanding || held >= self.network_share() {
            Counters::bump(&c.upstream_busy);
            Counters::bump(&c.servfail);
            self.error_reply(query, RCODE::ServerFailure, limit, out);
            return Outcome::Answer;
        }
        let mut servfail = Vec::new();
        self.error_reply(query, RCODE::ServerFailure, limit, &mut servfail);
        let id = self.fresh_id();
        let deadline = now_ns.saturating_add(self.timeout_ns);
        // The query goes out as the client sent it (its EDNS options, its DO and CD
        // bits), only under our ID: the ID is the message's first two bytes
        // (RFC 1035 §4.1.1).
        out.extend_from_slice(msg);
        out[..2].copy_from_slice(&id.to_be_bytes());
        self.pending.insert(
            id,
            Pending {
                token: client,
                domain,
                client_id: query.id(),
                upstream,
                question: QuestionKey::of(&query.questions[0]),
                deadline,
                limit,
                servfail,
                query: msg.to_vec(),
                tried: 0,
            },
        );
        self.deadlines.insert((deadline, id));
        *self.per_network.entry(domain).or_insert(0) += 1;
        Counters::bump(&c.forwarded);
        Outcome::Forward { to: upstream }
    }

    /// A datagram from upstream `from`: if it answers an outstanding query (same ID AND
    /// same question AND from the server it was sent to), writes the response with the
    /// client's original ID into `out` and returns the client's token; otherwise None
    /// (counted as upstream_ignored; never panics).
    pub fn upstream_reply(
        &mut self,
        from: SocketAddrV4,
        msg: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<T> {
        out.clear();
        let c = Arc::clone(&self.counters);
        let reply = match Packet::parse(msg) {
            Ok(p) if p.has_flags(PacketFlag::RESPONSE) && p.questions.len() == 1 => p,
            _ => {
                Counters::bump(&c.upstream_ignored);
                return None;
            }
        };
        let id = reply.id();
        let matches = self.pending.get(&id).is_some_and(|p| {
            p.upstream == from && p.question == QuestionKey::of(&reply.questions[0])
        });
        if !matches {
            Counters::bump(&c.upstream_ignored);
            return None;
        }
        let p = self.take(id)?;
        self.deadlines.remove(&(p.deadline, id));
        if msg.len() <= p.limit {
            // Relayed unchanged (TTLs, flags, records) but for the ID.
            out.extend_from_slice(msg);
            out[..2].copy_from_slice(&p.client_id.to_be_bytes());
        } else {
            // Larger than the client takes over its transport (a TCP client's query
            // answered over UDP is never larger; a UDP client's may be if the upstream
            // ignored its EDNS size): the header and question, TC set, so it retries
            // over TCP.
            let mut t = reply.clone();
            t.set_id(p.client_id);
            t.answers.clear();
            t.name_servers.clear();
            t.additional_records.clear();
            t.set_flags(PacketFlag::TRUNCATION);
            write(&t, out);
        }
        Counters::bump(&c.upstream_answers);
        Some(p.token)
    }

    /// Ends the waits that ran out. A query whose upstream was silent goes to the next
    /// upstream, under a fresh ID and with a fresh wait (collected for
    /// [`Resolver::retries`]); one that every upstream left unanswered ends with
    /// `f(token, servfail_response_bytes)`.
    pub fn expire(&mut self, now_ns: u64, mut f: impl FnMut(T, &[u8])) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now_ns {
                break;
            }
            self.deadlines.pop_first();
            let Some(mut p) = self.take(id) else {
                continue;
            };
            Counters::bump(&self.counters.upstream_timeouts);
            let next = p.tried + 1;
            let Some(&upstream) = self.upstreams.get(next) else {
                Counters::bump(&self.counters.servfail);
                f(p.token, &p.servfail);
                continue;
            };
            let id = self.fresh_id();
            let mut msg = p.query.clone();
            msg[..2].copy_from_slice(&id.to_be_bytes());
            p.tried = next;
            p.upstream = upstream;
            p.deadline = now_ns.saturating_add(self.timeout_ns);
            self.deadlines.insert((p.deadline, id));
            *self.per_network.entry(p.domain).or_insert(0) += 1;
            self.pending.insert(id, p);
            Counters::bump(&self.counters.forwarded);
            self.retry.push((upstream, msg));
        }
    }

    /// Queries to send again, to the next upstream, since the last call (after
    /// [`Resolver::expire`]): each with the server and the bytes to send.
    pub fn retries(&mut self) -> std::vec::Drain<'_, (SocketAddrV4, Vec<u8>)> {
        self.retry.drain(..)
    }

    /// The most outstanding queries one network may hold.
    pub fn network_share(&self) -> usize {
        (self.max_outstanding / NETWORK_SHARE_DIVISOR)
            .max(MIN_NETWORK_SHARE)
            .min(self.max_outstanding)
    }

    /// Removes an outstanding query, and its place in its network's share.
    fn take(&mut self, id: u16) -> Option<Pending<T>> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_network.get_mut(&p.domain) {
            *n -= 1;
            if *n == 0 {
                self.per_network.remove(&p.domain);
            }
        }
        Some(p)
    }

    /// When the next forwarded query times out, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// How many forwarded queries wait for their upstream answer.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// A 16-bit ID no outstanding query uses, unpredictable from outside.
    fn fresh_id(&mut self) -> u16 {
        loop {
            // splitmix64: a full-period generator whose outputs pass as random; the
            // seed is what an observer cannot know.
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let id = (z >> 48) as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// A response to `query`: its question echoed, RD and CD copied, AA when `aa`,
    /// RA when there are upstreams, an OPT when the query had one; truncated (TC, no
    /// records) when larger than `limit`.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        query: &Packet<'_>,
        rcode: RCODE,
        aa: bool,
        answers: Vec<ResourceRecord<'_>>,
        authority: Vec<ResourceRecord<'_>>,
        limit: usize,
        out: &mut Vec<u8>,
    ) {
        let mut r = Packet::new_reply(query.id());
        r.questions = query.questions.clone();
        let mut flags = PacketFlag::empty();
        flags.set(PacketFlag::AUTHORITATIVE_ANSWER, aa);
        flags.set(PacketFlag::RECURSION_AVAILABLE, !self.upstreams.is_empty());
        for f in [PacketFlag::RECURSION_DESIRED, PacketFlag::CHECKING_DISABLED] {
            flags.set(f, query.has_flags(f));
        }
        r.set_flags(flags);
        *r.rcode_mut() = rcode;
        if query.opt().is_some() {
            *r.opt_mut() = Some(OPT {
                opt_codes: Vec::new(),
                udp_packet_size: EDNS_UDP_PAYLOAD,
                version: 0,
            });
        }
        r.answers = answers;
        r.name_servers = authority;
        write(&r, out);
        if out.len() > limit {
            r.answers.clear();
            r.name_servers.clear();
            r.set_flags(PacketFlag::TRUNCATION);
            write(&r, out);
        }
    }

    /// A response without records: REFUSED or SERVFAIL, not authoritative.
    fn error_reply(&self, query: &Packet<'_>, rcode: RCODE, limit: usize, out: &mut Vec<u8>) {
        self.respond(query, rcode, false, Vec::new(), Vec::new(), limit, out);
    }

    /// A response of a header alone, for a query whose sections cannot be trusted.
    fn header_only(&self, id: u16, opcode: OPCODE, rd: bool, rcode: RCODE, out: &mut Vec<u8>) {
        let mut r = Packet::new_reply(id);
        *r.opcode_mut() = opcode;
        *r.rcode_mut() = rcode;
        if rd {
            r.set_flags(PacketFlag::RECURSION_DESIRED);
        }
        if !self.upstreams.is_empty() {
            r.set_flags(PacketFlag::RECURSION_AVAILABLE);
        }
        write(&r, out);
    }
}

/// Writes `packet` into `out` (replacing what was there), names compressed.
fn write(packet: &Packet<'_>, out: &mut Vec<u8>) {
    out.clear();
    // Writing into memory fails only if the message breaks the crate's own limits,
    // which a message built from a parsed one and zone names cannot.
    if packet
        .write_compressed_to(&mut Cursor::new(&mut *out))
        .is_err()
    {
        out.clear();
    }
}

/// The search domain's SOA: this server is the zone's primary, and the minimum (the
/// negative-caching TTL, RFC 2308) is [`LOCAL_TTL`] like every other answer.
fn soa(zone: &Zone) -> Option<ResourceRecord<'static>> {
    let domain = zone.domain()?;
    let apex = Name::new(domain).ok()?.into_owned();
    let rname = format!("hostmaster.{domain}");
    let soa = SOA {
        mname: apex.clone(),
        rname: Name::new(&rname).ok()?.into_owned(),
        serial: 1,
        refresh: 3600,
        retry: 600,
        expire: 86400,
        minimum: LOCAL_TTL,
    };
    Some(ResourceRecord::new(
        apex,
        CLASS::IN,
        LOCAL_TTL,
        RData::SOA(soa),
    ))
}
