//! The mesh's view of itself: every peer's self-authored record (who it is, which connections it
//! has), how records from gossip merge, which peers are still reachable, and the routes (unicast
//! next hops and broadcast trees) derived from it. Pure logic: no I/O, no clock.

mod nickname;
mod peer_name;
mod peers;
mod routes;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use nickname::{MAX_NICKNAME_BYTES, NicknameError, check_nickname};
pub use peer_name::{PeerName, PeerNameError, PeerUid};
pub use peers::{MAX_VERSION_LEAD, MergeOutcome, Topology};
pub(crate) use routes::undirected_adjacency;
pub use routes::{BroadcastTrees, Routes};

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What one peer says about itself. Only the peer named here ever authors a new version of it;
/// everyone else stores and relays it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub name: PeerName,
    pub nickname: String,
    pub uid: PeerUid,
    /// Bumped by the author on every change of its connections (or to outrank an old incarnation).
    pub version: u64,
    /// Where the peer accepts mesh connections. The IP may be unspecified (0.0.0.0) when the peer
    /// listens on all addresses; discovery then takes the IP others see it connect from.
    pub listen_addr: SocketAddr,
    /// The peer's own `--conn-limit` (0: unlimited), so that others can tell whether it has room
    /// for another link before they dial it or name it in a refusal.
    #[serde(default)]
    pub conn_limit: u32,
    /// The peer's connections, keyed by the remote peer's name.
    pub connections: BTreeMap<PeerName, ConnectionSummary>,
}

/// One connection as its owner reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSummary {
    /// The remote end's TCP address as the owner sees it.
    pub remote_addr: SocketAddr,
    /// Whether the owner dialled it.
    pub outbound: bool,
    /// Handshake done and the remote's first heartbeat received: usable for data routes.
    pub established: bool,
}
