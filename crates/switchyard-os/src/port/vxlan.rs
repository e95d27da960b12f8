//! VXLAN tunnel ports (RFC 7348): one port per overlay network stands for every
//! remote host of that network. What the pipeline sends to it leaves encapsulated in
//! UDP to a remote tunnel endpoint (VTEP); what a remote VTEP sends arrives through it.
//!
//! Its sockets are all opened in the *underlay* namespace (the one whose network
//! carries the outer packets; [`VxlanPort::open`] must run on a thread that entered
//! it, as a TAP is made inside its endpoint's namespace):
//!
//! * receive, one per queue: a UDP socket bound to `local:port`, with `SO_REUSEPORT`
//!   so that every worker binds its own and the kernel spreads the remote flows over
//!   them by hash (each worker owns "one queue of every port", and must read it). The
//!   kernel has checked the outer IP and UDP headers (and a UDP checksum, when one
//!   was sent); this port checks the rest: the sender is a configured VTEP (a
//!   datagram from anyone else is dropped and counted — no MAC is learned from
//!   strangers), the I flag is set and the VNI is the network's. `UDP_GRO` (Linux
//!   5.0) is on: the kernel may hand over several datagrams of one sender and
//!   source port in one read — a UDP super-packet a VTEP on the same machine sent
//!   with `UDP_SEGMENT`, kept whole through the veth — with their size in a
//!   control message; they are split back into one frame each.
//! * send a single frame, one per queue: a raw socket (`IPPROTO_RAW`, which implies
//!   `IP_HDRINCL`), so that the outer packet carries headers of switchyard's making:
//!   a zero UDP checksum unless asked for one, and DF. With `IP_HDRINCL` the kernel
//!   never fragments: a packet larger than the route's MTU is refused with
//!   `EMSGSIZE`, which is counted (`vxlan_tx_too_big`) — never fragmented silently.
//!   It cannot receive, so it holds no copies of other traffic.
//! * send a super-frame, [`SOURCE_PORTS`] shared by all queues: UDP sockets bound to
//!   `local` and an ephemeral port each (the kernel picks them from its local port
//!   range, 32768–60999 by default). A TCP super-frame from a TAP is cut into
//!   segments, each written after its VXLAN header into one buffer, and the whole
//!   goes in one `sendmsg` with a `UDP_SEGMENT` control message (Linux 4.18) giving
//!   one datagram's size: the kernel makes the outer headers and cuts the datagrams
//!   (or a veth carries them whole to a receiver that takes them so). A sendmsg holds
//!   at most 64 KB, so a full 64 KB super-frame takes two messages — in one
//!   sendmmsg(2). DF is set (`IP_PMTU_DISCOVER` "do"); a datagram larger than the
//!   route's MTU is refused (`EINVAL` with a segment size, `EMSGSIZE` without) and
//!   counted as above. The kernel refuses `UDP_SEGMENT` on a socket that sends no
//!   UDP checksum, so these packets always carry one (computed by the kernel, or by
//!   the NIC's offload; receivers check a non-zero checksum, RFC 7348 §5).
//!   A drop-everything socket filter keeps them from queueing what arrives.
//!
//! The outer UDP source port is the entropy routers (ECMP) and receivers (RSS,
//! `SO_REUSEPORT`) spread flows by, so every packet of an inner flow must get the
//! same one (RFC 7348 §5): it is the port of the super-frame socket picked by the
//! inner flow's hash ([`vxlan::source_port`]), for single frames too — a flow's
//! small segments and its super-frames leave from one port and stay in order.
//!
//! A frame is sent to the VTEP the pipeline chose ([`Frame::tunnel`], from the FDB),
//! or, when it is flooded or its MAC is unknown, to every remote VTEP in turn
//! (head-end replication). Before encapsulation, what only a TAP understands is
//! undone: a partial checksum (virtio-net `NEEDS_CSUM`) is completed and a
//! super-frame is cut into segments (this port advertises no offloads).

