//! Unit tests of the topology table: local edits, merge rules and garbage collection.

use super::*;
use crate::topology::PeerUid;
use crate::topology::test_support::{name, record, summary};

/// Us: peer 1, uid 100, version 5, no connections.
fn ours() -> Topology {
    Topology::new(record(1, 100, 5, &[]))
}

fn names(records: &[PeerRecord]) -> Vec<PeerName> {
    records.iter().map(|r| r.name).collect()
}

#[test]
fn new_topology_holds_only_local_record() {
    let topology = ours();
    assert_eq!(topology.local_name(), name(1));
    assert_eq!(topology.len(), 1);
    assert!(!topology.is_empty());
    assert_eq!(topology.full_state(), vec![record(1, 100, 5, &[])]);
}

#[test]
fn set_local_connection_adds_and_bumps() {
    let mut topology = ours();
    topology.set_local_connection(name(2), summary(false));
    assert_eq!(topology.local().version, 6);
    assert_eq!(
        topology.local().connections.get(&name(2)),
        Some(&summary(false))
    );

    // A changed summary (now established) is a change: bump again.
    topology.set_local_connection(name(2), summary(true));
    assert_eq!(topology.local().version, 7);
    assert_eq!(
        topology.local().connections.get(&name(2)),
        Some(&summary(true))
    );
}

#[test]
fn set_local_connection_with_identical_summary_does_not_bump() {
    let mut topology = ours();
    topology.set_local_connection(name(2), summary(true));
    topology.set_local_connection(name(2), summary(true));
    assert_eq!(topology.local().version, 6);
}

#[test]
fn remove_local_connection_bumps_only_when_present() {
    let mut topology = ours();
    assert!(!topology.remove_local_connection(name(2)));
    assert_eq!(topology.local().version, 5);

    topology.set_local_connection(name(2), summary(true));
    assert!(topology.remove_local_connection(name(2)));
    assert_eq!(topology.local().version, 7);
    assert!(topology.local().connections.is_empty());
    assert!(!topology.remove_local_connection(name(2)));
    assert_eq!(topology.local().version, 7);
}

#[test]
fn merge_takes_unknown_peers() {
    let mut topology = ours();
    let outcome = topology.merge(vec![record(3, 1, 0, &[]), record(2, 1, 0, &[])]);
    assert_eq!(names(&outcome.improved), vec![name(2), name(3)]);
    assert!(!outcome.local_bumped);
    assert_eq!(topology.len(), 3);
}

#[test]
fn merge_prefers_higher_version() {
    let mut topology = ours();
    topology.merge(vec![record(2, 1, 4, &[])]);

    let older = topology.merge(vec![record(2, 9, 3, &[(1, true)])]);
    assert!(
        older.improved.is_empty(),
        "a lower version loses even with a higher uid"
    );
    assert_eq!(topology.peer(name(2)), Some(&record(2, 1, 4, &[])));

    let newer = topology.merge(vec![record(2, 0, 5, &[(1, true)])]);
    assert_eq!(newer.improved, vec![record(2, 0, 5, &[(1, true)])]);
    assert_eq!(topology.peer(name(2)), Some(&record(2, 0, 5, &[(1, true)])));
}

#[test]
fn merge_breaks_version_ties_by_higher_uid() {
    let mut topology = ours();
    topology.merge(vec![record(2, 5, 4, &[])]);
    assert!(
        topology
            .merge(vec![record(2, 4, 4, &[(1, true)])])
            .improved
            .is_empty()
    );
    let outcome = topology.merge(vec![record(2, 6, 4, &[(1, true)])]);
    assert_eq!(outcome.improved, vec![record(2, 6, 4, &[(1, true)])]);
}

#[test]
fn merge_of_known_records_reports_nothing() {
    let mut topology = ours();
    let records = vec![record(2, 1, 1, &[(1, true)]), record(3, 1, 1, &[])];
    topology.merge(records.clone());
    let before = topology.full_state();
    assert_eq!(topology.merge(records), MergeOutcome::default());
    assert_eq!(topology.full_state(), before);
}

#[test]
fn merge_reports_a_duplicated_record_once() {
    let mut topology = ours();
    let outcome = topology.merge(vec![record(2, 1, 1, &[]), record(2, 1, 1, &[])]);
    assert_eq!(outcome.improved, vec![record(2, 1, 1, &[])]);
}

