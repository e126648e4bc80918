//! Every metric the router and `weft npc` export, declared here and only here. Names kept from
//! Weave Net where it had one (`weave_*`); our additions are `weft_*`. Labels come from enums,
//! never from peer names or addresses, so the series count stays bounded.
//!
//! This module sits below every layer that records a metric, so it names none of their types:
//! an enum of a higher layer that labels a series (the sleeve's drop causes, npc's protocols and
//! directions) implements [`LabelValue`], and the stats it reads come from the crates below.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::snapshot::{ConnectionState, IpamSnapshot, RouterStatus};

const CONNECTIONS: &str = "weave_connections";
const TERMINATIONS: &str = "weave_connection_terminations_total";
const REFUSED: &str = "weft_connections_refused_total";
const AUTH_FAILURES: &str = "weft_mesh_authentication_failures_total";
const PEERS: &str = "weft_peers";
const DROPPED: &str = "weft_messages_dropped_total";
const RESTARTS: &str = "weft_actor_restarts_total";
const IPS: &str = "weave_ips";
const MAX_IPS: &str = "weave_max_ips";
const IPAM_UNREACHABLE_COUNT: &str = "weave_ipam_unreachable_count";
const IPAM_UNREACHABLE_PERCENTAGE: &str = "weave_ipam_unreachable_percentage";
const IPAM_PENDING_ALLOCATES: &str = "weave_ipam_pending_allocates";
const IPAM_PENDING_CLAIMS: &str = "weave_ipam_pending_claims";
const IPAM_SPLIT_BRAIN: &str = "weft_ipam_split_brain_total";
const OVERLAY_FALLBACKS: &str = "weft_overlay_fallbacks_total";
const OVERLAY_FRAMES: &str = "weft_overlay_frames_total";
const OVERLAY_BYTES: &str = "weft_overlay_bytes_total";
const SLEEVE_DROPPED: &str = "weft_sleeve_dropped_total";
const NPC_BLOCKED: &str = "weavenpc_blocked_connections_total";
/// Distinct `dport` label values of the blocked counter: a port scan must not make 65,536
/// series. Past this many, other ports count under `dport="other"`.
const NPC_BLOCKED_PORT_LABELS: usize = 256;
const NPC_BLOCKED_BY_POLICY: &str = "weavenpc_blocked_connections_by_policy_total";
/// Distinct `policy` label values of the per-policy blocked counter: policies come and go, and
/// a cluster may have thousands; past this many, other policies count under `policy="other"`.
const NPC_BLOCKED_POLICY_LABELS: usize = 256;
const NPC_POLICY_ERRORS: &str = "weavenpc_policy_enforcement_errors";
const NPC_ELEMENTS: &str = "weft_npc_set_elements";
const NPC_SYNC_SECONDS: &str = "weft_npc_sync_duration_seconds";
const NPC_SYNCS: &str = "weft_npc_syncs_total";
const NPC_LAST_SYNC_OK: &str = "weft_npc_last_sync_success";
/// Buckets of the npc sync histogram, in seconds: the goal is well under 100 ms per change.
const NPC_SYNC_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const KUBE_NODES: &str = "weft_kube_nodes";
const KUBE_RECLAIMS: &str = "weft_kube_reclaims_total";
const KUBE_API_ERRORS: &str = "weft_kube_api_errors_total";

static TERMINATION_COUNT: AtomicU64 = AtomicU64::new(0);
static REFUSED_FOR_LIMIT_COUNT: AtomicU64 = AtomicU64::new(0);
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// An enum whose variants label a series: each variant is one fixed string, so the series count
/// is bounded by the enum. Implemented next to the enum, by the layer that owns it.
pub trait LabelValue: Copy {
    fn label(self) -> &'static str;
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug)]
pub enum RefusalKind {
    ConnectionLimit,
    /// Too many handshakes under way, in total or from one source.
    PendingHandshakes,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 2] =
        [RefusalKind::ConnectionLimit, RefusalKind::PendingHandshakes];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::ConnectionLimit => "connection_limit",
            RefusalKind::PendingHandshakes => "pending_handshakes",
        }
    }
}

