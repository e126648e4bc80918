//! The control plane: one actor per subsystem and one per peer link, exchanging typed messages.

pub mod connection_maker;
