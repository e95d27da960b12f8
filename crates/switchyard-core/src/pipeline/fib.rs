//! The forwarding information base (FIB): longest-prefix match from a destination
//! address to a route.
//!
//! Structure: a multibit trie with a stride of 8 bits, like the 8-8-8-8 variant of
//! VPP's `ip4_mtrie`. Each node is an array of 256 slots indexed by one byte of the
//! address; a lookup reads at most four slots, one per byte, whatever the number of
//! routes. A prefix whose length is not a multiple of 8 is *expanded* into every
//! slot it covers at its level (a /20 covers 16 slots of the third-level node);
//! where a shorter and a longer prefix cover the same slot, the longer one is kept
//! there, and a prefix ending at a deeper level always beats one at a shallower level,
//! so the last route seen on the way down is the longest match.
//!
//! Routes change only when the topology does, so the trie is built once from the full
//! route list ([`Fib::new`]) instead of supporting incremental deletes.

use super::DomainId;
use crate::wire::Ipv4Cidr;
use std::net::Ipv4Addr;

/// Where a route sends packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// The destination is on this network: resolve the destination itself.
    Connected { domain: DomainId },
    /// Through a router on this network: resolve the gateway.
    Via { domain: DomainId, gateway: Ipv4Addr },
}

impl NextHop {
    pub fn domain(&self) -> DomainId {
        match *self {
            NextHop::Connected { domain } | NextHop::Via { domain, .. } => domain,
        }
    }

    /// The address whose MAC the packet is sent to.
    pub fn neighbor(&self, dst: Ipv4Addr) -> Ipv4Addr {
        match *self {
            NextHop::Connected { .. } => dst,
            NextHop::Via { gateway, .. } => gateway,
        }
    }
}

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOrigin {
    /// A network's own subnet.
    Connected,
    /// A `[[route]]` in the config.
    Static,
}

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Cidr,
    pub next_hop: NextHop,
    pub origin: RouteOrigin,
}

/// A slot: the best route ending in it (index + 1, 0 for none) and that route's prefix
/// length, and the child node continuing below it (index + 1, 0 for none).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    route: u32,
    len: u8,
    child: u32,
}

struct Node {
    slots: Box<[Slot; 256]>,
}

impl Node {
    fn new() -> Node {
        Node {
            slots: Box::new([Slot::default(); 256]),
        }
    }
}

/// The FIB.
pub struct Fib {
    routes: Vec<Route>,
    nodes: Vec<Node>,
}

impl Fib {
    /// Builds the trie. With two routes for the same prefix, the first one wins.
    pub fn new(routes: Vec<Route>) -> Fib {
        let mut fib = Fib {
            routes: Vec::with_capacity(routes.len()),
            nodes: vec![Node::new()],
        };
        for r in routes {
            let r = Route {
                prefix: r.prefix.trunc(),
                ..r
            };
            if fib.routes.iter().any(|x| x.prefix == r.prefix) {
                continue;
            }
            fib.routes.push(r);
            let idx = fib.routes.len() as u32;
            fib.insert(r.prefix, idx);
        }
        fib
    }

    fn insert(&mut self, prefix: Ipv4Cidr, route: u32) {
        let len = prefix.prefix_len();
        let bytes = prefix.addr().octets();
        // Level at which the prefix ends: /0../8 at 0, /9../16 at 1, ...
        let level = if len == 0 {
            0
        } else {
            usize::from((len - 1) / 8)
        };
        let mut node = 0usize;
        for &b in &bytes[..level] {
            let child = self.nodes[node].slots[usize::from(b)].child;
            node = if child == 0 {
                self.nodes.push(Node::new());
                let new = self.nodes.len() - 1;
                self.nodes[node].slots[usize::from(b)].child = new as u32 + 1;
                new
            } else {
                child as usize - 1
            };
        }
        // Expand over the slots the remaining bits leave free.
        let fixed = len - 8 * level as u8; // 0..=8 bits of this byte are fixed
        let free = 8 - fixed;
        let first = usize::from(bytes[level]) & !((1usize << free) - 1);
        for s in first..first + (1 << free) {
            let slot = &mut self.nodes[node].slots[s];
            if slot.route == 0 || slot.len <= len {
                slot.route = route;
                slot.len = len;
            }
        }
    }

