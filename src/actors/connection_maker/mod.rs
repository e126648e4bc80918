//! The `ConnectionMaker` actor: owns the targets (command line, `connect`, discovery) and dials
//! them with jittered exponential backoff.

mod actor;
pub mod state;
mod target_address;

pub use actor::{Connect, ConnectionMaker, Forget, GetTargets, MakerConfig, TargetsView};
