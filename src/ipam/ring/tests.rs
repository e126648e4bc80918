//! Unit tests of the ring: the initial split, grants, transfers, free reports, queries and
//! each merge rule.

mod props;
mod removals;

use super::*;
use crate::ipam::{MergeOutcome, Space};

fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

fn addr(text: &str) -> Address {
    text.parse().unwrap()
}

fn range(start: &str, end: &str) -> AddressRange {
    AddressRange::new(addr(start), addr(end)).unwrap()
}

fn slash24() -> Cidr {
    "10.0.0.0/24".parse().unwrap()
}

/// The ring of `local` over 10.0.0.0/24, split between peers 1 and 2 (.0-.127 and .128-.255).
fn two_peer_ring(local: u64) -> Ring {
    let mut ring = Ring::new(slash24(), peer(local));
    ring.claim_for_peers(&[peer(2), peer(1)]).unwrap();
    ring
}

fn no_allocations(_: AddressRange) -> bool {
    false
}

fn all_allocated(_: AddressRange) -> bool {
    true
}

#[test]
fn claim_splits_the_range_equally_in_peer_order() {
    let mut ring = Ring::new(crate::ipam::DEFAULT_RANGE, peer(2));
    ring.claim_for_peers(&[peer(3), peer(1), peer(2), peer(1)])
        .unwrap();
    assert_eq!(ring.seeds(), &[peer(1), peer(2), peer(3)]);
    let shares: Vec<(PeerName, u32)> = ring
        .shares()
        .iter()
        .map(|s| (s.peer, s.addresses))
        .collect();
    // Ours first, then by name; 1,048,576 / 3 = 349,525.33.
    assert_eq!(
        shares,
        vec![(peer(2), 349_525), (peer(1), 349_525), (peer(3), 349_526)]
    );
    assert!((ring.shares()[0].percent - 33.33).abs() < 0.01);
    assert_eq!(ring.entries()[0].token, addr("10.32.0.0"));
    assert_eq!(ring.owner(addr("10.47.255.255")), Some(peer(3)));
    assert!(ring.entries().iter().all(|e| e.version == 0));
    assert_eq!(
        ring.claim_for_peers(&[peer(1)]),
        Err(RingError::AlreadyClaimed)
    );
}

#[test]
fn claim_is_deterministic_and_needs_peers() {
    let mut empty = Ring::new(slash24(), peer(1));
    assert_eq!(empty.claim_for_peers(&[]), Err(RingError::NoPeers));
    assert!(empty.is_empty());
    // Peers 1 and 2 building the ring from the same set get the same state.
    assert_eq!(two_peer_ring(1).state(), two_peer_ring(2).state());
}