use super::{Capabilities, Offloads, Port, PortDrop};
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use switchyard_core::pipeline::{Frame, HEADROOM, MAX_FRAME_LEN};
use switchyard_core::wire::vxlan::{self, Outer, Refused};
use switchyard_core::wire::{checksum, gso, virtio_net, VirtioNetHdr};

/// What an overlay network's tunnel port is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The underlay address to send from and receive on.
    pub local: Ipv4Addr,
    /// The remote VTEPs: the only senders accepted, and where floods go.
    pub remotes: Vec<Ipv4Addr>,
    /// The UDP port (4789 by default).
    pub port: u16,
    /// Send a UDP checksum in outer packets (default: zero, as Linux).
    pub udp_csum: bool,
    /// The overlay network's IP MTU (shown by `show ports`).
    pub mtu: u16,
}

/// A failure to open a tunnel port's sockets.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("{op} for VXLAN on {addr}: {source}")]
    Socket {
        op: &'static str,
        addr: SocketAddrV4,
        #[source]
        source: io::Error,
    },
}

/// The name `show counters` gives the tunnel ports' own drops, as a stage's.
pub const STAGE: &str = "vxlan";

/// Drop reasons of a tunnel port, in the order of [`VxlanQueue::drops`].
pub const DROPS: [(&str, &str); 5] = [
    (
        "vxlan_unknown_vtep",
        "datagrams from an address that is not a configured remote VTEP",
    ),
    (
        "vxlan_no_vni",
        "datagrams whose VXLAN header lacks the I flag (no VNI)",
    ),
    (
        "vxlan_vni_mismatch",
        "datagrams carrying another network's VNI",
    ),
    (
        "vxlan_runt",
        "datagrams too short for a VXLAN and an Ethernet header",
    ),
    (
        "vxlan_tx_too_big",
        "encapsulated packets larger than the underlay's MTU: refused, never fragmented",
    ),
];
const UNKNOWN_VTEP: usize = 0;
const NO_VNI: usize = 1;
const VNI_MISMATCH: usize = 2;
const RUNT: usize = 3;
const TX_TOO_BIG: usize = 4;

/// How many UDP sockets (so distinct outer source ports) a tunnel port sends
/// super-frames from, shared by its queues: enough for routers and receivers to
/// spread flows over 16 paths or queues, few enough to cost nothing.
pub const SOURCE_PORTS: usize = 16;

/// A UDP socket super-frames are sent from, and its (source) port.
struct GsoSocket {
    fd: OwnedFd,
    port: u16,
}

/// An overlay network's tunnel: a receive and a raw send socket per queue, and
/// [`SOURCE_PORTS`] UDP send sockets shared by the queues.
pub struct VxlanPort {
    config: VxlanConfig,
    queues: Vec<(OwnedFd, OwnedFd)>,
    gso: Arc<[GsoSocket]>,
}

