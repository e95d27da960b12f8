//! The fuzzing harnesses, shared by the targets in `fuzz/fuzz_targets/` and the test
//! that replays the saved corpora (`tests/fuzz_corpus.rs`), so CI runs every saved input.
//!
//! Four targets:
//!
//! * [`run`] (`pipeline`): frames into two workers over shared tables, as the dataplane
//!   runs them, then out through ports as the TAP port would write them (software
//!   segmentation, checksum completion, UDP coalescing). Checks the accounting
//!   invariant, the table bounds, what segmentation and coalescing produce, and
//!   isolation: see [`Isolation`].
//! * [`config`] (`config`): TOML text into the config parser and validator. It must
//!   never panic; a config it accepts must build a pipeline; a refusal names the file.
//! * [`control`] (`control`): bytes into the control protocol's request parser, line by
//!   line as the server reads them. It must never panic; what it accepts must survive a
//!   round trip; what it refuses gets an answer that serializes and reads back.
//! * [`edit`] (`edit`): a sequence of runtime changes (network create and rm, endpoint
//!   create and rm, connect, disconnect, allow and route add and rm) made to a running
//!   topology, each accepted one taken up by two pipeline workers with frames on the
//!   way. Numbers kept, the diff exact, printing round-trips, the pipeline takes
//!   every validated change and stays accounted for: see the `edits` module.
//!
//! Pipeline input format, repeated until the bytes run out:
//!
//! ```text
//! byte 0   bit 7: worker (0 or 1); bit 6: a virtio-net header follows;
//!          bit 5: fill in the IPv4 and transport checksums; bits 0-4: ingress port
//!          (modulo the number of ports)
//! byte 1   seconds the clock advances before the frame
//! 2..4     frame length, big-endian
//! [10]     if bit 6: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
//!          (the u16 fields big-endian)
//! ...      the frame (its length, or what is left)
//! ```
//!
//! Frames are batched by eight; each worker processes its share of a batch in turn,
//! and both are ticked, as the dataplane's loops do.

mod edits;

pub use edits::edit;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use switchyard_core::pipeline::*;
use switchyard_core::wire::{checksum, gro, gso, IpProtocol, Ipv4Cidr, MacAddr, VirtioNetHdr};

/// Frames per batch.
const BATCH: usize = 8;
/// Segments beyond which the harness does not cut a super-frame in software (the
/// port would; it only makes the fuzzer slow without reaching new code).
const MAX_SEGMENTS: usize = 2048;

