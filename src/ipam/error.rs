//! The errors of the IPAM core, one enum per part: parsing addresses and CIDRs, editing and
//! merging the ring, and the local space. Each variant carries the values an operator needs to
//! see what went wrong (which range, which peer, which address).

use super::{Address, AddressRange, Cidr};
use crate::topology::PeerName;

/// A malformed address or CIDR, from a flag, an HTTP path or a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("invalid IPv4 address {input:?}")]
    InvalidAddress { input: String },
    #[error("invalid CIDR {input:?}: {why}")]
    InvalidCidr { input: String, why: &'static str },
    #[error("prefix length /{prefix_len} is over 32")]
    PrefixTooLong { prefix_len: u8 },
    #[error("{addr}/{prefix_len} has host bits set (the network is {network}/{prefix_len})")]
    HostBitsSet {
        addr: Address,
        prefix_len: u8,
        network: Address,
    },
    #[error("/{prefix_len} holds fewer than {min} addresses", min = super::address::MIN_CIDR_SIZE)]
    TooSmall { prefix_len: u8 },
    #[error("{addr}/{prefix_len} reaches 255.255.255.255, which no allocation range may include")]
    ReachesTopOfAddressSpace { addr: Address, prefix_len: u8 },
}

/// Why the ring refused an edit or an incoming ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Two rings created independently (split brain at start-up, or clusters joined later).
    /// Gossip must drop the connection: merging them would give addresses two owners.
    #[error("IP allocation was seeded by different peers (received: {theirs:?}, ours: {ours:?})")]
    DifferentSeeds {
        ours: Vec<PeerName>,
        theirs: Vec<PeerName>,
    },
    #[error("incompatible IP allocation ranges (received: {theirs}, ours: {ours})")]
    DifferentRange { ours: Cidr, theirs: Cidr },
    /// The incoming ring breaks an invariant every ring keeps; it was not made by a Weft peer
    /// or it was damaged on the way.
    #[error("received ring is malformed: {why}")]
    Malformed { why: &'static str },
    /// The incoming ring gives away part of our range in which we have allocated addresses.
    /// Accepting it would give those addresses two owners.
    #[error(
        "peer {claimant} says it owns the IP range {range}, which I own and have addresses allocated in"
    )]
    ClaimsOwnedRange {
        range: AddressRange,
        claimant: PeerName,
    },
    #[error("the ring is already established; only an empty ring can be claimed")]
    AlreadyClaimed,
    #[error("no peers to claim the ring for")]
    NoPeers,
    #[error("the ring is not established yet")]
    NotEstablished,
    #[error("cannot grant an empty range")]
    EmptyRange,
    #[error("{range} is not inside the allocation range {universe}")]
    OutOfRange { range: AddressRange, universe: Cidr },
    #[error("cannot grant {range}: {address} is owned by {owner}, not by us")]
    NotOurs {
        range: AddressRange,
        address: Address,
        owner: PeerName,
    },
}

/// Why the local space refused a claim, a free or a release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    #[error("address {address} is not in a range this peer owns")]
    NotOwned { address: Address },
    #[error("address {address} is already allocated")]
    AlreadyAllocated { address: Address },
    #[error("address {address} is not allocated")]
    NotAllocated { address: Address },
    #[error("{range} is not entirely owned by this peer ({address} is not)")]
    RangeNotOwned {
        range: AddressRange,
        address: Address,
    },
    #[error("{range} has allocated addresses (the first is {address})")]
    RangeHasAllocations {
        range: AddressRange,
        address: Address,
    },
}

/// Why the allocator refused a request, could not start from persisted state, or could not
/// encode or decode a gossip message. The HTTP API shows the message as it is, so each variant
/// names the address, subnet, identifier or peer concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("the default subnet {subnet} is not inside the allocation range {range}")]
    DefaultSubnetOutsideRange { subnet: Cidr, range: Cidr },
    #[error("--ipalloc-init=seed needs at least one peer name")]
    EmptySeedList,
    #[error("subnet {subnet} is not inside the allocation range {range}")]
    SubnetOutsideRange { subnet: Cidr, range: Cidr },
    #[error("address {address} is not inside the allocation range {range}")]
    AddressOutsideRange { address: Address, range: Cidr },
    #[error("address {address} is not a host address of subnet {subnet}")]
    AddressOutsideSubnet { address: Address, subnet: Cidr },
    #[error("address {address} is already owned by {ident}")]
    AddressInUse { address: Address, ident: String },
    #[error("address {address} is owned by other peer {peer} and in use")]
    OwnedByOtherPeerInUse { address: Address, peer: PeerName },
    #[error(
        "address {address} is owned by other peer {peer}, which stayed unreachable for \
         {attempts} attempts (use 'rmpeer' if it is dead)"
    )]
    OwnerUnreachable {
        address: Address,
        peer: PeerName,
        attempts: u32,
    },
    #[error("address {address} is held by {holder}, not by {ident}")]
    AddressHeldByOther {
        address: Address,
        ident: String,
        holder: String,
    },
    #[error("invalid ident {shown}: {why}")]
    InvalidIdent { shown: String, why: &'static str },
    #[error("request for {ident} cancelled: {why}")]
    Cancelled { ident: String, why: &'static str },
    #[error("cannot remove peer {peer}: it is this peer (use 'reset' instead)")]
    CannotRemoveSelf { peer: PeerName },
    #[error("cannot remove peer {peer}: it is reachable, so it may still be allocating")]
    PeerIsLive { peer: PeerName },
    #[error("unknown peer {input:?}: neither a peer name nor a known nickname")]
    UnknownPeer { input: String },
    #[error("nickname {nickname:?} is shared by peers {peers:?}; give the peer name instead")]
    AmbiguousNickname {
        nickname: String,
        peers: Vec<PeerName>,
    },
    #[error(
        "no reachable peer to hand our IP ranges to (other owners: {owners:?}); they stay ours"
    )]
    NoLiveHeir { owners: Vec<PeerName> },
    #[error(
        "persisted IPAM data is for range {persisted}, but the range is now {configured}; \
         delete the persisted data to start afresh"
    )]
    PersistedRangeMismatch { persisted: Cidr, configured: Cidr },
    #[error("persisted ring is unusable: {0}")]
    PersistedRing(#[source] RingError),
    #[error("persisted allocations exist ({count} addresses) but no persisted ring")]
    PersistedAllocationsWithoutRing { count: usize },
    #[error("persisted address {address} of {ident} is not in a range the persisted ring gives us")]
    PersistedAddressNotOwned { address: Address, ident: String },
    #[error("persisted address {address} is held twice (by {first} and by {second})")]
    PersistedAddressTwice {
        address: Address,
        first: String,
        second: String,
    },
    #[error("IPAM message of {len} bytes is over the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    #[error("cannot encode IPAM message: {why}")]
    EncodeMessage { why: String },
    #[error("cannot decode IPAM message: {why}")]
    DecodeMessage { why: String },
}
