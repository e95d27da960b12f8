//! The `switchyard-cni` binary: the runtime's environment and stdin in, the
//! plugin's answer on stdout, exit status 0 or 1. Everything else is in the library.

use std::io::Write;
use std::process::ExitCode;
use switchyard_cni::error::{code, CniError};

fn main() -> ExitCode {
    let stdin = match switchyard_cni::read_bounded(std::io::stdin().lock()) {
        Ok(b) => b,
        Err(e) => {
            let e = CniError::new(code::IO_FAILURE, format!("cannot read stdin: {e}"));
            return print(&e.to_json("1.0.0"), 1);
        }
    };
    let out = switchyard_cni::run(|k: &str| std::env::var_os(k), &stdin);
    match &out.stdout {
        Some(v) => print(v, out.exit_code),
        None => ExitCode::from(out.exit_code as u8),
    }
}

/// Prints `v` as one line. A runtime that closed the pipe gets nothing more to read;
/// the exit status still says what happened.
fn print(v: &serde_json::Value, exit_code: i32) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}").and_then(|()| out.flush());
    ExitCode::from(exit_code as u8)
}
