//! The control protocol: how a program asks a running switchyard for its tables.
//!
//! Each instance listens on a unix stream socket, `RUN_DIR/PREFIX/control.sock`, mode
//! 0600 (only root may talk to a switch). A client writes one request as one line of
//! JSON and reads one line back; a connection may carry several requests in turn.
//! Everything that crosses the socket is a type of this module, and
//! `docs/control-protocol.md` is its schema — a test compares the two, so neither can
//! change alone.
//!
//! * [`Envelope`] wraps every request with the protocol version the client speaks:
//!   `{"version":1,"request":{"show":{"table":"fdb"}}}`. The server answers a request
//!   of any other version with [`ErrorCode::UnsupportedVersion`] naming both, so a new
//!   CLI talking to an old running instance (or the reverse) fails clearly instead of
//!   misreading the answer.
//! * [`Request`] is what is asked, one variant per verb, each an object of named
//!   arguments. A new verb is a new variant; the envelope stays as it is, and a server
//!   that does not know the verb answers [`ErrorCode::UnknownRequest`].
//! * [`Response`] carries the server's version and either `ok` with a typed [`Reply`]
//!   (`{"version":1,"ok":{"fdb":[...]}}`) or an [`ErrorCode`] with a message for people
//!   (`{"version":1,"code":"too_large","error":"..."}`).
//! * The rows ([`PortRow`], [`FdbRow`], [`CountersReport`], ...) are what `show --json`
//!   prints ([`Reply::payload`]); scripts rely on their JSON shapes.
//!
//! Nothing here knows about the command line: the CLI maps its arguments onto these
//! types, so other clients (a test, a script, a future plugin) speak the same protocol.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

mod change;
pub use change::{
    AttachedRow, Changed, EndpointCreate, EndpointRow, ForgottenRow, InterfaceRow, NetworkConnect,
    NetworkCreate, NetworkRow,
};

/// The version of the protocol this build speaks. It changes only when an existing
/// request or reply changes incompatibly; new requests, new replies, new fields in
/// reply rows and new error codes keep it (see `docs/control-protocol.md`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request line a server reads, newline excluded. A request is a few
/// dozen bytes; the cap only keeps a client from making the server buffer without end.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A request as it crosses the socket: the client's protocol version and the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

impl Envelope {
    /// `request` in the version this build speaks.
    pub fn new(request: Request) -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            request,
        }
    }
}

/// What a client asks. On the wire a request is an object with one key, its name,
/// whose value holds its arguments: `{"show":{"table":"fdb"}}`. Unknown arguments are
/// refused rather than ignored, so a misspelt option never goes unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// One of the tables `switchyard show` prints; answered by the [`Reply`] of the
    /// same name.
    Show { table: Table },
    /// Trace the next `count` frames received on `ports` (every port if empty), live:
    /// answered by a [`Reply::TraceStart`] once the workers trace, one
    /// [`Reply::Trace`] line per frame as it is switched, then a [`Reply::TraceEnd`].
    Trace {
        #[serde(default)]
        ports: Vec<String>,
        count: u32,
    },
    /// A what-if trace: the packet `packet` describes (a SPEC, see `docs/trace.md`)
    /// run through the live tables without changing them; answered by one
    /// [`Reply::Trace`], the trace of that packet as a live trace has it.
    TracePacket { packet: String },
    /// A live stream of table changes, like `conntrack -E`: answered by one
    /// [`Reply::Event`] line per change, for as long as the client reads.
    Events {},
    /// Records the frames crossing some ports, both ways (`switchyard capture`);
    /// answered by a live stream: [`Reply::CaptureStarted`], then
    /// [`Reply::CapturePackets`] and [`Reply::CaptureStatus`] lines as frames come,
    /// ending with [`Reply::CaptureEnd`].
    Capture(CaptureRequest),
    /// A new network (`switchyard network create`); answered by a [`Reply::Network`].
    NetworkCreate(NetworkCreate),
    /// Removes a network; refused with [`ErrorCode::InUse`] while endpoints are
    /// attached. Answered by a [`Reply::Changed`].
    NetworkRm { name: String },
    /// Every network; answered by [`Reply::Networks`].
    NetworkLs {},
    /// One network and the endpoints attached to it; answered by a [`Reply::Network`].
    NetworkInspect { name: String },
    /// Attaches an endpoint to one more network; answered by a [`Reply::Endpoint`].
    NetworkConnect(NetworkConnect),
    /// Detaches an endpoint from a network (its interface there is removed);
    /// answered by a [`Reply::Changed`].
    NetworkDisconnect { network: String, endpoint: String },
    /// A new endpoint; answered by a [`Reply::Endpoint`].
    EndpointCreate(EndpointCreate),
    /// Removes an endpoint: its interfaces, its namespace if switchyard made it, and
    /// every table entry of its own; answered by a [`Reply::Changed`].
    EndpointRm { name: String },
    /// Every endpoint; answered by [`Reply::Endpoints`].
    EndpointLs {},
    /// Joins two networks for routing (an `[[allow]]`); answered by a [`Reply::Changed`].
    AllowAdd { a: String, b: String },
    /// Undoes an `[[allow]]`; answered by a [`Reply::Changed`].
    AllowRm { a: String, b: String },
    /// Adds a static route (a `[[route]]`); answered by a [`Reply::Changed`].
    RouteAdd { prefix: String, via: String },
    /// Removes a static route; answered by a [`Reply::Changed`].
    RouteRm { prefix: String, via: String },
}

