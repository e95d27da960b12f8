//! The tour's traffic: what `ping` and `nc` would send, from sockets opened inside
//! an endpoint's namespace.
//!
//! Each socket is created on a short-lived thread that entered the namespace
//! (`netns::run_in_named`); it belongs to that namespace for good and is used from
//! the caller's thread afterwards. No program is run, and nix's socket calls need no
//! `unsafe`.
//!
//! Everything that would differ from run to run is fixed, so that the traces the
//! tour prints are the same every time: the ICMP identifier and sequence number
//! (ping(8) takes its process id), the payload (ping puts a timestamp in it), and
//! the TCP client's source port (the kernel would pick an ephemeral one).

use nix::sys::socket::{
    bind, connect, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
    SockProtocol, SockType, SockaddrIn,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use switchyard_core::wire::checksum;
use switchyard_os::netns;

/// ICMP message types (RFC 792).
pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
/// ping(8)'s default payload: 56 bytes, 84 with the ICMP and IPv4 headers.
const PAYLOAD: usize = 56;

/// Runs `f` on a thread inside the namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    netns::run_in_named(ns, f).map_err(io::Error::other)?
}

/// What answered an echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// The echo reply, from the address pinged.
    Reply { from: Ipv4Addr },
    /// An ICMP error about the request (its type and code), from a router on the way
    /// or from the destination.
    Error { from: Ipv4Addr, kind: u8, code: u8 },
    /// Nothing, within the time given.
    Nothing,
}

impl std::fmt::Display for Echo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Echo::Reply { from } => write!(f, "an echo reply from {from}"),
            Echo::Error {
                from,
                kind: TIME_EXCEEDED,
                code: 0,
            } => write!(f, "ICMP time exceeded in transit from {from}"),
            Echo::Error {
                from,
                kind: DEST_UNREACHABLE,
                code,
            } => write!(f, "ICMP destination unreachable (code {code}) from {from}"),
            Echo::Error { from, kind, code } => {
                write!(f, "ICMP type {kind} code {code} from {from}")
            }
            Echo::Nothing => f.write_str("no answer"),
        }
    }
}

/// An IPv4 socket of `kind` created inside `ns` (a socket belongs to the namespace it
/// was made in, and keeps working from any thread).
fn socket_in(
    ns: &str,
    kind: SockType,
    proto: impl Into<Option<SockProtocol>> + Send + 'static,
) -> io::Result<OwnedFd> {
    in_ns(ns, move || {
        Ok(socket(
            AddressFamily::Inet,
            kind,
            SockFlag::SOCK_CLOEXEC,
            proto,
        )?)
    })
}

/// Sends one ICMP echo request (RFC 792) from inside `ns` to `dst` with identifier
/// `ident`, sequence number `seq` and TTL `ttl`, and waits up to `wait` for what
/// answers it: the echo reply, or an ICMP error quoting it.
///
/// A raw socket sends the ICMP message exactly as written (a ping socket would put
/// its own identifier in); the kernel adds the IPv4 header.
pub fn echo(
    ns: &str,
    dst: Ipv4Addr,
    ident: u16,
    seq: u16,
    ttl: u8,
    wait: Duration,
) -> io::Result<Echo> {
    let fd = socket_in(ns, SockType::Raw, SockProtocol::Icmp)?;
    setsockopt(&fd, sockopt::Ipv4Ttl, &i32::from(ttl))?;
    let mut msg = vec![0u8; 8 + PAYLOAD];
    msg[0] = ECHO_REQUEST;
    msg[4..6].copy_from_slice(&ident.to_be_bytes());
    msg[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in msg[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let sum = checksum::checksum(&msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    sendto(
        fd.as_raw_fd(),
        &msg,
        &SockaddrIn::from(SocketAddrV4::new(dst, 0)),
        MsgFlags::empty(),
    )?;
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(Echo::Nothing);
        }
        set_receive_timeout(&fd, left)?;
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => return Ok(Echo::Nothing),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some(answer) = match_answer(&buf[..n], dst, ident, seq) {
            return Ok(answer);
        }
    }
}

/// A raw ICMP socket receives every ICMP message that reaches the namespace, with
/// its IPv4 header: this picks the one that answers our request, if `pkt` is it.
fn match_answer(pkt: &[u8], dst: Ipv4Addr, ident: u16, seq: u16) -> Option<Echo> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    let from = Ipv4Addr::new(*pkt.get(12)?, *pkt.get(13)?, *pkt.get(14)?, *pkt.get(15)?);
    let icmp = pkt.get(ihl..)?;
    let ours = |m: &[u8]| {
        m.len() >= 8
            && u16::from_be_bytes([m[4], m[5]]) == ident
            && u16::from_be_bytes([m[6], m[7]]) == seq
    };
    match *icmp.first()? {
        ECHO_REPLY if from == dst && ours(icmp) => Some(Echo::Reply { from }),
        kind @ (DEST_UNREACHABLE | TIME_EXCEEDED) => {
            // An ICMP error quotes the IPv4 header and first 8 bytes of the packet
            // it is about (RFC 792): our echo request, if it is ours.
            let quoted = icmp.get(8..)?;
            let qihl = usize::from(*quoted.first()? & 0x0f) * 4;
            let inner = quoted.get(qihl..)?;
            (*inner.first()? == ECHO_REQUEST && ours(inner)).then_some(Echo::Error {
                from,
                kind,
                code: icmp[1],
            })
        }
        _ => None,
    }
}

