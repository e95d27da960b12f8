//! The `edit` target: changes to a running topology, one after another, as the
//! control socket's change requests make them (`network create`, `endpoint rm`,
//! `network connect`, `allow add`, `route rm`, ...), each followed by what the change
//! thread does with an accepted one: the pipeline takes up the new layout and forgets
//! what went, while frames keep coming.
//!
//! Input format: byte 0 picks the starting topology (even: the built-in default; odd:
//! [`FIXTURE`]); then records until the bytes run out, at most [`MAX_STEPS`]:
//!
//! ```text
//! byte 0   bits 0-3: the change (modulo 10: network create, network rm, connect,
//!          disconnect, endpoint create, endpoint rm, allow add, allow rm, route add,
//!          route rm); bits 4-7: flags of network create (masquerade, internal, icc)
//! ...      one byte per argument of the change, each picking from a short list of
//!          names, subnets, addresses (valid and not), MACs, publish rules, ifnames,
//!          namespace paths and route prefixes (modulo its length)
//! 2 bytes  traffic: a frame from a port of the new layout on the worker that took
//!          it up, and one from a port of the old layout on the worker that has not
//!          yet (bits 0-2: ARP for the gateway or a peer, ping to the gateway, a peer,
//!          another network or the outside, a TCP SYN to a published port, a
//!          gratuitous ARP; bits 3-7: which port)
//! ```
//!
//! Missing bytes at the end read as zero. Each change must keep these invariants,
//! or the harness panics:
//!
//! * `Edit::apply` never panics; a refusal has a message and leaves the running
//!   topology as it was (the next change starts from it);
//! * an accepted change gives no two interfaces one port and no two networks one
//!   domain; a network or interface in both keeps its number (and its addresses), a
//!   new one takes none the running topology uses; an endpoint in both keeps its
//!   namespace;
//! * the new topology prints (`show config`) as a file that parses into the same
//!   topology, numbered in order;
//! * `Diff::between` says exactly what went and came: ports, endpoints, interfaces,
//!   networks;
//! * the pipeline takes the new layout (`reshape`: a validated topology it refuses is
//!   a finding), forgets the gone ports and networks, frames on the new layout and on
//!   the old one (a worker that has not switched yet) leave only on ports of the
//!   worker's layout, every port's frames stay accounted for, and once the clock has
//!   run on, no packet is left waiting.

use super::fix_checksums;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use switchyard::topology::config::{self, default_topology, Topology};
use switchyard::topology::edit::{Diff, Edit};
use switchyard_core::pipeline::*;
use switchyard_core::wire::{arp, arp::ArpOp, MacAddr};

/// Most changes one input makes.
const MAX_STEPS: usize = 32;

/// The other starting topology: networks of every kind (bridged and masqueraded,
/// external, port security, L3-only, internal, one without a gateway), an endpoint on
/// two networks, one sharing another's namespace, one in a namespace switchyard did
/// not make, a router with a static route through it, a join, and published ports.
/// Small tables, so that the pipeline is quick to make.
const FIXTURE: &str = r#"
[switch]
prefix = "fz-"
fdb_max = 64
neighbor_max = 32
conntrack_max = 64
nat_port_range = "40000-40063"

[[network]]
name = "default"
subnet = "172.17.0.0/16"
gateway = "172.17.0.1"
masquerade = true

[[network]]
name = "outside"
subnet = "198.51.100.0/24"
gateway = "198.51.100.1"
external = true

[[network]]
name = "back"
subnet = "10.20.0.0/24"
gateway = "10.20.0.1"
port_security = true

[[network]]
name = "l3net"
subnet = "10.30.0.0/24"
gateway = "10.30.0.1"
mode = "l3"

[[network]]
name = "n2"
subnet = "10.40.0.0/29"
internal = true

[[endpoint]]
name = "a"
attach = [{ network = "default" }, { network = "back" }]
publish = ["8080:80/tcp"]

[[endpoint]]
name = "b"
network = "default"
publish = ["5353:53/udp"]

[[endpoint]]
name = "c"
mode = "container:b"

