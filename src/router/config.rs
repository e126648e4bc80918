//! `weft router`'s command line: flags and environment variables, defaults as in Weave Net unless
//! the comment says why not.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::daemon::parse_duration;
use crate::topology::PeerName;

/// Mesh port (Weave Net's 6783); fastdp uses port + 1.
pub const DEFAULT_PORT: u16 = 6783;

/// The control API's address unless `--http-addr`/`WEAVE_HTTP_ADDR` says otherwise: Weave's
/// 127.0.0.1:6784, loopback only because the API can connect peers and hand out addresses.
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6784);

#[derive(clap::Args, Debug, Clone)]
pub struct RouterArgs {
    /// TCP (control) and UDP (sleeve) port of the mesh.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on and to connect from (default: listen on all, any source).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// Our 48-bit peer name, like a MAC address (default: derived from /etc/machine-id and
    /// persisted).
    #[arg(long)]
    pub name: Option<PeerName>,
    /// Human-friendly name shown next to the peer name (default: the Kubernetes node name with
    /// `--kube-peers`, else the hostname).
    #[arg(long)]
    pub nickname: Option<String>,
    /// Most peer connections this router holds (0 = unlimited). Weft's default is 30: beyond
    /// that the mesh is partial and routes go multi-hop.
    #[arg(long, env = "CONN_LIMIT", default_value_t = 30)]
    pub conn_limit: u32,
    /// Control API address (status, connect, IPAM). On the command line it is the binary's
    /// global `--http-addr` (shared with the CLI subcommands), set here by `main`.
    #[arg(skip = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Prometheus metrics address.
    #[arg(long, env = "WEAVE_METRICS_ADDR", default_value = "0.0.0.0:6782")]
    pub metrics_addr: SocketAddr,
    /// Where persisted state goes: the database file is `<prefix>data.db`.
    #[arg(long, env = "DB_PREFIX", default_value = "/weavedb/weave-net")]
    pub db_prefix: String,
    /// Root of the host's filesystem (for /etc/machine-id when running in a container).
    #[arg(long, env = "HOST_ROOT", default_value = "/")]
    pub host_root: String,
    /// Only connect to peers given on the command line or with `connect`.
    #[arg(long)]
    pub no_discovery: bool,
    /// Run the control plane only: no bridge, no kernel devices. Lets dozens of routers share
    /// one machine on loopback addresses.
    #[arg(long)]
    pub no_dataplane: bool,
    /// Overlay (bridge) MTU in bytes. Default: the MTU of the underlay interface that routes to
    /// the first peer (else the default route's) minus the VXLAN overhead of 50 bytes.
    #[arg(long, env = "WEAVE_MTU")]
    pub mtu: Option<u32>,
    /// Do not program the kernel's VXLAN path (fastdp).
    #[arg(long, env = "WEAVE_NO_FASTDP")]
    pub no_fastdp: bool,
    /// Queues of the sleeve's TAP device (1 to 8), each with its own pair of I/O threads and UDP
    /// sockets. One by default: the kernel steers a flow to the queue its replies were written
    /// to, which gathers every flow onto one pair, so more queues do not spread flows yet
    /// (load-tests/README.md, "Sleeve queues").
    #[arg(
        long,
        env = "WEFT_SLEEVE_QUEUES",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=8)
    )]
    pub sleeve_queues: u8,
    /// With a password: underlay subnets (CIDR, comma-separated) whose peers may use fastdp,
    /// which this kernel cannot encrypt; peers elsewhere use the encrypted sleeve (Weave Net's
    /// `--trusted-subnets`). Without a password every peer may use fastdp.
    #[arg(long, value_delimiter = ',', env = "WEAVE_TRUSTED_SUBNETS")]
    pub trusted_subnets: Vec<crate::actors::fastdp::switch_policy::TrustedSubnet>,
    /// Log filter: error, warn, info, debug, trace (or a tracing directive).
    #[arg(long, env = "WEAVE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Interval between TCP heartbeats on a peer link.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub heartbeat_interval: Duration,
    /// A link that hears nothing for this long is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration, hide = true)]
    pub read_timeout: Duration,
    /// Time allowed for a new link's handshake (Weave Net: 10 s).
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub handshake_timeout: Duration,
    /// With a password, how long one sleeve key seals before the next replaces it (WireGuard's
    /// 120 s). Hidden: for tests that watch several rekeys in a short run.
    #[arg(
        long,
        env = "WEFT_SLEEVE_REKEY_INTERVAL",
        default_value = "120s",
        value_parser = parse_duration,
        hide = true
    )]
    pub sleeve_rekey_interval: Duration,
    /// The range all pods' addresses come from, shared by every peer (empty: no IPAM).
    #[arg(long, env = "IPALLOC_RANGE", default_value = "10.32.0.0/12")]
    pub ipalloc_range: String,
    /// The subnet `POST /ip/{id}` allocates in (default: the whole range).
    #[arg(long, env = "IPALLOC_DEFAULT_SUBNET")]
    pub ipalloc_default_subnet: Option<String>,
    /// How the range is first shared: `consensus[=N]` (agreement among the first N peers),
    /// `seed=<name>,<name>...` (those peers, no agreement needed) or `observer` (never owns
    /// space). Default: consensus among the initial peers and ourselves.
    #[arg(long, env = "IPALLOC_INIT")]
    pub ipalloc_init: Option<String>,
    /// The mesh password (Weave Net's `WEAVE_PASSWORD`): every mesh connection authenticates
    /// with it and is encrypted (Noise), and peers without it are refused. Prefer the environment
    /// or `WEAVE_PASSWORD_FILE` to the command line, which other users of the machine can read.
    #[arg(long, env = "WEAVE_PASSWORD", hide_env_values = true)]
    pub password: Option<Password>,
    /// A file holding the mesh password (a mounted Secret); one trailing newline is ignored.
    #[arg(long, env = "WEAVE_PASSWORD_FILE")]
    pub password_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Initial peers, `host[:port]`.
    pub peers: Vec<String>,
}

