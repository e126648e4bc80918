//! Who took over whom: the record of `rmpeer`s that travels with the ring, so that a token of a
//! removed peer that its heir never saw still goes to the heir.
//!
//! Why it is needed: `rmpeer` rewrites the entries of the dead peer *that the remover's ring
//! holds*. A grant the dead peer made just before it died may have reached only the grantee
//! (which then went down too, its copy safe on disk): the split left a token naming the grantee
//! and one naming the dead peer, both unknown to the remover. When the grantee comes back, the
//! dead peer's token would take from the heir a part it has been allocating in, and every merge
//! would be refused for ever. With this record, the join gives that token to the heir.
//!
//! A removed peer may come back under its name (a Kubernetes Node deleted and registered again
//! on the same machine keeps its machine-id). Its new entries must stay its own, so a peer that
//! finds itself removed records its return; only it can. Each peer's record is two grow-only
//! counters (removals, returns) and the heir of the latest removal: the join takes the maximum
//! of each, so it stays commutative, associative and idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topology::PeerName;

/// The removals and returns of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Times the peer was removed by `rmpeer`.
    pub removed: u32,
    /// Times it came back under its name after a removal.
    pub returned: u32,
    /// Who took over its ranges at its latest removal.
    pub heir: PeerName,
}

impl Removal {
    fn is_removed(&self) -> bool {
        self.removed > self.returned
    }

    /// The join: the later removal (then, two heirs for one removal, which only conflicting
    /// `rmpeer`s produce, the higher name) and the later return.
    fn join(self, other: Self) -> Self {
        let (removed, heir) = (self.removed, self.heir).max((other.removed, other.heir));
        Self {
            removed,
            returned: self.returned.max(other.returned),
            heir,
        }
    }
}

/// Every peer ever removed from the ring, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Removals(BTreeMap<PeerName, Removal>);

/// Records joined, as they would be after gossip carried each of them.
impl FromIterator<(PeerName, Removal)> for Removals {
    fn from_iter<I: IntoIterator<Item = (PeerName, Removal)>>(records: I) -> Self {
        let mut joined = Self::default();
        for (peer, record) in records {
            joined
                .0
                .entry(peer)
                .and_modify(|ours| *ours = ours.join(record))
                .or_insert(record);
        }
        joined
    }
}

impl Removals {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&PeerName, &Removal)> {
        self.0.iter()
    }

    pub fn is_removed(&self, peer: PeerName) -> bool {
        self.0.get(&peer).is_some_and(Removal::is_removed)
    }

    /// Records that `heir` took over the ranges of `peer`. Removing a peer already removed
    /// keeps the first heir.
    pub(crate) fn record_removal(&mut self, peer: PeerName, heir: PeerName) {
        let record = self.0.entry(peer).or_insert(Removal {
            removed: 0,
            returned: 0,
            heir,
        });
        if !record.is_removed() {
            record.removed = record.returned.saturating_add(1);
            record.heir = heir;
        }
    }

    /// Records that `peer`, if removed, is back.
    pub(crate) fn record_return(&mut self, peer: PeerName) {
        if let Some(record) = self.0.get_mut(&peer) {
            record.returned = record.returned.max(record.removed);
        }
    }

    /// Both records, each peer's joined.
    pub(crate) fn join(&self, other: &Self) -> Self {
        self.iter()
            .chain(other.iter())
            .map(|(&peer, &record)| (peer, record))
            .collect()
    }

    /// Who holds the ranges of `peer` now: itself unless removed, else its heir's holder. `None`
    /// for a cycle of removed peers (each the heir of the next), which only `rmpeer`s of live
    /// peers can make: their entries stay as they are.
    pub(crate) fn holder(&self, peer: PeerName) -> Option<PeerName> {
        let mut holder = peer;
        // A chain longer than the map would have to repeat a peer.
        for _ in 0..=self.0.len() {
            match self.0.get(&holder) {
                Some(record) if record.is_removed() => holder = record.heir,
                _ => return Some(holder),
            }
        }
        None
    }

    /// A removal naming the removed peer as its own heir cannot come from `rmpeer`.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.0.iter().any(|(peer, record)| record.heir == *peer) {
            return Err("a peer is recorded as its own heir");
        }
        Ok(())
    }
}
