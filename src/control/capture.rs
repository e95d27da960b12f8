//! The client side of `switchyard capture`: turns the lines of a capture's live answer
//! into a pcapng stream ([`pcapng`](super::pcapng)) or into one line of text per
//! packet, as tcpdump does without `-w`.

use super::pcapng::{Packet, PcapngOut};
use super::protocol::{CaptureDirection, CaptureStarted, CaptureStatus, CapturedPacket};
use base64::Engine as _;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::Ipv4Addr;

/// Where packets go.
enum Out<W: Write> {
    /// Not started yet: the pcapng interfaces are only known from the first line.
    Waiting(Option<W>),
    Pcapng(PcapngOut<W>),
    Lines(W),
}

/// What a capture has written so far.
pub struct CaptureSink<W: Write> {
    out: Out<W>,
    ports: Vec<String>,
    /// Packets written.
    pub written: u64,
    /// Stop after this many.
    limit: Option<u64>,
    /// The server's last word on frames it could not record.
    pub skipped: u64,
}

impl<W: Write> CaptureSink<W> {
    /// A sink writing pcapng to `w`.
    pub fn pcapng(w: W, limit: Option<u64>) -> CaptureSink<W> {
        CaptureSink {
            out: Out::Waiting(Some(w)),
            ports: Vec::new(),
            written: 0,
            limit,
            skipped: 0,
        }
    }

    /// A sink writing a line of text per packet to `w`.
    pub fn lines(w: W, limit: Option<u64>) -> CaptureSink<W> {
        CaptureSink {
            out: Out::Lines(w),
            ports: Vec::new(),
            written: 0,
            limit,
            skipped: 0,
        }
    }

    /// True once the packet limit is reached.
    pub fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.written >= n)
    }

    /// The capture's first line: the ports, and so the pcapng interfaces.
    pub fn started(&mut self, s: &CaptureStarted) -> io::Result<()> {
        self.ports = s.ports.clone();
        if let Out::Waiting(w) = &mut self.out {
            let w = w.take().expect("a sink starts once");
            let mut p = PcapngOut::new(w, &self.ports)?;
            // The header alone already makes a valid (empty) capture for a reader at
            // the other end of a pipe.
            p.flush()?;
            self.out = Out::Pcapng(p);
        }
        Ok(())
    }

    /// Writes a line's packets (up to the limit) and flushes them.
    pub fn packets(&mut self, packets: &[CapturedPacket]) -> io::Result<()> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        for p in packets {
            if self.done() {
                break;
            }
            let data = base64::engine::general_purpose::STANDARD
                .decode(&p.data)
                .map_err(|e| bad(format!("a packet's bytes are not base64: {e}")))?;
            let name = self
                .ports
                .get(p.port)
                .ok_or_else(|| bad(format!("a packet names port #{}", p.port)))?;
            match &mut self.out {
                Out::Waiting(_) => return Err(bad("packets before the capture started".into())),
                Out::Pcapng(w) => w.write(&Packet {
                    interface: p.port as u32,
                    inbound: p.direction == CaptureDirection::In,
                    time_ns: p.time_ns,
                    data: &data,
                    comment: p.reason.as_deref(),
                })?,
                Out::Lines(w) => writeln!(w, "{}", summary(p, name, &data))?,
            }
            self.written += 1;
        }
        self.flush()
    }

    /// A status or end line.
    pub fn status(&mut self, s: &CaptureStatus) {
        self.skipped = s.skipped;
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Waiting(_) => Ok(()),
            Out::Pcapng(w) => w.flush(),
            Out::Lines(w) => w.flush(),
        }
    }

    /// Ends the capture and hands back the writer (`None` if it never started).
    pub fn finish(mut self) -> io::Result<Option<W>> {
        self.flush()?;
        Ok(match self.out {
            Out::Waiting(w) => w,
            Out::Pcapng(p) => Some(p.into_inner()),
            Out::Lines(w) => Some(w),
        })
    }
}

/// One line for a packet, in the spirit of tcpdump's:
/// `12:03:04.123456789 a In  10.0.0.2 > 10.0.0.3: ICMP echo request, length 98`.
pub fn summary(p: &CapturedPacket, port: &str, data: &[u8]) -> String {
    let secs_of_day = (p.time_ns / 1_000_000_000) % 86_400;
    let mut s = format!(
        "{:02}:{:02}:{:02}.{:09} {port} {} ",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        p.time_ns % 1_000_000_000,
        match p.direction {
            CaptureDirection::In => "In ",
            CaptureDirection::Out => "Out",
        }
    );
    describe(data, &mut s);
    let _ = write!(s, ", length {}", p.len);
    if let Some(r) = &p.reason {
        let _ = write!(s, " (dropped: {r})");
    }
    s
}

