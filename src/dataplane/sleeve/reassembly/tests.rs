use super::*;
use crate::wire::sleeve::fragment::{FRAGMENT_HEADER_LEN, FragmentMeta, encode_fragments};
use proptest::prelude::*;

fn peer(value: u64) -> PeerName {
    PeerName::from_u64(value).unwrap()
}

/// The fragment datagrams of `frame` from `source`, one `Vec` each.
fn fragments(source: u64, frame_id: u32, frame: &[u8], limit: usize) -> Vec<Vec<u8>> {
    let meta = FragmentMeta {
        source: peer(source),
        destination: RecordDestination::Peer(peer(99)),
        frame_id,
        total_len: frame.len() as u32,
        vnet_hdr: [1, 3, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let mut out = Vec::new();
    encode_fragments(peer(source), &meta, frame, limit, &mut out).unwrap();
    out.chunks(limit).map(<[u8]>::to_vec).collect()
}

fn insert(
    r: &mut Reassembler,
    datagram: &[u8],
    now: Instant,
) -> Result<Option<Reassembled>, ReassemblyError> {
    r.insert(&Fragment::parse(datagram).unwrap(), now)
}

#[test]
fn a_frame_completes_when_its_last_byte_arrives() {
    let frame: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let parts = fragments(1, 7, &frame, 1472);
    assert_eq!(parts.len(), 4);
    let now = Instant::now();
    let mut r = Reassembler::new();
    for part in &parts[..3] {
        assert_eq!(insert(&mut r, part, now), Ok(None));
    }
    assert_eq!(r.buffered_bytes(), 5000);
    let done = insert(&mut r, &parts[3], now).unwrap().unwrap();
    assert_eq!(done.frame, frame);
    assert_eq!(done.source, peer(1));
    assert_eq!(done.vnet_hdr[1], 3);
    assert_eq!((r.in_flight(), r.buffered_bytes()), (0, 0));
}

#[test]
fn duplicates_and_inconsistent_fragments_discard_the_frame() {
    let frame = vec![1u8; 3000];
    let parts = fragments(1, 7, &frame, 1000);
    let now = Instant::now();
    let mut r = Reassembler::new();
    insert(&mut r, &parts[0], now).unwrap();
    assert_eq!(
        insert(&mut r, &parts[0], now),
        Err(ReassemblyError::Overlap)
    );
    assert_eq!(r.in_flight(), 0);
    // Same id, another length.
    insert(&mut r, &parts[0], now).unwrap();
    let other = fragments(1, 7, &[1u8; 4000], 1000);
    assert_eq!(
        insert(&mut r, &other[1], now),
        Err(ReassemblyError::Inconsistent)
    );
    assert_eq!((r.in_flight(), r.buffered_bytes()), (0, 0));
}

#[test]
fn frames_time_out_and_sources_are_bounded() {
    let now = Instant::now();
    let mut r = Reassembler::new();
    let parts = fragments(1, 1, &[0u8; 3000], 1000);
    insert(&mut r, &parts[0], now).unwrap();
    r.expire(now + REASSEMBLY_TIMEOUT);
    assert_eq!((r.in_flight(), r.take_dropped()), (0, (1, 0)));
    for id in 0..(MAX_FRAMES_PER_SOURCE as u32 + 3) {
        let parts = fragments(1, id, &[0u8; 3000], 1000);
        insert(&mut r, &parts[0], now).unwrap();
    }
    assert_eq!(r.in_flight(), MAX_FRAMES_PER_SOURCE);
    assert_eq!(r.take_dropped(), (0, 3));
    assert_eq!(r.take_dropped(), (0, 0));
}

#[test]
fn timed_out_and_evicted_frames_reach_the_sleeve_drop_counters() {
    use crate::dataplane::sleeve::{DropCause, SleeveStats};
    let stats = SleeveStats::default();
    let now = Instant::now();
    let mut r = Reassembler::new();
    for id in 0..(MAX_FRAMES_PER_SOURCE as u32 + 2) {
        insert(&mut r, &fragments(1, id, &[0u8; 3000], 1000)[0], now).unwrap();
    }
    stats.count_reassembly_drops(&mut r);
    r.expire(now + REASSEMBLY_TIMEOUT);
    stats.count_reassembly_drops(&mut r);
    // Counted once each, however often the counters are synced.
    stats.count_reassembly_drops(&mut r);
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.dropped(DropCause::ReassemblyEvicted), 2);
    assert_eq!(
        snapshot.dropped(DropCause::ReassemblyTimeout),
        MAX_FRAMES_PER_SOURCE as u64
    );
}

proptest! {
    #[test]
    fn any_order_reassembles_exactly(
        len in 14usize..20_000,
        limit in (FRAGMENT_HEADER_LEN + 1)..3000usize,
        order in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let frame: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
        let mut parts = fragments(5, 9, &frame, limit);
        // A deterministic shuffle driven by the generated values.
        let n = parts.len();
        let mut state = seed | 1;
        for i in (1..n).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            parts.swap(i, (state as usize ^ order.index(n)) % (i + 1));
        }
        let mut r = Reassembler::new();
        let now = Instant::now();
        let mut done = None;
        for (i, part) in parts.iter().enumerate() {
            let result = insert(&mut r, part, now).unwrap();
            prop_assert_eq!(result.is_some(), i == n - 1);
            done = done.or(result);
        }
        prop_assert_eq!(done.unwrap().frame, frame);
        prop_assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn hostile_fragments_never_panic_and_stay_bounded(
        inputs in prop::collection::vec(
            (0u64..4, 0u32..20, 0u32..70_000, 0u32..70_000, 1usize..2000, 0u64..2000),
            0..200,
        ),
    ) {
        let mut r = Reassembler::new();
        let start = Instant::now();
        for (source, id, total, offset, chunk, millis) in inputs {
            let meta = FragmentMeta {
                source: peer(source + 1),
                destination: RecordDestination::Broadcast,
                frame_id: id,
                total_len: total,
                vnet_hdr: [0; 10],
            };
            let mut out = Vec::new();
            let chunk = vec![0xaa; chunk];
            if crate::wire::sleeve::fragment::encode_fragment(peer(1), &meta, offset, &chunk, &mut out).is_err() {
                continue;
            }
            let _ = insert(&mut r, &out, start + Duration::from_millis(millis));
            prop_assert!(r.buffered_bytes() <= MAX_BUFFERED_BYTES);
            prop_assert!(r.in_flight() <= 4 * MAX_FRAMES_PER_SOURCE);
        }
    }
}
