//! The sealed sleeve datagram: a plain sleeve datagram (records, or one fragment) encrypted and
//! authenticated with ChaCha20-Poly1305 (RFC 8439) or AES-256-GCM, as the key says (see
//! [`key`]), under a per-direction, per-epoch key, for a
//! mesh with a password. This module owns the byte format, the sending and receiving key state
//! ([`SealingKey`], [`OpeningKeys`]), the replay window ([`replay`]), the key-delivery message
//! ([`SleeveKey`]) and the rekey policy ([`rekey_due`]). Pure: no sockets, no clock (time is
//! passed in), no allocation per datagram; keys come from the caller, drawn by the sender and
//! carried to the receiver inside the link's Noise channel.
//!
//! Layout (big-endian):
//!
//! ```text
//! sealed datagram = sender:6 version_flags:1 epoch_counter:8 ciphertext tag:16
//!   sender        : the previous hop, as in a plain datagram
//!   version_flags : SLEEVE_VERSION << 4 | FLAG_SEALED (0x2), plus FLAG_FRAGMENT (0x1) when the
//!                   sealed plain datagram is a fragment
//!   epoch_counter : the key's epoch modulo 16 in the top 4 bits, the 60-bit counter below
//!   ciphertext    : the plain datagram's bytes after its 7-byte header, encrypted
//!   associated data = the 15 bytes of the clear header above
//!   nonce (96-bit IETF) = direction tag:4 epoch_counter:8
//! ```
//!
//! The clear header is the plain datagram's header with the 8-byte counter field added, so a
//! receiver finds the peer's keys by `sender` before any cryptography, and opening writes a plain
//! header back in place of the counter: what comes out is an ordinary datagram for
//! [`super::fragment::Datagram::parse`], borrowed from the received buffer. The header is
//! authenticated, so a datagram whose sender, flags, epoch or counter were altered fails like a
//! forged one. A router without this module's format sees the sealed flag as a reserved flag and
//! drops the datagram, never misreads it.
//!
//! Overhead: [`SEAL_OVERHEAD`] = 8 (counter) + 16 (tag) = 24 bytes per datagram, so the sleeve's
//! 63 bytes become 87 and a 1500-byte underlay gives pods an MTU of 1413 instead of 1437
//! ([`sealed_effective_mtu`]; Weave Net's encrypted sleeve: 1414, one more since its plain
//! header has no version byte).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use super::{DATAGRAM_HEADER_LEN, FLAG_FRAGMENT, MAX_DATAGRAM_LEN, SLEEVE_VERSION, effective_mtu};
use crate::topology::PeerName;

mod key;
mod opening;
pub mod replay;
mod sealing;

pub use key::{Cipher, SLEEVE_KEY_LEN, SleeveKey};
pub use opening::{Opened, OpeningKeys};
pub use sealing::{REKEY_AFTER_DATAGRAMS, REKEY_AFTER_TIME, SealingKey, rekey_due};

