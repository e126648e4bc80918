//! The sending side of one direction: the current epoch's key and its counter, which never
//! repeats under that key, and the policy that says when the sender must move to a new epoch.

use std::time::{Duration, Instant};

use ring::aead::LessSafeKey;

use super::{
    DATAGRAM_HEADER_LEN, Direction, FLAG_FRAGMENT, FLAG_SEALED, MAX_COUNTER, MAX_SEALABLE_LEN,
    SEAL_HEADROOM, SEAL_TAG_LEN, SEALED_HEADER_LEN, SLEEVE_VERSION, SealError, SleeveKey, aead_key,
    aead_seal, counter_field,
};

/// A key is replaced after this long: WireGuard's `REKEY_AFTER_TIME` (120 s, section 6.1 of its
/// paper), which bounds what one stolen key reveals to two minutes of traffic.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A key is replaced after sealing this many datagrams, 2^32, whatever its age: far inside the
/// 2^60 counters of an epoch, and what the issue asks (WireGuard's `REKEY_AFTER_MESSAGES` is
/// 2^60, its counter being 64 bits). At 10 Gbit/s of 1,400-byte datagrams, about 80 minutes,
/// so the time limit comes first on any real link.
pub const REKEY_AFTER_DATAGRAMS: u64 = 1 << 32;

/// Whether a key installed at `started` that has sealed `sealed` datagrams should give way to a
/// new epoch at `now`: after [`REKEY_AFTER_TIME`] or [`REKEY_AFTER_DATAGRAMS`], whichever comes
/// first.
pub fn rekey_due(started: Instant, sealed: u64, now: Instant) -> bool {
    now.saturating_duration_since(started) >= REKEY_AFTER_TIME || sealed >= REKEY_AFTER_DATAGRAMS
}

/// The key one direction seals with during one epoch. Owned by that peer's sending path alone:
/// sealing takes `&mut self`, so no two datagrams can get one counter.
pub struct SealingKey {
    epoch: u32,
    direction: Direction,
    key: LessSafeKey,
    /// The counter of the next datagram.
    next: u64,
    started: Instant,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("epoch", &self.epoch)
            .field("direction", &self.direction)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Starts sealing with `key` in `direction` at `now`, counting from 0. The caller must have
    /// delivered `key` to the receiver first, and must never install one epoch's key twice.
    pub fn new(key: &SleeveKey, direction: Direction, now: Instant) -> Self {
        Self {
            epoch: key.epoch,
            direction,
            key: aead_key(key),
            next: 0,
            started: now,
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Datagrams sealed so far under this key.
    pub fn sealed(&self) -> u64 {
        self.next
    }

    /// Jumps the counter, for tests of the limits (2^32, 2^60) that sealing cannot reach.
    #[cfg(test)]
    pub(super) fn skip_to(&mut self, next: u64) {
        self.next = next;
    }

    /// Whether this key should give way to a new epoch at `now` ([`rekey_due`]).
    pub fn rekey_due(&self, now: Instant) -> bool {
        rekey_due(self.started, self.next, now)
    }

    /// Seals the plain datagram in `buffer` where it lies, and returns the counter it used.
    /// `buffer` is [`SEAL_HEADROOM`] bytes of anything, the plain datagram (header and records or
    /// fragment), then [`SEAL_TAG_LEN`] bytes of anything; afterwards it is the sealed datagram.
    /// When a check fails nothing is counted and `buffer` is left as it was.
    pub fn seal_in_place(&mut self, buffer: &mut [u8]) -> Result<u64, SealError> {
        let len = buffer.len();
        let malformed = |reason| SealError::Malformed { len, reason };
        let plain_len = len
            .checked_sub(SEAL_HEADROOM + SEAL_TAG_LEN)
            .ok_or(malformed("no room for the counter and the tag"))?;
        if plain_len < DATAGRAM_HEADER_LEN {
            return Err(malformed("no plain datagram header"));
        }
        if plain_len > MAX_SEALABLE_LEN {
            return Err(malformed("plain datagram too long to seal"));
        }
        let version_flags = buffer[SEAL_HEADROOM + DATAGRAM_HEADER_LEN - 1];
        if version_flags >> 4 != SLEEVE_VERSION || version_flags & 0x0f & !FLAG_FRAGMENT != 0 {
            return Err(malformed("not a plain datagram of our version"));
        }
        let counter = self.next;
        if counter > MAX_COUNTER {
            return Err(SealError::CounterExhausted { epoch: self.epoch });
        }

        // The sender's name moves 8 bytes to the front; the version byte follows it with the
        // sealed flag, then the counter field.
        buffer.copy_within(SEAL_HEADROOM..SEAL_HEADROOM + 6, 0);
        buffer[6] = version_flags | FLAG_SEALED;
        let field = counter_field(self.epoch, counter);
        buffer[DATAGRAM_HEADER_LEN..SEALED_HEADER_LEN].copy_from_slice(&field.to_be_bytes());

        let (header, rest) = buffer.split_at_mut(SEALED_HEADER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - SEAL_TAG_LEN);
        let sealed = aead_seal(&self.key, self.direction.tag(), field, header, body)?;
        tag.copy_from_slice(sealed.as_ref());
        self.next += 1;
        Ok(counter)
    }

    /// Seals the plain datagram `plain` into `out` (replacing its contents): one copy more than
    /// [`Self::seal_in_place`], for a sender that did not build its datagram with headroom.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<u64, SealError> {
        out.clear();
        out.reserve(plain.len() + SEAL_HEADROOM + SEAL_TAG_LEN);
        out.resize(SEAL_HEADROOM, 0);
        out.extend_from_slice(plain);
        out.resize(out.len() + SEAL_TAG_LEN, 0);
        self.seal_in_place(out).inspect_err(|_| out.clear())
    }
}
