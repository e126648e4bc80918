//! The ring: which peer owns which part of the allocation range, as a CRDT that every peer
//! holds a copy of and gossips (Weave Net's `ipam/ring`). This module owns the ring's shape,
//! the edits a peer makes to its own parts (split at start, grant, report free, transfer) and the
//! queries (owner of an address, ranges of a peer, donors, status shares). The merge of gossiped
//! rings is in `ring_merge.rs`.
//!
//! Shape: entries sorted by token; an entry owns the addresses from its token up to the next
//! entry's token, and the last entry owns up to the end of the range. A ring that is established
//! (not empty) always has its first token at the range's start, so there is no wrap-around: every
//! address of the range has exactly one owner, by construction. Tokens are never removed, only
//! added (by grants) and rewritten (owner, version, free count).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::range_set::RangeSet;
use super::{Address, AddressRange, Cidr, RingError};
use crate::topology::PeerName;

mod removals;

pub use removals::{Removal, Removals};

/// How far `transfer` raises an entry's version, so that the new owner's entry beats any edit
/// the old owner made that has not reached us yet (each edit adds 1). Weave Net's value.
pub const TRANSFER_VERSION_BUMP: u32 = 100;

/// How far a grant raises the granted entries' version: far beyond [`TRANSFER_VERSION_BUMP`],
/// so that the last grant of a peer that died before anyone but the grantee heard of it beats
/// the heir's transfer made on a view without it (the grantee keeps what it was given and may
/// have allocated in; with the transfer winning, every merge the grantee saw was refused for
/// ever). The heir's own free reports on the entry it inherited raise it by one each (one per
/// change of its free count): at one a minute the grant still wins for two months. Versions
/// saturate, so this leaves 42,949 grants of one token before they stop rising.
pub const GRANT_VERSION_BUMP: u32 = 100_000;

/// One part of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// First address of the part.
    pub token: Address,
    pub peer: PeerName,
    /// Raised by every edit of the entry; the higher version wins a merge. Saturates at
    /// `u32::MAX` rather than wrapping (a wrapped version would lose to every old copy).
    pub version: u32,
    /// Free addresses in the part as last reported by its owner. Advisory (it guides the choice
    /// of donors) and possibly stale: readers clamp it to the part's size.
    pub free: u32,
}

impl Entry {
    /// The order that decides which of two entries for one token survives a merge: the higher
    /// version, then (two different edits under one version, which only conflicting `rmpeer`s
    /// produce) more free addresses, then the higher peer name. A total order, so the merge is
    /// the same whatever order rings arrive in.
    pub(crate) fn precedence(&self) -> (u32, u32, PeerName) {
        (self.version, self.free, self.peer)
    }
}

/// The ring as it is gossiped and persisted: the same on every peer once gossip settles.
/// Received copies are checked by [`Ring::merge`] and [`Ring::restore`] before use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    pub(crate) range: Cidr,
    /// The peers the range was first divided among, sorted; empty until then. Rings with
    /// different seeds were created separately and must never merge.
    pub(crate) seeds: Vec<PeerName>,
    pub(crate) entries: Vec<Entry>,
    /// Peers removed by `rmpeer`, and who took over from them. Left out while empty, so that
    /// rings without removals encode as they did before it existed, and such rings decode.
    #[serde(default, skip_serializing_if = "Removals::is_empty")]
    pub(crate) removals: Removals,
}

impl RingState {
    pub fn range(&self) -> Cidr {
        self.range
    }

