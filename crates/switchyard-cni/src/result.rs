//! The success result of ADD (CNI spec 1.0.0, "Success"; 0.3.x/0.4.0 "Result"),
//! built from the endpoint switchyard made, in the version the config asked for, and
//! the parts of a `prevResult` that CHECK compares.

use crate::config::CniVersion;
use crate::error::{code, CniError};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use switchyard::control::protocol::{EndpointRow, InterfaceRow, NetworkRow};

/// The result of ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: &'static str,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// An interface the plugin created: here the container's, inside its namespace
/// (`sandbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub sandbox: String,
}

/// An address on an interface (`interface` indexes `interfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// "4": only results before 1.0.0 carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    /// With its prefix length, `172.20.0.2/16`.
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub interface: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// Resolver settings: on a network that serves DNS, its gateway (where switchyard's
/// server answers for the network's endpoints) and the network's search domain; on
/// one that does not, nothing (the spec's fields are all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dns {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl Dns {
    /// What a container on network `n` is told: its gateway as nameserver when the
    /// network serves DNS, and its domain as domain and search.
    pub fn of_network(n: &NetworkRow) -> Dns {
        let Some(gw) = n.gateway.as_ref().filter(|_| n.dns) else {
            return Dns::default();
        };
        Dns {
            nameservers: vec![gw.clone()],
            domain: n.dns_domain.clone(),
            search: n.dns_domain.iter().cloned().collect(),
        }
    }
}

/// An address with its prefix length, as switchyard's rows write it.
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|&l| l <= 32)?;
    Some((a.parse().ok()?, len))
}

/// switchyard's answer made no sense (a bug or a version skew): not the runtime's
/// fault, and nothing to retry.
fn bad_answer(why: String) -> CniError {
    CniError::new(code::IO_FAILURE, format!("switchyard's answer: {why}"))
}

/// The interface `ifname` of an endpoint row.
pub fn interface<'a>(row: &'a EndpointRow, ifname: &str) -> Option<&'a InterfaceRow> {
    row.interfaces.iter().find(|i| i.ifname == ifname)
}

impl CniResult {
    /// The result of ADD for interface `ifname` of endpoint `row`, in namespace `netns`.
    pub fn from_endpoint(
        version: CniVersion,
        row: &EndpointRow,
        ifname: &str,
        netns: &str,
    ) -> Result<CniResult, CniError> {
        let i = interface(row, ifname).ok_or_else(|| {
            bad_answer(format!("endpoint {} has no interface {ifname}", row.name))
        })?;
        parse_cidr(&i.ip)
            .ok_or_else(|| bad_answer(format!("{:?} is not an IPv4 address/length", i.ip)))?;
        let gateway = match &i.gateway {
            Some(g) => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| bad_answer(format!("gateway {g:?} is not an IPv4 address")))?
                    .to_string(),
            ),
            None => None,
        };
        let routes = gateway
            .iter()
            .map(|g| Route {
                dst: "0.0.0.0/0".into(),
                gw: Some(g.clone()),
            })
            .collect();
        Ok(CniResult {
            cni_version: version.as_str(),
            interfaces: vec![Interface {
                name: ifname.to_string(),
                mac: i.mac.clone(),
                sandbox: netns.to_string(),
            }],
            ips: vec![IpConfig {
                version: version.ips_carry_version().then_some("4"),
                address: i.ip.clone(),
                gateway,
                interface: 0,
            }],
            routes,
            dns: Dns::default(),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a result is plain JSON")
    }
}

