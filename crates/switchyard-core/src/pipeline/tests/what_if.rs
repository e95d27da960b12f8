//! What-if traces: a frame that would change a table leaves every table exactly as it
//! was (compared through full dumps), and the trace says what would have happened.

use super::l2::{gen, materialize};
use super::l3::{self, rip, rmac, routed_udp};
use super::nat::{nat_router, tcp, udp4, FA, FB, OUT};
use super::*;
use proptest::prelude::*;

/// Everything a packet could change, in one string: every FDB entry, conntrack entry
/// (state, windows, counters, expiry), neighbor entry (state, times, queue), ICMP
/// rate-limit bucket, the tables' own counts, and the pipeline's counters.
fn dump(p: &Pipeline) -> String {
    let mut fdb = p.fdb().entries();
    fdb.sort_by_key(|(d, m, _)| (*d, m.to_u64()));
    let mut ct: Vec<String> = p
        .conntrack()
        .entries(Timestamp(0))
        .iter()
        .map(|(c, _)| format!("{c:?}"))
        .collect();
    ct.sort();
    let mut nb: Vec<String> = p
        .neighbors()
        .entries()
        .iter()
        .map(|n| format!("{n:?}"))
        .collect();
    nb.sort();
    let icmp: Vec<String> =
        p.sh.icmp
            .iter()
            .map(|l| {
                let l = lock(l);
                let mut buckets: Vec<String> =
                    format!("{l:?}").split("), ").map(str::to_string).collect();
                buckets.sort();
                buckets.join("), ")
            })
            .collect();
    format!(
        "fdb {} {fdb:?}\nct {} evicted {} expired {} {ct:?}\nneighbors {} held {} {nb:?}\nicmp {icmp:?}\ncounters {:?}",
        p.fdb().len(),
        p.conntrack().len(),
        p.conntrack().evicted(),
        p.conntrack().expired(),
        p.neighbors().len(),
        p.neighbors().held(),
        p.counters(),
    )
}

/// A what-if's trace, and the verdict it reached.
struct WhatIf {
    trace: FrameTrace,
    action: Action,
    verdict: String,
}

/// Runs a what-if of `bytes` arriving on `port` at `now_ms` and checks that it
/// changed nothing.
fn what_if(p: &Pipeline, port: PortId, bytes: &[u8], now_ms: u64) -> WhatIf {
    let before = dump(p);
    let mut f = Frame::from_bytes(port, bytes);
    let trace = p.what_if(&mut f, Timestamp::from_millis(now_ms));
    assert_eq!(dump(p), before, "a what-if changed the tables: {trace:#?}");
    let verdict = trace.verdict.text.clone();
    WhatIf {
        trace,
        action: f.action,
        verdict,
    }
}

/// The trace's lines, as `stage: text`.
fn text(w: &WhatIf) -> String {
    w.trace
        .lines
        .iter()
        .map(|l| format!("{}: {}", l.stage, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fdb_a_new_a_known_and_a_moving_mac_change_nothing() {
    let mut p = pipeline();
    run(&mut p, A, &udp(mac(2), mac(3), 10), 1);
    run(&mut p, B, &udp(mac(3), mac(2), 10), 1);
    // A new source, to an unknown destination.
    let w = what_if(&p, A, &udp(mac(5), mac(9), 10), 5_000);
    assert!(
        text(&w).contains("l2-learn: would learn 02:42:ac:11:00:05 on port a (bridge default)"),
        "{}",
        text(&w)
    );
    assert_eq!(w.action, Action::Flood(DomainId(0)));
    assert_eq!(w.verdict, "flooded to ports b, c");
    // A known source, seen again later: its age is not reset.
    let w = what_if(&p, A, &udp(mac(2), mac(3), 10), 9_000);
    assert!(text(&w).contains("its age would be reset"), "{}", text(&w));
    assert_eq!(w.verdict, "sent to port b (unicast)");
    // A known source on another port: it does not move.
    let w = what_if(&p, C, &udp(mac(2), mac(3), 10), 9_000);
    assert!(
        text(&w).contains("would move from port a to port c"),
        "{}",
        text(&w)
    );
    assert_eq!(p.fdb().lookup(DomainId(0), mac(2)), Some(A));
}

#[test]
fn a_new_masqueraded_flow_is_neither_tracked_nor_given_its_port() {
    let p = nat_router(64, (1024, 65535));
    let syn = tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64);
    let w = what_if(&p, FA, &syn, 1_000);
    assert!(p.conntrack().is_empty());
    let t = text(&w);
    assert!(
        t.contains(
            "nat-snat: new flow tcp 10.1.0.2:40000 > 198.51.100.2:80, would be tracked and \
             masqueraded as 198.51.100.1:40000 (no entry made, port not reserved)"
        ),
        "{t}"
    );
    assert!(
        t.contains("nat-rewrite: 198.51.100.1:40000 > 198.51.100.2:80"),
        "{t}"
    );
    assert_eq!(w.action, Action::Forward(OUT));
    assert_eq!(
        w.verdict,
        "routed to port out, translated from 10.1.0.2:40000 > 198.51.100.2:80 to \
         198.51.100.1:40000 > 198.51.100.2:80"
    );
}

#[test]
fn a_taken_nat_port_is_reported_and_not_reserved() {
    let mut p = nat_router(64, (1024, 65535));
    run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64),
        1,
    );
    // Another endpoint with the same source port gets another one...
    let second = tcp("10.1.0.3", 40000, "198.51.100.2", 80, "S", 64);
    let w = what_if(&p, FB, &second, 2_000);
    let t = text(&w);
    assert!(t.contains("(source port taken)"), "{t}");
    let port = |t: &str| {
        let at = t.find("masqueraded as 198.51.100.1:").unwrap() + 28;
        t[at..].split(' ').next().unwrap().to_string()
    };
    let said = port(&t);
    // ... and, as nothing was reserved, the real packet after it gets the same one,
    // and a second what-if still finds it free.
    assert_eq!(port(&text(&what_if(&p, FB, &second, 2_000))), said);
    let (f, _) = run(&mut p, FB, &second, 2);
    assert_eq!(f.action, Action::Forward(OUT));
    let ip = crate::wire::Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
    let sport = crate::wire::TcpPacket::new_checked(ip.payload())
        .unwrap()
        .src_port();
    assert_eq!(sport.to_string(), said);
}

