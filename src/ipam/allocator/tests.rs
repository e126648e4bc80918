//! Unit tests of the allocator on one peer: the lazy start, allocation, claims, frees,
//! cancellation, lookups, `rmpeer`, `reset`, restarts from persisted state and status.

mod gossip;
mod sim;
mod sim_checks;
mod sim_cluster;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::ipam::allocator::tests::support::*;
use crate::ipam::*;
use crate::topology::PeerName;

const UNIVERSE: &str = "10.0.0.0/28";

fn seeded_alone() -> Allocator {
    Allocator::new(config(1, UNIVERSE, InitMode::Seed(vec![peer(1)])), None).unwrap()
}

/// Peer 1 in a ring seeded with peers 1 and 2 (.0-.7 and .8-.15), peer 2 reachable or not.
fn seeded_pair(peer_two_live: bool) -> Allocator {
    let mode = InitMode::Seed(vec![peer(1), peer(2)]);
    let mut alloc = Allocator::new(config(1, UNIVERSE, mode), None).unwrap();
    let live: BTreeSet<PeerName> = if peer_two_live {
        [peer(2)].into()
    } else {
        BTreeSet::new()
    };
    let nicknames = BTreeMap::from([(peer(2), "two".to_string())]);
    alloc.peers_changed(&live, &nicknames, Instant::now());
    alloc
}

fn claim(ident: &str, address: &str) -> Request {
    Request::Claim {
        ident: ident.to_string(),
        addr: addr(address),
        subnet: cidr(UNIVERSE),
    }
}

fn free(ident: &str) -> Request {
    Request::Free {
        ident: ident.to_string(),
    }
}

#[test]
fn a_lone_consensus_peer_allocates_at_once_and_persists_before_replying() {
    let mode = InitMode::Consensus {
        quorum: 1,
        expected: 0,
    };
    let mut alloc = Allocator::new(config(1, UNIVERSE, mode), None).unwrap();
    assert_eq!(alloc.status().state, IpamState::Idle);
    let effects = alloc.request(7, allocate("pod-a", UNIVERSE), Instant::now());
    assert_persist_first(&effects);
    assert_eq!(allocated(&only_reply(&effects)), "10.0.0.1/28");
    let state = persisted(&effects).expect("persisted");
    assert_eq!(state.owned["pod-a"], vec![addr("10.0.0.1")]);
    assert_eq!(state.ring.as_ref().unwrap().seeds(), &[peer(1)]);
    assert!(
        messages(&effects)
            .iter()
            .any(|(to, msg)| to.is_none() && matches!(msg, IpamMessage::Ring(_))),
        "the new ring is broadcast"
    );
    assert_eq!(alloc.status().state, IpamState::Ready);
}

#[test]
fn allocation_takes_the_lowest_free_address_and_is_idempotent() {
    let mut alloc = seeded_alone();
    let now = Instant::now();
    let first = alloc.request(1, allocate("a", UNIVERSE), now);
    let second = alloc.request(2, allocate("b", UNIVERSE), now);
    assert_eq!(allocated(&only_reply(&first)), "10.0.0.1/28");
    assert_eq!(allocated(&only_reply(&second)), "10.0.0.2/28");
    let again = alloc.request(3, allocate("a", UNIVERSE), now);
    assert_eq!(allocated(&only_reply(&again)), "10.0.0.1/28");
    assert!(persisted(&again).is_none(), "nothing changed");
    assert_eq!(alloc.lookup("a")[0].to_string(), "10.0.0.1/28");
    assert_eq!(alloc.owned().len(), 2);
}

#[test]
fn allocation_in_a_subnet_outside_the_range_is_refused() {
    let mut alloc = seeded_alone();
    let effects = alloc.request(1, allocate("a", "10.0.1.0/28"), Instant::now());
    assert!(matches!(
        only_reply(&effects),
        Err(IpamError::SubnetOutsideRange { .. })
    ));
}

#[test]
fn a_smaller_subnet_is_allocated_in_and_looked_up_with_its_prefix() {
    let mut alloc = seeded_alone();
    let effects = alloc.request(1, allocate("a", "10.0.0.8/30"), Instant::now());
    assert_eq!(allocated(&only_reply(&effects)), "10.0.0.9/30");
    assert_eq!(
        persisted(&effects).unwrap().subnets[&addr("10.0.0.9")],
        cidr("10.0.0.8/30")
    );
    assert_eq!(alloc.lookup("a")[0].to_string(), "10.0.0.9/30");
    assert!(alloc.lookup("nobody").is_empty());
}