/// What CHECK compares from the `prevResult` (any version: the fields it reads are
/// the same in 0.4.0 and 1.0.0). Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrevResult {
    #[serde(default)]
    pub interfaces: Vec<PrevInterface>,
    #[serde(default)]
    pub ips: Vec<PrevIp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrevInterface {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub sandbox: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrevIp {
    pub address: String,
    #[serde(default)]
    pub interface: Option<usize>,
}

impl PrevResult {
    pub fn parse(v: &serde_json::Value) -> Result<PrevResult, CniError> {
        serde_json::from_value(v.clone())
            .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("invalid prevResult: {e}")))
    }

    /// The MAC and addresses the previous result gave interface `ifname` in `netns`.
    pub fn for_interface(&self, ifname: &str, netns: &str) -> Option<(&str, Vec<&str>)> {
        let idx = self
            .interfaces
            .iter()
            .position(|i| i.name == ifname && (i.sandbox.is_empty() || i.sandbox == netns))?;
        let ips = self
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(idx))
            .map(|ip| ip.address.as_str())
            .collect();
        Some((self.interfaces[idx].mac.as_str(), ips))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn network(dns: bool, domain: Option<&str>, gateway: Option<&str>) -> NetworkRow {
        NetworkRow {
            name: "apps".into(),
            subnet: "172.20.0.0/16".into(),
            gateway: gateway.map(String::from),
            mtu: 1500,
            mode: "bridge".into(),
            masquerade: false,
            external: false,
            internal: false,
            icc: true,
            dns,
            dns_domain: domain.map(String::from),
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn a_network_that_serves_dns_names_its_gateway_and_domain() {
        let d = Dns::of_network(&network(true, Some("apps.internal"), Some("172.20.0.1")));
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"nameservers": ["172.20.0.1"], "domain": "apps.internal", "search": ["apps.internal"]})
        );
        let d = Dns::of_network(&network(true, None, Some("172.20.0.1")));
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"nameservers": ["172.20.0.1"]})
        );
        for quiet in [
            network(false, None, Some("172.20.0.1")),
            network(true, Some("x.internal"), None),
        ] {
            assert_eq!(
                serde_json::to_value(Dns::of_network(&quiet)).unwrap(),
                json!({})
            );
        }
    }

    fn row(gateway: Option<&str>) -> EndpointRow {
        EndpointRow {
            name: "c-3f2a9c1b7d4e".into(),
            netns: "/run/netns/netns-1".into(),
            foreign: true,
            handover: false,
            interfaces: vec![InterfaceRow {
                ifname: "eth0".into(),
                network: "apps".into(),
                port: "c-3f2a9c1b7d4e.eth0".into(),
                mac: "02:42:ac:14:00:02".into(),
                ip: "172.20.0.2/16".into(),
                gateway: gateway.map(String::from),
                mtu: 1500,
            }],
            publish: vec![],
            aliases: Vec::new(),
        }
    }

    #[test]
    fn a_040_result_carries_the_address_family() {
        let r = CniResult::from_endpoint(
            CniVersion::V0_4_0,
            &row(Some("172.20.0.1")),
            "eth0",
            "/run/netns/netns-1",
        )
        .unwrap();
        assert_eq!(
            r.to_json(),
            json!({
                "cniVersion": "0.4.0",
                "interfaces": [{"name":"eth0","mac":"02:42:ac:14:00:02","sandbox":"/run/netns/netns-1"}],
                "ips": [{"version":"4","address":"172.20.0.2/16","gateway":"172.20.0.1","interface":0}],
                "routes": [{"dst":"0.0.0.0/0","gw":"172.20.0.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn a_100_result_drops_the_family_and_a_gatewayless_network_has_no_route() {
        let r =
            CniResult::from_endpoint(CniVersion::V1_0_0, &row(None), "eth0", "/run/netns/netns-1")
                .unwrap();
        assert_eq!(
            r.to_json(),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name":"eth0","mac":"02:42:ac:14:00:02","sandbox":"/run/netns/netns-1"}],
                "ips": [{"address":"172.20.0.2/16","interface":0}],
                "dns": {}
            })
        );
        let r = CniResult::from_endpoint(CniVersion::V0_3_1, &row(None), "eth0", "/x").unwrap();
        assert_eq!(r.to_json()["ips"][0]["version"], "4");
    }

    #[test]
    fn a_row_that_makes_no_sense_is_an_error_not_a_result() {
        let e = CniResult::from_endpoint(CniVersion::V1_0_0, &row(None), "eth1", "/x").unwrap_err();
        assert_eq!(e.code, code::IO_FAILURE);
        let mut r = row(None);
        r.interfaces[0].ip = "172.20.0.2".into();
        assert!(CniResult::from_endpoint(CniVersion::V1_0_0, &r, "eth0", "/x").is_err());
        let r = row(Some("gw"));
        assert!(CniResult::from_endpoint(CniVersion::V1_0_0, &r, "eth0", "/x").is_err());
    }

    #[test]
    fn a_prev_result_names_its_interfaces_addresses() {
        let p = PrevResult::parse(&json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name":"eth0","mac":"02:42:ac:14:00:02","sandbox":"/run/netns/a"},
                {"name":"eth1","mac":"02:42:ac:15:00:02","sandbox":"/run/netns/a"}
            ],
            "ips": [
                {"version":"4","address":"172.20.0.2/16","interface":0},
                {"version":"4","address":"172.21.0.2/16","interface":1}
            ],
            "dns": {}
        }))
        .unwrap();
        assert_eq!(
            p.for_interface("eth1", "/run/netns/a"),
            Some(("02:42:ac:15:00:02", vec!["172.21.0.2/16"]))
        );
        assert_eq!(p.for_interface("eth1", "/run/netns/b"), None);
        assert_eq!(p.for_interface("eth2", "/run/netns/a"), None);
        assert_eq!(
            PrevResult::parse(&json!({"ips":[{"interface":0}]}))
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
    }
}
