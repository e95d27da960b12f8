//! The resolver's rules, one test each, driven through the public API with messages
//! built and read by the DNS crate.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use simple_dns::rdata::{RData, A, OPT};
use simple_dns::{
    Packet, PacketFlag, Question, ResourceRecord, CLASS, OPCODE, QCLASS, QTYPE, RCODE, TYPE,
};
use switchyard_dns::{
    Counters, Outcome, Resolver, Transport, Zone, Zones, COUNTERS, EDNS_UDP_PAYLOAD, LOCAL_TTL,
};

const SECOND: u64 = 1_000_000_000;
const UP1: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 53), 53);
const UP2: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 54), 53);
const ID: u16 = 0x4242;

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// Network 1: front, 10.1.0.0/24, domain app.internal. Network 2: back, 10.2.0.0/24.
fn zones() -> Zones {
    let mut front = Zone::new(
        "front",
        ip(10, 1, 0, 1),
        ip(10, 1, 0, 0),
        24,
        Some("app.internal"),
    );
    front.add("web", ip(10, 1, 0, 2), true);
    front.add("api", ip(10, 1, 0, 3), true);
    front.add("database", ip(10, 1, 0, 3), false);
    front.add("www.example.com", ip(10, 1, 0, 2), false);
    front.add("pool", ip(10, 1, 0, 5), false);
    front.add("pool", ip(10, 1, 0, 4), false);
    for i in 0..100 {
        front.add("big", ip(10, 1, 1, i), false);
    }
    for i in 0..40 {
        front.add("mid", ip(10, 1, 2, i), false);
    }
    let mut back = Zone::new("back", ip(10, 2, 0, 1), ip(10, 2, 0, 0), 24, None);
    back.add("db", ip(10, 2, 0, 2), true);
    let mut zones = Zones::default();
    zones.insert(1, front);
    zones.insert(2, back);
    zones
}

fn resolver(upstreams: Vec<SocketAddrV4>, max: usize) -> (Resolver<u32>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let mut r = Resolver::new(upstreams, max, 2 * SECOND, Arc::clone(&counters));
    r.set_zones(Arc::new(zones()));
    (r, counters)
}

fn query_with(id: u16, name: &str, qtype: QTYPE, qclass: QCLASS, edns: Option<u16>) -> Vec<u8> {
    let mut q = Packet::new_query(id);
    q.set_flags(PacketFlag::RECURSION_DESIRED);
    q.questions.push(Question::new(
        name.try_into().unwrap(),
        qtype,
        qclass,
        false,
    ));
    if let Some(size) = edns {
        *q.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: size,
            version: 0,
        });
    }
    q.build_bytes_vec().unwrap()
}

fn query(name: &str, qtype: TYPE) -> Vec<u8> {
    query_with(ID, name, qtype.into(), CLASS::IN.into(), None)
}

fn ask(r: &mut Resolver<u32>, domain: u16, msg: &[u8], t: Transport) -> (Outcome, Vec<u8>) {
    let mut out = Vec::new();
    let o = r.query(domain, msg, t, 0, 7, &mut out);
    (o, out)
}

/// Asks over UDP and expects an answer (not a forward, not a drop).
fn answer(r: &mut Resolver<u32>, domain: u16, msg: &[u8]) -> Vec<u8> {
    let (o, out) = ask(r, domain, msg, Transport::Udp);
    assert_eq!(o, Outcome::Answer);
    out
}

fn addrs(p: &Packet<'_>) -> Vec<Ipv4Addr> {
    p.answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
        .collect()
}

fn ptr(p: &Packet<'_>) -> Vec<String> {
    p.answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            RData::PTR(n) => Some(n.0.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_endpoint_name_answers_its_address_authoritatively() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let out = answer(&mut r, 1, &query("web", TYPE::A));
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.id(), ID);
    assert_eq!(p.rcode(), RCODE::NoError);
    assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::AUTHORITATIVE_ANSWER));
    assert!(p.has_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE));
    assert_eq!(p.questions.len(), 1);
    assert_eq!(p.questions[0].qname.to_string(), "web");
    assert_eq!(addrs(&p), vec![ip(10, 1, 0, 2)]);
    assert_eq!(p.answers[0].ttl, LOCAL_TTL);
    assert_eq!(p.answers[0].name.to_string(), "web");
    let s = c.snapshot();
    assert_eq!(
        (s.queries, s.udp_queries, s.answers, s.forwarded),
        (1, 1, 1, 0)
    );
}

