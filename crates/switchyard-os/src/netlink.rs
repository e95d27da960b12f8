//! A small synchronous rtnetlink client: the link, address, route and neighbour calls
//! switchyard needs, i.e. what `ip link`, `ip addr`, `ip route` and `ip neigh` do,
//! without running `ip`.
//!
//! How to use it, and the traps:
//!
//! * A netlink socket talks to the network namespace that was current for the thread
//!   that *created* it, for its whole life. To configure a namespace, create the
//!   [`Rtnl`] inside `super::netns::run_in` (which enters the namespace on a helper
//!   thread); an `Rtnl` made on an ordinary thread configures the host.
//! * Every request carries `NLM_F_ACK` and [`Rtnl`] waits for the answer, so a
//!   failure comes back from the very call that caused it, as a [`NetlinkError`]
//!   that names the operation, the errno and, where the kernel gives one, its own
//!   explanation (extended ack). Without the ack a rejected request would be silent.
//! * A reply is not one message per `recv`: the kernel packs many messages into one
//!   datagram, and a dump (`NLM_F_DUMP`) spans many datagrams up to `NLMSG_DONE`.
//!   Datagrams are peeked first so a large one is never cut short.
//! * Replies are matched by sequence number; anything else left in the socket (e.g.
//!   from a call that failed half-way through reading) is skipped, not misread.
//! * Interface indexes are per namespace: an index from one namespace means nothing
//!   (or another device) in the next. Moving a device with
//!   [`Rtnl::link_set_netns`] may give it a new index there; look it up again by name.
//! * Interface names are at most 15 bytes (`IFNAMSIZ - 1`); the kernel refuses longer.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as Info,
    LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The message types [`Rtnl::link_add`] and [`Rtnl::link_set`] take, re-exported so
/// that callers build them with the same version of the crate.
pub use netlink_packet_route as packet;

/// Receive buffer size. Kernel dump datagrams are at most 32 KiB; a larger single
/// reply is still read whole, as the buffer grows to what a peek reports.
const RECV_BUF: usize = 64 * 1024;

/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable reason in an extended ack.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// `IFNAMSIZ`: interface names are shorter than this.
const IFNAMSIZ: usize = 16;

/// How often a dump is restarted when the kernel flags it as inconsistent
/// (`NLM_F_DUMP_INTR`: the table changed while it was being read).
const DUMP_RETRIES: usize = 5;

/// A failed rtnetlink request: what was attempted, and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused the request (an `NLMSG_ERROR` with a non-zero code).
    #[error("netlink: {op}: {source}{}", kernel_says(.message))]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
        /// The kernel's own explanation (extended ack), when it sent one.
        message: Option<String>,
    },
    /// A lookup by name found nothing.
    #[error("netlink: {op}: no such device")]
    NotFound { op: String },
    /// The request was refused before it was sent (e.g. an impossible prefix length).
    #[error("netlink: {op}: invalid argument: {reason}")]
    InvalidArgument { op: String, reason: String },
    /// The socket itself failed (open, bind, send, receive).
    #[error("netlink: {op}: {source}")]
    Socket {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be understood.
    #[error("netlink: {op}: malformed reply: {detail}")]
    Decode { op: String, detail: String },
}

fn kernel_says(message: &Option<String>) -> String {
    match message {
        Some(m) => format!(" ({m})"),
        None => String::new(),
    }
}

