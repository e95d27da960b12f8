//! The client side of the control socket: one request, one typed reply
//! ([`request`]), or a live stream of replies ([`stream`], or [`LiveStream`] to read
//! it at one's own pace). The CLI verbs use it, and so can any program that links
//! this crate.

use super::protocol::{Envelope, ErrorCode, Reply, Request, Response, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long to wait for an answer. The server reads the tables between two batches
/// of the dataplane, so an answer normally takes milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source} (is `switchyard up` running with this prefix?)")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad response from {path}: {reason}")]
    BadResponse { path: String, reason: String },
    /// The server speaks another protocol version (`None`: the unversioned protocol of
    /// an older switchyard). `said` is its error message, if it sent one.
    #[error(
        "{path} speaks {}, this switchyard version {ours}{}; use the switchyard binary \
         that instance was started with, or restart it with this one",
        their_protocol(.theirs),
        quoted(.said)
    )]
    Version {
        path: String,
        ours: u32,
        theirs: Option<u64>,
        said: Option<String>,
    },
    /// The server understood the request and refused it.
    #[error("switchyard answered: {message} [{code}]")]
    Remote { code: ErrorCode, message: String },
}

impl ClientError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn their_protocol(theirs: &Option<u64>) -> String {
    match theirs {
        Some(v) => format!("control protocol version {v}"),
        None => "the unversioned control protocol of an older switchyard".into(),
    }
}

fn quoted(said: &Option<String>) -> String {
    said.as_ref()
        .map_or_else(String::new, |s| format!(" (it answered: {s})"))
}

/// Sends `req` to the instance at `socket` and returns its reply.
pub fn request(socket: &Path, req: &Request) -> Result<Reply, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let bad = |reason: String| ClientError::BadResponse {
        path: path.clone(),
        reason,
    };
    let mut conn = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    conn.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    conn.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(&Envelope::new(req.clone())).expect("requests serialize");
    line.push('\n');
    // A server that refuses the connection outright (`busy`) answers and closes
    // before reading: the write may fail, and the answer is still there to read.
    let sent = conn.write_all(line.as_bytes());
    let mut answer = String::new();
    match BufReader::new(&conn).read_line(&mut answer) {
        Ok(n) if n > 0 => parse_answer(&path, &answer),
        Ok(_) => Err(sent
            .err()
            .map_or_else(|| bad("the connection closed without an answer".into()), io)),
        Err(e) => Err(io(sent.err().unwrap_or(e))),
    }
}

/// Reads one response line: the version first (an answer in another version may not
/// fit the types, and "versions differ" is the useful thing to say then), then the
/// reply or the refusal.
fn parse_answer(path: &str, answer: &str) -> Result<Reply, ClientError> {
    let bad = |reason: String| ClientError::BadResponse {
        path: path.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(answer).map_err(|e| bad(format!("not JSON: {e}")))?;
    let theirs = value.get("version").and_then(serde_json::Value::as_u64);
    if theirs != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(ClientError::Version {
            path: path.to_string(),
            ours: PROTOCOL_VERSION,
            theirs,
            said: value
                .get("error")
                .and_then(serde_json::Value::as_str)
                .map(String::from),
        });
    }
    let resp: Response = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    resp.result.map_err(|e| ClientError::Remote {
        code: e.code,
        message: e.message,
    })
}

/// Sends `req`, whose answer is a live stream (a trace, a capture, events), and hands
/// each reply line to `each` as it arrives, until `each` breaks, the server closes
/// the connection, or a line is an error (returned). There is no answer timeout: a
/// live stream may be quiet for as long as nothing happens.
pub fn stream(
    socket: &Path,
    req: &Request,
    mut each: impl FnMut(Reply) -> ControlFlow<()>,
) -> Result<(), ClientError> {
    let mut live = LiveStream::open(socket, req)?;
    loop {
        match live.next(None)? {
            Next::Reply(r) => {
                if each(r).is_break() {
                    return Ok(());
                }
            }
            Next::Closed => return Ok(()),
            // Not without a time limit; read on.
            Next::Quiet => {}
        }
    }
}

/// A live stream read at the caller's pace, one reply at a time, each wait as long
/// as the caller says: for a program that does something else between two lines
/// (the tour sends traffic, then reads the trace it caused until the switch is
/// quiet). Dropping it hangs up, which ends the stream on the server's side.
pub struct LiveStream {
    path: String,
    reader: BufReader<UnixStream>,
    /// The line being received; a read that timed out half-way leaves its bytes here.
    line: Vec<u8>,
}

/// What [`LiveStream::next`] found.
#[derive(Debug)]
pub enum Next {
    /// The next reply line.
    Reply(Reply),
    /// Nothing arrived within the time given; the stream goes on.
    Quiet,
    /// The server ended the stream and closed the connection.
    Closed,
}

