use super::*;
use crate::wire::sleeve::{
    BROADCAST_DESTINATION, RELAY_ONLY_DESTINATION, Record, encode_datagram_header,
    encode_frame_record,
};
use proptest::prelude::*;

fn peer(value: u64) -> PeerName {
    PeerName::from_u64(value).unwrap()
}

fn meta(total_len: usize, destination: RecordDestination) -> FragmentMeta {
    FragmentMeta {
        source: peer(0x1112_1314_1516),
        destination,
        frame_id: 0x0102_0304,
        total_len: total_len as u32,
        vnet_hdr: [1, 4, 0x36, 0, 0xa0, 0x05, 0x22, 0, 0x10, 0],
    }
}

/// Splits back-to-back datagrams of `segment` bytes (the last shorter).
fn split(bytes: &[u8], segment: usize) -> Vec<&[u8]> {
    bytes.chunks(segment).collect()
}

#[test]
fn fragment_layout_is_byte_exact() {
    let mut out = Vec::new();
    let m = meta(20, RecordDestination::Peer(peer(0x2122_2324_2526)));
    encode_fragment(peer(0x0102_0304_0506), &m, 16, &[9, 8, 7, 6], &mut out).unwrap();
    let mut expected = vec![1, 2, 3, 4, 5, 6, 0x11];
    expected.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16]);
    expected.extend_from_slice(&[0x21, 0x22, 0x23, 0x24, 0x25, 0x26]);
    expected.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 20, 0, 0, 0, 16]);
    expected.extend_from_slice(&m.vnet_hdr);
    expected.extend_from_slice(&[9, 8, 7, 6]);
    assert_eq!(out, expected);
    assert_eq!(FRAGMENT_HEADER_LEN, 41);
    let parsed = Fragment::parse(&out).unwrap();
    assert_eq!(parsed.sender, peer(0x0102_0304_0506));
    assert_eq!(parsed.meta, m);
    assert_eq!((parsed.offset, parsed.chunk), (16, &[9u8, 8, 7, 6][..]));
    assert_eq!(Datagram::parse(&out), Ok(Datagram::Fragment(parsed)));
}

#[test]
fn reserved_destinations_are_classified() {
    assert_eq!(
        RecordDestination::from_bytes(BROADCAST_DESTINATION),
        RecordDestination::Broadcast
    );
    assert_eq!(
        RecordDestination::from_bytes(RELAY_ONLY_DESTINATION),
        RecordDestination::RelayOnly
    );
    assert_eq!(
        RecordDestination::from_bytes([0; 6]),
        RecordDestination::Control
    );
    let mut out = Vec::new();
    encode_datagram_header(peer(1), &mut out);
    encode_frame_record(
        peer(1),
        RecordDestination::Broadcast.as_peer_name(),
        &[0xff; 14],
        &mut out,
    )
    .unwrap();
    let Ok(Datagram::Records(records)) = Datagram::parse(&out) else {
        panic!("records expected");
    };
    let record: Vec<Record<'_>> = records.records().collect();
    assert_eq!(record[0].destination(), RecordDestination::Broadcast);
}

#[test]
fn fragments_out_of_bounds_are_rejected() {
    let m = meta(20, RecordDestination::Broadcast);
    let mut out = Vec::new();
    // Past the end, empty, and a control destination: nothing written.
    assert!(encode_fragment(peer(1), &m, 17, &[0; 4], &mut out).is_err());
    assert!(encode_fragment(peer(1), &m, 0, &[], &mut out).is_err());
    let control = meta(20, RecordDestination::Control);
    assert_eq!(
        encode_fragment(peer(1), &control, 0, &[0; 4], &mut out),
        Err(SleeveError::ReservedDestination)
    );
    assert!(out.is_empty());
    let too_big = meta(MAX_REASSEMBLED_LEN + 1, RecordDestination::Broadcast);
    assert!(encode_fragment(peer(1), &too_big, 0, &[0; 4], &mut out).is_err());
    // A records datagram is not a fragment, and the reverse.
    encode_fragment(peer(1), &m, 0, &[0; 4], &mut out).unwrap();
    assert_eq!(SleeveDatagram::parse(&out), Err(SleeveError::IsFragment));
    out.truncate(FRAGMENT_HEADER_LEN);
    assert!(matches!(
        Fragment::parse(&out),
        Err(SleeveError::FragmentTooShort { .. })
    ));
    // A limit that leaves no room for a chunk.
    let whole = meta(100, RecordDestination::Broadcast);
    let mut none = Vec::new();
    assert!(encode_fragments(peer(1), &whole, &[0; 100], FRAGMENT_HEADER_LEN, &mut none).is_err());
    assert!(encode_fragments(peer(1), &whole, &[0; 99], 1472, &mut none).is_err());
    assert!(none.is_empty());
}

#[test]
fn relays_rewrite_only_the_sender() {
    let mut out = Vec::new();
    let m = meta(100, RecordDestination::Broadcast);
    encode_fragments(peer(1), &m, &[5; 100], 1472, &mut out).unwrap();
    let before = Fragment::parse(&out).unwrap();
    let (meta_before, chunk_before) = (before.meta, before.chunk.to_vec());
    set_datagram_sender(&mut out, peer(7));
    let after = Fragment::parse(&out).unwrap();
    assert_eq!(after.sender, peer(7));
    assert_eq!(
        (after.meta, after.chunk.to_vec()),
        (meta_before, chunk_before)
    );
}

proptest! {
    #[test]
    fn fragments_round_trip_within_the_limit(
        len in MIN_FRAME_LEN..MAX_REASSEMBLED_LEN,
        limit in (FRAGMENT_HEADER_LEN + 1)..9000usize,
        seed in any::<u8>(),
        broadcast in any::<bool>(),
    ) {
        let frame: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect();
        let destination = if broadcast {
            RecordDestination::Broadcast
        } else {
            RecordDestination::Peer(peer(42))
        };
        let m = meta(len, destination);
        let mut out = Vec::new();
        let count = encode_fragments(peer(1), &m, &frame, limit, &mut out).unwrap();
        let datagrams = split(&out, limit);
        prop_assert_eq!(datagrams.len(), count);
        let mut rebuilt = Vec::new();
        for datagram in datagrams {
            prop_assert!(datagram.len() <= limit);
            let fragment = Fragment::parse(datagram).unwrap();
            prop_assert_eq!(fragment.meta, m);
            prop_assert_eq!(fragment.offset as usize, rebuilt.len());
            rebuilt.extend_from_slice(fragment.chunk);
        }
        prop_assert_eq!(rebuilt, frame);
    }

    #[test]
    fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), fragment in any::<bool>()) {
        let mut bytes = bytes;
        if fragment && bytes.len() > 6 {
            bytes[6] = (SLEEVE_VERSION << 4) | FLAG_FRAGMENT;
        }
        let _ = Datagram::parse(&bytes);
        let _ = Fragment::parse(&bytes);
    }
}
