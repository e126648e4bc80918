//! The `Ipam` actor: a thin shell over the pure [`Allocator`](crate::ipam::Allocator). It owns
//! the allocator, writes its state to the store before any answer that depends on it, carries
//! its gossip on the `ipam` channel, and answers the HTTP API.

mod actor;
mod snapshot;

pub use actor::{GetIpamSnapshot, Ipam, IpamActorError, IpamConfig, Lookup, Owned, Submit};