/// The topology every fuzz input runs against: two bridge networks with gateways
/// joined for routing (front and back, both masquerading), an L3-only network joined
/// to front (masquerading too, not joined to back), a network without gateway, an
/// external network with published ports, a trunk carrying front and back as VLANs 10
/// and 20, a static route, and small tables and a
/// narrow NAT port range so that "full" and "exhausted" paths are reached. back has
/// source validation off, so that conntrack's zones alone must keep its forged replies
/// and errors out of other networks; plain has port security on and front a conntrack
/// share of its own; the endpoints of plain and l3 have known MACs and addresses
/// (10.N.0.2 and .3, MAC 02:00:00:0N:00:02 and :03), so port security and the L3
/// network's bindings are fuzzed too.
pub fn spec() -> Spec {
    let gw = |a: u8| GatewaySpec {
        ip: Ipv4Addr::new(10, a, 0, 1),
        mac: MacAddr([2, 0x42, 10, a, 0, 1]),
    };
    let dom = |name: &str, a: u8, mtu: u16, gateway: bool, mode: DomainMode| DomainSpec {
        name: name.into(),
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, a, 0, 0), 24).expect("/24"),
        mtu,
        gateway: gateway.then(|| gw(a)),
        mode,
        proxy_arp: a == 1,
        masquerade: a == 1 || a == 2 || a == 4,
        external: a == 5,
        dns: gateway && (a == 1 || a == 3),
        guard: DomainGuard {
            rp_filter: a != 2,
            port_security: a == 3,
            conntrack_max: (a == 1).then_some(6),
            ..DomainGuard::default()
        },
    };
    let port = |n: &str, d: u16| PortSpec::new(n, DomainId(d));
    let known = |n: &str, d: u16, a: u8, host: u8| PortSpec {
        mac: Some(MacAddr([2, 0, 0, a, 0, host])),
        ip: Some(Ipv4Addr::new(10, a, 0, host)),
        ..port(n, d)
    };
    Spec {
        domains: vec![
            dom("front", 1, 1500, true, DomainMode::Bridge),
            dom("back", 2, 9000, true, DomainMode::Bridge),
            dom("plain", 3, 576, false, DomainMode::Bridge),
            dom("l3", 4, 1280, true, DomainMode::L3),
            dom("outside", 5, 1500, true, DomainMode::Bridge),
        ],
        ports: vec![
            port("a", 0),
            port("b", 0),
            port("c", 1),
            port("d", 1),
            known("e", 2, 3, 2),
            known("f", 2, 3, 3),
            known("g", 3, 4, 2),
            known("h", 3, 4, 3),
            port("o", 4),
            port("p", 4),
            // A trunk: its device carries front as VLAN 10 and back as VLAN 20.
            PortSpec {
                vlan: Some(10),
                ..port("t", 0)
            },
            PortSpec {
                vlan: Some(20),
                carrier: Some(PortId(10)),
                ..port("t/eth0.20", 1)
            },
        ],
        fdb_max: 16,
        fdb_aging_secs: 30,
        routes: vec![StaticRoute {
            prefix: Ipv4Cidr::new(Ipv4Addr::new(10, 9, 0, 0), 16).expect("/16"),
            via: Ipv4Addr::new(10, 2, 0, 254),
        }],
        allow: vec![(DomainId(0), DomainId(1)), (DomainId(3), DomainId(0))],
        neighbor: NeighborConfig {
            max: 8,
            held_max: 6,
            ..NeighborConfig::default()
        },
        nat: NatSpec {
            publish: vec![
                PublishSpec {
                    proto: IpProtocol::TCP,
                    host_port: 8080,
                    target: Ipv4Addr::new(10, 1, 0, 2),
                    target_port: 80,
                },
                PublishSpec {
                    proto: IpProtocol::UDP,
                    host_port: 5353,
                    target: Ipv4Addr::new(10, 2, 0, 3),
                    target_port: 53,
                },
            ],
            port_range: (40000, 40003),
            conntrack_max: 12,
            timeouts: Timeouts::default(),
        },
    }
}

/// One record of a pipeline fuzz input.
struct Record<'a> {
    worker: usize,
    port: PortId,
    advance: u64,
    vnet: Option<VirtioNetHdr>,
    fix_checksums: bool,
    bytes: &'a [u8],
}

/// Splits a pipeline fuzz input into its records.
fn records(mut rest: &[u8], nports: usize) -> Vec<Record<'_>> {
    let mut v = Vec::new();
    while rest.len() >= 4 {
        let b = rest[0];
        let advance = u64::from(rest[1]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        rest = &rest[4..];
        let vnet = if b & 0x40 != 0 {
            if rest.len() < 10 {
                break;
            }
            let u = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
            let h = VirtioNetHdr {
                flags: rest[0],
                gso_type: rest[1],
                hdr_len: u(2),
                gso_size: u(4),
                csum_start: u(6),
                csum_offset: u(8),
                num_buffers: 0,
            };
            rest = &rest[10..];
            Some(h)
        } else {
            None
        };
        let take = len.min(rest.len());
        v.push(Record {
            worker: usize::from(b >> 7),
            port: PortId(u16::from(b & 0x1f) % nports as u16),
            advance,
            vnet,
            fix_checksums: b & 0x20 != 0,
            bytes: &rest[..take],
        });
        rest = &rest[take..];
    }
    v
}