[[endpoint]]
name = "d"
network = "l3net"
netns = "/run/netns/fz-d"
ifname = "net0"

[[endpoint]]
name = "r"
network = "back"
ip = "10.20.0.254"

[[endpoint]]
name = "e"
network = "n2"

[[endpoint]]
name = "outside"
network = "outside"
ip = "198.51.100.2"

[[allow]]
between = ["default", "back"]

[[route]]
prefix = "192.168.50.0/24"
via = "10.20.0.254"
"#;

const NETWORKS: &[&str] = &[
    "default", "outside", "n1", "n2", "back", "l3net", "Bad Name", "",
];
const ENDPOINTS: &[&str] = &["a", "b", "outside", "c", "d", "r", "e", "-x", "f", "g"];
const SUBNETS: &[&str] = &[
    "10.1.0.0/24",
    "10.2.0.0/30",
    "10.1.0.128/25",
    "172.17.5.0/24",
    "10.3.0.0/16",
    "0.0.0.0/0",
    "10.4.0.0/31",
    "10.5.0.7/32",
    "not a subnet",
    "192.168.7.0/24",
    "127.0.0.0/8",
    "10.6.0.0/29",
    "10.7.0.5/24",
    "198.51.100.0/25",
    "10.20.0.0/24",
    "10.8.0.0/8",
];
const GATEWAYS: &[Option<&str>] = &[
    None,
    None,
    Some("10.1.0.1"),
    Some("10.1.0.254"),
    Some("10.2.0.2"),
    Some("1.2.3.4"),
    Some("bogus"),
    Some("10.3.0.0"),
];
const MTUS: &[Option<u32>] = &[
    None,
    None,
    Some(1500),
    Some(68),
    Some(9000),
    Some(0),
    Some(65536),
    Some(575),
];
const ADDRS: &[Option<&str>] = &[
    None,
    None,
    Some("10.1.0.5"),
    Some("10.1.0.1"),
    Some("10.2.0.2"),
    Some("172.17.0.3"),
    Some("172.17.0.9"),
    Some("10.3.0.7"),
    Some("198.51.100.9"),
    Some("10.1.0.255"),
    Some("garbage"),
    Some("127.0.0.1"),
    Some("10.20.0.7"),
    Some("10.30.0.9"),
    Some("10.6.0.2"),
    Some("10.40.0.3"),
];
const MACS: &[Option<&str>] = &[
    None,
    None,
    Some("02:00:00:00:00:01"),
    Some("02:00:00:00:00:02"),
    Some("01:00:5e:00:00:01"),
    Some("00:00:00:00:00:00"),
    Some("02:42:ac:11:00:03"),
    Some("zz"),
];
const PUBLISH: &[&[&str]] = &[
    &[],
    &[],
    &["8081:80/tcp"],
    &["8080:80/tcp"],
    &["5353:53/udp"],
    &["9000:90/udp", "9001:91/tcp"],
    &["bad"],
    &["0:80/tcp"],
];
const NETNS: &[Option<&str>] = &[
    None,
    None,
    None,
    Some("/run/netns/x1"),
    Some("/proc/1/ns/net"),
    Some("relative"),
    Some("/run/netns/../x"),
    Some("/run/netns/fz-d"),
];
const IFNAMES: &[Option<&str>] = &[
    None,
    None,
    Some("eth0"),
    Some("eth1"),
    Some("net0"),
    Some("lo"),
    Some("a-very-long-interface-name"),
    Some("e/x"),
];
const PREFIXES: &[&str] = &[
    "192.168.50.0/24",
    "10.9.0.0/16",
    "0.0.0.0/0",
    "10.1.0.0/24",
    "bogus",
    "192.168.50.1/24",
    "224.0.0.0/4",
    "203.0.113.0/24",
];
const VIAS: &[&str] = &[
    "10.1.0.7",
    "172.17.0.50",
    "198.51.100.7",
    "10.20.0.254",
    "nope",
    "10.2.0.1",
    "10.30.0.5",
    "1.1.1.1",
];

