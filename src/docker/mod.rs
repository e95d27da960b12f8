//! switchyard as Docker's network: a remote network driver (libnetwork's plugin
//! protocol) served by `switchyard up --docker-driver [NAME]`.
//!
//! Docker finds the driver by its socket, `/run/docker/plugins/NAME.sock`, the first
//! time a network names it (`docker network create -d NAME`), and from then on sends
//! it JSON over HTTP: create a network, create an endpoint, join a container to it,
//! and the reverse ([`driver`] has the table of what each becomes). Every container
//! interface is a TAP that switchyard creates in its own namespace and hands to Docker
//! in `Join`; Docker moves it into the container and names it `eth0`, and the
//! switchyard end keeps carrying its frames.
//!
//! * [`api`] — the protocol's messages.
//! * [`driver`] — the answers, made of control-socket requests.
//! * [`state`] — what survives a restart (Docker never creates a network twice).
//!
//! The HTTP server is `tiny_http` on a unix socket. The socket is made in a private
//! directory, restricted to root, and renamed into place, so no one else can connect
//! to a half-made one; requests are answered one at a time (each is a change of the
//! running instance, and changes run one at a time anyway), with a cap on the body.

pub mod api;
pub mod driver;
pub mod state;

use driver::{Driver, Refusal, Restored};
use state::DriverState;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where Docker looks for plugin sockets (a host path, whatever dockerd's own paths).
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// Where the driver keeps its state unless told otherwise: `<dir>/<NAME>.json`. Not
/// under /run: Docker remembers its networks across a reboot, so must the driver.
pub const STATE_DIR: &str = "/var/lib/switchyard/docker";

/// The default driver name: `docker network create -d switchyard`.
pub const DEFAULT_NAME: &str = "switchyard";

/// The largest request body read. Docker's largest (an endpoint with many published
/// ports) is a few kilobytes.
const MAX_BODY: u64 = 1 << 20;

/// How `switchyard up` runs the driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The plugin's name: what `docker network create -d` names.
    pub name: String,
    /// The directory of the socket (`/run/docker/plugins`).
    pub plugin_dir: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// The instance's control socket.
    pub control: PathBuf,
    /// The instance's prefix, which every device the driver makes carries.
    pub prefix: String,
}

impl DriverConfig {
    /// The socket Docker connects to.
    pub fn socket(&self) -> PathBuf {
        self.plugin_dir.join(format!("{}.sock", self.name))
    }
}

/// The default state file of driver `name`.
pub fn default_state(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

/// A plugin name Docker can look up and a file name can hold: 1–64 letters, digits,
/// `-`, `_`, `.`, not starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a driver name: 1 to 64 letters, digits, '-', '_' or '.', \
             not starting with '.' or '-'"
        ))
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Name(String),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is in use: another process serves a Docker network driver of that name")]
    InUse(String),
    #[error("serve {path}: {reason}")]
    Serve { path: String, reason: String },
}

/// The running driver: a thread answering Docker. Stopped (and its socket removed)
/// by [`DockerDriver::stop`] or when dropped.
pub struct DockerDriver {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DockerDriver {
    /// Reads the state, creates its networks again on the running instance (and
    /// re-attaches the containers that still run), then serves the socket.
    pub fn start(cfg: DriverConfig) -> Result<(DockerDriver, Restored), DriverError> {
        check_name(&cfg.name).map_err(DriverError::Name)?;
        let state = DriverState::load(&cfg.state)?;
        let socket = cfg.socket();
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| DriverError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&cfg.plugin_dir)
            .map_err(io(&cfg.plugin_dir))?;
        clear_stale(&socket)?;
        let mut driver = Driver::new(&cfg.control, &cfg.prefix, &cfg.state, state);
        let restored = driver.restore();
        // Written even when nothing changed: a state file that cannot be written
        // stops the start here, not at Docker's first request.
        driver
            .state()
            .save(&cfg.state)
            .map_err(DriverError::State)?;
        let server = bind_private(&cfg.plugin_dir, &cfg.name, &socket)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("docker-driver".into())
                .spawn(move || serve(server, driver, &stop))
                .map_err(io(&socket))?
        };
        Ok((
            DockerDriver {
                socket,
                stop,
                thread: Some(thread),
            },
            restored,
        ))
    }

    /// The socket Docker connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops answering and removes the socket (the state file stays for the next start).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

impl Drop for DockerDriver {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A socket left by a switchyard that died is removed; one a live process answers on
/// is not taken over.
fn clear_stale(socket: &Path) -> Result<(), DriverError> {
    match fs::symlink_metadata(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DriverError::Io {
                path: socket.display().to_string(),
                source,
            })
        }
        Ok(_) => {}
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(DriverError::InUse(socket.display().to_string()));
    }
    fs::remove_file(socket).map_err(|source| DriverError::Io {
        path: socket.display().to_string(),
        source,
    })
}

