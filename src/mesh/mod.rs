//! The mesh's shared vocabulary: what the link actors, the listener, the connection maker and
//! gossip's pure state all speak of. A link's id, why a link ended ([`ClosingReason`]), and the
//! connection limit with the share of it discovery may fill. It sits below the actors, so that
//! gossip's state names these without importing an actor.

mod closing;
pub mod limit;

use std::sync::atomic::{AtomicU64, Ordering};

pub use closing::ClosingReason;
pub use limit::{ConnectionLimiter, discovery_ceiling};

/// Identifies one link actor within this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl LinkId {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}
