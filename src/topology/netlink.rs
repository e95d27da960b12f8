//! A small synchronous rtnetlink client: the calls switchyard needs to configure
//! links, addresses and routes (what `ip link`, `ip addr` and `ip route` do).
//!
//! A netlink socket talks to the network namespace that was current for the thread
//! that created it, so to configure an endpoint, create an [`Rtnl`] inside
//! `netns::run_in`. Every request asks for an acknowledgement and waits for it, so an
//! error comes back from the very call that caused it, naming the operation.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// A netlink request that failed: what was attempted and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {op}: {source}")]
pub struct NetlinkError {
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl NetlinkError {
    fn new(op: impl Into<String>, source: io::Error) -> NetlinkError {
        NetlinkError {
            op: op.into(),
            source,
        }
    }

    /// The errno the kernel answered with, if it was a kernel error.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// A link as `links()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfoRow {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub txqueuelen: Option<u32>,
    /// The bridge (or other controller) the link is enslaved to.
    pub master: Option<u32>,
}

/// A route of the main table as `routes_v4()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// A neighbour (ARP) entry as `neighbours_v4()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state bits (0x02 reachable, 0x04 stale, 0x20 failed, 0x80 permanent, ...).
    pub state: u16,
}

/// An rtnetlink socket in the namespace of the thread that created it.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub fn new() -> Result<Rtnl, NetlinkError> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| NetlinkError::new("open socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetlinkError::new("bind socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetlinkError::new("connect socket", e))?;
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends one request and collects the kernel's messages until the ACK (or, for a
    /// dump, the DONE).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|e| NetlinkError::new(op(), e))?;

        let mut replies = Vec::new();
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| NetlinkError::new(op(), e))?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let m: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(bytes)
                    .map_err(|e| {
                        NetlinkError::new(
                            op(),
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        if e.code.is_some() {
                            return Err(NetlinkError::new(op(), e.to_io()));
                        }
                        // An ACK ends a plain request; a dump ends with DONE.
                        if !dump {
                            return Ok(replies);
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }

    fn set_link(
        &mut self,
        index: u32,
        attrs: Vec<LinkAttribute>,
        op: &dyn Fn() -> String,
    ) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes = attrs;
        self.request(RouteNetlinkMessage::SetLink(m), 0, op)
            .map(|_| ())
    }

    fn set_flags(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Up;
        let what = if up { "up" } else { "down" };
        self.request(RouteNetlinkMessage::SetLink(m), 0, &|| {
            format!("set ifindex {index} {what}")
        })
        .map(|_| ())
    }

    /// The index of the link named `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let replies = self.request(RouteNetlinkMessage::GetLink(m), 0, &|| {
            format!("find link {name}")
        })?;
        replies
            .into_iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| {
                NetlinkError::new(
                    format!("find link {name}"),
                    io::Error::from(io::ErrorKind::NotFound),
                )
            })
    }

    /// True if a link named `name` exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, NetlinkError> {
        match self.link_index(name) {
            Ok(_) => Ok(true),
            Err(e)
                if e.errno() == Some(libc::ENODEV)
                    || e.source.kind() == io::ErrorKind::NotFound =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub fn link_set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_flags(index, true)
    }

    pub fn link_set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_flags(index, false)
    }

    pub fn link_set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.set_link(index, vec![LinkAttribute::Mtu(mtu)], &|| {
            format!("set MTU {mtu} on ifindex {index}")
        })
    }

    pub fn link_set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.set_link(index, vec![LinkAttribute::Address(mac.to_vec())], &|| {
            format!("set MAC on ifindex {index}")
        })
    }

    pub fn link_set_txqueuelen(&mut self, index: u32, qlen: u32) -> Result<(), NetlinkError> {
        self.set_link(index, vec![LinkAttribute::TxQueueLen(qlen)], &|| {
            format!("set txqueuelen {qlen} on ifindex {index}")
        })
    }

    pub fn link_set_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.set_link(
            index,
            vec![LinkAttribute::IfName(name.to_string())],
            &|| format!("rename ifindex {index} to {name}"),
        )
    }

    /// Moves a link into the namespace `ns` (it disappears from this one).
    pub fn link_set_netns(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        let fd = ns.as_raw_fd();
        self.set_link(index, vec![LinkAttribute::NetNsFd(fd)], &|| {
            format!("move ifindex {index} to another namespace")
        })
    }

    /// Enslaves a link to a bridge.
    pub fn link_set_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError> {
        self.set_link(index, vec![LinkAttribute::Controller(master)], &|| {
            format!("attach ifindex {index} to ifindex {master}")
        })
    }

    pub fn link_set_nomaster(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_link(index, vec![LinkAttribute::Controller(0)], &|| {
            format!("detach ifindex {index}")
        })
    }

    /// Creates a veth pair `name` <-> `peer` in this namespace.
    pub fn link_add_veth(&mut self, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add veth {name} peer {peer}"),
        )
        .map(|_| ())
    }

    /// Creates a Linux bridge.
    pub fn link_add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add bridge {name}"),
        )
        .map(|_| ())
    }

    pub fn link_del(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0, &|| {
            format!("delete ifindex {index}")
        })
        .map(|_| ())
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfoRow>, NetlinkError> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &|| "list links".into(),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .map(|l| {
                let mut row = LinkInfoRow {
                    index: l.header.index,
                    name: String::new(),
                    mac: None,
                    mtu: None,
                    up: l.header.flags.contains(LinkFlags::Up),
                    txqueuelen: None,
                    master: None,
                };
                for a in l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => row.name = n,
                        LinkAttribute::Address(m) if m.len() == 6 => {
                            row.mac = Some([m[0], m[1], m[2], m[3], m[4], m[5]])
                        }
                        LinkAttribute::Mtu(m) => row.mtu = Some(m),
                        LinkAttribute::TxQueueLen(q) => row.txqueuelen = Some(q),
                        LinkAttribute::Controller(c) => row.master = Some(c),
                        _ => {}
                    }
                }
                row
            })
            .collect())
    }

    /// Adds `addr/prefix_len` to a link, with the subnet broadcast (`brd +`).
    pub fn addr_add_v4(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        if prefix_len < 31 {
            let mask = if prefix_len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix_len))
            };
            m.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                    u32::from(addr) | !mask,
                )));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add address {addr}/{prefix_len} on ifindex {index}"),
        )
        .map(|_| ())
    }

    /// Every IPv4 address: (ifindex, address, prefix length).
    pub fn addrs_v4(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(req), NLM_F_DUMP, &|| {
            "list addresses".into()
        })?;
        let mut out = Vec::new();
        for r in replies {
            if let RouteNetlinkMessage::NewAddress(a) = r {
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let addr = local.or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(ip) = addr {
                    out.push((a.header.index, ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    fn route_msg(
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        m.header.kind = RouteType::Unicast;
        if prefix_len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        }
        if let Some(gw) = gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        m
    }

    /// Adds a route to the main table (a gateway route, or on-link without one).
    pub fn route_add_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let m = Self::route_msg(dst, prefix_len, gateway, oif);
        self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| {
                format!(
                    "add route {dst}/{prefix_len}{}",
                    gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                )
            },
        )
        .map(|_| ())
    }

    pub fn route_del_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let m = Self::route_msg(dst, prefix_len, gateway, oif);
        self.request(RouteNetlinkMessage::DelRoute(m), 0, &|| {
            format!("delete route {dst}/{prefix_len}")
        })
        .map(|_| ())
    }

    /// The IPv4 routes of the main table.
    pub fn routes_v4(&mut self) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetRoute(req), NLM_F_DUMP, &|| {
            "list routes".into()
        })?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewRoute(m) = r else {
                continue;
            };
            let mut table = u32::from(m.header.table);
            let mut info = RouteInfo {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: m.header.destination_prefix_length,
                gateway: None,
                oif: None,
            };
            for a in m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => info.dst = d,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => info.gateway = Some(g),
                    RouteAttribute::Oif(o) => info.oif = Some(o),
                    RouteAttribute::Table(t) => table = t,
                    _ => {}
                }
            }
            if table == u32::from(RouteHeader::RT_TABLE_MAIN) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The IPv4 neighbour (ARP) table.
    pub fn neighbours_v4(&mut self) -> Result<Vec<NeighbourInfo>, NetlinkError> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(req), NLM_F_DUMP, &|| {
            "list neighbours".into()
        })?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewNeighbour(n) = r else {
                continue;
            };
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => ip = Some(*d),
                    NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => {
                        mac = Some([m[0], m[1], m[2], m[3], m[4], m[5]])
                    }
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.push(NeighbourInfo {
                    ifindex: n.header.ifindex,
                    ip,
                    mac,
                    state: u16::from(n.header.state),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::netns;
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = netns::delete(&self.0);
        }
    }

    fn ns() -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nltest{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        netns::create(&name).unwrap();
        Ns(name)
    }

    #[test]
    fn configure_links_addresses_routes() {
        let a = ns();
        let b = ns();
        let b_fd = netns::open(&b.0).unwrap();
        netns::run_in_named(&a.0, move || {
            let mut r = Rtnl::new().unwrap();
            let lo = r.link_index("lo").unwrap();
            r.link_set_up(lo).unwrap();
            assert!(!r.link_exists("nothere0").unwrap());
            r.link_add_veth("nlv0", "nlv1").unwrap();
            let v0 = r.link_index("nlv0").unwrap();
            r.link_set_mtu(v0, 1400).unwrap();
            r.link_set_mac(v0, [2, 0, 0, 0, 0, 1]).unwrap();
            r.link_set_txqueuelen(v0, 2000).unwrap();
            r.link_set_up(v0).unwrap();
            let row = r
                .links()
                .unwrap()
                .into_iter()
                .find(|l| l.index == v0)
                .unwrap();
            assert_eq!(row.name, "nlv0");
            assert_eq!(row.mtu, Some(1400));
            assert_eq!(row.mac, Some([2, 0, 0, 0, 0, 1]));
            assert_eq!(row.txqueuelen, Some(2000));
            assert!(row.up);

            r.addr_add_v4(v0, Ipv4Addr::new(10, 99, 0, 1), 24).unwrap();
            assert!(r
                .addrs_v4()
                .unwrap()
                .contains(&(v0, Ipv4Addr::new(10, 99, 0, 1), 24)));
            let dup = r
                .addr_add_v4(v0, Ipv4Addr::new(10, 99, 0, 1), 24)
                .unwrap_err();
            assert!(dup.to_string().contains("File exists"), "{dup}");
            assert!(dup.to_string().contains("10.99.0.1/24"), "{dup}");

            r.route_add_v4(
                Ipv4Addr::new(10, 98, 0, 0),
                16,
                Some(Ipv4Addr::new(10, 99, 0, 254)),
                Some(v0),
            )
            .unwrap();
            let routes = r.routes_v4().unwrap();
            assert!(
                routes.contains(&RouteInfo {
                    dst: Ipv4Addr::new(10, 98, 0, 0),
                    prefix_len: 16,
                    gateway: Some(Ipv4Addr::new(10, 99, 0, 254)),
                    oif: Some(v0),
                }),
                "{routes:?}"
            );
            r.route_del_v4(
                Ipv4Addr::new(10, 98, 0, 0),
                16,
                Some(Ipv4Addr::new(10, 99, 0, 254)),
                Some(v0),
            )
            .unwrap();

            r.link_add_bridge("nlbr0").unwrap();
            let br = r.link_index("nlbr0").unwrap();
            r.link_set_master(v0, br).unwrap();
            let row = r
                .links()
                .unwrap()
                .into_iter()
                .find(|l| l.index == v0)
                .unwrap();
            assert_eq!(row.master, Some(br));
            r.link_set_nomaster(v0).unwrap();

            let v1 = r.link_index("nlv1").unwrap();
            r.link_set_netns(v1, b_fd.as_fd()).unwrap();
            assert!(!r.link_exists("nlv1").unwrap());
            r.link_del(br).unwrap();
            assert!(r.neighbours_v4().is_ok());
        })
        .unwrap();
        netns::run_in_named(&b.0, || {
            let mut r = Rtnl::new().unwrap();
            assert!(r.link_exists("nlv1").unwrap(), "the veth end moved here");
        })
        .unwrap();
    }
}
