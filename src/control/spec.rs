//! The packet of a what-if trace, as a user writes it (`switchyard trace --packet SPEC`):
//! `in=web,dst=198.51.100.7,proto=tcp,dport=443`, and the frame built from it.
//!
//! A SPEC is a list of `key=value` separated by commas or spaces (a lone `df` is
//! `df=yes`). Only the ingress port is required: the source MAC and address default to
//! the endpoint's on that port, the destination MAC to the endpoint that has the
//! destination address on the same network, or else to the network's gateway (where a
//! routed packet is sent), and the rest to a plain packet of the protocol. Every error
//! names the key it is about. The keys and their defaults are documented in
//! `docs/trace.md` ("What-if traces"); [`KEYS`] is the list the errors quote.
//!
//! The frame is built with the wire module's writers (Ethernet, ARP, IPv4, TCP, UDP,
//! ICMP), checksums included, exactly as an endpoint would send it.

use std::net::Ipv4Addr;
use switchyard_core::pipeline::{Frame, Pipeline, PortId, MAX_FRAME_LEN};
use switchyard_core::wire::arp::{self, ArpOp};
use switchyard_core::wire::ethernet::{self, write_header};
use switchyard_core::wire::icmp::kind;
use switchyard_core::wire::ipv4::{write_header as write_ip, Ipv4Repr};
use switchyard_core::wire::{
    ArpPacket, EtherType, IcmpPacket, IpProtocol, Ipv4Packet, MacAddr, TcpFlags, TcpPacket,
    UdpPacket,
};

/// Every key a SPEC may have, as errors list them (aliases after a slash).
pub const KEYS: &str = "in/in_port, src_mac/dl_src, dst_mac/dl_dst, src/nw_src, dst/nw_dst, \
                        proto, sport/tp_src, dport/tp_dst, flags, seq, ack, win, icmp_type, \
                        icmp_code, ttl, df, len, target, op";

/// A SPEC that cannot be built; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packet spec: {message}")]
pub struct SpecError {
    pub message: String,
    /// The error is an ingress port the switch does not have.
    pub unknown_port: bool,
}

impl SpecError {
    fn new(message: String) -> SpecError {
        SpecError {
            message,
            unknown_port: false,
        }
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError::new(m.into()))
}

/// The protocol of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Arp,
}

/// The destination MAC as written: an address, or one switchyard works out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstMac {
    Mac(MacAddr),
    /// The gateway MAC of the ingress port's network.
    Gateway,
    Broadcast,
}

/// A SPEC as parsed: what the user wrote, before defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketSpec {
    pub in_port: Option<String>,
    pub src_mac: Option<MacAddr>,
    pub dst_mac: Option<DstMac>,
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub proto: Option<Proto>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub flags: Option<TcpFlags>,
    pub seq: Option<u32>,
    pub ack: Option<u32>,
    pub win: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub ttl: Option<u8>,
    pub df: Option<bool>,
    pub len: Option<usize>,
    pub target: Option<Ipv4Addr>,
    pub op: Option<ArpOp>,
}

impl std::str::FromStr for PacketSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<PacketSpec, SpecError> {
        parse(text)
    }
}