#[test]
fn merge_of_two_records_for_one_peer_keeps_the_winner_in_any_order() {
    let low = record(2, 1, 1, &[]);
    let high = record(2, 1, 2, &[(1, true)]);
    for input in [
        vec![low.clone(), high.clone()],
        vec![high.clone(), low.clone()],
    ] {
        let mut topology = ours();
        let outcome = topology.merge(input);
        assert_eq!(outcome.improved, vec![high.clone()]);
        assert_eq!(topology.peer(name(2)), Some(&high));
    }

    // The winner of the input still has to beat what we already hold.
    let mut topology = ours();
    topology.merge(vec![record(2, 1, 3, &[])]);
    assert!(topology.merge(vec![low, high]).improved.is_empty());
}

#[test]
fn merge_never_stores_a_record_about_us() {
    let mut topology = ours();
    let outcome = topology.merge(vec![record(1, 100, 9, &[(2, true)])]);
    assert_eq!(
        outcome,
        MergeOutcome::default(),
        "same uid: our own echo, ignored"
    );
    assert_eq!(topology.local(), &record(1, 100, 5, &[]));
}

#[test]
fn merge_outranks_an_older_incarnation_of_us() {
    let mut topology = ours();
    topology.set_local_connection(name(2), summary(true));
    let outcome = topology.merge(vec![record(1, 7, 6, &[(3, true)])]);
    assert!(outcome.local_bumped);
    assert!(outcome.improved.is_empty());
    assert_eq!(topology.local().version, 7);
    assert_eq!(topology.local().uid, PeerUid(100));
    assert_eq!(
        topology.local().connections.keys().collect::<Vec<_>>(),
        [&name(2)]
    );

    // Equal to our version also needs outranking; the result is theirs + 1.
    let outcome = topology.merge(vec![record(1, 7, 7, &[]), record(1, 8, 10, &[])]);
    assert!(outcome.local_bumped);
    assert_eq!(topology.local().version, 11);
}

#[test]
fn merge_ignores_an_older_incarnation_below_our_version() {
    let mut topology = ours();
    let outcome = topology.merge(vec![record(1, 7, 4, &[])]);
    assert!(!outcome.local_bumped);
    assert_eq!(topology.local().version, 5);
}

#[test]
fn merge_at_the_top_of_the_version_space_does_not_overflow() {
    let mut topology = ours();
    let outcome = topology.merge(vec![record(1, 7, u64::MAX, &[])]);
    assert!(outcome.local_bumped);
    assert_eq!(topology.local().version, u64::MAX);
    // Nothing further can move us: not reported as a bump.
    let again = topology.merge(vec![record(1, 8, u64::MAX, &[])]);
    assert!(!again.local_bumped);
}

#[test]
fn garbage_collect_keeps_peers_reachable_over_any_connection() {
    // 1 → 2 (not established) → 3; 3 lists nobody.
    let mut topology = Topology::new(record(1, 100, 1, &[(2, false)]));
    topology.merge(vec![record(2, 1, 1, &[(3, false)]), record(3, 1, 1, &[])]);
    assert!(topology.garbage_collect().is_empty());
    assert_eq!(topology.len(), 3);
}

#[test]
fn garbage_collect_follows_connections_in_the_owners_direction_only() {
    // 2 lists us, but we do not list 2: 2 is unreachable from us.
    let mut topology = ours();
    topology.merge(vec![record(2, 1, 1, &[(1, true)])]);
    let removed = topology.garbage_collect();
    assert_eq!(removed, vec![record(2, 1, 1, &[(1, true)])]);
    assert_eq!(topology.len(), 1);
}

#[test]
fn garbage_collect_treats_peers_without_record_as_dead_ends() {
    // 1 → 9 (no record); 9 would lead to 3, but we cannot know that.
    let mut topology = Topology::new(record(1, 100, 1, &[(9, true)]));
    topology.merge(vec![record(3, 1, 1, &[])]);
    assert_eq!(names(&topology.garbage_collect()), vec![name(3)]);
}

#[test]
fn garbage_collect_returns_removed_records_in_name_order_and_keeps_us() {
    let mut topology = ours();
    topology.merge(vec![
        record(5, 1, 1, &[(4, true)]),
        record(4, 1, 1, &[(5, true)]),
        record(2, 1, 1, &[]),
    ]);
    assert_eq!(
        names(&topology.garbage_collect()),
        vec![name(2), name(4), name(5)]
    );
    assert_eq!(topology.full_state(), vec![record(1, 100, 5, &[])]);
}