impl Request {
    /// The names of every request this server answers.
    pub const NAMES: &'static [&'static str] = &[
        "show",
        "trace",
        "trace_packet",
        "events",
        "capture",
        "network_create",
        "network_rm",
        "network_ls",
        "network_inspect",
        "network_connect",
        "network_disconnect",
        "endpoint_create",
        "endpoint_rm",
        "endpoint_ls",
        "allow_add",
        "allow_rm",
        "route_add",
        "route_rm",
    ];

    /// The name of this request on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Show { .. } => "show",
            Request::Trace { .. } => "trace",
            Request::TracePacket { .. } => "trace_packet",
            Request::Events {} => "events",
            Request::Capture(_) => "capture",
            Request::NetworkCreate(_) => "network_create",
            Request::NetworkRm { .. } => "network_rm",
            Request::NetworkLs {} => "network_ls",
            Request::NetworkInspect { .. } => "network_inspect",
            Request::NetworkConnect(_) => "network_connect",
            Request::NetworkDisconnect { .. } => "network_disconnect",
            Request::EndpointCreate(_) => "endpoint_create",
            Request::EndpointRm { .. } => "endpoint_rm",
            Request::EndpointLs {} => "endpoint_ls",
            Request::AllowAdd { .. } => "allow_add",
            Request::AllowRm { .. } => "allow_rm",
            Request::RouteAdd { .. } => "route_add",
            Request::RouteRm { .. } => "route_rm",
        }
    }

    /// True for the requests that change the running instance.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Request::NetworkCreate(_)
                | Request::NetworkRm { .. }
                | Request::NetworkConnect(_)
                | Request::NetworkDisconnect { .. }
                | Request::EndpointCreate(_)
                | Request::EndpointRm { .. }
                | Request::AllowAdd { .. }
                | Request::AllowRm { .. }
                | Request::RouteAdd { .. }
                | Request::RouteRm { .. }
        )
    }
}

/// Most frames one live trace may ask for.
pub const MAX_TRACE_FRAMES: u32 = 10_000;

/// The first line of a live trace, sent once every worker traces: a frame sent from
/// then on is caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStart {
    /// Frames to trace.
    pub count: u32,
    /// Only frames received on these ports (empty: every port).
    pub ports: Vec<String>,
}

/// The end of a live trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEnd {
    /// Frames traced and sent.
    pub frames: u32,
    /// Frames traced but not sent because the client did not read fast enough.
    pub skipped: u64,
}

