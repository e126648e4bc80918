//! The mesh key: the password stretched once, at start-up, into the 32-byte pre-shared key every
//! sealed link's Noise handshake mixes in. The Noise specification wants a uniformly random PSK,
//! and a password is not one; worse, an active attacker who completes one handshake with us can
//! test guesses offline against what we sent. Argon2id makes each guess cost what a start-up
//! costs (64 MiB and three passes) instead of one hash.
//!
//! Every peer must derive the same key from the same password, so the salt is fixed (a domain
//! label, not a secret) and so are the parameters: changing either is a new protocol.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroize;

/// Argon2id memory cost in KiB: 64 MiB (RFC 9106, section 4, second recommended option).
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes over the memory (RFC 9106, section 4, second recommended option).
pub const ARGON2_PASSES: u32 = 3;
/// Argon2id lanes: one, so every router derives in the same time whatever its cores.
pub const ARGON2_LANES: u32 = 1;
/// The salt: a domain label, the same everywhere, so that the key is only ever a Weft mesh key
/// (a password reused elsewhere does not yield the same bytes there).
pub const MESH_KEY_SALT: &[u8] = b"weft-mesh/v1";
pub const MESH_KEY_BYTES: usize = 32;
/// Weave Net's guidance for its password: at least 50 bits of entropy. Below it the router warns.
pub const WEAK_PASSWORD_BITS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum MeshKeyError {
    #[error("cannot derive the mesh key from the password: {0}")]
    Derive(#[from] argon2::Error),
}

/// The pre-shared key of the mesh. Its `Debug` never shows it; its memory is wiped on drop.
#[derive(Clone)]
pub struct MeshKey([u8; MESH_KEY_BYTES]);

impl MeshKey {
    /// Stretches `password` with Argon2id: about 0.2 s of one core, once per process
    /// (`load-tests/mesh_handshake_bench.rs`).
    pub fn derive(password: &[u8]) -> Result<Self, MeshKeyError> {
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_PASSES,
            ARGON2_LANES,
            Some(MESH_KEY_BYTES),
        )?;
        let mut key = [0u8; MESH_KEY_BYTES];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password_into(
            password,
            MESH_KEY_SALT,
            &mut key,
        )?;
        Ok(Self(key))
    }

    /// A key given as is, without stretching: for tests and benchmarks, which must not spend
    /// 64 MiB per router.
    pub fn from_bytes(key: [u8; MESH_KEY_BYTES]) -> Self {
        Self(key)
    }

    pub(super) fn bytes(&self) -> &[u8; MESH_KEY_BYTES] {
        &self.0
    }
}

/// An upper bound of a password's entropy in bits, as if each character were drawn at random from
/// the classes it uses (lower case, upper case, digits, anything else): a password under
/// [`WEAK_PASSWORD_BITS`] by this count is weak whatever it is made of. Words overstate it, so
/// passing says little; failing is the warning.
pub fn estimated_bits(password: &[u8]) -> u32 {
    /// Character classes and how many characters each has (printable ASCII: 95).
    const CLASSES: [(CharClass, f64); 4] = [
        (u8::is_ascii_lowercase, 26.0),
        (u8::is_ascii_uppercase, 26.0),
        (u8::is_ascii_digit, 10.0),
        (is_other, 33.0),
    ];
    let alphabet: f64 = CLASSES
        .iter()
        .filter(|(class, _)| password.iter().any(class))
        .map(|(_, size)| size)
        .sum();
    (password.len() as f64 * alphabet.max(1.0).log2()) as u32
}

type CharClass = fn(&u8) -> bool;

fn is_other(byte: &u8) -> bool {
    !byte.is_ascii_alphanumeric()
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshKey(<redacted>)")
    }
}

impl Drop for MeshKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests;
