//! The network configuration the runtime writes on stdin: the spec's keys
//! (`cniVersion`, `name`, `type`, `runtimeConfig`, `prevResult`), this plugin's own
//! (`network`, `prefix`, `runDir`), the published ports of the `portMappings`
//! capability, turned into switchyard's `HOST:CONTAINER/PROTO` rules, and the DNS
//! names of the `aliases` capability.
//!
//! Keys this plugin does not know are left alone: the spec lets runtimes and other
//! plugins add their own (`args`, `dns`, `capabilities`, ...).

use crate::env::clip;
use crate::error::{code, CniError};
use serde::Deserialize;
use std::path::PathBuf;
use switchyard::topology::config::{check_prefix, parse_dns_name};
use switchyard::topology::DEFAULT_RUN_ROOT;

/// The most stdin the plugin reads. A network config is a few hundred bytes (a
/// `prevResult` and a few dozen port mappings add a few KiB); more is refused
/// rather than buffered.
pub const MAX_STDIN: usize = 1024 * 1024;

/// The CNI versions this plugin speaks. 0.3.x and 0.4.0 share one result format
/// (with `ips[].version`); 1.0.0 drops that field. CHECK exists from 0.4.0 on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
}

impl CniVersion {
    pub const ALL: [CniVersion; 4] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
    ];

    /// The version VERSION's answer is written in.
    pub const LATEST: CniVersion = CniVersion::V1_0_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
        }
    }

    pub fn parse(s: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Results before 1.0.0 say each address's family (`"version":"4"`).
    pub fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// CHECK came with 0.4.0.
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }
}

/// The network config, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    /// The CNI network's name (the conflist's).
    pub name: String,
    /// The switchyard network the container is attached to.
    pub network: String,
    /// The switchyard instance's prefix.
    pub prefix: String,
    /// The directory the instance's run directory is in.
    pub run_dir: PathBuf,
    /// `runtimeConfig.portMappings` as given: read by ADD alone ([`NetConf::publish`]),
    /// so that a DEL after an ADD refused for its ports still cleans up.
    pub port_mappings: Option<serde_json::Value>,
    /// `runtimeConfig.aliases` as given (`{"<network name>": ["db", ...]}`): read by
    /// ADD alone ([`NetConf::aliases`]).
    pub aliases: Option<serde_json::Value>,
    /// A non-empty `ipam` section was given (refused by ADD).
    pub ipam: bool,
    /// The result of ADD, which the runtime passes back on DEL and CHECK.
    pub prev_result: Option<serde_json::Value>,
}

impl NetConf {
    /// The DNS names the `aliases` capability gives the container on this network
    /// (`runtimeConfig.aliases[<name>]`, as podman sends its `--network-alias`es),
    /// lowercased; a name that is not a valid DNS name is skipped, not refused: it
    /// could never be asked for anyway.
    pub fn aliases(&self) -> Vec<String> {
        let list = self
            .aliases
            .as_ref()
            .and_then(|a| a.get(&self.name))
            .and_then(|l| l.as_array());
        let mut out: Vec<String> = Vec::new();
        for a in list.into_iter().flatten() {
            if let Some(n) = a.as_str().and_then(|s| parse_dns_name(s).ok()) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    /// The instance's control socket, `<runDir>/<prefix>/control.sock`.
    pub fn socket(&self) -> PathBuf {
        switchyard::topology::RunDir::new(&self.run_dir, &self.prefix).socket()
    }

    /// What ADD asks switchyard to publish, as switchyard writes it (`8080:80/tcp`),
    /// from the `portMappings` capability; also refuses the parts of the config ADD
    /// cannot honour. DEL and CHECK do not ask: a runtime cleans up with DEL after a
    /// failed ADD, with the same config.
    pub fn publish(&self) -> Result<Vec<String>, CniError> {
        // switchyard assigns addresses itself (as Docker's IPAM does); an IPAM
        // plugin's addresses would never reach it.
        if self.ipam {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "\"ipam\": switchyard assigns addresses itself; remove the ipam section \
                 (a fixed address is CNI_ARGS IP=, as podman's --ip sets it)",
            ));
        }
        let mappings: Vec<PortMapping> = match &self.port_mappings {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!("invalid runtimeConfig.portMappings: {e}"),
                )
            })?,
        };
        let mut publish: Vec<String> = Vec::new();
        for m in mappings {
            let rule = m.to_publish()?;
            // The same mapping twice is one rule (switchyard would refuse the second
            // as a port already taken).
            if !publish.contains(&rule) {
                publish.push(rule);
            }
        }
        Ok(publish)
    }
}

