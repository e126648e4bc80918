//! Messages the `Gossip` actor handles.

use actix::{Message, Recipient};

use super::state::{GossipError, LinkView, NewLink};
use crate::actors::connection::Outgoing;
use crate::mesh::{ClosingReason, LinkId};
use crate::topology::{PeerName, PeerRecord, Routes};
use crate::wire::ProtocolMsg;

/// A link finished its handshake: register it (or refuse it as a duplicate).
#[derive(Message)]
#[rtype(result = "Result<(), ClosingReason>")]
pub struct RegisterLink {
    pub link: NewLink,
    pub outbox: Recipient<Outgoing>,
}

#[derive(Message)]
#[rtype(result = "Result<(), GossipError>")]
pub struct LinkEstablished(pub LinkId);

#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkClosed(pub LinkId);

/// A message (not a heartbeat) received on a registered link.
#[derive(Message)]
#[rtype(result = "Result<(), GossipError>")]
pub struct Received {
    pub link: LinkId,
    pub msg: ProtocolMsg,
}

/// Gossip of a subsystem's channel (e.g. IPAM), delivered to the handler registered for it.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ChannelGossip {
    pub channel: String,
    pub source: PeerName,
    pub payload: Vec<u8>,
}

/// Registers the handler of a named gossip channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterChannel {
    pub channel: String,
    pub handler: Recipient<ChannelGossip>,
}

/// Where a subsystem's gossip goes.
#[derive(Clone, Copy, Debug)]
pub enum Audience {
    /// One peer, relayed hop by hop along the unicast routes.
    Peer(PeerName),
    /// Every peer, along our broadcast tree.
    Everyone,
    /// A random subset of our neighbours (the channel's handlers pass on what is new).
    Neighbours,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SendChannelGossip {
    pub channel: String,
    pub audience: Audience,
    pub payload: Vec<u8>,
}

/// Everything the status and report show about the mesh.
#[derive(Clone, Debug)]
pub struct GossipStatus {
    pub peers: Vec<PeerRecord>,
    pub routes: Routes,
    pub links: Vec<LinkView>,
}

#[derive(Message)]
#[rtype(result = "GossipStatus")]
pub struct GetGossipStatus;

/// Sent to the connection maker whenever our links or the known peers change.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct PeersChanged {
    pub connected: std::collections::BTreeSet<PeerName>,
    pub discovered: Vec<(PeerName, std::net::SocketAddr)>,
    /// Every known peer's address, linked or not.
    pub addresses: Vec<(PeerName, std::net::SocketAddr)>,
}

/// Close our link to `peer`: its IPAM ring belongs to another cluster, or no overlay path to it
/// works.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClosePeerLink {
    pub peer: PeerName,
    pub reason: ClosingReason,
}
