//! `rmpeer` with a record of who took over whom: tokens of a removed peer its heir never saw,
//! a removed peer that comes back under its name, and the record's own join.

use proptest::prelude::*;

use super::{addr, all_allocated, no_allocations, peer, range, two_peer_ring};
use crate::ipam::{Removal, Removals, Ring, RingError};
use crate::topology::PeerName;

/// Peer 2's last act before it died: it split its half (.128-.255) to give .160-.191 to peer
/// 3, which alone heard of it. Returns peer 2's ring (peer 3's copy is the same).
fn dying_grant() -> Ring {
    let mut dying = two_peer_ring(2);
    dying
        .grant_range(range("10.0.0.160", "10.0.0.192"), peer(3))
        .unwrap();
    dying
}

/// Allocations in the part that peer 2 kept after its grant, unknown to the heir.
fn allocated_after_the_grant(part: crate::ipam::AddressRange) -> bool {
    part.contains(addr("10.0.0.200"))
}

#[test]
fn a_token_of_a_removed_peer_its_heir_never_saw_goes_to_the_heir() {
    let mut heir = two_peer_ring(1);
    let taken = heir.remove_peer(peer(2));
    assert_eq!(taken, vec![range("10.0.0.128", "10.0.1.0")]);
    assert!(heir.removals().is_removed(peer(2)));

    // The grantee comes back with the grant; the heir has allocated after the grant's end.
    let mut grantee = dying_grant();
    grantee.local = peer(3);
    let outcome = heir
        .merge(grantee.state(), allocated_after_the_grant)
        .expect("the dead peer's unseen token goes to its heir, taking nothing from it");
    assert_eq!(outcome.lost, vec![range("10.0.0.160", "10.0.0.192")]);
    assert_eq!(heir.owner(addr("10.0.0.200")), Some(peer(1)));
    assert_eq!(heir.owner(addr("10.0.0.170")), Some(peer(3)));

    // The grantee learns the same, and both rings are one.
    let outcome = grantee.merge(heir.state(), all_allocated).unwrap();
    assert!(outcome.lost.is_empty() && outcome.gained.is_empty());
    assert_eq!(grantee.state(), heir.state());
    assert!(heir.entries().iter().all(|entry| entry.peer != peer(2)));
}

#[test]
fn without_the_record_the_same_history_is_refused() {
    // What `rmpeer` did before the record existed: the transfer alone.
    let mut heir = two_peer_ring(1);
    heir.transfer(peer(2), peer(1));
    let mut grantee = dying_grant();
    grantee.local = peer(3);
    assert!(matches!(
        heir.merge(grantee.state(), allocated_after_the_grant),
        Err(RingError::ClaimsOwnedRange { claimant, .. }) if claimant == peer(2)
    ));
}

#[test]
fn a_grant_its_heir_never_saw_beats_the_heirs_transfer() {
    // Peer 2 gives peer 3 its whole half at the half's own token, and dies; peer 1 removes it.
    let mut dying = two_peer_ring(2);
    dying
        .grant_range(range("10.0.0.128", "10.0.1.0"), peer(3))
        .unwrap();
    let mut heir = two_peer_ring(1);
    heir.remove_peer(peer(2));
    for free in [10, 20, 30] {
        heir.report_free(|_| free);
    }
    // The grantee, back with allocations there, keeps it; the heir gives it up.
    let mut grantee = dying.clone();
    grantee.local = peer(3);
    let outcome = grantee.merge(heir.state(), all_allocated).unwrap();
    assert!(outcome.lost.is_empty());
    let outcome = heir.merge(grantee.state(), no_allocations).unwrap();
    assert_eq!(outcome.lost, vec![range("10.0.0.128", "10.0.1.0")]);
    assert_eq!(heir.state(), grantee.state());
}

