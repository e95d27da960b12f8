//! DNS for tests: queries built with `simple-dns`, and a tiny upstream server inside a
//! namespace of the test's, answering each name as the test says, over UDP and TCP.

use simple_dns::rdata::{RData, A};
use simple_dns::{
    Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, RCODE, TYPE,
};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use switchyard_os::netns;

/// An A query for `name` with ID `id` and recursion desired, as a stub resolver sends.
pub fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec().expect("a query builds")
}

/// What the test server says to a name.
///
/// The server answers over UDP and TCP; [`Server::stop`] counts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Says {
    /// An A record with this TTL.
    A(Ipv4Addr, u32),
    /// This many A records (192.0.2.1, .2, ...), TTL 60: an answer too big for 512 bytes
    /// when there are many.
    Many(u8),
    NxDomain,
    /// Nothing at all (the querier times out).
    Silent,
}

type SaysFn = dyn Fn(&str) -> Says + Send + Sync;

/// A DNS server on UDP and TCP `addr` inside namespace `ns`, answering with `says(name)`.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Server {
    pub fn start(
        ns: &str,
        addr: SocketAddrV4,
        says: impl Fn(&str) -> Says + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let sock =
            netns::run_in_named(ns, || UdpSocket::bind(addr)).map_err(io::Error::other)??;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let listener =
            netns::run_in_named(ns, || TcpListener::bind(addr)).map_err(io::Error::other)??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let says: Arc<SaysFn> = Arc::new(says);
        let (flag, udp_says) = (stop.clone(), says.clone());
        let udp = std::thread::spawn(move || serve_udp(&sock, &flag, &*udp_says));
        let flag = stop.clone();
        let tcp = std::thread::spawn(move || serve_tcp(&listener, &flag, &*says));
        Ok(Server {
            stop,
            threads: vec![udp, tcp],
        })
    }

    /// Stops the server; how many queries it answered (UDP and TCP).
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(0)).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The answer to the query `msg`, or `None` (unreadable, or the name is silent); over
/// UDP (`udp`) one larger than 512 bytes is cut to its question with TC set, as a
/// server does for a client without EDNS, so the client must ask again over TCP.
fn answer(msg: &[u8], says: &SaysFn, udp: bool) -> Option<Vec<u8>> {
    let q = Packet::parse(msg).ok()?;
    let question = q.questions.first().cloned()?;
    let mut r = Packet::new_reply(q.id());
    let a = |ip: Ipv4Addr, ttl: u32| {
        ResourceRecord::new(
            question.qname.clone(),
            CLASS::IN,
            ttl,
            RData::A(A::from(ip)),
        )
    };
    match says(&question.qname.to_string()) {
        Says::Silent => return None,
        Says::A(ip, ttl) => r.answers.push(a(ip, ttl)),
        Says::Many(n) => {
            for i in 1..=n {
                r.answers.push(a(Ipv4Addr::new(192, 0, 2, i), 60));
            }
        }
        Says::NxDomain => *r.rcode_mut() = RCODE::NameError,
    }
    r.questions.push(question.clone());
    let bytes = r.build_bytes_vec().ok()?;
    if udp && bytes.len() > 512 {
        r.answers.clear();
        r.set_flags(PacketFlag::TRUNCATION);
        return r.build_bytes_vec().ok();
    }
    Some(bytes)
}

fn serve_udp(sock: &UdpSocket, stop: &AtomicBool, says: &SaysFn) -> u64 {
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(bytes) = answer(&buf[..n], says, true) {
            let _ = sock.send_to(&bytes, from);
            answered += 1;
        }
    }
    answered
}

/// DNS over TCP: each connection's length-prefixed queries answered in turn.
fn serve_tcp(listener: &TcpListener, stop: &AtomicBool, says: &SaysFn) -> u64 {
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut conn, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        loop {
            let mut len = [0u8; 2];
            if conn.read_exact(&mut len).is_err() {
                break;
            }
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if conn.read_exact(&mut msg).is_err() {
                break;
            }
            let Some(bytes) = answer(&msg, says, false) else {
                continue;
            };
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            if conn.write_all(&framed).is_err() {
                break;
            }
            answered += 1;
        }
    }
    answered
}
