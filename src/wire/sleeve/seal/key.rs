//! The key of one epoch of one direction, as its sender draws it and as it travels to the
//! receiver inside the link's Noise channel: 32 random bytes and the epoch they are for. Random
//! material sent over the encrypted control channel, as Weave Net keyed its fast datapath's ESP,
//! keeps the sleeve's keys independent of the TCP channel's and needs nothing from Noise but a
//! message. Its memory is wiped when it is dropped, and its `Debug` never shows it.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::wire::WireError;

/// Bytes of a sleeve key: ChaCha20's key (RFC 8439, section 2.3).
pub const SLEEVE_KEY_LEN: usize = 32;
/// Bytes reserved for an encoded [`SleeveKey`], so that encoding never reallocates (which would
/// leave a copy of the key behind): a two-entry MessagePack map, "epoch" and a u32 (at most 11
/// bytes), "key" and a 32-byte bin (38 bytes), 50 in all, rounded up.
const ENCODED_CAPACITY: usize = 64;

/// One epoch's key for one direction of one link.
#[derive(Serialize, Deserialize, PartialEq)]
pub struct SleeveKey {
    /// Counted up by the sender from 0 for each link, one per rekey; the datagrams carry its low
    /// 4 bits.
    pub epoch: u32,
    #[serde(with = "serde_bytes")]
    key: [u8; SLEEVE_KEY_LEN],
}

impl SleeveKey {
    /// A fresh key for `epoch`, from the thread's cryptographically secure generator (ChaCha
    /// seeded from the operating system).
    pub fn random(epoch: u32) -> Self {
        let mut key = [0u8; SLEEVE_KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self { epoch, key }
    }

    /// A key given as is: for known-answer tests and benchmarks.
    pub fn from_bytes(epoch: u32, key: [u8; SLEEVE_KEY_LEN]) -> Self {
        Self { epoch, key }
    }

    pub(super) fn bytes(&self) -> &[u8; SLEEVE_KEY_LEN] {
        &self.key
    }

    /// The message's bytes (MessagePack, named fields like the link's other messages), in a
    /// buffer wiped on drop.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, WireError> {
        let mut out = Zeroizing::new(Vec::with_capacity(ENCODED_CAPACITY));
        rmp_serde::encode::write_named(&mut *out, self).map_err(|source| WireError::Encode {
            what: "sleeve key",
            source,
        })?;
        Ok(out)
    }

    /// Reads a message made by [`Self::encode`]; a key of any length but 32 bytes is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        rmp_serde::from_slice(bytes).map_err(|source| WireError::Decode {
            what: "sleeve key",
            source,
        })
    }
}

impl Drop for SleeveKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for SleeveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SleeveKey")
            .field("epoch", &self.epoch)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests;