#[test]
fn an_alias_and_a_dotted_alias_answer_without_going_upstream() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let p = answer(&mut r, 1, &query("database", TYPE::A));
    assert_eq!(addrs(&Packet::parse(&p).unwrap()), vec![ip(10, 1, 0, 3)]);
    // An alias with dots is matched whole before anything is forwarded.
    let p = answer(&mut r, 1, &query("www.example.com", TYPE::A));
    assert_eq!(addrs(&Packet::parse(&p).unwrap()), vec![ip(10, 1, 0, 2)]);
    // ... and under the search domain too.
    let p = answer(&mut r, 1, &query("www.example.com.app.internal", TYPE::A));
    assert_eq!(addrs(&Packet::parse(&p).unwrap()), vec![ip(10, 1, 0, 2)]);
    assert_eq!(c.snapshot().forwarded, 0);
}

#[test]
fn names_under_the_search_domain_resolve_case_insensitively() {
    let (mut r, _) = resolver(vec![UP1], 8);
    let p = answer(&mut r, 1, &query("web.app.internal", TYPE::A));
    assert_eq!(addrs(&Packet::parse(&p).unwrap()), vec![ip(10, 1, 0, 2)]);
    let out = answer(&mut r, 1, &query("WeB.App.INTERNAL", TYPE::A));
    let p = Packet::parse(&out).unwrap();
    assert_eq!(addrs(&p), vec![ip(10, 1, 0, 2)]);
    // The answer is for the name as asked (resolvers that randomise case check it).
    assert_eq!(p.answers[0].name.to_string(), "WeB.App.INTERNAL");
    assert_eq!(p.questions[0].qname.to_string(), "WeB.App.INTERNAL");
}

#[test]
fn a_name_of_several_endpoints_answers_every_address() {
    let (mut r, _) = resolver(vec![], 8);
    let p = answer(&mut r, 1, &query("pool", TYPE::A));
    assert_eq!(
        addrs(&Packet::parse(&p).unwrap()),
        vec![ip(10, 1, 0, 4), ip(10, 1, 0, 5)]
    );
}