/// Why a mesh connection ended for want of a shared mesh password (`--password`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// The peer has no password, or a different one.
    PeerLacksPassword,
    /// The peer's proof of the password did not authenticate (its password is not ours).
    AuthenticationFailed,
    /// The peer's mesh has a password and we have none.
    PasswordRequired,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 3] = [
        AuthFailure::PeerLacksPassword,
        AuthFailure::AuthenticationFailed,
        AuthFailure::PasswordRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::PeerLacksPassword => "peer_lacks_password",
            AuthFailure::AuthenticationFailed => "authentication_failed",
            AuthFailure::PasswordRequired => "password_required",
        }
    }
}

/// Why a message was dropped instead of queued (every queue is bounded).
#[derive(Clone, Copy, Debug)]
pub enum DropReason {
    /// A link's mailbox was full (the link is slower than gossip).
    LinkMailboxFull,
    /// A link's socket writer had its backlog full.
    SocketBacklog,
    ChannelMailboxFull,
    MakerMailboxFull,
    /// A message too large for one frame (sent, it would have failed its link).
    FrameTooLarge,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::LinkMailboxFull,
        DropReason::SocketBacklog,
        DropReason::ChannelMailboxFull,
        DropReason::MakerMailboxFull,
        DropReason::FrameTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::LinkMailboxFull => "link_mailbox_full",
            DropReason::SocketBacklog => "socket_backlog",
            DropReason::ChannelMailboxFull => "channel_mailbox_full",
            DropReason::MakerMailboxFull => "maker_mailbox_full",
            DropReason::FrameTooLarge => "frame_too_large",
        }
    }
}

/// The supervised long-lived actors.
#[derive(Clone, Copy, Debug)]
pub enum ActorKind {
    Gossip,
    ConnectionMaker,
    Listener,
    Ipam,
    Fastdp,
    MacLearner,
    Sleeve,
    Kube,
}

/// A call to the Kubernetes API (the `op` label of `weft_kube_api_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeApiOp {
    ListNodes,
    WatchNodes,
    WatchNamespaces,
    WatchPods,
    WatchNetworkPolicies,
    GetNode,
    ReadPeerList,
    WritePeerList,
    PatchNodeStatus,
}

impl KubeApiOp {
    /// The calls the router makes (`--kube-peers`).
    pub const ROUTER: [KubeApiOp; 6] = [
        KubeApiOp::ListNodes,
        KubeApiOp::WatchNodes,
        KubeApiOp::GetNode,
        KubeApiOp::ReadPeerList,
        KubeApiOp::WritePeerList,
        KubeApiOp::PatchNodeStatus,
    ];
    /// The calls `weft npc` makes.
    pub const NPC: [KubeApiOp; 3] = [
        KubeApiOp::WatchNamespaces,
        KubeApiOp::WatchPods,
        KubeApiOp::WatchNetworkPolicies,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KubeApiOp::ListNodes => "list_nodes",
            KubeApiOp::WatchNodes => "watch_nodes",
            KubeApiOp::WatchNamespaces => "watch_namespaces",
            KubeApiOp::WatchPods => "watch_pods",
            KubeApiOp::WatchNetworkPolicies => "watch_networkpolicies",
            KubeApiOp::GetNode => "get_node",
            KubeApiOp::ReadPeerList => "read_peer_list",
            KubeApiOp::WritePeerList => "write_peer_list",
            KubeApiOp::PatchNodeStatus => "patch_node_status",
        }
    }
}

/// The path pod frames take between nodes (the `path` label of the traffic counters).
#[derive(Clone, Copy, Debug)]
pub enum OverlayPath {
    /// The kernel's VXLAN device.
    Fastdp,
    /// The router's UDP sleeve.
    Sleeve,
}

impl OverlayPath {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayPath::Fastdp => "fastdp",
            OverlayPath::Sleeve => "sleeve",
        }
    }
}

