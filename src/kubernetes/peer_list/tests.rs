use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::kubernetes::peer_list::{
    CLAIM_TTL_SECS, Claim, Me, Orphaned, PeerEntry, PeerList, Step,
};

fn me(peer: &str, node: &str) -> Me {
    Me {
        peer_name: peer.into(),
        node_name: node.into(),
    }
}

fn entry(peer: &str, node: &str) -> PeerEntry {
    PeerEntry {
        peer_name: peer.into(),
        node_name: node.into(),
    }
}

fn list(entries: &[(&str, &str)]) -> PeerList {
    PeerList {
        peers: entries.iter().map(|(p, n)| entry(p, n)).collect(),
        claims: Default::default(),
    }
}

fn nodes(names: &[&str]) -> impl Fn(&str) -> bool {
    let set: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    move |name: &str| set.contains(name)
}

const NOW: u64 = 1_000_000;

#[test]
fn a_router_first_registers_itself() {
    let a = me("aa", "node1");
    let record = list(&[("bb", "node2")]);
    assert_eq!(
        record.next_step(&a, &nodes(&["node1", "node2"]), NOW),
        Step::Register
    );
    let mut record = record;
    record.register(&a);
    assert_eq!(
        record.next_step(&a, &nodes(&["node1", "node2"]), NOW),
        Step::Idle
    );
}

#[test]
fn a_router_whose_node_does_not_exist_does_nothing() {
    let record = list(&[("bb", "gone")]);
    assert_eq!(
        record.next_step(&me("aa", "nowhere"), &nodes(&["node2"]), NOW),
        Step::Idle
    );
}

#[test]
fn a_deleted_nodes_peer_is_claimed_then_taken_over_then_forgotten() {
    let a = me("aa", "node1");
    let mut record = list(&[("aa", "node1"), ("cc", "node3")]);
    let live = nodes(&["node1"]);
    let dead = entry("cc", "node3");
    assert_eq!(
        record.next_step(&a, &live, NOW),
        Step::Claim {
            entry: dead.clone(),
            why: Orphaned::NodeDeleted
        }
    );
    record.claim("cc", &a, NOW);
    assert_eq!(
        record.next_step(&a, &live, NOW),
        Step::TakeOver {
            entry: dead,
            why: Orphaned::NodeDeleted
        }
    );
    assert!(record.forget("cc"));
    assert!(!record.forget("cc"));
    assert_eq!(record.next_step(&a, &live, NOW), Step::Idle);
    assert!(record.claims.is_empty());
}

#[test]
fn a_peer_whose_node_exists_is_never_reclaimed() {
    // node3's router is stopped, not deleted: its entry is left alone however long it waits.
    let record = list(&[("aa", "node1"), ("cc", "node3")]);
    for later in [0, 60, 3600, 86_400 * 30] {
        assert_eq!(
            record.next_step(&me("aa", "node1"), &nodes(&["node1", "node3"]), NOW + later),
            Step::Idle
        );
    }
}

#[test]
fn another_survivors_standing_claim_is_respected() {
    let b = me("bb", "node2");
    let mut record = list(&[("aa", "node1"), ("bb", "node2"), ("cc", "node3")]);
    record.claim("cc", &me("aa", "node1"), NOW);
    let live = nodes(&["node1", "node2"]);
    assert_eq!(record.next_step(&b, &live, NOW + 1), Step::Idle);
    // Stuck for longer than the TTL: anyone may take it over.
    assert!(matches!(
        record.next_step(&b, &live, NOW + CLAIM_TTL_SECS),
        Step::Claim { .. }
    ));
}

#[test]
fn a_claim_by_a_deleted_or_replaced_claimer_can_be_taken_over() {
    let b = me("bb", "node2");
    let mut record = list(&[("aa", "node1"), ("bb", "node2"), ("cc", "node3")]);
    record.claim("cc", &me("aa", "node1"), NOW);
    // The claimer's node was deleted too.
    let step = record.next_step(&b, &nodes(&["node2"]), NOW);
    assert_eq!(
        step,
        Step::Claim {
            entry: entry("aa", "node1"),
            why: Orphaned::NodeDeleted
        }
    );
    // The claimer's node came back with another peer: the claim no longer stands.
    record.peers.push(entry("a2", "node1"));
    let step = record.next_step(&b, &nodes(&["node1", "node2"]), NOW);
    assert!(matches!(step, Step::Claim { .. }), "{step:?}");
}