impl NetlinkError {
    /// The errno behind the failure, if the kernel or the socket gave one.
    /// A failed lookup by name reports `ENODEV`, as the kernel does.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } | NetlinkError::Socket { source, .. } => {
                source.raw_os_error()
            }
            NetlinkError::NotFound { .. } => Some(libc::ENODEV),
            NetlinkError::InvalidArgument { .. } => Some(libc::EINVAL),
            NetlinkError::Decode { .. } => None,
        }
    }

    /// True if the failure means "no such object" (device, address, route).
    pub fn is_not_found(&self) -> bool {
        matches!(self, NetlinkError::NotFound { .. })
            || matches!(
                self.errno(),
                Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
            )
    }

    /// True if the failure means "that already exists" (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// A network device as [`Rtnl::links`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// The hardware address, for devices that have a 6-byte one.
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`), whether or not there is carrier.
    pub up: bool,
    /// Operational (`IFF_RUNNING`): up with carrier, as the kernel's link watch last
    /// saw it. A device that is up but not yet running drops what is sent on it.
    pub running: bool,
    pub txqueuelen: Option<u32>,
    /// The bridge (or other controller) the device is attached to.
    pub master: Option<u32>,
    /// How many reasons the device has to be promiscuous (each packet socket
    /// membership, bridge port, `ip link set promisc on` counts one).
    pub promiscuity: Option<u32>,
}

/// A unicast route of the main table as [`Rtnl::routes_v4`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// An IPv4 neighbour (ARP) entry as [`Rtnl::neighbours_v4`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` bits: 0x01 incomplete, 0x02 reachable, 0x04 stale, 0x08 delay,
    /// 0x10 probe, 0x20 failed, 0x40 noarp, 0x80 permanent.
    pub state: u16,
}

/// An rtnetlink socket bound in the network namespace of the thread that created it.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// Whether a request expects one answer (then the ack) or a multipart dump.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Do,
    Create,
    Dump,
}

