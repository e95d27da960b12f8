//! The punt path with real TAPs: DNS queries to a gateway reach the service thread's
//! end ([`ServiceLink`]) and its replies go back to the endpoint that asked; a network
//! without DNS keeps refusing port 53; and a service that does not keep up costs the
//! queries it misses (`punt_dropped`), never the rest of the traffic.
//!
//! A reply that outlives the endpoint that asked is dropped (`punt_stale`), even when
//! another endpoint took its port number; one that outlives a change of the others
//! still reaches its asker; one without its buffer's headroom is refused, and the
//! worker goes on.
//!
//! The service here is a stand-in for the DNS server: it echoes every UDP datagram
//! back from the address and port it was sent to, and notes TCP segments.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use switchyard::control::client;
use switchyard::control::protocol::{EndpointCreate, PortCounterRow, Reply, Request};
use switchyard::control::Switchyard;
use switchyard::dataplane::punt::{Punted, ServiceLink, ToService, ToWorker, WORKER_SPARES};
use switchyard::topology::{EndpointBuilder, NetworkBuilder, Topology, TopologyBuilder};
use switchyard_core::pipeline::DomainId;
use switchyard_testkit::fixtures::{
    assert_accounted, build, counters, drops, events, ns, require_root, run_root, stop,
    unique_prefix, wait_until,
};
use switchyard_testkit::traffic::{self, ping};

/// An instance without its DNS service: the test puts its own at the punt path's end
/// (or none at all).
fn bare(topo: Topology) -> Switchyard {
    Switchyard::start_without_dns(topo, &run_root()).expect("switchyard starts")
}

const FRONT_GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const DEFAULT_GW: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

/// `front` 10.1.0.0/24 (with DNS): endpoints `a` .2 and `b` .3; `default`
/// 172.17.0.0/16 (Docker's default network: no DNS): endpoint `c` .2. Two workers.
fn networks(prefix: &str) -> TopologyBuilder {
    Topology::builder()
        .prefix(prefix)
        .switch(|s| s.workers = 2)
        .network(NetworkBuilder::new("front", "10.1.0.0/24").gateway("10.1.0.1"))
        .network(NetworkBuilder::new("default", "172.17.0.0/16").gateway("172.17.0.1"))
        .endpoint(EndpointBuilder::new("a").on("front").ip("10.1.0.2"))
        .endpoint(EndpointBuilder::new("b").on("front").ip("10.1.0.3"))
        .endpoint(EndpointBuilder::new("c").on("default").ip("172.17.0.2"))
}

/// What the stand-in service saw.
#[derive(Debug, Default)]
struct Seen {
    udp: usize,
    tcp_syn: usize,
    /// The ingress network of every query.
    domains: Vec<DomainId>,
}

/// The stand-in service, on a thread of its own until dropped or stopped.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Seen>>,
}

