//! Where the gossip state's messages go: a local subsystem's gossip to one peer (unicast
//! routes), to every peer (our broadcast tree) or to a random subset of neighbours, and topology
//! updates cut into frame-sized messages for 2·log2(peers) random neighbours.

use std::sync::Arc;

use rand::seq::IndexedRandom;
use serde_bytes::ByteBuf;

use super::{Effect, GossipState, TOPOLOGY_CHANNEL};
use crate::mesh::LinkId;
use crate::topology::{PeerName, PeerRecord};
use crate::wire::{ProtocolMsg, encode_topology_pieces};

impl GossipState {
    /// Sends gossip of a local subsystem to one peer, along the unicast routes.
    pub fn send_unicast(&mut self, channel: &str, dest: PeerName, payload: Vec<u8>) -> Vec<Effect> {
        let local = self.local_name();
        let Some(link) = self.next_hop_link(dest) else {
            return Vec::new();
        };
        vec![Effect::Send {
            link,
            msg: Arc::new(ProtocolMsg::GossipUnicast {
                channel: channel.to_string(),
                source: local,
                dest,
                payload: ByteBuf::from(payload),
            }),
        }]
    }

    /// Sends gossip of a local subsystem to every peer, along our broadcast tree.
    pub fn send_broadcast(&mut self, channel: &str, payload: Vec<u8>) -> Vec<Effect> {
        let local = self.local_name();
        let msg = Arc::new(ProtocolMsg::GossipBroadcast {
            channel: channel.to_string(),
            source: local,
            payload: ByteBuf::from(payload),
        });
        self.broadcast_children(local)
            .into_iter()
            .map(|link| Effect::Send {
                link,
                msg: Arc::clone(&msg),
            })
            .collect()
    }

    /// Sends gossip of a local subsystem to a random subset of our neighbours, who merge it and
    /// pass on what was new to them (the channel's own business).
    pub fn send_to_neighbours(&mut self, channel: &str, payload: Vec<u8>) -> Vec<Effect> {
        self.send_to_random_neighbours(ProtocolMsg::Gossip {
            channel: channel.to_string(),
            payload: ByteBuf::from(payload),
        })
    }

    /// Sends `records` to a random subset of neighbours.
    pub(super) fn gossip_to_random_neighbours(&mut self, records: &[PeerRecord]) -> Vec<Effect> {
        if records.is_empty() {
            return Vec::new();
        }
        let (messages, mut effects) = topology_messages(records);
        effects.extend(self.send_all_to_random_neighbours(messages));
        effects
    }

    pub(super) fn send_to_random_neighbours(&mut self, msg: ProtocolMsg) -> Vec<Effect> {
        self.send_all_to_random_neighbours(vec![msg])
    }

    /// Sends `messages` to 2·log2(peers) random neighbours, as Weave Net's
    /// `GossipNeighbourSubset` picks them, so that the cost of spreading a change stays
    /// logarithmic in the mesh size. The pieces of one update go to the same neighbours.
    fn send_all_to_random_neighbours(&mut self, messages: Vec<ProtocolMsg>) -> Vec<Effect> {
        let peers = self.topology.len().max(2) as f64;
        let fanout = ((2.0 * peers.log2()).ceil() as usize).max(1);
        let links: Vec<LinkId> = self.links.values().map(|entry| entry.id).collect();
        let chosen: Vec<LinkId> = links
            .choose_multiple(&mut self.rng, fanout.min(links.len()))
            .copied()
            .collect();
        let messages: Vec<Arc<ProtocolMsg>> = messages.into_iter().map(Arc::new).collect();
        chosen
            .into_iter()
            .flat_map(|link| {
                messages.iter().map(move |msg| Effect::Send {
                    link,
                    msg: Arc::clone(msg),
                })
            })
            .collect()
    }

    pub(super) fn next_hop_link(&mut self, dest: PeerName) -> Option<LinkId> {
        self.refresh_routes();
        let hop = self.routes.unicast_all(dest)?;
        self.links.get(&hop).map(|entry| entry.id)
    }

    pub(super) fn broadcast_children(&mut self, source: PeerName) -> Vec<LinkId> {
        self.refresh_routes();
        self.routes
            .broadcast_all(source)
            .iter()
            .filter_map(|peer| self.links.get(peer).map(|entry| entry.id))
            .collect()
    }
}

/// The topology channel's messages carrying `records`, each within the size a frame may carry,
/// and a [`Effect::RecordTooLarge`] for each record none can.
pub(super) fn topology_messages(records: &[PeerRecord]) -> (Vec<ProtocolMsg>, Vec<Effect>) {
    let (pieces, too_large) = encode_topology_pieces(records);
    let messages = pieces
        .into_iter()
        .map(|payload| ProtocolMsg::Gossip {
            channel: TOPOLOGY_CHANNEL.to_string(),
            payload: ByteBuf::from(payload),
        })
        .collect();
    let effects = too_large
        .into_iter()
        .map(|(record, bytes)| Effect::RecordTooLarge {
            peer: record.name,
            bytes,
        })
        .collect();
    (messages, effects)
}
