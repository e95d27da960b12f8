//! The rtnetlink client against the kernel: every call made in a namespace of the
//! test's own (as root), results read back the way `ip` would show them.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use switchyard_os::netlink::packet::link::{
    InfoKind, LinkAttribute, LinkInfo as Kind, LinkMessage,
};
use switchyard_os::netlink::{LinkInfo, NetlinkError, RouteInfo, Rtnl};
use switchyard_os::netns;
use switchyard_os::port::{tap::TapPort, Offloads};

mod common;
use common::{require_root, TestNs};

/// Device names unique to this process (at most 15 bytes).
fn ifname(tag: &str) -> String {
    let name = format!("nl{}{tag}", std::process::id() % 100_000);
    assert!(name.len() < 16, "{name}");
    name
}

fn link(r: &mut Rtnl, index: u32) -> LinkInfo {
    r.links()
        .unwrap()
        .into_iter()
        .find(|l| l.index == index)
        .unwrap_or_else(|| panic!("ifindex {index} not listed"))
}

/// `ip link add NAME type bridge`, through the general `link_add` (a bridge needs
/// no other device and no module beyond what the harness uses anyway).
fn add_bridge(r: &mut Rtnl, name: &str) -> Result<(), NetlinkError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![Kind::Kind(InfoKind::Bridge)]));
    r.link_add(m, || format!("add bridge {name}"))
}

#[test]
fn links_can_be_made_changed_listed_and_moved() {
    if !require_root() {
        return;
    }
    let a = TestNs::create("nl");
    let b = TestNs::create("nl");
    let b_fd = netns::open(&b.0).unwrap();
    let (d, t0) = (ifname("d0"), ifname("t0"));
    let t = t0.clone();
    // A TAP can move between namespaces (a bridge cannot); it lives while its fd does.
    let tap = netns::run_in_named(&a.0, move || {
        let mut r = Rtnl::new().unwrap();
        let lo = r.link_index("lo").unwrap();
        r.link_set_up(lo).unwrap();
        assert!(link(&mut r, lo).up);

        assert!(!r.link_exists(&d).unwrap());
        add_bridge(&mut r, &d).unwrap();
        assert!(r.link_exists(&d).unwrap());
        let dup = add_bridge(&mut r, &d).unwrap_err();
        assert!(dup.is_exists(), "{dup}");
        let i0 = r.link_index(&d).unwrap();
        r.link_set_mtu(i0, 1400).unwrap();
        r.link_set_mac(i0, [2, 0, 0, 0, 0, 1]).unwrap();
        r.link_set_txqueuelen(i0, 2000).unwrap();
        assert!(!link(&mut r, i0).up);
        r.link_set_up(i0).unwrap();
        let l = link(&mut r, i0);
        assert_eq!(l.name, d);
        assert_eq!(l.mtu, Some(1400));
        assert_eq!(l.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(l.txqueuelen, Some(2000));
        assert!(l.up);
        assert_eq!(l.master, None);

        // Renaming needs the device down.
        r.link_set_down(i0).unwrap();
        assert!(!link(&mut r, i0).up);
        let renamed = ifname("rn");
        r.link_set_name(i0, &renamed).unwrap();
        assert_eq!(r.link_index(&renamed).unwrap(), i0);
        assert!(!r.link_exists(&d).unwrap());
        r.link_set_name(i0, &d).unwrap();
        r.link_del(i0).unwrap();
        assert!(r.link_del(i0).unwrap_err().is_not_found());

        let tap = TapPort::create(&t, 1, Offloads::NONE, 1500).unwrap();
        let it = r.link_index(&t).unwrap();
        r.link_set_netns(it, b_fd.as_fd()).unwrap();
        assert!(!r.link_exists(&t).unwrap(), "moved away");
        tap
    })
    .unwrap();

    netns::run_in_named(&b.0, move || {
        let mut r = Rtnl::new().unwrap();
        assert!(r.link_exists(&t0).unwrap(), "the device arrived here");
        let i = r.link_index(&t0).unwrap();
        r.link_del(i).unwrap();
        assert!(!r.link_exists(&t0).unwrap());
    })
    .unwrap();
    drop(tap);
}

#[test]
fn addresses_and_routes() {
    if !require_root() {
        return;
    }
    let a = TestNs::create("nl");
    let d = ifname("ar");
    netns::run_in_named(&a.0, move || {
        let mut r = Rtnl::new().unwrap();
        add_bridge(&mut r, &d).unwrap();
        let i0 = r.link_index(&d).unwrap();
        r.link_set_up(i0).unwrap();

        let ip = Ipv4Addr::new(10, 99, 0, 1);
        r.addr_add_v4(i0, ip, 24).unwrap();
        assert!(r.addrs_v4().unwrap().contains(&(i0, ip, 24)));
        let dup = r.addr_add_v4(i0, ip, 24).unwrap_err();
        let msg = dup.to_string();
        assert!(msg.contains("File exists"), "{msg}");
        assert!(
            msg.starts_with(&format!(
                "netlink: add address 10.99.0.1/24 on ifindex {i0}: "
            )),
            "{msg}"
        );
        assert!(dup.is_exists());
        assert_eq!(dup.errno(), Some(libc::EEXIST));

        // The subnet route the kernel added for the address, then our own.
        let gw = Ipv4Addr::new(10, 99, 0, 254);
        let dst = Ipv4Addr::new(10, 98, 0, 0);
        r.route_add_v4(dst, 16, Some(gw), Some(i0)).unwrap();
        let routes = r.routes_v4().unwrap();
        let ours = RouteInfo {
            dst,
            prefix_len: 16,
            gateway: Some(gw),
            oif: Some(i0),
        };
        assert!(routes.contains(&ours), "{routes:?}");
        assert!(
            routes.contains(&RouteInfo {
                dst: Ipv4Addr::new(10, 99, 0, 0),
                prefix_len: 24,
                gateway: None,
                oif: Some(i0),
            }),
            "{routes:?}"
        );
        let again = r.route_add_v4(dst, 16, Some(gw), Some(i0)).unwrap_err();
        assert!(again.is_exists(), "{again}");
        // On-link and default routes.
        let onlink = Ipv4Addr::new(10, 97, 0, 0);
        r.route_add_v4(onlink, 24, None, Some(i0)).unwrap();
        r.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(i0))
            .unwrap();
        let routes = r.routes_v4().unwrap();
        assert!(routes
            .iter()
            .any(|x| x.dst == onlink && x.gateway.is_none()));
        assert!(routes
            .iter()
            .any(|x| x.prefix_len == 0 && x.gateway == Some(gw)));
        r.route_del_v4(dst, 16, Some(gw), Some(i0)).unwrap();
        r.route_del_v4(onlink, 24, None, None).unwrap();
        r.route_del_v4(Ipv4Addr::UNSPECIFIED, 0, None, None)
            .unwrap();
        let routes = r.routes_v4().unwrap();
        assert!(!routes.contains(&ours), "{routes:?}");
        assert!(!routes.iter().any(|x| x.dst == onlink || x.prefix_len == 0));
        let gone = r.route_del_v4(dst, 16, Some(gw), Some(i0)).unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        // Host bits beyond the prefix: the kernel refuses, with its reason.
        let bad = r
            .route_add_v4(Ipv4Addr::new(10, 96, 0, 1), 16, Some(gw), None)
            .unwrap_err();
        assert_eq!(bad.errno(), Some(libc::EINVAL), "{bad}");
        assert!(bad.to_string().contains("route 10.96.0.1/16 via"), "{bad}");
    })
    .unwrap();
}

