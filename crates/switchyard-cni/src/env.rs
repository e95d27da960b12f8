//! What the runtime passes in the environment: the command, the container, its
//! namespace and interface name, and `CNI_ARGS` — each checked as the CNI spec
//! 1.0.0 ("Parameters") says — and the endpoint name switchyard knows a container by.
//!
//! The endpoint name is derived from `CNI_CONTAINERID` and `CNI_IFNAME` alone, so DEL
//! and CHECK find what ADD made without the plugin keeping any state of its own.

use crate::error::{code, CniError};
use std::ffi::OsString;
use std::net::Ipv4Addr;

/// The operation asked for (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command, CniError> {
        match s {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "VERSION" => Ok(Command::Version),
            // STATUS and GC are CNI 1.1.0, which VERSION does not claim, so a runtime
            // never sends them; anything else is not CNI at all.
            other => Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_COMMAND={other:?} is not a command this plugin runs \
                     (ADD, DEL, CHECK or VERSION)"
                ),
            )),
        }
    }
}

/// The environment of an ADD, DEL or CHECK, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Empty for a DEL whose namespace is already gone (the spec allows that).
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
}

/// Reads one variable: `Ok(None)` when unset, an error when not UTF-8.
fn var(
    lookup: &mut impl FnMut(&str) -> Option<OsString>,
    name: &str,
) -> Result<Option<String>, CniError> {
    match lookup(name) {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|_| CniError::new(code::INVALID_ENV, format!("{name} is not valid UTF-8"))),
    }
}

/// The command alone (`CNI_COMMAND`), needed before anything else is read.
pub fn command(lookup: &mut impl FnMut(&str) -> Option<OsString>) -> Result<Command, CniError> {
    match var(lookup, "CNI_COMMAND")? {
        Some(c) => Command::parse(&c),
        None => Err(CniError::new(
            code::INVALID_ENV,
            "required environment variable CNI_COMMAND is missing",
        )),
    }
}

impl Env {
    /// Reads and checks the environment of `command` (not VERSION). As the spec's
    /// reference implementation does, ADD and CHECK need all of CNI_CONTAINERID,
    /// CNI_NETNS, CNI_IFNAME and CNI_PATH; DEL may go without CNI_NETNS. Every missing
    /// one is named at once.
    pub fn read(
        command: Command,
        lookup: &mut impl FnMut(&str) -> Option<OsString>,
    ) -> Result<Env, CniError> {
        let container_id = var(lookup, "CNI_CONTAINERID")?.unwrap_or_default();
        let netns = var(lookup, "CNI_NETNS")?.unwrap_or_default();
        let ifname = var(lookup, "CNI_IFNAME")?.unwrap_or_default();
        let path = var(lookup, "CNI_PATH")?.unwrap_or_default();
        let args = var(lookup, "CNI_ARGS")?.unwrap_or_default();

        let mut missing = Vec::new();
        if container_id.is_empty() {
            missing.push("CNI_CONTAINERID");
        }
        if netns.is_empty() && command != Command::Del {
            missing.push("CNI_NETNS");
        }
        if ifname.is_empty() {
            missing.push("CNI_IFNAME");
        }
        if path.is_empty() {
            missing.push("CNI_PATH");
        }
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "required environment variables missing: {}",
                    missing.join(", ")
                ),
            ));
        }
        check_container_id(&container_id)?;
        check_ifname(&ifname)?;
        // An absolute path without `..` (one that climbs out of where it says it is):
        // switchyard's own rule for a namespace path, checked before asking it.
        if !netns.is_empty() && switchyard::topology::config::check_netns_path(&netns).is_err() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_NETNS={:?} is not a plain absolute path to a network namespace",
                    clip(&netns)
                ),
            ));
        }
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args: CniArgs::parse(&args)?,
        })
    }

    /// The name of this container's endpoint on this interface.
    pub fn endpoint_name(&self) -> String {
        endpoint_name(&self.container_id, &self.ifname)
    }
}

/// Longest container id kept whole in an endpoint name: `c-` + id + `-` + a 15-byte
/// interface name stays within switchyard's 48-character names.
const MAX_WHOLE_ID: usize = 30;
/// How much of a longer id is kept: Docker's and podman's short ids are 12 hex digits.
const SHORT_ID: usize = 12;