/// What a frame is, briefly: ARP, IPv4 with its protocol, or its EtherType.
fn describe(f: &[u8], s: &mut String) {
    let mac = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if f.len() < 14 {
        s.push_str("truncated frame");
        return;
    }
    let _ = write!(s, "{} > {} ", mac(&f[6..12]), mac(&f[0..6]));
    let (mut ethertype, mut l3) = (u16::from_be_bytes([f[12], f[13]]), 14);
    // Past 802.1Q / 802.1ad tags.
    while matches!(ethertype, 0x8100 | 0x88a8) && f.len() >= l3 + 4 {
        ethertype = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]);
        l3 += 4;
    }
    let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let n = &f[l3..];
    match ethertype {
        0x0806 if n.len() >= 28 => {
            let op = u16::from_be_bytes([n[6], n[7]]);
            match op {
                1 => {
                    let _ = write!(s, "ARP who-has {} tell {}", ip(&n[24..28]), ip(&n[14..18]));
                }
                2 => {
                    let _ = write!(s, "ARP reply {} is-at {}", ip(&n[14..18]), mac(&n[8..14]));
                }
                _ => {
                    let _ = write!(s, "ARP op {op}");
                }
            }
        }
        0x0800 if n.len() >= 20 => {
            let ihl = usize::from(n[0] & 0x0f) * 4;
            let (src, dst, proto) = (ip(&n[12..16]), ip(&n[16..20]), n[9]);
            let t = n.get(ihl..).unwrap_or(&[]);
            let ports = |t: &[u8]| {
                (t.len() >= 4).then(|| {
                    (
                        u16::from_be_bytes([t[0], t[1]]),
                        u16::from_be_bytes([t[2], t[3]]),
                    )
                })
            };
            match (proto, ports(t)) {
                (1, _) if !t.is_empty() => {
                    let what = match t[0] {
                        0 => "echo reply".to_string(),
                        3 => "destination unreachable".to_string(),
                        8 => "echo request".to_string(),
                        11 => "time exceeded".to_string(),
                        k => format!("type {k}"),
                    };
                    let _ = write!(s, "{src} > {dst}: ICMP {what}");
                }
                (6, Some((sp, dp))) => {
                    let _ = write!(s, "{src}.{sp} > {dst}.{dp}: TCP");
                }
                (17, Some((sp, dp))) => {
                    let _ = write!(s, "{src}.{sp} > {dst}.{dp}: UDP");
                }
                (p, _) => {
                    let _ = write!(s, "{src} > {dst}: IP protocol {p}");
                }
            }
        }
        t => {
            let _ = write!(s, "ethertype 0x{t:04x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn packet(port: usize, direction: CaptureDirection, data: &[u8]) -> CapturedPacket {
        CapturedPacket {
            port,
            direction,
            time_ns: 3_723_000_000_042,
            len: data.len() as u32,
            data: base64::engine::general_purpose::STANDARD.encode(data),
            drop: None,
            reason: None,
        }
    }

    fn arp_request() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1]);
        f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend([2, 0, 0, 0, 0, 1, 10, 0, 0, 2]);
        f.extend([0; 6]);
        f.extend([10, 0, 0, 3]);
        f
    }

    #[test]
    fn lines_say_when_where_which_way_and_what() {
        let mut sink = CaptureSink::lines(Vec::new(), None);
        sink.started(&CaptureStarted {
            ports: vec!["a".into(), "b".into()],
            buffers: 1,
            buffer_bytes: 1,
        })
        .unwrap();
        let mut dropped = packet(1, CaptureDirection::In, &arp_request());
        dropped.drop = Some("group_source_mac".into());
        dropped.reason = Some("source MAC is multicast".into());
        sink.packets(&[packet(0, CaptureDirection::In, &arp_request()), dropped])
            .unwrap();
        let text = String::from_utf8(sink.finish().unwrap().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "01:02:03.000000042 a In  02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff \
             ARP who-has 10.0.0.3 tell 10.0.0.2, length 42"
        );
        assert!(
            lines[1].starts_with("01:02:03.000000042 b In "),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("(dropped: source MAC is multicast)"));
    }

    #[test]
    fn a_pcapng_sink_stops_at_its_limit_and_keeps_drop_reasons() {
        let mut sink = CaptureSink::pcapng(Vec::new(), Some(2));
        sink.started(&CaptureStarted {
            ports: vec!["a".into()],
            buffers: 1,
            buffer_bytes: 1,
        })
        .unwrap();
        let mut dropped = packet(0, CaptureDirection::In, &arp_request());
        dropped.reason = Some("source MAC is multicast".into());
        let out = packet(0, CaptureDirection::Out, &[0u8; 60]);
        sink.packets(&[out.clone(), dropped, out]).unwrap();
        assert!(sink.done());
        assert_eq!(sink.written, 2);
        let bytes = sink.finish().unwrap().unwrap();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut comments = Vec::new();
        let mut n = 0;
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(p) = b.unwrap() {
                n += 1;
                comments.extend(p.options.iter().filter_map(|o| match o {
                    pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Comment(
                        c,
                    ) => Some(c.to_string()),
                    _ => None,
                }));
            }
        }
        assert_eq!(n, 2);
        assert_eq!(comments, vec!["source MAC is multicast".to_string()]);
    }

    #[test]
    fn bad_bytes_or_a_port_out_of_range_are_errors() {
        let mut sink = CaptureSink::pcapng(Vec::new(), None);
        sink.started(&CaptureStarted {
            ports: vec!["a".into()],
            buffers: 1,
            buffer_bytes: 1,
        })
        .unwrap();
        let mut p = packet(0, CaptureDirection::In, &[0; 60]);
        p.data = "not base64!".into();
        assert!(sink.packets(&[p]).is_err());
        let p = packet(3, CaptureDirection::In, &[0; 60]);
        assert!(sink.packets(&[p]).is_err());
    }
}
