//! The `MacLearner` actor: the shell that keeps the MAC → peer table the overlays forward by. The
//! sleeve and fastdp hot paths (and the kernel's VXLAN learning, via the `Fastdp` actor) report
//! the source MACs they see in batches and read the published [`state::MacSnapshot`] without
//! locks; frames never pass through the actor.
//!
//! Its state machine is the data plane's [`crate::dataplane::mac_table`]: the sleeve's hot path
//! forwards by the table's types, so the table sits below the actors; `state` names it here.

pub mod actor;
pub mod journal;
pub use crate::dataplane::mac_table as state;

pub use actor::{GetMacTable, MacLearner, MacRow};
