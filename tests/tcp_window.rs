//! TCP window tracking, end to end: a real TCP connection through masquerade
//! (`default` → `outside`), a RST crafted in the outside namespace with a sequence
//! number out of the connection's window, and the connection still carrying data
//! after CLOSE's timeout would have ended it. Needs root.

use switchyard_testkit::fixtures::*;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use switchyard_core::wire::MacAddr;
use switchyard_testkit::traffic::{self, Capture};

const T: Duration = Duration::from_secs(5);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const PORT: u16 = 9100;

/// The TCP segments in `frames` from PEER:PORT: (seq, data length, flags RST).
fn from_server(frames: &[traffic::Seen]) -> Vec<(u32, u32, bool)> {
    frames
        .iter()
        .filter_map(|s| {
            let p = SlicedPacket::from_ethernet(&s.bytes).ok()?;
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                return None;
            };
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                return None;
            };
            (ip.header().source_addr() == PEER && t.source_port() == PORT)
                .then(|| (t.sequence_number(), t.payload().len() as u32, t.rst()))
        })
        .collect()
}

#[test]
fn a_blind_rst_from_outside_does_not_end_a_masqueraded_connection() {
    if !require_root() {
        return;
    }
    let sy = start(build(nat(&unique_prefix())));
    let (inside, outside) = (ns(&sy, "a"), ns(&sy, "outside"));
    let listener = traffic::tcp_listener(&outside, SocketAddrV4::new(PEER, PORT)).unwrap();
    let at_client = Capture::open(&inside, "eth0").unwrap();
    let mut client = traffic::tcp_connect(&inside, SocketAddrV4::new(PEER, PORT), T).unwrap();
    let (mut server, seen) = listener.accept().unwrap();
    let std::net::SocketAddr::V4(seen) = seen else {
        panic!("{seen}")
    };
    assert_eq!(*seen.ip(), UPLINK, "masqueraded");
    for s in [&client, &server] {
        s.set_read_timeout(Some(T)).unwrap();
    }
    // Data both ways, so both sides' windows are known.
    let mut buf = vec![0u8; 1 << 17];
    client.write_all(&[1u8; 1000]).unwrap();
    server.read_exact(&mut buf[..1000]).unwrap();
    server.write_all(&[2u8; 1000]).unwrap();
    client.read_exact(&mut buf[..1000]).unwrap();
    // Where the server's sequence numbers are now (NAT leaves them as they are).
    let segs = from_server(&at_client.collect(Duration::from_millis(300), 100).unwrap());
    let (seq, len, _) = *segs
        .last()
        .expect("the server's segments reached the client");
    let next = seq.wrapping_add(len);
    // The server's address and port, a sequence number half the space away.
    let mut rst = Vec::new();
    PacketBuilder::ethernet2(MacAddr::from_ipv4(PEER).0, MacAddr::from_ipv4(UPLINK).0)
        .ipv4(PEER.octets(), UPLINK.octets(), 64)
        .tcp(PORT, seen.port(), next.wrapping_add(1 << 31), 0)
        .rst()
        .write(&mut rst, &[])
        .unwrap();
    Capture::open(&outside, "eth0").unwrap().send(&rst).unwrap();
    assert!(
        !from_server(&at_client.collect(Duration::from_millis(300), 100).unwrap())
            .iter()
            .any(|&(_, _, rst)| rst),
        "no RST reached the client"
    );
    // Had the RST closed the entry, CLOSE's 10 s would now be over and the next
    // segment dropped as invalid.
    std::thread::sleep(Duration::from_secs(11));
    let data = vec![7u8; 100_000];
    client.write_all(&data).unwrap();
    server
        .read_exact(&mut buf[..data.len()])
        .expect("the connection still carries data");
    assert_eq!(&buf[..data.len()], &data[..]);
    server.write_all(b"still here").unwrap();
    client.read_exact(&mut buf[..10]).unwrap();
    assert_eq!(&buf[..10], b"still here");
    assert_eq!(drops(&sy, "conntrack_invalid"), 0);
    assert_eq!(
        drops(&sy, "conntrack_out_of_window"),
        1,
        "only the crafted RST was out of window"
    );
    assert_accounted(&sy);
    stop(sy);
}