    /// The longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        let bytes = dst.octets();
        let mut best = 0u32;
        let mut node = &self.nodes[0];
        for &b in &bytes {
            let slot = node.slots[usize::from(b)];
            if slot.route != 0 {
                best = slot.route;
            }
            if slot.child == 0 {
                break;
            }
            node = &self.nodes[slot.child as usize - 1];
        }
        (best != 0).then(|| &self.routes[best as usize - 1])
    }

    /// Every route, in the order given.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Trie nodes in use (each 256 slots), for `show routes`.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(p: &str, d: u16) -> Route {
        Route {
            prefix: p.parse().unwrap(),
            next_hop: NextHop::Connected {
                domain: DomainId(d),
            },
            origin: RouteOrigin::Connected,
        }
    }

    fn dom(fib: &Fib, a: &str) -> Option<u16> {
        fib.lookup(a.parse().unwrap())
            .map(|r| r.next_hop.domain().0)
    }

    #[test]
    fn longest_prefix_wins() {
        let fib = Fib::new(vec![
            route("0.0.0.0/0", 0),
            route("10.0.0.0/8", 1),
            route("10.1.0.0/16", 2),
            route("10.1.2.0/24", 3),
            route("10.1.2.128/25", 4),
            route("10.1.2.200/32", 5),
            route("192.168.0.0/20", 6),
        ]);
        assert_eq!(dom(&fib, "8.8.8.8"), Some(0));
        assert_eq!(dom(&fib, "10.200.0.1"), Some(1));
        assert_eq!(dom(&fib, "10.1.9.9"), Some(2));
        assert_eq!(dom(&fib, "10.1.2.3"), Some(3));
        assert_eq!(dom(&fib, "10.1.2.130"), Some(4));
        assert_eq!(dom(&fib, "10.1.2.200"), Some(5));
        assert_eq!(dom(&fib, "10.1.2.201"), Some(4));
        assert_eq!(dom(&fib, "192.168.15.255"), Some(6));
        assert_eq!(dom(&fib, "192.168.16.0"), Some(0));
    }

    #[test]
    fn no_default_no_match() {
        let fib = Fib::new(vec![route("172.17.0.0/16", 0)]);
        assert_eq!(dom(&fib, "172.17.255.255"), Some(0));
        assert_eq!(dom(&fib, "172.18.0.1"), None);
        assert!(Fib::new(vec![]).lookup(Ipv4Addr::new(1, 2, 3, 4)).is_none());
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a = Fib::new(vec![route("10.1.2.0/24", 3), route("10.0.0.0/8", 1)]);
        let b = Fib::new(vec![route("10.0.0.0/8", 1), route("10.1.2.0/24", 3)]);
        for ip in ["10.1.2.9", "10.1.3.9", "10.9.9.9"] {
            assert_eq!(dom(&a, ip), dom(&b, ip), "{ip}");
        }
    }

    proptest! {
        /// The trie agrees with a brute-force longest match over the list.
        #[test]
        fn agrees_with_linear_scan(prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32), 1..40),
                                   probes in proptest::collection::vec(any::<u32>(), 1..64)) {
            let routes: Vec<Route> = prefixes.iter().enumerate().map(|(i, &(a, l))| Route {
                prefix: Ipv4Cidr::new(Ipv4Addr::from(a), l).unwrap(),
                next_hop: NextHop::Connected { domain: DomainId(i as u16) },
                origin: RouteOrigin::Static,
            }).collect();
            let fib = Fib::new(routes.clone());
            // Probe random addresses and each prefix's own first and last address.
            let mut all: Vec<u32> = probes.clone();
            for r in &routes {
                all.push(u32::from(r.prefix.network()));
                all.push(u32::from(r.prefix.broadcast()));
            }
            for a in all {
                let ip = Ipv4Addr::from(a);
                let mut best: Option<&Route> = None;
                for r in fib.routes() {
                    if r.prefix.contains(ip) && best.is_none_or(|b| r.prefix.prefix_len() > b.prefix.prefix_len()) {
                        best = Some(r);
                    }
                }
                prop_assert_eq!(fib.lookup(ip).map(|r| r.prefix), best.map(|r| r.prefix), "{}", ip);
            }
        }
    }
}
