//! DNS over TCP (RFC 7766), served by a small TCP stack per address.
//!
//! A client retries over TCP when a UDP answer comes back truncated, and some ask over
//! TCP from the start (`dig +tcp`, resolvers with `options use-vc`). switchyard has no
//! kernel socket at its gateway addresses — they live only in its own tables — so it
//! runs a TCP stack of its own for them: smoltcp, one instance (a [`Front`]) per address
//! asked on each network, fed the segments ip4-local punted, its segments framed and
//! sent back the way the query came. The stack sees IP packets only (`Medium::Ip`): the
//! Ethernet side is [`super::frames`]'s, which remembers each peer's return path.
//!
//! Each message on a connection is a 2-byte length and the DNS message; several may
//! follow one another (pipelining) and are answered in turn. Bounded everywhere: a
//! front serves [`CONNECTIONS`] connections at once (a SYN beyond that is reset, as a
//! full listen backlog would), holds at most [`MAX_MESSAGE`] unanswered bytes per
//! connection, closes a connection idle for [`IDLE`], and there are at most
//! [`MAX_FRONTS`] fronts.

use super::frames::ReturnPath;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SDuration, Instant as SInstant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use switchyard_core::wire::{Ipv4Packet, TcpPacket};

/// Connections one front serves at once.
pub const CONNECTIONS: usize = 8;
/// Fronts at most (addresses × networks asked over TCP).
pub const MAX_FRONTS: usize = 64;
/// A connection with no query for this long is closed (RFC 7766 §6.2.3 leaves the
/// value to the server; a few seconds is common).
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(10);
/// Bytes of not-yet-complete queries held per connection: one message and its length.
pub const MAX_MESSAGE: usize = 65535 + 2;
/// Answer bytes waiting to be sent per connection; beyond that the client is not
/// reading and the connection is aborted.
const MAX_PENDING_OUT: usize = 4 * MAX_MESSAGE;
/// Segments waiting for the stack per front.
const MAX_QUEUED: usize = 256;
const RX_BUFFER: usize = 8 * 1024;
const TX_BUFFER: usize = 16 * 1024;
const DNS_PORT: u16 = 53;

/// Which connection a query came on: the front, the connection's slot, and the serial
/// number the slot had then (a slot reused by a new connection has a new serial, so a
/// late upstream answer is never written into someone else's connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub domain: u16,
    pub addr: Ipv4Addr,
    pub slot: usize,
    pub serial: u64,
}

/// IP packets in and out of one stack.
struct Pipe {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

struct PipeRx(Vec<u8>);
struct PipeTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl RxToken for PipeRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for PipeTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for Pipe {
    type RxToken<'a> = PipeRx;
    type TxToken<'a> = PipeTx<'a>;

    fn receive(&mut self, _: SInstant) -> Option<(PipeRx, PipeTx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((PipeRx(p), PipeTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SInstant) -> Option<PipeTx<'_>> {
        Some(PipeTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// One connection slot's state beside its socket.
#[derive(Default)]
struct Slot {
    inbuf: Vec<u8>,
    out: Vec<u8>,
    peer: Option<SocketAddrV4>,
    serial: u64,
    last_query: Option<SInstant>,
}

/// The stack of one address on one network.
struct Front {
    iface: Interface,
    pipe: Pipe,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
    slots: Vec<Slot>,
    /// How to reach each peer that sent a segment lately.
    paths: HashMap<SocketAddrV4, ReturnPath>,
}

/// What the fronts counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpStats {
    /// Connections accepted.
    pub connections: u64,
    /// Segments not taken: no front could be made, or its queue was full.
    pub refused_segments: u64,
    /// Connections aborted: idle, or not reading their answers.
    pub aborted: u64,
    /// Segments of the stack with no known way back (the peer's path was forgotten).
    pub unroutable: u64,
}

/// Every front, and the serial numbers of connections.
#[derive(Default)]
pub struct TcpFronts {
    fronts: HashMap<(u16, Ipv4Addr), Front>,
    serial: u64,
    seed: u64,
    pub stats: TcpStats,
}

fn at(now_ns: u64) -> SInstant {
    SInstant::from_micros((now_ns / 1000) as i64)
}

impl Front {
    fn new(addr: Ipv4Addr, mtu: usize, now: SInstant, seed: u64) -> Front {
        let mut pipe = Pipe {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut pipe, now);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), 32));
        });
        // Peers on other networks (routed here) are reached the same way: the stack
        // only hands packets back, and the frames layer knows each peer's path.
        let _ = iface.routes_mut().add_default_ipv4_route(addr);
        let mut sockets = SocketSet::new(Vec::new());
        let mut handles = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
            );
            s.set_timeout(Some(SDuration::from_secs(10)));
            let _ = s.listen(DNS_PORT);
            handles.push(sockets.add(s));
        }
        Front {
            iface,
            pipe,
            sockets,
            handles,
            slots: (0..CONNECTIONS).map(|_| Slot::default()).collect(),
            paths: HashMap::new(),
        }
    }
}

