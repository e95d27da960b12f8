//! VXLAN tunnel ports (RFC 7348): one port per overlay network stands for every
//! remote host of that network. What the pipeline sends to it leaves encapsulated in
//! UDP to a remote tunnel endpoint (VTEP); what a remote VTEP sends arrives through it.
//!
//! Two sockets per queue, both opened in the *underlay* namespace (the one whose
//! network carries the outer packets; [`VxlanPort::open`] must run on a thread that
//! entered it, as a TAP is made inside its endpoint's namespace):
//!
//! * receive: a UDP socket bound to `local:port`, with `SO_REUSEPORT` so that every
//!   worker binds its own and the kernel spreads the remote flows over them by hash
//!   (each worker owns "one queue of every port", and must read it). The kernel has
//!   checked the outer IP and UDP headers (and a UDP checksum, when one was sent);
//!   this port checks the rest: the sender is a configured VTEP (a datagram from
//!   anyone else is dropped and counted — no MAC is learned from strangers), the I
//!   flag is set and the VNI is the network's.
//! * send: a raw socket (`IPPROTO_RAW`, which implies `IP_HDRINCL`), so that each
//!   outer packet carries headers of switchyard's making: a UDP source port hashed
//!   from the inner flow (entropy for ECMP and RSS, as Linux sends), a zero UDP
//!   checksum unless asked for one, and DF. With `IP_HDRINCL` the kernel never
//!   fragments: a packet larger than the route's MTU is refused with `EMSGSIZE`,
//!   which is counted (`vxlan_tx_too_big`) — never fragmented silently. It cannot
//!   receive, so it holds no copies of other traffic.
//!
//! A frame is sent to the VTEP the pipeline chose ([`Frame::tunnel`], from the FDB),
//! or, when it is flooded or its MAC is unknown, to every remote VTEP in turn
//! (head-end replication). Before encapsulation, what only a TAP understands is
//! undone: a partial checksum (virtio-net `NEEDS_CSUM`) is completed and a
//! super-frame is cut into segments in software (this port advertises no offloads).

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