impl LiveStream {
    /// Connects to the instance at `socket` and sends `req`.
    pub fn open(socket: &Path, req: &Request) -> Result<LiveStream, ClientError> {
        let path = socket.display().to_string();
        let io = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        let mut conn = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            path: path.clone(),
            source,
        })?;
        conn.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        let mut line =
            serde_json::to_string(&Envelope::new(req.clone())).expect("requests serialize");
        line.push('\n');
        conn.write_all(line.as_bytes()).map_err(io)?;
        Ok(LiveStream {
            path,
            reader: BufReader::new(conn),
            line: Vec::new(),
        })
    }

    /// The next reply, waiting at most `wait` for it (`None`: as long as it takes).
    /// An error line from the server is returned as the error.
    pub fn next(&mut self, wait: Option<Duration>) -> Result<Next, ClientError> {
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        // A zero timeout would mean "none" to the socket.
        let wait = wait.map(|w| w.max(Duration::from_millis(1)));
        self.reader.get_ref().set_read_timeout(wait).map_err(io)?;
        loop {
            // read_until keeps what it read before a timeout in `line` (read_line
            // could drop half a character), so the next call goes on from there.
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(_) if self.line.last() == Some(&b'\n') => break,
                // The connection closed (a partial last line is no reply).
                Ok(_) => return Ok(Next::Closed),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Next::Quiet)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8(line).map_err(|e| ClientError::BadResponse {
            path: self.path.clone(),
            reason: format!("not UTF-8: {e}"),
        })?;
        parse_answer(&self.path, &text).map(Next::Reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Table;

    /// Asks a stand-in server that answers `answer` to anything; returns the line it
    /// was sent and what the client made of the answer.
    fn ask_server_answering(name: &str, answer: &str) -> (String, Result<Reply, ClientError>) {
        let dir = std::env::temp_dir().join(format!("sy-cl-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let answer = format!("{answer}\n");
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            (&conn).write_all(answer.as_bytes()).unwrap();
            line
        });
        let got = request(&path, &Request::Show { table: Table::Fdb });
        let sent = server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (sent, got)
    }

    #[test]
    fn a_live_stream_is_read_at_the_callers_pace() {
        let dir = std::env::temp_dir().join(format!("sy-cl-{}-live", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (go_on, wait) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            // A line in two pieces, with a quiet spell between them.
            let end = r#"{"version":1,"ok":{"trace_end":{"frames":0,"skipped":0}}}"#;
            let (a, b) = end.split_at(20);
            conn.write_all(a.as_bytes()).unwrap();
            wait.recv().unwrap();
            conn.write_all(format!("{b}\n").as_bytes()).unwrap();
            wait.recv().unwrap();
            line
        });
        let req = Request::Trace {
            ports: vec![],
            count: 1,
        };
        let mut live = LiveStream::open(&path, &req).unwrap();
        let wait = Some(Duration::from_millis(50));
        assert!(matches!(live.next(wait).unwrap(), Next::Quiet));
        go_on.send(()).unwrap();
        match live.next(Some(Duration::from_secs(5))).unwrap() {
            Next::Reply(Reply::TraceEnd(e)) => assert_eq!((e.frames, e.skipped), (0, 0)),
            other => panic!("{other:?}"),
        }
        go_on.send(()).unwrap();
        let sent = server.join().unwrap();
        assert!(matches!(live.next(wait).unwrap(), Next::Closed));
        assert!(sent.contains(r#""trace":{"ports":[],"count":1}"#), "{sent}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_server_from_before_versions_is_named_as_such() {
        // It wants "cmd" and answers with "error" alone.
        let (sent, got) =
            ask_server_answering("old", r#"{"error":"bad request: missing field `cmd`"}"#);
        assert_eq!(
            sent,
            "{\"version\":1,\"request\":{\"show\":{\"table\":\"fdb\"}}}\n"
        );
        let e = got.unwrap_err();
        assert!(
            matches!(e, ClientError::Version { theirs: None, .. }),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("unversioned")
                && text.contains("version 1")
                && text.contains("missing field `cmd`"),
            "{text}"
        );
    }

    #[test]
    fn a_server_of_a_newer_version_is_named_with_both_versions() {
        let (_, got) = ask_server_answering(
            "new",
            r#"{"version":2,"code":"unsupported_version","error":"the client speaks control protocol version 1, this switchyard version 2"}"#,
        );
        let e = got.unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Version {
                    theirs: Some(2),
                    ours: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("speaks control protocol version 2, this switchyard version 1"),
            "{e}"
        );
    }

    #[test]
    fn a_refusal_keeps_its_code() {
        let (_, got) = ask_server_answering(
            "refused",
            r#"{"version":1,"code":"dataplane_stopped","error":"the dataplane is not running"}"#,
        );
        let e = got.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::DataplaneStopped));
        assert_eq!(
            e.to_string(),
            "switchyard answered: the dataplane is not running [dataplane_stopped]"
        );
    }
}