/// Parses a SPEC (no defaults applied, nothing checked against the switch).
pub fn parse(text: &str) -> Result<PacketSpec, SpecError> {
    let mut s = PacketSpec::default();
    let mut seen: Vec<&'static str> = Vec::new();
    let items = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|i| !i.is_empty());
    for item in items {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        let name = canonical(key).ok_or_else(|| {
            SpecError::new(format!(
                "unknown key `{key}`; the keys are {KEYS} (see docs/trace.md)"
            ))
        })?;
        if seen.contains(&name) {
            return err(format!("`{name}` is given twice"));
        }
        seen.push(name);
        let value = match (value, name) {
            (Some(""), _) => return err(format!("`{name}=` has no value")),
            (Some(v), _) => v,
            (None, "df") => "yes",
            (None, _) => return err(format!("`{name}` needs a value: `{name}=...`")),
        };
        match name {
            "in" => s.in_port = Some(value.to_string()),
            "src_mac" => s.src_mac = Some(mac(name, value)?),
            "dst_mac" => {
                s.dst_mac = Some(match value {
                    "gateway" | "gw" => DstMac::Gateway,
                    "broadcast" | "bcast" => DstMac::Broadcast,
                    v => DstMac::Mac(mac(name, v)?),
                })
            }
            "src" => s.src = Some(ip(name, value)?),
            "dst" => s.dst = Some(ip(name, value)?),
            "target" => s.target = Some(ip(name, value)?),
            "proto" => {
                s.proto = Some(match value.to_ascii_lowercase().as_str() {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    "icmp" => Proto::Icmp,
                    "arp" => Proto::Arp,
                    _ => return err(format!("proto={value}: one of tcp, udp, icmp, arp")),
                })
            }
            "sport" => s.sport = Some(number(name, value, "a port number (0-65535)")?),
            "dport" => s.dport = Some(number(name, value, "a port number (0-65535)")?),
            "seq" => s.seq = Some(number(name, value, "a sequence number (0-4294967295)")?),
            "ack" => s.ack = Some(number(name, value, "a number (0-4294967295)")?),
            "win" => s.win = Some(number(name, value, "a window (0-65535)")?),
            "icmp_type" => {
                s.icmp_type = Some(match value {
                    "echo-request" | "echo" => kind::ECHO_REQUEST,
                    "echo-reply" => kind::ECHO_REPLY,
                    v => number(name, v, "an ICMP type (0-255, or echo-request, echo-reply)")?,
                })
            }
            "icmp_code" => s.icmp_code = Some(number(name, value, "an ICMP code (0-255)")?),
            "ttl" => {
                s.ttl = Some(number(name, value, "a TTL (0-255)")?);
            }
            "df" => {
                s.df = Some(match value {
                    "1" | "yes" | "true" | "on" => true,
                    "0" | "no" | "false" | "off" => false,
                    _ => return err(format!("df={value}: yes or no (a lone `df` is yes)")),
                })
            }
            "len" => s.len = Some(number(name, value, "a frame length in bytes")?),
            "flags" => s.flags = Some(tcp_flags(value)?),
            "op" => {
                s.op = Some(match value {
                    "request" | "1" => ArpOp::Request,
                    "reply" | "2" => ArpOp::Reply,
                    _ => return err(format!("op={value}: request or reply")),
                })
            }
            _ => unreachable!("canonical() returns only the names matched here"),
        }
    }
    Ok(s)
}

/// The key's own name, for its aliases (Open vSwitch's among them).
fn canonical(key: &str) -> Option<&'static str> {
    Some(match key.to_ascii_lowercase().as_str() {
        "in" | "in_port" | "port" => "in",
        "src_mac" | "dl_src" | "eth_src" => "src_mac",
        "dst_mac" | "dl_dst" | "eth_dst" => "dst_mac",
        "src" | "nw_src" | "ip_src" => "src",
        "dst" | "nw_dst" | "ip_dst" => "dst",
        "proto" => "proto",
        "sport" | "tp_src" => "sport",
        "dport" | "tp_dst" => "dport",
        "flags" | "tcp_flags" => "flags",
        "seq" => "seq",
        "ack" => "ack",
        "win" | "window" => "win",
        "icmp_type" | "type" => "icmp_type",
        "icmp_code" | "code" => "icmp_code",
        "ttl" | "nw_ttl" => "ttl",
        "df" => "df",
        "len" | "length" => "len",
        "target" | "arp_tpa" => "target",
        "op" | "arp_op" => "op",
        _ => return None,
    })
}

fn mac(key: &str, v: &str) -> Result<MacAddr, SpecError> {
    v.parse().map_err(|_| {
        SpecError::new(format!(
            "{key}={v}: not a MAC address (six hex bytes, 02:42:ac:11:00:02)"
        ))
    })
}

