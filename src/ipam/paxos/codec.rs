//! The gossip form of a [`PaxosState`]: MessagePack with field names like the other wire formats,
//! every size bounded (before parsing, while parsing, and after), and the state's invariants
//! checked, so that hostile or corrupt gossip is refused with a clear error and never panics.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, SeqAccess};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Claims, NodeId, PaxosState, ProposalId};
use crate::topology::PeerName;

/// Most node entries a state may hold: the bound of a topology update
/// (`wire::MAX_RECORDS_PER_UPDATE`), far above any real mesh.
pub const MAX_NODES: usize = 16 * 1024;

/// Most peer names across all values of a state. There is one value per proposal that some node
/// still has as its latest acceptance (normally one or two) and each names at most every node:
/// eight values for a mesh at [`MAX_NODES`], hundreds for a realistic one.
pub const MAX_VALUE_NAMES: usize = 8 * MAX_NODES;

/// Largest encoded state, checked before parsing so that a decode allocates at most a few tens of
/// MiB. A state at both count limits encodes to about 2.8 MiB (test
/// `states_at_the_limits_round_trip`); the wire's frame limit is 10 MiB.
pub const MAX_ENCODED_BYTES: usize = 4 * 1024 * 1024;

impl PaxosState {
    /// The invariants every state keeps; decoding rejects a state that breaks one.
    pub(super) fn check(&self) -> Result<(), InvalidState> {
        if self.nodes.len() > MAX_NODES {
            return Err(InvalidState::TooManyNodes {
                count: self.nodes.len(),
                max: MAX_NODES,
            });
        }
        let names: usize = self.values.values().map(Vec::len).sum();
        if names > MAX_VALUE_NAMES {
            return Err(InvalidState::TooManyValueNames {
                count: names,
                max: MAX_VALUE_NAMES,
            });
        }
        for (&node, claims) in &self.nodes {
            if claims.promise.round == 0 || claims.accepted.is_some_and(|a| a.round == 0) {
                return Err(InvalidState::ZeroRound(node));
            }
            if let Some(accepted) = claims.accepted {
                if accepted > claims.promise {
                    return Err(InvalidState::AcceptedAbovePromise(node));
                }
                if !self.values.contains_key(&accepted) {
                    return Err(InvalidState::MissingValue(accepted));
                }
            }
        }
        let referenced = self.accepted_proposals();
        for (&proposal, names) in &self.values {
            if !referenced.contains(&proposal) {
                return Err(InvalidState::UnreferencedValue(proposal));
            }
            let sorted = names.windows(2).all(|pair| pair[0] < pair[1]);
            if names.is_empty() || names.len() > MAX_NODES || !sorted {
                return Err(InvalidState::MalformedValue(proposal));
            }
        }
        Ok(())
    }
}

/// An invariant a state breaks: decoding refuses such a state, and encoding will not produce it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidState {
    #[error("{count} node entries exceed the limit of {max}")]
    TooManyNodes { count: usize, max: usize },
    #[error("{count} peer names across all values exceed the limit of {max}")]
    TooManyValueNames { count: usize, max: usize },
    #[error("node {0:?} is listed twice")]
    DuplicateNode(NodeId),
    #[error("proposal {0:?} has two values")]
    DuplicateValue(ProposalId),
    #[error("node {0:?} claims round 0, which no proposal uses")]
    ZeroRound(NodeId),
    #[error("node {0:?} accepted a proposal above its promise")]
    AcceptedAbovePromise(NodeId),
    #[error("proposal {0:?} is accepted but has no value")]
    MissingValue(ProposalId),
    #[error("proposal {0:?} has a value but no node accepted it")]
    UnreferencedValue(ProposalId),
    #[error("the value of proposal {0:?} is empty, too long, unsorted or repeats a name")]
    MalformedValue(ProposalId),
}

