//! The receiving side of one direction: the keys of the current and the previous epoch, each with
//! its replay window. Keeping the previous key means that the datagrams a sender sealed just
//! before it moved to a new epoch, still in flight or reordered behind newer ones, are opened
//! rather than lost; the one before that is forgotten when a third epoch arrives.

use ring::aead::LessSafeKey;

use super::replay::{ReplayWindow, Verdict};
use super::{
    DATAGRAM_HEADER_LEN, Direction, FLAG_SEALED, SEAL_HEADROOM, SEAL_TAG_LEN, SEALED_HEADER_LEN,
    SealError, SealedHeader, SleeveKey, aead_key, aead_open, counter_field, epoch_bits,
};

/// One epoch's key and the counters accepted under it.
struct EpochKey {
    epoch: u32,
    key: LessSafeKey,
    window: ReplayWindow,
}

/// What [`OpeningKeys::open`] returns: a plain datagram, borrowed from the received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened<'a> {
    pub epoch: u32,
    pub counter: u64,
    /// The plain datagram (header and records, or one fragment), for
    /// [`crate::wire::sleeve::fragment::Datagram::parse`].
    pub datagram: &'a [u8],
}

/// The keys one direction of one link opens with. Owned by that peer's receive path alone.
pub struct OpeningKeys {
    direction: Direction,
    current: Option<EpochKey>,
    previous: Option<EpochKey>,
}

impl std::fmt::Debug for OpeningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpeningKeys")
            .field("direction", &self.direction)
            .field("current", &self.current_epoch())
            .field("previous", &self.previous_epoch())
            .finish()
    }
}

impl OpeningKeys {
    /// No key yet: every datagram is refused as [`SealError::UnknownEpoch`] until the first
    /// [`SleeveKey`] arrives. `direction` is the peer's sending direction.
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            current: None,
            previous: None,
        }
    }

    pub fn current_epoch(&self) -> Option<u32> {
        self.current.as_ref().map(|key| key.epoch)
    }

    pub fn previous_epoch(&self) -> Option<u32> {
        self.previous.as_ref().map(|key| key.epoch)
    }

    /// Installs the key of a new epoch, delivered by the sender over the Noise channel: it becomes
    /// the current one, the current one the previous, and the previous one is forgotten. A key
    /// for an epoch not newer than the current one is refused: the channel is ordered, so that is
    /// a sender's bug, and accepting it would reset a replay window.
    pub fn install(&mut self, key: &SleeveKey) -> Result<(), SealError> {
        if let Some(current) = self.current_epoch()
            && key.epoch <= current
        {
            return Err(SealError::StaleKey {
                epoch: key.epoch,
                current,
            });
        }
        let next = EpochKey {
            epoch: key.epoch,
            key: aead_key(key),
            window: ReplayWindow::new(),
        };
        self.previous = self.current.replace(next);
        Ok(())
    }

    /// Opens a sealed datagram in place and returns the plain datagram inside it. In order, so
    /// that the cheap refusals come first and nothing unauthenticated changes any state:
    ///
    /// 1. the header's length, version and flags ([`SealedHeader::parse`]);
    /// 2. the key of its epoch (current first, then previous);
    /// 3. the replay window, read only: a replayed or too-old counter is refused before any
    ///    cryptography, so a flood of replays costs a load each, not a decryption;
    /// 4. the tag, and decryption;
    /// 5. only then the window records the counter. Committing before the tag would let anyone
    ///    who can send a datagram burn counters (a forged far-future counter would slide the
    ///    window past every genuine datagram in flight).
    ///
    /// The buffer holds garbage past the header when the tag fails. Never panics.
    pub fn open<'a>(&mut self, datagram: &'a mut [u8]) -> Result<Opened<'a>, SealError> {
        let header = SealedHeader::parse(datagram)?;
        let (current, previous) = (self.current_epoch(), self.previous_epoch());
        let matches = |epoch: Option<u32>| epoch.map(epoch_bits) == Some(header.epoch_bits);
        let slot = if matches(current) {
            self.current.as_mut()
        } else if matches(previous) {
            self.previous.as_mut()
        } else {
            None
        };
        let Some(slot) = slot else {
            return Err(SealError::UnknownEpoch {
                epoch_bits: header.epoch_bits,
                current,
                previous,
            });
        };
        let (epoch, counter) = (slot.epoch, header.counter);
        match slot.window.check(counter) {
            Verdict::Fresh => {}
            Verdict::Replay => return Err(SealError::Replay { epoch, counter }),
            Verdict::TooOld { newest } => {
                return Err(SealError::TooOld {
                    epoch,
                    counter,
                    newest,
                });
            }
        }

        let field = counter_field(epoch, counter);
        let (clear, sealed) = datagram.split_at_mut(SEALED_HEADER_LEN);
        let plain_len = aead_open(&slot.key, self.direction.tag(), field, clear, sealed).ok_or(
            SealError::Auth {
                sender: header.sender,
                epoch,
                counter,
            },
        )?;
        // Checked in step 3 with nothing in between, so this records the counter.
        slot.window.commit(counter);

        // A plain header where the counter field was, right in front of the plaintext.
        let version_flags = clear[DATAGRAM_HEADER_LEN - 1] & !FLAG_SEALED;
        clear.copy_within(..DATAGRAM_HEADER_LEN - 1, SEAL_HEADROOM);
        clear[SEALED_HEADER_LEN - 1] = version_flags;
        let end = SEALED_HEADER_LEN + plain_len;
        let datagram: &'a [u8] = datagram;
        debug_assert_eq!(end + SEAL_TAG_LEN, datagram.len());
        Ok(Opened {
            epoch,
            counter,
            datagram: &datagram[SEAL_HEADROOM..end],
        })
    }
}