fn mac6(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

impl Rtnl {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn new() -> Result<Rtnl, NetlinkError> {
        let sock_err = |op: &str| {
            let op = op.to_string();
            move |source| NetlinkError::Socket { op, source }
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(sock_err("open socket"))?;
        socket.bind_auto().map_err(sock_err("bind socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(sock_err("connect socket to the kernel"))?;
        // Best effort, both since Linux 4.12 or earlier: extended acks carry the
        // kernel's reason for a refusal; capped acks leave the echoed request out of
        // error messages. Without them errors are still reported, just more tersely.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends `msg` and collects the kernel's answer: for [`Kind::Dump`] every message
    /// up to `NLMSG_DONE`, otherwise any reply messages up to the ack.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        kind: Kind,
        op: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut attempt = 0;
        loop {
            let (replies, interrupted) = self.exchange(msg.clone(), kind, &op)?;
            attempt += 1;
            if !interrupted || attempt >= DUMP_RETRIES {
                return Ok(replies);
            }
        }
    }

    /// One request/answer round. Also returns whether the kernel flagged the dump
    /// as interrupted (the table changed meanwhile; the result may be inconsistent).
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        kind: Kind,
        op: &dyn Fn() -> String,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST
            | NLM_F_ACK
            | match kind {
                Kind::Do => 0,
                Kind::Create => NLM_F_CREATE | NLM_F_EXCL,
                Kind::Dump => NLM_F_DUMP,
            };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        let sent = self
            .socket
            .send(&out, 0)
            .map_err(|source| NetlinkError::Socket { op: op(), source })?;
        if sent != out.len() {
            return Err(NetlinkError::Socket {
                op: op(),
                source: io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {sent} of {} bytes", out.len()),
                ),
            });
        }

        let mut replies = Vec::new();
        let mut interrupted = false;
        // A reply the crate cannot parse. Reading goes on to the end of the answer
        // (so the socket stays in step), then this is reported.
        let mut undecodable: Option<String> = None;
        loop {
            let len = self.recv_datagram(op)?;
            let mut offset = 0;
            while offset + NLMSG_HDRLEN <= len {
                let bytes = &self.buf[offset..len];
                let frame =
                    NetlinkBuffer::new_checked(bytes).map_err(|e| NetlinkError::Decode {
                        op: op(),
                        detail: e.to_string(),
                    })?;
                let msg_len = frame.length() as usize;
                let msg_seq = frame.sequence_number();
                let msg_flags = frame.flags();
                let msg_bytes = &bytes[..msg_len];
                offset += align4(msg_len);
                if msg_seq != seq {
                    // Left over from an earlier request; not ours to interpret.
                    continue;
                }
                interrupted |= msg_flags & NLM_F_DUMP_INTR != 0;
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg_bytes);
                let parsed = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        undecodable.get_or_insert_with(|| e.to_string());
                        continue;
                    }
                };
                match parsed.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(err) => {
                        if let Some(code) = err.code {
                            return Err(NetlinkError::Kernel {
                                op: op(),
                                source: io::Error::from_raw_os_error(code.get().saturating_abs()),
                                message: ext_ack_message(msg_flags, &err.header),
                            });
                        }
                        // The ack ends a plain request. A dump ends with DONE instead.
                        if kind != Kind::Dump {
                            return finish(replies, interrupted, undecodable, op);
                        }
                    }
                    NetlinkPayload::Done(done) => {
                        // A dump that failed part-way ends with DONE carrying -errno.
                        if done.code < 0 {
                            let message = (msg_flags & NLM_F_ACK_TLVS != 0)
                                .then(|| ext_ack_text(&done.extended_ack))
                                .flatten();
                            return Err(NetlinkError::Kernel {
                                op: op(),
                                source: io::Error::from_raw_os_error(done.code.saturating_abs()),
                                message,
                            });
                        }
                        return finish(replies, interrupted, undecodable, op);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::Decode {
                            op: op(),
                            detail: "kernel reported NLMSG_OVERRUN".into(),
                        })
                    }
                    NetlinkPayload::Noop => {}
                    // The enum is non-exhaustive; nothing else ends a reply.
                    _ => {}
                }
            }
        }
    }

    /// Receives one datagram into `self.buf` (grown if needed) and returns its length.
    fn recv_datagram(&mut self, op: &dyn Fn() -> String) -> Result<usize, NetlinkError> {
        loop {
            // MSG_TRUNC makes a netlink recv report the datagram's full length even
            // when it does not fit, and MSG_PEEK leaves it queued, so a datagram
            // larger than the buffer is read whole on the second try below.
            let peeked = self
                .socket
                .recv(&mut &mut self.buf[..], libc::MSG_PEEK | libc::MSG_TRUNC);
            let want = match peeked {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(NetlinkError::Socket { op: op(), source }),
            };
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => {
                    return Err(NetlinkError::Decode {
                        op: op(),
                        detail: "empty datagram".into(),
                    })
                }
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(NetlinkError::Socket { op: op(), source }),
            }
        }
    }

    /// Changes attributes of device `index` (`RTM_SETLINK`): the general form of the
    /// `link_set_*` calls, for attributes they do not name. `op` describes the change
    /// for error messages.
    pub fn link_set(
        &mut self,
        index: u32,
        attributes: Vec<LinkAttribute>,
        op: impl Fn() -> String,
    ) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes = attributes;
        self.request(RouteNetlinkMessage::SetLink(m), Kind::Do, op)
            .map(drop)
    }

    fn set_up_down(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        // Only the bits in change_mask are changed; the rest of the flags stay.
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        let word = if up { "up" } else { "down" };
        self.request(RouteNetlinkMessage::SetLink(m), Kind::Do, || {
            format!("set ifindex {index} {word}")
        })
        .map(drop)
    }

    /// The index of the device named `name` in this namespace.
    /// Fails with [`NetlinkError::NotFound`] if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        let op = || format!("find link {name}");
        check_ifname(name, op)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        // Statistics are of no use here; leaving them out keeps the reply small.
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = match self.request(RouteNetlinkMessage::GetLink(m), Kind::Do, op) {
            Ok(r) => r,
            Err(e) if e.errno() == Some(libc::ENODEV) => {
                return Err(NetlinkError::NotFound { op: op() })
            }
            Err(e) => return Err(e),
        };
        replies
            .into_iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NotFound { op: op() })
    }

    /// True if a device named `name` exists in this namespace.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, NetlinkError> {
        match self.link_index(name) {
            Ok(_) => Ok(true),
            Err(NetlinkError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the device administratively up (`ip link set DEV up`).
    pub fn link_set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_up_down(index, true)
    }

    /// Sets the device administratively down.
    pub fn link_set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_up_down(index, false)
    }

    pub fn link_set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.link_set(index, vec![LinkAttribute::Mtu(mtu)], || {
            format!("set MTU {mtu} on ifindex {index}")
        })
    }

    pub fn link_set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.link_set(index, vec![LinkAttribute::Address(mac.to_vec())], || {
            format!("set MAC {} on ifindex {index}", fmt_mac(mac))
        })
    }

    pub fn link_set_txqueuelen(&mut self, index: u32, qlen: u32) -> Result<(), NetlinkError> {
        self.link_set(index, vec![LinkAttribute::TxQueueLen(qlen)], || {
            format!("set txqueuelen {qlen} on ifindex {index}")
        })
    }

    /// Renames the device. The kernel refuses (EBUSY) while the device is up.
    pub fn link_set_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let op = || format!("rename ifindex {index} to {name}");
        check_ifname(name, op)?;
        self.link_set(index, vec![LinkAttribute::IfName(name.to_string())], op)
    }

    /// Moves the device into the namespace `ns` (an fd from `netns::open`). It
    /// disappears from this namespace, loses its addresses and is down over there;
    /// its index there may differ.
    pub fn link_set_netns(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        // The kernel reads the fd during this call; the borrow keeps it open.
        let fd = ns.as_raw_fd();
        self.link_set(index, vec![LinkAttribute::NetNsFd(fd)], || {
            format!("move ifindex {index} to the namespace of fd {fd}")
        })
    }

    /// Creates a device from a prepared `RTM_NEWLINK` message, failing if one of that
    /// name exists: the way to add link kinds this module does not name (a dummy, a
    /// veth pair, a bridge). Interface names in `msg` are checked first.
    pub fn link_add(
        &mut self,
        msg: LinkMessage,
        op: impl Fn() -> String,
    ) -> Result<(), NetlinkError> {
        for a in &msg.attributes {
            if let LinkAttribute::IfName(name) = a {
                check_ifname(name, &op)?;
            }
        }
        self.request(RouteNetlinkMessage::NewLink(msg), Kind::Create, op)
            .map(drop)
    }

    /// Creates VLAN device `name` over device `parent` for 802.1Q VLAN `vid` (`ip
    /// link add link PARENT name NAME type vlan id VID`): frames it sends leave the
    /// parent tagged, and the parent's frames with that tag arrive on it untagged.
    /// It takes the parent's MAC and starts down.
    pub fn link_add_vlan(&mut self, name: &str, parent: u32, vid: u16) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(parent));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            Info::Kind(InfoKind::Vlan),
            Info::Data(InfoData::Vlan(vec![InfoVlan::Id(vid)])),
        ]));
        self.link_add(m, || {
            format!("add vlan {name} id {vid} on ifindex {parent}")
        })
    }

    /// Deletes the device (for a veth, both ends).
    pub fn link_del(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), Kind::Do, || {
            format!("delete ifindex {index}")
        })
        .map(drop)
    }

    /// Every device in this namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let mut req = LinkMessage::default();
        req.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self.request(RouteNetlinkMessage::GetLink(req), Kind::Dump, || {
            "list links".to_string()
        })?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .map(|l| {
                let mut info = LinkInfo {
                    index: l.header.index,
                    name: String::new(),
                    mac: None,
                    mtu: None,
                    up: l.header.flags.contains(LinkFlags::Up),
                    running: l.header.flags.contains(LinkFlags::Running),
                    txqueuelen: None,
                    master: None,
                    promiscuity: None,
                };
                for a in l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => info.name = n,
                        LinkAttribute::Address(m) => info.mac = mac6(&m),
                        LinkAttribute::Mtu(m) => info.mtu = Some(m),
                        LinkAttribute::TxQueueLen(q) => info.txqueuelen = Some(q),
                        LinkAttribute::Promiscuity(p) => info.promiscuity = Some(p),
                        LinkAttribute::Controller(c) if c != 0 => info.master = Some(c),
                        _ => {}
                    }
                }
                info
            })
            .collect())
    }

    /// Adds `addr/prefix_len` to the device, with the subnet's broadcast address
    /// (like `ip addr add ADDR/LEN brd + dev DEV`; /31 and /32 get none, as there).
    /// The kernel also adds the subnet's route to the main table.
    pub fn addr_add_v4(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let op = || format!("add address {addr}/{prefix_len} on ifindex {index}");
        check_prefix(prefix_len, op)?;
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.index = index;
        // For an ordinary (not point-to-point) address, LOCAL and ADDRESS are equal.
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        if prefix_len <= 30 {
            let host_bits = u32::MAX >> prefix_len;
            m.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                    u32::from(addr) | host_bits,
                )));
        }
        self.request(RouteNetlinkMessage::NewAddress(m), Kind::Create, op)
            .map(drop)
    }

    /// Every IPv4 address in this namespace: (ifindex, address, prefix length).
    pub fn addrs_v4(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(req), Kind::Dump, || {
            "list IPv4 addresses".to_string()
        })?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewAddress(a) = r else {
                continue;
            };
            if a.header.family != AddressFamily::Inet {
                continue;
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on a
            // point-to-point link, and the only one present on some devices.
            let pick = |local: bool| {
                a.attributes.iter().find_map(|x| match (x, local) {
                    (AddressAttribute::Local(IpAddr::V4(ip)), true)
                    | (AddressAttribute::Address(IpAddr::V4(ip)), false) => Some(*ip),
                    _ => None,
                })
            };
            if let Some(ip) = pick(true).or_else(|| pick(false)) {
                out.push((a.header.index, ip, a.header.prefix_len));
            }
        }
        Ok(out)
    }

    fn route_message(
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
        adding: bool,
    ) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        if adding {
            m.header.protocol = RouteProtocol::Static;
            // A gateway route reaches beyond the link; a route without one is on-link.
            m.header.scope = if gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            };
            m.header.kind = RouteType::Unicast;
        } else {
            // As `ip route del`: scope NOWHERE, protocol and type unspecified mean
            // "any", so the route is found however it was added.
            m.header.scope = RouteScope::NoWhere;
        }
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

    /// Adds a route to the main table: via `gateway` (scope universe) or, without
    /// one, directly on the link `oif` (scope link). Protocol "static". `dst` must
    /// have no bits set beyond `prefix_len` (the kernel refuses otherwise).
    pub fn route_add_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let op = || route_op("add", dst, prefix_len, gateway, oif);
        check_prefix(prefix_len, op)?;
        let m = Self::route_message(dst, prefix_len, gateway, oif, true);
        self.request(RouteNetlinkMessage::NewRoute(m), Kind::Create, op)
            .map(drop)
    }

    /// Deletes a route of the main table matching these fields (a `None` matches any).
    pub fn route_del_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let op = || route_op("delete", dst, prefix_len, gateway, oif);
        check_prefix(prefix_len, op)?;
        let m = Self::route_message(dst, prefix_len, gateway, oif, false);
        self.request(RouteNetlinkMessage::DelRoute(m), Kind::Do, op)
            .map(drop)
    }

    /// The IPv4 unicast routes of the main table (what `ip route` shows), including
    /// those the kernel adds for addresses' subnets.
    pub fn routes_v4(&mut self) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetRoute(req), Kind::Dump, || {
            "list IPv4 routes".to_string()
        })?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewRoute(m) = r else {
                continue;
            };
            if m.header.address_family != AddressFamily::Inet || m.header.kind != RouteType::Unicast
            {
                continue;
            }
            // The header's table is 8 bits; RTA_TABLE holds the real (32-bit) id.
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

    /// The IPv4 neighbour (ARP) table of this namespace.
    pub fn neighbours_v4(&mut self) -> Result<Vec<NeighbourInfo>, NetlinkError> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(req), Kind::Dump, || {
            "list IPv4 neighbours".to_string()
        })?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewNeighbour(n) = r else {
                continue;
            };
            if n.header.family != AddressFamily::Inet {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => ip = Some(*d),
                    NeighbourAttribute::LinkLayerAddress(m) => mac = mac6(m),
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

/// Ends a successful exchange, unless a reply could not be decoded: then the caller
/// would otherwise get an answer with something silently missing.
fn finish(
    replies: Vec<RouteNetlinkMessage>,
    interrupted: bool,
    undecodable: Option<String>,
    op: &dyn Fn() -> String,
) -> Result<(Vec<RouteNetlinkMessage>, bool), NetlinkError> {
    match undecodable {
        Some(detail) => Err(NetlinkError::Decode { op: op(), detail }),
        None => Ok((replies, interrupted)),
    }
}

/// The kernel's reason from the extended ack of an `NLMSG_ERROR`, if it has one.
///
/// `echoed` is what follows the error code: the request's header (and, unless the
/// ack is capped, its payload), then attributes when `NLM_F_ACK_TLVS` is set.
fn ext_ack_message(flags: u16, echoed: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || echoed.len() < NLMSG_HDRLEN {
        return None;
    }
    let start = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let len = u32::from_ne_bytes(echoed[..4].try_into().ok()?) as usize;
        align4(len)
    };
    ext_ack_text(echoed.get(start..)?)
}