impl ActorKind {
    pub const ALL: [ActorKind; 8] = [
        ActorKind::Gossip,
        ActorKind::ConnectionMaker,
        ActorKind::Listener,
        ActorKind::Ipam,
        ActorKind::Fastdp,
        ActorKind::MacLearner,
        ActorKind::Sleeve,
        ActorKind::Kube,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Gossip => "gossip",
            ActorKind::ConnectionMaker => "connection_maker",
            ActorKind::Listener => "listener",
            ActorKind::Ipam => "ipam",
            ActorKind::Fastdp => "fastdp",
            ActorKind::MacLearner => "mac_learner",
            ActorKind::Sleeve => "sleeve",
            ActorKind::Kube => "kube",
        }
    }
}

impl std::fmt::Display for ActorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Installs the Prometheus recorder (once per process) and describes every metric.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(NPC_SYNC_SECONDS.to_string()),
                    NPC_SYNC_BUCKETS,
                )
                .expect("the npc buckets are not empty")
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle());
            describe_gauge!(
                CONNECTIONS,
                "Number of peer connections and targets, by state."
            );
            describe_counter!(TERMINATIONS, "Number of peer connections that ended.");
            describe_counter!(REFUSED, "Number of inbound connections refused, by reason.");
            describe_counter!(
                AUTH_FAILURES,
                "Mesh connections (either direction) that ended because the two ends do not share the mesh password, by reason."
            );
            describe_gauge!(
                PEERS,
                "Number of peers in the topology, ourselves included."
            );
            describe_counter!(
                DROPPED,
                "Messages dropped because a bounded queue was full."
            );
            describe_counter!(
                NPC_BLOCKED,
                "New connections dropped by network policy, by protocol and destination port."
            );
            describe_counter!(
                NPC_BLOCKED_BY_POLICY,
                "New connections dropped by network policy, by each policy isolating the pod that dropped them (<namespace>/<name>) and direction."
            );
            describe_gauge!(
                NPC_POLICY_ERRORS,
                "NetworkPolicies that cannot be enforced as written (enforced closed instead)."
            );
            describe_gauge!(NPC_ELEMENTS, "Elements in the npc table's sets.");
            describe_histogram!(
                NPC_SYNC_SECONDS,
                "Time to compile and write the npc table after a change, in seconds."
            );
            describe_counter!(NPC_SYNCS, "Writes of the npc table, by result.");
            describe_gauge!(
                NPC_LAST_SYNC_OK,
                "1 if the last write of the npc table worked."
            );
            describe_gauge!(KUBE_NODES, "Number of Kubernetes Nodes the router knows.");
            describe_counter!(
                KUBE_RECLAIMS,
                "Deleted nodes whose address ranges this router took over."
            );
            describe_counter!(
                KUBE_API_ERRORS,
                "Failed calls to the Kubernetes API, by operation."
            );
            describe_counter!(
                RESTARTS,
                "Re-creations of supervised actors after they stopped."
            );
            describe_counter!(
                OVERLAY_FALLBACKS,
                "Peers switched from fastdp to sleeve because fastdp heartbeats failed."
            );
            describe_counter!(
                OVERLAY_FRAMES,
                "Frames carried between nodes, by path and direction."
            );
            describe_counter!(
                OVERLAY_BYTES,
                "Bytes carried between nodes, by path and direction."
            );
            describe_counter!(
                SLEEVE_DROPPED,
                "Frames and datagrams the sleeve dropped, by cause."
            );
            handle
        })
        .clone()
}

/// Exports the router's event counters at 0 before their first event. The exporter only knows a
/// series once it was touched, and a dashboard should draw a healthy node's 0 line rather than
/// "No data" (which also hides a scrape that stopped). Label values come from the enums, so this
/// is every series those counters can have.
pub fn register_router_series() {
    counter!(TERMINATIONS).increment(0);
    for kind in RefusalKind::ALL {
        counter!(REFUSED, "reason" => kind.as_str()).increment(0);
    }
    for failure in AuthFailure::ALL {
        counter!(AUTH_FAILURES, "reason" => failure.as_str()).increment(0);
    }
    for reason in DropReason::ALL {
        counter!(DROPPED, "reason" => reason.as_str()).increment(0);
    }
    for actor in ActorKind::ALL {
        counter!(RESTARTS, "actor" => actor.as_str()).increment(0);
    }
    counter!(OVERLAY_FALLBACKS).increment(0);
    counter!(IPAM_SPLIT_BRAIN).increment(0);
}