/// Why a state could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum PaxosCodecError {
    #[error("paxos state of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed paxos state: {0}")]
    Decode(#[source] rmp_serde::decode::Error),
    #[error("invalid paxos state: {0}")]
    Invalid(#[from] InvalidState),
    #[error("cannot encode paxos state: {0}")]
    Encode(#[source] rmp_serde::encode::Error),
}

/// The gossip bytes of a state (MessagePack with field names, like the other wire formats).
pub fn encode_state(state: &PaxosState) -> Result<Vec<u8>, PaxosCodecError> {
    state.check()?;
    let bytes = rmp_serde::to_vec_named(state).map_err(PaxosCodecError::Encode)?;
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(PaxosCodecError::TooLarge {
            len: bytes.len(),
            max: MAX_ENCODED_BYTES,
        });
    }
    Ok(bytes)
}

/// A state from gossip bytes: size checked before parsing, every list bounded while parsing (a
/// length prefix of a million entries fails before any is read), invariants checked after.
pub fn decode_state(bytes: &[u8]) -> Result<PaxosState, PaxosCodecError> {
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(PaxosCodecError::TooLarge {
            len: bytes.len(),
            max: MAX_ENCODED_BYTES,
        });
    }
    let wire: WireState = rmp_serde::from_slice(bytes).map_err(PaxosCodecError::Decode)?;
    Ok(PaxosState::try_from(wire)?)
}

/// The serialised form: flat lists, because MessagePack maps keyed by structs do not read well in
/// other tools and a list can be bounded while it is parsed.
#[derive(Serialize, Deserialize)]
pub(super) struct WireState {
    pub(super) nodes: BoundedVec<WireNode, MAX_NODES>,
    pub(super) values: BoundedVec<WireValue, MAX_NODES>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireNode {
    pub(super) node: NodeId,
    pub(super) promise: ProposalId,
    pub(super) accepted: Option<ProposalId>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireValue {
    pub(super) proposal: ProposalId,
    pub(super) names: BoundedVec<PeerName, MAX_NODES>,
}

impl From<PaxosState> for WireState {
    fn from(state: PaxosState) -> Self {
        let nodes = state.nodes.into_iter().map(|(node, claims)| WireNode {
            node,
            promise: claims.promise,
            accepted: claims.accepted,
        });
        let values = state.values.into_iter().map(|(proposal, names)| WireValue {
            proposal,
            names: BoundedVec(names),
        });
        WireState {
            nodes: BoundedVec(nodes.collect()),
            values: BoundedVec(values.collect()),
        }
    }
}

impl TryFrom<WireState> for PaxosState {
    type Error = InvalidState;

    fn try_from(wire: WireState) -> Result<Self, InvalidState> {
        let mut state = PaxosState::default();
        for WireNode {
            node,
            promise,
            accepted,
        } in wire.nodes.0
        {
            let claims = Claims { promise, accepted };
            if state.nodes.insert(node, claims).is_some() {
                return Err(InvalidState::DuplicateNode(node));
            }
        }
        for WireValue { proposal, names } in wire.values.0 {
            if state.values.insert(proposal, names.0).is_some() {
                return Err(InvalidState::DuplicateValue(proposal));
            }
        }
        state.check()?;
        Ok(state)
    }
}

/// A list that refuses, while it is parsed, to hold more than `MAX` items.
pub(super) struct BoundedVec<T, const MAX: usize>(pub(super) Vec<T>);

impl<T: Serialize, const MAX: usize> Serialize for BoundedVec<T, MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for BoundedVec<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T, const MAX: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const MAX: usize> de::Visitor<'de> for Visitor<T, MAX> {
            type Value = BoundedVec<T, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX} items")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // MessagePack announces the length: refuse before reading (or allocating) items.
                if let Some(announced) = seq.size_hint()
                    && announced > MAX
                {
                    return Err(de::Error::custom(format_args!(
                        "a list of {announced} items exceeds the limit of {MAX}"
                    )));
                }
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX {
                        return Err(de::Error::custom(format_args!(
                            "a list of more than {MAX} items exceeds the limit"
                        )));
                    }
                    items.push(item);
                }
                Ok(BoundedVec(items))
            }
        }

        deserializer.deserialize_seq(Visitor(PhantomData))
    }
}