#[test]
fn free_returns_addresses_and_freeing_nothing_is_fine() {
    let mut alloc = seeded_alone();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    alloc.request(2, allocate("b", UNIVERSE), now);
    let effects = alloc.request(3, free("a"), now);
    assert_persist_first(&effects);
    assert_eq!(only_reply(&effects), Ok(Reply::Done));
    assert!(!persisted(&effects).unwrap().owned.contains_key("a"));
    let unknown = alloc.request(4, free("never-seen"), now);
    assert_eq!(only_reply(&unknown), Ok(Reply::Done));
    assert!(persisted(&unknown).is_none());
    let reused = alloc.request(5, allocate("c", UNIVERSE), now);
    assert_eq!(allocated(&only_reply(&reused)), "10.0.0.1/28");
}

#[test]
fn freeing_one_address_checks_who_holds_it() {
    let mut alloc = seeded_alone();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    let free_address = |ident: &str, address: &str| Request::FreeAddress {
        ident: ident.to_string(),
        addr: addr(address),
    };
    let wrong = alloc.request(2, free_address("b", "10.0.0.1"), now);
    assert!(matches!(
        only_reply(&wrong),
        Err(IpamError::AddressHeldByOther { holder, .. }) if holder == "a"
    ));
    let nobody = alloc.request(3, free_address("b", "10.0.0.5"), now);
    assert_eq!(only_reply(&nobody), Ok(Reply::Done));
    let right = alloc.request(4, free_address("a", "10.0.0.1"), now);
    assert_eq!(only_reply(&right), Ok(Reply::Done));
    assert!(alloc.owned().is_empty());
}

#[test]
fn claims_of_our_own_addresses_are_checked() {
    let mut alloc = seeded_alone();
    let now = Instant::now();
    assert_eq!(
        only_reply(&alloc.request(1, claim("a", "10.0.0.5"), now)),
        Ok(Reply::Done)
    );
    assert_eq!(
        only_reply(&alloc.request(2, claim("a", "10.0.0.5"), now)),
        Ok(Reply::Done)
    );
    assert!(matches!(
        only_reply(&alloc.request(3, claim("b", "10.0.0.5"), now)),
        Err(IpamError::AddressInUse { ident, .. }) if ident == "a"
    ));
    assert!(matches!(
        only_reply(&alloc.request(4, claim("b", "10.0.0.15"), now)),
        Err(IpamError::AddressOutsideSubnet { .. })
    ));
    assert!(matches!(
        only_reply(&alloc.request(5, claim("b", "10.1.0.1"), now)),
        Err(IpamError::AddressOutsideRange { .. })
    ));
    // Allocation skips the claimed address.
    alloc.request(6, allocate("c", UNIVERSE), now);
    alloc.request(7, allocate("d", UNIVERSE), now);
    alloc.request(8, allocate("e", UNIVERSE), now);
    alloc.request(9, allocate("f", UNIVERSE), now);
    let effects = alloc.request(10, allocate("g", UNIVERSE), now);
    assert_eq!(allocated(&only_reply(&effects)), "10.0.0.6/28");
}

#[test]
fn a_claim_of_an_unreachable_owners_address_fails_after_five_attempts() {
    let mut alloc = seeded_pair(false);
    let mut now = Instant::now();
    let effects = alloc.request(1, claim("a", "10.0.0.9"), now);
    assert!(replies(&effects).is_empty());
    assert_eq!(alloc.status().state, IpamState::AllUnreachable);
    let mut outcome = None;
    for _ in 0..30 {
        now += Duration::from_secs(1);
        let effects = alloc.tick(now);
        if let Some((_, result)) = replies(&effects).pop() {
            outcome = Some(result);
            break;
        }
    }
    let error = outcome.expect("the claim fails in the end").unwrap_err();
    assert_eq!(
        error.to_string(),
        "address 10.0.0.9 is owned by other peer 00:00:00:00:00:02, which stayed unreachable \
         for 5 attempts (use 'rmpeer' if it is dead)"
    );
}

#[test]
fn cancel_drops_a_waiting_request_and_free_cancels_the_idents_requests() {
    let mut alloc = seeded_pair(true);
    let now = Instant::now();
    alloc.request(1, claim("a", "10.0.0.9"), now);
    alloc.request(2, claim("b", "10.0.0.10"), now);
    assert_eq!(alloc.status().pending_claims, 2);
    assert!(replies(&alloc.cancel(1)).is_empty());
    assert_eq!(alloc.status().pending_claims, 1);
    let effects = alloc.request(3, free("b"), now);
    let all = replies(&effects);
    assert!(matches!(&all[0], (2, Err(IpamError::Cancelled { ident, .. })) if ident == "b"));
    assert_eq!(all[1], (3, Ok(Reply::Done)));
    assert_eq!(alloc.status().pending_claims, 0);
}

