//! The `Listener` actor, the connection limit it enforces and the bound on handshakes under way.

mod actor;
mod limiter;
mod pending;

pub use actor::Listener;
pub use limiter::{ConnectionLimiter, discovery_ceiling};
pub use pending::{PendingFull, PendingHandshakes, PendingPermit};