/// A raw ICMP socket inside a namespace that sees the echo requests arriving there,
/// as they arrived: their source and TTL tell what the switch on the way did.
pub struct Arrivals {
    fd: OwnedFd,
}

/// An echo request as its destination received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    pub src: Ipv4Addr,
    pub ttl: u8,
}

impl Arrivals {
    /// Starts watching `ns`; only what arrives from now on is seen.
    pub fn watch(ns: &str) -> io::Result<Arrivals> {
        let fd = socket_in(ns, SockType::Raw, SockProtocol::Icmp)?;
        Ok(Arrivals { fd })
    }

    /// The echo request with `ident` and `seq`, if it arrived (waiting up to `wait`).
    pub fn echo_request(
        &self,
        ident: u16,
        seq: u16,
        wait: Duration,
    ) -> io::Result<Option<Arrived>> {
        let start = Instant::now();
        let mut buf = [0u8; 1500];
        loop {
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            set_receive_timeout(&self.fd, left)?;
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(a) = match_request(&buf[..n], ident, seq) {
                return Ok(Some(a));
            }
        }
    }
}

/// `pkt` (an IPv4 packet) if it is the echo request with `ident` and `seq`.
fn match_request(pkt: &[u8], ident: u16, seq: u16) -> Option<Arrived> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    let icmp = pkt.get(ihl..ihl + 8)?;
    (icmp[0] == ECHO_REQUEST
        && u16::from_be_bytes([icmp[4], icmp[5]]) == ident
        && u16::from_be_bytes([icmp[6], icmp[7]]) == seq)
        .then(|| Arrived {
            src: Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
            ttl: pkt[8],
        })
}

fn set_receive_timeout(fd: &OwnedFd, t: Duration) -> io::Result<()> {
    // At least a millisecond: a zero timeout means "wait for ever" to the socket.
    let t = t.max(Duration::from_millis(1));
    setsockopt(fd, sockopt::ReceiveTimeout, &timeval(t))?;
    Ok(())
}

