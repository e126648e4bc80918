//! The `Listener` actor and the connection limit it enforces.

mod actor;
mod limiter;

pub use actor::Listener;
pub use limiter::{ConnectionLimiter, discovery_ceiling};