fn ip(key: &str, v: &str) -> Result<Ipv4Addr, SpecError> {
    v.parse()
        .map_err(|_| SpecError::new(format!("{key}={v}: not an IPv4 address")))
}

fn number<T: std::str::FromStr>(key: &str, v: &str, what: &str) -> Result<T, SpecError> {
    v.parse()
        .map_err(|_| SpecError::new(format!("{key}={v}: not {what}")))
}

/// TCP flags as letters, tcpdump's and `ss`'s: `S`, `SA`, `A`, `FA`, `R`, `PA`...
fn tcp_flags(v: &str) -> Result<TcpFlags, SpecError> {
    let mut f = TcpFlags::from_bits(0);
    for c in v.chars() {
        f = f | match c.to_ascii_uppercase() {
            'S' => TcpFlags::SYN,
            'A' => TcpFlags::ACK,
            'F' => TcpFlags::FIN,
            'R' => TcpFlags::RST,
            'P' => TcpFlags::PSH,
            'U' => TcpFlags::URG,
            'E' => TcpFlags::ECE,
            'C' => TcpFlags::CWR,
            '.' | '-' => TcpFlags::from_bits(0),
            _ => {
                return err(format!(
                    "flags={v}: `{c}` is not a TCP flag; flags are letters of S (SYN), \
                     A (ACK), F (FIN), R (RST), P (PSH), U (URG), E (ECE), C (CWR)"
                ))
            }
        };
    }
    Ok(f)
}

/// Bytes of payload a packet gets when `len` is not given.
const DEFAULT_PAYLOAD: usize = 16;

