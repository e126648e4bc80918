//! The target table's side of rebalancing: the mesh it dials by, which peers are near enough to
//! leave alone, the one decision per interval (made by
//! [`crate::actors::connection_maker::rebalance`]) applied to the targets, and the hold on a
//! peer whose link rebalancing dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{
    ConnectionMakerState, INITIAL_RETRY_INTERVAL, RebalanceAction, Target, TargetSource,
    TargetState,
};
use crate::actors::connection_maker::mesh_graph::MeshGraph;
use crate::actors::connection_maker::rebalance::{
    MAX_VIEW_LAG, REDIAL_HOLD_AFTER_DROP, Rebalance, RebalanceInput,
};
use crate::topology::PeerName;

impl ConnectionMakerState {
    /// The mesh as gossip now describes it: the dial filter and rebalancing work from it.
    ///
    /// Near peers are only left alone when the mesh has more peers than our connection limit:
    /// a smaller mesh links every pair directly, as before, so that every pod frame takes one
    /// hop (fastdp needs a direct link).
    pub fn set_mesh(&mut self, mesh: Arc<MeshGraph>) {
        self.near = match mesh.index_of(self.our_name) {
            Some(us) if !mesh.fits_in_limit(us) => mesh.within_two_hops(us),
            _ => Vec::new(),
        };
        self.mesh = mesh;
    }

    /// Whether `peer` is within two hops of us, so that discovery need not dial it: a link to it
    /// would shorten no route by more than one hop, and a link rebalancing dropped stays dropped.
    pub(super) fn is_near(&self, peer: Option<PeerName>) -> bool {
        peer.and_then(|peer| self.mesh.index_of(peer))
            .is_some_and(|index| self.near.get(index).copied().unwrap_or(false))
    }

    /// Whether the mesh view shows `peer` at its connection limit: it would refuse a dial.
    fn is_full(&self, peer: Option<PeerName>) -> bool {
        peer.and_then(|peer| self.mesh.index_of(peer))
            .is_some_and(|index| !self.mesh.has_room(index))
    }

