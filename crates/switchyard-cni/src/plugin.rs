//! ADD, DEL and CHECK: each one or two requests to the running switchyard over its
//! control socket, and what the answers mean in CNI terms.
//!
//! * ADD asks for an endpoint in the container's namespace (`endpoint_create` with
//!   `netns` and `ifname`, and the container's name and `aliases` as DNS names);
//!   switchyard adds the interface, its address and its routes there and answers
//!   with the endpoint, which becomes the result, with the DNS server and domain of
//!   the network (`network_inspect`) when it serves DNS.
//! * DEL removes that endpoint (`endpoint_rm`) after making sure it is the one this
//!   container's ADD made (`endpoint_ls`): attached by path (`foreign`), and, when
//!   the runtime names the namespace, in that namespace — or in a namespace that no
//!   longer exists. Anything already gone — the endpoint, the namespace, switchyard
//!   itself — is success, as the spec asks of DEL.
//! * An endpoint of the container's name whose namespace no longer exists is stale
//!   (the runtime lost the container's network without a DEL, e.g. it was killed):
//!   ADD removes it and creates the endpoint again, so a restarted container is not
//!   refused forever.
//! * CHECK reads the endpoint (`endpoint_ls`) and its port (`show ports`) and compares
//!   them with the `prevResult`: the same MAC and address, and the port up (a port
//!   whose interface or namespace went away is marked down by switchyard, so this
//!   covers the interface inside the namespace without entering it).

use crate::config::NetConf;
use crate::env::{clip, Env};
use crate::error::{code, CniError};
use crate::result::{interface, CniResult, Dns, PrevResult};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use switchyard::control::client::{self, ClientError};
use switchyard::control::protocol::{
    EndpointCreate, EndpointRow, ErrorCode, Reply, Request, Table,
};
use switchyard::topology::config::dns::MAX_ALIASES;
use switchyard::topology::config::parse_dns_name;

/// One request to the instance the config names.
fn ask(conf: &NetConf, req: &Request) -> Result<Reply, ClientError> {
    client::request(&conf.socket(), req)
}

/// True when the failure means no instance is listening: no socket file, or a
/// socket nobody accepts on (left behind by a crash).
fn not_running(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Connect { source, .. }
            if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
    )
}

fn not_running_msg(conf: &NetConf) -> String {
    format!(
        "switchyard is not running with prefix {} (no control socket at {}): start \
         `switchyard up` first",
        conf.prefix,
        conf.socket().display()
    )
}

/// A failure to get an answer, or a refusal, in CNI terms. `what` says what was
/// asked, for the message.
fn switch_error(conf: &NetConf, what: &str, e: ClientError) -> CniError {
    if not_running(&e) {
        return CniError::new(code::TRY_AGAIN_LATER, not_running_msg(conf));
    }
    match e {
        ClientError::Remote { code: c, message } => {
            let cni = match c {
                // Transient: every client slot taken, or the instance stopping.
                ErrorCode::Busy | ErrorCode::DataplaneStopped => code::TRY_AGAIN_LATER,
                // The config names a network switchyard does not have.
                ErrorCode::NotFound => code::INVALID_CONFIG,
                ErrorCode::SetupFailed => code::IO_FAILURE,
                ErrorCode::UnknownRequest
                | ErrorCode::UnsupportedVersion
                | ErrorCode::BadRequest => code::SWITCHYARD_MISMATCH,
                ErrorCode::Invalid
                | ErrorCode::InUse
                | ErrorCode::UnknownPort
                | ErrorCode::TooLarge
                | ErrorCode::Internal
                | ErrorCode::Other => code::REFUSED,
            };
            CniError::new(cni, format!("switchyard refused to {what}: {message}"))
                .with_details(format!("control socket error code {c}"))
        }
        ClientError::Version { .. } => {
            CniError::new(code::SWITCHYARD_MISMATCH, format!("cannot {what}: {e}"))
        }
        ClientError::Io { ref source, .. }
            if matches!(source.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            CniError::new(
                code::TRY_AGAIN_LATER,
                format!("cannot {what}: switchyard did not answer in time ({e})"),
            )
        }
        ClientError::Connect { .. } | ClientError::Io { .. } | ClientError::BadResponse { .. } => {
            CniError::new(code::IO_FAILURE, format!("cannot {what}: {e}"))
        }
    }
}

/// Every endpoint of the instance.
fn endpoints(conf: &NetConf) -> Result<Vec<EndpointRow>, ClientError> {
    match ask(conf, &Request::EndpointLs {})? {
        Reply::Endpoints(rows) => Ok(rows),
        other => Err(unexpected(conf, "endpoints", &other)),
    }
}

fn unexpected(conf: &NetConf, wanted: &str, got: &Reply) -> ClientError {
    ClientError::BadResponse {
        path: conf.socket().display().to_string(),
        reason: format!("expected a {wanted:?} reply, got {:?}", got.name()),
    }
}