/// The input, read a byte at a time; past its end, zeros.
struct Bytes<'a> {
    rest: &'a [u8],
}

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[usize::from(self.byte()) % list.len()]
    }

    fn name(&mut self, list: &[&str]) -> String {
        self.pick(list).to_string()
    }

    fn opt(&mut self, list: &[Option<&str>]) -> Option<String> {
        self.pick(list).map(str::to_string)
    }
}

/// Reads one change.
fn decode(b: &mut Bytes) -> Edit {
    let op = b.byte();
    match (op & 0x0f) % 10 {
        0 => Edit::NetworkCreate {
            name: b.name(NETWORKS),
            subnet: b.name(SUBNETS),
            gateway: b.opt(GATEWAYS),
            mtu: b.pick(MTUS),
            masquerade: op & 0x10 != 0,
            internal: op & 0x20 != 0,
            icc: match op >> 6 {
                1 => Some(true),
                2 => Some(false),
                _ => None,
            },
            dns: None,
            dns_domain: None,
        },
        1 => Edit::NetworkRm {
            name: b.name(NETWORKS),
        },
        2 => Edit::Connect {
            network: b.name(NETWORKS),
            endpoint: b.name(ENDPOINTS),
            ip: b.opt(ADDRS),
            ifname: b.opt(IFNAMES),
        },
        3 => Edit::Disconnect {
            network: b.name(NETWORKS),
            endpoint: b.name(ENDPOINTS),
        },
        4 => Edit::EndpointCreate {
            name: b.name(ENDPOINTS),
            network: b.name(NETWORKS),
            ip: b.opt(ADDRS),
            mac: b.opt(MACS),
            publish: b.pick(PUBLISH).iter().map(|s| s.to_string()).collect(),
            netns: b.opt(NETNS),
            ifname: b.opt(IFNAMES),
            aliases: Vec::new(),
            handover: false,
        },
        5 => Edit::EndpointRm {
            name: b.name(ENDPOINTS),
        },
        6 => Edit::AllowAdd {
            a: b.name(NETWORKS),
            b: b.name(NETWORKS),
        },
        7 => Edit::AllowRm {
            a: b.name(NETWORKS),
            b: b.name(NETWORKS),
        },
        8 => Edit::RouteAdd {
            prefix: b.name(PREFIXES),
            via: b.name(VIAS),
        },
        _ => Edit::RouteRm {
            prefix: b.name(PREFIXES),
            via: b.name(VIAS),
        },
    }
}

/// Runs one edit fuzz input; panics if an invariant breaks.
pub fn edit(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut running = if first % 2 == 0 {
        default_topology()
    } else {
        config::parse(FIXTURE, "fixture").expect("the edit fixture is valid")
    };
    let mut workers = Workers::new(&running);
    let mut b = Bytes { rest };
    let mut steps = 0;
    while !b.rest.is_empty() && steps < MAX_STEPS {
        steps += 1;
        let edit = decode(&mut b);
        let traffic = [b.byte(), b.byte()];
        let before = running.clone();
        let result = edit.apply(&running);
        if std::env::var_os("SWITCHYARD_FUZZ_TRACE").is_some() {
            match &result {
                Ok(_) => eprintln!("step {steps}: {edit:?}: accepted"),
                Err(e) => eprintln!("step {steps}: {edit:?}: refused: {e}"),
            }
        }
        match result {
            Err(e) => {
                assert!(
                    !e.to_string().trim().is_empty(),
                    "a refusal without a message"
                );
                assert_eq!(running, before, "a refused change altered the topology");
            }
            Ok(next) => {
                assert_eq!(running, before, "an accepted change altered the topology");
                check_numbers(&running, &next);
                check_round_trip(&next);
                let diff = Diff::between(&running, &next);
                check_diff(&running, &next, &diff);
                workers.change(&running, &next, &diff, traffic, &edit);
                running = next;
            }
        }
        workers.settle_a_little();
    }
    workers.finish();
}

/// Who an interface is: its endpoint, its name and its network.
fn identity<'a>(
    t: &'a Topology,
    e: &'a config::Endpoint,
    i: &'a config::Interface,
) -> (&'a str, &'a str, &'a str) {
    (&e.name, &i.ifname, &t.networks[i.network].name)
}

