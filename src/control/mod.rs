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
pub mod change;
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
use crate::topology::edit::Diff;
use crate::topology::{Deployment, SetupError, Topology};
use server::Server;
pub use snapshot::LiveTopology;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use switchyard_core::pipeline::{Pipeline, PortId, SpecError};
use switchyard_os::port::Port;

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("pipeline: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Parent(#[from] crate::topology::parent::ParentError),
    #[error(transparent)]
    Overlay(#[from] crate::topology::overlay::OverlayError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A running switch: namespaces, dataplane and control socket.
pub struct Switchyard {
    live: LiveTopology,
    socket: PathBuf,
    // Stopped in this order: the namespace watch, the metrics endpoint, the socket,
    // the change thread (after the change under way), the DNS service, then the
    // dataplane (closing the TAPs), then the namespaces.
    watch: Option<NamespaceWatch>,
    metrics: Option<metrics::Exporter>,
    server: Option<Server>,
    changer: Option<change::Changer>,
    dns: Option<crate::dns::DnsService>,
    dataplane: Option<dataplane::Running>,
    deployment: Arc<Mutex<Option<Deployment>>>,
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
        Switchyard::start_inner(topology, run_root, metrics, true)
    }

    /// [`Switchyard::start`] without the DNS service: frames the workers punt wait
    /// for whoever takes [`Switchyard::take_service_link`] (tests of the punt path
    /// put a service of their own there).
    pub fn start_without_dns(
        topology: Topology,
        run_root: &Path,
    ) -> Result<Switchyard, StartError> {
        Switchyard::start_inner(topology, run_root, None, false)
    }

    fn start_inner(
        mut topology: Topology,
        run_root: &Path,
        metrics: Option<metrics::Listener>,
        serve_dns: bool,
    ) -> Result<Switchyard, StartError> {
        let workers = topology.workers.max(1);
        // Before anything is made: an overlay network's MTU comes from its underlay,
        // and the endpoints' TAPs and the pipeline take it.
        let tunnels = crate::topology::overlay::open_tunnels(&mut topology, workers)?;
        let pipeline = Pipeline::new(topology.pipeline_spec())?;
        // The one part of the DNS service that can fail, before anything is made.
        let upstream = match serve_dns {
            true => crate::dns::DnsService::open_upstream(&topology).map_err(|source| {
                StartError::Io {
                    what: "open the DNS service's socket to its upstream servers",
                    source,
                }
            })?,
            false => None,
        };
        // Host interfaces (`parent`) are attached before anything is made: one that
        // is missing stops here with nothing to undo.
        let parents = crate::topology::parent::open_all(&topology)?;
        let mut deployment = Deployment::create(&topology, run_root)?;
        // Worker w gets queue w of every TAP; ports are numbered in the order the
        // deployment made their TAPs, which is the topology's.
        let mut queues: Vec<Vec<Box<dyn Port>>> = (0..workers).map(|_| Vec::new()).collect();
        let mut taps = deployment.take_ports().into_iter();
        for ep in topology.endpoints.iter().filter(|e| e.shares.is_none()) {
            let ports =
                crate::topology::setup::endpoint_ports(ep, &mut taps).map_err(|source| {
                    StartError::Io {
                        what: "open the ports of a trunk's VLANs",
                        source,
                    }
                })?;
            for (_, port) in ports {
                for (w, q) in port.into_iter().enumerate() {
                    queues[w % workers].push(q);
                }
            }
        }
        // The parents' ports are numbered after every TAP's.
        for (id, port) in parents {
            debug_assert_eq!(queues[0].len(), id.index(), "parent ports follow the TAPs");
            for (w, q) in port.into_queues().into_iter().enumerate() {
                queues[w % workers].push(Box::new(q));
            }
        }
        // Then the overlay networks' tunnels, numbered after the parents.
        for tunnel in tunnels {
            for (w, q) in tunnel.into_queues().into_iter().enumerate() {
                queues[w % workers].push(Box::new(q));
            }
        }
        let opts = Options {
            busy_poll: std::time::Duration::from_micros(topology.busy_poll_us),
            adaptive: topology.adaptive_poll,
            pin: topology.steering == crate::topology::config::Steering::Cpu,
            io: topology.io,
        };
        let mut running = Dataplane::new(pipeline, queues, opts)
            .spawn()
            .map_err(|source| StartError::Io {
                what: "start the dataplane workers",
                source,
            })?;
        let link = if serve_dns {
            running.take_service_link()
        } else {
            None
        };
        let dns = match link {
            Some(link) => Some(
                crate::dns::DnsService::start_with(link, &topology, upstream).map_err(
                    |source| StartError::Io {
                        what: "start the DNS service",
                        source,
                    },
                )?,
            ),
            None => None,
        };
        let dns_handle = dns.as_ref().map(crate::dns::DnsService::handle);
        let live = LiveTopology::new(topology.clone());
        let exporter = match metrics {
            Some(l) => Some(
                metrics::Exporter::start(
                    l,
                    &deployment.run_dir().metrics_socket(),
                    running.handle(),
                    live.clone(),
                    dns_handle.clone(),
                )
                .map_err(|source| StartError::Io {
                    what: "start the metrics endpoint",
                    source,
                })?,
            ),
            None => None,
        };
        let socket = deployment.run_dir().socket();
        let watched = Watched::of(&topology, &deployment);
        let deployment = Arc::new(Mutex::new(Some(deployment)));
        let (changer, changes) = change::Changer::start(
            live.clone(),
            deployment.clone(),
            running.handle(),
            watched.clone(),
            dns_handle.clone(),
        )
        .map_err(|source| StartError::Io {
            what: "start the change thread",
            source,
        })?;
        let instance = server::Instance {
            topology: live.clone(),
            changes: Some(changes),
            dns: dns_handle,
        };
        let server = Server::start(&socket, running.handle(), instance).map_err(|source| {
            StartError::Io {
                what: "bind the control socket",
                source,
            }
        })?;
        changer.notify(server.waker());
        let watch = NamespaceWatch::start(watched, running.handle());
        Ok(Switchyard {
            live,
            socket,
            watch: Some(watch),
            metrics: exporter,
            server: Some(server),
            changer: Some(changer),
            dns,
            dataplane: Some(running),
            deployment,
        })
    }

    /// The topology the instance runs now (with the changes made while it runs).
    pub fn topology(&self) -> Topology {
        self.live.get()
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

    /// The service thread's end of the dataplane's punt path (DNS queries to the
    /// gateways): `Some` once, for an instance started without its DNS service
    /// ([`Switchyard::start_without_dns`]; see [`dataplane::punt`]).
    pub fn take_service_link(&mut self) -> Option<dataplane::punt::ServiceLink> {
        self.dataplane.as_mut()?.take_service_link()
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
        if let Some(c) = self.changer.take() {
            c.stop();
        }
        if let Some(d) = self.dns.take() {
            d.stop();
        }
        let dataplane = match self.dataplane.take() {
            Some(d) => d.stop(),
            None => Ok(()),
        };
        let deployment = self
            .deployment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let removed = match deployment {
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

/// The namespaces the watch looks after: each one's path, identity (device and
/// inode) and ports. Shared with the change thread, which adds and removes entries
/// as endpoints come and go.
#[derive(Clone, Default)]
pub struct Watched(Arc<Mutex<Vec<WatchedNs>>>);

struct WatchedNs {
    path: PathBuf,
    id: (u64, u64),
    ports: Vec<PortId>,
}

impl Watched {
    /// The namespaces of a topology just deployed.
    fn of(t: &Topology, d: &Deployment) -> Watched {
        let w = Watched::default();
        w.add_endpoints(t, t.endpoints.iter().map(|e| e.name.as_str()), Some(d));
        w
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WatchedNs>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the namespaces of the endpoints named (created ones by their
    /// recorded identity when `d` is given, else by what the path is now).
    fn add_endpoints<'a>(
        &self,
        t: &Topology,
        names: impl Iterator<Item = &'a str>,
        d: Option<&Deployment>,
    ) {
        let mut list = self.lock();
        for name in names {
            let Some(e) = t.endpoints.iter().find(|e| e.name == name) else {
                continue;
            };
            let ports: Vec<PortId> = e.interfaces.iter().map(|i| i.port).collect();
            if ports.is_empty() {
                continue;
            }
            let path = if e.foreign {
                PathBuf::from(&e.netns)
            } else {
                match switchyard_os::netns::path_of(&e.netns) {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            };
            let recorded = d.and_then(|d| {
                d.state()
                    .namespaces
                    .iter()
                    .find(|r| r.name == e.netns)
                    .and_then(|r| r.identity)
                    .map(|id| (id.dev, id.ino))
            });
            let Some(id) = recorded.or_else(|| file_id(&path)) else {
                continue;
            };
            list.retain(|w| w.path != path);
            list.push(WatchedNs { path, id, ports });
        }
    }

    /// After a change: watches what it added (endpoints, and interfaces of endpoints
    /// that stay).
    fn add(&self, t: &Topology, diff: &Diff) {
        let names = diff
            .new_endpoints
            .iter()
            .map(String::as_str)
            .chain(diff.new_interfaces.iter().map(|(e, _)| e.as_str()));
        self.add_endpoints(t, names, None);
    }

    /// Before a change removes `ports`: they are no longer looked after, and a
    /// namespace left without ports is no longer watched.
    fn forget(&self, ports: &[PortId]) {
        let mut list = self.lock();
        for w in list.iter_mut() {
            w.ports.retain(|p| !ports.contains(p));
        }
        list.retain(|w| !w.ports.is_empty());
    }
}

/// The device and inode of a file, if it exists.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Watches the endpoints' namespaces: when one is removed from under switchyard
/// (`ip netns del`, a container runtime deleting its namespace, or one replaced by
/// another of the same name), its ports are marked down — their TAPs closed, so the
/// namespace can go — and the rest keeps switching. A plain `stat` of each path
/// twice a second; logged once per namespace.
struct NamespaceWatch {
    stop: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the namespaces are looked at.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl NamespaceWatch {
    fn start(watched: Watched, dp: dataplane::Handle) -> NamespaceWatch {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("switchyard-nswatch".into())
            .spawn(move || loop {
                match rx.recv_timeout(WATCH_EVERY) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                // Under the lock, so a change never removes a port while it is
                // being marked down here.
                watched.lock().retain(|w| {
                    if file_id(&w.path) == Some(w.id) {
                        return true;
                    }
                    let name = w.path.display();
                    let why = format!("its network namespace {name} was removed");
                    tracing::warn!(
                        "network namespace {name} was removed from under switchyard: its \
                         port(s) are down, the rest keeps switching"
                    );
                    for &p in &w.ports {
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
