//! Tests of what a hostile or broken neighbour can send: records too far ahead to believe, and a
//! topology too large for one frame.

use super::*;

#[test]
fn records_too_far_ahead_are_dropped_and_reported_until_the_clock_catches_up() {
    let t0 = Instant::now();
    let mut state = linked(1, &[(12, 2)], &[record_listing(2, 3, &[1])], t0);
    // Our first version (1) stands for the wall clock; 1 s later the ceiling is 1000 higher.
    let ahead = record_listing(2, 1 + crate::topology::MAX_VERSION_LEAD + 1000, &[1, 9]);
    let effects = state
        .receive(
            LinkId(12),
            topology_gossip(std::slice::from_ref(&ahead)),
            t0,
        )
        .unwrap();
    assert!(effects.contains(&Effect::RecordsRejected {
        from: name(2),
        count: 1
    }));
    assert_eq!(state.topology().peer(name(2)).unwrap().version, 3);

    let later = t0 + Duration::from_secs(1);
    let effects = state
        .receive(
            LinkId(12),
            topology_gossip(std::slice::from_ref(&ahead)),
            later,
        )
        .unwrap();
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, Effect::RecordsRejected { .. }))
    );
    assert_eq!(state.topology().peer(name(2)), Some(&ahead));
}

/// A topology of `peers` records listing `connections` links each: about 60 bytes a link.
fn huge_records(peers: u64, connections: u64) -> Vec<PeerRecord> {
    (10..10 + peers)
        .map(|n| {
            let remotes: Vec<u64> = (1..=connections)
                .map(|k| 1_000_000 + n * 10_000 + k)
                .collect();
            record_listing(n, 3, &remotes)
        })
        .collect()
}

#[test]
fn a_full_state_over_the_frame_limit_goes_out_in_pieces_that_fit() {
    let t0 = Instant::now();
    // About 13 MB of records, over the 10 MiB frame limit: sent whole, the frame could not be
    // written and every link it went down closed.
    let records = huge_records(400, 550);
    let mut state = linked(1, &[(12, 2)], &[], t0);
    // Peer 2 comes first: it is how the others are reached, or they are collected at once.
    let hub: Vec<u64> = std::iter::once(1).chain(10..410).collect();
    let mut records_with_2 = vec![record_listing(2, 3, &hub)];
    records_with_2.extend(records);
    state
        .receive(LinkId(12), topology_gossip(&records_with_2[..200]), t0)
        .unwrap();
    state
        .receive(LinkId(12), topology_gossip(&records_with_2[200..]), t0)
        .unwrap();
    let full = state.topology().full_state();
    assert_eq!(full.len(), 402);

    let effects = state.register_link(dialled_link(13, 3, 99), t0).unwrap();
    let sent = topology_sends(&effects);
    assert!(sent.len() > 1, "in pieces");
    let mut names = BTreeSet::new();
    for (link, records) in &sent {
        assert_eq!(*link, LinkId(13));
        let msg = topology_gossip(records);
        let bytes = encode_message("message", &msg).unwrap().len();
        assert!(bytes <= crate::wire::MAX_FRAME_BYTES, "{bytes} bytes");
        names.extend(records.iter().map(|record| record.name));
    }
    assert_eq!(names.len(), full.len(), "every record goes down the link");
}