/// The arguments of a `capture` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// The ports to record, by name (as `show ports` lists them); at least one.
    pub ports: Vec<String>,
    /// Also record the frames switchyard dropped, with the reason.
    #[serde(default)]
    pub drops: bool,
    /// End after this many packets (absent: until the client hangs up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The tables `show` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Ports: endpoint, interface, network, addresses, MTU, offloads, I/O counters.
    Ports,
    /// The forwarding database: learned MACs per network, their port and age.
    Fdb,
    /// Per-port accounting, drops by reason, and stage events.
    Counters,
    /// The FIB: connected networks and static routes.
    Routes,
    /// The neighbor (ARP) table.
    Neighbors,
    /// Tracked connections (translated flows), like `conntrack -L`.
    Conntrack,
    /// The running topology, as a config file `switchyard up` takes.
    Config,
    /// DNS at the gateways: each network's names and addresses, the upstream servers,
    /// and the resolver's counters.
    Dns,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Ports,
        Table::Fdb,
        Table::Counters,
        Table::Routes,
        Table::Neighbors,
        Table::Conntrack,
        Table::Config,
        Table::Dns,
    ];

    /// The name of the table on the wire (and of the reply that carries it).
    pub fn name(self) -> &'static str {
        match self {
            Table::Ports => "ports",
            Table::Fdb => "fdb",
            Table::Counters => "counters",
            Table::Routes => "routes",
            Table::Neighbors => "neighbors",
            Table::Conntrack => "conntrack",
            Table::Config => "config",
            Table::Dns => "dns",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A successful answer. On the wire it is an object with one key, the reply's name,
/// whose value is the payload: `{"fdb":[{"network":"default",...}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ports(Vec<PortRow>),
    Fdb(Vec<FdbRow>),
    Counters(CountersReport),
    Routes(Vec<RouteRow>),
    Neighbors(Vec<NeighborRow>),
    Conntrack(ConntrackReport),
    Config(ConfigText),
    /// `show dns`.
    Dns(Box<crate::dns::DnsView>),
    /// The first line of a live trace.
    TraceStart(TraceStart),
    /// One traced frame of a live trace.
    Trace(switchyard_core::pipeline::FrameTrace),
    /// The last line of a live trace.
    TraceEnd(TraceEnd),
    /// One line of the `events` stream.
    Event(Box<EventRow>),
    /// The first line of a capture: the ports recorded, in the order packets name them.
    CaptureStarted(CaptureStarted),
    /// Frames recorded since the last line.
    CapturePackets(Vec<CapturedPacket>),
    /// No frame for a while: how the capture stands.
    CaptureStatus(CaptureStatus),
    /// The last line of a capture (the count was reached).
    CaptureEnd(CaptureStatus),
    /// One network (`network_create`, `network_inspect`).
    Network(NetworkRow),
    /// Every network (`network_ls`).
    Networks(Vec<NetworkRow>),
    /// One endpoint (`endpoint_create`, `network_connect`).
    Endpoint(EndpointRow),
    /// Every endpoint (`endpoint_ls`).
    Endpoints(Vec<EndpointRow>),
    /// A change that removed or rewired something, and the table entries it removed.
    Changed(Changed),
}

