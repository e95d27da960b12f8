//! switchyard-cni — a CNI plugin that attaches containers to a running switchyard.
//!
//! A runtime (podman with the CNI backend, containerd, cnitool) runs the plugin
//! binary once per operation: the operation and the container in the environment,
//! the network config on stdin, the result or an error object on stdout (CNI spec
//! 1.0.0; 0.3.0, 0.3.1 and 0.4.0 are spoken too). The plugin keeps no state: each
//! operation is one or two requests on the instance's control socket, and the
//! endpoint a container becomes is named after the container (see [`env`]).
//!
//! * [`env`] — `CNI_COMMAND` and the other variables, `CNI_ARGS`, endpoint names.
//! * [`config`] — the network config, the versions, published ports.
//! * [`result`] — the ADD result in the version asked for; the `prevResult` CHECK reads.
//! * [`plugin`] — ADD, DEL and CHECK against switchyard.
//! * [`error`] — the error object and its codes.
//!
//! [`run`] ties them together; `main.rs` only hands it the process's environment and
//! stdin and prints what it returns.
#![forbid(unsafe_code)]

pub mod config;
pub mod env;
pub mod error;
pub mod plugin;
pub mod result;

use config::CniVersion;
use env::Command;
use error::CniError;
use std::ffi::OsString;
use std::io::Read;

/// What the process prints on stdout and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The result, VERSION's answer or the error object; `None` prints nothing (a
    /// successful DEL or CHECK).
    pub stdout: Option<serde_json::Value>,
    /// 0 on success, 1 with an error object.
    pub exit_code: i32,
}

impl Outcome {
    fn ok(v: Option<serde_json::Value>) -> Outcome {
        Outcome {
            stdout: v,
            exit_code: 0,
        }
    }

    fn error(e: &CniError, version: CniVersion) -> Outcome {
        Outcome {
            stdout: Some(e.to_json(version.as_str())),
            exit_code: 1,
        }
    }
}

/// Reads stdin up to [`config::MAX_STDIN`] bytes and one more, so that a longer
/// input is seen as too long rather than cut short into something that parses.
pub fn read_bounded(input: impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    input
        .take(config::MAX_STDIN as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// One run of the plugin: `lookup` reads the environment, `stdin` is what the runtime
/// wrote.
pub fn run(mut lookup: impl FnMut(&str) -> Option<OsString>, stdin: &[u8]) -> Outcome {
    let err_version = config::version_for_errors(stdin);
    let command = match env::command(&mut lookup) {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e, err_version),
    };
    if command == Command::Version {
        // VERSION reads nothing it needs: its answer is the same whatever the
        // runtime's version, written in the latest one.
        return Outcome::ok(Some(version_info()));
    }
    let conf = match config::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e, err_version),
    };
    let version = conf.cni_version;
    let env = match env::Env::read(command, &mut lookup) {
        Ok(e) => e,
        Err(e) => return Outcome::error(&e, version),
    };
    let done = match command {
        Command::Add => plugin::add(&env, &conf).map(|r| Some(r.to_json())),
        Command::Del => plugin::del(&env, &conf).map(|()| None),
        Command::Check if !version.has_check() => Err(CniError::new(
            error::code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} has no CHECK (it came with 0.4.0)",
                version.as_str()
            ),
        )),
        Command::Check => plugin::check(&env, &conf).map(|()| None),
        Command::Version => Ok(Some(version_info())),
    };
    match done {
        Ok(out) => Outcome::ok(out),
        Err(e) => Outcome::error(&e, version),
    }
}

/// VERSION's answer.
pub fn version_info() -> serde_json::Value {
    #[derive(serde::Serialize)]
    struct VersionInfo {
        #[serde(rename = "cniVersion")]
        cni_version: &'static str,
        #[serde(rename = "supportedVersions")]
        supported_versions: Vec<&'static str>,
    }
    serde_json::to_value(VersionInfo {
        cni_version: CniVersion::LATEST.as_str(),
        supported_versions: config::supported(),
    })
    .expect("version info is plain JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env_of(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl FnMut(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn version_answers_without_a_config() {
        let out = run(env_of(&[("CNI_COMMAND", "VERSION")]), b"");
        assert_eq!(out.exit_code, 0);
        assert_eq!(
            out.stdout,
            Some(
                json!({"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]})
            )
        );
    }

    #[test]
    fn errors_before_the_config_is_read_speak_its_version() {
        let out = run(env_of(&[]), br#"{"cniVersion":"0.4.0","name":"n"}"#);
        assert_eq!(out.exit_code, 1);
        let v = out.stdout.unwrap();
        assert_eq!(
            (v["cniVersion"].as_str(), v["code"].as_u64()),
            (Some("0.4.0"), Some(4))
        );
        let out = run(env_of(&[("CNI_COMMAND", "ADD")]), b"{not json");
        let v = out.stdout.unwrap();
        assert_eq!(
            (v["cniVersion"].as_str(), v["code"].as_u64()),
            (Some("1.0.0"), Some(6))
        );
    }

    #[test]
    fn check_is_refused_before_040() {
        let out = run(
            env_of(&[
                ("CNI_COMMAND", "CHECK"),
                ("CNI_CONTAINERID", "ctr"),
                ("CNI_NETNS", "/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
            ]),
            br#"{"cniVersion":"0.3.1","name":"n","network":"apps"}"#,
        );
        assert_eq!(out.exit_code, 1);
        let v = out.stdout.unwrap();
        assert_eq!(
            (v["cniVersion"].as_str(), v["code"].as_u64()),
            (Some("0.3.1"), Some(1))
        );
    }

    #[test]
    fn stdin_is_read_to_one_byte_past_the_cap() {
        let big = vec![b'x'; config::MAX_STDIN * 2];
        assert_eq!(read_bounded(&big[..]).unwrap().len(), config::MAX_STDIN + 1);
        assert_eq!(read_bounded(&b"{}"[..]).unwrap(), b"{}");
    }
}
