//! Deciding, once, which peers share the IP range when the ring is first created
//! (`--ipalloc-init=consensus[=N]`): Paxos carried by gossip, after Weave Net's `ipam/paxos`.
//!
//! Every elector keeps what it knows of every elector's claims: the proposal it promised and the
//! proposal it last accepted. Those claims travel as one [`PaxosState`] on the `ipam` gossip
//! channel. Merging is a join (per node the highest promise and the highest acceptance), so gossip
//! may be lost, duplicated, delayed or reordered; only the node an entry is about writes it.
//!
//! The Paxos phases become local rules, applied by [`Paxos::think`]:
//! - prepare/promise: promise the highest proposal heard of (proposing round 1 when none is);
//! - accept request: a proposer whose proposal a quorum promised picks the value (the value of the
//!   highest proposal those promisers accepted, else every peer name it has heard of) and accepts
//!   it itself, which is how the request reaches the others;
//! - accepted: a node that sees the proposal it promised accepted by someone accepts it too.
//!
//! A proposal accepted by a quorum is chosen ([`Paxos::consensus`]). Two deliberate departures
//! from Weave Net, both for safety: a value is chosen when a quorum accepted the *same proposal*
//! (Weave Net counted acceptances of one value origin across proposals, which Paxos does not make
//! safe), and a quorum counts distinct peer names, so two incarnations of a peer are one vote.
//! A restarted peer forgets its promises (the uid keeps its old claims apart); as in Weave Net,
//! that is tolerated because consensus runs only while a fresh mesh has no ring yet.
//!
//! Pure logic: no I/O, no clock. The IPAM actor decides when to think, gossip and retry.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::topology::{PeerName, PeerUid};

mod codec;

use codec::WireState;
pub use codec::{
    InvalidState, MAX_ENCODED_BYTES, MAX_NODES, MAX_VALUE_NAMES, PaxosCodecError, decode_state,
    encode_state,
};

/// Quorum for `consensus=N`: a strict majority of the N initial peers, `N/2 + 1` as in Weave Net.
/// For plain `consensus` (or N = 0, which Weave Net's Kubernetes launch script passes to the first
/// node) the caller passes N = number of active targets + 1, again as Weave Net does.
pub fn quorum_for(initial_peers: usize) -> usize {
    initial_peers / 2 + 1
}

/// One elector: the uid matters because Paxos acceptors must not forget promises, and a restarted
/// peer (same name, new uid) has forgotten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: PeerName,
    pub uid: PeerUid,
}

/// A proposal, ordered by round, then proposer name, then uid, so every node ranks proposals
/// alike. Round 0 is never used: every real proposal outranks the empty one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub round: u64,
    pub proposer: NodeId,
}

/// What one node claims: it will accept nothing below `promise`, and it last accepted `accepted`
/// (never above `promise`; its value is kept once per proposal in the state's value table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub promise: ProposalId,
    pub accepted: Option<ProposalId>,
}

impl Claims {
    /// Keeps the higher of each claim; true if anything rose.
    fn join(&mut self, other: &Claims) -> bool {
        let mut changed = false;
        if other.promise > self.promise {
            self.promise = other.promise;
            changed = true;
        }
        if other.accepted > self.accepted {
            self.accepted = other.accepted;
            changed = true;
        }
        changed
    }
}

/// Everything a node knows of the electors' claims: the gossip payload. Entries exist only for
/// electors that have promised something, so an elector that has not started gossips nothing.
///
/// Always valid (see [`InvalidState`]): built by [`Paxos`] or checked while decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireState", into = "WireState")]
pub struct PaxosState {
    nodes: BTreeMap<NodeId, Claims>,
    /// The value of every proposal some node still has as its latest acceptance: stored once per
    /// proposal rather than per acceptor, so a state grows with the number of nodes, not its square.
    values: BTreeMap<ProposalId, Vec<PeerName>>,
}

