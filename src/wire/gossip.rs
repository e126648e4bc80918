//! Gossip payloads: the topology channel carries a list of peer records (a delta, or the full
//! state). Bounded by the frame limit, and by a count so that a hostile update cannot make us
//! allocate for millions of empty records.

use super::{MAX_FRAME_BYTES, WireError, decode_message, encode_message};
use crate::topology::PeerRecord;

/// Most records one topology update may carry: far above any real mesh (Weave Net meshes melted
/// down well before 1000 peers), low enough to bound the work of one merge.
pub const MAX_RECORDS_PER_UPDATE: usize = 16 * 1024;

/// Largest topology payload we send in one message: a tenth of the frame limit, so that the
/// envelope always fits and one message's merge stays short. A full state above it goes out in
/// several updates; sent whole, a topology over the frame limit could not be written, and every
/// link it went down closed.
pub const MAX_TOPOLOGY_PAYLOAD_BYTES: usize = MAX_FRAME_BYTES / 10;
/// Bytes of a MessagePack array header at most (a marker and a 32-bit length).
const ARRAY_HEADER_BYTES: usize = 5;

pub fn encode_topology(records: &[PeerRecord]) -> Result<Vec<u8>, WireError> {
    encode_message("topology update", &records)
}

/// `records` encoded as topology payloads of at most [`MAX_TOPOLOGY_PAYLOAD_BYTES`] and
/// [`MAX_RECORDS_PER_UPDATE`] records each, in order. A record too large to go in any payload
/// is left out and returned with its encoded size.
pub fn encode_topology_pieces(records: &[PeerRecord]) -> (Vec<Vec<u8>>, Vec<(&PeerRecord, usize)>) {
    let mut pieces = Vec::new();
    let mut too_large = Vec::new();
    let mut piece: Vec<&PeerRecord> = Vec::new();
    let mut size = ARRAY_HEADER_BYTES;
    let mut flush = |piece: &mut Vec<&PeerRecord>, size: &mut usize| {
        if !piece.is_empty() {
            // Plain data always encodes; an empty payload would only be dropped by the receiver.
            pieces.push(encode_message("topology update", piece).unwrap_or_default());
            piece.clear();
        }
        *size = ARRAY_HEADER_BYTES;
    };
    for record in records {
        let len = encode_message("peer record", record).map_or(usize::MAX, |bytes| bytes.len());
        if len.saturating_add(ARRAY_HEADER_BYTES) > MAX_TOPOLOGY_PAYLOAD_BYTES {
            too_large.push((record, len));
            continue;
        }
        if size + len > MAX_TOPOLOGY_PAYLOAD_BYTES || piece.len() == MAX_RECORDS_PER_UPDATE {
            flush(&mut piece, &mut size);
        }
        piece.push(record);
        size += len;
    }
    flush(&mut piece, &mut size);
    (pieces, too_large)
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

    #[test]
    fn a_record_too_large_for_any_piece_is_left_out_and_named() {
        let small = record_of(1, 1);
        let huge = record_of(2, 30_000);
        let records = [small.clone(), huge, small.clone()];
        let (pieces, too_large) = encode_topology_pieces(&records);
        assert_eq!(too_large.len(), 1);
        assert_eq!(too_large[0].0.name, records[1].name);
        assert!(too_large[0].1 > MAX_TOPOLOGY_PAYLOAD_BYTES);
        assert_eq!(pieces.len(), 1);
        assert_eq!(
            decode_topology(&pieces[0]).unwrap(),
            vec![small.clone(), small]
        );
    }

    /// Peer `n` listing `connections` links.
    fn record_of(n: u64, connections: u64) -> PeerRecord {
        let summary = ConnectionSummary {
            remote_addr: SocketAddr::from(([10, 0, 0, 1], 40000)),
            outbound: false,
            established: true,
        };
        PeerRecord {
            name: crate::topology::PeerName::from_u64(n).unwrap(),
            nickname: format!("peer-{n}"),
            uid: PeerUid(n),
            version: 1,
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 6783)),
            conn_limit: 0,
            connections: (0..connections)
                .map(|k| {
                    (
                        crate::topology::PeerName::from_u64(1000 + k).unwrap(),
                        summary.clone(),
                    )
                })
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn topology_updates_round_trip(records in prop::collection::vec(record(), 0..8)) {
            let bytes = encode_topology(&records).unwrap();
            prop_assert_eq!(decode_topology(&bytes).unwrap(), records);
        }

        #[test]
        fn pieces_hold_every_record_in_order(records in prop::collection::vec(record(), 0..8)) {
            let (pieces, too_large) = encode_topology_pieces(&records);
            prop_assert!(too_large.is_empty());
            let mut decoded = Vec::new();
            for piece in &pieces {
                prop_assert!(piece.len() <= MAX_TOPOLOGY_PAYLOAD_BYTES);
                decoded.extend(decode_topology(piece).unwrap());
            }
            prop_assert_eq!(decoded, records);
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
