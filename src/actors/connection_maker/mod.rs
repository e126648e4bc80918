//! The `ConnectionMaker` actor: owns the targets (command line, `connect`, discovery) and dials
//! them with jittered exponential backoff, what gossip makes it dial within bounds.

mod actor;
mod discovery_limits;
pub mod mesh_graph;
pub mod rebalance;
pub mod state;
mod target;
mod target_address;

pub use actor::{
    Connect, ConnectionMaker, Forget, GetTargets, MakerConfig, Rebalancing, TargetsView,
};