    pub fn seeds(&self) -> &[PeerName] {
        &self.seeds
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Exclusive end of the part owned by entry `index`.
    pub(crate) fn part_end(&self, index: usize) -> Address {
        self.entries
            .get(index + 1)
            .map_or(self.range.end(), |next| next.token)
    }

    /// The addresses owned by entry `index`.
    pub(crate) fn part(&self, index: usize) -> AddressRange {
        AddressRange {
            start: self.entries[index].token,
            end: self.part_end(index),
        }
    }

    /// Index of the entry owning `address`; `None` outside the range or on an empty ring.
    pub(crate) fn index_of_owner(&self, address: Address) -> Option<usize> {
        if !self.range.contains(address) {
            return None;
        }
        self.entries
            .partition_point(|entry| entry.token <= address)
            .checked_sub(1)
    }

    /// Every address `peer` owns, as maximal runs.
    pub(crate) fn owned_set(&self, peer: PeerName) -> RangeSet {
        RangeSet::from_ranges(
            (0..self.entries.len())
                .filter(|&index| self.entries[index].peer == peer)
                .map(|index| self.part(index)),
        )
    }
}

/// One peer's share of the range, for `weave status ipam`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerShare {
    pub peer: PeerName,
    pub addresses: u32,
    /// Share of the whole range, 0 to 100.
    pub percent: f64,
}

/// This peer's copy of the ring. Only the local peer's entries are edited here (by grants and
/// free reports); other peers' entries change only by merging their gossip, or by `transfer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    pub(crate) local: PeerName,
    pub(crate) state: RingState,
}

impl Ring {
    /// An empty (not yet established) ring over `range`, held by `local`. The seeds are set by
    /// [`Ring::claim_for_peers`] or adopted from the first established ring merged in.
    pub fn new(range: Cidr, local: PeerName) -> Self {
        Self {
            local,
            state: RingState {
                range,
                seeds: Vec::new(),
                entries: Vec::new(),
                removals: Removals::default(),
            },
        }
    }

    /// A ring from persisted state, checked as a gossiped one would be.
    pub fn restore(state: RingState, local: PeerName) -> Result<Self, RingError> {
        state.validate()?;
        Ok(Self { local, state })
    }

    pub fn local(&self) -> PeerName {
        self.local
    }

    pub fn range(&self) -> Cidr {
        self.state.range
    }

    pub fn seeds(&self) -> &[PeerName] {
        &self.state.seeds
    }

    pub fn entries(&self) -> &[Entry] {
        &self.state.entries
    }

    pub fn removals(&self) -> &Removals {
        &self.state.removals
    }

    /// What to gossip or persist.
    pub fn state(&self) -> &RingState {
        &self.state
    }

    /// Not yet established: no peer owns anything.
    pub fn is_empty(&self) -> bool {
        self.state.entries.is_empty()
    }

    /// Number of addresses in the whole range.
    pub fn total_size(&self) -> u32 {
        self.state.range.size()
    }

    /// Divides the range among `peers` (sorted and deduplicated first) in equal contiguous
    /// shares, in peer-name order; shares differ by one address at most. Deterministic, so every
    /// peer that agreed on the same set (by consensus or by `seed=`) builds the same ring.
    /// The peers become the seeds. With more peers than addresses, some peers get nothing.
    pub fn claim_for_peers(&mut self, peers: &[PeerName]) -> Result<(), RingError> {
        if !self.is_empty() {
            return Err(RingError::AlreadyClaimed);
        }
        let mut seeds = peers.to_vec();
        seeds.sort_unstable();
        seeds.dedup();
        let count = u64::try_from(seeds.len()).unwrap_or(u64::MAX);
        if count == 0 {
            return Err(RingError::NoPeers);
        }
        let start = u64::from(self.state.range.start().as_u32());
        let size = u64::from(self.total_size());
        let mut entries = Vec::new();
        for (index, &peer) in (0u64..).zip(&seeds) {
            let share_start = start + index * size / count;
            let share_end = start + (index + 1) * size / count;
            if share_start == share_end {
                continue;
            }
            // Both fit: they lie within the range, whose end is an address.
            let (Ok(token), Ok(free)) = (
                u32::try_from(share_start),
                u32::try_from(share_end - share_start),
            ) else {
                continue;
            };
            entries.push(Entry {
                token: Address::new(token),
                peer,
                version: 0,
                free,
            });
        }
        self.state.entries = entries;
        self.state.seeds = seeds;
        Ok(())
    }

