//! Unit tests of the allocator between peers: consensus, observers, asking for space, claims
//! of other peers' addresses, re-gossip, split brain (reported or settled by adoption) and
//! conflicting rings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::ipam::allocator::tests::support::*;
use crate::ipam::*;
use crate::topology::PeerName;

const UNIVERSE: &str = "10.0.0.0/28";

fn seeds(peers: &[u64]) -> InitMode {
    InitMode::Seed(peers.iter().map(|&n| peer(n)).collect())
}

fn pair_seeded() -> Cluster {
    let mut cluster = Cluster::new(vec![
        config(1, UNIVERSE, seeds(&[1, 2])),
        config(2, UNIVERSE, seeds(&[1, 2])),
    ]);
    cluster.connect_all();
    cluster
}

fn rings_agree(cluster: &Cluster) -> bool {
    let rings: Vec<_> = cluster.nodes.values().map(Allocator::ring_state).collect();
    rings.windows(2).all(|pair| pair[0] == pair[1])
}

#[test]
fn consensus_waits_for_a_quorum_then_both_peers_make_the_same_ring() {
    let mut cluster = Cluster::new(vec![
        config(
            1,
            UNIVERSE,
            InitMode::Consensus {
                quorum: 2,
                expected: 0,
            },
        ),
        config(
            2,
            UNIVERSE,
            InitMode::Consensus {
                quorum: 2,
                expected: 0,
            },
        ),
    ]);
    cluster.request(1, 1, allocate("a", UNIVERSE));
    assert_eq!(
        cluster.node(1).status().state,
        IpamState::AwaitingConsensus {
            quorum: 2,
            known: 1
        }
    );
    assert!(cluster.reply_to(1, 1).is_none(), "waits, does not fail");
    cluster.connect_all();
    cluster.settle();
    assert_eq!(allocated(&cluster.reply_to(1, 1).unwrap()), "10.0.0.1/28");
    assert!(rings_agree(&cluster));
    assert_eq!(
        cluster.node(2).ring_state().unwrap().seeds(),
        &[peer(1), peer(2)]
    );
    assert_eq!(cluster.node(2).status().state, IpamState::Ready);
}

#[test]
fn a_stuck_consensus_is_proposed_again_and_gossiped() {
    let mode = InitMode::Consensus {
        quorum: 2,
        expected: 0,
    };
    let mut alloc = Allocator::new(config(1, UNIVERSE, mode), None).unwrap();
    let mut now = Instant::now();
    let first = alloc.request(1, allocate("a", UNIVERSE), now);
    assert!(persisted(&first).unwrap().paxos.is_some());
    let mut proposals = 0;
    for _ in 0..30 {
        now += Duration::from_secs(1);
        let effects = alloc.tick(now);
        assert_persist_first(&effects);
        proposals += messages(&effects)
            .iter()
            .filter(|(_, m)| matches!(m, IpamMessage::Paxos(_)))
            .count();
    }
    assert!(
        (3..=12).contains(&proposals),
        "re-gossiped {proposals} times"
    );
    assert_eq!(alloc.status().pending_allocates, 1);
}

#[test]
fn an_observer_gets_the_ring_from_a_peer_and_then_asks_for_space() {
    let mut cluster = Cluster::new(vec![
        config(1, UNIVERSE, seeds(&[1])),
        config(2, UNIVERSE, InitMode::Observer),
    ]);
    cluster.connect_all();
    cluster.request(2, 1, allocate("a", UNIVERSE));
    assert_eq!(cluster.node(2).status().state, IpamState::AwaitingRing);
    cluster.settle();
    // Peer 1 donated its largest aligned block of free hosts (.1-.14), the highest of the
    // two of size 4: .8-.11.
    assert_eq!(allocated(&cluster.reply_to(2, 1).unwrap()), "10.0.0.8/28");
    assert!(rings_agree(&cluster));
    cluster.request(1, 2, allocate("b", UNIVERSE));
    assert_eq!(allocated(&cluster.reply_to(1, 2).unwrap()), "10.0.0.1/28");
}

