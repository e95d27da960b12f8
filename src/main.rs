//! The `switchyard` command: parses the command line and calls the library.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::control::cli::{self, DockerArgs, MetricsArgs, TableArg, Target};
use switchyard::control::protocol::{EndpointCreate, NetworkConnect, NetworkCreate, Request};
use switchyard::topology::DEFAULT_RUN_ROOT;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// A user-space packet switch for Linux: bridges, routes and NATs between network
/// namespaces over TAP devices, like Docker's default network in one process.
#[derive(Parser)]
#[command(name = "switchyard", version, about)]
struct Cli {
    /// Directory for control sockets and state files.
    #[arg(long, global = true, env = "SWITCHYARD_RUN_DIR", default_value_os_t = PathBuf::from(DEFAULT_RUN_ROOT))]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum DockerCmd {
    /// The driver's networks and endpoints (read from its state file, so also while
    /// switchyard is stopped).
    Ls {
        /// The driver's name (as given to `up --docker-driver`).
        #[arg(long, default_value = switchyard::docker::DEFAULT_NAME)]
        name: String,
        /// Its state file (default /var/lib/switchyard/docker/NAME.json).
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Create the topology (built-in default without FILE) and switch until Ctrl-C.
    Up {
        /// Topology file (TOML); see examples/.
        file: Option<PathBuf>,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Remove what a crashed `up` left behind.
    Down {
        /// The topology file the instance was started with (for its prefix); the same
        /// as --config.
        #[arg(conflicts_with_all = ["prefix", "config", "socket"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// What switchyard's Docker network driver (`up --docker-driver`) remembers: the
    /// Docker networks it made and their endpoints, and whether each container still
    /// runs.
    Docker {
        #[command(subcommand)]
        cmd: DockerCmd,
    },
    /// Print a table of a running instance (`config`: its topology as a config file).
    Show {
        #[arg(value_enum)]
        table: TableArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Trace the next frames a running instance switches: each frame, what every
    /// stage did with it, and its fate (like VPP's `trace add`). With --packet SPEC,
    /// a what-if instead: what the instance would do with that packet, without
    /// sending it or changing any table (like Open vSwitch's `ofproto/trace`).
    Trace {
        /// Only frames received on this port (repeat for more; default: every port).
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<String>,
        /// How many frames to trace.
        #[arg(long, short = 'c', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(switchyard::control::protocol::MAX_TRACE_FRAMES)))]
        count: u32,
        /// What-if: the packet, as key=value separated by commas or spaces, e.g.
        /// `in=web,dst=198.51.100.7,proto=tcp,dport=443` (docs/trace.md lists every
        /// key).
        #[arg(long, value_name = "SPEC", conflicts_with_all = ["ports", "count"])]
        packet: Option<String>,
        /// Print one JSON object per frame instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Record the frames crossing ports of a running instance, both ways, as pcapng
    /// (-w) or as one line per packet; until Ctrl-C or -c packets.
    Capture {
        /// The ports to record (as `show ports` names them).
        #[arg(required = true, value_name = "PORT")]
        ports: Vec<String>,
        /// Write pcapng to FILE (`-` for stdout, e.g. `| tcpdump -r -`); without it,
        /// print one line per packet.
        #[arg(short = 'w', value_name = "FILE")]
        write: Option<PathBuf>,
        /// Stop after this many packets.
        #[arg(short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Also record frames switchyard dropped (received on the ports), with the
        /// reason as the packet's comment.
        #[arg(long)]
        drops: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Follow the changes in a running instance's tables as they happen: MACs
    /// learned, moved and aged, neighbor states, connections new, assured and
    /// destroyed, ports gone down (like `conntrack -E`); until Ctrl-C.
    Events {
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Networks of a running instance, with Docker's verbs: create, rm, ls, inspect,
    /// connect, disconnect.
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Endpoints of a running instance: create (a namespace, or a TAP in one someone
    /// else made), rm, ls.
    Endpoint {
        #[command(subcommand)]
        cmd: EndpointCmd,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Join two networks of a running instance for routing, or undo it (`[[allow]]`).
    Allow {
        #[command(subcommand)]
        cmd: PairCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Add or remove a static route of a running instance (`[[route]]`).
    Route {
        #[command(subcommand)]
        cmd: RouteCmd,
        #[command(flatten)]
        target: Target,
    },
    /// A guided tour: builds a small topology of its own, sends traffic step by step
    /// and shows what switchyard did with it and why; removes everything at the end.
    Tour {
        /// Wait for Enter before each step.
        #[arg(long)]
        step: bool,
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

#[derive(Subcommand)]
enum NetworkCmd {
    /// A new network (switchyard owns its gateway address).
    Create {
        name: String,
        /// Its subnet, e.g. 10.20.0.0/24.
        #[arg(long)]
        subnet: String,
        /// switchyard's address on it (default: the subnet's first host address).
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        mtu: Option<u32>,
        /// Masquerade its flows to the outside.
        #[arg(long)]
        masquerade: bool,
        /// No way in or out: never joined, masqueraded, routed through or published.
        #[arg(long)]
        internal: bool,
        /// Whether its endpoints may talk to each other (Docker's enable_icc).
        #[arg(long, value_name = "BOOL")]
        icc: Option<bool>,
        /// Serve DNS at the gateway (the default for a network with a gateway).
        #[arg(long, conflicts_with = "no_dns")]
        dns: bool,
        /// No DNS server at the gateway.
        #[arg(long)]
        no_dns: bool,
        /// The search domain of its endpoints (app.internal).
        #[arg(long, value_name = "DOMAIN", value_parser = dns_name)]
        dns_domain: Option<String>,
    },
    /// Remove a network (refused while endpoints are attached).
    Rm { name: String },
    /// List the networks.
    Ls,
    /// A network and the endpoints attached to it.
    Inspect { name: String },
    /// Attach an endpoint to one more network.
    Connect {
        network: String,
        endpoint: String,
        /// Its address there (default: the lowest free one).
        #[arg(long)]
        ip: Option<String>,
        /// The interface's name (default: the first free ethN).
        #[arg(long)]
        ifname: Option<String>,
    },
    /// Detach an endpoint from a network.
    Disconnect { network: String, endpoint: String },
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// A new endpoint: a namespace <prefix>NAME with eth0 on NETWORK, or with
    /// --netns, a TAP in a namespace someone else made.
    Create {
        name: String,
        #[arg(long)]
        network: String,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        mac: Option<String>,
        /// A published port, HOST:CONTAINER[/tcp|udp] (repeat for more).
        #[arg(long, value_name = "HOST:CONTAINER")]
        publish: Vec<String>,
        /// Attach this namespace (/run/netns/NAME, /proc/PID/ns/net) instead of
        /// creating one; only the TAP is added there, and only it is removed.
        #[arg(long, value_name = "PATH")]
        netns: Option<String>,
        /// The interface's name (default eth0); with --handover, the TAP's name in
        /// switchyard's own namespace.
        #[arg(long)]
        ifname: Option<String>,
        /// One more DNS name of the endpoint on its DNS networks (repeat for more).
        #[arg(long = "alias", value_name = "NAME", value_parser = dns_name)]
        aliases: Vec<String>,
        /// Make the TAP in switchyard's own namespace, named --ifname, for a
        /// container runtime to move into --netns and configure (no address,
        /// route or link up).
        #[arg(long)]
        handover: bool,
    },
    /// Remove an endpoint, its namespace (if switchyard made it) and its table entries.
    Rm { name: String },
    /// List the endpoints.
    Ls,
}

#[derive(Subcommand)]
enum PairCmd {
    /// Join two networks.
    Add { a: String, b: String },
    /// Undo a join.
    Rm { a: String, b: String },
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Add PREFIX via the router VIA.
    Add {
        // Not the id "prefix": that is the instance's global `--prefix`, which would
        // take this value (and refuse a `--prefix` given after it).
        #[arg(id = "destination", value_name = "PREFIX")]
        prefix: String,
        via: String,
    },
    /// Remove a route.
    Rm {
        #[arg(id = "destination", value_name = "PREFIX")]
        prefix: String,
        via: String,
    },
}

/// A DNS name argument (`--alias`, `--dns-domain`), checked and normalised by the
/// config file's rule, so that a bad one is refused before anything is asked.
fn dns_name(s: &str) -> Result<String, String> {
    switchyard::topology::config::parse_dns_name(s)
}

fn main() -> ExitCode {
    // Warnings and errors show by default; RUST_LOG asks for more (or less). The
    // time of day adds nothing to a line a person reads as it happens, and colours
    // only belong on a terminal (not in a log file or the journal).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
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
        Command::Up {
            file,
            metrics,
            docker,
        } => cli::up(file.as_deref(), &cli.run_dir, &metrics, &docker),
        Command::Docker {
            cmd: DockerCmd::Ls { name, state, json },
        } => cli::docker_ls(&name, state.as_deref(), json),
        Command::Down { file, target } => cli::down(
            &Target {
                config: file.or(target.config),
                ..target
            },
            &cli.run_dir,
        ),
        Command::Show {
            table,
            json,
            target,
        } => cli::show(table.into(), json, &target, &cli.run_dir),
        Command::Trace {
            ports,
            count,
            packet,
            json,
            target,
        } => match packet {
            Some(spec) => cli::trace_packet(&spec, json, &target, &cli.run_dir),
            None => cli::trace(ports, count, json, &target, &cli.run_dir),
        },
        Command::Capture {
            ports,
            write,
            count,
            drops,
            target,
        } => {
            let to = match write {
                None => cli::CaptureTo::Lines,
                Some(f) if f.as_os_str() == "-" => cli::CaptureTo::Stdout,
                Some(f) => cli::CaptureTo::File(f),
            };
            cli::capture(ports, to, count, drops, &target, &cli.run_dir)
        }
        Command::Events { json, target } => cli::events(json, &target, &cli.run_dir),
        Command::Network { cmd, target, json } => {
            let req = match cmd {
                NetworkCmd::Create {
                    name,
                    subnet,
                    gateway,
                    mtu,
                    masquerade,
                    internal,
                    icc,
                    dns,
                    no_dns,
                    dns_domain,
                } => Request::NetworkCreate(NetworkCreate {
                    name,
                    subnet,
                    gateway,
                    mtu,
                    masquerade,
                    internal,
                    icc,
                    dns: match (dns, no_dns) {
                        (true, _) => Some(true),
                        (_, true) => Some(false),
                        _ => None,
                    },
                    dns_domain,
                }),
                NetworkCmd::Rm { name } => Request::NetworkRm { name },
                NetworkCmd::Ls => Request::NetworkLs {},
                NetworkCmd::Inspect { name } => Request::NetworkInspect { name },
                NetworkCmd::Connect {
                    network,
                    endpoint,
                    ip,
                    ifname,
                } => Request::NetworkConnect(NetworkConnect {
                    network,
                    endpoint,
                    ip,
                    ifname,
                }),
                NetworkCmd::Disconnect { network, endpoint } => {
                    Request::NetworkDisconnect { network, endpoint }
                }
            };
            cli::ask(&req, json, &target, &cli.run_dir)
        }
        Command::Endpoint { cmd, target, json } => {
            let req = match cmd {
                EndpointCmd::Create {
                    name,
                    network,
                    ip,
                    mac,
                    publish,
                    netns,
                    ifname,
                    aliases,
                    handover,
                } => Request::EndpointCreate(EndpointCreate {
                    name,
                    network,
                    ip,
                    mac,
                    publish,
                    netns,
                    ifname,
                    aliases,
                    handover,
                }),
                EndpointCmd::Rm { name } => Request::EndpointRm { name },
                EndpointCmd::Ls => Request::EndpointLs {},
            };
            cli::ask(&req, json, &target, &cli.run_dir)
        }
        Command::Allow { cmd, target } => {
            let req = match cmd {
                PairCmd::Add { a, b } => Request::AllowAdd { a, b },
                PairCmd::Rm { a, b } => Request::AllowRm { a, b },
            };
            cli::ask(&req, false, &target, &cli.run_dir)
        }
        Command::Route { cmd, target } => {
            let req = match cmd {
                RouteCmd::Add { prefix, via } => Request::RouteAdd { prefix, via },
                RouteCmd::Rm { prefix, via } => Request::RouteRm { prefix, via },
            };
            cli::ask(&req, false, &target, &cli.run_dir)
        }
        Command::Tour { step } => switchyard::control::tour::tour(step, &cli.run_dir),
        Command::Check { file } => cli::check(&file),
        Command::Bench { args } => cli::bench(&args, &cli.run_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_holds_together() {
        Cli::command().debug_assert();
    }

    #[test]
    fn capture_takes_ports_a_file_a_count_and_drops() {
        let cli = parse(&["capture", "a", "b", "-w", "-", "-c", "5", "--drops"]).unwrap();
        let Command::Capture {
            ports,
            write,
            count,
            drops,
            ..
        } = cli.command
        else {
            panic!("capture");
        };
        assert_eq!(ports, ["a", "b"]);
        assert_eq!(write, Some(PathBuf::from("-")));
        assert_eq!((count, drops), (Some(5), true));
        let e = parse(&["capture"]).err().expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["capture", "a", "-c", "0"]).err().expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn down_takes_a_file_or_a_target_but_not_both() {
        let Command::Down { file, target } = parse(&["down", "a.toml"]).unwrap().command else {
            panic!("down");
        };
        assert_eq!(file, Some(PathBuf::from("a.toml")));
        assert_eq!(target.prefix, None);
        let Command::Down { file, target } = parse(&["down", "--prefix", "p-"]).unwrap().command
        else {
            panic!("down");
        };
        assert_eq!((file, target.prefix.as_deref()), (None, Some("p-")));
        for both in [
            &["down", "a.toml", "--prefix", "p-"][..],
            &["down", "a.toml", "--config", "b.toml"],
            &["down", "a.toml", "--socket", "/run/x/control.sock"],
        ] {
            let e = parse(both).err().expect("refused");
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{both:?}"
            );
        }
    }

    #[test]
    fn up_takes_a_metrics_address_and_metrics_public_only_with_it() {
        let Command::Up { file, metrics, .. } = parse(&["up", "t.toml", "--metrics", "[::1]:9477"])
            .unwrap()
            .command
        else {
            panic!("up");
        };
        assert_eq!(file, Some(PathBuf::from("t.toml")));
        assert_eq!(metrics.metrics, Some("[::1]:9477".parse().unwrap()));
        assert!(!metrics.metrics_public);
        let Command::Up { metrics, .. } =
            parse(&["up", "--metrics", "0.0.0.0:9477", "--metrics-public"])
                .unwrap()
                .command
        else {
            panic!("up");
        };
        assert!(metrics.metrics_public);
        let e = parse(&["up", "--metrics-public"]).err().expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["up", "--metrics", "localhost"])
            .err()
            .expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn network_and_endpoint_verbs_parse_as_dockers_do() {
        let cli = parse(&[
            "network",
            "create",
            "back",
            "--subnet",
            "10.20.0.0/24",
            "--masquerade",
            "--icc",
            "false",
            "--prefix",
            "p-",
        ])
        .unwrap();
        let Command::Network { cmd, target, .. } = cli.command else {
            panic!("network");
        };
        let NetworkCmd::Create {
            name,
            masquerade,
            icc,
            gateway,
            ..
        } = cmd
        else {
            panic!("create");
        };
        assert_eq!(
            (name.as_str(), masquerade, icc, gateway),
            ("back", true, Some(false), None)
        );
        assert_eq!(target.prefix.as_deref(), Some("p-"));
        let cli = parse(&[
            "endpoint",
            "create",
            "web",
            "--network",
            "default",
            "--publish",
            "8080:80/tcp",
            "--publish",
            "5353:53/udp",
            "--netns",
            "/run/netns/x",
            "--json",
        ])
        .unwrap();
        let Command::Endpoint { cmd, json, .. } = cli.command else {
            panic!("endpoint");
        };
        let EndpointCmd::Create { publish, netns, .. } = cmd else {
            panic!("create");
        };
        assert_eq!(publish, ["8080:80/tcp", "5353:53/udp"]);
        assert_eq!(netns.as_deref(), Some("/run/netns/x"));
        assert!(json);
        assert!(parse(&["network", "connect", "back", "web", "--ip", "10.20.0.5"]).is_ok());
        assert!(parse(&["allow", "add", "a", "b"]).is_ok());
        assert!(parse(&["route", "rm", "192.168.50.0/24", "10.1.0.254"]).is_ok());
        let e = parse(&["network", "create", "x"]).err().expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn dns_flags_and_aliases_parse_and_are_checked_as_dns_names() {
        let dns_of = |args: &[&str]| {
            let mut all = vec!["network", "create", "app", "--subnet", "10.30.0.0/24"];
            all.extend_from_slice(args);
            let Command::Network {
                cmd:
                    NetworkCmd::Create {
                        dns,
                        no_dns,
                        dns_domain,
                        ..
                    },
                ..
            } = parse(&all).unwrap().command
            else {
                panic!("network create");
            };
            (dns, no_dns, dns_domain)
        };
        assert_eq!(dns_of(&[]), (false, false, None));
        assert_eq!(dns_of(&["--no-dns"]), (false, true, None));
        assert_eq!(
            dns_of(&["--dns", "--dns-domain", "App.Internal."]),
            (true, false, Some("app.internal".into()))
        );
        let e = parse(&[
            "network",
            "create",
            "app",
            "--subnet",
            "10.30.0.0/24",
            "--dns",
            "--no-dns",
        ])
        .err()
        .expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&[
            "network",
            "create",
            "app",
            "--subnet",
            "10.30.0.0/24",
            "--dns-domain",
            "bad_domain",
        ])
        .err()
        .expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);

        let Command::Endpoint {
            cmd: EndpointCmd::Create { aliases, .. },
            ..
        } = parse(&[
            "endpoint",
            "create",
            "db",
            "--network",
            "app",
            "--alias",
            "Database",
            "--alias",
            "db.v2",
        ])
        .unwrap()
        .command
        else {
            panic!("endpoint create");
        };
        assert_eq!(aliases, ["database", "db.v2"]);
        let e = parse(&[
            "endpoint",
            "create",
            "db",
            "--network",
            "app",
            "--alias",
            "x_y",
        ])
        .err()
        .expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn route_prefix_is_not_the_instance_prefix() {
        let cli = parse(&[
            "route",
            "add",
            "10.99.0.0/16",
            "10.2.0.254",
            "--prefix",
            "p-",
        ])
        .unwrap();
        let Command::Route { cmd, target } = cli.command else {
            panic!("route");
        };
        let RouteCmd::Add { prefix, via } = cmd else {
            panic!("add");
        };
        assert_eq!(
            (prefix.as_str(), via.as_str()),
            ("10.99.0.0/16", "10.2.0.254")
        );
        assert_eq!(target.prefix.as_deref(), Some("p-"));
        let cli = parse(&["route", "rm", "10.99.0.0/16", "10.2.0.254"]).unwrap();
        let Command::Route { target, .. } = cli.command else {
            panic!("route");
        };
        assert_eq!(target.prefix, None);
    }

    #[test]
    fn tour_takes_step() {
        let Command::Tour { step } = parse(&["tour"]).unwrap().command else {
            panic!("tour");
        };
        assert!(!step);
        let Command::Tour { step } = parse(&["tour", "--step"]).unwrap().command else {
            panic!("tour");
        };
        assert!(step);
    }

    #[test]
    fn show_takes_a_table_and_the_shared_target() {
        let cli = parse(&["show", "conntrack", "--json", "--socket", "/tmp/s"]).unwrap();
        let Command::Show {
            table,
            json,
            target,
        } = cli.command
        else {
            panic!("show");
        };
        assert_eq!(table, TableArg::Conntrack);
        assert!(json);
        assert_eq!(target.socket, Some(PathBuf::from("/tmp/s")));
        let cli = parse(&["show", "config", "--prefix", "p-"]).unwrap();
        let Command::Show { table, .. } = cli.command else {
            panic!("show config");
        };
        assert_eq!(table, TableArg::Config);
        let e = parse(&["show", "fdb", "--prefix", "p-", "--config", "c.toml"])
            .err()
            .expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&["show", "tables"]).err().expect("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(e.to_string().contains("conntrack"), "lists the tables: {e}");
    }

    #[test]
    fn trace_is_live_or_a_what_if_but_not_both() {
        let cli = parse(&["trace", "--packet", "in=a,dst=10.2.0.3", "--json"]).unwrap();
        let Command::Trace { packet, json, .. } = cli.command else {
            panic!("trace");
        };
        assert_eq!(packet.as_deref(), Some("in=a,dst=10.2.0.3"));
        assert!(json);
        for live in [&["--port", "a"][..], &["--count", "3"], &["-c", "3"]] {
            let mut args = vec!["trace", "--packet", "in=a"];
            args.extend_from_slice(live);
            let e = parse(&args).err().expect("refused");
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
        let cli = parse(&["trace", "--port", "a", "--count", "3"]).unwrap();
        let Command::Trace { packet, count, .. } = cli.command else {
            panic!("trace");
        };
        assert_eq!((packet, count), (None, 3));
    }
}
