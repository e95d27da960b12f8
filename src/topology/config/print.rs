//! A running [`Topology`] back as a config file: what `switchyard show config` prints.
//!
//! [`Topology::to_config`] undoes [`super::validate`]: names in place of indexes,
//! every address that was assigned written out, every default written as the value
//! it resolved to. The file says everything explicitly, so that parsing it again
//! builds the same topology whatever the defaults of the binary that reads it, and
//! `[switch] workers` holds the number of workers the instance runs (never 0, "one
//! per core", which would mean something else on another machine).

use super::{
    AllowSection, AttachSection, ConfigFile, EndpointSection, NetworkSection, ParentMode,
    RouteSection, SwitchSection, Topology, TrunkEntry, TrunkSection,
};
use switchyard_core::pipeline::DomainMode;

impl Topology {
    /// The config file that builds this topology, every key written out.
    pub fn to_config(&self) -> ConfigFile {
        let n = &self.neighbor;
        let t = &self.timeouts;
        let switch = SwitchSection {
            prefix: self.prefix.clone(),
            fdb_max: self.fdb_max,
            fdb_aging_secs: self.fdb_aging_secs,
            conntrack_max: self.conntrack_max,
            // Validation took these in whole seconds and multiplied them.
            arp_reachable_secs: (n.reachable_ms / 1000) as u32,
            arp_stale_secs: (n.stale_ms / 1000) as u32,
            arp_retries: n.probes,
            arp_retry_ms: n.retrans_ms as u32,
            arp_queue: n.queue_len,
            neighbor_max: n.max,
            nat_port_range: format!("{}-{}", self.nat_port_range.0, self.nat_port_range.1),
            // Index 2 is ESTABLISHED, the one TCP timeout a file sets.
            conntrack_tcp_established_secs: Some(t.tcp[2]),
            conntrack_udp_secs: Some(t.udp_unreplied),
            conntrack_udp_stream_secs: Some(t.udp_assured),
            conntrack_icmp_secs: Some(t.icmp),
            workers: self.workers,
            busy_poll_us: self.busy_poll_us,
            steering: self.steering.name().to_string(),
            adaptive_poll: self.adaptive_poll,
            io: self.io.as_str().into(),
            // Each network states its own, so this default decides nothing.
            offloads: true,
            dns_upstream: self
                .dns_upstream
                .iter()
                .map(|a| match a.port() {
                    super::dns::DNS_PORT => a.ip().to_string(),
                    _ => a.to_string(),
                })
                .collect(),
            dns_upstream_netns: self
                .dns_upstream_netns
                .as_ref()
                .map(|p| p.display().to_string()),
        };
        let networks = self
            .networks
            .iter()
            .map(|net| NetworkSection {
                name: net.name.clone(),
                subnet: net.subnet.to_string(),
                // The gateway's MAC is always derived from its address.
                gateway: net.gateway.map(|g| g.ip),
                // Not yet read from the underlay: left for the next start to read.
                mtu: (!net.mtu_from_underlay).then_some(u32::from(net.mtu)),
                masquerade: net.masquerade,
                external: net.external,
                mode: Some(
                    match (net.mode, net.parent.as_ref().map(|p| p.mode)) {
                        (DomainMode::Bridge, Some(ParentMode::IpvlanL2)) => "ipvlan-l2",
                        (DomainMode::Bridge, _) => "bridge",
                        (DomainMode::L3, _) => "l3",
                    }
                    .to_string(),
                ),
                proxy_arp: net.proxy_arp,
                offloads: Some(net.offloads),
                conntrack_max: net.guard.conntrack_max,
                rp_filter: Some(net.guard.rp_filter),
                port_security: net.guard.port_security,
                fdb_max: net.guard.fdb_max,
                neighbor_max: net.guard.neighbor_max,
                held_max: net.guard.held_max,
                icc: Some(net.guard.icc),
                internal: net.internal,
                dns: Some(net.dns),
                dns_domain: net.dns_domain.clone(),
                parent: net.parent.as_ref().map(|p| p.ifname.clone()),
                parent_netns: net.parent.as_ref().and_then(|p| p.netns.clone()),
                vxlan: net.vxlan.as_ref().map(|o| o.to_section()),
                vlan: net.vlan.map(u32::from),
            })
            .collect();
        let endpoints = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let publish: Vec<String> = self
                    .publish
                    .iter()
                    .filter(|p| p.endpoint == i)
                    .map(|p| {
                        let r = p.rule;
                        let proto = if r.udp { "udp" } else { "tcp" };
                        format!("{}:{}/{proto}", r.host_port, r.container_port)
                    })
                    .collect();
                let mut s = EndpointSection {
                    name: e.name.clone(),
                    publish,
                    netns: e.foreign.then(|| e.netns.clone()),
                    aliases: e.aliases.clone(),
                    handover: e.handover,
                    ..EndpointSection::default()
                };
                // The name an interface gets by default is not written out; a
                // handed-over one has no default.
                let ifname = |k: usize, x: &super::Interface| {
                    (e.handover || x.ifname != format!("eth{k}")).then(|| x.ifname.clone())
                };
                let net_name = |x: &super::Interface| self.networks[x.network].name.clone();
                match (e.shares, e.interfaces.as_slice()) {
                    (None, all @ [first, ..]) if first.trunk.is_some() => {
                        s.mac = Some(first.mac);
                        for x in all {
                            match x.trunk.and_then(|t| t.vlan) {
                                None => {
                                    s.native = Some(net_name(x));
                                    s.ip = Some(x.ip);
                                }
                                Some(_) => s.trunk.push(TrunkEntry::With(TrunkSection {
                                    network: net_name(x),
                                    ip: Some(x.ip),
                                })),
                            }
                        }
                    }
                    (Some(j), _) => {
                        s.mode = Some(format!("container:{}", self.endpoints[j].name));
                    }
                    (None, []) => s.mode = Some("none".into()),
                    (None, [one]) => {
                        s.network = Some(self.networks[one.network].name.clone());
                        s.ip = Some(one.ip);
                        s.mac = Some(one.mac);
                        s.ifname = ifname(0, one);
                    }
                    (None, several) => {
                        s.attach = several
                            .iter()
                            .enumerate()
                            .map(|(k, x)| AttachSection {
                                network: self.networks[x.network].name.clone(),
                                ip: Some(x.ip),
                                mac: Some(x.mac),
                                ifname: ifname(k, x),
                            })
                            .collect();
                    }
                }
                s
            })
            .collect();
        ConfigFile {
            switch,
            networks,
            endpoints,
            allow: self
                .allow
                .iter()
                .map(|&(a, b)| AllowSection {
                    between: vec![self.networks[a].name.clone(), self.networks[b].name.clone()],
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| RouteSection {
                    prefix: r.prefix.to_string(),
                    via: r.via,
                })
                .collect(),
        }
    }

    /// [`Topology::to_config`] as TOML text, which [`super::parse`] reads back into
    /// this topology.
    pub fn to_toml(&self) -> String {
        self.to_config().to_toml()
    }
}

impl ConfigFile {
    /// The file as TOML, sections in the order of the config contract.
    pub fn to_toml(&self) -> String {
        // Strings, numbers, booleans, addresses and lists of them: nothing the TOML
        // printer refuses.
        toml::to_string(self).expect("a config file prints as TOML")
    }
}