#[test]
fn a_peer_out_of_space_gets_some_from_a_donor() {
    let mut cluster = pair_seeded();
    for n in 0..9 {
        cluster.request(1, n, allocate(&format!("p{n}"), UNIVERSE));
        cluster.settle();
    }
    let got: Vec<String> = (0..9)
        .map(|n| allocated(&cluster.reply_to(1, n).unwrap()))
        .collect();
    assert_eq!(got[6], "10.0.0.7/28");
    // Peer 2's free hosts are .8-.14; its largest aligned block .8-.11 is more than half of
    // them, so it gives the upper half of it.
    assert_eq!(got[7], "10.0.0.10/28");
    assert_eq!(got[8], "10.0.0.11/28");
    // Free counts travel with the next report.
    cluster.tick_all(FREE_REPORT_INTERVAL);
    cluster.settle();
    assert!(rings_agree(&cluster));
    let kept: u32 = cluster
        .node(2)
        .owned_ranges()
        .iter()
        .map(AddressRange::size)
        .sum();
    assert_eq!(kept, 6);
}

#[test]
fn a_donor_without_space_denies_and_the_allocation_waits_without_looping() {
    let mut cluster = pair_seeded();
    for n in 0..13 {
        cluster.request(1, n, allocate(&format!("p{n}"), UNIVERSE));
        cluster.settle();
    }
    // Peer 2 gave everything away but the /28's broadcast address; all 14 hosts are used
    // except one on peer 2.
    cluster.request(2, 100, allocate("q", UNIVERSE));
    cluster.settle();
    assert!(cluster.reply_to(2, 100).unwrap().is_ok());
    cluster.request(1, 13, allocate("p13", UNIVERSE));
    cluster.settle();
    assert!(cluster.reply_to(1, 13).is_none());
    assert_eq!(cluster.node(1).status().state, IpamState::WaitingForSpace);
    // Freeing on peer 2 lets peer 1 get space on a later tick.
    cluster.request(
        2,
        101,
        Request::Free {
            ident: "q".to_string(),
        },
    );
    for _ in 0..12 {
        cluster.tick_all(Duration::from_secs(1));
        cluster.settle();
    }
    assert!(cluster.reply_to(1, 13).unwrap().is_ok());
}

#[test]
fn claims_of_another_peers_addresses_are_granted_when_free_and_refused_when_in_use() {
    let mut cluster = pair_seeded();
    cluster.request(2, 1, allocate("theirs", UNIVERSE));
    assert_eq!(allocated(&cluster.reply_to(2, 1).unwrap()), "10.0.0.8/28");
    let claim = |ident: &str, address: &str| Request::Claim {
        ident: ident.to_string(),
        addr: addr(address),
        subnet: cidr(UNIVERSE),
    };
    cluster.request(1, 2, claim("mine", "10.0.0.10"));
    cluster.settle();
    assert_eq!(cluster.reply_to(1, 2), Some(Ok(Reply::Done)));
    assert_eq!(cluster.node(2).ring_state().unwrap().entries().len(), 4);
    assert!(rings_agree(&cluster));
    cluster.request(1, 3, claim("also-mine", "10.0.0.8"));
    cluster.settle();
    let error = cluster.reply_to(1, 3).unwrap().unwrap_err();
    assert_eq!(
        error.to_string(),
        "address 10.0.0.8 is owned by other peer 00:00:00:00:00:02 and in use"
    );
}

#[test]
fn the_ring_is_regossiped_periodically_and_free_counts_coalesced() {
    let mut alloc = Allocator::new(config(1, UNIVERSE, seeds(&[1])), None).unwrap();
    let start = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), start);
    let ring_broadcasts = |effects: &[Effect]| {
        messages(effects)
            .iter()
            .filter(|(to, m)| to.is_none() && matches!(m, IpamMessage::Ring(_)))
            .count()
    };
    let effects = alloc.request(2, allocate("b", UNIVERSE), start);
    assert_eq!(ring_broadcasts(&effects), 0, "a free count change waits");
    assert_eq!(
        ring_broadcasts(&alloc.tick(start + Duration::from_secs(1))),
        0
    );
    let due = start + FREE_REPORT_INTERVAL;
    assert_eq!(ring_broadcasts(&alloc.tick(due)), 1);
    assert_eq!(
        ring_broadcasts(&alloc.tick(due + Duration::from_secs(1))),
        0
    );
    assert_eq!(
        ring_broadcasts(&alloc.tick(due + RING_REGOSSIP_INTERVAL)),
        1
    );
}

