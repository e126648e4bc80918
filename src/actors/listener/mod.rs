//! The `Listener` actor and the bound on handshakes under way. The connection limit it enforces
//! is the mesh's ([`crate::mesh::limit`]), shared with the connection maker and gossip.

mod actor;
mod pending;

pub use crate::mesh::{ConnectionLimiter, discovery_ceiling};
pub use actor::Listener;
pub use pending::{PendingFull, PendingHandshakes, PendingPermit};
