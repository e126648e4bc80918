//! [`SleeveKeys`]: the keys of a sleeve with a mesh password, per neighbour: the key we seal
//! datagrams to it with, and the keys (current and previous epoch, each with its replay window)
//! we open its datagrams with. Links agree on the keys inside their Noise channel and the
//! `Sleeve` actor installs them here; the hot path's threads seal and open through it. It lives
//! as long as the router, so an engine restarted after a failure keeps every key.
//!
//! One mutex per direction: the receive thread alone opens (the lock is uncontended but for a
//! rare install), and sealing is shared by both threads (relays) and the actor (heartbeats,
//! probes), which the counter requires: no two datagrams may ever get one counter under a key.
//! A lock costs tens of nanoseconds, a ChaCha20-Poly1305 pass over a 1,400-byte datagram about a
//! microsecond.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::stats::DropCause;
use crate::topology::PeerName;
use crate::wire::sleeve::seal::{
    Direction, Opened, OpeningKeys, SealError, SealedHeader, SealingKey, SleeveKey,
};

/// Why a datagram could not be sealed or opened, as the drop counter files it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key for that peer yet (its link's agreement has not finished) or any more.
    #[error("no sleeve key for {peer}")]
    NoKey { peer: PeerName },
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl KeyError {
    /// The drop cause of a datagram that failed with this error.
    pub fn cause(&self) -> DropCause {
        match self {
            KeyError::NoKey { .. } => DropCause::NoKey,
            KeyError::Seal(SealError::Replay { .. } | SealError::TooOld { .. }) => {
                DropCause::Replay
            }
            KeyError::Seal(SealError::Malformed { .. }) => DropCause::MalformedDatagram,
            KeyError::Seal(_) => DropCause::Auth,
        }
    }
}

/// Keys of one link: a newer link to the same peer replaces them whole.
struct PerLink<T> {
    link_id: u64,
    keys: T,
}

/// The sleeve's keys for every neighbour.
#[derive(Default)]
pub struct SleeveKeys {
    sealing: Mutex<HashMap<PeerName, PerLink<SealingKey>>>,
    opening: Mutex<HashMap<PeerName, PerLink<OpeningKeys>>>,
}

impl std::fmt::Debug for SleeveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SleeveKeys").finish_non_exhaustive()
    }
}

/// A poisoned lock only means a thread panicked while holding it; the maps stay consistent
/// (every update is one insert or remove), so the keys are used as they are.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SleeveKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs `peer`'s key (sealing in `direction`) for opening its datagrams on link
    /// `link_id`. A key of a new link starts the peer's keys afresh.
    pub fn install_opening(
        &self,
        peer: PeerName,
        link_id: u64,
        direction: Direction,
        key: &SleeveKey,
    ) -> Result<(), SealError> {
        let mut opening = lock(&self.opening);
        let entry = opening.entry(peer).or_insert_with(|| PerLink {
            link_id,
            keys: OpeningKeys::new(direction),
        });
        if entry.link_id != link_id {
            *entry = PerLink {
                link_id,
                keys: OpeningKeys::new(direction),
            };
        }
        entry.keys.install(key)
    }

    /// Seals datagrams to `peer` with `key` from now on (the peer acknowledged it).
    pub fn install_sealing(
        &self,
        peer: PeerName,
        link_id: u64,
        direction: Direction,
        key: &SleeveKey,
        now: Instant,
    ) {
        let keys = SealingKey::new(key, direction, now);
        lock(&self.sealing).insert(peer, PerLink { link_id, keys });
    }

    /// The link `link_id` to `peer` ended: its keys go, unless a newer link replaced them.
    pub fn forget(&self, peer: PeerName, link_id: u64) {
        let mut sealing = lock(&self.sealing);
        if sealing
            .get(&peer)
            .is_some_and(|keys| keys.link_id == link_id)
        {
            sealing.remove(&peer);
        }
        drop(sealing);
        let mut opening = lock(&self.opening);
        if opening
            .get(&peer)
            .is_some_and(|keys| keys.link_id == link_id)
        {
            opening.remove(&peer);
        }
    }

    /// Seals the plain datagram in `buffer` for `peer` where it lies: `buffer` is
    /// `SEAL_HEADROOM` bytes, the datagram, `SEAL_TAG_LEN` bytes (see
    /// [`SealingKey::seal_in_place`]).
    pub fn seal(&self, peer: PeerName, buffer: &mut [u8]) -> Result<(), KeyError> {
        let mut sealing = lock(&self.sealing);
        let key = sealing.get_mut(&peer).ok_or(KeyError::NoKey { peer })?;
        key.keys.seal_in_place(buffer)?;
        Ok(())
    }

    /// Opens a sealed datagram in place with the keys of the sender its clear header names.
    pub fn open<'a>(&self, datagram: &'a mut [u8]) -> Result<Opened<'a>, KeyError> {
        let sender = SealedHeader::parse(datagram)?.sender;
        let mut opening = lock(&self.opening);
        // No key for the sender: whoever sent it cannot be told from a forger.
        let keys = opening
            .get_mut(&sender)
            .ok_or(KeyError::Seal(SealError::Auth {
                sender,
                epoch: 0,
                counter: 0,
            }))?;
        Ok(keys.keys.open(datagram)?)
    }
}

#[cfg(test)]
mod tests;