/// Numbers unique, kept for what stays, fresh for what is new; what stays keeps its
/// addresses and namespace.
fn check_numbers(running: &Topology, next: &Topology) {
    let domains: BTreeSet<u16> = next.networks.iter().map(|n| n.domain.0).collect();
    assert_eq!(
        domains.len(),
        next.networks.len(),
        "two networks share a domain"
    );
    let ports: BTreeSet<u16> = next.interfaces().map(|(_, i)| i.port.0).collect();
    assert_eq!(
        ports.len(),
        next.interfaces().count(),
        "two interfaces share a port"
    );
    let old_domains: BTreeSet<u16> = running.networks.iter().map(|n| n.domain.0).collect();
    for n in &next.networks {
        match running.networks.iter().find(|r| r.name == n.name) {
            Some(r) => assert_eq!(r, n, "network {} changed", n.name),
            None => assert!(
                !old_domains.contains(&n.domain.0),
                "new network {} took domain {} that the running topology uses",
                n.name,
                n.domain.0
            ),
        }
    }
    let old: HashMap<_, &config::Interface> = running
        .interfaces()
        .map(|(e, i)| (identity(running, e, i), i))
        .collect();
    let old_ports: BTreeSet<u16> = running.interfaces().map(|(_, i)| i.port.0).collect();
    for (e, i) in next.interfaces() {
        let id = identity(next, e, i);
        match old.get(&id) {
            Some(r) => {
                assert_eq!(r.port, i.port, "interface {id:?} changed its port");
                assert_eq!(
                    (r.ip, r.mac),
                    (i.ip, i.mac),
                    "interface {id:?} changed its addresses"
                );
            }
            None => assert!(
                !old_ports.contains(&i.port.0),
                "new interface {id:?} took port {} that the running topology uses",
                i.port.0
            ),
        }
    }
    let shared = |t: &Topology, e: &config::Endpoint| e.shares.map(|j| t.endpoints[j].name.clone());
    for e in &next.endpoints {
        if let Some(r) = running.endpoints.iter().find(|r| r.name == e.name) {
            assert_eq!(
                (&r.netns, r.foreign, shared(running, r)),
                (&e.netns, e.foreign, shared(next, e)),
                "endpoint {} changed its namespace",
                e.name
            );
        }
    }
    assert_eq!(next.source, running.source, "the source changed");
}

/// `t` numbered as a file numbers it: networks and interfaces in order.
fn renumbered(t: &Topology, source: &str) -> Topology {
    let mut t = t.clone();
    t.source = source.to_string();
    for (k, n) in t.networks.iter_mut().enumerate() {
        n.domain = DomainId(k as u16);
    }
    for (k, i) in t
        .endpoints
        .iter_mut()
        .flat_map(|e| e.interfaces.iter_mut())
        .enumerate()
    {
        i.port = PortId(k as u16);
    }
    t
}

/// What `show config` prints of it builds it again.
fn check_round_trip(next: &Topology) {
    let text = next.to_toml();
    match config::parse(&text, "fuzz.toml") {
        Ok(again) => assert_eq!(again, renumbered(next, "fuzz.toml"), "printed as:\n{text}"),
        Err(e) => panic!("the printed topology is refused: {e}\n{text}"),
    }
}