impl PacketSpec {
    /// The frame this SPEC describes, arriving on its port of the switch `p`, with
    /// every default filled in from what `p` knows of that port and its network.
    pub fn build(&self, p: &Pipeline) -> Result<Frame, SpecError> {
        let names = || {
            p.ports()
                .iter()
                .filter(|s| !s.is_vacant())
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(name) = &self.in_port else {
            return err(format!(
                "`in` is required: the port the packet arrives on (one of {})",
                names()
            ));
        };
        let port = p.port_by_name(name).ok_or_else(|| SpecError {
            message: format!("in={name}: no such port; ports are {}", names()),
            unknown_port: true,
        })?;
        let ps = p.port(port).expect("found by name");
        let domain = p.domain(ps.domain).expect("a port's network exists");
        let gateway = domain.gateway;
        let proto = self.proto.unwrap_or(if self.flags.is_some() {
            Proto::Tcp
        } else if self.sport.is_some() || self.dport.is_some() {
            Proto::Udp
        } else if self.target.is_some() || self.op.is_some() {
            Proto::Arp
        } else {
            Proto::Icmp
        });
        self.check_keys(proto)?;
        let src_mac = match self.src_mac.or(ps.mac) {
            Some(m) => m,
            None => {
                return err(format!(
                    "src_mac: port {name} has no known MAC; give src_mac="
                ))
            }
        };
        let src = match self.src.or(ps.ip) {
            Some(a) => a,
            None => return err(format!("src: port {name} has no known address; give src=")),
        };
        let gateway_mac = |key: &str| {
            gateway.map(|g| g.mac).ok_or_else(|| {
                SpecError::new(format!(
                    "{key}: network {} has no gateway; give dst_mac=MAC",
                    domain.name
                ))
            })
        };
        let mut frame = vec![0u8; MAX_FRAME_LEN];
        let used = if proto == Proto::Arp {
            let Some(target) = self.target else {
                return err("target: an ARP packet needs target=IP (the address asked for)");
            };
            let op = self.op.unwrap_or(ArpOp::Request);
            let dst_mac = match self.dst_mac {
                Some(DstMac::Mac(m)) => m,
                Some(DstMac::Gateway) => gateway_mac("dst_mac=gateway")?,
                Some(DstMac::Broadcast) => MacAddr::BROADCAST,
                None if op == ArpOp::Request => MacAddr::BROADCAST,
                None => gateway_mac("dst_mac")?,
            };
            let target_mac = if op == ArpOp::Reply {
                dst_mac
            } else {
                MacAddr::ZERO
            };
            write_header(&mut frame, dst_mac, src_mac, EtherType::ARP);
            arp::write(
                &mut frame[ethernet::HEADER_LEN..],
                op,
                src_mac,
                src,
                target_mac,
                target,
            );
            ethernet::HEADER_LEN + ArpPacket::<&[u8]>::LEN
        } else {
            let Some(dst) = self.dst else {
                return err("dst: an IPv4 packet needs dst=IP (its destination address)");
            };
            let dst_mac = match self.dst_mac {
                Some(DstMac::Mac(m)) => m,
                Some(DstMac::Gateway) => gateway_mac("dst_mac=gateway")?,
                Some(DstMac::Broadcast) => MacAddr::BROADCAST,
                None => self.default_dst_mac(p, port, dst, gateway_mac)?,
            };
            self.write_ipv4(&mut frame, proto, src_mac, dst_mac, src, dst)?
        };
        let len = match self.len {
            None => used,
            Some(l) if l < used => {
                return err(format!(
                    "len={l}: shorter than the packet's headers ({used} bytes)"
                ))
            }
            Some(l) if l > MAX_FRAME_LEN => {
                return err(format!(
                    "len={l}: longer than a frame can be ({MAX_FRAME_LEN})"
                ))
            }
            Some(l) => l,
        };
        Ok(Frame::from_bytes(port, &frame[..len]))
    }

    /// Keys that make no sense for `proto` are refused rather than ignored.
    fn check_keys(&self, proto: Proto) -> Result<(), SpecError> {
        let given = |set: bool, key: &str, only: &str| {
            if set {
                err(format!("`{key}` is only for {only} packets"))
            } else {
                Ok(())
            }
        };
        let tcp = proto == Proto::Tcp;
        given(!tcp && self.flags.is_some(), "flags", "tcp")?;
        given(!tcp && self.seq.is_some(), "seq", "tcp")?;
        given(!tcp && self.ack.is_some(), "ack", "tcp")?;
        given(!tcp && self.win.is_some(), "win", "tcp")?;
        let ports = matches!(proto, Proto::Tcp | Proto::Udp);
        given(!ports && self.sport.is_some(), "sport", "tcp and udp")?;
        given(!ports && self.dport.is_some(), "dport", "tcp and udp")?;
        let icmp = proto == Proto::Icmp;
        given(!icmp && self.icmp_type.is_some(), "icmp_type", "icmp")?;
        given(!icmp && self.icmp_code.is_some(), "icmp_code", "icmp")?;
        let arp = proto == Proto::Arp;
        given(!arp && self.target.is_some(), "target", "arp")?;
        given(!arp && self.op.is_some(), "op", "arp")?;
        given(
            arp && self.dst.is_some(),
            "dst",
            "IPv4 (an ARP packet asks for target=)",
        )?;
        given(arp && self.ttl.is_some(), "ttl", "IPv4")?;
        given(arp && self.df.is_some(), "df", "IPv4")?;
        Ok(())
    }

    /// Where an endpoint would send a packet to `dst`: to the endpoint that has that
    /// address on its own network, else to its gateway (a router).
    fn default_dst_mac(
        &self,
        p: &Pipeline,
        port: PortId,
        dst: Ipv4Addr,
        gateway_mac: impl Fn(&str) -> Result<MacAddr, SpecError>,
    ) -> Result<MacAddr, SpecError> {
        let domain = p.port(port).expect("a port").domain;
        if dst.is_broadcast() {
            return Ok(MacAddr::BROADCAST);
        }
        let neighbor = p
            .ports()
            .iter()
            .find(|o| o.domain == domain && o.ip == Some(dst))
            .and_then(|o| o.mac);
        match neighbor {
            Some(m) => Ok(m),
            None => gateway_mac("dst_mac (no endpoint of the network has that address)"),
        }
    }

    /// Writes Ethernet, IPv4 and the transport header with a payload; returns the
    /// frame's length.
    fn write_ipv4(
        &self,
        b: &mut [u8],
        proto: Proto,
        src_mac: MacAddr,
        dst_mac: MacAddr,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<usize, SpecError> {
        let l4_header = match proto {
            Proto::Tcp => 20,
            Proto::Udp => UdpPacket::<&[u8]>::HEADER_LEN,
            _ => IcmpPacket::<&[u8]>::HEADER_LEN,
        };
        let headers = ethernet::HEADER_LEN + 20 + l4_header;
        if let Some(l) = self.len.filter(|&l| l < headers) {
            return err(format!(
                "len={l}: shorter than the packet's headers ({headers} bytes)"
            ));
        }
        let total = self.len.unwrap_or(headers + DEFAULT_PAYLOAD);
        if total - ethernet::HEADER_LEN > usize::from(u16::MAX) {
            return err(format!(
                "len={total}: an IPv4 packet is at most 65535 bytes"
            ));
        }
        let l4_len = total - ethernet::HEADER_LEN - 20;
        write_header(b, dst_mac, src_mac, EtherType::IPV4);
        let ip_bytes = &mut b[ethernet::HEADER_LEN..ethernet::HEADER_LEN + 20 + l4_len];
        write_ip(
            ip_bytes,
            &Ipv4Repr {
                src,
                dst,
                protocol: match proto {
                    Proto::Tcp => IpProtocol::TCP,
                    Proto::Udp => IpProtocol::UDP,
                    _ => IpProtocol::ICMP,
                },
                ttl: self.ttl.unwrap_or(64),
                ident: 1,
                dont_fragment: self.df.unwrap_or(false),
                payload_len: l4_len,
            },
        );
        let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
        let l4 = ip.payload_mut();
        match proto {
            Proto::Tcp => {
                let mut t = TcpPacket::new_unchecked(l4);
                t.set_src_port(self.sport.unwrap_or(40000));
                t.set_dst_port(self.dport.unwrap_or(80));
                let flags = self.flags.unwrap_or(TcpFlags::SYN);
                t.set_seq_number(self.seq.unwrap_or(1));
                t.set_ack_number(self.ack.unwrap_or(0));
                t.set_header_len(20);
                t.set_flags(flags);
                t.set_window(self.win.unwrap_or(64240));
                t.fill_checksum(src, dst);
            }
            Proto::Udp => {
                let mut u = UdpPacket::new_unchecked(l4);
                u.set_src_port(self.sport.unwrap_or(40000));
                u.set_dst_port(self.dport.unwrap_or(53));
                u.set_len(l4_len as u16);
                u.fill_checksum(src, dst);
            }
            Proto::Icmp | Proto::Arp => {
                let mut i = IcmpPacket::new_unchecked(l4);
                i.set_msg_type(self.icmp_type.unwrap_or(kind::ECHO_REQUEST));
                i.set_code(self.icmp_code.unwrap_or(0));
                // An echo's identifier and sequence number; for an error, zero.
                i.set_rest_of_header(0x5359_0001);
                i.fill_checksum();
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::pipeline::{
        DomainId, DomainMode, DomainSpec, GatewaySpec, PortSpec, Spec,
    };

    fn switch() -> Pipeline {
        let dom = |name: &str, net: u8| DomainSpec {
            name: name.into(),
            subnet: format!("10.{net}.0.0/24").parse().unwrap(),
            mtu: 1500,
            gateway: Some(GatewaySpec {
                ip: Ipv4Addr::new(10, net, 0, 1),
                mac: MacAddr([2, 0, 0, 0, net, 1]),
            }),
            mode: DomainMode::Bridge,
            proxy_arp: false,
            masquerade: false,
            external: false,
            dns: false,
            guard: Default::default(),
        };
        let port = |name: &str, net: u8, h: u8| PortSpec {
            mac: Some(MacAddr([2, 0, 0, 0, net, h])),
            ip: Some(Ipv4Addr::new(10, net, 0, h)),
            ..PortSpec::new(name, DomainId(u16::from(net) - 1))
        };
        Pipeline::new(Spec::new(
            vec![dom("front", 1), dom("back", 2)],
            vec![port("a", 1, 2), port("b", 1, 3), port("c", 2, 2)],
        ))
        .unwrap()
    }

    fn build(spec: &str) -> Result<Frame, SpecError> {
        parse(spec)?.build(&switch())
    }

    fn message(spec: &str) -> String {
        build(spec).unwrap_err().message
    }

    #[test]
    fn defaults_come_from_the_port_and_its_network() {
        let f = build("in=a,dst=10.2.0.2,proto=tcp,dport=443").unwrap();
        let d = switchyard_core::pipeline::summarize(f.data());
        assert_eq!(
            d,
            "02:00:00:00:01:02 > 02:00:00:00:01:01, IPv4 10.1.0.2 > 10.2.0.2 tcp 40000 > 443 [SYN], ttl 64, 70 bytes"
        );
        // To an endpoint of the same network: its own MAC.
        let f = build("in=a dst=10.1.0.3 sport=5 dport=7").unwrap();
        let d = switchyard_core::pipeline::summarize(f.data());
        assert!(
            d.starts_with(
                "02:00:00:00:01:02 > 02:00:00:00:01:03, IPv4 10.1.0.2 > 10.1.0.3 udp 5 > 7"
            ),
            "{d}"
        );
        // No protocol, no ports: a ping.
        let d = switchyard_core::pipeline::summarize(build("in=c,dst=10.2.0.1").unwrap().data());
        assert!(d.contains("icmp echo request"), "{d}");
        // ARP: broadcast by default.
        let d = switchyard_core::pipeline::summarize(
            build("in=b,proto=arp,target=10.1.0.1").unwrap().data(),
        );
        assert_eq!(
            d,
            "02:00:00:00:01:03 > ff:ff:ff:ff:ff:ff, ARP request who-has 10.1.0.1 tell 10.1.0.3, 42 bytes"
        );
    }

    #[test]
    fn every_field_can_be_given() {
        let f = build(
            "in_port=a,dl_src=02:00:00:00:00:99,dl_dst=gateway,nw_src=10.1.0.99,nw_dst=8.8.8.8,\
             proto=tcp,tp_src=1234,tp_dst=22,flags=FA,seq=7,ack=9,win=100,ttl=3,df,len=200",
        )
        .unwrap();
        assert_eq!(f.len(), 200);
        let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(
            (ip.ttl(), ip.dont_fragment(), ip.src()),
            (3, true, Ipv4Addr::new(10, 1, 0, 99))
        );
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (
                t.src_port(),
                t.dst_port(),
                t.seq_number(),
                t.ack_number(),
                t.window()
            ),
            (1234, 22, 7, 9, 100)
        );
        assert_eq!(t.flags(), TcpFlags::FIN | TcpFlags::ACK);
        // The checksums are right: etherparse agrees.
        let sliced = etherparse::SlicedPacket::from_ethernet(f.data()).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not TCP")
        };
        let Some(etherparse::NetSlice::Ipv4(v4)) = sliced.net else {
            panic!("not IPv4")
        };
        let h = v4.header().to_header();
        assert_eq!(
            tcp.to_header()
                .calc_checksum_ipv4(&h, tcp.payload())
                .unwrap(),
            tcp.checksum()
        );
        let f = build("in=a,dst=10.1.0.3,proto=icmp,icmp_type=11,icmp_code=0").unwrap();
        let ip = Ipv4Packet::new_checked(&f.data()[14..]).unwrap();
        let i = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(i.checksum_ok());
        assert_eq!(i.msg_type(), kind::TIME_EXCEEDED);
    }

    #[test]
    fn every_error_names_its_key() {
        for (spec, says) in [
            ("dst=10.2.0.2", "`in` is required"),
            (
                "in=zz,dst=10.2.0.2",
                "in=zz: no such port; ports are a, b, c",
            ),
            ("in=a,dst=10.2.0.300", "dst=10.2.0.300: not an IPv4 address"),
            (
                "in=a,dst=10.2.0.2,dport=http",
                "dport=http: not a port number",
            ),
            (
                "in=a,dst=10.2.0.2,dport=70000",
                "dport=70000: not a port number",
            ),
            (
                "in=a,dst=10.2.0.2,flags=SX",
                "flags=SX: `X` is not a TCP flag",
            ),
            (
                "in=a,dst=10.2.0.2,proto=sctp",
                "proto=sctp: one of tcp, udp, icmp, arp",
            ),
            ("in=a,dst=10.2.0.2,colour=red", "unknown key `colour`"),
            ("in=a,dst=10.2.0.2,dst=10.2.0.3", "`dst` is given twice"),
            ("in=a,dst=10.2.0.2,ttl=", "`ttl=` has no value"),
            ("in=a,dst", "`dst` needs a value"),
            (
                "in=a,dst=10.2.0.2,src_mac=02:00",
                "src_mac=02:00: not a MAC address",
            ),
            (
                "in=a,dst=10.2.0.2,proto=icmp,dport=5",
                "`dport` is only for tcp and udp",
            ),
            (
                "in=a,dst=10.2.0.2,proto=udp,flags=S",
                "`flags` is only for tcp",
            ),
            ("in=a,proto=arp", "target: an ARP packet needs target=IP"),
            ("in=a,proto=tcp", "dst: an IPv4 packet needs dst=IP"),
            (
                "in=a,dst=10.2.0.2,len=20",
                "len=20: shorter than the packet's headers",
            ),
            ("in=a,dst=10.2.0.2,df=maybe", "df=maybe: yes or no"),
        ] {
            let m = message(spec);
            assert!(m.contains(says), "{spec}: {m}");
        }
        assert!(message("in=a,x=1").contains(KEYS));
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// A SPEC comes from any client of the control socket: whatever it says, it
        /// is built or refused with a message, never a panic, and a frame built from
        /// it is one the pipeline can take (at most a frame's length) and trace.
        #[test]
        fn any_spec_is_built_or_refused(
            keys in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "in", "src_mac", "dst_mac", "src", "dst", "proto", "sport", "dport",
                        "flags", "seq", "ack", "win", "icmp_type", "icmp_code", "ttl", "df",
                        "len", "target", "op", "x",
                    ]),
                    proptest::prop_oneof![
                        proptest::sample::select(vec![
                            "a", "c", "zz", "tcp", "udp", "icmp", "arp", "gateway",
                            "broadcast", "10.1.0.3", "10.2.0.9", "255.255.255.255", "SA",
                            "0", "1", "64", "65535", "65564", "70000", "request", "reply",
                            "02:00:00:00:01:03", "",
                        ])
                        .prop_map(String::from),
                        "[ -~]{0,12}",
                    ],
                ),
                0..8,
            )
        ) {
            let spec: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let p = switch();
            match parse(&spec.join(",")).and_then(|s| s.build(&p)) {
                Ok(mut f) => {
                    proptest::prop_assert!(f.len() >= 14 && f.len() <= MAX_FRAME_LEN);
                    // And the what-if of it reaches a verdict.
                    let t = p.what_if(&mut f, switchyard_core::pipeline::Timestamp(0));
                    proptest::prop_assert!(!t.verdict.text.is_empty());
                }
                Err(e) => proptest::prop_assert!(!e.message.is_empty()),
            }
        }
    }
}
