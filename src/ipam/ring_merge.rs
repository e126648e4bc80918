//! Merging a gossiped ring into ours: the checks a received ring must pass, the join of two
//! rings, and the guard that keeps our allocated addresses ours.
//!
//! The join: the union of both rings' tokens, and for a token both have, the entry first in
//! [`Entry::precedence`] (higher version, then more free, then higher peer name); the join of
//! both records of removed peers, and every entry naming a removed peer given to its heir.
//! Tokens are never removed, so this is a join-semilattice: commutative, associative and
//! idempotent, and every peer ends with the same ring whatever the order gossip arrives in.
//!
//! Differences from Weave Net's `entries.merge`, which keeps "ours" on some ties and so depends
//! on who merges: equal-version conflicts are settled by the total order above everywhere; an
//! entry of ours that comes back with a higher version and still names us is simply taken (the
//! owner does not change). Weave's three refusals about our ranges (a newer entry giving away a
//! token we own, a new token inside our range, an equal-version conflict on our entry) are one
//! rule here, checked on the result: if the join takes away any address we own, and we have
//! allocations in that part, the merge is refused and nothing changes. Without allocations
//! there, it is accepted (Weave's repair of 2.6.0) and reported in [`MergeOutcome::lost`].

use super::range_set::RangeSet;
use super::ring::{Entry, Ring, RingState};
use super::{AddressRange, RingError};

/// What a successful merge changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Our ring changed: worth gossiping and persisting.
    pub changed: bool,
    /// The received ring lacks something ours has: worth sending ours back to its sender.
    pub incoming_outdated: bool,
    /// Ranges now ours that were not (granted or transferred to us): add them to the space.
    pub gained: Vec<AddressRange>,
    /// Ranges no longer ours, which had no allocations: release them from the space.
    pub lost: Vec<AddressRange>,
}

impl RingState {
    /// Checks the invariants every ring keeps; a received ring that fails them is refused.
    /// Free counts above their part's size are tolerated: they are advisory and clamped on use.
    pub(crate) fn validate(&self) -> Result<(), RingError> {
        let malformed = |why| Err(RingError::Malformed { why });
        if !self.entries.windows(2).all(|w| w[0].token < w[1].token) {
            return malformed("tokens are not strictly increasing");
        }
        if !self.seeds.windows(2).all(|w| w[0] < w[1]) {
            return malformed("seeds are not sorted and unique");
        }
        if self.seeds.is_empty() != self.entries.is_empty() {
            return malformed("a ring has seeds exactly when it has entries");
        }
        match (self.entries.first(), self.entries.last()) {
            (Some(first), _) if first.token != self.range.start() => {
                malformed("the first token is not the start of the range")
            }
            (_, Some(last)) if !self.range.contains(last.token) => {
                malformed("a token lies outside the range")
            }
            _ => Ok(()),
        }?;
        self.removals.validate().or_else(malformed)
    }

    /// Gives every entry of a removed peer to whoever holds its ranges now (its heir, or the
    /// heir's heir): how a token its heir never saw reaches the heir.
    fn give_removed_peers_entries_to_heirs(&mut self) {
        if self.removals.is_empty() {
            return;
        }
        for entry in &mut self.entries {
            if let Some(holder) = self.removals.holder(entry.peer) {
                entry.peer = holder;
            }
        }
    }
}

/// Both rings' tokens, each with the entry of highest precedence.
fn join(ours: &[Entry], theirs: &[Entry]) -> Vec<Entry> {
    let mut joined = Vec::with_capacity(ours.len().max(theirs.len()));
    let (mut i, mut j) = (0, 0);
    while i < ours.len() && j < theirs.len() {
        let (mine, other) = (ours[i], theirs[j]);
        if mine.token < other.token {
            joined.push(mine);
            i += 1;
        } else if other.token < mine.token {
            joined.push(other);
            j += 1;
        } else {
            joined.push(if other.precedence() > mine.precedence() {
                other
            } else {
                mine
            });
            i += 1;
            j += 1;
        }
    }
    joined.extend_from_slice(&ours[i..]);
    joined.extend_from_slice(&theirs[j..]);
    joined
}

impl Ring {
    /// Merges a received ring into ours.
    ///
    /// Refused (ours unchanged) when the received ring is malformed, covers another range, was
    /// seeded by other peers (both rings established: a split brain, and gossip must drop the
    /// link), or would take from us a part where `has_allocations` says we have allocated
    /// addresses ([`RingError::ClaimsOwnedRange`]). An empty ring adopts the received seeds.
    pub fn merge(
        &mut self,
        incoming: &RingState,
        has_allocations: impl FnMut(AddressRange) -> bool,
    ) -> Result<MergeOutcome, RingError> {
        incoming.validate()?;
        if incoming.range != self.state.range {
            return Err(RingError::DifferentRange {
                ours: self.state.range,
                theirs: incoming.range,
            });
        }
        let ours = &self.state;
        if !ours.seeds.is_empty() && !incoming.seeds.is_empty() && ours.seeds != incoming.seeds {
            return Err(RingError::DifferentSeeds {
                ours: ours.seeds.clone(),
                theirs: incoming.seeds.clone(),
            });
        }
        let mut joined = RingState {
            range: ours.range,
            seeds: if ours.seeds.is_empty() {
                incoming.seeds.clone()
            } else {
                ours.seeds.clone()
            },
            entries: join(&ours.entries, &incoming.entries),
            removals: ours.removals.join(&incoming.removals),
        };
        // Removed and yet merging: we are back under our name (see `ring/removals.rs`).
        joined.removals.record_return(self.local);
        joined.give_removed_peers_entries_to_heirs();

        let owned_before = ours.owned_set(self.local);
        let owned_after = joined.owned_set(self.local);
        let lost = owned_before.difference(&owned_after);
        check_no_allocations_lost(&joined, &lost, has_allocations)?;

        let outcome = MergeOutcome {
            changed: joined != *ours,
            incoming_outdated: joined != *incoming,
            gained: owned_after.difference(&owned_before),
            lost,
        };
        self.state = joined;
        Ok(outcome)
    }
}

/// Refuses the merge if any part of `lost` (ranges we owned before) that is now someone else's
/// holds allocations. Checked per new owner, so the error names the peer claiming it.
fn check_no_allocations_lost(
    joined: &RingState,
    lost: &[AddressRange],
    mut has_allocations: impl FnMut(AddressRange) -> bool,
) -> Result<(), RingError> {
    if lost.is_empty() {
        return Ok(());
    }
    let lost = RangeSet::from_ranges(lost.iter().copied());
    for (index, entry) in joined.entries.iter().enumerate() {
        for range in lost.within(joined.part(index)) {
            if has_allocations(range) {
                return Err(RingError::ClaimsOwnedRange {
                    range,
                    claimant: entry.peer,
                });
            }
        }
    }
    Ok(())
}