impl PaxosState {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of node entries (incarnations, not distinct names).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Every entry, in node order.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &Claims)> {
        self.nodes.iter()
    }

    /// The value of an accepted proposal (sorted, without duplicates).
    pub fn value(&self, proposal: &ProposalId) -> Option<&[PeerName]> {
        self.values.get(proposal).map(Vec::as_slice)
    }

    /// Joins `other` into this state; true if anything changed. Commutative, associative and
    /// idempotent, so gossip needs no ordering. Does not enforce the size limits (see
    /// [`Paxos::merge`], which does).
    pub fn merge(&mut self, other: &PaxosState) -> bool {
        self.join(other, None)
    }

    /// The join, leaving out `skip`'s entry: a node is the only authority on its own claims.
    fn join(&mut self, other: &PaxosState, skip: Option<NodeId>) -> bool {
        let mut changed = false;
        for (id, theirs) in &other.nodes {
            if Some(*id) == skip {
                continue;
            }
            match self.nodes.entry(*id) {
                Entry::Vacant(slot) => {
                    slot.insert(*theirs);
                    changed = true;
                }
                Entry::Occupied(mut slot) => changed |= slot.get_mut().join(theirs),
            }
        }
        // Values only for proposals still referenced after the join, so that a value inserted
        // and pruned again is not reported as a change.
        let referenced = self.accepted_proposals();
        for (proposal, value) in &other.values {
            if !referenced.contains(proposal) {
                continue;
            }
            match self.values.entry(*proposal) {
                Entry::Vacant(slot) => {
                    slot.insert(value.clone());
                    changed = true;
                }
                // Honest states never disagree on a proposal's value (only its proposer picks
                // it); the tie-break just keeps a hostile disagreement from breaking commutativity.
                Entry::Occupied(mut slot) => {
                    if value > slot.get() {
                        *slot.get_mut() = value.clone();
                        changed = true;
                    }
                }
            }
        }
        // Dropping superseded values is no separate change: a node's acceptance rose for it.
        self.values
            .retain(|proposal, _| referenced.contains(proposal));
        changed
    }

    fn accepted_proposals(&self) -> BTreeSet<ProposalId> {
        self.nodes.values().filter_map(|c| c.accepted).collect()
    }

    /// Every distinct peer name with an entry: the value a fresh proposer picks.
    fn known_names(&self) -> BTreeSet<PeerName> {
        self.nodes.keys().map(|id| id.name).collect()
    }

    fn highest_promise(&self) -> Option<ProposalId> {
        self.nodes.values().map(|c| c.promise).max()
    }
}

/// The `weave status` line while consensus is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaxosStatus {
    pub quorum: usize,
    /// Distinct peer names heard of (ourselves included once we take part).
    pub known: usize,
}

impl fmt::Display for PaxosStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "awaiting consensus (quorum: {}, known: {})",
            self.quorum, self.known
        )
    }
}

/// One node's side of the consensus: an elector, or an observer that only learns the outcome.
#[derive(Clone, Debug)]
pub struct Paxos {
    /// `None` for an observer: it holds and relays what it hears but never writes an entry, so it
    /// never counts towards a quorum nor appears in a value.
    me: Option<NodeId>,
    quorum: usize,
    state: PaxosState,
    /// The chosen value once seen. Kept because later acceptances of higher proposals (which
    /// carry the same value) can replace the entries that showed the deciding quorum.
    decided: Option<Vec<PeerName>>,
    /// Promises a proposer waits for before it proposes a value (besides the quorum): the
    /// electors the operator expects. Waiting longer is always safe in Paxos; [`Self::stop_waiting`]
    /// ends it so that a dead elector cannot block the start.
    wait_for: usize,
}

impl Paxos {
    /// An elector. A quorum of 0 would decide with nobody's agreement, so it counts as 1.
    pub fn new(me: PeerName, uid: PeerUid, quorum: usize) -> Self {
        Self {
            me: Some(NodeId { name: me, uid }),
            ..Self::observer(quorum)
        }
    }

    /// An observer (`--ipalloc-init=observer`): never proposes nor accepts; learns the outcome
    /// from the electors' gossip, judged against `quorum`.
    pub fn observer(quorum: usize) -> Self {
        Self {
            me: None,
            quorum: quorum.max(1),
            state: PaxosState::default(),
            decided: None,
            wait_for: 0,
        }
    }

    /// Waits for promises from `electors` distinct peers (when more than the quorum) before
    /// proposing a value, so that the value names all of them.
    pub fn expect_electors(&mut self, electors: usize) {
        self.wait_for = electors;
    }

    /// Settles for the quorum from now on.
    pub fn stop_waiting(&mut self) {
        self.wait_for = 0;
    }

