//! The sleeve's key agreement on one link, sans-IO: with a mesh password, each end draws a random
//! [`SleeveKey`] for the datagrams it sends, delivers it inside the link's Noise channel, and
//! seals with it only once the peer acknowledged it; the peer acknowledges only after its sleeve
//! installed the key for opening. So no datagram is ever sealed under a key its receiver does not
//! hold yet. Rekeying repeats the same steps with the next epoch every `rekey_after` (120 s,
//! [`REKEY_AFTER_TIME`]) while the old key keeps sealing until the acknowledgement; the receiver
//! keeps the previous epoch open ([`crate::wire::sleeve::seal::OpeningKeys`]) for datagrams
//! still in flight, so a rekey loses nothing.
//!
//! The other rekey trigger of the datagram format, 2^32 datagrams under one key, cannot come
//! first: 2^32 datagrams in 120 s is 36 million a second, several times what the sleeve sends at
//! line rate, so the time limit alone is checked here.

use std::time::{Duration, Instant};

use crate::mesh::ClosingReason;
use crate::wire::sleeve::seal::{Direction, SleeveKey};
use crate::wire::{ProtocolMsg, SleeveKeyBytes};

pub use crate::wire::sleeve::seal::REKEY_AFTER_TIME;

/// Which side of the sleeve a key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// The peer's key: our sleeve opens its datagrams with it.
    Opening,
    /// Our key: our sleeve seals datagrams to the peer with it.
    Sealing,
}

/// What the link must do for its sleeve keys, in order.
#[derive(Debug, PartialEq)]
pub enum KeyingOutput {
    /// Send this message to the peer, inside the Noise channel.
    Send(ProtocolMsg),
    /// Hand `key` to the sleeve, then report with [`SleeveKeying::installed`].
    Install {
        role: KeyRole,
        direction: Direction,
        key: SleeveKey,
    },
}

/// The key agreement of one link with a password.
#[derive(Debug)]
pub struct SleeveKeying {
    /// Our sending direction: which end of the link we are.
    sending: Direction,
    rekey_after: Duration,
    /// The epoch our next key gets.
    next_epoch: u32,
    /// The key we sent and the peer has not acknowledged yet.
    offered: Option<SleeveKey>,
    /// The key handed to the sleeve for sealing, not yet reported installed.
    installing: Option<u32>,
    /// The epoch we seal with and since when.
    sealing: Option<(u32, Instant)>,
    /// The newest epoch of the peer's keys we accepted.
    opening: Option<u32>,
}

impl SleeveKeying {
    /// The agreement of a link we dialled (`dialler`) or accepted; nothing happens until
    /// [`Self::start`].
    pub fn new(dialler: bool, rekey_after: Duration) -> Self {
        Self {
            sending: if dialler {
                Direction::FromDialler
            } else {
                Direction::FromAcceptor
            },
            rekey_after,
            next_epoch: 0,
            offered: None,
            installing: None,
            sealing: None,
            opening: None,
        }
    }

    fn receiving(&self) -> Direction {
        match self.sending {
            Direction::FromDialler => Direction::FromAcceptor,
            Direction::FromAcceptor => Direction::FromDialler,
        }
    }

    /// The epoch our sleeve seals with now, once the first key was acknowledged.
    pub fn sealing_epoch(&self) -> Option<u32> {
        self.sealing.map(|(epoch, _)| epoch)
    }

    /// The newest epoch of the peer's keys we installed.
    pub fn opening_epoch(&self) -> Option<u32> {
        self.opening
    }

    /// The link is up: offer our first key.
    pub fn start(&mut self) -> Result<Vec<KeyingOutput>, ClosingReason> {
        self.offer()
    }

    /// When [`Self::poll`] must run next: the current key's rekey time, unless a new key is
    /// already on its way.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.offered.is_some() || self.installing.is_some() {
            return None;
        }
        self.sealing.map(|(_, since)| since + self.rekey_after)
    }

    /// Offers the next key when the current one is due.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<KeyingOutput>, ClosingReason> {
        match self.next_deadline() {
            Some(due) if now >= due => self.offer(),
            _ => Ok(Vec::new()),
        }
    }

    /// A key message from the peer. A malformed key, or one not newer than the last, is a
    /// protocol error: the channel is ordered and authenticated, so only a broken peer sends it.
    pub fn on_message(&mut self, msg: &ProtocolMsg) -> Result<Vec<KeyingOutput>, ClosingReason> {
        match msg {
            ProtocolMsg::SleeveKey { key } => {
                let key = SleeveKey::decode(key.as_bytes())
                    .map_err(|err| ClosingReason::Protocol(err.to_string()))?;
                if self.opening.is_some_and(|newest| key.epoch <= newest) {
                    return Err(ClosingReason::Protocol(format!(
                        "sleeve key for epoch {} is not newer than epoch {:?}",
                        key.epoch, self.opening
                    )));
                }
                Ok(vec![KeyingOutput::Install {
                    role: KeyRole::Opening,
                    direction: self.receiving(),
                    key,
                }])
            }
            ProtocolMsg::SleeveKeyAck { epoch } => {
                let offered = self
                    .offered
                    .take_if(|key| key.epoch == *epoch)
                    .ok_or_else(|| {
                        ClosingReason::Protocol(format!(
                            "acknowledgement of sleeve key epoch {epoch}, which was not offered"
                        ))
                    })?;
                self.installing = Some(offered.epoch);
                Ok(vec![KeyingOutput::Install {
                    role: KeyRole::Sealing,
                    direction: self.sending,
                    key: offered,
                }])
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The sleeve installed the key of `epoch` for `role` at `now`: an opening key is
    /// acknowledged to the peer; a sealing key starts its rekey clock.
    pub fn installed(&mut self, role: KeyRole, epoch: u32, now: Instant) -> Vec<KeyingOutput> {
        match role {
            KeyRole::Opening => {
                self.opening = Some(epoch);
                vec![KeyingOutput::Send(ProtocolMsg::SleeveKeyAck { epoch })]
            }
            KeyRole::Sealing => {
                if self.installing == Some(epoch) {
                    self.installing = None;
                    self.sealing = Some((epoch, now));
                }
                Vec::new()
            }
        }
    }

    fn offer(&mut self) -> Result<Vec<KeyingOutput>, ClosingReason> {
        let epoch = self.next_epoch;
        self.next_epoch = epoch
            .checked_add(1)
            .ok_or_else(|| ClosingReason::Protocol("sleeve key epochs exhausted".into()))?;
        let key = SleeveKey::random(epoch);
        let encoded = key
            .encode()
            .map_err(|err| ClosingReason::Protocol(err.to_string()))?;
        let msg = ProtocolMsg::SleeveKey {
            key: SleeveKeyBytes::new(&encoded),
        };
        self.offered = Some(key);
        Ok(vec![KeyingOutput::Send(msg)])
    }
}

#[cfg(test)]
mod tests;