/// Encodes one record of a pipeline fuzz input (for tests and seed inputs).
pub fn record(
    worker: usize,
    port: u8,
    advance: u8,
    vnet: Option<VirtioNetHdr>,
    fix_checksums: bool,
    frame: &[u8],
) -> Vec<u8> {
    let mut b = (port & 0x1f) | if worker == 1 { 0x80 } else { 0 };
    if vnet.is_some() {
        b |= 0x40;
    }
    if fix_checksums {
        b |= 0x20;
    }
    let mut v = vec![b, advance];
    v.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    if let Some(h) = vnet {
        v.extend_from_slice(&[h.flags, h.gso_type]);
        for x in [h.hdr_len, h.gso_size, h.csum_start, h.csum_offset] {
            v.extend_from_slice(&x.to_be_bytes());
        }
    }
    v.extend_from_slice(frame);
    v
}

/// Offset of the IPv4 header in an Ethernet frame (past VLAN tags), if it is IPv4.
fn l3_offset(frame: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let t = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match t {
            0x8100 | 0x88a8 => at += 4,
            0x0800 => return Some(at + 2),
            _ => return None,
        }
    }
}

/// Fills in the IPv4 header checksum and the TCP, UDP or ICMP checksum, so that the
/// fuzzer's frames get past input validation.
fn fix_checksums(frame: &mut [u8]) {
    let Some(l3) = l3_offset(frame) else { return };
    let ip = &mut frame[l3..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    if ihl < 20 || ip.len() < ihl {
        return;
    }
    ip[10..12].fill(0);
    let c = checksum::checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
    if total < ihl || later_fragment {
        return;
    }
    let (src, dst) = (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    );
    let proto = ip[9];
    let l4 = &mut ip[ihl..total];
    let at = match proto {
        1 => 2,
        6 => 16,
        17 => 6,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    l4[at..at + 2].fill(0);
    let c = if proto == 1 {
        checksum::checksum(l4)
    } else {
        let pseudo = checksum::pseudo_header_sum(src, dst, IpProtocol(proto), l4.len() as u16);
        let c = !checksum::fold(checksum::sum(pseudo, l4));
        if proto == 17 && c == 0 {
            0xffff
        } else {
            c
        }
    };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A connection's addresses as one side of switchyard sees them. For ICMP echo the
/// identifier stands in for both ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Flow {
    proto: u8,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
}

impl Flow {
    fn reversed(self) -> Flow {
        Flow {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// What an IPv4 packet is, for the isolation model.
enum Packet {
    /// TCP, UDP or ICMP echo (first fragment or whole).
    Flow(Flow),
    /// An ICMP error: the flow it quotes and its outer destination.
    Error { quoted: Flow, to: [u8; 4] },
    /// Anything else: other protocols, later fragments.
    Other,
}

/// Reads the flow of an IPv4 packet; `quoted` allows a truncated payload (the eight
/// bytes an ICMP error quotes).
fn classify(ip: &[u8], quoted: bool) -> Packet {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Packet::Other;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    // A later fragment has no ports, in a quote as elsewhere: it names no flow.
    let later_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
    if ihl < 20 || ip.len() < ihl + 8 || later_fragment {
        return Packet::Other;
    }
    let l4 = &ip[ihl..];
    let u = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let mut flow = Flow {
        proto: ip[9],
        src: [ip[12], ip[13], ip[14], ip[15]],
        sport: 0,
        dst: [ip[16], ip[17], ip[18], ip[19]],
        dport: 0,
    };
    match flow.proto {
        6 | 17 => {
            flow.sport = u(0);
            flow.dport = u(2);
            Packet::Flow(flow)
        }
        1 => match l4[0] {
            0 | 8 => {
                flow.sport = u(4);
                flow.dport = u(4);
                Packet::Flow(flow)
            }
            3 | 4 | 5 | 11 | 12 if !quoted => match classify(&l4[8..], true) {
                Packet::Flow(q) => Packet::Error {
                    quoted: q,
                    to: flow.dst,
                },
                _ => Packet::Other,
            },
            _ => Packet::Other,
        },
        _ => Packet::Other,
    }
}

fn packet_of(frame: &[u8]) -> Packet {
    match l3_offset(frame) {
        Some(l3) => classify(&frame[l3..], false),
        None => Packet::Other,
    }
}

/// The isolation oracle: its own model of which flows were legitimately opened across
/// networks, built from what it sees enter and leave, without asking conntrack.
///
/// A frame that came in on network X and leaves on a port of network Y ≠ X is legal
/// only if it was routed (sent to X's gateway MAC) and one of:
///
/// * `[[allow]]` joins X and Y;
/// * X masquerades and Y is the external network (a new masqueraded flow);
/// * X is the external network and the packet is for a published port (uplink
///   address and host port) whose target is on Y;
/// * it is a reply: the reverse of a packet that an earlier legal crossing left in X
///   (so X's side sends it back exactly as it received it);
/// * it is an ICMP error quoting a packet that such a crossing left in X, addressed
///   to the quoted packet's source.
///
/// Everything else is a crossing, and the harness panics.
#[derive(Default)]
struct Isolation {
    /// (from, to, flow as sent on `from`): replies that may cross.
    replies: HashSet<(DomainId, DomainId, Flow)>,
    /// (from, to, quoted flow as seen on `from`): ICMP errors that may cross.
    errors: HashSet<(DomainId, DomainId, Flow)>,
    /// (from, to, flow as it leaves on `to`): replies to packets that opened a flow
    /// but wait in a neighbor queue. Such a flow is open (as in the kernel, where the
    /// neighbor queue comes after conntrack confirms the flow), but the model has not
    /// seen the packet leave yet; its replies are known by how they leave: exactly
    /// the reverse of the opening packet as it came in.
    replies_out: HashSet<(DomainId, DomainId, Flow)>,
    /// (from, to, quoted flow as it leaves on `to`): ICMP errors about such packets.
    errors_out: HashSet<(DomainId, DomainId, Flow)>,
}

/// Why a crossing was legal, if it was.
enum Legal {
    /// A new flow that may cross: remember its replies.
    Opens,
    /// A reply or an error of a known flow.
    Known,
}

impl Isolation {
    /// A routed packet that came in on `x` did not leave (it waits in a neighbor
    /// queue, or was dropped after conntrack saw it, say when the network's share of
    /// held buffers was full): if policy lets it open a flow to where it is routed,
    /// conntrack may know the flow, and replies to it are no crossing.
    fn intended(&mut self, p: &Pipeline, x: DomainId, input: &[u8]) {
        let Packet::Flow(f) = packet_of(input) else {
            return;
        };
        let Some(route) = p.fib().lookup(Ipv4Addr::from(f.dst)) else {
            return;
        };
        let y = route.next_hop.domain();
        let (dx, dy) = (p.domain(x).expect("domain"), p.domain(y).expect("domain"));
        if y != x && (p.allowed(x, y) || (dx.masquerade && dy.external)) {
            self.replies_out.insert((y, x, f.reversed()));
            self.errors_out.insert((y, x, f));
        }
    }

    /// Judges a crossing from `x` to `y`: `input` is the frame as it entered (None for
    /// a packet released from a neighbor queue, known only as it left), `output` as it
    /// left.
    fn judge(
        &mut self,
        p: &Pipeline,
        x: DomainId,
        y: DomainId,
        input: Option<&[u8]>,
        output: &[u8],
    ) -> Result<(), String> {
        let dx = p.domain(x).expect("domain");
        let dy = p.domain(y).expect("domain");
        let legal = self.legal(p, x, y, input, output);
        match legal {
            Some(Legal::Opens) => {
                // Replies come back from Y as the reverse of what left into Y; an ICMP
                // error from Y quotes what left into Y.
                if let Packet::Flow(out) = packet_of(output) {
                    self.replies.insert((y, x, out.reversed()));
                    self.errors.insert((y, x, out));
                }
                Ok(())
            }
            Some(Legal::Known) => Ok(()),
            None => Err(format!(
                "a frame from network {} left on network {}, which are not joined, and \
                 belongs to no flow legitimately opened between them (in: {:02x?}, out: \
                 {:02x?})",
                dx.name,
                dy.name,
                input.map(|b| &b[..b.len().min(64)]),
                &output[..output.len().min(64)]
            )),
        }
    }

    fn legal(
        &self,
        p: &Pipeline,
        x: DomainId,
        y: DomainId,
        input: Option<&[u8]>,
        output: &[u8],
    ) -> Option<Legal> {
        let dx = p.domain(x)?;
        let dy = p.domain(y)?;
        if p.allowed(x, y) || (dx.masquerade && dy.external) {
            return Some(Legal::Opens);
        }
        let spec = spec();
        if dx.external {
            let uplink = dx.gateway?.ip.octets();
            let published = |f: &Flow, on_target: bool| {
                spec.nat.publish.iter().any(|s| {
                    s.proto.0 == f.proto
                        && dy.subnet.contains(s.target)
                        && if on_target {
                            f.dst == s.target.octets() && f.dport == s.target_port
                        } else {
                            f.dst == uplink && f.dport == s.host_port
                        }
                })
            };
            let hit = match input.map(packet_of) {
                Some(Packet::Flow(f)) => published(&f, false),
                Some(_) => false,
                None => matches!(packet_of(output), Packet::Flow(f) if published(&f, true)),
            };
            if hit {
                return Some(Legal::Opens);
            }
        }
        match packet_of(output) {
            Packet::Flow(g) if self.replies_out.contains(&(x, y, g)) => {
                return Some(Legal::Known);
            }
            Packet::Error { quoted, to }
                if to == quoted.src && self.errors_out.contains(&(x, y, quoted)) =>
            {
                return Some(Legal::Known);
            }
            _ => {}
        }
        match input.map(packet_of) {
            Some(Packet::Flow(f)) => self.replies.contains(&(x, y, f)).then_some(Legal::Known),
            Some(Packet::Error { quoted, to }) => {
                (to == quoted.src && self.errors.contains(&(x, y, quoted))).then_some(Legal::Known)
            }
            Some(Packet::Other) => None,
            // Released from a neighbor queue: known only as it left, after translation,
            // which changes a reply's destination but not its source. It is a reply
            // when it comes from where a known flow expects its replies from; an error
            // when the packet it quotes went to where a known flow went.
            None => match packet_of(output) {
                Packet::Flow(f) => self
                    .replies
                    .iter()
                    .any(|&(a, b, r)| {
                        (a, b) == (x, y) && (r.proto, r.src, r.sport) == (f.proto, f.src, f.sport)
                    })
                    .then_some(Legal::Known),
                Packet::Error { quoted, .. } => self
                    .errors
                    .iter()
                    .any(|&(a, b, q)| {
                        (a, b) == (x, y)
                            && (q.proto, q.dst, q.dport) == (quoted.proto, quoted.dst, quoted.dport)
                    })
                    .then_some(Legal::Known),
                Packet::Other => None,
            },
        }
    }
}

/// What the pipeline harness checks as frames leave: the port capabilities it
/// emulates (even ports take super-frames and partial checksums, odd ports take
/// neither) and the segmentation and coalescing a TAP port would do.
struct Egress {
    scratch: Vec<u8>,
    coalesce: Vec<u8>,
}

impl Egress {
    fn new() -> Egress {
        Egress {
            scratch: vec![0u8; MAX_FRAME_LEN],
            coalesce: vec![0u8; MAX_FRAME_LEN],
        }
    }

    /// Writes `f` to port `e` as the TAP port would; `mtu` is the egress network's
    /// MTU when the frame was routed (switchyard chose its segment size).
    fn send(&mut self, f: &Frame, e: PortId, routed_mtu: Option<usize>) {
        let offloads = e.0 % 2 == 0;
        if f.vnet.is_gso() && !offloads {
            let Some(n) = gso::segment_network_len(f.data(), &f.vnet) else {
                return; // the port counts a tx error
            };
            if let Some(mtu) = routed_mtu {
                assert!(
                    n <= mtu,
                    "a routed super-frame cuts into {n}-byte packets, over the MTU {mtu}"
                );
            }
            let (hdr, _) = gso::segment_headers(f.data(), &f.vnet).expect("cuttable");
            let payload = f.len().saturating_sub(14 + hdr);
            let mss = usize::from(f.vnet.gso_size).max(1);
            if payload / mss > MAX_SEGMENTS {
                return;
            }
            let mut total = 0usize;
            let r = gso::segment(f.data(), &f.vnet, &mut self.scratch, |seg| {
                check_segment(seg);
                total += 1;
            });
            if let Ok(k) = r {
                assert_eq!(k, total, "segment count");
            }
        } else if f.vnet.needs_csum() && !offloads {
            let mut copy = f.data().to_vec();
            let (start, off) = (
                usize::from(f.vnet.csum_start),
                usize::from(f.vnet.csum_offset),
            );
            checksum::complete_partial(&mut copy, start, off);
        }
    }

    /// Coalesces a run of frames the way the dataplane does for a port that takes UDP
    /// super-frames, then cuts the result again: the datagrams must come back as they
    /// were (payload for payload).
    fn coalesce(&mut self, run: &[&Frame]) {
        if run.len() < 2 {
            return;
        }
        let first = run[0];
        let Some((flow, mss)) = gro::udp4_candidate(first.data(), &first.vnet) else {
            return;
        };
        let mut members = vec![first];
        let mut total = first.len();
        for f in &run[1..] {
            if members.len() >= gro::MAX_SEGMENTS {
                break;
            }
            match gro::udp4_candidate(f.data(), &f.vnet) {
                Some((fl, len)) if fl == flow && len <= mss && total + len <= MAX_FRAME_LEN => {
                    total += len;
                    members.push(f);
                    if len < mss {
                        break;
                    }
                }
                _ => break,
            }
        }
        if members.len() < 2 {
            return;
        }
        let len0 = first.len();
        self.coalesce[..len0].copy_from_slice(first.data());
        let more = members[1..].iter().map(|f| &f.data()[gro::HEADERS..]);
        let (len, vnet) = gro::build(&mut self.coalesce, len0, more);
        let mut k = 0;
        let super_frame = &self.coalesce[..len];
        gso::segment(super_frame, &vnet, &mut self.scratch, |seg| {
            check_segment(seg);
            let want = &members[k].data()[gro::HEADERS..];
            assert_eq!(&seg[gro::HEADERS..], want, "coalesced datagram {k} changed");
            k += 1;
        })
        .expect("a coalesced super-frame can be cut");
        assert_eq!(k, members.len(), "coalescing kept every datagram");
    }
}

/// A segment cut in software: IPv4 lengths and header checksum right, and the
/// transport checksum complete.
fn check_segment(seg: &[u8]) {
    let Some(l3) = l3_offset(seg) else { return };
    let ip = &seg[l3..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    assert_eq!(
        usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        ip.len(),
        "segment IPv4 total length"
    );
    assert!(checksum::verify(&ip[..ihl]), "segment IPv4 header checksum");
    let (src, dst) = (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    );
    let l4 = &ip[ihl..];
    let pseudo = checksum::pseudo_header_sum(src, dst, IpProtocol(ip[9]), l4.len() as u16);
    assert_eq!(
        checksum::fold(checksum::sum(pseudo, l4)),
        0xffff,
        "segment transport checksum"
    );
}

/// Runs one pipeline fuzz input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let spec = spec();
    let nports = spec.ports.len();
    let w0 = Pipeline::new(spec).expect("fuzz spec is valid");
    let w1 = w0.worker();
    let mut workers = [w0, w1];
    for w in &mut workers {
        w.tracer().start(u32::MAX, &[]);
    }
    let mut out = Emitter::with_capacity(64);
    let mut iso = Isolation::default();
    let mut egress = Egress::new();
    let mut now = 0u64;
    let recs = records(data, nports);
    let frames = recs.len() as u64;
    for chunk in recs.chunks(BATCH) {
        for rec in chunk {
            now += rec.advance;
        }
        let t = Timestamp::from_secs(now);
        for (wi, worker) in workers.iter_mut().enumerate() {
            let mine: Vec<&Record> = chunk.iter().filter(|r| r.worker == wi).collect();
            let inputs: Vec<Vec<u8>> = mine
                .iter()
                .map(|r| {
                    let mut b = r.bytes.to_vec();
                    if r.fix_checksums {
                        fix_checksums(&mut b);
                    }
                    b
                })
                .collect();
            let mut batch: Vec<Frame> = mine
                .iter()
                .zip(&inputs)
                .map(|(r, b)| {
                    let mut f = Frame::from_bytes(r.port, b);
                    f.vnet = r.vnet.unwrap_or_default();
                    f
                })
                .collect();
            out.clear();
            worker.process(&mut batch, t, &mut out);
            show_trace(worker, wi);
            for (f, input) in batch.iter().zip(&inputs) {
                // The frame as the stages after vlan-input saw it: a trunk's frame
                // without its tag, on the port of its VLAN (a tagged frame that
                // vlan-input let through lost its tag; any other it dropped).
                let untagged;
                let input: &[u8] = match f.action {
                    Action::Drop(r) if r.stage() == "vlan-input" => input,
                    _ if input.len() >= 18 && input[12..14] == [0x81, 0x00] => {
                        untagged = [&input[..12], &input[16..]].concat();
                        &untagged
                    }
                    _ => input,
                };
                let x = worker.port(f.ingress).expect("ingress").domain;
                // Only frames addressed to a gateway MAC may leave their network
                // (routed).
                let gw = worker.domain(x).and_then(|d| d.gateway).map(|g| g.mac.0);
                let routed = &(input.len() >= 6 && gw.is_some_and(|m| input[..6] == m));
                if *routed && matches!(f.action, Action::Held | Action::Drop(_)) {
                    iso.intended(worker, x, input);
                }
                for e in worker.egress(f) {
                    assert!(
                        e != f.ingress || f.action == Action::Reply || *routed,
                        "sent back out of its ingress port"
                    );
                    let y = worker.port(e).expect("egress").domain;
                    if y != x {
                        assert!(routed, "bridged across networks");
                        if let Err(m) = iso.judge(worker, x, y, Some(input), f.data()) {
                            panic!("isolation: {m}");
                        }
                    }
                    let mtu = routed.then(|| usize::from(worker.domain(y).expect("d").mtu));
                    egress.send(f, e, mtu);
                }
            }
            // Runs of frames to one port that takes UDP super-frames, as the dataplane
            // coalesces them.
            let mut i = 0;
            while i < batch.len() {
                let to = match worker.egress(&batch[i]) {
                    switchyard_core::pipeline::Egress::One(p) if p.0 % 2 == 0 => p,
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                let mut j = i + 1;
                while j < batch.len()
                    && matches!(worker.egress(&batch[j]),
                        switchyard_core::pipeline::Egress::One(p) if p == to)
                {
                    j += 1;
                }
                let run: Vec<&Frame> = batch[i..j].iter().collect();
                egress.coalesce(&run);
                i = j;
            }
            check_emitted(worker, &out, &mut iso, &mut egress);
            out.clear();
            worker.tick(t, &mut out);
            check_emitted(worker, &out, &mut iso, &mut egress);
            let p = &*worker;
            assert!(p.fdb().len() <= p.fdb().capacity(), "FDB over its bound");
            assert!(
                p.conntrack().len() <= p.conntrack().capacity(),
                "conntrack over its bound"
            );
            show_trace(worker, wi);
        }
    }
    // Let every pending resolution run out, so nothing stays held.
    for _ in 0..8 {
        now += 1;
        for w in &mut workers {
            out.clear();
            w.tick(Timestamp::from_secs(now), &mut out);
        }
    }
    let total = Pipeline::merged_counters(workers.iter().map(|w| w.counters()));
    let sum = total.total();
    assert_eq!(sum.rx_frames, frames);
    assert_eq!(sum.held, 0, "every held packet was settled");
    assert_eq!(
        workers[0].neighbors().held(),
        0,
        "no buffer is left in a queue"
    );
    for c in &total.ports {
        assert_eq!(
            c.rx_frames,
            c.forwarded + c.consumed + c.dropped + c.held,
            "accounting invariant"
        );
        assert_eq!(c.dropped, c.drops.iter().sum::<u64>());
    }
}

/// Takes the trace lines of the last batch or tick; prints them when
/// `SWITCHYARD_FUZZ_TRACE` is set (to see what an input does).
fn show_trace(p: &mut Pipeline, worker: usize) {
    let lines = p.tracer().drain();
    if std::env::var_os("SWITCHYARD_FUZZ_TRACE").is_some() {
        for l in lines {
            eprintln!("worker {worker} #{} {l}", l.packet);
        }
    }
}

/// Frames the pipeline made or released: each goes somewhere, and a released packet
/// that crosses networks is judged by the way it leaves.
fn check_emitted(p: &Pipeline, out: &Emitter, iso: &mut Isolation, egress: &mut Egress) {
    for f in out.frames() {
        assert!(p.egress(f).count() >= 1, "emitted frame goes nowhere");
        let from = p.port(f.ingress).map(|s| s.domain);
        for e in p.egress(f) {
            let y = p.port(e).expect("egress").domain;
            if let Some(x) = from.filter(|&x| x != y) {
                if let Err(m) = iso.judge(p, x, y, None, f.data()) {
                    panic!("isolation (released packet): {m}");
                }
            }
            egress.send(f, e, None);
        }
    }
}

/// Runs one config fuzz input: any bytes, as the text of a config file. An accepted
/// one must also survive printing (`show config`) and parsing again.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match switchyard::topology::config::parse(text, "fuzz.toml") {
        Ok(topo) => {
            // What validation accepts, the pipeline must accept too: no config gets
            // past `check` only to fail at `up`.
            if let Err(e) = Pipeline::new(topo.pipeline_spec()) {
                panic!("a validated config makes no pipeline: {e}\n{text}");
            }
            // What `show config` prints of it builds it again.
            let printed = topo.to_toml();
            match switchyard::topology::config::parse(&printed, "fuzz.toml") {
                Ok(again) => assert_eq!(again, topo, "printed as:\n{printed}\nfrom:\n{text}"),
                Err(e) => panic!("the printed config is refused: {e}\n{printed}\nfrom:\n{text}"),
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.trim().is_empty(), "an empty error");
            assert!(msg.contains("fuzz.toml"), "the error names the file: {msg}");
        }
    }
}

/// Runs one control fuzz input: bytes as a client would write them, cut into lines as
/// the server reads them.
/// A what-if SPEC from a client: parsed, and if it holds, built and walked through
/// the fuzz pipeline's tables. Refused or traced, never a panic.
fn what_if(text: &str) {
    use switchyard::control::spec;
    thread_local! {
        static PIPELINE: Pipeline = Pipeline::new(spec()).expect("fuzz spec is valid");
    }
    let Ok(s) = spec::parse(text) else {
        return;
    };
    PIPELINE.with(|p| {
        if let Ok(mut frame) = s.build(p) {
            let t = p.what_if(&mut frame, Timestamp::from_secs(1));
            assert!(!t.verdict.text.is_empty(), "a what-if without a verdict");
        }
    });
}

pub fn control(data: &[u8]) {
    use switchyard::control::protocol::{parse_request, Envelope, Response, MAX_REQUEST_BYTES};
    for line in data.split(|&b| b == b'\n') {
        let line = &line[..line.len().min(MAX_REQUEST_BYTES)];
        match parse_request(line) {
            Ok(req) => {
                if let switchyard::control::protocol::Request::TracePacket { packet } = &req {
                    what_if(packet);
                }
                let again = serde_json::to_vec(&Envelope::new(req.clone())).expect("serializes");
                assert_eq!(
                    parse_request(&again).expect("a request read back"),
                    req,
                    "round trip"
                );
            }
            Err(e) => {
                assert!(!e.message.trim().is_empty(), "an error without a message");
                let resp = Response::error(e);
                let text = serde_json::to_vec(&resp).expect("serializes");
                let back: Response = serde_json::from_slice(&text).expect("reads back");
                assert_eq!(
                    serde_json::to_vec(&back).expect("serializes"),
                    text,
                    "error round trip"
                );
            }
        }
        // What a client does with a server's line: never panic.
        let _ = serde_json::from_slice::<Response>(line);
    }
}