#[test]
fn the_socket_stays_in_the_namespace_it_was_made_in() {
    if !require_root() {
        return;
    }
    let a = TestNs::create("nl");
    let name = ifname("sk");
    // Made inside `a`, then used from this (host) thread: still talks to `a`.
    let mut r = netns::run_in_named(&a.0, || Rtnl::new().unwrap()).unwrap();
    add_bridge(&mut r, &name).unwrap();
    let inside = netns::run_in_named(&a.0, {
        let name = name.clone();
        move || Rtnl::new().unwrap().link_exists(&name).unwrap()
    })
    .unwrap();
    assert!(inside);
    let index = r.link_index(&name).unwrap();
    r.link_del(index).unwrap();
}

#[test]
fn dumps_spanning_many_datagrams_are_read_whole() {
    if !require_root() {
        return;
    }
    // The kernel sends a dump in datagrams of at most 32 KiB: 80 devices (about
    // 1 KiB per link) and 2000 routes (about 60 bytes each) need several.
    let a = TestNs::create("nl");
    netns::run_in_named(&a.0, || {
        let mut r = Rtnl::new().unwrap();
        for i in 0..80 {
            add_bridge(&mut r, &format!("md{i}")).unwrap();
        }
        let links = r.links().unwrap();
        assert_eq!(links.len(), 81, "lo and 80 bridges");
        let lo = r.link_index("lo").unwrap();
        r.link_set_up(lo).unwrap();
        let dev = r.link_index("md0").unwrap();
        r.link_set_up(dev).unwrap();
        r.addr_add_v4(dev, Ipv4Addr::new(10, 94, 0, 1), 24).unwrap();
        for i in 0..2000u32 {
            let dst = Ipv4Addr::from(0x0a80_0000 | (i << 8));
            r.route_add_v4(dst, 24, Some(Ipv4Addr::new(10, 94, 0, 2)), None)
                .unwrap();
        }
        let routes = r.routes_v4().unwrap();
        let via = routes
            .iter()
            .filter(|x| x.gateway == Some(Ipv4Addr::new(10, 94, 0, 2)))
            .count();
        assert_eq!(via, 2000);
        assert!(routes
            .iter()
            .all(|x| x.gateway.is_none() || x.oif == Some(dev)));
    })
    .unwrap();
}

