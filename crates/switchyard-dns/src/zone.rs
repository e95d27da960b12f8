//! A network's zone: the names its endpoints answer to and the addresses behind them.
//!
//! Each network ("bridge domain") has its own zone, the way each Docker user-defined
//! network has its own view in Docker's embedded DNS: endpoint `web` on network `front`
//! resolves `db` only if `db` is attached to `front` too. A zone holds
//!
//! - the forward names: the endpoints' own names (*primary*) and their aliases, each
//!   pointing at one or more addresses (an alias shared by several endpoints gets every
//!   address, which is how Docker's `--network-alias` does round robin);
//! - the reverse names: an address of the subnet maps back to the primary name of the
//!   endpoint that owns it (`d.c.b.a.in-addr.arpa.` → `web.app.internal.`).
//!
//! Names are kept in lowercase: DNS compares names case-insensitively (RFC 4343), and
//! so does every lookup here.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use simple_dns::Name;

/// One network's view: its names and addresses. Names are matched case-insensitively.
#[derive(Debug, Clone)]
pub struct Zone {
    network: String,
    gateway: Ipv4Addr,
    subnet: Ipv4Addr,
    prefix_len: u8,
    domain: Option<String>,
    /// Lowercase name → its addresses, each with whether the name is that endpoint's
    /// own (primary) name; sorted by address.
    names: BTreeMap<String, Vec<(Ipv4Addr, bool)>>,
    /// Address of the subnet → the primary name PTR answers with (the first one added).
    reverse: HashMap<Ipv4Addr, String>,
}

/// Where a question's name falls in a zone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'z> {
    /// A name of the zone, with its addresses.
    Name(&'z [(Ipv4Addr, bool)]),
    /// The search domain itself: it exists (it has an SOA) but holds no address.
    Apex,
    /// `d.c.b.a.in-addr.arpa` for an address of the subnet, with the name it maps to.
    Reverse(Option<&'z str>),
    /// Inside the zone (a single label, or under the search domain) but unknown.
    Unknown,
    /// Not this zone's business: the upstream servers answer it.
    Outside,
}

impl Zone {
    /// `network`: the network's name (for show); `gateway`: the server address;
    /// `subnet`/`prefix_len`: the network's subnet (its reverse zone; host bits are
    /// masked off, a length over 32 is 32); `domain`: optional search domain like
    /// "app.internal" (lowercase, no trailing dot; one that is not a valid DNS name is
    /// taken as none).
    pub fn new(
        network: &str,
        gateway: Ipv4Addr,
        subnet: Ipv4Addr,
        prefix_len: u8,
        domain: Option<&str>,
    ) -> Zone {
        let prefix_len = prefix_len.min(32);
        let domain = domain
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| valid_name(d));
        Zone {
            network: network.to_string(),
            gateway,
            subnet: Ipv4Addr::from(u32::from(subnet) & mask(prefix_len)),
            prefix_len,
            domain,
            names: BTreeMap::new(),
            reverse: HashMap::new(),
        }
    }

    /// Adds `name -> ip`. `primary`: the endpoint's own name (what PTR answers with);
    /// false for an alias. Names that are not valid DNS names are ignored (returns false):
    /// labels of letters, digits, '-' and '_', 1 to 63 bytes, 253 in all. An address
    /// outside the subnet gets its A record but no PTR (another zone owns its reverse
    /// name); of several primary names of one address, PTR answers with the first.
    pub fn add(&mut self, name: &str, ip: Ipv4Addr, primary: bool) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if !valid_name(&name) {
            return false;
        }
        let entries = self.names.entry(name.clone()).or_default();
        match entries.binary_search_by_key(&ip, |&(a, _)| a) {
            Ok(i) => entries[i].1 |= primary,
            Err(i) => entries.insert(i, (ip, primary)),
        }
        if primary && self.contains(ip) {
            self.reverse.entry(ip).or_insert(name);
        }
        true
    }

    /// Every (name, address, primary) for `show dns`, sorted by name then address.
    pub fn records(&self) -> Vec<(String, Ipv4Addr, bool)> {
        self.names
            .iter()
            .flat_map(|(name, addrs)| addrs.iter().map(|&(ip, p)| (name.clone(), ip, p)))
            .collect()
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The address the server answers on (the network's gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The search domain, if the network has one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The subnet (masked) and its prefix length.
    pub fn subnet(&self) -> (Ipv4Addr, u8) {
        (self.subnet, self.prefix_len)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.subnet)
    }

    /// The name PTR answers with for `ip`: fully qualified, with a trailing dot.
    pub fn ptr_name(&self, ip: Ipv4Addr) -> Option<String> {
        let name = self.reverse.get(&ip)?;
        Some(self.qualify(name))
    }

    pub(crate) fn qualify(&self, name: &str) -> String {
        match &self.domain {
            Some(d) => format!("{name}.{d}."),
            None => format!("{name}."),
        }
    }

    /// Whether `qname` is the search domain or under it, compared label by label
    /// (whatever bytes the labels before it hold): where a negative answer carries the
    /// domain's SOA, and where a name that cannot be ours is NXDOMAIN, not forwarded.
    pub(crate) fn in_domain(&self, qname: &Name<'_>) -> bool {
        let Some(domain) = &self.domain else {
            return false;
        };
        let labels: Vec<&[u8]> = qname.as_bytes().collect();
        let apex: Vec<&[u8]> = domain.split('.').map(str::as_bytes).collect();
        labels.len() >= apex.len()
            && labels[labels.len() - apex.len()..]
                .iter()
                .zip(&apex)
                .all(|(l, a)| l.eq_ignore_ascii_case(a))
    }

    /// Where `name` (lowercase, dotted, see [`text_name`]) falls in this zone.
    pub(crate) fn lookup(&self, name: &str) -> Lookup<'_> {
        if let Some(addrs) = self.names.get(name) {
            return Lookup::Name(addrs);
        }
        if let Some(d) = &self.domain {
            if name == d {
                return Lookup::Apex;
            }
            if let Some(host) = name
                .strip_suffix(d.as_str())
                .and_then(|h| h.strip_suffix('.'))
            {
                return match self.names.get(host) {
                    Some(addrs) => Lookup::Name(addrs),
                    None => Lookup::Unknown,
                };
            }
        }
        if let Some(ip) = reverse_address(name) {
            if self.contains(ip) {
                return Lookup::Reverse(self.reverse.get(&ip).map(String::as_str));
            }
            return Lookup::Outside;
        }
        if !name.contains('.') {
            return Lookup::Unknown;
        }
        Lookup::Outside
    }
}