    /// Why the mesh view holds a target back that is due, dialled as `source`, if it does:
    /// once we are linked, a peer at its limit (it would refuse us), and unless it is a direct
    /// target we keep, a peer within two hops. Leaving near peers alone is what lets the mesh
    /// spread out rather than clump, and what keeps a link rebalancing dropped from being
    /// dialled again by either end.
    pub(super) fn held_back_by_view(
        &self,
        target: &Target,
        source: TargetSource,
    ) -> Option<&'static str> {
        if self.connected_peers.is_empty() {
            None
        } else if self.is_full(target.peer) {
            Some("its peer is at its connection limit")
        } else if source != TargetSource::Direct && self.is_near(target.peer) {
            Some("its peer is within two hops through the mesh")
        } else {
            None
        }
    }

    /// Runs a rebalancing decision when one is due (see
    /// [`crate::actors::connection_maker::rebalance`]); `free_permits` are the links we may
    /// still open.
    pub fn rebalance(&mut self, now: Instant, free_permits: usize) -> Option<RebalanceAction> {
        if !self.rebalancer.is_due(now) || self.view_lags(now) {
            return None;
        }
        let droppable = self.droppable_links();
        let mut by_peer: BTreeMap<PeerName, String> = BTreeMap::new();
        for (addr, target) in &self.targets {
            // Back-off is not waited for: a target refused for a limit backs off for minutes,
            // but the graph says whether its peer has room now, and rebalancing dials a peer at
            // most once per hold (`rebalance_dials`), so it hammers nobody.
            if target.retired() || !matches!(target.state, TargetState::Waiting { .. }) {
                continue;
            }
            if let Some(peer) = target.peer {
                by_peer.entry(peer).or_insert_with(|| addr.clone());
            }
        }
        // And any other peer gossip tells the address of. Discovery only lists peers below its
        // ceiling (four fifths of their limit), so once every peer is past it no far peer would
        // be a target: 250 routers settled with 7 % of pairs 4 hops apart, every router holding
        // 26-30 of its 30 links and rebalancing idle for lack of anyone it could dial.
        if self.discovery {
            for (peer, addr) in &self.peer_addresses {
                if !self.targets.contains_key(addr) {
                    by_peer.entry(*peer).or_insert_with(|| addr.clone());
                }
            }
        }
        self.rebalance_dials
            .retain(|_, at| now.saturating_duration_since(*at) < REDIAL_HOLD_AFTER_DROP);
        let connected = &self.connected_peers;
        let recent = &self.rebalance_dials;
        let dialable = |peer: PeerName| {
            by_peer.contains_key(&peer) && !connected.contains(&peer) && !recent.contains_key(&peer)
        };
        let input = RebalanceInput {
            graph: &self.mesh,
            us: self.our_name,
            limit: self.conn_limit,
            free_permits,
            droppable: &droppable,
            dialable: &dialable,
            now,
        };
        let (peer, addr) = match self.rebalancer.decide(&input)? {
            Rebalance::Dial(peer) => (peer, by_peer.remove(&peer)?),
            Rebalance::Drop(peer) => return Some(RebalanceAction::Drop(peer)),
        };
        self.rebalance_dials.insert(peer, now);
        // A peer known from gossip alone gets a target of no source: once this attempt ends,
        // or the link it makes, nothing keeps it (and nothing but rebalancing dials it).
        let target = self.target_entry(addr.clone(), now);
        target.peer = Some(peer);
        target.state = TargetState::Attempting {
            started: now,
            after_error: target.last_error.is_some(),
        };
        Some(RebalanceAction::Dial(addr))
    }

    /// Whether the mesh view does not show our links as they are yet (one we made is not listed
    /// by its other end, or one we lost still is), for at most [`MAX_VIEW_LAG`]: a decision waits
    /// for the view to catch up. Deciding from a view that lags our own last change counts its
    /// gains twice; and on an overloaded node, where gossip lags most, many peers acting on the
    /// same stale picture feed the load that makes it stale (250 routers on two cores, before
    /// this wait, were still changing links 600 s after the last start).
    fn view_lags(&mut self, now: Instant) -> bool {
        let listed = self.mesh.index_of(self.our_name).map(|us| {
            let neighbours = self.mesh.neighbours(us);
            neighbours.len() == self.connected_peers.len()
                && neighbours
                    .iter()
                    .all(|&peer| self.connected_peers.contains(&self.mesh.name(peer)))
        });
        if listed == Some(true) {
            self.view_lagging_since = None;
            return false;
        }
        let since = *self.view_lagging_since.get_or_insert(now);
        now.saturating_duration_since(since) < MAX_VIEW_LAG
    }

    /// Links we dialled to a peer that is no direct target, with the time each came up: the
    /// ones rebalancing may drop (the other end holds no target that would re-dial at once).
    /// Retired targets count: gossip stops listing a peer as discovered once we are linked to
    /// it, which retires the target that dialled it while the link lasts. So do direct targets
    /// beyond our limit (a large cluster's Node list): they are dialled as discovered ones, and
    /// the dial filter holds them back in the same way once dropped.
    fn droppable_links(&self) -> Vec<(PeerName, Instant)> {
        let direct_droppable = self.direct_beyond_limit();
        self.targets
            .values()
            .filter(|target| !target.direct || direct_droppable)
            .filter_map(|target| match target.state {
                TargetState::Connected { peer, since } => Some((peer, since)),
                _ => None,
            })
            .collect()
    }

    /// A link we dialled to `addr` was closed by rebalancing: the peer is not dialled again for
    /// [`REDIAL_HOLD_AFTER_DROP`], and its back-off starts over.
    pub fn link_dropped(&mut self, addr: &str, reason: String, now: Instant) {
        let Some(target) = self.targets.get_mut(addr) else {
            return;
        };
        if matches!(target.state, TargetState::Suspended { .. }) {
            return;
        }
        target.retry_interval = INITIAL_RETRY_INTERVAL;
        target.state = TargetState::Waiting {
            at: now + REDIAL_HOLD_AFTER_DROP,
        };
        target.last_error = Some(reason);
        // The target itself may go now (a discovered one is retired while its link lasts),
        // and with it the wait: rebalancing's own hold keeps the peer back.
        if let Some(peer) = target.peer {
            self.rebalance_dials.insert(peer, now);
        }
        self.reap(addr);
    }
}
