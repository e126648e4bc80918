//! The `MacLearner` actor and its logic: the MAC → peer table the overlays forward by. The sleeve
//! and fastdp hot paths (and the kernel's VXLAN learning, via the `Fastdp` actor) report the
//! source MACs they see in batches and read the published [`state::MacSnapshot`] without locks;
//! frames never pass through the actor.

pub mod actor;
pub mod journal;
pub mod state;

pub use actor::{GetMacTable, MacLearner, MacRow};