#[test]
fn a_known_name_asked_for_another_type_is_nodata_not_nxdomain() {
    let (mut r, c) = resolver(vec![UP1], 8);
    for t in [TYPE::AAAA, TYPE::MX, TYPE::TXT] {
        let out = answer(&mut r, 1, &query("web", t));
        let p = Packet::parse(&out).unwrap();
        assert_eq!(p.rcode(), RCODE::NoError, "{t:?}");
        assert!(p.answers.is_empty());
        assert!(p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
    }
    // Under the search domain, the negative answer carries the domain's SOA.
    let out = answer(&mut r, 1, &query("web.app.internal", TYPE::AAAA));
    let p = Packet::parse(&out).unwrap();
    assert!(p.answers.is_empty());
    assert!(matches!(&p.name_servers[..], [rr] if matches!(rr.rdata, RData::SOA(_))));
    assert_eq!(p.name_servers[0].name.to_string(), "app.internal");
    assert_eq!((c.snapshot().nodata, c.snapshot().forwarded), (4, 0));
}

#[test]
fn an_unknown_name_of_the_zone_is_nxdomain_even_with_upstreams() {
    let (mut r, c) = resolver(vec![UP1], 8);
    for name in ["nosuch", "nosuch.app.internal"] {
        let out = answer(&mut r, 1, &query(name, TYPE::A));
        let p = Packet::parse(&out).unwrap();
        assert_eq!(p.rcode(), RCODE::NameError, "{name}");
        assert!(p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
        assert!(p.answers.is_empty());
    }
    let p = answer(&mut r, 1, &query("nosuch.app.internal", TYPE::A));
    assert_eq!(
        Packet::parse(&p).unwrap().name_servers.len(),
        1,
        "with the SOA"
    );
    // Names no endpoint can have (a space, a dot inside a label) are still the zone's.
    for name in ["no such", "no such.app.internal", r"web\.x.app.internal"] {
        let p = answer(&mut r, 1, &query(name, TYPE::A));
        assert_eq!(
            Packet::parse(&p).unwrap().rcode(),
            RCODE::NameError,
            "{name}"
        );
    }
    let s = c.snapshot();
    assert_eq!((s.nxdomain, s.forwarded), (6, 0));
    // The search domain itself exists: its SOA, and NODATA for other types.
    let p = answer(&mut r, 1, &query("app.internal", TYPE::SOA));
    let p = Packet::parse(&p).unwrap();
    assert!(matches!(&p.answers[..], [rr] if matches!(rr.rdata, RData::SOA(_))));
    let p = answer(&mut r, 1, &query("app.internal", TYPE::A));
    let p = Packet::parse(&p).unwrap();
    assert_eq!((p.rcode(), p.answers.len()), (RCODE::NoError, 0));
}

#[test]
fn an_address_of_the_subnet_resolves_back_to_its_primary_name() {
    let (mut r, _) = resolver(vec![], 8);
    let p = answer(&mut r, 1, &query("2.0.1.10.in-addr.arpa", TYPE::PTR));
    let p = Packet::parse(&p).unwrap();
    assert_eq!(ptr(&p), vec!["web.app.internal"]);
    assert!(p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
    // An address with a primary name and an alias answers with the primary.
    let p = answer(&mut r, 1, &query("3.0.1.10.in-addr.arpa", TYPE::PTR));
    assert_eq!(ptr(&Packet::parse(&p).unwrap()), vec!["api.app.internal"]);
    // Without a search domain, the bare name.
    let p = answer(&mut r, 2, &query("2.0.2.10.IN-ADDR.ARPA", TYPE::PTR));
    assert_eq!(ptr(&Packet::parse(&p).unwrap()), vec!["db"]);
    // An address of the subnet nobody has (or only aliases have): NXDOMAIN.
    for name in ["9.0.1.10.in-addr.arpa", "4.0.1.10.in-addr.arpa"] {
        let p = answer(&mut r, 1, &query(name, TYPE::PTR));
        assert_eq!(
            Packet::parse(&p).unwrap().rcode(),
            RCODE::NameError,
            "{name}"
        );
    }
}

#[test]
fn an_address_outside_the_subnet_is_not_the_zones_business() {
    let (mut r, _) = resolver(vec![UP1], 8);
    let (o, _) = ask(
        &mut r,
        1,
        &query("8.8.8.8.in-addr.arpa", TYPE::PTR),
        Transport::Udp,
    );
    assert_eq!(o, Outcome::Forward { to: UP1 });
    let (mut r, _) = resolver(vec![], 8);
    let p = answer(&mut r, 1, &query("8.8.8.8.in-addr.arpa", TYPE::PTR));
    assert_eq!(Packet::parse(&p).unwrap().rcode(), RCODE::Refused);
}

#[test]
fn a_network_never_learns_the_names_of_another() {
    let (mut r, _) = resolver(vec![], 8);
    // db is on network 2, web on network 1: each is unknown on the other.
    let p = answer(&mut r, 1, &query("db", TYPE::A));
    let p = Packet::parse(&p).unwrap();
    assert_eq!((p.rcode(), p.answers.len()), (RCODE::NameError, 0));
    let p = answer(&mut r, 2, &query("web", TYPE::A));
    let p = Packet::parse(&p).unwrap();
    assert_eq!((p.rcode(), p.answers.len()), (RCODE::NameError, 0));
    // Network 1's search domain and reverse zone mean nothing on network 2.
    for (name, t) in [
        ("web.app.internal", TYPE::A),
        ("2.0.1.10.in-addr.arpa", TYPE::PTR),
    ] {
        let p = answer(&mut r, 2, &query(name, t));
        let p = Packet::parse(&p).unwrap();
        assert_eq!((p.rcode(), p.answers.len()), (RCODE::Refused, 0), "{name}");
    }
}

#[test]
fn a_network_without_a_zone_is_refused() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let out = answer(&mut r, 9, &query("web", TYPE::A));
    let p = Packet::parse(&out).unwrap();
    assert_eq!(
        (p.rcode(), p.answers.len(), p.id()),
        (RCODE::Refused, 0, ID)
    );
    assert!(!p.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
    assert_eq!(c.snapshot().refused, 1);
}

#[test]
fn without_upstreams_other_names_are_refused_not_ignored() {
    let (mut r, c) = resolver(vec![], 8);
    let out = answer(&mut r, 1, &query("example.com", TYPE::A));
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.rcode(), RCODE::Refused);
    assert_eq!(p.questions[0].qname.to_string(), "example.com");
    assert!(
        !p.has_flags(PacketFlag::RECURSION_AVAILABLE),
        "no upstream, no recursion"
    );
    assert_eq!((c.snapshot().refused, r.outstanding()), (1, 0));
}

#[test]
fn a_class_other_than_in_is_refused_for_zone_names() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let q = query_with(ID, "web", TYPE::A.into(), CLASS::CH.into(), None);
    let p = Packet::parse(&answer(&mut r, 1, &q)).unwrap().rcode();
    assert_eq!(p, RCODE::Refused);
    assert_eq!(c.snapshot().refused, 1);
}

/// An upstream's answer to `sent` (the forwarded query): one A record, TTL 1234.
fn upstream_answer(sent: &[u8], id: u16, addr: Ipv4Addr) -> Vec<u8> {
    let q = Packet::parse(sent).unwrap();
    let mut reply = q.clone().into_reply();
    reply.set_id(id);
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    let name = reply.questions[0].qname.clone();
    reply.answers.push(ResourceRecord::new(
        name,
        CLASS::IN,
        1234,
        RData::A(A::from(addr)),
    ));
    reply.build_bytes_vec_compressed().unwrap()
}

fn forward(r: &mut Resolver<u32>, msg: &[u8], token: u32, now: u64) -> Vec<u8> {
    let mut out = Vec::new();
    assert_eq!(
        r.query(1, msg, Transport::Udp, now, token, &mut out),
        Outcome::Forward { to: UP1 }
    );
    out
}

fn id_of(msg: &[u8]) -> u16 {
    Packet::parse(msg).unwrap().id()
}

#[test]
fn other_names_go_to_the_first_upstream_and_the_answer_comes_back_with_the_clients_id() {
    let (mut r, c) = resolver(vec![UP1, UP2], 8);
    let q = query_with(
        ID,
        "example.com",
        TYPE::A.into(),
        CLASS::IN.into(),
        Some(1400),
    );
    let sent = forward(&mut r, &q, 77, 0);
    assert_eq!(
        sent[2..],
        q[2..],
        "the query goes out as the client sent it"
    );
    assert_eq!(r.outstanding(), 1);
    let reply = upstream_answer(&sent, id_of(&sent), ip(93, 184, 216, 34));
    let mut out = Vec::new();
    assert_eq!(r.upstream_reply(UP1, &reply, &mut out), Some(77));
    assert_eq!(out[2..], reply[2..], "relayed unchanged but for the ID");
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.id(), ID);
    assert_eq!(p.answers[0].ttl, 1234, "the upstream's TTL is kept");
    assert_eq!(addrs(&p), vec![ip(93, 184, 216, 34)]);
    assert_eq!(r.outstanding(), 0);
    let s = c.snapshot();
    assert_eq!((s.forwarded, s.upstream_answers), (1, 1));
    // Answered once: the same answer again is ignored.
    assert_eq!(r.upstream_reply(UP1, &reply, &mut out), None);
    assert_eq!(c.snapshot().upstream_ignored, 1);
}

