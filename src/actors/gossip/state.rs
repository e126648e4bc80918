//! The gossip state machine: our live links, the topology and the routes derived from it, the
//! coalescing of local changes, and the relaying of unicast and broadcast gossip. Synchronous and
//! time-injected; the actor carries out the [`Effect`]s it returns. Which links each message
//! goes out on is `fanout.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use fanout::topology_messages;

use crate::mesh::{ClosingReason, LinkId};
use crate::topology::{ConnectionSummary, PeerName, PeerRecord, PeerUid, Routes, Topology};
use crate::wire::{ProtocolMsg, decode_topology};

/// Name of the channel carrying topology records.
pub const TOPOLOGY_CHANNEL: &str = "topology";
/// Local changes are held this long so that a burst of them goes out as one update (Weave Net:
/// `deferTopologyUpdateDuration`, 1 s).
pub const COALESCE_DELAY: Duration = Duration::from_secs(1);
/// Period of full-state anti-entropy to random neighbours (Weave Net: `defaultGossipInterval`).
pub const ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(30);
/// How many peers a refusal names as alternatives.
pub const REFUSAL_HINTS: usize = 8;

/// A link that finished its handshake and asks to be registered.
#[derive(Clone, Debug)]
pub struct NewLink {
    pub id: LinkId,
    pub remote: PeerName,
    pub remote_nickname: String,
    pub remote_uid: PeerUid,
    /// XOR of both ends' connection ids: the same number at both ends.
    pub conn_uid: u64,
    pub outbound: bool,
    pub remote_addr: SocketAddr,
}

#[derive(Clone, Debug)]
struct LinkEntry {
    id: LinkId,
    conn_uid: u64,
    remote_uid: PeerUid,
    outbound: bool,
    remote_addr: SocketAddr,
    remote_nickname: String,
    established: bool,
}

/// What the actor must do after a state change.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// `msg` to the link. One message going to many links is one `Arc`, so the actor frames it
    /// once and the links share its bytes.
    Send {
        link: LinkId,
        msg: Arc<ProtocolMsg>,
    },
    Close {
        link: LinkId,
        reason: ClosingReason,
    },
    /// Gossip for a channel owned by another subsystem.
    Deliver {
        channel: String,
        source: PeerName,
        payload: Vec<u8>,
    },
    PeersRemoved(Vec<PeerRecord>),
    /// A record too large for any topology message was left out of what we send (it can only
    /// have come from a forged or corrupt update).
    RecordTooLarge {
        peer: PeerName,
        bytes: usize,
    },
    /// A topology update from neighbour `from` carried records not to be believed (versions too
    /// far ahead, invalid nicknames); they were dropped.
    RecordsRejected {
        from: PeerName,
        count: usize,
    },
    /// Our links or the set of known peers changed: the connection maker needs a new view.
    PeersChanged,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    #[error("link {0:?} is not registered")]
    UnknownLink(LinkId),
    #[error("malformed topology gossip from {from}: {why}")]
    BadTopology { from: PeerName, why: String },
}

/// The live link and the peer it reaches, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkView {
    pub id: LinkId,
    /// The link id both ends agreed in the handshake (the sleeve's heartbeats carry it).
    pub conn_uid: u64,
    pub remote: PeerName,
    pub remote_nickname: String,
    pub remote_addr: SocketAddr,
    pub outbound: bool,
    pub established: bool,
}

pub struct GossipState {
    topology: Topology,
    routes: Routes,
    /// The topology changed since `routes` was computed. Routes are recomputed only when next
    /// needed, so a burst of gossip costs one computation (Weave Net coalesced for 100 ms).
    routes_stale: bool,
    links: BTreeMap<PeerName, LinkEntry>,
    /// Our own record changed and has not been gossiped yet, since this instant.
    local_dirty_since: Option<Instant>,
    /// Improved records from others, waiting to be passed on with the next coalesced update.
    pending_relay: BTreeMap<PeerName, PeerRecord>,
    pending_since: Option<Instant>,
    next_anti_entropy: Instant,
    rng: StdRng,
    /// When this state was made: the topology's version ceiling moves with the time since.
    created: Instant,
    /// The topology's change count when its records were last published in the view (none yet
    /// from this incarnation: a restarted gossip publishes its fresh view at once).
    published_changes: Option<u64>,
}