    /// Gives `range`, which must lie in the ring and be owned by us entirely, to `to`: inserts
    /// tokens at the range's ends where there are none and rewrites the entries inside. The
    /// granted entries' free counts are their sizes, as one only grants free space. The entry
    /// we keep before the range gets a version bump too: its part shrank, and its free count
    /// with it, and a stale larger count must not win a merge. The granted entries' versions rise
    /// by [`GRANT_VERSION_BUMP`]. Granting to ourselves changes
    /// nothing.
    pub fn grant_range(&mut self, range: AddressRange, to: PeerName) -> Result<(), RingError> {
        let first = self.check_grant(range)?;
        if to == self.local {
            return Ok(());
        }
        // We grant only to a peer that asked: if it was removed, it is back, and what it is
        // given must stay its own.
        self.state.removals.record_return(to);
        let entries = &mut self.state.entries;
        // Split off what follows the range, so that it stays ours.
        if range.end < self.state.range.end()
            && entries
                .binary_search_by_key(&range.end, |e| e.token)
                .is_err()
        {
            // At least the entry holding `range.start` is before `range.end`.
            let before_end = entries
                .partition_point(|e| e.token < range.end)
                .saturating_sub(1);
            let tail_end = entries
                .get(before_end + 1)
                .map_or(self.state.range.end(), |next| next.token);
            let tail_size = tail_end.distance_from(range.end);
            let free = entries[before_end].free.min(tail_size);
            entries.insert(
                before_end + 1,
                Entry {
                    token: range.end,
                    peer: self.local,
                    version: 0,
                    free,
                },
            );
        }
        // Split off what precedes the range, likewise.
        let mut index = first;
        if entries[first].token < range.start {
            let kept = &mut entries[first];
            kept.version = kept.version.saturating_add(1);
            kept.free = kept.free.min(range.start.distance_from(kept.token));
            entries.insert(
                first + 1,
                Entry {
                    token: range.start,
                    peer: self.local,
                    version: 0,
                    free: 0,
                },
            );
            index += 1;
        }
        while index < self.state.entries.len() && self.state.entries[index].token < range.end {
            let size = self.state.part(index).size();
            let entry = &mut self.state.entries[index];
            entry.peer = to;
            entry.version = entry.version.saturating_add(GRANT_VERSION_BUMP);
            entry.free = size;
            index += 1;
        }
        Ok(())
    }

    /// Checks a grant's preconditions; returns the index of the entry holding `range.start`.
    fn check_grant(&self, range: AddressRange) -> Result<usize, RingError> {
        if self.is_empty() {
            return Err(RingError::NotEstablished);
        }
        if range.is_empty() {
            return Err(RingError::EmptyRange);
        }
        let universe = self.state.range;
        if !universe.range().contains_range(&range) {
            return Err(RingError::OutOfRange { range, universe });
        }
        let first = self
            .state
            .index_of_owner(range.start)
            .ok_or(RingError::OutOfRange { range, universe })?;
        let inside = self.state.entries[first..]
            .iter()
            .take_while(|entry| entry.token < range.end);
        for entry in inside {
            if entry.peer != self.local {
                return Err(RingError::NotOurs {
                    range,
                    address: entry.token.max(range.start),
                    owner: entry.peer,
                });
            }
        }
        Ok(first)
    }

    /// Makes every entry of `from` an entry of `to`, with the version raised by
    /// [`TRANSFER_VERSION_BUMP`] so the change wins over the old owner's edits still in flight.
    /// For `weave rmpeer` ([`Ring::remove_peer`]) and `weave reset` (`from` is us). Must be
    /// done on one peer only. Returns the transferred ranges (what `to` gained), as maximal runs.
    pub fn transfer(&mut self, from: PeerName, to: PeerName) -> Vec<AddressRange> {
        if from == to {
            return Vec::new();
        }
        let moved = self.state.owned_set(from);
        for entry in &mut self.state.entries {
            if entry.peer == from {
                entry.peer = to;
                entry.version = entry.version.saturating_add(TRANSFER_VERSION_BUMP);
            }
        }
        moved.ranges().collect()
    }

    /// `weave rmpeer` of `dead`, taken over by us: [`Ring::transfer`], and the removal recorded
    /// so that tokens of `dead` we have not seen yet go to us when they arrive.
    pub fn remove_peer(&mut self, dead: PeerName) -> Vec<AddressRange> {
        if dead == self.local {
            return Vec::new();
        }
        self.state.removals.record_removal(dead, self.local);
        self.transfer(dead, self.local)
    }