/// The `NLMSGERR_ATTR_MSG` text among extended-ack attributes.
fn ext_ack_text(attributes: &[u8]) -> Option<String> {
    NlasIterator::new(attributes)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            String::from_utf8_lossy(text).into_owned()
        })
        .filter(|s| !s.is_empty())
}

/// Refuses names the kernel would refuse or, worse, misread: a NUL would cut the
/// name short and could make a lookup find a different device.
pub fn check_ifname(name: &str, op: impl Fn() -> String) -> Result<(), NetlinkError> {
    let reason = if name.is_empty() {
        Some("empty interface name")
    } else if name.len() >= IFNAMSIZ {
        Some("interface names are at most 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not interface names")
    } else if name
        .bytes()
        .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        Some("interface names may not contain NUL, '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetlinkError::InvalidArgument {
            op: op(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

fn check_prefix(prefix_len: u8, op: impl Fn() -> String) -> Result<(), NetlinkError> {
    if prefix_len > 32 {
        return Err(NetlinkError::InvalidArgument {
            op: op(),
            reason: format!("IPv4 prefix length {prefix_len} is over 32"),
        });
    }
    Ok(())
}

fn route_op(
    verb: &str,
    dst: Ipv4Addr,
    prefix_len: u8,
    gateway: Option<Ipv4Addr>,
    oif: Option<u32>,
) -> String {
    let mut s = format!("{verb} route {dst}/{prefix_len}");
    if let Some(gw) = gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = oif {
        s.push_str(&format!(" dev ifindex {oif}"));
    }
    s
}

fn fmt_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_text_is_found() {
        // NLMSG_ERROR payload after the code, capped: the echoed header, then an
        // NLMSGERR_ATTR_MSG attribute "bad" (length 8: 4 header + "bad\0").
        let mut echoed = vec![0u8; NLMSG_HDRLEN];
        echoed.extend_from_slice(&8u16.to_ne_bytes());
        echoed.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        echoed.extend_from_slice(b"bad\0");
        let flags = NLM_F_ACK_TLVS | NLM_F_CAPPED;
        assert_eq!(ext_ack_message(flags, &echoed).as_deref(), Some("bad"));
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &echoed), None);
        assert_eq!(ext_ack_message(flags, &echoed[..4]), None);
    }

    #[test]
    fn broadcast_and_formatting_helpers() {
        assert_eq!(fmt_mac([2, 0, 0, 0, 0xab, 1]), "02:00:00:00:ab:01");
        assert_eq!(
            route_op("add", Ipv4Addr::new(10, 0, 0, 0), 8, None, Some(3)),
            "add route 10.0.0.0/8 dev ifindex 3"
        );
        assert_eq!(mac6(&[1, 2, 3, 4, 5, 6]), Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(mac6(&[0; 20]), None);
    }
}
