//! Changing a running instance: networks and endpoints created and removed, joins
//! and routes added and removed, while the workers keep switching.
//!
//! Changes are carried out one at a time on a thread of their own (making a
//! namespace takes milliseconds; the control socket's thread keeps answering others
//! meanwhile). Each goes through the same steps:
//!
//! 1. **Check.** The change is made to the config file of what runs now and the result
//!    validated as a file is ([`crate::topology::edit`]): refused, nothing happens.
//! 2. **Make.** New namespaces, TAPs, addresses and routes are made. If that fails,
//!    what was made is removed and the change is refused (`setup_failed`).
//! 3. **Switch.** The pipeline's new layout is built over the same tables
//!    ([`Pipeline::reshape`]) and every worker takes it up between two batches, with
//!    its queues of the new ports and without those of the removed ones
//!    ([`dataplane::Handle::reshape`]). Nothing stops: a worker finishes its batch
//!    on the old layout and starts the next on the new one.
//! 4. **Forget.** Once every worker has switched, nothing uses a removed port or
//!    network any more: its FDB and neighbor entries, packets waiting for it and its
//!    connections (its published ports' flows among them) are forgotten, then its
//!    namespace is deleted — only one switchyard made — with the resolv.conf written
//!    for it; the resolv.conf of endpoints connected or disconnected is rewritten.
//! 5. **Publish.** The new topology is what `show config`, `network inspect` and the
//!    metrics describe from then on, and what the namespace watch looks after.

use super::protocol::*;
use super::snapshot::LiveTopology;
use crate::dataplane::{self, NewPort};
use crate::topology::edit::{Diff, Edit, EditError};
use crate::topology::{Deployment, Topology};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchyard_core::pipeline::{DomainMode, Forgotten, Layout, Pipeline};
use switchyard_os::port::Port;

/// Changes waiting to be carried out; more are refused as `busy`.
pub const QUEUE: usize = 16;
/// How long a change waits for every worker to take up the new layout.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A change and where its answer goes.
struct Job {
    edit: Edit,
    answer: Sender<Response>,
}

/// Where the control socket sends changes.
#[derive(Clone)]
pub struct Changes {
    jobs: Sender<Job>,
}

impl Changes {
    /// Queues the change `req` asks for; the answer comes on the receiver. Refused
    /// as `busy` while [`QUEUE`] changes wait.
    pub fn submit(&self, req: &Request) -> Result<Receiver<Response>, ErrorReply> {
        let edit = edit_of(req).ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::BadRequest,
                format!("{} is not a change", req.name()),
            )
        })?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        match self.jobs.try_send(Job { edit, answer: tx }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(ErrorReply::new(
                ErrorCode::Busy,
                format!("{QUEUE} changes are waiting already; try again"),
            )),
            Err(TrySendError::Disconnected(_)) => Err(ErrorReply::new(
                ErrorCode::DataplaneStopped,
                "the instance is stopping",
            )),
        }
    }
}

/// The thread that carries out changes.
pub struct Changer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Wakes the control socket's loop when an answer is ready.
    notify: Arc<OnceLock<Arc<mio::Waker>>>,
}

/// What the changer works on.
struct Instance {
    live: LiveTopology,
    deployment: Arc<Mutex<Option<Deployment>>>,
    dp: dataplane::Handle,
    watch: super::Watched,
    /// The DNS service, told of every change before it is answered.
    dns: Option<crate::dns::DnsHandle>,
}