#[test]
fn an_existing_flow_keeps_its_tcp_state_counters_and_timeout() {
    let mut p = nat_router(64, (1024, 65535));
    run(
        &mut p,
        FA,
        &tcp("10.1.0.2", 40000, "198.51.100.2", 80, "S", 64),
        1,
    );
    // The answer would move the flow to SYN_RECV and reset its timeout, 50 s later.
    let syn_ack = tcp("198.51.100.2", 80, "198.51.100.1", 40000, "SA", 64);
    let w = what_if(&p, OUT, &syn_ack, 51_000);
    let t = text(&w);
    assert!(
        t.contains("ct-lookup: would go from Tcp(SynSent) to Tcp(SynRecv), timeout reset to 60 s (entry unchanged)"),
        "{t}"
    );
    assert_eq!(w.action, Action::Forward(FA));
    assert!(
        w.verdict
            .ends_with("translated from 198.51.100.2:80 > 198.51.100.1:40000 to 198.51.100.2:80 > 10.1.0.2:40000"),
        "{}",
        w.verdict
    );
    let state = p.conntrack().entries(Timestamp::from_secs(51))[0].0.state;
    assert_eq!(
        state,
        crate::pipeline::conntrack::ProtoState::Tcp(crate::pipeline::conntrack::TcpState::SynSent)
    );
    // A UDP flow's reply would assure it; it stays unreplied.
    run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 2);
    let w = what_if(
        &p,
        OUT,
        &udp4("198.51.100.2", 53, "198.51.100.1", 5000),
        3_000,
    );
    assert!(text(&w).contains("would go from Udp { replied: false } to Udp { replied: true }"));
}

#[test]
fn an_unresolved_next_hop_is_not_asked_for_and_nothing_is_held() {
    let p = l3::router();
    let w = what_if(
        &p,
        PortId(0),
        &routed_udp(1, 2, rip(2, 3), 64, 10, false),
        0,
    );
    assert_eq!(w.action, Action::Held);
    assert_eq!(w.verdict, "held: would wait for ARP resolution of 10.2.0.3");
    let t = text(&w);
    assert!(
        t.contains("next hop 10.2.0.3 unresolved: would send an ARP request and hold the packet (0 already waiting)"),
        "{t}"
    );
    assert!(
        t.contains("emit: would send 02:42:0a:02:00:01 > ff:ff:ff:ff:ff:ff, ARP request who-has 10.2.0.3 tell 10.2.0.1, 42 bytes, flooded over network back"),
        "{t}"
    );
    assert!(p.neighbors().is_empty());
}

#[test]
fn an_arp_request_is_answered_without_learning_its_sender() {
    let p = l3::router();
    let req = arp_request(rmac(1, 2), rip(1, 2), rip(1, 1), l3::gw(1));
    let w = what_if(&p, PortId(0), &req, 0);
    assert_eq!(w.action, Action::Reply);
    assert_eq!(
        w.verdict,
        "consumed: ARP request answered, the reply sent back out of port fa"
    );
    assert!(
        text(&w).contains("would learn neighbor 10.1.0.2 at 02:42:0a:01:00:02 (new entry)"),
        "{}",
        text(&w)
    );
    // An entry that exists would be confirmed, not touched.
    let mut p = l3::router();
    l3::resolve(&mut p, 1, 2, PortId(0), 0);
    let w = what_if(&p, PortId(0), &req, 10_000);
    assert!(text(&w).contains("already known: would be confirmed"));
}

