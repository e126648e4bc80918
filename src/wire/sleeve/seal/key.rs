//! The key of one epoch of one direction, as its sender draws it and as it travels to the
//! receiver inside the link's Noise channel: 32 random bytes and the epoch they are for. Random
//! material sent over the encrypted control channel, as Weave Net keyed its fast datapath's ESP,
//! keeps the sleeve's keys independent of the TCP channel's and needs nothing from Noise but a
//! message. Its memory is wiped when it is dropped, and its `Debug` never shows it.
//!
//! The key names its cipher, chosen by its sender: AES-256-GCM where the sender's CPU has AES
//! and carry-less multiplication instructions (2.5 times ChaCha20-Poly1305's speed on this
//! project's x86 machines: 33 against 13 Gbit/s per core sealing 1400-byte datagrams with
//! `ring`), ChaCha20-Poly1305 elsewhere (WireGuard's choice: fast and constant-time without
//! such instructions). Both have 32-byte keys, 96-bit nonces and 16-byte tags, so the datagram's
//! layout does not depend on the choice, and every receiver opens either. A cluster of mixed
//! machines therefore still works; a receiver without AES instructions opens its AES peers'
//! datagrams with `ring`'s slower constant-time fallback.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::wire::WireError;

/// Bytes of a sleeve key: ChaCha20's key (RFC 8439, section 2.3), and AES-256's.
pub const SLEEVE_KEY_LEN: usize = 32;
/// Bytes reserved for an encoded [`SleeveKey`], so that encoding never reallocates (which would
/// leave a copy of the key behind): a three-entry MessagePack map, "epoch" and a u32 (at most 11
/// bytes), "key" and a 32-byte bin (38 bytes), "cipher" and a name of at most 17 bytes (25), 75
/// in all, rounded up.
const ENCODED_CAPACITY: usize = 96;

/// The AEAD a key is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    /// RFC 8439. The default of a key that names none.
    #[default]
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// NIST SP 800-38D with a 256-bit key.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl Cipher {
    /// The faster of the two on this machine: AES-256-GCM when the CPU has instructions for AES
    /// and for GCM's carry-less multiplication, which `ring` then uses.
    pub fn fastest_here() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
        {
            return Self::Aes256Gcm;
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
        {
            return Self::Aes256Gcm;
        }
        Self::ChaCha20Poly1305
    }

    pub(super) fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Self::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
            Self::Aes256Gcm => &ring::aead::AES_256_GCM,
        }
    }
}

/// One epoch's key for one direction of one link.
#[derive(Serialize, Deserialize, PartialEq)]
pub struct SleeveKey {
    /// Counted up by the sender from 0 for each link, one per rekey; the datagrams carry its low
    /// 4 bits.
    pub epoch: u32,
    #[serde(with = "serde_bytes")]
    key: [u8; SLEEVE_KEY_LEN],
    #[serde(default)]
    cipher: Cipher,
}

impl SleeveKey {
    /// A fresh key for `epoch` and the fastest cipher here, from the thread's cryptographically
    /// secure generator (ChaCha seeded from the operating system).
    pub fn random(epoch: u32) -> Self {
        let mut key = [0u8; SLEEVE_KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self {
            epoch,
            key,
            cipher: Cipher::fastest_here(),
        }
    }

    /// A ChaCha20-Poly1305 key given as is: for known-answer tests and benchmarks.
    pub fn from_bytes(epoch: u32, key: [u8; SLEEVE_KEY_LEN]) -> Self {
        Self {
            epoch,
            key,
            cipher: Cipher::ChaCha20Poly1305,
        }
    }

    /// The same key for another cipher.
    pub fn with_cipher(mut self, cipher: Cipher) -> Self {
        self.cipher = cipher;
        self
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
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
            .field("cipher", &self.cipher)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests;
