//! The `switchyard` command: parses the command line and calls the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::control::cli::{self, TableArg, Target};
use switchyard::topology::DEFAULT_RUN_ROOT;

/// A user-space packet switch for Linux: bridges, routes and NATs between network
/// namespaces over TAP devices, like Docker's default network in one process.
#[derive(Parser)]
#[command(name = "switchyard", version, about)]
struct Cli {
    /// Directory for control sockets and state files.
    #[arg(long, global = true, env = "SWITCHYARD_RUN_DIR", default_value = DEFAULT_RUN_ROOT)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the topology (built-in default without FILE) and switch until Ctrl-C.
    Up {
        /// Topology file (TOML); see examples/.
        file: Option<PathBuf>,
    },
    /// Remove what a crashed `up` left behind.
    Down {
        /// The topology file the instance was started with (for its prefix).
        file: Option<PathBuf>,
        /// Prefix of the instance (default: the built-in default's, "sy-").
        #[arg(long, conflicts_with = "file")]
        prefix: Option<String>,
    },
    /// Print a table of a running instance.
    Show {
        #[arg(value_enum)]
        table: TableArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Prefix of the instance.
        #[arg(long)]
        prefix: Option<String>,
        /// Topology file of the instance (for its prefix).
        #[arg(long, conflicts_with = "prefix")]
        config: Option<PathBuf>,
        /// Control socket path (overrides prefix and config).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Validate a topology file without creating anything.
    Check { file: PathBuf },
    /// Measure switchyard against the kernel bridge (and Open vSwitch and vde_switch
    /// when installed) on scenarios it builds itself; `switchyard bench --help` lists
    /// the options.
    #[command(disable_help_flag = true)]
    Bench {
        /// Options of the harness (`switchyard-bench`), passed on as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes on one line, no backtrace; a cause whose text the
            // message already quotes is not repeated.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up { file } => cli::up(file.as_deref(), &cli.run_dir),
        Command::Down { file, prefix } => cli::down(&Target {
            config: file,
            prefix,
            run_root: cli.run_dir,
            ..Default::default()
        }),
        Command::Show {
            table,
            json,
            prefix,
            config,
            socket,
        } => cli::show(
            table.into(),
            json,
            &Target {
                socket,
                config,
                prefix,
                run_root: cli.run_dir,
            },
        ),
        Command::Check { file } => cli::check(&file),
        Command::Bench { args } => cli::bench(&args, &cli.run_dir),
    }
}