/// Flag (low nibble of the version byte): the datagram is sealed. Reserved in the plain format,
/// so a plain parser rejects a sealed datagram rather than reading ciphertext as records.
pub const FLAG_SEALED: u8 = 0x2;
/// Bytes of the epoch/counter field: 4 bits of epoch and a 60-bit counter.
pub const COUNTER_FIELD_LEN: usize = 8;
/// Bytes of the clear header: sender (6), version/flags (1), epoch/counter (8) = 15. All of it is
/// the AEAD's associated data.
pub const SEALED_HEADER_LEN: usize = DATAGRAM_HEADER_LEN + COUNTER_FIELD_LEN;
/// Bytes of the Poly1305 tag at the end of every sealed datagram (RFC 8439, section 2.5).
pub const SEAL_TAG_LEN: usize = 16;
/// Bytes a sender leaves free in front of a plain datagram so that it is sealed where it lies:
/// the counter field the sealed header has and the plain one has not.
pub const SEAL_HEADROOM: usize = SEALED_HEADER_LEN - DATAGRAM_HEADER_LEN;
/// Bytes sealing adds to a datagram: counter field (8) and tag (16) = 24.
pub const SEAL_OVERHEAD: usize = SEAL_HEADROOM + SEAL_TAG_LEN;
/// The smallest sealed datagram, in bytes: a clear header and a tag around an empty plaintext (a
/// plain datagram with no record, which the plain format allows).
pub const MIN_SEALED_LEN: usize = SEALED_HEADER_LEN + SEAL_TAG_LEN;
/// The largest plain datagram that can be sealed, in bytes: the sealed one must still fit the
/// UDP length field ([`MAX_DATAGRAM_LEN`]).
pub const MAX_SEALABLE_LEN: usize = MAX_DATAGRAM_LEN - SEAL_OVERHEAD;
/// Bits of the epoch carried in each datagram: enough to tell the current key from the previous
/// one (the receiver holds two), and a few stale ones apart, at the cost of 4 counter bits.
pub const EPOCH_BITS: u32 = 4;
/// Bits of the per-key datagram counter.
pub const COUNTER_BITS: u32 = 64 - EPOCH_BITS;
/// The last counter a key may seal: 2^60 - 1. A key is retired long before (`rekey_due` asks for
/// a new epoch after 2^32 datagrams), so reaching it means the caller ignored the policy.
pub const MAX_COUNTER: u64 = (1 << COUNTER_BITS) - 1;
/// Bytes of the direction tag in front of the counter field in the nonce: 4 + 8 = the 12-byte
/// IETF nonce of RFC 8439, section 2.8.
pub const DIRECTION_TAG_LEN: usize = 4;
/// Bytes of a ChaCha20-Poly1305 nonce (RFC 8439, section 2.8).
const NONCE_LEN: usize = DIRECTION_TAG_LEN + COUNTER_FIELD_LEN;
const EPOCH_MASK: u32 = (1 << EPOCH_BITS) - 1;

/// The pods' MTU over a sealed sleeve on an underlay of `underlay_mtu` bytes: the plain sleeve's
/// [`effective_mtu`] less [`SEAL_OVERHEAD`], so 1500 gives 1413.
pub const fn sealed_effective_mtu(underlay_mtu: u32) -> usize {
    effective_mtu(underlay_mtu).saturating_sub(SEAL_OVERHEAD)
}

/// Which way a key seals, named from the link's two ends. Each direction has its own key drawn by
/// its sender, so nonces could not meet across directions anyway; the tag in the nonce keeps them
/// apart even if a bug ever installed one key both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the end that dialled the link to the end that accepted it.
    FromDialler,
    /// From the end that accepted the link to the end that dialled it.
    FromAcceptor,
}

impl Direction {
    /// The first four bytes of every nonce this direction uses.
    pub const fn tag(self) -> [u8; DIRECTION_TAG_LEN] {
        match self {
            Direction::FromDialler => *b"wfd>",
            Direction::FromAcceptor => *b"wfa>",
        }
    }
}

/// Why a datagram could not be sealed or opened, or a key not installed. Each of the receive
/// errors maps to one drop cause of the sleeve (`auth`, `replay`, `malformed_datagram`), counted,
/// never logged per datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "sealed datagram from {sender} (epoch {epoch}, counter {counter}) failed authentication"
    )]
    Auth {
        sender: PeerName,
        epoch: u32,
        counter: u64,
    },
    #[error("counter {counter} of epoch {epoch} was already received (a replay)")]
    Replay { epoch: u32, counter: u64 },
    #[error(
        "counter {counter} of epoch {epoch} is behind the replay window (newest {newest}, window \
         {} datagrams)",
        replay::WINDOW
    )]
    TooOld {
        epoch: u32,
        counter: u64,
        newest: u64,
    },
    #[error(
        "no key for epoch bits {epoch_bits} (current epoch {current:?}, previous {previous:?})"
    )]
    UnknownEpoch {
        epoch_bits: u8,
        current: Option<u32>,
        previous: Option<u32>,
    },
    #[error("malformed sealed datagram of {len} bytes: {reason}")]
    Malformed { len: usize, reason: &'static str },
    #[error("the counter of epoch {epoch} is exhausted: a new key is overdue")]
    CounterExhausted { epoch: u32 },
    #[error("key for epoch {epoch} is not newer than the current epoch {current}")]
    StaleKey { epoch: u32, current: u32 },
}

/// The clear header of a sealed datagram, read without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    /// The previous hop: whose keys open this datagram.
    pub sender: PeerName,
    /// The sealed plain datagram is a fragment.
    pub fragment: bool,
    /// The sender's epoch modulo 16.
    pub epoch_bits: u8,
    pub counter: u64,
}

