//! The control plane: one actor per subsystem and one per peer link, exchanging typed messages.
//! Long-lived actors run under [`supervisor::SupervisedAddr`]; links are short-lived and re-dialled by
//! the connection maker.

pub mod connection;
pub mod connection_maker;
pub mod fastdp;
pub mod gossip;
pub mod ipam;
pub mod listener;
pub mod log_limit;
pub mod mac_learner;
pub mod overlay;
pub mod sleeve;
pub mod supervisor;
#[cfg(test)]
pub(crate) mod test_support;