    pub fn is_observer(&self) -> bool {
        self.me.is_none()
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// What to gossip on the `ipam` channel while there is no ring (see [`encode_state`]).
    pub fn state(&self) -> &PaxosState {
        &self.state
    }

    /// The chosen peers (sorted, without duplicates), once a quorum accepted one proposal.
    pub fn consensus(&self) -> Option<Vec<PeerName>> {
        self.decided.clone()
    }

    pub fn status(&self) -> PaxosStatus {
        PaxosStatus {
            quorum: self.quorum,
            known: self.state.known_names().len(),
        }
    }

    /// Advances our claims from what we know: proposes round 1 if nobody has proposed anything,
    /// else promises the highest proposal; as its proposer, accepts once a quorum promised; accepts
    /// the promised proposal once anyone accepted it. Returns whether our claims changed (then
    /// gossip [`Self::state`]). Observers do nothing.
    pub fn think(&mut self) -> bool {
        let Some(me) = self.me else {
            return false;
        };
        let before = self.state.nodes.get(&me).copied();
        let promise = self.state.highest_promise().unwrap_or(ProposalId {
            round: 1,
            proposer: me,
        });
        let mut ours = Claims {
            promise,
            accepted: before.and_then(|c| c.accepted),
        };
        // Our promise counts among the promisers below.
        self.state.nodes.insert(me, ours);
        if promise.proposer == me
            && ours.accepted != Some(promise)
            && let Some(value) = self.value_to_propose(promise)
        {
            self.state.values.insert(promise, value);
            ours.accepted = Some(promise);
        }
        if ours.accepted != Some(promise)
            && self
                .state
                .nodes
                .values()
                .any(|c| c.accepted == Some(promise))
        {
            // The accepting node brought the value along.
            ours.accepted = Some(promise);
        }
        self.state.nodes.insert(me, ours);
        let referenced = self.state.accepted_proposals();
        self.state.values.retain(|p, _| referenced.contains(p));
        self.learn();
        before != Some(ours)
    }

    /// Joins gossip into what we know (ignoring claims about ourselves: we are their only
    /// author). True if we learned something; then [`Self::think`], and relay [`Self::state`].
    /// A join that would break the size limits is dropped whole: honest meshes never reach them.
    pub fn merge(&mut self, other: &PaxosState) -> bool {
        let mut joined = self.state.clone();
        if !joined.join(other, self.me) || joined.check().is_err() {
            return false;
        }
        self.state = joined;
        self.learn();
        true
    }

    /// Proposes anew, outranking every proposal heard of: for when consensus is stuck (a proposer
    /// died, or proposals duelled). Then thinks. Returns whether our claims changed; does nothing
    /// for an observer or once decided.
    pub fn propose_again(&mut self) -> bool {
        let Some(me) = self.me else {
            return false;
        };
        if self.decided.is_some() {
            return false;
        }
        let highest = self.state.highest_promise().map_or(0, |p| p.round);
        // Saturating: only hostile gossip reaches u64::MAX, and then we just fail to outrank it.
        let promise = ProposalId {
            round: highest.saturating_add(1),
            proposer: me,
        };
        let before = self.state.nodes.get(&me).copied();
        let ours = self.state.nodes.entry(me).or_insert(Claims {
            promise,
            accepted: None,
        });
        ours.promise = ours.promise.max(promise);
        let promised = Some(*ours) != before;
        self.think() || promised
    }

    /// The value for our `proposal` if a quorum promised it: Paxos's rule, the value of the highest
    /// proposal those promisers accepted (it may already be chosen), else all names we know of.
    fn value_to_propose(&self, proposal: ProposalId) -> Option<Vec<PeerName>> {
        let promisers = || {
            self.state
                .nodes
                .iter()
                .filter(|(_, c)| c.promise == proposal)
        };
        let names: BTreeSet<PeerName> = promisers().map(|(id, _)| id.name).collect();
        if names.len() < self.quorum.max(self.wait_for) {
            return None;
        }
        match promisers().filter_map(|(_, c)| c.accepted).max() {
            Some(prior) => self.state.values.get(&prior).cloned(),
            None => Some(self.state.known_names().into_iter().collect()),
        }
    }

    /// Records the chosen value once a quorum of distinct names accepted one proposal.
    fn learn(&mut self) {
        if self.decided.is_some() {
            return;
        }
        let mut acceptors: BTreeMap<ProposalId, BTreeSet<PeerName>> = BTreeMap::new();
        for (id, claims) in &self.state.nodes {
            if let Some(accepted) = claims.accepted {
                acceptors.entry(accepted).or_default().insert(id.name);
            }
        }
        self.decided = acceptors
            .iter()
            .rev()
            .find(|(_, names)| names.len() >= self.quorum)
            .and_then(|(proposal, _)| self.state.values.get(proposal).cloned());
    }
}

#[cfg(test)]
mod tests;
