//! Table events: each change of the FDB, the neighbor table and conntrack is reported
//! once, where it happens, with what `switchyard events` prints — and nothing is
//! kept while nobody listens.

use super::nat::{
    a, established, gw, hmac, nat_router, seg, tcp, udp4, FA, MASQ, OUT, SERVER, SISN,
};
use super::*;
use crate::pipeline::conntrack::{ProtoState, TcpState};
use crate::pipeline::events::{DestroyReason, MacRefusal, NeighborChange, NeighborTo};

/// The events kept since the last call, with their times.
fn drain(p: &mut Pipeline) -> Vec<TableEvent> {
    let mut v = Vec::new();
    assert_eq!(p.events().drain(|e| v.push(e)), 0, "none skipped");
    v
}

fn changes(p: &mut Pipeline) -> Vec<TableChange> {
    drain(p).into_iter().map(|e| e.change).collect()
}

fn tick(p: &mut Pipeline, secs: u64) {
    p.tick(Timestamp::from_secs(secs), &mut Emitter::with_capacity(16));
}

fn tick_ms(p: &mut Pipeline, ms: u64) {
    p.tick(Timestamp::from_millis(ms), &mut Emitter::with_capacity(16));
}

const D0: DomainId = DomainId(0);
const D1: DomainId = DomainId(1);

#[test]
fn nothing_is_kept_while_nobody_listens() {
    let mut p = pipeline();
    run(&mut p, A, &udp(mac(2), mac(3), 10), 1);
    tick(&mut p, 400);
    assert!(p.events().is_empty());
    assert!(p.events().counts().iter().all(|&(_, n)| n == 0));
    // Listening starts with what happens next.
    p.events().start(16);
    run(&mut p, A, &udp(mac(2), mac(3), 10), 401);
    let e = drain(&mut p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].at, Timestamp::from_secs(401), "the batch's time");
    p.events().stop();
    run(&mut p, B, &udp(mac(4), mac(3), 10), 402);
    assert!(p.events().is_empty());
}

#[test]
fn macs_learned_refreshed_moved_and_aged() {
    let mut p = pipeline();
    p.events().start(64);
    run(&mut p, A, &udp(mac(2), mac(3), 10), 1);
    run(&mut p, A, &udp(mac(2), mac(3), 10), 2);
    let e = changes(&mut p);
    assert_eq!(e.len(), 1, "a refresh is no event: {e:?}");
    assert!(matches!(
        e[0],
        TableChange::MacLearned { domain: D0, mac: m, port: A } if m == mac(2)
    ));
    run(&mut p, B, &udp(mac(2), mac(3), 10), 3);
    let e = changes(&mut p);
    assert!(
        matches!(e[..], [TableChange::MacMoved { domain: D0, mac: m, from: A, to: B }] if m == mac(2)),
        "{e:?}"
    );
    // Another network's MAC, then aging (300 s after each was last seen).
    run(&mut p, X, &udp(mac(9), mac(3), 10), 100);
    changes(&mut p);
    tick(&mut p, 302);
    assert!(changes(&mut p).is_empty());
    tick(&mut p, 303);
    let e = changes(&mut p);
    assert!(
        matches!(e[..], [TableChange::MacAged { domain: D0, mac: m, port: B }] if m == mac(2)),
        "{e:?}"
    );
    tick(&mut p, 400);
    let e = changes(&mut p);
    assert!(
        matches!(e[..], [TableChange::MacAged { domain: D1, mac: m, port: X }] if m == mac(9)),
        "{e:?}"
    );
    let counts = p.events().counts();
    assert_eq!(counts[EventKind::MacLearned as usize].1, 2);
    assert_eq!(counts[EventKind::MacMoved as usize].1, 1);
    assert_eq!(counts[EventKind::MacAged as usize].1, 2);
}

