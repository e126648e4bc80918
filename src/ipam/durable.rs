//! The allocator kept in step with its disk: restored from the bytes the store holds, and run on
//! the rule that nothing depending on a state is said (replies, gossip) before that state is
//! written. The IPAM actor owns the store and the waiting callers; this owns the rule.
//!
//! Design choice: the allocator is cloned before each call, and when the call's
//! [`Effect::Persist`] cannot be written the clone, which is what the disk holds, replaces it.
//! Memory then never runs ahead of the disk, so a retried or repeated request cannot be answered
//! from an allocation a restart would lose. The call's other effects are dropped: its gossip is
//! not sent (a donation that was not written must not be announced), and every request it
//! answered, and the one submitted with it, is refused with the write error and cancelled in the
//! allocator, where it may still wait from before the call. A clone costs about what encoding the
//! state for `Persist` costs, which every change pays.

use std::collections::BTreeSet;

use super::{Allocator, AllocatorConfig, Effect, IpamError, PersistedState, RequestId};

/// Why the stored state cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Refusing to start is safer than handing out addresses twice.
    #[error("the stored IPAM state cannot be decoded ({0})")]
    Undecodable(#[from] rmp_serde::decode::Error),
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// A change in whether the state can be written, for the log (once per change, not per call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteHealth {
    Failing(String),
    Recovered,
}

/// What a call leaves the caller to do, in this order.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Changes of the write health, to log.
    pub health: Vec<WriteHealth>,
    /// Requests to answer with this write error (their callers wait for nothing more).
    pub refused: Vec<(RequestId, String)>,
    /// Effects whose state is on disk, to carry out in order; no `Persist` among them.
    pub effects: Vec<Effect>,
}

impl Outcome {
    fn extend(&mut self, other: Outcome) {
        self.health.extend(other.health);
        self.refused.extend(other.refused);
        self.effects.extend(other.effects);
    }
}

/// The state as the store keeps it.
pub fn encode_state(state: &PersistedState) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(state).map_err(|err| err.to_string())
}

/// The allocator and whether its last write failed.
pub struct DurableAllocator {
    allocator: Allocator,
    write_failing: bool,
}

impl DurableAllocator {
    /// The allocator from what the store holds (`None`: a fresh peer).
    pub fn restore(config: AllocatorConfig, stored: Option<&[u8]>) -> Result<Self, RestoreError> {
        let state = stored
            .map(rmp_serde::from_slice::<PersistedState>)
            .transpose()?;
        Ok(Self {
            allocator: Allocator::new(config, state)?,
            write_failing: false,
        })
    }

    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Runs one call of the allocator; `write` stores the encoded state.
    pub fn run(
        &mut self,
        submitted: Option<RequestId>,
        call: impl FnOnce(&mut Allocator) -> Vec<Effect>,
        write: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Outcome {
        let on_disk = self.allocator.clone();
        let effects = call(&mut self.allocator);
        self.settle(submitted, on_disk, effects, write)
    }

    /// Writes the state a call's effects carry, or puts back the allocator `on_disk` when that
    /// fails.
    fn settle(
        &mut self,
        submitted: Option<RequestId>,
        on_disk: Allocator,
        effects: Vec<Effect>,
        write: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Outcome {
        let written = effects.iter().find_map(|effect| match effect {
            Effect::Persist(state) => Some(encode_state(state).and_then(|bytes| write(&bytes))),
            _ => None,
        });
        let mut outcome = Outcome::default();
        match written {
            Some(Err(err)) => {
                self.allocator = on_disk;
                if !self.write_failing {
                    self.write_failing = true;
                    outcome.health.push(WriteHealth::Failing(err.clone()));
                }
                let answered = effects.into_iter().filter_map(|effect| match effect {
                    Effect::Reply { id, .. } => Some(id),
                    _ => None,
                });
                let ids: BTreeSet<RequestId> = answered.chain(submitted).collect();
                for id in ids {
                    outcome.refused.push((id, err.clone()));
                    let on_disk = self.allocator.clone();
                    let effects = self.allocator.cancel(id);
                    outcome.extend(self.settle(None, on_disk, effects, write));
                }
            }
            Some(Ok(())) => {
                if std::mem::take(&mut self.write_failing) {
                    outcome.health.push(WriteHealth::Recovered);
                }
                outcome.effects = without_persist(effects);
            }
            None => outcome.effects = without_persist(effects),
        }
        outcome
    }
}

fn without_persist(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .filter(|effect| !matches!(effect, Effect::Persist(_)))
        .collect()
}

#[cfg(test)]
mod tests;
