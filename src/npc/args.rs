//! `weft npc`'s command line (the DaemonSet's second container).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::parse_duration;

#[derive(clap::Args, Debug, Clone)]
pub struct NpcArgs {
    /// This node's name in Kubernetes: the pods on it are the ones enforced here (the DaemonSet
    /// sets HOSTNAME from spec.nodeName).
    #[arg(long, env = "HOSTNAME")]
    pub node_name: Option<String>,
    /// A kubeconfig file (default: the pod's service account).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Prometheus metrics and /healthz (Weave Net's npc port).
    #[arg(long, env = "WEAVE_NPC_METRICS_ADDR", default_value = "0.0.0.0:6781")]
    pub metrics_addr: SocketAddr,
    /// Log filter: error, warn, info, debug, trace (or a tracing directive).
    #[arg(long, env = "WEAVE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// How often the table is checked for an external flush or deletion (restored at once).
    #[arg(long, default_value = "2s", value_parser = parse_duration, hide = true)]
    pub check_interval: Duration,
}