#[test]
fn an_upstream_answer_must_match_id_question_and_source() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let q = query("example.com", TYPE::A);
    let sent = forward(&mut r, &q, 5, 0);
    let id = id_of(&sent);
    let mut out = Vec::new();
    let wrong_id = upstream_answer(&sent, id.wrapping_add(1), ip(6, 6, 6, 6));
    assert_eq!(r.upstream_reply(UP1, &wrong_id, &mut out), None);
    let right = upstream_answer(&sent, id, ip(1, 2, 3, 4));
    assert_eq!(
        r.upstream_reply(UP2, &right, &mut out),
        None,
        "from another server"
    );
    let other_q = query_with(id, "example.org", TYPE::A.into(), CLASS::IN.into(), None);
    let wrong_question = upstream_answer(&other_q, id, ip(6, 6, 6, 6));
    assert_eq!(r.upstream_reply(UP1, &wrong_question, &mut out), None);
    let other_type = query_with(id, "example.com", TYPE::AAAA.into(), CLASS::IN.into(), None);
    assert_eq!(
        r.upstream_reply(
            UP1,
            &upstream_answer(&other_type, id, ip(6, 6, 6, 6)),
            &mut out
        ),
        None
    );
    // A query (not a response) with the right ID, and garbage, are ignored too.
    assert_eq!(r.upstream_reply(UP1, &sent, &mut out), None);
    assert_eq!(r.upstream_reply(UP1, &[0xff; 5], &mut out), None);
    assert_eq!(r.outstanding(), 1, "still waiting for the real answer");
    assert_eq!(c.snapshot().upstream_ignored, 6);
    // The upstream may change the question's case (0x20); it is still the question.
    let mut upper = upstream_answer(
        &query_with(id, "EXAMPLE.com", TYPE::A.into(), CLASS::IN.into(), None),
        id,
        ip(1, 2, 3, 4),
    );
    assert_eq!(r.upstream_reply(UP1, &upper, &mut out), Some(5));
    upper.clear();
    assert_eq!(addrs(&Packet::parse(&out).unwrap()), vec![ip(1, 2, 3, 4)]);
}