impl VxlanPort {
    /// Opens `queues` socket pairs in the calling thread's network namespace (the
    /// underlay). Fails if `local` is not an address there, or the port is taken by
    /// something that does not share it.
    pub fn open(config: VxlanConfig, queues: usize) -> Result<VxlanPort, VxlanError> {
        let addr = SocketAddrV4::new(config.local, config.port);
        let err = |op| move |source| VxlanError::Socket { op, addr, source };
        let mut fds = Vec::new();
        for _ in 0..queues.max(1) {
            let rx = socket(libc::SOCK_DGRAM, 0).map_err(err("open a UDP socket"))?;
            setsockopt(&rx, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
                .map_err(err("set SO_REUSEPORT"))?;
            // Bulk TCP through the tunnel arrives in bursts; the default buffer
            // (~200 KB) overflows while a worker finishes a batch elsewhere. Root
            // may exceed rmem_max; otherwise take what the system allows.
            if setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20).is_err() {
                let _ = setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
            }
            // Several datagrams of one sender in one read; refused by kernels
            // before 5.0, which then hand them over one by one.
            let _ = setsockopt(&rx, libc::SOL_UDP, libc::UDP_GRO, 1);
            bind(&rx, addr).map_err(err("bind"))?;
            let tx = socket(libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(err("open a raw socket"))?;
            // IP_HDRINCL never fragments; say so anyway, should a kernel differ.
            setsockopt(
                &tx,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )
            .map_err(err("set IP_MTU_DISCOVER"))?;
            if setsockopt(&tx, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20).is_err() {
                let _ = setsockopt(&tx, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
            }
            fds.push((rx, tx));
        }
        let mut gso = Vec::with_capacity(SOURCE_PORTS);
        for _ in 0..SOURCE_PORTS {
            let fd = socket(libc::SOCK_DGRAM, 0).map_err(err("open a UDP send socket"))?;
            // DF on every datagram; too big is refused, never fragmented.
            setsockopt(
                &fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )
            .map_err(err("set IP_MTU_DISCOVER"))?;
            if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20).is_err() {
                let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
            }
            drop_everything(&fd).map_err(err("attach a socket filter"))?;
            let bound = SocketAddrV4::new(config.local, 0);
            bind(&fd, bound).map_err(err("bind a UDP send socket"))?;
            let port = local_port(&fd).map_err(err("read a UDP send socket's port"))?;
            gso.push(GsoSocket { fd, port });
        }
        Ok(VxlanPort {
            config,
            queues: fds,
            gso: gso.into(),
        })
    }

    /// The outer UDP source ports this port sends from (by the inner flow's hash).
    pub fn source_ports(&self) -> Vec<u16> {
        self.gso.iter().map(|s| s.port).collect()
    }

    pub fn capabilities(&self) -> Capabilities {
        capabilities(&self.config, self.queues.len())
    }

    /// One handle per queue, each a [`Port`] for the worker that owns that queue.
    pub fn into_queues(self) -> Vec<VxlanQueue> {
        let n = self.queues.len();
        let config = self.config;
        self.queues
            .into_iter()
            .map(|(rx, tx)| VxlanQueue {
                rx,
                tx,
                gso: self.gso.clone(),
                rx_rest: Vec::new(),
                rx_at: 0,
                rx_seg: 0,
                rx_from: Ipv4Addr::UNSPECIFIED,
                send_calls: 0,
                remotes: config.remotes.iter().copied().collect(),
                caps: capabilities(&config, n),
                config: config.clone(),
                scratch: Vec::new(),
                segments: Vec::new(),
                drops: [0; DROPS.len()],
            })
            .collect()
    }
}

fn capabilities(config: &VxlanConfig, queues: usize) -> Capabilities {
    Capabilities {
        mtu: config.mtu,
        vnet_hdr: false,
        // Everything a TAP may hand over is made whole before encapsulation.
        offloads: Offloads::NONE,
        queues: queues as u16,
        steering: super::steer::Steering::Hash,
    }
}

/// One queue of a tunnel port: what one worker reads from and writes to.
pub struct VxlanQueue {
    rx: OwnedFd,
    tx: OwnedFd,
    /// The super-frame sockets, shared with the other queues.
    gso: Arc<[GsoSocket]>,
    /// The datagrams after the first of a coalesced read (`UDP_GRO`), each
    /// `rx_seg` bytes but the last, not yet taken from `rx_at` on; from `rx_from`.
    rx_rest: Vec<u8>,
    rx_at: usize,
    rx_seg: usize,
    rx_from: Ipv4Addr,
    /// System calls made to send (sendmsg and sendmmsg), for tests and profiles.
    send_calls: u64,
    config: VxlanConfig,
    /// The remote VTEPs, shared so that a send can hold them while it writes
    /// (no copy per frame).
    remotes: Arc<[Ipv4Addr]>,
    caps: Capabilities,
    /// Where segments of a super-frame are built, and where they are kept until
    /// sent; allocated the first time.
    scratch: Vec<u8>,
    segments: Vec<u8>,
    /// This queue's drops, by [`DROPS`] index (summed over workers by readers).
    drops: [u64; DROPS.len()],
}

impl VxlanQueue {
    /// Encapsulates `inner` and sends it to each of `dsts`; the last error, if any.
    fn send_inner(&mut self, inner: &[u8], dsts: &[Ipv4Addr]) -> io::Result<()> {
        let mut outer = Outer {
            src: self.config.local,
            dst: Ipv4Addr::UNSPECIFIED,
            sport: self.gso[self.flow_socket(inner)].port,
            dport: self.config.port,
            vni: self.config.vni,
        };
        let inner_sum = self.config.udp_csum.then(|| checksum::sum(0, inner));
        let mut hdr = [0u8; vxlan::OUTER_LEN];
        let mut last = Ok(());
        for &dst in dsts {
            outer.dst = dst;
            outer.write(&mut hdr, inner.len(), inner_sum);
            self.send_calls += 1;
            match send_to(&self.tx, &hdr, inner, dst) {
                Ok(()) => {}
                Err(e) => {
                    if e.raw_os_error() == Some(libc::EMSGSIZE) {
                        self.drops[TX_TOO_BIG] += 1;
                    }
                    last = Err(e);
                }
            }
        }
        last
    }
}

/// Most segments one super-frame is cut into (64 KB at the smallest segment size a
/// TAP's frames may say, 64 bytes, would be more: such a frame is refused).
const MAX_SEGMENTS: usize = 1024;
/// Bytes of segments kept at once: a 64 KB payload and every segment's headers.
const SEGMENTS_LEN: usize = 2 * MAX_FRAME_LEN;
/// Messages per sendmmsg(2).
const SEND_BATCH: usize = 64;
/// Most datagrams the kernel cuts one `UDP_SEGMENT` message into (its
/// `UDP_MAX_SEGMENTS`: 64 before Linux 6.9, 128 since).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes of one UDP message (IPv4's 65535 less the IP and UDP headers).
const GSO_MAX_BYTES: usize = 65535 - 20 - 8;

/// One `UDP_SEGMENT` message: `len` bytes at `at` of the segment buffer, cut by the
/// kernel into `count` datagrams of `size` bytes (the last may be shorter).
#[derive(Debug, Clone, Copy, Default)]
struct GsoMessage {
    at: usize,
    len: usize,
    size: usize,
    count: usize,
}

impl VxlanQueue {
    /// System calls this queue made to send (each sendmsg or sendmmsg counts one).
    pub fn send_calls(&self) -> u64 {
        self.send_calls
    }