#[test]
fn more_peers_than_addresses_leaves_some_without_space() {
    let mut ring = Ring::new("10.0.0.0/30".parse().unwrap(), peer(1));
    ring.claim_for_peers(&(1..=6).map(peer).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(ring.entries().len(), 4);
    assert_eq!(ring.peers(), vec![peer(2), peer(3), peer(5), peer(6)]);
    assert!(ring.owned_ranges(peer(1)).is_empty());
}

#[test]
fn owner_covers_the_last_part_up_to_the_range_end() {
    let ring = two_peer_ring(1);
    assert_eq!(ring.owner(addr("10.0.0.0")), Some(peer(1)));
    assert_eq!(ring.owner(addr("10.0.0.127")), Some(peer(1)));
    assert_eq!(ring.owner(addr("10.0.0.128")), Some(peer(2)));
    assert_eq!(ring.owner(addr("10.0.0.255")), Some(peer(2)));
    assert_eq!(ring.owner(addr("10.0.1.0")), None);
    assert_eq!(Ring::new(slash24(), peer(1)).owner(addr("10.0.0.1")), None);
    assert_eq!(
        ring.owned_ranges(peer(2)),
        vec![range("10.0.0.128", "10.0.1.0")]
    );
}

#[test]
fn grant_inside_our_part_inserts_tokens_at_both_ends() {
    let mut ring = two_peer_ring(1);
    ring.grant_range(range("10.0.0.64", "10.0.0.96"), peer(3))
        .unwrap();
    let view: Vec<(Address, PeerName, u32, u32)> = ring
        .entries()
        .iter()
        .map(|e| (e.token, e.peer, e.version, e.free))
        .collect();
    assert_eq!(
        view,
        vec![
            (addr("10.0.0.0"), peer(1), 1, 64),
            (addr("10.0.0.64"), peer(3), GRANT_VERSION_BUMP, 32),
            (addr("10.0.0.96"), peer(1), 0, 32),
            (addr("10.0.0.128"), peer(2), 0, 128),
        ]
    );
    assert_eq!(
        ring.owned_ranges(peer(1)),
        vec![
            range("10.0.0.0", "10.0.0.64"),
            range("10.0.0.96", "10.0.0.128")
        ]
    );
}

#[test]
fn grant_at_the_end_of_the_range_adds_no_end_token() {
    let mut ring = two_peer_ring(2);
    ring.grant_range(range("10.0.0.192", "10.0.1.0"), peer(3))
        .unwrap();
    assert_eq!(ring.entries().len(), 3);
    assert_eq!(ring.owner(addr("10.0.0.255")), Some(peer(3)));
    assert_eq!(
        ring.owned_ranges(peer(2)),
        vec![range("10.0.0.128", "10.0.0.192")]
    );
}

#[test]
fn grant_spanning_several_of_our_entries() {
    let mut ring = two_peer_ring(1);
    ring.transfer(peer(2), peer(1));
    ring.grant_range(range("10.0.0.100", "10.0.0.200"), peer(3))
        .unwrap();
    assert_eq!(
        ring.owned_ranges(peer(3)),
        vec![range("10.0.0.100", "10.0.0.200")]
    );
    assert_eq!(
        ring.owned_ranges(peer(1)),
        vec![
            range("10.0.0.0", "10.0.0.100"),
            range("10.0.0.200", "10.0.1.0")
        ]
    );
}

#[test]
fn grant_refuses_what_is_not_ours() {
    let mut ring = two_peer_ring(1);
    let before = ring.clone();
    assert_eq!(
        ring.grant_range(range("10.0.0.120", "10.0.0.130"), peer(3)),
        Err(RingError::NotOurs {
            range: range("10.0.0.120", "10.0.0.130"),
            address: addr("10.0.0.128"),
            owner: peer(2),
        })
    );
    assert!(matches!(
        ring.grant_range(range("10.0.0.250", "10.0.1.4"), peer(3)),
        Err(RingError::OutOfRange { .. })
    ));
    assert_eq!(
        ring.grant_range(range("10.0.0.5", "10.0.0.5"), peer(3)),
        Err(RingError::EmptyRange)
    );
    assert_eq!(
        Ring::new(slash24(), peer(1)).grant_range(range("10.0.0.0", "10.0.0.1"), peer(3)),
        Err(RingError::NotEstablished)
    );
    assert_eq!(ring, before, "refused grants change nothing");
}

#[test]
fn transfer_dominates_edits_of_the_old_owner_in_flight() {
    let mut taker = two_peer_ring(1);
    let mut dead = two_peer_ring(2);
    // The dead peer's last free reports, never seen by the taker...
    for free in [10, 20, 30] {
        dead.report_free(|_| free);
    }
    let taken = taker.transfer(peer(2), peer(1));
    assert_eq!(taken, vec![range("10.0.0.128", "10.0.1.0")]);
    assert_eq!(taker.entries()[1].version, TRANSFER_VERSION_BUMP);
    // ...lose to the transfer, in either merge direction.
    let outcome = taker.merge(dead.state(), no_allocations).unwrap();
    assert!(!outcome.changed && outcome.incoming_outdated);
    dead.merge(taker.state(), no_allocations).unwrap();
    assert_eq!(dead.state(), taker.state());
    assert_eq!(taker.owned_ranges(peer(1)), vec![slash24().range()]);
    assert!(taker.transfer(peer(1), peer(1)).is_empty());
}

#[test]
fn report_free_bumps_only_changed_entries_of_ours() {
    let mut ring = two_peer_ring(1);
    assert!(ring.report_free(|part| part.size() - 3));
    assert_eq!(ring.entries()[0].free, 125);
    assert_eq!(ring.entries()[0].version, 1);
    assert_eq!(ring.entries()[1].version, 0, "not ours");
    assert!(!ring.report_free(|part| part.size() - 3));
    assert_eq!(ring.entries()[0].version, 1);
    // Over-reports are capped at the part's size.
    ring.report_free(|_| u32::MAX);
    assert_eq!(ring.entries()[0].free, 128);
}

#[test]
fn donors_exclude_us_and_come_most_free_first() {
    let mut ring = Ring::new(slash24(), peer(1));
    ring.claim_for_peers(&[peer(1), peer(2), peer(3), peer(4)])
        .unwrap();
    let mut third = ring.clone();
    third.local = peer(3);
    third.report_free(|_| 0);
    ring.merge(third.state(), no_allocations).unwrap();
    assert_eq!(
        ring.peers_with_free_space(),
        vec![(peer(2), 64), (peer(4), 64)]
    );
    assert_eq!(
        ring.peers_with_free_space_in(range("10.0.0.250", "10.0.1.0")),
        vec![(peer(4), 6)]
    );
    assert_eq!(ring.pick_peer_for_transfer(|p| p != peer(2)), Some(peer(3)));
}

#[test]
fn merge_refuses_other_seeds_and_other_ranges() {
    let mut ours = two_peer_ring(1);
    let mut theirs = Ring::new(slash24(), peer(3));
    theirs.claim_for_peers(&[peer(3)]).unwrap();
    assert_eq!(
        ours.merge(theirs.state(), no_allocations),
        Err(RingError::DifferentSeeds {
            ours: vec![peer(1), peer(2)],
            theirs: vec![peer(3)],
        })
    );
    let other_range = Ring::new("10.0.1.0/24".parse().unwrap(), peer(3));
    assert!(matches!(
        ours.merge(other_range.state(), no_allocations),
        Err(RingError::DifferentRange { .. })
    ));
    assert_eq!(ours, two_peer_ring(1));
}

#[test]
fn empty_ring_adopts_seeds_and_gains_its_share() {
    let mut newcomer = Ring::new(slash24(), peer(2));
    let outcome = newcomer
        .merge(two_peer_ring(1).state(), no_allocations)
        .unwrap();
    assert_eq!(
        outcome,
        MergeOutcome {
            changed: true,
            incoming_outdated: false,
            gained: vec![range("10.0.0.128", "10.0.1.0")],
            lost: vec![],
        }
    );
    assert_eq!(newcomer.seeds(), &[peer(1), peer(2)]);
    // An empty ring arriving changes nothing and is itself outdated.
    let outcome = newcomer
        .merge(Ring::new(slash24(), peer(3)).state(), no_allocations)
        .unwrap();
    assert!(!outcome.changed && outcome.incoming_outdated);
}

#[test]
fn merge_refuses_malformed_rings() {
    let mut ours = two_peer_ring(1);
    let mut bad = two_peer_ring(2).state().clone();
    bad.entries.swap(0, 1);
    assert!(matches!(
        ours.merge(&bad, no_allocations),
        Err(RingError::Malformed { .. })
    ));
    let mut bad = two_peer_ring(2).state().clone();
    bad.entries.remove(0);
    assert!(matches!(
        ours.merge(&bad, no_allocations),
        Err(RingError::Malformed { .. })
    ));
    let mut bad = two_peer_ring(2).state().clone();
    bad.seeds.clear();
    assert!(matches!(
        Ring::restore(bad, peer(1)),
        Err(RingError::Malformed { .. })
    ));
}

#[test]
fn newer_entry_taking_our_range_is_accepted_only_without_allocations() {
    // Peer 2 (wrongly, e.g. an rmpeer of a live peer) took over our part.
    let mut usurper = two_peer_ring(2);
    usurper.transfer(peer(1), peer(2));
    let mut ours = two_peer_ring(1);
    let before = ours.clone();
    assert_eq!(
        ours.merge(usurper.state(), all_allocated),
        Err(RingError::ClaimsOwnedRange {
            range: range("10.0.0.0", "10.0.0.128"),
            claimant: peer(2),
        })
    );
    assert_eq!(ours, before, "a refused merge changes nothing");
    let outcome = ours.merge(usurper.state(), no_allocations).unwrap();
    assert_eq!(outcome.lost, vec![range("10.0.0.0", "10.0.0.128")]);
    assert!(ours.owned_ranges(peer(1)).is_empty());
}

#[test]
fn new_token_inside_our_range_is_checked_against_its_part_only() {
    // A ring in which we gave .32-.64 to peer 2: an earlier incarnation of us did, and this
    // one restarted from a ring persisted before that grant.
    let mut theirs = two_peer_ring(1);
    theirs
        .grant_range(range("10.0.0.32", "10.0.0.64"), peer(2))
        .unwrap();
    let mut space = Space::new();
    space.add_ranges(&[range("10.0.0.0", "10.0.0.128")]);
    space.claim(addr("10.0.0.40")).unwrap();
    // The grant bumped entry .0 and added tokens .32 and .64, so theirs wins; only .32-.64
    // changes owner, and it holds our allocation.
    let mut ours = two_peer_ring(1);
    assert_eq!(
        ours.merge(theirs.state(), |r| space.has_allocations_in(r)),
        Err(RingError::ClaimsOwnedRange {
            range: range("10.0.0.32", "10.0.0.64"),
            claimant: peer(2),
        })
    );
    // With the allocation elsewhere the same ring is accepted.
    space.free(addr("10.0.0.40")).unwrap();
    space.claim(addr("10.0.0.70")).unwrap();
    let outcome = ours
        .merge(theirs.state(), |r| space.has_allocations_in(r))
        .unwrap();
    assert_eq!(outcome.lost, vec![range("10.0.0.32", "10.0.0.64")]);
}

#[test]
fn equal_version_conflicts_resolve_the_same_way_on_both_sides() {
    // Two peers both rmpeer'd peer 2 (which Weave warns against): same version, other owners.
    let mut a = two_peer_ring(1);
    a.transfer(peer(2), peer(1));
    let mut b = two_peer_ring(3);
    b.transfer(peer(2), peer(3));
    let (mut a_then_b, mut b_then_a) = (a.clone(), b.clone());
    a_then_b.local = peer(9);
    b_then_a.local = peer(9);
    a_then_b.merge(b.state(), no_allocations).unwrap();
    b_then_a.merge(a.state(), no_allocations).unwrap();
    assert_eq!(a_then_b.state(), b_then_a.state());
    // Equal free counts: the higher peer name wins.
    assert_eq!(a_then_b.owner(addr("10.0.0.200")), Some(peer(3)));
    // The loser refuses if it has allocations there, and accepts if not.
    assert!(matches!(
        a.clone().merge(b.state(), all_allocated),
        Err(RingError::ClaimsOwnedRange { claimant, .. }) if claimant == peer(3)
    ));
    assert!(a.merge(b.state(), no_allocations).is_ok());
}

#[test]
fn our_entry_coming_back_newer_keeps_us_as_owner() {
    let mut ours = two_peer_ring(1);
    let mut echo = ours.clone();
    echo.report_free(|_| 7);
    echo.report_free(|_| 8);
    let outcome = ours.merge(echo.state(), all_allocated).unwrap();
    assert!(outcome.changed && outcome.lost.is_empty() && outcome.gained.is_empty());
    assert_eq!(ours.entries()[0].free, 8);
}

#[test]
fn state_round_trips_through_messagepack_and_json() {
    let mut ring = two_peer_ring(1);
    ring.grant_range(range("10.0.0.8", "10.0.0.16"), peer(5))
        .unwrap();
    let packed = rmp_serde::to_vec(ring.state()).unwrap();
    let unpacked: RingState = rmp_serde::from_slice(&packed).unwrap();
    assert_eq!(&unpacked, ring.state());
    let json = serde_json::to_string(ring.state()).unwrap();
    assert!(json.contains("\"10.0.0.0/24\"") && json.contains("\"10.0.0.8\""));
    let restored = Ring::restore(serde_json::from_str(&json).unwrap(), peer(1)).unwrap();
    assert_eq!(restored, ring);
}