impl Changer {
    /// Starts the thread. It changes `deployment` (which the instance tears down at
    /// exit, runtime additions included) and `live`.
    pub fn start(
        live: LiveTopology,
        deployment: Arc<Mutex<Option<Deployment>>>,
        dp: dataplane::Handle,
        watch: super::Watched,
        dns: Option<crate::dns::DnsHandle>,
    ) -> std::io::Result<(Changer, Changes)> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let notify: Arc<OnceLock<Arc<mio::Waker>>> = Arc::default();
        let wake = notify.clone();
        let inst = Instance {
            live,
            deployment,
            dp,
            watch,
            dns,
        };
        let thread = std::thread::Builder::new()
            .name("switchyard-change".into())
            .spawn(move || {
                for job in rx {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inst.carry_out(&job.edit)
                    }))
                    .unwrap_or_else(|_| {
                        tracing::error!("carrying out a change panicked");
                        Err(ErrorReply::new(
                            ErrorCode::Internal,
                            "switchyard failed while carrying out the change",
                        ))
                    });
                    let _ = job.answer.send(match r {
                        Ok(reply) => Response::ok(reply),
                        Err(e) => Response::error(e),
                    });
                    // The client gets its answer now, not at the socket's next poll.
                    if let Some(w) = wake.get() {
                        let _ = w.wake();
                    }
                }
            })?;
        Ok((
            Changer {
                jobs: Some(tx.clone()),
                thread: Some(thread),
                notify,
            },
            Changes { jobs: tx },
        ))
    }

    /// Wakes `waker` (the control socket's) whenever a change has been answered.
    pub fn notify(&self, waker: Arc<mio::Waker>) {
        let _ = self.notify.set(waker);
    }

    /// Waits for the change under way, if any, and stops. Changes still queued are
    /// dropped (their clients are told the instance stops). Call after the control
    /// socket is closed, so no new ones come.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the change thread panicked");
            }
        }
    }
}

impl Drop for Changer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The change a request asks for, if it asks for one.
fn edit_of(req: &Request) -> Option<Edit> {
    Some(match req {
        Request::NetworkCreate(n) => Edit::NetworkCreate {
            name: n.name.clone(),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            mtu: n.mtu,
            masquerade: n.masquerade,
            internal: n.internal,
            icc: n.icc,
            dns: n.dns,
            dns_domain: n.dns_domain.clone(),
        },
        Request::NetworkRm { name } => Edit::NetworkRm { name: name.clone() },
        Request::NetworkConnect(c) => Edit::Connect {
            network: c.network.clone(),
            endpoint: c.endpoint.clone(),
            ip: c.ip.clone(),
            ifname: c.ifname.clone(),
        },
        Request::NetworkDisconnect { network, endpoint } => Edit::Disconnect {
            network: network.clone(),
            endpoint: endpoint.clone(),
        },
        Request::EndpointCreate(e) => Edit::EndpointCreate {
            name: e.name.clone(),
            network: e.network.clone(),
            ip: e.ip.clone(),
            mac: e.mac.clone(),
            publish: e.publish.clone(),
            netns: e.netns.clone(),
            ifname: e.ifname.clone(),
            aliases: e.aliases.clone(),
            handover: e.handover,
        },
        Request::EndpointRm { name } => Edit::EndpointRm { name: name.clone() },
        Request::AllowAdd { a, b } => Edit::AllowAdd {
            a: a.clone(),
            b: b.clone(),
        },
        Request::AllowRm { a, b } => Edit::AllowRm {
            a: a.clone(),
            b: b.clone(),
        },
        Request::RouteAdd { prefix, via } => Edit::RouteAdd {
            prefix: prefix.clone(),
            via: via.clone(),
        },
        Request::RouteRm { prefix, via } => Edit::RouteRm {
            prefix: prefix.clone(),
            via: via.clone(),
        },
        _ => return None,
    })
}

fn refused(e: EditError) -> ErrorReply {
    let code = match e {
        EditError::Invalid(_) => ErrorCode::Invalid,
        EditError::NotFound(_) => ErrorCode::NotFound,
        EditError::InUse(_) => ErrorCode::InUse,
    };
    ErrorReply::new(code, e.to_string())
}

fn setup_failed(e: impl std::fmt::Display) -> ErrorReply {
    ErrorReply::new(ErrorCode::SetupFailed, e.to_string())
}