#[test]
fn rmpeer_takes_over_a_dead_peers_ranges_by_name_or_nickname() {
    let mut alloc = seeded_pair(false);
    let now = Instant::now();
    let remove = |peer: &str| Request::RemovePeer {
        peer: peer.to_string(),
    };
    assert!(matches!(
        only_reply(&alloc.request(1, remove("node1"), now)),
        Err(IpamError::CannotRemoveSelf { .. })
    ));
    assert!(matches!(
        only_reply(&alloc.request(2, remove("nobody"), now)),
        Err(IpamError::UnknownPeer { .. })
    ));
    alloc.request(3, allocate("a", UNIVERSE), now);
    let effects = alloc.request(4, remove("two"), now);
    assert_persist_first(&effects);
    assert_eq!(
        only_reply(&effects),
        Ok(Reply::TookOver {
            count: 8,
            peer: peer(2)
        })
    );
    assert_eq!(alloc.ring_state().unwrap().entries().len(), 2);
    assert!(
        alloc
            .ring_state()
            .unwrap()
            .entries()
            .iter()
            .all(|e| e.peer == peer(1))
    );
    assert_eq!(alloc.status().shares.len(), 1);
    let again = alloc.request(5, remove("00:00:00:00:00:02"), now);
    assert_eq!(
        only_reply(&again),
        Ok(Reply::TookOver {
            count: 0,
            peer: peer(2)
        })
    );
}

#[test]
fn rmpeer_refuses_a_reachable_peer_and_an_ambiguous_nickname() {
    let mut alloc = seeded_pair(true);
    let now = Instant::now();
    let effects = alloc.request(
        1,
        Request::RemovePeer {
            peer: "two".to_string(),
        },
        now,
    );
    assert!(matches!(
        only_reply(&effects),
        Err(IpamError::PeerIsLive { .. })
    ));
    let nicknames = BTreeMap::from([(peer(3), "two".to_string())]);
    alloc.peers_changed(&BTreeSet::new(), &nicknames, now);
    let effects = alloc.request(
        2,
        Request::RemovePeer {
            peer: "two".to_string(),
        },
        now,
    );
    assert!(matches!(
        only_reply(&effects),
        Err(IpamError::AmbiguousNickname { peers, .. }) if peers == vec![peer(2), peer(3)]
    ));
}

#[test]
fn reset_hands_our_ranges_to_a_reachable_peer() {
    let mut alloc = seeded_pair(true);
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    let effects = alloc.request(2, Request::Reset, now);
    assert_persist_first(&effects);
    assert_eq!(only_reply(&effects), Ok(Reply::Done));
    let state = persisted(&effects).unwrap();
    assert!(state.owned.is_empty());
    let ring = state.ring.as_ref().unwrap();
    assert!(ring.entries().iter().all(|e| e.peer == peer(2)));
    // Our former entry won over any edit of ours still in flight.
    assert!(ring.entries()[0].version >= TRANSFER_VERSION_BUMP);
    assert!(alloc.owned_ranges().is_empty());
}

#[test]
fn reset_without_a_reachable_heir_is_refused_and_alone_forgets_the_ring() {
    let mut pair = seeded_pair(false);
    let now = Instant::now();
    pair.request(1, allocate("a", UNIVERSE), now);
    let refused = pair.request(2, Request::Reset, now);
    assert!(matches!(
        only_reply(&refused),
        Err(IpamError::NoLiveHeir { owners }) if owners == vec![peer(2)]
    ));
    assert_eq!(pair.owned().len(), 1, "nothing changed");

    let mut alone = seeded_alone();
    alone.request(1, allocate("a", UNIVERSE), now);
    let effects = alone.request(2, Request::Reset, now);
    assert_eq!(only_reply(&effects), Ok(Reply::Done));
    assert_eq!(persisted(&effects).unwrap(), &PersistedState::default());
    assert_eq!(alone.status().state, IpamState::Idle);
}