impl Reply {
    /// The name of this reply on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Ports(_) => "ports",
            Reply::Fdb(_) => "fdb",
            Reply::Counters(_) => "counters",
            Reply::Routes(_) => "routes",
            Reply::Neighbors(_) => "neighbors",
            Reply::Conntrack(_) => "conntrack",
            Reply::Config(_) => "config",
            Reply::Dns(_) => "dns",
            Reply::TraceStart(_) => "trace_start",
            Reply::Trace(_) => "trace",
            Reply::TraceEnd(_) => "trace_end",
            Reply::Event(_) => "event",
            Reply::CaptureStarted(_) => "capture_started",
            Reply::CapturePackets(_) => "capture_packets",
            Reply::CaptureStatus(_) => "capture_status",
            Reply::CaptureEnd(_) => "capture_end",
            Reply::Network(_) => "network",
            Reply::Networks(_) => "networks",
            Reply::Endpoint(_) => "endpoint",
            Reply::Endpoints(_) => "endpoints",
            Reply::Changed(_) => "changed",
        }
    }

    /// The payload without the reply's name: what `show --json` prints. It goes
    /// through a `serde_json::Value`, whose objects keep their keys sorted, so the
    /// printed text is the same whichever order the row types declare their fields in.
    pub fn payload(&self) -> serde_json::Value {
        let v = match self {
            Reply::Ports(r) => serde_json::to_value(r),
            Reply::Fdb(r) => serde_json::to_value(r),
            Reply::Counters(r) => serde_json::to_value(r),
            Reply::Routes(r) => serde_json::to_value(r),
            Reply::Neighbors(r) => serde_json::to_value(r),
            Reply::Conntrack(r) => serde_json::to_value(r),
            Reply::Config(r) => serde_json::to_value(r),
            Reply::Dns(r) => serde_json::to_value(r),
            Reply::TraceStart(r) => serde_json::to_value(r),
            Reply::Trace(r) => serde_json::to_value(r),
            Reply::TraceEnd(r) => serde_json::to_value(r),
            Reply::Event(r) => serde_json::to_value(r),
            Reply::CaptureStarted(r) => serde_json::to_value(r),
            Reply::CapturePackets(r) => serde_json::to_value(r),
            Reply::CaptureStatus(r) | Reply::CaptureEnd(r) => serde_json::to_value(r),
            Reply::Network(r) => serde_json::to_value(r),
            Reply::Networks(r) => serde_json::to_value(r),
            Reply::Endpoint(r) => serde_json::to_value(r),
            Reply::Endpoints(r) => serde_json::to_value(r),
            Reply::Changed(r) => serde_json::to_value(r),
        };
        // Rows are strings, numbers, lists and string-keyed maps: nothing serde_json
        // refuses.
        v.expect("reply rows convert to JSON")
    }
}

/// Why a request failed, as a stable name a program can match on; the message next
/// to it is for people and may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not JSON, not an envelope, or the request's arguments do not fit it.
    BadRequest,
    /// The request has no version, or another one than the server's; the message
    /// names both.
    UnsupportedVersion,
    /// The request's name is not one this server knows (a newer client).
    UnknownRequest,
    /// The request line is longer than [`MAX_REQUEST_BYTES`]; the server closes the
    /// connection after answering.
    TooLarge,
    /// The dataplane workers have stopped, so there are no tables to read.
    DataplaneStopped,
    /// The server failed while answering (a bug); it keeps serving.
    Internal,
    /// Every one of the server's client slots is taken by a connection in the middle of
    /// a request; the server closes the connection after answering. Try again.
    Busy,
    /// The request names a port the instance does not have; the message lists those
    /// it has.
    UnknownPort,
    /// What the request asks for is taken by other clients (one live trace at a
    /// time per instance, a bounded number of event streams), or is in use by
    /// something else (a network with endpoints attached cannot be removed).
    InUse,
    /// A change that breaks a rule of the config file; the message lists the
    /// problems in the config file's words (the first 20, then how many more).
    Invalid,
    /// The network or endpoint named does not exist.
    NotFound,
    /// A valid change could not be carried out on the machine (a namespace that
    /// could not be created or entered, a TAP refused); nothing of it is left behind.
    SetupFailed,
    /// A code this client does not know, sent by a newer server; the message says
    /// what happened. Servers never send it.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Every code a server sends.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownRequest,
        ErrorCode::TooLarge,
        ErrorCode::DataplaneStopped,
        ErrorCode::Internal,
        ErrorCode::Busy,
        ErrorCode::UnknownPort,
        ErrorCode::InUse,
        ErrorCode::Invalid,
        ErrorCode::NotFound,
        ErrorCode::SetupFailed,
    ];

    /// The code on the wire.
    pub fn id(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::DataplaneStopped => "dataplane_stopped",
            ErrorCode::Internal => "internal",
            ErrorCode::Busy => "busy",
            ErrorCode::UnknownPort => "unknown_port",
            ErrorCode::InUse => "in_use",
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::SetupFailed => "setup_failed",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A failed request: its code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

/// An answer as it crosses the socket: the server's protocol version and the outcome.
///
/// On the wire a success is `{"version":1,"ok":{REPLY}}` and a failure
/// `{"version":1,"code":"CODE","error":"MESSAGE"}`. The message stays a plain string
/// under `error`, as it was before the protocol had versions, so a client from then
/// still prints why its request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub version: u32,
    pub result: Result<Reply, ErrorReply>,
}