#[test]
fn a_removed_peer_that_comes_back_keeps_what_it_is_given() {
    let mut heir = two_peer_ring(1);
    heir.remove_peer(peer(2));
    // Peer 2 comes back under its name with an empty ring: merging, it records its return.
    let mut returned = Ring::new(heir.range(), peer(2));
    let outcome = returned.merge(heir.state(), no_allocations).unwrap();
    assert!(outcome.gained.is_empty());
    assert!(!returned.removals().is_removed(peer(2)));
    // The heir grants it space (before or after hearing of the return: a grant is proof).
    heir.grant_range(range("10.0.0.0", "10.0.0.64"), peer(2))
        .unwrap();
    assert!(!heir.removals().is_removed(peer(2)));
    let outcome = returned.merge(heir.state(), no_allocations).unwrap();
    assert_eq!(outcome.gained, vec![range("10.0.0.0", "10.0.0.64")]);
    heir.merge(returned.state(), all_allocated).unwrap();
    assert_eq!(heir.state(), returned.state());
    // A stale copy that still has it removed changes nothing.
    let mut stale = two_peer_ring(1);
    stale.remove_peer(peer(2));
    stale.local = peer(4);
    returned.merge(stale.state(), all_allocated).unwrap();
    assert_eq!(returned.owner(addr("10.0.0.10")), Some(peer(2)));
    // Removed again later, its ranges go to the heir once more.
    heir.remove_peer(peer(2));
    assert_eq!(heir.owner(addr("10.0.0.10")), Some(peer(1)));
    returned.local = peer(4);
    returned.merge(heir.state(), no_allocations).unwrap();
    assert!(returned.removals().is_removed(peer(2)));
}

#[test]
fn the_heir_of_a_removed_heir_takes_over_both() {
    // Peer 1 removes peer 2, then peer 3 removes peer 1; a token of peer 2 seen by nobody
    // reaches peer 3's ring.
    let mut three = Ring::new(two_peer_ring(1).range(), peer(3));
    let mut one = two_peer_ring(1);
    one.remove_peer(peer(2));
    three.merge(one.state(), no_allocations).unwrap();
    three.remove_peer(peer(1));
    let mut grantee = dying_grant();
    grantee.local = peer(5);
    three
        .merge(grantee.state(), allocated_after_the_grant)
        .unwrap();
    assert_eq!(three.owner(addr("10.0.0.200")), Some(peer(3)));
    assert_eq!(three.owner(addr("10.0.0.10")), Some(peer(3)));
}

#[test]
fn a_peer_recorded_as_its_own_heir_is_malformed() {
    let mut bad = two_peer_ring(2).state().clone();
    bad.removals.record_removal(peer(2), peer(2));
    assert!(matches!(
        two_peer_ring(1).merge(&bad, no_allocations),
        Err(RingError::Malformed { .. })
    ));
}

#[test]
fn rings_without_removals_encode_as_before_and_decode() {
    // The field is left out while empty, so rings of routers without it still decode here
    // and ours there.
    let ring = two_peer_ring(1);
    let packed = rmp_serde::to_vec_named(ring.state()).unwrap();
    assert!(!String::from_utf8_lossy(&packed).contains("removals"));
    let mut removed = ring.clone();
    removed.remove_peer(peer(2));
    let packed = rmp_serde::to_vec_named(removed.state()).unwrap();
    let unpacked: crate::ipam::RingState = rmp_serde::from_slice(&packed).unwrap();
    assert_eq!(&unpacked, removed.state());
}

fn removal() -> impl Strategy<Value = (u64, Removal)> {
    (1u64..5, 0u32..4, 0u32..4, 1u64..5).prop_map(|(peer_index, removed, returned, heir)| {
        (
            peer_index,
            Removal {
                removed,
                returned,
                heir: peer(heir),
            },
        )
    })
}

fn removals() -> impl Strategy<Value = Removals> {
    prop::collection::vec(removal(), 0..4).prop_map(|records| {
        records
            .into_iter()
            .map(|(index, record)| (peer(index), record))
            .collect()
    })
}

proptest! {
    #[test]
    fn the_record_joins_commutatively_associatively_idempotently(
        a in removals(),
        b in removals(),
        c in removals(),
    ) {
        prop_assert_eq!(a.join(&b), b.join(&a));
        prop_assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
        prop_assert_eq!(a.join(&a), a.clone());
    }

    /// Whoever holds a removed peer's ranges is not removed, or there is a cycle.
    #[test]
    fn holders_are_never_removed(records in removals(), index in 1u64..5) {
        let name: PeerName = peer(index);
        if let Some(holder) = records.holder(name) {
            prop_assert!(!records.is_removed(holder));
        }
    }
}
