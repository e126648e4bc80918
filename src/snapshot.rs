//! The router's state as the API shows it: one snapshot type that the status texts, the JSON
//! report and the metrics are all rendered from, so the three never disagree. The actors and the
//! Kubernetes side fill its parts, so it sits below them.

use serde::Serialize;

use crate::topology::{PeerName, PeerUid};

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RouterStatus {
    pub version: String,
    /// Protocol name (`weft`) and version range.
    pub protocol: String,
    pub protocol_min_version: u8,
    pub protocol_max_version: u8,
    pub name: PeerName,
    pub nick_name: String,
    pub encryption: bool,
    pub peer_discovery: bool,
    pub port: u16,
    pub conn_limit: u32,
    /// Targets from the command line and `connect` (the list `weave status targets` prints).
    pub targets: Vec<String>,
    /// Live links and targets not currently connected, as `weave status connections` shows them.
    pub connections: Vec<ConnectionStatus>,
    pub peers: Vec<PeerStatus>,
    pub unicast_routes: Vec<UnicastRoute>,
    pub broadcast_routes: Vec<BroadcastRoute>,
    /// Links that ended since start (not counting connections to ourselves).
    pub termination_count: u64,
    /// Connections refused because of the connection limit since start.
    pub refused_for_limit_count: u64,
    pub trusted_subnets: Vec<String>,
    /// The IP allocator's view, when IPAM runs.
    #[serde(rename = "IPAM", skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamSnapshot>,
    /// The MAC table (Weave Net's `MACs`), when the data plane runs.
    #[serde(rename = "MACs")]
    pub macs: Vec<MacStatus>,
    /// Each linked peer's overlay and fastdp heartbeat health, when the data plane runs.
    pub overlays: Vec<OverlayStatus>,
    /// Peer discovery from Kubernetes Nodes, with `--kube-peers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubeStatus>,
}

/// The router's Kubernetes side as `weave status` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KubeStatus {
    pub api_url: String,
    pub node_name: String,
    /// Nodes known (from the last complete list and the watch since).
    pub nodes: usize,
    /// A complete Node list has been seen.
    pub synced: bool,
    /// The last API failure, while the API is unreachable or refusing us.
    pub error: Option<String>,
}

/// Asks the Kubernetes side (`--kube-peers`) for its state. Declared with its answer, below both
/// the API that asks and the `KubePeers` actor that answers (which exists only with the `kube`
/// feature, while the API's question does not depend on it).
#[derive(actix::Message)]
#[rtype(result = "KubeStatus")]
pub struct GetKubeStatus;

/// One MAC table row, as Weave Net's report showed it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MacStatus {
    pub mac: String,
    /// The peer the MAC lives behind (ourselves for local MACs).
    pub name: PeerName,
    pub nick_name: Option<String>,
    /// When a frame from it was last seen (RFC 3339, UTC; refreshed at most once a minute).
    pub last_seen: String,
}

/// The overlay switch's view of one linked peer.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct OverlayStatus {
    pub name: PeerName,
    pub nick_name: String,
    /// `fastdp` or `sleeve`.
    pub overlay: String,
    /// Fastdp heartbeats are being acked (false with fastdp disabled).
    pub fastdp_healthy: bool,
    /// Milliseconds since the last heartbeat ack, if any came.
    pub last_heartbeat_ack_ms: Option<u64>,
    /// Where the peer's sleeve is sent to (None without a sleeve).
    pub sleeve_address: Option<String>,
    /// The peer acknowledged a sleeve (UDP) heartbeat on this link.
    pub sleeve_established: bool,
    /// The path MTU the sleeve verified with probes, once the search ended.
    pub sleeve_verified_mtu: Option<u16>,
}

/// The IP allocator as `weave status`, `weave status ipam`, the report and the metrics show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamSnapshot {
    /// `ready`, `idle`, `awaiting consensus (quorum: Q, known: K)`, ...
    pub status: String,
    pub range: String,
    pub default_subnet: String,
    #[serde(rename = "RangeNumIPs")]
    pub range_num_ips: u64,
    #[serde(rename = "ActiveIPs")]
    pub active_ips: u64,
    /// One entry per owner of part of the range, ours first.
    pub entries: Vec<IpamShare>,
    pub unreachable_count: usize,
    pub unreachable_percentage: f64,
    pub pending_allocates: usize,
    pub pending_claims: usize,
    /// Something the operator must act on (a split brain and the way out), or was done for them
    /// (another ring adopted).
    pub warning: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamShare {
    pub peer: PeerName,
    pub nick_name: Option<String>,
    pub addresses: u64,
    pub percent: f64,
    pub reachable: bool,
    /// Addresses in use, known for ourselves only.
    pub active: Option<u64>,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// A first attempt to a target is under way.
    Connecting,
    /// A later attempt (after a failure) is under way.
    Retrying,
    /// The last attempt failed; the next one is scheduled.
    Failed,
    /// Handshake done, waiting for the link to prove itself.
    Pending,
    Established,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Retrying => "retrying",
            ConnectionState::Failed => "failed",
            ConnectionState::Pending => "pending",
            ConnectionState::Established => "established",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionStatus {
    /// Remote address (`ip:port`) of a link, or the target as given.
    pub address: String,
    pub outbound: bool,
    pub state: ConnectionState,
    /// For links: the remote peer. For targets: none.
    pub peer: Option<PeerName>,
    pub nick_name: Option<String>,
    /// For failed/retrying targets: the last error and, when failed, the next retry time.
    pub info: String,
    /// Overlay carrying the link's traffic (`fastdp`, `sleeve`), when there is one.
    pub overlay: Option<String>,
    /// Extra `key=value` attributes shown after the peer (e.g. `mtu`).
    pub attrs: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PeerStatus {
    pub name: PeerName,
    pub nick_name: String,
    #[serde(rename = "UID")]
    pub uid: PeerUid,
    pub version: u64,
    pub connections: Vec<PeerConnectionStatus>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PeerConnectionStatus {
    pub name: PeerName,
    /// The remote peer's nickname when its record is known.
    pub nick_name: Option<String>,
    pub address: String,
    pub outbound: bool,
    pub established: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct UnicastRoute {
    pub dest: PeerName,
    pub via: PeerName,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BroadcastRoute {
    pub source: PeerName,
    pub via: Vec<PeerName>,
}

/// `SystemTime` as RFC 3339 UTC with second precision (`2026-01-31T12:00:00Z`), as Weave Net's
/// report printed times; no date crate needed for this one format.
pub fn rfc3339_utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::rfc3339_utc;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339_utc(leap_day), "2000-02-29T01:02:03Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339_utc(later), "2026-11-18T11:06:40Z");
    }
}
