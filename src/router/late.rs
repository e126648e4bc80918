//! Late binding of recipients, for the one cycle in the wiring: gossip tells the connection maker
//! about peers, and the connection maker's links report to gossip. Both are bound before any actor
//! runs, so a lookup never finds the slot empty.

use std::sync::OnceLock;

use crate::actors::connection::{GossipPort, GossipSource, SleeveKeySink, SleeveKeyTarget};
use crate::actors::sleeve::Sleeve;
use crate::actors::supervisor::RecipientSource;
use crate::actors::supervisor::SupervisedAddr;

pub struct LateBound<S> {
    slot: OnceLock<S>,
}

impl<S> LateBound<S> {
    pub fn new() -> Self {
        Self {
            slot: OnceLock::new(),
        }
    }

    pub fn bind(&self, source: S) {
        let _ = self.slot.set(source);
    }

    fn get(&self) -> &S {
        self.slot
            .get()
            .expect("late-bound recipient used before start-up wired it (a bug in Router::run)")
    }
}

impl<M, S> RecipientSource<M> for LateBound<S>
where
    M: actix::Message + Send,
    M::Result: Send,
    S: RecipientSource<M>,
{
    fn recipient(&self) -> actix::Recipient<M> {
        self.get().recipient()
    }
}

/// The sleeve, for the links' keys: it starts after the links' context is made (and links can
/// come up before it does), or not at all. `None` once bound: no sleeve (no data plane, or it
/// failed to start).
pub struct SleeveSlot {
    slot: LateBound<Option<SupervisedAddr<Sleeve>>>,
}

impl SleeveSlot {
    /// A slot for a router that starts a sleeve (`expected`), or one that never will.
    pub fn new(expected: bool) -> Self {
        let slot = LateBound::new();
        if !expected {
            slot.bind(None);
        }
        Self { slot }
    }

    pub fn bind(&self, sleeve: Option<SupervisedAddr<Sleeve>>) {
        self.slot.bind(sleeve);
    }
}

impl SleeveKeySink for SleeveSlot {
    fn target(&self) -> SleeveKeyTarget {
        match self.slot.slot.get() {
            None => SleeveKeyTarget::Starting,
            Some(None) => SleeveKeyTarget::None,
            Some(Some(sleeve)) => SleeveKeyTarget::Sleeve(sleeve.addr().recipient()),
        }
    }
}

impl<S: GossipSource> GossipSource for LateBound<S> {
    fn current(&self) -> GossipPort {
        self.get().current()
    }
}
