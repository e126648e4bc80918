//! The link id both ends of a new link agree on, which settles simultaneous connects (the lower id
//! stays). Each side contributes a random nonce; neither may choose its nonce knowing the other's,
//! or it could pick the winning id and evict a real link to the peer it impersonates. So each side
//! first sends a commitment (SHA-256 of its nonce) in its `Hello`, and reveals the nonce only once
//! it holds the other's commitment: the id is as random as the honest side's nonce.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of a nonce and of a commitment: SHA-256's output, so that a commitment cannot be opened
/// to a second nonce.
pub const NONCE_LEN: usize = 32;

/// One side's secret contribution to the link id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkNonce(#[serde(with = "serde_bytes")] pub [u8; NONCE_LEN]);

/// The commitment to a [`LinkNonce`], sent before the nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCommitment(#[serde(with = "serde_bytes")] pub [u8; NONCE_LEN]);

/// The second message of the handshake: the nonce committed to in the `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    pub nonce: LinkNonce,
}

impl LinkNonce {
    pub fn random() -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        Self(nonce)
    }

    pub fn commitment(&self) -> LinkCommitment {
        LinkCommitment(Sha256::digest(self.0).into())
    }

    /// Whether this nonce is the one `commitment` was made for.
    pub fn opens(&self, commitment: &LinkCommitment) -> bool {
        self.commitment() == *commitment
    }
}

/// The link id from both nonces: the same at both ends, whichever side is which.
pub fn link_id(a: &LinkNonce, b: &LinkNonce) -> u64 {
    let mut id = [0u8; 8];
    for (byte, (x, y)) in id.iter_mut().zip(a.0.iter().zip(&b.0)) {
        *byte = x ^ y;
    }
    u64::from_be_bytes(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_message, encode_message};
    use proptest::prelude::*;

    #[test]
    fn a_nonce_opens_only_its_own_commitment() {
        let nonce = LinkNonce::random();
        let other = LinkNonce::random();
        assert!(nonce.opens(&nonce.commitment()));
        assert!(!other.opens(&nonce.commitment()));
        assert_ne!(nonce, other, "256 random bits never repeat");
    }

    proptest! {
        #[test]
        fn both_ends_compute_the_same_id(a in any::<[u8; NONCE_LEN]>(), b in any::<[u8; NONCE_LEN]>()) {
            prop_assert_eq!(link_id(&LinkNonce(a), &LinkNonce(b)), link_id(&LinkNonce(b), &LinkNonce(a)));
        }

        #[test]
        fn reveal_round_trips(nonce in any::<[u8; NONCE_LEN]>()) {
            let reveal = Reveal { nonce: LinkNonce(nonce) };
            let bytes = encode_message("reveal", &reveal).unwrap();
            prop_assert_eq!(decode_message::<Reveal>("reveal", &bytes).unwrap(), reveal);
        }

        #[test]
        fn decoding_arbitrary_bytes_as_a_reveal_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_message::<Reveal>("reveal", &bytes);
        }
    }
}