/// The same for the Kubernetes counters of a component, once it talks to the API server: `ops`
/// are the calls it makes ([`KubeApiOp::ROUTER`] or [`KubeApiOp::NPC`]); the router also
/// reclaims.
pub fn register_kube_series(ops: &[KubeApiOp]) {
    for op in ops {
        counter!(KUBE_API_ERRORS, "op" => op.as_str()).increment(0);
    }
    if ops == KubeApiOp::ROUTER {
        counter!(KUBE_RECLAIMS).increment(0);
    }
}

/// The same for `weft npc`'s own counters (the blocked counter excepted: its labels are the
/// blocked connections', unknown before the first one) and its sync histogram, whose empty
/// buckets make the first write an increase that a rate sees.
pub fn register_npc_series() {
    for result in SyncResult::ALL {
        counter!(NPC_SYNCS, "result" => result.as_str()).increment(0);
    }
    let _registered = histogram!(NPC_SYNC_SECONDS);
    register_kube_series(&KubeApiOp::NPC);
}

pub fn connection_terminated() {
    TERMINATION_COUNT.fetch_add(1, Ordering::Relaxed);
    counter!(TERMINATIONS).increment(1);
}

pub fn termination_count() -> u64 {
    TERMINATION_COUNT.load(Ordering::Relaxed)
}

pub fn connection_refused(kind: RefusalKind) {
    if let RefusalKind::ConnectionLimit = kind {
        REFUSED_FOR_LIMIT_COUNT.fetch_add(1, Ordering::Relaxed);
    }
    counter!(REFUSED, "reason" => kind.as_str()).increment(1);
}

pub fn mesh_authentication_failed(failure: AuthFailure) {
    counter!(AUTH_FAILURES, "reason" => failure.as_str()).increment(1);
}

pub fn refused_for_limit_count() -> u64 {
    REFUSED_FOR_LIMIT_COUNT.load(Ordering::Relaxed)
}

pub fn message_dropped(reason: DropReason) {
    counter!(DROPPED, "reason" => reason.as_str()).increment(1);
}

pub fn actor_restarted(actor: ActorKind) {
    counter!(RESTARTS, "actor" => actor.as_str()).increment(1);
}

pub fn set_peers(count: usize) {
    gauge!(PEERS).set(count as f64);
}

/// Sets the connection gauges from a status snapshot, just before a scrape is rendered, so the
/// gauges and `weave status` never disagree.
pub fn record_connections(status: &RouterStatus) {
    const STATES: [ConnectionState; 5] = [
        ConnectionState::Established,
        ConnectionState::Pending,
        ConnectionState::Connecting,
        ConnectionState::Retrying,
        ConnectionState::Failed,
    ];
    /// Weave Net's overlay types; `unknown` is a link no overlay carries (yet).
    const TYPES: [&str; 3] = ["fastdp", "sleeve", "unknown"];
    // Weave's `encryption` label: "yes" for links whose pod traffic is encrypted, "" otherwise.
    let encrypted = |c: &crate::snapshot::ConnectionStatus| {
        c.attrs
            .iter()
            .any(|(key, value)| key == "encrypted" && value == "true")
    };
    for state in STATES {
        for kind in TYPES {
            for (label, wanted) in [("", false), ("yes", true)] {
                let count = status
                    .connections
                    .iter()
                    .filter(|c| {
                        c.state == state && c.overlay.as_deref().unwrap_or("unknown") == kind
                    })
                    .filter(|c| encrypted(c) == wanted)
                    .count();
                gauge!(CONNECTIONS, "state" => state.as_str(), "type" => kind, "encryption" => label)
                    .set(count as f64);
            }
        }
    }
}

pub fn overlay_fallback() {
    counter!(OVERLAY_FALLBACKS).increment(1);
}

/// Sets the traffic counters of `path` from its device's own counters (the kernel counts
/// fastdp frames; nothing is counted twice in userspace).
pub fn record_overlay_traffic(path: OverlayPath, stats: &weft_netdev::link::LinkStats) {
    let path = path.as_str();
    counter!(OVERLAY_FRAMES, "path" => path, "direction" => "rx").absolute(stats.rx_packets);
    counter!(OVERLAY_FRAMES, "path" => path, "direction" => "tx").absolute(stats.tx_packets);
    counter!(OVERLAY_BYTES, "path" => path, "direction" => "rx").absolute(stats.rx_bytes);
    counter!(OVERLAY_BYTES, "path" => path, "direction" => "tx").absolute(stats.tx_bytes);
}