/// An overlay network's tunnel: one pair of sockets per queue.
pub struct VxlanPort {
    config: VxlanConfig,
    queues: Vec<(OwnedFd, OwnedFd)>,
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
        Ok(VxlanPort {
            config,
            queues: fds,
        })
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
            sport: vxlan::source_port(inner),
            dport: self.config.port,
            vni: self.config.vni,
        };
        let inner_sum = self.config.udp_csum.then(|| checksum::sum(0, inner));
        let mut hdr = [0u8; vxlan::OUTER_LEN];
        let mut last = Ok(());
        for &dst in dsts {
            outer.dst = dst;
            outer.write(&mut hdr, inner.len(), inner_sum);
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
/// Datagrams per sendmmsg(2).
const SEND_BATCH: usize = 64;

impl VxlanQueue {
    /// Encapsulates the segments at `spans` of `self.segments` and sends them to each
    /// of `dsts`, [`SEND_BATCH`] per system call; the last error, if any.
    fn send_segments(&mut self, spans: &[(usize, usize)], dsts: &[Ipv4Addr]) -> io::Result<()> {
        let mut hdrs = [[0u8; vxlan::OUTER_LEN]; SEND_BATCH];
        let mut last = Ok(());
        for &dst in dsts {
            for chunk in spans.chunks(SEND_BATCH) {
                let mut outer = Outer {
                    src: self.config.local,
                    dst,
                    sport: 0,
                    dport: self.config.port,
                    vni: self.config.vni,
                };
                for (h, &(at, len)) in hdrs.iter_mut().zip(chunk) {
                    let inner = &self.segments[at..at + len];
                    outer.sport = vxlan::source_port(inner);
                    let sum = self.config.udp_csum.then(|| checksum::sum(0, inner));
                    outer.write(h, len, sum);
                }
                if let Err(e) = send_many(&self.tx, &hdrs, &self.segments, chunk, dst) {
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

impl Port for VxlanQueue {
    fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize> {
        // The datagram is read so that the inner frame lands at HEADROOM, where
        // every other port puts its frames.
        let at = HEADROOM - vxlan::HEADER_LEN;
        let mut n = 0;
        while n < frames.len() {
            let f = &mut frames[n];
            let buf = &mut f.buffer_mut()[at..];
            let (got, from) = match recv_from(&self.rx, buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            };
            if !self.remotes.contains(&from) {
                self.drops[UNKNOWN_VTEP] += 1;
                continue;
            }
            match vxlan::decapsulate(&buf[..got], self.config.vni) {
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
        let remotes = self.remotes.clone();
        let one;
        let dsts: &[Ipv4Addr] = match frame.tunnel {
            Some(v) if remotes.contains(&v) => {
                one = [v];
                &one
            }
            _ => &remotes,
        };
        if frame.vnet.is_gso() {
            if self.scratch.is_empty() {
                self.scratch = vec![0u8; MAX_FRAME_LEN];
                self.segments = vec![0u8; SEGMENTS_LEN];
            }
            // Cut the super-frame into `segments` (each built in `scratch`, then
            // copied after the last), then send them all with one sendmmsg(2) per
            // VTEP and batch: a system call, and a chance for the receiver to run,
            // per batch rather than per segment.
            let mut scratch = std::mem::take(&mut self.scratch);
            let mut spans = [(0usize, 0usize); MAX_SEGMENTS];
            let (mut count, mut at, mut overflow) = (0, 0, false);
            let segments = &mut self.segments;
            let vnet = frame.vnet;
            let result = gso::segment(frame.data(), &vnet, &mut scratch, |seg| {
                if count == MAX_SEGMENTS || at + seg.len() > segments.len() {
                    overflow = true;
                    return;
                }
                segments[at..at + seg.len()].copy_from_slice(seg);
                spans[count] = (at, seg.len());
                count += 1;
                at += seg.len();
            });
            self.scratch = scratch;
            let n = result.map_err(io::Error::other)?;
            if overflow {
                return Err(io::Error::other(format!(
                    "a super-frame of {n} segments: more than {MAX_SEGMENTS}"
                )));
            }
            return self.send_segments(&spans[..count], dsts).map(|()| n);
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

/// One datagram into `buf`: its length and the sender's address.
fn recv_from(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Ipv4Addr)> {
    // SAFETY: sockaddr_in is plain data; all zeros is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes and recvfrom(2)
    // writes at most that many; `sa` and `len` are live locals it may write, `len`
    // giving the size of `sa`.
    let got = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        got as usize,
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
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

/// Sends `spans.len()` (at most [`SEND_BATCH`]) packets to `dst` in one sendmmsg(2):
/// packet `i` is `hdrs[i]` followed by the bytes of `data` at `spans[i]`. Packets the
/// kernel did not take yet (a partial send) go in the next call; a refusal ends the batch.
fn send_many(
    fd: &OwnedFd,
    hdrs: &[[u8; vxlan::OUTER_LEN]; SEND_BATCH],
    data: &[u8],
    spans: &[(usize, usize)],
    dst: Ipv4Addr,
) -> io::Result<()> {
    let sa = sockaddr(SocketAddrV4::new(dst, 0));
    let n = spans.len().min(SEND_BATCH);
    let mut iov = [[libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2]; SEND_BATCH];
    // SAFETY: mmsghdr is plain data; all zeros is a valid (empty) value.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let (at, len) = spans[i];
        let inner = &data[at..at + len];
        iov[i] = [
            libc::iovec {
                iov_base: hdrs[i].as_ptr() as *mut libc::c_void,
                iov_len: hdrs[i].len(),
            },
            libc::iovec {
                iov_base: inner.as_ptr() as *mut libc::c_void,
                iov_len: inner.len(),
            },
        ];
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&sa as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = iov[i].as_mut_ptr();
        h.msg_iovlen = 2;
    }
    let mut sent = 0;
    while sent < n {
        // SAFETY: messages `sent..n` point to the live address `sa` and to iovecs over
        // live slices of the lengths given; sendmmsg(2) reads them and writes only
        // each message's `msg_len`.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs[sent..].as_mut_ptr(),
                (n - sent) as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += rc as usize;
    }
    Ok(())
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
