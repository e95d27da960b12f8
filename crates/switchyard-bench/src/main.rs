//! `switchyard-bench`: the benchmark harness, also run as `switchyard bench`.

use clap::Parser;
use std::process::ExitCode;
use switchyard_bench::cli::{self, BenchArgs};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let args = BenchArgs::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    match cli::run(&args, &command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
