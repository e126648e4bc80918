//! The `MacLearner` actor's logic: the MAC → peer table the overlays forward by. The sleeve and
//! fastdp hot paths report the source MACs they see in batches and read the published
//! [`state::MacSnapshot`] without locks; frames never pass through the actor.

pub mod state;
