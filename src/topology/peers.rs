//! The topology table: every known peer's record, merged from gossip, plus our own record which
//! only this process authors. This module owns the edits of our own record, the merge rules that
//! decide which of two records about a peer wins (and which records are too far ahead to be
//! believed), and the garbage collection of peers we can no longer reach.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{ConnectionSummary, PeerName, PeerRecord, check_nickname};

/// How far a record's version may be ahead of the wall clock, in milliseconds. Versions count in
/// milliseconds: every gossip incarnation starts its version at the wall clock (so that it
/// outranks its predecessors) and bumps it by one per change. The lead covers the clock skew
/// between nodes and the bumps of a busy peer with room to spare: 2^32 ms is 49 days. A record
/// further ahead is forged or corrupt; taking it would let whoever sent it freeze a peer's
/// version at the top of the space, where its author could never outrank it again.
pub const MAX_VERSION_LEAD: u64 = 1 << 32;

/// All known peers' records, ours included. Records are keyed by peer name.
#[derive(Clone, Debug)]
pub struct Topology {
    local: PeerName,
    peers: BTreeMap<PeerName, PeerRecord>,
    /// The wall clock in milliseconds when this table was made, as our first version gives it.
    clock_anchor: u64,
    /// Milliseconds since then, as the owner last told us (time is injected, never read here).
    elapsed_ms: u64,
    /// Counts the changes to the records: equal counts mean equal records, which lets the gossip
    /// tell whether its published view is current without comparing every record (at 250 peers
    /// that comparison was an eighth of the routers' CPU).
    changes: u64,
}

/// What a merge changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The incoming records that replaced or added to what we had: exactly what is worth
    /// re-gossiping to others (the "improved delta").
    pub improved: Vec<PeerRecord>,
    /// True when our own record was bumped because the update carried a record about us from an
    /// older incarnation (same name, other uid) with a version at or above ours.
    pub local_bumped: bool,
    /// Records not believed: their version is beyond [`Topology::version_ceiling`], or their
    /// nickname is not one a peer may have (see [`check_nickname`]).
    pub rejected: usize,
    /// Records we hold that beat an incoming record about the same peer from another incarnation
    /// (another uid). The sender holds the losing incarnation and must be told ours: when ours is
    /// an old incarnation's at a higher version, its peer's new incarnation only outranks it once
    /// this record reaches it, and until then every peer holding it keeps rejecting the new
    /// incarnation's records (and drops the peers only those records connect).
    pub contradicted: Vec<PeerRecord>,
}

impl Topology {
    /// A topology holding only our own record, whose version is taken for the wall clock in
    /// milliseconds (the router starts every gossip incarnation's version there).
    pub fn new(local: PeerRecord) -> Self {
        let name = local.name;
        Self {
            local: name,
            clock_anchor: local.version,
            elapsed_ms: 0,
            peers: BTreeMap::from([(name, local)]),
            changes: 0,
        }
    }

    /// Moves the clock on to `elapsed` since this table was made (never back).
    pub fn advance_clock(&mut self, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms = self.elapsed_ms.max(ms);
    }

    /// The highest version believed now. It rises with the clock, so a peer that had to jump
    /// just past a forged record at the ceiling is believed again a millisecond later.
    pub fn version_ceiling(&self) -> u64 {
        self.clock_anchor
            .saturating_add(self.elapsed_ms)
            .saturating_add(MAX_VERSION_LEAD)
    }

    pub fn local_name(&self) -> PeerName {
        self.local
    }

