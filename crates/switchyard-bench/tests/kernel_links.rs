//! The kernel devices the harness builds Docker's network from: veth pairs, a Linux
//! bridge and its ports, one end moved to another namespace. As root, in namespaces
//! of the test's own.

use std::os::fd::AsFd;
use switchyard_bench::kernel_links::KernelLinks;
use switchyard_os::netlink::Rtnl;
use switchyard_os::netns;
use switchyard_testkit::fixtures::{require_root, unique_prefix};

/// A namespace removed on drop, also when the test panics.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

#[test]
fn veth_pairs_bridges_and_ports() {
    if !require_root() {
        return;
    }
    let p = unique_prefix();
    let (a, b) = (Ns(format!("{p}a")), Ns(format!("{p}b")));
    netns::create(&a.0).unwrap();
    netns::create(&b.0).unwrap();
    let b_fd = netns::open(&b.0).unwrap();
    netns::run_in_named(&a.0, move || {
        let mut r = Rtnl::new().unwrap();
        r.link_add_veth("v0", "v1").unwrap();
        assert!(r.link_exists("v0").unwrap() && r.link_exists("v1").unwrap());
        assert!(r.link_add_veth("v0", "v2").unwrap_err().is_exists());
        let bad = r.link_add_veth("v3", "sixteen-bytes-xx").unwrap_err();
        assert!(bad.to_string().contains("add veth v3 peer"), "{bad}");
        assert!(
            !r.link_exists("v3").unwrap(),
            "nothing made of a refused pair"
        );

        r.link_add_bridge("br0").unwrap();
        assert!(r.link_add_bridge("br0").unwrap_err().is_exists());
        let (i0, ibr) = (r.link_index("v0").unwrap(), r.link_index("br0").unwrap());
        r.link_set_master(i0, ibr).unwrap();
        let master = |r: &mut Rtnl| {
            r.links()
                .unwrap()
                .into_iter()
                .find(|l| l.index == i0)
                .unwrap()
                .master
        };
        assert_eq!(master(&mut r), Some(ibr));
        r.link_set_nomaster(i0).unwrap();
        assert_eq!(master(&mut r), None);

        let i1 = r.link_index("v1").unwrap();
        r.link_set_netns(i1, b_fd.as_fd()).unwrap();
        assert!(!r.link_exists("v1").unwrap(), "moved away");
    })
    .unwrap();
    netns::run_in_named(&b.0, || {
        let mut r = Rtnl::new().unwrap();
        assert!(r.link_exists("v1").unwrap(), "the veth end arrived here");
        // Deleting one end deletes the pair, across namespaces.
        let i1 = r.link_index("v1").unwrap();
        r.link_del(i1).unwrap();
    })
    .unwrap();
    netns::run_in_named(&a.0, || {
        assert!(!Rtnl::new().unwrap().link_exists("v0").unwrap());
    })
    .unwrap();
}