#[test]
fn upstream_ids_are_distinct_among_outstanding_queries_and_not_the_clients() {
    // 64 from one network: a quarter of 256, its share.
    let (mut r, _) = resolver(vec![UP1], 256);
    let q = query("example.com", TYPE::A);
    let ids: std::collections::BTreeSet<u16> =
        (0..64).map(|t| id_of(&forward(&mut r, &q, t, 0))).collect();
    assert_eq!(ids.len(), 64, "one ID per outstanding query");
    assert!(
        ids.iter().any(|&i| i != ID),
        "the client's ID is not reused as is"
    );
}

#[test]
fn a_seeded_resolver_draws_the_same_ids_and_an_unseeded_one_others() {
    let q = query("example.com", TYPE::A);
    let first = |seed: Option<u64>| {
        let (r, _) = resolver(vec![UP1], 8);
        let mut r = match seed {
            Some(s) => r.with_id_seed(s),
            None => r,
        };
        (0..4)
            .map(|t| id_of(&forward(&mut r, &q, t, 0)))
            .collect::<Vec<_>>()
    };
    assert_eq!(first(Some(1)), first(Some(1)));
    assert_ne!(first(Some(1)), first(Some(2)));
    assert_ne!(first(None), first(None), "seeded at random");
}

#[test]
fn a_query_the_upstream_does_not_answer_in_time_gets_servfail() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let q = query_with(
        ID,
        "example.com",
        TYPE::A.into(),
        CLASS::IN.into(),
        Some(4096),
    );
    let sent = forward(&mut r, &q, 9, 10 * SECOND);
    assert_eq!(r.next_deadline(), Some(12 * SECOND));
    let mut ended = Vec::new();
    r.expire(12 * SECOND - 1, |t, b| ended.push((t, b.to_vec())));
    assert!(ended.is_empty(), "not yet");
    r.expire(12 * SECOND, |t, b| ended.push((t, b.to_vec())));
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].0, 9);
    let p = Packet::parse(&ended[0].1).unwrap();
    assert_eq!((p.id(), p.rcode()), (ID, RCODE::ServerFailure));
    assert_eq!(p.questions[0].qname.to_string(), "example.com");
    assert!(p.opt().is_some(), "EDNS in, EDNS out");
    assert_eq!((r.outstanding(), r.next_deadline()), (0, None));
    let s = c.snapshot();
    assert_eq!((s.upstream_timeouts, s.servfail), (1, 1));
    // The late answer finds nothing to answer.
    let late = upstream_answer(&sent, id_of(&sent), ip(1, 2, 3, 4));
    assert_eq!(r.upstream_reply(UP1, &late, &mut Vec::new()), None);
}