impl GossipState {
    pub fn new(local: PeerRecord, now: Instant, seed: u64) -> Self {
        let topology = Topology::new(local);
        let routes = Routes::compute(&topology);
        Self {
            topology,
            routes,
            routes_stale: false,
            links: BTreeMap::new(),
            local_dirty_since: None,
            pending_relay: BTreeMap::new(),
            pending_since: None,
            next_anti_entropy: now + ANTI_ENTROPY_INTERVAL,
            rng: StdRng::seed_from_u64(seed),
            created: now,
            published_changes: None,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn routes(&mut self) -> &Routes {
        self.refresh_routes();
        &self.routes
    }

    fn refresh_routes(&mut self) {
        if self.routes_stale {
            let fresh = Routes::compute(&self.topology);
            // Most changes (versions, addresses, far links pending) leave the graph as it was:
            // keeping the routes we hold keeps the broadcast trees already searched, and lets
            // the sleeve see at a pointer's glance that nothing moved.
            if fresh != self.routes {
                self.routes = fresh;
            }
            self.routes_stale = false;
        }
    }

    pub fn local_name(&self) -> PeerName {
        self.topology.local_name()
    }

    /// The topology's change count as of the last published view.
    pub fn published_changes(&self) -> Option<u64> {
        self.published_changes
    }

    pub fn set_published_changes(&mut self, changes: u64) {
        self.published_changes = Some(changes);
    }

    pub fn links(&self) -> Vec<LinkView> {
        self.links
            .iter()
            .map(|(remote, entry)| LinkView {
                id: entry.id,
                conn_uid: entry.conn_uid,
                remote: *remote,
                remote_nickname: entry.remote_nickname.clone(),
                remote_addr: entry.remote_addr,
                outbound: entry.outbound,
                established: entry.established,
            })
            .collect()
    }

    /// Whether `views` is what [`Self::links`] would return now, without building it.
    pub fn links_equal(&self, views: &[LinkView]) -> bool {
        self.links.len() == views.len()
            && self.links.iter().zip(views).all(|((remote, entry), view)| {
                view.id == entry.id
                    && view.conn_uid == entry.conn_uid
                    && view.remote == *remote
                    && view.remote_nickname == entry.remote_nickname
                    && view.remote_addr == entry.remote_addr
                    && view.outbound == entry.outbound
                    && view.established == entry.established
            })
    }

    /// The uid of the incarnation of `peer` we hold a link to.
    pub fn linked_uid(&self, peer: PeerName) -> Option<PeerUid> {
        self.links.get(&peer).map(|entry| entry.remote_uid)
    }

    pub fn connected_peers(&self) -> BTreeSet<PeerName> {
        self.links.keys().copied().collect()
    }

    /// Registers a link that finished its handshake. A second link to the same peer is settled
    /// by the link ids: the lower one stays, at both ends, so simultaneous connects never flap.
    /// `Err` means the new link lost and must close.
    ///
    /// Design choice: a second link from another incarnation of the peer (another uid) always
    /// loses. Simultaneous connects come from one incarnation; another uid is a restart whose old
    /// link has not failed yet (it will, within the read timeout, and the peer dials again) or
    /// another process using the peer's name, which must not evict the real link.
    pub fn register_link(
        &mut self,
        link: NewLink,
        now: Instant,
    ) -> Result<Vec<Effect>, ClosingReason> {
        let mut effects = Vec::new();
        if let Some(existing) = self.links.get(&link.remote) {
            if link.remote_uid != existing.remote_uid || link.conn_uid >= existing.conn_uid {
                return Err(ClosingReason::Duplicate);
            }
            effects.push(Effect::Close {
                link: existing.id,
                reason: ClosingReason::Duplicate,
            });
        }
        self.links.insert(
            link.remote,
            LinkEntry {
                id: link.id,
                conn_uid: link.conn_uid,
                remote_uid: link.remote_uid,
                outbound: link.outbound,
                remote_addr: link.remote_addr,
                remote_nickname: link.remote_nickname,
                established: false,
            },
        );
        self.topology.set_local_connection(
            link.remote,
            ConnectionSummary {
                remote_addr: link.remote_addr,
                outbound: link.outbound,
                established: false,
            },
        );
        self.local_changed(now);
        // A new neighbour gets everything we know at once (Weave Net: sendAllGossipDown), in as
        // many messages as it takes.
        let (messages, too_large) = topology_messages(&self.topology.full_state());
        effects.extend(too_large);
        effects.extend(messages.into_iter().map(|msg| Effect::Send {
            link: link.id,
            msg: Arc::new(msg),
        }));
        effects.push(Effect::PeersChanged);
        Ok(effects)
    }

    /// The link proved itself (the remote's first heartbeat arrived).
    pub fn link_established(&mut self, id: LinkId, now: Instant) -> Result<(), GossipError> {
        let (remote, entry) = self.entry_mut(id)?;
        if entry.established {
            return Ok(());
        }
        entry.established = true;
        let summary = ConnectionSummary {
            remote_addr: entry.remote_addr,
            outbound: entry.outbound,
            established: true,
        };
        self.topology.set_local_connection(remote, summary);
        self.local_changed(now);
        Ok(())
    }

    /// The link ended. Peers no longer reachable are removed at once.
    pub fn link_closed(&mut self, id: LinkId, now: Instant) -> Vec<Effect> {
        let Some(remote) = self
            .links
            .iter()
            .find(|(_, entry)| entry.id == id)
            .map(|(remote, _)| *remote)
        else {
            // A duplicate that lost, or a link that never registered.
            return Vec::new();
        };
        self.links.remove(&remote);
        self.topology.remove_local_connection(remote);
        self.local_changed(now);
        let mut effects = vec![Effect::PeersChanged];
        effects.extend(self.collect_garbage());
        effects
    }

    /// Drops peers we can no longer reach (and anything queued about them).
    fn collect_garbage(&mut self) -> Option<Effect> {
        self.routes_stale = true;
        let removed = self.topology.garbage_collect();
        if removed.is_empty() {
            return None;
        }
        for record in &removed {
            self.pending_relay.remove(&record.name);
        }
        Some(Effect::PeersRemoved(removed))
    }

    /// Asks the link to `peer` to close (it stays registered until it reports that it closed).
    pub fn close_link_to(&self, peer: PeerName, reason: ClosingReason) -> Vec<Effect> {
        self.links
            .get(&peer)
            .map(|entry| Effect::Close {
                link: entry.id,
                reason,
            })
            .into_iter()
            .collect()
    }

    /// A message other than a heartbeat arrived on a link.
    pub fn receive(
        &mut self,
        from_link: LinkId,
        msg: ProtocolMsg,
        now: Instant,
    ) -> Result<Vec<Effect>, GossipError> {
        let from = self.peer_of(from_link)?;
        let local = self.local_name();
        let mut effects = Vec::new();
        match msg {
            // The link consumes its own sleeve-key messages; one reaching gossip carries nothing.
            ProtocolMsg::Heartbeat
            | ProtocolMsg::SleeveKey { .. }
            | ProtocolMsg::SleeveKeyAck { .. } => {}
            ProtocolMsg::Gossip { channel, payload } if channel == TOPOLOGY_CHANNEL => {
                let records =
                    decode_topology(&payload).map_err(|err| GossipError::BadTopology {
                        from,
                        why: err.to_string(),
                    })?;
                effects.extend(self.merge_topology(from_link, from, records, now));
            }
            ProtocolMsg::Gossip { channel, payload } => effects.push(Effect::Deliver {
                channel,
                source: from,
                payload: payload.into_vec(),
            }),
            ProtocolMsg::GossipUnicast {
                channel,
                source,
                dest,
                payload,
            } => {
                if dest == local {
                    effects.push(Effect::Deliver {
                        channel,
                        source,
                        payload: payload.into_vec(),
                    });
                } else if let Some(link) = self.next_hop_link(dest) {
                    effects.push(Effect::Send {
                        link,
                        msg: Arc::new(ProtocolMsg::GossipUnicast {
                            channel,
                            source,
                            dest,
                            payload,
                        }),
                    });
                }
            }
            ProtocolMsg::GossipBroadcast {
                channel,
                source,
                payload,
            } => {
                let children = self.broadcast_children(source);
                if !children.is_empty() {
                    let relayed = Arc::new(ProtocolMsg::GossipBroadcast {
                        channel: channel.clone(),
                        source,
                        payload: payload.clone(),
                    });
                    effects.extend(children.into_iter().map(|link| Effect::Send {
                        link,
                        msg: Arc::clone(&relayed),
                    }));
                }
                if source != local {
                    effects.push(Effect::Deliver {
                        channel,
                        source,
                        payload: payload.into_vec(),
                    });
                }
            }
        }
        Ok(effects)
    }

    /// Sends coalesced changes once they are old enough, and periodic anti-entropy.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let oldest_change = match (self.local_dirty_since, self.pending_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if oldest_change.is_some_and(|since| now.duration_since(since) >= COALESCE_DELAY) {
            let mut update: Vec<PeerRecord> = std::mem::take(&mut self.pending_relay)
                .into_values()
                .collect();
            if self.local_dirty_since.is_some() {
                update.push(self.topology.local().clone());
            }
            self.local_dirty_since = None;
            self.pending_since = None;
            effects.extend(self.gossip_to_random_neighbours(&update));
        }
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + ANTI_ENTROPY_INTERVAL;
            let full = self.topology.full_state();
            effects.extend(self.gossip_to_random_neighbours(&full));
        }
        effects
    }

    fn merge_topology(
        &mut self,
        from_link: LinkId,
        from: PeerName,
        records: Vec<PeerRecord>,
        now: Instant,
    ) -> Vec<Effect> {
        self.topology
            .advance_clock(now.saturating_duration_since(self.created));
        let outcome = self.topology.merge(records);
        let mut effects = Vec::new();
        // The neighbour holds another incarnation of these peers than the winning one we hold:
        // tell it at once, rather than leave it to anti-entropy, so that the winner spreads and,
        // if it is an old incarnation's, reaches the new incarnation, which then outranks it.
        if !outcome.contradicted.is_empty() {
            let (messages, too_large) = topology_messages(&outcome.contradicted);
            effects.extend(too_large);
            effects.extend(messages.into_iter().map(|msg| Effect::Send {
                link: from_link,
                msg: Arc::new(msg),
            }));
        }
        if outcome.rejected > 0 {
            effects.push(Effect::RecordsRejected {
                from,
                count: outcome.rejected,
            });
        }
        if outcome.local_bumped {
            self.local_changed(now);
        }
        if outcome.improved.is_empty() {
            return effects;
        }
        for record in outcome.improved {
            self.pending_relay.insert(record.name, record);
        }
        self.pending_since.get_or_insert(now);
        effects.extend(self.collect_garbage());
        effects.push(Effect::PeersChanged);
        effects
    }

    fn local_changed(&mut self, now: Instant) {
        self.local_dirty_since.get_or_insert(now);
        self.routes_stale = true;
    }

    fn peer_of(&self, id: LinkId) -> Result<PeerName, GossipError> {
        self.links
            .iter()
            .find(|(_, entry)| entry.id == id)
            .map(|(remote, _)| *remote)
            .ok_or(GossipError::UnknownLink(id))
    }

    fn entry_mut(&mut self, id: LinkId) -> Result<(PeerName, &mut LinkEntry), GossipError> {
        self.links
            .iter_mut()
            .find(|(_, entry)| entry.id == id)
            .map(|(remote, entry)| (*remote, entry))
            .ok_or(GossipError::UnknownLink(id))
    }
}

mod discovery;
mod fanout;
#[cfg(test)]
mod tests;