#[test]
fn a_newly_reachable_peer_is_sent_our_ring() {
    let mut alloc = Allocator::new(config(1, UNIVERSE, seeds(&[1])), None).unwrap();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    let effects = alloc.peers_changed(&BTreeSet::from([peer(1), peer(5)]), &BTreeMap::new(), now);
    assert!(matches!(
        messages(&effects).as_slice(),
        [(Some(to), IpamMessage::Ring(_))] if *to == peer(5)
    ));
}

/// Two peers that made rings separately, each seeded with itself alone, and allocated.
fn split_pair(free_on: &[u64]) -> Cluster {
    let mut cluster = Cluster::new(vec![
        config(1, UNIVERSE, seeds(&[1])),
        config(2, UNIVERSE, seeds(&[2])),
    ]);
    cluster.request(1, 1, allocate("a", UNIVERSE));
    cluster.request(2, 1, allocate("b", UNIVERSE));
    for &n in free_on {
        let ident = if n == 1 { "a" } else { "b" };
        cluster.request(
            n,
            2,
            Request::Free {
                ident: ident.to_string(),
            },
        );
    }
    // They were not connected: nothing they said reached the other.
    cluster.forget_messages();
    cluster
}

#[test]
fn rings_with_allocations_on_both_sides_are_a_split_brain() {
    let mut cluster = split_pair(&[]);
    cluster.connect_all();
    cluster.settle();
    let split: BTreeSet<PeerName> = cluster
        .reports
        .iter()
        .map(|(at, effect)| {
            assert!(matches!(effect, Effect::SplitBrain { .. }), "{effect:?}");
            *at
        })
        .collect();
    assert_eq!(split, BTreeSet::from([peer(1), peer(2)]));
    let Effect::SplitBrain { reason, .. } = &cluster.reports[0].1 else {
        unreachable!()
    };
    assert!(
        reason.starts_with("IP allocation was seeded by different peers"),
        "{reason}"
    );
}

#[test]
fn a_side_without_allocations_adopts_the_other_ring() {
    let mut cluster = split_pair(&[2]);
    cluster.connect_all();
    cluster.settle();
    assert!(rings_agree(&cluster));
    assert!(matches!(
        cluster.reports.as_slice(),
        [(at, Effect::Adopted { from, .. })] if *at == peer(2) && *from == peer(1)
    ));
    assert!(cluster.node(2).owned_ranges().is_empty());
    assert_eq!(
        cluster.persisted[&peer(2)].ring.as_ref().unwrap().seeds(),
        &[peer(1)]
    );
    // Peer 2 now allocates by asking peer 1 for space.
    cluster.request(2, 3, allocate("b", UNIVERSE));
    cluster.settle();
    assert_eq!(allocated(&cluster.reply_to(2, 3).unwrap()), "10.0.0.8/28");
}

#[test]
fn two_empty_sides_agree_on_which_one_gives_way() {
    let mut cluster = split_pair(&[1, 2]);
    cluster.connect_all();
    cluster.settle();
    assert!(rings_agree(&cluster));
    let adopted: Vec<PeerName> = cluster.reports.iter().map(|(at, _)| *at).collect();
    // Equal weight but for the seeds: [2] orders above [1], so peer 1 gives way.
    assert_eq!(adopted, vec![peer(1)]);
}