#[test]
fn a_stale_neighbor_is_not_probed() {
    let mut p = l3::router();
    l3::resolve(&mut p, 2, 3, PortId(3), 0);
    let mut out = Emitter::with_capacity(4);
    p.tick(Timestamp::from_millis(30_000), &mut out);
    assert_eq!(
        p.neighbors().get(rip(2, 3)).unwrap().state,
        NeighborState::Stale
    );
    let w = what_if(
        &p,
        PortId(0),
        &routed_udp(1, 2, rip(2, 3), 64, 10, false),
        30_100,
    );
    assert_eq!(w.action, Action::Forward(PortId(3)));
    let t = text(&w);
    assert!(
        t.contains("10.2.0.3 is stale: re-confirming with a unicast ARP request"),
        "{t}"
    );
    assert!(
        t.contains(
            "emit: would send 02:42:0a:02:00:01 > 02:42:0a:02:00:03, ARP request who-has 10.2.0.3"
        ),
        "{t}"
    );
    assert_eq!(
        p.neighbors().get(rip(2, 3)).unwrap().state,
        NeighborState::Stale
    );
}

#[test]
fn icmp_errors_are_described_without_taking_rate_limit_tokens() {
    let mut p = l3::router();
    let expired = routed_udp(1, 2, rip(2, 3), 1, 8, false);
    for _ in 0..10 {
        let w = what_if(&p, PortId(0), &expired, 0);
        assert!(
            text(&w).contains("icmp-error: time exceeded from 10.1.0.1 to 10.1.0.2"),
            "{}",
            text(&w)
        );
        assert!(text(&w).contains("emit: would send"), "{}", text(&w));
        assert_eq!(w.verdict, "dropped: TTL expired in transit [ttl_expired]");
    }
    // Once the real packets have spent the burst, the what-if says so.
    for i in 0..6 {
        l3::send(&mut p, PortId(0), &expired, i);
    }
    let w = what_if(&p, PortId(0), &expired, 10);
    assert!(
        text(&w).contains("time exceeded to 10.1.0.2 suppressed by the rate limit"),
        "{}",
        text(&w)
    );
}

#[test]
fn a_packet_to_an_isolated_network_names_the_drop_reason() {
    let p = l3::router();
    let w = what_if(
        &p,
        PortId(0),
        &routed_udp(1, 2, rip(3, 5), 64, 10, false),
        0,
    );
    assert_eq!(w.action, Action::Drop(DropReason::Isolated));
    assert_eq!(
        w.verdict,
        "dropped: networks not joined by an [[allow]] rule [isolated]"
    );
    assert_eq!(w.trace.port, "fa");
    assert!(
        w.trace.summary.starts_with(
            "02:42:0a:01:00:02 > 02:42:0a:01:00:01, IPv4 10.1.0.2 > 10.3.0.5 udp 4000 > 5000"
        ),
        "{}",
        w.trace.summary
    );
    assert_eq!(w.trace.verdict.reason.as_deref(), Some("isolated"));
}

#[test]
fn a_ping_to_the_gateway_is_answered() {
    let p = l3::router();
    let w = what_if(
        &p,
        PortId(0),
        &echo_request(rmac(1, 2), rip(1, 2), l3::gw(1), rip(1, 1)),
        0,
    );
    assert_eq!(w.action, Action::Reply);
    assert_eq!(
        w.verdict,
        "consumed: ping answered, the echo reply sent back out of port fa"
    );
}