#[test]
fn macs_refused_for_a_full_table_or_share_and_a_pinned_mac() {
    // Two networks of an FDB of 2 with even shares of 1.
    let mut p = pipeline_with(spec(2));
    p.events().start(64);
    run(&mut p, A, &udp(mac(2), mac(3), 10), 1);
    run(&mut p, B, &udp(mac(4), mac(3), 10), 1);
    let e = changes(&mut p);
    assert!(matches!(e[0], TableChange::MacLearned { .. }), "{e:?}");
    assert!(
        matches!(
            e[1],
            TableChange::MacRefused {
                domain: D0,
                port: B,
                why: MacRefusal::NetworkFull,
                ..
            }
        ),
        "{e:?}"
    );
    // Shares of 2 each in a table of 2: the other network finds the table full.
    let mut s = spec(2);
    for d in &mut s.domains {
        d.guard.fdb_max = Some(2);
    }
    let mut p = pipeline_with(s);
    p.events().start(64);
    run(&mut p, A, &udp(mac(2), mac(3), 10), 1);
    run(&mut p, B, &udp(mac(4), mac(3), 10), 1);
    run(&mut p, X, &udp(mac(5), mac(3), 10), 1);
    let e = changes(&mut p);
    assert!(
        matches!(e[2], TableChange::MacRefused { domain: D1, mac: m, port: X, why: MacRefusal::TableFull } if m == mac(5)),
        "{e:?}"
    );
    // Port security pins a's own MAC: seen on b, it does not move.
    let mut s = spec(64);
    s.domains[0].guard.port_security = true;
    s.ports[0].mac = Some(mac(2));
    let mut p = pipeline_with(s);
    p.events().start(64);
    let mut frame = udp(mac(2), mac(3), 10);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]); // not IP: no address to check
    run(&mut p, B, &frame, 1);
    let e = changes(&mut p);
    assert!(
        matches!(
            e[..],
            [TableChange::MacRefused {
                domain: D0,
                port: B,
                why: MacRefusal::Pinned { owner: A },
                ..
            }]
        ),
        "{e:?}"
    );
}

fn pipeline_with(s: Spec) -> Pipeline {
    Pipeline::new(s).unwrap()
}

/// An ARP reply from `ip` (on the outside network of the NAT router) to its gateway.
fn arp_reply(ip: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0u8; 42];
    crate::wire::ethernet::write_header(&mut v, gw(ip), hmac(ip), crate::wire::EtherType::ARP);
    let o = ip.octets();
    crate::wire::arp::write(
        &mut v[14..],
        crate::wire::arp::ArpOp::Reply,
        hmac(ip),
        ip,
        gw(ip),
        Ipv4Addr::new(o[0], o[1], o[2], 1),
    );
    v
}

