//! The record of which peer runs on which node, and the reclaim decision made from it.
//!
//! Why a ConfigMap (`<namespace>/weave-net`, annotation [`PEERS_ANNOTATION`]) and not an
//! annotation on each Node: a Node annotation is deleted with the Node, so a router that was down
//! when a node went away could never learn whose ranges to reclaim (Weave Net's leak,
//! weave#2797). The ConfigMap outlives the nodes, and one object under optimistic concurrency
//! (every write carries the `resourceVersion` it read) is also the lock: a claim is written
//! before a reclaim, and of two survivors writing it at once one gets a conflict, re-reads, and
//! sees the other's claim.
//!
//! A claim outlives its claimer's crash: the claimer finishes it when it comes back, and anyone
//! else may take it over once the claimer's node is gone, or after [`CLAIM_TTL_SECS`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The ConfigMap holding the record (Weave Net's name for it).
pub const CONFIGMAP_NAME: &str = "weave-net";
/// Our own annotation: Weave Net's `kube-peers.weave.works/peers` has another format, and a
/// cluster moving from Weave to Weft must not have either misread the other's.
pub const PEERS_ANNOTATION: &str = "weft.works/peers";
/// A claim older than this may be taken over even though its claimer's node exists: the claimer
/// is stuck. Taking over the IPAM ranges takes milliseconds once the dead peer is unreachable,
/// so two minutes is far beyond any honest claim.
pub const CLAIM_TTL_SECS: u64 = 120;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerList {
    /// In registration order: for one node, the last entry is its current peer.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// Reclaims under way, by the dead peer's name.
    #[serde(default)]
    pub claims: BTreeMap<String, Claim>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerEntry {
    pub peer_name: String,
    pub node_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub by_peer: String,
    pub by_node: String,
    /// Seconds since the Unix epoch when the claim was written.
    pub since: u64,
}

/// Why a recorded peer is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orphaned {
    NodeDeleted,
    /// The node's router came back with another peer name (its database was lost).
    NodeHasNewPeer,
}

impl Orphaned {
    pub fn as_str(self) -> &'static str {
        match self {
            Orphaned::NodeDeleted => "node deleted",
            Orphaned::NodeHasNewPeer => "node has a new peer",
        }
    }
}

/// The next thing this router should do to the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Record us as our node's peer.
    Register,
    /// Write a claim on a dead peer (then take it over).
    Claim {
        entry: PeerEntry,
        why: Orphaned,
    },
    /// Our claim stands: take the peer's ranges over, then forget it.
    TakeOver {
        entry: PeerEntry,
        why: Orphaned,
    },
    Idle,
}

/// Who we are, as the record names us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    pub peer_name: String,
    pub node_name: String,
}

impl PeerList {
    /// Parses the annotation; an absent one is an empty list.
    pub fn parse(annotation: Option<&str>) -> Result<Self, serde_json::Error> {
        match annotation {
            None => Ok(Self::default()),
            Some(text) if text.trim().is_empty() => Ok(Self::default()),
            Some(text) => serde_json::from_str(text),
        }
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("a peer list always serialises")
    }

    /// The current peer of `node`: its last entry.
    fn current_peer_of(&self, node: &str) -> Option<&str> {
        self.peers
            .iter()
            .rev()
            .find(|entry| entry.node_name == node)
            .map(|entry| entry.peer_name.as_str())
    }

    /// Why `entry` is dead, if it is. Only a complete Node list may be passed.
    fn orphaned(&self, entry: &PeerEntry, node_exists: &dyn Fn(&str) -> bool) -> Option<Orphaned> {
        if !node_exists(&entry.node_name) {
            Some(Orphaned::NodeDeleted)
        } else if self.current_peer_of(&entry.node_name) != Some(entry.peer_name.as_str()) {
            Some(Orphaned::NodeHasNewPeer)
        } else {
            None
        }
    }

    /// Whether `claim` still binds everyone but its claimer.
    fn claim_stands(&self, claim: &Claim, node_exists: &dyn Fn(&str) -> bool, now: u64) -> bool {
        node_exists(&claim.by_node)
            && self.current_peer_of(&claim.by_node) == Some(claim.by_peer.as_str())
            && now.saturating_sub(claim.since) < CLAIM_TTL_SECS
    }

    /// What to do next, given the complete set of existing nodes. A router whose own node does
    /// not exist takes no part: it could be a misconfigured `--node-name`, and its entry would
    /// at once look dead to everyone else.
    pub fn next_step(&self, me: &Me, node_exists: &dyn Fn(&str) -> bool, now: u64) -> Step {
        if !node_exists(&me.node_name) {
            return Step::Idle;
        }
        if self.current_peer_of(&me.node_name) != Some(me.peer_name.as_str()) {
            return Step::Register;
        }
        let mut claimable = None;
        for entry in &self.peers {
            if entry.peer_name == me.peer_name {
                continue;
            }
            let Some(why) = self.orphaned(entry, node_exists) else {
                continue;
            };
            match self.claims.get(&entry.peer_name) {
                Some(claim) if claim.by_peer == me.peer_name => {
                    return Step::TakeOver {
                        entry: entry.clone(),
                        why,
                    };
                }
                Some(claim) if self.claim_stands(claim, node_exists, now) => {}
                _ => {
                    claimable.get_or_insert(Step::Claim {
                        entry: entry.clone(),
                        why,
                    });
                }
            }
        }
        claimable.unwrap_or(Step::Idle)
    }

    /// Makes us our node's current peer (an older entry of ours moves to the end).
    pub fn register(&mut self, me: &Me) {
        self.peers.retain(|entry| entry.peer_name != me.peer_name);
        self.peers.push(PeerEntry {
            peer_name: me.peer_name.clone(),
            node_name: me.node_name.clone(),
        });
    }

    pub fn claim(&mut self, peer: &str, me: &Me, now: u64) {
        self.claims.insert(
            peer.to_string(),
            Claim {
                by_peer: me.peer_name.clone(),
                by_node: me.node_name.clone(),
                since: now,
            },
        );
    }

    /// Removes a reclaimed peer and its claim. Returns whether anything changed.
    pub fn forget(&mut self, peer: &str) -> bool {
        let before = self.peers.len();
        self.peers.retain(|entry| entry.peer_name != peer);
        let claimed = self.claims.remove(peer).is_some();
        claimed || self.peers.len() != before
    }

    /// Whether we still hold the claim on `peer` (a conflict on the final write re-reads the
    /// record; someone who took the claim over since then finishes it instead).
    pub fn claimed_by(&self, peer: &str, me: &Me) -> bool {
        self.claims
            .get(peer)
            .is_some_and(|claim| claim.by_peer == me.peer_name)
    }
}

#[cfg(test)]
mod tests;