#[test]
fn a_ring_taking_our_allocated_range_is_a_conflict_reported_once_per_interval() {
    let mut alloc = Allocator::new(config(1, UNIVERSE, seeds(&[1, 2])), None).unwrap();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    // Peer 2 took over our range (a wrong rmpeer), with a higher version.
    let mut theirs = Ring::new(cidr(UNIVERSE), peer(2));
    theirs.claim_for_peers(&[peer(1), peer(2)]).unwrap();
    theirs.transfer(peer(1), peer(2));
    let gossip = || IpamMessage::Ring(theirs.state().clone());
    let first = alloc.on_message(peer(2), gossip(), now);
    assert!(matches!(
        first.as_slice(),
        [Effect::Conflict { peer: p, reason }] if *p == peer(2) && reason.contains("which I own")
    ));
    assert!(
        alloc
            .on_message(peer(2), gossip(), now + Duration::from_secs(1))
            .is_empty()
    );
    let later = alloc.on_message(peer(2), gossip(), now + CONFLICT_REPORT_INTERVAL);
    assert_eq!(later.len(), 1);
    assert_eq!(alloc.owned().len(), 1, "our allocation stays");
}

#[test]
fn messages_from_ourselves_are_ignored() {
    let mut alloc = Allocator::new(config(1, UNIVERSE, seeds(&[1])), None).unwrap();
    let effects = alloc.on_message(peer(1), IpamMessage::RingRequest, Instant::now());
    assert!(effects.is_empty());
    assert_eq!(alloc.status().state, IpamState::Idle);
}

#[test]
fn a_ring_taking_a_range_we_have_no_allocations_in_is_accepted_and_the_space_gives_it_up() {
    let mut alloc = Allocator::new(config(1, UNIVERSE, seeds(&[1, 2])), None).unwrap();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    alloc.request(
        2,
        Request::Free {
            ident: "a".to_string(),
        },
        now,
    );
    // Peer 2 took over our range while we were unreachable (Weave Net 2.6.0's repair case).
    let mut theirs = Ring::new(cidr(UNIVERSE), peer(2));
    theirs.claim_for_peers(&[peer(1), peer(2)]).unwrap();
    theirs.transfer(peer(1), peer(2));
    let effects = alloc.on_message(peer(2), IpamMessage::Ring(theirs.state().clone()), now);
    assert_persist_first(&effects);
    assert!(persisted(&effects).is_some());
    assert!(alloc.owned_ranges().is_empty());
    assert_eq!(alloc.ring_state(), Some(theirs.state()));
    // Allocating now means asking peer 2.
    alloc.peers_changed(&BTreeSet::from([peer(2)]), &BTreeMap::new(), now);
    let effects = alloc.request(3, allocate("b", UNIVERSE), now);
    assert!(matches!(
        messages(&effects).as_slice(),
        [(Some(to), IpamMessage::SpaceRequest { .. })] if *to == peer(2)
    ));
}

#[test]
fn a_space_request_to_a_donor_that_becomes_unreachable_goes_to_another() {
    let mut alloc = Allocator::new(config(1, UNIVERSE, seeds(&[1, 2, 3, 4])), None).unwrap();
    let now = Instant::now();
    let all = BTreeSet::from([peer(2), peer(3), peer(4)]);
    alloc.peers_changed(&all, &BTreeMap::new(), now);
    // Our quarter (.0-.3) has hosts .1-.3.
    for n in 0..3 {
        alloc.request(n, allocate(&format!("p{n}"), UNIVERSE), now);
    }
    let asked = |effects: &[Effect]| -> Vec<PeerName> {
        messages(effects)
            .into_iter()
            .filter_map(|(to, m)| matches!(m, IpamMessage::SpaceRequest { .. }).then_some(to?))
            .collect()
    };
    let first = asked(&alloc.request(3, allocate("p3", UNIVERSE), now));
    assert_eq!(first.len(), 1);
    let mut rest = all.clone();
    rest.remove(&first[0]);
    let second = asked(&alloc.peers_changed(&rest, &BTreeMap::new(), now));
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    // A denial sends us to the remaining donor.
    let denied = alloc.on_message(
        second[0],
        IpamMessage::SpaceDenied {
            subnet: cidr(UNIVERSE),
        },
        now,
    );
    let third = asked(&denied);
    assert_eq!(third.len(), 1);
    assert!(!first.contains(&third[0]) && !second.contains(&third[0]));
}
