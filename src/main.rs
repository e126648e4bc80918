//! The `weft` binary, multi-call: `weft router` runs the daemon, the other subcommands are the
//! CLI; started under the name `weave` (a symlink) it is the CLI, so `weave status` works as
//! operators know it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft::cli::{self, CliCommand};
use weft::router::{RouterArgs, run};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Weft: an overlay network for Kubernetes",
    propagate_version = true
)]
struct Cli {
    /// The router's HTTP API (`host:port`): where `weft router` serves it and where the CLI
    /// subcommands find it. Accepted before or after the subcommand.
    #[arg(
        long,
        global = true,
        env = "WEAVE_HTTP_ADDR",
        default_value = "127.0.0.1:6784"
    )]
    http_addr: String,
    /// Accepted for compatibility with `weave --local ...`; the CLI always talks to the local
    /// router.
    #[arg(long, global = true, hide = true)]
    local: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the router daemon.
    Router(Box<RouterArgs>),
    /// Run the network-policy controller (the DaemonSet's second container).
    Npc(Box<weft::npc::args::NpcArgs>),
    #[command(flatten)]
    Cli(CliCommand),
}

fn main() -> ExitCode {
    let invoked_as = std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "weft".to_string());
    let cli = Cli::parse_from(
        std::env::args_os()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .fold(
                vec![std::ffi::OsString::from(invoked_as)],
                |mut args, arg| {
                    args.push(arg);
                    args
                },
            ),
    );
    match cli.command {
        Command::Router(mut args) => match cli.http_addr.parse() {
            Ok(addr) => {
                args.http_addr = addr;
                run_router(*args)
            }
            Err(error) => {
                eprintln!(
                    "weft router: --http-addr {:?} is not an address:port: {error}",
                    cli.http_addr
                );
                ExitCode::from(2)
            }
        },
        Command::Npc(args) => run_npc(*args),
        Command::Cli(command) => cli::run(command, &cli.http_addr),
    }
}

/// Logs to stderr, filtered by `--log-level`.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(feature = "kube")]
fn run_npc(args: weft::npc::args::NpcArgs) -> ExitCode {
    init_logging(&args.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("weft npc: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(weft::npc::run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("weft npc: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "kube"))]
fn run_npc(_: weft::npc::args::NpcArgs) -> ExitCode {
    eprintln!("weft npc: this weft was built without the `kube` feature");
    ExitCode::FAILURE
}

fn run_router(args: RouterArgs) -> ExitCode {
    init_logging(&args.log_level);
    let system = actix::System::new();
    match system.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("weft router: {err}");
            ExitCode::FAILURE
        }
    }
}