#[test]
fn a_restart_from_persisted_state_keeps_every_allocation() {
    let mut alloc = seeded_alone();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    alloc.request(2, allocate("b", "10.0.0.8/30"), now);
    let state = alloc.persisted_state();
    let mut restarted = Allocator::new(
        config(1, UNIVERSE, InitMode::Seed(vec![peer(1)])),
        Some(state),
    )
    .unwrap();
    assert_eq!(restarted.owned(), alloc.owned());
    assert_eq!(restarted.lookup("b")[0].to_string(), "10.0.0.9/30");
    assert_eq!(restarted.status().state, IpamState::Ready);
    let effects = restarted.request(3, allocate("c", UNIVERSE), now);
    assert_eq!(allocated(&only_reply(&effects)), "10.0.0.2/28");
}

#[test]
fn persisted_state_that_does_not_fit_is_an_error_not_dropped() {
    let mut alloc = seeded_alone();
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    let good = alloc.persisted_state();
    let mode = || InitMode::Seed(vec![peer(1)]);

    let other_range = Allocator::new(config(1, "10.0.1.0/28", mode()), Some(good.clone()));
    assert!(matches!(
        other_range,
        Err(IpamError::PersistedRangeMismatch { .. })
    ));

    let mut twice = good.clone();
    twice.owned.insert("b".to_string(), vec![addr("10.0.0.1")]);
    let twice = Allocator::new(config(1, UNIVERSE, mode()), Some(twice));
    assert!(matches!(
        twice,
        Err(IpamError::PersistedAddressTwice { .. })
    ));

    // Peer 3 restoring peer 1's data owns nothing of the ring.
    let not_ours = Allocator::new(config(3, UNIVERSE, mode()), Some(good.clone()));
    assert!(matches!(
        not_ours,
        Err(IpamError::PersistedAddressNotOwned { .. })
    ));

    let mut no_ring = good;
    no_ring.ring = None;
    let no_ring = Allocator::new(config(1, UNIVERSE, mode()), Some(no_ring));
    assert!(matches!(
        no_ring,
        Err(IpamError::PersistedAllocationsWithoutRing { count: 1 })
    ));
}

#[test]
fn configurations_are_checked() {
    let mut bad = config(1, UNIVERSE, InitMode::Seed(vec![]));
    assert!(matches!(
        Allocator::new(bad.clone(), None),
        Err(IpamError::EmptySeedList)
    ));
    bad.mode = InitMode::Observer;
    bad.default_subnet = cidr("10.0.1.0/30");
    assert!(matches!(
        Allocator::new(bad, None),
        Err(IpamError::DefaultSubnetOutsideRange { .. })
    ));
}

#[test]
fn status_shows_shares_reachability_and_counts() {
    let mut alloc = seeded_pair(false);
    let now = Instant::now();
    alloc.request(1, allocate("a", UNIVERSE), now);
    let status = alloc.status();
    assert_eq!(status.state, IpamState::Ready);
    assert_eq!(status.active_ips, 1);
    assert_eq!(status.max_ips, 16);
    assert_eq!(status.unreachable_count, 1);
    assert!((status.unreachable_percentage - 50.0).abs() < 1e-9);
    let ours = &status.shares[0];
    assert_eq!(
        (ours.peer, ours.addresses, ours.active),
        (peer(1), 8, Some(1))
    );
    assert_eq!(ours.nickname.as_deref(), Some("node1"));
    let theirs = &status.shares[1];
    assert_eq!((theirs.reachable, theirs.active), (false, None));
    assert_eq!(theirs.nickname.as_deref(), Some("two"));
    assert_eq!(
        IpamState::AwaitingConsensus {
            quorum: 2,
            known: 1
        }
        .to_string(),
        "awaiting consensus (quorum: 2, known: 1)"
    );
}

#[test]
fn exhausting_our_space_with_every_owner_unreachable_waits_and_says_so() {
    let mut alloc = seeded_pair(false);
    let now = Instant::now();
    // .0-.7 are ours: hosts .1-.7 of the /28 (.0 is its network address).
    for n in 0..7 {
        let effects = alloc.request(n, allocate(&format!("p{n}"), UNIVERSE), now);
        assert!(matches!(only_reply(&effects), Ok(Reply::Allocated(_))));
    }
    let effects = alloc.request(7, allocate("p7", UNIVERSE), now);
    assert!(replies(&effects).is_empty());
    assert!(
        messages(&effects)
            .iter()
            .all(|(_, m)| !matches!(m, IpamMessage::SpaceRequest { .. }))
    );
    assert_eq!(alloc.status().state, IpamState::AllUnreachable);
    assert_eq!(alloc.status().pending_allocates, 1);
}
