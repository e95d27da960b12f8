//! The kernel devices Docker's network is made of — veth pairs and Linux bridges —
//! created over rtnetlink. Only the harness builds them (switchyard itself needs
//! neither), so they live here, on top of the general `link_add` / `link_set` calls
//! of [`Rtnl`].

use switchyard_os::netlink::packet::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use switchyard_os::netlink::{NetlinkError, Rtnl};

/// `ip link add ... type veth|bridge` and `ip link set ... master`, for [`Rtnl`].
pub trait KernelLinks {
    /// Creates a veth pair `name` <-> `peer_name` in this namespace (both down).
    fn link_add_veth(&mut self, name: &str, peer_name: &str) -> Result<(), NetlinkError>;
    /// Creates a Linux bridge named `name` (down, no ports).
    fn link_add_bridge(&mut self, name: &str) -> Result<(), NetlinkError>;
    /// Attaches the device to a bridge, like `ip link set DEV master BR`.
    fn link_set_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError>;
    /// Detaches the device from its bridge, like `ip link set DEV nomaster`.
    fn link_set_nomaster(&mut self, index: u32) -> Result<(), NetlinkError>;
}

impl KernelLinks for Rtnl {
    fn link_add_veth(&mut self, name: &str, peer_name: &str) -> Result<(), NetlinkError> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        // The peer's name sits inside the link info, out of link_add's sight.
        let op = || format!("add veth {name} peer {peer_name}");
        switchyard_os::netlink::check_ifname(peer_name, op)?;
        self.link_add(m, op)
    }

    fn link_add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.link_add(m, || format!("add bridge {name}"))
    }

    fn link_set_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError> {
        self.link_set(index, vec![LinkAttribute::Controller(master)], || {
            format!("attach ifindex {index} to master ifindex {master}")
        })
    }

    fn link_set_nomaster(&mut self, index: u32) -> Result<(), NetlinkError> {
        // IFLA_MASTER 0 means "no master".
        self.link_set(index, vec![LinkAttribute::Controller(0)], || {
            format!("detach ifindex {index} from its master")
        })
    }
}