#[test]
fn a_silent_upstream_hands_the_query_to_the_next_and_the_last_one_ends_it() {
    let (mut r, c) = resolver(vec![UP1, UP2], 8);
    let q = query("example.com", TYPE::A);
    let first = forward(&mut r, &q, 7, 0);
    // UP1 is silent: at its deadline the query goes to UP2 under a new ID.
    let mut ended = Vec::new();
    r.expire(2 * SECOND, |t, b| ended.push((t, b.to_vec())));
    assert!(ended.is_empty(), "not the end yet: {ended:?}");
    let retries: Vec<_> = r.retries().collect();
    assert_eq!(retries.len(), 1);
    let (to, second) = &retries[0];
    assert_eq!(*to, UP2);
    assert_ne!(
        id_of(second),
        id_of(&first),
        "a fresh ID for the next server"
    );
    assert_eq!(r.outstanding(), 1);
    // UP1 answering late is ignored; UP2's answer goes to the client, with its ID.
    let late = upstream_answer(&first, id_of(&first), ip(1, 2, 3, 4));
    assert_eq!(r.upstream_reply(UP1, &late, &mut Vec::new()), None);
    let good = upstream_answer(second, id_of(second), ip(5, 6, 7, 8));
    let mut out = Vec::new();
    assert_eq!(r.upstream_reply(UP2, &good, &mut out), Some(7));
    let p = Packet::parse(&out).unwrap();
    assert_eq!((p.id(), addrs(&p)), (ID, vec![ip(5, 6, 7, 8)]));
    // Both silent: SERVFAIL after the second wait.
    forward(&mut r, &q, 8, 10 * SECOND);
    r.expire(12 * SECOND, |_, _| {
        panic!("the next upstream has its turn first")
    });
    assert_eq!(r.retries().count(), 1);
    let mut ended = Vec::new();
    r.expire(14 * SECOND, |t, b| ended.push((t, b.to_vec())));
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].0, 8);
    assert_eq!(
        Packet::parse(&ended[0].1).unwrap().rcode(),
        RCODE::ServerFailure
    );
    assert_eq!(r.outstanding(), 0);
    let s = c.snapshot();
    assert_eq!((s.upstream_timeouts, s.servfail, s.forwarded), (3, 1, 4));
}

#[test]
fn too_many_outstanding_queries_get_servfail_at_once() {
    let (mut r, c) = resolver(vec![UP1], 2);
    let q = query("example.com", TYPE::A);
    forward(&mut r, &q, 1, 0);
    forward(&mut r, &q, 2, 0);
    let out = answer(&mut r, 1, &q);
    let p = Packet::parse(&out).unwrap();
    assert_eq!((p.id(), p.rcode()), (ID, RCODE::ServerFailure));
    assert_eq!(r.outstanding(), 2);
    let s = c.snapshot();
    assert_eq!((s.upstream_busy, s.servfail, s.forwarded), (1, 1, 2));
    // Names of the zone are still answered while the upstream is busy.
    let p = answer(&mut r, 1, &query("web", TYPE::A));
    assert_eq!(addrs(&Packet::parse(&p).unwrap()), vec![ip(10, 1, 0, 2)]);
}

#[test]
fn one_network_flooding_the_upstream_leaves_the_others_their_share() {
    let (mut r, c) = resolver(vec![UP1], 64);
    let share = r.network_share();
    assert_eq!(share, 16, "a quarter of 64");
    let q = query("example.com", TYPE::A);
    for t in 0..share as u32 {
        forward(&mut r, &q, t, 0);
    }
    // front's share is spent: its next query gets SERVFAIL at once ...
    let out = answer(&mut r, 1, &q);
    assert_eq!(Packet::parse(&out).unwrap().rcode(), RCODE::ServerFailure);
    assert_eq!(c.snapshot().upstream_busy, 1);
    // ... while back still forwards.
    let mut out = Vec::new();
    assert_eq!(
        r.query(2, &q, Transport::Udp, 0, 99, &mut out),
        Outcome::Forward { to: UP1 }
    );
    // Once they end (here by timing out), front forwards again.
    let mut ended = 0;
    r.expire(10 * SECOND, |_, _| ended += 1);
    assert_eq!(ended, share + 1);
    assert_eq!(r.outstanding(), 0);
    forward(&mut r, &q, 100, 10 * SECOND);
}

