//! The way to the upstream servers: one UDP socket, opened in the namespace whose
//! network carries the queries (`[switch] dns_upstream_netns`; switchyard's own by
//! default, as Docker's resolver uses the host's network).
//!
//! Only the configured servers are ever sent to, and only datagrams that come from one
//! of them are read as answers; the resolver further matches each answer to a query it
//! forwarded (ID, question, server), so a forged datagram from elsewhere is ignored.
//! The socket is bound to an ephemeral port chosen by the kernel, and the resolver picks
//! an unpredictable ID per query: together, what a blind spoofer must guess (RFC 5452).
//!
//! A reader thread blocks on the socket and hands answers to the service thread over a
//! bounded queue; the service thread sends (a non-blocking send on a UDP socket).
//!
//! A query that came over TCP goes upstream over TCP ([`Upstream::send_tcp`]), so an answer
//! too big for UDP is not cut short on its way: one short-lived connection per query, made
//! in the same namespace on a thread of its own (at most [`MAX_TCP`] at once; beyond that
//! the query goes over UDP), whose answer joins the same queue as a UDP one.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Answers waiting for the service thread; beyond that they are dropped (counted) and
/// the queries they answer time out with SERVFAIL.
const QUEUE: usize = 1024;
/// How often the reader looks up to see whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// Largest datagram read (a DNS message over UDP is at most 65535 bytes).
const MAX_DATAGRAM: usize = 65535;
/// Queries over TCP to upstreams at once.
pub const MAX_TCP: usize = 16;
/// How long a TCP exchange with an upstream may take in all.
const TCP_TIMEOUT: Duration = Duration::from_secs(2);

/// An answer from an upstream server.
pub struct Answer {
    pub from: SocketAddrV4,
    pub bytes: Vec<u8>,
}

/// The socket to the upstream servers, and its reader.
pub struct Upstream {
    socket: Arc<UdpSocket>,
    answers: Receiver<Answer>,
    /// Where TCP exchanges put their answers (the same queue as the reader's).
    tcp_answers: Sender<Answer>,
    /// The namespace the sockets live in (`None`: switchyard's own).
    netns: Option<Arc<std::os::fd::OwnedFd>>,
    /// TCP exchanges under way.
    tcp_busy: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// Answers dropped because the service thread was behind.
    pub dropped: Arc<AtomicU64>,
}

impl Upstream {
    /// Opens the socket (in `netns` when given) and starts its reader.
    pub fn open(netns: Option<&Path>, servers: Vec<SocketAddrV4>) -> io::Result<Upstream> {
        let bind = || UdpSocket::bind("0.0.0.0:0");
        let netns = match netns {
            Some(path) => Some(Arc::new(
                switchyard_os::netns::open_path(path).map_err(io::Error::other)?,
            )),
            None => None,
        };
        let socket = match &netns {
            Some(fd) => {
                switchyard_os::netns::run_in(fd.as_ref(), bind).map_err(io::Error::other)??
            }
            None => bind()?,
        };
        socket.set_read_timeout(Some(STOP_CHECK))?;
        let socket = Arc::new(socket);
        let (tx, answers) = crossbeam_channel::bounded(QUEUE);
        let tcp_answers = tx.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let reader = {
            let (socket, stop, dropped) = (socket.clone(), stop.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("switchyard-dns-up".into())
                .spawn(move || read(&socket, &servers, &tx, &stop, &dropped))?
        };
        Ok(Upstream {
            socket,
            answers,
            tcp_answers,
            netns,
            tcp_busy: Arc::default(),
            stop,
            reader: Some(reader),
            dropped,
        })
    }

    /// Sends one query. Fails only if the kernel refuses it (no route, buffer full):
    /// the query then times out with SERVFAIL as an unanswered one does.
    pub fn send(&self, to: SocketAddrV4, msg: &[u8]) -> io::Result<()> {
        self.socket.send_to(msg, to).map(|_| ())
    }

    /// Sends one query over TCP, on a thread of its own; its answer (if any comes in
    /// time) joins [`Upstream::answers`]. False when [`MAX_TCP`] exchanges are under way
    /// already (the caller then sends over UDP).
    pub fn send_tcp(&self, to: SocketAddrV4, msg: &[u8]) -> bool {
        if self.tcp_busy.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            self.tcp_busy.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let (busy, tx, netns) = (
            self.tcp_busy.clone(),
            self.tcp_answers.clone(),
            self.netns.clone(),
        );
        let Ok(len) = u16::try_from(msg.len()) else {
            busy.fetch_sub(1, Ordering::AcqRel);
            return false;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        let spawned = std::thread::Builder::new()
            .name("switchyard-dns-tcp".into())
            .spawn(move || {
                if let Ok(bytes) = exchange_tcp(netns.as_deref(), to, &framed) {
                    let _ = tx.try_send(Answer { from: to, bytes });
                }
                busy.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.tcp_busy.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Answers read so far.
    pub fn answers(&self) -> &Receiver<Answer> {
        &self.answers
    }

    /// The local address queries leave from (tests, `show dns`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// One query over TCP (RFC 7766): connect from the namespace, write the length-prefixed
/// query, read one length-prefixed answer.
fn exchange_tcp(
    netns: Option<&std::os::fd::OwnedFd>,
    to: SocketAddrV4,
    framed: &[u8],
) -> io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let connect = || std::net::TcpStream::connect_timeout(&SocketAddr::V4(to), TCP_TIMEOUT);
    let mut s = match netns {
        Some(fd) => switchyard_os::netns::run_in(fd, connect).map_err(io::Error::other)??,
        None => connect()?,
    };
    s.set_read_timeout(Some(TCP_TIMEOUT))?;
    s.set_write_timeout(Some(TCP_TIMEOUT))?;
    s.write_all(framed)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read(
    socket: &UdpSocket,
    servers: &[SocketAddrV4],
    tx: &Sender<Answer>,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            // An ICMP error for an earlier send (port unreachable): that query times out.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!("DNS upstream socket: {e}; no more upstream answers");
                return;
            }
        };
        let SocketAddr::V4(from) = from else {
            continue;
        };
        if !servers.contains(&from) {
            continue;
        }
        let answer = Answer {
            from,
            bytes: buf[..n].to_vec(),
        };
        match tx.try_send(answer) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}