/// The endpoint a container's interface is in switchyard: `c-<id>` for `eth0`,
/// `c-<id>-<ifname>` for any other interface, where `<id>` is the container id if it
/// has at most 30 characters and its first 12 otherwise (a 64-hex-digit id becomes its
/// short id, as `podman ps` shows it). Both inputs are checked before
/// ([`check_container_id`], [`check_ifname`]), so the name uses only the characters
/// switchyard allows and never starts with '-' or '.'.
pub fn endpoint_name(container_id: &str, ifname: &str) -> String {
    let id = if container_id.len() <= MAX_WHOLE_ID {
        container_id
    } else {
        // ASCII only (checked), so any byte index is a character boundary.
        &container_id[..SHORT_ID]
    };
    if ifname == "eth0" {
        format!("c-{id}")
    } else {
        format!("c-{id}-{ifname}")
    }
}

/// Longest container id taken: a runtime's ids are 64 hex digits; the cap keeps
/// messages that quote it short.
const MAX_CONTAINER_ID: usize = 256;

/// The spec's rule for a container id: not empty, an alphanumeric first character,
/// then alphanumerics, '_', '.' or '-'.
pub fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = id.len() <= MAX_CONTAINER_ID
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_CONTAINERID={:?} is not a container id: up to {MAX_CONTAINER_ID} \
                 letters, digits, '_', '.' or '-', starting with a letter or digit",
                clip(id)
            ),
        ))
    }
}

/// Longest interface name Linux takes (IFNAMSIZ less the terminating NUL).
const MAX_IFNAME: usize = 15;

/// An interface name the kernel takes (1–15 bytes, not `.` or `..`, no '/', ':' or
/// white space — the spec's rule), not `lo`, and that also fits an endpoint name (letters,
/// digits, '-', '_', '.'). The second rule is this plugin's: the interface name is
/// part of the endpoint name, so it must be something switchyard can name.
pub fn check_ifname(ifname: &str) -> Result<(), CniError> {
    let ok = !ifname.is_empty()
        && ifname.len() <= MAX_IFNAME
        && ifname != "."
        && ifname != ".."
        // The namespace's loopback is there already and is not switchyard's.
        && ifname != "lo"
        && ifname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_IFNAME={:?} is not an interface name switchyard can attach: 1 to \
                 {MAX_IFNAME} letters, digits, '-', '_' or '.', not \".\", \"..\" or \"lo\"",
                clip(ifname)
            ),
        ))
    }
}

/// At most 80 characters of something quoted back in a message.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The keys of `CNI_ARGS` this plugin reads (the CNI conventions' `IP` and `MAC`,
/// which podman sets for `--ip` and `--mac-address`, and `K8S_POD_NAME`, where
/// podman passes the container's name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// The address asked for (`IP=172.20.0.9`).
    pub ip: Option<Ipv4Addr>,
    /// The MAC asked for (`MAC=02:42:ac:14:00:09`), lower case.
    pub mac: Option<String>,
    /// The container's name (`K8S_POD_NAME=web`), as given: a DNS name of the
    /// endpoint if it is a valid one.
    pub pod_name: Option<String>,
}

impl CniArgs {
    /// Parses `K=V;K=V` as the reference implementation (`types.LoadArgs`) does: every
    /// pair needs an `=`; a key the plugin does not know is an error unless
    /// `IgnoreUnknown` is `1` or `true`, as runtimes set it (podman passes
    /// `IgnoreUnknown=1;K8S_POD_NAME=<name>`).
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let bad = |m: String| CniError::new(code::INVALID_ENV, format!("CNI_ARGS: {m}"));
        let mut pairs = Vec::new();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{:?} is not KEY=VALUE", clip(pair))))?;
            pairs.push((k, v));
        }
        let mut ignore_unknown = false;
        for (k, v) in &pairs {
            if *k == "IgnoreUnknown" {
                ignore_unknown = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(bad(format!(
                            "IgnoreUnknown={:?} is not 1, 0, true or false",
                            clip(v)
                        )))
                    }
                };
            }
        }
        let mut args = CniArgs::default();
        for (k, v) in pairs {
            match k {
                "IgnoreUnknown" => {}
                "IP" => args.ip = Some(parse_ip(v).map_err(bad)?),
                "MAC" => args.mac = Some(parse_mac(v).map_err(bad)?),
                "K8S_POD_NAME" if !v.is_empty() => args.pod_name = Some(clip(v)),
                "K8S_POD_NAME" => {}
                other if ignore_unknown => {
                    let _ = other;
                }
                other => {
                    return Err(bad(format!(
                        "unknown key {:?} (switchyard-cni reads IP, MAC and K8S_POD_NAME; \
                         add IgnoreUnknown=1 to pass others)",
                        clip(other)
                    )))
                }
            }
        }
        Ok(args)
    }
}