impl Response {
    /// A success in the version this build speaks.
    pub fn ok(reply: Reply) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            result: Ok(reply),
        }
    }

    /// A failure in the version this build speaks.
    pub fn error(error: ErrorReply) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            result: Err(error),
        }
    }
}

/// [`Response`] as written: the outcome spread over sibling keys.
#[derive(Serialize)]
struct ResponseOut<'a> {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<&'a Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// [`Response`] as read. Unknown keys are ignored: a newer server may add some.
#[derive(Deserialize)]
struct ResponseIn {
    version: u32,
    ok: Option<Reply>,
    code: Option<ErrorCode>,
    error: Option<String>,
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ok, err) = match &self.result {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        ResponseOut {
            version: self.version,
            ok,
            code: err.map(|e| e.code),
            error: err.map(|e| e.message.as_str()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Response, D::Error> {
        let w = ResponseIn::deserialize(d)?;
        let result = match (w.ok, w.code, w.error) {
            (Some(reply), None, None) => Ok(reply),
            (None, Some(code), Some(message)) => Err(ErrorReply { code, message }),
            _ => {
                return Err(serde::de::Error::custom(
                    "a response has either \"ok\", or \"code\" and \"error\"",
                ))
            }
        };
        Ok(Response {
            version: w.version,
            result,
        })
    }
}

/// Reads one request line as a server does, checking in the order that gives the
/// most useful answer: JSON at all, then the version (so a client of another version
/// hears about versions rather than about shapes it cannot know), then the request's
/// name, then its arguments.
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorReply> {
    let bad = |m: String| ErrorReply::new(ErrorCode::BadRequest, m);
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| bad(format!("not a line of JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("a request is a JSON object".into()))?;
    match obj.get("version") {
        None => {
            return Err(ErrorReply::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "the request has no \"version\" (a client from before the protocol \
                     had versions?); this switchyard speaks control protocol version \
                     {PROTOCOL_VERSION}"
                ),
            ))
        }
        Some(v) => match v.as_u64() {
            Some(n) if n == u64::from(PROTOCOL_VERSION) => {}
            Some(n) => {
                return Err(ErrorReply::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "the client speaks control protocol version {n}, this switchyard \
                         version {PROTOCOL_VERSION}; use the switchyard binary this \
                         instance was started with"
                    ),
                ))
            }
            None => return Err(bad(format!("\"version\" is {v}, not a whole number"))),
        },
    }
    let name = match obj.get("request") {
        Some(serde_json::Value::Object(m)) if m.len() == 1 => m.keys().next().cloned(),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .ok_or_else(|| {
        bad("\"request\" is an object with one key, the request's name \
             (e.g. {\"show\":{\"table\":\"fdb\"}})"
            .into())
    })?;
    if !Request::NAMES.contains(&name.as_str()) {
        return Err(ErrorReply::new(
            ErrorCode::UnknownRequest,
            format!(
                "unknown request {name:?}; this switchyard (control protocol version \
                 {PROTOCOL_VERSION}) answers: {}",
                Request::NAMES.join(", ")
            ),
        ));
    }
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| bad(format!("bad {name:?} request: {e}")))?;
    Ok(envelope.request)
}

/// The reply to `show config`: the running topology as the text of a config file,
/// every key written out (see `docs/config.md`). It is text rather than a structure of
/// its own so that the file format stays defined in one place, the config parser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigText {
    /// The TOML, which `switchyard up --config` and `switchyard check` take.
    pub toml: String,
}

/// One row of `show ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    pub port: String,
    /// "tap" (an endpoint's interface) or "parent" (a host interface attached to a
    /// network with `parent`).
    #[serde(default)]
    pub kind: String,
    pub endpoint: String,
    pub interface: String,
    pub netns: String,
    pub network: String,
    pub mac: String,
    /// Address with prefix length, e.g. "172.17.0.2/16".
    pub ip: String,
    pub mtu: u16,
    pub vnet_hdr: bool,
    pub offloads: String,
    pub queues: u16,
    /// How the device's frames are spread over its queues, and so the workers: "cpu"
    /// (the sending CPU's queue, read by the worker pinned to that CPU) or "hash"
    /// (the kernel's flow hash).
    #[serde(default)]
    pub steering: String,
    /// How the workers read and write the port: "uring" (batches through io_uring,
    /// `[switch] io = "uring"`, on a TAP) or "syscalls" (one system call per frame:
    /// `io = "syscalls"`, io_uring not to be had, or a port of another kind).
    #[serde(default)]
    pub io: String,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub dropped: u64,
    /// "up", or "down" once the port's device went away under switchyard (its TAP
    /// deleted, its namespace removed); the reason is in `down_reason`.
    #[serde(default)]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
}

