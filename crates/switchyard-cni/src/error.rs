//! The CNI error object and its codes.
//!
//! A plugin that fails prints `{"cniVersion":..,"code":..,"msg":..,"details":..}` on
//! stdout and exits non-zero (CNI spec 1.0.0, "Error"). Codes 1–99 are the spec's
//! well-known ones; 100 and up are this plugin's own, listed in `docs/cni.md`.

use serde::Serialize;
use std::fmt;

/// The well-known codes of the spec, and this plugin's own (≥ 100).
pub mod code {
    /// The network config's `cniVersion` is not one this plugin speaks (also: CHECK
    /// asked for with a version before 0.4.0, which has no CHECK).
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A field of the network config (or of its `runtimeConfig`) the plugin cannot
    /// honour; the message names the key and the value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// A required environment variable is missing or invalid; the message names it.
    pub const INVALID_ENV: u32 = 4;
    /// An I/O failure: the control socket could not be used, or switchyard could not
    /// carry out a valid change on the machine.
    pub const IO_FAILURE: u32 = 5;
    /// The input (stdin) could not be decoded.
    pub const DECODE: u32 = 6;
    /// The network config is invalid: a required key is missing or has a bad value.
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition: switchyard is not running, is busy, or is stopping.
    pub const TRY_AGAIN_LATER: u32 = 11;

    /// switchyard refused the request; the message is switchyard's own (a full
    /// subnet, an address in use, a published port taken, ...).
    pub const REFUSED: u32 = 100;
    /// ADD for a container and interface that already have an endpoint (ADD twice
    /// without a DEL between).
    pub const ALREADY_ATTACHED: u32 = 101;
    /// The running switchyard does not serve the request, or speaks another control
    /// protocol version: the plugin and the daemon come from different builds.
    pub const SWITCHYARD_MISMATCH: u32 = 102;
    /// CHECK found the container's networking not as ADD left it.
    pub const CHECK_FAILED: u32 = 103;
}

/// A failure as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error object as printed, in the result version `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let out = Out {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_value(out).expect("an error object is plain JSON")
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [code {}]", self.msg, self.code)
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_object_has_the_spec_keys() {
        let e = CniError::new(code::INVALID_CONFIG, "no \"network\"");
        assert_eq!(
            e.to_json("0.4.0"),
            json!({"cniVersion":"0.4.0","code":7,"msg":"no \"network\""})
        );
        let e = e.with_details("the switchyard network to attach to");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion":"1.0.0","code":7,"msg":"no \"network\"",
                   "details":"the switchyard network to attach to"})
        );
    }

    #[test]
    fn plugin_codes_stay_out_of_the_spec_range() {
        for c in [
            code::REFUSED,
            code::ALREADY_ATTACHED,
            code::SWITCHYARD_MISMATCH,
            code::CHECK_FAILED,
        ] {
            assert!(c >= 100, "{c}");
        }
    }
}