/// The Kubernetes side (`--kube-peers`): peers from Nodes, the peer-name record, reclaim of
/// deleted nodes, the node's network condition.
#[derive(clap::Args, Debug, Clone)]
pub struct KubeArgs {
    /// Take the peers from the cluster's Nodes (and record our name, reclaim deleted nodes'
    /// addresses, mark the node's network up). Default: on inside a pod (KUBERNETES_SERVICE_HOST
    /// set), off elsewhere. `--kube-peers=false` turns it off.
    #[arg(
        long,
        env = "WEAVE_KUBE_PEERS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub kube_peers: Option<bool>,
    /// A kubeconfig file (default: the pod's service account).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// This node's name in Kubernetes (the DaemonSet sets HOSTNAME from spec.nodeName).
    #[arg(long, env = "HOSTNAME")]
    pub node_name: Option<String>,
    /// Namespace of the `weave-net` ConfigMap that records which peer runs on which node.
    #[arg(long, env = "WEAVE_KUBE_NAMESPACE", default_value = "kube-system")]
    pub kube_namespace: String,
    /// How often the peer record is checked for deleted nodes to reclaim, besides at once on
    /// every Node deletion the watch reports.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub kube_reclaim_interval: Duration,
}

impl KubeArgs {
    pub fn enabled(&self) -> bool {
        self.kube_peers
            .unwrap_or_else(|| std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
    }
}

/// A secret from the command line or the environment: its `Debug` never shows it, because the
/// router logs its options at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::str::FromStr for Password {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Password(text.to_string()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Weave Net treated an empty `WEAVE_PASSWORD` as none: a Secret with an empty key or an
    /// unset optional `secretKeyRef` must not turn anything on.
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The password in a file: its content less the line end an editor or `echo` adds, which
    /// the other routers, given the same password some other way, would not have.
    pub fn from_file_content(content: &str) -> Self {
        let content = content.strip_suffix('\n').unwrap_or(content);
        Password(content.strip_suffix('\r').unwrap_or(content).to_string())
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read the mesh password from {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("both WEAVE_PASSWORD (--password) and WEAVE_PASSWORD_FILE are set: give one")]
    Both,
}

impl RouterArgs {
    /// The mesh password from the flag, the environment or the file; `None` when unset or empty.
    pub fn mesh_password(&self) -> Result<Option<Password>, PasswordError> {
        let given = self.password.clone().filter(Password::is_set);
        let Some(path) = &self.password_file else {
            return Ok(given);
        };
        if given.is_some() {
            return Err(PasswordError::Both);
        }
        let content = std::fs::read_to_string(path).map_err(|source| PasswordError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Some(Password::from_file_content(&content)).filter(Password::is_set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_the_logged_options() {
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            router: RouterArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["weft", "--password", "s3cret-words"])
            .expect("parse");
        let password = cli.router.password.clone().expect("password");
        assert!(password.is_set());
        let logged = format!("{:?}", cli.router);
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(logged.contains("<redacted>"), "{logged}");
        assert!(!"".parse::<Password>().expect("parse").is_set());
    }

    #[test]
    fn a_password_file_loses_its_line_end_only() {
        assert_eq!(
            Password::from_file_content("s3cret\n").as_bytes(),
            b"s3cret"
        );
        assert_eq!(
            Password::from_file_content("s3cret\r\n").as_bytes(),
            b"s3cret"
        );
        assert_eq!(Password::from_file_content("s3cret").as_bytes(), b"s3cret");
        assert_eq!(
            Password::from_file_content(" s3 \n\n").as_bytes(),
            b" s3 \n"
        );
        assert!(!Password::from_file_content("\n").is_set());
    }

    #[test]
    fn the_password_comes_from_one_place() {
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            router: RouterArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weave-passwd");
        std::fs::write(&file, "from-the-secret\n").unwrap();
        let file = file.to_str().unwrap();
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from([&["weft"], args].concat())
                .expect("parse")
                .router
        };
        let password = parse(&["--password-file", file]).mesh_password().unwrap();
        assert_eq!(password.unwrap().as_bytes(), b"from-the-secret");
        assert!(matches!(
            parse(&["--password-file", file, "--password", "x"]).mesh_password(),
            Err(PasswordError::Both)
        ));
        assert!(
            parse(&["--password", ""])
                .mesh_password()
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            parse(&["--password-file", "/nonexistent/weft-passwd"]).mesh_password(),
            Err(PasswordError::Read { .. })
        ));
    }
}
