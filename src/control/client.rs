//! The client side of the control socket, used by the `show` verbs.

use super::protocol::{Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a request got no answer.
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
    #[error("switchyard answered: {0}")]
    Remote(String),
}

/// Sends one request and returns the `ok` payload.
pub fn request(socket: &Path, req: &Request) -> Result<serde_json::Value, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let mut conn = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut line = serde_json::to_string(req).expect("requests serialize");
    line.push('\n');
    conn.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&conn).read_line(&mut answer).map_err(io)?;
    let resp: Response = serde_json::from_str(&answer).map_err(|e| ClientError::BadResponse {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    match (resp.ok, resp.error) {
        (_, Some(e)) => Err(ClientError::Remote(e)),
        (Some(v), None) => Ok(v),
        (None, None) => Err(ClientError::BadResponse {
            path,
            reason: "neither ok nor error".into(),
        }),
    }
}