impl Instance {
    /// Carries out one change (the steps of the module's documentation).
    fn carry_out(&self, edit: &Edit) -> Result<Reply, ErrorReply> {
        let running = self.live.get();
        // 1. Check.
        let next = edit.apply(&running).map_err(refused)?;
        let diff = Diff::between(&running, &next);
        // 2. Make.
        let made = self.make(&next, &diff)?;
        // 3. Switch.
        let layout = match self.dp.tables(|v| v.pipeline.reshape(next.pipeline_spec())) {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                self.unmake(&next, &diff);
                return Err(ErrorReply::new(
                    ErrorCode::Invalid,
                    format!("the pipeline refuses the change: {e}"),
                ));
            }
            Err(dataplane::NotRunning) => {
                self.unmake(&next, &diff);
                return Err(not_running());
            }
        };
        let gone: Vec<_> = diff.gone_ports.iter().map(|g| g.port).collect();
        // The namespace watch lets go of what goes before it goes (a removed
        // namespace is not a port going down).
        self.watch.forget(&gone);
        let applied = self
            .dp
            .reshape(adopt(layout), made, gone)
            .map_err(|_| not_running())?;
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        while !applied.everywhere() {
            if Instant::now() > deadline {
                return Err(ErrorReply::new(
                    ErrorCode::Internal,
                    "the workers did not take up the change in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Here, not on a worker: closing a TAP queue waits for the kernel.
        applied.close_retired();
        // 4. Forget.
        let mut forgotten = ForgottenRow::default();
        let add = |f: &mut ForgottenRow, x: Forgotten| {
            f.fdb += x.fdb;
            f.neighbors += x.neighbors;
            f.held += x.held;
            f.conntrack += x.conntrack;
        };
        let _ = self.dp.tables(|v| {
            for g in &diff.gone_ports {
                add(
                    &mut forgotten,
                    v.pipeline
                        .forget_port(g.port, g.domain, Some(g.ip), Some(g.mac)),
                );
            }
            for &d in &diff.gone_networks {
                add(&mut forgotten, v.pipeline.forget_domain(d));
            }
        });
        let mut left = Vec::new();
        if let Some(dep) = self.deployment().as_mut() {
            for e in &diff.gone_endpoints {
                if let Err(err) = dep.remove_endpoint(e) {
                    tracing::warn!("endpoint {} removed, but: {err}", e.name);
                    left.push(err.to_string());
                }
            }
            // The resolv.conf of an endpoint whose DNS networks changed (connect,
            // disconnect) says so now; a new endpoint's was written with it.
            if let Err(err) = dep.sync_resolv(&next) {
                tracing::warn!("{}, but: {err}", edit.describe());
                left.push(err.to_string());
            }
        }
        // 5. Publish.
        self.watch.add(&next, &diff);
        if let Some(d) = &self.dns {
            d.publish(&next);
        }
        self.live.set(next.clone());
        tracing::info!("{}", edit.describe());
        let mut change = edit.describe();
        for l in left {
            change.push_str(&format!("; {l}"));
        }
        Ok(match edit {
            Edit::NetworkCreate { name, .. } => Reply::Network(network_row(&next, name)),
            Edit::Connect { endpoint, .. } | Edit::EndpointCreate { name: endpoint, .. } => {
                Reply::Endpoint(endpoint_row(&next, endpoint))
            }
            _ => Reply::Changed(Changed { change, forgotten }),
        })
    }

    fn deployment(&self) -> std::sync::MutexGuard<'_, Option<Deployment>> {
        self.deployment.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the namespaces and TAPs a change adds; on failure, removes what it made.
    fn make(&self, next: &Topology, diff: &Diff) -> Result<Vec<NewPort>, ErrorReply> {
        let mut guard = self.deployment();
        let dep = guard.as_mut().ok_or_else(not_running)?;
        let mut made = Vec::new();
        let result = (|| {
            for name in &diff.new_endpoints {
                let e = endpoint(next, name);
                let taps = dep.add_endpoint(next, e)?;
                let ports = crate::topology::setup::endpoint_ports(e, &mut taps.into_iter())
                    .map_err(|err| crate::topology::SetupError::Endpoint {
                        endpoint: e.name.clone(),
                        what: "open the ports of its trunk's VLANs".into(),
                        source: Box::new(err),
                    })?;
                for (i, queues) in ports {
                    made.push(NewPort {
                        id: i.port,
                        name: Topology::port_name(e, i),
                        queues,
                    });
                }
            }
            for (name, ifname) in &diff.new_interfaces {
                let e = endpoint(next, name);
                let i = e
                    .interfaces
                    .iter()
                    .find(|i| &i.ifname == ifname)
                    .expect("the diff names interfaces of the topology");
                let taps = dep.add_interfaces(next, e, &[i])?;
                for tap in taps {
                    made.push(new_port(Topology::port_name(e, i), i.port, tap));
                }
            }
            Ok::<_, crate::topology::SetupError>(())
        })();
        match result {
            Ok(()) => Ok(made),
            Err(err) => {
                // The TAPs made go with their file descriptors.
                drop(made);
                remove_new(dep, next, diff);
                Err(setup_failed(err))
            }
        }
    }

    /// Undoes [`Instance::make`] after the pipeline refused the change (the TAPs
    /// were dropped with the ports already).
    fn unmake(&self, next: &Topology, diff: &Diff) {
        if let Some(dep) = self.deployment().as_mut() {
            remove_new(dep, next, diff);
        }
    }
}

/// Removes the namespaces made for the endpoints a change adds. Only namespaces the
/// deployment recorded are deleted, so one not made yet (or someone else's of the same
/// name, which `add_endpoint` refused) is left alone.
fn remove_new(dep: &mut Deployment, next: &Topology, diff: &Diff) {
    for name in &diff.new_endpoints {
        let _ = dep.remove_endpoint(endpoint(next, name));
    }
}

fn not_running() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::DataplaneStopped,
        "the dataplane is not running (its workers stopped; the log of `switchyard up` says why)",
    )
}

fn endpoint<'a>(t: &'a Topology, name: &str) -> &'a crate::topology::Endpoint {
    t.endpoints
        .iter()
        .find(|e| e.name == name)
        .expect("the diff names endpoints of the topology")
}