#[test]
fn what_if_leaves_the_workers_counters_alone() {
    let mut p = nat_router(64, (1024, 65535));
    run(&mut p, FA, &udp4("10.1.0.2", 5000, "198.51.100.2", 53), 1);
    let before = format!("{:?}", p.counters());
    what_if(&p, FA, &udp4("10.1.0.2", 5001, "198.51.100.2", 53), 2_000);
    what_if(&p, OUT, &udp4("198.51.100.2", 53, "198.51.100.1", 9), 2_000);
    assert_eq!(format!("{:?}", p.counters()), before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever arrives and whatever the tables hold by then (MACs learned, moved, a
    /// full FDB, neighbors, garbage), a what-if changes nothing, and the frame sent
    /// for real right after gets the verdict the what-if predicted — unless it is
    /// addressed to its own source MAC, which the real frame's learning moves first.
    #[test]
    fn a_what_if_changes_nothing_and_predicts_the_verdict(
        frames in proptest::collection::vec(gen(), 1..40),
        fdb_max in 1usize..6,
        step in 0u64..3,
    ) {
        let mut p = Pipeline::new(spec(fdb_max)).unwrap();
        let mut now = 0u64;
        for g in &frames {
            let (port, bytes) = materialize(g);
            let before = dump(&p);
            let mut f = Frame::from_bytes(port, &bytes);
            p.what_if(&mut f, Timestamp::from_secs(now));
            prop_assert_eq!(dump(&p), before);
            let (real, _) = run(&mut p, port, &bytes, now);
            let to_itself = bytes.len() >= 12 && bytes[0..6] == bytes[6..12];
            if !to_itself {
                prop_assert_eq!(f.action, real.action, "{:?}", g);
            }
            now += step;
        }
    }
}

/// A segment of the NAT router's traffic: from front's two endpoints out, or from the
/// outside peer in to the uplink, with ports and flags from small sets so that flows
/// start, answer, clash and close.
fn nat_segment() -> impl Strategy<Value = (PortId, Vec<u8>)> {
    let flags = prop_oneof![Just("S"), Just("SA"), Just("A"), Just("FA"), Just("R")];
    (0u8..3, 0u16..3, 0u16..3, flags, any::<bool>()).prop_map(|(from, a, b, flags, udp)| {
        let (sport, dport) = (40000 + a, 80 + b);
        match (from, udp) {
            (0, false) => (FA, tcp("10.1.0.2", sport, "198.51.100.2", dport, flags, 64)),
            (1, false) => (FB, tcp("10.1.0.3", sport, "198.51.100.2", dport, flags, 64)),
            (_, false) => (
                OUT,
                tcp("198.51.100.2", dport, "198.51.100.1", sport, flags, 64),
            ),
            (0, true) => (FA, udp4("10.1.0.2", sport, "198.51.100.2", dport)),
            (1, true) => (FB, udp4("10.1.0.3", sport, "198.51.100.2", dport)),
            (_, true) => (OUT, udp4("198.51.100.2", dport, "198.51.100.1", sport)),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Through masquerade, with flows starting, answering, clashing on source ports
    /// and closing: a what-if changes no connection (state, windows, counters,
    /// timeout) and predicts the verdict, translation included, of the real packet
    /// right after it.
    #[test]
    fn a_what_if_through_nat_changes_nothing_and_predicts_the_translation(
        segments in proptest::collection::vec(nat_segment(), 1..30),
        step in 0u64..40,
    ) {
        let mut p = nat_router(8, (1024, 1027));
        let mut now = 1u64;
        for (port, bytes) in &segments {
            let before = dump(&p);
            let mut f = Frame::from_bytes(*port, bytes);
            p.what_if(&mut f, Timestamp::from_secs(now));
            prop_assert_eq!(dump(&p), before);
            let (real, _) = run(&mut p, *port, bytes, now);
            prop_assert_eq!(f.action, real.action);
            if matches!(real.action, Action::Forward(_)) {
                prop_assert_eq!(f.data(), real.data(), "the same bytes leave");
            }
            now += step;
        }
    }
}

#[test]
fn icc_off_a_what_if_says_why_and_a_published_hairpin_would_pass() {
    use super::nat::{a, hmac, nat_router_of, nat_spec};
    let mut spec = nat_spec(64, (1024, 65535), true);
    spec.domains[0].guard.icc = false;
    let p = nat_router_of(spec);
    // Bridged to another endpoint.
    let mut frame = udp4("10.1.0.2", 5000, "10.1.0.3", 53);
    frame[0..6].copy_from_slice(&hmac(a("10.1.0.3")).0);
    let w = what_if(&p, FA, &frame, 1_000);
    assert_eq!(w.action, Action::Drop(DropReason::IccDisabled));
    assert!(text(&w).contains("icc is off: drop"), "{}", text(&w));
    // Routed back into the network.
    let w = what_if(&p, FA, &udp4("10.1.0.2", 5000, "10.1.0.3", 53), 1_000);
    assert_eq!(w.action, Action::Drop(DropReason::IccDisabled));
    assert!(
        text(&w).contains("ip4-forward: routed back into network front, where icc is off: drop"),
        "{}",
        text(&w)
    );
    // A new flow to a published port by the uplink address: not tracked in a
    // what-if, and still let through.
    let syn = tcp("10.1.0.3", 45000, "198.51.100.1", 8080, "S", 64);
    let w = what_if(&p, FB, &syn, 1_000);
    assert_eq!(w.action, Action::Forward(FA), "{}", text(&w));
}