impl SealedHeader {
    /// Checks the length, version and flags of a sealed datagram and reads its header. Never
    /// panics.
    pub fn parse(bytes: &[u8]) -> Result<Self, SealError> {
        let len = bytes.len();
        let malformed = |reason| SealError::Malformed { len, reason };
        if len > MAX_DATAGRAM_LEN {
            return Err(malformed("longer than a UDP datagram"));
        }
        let Some(header) = bytes.first_chunk::<SEALED_HEADER_LEN>() else {
            return Err(malformed("shorter than the clear header"));
        };
        if len < MIN_SEALED_LEN {
            return Err(malformed("shorter than the clear header and the tag"));
        }
        let version_flags = header[6];
        if version_flags >> 4 != SLEEVE_VERSION {
            return Err(malformed("unsupported sleeve version"));
        }
        let flags = version_flags & 0x0f;
        if flags & FLAG_SEALED == 0 {
            return Err(malformed("not sealed"));
        }
        if flags & !(FLAG_SEALED | FLAG_FRAGMENT) != 0 {
            return Err(malformed("reserved flags set"));
        }
        let mut sender = [0u8; 6];
        sender.copy_from_slice(&header[..6]);
        let mut field = [0u8; COUNTER_FIELD_LEN];
        field.copy_from_slice(&header[DATAGRAM_HEADER_LEN..]);
        let field = u64::from_be_bytes(field);
        Ok(Self {
            sender: PeerName::from_bytes(sender),
            fragment: flags & FLAG_FRAGMENT != 0,
            // The shift leaves the 4 epoch bits alone.
            epoch_bits: (field >> COUNTER_BITS) as u8,
            counter: field & MAX_COUNTER,
        })
    }
}

/// Whether `datagram` claims to be sealed (its flags say so): how a receive path tells the two
/// formats apart before choosing a parser. A claim only: [`OpeningKeys::open`] checks the rest.
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram
        .get(DATAGRAM_HEADER_LEN - 1)
        .is_some_and(|version_flags| version_flags & FLAG_SEALED != 0)
}

/// The epoch/counter field for `epoch` (its low 4 bits) and `counter` (at most [`MAX_COUNTER`]).
fn counter_field(epoch: u32, counter: u64) -> u64 {
    (u64::from(epoch & EPOCH_MASK) << COUNTER_BITS) | (counter & MAX_COUNTER)
}

/// The 4 bits of `epoch` a datagram carries.
fn epoch_bits(epoch: u32) -> u8 {
    // Masked to 4 bits first.
    (epoch & EPOCH_MASK) as u8
}

fn nonce(direction_tag: [u8; DIRECTION_TAG_LEN], field: u64) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[..DIRECTION_TAG_LEN].copy_from_slice(&direction_tag);
    bytes[DIRECTION_TAG_LEN..].copy_from_slice(&field.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// The AEAD of this module: the key's cipher through `ring`, nonce = direction tag and counter
/// field. Every seal and open goes through these two functions, the known-answer tests too.
fn aead_key(key: &SleeveKey) -> LessSafeKey {
    // Both ciphers take exactly a 32-byte key: `new` cannot fail on it.
    let unbound = UnboundKey::new(key.cipher().algorithm(), key.bytes())
        .expect("ChaCha20-Poly1305 and AES-256-GCM take any 32-byte key");
    LessSafeKey::new(unbound)
}

/// Encrypts `in_out` in place and returns its tag.
fn aead_seal(
    key: &LessSafeKey,
    direction_tag: [u8; DIRECTION_TAG_LEN],
    field: u64,
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<aead::Tag, SealError> {
    key.seal_in_place_separate_tag(nonce(direction_tag, field), Aad::from(aad), in_out)
        .map_err(|_| SealError::Malformed {
            len: in_out.len(),
            reason: "too long for the AEAD",
        })
}

/// Authenticates and decrypts `in_out` (ciphertext then tag) in place: the plaintext's length, or
/// `None` when the tag does not match (then `in_out` holds no plaintext worth reading).
fn aead_open(
    key: &LessSafeKey,
    direction_tag: [u8; DIRECTION_TAG_LEN],
    field: u64,
    aad: &[u8],
    in_out: &mut [u8],
) -> Option<usize> {
    key.open_in_place(nonce(direction_tag, field), Aad::from(aad), in_out)
        .ok()
        .map(|plain| plain.len())
}

#[cfg(test)]
mod tests;
