//! The topology table: every known peer's record, merged from gossip, plus our own record which
//! only this process authors. (Placeholder API: to be implemented.)

use std::collections::BTreeMap;

use super::{ConnectionSummary, PeerName, PeerRecord};

/// All known peers' records, ours included. Records are keyed by peer name.
#[derive(Clone, Debug)]
pub struct Topology {
    local: PeerName,
    peers: BTreeMap<PeerName, PeerRecord>,
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
}

impl Topology {
    /// A topology holding only our own record.
    pub fn new(local: PeerRecord) -> Self {
        let name = local.name;
        Self {
            local: name,
            peers: BTreeMap::from([(name, local)]),
        }
    }

    pub fn local_name(&self) -> PeerName {
        self.local
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
    pub fn set_local_connection(&mut self, remote: PeerName, summary: ConnectionSummary) {
        let _ = (remote, summary);
        unimplemented!()
    }

    /// Removes our connection to `remote`; bumps our version and returns true if there was one.
    pub fn remove_local_connection(&mut self, remote: PeerName) -> bool {
        let _ = remote;
        unimplemented!()
    }

    /// Merges records received from gossip. Rules (commutative and idempotent):
    /// - a record about another peer is taken when we have none for that name, or when its
    ///   version is higher, or when the version is equal and its uid is higher;
    /// - a record about ourselves is never taken; if its uid differs from ours and its version is
    ///   at or above ours, our version jumps to theirs + 1 so our record wins everywhere;
    /// - records that change nothing are not reported as improved.
    pub fn merge(&mut self, records: Vec<PeerRecord>) -> MergeOutcome {
        let _ = records;
        unimplemented!()
    }

    /// Removes every peer that cannot be reached from us by following connections listed in the
    /// records (any connection, established or not, in the direction the owner lists it).
    /// Returns the removed records.
    pub fn garbage_collect(&mut self) -> Vec<PeerRecord> {
        unimplemented!()
    }
}