/// The diff names exactly what went and what came.
fn check_diff(running: &Topology, next: &Topology, d: &Diff) {
    let old_ports: BTreeSet<u16> = running.interfaces().map(|(_, i)| i.port.0).collect();
    let new_ports: BTreeSet<u16> = next.interfaces().map(|(_, i)| i.port.0).collect();
    let gone: BTreeSet<u16> = d.gone_ports.iter().map(|g| g.port.0).collect();
    assert_eq!(gone.len(), d.gone_ports.len(), "a port gone twice: {d:?}");
    assert_eq!(
        gone,
        old_ports.difference(&new_ports).copied().collect(),
        "gone ports: {d:?}"
    );
    for g in &d.gone_ports {
        let (_, i) = running
            .interfaces()
            .find(|(_, i)| i.port == g.port)
            .expect("a gone port was running");
        assert_eq!(
            (g.domain, g.ip, g.mac),
            (running.networks[i.network].domain, i.ip, i.mac),
            "gone port {} described wrong",
            g.port.0
        );
    }
    let names =
        |t: &Topology| -> Vec<String> { t.endpoints.iter().map(|e| e.name.clone()).collect() };
    let (old_names, new_names) = (names(running), names(next));
    let came: Vec<String> = new_names
        .iter()
        .filter(|n| !old_names.contains(n))
        .cloned()
        .collect();
    assert_eq!(d.new_endpoints, came, "new endpoints");
    let went: Vec<&config::Endpoint> = running
        .endpoints
        .iter()
        .filter(|e| !new_names.contains(&e.name))
        .collect();
    assert_eq!(
        d.gone_endpoints.iter().collect::<Vec<_>>(),
        went,
        "gone endpoints"
    );
    // Every port only the next topology has is made: an interface of a new endpoint
    // or one named in new_interfaces, each once.
    let mut made: Vec<u16> = Vec::new();
    for name in &d.new_endpoints {
        let e = next
            .endpoints
            .iter()
            .find(|e| &e.name == name)
            .expect("new endpoint");
        made.extend(e.interfaces.iter().map(|i| i.port.0));
    }
    for (name, ifname) in &d.new_interfaces {
        assert!(
            old_names.contains(name),
            "a new interface of endpoint {name} that is new itself"
        );
        let e = next
            .endpoints
            .iter()
            .find(|e| &e.name == name)
            .expect("endpoint");
        let i = e
            .interfaces
            .iter()
            .find(|i| &i.ifname == ifname)
            .expect("new interface");
        made.push(i.port.0);
    }
    let made_set: BTreeSet<u16> = made.iter().copied().collect();
    assert_eq!(made_set.len(), made.len(), "a port made twice: {d:?}");
    assert_eq!(
        made_set,
        new_ports.difference(&old_ports).copied().collect(),
        "ports made: {d:?}"
    );
    let old_domains: BTreeSet<u16> = running.networks.iter().map(|n| n.domain.0).collect();
    let new_domains: BTreeSet<u16> = next.networks.iter().map(|n| n.domain.0).collect();
    let gone_domains: Vec<u16> = d.gone_networks.iter().map(|n| n.0).collect();
    assert_eq!(
        gone_domains,
        old_domains
            .difference(&new_domains)
            .copied()
            .collect::<Vec<_>>(),
        "gone networks"
    );
}

/// Two dataplane workers over shared tables, and the clock.
struct Workers {
    /// The first also runs the table timers, and is the one a change is made on.
    w: [Pipeline; 2],
    out: Emitter,
    now: u64,
}

impl Workers {
    fn new(start: &Topology) -> Workers {
        // Small tables (the default topology's are sized for real use): quick to
        // make, and their limits within reach. `reshape` never reads the sizes.
        let mut spec = start.pipeline_spec();
        spec.fdb_max = spec.fdb_max.min(64);
        spec.neighbor.max = spec.neighbor.max.min(32);
        spec.neighbor.held_max = spec.neighbor.held_max.min(16);
        spec.nat.conntrack_max = spec.nat.conntrack_max.min(64);
        let w0 = match Pipeline::new(spec) {
            Ok(p) => p,
            Err(e) => panic!("the starting topology makes no pipeline: {e}"),
        };
        let w1 = w0.worker();
        Workers {
            w: [w0, w1],
            out: Emitter::with_capacity(16),
            now: 0,
        }
    }

    /// Carries out an accepted change as the change thread does: the new layout, which
    /// worker 0 takes up first (a frame on each meanwhile, worker 1 still on the old
    /// one), then worker 1; then what went is forgotten.
    fn change(
        &mut self,
        running: &Topology,
        next: &Topology,
        diff: &Diff,
        traffic: [u8; 2],
        edit: &Edit,
    ) {
        let layout = match self.w[0].reshape(next.pipeline_spec()) {
            Ok(l) => l,
            Err(e) => panic!(
                "the pipeline refuses a validated change ({}): {e}\n{}",
                edit.describe(),
                next.to_toml()
            ),
        };
        self.w[0].adopt(&layout);
        check_layout(&self.w[0], next);
        self.send(0, next, traffic[0]);
        self.send(1, running, traffic[1]);
        self.w[1].adopt(&layout);
        for g in &diff.gone_ports {
            self.w[0].forget_port(g.port, g.domain, Some(g.ip), Some(g.mac));
        }
        for &d in &diff.gone_networks {
            self.w[0].forget_domain(d);
        }
        self.assert_accounted();
    }

