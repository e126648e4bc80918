//! The data plane: how pod frames get from one node to another.
//!
//! - [`sleeve`]: the userspace path, frames batched into UDP datagrams (sans-IO parts).

pub mod sleeve;