impl TcpFronts {
    /// Takes one TCP segment (its IPv4 packet) from `peer` to `ours` on network `domain`.
    /// False if it could not be taken (counted).
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        domain: u16,
        ours: SocketAddrV4,
        peer: SocketAddrV4,
        packet: &[u8],
        path: ReturnPath,
        mtu: usize,
        now_ns: u64,
    ) -> bool {
        let key = (domain, *ours.ip());
        if !self.fronts.contains_key(&key) {
            if self.fronts.len() >= MAX_FRONTS {
                self.stats.refused_segments += 1;
                return false;
            }
            self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let seed = self.seed ^ now_ns;
            self.fronts
                .insert(key, Front::new(*ours.ip(), mtu, at(now_ns), seed));
        }
        let front = self.fronts.get_mut(&key).expect("just made");
        if front.pipe.rx.len() >= MAX_QUEUED {
            self.stats.refused_segments += 1;
            return false;
        }
        if front.paths.len() >= 4 * CONNECTIONS && !front.paths.contains_key(&peer) {
            let live: Vec<SocketAddrV4> = front.slots.iter().filter_map(|s| s.peer).collect();
            front.paths.retain(|p, _| live.contains(p));
        }
        front.paths.insert(peer, path);
        front.pipe.rx.push_back(packet.to_vec());
        true
    }

    /// Runs every stack on what came in, and collects the complete queries: for each,
    /// the connection and the message (without its length).
    pub fn take_queries(&mut self, now_ns: u64, queries: &mut Vec<(Conn, Vec<u8>)>) {
        let now = at(now_ns);
        for (&(domain, addr), front) in self.fronts.iter_mut() {
            front.iface.poll(now, &mut front.pipe, &mut front.sockets);
            for (slot_no, &h) in front.handles.iter().enumerate() {
                let s = front.sockets.get_mut::<tcp::Socket>(h);
                let slot = &mut front.slots[slot_no];
                if s.state() == tcp::State::Closed {
                    *slot = Slot::default();
                    let _ = s.listen(DNS_PORT);
                    continue;
                }
                if slot.peer.is_none() && s.is_active() {
                    if let Some(IpEndpoint {
                        addr: IpAddress::Ipv4(ip),
                        port,
                    }) = s.remote_endpoint()
                    {
                        self.serial += 1;
                        self.stats.connections += 1;
                        slot.peer = Some(SocketAddrV4::new(ip, port));
                        slot.serial = self.serial;
                        slot.last_query = Some(now);
                    }
                }
                while s.can_recv() && slot.inbuf.len() < MAX_MESSAGE {
                    let room = MAX_MESSAGE - slot.inbuf.len();
                    let got = s.recv(|d| {
                        let n = d.len().min(room);
                        slot.inbuf.extend_from_slice(&d[..n]);
                        (n, n)
                    });
                    if !matches!(got, Ok(n) if n > 0) {
                        break;
                    }
                }
                while slot.inbuf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([slot.inbuf[0], slot.inbuf[1]]));
                    if slot.inbuf.len() < 2 + len {
                        break;
                    }
                    let msg = slot.inbuf[2..2 + len].to_vec();
                    slot.inbuf.drain(..2 + len);
                    slot.last_query = Some(now);
                    queries.push((
                        Conn {
                            domain,
                            addr,
                            slot: slot_no,
                            serial: slot.serial,
                        },
                        msg,
                    ));
                }
                let idle = slot
                    .last_query
                    .is_some_and(|t| now - t > SDuration::from_micros(IDLE.as_micros() as u64));
                if slot.out.len() > MAX_PENDING_OUT || (idle && slot.out.is_empty()) {
                    s.abort();
                    self.stats.aborted += 1;
                } else if s.state() == tcp::State::CloseWait && slot.out.is_empty() {
                    // The client is done asking and has every answer.
                    s.close();
                }
            }
        }
    }

    /// Queues the answer `msg` on connection `c`, if it is still the same connection.
    pub fn answer(&mut self, c: Conn, msg: &[u8]) -> bool {
        let Some(front) = self.fronts.get_mut(&(c.domain, c.addr)) else {
            return false;
        };
        let Some(slot) = front.slots.get_mut(c.slot) else {
            return false;
        };
        if slot.serial != c.serial || slot.peer.is_none() {
            return false;
        }
        let Ok(len) = u16::try_from(msg.len()) else {
            return false;
        };
        slot.out.extend_from_slice(&len.to_be_bytes());
        slot.out.extend_from_slice(msg);
        true
    }

    /// Writes queued answers into the stacks, runs them, and hands every packet they
    /// send to `emit` with the way back to its peer.
    pub fn flush(&mut self, now_ns: u64, mut emit: impl FnMut(&ReturnPath, &[u8])) {
        let now = at(now_ns);
        for front in self.fronts.values_mut() {
            for (slot_no, &h) in front.handles.iter().enumerate() {
                let slot = &mut front.slots[slot_no];
                if slot.out.is_empty() {
                    continue;
                }
                let s = front.sockets.get_mut::<tcp::Socket>(h);
                if s.can_send() {
                    if let Ok(n) = s.send_slice(&slot.out) {
                        slot.out.drain(..n);
                    }
                }
            }
            front.iface.poll(now, &mut front.pipe, &mut front.sockets);
            while let Some(p) = front.pipe.tx.pop_front() {
                match peer_of(&p).and_then(|peer| front.paths.get(&peer)) {
                    Some(path) => emit(path, &p),
                    None => self.stats.unroutable += 1,
                }
            }
        }
    }

    /// When a stack next needs running (a retransmission, a timer), in ns.
    pub fn next_deadline(&mut self, now_ns: u64) -> Option<u64> {
        let now = at(now_ns);
        self.fronts
            .values_mut()
            .filter_map(|f| f.iface.poll_at(now, &f.sockets))
            .map(|t| (t.total_micros().max(0) as u64).saturating_mul(1000))
            .min()
    }

    /// Connections open now, over every front.
    pub fn open_connections(&self) -> usize {
        self.fronts
            .values()
            .map(|f| f.slots.iter().filter(|s| s.peer.is_some()).count())
            .sum()
    }

    /// Forgets the fronts of networks that no longer serve DNS.
    pub fn retain_domains(&mut self, keep: impl Fn(u16) -> bool) {
        self.fronts.retain(|&(d, _), _| keep(d));
    }
}

/// The destination of an IPv4 TCP packet the stack sent.
fn peer_of(p: &[u8]) -> Option<SocketAddrV4> {
    let ip = Ipv4Packet::new_checked(p).ok()?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(SocketAddrV4::new(ip.dst(), tcp.dst_port()))
}