/// Binds the server in a directory only root can enter, restricts the socket to
/// root, and renames it to `socket`: Docker (root) connects, no one else can, and no
/// one ever sees the socket before it is restricted.
fn bind_private(dir: &Path, name: &str, socket: &Path) -> Result<tiny_http::Server, DriverError> {
    let private = dir.join(format!(".{name}.{}", std::process::id()));
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DriverError::Io { path, source }
    };
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io(&private))?;
    let tmp = private.join("s");
    let bound = tiny_http::Server::http_unix(&tmp).map_err(|e| DriverError::Serve {
        path: socket.display().to_string(),
        reason: e.to_string(),
    });
    let placed = bound.and_then(|server| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        fs::rename(&tmp, socket).map_err(io(socket))?;
        Ok(server)
    });
    let _ = fs::remove_dir_all(&private);
    placed
}

/// Answers Docker until `stop`; then notes where the joined interfaces are, for the
/// next start.
fn serve(server: tiny_http::Server, mut driver: Driver, stop: &AtomicBool) {
    answer(&server, &mut driver, stop);
    driver.note_all_ifnames();
}

fn answer(server: &tiny_http::Server, driver: &mut Driver, stop: &AtomicBool) {
    let mut looked = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // Docker renames an interface after `Join` and says nothing more: while a name
        // is unknown, look once a second.
        if looked.elapsed() >= Duration::from_secs(1) {
            driver.note_all_ifnames();
            looked = std::time::Instant::now();
        }
        let mut req = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("docker driver: {e}");
                continue;
            }
        };
        let path = req.url().to_string();
        let mut body = Vec::new();
        let read = req.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
        let (status, answer) = if read.is_err() || body.len() as u64 > MAX_BODY {
            (
                400,
                serde_json::json!({ "Err": format!("request body unreadable or over {MAX_BODY} bytes") }),
            )
        } else if *req.method() != tiny_http::Method::Post {
            (
                405,
                serde_json::json!({ "Err": "the plugin protocol is POST only" }),
            )
        } else {
            // A bug in one answer must not leave Docker without a driver: it is
            // answered as an error, and the next request is served.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                driver.handle(&path, &body)
            }))
            .unwrap_or_else(|_| {
                Err(Refusal::Err(format!(
                    "switchyard failed while answering {path} (a bug; see its log)"
                )))
            });
            match handled {
                Ok(v) => (200, v),
                Err(r) => {
                    tracing::warn!("docker driver: {path}: {}", r.message());
                    let status = match r {
                        Refusal::Err(_) => 500,
                        Refusal::Unknown(_) => 404,
                    };
                    (status, serde_json::json!({ "Err": r.message() }))
                }
            }
        };
        tracing::debug!("docker driver: {path} -> {status}");
        let header =
            tiny_http::Header::from_bytes(&b"Content-Type"[..], api::CONTENT_TYPE.as_bytes())
                .expect("a valid header");
        let response = tiny_http::Response::from_string(answer.to_string())
            .with_status_code(status)
            .with_header(header);
        if let Err(e) = req.respond(response) {
            tracing::debug!("docker driver: answering {path}: {e}");
        }
    }
}

/// The driver's state as `switchyard docker ls` prints it: the networks, then the
/// endpoints with where each is (`attached`: joined, its container's namespace
/// exists; `container gone`: joined, the namespace no longer exists; `created`: not
/// joined yet).
pub fn render(st: &DriverState) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<14} {:<18} {:<15} OPTIONS",
        "DOCKER NETWORK", "NETWORK", "SUBNET", "GATEWAY"
    );
    for (id, n) in &st.networks {
        let c = &n.create;
        let mut opts = Vec::new();
        if let Some(m) = c.mtu {
            opts.push(format!("mtu={m}"));
        }
        if c.masquerade {
            opts.push("masquerade".into());
        }
        if c.internal {
            opts.push("internal".into());
        }
        if c.icc == Some(false) {
            opts.push("icc=false".into());
        }
        if let Some(d) = c.dns {
            opts.push(format!("dns={d}"));
        }
        let _ = writeln!(
            out,
            "{:<14} {:<14} {:<18} {:<15} {}",
            state::short(id),
            c.name,
            c.subnet,
            c.gateway.as_deref().unwrap_or("-"),
            opts.join(",")
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<14} {:<14} {:<15} {:<17} {:<16} {:<8} CONTAINER",
        "ENDPOINT", "NETWORK", "IP", "MAC", "PUBLISH", "IFNAME"
    );
    for e in st.endpoints.values() {
        let net = st.networks.get(&e.network).map_or_else(
            || state::short(&e.network).to_string(),
            |n| n.create.name.clone(),
        );
        let (ifname, where_) = match &e.joined {
            None => ("-".to_string(), "created".to_string()),
            Some(j) if driver::is_namespace(&j.sandbox) => (
                j.ifname.clone().unwrap_or_else(|| "?".into()),
                format!("attached ({})", j.sandbox),
            ),
            Some(j) => (
                j.ifname.clone().unwrap_or_else(|| "?".into()),
                format!("container gone ({} does not exist)", j.sandbox),
            ),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<14} {:<15} {:<17} {:<16} {:<8} {where_}",
            e.name,
            net,
            e.ip,
            e.mac,
            if e.publish.is_empty() {
                "-".to_string()
            } else {
                e.publish.join(",")
            },
            ifname
        );
    }
    out
}
