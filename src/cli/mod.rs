//! The command-line client (`weft status`, `weave status`, ...), talking to the router's HTTP API;
//! `attach`, `detach` and the device half of `reset` act on the kernel directly instead, and
//! `setup-cni` on the CNI directories.
//!
//! This module owns the command enum and the dispatch; each subcommand lives in its own file and
//! [`client`] does the HTTP. Everything the router knows comes from the API, never from local files,
//! so the CLI works the same from a shell on the node and through `kubectl exec`.

mod attach;
pub use weft_client::client;
mod connect;
mod error;
mod ipam;
mod pretty_json;
mod report;
mod reset;
mod setup_cni;
mod status;

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;

pub use attach::Ipv4Cidr;
pub use error::CliError;
pub use setup_cni::{IPAM_PLUGIN_NAME, PLUGIN_NAME};

use client::Client;

/// A CLI subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum CliCommand {
    /// Show the router's status (`weave status`), or one section of it.
    Status {
        #[arg(value_enum)]
        section: Option<StatusSection>,
    },
    /// Print the router's full report as JSON.
    Report,
    /// Add peers to connect to.
    Connect {
        /// Replace the current list of direct peers instead of adding to it.
        #[arg(long)]
        replace: bool,
        peers: Vec<String>,
    },
    /// Remove peers from the list of direct peers.
    Forget {
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Take over the IP ranges of dead peers (by name or nickname). Run it on one peer only.
    Rmpeer {
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Hand this peer's IP ranges to a live peer before the node leaves the cluster, then remove
    /// the node's devices (bridge, VXLAN device, pod veths) and nftables tables. Run as root on
    /// the node.
    Reset {
        /// Only hand the ranges over; leave the devices (and fail if the router is down).
        #[arg(long)]
        ipam_only: bool,
        /// The mesh port the router used: its VXLAN device is `vxlan-<port + 1>`.
        #[arg(long, default_value_t = 6783)]
        port: u16,
        /// Also remove the node's files: the CNI plugin, our conflist, the router's database
        /// (after `kubectl delete -f weave-net.yaml`).
        #[arg(long)]
        purge: bool,
        /// Where the node's filesystem is (in a container with the host mounted, e.g. /host).
        #[arg(long, default_value = "/")]
        host_root: std::path::PathBuf,
    },
    /// Wire a network namespace to the bridge over a veth pair (as root, on the node).
    Attach {
        /// Namespace name (under /var/run/netns) or absolute path (e.g. /proc/PID/ns/net).
        #[arg(long)]
        netns: String,
        /// The address inside the namespace, ADDRESS/PREFIX (e.g. 10.32.0.2/12).
        #[arg(long)]
        ip: Option<Ipv4Cidr>,
        /// Interface name inside the namespace.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// Default route inside the namespace via this address (e.g. the bridge's).
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// Let frames leave the host port they came in on (a pod reaching itself via a
        /// service address).
        #[arg(long)]
        hairpin: bool,
    },
    /// Install the CNI plugin (as weave-net and weave-ipam) and write 10-weave.conflist unless
    /// an operator's own file has that name (what the DaemonSet's init container runs).
    SetupCni {
        /// The plugin binary to install [default: weave-net beside this binary].
        #[arg(long)]
        plugin: Option<std::path::PathBuf>,
        /// Where kubelet looks for CNI plugins.
        #[arg(long, default_value = setup_cni::DEFAULT_BIN_DIR)]
        bin_dir: std::path::PathBuf,
        /// Where kubelet looks for CNI network configs.
        #[arg(long, default_value = setup_cni::DEFAULT_CONF_DIR)]
        conf_dir: std::path::PathBuf,
        /// Also install the reference plugins portmap and loopback from this directory, where the
        /// node has none (the image carries Debian's in /usr/lib/cni).
        #[arg(long)]
        reference_plugins: Option<std::path::PathBuf>,
    },
    /// Remove a namespace's veth pair (as root, on the node); not attached is not an error.
    Detach {
        /// Namespace name (under /var/run/netns) or absolute path.
        #[arg(long)]
        netns: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusSection {
    Peers,
    Connections,
    Targets,
    Ipam,
}

/// Runs `command` against the router's API at `http_addr` (`host:port`), printing the result on
/// stdout and any error as one `weft: ...` line on stderr. Exit code 0 on success, 1 on failure.
pub fn run(command: CliCommand, http_addr: &str) -> ExitCode {
    let client = Client::new(http_addr);
    let mut out = io::stdout().lock();
    match execute(command, &client, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output has gone (`weft report | head`): nobody is left to tell.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weft: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: CliCommand, client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        CliCommand::Status { section } => status::run(client, section, out)?,
        CliCommand::Report => report::run(client, out)?,
        CliCommand::Connect { replace, peers } => connect::connect(client, &peers, replace, out)?,
        CliCommand::Forget { peers } => connect::forget(client, &peers, out)?,
        CliCommand::Rmpeer { peers } => ipam::rmpeer(client, &peers, out)?,
        CliCommand::Reset {
            ipam_only,
            port,
            purge,
            host_root,
        } => {
            let args = reset::ResetArgs {
                ipam_only,
                port,
                purge,
                host_root,
            };
            reset::reset(client, &args, out)?;
        }
        CliCommand::Attach {
            netns,
            ip,
            ifname,
            gateway,
            hairpin,
        } => {
            let args = attach::AttachArgs {
                netns,
                ip,
                ifname,
                gateway,
                hairpin,
            };
            attach::attach(&args, out)?;
        }
        CliCommand::Detach { netns } => attach::detach(&netns, out)?,
        CliCommand::SetupCni {
            plugin,
            bin_dir,
            conf_dir,
            reference_plugins,
        } => {
            let args = setup_cni::SetupArgs {
                plugin,
                bin_dir,
                conf_dir,
                reference_plugins,
            };
            setup_cni::setup(&args, out)?;
        }
    }
    out.flush().map_err(CliError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_client::test_server::one_shot_server;

    fn execute_against(response: &'static str, command: CliCommand) -> (String, String) {
        let (addr, server) = one_shot_server(response);
        let mut out = Vec::new();
        execute(command, &Client::new(&addr), &mut out).expect("command succeeds");
        let request = server.join().expect("server thread");
        (request, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn status_prints_the_body_between_blank_lines() {
        let (request, out) = execute_against(
            "HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n        Service: router\n\n",
            CliCommand::Status { section: None },
        );
        assert!(request.starts_with("GET /status HTTP/1.1\r\n"), "{request}");
        assert_eq!(out, "\n        Service: router\n\n\n");
    }

    #[test]
    fn status_section_prints_the_body_as_is() {
        let (request, out) = execute_against(
            "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n10.0.0.5:6783\n",
            CliCommand::Status {
                section: Some(StatusSection::Targets),
            },
        );
        assert!(
            request.starts_with("GET /status/targets HTTP/1.1\r\n"),
            "{request}"
        );
        assert_eq!(out, "10.0.0.5:6783\n");
    }

    #[test]
    fn report_is_pretty_printed() {
        let (request, out) = execute_against(
            "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n{\"Version\":\"0.1.0\",\"A\":[]}",
            CliCommand::Report,
        );
        assert!(request.starts_with("GET /report HTTP/1.1\r\n"), "{request}");
        assert_eq!(out, "{\n    \"Version\": \"0.1.0\",\n    \"A\": []\n}\n");
    }

    #[test]
    fn connect_replace_posts_peers_and_replace() {
        let (request, out) = execute_against(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            CliCommand::Connect {
                replace: true,
                peers: vec!["10.0.0.1".to_string(), "10.0.0.2:6783".to_string()],
            },
        );
        assert!(
            request.starts_with("POST /connect HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("\r\n\r\npeer=10.0.0.1&peer=10.0.0.2%3A6783&replace=true"),
            "{request}"
        );
        assert_eq!(out, "");
    }

    #[test]
    fn forget_posts_peers() {
        let (request, _) = execute_against(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            CliCommand::Forget {
                peers: vec!["10.0.0.1".to_string()],
            },
        );
        assert!(
            request.starts_with("POST /forget HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\npeer=10.0.0.1"), "{request}");
    }
}