fn timeval(t: Duration) -> TimeVal {
    TimeVal::microseconds(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}

/// A TCP listener on `port` of every address inside `ns` (what `nc -l PORT` opens).
pub fn tcp_listen(ns: &str, port: u16) -> io::Result<TcpListener> {
    in_ns(ns, move || {
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
    })
}

/// A TCP connection from inside `ns`, from local port `from_port`, to `to` (what
/// `nc -p FROM_PORT HOST PORT` opens); gives up after `wait`.
pub fn tcp_connect(
    ns: &str,
    from_port: u16,
    to: SocketAddrV4,
    wait: Duration,
) -> io::Result<TcpStream> {
    let fd = socket_in(ns, SockType::Stream, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, from_port)),
    )?;
    // Linux bounds a blocking connect by the send timeout.
    setsockopt(&fd, sockopt::SendTimeout, &timeval(wait))?;
    loop {
        match connect(fd.as_raw_fd(), &SockaddrIn::from(to)) {
            Ok(()) => return Ok(TcpStream::from(fd)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EINPROGRESS) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {to}: no answer within {wait:?}"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Accepts one connection on `l` within `wait`; the peer as the listener saw it.
pub fn tcp_accept(l: &TcpListener, wait: Duration) -> io::Result<(TcpStream, SocketAddrV4)> {
    l.set_nonblocking(true)?;
    let start = Instant::now();
    loop {
        match l.accept() {
            Ok((s, std::net::SocketAddr::V4(peer))) => return Ok((s, peer)),
            Ok((_, peer)) => return Err(io::Error::other(format!("an IPv6 peer {peer}"))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > wait {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no connection to accept",
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `value` to the sysctl `key` (dotted, as `sysctl(8)` names it) of the
/// namespace `ns`. Files under /proc/sys/net belong to the namespace of the thread
/// that opens them.
pub fn sysctl(ns: &str, key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    in_ns(ns, move || std::fs::write(&path, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (20 bytes) from `src`, then `icmp`.
    fn ip(src: [u8; 4], icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&[10, 1, 0, 2]);
        p.extend_from_slice(icmp);
        p
    }

    fn echo_msg(kind: u8, ident: u16, seq: u16) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&ident.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m
    }

    #[test]
    fn only_our_echo_reply_from_the_destination_matches() {
        let dst = Ipv4Addr::new(10, 1, 0, 3);
        let reply = ip([10, 1, 0, 3], &echo_msg(ECHO_REPLY, 7, 1));
        assert_eq!(
            match_answer(&reply, dst, 7, 1),
            Some(Echo::Reply { from: dst })
        );
        assert_eq!(match_answer(&reply, dst, 8, 1), None, "another identifier");
        assert_eq!(match_answer(&reply, dst, 7, 2), None, "another sequence");
        let elsewhere = ip([10, 1, 0, 4], &echo_msg(ECHO_REPLY, 7, 1));
        assert_eq!(match_answer(&elsewhere, dst, 7, 1), None, "another host");
        let request = ip([10, 1, 0, 3], &echo_msg(ECHO_REQUEST, 7, 1));
        assert_eq!(match_answer(&request, dst, 7, 1), None, "not a reply");
        assert_eq!(match_answer(&reply[..10], dst, 7, 1), None, "truncated");
    }

    #[test]
    fn an_arrival_is_our_request_with_its_source_and_ttl() {
        let mut pkt = ip([10, 1, 0, 2], &echo_msg(ECHO_REQUEST, 4, 1));
        pkt[8] = 63;
        assert_eq!(
            match_request(&pkt, 4, 1),
            Some(Arrived {
                src: Ipv4Addr::new(10, 1, 0, 2),
                ttl: 63
            })
        );
        assert_eq!(match_request(&pkt, 4, 2), None);
        let reply = ip([10, 1, 0, 2], &echo_msg(ECHO_REPLY, 4, 1));
        assert_eq!(match_request(&reply, 4, 1), None);
        assert_eq!(match_request(&pkt[..24], 4, 1), None, "truncated");
    }

    #[test]
    fn an_error_matches_when_it_quotes_our_request() {
        let dst = Ipv4Addr::new(10, 2, 0, 2);
        let quoted = ip([10, 1, 0, 2], &echo_msg(ECHO_REQUEST, 7, 1));
        let mut err = vec![TIME_EXCEEDED, 0, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quoted);
        let pkt = ip([10, 1, 0, 1], &err);
        assert_eq!(
            match_answer(&pkt, dst, 7, 1),
            Some(Echo::Error {
                from: Ipv4Addr::new(10, 1, 0, 1),
                kind: TIME_EXCEEDED,
                code: 0
            })
        );
        assert_eq!(match_answer(&pkt, dst, 9, 1), None, "someone else's probe");
        assert_eq!(match_answer(&pkt[..30], dst, 7, 1), None, "quote cut short");
    }
}