#[test]
fn what_is_not_a_query_is_dropped_and_a_broken_query_gets_formerr() {
    let (mut r, c) = resolver(vec![UP1], 8);
    assert_eq!(
        ask(&mut r, 1, &[0x42; 11], Transport::Udp).0,
        Outcome::Drop,
        "no header"
    );
    assert_eq!(ask(&mut r, 1, &[], Transport::Tcp).0, Outcome::Drop);
    let answered = answer(&mut r, 1, &query("web", TYPE::A));
    let response = Packet::parse(&answered).unwrap().build_bytes_vec().unwrap();
    assert_eq!(
        ask(&mut r, 1, &response, Transport::Udp).0,
        Outcome::Drop,
        "a response"
    );
    let s = c.snapshot();
    assert_eq!((s.malformed, s.formerr), (3, 0));

    // A header and then garbage; no question; two questions.
    let mut garbage = query("web", TYPE::A);
    garbage.truncate(15);
    let mut none = Packet::new_query(ID);
    none.set_flags(PacketFlag::RECURSION_DESIRED);
    let none = none.build_bytes_vec().unwrap();
    let mut two = Packet::new_query(ID);
    for n in ["web", "api"] {
        two.questions.push(Question::new(
            n.try_into().unwrap(),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
    }
    let two = two.build_bytes_vec().unwrap();
    for msg in [garbage, none, two] {
        let out = answer(&mut r, 1, &msg);
        let p = Packet::parse(&out).unwrap();
        assert_eq!((p.id(), p.rcode()), (ID, RCODE::FormatError));
        assert!(p.answers.is_empty());
    }
    let s = c.snapshot();
    assert_eq!((s.malformed, s.formerr, s.queries), (6, 3, 7));
}

#[test]
fn an_opcode_other_than_query_is_notimp() {
    let (mut r, c) = resolver(vec![UP1], 8);
    for op in [OPCODE::Notify, OPCODE::Update, OPCODE::InverseQuery] {
        let mut q = Packet::new_query(ID);
        *q.opcode_mut() = op;
        q.questions.push(Question::new(
            "web".try_into().unwrap(),
            TYPE::SOA.into(),
            CLASS::IN.into(),
            false,
        ));
        let out = answer(&mut r, 1, &q.build_bytes_vec().unwrap());
        let p = Packet::parse(&out).unwrap();
        assert_eq!(
            (p.id(), p.rcode(), p.opcode()),
            (ID, RCODE::NotImplemented, op)
        );
    }
    assert_eq!(c.snapshot().notimp, 3);
}

#[test]
fn a_udp_answer_too_large_is_truncated_so_the_client_retries_over_tcp() {
    let (mut r, _) = resolver(vec![UP1], 8);
    // 100 addresses: over 1232 bytes.
    let big = query("big", TYPE::A);
    let out = answer(&mut r, 1, &big);
    assert!(out.len() <= 512);
    let p = Packet::parse(&out).unwrap();
    assert!(p.has_flags(PacketFlag::TRUNCATION));
    assert!(p.answers.is_empty());
    assert_eq!((p.rcode(), p.questions.len()), (RCODE::NoError, 1));
    let edns = query_with(ID, "big", TYPE::A.into(), CLASS::IN.into(), Some(4096));
    let out = answer(&mut r, 1, &edns);
    assert!(out.len() <= EDNS_UDP_PAYLOAD.into());
    assert!(
        Packet::parse(&out)
            .unwrap()
            .has_flags(PacketFlag::TRUNCATION),
        "1232 at most"
    );
    // Over TCP the whole answer.
    let (o, out) = ask(&mut r, 1, &big, Transport::Tcp);
    assert_eq!(o, Outcome::Answer);
    let p = Packet::parse(&out).unwrap();
    assert!(!p.has_flags(PacketFlag::TRUNCATION));
    assert_eq!(addrs(&p).len(), 100);
    // 40 addresses: over 512 bytes, under 1232: EDNS makes the difference.
    let out = answer(&mut r, 1, &query("mid", TYPE::A));
    assert!(Packet::parse(&out)
        .unwrap()
        .has_flags(PacketFlag::TRUNCATION));
    let out = answer(
        &mut r,
        1,
        &query_with(ID, "mid", TYPE::A.into(), CLASS::IN.into(), Some(1232)),
    );
    assert!(out.len() > 512);
    let p = Packet::parse(&out).unwrap();
    assert!(!p.has_flags(PacketFlag::TRUNCATION));
    assert_eq!(addrs(&p).len(), 40);
}

#[test]
fn an_upstream_answer_larger_than_the_client_takes_is_truncated() {
    let (mut r, _) = resolver(vec![UP1], 8);
    let q = query("example.com", TYPE::A);
    let sent = forward(&mut r, &q, 3, 0);
    let p = Packet::parse(&sent).unwrap();
    let mut reply = p.clone().into_reply();
    let name = reply.questions[0].qname.clone();
    for i in 0..60 {
        reply.answers.push(ResourceRecord::new(
            name.clone(),
            CLASS::IN,
            60,
            RData::A(A::from(ip(1, 1, 1, i))),
        ));
    }
    let reply = reply.build_bytes_vec().unwrap();
    assert!(reply.len() > 512);
    let mut out = Vec::new();
    assert_eq!(r.upstream_reply(UP1, &reply, &mut out), Some(3));
    assert!(out.len() <= 512);
    let p = Packet::parse(&out).unwrap();
    assert!(p.has_flags(PacketFlag::TRUNCATION));
    assert_eq!((p.id(), p.answers.len()), (ID, 0));
}

#[test]
fn edns_in_edns_out() {
    let (mut r, _) = resolver(vec![UP1], 8);
    let out = answer(
        &mut r,
        1,
        &query_with(ID, "web", TYPE::A.into(), CLASS::IN.into(), Some(4096)),
    );
    let p = Packet::parse(&out).unwrap();
    assert_eq!(p.opt().map(|o| o.udp_packet_size), Some(EDNS_UDP_PAYLOAD));
    assert_eq!(addrs(&p), vec![ip(10, 1, 0, 2)]);
    let out = answer(&mut r, 1, &query("web", TYPE::A));
    assert!(Packet::parse(&out).unwrap().opt().is_none());
    // Refusals and NXDOMAIN carry it too.
    let out = answer(
        &mut r,
        9,
        &query_with(ID, "web", TYPE::A.into(), CLASS::IN.into(), Some(512)),
    );
    assert!(Packet::parse(&out).unwrap().opt().is_some());
}

#[test]
fn new_zones_replace_the_old_at_once() {
    let (mut r, _) = resolver(vec![], 8);
    let mut zones = Zones::default();
    let mut z = Zone::new("front", ip(10, 1, 0, 1), ip(10, 1, 0, 0), 24, None);
    z.add("cache", ip(10, 1, 0, 9), true);
    zones.insert(1, z);
    r.set_zones(Arc::new(zones));
    assert_eq!(r.zones().get(1).unwrap().network(), "front");
    let p = answer(&mut r, 1, &query("web", TYPE::A));
    assert_eq!(Packet::parse(&p).unwrap().rcode(), RCODE::NameError);
    let p = answer(&mut r, 1, &query("cache", TYPE::A));
    assert_eq!(addrs(&Packet::parse(&p).unwrap()), vec![ip(10, 1, 0, 9)]);
    assert_eq!(r.zones().iter().count(), 1);
}

#[test]
fn every_counter_is_listed_and_readable_by_name() {
    let (mut r, c) = resolver(vec![UP1], 8);
    answer(&mut r, 1, &query("web", TYPE::A));
    answer(&mut r, 1, &query("web", TYPE::AAAA));
    let s = c.snapshot();
    let names: Vec<&str> = s.iter().map(|(n, _)| n).collect();
    let listed: Vec<&str> = COUNTERS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed);
    assert!(COUNTERS.iter().all(|(_, help)| !help.is_empty()));
    assert_eq!(
        (s.get("queries"), s.get("answers"), s.get("nodata")),
        (2, 1, 1)
    );
    assert_eq!(s.get("no such counter"), 0);
    for (name, value) in s.iter() {
        assert_eq!(s.get(name), value);
    }
}

/// The parser knows most types but not all (TLSA, SSHFP, NSEC3, ...); a question of a
/// type it does not know cannot be read, so it is answered FORMERR rather than
/// forwarded. Kept as a test so that a better parser changes it on purpose.
#[test]
fn a_question_of_a_type_the_parser_does_not_know_is_formerr() {
    let (mut r, c) = resolver(vec![UP1], 8);
    let tlsa = QTYPE::TYPE(TYPE::Unknown(52));
    let q = query_with(ID, "_443._tcp.example.com", tlsa, CLASS::IN.into(), None);
    let p = Packet::parse(&answer(&mut r, 1, &q)).unwrap().rcode();
    assert_eq!(p, RCODE::FormatError);
    let s = c.snapshot();
    assert_eq!((s.formerr, s.forwarded), (1, 0));
}
