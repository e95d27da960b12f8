//! The relay in front of the metrics endpoint's HTTP server: it owns the TCP port,
//! accepts clients within bounds, and copies bytes between each client and a unix
//! connection of its own to `tiny_http` (which reads every connection it is given on
//! a thread of its own, with no time limit, so it is given only these). It reads no
//! HTTP; it bounds what any client may cost:
//!
//! * at most [`MAX_CONNECTIONS`] clients at once. When all are taken, a newcomer takes
//!   the slot of the connection that made progress the longest time ago.
//! * a connection that moves no byte for [`IDLE_TIMEOUT`], or is older than
//!   [`MAX_LIFETIME`], is closed. A keep-alive scraper reconnects; a client that says
//!   nothing, or trickles a byte a second, loses its slot.
//! * a client may send at most [`MAX_REQUEST_BYTES`] over a connection (a scrape's
//!   request is a few hundred); past that it is closed, so `tiny_http` never buffers a
//!   header line without end.
//! * what the server writes is taken at once, so a client that does not read holds up
//!   only itself; one that leaves more than [`MAX_PENDING_RESPONSE`] of its answers
//!   unread is closed.
//!
//! One thread, one `epoll` loop (mio) over non-blocking sockets; stopping wakes it and
//! drops every connection as it is.

use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Clients served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may go without moving a byte either way.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open at all.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// What a client may send over one connection.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// What the server's answers may hold that the client has not taken yet (a scrape of
/// the default topology, three ports, is 15 KB, nearly all of it per port).
pub const MAX_PENDING_RESPONSE: usize = 8 * 1024 * 1024;

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);

/// The relay's thread.
pub struct Relay {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Serves `listener`, passing each client on to the unix socket `server`.
    pub fn start(listener: std::net::TcpListener, server: &Path) -> io::Result<Relay> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut l = Loop {
            poll,
            listener,
            server: server.to_path_buf(),
            conns: HashMap::new(),
            next: 1,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("switchyard-metrics-relay".into())
            .spawn(move || {
                if let Err(e) = l.run() {
                    tracing::error!("the metrics endpoint stopped: {e}");
                }
            })?;
        Ok(Relay {
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Closes the port and every connection.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.waker.wake();
            if t.join().is_err() {
                tracing::error!("the metrics relay panicked");
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// One client and its connection to the server.
struct Conn {
    client: TcpStream,
    server: UnixStream,
    /// From the client, not yet written to the server.
    up: Vec<u8>,
    /// From the server, not yet written to the client.
    down: Vec<u8>,
    /// Bytes the client has sent in all.
    received: usize,
    client_eof: bool,
    server_eof: bool,
    /// The server's write side is shut (the client finished sending).
    up_shut: bool,
    opened: Instant,
    last_progress: Instant,
}

/// What driving a connection came to.
enum Next {
    Keep,
    Close(&'static str),
}

impl Conn {
    /// Moves bytes both ways until nothing moves without blocking.
    fn drive(&mut self) -> Next {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let mut moved = false;
            // Client -> server.
            if !self.client_eof && self.up.len() < buf.len() {
                match self.client.read(&mut buf) {
                    Ok(0) => self.client_eof = true,
                    Ok(n) => {
                        self.received += n;
                        if self.received > MAX_REQUEST_BYTES {
                            return Next::Close("sent more than a scrape's request");
                        }
                        self.up.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return Next::Close("client read failed"),
                }
            }
            if !self.up.is_empty() {
                match self.server.write(&self.up) {
                    Ok(n) => {
                        self.up.drain(..n);
                        moved |= n > 0;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return Next::Close("server write failed"),
                }
            }
            if self.client_eof && self.up.is_empty() && !self.up_shut {
                // The request is whole: the server answers, then sees the end.
                let _ = self.server.shutdown(std::net::Shutdown::Write);
                self.up_shut = true;
            }
            // Server -> client, always taken at once: the responder never waits for a
            // client.
            if !self.server_eof {
                match self.server.read(&mut buf) {
                    Ok(0) => self.server_eof = true,
                    Ok(n) => {
                        self.down.extend_from_slice(&buf[..n]);
                        if self.down.len() > MAX_PENDING_RESPONSE {
                            return Next::Close("left too much of its answers unread");
                        }
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return Next::Close("server read failed"),
                }
            }
            if !self.down.is_empty() {
                match self.client.write(&self.down) {
                    Ok(n) => {
                        self.down.drain(..n);
                        moved |= n > 0;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return Next::Close("client write failed"),
                }
            }
            if self.server_eof && self.down.is_empty() {
                return Next::Close("answered");
            }
            if !moved {
                return Next::Keep;
            }
            self.last_progress = Instant::now();
        }
    }

    fn deadline(&self) -> Instant {
        (self.last_progress + IDLE_TIMEOUT).min(self.opened + MAX_LIFETIME)
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    server: PathBuf,
    /// By connection number; the client's token is 2n, the server side's 2n + 1.
    conns: HashMap<usize, Conn>,
    next: usize,
    stop: Arc<AtomicBool>,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let timeout = self
                .conns
                .values()
                .map(|c| c.deadline().saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(60));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKE => {}
                    Token(t) => self.drive(t / 2),
                }
            }
            let now = Instant::now();
            self.conns.retain(|_, c| {
                let alive = c.deadline() > now;
                if !alive {
                    tracing::debug!("metrics client timed out");
                }
                alive
            });
        }
    }

    fn drive(&mut self, n: usize) {
        let Some(c) = self.conns.get_mut(&n) else {
            return;
        };
        if let Next::Close(why) = c.drive() {
            tracing::trace!("metrics connection closed: {why}");
            self.conns.remove(&n);
        }
    }

    fn accept(&mut self) {
        loop {
            let mut client = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken:
                    // the listener stays, and the next readiness tries again.
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                self.evict_stalest();
            }
            let mut server = match UnixStream::connect(&self.server) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("metrics endpoint: cannot reach its HTTP server: {e}");
                    continue;
                }
            };
            let n = self.next;
            self.next += 1;
            let both = Interest::READABLE | Interest::WRITABLE;
            let registered = self
                .poll
                .registry()
                .register(&mut client, Token(2 * n), both)
                .and_then(|()| {
                    self.poll
                        .registry()
                        .register(&mut server, Token(2 * n + 1), both)
                });
            if let Err(e) = registered {
                tracing::warn!("metrics endpoint: cannot poll a client: {e}");
                continue;
            }
            let now = Instant::now();
            self.conns.insert(
                n,
                Conn {
                    client,
                    server,
                    up: Vec::new(),
                    down: Vec::new(),
                    received: 0,
                    client_eof: false,
                    server_eof: false,
                    up_shut: false,
                    opened: now,
                    last_progress: now,
                },
            );
        }
    }

    /// Closes the connection that made progress the longest time ago.
    fn evict_stalest(&mut self) {
        if let Some(n) = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_progress)
            .map(|(&n, _)| n)
        {
            tracing::debug!("metrics endpoint full: closing the stalest connection");
            self.conns.remove(&n);
        }
    }
}