    /// Updates the free counts of our entries from `free_in` (the space's count of free
    /// addresses in a part), bumping the version of each entry that changed. Returns whether
    /// anything changed (and so is worth gossiping).
    pub fn report_free(&mut self, mut free_in: impl FnMut(AddressRange) -> u32) -> bool {
        let mut changed = false;
        for index in 0..self.state.entries.len() {
            if self.state.entries[index].peer != self.local {
                continue;
            }
            let part = self.state.part(index);
            let free = free_in(part).min(part.size());
            let entry = &mut self.state.entries[index];
            if entry.free != free {
                entry.free = free;
                entry.version = entry.version.saturating_add(1);
                changed = true;
            }
        }
        changed
    }

    /// The ranges `peer` owns, as maximal runs in address order.
    pub fn owned_ranges(&self, peer: PeerName) -> Vec<AddressRange> {
        self.state.owned_set(peer).ranges().collect()
    }

    /// Who owns `address`; `None` outside the range or before the ring is established.
    pub fn owner(&self, address: Address) -> Option<PeerName> {
        self.state
            .index_of_owner(address)
            .map(|index| self.state.entries[index].peer)
    }

    /// Every peer owning part of the ring, in name order.
    pub fn peers(&self) -> Vec<PeerName> {
        let mut peers: Vec<PeerName> = self.state.entries.iter().map(|e| e.peer).collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    /// Other peers reporting free addresses anywhere in the range, most free first (then by
    /// name): the candidates to ask for space.
    pub fn peers_with_free_space(&self) -> Vec<(PeerName, u32)> {
        self.peers_with_free_space_in(self.state.range.range())
    }

    /// Other peers reporting free addresses in parts overlapping `within`, most free first (then
    /// by name). A part's count is capped at its overlap with `within`; counts are as reported,
    /// so a donor may still turn out to have nothing.
    pub fn peers_with_free_space_in(&self, within: AddressRange) -> Vec<(PeerName, u32)> {
        let mut free_by_peer: BTreeMap<PeerName, u32> = BTreeMap::new();
        for (index, entry) in self.state.entries.iter().enumerate() {
            if entry.peer == self.local || entry.free == 0 {
                continue;
            }
            let Some(overlap) = self.state.part(index).intersection(&within) else {
                continue;
            };
            let total = free_by_peer.entry(entry.peer).or_default();
            // Capped parts are disjoint, so the sum stays within the range's size.
            *total = total.saturating_add(entry.free.min(overlap.size()));
        }
        let mut donors: Vec<(PeerName, u32)> = free_by_peer.into_iter().collect();
        donors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        donors
    }

    /// A peer to hand our ranges to on `weave reset`: the first other owner, in ring order,
    /// that `is_live` accepts.
    pub fn pick_peer_for_transfer(
        &self,
        mut is_live: impl FnMut(PeerName) -> bool,
    ) -> Option<PeerName> {
        self.state
            .entries
            .iter()
            .map(|entry| entry.peer)
            .find(|&peer| peer != self.local && is_live(peer))
    }

    /// Addresses owned per peer, ours first and then by name, for `weave status ipam`.
    pub fn shares(&self) -> Vec<PeerShare> {
        let mut by_peer: BTreeMap<PeerName, u32> = BTreeMap::new();
        for index in 0..self.state.entries.len() {
            *by_peer.entry(self.state.entries[index].peer).or_default() +=
                self.state.part(index).size();
        }
        let total = f64::from(self.total_size());
        let mut shares: Vec<PeerShare> = by_peer
            .into_iter()
            .map(|(peer, addresses)| PeerShare {
                peer,
                addresses,
                percent: f64::from(addresses) * 100.0 / total,
            })
            .collect();
        // Stable sort: ours moves to the front, the rest keep name order.
        shares.sort_by_key(|share| share.peer != self.local);
        shares
    }
}

#[cfg(test)]
mod tests;
