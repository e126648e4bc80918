//! Builders shared by the topology tests: short names and records from plain numbers.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{ConnectionSummary, PeerName, PeerRecord, PeerUid};

pub(crate) fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

pub(crate) fn summary(established: bool) -> ConnectionSummary {
    ConnectionSummary {
        remote_addr: SocketAddr::from(([10, 0, 0, 1], 6783)),
        outbound: true,
        established,
    }
}

/// A record for peer `n` listing connections to `(remote, established)`.
pub(crate) fn record(n: u64, uid: u64, version: u64, connections: &[(u64, bool)]) -> PeerRecord {
    PeerRecord {
        name: name(n),
        nickname: format!("peer-{n}"),
        uid: PeerUid(uid),
        version,
        listen_addr: SocketAddr::from(([0, 0, 0, 0], 6783)),
        conn_limit: 0,
        connections: connections
            .iter()
            .map(|&(remote, established)| (name(remote), summary(established)))
            .collect::<BTreeMap<_, _>>(),
    }
}
