//! Unit tests of the topology table: local edits, merge rules and garbage collection.

use std::time::Duration;

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
fn merge_reports_what_beats_a_record_of_another_incarnation() {
    let mut topology = ours();
    topology.merge(vec![record(2, 1, 4, &[]), record(3, 1, 4, &[])]);
    // Peer 2's other incarnation loses (lower version); peer 3's own older record loses too.
    let outcome = topology.merge(vec![record(2, 7, 3, &[]), record(3, 1, 3, &[])]);
    assert!(outcome.improved.is_empty());
    assert_eq!(outcome.contradicted, vec![record(2, 1, 4, &[])]);
    // Another incarnation that wins is simply taken.
    let outcome = topology.merge(vec![record(2, 7, 5, &[])]);
    assert_eq!(names(&outcome.improved), vec![name(2)]);
    assert!(outcome.contradicted.is_empty());
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
    let echo = topology.local().clone();
    assert_eq!(
        topology.merge(vec![echo]),
        MergeOutcome::default(),
        "our own echo, ignored"
    );
    // A record in our uid that we never wrote is outranked, never stored.
    let outcome = topology.merge(vec![record(1, 100, 9, &[(2, true)])]);
    assert!(outcome.improved.is_empty());
    assert_eq!(topology.local(), &record(1, 100, 10, &[]));
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
fn a_record_absurdly_ahead_of_the_one_we_hold_is_rejected() {
    let mut topology = ours();
    topology.merge(vec![record(2, 1, 3, &[])]);
    let outcome = topology.merge(vec![record(2, 1, u64::MAX, &[(9, true)])]);
    assert!(outcome.improved.is_empty());
    assert_eq!(outcome.rejected, 1);
    assert_eq!(topology.peer(name(2)).unwrap().version, 3);

    // A plausible record in the same update still gets in.
    let outcome = topology.merge(vec![record(2, 1, u64::MAX, &[]), record(2, 1, 4, &[])]);
    assert_eq!(names(&outcome.improved), [name(2)]);
    assert_eq!(topology.peer(name(2)).unwrap().version, 4);
    // The ceiling is the clock (our first version, 5, plus the time since) and the lead.
    assert_eq!(topology.version_ceiling(), 5 + MAX_VERSION_LEAD);
    let outcome = topology.merge(vec![record(5, 1, 6 + MAX_VERSION_LEAD, &[])]);
    assert_eq!(outcome.rejected, 1);
    assert!(topology.peer(name(5)).is_none());
    topology.advance_clock(Duration::from_millis(1));
    let outcome = topology.merge(vec![record(5, 1, 6 + MAX_VERSION_LEAD, &[])]);
    assert_eq!((outcome.rejected, outcome.improved.len()), (0, 1));
}

#[test]
fn a_record_whose_nickname_is_unsafe_to_log_is_rejected() {
    let mut topology = ours();
    let mut forged_lines = record(2, 1, 3, &[]);
    forged_lines.nickname = "x\nINFO forged line".into();
    let outcome = topology.merge(vec![forged_lines]);
    assert_eq!(outcome.rejected, 1);
    assert!(topology.peer(name(2)).is_none());
}

#[test]
fn a_poisoned_record_about_us_does_not_freeze_our_version() {
    let mut topology = ours();
    let outcome = topology.merge(vec![record(1, 7, u64::MAX, &[])]);
    assert!(!outcome.local_bumped);
    assert_eq!(topology.local().version, 5);
    // Our later changes still move our version, so they still spread.
    topology.set_local_connection(name(2), summary(true));
    assert_eq!(topology.local().version, 6);
}

#[test]
fn a_forged_record_with_our_own_uid_is_outranked_everywhere() {
    let mut us = ours();
    let mut other = Topology::new(record(3, 300, 1, &[]));
    other.merge(vec![us.local().clone()]);
    // Someone relays a record in our name and uid, ahead of ours, listing a made-up link.
    let forged = record(1, 100, 40, &[(9, true)]);
    other.merge(vec![forged.clone()]);
    assert_eq!(other.peer(name(1)), Some(&forged));

    let outcome = us.merge(vec![forged]);
    assert!(outcome.local_bumped);
    assert_eq!(us.local().version, 41);
    assert!(us.local().connections.is_empty(), "our content is kept");
    other.merge(vec![us.local().clone()]);
    assert_eq!(other.peer(name(1)), Some(us.local()));

    // Our own record echoed back is no reason to move.
    let echo = us.local().clone();
    assert!(!us.merge(vec![echo]).local_bumped);
    // Nor is a different record in our uid below our version (our own older copy).
    assert!(
        !us.merge(vec![record(1, 100, 40, &[(9, true)])])
            .local_bumped
    );
    // A different one at our very version is forged: outranked too.
    let same_version = record(1, 100, 41, &[(8, true)]);
    assert!(us.merge(vec![same_version]).local_bumped);
    assert_eq!(us.local().version, 42);
}

#[test]
fn a_forger_at_the_ceiling_is_outranked_once_the_clock_moves_on() {
    let mut victim = ours();
    let mut relay = Topology::new(record(3, 300, 5, &[]));
    relay.merge(vec![victim.local().clone()]);
    // The highest version anyone believes, and one nobody does.
    let forged = record(1, 666, relay.version_ceiling(), &[]);
    let top = record(1, 666, u64::MAX, &[]);
    assert_eq!(relay.merge(vec![forged.clone(), top.clone()]).rejected, 1);
    assert_eq!(relay.peer(name(1)), Some(&forged));

    victim.merge(vec![forged.clone(), top]);
    assert_eq!(victim.local().version, forged.version + 1);
    // One past the ceiling is believed as soon as the clock has moved on a millisecond; until
    // then, anti-entropy keeps offering it.
    assert_eq!(relay.merge(vec![victim.local().clone()]).rejected, 1);
    relay.advance_clock(Duration::from_millis(1));
    relay.merge(vec![victim.local().clone()]);
    assert_eq!(relay.peer(name(1)), Some(victim.local()));
    // Nowhere near the top of the space: later changes keep moving the version.
    victim.set_local_connection(name(3), summary(true));
    assert_eq!(victim.local().version, forged.version + 2);
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
