//! The `Gossip` actor: the topology, the routes and the named gossip channels.

mod actor;
pub mod messages;
pub mod state;
pub mod view;

pub use actor::Gossip;
#[cfg(test)]
pub use actor::InjectPanic;
pub use view::{GossipView, ViewSender};
