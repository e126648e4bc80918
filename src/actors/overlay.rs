//! The messages the data-plane actors exchange: which overlay carries each peer's traffic (the
//! overlay switch, decided by fastdp heartbeats), what the hot paths learn about MACs, and the
//! MAC table the `MacLearner` publishes. They live here, apart from any one actor, so each actor
//! depends on recipients of these messages rather than on another actor's address.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use actix::Message;

use crate::actors::mac_learner::state::{Location, MacEvent, MacSnapshot};
use crate::actors::supervisor::RecipientSource;
use crate::topology::PeerName;
use crate::wire::MacAddr;

/// How frames reach a peer: the kernel's VXLAN device or the router's UDP sleeve.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Overlay {
    Fastdp,
    Sleeve,
}

impl Overlay {
    /// The name `weave status connections` and the `type` metric label use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fastdp => "fastdp",
            Self::Sleeve => "sleeve",
        }
    }
}

impl fmt::Display for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// From the overlay switch (the `Fastdp` actor): the direct peers the kernel carries our frames
/// to right now. Every other peer is the sleeve's. Sent whole on every switch.
#[derive(Message, Clone, PartialEq, Eq, Debug, Default)]
#[rtype(result = "()")]
pub struct FastdpPeers {
    /// The kernel floods to these peers and the bridge sends their MACs to the VXLAN port.
    pub carried: BTreeSet<PeerName>,
    /// Those of `carried` whose MACs moved to the VXLAN port moments ago: frames the bridge
    /// queued on the sleeve's TAP before the move may still be read there, and the kernel did
    /// not carry them, so the sleeve still sends captured unicast to these peers.
    pub draining: BTreeSet<PeerName>,
}

/// From a hot path to the `MacLearner`: source MACs seen, with where they live.
#[derive(Message, Clone, PartialEq, Eq, Debug, Default)]
#[rtype(result = "()")]
pub struct MacsSeen(pub Vec<(MacAddr, Location)>);

/// From the `MacLearner` to its subscribers: the table after a change, and the changes (a MAC
/// that moved invalidates whatever was programmed for its old location).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct MacTablePublished {
    pub snapshot: Arc<MacSnapshot>,
    pub events: Vec<MacEvent>,
}

/// A subscriber: whichever incarnation of a supervised actor is current (a recipient taken
/// once would point at a dead incarnation after a restart), or a fixed recipient.
pub type Subscriber<M> = Arc<dyn RecipientSource<M>>;

/// The subscribers of one kind of message, shared between an actor's incarnations and whoever
/// registers subscribers (the router's wiring, possibly after the publisher started).
pub struct Subscribers<M: Message<Result = ()> + Send> {
    list: Arc<Mutex<Vec<Subscriber<M>>>>,
}

impl<M: Message<Result = ()> + Send> Clone for Subscribers<M> {
    fn clone(&self) -> Self {
        Self {
            list: self.list.clone(),
        }
    }
}

impl<M: Message<Result = ()> + Send> Default for Subscribers<M> {
    fn default() -> Self {
        Self {
            list: Arc::default(),
        }
    }
}

impl<M: Message<Result = ()> + Send + Clone + 'static> Subscribers<M> {
    pub fn add(&self, subscriber: Subscriber<M>) {
        self.lock().push(subscriber);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offers `message` to every subscriber without waiting (bounded mailboxes: a full one
    /// misses this copy and catches up with the next, as publishers repeat themselves
    /// periodically). Returns how many copies were not delivered.
    pub fn publish(&self, message: &M) -> usize {
        let subscribers: Vec<Subscriber<M>> = self.lock().clone();
        subscribers
            .iter()
            .filter(|subscriber| subscriber.recipient().try_send(message.clone()).is_err())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber<M>>> {
        // A panic while holding the lock leaves a valid Vec behind: keep using it.
        self.list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