/// The config's keys as they come; everything optional so that each missing key
/// gets its own message and code.
#[derive(Deserialize)]
struct RawConf {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    network: Option<String>,
    prefix: Option<String>,
    #[serde(rename = "runDir")]
    run_dir: Option<String>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RuntimeConfig>,
    #[serde(rename = "prevResult")]
    prev_result: Option<serde_json::Value>,
    ipam: Option<serde_json::Value>,
}

/// The runtime's answers to the capabilities the plugin declares: `portMappings`
/// and `aliases`.
#[derive(Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "portMappings")]
    port_mappings: Option<serde_json::Value>,
    aliases: Option<serde_json::Value>,
}

/// One entry of the `portMappings` capability (CNI conventions), as podman writes it
/// for `-p [hostIP:]hostPort:containerPort[/proto]`.
#[derive(Debug, Clone, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u64,
    #[serde(rename = "containerPort")]
    pub container_port: u64,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<String>,
}

impl PortMapping {
    /// The mapping as switchyard's publish rule, `HOST:CONTAINER/PROTO`.
    ///
    /// switchyard publishes on its uplink address only, so a mapping bound to one
    /// host address (`-p 127.0.0.1:5353:53/udp`) cannot be honoured; it is refused
    /// rather than published more widely than asked (a port meant for the host alone
    /// would be open to the uplink's network).
    pub fn to_publish(&self) -> Result<String, CniError> {
        let port = |key: &str, n: u64| -> Result<u16, CniError> {
            u16::try_from(n).ok().filter(|&p| p != 0).ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!("runtimeConfig.portMappings: {key} {n} is not a port from 1 to 65535"),
                )
            })
        };
        let host = port("hostPort", self.host_port)?;
        let container = port("containerPort", self.container_port)?;
        let proto = self
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("tcp")
            .to_ascii_lowercase();
        if proto != "tcp" && proto != "udp" {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!(
                    "runtimeConfig.portMappings: protocol {:?} (port {host}): switchyard \
                     publishes tcp and udp only",
                    clip(&proto)
                ),
            ));
        }
        match self.host_ip.as_deref() {
            None | Some("") | Some("0.0.0.0") => {}
            Some(ip) => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!(
                        "runtimeConfig.portMappings: hostIP {:?} (port {host}/{proto}): \
                         switchyard publishes on its uplink address only; publish without \
                         a host address (-p {host}:{container}/{proto})",
                        clip(ip)
                    ),
                ))
            }
        }
        Ok(format!("{host}:{container}/{proto}"))
    }
}

/// The `cniVersion` of a stdin that may not parse as a config, for the error object:
/// the config's own version when it is one the plugin speaks, else the latest.
pub fn version_for_errors(stdin: &[u8]) -> CniVersion {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .and_then(CniVersion::parse)
        })
        .unwrap_or(CniVersion::LATEST)
}

/// Decodes and checks the network config of an ADD, DEL or CHECK.
pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    if stdin.len() > MAX_STDIN {
        return Err(CniError::new(
            code::DECODE,
            format!("the network config is larger than {MAX_STDIN} bytes"),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(code::DECODE, format!("the network config is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(CniError::new(
            code::DECODE,
            "the network config is not a JSON object",
        ));
    }
    let raw: RawConf = serde_json::from_value(value)
        .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("invalid network config: {e}")))?;
    let invalid = |m: String| CniError::new(code::INVALID_CONFIG, m);

    let version = raw
        .cni_version
        .ok_or_else(|| invalid("the network config has no \"cniVersion\"".into()))?;
    let cni_version = CniVersion::parse(&version).ok_or_else(|| {
        CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not one switchyard-cni speaks ({})",
                clip(&version),
                supported().join(", ")
            ),
        )
    })?;
    let name = raw
        .name
        .ok_or_else(|| invalid("the network config has no \"name\"".into()))?;
    check_net_name(&name).map_err(invalid)?;
    let network = raw.network.ok_or_else(|| {
        invalid(
            "the network config has no \"network\": the name of the switchyard network \
             to attach containers to"
                .into(),
        )
    })?;
    // switchyard's rule for names: a longer or stranger one names no network of it.
    let ok = !network.is_empty()
        && network.len() <= 48
        && !network.starts_with(['.', '-'])
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(invalid(format!(
            "\"network\" {:?} is not a switchyard network name: 1 to 48 letters, digits, \
             '-', '_' or '.', not starting with '.' or '-'",
            clip(&network)
        )));
    }
    let prefix = raw.prefix.unwrap_or_else(|| "sy-".into());
    check_prefix(&prefix).map_err(|e| invalid(format!("\"prefix\": {e}")))?;
    let run_dir = PathBuf::from(raw.run_dir.unwrap_or_else(|| DEFAULT_RUN_ROOT.into()));
    if !run_dir.is_absolute() {
        return Err(invalid(format!(
            "\"runDir\" {:?} is not an absolute path",
            clip(&run_dir.display().to_string())
        )));
    }
    let (port_mappings, aliases) = match raw.runtime_config {
        Some(r) => (r.port_mappings, r.aliases),
        None => (None, None),
    };
    Ok(NetConf {
        cni_version,
        name,
        network,
        prefix,
        run_dir,
        port_mappings: port_mappings.filter(|v| !v.is_null()),
        aliases: aliases.filter(|v| !v.is_null()),
        ipam: raw.ipam.as_ref().is_some_and(|v| !is_empty_json(v)),
        prev_result: raw.prev_result.filter(|v| !v.is_null()),
    })
}