fn new_port(
    name: String,
    id: switchyard_core::pipeline::PortId,
    tap: switchyard_os::port::tap::TapPort,
) -> NewPort {
    NewPort {
        id,
        name,
        queues: tap
            .into_queues()
            .into_iter()
            .map(|q| Box::new(q) as Box<dyn Port>)
            .collect(),
    }
}

/// How each worker's pipeline takes up `layout`.
fn adopt(layout: Layout) -> dataplane::AdoptFn {
    Arc::new(move |p: &mut Pipeline| p.adopt(&layout))
}

/// `network inspect NAME`: the network and what is attached to it.
pub fn network_row(t: &Topology, name: &str) -> NetworkRow {
    let (at, n) = t
        .networks
        .iter()
        .enumerate()
        .find(|(_, n)| n.name == name)
        .expect("a network of the topology");
    NetworkRow {
        name: n.name.clone(),
        subnet: n.subnet.to_string(),
        gateway: n.gateway.map(|g| g.ip.to_string()),
        mtu: n.mtu,
        mode: match n.mode {
            DomainMode::Bridge => "bridge",
            DomainMode::L3 => "l3",
        }
        .into(),
        masquerade: n.masquerade,
        external: n.external,
        internal: n.internal,
        icc: n.guard.icc,
        dns: n.serves_dns(),
        dns_domain: n.dns_domain.clone(),
        endpoints: t
            .interfaces()
            .filter(|(_, i)| i.network == at)
            .map(|(e, i)| AttachedRow {
                endpoint: e.name.clone(),
                port: Topology::port_name(e, i),
                interface: i.ifname.clone(),
                mac: i.mac.to_string(),
                ip: format!("{}/{}", i.ip, n.subnet.prefix_len()),
            })
            .collect(),
    }
}

/// Every network (`network ls`), in the order of the config file.
pub fn network_rows(t: &Topology) -> Vec<NetworkRow> {
    t.networks.iter().map(|n| network_row(t, &n.name)).collect()
}

/// One endpoint as the protocol describes it.
pub fn endpoint_row(t: &Topology, name: &str) -> EndpointRow {
    let (at, e) = t
        .endpoints
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == name)
        .expect("an endpoint of the topology");
    EndpointRow {
        name: e.name.clone(),
        netns: e.netns.clone(),
        foreign: e.foreign,
        handover: e.handover,
        interfaces: e
            .interfaces
            .iter()
            .map(|i| {
                let n = &t.networks[i.network];
                InterfaceRow {
                    ifname: i.ifname.clone(),
                    network: n.name.clone(),
                    port: Topology::port_name(e, i),
                    mac: i.mac.to_string(),
                    ip: format!("{}/{}", i.ip, n.subnet.prefix_len()),
                    gateway: n.gateway.map(|g| g.ip.to_string()),
                    mtu: n.mtu,
                }
            })
            .collect(),
        publish: t
            .publish
            .iter()
            .filter(|p| p.endpoint == at)
            .map(|p| {
                let proto = if p.rule.udp { "udp" } else { "tcp" };
                format!("{}:{}/{proto}", p.rule.host_port, p.rule.container_port)
            })
            .collect(),
        aliases: e.aliases.clone(),
    }
}

/// Every endpoint (`endpoint ls`).
pub fn endpoint_rows(t: &Topology) -> Vec<EndpointRow> {
    t.endpoints
        .iter()
        .map(|e| endpoint_row(t, &e.name))
        .collect()
}