    /// Which super-frame socket (and so which source port) carries the flow of
    /// `inner`: the same for every frame of the flow, whichever queue sends it.
    fn flow_socket(&self, inner: &[u8]) -> usize {
        usize::from(vxlan::source_port(inner)) % self.gso.len()
    }

    /// Sends the datagrams (VXLAN header and inner segment each) at `spans` of
    /// `self.segments`, which lie end to end, from super-frame socket `sock` to each of
    /// `dsts`: as few `UDP_SEGMENT` messages as the kernel's limits allow (one for up
    /// to 64 KB), [`SEND_BATCH`] per sendmmsg(2); the last error, if any.
    fn send_gso(
        &mut self,
        spans: &[(usize, usize)],
        sock: usize,
        dsts: &[Ipv4Addr],
    ) -> io::Result<()> {
        // Runs of datagrams of one size, each ended by a shorter one, by a longer one
        // (which starts the next run) or by the kernel's limits.
        let mut msgs = [GsoMessage::default(); MAX_SEGMENTS];
        let (mut m, mut i) = (0, 0);
        while i < spans.len() {
            let (at, size) = spans[i];
            let mut msg = GsoMessage {
                at,
                len: size,
                size,
                count: 1,
            };
            i += 1;
            while i < spans.len()
                && msg.count < GSO_MAX_SEGMENTS
                && msg.len + spans[i].1 <= GSO_MAX_BYTES
                && spans[i].1 <= size
            {
                let len = spans[i].1;
                msg.len += len;
                msg.count += 1;
                i += 1;
                if len < size {
                    break;
                }
            }
            msgs[m] = msg;
            m += 1;
        }
        // Borrowed field by field: no clone of the shared socket list (an atomic
        // count every worker would touch) per super-frame.
        let fd = &self.gso[sock].fd;
        let mut last = Ok(());
        for &dst in dsts {
            let to = SocketAddrV4::new(dst, self.config.port);
            for chunk in msgs[..m].chunks(SEND_BATCH) {
                let (calls, result) = send_gso_many(fd, &self.segments, chunk, to);
                self.send_calls += calls;
                if let Err((e, at)) = result {
                    // With a segment size the kernel says EINVAL for a datagram
                    // larger than the route's MTU; without one, EMSGSIZE.
                    let too_big = match e.raw_os_error() {
                        Some(libc::EMSGSIZE) => true,
                        Some(libc::EINVAL) => chunk[at].count > 1,
                        _ => false,
                    };
                    if too_big {
                        self.drops[TX_TOO_BIG] += chunk[at].count as u64;
                    }
                    last = Err(e);
                }
            }
        }
        last
    }
}

impl Port for VxlanQueue {
    fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize> {
        // The datagram is read so that the inner frame lands at HEADROOM, where
        // every other port puts its frames.
        let at = HEADROOM - vxlan::HEADER_LEN;
        let mut n = 0;
        while n < frames.len() {
            let f = &mut frames[n];
            let (got, from) = if self.rx_at < self.rx_rest.len() {
                // The next datagram of a coalesced read.
                let end = (self.rx_at + self.rx_seg).min(self.rx_rest.len());
                let datagram = &self.rx_rest[self.rx_at..end];
                f.buffer_mut()[at..at + datagram.len()].copy_from_slice(datagram);
                self.rx_at = end;
                (datagram.len(), self.rx_from)
            } else {
                let buf = &mut f.buffer_mut()[at..];
                let (got, from, seg) = match recv_gro(&self.rx, buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) if n > 0 => break,
                    Err(e) => return Err(e),
                };
                match seg {
                    // Several datagrams of `seg` bytes (the last may be shorter):
                    // the first is taken where it lies, the rest kept for later.
                    Some(seg) if seg > 0 && got > seg => {
                        self.rx_rest.clear();
                        self.rx_rest.extend_from_slice(&buf[seg..got]);
                        (self.rx_at, self.rx_seg, self.rx_from) = (0, seg, from);
                        (seg, from)
                    }
                    _ => (got, from),
                }
            };
            if !self.remotes.contains(&from) {
                self.drops[UNKNOWN_VTEP] += 1;
                continue;
            }
            match vxlan::decapsulate(&f.buffer_mut()[at..at + got], self.config.vni) {
                Ok(()) => {}
                Err(Refused::Short) => {
                    self.drops[RUNT] += 1;
                    continue;
                }
                Err(Refused::NoVni) => {
                    self.drops[NO_VNI] += 1;
                    continue;
                }
                Err(Refused::OtherVni(_)) => {
                    self.drops[VNI_MISMATCH] += 1;
                    continue;
                }
            }
            f.vnet = VirtioNetHdr::default();
            f.set_bounds(HEADROOM, got - vxlan::HEADER_LEN);
            f.tunnel = Some(from);
            // A VTEP behind a veth may leave the inner checksum to an offload that
            // never runs, or hand over a whole TCP super-packet: finish the one, and
            // pass the other on as the super-frame it is.
            if let Some(vnet) = vxlan::super_frame(f.data_mut(), self.config.mtu) {
                // Counted as any port's super-frames are (`rx_gso`).
                f.vnet = vnet;
            } else {
                vxlan::complete_inner_checksum(f.data_mut());
            }
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<usize> {
        // To the VTEP the pipeline chose, if it is one of ours (an FDB entry outlives
        // no configuration, but stay strict); else to every remote.
        let known = frame.tunnel.filter(|v| self.remotes.contains(v));
        let (one, all);
        let dsts: &[Ipv4Addr] = match known {
            Some(v) => {
                one = [v];
                &one
            }
            // A flood: the list is shared with the other workers, so a clone of it
            // is paid only here, not for every unicast frame.
            None => {
                all = self.remotes.clone();
                &all
            }
        };
        if frame.vnet.is_gso() {
            if self.scratch.is_empty() {
                self.scratch = vec![0u8; MAX_FRAME_LEN];
                self.segments = vec![0u8; SEGMENTS_LEN];
            }
            // Cut the super-frame into segments (each built in `scratch`, then
            // copied after its VXLAN header behind the last), then send them all as
            // one UDP super-packet per VTEP: one system call, and one wake-up of
            // the receiver, rather than one per segment.
            let mut scratch = std::mem::take(&mut self.scratch);
            let mut spans = [(0usize, 0usize); MAX_SEGMENTS];
            let (mut count, mut at, mut overflow) = (0, 0, false);
            let segments = &mut self.segments;
            let vnet = frame.vnet;
            let vni = self.config.vni;
            let result = gso::segment(frame.data(), &vnet, &mut scratch, |seg| {
                let len = vxlan::HEADER_LEN + seg.len();
                if count == MAX_SEGMENTS || at + len > segments.len() {
                    overflow = true;
                    return;
                }
                let datagram = &mut segments[at..at + len];
                // Cannot fail: `datagram` is longer than the header.
                let _ = vxlan::write_header(datagram, vni);
                datagram[vxlan::HEADER_LEN..].copy_from_slice(seg);
                spans[count] = (at, len);
                count += 1;
                at += len;
            });
            self.scratch = scratch;
            let n = result.map_err(io::Error::other)?;
            if overflow {
                return Err(io::Error::other(format!(
                    "a super-frame of {n} segments: more than {MAX_SEGMENTS}"
                )));
            }
            let sock = self.flow_socket(frame.data());
            return self.send_gso(&spans[..count], sock, dsts).map(|()| n);
        }
        if frame.vnet.needs_csum() {
            // The remote stack takes the frame as if from a wire: checksums whole.
            let (start, off) = (
                usize::from(frame.vnet.csum_start),
                usize::from(frame.vnet.csum_offset),
            );
            checksum::complete_partial(frame.data_mut(), start, off);
            frame.vnet.flags &= !virtio_net::F_NEEDS_CSUM;
        }
        self.send_inner(frame.data(), dsts)?;
        Ok(1)
    }

    fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn drops(&self) -> Vec<PortDrop> {
        DROPS
            .iter()
            .zip(self.drops)
            .map(|(&(id, text), count)| PortDrop { id, text, count })
            .collect()
    }
}

fn socket(kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new fd that
    // nothing else owns, so OwnedFd may take it.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: a fresh fd owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live local int whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn bind(fd: &OwnedFd, a: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(a);
    // SAFETY: `sa` is a live sockaddr_in and its size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One read into `buf`: its length, the sender's address and, when the kernel
/// coalesced several datagrams (`UDP_GRO`), the size of each but the last.
fn recv_gro(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Ipv4Addr, Option<usize>)> {
    // SAFETY: sockaddr_in is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one control message of an int, aligned as cmsghdr wants.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; all zeros is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut sa as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 4]>();
    // SAFETY: `msg` points to the live locals `sa`, `iov` (over `buf`, writable for
    // its length) and `control`, each with its size; recvmsg(2) writes within them.
    let got = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut seg = None;
    // SAFETY: the CMSG_ macros walk `control` within the length recvmsg(2) left in
    // `msg.msg_controllen`; an int is read unaligned from the data of a UDP_GRO one.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                seg = usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((
        got as usize,
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        seg,
    ))
}

/// Sends outer headers and inner frame as one packet to `dst`.
fn send_to(fd: &OwnedFd, hdr: &[u8], inner: &[u8], dst: Ipv4Addr) -> io::Result<()> {
    let sa = sockaddr(SocketAddrV4::new(dst, 0));
    let mut iov = [
        libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: inner.as_ptr() as *mut libc::c_void,
            iov_len: inner.len(),
        },
    ];
    // SAFETY: msghdr is plain data; all zeros is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&sa as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    loop {
        // SAFETY: `msg` points to a live address and two iovecs over live slices of
        // the lengths given; sendmsg(2) only reads them.
        let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `msgs` (at most [`SEND_BATCH`]) to `to` in sendmmsg(2) calls: message `i`
/// is the bytes of `data` at `msgs[i]`, with a `UDP_SEGMENT` control message when it
/// holds more than one datagram. Messages the kernel did not take yet (a partial
/// send) go in the next call; a refusal ends the batch. Returns the calls made and
/// the refusal, with the index of the message refused.
fn send_gso_many(
    fd: &OwnedFd,
    data: &[u8],
    msgs: &[GsoMessage],
    to: SocketAddrV4,
) -> (u64, Result<(), (io::Error, usize)>) {
    let sa = sockaddr(to);
    let n = msgs.len().min(SEND_BATCH);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    // One control message of a u16 per message, aligned as cmsghdr wants.
    let mut control = [[0u64; 4]; SEND_BATCH];
    // SAFETY: mmsghdr is plain data; all zeros is a valid (empty) value.
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let m = msgs[i];
        let bytes = &data[m.at..m.at + m.len];
        iov[i] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&sa as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        if m.count > 1 {
            h.msg_control = control[i].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE computes a size from a size.
            h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            // SAFETY: `h.msg_control` points to `control[i]`, 32 bytes, and
            // msg_controllen (CMSG_SPACE of a u16, 24 bytes) fits in it, so the
            // first header and its data lie within it; the u16 is written unaligned.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, m.size as u16);
            }
        }
    }
    let (mut sent, mut calls) = (0, 0);
    while sent < n {
        calls += 1;
        // SAFETY: messages `sent..n` point to the live address `sa`, to iovecs over
        // live slices of the lengths given and to their live control buffers;
        // sendmmsg(2) reads them and writes only each message's `msg_len`.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs[sent..].as_mut_ptr(),
                (n - sent) as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return (calls, Err((e, sent)));
        }
        sent += rc as usize;
    }
    (calls, Ok(()))
}

/// Makes `fd` drop every packet addressed to it (a classic BPF filter of one
/// instruction, "return 0"): a send-only UDP socket queues nothing.
fn drop_everything(fd: &OwnedFd) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` is live and points to `code`, one instruction long; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The port `fd` is bound to.
fn local_port(fd: &OwnedFd) -> io::Result<u16> {
    // SAFETY: sockaddr_in is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sa` and `len` are live locals getsockname(2) may write, `len` giving
    // the size of `sa`.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u16::from_be(sa.sin_port))
}

/// The IP MTU of the interface that holds `local`, in the calling thread's network
/// namespace (read over rtnetlink): what an overlay network's MTU is made from.
pub fn underlay_mtu(local: Ipv4Addr) -> Result<Option<u32>, crate::netlink::NetlinkError> {
    let mut rtnl = crate::netlink::Rtnl::new()?;
    let Some(index) = rtnl
        .addrs_v4()?
        .into_iter()
        .find(|&(_, ip, _)| ip == local)
        .map(|(i, _, _)| i)
    else {
        return Ok(None);
    };
    Ok(rtnl
        .links()?
        .into_iter()
        .find(|l| l.index == index)
        .and_then(|l| l.mtu))
}
