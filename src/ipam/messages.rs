//! The allocator's gossip messages (channel `ipam`) and their byte form. This module owns what
//! peers tell each other about IP allocation: the ring, the consensus state before there is a
//! ring, and the requests for space and for single addresses with their answers.
//!
//! MessagePack with named fields, like the rest of the wire, so a newer peer can add fields an
//! older one ignores. Decoding is bounded ([`MAX_MESSAGE_BYTES`]) and never panics: everything
//! received is checked again by its consumer (the ring by [`super::Ring::merge`], the consensus
//! state while it is decoded).

use serde::{Deserialize, Serialize};

use super::paxos::PaxosState;
use super::{Address, Cidr, IpamError, RingState};

/// Largest encoded message accepted. The wire's frame limit is 10 MiB
/// (`wire::framing::MAX_FRAME_BYTES`) and a gossip frame wraps the payload with a channel name
/// and peer names, so 8 MiB leaves room for that. A ring of 100,000 entries (far beyond a
/// thousand peers with fragmented ranges) encodes to about 5 MiB.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// One gossip message of the allocator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpamMessage {
    /// The sender's ring: broadcast when it changes and periodically, unicast to a peer that
    /// seems not to have it (a new link, a request from a peer without a ring, a stale copy).
    Ring(RingState),
    /// Consensus state while the sender has no ring (`--ipalloc-init=consensus`). A peer that
    /// has a ring answers with it.
    Paxos(PaxosState),
    /// From a peer that has no ring and cannot make one (an observer): please send the ring,
    /// or start making one.
    RingRequest,
    /// Please give me some free space in `subnet`.
    SpaceRequest { subnet: Cidr },
    /// Space in `subnet` was granted to the requester in `ring` (also broadcast).
    SpaceGranted { subnet: Cidr, ring: RingState },
    /// The sender has no free space in `subnet`: ask someone else.
    SpaceDenied { subnet: Cidr },
    /// Please give me the single address `address`, which your part of the ring holds.
    ClaimRequest { address: Address },
    /// `address` was granted to the requester in `ring` (also broadcast).
    ClaimGranted { address: Address, ring: RingState },
    /// The sender will not give `address` away.
    ClaimDenied {
        address: Address,
        reason: ClaimDenial,
    },
}

/// Why an owner refused to hand over an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimDenial {
    /// It is allocated there: the claim fails.
    InUse,
    /// The sender does not own it (any more): the requester's ring is stale, it retries once
    /// the sender's ring (sent along) has arrived.
    NotOwner,
}

/// The bytes of a message, for a gossip payload.
pub fn encode_message(message: &IpamMessage) -> Result<Vec<u8>, IpamError> {
    let bytes = rmp_serde::to_vec_named(message).map_err(|error| IpamError::EncodeMessage {
        why: error.to_string(),
    })?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(IpamError::MessageTooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(bytes)
}

/// A message from gossip bytes. The length is checked first, so a hostile payload costs at most
/// a decode of [`MAX_MESSAGE_BYTES`] (serde caps preallocation from length prefixes).
pub fn decode_message(bytes: &[u8]) -> Result<IpamMessage, IpamError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(IpamError::MessageTooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    rmp_serde::from_slice(bytes).map_err(|error| IpamError::DecodeMessage {
        why: error.to_string(),
    })
}

#[cfg(test)]
mod tests;
