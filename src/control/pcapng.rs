//! Writing a capture as pcapng (what `switchyard capture -w` produces), with the
//! `pcap-file` crate.
//!
//! The file is one section: a Section Header Block, then one Interface Description
//! Block per captured port (Ethernet link type, `if_name` the port's name, nanosecond
//! timestamps, a snap length of [`SNAPLEN`] so a 64 KiB super-frame is whole), then
//! one Enhanced Packet Block per frame. Each packet carries `epb_flags` with its
//! direction in bits 0–1, as pcapng defines it (RFC draft "PCAP Next Generation Dump
//! File Format", section 4.3.1): `01` inbound — the frame came from the endpoint
//! into switchyard — and `10` outbound — switchyard sent it to the endpoint. A frame
//! switchyard dropped carries the drop reason's sentence as its `opt_comment`.
//!
//! pcap-file 2 writes an EPB's timestamp as the nanoseconds it is given, whatever the
//! interface's resolution; every IDB here therefore says `if_tsresol` = 9 (10^-9 s),
//! without which readers would take nanoseconds for microseconds.

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError};
use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

/// Snap length of every interface: tcpdump's own maximum (262144), above the largest
/// frame switchyard moves (a 64 KiB super-frame), so nothing is ever cut.
pub const SNAPLEN: u32 = 262_144;

/// `epb_flags` direction bits (bits 0–1).
pub const FLAG_INBOUND: u32 = 0b01;
pub const FLAG_OUTBOUND: u32 = 0b10;

/// `if_tsresol` for nanoseconds: 10^-9 (bit 7 clear: a power of ten).
const TSRESOL_NANOS: u8 = 9;

/// One frame to write.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Index of the port in the list the writer was made with.
    pub interface: u32,
    /// True when the frame came from the endpoint into switchyard.
    pub inbound: bool,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The frame, whole.
    pub data: &'a [u8],
    /// The drop reason's sentence, for a frame switchyard dropped.
    pub comment: Option<&'a str>,
}

/// A pcapng stream being written.
pub struct PcapngOut<W: Write> {
    w: PcapNgWriter<W>,
    interfaces: u32,
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

impl<W: Write> PcapngOut<W> {
    /// Starts the stream: the section header (naming the program in `shb_userappl`)
    /// and one interface per port, in the order given.
    pub fn new(w: W, ports: &[String]) -> io::Result<PcapngOut<W>> {
        let section = SectionHeaderBlock {
            endianness: Endianness::native(),
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "switchyard {}",
                env!("CARGO_PKG_VERSION")
            )))],
            ..Default::default()
        };
        let mut w = PcapNgWriter::with_section_header(w, section).map_err(io_error)?;
        for name in ports {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: SNAPLEN,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                    InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOS),
                ],
            };
            w.write_pcapng_block(idb).map_err(io_error)?;
        }
        Ok(PcapngOut {
            w,
            interfaces: ports.len() as u32,
        })
    }

    /// Writes one frame. Its captured length is its original length: switchyard
    /// records frames whole.
    pub fn write(&mut self, p: &Packet<'_>) -> io::Result<()> {
        if p.interface >= self.interfaces {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "packet for interface {} of {}",
                    p.interface, self.interfaces
                ),
            ));
        }
        let mut options = vec![EnhancedPacketOption::Flags(if p.inbound {
            FLAG_INBOUND
        } else {
            FLAG_OUTBOUND
        })];
        if let Some(c) = p.comment {
            options.push(EnhancedPacketOption::Comment(Cow::Borrowed(c)));
        }
        let epb = EnhancedPacketBlock {
            interface_id: p.interface,
            timestamp: Duration::from_nanos(p.time_ns),
            original_len: p.data.len() as u32,
            data: Cow::Borrowed(p.data),
            options,
        };
        self.w.write_pcapng_block(epb).map_err(io_error)?;
        Ok(())
    }

    /// Pushes what is written on to the file or pipe (after each batch of packets, so
    /// a reader at the other end of a pipe sees them as they come).
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.get_mut().flush()
    }

    pub fn into_inner(self) -> W {
        self.w.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn written() -> Vec<u8> {
        let ports = vec!["a".to_string(), "b".to_string()];
        let mut out = PcapngOut::new(Vec::new(), &ports).unwrap();
        let small = [0x11u8; 60];
        let big = vec![0x22u8; 65_000];
        out.write(&Packet {
            interface: 0,
            inbound: true,
            time_ns: 1_700_000_000_123_456_789,
            data: &small,
            comment: None,
        })
        .unwrap();
        out.write(&Packet {
            interface: 1,
            inbound: false,
            time_ns: 1_700_000_000_223_456_789,
            data: &big,
            comment: None,
        })
        .unwrap();
        out.write(&Packet {
            interface: 0,
            inbound: true,
            time_ns: 1_700_000_001_000_000_000,
            data: &small[..42],
            comment: Some("source MAC is a multicast address"),
        })
        .unwrap();
        out.flush().unwrap();
        out.into_inner()
    }

    #[test]
    fn a_capture_reads_back_with_its_interfaces_flags_comments_and_lengths() {
        let bytes = written();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut packets = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(p) = b.unwrap() {
                packets.push(p.into_owned());
            }
        }
        let ifs = r.interfaces();
        assert_eq!(ifs.len(), 2);
        for (idb, name) in ifs.iter().zip(["a", "b"]) {
            assert_eq!(idb.linktype, DataLink::ETHERNET);
            assert_eq!(idb.snaplen, SNAPLEN);
            assert!(idb
                .options
                .contains(&InterfaceDescriptionOption::IfName(name.into())));
            assert!(idb
                .options
                .contains(&InterfaceDescriptionOption::IfTsResol(9)));
        }
        assert_eq!(packets.len(), 3);
        let flags = |p: &EnhancedPacketBlock| {
            p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Flags(f) => Some(*f),
                _ => None,
            })
        };
        let comment = |p: &EnhancedPacketBlock| {
            p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            })
        };
        let (p0, p1, p2) = (&packets[0], &packets[1], &packets[2]);
        assert_eq!(
            (p0.interface_id, flags(p0), p0.data.len(), p0.original_len),
            (0, Some(FLAG_INBOUND), 60, 60)
        );
        assert_eq!(
            p0.timestamp,
            Duration::from_nanos(1_700_000_000_123_456_789)
        );
        assert_eq!(comment(p0), None);
        // A super-frame keeps its whole length, captured and original.
        assert_eq!(
            (p1.interface_id, flags(p1), p1.data.len(), p1.original_len),
            (1, Some(FLAG_OUTBOUND), 65_000, 65_000)
        );
        assert!(p1.data.iter().all(|&b| b == 0x22));
        assert_eq!(
            comment(p2).as_deref(),
            Some("source MAC is a multicast address")
        );
        assert_eq!(p2.original_len, 42);
    }

    #[test]
    fn a_packet_for_an_interface_not_declared_is_refused() {
        let mut out = PcapngOut::new(Vec::new(), &["a".to_string()]).unwrap();
        let e = out
            .write(&Packet {
                interface: 1,
                inbound: true,
                time_ns: 0,
                data: &[0; 14],
                comment: None,
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
