//! Traffic helpers: sockets opened inside a network namespace.
//!
//! Every function takes the namespace by name and creates its socket on a short-lived
//! thread that entered the namespace; the socket then works from the calling thread.
//! Nothing here runs an external program, so tests need nothing a fresh machine lacks.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::wire::{checksum, MacAddr};
use switchyard_os::netns;

fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    netns::run_in_named(ns, f).map_err(|e| io::Error::other(e.to_string()))?
}

/// A raw socket of `domain`/`kind`/`proto` created inside `ns`.
fn raw_socket(ns: &str, domain: i32, kind: i32, proto: i32) -> io::Result<OwnedFd> {
    in_ns(ns, move || {
        // SAFETY: socket(2) takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

fn set_timeout(fd: &OwnedFd, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: SO_RCVTIMEO reads a `timeval` from a live local of that type and size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live writable slice; recv(2) writes at most its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sockaddr_in(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// What came back for an ICMP probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpReply {
    /// An echo reply from the target, after this long.
    Echo { from: Ipv4Addr, rtt: Duration },
    /// An ICMP error (type, code) about our probe, from a router or the target.
    Error { from: Ipv4Addr, kind: u8, code: u8 },
    /// Nothing within the timeout.
    Timeout,
}

/// Sends one ICMP echo request from inside `ns` to `dst` with the given TTL and
/// payload size, and reports what answers: the echo reply, an ICMP error about the
/// probe, or nothing.
pub fn icmp_probe(
    ns: &str,
    dst: Ipv4Addr,
    ttl: u8,
    payload: usize,
    dont_fragment: bool,
    timeout: Duration,
) -> io::Result<IcmpReply> {
    let fd = raw_socket(ns, libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
    let ttl_v: libc::c_int = ttl.into();
    let pmtu: libc::c_int = if dont_fragment {
        libc::IP_PMTUDISC_PROBE
    } else {
        libc::IP_PMTUDISC_DONT
    };
    for (opt, val) in [(libc::IP_TTL, ttl_v), (libc::IP_MTU_DISCOVER, pmtu)] {
        // SAFETY: both options read one int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                opt,
                (&val as *const libc::c_int).cast(),
                4,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let ident: u16 = (std::process::id() as u16) ^ (next_seq() as u16).rotate_left(8);
    let seq: u16 = 1;
    let mut msg = vec![0u8; 8 + payload];
    msg[0] = 8;
    msg[4..6].copy_from_slice(&ident.to_be_bytes());
    msg[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in msg[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum::checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let to = sockaddr_in(dst);
    let start = Instant::now();
    // SAFETY: `msg` and `to` are live; sendto reads `msg.len()` bytes and a sockaddr_in.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 65536];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(IcmpReply::Timeout);
        }
        set_timeout(&fd, left.max(Duration::from_millis(1)))?;
        let n = match recv(&fd, &mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(IcmpReply::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // A raw IPv4 socket delivers the IP header too.
        let pkt = &buf[..n];
        if n < 28 {
            continue;
        }
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let from = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        let icmp = &pkt[ihl..];
        if icmp.len() < 8 {
            continue;
        }
        match icmp[0] {
            0 if u16::from_be_bytes([icmp[4], icmp[5]]) == ident && from == dst => {
                return Ok(IcmpReply::Echo {
                    from,
                    rtt: start.elapsed(),
                });
            }
            3 | 11 | 12 => {
                // The quoted packet: its IP header, then our echo header.
                let inner = &icmp[8..];
                if inner.len() < 20 {
                    continue;
                }
                let ihl2 = usize::from(inner[0] & 0x0f) * 4;
                if inner.len() < ihl2 + 8 {
                    continue;
                }
                let q = &inner[ihl2..];
                if q[0] == 8 && u16::from_be_bytes([q[4], q[5]]) == ident {
                    return Ok(IcmpReply::Error {
                        from,
                        kind: icmp[0],
                        code: icmp[1],
                    });
                }
            }
            _ => {}
        }
    }
}

/// Pings `dst` from `ns` (56 bytes of payload, like ping(8)); the round trip time.
pub fn ping(ns: &str, dst: Ipv4Addr, timeout: Duration) -> io::Result<Duration> {
    match icmp_probe(ns, dst, 64, 56, false, timeout)? {
        IcmpReply::Echo { rtt, .. } => Ok(rtt),
        IcmpReply::Error { from, kind, code } => Err(io::Error::other(format!(
            "ping {dst}: ICMP type {kind} code {code} from {from}"
        ))),
        IcmpReply::Timeout => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("ping {dst}: no reply"),
        )),
    }
}

fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A UDP socket bound inside `ns`.
pub fn udp_socket(ns: &str, bind: SocketAddrV4) -> io::Result<UdpSocket> {
    in_ns(ns, move || UdpSocket::bind(bind))
}

/// A TCP listener inside `ns`.
pub fn tcp_listener(ns: &str, bind: SocketAddrV4) -> io::Result<TcpListener> {
    in_ns(ns, move || TcpListener::bind(bind))
}

/// A TCP connection from inside `ns`.
pub fn tcp_connect(ns: &str, to: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    in_ns(ns, move || {
        TcpStream::connect_timeout(&SocketAddr::V4(to), timeout)
    })
}

/// Starts a UDP echo server in `ns`: every datagram goes back to its sender. It
/// answers until `count` datagrams were echoed or nothing arrives for `idle`.
pub fn udp_echo_server(
    ns: &str,
    bind: SocketAddrV4,
    count: usize,
    idle: Duration,
) -> io::Result<JoinHandle<io::Result<Vec<SocketAddr>>>> {
    let sock = udp_socket(ns, bind)?;
    sock.set_read_timeout(Some(idle))?;
    Ok(std::thread::spawn(move || {
        let mut peers = Vec::new();
        let mut buf = [0u8; 65536];
        while peers.len() < count {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            };
            sock.send_to(&buf[..n], from)?;
            peers.push(from);
        }
        Ok(peers)
    }))
}

/// Sends `payload` from `ns` to `to` and waits for the same bytes to come back.
pub fn udp_request(
    ns: &str,
    to: SocketAddrV4,
    payload: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    udp_request_df(ns, to, payload, timeout, true)
}

/// [`udp_request`] with control over the Don't Fragment bit: with `df` false the
/// datagram may be fragmented by routers on the way (`IP_PMTUDISC_DONT`).
pub fn udp_request_df(
    ns: &str,
    to: SocketAddrV4,
    payload: &[u8],
    timeout: Duration,
    df: bool,
) -> io::Result<Vec<u8>> {
    let sock = udp_socket(ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    if !df {
        let v: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: IP_MTU_DISCOVER reads one int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&v as *const libc::c_int).cast(),
                4,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    sock.set_read_timeout(Some(timeout))?;
    sock.send_to(payload, to)?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// A fast, reproducible byte stream: xorshift64* from a seed.
pub struct PatternStream {
    state: u64,
}

impl PatternStream {
    pub fn new(seed: u64) -> PatternStream {
        PatternStream { state: seed | 1 }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a over a byte stream, to compare what was sent with what arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub u64);

impl Digest {
    pub fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Default for Digest {
    fn default() -> Self {
        Digest::new()
    }
}

/// What a TCP sink received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub bytes: u64,
    pub digest: Digest,
    pub peer: SocketAddr,
}

/// Accepts one TCP connection in `ns` and reads it to the end; returns the byte count,
/// digest and the peer's address (as the server saw it — after any NAT).
pub fn tcp_sink(
    ns: &str,
    bind: SocketAddrV4,
    timeout: Duration,
) -> io::Result<JoinHandle<io::Result<Received>>> {
    let l = tcp_listener(ns, bind)?;
    Ok(std::thread::spawn(move || {
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let (mut s, peer) = loop {
            match l.accept() {
                Ok(x) => break x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if start.elapsed() > timeout {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(timeout))?;
        let mut d = Digest::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = s.read(&mut buf)?;
            if k == 0 {
                break;
            }
            d.update(&buf[..k]);
            n += k as u64;
        }
        Ok(Received {
            bytes: n,
            digest: d,
            peer,
        })
    }))
}

/// Connects from `ns` to `to` and sends `bytes` of the pattern for `seed`; returns
/// the digest of what was sent.
pub fn tcp_send(
    ns: &str,
    to: SocketAddrV4,
    bytes: u64,
    seed: u64,
    timeout: Duration,
) -> io::Result<Digest> {
    let mut s = tcp_connect(ns, to, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    let mut pattern = PatternStream::new(seed);
    let mut d = Digest::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        pattern.fill(&mut buf[..k]);
        s.write_all(&buf[..k])?;
        d.update(&buf[..k]);
        left -= k as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    // Wait for the peer's close so every byte is known delivered.
    let mut rest = [0u8; 64];
    while s.read(&mut rest)? > 0 {}
    Ok(d)
}

/// A frame seen by a [`Capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: u16,
    pub bytes: Vec<u8>,
    /// The 802.1Q tag control field (priority and VLAN id) of the tag the kernel
    /// took off the frame as it arrived (it keeps it beside the frame, as tcpdump
    /// shows it), if the frame came tagged.
    pub vlan_tci: Option<u16>,
}

/// An `AF_PACKET` socket on an interface inside a namespace: sees every frame the
/// interface receives, as tcpdump would, and sends raw frames out of it.
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Opens a capture on `ifname` inside `ns`, receiving incoming frames only.
    pub fn open(ns: &str, ifname: &str) -> io::Result<Capture> {
        let name = ifname.to_string();
        let fd = in_ns(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: socket(2) takes no pointers.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd was just created and is ours.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            bind_packet_socket(&fd, &name, proto)?;
            // The kernel takes a received frame's VLAN tag off before a capture
            // sees it; with auxiliary data it hands the tag over beside the frame.
            let one: libc::c_int = 1;
            // SAFETY: PACKET_AUXDATA reads one int from a live local.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    (&one as *const libc::c_int).cast(),
                    4,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(fd)
        })?;
        Ok(Capture { fd })
    }

    /// Sends `frame` (a whole Ethernet frame, as crafted as a test likes) out of the
    /// interface, as if the namespace's own stack had: the way to put spoofed,
    /// malformed or flooding traffic on an endpoint's wire. Frames sent this way are
    /// not reported back by [`Capture::collect`].
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is a live slice of `frame.len()` bytes; send(2) only reads
            // it. The socket is bound to one interface, so no address is needed.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // The device queue is full (a flood outrunning the switch): wait a
                // moment, as a sender with a real NIC would be made to.
                io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(50)),
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                _ => return Err(e),
            }
        }
    }

    /// Frames received until nothing arrives for `quiet` (or `max` frames).
    pub fn collect(&self, quiet: Duration, max: usize) -> io::Result<Vec<Seen>> {
        set_timeout(&self.fd, quiet)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < max {
            // SAFETY: a zeroed sockaddr_ll is a valid value, filled in by recvmsg.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            // Room for one cmsg carrying a tpacket_auxdata, 8-byte aligned.
            let mut control = [0u64; 8];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: as above, a zeroed msghdr is a valid (empty) one.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: every pointer in `msg` is to a live local of the size given;
            // recvmsg(2) writes at most those sizes.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    break;
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // Frames the interface itself sent are reported as PACKET_OUTGOING.
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let n = n as usize;
            if n < 14 {
                continue;
            }
            let vlan_tci = auxdata_vlan(&msg);
            let b = &buf[..n];
            out.push(Seen {
                vlan_tci,
                dst: MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]),
                src: MacAddr([b[6], b[7], b[8], b[9], b[10], b[11]]),
                ethertype: u16::from_be_bytes([b[12], b[13]]),
                bytes: b.to_vec(),
            });
        }
        Ok(out)
    }
}

/// A TCP connection from inside `ns`, from local port `from_port` (so a test can
/// see whether NAT kept the port).
pub fn tcp_connect_from(
    ns: &str,
    from_port: u16,
    to: SocketAddrV4,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let fd = raw_socket(ns, libc::AF_INET, libc::SOCK_STREAM, 0)?;
    let one: libc::c_int = 1;
    // SAFETY: SO_REUSEADDR reads one int from a live local.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
    }
    let mut local = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    local.sin_port = from_port.to_be();
    // SAFETY: bind reads a sockaddr_in from a live local of that size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = TcpStream::from(fd);
    // Connect with a timeout: non-blocking connect, then wait for writability.
    let mut remote = sockaddr_in(*to.ip());
    remote.sin_port = to.port().to_be();
    stream.set_nonblocking(true)?;
    // SAFETY: connect reads a sockaddr_in from a live local of that size.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&remote as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd in a live local.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Accepts `n` TCP connections in `ns` and returns the peers they came from (as the
/// server saw them, after any NAT), in order of arrival.
pub fn tcp_accept_peers(
    ns: &str,
    bind: SocketAddrV4,
    n: usize,
    timeout: Duration,
) -> io::Result<JoinHandle<io::Result<Vec<SocketAddr>>>> {
    let l = tcp_listener(ns, bind)?;
    Ok(std::thread::spawn(move || {
        l.set_nonblocking(true)?;
        let start = Instant::now();
        let mut peers = Vec::new();
        let mut conns = Vec::new();
        while peers.len() < n {
            match l.accept() {
                Ok((s, peer)) => {
                    peers.push(peer);
                    conns.push(s);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if start.elapsed() > timeout {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{} of {n} connections", peers.len()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(peers)
    }))
}

/// Sends `payload` by UDP from local port `from_port` inside `ns` and waits for the echo.
pub fn udp_request_from(
    ns: &str,
    from_port: u16,
    to: SocketAddrV4,
    payload: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let sock = udp_socket(ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, from_port))?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send_to(payload, to)?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Buffers for batched UDP I/O: one `sendmmsg` or `recvmmsg` call moves up to
/// [`MmsgBuffers::len`] datagrams, each in a buffer of its own. For load generators
/// and sinks, where a system call per datagram would measure the system call.
pub struct MmsgBuffers {
    /// The datagram buffers; boxed, so they stay put while `iov` points at them.
    bufs: Vec<Box<[u8]>>,
    /// One iovec per buffer; never resized, so `msgs` may point at its elements.
    iov: Vec<libc::iovec>,
    /// One message per iovec, without addresses (the socket is bound or connected).
    msgs: Vec<libc::mmsghdr>,
}

impl MmsgBuffers {
    /// `n` buffers of `size` bytes, every byte `fill`. To send, each buffer is one
    /// datagram of `size` bytes; to receive, datagrams of up to `size` bytes.
    pub fn new(n: usize, size: usize, fill: u8) -> MmsgBuffers {
        let mut bufs: Vec<Box<[u8]>> = (0..n)
            .map(|_| vec![fill; size].into_boxed_slice())
            .collect();
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let msgs = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: an all-zero mmsghdr is a valid empty message (null pointers,
                // zero lengths); only the iovec fields are set after.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        MmsgBuffers { bufs, iov, msgs }
    }

    /// How many datagrams one call moves at most.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Sends every buffer as one datagram, in one `sendmmsg`; returns how many the
    /// stack took.
    pub fn send(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        debug_assert_eq!(self.iov.len(), self.bufs.len());
        // SAFETY: `msgs` describes live iovecs over live buffers (see the fields);
        // sendmmsg only reads them, and at most `msgs.len()` of them.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Receives up to [`Self::len`] datagrams in one `recvmmsg`, waiting for the first
    /// (up to the socket's read timeout) but not for the rest; returns how many came.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        // SAFETY: `msgs` describes live, writable buffers of the lengths in their
        // iovecs; recvmmsg writes within them and into the message headers only.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Binds an `AF_PACKET` socket to the device `ifname` (of the namespace the calling
/// thread is in) for `proto` (network byte order; 0 receives nothing).
/// The VLAN tag control field in a received message's auxiliary data, if the
/// kernel took a tag off the frame.
fn auxdata_vlan(msg: &libc::msghdr) -> Option<u16> {
    // SAFETY: `msg` is the header recvmsg(2) filled: its control buffer holds
    // `msg_controllen` bytes of well-formed cmsgs, which the CMSG macros walk.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return (aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0)
                    .then_some(aux.tp_vlan_tci);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

fn bind_packet_socket(fd: &OwnedFd, ifname: &str, proto: u16) -> io::Result<()> {
    let cname = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is a valid value; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: bind reads a sockaddr_ll from a live local of that size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `frame` out of `ifname` inside `ns` with the offload header `vnet` (the
/// 10-byte `struct virtio_net_hdr`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, native byte order), through an `AF_PACKET` socket with
/// `PACKET_VNET_HDR`, as a hypervisor's or a container's own stack hands a
/// super-frame to a device with segmentation offload. The kernel checks little of
/// such a header and passes it on to a TAP that takes offloads, so this is how a test
/// puts an impossible one (a segment size of 1, say) on switchyard's wire.
pub fn send_with_vnet(ns: &str, ifname: &str, vnet: [u8; 10], frame: &[u8]) -> io::Result<()> {
    let name = ifname.to_string();
    let fd = in_ns(ns, move || {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: PACKET_VNET_HDR reads one int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VNET_HDR,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: a socket that only sends.
        bind_packet_socket(&fd, &name, 0)?;
        Ok(fd)
    })?;
    let mut buf = Vec::with_capacity(vnet.len() + frame.len());
    buf.extend_from_slice(&vnet);
    buf.extend_from_slice(frame);
    // SAFETY: `buf` is a live slice of `buf.len()` bytes; send(2) only reads it.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