/// True if the namespace the runtime names is the one `row` was attached by.
/// switchyard may record a namespace under `/run/netns` by its name alone.
fn same_netns(row: &EndpointRow, netns: &str) -> bool {
    if row.netns == netns {
        return true;
    }
    let p = Path::new(netns);
    p.parent() == Some(Path::new("/run/netns"))
        && p.file_name().and_then(|n| n.to_str()) == Some(row.netns.as_str())
}

/// The namespace file an endpoint row names: its path, or a name under /run/netns.
fn netns_path(row: &EndpointRow) -> PathBuf {
    if row.netns.starts_with('/') {
        PathBuf::from(&row.netns)
    } else {
        Path::new("/run/netns").join(&row.netns)
    }
}

/// True if `row` is an endpoint attached by path whose namespace is gone: its
/// namespace file does not exist any more (a bind mount under /run/netns removed, a
/// process's namespace gone). Only "not found" counts; any other failure to look
/// leaves the endpoint alone.
fn stale(row: &EndpointRow) -> bool {
    row.foreign
        && std::fs::symlink_metadata(netns_path(row))
            .is_err_and(|e| e.kind() == ErrorKind::NotFound)
}

/// True if `row` is the endpoint this container's ADD made (or a stale one of its
/// name): attached by path, in `netns` if the runtime names one.
fn containers(row: &EndpointRow, netns: &str) -> bool {
    row.foreign && (netns.is_empty() || same_netns(row, netns) || stale(row))
}

/// ADD: an endpoint for the container's interface; the result describes it.
pub fn add(env: &Env, conf: &NetConf) -> Result<CniResult, CniError> {
    match create(env, conf)? {
        Created::Done(result) => Ok(result),
        Created::Stale => {
            // The stale endpoint is removed and the endpoint created once more; a
            // second refusal is final.
            let what = format!("remove the stale endpoint {}", env.endpoint_name());
            match ask(
                conf,
                &Request::EndpointRm {
                    name: env.endpoint_name(),
                },
            ) {
                Ok(_) => {}
                Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
                Err(e) => return Err(switch_error(conf, &what, e)),
            }
            match create(env, conf)? {
                Created::Done(result) => Ok(result),
                Created::Stale => Err(already_attached(env)),
            }
        }
    }
}

/// What one `endpoint_create` came to.
enum Created {
    Done(CniResult),
    /// Refused: an endpoint of this name exists and its namespace is gone.
    Stale,
}

fn already_attached(env: &Env) -> CniError {
    CniError::new(
        code::ALREADY_ATTACHED,
        format!(
            "container {} already has an endpoint {} on switchyard (interface {}): DEL it \
             before adding it again",
            short(env),
            env.endpoint_name(),
            env.ifname
        ),
    )
}

fn create(env: &Env, conf: &NetConf) -> Result<Created, CniError> {
    let publish = conf.publish()?;
    let name = env.endpoint_name();
    let req = Request::EndpointCreate(EndpointCreate {
        name: name.clone(),
        network: conf.network.clone(),
        ip: env.args.ip.map(|ip| ip.to_string()),
        mac: env.args.mac.clone(),
        publish,
        netns: Some(env.netns.clone()),
        ifname: Some(env.ifname.clone()),
        aliases: aliases(env, conf),
        handover: false,
    });
    let what = format!(
        "attach container {} to network {}",
        short(env),
        clip(&conf.network)
    );
    match ask(conf, &req) {
        Ok(Reply::Endpoint(row)) => {
            let mut result =
                CniResult::from_endpoint(conf.cni_version, &row, &env.ifname, &env.netns)?;
            result.dns = network_dns(conf);
            Ok(Created::Done(result))
        }
        Ok(other) => Err(switch_error(
            conf,
            &what,
            unexpected(conf, "endpoint", &other),
        )),
        Err(e) if e.code() == Some(ErrorCode::Invalid) => {
            // The refusal's words are for people; whether the endpoint exists is
            // asked, not read from them.
            let rows = endpoints(conf).unwrap_or_default();
            match rows.iter().find(|r| r.name == name) {
                Some(row) if stale(row) && !same_netns(row, &env.netns) => Ok(Created::Stale),
                Some(row) if !row.foreign => Err(CniError::new(
                    code::ALREADY_ATTACHED,
                    format!(
                        "switchyard's own endpoint {name} (of its config, in namespace {}) \
                         has the name container {} needs: rename that endpoint",
                        row.netns,
                        short(env)
                    ),
                )),
                Some(_) => Err(already_attached(env)),
                None => Err(switch_error(conf, &what, e)),
            }
        }
        Err(e) => Err(switch_error(conf, &what, e)),
    }
}

