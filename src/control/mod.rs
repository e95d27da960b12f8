//! `control` — running a switch and talking to it.
//!
//! [`Switchyard`] is a whole running instance: the deployed topology (namespaces and
//! TAPs), the dataplane thread, the control socket and, when asked for, the metrics
//! endpoint. The CLI verbs (`up`, `down`, `show`, `check`, `trace`) live in [`cli`],
//! the guided tour (`tour`) in [`tour`]; the socket protocol in [`protocol`] (its
//! schema is `docs/control-protocol.md`), with its two ends in [`server`] and
//! [`client`] and the tables people read in [`render`]; the Prometheus endpoint in
//! [`metrics`] (`docs/metrics.md`). The socket and the endpoint report the same
//! gathering of counters ([`snapshot`]). Problems met while running or stopping are
//! logged through `tracing`; the program decides where logs go.

pub mod capture;
pub mod cli;
pub mod client;
pub mod events;
pub mod live;
pub mod metrics;
pub mod pcapng;
pub mod protocol;
pub mod render;
pub mod server;
mod snapshot;
pub mod spec;
pub mod tour;

use crate::dataplane::{self, Dataplane, Options};
use crate::topology::{Deployment, SetupError, Topology};
use server::{PortInfo, Server};
use std::path::{Path, PathBuf};
use switchyard_core::pipeline::{Pipeline, SpecError};
use switchyard_os::port::Port;

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("pipeline: {0}")]
    Spec(#[from] SpecError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A running switch: namespaces, dataplane and control socket.
pub struct Switchyard {
    topology: Topology,
    socket: PathBuf,
    // Dropped in this order: the namespace watch, the metrics endpoint, the socket,
    // then the dataplane (closing the TAPs), then the namespaces.
    watch: Option<NamespaceWatch>,
    metrics: Option<metrics::Exporter>,
    server: Option<Server>,
    dataplane: Option<dataplane::Running>,
    deployment: Option<Deployment>,
}

impl Switchyard {
    /// Creates everything `topology` describes and starts switching. On failure,
    /// whatever was created is removed before the error returns.
    pub fn start(topology: Topology, run_root: &Path) -> Result<Switchyard, StartError> {
        Switchyard::start_with(topology, run_root, None)
    }

    /// [`Switchyard::start`], and serves Prometheus metrics on `metrics` (bound
    /// beforehand, so that a refused address or a port in use stops `up` before
    /// anything is created).
    pub fn start_with(
        topology: Topology,
        run_root: &Path,
        metrics: Option<metrics::Listener>,
    ) -> Result<Switchyard, StartError> {
        let pipeline = Pipeline::new(topology.pipeline_spec())?;
        let mut deployment = Deployment::create(&topology, run_root)?;
        // Worker w gets queue w of every TAP.
        let workers = topology.workers.max(1);
        let mut queues: Vec<Vec<Box<dyn Port>>> = (0..workers).map(|_| Vec::new()).collect();
        for tap in deployment.take_ports() {
            for (w, q) in tap.into_queues().into_iter().enumerate() {
                queues[w % workers].push(Box::new(q));
            }
        }
        let opts = Options {
            busy_poll: std::time::Duration::from_micros(topology.busy_poll_us),
        };
        let running = Dataplane::new(pipeline, queues, opts)
            .spawn()
            .map_err(|source| StartError::Io {
                what: "start the dataplane workers",
                source,
            })?;
        let exporter = match metrics {
            Some(l) => Some(
                metrics::Exporter::start(
                    l,
                    &deployment.run_dir().metrics_socket(),
                    running.handle(),
                    port_info(&topology),
                )
                .map_err(|source| StartError::Io {
                    what: "start the metrics endpoint",
                    source,
                })?,
            ),
            None => None,
        };
        let socket = deployment.run_dir().socket();
        let instance = server::Instance {
            ports: port_info(&topology),
            topology: topology.clone(),
        };
        let server = Server::start(&socket, running.handle(), instance).map_err(|source| {
            StartError::Io {
                what: "bind the control socket",
                source,
            }
        })?;
        let watch = NamespaceWatch::start(&topology, &deployment, running.handle());
        Ok(Switchyard {
            topology,
            socket,
            watch: Some(watch),
            metrics: exporter,
            server: Some(server),
            dataplane: Some(running),
            deployment: Some(deployment),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Path of the control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Where the metrics endpoint listens, if it was asked for.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(metrics::Exporter::local_addr)
    }

    /// A handle to query the dataplane directly (tests, tools).
    pub fn handle(&self) -> dataplane::Handle {
        self.dataplane.as_ref().expect("running").handle()
    }

    /// True if the dataplane thread exited on its own (an I/O error).
    pub fn dataplane_died(&self) -> bool {
        self.dataplane.as_ref().is_some_and(|d| d.is_finished())
    }

    /// Stops switching and removes everything created. Returns the namespaces removed.
    pub fn stop(mut self) -> Result<Vec<String>, SetupError> {
        self.stop_inner()
    }

    /// Stops switching and removes everything created, and says how the dataplane
    /// ended: `Err` if a worker had failed (a panic, a fatal I/O error), which the
    /// caller reports (`switchyard up` exits non-zero).
    pub fn shutdown(mut self) -> Shutdown {
        let (removed, dataplane) = self.stop_parts();
        Shutdown { removed, dataplane }
    }

    fn stop_inner(&mut self) -> Result<Vec<String>, SetupError> {
        let (removed, dataplane) = self.stop_parts();
        if let Err(e) = dataplane {
            tracing::error!("the dataplane stopped with an error: {e}");
        }
        removed
    }

    fn stop_parts(&mut self) -> (Result<Vec<String>, SetupError>, std::io::Result<()>) {
        if let Some(w) = self.watch.take() {
            w.stop();
        }
        if let Some(m) = self.metrics.take() {
            m.stop();
        }
        if let Some(s) = self.server.take() {
            s.stop();
        }
        let dataplane = match self.dataplane.take() {
            Some(d) => d.stop(),
            None => Ok(()),
        };
        let removed = match self.deployment.take() {
            Some(d) => d.teardown(),
            None => Ok(Vec::new()),
        };
        (removed, dataplane)
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            tracing::error!("cleanup incomplete: {e}");
        }
    }
}

/// How an instance ended ([`Switchyard::shutdown`]).
pub struct Shutdown {
    /// The namespaces removed, or why cleanup is incomplete.
    pub removed: Result<Vec<String>, SetupError>,
    /// How the dataplane's workers ended: `Err` if one failed before it was asked to
    /// stop.
    pub dataplane: std::io::Result<()>,
}

/// Watches the endpoints' namespaces: when one is removed from under switchyard
/// (`ip netns del`, or replaced by another of the same name), its ports are marked
/// down — their TAPs closed, so the namespace can go — and the rest keeps switching.
/// A plain `stat` of each name twice a second; logged once per namespace.
struct NamespaceWatch {
    stop: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the namespaces are looked at.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl NamespaceWatch {
    fn start(t: &Topology, d: &Deployment, dp: dataplane::Handle) -> NamespaceWatch {
        // Each namespace with ports: its recorded identity and its ports.
        let mut watched: Vec<(String, (u64, u64), Vec<switchyard_core::pipeline::PortId>)> =
            Vec::new();
        for (port, (e, _)) in t.interfaces().enumerate() {
            let Some(id) = d
                .state()
                .namespaces
                .iter()
                .find(|r| r.name == e.netns)
                .and_then(|r| r.identity)
            else {
                continue;
            };
            let pid = switchyard_core::pipeline::PortId(port as u16);
            match watched.iter_mut().find(|w| w.0 == e.netns) {
                Some(w) => w.2.push(pid),
                None => watched.push((e.netns.clone(), (id.dev, id.ino), vec![pid])),
            }
        }
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("switchyard-nswatch".into())
            .spawn(move || loop {
                match rx.recv_timeout(WATCH_EVERY) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                watched.retain(|(name, id, ports)| {
                    let now = switchyard_os::netns::file_identity(name);
                    if matches!(now, Ok(Some(n)) if n == *id) || now.is_err() {
                        return true;
                    }
                    let why = format!("its network namespace {name} was removed");
                    tracing::warn!(
                        "network namespace {name} was removed from under switchyard: its \
                         port(s) are down, the rest keeps switching"
                    );
                    for &p in ports {
                        dp.port_down(p, &why);
                    }
                    false
                });
            })
            .ok();
        NamespaceWatch { stop: tx, thread }
    }

    fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn port_info(t: &Topology) -> Vec<PortInfo> {
    t.interfaces()
        .map(|(e, i)| {
            let net = &t.networks[i.network];
            PortInfo {
                port: Topology::port_name(e, i),
                endpoint: e.name.clone(),
                interface: i.ifname.clone(),
                netns: e.netns.clone(),
                network: net.name.clone(),
                mac: i.mac.to_string(),
                ip: format!("{}/{}", i.ip, net.subnet.prefix_len()),
            }
        })
        .collect()
}