/// A question's name as the zone spells names: lowercase labels joined by dots. None
/// when a label could not be one of ours (`add` refuses such names): a label holding a
/// dot or other bytes outside letters, digits, '-' and '_' — joining those with dots
/// would make `a.b` (two labels) and `a\.b` (one) look alike — or the root name.
pub(crate) fn text_name(qname: &Name<'_>) -> Option<String> {
    let mut name = String::new();
    for label in qname.as_bytes() {
        if !valid_label(label) {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        // valid_label admits ASCII only, so this is lossless.
        name.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
    }
    (!name.is_empty()).then_some(name)
}

/// Every network's zone, keyed by the network's bridge-domain number.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    zones: BTreeMap<u16, Zone>,
}

impl Zones {
    /// Sets (or replaces) the zone of bridge domain `domain`.
    pub fn insert(&mut self, domain: u16, zone: Zone) {
        self.zones.insert(domain, zone);
    }

    /// The zone of bridge domain `domain`, if it serves DNS.
    pub fn get(&self, domain: u16) -> Option<&Zone> {
        self.zones.get(&domain)
    }

    /// Every zone, by bridge-domain number.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Zone)> {
        self.zones.iter().map(|(&d, z)| (d, z))
    }
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

/// A label as endpoint names use them: letters, digits, '-' and '_' (Docker allows '_'
/// in container names and serves them), 1 to 63 bytes.
fn valid_label(label: &[u8]) -> bool {
    (1..=63).contains(&label.len())
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// A dotted name the zone may hold: valid labels, and short enough to go on the wire
/// (the crate checks the 255-byte limit).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|l| valid_label(l.as_bytes()))
        && Name::new(name).is_ok()
}

/// `d.c.b.a.in-addr.arpa` → a.b.c.d (RFC 1035 §3.5); None for anything else.
fn reverse_address(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts = octets.split('.');
    let mut bytes = [0u8; 4];
    for b in bytes.iter_mut().rev() {
        let p = parts.next()?;
        // "01" is not the octet 1: only canonical decimal forms name an address.
        if p.len() > 1 && p.starts_with('0') {
            return None;
        }
        *b = p.parse().ok()?;
    }
    match parts.next() {
        None => Some(Ipv4Addr::from(bytes)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_parse_only_canonical_full_addresses() {
        assert_eq!(
            reverse_address("2.0.1.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 1, 0, 2))
        );
        assert_eq!(reverse_address("0.1.10.in-addr.arpa"), None);
        assert_eq!(reverse_address("02.0.1.10.in-addr.arpa"), None);
        assert_eq!(reverse_address("1.2.0.1.10.in-addr.arpa"), None);
        assert_eq!(reverse_address("256.0.1.10.in-addr.arpa"), None);
    }

    #[test]
    fn invalid_names_are_refused_and_records_are_sorted() {
        let mut z = Zone::new(
            "app",
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 9),
            24,
            None,
        );
        assert_eq!(z.subnet(), (Ipv4Addr::new(10, 1, 0, 0), 24));
        assert!(!z.add("", Ipv4Addr::new(10, 1, 0, 2), true));
        assert!(!z.add("a..b", Ipv4Addr::new(10, 1, 0, 2), true));
        assert!(!z.add("sp ace", Ipv4Addr::new(10, 1, 0, 2), true));
        assert!(!z.add(&"x".repeat(64), Ipv4Addr::new(10, 1, 0, 2), true));
        assert!(z.add("Web", Ipv4Addr::new(10, 1, 0, 3), true));
        assert!(z.add("web", Ipv4Addr::new(10, 1, 0, 2), false));
        assert!(z.add("db_1.", Ipv4Addr::new(10, 1, 0, 4), true));
        assert_eq!(
            z.records(),
            vec![
                ("db_1".to_string(), Ipv4Addr::new(10, 1, 0, 4), true),
                ("web".to_string(), Ipv4Addr::new(10, 1, 0, 2), false),
                ("web".to_string(), Ipv4Addr::new(10, 1, 0, 3), true),
            ]
        );
        assert_eq!(
            z.ptr_name(Ipv4Addr::new(10, 1, 0, 3)).as_deref(),
            Some("web.")
        );
        assert_eq!(
            z.ptr_name(Ipv4Addr::new(10, 1, 0, 2)),
            None,
            "an alias has no PTR"
        );
    }
}