/// The endpoint's DNS names: the container's name (`K8S_POD_NAME`) and the
/// `aliases` capability's names for this network, those that are DNS names, at most
/// as many as an endpoint may have.
fn aliases(env: &Env, conf: &NetConf) -> Vec<String> {
    let mut out: Vec<String> = env
        .args
        .pod_name
        .as_deref()
        .and_then(|n| parse_dns_name(n).ok())
        .into_iter()
        .collect();
    for a in conf.aliases() {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out.truncate(MAX_ALIASES);
    out
}

/// What the result tells the runtime about DNS on the container's network, from
/// `network_inspect` after the endpoint is made. The endpoint is there whatever
/// this says, so an unanswered question only leaves the result without DNS (the
/// runtime then keeps the host's resolver).
fn network_dns(conf: &NetConf) -> Dns {
    match ask(
        conf,
        &Request::NetworkInspect {
            name: conf.network.clone(),
        },
    ) {
        Ok(Reply::Network(n)) => Dns::of_network(&n),
        _ => Dns::default(),
    }
}

/// The container id as messages quote it.
fn short(env: &Env) -> &str {
    &env.container_id[..env.container_id.len().min(12)]
}

/// DEL: the container's endpoint removed, if it is there and is the container's.
pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let name = env.endpoint_name();
    let what = format!("detach container {}", short(env));
    let rows = match endpoints(conf) {
        Ok(rows) => rows,
        // A stopped switchyard has torn down every endpoint and keeps no
        // reservations: nothing of this container is left.
        Err(e) if not_running(&e) => return Ok(()),
        Err(e) => return Err(switch_error(conf, &what, e)),
    };
    let Some(row) = rows.iter().find(|r| r.name == name) else {
        return Ok(());
    };
    // An endpoint of the config file (not attached by path), or one attached in
    // another namespace that still exists, is not this container's: it is left
    // alone, and this container's own is already gone.
    if !containers(row, &env.netns) {
        return Ok(());
    }
    match ask(conf, &Request::EndpointRm { name }) {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(ErrorCode::NotFound) || not_running(&e) => Ok(()),
        Err(e) => Err(switch_error(conf, &what, e)),
    }
}

/// CHECK: the endpoint still there as ADD made it, and its port up.
pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let failed = |m: String| CniError::new(code::CHECK_FAILED, m);
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs the prevResult of ADD in the network config",
        )
    })?;
    let prev = PrevResult::parse(prev)?;
    let (want_mac, want_ips) = prev.for_interface(&env.ifname, &env.netns).ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            format!(
                "prevResult has no interface {} in {}: not a result of this plugin's ADD",
                env.ifname, env.netns
            ),
        )
    })?;
    let name = env.endpoint_name();
    let what = format!("check container {}", short(env));
    let rows = endpoints(conf).map_err(|e| {
        if not_running(&e) {
            failed(not_running_msg(conf))
        } else {
            switch_error(conf, &what, e)
        }
    })?;
    let row = rows.iter().find(|r| r.name == name).ok_or_else(|| {
        failed(format!(
            "switchyard has no endpoint {name} for container {}",
            short(env)
        ))
    })?;
    if !row.foreign || !same_netns(row, &env.netns) {
        return Err(failed(format!(
            "endpoint {name} is not attached to {} (switchyard has it in {})",
            env.netns, row.netns
        )));
    }
    let i = interface(row, &env.ifname)
        .ok_or_else(|| failed(format!("endpoint {name} has no interface {}", env.ifname)))?;
    if i.network != conf.network {
        return Err(failed(format!(
            "endpoint {name} is on network {}, not {}",
            i.network,
            clip(&conf.network)
        )));
    }
    if !i.mac.eq_ignore_ascii_case(want_mac) {
        return Err(failed(format!(
            "{} of endpoint {name} has MAC {}, ADD gave {want_mac}",
            env.ifname, i.mac
        )));
    }
    if !want_ips.contains(&i.ip.as_str()) {
        return Err(failed(format!(
            "{} of endpoint {name} has address {}, ADD gave {}",
            env.ifname,
            i.ip,
            want_ips.join(", ")
        )));
    }
    let ports = match ask(
        conf,
        &Request::Show {
            table: Table::Ports,
        },
    ) {
        Ok(Reply::Ports(rows)) => rows,
        Ok(other) => return Err(switch_error(conf, &what, unexpected(conf, "ports", &other))),
        Err(e) => return Err(switch_error(conf, &what, e)),
    };
    let port = ports.iter().find(|p| p.port == i.port).ok_or_else(|| {
        failed(format!(
            "switchyard has no port {} for endpoint {name}",
            i.port
        ))
    })?;
    // An empty state comes from a switchyard older than port states: it runs.
    if !(port.state.is_empty() || port.state == "up") {
        return Err(failed(format!(
            "port {} of endpoint {name} is {}{}",
            port.port,
            port.state,
            port.down_reason
                .as_deref()
                .map_or_else(String::new, |r| format!(": {r}"))
        )));
    }
    Ok(())
}