    /// One frame from a port of `t` (the topology of worker `wi`'s layout), of the
    /// kind and port `traffic` picks.
    fn send(&mut self, wi: usize, t: &Topology, traffic: u8) {
        let Some(bytes) = frame(t, traffic) else {
            return;
        };
        let (port, bytes) = bytes;
        let mut batch = [Frame::from_bytes(port, &bytes)];
        let w = &mut self.w[wi];
        self.out.clear();
        w.process(&mut batch, Timestamp::from_secs(self.now), &mut self.out);
        if std::env::var_os("SWITCHYARD_FUZZ_TRACE").is_some() {
            eprintln!(
                "  worker {wi}: frame {} from port {}: {:?}; {} emitted",
                traffic & 7,
                port.0,
                batch[0].action,
                self.out.len()
            );
        }
        for e in w.egress(&batch[0]) {
            assert!(
                w.port(e).is_some(),
                "a frame leaves on port {}, which worker {wi}'s layout does not have",
                e.0
            );
        }
        check_emitted(w, &self.out, wi);
    }

    /// The clock moves on a second and both workers tick.
    fn settle_a_little(&mut self) {
        self.now += 1;
        for (wi, w) in self.w.iter_mut().enumerate() {
            self.out.clear();
            w.tick(Timestamp::from_secs(self.now), &mut self.out);
            check_emitted(w, &self.out, wi);
        }
        self.assert_accounted();
    }

    /// rx = forwarded + consumed + dropped + held on every port, over both workers.
    fn assert_accounted(&self) {
        let total = Pipeline::merged_counters(self.w.iter().map(|w| w.counters()));
        for (i, c) in total.ports.iter().enumerate() {
            // `held` is a gauge that one worker may raise and the other lower: only
            // the sum over both is meaningful, and it must not go below zero.
            let each: Vec<_> = self.w.iter().map(|w| w.counters().ports.get(i)).collect();
            assert!(
                (c.held as i64) >= 0,
                "port {i} settled more packets than it held: {c:?}\nper worker: {each:?}"
            );
            assert_eq!(
                c.rx_frames,
                c.forwarded + c.consumed + c.dropped + c.held,
                "accounting invariant, port {i}: {c:?}\nper worker: {each:?}"
            );
            assert_eq!(c.dropped, c.drops.iter().sum::<u64>(), "port {i}: {c:?}");
        }
    }

    /// Lets every pending resolution run out: nothing stays held.
    fn finish(mut self) {
        for _ in 0..16 {
            self.settle_a_little();
        }
        let total = Pipeline::merged_counters(self.w.iter().map(|w| w.counters()));
        assert_eq!(total.total().held, 0, "every held packet was settled");
        assert_eq!(
            self.w[0].neighbors().held(),
            0,
            "no buffer is left in a queue"
        );
    }
}

/// The layout has a port for every interface, named and in its network, and every
/// other slot vacant; a domain for every network, and every other slot vacant.
fn check_layout(p: &Pipeline, t: &Topology) {
    let mut used = BTreeSet::new();
    for (e, i) in t.interfaces() {
        let spec = p.port(i.port).expect("a port for every interface");
        assert_eq!(spec.name, Topology::port_name(e, i));
        assert_eq!(spec.domain, t.networks[i.network].domain);
        used.insert(i.port.index());
    }
    for (k, s) in p.ports().iter().enumerate() {
        assert!(
            used.contains(&k) || s.is_vacant(),
            "port slot {k} is no interface's"
        );
    }
    for n in &t.networks {
        let d = p.domain(n.domain).expect("a domain for every network");
        assert_eq!(d.name, n.name);
    }
    let live = (0..p.domain_count())
        .filter(|&k| p.domain(DomainId(k as u16)).is_some())
        .count();
    assert_eq!(live, t.networks.len(), "domains of no network");
}