/// One row of `show fdb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    pub network: String,
    pub mac: String,
    pub port: String,
    /// Seconds since the MAC was last seen as a source.
    pub age_secs: u32,
    /// The remote VTEP the MAC is behind, for a MAC learned on an overlay
    /// network's tunnel port; absent for one on a local port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
}

/// One port in `show counters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounterRow {
    pub port: String,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub consumed: u64,
    pub dropped: u64,
    /// Waiting for their next hop's MAC right now.
    pub held: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub rx_errors: u64,
    /// Super-frames received (the sender used segmentation offload).
    pub rx_gso: u64,
    /// Super-frames sent on whole to this port.
    pub tx_gso: u64,
    /// Super-frames cut in software for this port (it has no segmentation offload),
    /// and the segments that made.
    pub tx_segmented: u64,
    pub tx_segments: u64,
    /// UDP super-frames built from runs of small datagrams of one flow, and the
    /// datagrams they carried.
    pub tx_coalesced: u64,
    pub tx_coalesced_datagrams: u64,
    /// DNS queries received on this port handed to the DNS service, and those
    /// dropped instead (the service behind, or not running).
    pub punted: u64,
    pub punt_dropped: u64,
    /// The DNS service's replies sent out of this port, and those dropped because
    /// the port was no longer the endpoint that asked.
    pub punt_replies: u64,
    pub punt_stale: u64,
    /// Frames a host interface (`parent`) refused before the pipeline: 802.1Q-tagged
    /// ones, ones longer than a buffer, and those the kernel dropped for its packet
    /// sockets (buffers full, a super-frame it could not hand over). Zero on a TAP.
    #[serde(default)]
    pub rx_tagged: u64,
    #[serde(default)]
    pub rx_truncated: u64,
    #[serde(default)]
    pub rx_kernel_drops: u64,
    /// Frames an ipvlan-l2 parent found for no one on the network (unicast to
    /// another MAC, or to an address no endpoint has).
    #[serde(default)]
    pub rx_unclaimed: u64,
    /// Non-zero drop counts by reason id.
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// A named counter with its stage and description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCount {
    pub id: String,
    pub stage: String,
    pub text: String,
    pub count: u64,
}

/// `show counters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountersReport {
    pub ports: Vec<PortCounterRow>,
    /// Every drop reason with its total over all ports (zeros included).
    pub drops: Vec<NamedCount>,
    /// Every event counter (zeros included).
    pub events: Vec<NamedCount>,
    /// The dataplane workers: CPU time used and frames received by each.
    pub workers: Vec<WorkerRow>,
}

/// One dataplane worker in `show counters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: usize,
    /// CPU seconds (user + system) the worker thread has used.
    pub cpu_secs: f64,
    pub rx_frames: u64,
    /// The CPUs the worker is pinned to (empty: it runs wherever the scheduler puts it).
    #[serde(default)]
    pub cpus: Vec<usize>,
}

/// One row of `show routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    pub prefix: String,
    /// The router packets go to, for static routes; none for connected networks.
    pub via: Option<String>,
    /// The network packets leave on.
    pub network: String,
    /// "connected" or "static".
    pub origin: String,
    /// MTU of the network packets leave on.
    pub mtu: u16,
}

/// One row of `show neighbors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborRow {
    pub ip: String,
    /// Empty while incomplete.
    pub mac: String,
    pub network: String,
    /// incomplete, reachable, stale or probe.
    pub state: String,
    /// Seconds since the entry was last confirmed or changed.
    pub age_secs: u64,
    /// Packets waiting for this neighbor.
    pub queued: usize,
}