/// `IP=`: one IPv4 address (switchyard's networks are IPv4). Runtimes may pass a
/// comma-separated list, one per family; more than one address is refused.
fn parse_ip(v: &str) -> Result<Ipv4Addr, String> {
    let mut it = v.split(',');
    let first = it.next().unwrap_or_default();
    if it.next().is_some() {
        return Err(format!(
            "IP={:?}: switchyard gives an interface one IPv4 address, not a list",
            clip(v)
        ));
    }
    // An address may come with its prefix length (`172.20.0.9/16`); the network's
    // own prefix is what counts.
    let addr = first.split_once('/').map_or(first, |(a, _)| a);
    addr.parse::<Ipv4Addr>()
        .map_err(|_| format!("IP={:?} is not an IPv4 address", clip(v)))
}

/// `MAC=`: six hex pairs separated by ':' (or '-'), a unicast address.
fn parse_mac(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    match bytes {
        Some(b) if b[0] & 1 == 0 => Ok(b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")),
        Some(_) => Err(format!(
            "MAC={:?} is a multicast address, not one an interface can have",
            clip(v)
        )),
        None => Err(format!(
            "MAC={:?} is not a MAC address like 02:42:ac:14:00:09",
            clip(v)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";

    fn podman_add() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", ID),
            ("CNI_NETNS", "/run/netns/netns-1234"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]
    }

    #[test]
    fn podmans_environment_is_read() {
        let mut look = env_of(&podman_add());
        let cmd = command(&mut look).unwrap();
        let env = Env::read(cmd, &mut look).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id, ID);
        assert_eq!(env.netns, "/run/netns/netns-1234");
        assert_eq!(env.ifname, "eth0");
        assert_eq!(
            env.args,
            CniArgs {
                pod_name: Some("web".into()),
                ..CniArgs::default()
            }
        );
        assert_eq!(env.endpoint_name(), "c-3f2a9c1b7d4e");
    }

    #[test]
    fn every_missing_variable_is_named() {
        let mut look = env_of(&[("CNI_COMMAND", "ADD")]);
        let e = Env::read(Command::Add, &mut look).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert_eq!(
            e.msg,
            "required environment variables missing: CNI_CONTAINERID, CNI_NETNS, \
             CNI_IFNAME, CNI_PATH"
        );
        // DEL may come without a namespace (it is gone).
        let mut pairs = podman_add();
        pairs.retain(|(k, _)| *k != "CNI_NETNS");
        let env = Env::read(Command::Del, &mut env_of(&pairs)).unwrap();
        assert_eq!(env.netns, "");
        let e = Env::read(Command::Check, &mut env_of(&pairs)).unwrap_err();
        assert!(e.msg.ends_with("missing: CNI_NETNS"), "{}", e.msg);
    }

    #[test]
    fn a_missing_or_unknown_command_is_an_env_error() {
        let e = command(&mut env_of(&[])).unwrap_err();
        assert_eq!((e.code, e.msg.contains("CNI_COMMAND")), (4, true));
        let e = command(&mut env_of(&[("CNI_COMMAND", "GC")])).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("\"GC\""), "{}", e.msg);
        assert_eq!(
            command(&mut env_of(&[("CNI_COMMAND", "CHECK")])).unwrap(),
            Command::Check
        );
    }

    #[test]
    fn a_non_utf8_variable_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let mut look = |k: &str| (k == "CNI_COMMAND").then(|| OsString::from_vec(vec![0xff]));
        let e = command(&mut look).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_COMMAND"), "{}", e.msg);
    }

    #[test]
    fn container_ids_follow_the_spec() {
        for ok in ["a", "0abc", "my_ctr.1-x", ID] {
            check_container_id(ok).unwrap();
        }
        for bad in [
            "",
            "-abc",
            ".abc",
            "_x",
            "a/b",
            "a b",
            "a;b",
            "é",
            &"a".repeat(257),
        ] {
            let e = check_container_id(bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{bad}");
            assert!(e.msg.contains("CNI_CONTAINERID"), "{}", e.msg);
        }
        let mut pairs = podman_add();
        pairs[1] = ("CNI_CONTAINERID", "../../etc");
        let e = Env::read(Command::Add, &mut env_of(&pairs)).unwrap_err();
        assert_eq!(e.code, 4);
    }

    #[test]
    fn interface_names_follow_the_kernel_and_switchyard() {
        for ok in ["eth0", "net1", "e", "a.b", "a-b_c", "abcdefghijklmno"] {
            check_ifname(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "lo",
            "abcdefghijklmnop",
            "eth\u{e9}",
        ] {
            assert_eq!(
                check_ifname(bad).unwrap_err().code,
                code::INVALID_ENV,
                "{bad}"
            );
        }
        let mut pairs = podman_add();
        pairs[3] = ("CNI_IFNAME", "eth0:1");
        let e = Env::read(Command::Add, &mut env_of(&pairs)).unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"), "{}", e.msg);
    }

    #[test]
    fn a_relative_or_climbing_namespace_path_is_refused() {
        for bad in ["netns-1234", "/run/netns/../../etc/x", "/run/netns/.."] {
            let mut pairs = podman_add();
            pairs[2] = ("CNI_NETNS", bad);
            let e = Env::read(Command::Add, &mut env_of(&pairs)).unwrap_err();
            assert_eq!(e.code, 4, "{bad}");
            assert!(e.msg.contains("CNI_NETNS"), "{}", e.msg);
        }
        let mut pairs = podman_add();
        pairs[2] = ("CNI_NETNS", "/proc/4242/ns/net");
        Env::read(Command::Add, &mut env_of(&pairs)).unwrap();
    }

    #[test]
    fn endpoint_names_come_from_the_id_and_the_interface() {
        assert_eq!(endpoint_name(ID, "eth0"), "c-3f2a9c1b7d4e");
        assert_eq!(endpoint_name(ID, "net1"), "c-3f2a9c1b7d4e-net1");
        // Short ids (cnitool, scripts) are kept whole, so "ctr-1" and "ctr-2" differ.
        assert_eq!(endpoint_name("ctr-1", "eth0"), "c-ctr-1");
        assert_eq!(endpoint_name("ctr-2", "eth0"), "c-ctr-2");
        let id30 = "a".repeat(30);
        assert_eq!(endpoint_name(&id30, "eth0"), format!("c-{id30}"));
        assert_eq!(
            endpoint_name(&"b".repeat(31), "eth0"),
            format!("c-{}", "b".repeat(12))
        );
        // The longest name fits switchyard's 48 characters, in its alphabet.
        let longest = endpoint_name(&id30, "abcdefghijklmno");
        assert_eq!(longest.len(), 48);
        for (id, ifname) in [(ID, "eth0"), ("x.y_z-1", "a.b"), (id30.as_str(), "e")] {
            let n = endpoint_name(id, ifname);
            assert!(n.len() <= 48, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
                "{n}"
            );
        }
    }

    #[test]
    fn cni_args_pass_ip_and_mac_and_ignore_others_when_told() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;IP=172.20.0.9").unwrap();
        assert_eq!(a.ip, Some(Ipv4Addr::new(172, 20, 0, 9)));
        let a = CniArgs::parse("IP=172.20.0.9/16;MAC=02:42:AC:14:00:09").unwrap();
        assert_eq!(a.ip, Some(Ipv4Addr::new(172, 20, 0, 9)));
        assert_eq!(a.mac.as_deref(), Some("02:42:ac:14:00:09"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        // IgnoreUnknown counts wherever it stands, as in the reference code.
        CniArgs::parse("K8S_POD_NAMESPACE=x;IgnoreUnknown=true").unwrap();
        // The container's name podman passes is read, with or without IgnoreUnknown.
        let a = CniArgs::parse("K8S_POD_NAME=Web_1").unwrap();
        assert_eq!(a.pod_name.as_deref(), Some("Web_1"));
        assert_eq!(CniArgs::parse("K8S_POD_NAME=").unwrap().pod_name, None);
    }

    #[test]
    fn cni_args_errors_name_the_key() {
        let e = CniArgs::parse("K8S_POD_NAMESPACE=default").unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(
            e.msg.contains("\"K8S_POD_NAMESPACE\"") && e.msg.contains("IgnoreUnknown"),
            "{}",
            e.msg
        );
        assert!(CniArgs::parse("IgnoreUnknown=0;FOO=1").is_err());
        assert!(CniArgs::parse("IgnoreUnknown=maybe").is_err());
        assert!(CniArgs::parse("IgnoreUnknown=1;NOEQUALS")
            .unwrap_err()
            .msg
            .contains("KEY=VALUE"));
        for bad in ["IP=300.1.1.1", "IP=fd00::2", "IP=172.20.0.9,fd00::9", "IP="] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{bad}");
            assert!(e.msg.contains("IP="), "{}", e.msg);
        }
        for bad in [
            "MAC=02:42:ac:14:00",
            "MAC=01:00:5e:00:00:01",
            "MAC=zz:42:ac:14:00:09",
            "MAC=2:42:ac:14:00:09",
        ] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{bad}");
        }
    }
}