/// Frames the pipeline made or released leave on ports of the layout.
fn check_emitted(p: &Pipeline, out: &Emitter, wi: usize) {
    for f in out.frames() {
        // A network a change left without ports has no one to flood to (an ARP
        // request for a next hop that went with its endpoint).
        let empty = |d: DomainId| !p.ports().iter().any(|s| !s.is_vacant() && s.domain == d);
        assert!(
            p.egress(f).count() >= 1 || matches!(f.action, Action::Flood(d) if empty(d)),
            "emitted frame goes nowhere: {:?}",
            f.action
        );
        for e in p.egress(f) {
            assert!(
                p.port(e).is_some(),
                "an emitted frame leaves on port {}, which worker {wi}'s layout does not have",
                e.0
            );
        }
    }
}

/// A frame from one of `t`'s interfaces: the ingress port and the bytes.
fn frame(t: &Topology, traffic: u8) -> Option<(PortId, Vec<u8>)> {
    let all: Vec<_> = t.interfaces().map(|(_, i)| i).collect();
    if all.is_empty() {
        return None;
    }
    let me = all[usize::from(traffic >> 3) % all.len()];
    let net = &t.networks[me.network];
    let gw = net.gateway;
    // A peer on my network, and an interface on another.
    let peer = all
        .iter()
        .find(|i| i.network == me.network && i.port != me.port)
        .copied();
    let other = all.iter().find(|i| i.network != me.network).copied();
    let uplink = t
        .external()
        .and_then(|n| n.gateway)
        .map_or(Ipv4Addr::new(198, 51, 100, 1), |g| g.ip);
    let gw_mac = gw.map_or(MacAddr::BROADCAST, |g| g.mac);
    let bytes = match traffic & 7 {
        0 => arp_frame(
            ArpOp::Request,
            me.mac,
            me.ip,
            MacAddr::BROADCAST,
            gw.map_or(me.ip, |g| g.ip),
        ),
        1 => arp_frame(
            ArpOp::Request,
            me.mac,
            me.ip,
            MacAddr::BROADCAST,
            peer.map_or(Ipv4Addr::new(10, 99, 0, 1), |p| p.ip),
        ),
        2 => ping(me.mac, gw_mac, me.ip, gw.map_or(me.ip, |g| g.ip)),
        3 => match peer {
            Some(p) => ping(me.mac, p.mac, me.ip, p.ip),
            None => ping(me.mac, MacAddr::BROADCAST, me.ip, Ipv4Addr::BROADCAST),
        },
        4 => ping(
            me.mac,
            gw_mac,
            me.ip,
            other.map_or(Ipv4Addr::new(192, 168, 50, 9), |o| o.ip),
        ),
        5 => ping(me.mac, gw_mac, me.ip, Ipv4Addr::new(198, 51, 100, 2)),
        6 => syn(me.mac, gw_mac, me.ip, uplink, 8080),
        _ => arp_frame(ArpOp::Reply, me.mac, me.ip, MacAddr::BROADCAST, me.ip),
    };
    Some((me.port, bytes))
}

fn ethernet(src: MacAddr, dst: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_frame(op: ArpOp, mac: MacAddr, ip: Ipv4Addr, dst: MacAddr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = [0u8; 28];
    let target_mac = if op == ArpOp::Reply {
        mac
    } else {
        MacAddr([0; 6])
    };
    arp::write(&mut a, op, mac, ip, target_mac, target);
    ethernet(mac, dst, 0x0806, &a)
}

/// An IPv4 packet with its checksums filled in.
fn ipv4(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    ip.extend_from_slice(l4);
    let mut f = ethernet(src_mac, dst_mac, 0x0800, &ip);
    fix_checksums(&mut f);
    f
}

fn ping(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let icmp = [8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8];
    ipv4(src_mac, dst_mac, src, dst, 1, &icmp)
}

fn syn(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&port.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    ipv4(src_mac, dst_mac, src, dst, 6, &tcp)
}