/// One direction of a tracked flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTuple {
    pub src: String,
    pub dst: String,
    /// Ports, or the ICMP echo identifier in both.
    pub sport: u16,
    pub dport: u16,
    pub packets: u64,
    pub bytes: u64,
}

/// One row of `show conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackRow {
    /// tcp, udp or icmp.
    pub proto: String,
    /// The TCP state (SYN_SENT ... CLOSE), or UNREPLIED/REPLIED for UDP and ICMP.
    pub state: String,
    /// Seconds until the entry expires.
    pub timeout_secs: u64,
    /// Traffic seen both ways: not evicted when the table fills.
    pub assured: bool,
    /// "snat", "dnat" or "snat+dnat".
    pub nat: String,
    /// As the first packet arrived.
    pub original: FlowTuple,
    /// As replies arrive (after translation).
    pub reply: FlowTuple,
}

/// `show conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackReport {
    pub count: usize,
    pub max: usize,
    pub connections: Vec<ConntrackRow>,
}

/// One line of the `events` stream: a change in a table, the start of the stream,
/// or how many changes were skipped. Which fields are present depends on `event`
/// (see `docs/events.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// When it happened: wall-clock time (UTC, RFC 3339, microseconds) of the batch
    /// or timer tick that made the change.
    pub time: String,
    /// What happened: `listening`, `mac_learned`, `mac_moved`, `mac_aged`,
    /// `mac_refused`, `neighbor`, `conntrack_new`, `conntrack_assured`,
    /// `conntrack_destroyed`, `port_down` or `skipped`.
    pub event: String,
    /// The network the change is in (for a connection: the one its first packet
    /// came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The port: where the MAC is (or was) learned, or the one that went down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// A moved MAC's port before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_port: Option<String>,
    /// The port a MAC is bound to, when a move elsewhere was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_port: Option<String>,
    /// A neighbor's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// A neighbor's state now: `incomplete`, `reachable`, `stale`, `probe`, or, for
    /// an entry that is gone, `failed`, `evicted`, `expired` or `flushed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// A neighbor's state before; absent for a new entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_state: Option<String>,
    /// Why: a MAC refused (`table_full`, `network_full`, `pinned`), a connection
    /// destroyed (`timeout`, `reset`, `closed`, `evicted`), a port down (its words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The network a connection's replies come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_network: Option<String>,
    /// The connection, as `show conntrack` has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackRow>,
    /// Changes skipped because the reader fell behind (or a worker's buffer filled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
}

impl EventRow {
    /// An event of kind `event` at `time` with no other field.
    pub fn new(time: String, event: &str) -> EventRow {
        EventRow {
            time,
            event: event.into(),
            network: None,
            port: None,
            mac: None,
            from_port: None,
            owner_port: None,
            ip: None,
            state: None,
            old_state: None,
            reason: None,
            reply_network: None,
            conntrack: None,
            skipped: None,
        }
    }
}

/// The first line of a capture's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStarted {
    /// The ports recorded; a packet's `port` is an index into this list.
    pub ports: Vec<String>,
    /// The most frames that can be on their way to the client at once (the capture's
    /// buffers), and the bytes those buffers may take.
    pub buffers: usize,
    pub buffer_bytes: usize,
}

/// Which way a frame crossed a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureDirection {
    /// From the endpoint into switchyard.
    In,
    /// From switchyard to the endpoint.
    Out,
}

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedPacket {
    /// Index into [`CaptureStarted::ports`].
    pub port: usize,
    pub direction: CaptureDirection,
    /// When the worker moved it, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The frame's length on the wire (always the length of `data`: frames are
    /// recorded whole).
    pub len: u32,
    /// The frame from its Ethernet header on, in base64 (RFC 4648, with padding).
    pub data: String,
    /// For a frame switchyard dropped: the drop reason's id and sentence (as in
    /// `show counters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a capture stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStatus {
    /// Packets sent to the client so far.
    pub packets: u64,
    /// Frames not recorded because the capture's buffers were full (the client, or
    /// the socket, did not keep up).
    pub skipped: u64,
}

#[cfg(test)]
mod tests;