fn neighbor_changes(p: &mut Pipeline) -> Vec<NeighborChange> {
    changes(p)
        .into_iter()
        .filter_map(|c| match c {
            TableChange::Neighbor(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn states(v: &[NeighborChange]) -> Vec<(Option<NeighborState>, NeighborTo)> {
    v.iter().map(|n| (n.from, n.to)).collect()
}

#[test]
fn a_neighbor_goes_incomplete_reachable_stale_probe_and_fails() {
    use NeighborState::*;
    let mut p = nat_router(64, (1024, 65535));
    p.events().start(64);
    let far = a("198.51.100.7");
    let out = DomainId(2);
    run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.7", 53), 1);
    let e = neighbor_changes(&mut p);
    assert_eq!(states(&e), [(None, NeighborTo::State(Incomplete))]);
    assert_eq!((e[0].ip, e[0].domain, e[0].mac), (far, out, MacAddr::ZERO));
    run(&mut p, OUT, &arp_reply(far), 1);
    let e = neighbor_changes(&mut p);
    assert_eq!(
        states(&e),
        [(Some(Incomplete), NeighborTo::State(Reachable))]
    );
    assert_eq!(e[0].mac, hmac(far));
    // 30 s later it is stale; used, it is probed; unanswered, it fails.
    tick(&mut p, 32);
    let e: Vec<_> = neighbor_changes(&mut p)
        .into_iter()
        .filter(|n| n.ip == far)
        .collect();
    assert_eq!(states(&e), [(Some(Reachable), NeighborTo::State(Stale))]);
    run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.7", 53), 33);
    let e = neighbor_changes(&mut p);
    assert_eq!(states(&e), [(Some(Stale), NeighborTo::State(Probe))]);
    for ms in (33_100..=37_000).step_by(100) {
        tick_ms(&mut p, ms);
    }
    let e = neighbor_changes(&mut p);
    assert_eq!(states(&e), [(Some(Probe), NeighborTo::Failed)]);
    assert_eq!(e[0].mac, hmac(far), "the MAC it had");
    assert!(p.neighbors().get(far).is_none());
}

#[test]
fn an_unanswered_neighbor_fails_and_an_unused_stale_one_expires() {
    use NeighborState::*;
    let mut p = nat_router(64, (1024, 65535));
    p.events().start(64);
    run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.8", 53), 1);
    for ms in (1_100..=5_000).step_by(100) {
        tick_ms(&mut p, ms);
    }
    let e = neighbor_changes(&mut p);
    assert_eq!(
        states(&e),
        [
            (None, NeighborTo::State(Incomplete)),
            (Some(Incomplete), NeighborTo::Failed)
        ]
    );
    // The peer the router resolved at 0 s: stale at 30 s, gone 60 s after that.
    let peer = a("198.51.100.2");
    tick(&mut p, 31);
    tick(&mut p, 92);
    let e: Vec<_> = neighbor_changes(&mut p)
        .into_iter()
        .filter(|n| n.ip == peer)
        .collect();
    assert_eq!(
        states(&e),
        [
            (Some(Reachable), NeighborTo::State(Stale)),
            (Some(Stale), NeighborTo::Expired)
        ]
    );
}

fn conn_changes(p: &mut Pipeline) -> Vec<TableChange> {
    changes(p)
        .into_iter()
        .filter(|c| !matches!(c, TableChange::Neighbor(_)))
        .collect()
}

#[test]
fn a_tcp_connection_is_new_then_assured_then_destroyed_after_its_rst() {
    let mut p = nat_router(64, (1024, 65535));
    p.events().start(64);
    established(&mut p);
    let e = conn_changes(&mut p);
    let [TableChange::ConnNew(new), TableChange::ConnAssured(assured)] = e[..] else {
        panic!("{e:?}")
    };
    assert_eq!(new.orig.to_string(), "tcp 10.1.0.2:40000 > 198.51.100.2:80");
    assert_eq!(
        new.reply.to_string(),
        "tcp 198.51.100.2:80 > 198.51.100.1:40000"
    );
    assert_eq!(new.state, ProtoState::Tcp(TcpState::SynSent));
    assert_eq!(new.zone, [DomainId(0), DomainId(2)]);
    assert!(!new.assured && assured.assured);
    assert_eq!(assured.state, ProtoState::Tcp(TcpState::Established));
    // The server's RST closes it; CLOSE times out 10 s later.
    run(
        &mut p,
        OUT,
        &seg(SERVER, MASQ, "R", SISN + 101, 0, 0, None, 0),
        2,
    );
    assert!(conn_changes(&mut p).is_empty(), "CLOSE is no destroy yet");
    tick(&mut p, 11);
    assert!(conn_changes(&mut p).is_empty());
    tick(&mut p, 12);
    let e = drain(&mut p);
    assert!(
        matches!(e[..], [TableEvent { change: TableChange::ConnDestroyed(c, DestroyReason::Reset), at }]
            if c.orig == new.orig && at == Timestamp::from_secs(12)),
        "{e:?}"
    );
}

#[test]
fn udp_flows_are_destroyed_by_their_timeout_at_gc_or_at_lookup() {
    let mut p = nat_router(64, (1024, 65535));
    p.events().start(64);
    run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 1);
    run(
        &mut p,
        OUT,
        &udp4("198.51.100.2", 53, "198.51.100.1", 5000),
        2,
    );
    let e = conn_changes(&mut p);
    assert!(
        matches!(e[..], [TableChange::ConnNew(_), TableChange::ConnAssured(c)]
            if c.state == ProtoState::Udp { replied: true }),
        "{e:?}"
    );
    // Assured UDP lasts 120 s after its last packet: reclaimed by the timer.
    tick(&mut p, 121);
    assert!(conn_changes(&mut p).is_empty());
    tick(&mut p, 122);
    let e = conn_changes(&mut p);
    assert!(
        matches!(
            e[..],
            [TableChange::ConnDestroyed(_, DestroyReason::Timeout)]
        ),
        "{e:?}"
    );
    // An unreplied flow (30 s) whose expiry a packet finds before the timer does:
    // destroyed, and the packet starts a new one.
    run(&mut p, FA, &udp4("10.1.0.2", 6000, "198.51.100.2", 53), 200);
    run(&mut p, FA, &udp4("10.1.0.2", 6000, "198.51.100.2", 53), 230);
    let e = conn_changes(&mut p);
    assert!(
        matches!(
            e[..],
            [
                TableChange::ConnNew(_),
                TableChange::ConnDestroyed(_, DestroyReason::Timeout),
                TableChange::ConnNew(_)
            ]
        ),
        "{e:?}"
    );
}

#[test]
fn a_full_table_evicts_an_unassured_flow_for_a_new_one() {
    let mut p = nat_router(2, (1024, 65535));
    p.events().start(64);
    for sp in [1, 2, 3] {
        run(
            &mut p,
            FA,
            &tcp("10.1.0.2", sp, "198.51.100.2", 80, "S", 64),
            0,
        );
    }
    let e = conn_changes(&mut p);
    let kinds: Vec<EventKind> = e.iter().map(|c| c.kind()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::ConnNew,
            EventKind::ConnNew,
            EventKind::ConnDestroyed,
            EventKind::ConnNew
        ]
    );
    assert!(
        matches!(e[2], TableChange::ConnDestroyed(c, DestroyReason::Evicted) if !c.assured),
        "{e:?}"
    );
}

#[test]
fn a_log_too_small_for_a_tick_counts_what_it_skips() {
    let mut p = pipeline();
    for n in 2..12 {
        run(&mut p, A, &udp(mac(n), mac(1), 10), 1);
    }
    p.events().start(4);
    tick(&mut p, 400);
    let mut kept = 0;
    assert_eq!(p.events().drain(|_| kept += 1), 6);
    assert_eq!(kept, 4);
}
