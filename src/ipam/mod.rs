//! IP address management, the pure core: one cluster-wide range (default 10.32.0.0/12) divided
//! into contiguous parts, each owned by one peer. Who owns what is a CRDT (the [`Ring`]) that
//! every peer holds and gossips; what this peer owns and has handed out is its [`Space`].
//! No I/O, no clock: the IPAM actor drives these and does the gossip, persistence and HTTP.
//!
//! Keeping the two in step is the caller's job, and the ring's safety rests on it. After each of
//! these, the space owns exactly `ring.owned_ranges(ring.local())`:
//! - start: `ring.claim_for_peers(..)`, then `space.add_ranges(&ring.owned_ranges(local))`;
//! - a peer asks for space: `space.donate(subnet)`, then `ring.grant_range(block, asker)`;
//! - a peer asks for one address we own: `space.release(single)`, then `ring.grant_range`;
//! - gossip arrives: `ring.merge(&state, |r| space.has_allocations_in(r))`, then
//!   `space.add_ranges(&outcome.gained)` and `space.release(r)` for each of `outcome.lost`;
//! - `rmpeer`: `space.add_ranges(&ring.remove_peer(dead))`;
//! - `reset`: `ring.transfer(local, heir)`, then `space.clear()`;
//! - after any change of allocations: `ring.report_free(|r| space.free_in(r))`.
//!
//! On top of the core, the [`Allocator`] is the state machine the IPAM actor drives (requests,
//! gossip, topology, ticks in; persist, gossip, replies out), following these rules; its gossip
//! messages are in [`messages`], and [`paxos`] decides who shares the range at first.

mod address;
mod allocator;
pub mod durable;
mod error;
mod ident;
pub mod messages;
pub mod paxos;
mod range_set;
mod ring;
mod ring_merge;
mod space;

pub use address::{Address, AddressRange, Cidr, DEFAULT_RANGE, MIN_CIDR_SIZE};
pub use allocator::api::{
    AddressCidr, AllocatorConfig, Effect, InitMode, PersistedState, Reply, Request, RequestId,
};
pub use allocator::{
    Allocator, CONFLICT_REPORT_INTERVAL, FREE_REPORT_INTERVAL, IpamState, IpamStatus,
    PeerShareStatus, RING_REGOSSIP_INTERVAL,
};
pub use error::{AddressError, IpamError, RingError, SpaceError};
pub use ident::{MAX_IDENT_BYTES, check_ident};
pub use messages::{ClaimDenial, IpamMessage, MAX_MESSAGE_BYTES, decode_message, encode_message};
pub use paxos::{Paxos, PaxosState, quorum_for};
pub use ring::{
    Entry, GRANT_VERSION_BUMP, PeerShare, Removal, Removals, Ring, RingState, TRANSFER_VERSION_BUMP,
};
pub use ring_merge::MergeOutcome;
pub use space::Space;
