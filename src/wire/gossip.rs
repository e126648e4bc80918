//! Gossip payloads: the topology channel carries a list of peer records (a delta, or the full
//! state). Bounded by the frame limit, and by a count so that a hostile update cannot make us
//! allocate for millions of empty records.

use super::{WireError, decode_message, encode_message};
use crate::topology::PeerRecord;

/// Most records one topology update may carry: far above any real mesh (Weave Net meshes melted
/// down well before 1000 peers), low enough to bound the work of one merge.
pub const MAX_RECORDS_PER_UPDATE: usize = 16 * 1024;

pub fn encode_topology(records: &[PeerRecord]) -> Result<Vec<u8>, WireError> {
    encode_message("topology update", &records)
}

pub fn decode_topology(bytes: &[u8]) -> Result<Vec<PeerRecord>, WireError> {
    let records: Vec<PeerRecord> = decode_message("topology update", bytes)?;
    if records.len() > MAX_RECORDS_PER_UPDATE {
        return Err(WireError::TooManyRecords {
            count: records.len(),
            max: MAX_RECORDS_PER_UPDATE,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{ConnectionSummary, PeerUid};
    use crate::wire::message::strategies::peer_name;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        (any::<std::net::IpAddr>(), any::<u16>()).prop_map(SocketAddr::from)
    }

    fn record() -> impl Strategy<Value = PeerRecord> {
        let connection = (socket_addr(), any::<bool>(), any::<bool>()).prop_map(
            |(remote_addr, outbound, established)| ConnectionSummary {
                remote_addr,
                outbound,
                established,
            },
        );
        (
            peer_name(),
            ".{0,16}",
            any::<u64>(),
            any::<u64>(),
            socket_addr(),
            prop::collection::btree_map(peer_name(), connection, 0..6),
        )
            .prop_map(|(name, nickname, uid, version, listen_addr, connections)| {
                PeerRecord {
                    name,
                    nickname,
                    uid: PeerUid(uid),
                    version,
                    listen_addr,
                    conn_limit: 0,
                    connections,
                }
            })
    }

    proptest! {
        #[test]
        fn topology_updates_round_trip(records in prop::collection::vec(record(), 0..8)) {
            let bytes = encode_topology(&records).unwrap();
            prop_assert_eq!(decode_topology(&bytes).unwrap(), records);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_topology(&bytes);
        }

        #[test]
        fn decoding_mutated_updates_never_panics(
            records in prop::collection::vec(record(), 1..4),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut bytes = encode_topology(&records).unwrap();
            for (index, value) in flips {
                let i = index.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode_topology(&bytes);
        }
    }
}
