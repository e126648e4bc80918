//! Late binding of recipients, for the one cycle in the wiring: gossip tells the connection maker
//! about peers, and the connection maker's links report to gossip. Both are bound before any actor
//! runs, so a lookup never finds the slot empty.

use std::sync::OnceLock;

use crate::actors::connection::{GossipPort, GossipSource, SleeveKeySink, SleeveKeyUpdate};
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

/// The sleeve starts after the links' context is made, and not at all without a data plane:
/// until it is bound, keys are agreed but installed nowhere.
impl SleeveKeySink for LateBound<SupervisedAddr<Sleeve>> {
    fn recipient(&self) -> Option<actix::Recipient<SleeveKeyUpdate>> {
        self.slot.get().map(|sleeve| sleeve.addr().recipient())
    }
}

impl<S: GossipSource> GossipSource for LateBound<S> {
    fn current(&self) -> GossipPort {
        self.get().current()
    }
}
