//! What the driver must remember across a restart of switchyard.
//!
//! Docker creates a network once, with `CreateNetwork`, and never tells a driver
//! about it again: after a restart (of switchyard, or of the machine) Docker still
//! lists the network and expects containers to join it. So the driver keeps, in a file
//! of its own, every network Docker created (the `network_create` request it became)
//! and every endpoint (its address, MAC, published ports and, once joined, the
//! container's namespace and the interface's name there). A restarted switchyard
//! creates the networks again from it and re-attaches the containers that still run.
//!
//! The file is JSON, written whole to a temporary file and renamed over the old one
//! after every change, so a crash leaves either the old state or the new one.

use crate::control::protocol::NetworkCreate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The version of the file's layout; a file of another version is refused, not guessed.
pub const STATE_VERSION: u32 = 1;

/// The largest state file read: far more than thousands of endpoints take, and a
/// bound on what a damaged file can make the driver allocate.
const MAX_STATE_BYTES: u64 = 16 << 20;

/// Everything the driver remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverState {
    pub version: u32,
    /// By Docker's network ID.
    pub networks: BTreeMap<String, NetworkState>,
    /// By Docker's endpoint ID.
    pub endpoints: BTreeMap<String, EndpointState>,
}

/// A network Docker created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkState {
    /// The switchyard network it is, as created (and created again after a restart).
    pub create: NetworkCreate,
}

/// An endpoint Docker created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointState {
    /// Docker's network ID.
    pub network: String,
    /// The switchyard endpoint it becomes when joined.
    pub name: String,
    pub ip: String,
    pub mac: String,
    /// Its published ports, `8082:80/tcp`.
    pub publish: Vec<String>,
    /// Set once a container joined it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<Joined>,
}

/// Where a joined endpoint's interface is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Joined {
    /// The container's network namespace (Docker's `SandboxKey`).
    pub sandbox: String,
    /// The TAP's name in switchyard's namespace, before Docker moved it.
    pub device: String,
    /// Its name in the container (`eth0`), once seen there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a switchyard Docker driver state: {reason}")]
    Bad { path: String, reason: String },
}

impl DriverState {
    /// Reads the state at `path`; a missing file is an empty state (the first start).
    pub fn load(path: &Path) -> Result<DriverState, StateError> {
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        let bad = |reason: String| StateError::Bad {
            path: path.display().to_string(),
            reason,
        };
        let file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DriverState {
                    version: STATE_VERSION,
                    ..DriverState::default()
                })
            }
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        use std::io::Read;
        file.take(MAX_STATE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_STATE_BYTES {
            return Err(bad(format!("larger than {MAX_STATE_BYTES} bytes")));
        }
        let state: DriverState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(bad(format!(
                "layout version {}, this switchyard reads {STATE_VERSION}",
                state.version
            )));
        }
        Ok(state)
    }

    /// Writes the state to `path` (readable by root only): a new file renamed over
    /// the old, so a reader never sees half of one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let tmp = tmp_path(path);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let text = serde_json::to_string_pretty(self).expect("the state serializes");
        f.write_all(text.as_bytes()).map_err(io)?;
        f.write_all(b"\n").map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)
    }

    /// The network with Docker ID `id`, or a refusal Docker shows as it is.
    pub fn network(&self, id: &str) -> Result<&NetworkState, String> {
        self.networks.get(id).ok_or_else(|| {
            format!(
                "network {} is not one of this switchyard's (it was created by another \
                 driver instance, or the driver's state file was removed)",
                short(id)
            )
        })
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Docker's short form of an ID: its first 12 characters, as `docker network ls` and
/// `docker ps` print them.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DriverState {
        let mut st = DriverState {
            version: STATE_VERSION,
            ..DriverState::default()
        };
        st.networks.insert(
            "abc".into(),
            NetworkState {
                create: NetworkCreate {
                    name: "apps".into(),
                    subnet: "10.214.0.0/24".into(),
                    gateway: Some("10.214.0.1".into()),
                    mtu: Some(1400),
                    masquerade: true,
                    internal: false,
                    icc: None,
                    dns: None,
                    dns_domain: None,
                },
            },
        );
        st.endpoints.insert(
            "def".into(),
            EndpointState {
                network: "abc".into(),
                name: "def".into(),
                ip: "10.214.0.2".into(),
                mac: "02:42:0a:d6:00:02".into(),
                publish: vec!["8082:80/tcp".into()],
                joined: Some(Joined {
                    sandbox: "/var/run/docker/netns/1234".into(),
                    device: "sy-def".into(),
                    ifname: Some("eth0".into()),
                }),
            },
        );
        st
    }

    #[test]
    fn the_state_survives_a_save_and_a_load_and_a_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("sy-docker-state-{}", std::process::id()));
        let path = dir.join("sub").join("d.json");
        assert_eq!(DriverState::load(&path).unwrap().networks.len(), 0);
        let st = sample();
        st.save(&path).unwrap();
        assert_eq!(DriverState::load(&path).unwrap(), st);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by root only");
        // Another layout version, or not a state at all, is refused, not guessed.
        fs::write(&path, r#"{"version": 9, "networks": {}, "endpoints": {}}"#).unwrap();
        let e = DriverState::load(&path).unwrap_err().to_string();
        assert!(e.contains("layout version 9"), "{e}");
        fs::write(&path, "[]").unwrap();
        assert!(DriverState::load(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_ids_are_dockers_twelve_characters() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