#[test]
fn an_older_peer_of_a_node_is_reclaimed_as_replaced() {
    let a = me("aa", "node1");
    let record = list(&[("aa", "node1"), ("old", "node2"), ("new", "node2")]);
    assert_eq!(
        record.next_step(&a, &nodes(&["node1", "node2"]), NOW),
        Step::Claim {
            entry: entry("old", "node2"),
            why: Orphaned::NodeHasNewPeer
        }
    );
}

#[test]
fn registering_again_moves_our_entry_last() {
    let a = me("aa", "node1");
    let mut record = list(&[("aa", "node1"), ("zz", "node1")]);
    assert_eq!(
        record.next_step(&a, &nodes(&["node1"]), NOW),
        Step::Register
    );
    record.register(&a);
    assert_eq!(
        record.peers,
        vec![entry("zz", "node1"), entry("aa", "node1")]
    );
}

#[test]
fn the_annotation_round_trips_and_bad_text_is_an_error() {
    let mut record = list(&[("aa", "node1"), ("cc", "node3")]);
    record.claims.insert(
        "cc".into(),
        Claim {
            by_peer: "aa".into(),
            by_node: "node1".into(),
            since: 7,
        },
    );
    let text = record.to_annotation();
    assert_eq!(PeerList::parse(Some(&text)).unwrap(), record);
    assert_eq!(PeerList::parse(None).unwrap(), PeerList::default());
    assert_eq!(PeerList::parse(Some("  ")).unwrap(), PeerList::default());
    assert!(PeerList::parse(Some("{\"peers\": 3}")).is_err());
}

/// The record's lock, run as the API server runs it: routers read (record, version) and write
/// only if the version is unchanged. Whatever the interleaving, each dead peer is taken over
/// exactly once, and never a peer whose node exists.
#[derive(Clone, Debug)]
struct Survivor {
    me: Me,
    /// The version and record read at the start of the current step.
    read: Option<(u64, PeerList)>,
}

proptest! {
    #[test]
    fn racing_survivors_take_each_dead_peer_over_once(
        schedule in prop::collection::vec(0usize..3, 1..200),
        dead_count in 1usize..3,
    ) {
        let mut survivors: Vec<Survivor> = (0..3)
            .map(|i| Survivor { me: me(&format!("live{i}"), &format!("node{i}")), read: None })
            .collect();
        let mut record = PeerList::default();
        let mut version = 0u64;
        for i in 0..dead_count {
            record.peers.push(entry(&format!("dead{i}"), &format!("gone{i}")));
        }
        let exists = |name: &str| name.starts_with("node");
        let mut taken: Vec<(String, String)> = Vec::new();
        // Enough turns for every survivor to finish, after the random interleaving.
        let tail = (0..60).map(|i| i % 3);
        for who in schedule.into_iter().chain(tail) {
            let survivor = &mut survivors[who];
            match survivor.read.take() {
                None => survivor.read = Some((version, record.clone())),
                Some((read_version, read)) => {
                    let mut next = read.clone();
                    match read.next_step(&survivor.me, &exists, NOW) {
                        Step::Idle => continue,
                        Step::Register => next.register(&survivor.me),
                        Step::Claim { entry, .. } => next.claim(&entry.peer_name, &survivor.me, NOW),
                        Step::TakeOver { entry, .. } => {
                            // The take-over itself happens before the write and is not undone
                            // by a conflict: the same claimer then retries from a fresh read
                            // (IPAM answers 0 the second time). Two takers of one peer is the bug.
                            let pair = (entry.peer_name.clone(), survivor.me.peer_name.clone());
                            if !taken.contains(&pair) {
                                taken.push(pair);
                            }
                            next.forget(&entry.peer_name);
                        }
                    }
                    if read_version == version {
                        record = next;
                        version += 1;
                    }
                }
            }
        }
        prop_assert!(taken.iter().all(|(peer, _)| peer.starts_with("dead")));
        let mut peers: Vec<&String> = taken.iter().map(|(peer, _)| peer).collect();
        peers.sort();
        peers.dedup();
        prop_assert_eq!(peers.len(), taken.len(), "a peer taken over by two routers: {:?}", taken);
        prop_assert_eq!(peers.len(), dead_count, "left: {:?}", record);
        prop_assert!(record.peers.iter().all(|entry| entry.peer_name.starts_with("live")));
        prop_assert!(record.claims.is_empty());
    }
}
