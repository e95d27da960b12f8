//! `control` — running a switch and talking to it.
//!
//! [`Switchyard`] is a whole running instance: the deployed topology (namespaces and
//! TAPs), the dataplane thread and the control socket. The CLI verbs (`up`, `down`,
//! `show`, `check`) live in [`cli`]; the socket protocol in [`protocol`] (its schema
//! is `docs/control-protocol.md`), with its two ends in [`server`] and [`client`] and
//! the tables people read in [`render`]. Problems met while running or stopping are
//! logged through `tracing`; the program decides where logs go.

pub mod cli;
pub mod client;
pub mod protocol;
pub mod render;
pub mod server;

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
    // Dropped in this order: socket first, then the dataplane (closing the TAPs),
    // then the namespaces.
    server: Option<Server>,
    dataplane: Option<dataplane::Running>,
    deployment: Option<Deployment>,
}

impl Switchyard {
    /// Creates everything `topology` describes and starts switching. On failure,
    /// whatever was created is removed before the error returns.
    pub fn start(topology: Topology, run_root: &Path) -> Result<Switchyard, StartError> {
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
        let socket = deployment.run_dir().socket();
        let server =
            Server::start(&socket, running.handle(), port_info(&topology)).map_err(|source| {
                StartError::Io {
                    what: "bind the control socket",
                    source,
                }
            })?;
        Ok(Switchyard {
            topology,
            socket,
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

    fn stop_inner(&mut self) -> Result<Vec<String>, SetupError> {
        if let Some(s) = self.server.take() {
            s.stop();
        }
        if let Some(d) = self.dataplane.take() {
            if let Err(e) = d.stop() {
                tracing::error!("the dataplane stopped with an error: {e}");
            }
        }
        match self.deployment.take() {
            Some(d) => d.teardown(),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            tracing::error!("cleanup incomplete: {e}");
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