#[test]
fn neighbours_are_listed() {
    if !require_root() {
        return;
    }
    let a = TestNs::create("nl");
    let t0 = ifname("n0");
    netns::run_in_named(&a.0, move || {
        // A TAP nobody reads: ARP requests go nowhere, and nothing leaves the namespace.
        let tap = TapPort::create(&t0, 1, Offloads::NONE, 1500).unwrap();
        let mut r = Rtnl::new().unwrap();
        let i0 = r.link_index(&t0).unwrap();
        r.link_set_up(i0).unwrap();
        r.addr_add_v4(i0, Ipv4Addr::new(10, 95, 0, 1), 24).unwrap();
        // An address whose neighbour never answers gets an entry once traffic is
        // attempted.
        let sock = std::net::UdpSocket::bind("10.95.0.1:0").unwrap();
        let _ = sock.send_to(b"x", "10.95.0.2:9");
        let neigh = r.neighbours_v4().unwrap();
        let entry = neigh
            .iter()
            .find(|n| n.ip == Ipv4Addr::new(10, 95, 0, 2))
            .unwrap_or_else(|| panic!("no entry in {neigh:?}"));
        assert_eq!(entry.ifindex, i0);
        assert_ne!(entry.state, 0);
        drop(tap);
    })
    .unwrap();
}

#[test]
fn errors_name_the_operation() {
    if !require_root() {
        return;
    }
    let a = TestNs::create("nl");
    netns::run_in_named(&a.0, || {
        let mut r = Rtnl::new().unwrap();
        let missing = ifname("zz");
        let e = r.link_index(&missing).unwrap_err();
        assert!(matches!(e, NetlinkError::NotFound { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("netlink: find link {missing}: no such device")
        );
        assert!(!r.link_exists(&missing).unwrap());

        let e = r.link_set_mtu(999_999, 1400).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
        assert!(e
            .to_string()
            .starts_with("netlink: set MTU 1400 on ifindex 999999: "));

        let e = r.link_index("a\0b").unwrap_err();
        assert!(matches!(e, NetlinkError::InvalidArgument { .. }), "{e}");
        let e = add_bridge(&mut r, "sixteen-bytes-xx").unwrap_err();
        assert!(matches!(e, NetlinkError::InvalidArgument { .. }), "{e}");
        let e = r.addr_add_v4(1, Ipv4Addr::LOCALHOST, 33).unwrap_err();
        assert!(matches!(e, NetlinkError::InvalidArgument { .. }), "{e}");

        // The socket is still in step after all those failures.
        assert!(r.link_exists("lo").unwrap());
    })
    .unwrap();
}

#[test]
fn a_tap_is_made_new_never_joined_to_one_there_already() {
    if !require_root() {
        return;
    }
    let a = TestNs::create("nl");
    let (ours, theirs) = (ifname("x0"), ifname("x1"));
    let ns = a.0.clone();
    netns::run_in_named(&a.0, move || {
        let tap = TapPort::create(&ours, 2, Offloads::NONE, 1500).unwrap();
        let again = TapPort::create(&ours, 2, Offloads::NONE, 1500)
            .err()
            .expect("a second TAP of the same name");
        assert!(again.to_string().contains("busy"), "{again}");
        assert_eq!(tap.into_queues().len(), 2, "the first keeps its queues");

        // A persistent TAP someone left, with the flags switchyard asks for: the
        // kernel would take more queues for it, were the first not exclusive.
        let made = std::process::Command::new("ip")
            .args(["tuntap", "add", "dev", &theirs, "mode", "tap"])
            .args(["multi_queue", "vnet_hdr"])
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?} in {ns}");
        let refused = TapPort::create(&theirs, 2, Offloads::NONE, 1500)
            .err()
            .expect("a TAP that exists");
        assert!(refused.to_string().contains("busy"), "{refused}");
    })
    .unwrap();
}
