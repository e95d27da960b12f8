//! DNS for tests: queries built with `simple-dns`, and a tiny upstream server inside a
//! namespace of the test's, answering each name as the test says.

use simple_dns::rdata::{RData, A};
use simple_dns::{
    Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, RCODE, TYPE,
};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Says {
    /// An A record with this TTL.
    A(Ipv4Addr, u32),
    NxDomain,
    /// Nothing at all (the querier times out).
    Silent,
}

/// A DNS server on UDP `addr` inside namespace `ns`, answering with `says(name)`.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Server {
    pub fn start(
        ns: &str,
        addr: SocketAddrV4,
        says: impl Fn(&str) -> Says + Send + 'static,
    ) -> io::Result<Server> {
        let sock =
            netns::run_in_named(ns, || UdpSocket::bind(addr)).map_err(io::Error::other)??;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(&sock, &flag, says));
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the server; how many queries it answered.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: &UdpSocket, stop: &AtomicBool, says: impl Fn(&str) -> Says) -> u64 {
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(q) = Packet::parse(&buf[..n]) else {
            continue;
        };
        let Some(question) = q.questions.first().cloned() else {
            continue;
        };
        let mut r = Packet::new_reply(q.id());
        match says(&question.qname.to_string()) {
            Says::Silent => continue,
            Says::A(ip, ttl) => r.answers.push(ResourceRecord::new(
                question.qname.clone(),
                CLASS::IN,
                ttl,
                RData::A(A::from(ip)),
            )),
            Says::NxDomain => *r.rcode_mut() = RCODE::NameError,
        }
        r.questions.push(question);
        if let Ok(bytes) = r.build_bytes_vec() {
            let _ = sock.send_to(&bytes, from);
            answered += 1;
        }
    }
    answered
}