fn is_empty_json(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// The spec's rule for a network name: an alphanumeric first character, then
/// alphanumerics, '_', '.' or '-'.
fn check_net_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"name\" {:?} is not a network name: letters, digits, '_', '.' or '-', \
             starting with a letter or digit",
            clip(name)
        ))
    }
}

/// The versions VERSION lists.
pub fn supported() -> Vec<&'static str> {
    CniVersion::ALL.iter().map(|v| v.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: serde_json::Value) -> Result<NetConf, CniError> {
        parse(v.to_string().as_bytes())
    }

    fn podman() -> serde_json::Value {
        json!({
            "cniVersion": "0.4.0",
            "name": "synet",
            "type": "switchyard-cni",
            "network": "apps",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""}
            ]}
        })
    }

    #[test]
    fn podmans_config_is_read_with_the_defaults() {
        let c = conf(podman()).unwrap();
        assert_eq!(c.cni_version, CniVersion::V0_4_0);
        assert_eq!(c.name, "synet");
        assert_eq!(c.network, "apps");
        assert_eq!(c.prefix, "sy-");
        assert_eq!(c.run_dir, PathBuf::from("/run/switchyard"));
        assert_eq!(
            c.socket(),
            PathBuf::from("/run/switchyard/sy-/control.sock")
        );
        assert_eq!(c.publish().unwrap(), ["8080:80/tcp", "5353:53/udp"]);
        assert_eq!(c.prev_result, None);
    }

    #[test]
    fn the_aliases_capability_gives_this_networks_dns_names() {
        let mut v = podman();
        v["capabilities"] = json!({"portMappings": true, "aliases": true});
        v["runtimeConfig"]["aliases"] = json!({
            "synet": ["DB", "db.v2.", "not_a_name", "", 7, "db"],
            "other": ["elsewhere"]
        });
        let c = conf(v.clone()).unwrap();
        assert_eq!(c.aliases(), ["db", "db.v2"]);
        // None for this network, none at all, or a shape that is no list: no aliases,
        // and ADD goes on.
        v["runtimeConfig"]["aliases"] = json!({"other": ["x"]});
        assert!(conf(v.clone()).unwrap().aliases().is_empty());
        v["runtimeConfig"]["aliases"] = json!({"synet": "db"});
        assert!(conf(v.clone()).unwrap().aliases().is_empty());
        assert!(conf(podman()).unwrap().aliases().is_empty());
    }

    #[test]
    fn prefix_and_run_dir_name_the_socket() {
        let mut v = podman();
        v["prefix"] = json!("t1-");
        v["runDir"] = json!("/tmp/sy");
        v["prevResult"] = json!({"cniVersion":"0.4.0"});
        let c = conf(v).unwrap();
        assert_eq!(c.socket(), PathBuf::from("/tmp/sy/t1-/control.sock"));
        assert_eq!(c.prev_result, Some(json!({"cniVersion":"0.4.0"})));
    }

    #[test]
    fn a_missing_network_is_an_invalid_config() {
        let mut v = podman();
        v.as_object_mut().unwrap().remove("network");
        let e = conf(v).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("\"network\""), "{}", e.msg);
        for (key, val) in [
            ("network", json!("")),
            ("network", json!("a/b")),
            ("network", json!("-a")),
            ("network", json!("n".repeat(49))),
            ("prefix", json!("../etc")),
            ("prefix", json!("")),
            ("runDir", json!("run/sy")),
            ("name", json!("-x")),
            ("network", json!(7)),
        ] {
            let mut v = podman();
            v[key] = val.clone();
            assert_eq!(
                conf(v).unwrap_err().code,
                code::INVALID_CONFIG,
                "{key}={val}"
            );
        }
        let mut v = podman();
        v.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(conf(v).unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn undecodable_input_is_a_decode_error() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"\"x\"",
            b"\xff\xfe",
            b"{\"cniVersion\":\"1.0.0\"}}",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, code::DECODE, "{bad:?}");
        }
        let big = vec![b' '; MAX_STDIN + 1];
        assert_eq!(parse(&big).unwrap_err().code, code::DECODE);
    }

    #[test]
    fn versions_are_the_four_spoken() {
        assert_eq!(supported(), ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]);
        for v in ["0.1.0", "0.2.0", "1.1.0", "2", ""] {
            let mut c = podman();
            c["cniVersion"] = json!(v);
            let e = conf(c).unwrap_err();
            assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{v}");
            assert!(e.msg.contains("0.4.0, 1.0.0"), "{}", e.msg);
        }
        assert!(CniVersion::V0_4_0.ips_carry_version());
        assert!(!CniVersion::V1_0_0.ips_carry_version());
        assert!(!CniVersion::V0_3_1.has_check());
        assert!(CniVersion::V0_4_0.has_check());
    }

    #[test]
    fn errors_speak_the_configs_version_when_it_is_known() {
        assert_eq!(
            version_for_errors(br#"{"cniVersion":"0.4.0"}"#),
            CniVersion::V0_4_0
        );
        assert_eq!(
            version_for_errors(br#"{"cniVersion":"9.9.9"}"#),
            CniVersion::V1_0_0
        );
        assert_eq!(version_for_errors(b"garbage"), CniVersion::V1_0_0);
    }

    #[test]
    fn port_mappings_become_publish_rules() {
        let m = |v: serde_json::Value| serde_json::from_value::<PortMapping>(v).unwrap();
        assert_eq!(
            m(json!({"hostPort":8080,"containerPort":80}))
                .to_publish()
                .unwrap(),
            "8080:80/tcp"
        );
        assert_eq!(
            m(json!({"hostPort":53,"containerPort":53,"protocol":"UDP","hostIP":"0.0.0.0"}))
                .to_publish()
                .unwrap(),
            "53:53/udp"
        );
        let e =
            m(json!({"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}))
                .to_publish()
                .unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("hostIP \"127.0.0.1\""), "{}", e.msg);
        let e = m(json!({"hostPort":9,"containerPort":9,"protocol":"sctp"}))
            .to_publish()
            .unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("\"sctp\""), "{}", e.msg);
        for (h, c) in [(0, 80), (70000, 80), (80, 0)] {
            let e = m(json!({"hostPort":h,"containerPort":c}))
                .to_publish()
                .unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG);
        }
    }

    #[test]
    fn bad_port_mappings_refuse_publishing_but_not_the_config() {
        // The config still reads (DEL and CHECK need nothing of the ports); what
        // would be published is refused.
        let mut v = podman();
        v["runtimeConfig"]["portMappings"][0]["hostIP"] = json!("10.1.2.3");
        assert_eq!(
            conf(v).unwrap().publish().unwrap_err().code,
            code::UNSUPPORTED_FIELD
        );
        for bad in [json!("8080"), json!(-1), json!(null)] {
            let mut v = podman();
            v["runtimeConfig"]["portMappings"][0]["hostPort"] = bad.clone();
            let e = conf(v).unwrap().publish().unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{bad}");
        }
        let mut v = podman();
        v["runtimeConfig"]["portMappings"] = json!({"hostPort": 80});
        assert_eq!(
            conf(v).unwrap().publish().unwrap_err().code,
            code::INVALID_CONFIG
        );
        // The same mapping twice is published once; no runtimeConfig, none.
        let mut v = podman();
        v["runtimeConfig"]["portMappings"][1] = v["runtimeConfig"]["portMappings"][0].clone();
        assert_eq!(conf(v).unwrap().publish().unwrap(), ["8080:80/tcp"]);
        let mut v = podman();
        v.as_object_mut().unwrap().remove("runtimeConfig");
        assert!(conf(v).unwrap().publish().unwrap().is_empty());
        let mut v = podman();
        v["runtimeConfig"] = json!({"portMappings": null});
        assert!(conf(v).unwrap().publish().unwrap().is_empty());
    }

    #[test]
    fn an_ipam_section_is_refused_by_add_but_an_empty_one_is_not() {
        let mut v = podman();
        v["ipam"] = json!({"type":"host-local","subnet":"10.1.0.0/24"});
        let e = conf(v).unwrap().publish().unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("ipam"), "{}", e.msg);
        let mut v = podman();
        v["ipam"] = json!({});
        conf(v).unwrap().publish().unwrap();
    }
}
