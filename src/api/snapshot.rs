//! The router's state as the API shows it: one snapshot type that the status texts, the JSON
//! report and the metrics are all rendered from, so the three never disagree.

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