/// Sets the sleeve's drop counters from the engine's own (one series per cause).
pub fn record_sleeve_drops(drops: &[(impl LabelValue, u64)]) {
    for (cause, count) in drops {
        counter!(SLEEVE_DROPPED, "cause" => cause.label()).absolute(*count);
    }
}

/// How a write of the npc table went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncResult {
    Ok,
    Failed,
}

impl SyncResult {
    pub const ALL: [SyncResult; 2] = [SyncResult::Ok, SyncResult::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncResult::Ok => "ok",
            SyncResult::Failed => "failed",
        }
    }
}

/// One write of the npc table: its duration, result and size.
pub fn npc_synced(seconds: f64, result: SyncResult, elements: usize) {
    counter!(NPC_SYNCS, "result" => result.as_str()).increment(1);
    gauge!(NPC_LAST_SYNC_OK).set(if result == SyncResult::Ok { 1.0 } else { 0.0 });
    if result == SyncResult::Ok {
        histogram!(NPC_SYNC_SECONDS).record(seconds);
        gauge!(NPC_ELEMENTS).set(elements as f64);
    }
}

/// A new connection dropped by network policy (Weave Net's counter and labels).
pub fn npc_blocked(protocol: Option<impl LabelValue>, dport: u16) {
    static PORTS: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let protocol = protocol.map_or("other", LabelValue::label);
    let port = {
        let mut ports = PORTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ports.contains(&dport) || ports.len() < NPC_BLOCKED_PORT_LABELS {
            if !ports.contains(&dport) {
                ports.push(dport);
            }
            dport.to_string()
        } else {
            "other".to_string()
        }
    };
    counter!(NPC_BLOCKED, "protocol" => protocol, "dport" => port).increment(1);
}

/// A new connection dropped by network policy, counted for one of the policies isolating the
/// end that dropped it (none of them allowed it).
pub fn npc_blocked_by_policy(policy: &str, direction: impl LabelValue) {
    static POLICIES: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let label = {
        let mut policies = POLICIES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if policies.contains(policy) || policies.len() < NPC_BLOCKED_POLICY_LABELS {
            policies.insert(policy.to_string());
            policy.to_string()
        } else {
            "other".to_string()
        }
    };
    counter!(NPC_BLOCKED_BY_POLICY, "policy" => label, "direction" => direction.label())
        .increment(1);
}

pub fn npc_policy_errors(count: usize) {
    gauge!(NPC_POLICY_ERRORS).set(count as f64);
}

/// The Nodes the router knows (`--kube-peers`).
pub fn kube_nodes(count: usize) {
    gauge!(KUBE_NODES).set(count as f64);
}

/// A deleted node's address ranges were taken over by this router.
pub fn kube_reclaimed() {
    counter!(KUBE_RECLAIMS).increment(1);
}

pub fn kube_api_error(op: KubeApiOp) {
    counter!(KUBE_API_ERRORS, "op" => op.as_str()).increment(1);
}

pub fn ipam_split_brain() {
    counter!(IPAM_SPLIT_BRAIN).increment(1);
}

/// Sets the IPAM gauges from its snapshot, just before a scrape is rendered.
pub fn record_ipam(ipam: &IpamSnapshot) {
    gauge!(IPS, "state" => "local-used").set(ipam.active_ips as f64);
    gauge!(MAX_IPS).set(ipam.range_num_ips as f64);
    gauge!(IPAM_UNREACHABLE_COUNT).set(ipam.unreachable_count as f64);
    gauge!(IPAM_UNREACHABLE_PERCENTAGE).set(ipam.unreachable_percentage);
    gauge!(IPAM_PENDING_ALLOCATES).set(ipam.pending_allocates as f64);
    gauge!(IPAM_PENDING_CLAIMS).set(ipam.pending_claims as f64);
}

#[cfg(test)]
mod tests;