impl Echo {
    fn start(mut link: ServiceLink) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let quit = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pool = link.take_pool();
            let mut seen = Seen::default();
            while !quit.load(Ordering::Relaxed) {
                let msg = match link.receiver().recv_timeout(Duration::from_millis(20)) {
                    Ok(m) => m,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                };
                let p = match msg {
                    ToService::Punt(p) => p,
                    ToService::Spare(f) => {
                        pool.push(f);
                        continue;
                    }
                };
                seen.domains.push(p.domain);
                let (worker, port, domain, generation) = (p.worker, p.port, p.domain, p.generation);
                let mut frame = p.frame;
                let reply = match answer(frame.data()) {
                    Answer::Udp(bytes) => {
                        seen.udp += 1;
                        frame.load(&bytes);
                        ToWorker::Reply {
                            frame,
                            port,
                            domain,
                            generation,
                        }
                    }
                    Answer::TcpSyn => {
                        seen.tcp_syn += 1;
                        ToWorker::Spare(frame)
                    }
                    Answer::None => ToWorker::Spare(frame),
                };
                assert!(
                    link.send(worker, reply).is_ok(),
                    "a worker's queue holds every buffer there is"
                );
                link.wake();
            }
            seen
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the service thread ran to the end")
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Answer {
    /// The datagram back to its sender, from the address and port it was sent to.
    Udp(Vec<u8>),
    TcpSyn,
    None,
}

/// The stand-in's answer to a punted frame; checksums computed afresh (the query may
/// have come with its checksum left to the receiver, and the reply goes out without
/// offload metadata).
fn answer(frame: &[u8]) -> Answer {
    let Ok(p) = etherparse::SlicedPacket::from_ethernet(frame) else {
        return Answer::None;
    };
    let (Some(etherparse::LinkSlice::Ethernet2(eth)), Some(etherparse::NetSlice::Ipv4(ip))) =
        (&p.link, &p.net)
    else {
        return Answer::None;
    };
    match &p.transport {
        Some(etherparse::TransportSlice::Udp(udp)) => {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ethernet2(eth.destination(), eth.source())
                .ipv4(ip.header().destination(), ip.header().source(), 64)
                .udp(udp.destination_port(), udp.source_port())
                .write(&mut out, udp.payload())
                .expect("a small datagram");
            Answer::Udp(out)
        }
        Some(etherparse::TransportSlice::Tcp(tcp)) if tcp.syn() => Answer::TcpSyn,
        _ => Answer::None,
    }
}

fn port(sy: &Switchyard, name: &str) -> PortCounterRow {
    counters(sy)
        .ports
        .into_iter()
        .find(|p| p.port == name)
        .unwrap_or_else(|| panic!("no port {name}"))
}

fn gw53(ip: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(ip, 53)
}

#[test]
fn a_query_reaches_the_service_and_its_reply_the_asker() {
    if !require_root() {
        return;
    }
    let mut sy = bare(build(networks(&unique_prefix())));
    let link = sy.take_service_link().expect("the service's end, once");
    assert!(sy.take_service_link().is_none(), "given once only");
    assert_eq!(link.workers(), 2);
    let echo = Echo::start(link);
    let a = ns(&sy, "a");
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x00\x00\x01\x00\x01";
    let back = traffic::udp_request(&a, gw53(FRONT_GW), query, LONG).expect("the echo comes back");
    assert_eq!(back, query);
    // Another gateway's address, asked from front: punted too, answered in front's view.
    let c_gw = traffic::udp_request(&a, gw53(DEFAULT_GW), query, LONG)
        .expect("a query to another network's gateway is answered too");
    assert_eq!(c_gw, query);
    let p = port(&sy, "a");
    assert_eq!((p.punted, p.punt_dropped), (2, 0), "{p:?}");
    assert_eq!((p.punt_replies, p.punt_stale), (2, 0), "{p:?}");
    assert!(p.tx_frames >= 2, "the replies are counted as sent: {p:?}");
    assert_eq!(events(&sy, "dns_punted"), 2);
    // A TCP SYN to port 53 is punted as well (the stand-in only notes it).
    let _ = traffic::tcp_connect(&a, gw53(FRONT_GW), SHORT);
    wait_until(LONG, "the SYN punted", || port(&sy, "a").punted >= 3);
    assert_accounted(&sy);
    let seen = echo.stop();
    assert_eq!(seen.udp, 2);
    assert!(seen.tcp_syn >= 1, "{seen:?}");
    let front = sy
        .topology()
        .networks
        .iter()
        .find(|n| n.name == "front")
        .expect("front")
        .domain;
    assert!(seen.domains.iter().all(|&d| d == front), "{seen:?}");
    stop(sy);
}

#[test]
fn a_network_without_dns_still_refuses_port_53() {
    if !require_root() {
        return;
    }
    let mut sy = bare(build(networks(&unique_prefix())));
    let echo = Echo::start(sy.take_service_link().expect("the service's end"));
    let c = ns(&sy, "c");
    let before = drops(&sy, "local_protocol");
    let got = traffic::udp_request(&c, gw53(DEFAULT_GW), b"query", SHORT);
    assert!(got.is_err(), "no answer on a network without DNS: {got:?}");
    wait_until(LONG, "the query refused", || {
        drops(&sy, "local_protocol") > before
    });
    let p = port(&sy, "c");
    assert_eq!(
        (p.punted, p.punt_dropped, p.punt_replies),
        (0, 0, 0),
        "{p:?}"
    );
    assert_eq!(events(&sy, "dns_punted"), 0);
    assert_eq!(echo.stop().udp, 0);
    assert_accounted(&sy);
    stop(sy);
}

/// Floods the gateway's port 53 from endpoint namespace `a` while no service drains
/// the punt path: the queries are punted up to the workers' spares and the rest
/// dropped and counted. Returns a's counters then, and the socket the queries left
/// from (kept open, so answers that come later find it).
fn flood_unserved(sy: &Switchyard, a: &str) -> (PortCounterRow, std::net::UdpSocket) {
    let sock =
        traffic::udp_socket(a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).expect("a socket in a");
    let flood = 4 * WORKER_SPARES as u64;
    for i in 0..flood {
        sock.send_to(&i.to_be_bytes(), gw53(FRONT_GW))
            .expect("sent");
    }
    wait_until(LONG, "every query punted or dropped", || {
        let p = port(sy, "a");
        p.punted + p.punt_dropped >= flood
    });
    let p = port(sy, "a");
    assert!(p.punt_dropped > 0, "{p:?}");
    assert!(
        p.punted <= 2 * WORKER_SPARES as u64,
        "no worker punts more than its spares: {p:?}"
    );
    (p, sock)
}

#[test]
fn a_service_that_does_not_keep_up_costs_queries_not_traffic() {
    if !require_root() {
        return;
    }
    let mut sy = bare(build(networks(&unique_prefix())));
    // Taken and left undrained: the service is stuck.
    let link = sy.take_service_link().expect("the service's end");
    let a = ns(&sy, "a");
    let b_ip = Ipv4Addr::new(10, 1, 0, 3);
    let (p, _sock) = flood_unserved(&sy, &a);
    // Everything else is switched as before.
    ping(&a, b_ip, LONG).expect("a pings b while the service is stuck");
    ping(&a, FRONT_GW, LONG).expect("and the gateway");
    assert_accounted(&sy);
    // The service wakes up: it answers the backlog, its buffers go back to the
    // workers, and a new query is answered.
    let echo = Echo::start(link);
    // The backlog first: until its replies are out, the workers have no spare to
    // punt a new query with (it would be dropped, as designed).
    wait_until(LONG, "the backlog answered", || {
        port(&sy, "a").punt_replies >= p.punted
    });
    let back = traffic::udp_request(&a, gw53(FRONT_GW), b"again", LONG)
        .expect("answered once the service runs");
    assert_eq!(back, b"again");
    let seen = echo.stop();
    assert_eq!(seen.udp as u64, p.punted + 1, "{seen:?}");
    stop(sy);
}

#[test]
fn without_a_service_punting_neither_blocks_nor_grows() {
    if !require_root() {
        return;
    }
    // Nobody takes the service's end.
    let sy = bare(build(networks(&unique_prefix())));
    let a = ns(&sy, "a");
    let _flood = flood_unserved(&sy, &a);
    ping(&a, Ipv4Addr::new(10, 1, 0, 3), LONG).expect("a pings b");
    assert_accounted(&sy);
    stop(sy);
}

/// The stand-in's reply to a punted query: its datagram echoed.
fn echo_reply(p: Punted) -> ToWorker {
    let Answer::Udp(bytes) = answer(p.frame.data()) else {
        panic!("a UDP query");
    };
    let mut frame = p.frame;
    frame.load(&bytes);
    ToWorker::Reply {
        frame,
        port: p.port,
        domain: p.domain,
        generation: p.generation,
    }
}

fn change(sy: &Switchyard, req: Request) {
    match client::request(sy.socket(), &req) {
        Ok(Reply::Changed(_) | Reply::Endpoint(_)) => {}
        r => panic!("{req:?}: {r:?}"),
    }
}

#[test]
fn a_reply_goes_only_to_the_endpoint_that_asked_even_after_changes() {
    if !require_root() {
        return;
    }
    let mut sy = bare(build(networks(&unique_prefix())));
    let link = sy.take_service_link().expect("the service's end");
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let from_a = traffic::udp_socket(&ns(&sy, "a"), any).expect("a socket in a");
    let from_b = traffic::udp_socket(&ns(&sy, "b"), any).expect("a socket in b");
    from_b.set_read_timeout(Some(LONG)).unwrap();
    from_a.send_to(b"from a", gw53(FRONT_GW)).expect("sent");
    from_b.send_to(b"from b", gw53(FRONT_GW)).expect("sent");
    // The service holds both queries while the endpoints change.
    let mut held = Vec::new();
    while held.len() < 2 {
        match link.receiver().recv_timeout(LONG) {
            Ok(ToService::Punt(p)) => held.push(p),
            Ok(ToService::Spare(_)) => {}
            Err(e) => panic!("two queries punted: {e}"),
        }
    }
    let port_of = |sy: &Switchyard, name: &str| {
        sy.topology()
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.interfaces.first())
            .map(|i| i.port)
    };
    let a_port = port_of(&sy, "a").expect("a has a port");
    // a goes, and a2 takes its port number.
    change(&sy, Request::EndpointRm { name: "a".into() });
    change(
        &sy,
        Request::EndpointCreate(EndpointCreate {
            name: "a2".into(),
            network: "front".into(),
            ip: None,
            mac: None,
            publish: vec![],
            netns: None,
            ifname: None,
            aliases: vec![],
            handover: false,
        }),
    );
    assert_eq!(port_of(&sy, "a2"), Some(a_port), "a2 has a's port number");
    let b_query = held
        .iter()
        .find(|p| p.port != a_port)
        .map(|p| (p.worker, p.port, p.domain, p.generation))
        .expect("b's query");
    for p in held {
        let w = p.worker;
        assert!(link.send(w, echo_reply(p)).is_ok());
    }
    link.wake();
    let mut buf = [0u8; 64];
    let (n, from) = from_b.recv_from(&mut buf).expect("b's answer comes");
    assert_eq!(&buf[..n], b"from b");
    assert_eq!(from, std::net::SocketAddr::V4(gw53(FRONT_GW)));
    wait_until(LONG, "a's answer dropped as stale", || {
        port(&sy, "a2").punt_stale == 1
    });
    assert_eq!(port(&sy, "a2").punt_replies, 0);
    assert_eq!(port(&sy, "b").punt_replies, 1);
    // A reply that lost its headroom is refused, and the worker goes on.
    let (worker, port_b, domain, generation) = b_query;
    let mut frame = switchyard_core::pipeline::Frame::new();
    frame.set_bounds(0, 60);
    let bad = ToWorker::Reply {
        frame,
        port: port_b,
        domain,
        generation,
    };
    assert!(link.send(worker, bad).is_ok());
    link.wake();
    wait_until(LONG, "the bad reply refused", || {
        port(&sy, "b").punt_stale == 1
    });
    ping(&ns(&sy, "b"), FRONT_GW, LONG).expect("b's worker is alive");
    stop(sy);
}