    /// How many times the records have changed since this table was made: two reads that
    /// return the same count saw the same records.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn local(&self) -> &PeerRecord {
        &self.peers[&self.local]
    }

    pub fn peer(&self, name: PeerName) -> Option<&PeerRecord> {
        self.peers.get(&name)
    }

    /// All records, ours included, in name order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerRecord> {
        self.peers.values()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every record, ours included: what is sent down a new connection and for anti-entropy.
    pub fn full_state(&self) -> Vec<PeerRecord> {
        self.peers.values().cloned().collect()
    }

    /// Adds or replaces our connection to `remote` and bumps our version.
    ///
    /// An identical summary changes nothing and is not bumped: a bump would only make every peer
    /// re-gossip a record with the same content.
    pub fn set_local_connection(&mut self, remote: PeerName, summary: ConnectionSummary) {
        let local = self.local_mut();
        if local.connections.get(&remote) == Some(&summary) {
            return;
        }
        local.connections.insert(remote, summary);
        local.version = next_version(local.version);
        self.changes += 1;
    }

    /// Removes our connection to `remote`; bumps our version and returns true if there was one.
    pub fn remove_local_connection(&mut self, remote: PeerName) -> bool {
        let local = self.local_mut();
        if local.connections.remove(&remote).is_none() {
            return false;
        }
        local.version = next_version(local.version);
        self.changes += 1;
        true
    }

    /// Merges records received from gossip. Rules (commutative and idempotent among the records
    /// believed):
    /// - a record whose version is beyond the [`Self::version_ceiling`], or whose nickname is
    ///   invalid, is not believed: dropped and counted as rejected;
    /// - a record about another peer is taken when we have none for that name, or when its
    ///   version is higher, or when the version is equal and its uid is higher;
    /// - a record about ourselves is never taken; if it is not our own record and its version is
    ///   at or above ours (an older incarnation, a name collision, or a forgery, whatever its
    ///   uid), our version jumps to theirs + 1 so our record wins everywhere;
    /// - records that change nothing are not reported as improved; those losing to a record we
    ///   hold from another incarnation report ours as contradicted.
    pub fn merge(&mut self, records: Vec<PeerRecord>) -> MergeOutcome {
        let mut outcome = MergeOutcome::default();
        let ceiling = self.version_ceiling();
        // Pick one winner per peer first, so that an update carrying the same record twice (or
        // two records for one peer) reports each peer at most once, whatever the input order.
        let mut candidates: BTreeMap<PeerName, PeerRecord> = BTreeMap::new();
        for record in records {
            if record.version > ceiling || check_nickname(&record.nickname).is_err() {
                outcome.rejected += 1;
                continue;
            }
            if record.name == self.local {
                outcome.local_bumped |= self.outrank(&record);
                continue;
            }
            match candidates.entry(record.name) {
                Entry::Vacant(slot) => {
                    slot.insert(record);
                }
                Entry::Occupied(mut slot) => {
                    if supersedes(&record, slot.get()) {
                        slot.insert(record);
                    }
                }
            }
        }
        for (name, record) in candidates {
            match self.peers.get(&name) {
                Some(existing) if !supersedes(&record, existing) => {
                    if existing.uid != record.uid {
                        outcome.contradicted.push(existing.clone());
                    }
                }
                _ => {
                    self.peers.insert(name, record.clone());
                    self.changes += 1;
                    outcome.improved.push(record);
                }
            }
        }
        outcome
    }

    /// Removes every peer that cannot be reached from us by following connections listed in the
    /// records (any connection, established or not, in the direction the owner lists it).
    /// Returns the removed records.
    pub fn garbage_collect(&mut self) -> Vec<PeerRecord> {
        let reachable = self.reachable_from_local();
        // Usually every peer is still reachable: find the others before moving anything.
        let unreachable: Vec<PeerName> = self
            .peers
            .keys()
            .filter(|name| !reachable.contains(name))
            .copied()
            .collect();
        if !unreachable.is_empty() {
            self.changes += 1;
        }
        unreachable
            .into_iter()
            .filter_map(|name| self.peers.remove(&name))
            .collect()
    }

    /// Our own record, for editing.
    fn local_mut(&mut self) -> &mut PeerRecord {
        // `new` inserts our record, `merge` never replaces it and `garbage_collect` always finds
        // us reachable, so the record is always there.
        self.peers
            .get_mut(&self.local)
            .expect("the local peer's record is never removed")
    }

    /// Handles a gossiped record carrying our name. Anything but our own record at or above our
    /// version must be outranked, or it wins on every peer: an older incarnation of us, another
    /// process with our name, or a forgery (with our uid too: the uid proves nothing). Jumping
    /// past it makes our record win everywhere; the ceiling keeps the jump far from the top of
    /// the version space. Returns whether our version moved.
    fn outrank(&mut self, record: &PeerRecord) -> bool {
        let local = self.local_mut();
        if record == local || record.version < local.version {
            return false;
        }
        local.version = next_version(record.version);
        self.changes += 1;
        true
    }

    /// Names reachable from us following the connections each record lists, in the owner's
    /// direction. A name without a record is reachable but leads nowhere.
    fn reachable_from_local(&self) -> BTreeSet<PeerName> {
        let mut seen = BTreeSet::from([self.local]);
        let mut pending = vec![self.local];
        while let Some(name) = pending.pop() {
            let Some(record) = self.peers.get(&name) else {
                continue;
            };
            for &remote in record.connections.keys() {
                if seen.insert(remote) {
                    pending.push(remote);
                }
            }
        }
        seen
    }
}

/// Whether `incoming` should replace `existing`, two records about the same peer: the higher
/// version wins, and on equal versions the higher uid, so every peer picks the same winner
/// whatever order the records arrive in.
fn supersedes(incoming: &PeerRecord, existing: &PeerRecord) -> bool {
    (incoming.version, incoming.uid) > (existing.version, existing.uid)
}

/// The version after `version`. Saturates rather than wrapping: a wrapped version would lose to
/// every old copy of the record. Never reached in practice: believed versions stay below the
/// ceiling, which is the wall clock plus 49 days, some 2^41, far below 2^64.
fn next_version(version: u64) -> u64 {
    version.saturating_add(1)
}

#[cfg(test)]
mod tests;
